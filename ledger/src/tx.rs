//! Transactions, their verification, and the results execution records for them.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{self, KeyPair, PublicKey, Signature, SignatureError, Suite};
use crate::hash::{tag, Hash};

/// Longest chaincode id or method name accepted.
pub const NAME_BYTES_MAX: usize = 64;

/// What a transaction asks chaincode to do. `args` are the method's typed arguments in
/// canonical encoding; the chaincode crate defines and decodes them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Call {
    pub chaincode: String,
    pub method: String,
    #[serde(with = "hex_vec")]
    pub args: Vec<u8>,
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct TxBody {
    /// The hash of the genesis document: a transaction for another chain never applies.
    pub chain_id: Hash,
    pub sender: PublicKey,
    /// Per-sender sequence number, starting at 0: together with the chain id, replay
    /// protection.
    pub nonce: u64,
    pub call: Call,
}

/// A transaction as received: not yet verified.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Transaction {
    pub body: TxBody,
    pub signature: Signature,
}

/// Why a transaction was refused before it could enter a block.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    #[error("chain id {found} is not this chain's {expected}")]
    WrongChain { expected: Hash, found: Hash },
    #[error("{field} is {len} bytes, more than {max}")]
    NameTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} is empty")]
    EmptyName { field: &'static str },
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
}

impl TxBody {
    /// The transaction id: the tagged hash of the canonical body. The signature signs it.
    pub fn hash(&self, suite: Suite) -> Hash {
        suite.tagged(tag::TX, &codec::encode(self))
    }
}

impl Transaction {
    /// Signs `body` with `key` (whose public key should be `body.sender`), hashed with
    /// the suite of the key's scheme.
    pub fn sign(body: TxBody, key: &KeyPair) -> Transaction {
        debug_assert_eq!(body.sender, key.public());
        let signature = key.sign(&body.hash(key.scheme().suite()).0);
        Transaction { body, signature }
    }

    pub fn hash(&self, suite: Suite) -> Hash {
        self.body.hash(suite)
    }

    /// The canonical encoding and the id, from one pass: the id hashes the body's
    /// encoding, which the transaction's begins with (a block check needs both).
    pub fn encode_with_hash(&self, suite: Suite) -> (Vec<u8>, Hash) {
        let mut bytes = Vec::new();
        codec::encode_append(&self.body, &mut bytes);
        let hash = suite.tagged(tag::TX, &bytes);
        codec::encode_append(&self.signature, &mut bytes);
        (bytes, hash)
    }

    /// Checks everything that needs no state: chain id, field sizes, the sender's key
    /// scheme, signature.
    pub fn verify(self, chain_id: &Hash, suite: Suite) -> Result<VerifiedTransaction, TxError> {
        let hash = self.check_stateless(chain_id, suite)?;
        self.body.sender.verify(&hash.0, &self.signature)?;
        Ok(VerifiedTransaction { tx: self, hash })
    }

    /// Checks everything that needs no state except the signature: chain id, field
    /// sizes and the sender's key scheme. Returns the hash that the signature must sign.
    fn check_stateless(&self, chain_id: &Hash, suite: Suite) -> Result<Hash, TxError> {
        suite.check_key(&self.body.sender)?;
        if self.body.chain_id != *chain_id {
            return Err(TxError::WrongChain {
                expected: *chain_id,
                found: self.body.chain_id,
            });
        }
        for (field, value) in [
            ("chaincode id", &self.body.call.chaincode),
            ("method", &self.body.call.method),
        ] {
            if value.is_empty() {
                return Err(TxError::EmptyName { field });
            }
            if value.len() > NAME_BYTES_MAX {
                return Err(TxError::NameTooLong {
                    field,
                    len: value.len(),
                    max: NAME_BYTES_MAX,
                });
            }
        }
        Ok(self.hash(suite))
    }
}

/// Verifies many transactions; the result for each is what [`Transaction::verify`] would
/// give. Ed25519 signatures are checked in one batch (when the batch fails, each alone to
/// find the bad ones); SM2 signatures, which have no batch check, one by one on every
/// core.
pub fn verify_all(
    txs: Vec<Transaction>,
    chain_id: &Hash,
    suite: Suite,
) -> Vec<Result<VerifiedTransaction, TxError>> {
    if suite == Suite::Sm2Sm3 {
        return verify_each_in_parallel(txs, chain_id, suite);
    }
    let checked: Vec<_> = txs
        .into_iter()
        .map(|tx| tx.check_stateless(chain_id, suite).map(|hash| (tx, hash)))
        .collect();
    let pending: Vec<&(Transaction, Hash)> =
        checked.iter().filter_map(|r| r.as_ref().ok()).collect();
    let messages: Vec<&[u8]> = pending.iter().map(|(_, h)| h.0.as_slice()).collect();
    let signatures: Vec<_> = pending.iter().map(|(tx, _)| tx.signature).collect();
    let keys: Vec<_> = pending.iter().map(|(tx, _)| tx.body.sender).collect();
    let batch_ok =
        !pending.is_empty() && crypto::verify_batch(&messages, &signatures, &keys).is_ok();
    checked
        .into_iter()
        .map(|r| {
            let (tx, hash) = r?;
            if !batch_ok {
                tx.body.sender.verify(&hash.0, &tx.signature)?;
            }
            Ok(VerifiedTransaction { tx, hash })
        })
        .collect()
}

/// [`Transaction::verify`] on each, split over the machine's cores (one thread where
/// threads do not exist, as in the browser's WebAssembly).
fn verify_each_in_parallel(
    txs: Vec<Transaction>,
    chain_id: &Hash,
    suite: Suite,
) -> Vec<Result<VerifiedTransaction, TxError>> {
    // Below this, a thread costs more than it saves.
    const PER_THREAD_MIN: usize = 16;
    let threads = if cfg!(target_arch = "wasm32") {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let threads = threads.min(txs.len() / PER_THREAD_MIN).max(1);
    if threads == 1 {
        return txs
            .into_iter()
            .map(|tx| tx.verify(chain_id, suite))
            .collect();
    }
    let per = txs.len().div_ceil(threads);
    let mut txs = txs.into_iter();
    let chunks: Vec<Vec<Transaction>> = (0..threads)
        .map(|_| txs.by_ref().take(per).collect())
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|tx| tx.verify(chain_id, suite))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(results) => results,
                // A panic in a signature check is a bug; resume it as the caller's.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// A transaction whose chain id and signature were checked. Only [`Transaction::verify`]
/// makes one, so holding one proves the check happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTransaction {
    tx: Transaction,
    hash: Hash,
}

impl VerifiedTransaction {
    pub fn hash(&self) -> Hash {
        self.hash
    }
    pub fn tx(&self) -> &Transaction {
        &self.tx
    }
    pub fn body(&self) -> &TxBody {
        &self.tx.body
    }
    pub fn into_inner(self) -> Transaction {
        self.tx
    }
}

/// A key/value pair describing what an accepted transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Attribute {
    pub key: String,
    pub value: String,
}

/// One thing that happened, for indexers and the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    pub attributes: Vec<Attribute>,
}

/// How execution ended. A rejection is recorded too: refusals are part of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Accepted {
        events: Vec<Event>,
    },
    /// `rule` is the DOMAIN.md rule id that refused it (`FILING`, `R4`, `LIMIT-YEAR`, ...).
    Rejected {
        rule: String,
        message: String,
    },
}

/// The recorded result of one transaction in a block.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct TxResult {
    pub tx_hash: Hash,
    pub outcome: Outcome,
}

impl TxResult {
    pub fn is_accepted(&self) -> bool {
        matches!(self.outcome, Outcome::Accepted { .. })
    }
}

/// Hex serde for byte vectors in JSON.
pub mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_ref()).map_err(serde::de::Error::custom)
    }
}

/// Hex serde for optional byte vectors in JSON (`null` when absent).
pub(crate) mod hex_opt_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| hex::decode(t.as_ref()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Scheme;

    fn body(key: &KeyPair, chain: Hash) -> TxBody {
        TxBody {
            chain_id: chain,
            sender: key.public(),
            nonce: 7,
            call: Call {
                chaincode: "goods".into(),
                method: "record_event".into(),
                args: vec![1, 2, 3],
            },
        }
    }

    /// Each test runs on both suites, with a key of the suite's scheme.
    fn each_suite(test: impl Fn(Suite, &dyn Fn(u8) -> KeyPair)) {
        for suite in Suite::ALL {
            test(suite, &|n| KeyPair::derive(suite.scheme(), &[n; 32]));
        }
    }

    #[test]
    fn one_encoding_pass_gives_the_encoding_and_the_id() {
        each_suite(|suite, key| {
            let key = key(4);
            let tx = Transaction::sign(body(&key, Hash([1; 32])), &key);
            let (bytes, id) = tx.encode_with_hash(suite);
            assert_eq!(bytes, codec::encode(&tx));
            assert_eq!(id, tx.hash(suite));
        });
    }

    #[test]
    fn signed_transaction_verifies_on_its_chain() {
        each_suite(|suite, key| {
            let key = key(9);
            let chain = Hash([1; 32]);
            let tx = Transaction::sign(body(&key, chain), &key);
            let verified = tx.clone().verify(&chain, suite).expect("valid");
            assert_eq!(verified.hash(), tx.hash(suite));
        });
    }

    #[test]
    fn the_suite_decides_the_transaction_hash() {
        let key = KeyPair::from_seed(&[9; 32]);
        let tx = Transaction::sign(body(&key, Hash([1; 32])), &key);
        assert_ne!(tx.hash(Suite::Ed25519Sha256), tx.hash(Suite::Sm2Sm3));
    }

    #[test]
    fn a_key_of_the_other_suite_is_refused_naming_both() {
        for suite in Suite::ALL {
            let other = Suite::ALL.into_iter().find(|s| *s != suite).expect("two");
            let key = KeyPair::derive(other.scheme(), &[9; 32]);
            let chain = Hash([1; 32]);
            let tx = Transaction::sign(body(&key, chain), &key);
            let err = tx.clone().verify(&chain, suite).expect_err("other suite");
            let text = err.to_string();
            assert!(text.contains(other.scheme().name()), "{text}");
            assert!(text.contains(suite.name()), "{text}");
            let all = verify_all(vec![tx.clone(), tx], &chain, suite);
            assert!(all.iter().all(Result::is_err));
        }
    }

    #[test]
    fn wrong_chain_is_refused() {
        each_suite(|suite, key| {
            let key = key(9);
            let tx = Transaction::sign(body(&key, Hash([1; 32])), &key);
            assert!(matches!(
                tx.verify(&Hash([2; 32]), suite),
                Err(TxError::WrongChain { .. })
            ));
        });
    }

    #[test]
    fn any_changed_byte_of_body_or_signature_is_refused() {
        each_suite(|suite, key| {
            let key = key(9);
            let chain = Hash([1; 32]);
            let tx = Transaction::sign(body(&key, chain), &key);
            let bytes = codec::encode(&tx);
            // Skip the chain id (its own error) and flip every other byte once.
            for i in 32..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x01;
                let Ok(decoded) = codec::decode::<Transaction>(&bad) else {
                    continue; // the flip broke the encoding itself: also refused
                };
                assert!(
                    decoded.verify(&chain, suite).is_err(),
                    "{suite}: flip at byte {i} accepted"
                );
            }
        });
    }

    #[test]
    fn signature_from_another_key_is_refused() {
        each_suite(|suite, key| {
            let (key, other) = (key(9), key(8));
            let chain = Hash([1; 32]);
            let mut tx = Transaction::sign(body(&key, chain), &key);
            tx.signature = other.sign(&tx.hash(suite).0);
            assert!(matches!(
                tx.verify(&chain, suite),
                Err(TxError::Signature(_))
            ));
        });
    }

    #[test]
    fn batch_verification_agrees_with_one_by_one() {
        each_suite(|suite, key| {
            let chain = Hash([1; 32]);
            // Enough for SM2's check to split over threads.
            let keys: Vec<_> = (0..40u8).map(key).collect();
            let mut txs: Vec<_> = keys
                .iter()
                .map(|k| Transaction::sign(body(k, chain), k))
                .collect();
            assert!(verify_all(txs.clone(), &chain, suite)
                .iter()
                .all(Result::is_ok));
            txs[2].signature.0[5] ^= 1;
            txs[4].body.chain_id = Hash([3; 32]);
            txs[33].signature.0[40] ^= 1;
            let results = verify_all(txs.clone(), &chain, suite);
            assert_eq!(results.len(), txs.len());
            for (i, (tx, r)) in txs.into_iter().zip(results).enumerate() {
                assert_eq!(r.is_ok(), tx.verify(&chain, suite).is_ok(), "tx {i}");
                assert_eq!(r.is_ok(), ![2, 4, 33].contains(&i), "{suite}: tx {i}");
            }
            assert!(verify_all(vec![], &chain, suite).is_empty());
        });
    }

    #[test]
    fn names_are_bounded_and_non_empty() {
        each_suite(|suite, key| {
            let key = key(9);
            let chain = Hash([1; 32]);
            let mut b = body(&key, chain);
            b.call.method = "m".repeat(NAME_BYTES_MAX + 1);
            let tx = Transaction::sign(b, &key);
            assert!(matches!(
                tx.verify(&chain, suite),
                Err(TxError::NameTooLong { .. })
            ));
            let mut b = body(&key, chain);
            b.call.chaincode.clear();
            let tx = Transaction::sign(b, &key);
            assert!(matches!(
                tx.verify(&chain, suite),
                Err(TxError::EmptyName { .. })
            ));
        });
        assert_eq!(Scheme::Sm2.suite(), Suite::Sm2Sm3);
    }
}
