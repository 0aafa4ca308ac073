//! Disk faults: a node whose disk fills stops cleanly, naming the failure, loses nothing
//! acknowledged, and resumes once space is freed; a store with a flipped byte is
//! refused at start with a message naming what failed.
//!
//! The full disk is a small tmpfs mounted over the node's data directory, so this test
//! needs root with the right to mount (as CI and these machines run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cbec_ledger::KeyPair;
use cbec_tests::Consortium;
use serde_json::json;

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");

/// A tmpfs of `size` over `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("data dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill a disk: it needs root with the right to mount"
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn filing(c: &Consortium, nonce: u64, key: &KeyPair) -> cbec_ledger::Transaction {
    c.sign(
        &c.operator(3),
        nonce,
        "enterprise",
        "approve_filing",
        json!({"uscc": "91140200MA0GRK2220", "name": "disk test", "roles": ["manufacturer"],
               "keys": [key.public()], "customs_code": "1402960002"}),
    )
}

#[test]
fn a_full_disk_stops_the_node_cleanly_and_it_resumes_when_space_is_freed() {
    let mut c = Consortium::generate(NODE);
    let disk = Tmpfs::mount(&c.data_dir(2), "48m");
    c.start_all();
    c.wait_for("first block", Duration::from_secs(60), |c| {
        (0..4).all(|i| c.height(i).is_some_and(|h| h >= 1))
    });
    let firm = KeyPair::from_seed(&[0x5d; 32]);
    let (status, answer) = c.submit(0, &filing(&c, 0, &firm), true);
    assert_eq!(status, 200, "{answer}");
    // Load with large events until node 2's disk is full and it stops.
    let mut acknowledged = Vec::new();
    let mut nonce = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let exit = loop {
        assert!(std::time::Instant::now() < deadline, "node 2 never stopped");
        if let Some(status) = c.exited(2) {
            break status;
        }
        let txs: Vec<_> = (0..200)
            .map(|k| {
                let n = nonce + k;
                c.sign(
                    &firm,
                    n,
                    "goods",
                    "record",
                    json!({"goods_id": format!("DISK-{n}"), "kind": "produced",
                           "attributes": {"filler": "x".repeat(20_000)}}),
                )
            })
            .collect();
        nonce += txs.len() as u64;
        let body = cbec_ledger::codec::encode(&txs);
        let (status, _) = c.post_raw(0, "/v1/txs", "application/octet-stream", body);
        assert_eq!(status, 202);
        // What the others committed is acknowledged.
        let last = txs.last().expect("txs").hash(c.suite);
        c.wait_for("the batch committed", Duration::from_secs(60), |c| {
            c.get(0, &format!("/v1/tx/{last}"))
                .is_some_and(|v| v["status"] == "committed")
        });
        acknowledged.extend(txs.iter().map(|t| t.hash(c.suite)));
    };
    assert!(!exit.success(), "a node that cannot write exits non-zero");
    let log = c.log(2);
    assert!(
        log.contains("the host stopped")
            && (log.contains("No space left") || log.contains("storage failed")),
        "the node says why it stopped:\n{}",
        &log[log.len().saturating_sub(3_000)..]
    );
    // The others went on.
    let height = c.height(0).expect("height");
    c.wait_for("the others go on", Duration::from_secs(30), |c| {
        c.height(0).is_some_and(|h| h > height)
    });
    // Space freed: node 2 restarts on its store, catches up, and holds every
    // acknowledged transaction.
    disk.resize("1g");
    c.start(2);
    let target = c.height(0).expect("height");
    c.wait_for("node 2 caught up", Duration::from_secs(120), |c| {
        c.height(2).is_some_and(|h| h >= target)
    });
    for hash in acknowledged.iter().step_by(37).chain(acknowledged.last()) {
        let on_2 = c.get(2, &format!("/v1/tx/{hash}")).expect("node 2 answers");
        let on_0 = c.get(0, &format!("/v1/tx/{hash}")).expect("node 0 answers");
        assert_eq!(on_2["status"], "committed", "{hash}: {on_2}");
        assert_eq!(on_2["height"], on_0["height"], "{hash}");
    }
    c.kill(2);
    drop(disk);
}

/// A flipped byte in any of the store's files is found at start: the node refuses to
/// run, naming the store and what failed.
#[test]
fn a_store_with_a_flipped_byte_is_refused_at_start() {
    let mut c = Consortium::generate(NODE);
    c.start_all();
    c.wait_for("ten blocks", Duration::from_secs(60), |c| {
        (0..4).all(|i| c.height(i).is_some_and(|h| h >= 10))
    });
    let stopped = c.stop(1).expect("node 1 stops");
    assert!(stopped.success(), "a clean stop exits 0");
    let db = c.data_dir(1).join("db");
    {
        // Everything on disk in table files (a running node keeps the newest in logs).
        let genesis = cbec_genesis::Genesis::load(
            &c.net().join("genesis.json"),
            cbec_chaincode::catalog::check_config,
        )
        .expect("genesis");
        let store = cbec_node::store::Store::open(&db, &genesis.chain_id()).expect("open");
        store.flush().expect("flush");
    }
    let tables: Vec<PathBuf> = std::fs::read_dir(&db)
        .expect("db dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    assert!(!tables.is_empty(), "table files after a flush");
    for table in &tables {
        let mut bytes = std::fs::read(table).expect("read");
        let at = bytes.len() / 3;
        bytes[at] ^= 0x01;
        std::fs::write(table, bytes).expect("write");
    }
    c.start(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = c.exited(1) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node ran on a corrupt store"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!exit.success());
    let log = c.log(1);
    let tail = &log[log.len().saturating_sub(2_000)..];
    assert!(
        tail.contains("store") && (tail.contains("Corruption") || tail.contains("corrupt")),
        "the refusal names the store and the corruption:\n{tail}"
    );
}
