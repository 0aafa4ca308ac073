//! Blocks and headers, and the checks a block's body must pass against its header.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{PublicKey, Suite};
use crate::hash::{tag, Hash};
use crate::merkle;
use crate::tx::{Transaction, TxResult};
use crate::validators::CommitCertificate;

/// What validators agree on for each height. A header plus its commit certificate is
/// what an auditor trusts.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: Hash,
    pub height: u64,
    /// Milliseconds since the Unix epoch, as proposed; chaincode reads time only here.
    pub time_ms: u64,
    /// The previous block's header hash; for height 1, the chain id.
    pub previous: Hash,
    pub proposer: PublicKey,
    /// Number of transactions (and of results): the trusted tree size for proofs.
    pub tx_count: u64,
    /// RFC 6962 root over the canonical encodings of the transactions.
    pub tx_root: Hash,
    /// RFC 6962 root over the canonical encodings of the results, in transaction order.
    pub results_root: Hash,
    /// Root of the authenticated state after this block's transactions.
    pub state_root: Hash,
    /// Hash of the validator set that certifies this block.
    pub validators_hash: Hash,
}

impl Header {
    pub fn hash(&self, suite: Suite) -> Hash {
        suite.tagged(tag::HEADER, &codec::encode(self))
    }
}

/// A block: header, body, and the certificate that committed its parent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<Transaction>,
    pub results: Vec<TxResult>,
    /// The certificate of the block at `height - 1`; absent only at height 1.
    pub last_commit: Option<CommitCertificate>,
}

/// Why a block's body does not match its header or its parent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("header counts {header} transactions, body has {body}")]
    TxCount { header: u64, body: usize },
    #[error("{txs} transactions but {results} results")]
    ResultCount { txs: usize, results: usize },
    #[error("result {index} is for transaction {found}, not {expected}")]
    ResultMismatch {
        index: usize,
        expected: Hash,
        found: Hash,
    },
    #[error("tx root {computed} differs from header's {header}")]
    TxRoot { computed: Hash, header: Hash },
    #[error("results root {computed} differs from header's {header}")]
    ResultsRoot { computed: Hash, header: Hash },
    #[error("height {found} does not follow parent height {parent}")]
    Height { parent: u64, found: u64 },
    #[error("previous hash {found} is not the parent's {expected}")]
    Previous { expected: Hash, found: Hash },
    #[error("chain id {found} is not {expected}")]
    Chain { expected: Hash, found: Hash },
    #[error("time {found} ms is before the parent's {parent} ms")]
    Time { parent: u64, found: u64 },
    #[error("last commit certificate {0}")]
    LastCommit(String),
}

/// The leaves of the transaction tree: each transaction's canonical encoding.
pub fn tx_leaves(txs: &[Transaction]) -> Vec<Vec<u8>> {
    txs.iter().map(codec::encode).collect()
}

/// The leaves of the results tree: each result's canonical encoding.
pub fn result_leaves(results: &[TxResult]) -> Vec<Vec<u8>> {
    results.iter().map(codec::encode).collect()
}

impl Block {
    pub fn hash(&self, suite: Suite) -> Hash {
        self.header.hash(suite)
    }

    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// Checks the body against the header: one result per transaction, in order, and
    /// both Merkle roots. Returns the transactions' ids, in order (each transaction is
    /// encoded and hashed once here; a validator need not do it again).
    pub fn check_body(&self, suite: Suite) -> Result<Vec<Hash>, BlockError> {
        if self.header.tx_count != self.txs.len() as u64 {
            return Err(BlockError::TxCount {
                header: self.header.tx_count,
                body: self.txs.len(),
            });
        }
        if self.txs.len() != self.results.len() {
            return Err(BlockError::ResultCount {
                txs: self.txs.len(),
                results: self.results.len(),
            });
        }
        let mut ids = Vec::with_capacity(self.txs.len());
        let mut leaves = Vec::with_capacity(self.txs.len());
        for (index, (tx, result)) in self.txs.iter().zip(&self.results).enumerate() {
            let (leaf, expected) = tx.encode_with_hash(suite);
            if result.tx_hash != expected {
                return Err(BlockError::ResultMismatch {
                    index,
                    expected,
                    found: result.tx_hash,
                });
            }
            ids.push(expected);
            leaves.push(leaf);
        }
        let computed = merkle::root(suite, &leaves);
        if computed != self.header.tx_root {
            return Err(BlockError::TxRoot {
                computed,
                header: self.header.tx_root,
            });
        }
        let computed = merkle::root(suite, &result_leaves(&self.results));
        if computed != self.header.results_root {
            return Err(BlockError::ResultsRoot {
                computed,
                header: self.header.results_root,
            });
        }
        Ok(ids)
    }

    /// Checks that this block extends `parent` (or the chain's start when `parent` is
    /// `None`): chain id, height, previous hash, monotone time, and that `last_commit`
    /// names the parent. The certificate's signatures are checked by the caller, which
    /// knows the parent's validator set.
    pub fn check_extends(
        &self,
        chain_id: &Hash,
        suite: Suite,
        parent: Option<&Header>,
    ) -> Result<(), BlockError> {
        let h = &self.header;
        if h.chain_id != *chain_id {
            return Err(BlockError::Chain {
                expected: *chain_id,
                found: h.chain_id,
            });
        }
        let (parent_height, parent_hash, parent_time) = match parent {
            Some(p) => (p.height, p.hash(suite), p.time_ms),
            None => (0, *chain_id, 0),
        };
        if h.height != parent_height + 1 {
            return Err(BlockError::Height {
                parent: parent_height,
                found: h.height,
            });
        }
        if h.previous != parent_hash {
            return Err(BlockError::Previous {
                expected: parent_hash,
                found: h.previous,
            });
        }
        if h.time_ms < parent_time {
            return Err(BlockError::Time {
                parent: parent_time,
                found: h.time_ms,
            });
        }
        match (&self.last_commit, parent) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(BlockError::LastCommit("present at height 1".into())),
            (None, Some(_)) => Err(BlockError::LastCommit("missing".into())),
            (Some(c), Some(_)) if c.height != parent_height || c.block_hash != parent_hash => {
                Err(BlockError::LastCommit(format!(
                    "names block {} at height {}, not the parent",
                    c.block_hash, c.height
                )))
            }
            (Some(_), Some(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Suite;

    /// The suite of these tests (SHA-256's published vectors); proofs.rs runs both.
    const SUITE: Suite = Suite::Ed25519Sha256;
    use crate::crypto::KeyPair;
    use crate::tx::{Call, Outcome, TxBody};

    const CHAIN: Hash = Hash([3; 32]);

    fn block(n_txs: u64) -> Block {
        let key = KeyPair::from_seed(&[1; 32]);
        let txs: Vec<_> = (0..n_txs)
            .map(|nonce| {
                let body = TxBody {
                    chain_id: CHAIN,
                    sender: key.public(),
                    nonce,
                    call: Call {
                        chaincode: "goods".into(),
                        method: "record".into(),
                        args: vec![nonce as u8],
                    },
                };
                Transaction::sign(body, &key)
            })
            .collect();
        let results: Vec<_> = txs
            .iter()
            .map(|tx| TxResult {
                tx_hash: tx.hash(SUITE),
                outcome: Outcome::Accepted { events: vec![] },
            })
            .collect();
        Block {
            header: Header {
                chain_id: CHAIN,
                height: 1,
                time_ms: 1_000,
                previous: CHAIN,
                proposer: key.public(),
                tx_count: n_txs,
                tx_root: merkle::root(SUITE, &tx_leaves(&txs)),
                results_root: merkle::root(SUITE, &result_leaves(&results)),
                state_root: Hash::default(),
                validators_hash: Hash::default(),
            },
            txs,
            results,
            last_commit: None,
        }
    }

    #[test]
    fn consistent_block_passes_and_each_tamper_is_caught() {
        let b = block(5);
        assert_eq!(
            b.check_body(SUITE),
            Ok(b.txs.iter().map(|t| t.hash(SUITE)).collect())
        );
        assert_eq!(b.check_extends(&CHAIN, SUITE, None), Ok(()));

        let mut swapped = b.clone();
        swapped.txs.swap(0, 1);
        assert!(swapped.check_body(SUITE).is_err());

        let mut dropped = b.clone();
        dropped.txs.pop();
        dropped.results.pop();
        assert!(matches!(
            dropped.check_body(SUITE),
            Err(BlockError::TxCount { .. })
        ));
        dropped.header.tx_count -= 1;
        assert!(matches!(
            dropped.check_body(SUITE),
            Err(BlockError::TxRoot { .. })
        ));

        let mut rejected = b.clone();
        rejected.results[2].outcome = Outcome::Rejected {
            rule: "R4".into(),
            message: "amount".into(),
        };
        assert!(matches!(
            rejected.check_body(SUITE),
            Err(BlockError::ResultsRoot { .. })
        ));

        let mut short = b.clone();
        short.results.pop();
        assert!(matches!(
            short.check_body(SUITE),
            Err(BlockError::ResultCount { .. })
        ));
    }

    #[test]
    fn header_hash_changes_with_every_field() {
        let h = block(1).header;
        let base = h.hash(SUITE);
        let bytes = codec::encode(&h);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            // The proposer key's scheme tag is the one byte whose flip can fail decoding.
            let Ok(other) = codec::decode::<Header>(&bad) else {
                continue;
            };
            assert_ne!(other.hash(SUITE), base, "byte {i}");
        }
    }

    #[test]
    fn child_must_follow_parent() {
        let parent = block(0);
        let mut child = block(0);
        child.header.height = 2;
        child.header.previous = parent.hash(SUITE);
        child.last_commit = Some(CommitCertificate {
            height: 1,
            round: 0,
            block_hash: parent.hash(SUITE),
            signatures: vec![],
        });
        assert_eq!(
            child.check_extends(&CHAIN, SUITE, Some(&parent.header)),
            Ok(())
        );

        let mut wrong_prev = child.clone();
        wrong_prev.header.previous.0[0] ^= 1;
        assert!(matches!(
            wrong_prev.check_extends(&CHAIN, SUITE, Some(&parent.header)),
            Err(BlockError::Previous { .. })
        ));
        let mut skip = child.clone();
        skip.header.height = 3;
        assert!(matches!(
            skip.check_extends(&CHAIN, SUITE, Some(&parent.header)),
            Err(BlockError::Height { .. })
        ));
        let mut no_commit = child.clone();
        no_commit.last_commit = None;
        assert!(no_commit
            .check_extends(&CHAIN, SUITE, Some(&parent.header))
            .is_err());
        let mut earlier = child.clone();
        earlier.header.time_ms = 999;
        assert!(matches!(
            earlier.check_extends(&CHAIN, SUITE, Some(&parent.header)),
            Err(BlockError::Time { .. })
        ));
        assert!(matches!(
            child.check_extends(&Hash([4; 32]), SUITE, Some(&parent.header)),
            Err(BlockError::Chain { .. })
        ));
    }
}
