//! `cbec bench` end to end on a small load: it starts the devnet, commits what it
//! sends, checks agreement, and reports every figure.

use std::process::Command;
use std::sync::Mutex;

/// One devnet at a time: two at once on a small machine measure each other.
static DEVNET: Mutex<()> = Mutex::new(());

fn one_devnet() -> std::sync::MutexGuard<'static, ()> {
    DEVNET.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_short_bench_commits_its_load_and_reports_every_figure() {
    let _devnet = one_devnet();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let json = tmp.path().join("bench.json");
    let run = Command::new(env!("CARGO_BIN_EXE_cbec"))
        .args(["bench", "--dir"])
        .arg(&dir)
        .args([
            "--rate",
            "200",
            "--duration",
            "3",
            "--clients",
            "2",
            "--stop",
            "--json-out",
        ])
        .arg(&json)
        .output()
        .expect("run cbec bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    // `--stop`: no node is left running (and nothing but the report on stdout).
    let status = Command::new(env!("CARGO_BIN_EXE_cbec"))
        .args(["devnet", "down", "--dir"])
        .arg(&dir)
        .output()
        .expect("devnet down");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        "no node was running",
        "bench --stop left nodes running: {stderr}"
    );
    assert!(run.status.success(), "bench failed: {stderr}");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("committed") && text.contains("agreement"),
        "{text}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let committed = r["committed_in_window"].as_u64().expect("count");
    assert!(
        committed > 300,
        "committed only {committed} of ~600 offered: {r}"
    );
    assert_eq!(r["rejected_by_rules"], 0, "{r}");
    assert!(r["latency_ms"]["p50"].as_f64().expect("p50") > 0.0);
    assert!(r["latency_ms"]["p99"].as_f64() >= r["latency_ms"]["p50"].as_f64());
    // One minute (a partial one) in a 3 s window, holding every transaction committed.
    let minutes = r["latency_ms_by_minute"].as_array().expect("per minute");
    assert_eq!(minutes.len(), 1, "{r}");
    assert_eq!(minutes[0]["samples"].as_u64(), Some(committed), "{r}");
    assert_eq!(r["nodes"].as_array().map(Vec::len), Some(4));
    assert!(r["nodes"][0]["cpu_s"].as_f64().expect("cpu") > 0.0);
    // Memory and disk at (up to) each tenth of the window, sampled twice a second; the
    // disk a committed transaction costs is positive once blocks are on disk.
    for series in ["rss_tenths_mb", "disk_bytes_per_tx_tenths"] {
        let tenths = r["nodes"][0][series].as_array().expect(series);
        assert!((1..=10).contains(&tenths.len()), "{series}: {r}");
    }
    let disk = r["nodes"][0]["disk_bytes_per_tx_tenths"]
        .as_array()
        .and_then(|t| t.last())
        .and_then(serde_json::Value::as_f64)
        .expect("disk per tx");
    assert!(disk > 0.0, "{r}");
    assert!(
        r["signature_floor"]["batch_verify_per_s"]
            .as_f64()
            .expect("floor")
            > 1000.0
    );
    assert!(r["agreed_height"].as_u64().expect("height") > 0);
}

/// The parcels workload on a state that already holds synthetic keys: parcels go all
/// the way through clearance, nothing is refused by a rule, and the report says so.
#[test]
fn the_parcel_workload_clears_parcels_on_a_state_with_synthetic_keys() {
    let _devnet = one_devnet();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let json = tmp.path().join("bench.json");
    let run = Command::new(env!("CARGO_BIN_EXE_cbec"))
        .args(["bench", "--dir"])
        .arg(&dir)
        .args([
            "--workload",
            "parcels",
            "--parcels",
            "6",
            "--state-keys",
            "20000",
            "--duration",
            "8",
            "--clients",
            "1",
            "--stop",
            "--json-out",
        ])
        .arg(&json)
        .output()
        .expect("run cbec bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed: {stderr}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    assert_eq!(r["workload"], "parcels", "{r}");
    assert_eq!(r["state_keys"], 20_000, "{r}");
    assert_eq!(r["rejected_by_rules"], 0, "{r}\n{stderr}");
    let cleared = r["parcels_cleared"].as_u64().expect("parcels cleared");
    assert!(cleared > 0, "no parcel cleared: {r}\n{stderr}");
    // Eleven transactions per parcel (and two per lot of parcels), clearance the ninth.
    let committed = r["committed_in_window"].as_u64().expect("count");
    assert!(
        committed >= 10 * cleared / 2,
        "{committed} txs for {cleared} parcels"
    );
    // The synthetic keys are in every node's tree: the genesis asks for them.
    let genesis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("genesis.json")).expect("genesis"))
            .expect("json");
    assert_eq!(genesis["synthetic_state"]["keys"], 20_000);
}

#[test]
fn bench_refuses_nonsense_arguments() {
    for args in [
        &["bench", "--rate", "0"][..],
        &["bench", "--rate", "10", "--saturate"][..],
        &["bench", "--clients", "0"][..],
        &["bench", "--workload", "parcels", "--parcels", "0"][..],
        &["bench", "--workload", "parcels", "--lot-parcels", "0"][..],
        &["bench", "--workload", "parcels", "--lot-parcels", "1001"][..],
        &["bench", "--workload", "nonsense"][..],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_cbec"))
            .args(args)
            .args(["--dir", "/nonexistent/never-created"])
            .output()
            .expect("run");
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
}
