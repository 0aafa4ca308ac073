//! One Byzantine validator process (the node's code with the test seam) floods junk
//! proposals and claims a height it does not have; the three honest processes keep
//! committing, agree, and a restarted honest node catches up past the liar.

use std::time::Duration;

use cbec_tests::Consortium;

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");
const BYZANTINE: &str = env!("CARGO_BIN_EXE_cbec-e2e-byzantine");

#[test]
fn honest_nodes_commit_and_catch_up_past_a_byzantine_validator() {
    let mut c = Consortium::generate(NODE);
    for i in 0..3 {
        c.start(i);
    }
    c.start_program(3, BYZANTINE, &["--attacks", "junk,lie,equivocate"]);
    let honest = [0, 1, 2];
    c.wait_for("honest nodes at height 5", Duration::from_secs(90), |c| {
        honest.iter().all(|i| c.height(*i).is_some_and(|h| h >= 5))
    });
    // They keep committing while it floods.
    let before = c.height(0).expect("height");
    c.wait_for("ten more heights", Duration::from_secs(90), |c| {
        c.height(0).is_some_and(|h| h >= before + 10)
    });
    // The equivocating votes were seen as evidence.
    let metrics = c.endpoints().text(0, "/metrics").unwrap_or_default();
    assert!(
        metrics.contains("cbec_equivocations_total"),
        "the equivocation counter is exported"
    );
    let evidence: f64 = metrics
        .lines()
        .find(|l| l.starts_with("cbec_equivocations_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(evidence > 0.0, "the equivocating votes were seen");
    // A restarted honest node catches up although the liar claims u64::MAX. While it
    // is down, progress needs the Byzantine validator's votes: one Byzantine and one
    // crashed validator are more than four tolerate (f = 1), and a validator that
    // sends a nil vote before each real one can keep two honest ones from a quorum
    // for ever. So from here it still floods junk and lies about its height, but votes
    // once.
    c.kill(3);
    c.start_program(3, BYZANTINE, &["--attacks", "junk,lie"]);
    c.kill(2);
    let down = c.height(0).expect("height");
    c.wait_for(
        "the others go on without it",
        Duration::from_secs(90),
        |c| c.height(0).is_some_and(|h| h >= down + 10),
    );
    c.start(2);
    let target = c.height(0).expect("height");
    c.wait_for(
        "the restarted node caught up",
        Duration::from_secs(90),
        |c| c.height(2).is_some_and(|h| h >= target),
    );
    // The honest nodes agree.
    let common = honest
        .iter()
        .filter_map(|i| c.height(*i))
        .min()
        .expect("heights");
    let ids: Vec<_> = honest.iter().map(|i| c.block_id(*i, common)).collect();
    assert!(
        ids.iter().all(|id| id.is_some() && *id == ids[0]),
        "{ids:?}"
    );
}
