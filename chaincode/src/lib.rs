//! The chaincode engine and the pilot zone's built-in rules.
//!
//! What belongs here: the `Chaincode` trait, the registry built from genesis, the
//! state-access context with its per-transaction overlay, deterministic block
//! execution, and one module per rule family of DOMAIN.md (governance, enterprise
//! filing, identity codes, goods traceability, customs, forex, tax).
//!
//! What does not: consensus, storage engines, networking, clocks. Chaincode sees only
//! its context: the caller, the block height and time, and a view of state.

#![forbid(unsafe_code)]

pub mod catalog;
