//! The host: what a validator does between its network and its disk, as one
//! deterministic state machine around the consensus core.
//!
//! Stages, each its own module with typed inputs and outputs:
//!
//! ```text
//! HTTP / peers -> admission -> mempool -> build (executor) --------\
//!                                                                  consensus -> decide
//! peers -> wire edge -> proposal keeper -> validate (executor) ----/      |
//!                                                                         v
//!                      block sync -> validate (executor) -> commit (store) -> events
//! ```
//!
//! - [`crate::admission`] checks transactions (API and peers alike) before the host's
//!   [`Host::admit`] puts them in the mempool.
//! - [`crate::wire::inbound`] turns gossiped bytes into verified messages at the edge.
//! - [`keeper`] holds one proposal per round from its proposer, with its block; consensus
//!   sees a proposal only once its block is here, so "not received" is never "invalid".
//! - [`executor`] builds, validates and commits blocks as distinct types.
//! - [`sync`] tracks peers' claimed heights and demotes peers that do not serve them.
//!
//! The host reads no clock (time comes in as [`Now`]), does no network IO (it returns
//! [`Effect`]s for the driver to perform), and keeps no unordered maps: the node
//! simulation runs several hosts on a simulated network and clock and replays a seed
//! exactly. It does use the store directly: the signing state is durable before the
//! method that signed returns (so before any effect is performed), and a decided
//! block is applied to the store before the next height starts (the store writes it
//! to disk behind, and a signature at the next height waits for that write; see
//! [`crate::store`]). A storage failure is returned as an error, which stops the node.

pub mod block_size;
pub mod executor;
pub mod keeper;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cbec_chaincode::{layout, Engine};
use cbec_consensus::{
    Config, Consensus, Decision, Evidence, Honest, Input, Message, Output, Round, SignedProposal,
    Timeout, VerifiedMessage,
};
use cbec_genesis::ConsensusParams;
use cbec_ledger::proof::{validator_key_state_key, Roster, TrustRoot};
use cbec_ledger::{codec, Block, CommitCertificate, Hash, KeyPair, PublicKey, Transaction};
use cbec_ledger::{TxResult, ValidatorSet};

use crate::admission::Rejection;
use crate::mempool::{Checked, Mempool};
use crate::store::Store;
use crate::wire::{CheckedBlock, CheckedCompact, Compact, Inbound, NetMessage};
use block_size::BlockSize;
use executor::{CommittedBlock, ExecutedBlock, Executor, Expect, Limits, StorageFailure};
use keeper::{Kept, ProposalKeeper};
use sync::BlockSync;

/// What the host needs of a peer's identity: a libp2p peer id in the node, an index in
/// the simulation.
pub trait Peer: Copy + Ord + std::fmt::Debug + std::fmt::Display + Send + 'static {}
impl<T: Copy + Ord + std::fmt::Debug + std::fmt::Display + Send + 'static> Peer for T {}

/// The time of an input: the wall clock (block times and judgements of them) and a
/// monotonic clock (durations). Only the driver reads clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall_ms: u64,
    pub mono_ms: u64,
}

/// How often the host says its height to peers.
pub const STATUS_EVERY_MS: u64 = 1_000;
/// How often the host considers block sync.
pub const SYNC_EVERY_MS: u64 = 500;
/// Time at one height after which a peer one block ahead is worth a sync request.
pub const BEHIND_AFTER_MS: u64 = 3_000;
/// How often a node stuck at a height with no peer to fetch blocks from says so.
pub const STUCK_WARN_EVERY_MS: u64 = 10_000;
/// How often, at the most, a proposer with nothing to put in a block looks again, until
/// the heartbeat (it looks every batch delay when that is longer).
pub const IDLE_POLL_MS: u64 = 5;

/// The timers a host sets; the driver fires each once, after its delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Consensus(Timeout),
    /// Time to build this validator's proposal (or to look again whether there is work).
    Build {
        height: u64,
        round: Round,
    },
    Status,
    Sync,
    /// Time to stop waiting for the transactions a compact block lacks, and fetch it.
    Assemble {
        height: u64,
        value: Hash,
    },
}

/// What the driver performs for the host, in order.
#[derive(Debug)]
pub enum Effect<P> {
    /// Gossip to every peer.
    Broadcast(NetMessage),
    /// Transactions admitted from a client: push them to peers.
    PushTxs(Vec<Transaction>),
    RequestBlocks {
        peer: P,
        from: u64,
    },
    /// Ask `peer` (the one that delivered the proposal), then the others, for the block
    /// `proposal` names: its compact form could not be put back together here. The
    /// block comes back through the network edge as a proposal with its block.
    FetchBlock {
        peer: P,
        proposal: Box<SignedProposal>,
    },
    /// A peer misbehaved on a connection it owns (it served a bad block): drop it.
    Disconnect {
        peer: P,
        reason: String,
    },
    SetTimer {
        timer: Timer,
        after_ms: u64,
    },
    /// A block was committed.
    Committed(Committed),
    /// A validator signed two conflicting messages.
    Evidence(Box<Evidence>),
}

/// What the driver learns of each commit (metrics, the event stream, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub height: u64,
    pub hash: Hash,
    pub time_ms: u64,
    pub txs: usize,
    pub rejected: usize,
    /// Time from the start of the height to its commit.
    pub latency_ms: u64,
    pub synced: bool,
}

/// The host's view, for `/v1/status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStatus {
    pub height: u64,
    pub round: Round,
    pub peers: usize,
    pub syncing: bool,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    /// Transactions this validator's next block may take (see [`block_size`]).
    pub block_txs_max: usize,
    /// Block transactions whose signatures were checked when the mempool refused their
    /// push (see [`Mempool::admit_pushed`]), since the start.
    pub mempool_kept_hits: u64,
    /// Such transactions kept now.
    pub mempool_kept: usize,
    /// Peers' pushes kept unchecked for compact blocks now.
    pub mempool_unchecked: usize,
    /// Peers' compact proposals put together from the mempool at once, since the start.
    pub compact_filled: u64,
    /// Those put together once pushes still on their way had arrived.
    pub compact_waited: u64,
    /// Those whose whole block was asked of a peer.
    pub compact_fetched: u64,
}

/// Genesis facts the host runs on.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub trust: TrustRoot,
    pub consensus: ConsensusParams,
    pub genesis_time_ms: u64,
    /// Proposals whose blocks hold at least this many transactions travel compact
    /// (see [`Host::outgoing`]); production uses [`COMPACT_TXS_MIN`].
    pub compact_txs_min: usize,
}

/// Blocks of fewer transactions travel whole. A small block is the work of the last few
/// milliseconds, whose pushes are often still on their way to peers: compact, it made
/// three peers in four wait for them at 1,000 tx/s (p99 167 ms against 63 ms whole, in
/// docs/performance.md), for a few kilobytes saved. A large block is seconds of
/// admissions, which peers hold.
pub const COMPACT_TXS_MIN: usize = 512;

/// Where admitted transactions came from: a client's are pushed on to peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Peer,
}

type Effects<P> = Vec<Effect<P>>;

/// Each transaction's answer from the mempool, and what to do next.
pub type Admitted<P> = (Vec<Result<Hash, Rejection>>, Effects<P>);

/// Why the host cannot go on: the store failed, or an invariant broke. The node stops
/// (a validator that cannot trust its own state must not vote on a guess).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

impl From<StorageFailure> for Fatal {
    fn from(e: StorageFailure) -> Fatal {
        Fatal(e.to_string())
    }
}

impl From<crate::store::StoreError> for Fatal {
    fn from(e: crate::store::StoreError) -> Fatal {
        Fatal(format!("storage failed: {e}"))
    }
}

type HostResult<T> = Result<T, Fatal>;

/// Reads committed nonces for the mempool, which asks through a plain function: a failed
/// read answers 0 there and is reported by [`Nonces::finish`], so it is never lost.
struct Nonces<'a> {
    store: &'a Store,
    failure: std::cell::RefCell<Option<Fatal>>,
}

impl<'a> Nonces<'a> {
    fn new(store: &'a Store) -> Nonces<'a> {
        Nonces {
            store,
            failure: std::cell::RefCell::new(None),
        }
    }

    fn get(&self, key: &PublicKey) -> u64 {
        next_nonce(self.store, key).unwrap_or_else(|e| {
            self.failure.borrow_mut().get_or_insert(e);
            0
        })
    }

    fn finish(self) -> HostResult<()> {
        match self.failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// One validator's host (see the module comment).
pub struct Host<P> {
    config: HostConfig,
    chain_id: Hash,
    me: PublicKey,
    executor: Executor,
    consensus: Consensus<KeyPair, Honest>,
    keeper: ProposalKeeper,
    mempool: Mempool,
    sync: BlockSync<P>,
    validators: ValidatorSet,
    previous_validators: ValidatorSet,
    /// Blocks executed at this height (own, validated), by hash.
    executed: BTreeMap<Hash, ExecutedBlock>,
    /// This validator owes a value for (height, round) since the given time.
    building: Option<(u64, Round, u64)>,
    /// The limits of this validator's next block.
    block_size: BlockSize,
    /// Decided at this height, block not held: sync fetches it.
    awaiting: Option<Decision>,
    height_started_ms: u64,
    /// When the host last warned that it is stuck (see [`STUCK_WARN_EVERY_MS`]).
    stuck_warned_ms: u64,
    /// Proposals sent with their block since the last peer connected (by value and
    /// round): rebroadcasts go without the block.
    blocks_sent: BTreeSet<(Hash, Round)>,
    /// Blocks asked of peers at this height (at most [`FETCHES_PER_HEIGHT_MAX`]).
    fetches: usize,
    /// Compact blocks of this height waiting for transactions on their way here.
    assembling: BTreeMap<Hash, Assembling<P>>,
    compact_filled: u64,
    compact_waited: u64,
    compact_fetched: u64,
}

/// A compact proposal of the current height whose block lacks transactions: kept
/// pending, and put together when pushes bring them, or fetched after
/// [`ASSEMBLE_WAIT_MS`]. A proposer takes transactions into its block as soon as its
/// clients' are admitted, so a peer often receives the proposal before the push.
#[derive(Debug)]
struct Assembling<P> {
    height: u64,
    proposal: VerifiedMessage,
    block: CheckedCompact,
    missing: BTreeSet<Hash>,
    from: P,
}

/// How long a compact block may wait for the transactions it lacks before the whole
/// block is asked of a peer.
pub const ASSEMBLE_WAIT_MS: u64 = 100;

/// Compact blocks waiting at once (one per round; the rest are fetched at once).
const ASSEMBLING_MAX: usize = 4;

/// What the mempool made of a compact block.
enum Fill {
    Done(CheckedBlock),
    /// Transactions not here (yet).
    Missing(CheckedCompact, BTreeSet<Hash>),
    /// Held already, or the transactions here are not the block's (another signature
    /// under the same id): the whole block is fetched if still missing.
    Failed,
}

/// Block fetches one height may ask for: a proposal's block is asked again each time its
/// proposal is re-sent while the block is missing, and a peer's compact proposals for
/// the next height are fetched before their proposer can be checked.
pub const FETCHES_PER_HEIGHT_MAX: usize = 16;

impl<P> std::fmt::Debug for Host<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("height", &self.consensus.height())
            .field("round", &self.consensus.round())
            .field("mempool", &self.mempool.len())
            .finish_non_exhaustive()
    }
}

impl<P: Peer> Host<P> {
    /// A host over `store` (already initialised with the genesis state), restoring the
    /// signing state it finds there.
    pub fn new(
        config: HostConfig,
        store: Arc<Store>,
        engine: Engine,
        key: KeyPair,
        mempool: Mempool,
    ) -> HostResult<Host<P>> {
        let chain_id = config.trust.chain_id;
        let c = &config.consensus;
        let consensus_config = Config {
            chain_id,
            timeouts: cbec_consensus::Timeouts {
                propose_ms: c.timeout_propose_ms,
                prevote_ms: c.timeout_prevote_ms,
                precommit_ms: c.timeout_precommit_ms,
                increase_per_round_ms: c.timeout_increase_per_round_ms,
            },
        };
        let signing = store
            .signing_state()?
            .unwrap_or_else(cbec_consensus::SigningState::genesis);
        let me = key.public();
        let consensus = Consensus::new(consensus_config, key, Honest, signing);
        let validators = Roster::derive(&config.trust.agencies, &[])
            .map_err(|e| Fatal(format!("genesis validator set: {e}")))?
            .set()
            .clone();
        let limits = Limits {
            txs_max: c.block_txs_max as usize,
            bytes_max: c.block_bytes_max as usize,
        };
        let executor = Executor::new(engine, store, chain_id, limits, config.genesis_time_ms);
        Ok(Host {
            chain_id,
            me,
            executor,
            consensus,
            keeper: ProposalKeeper::default(),
            mempool,
            sync: BlockSync::default(),
            previous_validators: validators.clone(),
            validators,
            executed: BTreeMap::new(),
            building: None,
            block_size: BlockSize::new(
                c.block_txs_max as usize,
                c.block_bytes_max as usize / 2,
                c.tx_bytes_max as usize,
            ),
            awaiting: None,
            height_started_ms: 0,
            stuck_warned_ms: 0,
            blocks_sent: BTreeSet::new(),
            fetches: 0,
            assembling: BTreeMap::new(),
            compact_filled: 0,
            compact_waited: 0,
            compact_fetched: 0,
            config,
        })
    }

    fn store(&self) -> &Arc<Store> {
        self.executor.store()
    }

    /// Starts at the height after the store's last block, and the periodic timers.
    pub fn start(&mut self, now: Now) -> HostResult<Effects<P>> {
        let mut effects = vec![
            Effect::SetTimer {
                timer: Timer::Status,
                after_ms: STATUS_EVERY_MS,
            },
            Effect::SetTimer {
                timer: Timer::Sync,
                after_ms: SYNC_EVERY_MS,
            },
        ];
        let next = self.store().height()? + 1;
        let outputs = self.begin_height(next, now)?;
        self.perform(outputs, now, &mut effects)?;
        Ok(effects)
    }

    pub fn status(&self) -> HostStatus {
        HostStatus {
            height: self.consensus.height().saturating_sub(1),
            round: self.consensus.round(),
            peers: self.sync.peers(),
            syncing: self.awaiting.is_some(),
            mempool_txs: self.mempool.len(),
            mempool_bytes: self.mempool.bytes(),
            block_txs_max: self.block_size.limits().0,
            mempool_kept_hits: self.mempool.kept_hits(),
            mempool_kept: self.mempool.kept_len(),
            mempool_unchecked: self.mempool.unchecked_len(),
            compact_filled: self.compact_filled,
            compact_waited: self.compact_waited,
            compact_fetched: self.compact_fetched,
        }
    }

    pub fn height(&self) -> u64 {
        self.consensus.height()
    }

    /// The set for the next height: the genesis agencies, each agency's key replaced
    /// where governance recorded one (`gov/validator/<agency>`) in committed state.
    /// Auditors' verifiers derive it the same way (`Roster::derive`).
    fn validators_for_next(&self) -> HostResult<ValidatorSet> {
        let trust = &self.config.trust;
        let mut overrides = Vec::with_capacity(trust.agencies.len());
        for agency in &trust.agencies {
            let key = validator_key_state_key(&agency.name);
            overrides.push(
                self.store()
                    .state_value(key.as_bytes())?
                    .and_then(|b| codec::decode::<PublicKey>(&b).ok()),
            );
        }
        Roster::derive(&trust.agencies, &overrides)
            .map(|r| r.set().clone())
            .map_err(|e| Fatal(format!("validator set from state: {e}")))
    }

    /// Resets per-height state and starts consensus at `height`; returns its outputs
    /// and offers the proposals that arrived early for it.
    fn begin_height(&mut self, height: u64, now: Now) -> HostResult<Vec<Output>> {
        let next = self.validators_for_next()?;
        self.previous_validators = std::mem::replace(&mut self.validators, next);
        self.executed.clear();
        self.blocks_sent.clear();
        self.fetches = 0;
        // Compact blocks of this height that arrived early go on waiting.
        self.assembling.retain(|_, a| a.height == height);
        self.building = None;
        self.awaiting = None;
        self.height_started_ms = now.mono_ms;
        let early = self.keeper.start(height);
        let mut outputs = self.consensus.handle(Input::StartHeight {
            height,
            validators: self.validators.clone(),
        });
        for (proposal, block) in early {
            outputs.extend(self.offer_proposal(proposal, Some(block), now));
        }
        Ok(outputs)
    }

    /// Performs consensus outputs in order. A decision commits the block and starts the
    /// next height.
    ///
    /// A `Persist` must be durable before anything after it leaves the node. Nothing
    /// leaves before this returns (broadcasts are effects, performed afterwards), so
    /// only the last signing state of the call is written, once, at its end: it covers
    /// every earlier one (a signing state only moves forward, and keeps what it signed
    /// at its height). A proposer's proposal and its own prevote so cost one synced
    /// write, not two.
    fn perform(
        &mut self,
        outputs: Vec<Output>,
        now: Now,
        effects: &mut Effects<P>,
    ) -> HostResult<()> {
        let mut signing = None;
        self.perform_outputs(outputs, now, effects, &mut signing)?;
        if let Some(state) = signing {
            self.store().save_signing_state(&state)?;
        }
        Ok(())
    }

    fn perform_outputs(
        &mut self,
        outputs: Vec<Output>,
        now: Now,
        effects: &mut Effects<P>,
        signing: &mut Option<cbec_consensus::SigningState>,
    ) -> HostResult<()> {
        let mut queue: std::collections::VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::Persist(state) => *signing = Some(state),
                Output::Broadcast(message) => {
                    effects.push(Effect::Broadcast(self.outgoing(message)))
                }
                Output::ScheduleTimeout { timeout, after_ms } => effects.push(Effect::SetTimer {
                    timer: Timer::Consensus(timeout),
                    after_ms,
                }),
                Output::RequestValue { height, round } => {
                    self.building = Some((height, round, now.mono_ms));
                    effects.push(Effect::SetTimer {
                        timer: Timer::Build { height, round },
                        after_ms: self.batch_delay(),
                    });
                }
                Output::ValidateValue { height, value, .. } => {
                    if let Some(valid) = self.validate(&value)? {
                        queue.extend(self.consensus.handle(Input::ValueValidated {
                            height,
                            value,
                            valid,
                        }));
                    }
                }
                Output::Decide(decision) => {
                    // Outputs after a decision belong to the finished height.
                    queue.clear();
                    if self.decide(decision, now, effects)? {
                        let next = self.consensus.height() + 1;
                        queue.extend(self.begin_height(next, now)?);
                    }
                }
                Output::Evidence(evidence) => {
                    tracing::warn!(offender = %evidence.offender(), "equivocation evidence");
                    effects.push(Effect::Evidence(Box::new(evidence)));
                }
            }
        }
        Ok(())
    }

    /// A consensus message as it goes out: a proposal travels with its block once per
    /// round (consensus rebroadcasts every propose timeout; resending a block to peers
    /// that have it cost more than the rest of a slow height). A block of at least
    /// `compact_txs_min` transactions travels compact, without them: peers hold them,
    /// and ask for the whole block when they do not ([`Host::proposal_block`] answers).
    fn outgoing(&mut self, message: Message) -> NetMessage {
        if let Message::Proposal(p) = &message {
            let key = (p.proposal.value, p.proposal.round);
            if !self.blocks_sent.contains(&key) {
                if let Some(block) = self.block_for(&p.proposal.value) {
                    self.blocks_sent.insert(key);
                    if block.txs.len() < self.config.compact_txs_min {
                        return NetMessage::Proposal {
                            proposal: p.clone(),
                            block,
                        };
                    }
                    return NetMessage::CompactProposal {
                        proposal: p.clone(),
                        block: Compact::of(block),
                    };
                }
            }
        }
        NetMessage::Consensus(message)
    }

    /// The block of a proposal this node holds at its current height (its own, or a
    /// peer's it put together or fetched), or the block it committed at `height` if that
    /// is the one: for a peer that asks for it (a node a height behind asks for a block
    /// its proposer may have committed meanwhile).
    pub fn proposal_block(&self, height: u64, hash: &Hash) -> Option<Arc<Block>> {
        self.block_for(hash).or_else(|| {
            let committed = self.store().block_shared(height).ok().flatten()?;
            (committed.hash(self.store().suite()) == *hash).then_some(committed)
        })
    }

    /// A compact block put back together from the mempool's transactions, or what it
    /// lacks.
    fn fill(&mut self, value: &Hash, block: CheckedCompact) -> Fill {
        if self.keeper.checked(value).is_some() {
            return Fill::Failed; // held already (a relayed copy)
        }
        // One lookup an id: usually every one is here.
        let mut txs = Vec::with_capacity(block.ids().len());
        let mut missing = BTreeSet::new();
        for id in block.ids() {
            match self.mempool.by_id(id) {
                Some(tx) => txs.push(tx),
                None => {
                    missing.insert(*id);
                }
            }
        }
        if !missing.is_empty() {
            return Fill::Missing(block, missing);
        }
        match block.fill(txs, self.store().suite()) {
            Ok(filled) => Fill::Done(filled),
            Err(e) => {
                tracing::debug!(block = %value, "compact block does not fit this mempool's transactions: {e}");
                Fill::Failed
            }
        }
    }

    /// A peer's compact proposal: put together from the mempool, else kept pending
    /// while the transactions it lacks may still be on their way (this height's), else
    /// fetched.
    fn on_compact(
        &mut self,
        from: P,
        proposal: VerifiedMessage,
        block: CheckedCompact,
        now: Now,
        effects: &mut Effects<P>,
    ) -> Vec<Output> {
        let Some(signed) = proposal.proposal().cloned() else {
            return Vec::new(); // the edge makes these only of proposals
        };
        let value = signed.proposal.value;
        match self.fill(&value, block) {
            Fill::Done(filled) => {
                self.compact_filled += 1;
                self.offer_proposal(proposal, Some(filled), now)
            }
            Fill::Missing(block, missing)
                if (signed.proposal.height == self.keeper.height()
                    || signed.proposal.height == self.keeper.height() + 1)
                    && self.assembling.len() < ASSEMBLING_MAX
                    && !self.assembling.contains_key(&value) =>
            {
                let outputs = self.offer_proposal(proposal.clone(), None, now);
                // Kept pending at this height; the next height's proposer is checked
                // once it starts, when the block is offered.
                let kept = signed.proposal.height > self.keeper.height()
                    || self.keeper.proposal(signed.proposal.round) == Some(&signed);
                if kept {
                    tracing::debug!(block = %value, missing = missing.len(), "compact block waits for transactions");
                    self.assembling.insert(
                        value,
                        Assembling {
                            height: signed.proposal.height,
                            proposal,
                            block,
                            missing,
                            from,
                        },
                    );
                    effects.push(Effect::SetTimer {
                        timer: Timer::Assemble {
                            height: signed.proposal.height,
                            value,
                        },
                        after_ms: ASSEMBLE_WAIT_MS,
                    });
                }
                outputs
            }
            Fill::Missing(..) | Fill::Failed => {
                let outputs = self.offer_proposal(proposal, None, now);
                self.fetch_if_missing(from, signed, true, effects);
                outputs
            }
        }
    }

    /// Compact blocks that the transactions just admitted completed: offered with their
    /// blocks now.
    fn assemble_arrived(&mut self, now: Now) -> Vec<Output> {
        let mut complete = Vec::new();
        for (value, a) in &mut self.assembling {
            a.missing.retain(|id| !self.mempool.holds(id));
            if a.missing.is_empty() {
                complete.push(*value);
            }
        }
        let mut outputs = Vec::new();
        for value in complete {
            let Some(a) = self.assembling.remove(&value) else {
                continue;
            };
            match self.fill(&value, a.block) {
                Fill::Done(filled) => {
                    self.compact_waited += 1;
                    outputs.extend(self.offer_proposal(a.proposal, Some(filled), now));
                }
                // The timer fetches it.
                Fill::Missing(..) | Fill::Failed => {}
            }
        }
        outputs
    }

    /// The wait for a compact block's transactions is over: put it together if they
    /// came, else fetch it.
    fn on_assemble_timer(
        &mut self,
        height: u64,
        value: Hash,
        now: Now,
        effects: &mut Effects<P>,
    ) -> Vec<Output> {
        if height < self.keeper.height() {
            return Vec::new(); // that height is over
        }
        let Some(a) = self.assembling.remove(&value) else {
            return Vec::new(); // put together already
        };
        let Some(signed) = a.proposal.proposal().cloned() else {
            return Vec::new();
        };
        match self.fill(&value, a.block) {
            Fill::Done(filled) => {
                self.compact_waited += 1;
                self.offer_proposal(a.proposal, Some(filled), now)
            }
            Fill::Missing(..) | Fill::Failed => {
                tracing::debug!(block = %value, "compact block still lacks transactions: fetching it");
                // Pending at its height now if it came early (then it was not kept).
                let outputs = self.offer_proposal(a.proposal, None, now);
                self.fetch_if_missing(a.from, signed, true, effects);
                outputs
            }
        }
    }

    /// Asks `from` (then the other peers) for the block `proposal` names if it is still
    /// missing after the proposal was offered: the current round's kept proposal, or a
    /// `compact` one for the next height.
    fn fetch_if_missing(
        &mut self,
        from: P,
        proposal: SignedProposal,
        compact: bool,
        effects: &mut Effects<P>,
    ) {
        let p = &proposal.proposal;
        if self.keeper.checked(&p.value).is_some()
            || self.executed.contains_key(&p.value)
            || self.fetches >= FETCHES_PER_HEIGHT_MAX
        {
            return;
        }
        let wanted = if p.height == self.keeper.height() {
            self.keeper.proposal(p.round) == Some(&proposal)
        } else {
            compact && p.height == self.keeper.height() + 1
        };
        if wanted {
            self.fetches += 1;
            self.compact_fetched += u64::from(compact);
            tracing::debug!(height = p.height, round = p.round, %from, "fetching a proposal's block");
            effects.push(Effect::FetchBlock {
                peer: from,
                proposal: Box::new(proposal),
            });
        }
    }

    fn block_for(&self, value: &Hash) -> Option<Arc<Block>> {
        self.executed
            .get(value)
            .map(|e| e.checked().shared())
            .or_else(|| self.keeper.checked(value).map(CheckedBlock::shared))
    }

    /// `valid(v)`: `Some(verdict)`, or `None` while the block is not here (never
    /// "invalid" for "missing": consensus waits, and times out if it must).
    fn validate(&mut self, value: &Hash) -> HostResult<Option<bool>> {
        if self.executed.contains_key(value) {
            return Ok(Some(true));
        }
        let Some(block) = self.keeper.checked(value).cloned() else {
            return Ok(None);
        };
        let expect = Expect {
            validators: &self.validators,
            previous_validators: &self.previous_validators,
            proposer: Some(block.block().header.proposer),
        };
        let mempool = &self.mempool;
        match self
            .executor
            .validate_checked(block, expect, &|tx, id| mempool.verified_exact(tx, id))?
        {
            Ok(executed) => {
                self.executed.insert(*value, executed);
                Ok(Some(true))
            }
            Err(reason) => {
                tracing::warn!(block = %value, "proposal invalid: {reason}");
                Ok(Some(false))
            }
        }
    }

    /// Commits the decided block if this node holds it (true: go on to the next
    /// height), else waits for sync to fetch it.
    fn decide(
        &mut self,
        decision: Decision,
        now: Now,
        effects: &mut Effects<P>,
    ) -> HostResult<bool> {
        if !self.executed.contains_key(&decision.value) {
            // Validity was established to decide, so the block was here; a decision
            // from a certificate (sync) may come without it.
            let _ = self.validate(&decision.value)?;
        }
        let Some(executed) = self.executed.remove(&decision.value) else {
            tracing::info!(
                height = decision.height,
                "decided a block not held here; syncing it"
            );
            self.awaiting = Some(decision);
            self.request_sync(now, effects);
            return Ok(false);
        };
        if self.block_size.decided(decision.round) {
            let (txs_max, bytes_max) = self.block_size.limits();
            tracing::info!(
                height = decision.height,
                txs_max,
                bytes_max,
                "decided in the first round: proposing larger blocks again"
            );
        }
        let certified = executed.certify(decision.certificate, &self.chain_id, &self.validators);
        match certified {
            Ok(committed) => {
                self.commit(committed, false, now, effects)?;
                Ok(true)
            }
            Err((_, e)) => {
                // Consensus built this certificate from verified precommits of this set.
                Err(Fatal(format!("consensus produced a bad certificate: {e}")))
            }
        }
    }

    fn commit(
        &mut self,
        block: CommittedBlock,
        synced: bool,
        now: Now,
        effects: &mut Effects<P>,
    ) -> HostResult<()> {
        let applied = self.store().apply(block)?;
        let b = &applied.block;
        // Each result names its transaction's hash (the body check holds them equal).
        let hashes: Vec<Hash> = b.results.iter().map(|r| r.tx_hash).collect();
        let senders: BTreeSet<PublicKey> = b.txs.iter().map(|t| t.body.sender).collect();
        let store = self.store().clone();
        let nonces = Nonces::new(&store);
        self.mempool
            .remove_committed(&hashes, &senders, |k| nonces.get(k));
        nonces.finish()?;
        let rejected = b
            .results
            .iter()
            .filter(|r: &&TxResult| !r.is_accepted())
            .count();
        let hash = b.hash(store.suite());
        tracing::info!(height = b.height(), txs = b.txs.len(), hash = %hash, "committed");
        effects.push(Effect::Committed(Committed {
            height: b.height(),
            hash,
            time_ms: b.header.time_ms,
            txs: b.txs.len(),
            rejected,
            latency_ms: now.mono_ms.saturating_sub(self.height_started_ms),
            synced,
        }));
        Ok(())
    }

    /// A verified message from the network edge.
    pub fn on_inbound(&mut self, from: P, inbound: Inbound, now: Now) -> HostResult<Effects<P>> {
        let mut effects = Vec::new();
        let outputs = match inbound {
            Inbound::Status { height } => {
                self.sync.on_status(from, height);
                return Ok(effects);
            }
            Inbound::Vote(vote) => self.consensus.handle(Input::Verified(vote)),
            Inbound::Proposal { proposal, block } => {
                // A proposal re-sent without its block while the block is still missing
                // here: the first fetch failed, or the compact one was lost.
                let bare = block
                    .is_none()
                    .then(|| proposal.proposal().cloned())
                    .flatten();
                let outputs = self.offer_proposal(proposal, block.map(|b| *b), now);
                if let Some(signed) = bare {
                    self.fetch_if_missing(from, signed, false, &mut effects);
                }
                outputs
            }
            Inbound::CompactProposal { proposal, block } => {
                self.on_compact(from, proposal, *block, now, &mut effects)
            }
        };
        self.perform(outputs, now, &mut effects)?;
        Ok(effects)
    }

    /// Puts a verified proposal in the keeper; hands consensus every proposal that now
    /// has its block, with its timeliness judged.
    fn offer_proposal(
        &mut self,
        proposal: VerifiedMessage,
        block: Option<CheckedBlock>,
        now: Now,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        let round = proposal.proposal().map_or(0, |p| p.proposal.round);
        let expected = self.consensus.proposer(round);
        match self
            .keeper
            .offer(proposal, block, expected, self.consensus.round())
        {
            Kept::Ready | Kept::BlockArrived => {}
            Kept::Equivocation { first, second } => {
                outputs.push(Output::Evidence(Evidence::ConflictingProposals {
                    first: *first,
                    second: *second,
                }));
                return outputs;
            }
            Kept::Pending | Kept::Duplicate | Kept::WrongProposer | Kept::OutOfWindow => {
                return outputs
            }
        }
        for ready in self.keeper.take_ready() {
            let timely = self.timely(&ready, now);
            outputs.extend(self.consensus.handle(Input::TimedProposal {
                proposal: ready,
                timely,
            }));
        }
        outputs
    }

    /// A fresh proposal is timely when its block's time is within the genesis bounds of
    /// this validator's clock (behind and ahead). A re-proposal (with a valid round) is
    /// not judged: its polka shows it was timely to enough validators, and refusing it
    /// for age could stall validators locked on it.
    fn timely(&self, proposal: &VerifiedMessage, now: Now) -> bool {
        let Some(p) = proposal.proposal() else {
            return true;
        };
        if p.proposal.valid_round.is_some() {
            return true;
        }
        let Some(block) = self.keeper.block(&p.proposal.value) else {
            return false;
        };
        let c = &self.config.consensus;
        let time = block.header.time_ms;
        let timely = time <= now.wall_ms.saturating_add(c.block_time_ahead_ms_max)
            && time.saturating_add(c.block_time_behind_ms_max) >= now.wall_ms;
        if !timely {
            tracing::warn!(
                height = p.proposal.height,
                round = p.proposal.round,
                block_time_ms = time,
                clock_ms = now.wall_ms,
                "proposal not timely: its block time is too far from this node's clock"
            );
        }
        timely
    }

    /// A timer the host set has fired.
    pub fn on_timer(&mut self, timer: Timer, now: Now) -> HostResult<Effects<P>> {
        let mut effects = Vec::new();
        match timer {
            Timer::Consensus(timeout) => {
                let outputs = self.consensus.handle(Input::Timeout(timeout));
                self.perform(outputs, now, &mut effects)?;
            }
            Timer::Build { height, round } => self.on_build(height, round, now, &mut effects)?,
            Timer::Status => {
                let height = self.store().height()?;
                effects.push(Effect::Broadcast(NetMessage::Status { height }));
                effects.push(Effect::SetTimer {
                    timer: Timer::Status,
                    after_ms: STATUS_EVERY_MS,
                });
            }
            Timer::Sync => {
                self.request_sync(now, &mut effects);
                effects.push(Effect::SetTimer {
                    timer: Timer::Sync,
                    after_ms: SYNC_EVERY_MS,
                });
            }
            Timer::Assemble { height, value } => {
                let outputs = self.on_assemble_timer(height, value, now, &mut effects);
                self.perform(outputs, now, &mut effects)?;
            }
        }
        Ok(effects)
    }

    /// How long a proposer waits, once a height asks it for a block, before it looks at
    /// its mempool: the genesis batch delay, which lets a lightly loaded chain gather a
    /// few milliseconds of transactions a block instead of making a block for each one
    /// or two; none when the mempool already holds a whole block it can take, as under
    /// a backlog, where waiting would only lengthen every height.
    fn batch_delay(&self) -> u64 {
        if self.whole_block_pending() {
            0
        } else {
            self.config.consensus.batch_delay_ms
        }
    }

    /// Whether the mempool holds as many transactions a block can take as the next
    /// block may carry.
    fn whole_block_pending(&self) -> bool {
        let (executable, _) = self.mempool.counts();
        executable >= self.block_size.limits().0
    }

    /// Builds this validator's proposal once there is work it can put in a block (first
    /// looked at the batch delay after the height asked for a value); with none, looks
    /// again every batch delay (at least [`IDLE_POLL_MS`]) up to half the propose
    /// timeout, then proposes an empty block (a heartbeat). Transactions that cannot go
    /// in a block yet (a nonce ahead) are not work: proposing at once for them made
    /// empty blocks back to back.
    fn on_build(
        &mut self,
        height: u64,
        round: Round,
        now: Now,
        effects: &mut Effects<P>,
    ) -> HostResult<()> {
        let Some((h, r, since)) = self.building else {
            return Ok(());
        };
        if (h, r) != (height, round) {
            return Ok(());
        }
        let c = &self.config.consensus;
        let heartbeat_after = c.timeout_propose_ms / 2;
        self.mempool.expire(now.mono_ms);
        let work = self.mempool.has_executable();
        if !work && now.mono_ms.saturating_sub(since) < heartbeat_after {
            effects.push(Effect::SetTimer {
                timer: Timer::Build { height, round },
                after_ms: IDLE_POLL_MS.max(c.batch_delay_ms),
            });
            return Ok(());
        }
        self.building = None;
        let shrunk = self.block_size.building(round);
        let (txs_max, bytes_max) = self.block_size.limits();
        if shrunk {
            tracing::info!(
                height,
                round,
                txs_max,
                bytes_max,
                "a round failed: proposing a smaller block"
            );
        }
        let txs = self.mempool.reap(txs_max, bytes_max);
        let expect = Expect {
            validators: &self.validators,
            previous_validators: &self.previous_validators,
            proposer: Some(self.me),
        };
        match self
            .executor
            .build(height, now.wall_ms, self.me, txs, expect)?
        {
            Ok((executed, dropped)) => {
                // A block could not take them (their sender may no longer transact, or
                // an earlier one of theirs went): they leave the mempool.
                for (hash, why) in dropped {
                    tracing::debug!(%hash, "left out of the block: {why}");
                    self.mempool.remove(&hash);
                }
                let value = executed.hash();
                self.keeper
                    .keep_own_block(executed.hash(), executed.checked().clone());
                self.executed.insert(value, executed);
                let outputs = self.consensus.handle(Input::ValueProduced {
                    height,
                    round,
                    value,
                });
                self.perform(outputs, now, effects)
            }
            Err(bug) => {
                // Validators would refuse it; proposing nothing lets the round time out.
                tracing::error!(height, round, "not proposing: {bug}");
                Ok(())
            }
        }
    }

    /// Asks a peer for blocks if one that is not demoted claims to be ahead: at once
    /// when a decided block is missing or the peer is more than a block ahead, after
    /// [`BEHIND_AFTER_MS`] at this height when it is one ahead.
    fn request_sync(&mut self, now: Now, effects: &mut Effects<P>) {
        let from = self.consensus.height();
        let urgent = self.awaiting.is_some()
            || now.mono_ms.saturating_sub(self.height_started_ms) > BEHIND_AFTER_MS;
        let beyond = if urgent { 1 } else { 2 };
        if let Some(peer) = self.sync.next_request(from, beyond, now.mono_ms) {
            if urgent {
                tracing::info!(height = from, ?peer, "behind: asking a peer for blocks");
            }
            effects.push(Effect::RequestBlocks { peer, from });
        } else if urgent && now.mono_ms >= self.stuck_warned_ms + STUCK_WARN_EVERY_MS {
            // Nothing to ask (or an answer awaited): say who claims what, so an
            // operator can tell a partition from peers that are demoted or lagging too.
            self.stuck_warned_ms = now.mono_ms;
            tracing::warn!(
                height = from,
                round = self.consensus.round(),
                stuck_ms = now.mono_ms.saturating_sub(self.height_started_ms),
                peers = %self.sync.describe(now.mono_ms),
                "no progress at this height, and no peer to fetch it from"
            );
        }
    }

    /// Blocks a peer served in answer to a sync request.
    pub fn on_blocks(
        &mut self,
        peer: P,
        blocks: Vec<(Block, CommitCertificate)>,
        now: Now,
    ) -> HostResult<Effects<P>> {
        let mut effects = Vec::new();
        let offered = blocks.len();
        let mut served = 0;
        for (block, certificate) in blocks {
            if block.height() != self.consensus.height() {
                continue; // already have it, or a gap: the next request fills it
            }
            let expect = Expect {
                validators: &self.validators,
                previous_validators: &self.previous_validators,
                proposer: None,
            };
            let hash = block.hash(self.executor.store().suite());
            let checked = if certificate.height != block.height() || certificate.block_hash != hash
            {
                Err(format!(
                    "certificate names block {} at {}",
                    certificate.block_hash, certificate.height
                ))
            } else {
                let mempool = &self.mempool;
                match self
                    .executor
                    .validate(block, expect, &|tx, id| mempool.verified_exact(tx, id))?
                {
                    Ok(executed) => executed
                        .certify(certificate, &self.chain_id, &self.validators)
                        .map_err(|(_, e)| format!("certificate: {e}")),
                    Err(invalid) => Err(invalid.to_string()),
                }
            };
            match checked {
                Ok(committed) => {
                    served += 1;
                    tracing::info!(height = committed.block().height(), %peer, "synced block");
                    self.commit(committed, true, now, &mut effects)?;
                    let next = self.consensus.height() + 1;
                    let outputs = self.begin_height(next, now)?;
                    self.perform(outputs, now, &mut effects)?;
                }
                Err(reason) => {
                    tracing::warn!(%peer, "peer served a bad block ({reason}); dropping it");
                    self.sync.on_bad_block(peer, now.mono_ms);
                    effects.push(Effect::Disconnect {
                        peer,
                        reason: format!("served a bad block: {reason}"),
                    });
                    return Ok(effects);
                }
            }
        }
        self.sync.on_response(peer, offered, served, now.mono_ms);
        if served > 0 {
            self.request_sync(now, &mut effects); // more may be waiting
        }
        Ok(effects)
    }

    /// A sync request failed (timeout, refusal, connection lost).
    pub fn on_sync_failed(&mut self, peer: P, now: Now) {
        self.sync.on_failure(peer, now.mono_ms);
    }

    pub fn on_connected(&mut self, peer: P) {
        // A new peer has none of this height's blocks: proposals go with them again.
        self.blocks_sent.clear();
        self.sync.connected(peer);
    }

    pub fn on_disconnected(&mut self, peer: P) {
        self.sync.disconnected(peer);
    }

    /// The cheap half of admission (duplicates, nonces, room) for transactions checked
    /// off this thread; a client's admitted ones are pushed to peers.
    pub fn admit(
        &mut self,
        checked: Vec<Checked>,
        origin: Origin,
        now: Now,
    ) -> HostResult<Admitted<P>> {
        let store = self.store().clone();
        // A client's transactions, to push on to peers once admitted.
        let pushed: Vec<Option<Transaction>> = match origin {
            Origin::Client => checked
                .iter()
                .map(|c| c.as_ref().ok().map(|(tx, _)| tx.tx().clone()))
                .collect(),
            Origin::Peer => Vec::new(),
        };
        let whole_block_before = self.whole_block_pending();
        let nonces = Nonces::new(&store);
        let answers = match origin {
            Origin::Client => self
                .mempool
                .admit_checked(checked, |k| nonces.get(k), now.mono_ms),
            Origin::Peer => self
                .mempool
                .admit_pushed(checked, |k| nonces.get(k), now.mono_ms),
        };
        nonces.finish()?;
        let mut effects = Vec::new();
        if origin == Origin::Client {
            let admitted: Vec<Transaction> = pushed
                .into_iter()
                .zip(&answers)
                .filter_map(|(t, a)| t.filter(|_| a.is_ok()))
                .collect();
            if !admitted.is_empty() {
                effects.push(Effect::PushTxs(admitted));
            }
        }
        if !self.assembling.is_empty() {
            let outputs = self.assemble_arrived(now);
            self.perform(outputs, now, &mut effects)?;
        }
        // A proposer waiting out its batch delay builds as soon as a whole block is here.
        if let (Some((height, round, _)), false, true) = (
            self.building,
            whole_block_before,
            self.whole_block_pending(),
        ) {
            effects.push(Effect::SetTimer {
                timer: Timer::Build { height, round },
                after_ms: 0,
            });
        }
        Ok((answers, effects))
    }

    /// Peers' pushes the node had no room or time to check, with their ids: kept
    /// unchecked for compact blocks (see [`Mempool::keep_unchecked`]); a compact block
    /// waiting for them is put together now.
    pub fn keep_unchecked(
        &mut self,
        txs: Vec<(Hash, Transaction, usize)>,
        now: Now,
    ) -> HostResult<Effects<P>> {
        self.mempool.keep_unchecked(txs);
        let mut effects = Vec::new();
        if !self.assembling.is_empty() {
            let outputs = self.assemble_arrived(now);
            self.perform(outputs, now, &mut effects)?;
        }
        Ok(effects)
    }

    /// The next nonce a sender should sign with: after its pending run, else the
    /// committed one.
    pub fn next_nonce(&self, key: &PublicKey) -> HostResult<u64> {
        match self.mempool.next_nonce_of(key) {
            Some(next) => Ok(next),
            None => next_nonce(self.store(), key),
        }
    }

    pub fn is_pending(&self, hash: &Hash) -> bool {
        self.mempool.contains(hash)
    }

    /// Whether `peer` is demoted by block sync now.
    pub fn is_demoted(&self, peer: &P, now: Now) -> bool {
        self.sync.is_demoted(peer, now.mono_ms)
    }
}

/// A sender's next nonce in committed state.
pub fn next_nonce(store: &Store, key: &PublicKey) -> HostResult<u64> {
    let bytes = store.state_value(layout::nonce_key(&key.to_hex()).as_bytes())?;
    Ok(bytes
        .and_then(|b| codec::decode::<u64>(&b).ok())
        .unwrap_or(0))
}
