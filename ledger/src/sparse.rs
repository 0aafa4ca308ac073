//! Proofs against a header's state root, verified without the tree.
//!
//! The state is a sparse Merkle tree over key hashes (the node's `tree` module; with
//! SHA-256 the same tree the `jmt` crate computes, which the node's tests use as an
//! oracle; with SM3 the same shape over SM3): a subtree holding one leaf is that leaf, an empty subtree is a placeholder,
//! and internal nodes hash their two children. Its proofs are a leaf (or none) plus the
//! sibling hashes from that leaf up to the root. This module recomputes the root
//! exactly as `jmt`'s `SparseMerkleProof::verify` does; the node's tests check proofs
//! from a real store verify here.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::crypto::Suite;
use crate::hash::Hash;

/// The hash of an empty subtree.
pub const PLACEHOLDER: Hash = Hash(*b"SPARSE_MERKLE_PLACEHOLDER_HASH__");
const LEAF_DOMAIN: &[u8] = b"JMT::LeafNode";
const INTERNAL_DOMAIN: &[u8] = b"JMT::IntrnalNode";
/// A key hash has 256 bits, so no path is longer.
pub const DEPTH_MAX: usize = 256;

/// Where a key lives in the tree: the hash of the key bytes.
pub fn key_hash(suite: Suite, key: &[u8]) -> Hash {
    suite.digest(&[key])
}

/// What a leaf commits to: the hash of the value bytes.
pub fn value_hash(suite: Suite, value: &[u8]) -> Hash {
    suite.digest(&[value])
}

/// An internal node's hash over its two children.
pub fn internal_hash(suite: Suite, left: &Hash, right: &Hash) -> Hash {
    suite.digest(&[INTERNAL_DOMAIN, &left.0, &right.0])
}

/// A leaf of the tree: a key hash and its value's hash.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SparseLeaf {
    pub key_hash: Hash,
    pub value_hash: Hash,
}

impl SparseLeaf {
    pub fn hash(&self, suite: Suite) -> Hash {
        suite.digest(&[LEAF_DOMAIN, &self.key_hash.0, &self.value_hash.0])
    }
}

/// A proof that a key has a value, or has none, under a state root.
///
/// For a present key, `leaf` is the key's own leaf. For an absent key, `leaf` is the
/// one leaf in the subtree where the key would be (sharing the path so far), or `None`
/// when that subtree is empty. `siblings` run from the leaf's level up to the root.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SparseProof {
    pub leaf: Option<SparseLeaf>,
    pub siblings: Vec<Hash>,
}

/// Why a state proof did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SparseError {
    #[error("{len} siblings exceed the tree's depth of {DEPTH_MAX}")]
    TooDeep { len: usize },
    #[error("the proof's leaf is for key hash {found}, not the key's {expected}")]
    KeyMismatch { expected: Hash, found: Hash },
    #[error("the proof's leaf holds value hash {found}, not the value's {expected}")]
    ValueMismatch { expected: Hash, found: Hash },
    #[error("the value is claimed present, but the proof shows the key absent")]
    ClaimedPresent,
    #[error("the key is claimed absent, but the proof holds its leaf")]
    ClaimedAbsent,
    #[error("the proof's leaf does not share the key's path, so it cannot show absence")]
    NotOnPath,
    #[error("computed state root {computed} differs from the header's {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
}

/// Bit `index` of a key hash, most significant bit of byte 0 first.
fn bit(hash: &Hash, index: usize) -> bool {
    (hash.0[index / 8] >> (7 - index % 8)) & 1 == 1
}

fn common_prefix_bits(a: &Hash, b: &Hash) -> usize {
    (0..256).take_while(|&i| bit(a, i) == bit(b, i)).count()
}

impl SparseProof {
    /// Checks that `key` has `value` (or, with `None`, no value) under `root`.
    pub fn verify(
        &self,
        suite: Suite,
        root: &Hash,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SparseError> {
        let depth = self.siblings.len();
        if depth > DEPTH_MAX {
            return Err(SparseError::TooDeep { len: depth });
        }
        let key = key_hash(suite, key);
        match (value, &self.leaf) {
            (Some(value), Some(leaf)) => {
                if leaf.key_hash != key {
                    return Err(SparseError::KeyMismatch {
                        expected: key,
                        found: leaf.key_hash,
                    });
                }
                let expected = value_hash(suite, value);
                if leaf.value_hash != expected {
                    return Err(SparseError::ValueMismatch {
                        expected,
                        found: leaf.value_hash,
                    });
                }
            }
            (Some(_), None) => return Err(SparseError::ClaimedPresent),
            (None, Some(leaf)) => {
                if leaf.key_hash == key {
                    return Err(SparseError::ClaimedAbsent);
                }
                if common_prefix_bits(&key, &leaf.key_hash) < depth {
                    return Err(SparseError::NotOnPath);
                }
            }
            (None, None) => {}
        }
        let start = self.leaf.as_ref().map_or(PLACEHOLDER, |l| l.hash(suite));
        // Sibling `i` (from the bottom) sits beside the key's bit `depth - 1 - i`.
        let computed = self
            .siblings
            .iter()
            .enumerate()
            .fold(start, |hash, (i, sibling)| {
                if bit(&key, depth - 1 - i) {
                    internal_hash(suite, sibling, &hash)
                } else {
                    internal_hash(suite, &hash, sibling)
                }
            });
        if computed != *root {
            return Err(SparseError::RootMismatch {
                computed,
                expected: *root,
            });
        }
        Ok(())
    }
}

/// A reference sparse Merkle tree built in memory: the oracle for this module's tests
/// and for tests elsewhere that need state roots without a node.
pub mod reference {
    use super::*;

    /// The root over `(key hash, value hash)` leaves, sorted by key hash and distinct.
    pub fn root(suite: Suite, leaves: &[SparseLeaf]) -> Hash {
        subtree(suite, leaves, 0)
    }

    fn split(leaves: &[SparseLeaf], depth: usize) -> usize {
        leaves.partition_point(|l| !bit(&l.key_hash, depth))
    }

    fn subtree(suite: Suite, leaves: &[SparseLeaf], depth: usize) -> Hash {
        match leaves {
            [] => PLACEHOLDER,
            [one] => one.hash(suite),
            _ => {
                let (left, right) = leaves.split_at(split(leaves, depth));
                internal_hash(
                    suite,
                    &subtree(suite, left, depth + 1),
                    &subtree(suite, right, depth + 1),
                )
            }
        }
    }

    /// The proof for `key` over sorted, distinct `leaves`.
    pub fn prove(suite: Suite, leaves: &[SparseLeaf], key: &[u8]) -> SparseProof {
        let key = key_hash(suite, key);
        let mut siblings = Vec::new();
        let mut here = leaves;
        let mut depth = 0;
        while here.len() > 1 {
            let (left, right) = here.split_at(split(here, depth));
            if bit(&key, depth) {
                siblings.push(subtree(suite, left, depth + 1));
                here = right;
            } else {
                siblings.push(subtree(suite, right, depth + 1));
                here = left;
            }
            depth += 1;
        }
        siblings.reverse();
        SparseProof {
            leaf: here.first().cloned(),
            siblings,
        }
    }

    /// Leaves for `(key, value)` pairs, sorted as [`root`] and [`prove`] expect.
    pub fn leaves(suite: Suite, pairs: &[(&[u8], &[u8])]) -> Vec<SparseLeaf> {
        let mut leaves: Vec<SparseLeaf> = pairs
            .iter()
            .map(|(k, v)| SparseLeaf {
                key_hash: key_hash(suite, k),
                value_hash: value_hash(suite, v),
            })
            .collect();
        leaves.sort_by_key(|l| l.key_hash);
        leaves
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{leaves, prove, root};
    use crate::crypto::Suite;

    /// The suite of these tests (SHA-256's published vectors); proofs.rs runs both.
    const SUITE: Suite = Suite::Ed25519Sha256;
    use super::*;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn pairs(n: usize) -> Pairs {
        (0..n)
            .map(|i| {
                (
                    format!("key/{i}").into_bytes(),
                    format!("value {i}").into_bytes(),
                )
            })
            .collect()
    }

    fn tree(n: usize) -> (Pairs, Vec<SparseLeaf>, Hash) {
        let pairs = pairs(n);
        let refs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        let leaves = leaves(SUITE, &refs);
        let root = root(SUITE, &leaves);
        (pairs, leaves, root)
    }

    #[test]
    fn present_keys_verify_and_absent_keys_verify_absent() {
        for n in [0, 1, 2, 3, 17, 200] {
            let (pairs, leaves, root) = tree(n);
            for (k, v) in &pairs {
                let proof = prove(SUITE, &leaves, k);
                assert_eq!(proof.verify(SUITE, &root, k, Some(v)), Ok(()), "n={n}");
                assert!(
                    proof.verify(SUITE, &root, k, None).is_err(),
                    "n={n}: absent claim"
                );
            }
            for i in 0..20 {
                let k = format!("missing/{i}").into_bytes();
                let proof = prove(SUITE, &leaves, &k);
                assert_eq!(proof.verify(SUITE, &root, &k, None), Ok(()), "n={n}");
                assert!(proof.verify(SUITE, &root, &k, Some(b"x")).is_err());
            }
        }
    }

    #[test]
    fn a_wrong_value_is_caught() {
        let (pairs, leaves, root) = tree(50);
        let (k, _) = &pairs[7];
        let proof = prove(SUITE, &leaves, k);
        assert!(matches!(
            proof.verify(SUITE, &root, k, Some(b"forged")),
            Err(SparseError::ValueMismatch { .. })
        ));
    }

    #[test]
    fn an_absent_key_presented_as_present_is_caught() {
        let (_, leaves, root) = tree(50);
        let k = b"never written";
        let mut proof = prove(SUITE, &leaves, k);
        // Claim a value: the leaf (if any) belongs to another key.
        let claimed = proof.verify(SUITE, &root, k, Some(b"v"));
        assert!(claimed.is_err());
        // Forge a leaf for the key: the root no longer matches.
        proof.leaf = Some(SparseLeaf {
            key_hash: key_hash(SUITE, k),
            value_hash: value_hash(SUITE, b"v"),
        });
        assert!(matches!(
            proof.verify(SUITE, &root, k, Some(b"v")),
            Err(SparseError::RootMismatch { .. })
        ));
    }

    #[test]
    fn every_flipped_bit_of_a_proof_is_caught() {
        let (pairs, leaves, root) = tree(100);
        let (k, v) = &pairs[42];
        let proof = prove(SUITE, &leaves, k);
        for s in 0..proof.siblings.len() {
            for b in 0..256 {
                let mut bad = proof.clone();
                bad.siblings[s].0[b / 8] ^= 1 << (b % 8);
                assert!(
                    bad.verify(SUITE, &root, k, Some(v)).is_err(),
                    "sibling {s} bit {b}"
                );
            }
        }
        let mut dropped = proof.clone();
        dropped.siblings.pop();
        assert!(dropped.verify(SUITE, &root, k, Some(v)).is_err());
        let mut other_root = root;
        other_root.0[0] ^= 1;
        assert!(proof.verify(SUITE, &other_root, k, Some(v)).is_err());
    }
}
