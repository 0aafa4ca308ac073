//! The key-value layer under the [`crate::store::Store`]: RocksDB on disk, or an
//! in-memory map for the node simulation. The store's logic (blocks, the state tree,
//! proofs, the start-up check) is written once above this trait.
//!
//! Every backend writes a [`Batch`] atomically: after a crash it is there entirely or not
//! at all. A durable write returns only once the batch is on disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

/// The column families: one per kind of record (see the table in [`crate::store`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cf {
    Blocks,
    Certs,
    TxIndex,
    State,
    /// Store format 1's on-disk tree (unused since format 2 keeps the tree in memory;
    /// still opened, so an old store reaches the format check and is refused by name).
    JmtNodes,
    JmtValues,
    Consensus,
    Meta,
    /// An archive node's tree nodes, roots and values by version (see `store`).
    Archive,
    /// Every state key's hash with its value's hash, in key-hash order: where the
    /// state tree reads back the subtrees it evicted, and is rebuilt from at start.
    Leaves,
}

impl Cf {
    pub const ALL: [Cf; 10] = [
        Cf::Blocks,
        Cf::Certs,
        Cf::TxIndex,
        Cf::State,
        Cf::JmtNodes,
        Cf::JmtValues,
        Cf::Consensus,
        Cf::Meta,
        Cf::Archive,
        Cf::Leaves,
    ];

    /// The RocksDB column family's name (kept from the first stores, so they open).
    pub fn name(self) -> &'static str {
        match self {
            Cf::Blocks => "blocks",
            Cf::Certs => "certs",
            Cf::TxIndex => "tx_index",
            Cf::State => "state",
            Cf::JmtNodes => "jmt_nodes",
            Cf::JmtValues => "jmt_values",
            Cf::Consensus => "consensus",
            Cf::Meta => "meta",
            Cf::Archive => "archive",
            Cf::Leaves => "leaves",
        }
    }
}

/// A failed read or write of the backend.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KvError(pub String);

impl From<rocksdb::Error> for KvError {
    fn from(e: rocksdb::Error) -> KvError {
        KvError(format!("RocksDB: {e}"))
    }
}

type Result<T> = std::result::Result<T, KvError>;

/// What [`Kv::each`] calls with every entry.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<()>;
/// Entries of a column family: (key, value), in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes applied together: puts and deletes, in order.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<(Cf, Vec<u8>, Option<Vec<u8>>)>,
}

/// A record's framing in a RocksDB write batch, at most: its type, its column
/// family's number and two lengths, each a varint.
const RECORD_FRAMING_BYTES: usize = 1 + 5 + 5 + 5;
/// A RocksDB write batch's header: its sequence number and count.
const BATCH_HEADER_BYTES: usize = 12;

impl Batch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), None));
    }

    /// A batch of room for `ops` records.
    pub fn with_capacity(ops: usize) -> Batch {
        Batch {
            ops: Vec::with_capacity(ops),
        }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The bytes RocksDB's batch of these records takes, at most.
    fn capacity_bytes(&self) -> usize {
        let records: usize = self
            .ops
            .iter()
            .map(|(_, key, value)| key.len() + value.as_ref().map_or(0, Vec::len))
            .sum();
        BATCH_HEADER_BYTES + records + self.ops.len() * RECORD_FRAMING_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Memory a backend holds, for `/metrics` (zero where it does not apply).
#[derive(Debug, Clone, Copy, Default)]
pub struct KvMemory {
    pub memtables: u64,
    pub block_cache: u64,
    pub table_readers: u64,
}

/// What of a column family is not yet settled in its sorted levels (zero in memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvBacklog {
    /// Entries in its memtables, not yet flushed to a file.
    pub memtable_entries: u64,
    /// Files in level 0, each spanning the whole key range.
    pub l0_files: u64,
    /// What RocksDB estimates its compactions still have to rewrite.
    pub pending_compaction_bytes: u64,
}

impl std::ops::Add for KvBacklog {
    type Output = KvBacklog;
    fn add(self, other: KvBacklog) -> KvBacklog {
        KvBacklog {
            memtable_entries: self.memtable_entries + other.memtable_entries,
            l0_files: self.l0_files + other.l0_files,
            pending_compaction_bytes: self.pending_compaction_bytes
                + other.pending_compaction_bytes,
        }
    }
}

/// What the store needs of a key-value backend.
pub trait Kv: Send + Sync + std::fmt::Debug {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies `batch` atomically; with `durable`, returns once it is on disk.
    fn write(&self, batch: Batch, durable: bool) -> Result<()>;
    /// The entry with the greatest key `<= key`, if any.
    fn floor(&self, cf: Cf, key: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// Up to `limit` entries with keys `>= from`, in key order.
    fn scan(&self, cf: Cf, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Every entry with a key `>= from` and `< until`, in key order.
    fn range(&self, cf: Cf, from: &[u8], until: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// [`Kv::range`] for each of `bounds` (in ascending order, not overlapping), in
    /// their order; RocksDB reads them all with one iterator, seeking forward.
    fn ranges(&self, cf: Cf, bounds: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Entries>> {
        bounds
            .iter()
            .map(|(from, until)| self.range(cf, from, until))
            .collect()
    }
    /// Calls `f` with every entry of `cf`, in key order (to rebuild what is derived
    /// from a whole family, such as the state tree at start).
    fn each(&self, cf: Cf, f: Visit<'_>) -> Result<()>;
    fn memory(&self) -> KvMemory;
    /// Writes what memory holds to the backend's files (nothing to do in memory).
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Compacts all of `cf` into its last level (after a bulk write, so its reads seek
    /// in one level instead of every level and L0 file the write left).
    fn compact(&self, _cf: Cf) -> Result<()> {
        Ok(())
    }
    /// What of `cf` is still to be flushed or compacted.
    fn backlog(&self, _cf: Cf) -> KvBacklog {
        KvBacklog::default()
    }
    /// Reads every entry of every column family from the backend's files, checking
    /// every checksum on the way (RocksDB checks each block it reads); the first
    /// failure names the family. What was read, for the log.
    fn verify(&self) -> Result<KvVerified>;
}

/// What [`Kv::verify`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvVerified {
    pub entries: u64,
    pub bytes: u64,
}

/// The shared block cache (data, index and filter blocks of every column family).
const BLOCK_CACHE_BYTES: usize = 128 * 1024 * 1024;
/// The cache is split into 2^this shards, each an LRU list of its own share of the
/// capacity; a block larger than one share is never kept. (RocksDB's default for
/// 128 MiB is 64 shards of 2 MiB.) Two cores contend little for 16 locks.
const BLOCK_CACHE_SHARD_BITS: i32 = 4;
/// Index and filter partitions: each a few kilobytes, whatever a table's size.
const METADATA_BLOCK_BYTES: usize = 4096;
/// A table file written by a compaction (RocksDB's default is 64 MiB).
const TABLE_BYTES: u64 = 8 * 1024 * 1024;
/// The first level below L0 that holds data (RocksDB's default is 256 MiB).
const LEVEL_BASE_BYTES: u64 = 64 * 1024 * 1024;
/// One memtable of one column family.
const MEMTABLE_BYTES: usize = 16 * 1024 * 1024;
/// Write-ahead logs kept, all together.
const WAL_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// All memtables together; beyond it the largest is flushed.
const MEMTABLES_TOTAL_BYTES: usize = 96 * 1024 * 1024;

/// RocksDB, one column family per [`Cf`].
pub struct RocksKv {
    db: DB,
    block_cache: rocksdb::Cache,
}

impl std::fmt::Debug for RocksKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksKv")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl RocksKv {
    /// Opens (or creates) the database in `path`.
    pub fn open(path: &Path) -> Result<RocksKv> {
        RocksKv::open_sized(path, BLOCK_CACHE_BYTES, TABLE_BYTES)
    }

    /// [`RocksKv::open`] with another cache size and table size (for tests).
    fn open_sized(path: &Path, block_cache_bytes: usize, table_bytes: u64) -> Result<RocksKv> {
        // Memory is bounded by two shared budgets rather than per column family: one
        // block cache that also holds index and filter blocks (left outside it, they
        // grow with the data), and one limit on all memtables together.
        let mut lru = rocksdb::LruCacheOptions::default();
        lru.set_capacity(block_cache_bytes);
        lru.set_num_shard_bits(BLOCK_CACHE_SHARD_BITS);
        let cache = rocksdb::Cache::new_lru_cache_opts(&lru);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Index and filter in partitions of a few kilobytes, found through a small
        // top-level index pinned in the cache. Whole, a table's filter and index grow
        // with its keys: the state's 64 MiB tables reached 1.7 million keys, a 2.1 MB
        // filter, more than one cache shard holds, so every read of that table read
        // and checksummed the whole filter from the file again (half of a node's CPU,
        // and the 30-minute bench fell behind for good in its 22nd minute).
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(METADATA_BLOCK_BYTES);
        table.set_pin_top_level_index_and_filter(true);
        // Chaincode reads many keys that do not exist (a new good's head and custody, a
        // document not filed yet): without a filter each such read searched the index
        // and a data block of every L0 file and every level (9 % of a node's CPU at
        // saturation). Ten bits a key: about one false positive in a hundred.
        table.set_bloom_filter(10.0, false);
        let mut cf_options = Options::default();
        cf_options.set_block_based_table_factory(&table);
        cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        cf_options.set_write_buffer_size(MEMTABLE_BYTES);
        // Compactions in small pieces. State and index keys are hashes, so every table
        // spans the whole key range, and a compaction into a level rewrites every table
        // of it that a table coming down overlaps. With 64 MiB tables and a 256 MiB
        // first level, L0 went straight into L6 and each compaction rewrote all of
        // `state` (271 MB, 17 s and 3.7 s of CPU a node at 25 minutes, every node at
        // once): the slowest minutes of the 30-minute bench. With a 64 MiB first
        // level and 8 MiB tables, a table coming down overlaps a few below it.
        cf_options.set_target_file_size_base(table_bytes);
        cf_options.set_max_bytes_for_level_base(LEVEL_BASE_BYTES);
        let mut options = cf_options.clone();
        // Compactions run at the lowest CPU priority (nice 19): on a busy machine they
        // take the time consensus leaves. Flushes (another pool) keep theirs, so
        // memtables never wait for them.
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        options.set_env(&env);
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_db_write_buffer_size(MEMTABLES_TOTAL_BYTES);
        // A log file is kept until every column family with writes in it has flushed;
        // the rarely written ones (certificates, meta) held hundreds of megabytes of
        // logs. Past this size the oldest log's column families are flushed.
        options.set_max_total_wal_size(WAL_TOTAL_BYTES);
        // The tree's leaves are hashes: compressing them gains nothing and costs every
        // read back.
        let mut leaves_options = cf_options.clone();
        leaves_options.set_compression_type(rocksdb::DBCompressionType::None);
        let descriptors = Cf::ALL.iter().map(|cf| {
            let options = match cf {
                Cf::Leaves => leaves_options.clone(),
                _ => cf_options.clone(),
            };
            ColumnFamilyDescriptor::new(cf.name(), options)
        });
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        Ok(RocksKv {
            db,
            block_cache: cache,
        })
    }

    /// `batch` as RocksDB's, sized once: a block's batch is megabytes, and grown by
    /// doubling it was copied four times over into memory faulted in afresh each time.
    fn rocks_batch(&self, batch: Batch) -> WriteBatch {
        let mut write = WriteBatch::with_capacity_bytes(batch.capacity_bytes());
        for (cf, key, value) in batch.ops {
            match value {
                Some(v) => write.put_cf(self.cf(cf), key, v),
                None => write.delete_cf(self.cf(cf), key),
            }
        }
        write
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        // The column families are created at open; a missing one is a programming error.
        self.db
            .cf_handle(cf.name())
            .expect("column family created at open")
    }
}

impl Kv for RocksKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    fn write(&self, batch: Batch, durable: bool) -> Result<()> {
        let write = self.rocks_batch(batch);
        let mut options = WriteOptions::default();
        options.set_sync(durable);
        Ok(self.db.write_opt(write, &options)?)
    }

    fn floor(&self, cf: Cf, key: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(key, Direction::Reverse));
        match iter.next() {
            Some(Ok((k, v))) => Ok(Some((k.into_vec(), v.into_vec()))),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    fn scan(&self, cf: Cf, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(from, Direction::Forward));
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn range(&self, cf: Cf, from: &[u8], until: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound(until.to_vec());
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), options);
        iter.seek(from);
        let mut out = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            out.push((key.to_vec(), value.to_vec()));
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    fn ranges(&self, cf: Cf, bounds: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Entries>> {
        // One iterator (creating one costs a seek in every level); the ranges are
        // ascending, so each seek moves forward over blocks the last one may have read.
        // What is read this way is kept by its reader (the state tree keeps the
        // subtrees it reads back), so it does not push the working set out of the
        // block cache.
        let mut options = rocksdb::ReadOptions::default();
        options.fill_cache(false);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), options);
        let mut out = Vec::with_capacity(bounds.len());
        for (from, until) in bounds {
            iter.seek(from);
            let mut entries = Vec::new();
            while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
                if key >= until.as_slice() {
                    break;
                }
                entries.push((key.to_vec(), value.to_vec()));
                iter.next();
            }
            iter.status()?;
            out.push(entries);
        }
        Ok(out)
    }

    fn each(&self, cf: Cf, f: Visit<'_>) -> Result<()> {
        let mut options = rocksdb::ReadOptions::default();
        // One pass over everything: keep the cache for the working set.
        options.fill_cache(false);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), options);
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            f(key, value)?;
            iter.next();
        }
        Ok(iter.status()?)
    }

    fn flush(&self) -> Result<()> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }

    fn compact(&self, cf: Cf) -> Result<()> {
        self.db.flush_cf(self.cf(cf))?;
        self.db
            .compact_range_cf(self.cf(cf), None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    fn backlog(&self, cf: Cf) -> KvBacklog {
        let int = |property: &str| {
            self.db
                .property_int_value_cf(self.cf(cf), property)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        KvBacklog {
            memtable_entries: int("rocksdb.num-entries-active-mem-table")
                + int("rocksdb.num-entries-imm-mem-tables"),
            l0_files: int("rocksdb.num-files-at-level0"),
            pending_compaction_bytes: int("rocksdb.estimate-pending-compaction-bytes"),
        }
    }

    fn verify(&self) -> Result<KvVerified> {
        let mut verified = KvVerified::default();
        for cf in Cf::ALL {
            let mut options = rocksdb::ReadOptions::default();
            options.set_verify_checksums(true);
            // A one-off pass over everything: keep the cache for the working set.
            options.fill_cache(false);
            let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), options);
            iter.seek_to_first();
            while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
                verified.entries += 1;
                verified.bytes += (key.len() + value.len()) as u64;
                iter.next();
            }
            iter.status()
                .map_err(|e| KvError(format!("column family `{}`: RocksDB: {e}", cf.name())))?;
        }
        Ok(verified)
    }

    fn memory(&self) -> KvMemory {
        let sum = |property: &str| -> u64 {
            Cf::ALL
                .iter()
                .filter_map(|cf| self.db.property_int_value_cf(self.cf(*cf), property).ok())
                .flatten()
                .sum()
        };
        KvMemory {
            memtables: sum("rocksdb.cur-size-all-mem-tables"),
            block_cache: self.block_cache.get_usage() as u64,
            table_readers: sum("rocksdb.estimate-table-readers-mem"),
        }
    }
}

/// Ordered maps in memory: the node simulation's disk. Deterministic and instant;
/// "durable" means nothing here (a simulated crash keeps it, as a disk would).
#[derive(Debug, Default)]
pub struct MemKv {
    cfs: RwLock<Families>,
}

type Families = BTreeMap<Cf, BTreeMap<Vec<u8>, Vec<u8>>>;

impl MemKv {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Families> {
        // Writers never panic while holding the lock (plain map operations).
        self.cfs.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Kv for MemKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read().get(&cf).and_then(|m| m.get(key)).cloned())
    }

    fn write(&self, batch: Batch, _durable: bool) -> Result<()> {
        let mut cfs = self.cfs.write().unwrap_or_else(|e| e.into_inner());
        for (cf, key, value) in batch.ops {
            let map = cfs.entry(cf).or_default();
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn floor(&self, cf: Cf, key: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.read().get(&cf).and_then(|m| {
            m.range(..=key.to_vec())
                .next_back()
                .map(|(k, v)| (k.clone(), v.clone()))
        }))
    }

    fn scan(&self, cf: Cf, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .read()
            .get(&cf)
            .map(|m| {
                m.range(from.to_vec()..)
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn range(&self, cf: Cf, from: &[u8], until: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= until {
            return Ok(Vec::new());
        }
        Ok(self
            .read()
            .get(&cf)
            .map(|m| {
                m.range(from.to_vec()..until.to_vec())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn each(&self, cf: Cf, f: Visit<'_>) -> Result<()> {
        if let Some(map) = self.read().get(&cf) {
            for (k, v) in map {
                f(k, v)?;
            }
        }
        Ok(())
    }

    fn memory(&self) -> KvMemory {
        KvMemory::default()
    }

    fn verify(&self) -> Result<KvVerified> {
        let cfs = self.read();
        let entries = cfs.values().flat_map(|m| m.iter());
        Ok(
            entries.fold(KvVerified::default(), |v, (k, value)| KvVerified {
                entries: v.entries + 1,
                bytes: v.bytes + (k.len() + value.len()) as u64,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's RocksDB copy is allocated once at its full size: the estimate holds
    /// every record, from one-byte keys to a block-sized value, and deletes.
    #[test]
    fn a_rocksdb_batch_is_sized_for_all_its_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = RocksKv::open(dir.path()).expect("open");
        let mut batch = Batch::with_capacity(4);
        batch.put(Cf::Blocks, vec![1u8], vec![0u8; 3 << 20]);
        batch.put(Cf::Leaves, vec![2u8; 32], vec![]);
        batch.delete(Cf::State, vec![3u8; 300]);
        for i in 0..1000u32 {
            batch.put(Cf::TxIndex, i.to_be_bytes(), vec![4u8; 200]);
        }
        let estimate = batch.capacity_bytes();
        let write = kv.rocks_batch(batch);
        assert_eq!(write.len(), 1003);
        assert!(
            write.size_in_bytes() <= estimate,
            "{} > {estimate}",
            write.size_in_bytes()
        );
        // And not much larger: the framing is a few bytes a record.
        assert!(estimate - write.size_in_bytes() < 1003 * RECORD_FRAMING_BYTES);
    }

    /// Tables carry a Bloom filter (reads of absent keys skip them without a search).
    #[test]
    fn tables_are_written_with_a_bloom_filter() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(RocksKv::open(dir.path()).expect("open"));
        let options: String = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .map(|e| std::fs::read_to_string(e.path()).expect("options"))
            .collect();
        // One table-options section per column family (the unused `default` one has
        // none); each of ours names the filter.
        let blooms = options
            .lines()
            .filter(|l| l.trim() == "filter_policy=bloomfilter")
            .count();
        assert_eq!(blooms, Cf::ALL.len(), "{options}");
    }

    /// Reads of a table whose keys outgrow a cache shard's share still come from the
    /// cache: its filter and index come in small partitions. (A whole filter larger
    /// than a shard is never kept, so before partitioning each read of an absent key
    /// read that table's whole filter from the file again.)
    #[test]
    fn a_table_with_many_keys_is_read_from_the_cache() {
        use rocksdb::perf::{set_perf_stats, PerfContext, PerfMetric, PerfStatsLevel};
        use sha2::Digest;
        const KEYS: u32 = 1_000_000;
        const CACHE: usize = 4 * 1024 * 1024; // 16 shards of 256 KiB
        const TABLE: u64 = 256 * 1024 * 1024; // all in one table
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = RocksKv::open_sized(dir.path(), CACHE, TABLE).expect("open");
        // The state's keys are hashes.
        let key = |i: u32| -> [u8; 32] { sha2::Sha256::digest(i.to_le_bytes()).into() };
        for start in (0..KEYS).step_by(10_000) {
            let mut batch = Batch::default();
            for i in start..start + 10_000 {
                batch.put(Cf::State, key(i).to_vec(), i.to_le_bytes().repeat(4));
            }
            kv.write(batch, false).expect("write");
        }
        kv.flush().expect("flush");
        let cf = kv.cf(Cf::State);
        kv.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        // One table, its whole filter (10 bits a key: 1.25 MB) far beyond a shard.
        let files = kv.db.live_files().expect("live files");
        let state: Vec<_> = files
            .iter()
            .filter(|f| f.column_family_name == "state")
            .collect();
        assert_eq!(state.len(), 1, "{state:?}");
        assert_eq!(state[0].num_entries, u64::from(KEYS));

        let absent = |round: u32| (0..1_000).map(move |i| key(KEYS + round * 1_000 + i));
        for k in absent(0) {
            assert_eq!(kv.get(Cf::State, &k).expect("get"), None); // warms the cache
        }
        set_perf_stats(PerfStatsLevel::EnableCount);
        let mut perf = PerfContext::default();
        perf.reset();
        for k in absent(1) {
            assert_eq!(kv.get(Cf::State, &k).expect("get"), None);
        }
        let read = perf.metric(PerfMetric::BlockReadByte);
        set_perf_stats(PerfStatsLevel::Disable);
        // Warm, only the filter's false positives (about 1 %) read a data block.
        assert!(
            read < 1_000 * 1024,
            "1,000 reads of absent keys read {read} bytes from the table file"
        );
        assert_eq!(
            kv.get(Cf::State, &key(7)).expect("get"),
            Some(7u32.to_le_bytes().repeat(4))
        );
    }

    /// Compactions run at nice 19 (the `rocksdb:low` threads); flushes do not.
    #[test]
    fn compactions_run_at_the_lowest_cpu_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = RocksKv::open(dir.path()).expect("open");
        // Two overlapping tables in L0, then a compaction of them.
        for round in 0u32..2 {
            let mut batch = Batch::default();
            for i in 0u32..1_000 {
                batch.put(
                    Cf::State,
                    i.to_be_bytes().to_vec(),
                    round.to_be_bytes().to_vec(),
                );
            }
            kv.write(batch, false).expect("write");
            kv.flush().expect("flush");
        }
        let cf = kv.cf(Cf::State);
        kv.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        let nice_of = |comm: &str| -> Vec<i64> {
            std::fs::read_dir("/proc/self/task")
                .expect("tasks")
                .filter_map(|t| t.ok())
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == comm)
                })
                .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                // Fields after the command's closing parenthesis: nice is the 17th.
                .filter_map(|stat| {
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(16)?.parse().ok()
                })
                .collect()
        };
        let low = nice_of("rocksdb:low");
        assert!(!low.is_empty(), "a compaction thread ran");
        assert!(
            low.iter().all(|&n| n == 19),
            "compaction threads' nice: {low:?}"
        );
        let high = nice_of("rocksdb:high");
        assert!(
            high.iter().all(|&n| n == 0),
            "flush threads' nice: {high:?}"
        );
    }

    /// Both backends answer the store's questions alike.
    #[test]
    fn rocksdb_and_memory_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rocks = RocksKv::open(dir.path()).expect("open");
        let memory = MemKv::default();
        for kv in [&rocks as &dyn Kv, &memory] {
            let mut batch = Batch::default();
            for k in [1u8, 3, 5, 7] {
                batch.put(Cf::JmtValues, vec![k], vec![k * 10]);
            }
            batch.put(Cf::Meta, b"x".to_vec(), b"y".to_vec());
            batch.delete(Cf::JmtValues, vec![5]);
            kv.write(batch, true).expect("write");
            assert_eq!(kv.get(Cf::JmtValues, &[3]).expect("get"), Some(vec![30]));
            assert_eq!(kv.get(Cf::JmtValues, &[5]).expect("get"), None);
            assert_eq!(kv.get(Cf::Meta, &[3]).expect("get"), None, "per family");
            assert_eq!(
                kv.floor(Cf::JmtValues, &[6]).expect("floor"),
                Some((vec![3], vec![30]))
            );
            assert_eq!(kv.floor(Cf::JmtValues, &[0]).expect("floor"), None);
            assert_eq!(
                kv.scan(Cf::JmtValues, &[2], 10).expect("scan"),
                vec![(vec![3], vec![30]), (vec![7], vec![70])]
            );
            assert_eq!(kv.scan(Cf::JmtValues, &[0], 1).expect("scan").len(), 1);
            assert_eq!(
                kv.range(Cf::JmtValues, &[2], &[7]).expect("range"),
                vec![(vec![3], vec![30])],
                "from inclusive, until exclusive, deletions gone"
            );
            assert_eq!(
                kv.range(Cf::JmtValues, &[1], &[1, 0]).expect("range"),
                vec![(vec![1], vec![10])],
                "a longer bound: a key of the prefix"
            );
            assert!(kv
                .range(Cf::JmtValues, &[8], &[9])
                .expect("range")
                .is_empty());
        }
    }
}
