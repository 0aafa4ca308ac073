//! A deterministic simulator: whole networks of validators under seeded faults.
//!
//! One seed fixes everything — message delays, losses, duplicates, partitions, crashes,
//! Byzantine behaviour — so a failing seed replays exactly. Time is virtual. Before the
//! global stabilisation time (GST) the network may delay, reorder, duplicate and drop
//! messages and partition the validators; after GST every message arrives within
//! `delta_ms`. After every step the checkers look for:
//! - agreement: two honest validators deciding different values at one height;
//! - validity: a decided value that was not proposed or not valid;
//! - double signing: an honest validator signing two different votes or proposals for
//!   one height, round and step, across crashes and restarts;
//! - termination: an honest validator that does not decide every height, or that needs
//!   more than `round_bound` rounds for a height begun after GST.
//!
//! Byzantine validators are made by transforming the outputs of an honest state machine
//! (silent, double voter, equivocating proposer) or by running two instances with one
//! key (twins, after Bano et al.). Bugs are planted through the state machine's
//! [`Middleware`] seam or by restarting without the persisted signing state.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use cbec_ledger::{codec, CommitCertificate, Hash, KeyPair, Validator, ValidatorSet, VoteKind};

use crate::machine::{Config, Consensus, Decision, Input, Middleware, Output, Timeout, Timeouts};
use crate::safety::SigningState;
use crate::types::{
    proposal_sign_bytes, Height, Message, Round, SignedProposal, SignedVote, Signer,
    VerifiedMessage, Vote,
};

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_cbec_1ed9_e700)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// How a faulty validator misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Byzantine {
    /// Sends nothing.
    Silent,
    /// Sends each vote to some peers and a conflicting vote to the others.
    DoubleVoter,
    /// Sends each proposal to some peers and another (sometimes invalid) value to the rest.
    EquivocatingProposer,
    /// Two instances with the same key, each behaving honestly on its own.
    Twins,
}

/// The network and node faults of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    pub loss_percent: u64,
    pub duplicate_percent: u64,
    /// Delay before GST is uniform in `0..=max_delay_ms`.
    pub max_delay_ms: u64,
    pub partitions: bool,
    pub crashes: bool,
    /// The last validator (by index) is Byzantine in this way.
    pub byzantine: Option<Byzantine>,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            loss_percent: 0,
            duplicate_percent: 0,
            max_delay_ms: 0,
            partitions: false,
            crashes: false,
            byzantine: None,
        }
    }
}

/// A bug planted on purpose, to show the checkers find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    None,
    /// Every validator ignores locks: it prevotes for any valid proposal (L23, L29) and
    /// proposes a fresh value instead of its valid value (L15-L16).
    IgnoreLock,
    /// Restarted validators come back without their persisted signing state.
    ForgetSigningState,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub validators: usize,
    pub heights: Height,
    pub faults: Faults,
    pub mutation: Mutation,
    pub gst_ms: u64,
    /// Largest message delay after GST.
    pub delta_ms: u64,
    /// Most rounds an honest validator may need for a height begun after GST.
    pub round_bound: Round,
    pub timeouts: Timeouts,
    /// A run that takes more events than this fails termination.
    pub events_max: u64,
    /// How many of the last trace lines a report keeps.
    pub trace_len: usize,
}

/// The fault mixes the regular test run cycles through, by name.
pub const FAULT_MIXES: [&str; 9] = [
    "none",
    "lossy",
    "partition",
    "crash",
    "silent",
    "double-voter",
    "equivocating-proposer",
    "twins",
    "everything",
];

impl SimConfig {
    /// Defaults for `seed`: 4 validators, 20 heights, no faults.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            validators: 4,
            heights: 20,
            faults: Faults::none(),
            mutation: Mutation::None,
            gst_ms: 0,
            trace_len: 40,
            delta_ms: 10,
            round_bound: 6,
            timeouts: Timeouts {
                propose_ms: 40,
                prevote_ms: 20,
                precommit_ms: 20,
                increase_per_round_ms: 10,
            },
            events_max: 2_000_000,
        }
    }

    /// The named fault mix (see [`FAULT_MIXES`]), with GST after the first second.
    pub fn with_mix(mut self, mix: &str) -> SimConfig {
        // Delays of the order of the timeouts: rounds time out while messages are in
        // flight, which is where lock bugs live.
        let lossy = Faults {
            loss_percent: 10,
            duplicate_percent: 10,
            max_delay_ms: 50,
            ..Faults::none()
        };
        self.faults = match mix {
            "none" => Faults::none(),
            "lossy" => lossy,
            "partition" => Faults {
                partitions: true,
                ..lossy
            },
            "crash" => Faults {
                crashes: true,
                ..lossy
            },
            "silent" => Faults {
                byzantine: Some(Byzantine::Silent),
                ..lossy
            },
            "double-voter" => Faults {
                byzantine: Some(Byzantine::DoubleVoter),
                ..lossy
            },
            "equivocating-proposer" => Faults {
                byzantine: Some(Byzantine::EquivocatingProposer),
                ..lossy
            },
            "twins" => Faults {
                byzantine: Some(Byzantine::Twins),
                partitions: true,
                ..lossy
            },
            "everything" => Faults {
                partitions: true,
                crashes: true,
                byzantine: Some(Byzantine::DoubleVoter),
                ..lossy
            },
            other => panic!("unknown fault mix `{other}`"),
        };
        if mix != "none" {
            self.gst_ms = 1_000;
        }
        self
    }
}

/// A property the run broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Agreement {
        height: Height,
        first: Hash,
        second: Hash,
    },
    Validity {
        height: Height,
        value: Hash,
    },
    DoubleSign {
        validator: usize,
        height: Height,
        round: Round,
        step: &'static str,
    },
    Termination {
        instance: usize,
        decided: Height,
        detail: String,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// Heights every honest validator decided.
    pub decided: Height,
    pub events: u64,
    pub messages_delivered: u64,
    pub signatures: u64,
    pub evidence: u64,
    pub max_round: Round,
    pub end_ms: u64,
    /// The last events before the end (or the first violation), for a failure message.
    pub trace: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
enum SimMiddleware {
    Honest,
    IgnoreLock,
}

impl Middleware for SimMiddleware {
    fn prevote(&self, value: &Hash, valid: bool, honest: Option<Hash>) -> Option<Hash> {
        match self {
            SimMiddleware::Honest => honest,
            SimMiddleware::IgnoreLock => valid.then_some(*value),
        }
    }

    fn repropose(&self, valid: Option<(Round, Hash)>) -> Option<(Round, Hash)> {
        match self {
            SimMiddleware::Honest => valid,
            SimMiddleware::IgnoreLock => None,
        }
    }
}

/// A validator key shared by the state machine and the simulator (Byzantine variants
/// sign extra messages with it).
#[derive(Debug, Clone)]
struct SimKey(std::rc::Rc<KeyPair>);

impl Signer for SimKey {
    fn public_key(&self) -> cbec_ledger::PublicKey {
        self.0.public()
    }
    fn sign(&self, message: &[u8]) -> cbec_ledger::Signature {
        self.0.sign(message)
    }
}

#[derive(Debug)]
struct Instance {
    key: usize,
    honest: bool,
    machine: Option<Consensus<SimKey, SimMiddleware>>,
    /// Bumped on every restart: events of an earlier life are ignored.
    epoch: u32,
    persisted: SigningState,
    decided: BTreeMap<Height, Decision>,
    /// When this instance began each height.
    started_at: BTreeMap<Height, u64>,
}

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        from: usize,
        message: Message,
    },
    Sync {
        to: usize,
        certificate: CommitCertificate,
    },
    Timeout {
        node: usize,
        epoch: u32,
        timeout: Timeout,
    },
    Produced {
        node: usize,
        epoch: u32,
        height: Height,
        round: Round,
        value: Hash,
    },
    Validated {
        node: usize,
        epoch: u32,
        height: Height,
        value: Hash,
        valid: bool,
    },
    Start {
        node: usize,
        epoch: u32,
        height: Height,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Partition {
        groups: Vec<u8>,
    },
    Heal,
}

struct Queued {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Runs one simulation to the end and reports what it found.
pub fn run(config: &SimConfig) -> Report {
    Sim::new(config.clone()).run()
}

struct Sim {
    config: SimConfig,
    rng: Rng,
    chain_id: Hash,
    keys: Vec<SimKey>,
    validators: ValidatorSet,
    instances: Vec<Instance>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now: u64,
    partition: Option<Vec<u8>>,
    valid_values: BTreeSet<Hash>,
    invalid_values: BTreeSet<Hash>,
    proposed_values: BTreeSet<Hash>,
    decisions: BTreeMap<Height, Hash>,
    /// (validator, height, round, step) -> what its honest instance signed.
    signed: BTreeMap<(usize, Height, Round, u8), Vec<u8>>,
    /// Signature checks already done, by message hash.
    verified: BTreeMap<Hash, bool>,
    report: Report,
    trace: VecDeque<String>,
}

impl Sim {
    fn new(config: SimConfig) -> Sim {
        let mut rng = Rng::new(config.seed);
        let n = config.validators;
        let keys: Vec<SimKey> = (0..n)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                SimKey(std::rc::Rc::new(KeyPair::from_seed(&seed)))
            })
            .collect();
        let validators = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    key: k.public_key(),
                    power: 1,
                })
                .collect(),
        )
        .expect("distinct generated keys");
        let chain_id =
            cbec_ledger::Suite::Ed25519Sha256.tagged("cbec:sim-chain", &config.seed.to_be_bytes());
        let byzantine = config.faults.byzantine;
        let mut instances: Vec<Instance> = (0..n)
            .map(|key| Instance {
                key,
                honest: byzantine.is_none() || key != n - 1,
                machine: None,
                epoch: 0,
                persisted: SigningState::genesis(),
                decided: BTreeMap::new(),
                started_at: BTreeMap::new(),
            })
            .collect();
        if byzantine == Some(Byzantine::Twins) {
            instances.push(Instance {
                key: n - 1,
                honest: false,
                machine: None,
                epoch: 0,
                persisted: SigningState::genesis(),
                decided: BTreeMap::new(),
                started_at: BTreeMap::new(),
            });
        }
        let _ = rng.next_u64();
        let mut sim = Sim {
            report: Report {
                seed: config.seed,
                ..Report::default()
            },
            config,
            rng,
            chain_id,
            keys,
            validators,
            instances,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            partition: None,
            valid_values: BTreeSet::new(),
            invalid_values: BTreeSet::new(),
            proposed_values: BTreeSet::new(),
            decisions: BTreeMap::new(),
            signed: BTreeMap::new(),
            verified: BTreeMap::new(),
            trace: VecDeque::new(),
        };
        sim.schedule_faults();
        for node in 0..sim.instances.len() {
            sim.boot(node, SigningState::genesis());
        }
        sim
    }

    fn push(&mut self, after_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at: self.now + after_ms,
            seq: self.seq,
            event,
        }));
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if self.trace.len() >= self.config.trace_len {
            self.trace.pop_front();
        }
        let line = format!("{:>6}ms {}", self.now, text());
        self.trace.push_back(line);
    }

    /// Partitions and crashes, all before GST.
    fn schedule_faults(&mut self) {
        let gst = self.config.gst_ms;
        let count = self.instances.len();
        if self.config.faults.partitions && gst > 0 {
            // Back-to-back partitions until GST, half of them isolating one validator
            // (the shape that separates a validator that decided from the rest).
            let mut at = 0;
            while at < gst {
                let groups: Vec<u8> = if self.rng.percent(50) {
                    let alone = self.rng.below(count as u64) as usize;
                    (0..count).map(|i| u8::from(i == alone)).collect()
                } else {
                    (0..count).map(|_| self.rng.below(2) as u8).collect()
                };
                self.push(at, Event::Partition { groups });
                at += self.rng.between(20, 200);
                if self.rng.percent(30) {
                    self.push(at.min(gst), Event::Heal);
                    at += self.rng.between(10, 100);
                }
            }
            self.push(gst, Event::Heal);
        }
        if self.config.faults.crashes && gst > 0 {
            for _ in 0..2 {
                let at = self.rng.below(gst);
                let honest: Vec<usize> = (0..count).filter(|i| self.instances[*i].honest).collect();
                let node = honest[self.rng.below(honest.len() as u64) as usize];
                let down = self.rng.between(20, 300);
                self.push(at, Event::Crash { node });
                self.push(at + down, Event::Restart { node });
            }
        }
    }

    fn boot(&mut self, node: usize, signing: SigningState) {
        let middleware = match self.config.mutation {
            Mutation::IgnoreLock => SimMiddleware::IgnoreLock,
            _ => SimMiddleware::Honest,
        };
        let config = Config {
            chain_id: self.chain_id,
            timeouts: self.config.timeouts.clone(),
        };
        let key = self.keys[self.instances[node].key].clone();
        let instance = &mut self.instances[node];
        instance.machine = Some(Consensus::new(config, key, middleware, signing));
        instance.epoch += 1;
        let height = instance.decided.keys().next_back().map_or(1, |h| h + 1);
        let epoch = instance.epoch;
        self.push(
            0,
            Event::Start {
                node,
                epoch,
                height,
            },
        );
    }

    fn run(mut self) -> Report {
        let target = self.config.heights;
        let horizon = self.config.gst_ms + 5_000 + target * 1_000;
        while let Some(Reverse(queued)) = self.queue.pop() {
            self.now = queued.at;
            self.report.events += 1;
            self.step(queued.event);
            if !self.report.violations.is_empty() {
                break;
            }
            if self.all_honest_decided(target) {
                break;
            }
            if self.report.events >= self.config.events_max || self.now > horizon {
                break;
            }
        }
        self.check_termination(target);
        self.report.end_ms = self.now;
        self.report.decided = self
            .instances
            .iter()
            .filter(|i| i.honest)
            .map(|i| i.decided.len() as Height)
            .min()
            .unwrap_or(0);
        self.report.trace = self.trace.into_iter().collect();
        self.report
    }

    fn all_honest_decided(&self, target: Height) -> bool {
        self.instances
            .iter()
            .filter(|i| i.honest)
            .all(|i| i.decided.len() as Height >= target)
    }

    fn check_termination(&mut self, target: Height) {
        if !self.report.violations.is_empty() {
            return;
        }
        for (index, instance) in self.instances.iter().enumerate() {
            if !instance.honest {
                continue;
            }
            let decided = instance.decided.len() as Height;
            if decided < target {
                let machine = instance.machine.as_ref();
                let locks: Vec<String> = self
                    .instances
                    .iter()
                    .enumerate()
                    .filter_map(|(i, inst)| {
                        inst.machine.as_ref().map(|m| {
                            format!(
                                "#{i} h{} r{} locked {:?} valid {:?}",
                                m.height(),
                                m.round(),
                                m.locked().map(|(r, v)| (r, short(&v))),
                                m.valid().map(|(r, v)| (r, short(&v)))
                            )
                        })
                    })
                    .collect();
                self.report.violations.push(Violation::Termination {
                    instance: index,
                    decided,
                    detail: format!(
                        "stuck at height {} round {} step {:?} after {} events, {} ms; {}",
                        machine.map_or(0, |m| m.height()),
                        machine.map_or(0, |m| m.round()),
                        machine.map(|m| m.step()),
                        self.report.events,
                        self.now,
                        locks.join("; ")
                    ),
                });
                return;
            }
            for (height, decision) in &instance.decided {
                let began = instance.started_at.get(height).copied().unwrap_or(0);
                let began_after_gst = began >= self.config.gst_ms + self.config.delta_ms;
                if began_after_gst && decision.round > self.config.round_bound {
                    self.report.violations.push(Violation::Termination {
                        instance: index,
                        decided,
                        detail: format!(
                            "height {height} begun after GST took {} rounds (bound {})",
                            decision.round, self.config.round_bound
                        ),
                    });
                    return;
                }
            }
        }
    }

    fn alive(&self, node: usize, epoch: u32) -> bool {
        let i = &self.instances[node];
        i.machine.is_some() && i.epoch == epoch
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { to, from, message } => self.deliver(to, from, message),
            Event::Sync { to, certificate } => {
                if self.instances[to].machine.is_some() {
                    self.note(|| format!("sync -> {to} h{}", certificate.height));
                    self.input(to, Input::Commit(certificate));
                }
            }
            Event::Timeout {
                node,
                epoch,
                timeout,
            } => {
                if self.alive(node, epoch) {
                    self.input(node, Input::Timeout(timeout));
                }
            }
            Event::Produced {
                node,
                epoch,
                height,
                round,
                value,
            } => {
                if self.alive(node, epoch) {
                    self.input(
                        node,
                        Input::ValueProduced {
                            height,
                            round,
                            value,
                        },
                    );
                }
            }
            Event::Validated {
                node,
                epoch,
                height,
                value,
                valid,
            } => {
                if self.alive(node, epoch) {
                    self.input(
                        node,
                        Input::ValueValidated {
                            height,
                            value,
                            valid,
                        },
                    );
                }
            }
            Event::Start {
                node,
                epoch,
                height,
            } => {
                if self.alive(node, epoch) {
                    self.instances[node]
                        .started_at
                        .entry(height)
                        .or_insert(self.now);
                    let validators = self.validators.clone();
                    self.input(node, Input::StartHeight { height, validators });
                }
            }
            Event::Crash { node } => {
                self.note(|| format!("crash {node}"));
                self.instances[node].machine = None;
            }
            Event::Restart { node } => {
                self.note(|| format!("restart {node}"));
                let signing = match self.config.mutation {
                    Mutation::ForgetSigningState => SigningState::genesis(),
                    _ => self.instances[node].persisted.clone(),
                };
                self.boot(node, signing);
            }
            Event::Partition { groups } => {
                self.note(|| format!("partition {groups:?}"));
                self.partition = Some(groups);
            }
            Event::Heal => self.partition = None,
        }
    }

    fn deliver(&mut self, to: usize, from: usize, message: Message) {
        let Some(machine) = self.instances[to].machine.as_ref() else {
            return;
        };
        let (my_height, decided) = (machine.height(), machine.is_decided());
        self.report.messages_delivered += 1;
        // Block sync, as the node does it: whoever is ahead sends the lagger the
        // certificate of the lagger's height.
        let msg_height = message.height();
        if msg_height < my_height || (msg_height == my_height && decided) {
            self.offer_sync(to, from, msg_height);
        } else if msg_height > my_height {
            self.offer_sync(from, to, my_height);
        }
        self.note(|| describe(from, to, &message));
        let input = self.verify_cached(message);
        self.input(to, input);
    }

    /// Every receiver verifies the same signature; the simulator verifies each distinct
    /// message once (really, with Ed25519) and hands the others the result.
    fn verify_cached(&mut self, message: Message) -> Input {
        let id =
            cbec_ledger::Suite::Ed25519Sha256.tagged("cbec:sim-message", &codec::encode(&message));
        match self.verified.get(&id) {
            Some(true) => Input::Verified(VerifiedMessage::already_verified(message)),
            Some(false) => Input::Message(message),
            None => match message.verify(&self.chain_id) {
                Ok(verified) => {
                    self.verified.insert(id, true);
                    Input::Verified(verified)
                }
                Err(message) => {
                    self.verified.insert(id, false);
                    Input::Message(message)
                }
            },
        }
    }

    /// `ahead` sends `behind` its certificate for `height`, if it has one.
    fn offer_sync(&mut self, ahead: usize, behind: usize, height: Height) {
        if !self.instances[ahead].honest {
            return;
        }
        let Some(decision) = self.instances[ahead].decided.get(&height) else {
            return;
        };
        let certificate = decision.certificate.clone();
        if let Some(delay) = self.link_delay(ahead, behind) {
            self.push(
                delay,
                Event::Sync {
                    to: behind,
                    certificate,
                },
            );
        }
    }

    /// The delay of one message on the link, or `None` if the network drops it.
    fn link_delay(&mut self, from: usize, to: usize) -> Option<u64> {
        if self.now >= self.config.gst_ms {
            return Some(self.rng.between(1, self.config.delta_ms));
        }
        if let Some(groups) = &self.partition {
            if groups[from] != groups[to] {
                return None;
            }
        }
        if self.rng.percent(self.config.faults.loss_percent) {
            return None;
        }
        Some(self.rng.between(0, self.config.faults.max_delay_ms))
    }

    fn send(&mut self, from: usize, to: usize, message: Message) {
        let Some(delay) = self.link_delay(from, to) else {
            return;
        };
        let duplicate =
            self.now < self.config.gst_ms && self.rng.percent(self.config.faults.duplicate_percent);
        if duplicate {
            let again = delay + self.rng.between(0, self.config.faults.max_delay_ms);
            self.push(
                again,
                Event::Deliver {
                    to,
                    from,
                    message: message.clone(),
                },
            );
        }
        self.push(delay, Event::Deliver { to, from, message });
    }

    fn input(&mut self, node: usize, input: Input) {
        let Some(machine) = self.instances[node].machine.as_mut() else {
            return;
        };
        let outputs = machine.handle(input);
        self.report.max_round = self.report.max_round.max(machine.round());
        for output in outputs {
            self.perform(node, output);
            if !self.report.violations.is_empty() {
                return;
            }
        }
    }

    fn perform(&mut self, node: usize, output: Output) {
        let epoch = self.instances[node].epoch;
        match output {
            Output::Persist(state) => {
                self.report.signatures += 1;
                self.instances[node].persisted = state;
            }
            Output::Broadcast(message) => self.broadcast(node, message),
            Output::ScheduleTimeout { timeout, after_ms } => self.push(
                after_ms,
                Event::Timeout {
                    node,
                    epoch,
                    timeout,
                },
            ),
            Output::RequestValue { height, round } => {
                let value = self.new_value(node, height, round, 0);
                self.valid_values.insert(value);
                let delay = self.rng.between(0, 2);
                self.push(
                    delay,
                    Event::Produced {
                        node,
                        epoch,
                        height,
                        round,
                        value,
                    },
                );
            }
            Output::ValidateValue { height, value, .. } => {
                let valid = self.valid_values.contains(&value);
                debug_assert!(valid || self.invalid_values.contains(&value));
                let delay = self.rng.between(0, 2);
                self.push(
                    delay,
                    Event::Validated {
                        node,
                        epoch,
                        height,
                        value,
                        valid,
                    },
                );
            }
            Output::Decide(decision) => self.on_decide(node, decision),
            Output::Evidence(_) => self.report.evidence += 1,
        }
    }

    fn new_value(&mut self, node: usize, height: Height, round: Round, variant: u8) -> Hash {
        let nonce = self.rng.next_u64();
        cbec_ledger::Suite::Ed25519Sha256.tagged(
            "cbec:sim-value",
            &codec::encode(&(node as u64, height, round, variant, nonce)),
        )
    }

    fn on_decide(&mut self, node: usize, decision: Decision) {
        let height = decision.height;
        let value = decision.value;
        self.note(|| {
            format!(
                "decide {node} h{height} r{} {}",
                decision.round,
                short(&value)
            )
        });
        let honest = self.instances[node].honest;
        if honest {
            match self.decisions.get(&height) {
                Some(first) if *first != value => {
                    self.report.violations.push(Violation::Agreement {
                        height,
                        first: *first,
                        second: value,
                    });
                    return;
                }
                Some(_) => {}
                None => {
                    self.decisions.insert(height, value);
                }
            }
            if !self.valid_values.contains(&value) || !self.proposed_values.contains(&value) {
                self.report
                    .violations
                    .push(Violation::Validity { height, value });
                return;
            }
            debug_assert_eq!(
                decision
                    .certificate
                    .verify_for(&self.chain_id, &self.validators, height, &value),
                Ok(())
            );
        }
        let instance = &mut self.instances[node];
        instance.decided.insert(height, decision);
        let epoch = instance.epoch;
        if height < self.config.heights {
            self.push(
                0,
                Event::Start {
                    node,
                    epoch,
                    height: height + 1,
                },
            );
        }
    }

    fn record_signed(&mut self, node: usize, message: &Message) {
        let instance = &self.instances[node];
        if !instance.honest || message.sender() != self.keys[instance.key].public_key() {
            return; // Byzantine, or forwarding someone else's signed vote
        }
        let (height, round, step, bytes) = match message {
            Message::Proposal(p) => (
                p.proposal.height,
                p.proposal.round,
                0u8,
                codec::encode(&p.proposal),
            ),
            Message::Vote(v) => (
                v.vote.height,
                v.vote.round,
                match v.vote.kind {
                    VoteKind::Prevote => 1,
                    VoteKind::Precommit => 2,
                },
                codec::encode(&v.vote),
            ),
        };
        let key = (instance.key, height, round, step);
        match self.signed.get(&key) {
            Some(first) if *first != bytes => {
                self.report.violations.push(Violation::DoubleSign {
                    validator: instance.key,
                    height,
                    round,
                    step: ["proposal", "prevote", "precommit"][usize::from(step)],
                });
            }
            Some(_) => {}
            None => {
                self.signed.insert(key, bytes);
            }
        }
    }

    fn broadcast(&mut self, node: usize, message: Message) {
        self.record_signed(node, &message);
        if let Message::Proposal(p) = &message {
            self.proposed_values.insert(p.proposal.value);
        }
        let peers: Vec<usize> = (0..self.instances.len()).filter(|p| *p != node).collect();
        let own = message.sender() == self.keys[self.instances[node].key].public_key();
        let byzantine = if self.instances[node].honest || !own {
            None
        } else {
            self.config.faults.byzantine
        };
        match (byzantine, &message) {
            (Some(Byzantine::Silent), _) => {}
            (Some(Byzantine::DoubleVoter), Message::Vote(v)) => {
                let other = self.conflicting_vote(node, v);
                self.split_send(node, &peers, message, other);
            }
            (Some(Byzantine::EquivocatingProposer), Message::Proposal(p)) => {
                let other = self.conflicting_proposal(node, p);
                self.split_send(node, &peers, message, other);
            }
            _ => {
                for peer in peers {
                    self.send(node, peer, message.clone());
                }
            }
        }
    }

    fn split_send(&mut self, node: usize, peers: &[usize], first: Message, second: Message) {
        for &peer in peers {
            let message = if self.rng.percent(50) {
                first.clone()
            } else {
                second.clone()
            };
            self.send(node, peer, message);
        }
    }

    fn conflicting_vote(&mut self, node: usize, v: &SignedVote) -> Message {
        let value = match v.vote.value {
            Some(_) => None,
            None => {
                let value = self.new_value(node, v.vote.height, v.vote.round, 1);
                self.valid_values.insert(value);
                Some(value)
            }
        };
        let vote = Vote { value, ..v.vote };
        let key = &self.keys[self.instances[node].key];
        Message::Vote(SignedVote {
            vote,
            validator: key.public_key(),
            signature: key.sign(&vote.sign_bytes(&self.chain_id)),
        })
    }

    fn conflicting_proposal(&mut self, node: usize, p: &SignedProposal) -> Message {
        let value = self.new_value(node, p.proposal.height, p.proposal.round, 2);
        if self.rng.percent(50) {
            self.valid_values.insert(value);
        } else {
            self.invalid_values.insert(value);
        }
        self.proposed_values.insert(value);
        let proposal = crate::types::Proposal {
            value,
            valid_round: None,
            ..p.proposal.clone()
        };
        let key = &self.keys[self.instances[node].key];
        Message::Proposal(SignedProposal {
            signature: key.sign(&proposal_sign_bytes(&self.chain_id, &proposal)),
            proposal,
            proposer: key.public_key(),
        })
    }
}

fn short(hash: &Hash) -> String {
    hash.to_hex()[..8].to_string()
}

fn describe(from: usize, to: usize, message: &Message) -> String {
    match message {
        Message::Proposal(p) => format!(
            "{from}->{to} proposal h{} r{} {} vr{:?}",
            p.proposal.height,
            p.proposal.round,
            short(&p.proposal.value),
            p.proposal.valid_round
        ),
        Message::Vote(v) => format!(
            "{from}->{to} {:?} h{} r{} {}",
            v.vote.kind,
            v.vote.height,
            v.vote.round,
            v.vote.value.as_ref().map_or("nil".into(), short)
        ),
    }
}
