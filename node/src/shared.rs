//! What the HTTP API, the network and the host's driver share: the store, the host's
//! queues, admission, status, the committed-block feed and metrics.

use std::sync::{Arc, RwLock};

use cbec_ledger::{Hash, PublicKey, Transaction, TxResult};
use tokio::sync::broadcast;

use crate::admission::Admission;
use crate::driver::HostHandle;
use crate::host::Committed;
use crate::metrics::Metrics;
use crate::store::Store;

/// Live status, updated by the driver.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub height: u64,
    pub round: u32,
    pub peers: usize,
    pub syncing: bool,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    pub last_block_hash: Option<Hash>,
    pub last_block_time_ms: u64,
}

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<Store>,
    pub chain_id: Hash,
    /// The genesis agencies and chain id: what proofs are built for.
    pub trust: cbec_ledger::proof::TrustRoot,
    pub agency: String,
    pub validator: PublicKey,
    pub host: HostHandle,
    pub admission: Admission,
    /// Who may use which routes.
    pub access: crate::access::Access,
    /// The bounded pool the API's disk reads run on, and recently read blocks.
    pub reads: crate::reads::Reads,
    pub blocks: crate::reads::BlockCache,
    /// Committed blocks as server-sent events, serialised once for all subscribers.
    pub events: crate::api::EventFeed,
    /// The height of each block as it is committed: the event stream and `?wait=true`
    /// read what they need from the store, so the feed holds no blocks.
    pub committed: broadcast::Sender<u64>,
    pub status: RwLock<Status>,
    pub metrics: Metrics,
}

impl Shared {
    pub fn status(&self) -> Status {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut status) = self.status.write() {
            f(&mut status);
        }
    }

    /// A block was committed: metrics, status and the feed.
    pub fn on_commit(&self, c: &Committed) {
        let m = &self.metrics;
        m.height.set(c.height as i64);
        m.committed_txs.inc_by(c.txs as u64);
        m.rejected_txs.inc_by(c.rejected as u64);
        m.commit_latency.observe(c.latency_ms as f64 / 1000.0);
        m.record_commit(c.txs as u64);
        self.update_status(|s| {
            s.height = c.height;
            s.last_block_hash = Some(c.hash);
            s.last_block_time_ms = c.time_ms;
        });
        let _ = self.committed.send(c.height);
    }
}

/// The result of a committed transaction, found through the store.
pub fn committed_result(
    store: &Store,
    hash: &Hash,
) -> anyhow::Result<Option<(u64, u32, Transaction, TxResult)>> {
    let Some((height, index)) = store.tx_location(hash)? else {
        return Ok(None);
    };
    let block = store
        .block(height)?
        .ok_or_else(|| anyhow::anyhow!("tx index names missing block {height}"))?;
    let i = index as usize;
    match (block.txs.get(i), block.results.get(i)) {
        (Some(tx), Some(result)) => Ok(Some((height, index, tx.clone(), result.clone()))),
        _ => Err(anyhow::anyhow!("tx index names a missing transaction")),
    }
}
