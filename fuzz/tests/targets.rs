//! Each fuzz target for a bounded time (`CBEC_FUZZ_SECS`, default 3) of random inputs
//! and mutated valid samples, after replaying every input kept in `tests/regressions/`.
//!
//! Longer, coverage-guided runs (nightly toolchain and `cargo install cargo-bolero`):
//! `cargo bolero test -p cbec-fuzz --test targets gossip -T 10min`

use std::time::Duration;

fn seconds() -> Duration {
    let secs = std::env::var("CBEC_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// Replays the kept inputs of `name`, then feeds the target random bytes and the
/// samples with random bytes overwritten, inserted and cut.
fn run(name: &str, target: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(name);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("a regression input");
            target(&bytes);
        }
    }
    for sample in cbec_fuzz::samples() {
        target(&sample);
    }
    let samples = cbec_fuzz::samples();
    bolero::check!()
        .with_test_time(seconds())
        .with_type::<(u8, Vec<(u16, u8)>, u16, Vec<u8>)>()
        .for_each(|(pick, edits, cut, raw)| {
            target(raw);
            let mut bytes = samples[usize::from(*pick) % samples.len()].clone();
            for (at, byte) in edits {
                let at = usize::from(*at) % (bytes.len() + 1);
                if byte % 3 == 0 {
                    bytes.insert(at, *byte);
                } else if at < bytes.len() {
                    bytes[at] = *byte;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(usize::from(*cut % 8)));
            target(&bytes);
        });
}

#[test]
fn transactions() {
    run("transactions", cbec_fuzz::transactions);
}

#[test]
fn api_json() {
    run("api_json", cbec_fuzz::api_json);
}

#[test]
fn blocks() {
    run("blocks", cbec_fuzz::blocks);
}

#[test]
fn gossip() {
    run("gossip", cbec_fuzz::gossip);
}

#[test]
fn frames() {
    run("frames", cbec_fuzz::frames);
}

#[test]
fn proof_files() {
    run("proof_files", cbec_fuzz::proof_files);
}

#[test]
fn operator_files() {
    run("operator_files", cbec_fuzz::operator_files);
}

#[test]
fn chaincode_args() {
    run("chaincode_args", cbec_fuzz::chaincode_args);
}
