//! Generation of a local four-agency consortium into a directory.
//!
//! ```text
//! DIR/genesis.json
//! DIR/<agency>/validator.key   consensus key (signs votes)
//! DIR/<agency>/network.key     libp2p identity (its peer id is in genesis)
//! DIR/<agency>/operator.key    signs the agency's own transactions
//! DIR/<agency>/node.toml       node configuration with loopback addresses
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use cbec_ledger::{ChaincodeConfig, Hash, KeyPair, Scheme, Suite};
use rand_core::CryptoRngCore;

use crate::config::{LogFormat, NodeConfig};
use crate::document::{Agency, ConsensusParams, Genesis, AGENCIES};
use crate::keyfile::{self, KeyFileError};
use crate::peer_id;

/// What the consortium is made of.
#[derive(Debug, Clone)]
pub struct ConsortiumOptions {
    pub chain_name: String,
    pub genesis_time_ms: u64,
    pub consensus: ConsensusParams,
    pub chaincodes: Vec<ChaincodeConfig>,
    /// A synthetic state every node writes at genesis (benchmarks), if any.
    pub synthetic_state: Option<crate::SyntheticState>,
    /// The chain's crypto suite; validator and operator keys are of its scheme.
    pub crypto: Suite,
}

/// A generated consortium.
#[derive(Debug, Clone)]
pub struct Consortium {
    pub dir: PathBuf,
    pub genesis: Genesis,
    pub chain_id: Hash,
}

impl Consortium {
    pub fn genesis_path(dir: &Path) -> PathBuf {
        dir.join("genesis.json")
    }

    pub fn node_config_path(dir: &Path, agency: &str) -> PathBuf {
        dir.join(agency).join("node.toml")
    }
}

/// Why a consortium could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{path}: already holds a consortium (genesis.json exists); choose another directory or remove it")]
    Exists { path: PathBuf },
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyFileError),
}

/// Where generated consortia take their ports: below the kernel's ephemeral range, so
/// that no outgoing connection (which takes an ephemeral port) can take a port between
/// its choice here and the node's start.
const PORTS: std::ops::Range<u16> = 20_000..32_768;

/// The kernel's ephemeral port range, where it says (Linux).
fn ephemeral_ports() -> Option<std::ops::RangeInclusive<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(|b| b.parse::<u16>().ok());
    Some(bounds.next()??..=bounds.next()??)
}

/// Picks `count` distinct free loopback ports by binding them all at once, then
/// releasing them: from [`PORTS`] (outside the ephemeral range) from a random start, or
/// from the OS (port 0) where that range overlaps the ephemeral one or is full. Another
/// process could still take one before the node starts; the node then fails with a
/// clear "address in use" and the operator edits node.toml.
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let outside = ephemeral_ports()
        .is_some_and(|e| !e.contains(&PORTS.start) && !e.contains(&(PORTS.end - 1)));
    let mut listeners = Vec::with_capacity(count);
    if outside {
        let span = u32::from(PORTS.end - PORTS.start);
        // The OS's randomness, not the caller's (possibly seeded) generator: two
        // consortia made at once from one seed must not try the same ports.
        let start = rand_core::RngCore::next_u32(&mut rand_core::OsRng) % span;
        for i in 0..span {
            if listeners.len() == count {
                break;
            }
            let port = PORTS.start + ((start + i) % span) as u16;
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(listener);
            }
        }
    }
    while listeners.len() < count {
        listeners.push(TcpListener::bind("127.0.0.1:0")?);
    }
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Generates keys, the genesis document and node configs for the four agencies.
pub fn generate_consortium(
    dir: &Path,
    options: &ConsortiumOptions,
    rng: &mut impl CryptoRngCore,
) -> Result<Consortium, GenerateError> {
    let genesis_path = Consortium::genesis_path(dir);
    if genesis_path.exists() {
        return Err(GenerateError::Exists {
            path: dir.to_path_buf(),
        });
    }
    let io = |path: &Path, action| {
        let path = path.to_path_buf();
        move |source| GenerateError::Io {
            path,
            action,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir, "create directory"))?;
    let ports = free_ports(2 * AGENCIES.len()).map_err(io(dir, "find free ports for"))?;

    let mut agencies = Vec::new();
    let mut configs = Vec::new();
    for (i, name) in AGENCIES.iter().enumerate() {
        let agency_dir = dir.join(name);
        std::fs::create_dir_all(&agency_dir).map_err(io(&agency_dir, "create directory"))?;
        let validator = KeyPair::generate(options.crypto.scheme(), rng);
        // libp2p's peer identities are Ed25519 whatever the chain's suite.
        let network = KeyPair::generate(Scheme::Ed25519, rng);
        let operator = KeyPair::generate(options.crypto.scheme(), rng);
        keyfile::write_key(&agency_dir.join("validator.key"), &validator, false)?;
        keyfile::write_key(&agency_dir.join("network.key"), &network, false)?;
        keyfile::write_key(&agency_dir.join("operator.key"), &operator, false)?;
        let address = format!("/ip4/127.0.0.1/tcp/{}", ports[2 * i]);
        agencies.push(Agency {
            name: name.to_string(),
            validator_key: validator.public(),
            peer_id: peer_id::from_public_key(&network.public()),
            address: address.clone(),
            operator_keys: vec![operator.public()],
            voting_power: 1,
        });
        configs.push((
            agency_dir,
            NodeConfig {
                agency: name.to_string(),
                genesis: PathBuf::from("../genesis.json"),
                validator_key: PathBuf::from("validator.key"),
                network_key: PathBuf::from("network.key"),
                data_dir: PathBuf::from("data"),
                p2p_listen: address,
                api_listen: format!("127.0.0.1:{}", ports[2 * i + 1]),
                log_format: LogFormat::Human,
                peer_addresses: Default::default(),
                api: Default::default(),
                store: Default::default(),
                network: Default::default(),
            },
        ));
    }
    let genesis = Genesis {
        chain_name: options.chain_name.clone(),
        genesis_time_ms: options.genesis_time_ms,
        agencies,
        consensus: options.consensus.clone(),
        chaincodes: options.chaincodes.clone(),
        synthetic_state: options.synthetic_state,
        crypto: options.crypto,
    };
    for (agency_dir, config) in &configs {
        let path = agency_dir.join("node.toml");
        write_file_atomic(&path, config.to_toml().as_bytes()).map_err(io(&path, "write"))?;
    }
    // genesis.json last: its presence marks a complete consortium.
    write_file_atomic(
        &genesis_path,
        format!("{}\n", genesis.to_json_pretty()).as_bytes(),
    )
    .map_err(io(&genesis_path, "write"))?;
    Ok(Consortium {
        dir: dir.to_path_buf(),
        chain_id: genesis.chain_id(),
        genesis,
    })
}

/// Writes through a temporary file and a rename, with fsyncs, so readers see the old
/// file or the whole new one.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports come from below the ephemeral range (where the kernel's is the usual one),
    /// distinct, and free when chosen.
    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports = free_ports(8).expect("ports");
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 8);
        if ephemeral_ports().is_some_and(|e| !e.contains(&PORTS.start)) {
            assert!(ports.iter().all(|p| PORTS.contains(p)), "{ports:?}");
        }
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).expect("free after the choice");
        }
    }
}
