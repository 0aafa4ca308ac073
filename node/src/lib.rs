//! The validator node: the host that performs what consensus and chaincode decide.
//!
//! What belongs here: networking (libp2p, [`network`]), storage (RocksDB and the state
//! tree, [`store`]), the [`mempool`], the [`driver`] that runs consensus and executes
//! blocks, block sync, the HTTP [`api`], auditor [`proofs`], [`metrics`] and logs. The `cbec-node` binary
//! and the `cbec` CLI's `node run` both start a node through [`run`].
//!
//! What does not: protocol rules (in `cbec-consensus`), filing rules (in
//! `cbec-chaincode`), and the data model (in `cbec-ledger`).

#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc, for Rust's allocations and (its `override`
/// feature) RocksDB's too, in every binary that runs a node: under load glibc's arenas
/// kept freed block buffers and cache blocks, and a node's resident memory grew by
/// about 1 MiB/s past every bound its caches have (heaptrack: 310 MiB live at 555 MiB
/// resident). With mimalloc it levels off.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod driver;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod proofs;
pub mod run;
pub mod shared;
pub mod store;
