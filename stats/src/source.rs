//! The node the indexer reads: certified blocks in their canonical binary form, the
//! proofs of validator keys a set change needs, and the event stream that says when a
//! new block is committed. Nothing the node says is believed before the
//! [`cbec_ledger::Follower`] has checked it.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use anyhow::{bail, Context as _};
use cbec_ledger::proof::{validator_key_state_key, KeyProof, Proof};
use cbec_ledger::{codec, CertifiedBlock, ProofFile, TrustRoot};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;

#[derive(Debug, Clone)]
pub struct Node {
    base: String,
    http: Client,
    stream: Client,
    /// Largest answer read: a node that sends more is refused, not buffered.
    answer_bytes_max: u64,
}

/// The default cap on one answer (a block with its results and certificate, or a
/// proof); [`Node::with_answer_limit`] sets one from the genesis block limit.
pub const ANSWER_BYTES_MAX: u64 = 256 * 1024 * 1024;

impl Node {
    /// A node at `base` (`http://host:port`); `token` is a bearer token for a node that
    /// is not open to anonymous readers.
    pub fn new(base: &str, token: Option<&str>) -> anyhow::Result<Node> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--node `{base}` must be a URL like http://127.0.0.1:8080");
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("the API token is not a valid header value")?;
            headers.insert(AUTHORIZATION, value);
        }
        let build = |timeout| {
            Client::builder()
                .timeout(timeout)
                .default_headers(headers.clone())
                .build()
                .context("cannot build the HTTP client")
        };
        Ok(Node {
            http: build(Some(Duration::from_secs(60)))?,
            // The event stream is long-lived; a silent connection is dropped after this
            // and the indexer reconnects (and catches up by height, so nothing is missed).
            stream: build(Some(Duration::from_secs(120)))?,
            base,
            answer_bytes_max: ANSWER_BYTES_MAX,
        })
    }

    /// Caps one answer at `bytes`.
    pub fn with_answer_limit(mut self, bytes: u64) -> Node {
        self.answer_bytes_max = bytes;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn get_binary(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .header(ACCEPT, "application/octet-stream")
            .send()
            .with_context(|| format!("cannot reach {url}"))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let mut body = Vec::new();
                response
                    .take(self.answer_bytes_max + 1)
                    .read_to_end(&mut body)
                    .with_context(|| format!("GET {path}: body"))?;
                if body.len() as u64 > self.answer_bytes_max {
                    bail!(
                        "GET {path}: the answer is larger than {} bytes",
                        self.answer_bytes_max
                    );
                }
                Ok(Some(body))
            }
            status => {
                let text = response.text().unwrap_or_default();
                bail!("GET {path}: {status}: {}", text.trim())
            }
        }
    }

    /// The block at `height` and its certificate; `None` if the node has none yet.
    pub fn block(&self, height: u64) -> anyhow::Result<Option<CertifiedBlock>> {
        let path = format!("/v1/blocks/{height}");
        self.get_binary(&path)?
            .map(|bytes| {
                codec::decode(&bytes)
                    .map_err(|e| anyhow::anyhow!("GET {path}: not a certified block: {e}"))
            })
            .transpose()
    }

    /// The proofs of every agency's validator-key entry in the state after `height`,
    /// in genesis order (what [`cbec_ledger::Follower::change_set`] checks).
    pub fn key_proofs(&self, trust: &TrustRoot, height: u64) -> anyhow::Result<Vec<KeyProof>> {
        trust
            .agencies
            .iter()
            .map(|agency| {
                let key = validator_key_state_key(&agency.name);
                let path = format!("/v1/proof/state/{key}?height={height}");
                let bytes = self
                    .get_binary(&path)?
                    .with_context(|| format!("GET {path}: not found"))?;
                let file = ProofFile::from_bytes(&bytes)
                    .map_err(|e| anyhow::anyhow!("GET {path}: not a proof: {e}"))?;
                match file.proof {
                    Proof::State(p) => Ok(KeyProof {
                        value: p.value,
                        proof: p.proof,
                    }),
                    _ => bail!("GET {path}: not a state proof"),
                }
            })
            .collect()
    }

    /// The committed-block event stream: calls `on_height` with each block event's
    /// height until it returns false or the stream ends (the node went away, or dropped
    /// this reader for falling behind). Returns whether `on_height` asked to stop.
    pub fn follow_events(
        &self,
        mut on_height: impl FnMut(u64) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let url = format!("{}/v1/events", self.base);
        let response: Response = self
            .stream
            .get(&url)
            .header(ACCEPT, "text/event-stream")
            .send()
            .with_context(|| format!("cannot reach {url}"))?;
        if !response.status().is_success() {
            bail!("GET /v1/events: {}", response.status());
        }
        let mut event = String::new();
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else {
                return Ok(false); // the connection ended or timed out
            };
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                if event == "block" {
                    let height = serde_json::from_str::<serde_json::Value>(data.trim())
                        .ok()
                        .and_then(|v| v["height"].as_u64());
                    if let Some(height) = height {
                        if !on_height(height)? {
                            return Ok(true);
                        }
                    }
                }
            } else if line.is_empty() {
                event.clear();
            }
        }
        Ok(false)
    }
}
