//! A small blocking HTTP client for the node's `/v1/` API.

use std::time::Duration;

use anyhow::Context;
use cbec_ledger::{Hash, PublicKey, Suite, Transaction};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(base: &str) -> anyhow::Result<Client> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            anyhow::bail!("--node `{base}` must be a URL like http://127.0.0.1:8080");
        }
        // A node that is not open to anonymous clients wants a bearer token
        // (`cbec api token`); `cbec` sends the one in $CBEC_API_TOKEN.
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(token) = std::env::var("CBEC_API_TOKEN") {
            let value = format!("Bearer {}", token.trim())
                .parse()
                .context("$CBEC_API_TOKEN is not a valid header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .default_headers(headers)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn read(&self, response: reqwest::blocking::Response, what: &str) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response.json().with_context(|| {
            format!("{what}: the node answered {status} with a body that is not JSON")
        })?;
        if status.is_client_error() || status.is_server_error() {
            let message = body["error"].as_str().unwrap_or("no message").to_string();
            anyhow::bail!("{what}: {status}: {message}");
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .with_context(|| format!("cannot reach {url}"))?;
        self.read(response, &format!("GET {path}"))
    }

    pub fn status(&self) -> anyhow::Result<Value> {
        self.get("/v1/status")
    }

    pub fn chain_id(&self) -> anyhow::Result<Hash> {
        Ok(self.chain()?.0)
    }

    /// The chain id and crypto suite the node reports.
    pub fn chain(&self) -> anyhow::Result<(Hash, Suite)> {
        let status = self.status()?;
        let id = status["chain_id"]
            .as_str()
            .context("status has no chain_id")?
            .parse()
            .map_err(|e| anyhow::anyhow!("status chain_id: {e}"))?;
        let suite = match status["crypto"].as_str() {
            // A node from before the national suite: its chain is the default suite's.
            None => Suite::default(),
            Some(name) => name
                .parse()
                .map_err(|e| anyhow::anyhow!("status crypto: {e}"))?,
        };
        Ok((id, suite))
    }

    pub fn next_nonce(&self, key: &PublicKey) -> anyhow::Result<u64> {
        self.get(&format!("/v1/nonce/{key}"))?["next_nonce"]
            .as_u64()
            .context("nonce answer has no next_nonce")
    }

    pub fn submit(&self, tx: &Transaction, wait: bool) -> anyhow::Result<Value> {
        let url = format!("{}/v1/tx?wait={wait}", self.base);
        let response = self
            .http
            .post(&url)
            .json(tx)
            .send()
            .with_context(|| format!("cannot reach {url}"))?;
        self.read(response, "POST /v1/tx")
    }
}
