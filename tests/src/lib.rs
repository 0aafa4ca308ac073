//! End-to-end tests of CBEC Ledger: whole validator processes on loopback.
//!
//! What belongs here: [`Consortium`], which generates a four-agency consortium in a
//! temporary directory and runs each validator as a real process, a small HTTP client,
//! and the tests in `tests/`. Unit tests of one crate live in that crate.

#![forbid(unsafe_code)]

pub mod faults;
pub mod mesh;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cbec_genesis::{generate_consortium, ConsensusParams, ConsortiumOptions, NodeConfig, AGENCIES};
use cbec_ledger::{Call, Hash, KeyPair, Suite, Transaction, TxBody};
use serde_json::Value;

/// A consortium of four validator processes. Dropping it kills them.
#[derive(Debug)]
pub struct Consortium {
    pub dir: tempfile::TempDir,
    pub chain_id: Hash,
    /// The chain's crypto suite.
    pub suite: Suite,
    binary: PathBuf,
    children: Vec<Option<Child>>,
    endpoints: Endpoints,
}

impl Consortium {
    /// Generates the consortium; starts nothing yet.
    pub fn generate(binary: &str) -> Consortium {
        Consortium::generate_with(binary, Suite::Ed25519Sha256)
    }

    /// A consortium of `suite`: its validator and operator keys of the suite's scheme.
    pub fn generate_with(binary: &str, suite: Suite) -> Consortium {
        let dir = tempfile::tempdir().expect("tempdir");
        let consortium = generate_consortium(
            &dir.path().join("net"),
            &ConsortiumOptions {
                chain_name: "e2e".into(),
                genesis_time_ms: 1_795_680_000_000,
                consensus: ConsensusParams::for_suite(suite),
                chaincodes: cbec_chaincode::catalog::default_configs(),
                synthetic_state: None,
                crypto: suite,
            },
            &mut rand_core::OsRng,
        )
        .expect("generate");
        let apis = AGENCIES
            .iter()
            .map(|a| {
                let config = NodeConfig::load(&cbec_genesis::Consortium::node_config_path(
                    &dir.path().join("net"),
                    a,
                ))
                .expect("config");
                format!("http://{}", config.api_listen)
            })
            .collect();
        Consortium {
            chain_id: consortium.chain_id,
            suite,
            dir,
            binary: PathBuf::from(binary),
            children: (0..AGENCIES.len()).map(|_| None).collect(),
            endpoints: Endpoints {
                apis,
                chain_id: consortium.chain_id,
                suite,
                http: reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(40))
                    .build()
                    .expect("http client"),
            },
        }
    }

    pub fn net(&self) -> PathBuf {
        self.dir.path().join("net")
    }

    pub fn config(&self, i: usize) -> PathBuf {
        cbec_genesis::Consortium::node_config_path(&self.net(), AGENCIES[i])
    }

    pub fn api(&self, i: usize) -> String {
        self.endpoints.apis[i].clone()
    }

    pub fn start(&mut self, i: usize) {
        self.start_with(i, None);
    }

    /// Starts node `i` with its wall clock (and monotonic clock) shifted by
    /// `offset_ms`, through libfaketime: the real process, with a wrong clock.
    pub fn start_skewed(&mut self, i: usize, offset_ms: i64) {
        self.start_with(i, Some(offset_ms));
    }

    /// Starts node `i` as another program (a Byzantine build of the node) with extra
    /// arguments after `--config FILE`.
    pub fn start_program(&mut self, i: usize, program: &str, args: &[&str]) {
        self.launch(i, Path::new(program), args, None);
    }

    fn start_with(&mut self, i: usize, clock_offset_ms: Option<i64>) {
        let binary = self.binary.clone();
        self.launch(i, &binary, &[], clock_offset_ms);
    }

    fn launch(&mut self, i: usize, program: &Path, args: &[&str], clock_offset_ms: Option<i64>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.net().join(AGENCIES[i]).join("node.log"))
            .expect("log file");
        let mut command = Command::new(program);
        command
            .arg("--config")
            .arg(self.config(i))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(offset_ms) = clock_offset_ms {
            let seconds = offset_ms as f64 / 1000.0;
            command
                .env("LD_PRELOAD", faketime_library())
                .env("FAKETIME", format!("{seconds:+.3}"))
                .env("FAKETIME_NO_CACHE", "1");
        }
        let child = command.spawn().expect("start node");
        self.children[i] = Some(child);
    }

    /// Routes every node's links to its peers through a [`mesh::Mesh`] of proxies, so
    /// a test can cut or slow chosen pairs. Call before starting the nodes.
    pub fn route_through_mesh(&mut self) -> mesh::Mesh {
        let listen: Vec<std::net::SocketAddr> = (0..AGENCIES.len())
            .map(|i| {
                let config = NodeConfig::load(&self.config(i)).expect("config");
                let parts: Vec<&str> = config.p2p_listen.split('/').collect();
                format!("{}:{}", parts[2], parts[4])
                    .parse()
                    .expect("an /ip4/../tcp/.. listen address")
            })
            .collect();
        let mesh = mesh::Mesh::start(&listen).expect("start the proxies");
        for i in 0..AGENCIES.len() {
            // Paths come back resolved against the config's folder: still valid.
            let mut config = NodeConfig::load(&self.config(i)).expect("config");
            config.peer_addresses = (0..AGENCIES.len())
                .filter(|&j| j != i)
                .map(|j| {
                    let a = mesh.address(i, j);
                    (
                        AGENCIES[j].to_string(),
                        format!("/ip4/{}/tcp/{}", a.ip(), a.port()),
                    )
                })
                .collect();
            std::fs::write(self.config(i), config.to_toml()).expect("write config");
        }
        mesh
    }

    pub fn start_all(&mut self) {
        for i in 0..AGENCIES.len() {
            self.start(i);
        }
    }

    /// SIGKILL: no chance to flush anything. (A frozen process dies too.)
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits for the process to end: a clean stop.
    pub fn stop(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let mut child = self.children[i].take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()
    }

    /// Node `i`'s exit status if its process has ended by itself (it is then no longer
    /// counted as running).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let status = self.children[i].as_mut()?.try_wait().ok()??;
        self.children[i] = None;
        Some(status)
    }

    /// A handle on the nodes' APIs that another thread can use while this one starts,
    /// stops and kills processes.
    pub fn endpoints(&self) -> Endpoints {
        self.endpoints.clone()
    }

    /// Submits to node `i`, or `None` if the node does not answer.
    pub fn try_submit(&self, i: usize, tx: &Transaction, wait: bool) -> Option<(u16, Value)> {
        self.endpoints.try_submit(i, tx, wait)
    }

    /// Whether node `i`'s process is running (it may be frozen).
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to node `i`'s process.
    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.children[i] {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status();
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.net().join(AGENCIES[i]).join("node.log")).unwrap_or_default()
    }

    pub fn get(&self, i: usize, path: &str) -> Option<Value> {
        self.endpoints.get(i, path)
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        self.get(i, "/v1/status")?["height"].as_u64()
    }

    /// Waits until `pred` holds, or fails the test with the node logs' tails.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Consortium) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let tails: Vec<String> = (0..AGENCIES.len())
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "--- {} ---\n{}",
                    AGENCIES[i],
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect();
        panic!("timed out waiting for {what}\n{}", tails.join("\n"));
    }

    /// The operator key of agency `i`.
    pub fn operator(&self, i: usize) -> KeyPair {
        cbec_genesis::read_key(&self.net().join(AGENCIES[i]).join("operator.key"))
            .expect("operator key")
    }

    pub fn sign(
        &self,
        key: &KeyPair,
        nonce: u64,
        chaincode: &str,
        method: &str,
        args: Value,
    ) -> Transaction {
        sign_call(self.chain_id, key, nonce, chaincode, method, args)
    }

    /// POSTs a transaction to node `i`; returns the HTTP status and body.
    pub fn submit(&self, i: usize, tx: &Transaction, wait: bool) -> (u16, Value) {
        self.try_submit(i, tx, wait).expect("reach the node")
    }

    pub fn post_raw(
        &self,
        i: usize,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        self.endpoints
            .post(i, path, content_type, body)
            .expect("reach the node")
    }

    /// Block hash and state root at `height` on node `i`.
    pub fn block_id(&self, i: usize, height: u64) -> Option<(String, String)> {
        let b = self.get(i, &format!("/v1/blocks/{height}"))?;
        Some((
            b["hash"].as_str()?.to_string(),
            b["block"]["header"]["state_root"].as_str()?.to_string(),
        ))
    }

    /// Rewrites node `i`'s `node.toml` (call before starting it).
    pub fn configure(&self, i: usize, change: impl FnOnce(&mut NodeConfig)) {
        let mut config = NodeConfig::load(&self.config(i)).expect("config");
        change(&mut config);
        std::fs::write(self.config(i), config.to_toml()).expect("write config");
    }

    /// Node `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Node `i`'s resident memory in bytes (Linux), while it runs.
    pub fn rss_bytes(&self, i: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?)).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// The API's socket address of node `i`.
    pub fn api_addr(&self, i: usize) -> std::net::SocketAddr {
        NodeConfig::load(&self.config(i))
            .expect("config")
            .api_listen
            .parse()
            .expect("an address")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        NodeConfig::load(&self.config(i)).expect("config").data_dir
    }
}

impl Drop for Consortium {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// The nodes' HTTP APIs, without the processes.
#[derive(Debug, Clone)]
pub struct Endpoints {
    apis: Vec<String>,
    chain_id: Hash,
    suite: Suite,
    http: reqwest::blocking::Client,
}

impl Endpoints {
    pub fn get(&self, i: usize, path: &str) -> Option<Value> {
        self.http
            .get(format!("{}{path}", self.apis[i]))
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// The HTTP status of a GET, or `None` if the node does not answer.
    pub fn status(&self, i: usize, path: &str) -> Option<u16> {
        Some(
            self.http
                .get(format!("{}{path}", self.apis[i]))
                .send()
                .ok()?
                .status()
                .as_u16(),
        )
    }

    pub fn text(&self, i: usize, path: &str) -> Option<String> {
        self.http
            .get(format!("{}{path}", self.apis[i]))
            .send()
            .ok()?
            .text()
            .ok()
    }

    pub fn try_submit(&self, i: usize, tx: &Transaction, wait: bool) -> Option<(u16, Value)> {
        let body = serde_json::to_vec(tx).expect("a transaction encodes as JSON");
        self.post(i, &format!("/v1/tx?wait={wait}"), "application/json", body)
    }

    /// POSTs `body` to node `i`; the HTTP status and JSON answer, or `None` if the
    /// node does not answer.
    pub fn post(
        &self,
        i: usize,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Option<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.apis[i]))
            .header("content-type", content_type)
            .body(body)
            .send()
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().unwrap_or(Value::Null)))
    }

    pub fn sign(
        &self,
        key: &KeyPair,
        nonce: u64,
        chaincode: &str,
        method: &str,
        args: Value,
    ) -> Transaction {
        sign_call(self.chain_id, key, nonce, chaincode, method, args)
    }

    /// A fresh client key of the chain's scheme, from `seed`.
    pub fn client_key(&self, seed: &[u8; 32]) -> KeyPair {
        KeyPair::derive(self.suite.scheme(), seed)
    }

    /// The hash of `tx` with the chain's suite.
    pub fn tx_hash(&self, tx: &Transaction) -> Hash {
        tx.hash(self.suite)
    }
}

/// Signs a chaincode call given as JSON arguments.
pub fn sign_call(
    chain_id: Hash,
    key: &KeyPair,
    nonce: u64,
    chaincode: &str,
    method: &str,
    args: Value,
) -> Transaction {
    let args = cbec_chaincode::args_from_json(chaincode, method, args).expect("args");
    Transaction::sign(
        TxBody {
            chain_id,
            sender: key.public(),
            nonce,
            call: Call {
                chaincode: chaincode.into(),
                method: method.into(),
                args,
            },
        },
        key,
    )
}

/// libfaketime's preload library (`apt-get install faketime`), or `CBEC_FAKETIME_LIB`.
pub fn faketime_library() -> PathBuf {
    if let Some(path) = std::env::var_os("CBEC_FAKETIME_LIB") {
        return PathBuf::from(path);
    }
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/lib64/faketime/libfaketimeMT.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect(
        "clock-skew faults need libfaketime: `apt-get install faketime`, \
         or set CBEC_FAKETIME_LIB to libfaketimeMT.so.1",
    )
}

/// The path of a file inside the consortium's directory, for error messages.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}
