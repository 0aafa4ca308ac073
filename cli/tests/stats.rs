//! Statistics monitoring end to end: a four-node devnet runs the demo and generated
//! parcels (`cbec bench --workload parcels`), a separate `cbec stats index` process
//! follows it, is killed with SIGKILL mid-stream and restarted, and every report must
//! equal totals this test computes itself from the blocks, with plain Rust over the
//! node's JSON (no SQL, no code of the indexer). Then: the HTTP reports, `stats verify`
//! (and a tampered file caught), Parquet read back, and a node serving a forged block
//! refused.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cbec_chaincode::customs::{DeclarationList, Order, OrderRef};
use cbec_ledger::{codec, CertifiedBlock};
use serde_json::{json, Value};

mod common;

use common::{cbec, demo, ok, path, text};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cbec stats index ... --listen 127.0.0.1:0` following the node; returns the
/// process and its report server's address.
fn indexer(db: &Path, node: &str, genesis: &Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cbec"))
        .args([
            "stats",
            "index",
            "--db",
            path(db),
            "--node",
            node,
            "--genesis",
            path(genesis),
            "--listen",
            "127.0.0.1:0",
            "--progress",
            "1",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the indexer");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("serving reports on ") {
                let _ = sender.send(url.trim_end_matches("/v1/stats").to_string());
            }
        }
    });
    let url = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the indexer says where it serves");
    (Killed(child), url)
}

fn get(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn get_json(url: &str) -> Value {
    get(url).json().expect("JSON")
}

/// Totals computed from the blocks by this test alone.
#[derive(Debug, Default)]
struct Expected {
    released: u64,
    value_fen: u64,
    tax_fen: u64,
    /// Per day: released, value, tax.
    days: BTreeMap<String, (u64, u64, u64)>,
    /// Per supervision mode: released, value, tax.
    modes: BTreeMap<String, (u64, u64, u64)>,
    /// Per HS chapter: quantity, value.
    chapters: BTreeMap<String, (u64, u64)>,
    /// Per platform: released, value, tax.
    platforms: BTreeMap<String, (u64, u64, u64)>,
    refusals: BTreeMap<String, u64>,
    receipts_cents: u64,
    payments_cents: u64,
    txs: u64,
    /// Goods events announced (a split or a packing announces several).
    goods_events: u64,
}

fn attribute(result: &Value, key: &str) -> Option<String> {
    result["outcome"]["events"]
        .as_array()?
        .iter()
        .flat_map(|e| e["attributes"].as_array().into_iter().flatten())
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"].as_str())
        .map(String::from)
}

fn args<T: bincode::Decode<()>>(tx: &Value) -> T {
    let bytes = hex::decode(tx["body"]["call"]["args"].as_str().expect("args")).expect("hex");
    codec::decode(&bytes).expect("decodes")
}

/// Walks blocks 1..=height as the node's JSON gives them.
fn expected(node: &str, height: u64) -> Expected {
    let mut orders: BTreeMap<(String, String), Order> = BTreeMap::new();
    let mut modes: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut taxes: BTreeMap<(String, String), u64> = BTreeMap::new();
    // (order key, day) of each release.
    let mut released: Vec<((String, String), String)> = Vec::new();
    let mut e = Expected::default();
    for h in 1..=height {
        let answer = get_json(&format!("{node}/v1/blocks/{h}"));
        let block = &answer["block"];
        let time_ms = block["header"]["time_ms"].as_u64().expect("time");
        let t = cbec_ledger::time::date_time(time_ms as i64, 480);
        let day = format!("{:04}-{:02}-{:02}", t.year, t.month, t.day);
        let txs = block["txs"].as_array().expect("txs");
        let results = block["results"].as_array().expect("results");
        for (tx, result) in txs.iter().zip(results) {
            e.txs += 1;
            let call = &tx["body"]["call"];
            let method = (
                call["chaincode"].as_str().expect("chaincode"),
                call["method"].as_str().expect("method"),
            );
            if result["outcome"]["status"] == "rejected" {
                let rule = result["outcome"]["rule"].as_str().expect("rule");
                *e.refusals.entry(rule.to_string()).or_default() += 1;
                continue;
            }
            if method.0 == "goods" {
                e.goods_events += result["outcome"]["events"].as_array().map_or(0, |a| {
                    a.iter().filter(|x| x["kind"] == "goods_event").count()
                }) as u64;
            }
            match method {
                ("customs", "submit_order") => {
                    let o: Order = args(tx);
                    orders.insert((o.ebp_code.clone(), o.order_no.clone()), o);
                }
                ("customs", "submit_list") => {
                    let l: DeclarationList = args(tx);
                    modes.insert((l.ebp_code, l.order_no), l.supervision_mode);
                }
                ("customs", "clear" | "release") => {
                    let r: OrderRef = args(tx);
                    let key = (r.ebp_code, r.order_no);
                    if let Some(tax) = attribute(result, "tax_due_fen") {
                        taxes.insert(key.clone(), tax.parse().expect("tax"));
                    }
                    if attribute(result, "status").as_deref() == Some("released") {
                        released.push((key, day.clone()));
                    }
                }
                ("forex", "record_settlement") => {
                    let s: cbec_chaincode::forex::Settlement = args(tx);
                    match s.direction {
                        cbec_chaincode::forex::Direction::Receipt => {
                            e.receipts_cents += s.amount_cents
                        }
                        cbec_chaincode::forex::Direction::Payment => {
                            e.payments_cents += s.amount_cents
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for (key, day) in released {
        let o = &orders[&key];
        let tax = taxes[&key];
        let add = |t: &mut (u64, u64, u64)| {
            t.0 += 1;
            t.1 += o.goods_value_fen;
            t.2 += tax;
        };
        e.released += 1;
        e.value_fen += o.goods_value_fen;
        e.tax_fen += tax;
        add(e.days.entry(day).or_default());
        add(e.modes.entry(modes[&key].clone()).or_default());
        add(e.platforms.entry(o.ebp_code.clone()).or_default());
        for line in &o.lines {
            let c = e
                .chapters
                .entry(line.commodity_code[..2].to_string())
                .or_default();
            c.0 += u64::from(line.quantity);
            c.1 += u64::from(line.quantity) * line.unit_price_fen;
        }
    }
    e
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// `rows` keyed by `key`, each as the `columns` asked.
fn by_key(rows: &Value, key: &str, columns: &[&str]) -> BTreeMap<String, Vec<u64>> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r[key].as_str().expect("key").to_string(),
                columns.iter().map(|c| n(&r[*c])).collect(),
            )
        })
        .collect()
}

fn triples(m: &BTreeMap<String, (u64, u64, u64)>) -> BTreeMap<String, Vec<u64>> {
    m.iter()
        .map(|(k, (a, b, c))| (k.clone(), vec![*a, *b, *c]))
        .collect()
}

/// Serves the node's API but answers `/v1/blocks/{forged}` with `forge` applied: a
/// Byzantine node between the indexer and the chain.
fn forging_proxy(node: String, forged: u64, forge: fn(&mut CertifiedBlock)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request).into_owned();
            let target = request.split(' ').nth(1).unwrap_or("/").to_string();
            let upstream = http
                .get(format!("{node}{target}"))
                .header("accept", "application/octet-stream")
                .send();
            let (status, mut body) = match upstream {
                Ok(r) => (
                    r.status().as_u16(),
                    r.bytes().map(|b| b.to_vec()).unwrap_or_default(),
                ),
                Err(_) => (502, Vec::new()),
            };
            if status == 200 && target == format!("/v1/blocks/{forged}") {
                let mut block: CertifiedBlock = codec::decode(&body).expect("a block");
                forge(&mut block);
                body = codec::encode(&block);
            }
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

#[test]
fn statistics_follow_the_chain_survive_a_kill_and_match_independent_totals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("devnet");
    let (devnet, _, node) = demo(&dir, &[]);
    let genesis = dir.join("genesis.json");
    let db = tmp.path().join("stats.db");

    // The indexer follows while generated parcels are filed, and is killed mid-stream.
    let (first, first_url) = indexer(&db, &node, &genesis);
    let mut bench = Killed(
        Command::new(env!("CARGO_BIN_EXE_cbec"))
            .args([
                "bench",
                "--dir",
                path(&dir),
                "--workload",
                "parcels",
                "--duration",
                "8",
                "--clients",
                "2",
                "--parcels",
                "8",
                "--lot-parcels",
                "4",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the bench"),
    );
    let indexed = || n(&get_json(&format!("{first_url}/v1/stats"))["height"]);
    let start = indexed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while indexed() < start + 40 {
        assert!(Instant::now() < deadline, "the indexer follows the load");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(first); // SIGKILL, mid-stream
    let killed_at = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("SELECT MAX(height) FROM blocks", [], |r| r.get::<_, i64>(0))
        .expect("height") as u64;
    let (second, stats_url) = indexer(&db, &node, &genesis);
    assert!(bench.0.wait().expect("bench").success(), "the bench ran");

    // Refusals and settlements beside the parcels.
    let customs_key = dir.join("customs").join("operator.key");
    let forex_key = dir.join("forex").join("operator.key");
    for (key, chaincode, method, args) in [
        (
            &customs_key,
            "customs",
            "clear",
            json!({"ebp_code": "4403960001", "order_no": "NO-SUCH-1"}),
        ),
        (
            &customs_key,
            "customs",
            "clear",
            json!({"ebp_code": "4403960001", "order_no": "NO-SUCH-2"}),
        ),
        (
            &forex_key,
            "forex",
            "record_settlement",
            json!({"uscc": "914403001922038216", "direction": "receipt", "amount_cents": 123_456}),
        ),
        (
            &forex_key,
            "forex",
            "record_settlement",
            json!({"uscc": "914403001922038216", "direction": "payment", "amount_cents": 7_890}),
        ),
    ] {
        let sent = cbec(&[
            "tx",
            "submit",
            "--key",
            path(key),
            "--node",
            &node,
            chaincode,
            method,
            "--args",
            &args.to_string(),
            "--wait",
        ]);
        let mut said = text(&sent.stdout) + &text(&sent.stderr);
        // On a machine busy with other tests a commit can take longer than the 30 s
        // `--wait` waits: then ask until it lands.
        if let Some(hash) = said.strip_suffix(" pending\n").map(String::from) {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let status = get_json(&format!("{node}/v1/tx/{hash}"));
                if status["status"] != "pending" {
                    said = status.to_string();
                    break;
                }
                assert!(Instant::now() < deadline, "{hash} still pending: {status}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        let expected = if method == "clear" { "R1" } else { "accepted" };
        assert!(said.contains(expected), "{said}");
    }
    let height = n(&get_json(&format!("{node}/v1/status"))["height"]);
    assert!(
        height > killed_at + 20,
        "blocks came after the kill ({killed_at} of {height})"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while n(&get_json(&format!("{stats_url}/v1/stats"))["height"]) < height {
        assert!(
            Instant::now() < deadline,
            "the indexer reaches height {height}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let report = |name: &str| -> Value {
        serde_json::from_str(&ok(&cbec(&[
            "stats",
            "report",
            name,
            "--db",
            path(&db),
            "--json",
        ])))
        .expect("report JSON")
    };
    let summary = &report("summary")[0];
    let indexed = n(&summary["height"]);
    assert!(indexed >= height);
    let e = expected(&node, indexed);
    assert!(
        e.released > 20,
        "generated parcels were released: {}",
        e.released
    );
    assert!(
        e.modes.len() >= 2 && e.chapters.len() >= 4,
        "varied goods: {e:?}"
    );
    assert_eq!(n(&summary["blocks"]), indexed, "every block once");
    assert_eq!(n(&summary["txs"]), e.txs, "every transaction once");
    assert_eq!(n(&summary["released"]), e.released);
    assert_eq!(n(&summary["value_fen"]), e.value_fen);
    assert_eq!(n(&summary["tax_fen"]), e.tax_fen);
    assert_eq!(
        n(&summary["goods_events"]),
        e.goods_events,
        "every goods event, splits' too"
    );
    assert_eq!(n(&summary["forex_receipts_cents"]), e.receipts_cents);
    assert_eq!(n(&summary["forex_payments_cents"]), e.payments_cents);
    assert_eq!(e.receipts_cents, 123_456);

    let cleared = report("cleared");
    assert_eq!(
        by_key(&cleared, "day", &["released", "value_fen", "tax_fen"]),
        triples(&e.days)
    );
    assert_eq!(
        by_key(
            &report("modes"),
            "supervision_mode",
            &["released", "value_fen", "tax_fen"]
        ),
        triples(&e.modes)
    );
    assert_eq!(
        by_key(
            &report("platforms"),
            "ebp_code",
            &["released", "value_fen", "tax_fen"]
        ),
        triples(&e.platforms)
    );
    let chapters: BTreeMap<String, Vec<u64>> = e
        .chapters
        .iter()
        .map(|(k, (q, v))| (k.clone(), vec![*q, *v]))
        .collect();
    assert_eq!(
        by_key(
            &report("chapters"),
            "hs_chapter",
            &["quantity", "value_fen"]
        ),
        chapters
    );
    let tax = report("tax");
    let import_tax: u64 = tax
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| n(&r["import_tax_fen"]))
        .sum();
    assert_eq!(import_tax, e.tax_fen);
    let forex = report("forex");
    let forex = forex.as_array().expect("rows");
    assert_eq!(
        forex.len(),
        1,
        "one enterprise settled on one day: {forex:?}"
    );
    assert_eq!(forex[0]["uscc"], "914403001922038216");
    assert_eq!(
        (
            n(&forex[0]["receipts_cents"]),
            n(&forex[0]["payments_cents"])
        ),
        (e.receipts_cents, e.payments_cents)
    );
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    for r in report("refusals").as_array().expect("rows") {
        *refusals
            .entry(r["rule"].as_str().expect("rule").into())
            .or_default() += n(&r["refused"]);
    }
    assert_eq!(refusals, e.refusals);
    assert_eq!(
        refusals.get("R1"),
        Some(&2),
        "the two clearances of no order"
    );

    // The indexer's HTTP server gives the same report, as CSV too.
    let csv = ok(&cbec(&[
        "stats",
        "report",
        "cleared",
        "--db",
        path(&db),
        "--csv",
    ]));
    let served = get(&format!("{stats_url}/v1/stats/cleared?format=csv"))
        .text()
        .expect("csv");
    assert_eq!(served.trim_end(), csv.trim_end());
    assert!(csv.starts_with("day,released,value_fen,dutiable_value_fen,tax_fen,"));
    let month = get_json(&format!("{stats_url}/v1/stats/cleared?by=month"));
    assert_eq!(n(&month[0]["released"]), e.released, "one month");
    let bad = get(&format!("{stats_url}/v1/stats/nonesuch"));
    assert_eq!(bad.status().as_u16(), 404);

    // Verified against the chain; then a changed figure and a lost row are caught.
    let verified = ok(&cbec(&[
        "stats",
        "verify",
        "--db",
        path(&db),
        "--node",
        &node,
        "--genesis",
        path(&genesis),
    ]));
    assert!(
        verified.contains("orders") && !verified.contains("DIFFERS"),
        "{verified}"
    );
    // (The indexer was still following, adding blocks as verification ran.)
    drop(second);
    let tampered = tmp.path().join("tampered.db");
    std::fs::copy(&db, &tampered).expect("copy");
    let sql = rusqlite::Connection::open(&tampered).expect("open");
    sql.execute(
        "UPDATE orders SET goods_value_fen = goods_value_fen + 1 WHERE rowid = 1",
        [],
    )
    .expect("tamper");
    sql.execute("DELETE FROM clearances WHERE rowid = 2", [])
        .expect("tamper");
    drop(sql);
    let caught = cbec(&[
        "stats",
        "verify",
        "--db",
        path(&tampered),
        "--node",
        &node,
        "--genesis",
        path(&genesis),
    ]);
    assert!(!caught.status.success());
    let said = text(&caught.stdout);
    assert!(
        said.contains("orders") && said.contains("DIFFERS"),
        "{said}"
    );
    assert!(
        said.contains("clearances") && said.contains("only in the blocks"),
        "{said}"
    );
    assert!(text(&caught.stderr).contains("does not match the chain"));

    // Parquet, read back with the parquet crate's own reader.
    let out = tmp.path().join("parquet");
    ok(&cbec(&[
        "stats",
        "export",
        "--db",
        path(&db),
        "--out",
        path(&out),
    ]));
    let file = std::fs::File::open(out.join("orders.parquet")).expect("orders.parquet");
    use parquet::file::reader::FileReader;
    let reader = parquet::file::reader::SerializedFileReader::new(file).expect("parquet");
    let mut total = 0u64;
    let mut rows = 0;
    for row in reader.get_row_iter(None).expect("rows") {
        let row = row.expect("row");
        for (name, field) in row.get_column_iter() {
            if name == "goods_value_fen" {
                if let parquet::record::Field::Long(v) = field {
                    total += *v as u64;
                }
            }
        }
        rows += 1;
    }
    let sql = rusqlite::Connection::open(&db).expect("open");
    let (count, sum): (i64, i64) = sql
        .query_row(
            "SELECT COUNT(*), SUM(goods_value_fen) FROM orders",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("sql");
    assert_eq!((rows, total), (count, sum as u64));

    // A Byzantine node: one forged block (a transaction changed after the certificate,
    // or signatures dropped below the quorum) stops the indexer before its rows.
    let forgeries: [fn(&mut CertifiedBlock); 2] = [
        |b| b.block.txs[0].body.nonce += 1,
        |b| b.certificate.signatures.truncate(2),
    ];
    for (i, forge) in forgeries.into_iter().enumerate() {
        let proxy = forging_proxy(node.clone(), 5, forge);
        let fresh = tmp.path().join(format!("forged-{i}.db"));
        let refused = cbec(&[
            "stats",
            "index",
            "--db",
            path(&fresh),
            "--node",
            &proxy,
            "--genesis",
            path(&genesis),
            "--once",
        ]);
        assert!(!refused.status.success(), "forgery {i} refused");
        let said = text(&refused.stderr);
        assert!(said.contains("block 5"), "names the block: {said}");
        let sql = rusqlite::Connection::open(&fresh).expect("open");
        let top: i64 = sql
            .query_row("SELECT MAX(height) FROM blocks", [], |r| r.get(0))
            .expect("sql");
        assert_eq!(top, 4, "nothing of the forged block was written");
    }

    // Another chain's genesis is refused at once.
    let other = tmp.path().join("other");
    ok(&cbec(&["genesis", "new", "--out", path(&other)]));
    let refused = cbec(&[
        "stats",
        "index",
        "--db",
        path(&db),
        "--node",
        &node,
        "--genesis",
        path(&other.join("genesis.json")),
        "--once",
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("chain"),
        "{}",
        text(&refused.stderr)
    );
    drop(devnet);
}
