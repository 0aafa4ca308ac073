//! WebAssembly chaincode [issue 19]: deployed, upgraded and retired through governance
//! (more than 2/3 of the agencies at every step); a real rule (bonded display trade,
//! `wasm-rules/display`) accepted and refused, changed by an upgrade at a known height;
//! hostile modules refused at installation or contained when run, with their writes
//! dropped and the same result on every engine.

mod harness;

use cbec_chaincode::wasm::{WasmChaincode, FUEL_PARAM};
use cbec_chaincode::Engine;
use cbec_ledger::TxResult;
use harness::*;
use serde_json::{json, Value};

const SELLER: &str = "91140200MA0GRK2220";

/// Proposes `action` as customs, has `approvers` more agencies approve, and applies it.
fn govern(l: &mut Ledger, action: Value, approvers: &[&str]) -> TxResult {
    let customs = l.agency("customs").clone();
    let proposed = l.run(
        &customs,
        "governance",
        "propose",
        json!({ "action": action }),
    );
    // A change that could not be applied is refused when proposed.
    if !matches!(proposed.outcome, cbec_ledger::Outcome::Accepted { .. }) {
        return proposed;
    }
    let id: u64 = attr(accepted(&proposed), "proposal", "id")
        .expect("proposal id")
        .parse()
        .expect("number");
    for agency in approvers {
        let key = l.agency(agency).clone();
        accepted(&l.run(
            &key,
            "governance",
            "vote",
            json!({"proposal_id": id, "approve": true}),
        ));
    }
    l.run(
        &customs,
        "governance",
        "apply",
        json!({ "proposal_id": id }),
    )
}

fn install(l: &mut Ledger, id: &str, version: u32, code: &[u8]) -> TxResult {
    govern(
        l,
        json!({"action": "install_chaincode", "id": id, "version": version, "code": hex::encode(code)}),
        &["tax", "forex"],
    )
}

fn activate(l: &mut Ledger, id: &str, version: u32) -> TxResult {
    govern(
        l,
        json!({"action": "activate_chaincode", "id": id, "version": version}),
        &["tax", "forex"],
    )
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}

/// A ledger with the seller filed, and `id` installed and active from `code`.
fn deployed(id: &str, code: &[u8]) -> (Ledger, cbec_ledger::KeyPair) {
    let mut l = Ledger::new();
    let seller = l.file(2, SELLER, "1402960002", &["seller", "manufacturer"]);
    accepted(&install(&mut l, id, 1, code));
    accepted(&activate(&mut l, id, 1));
    (l, seller)
}

#[test]
fn the_display_rule_is_installed_voted_activated_upgraded_and_retired() {
    let mut l = Ledger::new();
    let seller = l.file(2, SELLER, "1402960002", &["seller", "manufacturer"]);
    let logistics = l.file(4, "91140200MA0LGT001N", "1402960004", &["logistics"]);
    let out = |no: &str, days: u64| json!({"record_no": no, "goods_id": "WINE-1", "value_fen": 80_000, "days": days});

    // Not there before it is installed and active.
    rejected(
        &l.run(&seller, "display", "take_out", out("D-1", 30)),
        "CHAINCODE",
    );
    // Two agencies of four are not more than 2/3.
    let m = rejected(
        &govern(
            &mut l,
            json!({"action": "install_chaincode", "id": "display", "version": 1,
                   "code": hex::encode(cbec_wasm_rules::DISPLAY_V1)}),
            &["tax"],
        ),
        "APPROVAL",
    );
    assert!(m.contains("2 of 4"), "{m}");
    accepted(&install(&mut l, "display", 1, cbec_wasm_rules::DISPLAY_V1));
    rejected(
        &l.run(&seller, "display", "take_out", out("D-1", 30)),
        "CHAINCODE",
    );
    accepted(&activate(&mut l, "display", 1));

    // Version 1: accepted, and the result names the code that judged it.
    let r = l.run(&seller, "display", "take_out", out("D-1", 30));
    let events = accepted(&r);
    let record: WasmChaincode = l.get("gov/wasm/chaincode/display").expect("record");
    let v1_hash = record.versions[0].code_hash.to_string();
    assert_eq!(events[0].kind, "wasm_chaincode");
    assert_eq!(
        attr(events, "wasm_chaincode", "code_hash"),
        Some(v1_hash.clone())
    );
    assert_eq!(
        attr(events, "display_out", "record_no").as_deref(),
        Some("D-1")
    );
    assert!(
        l.state
            .entries
            .contains_key(b"wasm/display/rec/D-1".as_slice()),
        "written under its prefix"
    );
    // Refusals with the module's own rule ids, each naming the code.
    let m = rejected(
        &l.run(&seller, "display", "take_out", out("D-2", 200)),
        "DISPLAY-TERM",
    );
    assert!(m.contains("1-180 days") && m.contains(&v1_hash), "{m}");
    rejected(
        &l.run(&logistics, "display", "take_out", out("D-2", 5)),
        "ROLE",
    );
    rejected(
        &l.run(&seller, "display", "take_out", out("D-1", 5)),
        "DUPLICATE",
    );
    rejected(
        &l.run(
            &logistics,
            "display",
            "bring_back",
            json!({"record_no": "D-1"}),
        ),
        "ROLE",
    );
    rejected(&l.run(&seller, "display", "fly", json!({})), "METHOD");
    // Past its due time, D-1 blocks the next take-out until it comes back.
    l.time_ms += 31 * 86_400_000;
    rejected(
        &l.run(&seller, "display", "take_out", out("D-2", 5)),
        "DISPLAY-OVERDUE",
    );
    let back = l.run(
        &seller,
        "display",
        "bring_back",
        json!({"record_no": "D-1"}),
    );
    assert_eq!(
        attr(accepted(&back), "display_closed", "late").as_deref(),
        Some("true")
    );
    rejected(
        &l.run(&seller, "display", "declare", json!({"record_no": "D-1"})),
        "STATUS",
    );
    accepted(&l.run(&seller, "display", "take_out", out("D-2", 5)));

    // Upgrade to version 2 at a known height: from there a guarantee is required.
    rejected(&activate(&mut l, "display", 2), "NOT-FOUND");
    rejected(
        &install(&mut l, "display", 3, cbec_wasm_rules::DISPLAY_V2),
        "ARGS",
    );
    accepted(&install(&mut l, "display", 2, cbec_wasm_rules::DISPLAY_V2));
    // Installed, not yet active: version 1 still judges.
    accepted(&l.run(&seller, "display", "take_out", out("D-3", 5)));
    let upgraded = activate(&mut l, "display", 2);
    accepted(&upgraded);
    let at = l.height;
    let record: WasmChaincode = l.get("gov/wasm/chaincode/display").expect("record");
    assert_eq!(record.active(), Some(2));
    assert_eq!(record.activations.last(), Some(&(at, 2)));
    assert_eq!(
        record.versions.len(),
        2,
        "every version stays on the ledger"
    );
    let v2_hash = record.versions[1].code_hash.to_string();
    let m = rejected(
        &l.run(&seller, "display", "take_out", out("D-4", 5)),
        "DISPLAY-GUARANTEE",
    );
    assert!(m.contains(&v2_hash), "{m}");
    let mut guaranteed = out("D-4", 60);
    guaranteed["guarantee_fen"] = json!(80_000);
    let r = l.run(&seller, "display", "take_out", guaranteed.clone());
    assert_eq!(
        attr(accepted(&r), "wasm_chaincode", "version").as_deref(),
        Some("2")
    );
    guaranteed["record_no"] = json!("D-5");
    guaranteed["days"] = json!(120);
    rejected(
        &l.run(&seller, "display", "take_out", guaranteed),
        "DISPLAY-TERM",
    );
    // What version 1 wrote, version 2 reads.
    accepted(&l.run(&seller, "display", "declare", json!({"record_no": "D-3"})));

    // Retired: no version runs, none can be installed or activated again.
    accepted(&govern(
        &mut l,
        json!({"action": "retire_chaincode", "id": "display"}),
        &["tax", "forex"],
    ));
    rejected(
        &l.run(
            &seller,
            "display",
            "bring_back",
            json!({"record_no": "D-4"}),
        ),
        "CHAINCODE",
    );
    rejected(&activate(&mut l, "display", 1), "STATUS");
    rejected(
        &install(&mut l, "display", 3, cbec_wasm_rules::DISPLAY_V2),
        "STATUS",
    );
}

#[test]
fn modules_a_deterministic_host_cannot_run_are_refused_at_installation() {
    let mut l = Ledger::new();
    let cases = [
        (
            r#"(module (memory (export "memory") 1)
                 (func (export "run") (drop (f64.add (f64.const 1) (f64.const 2)))))"#,
            "floating-point",
        ),
        (
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 1) (func (export "run")))"#,
            "imports `wasi_snapshot_preview1.fd_write`",
        ),
        (
            r#"(module (import "cbec" "put" (func (param i32 i32) ))
                 (memory (export "memory") 1) (func (export "run")))"#,
            "not a function",
        ),
        (
            r#"(module (memory (export "memory") 17) (func (export "run")))"#,
            "starts at 17 pages",
        ),
        (
            r#"(module (memory (export "memory") 1))"#,
            "export a function `run`",
        ),
        (
            r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "run")))"#,
            "not a valid WebAssembly module",
        ),
    ];
    for (text, why) in cases {
        let m = rejected(&install(&mut l, "hostile", 1, &wat(text)), "MODULE");
        assert!(m.contains(why), "`{why}` in: {m}");
    }
    rejected(&install(&mut l, "hostile", 1, b"not wasm at all"), "MODULE");
    rejected(
        &install(
            &mut l,
            "goods",
            1,
            &wat(r#"(module (memory (export "memory") 1) (func (export "run")))"#),
        ),
        "ARGS",
    );
    // Larger than PARAM governance.wasm_module_bytes.
    let big = vec![0u8; 50_000];
    let m = rejected(&install(&mut l, "hostile", 1, &big), "MODULE");
    assert!(m.contains("wasm_module_bytes"), "{m}");
}

/// Writes `wasm/<id>/before` first, then misbehaves: the write must be dropped.
fn hostile(id: &str, misbehaviour: &str) -> Vec<u8> {
    let key = format!("wasm/{id}/before");
    wat(&format!(
        r#"(module
             (import "cbec" "put" (func $put (param i32 i32 i32 i32)))
             (memory (export "memory") 1)
             (data (i32.const 0) "{key}")
             (data (i32.const 200) "wasm/goods/x")
             (func $deep (param i32) (result i32)
               (call $deep (i32.add (local.get 0) (i32.const 1))))
             (func (export "run")
               (call $put (i32.const 0) (i32.const {len}) (i32.const 0) (i32.const 4))
               {misbehaviour}))"#,
        len = key.len()
    ))
}

#[test]
fn hostile_modules_are_contained_with_their_writes_dropped_and_every_engine_agrees() {
    let cases = [
        ("loop", "(loop $l (br $l))", "FUEL"),
        (
            "bomb",
            "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))",
            "MEMORY",
        ),
        ("deep", "(drop (call $deep (i32.const 0)))", "TRAP"),
        (
            "stray",
            "(call $put (i32.const 200) (i32.const 12) (i32.const 0) (i32.const 4))",
            "PREFIX",
        ),
        ("crash", "(unreachable)", "TRAP"),
    ];
    for (id, misbehaviour, rule) in cases {
        let (mut l, seller) = deployed(id, &hostile(id, misbehaviour));
        let before = l.state.clone();
        let tx = l.sign(&seller, id, "run", b"{}".to_vec());
        // Two engines (one fresh, one that has compiled the module already) agree on
        // the result and the writes, byte for byte.
        let block = cbec_chaincode::BlockInfo {
            height: l.height + 1,
            time_ms: l.time_ms + 1_000,
            suite: cbec_ledger::Suite::default(),
        };
        let verified = vec![tx.clone().verify(&CHAIN, SUITE).expect("signed")];
        let fresh =
            Engine::from_configs(&cbec_chaincode::catalog::default_configs()).expect("engine");
        let a = l
            .engine
            .execute_block(&before, block, &verified)
            .expect("block");
        let b = fresh
            .execute_block(&before, block, &verified)
            .expect("block");
        assert_eq!(a, b, "{id}: every engine records the same");
        let results = l.block(vec![tx]);
        let m = rejected(&results[0], rule);
        assert!(m.contains(&format!("{id} version 1, code ")), "{m}");
        assert!(
            !l.state
                .entries
                .contains_key(format!("wasm/{id}/before").as_bytes()),
            "{id}: its writes are dropped"
        );
        // The engine goes on: the next transaction is executed as usual.
        accepted(&l.run(
            &seller,
            "goods",
            "record",
            json!({"goods_id": format!("G-{}", id.to_uppercase()), "kind": "produced"}),
        ));
    }
}

#[test]
fn fuel_is_a_governance_parameter() {
    // A module that burns a known amount: a loop of 50,000 rounds.
    let code = wat(r#"(module (memory (export "memory") 1)
             (func (export "run") (local i32)
               (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                        (br_if $l (i32.lt_u (local.get 0) (i32.const 50000))))))"#);
    let (mut l, seller) = deployed("burner", &code);
    accepted(&l.run_raw(&seller, "burner", "run", b"{}".to_vec()));
    accepted(&govern(
        &mut l,
        json!({"action": "set_param", "chaincode": "governance", "name": FUEL_PARAM, "value": 10_000}),
        &["tax", "forex"],
    ));
    rejected(&l.run_raw(&seller, "burner", "run", b"{}".to_vec()), "FUEL");
}
