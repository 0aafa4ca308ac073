//! Storage: RocksDB with one column family per kind, and the state as a Jellyfish
//! Merkle tree (the `jmt` crate) whose root goes in each block header.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `blocks` | height (u64 BE) | [`Block`] |
//! | `certs` | height | [`CommitCertificate`] of that block |
//! | `tx_index` | tx hash | (height, index) |
//! | `state` | state key | latest value (what chaincode reads) |
//! | `jmt_nodes` | borsh `NodeKey` | borsh `Node` |
//! | `jmt_values` | key hash ++ version (BE) | `Option<value>` (history, for proofs) |
//! | `consensus` | `signing` | [`SigningState`] |
//! | `meta` | `chain_id`, `height` | the chain this store belongs to, last applied height |
//! | `meta` | `validators_hash`, `set-change/<height>` | the last block's validator set; heights after which the set changed |
//!
//! Applying a decided block writes block, certificate, transaction index, state, tree
//! nodes and the new height in **one** write batch, synced to disk: after a crash the
//! store holds the block entirely or not at all. The tree version is the block height;
//! every block writes at least `sys/last-block`, so every version has a root.
//!
//! The column families live in a [`Kv`] backend: RocksDB on disk ([`Store::open`]), or
//! memory for the node simulation ([`Store::in_memory`]); everything above is shared.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use cbec_chaincode::{StateError, StateRead, Writes};
use cbec_consensus::SigningState;
use cbec_ledger::sparse::{self, SparseLeaf, SparseProof};
use cbec_ledger::{codec, Block, CommitCertificate, Hash, Header};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, RootHash, Sha256Jmt, Version};

use crate::kv::{Batch, Cf, Kv, KvError, MemKv, RocksKv};

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] KvError),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("this data directory belongs to chain {found}, not {expected}")]
    WrongChain { expected: Hash, found: Hash },
    #[error("state tree: {0}")]
    Tree(String),
}

type Result<T> = std::result::Result<T, StoreError>;

/// The state tree's root for a block, and the tree nodes to write with the block.
#[derive(Debug)]
pub struct PreparedState {
    pub root: Hash,
    batch: TreeUpdateBatch,
}

pub struct Store {
    kv: Box<dyn Kv>,
    nodes: Mutex<NodeCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kv", &self.kv)
            .finish_non_exhaustive()
    }
}

/// What the store holds in memory, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreMemory {
    pub memtables: u64,
    pub block_cache: u64,
    pub table_readers: u64,
    pub tree_nodes_cached: u64,
}

/// State-tree nodes recently committed or read. Every block's update reads the nodes
/// on the paths it changes, the top levels each time; from RocksDB each read is a
/// lookup and a decode. A node's key names the version that wrote it and a committed
/// version never changes, so an entry cannot go stale; only committed nodes enter.
/// Bounded in count, oldest first out. (Only looked up, never iterated.)
struct NodeCache {
    nodes: HashMap<NodeKey, Node>,
    order: VecDeque<NodeKey>,
    max: usize,
}

impl Default for NodeCache {
    fn default() -> Self {
        NodeCache {
            nodes: HashMap::new(),
            order: VecDeque::new(),
            max: NODE_CACHE_MAX,
        }
    }
}

/// Nodes the cache keeps (an internal node is at most about 1 KiB).
const NODE_CACHE_MAX: usize = 32_768;

impl std::fmt::Debug for NodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeCache({} nodes)", self.nodes.len())
    }
}

impl NodeCache {
    fn insert(&mut self, key: NodeKey, node: Node) {
        if self.nodes.insert(key.clone(), node).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.nodes.remove(&old);
            }
        }
    }
}

/// `meta` keys `set-change/<height BE>`: the validator set changed after that height.
const SET_CHANGE_PREFIX: &[u8] = b"set-change/";

fn height_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl Store {
    /// Opens (or creates) the store of `chain_id` in `path` (RocksDB).
    pub fn open(path: &Path, chain_id: &Hash) -> Result<Store> {
        Store::with_kv(Box::new(RocksKv::open(path)?), chain_id)
    }

    /// A store in memory, for the node simulation: the same logic over ordered maps.
    pub fn in_memory(chain_id: &Hash) -> Result<Store> {
        Store::with_kv(Box::new(MemKv::default()), chain_id)
    }

    /// The store of `chain_id` over any backend.
    pub fn with_kv(kv: Box<dyn Kv>, chain_id: &Hash) -> Result<Store> {
        let store = Store {
            kv,
            nodes: Mutex::default(),
        };
        match store.meta_get::<Hash>("chain_id")? {
            Some(found) if found != *chain_id => {
                return Err(StoreError::WrongChain {
                    expected: *chain_id,
                    found,
                })
            }
            Some(_) => {}
            None => store.meta_put_sync("chain_id", chain_id)?,
        }
        Ok(store)
    }

    /// Writes every memtable to disk (for tools and tests that inspect the files).
    pub fn flush(&self) -> Result<()> {
        Ok(self.kv.flush()?)
    }

    /// Reads the whole store back from its files, checking every block's checksum: a
    /// flipped byte anywhere is an error naming the column family and the file.
    pub fn verify_files(&self) -> Result<crate::kv::KvVerified> {
        self.kv.verify().map_err(|e| corrupt(e.0))
    }

    /// Memory the backend reports for its memtables, block cache and table readers
    /// (outside the cache), and how many state-tree nodes the node cache holds.
    pub fn memory(&self) -> StoreMemory {
        let kv = self.kv.memory();
        StoreMemory {
            memtables: kv.memtables,
            block_cache: kv.block_cache,
            table_readers: kv.table_readers,
            tree_nodes_cached: self.node_cache().nodes.len() as u64,
        }
    }

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

    fn meta_put_sync<T: bincode::Encode>(&self, key: &str, value: &T) -> Result<()> {
        let mut batch = Batch::default();
        batch.put(Cf::Meta, key.as_bytes(), codec::encode(value));
        self.write_synced(batch)
    }

    fn write_synced(&self, batch: Batch) -> Result<()> {
        Ok(self.kv.write(batch, true)?)
    }

    /// The last applied height; 0 before the first block (genesis state only).
    pub fn height(&self) -> Result<u64> {
        Ok(self.meta_get("height")?.unwrap_or(0))
    }

    /// Whether the genesis state was written.
    pub fn is_initialized(&self) -> Result<bool> {
        Ok(self.meta_get::<bool>("genesis")?.unwrap_or(false))
    }

    /// Writes the genesis state as tree version 0.
    pub fn init_genesis(&self, writes: &Writes) -> Result<Hash> {
        let prepared = self.prepare_state(0, writes)?;
        let mut batch = Batch::default();
        self.add_state(&mut batch, writes, &prepared);
        batch.put(Cf::Meta, &b"genesis"[..], codec::encode(&true));
        batch.put(
            Cf::Meta,
            &b"genesis_root"[..],
            codec::encode(&prepared.root),
        );
        batch.put(Cf::Meta, &b"height"[..], codec::encode(&0u64));
        self.write_synced(batch)?;
        Ok(prepared.root)
    }

    /// The state root after genesis.
    pub fn genesis_root(&self) -> Result<Hash> {
        self.meta_get("genesis_root")?
            .ok_or_else(|| corrupt("genesis root missing"))
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        self.get(Cf::Blocks, &height_key(height))
    }

    pub fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>> {
        self.get(Cf::Certs, &height_key(height))
    }

    pub fn header(&self, height: u64) -> Result<Option<Header>> {
        Ok(self.block(height)?.map(|b| b.header))
    }

    /// Where a committed transaction is: (height, index).
    pub fn tx_location(&self, hash: &Hash) -> Result<Option<(u64, u32)>> {
        self.get(Cf::TxIndex, &hash.0)
    }

    /// The latest committed value of a state key.
    pub fn state_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(Cf::State, key)?)
    }

    /// The persisted consensus signing state.
    pub fn signing_state(&self) -> Result<Option<SigningState>> {
        self.get(Cf::Consensus, b"signing")
    }

    /// Makes the signing state durable (fsync) before the caller sends what it signed.
    pub fn save_signing_state(&self, state: &SigningState) -> Result<()> {
        let mut batch = Batch::default();
        batch.put(Cf::Consensus, &b"signing"[..], codec::encode(state));
        self.write_synced(batch)
    }

    /// Computes the state root after `writes` at tree version `version`, writing
    /// nothing: the proposer fills its header with it; validators compare.
    pub fn prepare_state(&self, version: u64, writes: &Writes) -> Result<PreparedState> {
        let tree = Sha256Jmt::new(self);
        let key_hash = |key: &[u8]| KeyHash::with::<sha2::Sha256>(key);
        // Without deletions, jmt's batch insertion builds each touched internal node
        // once for the whole block, instead of once per key; it yields the same tree
        // (jmt tests that, and so does `batch_and_one_by_one_agree` below). Its
        // batch form takes no deletions, which use the one-by-one path.
        let (root, batch) = if writes.values().all(Option::is_some) && !writes.is_empty() {
            let value_set = writes
                .iter()
                .filter_map(|(key, value)| Some((key_hash(key), value.clone()?)))
                .collect();
            tree.batch_put_value_sets(vec![value_set], None, version)
                .map(|(roots, batch)| (roots[0], batch))
        } else {
            return self.prepare_state_one_by_one(version, writes);
        }
        .map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(PreparedState {
            root: Hash(root.0),
            batch,
        })
    }

    fn prepare_state_one_by_one(&self, version: u64, writes: &Writes) -> Result<PreparedState> {
        let value_set = writes
            .iter()
            .map(|(key, value)| (KeyHash::with::<sha2::Sha256>(key), value.clone()));
        let (root, batch) = Sha256Jmt::new(self)
            .put_value_set(value_set, version)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(PreparedState {
            root: Hash(root.0),
            batch,
        })
    }

    fn add_state(&self, batch: &mut Batch, writes: &Writes, prepared: &PreparedState) {
        for (key, value) in writes {
            match value {
                Some(v) => batch.put(Cf::State, key.as_slice(), v.as_slice()),
                None => batch.delete(Cf::State, key.as_slice()),
            }
        }
        let nodes = prepared.batch.node_batch.nodes();
        for (node_key, node) in nodes {
            // Borsh encoding of our own in-memory values cannot fail.
            let k = borsh::to_vec(node_key).expect("borsh encodes a node key");
            let v = borsh::to_vec(node).expect("borsh encodes a node");
            batch.put(Cf::JmtNodes, k, v);
        }
        for ((version, key_hash), value) in prepared.batch.node_batch.values() {
            let mut k = key_hash.0.to_vec();
            k.extend_from_slice(&version.to_be_bytes());
            batch.put(Cf::JmtValues, k, codec::encode(value));
        }
    }

    /// Applies a committed block (decided or certified, and executed here) with its
    /// certificate and its execution's writes, atomically and durably.
    pub fn commit(&self, block: &crate::host::executor::CommittedBlock) -> Result<()> {
        self.commit_block(
            block.block(),
            block.certificate(),
            block.writes(),
            block.prepared(),
        )
    }

    /// The parts of [`Store::commit`], for tests that build blocks by hand.
    pub(crate) fn commit_block(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        writes: &Writes,
        prepared: &PreparedState,
    ) -> Result<()> {
        let height = block.height();
        assert_eq!(height, self.height()? + 1, "blocks are applied in order");
        assert_eq!(
            prepared.root, block.header.state_root,
            "state root checked before commit"
        );
        let mut batch = Batch::default();
        self.add_state(&mut batch, writes, prepared);
        batch.put(Cf::Blocks, height_key(height), codec::encode(block));
        batch.put(Cf::Certs, height_key(height), codec::encode(certificate));
        for (index, tx) in block.txs.iter().enumerate() {
            batch.put(
                Cf::TxIndex,
                tx.hash().0,
                codec::encode(&(height, index as u32)),
            );
        }
        // The set for height h + 1 follows from the state after h: when a block's set
        // differs from its parent's, the parent is where a change took effect. Proofs
        // carry those heights' certified state (see `proofs`).
        let last_set: Option<Hash> = self.meta_get("validators_hash")?;
        if last_set.is_some_and(|h| h != block.header.validators_hash) {
            let mut key = SET_CHANGE_PREFIX.to_vec();
            key.extend_from_slice(&height_key(height - 1));
            batch.put(Cf::Meta, key, Vec::new());
        }
        batch.put(
            Cf::Meta,
            &b"validators_hash"[..],
            codec::encode(&block.header.validators_hash),
        );
        batch.put(Cf::Meta, &b"height"[..], codec::encode(&height));
        self.write_synced(batch)?;
        let mut cache = self.node_cache();
        for (key, node) in prepared.batch.node_batch.nodes() {
            cache.insert(key.clone(), node.clone());
        }
        Ok(())
    }

    fn node_cache(&self) -> std::sync::MutexGuard<'_, NodeCache> {
        // The cache holds only copies of committed nodes: a panic elsewhere while it
        // was locked cannot have left it wrong, so a poisoned lock is still usable.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Heights after which the validator set changed, up to `before` (exclusive).
    pub fn set_changes_before(&self, before: u64) -> Result<Vec<u64>> {
        const PAGE: usize = 256;
        let mut heights = Vec::new();
        let mut from = SET_CHANGE_PREFIX.to_vec();
        loop {
            let page = self.kv.scan(Cf::Meta, &from, PAGE)?;
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

    /// Checks the last `depth` blocks: hash chain, certificates naming them, and that
    /// the tree's root at the last height is the last header's state root. A node
    /// refuses to run on a store that fails this.
    pub fn check(&self, depth: u64) -> Result<()> {
        let height = self.height()?;
        if height == 0 {
            return Ok(());
        }
        let from = height.saturating_sub(depth).max(1);
        let mut previous: Option<Header> = if from > 1 {
            self.header(from - 1)?
        } else {
            None
        };
        for h in from..=height {
            let block = self
                .block(h)?
                .ok_or_else(|| corrupt(format!("block {h} is missing")))?;
            if block.height() != h {
                return Err(corrupt(format!(
                    "block stored at {h} says height {}",
                    block.height()
                )));
            }
            block
                .check_body()
                .map_err(|e| corrupt(format!("block {h}: {e}")))?;
            if let Some(p) = &previous {
                if block.header.previous != p.hash() {
                    return Err(corrupt(format!(
                        "block {h} does not follow block {}",
                        h - 1
                    )));
                }
            }
            let cert = self
                .certificate(h)?
                .ok_or_else(|| corrupt(format!("certificate {h} is missing")))?;
            if cert.block_hash != block.hash() || cert.height != h {
                return Err(corrupt(format!("certificate {h} names another block")));
            }
            previous = Some(block.header);
        }
        let last = previous.ok_or_else(|| corrupt("no last block"))?;
        let tree = Sha256Jmt::new(self);
        let root = tree
            .get_root_hash(height)
            .map_err(|e| corrupt(format!("state tree at {height}: {e}")))?;
        if Hash(root.0) != last.state_root {
            return Err(corrupt(format!(
                "state root {} differs from header {height}'s {}",
                Hash(root.0),
                last.state_root
            )));
        }
        Ok(())
    }

    /// The value of `key` at `height` with its proof against that height's state root.
    pub fn state_proof(
        &self,
        key: &[u8],
        height: u64,
    ) -> Result<(
        Option<OwnedValue>,
        jmt::proof::SparseMerkleProof<sha2::Sha256>,
    )> {
        Sha256Jmt::new(self)
            .get_with_proof(KeyHash::with::<sha2::Sha256>(key), height)
            .map_err(|e| StoreError::Tree(e.to_string()))
    }

    /// The value of `key` at `height` with its proof in the ledger's own form, which
    /// auditors verify without `jmt`.
    pub fn sparse_proof(&self, key: &[u8], height: u64) -> Result<(Option<Vec<u8>>, SparseProof)> {
        let (value, proof) = self.state_proof(key, height)?;
        Ok((value, to_sparse_proof(&proof)?))
    }

    /// The tree root at `version` (block height).
    pub fn state_root(&self, version: u64) -> Result<Hash> {
        let root: RootHash = Sha256Jmt::new(self)
            .get_root_hash(version)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(Hash(root.0))
    }
}

/// Converts a `jmt` proof to the ledger's form. `jmt` keeps its proof's parts private
/// but defines their borsh layout: the optional leaf (tag, key hash, value hash), then
/// the siblings (u32 count; each a tag 0 = empty, 1 = internal with two child hashes,
/// 2 = leaf with key and value hashes). Each sibling becomes its hash.
pub fn to_sparse_proof(proof: &jmt::proof::SparseMerkleProof<sha2::Sha256>) -> Result<SparseProof> {
    let bytes = borsh::to_vec(proof).map_err(|e| StoreError::Tree(e.to_string()))?;
    let bad = || StoreError::Tree("unexpected jmt proof layout".into());
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let part = bytes.get(at..at + n).ok_or_else(bad)?;
        at += n;
        Ok(part)
    };
    let hash = |b: &[u8]| -> Result<Hash> { Ok(Hash(b.try_into().map_err(|_| bad())?)) };
    let leaf = match take(1)?[0] {
        0 => None,
        1 => Some(SparseLeaf {
            key_hash: hash(take(32)?)?,
            value_hash: hash(take(32)?)?,
        }),
        _ => return Err(bad()),
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
    if count > sparse::DEPTH_MAX {
        return Err(bad());
    }
    let mut siblings = Vec::with_capacity(count);
    for _ in 0..count {
        let sibling = match take(1)?[0] {
            0 => sparse::PLACEHOLDER,
            1 => sparse::internal_hash(&hash(take(32)?)?, &hash(take(32)?)?),
            2 => SparseLeaf {
                key_hash: hash(take(32)?)?,
                value_hash: hash(take(32)?)?,
            }
            .hash(),
            _ => return Err(bad()),
        };
        siblings.push(sibling);
    }
    if at != bytes.len() {
        return Err(bad());
    }
    Ok(SparseProof { leaf, siblings })
}

impl TreeReader for Store {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if let Some(node) = self.node_cache().nodes.get(node_key) {
            return Ok(Some(node.clone()));
        }
        let key = borsh::to_vec(node_key)?;
        match self.kv.get(Cf::JmtNodes, &key)? {
            None => Ok(None),
            Some(bytes) => {
                let node: Node = borsh::from_slice(&bytes)?;
                self.node_cache().insert(node_key.clone(), node.clone());
                Ok(Some(node))
            }
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let mut seek = key_hash.0.to_vec();
        seek.extend_from_slice(&max_version.to_be_bytes());
        match self.kv.floor(Cf::JmtValues, &seek)? {
            Some((k, v)) if k.len() == 40 && k[..32] == key_hash.0 => {
                Ok(codec::decode::<Option<Vec<u8>>>(&v).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            _ => Ok(None),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only state-sync restore asks for this; this store does not restore trees.
        Ok(None)
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
            previous: parent.as_ref().map_or(Hash([1; 32]), Header::hash),
            proposer: PublicKey([2; 32]),
            tx_count: 0,
            tx_root: merkle::root::<Vec<u8>>(&[]),
            results_root: merkle::root::<Vec<u8>>(&[]),
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
            block_hash: block.hash(),
            signatures: Vec::<CommitSig>::new(),
        }
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
                let prepared = store.prepare_state(h, &w).expect("prepare");
                let b = block(&store, h, prepared.root);
                store
                    .commit_block(&b, &cert(&b), &w, &prepared)
                    .expect("commit");
            }
        }
        let store = Store::open(dir.path(), &chain).expect("reopen");
        assert_eq!(store.height().expect("height"), 3);
        store.check(10).expect("consistent");
        assert_eq!(store.state_value(b"k").expect("read"), Some(b"x".to_vec()));
        let (value, proof) = store.state_proof(b"k", 2).expect("proof");
        assert_eq!(value, Some(b"two".to_vec()));
        let root = store.header(2).expect("read").expect("header").state_root;
        proof
            .verify(
                jmt::RootHash(root.0),
                KeyHash::with::<sha2::Sha256>(b"k"),
                Some(b"two"),
            )
            .expect("proof verifies");
        assert!(proof
            .verify(
                jmt::RootHash(root.0),
                KeyHash::with::<sha2::Sha256>(b"k"),
                Some(b"x")
            )
            .is_err());
        let (absent, proof) = store.state_proof(b"nope", 3).expect("proof");
        assert_eq!(absent, None);
        let root3 = store.header(3).expect("read").expect("header").state_root;
        proof
            .verify_nonexistence(
                jmt::RootHash(root3.0),
                KeyHash::with::<sha2::Sha256>(b"nope"),
            )
            .expect("absence proven");
    }

    /// The ledger's verifier, given converted proofs, agrees with `jmt`'s own on a
    /// tree of thousands of keys: present keys, absent keys, old versions, deletions.
    #[test]
    fn converted_proofs_verify_in_the_ledger_as_jmt_verifies_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        let key = |i: u32| format!("ent/filing/{i:05}").into_bytes();
        for h in 1..=4u64 {
            let mut w: Writes = (0..1_500u32)
                .filter(|i| u64::from(i % 4) < h)
                .map(|i| (key(i), Some(format!("v{h}-{i}").into_bytes())))
                .collect();
            if h == 4 {
                w.insert(key(3), None); // deleted at height 4
            }
            let prepared = store.prepare_state(h, &w).expect("prepare");
            let b = block(&store, h, prepared.root);
            store
                .commit_block(&b, &cert(&b), &w, &prepared)
                .expect("commit");
        }
        for h in 1..=4u64 {
            let root = store.state_root(h).expect("root");
            for i in (0..1_600u32).step_by(37).chain([3]) {
                let k = key(i);
                let (value, jmt_proof) = store.state_proof(&k, h).expect("proof");
                let ours = to_sparse_proof(&jmt_proof).expect("converts");
                ours.verify(&root, &k, value.as_deref())
                    .unwrap_or_else(|e| panic!("key {i} at {h}: {e}"));
                let theirs = jmt_proof.verify(
                    jmt::RootHash(root.0),
                    KeyHash::with::<sha2::Sha256>(&k),
                    value.as_deref(),
                );
                assert!(theirs.is_ok(), "jmt disagrees on key {i} at {h}");
                // The opposite claim fails in both.
                let flipped = if value.is_some() {
                    None
                } else {
                    Some(&b"x"[..])
                };
                assert!(ours.verify(&root, &k, flipped).is_err());
            }
        }
        assert_eq!(
            store.sparse_proof(&key(3), 4).expect("proof").0,
            None,
            "deleted"
        );
    }

    /// A block's writes give the same root and the same new tree nodes through jmt's
    /// batch insertion as one key at a time, on a tree that already has many keys.
    #[test]
    fn batch_and_one_by_one_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        let key =
            |i: u32| format!("goods/event/{:08x}", i.wrapping_mul(2_654_435_761)).into_bytes();
        for h in 1..=3u64 {
            let w: Writes = (0..2_000u32)
                .filter(|i| u64::from(i % 3) < h)
                .map(|i| (key(i), Some(format!("v{h}-{i}").into_bytes())))
                .collect();
            let batched = store.prepare_state(h, &w).expect("batch");
            let one_by_one = store.prepare_state_one_by_one(h, &w).expect("one by one");
            assert_eq!(batched.root, one_by_one.root, "height {h}");
            let mut a = batched.batch.node_batch.nodes().clone();
            let b = one_by_one.batch.node_batch.nodes().clone();
            assert_eq!(a.len(), b.len(), "height {h}");
            a.retain(|k, v| b.get(k) != Some(v));
            assert!(a.is_empty(), "height {h}: {} nodes differ", a.len());
            let blk = block(&store, h, batched.root);
            store
                .commit_block(&blk, &cert(&blk), &w, &batched)
                .expect("commit");
        }
    }

    /// The node cache keeps at most its bound, dropping the oldest first, and a store
    /// reads the same tree through it as from disk after reopening (no cache).
    #[test]
    fn the_node_cache_is_bounded_and_agrees_with_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Hash([1; 32]);
        let k = |i: u32| format!("goods/head/{i}").into_bytes();
        let proofs = |store: &Store| -> Vec<_> {
            (0..50u32)
                .map(|i| store.sparse_proof(&k(i), 3).expect("proof"))
                .collect()
        };
        let cached = {
            let store = Store::open(dir.path(), &chain).expect("open");
            store
                .init_genesis(&writes(&[("g", Some("0"))]))
                .expect("genesis");
            for h in 1..=3u64 {
                let w: Writes = (0..50u32)
                    .map(|i| (k(i), Some(format!("{h}-{i}").into_bytes())))
                    .collect();
                let prepared = store.prepare_state(h, &w).expect("prepare");
                let b = block(&store, h, prepared.root);
                store
                    .commit_block(&b, &cert(&b), &w, &prepared)
                    .expect("commit");
            }
            assert!(
                !store.node_cache().nodes.is_empty(),
                "commits fill the cache"
            );

            // Bounded, oldest out first.
            let w: Writes = (0..20u32).map(|i| (k(i), Some(b"x".to_vec()))).collect();
            let prepared = store.prepare_state(4, &w).expect("prepare");
            let keys: Vec<NodeKey> = prepared.batch.node_batch.nodes().keys().cloned().collect();
            assert!(keys.len() > 8);
            let mut small = NodeCache {
                max: 4,
                ..NodeCache::default()
            };
            for key in &keys {
                small.insert(key.clone(), Node::Null);
            }
            assert_eq!((small.nodes.len(), small.order.len()), (4, 4));
            assert!(keys[keys.len() - 4..]
                .iter()
                .all(|k| small.nodes.contains_key(k)));
            proofs(&store)
        };
        let reopened = Store::open(dir.path(), &chain).expect("reopen");
        assert!(reopened.node_cache().nodes.is_empty());
        assert_eq!(proofs(&reopened), cached);
    }

    #[test]
    fn validator_set_changes_are_indexed_at_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Hash([1; 32])).expect("open");
        store
            .init_genesis(&writes(&[("g", Some("0"))]))
            .expect("genesis");
        for h in 1..=6u64 {
            let w = writes(&[("sys/last-block", Some(&h.to_string()))]);
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
                .commit_block(&b, &cert(&b), &w, &prepared)
                .expect("commit");
        }
        assert_eq!(store.set_changes_before(7).expect("read"), vec![2, 4]);
        assert_eq!(store.set_changes_before(4).expect("read"), vec![2]);
        assert_eq!(
            store.set_changes_before(2).expect("read"),
            Vec::<u64>::new()
        );
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
                .commit_block(&b, &cert(&b), &w, &prepared)
                .expect("commit");
            blocks.push(b);
        }
        store.check(10).expect("consistent");
        let mut bad = blocks[0].clone();
        bad.header.time_ms += 1;
        let mut batch = Batch::default();
        batch.put(Cf::Blocks, height_key(1), codec::encode(&bad));
        store.kv.write(batch, true).expect("tamper");
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
}
