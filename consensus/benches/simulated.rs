//! Simulated consensus throughput: 4 validators, no faults, the real state machine and
//! real Ed25519 signatures (each distinct message verified once, as a node with batch
//! verification at its edge would). Reports medians over repeated runs.
//!
//! `cargo bench -p cbec-consensus`

use std::time::Instant;

use cbec_consensus::sim::{self, SimConfig};

fn main() {
    let runs = 15;
    let heights = 200;
    let mut per_second = Vec::new();
    let mut report = None;
    for seed in 0..runs {
        let mut config = SimConfig::new(seed);
        config.heights = heights;
        let started = Instant::now();
        let r = sim::run(&config);
        let elapsed = started.elapsed().as_secs_f64();
        assert!(r.ok(), "seed {seed}: {:?}", r.violations);
        per_second.push(r.decided as f64 / elapsed);
        report = Some(r);
    }
    per_second.sort_by(f64::total_cmp);
    let r = report.expect("at least one run");
    let decisions = r.decided as f64;
    println!(
        "consensus/simulated 4 validators, no faults: median {:.0} decisions/s over {runs} runs of {heights} heights ({} cores)",
        per_second[per_second.len() / 2],
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "per decision: {:.1} messages delivered, {:.1} signatures made (all validators together)",
        r.messages_delivered as f64 / decisions,
        r.signatures as f64 / decisions
    );
}
