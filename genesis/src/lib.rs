//! The consortium's founding document and the files that go with it.
//!
//! What belongs here: the genesis document (agencies, validators, operator keys,
//! consensus parameters, enabled chaincodes), its validation with errors that name the
//! faulty field, the chain id, key files, node configuration files, and generation of a
//! local four-agency consortium.
//!
//! What does not: the meaning of chaincode parameters (the chaincode crate checks them,
//! passed in as a function), and running nodes.

#![forbid(unsafe_code)]

pub mod config;
pub mod document;
#[cfg(feature = "generate")]
pub mod generate;
// Key files carry Unix permissions (0600); the browser's verifier reads no key files.
#[cfg(unix)]
pub mod keyfile;
pub mod peer_id;
pub mod synthetic;

pub use config::{ApiSettings, ApiToken, ConfigError, LogFormat, NodeConfig, Scope, StoreSettings};
pub use document::{
    Agency, ConsensusParams, FieldError, Genesis, GenesisError, SyntheticState, AGENCIES,
};
#[cfg(feature = "generate")]
pub use generate::{generate_consortium, Consortium, ConsortiumOptions, GenerateError};
#[cfg(unix)]
pub use keyfile::{parse_key, read_key, write_key, KeyFileError};
