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
///
/// Reads of the base are kept for the rest of the block: the base does not change while
/// a block executes, and a block's transactions read the same few keys again and again
/// (each sender's filing, the filings its rules look up), which would otherwise each be
/// a RocksDB lookup.
#[derive(Debug)]
pub struct BlockOverlay<'a, S: StateRead + ?Sized> {
    base: &'a S,
    writes: Writes,
    /// What the base answered, by key (failed reads are not kept).
    reads: RefCell<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// The first failed read of the base: once set, the block is abandoned, whatever
    /// the rule that saw the error made of it.
    failure: RefCell<Option<StateError>>,
}

impl<'a, S: StateRead + ?Sized> BlockOverlay<'a, S> {
    pub fn new(base: &'a S) -> Self {
        BlockOverlay {
            base,
            writes: Writes::new(),
            reads: RefCell::new(BTreeMap::new()),
            failure: RefCell::new(None),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(value) = self.writes.get(key) {
            return Ok(value.clone());
        }
        if let Some(value) = self.reads.borrow().get(key) {
            return Ok(value.clone());
        }
        let value = self.base.get(key).inspect_err(|e| {
            self.failure.borrow_mut().get_or_insert_with(|| e.clone());
        })?;
        self.reads.borrow_mut().insert(key.to_vec(), value.clone());
        Ok(value)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A base that counts its reads and fails on one key.
    struct Counting {
        state: MemoryState,
        reads: Cell<usize>,
    }

    impl StateRead for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            self.reads.set(self.reads.get() + 1);
            if key == b"bad" {
                return Err(StateError("disk".into()));
            }
            self.state.get(key)
        }
    }

    fn base() -> Counting {
        let mut state = MemoryState::default();
        state.apply(&Writes::from([(b"k".to_vec(), Some(b"v0".to_vec()))]));
        Counting {
            state,
            reads: Cell::new(0),
        }
    }

    #[test]
    fn a_key_is_read_from_the_base_once_per_block_and_the_blocks_writes_win() {
        let base = base();
        let mut overlay = BlockOverlay::new(&base);
        for _ in 0..3 {
            assert_eq!(overlay.get(b"k").unwrap(), Some(b"v0".to_vec()));
            assert_eq!(overlay.get(b"absent").unwrap(), None);
        }
        assert_eq!(base.reads.get(), 2, "one base read per key");
        overlay.commit(Writes::from([(b"k".to_vec(), Some(b"v1".to_vec()))]));
        assert_eq!(overlay.get(b"k").unwrap(), Some(b"v1".to_vec()));
        overlay.commit(Writes::from([(b"k".to_vec(), None)]));
        assert_eq!(
            overlay.get(b"k").unwrap(),
            None,
            "a deletion hides the read"
        );
    }

    #[test]
    fn a_failed_read_is_not_kept_and_is_remembered_as_the_blocks_failure() {
        let base = base();
        let overlay = BlockOverlay::new(&base);
        assert!(overlay.get(b"bad").is_err());
        assert!(
            overlay.get(b"bad").is_err(),
            "asked again, not answered from memory"
        );
        assert_eq!(base.reads.get(), 2);
        assert_eq!(overlay.failure(), Some(StateError("disk".into())));
    }
}
