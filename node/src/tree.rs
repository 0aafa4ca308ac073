//! The authenticated state: a sparse Merkle tree over key hashes, held in memory.
//!
//! The tree is the one `cbec_ledger::sparse` verifies proofs against (and the one `jmt`
//! computes, which the tests use as an oracle): a binary tree over the 256 bits of
//! each key's hash, where an empty subtree is a placeholder, a subtree holding one leaf
//! is that leaf, and every other subtree hashes its two halves. It is stored as 16-way
//! nodes (four binary levels each), as `jmt` stores it, but in memory and without
//! versions on disk:
//!
//! - **Cost does not grow with history.** A block's update rewrites only the nodes on
//!   the paths it changes, in memory; nothing of the tree is written to disk per block.
//!   The store writes each block's latest values (its `state` column family), and at
//!   start the tree is rebuilt from them and checked against the last header's root.
//! - **Versions by path copying.** An update never changes a node: it makes new ones
//!   for the paths it touches and shares the rest, so a prepared update (a proposal
//!   being voted on) and the committed versions coexist, and readers see a committed
//!   version whole. The last [`Tree::keep`] committed versions stay readable (state
//!   proofs at those heights); a node replaced by a newer version is freed once the
//!   last version that holds it is dropped. An update that is not committed frees what
//!   it made.
//!
//! - **Top levels re-hashed along the changed path only.** A node near the root of a
//!   large tree has all 16 slots full while a block changes one or two of them, so
//!   hashing its 15 binary levels whole for each change was most of the update's
//!   hashing. Nodes down to [`INNER_DEPTH`] keep their binary levels ([`Inner`]) and
//!   re-hash only the pairs that changed and their ancestors (4 hashes for one
//!   changed child instead of 15).
//!
//! - **Quarters one level lower.** Below those, at [`QUARTERS_DEPTH`], a node keeps the
//!   hashes of its four quarters (4 slots each): a change re-hashes the children of its
//!   own quarter and 3 joins, instead of all 16 children (each leaf among them hashed
//!   again) and 15 levels. In a state of 10^7 keys these nodes hold about 10 keys each
//!   and were most of an update's hashing and of its reads of leaves.
//!
//! - **Cold subtrees on disk.** With a [`LeafSource`] (the store's `leaves` column
//!   family: every key hash with its value hash, written with each block) and a
//!   budget of leaves, a node at [`EVICT_DEPTH`] that every kept version shares and
//!   whose version is on disk may be evicted, the ones changed longest ago first and
//!   only while more leaves than the budget are in memory: its subtree is freed and
//!   the node keeps only its hash ([`Tree::evict_cold`]). An update that reaches it
//!   brings it back in place from its leaves (which must give its hash), read ahead
//!   by the store outside the tree's lock ([`Tree::evicted_under`],
//!   [`Tree::prepare_fetched`]), then updates it as any node; a proof below it is made
//!   from the leaves read back.
//!
//! Memory, without a source, is about 100 bytes per key (a 64-byte leaf and its share
//! of 100-byte nodes), plus at most about 35 MB of kept binary levels and 138 MB of
//! quarters whatever the state's size (16^5 nodes at [`QUARTERS_DEPTH`] at most, 132
//! bytes each). With one, it is bounded whatever the state's size: the nodes down to
//! [`EVICT_DEPTH`] (at most 16^5 + 69,905 of 100 bytes, an evicted one without levels),
//! the budget, and the subtrees the last [`Tree::keep`] versions changed.
//!
//! **Archives.** A node that must prove any height keeps, besides the tree, the nodes
//! each version made in the shape [`Stored`] (16 children, each empty, a leaf or a
//! node's hash), addressed by their path and version: [`Tree::archive_changes`] lists
//! them for a committed version, [`Tree::archive_all`] for a whole version (where the
//! archive starts), and [`prove`] walks such nodes, wherever they are kept, to the same
//! proof [`Tree::proof`] gives.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use cbec_ledger::sparse::{self, SparseLeaf, SparseProof, PLACEHOLDER};
use cbec_ledger::{Hash, Suite};

/// Why the tree could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("state at version {asked} is not kept (kept: {oldest} to {latest})")]
    NotKept {
        asked: u64,
        oldest: u64,
        latest: u64,
    },
    #[error("an update must build on the latest version {latest}, not {base}")]
    NotLatest { base: u64, latest: u64 },
    #[error("more than {0} keys: the tree's arena is full")]
    Full(u32),
    #[error("the leaves of evicted subtree {path}: {reason}")]
    Leaves { path: String, reason: String },
}

/// Where the tree reads back the leaves of a subtree it evicted: the latest leaves on
/// disk (see [`Tree::evict_cold`] for why they are that subtree's).
pub trait LeafSource: Send + Sync + std::fmt::Debug {
    /// Every leaf (key hash, value hash) whose key hash begins with the first
    /// [`EVICT_DEPTH`] nibbles of `path`, in key-hash order.
    fn leaves_under(&self, path: &Hash) -> Result<Vec<(Hash, Hash)>, String>;

    /// [`LeafSource::leaves_under`] for each of `paths` (sorted by key hash, no path
    /// twice), in their order: a block's read-backs together, in one pass.
    fn leaves_under_many(&self, paths: &[Hash]) -> Result<Vec<Vec<(Hash, Hash)>>, String> {
        paths.iter().map(|path| self.leaves_under(path)).collect()
    }
}

/// Nodes at this depth are the ones [`Tree::evict_cold`] evicts: there are at most
/// 16^5 of them, each about 10 keys in a state of 10^7.
pub const EVICT_DEPTH: usize = QUARTERS_DEPTH;

/// [`Node::inner`] of an evicted node (never a quarters index: [`ARENA_MAX`]).
const EVICTED: u32 = u32::MAX;

/// The leaves of an evicted subtree, read back.
type Leaves = Arc<Vec<(Hash, Hash)>>;

/// A child of a node: nothing, a leaf, or another node, in 32 bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Ref(u32);

const LEAF_BIT: u32 = 1 << 31;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Empty,
    Leaf(u32),
    Node(u32),
}

impl Ref {
    const EMPTY: Ref = Ref(0);

    fn leaf(index: u32) -> Ref {
        debug_assert!(index < LEAF_BIT);
        Ref(index | LEAF_BIT)
    }

    fn node(index: u32) -> Ref {
        debug_assert!(index != 0 && index < LEAF_BIT, "node 0 stands for empty");
        Ref(index)
    }

    fn kind(self) -> Kind {
        if self.0 == 0 {
            Kind::Empty
        } else if self.0 & LEAF_BIT != 0 {
            Kind::Leaf(self.0 & !LEAF_BIT)
        } else {
            Kind::Node(self.0)
        }
    }
}

/// Four binary levels: 16 children and the hash of the subtree they make.
#[derive(Clone, Debug, Default)]
struct Node {
    hash: Hash,
    children: [Ref; 16],
    /// Where this node's kept levels are: its binary levels in [`Tree::inner`] (a node
    /// down to [`INNER_DEPTH`]), its quarters in [`Tree::quarters`] (at
    /// [`QUARTERS_DEPTH`], the index tagged with [`QUARTERS_TAG`]), or 0: none (a node
    /// lower down, or one a newer version replaced).
    inner: u32,
}

/// Nodes at this depth (in nibbles) and above keep their binary levels ([`Inner`]).
/// There are at most 69,905 such nodes (16^0 + ... + 16^4), so they take at most about
/// 35 MB whatever the state's size; in a large state they are the nodes whose 16 slots
/// are all full while a block changes one or two of them.
const INNER_DEPTH: usize = 4;

/// A node's binary levels as hashing sees them, as a heap: entry 0 is the node's own
/// subtree, entry `k`'s halves are entries `2k + 1` and `2k + 2`, and entries 7 to 14
/// join children `2(k - 7)` and `2(k - 7) + 1`. With them a node whose other children
/// are unchanged is re-hashed along the changed child's path only (4 hashes) instead
/// of all 15 levels again.
#[derive(Clone, Copy, Debug)]
struct Inner([Sub; 15]);

impl Default for Inner {
    fn default() -> Inner {
        Inner([Sub::Empty; 15])
    }
}

/// Nodes at this depth keep their [`Quarters`]. There are at most 16^5 of them.
const QUARTERS_DEPTH: usize = INNER_DEPTH + 1;

/// Marks a [`Node::inner`] index as one into [`Tree::quarters`] (arena indexes leave
/// the top bit free: [`ARENA_MAX`]).
const QUARTERS_TAG: u32 = 1 << 31;

/// A node's four quarters as hashing sees them: quarter `q` is the binary subtree of
/// slots `4q` to `4q + 3`. A change re-hashes its own quarter's children and the three
/// joins above the quarters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Quarters([Sub; 4]);

impl Quarters {
    fn root(&self, suite: Suite) -> Sub {
        let [a, b, c, d] = self.0;
        Sub::join(suite, Sub::join(suite, a, b), Sub::join(suite, c, d))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Leaf {
    key_hash: Hash,
    value_hash: Hash,
}

impl Leaf {
    fn hash(&self, suite: Suite) -> Hash {
        SparseLeaf {
            key_hash: self.key_hash,
            value_hash: self.value_hash,
        }
        .hash(suite)
    }
}

/// Stable indexes over chunks (no reallocation copies the whole arena), with reuse.
#[derive(Debug)]
struct Arena<T> {
    chunks: Vec<Vec<T>>,
    len: u32,
    free: Vec<u32>,
}

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Indexes must leave the top bit for [`Ref`]'s tag.
const ARENA_MAX: u32 = LEAF_BIT - 1;

impl<T: Default> Arena<T> {
    fn new(reserved: u32) -> Arena<T> {
        let mut arena = Arena {
            chunks: Vec::new(),
            len: 0,
            free: Vec::new(),
        };
        for _ in 0..reserved {
            arena.push(T::default());
        }
        arena
    }

    fn push(&mut self, value: T) -> u32 {
        let index = self.len;
        if index as usize % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        // The chunk exists: one was pushed at every multiple of CHUNK.
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(value);
        }
        self.len += 1;
        index
    }

    fn alloc(&mut self, value: T) -> Result<u32, TreeError> {
        if let Some(index) = self.free.pop() {
            *self.get_mut(index) = value;
            return Ok(index);
        }
        if self.len >= ARENA_MAX {
            return Err(TreeError::Full(ARENA_MAX));
        }
        Ok(self.push(value))
    }

    fn get(&self, index: u32) -> &T {
        &self.chunks[(index >> CHUNK_BITS) as usize][index as usize & (CHUNK - 1)]
    }

    fn get_mut(&mut self, index: u32) -> &mut T {
        &mut self.chunks[(index >> CHUNK_BITS) as usize][index as usize & (CHUNK - 1)]
    }

    fn release(&mut self, index: u32) {
        debug_assert!(index < self.len);
        self.free.push(index);
    }

    fn live(&self) -> usize {
        self.len as usize - self.free.len()
    }
}

/// Nodes and leaves one version made, or one version stopped using, and the binary
/// levels ([`Inner`]) and quarters it made (as [`Node::inner`] names them).
#[derive(Debug, Default)]
struct Garbage {
    nodes: Vec<u32>,
    leaves: Vec<u32>,
    inner: Vec<u32>,
    /// The nodes at [`EVICT_DEPTH`] made, with their paths (only with a source).
    cold: Vec<(u32, Hash)>,
}

/// One key's change: its hash, and its value's hash (`None`: deleted).
pub type Change = (Hash, Option<Hash>);

/// A child as an archive keeps it: enough to walk and prove with no arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Empty,
    Leaf { key_hash: Hash, value_hash: Hash },
    Node(Hash),
}

/// A node as an archive keeps it: its 16 children.
pub type StoredNode = [Stored; 16];

impl Stored {
    fn sub(&self, suite: Suite) -> Sub {
        match self {
            Stored::Empty => Sub::Empty,
            Stored::Leaf {
                key_hash,
                value_hash,
            } => Sub::One(
                Leaf {
                    key_hash: *key_hash,
                    value_hash: *value_hash,
                }
                .hash(suite),
            ),
            Stored::Node(hash) => Sub::Many(*hash),
        }
    }

    /// Appends this child's bytes: a tag (0 empty, 1 leaf, 2 node), then its hashes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Stored::Empty => out.push(0),
            Stored::Leaf {
                key_hash,
                value_hash,
            } => {
                out.push(1);
                out.extend_from_slice(&key_hash.0);
                out.extend_from_slice(&value_hash.0);
            }
            Stored::Node(hash) => {
                out.push(2);
                out.extend_from_slice(&hash.0);
            }
        }
    }

    /// Reads one child from the front of `bytes`: it and what follows, or `None` if
    /// the bytes are not one.
    pub fn decode_from(bytes: &[u8]) -> Option<(Stored, &[u8])> {
        let hash = |b: &[u8]| -> Option<Hash> { Some(Hash(b.try_into().ok()?)) };
        let (tag, rest) = bytes.split_first()?;
        match tag {
            0 => Some((Stored::Empty, rest)),
            1 if rest.len() >= 64 => Some((
                Stored::Leaf {
                    key_hash: hash(&rest[..32])?,
                    value_hash: hash(&rest[32..64])?,
                },
                &rest[64..],
            )),
            2 if rest.len() >= 32 => Some((Stored::Node(hash(&rest[..32])?), &rest[32..])),
            _ => None,
        }
    }
}

/// A stored node's bytes: its 16 children in order.
pub fn encode_node(node: &StoredNode) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 33);
    for child in node {
        child.encode_into(&mut out);
    }
    out
}

/// A stored node from its bytes, or `None` if they are not exactly one.
pub fn decode_node(mut bytes: &[u8]) -> Option<StoredNode> {
    let mut node = [Stored::Empty; 16];
    for child in &mut node {
        let (read, rest) = Stored::decode_from(bytes)?;
        *child = read;
        bytes = rest;
    }
    bytes.is_empty().then_some(node)
}

/// Where a node sits: the first `depth` nibbles of the key hashes under it (the rest
/// zero), the same for every version of the node.
pub fn node_path(key_hash: &Hash, depth: usize) -> Hash {
    let mut path = Hash([0; 32]);
    let whole = depth / 2;
    path.0[..whole].copy_from_slice(&key_hash.0[..whole]);
    if depth % 2 == 1 {
        path.0[whole] = key_hash.0[whole] & 0xf0;
    }
    path
}

/// The slots of every group of `width` slots (2 or 4: pairs or quarters) that holds a
/// slot of `changed`, a bit each.
fn whole_groups(changed: u16, width: usize) -> u16 {
    let group = (1u16 << width) - 1;
    (0..16 / width)
        .map(|g| group << (width * g))
        .filter(|&mask| changed & mask != 0)
        .fold(0, |slots, mask| slots | mask)
}

/// The binary subtree of `subs[lo..lo + len]`, a node's children as hashing sees them.
fn reduce(suite: Suite, subs: &[Sub; 16], lo: usize, len: usize) -> Sub {
    if len == 1 {
        return subs[lo];
    }
    let half = len / 2;
    Sub::join(
        suite,
        reduce(suite, subs, lo, half),
        reduce(suite, subs, lo + half, half),
    )
}

/// The proof that `key_hash` holds the value its leaf shows, or none, in the tree whose
/// root is `root`: `node_at(depth)` gives the node at that depth on the key's path (it
/// is asked only where the walk goes down into a node). Siblings from the leaf up, as
/// `cbec_ledger::sparse` verifies them.
pub fn prove<E>(
    suite: Suite,
    root: Stored,
    key_hash: &Hash,
    mut node_at: impl FnMut(usize) -> Result<StoredNode, E>,
) -> Result<SparseProof, E> {
    let mut at = root;
    let mut siblings = Vec::new(); // from the root down
    let mut depth = 0;
    let leaf = loop {
        match at {
            Stored::Empty => break None,
            Stored::Leaf {
                key_hash,
                value_hash,
            } => {
                break Some(SparseLeaf {
                    key_hash,
                    value_hash,
                })
            }
            Stored::Node(_) => {}
        }
        let children = node_at(depth)?;
        let subs = children.map(|c| c.sub(suite));
        let slot = nibble(key_hash, depth);
        // Down the node's four binary levels, stopping where the key's side holds at
        // most one leaf (a subtree of one leaf is that leaf).
        let (mut lo, mut len) = (0usize, 16usize);
        let mut ended = None;
        while len > 1 {
            len /= 2;
            let (mine, other) = if slot < lo + len {
                (lo, lo + len)
            } else {
                (lo + len, lo)
            };
            siblings.push(reduce(suite, &subs, other, len).hash());
            lo = mine;
            match reduce(suite, &subs, mine, len) {
                Sub::Many(_) => {}
                Sub::Empty => {
                    ended = Some(None);
                    break;
                }
                Sub::One(_) => {
                    let only = children[mine..mine + len].iter().find_map(|c| match c {
                        Stored::Leaf {
                            key_hash,
                            value_hash,
                        } => Some(SparseLeaf {
                            key_hash: *key_hash,
                            value_hash: *value_hash,
                        }),
                        _ => None,
                    });
                    ended = Some(only);
                    break;
                }
            }
        }
        if let Some(leaf) = ended {
            break leaf;
        }
        at = children[lo];
        depth += 1;
    };
    siblings.reverse();
    Ok(SparseProof { leaf, siblings })
}

/// The changes of `writes` (key, new value or deletion), as the tree takes them: key
/// hashes with value hashes, in key-hash order.
pub fn changes<'a>(
    suite: Suite,
    writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Vec<Change> {
    let mut changes: Vec<Change> = writes
        .into_iter()
        .map(|(key, value)| {
            (
                sparse::key_hash(suite, key),
                value.map(|v| sparse::value_hash(suite, v)),
            )
        })
        .collect();
    changes.sort_unstable_by_key(|c| c.0);
    changes.dedup_by(|later, earlier| later.0 == earlier.0);
    changes
}

/// A version computed but not yet committed: its root, and what it made. Hand it to
/// [`Tree::commit`] or [`Tree::discard`]; one dropped otherwise leaks its nodes until
/// the tree is rebuilt (the store's wrapper discards on drop).
#[derive(Debug)]
pub struct Update {
    version: u64,
    root: Ref,
    root_hash: Hash,
    made: Garbage,
    replaced: Garbage,
}

impl Update {
    pub fn root_hash(&self) -> Hash {
        self.root_hash
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

#[derive(Debug)]
struct Version {
    number: u64,
    root: Ref,
    /// What the next version replaced: in this version (and older ones), not in newer.
    replaced_by_next: Garbage,
}

/// What the tree holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSize {
    pub nodes: usize,
    pub leaves: usize,
    pub versions: usize,
    /// Nodes whose subtree is on disk only ([`Tree::evict_cold`]).
    pub evicted: usize,
}

/// A binary subtree as hashing sees it: no leaf, one leaf (its hash), or more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Sub {
    #[default]
    Empty,
    One(Hash),
    Many(Hash),
}

impl Sub {
    fn hash(self) -> Hash {
        match self {
            Sub::Empty => PLACEHOLDER,
            Sub::One(h) | Sub::Many(h) => h,
        }
    }

    fn join(suite: Suite, left: Sub, right: Sub) -> Sub {
        match (left, right) {
            (Sub::Empty, Sub::Empty) => Sub::Empty,
            (Sub::Empty, Sub::One(h)) | (Sub::One(h), Sub::Empty) => Sub::One(h),
            (l, r) => Sub::Many(sparse::internal_hash(suite, &l.hash(), &r.hash())),
        }
    }
}

/// The `depth`th 4-bit digit of a key hash, high half of each byte first (so a node's
/// slots in order are its binary subtrees from left to right).
fn nibble(hash: &Hash, depth: usize) -> usize {
    let byte = hash.0[depth / 2];
    usize::from(if depth % 2 == 0 {
        byte >> 4
    } else {
        byte & 0x0f
    })
}

/// Nibbles in a key hash: no path is longer.
const DEPTH_MAX: usize = 64;

/// A leaf going into a subtree being built: one that exists, or a new one.
#[derive(Clone, Copy, Debug)]
enum Item {
    Existing(u32, Hash),
    New(Hash, Hash),
}

impl Item {
    fn key_hash(&self) -> Hash {
        match self {
            Item::Existing(_, k) | Item::New(k, _) => *k,
        }
    }
}

/// The tree: committed versions, oldest first, and the arenas they share.
#[derive(Debug)]
pub struct Tree {
    /// The chain's suite: the hash of every node and leaf.
    suite: Suite,
    nodes: Arena<Node>,
    leaves: Arena<Leaf>,
    /// The binary levels of the latest version's nodes down to [`INNER_DEPTH`] (and of
    /// nodes prepared updates made); index 0 is unused.
    inner: Arena<Inner>,
    /// The quarters of the latest version's nodes at [`QUARTERS_DEPTH`] (and of nodes
    /// prepared updates made).
    quarters: Arena<Quarters>,
    versions: VecDeque<Version>,
    keep: usize,
    /// Where evicted subtrees are read back from; none: nothing is evicted.
    source: Option<Arc<dyn LeafSource>>,
    /// Nodes at [`EVICT_DEPTH`] as committed versions made them, oldest first: the
    /// version, the node and its path ([`Tree::evict_cold`] looks at each once).
    cold: VecDeque<(u64, u32, Hash)>,
    evicted: usize,
    /// [`Tree::evict_cold`] evicts only while more leaves than this are in memory,
    /// the subtrees changed longest ago first.
    resident_max: usize,
    /// Leaves read ahead of an update by the paths of the nodes they are under
    /// ([`Tree::prepare_fetched`]); checked like any leaves read back.
    fetched: HashMap<Hash, Vec<(Hash, Hash)>>,
    /// [`Tree::build`] makes nodes at [`EVICT_DEPTH`] evicted
    /// ([`Tree::from_leaves_on_disk`]).
    building_on_disk: bool,
}

impl Tree {
    /// An empty tree at `version`, keeping the last `keep` committed versions readable
    /// (at least one).
    pub fn new(version: u64, keep: usize, suite: Suite) -> Tree {
        let mut versions = VecDeque::new();
        versions.push_back(Version {
            number: version,
            root: Ref::EMPTY,
            replaced_by_next: Garbage::default(),
        });
        Tree {
            suite,
            nodes: Arena::new(1), // index 0 stands for "empty"
            leaves: Arena::new(0),
            inner: Arena::new(1), // index 0 stands for "not kept"
            quarters: Arena::new(0),
            versions,
            keep: keep.max(1),
            source: None,
            cold: VecDeque::new(),
            evicted: 0,
            resident_max: 0,
            fetched: HashMap::new(),
            building_on_disk: false,
        }
    }

    /// Reads evicted subtrees back from `source`, and lets [`Tree::evict_cold`] evict
    /// while more than `resident_max` leaves are in memory. The nodes at
    /// [`EVICT_DEPTH`] already in the tree count as made by its latest version.
    pub fn set_source(&mut self, source: Arc<dyn LeafSource>, resident_max: usize) {
        self.source = Some(source);
        self.resident_max = resident_max;
        let latest = self.latest();
        let mut stack = vec![(self.version_root(latest), 0usize, Hash([0; 32]))];
        while let Some((at, depth, path)) = stack.pop() {
            let Kind::Node(i) = at.kind() else { continue };
            if depth == EVICT_DEPTH {
                self.cold.push_back((latest, i, path));
                continue;
            }
            for (slot, child) in self.nodes.get(i).children.iter().enumerate() {
                stack.push((*child, depth + 1, child_path(&path, depth, slot)));
            }
        }
    }

    /// The tree of `leaves` (key hash, value hash; any order, no key twice) at `version`.
    pub fn from_leaves(
        version: u64,
        keep: usize,
        suite: Suite,
        mut leaves: Vec<(Hash, Hash)>,
    ) -> Result<Tree, TreeError> {
        let mut tree = Tree::new(version, keep, suite);
        leaves.sort_unstable_by_key(|l| l.0);
        let items: Vec<Item> = leaves.into_iter().map(|(k, v)| Item::New(k, v)).collect();
        let mut made = Garbage::default();
        let root = tree.build(0, &items, &mut made)?;
        if let Some(first) = tree.versions.front_mut() {
            first.root = root;
        }
        Ok(tree)
    }

    /// [`Tree::from_leaves`] for leaves that `source` holds (written, with nothing
    /// newer): the nodes at [`EVICT_DEPTH`] are made evicted, hashed from the leaves
    /// without building what is below them, so a large state is never wholly in
    /// memory (the arenas keep their largest size).
    pub fn from_leaves_on_disk(
        version: u64,
        keep: usize,
        suite: Suite,
        mut leaves: Vec<(Hash, Hash)>,
        source: Arc<dyn LeafSource>,
        resident_max: usize,
    ) -> Result<Tree, TreeError> {
        let mut tree = Tree::new(version, keep, suite);
        leaves.sort_unstable_by_key(|l| l.0);
        let items: Vec<Item> = leaves.into_iter().map(|(k, v)| Item::New(k, v)).collect();
        tree.source = Some(source);
        tree.resident_max = resident_max;
        tree.building_on_disk = true;
        let built = tree.build(0, &items, &mut Garbage::default());
        tree.building_on_disk = false;
        if let Some(first) = tree.versions.front_mut() {
            first.root = built?;
        }
        Ok(tree)
    }

    /// The suite whose hash the tree uses.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// How many committed versions stay readable.
    pub fn keep(&self) -> usize {
        self.keep
    }

    pub fn latest(&self) -> u64 {
        self.versions.back().map_or(0, |v| v.number)
    }

    pub fn oldest(&self) -> u64 {
        self.versions.front().map_or(0, |v| v.number)
    }

    pub fn size(&self) -> TreeSize {
        TreeSize {
            nodes: self.nodes.live() - 1,
            leaves: self.leaves.live(),
            versions: self.versions.len(),
            evicted: self.evicted,
        }
    }

    fn version_root(&self, number: u64) -> Ref {
        self.version(number).map_or(Ref::EMPTY, |v| v.root)
    }

    /// The node at [`EVICT_DEPTH`] on `path` in a kept version, if there is one.
    fn cold_node_at(&self, number: u64, path: &Hash) -> Option<u32> {
        let mut at = self.version_root(number);
        for depth in 0..EVICT_DEPTH {
            let Kind::Node(i) = at.kind() else {
                return None;
            };
            at = self.nodes.get(i).children[nibble(path, depth)];
        }
        match at.kind() {
            Kind::Node(i) => Some(i),
            _ => None,
        }
    }

    fn is_evicted(&self, index: u32) -> bool {
        self.nodes.get(index).inner == EVICTED
    }

    /// Evicts the nodes at [`EVICT_DEPTH`] that every kept version shares, once the
    /// oldest kept version is on disk (`persisted`, the last version the source's
    /// leaves are of). Such a node's leaves on disk are its own: it is in the version
    /// on disk and in every later one, and the source changes only when a later
    /// version is written, which must have replaced the node: the update that replaced
    /// it brought it back first ([`Tree::restore`]: read from the disk before that
    /// version was written). What it held below is in no other live node (every kept
    /// version shows this one), so it is freed. Only while more than the budget of
    /// leaves given with the source are in memory, and those changed longest ago
    /// first, so a working set that fits stays.
    /// Returns how many were evicted.
    pub fn evict_cold(&mut self, persisted: u64) -> usize {
        if self.source.is_none() {
            return 0;
        }
        let (oldest, latest) = (self.oldest(), self.latest());
        if oldest > persisted {
            return 0;
        }
        let mut evicted = 0;
        while let Some(&(made, i, path)) = self.cold.front() {
            if made > oldest || self.leaves.live() <= self.resident_max {
                break;
            }
            self.cold.pop_front();
            // Replaced since (the entry is stale), or already evicted: leave it.
            if self.cold_node_at(oldest, &path) == Some(i)
                && self.cold_node_at(latest, &path) == Some(i)
                && !self.is_evicted(i)
            {
                self.evict(i);
                evicted += 1;
            }
        }
        evicted
    }

    fn evict(&mut self, index: u32) {
        let node = self.nodes.get_mut(index);
        let mut below: Vec<Ref> = std::mem::take(&mut node.children).to_vec();
        let levels = std::mem::replace(&mut node.inner, EVICTED);
        self.release_levels(levels);
        while let Some(child) = below.pop() {
            match child.kind() {
                Kind::Empty => {}
                Kind::Leaf(i) => self.leaves.release(i),
                Kind::Node(i) => {
                    let node = self.nodes.get_mut(i);
                    below.extend(node.children);
                    let levels = std::mem::take(&mut node.inner);
                    self.release_levels(levels);
                    self.nodes.release(i);
                }
            }
        }
        self.evicted += 1;
    }

    /// The leaves of evicted node `index` on `path`: kept, or read back and checked
    /// against the node's hash.
    fn leaves_of(&self, index: u32, path: &Hash) -> Result<Leaves, TreeError> {
        let source = self
            .source
            .as_ref()
            .ok_or_else(|| leaves_failed(path, "no source to read them from".into()))?;
        let leaves = source
            .leaves_under(path)
            .map_err(|e| leaves_failed(path, e))?;
        self.checked_leaves(index, path, leaves)
    }

    /// `leaves`, read back for evicted node `index` on `path`, if they are its own.
    fn checked_leaves(
        &self,
        index: u32,
        path: &Hash,
        leaves: Vec<(Hash, Hash)>,
    ) -> Result<Leaves, TreeError> {
        let failed = |reason: &str| leaves_failed(path, reason.into());
        let ordered = leaves.windows(2).all(|w| w[0].0 < w[1].0);
        let under = leaves
            .iter()
            .all(|(k, _)| node_path(k, EVICT_DEPTH) == *path);
        if !ordered || !under {
            return Err(failed("read back out of order or from elsewhere"));
        }
        if items_sub(self.suite, EVICT_DEPTH, &leaves).hash() != self.nodes.get(index).hash {
            return Err(failed("read back, they do not hash to the node's hash"));
        }
        Ok(Arc::new(leaves))
    }

    /// A tree of evicted node `index`'s leaves alone, and its node at `depth` (the
    /// evicted node's own, at [`EVICT_DEPTH`]) on `path`.
    fn scratch(&self, index: u32, path: &Hash) -> Result<(Tree, Ref), TreeError> {
        let leaves = self.leaves_of(index, path)?;
        let tree = Tree::from_leaves(0, 1, self.suite, leaves.to_vec())?;
        let mut at = tree.version_root(0);
        for depth in 0..EVICT_DEPTH {
            if let Kind::Node(i) = at.kind() {
                at = tree.nodes.get(i).children[nibble(path, depth)];
            }
        }
        Ok((tree, at))
    }

    /// Brings evicted node `index` on `path` back into memory: its subtree built again
    /// from its leaves read back (read ahead, or from the source), which must give its
    /// hash. The node keeps its index and hash, so every version that shows it is
    /// unchanged; it counts as made by the latest version for [`Tree::evict_cold`].
    fn restore(&mut self, index: u32, path: &Hash) -> Result<(), TreeError> {
        let mut ahead = self.fetched.remove(path);
        let mut why = "not read";
        for read_ahead in [true, false] {
            let leaves = match (read_ahead, ahead.take()) {
                (true, Some(leaves)) => leaves,
                (true, None) => continue,
                (false, _) => {
                    let source = self
                        .source
                        .as_ref()
                        .ok_or_else(|| leaves_failed(path, "no source to read them from".into()))?;
                    source
                        .leaves_under(path)
                        .map_err(|e| leaves_failed(path, e))?
                }
            };
            match self.restore_from(index, path, &leaves)? {
                Ok(()) => return Ok(()),
                Err(reason) => why = reason,
            }
        }
        Err(leaves_failed(path, why.into()))
    }

    /// [`Tree::restore`] from `leaves`; the inner error: they are not the node's.
    fn restore_from(
        &mut self,
        index: u32,
        path: &Hash,
        leaves: &[(Hash, Hash)],
    ) -> Result<Result<(), &'static str>, TreeError> {
        let ordered = leaves.windows(2).all(|w| w[0].0 < w[1].0);
        let under = leaves
            .iter()
            .all(|(k, _)| node_path(k, EVICT_DEPTH) == *path);
        if !ordered || !under {
            return Ok(Err("read back out of order or from elsewhere"));
        }
        let items: Vec<Item> = leaves.iter().map(|(k, v)| Item::New(*k, *v)).collect();
        let mut built = Garbage::default();
        let at = self.build(EVICT_DEPTH, &items, &mut built)?;
        let own = match at.kind() {
            Kind::Node(j) if self.nodes.get(j).hash == self.nodes.get(index).hash => j,
            _ => {
                self.free(built);
                return Ok(Err("read back, they do not hash to the node's hash"));
            }
        };
        // The built node's children and levels become the evicted node's; what was
        // built below it stays, now under the evicted node.
        let node = std::mem::take(self.nodes.get_mut(own));
        let target = self.nodes.get_mut(index);
        target.children = node.children;
        target.inner = node.inner;
        self.nodes.release(own);
        self.evicted -= 1;
        let latest = self.latest();
        self.cold.push_back((latest, index, *path));
        Ok(Ok(()))
    }

    fn version(&self, number: u64) -> Result<&Version, TreeError> {
        self.versions
            .iter()
            .find(|v| v.number == number)
            .ok_or(TreeError::NotKept {
                asked: number,
                oldest: self.oldest(),
                latest: self.latest(),
            })
    }

    /// The root hash of a kept version.
    pub fn root_hash(&self, version: u64) -> Result<Hash, TreeError> {
        Ok(self.sub(self.version(version)?.root).hash())
    }

    fn sub(&self, child: Ref) -> Sub {
        match child.kind() {
            Kind::Empty => Sub::Empty,
            Kind::Leaf(i) => Sub::One(self.leaves.get(i).hash(self.suite)),
            Kind::Node(i) => Sub::Many(self.nodes.get(i).hash),
        }
    }

    /// The children of a node as hashing sees them, those in `slots` (a bit per slot;
    /// the others are left empty). Every child is read first and hashed after: the
    /// reads do not depend on one another, so the processor fetches the children that
    /// are not in its caches together instead of one after another between hashes. In
    /// a large tree most are not, and these reads were the tree's largest cost (a
    /// profile under `cbec bench --rate 1000`, 2026-12-05).
    fn child_subs(&self, children: &[Ref; 16], slots: u16) -> [Sub; 16] {
        #[derive(Clone, Copy)]
        enum Read {
            Empty,
            Leaf(Leaf),
            Node(Hash),
        }
        let mut read = [Read::Empty; 16];
        for (slot, (r, child)) in read.iter_mut().zip(children).enumerate() {
            if slots & (1 << slot) == 0 {
                continue;
            }
            *r = match child.kind() {
                Kind::Empty => Read::Empty,
                Kind::Leaf(i) => Read::Leaf(*self.leaves.get(i)),
                Kind::Node(i) => Read::Node(self.nodes.get(i).hash),
            };
        }
        read.map(|r| match r {
            Read::Empty => Sub::Empty,
            Read::Leaf(leaf) => Sub::One(leaf.hash(self.suite)),
            Read::Node(hash) => Sub::Many(hash),
        })
    }

    /// The binary levels of a node with `children`: from scratch, or from `old` (the
    /// levels of the node it replaces) where only the children in `changed` differ.
    fn inner_of(&self, children: &[Ref; 16], old: Option<(&Inner, u16)>) -> Inner {
        let (mut inner, changed) = match old {
            Some((old, changed)) => (*old, changed),
            None => (Inner::default(), u16::MAX),
        };
        // Both children of each pair holding a changed one are read.
        let slots = whole_groups(changed, 2);
        let subs = self.child_subs(children, slots);
        // Heap entries whose subtree changed, a bit each.
        let mut dirty = 0u16;
        for pair in 0..8 {
            if slots & (1 << (2 * pair)) != 0 {
                inner.0[7 + pair] = Sub::join(self.suite, subs[2 * pair], subs[2 * pair + 1]);
                dirty |= 1 << (7 + pair);
            }
        }
        for k in (0..7).rev() {
            if dirty & (0b11 << (2 * k + 1)) != 0 {
                inner.0[k] = Sub::join(self.suite, inner.0[2 * k + 1], inner.0[2 * k + 2]);
                dirty |= 1 << k;
            }
        }
        inner
    }

    /// The quarters of a node with `children`: from scratch, or from `old` (the
    /// quarters of the node it replaces) where only the children in `changed` differ.
    fn quarters_of(&self, children: &[Ref; 16], old: Option<(Quarters, u16)>) -> Quarters {
        let (mut quarters, changed) = old.unwrap_or((Quarters::default(), u16::MAX));
        // Every child of a quarter that holds a changed one is read.
        let slots = whole_groups(changed, 4);
        let subs = self.child_subs(children, slots);
        for (q, quarter) in quarters.0.iter_mut().enumerate() {
            if slots & (0xf << (4 * q)) != 0 {
                *quarter = reduce(self.suite, &subs, 4 * q, 4);
            }
        }
        quarters
    }

    /// The hash of a node with `children`.
    fn node_hash(&self, children: &[Ref; 16]) -> Hash {
        reduce(self.suite, &self.child_subs(children, u16::MAX), 0, 16).hash()
    }

    /// The new version `version` after `changes` (from [`changes`]) on top of the latest
    /// one, which must be `version - 1`. Nothing committed changes.
    /// The paths of the evicted nodes that an update of `changes` (sorted by key hash)
    /// on the latest version would read back: what [`Tree::prepare_fetched`] wants
    /// read ahead, outside any lock on the tree.
    pub fn evicted_under(&self, changes: &[Change]) -> Vec<Hash> {
        let mut paths: Vec<Hash> = Vec::new();
        if self.source.is_none() || self.evicted == 0 {
            return paths;
        }
        let latest = self.latest();
        for (key_hash, _) in changes {
            let path = node_path(key_hash, EVICT_DEPTH);
            if paths.last() == Some(&path) {
                continue;
            }
            if let Some(i) = self.cold_node_at(latest, &path) {
                if self.is_evicted(i) {
                    paths.push(path);
                }
            }
        }
        paths
    }

    /// [`Tree::prepare`] with the leaves of evicted nodes read ahead (by
    /// [`Tree::evicted_under`]'s paths); those not the nodes' own are read again.
    pub fn prepare_fetched(
        &mut self,
        version: u64,
        changes: &[Change],
        fetched: Vec<(Hash, Vec<(Hash, Hash)>)>,
    ) -> Result<Update, TreeError> {
        self.fetched = fetched.into_iter().collect();
        let update = self.prepare(version, changes);
        self.fetched.clear();
        update
    }

    pub fn prepare(&mut self, version: u64, changes: &[Change]) -> Result<Update, TreeError> {
        let latest = self.latest();
        if version != latest + 1 {
            return Err(TreeError::NotLatest {
                base: version.wrapping_sub(1),
                latest,
            });
        }
        debug_assert!(
            changes.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, unique"
        );
        let base = self.version(latest)?.root;
        let mut made = Garbage::default();
        let mut replaced = Garbage::default();
        let root = match self.update(base, 0, changes, &mut made, &mut replaced) {
            Ok(root) => root,
            Err(e) => {
                self.free(made);
                return Err(e);
            }
        };
        Ok(Update {
            version,
            root,
            root_hash: self.sub(root).hash(),
            made,
            replaced,
        })
    }

    /// Makes `update` the latest version; the oldest beyond [`Tree::keep`] is dropped
    /// and what only it held is freed.
    pub fn commit(&mut self, update: Update) -> Result<(), TreeError> {
        let latest = self.latest();
        if update.version != latest + 1 {
            let base = update.version.wrapping_sub(1);
            self.discard(update);
            return Err(TreeError::NotLatest { base, latest });
        }
        // Nothing builds on a replaced node again: its kept levels go now, while
        // the node stays readable at the versions that hold it.
        for &i in &update.replaced.nodes {
            // An evicted node stays marked: the versions that show it read its leaves.
            if !self.is_evicted(i) {
                let inner = std::mem::take(&mut self.nodes.get_mut(i).inner);
                self.release_levels(inner);
            }
        }
        if let Some(last) = self.versions.back_mut() {
            last.replaced_by_next = update.replaced;
        }
        for (i, path) in update.made.cold {
            self.cold.push_back((update.version, i, path));
        }
        self.versions.push_back(Version {
            number: update.version,
            root: update.root,
            replaced_by_next: Garbage::default(),
        });
        while self.versions.len() > self.keep {
            if let Some(old) = self.versions.pop_front() {
                self.free(old.replaced_by_next);
            }
        }
        Ok(())
    }

    /// Drops an update that will not be committed, freeing what it made.
    pub fn discard(&mut self, update: Update) {
        self.free(update.made);
    }

    fn free(&mut self, garbage: Garbage) {
        for i in garbage.nodes {
            if self.nodes.get(i).inner == EVICTED {
                self.evicted -= 1;
                self.nodes.get_mut(i).inner = 0;
            }
            self.nodes.release(i);
        }
        for i in garbage.leaves {
            self.leaves.release(i);
        }
        for i in garbage.inner {
            self.release_levels(i);
        }
    }

    /// Frees the levels a [`Node::inner`] names, if any.
    fn release_levels(&mut self, at: u32) {
        if at == EVICTED {
            return;
        }
        if at & QUARTERS_TAG != 0 {
            self.quarters.release(at & !QUARTERS_TAG);
        } else if at != 0 {
            self.inner.release(at);
        }
    }

    fn new_leaf(
        &mut self,
        key_hash: Hash,
        value_hash: Hash,
        made: &mut Garbage,
    ) -> Result<Ref, TreeError> {
        let index = self.leaves.alloc(Leaf {
            key_hash,
            value_hash,
        })?;
        made.leaves.push(index);
        Ok(Ref::leaf(index))
    }

    /// A new node at `depth` with `children`; `replacing` is the node it replaces and
    /// that node's children, if any.
    fn new_node(
        &mut self,
        depth: usize,
        children: [Ref; 16],
        replacing: Option<(u32, [Ref; 16])>,
        made: &mut Garbage,
    ) -> Result<Ref, TreeError> {
        // The slots whose child differs from the replaced node's, a bit each.
        let changed = |old: &[Ref; 16]| {
            (0..16)
                .filter(|&slot| children[slot] != old[slot])
                .fold(0u16, |mask, slot| mask | 1 << slot)
        };
        let (hash, inner) = if depth <= INNER_DEPTH {
            let old = replacing.and_then(|(i, old)| {
                let at = self.nodes.get(i).inner;
                (at != 0).then(|| (self.inner.get(at), changed(&old)))
            });
            let levels = self.inner_of(&children, old);
            let at = self.inner.alloc(levels)?;
            made.inner.push(at);
            (levels.0[0].hash(), at)
        } else if depth == QUARTERS_DEPTH {
            let old = replacing.and_then(|(i, old)| {
                let at = self.nodes.get(i).inner;
                (at & QUARTERS_TAG != 0 && at != EVICTED)
                    .then(|| (*self.quarters.get(at & !QUARTERS_TAG), changed(&old)))
            });
            let quarters = self.quarters_of(&children, old);
            let at = self.quarters.alloc(quarters)? | QUARTERS_TAG;
            made.inner.push(at);
            (quarters.root(self.suite).hash(), at)
        } else {
            (self.node_hash(&children), 0)
        };
        let index = self.nodes.alloc(Node {
            hash,
            children,
            inner,
        })?;
        made.nodes.push(index);
        Ok(Ref::node(index))
    }

    /// Notes a node made at [`EVICT_DEPTH`] for [`Tree::evict_cold`].
    fn made_cold(&self, node: Ref, depth: usize, key_hash: &Hash, made: &mut Garbage) {
        if let (EVICT_DEPTH, Kind::Node(i), Some(_)) = (depth, node.kind(), &self.source) {
            made.cold.push((i, node_path(key_hash, depth)));
        }
    }

    /// The subtree at `depth` (in nibbles) holding exactly `items` (sorted by key hash).
    fn build(
        &mut self,
        depth: usize,
        items: &[Item],
        made: &mut Garbage,
    ) -> Result<Ref, TreeError> {
        match items {
            [] => Ok(Ref::EMPTY),
            [Item::Existing(i, _)] => Ok(Ref::leaf(*i)),
            [Item::New(k, v)] => self.new_leaf(*k, *v, made),
            _ if depth == EVICT_DEPTH && self.building_on_disk => {
                let leaves: Vec<(Hash, Hash)> = items
                    .iter()
                    .filter_map(|item| match item {
                        Item::New(k, v) => Some((*k, *v)),
                        Item::Existing(..) => None,
                    })
                    .collect();
                debug_assert_eq!(leaves.len(), items.len(), "built from new leaves only");
                let index = self.nodes.alloc(Node {
                    hash: items_sub(self.suite, depth, &leaves).hash(),
                    children: [Ref::EMPTY; 16],
                    inner: EVICTED,
                })?;
                made.nodes.push(index);
                self.evicted += 1;
                Ok(Ref::node(index))
            }
            _ => {
                // Two distinct key hashes differ within 64 nibbles.
                assert!(depth < DEPTH_MAX, "two leaves with one key hash");
                let mut children = [Ref::EMPTY; 16];
                for (slot, part) in split(items, depth, Item::key_hash) {
                    children[slot] = self.build(depth + 1, part, made)?;
                }
                let node = self.new_node(depth, children, None, made)?;
                self.made_cold(node, depth, &items[0].key_hash(), made);
                Ok(node)
            }
        }
    }

    /// The subtree `at` (at `depth`) after `changes` (sorted, all under it).
    fn update(
        &mut self,
        at: Ref,
        depth: usize,
        changes: &[Change],
        made: &mut Garbage,
        replaced: &mut Garbage,
    ) -> Result<Ref, TreeError> {
        if changes.is_empty() {
            return Ok(at);
        }
        match at.kind() {
            Kind::Empty => {
                let items: Vec<Item> = changes
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| Item::New(*k, v)))
                    .collect();
                self.build(depth, &items, made)
            }
            Kind::Leaf(i) => {
                let leaf = *self.leaves.get(i);
                let mut items = Vec::with_capacity(changes.len() + 1);
                let mut kept = true;
                for (k, v) in changes {
                    if *k == leaf.key_hash {
                        kept = *v == Some(leaf.value_hash);
                        if !kept {
                            if let Some(v) = v {
                                items.push(Item::New(*k, *v));
                            }
                        }
                    } else if let Some(v) = v {
                        items.push(Item::New(*k, *v));
                    }
                }
                if kept {
                    let at = items.partition_point(|item| item.key_hash() < leaf.key_hash);
                    items.insert(at, Item::Existing(i, leaf.key_hash));
                } else {
                    replaced.leaves.push(i);
                }
                if items.len() == 1 && kept {
                    return Ok(at); // only changes that changed nothing
                }
                self.build(depth, &items, made)
            }
            Kind::Node(i) if self.is_evicted(i) => {
                // Brought back in place (same hash: the versions that show it are
                // unchanged), then updated as any node in memory.
                self.restore(i, &node_path(&changes[0].0, depth))?;
                self.update(at, depth, changes, made, replaced)
            }
            Kind::Node(i) => {
                assert!(depth < DEPTH_MAX, "a node below the last nibble");
                let old = self.nodes.get(i).children;
                let mut children = old;
                for (slot, part) in split(changes, depth, |c| c.0) {
                    children[slot] = self.update(old[slot], depth + 1, part, made, replaced)?;
                }
                if children == old {
                    return Ok(at);
                }
                replaced.nodes.push(i);
                let mut present = children.iter().filter(|c| **c != Ref::EMPTY);
                match (present.next(), present.next()) {
                    (None, _) => Ok(Ref::EMPTY),
                    // One leaf left under this node: the subtree is that leaf.
                    (Some(only), None) if matches!(only.kind(), Kind::Leaf(_)) => Ok(*only),
                    _ => {
                        let node = self.new_node(depth, children, Some((i, old)), made)?;
                        self.made_cold(node, depth, &changes[0].0, made);
                        Ok(node)
                    }
                }
            }
        }
    }

    /// The value hash of `key_hash` at a kept version.
    pub fn value_hash(&self, version: u64, key_hash: &Hash) -> Result<Option<Hash>, TreeError> {
        let mut at = self.version(version)?.root;
        let mut depth = 0;
        loop {
            match at.kind() {
                Kind::Empty => return Ok(None),
                Kind::Leaf(i) => {
                    let leaf = self.leaves.get(i);
                    return Ok((leaf.key_hash == *key_hash).then_some(leaf.value_hash));
                }
                Kind::Node(i) if self.is_evicted(i) => {
                    let (scratch, _) = self.scratch(i, &node_path(key_hash, depth))?;
                    return scratch.value_hash(0, key_hash);
                }
                Kind::Node(i) => {
                    at = self.nodes.get(i).children[nibble(key_hash, depth)];
                    depth += 1;
                }
            }
        }
    }

    /// Whether the latest version has a leaf for `key_hash`, from memory alone: `None`
    /// when the walk reaches an evicted subtree (the answer is on disk). A key the
    /// latest version lacks is absent from the state it commits, so a reader need not
    /// ask the disk for it (most first reads of a block are of keys it creates).
    pub fn holds_latest(&self, key_hash: &Hash) -> Option<bool> {
        let mut at = self.versions.back()?.root;
        let mut depth = 0;
        loop {
            match at.kind() {
                Kind::Empty => return Some(false),
                Kind::Leaf(i) => return Some(self.leaves.get(i).key_hash == *key_hash),
                Kind::Node(i) if self.is_evicted(i) => return None,
                Kind::Node(i) => {
                    at = self.nodes.get(i).children[nibble(key_hash, depth)];
                    depth += 1;
                }
            }
        }
    }

    /// The proof, at a kept version, that `key_hash` holds the value its leaf shows, or
    /// none: as `cbec_ledger::sparse` verifies it (siblings from the leaf up).
    pub fn proof(&self, version: u64, key_hash: &Hash) -> Result<SparseProof, TreeError> {
        let mut at = self.version(version)?.root;
        let root = self.stored(at);
        // Below an evicted node, the walk goes on in a tree of its leaves read back.
        let mut scratch: Option<Tree> = None;
        prove(self.suite, root, key_hash, |depth| {
            // `prove` goes down only into nodes, and `at` follows it.
            if let (Kind::Node(i), None) = (at.kind(), &scratch) {
                if self.is_evicted(i) {
                    let (tree, own) = self.scratch(i, &node_path(key_hash, depth))?;
                    at = own;
                    scratch = Some(tree);
                }
            }
            let tree = scratch.as_ref().unwrap_or(self);
            let Kind::Node(i) = at.kind() else {
                return Ok([Stored::Empty; 16]);
            };
            at = tree.nodes.get(i).children[nibble(key_hash, depth)];
            Ok(tree.stored_node(i))
        })
    }

    fn stored(&self, child: Ref) -> Stored {
        match child.kind() {
            Kind::Empty => Stored::Empty,
            Kind::Leaf(i) => {
                let leaf = self.leaves.get(i);
                Stored::Leaf {
                    key_hash: leaf.key_hash,
                    value_hash: leaf.value_hash,
                }
            }
            Kind::Node(i) => Stored::Node(self.nodes.get(i).hash),
        }
    }

    fn stored_node(&self, index: u32) -> StoredNode {
        self.nodes.get(index).children.map(|c| self.stored(c))
    }

    /// For an archive: the root of a kept version, and each node on the paths of
    /// `changes` in it (every node that version made is on one), given to `out` with
    /// its depth and [`node_path`].
    pub fn archive_changes(
        &self,
        version: u64,
        changes: &[Change],
        out: &mut dyn FnMut(usize, Hash, StoredNode),
    ) -> Result<Stored, TreeError> {
        let root = self.version(version)?.root;
        let mut seen = std::collections::HashSet::new();
        for (key_hash, _) in changes {
            let (mut at, mut depth) = (root, 0);
            while let Kind::Node(i) = at.kind() {
                if self.is_evicted(i) {
                    // Not made by this version (every node it made is younger than
                    // any evicted one), so given with the version that made it.
                    break;
                }
                if !seen.insert(i) {
                    // Its path up to here was given already; below may differ.
                } else {
                    out(depth, node_path(key_hash, depth), self.stored_node(i));
                }
                at = self.nodes.get(i).children[nibble(key_hash, depth)];
                depth += 1;
            }
        }
        Ok(self.stored(root))
    }

    /// For an archive that starts at a kept version: its root, and every node in it
    /// (as [`Tree::archive_changes`] gives them).
    pub fn archive_all(
        &self,
        version: u64,
        out: &mut dyn FnMut(usize, Hash, StoredNode),
    ) -> Result<Stored, TreeError> {
        let root = self.version(version)?.root;
        // Depth-first, with each node's path: (node, depth, path).
        let mut stack = vec![(root, 0usize, Hash([0; 32]))];
        while let Some((at, depth, path)) = stack.pop() {
            let Kind::Node(i) = at.kind() else { continue };
            if self.is_evicted(i) {
                let (scratch, own) = self.scratch(i, &path)?;
                scratch.walk_nodes(own, depth, path, out);
                continue;
            }
            out(depth, path, self.stored_node(i));
            for (slot, child) in self.nodes.get(i).children.iter().enumerate() {
                if matches!(child.kind(), Kind::Node(_)) {
                    stack.push((*child, depth + 1, child_path(&path, depth, slot)));
                }
            }
        }
        Ok(self.stored(root))
    }

    /// Every node of the subtree `at` (at `depth`, on `path`; nothing evicted in it).
    fn walk_nodes(
        &self,
        at: Ref,
        depth: usize,
        path: Hash,
        out: &mut dyn FnMut(usize, Hash, StoredNode),
    ) {
        let mut stack = vec![(at, depth, path)];
        while let Some((at, depth, path)) = stack.pop() {
            let Kind::Node(i) = at.kind() else { continue };
            out(depth, path, self.stored_node(i));
            for (slot, child) in self.nodes.get(i).children.iter().enumerate() {
                if matches!(child.kind(), Kind::Node(_)) {
                    stack.push((*child, depth + 1, child_path(&path, depth, slot)));
                }
            }
        }
    }
}

/// Consecutive runs of `items` (sorted by key hash) with the same nibble at `depth`.
/// The error for the leaves of the evicted node on `path`.
fn leaves_failed(path: &Hash, reason: String) -> TreeError {
    TreeError::Leaves {
        path: hex::encode(&path.0[..EVICT_DEPTH.div_ceil(2)]),
        reason,
    }
}

fn split<'a, T>(
    items: &'a [T],
    depth: usize,
    key: impl Fn(&T) -> Hash + 'a,
) -> impl Iterator<Item = (usize, &'a [T])> + 'a {
    let mut rest = items;
    std::iter::from_fn(move || {
        let slot = nibble(&key(rest.first()?), depth);
        let len = rest.partition_point(|item| nibble(&key(item), depth) == slot);
        let (run, after) = rest.split_at(len);
        rest = after;
        Some((slot, run))
    })
}

/// The path of a node's child in `slot`, the node being at `depth` on `path`.
fn child_path(path: &Hash, depth: usize, slot: usize) -> Hash {
    let mut below = *path;
    let nib = slot as u8;
    below.0[depth / 2] |= if depth % 2 == 0 { nib << 4 } else { nib };
    below
}

/// The subtree at `depth` of `leaves` (sorted by key hash), hashed without building it.
fn items_sub(suite: Suite, depth: usize, leaves: &[(Hash, Hash)]) -> Sub {
    match leaves {
        [] => Sub::Empty,
        [(key_hash, value_hash)] => Sub::One(
            Leaf {
                key_hash: *key_hash,
                value_hash: *value_hash,
            }
            .hash(suite),
        ),
        _ if depth >= DEPTH_MAX => Sub::Empty, // two leaves with one key hash: refused above
        _ => {
            let mut subs = [Sub::Empty; 16];
            for (slot, part) in split(leaves, depth, |l| l.0) {
                subs[slot] = items_sub(suite, depth + 1, part);
            }
            reduce(suite, &subs, 0, 16)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::Suite;

    const SUITE: Suite = Suite::Ed25519Sha256;
    use jmt::storage::{LeafNode, Node as JmtNode, NodeKey, TreeReader};
    use jmt::{KeyHash, OwnedValue, Sha256Jmt, Version as JmtVersion};
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    /// A store for `jmt` in memory: the oracle's own storage.
    #[derive(Default)]
    struct JmtDb {
        nodes: RefCell<HashMap<NodeKey, JmtNode>>,
        values: RefCell<BTreeMap<(KeyHash, JmtVersion), Option<OwnedValue>>>,
    }

    impl TreeReader for JmtDb {
        fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<JmtNode>> {
            Ok(self.nodes.borrow().get(key).cloned())
        }

        fn get_value_option(
            &self,
            max_version: JmtVersion,
            key_hash: KeyHash,
        ) -> anyhow::Result<Option<OwnedValue>> {
            Ok(self
                .values
                .borrow()
                .range((key_hash, 0)..=(key_hash, max_version))
                .next_back()
                .and_then(|(_, v)| v.clone()))
        }

        fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
            Ok(None)
        }
    }

    /// A block's writes: keys with their new values or deletions.
    type Block = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn key(i: u32) -> Vec<u8> {
        format!("k/{i}").into_bytes()
    }

    fn apply(tree: &mut Tree, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Hash {
        let changes = changes(
            SUITE,
            writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
        );
        let update = tree.prepare(tree.latest() + 1, &changes).expect("prepare");
        let root = update.root_hash();
        tree.commit(update).expect("commit");
        root
    }

    /// `jmt` (with its own in-memory store) as the oracle of roots and proofs.
    fn jmt_roots(blocks: &[Block]) -> Vec<Hash> {
        let db = JmtDb::default();
        let mut roots = Vec::new();
        for (version, writes) in blocks.iter().enumerate() {
            let set = writes
                .iter()
                .map(|(k, v)| (KeyHash::with::<sha2::Sha256>(k), v.clone()));
            let (root, batch) = Sha256Jmt::new(&db)
                .put_value_set(set, version as u64)
                .expect("jmt");
            db.nodes.borrow_mut().extend(
                batch
                    .node_batch
                    .nodes()
                    .iter()
                    .map(|(k, n)| (k.clone(), n.clone())),
            );
            db.values.borrow_mut().extend(
                batch
                    .node_batch
                    .values()
                    .iter()
                    .map(|((v, k), val)| ((*k, *v), val.clone())),
            );
            roots.push(Hash(root.0));
        }
        roots
    }

    fn run(blocks: &[Block]) -> (Tree, Vec<Hash>) {
        let mut tree = Tree::new(0, 1_000, SUITE);
        let mut roots = Vec::new();
        for writes in blocks {
            roots.push(apply(&mut tree, writes));
        }
        (tree, roots)
    }

    #[test]
    fn roots_equal_jmts_through_inserts_updates_and_deletes() {
        let mut blocks = Vec::new();
        for b in 0..6u32 {
            let mut w: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..800u32)
                .filter(|i| i % 6 <= b)
                .map(|i| (key(i), Some(format!("{b}-{i}").into_bytes())))
                .collect();
            if b >= 3 {
                // Delete some keys, some of them absent.
                w.retain(|(k, _)| !k.ends_with(b"7"));
                w.extend((0..900u32).filter(|i| i % 10 == 7).map(|i| (key(i), None)));
            }
            blocks.push(w);
        }
        let (_, ours) = run(&blocks);
        // jmt's versions start at 0; ours at 1 (version 0 is the empty tree).
        assert_eq!(ours, jmt_roots(&blocks));
    }

    #[test]
    fn an_empty_tree_and_a_single_leaf_hash_as_the_ledger_says() {
        // Keeping one version: what the older ones held is freed at once.
        let tree = Tree::new(0, 1, SUITE);
        assert_eq!(tree.root_hash(0).expect("root"), PLACEHOLDER);
        let mut tree = tree;
        let root = apply(&mut tree, &[(b"a".to_vec(), Some(b"1".to_vec()))]);
        let leaf = SparseLeaf {
            key_hash: sparse::key_hash(SUITE, b"a"),
            value_hash: sparse::value_hash(SUITE, b"1"),
        };
        assert_eq!(root, leaf.hash(SUITE));
        // Deleting the last key gives the empty tree again.
        let root = apply(&mut tree, &[(b"a".to_vec(), None)]);
        assert_eq!(root, PLACEHOLDER);
        assert_eq!(tree.size().leaves, 0);
    }

    #[test]
    fn proofs_verify_in_the_ledger_for_present_and_absent_keys_at_kept_versions() {
        let blocks: Vec<Vec<_>> = (0..4u32)
            .map(|b| {
                (0..500u32)
                    .filter(|i| i % 4 <= b)
                    .map(|i| (key(i), Some(format!("{b}:{i}").into_bytes())))
                    .collect()
            })
            .collect();
        let (tree, roots) = run(&blocks);
        for (v, root) in roots.iter().enumerate() {
            let version = v as u64 + 1;
            let values: BTreeMap<Vec<u8>, Vec<u8>> = blocks[..=v]
                .iter()
                .flatten()
                .map(|(k, val)| (k.clone(), val.clone().expect("no deletes")))
                .collect();
            for i in (0..700u32).step_by(7) {
                let k = key(i);
                let proof = tree
                    .proof(version, &sparse::key_hash(SUITE, &k))
                    .expect("proof");
                let value = values.get(&k).map(Vec::as_slice);
                proof
                    .verify(SUITE, root, &k, value)
                    .unwrap_or_else(|e| panic!("key {i} at {version}: {e}"));
                let wrong = if value.is_some() {
                    None
                } else {
                    Some(&b"x"[..])
                };
                assert!(proof.verify(SUITE, root, &k, wrong).is_err());
            }
        }
    }

    #[test]
    fn old_versions_are_kept_as_configured_and_then_freed() {
        let mut tree = Tree::new(0, 3, SUITE);
        let mut roots = vec![PLACEHOLDER];
        for b in 1..=10u32 {
            let w: Vec<_> = (0..200u32)
                .map(|i| (key(i), Some(format!("{b}/{i}").into_bytes())))
                .collect();
            roots.push(apply(&mut tree, &w));
        }
        assert_eq!((tree.oldest(), tree.latest()), (8, 10));
        for v in 8..=10 {
            assert_eq!(tree.root_hash(v).expect("kept"), roots[v as usize]);
        }
        assert!(matches!(
            tree.root_hash(7),
            Err(TreeError::NotKept { asked: 7, .. })
        ));
        // Three versions of 200 keys, sharing nothing but the shape: at most three
        // trees' worth of leaves are alive.
        let size = tree.size();
        assert!(size.leaves <= 3 * 200, "{size:?}");
        assert!(size.leaves >= 200, "{size:?}");
    }

    #[test]
    fn a_discarded_update_leaves_the_tree_as_it_was() {
        let mut tree = Tree::new(0, 2, SUITE);
        let w: Vec<_> = (0..300u32).map(|i| (key(i), Some(b"v".to_vec()))).collect();
        let root = apply(&mut tree, &w);
        let before = tree.size();
        let keys: Vec<Vec<u8>> = (0..300u32).map(key).collect();
        let changes = changes(SUITE, keys.iter().map(|k| (k.as_slice(), Some(&b"w"[..]))));
        let update = tree.prepare(2, &changes).expect("prepare");
        assert_ne!(update.root_hash(), root);
        assert!(tree.size().leaves > before.leaves);
        tree.discard(update);
        assert_eq!(tree.size(), before);
        assert_eq!(tree.root_hash(1).expect("root"), root);
        // An update must build on the latest version.
        assert!(matches!(
            tree.prepare(5, &changes),
            Err(TreeError::NotLatest { .. })
        ));
    }

    #[test]
    fn a_tree_built_from_its_leaves_equals_the_tree_built_block_by_block() {
        let blocks: Vec<Vec<_>> = (0..3u32)
            .map(|b| {
                (0..400u32)
                    .filter(|i| (i + b) % 3 != 0)
                    .map(|i| (key(i), Some(format!("{b}{i}").into_bytes())))
                    .collect()
            })
            .collect();
        let (_, roots) = run(&blocks);
        let mut latest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in blocks.iter().flatten() {
            latest.insert(k.clone(), v.clone().expect("value"));
        }
        let leaves = latest
            .iter()
            .map(|(k, v)| (sparse::key_hash(SUITE, k), sparse::value_hash(SUITE, v)))
            .collect();
        let rebuilt = Tree::from_leaves(3, 1, SUITE, leaves).expect("build");
        assert_eq!(rebuilt.root_hash(3).expect("root"), roots[2]);
    }

    #[test]
    fn a_stored_node_round_trips_and_a_cut_or_unknown_one_is_refused() {
        let mut node = [Stored::Empty; 16];
        node[3] = Stored::Leaf {
            key_hash: Hash([7; 32]),
            value_hash: Hash([8; 32]),
        };
        node[15] = Stored::Node(Hash([9; 32]));
        let bytes = encode_node(&node);
        assert_eq!(bytes.len(), 14 + 65 + 33);
        assert_eq!(decode_node(&bytes), Some(node));
        assert_eq!(decode_node(&bytes[..bytes.len() - 1]), None, "cut short");
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_node(&longer), None, "a byte too many");
        let mut unknown = bytes;
        unknown[0] = 3;
        assert_eq!(decode_node(&unknown), None, "unknown tag");
    }

    #[test]
    fn a_nodes_path_keeps_only_its_depths_nibbles() {
        let key = Hash([0xab; 32]);
        assert_eq!(node_path(&key, 0), Hash([0; 32]));
        let mut one = [0; 32];
        one[0] = 0xa0;
        assert_eq!(node_path(&key, 1), Hash(one));
        one[0] = 0xab;
        one[1] = 0xa0;
        assert_eq!(node_path(&key, 3), Hash(one));
        assert_eq!(node_path(&key, 64), key);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random blocks of inserts, updates and deletes over a small key space (so
        /// subtrees split and collapse often): every root equals jmt's, and a rebuild
        /// from the final leaves gives the same root.
        #[test]
        fn random_histories_agree_with_jmt(
            blocks in prop::collection::vec(
                prop::collection::vec((0u32..64, prop::option::of(0u8..4)), 0..40),
                1..8,
            )
        ) {
            let blocks: Vec<Block> = blocks
                .into_iter()
                .map(|w| {
                    let mut m = BTreeMap::new();
                    for (k, v) in w {
                        m.insert(key(k), v.map(|v| vec![v]));
                    }
                    m.into_iter().collect()
                })
                .collect();
            let (tree, ours) = run(&blocks);
            prop_assert_eq!(&ours, &jmt_roots(&blocks));
            let mut latest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (k, v) in blocks.iter().flatten() {
                match v {
                    Some(v) => { latest.insert(k.clone(), v.clone()); }
                    None => { latest.remove(k); }
                }
            }
            let leaves = latest
                .iter()
                .map(|(k, v)| (sparse::key_hash(SUITE, k), sparse::value_hash(SUITE, v)))
                .collect();
            let rebuilt = Tree::from_leaves(0, 1, SUITE, leaves).expect("build");
            let last = *ours.last().expect("a block");
            prop_assert_eq!(rebuilt.root_hash(0).expect("root"), last);
            prop_assert_eq!(rebuilt.size().leaves, latest.len());
            prop_assert!(tree.size().leaves >= latest.len());
        }

        /// An archive started at the first version and extended with each version's
        /// changed paths proves every key at every version exactly as the tree does
        /// while it keeps that version.
        #[test]
        fn archived_nodes_prove_every_version_as_the_tree_does(
            blocks in prop::collection::vec(
                prop::collection::vec((0u32..64, prop::option::of(0u8..4)), 0..40),
                1..8,
            )
        ) {
            let mut tree = Tree::new(0, 1_000, SUITE);
            let mut archive: BTreeMap<(usize, Hash, u64), Vec<u8>> = BTreeMap::new();
            let mut roots = BTreeMap::new();
            for (i, w) in blocks.into_iter().enumerate() {
                let block: Block = w
                    .into_iter()
                    .map(|(k, v)| (key(k), v.map(|v| vec![v])))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect();
                apply(&mut tree, &block);
                let version = tree.latest();
                let mut out = |depth, path, node: StoredNode| {
                    archive.insert((depth, path, version), encode_node(&node));
                };
                let root = if i == 0 {
                    tree.archive_all(version, &mut out).expect("kept")
                } else {
                    let changes = changes(SUITE, block.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
                    tree.archive_changes(version, &changes, &mut out).expect("kept")
                };
                roots.insert(version, root);
            }
            for (&version, &root) in &roots {
                for k in 0..70u32 {
                    let key_hash = sparse::key_hash(SUITE, &key(k));
                    let archived = prove(SUITE, root, &key_hash, |depth| {
                        let path = node_path(&key_hash, depth);
                        archive
                            .range((depth, path, 0)..=(depth, path, version))
                            .next_back()
                            .and_then(|(_, bytes)| decode_node(bytes))
                            .ok_or(())
                    });
                    prop_assert_eq!(archived, Ok(tree.proof(version, &key_hash).expect("kept")));
                }
            }
        }
    }

    impl Tree {
        /// Checks that every node of the latest version down to [`INNER_DEPTH`] keeps
        /// binary levels, and every one at [`QUARTERS_DEPTH`] quarters, equal to its
        /// children's hashed from scratch, and that no other levels are kept (those of
        /// replaced or discarded nodes were freed): the number of nodes with binary
        /// levels.
        fn check_inner(&self) -> usize {
            self.check_levels().0
        }

        /// [`Tree::check_inner`]'s checks: the nodes with binary levels, and those with
        /// quarters.
        fn check_levels(&self) -> (usize, usize) {
            let mut stack = vec![(self.versions.back().expect("a version").root, 0)];
            let (mut count, mut quartered) = (0, 0);
            while let Some((at, depth)) = stack.pop() {
                let Kind::Node(i) = at.kind() else { continue };
                let node = self.nodes.get(i);
                if depth <= INNER_DEPTH {
                    assert_ne!(node.inner, 0, "a node at depth {depth} without its levels");
                    assert_eq!(node.inner & QUARTERS_TAG, 0, "quarters at depth {depth}");
                    let kept = self.inner.get(node.inner);
                    let fresh = self.inner_of(&node.children, None);
                    assert_eq!(kept.0, fresh.0, "stale levels at depth {depth}");
                    assert_eq!(kept.0[0].hash(), node.hash);
                    count += 1;
                } else if depth == QUARTERS_DEPTH {
                    assert_ne!(node.inner & QUARTERS_TAG, 0, "a node without its quarters");
                    let kept = self.quarters.get(node.inner & !QUARTERS_TAG);
                    let subs = self.child_subs(&node.children, u16::MAX);
                    for q in 0..4 {
                        assert_eq!(
                            kept.0[q],
                            reduce(self.suite, &subs, 4 * q, 4),
                            "quarter {q}"
                        );
                    }
                    assert_eq!(kept.root(self.suite).hash(), node.hash);
                    quartered += 1;
                } else {
                    assert_eq!(node.inner, 0, "levels kept below depth {QUARTERS_DEPTH}");
                }
                assert_eq!(node.hash, self.node_hash(&node.children));
                stack.extend(node.children.iter().map(|c| (*c, depth + 1)));
            }
            assert_eq!(
                self.inner.live() - 1,
                count,
                "levels kept for no latest node"
            );
            assert_eq!(
                self.quarters.live(),
                quartered,
                "quarters kept for no latest node"
            );
            (count, quartered)
        }
    }

    /// A block of up to `n` writes to distinct keys below `space`, some of them
    /// deletes, from `seed` (a block writes a key once: [`changes`] keeps one write).
    fn random_block(seed: &mut u64, n: usize, space: u32) -> Block {
        let writes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let i = (*seed >> 33) as u32 % space;
                let value = (*seed >> 20) % 5 != 0;
                (key(i), value.then(|| seed.to_be_bytes().to_vec()))
            })
            .collect();
        writes.into_iter().collect()
    }

    #[test]
    fn nodes_rehashed_along_changed_paths_hash_as_nodes_built_whole() {
        // 30,000 keys fill every slot of the nodes at depths 0 to 3 and many at 4; each
        // block then changes a few children of each node it reaches.
        let mut seed = 7;
        let mut tree = Tree::new(0, 4, SUITE);
        let mut values: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut blocks = vec![(0..30_000u32)
            .map(|i| (key(i), Some(i.to_be_bytes().to_vec())))
            .collect::<Block>()];
        for n in [1, 2, 5, 40, 300, 3, 1_000, 1] {
            blocks.push(random_block(&mut seed, n, 40_000));
        }
        for block in &blocks {
            let root = apply(&mut tree, block);
            for (k, v) in block {
                match v {
                    Some(v) => values.insert(k.clone(), v.clone()),
                    None => values.remove(k),
                };
            }
            let leaves = values
                .iter()
                .map(|(k, v)| (sparse::key_hash(SUITE, k), sparse::value_hash(SUITE, v)))
                .collect();
            let whole = Tree::from_leaves(0, 1, SUITE, leaves).expect("build");
            assert_eq!(root, whole.root_hash(0).expect("root"));
            assert!(tree.check_inner() > 4_000);
        }
    }

    #[test]
    fn a_discarded_update_frees_the_levels_it_made_and_the_committed_one_replaces() {
        let mut seed = 11;
        let mut tree = Tree::new(0, 2, SUITE);
        apply(&mut tree, &random_block(&mut seed, 5_000, 8_000));
        let kept = tree.check_inner();
        let block = random_block(&mut seed, 200, 8_000);
        let changes = changes(
            SUITE,
            block.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
        );
        let version = tree.latest() + 1;
        // Two proposals for one height: one is discarded, the other committed.
        let first = tree.prepare(version, &changes).expect("prepare");
        let with_first = tree.inner.live();
        assert!(with_first - 1 > kept, "an update makes levels");
        let second = tree.prepare(version, &changes[..100]).expect("prepare");
        assert!(tree.inner.live() > with_first, "each update makes levels");
        tree.discard(second);
        assert_eq!(tree.inner.live(), with_first);
        tree.commit(first).expect("commit");
        tree.check_inner();
        // Updates that change nothing keep every node and its levels.
        let same = tree.prepare(version + 1, &[]).expect("prepare");
        assert_eq!(same.root_hash(), tree.root_hash(version).expect("root"));
        tree.commit(same).expect("commit");
        tree.check_inner();
    }

    /// Key hashes whose first five nibbles take one of `prefixes` values (spread over
    /// the space), the rest from `i`: `i`'s key lands in a node at [`QUARTERS_DEPTH`]
    /// holding about `count / prefixes` keys, as in a state of millions of keys.
    fn deep_key(i: u32, prefixes: u32) -> Hash {
        let mut h = sparse::key_hash(SUITE, &key(i));
        let prefix = (i % prefixes) * (0xf_ffff / prefixes);
        h.0[0] = (prefix >> 12) as u8;
        h.0[1] = (prefix >> 4) as u8;
        h.0[2] = (h.0[2] & 0x0f) | ((prefix & 0xf) << 4) as u8;
        h
    }

    #[test]
    fn quarters_rehashed_for_changed_children_hash_as_nodes_built_whole() {
        // 6,000 keys under 300 nodes at depth 5, 20 keys each: most slots of those nodes
        // full, as at 10^7 keys. Each block changes, inserts and deletes some of them.
        let prefixes = 300;
        let mut seed = 5u64;
        let mut tree = Tree::new(0, 3, SUITE);
        let mut values: BTreeMap<Hash, Hash> = BTreeMap::new();
        let first: Vec<(u32, Option<u64>)> = (0..6_000).map(|i| (i, Some(u64::from(i)))).collect();
        let mut blocks = vec![first];
        for n in [1, 2, 7, 60, 400, 3, 1_500, 1] {
            blocks.push(random_changes(&mut seed, n, 8_000));
        }
        for block in &blocks {
            let changes = deep_changes(block, prefixes);
            let update = tree.prepare(tree.latest() + 1, &changes).expect("prepare");
            let root = update.root_hash();
            tree.commit(update).expect("commit");
            for (k, v) in &changes {
                match v {
                    Some(v) => values.insert(*k, *v),
                    None => values.remove(k),
                };
            }
            let whole = Tree::from_leaves(0, 1, SUITE, values.clone().into_iter().collect())
                .expect("build");
            assert_eq!(root, whole.root_hash(0).expect("root"));
            let (_, quartered) = tree.check_levels();
            assert!(quartered >= 290, "{quartered} nodes with quarters");
        }
        // A discarded update frees the quarters it made.
        let before = tree.quarters.live();
        let changes = vec![(deep_key(1, prefixes), Some(Hash([9; 32])))];
        let update = tree.prepare(tree.latest() + 1, &changes).expect("prepare");
        assert_eq!(tree.quarters.live(), before + 1);
        tree.discard(update);
        assert_eq!(tree.quarters.live(), before);
    }

    /// A source that hands back what `persist` was given: the disk of the tests.
    #[derive(Debug, Default)]
    struct MapSource {
        leaves: std::sync::Mutex<BTreeMap<Hash, Hash>>,
    }

    impl MapSource {
        fn persist(&self, changes: &[Change]) {
            let mut leaves = self.leaves.lock().expect("lock");
            for (k, v) in changes {
                match v {
                    Some(v) => leaves.insert(*k, *v),
                    None => leaves.remove(k),
                };
            }
        }
    }

    impl LeafSource for MapSource {
        fn leaves_under(&self, path: &Hash) -> Result<Vec<(Hash, Hash)>, String> {
            let leaves = self.leaves.lock().expect("lock");
            Ok(leaves
                .range(*path..)
                .take_while(|(k, _)| node_path(k, EVICT_DEPTH) == *path)
                .map(|(k, v)| (*k, *v))
                .collect())
        }
    }

    /// A block of (key index, value) as the tree's changes: [`deep_key`]s under
    /// `prefixes` prefixes, sorted by key hash.
    fn deep_changes(block: &[(u32, Option<u64>)], prefixes: u32) -> Vec<Change> {
        let mut changes: Vec<Change> = block
            .iter()
            .map(|(i, v)| {
                let value = v.map(|v| sparse::value_hash(SUITE, &v.to_be_bytes()));
                (deep_key(*i, prefixes), value)
            })
            .collect();
        changes.sort_unstable_by_key(|c| c.0);
        changes
    }

    /// `n` changes to keys below `keys` drawn from `seed` (one in four a deletion), in
    /// key order, a key at most once.
    fn random_changes(seed: &mut u64, n: usize, keys: u32) -> Vec<(u32, Option<u64>)> {
        let block: BTreeMap<u32, Option<u64>> = (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let i = (*seed >> 33) as u32 % keys;
                (i, ((*seed >> 20) % 4 != 0).then_some(*seed))
            })
            .collect();
        block.into_iter().collect()
    }

    /// Blocks of changes to keys under 300 nodes at depth 5 (20 keys each at first),
    /// then small blocks that change a few of them.
    fn cold_blocks(small: usize) -> Vec<Vec<Change>> {
        let prefixes = 300;
        let mut seed = 11u64;
        let mut blocks = vec![(0..6_000u32)
            .map(|i| (i, Some(u64::from(i))))
            .collect::<Vec<_>>()];
        for n in (0..small).map(|b| [1, 3, 20, 2][b % 4]) {
            blocks.push(random_changes(&mut seed, n, 7_000));
        }
        blocks
            .iter()
            .map(|block| deep_changes(block, prefixes))
            .collect()
    }

    /// A tree that evicts, beside one that does not, through the same blocks; the disk
    /// (the source) two versions behind, as the store's persisting thread may be.
    struct ColdPair {
        cold: Tree,
        whole: Tree,
        source: Arc<MapSource>,
        unwritten: VecDeque<Vec<Change>>,
        most_evicted: usize,
    }

    impl ColdPair {
        fn new(keep: usize) -> ColdPair {
            ColdPair::with_budget(keep, 0)
        }

        /// `resident`: the most leaves the evicting tree keeps in memory.
        fn with_budget(keep: usize, resident: usize) -> ColdPair {
            let source = Arc::new(MapSource::default());
            let mut cold = Tree::new(0, keep, SUITE);
            cold.set_source(source.clone(), resident);
            ColdPair {
                cold,
                whole: Tree::new(0, keep, SUITE),
                source,
                unwritten: VecDeque::new(),
                most_evicted: 0,
            }
        }

        fn apply(&mut self, changes: &[Change]) {
            let version = self.cold.latest() + 1;
            // As the store does: what the update reaches on disk read ahead.
            let wanted = self.cold.evicted_under(changes);
            let fetched = self.source.leaves_under_many(&wanted).expect("read");
            let fetched = wanted.into_iter().zip(fetched).collect();
            let update = self
                .cold
                .prepare_fetched(version, changes, fetched)
                .expect("prepare");
            assert!(self.cold.fetched.is_empty(), "read-ahead dropped after use");
            let expected = self.whole.prepare(version, changes).expect("prepare");
            assert_eq!(
                update.root_hash(),
                expected.root_hash(),
                "version {version}"
            );
            self.cold.commit(update).expect("commit");
            self.whole.commit(expected).expect("commit");
            self.unwritten.push_back(changes.to_vec());
            while self.unwritten.len() > 2 {
                let written = self.unwritten.pop_front().expect("one");
                self.source.persist(&written);
            }
            let persisted = self.cold.latest() - self.unwritten.len() as u64;
            self.cold.evict_cold(persisted);
            self.most_evicted = self.most_evicted.max(self.cold.size().evicted);
        }

        /// Proofs and values of `keys` at every kept version, from both trees.
        fn check(&self, keys: &[Hash]) {
            for version in self.cold.oldest()..=self.cold.latest() {
                assert_eq!(
                    self.cold.root_hash(version).expect("kept"),
                    self.whole.root_hash(version).expect("kept")
                );
                for key in keys {
                    assert_eq!(
                        self.cold.proof(version, key).expect("proof"),
                        self.whole.proof(version, key).expect("proof"),
                        "version {version}"
                    );
                    assert_eq!(
                        self.cold.value_hash(version, key).expect("value"),
                        self.whole.value_hash(version, key).expect("value")
                    );
                }
            }
        }
    }

    #[test]
    fn evicted_subtrees_read_back_prove_and_update_as_the_whole_tree() {
        let mut pair = ColdPair::new(4);
        let keys: Vec<Hash> = (0..7_000).step_by(97).map(|i| deep_key(i, 300)).collect();
        for (b, changes) in cold_blocks(40).iter().enumerate() {
            pair.apply(changes);
            let changed: Vec<Hash> = changes.iter().map(|c| c.0).collect();
            pair.check(&changed);
            if b % 8 == 0 {
                pair.check(&keys);
            }
        }
        let (cold, whole) = (pair.cold.size(), pair.whole.size());
        assert!(pair.most_evicted >= 250, "{} evicted", pair.most_evicted);
        assert!(
            cold.leaves * 4 < whole.leaves,
            "in memory: {cold:?} against {whole:?}"
        );
        // Whole archives agree, evicted subtrees walked from their leaves.
        let latest = pair.cold.latest();
        let mut walked = [BTreeMap::new(), BTreeMap::new()];
        for (tree, nodes) in [&pair.cold, &pair.whole].into_iter().zip(&mut walked) {
            tree.archive_all(latest, &mut |depth, path, node| {
                nodes.insert((depth, path), encode_node(&node));
            })
            .expect("archive");
        }
        assert_eq!(walked[0], walked[1]);
        // Every evicted node goes once the versions that show it are dropped.
        for _ in 0..10 {
            pair.apply(&[]);
        }
        // Built from the leaves on disk (the last two versions changed nothing), the
        // tree holds nothing below the eviction depth and proves the same.
        let leaves: Vec<(Hash, Hash)> = pair
            .source
            .leaves
            .lock()
            .expect("lock")
            .clone()
            .into_iter()
            .collect();
        let latest = pair.whole.latest();
        let built = Tree::from_leaves_on_disk(latest, 4, SUITE, leaves, pair.source.clone(), 0)
            .expect("build");
        assert_eq!(built.root_hash(latest), pair.whole.root_hash(latest));
        assert!(
            built.size().evicted >= 250 && built.size().leaves < 100,
            "{:?}",
            built.size()
        );
        for key in &keys {
            assert_eq!(
                built.proof(latest, key).expect("proof"),
                pair.whole.proof(latest, key).expect("proof")
            );
        }
    }

    /// `holds_latest` answers from memory what the latest version's values say, for keys
    /// present, deleted and never written; a tree with evicted subtrees answers the same
    /// or, where the walk reaches one, defers to the disk (never a wrong "absent").
    #[test]
    fn a_key_the_latest_version_lacks_is_known_absent_from_memory() {
        let mut pair = ColdPair::new(4);
        for changes in cold_blocks(40) {
            pair.apply(&changes);
        }
        let latest = pair.whole.latest();
        // Keys 0..7,000 were written (some deleted since); 7,000.. never were.
        let (mut present, mut absent, mut deferred) = (0, 0, 0);
        for i in (0..9_000).step_by(7) {
            let key = deep_key(i, 300);
            let holds = pair.whole.value_hash(latest, &key).expect("kept").is_some();
            assert_eq!(pair.whole.holds_latest(&key), Some(holds), "key {i}");
            match pair.cold.holds_latest(&key) {
                Some(answer) => assert_eq!(answer, holds, "key {i}, evicting tree"),
                None => deferred += 1,
            }
            if holds {
                present += 1;
            } else {
                absent += 1;
            }
        }
        assert!(
            present > 500 && absent > 300,
            "{present} present, {absent} absent"
        );
        assert!(deferred > 0, "some walks reach an evicted subtree");
        // An empty tree holds nothing.
        assert_eq!(
            Tree::new(0, 1, SUITE).holds_latest(&deep_key(1, 300)),
            Some(false)
        );
    }

    /// With a budget, eviction stops at it, the subtrees changed longest ago going
    /// first: a tree that keeps more leaves than another with a smaller budget, both
    /// far fewer than the whole tree, and both giving its roots and proofs.
    #[test]
    fn eviction_keeps_the_budget_and_evicts_the_oldest_first() {
        let blocks = cold_blocks(40);
        let mut all = ColdPair::new(4);
        let mut budget = ColdPair::with_budget(4, 2_000);
        for changes in &blocks {
            all.apply(changes);
            budget.apply(changes);
            let (kept, whole) = (budget.cold.size().leaves, budget.whole.size().leaves);
            // Over the budget only while nothing old enough is left to evict.
            if kept > 2_000 {
                let front = budget.cold.cold.front().map(|c| c.0);
                assert!(
                    front.is_none_or(|made| made > budget.cold.oldest()),
                    "{kept} leaves kept of {whole} with an old subtree still in memory"
                );
            }
        }
        let (none, some, whole) = (
            all.cold.size().leaves,
            budget.cold.size().leaves,
            budget.whole.size().leaves,
        );
        assert!(none < some && some < whole, "{none} < {some} < {whole}");
        assert!(
            some <= 2_000 + 4 * 300,
            "{some} leaves for a budget of 2,000"
        );
        let keys: Vec<Hash> = (0..7_000).step_by(89).map(|i| deep_key(i, 300)).collect();
        budget.check(&keys);
        // The subtrees kept are the ones changed last: the last block's are in memory.
        let latest = budget.cold.latest();
        for (key, _) in blocks.last().expect("a block") {
            let path = node_path(key, EVICT_DEPTH);
            if let Some(i) = budget.cold.cold_node_at(latest, &path) {
                assert!(!budget.cold.is_evicted(i), "the last block's subtree kept");
            }
        }
    }

    /// Leaves read ahead that are not the node's (a stale or damaged read) are never
    /// used: the update reads them again from the source and gives the right root.
    #[test]
    fn leaves_read_ahead_wrong_are_read_again() {
        let mut pair = ColdPair::new(4);
        let blocks = cold_blocks(12);
        for changes in &blocks[..11] {
            pair.apply(changes);
        }
        let changes = &blocks[11];
        let wanted = pair.cold.evicted_under(changes);
        assert!(!wanted.is_empty(), "the block reaches evicted subtrees");
        let mut fetched: Vec<(Hash, Vec<(Hash, Hash)>)> = wanted
            .iter()
            .zip(pair.source.leaves_under_many(&wanted).expect("read"))
            .map(|(p, l)| (*p, l))
            .collect();
        for (_, leaves) in &mut fetched {
            match leaves.first_mut() {
                Some(leaf) => leaf.1 .0[0] ^= 1,
                None => leaves.push((Hash([7; 32]), Hash([7; 32]))),
            }
        }
        let version = pair.cold.latest() + 1;
        let update = pair
            .cold
            .prepare_fetched(version, changes, fetched)
            .expect("read again");
        let expected = pair.whole.prepare(version, changes).expect("prepare");
        assert_eq!(update.root_hash(), expected.root_hash());
    }

    #[test]
    fn evicted_leaves_read_back_wrong_are_refused() {
        let mut pair = ColdPair::new(4);
        let blocks = cold_blocks(8);
        for changes in &blocks {
            pair.apply(changes);
        }
        let latest = pair.cold.latest();
        // A key under an evicted node, and one more under it.
        let prefix = (0..300)
            .find(|&i| {
                let path = node_path(&deep_key(i, 300), EVICT_DEPTH);
                pair.cold
                    .cold_node_at(latest, &path)
                    .is_some_and(|n| pair.cold.is_evicted(n))
            })
            .expect("an evicted node");
        let (key, other) = (deep_key(prefix, 300), deep_key(prefix + 300, 300));
        // One value hash on disk with a byte flipped, under an evicted node.
        pair.source
            .leaves
            .lock()
            .expect("lock")
            .entry(key)
            .and_modify(|v| v.0[31] ^= 1);
        let refused = |e: TreeError| matches!(e, TreeError::Leaves { .. });
        let proof = pair.cold.proof(latest, &other);
        assert!(proof.is_err_and(refused), "a proof under it");
        assert!(pair.cold.value_hash(latest, &key).is_err_and(refused));
        let change = [(other, Some(Hash([7; 32])))];
        let update = pair.cold.prepare(latest + 1, &change);
        assert!(update.is_err_and(refused), "an update under it");
        // A leaf missing is refused as well.
        pair.source.leaves.lock().expect("lock").remove(&key);
        assert!(pair.cold.proof(latest, &key).is_err_and(refused));
        // Nodes elsewhere are still read.
        let elsewhere = deep_key(if prefix == 0 { 1 } else { 0 }, 300);
        assert!(pair.cold.proof(latest, &elsewhere).is_ok());
    }
}
