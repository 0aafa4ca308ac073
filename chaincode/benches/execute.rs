//! Executed transactions per second on in-memory state, one core: goods events alone,
//! a WebAssembly rule deployed through governance (bonded display trade, in wasmi), and
//! a mix of filings, goods events and clearances with their three documents.
//! Signatures are checked before the timed part (the node verifies them at admission).
//!
//! `cargo bench -p cbec-chaincode`

use std::time::Instant;

use cbec_chaincode::{args_from_json, catalog, BlockInfo, Engine, MemoryState};
use cbec_ledger::{Call, Hash, KeyPair, Transaction, TxBody, VerifiedTransaction};
use serde_json::{json, Value};

const CHAIN: Hash = Hash([0xcb; 32]);
const T0: u64 = 1_795_680_000_000;

struct World {
    engine: Engine,
    state: MemoryState,
    nonces: std::collections::BTreeMap<cbec_ledger::PublicKey, u64>,
}

/// The benchmark's chain suite (the default).
const SUITE: cbec_ledger::Suite = cbec_ledger::Suite::Ed25519Sha256;

fn key(n: u32) -> KeyPair {
    let mut seed = [9u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    KeyPair::from_seed(&seed)
}

fn tag(n: u32) -> String {
    format!("v1:{}", hex_of(n))
}

fn hex_of(n: u32) -> String {
    SUITE.tagged("bench", &n.to_be_bytes()).to_hex()
}

fn uscc(body: &str) -> String {
    cbec_chaincode::codes::uscc_with_check(body).expect("a 17-character USCC body")
}

impl World {
    fn new() -> World {
        let engine = Engine::from_configs(&catalog::default_configs()).expect("catalog");
        let agencies: Vec<(String, Vec<_>)> = ["customs", "tax", "forex", "commerce"]
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), vec![key(100 + i as u32).public()]))
            .collect();
        let mut state = MemoryState::default();
        state.apply(&Engine::genesis_writes(&agencies));
        World {
            engine,
            state,
            nonces: Default::default(),
        }
    }

    fn tx(
        &mut self,
        signer: &KeyPair,
        chaincode: &str,
        method: &str,
        args: Value,
    ) -> VerifiedTransaction {
        let nonce = self.nonces.entry(signer.public()).or_insert(0);
        let body = TxBody {
            chain_id: CHAIN,
            sender: signer.public(),
            nonce: *nonce,
            call: Call {
                chaincode: chaincode.into(),
                method: method.into(),
                args: args_from_json(chaincode, method, args).expect("args"),
            },
        };
        *nonce += 1;
        Transaction::sign(body, signer)
            .verify(&CHAIN, SUITE)
            .expect("valid")
    }

    fn commit(&mut self, height: u64, txs: &[VerifiedTransaction]) -> f64 {
        let started = Instant::now();
        let outcome = self
            .engine
            .execute_block(
                &self.state,
                BlockInfo {
                    height,
                    time_ms: T0 + height * 1000,
                    suite: SUITE,
                },
                txs,
            )
            .expect("valid block");
        let elapsed = started.elapsed().as_secs_f64();
        let rejected = outcome.results.iter().filter(|r| !r.is_accepted()).count();
        assert_eq!(
            rejected,
            0,
            "{:?}",
            outcome.results.iter().find(|r| !r.is_accepted())
        );
        self.state.apply(&outcome.writes);
        txs.len() as f64 / elapsed
    }
}

fn file(
    w: &mut World,
    n: u32,
    uscc: &str,
    code: &str,
    roles: &[&str],
) -> (VerifiedTransaction, KeyPair) {
    let k = key(n);
    let commerce = key(103);
    let tx = w.tx(
        &commerce,
        "enterprise",
        "approve_filing",
        json!({"uscc": uscc, "name": "bench",
        "roles": roles, "keys": [k.public()], "customs_code": code}),
    );
    (tx, k)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let block_size = 5_000u32;
    let runs = 9;

    // Goods events: each a new good's first event from one manufacturer.
    let mut goods = Vec::new();
    for run in 0..runs {
        let mut w = World::new();
        let (filing, maker) = file(
            &mut w,
            1,
            "91140200MA0GRK2220",
            "1402960002",
            &["manufacturer"],
        );
        w.commit(1, &[filing]);
        let txs: Vec<_> = (0..block_size)
            .map(|i| {
                w.tx(
                    &maker,
                    "goods",
                    "record",
                    json!({"goods_id": format!("G-{run}-{i}"), "kind": "produced",
                "attributes": {"gtin": "6901234567892", "commodity_code": "3304990099"}}),
                )
            })
            .collect();
        goods.push(w.commit(2, &txs));
    }

    // The mix: per parcel an order, payment, waybill, list, clearance and a goods event.
    let mut mix = Vec::new();
    for _ in 0..runs {
        let mut w = World::new();
        let (f1, platform) = file(&mut w, 1, "914403001922038216", "4403960001", &["platform"]);
        let (f2, seller) = file(
            &mut w,
            2,
            "91140200MA0GRK2220",
            "1402960002",
            &["seller", "manufacturer"],
        );
        let (f3, payment) = file(
            &mut w,
            3,
            &uscc("91110000MA00PAY01"),
            "1100960003",
            &["payment"],
        );
        let (f4, logistics) = file(
            &mut w,
            4,
            &uscc("91140200MA0LGT001"),
            "1402960004",
            &["logistics"],
        );
        let (f5, agent) = file(
            &mut w,
            5,
            &uscc("91140200MA0AGT001"),
            "1402960005",
            &["agent"],
        );
        let (f6, identity) = file(
            &mut w,
            6,
            &uscc("91110000MA0JDN001"),
            "1100960009",
            &["identity"],
        );
        w.commit(1, &[f1, f2, f3, f4, f5, f6]);
        let customs = key(100);
        let mut txs = Vec::new();
        for i in 0..(block_size / 6) {
            let no = format!("O{i}");
            let buyer = tag(i);
            txs.push(w.tx(&platform, "customs", "submit_order", json!({"order_no": no, "ebp_code": "4403960001",
                "ebc_code": "1402960002", "goods_value_fen": 10_000, "freight_fen": 0, "tax_total_fen": 910,
                "discount_fen": 0, "actual_paid_fen": 10_910, "pay_code": "1100960003",
                "pay_transaction_id": format!("PAY-{no}"), "logistics_code": "1402960004",
                "agent_code": "1402960005", "buyer_id_type": "1", "buyer_tag": buyer,
                "consignee_name_tag": tag(1), "consignee_phone_tag": tag(2), "consignee_address_tag": tag(3),
                "lines": [{"commodity_code": "3304990099", "quantity": 1, "unit_price_fen": 10_000}]})));
            txs.push(w.tx(
                &payment,
                "customs",
                "submit_payment",
                json!({"order_no": no, "ebp_code": "4403960001",
                "pay_code": "1100960003", "pay_transaction_id": format!("PAY-{no}"),
                "amount_paid_fen": 10_910, "payer_tag": buyer}),
            ));
            txs.push(w.tx(
                &logistics,
                "customs",
                "submit_waybill",
                json!({"logistics_code": "1402960004",
                "logistics_no": format!("W{i}"), "ebp_code": "4403960001", "order_no": no, "consignee_name_tag": tag(1),
                "consignee_phone_tag": tag(2), "consignee_address_tag": tag(3)}),
            ));
            txs.push(w.tx(&agent, "customs", "submit_list", json!({"order_no": no, "ebp_code": "4403960001",
                "ebc_code": "1402960002", "logistics_code": "1402960004", "logistics_no": format!("W{i}"),
                "buyer_id_type": "1", "buyer_tag": buyer, "supervision_mode": "9610", "vat_rate_bp": 1300,
                "consumption_rate_bp": 0, "tariff_rate_bp": 0,
                "buyer_attestation": cbec_chaincode::identity::Attestation::sign(
                    cbec_chaincode::identity::AttestationBody {
                        buyer_tag: buyer.clone(),
                        id_type: "1".into(),
                        verdict: cbec_chaincode::identity::Verdict::Verified,
                        valid_from_ms: 0,
                        valid_until_ms: u64::MAX,
                        key_version: "v1".into(),
                        service: identity.public(),
                    },
                    &identity,
                )})));
            txs.push(w.tx(
                &customs,
                "customs",
                "clear",
                json!({"ebp_code": "4403960001", "order_no": no}),
            ));
            txs.push(w.tx(
                &seller,
                "goods",
                "record",
                json!({"goods_id": format!("P{i}"), "kind": "produced"}),
            ));
        }
        mix.push(w.commit(2, &txs));
    }

    // A WebAssembly rule (bonded display trade, deployed through governance): goods
    // taken out for display and brought back, alternately, by one seller.
    let mut display = Vec::new();
    for _ in 0..runs {
        let mut w = World::new();
        let (filing, seller) = file(&mut w, 2, "91140200MA0GRK2220", "1402960002", &["seller"]);
        w.commit(1, &[filing]);
        let mut height = 2;
        for (proposal, action) in [
            json!({"action": "install_chaincode", "id": "display", "version": 1,
                   "code": hex::encode(cbec_wasm_rules::DISPLAY_V1)}),
            json!({"action": "activate_chaincode", "id": "display", "version": 1}),
        ]
        .into_iter()
        .enumerate()
        {
            for (agency, method, args) in [
                (100, "propose", json!({ "action": action })),
                (
                    101,
                    "vote",
                    json!({"proposal_id": proposal, "approve": true}),
                ),
                (
                    102,
                    "vote",
                    json!({"proposal_id": proposal, "approve": true}),
                ),
                (100, "apply", json!({"proposal_id": proposal})),
            ] {
                let tx = w.tx(&key(agency), "governance", method, args);
                w.commit(height, &[tx]);
                height += 1;
            }
        }
        let txs: Vec<_> = (0..block_size / 2)
            .flat_map(|i| {
                let no = format!("D-{i}");
                [
                    w.tx(&seller, "display", "take_out", json!({"record_no": no, "goods_id": "WINE-1", "value_fen": 80_000, "days": 30})),
                    w.tx(&seller, "display", "bring_back", json!({"record_no": no})),
                ]
            })
            .collect();
        display.push(w.commit(height, &txs));
    }

    println!(
        "chaincode/goods events: median {:.0} tx/s on one core ({runs} blocks of {block_size})",
        median(goods)
    );
    println!(
        "chaincode/wasm display rule (take_out, bring_back): median {:.0} tx/s on one core",
        median(display)
    );
    println!(
        "chaincode/mix (order, payment, waybill, list, clearance, goods event): median {:.0} tx/s on one core",
        median(mix)
    );
}
