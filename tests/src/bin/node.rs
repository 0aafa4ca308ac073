//! The validator, for end-to-end tests (same code as `cbec-node`).

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip_while(|a| a != "--config").skip(1);
    let Some(config) = args.next() else {
        eprintln!("error: usage: cbec-e2e-node --config FILE");
        return std::process::ExitCode::from(2);
    };
    cbec_node::run::main_with(&PathBuf::from(config), None)
}
