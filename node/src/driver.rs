//! The driver: runs the [`Host`] on its own thread and performs its effects. This is the
//! only place that reads the clock for the host and that turns its effects into network
//! commands, timers and notifications.
//!
//! Events reach the host on two bounded queues: `control` (consensus messages, sync,
//! queries) and `admit` (transactions through admission). Control events always go
//! first, so a flood of submissions cannot delay a vote. Senders never wait: a full
//! queue refuses (the API answers 503, the network drops and counts; consensus
//! rebroadcasts what was lost).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cbec_ledger::{Block, CommitCertificate, Hash, KeyPair, PublicKey, Transaction};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use crate::admission::Rejection;
use crate::host::{Effect, Fatal, Host, Now, Origin, Timer};
use crate::mempool::{Checked, Reservation};
use crate::network::NetCommand;
use crate::seam::{Adversary, NodeView, Outgoing};
use crate::shared::Shared;
use crate::timeline::HeightTimeline;
use crate::wire::{Inbound, NetMessage};

/// Events queued for the host, beyond which senders are refused.
pub const CONTROL_QUEUE: usize = 8_192;
pub const ADMIT_QUEUE: usize = 256;

/// What the network and the API send the host.
#[derive(Debug)]
pub enum Event {
    Inbound {
        from: PeerId,
        inbound: Inbound,
    },
    Blocks {
        peer: PeerId,
        blocks: Vec<(Block, CommitCertificate)>,
    },
    SyncFailed {
        peer: PeerId,
    },
    Connected(PeerId),
    Disconnected(PeerId),
    Admit {
        checked: Vec<Checked>,
        /// The mempool room admission reserved for the batch, given back once admitted.
        reserved: Reservation,
        origin: Origin,
        reply: Option<oneshot::Sender<Vec<Result<Hash, Rejection>>>>,
    },
    /// Peers' pushes the node had no room or time to check, with the ids the network
    /// computed and their sizes: kept for compact blocks.
    Unchecked {
        txs: Vec<(Hash, Transaction, usize)>,
    },
    NextNonce {
        key: PublicKey,
        reply: oneshot::Sender<u64>,
    },
    IsPending {
        hash: Hash,
        reply: oneshot::Sender<bool>,
    },
    /// A peer asks for the block of a proposal at this height (it could not put the
    /// compact one together).
    ProposalBlock {
        height: u64,
        hash: Hash,
        reply: oneshot::Sender<Option<Arc<Block>>>,
    },
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The host is behind: retry later.
    Full,
    /// The host has stopped.
    Stopped,
}

/// The senders of the host's queues.
#[derive(Debug, Clone)]
pub struct HostHandle {
    control: Sender<Event>,
    admit: Sender<Event>,
}

impl HostHandle {
    /// Queues an event; admissions go on their own queue, behind control events.
    pub fn send(&self, event: Event) -> Result<(), QueueError> {
        let queue = match event {
            Event::Admit { .. } | Event::Unchecked { .. } => &self.admit,
            _ => &self.control,
        };
        queue.try_send(event).map_err(|e| match e {
            TrySendError::Full(_) => QueueError::Full,
            TrySendError::Disconnected(_) => QueueError::Stopped,
        })
    }
}

/// The receiving ends, for the host thread.
#[derive(Debug)]
pub struct HostQueues {
    control: Receiver<Event>,
    admit: Receiver<Event>,
}

pub fn queues() -> (HostHandle, HostQueues) {
    let (control_tx, control_rx) = crossbeam_channel::bounded(CONTROL_QUEUE);
    let (admit_tx, admit_rx) = crossbeam_channel::bounded(ADMIT_QUEUE);
    (
        HostHandle {
            control: control_tx,
            admit: admit_tx,
        },
        HostQueues {
            control: control_rx,
            admit: admit_rx,
        },
    )
}

/// The clocks the host is given: wall time, and a monotonic clock from the start.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            wall_ms,
            mono_ms: self.start.elapsed().as_millis() as u64,
        }
    }
}

/// One step of the host (an event or a timer) this long is logged as a warning: while
/// it runs the node handles nothing else, its votes included.
pub const SLOW_STEP: Duration = Duration::from_secs(1);

fn warn_if_slow(what: impl FnOnce() -> String, took: Duration) {
    if took >= SLOW_STEP {
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            "the host spent this long on one step ({}); nothing else ran meanwhile",
            what()
        );
    }
}

/// What an event is, for a log line.
fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::Inbound { inbound, .. } => match inbound {
            Inbound::Status { .. } => "a peer's status",
            Inbound::Proposal { .. } | Inbound::CompactProposal { .. } => "a proposal",
            Inbound::Vote(_) => "a vote",
        },
        Event::Blocks { .. } => "synced blocks",
        Event::SyncFailed { .. } => "a failed sync request",
        Event::Connected(_) | Event::Disconnected(_) => "a peer's connection",
        Event::Admit { .. } => "admitting transactions",
        Event::Unchecked { .. } => "keeping unchecked pushes",
        Event::NextNonce { .. } | Event::IsPending { .. } | Event::ProposalBlock { .. } => {
            "a query"
        }
    }
}

/// Runs `host` until `stop` is set or a queue's senders are all gone. Returns the fatal
/// error that stopped it, if one did.
pub struct Driver {
    pub host: Host<PeerId>,
    pub shared: Arc<Shared>,
    pub net: mpsc::Sender<NetCommand>,
    pub adversary: Arc<dyn Adversary<PeerId>>,
    /// The validator key, for the adversary's view (the host keeps its own).
    pub key: KeyPair,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Driver {
    pub fn run(&mut self, queues: HostQueues, stop: Arc<AtomicBool>) -> Result<(), Fatal> {
        let clock = Clock {
            start: Instant::now(),
        };
        // Deadlines (monotonic ms, then a sequence number for ties) of the timers set.
        let mut timers: BTreeMap<(u64, u64), Timer> = BTreeMap::new();
        let mut seq = 0u64;
        let mut timeline = HeightTimeline::new(Instant::now());
        let effects = self.host.start(clock.now())?;
        self.perform(effects, &clock, &mut timers, &mut seq, &mut timeline);
        while !stop.load(Ordering::Relaxed) {
            let now = clock.now();
            let due: Vec<(u64, u64)> = timers
                .range(..=(now.mono_ms, u64::MAX))
                .map(|(k, _)| *k)
                .collect();
            for key in due {
                if let Some(timer) = timers.remove(&key) {
                    let began = Instant::now();
                    let effects = self.host.on_timer(timer, clock.now())?;
                    timeline.busy(began.elapsed());
                    warn_if_slow(|| format!("timer {timer:?}"), began.elapsed());
                    self.perform(effects, &clock, &mut timers, &mut seq, &mut timeline);
                }
            }
            let wait = timers
                .keys()
                .next()
                .map(|(at, _)| at.saturating_sub(clock.now().mono_ms))
                .unwrap_or(100)
                .min(100);
            // Control first; an admission only when no control event waits.
            let event = match queues.control.try_recv() {
                Ok(event) => Some(event),
                Err(_) => crossbeam_channel::select_biased! {
                    recv(queues.control) -> e => e.ok(),
                    recv(queues.admit) -> e => e.ok(),
                    default(Duration::from_millis(wait)) => None,
                },
            };
            if let Some(event) = event {
                self.on_event(event, &clock, &mut timers, &mut seq, &mut timeline)?;
            }
            self.publish_status();
        }
        Ok(())
    }

    fn on_event(
        &mut self,
        event: Event,
        clock: &Clock,
        timers: &mut BTreeMap<(u64, u64), Timer>,
        seq: &mut u64,
        timeline: &mut HeightTimeline,
    ) -> Result<(), Fatal> {
        let now = clock.now();
        let began = Instant::now();
        if let Event::Inbound {
            inbound: Inbound::Proposal { block: Some(_), .. } | Inbound::CompactProposal { .. },
            ..
        } = &event
        {
            timeline.proposal(began, false);
        }
        let kind = event_kind(&event);
        let effects = match event {
            Event::Inbound { from, inbound } => self.host.on_inbound(from, inbound, now)?,
            Event::Blocks { peer, blocks } => self.host.on_blocks(peer, blocks, now)?,
            Event::SyncFailed { peer } => {
                self.host.on_sync_failed(peer, now);
                Vec::new()
            }
            Event::Connected(peer) => {
                self.host.on_connected(peer);
                Vec::new()
            }
            Event::Disconnected(peer) => {
                self.host.on_disconnected(peer);
                Vec::new()
            }
            Event::Admit {
                checked,
                reserved,
                origin,
                reply,
            } => {
                let senders: Vec<Option<PublicKey>> = checked
                    .iter()
                    .map(|c| c.as_ref().ok().map(|(tx, _)| tx.body().sender))
                    .collect();
                let passed: Vec<bool> = senders.iter().map(Option::is_some).collect();
                let (answers, effects) = self.host.admit(checked, origin, now)?;
                drop(reserved);
                self.shared
                    .metrics
                    .refused_after_check(&passed, &answers, origin);
                // Later transactions past the gap are refused before their checks.
                let gaps = senders.iter().zip(&answers).filter_map(gap_shown);
                self.shared.admission.note_gaps(gaps);
                if let Some(reply) = reply {
                    let _ = reply.send(answers);
                }
                effects
            }
            Event::Unchecked { txs } => self.host.keep_unchecked(txs, now)?,
            Event::NextNonce { key, reply } => {
                let _ = reply.send(self.host.next_nonce(&key)?);
                Vec::new()
            }
            Event::IsPending { hash, reply } => {
                let _ = reply.send(self.host.is_pending(&hash));
                Vec::new()
            }
            Event::ProposalBlock {
                height,
                hash,
                reply,
            } => {
                let _ = reply.send(self.host.proposal_block(height, &hash));
                Vec::new()
            }
        };
        timeline.busy(began.elapsed());
        warn_if_slow(|| kind.to_string(), began.elapsed());
        self.perform(effects, clock, timers, seq, timeline);
        Ok(())
    }

    fn perform(
        &mut self,
        effects: Vec<Effect<PeerId>>,
        clock: &Clock,
        timers: &mut BTreeMap<(u64, u64), Timer>,
        seq: &mut u64,
        timeline: &mut HeightTimeline,
    ) {
        let at = Instant::now();
        for effect in &effects {
            match effect {
                Effect::Broadcast(
                    NetMessage::Proposal { .. } | NetMessage::CompactProposal { .. },
                ) => timeline.proposal(at, true),
                Effect::Broadcast(NetMessage::Consensus(cbec_consensus::Message::Vote(v))) => {
                    timeline.vote(v.vote.kind, at)
                }
                Effect::Committed(c) => {
                    let times = timeline.finish(at);
                    tracing::debug!(height = c.height, txs = c.txs, "height took: {times}");
                }
                _ => {}
            }
        }
        let status = self.host.status();
        let view = NodeView {
            key: &self.key,
            chain_id: self.shared.chain_id,
            suite: self.shared.store.suite(),
            height: status.height + 1,
            round: status.round,
        };
        let outgoing: Vec<Outgoing<PeerId>> = effects
            .into_iter()
            .flat_map(|e| self.adversary.outgoing(e, &view))
            .collect();
        for out in outgoing {
            let effect = match out {
                Outgoing::Raw(bytes) => {
                    self.send_net(NetCommand::PublishRaw(bytes));
                    continue;
                }
                Outgoing::Effect(effect) => effect,
            };
            match effect {
                Effect::Broadcast(message) => self.send_net(NetCommand::Publish(message)),
                Effect::PushTxs(txs) => self.send_net(NetCommand::PushTxs(txs)),
                Effect::RequestBlocks { peer, from } => {
                    self.send_net(NetCommand::RequestBlocks { peer, from })
                }
                Effect::FetchBlock { peer, proposal } => {
                    self.send_net(NetCommand::FetchBlock { peer, proposal })
                }
                Effect::Disconnect { peer, reason } => {
                    tracing::warn!(%peer, "disconnecting: {reason}");
                    self.shared.metrics.bad_peer_messages.inc();
                    self.send_net(NetCommand::Disconnect(peer));
                }
                Effect::SetTimer { timer, after_ms } => {
                    *seq += 1;
                    timers.insert((clock.now().mono_ms + after_ms, *seq), timer);
                }
                // Clients learn of a commit (metrics, the event stream, `?wait=true`)
                // once its block is on disk.
                Effect::Committed(committed) => {
                    let shared = self.shared.clone();
                    self.shared
                        .store
                        .when_persisted(committed.height, move || shared.on_commit(&committed));
                }
                Effect::Evidence(_) => {
                    self.shared.metrics.equivocations.inc();
                }
            }
        }
    }

    /// Gossip and pushes never wait for the network task: if it is behind, the message
    /// is dropped and counted (consensus rebroadcasts; peers sync).
    fn send_net(&self, command: NetCommand) {
        if self.net.try_send(command).is_err() {
            self.shared.metrics.dropped_net_commands.inc();
        }
    }

    fn publish_status(&self) {
        let status = self.host.status();
        self.shared.update_status(|s| {
            s.height = status.height;
            s.round = status.round;
            s.peers = status.peers;
            s.syncing = status.syncing;
            s.mempool_txs = status.mempool_txs;
            s.mempool_bytes = status.mempool_bytes;
        });
        let m = &self.shared.metrics;
        m.round.set(i64::from(status.round));
        m.peers.set(status.peers as i64);
        m.mempool_txs.set(status.mempool_txs as i64);
        m.block_txs_max.set(status.block_txs_max as i64);
        let kept = &m.mempool_kept_hits;
        kept.inc_by(status.mempool_kept_hits.saturating_sub(kept.get()));
        m.mempool_kept.set(status.mempool_kept as i64);
        m.mempool_unchecked.set(status.mempool_unchecked as i64);
        let filled = &m.compact_filled;
        filled.inc_by(status.compact_filled.saturating_sub(filled.get()));
        let waited = &m.compact_waited;
        waited.inc_by(status.compact_waited.saturating_sub(waited.get()));
        let fetched = &m.compact_fetched;
        fetched.inc_by(status.compact_fetched.saturating_sub(fetched.get()));
    }
}

/// The gap in its sender's nonces that the mempool's answer to a checked transaction
/// showed: `(sender, expected)` for a `nonce_gap` refusal.
fn gap_shown(
    (sender, answer): (&Option<PublicKey>, &Result<Hash, Rejection>),
) -> Option<(PublicKey, u64)> {
    match (sender, answer) {
        (Some(sender), Err(Rejection::NonceGap { expected, .. })) => Some((*sender, *expected)),
        _ => None,
    }
}
