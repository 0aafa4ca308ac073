//! The driver: the one task that owns consensus, the mempool and execution, and performs
//! the consensus state machine's outputs — persist before send, timers, building and
//! validating blocks (execute-then-vote), applying decided blocks, and block sync.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cbec_chaincode::{layout, BlockInfo, Engine, Writes};
use cbec_consensus::{
    Config, Consensus, Decision, Honest, Input, Message, Output, SignedProposal, Timeout,
};
use cbec_genesis::Genesis;
use cbec_ledger::proof::{validator_key_state_key, Roster};
use cbec_ledger::{
    block, codec, merkle, tx, Block, CommitCertificate, Hash, Header, KeyPair, PublicKey,
    Transaction, TxResult, ValidatorSet, VerifiedTransaction,
};
use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::mempool::Mempool;
use crate::network::{NetCommand, NetEvent, NetMessage};
use crate::shared::{Command, Shared};
use crate::store::PreparedState;

/// How far ahead of this node's clock a proposed block's time may be.
pub const BLOCK_TIME_AHEAD_MS_MAX: u64 = 10_000;

/// A block this node executed (built or validated), ready to commit if decided.
struct Executed {
    block: Block,
    writes: Writes,
    prepared: PreparedState,
}

/// Events the driver's timers deliver.
#[derive(Debug)]
pub enum Tick {
    Consensus(Timeout),
    Build { height: u64, round: u32 },
}

pub struct Driver {
    shared: Arc<Shared>,
    genesis: Genesis,
    engine: Engine,
    consensus: Consensus<KeyPair, Honest>,
    mempool: Mempool,
    net: mpsc::Sender<NetCommand>,
    ticks: mpsc::Sender<Tick>,
    /// Blocks received with proposals at the current height, by hash.
    proposed: BTreeMap<Hash, (Block, PublicKey)>,
    executed: BTreeMap<Hash, Executed>,
    validators: ValidatorSet,
    previous_validators: ValidatorSet,
    /// Last height each peer reported.
    peer_heights: BTreeMap<PeerId, u64>,
    /// A height was decided for a block this node does not hold: fetch it.
    awaiting_block: Option<Decision>,
    sync_in_flight: Option<Instant>,
    height_started: Instant,
    building: Option<(u64, u32, Instant)>,
    recent_commits: Vec<(Instant, u64)>,
    /// Proposals (block, round) already sent with their block since the last peer
    /// connected: rebroadcasts of those go without the block (see `perform`).
    blocks_sent: BTreeSet<(Hash, u32)>,
}

/// A sender's next nonce in committed state.
fn next_nonce(store: &crate::store::Store, key: &PublicKey) -> u64 {
    let bytes = store
        .state_value(layout::nonce_key(&key.to_hex()).as_bytes())
        .ok()
        .flatten();
    bytes
        .and_then(|b| codec::decode::<u64>(&b).ok())
        .unwrap_or(0)
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("height", &self.consensus.height())
            .field("round", &self.consensus.round())
            .field("mempool", &self.mempool.len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        genesis: Genesis,
        engine: Engine,
        key: KeyPair,
        mempool: Mempool,
        net: mpsc::Sender<NetCommand>,
        ticks: mpsc::Sender<Tick>,
    ) -> anyhow::Result<Driver> {
        let c = &genesis.consensus;
        let config = Config {
            chain_id: shared.chain_id,
            timeouts: cbec_consensus::Timeouts {
                propose_ms: c.timeout_propose_ms,
                prevote_ms: c.timeout_prevote_ms,
                precommit_ms: c.timeout_precommit_ms,
                increase_per_round_ms: c.timeout_increase_per_round_ms,
            },
        };
        let signing = shared
            .store
            .signing_state()?
            .unwrap_or_else(cbec_consensus::SigningState::genesis);
        let consensus = Consensus::new(config, key, Honest, signing);
        let validators = genesis
            .validator_set()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Driver {
            shared,
            genesis,
            engine,
            consensus,
            mempool,
            net,
            ticks,
            proposed: BTreeMap::new(),
            executed: BTreeMap::new(),
            previous_validators: validators.clone(),
            validators,
            peer_heights: BTreeMap::new(),
            awaiting_block: None,
            sync_in_flight: None,
            height_started: Instant::now(),
            building: None,
            recent_commits: Vec::new(),
            blocks_sent: BTreeSet::new(),
        })
    }

    /// Runs until `shutdown` fires.
    pub async fn run(
        mut self,
        mut net_events: mpsc::Receiver<NetEvent>,
        mut commands: mpsc::Receiver<Command>,
        mut ticks: mpsc::Receiver<Tick>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        self.start_height(self.shared.store.height()? + 1).await?;
        let mut status_every = tokio::time::interval(Duration::from_millis(1000));
        let mut sync_every = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                Some(event) = net_events.recv() => self.on_net(event).await?,
                Some(command) = commands.recv() => self.on_command(command).await,
                Some(tick) = ticks.recv() => self.on_tick(tick).await?,
                _ = status_every.tick() => {
                    let height = self.shared.store.height()?;
                    self.publish(NetMessage::Status { height }).await;
                }
                _ = sync_every.tick() => self.maybe_sync().await?,
            }
        }
    }

    async fn publish(&self, message: NetMessage) {
        let _ = self.net.send(NetCommand::Publish(message)).await;
    }

    fn next_nonce(&self, key: &PublicKey) -> u64 {
        next_nonce(&self.shared.store, key)
    }

    /// The set for the next height: the genesis agencies, each agency's key replaced
    /// where governance recorded one (`gov/validator/<agency>`) in committed state.
    /// Auditors' verifiers derive it the same way (`Roster::derive`).
    fn validators_for_next(&self) -> anyhow::Result<ValidatorSet> {
        let trust = &self.shared.trust;
        let mut overrides = Vec::with_capacity(trust.agencies.len());
        for agency in &trust.agencies {
            let key = validator_key_state_key(&agency.name);
            overrides.push(
                self.shared
                    .store
                    .state_value(key.as_bytes())?
                    .and_then(|b| codec::decode::<PublicKey>(&b).ok()),
            );
        }
        Ok(Roster::derive(&trust.agencies, &overrides)?.set().clone())
    }

    async fn start_height(&mut self, height: u64) -> anyhow::Result<()> {
        let outputs = self.begin_height(height)?;
        self.perform(outputs).await
    }

    /// Resets per-height state and starts consensus at `height`; returns its outputs.
    fn begin_height(&mut self, height: u64) -> anyhow::Result<Vec<Output>> {
        let next = self.validators_for_next()?;
        self.previous_validators = std::mem::replace(&mut self.validators, next);
        self.proposed.clear();
        self.executed.clear();
        self.blocks_sent.clear();
        self.building = None;
        self.height_started = Instant::now();
        Ok(self.consensus.handle(Input::StartHeight {
            height,
            validators: self.validators.clone(),
        }))
    }

    async fn handle(&mut self, input: Input) -> anyhow::Result<()> {
        let outputs = self.consensus.handle(input);
        self.perform(outputs).await
    }

    /// Performs outputs in order; a `Persist` is durable before anything after it. A
    /// decision commits the block and goes on with the next height's outputs.
    async fn perform(&mut self, outputs: Vec<Output>) -> anyhow::Result<()> {
        let mut queue: std::collections::VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::Persist(state) => {
                    let store = self.shared.store.clone();
                    tokio::task::block_in_place(|| store.save_signing_state(&state))?;
                }
                Output::Broadcast(message) => {
                    // A proposal travels with its block once per round; consensus
                    // rebroadcasts it every propose timeout, and resending megabytes
                    // each time to peers that have them cost more than the rest of a
                    // slow height. A peer that connects since gets it again.
                    let net = match message {
                        Message::Proposal(p) => {
                            let key = (p.proposal.value, p.proposal.round);
                            match self.block_for(&p.proposal.value) {
                                Some(block) if !self.blocks_sent.contains(&key) => {
                                    self.blocks_sent.insert(key);
                                    NetMessage::Proposal {
                                        proposal: p,
                                        block: Box::new(block),
                                    }
                                }
                                _ => NetMessage::Consensus(Message::Proposal(p)),
                            }
                        }
                        vote => NetMessage::Consensus(vote),
                    };
                    self.publish(net).await;
                }
                Output::ScheduleTimeout { timeout, after_ms } => {
                    let ticks = self.ticks.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(after_ms)).await;
                        let _ = ticks.send(Tick::Consensus(timeout)).await;
                    });
                }
                Output::RequestValue { height, round } => {
                    self.building = Some((height, round, Instant::now()));
                    self.schedule_build(height, round, self.genesis.consensus.batch_delay_ms);
                }
                Output::ValidateValue { height, value, .. } => {
                    let valid = self.validate(&value);
                    if let Err(reason) = &valid {
                        tracing::warn!(height, block = %value, "proposal invalid: {reason}");
                    }
                    queue.extend(self.consensus.handle(Input::ValueValidated {
                        height,
                        value,
                        valid: valid.is_ok(),
                    }));
                }
                Output::Decide(decision) => {
                    // Outputs after a decision belong to the finished height.
                    queue.clear();
                    if let Some(next) = self.on_decide(decision).await? {
                        queue.extend(self.begin_height(next)?);
                    }
                }
                Output::Evidence(evidence) => {
                    self.shared.metrics.equivocations.inc();
                    tracing::warn!(offender = %evidence.offender(), "equivocation evidence");
                }
            }
        }
        self.shared
            .update_status(|s| s.round = self.consensus.round());
        self.shared
            .metrics
            .round
            .set(i64::from(self.consensus.round()));
        Ok(())
    }

    fn block_for(&self, hash: &Hash) -> Option<Block> {
        self.executed
            .get(hash)
            .map(|e| e.block.clone())
            .or_else(|| self.proposed.get(hash).map(|(b, _)| b.clone()))
    }

    fn schedule_build(&self, height: u64, round: u32, after_ms: u64) {
        let ticks = self.ticks.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            let _ = ticks.send(Tick::Build { height, round }).await;
        });
    }

    async fn on_tick(&mut self, tick: Tick) -> anyhow::Result<()> {
        match tick {
            Tick::Consensus(timeout) => self.handle(Input::Timeout(timeout)).await,
            Tick::Build { height, round } => {
                let Some((h, r, since)) = self.building else {
                    return Ok(());
                };
                if (h, r) != (height, round) {
                    return Ok(());
                }
                // Propose as soon as there is work; with none, wait up to half the
                // propose timeout, then propose an empty block (a heartbeat).
                let empty_wait =
                    Duration::from_millis(self.genesis.consensus.timeout_propose_ms / 2);
                if self.mempool.is_empty() && since.elapsed() < empty_wait {
                    self.schedule_build(
                        height,
                        round,
                        self.genesis.consensus.batch_delay_ms.max(1),
                    );
                    return Ok(());
                }
                self.building = None;
                let value = tokio::task::block_in_place(|| self.build(height))?;
                self.handle(Input::ValueProduced {
                    height,
                    round,
                    value,
                })
                .await
            }
        }
    }

    /// Builds and executes this validator's block for `height`.
    fn build(&mut self, height: u64) -> anyhow::Result<Hash> {
        let store = self.shared.store.clone();
        let c = &self.genesis.consensus;
        let txs = self.mempool.reap(
            c.block_txs_max as usize,
            c.block_bytes_max as usize / 2,
            |k| self.next_nonce(k),
        );
        let parent = store.header(height - 1)?;
        let time_ms = now_ms().max(
            parent
                .as_ref()
                .map_or(self.genesis.genesis_time_ms, |p| p.time_ms + 1),
        );
        let outcome = self
            .engine
            .execute_block(store.as_ref(), BlockInfo { height, time_ms }, &txs)
            .map_err(|e| anyhow::anyhow!("own block is invalid: {e}"))?;
        let prepared = store.prepare_state(height, &outcome.writes)?;
        let txs: Vec<Transaction> = txs.into_iter().map(|t| t.into_inner()).collect();
        let header = Header {
            chain_id: self.shared.chain_id,
            height,
            time_ms,
            previous: parent.as_ref().map_or(self.shared.chain_id, Header::hash),
            proposer: self.shared.validator,
            tx_count: txs.len() as u64,
            tx_root: merkle::root(&block::tx_leaves(&txs)),
            results_root: merkle::root(&block::result_leaves(&outcome.results)),
            state_root: prepared.root,
            validators_hash: self.validators.hash(),
        };
        let last_commit = if height > 1 {
            store.certificate(height - 1)?
        } else {
            None
        };
        let block = Block {
            header,
            txs,
            results: outcome.results,
            last_commit,
        };
        let hash = block.hash();
        self.executed.insert(
            hash,
            Executed {
                block,
                writes: outcome.writes,
                prepared,
            },
        );
        Ok(hash)
    }

    /// `valid(v)`: re-executes a proposed block and compares every root.
    fn validate(&mut self, value: &Hash) -> Result<(), String> {
        if self.executed.contains_key(value) {
            return Ok(());
        }
        let Some((block, proposer)) = self.proposed.get(value).cloned() else {
            return Err("block not received".into());
        };
        let executed =
            tokio::task::block_in_place(|| self.execute_checked(&block, Some(&proposer)))?;
        self.executed.insert(*value, executed);
        Ok(())
    }

    /// Every check a block must pass before it is voted for or applied from sync.
    fn execute_checked(
        &self,
        block: &Block,
        proposer: Option<&PublicKey>,
    ) -> Result<Executed, String> {
        let store = &self.shared.store;
        let h = block.height();
        let c = &self.genesis.consensus;
        let parent = store.header(h - 1).map_err(|e| e.to_string())?;
        if h > 1 && parent.is_none() {
            return Err(format!("parent {} is not committed here", h - 1));
        }
        block
            .check_extends(&self.shared.chain_id, parent.as_ref())
            .map_err(|e| e.to_string())?;
        if let Some(proposer) = proposer {
            if block.header.proposer != *proposer {
                return Err("header names another proposer".into());
            }
        }
        if block.header.time_ms > now_ms() + BLOCK_TIME_AHEAD_MS_MAX {
            return Err(format!(
                "block time {} is too far in the future",
                block.header.time_ms
            ));
        }
        if h > 1 {
            let cert = block.last_commit.as_ref().ok_or("last commit missing")?;
            let parent_hash = parent.as_ref().map(Header::hash).unwrap_or_default();
            cert.verify_for(
                &self.shared.chain_id,
                &self.previous_validators,
                h - 1,
                &parent_hash,
            )
            .map_err(|e| format!("last commit: {e}"))?;
        }
        if block.header.validators_hash != self.validators.hash() {
            return Err("validator set hash differs".into());
        }
        if block.txs.len() > c.block_txs_max as usize {
            return Err("too many transactions".into());
        }
        if codec::encode(block).len() > c.block_bytes_max as usize {
            return Err("block too large".into());
        }
        block.check_body().map_err(|e| e.to_string())?;
        // Transactions this node admitted were verified then; only the rest are checked.
        let mut verified: Vec<Option<VerifiedTransaction>> = block
            .txs
            .iter()
            .map(|t| self.mempool.verified(&t.hash()))
            .collect();
        let unknown: Vec<usize> = (0..verified.len())
            .filter(|i| verified[*i].is_none())
            .collect();
        let checked = tx::verify_all(
            unknown.iter().map(|i| block.txs[*i].clone()).collect(),
            &self.shared.chain_id,
        );
        for (i, result) in unknown.into_iter().zip(checked) {
            verified[i] = Some(result.map_err(|e| format!("transaction: {e}"))?);
        }
        let verified: Vec<VerifiedTransaction> = verified.into_iter().flatten().collect();
        let outcome = self
            .engine
            .execute_block(
                store.as_ref(),
                BlockInfo {
                    height: h,
                    time_ms: block.header.time_ms,
                },
                &verified,
            )
            .map_err(|e| e.to_string())?;
        if outcome.results != block.results {
            return Err("results differ from re-execution".into());
        }
        let prepared = store
            .prepare_state(h, &outcome.writes)
            .map_err(|e| e.to_string())?;
        if prepared.root != block.header.state_root {
            return Err(format!(
                "state root {} differs from re-execution's {}",
                block.header.state_root, prepared.root
            ));
        }
        Ok(Executed {
            block: block.clone(),
            writes: outcome.writes,
            prepared,
        })
    }

    /// Commits the decided block if this node holds it; returns the next height to start.
    async fn on_decide(&mut self, decision: Decision) -> anyhow::Result<Option<u64>> {
        let executed = match self.executed.remove(&decision.value) {
            Some(e) => Some(e),
            None => match self.proposed.get(&decision.value).cloned() {
                Some((block, _)) => Some(
                    tokio::task::block_in_place(|| self.execute_checked(&block, None)).map_err(
                        |e| {
                            anyhow::anyhow!(
                                "decided block {} fails re-execution here: {e}",
                                decision.value
                            )
                        },
                    )?,
                ),
                None => None,
            },
        };
        match executed {
            Some(executed) => self.commit(executed, decision.certificate).map(Some),
            None => {
                tracing::info!(
                    height = decision.height,
                    "decided a block not held here; syncing it"
                );
                self.awaiting_block = Some(decision);
                self.maybe_sync().await?;
                Ok(None)
            }
        }
    }

    /// Applies a block durably; returns the next height.
    fn commit(
        &mut self,
        executed: Executed,
        certificate: CommitCertificate,
    ) -> anyhow::Result<u64> {
        let store = self.shared.store.clone();
        let block = executed.block;
        tokio::task::block_in_place(|| {
            store.commit_block(&block, &certificate, &executed.writes, &executed.prepared)
        })?;
        let height = block.height();
        let hashes: Vec<Hash> = block.txs.iter().map(Transaction::hash).collect();
        self.mempool
            .remove_committed(&hashes, |k| next_nonce(&store, k));
        self.record_commit(&block);
        tracing::info!(height, txs = block.txs.len(), hash = %block.hash(), "committed");
        let _ = self.shared.committed.send(height);
        self.awaiting_block = None;
        Ok(height + 1)
    }

    fn record_commit(&mut self, block: &Block) {
        let m = &self.shared.metrics;
        let txs = block.txs.len() as u64;
        let rejected = block
            .results
            .iter()
            .filter(|r: &&TxResult| !r.is_accepted())
            .count() as u64;
        m.height.set(block.height() as i64);
        m.committed_txs.inc_by(txs);
        m.rejected_txs.inc_by(rejected);
        m.commit_latency
            .observe(self.height_started.elapsed().as_secs_f64());
        m.mempool_txs.set(self.mempool.len() as i64);
        let now = Instant::now();
        self.recent_commits.push((now, txs));
        self.recent_commits
            .retain(|(t, _)| now.duration_since(*t) < Duration::from_secs(10));
        let window = self
            .recent_commits
            .first()
            .map_or(1.0, |(t, _)| now.duration_since(*t).as_secs_f64().max(1.0));
        let total: u64 = self.recent_commits.iter().map(|(_, n)| n).sum();
        m.tx_per_second.set(total as f64 / window);
        self.shared.update_status(|s| {
            s.height = block.height();
            s.last_block_hash = Some(block.hash());
            s.last_block_time_ms = block.header.time_ms;
            s.mempool_txs = self.mempool.len();
            s.mempool_bytes = self.mempool.bytes();
        });
    }

    async fn on_net(&mut self, event: NetEvent) -> anyhow::Result<()> {
        match event {
            NetEvent::Message { from, message } => match message {
                NetMessage::Proposal { proposal, block } => {
                    self.on_proposal(from, proposal, *block).await?
                }
                NetMessage::Consensus(message) => self.handle(Input::Message(message)).await?,
                NetMessage::Status { height } => {
                    self.peer_heights.insert(from, height);
                }
            },
            NetEvent::Txs { checked, .. } => {
                let store = self.shared.store.clone();
                self.mempool
                    .admit_checked(checked, |k| next_nonce(&store, k));
                self.shared
                    .metrics
                    .mempool_txs
                    .set(self.mempool.len() as i64);
            }
            NetEvent::Blocks { peer, blocks } => self.on_blocks(peer, blocks).await?,
            NetEvent::SyncFailed { .. } => self.sync_in_flight = None,
            NetEvent::Connected(peer) => {
                self.blocks_sent.clear();
                self.peer_heights.entry(peer).or_insert(0);
                self.update_peers();
            }
            NetEvent::Disconnected(peer) => {
                self.peer_heights.remove(&peer);
                self.update_peers();
            }
        }
        Ok(())
    }

    fn update_peers(&self) {
        let peers = self.peer_heights.len();
        self.shared.metrics.peers.set(peers as i64);
        self.shared.update_status(|s| s.peers = peers);
    }

    async fn on_proposal(
        &mut self,
        from: PeerId,
        proposal: SignedProposal,
        block: Block,
    ) -> anyhow::Result<()> {
        if block.hash() != proposal.proposal.value || block.height() != proposal.proposal.height {
            tracing::warn!(peer = %from, "proposal names another block; dropping the peer");
            self.shared.metrics.bad_peer_messages.inc();
            let _ = self.net.send(NetCommand::Disconnect(from)).await;
            return Ok(());
        }
        if block.height() == self.consensus.height() && self.proposed.len() < 64 {
            self.proposed
                .insert(block.hash(), (block, proposal.proposer));
        }
        self.handle(Input::Message(Message::Proposal(proposal)))
            .await
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Submit { checked, reply } => {
                let store = self.shared.store.clone();
                let candidates: Vec<Option<Transaction>> = checked
                    .iter()
                    .map(|c| c.as_ref().ok().map(|(tx, _)| tx.tx().clone()))
                    .collect();
                let answers = self
                    .mempool
                    .admit_checked(checked, |k| next_nonce(&store, k));
                let admitted: Vec<Transaction> = candidates
                    .into_iter()
                    .zip(&answers)
                    .filter_map(|(t, a)| t.filter(|_| a.is_ok()))
                    .collect();
                if !admitted.is_empty() {
                    let _ = self.net.send(NetCommand::PushTxs(admitted)).await;
                }
                self.shared
                    .metrics
                    .mempool_txs
                    .set(self.mempool.len() as i64);
                let _ = reply.send(
                    answers
                        .into_iter()
                        .map(|a| a.map_err(|e| e.to_string()))
                        .collect(),
                );
            }
            Command::NextNonce { key, reply } => {
                let committed = self.next_nonce(&key);
                let _ = reply.send(committed + self.mempool.pending_of(&key) as u64);
            }
            Command::IsPending { hash, reply } => {
                let _ = reply.send(self.mempool.contains(&hash));
            }
        }
    }

    /// Asks a peer that is ahead for the blocks this node lacks.
    async fn maybe_sync(&mut self) -> anyhow::Result<()> {
        let height = self.shared.store.height()?;
        let stuck = self.awaiting_block.is_some();
        let ahead = self
            .peer_heights
            .iter()
            .filter(|(_, h)| {
                **h > height
                    && (stuck
                        || **h > height + 1
                        || self.height_started.elapsed() > Duration::from_secs(3))
            })
            .max_by_key(|(_, h)| **h)
            .map(|(p, _)| *p);
        let in_flight = self
            .sync_in_flight
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        self.shared.update_status(|s| s.syncing = ahead.is_some());
        if let (Some(peer), false) = (ahead, in_flight) {
            self.sync_in_flight = Some(Instant::now());
            let _ = self
                .net
                .send(NetCommand::RequestBlocks {
                    peer,
                    from: height + 1,
                })
                .await;
        }
        Ok(())
    }

    async fn on_blocks(
        &mut self,
        peer: PeerId,
        blocks: Vec<(Block, CommitCertificate)>,
    ) -> anyhow::Result<()> {
        self.sync_in_flight = None;
        for (block, certificate) in blocks {
            let height = self.shared.store.height()?;
            if block.height() != height + 1 {
                continue;
            }
            if self.consensus.height() != block.height() {
                continue;
            }
            let checked = certificate
                .verify_for(
                    &self.shared.chain_id,
                    &self.validators,
                    block.height(),
                    &block.hash(),
                )
                .map_err(|e| e.to_string())
                .and_then(|()| tokio::task::block_in_place(|| self.execute_checked(&block, None)));
            match checked {
                Ok(executed) => {
                    tracing::info!(height = block.height(), peer = %peer, "synced block");
                    let next = self.commit(executed, certificate)?;
                    let outputs = self.begin_height(next)?;
                    self.perform(outputs).await?;
                }
                Err(reason) => {
                    tracing::warn!(peer = %peer, height = block.height(), "peer served a bad block ({reason}); dropping it");
                    self.shared.metrics.bad_peer_messages.inc();
                    let _ = self.net.send(NetCommand::Disconnect(peer)).await;
                    self.peer_heights.remove(&peer);
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
