//! The genesis document: what the four agencies agree on before the first block.

use std::collections::BTreeSet;
use std::path::Path;

use bincode::{Decode, Encode};
use cbec_ledger::hash::tag;
use cbec_ledger::proof::{TrustRoot, TrustedAgency};
use cbec_ledger::{codec, ChaincodeConfig, Hash, PublicKey, Suite, Validator, ValidatorSet};
use serde::{Deserialize, Serialize};

use crate::peer_id;

/// The four agencies of the pilot zone, each running one validator.
pub const AGENCIES: [&str; 4] = ["customs", "tax", "forex", "commerce"];

/// The founding document of a consortium. Its canonical encoding's hash is the chain id.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// A name for people, e.g. `datong-cbec-pilot`.
    pub chain_name: String,
    /// RFC 3339 in JSON; the first block's time may not be earlier.
    #[serde(rename = "genesis_time", with = "rfc3339_ms")]
    pub genesis_time_ms: u64,
    pub agencies: Vec<Agency>,
    pub consensus: ConsensusParams,
    /// Chaincodes enabled at genesis, with their parameters.
    pub chaincodes: Vec<ChaincodeConfig>,
    /// State every node writes at genesis besides the agencies': a deterministic
    /// synthetic load (benchmarks of a ledger that already holds millions of keys).
    /// Covered by the chain id like everything here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_state: Option<SyntheticState>,
    /// The crypto suite of every signature and hash on the chain, chain id included:
    /// `ed25519-sha256` (the default when absent) or `sm2-sm3`. Fixed for the chain's
    /// life.
    #[serde(default)]
    pub crypto: Suite,
}

/// `keys` entries under `syn/`, each derived from `seed` and its index (see
/// [`crate::synthetic`]); no chaincode reads or writes that prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticState {
    pub seed: u64,
    pub keys: u64,
}

/// Most synthetic keys a genesis may ask for (each node builds them at start).
pub const SYNTHETIC_KEYS_MAX: u64 = 100_000_000;

/// One agency: its validator, its node's network identity, and its operators' keys.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    /// One of [`AGENCIES`].
    pub name: String,
    /// The consensus key that signs votes and proposals.
    pub validator_key: PublicKey,
    /// The libp2p peer id of the agency's node (derived from its network key).
    pub peer_id: String,
    /// Where the node listens for its peers, as a multiaddr: `/ip4/127.0.0.1/tcp/26656`.
    pub address: String,
    /// Keys that sign the agency's own transactions (approvals, clearances, ...).
    pub operator_keys: Vec<PublicKey>,
    pub voting_power: u64,
}

/// Consensus timing and block limits.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    pub timeout_propose_ms: u64,
    pub timeout_prevote_ms: u64,
    pub timeout_precommit_ms: u64,
    /// Added to each timeout per round, so timeouts grow until the network is timely.
    pub timeout_increase_per_round_ms: u64,
    /// How long a proposer waits, once a height asks it for a block, before it takes
    /// what its mempool holds (none when the mempool already holds a whole block). Under
    /// light load it sets how many blocks a second the chain makes: at 1,000 tx/s on
    /// two cores, 10 ms made half the blocks that 1 ms made, for a sixth to a fifth less
    /// CPU a transaction and a median latency 1.5-3.5 ms higher (docs/performance.md).
    pub batch_delay_ms: u64,
    pub block_txs_max: u32,
    pub block_bytes_max: u32,
    pub tx_bytes_max: u32,
    /// How far a fresh proposal's block time may be ahead of a validator's clock for it
    /// to prevote the proposal.
    #[serde(default = "default_block_time_ahead_ms_max")]
    pub block_time_ahead_ms_max: u64,
    /// How far it may be behind: a faulty proposer cannot backdate blocks (which would
    /// move every time-based rule) by more than this.
    #[serde(default = "default_block_time_behind_ms_max")]
    pub block_time_behind_ms_max: u64,
}

fn default_block_time_ahead_ms_max() -> u64 {
    10_000
}

fn default_block_time_behind_ms_max() -> u64 {
    30_000
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            timeout_propose_ms: 1_000,
            timeout_prevote_ms: 500,
            timeout_precommit_ms: 500,
            timeout_increase_per_round_ms: 500,
            batch_delay_ms: 10,
            block_txs_max: 10_000,
            block_bytes_max: 8 * 1024 * 1024,
            tx_bytes_max: 64 * 1024,
            block_time_ahead_ms_max: default_block_time_ahead_ms_max(),
            block_time_behind_ms_max: default_block_time_behind_ms_max(),
        }
    }
}

impl ConsensusParams {
    /// The defaults for a chain of `suite`. An SM2 chain's blocks hold at most 2,000
    /// transactions: a validator checks a proposal's transactions it has not seen before
    /// it votes, and SM2 verifies about 3,500 signatures a second on a core (30 times
    /// slower than batched Ed25519), so a 10,000-transaction proposal outlasted the
    /// round and rounds failed until timeouts grew (`cbec bench --crypto sm2-sm3
    /// --saturate` on 2 cores: 627 tx/s at 10,000, 1,173 tx/s at 2,000).
    pub fn for_suite(suite: Suite) -> ConsensusParams {
        match suite {
            Suite::Ed25519Sha256 => ConsensusParams::default(),
            Suite::Sm2Sm3 => ConsensusParams {
                block_txs_max: 2_000,
                ..ConsensusParams::default()
            },
        }
    }
}

/// Upper bounds on consensus parameters: beyond them a chain would stall or a block
/// would not fit a message.
pub const TIMEOUT_MS_MAX: u64 = 600_000;
pub const BLOCK_BYTES_MAX: u32 = 32 * 1024 * 1024;

/// A field of the document that is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// Path to the field, like `agencies[2].voting_power`.
    pub field: String,
    pub problem: String,
}

fn fault(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Why a genesis file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a genesis document: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {fault}")]
    Invalid { path: String, fault: FieldError },
    #[error("{path}: chain id mismatch: the document hashes to {actual}, the agreed chain id is {agreed}")]
    ChainIdMismatch {
        path: String,
        actual: Hash,
        agreed: Hash,
    },
}

impl Genesis {
    /// The chain id: the tagged hash (with the document's own suite) of the canonical
    /// encoding. Whitespace and key order in the JSON file do not change it; any value,
    /// the suite included, does.
    pub fn chain_id(&self) -> Hash {
        self.crypto.tagged(tag::GENESIS, &codec::encode(self))
    }

    /// The validator set in agency order.
    pub fn validator_set(&self) -> Result<ValidatorSet, FieldError> {
        ValidatorSet::new(
            self.agencies
                .iter()
                .map(|a| Validator {
                    key: a.validator_key,
                    power: a.voting_power,
                })
                .collect(),
        )
        .map_err(|e| fault("agencies", e.to_string()))
    }

    /// What an auditor's verifier trusts: the chain id and the agencies' validators.
    pub fn trust_root(&self) -> TrustRoot {
        TrustRoot {
            chain_id: self.chain_id(),
            suite: self.crypto,
            agencies: self
                .agencies
                .iter()
                .map(|a| TrustedAgency {
                    name: a.name.clone(),
                    validator_key: a.validator_key,
                    voting_power: a.voting_power,
                })
                .collect(),
        }
    }

    pub fn agency(&self, name: &str) -> Option<&Agency> {
        self.agencies.iter().find(|a| a.name == name)
    }

    /// Parses JSON text (no validation).
    pub fn from_json(text: &str) -> Result<Genesis, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_json_pretty(&self) -> String {
        // Serialising our own plain structs to JSON has no failure mode.
        serde_json::to_string_pretty(self).expect("genesis serialises to JSON")
    }

    /// Reads, parses and validates a genesis file. `check_chaincode` judges each
    /// chaincode entry (the chaincode crate knows which ids and parameters exist).
    pub fn load(
        path: &Path,
        check_chaincode: impl Fn(&ChaincodeConfig) -> Result<(), String>,
    ) -> Result<Genesis, GenesisError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: shown.clone(),
            source,
        })?;
        let genesis = Genesis::from_json(&text).map_err(|message| GenesisError::Parse {
            path: shown.clone(),
            message,
        })?;
        genesis
            .validate(check_chaincode)
            .map_err(|fault| GenesisError::Invalid { path: shown, fault })?;
        Ok(genesis)
    }

    /// Checks the document, naming the first faulty field.
    pub fn validate(
        &self,
        check_chaincode: impl Fn(&ChaincodeConfig) -> Result<(), String>,
    ) -> Result<(), FieldError> {
        validate_chain_name(&self.chain_name)?;
        self.validate_agencies()?;
        self.validate_consensus()?;
        if let Some(synthetic) = &self.synthetic_state {
            if synthetic.keys > SYNTHETIC_KEYS_MAX {
                return Err(fault(
                    "synthetic_state.keys",
                    format!("{} is more than {SYNTHETIC_KEYS_MAX}", synthetic.keys),
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for (i, cc) in self.chaincodes.iter().enumerate() {
            let field = format!("chaincodes[{i}]");
            if !ids.insert(cc.id.as_str()) {
                return Err(fault(
                    format!("{field}.id"),
                    format!("chaincode `{}` is listed twice", cc.id),
                ));
            }
            check_chaincode(cc).map_err(|problem| fault(field, problem))?;
        }
        Ok(())
    }

    fn validate_agencies(&self) -> Result<(), FieldError> {
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut peers = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for (i, agency) in self.agencies.iter().enumerate() {
            let at = |f: &str| format!("agencies[{i}].{f}");
            if !AGENCIES.contains(&agency.name.as_str()) {
                return Err(fault(
                    at("name"),
                    format!(
                        "unknown agency `{}`; expected one of {}",
                        agency.name,
                        AGENCIES.join(", ")
                    ),
                ));
            }
            if !names.insert(agency.name.as_str()) {
                return Err(fault(
                    at("name"),
                    format!("agency `{}` is listed twice", agency.name),
                ));
            }
            if agency.voting_power == 0 {
                return Err(fault(at("voting_power"), "must be greater than zero"));
            }
            check_key(
                self.crypto,
                &agency.validator_key,
                &at("validator_key"),
                &mut keys,
            )?;
            if agency.operator_keys.is_empty() {
                return Err(fault(
                    at("operator_keys"),
                    "at least one operator key is needed",
                ));
            }
            for (j, key) in agency.operator_keys.iter().enumerate() {
                check_key(
                    self.crypto,
                    key,
                    &at(&format!("operator_keys[{j}]")),
                    &mut keys,
                )?;
            }
            peer_id::parse(&agency.peer_id).map_err(|e| fault(at("peer_id"), e))?;
            if !peers.insert(agency.peer_id.as_str()) {
                return Err(fault(
                    at("peer_id"),
                    format!("peer id {} is used twice", agency.peer_id),
                ));
            }
            check_multiaddr(&agency.address).map_err(|e| fault(at("address"), e))?;
            if !addresses.insert(agency.address.as_str()) {
                return Err(fault(
                    at("address"),
                    format!("address {} is used twice", agency.address),
                ));
            }
        }
        if let Some(missing) = AGENCIES.iter().find(|a| !names.contains(*a)) {
            return Err(fault("agencies", format!("agency `{missing}` is missing")));
        }
        self.validator_set().map(|_| ())
    }

    fn validate_consensus(&self) -> Result<(), FieldError> {
        let c = &self.consensus;
        for (name, value) in [
            ("timeout_propose_ms", c.timeout_propose_ms),
            ("timeout_prevote_ms", c.timeout_prevote_ms),
            ("timeout_precommit_ms", c.timeout_precommit_ms),
        ] {
            if value == 0 || value > TIMEOUT_MS_MAX {
                return Err(fault(
                    format!("consensus.{name}"),
                    format!("{value} is outside 1..={TIMEOUT_MS_MAX}"),
                ));
            }
        }
        if c.timeout_increase_per_round_ms > TIMEOUT_MS_MAX {
            return Err(fault(
                "consensus.timeout_increase_per_round_ms",
                format!("more than {TIMEOUT_MS_MAX}"),
            ));
        }
        if c.batch_delay_ms > c.timeout_propose_ms {
            return Err(fault(
                "consensus.batch_delay_ms",
                "must not exceed timeout_propose_ms",
            ));
        }
        if c.block_txs_max == 0 {
            return Err(fault(
                "consensus.block_txs_max",
                "must be greater than zero",
            ));
        }
        if c.block_bytes_max == 0 || c.block_bytes_max > BLOCK_BYTES_MAX {
            return Err(fault(
                "consensus.block_bytes_max",
                format!("{} is outside 1..={BLOCK_BYTES_MAX}", c.block_bytes_max),
            ));
        }
        if c.tx_bytes_max == 0 || c.tx_bytes_max > c.block_bytes_max {
            return Err(fault(
                "consensus.tx_bytes_max",
                "must be between 1 and block_bytes_max",
            ));
        }
        // A window narrower than a few timeouts would refuse honest proposals that
        // arrive late; a clock bound of zero would refuse every one.
        for (name, value) in [
            ("block_time_ahead_ms_max", c.block_time_ahead_ms_max),
            ("block_time_behind_ms_max", c.block_time_behind_ms_max),
        ] {
            if !(1_000..=TIMEOUT_MS_MAX).contains(&value) {
                return Err(fault(
                    format!("consensus.{name}"),
                    format!("{value} is outside 1000..={TIMEOUT_MS_MAX}"),
                ));
            }
        }
        Ok(())
    }

    /// Reads and validates like [`Genesis::load`], then checks the chain id against the
    /// one the agencies agreed out of band.
    pub fn load_expecting(
        path: &Path,
        agreed: &Hash,
        check_chaincode: impl Fn(&ChaincodeConfig) -> Result<(), String>,
    ) -> Result<Genesis, GenesisError> {
        let genesis = Genesis::load(path, check_chaincode)?;
        let actual = genesis.chain_id();
        if actual != *agreed {
            return Err(GenesisError::ChainIdMismatch {
                path: path.display().to_string(),
                actual,
                agreed: *agreed,
            });
        }
        Ok(genesis)
    }
}

fn validate_chain_name(name: &str) -> Result<(), FieldError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(fault(
            "chain_name",
            format!("`{name}` must be 1-64 characters of a-z, 0-9 and -"),
        ));
    }
    Ok(())
}

fn check_key(
    suite: Suite,
    key: &PublicKey,
    field: &str,
    seen: &mut BTreeSet<PublicKey>,
) -> Result<(), FieldError> {
    suite
        .check_key(key)
        .map_err(|e| fault(field, e.to_string()))?;
    if !key.is_valid() {
        return Err(fault(
            field,
            format!("{key} is not a valid {} public key", key.scheme()),
        ));
    }
    if !seen.insert(*key) {
        return Err(fault(field, format!("key {key} is used twice")));
    }
    Ok(())
}

/// Accepts `/ip4/A.B.C.D/tcp/PORT`, `/ip6/ADDR/tcp/PORT` and `/dns[46]/HOST/tcp/PORT`.
pub fn check_multiaddr(address: &str) -> Result<(), String> {
    let parts: Vec<&str> = address.split('/').collect();
    let shape = || format!("`{address}` is not a multiaddr like /ip4/127.0.0.1/tcp/26656");
    let [empty, proto, host, tcp, port] = parts.as_slice() else {
        return Err(shape());
    };
    if !empty.is_empty() || *tcp != "tcp" {
        return Err(shape());
    }
    let host_ok = match *proto {
        "ip4" => host.parse::<std::net::Ipv4Addr>().is_ok(),
        "ip6" => host.parse::<std::net::Ipv6Addr>().is_ok(),
        "dns" | "dns4" | "dns6" => {
            !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        }
        _ => return Err(shape()),
    };
    if !host_ok {
        return Err(format!("`{address}`: `{host}` is not a valid {proto} host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("`{address}`: `{port}` is not a TCP port 1-65535")),
    }
}

/// RFC 3339 text in JSON, Unix milliseconds in the canonical encoding.
mod rfc3339_ms {
    use cbec_ledger::time;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time::format_rfc3339(*ms as i64))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let ms = time::parse_rfc3339(&text).map_err(serde::de::Error::custom)?;
        u64::try_from(ms).map_err(|_| serde::de::Error::custom("genesis time is before 1970"))
    }
}
