//! The mempool: transactions admitted but not yet committed.
//!
//! Built so that nobody can jam it:
//! - **Executable and future room apart.** A sender's *executable* transactions are the
//!   run of consecutive nonces from its next committed nonce: the only ones a block can
//!   take. Those past a gap are *future*: they have a small room of their own (at most
//!   [`MempoolConfig::future_per_sender_max`] per sender and
//!   [`MempoolConfig::future_max`] in all) and expire after
//!   [`MempoolConfig::future_ttl_ms`]. Filling the gap, or a commit, makes them
//!   executable.
//! - **Fair shares.** When the pool is full, the next executable transaction of a sender
//!   is still taken if room can be made fairly: a future transaction goes first (the
//!   newest), else the last transaction of the sender holding the most, if it holds more
//!   than one more than this sender (its run stays consecutive).
//! - **Expiry.** Whatever is pending expires after [`MempoolConfig::ttl_ms`]: a sender's
//!   transactions that can never commit do not stay.
//!
//! Admission checks everything that needs no state first ([`crate::admission`]); here
//! are the duplicates, nonces and bounds. Blocks are filled round-robin across
//! senders, each sender's executable run in nonce order. Time is an input (the host's
//! monotonic milliseconds).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use cbec_ledger::{Hash, PublicKey, Transaction, VerifiedTransaction};

pub use crate::admission::Rejection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    pub txs_max: usize,
    pub bytes_max: usize,
    /// Transactions one sender may hold, and how far past its next nonce it may sign.
    pub per_sender_max: usize,
    /// Future (gapped) transactions one sender may hold.
    pub future_per_sender_max: usize,
    /// Future transactions in all.
    pub future_max: usize,
    pub future_ttl_ms: u64,
    pub ttl_ms: u64,
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
            future_per_sender_max: 64,
            future_max: 3_000,
            future_ttl_ms: 60_000,
            ttl_ms: 30 * 60_000,
            tx_bytes_max: 64 * 1024,
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: VerifiedTransaction,
    bytes: usize,
    added_ms: u64,
    /// In its sender's executable run (else future).
    executable: bool,
}

/// A transaction through the stateless half of admission (size, chain id, signature),
/// with its encoded size.
pub type Checked = Result<(VerifiedTransaction, usize), Rejection>;

/// How many more transactions the mempool can take, readable off the host thread.
/// Admission checks signatures only for that many: when the pool is full, a flood of
/// submissions costs the node no signature work (they would be refused anyway).
///
/// Admission *reserves* the room it checks for ([`Room::reserve`]) until the host has
/// admitted the batch: batches checked one after another while the host has not yet
/// admitted the first would otherwise each see the same room, and the mempool then
/// refused as full, after their signature checks, what did not fit (a client resends
/// them, and each resend was checked again).
#[derive(Debug, Clone, Default)]
pub struct Room(Arc<RoomCounts>);

#[derive(Debug, Default)]
struct RoomCounts {
    /// Set by the mempool: its capacity less what it holds.
    free: AtomicUsize,
    /// Held by batches admission is checking or the host has yet to admit.
    reserved: AtomicUsize,
}

impl Room {
    fn new(free: usize) -> Room {
        let room = Room::default();
        room.set(free);
        room
    }

    /// The room not reserved by batches on their way in.
    pub fn get(&self) -> usize {
        let free = self.0.free.load(Ordering::Relaxed);
        free.saturating_sub(self.0.reserved.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.0.free.load(Ordering::Relaxed)
    }

    fn set(&self, free: usize) {
        self.0.free.store(free, Ordering::Relaxed)
    }

    /// Reserves room for at most `want` transactions (less if less is left), until
    /// the [`Reservation`] is dropped: after the host admitted the batch, or when the
    /// batch is given up.
    pub fn reserve(&self, want: usize) -> Reservation {
        let counts = &self.0;
        let mut reserved = counts.reserved.load(Ordering::Relaxed);
        loop {
            let left = counts.free.load(Ordering::Relaxed).saturating_sub(reserved);
            let n = want.min(left);
            match counts.reserved.compare_exchange_weak(
                reserved,
                reserved + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Reservation {
                        room: self.clone(),
                        n,
                    }
                }
                Err(now) => reserved = now,
            }
        }
    }
}

/// Room reserved for one batch; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    room: Room,
    n: usize,
}

impl Reservation {
    /// How many transactions the batch may have checked.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.room.0.reserved.fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// One sender's pending transactions. `next` is its next committed nonce as last seen;
/// `[next, run_end)` is the executable run (every nonce in it present), the rest future.
#[derive(Debug)]
struct Queue {
    next: u64,
    run_end: u64,
    txs: BTreeMap<u64, Hash>,
    executable: usize,
}

/// Pending transactions by hash and by sender and nonce.
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    by_hash: BTreeMap<Hash, Entry>,
    queues: BTreeMap<PublicKey, Queue>,
    /// Senders by how many executable transactions they hold (fair eviction).
    holders: BTreeSet<(usize, PublicKey)>,
    /// Future transactions, and all, by age (expiry, eviction of the newest future).
    future_by_age: BTreeSet<(u64, Hash)>,
    by_age: BTreeSet<(u64, Hash)>,
    executable: usize,
    bytes: usize,
    room: Room,
    kept: Kept,
    unchecked: Unchecked,
}

/// Transactions kept aside by id, bounded in count and bytes, oldest out first; one
/// leaves when a block commits it. Two such: [`Kept`] and the unchecked pushes.
#[derive(Debug)]
struct OldestOut<V> {
    by_hash: BTreeMap<Hash, (u64, V, usize)>,
    by_seq: BTreeMap<u64, Hash>,
    seq: u64,
    bytes: usize,
    max: usize,
    bytes_max: usize,
}

impl<V> OldestOut<V> {
    fn new(max: usize, bytes_max: usize) -> OldestOut<V> {
        OldestOut {
            by_hash: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            seq: 0,
            bytes: 0,
            max,
            bytes_max,
        }
    }

    fn keep(&mut self, id: Hash, value: V, bytes: usize) {
        if self.by_hash.contains_key(&id) {
            return;
        }
        self.seq += 1;
        self.by_seq.insert(self.seq, id);
        self.by_hash.insert(id, (self.seq, value, bytes));
        self.bytes += bytes;
        while self.by_hash.len() > self.max || self.bytes > self.bytes_max {
            let Some((_, oldest)) = self.by_seq.pop_first() else {
                break;
            };
            if let Some((_, _, b)) = self.by_hash.remove(&oldest) {
                self.bytes -= b;
            }
        }
    }

    fn forget(&mut self, id: &Hash) {
        if let Some((seq, _, bytes)) = self.by_hash.remove(id) {
            self.by_seq.remove(&seq);
            self.bytes -= bytes;
        }
    }

    fn get(&self, id: &Hash) -> Option<&V> {
        self.by_hash.get(id).map(|(_, value, _)| value)
    }

    fn contains(&self, id: &Hash) -> bool {
        self.by_hash.contains_key(id)
    }

    fn len(&self) -> usize {
        self.by_hash.len()
    }
}

/// Peers' pushes that arrived when the pool was full or admission busy (with
/// `[network] compact_proposals`), kept as they came, unchecked, by the ids the network
/// computed: compact proposals are put together from them too (their signatures are
/// then checked in validation, as a whole block's were).
type Unchecked = OldestOut<Transaction>;

/// At most this many unchecked pushes, and this many bytes of them.
const UNCHECKED_MAX: usize = 65_536;
const UNCHECKED_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Pushes whose signatures admission checked but that the pool had no place for (past
/// a gap in their sender's nonces, mostly, at saturation): the block that carries one
/// later need not check it again.
#[derive(Debug)]
struct Kept {
    /// At most [`KEPT_MAX`] (but in tests) and [`KEPT_BYTES_MAX`].
    txs: OldestOut<VerifiedTransaction>,
    /// Block transactions found here (`verified_exact`), since the node started.
    hits: AtomicU64,
}

/// At most this many kept transactions, and this many bytes of them: a few seconds of
/// refused pushes at saturation.
const KEPT_MAX: usize = 65_536;
const KEPT_BYTES_MAX: usize = 32 * 1024 * 1024;

impl Default for Kept {
    fn default() -> Kept {
        Kept {
            txs: OldestOut::new(KEPT_MAX, KEPT_BYTES_MAX),
            hits: AtomicU64::new(0),
        }
    }
}

impl Kept {
    fn keep(&mut self, tx: VerifiedTransaction, bytes: usize) {
        self.txs.keep(tx.hash(), tx, bytes);
    }

    fn get(&self, tx: &Transaction, hash: &Hash) -> Option<VerifiedTransaction> {
        let kept = self.txs.get(hash).filter(|k| k.tx() == tx)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(kept.clone())
    }
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool {
            by_hash: BTreeMap::new(),
            queues: BTreeMap::new(),
            holders: BTreeSet::new(),
            future_by_age: BTreeSet::new(),
            by_age: BTreeSet::new(),
            executable: 0,
            bytes: 0,
            room: Room::new(config.txs_max),
            kept: Kept::default(),
            unchecked: OldestOut::new(UNCHECKED_MAX, UNCHECKED_BYTES_MAX),
            config,
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
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

    /// Executable and future transactions pending.
    pub fn counts(&self) -> (usize, usize) {
        (self.executable, self.future_by_age.len())
    }

    /// How many transactions of `sender` are pending.
    pub fn pending_of(&self, sender: &PublicKey) -> usize {
        self.queues.get(sender).map_or(0, |q| q.txs.len())
    }

    /// The nonce `sender` should sign next: after its executable run, if it has one.
    pub fn next_nonce_of(&self, sender: &PublicKey) -> Option<u64> {
        self.queues.get(sender).map(|q| q.run_end)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Whether some transaction can go in a block now (one at its sender's next nonce).
    pub fn has_executable(&self) -> bool {
        self.executable > 0
    }

    /// A pending transaction with exactly these bytes, signature included, already
    /// verified: a block validator need not check its signature again. `hash` is
    /// `tx`'s id, which the block check computed. (The id names the body only: a block
    /// could carry the same body with another signature.)
    /// Pushes the pool refused for want of room after their checks count too.
    pub fn verified_exact(&self, tx: &Transaction, hash: &Hash) -> Option<VerifiedTransaction> {
        self.by_hash
            .get(hash)
            .filter(|e| e.tx.tx() == tx)
            .map(|e| e.tx.clone())
            .or_else(|| self.kept.get(tx, hash))
    }

    /// Whether the transaction with id `id` is here: pending, kept from a refused push,
    /// or kept unchecked ([`Mempool::keep_unchecked`]).
    pub fn holds(&self, id: &Hash) -> bool {
        self.by_hash.contains_key(id) || self.kept.txs.contains(id) || self.unchecked.contains(id)
    }

    /// The transaction with id `id`, as [`Mempool::holds`] finds it: what a compact
    /// proposal's block is put back together from. (Validation checks the signatures
    /// of those it did not verify before: [`Mempool::verified_exact`] knows which.)
    pub fn by_id(&self, id: &Hash) -> Option<Transaction> {
        self.by_hash
            .get(id)
            .map(|e| e.tx.tx().clone())
            .or_else(|| self.kept.txs.get(id).map(|tx| tx.tx().clone()))
            .or_else(|| self.unchecked.get(id).cloned())
    }

    /// Keeps peers' pushes that the node had no room or time to check, by the ids the
    /// network computed (each its body's hash), with their encoded sizes.
    pub fn keep_unchecked(&mut self, txs: Vec<(Hash, Transaction, usize)>) {
        for (id, tx, bytes) in txs {
            if !self.by_hash.contains_key(&id) && !self.kept.txs.contains(&id) {
                self.unchecked.keep(id, tx, bytes);
            }
        }
    }

    /// How many unchecked pushes are kept now.
    pub fn unchecked_len(&self) -> usize {
        self.unchecked.len()
    }

    /// Block transactions whose signature checks a push refused after its check saved
    /// (found by [`Mempool::verified_exact`] among the kept ones), since the start.
    pub fn kept_hits(&self) -> u64 {
        self.kept.hits.load(Ordering::Relaxed)
    }

    /// How many refused pushes are kept verified now.
    pub fn kept_len(&self) -> usize {
        self.kept.txs.len()
    }

    /// The cheap half of admission, for transactions checked elsewhere (off the host
    /// thread): duplicates, nonces and bounds. `next_nonce` gives a sender's next
    /// nonce in committed state (asked once per sender the pool does not hold).
    pub fn admit_checked(
        &mut self,
        checked: Vec<Checked>,
        next_nonce: impl Fn(&PublicKey) -> u64,
        now_ms: u64,
    ) -> Vec<Result<Hash, Rejection>> {
        self.admit(checked, &next_nonce, now_ms, false)
    }

    /// [`Mempool::admit_checked`] for a peer's push: what the pool has no place for
    /// (past a gap in its sender's nonces, or full) is kept aside, verified, for the
    /// block that will carry it (see [`Mempool::verified_exact`]).
    pub fn admit_pushed(
        &mut self,
        checked: Vec<Checked>,
        next_nonce: impl Fn(&PublicKey) -> u64,
        now_ms: u64,
    ) -> Vec<Result<Hash, Rejection>> {
        self.admit(checked, &next_nonce, now_ms, true)
    }

    fn admit(
        &mut self,
        checked: Vec<Checked>,
        next_nonce: &impl Fn(&PublicKey) -> u64,
        now_ms: u64,
        keep: bool,
    ) -> Vec<Result<Hash, Rejection>> {
        self.expire(now_ms);
        let answers = checked
            .into_iter()
            .map(|c| {
                let (tx, size) = c?;
                let next = match self.place_for(&tx, size, next_nonce) {
                    Ok(next) => next,
                    Err(rejection) => {
                        let no_place = matches!(
                            rejection,
                            Rejection::NonceGap { .. } | Rejection::Full | Rejection::SenderFull(_)
                        );
                        if keep && no_place {
                            self.kept.keep(tx, size);
                        }
                        return Err(rejection);
                    }
                };
                Ok(self.insert(tx, size, next, now_ms))
            })
            .collect();
        self.update_room();
        answers
    }

    /// Whether `tx` (of `bytes`) may enter the pool, making room for it if it is
    /// executable; its sender's next nonce if so.
    fn place_for(
        &mut self,
        tx: &VerifiedTransaction,
        bytes: usize,
        next_nonce: &impl Fn(&PublicKey) -> u64,
    ) -> Result<u64, Rejection> {
        let hash = tx.hash();
        if self.by_hash.contains_key(&hash) {
            return Err(Rejection::Duplicate(hash));
        }
        let sender = tx.body().sender;
        let nonce = tx.body().nonce;
        let (next, run_end, held, future) = match self.queues.get(&sender) {
            Some(q) if q.txs.contains_key(&nonce) => return Err(Rejection::NonceTaken(nonce)),
            Some(q) => (q.next, q.run_end, q.txs.len(), q.txs.len() - q.executable),
            None => {
                let next = next_nonce(&sender);
                (next, next, 0, 0)
            }
        };
        if nonce < next {
            return Err(Rejection::StaleNonce {
                found: nonce,
                expected: next,
            });
        }
        if nonce - next >= self.config.per_sender_max as u64 {
            return Err(Rejection::NonceGap {
                found: nonce,
                expected: next,
            });
        }
        if held >= self.config.per_sender_max {
            return Err(Rejection::SenderFull(held));
        }
        let executable = nonce == run_end;
        if executable {
            self.make_room(sender, held - future)?;
        } else {
            if future >= self.config.future_per_sender_max {
                return Err(Rejection::NonceGap {
                    found: nonce,
                    expected: run_end,
                });
            }
            if self.future_by_age.len() >= self.config.future_max
                || self.by_hash.len() >= self.config.txs_max
            {
                return Err(Rejection::Full);
            }
        }
        if self.bytes + bytes > self.config.bytes_max {
            return Err(Rejection::Full);
        }
        Ok(next)
    }

    /// Enters `tx`, which [`Mempool::place_for`] found a place for.
    fn insert(&mut self, tx: VerifiedTransaction, bytes: usize, next: u64, now_ms: u64) -> Hash {
        let hash = tx.hash();
        let sender = tx.body().sender;
        let nonce = tx.body().nonce;
        let queue = self.queues.entry(sender).or_insert_with(|| Queue {
            next,
            run_end: next,
            txs: BTreeMap::new(),
            executable: 0,
        });
        queue.txs.insert(nonce, hash);
        self.bytes += bytes;
        self.by_age.insert((now_ms, hash));
        // Every transaction enters as future; `settle` moves it (and those it joins
        // to the run) over.
        self.future_by_age.insert((now_ms, hash));
        self.by_hash.insert(
            hash,
            Entry {
                tx,
                bytes,
                added_ms: now_ms,
                executable: false,
            },
        );
        let run_end = self.queues.get(&sender).map_or(next, |q| q.run_end);
        self.settle(sender, run_end);
        hash
    }

    /// Room for one more executable transaction of `sender` (which holds `holds`
    /// executable ones): a free place; else the newest future transaction's; else the
    /// last of the largest holder's, if it holds more than `holds + 1`.
    fn make_room(&mut self, sender: PublicKey, holds: usize) -> Result<(), Rejection> {
        if self.by_hash.len() < self.config.txs_max {
            return Ok(());
        }
        if let Some(&(_, newest)) = self.future_by_age.iter().next_back() {
            self.remove(&newest);
            return Ok(());
        }
        let Some(&(largest, victim)) = self.holders.iter().next_back() else {
            return Err(Rejection::Full);
        };
        if victim == sender || largest <= holds + 1 {
            return Err(Rejection::Full);
        }
        let last = self
            .queues
            .get(&victim)
            .and_then(|q| q.txs.get(&(q.run_end - 1)).copied());
        match last {
            Some(hash) => {
                self.remove(&hash);
                Ok(())
            }
            None => Err(Rejection::Full),
        }
    }

    /// Brings a sender's run up to date after its nonces changed. The caller vouches
    /// that every nonce in `[next, valid_up_to)` is present. The run is extended from
    /// there to the first missing nonce; every transaction whose side of the run's end
    /// changed is moved over (counts, holders and the future index follow). Invariant,
    /// before and after: the transactions in `[next, run_end)` are marked executable,
    /// all others future, and `holders` lists the sender under its executable count.
    fn settle(&mut self, sender: PublicKey, valid_up_to: u64) {
        let Some(queue) = self.queues.get_mut(&sender) else {
            return;
        };
        let listed = queue.executable;
        let marked_end = queue.run_end.max(queue.next);
        let mut end = valid_up_to.max(queue.next);
        while queue.txs.contains_key(&end) {
            end += 1;
        }
        queue.run_end = end;
        let (low, high) = (end.min(marked_end), end.max(marked_end));
        let changed: Vec<(u64, Hash)> = queue.txs.range(low..high).map(|(n, h)| (*n, *h)).collect();
        for (nonce, hash) in changed {
            let Some(entry) = self.by_hash.get_mut(&hash) else {
                continue;
            };
            let in_run = nonce < end;
            if entry.executable == in_run {
                continue;
            }
            entry.executable = in_run;
            if in_run {
                self.future_by_age.remove(&(entry.added_ms, hash));
                queue.executable += 1;
                self.executable += 1;
            } else {
                self.future_by_age.insert((entry.added_ms, hash));
                queue.executable -= 1;
                self.executable -= 1;
            }
        }
        let count = queue.executable;
        let empty = queue.txs.is_empty();
        if empty {
            self.queues.remove(&sender);
        }
        if listed != count || empty {
            if listed > 0 {
                self.holders.remove(&(listed, sender));
            }
            if count > 0 {
                self.holders.insert((count, sender));
            }
        }
    }

    /// Removes one transaction, keeping every index and count right. Removing one inside
    /// a run cuts the run there: what follows is future until the gap fills (and beyond
    /// the future bounds, leaves too).
    pub fn remove(&mut self, hash: &Hash) {
        if let Some(sender) = self.remove_one(hash) {
            self.trim_future(sender);
        }
        self.update_room();
    }

    /// [`Mempool::remove`] without the trimming; returns the sender.
    fn remove_one(&mut self, hash: &Hash) -> Option<PublicKey> {
        let entry = self.by_hash.remove(hash)?;
        self.bytes -= entry.bytes;
        self.by_age.remove(&(entry.added_ms, *hash));
        let sender = entry.tx.body().sender;
        let nonce = entry.tx.body().nonce;
        let Some(queue) = self.queues.get_mut(&sender) else {
            return Some(sender);
        };
        queue.txs.remove(&nonce);
        if entry.executable {
            let listed = queue.executable;
            queue.executable -= 1;
            self.executable -= 1;
            self.holders.remove(&(listed, sender));
            if queue.executable > 0 {
                self.holders.insert((queue.executable, sender));
            }
        } else {
            self.future_by_age.remove(&(entry.added_ms, *hash));
        }
        // A nonce below `next` (committed) leaves the run intact; one inside it cuts it.
        let valid_up_to = if nonce >= queue.next && nonce < queue.run_end {
            nonce
        } else {
            queue.run_end
        };
        self.settle(sender, valid_up_to);
        Some(sender)
    }

    /// A cut run turns executable transactions future: beyond the future bounds (per
    /// sender, then in all) the highest nonces, then the newest, leave. (Removing future
    /// ones never cuts a run, so this ends here.)
    fn trim_future(&mut self, sender: PublicKey) {
        while let Some(queue) = self.queues.get(&sender) {
            if queue.txs.len() - queue.executable <= self.config.future_per_sender_max {
                break;
            }
            let Some((_, &highest)) = queue.txs.iter().next_back() else {
                break;
            };
            self.remove_one(&highest);
        }
        while self.future_by_age.len() > self.config.future_max {
            let Some(&(_, newest)) = self.future_by_age.iter().next_back() else {
                break;
            };
            self.remove_one(&newest);
        }
    }

    /// Drops expired transactions: future ones after their time to live, all after the
    /// general one.
    pub fn expire(&mut self, now_ms: u64) {
        let future_ttl = self.config.future_ttl_ms;
        let ttl = self.config.ttl_ms;
        let expired: Vec<Hash> = self
            .future_by_age
            .iter()
            .take_while(|(at, _)| at.saturating_add(future_ttl) <= now_ms)
            .map(|(_, h)| *h)
            .chain(
                self.by_age
                    .iter()
                    .take_while(|(at, _)| at.saturating_add(ttl) <= now_ms)
                    .map(|(_, h)| *h),
            )
            .collect();
        for hash in expired {
            self.remove(&hash);
        }
        self.update_room();
    }

    /// Transactions for a block: round-robin across senders, each sender's executable
    /// run in nonce order, within both limits.
    pub fn reap(&self, txs_max: usize, bytes_max: usize) -> Vec<VerifiedTransaction> {
        let mut queues: VecDeque<(u64, &Queue)> =
            self.queues.values().map(|q| (q.next, q)).collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some((nonce, queue)) = queues.pop_front() {
            if out.len() >= txs_max {
                break;
            }
            if nonce >= queue.run_end {
                continue; // this sender's run is used up
            }
            let Some(entry) = queue.txs.get(&nonce).and_then(|h| self.by_hash.get(h)) else {
                continue;
            };
            if bytes + entry.bytes > bytes_max {
                continue;
            }
            bytes += entry.bytes;
            out.push(entry.tx.clone());
            queues.push_back((nonce + 1, queue));
        }
        out
    }

    /// After a commit: drops what the block included and whatever its nonces made
    /// stale. `next_nonce` gives the committed nonce of each of the block's senders.
    pub fn remove_committed(
        &mut self,
        committed: &[Hash],
        senders: &BTreeSet<PublicKey>,
        next_nonce: impl Fn(&PublicKey) -> u64,
    ) {
        // Each sender's next nonce first: the committed and stale transactions then leave
        // from the front of their runs, which stay whole.
        for sender in senders {
            let next = next_nonce(sender);
            let Some(queue) = self.queues.get_mut(sender) else {
                continue;
            };
            if next <= queue.next {
                continue;
            }
            let stale: Vec<Hash> = queue.txs.range(..next).map(|(_, h)| *h).collect();
            queue.next = next;
            // Nonces below `next` that were marked future (past a gap here, but in the
            // block) must not count as the run's; the run now starts at `next`.
            for hash in stale {
                self.remove(&hash);
            }
            let valid_up_to = self
                .queues
                .get(sender)
                .map_or(next, |q| q.run_end.max(next));
            self.settle(*sender, valid_up_to);
        }
        for hash in committed {
            self.remove(hash);
            self.kept.txs.forget(hash);
            self.unchecked.forget(hash);
        }
        self.update_room();
    }
}

#[cfg(test)]
impl Mempool {
    /// Every index and count against a recount from scratch.
    fn check_invariants(&self) {
        let mut executable = 0;
        let mut future = BTreeSet::new();
        let mut holders = BTreeSet::new();
        let mut bytes = 0;
        for (sender, queue) in &self.queues {
            assert!(!queue.txs.is_empty(), "an empty queue is removed");
            let mut run_end = queue.next;
            while queue.txs.contains_key(&run_end) {
                run_end += 1;
            }
            assert_eq!(queue.run_end, run_end, "run of {sender}");
            let mut count = 0;
            for (nonce, hash) in &queue.txs {
                assert!(*nonce >= queue.next, "stale nonce kept");
                let entry = &self.by_hash[hash];
                let in_run = *nonce < run_end;
                assert_eq!(entry.executable, in_run, "nonce {nonce} of {sender}");
                if in_run {
                    count += 1;
                } else {
                    future.insert((entry.added_ms, *hash));
                }
            }
            assert_eq!(queue.executable, count);
            assert!(queue.txs.len() - count <= self.config.future_per_sender_max);
            executable += count;
            if count > 0 {
                holders.insert((count, *sender));
            }
        }
        for entry in self.by_hash.values() {
            bytes += entry.bytes;
        }
        assert_eq!(self.executable, executable);
        assert_eq!(self.future_by_age, future);
        assert_eq!(self.holders, holders);
        assert_eq!(self.bytes, bytes);
        assert_eq!(self.by_age.len(), self.by_hash.len());
        assert!(self.by_hash.len() <= self.config.txs_max);
        assert!(self.future_by_age.len() <= self.config.future_max);
        assert_eq!(self.room.free(), self.config.txs_max - self.by_hash.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::Suite;

    const SUITE: Suite = Suite::Ed25519Sha256;
    use cbec_ledger::{Call, KeyPair, TxBody};
    use proptest::prelude::*;

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

    fn checked(key: &KeyPair, nonce: u64) -> Checked {
        let t = tx(key, nonce, 10);
        let size = cbec_ledger::codec::encode(&t).len();
        Ok((t.verify(&CHAIN, SUITE).expect("signed"), size))
    }

    fn config() -> MempoolConfig {
        MempoolConfig {
            txs_max: 10,
            bytes_max: 100_000,
            per_sender_max: 6,
            future_per_sender_max: 2,
            future_max: 3,
            future_ttl_ms: 1_000,
            ttl_ms: 10_000,
            tx_bytes_max: 1_000,
        }
    }

    fn key(n: u8) -> KeyPair {
        KeyPair::from_seed(&[n; 32])
    }

    fn zero(_: &PublicKey) -> u64 {
        0
    }

    fn admit(
        pool: &mut Mempool,
        key: &KeyPair,
        nonces: &[u64],
        now: u64,
    ) -> Vec<Result<Hash, Rejection>> {
        let batch = nonces.iter().map(|n| checked(key, *n)).collect();
        let answers = pool.admit_checked(batch, zero, now);
        pool.check_invariants();
        answers
    }

    #[test]
    fn explains_each_refusal() {
        let mut pool = Mempool::new(config());
        let a = key(1);
        assert!(admit(&mut pool, &a, &[0], 0)[0].is_ok());
        assert!(matches!(
            admit(&mut pool, &a, &[0], 0)[0],
            Err(Rejection::Duplicate(_))
        ));
        let other_body = {
            let t = tx(&a, 0, 11);
            let size = cbec_ledger::codec::encode(&t).len();
            Ok((t.verify(&CHAIN, SUITE).expect("signed"), size))
        };
        let answer = pool.admit_checked(vec![other_body], zero, 0);
        assert!(matches!(answer[0], Err(Rejection::NonceTaken(0))));
        let stale = pool.admit_checked(vec![checked(&key(2), 3)], |_| 5, 0);
        assert!(matches!(
            stale[0],
            Err(Rejection::StaleNonce {
                found: 3,
                expected: 5
            })
        ));
        assert!(matches!(
            admit(&mut pool, &a, &[40], 0)[0],
            Err(Rejection::NonceGap { .. })
        ));
        pool.check_invariants();
    }

    /// The jam the issue describes: fresh senders sending nonces far ahead filled the
    /// pool for good. Now each gets at most a few future places, all of them together
    /// a small room, and they expire; executable transactions still get in.
    #[test]
    fn future_nonces_have_a_small_room_of_their_own_and_expire() {
        let mut pool = Mempool::new(config());
        for n in 1..=3u8 {
            let answers = admit(&mut pool, &key(n), &[1, 2, 3, 4, 5], 0);
            let taken = answers.iter().filter(|a| a.is_ok()).count();
            assert!(taken <= 2, "sender {n} took {taken} future places");
        }
        assert_eq!(pool.counts(), (0, 3), "three future places in all");
        assert!(!pool.has_executable());
        // An honest sender's executable transactions are not affected.
        let honest = key(9);
        assert!(admit(&mut pool, &honest, &[0, 1, 2], 10)
            .iter()
            .all(Result::is_ok));
        // Time passes: the future ones expire, the executable ones stay.
        pool.expire(1_000);
        pool.check_invariants();
        assert_eq!(pool.counts(), (3, 0));
        pool.expire(10_010);
        pool.check_invariants();
        assert!(pool.is_empty(), "everything expires in the end");
    }

    /// A full pool still takes the next executable transaction of a sender with fewer
    /// than the largest holder: a future one goes first, then the largest holder's last.
    #[test]
    fn a_full_pool_still_takes_the_next_executable_transaction_of_a_small_sender() {
        let mut pool = Mempool::new(config());
        let (big, bigger) = (key(1), key(2));
        admit(&mut pool, &big, &[0, 1, 2, 3], 0);
        admit(&mut pool, &bigger, &[0, 1, 2, 3, 4, 5], 0);
        assert_eq!(pool.len(), 10);
        assert_eq!(pool.room().get(), 0);
        let small = key(3);
        let answers = admit(&mut pool, &small, &[0], 0);
        assert!(answers[0].is_ok(), "{answers:?}");
        assert_eq!(
            pool.pending_of(&bigger.public()),
            5,
            "the largest holder gave one place"
        );
        assert_eq!(
            pool.next_nonce_of(&bigger.public()),
            Some(5),
            "its run stays whole"
        );
        // Shares even out: the small sender keeps getting in while it holds fewer by
        // more than one (10 places: 4, 3 and 3).
        assert!(admit(&mut pool, &small, &[1, 2], 0)
            .iter()
            .all(Result::is_ok));
        assert_eq!(pool.pending_of(&small.public()), 3);
        assert!(matches!(
            admit(&mut pool, &small, &[3], 0)[0],
            Err(Rejection::Full)
        ));
        // A future transaction is always the first to go.
        let mut pool = Mempool::new(config());
        admit(&mut pool, &big, &[0, 1, 2, 3, 4], 0);
        admit(&mut pool, &bigger, &[0, 1, 2, 3], 0);
        admit(&mut pool, &small, &[5], 0);
        assert_eq!(pool.counts(), (9, 1));
        assert!(admit(&mut pool, &key(4), &[0], 0)[0].is_ok());
        assert_eq!(pool.counts(), (10, 0));
        // A future transaction never displaces an executable one.
        assert!(matches!(
            admit(&mut pool, &key(5), &[3], 0)[0],
            Err(Rejection::Full)
        ));
    }

    #[test]
    fn a_filled_gap_or_a_commit_makes_future_transactions_executable() {
        let mut pool = Mempool::new(config());
        let a = key(1);
        admit(&mut pool, &a, &[1, 2], 0);
        assert_eq!(pool.counts(), (0, 2));
        assert!(pool.reap(10, usize::MAX).is_empty());
        admit(&mut pool, &a, &[0], 0);
        assert_eq!(pool.counts(), (3, 0));
        let nonces: Vec<u64> = pool
            .reap(10, usize::MAX)
            .iter()
            .map(|t| t.body().nonce)
            .collect();
        assert_eq!(nonces, vec![0, 1, 2]);
        // Another node's block committed 0..=3 (this node never saw 3): 4 and 5 here
        // become executable.
        admit(&mut pool, &a, &[4, 5], 0);
        assert_eq!(pool.counts(), (3, 2));
        let senders = BTreeSet::from([a.public()]);
        pool.remove_committed(&[], &senders, |_| 4);
        pool.check_invariants();
        assert_eq!(pool.counts(), (2, 0));
        assert_eq!(pool.next_nonce_of(&a.public()), Some(6));
    }

    #[test]
    fn removing_inside_a_run_cuts_it() {
        let mut pool = Mempool::new(config());
        let a = key(1);
        let hashes: Vec<Hash> = admit(&mut pool, &a, &[0, 1, 2, 3], 0)
            .into_iter()
            .map(|h| h.expect("admitted"))
            .collect();
        pool.remove(&hashes[1]);
        pool.check_invariants();
        assert_eq!(pool.counts(), (1, 2));
        assert_eq!(pool.reap(10, usize::MAX).len(), 1);
    }

    #[test]
    fn reap_is_round_robin_in_nonce_order() {
        let mut pool = Mempool::new(config());
        let (a, b) = (key(1), key(2));
        admit(&mut pool, &a, &[2, 0, 1], 0);
        admit(&mut pool, &b, &[0, 2], 0);
        let order: Vec<(PublicKey, u64)> = pool
            .reap(100, usize::MAX)
            .iter()
            .map(|t| (t.body().sender, t.body().nonce))
            .collect();
        assert_eq!(order.len(), 4, "b's nonce 2 waits for 1");
        assert_ne!(
            order[0].0, order[1].0,
            "the first two picks are different senders"
        );
        let a_nonces: Vec<u64> = order
            .iter()
            .filter(|(s, _)| *s == a.public())
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(a_nonces, vec![0, 1, 2]);
        assert_eq!(pool.reap(2, usize::MAX).len(), 2);
    }

    /// A block may carry a pending transaction's body with another signature (a
    /// Byzantine proposer's swap): the mempool vouches only for the bytes it verified.
    #[test]
    fn only_the_exact_bytes_it_verified_skip_a_signature_check() {
        let mut pool = Mempool::new(config());
        let a = key(1);
        let t = tx(&a, 0, 10);
        admit(&mut pool, &a, &[0], 0);
        assert!(pool.verified_exact(&t, &t.hash(SUITE)).is_some());
        let mut swapped = t.clone();
        swapped.signature.0[3] ^= 0x40;
        assert_eq!(
            swapped.hash(SUITE),
            t.hash(SUITE),
            "the hash names the body only"
        );
        assert!(pool
            .verified_exact(&swapped, &swapped.hash(SUITE))
            .is_none());
    }

    /// A peer's push the pool has no place for (past its sender's future room) is
    /// kept, verified, for the block that carries it: exactly those bytes, not a
    /// client's, a few only, and not past its commit.
    #[test]
    fn a_refused_push_is_kept_verified_for_its_block() {
        let mut pool = Mempool::new(config());
        pool.kept.txs.max = 2;
        let (a, b) = (key(1), key(2));
        let push = |pool: &mut Mempool, k: &KeyPair, nonces: &[u64]| {
            let batch = nonces.iter().map(|n| checked(k, *n)).collect();
            let answers = pool.admit_pushed(batch, zero, 0);
            pool.check_invariants();
            answers
        };
        let answers = push(&mut pool, &a, &[2, 3, 4]);
        assert!(matches!(
            answers[2],
            Err(Rejection::NonceGap {
                found: 4,
                expected: 0
            })
        ));
        assert_eq!(pool.len(), 2, "the refused push is not pending");
        let four = tx(&a, 4, 10);
        let id = four.hash(SUITE);
        assert!(pool.verified_exact(&four, &id).is_some());
        assert_eq!(pool.kept_hits(), 1);
        let mut forged = four.clone();
        forged.signature.0[3] ^= 0x40;
        assert!(pool.verified_exact(&forged, &id).is_none());
        // A client's refused transaction is not kept.
        let answers = admit(&mut pool, &b, &[2, 3, 4], 0);
        assert!(answers[2].is_err());
        let b_four = tx(&b, 4, 10);
        assert!(pool.verified_exact(&b_four, &b_four.hash(SUITE)).is_none());
        // Committed, it is forgotten.
        pool.remove_committed(&[id], &BTreeSet::new(), zero);
        assert!(pool.verified_exact(&four, &id).is_none());
        // Oldest out first past the bound.
        push(&mut pool, &a, &[5, 6, 7]);
        let kept = |pool: &Mempool, n| {
            let t = tx(&a, n, 10);
            pool.verified_exact(&t, &t.hash(SUITE)).is_some()
        };
        assert_eq!(
            (kept(&pool, 5), kept(&pool, 6), kept(&pool, 7)),
            (false, true, true)
        );
    }

    /// Pushes kept unchecked are found by id for compact blocks (with the pending and
    /// the kept-verified ones), never shadow a verified one, are not "verified" for
    /// validation (it checks their signatures), and leave when a block commits them.
    #[test]
    fn unchecked_pushes_are_found_for_compact_blocks_and_leave_on_commit() {
        let mut pool = Mempool::new(config());
        let k = key(1);
        assert!(admit(&mut pool, &k, &[0], 0)[0].is_ok());
        let pending = tx(&k, 0, 10);
        let id = |t: &Transaction| t.hash(SUITE);
        let later = tx(&k, 5, 10);
        // The pending one offered again unchecked is not kept twice.
        pool.keep_unchecked(vec![
            (id(&pending), pending.clone(), 100),
            (id(&later), later.clone(), 100),
        ]);
        assert_eq!(pool.unchecked_len(), 1);
        assert!(pool.holds(&id(&pending)) && pool.holds(&id(&later)));
        assert_eq!(pool.by_id(&id(&later)), Some(later.clone()));
        assert_eq!(pool.by_id(&id(&pending)), Some(pending.clone()));
        assert!(!pool.holds(&id(&tx(&k, 6, 10))));
        assert!(
            pool.verified_exact(&later, &id(&later)).is_none(),
            "validation checks an unchecked push's signature"
        );
        pool.remove_committed(&[id(&later)], &BTreeSet::new(), zero);
        assert_eq!(pool.unchecked_len(), 0);
        assert!(!pool.holds(&id(&later)));
        pool.check_invariants();
    }

    #[test]
    fn bounded_in_bytes() {
        let mut pool = Mempool::new(MempoolConfig {
            bytes_max: 500,
            ..config()
        });
        let answers: Vec<_> = (0..10u8)
            .map(|n| {
                let t = tx(&key(n + 1), 0, 100);
                let size = cbec_ledger::codec::encode(&t).len();
                pool.admit_checked(
                    vec![Ok((t.verify(&CHAIN, SUITE).expect("signed"), size))],
                    zero,
                    0,
                )
                .remove(0)
            })
            .collect();
        assert!(answers.iter().any(|r| matches!(r, Err(Rejection::Full))));
        assert!(pool.bytes() <= 500);
        pool.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit { sender: u8, nonce: u64 },
        Commit { sender: u8, next: u64 },
        Remove { pick: usize },
        Expire { advance: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4u8, 0..8u64).prop_map(|(sender, nonce)| Op::Admit { sender, nonce }),
            2 => (0..4u8, 0..6u64).prop_map(|(sender, next)| Op::Commit { sender, next }),
            1 => (0..20usize).prop_map(|pick| Op::Remove { pick }),
            1 => (0..1_500u64).prop_map(|advance| Op::Expire { advance }),
        ]
    }

    proptest! {
        /// Any sequence of admissions, commits, removals and expiry leaves every index
        /// and count equal to a recount from scratch, within every bound.
        #[test]
        fn indexes_and_counts_stay_right(ops in proptest::collection::vec(op(), 1..80)) {
            let mut pool = Mempool::new(config());
            let keys: Vec<KeyPair> = (0..4u8).map(|n| key(n + 1)).collect();
            let mut committed = [0u64; 4];
            let mut now = 0;
            for op in ops {
                match op {
                    Op::Admit { sender, nonce } => {
                        let c = committed;
                        let k = &keys[usize::from(sender)];
                        let _ = pool.admit_checked(vec![checked(k, nonce)], |p| {
                            keys.iter().position(|k| k.public() == *p).map_or(0, |i| c[i])
                        }, now);
                    }
                    Op::Commit { sender, next } => {
                        let i = usize::from(sender);
                        committed[i] = committed[i].max(next);
                        let c = committed;
                        let senders = BTreeSet::from([keys[i].public()]);
                        pool.remove_committed(&[], &senders, |p| {
                            keys.iter().position(|k| k.public() == *p).map_or(0, |i| c[i])
                        });
                    }
                    Op::Remove { pick } => {
                        if let Some(hash) = pool.by_hash.keys().nth(pick).copied() {
                            pool.remove(&hash);
                        }
                    }
                    Op::Expire { advance } => {
                        now += advance;
                        pool.expire(now);
                    }
                }
                pool.check_invariants();
            }
        }
    }
}
