//! Auditor proofs from a real four-node network: each kind round-trips through the API
//! and verifies against the genesis file alone, also after governance replaced a
//! validator key.

use std::time::Duration;

use cbec_genesis::Genesis;
use cbec_ledger::proof::{Proof, TrustRoot, Verified};
use cbec_ledger::{KeyPair, ProofFile};
use cbec_tests::Consortium;
use serde_json::{json, Value};

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");
const GOOD: &str = "PARCEL-E2E-1";

fn trust(c: &Consortium) -> TrustRoot {
    Genesis::load(
        &c.net().join("genesis.json"),
        cbec_chaincode::catalog::check_config,
    )
    .expect("genesis")
    .trust_root()
}

fn proof(c: &Consortium, node: usize, path: &str) -> ProofFile {
    let answer = c
        .get(node, path)
        .unwrap_or_else(|| panic!("GET {path} answered"));
    serde_json::from_value(answer).expect("a proof file")
}

fn committed(answer: &(u16, Value)) -> &Value {
    assert_eq!(answer.0, 200, "{:?}", answer.1);
    let result = &answer.1["result"];
    assert_eq!(result["outcome"]["status"], "accepted", "{result}");
    result
}

fn event_hash(result: &Value) -> String {
    result["outcome"]["events"][0]["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == "event_hash"))
        .and_then(|x| x["value"].as_str())
        .expect("event hash")
        .to_string()
}

struct Firm {
    key: KeyPair,
    nonce: u64,
    prev: Option<String>,
}

impl Firm {
    fn record(&mut self, c: &Consortium, kind: &str) -> String {
        let mut args = json!({"goods_id": GOOD, "kind": kind, "attributes": {"step": kind}});
        if let Some(p) = &self.prev {
            args["prev"] = json!(p);
        }
        let tx = c.sign(&self.key, self.nonce, "goods", "record", args);
        self.nonce += 1;
        let answer = c.submit(0, &tx, true);
        self.prev = Some(event_hash(committed(&answer)));
        tx.hash(c.suite).to_hex()
    }
}

#[test]
fn proofs_from_a_live_network_verify_offline_across_a_validator_change() {
    let mut c = Consortium::generate(NODE);
    c.start_all();
    c.wait_for("all four APIs", Duration::from_secs(60), |c| {
        (0..4).all(|i| c.height(i).is_some())
    });
    let trust = trust(&c);
    let uscc = cbec_chaincode::codes::uscc_with_check("91140200MA0PRF001").expect("uscc");
    let mut firm = Firm {
        key: KeyPair::from_seed(&[42; 32]),
        nonce: 0,
        prev: None,
    };
    let filing = c.sign(
        &c.operator(3),
        0,
        "enterprise",
        "approve_filing",
        json!({"uscc": uscc, "name": "proof firm", "roles": ["manufacturer", "seller", "logistics"],
               "keys": [firm.key.public()], "customs_code": "1402960099"}),
    );
    committed(&c.submit(0, &filing, true));
    let mut txs = Vec::new();
    for kind in ["produced", "ordered", "shipped"] {
        txs.push(firm.record(&c, kind));
    }

    // Transaction proof, from another node than the one that took the transaction.
    let file = proof(&c, 2, &format!("/v1/proof/tx/{}", txs[1]));
    let Verified::Tx { tx_hash, block, .. } = file.verify(&trust).expect("tx proof") else {
        panic!("tx summary")
    };
    assert_eq!(tx_hash.to_hex(), txs[1]);
    assert!(block.certified_by.len() >= 3, "{:?}", block.certified_by);

    // The binary form of the same proof, by content negotiation.
    let bytes = reqwest::blocking::Client::new()
        .get(format!("{}/v1/proof/tx/{}", c.api(1), txs[1]))
        .header("accept", "application/octet-stream")
        .send()
        .expect("reach node")
        .bytes()
        .expect("body");
    let binary = ProofFile::from_bytes(&bytes).expect("canonical binary proof");
    binary.verify(&trust).expect("binary proof verifies");

    // State proof of the good's head, and of an absent key.
    let head = proof(&c, 1, &format!("/v1/proof/state/goods/head/{GOOD}"));
    let Verified::State { value, .. } = head.verify(&trust).expect("state proof") else {
        panic!("state summary")
    };
    assert!(value.is_some());
    let absent = proof(&c, 1, "/v1/proof/state/ent/filing/NO-SUCH-FIRM?height=1");
    let Verified::State { value, block, .. } = absent.verify(&trust).expect("absence") else {
        panic!("state summary")
    };
    assert_eq!((value, block.height), (None, 1));

    // Provenance: three events in order.
    let history = proof(&c, 3, &format!("/v1/proof/provenance/{GOOD}"));
    let Verified::Provenance { timeline, .. } = history.verify(&trust).expect("provenance") else {
        panic!("provenance summary")
    };
    let order: Vec<String> = timeline.iter().map(|e| e.tx_hash.to_hex()).collect();
    assert_eq!(order, txs);
    assert!(timeline.iter().all(|e| e.actor == uscc));

    // Unknown things are 404s; malformed ones 400s.
    assert_eq!(status(&c, "/v1/proof/tx/00"), 400);
    assert_eq!(
        status(&c, &format!("/v1/proof/tx/{}", "ab".repeat(32))),
        404
    );
    assert_eq!(status(&c, "/v1/proof/provenance/NO-SUCH-GOOD"), 404);
    assert_eq!(status(&c, "/v1/proof/provenance/bad%20id"), 400);
    assert_eq!(status(&c, "/v1/proof/state/x?height=999999"), 404);

    // Governance replaces tax's validator key with one no node holds: tax's node
    // keeps running but no longer counts, so three agencies certify from then on.
    let replacement = KeyPair::from_seed(&[77; 32]);
    let propose = c.sign(
        &c.operator(0),
        0,
        "governance",
        "propose",
        json!({"action": {"action": "set_validator_key", "agency": "tax", "key": replacement.public()}}),
    );
    let proposed = committed(&c.submit(0, &propose, true)).clone();
    let id: u64 = proposed["outcome"]["events"][0]["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == "id"))
        .and_then(|x| x["value"].as_str())
        .and_then(|v| v.parse().ok())
        .expect("proposal id");
    for agency in [2, 3] {
        let vote = c.sign(
            &c.operator(agency),
            u64::from(agency == 3),
            "governance",
            "vote",
            json!({"proposal_id": id, "approve": true}),
        );
        committed(&c.submit(0, &vote, true));
    }
    let apply = c.sign(
        &c.operator(0),
        1,
        "governance",
        "apply",
        json!({"proposal_id": id}),
    );
    committed(&c.submit(0, &apply, true));
    let after = firm.record(&c, "delivered");

    let file = proof(&c, 0, &format!("/v1/proof/tx/{after}"));
    assert_eq!(file.set_changes.len(), 1, "the proof carries the change");
    let Verified::Tx { block, .. } = file.verify(&trust).expect("proof across the change") else {
        panic!("tx summary")
    };
    assert!(
        !block.certified_by.contains(&"tax".to_string()),
        "tax's old key no longer certifies: {:?}",
        block.certified_by
    );
    let mut without = file.clone();
    without.set_changes.clear();
    let err = without
        .verify(&trust)
        .expect_err("the new set is unknown without the change");
    assert!(
        err.to_string().contains("validator-set change is missing"),
        "{err}"
    );

    // Old proofs still verify, and the whole history spans the change.
    proof(&c, 0, &format!("/v1/proof/tx/{}", txs[0]))
        .verify(&trust)
        .expect("an old proof");
    let history = proof(&c, 0, &format!("/v1/proof/provenance/{GOOD}"));
    let Verified::Provenance { timeline, .. } = history.verify(&trust).expect("provenance") else {
        panic!("provenance summary")
    };
    assert_eq!(timeline.len(), 4);
    if let Proof::Provenance(p) = &history.proof {
        assert!(p.events[3].block.header.height > history.set_changes[0].at.header.height);
    }
}

fn status(c: &Consortium, path: &str) -> u16 {
    reqwest::blocking::get(format!("{}{path}", c.api(0)))
        .expect("reach node")
        .status()
        .as_u16()
}
