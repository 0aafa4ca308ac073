//! Storage: RocksDB with one column family per kind, and the state's authenticated
//! tree ([`crate::tree`]): its leaves on disk, its upper levels and recently changed
//! subtrees in memory; its root goes in each block header.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `blocks` | height (u64 BE) | [`Block`] |
//! | `certs` | height | [`CommitCertificate`] of that block |
//! | `tx_index` | tx hash | (height, index) |
//! | `state` | state key | latest value (what chaincode reads) |
//! | `leaves` | key hash | the latest value's hash: the tree's leaves, which it reads back for the subtrees it evicted and is rebuilt from at open |
//! | `consensus` | `signing` | [`SigningState`], unless [`StoreOptions::signing_file`] keeps it in a file of its own |
//! | `meta` | `chain_id`, `format`, `height` | the chain this store belongs to, its layout, last height on disk |
//! | `meta` | `validators_hash` | the last block's validator set |
//! | `meta` | `set-change/<height>` | the set changed after that height: the state proofs of the watched keys (the agencies' validator keys) at it |
//! | `meta` | `archive_from` | an archive's first height |
//! | `archive` | `r` ‖ height | an archive's tree root at that height ([`tree::Stored`]) |
//! | `archive` | `n` ‖ depth ‖ path ‖ height | a tree node as that height made it ([`tree::encode_node`]) |
//! | `archive` | `v` ‖ value hash | a state value the tree holds a leaf of |
//!
//! **Applying** a decided block ([`Store::apply`]) makes it the chain's head at once, in
//! memory: the tree's new version is committed, and the block, its certificate and its
//! state writes are readable (the next height executes on them) while they are written
//! to disk. **Persisting** writes block, certificate, transaction index, state values
//! and the new height in **one** write batch, synced: after a crash the store holds
//! the block entirely or not at all, and a node that lost an applied block fetches it
//! from its peers (it was certified). The transaction index is read from disk only, so
//! a client told its transaction committed is told so once it is durable. With
//! [`StoreOptions::background`] a thread persists, at most [`PENDING_MAX`] blocks
//! behind (the next height's consensus overlaps the write of this one); without it,
//! [`Store::apply`] persists before it returns (the node simulation, tests).
//!
//! The tree's leaves are written (the `leaves` family, in the block's batch), its
//! nodes are not: at open the tree is rebuilt from the `state` family and must give
//! the last header's state root, so a store whose state was changed under it is
//! refused (leaves read back are checked against the node they replace); then
//! it evicts its cold subtrees, and keeps evicting them as blocks are applied, so its
//! memory does not grow with the state ([`crate::tree`]). The tree keeps the last
//! [`StoreOptions::versions_kept`] versions readable for state proofs; the proofs a
//! verifier needs at validator-set changes are written when the change is applied, so
//! they never depend on old versions.
//!
//! **An archive** ([`StoreOptions::archive`]) proves every height from where it started
//! (genesis, or the height at which a store was first opened as one): it writes each
//! height's tree nodes, root and values in the `archive` family, in the same batch as
//! the block, and proves a height the tree no longer keeps by walking them (the node
//! at a path is the last one written at or before the height asked). A proof so made is
//! checked against that height's header before it is given out. Turning the archive
//! off forgets where it started (its entries stay until the directory is rebuilt);
//! turning it on again starts it anew.
//!
//! The column families live in a [`Kv`] backend: RocksDB on disk ([`Store::open`]), or
//! memory for the node simulation ([`Store::in_memory`]); everything above is shared.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};

use cbec_chaincode::{StateError, StateRead, Writes};
use cbec_consensus::SigningState;
use cbec_ledger::sparse::{self, SparseProof};
use cbec_ledger::{codec, Block, CommitCertificate, Hash, Header, Suite};
use prometheus_client::metrics::histogram::Histogram;

use crate::kv::{Batch, Cf, Entries, Kv, KvBacklog, KvError, MemKv, RocksKv};
use crate::signing_file::{SigningFile, SigningFileError};
use crate::tree::{self, Change, LeafSource, Tree, TreeError, TreeSize, Update};

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] KvError),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("this data directory belongs to chain {found}, not {expected}")]
    WrongChain { expected: Hash, found: Hash },
    #[error(
        "this data directory has store format {found}; this node reads format {FORMAT} \
         (move the directory away and let the node sync the chain from its peers)"
    )]
    Format { found: u32 },
    #[error("state tree: {0}")]
    Tree(#[from] TreeError),
    #[error(transparent)]
    SigningFile(#[from] SigningFileError),
    #[error("writing block {height} failed: {reason}")]
    Persist { height: u64, reason: String },
    /// An earlier write failed: nothing more is applied.
    #[error("{0}")]
    Stopped(String),
}

type Result<T> = std::result::Result<T, StoreError>;

/// The layout this code writes: 2 keeps the tree in memory, its leaves in the `leaves`
/// family when it evicts (1 kept a `jmt` on disk).
pub const FORMAT: u32 = 2;

/// `meta` key: the height through which the `leaves` family is whole (written only
/// while the tree evicts: [`StoreOptions::tree_resident_keys`]).
const LEAVES_AT: &str = "leaves_height";

/// Applied blocks waiting for the disk at most; applying another waits for room.
pub const PENDING_MAX: usize = 2;

/// A synced block write (or a wait for one) this long is logged as a warning: the
/// node's signatures wait on it, so a slow disk shows up as a stalled chain.
pub const SLOW_DISK: std::time::Duration = std::time::Duration::from_secs(1);

/// How a store keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Tree versions (heights) kept readable for state proofs, the latest included.
    pub versions_kept: usize,
    /// Keys whose proofs are written with each validator-set change (the agencies'
    /// `gov/validator/<agency>` keys), so proofs across a change never need an old
    /// version.
    pub watched: Vec<Vec<u8>>,
    /// Persist applied blocks on a thread of their own (see the module comment).
    pub background: bool,
    /// Keep every height's tree for state proofs, from genesis or from the first open
    /// with this set (see the module comment).
    pub archive: bool,
    /// The chain's crypto suite: the state tree's hash.
    pub suite: Suite,
    /// Keep the consensus signing state in this file ([`crate::signing_file`]) instead
    /// of the `consensus` column family: its writes then overwrite in place and wait
    /// for no block write. A state the store kept in the family is read until the
    /// first write makes the file.
    pub signing_file: Option<PathBuf>,
    /// Keep at most about this many state keys' leaves of the state tree in memory:
    /// past it, the subtrees changed longest ago are evicted and read back from the
    /// `leaves` family when an update or a proof reaches them (see [`crate::tree`]).
    /// `None`: the whole tree stays in memory.
    pub tree_resident_keys: Option<usize>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            versions_kept: 16,
            watched: Vec::new(),
            background: false,
            archive: false,
            suite: Suite::default(),
            signing_file: None,
            tree_resident_keys: None,
        }
    }
}

/// The state tree's root for a block, computed on top of the latest version and not
/// yet committed. Dropped without being committed, it frees what it made.
pub struct PreparedState {
    pub root: Hash,
    version: u64,
    update: Option<Update>,
    /// The writes as the tree took them: the leaves the block's batch writes.
    changes: Vec<Change>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PreparedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedState")
            .field("root", &self.root)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Drop for PreparedState {
    fn drop(&mut self) {
        if let Some(update) = self.update.take() {
            write(&self.inner.live).tree.discard(update);
        }
    }
}

/// A block applied to the store: the chain's head in memory, on disk once persisted.
#[derive(Debug)]
pub struct Applied {
    pub block: Arc<Block>,
    pub certificate: CommitCertificate,
    pub writes: Writes,
}

/// The tree and the writes of each kept version (newest last): what state proofs read.
#[derive(Debug)]
struct Live {
    tree: Tree,
    recent: VecDeque<(u64, Arc<Applied>)>,
}

/// The chain as applied: the head, and what is not on disk yet (oldest first).
#[derive(Debug, Default)]
struct Chain {
    applied: u64,
    validators_hash: Option<Hash>,
    pending: VecDeque<Arc<Applied>>,
}

type Waiter = Box<dyn FnOnce() + Send>;

/// What the store's users and its persisting thread share.
struct Inner {
    kv: Arc<dyn Kv>,
    // Lock order: `live`, then `chain`, then `waiters`.
    live: RwLock<Live>,
    chain: RwLock<Chain>,
    /// Run once their height is on disk.
    waiters: Mutex<BTreeMap<u64, Vec<Waiter>>>,
    /// Signalled (with `waiters`) when `persisted` moves or persisting fails.
    progress: Condvar,
    /// The last height on disk; changed only with `waiters` held.
    persisted: AtomicU64,
    /// Why persisting stopped, if it did.
    failed: Mutex<Option<String>>,
    options: StoreOptions,
    disk: DiskTimings,
    /// The signing state's own file, and the latest state in it, when
    /// [`StoreOptions::signing_file`] names one.
    signing: Option<Mutex<(SigningFile, Option<Vec<u8>>)>>,
    /// Signing states written since the store was opened.
    signing_writes: AtomicU64,
    /// State values read from disk, for the next read of the same key.
    // Lock order: after `chain`.
    read_cache: Mutex<ReadCache>,
}

/// The state values last read from disk, kept for the next read of the same key (or
/// the knowledge that it has none). The permission check reads the same few keys for
/// every transaction (four a transaction, at admission and again in execution), and a
/// RocksDB read costs more as the store grows: it looks in the memtables, then in
/// every level's filter (7.5-8 % of a node's CPU at 1,000 tx/s, most of it that
/// check).
///
/// Coherent with the chain: a block's writes are read from the pending list until the
/// block leaves it, and it leaves only after its values are on disk and in this cache
/// (entries of the keys it wrote are updated; readers look at the pending list first).
/// A read that missed the cache inserts what it read from disk only if no block's
/// values reached the cache meanwhile (`epoch` counts them), so a value read before a
/// newer one arrived is never kept. Bounded: past [`READ_CACHE_BYTES`] it starts again empty. Lookups only:
/// nothing iterates it, so its order never shows.
#[derive(Debug, Default)]
struct ReadCache {
    values: std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
    epoch: u64,
    hits: u64,
    misses: u64,
    /// Reads the state tree answered "absent" without the disk.
    absent: u64,
}

/// The read cache's budget: keys, values and a bookkeeping allowance an entry.
const READ_CACHE_BYTES: usize = 16 << 20;

impl ReadCache {
    fn entry_bytes(key: &[u8], value: &Option<Vec<u8>>) -> usize {
        key.len() + value.as_ref().map_or(0, Vec::len) + 64
    }

    fn insert(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let bytes = Self::entry_bytes(key, &value);
        if self.bytes + bytes > READ_CACHE_BYTES {
            self.values.clear();
            self.bytes = 0;
        }
        self.bytes += bytes;
        if let Some(old) = self.values.insert(key.to_vec(), value) {
            self.bytes -= Self::entry_bytes(key, &old);
        }
    }

    /// A block's writes reached the disk: the entries of keys it wrote take its values.
    /// In place (no new key; the budget is checked at the next insert), looking up
    /// whichever side is smaller in the other: at saturation a block writes tens of
    /// thousands of keys while the cache holds the few filings its rules read.
    fn written(&mut self, writes: &Writes) {
        let mut update = |key: &[u8], cached: &mut Option<Vec<u8>>, value: &Option<Vec<u8>>| {
            let old = Self::entry_bytes(key, cached);
            *cached = value.clone();
            self.bytes = self.bytes - old + Self::entry_bytes(key, cached);
        };
        if self.values.len() < writes.len() {
            for (key, cached) in self.values.iter_mut() {
                if let Some(value) = writes.get(key) {
                    update(key, cached, value);
                }
            }
        } else {
            for (key, value) in writes {
                if let Some(cached) = self.values.get_mut(key.as_slice()) {
                    update(key, cached, value);
                }
            }
        }
        self.epoch += 1;
    }

    fn clear(&mut self) {
        self.values.clear();
        self.bytes = 0;
        self.epoch += 1;
    }
}

/// How long the synced writes a height waits for took, for `/metrics`: a vote or
/// proposal leaves only after its signing state is on disk, and that only after the
/// block below it is. A disk that stalls for a tenth of a second stalls every node
/// that shares it, and its votes with it; the warnings start at a second.
#[derive(Debug, Clone)]
pub struct DiskTimings {
    /// A block's synced write (block, certificate, index, state values, height).
    pub block_write: Histogram,
    /// A signature's wait for the block below it to reach the disk.
    pub signing_wait: Histogram,
    /// The signing state's synced write.
    pub signing_write: Histogram,
}

impl Default for DiskTimings {
    fn default() -> Self {
        let buckets = || {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ])
        };
        DiskTimings {
            block_write: buckets(),
            signing_wait: buckets(),
            signing_write: buckets(),
        }
    }
}

// No lock here is held across anything that can panic half-way through a change, so a
// poisoned lock is still usable.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// `lock` to read, unless a writer holds it (or waits for it) now: for shortcuts that
/// have a way round that needs no lock, so a reader on another thread never waits for
/// a block's tree update to take one.
fn try_read<T>(lock: &RwLock<T>) -> Option<std::sync::RwLockReadGuard<'_, T>> {
    match lock.try_read() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A block for the persisting thread, with the meta entries decided when applied.
struct Job {
    applied: Arc<Applied>,
    meta: Vec<(Vec<u8>, Vec<u8>)>,
    changes: Vec<Change>,
}

/// The tree's evicted subtrees, read back from the `leaves` family.
#[derive(Debug)]
struct KvLeaves(Arc<dyn Kv>);

impl LeafSource for KvLeaves {
    fn leaves_under(&self, path: &Hash) -> std::result::Result<Vec<(Hash, Hash)>, String> {
        let (from, until) = leaves_bounds(path);
        let entries = self
            .0
            .range(Cf::Leaves, &from, &until)
            .map_err(|e| e.to_string())?;
        decode_leaves(entries)
    }

    fn leaves_under_many(
        &self,
        paths: &[Hash],
    ) -> std::result::Result<Vec<Vec<(Hash, Hash)>>, String> {
        let bounds: Vec<_> = paths.iter().map(leaves_bounds).collect();
        let found = self
            .0
            .ranges(Cf::Leaves, &bounds)
            .map_err(|e| e.to_string())?;
        found.into_iter().map(decode_leaves).collect()
    }
}

fn decode_leaves(entries: Entries) -> std::result::Result<Vec<(Hash, Hash)>, String> {
    entries
        .into_iter()
        .map(|(key, value)| match (hash_of(&key), hash_of(&value)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(format!(
                "leaves entry {} is not two 32-byte hashes",
                hex::encode(&key)
            )),
        })
        .collect()
}

fn hash_of(bytes: &[u8]) -> Option<Hash> {
    Some(Hash(bytes.try_into().ok()?))
}

/// The keys of the `leaves` family under `path`'s first [`tree::EVICT_DEPTH`] nibbles:
/// from the prefix, until the next one (exclusive).
fn leaves_bounds(path: &Hash) -> (Vec<u8>, Vec<u8>) {
    let from = path.0[..tree::EVICT_DEPTH.div_ceil(2)].to_vec();
    let mut until = from.clone();
    // One more at the prefix's last nibble, carried.
    let mut carry: u16 = if tree::EVICT_DEPTH % 2 == 1 {
        0x10
    } else {
        0x01
    };
    for byte in until.iter_mut().rev() {
        let sum = u16::from(*byte) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
        if carry == 0 {
            break;
        }
    }
    if carry != 0 {
        // The last prefix: past every 32-byte key.
        until = vec![0xff; 33];
    }
    (from, until)
}

/// Puts the leaves of `changes` in `batch`.
fn put_leaves(batch: &mut Batch, changes: &[Change]) {
    for (key_hash, value_hash) in changes {
        match value_hash {
            Some(v) => batch.put(Cf::Leaves, key_hash.0, v.0),
            None => batch.delete(Cf::Leaves, key_hash.0),
        }
    }
}

pub struct Store {
    inner: Arc<Inner>,
    /// To the persisting thread (with [`StoreOptions::background`]).
    jobs: Mutex<Option<mpsc::SyncSender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kv", &self.inner.kv)
            .finish_non_exhaustive()
    }
}

/// What the store holds in memory, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreMemory {
    pub memtables: u64,
    pub block_cache: u64,
    pub table_readers: u64,
    pub tree: TreeSize,
    /// The state read cache: its bytes, and its hits and misses since the store opened.
    pub read_cache: ReadCacheSize,
    /// What RocksDB has still to flush and compact, all column families together: a
    /// backlog that grows under a steady load is compaction falling behind the writes.
    pub backlog: KvBacklog,
}

/// What the state read cache holds and has done, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCacheSize {
    pub bytes: u64,
    pub hits: u64,
    /// Reads that went to disk.
    pub misses: u64,
    /// Reads of keys the state tree showed absent, answered without the disk.
    pub absent: u64,
}

/// `meta` keys `set-change/<height BE>`: the validator set changed after that height.
const SET_CHANGE_PREFIX: &[u8] = b"set-change/";

fn height_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// `meta` key of an archive's first height.
const ARCHIVE_FROM: &str = "archive_from";

fn archive_root_key(height: u64) -> Vec<u8> {
    let mut key = vec![b'r'];
    key.extend_from_slice(&height_key(height));
    key
}

/// Bytes before the height in [`archive_node_key`]: the node's place.
const NODE_PLACE: usize = 1 + 1 + 32;

fn archive_node_key(depth: usize, path: &Hash, height: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(NODE_PLACE + 8);
    key.push(b'n');
    key.push(depth as u8); // at most 64 nibbles
    key.extend_from_slice(&path.0);
    key.extend_from_slice(&height_key(height));
    key
}

fn archive_value_key(value_hash: &Hash) -> Vec<u8> {
    let mut key = vec![b'v'];
    key.extend_from_slice(&value_hash.0);
    key
}

/// A batch that writes itself out every [`ArchiveWriter::BATCH`] entries (an archive
/// started on a large state holds millions).
struct ArchiveWriter<'a> {
    kv: &'a dyn Kv,
    batch: Batch,
    failed: Option<KvError>,
}

impl ArchiveWriter<'_> {
    const BATCH: usize = 20_000;

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.put(Cf::Archive, key, value);
        if self.batch.len() >= Self::BATCH && self.failed.is_none() {
            if let Err(e) = self.kv.write(std::mem::take(&mut self.batch), false) {
                self.failed = Some(e);
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        Ok(self.kv.write(self.batch, false)?)
    }
}

fn set_change_key(height: u64) -> Vec<u8> {
    let mut key = SET_CHANGE_PREFIX.to_vec();
    key.extend_from_slice(&height_key(height));
    key
}

/// The proofs kept at a set change: each watched key's value and proof.
pub type KeptProofs = Vec<(Vec<u8>, Option<Vec<u8>>, SparseProof)>;

impl Inner {
    fn get<T: bincode::Decode<()>>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>> {
        match self.kv.get(cf, key)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| corrupt(format!("{} entry {}: {e}", cf.name(), hex::encode(key)))),
        }
    }

    fn meta_get<T: bincode::Decode<()>>(&self, key: &str) -> Result<Option<T>> {
        self.get(Cf::Meta, key.as_bytes())
    }

    /// The latest value of a state key: the newest applied block that wrote it, else
    /// the read cache, else absent if the state tree lacks it, else the disk.
    fn state_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let epoch = {
            let chain = read(&self.chain);
            for applied in chain.pending.iter().rev() {
                if let Some(value) = applied.writes.get(key) {
                    return Ok(value.clone());
                }
            }
            let mut cache = lock(&self.read_cache);
            if let Some(value) = cache.values.get(key).cloned() {
                cache.hits += 1;
                return Ok(value);
            }
            cache.epoch
        };
        // A key the tree's latest version lacks is absent: no disk read (the tree is at
        // least as new as the pending list just read, and a block it has that the list
        // had not yet would only make the answer newer). Not cached: the tree answers
        // every time, and a key a block creates needs no entry to forget. While a block
        // updates the tree (on the host thread, which also executes), a reader on
        // another thread (admission, the API) asks the disk instead of waiting.
        if let Some(live) = try_read(&self.live) {
            let key_hash = sparse::key_hash(self.options.suite, key);
            if live.tree.holds_latest(&key_hash) == Some(false) {
                drop(live);
                lock(&self.read_cache).absent += 1;
                return Ok(None);
            }
        }
        let value = self.kv.get(Cf::State, key)?;
        let mut cache = lock(&self.read_cache);
        cache.misses += 1;
        if cache.epoch == epoch {
            cache.insert(key, value.clone());
        }
        Ok(value)
    }

    /// An applied block not on disk yet.
    fn pending(&self, height: u64) -> Option<Arc<Applied>> {
        read(&self.chain)
            .pending
            .iter()
            .find(|a| a.block.height() == height)
            .cloned()
    }

    /// A block (with its certificate) as the disk holds it, or, not on disk yet, as
    /// applied: what [`Store::check`] reads, never a copy the disk may differ from.
    fn stored(&self, height: u64) -> Result<Option<(Block, Option<CommitCertificate>)>> {
        if let Some(applied) = self.pending(height) {
            return Ok(Some((
                Block::clone(&applied.block),
                Some(applied.certificate.clone()),
            )));
        }
        let Some(block) = self.get::<Block>(Cf::Blocks, &height_key(height))? else {
            return Ok(None);
        };
        Ok(Some((block, self.get(Cf::Certs, &height_key(height))?)))
    }

    /// An applied block still in memory: not on disk yet, or of a kept tree version
    /// (the last few blocks, which the next block's checks read: its parent's header
    /// and certificate, not decoded from disk again).
    /// While a block updates the tree, a reader on another thread takes the disk's
    /// copy rather than wait (see [`try_read`]).
    fn in_memory(&self, height: u64) -> Option<Arc<Applied>> {
        self.pending(height).or_else(|| {
            try_read(&self.live)?
                .recent
                .iter()
                .find(|(h, _)| *h == height)
                .map(|(_, applied)| applied.clone())
        })
    }

    /// Writes one applied block durably, then lets its waiters run.
    fn persist(&self, job: Job) -> Result<()> {
        let Job {
            applied,
            meta,
            changes,
        } = job;
        let block = &applied.block;
        let height = block.height();
        // The state's writes, the index's and a few more (a large block's are tens of
        // thousands: grown by doubling, they were copied over and over).
        let mut batch = Batch::with_capacity(applied.writes.len() + block.results.len() + 8);
        for (key, value) in &applied.writes {
            match value {
                Some(v) => batch.put(Cf::State, key.as_slice(), v.as_slice()),
                None => batch.delete(Cf::State, key.as_slice()),
            }
        }
        if self.evicting() {
            put_leaves(&mut batch, &changes);
            batch.put(Cf::Meta, LEAVES_AT.as_bytes(), codec::encode(&height));
        }
        if self.options.archive {
            self.archive_height(&applied, &changes, &mut batch)?;
        }
        batch.put(Cf::Blocks, height_key(height), codec::encode(block));
        batch.put(
            Cf::Certs,
            height_key(height),
            codec::encode(&applied.certificate),
        );
        // Each result names its transaction's hash (the body check holds them equal).
        for (index, result) in block.results.iter().enumerate() {
            batch.put(
                Cf::TxIndex,
                result.tx_hash.0,
                codec::encode(&(height, index as u32)),
            );
        }
        for (key, value) in meta {
            batch.put(Cf::Meta, key, value);
        }
        batch.put(Cf::Meta, &b"height"[..], codec::encode(&height));
        let started = std::time::Instant::now();
        self.kv
            .write(batch, true)
            .map_err(|e| StoreError::Persist {
                height,
                reason: e.to_string(),
            })?;
        let took = started.elapsed();
        self.disk.block_write.observe(took.as_secs_f64());
        if took >= SLOW_DISK {
            // Signing at the next height waits for this write: a slow disk stalls the node.
            tracing::warn!(
                height,
                took_ms = took.as_millis() as u64,
                "writing a block to disk was slow"
            );
        }
        // On disk, and in the read cache, before it leaves the pending list, so a
        // reader finds it in one of them. (The cache may take its values while the
        // block is still pending: readers look at the pending list first.)
        lock(&self.read_cache).written(&applied.writes);
        {
            let mut chain = write(&self.chain);
            if chain
                .pending
                .front()
                .is_some_and(|a| a.block.height() == height)
            {
                chain.pending.pop_front();
            }
        }
        let ready = {
            let mut waiters = lock(&self.waiters);
            self.persisted.store(height, Ordering::SeqCst);
            let later = waiters.split_off(&(height + 1));
            self.progress.notify_all();
            std::mem::replace(&mut *waiters, later)
        };
        for waiter in ready.into_values().flatten() {
            waiter();
        }
        Ok(())
    }

    /// Adds an applied block's archive entries to its batch: the nodes its height made,
    /// its root and the values it wrote. Its version is still in the tree: applying
    /// waits while [`PENDING_MAX`] blocks wait for the disk, and more are kept.
    fn archive_height(
        &self,
        applied: &Applied,
        changes: &[Change],
        batch: &mut Batch,
    ) -> Result<()> {
        let height = applied.block.height();
        let root =
            read(&self.live)
                .tree
                .archive_changes(height, changes, &mut |depth, path, node| {
                    batch.put(
                        Cf::Archive,
                        archive_node_key(depth, &path, height),
                        tree::encode_node(&node),
                    )
                })?;
        let mut bytes = Vec::new();
        root.encode_into(&mut bytes);
        batch.put(Cf::Archive, archive_root_key(height), bytes);
        for value in applied.writes.values().flatten() {
            batch.put(
                Cf::Archive,
                archive_value_key(&sparse::value_hash(self.options.suite, value)),
                value.as_slice(),
            );
        }
        Ok(())
    }

    /// Writes the whole tree at `height` (the latest version) and every state value
    /// to the archive, then marks the archive as starting there.
    fn start_archive(&self, height: u64) -> Result<()> {
        tracing::info!("starting the archive at height {height}: writing its whole state");
        let mut out = ArchiveWriter {
            kv: self.kv.as_ref(),
            batch: Batch::default(),
            failed: None,
        };
        let root = read(&self.live)
            .tree
            .archive_all(height, &mut |depth, path, node| {
                out.put(
                    archive_node_key(depth, &path, height),
                    tree::encode_node(&node),
                )
            })?;
        let mut bytes = Vec::new();
        root.encode_into(&mut bytes);
        out.put(archive_root_key(height), bytes);
        self.kv.each(Cf::State, &mut |_, value| {
            out.put(
                archive_value_key(&sparse::value_hash(self.options.suite, value)),
                value.to_vec(),
            );
            Ok(())
        })?;
        out.finish()?;
        let mut batch = Batch::default();
        batch.put(Cf::Meta, ARCHIVE_FROM.as_bytes(), codec::encode(&height));
        Ok(self.kv.write(batch, true)?)
    }

    /// The first height an archive proves, if this store is one.
    fn archive_from(&self) -> Result<Option<u64>> {
        if !self.options.archive {
            return Ok(None);
        }
        self.meta_get(ARCHIVE_FROM)
    }

    fn fail(&self, e: &StoreError) {
        tracing::error!("storage failed: {e}");
        lock(&self.failed).get_or_insert_with(|| e.to_string());
        let _waiters = lock(&self.waiters);
        self.progress.notify_all();
    }

    /// Waits until `height` (or, if less is applied, the last applied block) is on
    /// disk, or persisting failed.
    fn wait_persisted(&self, height: u64) -> Result<()> {
        let height = height.min(read(&self.chain).applied);
        let mut waiters = lock(&self.waiters);
        let started = std::time::Instant::now();
        let mut warned = false;
        while self.persisted.load(Ordering::SeqCst) < height {
            if let Some(e) = self.failure() {
                return Err(e);
            }
            waiters = self
                .progress
                .wait_timeout(waiters, SLOW_DISK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if !warned && started.elapsed() >= SLOW_DISK {
                warned = true;
                tracing::warn!(
                    height,
                    on_disk = self.persisted.load(Ordering::SeqCst),
                    "still waiting for a block to reach the disk before signing"
                );
            }
        }
        if warned {
            tracing::warn!(
                height,
                waited_ms = started.elapsed().as_millis() as u64,
                "the block reached the disk"
            );
        }
        Ok(())
    }

    /// Whether the state tree evicts cold subtrees (and the `leaves` family is kept).
    fn evicting(&self) -> bool {
        self.options.tree_resident_keys.is_some()
    }

    fn failure(&self) -> Option<StoreError> {
        lock(&self.failed).clone().map(StoreError::Stopped)
    }
}

impl Store {
    /// Opens (or creates) the store of `chain_id` in `path` (RocksDB).
    /// The chain's crypto suite, as the store was opened with.
    pub fn suite(&self) -> Suite {
        self.inner.options.suite
    }

    pub fn open(path: &Path, chain_id: &Hash) -> Result<Store> {
        Store::open_with(path, chain_id, StoreOptions::default())
    }

    pub fn open_with(path: &Path, chain_id: &Hash, options: StoreOptions) -> Result<Store> {
        Store::with_kv_options(Box::new(RocksKv::open(path)?), chain_id, options)
    }

    /// A store in memory, for the node simulation: the same logic over ordered maps.
    pub fn in_memory(chain_id: &Hash) -> Result<Store> {
        Store::with_kv(Box::new(MemKv::default()), chain_id)
    }

    /// The store of `chain_id` over any backend.
    pub fn with_kv(kv: Box<dyn Kv>, chain_id: &Hash) -> Result<Store> {
        Store::with_kv_options(kv, chain_id, StoreOptions::default())
    }

    /// The store of `chain_id` over any backend; an existing store's tree is rebuilt
    /// from its state (see the module comment).
    pub fn with_kv_options(
        kv: Box<dyn Kv>,
        chain_id: &Hash,
        mut options: StoreOptions,
    ) -> Result<Store> {
        // Set-change proofs are made while applying the block after the change, and
        // versions stay readable while their blocks wait for the disk.
        options.versions_kept = options.versions_kept.max(PENDING_MAX + 2);
        let background = options.background;
        let signing = match &options.signing_file {
            Some(path) => Some(Mutex::new(SigningFile::open(path)?)),
            None => None,
        };
        let kv: Arc<dyn Kv> = Arc::from(kv);
        let mut tree = Tree::new(0, options.versions_kept, options.suite);
        if let Some(resident) = options.tree_resident_keys {
            tree.set_source(Arc::new(KvLeaves(kv.clone())), resident);
        }
        let inner = Arc::new(Inner {
            kv,
            live: RwLock::new(Live {
                tree,
                recent: VecDeque::new(),
            }),
            chain: RwLock::new(Chain::default()),
            waiters: Mutex::new(BTreeMap::new()),
            progress: Condvar::new(),
            persisted: AtomicU64::new(0),
            failed: Mutex::new(None),
            options,
            disk: DiskTimings::default(),
            signing,
            signing_writes: AtomicU64::new(0),
            read_cache: Mutex::new(ReadCache::default()),
        });
        let store = Store {
            inner,
            jobs: Mutex::new(None),
            thread: Mutex::new(None),
        };
        match store.inner.meta_get::<Hash>("chain_id")? {
            Some(found) if found != *chain_id => {
                return Err(StoreError::WrongChain {
                    expected: *chain_id,
                    found,
                })
            }
            Some(_) => {
                let format = store.inner.meta_get::<u32>("format")?.unwrap_or(1);
                if format != FORMAT {
                    return Err(StoreError::Format { found: format });
                }
            }
            None => {
                let mut batch = Batch::default();
                batch.put(Cf::Meta, &b"chain_id"[..], codec::encode(chain_id));
                batch.put(Cf::Meta, &b"format"[..], codec::encode(&FORMAT));
                store.write_synced(batch)?;
            }
        }
        if store.is_initialized()? {
            let height: u64 = store.inner.meta_get("height")?.unwrap_or(0);
            let leaves_at: Option<u64> = store.inner.meta_get(LEAVES_AT)?;
            if store.inner.evicting() && leaves_at != Some(height) {
                store.write_leaves(height)?;
            } else if !store.inner.evicting() && leaves_at.is_some() {
                // Blocks applied from now on do not write them: they go stale.
                let mut batch = Batch::default();
                batch.delete(Cf::Meta, LEAVES_AT.as_bytes());
                store.write_synced(batch)?;
            }
            let tree = store.rebuild_tree(height)?;
            write(&store.inner.live).tree = tree;
            let mut chain = write(&store.inner.chain);
            chain.applied = height;
            chain.validators_hash = store.inner.meta_get("validators_hash")?;
            store.inner.persisted.store(height, Ordering::SeqCst);
            drop(chain);
            let from: Option<u64> = store.inner.meta_get(ARCHIVE_FROM)?;
            match (store.inner.options.archive, from) {
                (true, None) => store.inner.start_archive(height)?,
                (false, Some(from)) => {
                    tracing::warn!(
                        "this store was an archive from height {from}; it is not one now \
                         (its archived heights stay on disk, unused)"
                    );
                    let mut batch = Batch::default();
                    batch.delete(Cf::Meta, ARCHIVE_FROM.as_bytes());
                    store.write_synced(batch)?;
                }
                _ => {}
            }
        }
        if background {
            store.start_persisting()?;
        }
        Ok(store)
    }

    fn start_persisting(&self) -> Result<()> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(PENDING_MAX.saturating_sub(1));
        let inner = self.inner.clone();
        let thread = std::thread::Builder::new()
            .name("persist".into())
            .spawn(move || {
                for job in queue {
                    if let Err(e) = inner.persist(job) {
                        inner.fail(&e);
                        return;
                    }
                }
            })
            .map_err(|e| corrupt(format!("cannot start the persisting thread: {e}")))?;
        *lock(&self.jobs) = Some(jobs);
        *lock(&self.thread) = Some(thread);
        Ok(())
    }

    /// Writes every applied block to disk and stops the persisting thread (at
    /// shutdown; a store dropped without it loses only applied blocks, which peers
    /// have).
    pub fn close(&self) -> Result<()> {
        drop(lock(&self.jobs).take());
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
        match self.inner.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The tree at `version` (the height on disk) from the latest values in the
    /// `state` column family (so state changed under the store is refused at open, as
    /// its root differs), its subtrees at the eviction depth evicted as it is built.
    fn rebuild_tree(&self, version: u64) -> Result<Tree> {
        let mut leaves = Vec::new();
        self.inner.kv.each(Cf::State, &mut |key, value| {
            leaves.push((
                sparse::key_hash(self.inner.options.suite, key),
                sparse::value_hash(self.inner.options.suite, value),
            ));
            Ok(())
        })?;
        self.tree_of(version, leaves)
    }

    /// The tree of `leaves` at `version`: whole in memory, or, with
    /// [`StoreOptions::tree_resident_keys`], built with its subtrees at the eviction
    /// depth evicted (the leaves must be in the `leaves` family), so a large state is
    /// never wholly in memory; updates bring back what they touch.
    fn tree_of(&self, version: u64, leaves: Vec<(Hash, Hash)>) -> Result<Tree> {
        let options = &self.inner.options;
        Ok(match options.tree_resident_keys {
            Some(resident) => Tree::from_leaves_on_disk(
                version,
                options.versions_kept,
                options.suite,
                leaves,
                Arc::new(KvLeaves(self.inner.kv.clone())),
                resident,
            )?,
            None => Tree::from_leaves(version, options.versions_kept, options.suite, leaves)?,
        })
    }

    /// Writes the `leaves` family anew from the `state` family (at `height`, the height
    /// on disk), for a store whose tree starts to evict: one never written, or written
    /// by a node that since ran without them. Interrupted, it starts over at the next
    /// open (the mark that they are whole is written last).
    fn write_leaves(&self, height: u64) -> Result<()> {
        tracing::info!("writing the state tree's leaves (the tree evicts cold subtrees)");
        const BATCH: usize = 50_000;
        let suite = self.inner.options.suite;
        let mut batch = Batch::default();
        let kv = self.inner.kv.as_ref();
        kv.each(Cf::Leaves, &mut |key, _| {
            batch.delete(Cf::Leaves, key);
            if batch.len() >= BATCH {
                kv.write(std::mem::take(&mut batch), false)?;
            }
            Ok(())
        })?;
        kv.each(Cf::State, &mut |key, value| {
            batch.put(
                Cf::Leaves,
                sparse::key_hash(suite, key).0,
                sparse::value_hash(suite, value).0,
            );
            if batch.len() >= BATCH {
                kv.write(std::mem::take(&mut batch), false)?;
            }
            Ok(())
        })?;
        batch.put(Cf::Meta, LEAVES_AT.as_bytes(), codec::encode(&height));
        self.write_synced(batch)?;
        Ok(self.inner.kv.compact(Cf::Leaves)?)
    }

    /// Writes every memtable to disk (for tools and tests that inspect the files).
    pub fn flush(&self) -> Result<()> {
        Ok(self.inner.kv.flush()?)
    }

    /// Reads the whole store back from its files, checking every block's checksum: a
    /// flipped byte anywhere is an error naming the column family and the file.
    pub fn verify_files(&self) -> Result<crate::kv::KvVerified> {
        self.inner.kv.verify().map_err(|e| corrupt(e.0))
    }

    /// Memory the backend reports for its memtables, block cache and table readers
    /// (outside the cache), and what the state tree holds.
    pub fn memory(&self) -> StoreMemory {
        let kv = self.inner.kv.memory();
        StoreMemory {
            memtables: kv.memtables,
            block_cache: kv.block_cache,
            table_readers: kv.table_readers,
            tree: read(&self.inner.live).tree.size(),
            read_cache: {
                let cache = lock(&self.inner.read_cache);
                ReadCacheSize {
                    bytes: cache.bytes as u64,
                    hits: cache.hits,
                    misses: cache.misses,
                    absent: cache.absent,
                }
            },
            backlog: Cf::ALL
                .iter()
                .map(|cf| self.inner.kv.backlog(*cf))
                .fold(KvBacklog::default(), |all, one| all + one),
        }
    }

    fn write_synced(&self, batch: Batch) -> Result<()> {
        Ok(self.inner.kv.write(batch, true)?)
    }

    /// The chain's height: the last applied block (0 before the first: genesis state
    /// only). It may not be on disk yet: see [`Store::persisted_height`].
    pub fn height(&self) -> Result<u64> {
        Ok(read(&self.inner.chain).applied)
    }

    /// The last height on disk.
    pub fn persisted_height(&self) -> u64 {
        self.inner.persisted.load(Ordering::SeqCst)
    }

    /// Whether the genesis state was written.
    pub fn is_initialized(&self) -> Result<bool> {
        Ok(self.inner.meta_get::<bool>("genesis")?.unwrap_or(false))
    }

    /// Writes the genesis state as tree version 0.
    pub fn init_genesis(&self, writes: &Writes) -> Result<Hash> {
        self.init_genesis_with(writes, &mut std::iter::empty())
    }

    /// Writes the genesis state, and `extra` entries (a synthetic state of millions of
    /// keys, streamed: written in batches as it comes), as tree version 0. Only the
    /// last write, which marks the genesis done, is synced: a store interrupted before
    /// it starts over. Extra entries are then compacted into the state's last level.
    pub fn init_genesis_with(
        &self,
        writes: &Writes,
        extra: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<Hash> {
        const BATCH: usize = 50_000;
        let mut leaves: Vec<(Hash, Hash)> = writes
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    sparse::key_hash(self.inner.options.suite, k),
                    sparse::value_hash(self.inner.options.suite, v.as_ref()?),
                ))
            })
            .collect();
        // Written with the mark that the genesis is done (the extra ones as they come),
        // if the tree evicts.
        let evicting = self.inner.evicting();
        let from_writes = leaves.len();
        let genesis_leaves = if evicting { from_writes } else { 0 };
        let mut batch = Batch::default();
        for (key, value) in extra {
            let leaf = (
                sparse::key_hash(self.inner.options.suite, &key),
                sparse::value_hash(self.inner.options.suite, &value),
            );
            leaves.push(leaf);
            if evicting {
                batch.put(Cf::Leaves, leaf.0 .0, leaf.1 .0);
            }
            batch.put(Cf::State, key, value);
            if batch.len() >= BATCH {
                self.inner.kv.write(std::mem::take(&mut batch), false)?;
            }
        }
        self.inner.kv.write(batch, false)?;
        let extra_written = leaves.len() - from_writes;
        let mut batch = Batch::default();
        for (key_hash, value_hash) in leaves.iter().take(genesis_leaves) {
            batch.put(Cf::Leaves, key_hash.0, value_hash.0);
        }
        if evicting {
            batch.put(Cf::Meta, LEAVES_AT.as_bytes(), codec::encode(&0u64));
        }
        // Written before the tree is used: in `batch` below, or already.
        let tree = self.tree_of(0, leaves)?;
        let root = tree.root_hash(0)?;
        for (key, value) in writes {
            if let Some(v) = value {
                batch.put(Cf::State, key.as_slice(), v.as_slice());
            }
        }
        batch.put(Cf::Meta, &b"genesis"[..], codec::encode(&true));
        batch.put(Cf::Meta, &b"genesis_root"[..], codec::encode(&root));
        batch.put(Cf::Meta, &b"height"[..], codec::encode(&0u64));
        {
            let mut live = write(&self.inner.live);
            self.write_synced(batch)?;
            live.tree = tree;
            live.recent.clear();
        }
        if evicting {
            self.inner.kv.compact(Cf::Leaves)?;
        }
        // A bulk write leaves its entries in memtables, level 0 and a compaction
        // backlog of the whole state, which RocksDB then works through while the chain
        // runs: with 10^7 synthetic keys, a gigabyte a node, still being rewritten in
        // the bench's window. A state grown block by block has no such backlog, so
        // the synthetic one is settled into its last level before the chain starts.
        if extra_written > 0 {
            let started = std::time::Instant::now();
            self.inner.kv.compact(Cf::State)?;
            tracing::info!(
                keys = extra_written,
                ms = started.elapsed().as_millis() as u64,
                "compacted the synthetic state"
            );
        }
        // Genesis wrote the state under any read before it.
        lock(&self.inner.read_cache).clear();
        if self.inner.options.archive {
            self.inner.start_archive(0)?;
        }
        Ok(root)
    }

    /// The state root after genesis.
    pub fn genesis_root(&self) -> Result<Hash> {
        self.inner
            .meta_get("genesis_root")?
            .ok_or_else(|| corrupt("genesis root missing"))
    }

    /// A block of the chain (applied, on disk or not yet).
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        if let Some(applied) = self.inner.in_memory(height) {
            return Ok(Some(Block::clone(&applied.block)));
        }
        self.inner.get(Cf::Blocks, &height_key(height))
    }

    /// [`Store::block`], shared: a block still in memory is not copied.
    pub fn block_shared(&self, height: u64) -> Result<Option<Arc<Block>>> {
        if let Some(applied) = self.inner.in_memory(height) {
            return Ok(Some(applied.block.clone()));
        }
        Ok(self
            .inner
            .get::<Block>(Cf::Blocks, &height_key(height))?
            .map(Arc::new))
    }

    pub fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>> {
        if let Some(applied) = self.inner.in_memory(height) {
            return Ok(Some(applied.certificate.clone()));
        }
        self.inner.get(Cf::Certs, &height_key(height))
    }

    pub fn header(&self, height: u64) -> Result<Option<Header>> {
        if let Some(applied) = self.inner.in_memory(height) {
            return Ok(Some(applied.block.header.clone()));
        }
        Ok(self.block(height)?.map(|b| b.header))
    }

    /// Where a committed transaction is: (height, index). Only durable blocks are
    /// indexed: a client told "committed" is told once it is on disk.
    pub fn tx_location(&self, hash: &Hash) -> Result<Option<(u64, u32)>> {
        self.inner.get(Cf::TxIndex, &hash.0)
    }

    /// The latest value of a state key (of the last applied block).
    pub fn state_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.state_value(key)
    }

    /// The persisted consensus signing state: its file's latest, or, before the file's
    /// first write (or without one), the `consensus` column family's.
    pub fn signing_state(&self) -> Result<Option<SigningState>> {
        if let Some(signing) = &self.inner.signing {
            let signing = lock(signing);
            if let Some(bytes) = &signing.1 {
                return codec::decode(bytes).map(Some).map_err(|e| {
                    corrupt(format!(
                        "signing state in {}: {e}",
                        signing.0.path().display()
                    ))
                });
            }
        }
        self.inner.get(Cf::Consensus, b"signing")
    }

    /// Makes the signing state durable (fsync) before the caller sends what it signed.
    /// A signature at height h waits until block h - 1 is on disk: were every
    /// validator to crash at once, votes at h without the block below them on any
    /// disk could never be signed again, and the chain would stop for good.
    /// (Executing the next block still overlaps the write of this one.)
    pub fn save_signing_state(&self, state: &SigningState) -> Result<()> {
        let started = std::time::Instant::now();
        self.inner.wait_persisted(state.height.saturating_sub(1))?;
        let disk = &self.inner.disk;
        disk.signing_wait.observe(started.elapsed().as_secs_f64());
        let started = std::time::Instant::now();
        let encoded = codec::encode(state);
        match &self.inner.signing {
            Some(signing) => {
                let mut signing = lock(signing);
                signing.0.write(&encoded)?;
                signing.1 = Some(encoded);
            }
            None => {
                let mut batch = Batch::default();
                batch.put(Cf::Consensus, &b"signing"[..], encoded);
                self.write_synced(batch)?;
            }
        }
        disk.signing_write.observe(started.elapsed().as_secs_f64());
        self.inner.signing_writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many signing states this store has written since it was opened.
    pub fn signing_writes(&self) -> u64 {
        self.inner.signing_writes.load(Ordering::Relaxed)
    }

    /// The synced writes' timings (shared: they keep counting).
    pub fn disk_timings(&self) -> DiskTimings {
        self.inner.disk.clone()
    }

    /// Computes the state root after `writes` at tree version `version` (the next
    /// height), writing nothing: the proposer fills its header with it; validators
    /// compare. Key and value hashing happen before the tree is locked.
    pub fn prepare_state(&self, version: u64, writes: &Writes) -> Result<PreparedState> {
        let changes = tree::changes(
            self.inner.options.suite,
            writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
        );
        // Evicted subtrees the update reaches are read back here, with no lock held,
        // all in one pass; the update then finds them read.
        let wanted = read(&self.inner.live).tree.evicted_under(&changes);
        let update = if wanted.is_empty() {
            write(&self.inner.live).tree.prepare(version, &changes)?
        } else {
            let fetched = KvLeaves(self.inner.kv.clone())
                .leaves_under_many(&wanted)
                .map_err(|reason| {
                    StoreError::Tree(TreeError::Leaves {
                        path: format!("{} subtrees read ahead", wanted.len()),
                        reason,
                    })
                })?;
            let fetched = wanted.into_iter().zip(fetched).collect();
            write(&self.inner.live)
                .tree
                .prepare_fetched(version, &changes, fetched)?
        };
        Ok(PreparedState {
            root: update.root_hash(),
            version,
            update: Some(update),
            changes,
            inner: self.inner.clone(),
        })
    }

    /// Applies a committed block (decided or certified, and executed here) with its
    /// certificate and its execution's writes: the chain's head at once, durable
    /// before this returns or, in the background, soon after (see the module
    /// comment). A failed write stops every later apply with its reason.
    pub fn apply(&self, block: crate::host::executor::CommittedBlock) -> Result<Arc<Applied>> {
        let (block, certificate, writes, prepared) = block.into_parts();
        self.apply_parts(block, certificate, writes, prepared)
    }

    /// The parts of [`Store::apply`], for tests and benchmarks that build blocks by
    /// hand (its checks hold them to the same order and root).
    pub fn apply_parts(
        &self,
        block: impl Into<Arc<Block>>,
        certificate: CommitCertificate,
        writes: Writes,
        mut prepared: PreparedState,
    ) -> Result<Arc<Applied>> {
        let block: Arc<Block> = block.into();
        if let Some(e) = self.inner.failure() {
            return Err(e);
        }
        let height = block.height();
        assert_eq!(height, self.height()? + 1, "blocks are applied in order");
        assert_eq!(
            prepared.version, height,
            "the state prepared for this height"
        );
        assert_eq!(
            prepared.root, block.header.state_root,
            "state root checked before apply"
        );
        let update = prepared
            .update
            .take()
            .ok_or_else(|| corrupt(format!("the state of block {height} was applied already")))?;
        let mut meta = Vec::new();
        // The set for height h + 1 follows from the state after h: when a block's set
        // differs from its parent's, the parent is where a change took effect. Proofs
        // carry that height's certified state of the watched keys: kept now, while
        // the parent's version is the latest.
        let last_set = read(&self.inner.chain).validators_hash;
        if last_set.is_some_and(|h| h != block.header.validators_hash) {
            let proofs = self.watched_proofs(height - 1)?;
            meta.push((set_change_key(height - 1), codec::encode(&proofs)));
        }
        meta.push((
            b"validators_hash".to_vec(),
            codec::encode(&block.header.validators_hash),
        ));
        let validators_hash = block.header.validators_hash;
        let applied = Arc::new(Applied {
            block,
            certificate,
            writes,
        });
        // Readers see the tree's version and the state values change together.
        {
            let mut live = write(&self.inner.live);
            live.tree.commit(update)?;
            live.tree
                .evict_cold(self.inner.persisted.load(Ordering::SeqCst));
            live.recent.push_back((height, applied.clone()));
            let kept = live.tree.keep();
            while live.recent.len() > kept {
                live.recent.pop_front();
            }
            let mut chain = write(&self.inner.chain);
            chain.applied = height;
            chain.validators_hash = Some(validators_hash);
            chain.pending.push_back(applied.clone());
        }
        let job = Job {
            applied: applied.clone(),
            meta,
            changes: std::mem::take(&mut prepared.changes),
        };
        let sender = lock(&self.jobs).clone();
        match sender {
            // Waits while the thread is PENDING_MAX behind: the disk sets the pace.
            Some(jobs) => {
                if jobs.send(job).is_err() {
                    return Err(self.inner.failure().unwrap_or_else(|| StoreError::Persist {
                        height,
                        reason: "the persisting thread stopped".into(),
                    }));
                }
            }
            None => {
                if let Err(e) = self.inner.persist(job) {
                    self.inner.fail(&e);
                    return Err(e);
                }
            }
        }
        Ok(applied)
    }

    /// Runs `f` once `height` is on disk (at once if it is).
    pub fn when_persisted(&self, height: u64, f: impl FnOnce() + Send + 'static) {
        let mut waiters = lock(&self.inner.waiters);
        if self.inner.persisted.load(Ordering::SeqCst) >= height {
            drop(waiters);
            f();
        } else {
            waiters.entry(height).or_default().push(Box::new(f));
        }
    }

    fn watched_proofs(&self, height: u64) -> Result<KeptProofs> {
        self.inner
            .options
            .watched
            .iter()
            .map(|key| {
                let (value, proof) = self.sparse_proof(key, height)?;
                Ok((key.clone(), value, proof))
            })
            .collect()
    }

    /// Heights after which the validator set changed, up to `before` (exclusive).
    pub fn set_changes_before(&self, before: u64) -> Result<Vec<u64>> {
        const PAGE: usize = 256;
        let mut heights = Vec::new();
        let mut from = SET_CHANGE_PREFIX.to_vec();
        loop {
            let page = self.inner.kv.scan(Cf::Meta, &from, PAGE)?;
            let full = page.len() == PAGE;
            for (key, _) in page {
                let Some(rest) = key.strip_prefix(SET_CHANGE_PREFIX) else {
                    return Ok(heights);
                };
                let bytes: [u8; 8] = rest
                    .try_into()
                    .map_err(|_| corrupt("set-change key is not a height"))?;
                let height = u64::from_be_bytes(bytes);
                if height >= before {
                    return Ok(heights);
                }
                heights.push(height);
                from = key;
                from.push(0); // the next key after this one
            }
            if !full {
                return Ok(heights);
            }
        }
    }

    /// The proofs of the watched keys kept when the set changed after `height`.
    pub fn set_change_proofs(&self, height: u64) -> Result<KeptProofs> {
        self.inner
            .get(Cf::Meta, &set_change_key(height))?
            .ok_or_else(|| corrupt(format!("no proofs kept for the set change after {height}")))
    }

    /// Checks the last `depth` blocks: hash chain, certificates naming them, and that
    /// the tree's root at the last height (rebuilt from the stored state when the
    /// store was opened) is the last header's state root. A node refuses to run on a
    /// store that fails this.
    pub fn check(&self, depth: u64) -> Result<()> {
        let height = self.height()?;
        if height == 0 {
            return Ok(());
        }
        let from = height.saturating_sub(depth).max(1);
        // What the disk holds (blocks not on disk yet as applied), never the copies
        // of recent blocks the store keeps in memory.
        let mut previous: Option<Header> = if from > 1 {
            self.inner.stored(from - 1)?.map(|(b, _)| b.header)
        } else {
            None
        };
        for h in from..=height {
            let (block, cert) = self
                .inner
                .stored(h)?
                .ok_or_else(|| corrupt(format!("block {h} is missing")))?;
            if block.height() != h {
                return Err(corrupt(format!(
                    "block stored at {h} says height {}",
                    block.height()
                )));
            }
            block
                .check_body(self.inner.options.suite)
                .map_err(|e| corrupt(format!("block {h}: {e}")))?;
            if let Some(p) = &previous {
                if block.header.previous != p.hash(self.inner.options.suite) {
                    return Err(corrupt(format!(
                        "block {h} does not follow block {}",
                        h - 1
                    )));
                }
            }
            let cert = cert.ok_or_else(|| corrupt(format!("certificate {h} is missing")))?;
            if cert.block_hash != block.hash(self.inner.options.suite) || cert.height != h {
                return Err(corrupt(format!("certificate {h} names another block")));
            }
            previous = Some(block.header);
        }
        let last = previous.ok_or_else(|| corrupt("no last block"))?;
        let root = self.state_root(height)?;
        if root != last.state_root {
            return Err(corrupt(format!(
                "state root {root} (rebuilt from the stored state) differs from header \
                 {height}'s {}",
                last.state_root
            )));
        }
        Ok(())
    }

    /// The value of `key` at `height` (a kept version) with its proof against that
    /// height's state root, in the form auditors verify.
    pub fn sparse_proof(&self, key: &[u8], height: u64) -> Result<(Option<Vec<u8>>, SparseProof)> {
        match self.kept_proof(key, height) {
            Err(StoreError::Tree(TreeError::NotKept { .. }))
                if height <= self.persisted_height()
                    && self
                        .inner
                        .archive_from()?
                        .is_some_and(|from| from <= height) =>
            {
                self.archive_proof(key, height)
            }
            proof => proof,
        }
    }

    /// [`Store::sparse_proof`] from the tree's kept versions.
    fn kept_proof(&self, key: &[u8], height: u64) -> Result<(Option<Vec<u8>>, SparseProof)> {
        let key_hash = sparse::key_hash(self.inner.options.suite, key);
        let live = read(&self.inner.live);
        let proof = live.tree.proof(height, &key_hash)?;
        let present = proof.leaf.as_ref().filter(|l| l.key_hash == key_hash);
        let Some(leaf) = present else {
            return Ok((None, proof));
        };
        let value = self.value_at(&live, key, height)?.ok_or_else(|| {
            corrupt(format!(
                "key {} is in the tree but has no value",
                hex::encode(key)
            ))
        })?;
        if sparse::value_hash(self.inner.options.suite, &value) != leaf.value_hash {
            return Err(corrupt(format!(
                "the stored value of {} differs from the tree's at {height}",
                hex::encode(key)
            )));
        }
        Ok((Some(value), proof))
    }

    /// The value of `key` at `height` and its proof, from the archive; checked against
    /// the height's state root, so a damaged archive is an error, never a wrong proof.
    fn archive_proof(&self, key: &[u8], height: u64) -> Result<(Option<Vec<u8>>, SparseProof)> {
        let key_hash = sparse::key_hash(self.inner.options.suite, key);
        let kv = self.inner.kv.as_ref();
        let root = kv
            .get(Cf::Archive, &archive_root_key(height))?
            .ok_or_else(|| corrupt(format!("the archive has no root at height {height}")))?;
        let root = match tree::Stored::decode_from(&root) {
            Some((root, [])) => root,
            _ => {
                return Err(corrupt(format!(
                    "the archive's root at {height} is unreadable"
                )))
            }
        };
        let proof = tree::prove(self.inner.options.suite, root, &key_hash, |depth| {
            let wanted = archive_node_key(depth, &tree::node_path(&key_hash, depth), height);
            let missing = || {
                corrupt(format!(
                    "the archive has no node at depth {depth} of key {} at height {height}",
                    hex::encode(key)
                ))
            };
            let (found, bytes) = kv.floor(Cf::Archive, &wanted)?.ok_or_else(missing)?;
            if found.len() != wanted.len() || found[..NODE_PLACE] != wanted[..NODE_PLACE] {
                return Err(missing());
            }
            tree::decode_node(&bytes).ok_or_else(|| {
                corrupt(format!(
                    "the archive's node {} is unreadable",
                    hex::encode(&found)
                ))
            })
        })?;
        let value = match proof.leaf.as_ref().filter(|l| l.key_hash == key_hash) {
            None => None,
            Some(leaf) => Some(
                kv.get(Cf::Archive, &archive_value_key(&leaf.value_hash))?
                    .ok_or_else(|| {
                        corrupt(format!(
                            "the archive lacks the value of {} at height {height}",
                            hex::encode(key)
                        ))
                    })?,
            ),
        };
        let state_root = if height == 0 {
            self.genesis_root()?
        } else {
            self.header(height)?
                .ok_or_else(|| corrupt(format!("block {height} is missing")))?
                .state_root
        };
        proof
            .verify(self.inner.options.suite, &state_root, key, value.as_deref())
            .map_err(|e| {
                corrupt(format!(
                    "the archive's proof of {} at height {height} does not verify: {e}",
                    hex::encode(key)
                ))
            })?;
        Ok((value, proof))
    }

    /// A key's value at a kept height: the latest value, unless a later kept version
    /// wrote it; then the last write at or before `height` among the kept versions.
    fn value_at(&self, live: &Live, key: &[u8], height: u64) -> Result<Option<Vec<u8>>> {
        let written_after = live
            .recent
            .iter()
            .any(|(h, applied)| *h > height && applied.writes.contains_key(key));
        if !written_after {
            return self.state_value(key);
        }
        live.recent
            .iter()
            .rev()
            .filter(|(h, _)| *h <= height)
            .find_map(|(_, applied)| applied.writes.get(key).cloned())
            .ok_or_else(|| {
                StoreError::Tree(TreeError::NotKept {
                    asked: height,
                    oldest: live.tree.oldest(),
                    latest: live.tree.latest(),
                })
            })
    }

    /// The tree root at `version` (block height), if that version is kept.
    pub fn state_root(&self, version: u64) -> Result<Hash> {
        Ok(read(&self.inner.live).tree.root_hash(version)?)
    }
}

impl StateRead for Store {
    /// A read error is returned, never made up: the engine abandons the block and the
    /// node stops (recording it would put this node's disk fault on the ledger).
    fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, StateError> {
        self.state_value(key).map_err(|e| StateError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::Suite;

    const SUITE: Suite = Suite::Ed25519Sha256;
    use cbec_ledger::{merkle, CommitSig, KeyPair, Outcome, PublicKey, Transaction, TxResult};

    fn writes(pairs: &[(&str, Option<&str>)]) -> Writes {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn block(store: &Store, height: u64, root: Hash) -> Block {
        let parent = store.header(height - 1).expect("read");
        let header = Header {
            chain_id: Hash([1; 32]),
            height,
            time_ms: height * 1000,
            previous: parent.as_ref().map_or(Hash([1; 32]), |p| p.hash(SUITE)),
            proposer: PublicKey::Ed25519([2; 32]),
            tx_count: 0,
            tx_root: merkle::root::<Vec<u8>>(SUITE, &[]),
            results_root: merkle::root::<Vec<u8>>(SUITE, &[]),
            state_root: root,
            validators_hash: Hash::default(),
        };
        Block {
            header,
            txs: Vec::<Transaction>::new(),
            results: Vec::<TxResult>::new(),
            last_commit: None,
        }
    }

    fn cert(block: &Block) -> CommitCertificate {
        CommitCertificate {
            height: block.height(),
            round: 0,
            block_hash: block.hash(SUITE),
            signatures: Vec::<CommitSig>::new(),
        }
    }

    fn commit(store: &Store, h: u64, w: &Writes) -> Block {
        let prepared = store.prepare_state(h, w).expect("prepare");
        let b = block(store, h, prepared.root);
        store
            .apply_parts(b.clone(), cert(&b), w.clone(), prepared)
            .expect("apply");
        b
    }

    #[test]
    fn blocks_and_state_survive_reopening_and_the_root_proves_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        {
            let store = Store::open(dir.path(), &chain).expect("open");
            store
                .init_genesis(&writes(&[("gov/a", Some("1"))]))
                .expect("genesis");
            for h in 1..=3u64 {
                let w = writes(&[
                    ("sys/last-block", Some(&h.to_string())),
                    ("k", Some(if h == 2 { "two" } else { "x" })),
                ]);
                commit(&store, h, &w);
            }
            // An older kept version proves the value it had then.
            let (value, proof) = store.sparse_proof(b"k", 2).expect("proof");
            assert_eq!(value, Some(b"two".to_vec()));
            let root = store.header(2).expect("read").expect("header").state_root;
            proof
                .verify(SUITE, &root, b"k", Some(b"two"))
                .expect("verifies");
            assert!(proof.verify(SUITE, &root, b"k", Some(b"x")).is_err());
        }
        let store = Store::open(dir.path(), &chain).expect("reopen");
        assert_eq!(store.height().expect("height"), 3);
        store.check(10).expect("consistent");
        assert_eq!(store.state_value(b"k").expect("read"), Some(b"x".to_vec()));
        let root3 = store.header(3).expect("read").expect("header").state_root;
        let (value, proof) = store.sparse_proof(b"k", 3).expect("proof");
        assert_eq!(value, Some(b"x".to_vec()));
        proof
            .verify(SUITE, &root3, b"k", Some(b"x"))
            .expect("verifies");
        let (absent, proof) = store.sparse_proof(b"nope", 3).expect("proof");
        assert_eq!(absent, None);
        proof
            .verify(SUITE, &root3, b"nope", None)
            .expect("absence proven");
        // A reopened store keeps only the version it rebuilt.
        assert!(matches!(
            store.sparse_proof(b"k", 2),
            Err(StoreError::Tree(TreeError::NotKept { asked: 2, .. }))
        ));
    }

    /// Twelve heights over 300 keys, some rewritten and some deleted at each: the
    /// committed state after each height (index = height, genesis first).
    fn archive_history(store: &Store, heights: std::ops::RangeInclusive<u64>) -> Vec<Writes> {
        let key = |i: u64| format!("ent/filing/{i:03}");
        let mut out = Vec::new();
        for h in heights {
            let w: Writes = (0..300u64)
                .filter(|i| (i + h) % 4 == 0)
                .map(|i| {
                    let value = (i % 7 != h % 7).then(|| format!("v{i}@{h}").into_bytes());
                    (key(i).into_bytes(), value)
                })
                .collect();
            commit(store, h, &w);
            out.push(w);
        }
        out
    }

    /// Asks `store` for keys 0..300 at `height`, checks each proof against that
    /// height's header and the value against `expected` (the state then).
    fn assert_proves(store: &Store, height: u64, expected: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let root = if height == 0 {
            store.genesis_root().expect("genesis root")
        } else {
            store
                .header(height)
                .expect("read")
                .expect("header")
                .state_root
        };
        for i in (0..300u64).step_by(7) {
            let key = format!("ent/filing/{i:03}").into_bytes();
            let (value, proof) = store.sparse_proof(&key, height).expect("archived proof");
            assert_eq!(value.as_ref(), expected.get(&key), "key {i} at {height}");
            proof
                .verify(SUITE, &root, &key, value.as_deref())
                .expect("verifies against the header");
        }
    }

    fn state_after(
        genesis: &Writes,
        history: &[Writes],
        height: usize,
    ) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut state = BTreeMap::new();
        for w in std::iter::once(genesis).chain(&history[..height]) {
            for (k, v) in w {
                match v {
                    Some(v) => state.insert(k.clone(), v.clone()),
                    None => state.remove(k),
                };
            }
        }
        state
    }

    fn assert_not_kept(store: &Store, height: u64) {
        let asked = store.sparse_proof(b"ent/filing/000", height);
        assert!(
            matches!(asked, Err(StoreError::Tree(TreeError::NotKept { asked, .. })) if asked == height),
            "{asked:?}"
        );
    }

    /// Writes one archive entry straight into the database of a closed store.
    fn put_archive_entry(dir: &Path, key: &[u8], value: &[u8]) {
        let kv = RocksKv::open(dir).expect("open the database");
        let mut batch = Batch::default();
        batch.put(Cf::Archive, key, value);
        kv.write(batch, true).expect("write");
    }

    fn archive_options(archive: bool) -> StoreOptions {
        StoreOptions {
            versions_kept: 2,
            archive,
            ..StoreOptions::default()
        }
    }

    #[test]
    fn an_archive_proves_every_height_after_the_tree_forgot_it_and_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        let genesis: Writes = (0..300u64)
            .step_by(3)
            .map(|i| {
                (
                    format!("ent/filing/{i:03}").into_bytes(),
                    Some(b"g".to_vec()),
                )
            })
            .collect();
        let history = {
            let store = Store::open_with(dir.path(), &chain, archive_options(true)).expect("open");
            store.init_genesis(&genesis).expect("genesis");
            let history = archive_history(&store, 1..=12);
            for h in 0..=12u64 {
                assert_proves(&store, h, &state_after(&genesis, &history, h as usize));
            }
            store.close().expect("close");
            history
        };
        let store = Store::open_with(dir.path(), &chain, archive_options(true)).expect("reopen");
        for h in 0..=12u64 {
            assert_proves(&store, h, &state_after(&genesis, &history, h as usize));
        }
        drop(store);
        // The same store opened as no archive proves only what its tree keeps.
        let store = Store::open_with(dir.path(), &chain, archive_options(false)).expect("reopen");
        assert_not_kept(&store, 3);
    }

    #[test]
    fn an_archive_started_on_a_running_chain_begins_at_that_height() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        let genesis = writes(&[("g", Some("0"))]);
        let mut history = {
            let store = Store::open_with(dir.path(), &chain, archive_options(false)).expect("open");
            store.init_genesis(&genesis).expect("genesis");
            archive_history(&store, 1..=6)
        };
        let store = Store::open_with(dir.path(), &chain, archive_options(true)).expect("reopen");
        history.extend(archive_history(&store, 7..=14));
        for h in 6..=14u64 {
            assert_proves(&store, h, &state_after(&genesis, &history, h as usize));
        }
        assert_not_kept(&store, 5);
    }

    #[test]
    fn a_damaged_archive_entry_is_an_error_and_never_a_wrong_proof() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        {
            let store = Store::open_with(dir.path(), &chain, archive_options(true)).expect("open");
            store
                .init_genesis(&writes(&[("g", Some("0"))]))
                .expect("genesis");
            archive_history(&store, 1..=8);
            store.close().expect("close");
        }
        // Each kind of entry, damaged in turn: a node, a root, a value.
        for prefix in [b'n', b'r', b'v'] {
            let kv = RocksKv::open(dir.path()).expect("open the database");
            let (key, mut value) = kv
                .scan(Cf::Archive, &[prefix], 1)
                .expect("scan")
                .pop()
                .expect("an entry");
            // A root is read for its kind only: damage its tag.
            let at = if prefix == b'r' { 0 } else { value.len() - 1 };
            drop(kv);
            value[at] ^= 1;
            put_archive_entry(dir.path(), &key, &value);
            let store =
                Store::open_with(dir.path(), &chain, archive_options(true)).expect("reopen");
            let mut found = false;
            for height in 0..=8u64 {
                let root = if height == 0 {
                    store.genesis_root().expect("genesis root")
                } else {
                    store
                        .header(height)
                        .expect("read")
                        .expect("header")
                        .state_root
                };
                let keys = (0..300u64).map(|i| format!("ent/filing/{i:03}").into_bytes());
                for key in keys.chain([b"g".to_vec()]) {
                    match store.sparse_proof(&key, height) {
                        Ok((value, proof)) => proof
                            .verify(SUITE, &root, &key, value.as_deref())
                            .expect("what is given out verifies"),
                        Err(StoreError::Corrupt(_)) => found = true,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            assert!(found, "damaging an entry {} is found", prefix as char);
            drop(store);
            // Undo, so the next kind is damaged alone.
            value[at] ^= 1;
            put_archive_entry(dir.path(), &key, &value);
        }
    }

    /// Proofs from the store verify in the ledger on thousands of keys over several
    /// versions with deletions: present keys, absent keys, older kept versions.
    #[test]
    fn proofs_verify_in_the_ledger_at_every_kept_version() {
        let store = Store::in_memory(&Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        let key = |i: u32| format!("ent/filing/{i:05}").into_bytes();
        let mut history: Vec<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> = Vec::new();
        let mut latest = std::collections::BTreeMap::new();
        for h in 1..=4u64 {
            let mut w: Writes = (0..1_500u32)
                .filter(|i| u64::from(i % 4) < h)
                .map(|i| (key(i), Some(format!("v{h}-{i}").into_bytes())))
                .collect();
            if h == 4 {
                w.insert(key(3), None); // deleted at height 4
            }
            for (k, v) in &w {
                match v {
                    Some(v) => latest.insert(k.clone(), v.clone()),
                    None => latest.remove(k),
                };
            }
            history.push(latest.clone());
            commit(&store, h, &w);
        }
        for h in 1..=4u64 {
            let root = store.state_root(h).expect("root");
            let expected = &history[h as usize - 1];
            for i in (0..1_600u32).step_by(37).chain([3]) {
                let k = key(i);
                let (value, proof) = store.sparse_proof(&k, h).expect("proof");
                assert_eq!(value.as_ref(), expected.get(&k), "key {i} at {h}");
                proof
                    .verify(SUITE, &root, &k, value.as_deref())
                    .unwrap_or_else(|e| panic!("key {i} at {h}: {e}"));
                let flipped = if value.is_some() {
                    None
                } else {
                    Some(&b"x"[..])
                };
                assert!(proof.verify(SUITE, &root, &k, flipped).is_err());
            }
        }
        assert_eq!(
            store.sparse_proof(&key(3), 4).expect("proof").0,
            None,
            "deleted"
        );
    }

    /// A state value changed on disk behind the store's back is found at open: the
    /// tree rebuilt from the state no longer gives the last header's root.
    #[test]
    fn a_state_value_changed_on_disk_is_found_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        {
            let store = Store::open(dir.path(), &chain).expect("open");
            store
                .init_genesis(&writes(&[("g", Some("0"))]))
                .expect("genesis");
            commit(&store, 1, &writes(&[("balance", Some("10"))]));
            let mut batch = Batch::default();
            batch.put(Cf::State, &b"balance"[..], &b"11"[..]);
            store.inner.kv.write(batch, true).expect("tamper");
        }
        let store = Store::open(dir.path(), &chain).expect("reopen");
        let err = store.check(10).expect_err("the changed value is found");
        assert!(err.to_string().contains("state root"), "{err}");
    }

    /// A prepared state that is dropped instead of committed frees its tree nodes, and
    /// the store goes on from the latest committed version.
    #[test]
    fn a_dropped_preparation_leaves_nothing_behind() {
        let store = Store::in_memory(&Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        let w: Writes = (0..100u32)
            .map(|i| (format!("k{i}").into_bytes(), Some(b"v".to_vec())))
            .collect();
        commit(&store, 1, &w);
        let before = store.memory().tree;
        let other: Writes = (0..100u32)
            .map(|i| (format!("k{i}").into_bytes(), Some(b"w".to_vec())))
            .collect();
        let a = store.prepare_state(2, &other).expect("prepare");
        let b = store.prepare_state(2, &w).expect("another round's block");
        assert_ne!(a.root, b.root);
        drop(a);
        drop(b);
        assert_eq!(store.memory().tree, before);
        commit(&store, 2, &other);
        store.check(5).expect("consistent");
    }

    /// In the background, an applied block is readable at once (the next height
    /// executes on it), reaches the disk in order, wakes what waits for it, and a
    /// closed store holds every applied block when reopened.
    #[test]
    fn background_persisting_keeps_order_and_loses_nothing_at_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        let options = StoreOptions {
            background: true,
            ..StoreOptions::default()
        };
        let woken = Arc::new(Mutex::new(Vec::new()));
        {
            let store = Store::open_with(dir.path(), &chain, options).expect("open");
            store
                .init_genesis(&writes(&[("g", Some("0"))]))
                .expect("genesis");
            for h in 1..=20u64 {
                let w = writes(&[("counter", Some(&h.to_string()))]);
                commit(&store, h, &w);
                // The head and its state are readable whether or not on disk yet.
                assert_eq!(store.height().expect("height"), h);
                assert_eq!(
                    store.state_value(b"counter").expect("read"),
                    Some(h.to_string().into_bytes())
                );
                assert!(store.header(h).expect("read").is_some());
                let woken = woken.clone();
                store.when_persisted(h, move || lock(&woken).push(h));
                // A signature at h + 1 waits for block h on disk.
                let mut signing = SigningState::genesis();
                signing.height = h + 1;
                store.save_signing_state(&signing).expect("signing state");
                assert!(store.persisted_height() >= h);
            }
            store.close().expect("close");
            assert_eq!(*lock(&woken), (1..=20).collect::<Vec<_>>());
        }
        let store = Store::open(dir.path(), &chain).expect("reopen");
        assert_eq!(store.height().expect("height"), 20);
        assert_eq!(store.persisted_height(), 20);
        store
            .check(100)
            .expect("every block and the state are there");
    }

    /// Each block's synced write, each signature's wait for the block below it and each
    /// signing-state write is timed, and `/metrics` shows the three histograms.
    #[test]
    fn synced_writes_are_timed_for_metrics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([7; 32]);
        let options = StoreOptions {
            background: true,
            ..StoreOptions::default()
        };
        let store = Store::open_with(dir.path(), &chain, options).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        for h in 1..=3u64 {
            commit(&store, h, &writes(&[("counter", Some(&h.to_string()))]));
            let mut signing = SigningState::genesis();
            signing.height = h + 1;
            store.save_signing_state(&signing).expect("signing state");
        }
        store.close().expect("close");
        let text = crate::metrics::Metrics::with_disk(&store.disk_timings()).render();
        for name in ["block_write", "signing_wait", "signing_write"] {
            let count = format!("cbec_store_{name}_seconds_count 3");
            assert!(text.contains(&count), "no `{count}` in:\n{text}");
        }
        // Without the store's timings the metrics do not name them.
        assert!(!crate::metrics::Metrics::new()
            .render()
            .contains("store_block_write"));
    }

    type AfterGet = Box<dyn Fn(&[u8]) + Send + Sync>;
    type BeforeWrite = Box<dyn Fn() -> std::result::Result<(), KvError> + Send + Sync>;

    /// A backend in memory whose reads and writes pass through hooks: a write may fail
    /// (a full disk), a read may be held after it read (a slow disk).
    struct HookedKv {
        inner: MemKv,
        after_get: AfterGet,
        before_write: BeforeWrite,
    }

    impl HookedKv {
        fn new() -> HookedKv {
            HookedKv {
                inner: MemKv::default(),
                after_get: Box::new(|_| {}),
                before_write: Box::new(|| Ok(())),
            }
        }
    }

    impl std::fmt::Debug for HookedKv {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("HookedKv")
        }
    }

    impl Kv for HookedKv {
        fn get(&self, cf: Cf, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, KvError> {
            let value = self.inner.get(cf, key)?;
            (self.after_get)(key);
            Ok(value)
        }
        fn write(&self, batch: Batch, durable: bool) -> std::result::Result<(), KvError> {
            (self.before_write)()?;
            self.inner.write(batch, durable)
        }
        fn floor(
            &self,
            cf: Cf,
            key: &[u8],
        ) -> std::result::Result<Option<(Vec<u8>, Vec<u8>)>, KvError> {
            self.inner.floor(cf, key)
        }
        fn scan(
            &self,
            cf: Cf,
            from: &[u8],
            limit: usize,
        ) -> std::result::Result<Vec<(Vec<u8>, Vec<u8>)>, KvError> {
            self.inner.scan(cf, from, limit)
        }
        fn range(
            &self,
            cf: Cf,
            from: &[u8],
            until: &[u8],
        ) -> std::result::Result<Vec<(Vec<u8>, Vec<u8>)>, KvError> {
            self.inner.range(cf, from, until)
        }
        fn each(&self, cf: Cf, f: crate::kv::Visit<'_>) -> std::result::Result<(), KvError> {
            self.inner.each(cf, f)
        }
        fn memory(&self) -> crate::kv::KvMemory {
            crate::kv::KvMemory::default()
        }
        fn verify(&self) -> std::result::Result<crate::kv::KvVerified, KvError> {
            self.inner.verify()
        }
    }

    /// A state read from disk is kept for the next read of the key, a key the state
    /// tree lacks is answered absent without the disk, and each block that writes a
    /// key, once on disk, gives the cache its value or deletion: no read after it sees
    /// the value from before.
    #[test]
    fn state_reads_are_cached_and_each_block_written_updates_them() {
        let store = Store::in_memory(&Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("k", Some("0")), ("gone", Some("g"))]))
            .expect("genesis");
        let cache = |store: &Store| store.memory().read_cache;
        for key in ["k", "gone", "absent"] {
            store.state_value(key.as_bytes()).expect("read");
        }
        let first = cache(&store);
        assert_eq!((first.misses, first.absent), (2, 1), "{first:?}");
        assert_eq!(store.state_value(b"k").expect("read"), Some(b"0".to_vec()));
        assert_eq!(store.state_value(b"absent").expect("read"), None);
        let after = cache(&store);
        assert_eq!(after.hits, first.hits + 1, "{after:?}");
        assert_eq!(after.absent, first.absent + 1, "{after:?}");
        assert_eq!(after.misses, first.misses, "{after:?}");
        assert!(after.bytes > 0);
        commit(
            &store,
            1,
            &writes(&[("k", Some("1")), ("absent", Some("now")), ("gone", None)]),
        );
        assert_eq!(store.state_value(b"k").expect("read"), Some(b"1".to_vec()));
        assert_eq!(
            store.state_value(b"absent").expect("read"),
            Some(b"now".to_vec())
        );
        assert_eq!(store.state_value(b"gone").expect("read"), None);
        assert_eq!(
            cache(&store).misses,
            after.misses + 1,
            "k and gone answered from the cache; the key the block created from disk"
        );
        commit(&store, 2, &writes(&[("k", None)]));
        assert_eq!(store.state_value(b"k").expect("read"), None);
        let last = cache(&store);
        assert_eq!(
            store.state_value(b"absent").expect("read"),
            Some(b"now".to_vec())
        );
        assert_eq!(store.state_value(b"never").expect("read"), None);
        assert_eq!(cache(&store).misses, last.misses, "{last:?}");
        assert_eq!(cache(&store).absent, last.absent + 1, "{last:?}");
    }

    /// The last blocks, on disk, are served from memory (the next block's checks read
    /// its parent's header and certificate): no block is read back and decoded for
    /// them; one older than the kept versions is read from disk.
    #[test]
    fn recent_blocks_are_served_from_memory_once_on_disk() {
        let reads = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let mut kv = HookedKv::new();
        let seen = reads.clone();
        kv.after_get = Box::new(move |key| lock(&seen).push(key.to_vec()));
        let store = Store::with_kv(Box::new(kv), &Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("a", Some("1"))]))
            .expect("genesis");
        let kept = read(&store.inner.live).tree.keep() as u64;
        let mut blocks = Vec::new();
        for h in 1..=kept + 2 {
            blocks.push(commit(&store, h, &writes(&[("k", Some(&h.to_string()))])));
        }
        let last = kept + 2;
        assert!(store.inner.pending(last).is_none(), "on disk");
        lock(&reads).clear();
        let b = &blocks[last as usize - 1];
        assert_eq!(store.header(last).expect("read"), Some(b.header.clone()));
        assert_eq!(store.certificate(last).expect("read"), Some(cert(b)));
        assert_eq!(store.block_shared(last).expect("read").as_deref(), Some(b));
        assert_eq!(store.block(last).expect("read").as_ref(), Some(b));
        assert!(
            lock(&reads).is_empty(),
            "read from disk: {:?}",
            lock(&reads)
        );
        // The first block is no longer among the kept versions: from disk, the same.
        assert_eq!(
            store.header(1).expect("read"),
            Some(blocks[0].header.clone())
        );
        assert!(lock(&reads).contains(&height_key(1).to_vec()));
    }

    /// A reader on another thread while the tree is being updated (its lock held for
    /// writing, as `prepare_state` holds it) is answered from disk at once, absent keys
    /// and recent blocks alike, the same answers, instead of waiting for the update.
    #[test]
    fn a_read_during_a_tree_update_goes_to_disk_without_waiting() {
        let store = Arc::new(Store::in_memory(&Hash([1; 32])).expect("open"));
        store
            .init_genesis(&writes(&[("k", Some("0"))]))
            .expect("genesis");
        let b = commit(&store, 1, &writes(&[("k", Some("1"))]));
        let before = store.memory().read_cache;
        let updating = write(&store.inner.live);
        let (done_tx, done_rx) = mpsc::channel();
        let reader = store.clone();
        std::thread::spawn(move || {
            let answers = (
                reader.state_value(b"never").expect("read"),
                reader.header(1).expect("read"),
            );
            done_tx.send(answers).expect("test waits");
        });
        let (value, header) = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("answered while the tree is locked for writing");
        drop(updating);
        assert_eq!((value, header), (None, Some(b.header)));
        let after = store.memory().read_cache;
        assert_eq!(after.misses, before.misses + 1, "{after:?}");
        assert_eq!(after.absent, before.absent, "{after:?}");
    }

    /// A read that went to disk before a block wrote its key, and finishes after the
    /// block reached the disk, does not leave its older value in the cache.
    #[test]
    fn a_read_overtaken_by_a_block_does_not_cache_the_older_value() {
        let (read_tx, read_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        // The first read of `held` is held after it read the disk, until released.
        let mut kv = HookedKv::new();
        let (read, release) = (Mutex::new(Some(read_tx)), Mutex::new(Some(release_rx)));
        kv.after_get = Box::new(move |key| {
            if key != b"held" {
                return;
            }
            if let Some(read) = lock(&read).take() {
                read.send(()).expect("test waits");
            }
            if let Some(release) = lock(&release).take() {
                release.recv().expect("test releases");
            }
        });
        let store = Store::with_kv(Box::new(kv), &Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("held", Some("old"))]))
            .expect("genesis");
        std::thread::scope(|s| {
            let reader = s.spawn(|| store.state_value(b"held").expect("read"));
            read_rx.recv().expect("the read reached the disk");
            // The block that writes the key is applied and on disk meanwhile.
            commit(&store, 1, &writes(&[("held", Some("new"))]));
            release_tx.send(()).expect("reader waits");
            assert_eq!(reader.join().expect("reader"), Some(b"old".to_vec()));
        });
        assert_eq!(
            store.state_value(b"held").expect("read"),
            Some(b"new".to_vec())
        );
    }

    /// Writes that fail stop the store: the failed block's waiters never run, and the
    /// next apply and the next signature are refused with the reason.
    #[test]
    fn a_failed_write_stops_every_later_apply_and_signature() {
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut disk = HookedKv::new();
        let is_full = full.clone();
        disk.before_write = Box::new(move || {
            if is_full.load(Ordering::SeqCst) {
                return Err(KvError("No space left on device (injected)".into()));
            }
            Ok(())
        });
        let options = StoreOptions {
            background: true,
            ..StoreOptions::default()
        };
        let store = Store::with_kv_options(Box::new(disk), &Hash([1; 32]), options).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        commit(&store, 1, &writes(&[("a", Some("1"))]));
        store.inner.wait_persisted(1).expect("block 1 on disk");
        full.store(true, Ordering::SeqCst);
        let prepared = store
            .prepare_state(2, &writes(&[("a", Some("2"))]))
            .expect("prepare");
        let b = block(&store, 2, prepared.root);
        // Applied in memory; the write fails behind it.
        store
            .apply_parts(b.clone(), cert(&b), writes(&[("a", Some("2"))]), prepared)
            .expect("applied before the disk is asked");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        store.when_persisted(2, move || flag.store(true, Ordering::SeqCst));
        let mut signing = SigningState::genesis();
        signing.height = 3;
        let err = store
            .save_signing_state(&signing)
            .expect_err("block 2 never reached disk");
        assert!(err.to_string().contains("No space left"), "{err}");
        let w = writes(&[("a", Some("3"))]);
        let prepared = store.prepare_state(3, &w).expect("prepare");
        let b = block(&store, 3, prepared.root);
        let err = store
            .apply_parts(b.clone(), cert(&b), w, prepared)
            .expect_err("stopped");
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(
            !ran.load(Ordering::SeqCst),
            "a waiter of a lost block never runs"
        );
        assert_eq!(store.persisted_height(), 1);
    }

    fn count(store: &Store, cf: Cf) -> usize {
        let mut n = 0;
        store
            .inner
            .kv
            .each(cf, &mut |_, _| {
                n += 1;
                Ok(())
            })
            .expect("read");
        n
    }

    /// Cold subtrees leave memory at genesis and as blocks go by; proofs under them,
    /// blocks that change them and a reopened store all work from the leaves on disk.
    /// A store of format 2 (no leaves on disk) is given them at open.
    /// Options whose tree keeps at most `resident` keys' leaves in memory.
    fn evicting(resident: usize) -> StoreOptions {
        StoreOptions {
            tree_resident_keys: Some(resident),
            ..StoreOptions::default()
        }
    }

    /// A synthetic state is settled before the chain starts: nothing of it left in
    /// memtables, in level 0 or for compactions to rewrite under the first blocks'
    /// load. A state grown block by block has no such backlog; a bulk-written one would.
    #[test]
    fn a_synthetic_genesis_leaves_no_backlog_for_the_chain_to_compact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Hash([1; 32])).expect("open");
        let mut extra =
            (0..60_000u32).map(|i| (format!("syn/{i:06}").into_bytes(), i.to_be_bytes().to_vec()));
        store
            .init_genesis_with(&writes(&[("g", Some("0"))]), &mut extra)
            .expect("genesis");
        assert_eq!(
            store.inner.kv.backlog(Cf::State),
            crate::kv::KvBacklog::default()
        );
        assert_eq!(count(&store, Cf::State), 60_001);
        // Without extra entries genesis writes a handful of keys and settles nothing:
        // they stay in the memtable, which is what the backlog shows.
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        assert_eq!(store.inner.kv.backlog(Cf::State).memtable_entries, 1);
    }

    /// `/metrics` shows RocksDB's backlog over every column family: what the memtables
    /// hold until a flush, then the level-0 files the flush made.
    #[test]
    fn the_stores_memory_report_shows_the_backlog_of_every_column_family() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        let before = store.memory().backlog;
        let state = store.inner.kv.backlog(Cf::State);
        assert!(
            before.memtable_entries > state.memtable_entries,
            "{before:?}"
        );
        assert_eq!(before.l0_files, 0, "{before:?}");
        store.inner.kv.flush().expect("flush");
        let after = store.memory().backlog;
        assert_eq!(after.memtable_entries, 0, "{after:?}");
        assert!(
            after.l0_files >= 2,
            "the state's file and the meta's: {after:?}"
        );
    }

    /// With a budget, a store's tree keeps about that many leaves in memory: more than
    /// one that evicts everything it can, fewer than a whole tree; all three give the
    /// same roots and proofs through blocks that reach evicted subtrees.
    #[test]
    fn a_tree_keeps_its_budget_of_leaves_in_memory() {
        let chain = Hash([1; 32]);
        let dirs: Vec<_> = (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let genesis = |store: &Store| {
            let mut extra = (0..60_000u32)
                .map(|i| (format!("syn/{i:06}").into_bytes(), i.to_be_bytes().to_vec()));
            store
                .init_genesis_with(&writes(&[("g", Some("0"))]), &mut extra)
                .expect("genesis");
        };
        let whole = Store::open(dirs[0].path(), &chain).expect("open");
        let all = Store::open_with(dirs[1].path(), &chain, evicting(0)).expect("open");
        genesis(&whole);
        genesis(&all);
        let (most, least) = (whole.memory().tree.leaves, all.memory().tree.leaves);
        assert!(least + 1_000 < most, "{least} evicted of {most}");
        // Leaves count every kept version's copies: the whole tree's grow past this as
        // blocks change keys, and the budget then binds.
        let budget = most + 2_000;
        let some = Store::open_with(dirs[2].path(), &chain, evicting(budget)).expect("open");
        genesis(&some);
        for h in 1..=20u64 {
            let w: Writes = (0..300u32)
                .map(|j| (j * 7_919 + h as u32 * 31) % 60_000)
                .map(|i| {
                    (
                        format!("syn/{i:06}").into_bytes(),
                        Some(h.to_be_bytes().to_vec()),
                    )
                })
                .collect();
            let roots: Vec<Hash> = [&whole, &all, &some]
                .iter()
                .map(|store| commit(store, h, &w).header.state_root)
                .collect();
            assert!(roots.iter().all(|r| *r == roots[0]), "roots at {h}");
        }
        let (most, least, kept) = (
            whole.memory().tree.leaves,
            all.memory().tree.leaves,
            some.memory().tree.leaves,
        );
        // At most the budget and the subtrees the kept versions changed.
        assert!(
            least < kept && kept <= budget + 16 * 600,
            "{least} < {kept} <= {budget}, whole {most}"
        );
        assert!(kept < most, "{kept} < {most}");
        let root = some.state_root(20).expect("root");
        for i in (0..60_000u32).step_by(997) {
            let key = format!("syn/{i:06}").into_bytes();
            let (value, proof) = some.sparse_proof(&key, 20).expect("proof");
            assert_eq!(value, whole.sparse_proof(&key, 20).expect("proof").0);
            proof
                .verify(SUITE, &root, &key, value.as_deref())
                .expect("verifies");
        }
    }

    #[test]
    fn cold_subtrees_are_read_back_from_disk_and_leaves_gone_stale_are_written_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        let key = |i: u32| format!("syn/{i:06}").into_bytes();
        let check_proofs = |store: &Store, h: u64, values: &BTreeMap<Vec<u8>, Vec<u8>>| {
            let root = store.state_root(h).expect("root");
            for i in (0..60_000u32).step_by(613) {
                let k = key(i);
                let (value, proof) = store.sparse_proof(&k, h).expect("proof");
                assert_eq!(value.as_ref(), values.get(&k), "key {i} at {h}");
                proof
                    .verify(SUITE, &root, &k, value.as_deref())
                    .unwrap_or_else(|e| panic!("key {i} at {h}: {e}"));
            }
        };
        let mut values: BTreeMap<Vec<u8>, Vec<u8>> = (0..60_000u32)
            .map(|i| (key(i), i.to_be_bytes().to_vec()))
            .collect();
        {
            let store = Store::open_with(dir.path(), &chain, evicting(0)).expect("open");
            let mut extra = values.clone().into_iter();
            store
                .init_genesis_with(&writes(&[("g", Some("0"))]), &mut extra)
                .expect("genesis");
            values.insert(b"g".to_vec(), b"0".to_vec());
            let evicted = store.memory().tree.evicted;
            assert!(evicted > 1_000, "{evicted} evicted at genesis");
            for h in 1..=30u64 {
                let w: Writes = (0..200u32)
                    .map(|j| (j * 7_919 + h as u32 * 31) % 60_000)
                    .map(|i| (key(i), Some(format!("{h}").into_bytes())))
                    .collect();
                for (k, v) in &w {
                    values.insert(k.clone(), v.clone().expect("a value"));
                }
                commit(&store, h, &w);
                check_proofs(&store, h, &values);
            }
            assert!(store.memory().tree.evicted > 1_000);
            assert_eq!(count(&store, Cf::Leaves), count(&store, Cf::State));
        }
        {
            let store = Store::open_with(dir.path(), &chain, evicting(0)).expect("reopen");
            store.check(10).expect("consistent");
            check_proofs(&store, 30, &values);
        }
        {
            // Run without eviction: blocks no longer write the leaves (they go stale,
            // and one key is deleted), and the mark that they are whole goes.
            let store = Store::open(dir.path(), &chain).expect("reopen whole");
            assert_eq!(store.memory().tree.evicted, 0);
            assert_eq!(count(&store, Cf::Leaves), count(&store, Cf::State));
            let mut w = writes(&[("syn/000002", Some("whole"))]);
            w.insert(key(3), None);
            values.insert(key(2), b"whole".to_vec());
            values.remove(&key(3));
            commit(&store, 31, &w);
            assert_eq!(store.inner.meta_get::<u64>(LEAVES_AT).expect("read"), None);
            assert_ne!(count(&store, Cf::Leaves), count(&store, Cf::State));
        }
        // Evicting again: the leaves are written anew, whole, from the state.
        let store = Store::open_with(dir.path(), &chain, evicting(0)).expect("reopen");
        assert_eq!(
            store.inner.meta_get::<u64>(LEAVES_AT).expect("read"),
            Some(31)
        );
        assert_eq!(count(&store, Cf::Leaves), count(&store, Cf::State));
        check_proofs(&store, 31, &values);
        let w = writes(&[("syn/000001", Some("after"))]);
        values.insert(b"syn/000001".to_vec(), b"after".to_vec());
        commit(&store, 32, &w);
        check_proofs(&store, 32, &values);
        // A leaf on disk with a flipped byte: the subtree that holds it is refused
        // when read back, never hashed into a root or a proof.
        let flipped = (0..60_000u32)
            .map(key)
            .find(|k| {
                let hash = sparse::key_hash(SUITE, k);
                let leaf = store.inner.kv.get(Cf::Leaves, &hash.0).expect("read");
                let Some(mut value) = leaf else {
                    return false; // deleted
                };
                value[0] ^= 1;
                let mut batch = Batch::default();
                batch.put(Cf::Leaves, hash.0, value);
                store.inner.kv.write(batch, true).expect("write");
                store.sparse_proof(k, 32).is_err()
            })
            .expect("a key under an evicted subtree");
        let err = store.sparse_proof(&flipped, 32).expect_err("refused");
        assert!(err.to_string().contains("do not hash"), "{err}");
    }

    /// The old layout (a `jmt` on disk) is refused with what to do.
    #[test]
    fn a_store_of_the_old_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        {
            let store = Store::open(dir.path(), &chain).expect("open");
            let mut batch = Batch::default();
            batch.put(Cf::Meta, &b"format"[..], codec::encode(&1u32));
            store.inner.kv.write(batch, true).expect("write");
        }
        let err = Store::open(dir.path(), &chain).expect_err("old format");
        assert!(matches!(err, StoreError::Format { found: 1 }), "{err}");
        assert!(err.to_string().contains("sync"), "{err}");
    }

    #[test]
    fn validator_set_changes_are_indexed_at_commit_with_their_proofs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions {
            versions_kept: 2,
            watched: vec![b"gov/validator/a".to_vec(), b"gov/validator/b".to_vec()],
            background: false,
            archive: false,
            suite: SUITE,
            signing_file: None,
            tree_resident_keys: None,
        };
        let store = Store::open_with(dir.path(), &Hash([1; 32]), options).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        for h in 1..=6u64 {
            let key_value = format!("key-{h}");
            let mut w = writes(&[("sys/last-block", Some(&h.to_string()))]);
            if h == 2 || h == 4 {
                w.insert(b"gov/validator/a".to_vec(), Some(key_value.into_bytes()));
            }
            let prepared = store.prepare_state(h, &w).expect("prepare");
            let mut b = block(&store, h, prepared.root);
            // The set changes after heights 2 and 4.
            b.header.validators_hash = Hash(
                [match h {
                    1 | 2 => 1,
                    3 | 4 => 2,
                    _ => 3,
                }; 32],
            );
            store
                .apply_parts(b.clone(), cert(&b), w.clone(), prepared)
                .expect("apply");
        }
        assert_eq!(store.set_changes_before(7).expect("read"), vec![2, 4]);
        assert_eq!(store.set_changes_before(4).expect("read"), vec![2]);
        assert_eq!(
            store.set_changes_before(2).expect("read"),
            Vec::<u64>::new()
        );
        // The proofs kept at each change verify against that height's header, long
        // after its tree version is gone.
        assert!(
            store.sparse_proof(b"gov/validator/a", 2).is_err(),
            "not kept"
        );
        for (at, value) in [(2u64, "key-2"), (4, "key-4")] {
            let root = store.header(at).expect("read").expect("header").state_root;
            let proofs = store.set_change_proofs(at).expect("kept");
            assert_eq!(proofs.len(), 2);
            let (key, a, proof) = &proofs[0];
            assert_eq!(key.as_slice(), b"gov/validator/a");
            assert_eq!(a.as_deref(), Some(value.as_bytes()));
            proof
                .verify(SUITE, &root, key, a.as_deref())
                .expect("a verifies");
            let (key, b, proof) = &proofs[1];
            assert_eq!(b, &None);
            proof
                .verify(SUITE, &root, key, None)
                .expect("b's absence verifies");
        }
    }

    #[test]
    fn another_chains_store_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        Store::open(dir.path(), &Hash([1; 32])).expect("open");
        let err = Store::open(dir.path(), &Hash([2; 32])).expect_err("other chain");
        assert!(matches!(err, StoreError::WrongChain { .. }));
    }

    #[test]
    fn a_tampered_block_is_found_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        let store = Store::open(dir.path(), &chain).expect("open");
        store
            .init_genesis(&writes(&[("a", Some("1"))]))
            .expect("genesis");
        let mut blocks = Vec::new();
        for h in 1..=2u64 {
            let w = writes(&[("sys/last-block", Some(&h.to_string()))]);
            let prepared = store.prepare_state(h, &w).expect("prepare");
            let b = block(&store, h, prepared.root);
            store
                .apply_parts(b.clone(), cert(&b), w.clone(), prepared)
                .expect("apply");
            blocks.push(b);
        }
        store.check(10).expect("consistent");
        let mut bad = blocks[0].clone();
        bad.header.time_ms += 1;
        let mut batch = Batch::default();
        batch.put(Cf::Blocks, height_key(1), codec::encode(&bad));
        store.inner.kv.write(batch, true).expect("tamper");
        let err = store.check(10).expect_err("tamper found");
        assert!(err.to_string().contains("block"), "{err}");
        let _ = (
            KeyPair::from_seed(&[1; 32]),
            Outcome::Accepted { events: vec![] },
        );
    }

    /// One flipped bit in a table file is found by reading the store back, and the
    /// error names the column family and the corruption.
    #[test]
    fn a_flipped_bit_in_a_table_file_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        {
            let store = Store::open(dir.path(), &chain).expect("open");
            let values: Vec<(String, String)> = (0..2_000)
                .map(|i| (format!("k{i:05}"), format!("value {i} {}", "v".repeat(40))))
                .collect();
            let pairs: Vec<(&str, Option<&str>)> = values
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            store.init_genesis(&writes(&pairs)).expect("genesis");
            store.flush().expect("flush");
            let read = store.verify_files().expect("a good store reads back");
            assert!(read.entries >= 2_000, "{read:?}");
        }
        let tables: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sst"))
            .collect();
        // The largest table is the state's; flip one bit a third of the way in (its
        // data blocks come first in the file).
        let table = tables
            .iter()
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a table file");
        let mut bytes = std::fs::read(table).expect("read");
        let at = bytes.len() / 3;
        bytes[at] ^= 0x01;
        std::fs::write(table, bytes).expect("write");
        let err = Store::open(dir.path(), &chain)
            .and_then(|store| store.verify_files())
            .expect_err("the flipped bit is found");
        let text = err.to_string();
        assert!(text.contains("Corruption"), "{text}");
    }

    #[test]
    fn signing_state_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Hash([1; 32])).expect("open");
        assert_eq!(store.signing_state().expect("read"), None);
        let mut state = SigningState::genesis();
        state.height = 7;
        store.save_signing_state(&state).expect("save");
        assert_eq!(store.signing_state().expect("read"), Some(state));
    }

    #[test]
    fn a_signing_state_kept_in_the_store_moves_to_its_file_at_the_first_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let file = dir.path().join("signing-state");
        let chain = Hash([1; 32]);
        let at = |height| {
            let mut state = SigningState::genesis();
            state.height = height;
            state
        };
        {
            let store = Store::open(&db, &chain).expect("open");
            store.save_signing_state(&at(7)).expect("save");
        }
        let with_file = || StoreOptions {
            signing_file: Some(file.clone()),
            ..StoreOptions::default()
        };
        {
            let store = Store::open_with(&db, &chain, with_file()).expect("open");
            assert_eq!(store.signing_state().expect("read"), Some(at(7)));
            assert!(!file.exists(), "opening writes no file");
            store.save_signing_state(&at(8)).expect("save");
            assert_eq!(store.signing_state().expect("read"), Some(at(8)));
            store.save_signing_state(&at(9)).expect("save");
        }
        let store = Store::open_with(&db, &chain, with_file()).expect("reopen");
        assert_eq!(store.signing_state().expect("read"), Some(at(9)));
        drop(store);
        // The file, not the family (which still says 7), is what the node reads...
        assert_eq!(
            Store::open(&db, &chain)
                .expect("open")
                .signing_state()
                .expect("read"),
            Some(at(7))
        );
        // ...and a damaged file stops the store from opening rather than fall back.
        let mut bytes = std::fs::read(&file).expect("read");
        let half = bytes.len() / 2;
        bytes[30] ^= 1;
        bytes[half + 30] ^= 1;
        std::fs::write(&file, &bytes).expect("write");
        let err = Store::open_with(&db, &chain, with_file()).expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
