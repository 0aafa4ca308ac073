//! Reads the API serves from disk (blocks, transactions, proofs), kept from starving
//! consensus: they run at most [`ReadLimits::concurrency`] at a time on blocking
//! threads, a bounded number wait, and the rest are refused at once (503, retry later).
//! Recently read blocks are kept decoded with their Merkle trees, so many proofs of one
//! block, or of the events of one good, build each tree once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use cbec_ledger::{block, Block, MerkleTree};

use crate::store::{Store, StoreError};

/// Bounds on the API's disk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Reads running at once (each on a blocking thread).
    pub concurrency: usize,
    /// Reads waiting for a place; more are refused.
    pub queue: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        // On a two-core validator, one core for reads at most: consensus and execution
        // keep the other.
        ReadLimits {
            concurrency: 1,
            queue: 64,
        }
    }
}

/// The read was refused: too many are waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many reads are waiting; retry later")]
pub struct Busy;

/// The pool the API's reads run on.
#[derive(Debug, Clone)]
pub struct Reads {
    running: Arc<tokio::sync::Semaphore>,
    waiting: Arc<tokio::sync::Semaphore>,
}

impl Reads {
    pub fn new(limits: ReadLimits) -> Reads {
        Reads {
            running: Arc::new(tokio::sync::Semaphore::new(limits.concurrency.max(1))),
            waiting: Arc::new(tokio::sync::Semaphore::new(
                limits.queue + limits.concurrency.max(1),
            )),
        }
    }

    /// Runs `read` on a blocking thread when a place is free; `Busy` if too many wait.
    pub async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let queued = self.waiting.clone().try_acquire_owned().map_err(|_| Busy)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        let result = tokio::task::spawn_blocking(move || {
            let result = read();
            drop((running, queued));
            result
        })
        .await;
        // A panic in a read is a bug in it; the caller answers 503 rather than lose
        // the node.
        result.map_err(|_| Busy)
    }
}

/// A decoded block with the Merkle trees of its transactions and results.
#[derive(Debug)]
pub struct TreedBlock {
    pub block: Arc<Block>,
    pub txs: MerkleTree,
    pub results: MerkleTree,
}

/// Blocks the cache keeps (a block of 10,000 transactions decodes to a few MB).
pub const BLOCKS_CACHED: usize = 8;

/// Recently read blocks, decoded and with their trees (committed blocks never change).
#[derive(Debug, Default)]
pub struct BlockCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    blocks: BTreeMap<u64, Arc<TreedBlock>>,
    order: VecDeque<u64>,
}

impl BlockCache {
    /// The committed block at `height` with its trees, from the cache or the store.
    pub fn get(&self, store: &Store, height: u64) -> Result<Option<Arc<TreedBlock>>, StoreError> {
        if let Some(found) = self.lock().blocks.get(&height) {
            return Ok(Some(found.clone()));
        }
        let Some(block) = store.block_shared(height)? else {
            return Ok(None);
        };
        let suite = store.suite();
        let treed = Arc::new(TreedBlock {
            txs: MerkleTree::from_leaves(suite, &block::tx_leaves(&block.txs)),
            results: MerkleTree::from_leaves(suite, &block::result_leaves(&block.results)),
            block,
        });
        let mut inner = self.lock();
        if inner.blocks.insert(height, treed.clone()).is_none() {
            inner.order.push_back(height);
        }
        while inner.order.len() > BLOCKS_CACHED {
            if let Some(old) = inner.order.pop_front() {
                inner.blocks.remove(&old);
            }
        }
        Ok(Some(treed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // Only copies of committed blocks live here: a panic elsewhere while it was
        // locked cannot have left it wrong.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_beyond_the_queue_are_refused_at_once() {
        let reads = Reads::new(ReadLimits {
            concurrency: 1,
            queue: 1,
        });
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let first = {
            let reads = reads.clone();
            tokio::spawn(async move {
                reads
                    .run(move || {
                        let _ = started_tx.send(());
                        let _ = wait.recv();
                    })
                    .await
            })
        };
        started.await.expect("the first read runs");
        let second = {
            let reads = reads.clone();
            tokio::spawn(async move { reads.run(|| 2).await })
        };
        // The second holds the one waiting place once it is queued.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while reads.waiting.available_permits() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the second read queued"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(
            reads.run(|| 3).await,
            Err(Busy),
            "one running, one waiting: full"
        );
        release.send(()).expect("release");
        assert_eq!(first.await.expect("join"), Ok(()));
        assert_eq!(second.await.expect("join"), Ok(2));
        assert_eq!(reads.run(|| 4).await, Ok(4));
    }
}
