//! The mempool: transactions admitted but not yet committed.
//!
//! Bounded in count and bytes, and fair: one sender holds at most `per_sender_max`
//! transactions, so no single client can fill it. Admission checks everything that
//! needs no execution (size, chain id, signature, nonce against the committed one,
//! duplicates) and returns a reason for each refusal. Signatures are verified in
//! batches, and only as many as the mempool has room for: the rest are refused as
//! `Full` before any signature work (see [`Room`]). Blocks are filled round-robin across senders, each sender's transactions in
//! nonce order starting at its committed nonce.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cbec_ledger::{Hash, PublicKey, Transaction, VerifiedTransaction};

use crate::admission::check;
pub use crate::admission::Rejection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    pub txs_max: usize,
    pub bytes_max: usize,
    pub per_sender_max: usize,
    pub tx_bytes_max: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            // A few blocks' worth: beyond that a client waits (and is told to retry)
            // rather than every node verifying transactions it cannot commit for a
            // long time.
            txs_max: 30_000,
            bytes_max: 256 * 1024 * 1024,
            per_sender_max: 10_000,
            tx_bytes_max: 64 * 1024,
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: VerifiedTransaction,
    bytes: usize,
}

/// A transaction through the stateless half of admission (size, chain id, signature),
/// with its encoded size.
pub type Checked = Result<(VerifiedTransaction, usize), Rejection>;

/// How many more transactions the mempool can take, readable off the consensus task.
/// Admission checks signatures only for that many: when the pool is full, a flood of
/// submissions costs the node no signature work (they would be refused anyway).
#[derive(Debug, Clone, Default)]
pub struct Room(Arc<AtomicUsize>);

impl Room {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, room: usize) {
        self.0.store(room, Ordering::Relaxed)
    }
}

/// Pending transactions by hash and by sender and nonce.
#[derive(Debug)]
pub struct Mempool {
    chain_id: Hash,
    config: MempoolConfig,
    by_hash: BTreeMap<Hash, Entry>,
    by_sender: BTreeMap<PublicKey, BTreeMap<u64, Hash>>,
    bytes: usize,
    room: Room,
}

impl Mempool {
    pub fn new(chain_id: Hash, config: MempoolConfig) -> Mempool {
        Mempool {
            chain_id,
            by_hash: BTreeMap::new(),
            by_sender: BTreeMap::new(),
            bytes: 0,
            room: Room(Arc::new(AtomicUsize::new(config.txs_max))),
            config,
        }
    }

    /// The room left, as the API and network read it before checking signatures.
    pub fn room(&self) -> Room {
        self.room.clone()
    }

    fn update_room(&self) {
        self.room
            .set(self.config.txs_max.saturating_sub(self.by_hash.len()));
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many transactions of `sender` are pending.
    pub fn pending_of(&self, sender: &PublicKey) -> usize {
        self.by_sender.get(sender).map_or(0, BTreeMap::len)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Admits a batch; `next_nonce` gives each sender's next nonce in committed state.
    /// Signatures are verified together; each transaction gets its own answer.
    pub fn admit(
        &mut self,
        txs: Vec<Transaction>,
        next_nonce: impl Fn(&PublicKey) -> u64,
    ) -> Vec<Result<Hash, Rejection>> {
        let checked = check(
            txs,
            &self.chain_id,
            self.config.tx_bytes_max,
            self.room.get(),
        );
        self.admit_checked(checked, next_nonce)
    }

    /// The cheap half of admission, for transactions [`check`]ed elsewhere (off the
    /// consensus task): duplicates, nonces and bounds.
    pub fn admit_checked(
        &mut self,
        checked: Vec<Checked>,
        next_nonce: impl Fn(&PublicKey) -> u64,
    ) -> Vec<Result<Hash, Rejection>> {
        checked
            .into_iter()
            .map(|c| {
                let (tx, size) = c?;
                self.insert(tx, size, &next_nonce)
            })
            .collect()
    }

    /// A pending transaction with exactly these bytes, signature included, already
    /// verified: a block validator need not check its signature again. (The hash names
    /// the body only: a block could carry the same body with another signature.)
    pub fn verified_exact(&self, tx: &Transaction) -> Option<VerifiedTransaction> {
        self.by_hash
            .get(&tx.hash())
            .filter(|e| e.tx.tx() == tx)
            .map(|e| e.tx.clone())
    }

    /// Whether some sender's next transaction (at its committed nonce) is pending: the
    /// only kind a block can take.
    pub fn has_executable(&self, next_nonce: impl Fn(&PublicKey) -> u64) -> bool {
        self.by_sender
            .iter()
            .any(|(sender, pending)| pending.contains_key(&next_nonce(sender)))
    }

    fn insert(
        &mut self,
        tx: VerifiedTransaction,
        bytes: usize,
        next_nonce: &impl Fn(&PublicKey) -> u64,
    ) -> Result<Hash, Rejection> {
        let hash = tx.hash();
        if self.by_hash.contains_key(&hash) {
            return Err(Rejection::Duplicate(hash));
        }
        let sender = tx.body().sender;
        let nonce = tx.body().nonce;
        let expected = next_nonce(&sender);
        if nonce < expected {
            return Err(Rejection::StaleNonce {
                found: nonce,
                expected,
            });
        }
        let pending = self.by_sender.get(&sender);
        if pending.is_some_and(|p| p.contains_key(&nonce)) {
            return Err(Rejection::NonceTaken(nonce));
        }
        if nonce - expected >= self.config.per_sender_max as u64 {
            return Err(Rejection::NonceGap {
                found: nonce,
                expected,
            });
        }
        let count = pending.map_or(0, BTreeMap::len);
        if count >= self.config.per_sender_max {
            return Err(Rejection::SenderFull(count));
        }
        if self.by_hash.len() >= self.config.txs_max || self.bytes + bytes > self.config.bytes_max {
            return Err(Rejection::Full);
        }
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(nonce, hash);
        self.by_hash.insert(hash, Entry { tx, bytes });
        self.bytes += bytes;
        self.update_room();
        Ok(hash)
    }

    /// Transactions for a block: round-robin across senders, each sender's in nonce
    /// order from its next committed nonce with no gaps, within both limits.
    pub fn reap(
        &self,
        txs_max: usize,
        bytes_max: usize,
        next_nonce: impl Fn(&PublicKey) -> u64,
    ) -> Vec<VerifiedTransaction> {
        let mut queues: VecDeque<(u64, &BTreeMap<u64, Hash>)> = self
            .by_sender
            .iter()
            .map(|(sender, pending)| (next_nonce(sender), pending))
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some((nonce, pending)) = queues.pop_front() {
            if out.len() >= txs_max {
                break;
            }
            let Some(entry) = pending.get(&nonce).and_then(|h| self.by_hash.get(h)) else {
                continue; // gap or nothing left for this sender
            };
            if bytes + entry.bytes > bytes_max {
                continue;
            }
            bytes += entry.bytes;
            out.push(entry.tx.clone());
            queues.push_back((nonce + 1, pending));
        }
        out
    }

    /// Drops what a committed block included, and anything its nonces made stale.
    pub fn remove_committed(&mut self, committed: &[Hash], next_nonce: impl Fn(&PublicKey) -> u64) {
        for hash in committed {
            self.remove(hash);
        }
        let stale: Vec<Hash> = self
            .by_sender
            .iter()
            .flat_map(|(sender, pending)| {
                let next = next_nonce(sender);
                pending.range(..next).map(|(_, h)| *h).collect::<Vec<_>>()
            })
            .collect();
        for hash in stale {
            self.remove(&hash);
        }
        self.update_room();
    }

    fn remove(&mut self, hash: &Hash) {
        let Some(entry) = self.by_hash.remove(hash) else {
            return;
        };
        self.bytes -= entry.bytes;
        let sender = entry.tx.body().sender;
        if let Some(pending) = self.by_sender.get_mut(&sender) {
            pending.remove(&entry.tx.body().nonce);
            if pending.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::{codec, Call, KeyPair, TxBody, TxError};

    const CHAIN: Hash = Hash([5; 32]);

    fn tx(key: &KeyPair, nonce: u64, payload: usize) -> Transaction {
        Transaction::sign(
            TxBody {
                chain_id: CHAIN,
                sender: key.public(),
                nonce,
                call: Call {
                    chaincode: "goods".into(),
                    method: "record".into(),
                    args: vec![7; payload],
                },
            },
            key,
        )
    }

    fn config() -> MempoolConfig {
        MempoolConfig {
            txs_max: 10,
            bytes_max: 100_000,
            per_sender_max: 4,
            tx_bytes_max: 1_000,
        }
    }

    fn zero(_: &PublicKey) -> u64 {
        0
    }

    #[test]
    fn admits_valid_and_explains_each_refusal() {
        let mut pool = Mempool::new(CHAIN, config());
        let a = KeyPair::from_seed(&[1; 32]);
        let mut bad_sig = tx(&a, 1, 10);
        bad_sig.signature.0[0] ^= 1;
        let mut other_chain = tx(&a, 2, 10);
        other_chain.body.chain_id = Hash([6; 32]);
        let answers = pool.admit(
            vec![
                tx(&a, 0, 10),
                tx(&a, 0, 10),
                bad_sig,
                other_chain,
                tx(&a, 0, 2_000),
                tx(&a, 0, 11),
            ],
            zero,
        );
        assert!(answers[0].is_ok());
        assert!(matches!(answers[1], Err(Rejection::Duplicate(_))));
        assert!(matches!(
            answers[2],
            Err(Rejection::Invalid(TxError::Signature(_)))
        ));
        assert!(matches!(
            answers[3],
            Err(Rejection::Invalid(TxError::WrongChain { .. }))
        ));
        assert!(matches!(answers[4], Err(Rejection::TooLarge { .. })));
        assert!(matches!(answers[5], Err(Rejection::NonceTaken(0))));
        assert_eq!(pool.len(), 1);
        let stale = pool.admit(vec![tx(&a, 3, 10)], |_| 5);
        assert!(matches!(
            stale[0],
            Err(Rejection::StaleNonce {
                found: 3,
                expected: 5
            })
        ));
        let gap = pool.admit(vec![tx(&a, 40, 10)], zero);
        assert!(matches!(gap[0], Err(Rejection::NonceGap { .. })));
    }

    #[test]
    fn one_sender_cannot_fill_the_pool() {
        let mut pool = Mempool::new(CHAIN, config());
        let a = KeyPair::from_seed(&[1; 32]);
        let answers = pool.admit((0..8).map(|n| tx(&a, n, 10)).collect(), zero);
        assert_eq!(answers.iter().filter(|r| r.is_ok()).count(), 4);
        let b = KeyPair::from_seed(&[2; 32]);
        assert!(pool.admit(vec![tx(&b, 0, 10)], zero)[0].is_ok());
    }

    #[test]
    fn bounded_in_count_and_bytes() {
        let mut pool = Mempool::new(CHAIN, config());
        let keys: Vec<_> = (0..12u8)
            .map(|i| KeyPair::from_seed(&[i + 1; 32]))
            .collect();
        let answers = pool.admit(keys.iter().map(|k| tx(k, 0, 10)).collect(), zero);
        assert_eq!(answers.iter().filter(|r| r.is_ok()).count(), 10);
        assert!(matches!(answers[11], Err(Rejection::Full)));
        let mut small = Mempool::new(
            CHAIN,
            MempoolConfig {
                bytes_max: 500,
                ..config()
            },
        );
        let answers = small.admit(keys.iter().map(|k| tx(k, 0, 100)).collect(), zero);
        assert!(answers.iter().any(|r| matches!(r, Err(Rejection::Full))));
        assert!(small.bytes() <= 500);
    }

    #[test]
    fn no_signature_is_checked_for_what_has_no_room() {
        let mut pool = Mempool::new(CHAIN, config());
        let room = pool.room();
        assert_eq!(room.get(), 10);
        let keys: Vec<_> = (0..10u8)
            .map(|i| KeyPair::from_seed(&[i + 1; 32]))
            .collect();
        let answers = pool.admit(keys[..8].iter().map(|k| tx(k, 0, 10)).collect(), zero);
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(room.get(), 2, "the handle follows the pool");

        // Two fit; the third has a forged signature but is past the room, so it is
        // answered Full without its signature being looked at.
        let mut forged = tx(&keys[9], 0, 10);
        forged.signature.0[0] ^= 1;
        let batch = vec![tx(&keys[8], 0, 10), tx(&keys[9], 1, 10), forged.clone()];
        let checked = check(batch, &CHAIN, 1_000, room.get());
        assert!(checked[0].is_ok() && checked[1].is_ok());
        assert!(matches!(checked[2], Err(Rejection::Full)));
        // With room, the same forgery is caught.
        let checked = check(vec![forged], &CHAIN, 1_000, 1);
        assert!(
            matches!(checked[0], Err(Rejection::Invalid(_))),
            "{checked:?}"
        );

        pool.remove_committed(&[], |_| 1);
        assert_eq!(room.get(), 10, "committed nonces free the room");
    }

    #[test]
    fn reap_is_round_robin_in_nonce_order_and_skips_gaps() {
        let mut pool = Mempool::new(CHAIN, config());
        let a = KeyPair::from_seed(&[1; 32]);
        let b = KeyPair::from_seed(&[2; 32]);
        pool.admit(
            vec![
                tx(&a, 2, 1),
                tx(&a, 0, 1),
                tx(&a, 1, 1),
                tx(&b, 0, 1),
                tx(&b, 2, 1),
            ],
            zero,
        );
        let block = pool.reap(100, 1_000_000, zero);
        let order: Vec<(PublicKey, u64)> = block
            .iter()
            .map(|t| (t.body().sender, t.body().nonce))
            .collect();
        // b's nonce 2 waits for nonce 1; a's three go in order, interleaved with b's one.
        assert_eq!(order.len(), 4);
        let a_nonces: Vec<u64> = order
            .iter()
            .filter(|(s, _)| *s == a.public())
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(a_nonces, vec![0, 1, 2]);
        assert_ne!(
            order[0].0, order[1].0,
            "round-robin: the first two picks are different senders"
        );
        assert_eq!(pool.reap(2, 1_000_000, zero).len(), 2);
    }

    /// A block may carry a pending transaction's body with another signature (a
    /// Byzantine proposer's swap): the mempool vouches only for the bytes it verified.
    #[test]
    fn only_the_exact_bytes_it_verified_skip_a_signature_check() {
        let mut pool = Mempool::new(CHAIN, config());
        let a = KeyPair::from_seed(&[1; 32]);
        let t = tx(&a, 0, 10);
        pool.admit(vec![t.clone()], zero);
        assert!(pool.verified_exact(&t).is_some());
        let mut swapped = t.clone();
        swapped.signature.0[3] ^= 0x40;
        assert_eq!(swapped.hash(), t.hash(), "the hash names the body only");
        assert!(pool.verified_exact(&swapped).is_none());
    }

    /// Only a transaction at its sender's next nonce is work for a block; one far ahead
    /// is not (proposing at once for it made empty blocks back to back).
    #[test]
    fn a_transaction_ahead_of_its_nonce_is_not_executable() {
        let mut pool = Mempool::new(CHAIN, config());
        let a = KeyPair::from_seed(&[1; 32]);
        assert!(pool.admit(vec![tx(&a, 2, 1)], zero)[0].is_ok());
        assert!(!pool.is_empty());
        assert!(!pool.has_executable(zero));
        assert!(pool.reap(10, usize::MAX, zero).is_empty());
        assert!(pool.has_executable(|_| 2));
    }

    #[test]
    fn committed_and_stale_transactions_leave() {
        let mut pool = Mempool::new(CHAIN, config());
        let a = KeyPair::from_seed(&[1; 32]);
        let hashes: Vec<Hash> = pool
            .admit((0..3).map(|n| tx(&a, n, 1)).collect(), zero)
            .into_iter()
            .map(|r| r.expect("admitted"))
            .collect();
        pool.remove_committed(&hashes[..1], |_| 2);
        assert_eq!(
            pool.len(),
            1,
            "nonce 1 became stale when the next nonce moved to 2"
        );
        assert!(pool.contains(&hashes[2]));
        assert_eq!(
            pool.bytes(),
            pool.reap(10, usize::MAX, |_| 2)
                .iter()
                .map(|t| codec::encode(t.tx()).len())
                .sum::<usize>()
        );
    }
}
