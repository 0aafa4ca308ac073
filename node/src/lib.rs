//! The validator node: the host that performs what consensus and chaincode decide.
//!
//! What belongs here: networking (libp2p), storage (RocksDB), the mempool, the
//! executor that applies decided blocks, block sync, the HTTP API, metrics and logs.
//! The `cbec-node` binary and the `cbec` CLI's `node run` both start a node from this
//! library.
//!
//! What does not: protocol rules (in `cbec-consensus`), filing rules (in
//! `cbec-chaincode`), and the data model (in `cbec-ledger`).

#![forbid(unsafe_code)]

pub mod mempool;
