//! The host driven by hand, one input at a time, for rules a whole-network simulation
//! shows only indirectly: the clock bound on proposals from below, proposing only when a
//! block can hold something, and a disk failure stopping the host with nothing recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cbec_consensus::Message;
use cbec_ledger::{codec, CommitCertificate, Transaction, VoteKind};
use cbec_node::admission;
use cbec_node::host::{Effect, Host, Now, Origin, Timer};
use cbec_node::kv::{Batch, Cf, Kv, KvError, KvMemory, KvVerified, MemKv};
use cbec_node::sim::{self, NodeId};
use cbec_node::store::Store;
use cbec_node::wire::{self, NetMessage};

const MINUTE_MS: u64 = 60_000;

const SUITE: cbec_ledger::Suite = cbec_ledger::Suite::Ed25519Sha256;

fn now(wall_ms: u64, mono_ms: u64) -> Now {
    Now { wall_ms, mono_ms }
}

/// The node that proposes height 1, round 0 in the simulated consortium, and another.
fn proposer_and_other(genesis: &cbec_genesis::Genesis) -> (usize, usize) {
    let set = genesis.validator_set().expect("set");
    let schedule = cbec_consensus::proposer::ProposerSchedule::new(&set);
    let key = schedule.proposer(1, 0);
    let (validators, _) = sim::keys();
    let p = validators
        .iter()
        .position(|k| k.public() == key)
        .expect("a validator");
    (p, (p + 1) % 4)
}

/// What the host said in its effects: the gossiped messages.
fn gossiped(effects: &[Effect<NodeId>]) -> Vec<NetMessage> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn timers(effects: &[Effect<NodeId>]) -> Vec<(Timer, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetTimer { timer, after_ms } => Some((*timer, *after_ms)),
            _ => None,
        })
        .collect()
}

/// The build timers the host set, with their delays.
fn build_timers(effects: &[Effect<NodeId>]) -> Vec<(Timer, u64)> {
    timers(effects)
        .into_iter()
        .filter(|(t, _)| matches!(t, Timer::Build { .. }))
        .collect()
}

/// The proposer's block for height 1, built with its clock at `clock_ms`.
fn proposal_at(genesis: &cbec_genesis::Genesis, proposer: usize, clock_ms: u64) -> NetMessage {
    proposal_with(genesis, proposer, clock_ms, Vec::new())
}

/// A commerce transaction (listing an enterprise) at `nonce`.
fn commerce_tx(genesis: &cbec_genesis::Genesis, nonce: u64) -> Transaction {
    let (_, operators) = sim::keys();
    let commerce = operators[3].clone();
    let args = cbec_chaincode::args_from_json(
        "enterprise",
        "list_negative",
        serde_json::json!({"uscc": "91140200MA0GRK2220", "reason": "test"}),
    )
    .expect("args");
    sim::sign(
        &commerce,
        genesis.chain_id(),
        nonce,
        "enterprise",
        "list_negative",
        args,
    )
}

/// [`proposal_at`] with `txs` in the proposer's mempool.
fn proposal_with(
    genesis: &cbec_genesis::Genesis,
    proposer: usize,
    clock_ms: u64,
    txs: Vec<Transaction>,
) -> NetMessage {
    let (compact, host) = compact_proposal_with(genesis, proposer, clock_ms, txs);
    let NetMessage::CompactProposal { proposal, .. } = compact else {
        unreachable!()
    };
    // As the proposer serves it to a peer that asks for the whole block.
    let block = host
        .proposal_block(1, &proposal.proposal.value)
        .expect("the proposer holds its block");
    NetMessage::Proposal { proposal, block }
}

/// The compact proposal the proposer gossips, with the proposer's host.
fn compact_proposal_with(
    genesis: &cbec_genesis::Genesis,
    proposer: usize,
    clock_ms: u64,
    txs: Vec<Transaction>,
) -> (NetMessage, Host<NodeId>) {
    let (mut host, store) = sim::host(genesis, proposer);
    let effects = host.start(now(clock_ms, 0)).expect("start");
    let checked = admission::check(
        txs,
        &genesis.chain_id(),
        SUITE,
        65_536,
        usize::MAX,
        store.as_ref(),
    );
    let (answers, _) = host
        .admit(checked, Origin::Client, now(clock_ms, 0))
        .expect("admit");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let (timer, _) = build_timers(&effects)
        .into_iter()
        .next()
        .expect("the proposer builds");
    // No work: the heartbeat, after half the propose timeout.
    let heartbeat = genesis.consensus.timeout_propose_ms / 2;
    let effects = host
        .on_timer(timer, now(clock_ms + heartbeat, heartbeat))
        .expect("build");
    let compact = gossiped(&effects)
        .into_iter()
        .find(|m| matches!(m, NetMessage::CompactProposal { .. }))
        .expect("a proposal with its compact block");
    (compact, host)
}

/// The prevote `validator` sends on receiving `proposal` with its clock at `clock_ms`.
fn prevote_on(
    genesis: &cbec_genesis::Genesis,
    validator: usize,
    proposer: usize,
    proposal: &NetMessage,
    clock_ms: u64,
) -> Option<cbec_ledger::Hash> {
    let (mut host, _) = sim::host(genesis, validator);
    host.start(now(clock_ms, 0)).expect("start");
    let inbound =
        wire::inbound(&codec::encode(proposal), &genesis.chain_id(), SUITE).expect("edge");
    let effects = host
        .on_inbound(NodeId(proposer as u8), inbound, now(clock_ms, 10))
        .expect("proposal");
    gossiped(&effects)
        .into_iter()
        .find_map(|m| match m {
            NetMessage::Consensus(Message::Vote(v)) if v.vote.kind == VoteKind::Prevote => {
                Some(v.vote.value)
            }
            _ => None,
        })
        .expect("a prevote")
}

/// Item 10: a proposer cannot backdate blocks. A block whose time is a minute behind a
/// validator's clock gets a nil prevote; the same proposer with the right clock gets its
/// block prevoted; and a block a minute ahead gets nil too.
#[test]
fn a_proposal_whose_time_is_far_from_the_clock_gets_a_nil_prevote() {
    let real_ms = 1_900_000_000_000;
    let genesis = sim::genesis_at(1, real_ms - 10 * MINUTE_MS);
    let (p, other) = proposer_and_other(&genesis);
    let timely = proposal_at(&genesis, p, real_ms);
    let NetMessage::Proposal { proposal, .. } = &timely else {
        unreachable!()
    };
    assert_eq!(
        prevote_on(&genesis, other, p, &timely, real_ms),
        Some(proposal.proposal.value),
        "a timely block is prevoted"
    );
    let backdated = proposal_at(&genesis, p, real_ms - MINUTE_MS);
    assert_eq!(prevote_on(&genesis, other, p, &backdated, real_ms), None);
    let early = proposal_at(&genesis, p, real_ms + MINUTE_MS);
    assert_eq!(prevote_on(&genesis, other, p, &early, real_ms), None);
}

/// Item 9: a transaction that no block can take yet (its nonce is ahead) is not work:
/// the proposer waits for the heartbeat instead of proposing at once (which made empty
/// blocks back to back). A transaction it can take is proposed at once: after the
/// genesis batch delay (10 ms by default), while with nothing to propose it looks again
/// every `IDLE_POLL_MS` or batch delay, whichever is longer.
#[test]
fn the_proposer_builds_at_once_only_for_transactions_a_block_can_take() {
    let mut genesis = sim::genesis_at(2, 1_900_000_000_000);
    genesis.consensus.batch_delay_ms = cbec_genesis::ConsensusParams::default().batch_delay_ms;
    assert_eq!(genesis.consensus.batch_delay_ms, 10);
    let (p, _) = proposer_and_other(&genesis);
    let chain = genesis.chain_id();
    let tx = |nonce| commerce_tx(&genesis, nonce);
    for (nonce, proposes_at_once) in [(5, false), (0, true)] {
        let (mut host, store) = sim::host(&genesis, p);
        let t0 = 1_900_000_000_000;
        let effects = host.start(now(t0, 0)).expect("start");
        let (timer, delay) = build_timers(&effects)
            .into_iter()
            .next()
            .expect("build timer");
        assert_eq!(delay, 10, "the first look is after the batch delay");
        let checked = admission::check(
            vec![tx(nonce)],
            &chain,
            SUITE,
            65_536,
            usize::MAX,
            store.as_ref(),
        );
        let (answers, _) = host
            .admit(checked, Origin::Client, now(t0, 0))
            .expect("admit");
        assert!(answers[0].is_ok(), "{answers:?}");
        let effects = host
            .on_timer(timer, now(t0 + delay, delay))
            .expect("build tick");
        let proposed = gossiped(&effects)
            .iter()
            .any(|m| matches!(m, NetMessage::CompactProposal { .. }));
        assert_eq!(proposed, proposes_at_once, "nonce {nonce}");
        if !proposes_at_once {
            let (again, after) = build_timers(&effects)
                .into_iter()
                .next()
                .expect("it looks again later");
            assert_eq!(after, cbec_node::host::IDLE_POLL_MS.max(10));
            assert_eq!(again, timer);
        }
    }
}

/// The batch delay is for a light load: a proposer whose mempool already holds a whole
/// block builds without it, whether the block was there when the height asked for one
/// or arrived while the proposer waited; one transaction short of a block, it waits.
#[test]
fn a_proposer_holding_a_whole_block_builds_without_the_batch_delay() {
    let mut genesis = sim::genesis_at(2, 1_900_000_000_000);
    genesis.consensus.batch_delay_ms = 10;
    genesis.consensus.block_txs_max = 3;
    let (p, _) = proposer_and_other(&genesis);
    let chain = genesis.chain_id();
    let t0 = 1_900_000_000_000;
    let admit = |host: &mut Host<NodeId>, store: &Arc<Store>, nonces: std::ops::Range<u64>| {
        let txs = nonces.map(|n| commerce_tx(&genesis, n)).collect();
        let checked = admission::check(txs, &chain, SUITE, 65_536, usize::MAX, store.as_ref());
        let (answers, effects) = host
            .admit(checked, Origin::Client, now(t0, 0))
            .expect("admit");
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        effects
    };
    let build_after = |effects: &[Effect<NodeId>]| {
        build_timers(effects)
            .into_iter()
            .map(|(_, after)| after)
            .collect::<Vec<_>>()
    };

    // A whole block held when the height asks: no delay.
    let (mut host, store) = sim::host(&genesis, p);
    admit(&mut host, &store, 0..3);
    let effects = host.start(now(t0, 0)).expect("start");
    assert_eq!(build_after(&effects), vec![0]);

    // Two of three held: the batch delay; the third arriving builds at once, and
    // only the arrival that completes the block says so.
    let (mut host, store) = sim::host(&genesis, p);
    admit(&mut host, &store, 0..2);
    let effects = host.start(now(t0, 0)).expect("start");
    assert_eq!(build_after(&effects), vec![10]);
    let (timer, _) = build_timers(&effects)
        .into_iter()
        .next()
        .expect("build timer");
    let effects = admit(&mut host, &store, 2..3);
    assert_eq!(build_after(&effects), vec![0], "the block completed");
    assert_eq!(timers(&effects)[0].0, timer, "this height's build");
    let effects = admit(&mut host, &store, 3..4);
    assert_eq!(build_after(&effects), Vec::<u64>::new(), "already said");
    let effects = host.on_timer(timer, now(t0, 0)).expect("build");
    assert!(
        gossiped(&effects)
            .iter()
            .any(|m| matches!(m, NetMessage::CompactProposal { .. })),
        "the proposal goes out without the delay"
    );
}

/// Committed state over memory whose reads fail once `failing` is set.
#[derive(Debug, Default)]
struct FailingKv {
    inner: MemKv,
    failing: Arc<AtomicBool>,
}

impl Kv for FailingKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        if self.failing.load(Ordering::Relaxed) && cf == Cf::State {
            return Err(KvError("I/O error (injected)".into()));
        }
        self.inner.get(cf, key)
    }
    fn write(&self, batch: Batch, durable: bool) -> Result<(), KvError> {
        self.inner.write(batch, durable)
    }
    fn floor(&self, cf: Cf, key: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>, KvError> {
        self.inner.floor(cf, key)
    }
    fn scan(&self, cf: Cf, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KvError> {
        self.inner.scan(cf, from, limit)
    }
    fn range(&self, cf: Cf, from: &[u8], until: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KvError> {
        self.inner.range(cf, from, until)
    }
    fn each(&self, cf: Cf, f: cbec_node::kv::Visit<'_>) -> Result<(), KvError> {
        self.inner.each(cf, f)
    }
    fn memory(&self) -> KvMemory {
        KvMemory::default()
    }
    fn verify(&self) -> Result<KvVerified, KvError> {
        self.inner.verify()
    }
}

/// Item 5: a state read that fails while validating a proposal is no verdict on it: the
/// host stops with the storage error, votes nothing and commits nothing.
#[test]
fn a_failed_disk_read_stops_the_host_without_a_vote_or_a_record() {
    let real_ms = 1_900_000_000_000;
    let genesis = sim::genesis_at(3, real_ms - MINUTE_MS);
    let (p, other) = proposer_and_other(&genesis);
    // A block with a transaction: validating it reads state.
    let proposal = proposal_with(&genesis, p, real_ms, vec![commerce_tx(&genesis, 0)]);
    let failing = Arc::new(AtomicBool::new(false));
    let kv = FailingKv {
        inner: MemKv::default(),
        failing: failing.clone(),
    };
    let chain = genesis.chain_id();
    let store = Arc::new(Store::with_kv(Box::new(kv), &chain).expect("store"));
    let agencies: Vec<_> = genesis
        .agencies
        .iter()
        .map(|a| (a.name.clone(), a.operator_keys.clone()))
        .collect();
    store
        .init_genesis(&cbec_chaincode::Engine::genesis_writes(&agencies))
        .expect("genesis");
    let mut host: Host<NodeId> = sim::host_over(&genesis, other, store.clone());
    host.start(now(real_ms, 0)).expect("start");
    failing.store(true, Ordering::Relaxed);
    let inbound = wire::inbound(&codec::encode(&proposal), &chain, SUITE).expect("edge");
    let err = host
        .on_inbound(NodeId(p as u8), inbound, now(real_ms, 10))
        .expect_err("the disk failed");
    assert!(err.to_string().contains("injected"), "{err}");
    failing.store(false, Ordering::Relaxed);
    assert_eq!(store.height().expect("height"), 0, "nothing committed");
    let signing = store.signing_state().expect("read");
    assert!(
        signing.is_none_or(|s| s.signed.is_empty()),
        "nothing signed on a guess"
    );
}

/// Item 2: a proposal whose block has not arrived is pending, not invalid. The
/// proposal comes first without its block (a rebroadcast, say); nothing is voted; the
/// block comes after, and the validator prevotes it.
#[test]
fn a_proposal_before_its_block_waits_for_it_and_is_then_prevoted() {
    let real_ms = 1_900_000_000_000;
    let genesis = sim::genesis_at(4, real_ms - MINUTE_MS);
    let (p, other) = proposer_and_other(&genesis);
    let full = proposal_at(&genesis, p, real_ms);
    let NetMessage::Proposal { proposal, .. } = &full else {
        unreachable!()
    };
    let value = proposal.proposal.value;
    let bare = NetMessage::Consensus(Message::Proposal(proposal.clone()));
    let chain = genesis.chain_id();
    let (mut host, _) = sim::host(&genesis, other);
    host.start(now(real_ms, 0)).expect("start");
    let inbound = wire::inbound(&codec::encode(&bare), &chain, SUITE).expect("edge");
    let effects = host
        .on_inbound(NodeId(p as u8), inbound, now(real_ms, 5))
        .expect("bare proposal");
    assert!(
        gossiped(&effects)
            .iter()
            .all(|m| !matches!(m, NetMessage::Consensus(Message::Vote(_)))),
        "no vote without the block (a nil prevote would make it 'invalid')"
    );
    let inbound = wire::inbound(&codec::encode(&full), &chain, SUITE).expect("edge");
    let effects = host
        .on_inbound(NodeId(p as u8), inbound, now(real_ms, 10))
        .expect("proposal with its block");
    let prevote = gossiped(&effects).into_iter().find_map(|m| match m {
        NetMessage::Consensus(Message::Vote(v)) if v.vote.kind == VoteKind::Prevote => {
            Some(v.vote.value)
        }
        _ => None,
    });
    assert_eq!(prevote, Some(Some(value)));
}

/// The prevote among `effects`, if one was sent.
fn prevote_in(effects: &[Effect<NodeId>]) -> Option<Option<cbec_ledger::Hash>> {
    gossiped(effects).into_iter().find_map(|m| match m {
        NetMessage::Consensus(Message::Vote(v)) if v.vote.kind == VoteKind::Prevote => {
            Some(v.vote.value)
        }
        _ => None,
    })
}

/// A compact proposal of block 1 holding one commerce transaction, with what the
/// compact tests need: a started host of another validator has nothing in its mempool.
struct CompactCase {
    genesis: cbec_genesis::Genesis,
    chain: cbec_ledger::Hash,
    /// The proposer's index, and its host (it serves its block).
    p: usize,
    proposer: Host<NodeId>,
    tx: Transaction,
    compact: NetMessage,
    proposal: cbec_consensus::SignedProposal,
    value: cbec_ledger::Hash,
    host: Host<NodeId>,
    store: Arc<Store>,
}

const REAL_MS: u64 = 1_900_000_000_000;

fn compact_case(seed: u64) -> CompactCase {
    let genesis = sim::genesis_at(seed, REAL_MS - MINUTE_MS);
    let (p, other) = proposer_and_other(&genesis);
    let tx = commerce_tx(&genesis, 0);
    let (compact, proposer) = compact_proposal_with(&genesis, p, REAL_MS, vec![tx.clone()]);
    let NetMessage::CompactProposal { proposal, .. } = &compact else {
        unreachable!()
    };
    let proposal = proposal.clone();
    let (mut host, store) = sim::host(&genesis, other);
    host.start(now(REAL_MS, 0)).expect("start");
    CompactCase {
        chain: genesis.chain_id(),
        genesis,
        p,
        proposer,
        tx,
        value: proposal.proposal.value,
        proposal,
        compact,
        host,
        store,
    }
}

impl CompactCase {
    /// The transaction pushed to the validator by a peer, at `mono_ms`.
    fn push(&mut self, mono_ms: u64) -> Vec<Effect<NodeId>> {
        let checked = admission::check(
            vec![self.tx.clone()],
            &self.chain,
            SUITE,
            65_536,
            usize::MAX,
            self.store.as_ref(),
        );
        let (answers, effects) = self
            .host
            .admit(checked, Origin::Peer, now(REAL_MS + mono_ms, mono_ms))
            .expect("push");
        assert!(answers[0].is_ok(), "{answers:?}");
        effects
    }

    /// `message` from the proposer arrives at the validator at `mono_ms`.
    fn deliver(&mut self, message: &NetMessage, mono_ms: u64) -> Vec<Effect<NodeId>> {
        let inbound = wire::inbound(&codec::encode(message), &self.chain, SUITE).expect("edge");
        self.host
            .on_inbound(
                NodeId(self.p as u8),
                inbound,
                now(REAL_MS + mono_ms, mono_ms),
            )
            .expect("inbound")
    }
}

/// A compact proposal (the block without its transactions) is put back together from
/// the validator's mempool, which a push filled, and prevoted at once: nothing fetched.
#[test]
fn a_compact_proposal_is_put_together_from_the_mempool_and_prevoted() {
    let mut case = compact_case(6);
    case.push(1);
    let compact = case.compact.clone();
    let effects = case.deliver(&compact, 5);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::FetchBlock { .. })),
        "nothing fetched"
    );
    assert_eq!(prevote_in(&effects), Some(Some(case.value)));
    assert_eq!(case.host.status().compact_filled, 1);
    assert_eq!(case.host.status().compact_fetched, 0);
}

/// A compact proposal naming a transaction this validator never received is pending,
/// not invalid: no vote; it waits `ASSEMBLE_WAIT_MS` for the push, then the whole block
/// is asked of the peer that delivered the proposal (again when the proposal is re-sent
/// while the block is missing). The block served comes through the edge as a proposal
/// with its block and is prevoted; a block served that is not the one the proposal
/// names is refused there.
#[test]
fn a_compact_proposal_missing_transactions_fetches_its_block_then_prevotes() {
    let mut case = compact_case(7);
    let (compact, proposal, value) = (case.compact.clone(), case.proposal.clone(), case.value);
    let effects = case.deliver(&compact, 5);
    assert_eq!(prevote_in(&effects), None, "no vote without the block");
    let fetches = |effects: &[Effect<NodeId>]| -> Vec<(NodeId, cbec_consensus::SignedProposal)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::FetchBlock { peer, proposal } => Some((*peer, (**proposal).clone())),
                _ => None,
            })
            .collect()
    };
    assert!(fetches(&effects).is_empty(), "the push may be on its way");
    let (timer, after) = timers(&effects)
        .into_iter()
        .find(|(t, _)| matches!(t, Timer::Assemble { .. }))
        .expect("a wait for the transactions");
    assert_eq!(after, cbec_node::host::ASSEMBLE_WAIT_MS);
    let effects = case
        .host
        .on_timer(timer, now(REAL_MS + 5 + after, 5 + after))
        .expect("the wait is over");
    assert_eq!(prevote_in(&effects), None);
    let asked = fetches(&effects);
    assert_eq!(asked.len(), 1, "{effects:?}");
    assert_eq!(
        asked[0].0,
        NodeId(case.p as u8),
        "asked of the peer that delivered it"
    );
    assert_eq!(asked[0].1, proposal);
    assert_eq!(case.host.status().compact_fetched, 1);
    // The proposal re-sent without its block: asked again.
    let bare = NetMessage::Consensus(Message::Proposal(proposal.clone()));
    let effects = case.deliver(&bare, 200);
    assert_eq!(fetches(&effects).len(), 1, "asked again: {effects:?}");
    // A wrong block served for it is the server's fault, caught at the edge.
    let NetMessage::Proposal { block: empty, .. } = proposal_at(&case.genesis, case.p, REAL_MS + 1)
    else {
        unreachable!()
    };
    let wrong = NetMessage::Proposal {
        proposal: proposal.clone(),
        block: empty,
    };
    assert!(matches!(
        wire::inbound(&codec::encode(&wrong), &case.chain, SUITE),
        Err(wire::EdgeFault::WrongBlock { .. })
    ));
    // The proposer serves the block it holds; the validator prevotes it.
    let served = NetMessage::Proposal {
        proposal,
        block: case.proposer.proposal_block(1, &value).expect("held"),
    };
    let effects = case.deliver(&served, 210);
    assert_eq!(prevote_in(&effects), Some(Some(value)));
    assert_eq!(
        case.host.proposal_block(1, &value).map(|b| b.txs.len()),
        Some(1)
    );
}

/// A compact proposal that arrives before the push of its transaction (the proposer
/// took it into its block as soon as its client's was admitted) is put together when
/// the push arrives, and prevoted then: nothing fetched, and the timer that would have
/// fetched it does nothing.
#[test]
fn a_compact_proposal_before_the_push_is_put_together_when_the_push_arrives() {
    let mut case = compact_case(8);
    let compact = case.compact.clone();
    let effects = case.deliver(&compact, 5);
    assert_eq!(prevote_in(&effects), None);
    let (timer, _) = timers(&effects)
        .into_iter()
        .find(|(t, _)| matches!(t, Timer::Assemble { .. }))
        .expect("a wait for the transaction");
    let effects = case.push(20);
    assert_eq!(
        prevote_in(&effects),
        Some(Some(case.value)),
        "prevoted on the push"
    );
    let status = case.host.status();
    assert_eq!(
        (
            status.compact_filled,
            status.compact_waited,
            status.compact_fetched
        ),
        (0, 1, 0)
    );
    let effects = case
        .host
        .on_timer(timer, now(REAL_MS + 105, 105))
        .expect("timer");
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::FetchBlock { .. })),
        "{effects:?}"
    );
}

/// A proposer that committed its block and moved on still serves it to a peer that
/// asks (a peer a height behind, whose compact proposal lacked transactions): from the
/// store, by height and hash. A hash that is not the committed block's gets nothing.
#[test]
fn a_committed_proposal_block_is_still_served_to_a_peer_that_asks() {
    let real_ms = 1_900_000_000_000;
    let genesis = sim::genesis_at(9, real_ms - MINUTE_MS);
    let (p, _) = proposer_and_other(&genesis);
    let (compact, mut host) = compact_proposal_with(&genesis, p, real_ms, Vec::new());
    let NetMessage::CompactProposal { proposal, .. } = &compact else {
        unreachable!()
    };
    let value = proposal.proposal.value;
    let chain = genesis.chain_id();
    let (validators, _) = sim::keys();
    let mut t = 100;
    for kind in [VoteKind::Prevote, VoteKind::Precommit] {
        for (i, key) in validators.iter().enumerate().filter(|(i, _)| *i != p) {
            let vote = cbec_consensus::Vote {
                height: 1,
                round: 0,
                kind,
                value: Some(value),
            };
            let signature = key.sign(&vote.sign_bytes(&chain));
            let message = NetMessage::Consensus(Message::Vote(cbec_consensus::SignedVote {
                vote,
                validator: key.public(),
                signature,
            }));
            let inbound = wire::inbound(&codec::encode(&message), &chain, SUITE).expect("edge");
            t += 1;
            host.on_inbound(NodeId(i as u8), inbound, now(real_ms + t, t))
                .expect("vote");
        }
    }
    assert_eq!(host.height(), 2, "block 1 committed, height 2 begun");
    let served = host
        .proposal_block(1, &value)
        .expect("served from the store");
    assert_eq!(served.hash(SUITE), value);
    assert!(host
        .proposal_block(1, &cbec_ledger::Hash([3; 32]))
        .is_none());
    assert!(
        host.proposal_block(2, &value).is_none(),
        "not at another height"
    );
}

/// A block from sync is checked whole, its body included: the network edge checks the
/// bodies of gossiped proposals only, and validation no longer checks them a second
/// time, so the sync path must. A served block with one transaction changed under its
/// header is refused as such and its peer disconnected; the same block unchanged gets
/// as far as its (unsigned) certificate.
#[test]
fn a_synced_block_whose_body_differs_from_its_header_is_refused() {
    let real_ms = 1_900_000_000_000;
    let genesis = sim::genesis_at(5, real_ms - MINUTE_MS);
    let (p, other) = proposer_and_other(&genesis);
    let full = proposal_with(&genesis, p, real_ms, vec![commerce_tx(&genesis, 0)]);
    let NetMessage::Proposal { block, .. } = full else {
        unreachable!()
    };
    assert_eq!(block.txs.len(), 1, "the proposer took the transaction");
    let certificate = CommitCertificate {
        height: 1,
        round: 0,
        block_hash: block.hash(SUITE),
        signatures: Vec::new(),
    };
    let served = |block: cbec_ledger::Block| {
        let (mut host, store) = sim::host(&genesis, other);
        host.start(now(real_ms, 0)).expect("start");
        let effects = host
            .on_blocks(
                NodeId(p as u8),
                vec![(block, certificate.clone())],
                now(real_ms, 5),
            )
            .expect("a bad block is not a host failure");
        assert_eq!(store.height().expect("height"), 0, "nothing committed");
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Disconnect { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .expect("the peer that served it is disconnected")
    };
    let mut tampered = (*block).clone();
    tampered.txs[0].body.nonce += 1;
    assert_eq!(
        tampered.hash(SUITE),
        block.hash(SUITE),
        "the header is the same"
    );
    let reason = served(tampered);
    assert!(
        reason.contains("result 0 is for transaction"),
        "refused for its body: {reason}"
    );
    let reason = served(std::sync::Arc::unwrap_or_clone(block));
    assert!(reason.contains("certificate"), "{reason}");
}

/// A proposer's proposal and its own prevote leave after one synced write of its
/// signing state, not two: nothing leaves before the host returns, and the later state
/// covers the earlier (it is further on, and holds the proposal too).
#[test]
fn a_proposer_writes_its_signing_state_once_for_its_proposal_and_prevote() {
    let real_ms = 1_900_000_000_000;
    let genesis = sim::genesis_at(1, real_ms - 10 * MINUTE_MS);
    let (p, _) = proposer_and_other(&genesis);
    let (mut host, store) = sim::host(&genesis, p);
    let effects = host.start(now(real_ms, 0)).expect("start");
    let (timer, _) = build_timers(&effects)
        .into_iter()
        .next()
        .expect("the proposer builds");
    let before = store.signing_writes();
    let heartbeat = genesis.consensus.timeout_propose_ms / 2;
    let effects = host
        .on_timer(timer, now(real_ms + heartbeat, heartbeat))
        .expect("build");
    let sent = gossiped(&effects);
    let Some(value) = sent.iter().find_map(|m| match m {
        NetMessage::CompactProposal { proposal, .. } => Some(proposal.proposal.value),
        _ => None,
    }) else {
        panic!("no proposal in {sent:?}")
    };
    assert!(
        sent.iter()
            .any(|m| matches!(m, NetMessage::Consensus(Message::Vote(v))
            if v.vote.kind == VoteKind::Prevote && v.vote.value == Some(value))),
        "the proposer prevotes its block in the same step: {sent:?}"
    );
    assert_eq!(store.signing_writes() - before, 1, "one synced write");
    let state = store.signing_state().expect("read").expect("a state");
    assert_eq!(state.step, cbec_consensus::SignStep::Prevote);
    assert!(
        state
            .signed
            .iter()
            .any(|m| matches!(m, Message::Proposal(s) if s.proposal.value == value)),
        "the state written holds the proposal too"
    );
}
