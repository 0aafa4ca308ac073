//! Networking between validators: libp2p over TCP with Noise and Yamux.
//!
//! - Only the peer ids named in genesis may connect (`allow_block_list`); anyone else is
//!   refused at the connection and logged.
//! - Consensus messages, proposals with their blocks and status travel on gossipsub;
//!   transactions are pushed to each peer on their own request-response protocol, with
//!   at most a few pushes in flight per peer, so they never crowd out consensus.
//!   Gossip messages are size-limited and name their author but carry no gossipsub
//!   signature: every connection is already an authenticated genesis peer, and what
//!   consensus acts on is signed by validator keys inside the message (signing and
//!   checking each copy again cost as much as a vote's own checks). A message that
//!   does not decode is rejected (not relayed) and the peer that sent it disconnected:
//!   it is a faulty validator (an honest one relays only what decoded).
//! - Block sync is a request-response protocol with bounded, length-prefixed frames.
//! - Peers that go away are redialled with exponential backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bincode::{Decode, Encode};
use cbec_consensus::{Message, SignedProposal};
use cbec_ledger::{codec, Block, CommitCertificate, Transaction};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use tokio::sync::mpsc;

use crate::store::Store;

/// What validators gossip.
#[derive(Debug, Clone, Encode, Decode)]
pub enum NetMessage {
    /// A proposal travels with the block it proposes.
    Proposal {
        proposal: SignedProposal,
        block: Box<Block>,
    },
    /// Votes (and proposals re-sent without their block, which peers already hold).
    Consensus(Message),
    /// The sender's last committed height, so laggards know to sync.
    Status { height: u64 },
}

/// Blocks a sync response may carry.
pub const SYNC_BLOCKS_MAX: u32 = 64;
/// Largest frame on the sync protocol.
pub const SYNC_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Encode, Decode)]
pub struct SyncRequest {
    pub from: u64,
    pub max: u32,
}

#[derive(Debug, Clone, Encode, Decode)]
pub struct SyncResponse {
    pub blocks: Vec<(Block, CommitCertificate)>,
}

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

/// Transactions pushed to a peer, which acknowledges them. A request-response
/// protocol, not gossip: each push has its own stream, so a flood of transactions
/// cannot queue ahead of consensus messages, and a sender with too many pushes in
/// flight to a peer skips it (the transactions stay in its own mempool).
pub type TxCodec = FrameCodec<TxBatch, TxAck>;

#[derive(Debug, Clone, Encode, Decode)]
pub struct TxBatch(pub Vec<Transaction>);

#[derive(Debug, Clone, Encode, Decode)]
pub struct TxAck;

/// Pushes from peers that may wait for this node's signature-checking slot.
pub const TX_PUSHES_WAITING_MAX: usize = 16;

/// Pushes in flight to one peer beyond which new transactions are not pushed to it.
pub const TX_PUSHES_IN_FLIGHT_MAX: usize = 8;

/// How long admitted transactions wait for others to share a push.
const TX_PUSH_DELAY: Duration = Duration::from_millis(5);

/// Transactions in one push (512 of the largest allowed stay within a frame); a full
/// outbox goes at once.
const TX_PUSH_TXS_MAX: usize = 512;

async fn read_frame<T: futures::AsyncRead + Unpin + Send, M: bincode::Decode<()>>(
    io: &mut T,
) -> std::io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > SYNC_FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "sync frame too large",
        ));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    codec::decode(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send, M: bincode::Encode>(
    io: &mut T,
    message: &M,
) -> std::io::Result<()> {
    let bytes = codec::encode(message);
    if bytes.len() > SYNC_FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "sync frame too large",
        ));
    }
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
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
    txs: request_response::Behaviour<TxCodec>,
}

/// Commands from the node to the network task.
#[derive(Debug)]
pub enum NetCommand {
    Publish(NetMessage),
    /// Push admitted transactions to every connected peer that is keeping up.
    PushTxs(Vec<Transaction>),
    RequestBlocks {
        peer: PeerId,
        from: u64,
    },
    Disconnect(PeerId),
}

/// What the network task reports to the node.
#[derive(Debug)]
pub enum NetEvent {
    Message {
        from: PeerId,
        message: NetMessage,
    },
    /// Transactions a peer pushed, already through the stateless checks.
    Txs {
        from: PeerId,
        checked: Vec<crate::mempool::Checked>,
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
    /// For the stateless checks of pushed transactions.
    pub chain_id: cbec_ledger::Hash,
    pub tx_bytes_max: usize,
    /// The node's signature-checking slot, shared with the API.
    pub admission: Arc<tokio::sync::Semaphore>,
    /// The mempool's free room: pushed signatures are checked only for what fits.
    pub room: crate::mempool::Room,
    /// Pushes allowed to wait for that slot.
    pub push_queue: Arc<tokio::sync::Semaphore>,
}

/// A running network task's handles.
#[derive(Debug)]
pub struct Network {
    pub commands: mpsc::Sender<NetCommand>,
    pub events: mpsc::Receiver<NetEvent>,
}

/// Builds the swarm and spawns the task that drives it.
pub fn start(config: NetConfig, store: Arc<Store>) -> anyhow::Result<Network> {
    let mut swarm = build_swarm(&config)?;
    swarm.listen_on(config.listen.clone())?;
    let (command_tx, command_rx) = mpsc::channel(4096);
    let (event_tx, event_rx) = mpsc::channel(4096);
    tokio::spawn(run(swarm, config, store, command_rx, event_tx));
    Ok(Network {
        commands: command_tx,
        events: event_rx,
    })
}

fn build_swarm(config: &NetConfig) -> anyhow::Result<Swarm<Behaviour>> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(config.message_bytes_max)
        .validation_mode(ValidationMode::Permissive)
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        .mesh_n(3)
        .mesh_n_low(1)
        .mesh_n_high(6)
        .mesh_outbound_min(1)
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
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
            let txs = request_response::Behaviour::new(
                [(StreamProtocol::new("/cbec/txs/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            Ok(Behaviour {
                allow,
                gossip,
                sync,
                txs,
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    config: NetConfig,
    store: Arc<Store>,
    mut commands: mpsc::Receiver<NetCommand>,
    events: mpsc::Sender<NetEvent>,
) {
    let consensus_topic = IdentTopic::new(CONSENSUS_TOPIC);
    if let Err(e) = swarm.behaviour_mut().gossip.subscribe(&consensus_topic) {
        tracing::error!("cannot subscribe to {consensus_topic}: {e}");
    }
    let addresses: BTreeMap<PeerId, Multiaddr> = config.peers.iter().cloned().collect();
    let mut backoff: BTreeMap<PeerId, Duration> = BTreeMap::new();
    let mut connected: BTreeMap<PeerId, usize> = BTreeMap::new();
    let mut in_flight: BTreeMap<PeerId, usize> = BTreeMap::new();
    let (redial_tx, mut redial_rx) = mpsc::channel::<PeerId>(64);
    for peer in addresses.keys() {
        dial(&mut swarm, &addresses, *peer);
    }
    // Admitted transactions wait up to TX_PUSH_DELAY to travel together: one push per
    // peer for many small API batches, instead of a stream each.
    let mut outbox: Vec<Transaction> = Vec::new();
    let mut push_due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(push_due.unwrap_or_else(tokio::time::Instant::now)), if push_due.is_some() => {
                push(&mut swarm, std::mem::take(&mut outbox), &connected, &mut in_flight);
                push_due = None;
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    NetCommand::Publish(message) => {
                        // With no peer connected yet publishing fails; consensus rebroadcasts.
                        let _ = swarm.behaviour_mut().gossip.publish(consensus_topic.clone(), codec::encode(&message));
                    }
                    NetCommand::PushTxs(txs) => {
                        outbox.extend(txs);
                        if outbox.len() >= TX_PUSH_TXS_MAX {
                            push(&mut swarm, std::mem::take(&mut outbox), &connected, &mut in_flight);
                            push_due = None;
                        } else if push_due.is_none() {
                            push_due = Some(tokio::time::Instant::now() + TX_PUSH_DELAY);
                        }
                    }
                    NetCommand::RequestBlocks { peer, from } => {
                        swarm.behaviour_mut().sync.send_request(&peer, SyncRequest { from, max: SYNC_BLOCKS_MAX });
                    }
                    NetCommand::Disconnect(peer) => {
                        let _ = swarm.disconnect_peer_id(peer);
                    }
                }
            }
            Some(peer) = redial_rx.recv() => {
                if !connected.contains_key(&peer) {
                    dial(&mut swarm, &addresses, peer);
                }
            }
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Txs(event)) = event {
                    on_tx_push(&mut swarm, event, &config, &events, &mut in_flight);
                    continue;
                }
                handle_swarm_event(&mut swarm, event, &store, &events, &addresses, &mut backoff, &mut connected, &redial_tx).await;
            }
        }
    }
}

/// Pushes `txs` to every connected peer that is keeping up.
fn push(
    swarm: &mut Swarm<Behaviour>,
    txs: Vec<Transaction>,
    connected: &BTreeMap<PeerId, usize>,
    in_flight: &mut BTreeMap<PeerId, usize>,
) {
    if txs.is_empty() {
        return;
    }
    let batch = TxBatch(txs);
    for peer in connected.keys() {
        let pushes = in_flight.entry(*peer).or_default();
        if *pushes < TX_PUSHES_IN_FLIGHT_MAX {
            *pushes += 1;
            swarm.behaviour_mut().txs.send_request(peer, batch.clone());
        }
    }
}

fn dial(swarm: &mut Swarm<Behaviour>, addresses: &BTreeMap<PeerId, Multiaddr>, peer: PeerId) {
    if let Some(address) = addresses.get(&peer) {
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(vec![address.clone()])
            .build();
        if let Err(e) = swarm.dial(opts) {
            tracing::debug!(%peer, "dial failed: {e}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle_swarm_event(
    swarm: &mut Swarm<Behaviour>,
    event: SwarmEvent<BehaviourEvent>,
    store: &Arc<Store>,
    events: &mpsc::Sender<NetEvent>,
    addresses: &BTreeMap<PeerId, Multiaddr>,
    backoff: &mut BTreeMap<PeerId, Duration>,
    connected: &mut BTreeMap<PeerId, usize>,
    redial: &mpsc::Sender<PeerId>,
) {
    let schedule_redial = |peer: PeerId, backoff: &mut BTreeMap<PeerId, Duration>| {
        if !addresses.contains_key(&peer) {
            return;
        }
        let wait = backoff
            .get(&peer)
            .copied()
            .unwrap_or(Duration::from_millis(250));
        backoff.insert(peer, (wait * 2).min(Duration::from_secs(10)));
        let redial = redial.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = redial.send(peer).await;
        });
    };
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            tracing::info!("listening for peers on {address}")
        }
        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
            backoff.remove(&peer_id);
            let count = connected.entry(peer_id).or_default();
            *count += 1;
            if *count == 1 {
                tracing::info!(peer = %peer_id, "peer connected");
                let _ = events.send(NetEvent::Connected(peer_id)).await;
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => {
            connected.remove(&peer_id);
            tracing::info!(peer = %peer_id, "peer disconnected");
            let _ = events.send(NetEvent::Disconnected(peer_id)).await;
            schedule_redial(peer_id, backoff);
        }
        SwarmEvent::OutgoingConnectionError {
            peer_id: Some(peer),
            ..
        } if !connected.contains_key(&peer) => {
            schedule_redial(peer, backoff);
        }
        SwarmEvent::IncomingConnectionError {
            send_back_addr,
            error,
            ..
        } => {
            tracing::warn!("refused a connection from {send_back_addr}: {error}");
        }
        SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        })) => {
            let publisher = message.source.unwrap_or(propagation_source);
            // Gossipsub already enforces the size limit on the wire.
            match codec::decode::<NetMessage>(&message.data) {
                Ok(decoded) => {
                    swarm
                        .behaviour_mut()
                        .gossip
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Accept,
                        );
                    let _ = events
                        .send(NetEvent::Message {
                            from: publisher,
                            message: decoded,
                        })
                        .await;
                }
                Err(e) => {
                    tracing::warn!(peer = %propagation_source, author = %publisher, bytes = message.data.len(), "undecodable message ({e}); disconnecting the peer that sent it");
                    swarm
                        .behaviour_mut()
                        .gossip
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                    let _ = swarm.disconnect_peer_id(propagation_source);
                }
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
            peer,
            message,
            ..
        })) => match message {
            request_response::Message::Request {
                request, channel, ..
            } => {
                let response = serve_sync(store, &request);
                let _ = swarm.behaviour_mut().sync.send_response(channel, response);
            }
            request_response::Message::Response { response, .. } => {
                let _ = events
                    .send(NetEvent::Blocks {
                        peer,
                        blocks: response.blocks,
                    })
                    .await;
            }
        },
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
            peer,
            error,
            ..
        })) => {
            tracing::debug!(%peer, "sync request failed: {error}");
            let _ = events.send(NetEvent::SyncFailed { peer }).await;
        }
        _ => {}
    }
}

/// A push of transactions from a peer: acknowledged at once, checked (signatures) on a
/// blocking thread, then handed to the node, or dropped if the node is not keeping up:
/// the pushing peer still holds them. Answers to our own pushes free their slot.
fn on_tx_push(
    swarm: &mut Swarm<Behaviour>,
    event: request_response::Event<TxBatch, TxAck>,
    config: &NetConfig,
    events: &mpsc::Sender<NetEvent>,
    in_flight: &mut BTreeMap<PeerId, usize>,
) {
    let mut done = |peer: PeerId| {
        if let Some(n) = in_flight.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
    };
    match event {
        request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        } => {
            let _ = swarm.behaviour_mut().txs.send_response(channel, TxAck);
            if config.room.get() == 0 {
                tracing::debug!(%peer, "mempool full: dropped pushed transactions");
                return;
            }
            // A bounded number of pushes wait for the node's one checking slot; beyond
            // that they are dropped (the pushing peer still proposes them).
            let Ok(queued) = config.push_queue.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "node busy: dropped pushed transactions");
                return;
            };
            let (chain_id, max, events) = (config.chain_id, config.tx_bytes_max, events.clone());
            let (admission, room) = (config.admission.clone(), config.room.clone());
            tokio::spawn(async move {
                let Ok(permit) = admission.acquire_owned().await else {
                    return;
                };
                drop(queued);
                let room = room.get();
                let checked = tokio::task::spawn_blocking(move || {
                    let checked = crate::mempool::check(request.0, &chain_id, max, room);
                    drop(permit);
                    checked
                })
                .await;
                if let Ok(checked) = checked {
                    if events
                        .try_send(NetEvent::Txs {
                            from: peer,
                            checked,
                        })
                        .is_err()
                    {
                        tracing::debug!(%peer, "node busy: dropped pushed transactions");
                    }
                }
            });
        }
        request_response::Event::Message {
            peer,
            message: request_response::Message::Response { .. },
            ..
        } => done(peer),
        request_response::Event::OutboundFailure { peer, .. } => done(peer),
        _ => {}
    }
}

/// Serves committed blocks with their certificates, bounded in count and bytes.
fn serve_sync(store: &Store, request: &SyncRequest) -> SyncResponse {
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
        bytes += codec::encode(&block).len();
        if bytes > SYNC_FRAME_BYTES_MAX / 2 && !blocks.is_empty() {
            break;
        }
        blocks.push((block, cert));
    }
    SyncResponse { blocks }
}

/// The libp2p keypair of a network key file's seed.
pub fn keypair_from_seed(seed: [u8; 32]) -> anyhow::Result<identity::Keypair> {
    let mut seed = seed;
    Ok(identity::Keypair::ed25519_from_bytes(&mut seed)?)
}
