//! Fault injection: the four validator processes under a seeded schedule of faults
//! while a client keeps submitting, then checks that nothing was lost.
//!
//! Faults, one at a time (the consortium tolerates one faulty node; a 2|2 split stops
//! progress until it heals, and must not break anything):
//! - SIGKILL and restart (possibly mid-write);
//! - SIGSTOP and SIGCONT (a frozen node whose peers time out on it, then a node that
//!   wakes with stale timers and a backlog);
//! - a partition: one node cut off from the other three, or the four split two and two
//!   (every node's links run through [`crate::mesh`], whose proxies stall a cut link);
//! - slow links: every link of one node delayed;
//! - a skewed clock: one node restarted with its clock seconds to minutes off (ahead
//!   or behind, through libfaketime), later restarted with the right time.
//!
//! Every kind occurs once in each cycle of five faults, in a seeded order. At the end,
//! with every node running and every link healed, the run checks:
//! - all four nodes reach the same height with the same block hashes and state root;
//! - every transaction the API answered as committed is committed on every node, at
//!   the height it was acknowledged at;
//! - no node saw a validator sign two conflicting votes (the equivocation counter);
//! - the chain's time is not ahead of the real clock by more than a proposal may be
//!   (a node whose clock runs fast cannot drag the chain's time with it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cbec_ledger::KeyPair;
use serde_json::json;

use crate::mesh::Mesh;
use crate::{Consortium, Endpoints};

/// A small deterministic generator (xorshift64*), so a run's schedule is its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }
}

/// One injected fault, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Kill {
        node: usize,
        down_ms: u64,
    },
    Freeze {
        node: usize,
        frozen_ms: u64,
    },
    /// `side` cut off from the other nodes.
    Partition {
        side: Vec<usize>,
        cut_ms: u64,
    },
    SlowLinks {
        node: usize,
        delay_ms: u64,
        slow_ms: u64,
    },
    ClockSkew {
        node: usize,
        offset_ms: i64,
        skewed_ms: u64,
    },
}

impl Fault {
    /// The kind's name, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Freeze { .. } => "freeze",
            Fault::Partition { .. } => "partition",
            Fault::SlowLinks { .. } => "slow links",
            Fault::ClockSkew { .. } => "clock skew",
        }
    }
}

const KINDS: usize = 5;

/// "12 kill, 11 freeze, ..." for a report.
pub fn count_by_kind(faults: &[Fault]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for f in faults {
        match counts.iter_mut().find(|(k, _)| *k == f.kind()) {
            Some((_, n)) => *n += 1,
            None => counts.push((f.kind(), 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Injects one fault of kind `kind` (0..KINDS) and undoes it.
fn inject(c: &mut Consortium, mesh: &Mesh, rng: &mut Rng, kind: usize) -> Fault {
    let node = rng.between(0, 4) as usize;
    match kind {
        0 => {
            let down_ms = rng.between(200, 3_000);
            eprintln!("fault: kill {node}, restart after {down_ms} ms");
            c.kill(node);
            std::thread::sleep(Duration::from_millis(down_ms));
            c.start(node);
            Fault::Kill { node, down_ms }
        }
        1 => {
            let frozen_ms = rng.between(200, 3_000);
            eprintln!("fault: freeze {node} for {frozen_ms} ms");
            c.signal(node, "STOP");
            std::thread::sleep(Duration::from_millis(frozen_ms));
            c.signal(node, "CONT");
            Fault::Freeze { node, frozen_ms }
        }
        2 => {
            let side = if rng.between(0, 2) == 0 {
                vec![node]
            } else {
                let other = (node + rng.between(1, 4) as usize) % 4;
                let mut side = vec![node, other];
                side.sort_unstable();
                side
            };
            let cut_ms = rng.between(500, 4_000);
            eprintln!("fault: partition {side:?} from the rest for {cut_ms} ms");
            for a in side.iter().copied() {
                for b in (0..4).filter(|b| !side.contains(b)) {
                    mesh.set_cut(a, b, true);
                }
            }
            std::thread::sleep(Duration::from_millis(cut_ms));
            mesh.heal();
            Fault::Partition { side, cut_ms }
        }
        3 => {
            let delay_ms = rng.between(50, 400);
            let slow_ms = rng.between(1_000, 5_000);
            eprintln!("fault: delay {node}'s links by {delay_ms} ms for {slow_ms} ms");
            for other in (0..4).filter(|&o| o != node) {
                mesh.set_delay(node, other, Duration::from_millis(delay_ms));
            }
            std::thread::sleep(Duration::from_millis(slow_ms));
            mesh.heal();
            Fault::SlowLinks {
                node,
                delay_ms,
                slow_ms,
            }
        }
        _ => {
            // Below the proposal limit (accepted, pushes the chain's time ahead a
            // little) or far beyond it (its proposals refused, or it refuses others').
            let magnitude = if rng.between(0, 2) == 0 {
                rng.between(2_000, 9_000)
            } else {
                rng.between(20_000, 120_000)
            } as i64;
            let offset_ms = if rng.between(0, 2) == 0 {
                magnitude
            } else {
                -magnitude
            };
            let skewed_ms = rng.between(2_000, 6_000);
            eprintln!(
                "fault: restart {node} with its clock {offset_ms:+} ms off for {skewed_ms} ms"
            );
            c.kill(node);
            c.start_skewed(node, offset_ms);
            std::thread::sleep(Duration::from_millis(skewed_ms));
            c.kill(node);
            c.start(node);
            Fault::ClockSkew {
                node,
                offset_ms,
                skewed_ms,
            }
        }
    }
}

/// What a run did and found.
#[derive(Debug)]
pub struct FaultReport {
    pub seed: u64,
    pub faults: Vec<Fault>,
    pub acknowledged: usize,
    pub final_height: u64,
}

/// A transaction the API answered as committed.
#[derive(Debug, Clone)]
struct Acknowledged {
    hash: String,
    height: u64,
}

fn file_enterprise(c: &Consortium, key: &KeyPair) {
    let uscc = cbec_chaincode::codes::uscc_with_check("91140200MA0FLT001").expect("uscc");
    let tx = c.sign(
        &c.operator(3),
        0,
        "enterprise",
        "approve_filing",
        json!({"uscc": uscc, "name": "fault load", "roles": ["manufacturer"],
               "keys": [key.public()], "customs_code": "1402960077"}),
    );
    let (status, answer) = c.submit(0, &tx, true);
    assert_eq!(status, 200, "filing: {answer}");
    assert_eq!(
        answer["result"]["outcome"]["status"], "accepted",
        "{answer}"
    );
}

/// The client: one goods event after another, each to a node chosen by the seed, with
/// the nonce that node reports; records what the API acknowledged as committed.
fn load(
    c: &Endpoints,
    key: &KeyPair,
    seed: u64,
    stop: &AtomicBool,
    acked: &Mutex<Vec<Acknowledged>>,
) {
    let mut rng = Rng::new(seed ^ 0x10AD);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let node = rng.between(0, 4) as usize;
        let Some(nonce) = c
            .get(node, &format!("/v1/nonce/{}", key.public()))
            .and_then(|v| v["next_nonce"].as_u64())
        else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        n += 1;
        let tx = c.sign(
            key,
            nonce,
            "goods",
            "record",
            json!({"goods_id": format!("F-{seed}-{n}"), "kind": "produced"}),
        );
        let Some((status, answer)) = c.try_submit(node, &tx, true) else {
            continue; // the node is down or frozen: the client tries another
        };
        if status == 200 && answer["status"] == "committed" {
            acked.lock().expect("lock").push(Acknowledged {
                hash: c.tx_hash(&tx).to_hex(),
                height: answer["height"].as_u64().expect("height"),
            });
        }
    }
}

/// Runs the consortium under faults for `duration`, then checks convergence and that
/// nothing acknowledged was lost. Panics (with the seed) on any violation.
pub fn run(c: &mut Consortium, seed: u64, duration: Duration) -> FaultReport {
    eprintln!(
        "fault run: seed {seed}, {} s (rerun with CBEC_FAULT_SEED={seed})",
        duration.as_secs()
    );
    let mesh = c.route_through_mesh();
    c.start_all();
    c.wait_for("all four APIs", Duration::from_secs(60), |c| {
        (0..4).all(|i| c.height(i).is_some())
    });
    let key = c
        .endpoints()
        .client_key(&c.suite.tagged("fault-load", &seed.to_be_bytes()).0);
    file_enterprise(c, &key);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = Rng::new(seed);
    let mut faults = Vec::new();
    let started = Instant::now();
    // The client talks to the same processes through its own handle, while this
    // thread kills and restarts them.
    let endpoints = c.endpoints();
    let client = {
        let (stop, acked, key) = (stop.clone(), acked.clone(), key.clone());
        std::thread::spawn(move || load(&endpoints, &key, seed, &stop, &acked))
    };
    let mut cycle: Vec<usize> = Vec::new();
    while started.elapsed() < duration {
        if cycle.is_empty() {
            // The next five faults: each kind once, in a seeded order.
            cycle = (0..KINDS).collect();
            for i in (1..KINDS).rev() {
                cycle.swap(i, rng.between(0, i as u64 + 1) as usize);
            }
        }
        std::thread::sleep(Duration::from_millis(rng.between(1_000, 3_000)));
        let kind = cycle.pop().expect("a kind");
        faults.push(inject(c, &mesh, &mut rng, kind));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();

    // Convergence: every node at the same height with the same block and state.
    let acked = acked.lock().expect("lock").clone();
    let target = acked.iter().map(|a| a.height).max().unwrap_or(1);
    c.wait_for(
        &format!("every node at height {target} or more (seed {seed})"),
        Duration::from_secs(90),
        |c| (0..4).all(|i| c.height(i).is_some_and(|h| h >= target)),
    );
    let ids: Vec<_> = (0..4)
        .map(|i| c.block_id(i, target).expect("block at target"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "seed {seed}: nodes disagree at height {target}: {ids:?}"
    );
    // Nothing acknowledged is missing, on any node.
    for a in &acked {
        for i in 0..4 {
            let found = c
                .get(i, &format!("/v1/tx/{}", a.hash))
                .unwrap_or_else(|| panic!("seed {seed}: node {i} does not answer"));
            assert_eq!(
                (found["status"].as_str(), found["height"].as_u64()),
                (Some("committed"), Some(a.height)),
                "seed {seed}: transaction {} acknowledged at height {} is not there on node {i}: {found}",
                a.hash,
                a.height
            );
        }
    }
    // The chain's time is not ahead of the real clock by more than a proposal may be.
    let block = c.get(0, &format!("/v1/blocks/{target}")).expect("block");
    let block_ms = block["block"]["header"]["time_ms"]
        .as_u64()
        .expect("time_ms");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(
        block_ms <= now_ms + cbec_genesis::ConsensusParams::default().block_time_ahead_ms_max,
        "seed {seed}: block {target}'s time is {} ms ahead of the clock",
        block_ms - now_ms
    );
    // Nobody saw a validator sign two conflicting votes.
    for i in 0..4 {
        let metrics = c.endpoints().text(i, "/metrics").unwrap_or_default();
        let equivocations: f64 = metrics
            .lines()
            .find(|l| l.starts_with("cbec_equivocations_total"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("node {i} exports no equivocation counter:\n{metrics}"));
        assert_eq!(equivocations, 0.0, "seed {seed}: node {i} saw equivocation");
    }
    FaultReport {
        seed,
        faults,
        acknowledged: acked.len(),
        final_height: target,
    }
}
