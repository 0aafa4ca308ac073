//! What the HTTP API and the driver share: the store, status, the committed-block feed
//! and metrics.

use std::sync::{Arc, RwLock};

use cbec_ledger::{Hash, PublicKey, Transaction, TxResult};
use tokio::sync::{broadcast, mpsc, oneshot};

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

/// Requests from the API to the driver.
#[derive(Debug)]
pub enum Command {
    /// Transactions through the stateless checks (done by the API, off this task).
    Submit {
        checked: Vec<crate::mempool::Checked>,
        reply: oneshot::Sender<Vec<Result<Hash, String>>>,
    },
    NextNonce {
        key: PublicKey,
        reply: oneshot::Sender<u64>,
    },
    IsPending {
        hash: Hash,
        reply: oneshot::Sender<bool>,
    },
}

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<Store>,
    pub chain_id: Hash,
    /// The genesis agencies and chain id: what proofs are built for.
    pub trust: cbec_ledger::proof::TrustRoot,
    pub agency: String,
    /// The genesis limit on one transaction's encoded size.
    pub tx_bytes_max: usize,
    pub validator: PublicKey,
    pub commands: mpsc::Sender<Command>,
    /// The height of each block as it is committed: the event stream and `?wait=true`
    /// read what they need from the store, so the feed holds no blocks.
    pub committed: broadcast::Sender<u64>,
    pub status: RwLock<Status>,
    pub metrics: Metrics,
    /// One signature-checking batch at a time per node (API and network share it), so
    /// admission never takes more than a core from consensus and execution.
    pub admission: Arc<tokio::sync::Semaphore>,
    /// The mempool's free room: signatures are checked only for what fits.
    pub room: crate::mempool::Room,
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
