//! The engine: overlays, nonces, panic isolation, determinism, and one imported parcel
//! end to end.

mod harness;

use cbec_chaincode::{
    BlockInfo, Chaincode, Context, Engine, ExecError, InvalidBlock, MemoryState, NotPermitted,
    RuleError, StateError, StateRead,
};
use cbec_ledger::{codec, Event, Outcome};
use harness::*;
use proptest::prelude::*;
use serde_json::json;

fn commerce(l: &Ledger) -> cbec_ledger::KeyPair {
    l.agency("commerce").clone()
}

fn args(chaincode: &str, method: &str, value: serde_json::Value) -> Vec<u8> {
    cbec_chaincode::args_from_json(chaincode, method, value).expect("encodes")
}

/// Commerce puts `uscc` on the credit negative list.
fn list_negative(l: &mut Ledger, uscc: &str) -> cbec_ledger::Transaction {
    let c = commerce(l);
    l.sign(
        &c,
        "enterprise",
        "list_negative",
        args(
            "enterprise",
            "list_negative",
            json!({"uscc": uscc, "reason": "fraud"}),
        ),
    )
}

#[test]
fn rejected_writes_are_dropped_and_accepted_ones_seen_by_the_next_tx() {
    let mut l = Ledger::new();
    let seller = l.file(
        2,
        "91140200MA0GRK2220",
        "1402960002",
        &["seller", "manufacturer"],
    );
    let first = l.sign(
        &seller,
        "goods",
        "record",
        args(
            "goods",
            "record",
            json!({"goods_id": "G", "kind": "produced"}),
        ),
    );
    // Same block: a bad event (wrong role) writes nothing; the next one builds on the first.
    let bad = l.sign(
        &seller,
        "goods",
        "record",
        args("goods", "record", json!({"goods_id": "X", "kind": "paid"})),
    );
    let results = l.block(vec![first, bad]);
    let hash = attr(accepted(&results[0]), "goods_event", "event_hash").expect("hash");
    rejected(&results[1], "ROLE");
    assert!(l
        .get::<cbec_chaincode::goods::Head>("goods/head/X")
        .is_none());
    let next = l.sign(
        &seller,
        "goods",
        "record",
        args(
            "goods",
            "record",
            json!({"goods_id": "G", "kind": "ordered", "prev": hash}),
        ),
    );
    let again = l.sign(
        &seller,
        "goods",
        "record",
        args(
            "goods",
            "record",
            json!({"goods_id": "G", "kind": "ordered", "prev": hash}),
        ),
    );
    let results = l.block(vec![next, again]);
    accepted(&results[0]);
    rejected(&results[1], "GOODS-PREV"); // it saw the first one's write
}

#[test]
fn a_wrong_nonce_makes_the_block_invalid() {
    let l = Ledger::new();
    let c = commerce(&l);
    let tx = |nonce| {
        cbec_ledger::Transaction::sign(
            cbec_ledger::TxBody {
                chain_id: CHAIN,
                sender: c.public(),
                nonce,
                call: cbec_ledger::Call {
                    chaincode: "goods".into(),
                    method: "record".into(),
                    args: vec![],
                },
            },
            &c,
        )
        .verify(&CHAIN, SUITE)
        .expect("signed")
    };
    let block = BlockInfo {
        height: 1,
        time_ms: T0,
        suite: SUITE,
    };
    assert!(l
        .engine
        .execute_block(&l.state, block, &[tx(0), tx(1)])
        .is_ok());
    let err = l
        .engine
        .execute_block(&l.state, block, &[tx(0), tx(0)])
        .expect_err("replayed nonce");
    assert_eq!(
        err,
        ExecError::Invalid(InvalidBlock::Nonce {
            index: 1,
            expected: 1,
            found: 0
        })
    );
    assert!(l.engine.execute_block(&l.state, block, &[tx(5)]).is_err());
}

struct Faulty;
impl Chaincode for Faulty {
    fn id(&self) -> &'static str {
        "goods"
    }
    fn version(&self) -> u32 {
        1
    }
    fn execute(
        &self,
        ctx: &mut Context<'_, '_>,
        method: &str,
        _: &[u8],
    ) -> Result<Vec<Event>, RuleError> {
        ctx.put("goods/head/SHOULD-NOT-STAY", &1u64)?;
        if method == "panic" {
            let v: Vec<u8> = vec![];
            let _ = v[3]; // a bug in a rule
        }
        if method == "escape" {
            ctx.put("ent/filing/HIJACK", &1u64)?;
        }
        Ok(vec![])
    }
}

#[test]
fn a_panicking_rule_is_recorded_as_a_rejection_and_writes_nothing() {
    let mut l = Ledger::new();
    l.engine = Engine::from_configs(&cbec_chaincode::catalog::default_configs())
        .expect("catalog")
        .with_chaincode(Box::new(Faulty));
    let c = commerce(&l);
    let m = rejected(&l.run_raw(&c, "goods", "panic", vec![]), "PANIC");
    assert!(m.contains("index out of bounds"), "{m}");
    assert!(l.get::<u64>("goods/head/SHOULD-NOT-STAY").is_none());
    rejected(&l.run_raw(&c, "goods", "escape", vec![]), "INTERNAL");
    assert!(l.get::<u64>("ent/filing/HIJACK").is_none());
    // The engine keeps working.
    accepted(&l.run_raw(&c, "goods", "fine", vec![]));
}

/// Committed state whose reads fail once `fail_after` of them have succeeded: a disk
/// going bad under the node.
struct FailingDisk {
    state: MemoryState,
    reads: std::cell::Cell<u32>,
    fail_after: u32,
}

impl StateRead for FailingDisk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let n = self.reads.get();
        self.reads.set(n + 1);
        if n >= self.fail_after {
            return Err(StateError("I/O error (injected)".into()));
        }
        self.state.get(key)
    }
}

/// A read that fails is never a rule's outcome: it would be this node's disk fault
/// recorded on the ledger (a `PANIC` or a rejection the other nodes do not make). The
/// block is abandoned instead, whichever read fails, including ones a rule makes.
#[test]
fn a_failed_state_read_abandons_the_block_instead_of_recording_a_result() {
    let mut l = Ledger::new();
    let seller = l.file(2, "91140200MA0GRK2220", "1402960002", &["manufacturer"]);
    let produced = l.sign(
        &seller,
        "goods",
        "record",
        args(
            "goods",
            "record",
            json!({"goods_id": "G", "kind": "produced"}),
        ),
    );
    let verified = produced.verify(&CHAIN, SUITE).expect("signed");
    let block = BlockInfo {
        height: 2,
        time_ms: T0 + 5_000,
        suite: SUITE,
    };
    let healthy = FailingDisk {
        state: l.state.clone(),
        reads: std::cell::Cell::new(0),
        fail_after: u32::MAX,
    };
    let outcome = l
        .engine
        .execute_block(&healthy, block, std::slice::from_ref(&verified))
        .expect("a healthy disk");
    accepted(&outcome.results[0]);
    let reads = healthy.reads.get();
    assert!(
        reads > 3,
        "the nonce, the caller and the rule all read state"
    );
    for fail_after in 0..reads {
        let disk = FailingDisk {
            state: l.state.clone(),
            reads: std::cell::Cell::new(0),
            fail_after,
        };
        match l
            .engine
            .execute_block(&disk, block, std::slice::from_ref(&verified))
        {
            Err(ExecError::Storage(e)) => assert!(e.to_string().contains("injected"), "{e}"),
            other => panic!("read {fail_after} failed, yet the block gave {other:?}"),
        }
    }
}

/// Random sequences of transactions run twice give byte-identical results and writes.
fn random_block(l: &mut Ledger, ops: &[(u8, u8)]) -> Vec<cbec_ledger::Transaction> {
    let signers: Vec<cbec_ledger::KeyPair> = (0..4).map(|i| key(i + 1)).collect();
    let c = commerce(l);
    let mut txs = Vec::new();
    for (i, (op, who)) in ops.iter().enumerate() {
        let (signer, chaincode, method, value) = match op % 4 {
            0 => (
                &c,
                "enterprise",
                "approve_filing",
                json!({"uscc": "91140200MA0GRK2220", "name": "x",
                "roles": ["manufacturer"], "keys": [signers[usize::from(*who % 4)].public()], "customs_code": "1402960002"}),
            ),
            1 => (
                &signers[usize::from(*who % 4)],
                "goods",
                "record",
                json!({"goods_id": format!("G{}", who % 3), "kind": "produced"}),
            ),
            2 => (
                &c,
                "enterprise",
                "list_negative",
                json!({"uscc": "91140200MA0GRK2220", "reason": format!("r{i}")}),
            ),
            _ => (
                &c,
                "enterprise",
                "delist_negative",
                json!({"uscc": "91140200MA0GRK2220", "reason": "ok"}),
            ),
        };
        let encoded = args(chaincode, method, value);
        let signer = signer.clone();
        txs.push(l.sign(&signer, chaincode, method, encoded));
    }
    txs
}

proptest! {
    #[test]
    fn execution_is_deterministic(ops in proptest::collection::vec((any::<u8>(), any::<u8>()), 1..40)) {
        let mut a = Ledger::new();
        let txs = random_block(&mut a, &ops);
        let verified: Vec<_> = txs.iter().cloned().map(|t| t.verify(&CHAIN, SUITE).expect("signed")).collect();
        let block = BlockInfo {
            height: 1,
            time_ms: T0,
            suite: SUITE,
        };
        // Built twice from the same candidates (keys never filed are left out, and
        // every later transaction of a listed seller), then validated.
        let first = a.engine.build_block(&a.state, block, verified.clone()).expect("healthy");
        let b = Ledger::new();
        let second = b.engine.build_block(&b.state, block, verified).expect("healthy");
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(codec::encode(&first.outcome.results), codec::encode(&second.outcome.results));
        let validated = b.engine.execute_block(&b.state, block, &second.txs).expect("valid");
        prop_assert_eq!(&validated, &second.outcome);
    }
}

#[test]
fn one_imported_parcel_end_to_end() {
    let mut l = Ledger::new();
    let customs = l.agency("customs").clone();
    let platform = l.file(1, "914403001922038216", "4403960001", &["platform"]);
    let seller = l.file(
        2,
        "91140200MA0GRK2220",
        "1402960002",
        &["seller", "manufacturer"],
    );
    let codes = [
        "91110000MA00PAY01",
        "91140200MA0LGT001",
        "91140200MA0AGT001",
    ];
    let usccs: Vec<String> = codes
        .iter()
        .map(|body| cbec_chaincode::codes::uscc_with_check(body).expect("a 17-character USCC body"))
        .collect();
    let payment = l.file(3, &usccs[0], "1100960003", &["payment"]);
    let logistics = l.file(4, &usccs[1], "1402960004", &["logistics"]);
    let agent = l.file(5, &usccs[2], "1402960005", &["agent"]);
    let identity = l.file(
        6,
        &cbec_chaincode::codes::uscc_with_check("91110000MA0JDN001").expect("uscc"),
        "1100960009",
        &["identity"],
    );
    // The identity service attests the buyer tag the documents carry.
    let attestation = cbec_chaincode::identity::Attestation::sign(
        cbec_chaincode::identity::AttestationBody {
            buyer_tag: tag(1),
            id_type: "1".into(),
            verdict: cbec_chaincode::identity::Verdict::Verified,
            valid_from_ms: 0,
            valid_until_ms: u64::MAX,
            key_version: "v1".into(),
            service: identity.public(),
        },
        &identity,
    );

    let mut prev: Option<String> = None;
    // Each event hands the parcel to the party that records the next one (custody).
    let mut step = |l: &mut Ledger, signer: &cbec_ledger::KeyPair, kind: &str, to: &str| {
        let mut value = json!({"goods_id": "PARCEL-0001", "kind": kind});
        if let Some(p) = &prev {
            value["prev"] = json!(p);
        }
        if !to.is_empty() {
            value["attributes"] = json!({ "handover_to": to });
        }
        let r = l.run(signer, "goods", "record", value);
        prev = attr(accepted(&r), "goods_event", "event_hash");
    };
    step(&mut l, &seller, "produced", "");
    step(&mut l, &seller, "ordered", "1100960003");
    let order = json!({"order_no": "O-1", "ebp_code": "4403960001", "ebc_code": "1402960002",
        "goods_value_fen": 100_000, "freight_fen": 1_000, "tax_total_fen": 9_191, "discount_fen": 500,
        "actual_paid_fen": 109_691, "pay_code": "1100960003", "pay_transaction_id": "PAY-O-1",
        "logistics_code": "1402960004", "agent_code": "1402960005", "buyer_id_type": "1", "buyer_tag": tag(1),
        "consignee_name_tag": tag(2), "consignee_phone_tag": tag(3), "consignee_address_tag": tag(4),
        "lines": [{"commodity_code": "3304990099", "gtin": "6901234567892", "quantity": 2, "unit_price_fen": 50_000}]});
    accepted(&l.run(&platform, "customs", "submit_order", order));
    accepted(&l.run(
        &payment,
        "customs",
        "submit_payment",
        json!({"order_no": "O-1", "ebp_code": "4403960001",
        "pay_code": "1100960003", "pay_transaction_id": "PAY-O-1", "amount_paid_fen": 109_691,
        "payer_tag": tag(1)}),
    ));
    step(&mut l, &payment, "paid", "1402960004");
    accepted(&l.run(&logistics, "customs", "submit_waybill", json!({"logistics_code": "1402960004", "logistics_no": "SF100",
        "ebp_code": "4403960001", "order_no": "O-1", "consignee_name_tag": tag(2), "consignee_phone_tag": tag(3), "consignee_address_tag": tag(4)})));
    step(&mut l, &logistics, "shipped", "1402960005");
    accepted(&l.run(&agent, "customs", "submit_list", json!({"order_no": "O-1", "ebp_code": "4403960001", "ebc_code": "1402960002",
        "logistics_code": "1402960004", "logistics_no": "SF100", "buyer_id_type": "1", "buyer_tag": tag(1),
        "supervision_mode": "9610", "vat_rate_bp": 1300, "consumption_rate_bp": 0, "tariff_rate_bp": 0,
        "buyer_attestation": attestation})));
    step(&mut l, &agent, "declared", "1402960004");
    let r = l.run(
        &customs,
        "customs",
        "clear",
        json!({"ebp_code": "4403960001", "order_no": "O-1"}),
    );
    assert_eq!(
        attr(accepted(&r), "clearance", "status").as_deref(),
        Some("released")
    );
    assert_eq!(
        attr(accepted(&r), "clearance", "tax_due_fen").as_deref(),
        Some("9191")
    );
    step(&mut l, &customs, "cleared", "");
    step(&mut l, &logistics, "delivered", "4403960001");
    step(&mut l, &platform, "evaluated", "");

    // The good's chain: 8 events, each naming the previous one, ending at the head.
    let head: cbec_chaincode::goods::Head = l.get("goods/head/PARCEL-0001").expect("head");
    assert_eq!(head.count, 8);
    let mut at = Some(head.last);
    let mut kinds = Vec::new();
    while let Some(hash) = at {
        let event: cbec_chaincode::goods::StoredEvent =
            l.get(&format!("goods/event/{hash}")).expect("event");
        assert_eq!(event.hash(SUITE), hash, "stored event hashes to its key");
        kinds.push(format!("{:?}", event.kind));
        at = event.prev;
    }
    kinds.reverse();
    assert_eq!(
        kinds,
        [
            "Produced",
            "Ordered",
            "Paid",
            "Shipped",
            "Declared",
            "Cleared",
            "Delivered",
            "Evaluated"
        ]
    );
    // An event that does not name the head cannot be appended.
    let stale = l.run(
        &seller,
        "goods",
        "record",
        json!({"goods_id": "PARCEL-0001", "kind": "returned"}),
    );
    assert!(matches!(stale.outcome, Outcome::Rejected { ref rule, .. } if rule == "GOODS-PREV"));
}

/// The proposer's building leaves out what a validator would refuse at its place, and
/// a sender's later transactions with it; the block that comes out validates with the
/// same outcome.
#[test]
fn building_leaves_out_what_validators_refuse_and_what_follows_it() {
    let mut l = Ledger::new();
    let seller = l.file(2, "91140200MA0GRK2220", "1402960002", &["manufacturer"]);
    let stranger = key(77);
    let produced = |id: &str| {
        args(
            "goods",
            "record",
            json!({"goods_id": id, "kind": "produced"}),
        )
    };
    let a = l.sign(&seller, "goods", "record", produced("A"));
    let unknown = l.sign(&stranger, "goods", "record", produced("S"));
    // Commerce lists the seller; the seller's next transaction cannot follow it.
    let listing = list_negative(&mut l, "91140200MA0GRK2220");
    let b = l.sign(&seller, "goods", "record", produced("B"));
    let skipped_nonce = l.sign(&seller, "goods", "record", produced("C"));
    let verified: Vec<_> = [a, unknown, listing, b, skipped_nonce]
        .into_iter()
        .map(|t| t.verify(&CHAIN, SUITE).expect("signed"))
        .collect();
    let block = BlockInfo {
        height: 2,
        time_ms: T0 + 5_000,
        suite: SUITE,
    };
    let built = l
        .engine
        .build_block(&l.state, block, verified.clone())
        .expect("healthy state");
    let kept: Vec<_> = built.txs.iter().map(|t| t.hash()).collect();
    assert_eq!(kept, vec![verified[0].hash(), verified[2].hash()]);
    let reasons: Vec<_> = built.dropped.iter().map(|(_, why)| why.clone()).collect();
    assert_eq!(
        reasons,
        vec![
            InvalidBlock::Sender {
                index: 1,
                reason: NotPermitted::Unknown(stranger.public())
            },
            InvalidBlock::Sender {
                index: 2,
                reason: NotPermitted::Listed("91140200MA0GRK2220".into())
            },
            InvalidBlock::Nonce {
                index: 2,
                expected: 1,
                found: 2
            },
        ]
    );
    let validated = l
        .engine
        .execute_block(&l.state, block, &built.txs)
        .expect("the built block validates");
    assert_eq!(validated, built.outcome);
    // The same candidates as a block are invalid at the first stranger.
    assert_eq!(
        l.engine.execute_block(&l.state, block, &verified),
        Err(ExecError::Invalid(InvalidBlock::Sender {
            index: 1,
            reason: NotPermitted::Unknown(stranger.public())
        }))
    );
}

/// A sender's standing is kept for the rest of a block (the engine's own test shows
/// it is used), but a listing in the block still stops the sender's transactions after
/// it, when the block is validated as when it is built (the test above).
#[test]
fn a_listing_stops_the_senders_later_transactions_in_the_block_it_is_in() {
    let produced = |id: &str| {
        args(
            "goods",
            "record",
            json!({"goods_id": id, "kind": "produced"}),
        )
    };
    let block = BlockInfo {
        height: 2,
        time_ms: T0 + 5_000,
        suite: SUITE,
    };
    let verify = |txs: Vec<cbec_ledger::Transaction>| -> Vec<_> {
        txs.into_iter()
            .map(|t| t.verify(&CHAIN, SUITE).expect("signed"))
            .collect()
    };
    // A block of three: the seller's first, commerce listing the seller, the seller's
    // next. Invalid at the third: the listing is seen although the seller's standing
    // was read before it.
    let mut l = Ledger::new();
    let seller = l.file(2, "91140200MA0GRK2220", "1402960002", &["manufacturer"]);
    let listing = list_negative(&mut l, "91140200MA0GRK2220");
    let seller_first = l.sign(&seller, "goods", "record", produced("D"));
    let seller_next = l.sign(&seller, "goods", "record", produced("E"));
    let listed = verify(vec![seller_first, listing, seller_next]);
    assert_eq!(
        l.engine.execute_block(&l.state, block, &listed),
        Err(ExecError::Invalid(InvalidBlock::Sender {
            index: 2,
            reason: NotPermitted::Listed("91140200MA0GRK2220".into())
        }))
    );
}
