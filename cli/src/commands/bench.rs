//! `cbec bench`: load the local four-agency consortium with signed goods-traceability
//! transactions and report what it committed, how fast, and at what cost.
//!
//! The run: start (or attach to) the devnet in `--dir`; file one enterprise per client
//! through the real filing path; sign every transaction before the timed window; send
//! them from `--clients` threads, each to one node over a persistent connection in
//! batches (`POST /v1/txs`, canonical binary), at an open-loop `--rate` or as fast as
//! the nodes take them (`--saturate`); watch committed blocks on the customs node's
//! event stream. Throughput counts transactions in blocks committed inside the window;
//! latency is from just before a transaction's batch was sent to the moment its block
//! arrived. At the end every node must agree on the block hash and state root at a
//! common height, or nothing is reported.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cbec_genesis::{read_key, AGENCIES};
use cbec_ledger::goods::{EventKind, RecordEvent};
use cbec_ledger::{codec, crypto, Call, Hash, KeyPair, Transaction, TxBody};
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::Client;
use crate::commands::devnet::{self, api_url};
use crate::output::Output;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The devnet directory: generated and started if needed, else attached to.
    #[arg(long, value_name = "DIR", default_value = "devnet")]
    dir: PathBuf,
    /// Offered load in transactions per second (open loop).
    #[arg(long, value_name = "TX_PER_S", conflicts_with = "saturate")]
    rate: Option<u64>,
    /// Send as fast as the nodes admit transactions, backing off when mempools are full.
    #[arg(long)]
    saturate: bool,
    /// Length of the timed window in seconds.
    #[arg(long, value_name = "S", default_value_t = 30)]
    duration: u64,
    /// Approximate size of each transaction in bytes (canonical encoding).
    #[arg(long, value_name = "BYTES", default_value_t = 250)]
    tx_size: usize,
    /// Client threads; each files its own enterprise and talks to one node.
    #[arg(long, value_name = "N", default_value_t = 8)]
    clients: usize,
    /// Also write every figure as JSON to this file.
    #[arg(long = "json-out", value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Stop the four nodes when done, whatever the outcome (by default they keep
    /// running, as after `devnet up`, to be inspected; `cbec devnet down` stops them).
    #[arg(long)]
    stop: bool,
}

/// Stops the devnet when dropped, so `--stop` holds on every way out of a run.
struct StopOnExit<'a>(Option<&'a std::path::Path>);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        if let Some(dir) = self.0 {
            let stopped = devnet::stop_nodes(dir);
            if !stopped.is_empty() {
                eprintln!("bench: stopped {}", stopped.join(", "));
            }
        }
    }
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub offered_tx_per_s: Option<u64>,
    pub duration_s: f64,
    pub clients: usize,
    pub tx_bytes: usize,
    pub cores: usize,
    pub submitted: u64,
    pub refused_at_admission: u64,
    pub committed_in_window: u64,
    pub committed_tx_per_s: f64,
    pub accepted: u64,
    pub rejected_by_rules: u64,
    pub blocks_in_window: u64,
    pub latency_ms: Latency,
    /// The same figures for the transactions committed in each minute of the window
    /// (the last may be partial): a run that keeps up has them level.
    pub latency_ms_by_minute: Vec<Latency>,
    pub nodes: Vec<NodeFigures>,
    pub cpu_s_per_1000_tx_all_nodes: f64,
    pub signature_floor: SignatureFloor,
    pub client_cpu_s: f64,
    pub agreed_height: u64,
    pub agreed_block_hash: String,
    pub agreed_state_root: String,
}

#[derive(Debug, Serialize, Default)]
pub struct Latency {
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(mut samples: Vec<f64>) -> Latency {
        samples.sort_by(f64::total_cmp);
        Latency {
            samples: samples.len() as u64,
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied().unwrap_or(0.0),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct NodeFigures {
    pub agency: String,
    pub pid: u32,
    pub cpu_s: f64,
    pub cpu_s_per_1000_tx: f64,
    pub rss_start_mb: f64,
    pub rss_end_mb: f64,
    /// Resident memory at each tenth of the window.
    pub rss_tenths_mb: Vec<f64>,
    pub peak_rss_mb: f64,
    pub disk_bytes_added: i64,
    pub disk_bytes_per_tx: f64,
}

#[derive(Debug, Serialize)]
pub struct SignatureFloor {
    /// Ed25519 verifications per second on one core, in batches of 512, measured here.
    pub batch_verify_per_s: f64,
    /// Four nodes verifying each transaction once: CPU seconds per 1,000 transactions.
    pub floor_cpu_s_per_1000_tx: f64,
    /// Measured CPU per transaction over the floor.
    pub ratio: f64,
}

/// One node process: its pid and how to read its CPU, memory and disk.
struct Node {
    agency: &'static str,
    pid: u32,
    data: PathBuf,
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU seconds of a process, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str, ticks: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name may hold spaces; fields after it start past the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 after the name.
    Ok((field(11) + field(12)) / ticks)
}

/// (current, peak) resident memory in MiB, from `/proc/PID/status`.
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn disk_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Ed25519 batch verification on this core: the cost every node pays per transaction.
fn batch_verify_rate() -> f64 {
    let key = KeyPair::from_seed(&[7; 32]);
    let messages: Vec<Vec<u8>> = (0..512u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let signatures: Vec<_> = messages.iter().map(|m| key.sign(m)).collect();
    let keys = vec![key.public(); 512];
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let mut rates = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(150) {
            crypto::verify_batch(&refs, &signatures, &keys).expect("valid batch");
            n += 512;
        }
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A client's transactions, signed ahead of the window.
struct Load {
    node: String,
    txs: Vec<Transaction>,
}

fn sign_load(
    chain_id: Hash,
    key: &KeyPair,
    first_nonce: u64,
    count: usize,
    tx_size: usize,
    stamp: u64,
    client: usize,
) -> Vec<Transaction> {
    let make = |i: usize, pad: usize| {
        let args = RecordEvent {
            goods_id: format!("B{stamp}-{client}-{i}"),
            kind: EventKind::Produced,
            prev: None,
            attributes: [("lot".to_string(), "L".repeat(pad))].into(),
        };
        Transaction::sign(
            TxBody {
                chain_id,
                sender: key.public(),
                nonce: first_nonce + i as u64,
                call: Call {
                    chaincode: "goods".into(),
                    method: "record".into(),
                    args: codec::encode(&args),
                },
            },
            key,
        )
    };
    let base = codec::encode(&make(0, 0)).len();
    let pad = tx_size.saturating_sub(base).min(200);
    (0..count).map(|i| make(i, pad)).collect()
}

/// What the watcher saw of our transactions.
#[derive(Default)]
struct Seen {
    latencies_ms: Vec<f64>,
    /// Latencies of the transactions committed in each minute of the window.
    by_minute: Vec<Vec<f64>>,
    committed_in_window: u64,
    accepted: u64,
    rejected: u64,
    blocks_in_window: u64,
    last_height: u64,
}

struct Shared {
    sent_at: Mutex<HashMap<Hash, Instant>>,
    seen: Mutex<Seen>,
    window: Mutex<Option<(Instant, Instant)>>,
    submitted: AtomicU64,
    refused: AtomicU64,
    stop: AtomicBool,
}

fn post_batch(
    http: &reqwest::blocking::Client,
    node: &str,
    txs: &[Transaction],
) -> anyhow::Result<Vec<bool>> {
    let response = http
        .post(format!("{node}/v1/txs"))
        .header("content-type", "application/octet-stream")
        .body(codec::encode(&txs.to_vec()))
        .send()
        .with_context(|| format!("cannot reach {node}"))?;
    let status = response.status();
    let body: Value = response.json().context("batch answer is not JSON")?;
    if !status.is_success() {
        anyhow::bail!("{node}/v1/txs: {status}: {}", body["error"]);
    }
    // A resent transaction that made it the first time is a duplicate: admitted.
    Ok(body["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x["status"] == "pending" || x["code"] == "duplicate")
                .collect()
        })
        .unwrap_or_default())
}

const PAUSE_MIN: Duration = Duration::from_millis(20);
const PAUSE_MAX: Duration = Duration::from_millis(320);

/// Notes when each transaction of a batch (the client's `first`th on) counts as sent:
/// its first send, or in the open loop (`schedule`: rate per second, start) the moment
/// the schedule had it due, so a client held back by refusals does not hide the wait
/// (coordinated omission). A resend keeps the time already noted.
fn record_sends(
    sent: &mut HashMap<Hash, Instant>,
    hashes: impl Iterator<Item = Hash>,
    first: usize,
    schedule: Option<(f64, Instant)>,
    now: Instant,
) {
    for (i, hash) in hashes.enumerate() {
        let at = match schedule {
            Some((rate, start)) => {
                (start + Duration::from_secs_f64((first + i) as f64 / rate)).min(now)
            }
            None => now,
        };
        sent.entry(hash).or_insert(at);
    }
}

/// One client thread: sends its transactions on schedule (or as fast as admitted).
fn run_client(load: Load, rate: Option<f64>, shared: Arc<Shared>, start: Instant, end: Instant) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut next = 0usize;
    let txs = load.txs;
    let tick = Duration::from_millis(10);
    let mut k = 0u32;
    // Pause after a refusal; doubles while the node keeps refusing (a flood of
    // refused batches would cost the nodes the CPU the benchmark is measuring).
    let mut pause = PAUSE_MIN;
    while next < txs.len() && Instant::now() < end && !shared.stop.load(Ordering::Relaxed) {
        let batch = match rate {
            Some(r) => {
                // Open loop: by tick k, r * elapsed transactions are due.
                let due_at = start + tick * k;
                if let Some(wait) = due_at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                k += 1;
                let due = (r * (tick * k).as_secs_f64()).floor() as usize;
                // A backlog (after refusals) goes out in batches of at most 512.
                due.min(txs.len()).saturating_sub(next).min(512)
            }
            None => 512.min(txs.len() - next),
        };
        if batch == 0 {
            continue;
        }
        let chunk = &txs[next..next + batch];
        let now = Instant::now();
        record_sends(
            &mut shared.sent_at.lock().expect("lock"),
            chunk.iter().map(Transaction::hash),
            next,
            rate.map(|r| (r, start)),
            now,
        );
        match post_batch(&http, &load.node, chunk) {
            Ok(admitted) => {
                let ok = admitted.iter().filter(|a| **a).count();
                shared.submitted.fetch_add(ok as u64, Ordering::Relaxed);
                if ok < chunk.len() {
                    // A full mempool refused some: resend from the first refused, after
                    // a pause (a dropped transaction would leave a nonce gap that
                    // strands every later one of this sender). The open-loop schedule
                    // keeps running, so the backlog goes out as soon as there is room.
                    shared
                        .refused
                        .fetch_add((chunk.len() - ok) as u64, Ordering::Relaxed);
                    let first = admitted.iter().position(|a| !*a).unwrap_or(0);
                    next += first;
                    std::thread::sleep(pause);
                    pause = if ok == 0 {
                        (pause * 2).min(PAUSE_MAX)
                    } else {
                        PAUSE_MIN
                    };
                    continue;
                }
                pause = PAUSE_MIN;
            }
            Err(e) => {
                eprintln!("\nclient: {e:#}");
                shared
                    .refused
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        next += batch;
    }
}

/// Counts one committed block's transactions (ours only).
fn account(shared: &Shared, block: &Value) {
    let now = Instant::now();
    let window = *shared.window.lock().expect("lock");
    let in_window = window.is_some_and(|(s, e)| now >= s && now <= e);
    let hashes = block["txs"].as_array().cloned().unwrap_or_default();
    let results = block["results"].as_array().cloned().unwrap_or_default();
    let mut sent = shared.sent_at.lock().expect("lock");
    let mut seen = shared.seen.lock().expect("lock");
    seen.last_height = seen.last_height.max(block["height"].as_u64().unwrap_or(0));
    if in_window {
        seen.blocks_in_window += 1;
    }
    for (hash, result) in hashes.iter().zip(results.iter()) {
        let Some(hash) = hash.as_str().and_then(|h| h.parse::<Hash>().ok()) else {
            continue;
        };
        let Some(at) = sent.remove(&hash) else {
            continue;
        };
        let latency = now.duration_since(at).as_secs_f64() * 1000.0;
        seen.latencies_ms.push(latency);
        if let (true, Some((start, _))) = (in_window, window) {
            seen.committed_in_window += 1;
            let minute = (now.duration_since(start).as_secs() / 60) as usize;
            if seen.by_minute.len() <= minute {
                seen.by_minute.resize_with(minute + 1, Vec::new);
            }
            seen.by_minute[minute].push(latency);
        }
        if result["outcome"]["status"] == "accepted" {
            seen.accepted += 1;
        } else {
            seen.rejected += 1;
        }
    }
}

/// Follows `/v1/events`; fills any gap (a slow reader may miss events) from `/v1/blocks`.
fn watch(node: String, shared: Arc<Shared>) -> anyhow::Result<()> {
    let http = reqwest::blocking::Client::builder().timeout(None).build()?;
    let blocks = Client::new(&node)?;
    let response = http
        .get(format!("{node}/v1/events"))
        .send()
        .with_context(|| format!("cannot reach {node}/v1/events"))?;
    let mut expected: Option<u64> = None;
    for line in BufReader::new(response).lines() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let line = line?;
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let event: Value = serde_json::from_str(data.trim())?;
        let height = event["height"].as_u64().unwrap_or(0);
        if let Some(want) = expected {
            for missed in want..height {
                let b = blocks.get(&format!("/v1/blocks/{missed}"))?;
                let txs: Vec<Value> = b["block"]["txs"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|tx| serde_json::from_value::<Transaction>(tx.clone()).ok())
                            .map(|tx| json!(tx.hash()))
                            .collect()
                    })
                    .unwrap_or_default();
                account(
                    &shared,
                    &json!({"height": missed, "txs": txs, "results": b["block"]["results"]}),
                );
            }
        }
        account(&shared, &event);
        expected = Some(height + 1);
    }
    Ok(())
}

fn node_processes(dir: &Path) -> anyhow::Result<Vec<Node>> {
    AGENCIES
        .iter()
        .map(|agency| {
            let pid = std::fs::read_to_string(dir.join(agency).join("node.pid"))
                .with_context(|| format!("no pid file for {agency} in {}", dir.display()))?
                .trim()
                .parse()
                .with_context(|| format!("{agency}'s pid file"))?;
            Ok(Node {
                agency,
                pid,
                data: dir.join(agency).join("data"),
            })
        })
        .collect()
}

/// Files one manufacturer per client (commerce approves), and returns their keys.
fn file_enterprises(
    dir: &Path,
    client: &Client,
    count: usize,
    stamp: u64,
) -> anyhow::Result<Vec<KeyPair>> {
    let commerce = read_key(&dir.join("commerce/operator.key")).context("commerce operator key")?;
    let mut keys = Vec::new();
    for i in 0..count {
        let seed = Hash::tagged("cbec:bench-sender", &codec::encode(&(stamp, i as u64)));
        let key = KeyPair::from_seed(&seed.0);
        let body = format!("91140200MA{:07}", (stamp * 64 + i as u64) % 10_000_000);
        let uscc = cbec_chaincode::codes::uscc_with_check(&body)
            .map_err(|e| anyhow::anyhow!("bench enterprise id: {e}"))?;
        let code = format!("14029{:05}", (stamp * 64 + i as u64) % 100_000);
        let answer = crate::commands::tx::submit(
            client,
            &commerce,
            "enterprise",
            "approve_filing",
            json!({"uscc": uscc, "name": format!("bench manufacturer {i}"), "roles": ["manufacturer"],
                   "keys": [key.public()], "customs_code": code}),
            true,
            None,
        )?;
        if answer["result"]["outcome"]["status"] != "accepted" {
            anyhow::bail!("filing bench enterprise {i} failed: {}", answer["result"]);
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Waits until all nodes reach a common height and compares block hash and state root.
fn agreement(dir: &Path) -> anyhow::Result<(u64, String, String)> {
    let clients: Vec<Client> = AGENCIES
        .iter()
        .map(|a| Client::new(&api_url(dir, a)?))
        .collect::<anyhow::Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let heights: Vec<u64> = clients
            .iter()
            .map(|c| c.status().map(|s| s["height"].as_u64().unwrap_or(0)))
            .collect::<anyhow::Result<_>>()?;
        let low = heights.iter().copied().min().unwrap_or(0);
        let high = heights.iter().copied().max().unwrap_or(0);
        if low == high || Instant::now() > deadline {
            let ids: Vec<(String, String)> = clients
                .iter()
                .map(|c| {
                    let b = c.get(&format!("/v1/blocks/{low}"))?;
                    Ok((
                        b["hash"].as_str().unwrap_or("").to_string(),
                        b["block"]["header"]["state_root"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    ))
                })
                .collect::<anyhow::Result<_>>()?;
            if ids.windows(2).any(|w| w[0] != w[1]) {
                anyhow::bail!(
                    "the nodes disagree at height {low}: {ids:?}; no throughput is reported"
                );
            }
            let (hash, root) = ids.into_iter().next().unwrap_or_default();
            return Ok((low, hash, root));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn run(args: BenchArgs, out: &Output) -> anyhow::Result<()> {
    if args.clients == 0 || args.duration == 0 {
        anyhow::bail!("--clients and --duration must be at least 1");
    }
    let rate = match (args.rate, args.saturate) {
        (Some(0), _) => anyhow::bail!("--rate must be at least 1 transaction per second"),
        (Some(r), _) => Some(r),
        (None, true) => None,
        (None, false) => Some(1_000),
    };
    let dir = &args.dir;
    let _stop = StopOnExit(args.stop.then_some(dir.as_path()));
    devnet::up(dir, Duration::from_secs(60), &Output::new(false), false)?;
    let nodes = node_processes(dir)?;
    let urls: Vec<String> = AGENCIES
        .iter()
        .map(|a| api_url(dir, a))
        .collect::<anyhow::Result<_>>()?;
    let customs = Client::new(&urls[0])?;
    let chain_id = customs.chain_id()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    eprintln!(
        "bench: filing {} enterprises (one per client)",
        args.clients
    );
    let keys = file_enterprises(dir, &customs, args.clients, stamp)?;

    // Enough transactions for the window: the offered rate, or a generous ceiling.
    let per_client = match rate {
        Some(r) => ((r * args.duration) as usize).div_ceil(args.clients),
        None => (40_000 * args.duration as usize).div_ceil(args.clients),
    };
    eprintln!(
        "bench: signing {} transactions of ~{} bytes before the window",
        per_client * args.clients,
        args.tx_size
    );
    let loads: Vec<Load> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Load {
            node: urls[i % urls.len()].clone(),
            txs: sign_load(chain_id, key, 0, per_client, args.tx_size, stamp, i),
        })
        .collect();
    let tx_bytes = loads
        .first()
        .and_then(|l| l.txs.first())
        .map_or(0, |t| codec::encode(t).len());

    eprintln!("bench: measuring Ed25519 batch verification on one core");
    let batch_rate = batch_verify_rate();

    let shared = Arc::new(Shared {
        sent_at: Mutex::new(HashMap::new()),
        seen: Mutex::new(Seen::default()),
        window: Mutex::new(None),
        submitted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let watcher = {
        let shared = shared.clone();
        let node = urls[0].clone();
        std::thread::spawn(move || watch(node, shared))
    };
    std::thread::sleep(Duration::from_millis(300)); // the stream is open

    let ticks = clock_ticks();
    let cpu_of = |n: &Node| cpu_seconds(&n.pid.to_string(), ticks);
    let cpu_start: Vec<f64> = nodes.iter().map(cpu_of).collect::<anyhow::Result<_>>()?;
    let rss_start: Vec<f64> = nodes.iter().map(|n| memory_mb(n.pid).0).collect();
    let disk_start: Vec<u64> = nodes.iter().map(|n| disk_bytes(&n.data)).collect();
    let client_cpu_start = cpu_seconds("self", ticks)?;

    let window = Duration::from_secs(args.duration);
    let start = Instant::now();
    let end = start + window;
    *shared.window.lock().expect("lock") = Some((start, end));
    let per_client_rate = rate.map(|r| r as f64 / args.clients as f64);
    let senders: Vec<_> = loads
        .into_iter()
        .map(|load| {
            let shared = shared.clone();
            std::thread::spawn(move || run_client(load, per_client_rate, shared, start, end))
        })
        .collect();
    // Resident memory of every node at each tenth of the window: flat, or growing?
    let mut rss_samples: Vec<Vec<f64>> = vec![Vec::new(); nodes.len()];
    let mut next_sample = 1u32;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        if start.elapsed() >= window.mul_f64(f64::from(next_sample) / 10.0) {
            for (i, n) in nodes.iter().enumerate() {
                rss_samples[i].push(memory_mb(n.pid).0);
            }
            next_sample += 1;
        }
        let elapsed = start.elapsed().as_secs_f64().min(window.as_secs_f64());
        let committed = shared.seen.lock().expect("lock").committed_in_window;
        let width = 30;
        let filled = ((elapsed / window.as_secs_f64()) * width as f64) as usize;
        eprint!(
            "\r[{}{}] {:>4.0}/{} s  submitted {:>8}  committed {:>8}  {:>7.0} tx/s ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            elapsed,
            args.duration,
            shared.submitted.load(Ordering::Relaxed),
            committed,
            committed as f64 / elapsed.max(0.001)
        );
    }
    eprintln!();
    for s in senders {
        let _ = s.join();
    }
    let cpu_end: Vec<f64> = nodes.iter().map(cpu_of).collect::<anyhow::Result<_>>()?;
    let client_cpu = cpu_seconds("self", ticks)? - client_cpu_start;
    // Let what is in flight land, for the latency figures; throughput is already fixed.
    eprintln!("bench: waiting for transactions in flight, then checking agreement");
    let drain_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < drain_until && !shared.sent_at.lock().expect("lock").is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (agreed_height, agreed_block_hash, agreed_state_root) = agreement(dir)?;
    shared.stop.store(true, Ordering::Relaxed);
    drop(watcher); // it ends with the next event; no need to wait

    let seen = std::mem::take(&mut *shared.seen.lock().expect("lock"));
    let committed = seen.committed_in_window;
    let latency = Latency::of(seen.latencies_ms.clone());
    let minutes = window.as_secs().div_ceil(60) as usize;
    let mut by_minute = seen.by_minute;
    by_minute.resize_with(minutes.max(by_minute.len()), Vec::new);
    let latency_by_minute: Vec<Latency> = by_minute.into_iter().map(Latency::of).collect();
    let per_1000 = |cpu: f64| {
        if committed == 0 {
            0.0
        } else {
            cpu * 1000.0 / committed as f64
        }
    };
    let node_figures: Vec<NodeFigures> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (rss, peak) = memory_mb(n.pid);
            let disk = disk_bytes(&n.data) as i64 - disk_start[i] as i64;
            NodeFigures {
                agency: n.agency.to_string(),
                pid: n.pid,
                cpu_s: cpu_end[i] - cpu_start[i],
                cpu_s_per_1000_tx: per_1000(cpu_end[i] - cpu_start[i]),
                rss_start_mb: rss_start[i],
                rss_end_mb: rss,
                rss_tenths_mb: std::mem::take(&mut rss_samples[i]),
                peak_rss_mb: peak,
                disk_bytes_added: disk,
                disk_bytes_per_tx: if committed == 0 {
                    0.0
                } else {
                    disk as f64 / committed as f64
                },
            }
        })
        .collect();
    let total_cpu: f64 = node_figures.iter().map(|n| n.cpu_s).sum();
    let floor = 4.0 * 1000.0 / batch_rate;
    let cpu_per_1000 = per_1000(total_cpu);
    let report = Report {
        mode: if rate.is_some() {
            "open-loop".into()
        } else {
            "saturate".into()
        },
        offered_tx_per_s: rate,
        duration_s: window.as_secs_f64(),
        clients: args.clients,
        tx_bytes,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        submitted: shared.submitted.load(Ordering::Relaxed),
        refused_at_admission: shared.refused.load(Ordering::Relaxed),
        committed_in_window: committed,
        committed_tx_per_s: committed as f64 / window.as_secs_f64(),
        accepted: seen.accepted,
        rejected_by_rules: seen.rejected,
        blocks_in_window: seen.blocks_in_window,
        latency_ms: latency,
        latency_ms_by_minute: latency_by_minute,
        nodes: node_figures,
        cpu_s_per_1000_tx_all_nodes: cpu_per_1000,
        signature_floor: SignatureFloor {
            batch_verify_per_s: batch_rate,
            floor_cpu_s_per_1000_tx: floor,
            ratio: if floor > 0.0 {
                cpu_per_1000 / floor
            } else {
                0.0
            },
        },
        client_cpu_s: client_cpu,
        agreed_height,
        agreed_block_hash,
        agreed_state_root,
    };
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    out.emit(&report, || summary(&report))
}

fn summary(r: &Report) -> String {
    let offered = r
        .offered_tx_per_s
        .map_or("saturation".to_string(), |o| format!("{o} tx/s offered"));
    let l = &r.latency_ms;
    let f = &r.signature_floor;
    let mut s = format!(
        "cbec bench: {offered}, {} s, {} clients, {}-byte goods events, 4 nodes sharing {} cores\n",
        r.duration_s, r.clients, r.tx_bytes, r.cores
    );
    s.push_str(&format!(
        "committed   {:.0} tx/s ({} txs in {} blocks in the window; {} accepted, {} rejected by rules)\n",
        r.committed_tx_per_s, r.committed_in_window, r.blocks_in_window, r.accepted, r.rejected_by_rules
    ));
    s.push_str(&format!(
        "submitted   {} ({} refusals at admission, each resent)\n",
        r.submitted, r.refused_at_admission
    ));
    s.push_str(&format!(
        "latency     p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)\n",
        l.p50, l.p90, l.p99, l.max, l.samples
    ));
    if r.latency_ms_by_minute.len() > 1 {
        s.push_str("minute      committed   p50 ms   p99 ms   max ms\n");
        for (m, l) in r.latency_ms_by_minute.iter().enumerate() {
            s.push_str(&format!(
                "  {:>4}      {:>9}   {:>6.1}   {:>6.1}   {:>6.1}\n",
                m + 1,
                l.samples,
                l.p50,
                l.p99,
                l.max
            ));
        }
    }
    s.push_str(&format!(
        "cpu         {:.3} s per 1,000 txs, all nodes; Ed25519 floor {:.3} s (4 x 1,000 / {:.0} batch verifications/s): {:.2}x the floor\n",
        r.cpu_s_per_1000_tx_all_nodes, f.floor_cpu_s_per_1000_tx, f.batch_verify_per_s, f.ratio
    ));
    s.push_str(&format!("client cpu  {:.1} s\n", r.client_cpu_s));
    s.push_str("node        cpu s   s/1k tx   rss MiB start -> end (peak)   disk B/tx\n");
    for n in &r.nodes {
        s.push_str(&format!(
            "  {:<9} {:>6.1}   {:>7.3}   {:>6.0} -> {:>6.0} ({:>6.0})        {:>7.0}\n",
            n.agency,
            n.cpu_s,
            n.cpu_s_per_1000_tx,
            n.rss_start_mb,
            n.rss_end_mb,
            n.peak_rss_mb,
            n.disk_bytes_per_tx
        ));
    }
    for n in &r.nodes {
        let tenths: Vec<String> = n.rss_tenths_mb.iter().map(|m| format!("{m:.0}")).collect();
        s.push_str(&format!(
            "  {:<9} rss MiB at each tenth of the window: {}\n",
            n.agency,
            tenths.join(" ")
        ));
    }
    s.push_str(&format!(
        "agreement   all four nodes at height {}: block {}, state root {}",
        r.agreed_height,
        r.agreed_block_hash.get(..16).unwrap_or(""),
        r.agreed_state_root.get(..16).unwrap_or("")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resent_transaction_keeps_its_first_send_time() {
        let start = Instant::now();
        let (a, b) = (Hash([1; 32]), Hash([2; 32]));
        let mut sent = HashMap::new();
        record_sends(&mut sent, [a, b].into_iter(), 0, None, start);
        let later = start + Duration::from_secs(3);
        record_sends(&mut sent, [b].into_iter(), 1, None, later);
        assert_eq!(sent[&b], start, "the resend kept the first send");
    }

    #[test]
    fn the_open_loop_counts_from_when_a_transaction_was_due() {
        let start = Instant::now();
        let now = start + Duration::from_secs(10);
        let mut sent = HashMap::new();
        // 100 tx/s: the 250th and 251st were due at 2.5 s and 2.51 s, whenever sent.
        record_sends(
            &mut sent,
            [Hash([1; 32]), Hash([2; 32])].into_iter(),
            250,
            Some((100.0, start)),
            now,
        );
        assert_eq!(sent[&Hash([1; 32])], start + Duration::from_millis(2_500));
        assert_eq!(sent[&Hash([2; 32])], start + Duration::from_millis(2_510));
        // Never later than the send itself.
        record_sends(
            &mut sent,
            [Hash([3; 32])].into_iter(),
            5_000,
            Some((100.0, start)),
            now,
        );
        assert_eq!(sent[&Hash([3; 32])], now);
    }

    #[test]
    fn percentiles_per_minute_come_from_that_minute_only() {
        let l = Latency::of(vec![30.0, 10.0, 20.0, 1000.0]);
        assert_eq!((l.samples, l.p50, l.max), (4, 20.0, 1000.0));
        assert_eq!(Latency::of(Vec::new()).samples, 0);
    }
}
