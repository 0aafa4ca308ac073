//! A Byzantine validator for end-to-end tests: the validator's own code, with the
//! test-only seam (`cbec_node::seam`) making it misbehave. Not a flag of the real node:
//! only this test binary can do it.
//!
//! `cbec-e2e-byzantine --config FILE --attacks junk,lie[,withhold,equivocate,replay,garbage]`

use std::path::PathBuf;
use std::sync::Arc;

use cbec_node::seam::byzantine::{Behaviour, Byzantine};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(config) = value("--config") else {
        eprintln!("error: usage: cbec-e2e-byzantine --config FILE --attacks LIST");
        return std::process::ExitCode::from(2);
    };
    let mut behaviour = Behaviour::default();
    for attack in value("--attacks").unwrap_or_default().split(',') {
        match attack {
            "junk" => behaviour.junk_proposals = 8,
            "lie" => behaviour.lie_about_height = true,
            "withhold" => behaviour.withhold_blocks = true,
            "equivocate" => behaviour.equivocate = true,
            "replay" => behaviour.replay = true,
            "garbage" => behaviour.garbage = true,
            "" => {}
            other => {
                eprintln!("error: --attacks: unknown attack `{other}`");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let adversary = Arc::new(Byzantine::new(behaviour, 0x5eed));
    cbec_node::run::main_with_adversary(&PathBuf::from(config), None, adversary)
}
