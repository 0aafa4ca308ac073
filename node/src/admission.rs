//! Admission: the one service through which transactions enter a node, from its API and
//! from peers alike.
//!
//! It does the expensive half off the host's thread: size, chain id, whether the
//! sender may transact at all (the ledger is permissioned: an agency operator key, or a
//! key of a filed, non-revoked, unlisted enterprise, read from committed state; see
//! `cbec_chaincode::permission`), and a batch signature check, only for as many
//! transactions as the mempool has room for (the rest are refused as full before any
//! signature work). A transaction whose nonce the sender's committed transactions have
//! used is refused as stale before its signature is checked (read with the sender's
//! standing, one read more a sender and batch): a committed transaction replayed, by a
//! client or a peer, carries a valid signature, so a flood of replays cost a signature
//! check each before the mempool refused them. The host's mempool then does the cheap
//! half (duplicates, nonces against pending ones, bounds). Every refusal is a typed [`Rejection`] that the API maps to a status code a
//! client can act on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cbec_chaincode::permission::StandingError;
use cbec_chaincode::{layout, standing, NotPermitted, StateRead};
use cbec_ledger::{codec, tx, Hash, PublicKey, Suite, Transaction, TxError};

use crate::mempool::{Checked, Reservation, Room};

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
    #[error("sender may not transact: {0}")]
    NotPermitted(NotPermitted),
    #[error("the node cannot read its state now; retry later")]
    Unavailable,
}

/// What a client should do about a refusal: its HTTP status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// 400: the request itself is malformed.
    Malformed,
    /// 409: it conflicts with what the ledger or mempool holds (a duplicate, a nonce
    /// used or taken): do not resend as is.
    Conflict,
    /// 403: this sender may not transact on this ledger.
    Forbidden,
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
            Rejection::Full | Rejection::Unavailable => Remedy::RetryLater,
            Rejection::NotPermitted(_) => Remedy::Forbidden,
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
            Rejection::NotPermitted(_) => "not_permitted",
            Rejection::Unavailable => "unavailable",
        }
    }
}

/// Committed state as admission reads it.
pub type State = Arc<dyn StateRead + Send + Sync>;

/// The expensive half of admission, shared by the API and the network.
#[derive(Clone)]
pub struct Admission {
    chain_id: Hash,
    suite: Suite,
    tx_bytes_max: usize,
    room: Room,
    state: State,
    /// One signature-checking batch at a time per node (API and network share it), so
    /// admission never takes more than a core from consensus and execution.
    slot: Arc<tokio::sync::Semaphore>,
    counts: Arc<Counts>,
    gaps: Arc<Mutex<BTreeMap<PublicKey, u64>>>,
}

/// Senders whose nonces have a gap this node has seen, at most this many.
const GAPS_MAX: usize = 4_096;

/// What admission did, since the node started (for `/metrics`).
#[derive(Debug, Default)]
pub struct Counts {
    /// Transactions whose signatures were checked.
    pub signatures_checked: AtomicU64,
    /// Transactions refused as already committed (stale nonce), unchecked.
    pub stale_unchecked: AtomicU64,
    /// Peers' pushes refused as behind a gap in their sender's nonces, unchecked.
    pub gap_unchecked: AtomicU64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("chain_id", &self.chain_id)
            .field("room", &self.room.get())
            .finish_non_exhaustive()
    }
}

impl Admission {
    pub fn new(
        chain_id: Hash,
        suite: Suite,
        tx_bytes_max: usize,
        room: Room,
        state: State,
    ) -> Admission {
        Admission {
            chain_id,
            suite,
            tx_bytes_max,
            room,
            state,
            slot: Arc::new(tokio::sync::Semaphore::new(1)),
            counts: Arc::default(),
            gaps: Arc::default(),
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Checks `txs` on a blocking thread, waiting for the node's checking slot, with
    /// the mempool's room reserved for them: the reservation goes to the host with the
    /// batch and is given back when dropped, once the host has admitted it (so the
    /// next batch, checked meanwhile, does not count on the same room).
    pub async fn check_async(&self, txs: Vec<Transaction>) -> (Vec<Checked>, Reservation) {
        let permit = self.slot.clone().acquire_owned().await;
        let this = self.clone();
        let reserved = self.room.reserve(txs.len());
        let room = reserved.len();
        let checked = tokio::task::spawn_blocking(move || {
            let checked = this.check_past_gaps(txs, room);
            drop(permit);
            checked
        })
        .await;
        // A panic in the check is a bug; refuse the batch rather than lose the node.
        (checked.unwrap_or_default(), reserved)
    }

    /// [`Admission::check_async`] for a peer's push: the transactions refused unchecked
    /// (past a gap, or beyond the room) come back too, with their ids and sizes, to be
    /// kept for the compact blocks that will name them ([`crate::mempool::Mempool::keep_unchecked`]).
    pub async fn check_push_async(
        &self,
        txs: Vec<Transaction>,
    ) -> (Vec<Checked>, Reservation, Vec<(Hash, Transaction, usize)>) {
        let permit = self.slot.clone().acquire_owned().await;
        let this = self.clone();
        let reserved = self.room.reserve(txs.len());
        let room = reserved.len();
        let checked = tokio::task::spawn_blocking(move || {
            let (checked, unchecked) = this.check_keeping(txs, room);
            drop(permit);
            (checked, with_ids(unchecked, this.suite))
        })
        .await;
        let (checked, unchecked) = checked.unwrap_or_default();
        (checked, reserved, unchecked)
    }

    /// Whether the node's checking slot is free now (peer pushes do not queue long).
    pub fn slot(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.slot
    }

    /// Size, the sender's standing and a batch signature check; transactions beyond
    /// the first `room` are refused as [`Rejection::Full`] unchecked.
    pub fn check(&self, txs: Vec<Transaction>, room: usize) -> Vec<Checked> {
        check_counted(
            txs,
            &self.chain_id,
            self.suite,
            self.tx_bytes_max,
            room,
            self.state.as_ref(),
            Some(&self.counts),
        )
    }

    /// [`Admission::check`], but a transaction is refused unchecked (as `nonce_gap`)
    /// past a gap in its sender's nonces that this node's mempool refused a transaction
    /// for and that no commit and no transaction of the batch has closed.
    ///
    /// At saturation such gaps are common: a push this node drops (its mempool full,
    /// or its checking slot busy) leaves one, and so does the mempool making room by
    /// evicting a large holder's last transaction; every later transaction of that
    /// sender is then a future one past the few a sender may hold. Before this two
    /// thirds of admission's signature checks at saturation were of such transactions,
    /// refused by the mempool after the check (peers' pushes, and clients resending
    /// behind an evicted transaction). A push refused costs no signature check here (the
    /// transaction is kept unchecked for the compact block that will name it, see
    /// [`Admission::check_push_async`]); a client is told the nonce expected.
    pub fn check_past_gaps(&self, txs: Vec<Transaction>, room: usize) -> Vec<Checked> {
        self.check_keeping(txs, room).0
    }

    /// [`Admission::check_past_gaps`], returning the transactions refused unchecked
    /// (past a gap, or beyond the first `room` of the rest) as well.
    fn check_keeping(
        &self,
        txs: Vec<Transaction>,
        room: usize,
    ) -> (Vec<Checked>, Vec<Transaction>) {
        let gaps = self.open_gaps(&txs);
        let mut early = Vec::with_capacity(txs.len());
        let mut rest = Vec::with_capacity(txs.len().min(room));
        let mut unchecked = Vec::new();
        let mut gapped = 0;
        for tx in txs {
            match gaps.get(&tx.body.sender) {
                Some(&expected) if tx.body.nonce > expected => {
                    gapped += 1;
                    early.push(Some(Rejection::NonceGap {
                        found: tx.body.nonce,
                        expected,
                    }));
                    unchecked.push(tx);
                }
                _ if rest.len() >= room => {
                    early.push(Some(Rejection::Full));
                    unchecked.push(tx);
                }
                _ => {
                    early.push(None);
                    rest.push(tx);
                }
            }
        }
        self.counts
            .gap_unchecked
            .fetch_add(gapped as u64, Ordering::Relaxed);
        let mut checked = self.check(rest, room).into_iter();
        let answers = early
            .into_iter()
            .map(|answer| match answer {
                Some(rejection) => Err(rejection),
                None => checked.next().expect("one answer per transaction checked"),
            })
            .collect();
        (answers, unchecked)
    }

    /// Notes the gaps the mempool showed: `(sender, expected)` for each transaction
    /// it refused as `nonce_gap`.
    pub fn note_gaps(&self, refused: impl IntoIterator<Item = (PublicKey, u64)>) {
        let mut refused = refused.into_iter().peekable();
        if refused.peek().is_none() {
            return;
        }
        let mut gaps = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
        for (sender, expected) in refused {
            if gaps.len() < GAPS_MAX || gaps.contains_key(&sender) {
                gaps.insert(sender, expected);
            }
        }
    }

    /// The open gaps of the senders of `txs`; gaps that a commit or a transaction of
    /// `txs` (the nonce expected) closes are forgotten. Committed state is read
    /// outside the lock, once per gapped sender.
    fn open_gaps(&self, txs: &[Transaction]) -> BTreeMap<PublicKey, u64> {
        let mut open: BTreeMap<PublicKey, u64> = {
            let gaps = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
            if gaps.is_empty() {
                return BTreeMap::new();
            }
            txs.iter()
                .filter_map(|t| gaps.get(&t.body.sender).map(|&e| (t.body.sender, e)))
                .collect()
        };
        if open.is_empty() {
            return open;
        }
        let mut closed = BTreeMap::new();
        for t in txs {
            if open.get(&t.body.sender) == Some(&t.body.nonce) {
                closed.insert(t.body.sender, t.body.nonce);
            }
        }
        for (sender, &expected) in &open {
            if !closed.contains_key(sender)
                && committed_next_nonce(self.state.as_ref(), sender) > expected
            {
                closed.insert(*sender, expected);
            }
        }
        open.retain(|sender, _| !closed.contains_key(sender));
        if !closed.is_empty() {
            let mut gaps = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
            for (sender, expected) in closed {
                // Unless a newer refusal moved it meanwhile.
                if gaps.get(&sender) == Some(&expected) {
                    gaps.remove(&sender);
                }
            }
        }
        open
    }
}

/// See [`Admission::check`].
pub fn check(
    txs: Vec<Transaction>,
    chain_id: &Hash,
    suite: Suite,
    tx_bytes_max: usize,
    room: usize,
    state: &(dyn StateRead + Send + Sync),
) -> Vec<Checked> {
    check_counted(txs, chain_id, suite, tx_bytes_max, room, state, None)
}

/// Transactions kept unchecked, each with its id (its body's hash) and encoded size, as
/// the mempool keeps them ([`crate::mempool::Mempool::keep_unchecked`]).
pub fn with_ids(txs: Vec<Transaction>, suite: Suite) -> Vec<(Hash, Transaction, usize)> {
    txs.into_iter()
        .map(|tx| {
            let (bytes, id) = tx.encode_with_hash(suite);
            (id, tx, bytes.len())
        })
        .collect()
}

/// [`check`], adding what it did to `counts`.
fn check_counted(
    txs: Vec<Transaction>,
    chain_id: &Hash,
    suite: Suite,
    tx_bytes_max: usize,
    room: usize,
    state: &(dyn StateRead + Send + Sync),
    counts: Option<&Counts>,
) -> Vec<Checked> {
    // Each transaction's early answer (`None`: it goes on to the signature check); the
    // candidates move into the batch check, nothing is cloned or encoded past the room.
    let mut early = Vec::with_capacity(txs.len());
    let mut candidates = Vec::new();
    let mut sizes = Vec::new();
    // One state read per sender of the batch, not per transaction: its standing, and
    // its next nonce in committed state.
    let mut standings: BTreeMap<PublicKey, (Option<Rejection>, u64)> = BTreeMap::new();
    for (i, tx) in txs.into_iter().enumerate() {
        if i >= room {
            early.push(Some(Rejection::Full));
            continue;
        }
        let sender = tx.body.sender;
        // A key of the other suite's scheme: named as such, not as an unknown sender.
        if let Err(e) = suite.check_key(&sender) {
            early.push(Some(Rejection::Invalid(TxError::Signature(e))));
            continue;
        }
        let (refusal, next) = standings
            .entry(sender)
            .or_insert_with(|| {
                let refusal = match standing(|key| state.get(key), &sender) {
                    Ok(Ok(_)) => None,
                    Ok(Err(reason)) => Some(Rejection::NotPermitted(reason)),
                    // State the engine would record as INTERNAL: the same on every node.
                    Err(StandingError::Corrupt(_)) => None,
                    Err(StandingError::Storage(e)) => {
                        tracing::error!("admission cannot read state: {e}");
                        Some(Rejection::Unavailable)
                    }
                };
                (refusal, committed_next_nonce(state, &sender))
            })
            .clone();
        let size = codec::encoded_len(&tx);
        if let Some(refusal) = refusal {
            early.push(Some(refusal));
        } else if tx.body.nonce < next {
            early.push(Some(Rejection::StaleNonce {
                found: tx.body.nonce,
                expected: next,
            }));
        } else if size > tx_bytes_max {
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
    if let Some(counts) = counts {
        let stale = early
            .iter()
            .filter(|a| matches!(a, Some(Rejection::StaleNonce { .. })))
            .count();
        let add = |counter: &AtomicU64, n: usize| counter.fetch_add(n as u64, Ordering::Relaxed);
        add(&counts.signatures_checked, candidates.len());
        add(&counts.stale_unchecked, stale);
    }
    let mut verified = tx::verify_all(candidates, chain_id, suite)
        .into_iter()
        .zip(sizes);
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

/// A sender's next nonce in committed state (0 if it has none, or none readable: the
/// mempool, which reads it again, then decides).
fn committed_next_nonce(state: &(dyn StateRead + Send + Sync), sender: &PublicKey) -> u64 {
    match state.get(layout::nonce_key(&sender.to_hex()).as_bytes()) {
        Ok(Some(bytes)) => codec::decode::<u64>(&bytes).unwrap_or(0),
        Ok(None) | Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::Suite;

    const SUITE: Suite = Suite::Ed25519Sha256;
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
            (
                Rejection::NotPermitted(NotPermitted::Unknown(cbec_ledger::PublicKey::Ed25519(
                    [3; 32],
                ))),
                Remedy::Forbidden,
                "not_permitted",
            ),
            (Rejection::Unavailable, Remedy::RetryLater, "unavailable"),
        ];
        for (rejection, remedy, code) in cases {
            assert_eq!(rejection.remedy(), remedy, "{rejection}");
            assert_eq!(rejection.code(), code);
        }
    }

    const CHAIN: Hash = Hash([5; 32]);

    fn tx(key: &KeyPair, nonce: u64) -> Transaction {
        Transaction::sign(
            TxBody {
                chain_id: CHAIN,
                sender: key.public(),
                nonce,
                call: Call {
                    chaincode: "goods".into(),
                    method: "record".into(),
                    args: vec![1],
                },
            },
            key,
        )
    }

    /// Committed state where `operator` is an agency's operator key.
    fn state_with(operator: &KeyPair) -> cbec_chaincode::MemoryState {
        let mut state = cbec_chaincode::MemoryState::default();
        state.apply(&cbec_chaincode::Engine::genesis_writes(&[(
            "commerce".to_string(),
            vec![operator.public()],
        )]));
        state
    }

    /// On an SM2 chain an SM2 operator's transaction is admitted, and an Ed25519 key's
    /// is refused as a key of the other scheme (not as an unknown sender), and the
    /// other way round; a forged SM2 signature is refused like an Ed25519 one.
    #[test]
    fn a_key_of_the_other_suite_is_refused_by_its_scheme() {
        for suite in Suite::ALL {
            let ours = KeyPair::derive(suite.scheme(), &[1; 32]);
            let other = Suite::ALL.into_iter().find(|s| *s != suite).expect("two");
            let theirs = KeyPair::derive(other.scheme(), &[1; 32]);
            let mut state = state_with(&ours);
            state.apply(&cbec_chaincode::Engine::genesis_writes(&[(
                "customs".to_string(),
                vec![theirs.public()],
            )]));
            let mut forged = tx(&ours, 1);
            forged.signature.0[9] ^= 1;
            let checked = check(
                vec![tx(&ours, 0), tx(&theirs, 0), forged],
                &CHAIN,
                suite,
                1_000,
                10,
                &state,
            );
            assert!(checked[0].is_ok(), "{suite}: {:?}", checked[0]);
            match &checked[1] {
                Err(Rejection::Invalid(TxError::Signature(e))) => {
                    let text = e.to_string();
                    assert!(text.contains(suite.name()), "{text}");
                    assert!(text.contains(other.scheme().name()), "{text}");
                }
                wrong => panic!("{suite}: {wrong:?}"),
            }
            assert!(matches!(
                checked[2],
                Err(Rejection::Invalid(TxError::Signature(_)))
            ));
        }
    }

    #[test]
    fn a_forged_signature_is_refused_only_when_there_is_room_to_check_it() {
        let key = KeyPair::from_seed(&[1; 32]);
        let state = state_with(&key);
        let mut forged = tx(&key, 0);
        forged.signature.0[0] ^= 1;
        let checked = check(vec![forged.clone()], &CHAIN, SUITE, 1_000, 0, &state);
        assert!(matches!(checked[0], Err(Rejection::Full)));
        let checked = check(vec![forged], &CHAIN, SUITE, 1_000, 1, &state);
        assert!(matches!(
            checked[0],
            Err(Rejection::Invalid(TxError::Signature(_)))
        ));
    }

    /// A transaction whose nonce the sender's committed transactions used is refused
    /// as stale before its signature is checked (a forged one too: it could not be
    /// admitted either way), and counted as such; one with the next nonce is checked,
    /// so a forged one is refused for its signature.
    #[test]
    fn a_used_nonce_is_refused_before_the_signature_is_checked() {
        let key = KeyPair::from_seed(&[1; 32]);
        let mut state = state_with(&key);
        let nonce_key = layout::nonce_key(&key.public().to_hex()).into_bytes();
        state.apply(&BTreeMap::from([(nonce_key, Some(codec::encode(&3u64)))]));
        let forged = |nonce| {
            let mut t = tx(&key, nonce);
            t.signature.0[0] ^= 1;
            t
        };
        let admission = Admission::new(CHAIN, SUITE, 1_000, Room::default(), Arc::new(state));
        let checked = admission.check(vec![tx(&key, 2), forged(2), forged(3), tx(&key, 3)], 10);
        for stale in &checked[..2] {
            assert!(
                matches!(
                    stale,
                    Err(Rejection::StaleNonce {
                        found: 2,
                        expected: 3
                    })
                ),
                "{stale:?}"
            );
        }
        assert!(matches!(
            checked[2],
            Err(Rejection::Invalid(TxError::Signature(_)))
        ));
        assert!(checked[3].is_ok(), "{:?}", checked[3]);
        let counts = admission.counts();
        assert_eq!(counts.stale_unchecked.load(Ordering::Relaxed), 2);
        assert_eq!(counts.signatures_checked.load(Ordering::Relaxed), 2);
    }

    /// Two batches checked before the host admits the first do not count on the same
    /// room: past what the first reserved, the second is refused as full before any
    /// signature work (before, the mempool refused those after their checks, and each
    /// client resend was checked again); the room comes back once the batches are in.
    #[tokio::test]
    async fn a_batch_on_its_way_in_keeps_its_room_from_the_next() {
        use crate::mempool::{Mempool, MempoolConfig};
        let key = KeyPair::from_seed(&[1; 32]);
        let mut pool = Mempool::new(MempoolConfig {
            txs_max: 10,
            ..MempoolConfig::default()
        });
        let admission =
            Admission::new(CHAIN, SUITE, 1_000, pool.room(), Arc::new(state_with(&key)));
        let (first, first_room) = admission
            .check_async((0..8).map(|n| tx(&key, n)).collect())
            .await;
        let (second, second_room) = admission
            .check_async((8..16).map(|n| tx(&key, n)).collect())
            .await;
        assert_eq!((first_room.len(), second_room.len()), (8, 2));
        assert!(second[2..]
            .iter()
            .all(|c| matches!(c, Err(Rejection::Full))));
        let counts = admission.counts();
        assert_eq!(counts.signatures_checked.load(Ordering::Relaxed), 10);
        assert_eq!(pool.room().get(), 0, "all of it reserved");
        for (batch, room, admitted) in [(first, first_room, 8), (second, second_room, 2)] {
            let answers = pool.admit_checked(batch, |_| 0, 0);
            drop(room);
            assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), admitted);
        }
        assert_eq!(pool.len(), 10);
        assert_eq!(pool.room().get(), 0);
        let (_, none) = admission.check_async(vec![tx(&key, 10)]).await;
        assert!(none.is_empty());
    }

    /// A peer's push checked for the mempool gives back what it refused unchecked (past a
    /// known gap, or beyond the room), with ids that are the transactions' own, to be
    /// kept for compact blocks; what it checked is not among them.
    #[tokio::test]
    async fn a_push_gives_back_what_was_refused_unchecked_with_its_ids() {
        use crate::mempool::{Mempool, MempoolConfig};
        let key = KeyPair::from_seed(&[1; 32]);
        let other = KeyPair::from_seed(&[2; 32]);
        let pool = Mempool::new(MempoolConfig {
            txs_max: 2,
            ..MempoolConfig::default()
        });
        let mut state = cbec_chaincode::MemoryState::default();
        state.apply(&cbec_chaincode::Engine::genesis_writes(&[(
            "commerce".to_string(),
            vec![key.public(), other.public()],
        )]));
        let admission = Admission::new(CHAIN, SUITE, 1_000, pool.room(), Arc::new(state));
        admission.note_gaps([(key.public(), 5)]);
        let push = vec![tx(&key, 7), tx(&other, 0), tx(&other, 1), tx(&other, 2)];
        let (checked, _room, unchecked) = admission.check_push_async(push.clone()).await;
        assert!(matches!(checked[0], Err(Rejection::NonceGap { .. })));
        assert!(checked[1].is_ok() && checked[2].is_ok(), "{checked:?}");
        assert!(matches!(checked[3], Err(Rejection::Full)));
        let kept: Vec<(Hash, Transaction)> =
            unchecked.into_iter().map(|(id, tx, _)| (id, tx)).collect();
        assert_eq!(
            kept,
            vec![
                (push[0].hash(SUITE), push[0].clone()),
                (push[3].hash(SUITE), push[3].clone())
            ]
        );
        assert_eq!(
            admission
                .counts()
                .signatures_checked
                .load(Ordering::Relaxed),
            2
        );
    }

    /// Past a gap the mempool refused a transaction for, a later transaction of that
    /// sender (a peer's push or a client's) is refused as `nonce_gap` before its
    /// signature check (a forged one too); one below the gap is checked; a batch
    /// carrying the nonce expected closes the gap, and so does a commit past it.
    #[test]
    fn a_transaction_behind_a_known_gap_is_refused_before_its_signature_is_checked() {
        let key = KeyPair::from_seed(&[1; 32]);
        /// Committed state that a test commits to.
        struct Committing(std::sync::RwLock<cbec_chaincode::MemoryState>);
        impl StateRead for Committing {
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, cbec_chaincode::StateError> {
                self.0.read().expect("lock").get(key)
            }
        }
        let state = Arc::new(Committing(std::sync::RwLock::new(state_with(&key))));
        let admission = Admission::new(CHAIN, SUITE, 1_000, Room::default(), state.clone());
        let forged = |nonce| {
            let mut t = tx(&key, nonce);
            t.signature.0[0] ^= 1;
            t
        };
        let checked_so_far = || {
            admission
                .counts()
                .signatures_checked
                .load(Ordering::Relaxed)
        };
        admission.note_gaps([(key.public(), 5)]);
        let pushed = admission.check_past_gaps(vec![tx(&key, 7), forged(8), tx(&key, 3)], 10);
        assert!(matches!(
            pushed[0],
            Err(Rejection::NonceGap {
                found: 7,
                expected: 5
            })
        ));
        assert!(matches!(
            pushed[1],
            Err(Rejection::NonceGap { found: 8, .. })
        ));
        assert!(pushed[2].is_ok(), "below the gap: checked");
        assert_eq!(checked_so_far(), 1);
        assert_eq!(admission.counts().gap_unchecked.load(Ordering::Relaxed), 2);
        // The nonce expected in the batch fills the gap: all of it is checked.
        let pushed = admission.check_past_gaps(vec![tx(&key, 5), tx(&key, 6)], 10);
        assert!(pushed.iter().all(Result::is_ok), "{pushed:?}");
        assert_eq!(checked_so_far(), 3);
        // A commit past the gap closes it too.
        admission.note_gaps([(key.public(), 5)]);
        assert!(admission.check_past_gaps(vec![tx(&key, 9)], 10)[0].is_err());
        let nonce_key = layout::nonce_key(&key.public().to_hex()).into_bytes();
        state
            .0
            .write()
            .expect("lock")
            .apply(&BTreeMap::from([(nonce_key, Some(codec::encode(&6u64)))]));
        assert!(admission.check_past_gaps(vec![tx(&key, 9)], 10)[0].is_ok());
    }

    /// Issue 13, item 2: a key that belongs to no agency and no filed enterprise is
    /// refused, naming why, before any signature work; an agency key is admitted.
    #[test]
    fn a_sender_that_may_not_transact_is_refused_before_its_signature_is_checked() {
        let operator = KeyPair::from_seed(&[1; 32]);
        let stranger = KeyPair::from_seed(&[2; 32]);
        let state = state_with(&operator);
        let mut forged = tx(&stranger, 0);
        forged.signature.0[0] ^= 1;
        let checked = check(
            vec![tx(&operator, 0), tx(&stranger, 0), forged],
            &CHAIN,
            SUITE,
            1_000,
            10,
            &state,
        );
        assert!(checked[0].is_ok());
        for refused in &checked[1..] {
            match refused {
                Err(Rejection::NotPermitted(NotPermitted::Unknown(key))) => {
                    assert_eq!(*key, stranger.public())
                }
                other => panic!("{other:?}"),
            }
        }
        let shown = checked[1].as_ref().expect_err("refused").to_string();
        assert!(
            shown.contains("no filed enterprise and no agency"),
            "{shown}"
        );
    }
}
