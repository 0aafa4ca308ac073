//! The `cbec` binary as a user runs it: exit codes, one-line errors, JSON output.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn cbec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cbec"))
        .args(args)
        .output()
        .expect("run cbec")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with a one-line error that mentions `words`, a non-zero exit, and no panic.
fn assert_fails(o: &Output, words: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "succeeded: {}", stdout(o));
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(words), "`{words}` not in: {err}");
}

fn new_consortium(dir: &Path) -> String {
    let o = cbec(&[
        "genesis",
        "new",
        "--out",
        dir.to_str().expect("utf8"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    v["chain_id"].as_str().expect("chain id").to_string()
}

#[test]
fn new_verify_and_tamper_detection_as_the_readme_shows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let chain_id = new_consortium(&dir);
    let genesis = dir.join("genesis.json");
    let g = genesis.to_str().expect("utf8");

    let o = cbec(&["genesis", "verify", g, "--chain-id", &chain_id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&chain_id));

    let o = cbec(&["genesis", "inspect", g]);
    assert!(o.status.success());
    for agency in ["customs", "tax", "forex", "commerce"] {
        assert!(stdout(&o).contains(agency), "{agency} missing");
    }

    // One character of the document changed: verify against the agreed id fails.
    let text = std::fs::read_to_string(&genesis).expect("read");
    std::fs::write(
        &genesis,
        text.replacen("cbec-pilot-zone", "cbec-pilot-zond", 1),
    )
    .expect("write");
    let o = cbec(&["genesis", "verify", g, "--chain-id", &chain_id]);
    assert_fails(&o, "chain id mismatch");
    assert!(stderr(&o).contains(g));
}

#[test]
fn broken_genesis_is_reported_with_file_and_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    new_consortium(&dir);
    let genesis = dir.join("genesis.json");
    let text = std::fs::read_to_string(&genesis).expect("read");
    std::fs::write(
        &genesis,
        text.replacen("\"voting_power\": 1", "\"voting_power\": 0", 1),
    )
    .expect("write");
    let o = cbec(&["genesis", "verify", genesis.to_str().expect("utf8")]);
    assert_fails(&o, "agencies[0].voting_power: must be greater than zero");

    std::fs::write(&genesis, &text[..text.len() / 2]).expect("write");
    let o = cbec(&["genesis", "inspect", genesis.to_str().expect("utf8")]);
    assert_fails(&o, "not a genesis document");

    let o = cbec(&["genesis", "verify", "/nonexistent/genesis.json"]);
    assert_fails(&o, "/nonexistent/genesis.json: cannot read");

    std::fs::write(
        &genesis,
        text.replacen("\"id\": \"goods\"", "\"id\": \"lottery\"", 1),
    )
    .expect("write");
    let o = cbec(&["genesis", "verify", genesis.to_str().expect("utf8")]);
    assert_fails(&o, "unknown chaincode `lottery`");
}

#[test]
fn existing_consortium_is_not_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    new_consortium(&dir);
    let key_before = std::fs::read(dir.join("customs/validator.key")).expect("read");
    let o = cbec(&["genesis", "new", "--out", dir.to_str().expect("utf8")]);
    assert_fails(&o, "already holds a consortium");
    assert_eq!(
        std::fs::read(dir.join("customs/validator.key")).expect("read"),
        key_before
    );
}

#[test]
fn keys_new_and_show_agree_and_bad_key_files_fail_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("seller.key");
    let k = key.to_str().expect("utf8");
    let o = cbec(&["keys", "new", "--out", k, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let created: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let o = cbec(&["keys", "show", k, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(created["public_key"], shown["public_key"]);
    assert_eq!(
        std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
        0o600
    );

    let o = cbec(&["keys", "new", "--out", k]);
    assert_fails(&o, "refusing to overwrite");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_fails(&cbec(&["keys", "show", k]), "chmod 600");

    std::fs::write(&key, "abcdef\n").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_fails(&cbec(&["keys", "show", k]), "and 64 hex characters");

    std::fs::write(&key, format!("{}\n", "g".repeat(64))).expect("write");
    assert_fails(&cbec(&["keys", "show", k]), "not hex");

    assert_fails(
        &cbec(&["keys", "show", "/nonexistent.key"]),
        "key file not found",
    );

    // An SM2 key says so (and has no libp2p peer id); an unknown scheme is named.
    let sm2 = tmp.path().join("sm2.key");
    let s = sm2.to_str().expect("utf8");
    let o = cbec(&["keys", "new", "--scheme", "sm2", "--out", s, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let created: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(created["scheme"], "sm2");
    assert_eq!(created["public_key"].as_str().map(str::len), Some(66));
    assert!(created.get("peer_id").is_none(), "{created}");
    assert!(std::fs::read_to_string(&sm2)
        .expect("read")
        .starts_with("sm2:"));
    let o = cbec(&["keys", "new", "--scheme", "rsa", "--out", s]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown key scheme `rsa`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_arguments_exit_with_usage_error() {
    let o = cbec(&["genesis", "verify", "x.json", "--chain-id", "abc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected 64 hex characters"));
    let o = cbec(&[
        "genesis",
        "new",
        "--out",
        "/tmp/x",
        "--genesis-time",
        "noon",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("RFC 3339"));
    let o = cbec(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("genesis"));
}

#[test]
fn codes_check_uses_the_ledger_validators() {
    let o = cbec(&["codes", "check", "uscc", "914403001922038216"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_fails(
        &cbec(&["codes", "check", "uscc", "91350100M000100Y4A"]),
        "expected `3`",
    );
    assert_fails(
        &cbec(&["codes", "check", "resident-id", "110105194912310021"]),
        "check character",
    );
    assert!(
        cbec(&["codes", "check", "resident-id", "11010519491231002X"])
            .status
            .success()
    );
    assert_fails(
        &cbec(&["codes", "check", "gtin", "6901234567890"]),
        "gtin `6901234567890`",
    );
    assert_fails(
        &cbec(&["codes", "check", "commodity", "7700000000"]),
        "chapter 77",
    );
    let o = cbec(&["codes", "check", "uscc", "91140200ma0grk2220"]);
    assert_fails(&o, "not canonical");
}

/// `cbec identity attest`: the identity service checks the number and signs an
/// attestation holding the keyed buyer tag only; a bad number, a short tag key and a
/// missing key file are refused with one line naming them.
#[test]
fn identity_attest_signs_the_buyer_tag_and_refuses_bad_numbers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("ids.key");
    let k = key.to_str().expect("utf8");
    assert!(cbec(&["keys", "new", "--out", k]).status.success());
    let tag_key = tmp.path().join("tag.key");
    std::fs::write(&tag_key, format!("{}\n", "ab".repeat(32))).expect("write");
    let t = tag_key.to_str().expect("utf8");
    let out = tmp.path().join("attestation.json");
    // `identity attest` with the service key and tag key, then `rest`.
    let attest = |rest: &[&str]| {
        let mut args = vec!["identity", "attest", "--key", k, "--tag-key", t];
        args.extend_from_slice(rest);
        cbec(&args)
    };
    let o = attest(&[
        "--id-number",
        "11010519491231002X",
        "--name",
        "Li Lei",
        "--out",
        out.to_str().expect("utf8"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
    assert_eq!(printed, written);
    let expected =
        cbec_chaincode::identity::personal_tag(&[0xab; 32], "v1", "buyer", "11010519491231002X");
    assert_eq!(printed["body"]["buyer_tag"], expected.as_str());
    assert_eq!(printed["body"]["verdict"], "verified");
    let text = stdout(&o);
    assert!(
        !text.contains("11010519491231002X") && !text.contains("Li Lei"),
        "{text}"
    );

    let o = attest(&["--id-number", "110105194912310021", "--name", "Li Lei"]);
    assert_fails(&o, "resident id number: check character");
    // From standard input: the same tag, nothing on the command line.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cbec"))
        .args(["identity", "attest", "--key", k, "--tag-key", t, "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        b"11010519491231002X\nLi Lei\n",
    )
    .expect("write");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
    let piped: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(piped["body"]["buyer_tag"], expected.as_str());
    std::fs::write(&tag_key, "abcd\n").expect("write");
    let o = attest(&["--id-number", "11010519491231002X", "--name", "Li Lei"]);
    assert_fails(&o, "at least 16 are needed");
}
