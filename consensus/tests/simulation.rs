//! The simulator over many seeds and fault mixes, and proof that its checkers bite.
//!
//! Rerun one seed with `CBEC_SIM_SEED=1234 cargo test -p cbec-consensus --test
//! simulation rerun_one_seed -- --nocapture` (the mix and validator count follow from the
//! seed exactly as in the sweep).

use cbec_consensus::sim::{self, Mutation, Report, SimConfig, FAULT_MIXES};

/// The configuration the sweep uses for `seed`: the mix cycles with the seed, and every
/// fifth seed runs 7 validators instead of 4.
fn config_for(seed: u64) -> SimConfig {
    let mix = FAULT_MIXES[(seed % FAULT_MIXES.len() as u64) as usize];
    let mut config = SimConfig::new(seed).with_mix(mix);
    if seed % 5 == 4 {
        config.validators = 7;
    }
    config
}

fn describe_failure(config: &SimConfig, report: &Report) -> String {
    format!(
        "seed {} ({} validators, faults {:?}, mutation {:?}) broke {:?}\nrerun: CBEC_SIM_SEED={} cargo test -p cbec-consensus --test simulation rerun_one_seed -- --nocapture\nlast events:\n  {}",
        report.seed,
        config.validators,
        config.faults,
        config.mutation,
        report.violations,
        report.seed,
        report.trace.join("\n  ")
    )
}

fn sweep(seeds: std::ops::Range<u64>) -> (u64, u64) {
    let mut decided = 0;
    let mut runs = 0;
    for seed in seeds {
        let config = config_for(seed);
        let report = sim::run(&config);
        assert!(report.ok(), "{}", describe_failure(&config, &report));
        assert_eq!(report.decided, config.heights, "seed {seed}");
        decided += report.decided;
        runs += 1;
    }
    (runs, decided)
}

// 2,000 seeds x 20 heights, split so the test harness spreads them over the cores.
#[test]
fn seeds_0000_0499_hold_all_properties() {
    sweep(0..500);
}
#[test]
fn seeds_0500_0999_hold_all_properties() {
    sweep(500..1000);
}
#[test]
fn seeds_1000_1499_hold_all_properties() {
    sweep(1000..1500);
}
#[test]
fn seeds_1500_1999_hold_all_properties() {
    sweep(1500..2000);
}

/// Seeds the soak once broke, each for a liveness bug since fixed: 2231 (a restarted
/// validator locked on a value without its polka), 5336 (a restarted validator stopped
/// rebroadcasting its earlier rounds' votes, which peers still in those rounds needed),
/// 24188 (a validator left a round on a Byzantine precommit the others never got).
#[test]
fn seeds_the_soak_once_broke_hold() {
    for seed in [2231, 5336, 24188] {
        sweep(seed..seed + 1);
    }
}

/// The soak: 100,000 seeds (or `CBEC_SOAK_SEEDS` from `CBEC_SOAK_FROM`). Run it with
/// `cargo test --release -p cbec-consensus --test simulation soak -- --ignored --nocapture`.
#[test]
#[ignore = "soak: 100,000 seeds, run on demand"]
fn soak_100k_seeds() {
    let env = |name, default| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let from: u64 = env("CBEC_SOAK_FROM", 0);
    let count: u64 = env("CBEC_SOAK_SEEDS", 100_000);
    let (mut runs, mut decided) = (0, 0);
    let mut start = from;
    while start < from + count {
        let end = (start + 5_000).min(from + count);
        let (r, d) = sweep(start..end);
        runs += r;
        decided += d;
        eprintln!("soak: seeds {from}..{end} hold ({runs} runs)");
        start = end;
    }
    println!("soak: {runs} seeds from {from}, {decided} heights decided, no violation");
}

#[test]
fn rerun_one_seed() {
    let Ok(text) = std::env::var("CBEC_SIM_SEED") else {
        return; // nothing asked for
    };
    let seed: u64 = text.trim().parse().expect("CBEC_SIM_SEED is a number");
    let mut config = config_for(seed);
    if let Some(lines) = std::env::var("CBEC_SIM_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.trace_len = lines;
    }
    let report = sim::run(&config);
    println!("{}", report.trace.join("\n"));
    println!(
        "seed {seed}: decided {} heights in {} events, {} ms, max round {}, {} evidence, violations {:?}",
        report.decided, report.events, report.end_ms, report.max_round, report.evidence, report.violations
    );
    assert!(report.ok(), "{}", describe_failure(&config, &report));
}

#[test]
fn byzantine_double_voting_is_reported_as_evidence() {
    let evidence: u64 = (0..50)
        .map(|seed| sim::run(&SimConfig::new(seed).with_mix("double-voter")).evidence)
        .sum();
    assert!(
        evidence > 0,
        "no equivocation evidence in 50 double-voter runs"
    );
}

/// Planted bug 1: every validator ignores its lock. The checkers must find a violation
/// (agreement, or validity/termination fallout) within the default seed budget.
#[test]
fn ignoring_the_lock_is_caught() {
    let found = (0..2000u64).find(|seed| {
        let mut config = config_for(*seed);
        config.mutation = Mutation::IgnoreLock;
        let report = sim::run(&config);
        report
            .violations
            .iter()
            .any(|v| matches!(v, sim::Violation::Agreement { .. }))
    });
    assert!(found.is_some(), "lock bug not found in 2,000 seeds");
}

/// Planted bug 2: restarted validators forget their persisted signing state. The
/// double-sign checker must catch one signing a conflicting vote.
#[test]
fn forgetting_the_signing_state_is_caught() {
    let found = (0..2000u64).find(|seed| {
        let mut config = SimConfig::new(*seed).with_mix("crash");
        config.mutation = Mutation::ForgetSigningState;
        let report = sim::run(&config);
        report
            .violations
            .iter()
            .any(|v| matches!(v, sim::Violation::DoubleSign { .. }))
    });
    assert!(
        found.is_some(),
        "double signing after restart not found in 2,000 seeds"
    );
}
