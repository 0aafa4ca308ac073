//! A validator node's configuration file (TOML). Paths in it are relative to the file's
//! own folder, so a consortium directory can be moved as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// What `cbec-node --config FILE` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The agency this node validates for; must be in the genesis document.
    pub agency: String,
    pub genesis: PathBuf,
    pub validator_key: PathBuf,
    pub network_key: PathBuf,
    pub data_dir: PathBuf,
    /// libp2p listen multiaddr, e.g. `/ip4/127.0.0.1/tcp/26656`.
    pub p2p_listen: String,
    /// HTTP API address, e.g. `127.0.0.1:8080`.
    pub api_listen: String,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Where this node reaches some peers, by agency name, instead of the genesis
    /// address (a NAT, a tunnel, or a test's proxy). Peers are still authenticated by
    /// their genesis peer id, so an address can only route, never impersonate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_addresses: BTreeMap<String, String>,
    /// The HTTP API's limits and who may use it (see [`ApiSettings`]).
    #[serde(default, skip_serializing_if = "ApiSettings::is_default")]
    pub api: ApiSettings,
    /// How the node keeps its state (see [`StoreSettings`]).
    #[serde(default, skip_serializing_if = "StoreSettings::is_default")]
    pub store: StoreSettings,
    /// How the node gossips its proposals (see [`NetworkSettings`]).
    #[serde(default, skip_serializing_if = "NetworkSettings::is_default")]
    pub network: NetworkSettings,
}

/// How a node gossips (the `[network]` table of `node.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSettings {
    /// Send this node's proposals of 512 transactions or more compact (without the
    /// transactions, which peers put back from their mempools), and keep peers'
    /// pushes it has no room or time to check, unchecked, to put such blocks together.
    /// Fewer bytes on the links between agencies; more work a block on each node (on
    /// one 2-core machine it cost 10 % of saturation throughput: docs/performance.md).
    /// Every node understands compact proposals whatever this says.
    pub compact_proposals: bool,
}

impl NetworkSettings {
    pub fn is_default(&self) -> bool {
        *self == NetworkSettings::default()
    }
}

/// How a node keeps its state (the `[store]` table of `node.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Heights whose state the node can prove (`/v1/proof/state/{key}?height=H`), the
    /// latest included; older state is not kept. Proofs across validator-set changes
    /// do not need old heights. Each kept height costs the memory of the tree nodes
    /// its block changed.
    pub versions_kept: usize,
    /// Keep every height's state provable (an archive node), from genesis, or from
    /// the height at which an existing node is first started with this set. Costs disk:
    /// each height's changed tree nodes and values are written beside its block.
    pub archive: bool,
    /// Keep at most about this many state keys of the state tree in memory (about 100
    /// bytes each): past it, the subtrees changed longest ago leave memory and are read
    /// back from disk when a block or a proof reaches them, so memory stays level as
    /// the state grows, at the cost of those reads. Unset: the whole tree in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_resident_keys: Option<u64>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            versions_kept: 16,
            archive: false,
            tree_resident_keys: None,
        }
    }
}

impl StoreSettings {
    pub fn is_default(&self) -> bool {
        *self == StoreSettings::default()
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.versions_kept < 2 {
            return Err((
                "store.versions_kept",
                "must be at least 2 (the latest height and the one before)".into(),
            ));
        }
        Ok(())
    }
}

/// What a client may do through the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET /v1/status`.
    Status,
    /// `POST /v1/tx`, `POST /v1/txs`, `GET /v1/nonce/...`.
    Submit,
    /// `GET /v1/tx/...`, `/v1/blocks/...`, `/v1/state/...`.
    Read,
    /// `GET /v1/proof/...`.
    Proofs,
    /// `GET /v1/events`.
    Events,
    /// `GET /metrics`.
    Metrics,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Status,
        Scope::Submit,
        Scope::Read,
        Scope::Proofs,
        Scope::Events,
        Scope::Metrics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Status => "status",
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Proofs => "proofs",
            Scope::Events => "events",
            Scope::Metrics => "metrics",
        }
    }
}

/// A client's bearer token, kept as its SHA-256 (the token itself is only the client's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it, for logs (`tax-ops`, `auditor-1`).
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`cbec api token` makes both).
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

/// The HTTP API's limits and access policy (the `[api]` table of `node.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Open connections at most; more are closed at once.
    pub connections_max: usize,
    /// Requests handled at once (the event stream aside); more get 503.
    pub requests_in_flight_max: usize,
    /// Time to send a request's headers, and how long an idle connection stays open.
    pub header_timeout_ms: u64,
    /// Time to send the body and get the answer (`?wait=true` waits within it).
    pub request_timeout_ms: u64,
    /// Event-stream subscribers at most; more get 503.
    pub event_subscribers_max: usize,
    /// Disk reads (blocks, proofs) running at once, and waiting; more get 503.
    pub reads_concurrency: usize,
    pub reads_queue_max: usize,
    /// Scopes anyone may use without a token. Absent: every scope when the API listens
    /// on loopback only, `status` alone otherwise.
    pub anonymous: Option<Vec<Scope>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<ApiToken>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            connections_max: 512,
            requests_in_flight_max: 64,
            header_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
            event_subscribers_max: 64,
            reads_concurrency: 1,
            reads_queue_max: 64,
            anonymous: None,
            tokens: Vec::new(),
        }
    }
}

impl ApiSettings {
    pub fn is_default(&self) -> bool {
        *self == ApiSettings::default()
    }

    /// The scopes a request without a token has, for an API listening on `listen`.
    pub fn anonymous_scopes(&self, listen: &std::net::SocketAddr) -> Vec<Scope> {
        match &self.anonymous {
            Some(scopes) => scopes.clone(),
            None if listen.ip().is_loopback() => Scope::ALL.to_vec(),
            None => vec![Scope::Status],
        }
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [
            ("api.connections_max", self.connections_max as u64),
            (
                "api.requests_in_flight_max",
                self.requests_in_flight_max as u64,
            ),
            ("api.header_timeout_ms", self.header_timeout_ms),
            ("api.request_timeout_ms", self.request_timeout_ms),
            (
                "api.event_subscribers_max",
                self.event_subscribers_max as u64,
            ),
            ("api.reads_concurrency", self.reads_concurrency as u64),
        ] {
            if value == 0 {
                return Err((field, "must be greater than zero".into()));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            if token.name.is_empty() || !names.insert(token.name.as_str()) {
                return Err((
                    "api.tokens",
                    format!("token {i}: its name is empty or used twice"),
                ));
            }
            let hex_ok = token.sha256.len() == 64
                && token
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err((
                    "api.tokens",
                    format!(
                        "token `{}`: sha256 is not 64 lower-case hex characters",
                        token.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Why a node configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {field}: {problem}")]
    Invalid {
        path: String,
        field: &'static str,
        problem: String,
    },
}

impl NodeConfig {
    /// Reads a config file and resolves its paths against the file's folder.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        NodeConfig::parse(&text, path)
    }

    /// A config file's text, checked; paths resolve against `path`'s folder, and
    /// errors name `path`.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let shown = path.display().to_string();
        let mut config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: match e.span() {
                // Where: the line, and its text (a type error names no key).
                Some(span) => {
                    // Counted on bytes: the parser's span may fall inside a character.
                    let before = &text.as_bytes()[..span.start.min(text.len())];
                    let line = before.iter().filter(|&&b| b == b'\n').count();
                    let shown_line = text.lines().nth(line).unwrap_or("").trim();
                    format!("line {} (`{shown_line}`): {}", line + 1, e.message())
                }
                None => e.message().to_string(),
            },
        })?;
        let invalid = |field, problem: String| ConfigError::Invalid {
            path: shown.clone(),
            field,
            problem,
        };
        crate::document::check_multiaddr(&config.p2p_listen)
            .map_err(|e| invalid("p2p_listen", e))?;
        for (agency, address) in &config.peer_addresses {
            crate::document::check_multiaddr(address)
                .map_err(|e| invalid("peer_addresses", format!("{agency}: {e}")))?;
        }
        config
            .api_listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| invalid("api_listen", format!("`{}`: {e}", config.api_listen)))?;
        config
            .api
            .check()
            .map_err(|(field, problem)| invalid(field, problem))?;
        config
            .store
            .check()
            .map_err(|(field, problem)| invalid(field, problem))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.genesis,
            &mut config.validator_key,
            &mut config.network_key,
            &mut config.data_dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        // Plain strings and paths: serialising cannot fail.
        toml::to_string(self).expect("node config serialises to TOML")
    }
}
