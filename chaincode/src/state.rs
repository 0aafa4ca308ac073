//! Key-value state as chaincode sees it: a read-only base, the writes of the block so
//! far, and the writes of the transaction being executed. A rejected transaction's
//! writes are dropped; an accepted one's become visible to the next transaction.
//!
//! All maps are `BTreeMap`: iteration order is the key order on every node.

use std::collections::BTreeMap;

/// Reads committed state (the node's RocksDB-backed tree, or memory in tests).
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
}

/// Pending writes: `None` deletes the key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// State held in memory: for tests, benchmarks and the genesis state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryState {
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryState {
    pub fn apply(&mut self, writes: &Writes) {
        for (key, value) in writes {
            match value {
                Some(v) => self.entries.insert(key.clone(), v.clone()),
                None => self.entries.remove(key),
            };
        }
    }
}

impl StateRead for MemoryState {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries.get(key).cloned()
    }
}

/// The base state with the block's writes on top.
#[derive(Debug)]
pub struct BlockOverlay<'a, S: StateRead + ?Sized> {
    base: &'a S,
    writes: Writes,
}

impl<'a, S: StateRead + ?Sized> BlockOverlay<'a, S> {
    pub fn new(base: &'a S) -> Self {
        BlockOverlay {
            base,
            writes: Writes::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(value) => value.clone(),
            None => self.base.get(key),
        }
    }

    /// Makes an accepted transaction's writes part of the block.
    pub fn commit(&mut self, tx_writes: Writes) {
        self.writes.extend(tx_writes);
    }

    pub fn into_writes(self) -> Writes {
        self.writes
    }
}
