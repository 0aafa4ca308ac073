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
        "attributes": {"quantity": "200", "commodity_code": "0201300090", "gtin": "6901234567892"}}),
    );
    let head = event_hash(&lot, "MEAT-LOT-1");
    let split = submit(
        "split",
        serde_json::json!({"goods_id": "MEAT-LOT-1", "prev": head,
        "children": [{"goods_id": "MEAT-P-1", "quantity": 2}, {"goods_id": "MEAT-P-2", "quantity": 2}]}),
    );
    let first = event_hash(&split, "MEAT-P-1");
    let ordered = submit(
        "record",
        serde_json::json!({"goods_id": "MEAT-P-1", "kind": "ordered", "prev": first}),
    );
    // Both parcels packed into a container and taken out again.
    let packed = submit(
        "aggregate",
        serde_json::json!({"container": "CONTAINER-1", "children": [
            {"goods_id": "MEAT-P-1", "prev": event_hash(&ordered, "MEAT-P-1")},
            {"goods_id": "MEAT-P-2", "prev": event_hash(&split, "MEAT-P-2")}]}),
    );
    submit(
        "disaggregate",
        serde_json::json!({"container": "CONTAINER-1", "prev": event_hash(&packed, "CONTAINER-1"),
            "children": [
            {"goods_id": "MEAT-P-1", "prev": event_hash(&packed, "MEAT-P-1")},
            {"goods_id": "MEAT-P-2", "prev": event_hash(&packed, "MEAT-P-2")}]}),
    );
    let genesis = dir.join("genesis.json");

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
        path(&genesis),
    ]));
    assert!(said.contains("provenance of MEAT-P-1: 4 events"), "{said}");
    assert!(
        said.contains("split from MEAT-LOT-1: its 2 events"),
        "{said}"
    );
    assert!(
        said.contains("produced") && said.contains("quantity=200"),
        "the lot's production: {said}"
    );
    assert!(
        said.contains("packed")
            && said.contains("container=CONTAINER-1")
            && said.contains("unpacked"),
        "the packing: {said}"
    );

    // Where the lot went (去向): its proof lists every child of every split, from the
    // certified transactions, with the head proven so none is left out.
    let lot = ok(&cbec(&[
        "provenance",
        "MEAT-LOT-1",
        "--node",
        &node,
        "--genesis",
        path(&genesis),
    ]));
    assert!(
        lot.contains("split into: MEAT-P-1 (2), MEAT-P-2 (2)"),
        "{lot}"
    );

    // The same history as EPCIS 2.0, valid against GS1's JSON schema (vendored, see
    // tests/epcis/SOURCE.md): the lot commissioned, transformed into the parcel, the
    // parcel ordered, packed and unpacked; goods named by their GS1 Digital Link URIs.
    let epcis = ok(&cbec(&[
        "provenance",
        "MEAT-P-1",
        "--file",
        path(&proof),
        "--genesis",
        path(&genesis),
        "--format",
        "epcis",
    ]));
    let document: serde_json::Value = serde_json::from_str(&epcis).expect("JSON");
    let link = |id: &str| format!("https://id.cbec-pilot.example/01/06901234567892/21/{id}");
    let events = document["epcisBody"]["eventList"]
        .as_array()
        .expect("events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ObjectEvent",
            "TransformationEvent",
            "ObjectEvent",
            "AggregationEvent",
            "AggregationEvent"
        ],
        "{epcis}"
    );
    assert_eq!(events[0]["bizStep"], "commissioning");
    assert_eq!(events[1]["inputEPCList"][0], link("MEAT-LOT-1"));
    assert_eq!(events[1]["outputEPCList"][0], link("MEAT-P-1"));
    assert_eq!(events[3]["parentID"], link("CONTAINER-1"));
    assert_eq!(
        (&events[3]["action"], &events[4]["action"]),
        (&serde_json::json!("ADD"), &serde_json::json!("DELETE"))
    );
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/epcis/EPCISDocument.schema.json");
    let validate = |document: &serde_json::Value| -> std::process::Output {
        let file = tmp.path().join("epcis.json");
        std::fs::write(&file, document.to_string()).expect("write");
        std::process::Command::new("python3")
            .args(["-c", "import json, sys, jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), format_checker=jsonschema.FormatChecker())"])
            .arg(&file)
            .arg(&schema)
            .output()
            .expect("python3")
    };
    let check = validate(&document);
    assert!(
        check.status.success(),
        "EPCIS invalid: {} (needs `pip install jsonschema`, which openapi-spec-validator brings)",
        text(&check.stderr)
    );
    // A broken event fails the same schema: the check can fail.
    let mut broken = document.clone();
    broken["epcisBody"]["eventList"][0]["action"] = serde_json::json!("CREATE");
    assert!(
        !validate(&broken).status.success(),
        "an unknown action must fail the schema"
    );

    // A transformation (issue 18): the second parcel and part of a spice lot cut and
    // packed into a new good with its own GTIN. Its proof carries both inputs up to
    // their consumption and the meat lot the parcel was split from; its EPCIS has one
    // TransformationEvent with both inputs in and the pack out, and validates.
    let spice = submit(
        "record",
        serde_json::json!({"goods_id": "SPICE-1", "kind": "produced",
        "attributes": {"quantity": "10", "commodity_code": "0910110000"}}),
    );
    let p2 = ok(&cbec(&[
        "query",
        "state",
        "goods/head/MEAT-P-2",
        "--node",
        &node,
        "--json",
    ]));
    let p2: serde_json::Value = serde_json::from_str(&p2).expect("json");
    let p2_head: cbec_ledger::goods::Head = cbec_ledger::codec::decode(
        &hex::decode(p2["value_hex"].as_str().expect("head")).expect("hex"),
    )
    .expect("a head");
    let inputs = |spice_takes: u64| {
        serde_json::json!({"inputs": [
            {"goods_id": "MEAT-P-2", "prev": p2_head.last.to_string(), "quantity": 2},
            {"goods_id": "SPICE-1", "prev": event_hash(&spice, "SPICE-1"), "quantity": spice_takes}],
            "outputs": [{"goods_id": "MEAT-PACK-1", "quantity": 4, "attributes": {"gtin": "6901234567885"}}],
            "attributes": {"process": "cut, seasoned and packed"}})
    };
    let refused = cbec(&[
        "tx",
        "submit",
        "--key",
        path(&seller),
        "--node",
        &node,
        "goods",
        "transform",
        "--args",
        &inputs(11).to_string(),
        "--wait",
        "--json",
    ]);
    assert!(
        text(&refused.stdout).contains("GOODS-QTY") || text(&refused.stderr).contains("GOODS-QTY"),
        "more spice than the lot holds: {} {}",
        text(&refused.stdout),
        text(&refused.stderr)
    );
    submit("transform", inputs(1));
    let pack_proof = tmp.path().join("pack.proof.json");
    ok(&cbec(&[
        "prove",
        "provenance",
        "MEAT-PACK-1",
        "--node",
        &node,
        "--out",
        path(&pack_proof),
    ]));
    let said = ok(&cbec(&[
        "verify",
        path(&pack_proof),
        "--genesis",
        path(&genesis),
    ]));
    for words in [
        "provenance of MEAT-PACK-1: 1 events",
        "made from MEAT-P-2: its 4 events, up to the transformation",
        "made from SPICE-1: its 2 events, up to the transformation",
        "split from MEAT-LOT-1: its 2 events",
        "transformed into: MEAT-PACK-1 (4)",
        "inputs: MEAT-P-2, SPICE-1",
    ] {
        assert!(said.contains(words), "`{words}` in: {said}");
    }
    let pack: serde_json::Value = serde_json::from_str(&ok(&cbec(&[
        "provenance",
        "MEAT-PACK-1",
        "--file",
        path(&pack_proof),
        "--genesis",
        path(&genesis),
        "--format",
        "epcis",
    ])))
    .expect("JSON");
    let transformations: Vec<&serde_json::Value> = pack["epcisBody"]["eventList"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "TransformationEvent" && e.get("transformationID").is_some())
        .collect();
    assert_eq!(
        transformations.len(),
        1,
        "one event for the transformation: {pack}"
    );
    assert_eq!(
        transformations[0]["inputEPCList"],
        serde_json::json!([link("MEAT-P-2"), link("SPICE-1")])
    );
    assert_eq!(
        transformations[0]["outputEPCList"],
        serde_json::json!(["https://id.cbec-pilot.example/01/06901234567885/21/MEAT-PACK-1"])
    );
    let check = validate(&pack);
    assert!(
        check.status.success(),
        "EPCIS invalid: {}",
        text(&check.stderr)
    );

    // The parcel's label: its Digital Link as a QR code, read back from the PNG; the
    // node resolves the link to its auditor page for that parcel.
    let png = tmp.path().join("label.png");
    let label = ok(&cbec(&[
        "label",
        "MEAT-P-1",
        "--gtin",
        "6901234567892",
        "--base",
        &node,
        "--png",
        path(&png),
        "--terminal",
    ]));
    let expected_link = format!("{node}/01/06901234567892/21/MEAT-P-1");
    assert!(label.starts_with(&expected_link), "{label}");
    assert!(
        label.contains('▀') || label.contains('▄'),
        "drawn in the terminal: {label}"
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png).expect("png"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let frame = reader.next_frame(&mut pixels).expect("pixels");
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the label");
    let (_, content) = grids[0].decode().expect("the QR code reads");
    assert_eq!(content, expected_link);
    let no_redirect = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resolved = no_redirect.get(&expected_link).send().expect("resolve");
    assert_eq!(resolved.status().as_u16(), 307);
    assert_eq!(resolved.headers()["location"], "/audit/?goods=MEAT-P-1");
    let bad = no_redirect
        .get(format!("{node}/01/69012/21/MEAT-P-1"))
        .send()
        .expect("resolve");
    assert_eq!(bad.status().as_u16(), 400);
    let refused = cbec(&["label", "MEAT-P-1", "--gtin", "6901234567890"]);
    assert!(!refused.status.success() && text(&refused.stderr).contains("--gtin"));
}
