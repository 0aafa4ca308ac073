//! The auditor page in a real browser (headless Chromium driven by Playwright for
//! Python, `tests/browser/audit_page.py`): the page a node serves verifies the demo
//! parcel's timeline; a proof with one byte changed shows NOT VERIFIED with the path
//! `cbec verify` names; another chain's genesis fails; the offline copy works from
//! file:// with the network cut; and the WebAssembly verifier agrees with `cbec verify`
//! on every proof of a corpus (each proof kind, and every single-byte change of a
//! transaction proof). A screenshot is kept under the target directory.
//!
//! Needs `chromium` (Debian) and `pip install playwright`, as `.ci/run` installs.

mod common;

use std::path::Path;
use std::process::Command;

use common::{cbec, demo, ok, path, text};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";

/// What `cbec verify` says of `proof`: `verified`, or the failing path and problem.
fn cbec_verdict(dir: &Path, genesis: &Path, proof: &[u8]) -> String {
    let file = dir.join("case.proof");
    std::fs::write(&file, proof).expect("write");
    let o = cbec(&["verify", path(&file), "--genesis", path(genesis)]);
    if o.status.success() {
        return "verified".into();
    }
    let said = text(&o.stderr);
    let line = said.trim().trim_start_matches("error: ");
    match line.split_once(": NOT VERIFIED: ") {
        Some((_, failure)) => failure.to_string(),
        // Not a proof at all: cbec says so before verifying.
        None => format!("proof: {}", line.split_once(": ").map_or(line, |(_, p)| p)),
    }
}

#[test]
fn the_auditor_page_verifies_in_a_real_browser_and_agrees_with_cbec_verify() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let (_devnet, goods_id, node) = demo(&dir, &[]);
    let genesis = dir.join("genesis.json");
    let genesis_bytes = std::fs::read(&genesis).expect("genesis");
    let chain_id = cbec_audit::trust_root(&genesis_bytes)
        .expect("the genesis verifies")
        .chain_id
        .to_string();

    let prove = |what: &[&str], file: &str, format: &str| -> Vec<u8> {
        let out = tmp.path().join(file);
        let mut args = vec!["prove"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["--node", &node, "--out", path(&out), "--format", format]);
        ok(&cbec(&args));
        std::fs::read(&out).expect("proof")
    };
    let provenance = prove(&["provenance", &goods_id], "parcel.proof.json", "json");
    let provenance_bin = prove(&["provenance", &goods_id], "parcel.proof", "binary");
    let head_key = format!("goods/head/{goods_id}");
    let state = prove(&["state", &head_key], "head.proof", "binary");
    let first_tx = cbec_audit::verify(&genesis_bytes, &provenance)
        .map(|(_, v)| match v {
            cbec_ledger::Verified::Provenance { timeline, .. } => timeline[0].tx_hash.to_string(),
            _ => panic!("not provenance"),
        })
        .expect("verified");
    let tx = prove(&["tx", &first_tx], "tx.proof", "binary");
    // The demo's refused transaction (a rule's refusal is on the ledger too).
    let refused_tx = (1..=40)
        .find_map(|h| {
            let block: serde_json::Value = reqwest::blocking::get(format!("{node}/v1/blocks/{h}"))
                .ok()?
                .json()
                .ok()?;
            block["block"]["results"]
                .as_array()?
                .iter()
                .find(|r| r["outcome"]["status"] == "rejected")
                .and_then(|r| r["tx_hash"].as_str().map(String::from))
        })
        .expect("the demo refuses one transaction");
    prove(&["tx", &refused_tx], "refused.proof.json", "json");
    prove(&["state", &head_key], "head.proof.json", "json");

    // One byte of the binary provenance proof changed, where it still reads as a proof.
    let (tampered, tampered_failure) = (provenance_bin.len() / 2..provenance_bin.len())
        .find_map(|i| {
            let mut bad = provenance_bin.clone();
            bad[i] ^= 0x01;
            match cbec_audit::verify(&genesis_bytes, &bad) {
                Err(f) if f.at != "proof" => Some((bad, f.to_string())),
                _ => None,
            }
        })
        .expect("a byte whose change verification catches");
    let tampered_path = tmp.path().join("tampered.proof");
    std::fs::write(&tampered_path, &tampered).expect("write");
    let said = text(&cbec(&["verify", path(&tampered_path), "--genesis", path(&genesis)]).stderr);
    assert!(
        said.contains(&tampered_failure),
        "cbec verify names it too: {said}"
    );

    let other = tmp.path().join("other");
    ok(&cbec(&["genesis", "new", "--out", path(&other)]));
    let other_genesis = other.join("genesis.json");
    let other_chain_id = cbec_audit::trust_root(&std::fs::read(&other_genesis).expect("other"))
        .expect("the other genesis verifies")
        .chain_id
        .to_string();

    // The corpus: each kind as served, against both genesis files, and every single-byte
    // change of the transaction proof.
    let mut corpus = Vec::new();
    let mut case = |name: String, genesis_path: &Path, proof: &[u8]| {
        let genesis = std::fs::read(genesis_path).expect("genesis");
        corpus.push(json!({
            "name": name,
            "genesis": hex::encode(&genesis),
            "proof": hex::encode(proof),
            "expected": cbec_verdict(tmp.path(), genesis_path, proof),
        }));
    };
    for (name, proof) in [
        ("provenance json", &provenance),
        ("provenance binary", &provenance_bin),
        ("state", &state),
        ("tx", &tx),
        ("tampered", &tampered),
    ] {
        case(name.to_string(), &genesis, proof);
        case(format!("{name}, other chain"), &other_genesis, proof);
    }
    // Every byte of the transaction proof flipped would take a process per case through
    // `cbec verify`; every 7th byte keeps the run short and still covers every field.
    for i in (0..tx.len()).step_by(7) {
        let mut bad = tx.clone();
        bad[i] ^= 0x80;
        case(format!("tx byte {i}"), &genesis, &bad);
    }
    let cases = corpus.len();
    let corpus_path = tmp.path().join("corpus.json");
    std::fs::write(&corpus_path, serde_json::to_vec(&corpus).expect("json")).expect("write");

    let offline = tmp.path().join("offline");
    let wrote = ok(&cbec(&["audit", "page", "--out", path(&offline)]));
    assert!(wrote.contains(cbec_audit_page::CODE_HASH), "{wrote}");
    let served = format!("{node}/audit/");
    let checked = ok(&cbec(&["audit", "page", "--check", &served]));
    assert!(checked.contains("serves this very page"), "{checked}");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("audit-page.png");
    let proof_path = tmp.path().join("parcel.proof.json");
    let args = json!({
        "chromium": CHROMIUM,
        "served": served,
        "digital_link": format!("{node}/01/06901234567892/21/{goods_id}"),
        "offline": format!("file://{}", offline.join("index.html").display()),
        "genesis": genesis,
        "other_genesis": other_genesis,
        "chain_id": chain_id,
        "other_chain_id": other_chain_id,
        "goods_id": goods_id,
        // The demo splits MEAT-LOT-<stamp> into MEAT-<stamp>-1.. (PARCEL-<stamp> is its parcel).
        "lot_parcel": goods_id.replace("PARCEL-", "MEAT-") + "-1",
        "events": 8,
        "proof": proof_path,
        "tampered": tampered_path,
        "tampered_failure": tampered_failure,
        "code_hash": cbec_audit_page::CODE_HASH,
        "corpus": corpus_path,
        "refused": tmp.path().join("refused.proof.json"),
        "state": tmp.path().join("head.proof.json"),
        "screenshot": screenshot,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/audit_page.py");
    let run = Command::new("python3")
        .arg(&script)
        .arg(args.to_string())
        .output()
        .expect("run python3");
    assert!(
        run.status.success(),
        "{}{}\n(needs `apt-get install chromium` and `pip install playwright`)",
        text(&run.stdout),
        text(&run.stderr)
    );
    assert!(text(&run.stdout).contains(&format!("({cases} proofs compared)")));
    assert!(screenshot.exists(), "the screenshot is kept");
}
