//! Transactions, their verification, and the results execution records for them.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{self, KeyPair, PublicKey, Signature, SignatureError};
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
    pub fn hash(&self) -> Hash {
        Hash::tagged(tag::TX, &codec::encode(self))
    }
}

impl Transaction {
    /// Signs `body` with `key` (whose public key should be `body.sender`).
    pub fn sign(body: TxBody, key: &KeyPair) -> Transaction {
        debug_assert_eq!(body.sender, key.public());
        let signature = key.sign(&body.hash().0);
        Transaction { body, signature }
    }

    pub fn hash(&self) -> Hash {
        self.body.hash()
    }

    /// Checks everything that needs no state: chain id, field sizes, signature.
    pub fn verify(self, chain_id: &Hash) -> Result<VerifiedTransaction, TxError> {
        let hash = self.check_stateless(chain_id)?;
        self.body.sender.verify(&hash.0, &self.signature)?;
        Ok(VerifiedTransaction { tx: self, hash })
    }

    /// Checks everything that needs no state except the signature: chain id and field
    /// sizes. Returns the hash that the signature must sign.
    fn check_stateless(&self, chain_id: &Hash) -> Result<Hash, TxError> {
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
        Ok(self.hash())
    }
}

/// Verifies many transactions, checking their signatures in one batch; the result for
/// each is what [`Transaction::verify`] would give. When the batch fails, each signature
/// is checked alone to find the bad ones.
pub fn verify_all(
    txs: Vec<Transaction>,
    chain_id: &Hash,
) -> Vec<Result<VerifiedTransaction, TxError>> {
    let checked: Vec<_> = txs
        .into_iter()
        .map(|tx| tx.check_stateless(chain_id).map(|hash| (tx, hash)))
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
pub(crate) mod hex_vec {
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

    #[test]
    fn signed_transaction_verifies_on_its_chain() {
        let key = KeyPair::from_seed(&[9; 32]);
        let chain = Hash([1; 32]);
        let tx = Transaction::sign(body(&key, chain), &key);
        let verified = tx.clone().verify(&chain).expect("valid");
        assert_eq!(verified.hash(), tx.hash());
    }

    #[test]
    fn wrong_chain_is_refused() {
        let key = KeyPair::from_seed(&[9; 32]);
        let tx = Transaction::sign(body(&key, Hash([1; 32])), &key);
        assert!(matches!(
            tx.verify(&Hash([2; 32])),
            Err(TxError::WrongChain { .. })
        ));
    }

    #[test]
    fn any_changed_byte_of_body_or_signature_is_refused() {
        let key = KeyPair::from_seed(&[9; 32]);
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
            assert!(decoded.verify(&chain).is_err(), "flip at byte {i} accepted");
        }
    }

    #[test]
    fn signature_from_another_key_is_refused() {
        let key = KeyPair::from_seed(&[9; 32]);
        let other = KeyPair::from_seed(&[8; 32]);
        let chain = Hash([1; 32]);
        let mut tx = Transaction::sign(body(&key, chain), &key);
        tx.signature = other.sign(&tx.hash().0);
        assert!(matches!(tx.verify(&chain), Err(TxError::Signature(_))));
    }

    #[test]
    fn batch_verification_agrees_with_one_by_one() {
        let chain = Hash([1; 32]);
        let keys: Vec<_> = (0..6u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let mut txs: Vec<_> = keys
            .iter()
            .map(|k| Transaction::sign(body(k, chain), k))
            .collect();
        assert!(verify_all(txs.clone(), &chain).iter().all(Result::is_ok));
        txs[2].signature.0[5] ^= 1;
        txs[4].body.chain_id = Hash([3; 32]);
        let results = verify_all(txs.clone(), &chain);
        for (i, (tx, r)) in txs.into_iter().zip(results).enumerate() {
            assert_eq!(r.is_ok(), tx.verify(&chain).is_ok(), "tx {i}");
            assert_eq!(r.is_ok(), i != 2 && i != 4, "tx {i}");
        }
        assert!(verify_all(vec![], &chain).is_empty());
    }

    #[test]
    fn names_are_bounded_and_non_empty() {
        let key = KeyPair::from_seed(&[9; 32]);
        let chain = Hash([1; 32]);
        let mut b = body(&key, chain);
        b.call.method = "m".repeat(NAME_BYTES_MAX + 1);
        let tx = Transaction::sign(b, &key);
        assert!(matches!(
            tx.verify(&chain),
            Err(TxError::NameTooLong { .. })
        ));
        let mut b = body(&key, chain);
        b.call.chaincode.clear();
        let tx = Transaction::sign(b, &key);
        assert!(matches!(tx.verify(&chain), Err(TxError::EmptyName { .. })));
    }
}
