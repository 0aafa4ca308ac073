//! The auditor's path through the README: start the demo consortium, fetch the
//! parcel's provenance proof, verify it offline, see it rejected once tampered with.

mod common;

use common::{cbec, demo, ok, path, text};

#[test]
fn an_auditor_proves_and_verifies_the_demo_parcel_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let (devnet, goods_id, node) = demo(&dir, &[]);
    let genesis = dir.join("genesis.json");
    let proof = tmp.path().join("parcel.proof.json");

    let wrote = ok(&cbec(&[
        "prove",
        "provenance",
        &goods_id,
        "--node",
        &node,
        "--out",
        path(&proof),
    ]));
    assert!(wrote.contains("cbec verify"), "{wrote}");

    // Offline: the nodes are stopped before verifying, and no address is given.
    drop(devnet);
    let verified = ok(&cbec(&[
        "verify",
        path(&proof),
        "--genesis",
        path(&genesis),
    ]));
    assert!(
        verified.starts_with("verified: provenance of"),
        "{verified}"
    );
    for kind in [
        "produced",
        "ordered",
        "paid",
        "shipped",
        "declared",
        "cleared",
        "delivered",
        "evaluated",
    ] {
        assert!(verified.contains(kind), "{kind} missing from:\n{verified}");
    }
    assert!(verified.contains("certified by"), "{verified}");

    let json: serde_json::Value = serde_json::from_str(&ok(&cbec(&[
        "verify",
        path(&proof),
        "--genesis",
        path(&genesis),
        "--json",
    ])))
    .expect("json");
    assert_eq!(json["verified"], true);
    assert_eq!(
        json["statement"]["timeline"].as_array().map(Vec::len),
        Some(8)
    );

    // The timeline view reads the saved file just as well.
    let timeline = ok(&cbec(&[
        "provenance",
        &goods_id,
        "--genesis",
        path(&genesis),
        "--file",
        path(&proof),
    ]));
    assert!(
        timeline.contains(&format!("provenance of {goods_id}: 8 events")),
        "{timeline}"
    );

    // The binary form verifies too.
    let binary = tmp.path().join("parcel.proof.bin");
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof).expect("read")).expect("json");
    let parsed: cbec_ledger::ProofFile = serde_json::from_value(file.clone()).expect("proof");
    std::fs::write(&binary, parsed.to_bytes()).expect("write");
    ok(&cbec(&[
        "verify",
        path(&binary),
        "--genesis",
        path(&genesis),
    ]));

    // One changed attribute in a middle event: refused, naming where.
    let args = &mut file["proof"]["events"][3]["tx"]["body"]["call"]["args"];
    let mut hex = args.as_str().expect("hex args").to_string();
    let last = hex.pop().expect("non-empty");
    hex.push(if last == '0' { '1' } else { '0' });
    *args = serde_json::Value::String(hex);
    let tampered = tmp.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec_pretty(&file).expect("json")).expect("write");
    let o = cbec(&["verify", path(&tampered), "--genesis", path(&genesis)]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("NOT VERIFIED") && err.contains("events[3]"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");

    // Against another consortium's genesis, nothing verifies.
    let other = tmp.path().join("other");
    ok(&cbec(&["genesis", "new", "--out", path(&other)]));
    let o = cbec(&[
        "verify",
        path(&proof),
        "--genesis",
        path(&other.join("genesis.json")),
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("chain_id"), "{}", text(&o.stderr));

    // `verify` takes no node address at all.
    let o = cbec(&[
        "verify",
        path(&proof),
        "--genesis",
        path(&genesis),
        "--node",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

/// A national-cryptography chain (issue 15) end to end through the CLI: `devnet up
/// --demo --crypto sm2-sm3` runs the demo with SM2 keys, a key of the other scheme is
/// refused naming both, the parcel's proof verifies offline against the genesis file,
/// and tampering (or the genesis edited to the other suite) fails.
#[test]
fn an_sm2_sm3_devnet_runs_the_demo_and_its_proof_verifies_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let (devnet, goods_id, node) = demo(&dir, &["--crypto", "sm2-sm3"]);
    let genesis = dir.join("genesis.json");
    let inspect = ok(&cbec(&["genesis", "inspect", path(&genesis)]));
    assert!(inspect.contains("crypto    sm2-sm3"), "{inspect}");
    // The same directory asked for the other suite: refused, the suite is fixed.
    let o = cbec(&[
        "devnet",
        "up",
        "--dir",
        path(&dir),
        "--crypto",
        "ed25519-sha256",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("crypto suite is sm2-sm3, not ed25519-sha256"),
        "{}",
        text(&o.stderr)
    );

    // Keys say their scheme; an Ed25519 key cannot sign on this chain.
    let ed = tmp.path().join("ed.key");
    let sm = tmp.path().join("sm.key");
    ok(&cbec(&["keys", "new", "--out", path(&ed)]));
    let shown = ok(&cbec(&[
        "keys",
        "new",
        "--scheme",
        "sm2",
        "--out",
        path(&sm),
    ]));
    assert!(shown.contains("scheme      sm2"), "{shown}");
    let o = cbec(&[
        "tx",
        "submit",
        "--key",
        path(&ed),
        "--node",
        &node,
        "goods",
        "record",
        "--args",
        r#"{"goods_id": "G-1", "kind": "produced"}"#,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("is an ed25519 key; this chain's crypto suite is sm2-sm3"),
        "{err}"
    );

    let proof = tmp.path().join("parcel.proof.json");
    ok(&cbec(&[
        "prove",
        "provenance",
        &goods_id,
        "--node",
        &node,
        "--out",
        path(&proof),
    ]));
    drop(devnet);
    let verified = ok(&cbec(&[
        "verify",
        path(&proof),
        "--genesis",
        path(&genesis),
    ]));
    assert!(
        verified.starts_with(&format!("verified: provenance of {goods_id}: 8 events")),
        "{verified}"
    );

    // One flipped signature byte: refused at that event's signature.
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof).expect("read")).expect("json");
    let sig = &mut file["proof"]["events"][2]["tx"]["signature"];
    let mut hex = sig.as_str().expect("hex").to_string();
    let first = hex.remove(0);
    hex.insert(0, if first == '0' { '1' } else { '0' });
    *sig = serde_json::Value::String(hex);
    let tampered = tmp.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&file).expect("json")).expect("write");
    let o = cbec(&["verify", path(&tampered), "--genesis", path(&genesis)]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("events[2].tx.signature"), "{err}");

    // The genesis file edited to name the other suite: its SM2 keys are refused.
    let mut edited: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&genesis).expect("read")).expect("json");
    edited["crypto"] = "ed25519-sha256".into();
    let other = tmp.path().join("edited-genesis.json");
    std::fs::write(&other, serde_json::to_vec(&edited).expect("json")).expect("write");
    let o = cbec(&["verify", path(&proof), "--genesis", path(&other)]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("is an sm2 key; this chain's crypto suite is ed25519-sha256"),
        "{err}"
    );
}

/// A lot split into parcels on a running devnet (issue 18): the node's provenance proof
/// of a parcel carries the lot's history up to the split, and it verifies offline.
#[test]
fn a_parcel_split_from_a_lot_proves_the_lot_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let (_devnet, _, node) = demo(&dir, &[]);
    let seller = dir.join("demo").join("seller.key");
    let submit = |method: &str, args: serde_json::Value| -> serde_json::Value {
        let out = ok(&cbec(&[
            "tx",
            "submit",
            "--key",
            path(&seller),
            "--node",
            &node,
            "goods",
            method,
            "--args",
            &args.to_string(),
            "--wait",
            "--json",
        ]));
        serde_json::from_str(&out).expect("json")
    };
    let event_hash = |answer: &serde_json::Value, goods_id: &str| -> String {
        answer["result"]["outcome"]["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| {
                e["attributes"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["key"] == "goods_id" && x["value"] == goods_id)
                })
            })
            .and_then(|e| {
                e["attributes"]
                    .as_array()?
                    .iter()
                    .find(|x| x["key"] == "event_hash")
            })
            .and_then(|x| x["value"].as_str())
            .expect("event hash")
            .to_string()
    };
    let lot = submit(
        "record",
        serde_json::json!({"goods_id": "MEAT-LOT-1", "kind": "produced",
        "attributes": {"quantity": "200", "commodity_code": "0201300090"}}),
    );
    let head = event_hash(&lot, "MEAT-LOT-1");
    let split = submit(
        "split",
        serde_json::json!({"goods_id": "MEAT-LOT-1", "prev": head,
        "children": [{"goods_id": "MEAT-P-1", "quantity": 2}, {"goods_id": "MEAT-P-2", "quantity": 2}]}),
    );
    let first = event_hash(&split, "MEAT-P-1");
    submit(
        "record",
        serde_json::json!({"goods_id": "MEAT-P-1", "kind": "ordered", "prev": first}),
    );

    let proof = tmp.path().join("parcel.proof.json");
    ok(&cbec(&[
        "prove",
        "provenance",
        "MEAT-P-1",
        "--node",
        &node,
        "--out",
        path(&proof),
    ]));
    let said = ok(&cbec(&[
        "verify",
        path(&proof),
        "--genesis",
        path(&dir.join("genesis.json")),
    ]));
    assert!(said.contains("provenance of MEAT-P-1: 2 events"), "{said}");
    assert!(
        said.contains("split from MEAT-LOT-1: its 2 events"),
        "{said}"
    );
    assert!(
        said.contains("produced") && said.contains("quantity=200"),
        "the lot's production: {said}"
    );
}
