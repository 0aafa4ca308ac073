//! The node simulation: several real hosts (keeper, executor, sync, mempool, admission,
//! the consensus core, an in-memory store behind the same trait as RocksDB, the real
//! chaincode) on a seeded, simulated network and clock, with a Byzantine validator made
//! through the [`crate::seam`].
//!
//! One seed fixes everything (delays, losses, partitions, crashes, the Byzantine node's
//! choices, the workload), so a failing seed replays exactly. Time is virtual. Before
//! the global stabilisation time (GST) the network delays, drops and partitions; after
//! it every message arrives within `delta_ms`. Checkers, after every step and at the end:
//! - agreement: honest nodes commit the same block at every height;
//! - validity: every honest store passes its own start-up check (hash chain,
//!   certificates, state root);
//! - no double signing: no honest validator signs two different messages for one
//!   height, round and step, across crashes;
//! - no framing: no honest node is disconnected for a message it did not make, and no
//!   honest node sends bytes the edge refuses;
//! - progress: every honest node (a lagging one and a restarted one included) commits
//!   the target height before the deadline, which leaves a bound per height after GST.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use cbec_chaincode::{args_from_json, catalog, Engine};
use cbec_consensus::{Message, SignedProposal};
use cbec_genesis::{Agency, ConsensusParams, Genesis};
use cbec_ledger::{codec, Call, Hash, KeyPair, Suite, Transaction, TxBody};

use crate::admission;
use crate::host::{Effect, Host, HostConfig, Now, Origin, Timer};
use crate::mempool::{Mempool, MempoolConfig};
use crate::network::serve_sync;
use crate::seam::byzantine::{Behaviour, Byzantine};
use crate::seam::{Adversary, Honest, NodeView, Outgoing};
use crate::store::{Store, StoreOptions};
use crate::wire::{self, NetMessage, SyncRequest, SyncResponse, SYNC_BLOCKS_MAX};

/// A simulated node's index, as the host's peer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeId(pub u8);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x51de_cbec_0000_0001)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// What can go wrong in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    pub loss_percent: u64,
    /// Delay before GST is uniform in `0..=max_delay_ms`.
    pub max_delay_ms: u64,
    /// A partition before GST (one node cut off, or two against two).
    pub partitions: bool,
    /// An honest node crashes before GST and restarts from its store.
    pub crash: bool,
    /// An honest node (node 1) starts this late: it must catch up through sync.
    pub late_start_ms: Option<u64>,
    /// The last node is Byzantine in these ways.
    pub byzantine: Option<Behaviour>,
    /// A node's clock is off by this much (ms; negative: behind), with the node.
    pub skew: Option<(u8, i64)>,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            loss_percent: 0,
            max_delay_ms: 0,
            partitions: false,
            crash: false,
            late_start_ms: None,
            byzantine: None,
            skew: None,
        }
    }
}

/// The fault mixes the regular test run cycles through, by name.
pub const MIXES: [&str; 10] = [
    "none",
    "lossy",
    "junk-proposals",
    "withheld-blocks",
    "lying-height",
    "equivocation",
    "replay-and-garbage",
    "skewed-clock",
    "crash-and-partition",
    "everything",
];

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Every honest node must commit this height.
    pub heights: u64,
    pub faults: Faults,
    pub gst_ms: u64,
    pub delta_ms: u64,
    /// Time allowed per height after GST (on top of GST and a late start).
    pub per_height_ms: u64,
    /// How many of the last trace lines a report keeps.
    pub trace_len: usize,
    /// The consortium's crypto suite.
    pub suite: Suite,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            heights: 8,
            faults: Faults::none(),
            gst_ms: 0,
            delta_ms: 10,
            per_height_ms: 4_000,
            trace_len: 40,
            suite: Suite::Ed25519Sha256,
        }
    }

    /// The same run on a chain of `suite`.
    pub fn with_suite(mut self, suite: Suite) -> SimConfig {
        self.suite = suite;
        self
    }

    /// The named mix (see [`MIXES`]); faults before a GST of three seconds.
    pub fn with_mix(mut self, mix: &str) -> SimConfig {
        let lossy = Faults {
            loss_percent: 10,
            max_delay_ms: 200,
            ..Faults::none()
        };
        let byzantine = |b: Behaviour| Faults {
            byzantine: Some(b),
            ..lossy.clone()
        };
        // After GST (3 s) and a few heights: the others are well ahead by then.
        let behind = || Some(5_000 + (self.seed % 3) * 1_000);
        self.faults = match mix {
            "none" => Faults::none(),
            "lossy" => lossy,
            "junk-proposals" => byzantine(Behaviour {
                junk_proposals: 4,
                ..Behaviour::default()
            }),
            "withheld-blocks" => byzantine(Behaviour {
                withhold_blocks: true,
                ..Behaviour::default()
            }),
            "lying-height" => Faults {
                late_start_ms: behind(),
                ..byzantine(Behaviour {
                    lie_about_height: true,
                    ..Behaviour::default()
                })
            },
            "equivocation" => byzantine(Behaviour {
                equivocate: true,
                junk_proposals: 1,
                ..Behaviour::default()
            }),
            "replay-and-garbage" => byzantine(Behaviour {
                replay: true,
                garbage: true,
                ..Behaviour::default()
            }),
            // The late node's clock is a minute behind: it must catch up with certified
            // blocks (no clock check on those; every one of them is "in the future" to
            // it), then take part (the three others decide its fresh proposals).
            "skewed-clock" => Faults {
                late_start_ms: behind(),
                skew: Some((1, -60_000)),
                ..lossy
            },
            "crash-and-partition" => Faults {
                crash: true,
                partitions: true,
                ..lossy
            },
            "everything" => Faults {
                crash: true,
                late_start_ms: behind(),
                ..byzantine(Behaviour::all())
            },
            other => panic!("unknown mix `{other}`"),
        };
        if mix != "none" {
            self.gst_ms = 3_000;
        }
        self
    }
}

/// A property the run broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Agreement {
        height: u64,
        nodes: (u8, u8),
    },
    Validity {
        node: u8,
        problem: String,
    },
    DoubleSign {
        node: u8,
        what: String,
    },
    Framed {
        victim: u8,
        by: u8,
        why: String,
    },
    BadBytesFromHonest {
        node: u8,
        fault: String,
    },
    Progress {
        node: u8,
        height: u64,
        detail: String,
    },
    Fatal {
        node: u8,
        error: String,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub mix: String,
    pub violations: Vec<Violation>,
    /// The lowest height every honest node committed.
    pub committed: u64,
    pub events: u64,
    pub end_ms: u64,
    pub synced_blocks: u64,
    pub evidence: u64,
    pub disconnects_of_byzantine: u64,
    pub txs_committed: u64,
    pub trace: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug)]
enum Event {
    Gossip {
        from: u8,
        to: u8,
        bytes: Arc<Vec<u8>>,
    },
    Push {
        to: u8,
        txs: Arc<Vec<Transaction>>,
    },
    SyncRequest {
        from: u8,
        to: u8,
        request: SyncRequest,
    },
    SyncResponse {
        from: u8,
        to: u8,
        response: SyncResponse,
    },
    /// `from` asks `to` for the block of `proposal` (as the network's block protocol).
    BlockRequest {
        from: u8,
        to: u8,
        proposal: Box<SignedProposal>,
    },
    Timer {
        node: u8,
        epoch: u32,
        timer: Timer,
    },
    Client,
    Start {
        node: u8,
    },
    Crash {
        node: u8,
    },
    Reconnect {
        a: u8,
        b: u8,
    },
    Partition {
        groups: [u8; 4],
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

struct Node {
    key: KeyPair,
    store: Arc<Store>,
    host: Option<Host<NodeId>>,
    adversary: Box<dyn Adversary<NodeId>>,
    honest: bool,
    /// Bumped at each restart: timers of an earlier life are ignored.
    epoch: u32,
    clock_offset_ms: i64,
    /// Links this node has dropped, until the given time.
    down_until: BTreeMap<u8, u64>,
}

const GENESIS_TIME_MS: u64 = 1_800_000_000_000;
const NODES: usize = 4;
const USCC: &str = "91140200MA0GRK2220";

/// Runs one simulation to the end and reports what it found.
pub fn run(config: &SimConfig, mix: &str) -> Report {
    Sim::new(config.clone(), mix).run()
}

struct Sim {
    config: SimConfig,
    rng: Rng,
    genesis: Genesis,
    chain_id: Hash,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now_ms: u64,
    groups: Option<[u8; 4]>,
    commerce: KeyPair,
    manufacturer: KeyPair,
    /// What each honest validator signed, by (signer, height, round, step).
    signed: BTreeMap<(u8, u64, u32, u8), Vec<u8>>,
    report: Report,
    trace: std::collections::VecDeque<String>,
    goods: u64,
}

/// The simulated consortium's validator keys (node `i`'s) and agency operator keys.
pub fn keys() -> (Vec<KeyPair>, Vec<KeyPair>) {
    keys_for(Suite::Ed25519Sha256)
}

/// [`keys`] of `suite`'s scheme.
pub fn keys_for(suite: Suite) -> (Vec<KeyPair>, Vec<KeyPair>) {
    let key = |n: u8| KeyPair::derive(suite.scheme(), &[n; 32]);
    let validators = (0..NODES as u8).map(|i| key(i + 1)).collect();
    let operators = (0..NODES as u8).map(|i| key(i + 101)).collect();
    (validators, operators)
}

/// An empty in-memory store for `genesis`'s chain.
pub fn memory_store(genesis: &Genesis) -> Store {
    let options = StoreOptions {
        suite: genesis.crypto,
        ..StoreOptions::default()
    };
    Store::with_kv_options(
        Box::new(crate::kv::MemKv::default()),
        &genesis.chain_id(),
        options,
    )
    .expect("memory store")
}

/// The simulated consortium's genesis, starting at `genesis_time_ms`.
pub fn genesis_at(seed: u64, genesis_time_ms: u64) -> Genesis {
    let (keys, operators) = keys();
    Genesis {
        genesis_time_ms,
        ..genesis(seed, &keys, &operators)
    }
}

/// A host of the simulated consortium over a fresh in-memory store (genesis state
/// written), for node `i`.
pub fn host(genesis: &Genesis, i: usize) -> (Host<NodeId>, Arc<Store>) {
    let store = Arc::new(memory_store(genesis));
    let agencies: Vec<_> = genesis
        .agencies
        .iter()
        .map(|a| (a.name.clone(), a.operator_keys.clone()))
        .collect();
    store
        .init_genesis(&Engine::genesis_writes(&agencies))
        .expect("genesis state");
    (host_over(genesis, i, store.clone()), store)
}

/// A host of the simulated consortium for node `i` over `store`.
pub fn host_over(genesis: &Genesis, i: usize, store: Arc<Store>) -> Host<NodeId> {
    let (keys, _) = keys_for(genesis.crypto);
    Host::new(
        HostConfig {
            trust: genesis.trust_root(),
            consensus: genesis.consensus.clone(),
            genesis_time_ms: genesis.genesis_time_ms,
            // Every proposal compact, so the simulation goes through putting blocks
            // together, waiting for pushes and fetching.
            compact_txs_min: 0,
        },
        store,
        Engine::from_configs(&genesis.chaincodes).expect("catalog"),
        keys[i].clone(),
        Mempool::new(MempoolConfig::default()),
    )
    .expect("host")
}

fn genesis(seed: u64, keys: &[KeyPair], operators: &[KeyPair]) -> Genesis {
    let agencies = cbec_genesis::AGENCIES
        .iter()
        .zip(keys.iter().zip(operators))
        .map(|(name, (key, operator))| Agency {
            name: (*name).to_string(),
            validator_key: key.public(),
            peer_id: format!("sim-{name}"),
            address: "/ip4/127.0.0.1/tcp/1".into(),
            operator_keys: vec![operator.public()],
            voting_power: 1,
        })
        .collect();
    Genesis {
        chain_name: format!("sim-{seed}"),
        genesis_time_ms: GENESIS_TIME_MS,
        agencies,
        consensus: ConsensusParams {
            timeout_propose_ms: 400,
            timeout_prevote_ms: 200,
            timeout_precommit_ms: 200,
            timeout_increase_per_round_ms: 100,
            batch_delay_ms: 5,
            block_txs_max: 100,
            ..ConsensusParams::default()
        },
        chaincodes: catalog::default_configs(),
        synthetic_state: None,
        crypto: keys[0].scheme().suite(),
    }
}

impl Sim {
    fn new(config: SimConfig, mix: &str) -> Sim {
        let seed = config.seed;
        let (keys, operators) = keys_for(config.suite);
        let genesis = genesis(seed, &keys, &operators);
        let chain_id = genesis.chain_id();
        let agencies: Vec<_> = genesis
            .agencies
            .iter()
            .map(|a| (a.name.clone(), a.operator_keys.clone()))
            .collect();
        let writes = Engine::genesis_writes(&agencies);
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let store = Arc::new(memory_store(&genesis));
                store.init_genesis(&writes).expect("genesis state");
                let byzantine = i == NODES - 1 && config.faults.byzantine.is_some();
                let adversary: Box<dyn Adversary<NodeId>> = match config.faults.byzantine {
                    Some(b) if byzantine => Box::new(Byzantine::new(b, seed)),
                    _ => Box::new(Honest),
                };
                let clock_offset_ms = match config.faults.skew {
                    Some((n, offset)) if usize::from(n) == i => offset,
                    _ => 0,
                };
                Node {
                    key,
                    store,
                    host: None,
                    adversary,
                    honest: !byzantine,
                    epoch: 0,
                    clock_offset_ms,
                    down_until: BTreeMap::new(),
                }
            })
            .collect();
        let commerce = operators[3].clone();
        let report = Report {
            seed,
            mix: mix.to_string(),
            ..Report::default()
        };
        Sim {
            rng: Rng::new(seed),
            genesis,
            chain_id,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            now_ms: 0,
            groups: None,
            commerce,
            manufacturer: KeyPair::derive(config.suite.scheme(), &[0xaa; 32]),
            signed: BTreeMap::new(),
            report,
            trace: Default::default(),
            goods: 0,
            config,
        }
    }

    fn at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn note(&mut self, line: String) {
        if self.trace.len() >= self.config.trace_len.max(1) {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("{:>7} ms  {line}", self.now_ms));
    }

    fn violation(&mut self, v: Violation) {
        self.note(format!("VIOLATION {v:?}"));
        if !self.report.violations.contains(&v) {
            self.report.violations.push(v);
        }
    }

    fn now_of(&self, node: u8) -> Now {
        let offset = self.nodes[usize::from(node)].clock_offset_ms;
        let wall = (GENESIS_TIME_MS + self.now_ms) as i64 + offset;
        Now {
            wall_ms: wall.max(0) as u64,
            mono_ms: self.now_ms,
        }
    }

    fn deadline_ms(&self) -> u64 {
        let late = self.config.faults.late_start_ms.unwrap_or(0);
        self.config.gst_ms.max(late) + 5_000 + self.config.heights * self.config.per_height_ms
    }

    fn run(mut self) -> Report {
        let late = self.config.faults.late_start_ms;
        for i in 0..NODES as u8 {
            let at = match late {
                Some(ms) if i == 1 => ms,
                _ => 0,
            };
            self.at(at, Event::Start { node: i });
        }
        self.at(50, Event::Client);
        self.schedule_faults();
        let deadline = self.deadline_ms();
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > deadline {
                break;
            }
            self.now_ms = q.at;
            self.report.events += 1;
            self.step(q.event);
            if self.done() {
                break;
            }
        }
        self.report.end_ms = self.now_ms;
        self.finish();
        self.report.trace = self.trace.into_iter().collect();
        self.report
    }

    fn schedule_faults(&mut self) {
        let gst = self.config.gst_ms;
        if self.config.faults.partitions && gst > 0 {
            let at = 200 + self.rng.below(gst / 2);
            let groups = match self.rng.below(2) {
                0 => {
                    let alone = self.rng.below(4) as usize;
                    let mut g = [0u8; 4];
                    g[alone] = 1;
                    g
                }
                _ => [0, 0, 1, 1],
            };
            self.at(at, Event::Partition { groups });
            let heal = at + 300 + self.rng.below(gst / 2);
            self.at(heal.min(gst), Event::Heal);
        }
        if self.config.faults.crash && gst > 0 {
            let node = self.rng.below(2) as u8; // an honest one (the Byzantine is last)
            let at = 300 + self.rng.below(gst / 2);
            self.at(at, Event::Crash { node });
            let back = at + 200 + self.rng.below(1_500);
            self.at(back, Event::Start { node });
        }
    }

    fn honest(&self) -> impl Iterator<Item = u8> + '_ {
        (0..NODES as u8).filter(|i| self.nodes[usize::from(*i)].honest)
    }

    fn committed_height(&self, node: u8) -> u64 {
        self.nodes[usize::from(node)].store.height().unwrap_or(0)
    }

    fn done(&self) -> bool {
        let target = self.config.heights;
        self.honest().all(|i| self.committed_height(i) >= target)
            && self
                .honest()
                .all(|i| self.nodes[usize::from(i)].host.is_some())
    }

    fn linked(&self, a: u8, b: u8) -> bool {
        if let Some(groups) = self.groups {
            if groups[usize::from(a)] != groups[usize::from(b)] {
                return false;
            }
        }
        let down = |x: u8, y: u8| {
            self.nodes[usize::from(x)]
                .down_until
                .get(&y)
                .is_some_and(|t| *t > self.now_ms)
        };
        !down(a, b) && !down(b, a)
    }

    /// When a message sent now from `a` to `b` arrives, if it does.
    fn delivery(&mut self, a: u8, b: u8) -> Option<u64> {
        if !self.linked(a, b) {
            return None;
        }
        if self.now_ms >= self.config.gst_ms {
            return Some(self.now_ms + 1 + self.rng.below(self.config.delta_ms));
        }
        let f = &self.config.faults;
        if self.rng.percent(f.loss_percent) {
            return None;
        }
        let max = f.max_delay_ms.max(self.config.delta_ms);
        Some(self.now_ms + 1 + self.rng.below(max))
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Start { node } => self.start(node),
            Event::Crash { node } => {
                let n = &mut self.nodes[usize::from(node)];
                let was_running = n.host.take().is_some();
                n.epoch += 1;
                if was_running {
                    self.note(format!("crash node{node}"));
                    for other in 0..NODES as u8 {
                        if other != node {
                            self.with_host(other, |h, _| {
                                h.on_disconnected(NodeId(node));
                                Ok(Vec::new())
                            });
                        }
                    }
                }
            }
            Event::Timer { node, epoch, timer } => {
                if self.nodes[usize::from(node)].epoch == epoch {
                    let now = self.now_of(node);
                    self.with_host(node, |h, _| h.on_timer(timer, now));
                }
            }
            Event::Gossip { from, to, bytes } => self.on_gossip(from, to, &bytes),
            Event::Push { to, txs } => {
                let store = self.nodes[usize::from(to)].store.clone();
                let checked = admission::check(
                    txs.as_ref().clone(),
                    &self.chain_id,
                    self.config.suite,
                    self.genesis.consensus.tx_bytes_max as usize,
                    usize::MAX,
                    store.as_ref(),
                );
                let now = self.now_of(to);
                self.with_host(to, |h, _| Ok(h.admit(checked, Origin::Peer, now)?.1));
            }
            Event::SyncRequest { from, to, request } => {
                let n = &self.nodes[usize::from(to)];
                if n.host.is_none() {
                    return; // a crashed node answers nothing; the request times out
                }
                let response = n
                    .adversary
                    .serve_sync(&request)
                    .unwrap_or_else(|| serve_sync(&n.store, &request));
                if let Some(at) = self.delivery(to, from) {
                    self.at(
                        at,
                        Event::SyncResponse {
                            from: to,
                            to: from,
                            response,
                        },
                    );
                }
            }
            Event::BlockRequest { from, to, proposal } => {
                let n = &self.nodes[usize::from(to)];
                let Some(host) = n.host.as_ref().filter(|_| n.adversary.serves_blocks()) else {
                    return; // not answered: the asking node's round times out
                };
                let p = &proposal.proposal;
                let Some(block) = host.proposal_block(p.height, &p.value) else {
                    return;
                };
                // The answer goes through the asking node's edge as a proposal with its
                // block, as the network's does.
                let bytes = codec::encode(&NetMessage::Proposal {
                    proposal: *proposal,
                    block,
                });
                if let Some(at) = self.delivery(to, from) {
                    self.at(
                        at,
                        Event::Gossip {
                            from: to,
                            to: from,
                            bytes: Arc::new(bytes),
                        },
                    );
                }
            }
            Event::SyncResponse { from, to, response } => {
                let now = self.now_of(to);
                let synced = response.blocks.len() as u64;
                let before = self.committed_height(to);
                self.with_host(to, |h, _| h.on_blocks(NodeId(from), response.blocks, now));
                let applied = self.committed_height(to).saturating_sub(before);
                if synced > 0 {
                    self.report.synced_blocks += applied;
                }
            }
            Event::Client => self.client(),
            Event::Reconnect { a, b } => {
                for (x, y) in [(a, b), (b, a)] {
                    self.nodes[usize::from(x)].down_until.remove(&y);
                }
                self.connect(a, b);
            }
            Event::Partition { groups } => {
                self.note(format!("partition {groups:?}"));
                self.groups = Some(groups);
            }
            Event::Heal => {
                self.note("heal".into());
                self.groups = None;
            }
        }
    }

    fn connect(&mut self, a: u8, b: u8) {
        for (x, y) in [(a, b), (b, a)] {
            if self.nodes[usize::from(y)].host.is_some() {
                self.with_host(x, |h, _| {
                    h.on_connected(NodeId(y));
                    Ok(Vec::new())
                });
            }
        }
    }

    fn start(&mut self, node: u8) {
        let n = &self.nodes[usize::from(node)];
        if n.host.is_some() {
            return;
        }
        let engine = Engine::from_configs(&self.genesis.chaincodes).expect("catalog");
        let mempool = Mempool::new(MempoolConfig::default());
        let host = Host::new(
            HostConfig {
                trust: self.genesis.trust_root(),
                consensus: self.genesis.consensus.clone(),
                genesis_time_ms: self.genesis.genesis_time_ms,
                compact_txs_min: 0,
            },
            n.store.clone(),
            engine,
            n.key.clone(),
            mempool,
        );
        match host {
            Ok(host) => self.nodes[usize::from(node)].host = Some(host),
            Err(e) => {
                self.violation(Violation::Fatal {
                    node,
                    error: e.to_string(),
                });
                return;
            }
        }
        self.note(format!(
            "start node{node} at height {}",
            self.committed_height(node)
        ));
        let now = self.now_of(node);
        self.with_host(node, |h, _| h.start(now));
        for other in 0..NODES as u8 {
            if other != node && self.nodes[usize::from(other)].host.is_some() {
                self.connect(node, other);
            }
        }
    }

    /// Calls the host of `node` (if it runs) and performs the effects it returns.
    fn with_host(
        &mut self,
        node: u8,
        call: impl FnOnce(
            &mut Host<NodeId>,
            &KeyPair,
        ) -> Result<Vec<Effect<NodeId>>, crate::host::Fatal>,
    ) {
        let n = &mut self.nodes[usize::from(node)];
        let Some(host) = n.host.as_mut() else {
            return;
        };
        match call(host, &n.key) {
            Ok(effects) => self.perform(node, effects),
            Err(fatal) => {
                self.nodes[usize::from(node)].host = None;
                self.violation(Violation::Fatal {
                    node,
                    error: fatal.to_string(),
                });
            }
        }
    }

    fn perform(&mut self, node: u8, effects: Vec<Effect<NodeId>>) {
        let n = &self.nodes[usize::from(node)];
        let Some(host) = n.host.as_ref() else {
            return;
        };
        let status = host.status();
        let view = NodeView {
            key: &n.key,
            chain_id: self.chain_id,
            suite: self.config.suite,
            height: status.height + 1,
            round: status.round,
        };
        let outgoing: Vec<Outgoing<NodeId>> = effects
            .into_iter()
            .flat_map(|e| n.adversary.outgoing(e, &view))
            .collect();
        let honest = n.honest;
        for out in outgoing {
            match out {
                Outgoing::Raw(bytes) => self.gossip(node, Arc::new(bytes)),
                Outgoing::Effect(effect) => self.effect(node, honest, effect),
            }
        }
    }

    fn effect(&mut self, node: u8, honest: bool, effect: Effect<NodeId>) {
        match effect {
            Effect::Broadcast(message) => {
                if honest {
                    self.record_signed(node, &message);
                }
                self.gossip(node, Arc::new(codec::encode(&message)));
            }
            Effect::PushTxs(txs) => {
                let txs = Arc::new(txs);
                for to in 0..NODES as u8 {
                    if to != node {
                        if let Some(at) = self.delivery(node, to) {
                            self.at(
                                at,
                                Event::Push {
                                    to,
                                    txs: txs.clone(),
                                },
                            );
                        }
                    }
                }
            }
            Effect::RequestBlocks { peer, from } => {
                if let Some(at) = self.delivery(node, peer.0) {
                    let request = SyncRequest {
                        from,
                        max: SYNC_BLOCKS_MAX,
                    };
                    self.at(
                        at,
                        Event::SyncRequest {
                            from: node,
                            to: peer.0,
                            request,
                        },
                    );
                }
            }
            Effect::FetchBlock { peer, proposal } => {
                if let Some(at) = self.delivery(node, peer.0) {
                    self.at(
                        at,
                        Event::BlockRequest {
                            from: node,
                            to: peer.0,
                            proposal,
                        },
                    );
                }
            }
            Effect::Disconnect { peer, reason } => self.disconnect(node, peer.0, reason),
            Effect::SetTimer { timer, after_ms } => {
                let epoch = self.nodes[usize::from(node)].epoch;
                self.at(self.now_ms + after_ms, Event::Timer { node, epoch, timer });
            }
            Effect::Committed(c) => {
                self.report.txs_committed += c.txs as u64;
                self.note(format!("node{node} committed {} ({} txs)", c.height, c.txs));
                self.check_agreement(node, c.height, c.hash);
            }
            Effect::Evidence(e) => {
                self.report.evidence += 1;
                let offender = self
                    .nodes
                    .iter()
                    .position(|n| n.key.public() == e.offender());
                if let Some(i) = offender.filter(|i| self.nodes[*i].honest) {
                    self.violation(Violation::Framed {
                        victim: i as u8,
                        by: node,
                        why: "equivocation evidence against an honest validator".into(),
                    });
                }
            }
        }
    }

    fn disconnect(&mut self, node: u8, peer: u8, reason: String) {
        if self.nodes[usize::from(peer)].honest && self.nodes[usize::from(node)].honest {
            self.violation(Violation::Framed {
                victim: peer,
                by: node,
                why: reason.clone(),
            });
        } else {
            self.report.disconnects_of_byzantine += 1;
        }
        self.note(format!("node{node} drops node{peer}: {reason}"));
        let back = self.now_ms + 1_000;
        self.nodes[usize::from(node)].down_until.insert(peer, back);
        for (x, y) in [(node, peer), (peer, node)] {
            self.with_host(x, |h, _| {
                h.on_disconnected(NodeId(y));
                Ok(Vec::new())
            });
        }
        self.at(back, Event::Reconnect { a: node, b: peer });
    }

    fn gossip(&mut self, from: u8, bytes: Arc<Vec<u8>>) {
        for to in 0..NODES as u8 {
            if to != from {
                if let Some(at) = self.delivery(from, to) {
                    self.at(
                        at,
                        Event::Gossip {
                            from,
                            to,
                            bytes: bytes.clone(),
                        },
                    );
                }
            }
        }
    }

    fn on_gossip(&mut self, from: u8, to: u8, bytes: &[u8]) {
        if self.nodes[usize::from(to)].host.is_none() || !self.linked(from, to) {
            return;
        }
        match wire::inbound(bytes, &self.chain_id, self.config.suite) {
            Ok(inbound) => {
                let now = self.now_of(to);
                self.with_host(to, |h, _| h.on_inbound(NodeId(from), inbound, now));
            }
            Err(fault) => {
                if self.nodes[usize::from(from)].honest {
                    self.violation(Violation::BadBytesFromHonest {
                        node: from,
                        fault: fault.to_string(),
                    });
                }
                // The network edge drops the peer that delivered them.
                self.disconnect(to, from, fault.to_string());
            }
        }
    }

    /// Records an honest validator's signed messages; a second, different message for
    /// the same height, round and step is a double signature.
    fn record_signed(&mut self, node: u8, message: &NetMessage) {
        let signed = match message {
            NetMessage::Proposal { proposal, .. }
            | NetMessage::CompactProposal { proposal, .. } => Message::Proposal(proposal.clone()),
            NetMessage::Consensus(m) => m.clone(),
            NetMessage::Status { .. } => return,
        };
        if signed.sender() != self.nodes[usize::from(node)].key.public() {
            return; // relayed, not signed here
        }
        let step = match &signed {
            Message::Proposal(_) => 0,
            Message::Vote(v) => 1 + v.vote.kind as u8,
        };
        let content = match &signed {
            Message::Proposal(p) => codec::encode(&p.proposal),
            Message::Vote(v) => codec::encode(&v.vote),
        };
        let key = (node, signed.height(), signed.round(), step);
        match self.signed.get(&key) {
            Some(first) if *first != content => self.violation(Violation::DoubleSign {
                node,
                what: format!("{key:?}"),
            }),
            Some(_) => {}
            None => {
                self.signed.insert(key, content);
            }
        }
    }

    fn check_agreement(&mut self, node: u8, height: u64, hash: Hash) {
        if !self.nodes[usize::from(node)].honest {
            return;
        }
        for other in self.honest().collect::<Vec<_>>() {
            if other == node {
                continue;
            }
            let theirs = self.nodes[usize::from(other)]
                .store
                .header(height)
                .ok()
                .flatten()
                .map(|h| h.hash(self.config.suite));
            if theirs.is_some_and(|h| h != hash) {
                self.violation(Violation::Agreement {
                    height,
                    nodes: (node, other),
                });
            }
        }
    }

    /// The workload: commerce files a manufacturer, which then records goods, one new
    /// good per event, sent to a random running honest node; the client resends what a
    /// crash or loss lost (its nonce is the committed one, so nothing is skipped).
    fn client(&mut self) {
        let next = self.now_ms + 40 + self.rng.below(60);
        if self.now_ms < self.deadline_ms() {
            self.at(next, Event::Client);
        }
        let live: Vec<u8> = self
            .honest()
            .filter(|i| self.nodes[usize::from(*i)].host.is_some())
            .collect();
        if live.is_empty() {
            return;
        }
        let node = live[self.rng.below(live.len() as u64) as usize];
        let store = self.nodes[usize::from(node)].store.clone();
        let filed = store
            .state_value(
                cbec_chaincode::layout::enterprise_key(&self.manufacturer.public().to_hex())
                    .as_bytes(),
            )
            .ok()
            .flatten()
            .is_some();
        let tx = if !filed {
            let nonce = crate::host::next_nonce(&store, &self.commerce.public()).unwrap_or(0);
            let args = args_from_json(
                "enterprise",
                "approve_filing",
                serde_json::json!({"uscc": USCC, "name": "Sim Foods", "roles": ["manufacturer"],
                    "keys": [self.manufacturer.public()], "customs_code": "1402960002"}),
            )
            .expect("filing args");
            sign(
                &self.commerce,
                self.chain_id,
                nonce,
                "enterprise",
                "approve_filing",
                args,
            )
        } else {
            let committed =
                crate::host::next_nonce(&store, &self.manufacturer.public()).unwrap_or(0);
            self.goods += 1;
            let nonce = committed + self.rng.below(3); // a little ahead sometimes
            let args = args_from_json(
                "goods",
                "record",
                serde_json::json!({"goods_id": format!("G-{}-{nonce}", self.config.seed), "kind": "produced"}),
            )
            .expect("goods args");
            sign(
                &self.manufacturer,
                self.chain_id,
                nonce,
                "goods",
                "record",
                args,
            )
        };
        let checked = admission::check(
            vec![tx],
            &self.chain_id,
            self.config.suite,
            self.genesis.consensus.tx_bytes_max as usize,
            usize::MAX,
            store.as_ref(),
        );
        let now = self.now_of(node);
        self.with_host(node, |h, _| Ok(h.admit(checked, Origin::Client, now)?.1));
    }

    /// The end: every honest node reached the target, and its store checks.
    fn finish(&mut self) {
        let target = self.config.heights;
        let honest: Vec<u8> = self.honest().collect();
        for &i in &honest {
            let height = self.committed_height(i);
            if height < target {
                self.violation(Violation::Progress {
                    node: i,
                    height,
                    detail: format!(
                        "committed {height} of {target} by {} ms (running: {})",
                        self.now_ms,
                        self.nodes[usize::from(i)].host.is_some()
                    ),
                });
            }
            if let Err(e) = self.nodes[usize::from(i)].store.check(1_000) {
                self.violation(Violation::Validity {
                    node: i,
                    problem: e.to_string(),
                });
            }
        }
        let common = honest
            .iter()
            .map(|i| self.committed_height(*i))
            .min()
            .unwrap_or(0);
        for h in 1..=common {
            let hashes: BTreeSet<Hash> = honest
                .iter()
                .filter_map(|i| self.nodes[usize::from(*i)].store.header(h).ok().flatten())
                .map(|header| header.hash(self.config.suite))
                .collect();
            if hashes.len() > 1 {
                self.violation(Violation::Agreement {
                    height: h,
                    nodes: (honest[0], honest[1]),
                });
            }
        }
        self.report.committed = common;
    }
}

/// A signed transaction of `key` at `nonce`.
pub fn sign(
    key: &KeyPair,
    chain_id: Hash,
    nonce: u64,
    chaincode: &str,
    method: &str,
    args: Vec<u8>,
) -> Transaction {
    Transaction::sign(
        TxBody {
            chain_id,
            sender: key.public(),
            nonce,
            call: Call {
                chaincode: chaincode.into(),
                method: method.into(),
                args,
            },
        },
        key,
    )
}
