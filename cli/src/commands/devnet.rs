//! `cbec devnet up|status|down`: the four agencies as local processes, and a demo.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use cbec_chaincode::catalog;
use cbec_genesis::{
    generate_consortium, read_key, write_key, ConsensusParams, Consortium, ConsortiumOptions,
    NodeConfig, AGENCIES,
};
use cbec_ledger::{KeyPair, Suite};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Client;
use crate::commands::tx::{describe, is_rejected, submit};
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Start the four agencies' nodes (generating the consortium if DIR has none).
    Up {
        #[arg(long, value_name = "DIR", default_value = "devnet")]
        dir: PathBuf,
        /// Then run a demo: enterprise filings and one parcel's journey through clearance.
        #[arg(long)]
        demo: bool,
        /// Seconds to wait for the first committed block.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        /// The crypto suite of a devnet generated now: ed25519-sha256 (the default) or
        /// sm2-sm3 (SM2 signatures, SM3 hashes). A devnet that exists keeps its own;
        /// naming another is an error.
        #[arg(long, value_name = "SUITE")]
        crypto: Option<Suite>,
    },
    /// Show each node's process, height and peers.
    Status {
        #[arg(long, value_name = "DIR", default_value = "devnet")]
        dir: PathBuf,
    },
    /// Stop the four nodes (SIGTERM, then wait).
    Down {
        #[arg(long, value_name = "DIR", default_value = "devnet")]
        dir: PathBuf,
    },
}

fn pid_path(dir: &Path, agency: &str) -> PathBuf {
    dir.join(agency).join("node.pid")
}

fn running_pid(dir: &Path, agency: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_path(dir, agency))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Signal 0 tests for the process without touching it.
    let alive = std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (alive && !is_zombie(pid)).then_some(pid)
}

/// A process that exited but was not reaped yet (a node started by this same process,
/// as `cbec bench` does) still answers signal 0; Linux shows it as state `Z`.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after_name) = stat.rsplit_once(')')?;
            after_name
                .split_whitespace()
                .next()
                .map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// The API URL of an agency's node.
pub fn api_url(dir: &Path, agency: &str) -> anyhow::Result<String> {
    let config = NodeConfig::load(&Consortium::node_config_path(dir, agency))?;
    Ok(format!("http://{}", config.api_listen))
}

pub fn run(cmd: DevnetCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        DevnetCommand::Up {
            dir,
            demo,
            wait_secs,
            crypto,
        } => {
            up_with(
                &dir,
                Duration::from_secs(wait_secs),
                out,
                true,
                &Fresh {
                    crypto,
                    synthetic: None,
                },
            )?;
            if demo {
                crate::demo::run(&dir, out)?;
            }
            Ok(())
        }
        DevnetCommand::Status { dir } => status(&dir, out),
        DevnetCommand::Down { dir } => down(&dir, out),
    }
}

/// What a devnet that [`up_with`] generates has.
#[derive(Debug, Default)]
pub struct Fresh {
    /// Its crypto suite (`None`: the default for a new devnet, any for one that exists).
    pub crypto: Option<Suite>,
    /// A synthetic state every node writes at genesis.
    pub synthetic: Option<cbec_genesis::SyntheticState>,
}

/// The crypto suite of the devnet in `dir`, from its genesis.
pub fn suite_of(dir: &Path) -> anyhow::Result<Suite> {
    Ok(crate::commands::genesis::load(&Consortium::genesis_path(dir), None)?.crypto)
}

/// Starts the devnet in `dir` and waits for a block; `report` prints the node list on
/// `out`. A `dir` with no devnet gets one as `fresh` says; one that exists is used as it
/// is, and must be of `fresh.crypto` if that is given.
pub fn up_with(
    dir: &Path,
    wait: Duration,
    out: &Output,
    report: bool,
    fresh: &Fresh,
) -> anyhow::Result<()> {
    if Consortium::genesis_path(dir).exists() {
        let existing = suite_of(dir)?;
        if let Some(asked) = fresh.crypto.filter(|asked| *asked != existing) {
            anyhow::bail!(
                "{} holds a devnet whose crypto suite is {existing}, not {asked}: the suite is fixed at genesis; use another --dir for a {asked} devnet",
                dir.display()
            );
        }
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        let consortium = generate_consortium(
            dir,
            &ConsortiumOptions {
                chain_name: "cbec-devnet".into(),
                genesis_time_ms: now,
                consensus: ConsensusParams::for_suite(fresh.crypto.unwrap_or_default()),
                chaincodes: catalog::default_configs(),
                synthetic_state: fresh.synthetic,
                crypto: fresh.crypto.unwrap_or_default(),
            },
            &mut rand_core::OsRng,
        )?;
        eprintln!(
            "generated a consortium in {} (chain id {}, crypto {})",
            dir.display(),
            consortium.chain_id,
            consortium.genesis.crypto
        );
    }
    crate::commands::genesis::load(&Consortium::genesis_path(dir), None)?;
    let exe = std::env::current_exe().context("cannot find the cbec executable")?;
    for agency in AGENCIES {
        if let Some(pid) = running_pid(dir, agency) {
            eprintln!("{agency}: already running (pid {pid})");
            continue;
        }
        let config = Consortium::node_config_path(dir, agency);
        let log_path = dir.join(agency).join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = std::process::Command::new(&exe);
        command
            .args(["node", "run", "--config"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: the nodes outlive this command and a Ctrl-C here.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the {agency} node"))?;
        std::fs::write(pid_path(dir, agency), format!("{}\n", child.id()))?;
        eprintln!(
            "{agency}: started (pid {}), log {}",
            child.id(),
            log_path.display()
        );
    }
    let deadline = Instant::now() + wait;
    let mut last_line = String::new();
    loop {
        let heights: Vec<Option<u64>> = AGENCIES
            .iter()
            .map(|a| {
                api_url(dir, a)
                    .ok()
                    .and_then(|u| Client::new(&u).ok())
                    .and_then(|c| c.status().ok())
                    .and_then(|s| s["height"].as_u64())
            })
            .collect();
        let line = AGENCIES
            .iter()
            .zip(&heights)
            .map(|(a, h)| {
                format!(
                    "{a} {}",
                    h.map_or("starting".to_string(), |h| format!("height {h}"))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        if line != last_line {
            eprintln!("waiting for the first block: {line}");
            last_line = line;
        }
        if heights.iter().all(|h| h.is_some_and(|h| h >= 1)) {
            break;
        }
        for agency in AGENCIES {
            if running_pid(dir, agency).is_none() {
                anyhow::bail!(
                    "the {agency} node exited; see {}",
                    dir.join(agency).join("node.log").display()
                );
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "no block committed within {} s; see the node.log files in {}",
                wait.as_secs(),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let nodes: Vec<Value> = AGENCIES
        .iter()
        .map(|a| json!({ "agency": a, "api": api_url(dir, a).unwrap_or_default() }))
        .collect();
    if !report {
        return Ok(());
    }
    out.emit(&json!({ "dir": dir, "nodes": nodes }), || {
        let mut text = String::from("the four agencies are committing blocks:\n");
        for n in &nodes {
            text.push_str(&format!(
                "  {:<9} {}\n",
                n["agency"].as_str().unwrap_or(""),
                n["api"].as_str().unwrap_or("")
            ));
        }
        text.push_str(&format!(
            "stop them with: cbec devnet down --dir {}",
            dir.display()
        ));
        text
    })
}

fn status(dir: &Path, out: &Output) -> anyhow::Result<()> {
    crate::commands::genesis::load(&Consortium::genesis_path(dir), None)?;
    let rows: Vec<Value> = AGENCIES
        .iter()
        .map(|a| {
            let api = api_url(dir, a).unwrap_or_default();
            let status = Client::new(&api).ok().and_then(|c| c.status().ok());
            json!({
                "agency": a,
                "pid": running_pid(dir, a),
                "api": api,
                "height": status.as_ref().and_then(|s| s["height"].as_u64()),
                "peers": status.as_ref().and_then(|s| s["peers"].as_u64()),
                "syncing": status.as_ref().and_then(|s| s["syncing"].as_bool()),
            })
        })
        .collect();
    out.emit(&rows, || {
        rows.iter()
            .map(|r| {
                format!(
                    "{:<9} {:<8} {:<24} height {:<6} peers {}",
                    r["agency"].as_str().unwrap_or(""),
                    r["pid"]
                        .as_u64()
                        .map_or("stopped".into(), |p| format!("pid {p}")),
                    r["api"].as_str().unwrap_or(""),
                    r["height"].as_u64().map_or("-".into(), |h| h.to_string()),
                    r["peers"].as_u64().map_or("-".into(), |p| p.to_string()),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn down(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let stopped = stop_nodes(dir);
    out.emit(&json!({ "stopped": stopped }), || {
        if stopped.is_empty() {
            "no node was running".to_string()
        } else {
            format!("stopped {}", stopped.join(", "))
        }
    })
}

/// Stops the running nodes of `dir` (SIGTERM, then SIGKILL after 15 s); returns which.
pub fn stop_nodes(dir: &Path) -> Vec<&'static str> {
    let mut stopped = Vec::new();
    for agency in AGENCIES {
        let Some(pid) = running_pid(dir, agency) else {
            continue;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while running_pid(dir, agency).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if running_pid(dir, agency).is_some() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_file(pid_path(dir, agency));
        stopped.push(agency);
    }
    stopped
}

/// Loads a demo enterprise key, creating it on first use (of the devnet's scheme).
pub fn demo_key(dir: &Path, name: &str) -> anyhow::Result<KeyPair> {
    let path = dir.join("demo").join(format!("{name}.key"));
    if path.exists() {
        return Ok(read_key(&path)?);
    }
    std::fs::create_dir_all(dir.join("demo"))?;
    let key = KeyPair::generate(suite_of(dir)?.scheme(), &mut rand_core::OsRng);
    write_key(&path, &key, false)?;
    Ok(key)
}

/// Submits and waits; prints one line per transaction.
pub fn step(
    client: &Client,
    key: &KeyPair,
    what: &str,
    chaincode: &str,
    method: &str,
    args: Value,
) -> anyhow::Result<Value> {
    let answer = submit(client, key, chaincode, method, args, true, None)?;
    let mark = if is_rejected(&answer) {
        "refused"
    } else {
        "ok"
    };
    eprintln!("  [{mark:>7}] {what}: {}", describe(&answer));
    Ok(answer)
}
