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

/// Turns transparent huge pages off for this process (and what it starts), where the
/// kernel has them. mimalloc asks for huge pages on the memory it maps, and hands freed
/// memory back to the kernel after a second; every later touch of such memory then
/// faulted in, and the kernel zeroed, a whole 2 MiB page. At saturation that zeroing was
/// 15 % of all the CPU on the machine (`clear_page_erms` under huge-page faults, from the
/// nodes' gossip buffers, and the bench client's B-tree maps), and with huge pages off
/// four nodes committed 6-20 % more transactions a second (11 % at the mean); with
/// 10,000,000 keys, whose tree huge pages map with fewer misses, about 4 % fewer (within
/// the noise) (docs/performance.md, "Huge pages"). Not the machine's setting: only this
/// process's, as `prctl(2)` sets it. A kernel without the call (or a sandbox refusing
/// it) leaves the setting as it was.
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!("transparent huge pages stay as the kernel sets them: {e}");
    }
}

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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The process's own flag, as the kernel reports it (`THP_enabled` in
    /// /proc/self/status, Linux 6.1 and later; `None` on older kernels).
    fn thp_enabled() -> Option<bool> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
        Some(line.trim_start_matches("THP_enabled:").trim() == "1")
    }

    #[test]
    fn a_node_turns_transparent_huge_pages_off_for_its_process() {
        let Some(before) = thp_enabled() else {
            eprintln!("this kernel does not report THP_enabled; nothing to check");
            return;
        };
        super::no_transparent_huge_pages();
        assert_eq!(thp_enabled(), Some(false), "was {before} before the call");
    }
}
