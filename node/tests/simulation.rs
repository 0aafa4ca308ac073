//! The node simulation (see `cbec_node::sim`): whole hosts on a simulated network,
//! with a Byzantine validator, crashes, partitions, a lagging node and a skewed clock.
//!
//! Rerun one seed (it replays exactly and prints the last events):
//! `CBEC_NODE_SIM_SEED=17 CBEC_NODE_SIM_MIX=lying-height cargo test -p cbec-node --test simulation rerun_one_seed -- --nocapture`

use cbec_ledger::Suite;
use cbec_node::sim::{run, SimConfig, MIXES};

fn check(seed: u64, mix: &str) -> cbec_node::sim::Report {
    let config = SimConfig::new(seed).with_mix(mix);
    let report = run(&config, mix);
    assert!(
        report.ok(),
        "seed {seed} mix {mix}: {:?}\nlast events:\n{}",
        report.violations,
        report.trace.join("\n")
    );
    report
}

/// Seeds of the regular run, cycling through every mix.
const SEEDS: u64 = 200;

#[test]
fn hosts_agree_and_progress_under_every_fault_mix() {
    let mut synced = 0;
    let mut evidence = 0;
    let mut dropped = 0;
    for seed in 0..SEEDS {
        let mix = MIXES[(seed % MIXES.len() as u64) as usize];
        let report = check(seed, mix);
        synced += report.synced_blocks;
        evidence += report.evidence;
        dropped += report.disconnects_of_byzantine;
    }
    // The faults happened: lagging nodes caught up through sync, equivocation was seen,
    // and honest nodes dropped the Byzantine peer for bad bytes.
    assert!(synced > 0, "no block was ever synced");
    assert!(evidence > 0, "no equivocation evidence");
    assert!(dropped > 0, "no Byzantine peer was ever dropped");
}

/// The same hosts on a national-cryptography chain (SM2 signatures, SM3 hashes, the
/// Byzantine validator's forgeries included): one seed of every mix.
#[test]
fn sm2_sm3_hosts_agree_and_progress_under_every_fault_mix() {
    for (i, mix) in MIXES.iter().enumerate() {
        let seed = 1_000 + i as u64;
        let config = SimConfig::new(seed).with_mix(mix).with_suite(Suite::Sm2Sm3);
        let report = run(&config, mix);
        assert!(
            report.ok(),
            "sm2-sm3 seed {seed} mix {mix}: {:?}\nlast events:\n{}",
            report.violations,
            report.trace.join("\n")
        );
        assert!(report.committed >= config.heights, "{mix}: {report:?}");
    }
}

/// A lagging node catches up although the Byzantine validator claims `u64::MAX` and
/// serves nothing: the liar is demoted and another peer asked.
#[test]
fn a_lagging_node_catches_up_past_a_lying_peer() {
    for seed in 1_000..1_010 {
        let report = check(seed, "lying-height");
        assert!(report.synced_blocks > 0, "seed {seed}: nothing synced");
    }
}

/// An honest node a minute behind in its clock still syncs certified blocks (the clock
/// check is for voting on proposals, never for certified blocks).
#[test]
fn a_node_with_a_slow_clock_catches_up_with_certified_blocks() {
    for seed in 2_000..2_010 {
        let report = check(seed, "skewed-clock");
        assert!(report.synced_blocks > 0, "seed {seed}: nothing synced");
    }
}

/// A seed replays exactly.
#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::new(7).with_mix("everything");
    let a = run(&config, "everything");
    let b = run(&config, "everything");
    assert_eq!(a.events, b.events);
    assert_eq!(a.end_ms, b.end_ms);
    assert_eq!(a.trace, b.trace);
}

#[test]
fn rerun_one_seed() {
    let Ok(seed) = std::env::var("CBEC_NODE_SIM_SEED") else {
        return; // only when asked (see the file's comment)
    };
    let seed: u64 = seed.parse().expect("CBEC_NODE_SIM_SEED is a number");
    let mix = std::env::var("CBEC_NODE_SIM_MIX").unwrap_or_else(|_| "everything".into());
    let report = run(&SimConfig::new(seed).with_mix(&mix), &mix);
    println!("{}", report.trace.join("\n"));
    println!("{report:?}");
    assert!(report.ok());
}

/// Many more seeds: `CBEC_NODE_SOAK_SEEDS=5000 cargo test --release -p cbec-node --test
/// simulation soak -- --ignored --nocapture` (default 2,000).
#[test]
#[ignore = "soak: run by hand, see its doc comment"]
fn soak() {
    let seeds: u64 = std::env::var("CBEC_NODE_SOAK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let from: u64 = std::env::var("CBEC_NODE_SOAK_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    for seed in from..from + seeds {
        let mix = MIXES[(seed % MIXES.len() as u64) as usize];
        check(seed, mix);
        if seed % 100 == 0 {
            println!("seed {seed} ok");
        }
    }
}
