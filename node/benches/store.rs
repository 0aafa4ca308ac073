//! The cost of committing a block as the state grows: a block of 1,000 goods events
//! (a new event record, a new or moved goods head and the sender's nonce each: 3,000
//! writes) prepared (state tree root) and applied (RocksDB write, synced) on a store
//! that already holds 10^5, 10^6 and 10^7 keys, on one core.
//!
//! `cargo bench -p cbec-node` (all three sizes; the 10^7 store takes a few minutes to
//! build). `CBEC_BENCH_KEYS=100000,1000000` picks sizes, `CBEC_BENCH_BLOCKS=N` the
//! blocks measured (30), and `CBEC_BENCH_RESIDENT=N` gives the store a state-tree
//! budget of N keys (`[store] tree_resident_keys`), so evicted subtrees are read back
//! from the `leaves` family.

use std::time::Instant;

use cbec_chaincode::Writes;
use cbec_genesis::{synthetic, SyntheticState};
use cbec_ledger::{
    merkle, Block, CommitCertificate, Hash, Header, PublicKey, Transaction, TxResult,
};
use cbec_node::store::{Store, StoreOptions};

const BLOCKS: u64 = 30;
const TXS: u64 = 1_000;

/// The benchmark's chain suite (the default).
const SUITE: cbec_ledger::Suite = cbec_ledger::Suite::Ed25519Sha256;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A goods event's writes: its record (new), its good's head, the sender's nonce.
fn writes(height: u64) -> Writes {
    let mut w = Writes::new();
    for i in 0..TXS {
        let n = height * TXS + i;
        let event = SUITE.tagged("bench", &n.to_be_bytes());
        w.insert(
            format!("goods/event/{event}").into_bytes(),
            Some(vec![b'e'; 180]),
        );
        w.insert(
            format!("goods/head/BENCH-{}", n % 5_000).into_bytes(),
            Some(event.0.to_vec()),
        );
        w.insert(
            format!("sys/nonce/{:064x}", i % 64).into_bytes(),
            Some(height.to_be_bytes().to_vec()),
        );
    }
    w
}

fn block(store: &Store, height: u64, root: Hash) -> Block {
    let parent = store.header(height - 1).expect("read");
    Block {
        header: Header {
            chain_id: Hash([1; 32]),
            height,
            time_ms: height,
            previous: parent.as_ref().map_or(Hash([1; 32]), |p| p.hash(SUITE)),
            proposer: PublicKey::Ed25519([2; 32]),
            tx_count: 0,
            tx_root: merkle::root::<Vec<u8>>(SUITE, &[]),
            results_root: merkle::root::<Vec<u8>>(SUITE, &[]),
            state_root: root,
            validators_hash: Hash::default(),
        },
        txs: Vec::<Transaction>::new(),
        results: Vec::<TxResult>::new(),
        last_commit: None,
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value}: not a whole number"),
    }
}

fn run(keys: u64, blocks: u64, resident: Option<u64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions {
        tree_resident_keys: resident.map(|n| n as usize),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), &Hash([1; 32]), options).expect("open");
    let built = Instant::now();
    store
        .init_genesis_with(
            &Writes::new(),
            &mut synthetic::entries(SUITE, SyntheticState { seed: 1, keys }),
        )
        .expect("synthetic state");
    let build_s = built.elapsed().as_secs_f64();
    let (mut prepare, mut apply) = (Vec::new(), Vec::new());
    for h in 1..=blocks {
        let w = writes(h);
        let start = Instant::now();
        let prepared = store.prepare_state(h, &w).expect("prepare");
        prepare.push(start.elapsed().as_secs_f64() * 1e3);
        let b = block(&store, h, prepared.root);
        let certificate = CommitCertificate {
            height: h,
            round: 0,
            block_hash: b.hash(SUITE),
            signatures: Vec::new(),
        };
        let start = Instant::now();
        store
            .apply_parts(b, certificate, w, prepared)
            .expect("apply");
        apply.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (p, a) = (median(prepare), median(apply));
    let tree = store.memory().tree;
    println!(
        "store/commit-1000-tx @ {keys:>10} keys: prepare {p:6.1} ms + apply {a:6.1} ms = {:6.1} ms per block ({:5.1} µs per tx); \
         tree {} nodes, {} leaves, {} evicted; synthetic state built in {build_s:.1} s",
        p + a,
        (p + a) * 1e3 / TXS as f64,
        tree.nodes,
        tree.leaves,
        tree.evicted,
    );
}

fn main() {
    let sizes: Vec<u64> = std::env::var("CBEC_BENCH_KEYS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 10_000_000]);
    let blocks = env_number("CBEC_BENCH_BLOCKS").unwrap_or(BLOCKS).max(1);
    let resident = env_number("CBEC_BENCH_RESIDENT");
    if let Some(n) = resident {
        println!("store: the state tree keeps at most {n} keys' leaves in memory");
    }
    for keys in sizes {
        run(keys, blocks, resident);
    }
}
