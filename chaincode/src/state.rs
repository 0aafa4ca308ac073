//! Key-value state as chaincode sees it: a read-only base, the writes of the block so
//! far, and the writes of the transaction being executed. A rejected transaction's
//! writes are dropped; an accepted one's become visible to the next transaction.
//!
//! All maps are `BTreeMap`: iteration order is the key order on every node.
//!
//! A read of committed state can fail (a disk error). Such a failure is never a rule's
//! outcome: it would be recorded on this node only, so the nodes would disagree. The
//! overlay remembers the first failure, the engine abandons the block on it
//! ([`crate::ExecError::Storage`]), and the node stops.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// A read of committed state that failed: storage, not the ledger, is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state read failed: {0}")]
pub struct StateError(pub String);

/// Reads committed state (the node's RocksDB-backed tree, or memory in tests).
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
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
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.entries.get(key).cloned())
    }
}

/// The base state with the block's writes on top.
#[derive(Debug)]
pub struct BlockOverlay<'a, S: StateRead + ?Sized> {
    base: &'a S,
    writes: Writes,
    /// The first failed read of the base: once set, the block is abandoned, whatever
    /// the rule that saw the error made of it.
    failure: RefCell<Option<StateError>>,
}

impl<'a, S: StateRead + ?Sized> BlockOverlay<'a, S> {
    pub fn new(base: &'a S) -> Self {
        BlockOverlay {
            base,
            writes: Writes::new(),
            failure: RefCell::new(None),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key).inspect_err(|e| {
                self.failure.borrow_mut().get_or_insert_with(|| e.clone());
            }),
        }
    }

    /// The first read of the base that failed, if any.
    pub fn failure(&self) -> Option<StateError> {
        self.failure.borrow().clone()
    }

    /// Makes an accepted transaction's writes part of the block.
    pub fn commit(&mut self, tx_writes: Writes) {
        self.writes.extend(tx_writes);
    }

    pub fn into_writes(self) -> Writes {
        self.writes
    }
}
