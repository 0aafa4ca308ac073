//! The network stage: libp2p over TCP with Noise and Yamux. Transport only: it moves
//! bytes, hands what passes the [`crate::wire`] edge to the host, and penalises the
//! connection that delivered a bad message.
//!
//! - Only the peer ids named in genesis may connect (`allow_block_list`); anyone else is
//!   refused at the connection (logged, rate-limited).
//! - Consensus messages and proposals with their blocks travel on gossipsub, every
//!   validator meshed with every other (see [`gossip_config`]), unsigned at
//!   the gossip layer (connections are authenticated genesis peers; what consensus acts
//!   on is signed by validator keys and checked at the edge). Message ids are content
//!   hashes, so nobody can pre-empt a message by claiming its id. A message is relayed
//!   only after it passed the edge, so a bad one comes from the peer that delivered it:
//!   that peer is disconnected, never the author a message claims.
//! - Status (a peer's height) is not relayed: each node hears it from the peer itself,
//!   so a claim is always attributed to the connection that made it.
//! - Transactions are pushed to each peer on one long-lived stream of their own
//!   ([`TX_PUSH_PROTOCOL`]), with at most a few pushes queued per peer, so they never
//!   crowd out consensus; a frame that is not a batch of transactions disconnects the
//!   peer that sent it.
//! - Block sync is a request-response protocol with bounded frames; requests are served
//!   on a blocking thread, never on the swarm task.
//! - Nothing here waits on the host: its queues refuse when full, and the message is
//!   dropped and counted (consensus rebroadcasts).
//! - A connected peer that has gossiped nothing for [`GOSSIP_SILENCE_MAX`] (every node
//!   gossips its height every second) is disconnected and redialled: a connection can
//!   stay up while its gossip stream carries nothing (as links did when peers refused
//!   oversized IHAVE gossip, see [`gossip_config`]), and a fresh connection starts
//!   fresh streams.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bincode::{Decode, Encode};
use cbec_ledger::{codec, Suite, Transaction};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode,
};
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use tokio::sync::mpsc;

use crate::driver::{Event, QueueError};
use crate::host::Origin;
use crate::seam::Adversary;
use crate::shared::Shared;
use crate::store::Store;
use crate::wire::{
    self, BlockRequest, BlockResponse, Inbound, NetMessage, SyncRequest, SyncResponse, TxBatch,
    FRAME_BYTES_MAX, SYNC_BLOCKS_MAX,
};

/// Length-prefixed canonical frames, bounded in size, for a request-response protocol.
pub struct FrameCodec<Req, Res>(std::marker::PhantomData<fn() -> (Req, Res)>);

impl<Req, Res> Default for FrameCodec<Req, Res> {
    fn default() -> Self {
        FrameCodec(std::marker::PhantomData)
    }
}

impl<Req, Res> Clone for FrameCodec<Req, Res> {
    fn clone(&self) -> Self {
        FrameCodec::default()
    }
}

impl<Req, Res> std::fmt::Debug for FrameCodec<Req, Res> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCodec")
    }
}

/// Block sync: a height range asked, blocks with certificates answered.
pub type SyncCodec = FrameCodec<SyncRequest, SyncResponse>;

/// Transactions pushed to a peer travel on one long-lived stream to it, as frames of
/// [`TxBatch`] (a `u32` length, big endian, then the batch's canonical encoding): a
/// stream of their own, so a flood of transactions cannot queue ahead of consensus
/// messages. A sender whose queue to a peer is full ([`TX_PUSHES_QUEUED_MAX`], the
/// peer not reading) skips it: the transactions stay in its own mempool. Each push
/// used to open a stream of its own, acknowledged and closed (`/cbec/txs/1`): opening,
/// negotiating, timing and closing those streams was a quarter of a node's CPU at
/// 1,000 tx/s.
pub const TX_PUSH_PROTOCOL: StreamProtocol = StreamProtocol::new("/cbec/txs/2");

/// A proposal's whole block, asked of a peer after its compact form could not be put
/// together (see [`wire::NetMessage::CompactProposal`]). Answered by the host, which holds
/// the blocks of the current height.
pub type BlockCodec = FrameCodec<BlockRequest, BlockResponse>;

/// Peers' block requests the host may be asked about at once; beyond that a request is
/// answered "not held" at once, so a peer cannot fill the host's queue with them.
pub const BLOCK_REQUESTS_SERVED_MAX: usize = 4;

/// How long a block request waits for the host's answer before it is answered "not held".
const BLOCK_SERVE_WAIT: Duration = Duration::from_secs(2);

/// Pushes from peers that may wait for this node's signature-checking slot.
pub const TX_PUSHES_WAITING_MAX: usize = 16;

/// Pushes kept unchecked (see [`Net::keep_unchecked`]) being hashed at once.
pub const UNCHECKED_PUSHES_MAX: usize = 8;

/// Pushes queued for one peer's stream beyond which new transactions are not pushed to
/// it.
pub const TX_PUSHES_QUEUED_MAX: usize = 8;

/// How long admitted transactions wait for others to share a push.
const TX_PUSH_DELAY: Duration = Duration::from_millis(5);

/// Transactions in one push (512 of the largest allowed stay within a frame); a full
/// outbox goes at once.
const TX_PUSH_TXS_MAX: usize = 512;

/// How long a connected peer may gossip nothing before it is disconnected and
/// redialled: thirty of its status messages missed. Well beyond the faults a link
/// recovers from by itself (a cut or a frozen peer for seconds): at 5 s, peers behind a
/// link cut for 3-4 s were disconnected, and their redial, started while the link was
/// still cut, held them apart for longer than the cut (the fault test committed a
/// quarter as much).
pub const GOSSIP_SILENCE_MAX: Duration = Duration::from_millis(30 * crate::host::STATUS_EVERY_MS);

/// Gossip messages at most this large are checked on the swarm task; larger ones
/// (proposals with blocks) on a blocking thread.
const INLINE_CHECK_BYTES_MAX: usize = 64 * 1024;

async fn read_frame<T: futures::AsyncRead + Unpin + Send, M: bincode::Decode<()>>(
    io: &mut T,
) -> std::io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    codec::decode(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Writes one message as the stream's only frame, and closes the stream.
async fn write_frame<T: futures::AsyncWrite + Unpin + Send, M: bincode::Encode>(
    io: &mut T,
    message: &M,
) -> std::io::Result<()> {
    write_frame_bytes(io, &codec::encode(message)).await?;
    io.close().await
}

/// Writes an encoded message as a frame, and flushes it.
async fn write_frame_bytes<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> std::io::Result<()> {
    if bytes.len() > FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

impl<Req, Res> request_response::Codec for FrameCodec<Req, Res>
where
    Req: Encode + Decode<()> + Send + Sync + 'static,
    Res: Encode + Decode<()> + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Res;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Req> {
        read_frame(io).await
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Res> {
        read_frame(io).await
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> std::io::Result<()> {
        write_frame(io, &req).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Res,
    ) -> std::io::Result<()> {
        write_frame(io, &res).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    gossip: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    pushes: libp2p_stream::Behaviour,
    blocks: request_response::Behaviour<BlockCodec>,
}

/// Commands from the node to the network task.
#[derive(Debug)]
pub enum NetCommand {
    Publish(NetMessage),
    /// Bytes gossiped as they are (the Byzantine seam only).
    PublishRaw(Vec<u8>),
    /// Push admitted transactions to every connected peer that is keeping up.
    PushTxs(Vec<Transaction>),
    RequestBlocks {
        peer: PeerId,
        from: u64,
    },
    /// Ask `peer`, then each other connected peer, for the block `proposal` names.
    FetchBlock {
        peer: PeerId,
        proposal: Box<cbec_consensus::SignedProposal>,
    },
    Disconnect(PeerId),
}

const CONSENSUS_TOPIC: &str = "cbec/consensus/1";

/// The network's configuration: who we are, where we listen, who the peers are.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub keypair: identity::Keypair,
    pub listen: Multiaddr,
    /// Genesis peers (excluding ourselves) with their addresses.
    pub peers: Vec<(PeerId, Multiaddr)>,
    pub message_bytes_max: usize,
    /// The chain's suite: gossip message ids are its hash of the message.
    pub suite: Suite,
    /// Keep peers' pushes this node has no room or time to check, unchecked, for
    /// compact proposals (`[network] compact_proposals`); else they are dropped.
    pub keep_unchecked: bool,
}

/// Completions from blocking threads back to the swarm task.
enum Done {
    Checked {
        id: MessageId,
        source: PeerId,
        result: Box<Result<Inbound, wire::EdgeFault>>,
    },
    Served {
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    /// The host's answer to a peer's block request.
    BlockServed {
        channel: ResponseChannel<BlockResponse>,
        response: BlockResponse,
    },
    /// A fetched block through the edge, with the proposal it was asked for.
    Fetched {
        peer: PeerId,
        result: Box<Result<Inbound, wire::EdgeFault>>,
    },
    /// A frame on a peer's push stream that is not a batch of transactions (the stream
    /// is closed).
    BadPush { peer: PeerId, reason: String },
}

/// A block being fetched: for which proposal, and the peers asked so far.
struct Fetch {
    proposal: Box<cbec_consensus::SignedProposal>,
    asked: Vec<PeerId>,
}

/// Builds the swarm and spawns the task that drives it; the task ends when the sender
/// of commands is dropped (or if it fails, which the node's supervisor reports).
pub fn start(
    config: NetConfig,
    shared: Arc<Shared>,
    adversary: Arc<dyn Adversary<PeerId>>,
) -> anyhow::Result<(mpsc::Sender<NetCommand>, tokio::task::JoinHandle<()>)> {
    let mut swarm = build_swarm(&config)?;
    swarm.listen_on(config.listen.clone())?;
    let (command_tx, command_rx) = mpsc::channel(4096);
    let task = tokio::spawn(run(swarm, config, shared, adversary, command_rx));
    Ok((command_tx, task))
}

/// IHAVE gossip carries at most this many message ids: 400 ids of 34 encoded bytes
/// stay within the 16 KiB that gossipsub 0.50 accepts in one frame's control part. Its
/// default (5,000) let a busy node send IHAVEs of 20-60 KiB; the receiving peer took
/// each as a broken stream and closed its side, and links so broken went quiet for
/// good (the stalls in docs/performance.md).
pub const IHAVE_IDS_MAX: usize = 400;

/// The gossip settings of a validator with `peers` genesis peers: every peer in the
/// mesh (`mesh_n_low` = all of them, so a missing one is grafted again at the next
/// heartbeat). With a mesh of one or two, as the defaults formed when peers connected
/// one after another, the others got IHAVE gossip instead of messages.
pub fn gossip_config(
    peers: usize,
    message_bytes_max: usize,
    suite: Suite,
) -> anyhow::Result<gossipsub::Config> {
    let all = peers.max(1);
    gossipsub::ConfigBuilder::default()
        .max_transmit_size(message_bytes_max)
        .validation_mode(ValidationMode::Permissive)
        .validate_messages()
        .message_id_fn(move |message: &gossipsub::Message| {
            MessageId::from(suite.tagged("cbec:gossip", &message.data).0.to_vec())
        })
        .heartbeat_interval(Duration::from_millis(500))
        .mesh_n(all)
        .mesh_n_low(all)
        .mesh_n_high(all)
        .mesh_outbound_min(all / 2)
        .max_control_messages_sent(IHAVE_IDS_MAX)
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))
}

fn build_swarm(config: &NetConfig) -> anyhow::Result<Swarm<Behaviour>> {
    let gossip_config = gossip_config(config.peers.len(), config.message_bytes_max, config.suite)?;
    let peers = config.peers.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let mut allow =
                allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
            for (peer, _) in &peers {
                allow.allow_peer(*peer);
            }
            let gossip = gossipsub::Behaviour::new(
                MessageAuthenticity::Author(key.public().to_peer_id()),
                gossip_config,
            )
            .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            let sync = request_response::Behaviour::new(
                [(StreamProtocol::new("/cbec/sync/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let blocks = request_response::Behaviour::new(
                [(StreamProtocol::new("/cbec/block/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            );
            Ok(Behaviour {
                allow,
                gossip,
                sync,
                pushes: libp2p_stream::Behaviour::new(),
                blocks,
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

/// The swarm task's state.
struct Net {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    adversary: Arc<dyn Adversary<PeerId>>,
    topic: IdentTopic,
    addresses: BTreeMap<PeerId, Multiaddr>,
    backoff: BTreeMap<PeerId, Duration>,
    connected: BTreeMap<PeerId, usize>,
    /// When each connected peer last delivered a gossip message (or connected).
    heard: BTreeMap<PeerId, Instant>,
    /// The queue of each connected peer's push stream (see [`TX_PUSH_PROTOCOL`]).
    pushers: BTreeMap<PeerId, mpsc::Sender<Arc<Vec<u8>>>>,
    /// Opens push streams.
    streams: libp2p_stream::Control,
    /// Block requests sent, by request.
    fetches: BTreeMap<request_response::OutboundRequestId, Fetch>,
    /// Peers' block requests waiting for the host's answer.
    serving: usize,
    redial: mpsc::Sender<PeerId>,
    done: mpsc::UnboundedSender<Done>,
    /// Pushes from peers allowed to wait for the checking slot.
    push_queue: Arc<tokio::sync::Semaphore>,
    /// Unchecked pushes being hashed.
    unchecked_queue: Arc<tokio::sync::Semaphore>,
    keep_unchecked: bool,
    warnings: RateLimited,
    /// The last gossip envelope's sequence number (from the clock at start, so a
    /// restarted node does not repeat its earlier envelopes).
    seq: u64,
}

async fn run(
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    shared: Arc<Shared>,
    adversary: Arc<dyn Adversary<PeerId>>,
    mut commands: mpsc::Receiver<NetCommand>,
) {
    let (redial_tx, mut redial_rx) = mpsc::channel::<PeerId>(64);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let (pushed_tx, mut pushed_rx) = mpsc::channel::<(PeerId, TxBatch)>(TX_PUSHES_WAITING_MAX);
    let mut streams = swarm.behaviour().pushes.new_control();
    match streams.accept(TX_PUSH_PROTOCOL) {
        Ok(incoming) => {
            tokio::spawn(receive_pushes(incoming, pushed_tx, done_tx.clone()));
        }
        // Registered here only, once.
        Err(e) => tracing::error!("cannot accept transaction pushes: {e}"),
    }
    let mut net = Net {
        swarm,
        shared,
        adversary,
        topic: IdentTopic::new(CONSENSUS_TOPIC),
        addresses: config.peers.iter().cloned().collect(),
        backoff: BTreeMap::new(),
        connected: BTreeMap::new(),
        heard: BTreeMap::new(),
        pushers: BTreeMap::new(),
        streams,
        fetches: BTreeMap::new(),
        serving: 0,
        redial: redial_tx,
        done: done_tx,
        push_queue: Arc::new(tokio::sync::Semaphore::new(TX_PUSHES_WAITING_MAX)),
        unchecked_queue: Arc::new(tokio::sync::Semaphore::new(UNCHECKED_PUSHES_MAX)),
        keep_unchecked: config.keep_unchecked,
        warnings: RateLimited::default(),
        seq: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    if let Err(e) = net.swarm.behaviour_mut().gossip.subscribe(&net.topic) {
        tracing::error!("cannot subscribe to {}: {e}", net.topic);
    }
    let peers: Vec<PeerId> = net.addresses.keys().copied().collect();
    for peer in peers {
        net.dial(peer);
    }
    // Admitted transactions wait up to TX_PUSH_DELAY to travel together: one push per
    // peer for many small API batches, instead of a stream each.
    let mut outbox: Vec<Transaction> = Vec::new();
    let mut push_due: Option<tokio::time::Instant> = None;
    let mut silence = tokio::time::interval(GOSSIP_SILENCE_MAX / 5);
    silence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = silence.tick() => net.drop_silent_peers(Instant::now()),
            _ = tokio::time::sleep_until(push_due.unwrap_or_else(tokio::time::Instant::now)), if push_due.is_some() => {
                net.push(std::mem::take(&mut outbox));
                push_due = None;
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    NetCommand::Publish(message) => net.publish(codec::encode(&message)),
                    NetCommand::PublishRaw(bytes) => net.publish(bytes),
                    NetCommand::PushTxs(txs) => {
                        outbox.extend(txs);
                        if outbox.len() >= TX_PUSH_TXS_MAX {
                            net.push(std::mem::take(&mut outbox));
                            push_due = None;
                        } else if push_due.is_none() {
                            push_due = Some(tokio::time::Instant::now() + TX_PUSH_DELAY);
                        }
                    }
                    NetCommand::RequestBlocks { peer, from } => {
                        net.swarm.behaviour_mut().sync.send_request(&peer, SyncRequest { from, max: SYNC_BLOCKS_MAX });
                    }
                    NetCommand::FetchBlock { peer, proposal } => net.fetch(Fetch { proposal, asked: Vec::new() }, peer),
                    NetCommand::Disconnect(peer) => {
                        let _ = net.swarm.disconnect_peer_id(peer);
                    }
                }
            }
            Some(done) = done_rx.recv() => net.on_done(done),
            Some((peer, batch)) = pushed_rx.recv() => net.on_pushed(peer, batch.0),
            Some(peer) = redial_rx.recv() => {
                if !net.connected.contains_key(&peer) {
                    net.dial(peer);
                }
            }
            event = net.swarm.select_next_some() => net.on_swarm_event(event),
        }
    }
}

impl Net {
    /// Disconnects every peer that has gossiped nothing for [`GOSSIP_SILENCE_MAX`]; the
    /// closed connection is redialled like any other.
    fn drop_silent_peers(&mut self, now: Instant) {
        let silent: Vec<(PeerId, Duration)> = self
            .heard
            .iter()
            .map(|(peer, at)| (*peer, now.saturating_duration_since(*at)))
            .filter(|(_, quiet)| *quiet >= GOSSIP_SILENCE_MAX)
            .collect();
        for (peer, quiet) in silent {
            tracing::warn!(
                %peer,
                silent_ms = quiet.as_millis() as u64,
                "heard no gossip from this peer for too long; disconnecting to redial it"
            );
            self.shared.metrics.silent_peer_disconnects.inc();
            // Not again before the connection has had as long to show it works.
            self.heard.insert(peer, now);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn publish(&mut self, bytes: Vec<u8>) {
        self.seq = self.seq.wrapping_add(1);
        let data = wire::envelope(self.seq, &bytes);
        // With no peer connected yet publishing fails; consensus rebroadcasts.
        if self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(self.topic.clone(), data)
            .is_err()
        {
            self.shared.metrics.dropped_net_commands.inc();
        }
    }

    /// Hands an event to the host; a full queue drops it (counted).
    fn to_host(&self, event: Event) {
        if let Err(QueueError::Full) = self.shared.host.send(event) {
            self.shared.metrics.dropped_inbound.inc();
        }
    }

    /// Pushes `txs` to every connected peer that is keeping up, encoded once for all.
    fn push(&mut self, txs: Vec<Transaction>) {
        if txs.is_empty() {
            return;
        }
        let frame = Arc::new(codec::encode(&TxBatch(txs)));
        let peers: Vec<PeerId> = self.connected.keys().copied().collect();
        for peer in peers {
            let streams = &self.streams;
            let pusher = self
                .pushers
                .entry(peer)
                .or_insert_with(|| spawn_pusher(streams.clone(), peer));
            // Full: the peer is not reading; it is skipped.
            if let Err(mpsc::error::TrySendError::Closed(frame)) = pusher.try_send(frame.clone()) {
                // The stream failed (it ends its task): a new one, from this push on.
                let pusher = spawn_pusher(self.streams.clone(), peer);
                let _ = pusher.try_send(frame);
                self.pushers.insert(peer, pusher);
            }
        }
    }

    fn dial(&mut self, peer: PeerId) {
        if let Some(address) = self.addresses.get(&peer) {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![address.clone()])
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "dial failed: {e}");
            }
        }
    }

    fn schedule_redial(&mut self, peer: PeerId) {
        if !self.addresses.contains_key(&peer) {
            return;
        }
        let wait = self
            .backoff
            .get(&peer)
            .copied()
            .unwrap_or(Duration::from_millis(250));
        self.backoff
            .insert(peer, (wait * 2).min(Duration::from_secs(10)));
        let redial = self.redial.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = redial.send(peer).await;
        });
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Checked { id, source, result } => self.judged(id, source, *result),
            Done::Served { channel, response } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Done::BlockServed { channel, response } => {
                self.serving = self.serving.saturating_sub(1);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .blocks
                    .send_response(channel, response);
            }
            Done::BadPush { peer, reason } => {
                self.warnings.warn(
                    "bad push",
                    format_args!("{reason}; disconnecting {peer}, the peer that pushed it"),
                );
                self.shared.metrics.bad_peer_messages.inc();
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Done::Fetched { peer, result } => match *result {
                Ok(inbound) => self.to_host(Event::Inbound {
                    from: peer,
                    inbound,
                }),
                Err(fault) => {
                    self.warnings.warn(
                        "bad block",
                        format_args!("{fault}; disconnecting {peer}, the peer that served it"),
                    );
                    self.shared.metrics.bad_peer_messages.inc();
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            },
        }
    }

    /// Asks `peer` for a proposal's block; if it is not connected (or was asked), the
    /// next connected peer not asked yet. Gives up once every peer was asked: the round
    /// times out, and the proposal's next rebroadcast asks again.
    fn fetch(&mut self, mut fetch: Fetch, peer: PeerId) {
        let next = Some(peer)
            .filter(|p| self.connected.contains_key(p) && !fetch.asked.contains(p))
            .or_else(|| {
                self.connected
                    .keys()
                    .find(|p| !fetch.asked.contains(p))
                    .copied()
            });
        let Some(peer) = next else {
            tracing::debug!(
                height = fetch.proposal.proposal.height,
                round = fetch.proposal.proposal.round,
                "no peer had the proposal's block"
            );
            return;
        };
        fetch.asked.push(peer);
        let p = &fetch.proposal.proposal;
        let request = BlockRequest {
            height: p.height,
            hash: p.value,
        };
        let id = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_request(&peer, request);
        self.fetches.insert(id, fetch);
    }

    /// A peer's block request (answered by the host, bounded), or the answer to ours
    /// (checked at the edge on a blocking thread, else the next peer is asked).
    fn on_block_request(&mut self, event: request_response::Event<BlockRequest, BlockResponse>) {
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let asked = self.adversary.serves_blocks()
                    && self.serving < BLOCK_REQUESTS_SERVED_MAX
                    && self
                        .shared
                        .host
                        .send(Event::ProposalBlock {
                            height: request.height,
                            hash: request.hash,
                            reply,
                        })
                        .is_ok();
                if !asked {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .blocks
                        .send_response(channel, BlockResponse(None));
                    return;
                }
                self.serving += 1;
                let done = self.done.clone();
                tokio::spawn(async move {
                    let block = tokio::time::timeout(BLOCK_SERVE_WAIT, answer)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten();
                    let _ = done.send(Done::BlockServed {
                        channel,
                        response: BlockResponse(block),
                    });
                });
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(fetch) = self.fetches.remove(&request_id) else {
                    return;
                };
                let Some(block) = response.0 else {
                    self.fetch(fetch, peer);
                    return;
                };
                let (chain_id, done) = (self.shared.chain_id, self.done.clone());
                let suite = self.shared.store.suite();
                tokio::task::spawn_blocking(move || {
                    let result =
                        wire::proposal_with_block(*fetch.proposal, block, &chain_id, suite);
                    let _ = done.send(Done::Fetched {
                        peer,
                        result: Box::new(result),
                    });
                });
            }
            request_response::Event::OutboundFailure {
                peer, request_id, ..
            } => {
                if let Some(fetch) = self.fetches.remove(&request_id) {
                    self.fetch(fetch, peer);
                }
            }
            _ => {}
        }
    }

    /// The edge's verdict on a gossiped message: relay and hand to the host, or refuse
    /// and drop the peer that delivered it.
    fn judged(&mut self, id: MessageId, source: PeerId, result: Result<Inbound, wire::EdgeFault>) {
        let gossip = &mut self.swarm.behaviour_mut().gossip;
        match result {
            Ok(inbound) => {
                gossip.report_message_validation_result(&id, &source, MessageAcceptance::Accept);
                self.to_host(Event::Inbound {
                    from: source,
                    inbound,
                });
            }
            Err(fault) => {
                gossip.report_message_validation_result(&id, &source, MessageAcceptance::Reject);
                self.warnings.warn(
                    "bad gossip",
                    format_args!("{fault}; disconnecting {source}, the peer that delivered it"),
                );
                self.shared.metrics.bad_peer_messages.inc();
                let _ = self.swarm.disconnect_peer_id(source);
            }
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        if let Some(heard) = self.heard.get_mut(&source) {
            *heard = Instant::now();
        }
        if message.data.len() <= INLINE_CHECK_BYTES_MAX {
            let result = wire::open(&message.data).and_then(|bytes| {
                wire::inbound(bytes, &self.shared.chain_id, self.shared.store.suite())
            });
            if let Ok(Inbound::Status { height }) = result {
                // Not relayed, and only from the peer itself: a claim is attributed to
                // the connection that made it.
                let gossip = &mut self.swarm.behaviour_mut().gossip;
                gossip.report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
                if message.source == Some(source) {
                    self.to_host(Event::Inbound {
                        from: source,
                        inbound: Inbound::Status { height },
                    });
                }
                return;
            }
            self.judged(id, source, result);
            return;
        }
        let (chain_id, done) = (self.shared.chain_id, self.done.clone());
        let suite = self.shared.store.suite();
        tokio::task::spawn_blocking(move || {
            let result =
                wire::open(&message.data).and_then(|bytes| wire::inbound(bytes, &chain_id, suite));
            let result = match result {
                // A large "status" is not one an honest node sends.
                Ok(Inbound::Status { .. }) => Err(wire::EdgeFault::Undecodable(
                    "oversized status message".into(),
                )),
                other => other,
            };
            let _ = done.send(Done::Checked {
                id,
                source,
                result: Box::new(result),
            });
        });
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!("listening for peers on {address}")
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.backoff.remove(&peer_id);
                let count = self.connected.entry(peer_id).or_default();
                *count += 1;
                if *count == 1 {
                    self.heard.insert(peer_id, Instant::now());
                    tracing::info!(peer = %peer_id, "peer connected");
                    self.to_host(Event::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
                self.heard.remove(&peer_id);
                // Its stream ends with the connection; the next connection opens another.
                self.pushers.remove(&peer_id);
                tracing::info!(peer = %peer_id, "peer disconnected");
                self.to_host(Event::Disconnected(peer_id));
                self.schedule_redial(peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                ..
            } if !self.connected.contains_key(&peer) => self.schedule_redial(peer),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => self.warnings.warn(
                "refused connection",
                format_args!("refused a connection from {send_back_addr}: {error}"),
            ),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Blocks(event)) => self.on_block_request(event),
            _ => {}
        }
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if let Some(response) = self.adversary.serve_sync(&request) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                    return;
                }
                let (store, done) = (self.shared.store.clone(), self.done.clone());
                tracing::debug!(%peer, from = request.from, "serving blocks");
                tokio::task::spawn_blocking(move || {
                    let response = serve_sync(&store, &request);
                    let _ = done.send(Done::Served { channel, response });
                });
            }
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            } => self.to_host(Event::Blocks {
                peer,
                blocks: response.blocks,
            }),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "sync request failed: {error}");
                self.to_host(Event::SyncFailed { peer });
            }
            _ => {}
        }
    }

    /// A push of transactions from a peer: checked by admission on a blocking thread,
    /// then handed to the host, or dropped if the node is not keeping up: the pushing
    /// peer still holds them.
    fn on_pushed(&mut self, peer: PeerId, txs: Vec<Transaction>) {
        let admission = self.shared.admission.clone();
        if admission.room().get() == 0 {
            tracing::debug!(%peer, "mempool full: pushed transactions kept unchecked");
            self.keep_unchecked(txs);
            return;
        }
        // A bounded number of pushes wait for the node's one checking slot; beyond
        // that they are kept unchecked (the pushing peer still proposes them).
        let Ok(queued) = self.push_queue.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "node busy: pushed transactions kept unchecked");
            self.keep_unchecked(txs);
            return;
        };
        let shared = self.shared.clone();
        let keep = self.keep_unchecked;
        tokio::spawn(async move {
            let (checked, reserved, unchecked) = if keep {
                admission.check_push_async(txs).await
            } else {
                let (checked, reserved) = admission.check_async(txs).await;
                (checked, reserved, Vec::new())
            };
            drop(queued);
            if !unchecked.is_empty()
                && shared
                    .host
                    .send(Event::Unchecked { txs: unchecked })
                    .is_err()
            {
                shared.metrics.dropped_inbound.inc();
            }
            let event = Event::Admit {
                checked,
                reserved,
                origin: Origin::Peer,
                reply: None,
            };
            if shared.host.send(event).is_err() {
                shared.metrics.dropped_inbound.inc();
            }
        });
    }
}

/// Writes the frames queued for `peer` to one stream, opened first; ends when the
/// stream fails or the queue's sender is dropped (the peer disconnected).
fn spawn_pusher(mut streams: libp2p_stream::Control, peer: PeerId) -> mpsc::Sender<Arc<Vec<u8>>> {
    let (sender, mut frames) = mpsc::channel::<Arc<Vec<u8>>>(TX_PUSHES_QUEUED_MAX);
    tokio::spawn(async move {
        let mut stream = match streams.open_stream(peer, TX_PUSH_PROTOCOL).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, "cannot open a push stream: {e}");
                return;
            }
        };
        while let Some(frame) = frames.recv().await {
            if let Err(e) = write_frame_bytes(&mut stream, &frame).await {
                tracing::debug!(%peer, "push stream failed: {e}");
                return;
            }
        }
        let _ = stream.close().await;
    });
    sender
}

/// Reads the push streams peers open: one a peer (a newer one, after a reconnection,
/// replaces the older), each frame to the swarm task through `pushed`, which holds at
/// most [`TX_PUSHES_WAITING_MAX`]: a peer pushing faster than this node takes them
/// waits (its stream stops being read). A frame that is not a batch of transactions
/// closes its stream, and the swarm task disconnects the peer.
async fn receive_pushes(
    mut incoming: libp2p_stream::IncomingStreams,
    pushed: mpsc::Sender<(PeerId, TxBatch)>,
    done: mpsc::UnboundedSender<Done>,
) {
    let mut readers: BTreeMap<PeerId, tokio::task::AbortHandle> = BTreeMap::new();
    while let Some((peer, mut stream)) = incoming.next().await {
        let (pushed, done) = (pushed.clone(), done.clone());
        let reader = tokio::spawn(async move {
            loop {
                match read_frame::<_, TxBatch>(&mut stream).await {
                    Ok(batch) => {
                        if pushed.send((peer, batch)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        let _ = done.send(Done::BadPush {
                            peer,
                            reason: format!("push stream: {e}"),
                        });
                        return;
                    }
                    // Closed, or the connection went.
                    Err(_) => return,
                }
            }
        });
        if let Some(older) = readers.insert(peer, reader.abort_handle()) {
            older.abort();
        }
    }
}

impl Net {
    /// Pushes this node has no room or time to check go to the host unchecked, with
    /// their ids (hashed on a blocking thread), for the compact blocks that name them;
    /// beyond [`UNCHECKED_PUSHES_MAX`] being hashed at once they are dropped.
    fn keep_unchecked(&self, txs: Vec<Transaction>) {
        if !self.keep_unchecked {
            return;
        }
        let Ok(slot) = self.unchecked_queue.clone().try_acquire_owned() else {
            return;
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let txs = crate::admission::with_ids(txs, shared.store.suite());
            drop(slot);
            if shared.host.send(Event::Unchecked { txs }).is_err() {
                shared.metrics.dropped_inbound.inc();
            }
        });
    }
}

/// Serves committed blocks with their certificates, bounded in count and bytes.
pub fn serve_sync(store: &Store, request: &SyncRequest) -> SyncResponse {
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    let top = store.height().unwrap_or(0);
    let last = request
        .from
        .saturating_add(u64::from(request.max.min(SYNC_BLOCKS_MAX)));
    for height in request.from.max(1)..last.min(top + 1) {
        let (Ok(Some(block)), Ok(Some(cert))) = (store.block(height), store.certificate(height))
        else {
            break;
        };
        bytes += codec::encoded_len(&block);
        if bytes > FRAME_BYTES_MAX / 2 && !blocks.is_empty() {
            break;
        }
        blocks.push((block, cert));
    }
    SyncResponse { blocks }
}

/// Warnings of one kind at most every [`RateLimited::EVERY`]; the ones held back are
/// counted in the next, so a flood of refused connections cannot flood the log.
#[derive(Debug, Default)]
pub struct RateLimited {
    last: BTreeMap<&'static str, (Instant, u64)>,
}

impl RateLimited {
    pub const EVERY: Duration = Duration::from_secs(10);

    pub fn warn(&mut self, kind: &'static str, message: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        match self.last.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < Self::EVERY => *held += 1,
            Some((at, held)) => {
                tracing::warn!(
                    "{message} ({held} more like this in the last {:?})",
                    now.duration_since(*at)
                );
                *at = now;
                *held = 0;
            }
            None => {
                tracing::warn!("{message}");
                self.last.insert(kind, (now, 0));
            }
        }
    }
}

/// The libp2p keypair of a network key file's seed.
pub fn keypair_from_seed(seed: [u8; 32]) -> anyhow::Result<identity::Keypair> {
    let mut seed = seed;
    Ok(identity::Keypair::ed25519_from_bytes(&mut seed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    type GossipSwarm = Swarm<gossipsub::Behaviour>;

    /// A swarm with the validators' gossip settings and transport, and no allow list.
    fn gossip_swarm(peers: usize) -> GossipSwarm {
        let config = gossip_config(peers, 1 << 20, Suite::default()).expect("config");
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| {
                gossipsub::Behaviour::new(
                    MessageAuthenticity::Author(key.public().to_peer_id()),
                    config,
                )
                .expect("gossipsub")
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm
            .behaviour_mut()
            .subscribe(&IdentTopic::new(CONSENSUS_TOPIC))
            .expect("subscribe");
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
            .expect("listen");
        swarm
    }

    /// Drives every swarm for `how_long`, collecting listen addresses.
    async fn drive(
        swarms: &mut [GossipSwarm],
        addresses: &mut [Option<Multiaddr>],
        how_long: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + how_long;
        loop {
            let events = futures::future::select_all(
                swarms.iter_mut().map(|s| Box::pin(s.select_next_some())),
            );
            match tokio::time::timeout_at(deadline, events).await {
                Err(_) => return,
                Ok((SwarmEvent::NewListenAddr { address, .. }, i, _)) => {
                    addresses[i] = Some(address)
                }
                Ok(_) => {}
            }
        }
    }

    /// Drives the swarms until `done` holds for their mesh sizes (10 s at most); returns
    /// the sizes.
    async fn settle(
        swarms: &mut [GossipSwarm],
        addresses: &mut [Option<Multiaddr>],
        done: impl Fn(&[usize]) -> bool,
    ) -> Vec<usize> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            drive(swarms, addresses, Duration::from_millis(250)).await;
            let sizes = mesh_sizes(swarms);
            if done(&sizes) || tokio::time::Instant::now() >= deadline {
                return sizes;
            }
        }
    }

    fn mesh_sizes(swarms: &[GossipSwarm]) -> Vec<usize> {
        let topic = IdentTopic::new(CONSENSUS_TOPIC).hash();
        swarms
            .iter()
            .map(|s| s.behaviour().mesh_peers(&topic).count())
            .collect()
    }

    /// Four validators that meet in pairs first (0-1, 2-3) and the rest later, as nodes
    /// starting one after another do: every one ends with all three others in its mesh.
    /// With the settings before (a mesh of at least one), each kept only its first
    /// partner, and the others got IHAVE gossip, too large under load for a peer to
    /// accept.
    #[test]
    fn every_validator_meshes_with_every_other_however_they_met() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let mut swarms: Vec<GossipSwarm> = (0..4).map(|_| gossip_swarm(3)).collect();
            let mut addresses = vec![None; 4];
            drive(&mut swarms, &mut addresses, Duration::from_millis(300)).await;
            let listening: Vec<Multiaddr> = addresses
                .iter()
                .map(|a| a.clone().expect("listening"))
                .collect();
            let address = |i: usize| listening[i].clone();
            for (from, to) in [(0, 1), (2, 3)] {
                let to = address(to);
                swarms[from].dial(to).expect("dial");
            }
            // The pairs mesh with each other within a few heartbeats.
            let settled = settle(&mut swarms, &mut addresses, |m| m == [1, 1, 1, 1]).await;
            assert_eq!(settled, vec![1, 1, 1, 1], "the pairs meshed");
            for (from, to) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
                let to = address(to);
                swarms[from].dial(to).expect("dial");
            }
            let settled = settle(&mut swarms, &mut addresses, |m| m == [3, 3, 3, 3]).await;
            assert_eq!(
                settled,
                vec![3, 3, 3, 3],
                "every validator has every other in its mesh"
            );
        });
    }

    #[test]
    fn ihave_gossip_fits_the_control_size_a_peer_accepts() {
        // A message id is 32 bytes, 34 with its protobuf tag and length; the topic and
        // the IHAVE's own framing take a few dozen more.
        let config = gossip_config(3, 1 << 20, Suite::default()).expect("config");
        let ihave_bytes = config.max_control_messages_sent() * 34 + 64;
        assert!(
            ihave_bytes <= config.max_control_message_size(),
            "{ihave_bytes} bytes of IHAVE against {} accepted",
            config.max_control_message_size()
        );
    }
}
