//! Fault injection under load (see `cbec_tests::faults`): a short run in the regular
//! test suite, and a soak that runs as long as asked.

use std::time::Duration;

use cbec_tests::{faults, Consortium};

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");

fn seed() -> u64 {
    std::env::var("CBEC_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        })
}

#[test]
fn kills_freezes_partitions_slow_links_and_skewed_clocks_lose_nothing() {
    let mut c = Consortium::generate(NODE);
    let report = faults::run(&mut c, seed(), Duration::from_secs(60));
    eprintln!("{report:?}");
    assert!(report.faults.len() >= 10, "{report:?}");
    for kind in ["kill", "freeze", "partition", "slow links", "clock skew"] {
        assert!(
            report.faults.iter().any(|f| f.kind() == kind),
            "no {kind} fault: {report:?}"
        );
    }
    assert!(
        report.acknowledged > 20,
        "too little committed under faults: {report:?}"
    );
}

/// A shorter run on a national-cryptography chain (SM2 signatures, SM3 hashes).
#[test]
fn sm2_sm3_chain_loses_nothing_under_faults() {
    let mut c = Consortium::generate_with(NODE, cbec_ledger::Suite::Sm2Sm3);
    let report = faults::run(&mut c, seed(), Duration::from_secs(40));
    eprintln!("{report:?}");
    assert!(report.faults.len() >= 5, "{report:?}");
    assert!(
        report.acknowledged > 10,
        "too little committed under faults: {report:?}"
    );
}

/// `CBEC_FAULT_SECS=1800 cargo test --release -p cbec-tests --test faults soak -- --ignored --nocapture`
#[test]
#[ignore = "soak: runs CBEC_FAULT_SECS seconds (default 1800)"]
fn fault_soak() {
    let secs = std::env::var("CBEC_FAULT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1800);
    let mut c = Consortium::generate(NODE);
    let report = faults::run(&mut c, seed(), Duration::from_secs(secs));
    println!(
        "fault soak: seed {}, {} s, {} faults ({}), {} acknowledged transactions all present, final height {}",
        report.seed,
        secs,
        report.faults.len(),
        faults::count_by_kind(&report.faults),
        report.acknowledged,
        report.final_height
    );
}
