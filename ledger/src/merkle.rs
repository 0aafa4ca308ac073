//! RFC 6962 Merkle trees (Certificate Transparency): leaf hash `H(0x00 || data)`,
//! interior node `H(0x01 || left || right)`, the empty tree `H("")`, with `H` the
//! chain's suite's hash (SHA-256 as in the RFC, or SM3).
//!
//! Using the standard shape means any RFC 6962 / RFC 9162 verifier can check our
//! inclusion proofs. The tree is built bottom-up, promoting an unpaired last node to the
//! next level, which yields exactly RFC 6962's "split at the largest power of two" shape
//! (tested against a literal transcription of the RFC's recursive definition).

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::crypto::Suite;
use crate::hash::Hash;

/// More levels than any tree of at most 2^63 leaves has; longer paths are refused.
pub const PROOF_DEPTH_MAX: usize = 63;

/// `H(0x00 || data)`.
pub fn leaf_hash(suite: Suite, data: &[u8]) -> Hash {
    suite.digest(&[&[0x00], data])
}

/// `H(0x01 || left || right)`.
pub fn node_hash(suite: Suite, left: &Hash, right: &Hash) -> Hash {
    suite.digest(&[&[0x01], &left.0, &right.0])
}

/// The root of the empty tree: `H("")`.
pub fn empty_root(suite: Suite) -> Hash {
    suite.digest(&[])
}

/// A built tree: every level kept, so proofs are read off without rehashing.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    suite: Suite,
    /// `levels[0]` are the leaf hashes; the last level holds the root alone.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// A tree over the given leaf data (each item is hashed as a leaf).
    pub fn from_leaves<T: AsRef<[u8]>>(suite: Suite, leaves: &[T]) -> MerkleTree {
        MerkleTree::from_leaf_hashes(
            suite,
            leaves
                .iter()
                .map(|l| leaf_hash(suite, l.as_ref()))
                .collect(),
        )
    }

    /// A tree over already-computed leaf hashes.
    pub fn from_leaf_hashes(suite: Suite, leaf_hashes: Vec<Hash>) -> MerkleTree {
        let mut levels = vec![leaf_hashes];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().expect("loop condition: a level exists");
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(suite, left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(above);
        }
        MerkleTree { suite, levels }
    }

    pub fn leaf_count(&self) -> u64 {
        self.levels[0].len() as u64
    }

    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|level| level.first()) {
            Some(root) => *root,
            None => empty_root(self.suite),
        }
    }

    /// The inclusion proof of leaf `index`, or `None` when there is no such leaf.
    pub fn proof(&self, index: u64) -> Option<InclusionProof> {
        if index >= self.leaf_count() {
            return None;
        }
        let mut path = Vec::new();
        let mut at = index as usize;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = at ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            at /= 2;
        }
        Some(InclusionProof {
            leaf_index: index,
            tree_size: self.leaf_count(),
            path,
        })
    }
}

/// The root over `leaves`, without keeping the tree.
pub fn root<T: AsRef<[u8]>>(suite: Suite, leaves: &[T]) -> Hash {
    MerkleTree::from_leaves(suite, leaves).root()
}

/// An RFC 6962 audit path: the sibling hashes from the leaf up to the root.
///
/// As in RFC 9162, `tree_size` must come from a trusted source: a path can fit more
/// than one size. Block headers carry their transaction count for that reason.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<Hash>,
}

/// Why an inclusion proof did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("path of {len} hashes exceeds the {max}-level limit")]
    PathTooLong { len: usize, max: usize },
    #[error("path length {len} does not fit a tree of {size} leaves")]
    PathShape { len: usize, size: u64 },
    #[error("computed root {computed} differs from expected root {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
}

impl InclusionProof {
    /// Checks that `leaf_data` is leaf `leaf_index` of the tree whose root is `root`.
    pub fn verify(&self, suite: Suite, leaf_data: &[u8], root: &Hash) -> Result<(), MerkleError> {
        self.verify_leaf_hash(suite, &leaf_hash(suite, leaf_data), root)
    }

    /// RFC 9162 section 2.1.3.2, over a leaf hash.
    pub fn verify_leaf_hash(
        &self,
        suite: Suite,
        leaf: &Hash,
        root: &Hash,
    ) -> Result<(), MerkleError> {
        if self.leaf_index >= self.tree_size {
            return Err(MerkleError::IndexOutOfRange {
                index: self.leaf_index,
                size: self.tree_size,
            });
        }
        if self.path.len() > PROOF_DEPTH_MAX {
            return Err(MerkleError::PathTooLong {
                len: self.path.len(),
                max: PROOF_DEPTH_MAX,
            });
        }
        let shape_error = MerkleError::PathShape {
            len: self.path.len(),
            size: self.tree_size,
        };
        let mut f_n = self.leaf_index;
        let mut s_n = self.tree_size - 1;
        let mut r = *leaf;
        for p in &self.path {
            if s_n == 0 {
                return Err(shape_error);
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = node_hash(suite, p, &r);
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            } else {
                r = node_hash(suite, &r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        if s_n != 0 {
            return Err(shape_error);
        }
        if r != *root {
            return Err(MerkleError::RootMismatch {
                computed: r,
                expected: *root,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Suite;

    /// The suite of these tests (SHA-256's published vectors); proofs.rs runs both.
    const SUITE: Suite = Suite::Ed25519Sha256;
    use proptest::prelude::*;

    /// RFC 6962 section 2.1, transcribed literally: the oracle for the bottom-up tree.
    fn reference_root(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => SUITE.digest(&[]),
            1 => leaf_hash(SUITE, &leaves[0]),
            n => {
                let k = largest_power_of_two_below(n);
                node_hash(
                    SUITE,
                    &reference_root(&leaves[..k]),
                    &reference_root(&leaves[k..]),
                )
            }
        }
    }

    /// RFC 6962 section 2.1.1 PATH(m, D[n]).
    fn reference_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return vec![];
        }
        let k = largest_power_of_two_below(n);
        if m < k {
            let mut path = reference_path(m, &leaves[..k]);
            path.push(reference_root(&leaves[k..]));
            path
        } else {
            let mut path = reference_path(m - k, &leaves[k..]);
            path.push(reference_root(&leaves[..k]));
            path
        }
    }

    fn largest_power_of_two_below(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        let empty: [&[u8]; 0] = [];
        assert_eq!(
            root(SUITE, &empty).to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(MerkleTree::from_leaves(SUITE, &empty).proof(0).is_none());
    }

    #[test]
    fn single_leaf_root_is_its_leaf_hash_with_empty_path() {
        let tree = MerkleTree::from_leaves(SUITE, &leaves(1));
        assert_eq!(tree.root(), leaf_hash(SUITE, b"leaf 0"));
        let proof = tree.proof(0).expect("leaf 0 exists");
        assert!(proof.path.is_empty());
        assert_eq!(proof.verify(SUITE, b"leaf 0", &tree.root()), Ok(()));
    }

    #[test]
    fn known_vector_from_rfc6962_test_data() {
        // The Certificate Transparency test vector: leaves "", 0x00, 0x10, ... (8 leaves).
        let data: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x00],
            vec![0x10],
            vec![0x20, 0x21],
            vec![0x30, 0x31],
            vec![0x40, 0x41, 0x42, 0x43],
            vec![0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            vec![
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        assert_eq!(
            root(SUITE, &data).to_hex(),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            root(SUITE, &data[..1]).to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn every_leaf_of_small_trees_proves_and_tampering_fails() {
        for n in 1..=17 {
            let data = leaves(n);
            let tree = MerkleTree::from_leaves(SUITE, &data);
            assert_eq!(tree.root(), reference_root(&data), "root of {n} leaves");
            for (i, leaf) in data.iter().enumerate() {
                let proof = tree.proof(i as u64).expect("index in range");
                assert_eq!(proof.path, reference_path(i, &data), "path {i} of {n}");
                assert_eq!(proof.verify(SUITE, leaf, &tree.root()), Ok(()));
                assert!(proof.verify(SUITE, b"other", &tree.root()).is_err());
                if let Some(first) = proof.path.first() {
                    let mut bad = proof.clone();
                    bad.path[0].0[0] ^= 1;
                    assert!(
                        bad.verify(SUITE, leaf, &tree.root()).is_err(),
                        "{n}:{i} {first}"
                    );
                    let mut short = proof.clone();
                    short.path.pop();
                    assert!(short.verify(SUITE, leaf, &tree.root()).is_err());
                }
                let mut moved = proof.clone();
                moved.leaf_index = (moved.leaf_index + 1) % n as u64;
                if n > 1 {
                    assert!(moved.verify(SUITE, leaf, &tree.root()).is_err());
                }
                let mut outside = proof.clone();
                outside.tree_size = outside.leaf_index;
                assert!(matches!(
                    outside.verify(SUITE, leaf, &tree.root()),
                    Err(MerkleError::IndexOutOfRange { .. })
                ));
            }
        }
    }

    #[test]
    fn leaf_and_node_domains_are_separated() {
        // A two-leaf tree's root must not be accepted as the leaf hash of its children's
        // concatenation: the 0x00/0x01 prefixes prevent this second-preimage trick.
        let data = leaves(2);
        let tree = MerkleTree::from_leaves(SUITE, &data);
        let mut inner = Vec::new();
        inner.extend_from_slice(&leaf_hash(SUITE, &data[0]).0);
        inner.extend_from_slice(&leaf_hash(SUITE, &data[1]).0);
        assert_ne!(leaf_hash(SUITE, &inner), tree.root());
    }

    #[test]
    fn overlong_path_is_refused() {
        let proof = InclusionProof {
            leaf_index: 0,
            tree_size: u64::MAX,
            path: vec![Hash::default(); PROOF_DEPTH_MAX + 1],
        };
        assert!(matches!(
            proof.verify(SUITE, b"x", &Hash::default()),
            Err(MerkleError::PathTooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn matches_the_rfc_definition(data in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..8), 0..70), pick in any::<prop::sample::Index>()) {
            let tree = MerkleTree::from_leaves(SUITE, &data);
            prop_assert_eq!(tree.root(), reference_root(&data));
            if !data.is_empty() {
                let i = pick.index(data.len());
                let proof = tree.proof(i as u64).expect("in range");
                prop_assert_eq!(&proof.path, &reference_path(i, &data));
                prop_assert!(proof.verify(SUITE, &data[i], &tree.root()).is_ok());
            }
        }
    }
}
