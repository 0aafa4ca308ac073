//! Four validator processes on loopback: they commit, agree, survive a SIGKILL, stop
//! without a quorum, and shrug off bad input.

use std::time::Duration;

use cbec_ledger::Suite;
use cbec_tests::Consortium;
use serde_json::json;

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");
const ALL: [usize; 4] = [0, 1, 2, 3];

fn filing(c: &Consortium, nonce: u64, n: u16) -> cbec_ledger::Transaction {
    // Distinct valid USCCs: vary the body, complete the check character.
    let body = format!("91140200MA{n:07}");
    let uscc = cbec_chaincode::codes::uscc_with_check(&body).expect("a 17-character USCC body");
    let key = c.endpoints().client_key(&[n as u8 + 1; 32]);
    c.sign(
        &c.operator(3),
        nonce,
        "enterprise",
        "approve_filing",
        json!({"uscc": uscc, "name": format!("e2e {n}"), "roles": ["seller"], "keys": [key.public()],
               "customs_code": format!("1402{n:06}")}),
    )
}

fn agree_at(c: &Consortium, nodes: &[usize], height: u64) {
    c.wait_for(
        &format!("height {height} on nodes {nodes:?}"),
        Duration::from_secs(60),
        |c| {
            nodes
                .iter()
                .all(|i| c.height(*i).is_some_and(|h| h >= height))
        },
    );
    let ids: Vec<_> = nodes
        .iter()
        .map(|i| c.block_id(*i, height).expect("block"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree at {height}: {ids:?}"
    );
}

#[test]
fn four_nodes_commit_agree_and_survive_a_killed_node() {
    commit_agree_and_survive_a_killed_node(Suite::Ed25519Sha256);
}

/// The same on a national-cryptography chain: SM2 keys and signatures, SM3 hashes.
#[test]
fn sm2_sm3_nodes_commit_agree_and_survive_a_killed_node() {
    commit_agree_and_survive_a_killed_node(Suite::Sm2Sm3);
}

fn commit_agree_and_survive_a_killed_node(suite: Suite) {
    let mut c = Consortium::generate_with(NODE, suite);
    c.start_all();
    c.wait_for("first block", Duration::from_secs(60), |c| {
        ALL.iter().all(|i| c.height(*i).is_some_and(|h| h >= 1))
    });

    // The event stream of another node announces the block that commits it. The node
    // subscribes the stream before it answers, so once the answer's head is in, no
    // later block can be missed (a fixed wait here could be too short under load).
    let (subscribed, is_subscribed) = std::sync::mpsc::channel();
    let events = std::thread::spawn({
        let url = format!("{}/v1/events", c.api(2));
        move || {
            let response = reqwest::blocking::Client::new()
                .get(url)
                .timeout(Duration::from_secs(60))
                .send()
                .expect("event stream");
            let _ = subscribed.send(());
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(response));
            lines
                .find_map(|line| {
                    let line = line.expect("event stream line");
                    let data: serde_json::Value =
                        serde_json::from_str(line.strip_prefix("data:")?.trim()).ok()?;
                    (data["txs"].as_array()?.len() == 1).then_some(data)
                })
                .expect("a block with one transaction")
        }
    });
    is_subscribed
        .recv_timeout(Duration::from_secs(60))
        .expect("subscribed to the event stream");

    // A transaction submitted to one node commits on all four, identically.
    let (status, answer) = c.submit(1, &filing(&c, 0, 1), true);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["result"]["outcome"]["status"], "accepted",
        "{answer}"
    );
    let height = answer["height"].as_u64().expect("height");
    agree_at(&c, &ALL, height);
    let hash = answer["hash"].as_str().expect("hash");
    let event = events.join().expect("event reader");
    assert_eq!(event["height"].as_u64(), Some(height), "{event}");
    assert_eq!(event["txs"][0].as_str(), Some(hash), "{event}");
    assert_eq!(
        event["results"][0]["outcome"]["status"], "accepted",
        "{event}"
    );
    for i in ALL {
        let found = c.get(i, &format!("/v1/tx/{hash}")).expect("tx");
        assert_eq!(found["status"], "committed", "node {i}: {found}");
    }
    // The store's memory shows in the metrics, within its bounds.
    let metrics = c.endpoints().text(0, "/metrics").expect("metrics");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(value("cbec_store_memtable_bytes") > 0.0);
    assert!(value("cbec_store_block_cache_bytes") <= 128.0 * 1024.0 * 1024.0);
    assert!(value("cbec_store_tree_nodes") > 0.0);
    assert!(value("cbec_store_tree_leaves") > 0.0);
    value("cbec_store_table_reader_bytes");
    // Compaction's backlog is shown; a small ledger has little of it.
    assert!(value("cbec_store_l0_files") < 64.0);
    assert!(value("cbec_store_compaction_pending_bytes") < 1024.0 * 1024.0 * 1024.0);
    // The next block's limit: the genesis one (10,000), or a 64th of it at the least.
    let block_txs_max = value("cbec_block_txs_max");
    assert!(
        (156.0..=10_000.0).contains(&block_txs_max),
        "{block_txs_max}"
    );

    // SIGKILL one node; the other three keep committing.
    c.kill(2);
    let (status, answer) = c.submit(0, &filing(&c, 1, 2), true);
    assert_eq!(status, 200, "{answer}");
    let during = answer["height"].as_u64().expect("height");
    agree_at(&c, &[0, 1, 3], during);

    // Restarted, it syncs and all four agree again; nothing committed was lost.
    c.start(2);
    agree_at(&c, &ALL, during + 1);
    for tx_height in [height, during] {
        agree_at(&c, &ALL, tx_height);
    }
}

#[test]
fn two_of_four_down_stops_commits_until_three_are_back() {
    let mut c = Consortium::generate(NODE);
    c.start_all();
    c.wait_for("first block", Duration::from_secs(60), |c| {
        ALL.iter().all(|i| c.height(*i).is_some_and(|h| h >= 1))
    });
    c.kill(2);
    c.kill(3);
    std::thread::sleep(Duration::from_millis(1500)); // let an in-flight commit land
    let stuck = c.height(0).expect("status");
    // Safety over liveness: with half the power gone, nothing commits.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        c.height(0).expect("status") <= stuck + 1,
        "committed without a quorum"
    );
    let frozen = c.height(0).expect("status");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.height(0), Some(frozen));
    c.start(2);
    c.wait_for("progress with three nodes", Duration::from_secs(60), |c| {
        c.height(0).is_some_and(|h| h > frozen + 1)
    });
    agree_at(&c, &[0, 1, 2], frozen + 1);
}

#[test]
fn bad_transactions_get_a_4xx_and_the_node_keeps_working() {
    let mut c = Consortium::generate(NODE);
    c.start_all();
    c.wait_for("first block", Duration::from_secs(60), |c| {
        ALL.iter().all(|i| c.height(*i).is_some_and(|h| h >= 1))
    });
    let (status, body) = c.post_raw(0, "/v1/tx", "application/json", b"{not json".to_vec());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("JSON")),
        "{body}"
    );
    let (status, _) = c.post_raw(0, "/v1/tx", "application/octet-stream", vec![0xff; 37]);
    assert_eq!(status, 400);
    let mut forged = filing(&c, 0, 3);
    forged.signature.0[7] ^= 1;
    let (status, body) = c.submit(0, &forged, false);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("signature")),
        "{body}"
    );
    let mut other_chain = filing(&c, 0, 3);
    other_chain.body.chain_id = cbec_ledger::Hash([9; 32]);
    let (status, body) = c.submit(0, &other_chain, false);
    assert_eq!(status, 422, "{body}");
    let (status, _) = c.post_raw(0, "/v1/nope", "application/json", vec![]);
    assert_eq!(status, 404);
    // Still working: a good transaction commits.
    let good = filing(&c, 0, 4);
    let (status, answer) = c.submit(0, &good, true);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "committed");
    // Each refusal says what a client can do: the same transaction again, or another at
    // a used nonce, conflicts (409, do not resend); it never looks like "invalid".
    let (status, body) = c.submit(0, &good, false);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "stale_nonce", "{body}");
    let again = filing(&c, 1, 5);
    assert_eq!(c.submit(0, &again, false).0, 202);
    let (status, body) = c.submit(0, &again, false);
    assert!(
        status == 409 && (body["code"] == "duplicate" || body["code"] == "stale_nonce"),
        "{status} {body}"
    );
    // Metrics answer.
    let metrics = reqwest::blocking::get(format!("{}/metrics", c.api(0)))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(metrics.contains("cbec_height"), "{metrics}");
}

/// A validator whose key file is of the other scheme than the chain's suite does not
/// start: the node exits at once, naming both.
#[test]
fn a_validator_key_of_the_other_scheme_is_refused_at_start() {
    let mut c = Consortium::generate_with(NODE, Suite::Sm2Sm3);
    let path = c.net().join("customs/validator.key");
    cbec_genesis::write_key(&path, &cbec_ledger::KeyPair::from_seed(&[9; 32]), true)
        .expect("write key");
    c.start(0);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = c.exited(0) {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running:\n{}",
            c.log(0)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let log = c.log(0);
    assert!(
        log.contains("validator.key")
            && log.contains("is an ed25519 key; this chain's crypto suite is sm2-sm3"),
        "{log}"
    );
}

/// With `[network] compact_proposals` on every node, blocks of 512 transactions or more
/// travel without them: the proposer's peers put them together from their mempools
/// (or fetch them whole on `/cbec/block/1`), and all four commit the same blocks.
#[test]
fn compact_proposals_are_put_together_and_committed_by_all_four() {
    let mut c = Consortium::generate(NODE);
    for i in ALL {
        c.configure(i, |config| config.network.compact_proposals = true);
    }
    c.start_all();
    c.wait_for("first block", Duration::from_secs(60), |c| {
        ALL.iter().all(|i| c.height(*i).is_some_and(|h| h >= 1))
    });
    // Failed rounds while the nodes start halve the block limit; blocks decided in
    // their first round double it back. Wait for room for large blocks.
    let limit = |c: &Consortium, i: usize| -> f64 {
        let metrics = c.endpoints().text(i, "/metrics").unwrap_or_default();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("cbec_block_txs_max")?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    c.wait_for(
        "block limits of 1,024 transactions or more",
        Duration::from_secs(60),
        |c| ALL.iter().all(|i| limit(c, *i) >= 1_024.0),
    );
    let txs: Vec<cbec_ledger::Transaction> = (0..1_500u16)
        .map(|n| {
            let uscc = cbec_chaincode::codes::uscc_with_check(&format!("91140200MB{n:07}"))
                .expect("a 17-character USCC body");
            let [lo, hi] = n.to_le_bytes();
            let key = c.endpoints().client_key(&[
                lo, hi, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                7, 7, 7, 7, 7,
            ]);
            c.sign(
                &c.operator(3),
                u64::from(n),
                "enterprise",
                "approve_filing",
                json!({"uscc": uscc, "name": format!("compact {n}"), "roles": ["seller"],
                       "keys": [key.public()], "customs_code": format!("1403{n:06}")}),
            )
        })
        .collect();
    let body = serde_json::to_vec(&txs).expect("json");
    let (status, answer) = c
        .endpoints()
        .post(1, "/v1/txs", "application/json", body)
        .expect("an answer");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"].as_u64(), Some(1_500), "{answer}");
    let last = c.endpoints().tx_hash(&txs[1_499]);
    c.wait_for(
        "the last filing committed on all four",
        Duration::from_secs(90),
        |c| {
            ALL.iter().all(|i| {
                c.get(*i, &format!("/v1/tx/{last}"))
                    .is_some_and(|found| found["status"] == "committed")
            })
        },
    );
    let height = c.height(0).expect("height");
    agree_at(&c, &ALL, height);
    let counter = |i: usize, name: &str| -> f64 {
        let metrics = c.endpoints().text(i, "/metrics").expect("metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    let compact: f64 = ALL
        .iter()
        .map(|i| {
            counter(*i, "cbec_compact_proposals_filled_total")
                + counter(*i, "cbec_compact_proposals_waited_total")
                + counter(*i, "cbec_compact_proposals_fetched_total")
        })
        .sum();
    assert!(
        compact >= 3.0,
        "the proposer's three peers each took a compact proposal: {compact}"
    );
}
