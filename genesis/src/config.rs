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
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: e.message().to_string(),
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
