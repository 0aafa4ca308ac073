//! Fuzz targets for every decoder that takes bytes from outside the node, and the seeds
//! they mutate.
//!
//! What belongs here: one function per target (`fn(&[u8])`, which must never panic,
//! hang or allocate without bound on any input), and valid sample encodings to start
//! from. The targets run as tests (`tests/targets.rs`): under `cargo test` each gets a
//! bounded time of random inputs and mutated samples (`CBEC_FUZZ_SECS`, default 3), and
//! under `cargo bolero test` a coverage-guided run as long as asked (see README).
//! Inputs that once failed are kept under `tests/regressions/` and replayed every run.
//!
//! What does not: the decoders themselves (each lives in its crate).

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::OnceLock;

use cbec_chaincode::{BlockInfo, Engine, MemoryState};
use cbec_ledger::proof::{ProofFile, TrustRoot, TrustedAgency};
use cbec_ledger::{codec, Block, Call, Hash, KeyPair, Suite, Transaction, TxBody};
use cbec_node::wire::{self, SyncRequest, SyncResponse, TxBatch};

const CHAIN: Hash = Hash([0xcb; 32]);
/// The suite of the fuzzed chain (decoding and checks run for both where cheap).
const SUITE: Suite = Suite::Ed25519Sha256;

fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32])
}

fn sample_tx(n: u8) -> Transaction {
    let k = key(n);
    Transaction::sign(
        TxBody {
            chain_id: CHAIN,
            sender: k.public(),
            nonce: u64::from(n),
            call: Call {
                chaincode: "goods".into(),
                method: "record".into(),
                args: cbec_chaincode::args_from_json(
                    "goods",
                    "record",
                    serde_json::json!({"goods_id": format!("G-{n}"), "kind": "produced"}),
                )
                .unwrap_or_default(),
            },
        },
        &k,
    )
}

/// Valid encodings for the targets to mutate (a fuzzer that starts from valid input
/// gets past the first length prefix).
pub fn samples() -> Vec<Vec<u8>> {
    let txs: Vec<Transaction> = (1..4).map(sample_tx).collect();
    vec![
        codec::encode(&txs[0]),
        codec::encode(&txs),
        codec::encode(&TxBatch(txs.clone())),
        codec::encode(&SyncRequest { from: 3, max: 64 }),
        codec::encode(&SyncResponse::default()),
        wire::envelope(7, &codec::encode(&wire::NetMessage::Status { height: 9 })),
        serde_json::to_vec(&txs).unwrap_or_default(),
        codec::encode(&sample_certified_block(txs)),
    ]
}

/// Block 1 of the fuzzed chain holding `txs`, certified by three of its four validators:
/// it passes every check of [`certified_blocks`], so mutations start from the inside.
fn sample_certified_block(txs: Vec<Transaction>) -> cbec_ledger::CertifiedBlock {
    use cbec_ledger::block::{result_leaves, tx_leaves};
    use cbec_ledger::{merkle, CommitCertificate, CommitSig, Header, Outcome, TxResult, VoteKind};
    let results: Vec<TxResult> = txs
        .iter()
        .map(|tx| TxResult {
            tx_hash: tx.hash(SUITE),
            outcome: Outcome::Accepted { events: vec![] },
        })
        .collect();
    let header = Header {
        chain_id: CHAIN,
        height: 1,
        time_ms: 1,
        previous: CHAIN,
        proposer: key(1).public(),
        tx_count: txs.len() as u64,
        tx_root: merkle::root(SUITE, &tx_leaves(&txs)),
        results_root: merkle::root(SUITE, &result_leaves(&results)),
        state_root: Hash::default(),
        validators_hash: validators().hash(SUITE),
    };
    let hash = header.hash(SUITE);
    let vote = cbec_ledger::vote_sign_bytes(&CHAIN, 1, 0, VoteKind::Precommit, Some(&hash));
    let signatures = (1..=3)
        .map(|n| CommitSig {
            validator: key(n).public(),
            signature: key(n).sign(&vote),
        })
        .collect();
    cbec_ledger::CertifiedBlock {
        block: Block {
            header,
            txs,
            results,
            last_commit: None,
        },
        certificate: CommitCertificate {
            height: 1,
            round: 0,
            block_hash: hash,
            signatures,
        },
    }
}

/// Canonical transactions and batches of them (the API's binary bodies, pushes):
/// decoding never panics, and what decodes re-encodes to the same bytes (one encoding
/// per value), and verifies or is refused without panicking.
pub fn transactions(bytes: &[u8]) {
    if let Ok(tx) = codec::decode::<Transaction>(bytes) {
        assert_eq!(codec::encode(&tx), bytes, "a transaction has one encoding");
        for suite in Suite::ALL {
            let _ = tx.clone().verify(&CHAIN, suite);
        }
    }
    if let Ok(txs) = codec::decode::<Vec<Transaction>>(bytes) {
        assert_eq!(codec::encode(&txs), bytes);
        for suite in Suite::ALL {
            let _ = cbec_ledger::verify_all(txs.clone(), &CHAIN, suite);
        }
    }
}

/// JSON bodies of the API (one transaction or an array).
pub fn api_json(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Transaction>(bytes).map(|t| t.verify(&CHAIN, SUITE));
    let _ = serde_json::from_slice::<Vec<Transaction>>(bytes);
}

/// Blocks as sync serves them: decoded, checked against their header, hashed.
pub fn blocks(bytes: &[u8]) {
    if let Ok(block) = codec::decode::<Block>(bytes) {
        assert_eq!(codec::encode(&block), bytes, "a block has one encoding");
        for suite in Suite::ALL {
            let _ = block.check_body(suite);
            let _ = block.hash(suite);
        }
    }
}

/// Certified blocks as `cbec stats index` reads them from a node it does not trust:
/// decoded, then checked as the block after genesis; never a panic.
pub fn certified_blocks(bytes: &[u8]) {
    if let Ok(block) = codec::decode::<cbec_ledger::CertifiedBlock>(bytes) {
        assert_eq!(
            codec::encode(&block),
            bytes,
            "a certified block has one encoding"
        );
        if let Ok(mut follower) = cbec_ledger::Follower::new(trust().clone()) {
            let _ = follower.set_changed(&block.block.header);
            let _ = follower.accept(&block);
        }
    }
}

/// Whether the fuzzed chain's follower accepts `block` as its first.
pub fn accepts_certified_block(block: &cbec_ledger::CertifiedBlock) -> bool {
    cbec_ledger::Follower::new(trust().clone()).is_ok_and(|mut f| f.accept(block).is_ok())
}

/// Gossip as a peer sends it: the envelope, then the edge (decode, block named,
/// body against header, signature).
pub fn gossip(bytes: &[u8]) {
    if let Ok(message) = wire::open(bytes) {
        let _ = wire::inbound(message, &CHAIN, SUITE);
    }
    let _ = wire::inbound(bytes, &CHAIN, SUITE);
}

/// Request-response frames: sync requests and answers, transaction pushes.
pub fn frames(bytes: &[u8]) {
    let _ = codec::decode::<SyncRequest>(bytes);
    let _ = codec::decode::<SyncResponse>(bytes).map(|r| {
        for (block, certificate) in &r.blocks {
            let _ = block.check_body(SUITE);
            let _ = certificate.verify(&CHAIN, &validators());
        }
    });
    let _ = codec::decode::<TxBatch>(bytes);
}

fn validators() -> cbec_ledger::ValidatorSet {
    cbec_ledger::ValidatorSet::new(
        (1..=4)
            .map(|n| cbec_ledger::Validator {
                key: key(n).public(),
                power: 1,
            })
            .collect(),
    )
    .unwrap_or_else(|_| unreachable!("four distinct keys of power 1 are a valid set"))
}

fn trust() -> &'static TrustRoot {
    static TRUST: OnceLock<TrustRoot> = OnceLock::new();
    TRUST.get_or_init(|| TrustRoot {
        chain_id: CHAIN,
        suite: SUITE,
        agencies: ["customs", "tax", "forex", "commerce"]
            .iter()
            .zip(1..)
            .map(|(name, n)| TrustedAgency {
                name: (*name).into(),
                validator_key: key(n).public(),
                voting_power: 1,
            })
            .collect(),
    })
}

/// Proof files as an auditor receives them, JSON or binary, then verified: never a
/// panic, and a malformed file is an error naming where.
pub fn proof_files(bytes: &[u8]) {
    if let Ok(file) = ProofFile::parse(bytes) {
        let _ = file.verify(trust());
    }
    if let Ok(file) = ProofFile::from_bytes(bytes) {
        assert_eq!(file.to_bytes(), bytes, "a binary proof has one encoding");
    }
}

/// Genesis documents, node configs and key files as operators write them.
pub fn operator_files(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        let _ = cbec_genesis::parse_key(bytes, Path::new("fuzz.key"));
        return;
    };
    if let Ok(genesis) = cbec_genesis::Genesis::from_json(text) {
        let _ = genesis.validate(cbec_chaincode::catalog::check_config);
        let _ = genesis.chain_id();
    }
    let _ = cbec_genesis::NodeConfig::parse(text, Path::new("/fuzz/node.toml"));
    let _ = cbec_genesis::parse_key(bytes, Path::new("fuzz.key"));
}

/// Every chaincode method's arguments, from any bytes: decoding (and showing as JSON)
/// never panics, and executing a transaction with them is a result, never `PANIC`.
pub fn chaincode_args(bytes: &[u8]) {
    let Some((&pick, args)) = bytes.split_first() else {
        return;
    };
    let methods = methods();
    let (chaincode, method) = methods[usize::from(pick) % methods.len()];
    let _ = cbec_chaincode::args_to_json(chaincode, method, args);
    let (engine, state, agency) = ledger();
    let tx = Transaction::sign(
        TxBody {
            chain_id: CHAIN,
            sender: agency.public(),
            nonce: 0,
            call: Call {
                chaincode: chaincode.into(),
                method: method.into(),
                args: args.to_vec(),
            },
        },
        agency,
    );
    let Ok(verified) = tx.verify(&CHAIN, SUITE) else {
        return;
    };
    let block = BlockInfo {
        height: 1,
        time_ms: 1_795_680_000_000,
        suite: SUITE,
    };
    if let Ok(outcome) = engine.execute_block(state, block, &[verified]) {
        if let cbec_ledger::Outcome::Rejected { rule, message } = &outcome.results[0].outcome {
            assert_ne!(rule, "PANIC", "{chaincode}.{method} panicked: {message}");
        }
    }
}

/// Every method of every built-in chaincode.
fn methods() -> &'static [(&'static str, &'static str)] {
    static METHODS: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    METHODS.get_or_init(|| {
        use cbec_chaincode::{customs, enterprise, forex, goods, governance, tax};
        let families: [(&str, &[&str]); 6] = [
            ("governance", governance::METHODS),
            ("enterprise", enterprise::METHODS),
            ("goods", goods::METHODS),
            ("customs", customs::METHODS),
            ("forex", forex::METHODS),
            ("tax", tax::METHODS),
        ];
        families
            .iter()
            .flat_map(|(id, methods)| methods.iter().map(move |m| (*id, *m)))
            .collect()
    })
}

fn ledger() -> (&'static Engine, &'static MemoryState, &'static KeyPair) {
    static LEDGER: OnceLock<(Engine, MemoryState, KeyPair)> = OnceLock::new();
    let (engine, state, agency) = LEDGER.get_or_init(|| {
        let engine = Engine::from_configs(&cbec_chaincode::catalog::default_configs())
            .unwrap_or_else(|e| unreachable!("the catalog is valid: {e}"));
        let agency = key(77);
        let mut state = MemoryState::default();
        state.apply(&Engine::genesis_writes(&[(
            "commerce".to_string(),
            vec![agency.public()],
        )]));
        (engine, state, agency)
    });
    (engine, state, agency)
}
