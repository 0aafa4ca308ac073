//! WebAssembly chaincode on a running devnet (issue 19): four real node processes; a
//! module goes from `cbec chaincode install` through three agencies' approval to
//! accepted transactions with no restart, is upgraded at a known height and retired;
//! a hostile module is contained on every node alike.

mod common;

use common::{cbec, demo, ok, path, text};
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .last()
        .expect("JSON")
}

/// Every node's API URL, from the devnet's node configs.
fn nodes(dir: &std::path::Path) -> Vec<String> {
    ["customs", "tax", "forex", "commerce"]
        .iter()
        .map(|agency| {
            let config =
                std::fs::read_to_string(dir.join(agency).join("node.toml")).expect("node.toml");
            let listen = config
                .lines()
                .find_map(|l| l.trim().strip_prefix("api_listen = "))
                .expect("api_listen")
                .trim_matches('"')
                .to_string();
            format!("http://{listen}")
        })
        .collect()
}

#[test]
fn a_module_is_installed_by_three_agencies_runs_without_restart_and_is_upgraded_and_retired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let (_devnet, _, node) = demo(&dir, &[]);
    let key = |agency: &str| dir.join(agency).join("operator.key");
    let seller = dir.join("demo").join("seller.key");
    // A module written in the text format, as a file.
    let module = |name: &str, text: &str| {
        let file = tmp.path().join(format!("{name}.wasm"));
        std::fs::write(&file, wat::parse_str(text).expect("wat")).expect("write");
        file
    };
    let v1 = tmp.path().join("display-v1.wasm");
    let v2 = tmp.path().join("display-v2.wasm");
    std::fs::write(&v1, cbec_wasm_rules::DISPLAY_V1).expect("write");
    std::fs::write(&v2, cbec_wasm_rules::DISPLAY_V2).expect("write");

    // Proposed by customs, approved by tax and forex (3 of 4), applied by customs.
    let govern = |step: &[&str]| -> String {
        let mut args = vec!["chaincode"];
        args.extend_from_slice(step);
        let customs = key("customs");
        args.extend_from_slice(&["--key", path(&customs), "--node", &node, "--json"]);
        let proposed = json(&ok(&cbec(&args)));
        let id = proposed["proposal_id"]
            .as_u64()
            .expect("proposal id")
            .to_string();
        for agency in ["tax", "forex"] {
            ok(&cbec(&[
                "chaincode",
                "vote",
                &id,
                "--approve",
                "--key",
                path(&key(agency)),
                "--node",
                &node,
            ]));
        }
        ok(&cbec(&[
            "chaincode",
            "apply",
            &id,
            "--key",
            path(&customs),
            "--node",
            &node,
        ]))
    };
    // (A rejected transaction makes `tx submit` exit 1; its answer is on stdout.)
    let submit = |chaincode: &str, method: &str, args: &str| -> Value {
        let o = cbec(&[
            "tx",
            "submit",
            "--key",
            path(&seller),
            "--node",
            &node,
            chaincode,
            method,
            "--args",
            args,
            "--wait",
            "--json",
        ]);
        json(&text(&o.stdout))
    };
    let outcome = |answer: &Value| -> (String, String) {
        let o = &answer["result"]["outcome"];
        (
            o["status"].as_str().unwrap_or("?").to_string(),
            o["rule"].as_str().unwrap_or("").to_string(),
        )
    };
    let take_out = r#"{"record_no": "D-1", "goods_id": "WINE-1", "value_fen": 80000, "days": 30}"#;

    // Bad input is caught before anything is proposed.
    let bad = cbec(&[
        "chaincode",
        "install",
        "--wasm",
        "/nonexistent.wasm",
        "--id",
        "display",
        "--key",
        path(&key("customs")),
        "--node",
        &node,
    ]);
    assert!(!bad.status.success() && text(&bad.stderr).contains("/nonexistent.wasm"));
    let float = module(
        "float",
        r#"(module (memory (export "memory") 1) (func (export "run") (drop (f32.const 1))))"#,
    );
    let refused = cbec(&[
        "chaincode",
        "install",
        "--wasm",
        path(&float),
        "--id",
        "display",
        "--key",
        path(&key("customs")),
        "--node",
        &node,
    ]);
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("floating-point"),
        "{}",
        text(&refused.stderr)
    );

    // Installed and activated: the running nodes take it at once.
    assert_eq!(
        outcome(&submit("display", "take_out", take_out)).1,
        "CHAINCODE"
    );
    govern(&["install", "--wasm", path(&v1), "--id", "display"]);
    let status = ok(&cbec(&["chaincode", "status", "display", "--node", &node]));
    assert!(status.contains("installed, no version active"), "{status}");
    govern(&["activate", "--id", "display", "--to", "1"]);
    let accepted = submit("display", "take_out", take_out);
    assert_eq!(
        outcome(&accepted),
        ("accepted".into(), String::new()),
        "{accepted}"
    );
    let judged = &accepted["result"]["outcome"]["events"][0];
    assert_eq!(judged["kind"], "wasm_chaincode");
    let refused = submit(
        "display",
        "take_out",
        r#"{"record_no": "D-2", "goods_id": "WINE-2", "value_fen": 1, "days": 200}"#,
    );
    assert_eq!(outcome(&refused).1, "DISPLAY-TERM");

    // A hostile module (an endless loop) is contained alike on every node.
    let spin = module(
        "spin",
        r#"(module (memory (export "memory") 1) (func (export "run") (loop $l (br $l))))"#,
    );
    govern(&["install", "--wasm", path(&spin), "--id", "spin"]);
    govern(&["activate", "--id", "spin", "--to", "1"]);
    let spun = submit("spin", "run", "{}");
    assert_eq!(outcome(&spun).1, "FUEL", "{spun}");
    let hash = spun["hash"].as_str().expect("hash").to_string();
    let height = spun["height"].as_u64().expect("height");
    for url in nodes(&dir) {
        // Every node recorded the same result in the same block.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let answer = loop {
            let answer = json(&ok(&cbec(&["query", "tx", &hash, "--node", &url])));
            if answer["status"] == "committed" || std::time::Instant::now() > deadline {
                break answer;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert_eq!(answer["height"].as_u64(), Some(height), "{url}: {answer}");
        assert_eq!(
            answer["result"]["outcome"]["rule"], "FUEL",
            "{url}: {answer}"
        );
    }

    // Upgraded to version 2 at a known height: a guarantee is now required.
    govern(&["install", "--wasm", path(&v2), "--id", "display"]);
    govern(&["activate", "--id", "display", "--to", "2"]);
    let d3 = r#"{"record_no": "D-3", "goods_id": "WINE-3", "value_fen": 5000, "days": 30}"#;
    assert_eq!(
        outcome(&submit("display", "take_out", d3)).1,
        "DISPLAY-GUARANTEE"
    );
    let d3 = r#"{"record_no": "D-3", "goods_id": "WINE-3", "value_fen": 5000, "days": 30, "guarantee_fen": 5000}"#;
    assert_eq!(outcome(&submit("display", "take_out", d3)).0, "accepted");
    let status = json(&ok(&cbec(&[
        "chaincode",
        "status",
        "display",
        "--node",
        &node,
        "--json",
    ])));
    assert_eq!(status["activations"][1][1], 2, "version 2 runs: {status}");
    assert_eq!(status["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(status["activations"].as_array().map(Vec::len), Some(2));
    // Version 1's record is closed by version 2.
    assert_eq!(
        outcome(&submit("display", "bring_back", r#"{"record_no": "D-1"}"#)).0,
        "accepted"
    );

    // Retired: refused from then on.
    govern(&["retire", "--id", "display"]);
    assert_eq!(
        outcome(&submit("display", "declare", r#"{"record_no": "D-3"}"#)).1,
        "CHAINCODE"
    );
    let status = ok(&cbec(&["chaincode", "status", "display", "--node", &node]));
    assert!(status.contains("retired at height"), "{status}");
}
