//! Auditor proofs: verification time on one core and size, for a transaction in a block
//! of 1,000, a state key among 1,000,000, and a good with 20 events (each in a block of
//! 1,000 transactions).
//!
//! `cargo bench -p cbec-ledger`

#[path = "../tests/support/chain.rs"]
mod chain;

use std::time::Instant;

use cbec_ledger::goods::{self, EventKind};
use cbec_ledger::proof::{Proof, ProofFile, StateProof};
use cbec_ledger::sparse::{reference, SparseLeaf};
use chain::{key, Chain};

const RUNS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median microseconds per verification over `RUNS` runs of `reps` verifications.
fn time_verify(chain: &Chain, file: &ProofFile, reps: usize) -> f64 {
    let runs = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(file.verify(&chain.trust)).expect("verifies");
            }
            start.elapsed().as_secs_f64() * 1e6 / reps as f64
        })
        .collect();
    median(runs)
}

fn report(name: &str, chain: &Chain, file: &ProofFile, reps: usize) {
    let json = serde_json::to_vec(file).expect("json").len();
    let binary = file.to_bytes().len();
    let micros = time_verify(chain, file, reps);
    println!(
        "proofs/{name}: verify median {micros:.0} µs ({:.3} ms) on one core; {binary} bytes binary, {json} bytes JSON",
        micros / 1000.0
    );
}

fn main() {
    // A transaction in a block of 1,000.
    let mut chain = Chain::new();
    chain.filler = 999;
    let seller = key(50);
    let kinds = [
        EventKind::Produced,
        EventKind::Ordered,
        EventKind::Shipped,
        EventKind::Declared,
        EventKind::Cleared,
    ];
    for kind in kinds.into_iter().cycle().take(20) {
        chain.record(&seller, "91140200MA0GRK2220", "PARCEL-BENCH", kind);
    }
    let block = &chain.committed(10).block;
    assert_eq!(block.txs.len(), 1_000);
    let event_tx = block
        .txs
        .iter()
        .find(|t| t.body.call.chaincode == goods::CHAINCODE)
        .expect("the event")
        .hash(chain.trust.suite);
    report(
        "tx (block of 1,000 txs)",
        &chain,
        &chain.tx_file(&event_tx),
        2_000,
    );

    // A key among 1,000,000, present and absent.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..1_000_000u32)
        .map(|i| {
            (
                format!("ent/filing/{i:08}").into_bytes(),
                format!("filing record {i} ........................................").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let leaves: Vec<SparseLeaf> = reference::leaves(chain.trust.suite, &refs);
    let root = reference::root(chain.trust.suite, &leaves);
    let height = chain.height();
    let mut header = chain.committed(height).block.header.clone();
    header.state_root = root;
    let certificate = chain.certify(&header, &[0, 1, 2, 3]);
    for (name, key) in [
        ("state (present, 1,000,000 keys)", pairs[123_456].0.clone()),
        (
            "state (absent, 1,000,000 keys)",
            b"ent/filing/NOT-FILED".to_vec(),
        ),
    ] {
        let proof = reference::prove(chain.trust.suite, &leaves, &key);
        let value = refs
            .binary_search_by(|(k, _)| (*k).cmp(key.as_slice()))
            .ok()
            .map(|i| refs[i].1.to_vec());
        let file = ProofFile {
            format: cbec_ledger::proof::FORMAT_VERSION,
            chain_id: chain.trust.chain_id,
            set_changes: Vec::new(),
            proof: Proof::State(StateProof {
                key,
                value,
                proof,
                block: cbec_ledger::proof::CertifiedHeader {
                    header: header.clone(),
                    certificate: certificate.clone(),
                },
            }),
        };
        report(name, &chain, &file, 2_000);
    }

    // A good with 20 events.
    report(
        "provenance (20 events)",
        &chain,
        &chain.provenance_file("PARCEL-BENCH"),
        100,
    );
}
