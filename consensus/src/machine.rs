//! Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic 2018)
//! as a state machine: `handle(Input) -> Vec<Output>`, no IO, no clock, no randomness.
//!
//! Comments `Lnn` cite the line of Algorithm 1 a rule implements. Departures, each for
//! a reason the paper leaves to its gossip layer:
//! - Every validator, proposer included, schedules `OnTimeoutPropose`, so a host that
//!   never produces a value cannot stall the round.
//! - A `Rebroadcast` timer resends this height's own signed messages: the paper assumes
//!   gossip eventually delivers every message; a real network (and the simulator) may
//!   drop them before it stabilises.
//! - A proposal with a valid round travels with the prevotes that justify it (the
//!   "proof of lock change"), so L28 can fire at validators that missed them.
//! - Leaving a round by timeout, or joining a later one by L55, relays that round's
//!   messages: the paper's gossip guarantees that what one correct validator received
//!   all receive, even from a Byzantine sender that stops talking.
//! - `Input::Commit` takes a commit certificate from block sync: a validator that missed
//!   the precommits of a height decides from the certificate (which carries them).
//! - Messages for rounds beyond `ROUND_WINDOW` ahead are dropped (a bound on memory); the
//!   sender rebroadcasts once this validator's round comes closer.
//! - Timeliness, as in proposer-based timestamps (CometBFT's PBTS): the host may judge a
//!   proposal's time (`Input::TimedProposal`); L22 prevotes a fresh proposal (`vr = -1`)
//!   only if it is timely. Validity stays a property of the value alone: an untimely
//!   value may still be decided (L49) and re-proposed with its polka (L28, not checked
//!   for time: 2f+1 prevotes show it was timely to enough validators).

use std::collections::{BTreeMap, BTreeSet};

use cbec_ledger::{CommitCertificate, CommitSig, Hash, PublicKey, ValidatorSet, VoteKind};

use crate::proposer::ProposerSchedule;
use crate::safety::{Permission, SignStep, SigningState};
use crate::types::{
    proposal_sign_bytes, Evidence, Height, Message, Proposal, Round, SignedProposal, SignedVote,
    Signer, VerifiedMessage, Vote,
};
use crate::votes::{Added, HeightVotes};

/// Messages further ahead than this many rounds are dropped.
pub const ROUND_WINDOW: Round = 64;
/// Messages for the next height kept until it starts.
pub const FUTURE_MESSAGES_MAX: usize = 4096;

/// Timeout durations; each grows by `increase_per_round_ms` per round (so after the
/// network stabilises, a round eventually lasts long enough for every message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub propose_ms: u64,
    pub prevote_ms: u64,
    pub precommit_ms: u64,
    pub increase_per_round_ms: u64,
}

impl Timeouts {
    pub fn duration_ms(&self, kind: TimeoutKind, round: Round) -> u64 {
        let base = match kind {
            TimeoutKind::Propose | TimeoutKind::Rebroadcast => self.propose_ms,
            TimeoutKind::Prevote => self.prevote_ms,
            TimeoutKind::Precommit => self.precommit_ms,
        };
        base.saturating_add(self.increase_per_round_ms.saturating_mul(u64::from(round)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub chain_id: Hash,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeoutKind {
    Propose,
    Prevote,
    Precommit,
    Rebroadcast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timeout {
    pub height: Height,
    pub round: Round,
    pub kind: TimeoutKind,
}

/// The step within a round (`step_p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Propose,
    Prevote,
    Precommit,
}

/// What the host tells the state machine.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin deciding `height` (after the previous height's block was applied).
    StartHeight {
        height: Height,
        validators: ValidatorSet,
    },
    /// A message from the network, not yet verified.
    Message(Message),
    /// A message whose signature the host verified (e.g. in a batch).
    Verified(VerifiedMessage),
    /// A proposal whose signature the host verified, with its judgement of the proposed
    /// block's time against its own clock (see the module comment). `Verified` is a
    /// timely proposal.
    TimedProposal {
        proposal: VerifiedMessage,
        timely: bool,
    },
    /// A timeout the state machine scheduled has elapsed.
    Timeout(Timeout),
    /// Answer to `RequestValue`: the value this validator proposes (it is valid).
    ValueProduced {
        height: Height,
        round: Round,
        value: Hash,
    },
    /// Answer to `ValidateValue`: `valid(v)` of the paper.
    ValueValidated {
        height: Height,
        value: Hash,
        valid: bool,
    },
    /// A commit certificate for the current height, from block sync.
    Commit(CommitCertificate),
}

/// What the state machine asks the host to do, in order. A `Persist` must be durable
/// before any later output of the same batch is performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Persist(SigningState),
    Broadcast(Message),
    ScheduleTimeout {
        timeout: Timeout,
        after_ms: u64,
    },
    /// `getValue()`: produce a value to propose (the host builds and executes a block).
    RequestValue {
        height: Height,
        round: Round,
    },
    /// `valid(v)`: check the proposed value (the host re-executes the block).
    ValidateValue {
        height: Height,
        round: Round,
        value: Hash,
    },
    Decide(Decision),
    Evidence(Evidence),
}

/// A decided value with the certificate that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub height: Height,
    pub round: Round,
    pub value: Hash,
    pub certificate: CommitCertificate,
}

/// Messages ignored, by reason. Never a panic: counted and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub bad_signature: u64,
    pub unknown_validator: u64,
    pub not_proposer: u64,
    pub malformed: u64,
    pub past_height: u64,
    pub far_future: u64,
    pub future_buffer_full: u64,
    pub duplicate: u64,
    pub equivocation: u64,
    pub bad_commit: u64,
    pub refused_to_sign: u64,
}

/// The seam through which tests inject Byzantine or buggy behaviour (as Malachite's
/// test middleware does). Production uses [`Honest`], which changes nothing.
pub trait Middleware {
    /// The prevote for a proposal of `value` (L22-L33); `honest` is what Algorithm 1
    /// prescribes.
    fn prevote(&self, value: &Hash, valid: bool, honest: Option<Hash>) -> Option<Hash> {
        let _ = (value, valid);
        honest
    }

    /// The value a proposer re-proposes (L15-L16); `valid` is `validRound, validValue`.
    fn repropose(&self, valid: Option<(Round, Hash)>) -> Option<(Round, Hash)> {
        valid
    }
}

/// Follows Algorithm 1 exactly.
#[derive(Debug, Clone, Copy, Default)]
pub struct Honest;
impl Middleware for Honest {}

/// Rules that fire only once per round ("for the first time").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Once {
    L34TimeoutPrevote,
    L36Polka,
    L47TimeoutPrecommit,
}

/// One validator's Tendermint instance.
#[derive(Debug)]
pub struct Consensus<S: Signer, M: Middleware = Honest> {
    config: Config,
    signer: S,
    middleware: M,
    me: PublicKey,
    started: bool,
    height: Height,
    validators: Option<(ValidatorSet, ProposerSchedule)>,
    round: Round,
    step: Step,
    decided: bool,
    locked: Option<(Round, Hash)>,
    valid: Option<(Round, Hash)>,
    proposals: BTreeMap<Round, SignedProposal>,
    votes: HeightVotes,
    validity: BTreeMap<Hash, bool>,
    pending_validation: BTreeSet<Hash>,
    /// Rounds whose proposal the host judged untimely.
    untimely: BTreeSet<Round>,
    fired: BTreeSet<(Round, Once)>,
    awaiting_value: bool,
    /// What this validator signed (or forwarded) at this height, per round, for rebroadcast.
    own_messages: BTreeMap<Round, Vec<Message>>,
    /// Early messages for the next height, already verified, with their timeliness.
    future: Vec<(Message, bool)>,
    signing: SigningState,
    counters: Counters,
}

impl<S: Signer, M: Middleware> Consensus<S, M> {
    /// A validator restored from its persisted signing state (`SigningState::genesis()`
    /// for one that never signed). Nothing happens until `Input::StartHeight`.
    pub fn new(config: Config, signer: S, middleware: M, signing: SigningState) -> Self {
        let me = signer.public_key();
        Consensus {
            config,
            signer,
            middleware,
            me,
            started: false,
            height: 0,
            validators: None,
            round: 0,
            step: Step::Propose,
            decided: false,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            votes: HeightVotes::default(),
            validity: BTreeMap::new(),
            pending_validation: BTreeSet::new(),
            untimely: BTreeSet::new(),
            fired: BTreeSet::new(),
            awaiting_value: false,
            own_messages: BTreeMap::new(),
            future: Vec::new(),
            signing,
            counters: Counters::default(),
        }
    }

    pub fn height(&self) -> Height {
        self.height
    }
    pub fn round(&self) -> Round {
        self.round
    }
    pub fn step(&self) -> Step {
        self.step
    }
    pub fn is_decided(&self) -> bool {
        self.decided
    }
    pub fn locked(&self) -> Option<(Round, Hash)> {
        self.locked
    }
    pub fn valid(&self) -> Option<(Round, Hash)> {
        self.valid
    }
    pub fn signing_state(&self) -> &SigningState {
        &self.signing
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn public_key(&self) -> PublicKey {
        self.me
    }

    /// The proposer of `round` at the current height, once a height has started.
    pub fn proposer(&self, round: Round) -> Option<PublicKey> {
        self.validators
            .as_ref()
            .map(|(_, schedule)| schedule.proposer(self.height, round))
    }

    /// Performs one input and returns what the host must do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::StartHeight { height, validators } => {
                self.start_height(height, validators, &mut out)
            }
            Input::Message(message) => match message.verify(&self.config.chain_id) {
                Ok(verified) => self.on_message(verified, true, &mut out),
                Err(_) => self.counters.bad_signature += 1,
            },
            Input::Verified(message) => self.on_message(message, true, &mut out),
            Input::TimedProposal { proposal, timely } => {
                self.on_message(proposal, timely, &mut out)
            }
            Input::Timeout(timeout) => self.on_timeout(timeout, &mut out),
            Input::ValueProduced {
                height,
                round,
                value,
            } => self.on_value_produced(height, round, value, &mut out),
            Input::ValueValidated {
                height,
                value,
                valid,
            } => {
                if height == self.height && !self.decided {
                    self.validity.insert(value, valid);
                    self.pending_validation.remove(&value);
                    self.evaluate(&mut out);
                }
            }
            Input::Commit(certificate) => self.on_commit(certificate, &mut out),
        }
        out
    }

    fn set(&self) -> &ValidatorSet {
        // Only called once a height has started, which sets the validators.
        &self.validators.as_ref().expect("a height has started").0
    }

    fn is_quorum(&self, power: u64) -> bool {
        self.set().is_quorum(power)
    }

    fn start_height(&mut self, height: Height, validators: ValidatorSet, out: &mut Vec<Output>) {
        if self.started && height <= self.height {
            self.counters.past_height += 1;
            return;
        }
        let schedule = ProposerSchedule::new(&validators);
        self.validators = Some((validators, schedule));
        self.started = true;
        self.height = height;
        self.decided = false;
        self.proposals.clear();
        self.votes = HeightVotes::default();
        self.validity.clear();
        self.pending_validation.clear();
        self.untimely.clear();
        self.fired.clear();
        self.own_messages.clear();
        // L10-L13 reset lock and valid value; a restarted validator resumes its own
        // round, lock and signed messages, and the rules re-derive its step.
        let (round, locked, valid) = if self.signing.height == height {
            (self.signing.round, self.signing.locked, self.signing.valid)
        } else {
            (0, None, None)
        };
        self.locked = locked;
        self.valid = valid;
        if self.signing.height == height {
            for message in self.signing.signed.clone() {
                self.count_own(message);
            }
            let own_power = |key| self.set().power_of(key).unwrap_or(0);
            let polka: Vec<(SignedVote, u64)> = self
                .signing
                .valid_polka
                .iter()
                .map(|v| (v.clone(), own_power(&v.validator)))
                .collect();
            for (vote, power) in polka {
                let round = vote.vote.round;
                self.votes
                    .round_mut(round)
                    .tally_mut(VoteKind::Prevote)
                    .add(vote, power);
            }
        }
        self.start_round(round, out);
        // Replays what arrived early; messages for the height after are kept again.
        for (message, timely) in std::mem::take(&mut self.future) {
            self.on_message(VerifiedMessage::already_verified(message), timely, out);
        }
    }

    /// L11-L21 StartRound(round).
    fn start_round(&mut self, round: Round, out: &mut Vec<Output>) {
        self.round = round;
        self.step = Step::Propose;
        self.awaiting_value = false;
        self.schedule(TimeoutKind::Rebroadcast, out);
        // L21 (scheduled by the proposer too: see the module comment).
        self.schedule(TimeoutKind::Propose, out);
        let proposed = self.proposals.contains_key(&round); // restored after a restart
        if self.proposer(round) == Some(self.me) && !proposed {
            match self.middleware.repropose(self.valid) {
                // L15-L16: re-propose the value seen with a polka, with its round.
                Some((valid_round, value)) => self.propose(value, Some(valid_round), out),
                // L18: getValue().
                None => {
                    self.awaiting_value = true;
                    out.push(Output::RequestValue {
                        height: self.height,
                        round,
                    });
                }
            }
        }
        self.evaluate(out);
    }

    fn schedule(&self, kind: TimeoutKind, out: &mut Vec<Output>) {
        out.push(Output::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                kind,
            },
            after_ms: self.config.timeouts.duration_ms(kind, self.round),
        });
    }

    fn on_value_produced(
        &mut self,
        height: Height,
        round: Round,
        value: Hash,
        out: &mut Vec<Output>,
    ) {
        if height != self.height
            || round != self.round
            || !self.awaiting_value
            || self.step != Step::Propose
            || self.decided
        {
            return; // stale: the round moved on while the host built the value
        }
        self.awaiting_value = false;
        self.propose(value, None, out); // L19
        self.evaluate(out);
    }

    /// L19 broadcast ⟨PROPOSAL, h, round, proposal, validRound⟩.
    fn propose(&mut self, value: Hash, valid_round: Option<Round>, out: &mut Vec<Output>) {
        let proposal = Proposal {
            height: self.height,
            round: self.round,
            value,
            valid_round,
        };
        let bytes = proposal_sign_bytes(&self.config.chain_id, &proposal);
        let me = self.me;
        let fresh = |signature| {
            Message::Proposal(SignedProposal {
                proposal,
                proposer: me,
                signature,
            })
        };
        let Some(Message::Proposal(signed)) = self.sign(SignStep::Propose, &bytes, fresh, out)
        else {
            return;
        };
        let (value, valid_round) = (signed.proposal.value, signed.proposal.valid_round);
        self.add_own(Message::Proposal(signed), out);
        // With a valid round, forward the 2f+1 prevotes of that round (the proof of
        // lock change): peers that missed them could not apply L28 and would prevote
        // nil forever. They are others' signatures, so nobody need trust us.
        if let Some(vr) = valid_round {
            let polka: Vec<Message> = self
                .votes
                .round(vr)
                .map(|r| {
                    r.prevotes
                        .votes_for(&value)
                        .cloned()
                        .map(Message::Vote)
                        .collect()
                })
                .unwrap_or_default();
            for vote in polka {
                out.push(Output::Broadcast(vote.clone()));
                self.remember_own(vote);
            }
        }
    }

    /// Broadcasts this validator's vote for the current round and counts it.
    fn vote(&mut self, kind: VoteKind, value: Option<Hash>, out: &mut Vec<Output>) {
        let vote = Vote {
            height: self.height,
            round: self.round,
            kind,
            value,
        };
        let step = match kind {
            VoteKind::Prevote => SignStep::Prevote,
            VoteKind::Precommit => SignStep::Precommit,
        };
        let me = self.me;
        let fresh = |signature| {
            Message::Vote(SignedVote {
                vote,
                validator: me,
                signature,
            })
        };
        let bytes = vote.sign_bytes(&self.config.chain_id);
        if let Some(message) = self.sign(step, &bytes, fresh, out) {
            self.add_own(message, out);
        }
    }

    /// Broadcasts one of this validator's own messages and counts it as received.
    fn add_own(&mut self, message: Message, out: &mut Vec<Output>) {
        out.push(Output::Broadcast(message.clone()));
        self.count_own(message);
    }

    /// Counts an own message in this height's state, for the rules and rebroadcast.
    fn count_own(&mut self, message: Message) {
        let power = self.set().power_of(&self.me).unwrap_or(0);
        let round = message.round();
        match &message {
            Message::Proposal(p) => {
                self.validity.insert(p.proposal.value, true);
                self.proposals.insert(round, p.clone());
            }
            Message::Vote(v) => {
                self.votes
                    .round_mut(round)
                    .tally_mut(v.vote.kind)
                    .add(v.clone(), power);
            }
        }
        self.votes.round_mut(round).note_sender(self.me, power);
        self.own_messages.entry(round).or_default().push(message);
    }

    /// Relays the messages of `round` that made this validator leave (or join) it: the
    /// paper's gossip delivers to every correct validator what one of them received;
    /// without the relay, a validator that got a Byzantine validator's vote could move
    /// on while the others wait for that vote forever.
    fn forward_round(&mut self, round: Round, out: &mut Vec<Output>) {
        let Some(votes) = self.votes.round(round) else {
            return;
        };
        let me = self.me;
        let mut relay: Vec<Message> = votes
            .prevotes
            .all()
            .chain(votes.precommits.all())
            .filter(|v| v.validator != me)
            .cloned()
            .map(Message::Vote)
            .collect();
        if let Some(p) = self.proposals.get(&round).filter(|p| p.proposer != me) {
            relay.push(Message::Proposal(p.clone()));
        }
        for message in relay {
            out.push(Output::Broadcast(message.clone()));
            self.own_messages.entry(round).or_default().push(message);
        }
    }

    fn remember_own(&mut self, message: Message) {
        self.own_messages
            .entry(self.round)
            .or_default()
            .push(message);
    }

    /// Signs through the safety rules. Returns the message to send: a new one (its
    /// signing state is output for persistence first), or the one this validator
    /// already signed for this step before a restart, or nothing.
    fn sign(
        &mut self,
        step: SignStep,
        bytes: &[u8],
        message: impl FnOnce(cbec_ledger::Signature) -> Message,
        out: &mut Vec<Output>,
    ) -> Option<Message> {
        match self.signing.permission(self.height, self.round, step) {
            Permission::Refuse => {
                self.counters.refused_to_sign += 1;
                None
            }
            Permission::AlreadySigned(earlier) => Some(earlier),
            Permission::Sign => {
                let signed = message(self.signer.sign(bytes));
                self.signing.record(signed.clone());
                self.signing.locked = self.locked;
                self.signing.valid = self.valid;
                self.signing.valid_polka = self.valid.map_or_else(Vec::new, |(round, value)| {
                    self.votes
                        .round(round)
                        .map(|r| r.prevotes.votes_for(&value).cloned().collect())
                        .unwrap_or_default()
                });
                out.push(Output::Persist(self.signing.clone()));
                Some(signed)
            }
        }
    }

    fn on_message(&mut self, message: VerifiedMessage, timely: bool, out: &mut Vec<Output>) {
        let message = message.into_inner();
        let height = message.height();
        if !self.started || self.decided || height != self.height {
            self.defer_or_drop(message, timely);
            return;
        }
        let round = message.round();
        if round > self.round.saturating_add(ROUND_WINDOW) {
            self.counters.far_future += 1;
            return;
        }
        let sender = message.sender();
        let Some(power) = self.set().power_of(&sender) else {
            self.counters.unknown_validator += 1;
            return;
        };
        let accepted = match message {
            Message::Proposal(p) => self.on_proposal(p, timely, out),
            Message::Vote(v) => self.on_vote(v, power, out),
        };
        if !accepted {
            return;
        }
        self.votes.round_mut(round).note_sender(sender, power);
        // L55: f+1 messages of a later round: join it.
        if round > self.round {
            let sender_power = self.votes.round(round).map_or(0, |r| r.sender_power());
            if self.set().is_one_third(sender_power) {
                self.start_round(round, out);
                self.forward_round(round, out);
                return;
            }
        }
        self.evaluate(out);
    }

    /// Keeps a message for the next height (or, before the first height starts, for
    /// whichever comes); drops older and farther ones, counted.
    fn defer_or_drop(&mut self, message: Message, timely: bool) {
        let height = message.height();
        if !self.started || height == self.height + 1 {
            if self.future.len() < FUTURE_MESSAGES_MAX {
                self.future.push((message, timely));
            } else {
                self.counters.future_buffer_full += 1;
            }
        } else if height > self.height + 1 {
            self.counters.far_future += 1;
        } else {
            self.counters.past_height += 1;
        }
    }

    fn on_proposal(&mut self, signed: SignedProposal, timely: bool, out: &mut Vec<Output>) -> bool {
        let p = &signed.proposal;
        if self.proposer(p.round) != Some(signed.proposer) {
            self.counters.not_proposer += 1;
            return false;
        }
        if p.valid_round.is_some_and(|vr| vr >= p.round) {
            self.counters.malformed += 1; // the paper requires vr < r
            return false;
        }
        if let Some(first) = self.proposals.get(&p.round) {
            if first.proposal == *p {
                self.counters.duplicate += 1;
            } else {
                self.counters.equivocation += 1;
                out.push(Output::Evidence(Evidence::ConflictingProposals {
                    first: first.clone(),
                    second: signed,
                }));
            }
            return false;
        }
        let (round, value) = (p.round, p.value);
        if !timely {
            self.untimely.insert(round);
        }
        if !self.validity.contains_key(&value) && self.pending_validation.insert(value) {
            out.push(Output::ValidateValue {
                height: self.height,
                round,
                value,
            });
        }
        self.proposals.insert(round, signed);
        true
    }

    fn on_vote(&mut self, signed: SignedVote, power: u64, out: &mut Vec<Output>) -> bool {
        let kind = signed.vote.kind;
        let round = signed.vote.round;
        match self
            .votes
            .round_mut(round)
            .tally_mut(kind)
            .add(signed.clone(), power)
        {
            Added::New => true,
            Added::Duplicate => {
                self.counters.duplicate += 1;
                false
            }
            Added::Conflict { first, counted } => {
                self.counters.equivocation += 1;
                out.push(Output::Evidence(Evidence::ConflictingVotes {
                    first: *first,
                    second: signed,
                }));
                counted
            }
        }
    }

    fn on_timeout(&mut self, timeout: Timeout, out: &mut Vec<Output>) {
        if timeout.height != self.height || self.decided || !self.started {
            return;
        }
        let current = timeout.round == self.round;
        match timeout.kind {
            // L57-L60 OnTimeoutPropose.
            TimeoutKind::Propose if current && self.step == Step::Propose => {
                self.step = Step::Prevote;
                self.vote(VoteKind::Prevote, None, out);
            }
            // L61-L64 OnTimeoutPrevote.
            TimeoutKind::Prevote if current && self.step == Step::Prevote => {
                self.step = Step::Precommit;
                self.vote(VoteKind::Precommit, None, out);
            }
            // L65-L67 OnTimeoutPrecommit.
            TimeoutKind::Precommit if current => {
                self.forward_round(self.round, out);
                self.start_round(self.round + 1, out);
                return;
            }
            // Resend everything this validator said at this height: a validator still in
            // an earlier round needs those rounds' messages to catch up (the paper's
            // gossip would have delivered them; a lossy network may not have).
            TimeoutKind::Rebroadcast if current => {
                let oldest = self.round.saturating_sub(ROUND_WINDOW);
                for messages in self.own_messages.range(oldest..).map(|(_, m)| m) {
                    for message in messages {
                        out.push(Output::Broadcast(message.clone()));
                    }
                }
                self.schedule(TimeoutKind::Rebroadcast, out);
            }
            _ => return,
        }
        self.evaluate(out);
    }

    fn on_commit(&mut self, certificate: CommitCertificate, out: &mut Vec<Output>) {
        if !self.started || self.decided || certificate.height != self.height {
            return;
        }
        if certificate
            .verify(&self.config.chain_id, self.set())
            .is_err()
        {
            self.counters.bad_commit += 1;
            return;
        }
        self.decided = true;
        out.push(Output::Decide(Decision {
            height: self.height,
            round: certificate.round,
            value: certificate.block_hash,
            certificate,
        }));
    }

    fn validity_of(&self, value: &Hash) -> Option<bool> {
        self.validity.get(value).copied()
    }

    /// Applies every rule whose condition holds, until none does.
    fn evaluate(&mut self, out: &mut Vec<Output>) {
        while !self.decided && self.started {
            if self.try_decide(out) {
                return;
            }
            let progressed = self.propose_step_rules(out) | self.vote_step_rules(out);
            if !progressed {
                return;
            }
        }
    }

    /// L22-L33: prevote on the proposal of this round.
    fn propose_step_rules(&mut self, out: &mut Vec<Output>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some(p) = self.proposals.get(&self.round).map(|s| s.proposal.clone()) else {
            return false;
        };
        let honest = match p.valid_round {
            // L22: upon ⟨PROPOSAL, h, r, v, −1⟩ while step = propose.
            None => {
                let Some(valid) = self.validity_of(&p.value) else {
                    return false;
                };
                // L23: valid(v) ∧ (lockedRound = −1 ∨ lockedValue = v), and (PBTS) the
                // proposal is timely.
                let free = self.locked.is_none_or(|(_, locked)| locked == p.value);
                let timely = !self.untimely.contains(&p.round);
                (valid, (valid && free && timely).then_some(p.value))
            }
            // L28: upon ⟨PROPOSAL, h, r, v, vr⟩ ∧ 2f+1 ⟨PREVOTE, h, vr, id(v)⟩, 0 ≤ vr < r.
            Some(vr) => {
                let polka = self.votes.power_for(vr, VoteKind::Prevote, Some(&p.value));
                if !self.is_quorum(polka) {
                    return false;
                }
                let Some(valid) = self.validity_of(&p.value) else {
                    return false;
                };
                // L29: valid(v) ∧ (lockedRound ≤ vr ∨ lockedValue = v).
                let free = self
                    .locked
                    .is_none_or(|(round, locked)| round <= vr || locked == p.value);
                (valid, (valid && free).then_some(p.value))
            }
        };
        let (valid, choice) = honest;
        let choice = self.middleware.prevote(&p.value, valid, choice);
        self.step = Step::Prevote; // L27 / L33
        self.vote(VoteKind::Prevote, choice, out); // L24 / L26 / L30 / L32
        true
    }

    /// L34-L48: the prevote and precommit steps.
    fn vote_step_rules(&mut self, out: &mut Vec<Output>) -> bool {
        let round = self.round;
        let mut progressed = false;
        // L34: upon 2f+1 ⟨PREVOTE, h, r, ∗⟩ while step = prevote, for the first time.
        if self.step == Step::Prevote
            && self.is_quorum(self.votes.power_total(round, VoteKind::Prevote))
            && self.fired.insert((round, Once::L34TimeoutPrevote))
        {
            self.schedule(TimeoutKind::Prevote, out); // L35
        }
        // L36: upon ⟨PROPOSAL, h, r, v, ∗⟩ ∧ 2f+1 ⟨PREVOTE, h, r, id(v)⟩ while valid(v) ∧
        // step ≥ prevote, for the first time.
        if self.step >= Step::Prevote && !self.fired.contains(&(round, Once::L36Polka)) {
            if let Some(value) = self.proposals.get(&round).map(|p| p.proposal.value) {
                let polka = self.votes.power_for(round, VoteKind::Prevote, Some(&value));
                if self.validity_of(&value) == Some(true) && self.is_quorum(polka) {
                    self.fired.insert((round, Once::L36Polka));
                    self.valid = Some((round, value)); // L42-L43
                    if self.step == Step::Prevote {
                        self.locked = Some((round, value)); // L38-L39
                        self.step = Step::Precommit; // L41
                        self.vote(VoteKind::Precommit, Some(value), out); // L40
                    }
                    progressed = true;
                }
            }
        }
        // L44: upon 2f+1 ⟨PREVOTE, h, r, nil⟩ while step = prevote.
        if self.step == Step::Prevote
            && self.is_quorum(self.votes.power_for(round, VoteKind::Prevote, None))
        {
            self.step = Step::Precommit; // L46
            self.vote(VoteKind::Precommit, None, out); // L45
            progressed = true;
        }
        // L47: upon 2f+1 ⟨PRECOMMIT, h, r, ∗⟩ for the first time.
        if self.is_quorum(self.votes.power_total(round, VoteKind::Precommit))
            && self.fired.insert((round, Once::L47TimeoutPrecommit))
        {
            self.schedule(TimeoutKind::Precommit, out); // L48
        }
        progressed
    }

    /// L49: upon ⟨PROPOSAL, h, r, v, ∗⟩ ∧ 2f+1 ⟨PRECOMMIT, h, r, id(v)⟩ while
    /// decision = nil, in any round r.
    fn try_decide(&mut self, out: &mut Vec<Output>) -> bool {
        let found = self.proposals.iter().find_map(|(round, p)| {
            let value = p.proposal.value;
            let power = self
                .votes
                .power_for(*round, VoteKind::Precommit, Some(&value));
            (self.is_quorum(power) && self.validity_of(&value) == Some(true))
                .then_some((*round, value))
        });
        let Some((round, value)) = found else {
            return false;
        };
        let signatures = self
            .votes
            .round(round)
            .map(|r| {
                r.precommits
                    .votes_for(&value)
                    .map(|v| CommitSig {
                        validator: v.validator,
                        signature: v.signature,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let certificate = CommitCertificate {
            height: self.height,
            round,
            block_hash: value,
            signatures,
        };
        debug_assert!(certificate
            .verify(&self.config.chain_id, self.set())
            .is_ok());
        self.decided = true; // L51-L54: the host starts the next height
        out.push(Output::Decide(Decision {
            height: self.height,
            round,
            value,
            certificate,
        }));
        true
    }
}
