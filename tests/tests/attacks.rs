//! The hostile-client attacks of issue 13, rerun as bounded scripts against real
//! validator processes on loopback: each is answered with a clear refusal, and the node
//! stays healthy (height rising, memory within its bounds).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cbec_ledger::{codec, KeyPair, Transaction};
use cbec_tests::Consortium;
use serde_json::{json, Value};

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");
const ALL: [usize; 4] = [0, 1, 2, 3];

fn started(configure: impl Fn(&mut cbec_genesis::NodeConfig)) -> Consortium {
    let mut c = Consortium::generate(NODE);
    for i in ALL {
        c.configure(i, &configure);
    }
    c.start_all();
    c.wait_for("first block", Duration::from_secs(60), |c| {
        ALL.iter().all(|i| c.height(*i).is_some_and(|h| h >= 1))
    });
    c
}

/// Files an enterprise (commerce, at `nonce`) holding `key`, and waits for it.
fn file(c: &Consortium, nonce: u64, n: u16, key: &KeyPair) {
    let uscc =
        cbec_chaincode::codes::uscc_with_check(&format!("91140200MA{n:07}")).expect("a USCC body");
    let tx = c.sign(
        &c.operator(3),
        nonce,
        "enterprise",
        "approve_filing",
        json!({"uscc": uscc, "name": format!("attack {n}"), "roles": ["manufacturer"],
               "keys": [key.public()], "customs_code": format!("1402{n:06}")}),
    );
    let (status, answer) = c.submit(0, &tx, true);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["result"]["outcome"]["status"], "accepted",
        "{answer}"
    );
}

fn goods(c: &Consortium, key: &KeyPair, nonce: u64, payload: usize) -> Transaction {
    c.sign(
        key,
        nonce,
        "goods",
        "record",
        json!({"goods_id": format!("G-{}-{nonce}", &key.public().to_hex()[..8]), "kind": "produced",
               "attributes": {"note": "x".repeat(payload)}}),
    )
}

fn post_batch(c: &Consortium, i: usize, txs: &[Transaction]) -> (u16, Value) {
    c.post_raw(
        i,
        "/v1/txs",
        "application/octet-stream",
        codec::encode(&txs.to_vec()),
    )
}

fn codes(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("pending").to_string())
        .collect()
}

fn healthy(c: &Consortium, what: &str) {
    let before = c.height(0).expect("height");
    c.wait_for(what, Duration::from_secs(30), |c| {
        c.height(0).is_some_and(|h| h >= before + 2)
    });
    let rss = c.rss_bytes(0).expect("rss");
    assert!(rss < 1024 * 1024 * 1024, "node 0 uses {} MiB", rss >> 20);
}

/// Items 1 and 2: strangers cannot write at all; filed senders flooding future nonces
/// get a few places each; an honest sender's next transaction still gets in and commits.
#[test]
fn nobody_can_jam_the_mempool_and_strangers_cannot_write() {
    let c = started(|_| {});
    let attackers: Vec<KeyPair> = (0..3u8)
        .map(|i| KeyPair::from_seed(&[0xa0 + i; 32]))
        .collect();
    let honest = KeyPair::from_seed(&[0xb0; 32]);
    for (n, key) in attackers.iter().chain([&honest]).enumerate() {
        file(&c, n as u64, 100 + n as u16, key);
    }
    // Strangers: refused before anything is stored, and told why.
    for s in 0..3u8 {
        let stranger = KeyPair::from_seed(&[0xc0 + s; 32]);
        let flood: Vec<Transaction> = (0..50).map(|n| goods(&c, &stranger, n, 1_000)).collect();
        let (status, answer) = post_batch(&c, 0, &flood);
        assert_eq!(status, 202, "{answer}");
        assert!(
            codes(&answer).iter().all(|c| c == "not_permitted"),
            "{answer}"
        );
        let (status, answer) = c.submit(1, &flood[0], false);
        assert_eq!(status, 403, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("no filed enterprise and no agency")),
            "{answer}"
        );
        let hash = flood[0].hash(c.suite);
        assert!(c
            .get(0, &format!("/v1/tx/{hash}"))
            .is_some_and(|v| v["error"].is_string()));
    }
    // Filed senders flooding nonces past a gap (their nonce 0 never comes): a few
    // future places each, the rest refused as too far ahead.
    for key in &attackers {
        let flood: Vec<Transaction> = (1..=300).map(|n| goods(&c, key, n, 10)).collect();
        for node in ALL {
            let (status, answer) = post_batch(&c, node, &flood);
            assert_eq!(status, 202, "{answer}");
            let taken = codes(&answer).iter().filter(|c| *c == "pending").count();
            assert!(taken <= 64, "node {node} took {taken} future transactions");
            assert!(codes(&answer).iter().any(|c| c == "nonce_gap"), "{answer}");
        }
    }
    // The honest enterprise's next transaction is admitted and commits on every node.
    let (status, answer) = c.submit(2, &goods(&c, &honest, 0, 10), true);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "committed", "{answer}");
    healthy(&c, "blocks after the flood");
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// How long until the server closes `stream` (reads until end of stream or error).
fn closed_after(mut stream: TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

/// Item 5 (and the event stream's cap, item 4): partial headers, idle connections and
/// partial bodies time out; connections beyond the cap are closed at once; the API
/// keeps answering.
#[test]
fn the_api_times_out_slow_clients_and_caps_connections_and_subscribers() {
    let c = started(|config| {
        config.api.connections_max = 24;
        config.api.header_timeout_ms = 2_000;
        config.api.request_timeout_ms = 2_000;
        config.api.event_subscribers_max = 3;
    });
    let addr = c.api_addr(0);
    // Partial headers.
    let partial: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
                .expect("write");
            s
        })
        .collect();
    for s in partial {
        let after = closed_after(s);
        assert!(
            after < Duration::from_secs(5),
            "partial header held {after:?}"
        );
    }
    // An idle kept-alive connection, after one request.
    let mut idle = connect(addr);
    idle.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).expect("an answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        closed_after(idle) < Duration::from_secs(5),
        "idle connection kept"
    );
    // A partial body: the request times out.
    let mut slow = connect(addr);
    slow.write_all(
        b"POST /v1/tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"body\":",
    )
    .expect("write");
    let start = Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "partial body held"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Past the connection cap, connections are closed at once. Each held connection
    // asks for the status and reads the answer, so all 24 are known to be accepted
    // (counted against the cap) before the probe. A fixed sleep instead was twice too
    // short under a full test run's load (200 ms, then 600 ms): the probe was then
    // accepted below the cap and closed only by the header timeout. The held ones stay
    // open, idle, for the header timeout (2 s) after their answer.
    let mut held: Vec<TcpStream> = (0..24).map(|_| connect(addr)).collect();
    for s in &mut held {
        s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
    }
    for s in &mut held {
        let mut first = [0u8; 12];
        s.read_exact(&mut first).expect("an answer below the cap");
        assert_eq!(&first, b"HTTP/1.1 200");
    }
    let beyond = closed_after(connect(addr));
    assert!(
        beyond < Duration::from_millis(900),
        "beyond the cap: {beyond:?}"
    );
    drop(held);
    // The event stream: three subscribers, the fourth refused.
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/events", c.api(0));
    let wait_until_free = Instant::now() + Duration::from_secs(5);
    let mut subscribers = Vec::new();
    while subscribers.len() < 3 && Instant::now() < wait_until_free {
        if let Ok(r) = http.get(&url).send() {
            if r.status() == 200 {
                subscribers.push(r);
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(subscribers.len(), 3);
    let fourth = http.get(&url).send().expect("answer");
    assert_eq!(fourth.status(), 503);
    assert!(fourth.headers().contains_key("retry-after"));
    drop(subscribers);
    healthy(&c, "blocks after the slow clients");
}

/// Item 6: many clients reading proofs and big blocks do not stop the chain; the reads
/// beyond the pool's queue are refused (503), none fails otherwise.
#[test]
fn expensive_reads_do_not_stop_the_chain() {
    let c = started(|_| {});
    let firm = KeyPair::from_seed(&[0xd0; 32]);
    file(&c, 0, 200, &firm);
    let txs: Vec<Transaction> = (0..2_000).map(|n| goods(&c, &firm, n, 100)).collect();
    for chunk in txs.chunks(500) {
        let (status, answer) = post_batch(&c, 0, chunk);
        assert_eq!(status, 202, "{answer}");
    }
    let last = txs.last().expect("txs").hash(c.suite);
    c.wait_for("the batch committed", Duration::from_secs(60), |c| {
        c.get(0, &format!("/v1/tx/{last}"))
            .is_some_and(|v| v["status"] == "committed")
    });
    let height = c.get(0, &format!("/v1/tx/{last}")).expect("tx")["height"]
        .as_u64()
        .expect("height");
    let endpoints = c.endpoints();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hashes: Vec<String> = txs
        .iter()
        .step_by(97)
        .map(|t| t.hash(c.suite).to_hex())
        .collect();
    let readers: Vec<_> = (0..16)
        .map(|r| {
            let (endpoints, stop, hashes) = (endpoints.clone(), stop.clone(), hashes.clone());
            std::thread::spawn(move || {
                let mut statuses = std::collections::BTreeMap::new();
                let mut i = r;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = if i % 2 == 0 {
                        format!("/v1/proof/tx/{}", hashes[i % hashes.len()])
                    } else {
                        format!("/v1/blocks/{height}")
                    };
                    let status = endpoints.status(0, &path).unwrap_or(0);
                    *statuses.entry(status).or_insert(0u32) += 1;
                    i += 1;
                }
                statuses
            })
        })
        .collect();
    let before = c.height(0).expect("height");
    std::thread::sleep(Duration::from_secs(10));
    let during = c.height(0).expect("height");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = std::collections::BTreeMap::new();
    for r in readers {
        for (status, n) in r.join().expect("reader") {
            *all.entry(status).or_insert(0) += n;
        }
    }
    assert!(
        during >= before + 5,
        "the chain went from {before} to {during} under the reads ({all:?})"
    );
    assert!(all.get(&200).is_some_and(|n| *n > 0), "{all:?}");
    assert!(all.keys().all(|s| *s == 200 || *s == 503), "{all:?}");
}

/// Item 8: where the config says so, the API needs a token, and a token grants only
/// its scopes.
#[test]
fn access_needs_a_token_where_the_config_says_so() {
    let token = "e2e-auditor-token";
    let c = started(|config| {
        config.api.anonymous = Some(vec![cbec_genesis::Scope::Status]);
        config.api.tokens = vec![cbec_genesis::ApiToken {
            name: "auditor".into(),
            sha256: cbec_node::access::token_digest(token),
            scopes: vec![cbec_genesis::Scope::Read, cbec_genesis::Scope::Proofs],
        }];
    });
    let http = reqwest::blocking::Client::new();
    let get = |path: &str, bearer: Option<&str>| {
        let mut request = http.get(format!("{}{path}", c.api(0)));
        if let Some(t) = bearer {
            request = request.bearer_auth(t);
        }
        request.send().expect("answer").status().as_u16()
    };
    assert_eq!(get("/v1/status", None), 200);
    assert_eq!(get("/v1/blocks/1", None), 401);
    assert_eq!(get("/v1/blocks/1", Some(token)), 200);
    assert_eq!(get("/v1/blocks/1", Some("wrong")), 401);
    assert_eq!(get("/metrics", Some(token)), 403);
    let tx = c.sign(
        &c.operator(3),
        0,
        "enterprise",
        "list_negative",
        json!({"uscc": "91140200MA0GRK2220", "reason": "x"}),
    );
    let status = http
        .post(format!("{}/v1/tx", c.api(0)))
        .bearer_auth(token)
        .json(&tx)
        .send()
        .expect("answer")
        .status()
        .as_u16();
    assert_eq!(status, 403, "a read token may not submit");
}

/// Item 7: refused connections are logged a few times with a count, not once each; no
/// log line carries a payload.
#[test]
fn refused_connections_do_not_flood_the_log() {
    let c = started(|_| {});
    let config = cbec_genesis::NodeConfig::load(&c.config(0)).expect("config");
    let parts: Vec<&str> = config.p2p_listen.split('/').collect();
    let p2p: std::net::SocketAddr = format!("{}:{}", parts[2], parts[4]).parse().expect("addr");
    for _ in 0..200 {
        if let Ok(mut s) = TcpStream::connect(p2p) {
            let _ = s.write_all(&[0x13; 64]);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    healthy(&c, "blocks after the refused connections");
    let log = c.log(0);
    let refused = log
        .lines()
        .filter(|l| l.contains("refused a connection"))
        .count();
    assert!(refused <= 5, "{refused} lines for 200 refused connections");
    for i in ALL {
        let log = c.log(i);
        let longest = log.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 2_000, "node {i} logged a line of {longest} bytes");
    }
}
