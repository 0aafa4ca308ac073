//! Prometheus metrics: height, round, transactions, mempool, peers, commit latency.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use cbec_ledger::Hash;

use crate::admission::Rejection;
use crate::host::Origin;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub height: Gauge,
    pub round: Gauge,
    pub committed_txs: Counter,
    pub rejected_txs: Counter,
    pub mempool_txs: Gauge,
    pub block_txs_max: Gauge,
    pub peers: Gauge,
    pub tx_per_second: Gauge<f64, AtomicU64>,
    pub commit_latency: Histogram,
    pub equivocations: Counter,
    pub bad_peer_messages: Counter,
    pub dropped_net_commands: Counter,
    pub dropped_inbound: Counter,
    pub silent_peer_disconnects: Counter,
    pub refused_connections: Counter,
    pub event_subscribers: Gauge,
    pub dropped_subscribers: Counter,
    pub store_memtable_bytes: Gauge,
    pub store_block_cache_bytes: Gauge,
    pub store_table_reader_bytes: Gauge,
    pub store_compaction_pending_bytes: Gauge,
    pub store_l0_files: Gauge,
    pub store_tree_nodes: Gauge,
    pub store_tree_leaves: Gauge,
    pub store_tree_evicted: Gauge,
    pub store_read_cache_bytes: Gauge,
    pub store_read_cache_hits: Counter,
    pub store_read_cache_misses: Counter,
    pub store_read_absent: Counter,
    pub admission_signatures_checked: Counter,
    pub admission_stale_unchecked: Counter,
    pub admission_gap_unchecked: Counter,
    pub mempool_kept_hits: Counter,
    pub mempool_kept: Gauge,
    pub mempool_unchecked: Gauge,
    pub compact_filled: Counter,
    pub compact_waited: Counter,
    pub compact_fetched: Counter,
    /// By the refusal's code and the batch's origin (`client`, `peer`).
    pub admission_refused_after_check: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Commits of the last ten seconds, for `tx_per_second`.
    recent: Mutex<VecDeque<(Instant, u64)>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cbec");
        let height = Gauge::default();
        let round = Gauge::default();
        let committed_txs = Counter::default();
        let rejected_txs = Counter::default();
        let mempool_txs = Gauge::default();
        let block_txs_max = Gauge::default();
        let peers = Gauge::default();
        let tx_per_second = Gauge::<f64, AtomicU64>::default();
        let commit_latency =
            Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let equivocations = Counter::default();
        let store_memtable_bytes = Gauge::default();
        let store_block_cache_bytes = Gauge::default();
        let store_table_reader_bytes = Gauge::default();
        let store_compaction_pending_bytes = Gauge::default();
        let store_l0_files = Gauge::default();
        let store_tree_nodes = Gauge::default();
        let store_tree_leaves = Gauge::default();
        let store_tree_evicted = Gauge::default();
        let store_read_cache_bytes = Gauge::default();
        let store_read_cache_hits = Counter::default();
        let store_read_cache_misses = Counter::default();
        let store_read_absent = Counter::default();
        let admission_signatures_checked = Counter::default();
        let admission_stale_unchecked = Counter::default();
        let admission_gap_unchecked = Counter::default();
        let mempool_kept_hits = Counter::default();
        let mempool_kept = Gauge::default();
        let mempool_unchecked = Gauge::default();
        let compact_filled = Counter::default();
        let compact_waited = Counter::default();
        let compact_fetched = Counter::default();
        let admission_refused_after_check = Family::default();
        let bad_peer_messages = Counter::default();
        let dropped_net_commands = Counter::default();
        let dropped_inbound = Counter::default();
        let silent_peer_disconnects = Counter::default();
        let refused_connections = Counter::default();
        let event_subscribers = Gauge::default();
        let dropped_subscribers = Counter::default();
        registry.register("height", "Last committed height", height.clone());
        registry.register("round", "Current consensus round", round.clone());
        registry.register(
            "committed_txs",
            "Transactions committed (accepted or rejected by rules)",
            committed_txs.clone(),
        );
        registry.register(
            "rule_rejected_txs",
            "Committed transactions that a rule rejected",
            rejected_txs.clone(),
        );
        registry.register(
            "mempool_txs",
            "Transactions waiting in the mempool",
            mempool_txs.clone(),
        );
        registry.register(
            "block_txs_max",
            "Transactions this validator's next block may take (the genesis limit, halved after each failed round it builds in, doubled after each height decided in round 0)",
            block_txs_max.clone(),
        );
        registry.register("peers", "Connected validator peers", peers.clone());
        registry.register(
            "tx_per_second",
            "Committed transactions per second over the last blocks",
            tx_per_second.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from the start of a height to its commit",
            commit_latency.clone(),
        );
        registry.register(
            "equivocations",
            "Equivocation evidence seen",
            equivocations.clone(),
        );
        registry.register(
            "bad_peer_messages",
            "Undecodable or invalid messages from peers",
            bad_peer_messages.clone(),
        );
        registry.register(
            "dropped_net_commands",
            "Messages the host could not hand to a busy network task (resent by consensus)",
            dropped_net_commands.clone(),
        );
        registry.register(
            "dropped_inbound",
            "Messages from peers dropped because the host's queue was full",
            dropped_inbound.clone(),
        );
        registry.register(
            "silent_peer_disconnects",
            "Peers disconnected (and redialled) after sending no gossip for too long",
            silent_peer_disconnects.clone(),
        );
        registry.register(
            "api_refused_connections",
            "API connections closed at once: the connection cap was reached",
            refused_connections.clone(),
        );
        registry.register(
            "api_event_subscribers",
            "Open event-stream subscriptions",
            event_subscribers.clone(),
        );
        registry.register(
            "api_dropped_subscribers",
            "Event-stream subscribers dropped because they did not keep up",
            dropped_subscribers.clone(),
        );
        registry.register(
            "store_memtable_bytes",
            "RocksDB memtables, all column families",
            store_memtable_bytes.clone(),
        );
        registry.register(
            "store_block_cache_bytes",
            "RocksDB's shared block cache in use (bounded at 128 MiB)",
            store_block_cache_bytes.clone(),
        );
        registry.register(
            "store_table_reader_bytes",
            "RocksDB table readers outside the block cache",
            store_table_reader_bytes.clone(),
        );
        registry.register(
            "store_compaction_pending_bytes",
            "RocksDB's estimate of what its compactions still have to rewrite, all column families",
            store_compaction_pending_bytes.clone(),
        );
        registry.register(
            "store_l0_files",
            "RocksDB table files in level 0, all column families (writes slow down when they pile up)",
            store_l0_files.clone(),
        );
        registry.register(
            "store_tree_nodes",
            "State-tree nodes in memory (every kept version)",
            store_tree_nodes.clone(),
        );
        registry.register(
            "store_tree_leaves",
            "State-tree leaves in memory (every kept version)",
            store_tree_leaves.clone(),
        );
        registry.register(
            "store_tree_evicted",
            "State-tree subtrees evicted to disk, each a node keeping only its hash",
            store_tree_evicted.clone(),
        );
        registry.register(
            "store_read_cache_bytes",
            "State values kept from disk reads for the next read of the same key",
            store_read_cache_bytes.clone(),
        );
        registry.register(
            "store_read_cache_hits",
            "State reads answered by the read cache",
            store_read_cache_hits.clone(),
        );
        registry.register(
            "store_read_cache_misses",
            "State reads that went to disk",
            store_read_cache_misses.clone(),
        );
        registry.register(
            "store_read_absent",
            "State reads of keys the state tree lacks, answered without the disk",
            store_read_absent.clone(),
        );
        registry.register(
            "admission_signatures_checked",
            "Transactions whose signatures admission checked (from clients and peers)",
            admission_signatures_checked.clone(),
        );
        registry.register(
            "admission_stale_unchecked",
            "Transactions admission refused as already committed (a used nonce) before \
             checking their signatures",
            admission_stale_unchecked.clone(),
        );
        registry.register(
            "admission_gap_unchecked",
            "Peers' pushes admission refused, before checking their signatures, as behind \
             a gap in their sender's nonces that the mempool refused a push for",
            admission_gap_unchecked.clone(),
        );
        registry.register(
            "mempool_kept_hits",
            "Block transactions not checked again because admission checked them when the \
             mempool refused their push (past a gap in their sender's nonces, or full)",
            mempool_kept_hits.clone(),
        );
        registry.register(
            "mempool_kept",
            "Pushes the mempool refused after their checks, kept verified for their blocks",
            mempool_kept.clone(),
        );
        registry.register(
            "mempool_unchecked",
            "Peers' pushes the node had no room or time to check, kept unchecked for the \
             compact proposals that name them",
            mempool_unchecked.clone(),
        );
        registry.register(
            "compact_proposals_filled",
            "Peers' compact proposals whose blocks were put together from this node's mempool",
            compact_filled.clone(),
        );
        registry.register(
            "compact_proposals_waited",
            "Peers' compact proposals put together once pushes still on their way had \
             brought the transactions they lacked",
            compact_waited.clone(),
        );
        registry.register(
            "compact_proposals_fetched",
            "Peers' compact proposals whose blocks had to be asked of a peer (transactions \
             missing here, or held with other signatures)",
            compact_fetched.clone(),
        );
        registry.register(
            "admission_refused_after_check",
            "Transactions through admission's checks that the mempool then refused \
             (signature work for nothing), by the refusal's code and where the batch came from",
            admission_refused_after_check.clone(),
        );
        Metrics {
            registry,
            height,
            round,
            committed_txs,
            rejected_txs,
            mempool_txs,
            block_txs_max,
            peers,
            tx_per_second,
            commit_latency,
            equivocations,
            bad_peer_messages,
            dropped_net_commands,
            dropped_inbound,
            silent_peer_disconnects,
            refused_connections,
            event_subscribers,
            dropped_subscribers,
            store_memtable_bytes,
            store_block_cache_bytes,
            store_table_reader_bytes,
            store_compaction_pending_bytes,
            store_l0_files,
            store_tree_nodes,
            store_tree_leaves,
            store_tree_evicted,
            store_read_cache_bytes,
            store_read_cache_hits,
            store_read_cache_misses,
            store_read_absent,
            admission_signatures_checked,
            admission_stale_unchecked,
            admission_gap_unchecked,
            mempool_kept_hits,
            mempool_kept,
            mempool_unchecked,
            compact_filled,
            compact_waited,
            compact_fetched,
            admission_refused_after_check,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// The metrics, with the store's synced-write timings among them.
    pub fn with_disk(disk: &crate::store::DiskTimings) -> Metrics {
        let mut metrics = Metrics::new();
        let r = &mut metrics.registry;
        r.register(
            "store_block_write_seconds",
            "A committed block's synced write to disk",
            disk.block_write.clone(),
        );
        r.register(
            "store_signing_wait_seconds",
            "A vote's or proposal's wait for the block below it to reach the disk",
            disk.signing_wait.clone(),
        );
        r.register(
            "store_signing_write_seconds",
            "The signing state's synced write before a vote or proposal leaves",
            disk.signing_write.clone(),
        );
        metrics
    }

    /// Counts, by the refusal's code, the transactions of a batch that passed
    /// admission's checks (`passed`) and that the mempool then refused (`answers`).
    pub fn refused_after_check(
        &self,
        passed: &[bool],
        answers: &[Result<Hash, Rejection>],
        origin: Origin,
    ) {
        let origin = match origin {
            Origin::Client => "client",
            Origin::Peer => "peer",
        };
        for (_, answer) in passed.iter().zip(answers).filter(|(passed, _)| **passed) {
            if let Err(rejection) = answer {
                self.admission_refused_after_check
                    .get_or_create(&vec![("code", rejection.code()), ("origin", origin)])
                    .inc();
            }
        }
    }

    /// Counts a commit of `txs` transactions in the rolling ten-second rate.
    pub fn record_commit(&self, txs: u64) {
        let now = Instant::now();
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
        recent.push_back((now, txs));
        while recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(10))
        {
            recent.pop_front();
        }
        let window = recent
            .front()
            .map_or(1.0, |(t, _)| now.duration_since(*t).as_secs_f64().max(1.0));
        let total: u64 = recent.iter().map(|(_, n)| n).sum();
        self.tx_per_second.set(total as f64 / window);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only transactions that passed admission's checks and were then refused count,
    /// each under its refusal's code.
    #[test]
    fn refusals_after_the_checks_are_counted_by_code() {
        let metrics = Metrics::new();
        let gap = Rejection::NonceGap {
            found: 90,
            expected: 10,
        };
        metrics.refused_after_check(
            &[true, true, false, true, true],
            &[
                Err(gap.clone()),
                Ok(Hash([1; 32])),
                Err(Rejection::Full),
                Err(gap),
                Err(Rejection::Duplicate(Hash([2; 32]))),
            ],
            Origin::Peer,
        );
        metrics.refused_after_check(&[true], &[Err(Rejection::Full)], Origin::Client);
        let shown = metrics.render();
        for line in [
            "cbec_admission_refused_after_check_total{code=\"nonce_gap\",origin=\"peer\"} 2",
            "cbec_admission_refused_after_check_total{code=\"duplicate\",origin=\"peer\"} 1",
            "cbec_admission_refused_after_check_total{code=\"full\",origin=\"client\"} 1",
        ] {
            assert!(shown.contains(line), "{line} not in {shown}");
        }
        assert!(!shown.contains("code=\"full\",origin=\"peer\""), "{shown}");
    }
}
