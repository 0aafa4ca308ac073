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

/// One test per target, named as the target and its regressions folder.
macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name), cbec_fuzz::$name);
            }
        )*
    };
}

targets!(
    transactions,
    api_json,
    blocks,
    certified_blocks,
    gossip,
    frames,
    proof_files,
    operator_files,
    chaincode_args,
);

/// The certified-block sample is one the follower accepts: the target's mutations start
/// from a block that gets through every check.
#[test]
fn the_certified_block_sample_is_accepted() {
    let accepted = cbec_fuzz::samples().iter().any(|bytes| {
        cbec_ledger::codec::decode::<cbec_ledger::CertifiedBlock>(bytes)
            .is_ok_and(|b| cbec_fuzz::accepts_certified_block(&b))
    });
    assert!(accepted);
}
