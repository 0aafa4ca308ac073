//! Admission: the one service through which transactions enter a node, from its API and
//! from peers alike.
//!
//! It does the expensive, stateless half off the consensus thread: size, chain id and
//! a batch signature check, and only for as many transactions as the mempool has room
//! for (the rest are refused as full before any signature work). The host's mempool
//! then does the cheap half (duplicates, nonces, bounds). Every refusal is a typed
//! [`Rejection`] that the API maps to a status code a client can act on.

use std::sync::Arc;

use cbec_ledger::{codec, tx, Hash, Transaction, TxError};

use crate::mempool::{Checked, Room};

/// Why a transaction was not admitted; shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("transaction of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    Invalid(#[from] TxError),
    #[error("transaction {0} is already pending")]
    Duplicate(Hash),
    #[error("nonce {found} was used already; the next nonce of this sender is {expected}")]
    StaleNonce { found: u64, expected: u64 },
    #[error("another pending transaction of this sender has nonce {0}")]
    NonceTaken(u64),
    #[error("nonce {found} is too far ahead of the next nonce {expected}")]
    NonceGap { found: u64, expected: u64 },
    #[error("this sender has {0} transactions pending, the most allowed")]
    SenderFull(usize),
    #[error("the mempool is full; retry later")]
    Full,
}

/// What a client should do about a refusal: its HTTP status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// 400: the request itself is malformed.
    Malformed,
    /// 409: it conflicts with what the ledger or mempool holds (a duplicate, a nonce
    /// used or taken): do not resend as is.
    Conflict,
    /// 422: it can never be valid (signature, chain, size).
    Invalid,
    /// 429 with `Retry-After`: this sender has too much pending; retry later.
    SlowDown,
    /// 503 with `Retry-After`: the node is full; retry later.
    RetryLater,
}

impl Rejection {
    pub fn remedy(&self) -> Remedy {
        match self {
            Rejection::TooLarge { .. } | Rejection::Invalid(_) => Remedy::Invalid,
            Rejection::Duplicate(_) | Rejection::StaleNonce { .. } | Rejection::NonceTaken(_) => {
                Remedy::Conflict
            }
            Rejection::NonceGap { .. } | Rejection::SenderFull(_) => Remedy::SlowDown,
            Rejection::Full => Remedy::RetryLater,
        }
    }

    /// A short stable name for clients and logs (`"duplicate"`, `"full"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Invalid(TxError::Signature(_)) => "bad_signature",
            Rejection::Invalid(TxError::WrongChain { .. }) => "wrong_chain",
            Rejection::Invalid(_) => "invalid",
            Rejection::Duplicate(_) => "duplicate",
            Rejection::StaleNonce { .. } => "stale_nonce",
            Rejection::NonceTaken(_) => "nonce_taken",
            Rejection::NonceGap { .. } => "nonce_gap",
            Rejection::SenderFull(_) => "sender_full",
            Rejection::Full => "full",
        }
    }
}

/// The stateless half of admission, shared by the API and the network.
#[derive(Debug, Clone)]
pub struct Admission {
    chain_id: Hash,
    tx_bytes_max: usize,
    room: Room,
    /// One signature-checking batch at a time per node (API and network share it), so
    /// admission never takes more than a core from consensus and execution.
    slot: Arc<tokio::sync::Semaphore>,
}

impl Admission {
    pub fn new(chain_id: Hash, tx_bytes_max: usize, room: Room) -> Admission {
        Admission {
            chain_id,
            tx_bytes_max,
            room,
            slot: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Checks `txs` on a blocking thread, waiting for the node's checking slot.
    pub async fn check_async(&self, txs: Vec<Transaction>) -> Vec<Checked> {
        let permit = self.slot.clone().acquire_owned().await;
        let this = self.clone();
        let room = self.room.get();
        let checked = tokio::task::spawn_blocking(move || {
            let checked = this.check(txs, room);
            drop(permit);
            checked
        })
        .await;
        // A panic in the check is a bug; refuse the batch rather than lose the node.
        checked.unwrap_or_default()
    }

    /// Whether the node's checking slot is free now (peer pushes do not queue long).
    pub fn slot(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.slot
    }

    /// Size and a batch signature check; transactions beyond the first `room` are
    /// refused as [`Rejection::Full`] unchecked.
    pub fn check(&self, txs: Vec<Transaction>, room: usize) -> Vec<Checked> {
        check(txs, &self.chain_id, self.tx_bytes_max, room)
    }
}

/// See [`Admission::check`].
pub fn check(
    txs: Vec<Transaction>,
    chain_id: &Hash,
    tx_bytes_max: usize,
    room: usize,
) -> Vec<Checked> {
    // Each transaction's early answer (`None`: it goes on to the signature check); the
    // candidates move into the batch check, nothing is cloned or encoded past the room.
    let mut early = Vec::with_capacity(txs.len());
    let mut candidates = Vec::new();
    let mut sizes = Vec::new();
    for (i, tx) in txs.into_iter().enumerate() {
        if i >= room {
            early.push(Some(Rejection::Full));
            continue;
        }
        let size = codec::encode(&tx).len();
        if size > tx_bytes_max {
            early.push(Some(Rejection::TooLarge {
                size,
                max: tx_bytes_max,
            }));
        } else {
            early.push(None);
            candidates.push(tx);
            sizes.push(size);
        }
    }
    let mut verified = tx::verify_all(candidates, chain_id).into_iter().zip(sizes);
    early
        .into_iter()
        .map(|answer| match answer {
            Some(rejection) => Err(rejection),
            None => {
                let (result, size) = verified.next().expect("one verification per candidate");
                Ok((result.map_err(Rejection::Invalid)?, size))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::{Call, KeyPair, TxBody};

    #[test]
    fn every_refusal_has_a_remedy_a_client_can_act_on() {
        let cases = [
            (Rejection::Full, Remedy::RetryLater, "full"),
            (Rejection::SenderFull(3), Remedy::SlowDown, "sender_full"),
            (
                Rejection::NonceGap {
                    found: 9,
                    expected: 1,
                },
                Remedy::SlowDown,
                "nonce_gap",
            ),
            (
                Rejection::Duplicate(Hash([1; 32])),
                Remedy::Conflict,
                "duplicate",
            ),
            (
                Rejection::StaleNonce {
                    found: 1,
                    expected: 2,
                },
                Remedy::Conflict,
                "stale_nonce",
            ),
            (Rejection::NonceTaken(4), Remedy::Conflict, "nonce_taken"),
            (
                Rejection::TooLarge { size: 9, max: 1 },
                Remedy::Invalid,
                "too_large",
            ),
            (
                Rejection::Invalid(TxError::WrongChain {
                    expected: Hash([1; 32]),
                    found: Hash([2; 32]),
                }),
                Remedy::Invalid,
                "wrong_chain",
            ),
        ];
        for (rejection, remedy, code) in cases {
            assert_eq!(rejection.remedy(), remedy, "{rejection}");
            assert_eq!(rejection.code(), code);
        }
    }

    #[test]
    fn a_forged_signature_is_refused_only_when_there_is_room_to_check_it() {
        let chain = Hash([5; 32]);
        let key = KeyPair::from_seed(&[1; 32]);
        let mut forged = Transaction::sign(
            TxBody {
                chain_id: chain,
                sender: key.public(),
                nonce: 0,
                call: Call {
                    chaincode: "goods".into(),
                    method: "record".into(),
                    args: vec![1],
                },
            },
            &key,
        );
        forged.signature.0[0] ^= 1;
        let checked = check(vec![forged.clone()], &chain, 1_000, 0);
        assert!(matches!(checked[0], Err(Rejection::Full)));
        let checked = check(vec![forged], &chain, 1_000, 1);
        assert!(matches!(
            checked[0],
            Err(Rejection::Invalid(TxError::Signature(_)))
        ));
    }
}
