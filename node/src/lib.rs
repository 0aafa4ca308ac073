//! The validator node: the host that performs what consensus and chaincode decide.
//!
//! What belongs here: the [`host`] (the deterministic stages between network and disk:
//! proposal keeper, executor, block sync, around the consensus core), [`admission`] and
//! the [`mempool`], the [`driver`] that runs the host on its own thread and performs its
//! effects, networking (libp2p, [`network`], with the [`wire`] edge), storage (RocksDB
//! or memory under the state tree, [`store`] over [`kv`]), the HTTP [`api`], auditor
//! [`proofs`], [`metrics`] and logs, and the Byzantine test [`seam`]. The `cbec-node`
//! binary and the `cbec` CLI's `node run` both start a node through [`run`].
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

pub mod access;
pub mod admission;
pub mod api;
pub mod driver;
pub mod host;
pub mod kv;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod openapi;
pub mod proofs;
pub mod reads;
pub mod run;
pub mod seam;
pub mod server;
pub mod shared;
pub mod signing_file;
pub mod sim;
pub mod store;
pub mod timeline;
pub mod tree;
pub mod wire;
