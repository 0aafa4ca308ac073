//! The narrow seam through which tests make a node Byzantine, as Malachite's test
//! `Middleware` does: an [`Adversary`] sees everything the honest host is about to send
//! and every sync request it is about to answer, and may send something else instead.
//!
//! Production runs [`Honest`]. Nothing in a configuration file reaches this seam: only a
//! program that links the node crate and passes its own adversary (a test binary, the
//! node simulation) can make a node misbehave.

use cbec_ledger::{Hash, KeyPair, Suite};

use crate::host::Effect;
use crate::wire::{SyncRequest, SyncResponse};

/// Something a node sends: an honest effect, or bytes gossiped as they are. (Values of
/// this live only between the host and the driver: their size does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outgoing<P> {
    Effect(Effect<P>),
    /// Raw bytes on the gossip topic (garbage, forgeries, replays).
    Raw(Vec<u8>),
}

/// What an adversary knows of its node when it decides.
#[derive(Debug)]
pub struct NodeView<'a> {
    /// The node's validator key: a Byzantine validator signs what it likes.
    pub key: &'a KeyPair,
    pub chain_id: Hash,
    pub suite: Suite,
    pub height: u64,
    pub round: u32,
}

/// A way to misbehave. Every method's default is honest.
pub trait Adversary<P>: Send + Sync {
    /// What the node sends instead of `effect`.
    fn outgoing(&self, effect: Effect<P>, node: &NodeView<'_>) -> Vec<Outgoing<P>> {
        let _ = node;
        vec![Outgoing::Effect(effect)]
    }

    /// The node's answer to a peer's sync request instead of the honest one (`None`:
    /// answer honestly).
    fn serve_sync(&self, request: &SyncRequest) -> Option<SyncResponse> {
        let _ = request;
        None
    }

    /// Whether the node answers peers' requests for its current proposals' blocks.
    fn serves_blocks(&self) -> bool {
        true
    }
}

/// Follows the protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Honest;

impl<P> Adversary<P> for Honest {}

/// Byzantine behaviours for the node simulation and the end-to-end Byzantine node, each
/// one of the attacks the host must survive. Deterministic from its seed.
pub mod byzantine {
    use std::sync::Mutex;

    use cbec_consensus::types::proposal_sign_bytes;
    use cbec_consensus::{Message, Proposal, SignedProposal, SignedVote, Vote};
    use cbec_ledger::{codec, merkle, Block, Hash, Header, Suite, Transaction, TxResult};

    use super::{Adversary, NodeView, Outgoing};
    use crate::host::Effect;
    use crate::wire::{NetMessage, SyncRequest, SyncResponse};

    /// What a Byzantine node does (any combination).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Behaviour {
        /// Signs proposals of junk blocks for this and the next rounds, whether or not
        /// it proposes them: a flood meant to crowd out the real proposal.
        pub junk_proposals: u32,
        /// Sends its own proposals without their blocks, and serves no block asked of it.
        pub withhold_blocks: bool,
        /// Claims `u64::MAX` as its height and serves no blocks.
        pub lie_about_height: bool,
        /// Sends a second, conflicting vote for every vote.
        pub equivocate: bool,
        /// Sends messages of earlier heights again.
        pub replay: bool,
        /// Gossips undecodable bytes.
        pub garbage: bool,
    }

    impl Behaviour {
        /// Every attack at once.
        pub fn all() -> Behaviour {
            Behaviour {
                junk_proposals: 3,
                withhold_blocks: true,
                lie_about_height: true,
                equivocate: true,
                replay: true,
                garbage: true,
            }
        }
    }

    /// A validator that misbehaves as its [`Behaviour`] says.
    #[derive(Debug)]
    pub struct Byzantine {
        behaviour: Behaviour,
        state: Mutex<State>,
    }

    #[derive(Debug)]
    struct State {
        rng: u64,
        /// Messages of earlier heights, for replay (bounded).
        old: Vec<Vec<u8>>,
    }

    const OLD_MAX: usize = 64;

    impl Byzantine {
        pub fn new(behaviour: Behaviour, seed: u64) -> Byzantine {
            Byzantine {
                behaviour,
                state: Mutex::new(State {
                    rng: seed ^ 0xb42a_0000_cbec_0001,
                    old: Vec::new(),
                }),
            }
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl State {
        fn next(&mut self) -> u64 {
            // SplitMix64.
            self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// A block of `height` whose body matches its header (it passes the network edge)
    /// and whose state root is nonsense (it fails validation).
    fn junk_block(
        chain_id: Hash,
        suite: Suite,
        height: u64,
        noise: u64,
        proposer: cbec_ledger::PublicKey,
    ) -> Block {
        let mut root = [0u8; 32];
        root[..8].copy_from_slice(&noise.to_be_bytes());
        Block {
            header: Header {
                chain_id,
                height,
                time_ms: noise,
                previous: Hash(root),
                proposer,
                tx_count: 0,
                tx_root: merkle::root::<Vec<u8>>(suite, &[]),
                results_root: merkle::root::<Vec<u8>>(suite, &[]),
                state_root: Hash(root),
                validators_hash: Hash(root),
            },
            txs: Vec::<Transaction>::new(),
            results: Vec::<TxResult>::new(),
            last_commit: None,
        }
    }

    fn sign_proposal(node: &NodeView<'_>, proposal: Proposal) -> SignedProposal {
        let signature = node
            .key
            .sign(&proposal_sign_bytes(&node.chain_id, &proposal));
        SignedProposal {
            proposal,
            proposer: node.key.public(),
            signature,
        }
    }

    impl<P> Adversary<P> for Byzantine {
        fn outgoing(&self, effect: Effect<P>, node: &NodeView<'_>) -> Vec<Outgoing<P>> {
            let b = self.behaviour;
            let mut state = self.state();
            let mut out = Vec::new();
            let effect = match effect {
                Effect::Broadcast(NetMessage::Status { .. }) if b.lie_about_height => {
                    Effect::Broadcast(NetMessage::Status { height: u64::MAX })
                }
                Effect::Broadcast(
                    NetMessage::Proposal { proposal, .. }
                    | NetMessage::CompactProposal { proposal, .. },
                ) if b.withhold_blocks => {
                    Effect::Broadcast(NetMessage::Consensus(Message::Proposal(proposal)))
                }
                Effect::Broadcast(NetMessage::Consensus(Message::Vote(vote))) if b.equivocate => {
                    let other = Vote {
                        value: match vote.vote.value {
                            Some(_) => None,
                            None => Some(Hash([0xee; 32])),
                        },
                        ..vote.vote
                    };
                    let signature = node.key.sign(&other.sign_bytes(&node.chain_id));
                    let conflicting = NetMessage::Consensus(Message::Vote(SignedVote {
                        vote: other,
                        validator: node.key.public(),
                        signature,
                    }));
                    out.push(Outgoing::Raw(codec::encode(&conflicting)));
                    Effect::Broadcast(NetMessage::Consensus(Message::Vote(vote)))
                }
                other => other,
            };
            if let Effect::Broadcast(message) = &effect {
                if b.replay {
                    let bytes = codec::encode(message);
                    if state.old.len() >= OLD_MAX {
                        let i = (state.next() % OLD_MAX as u64) as usize;
                        state.old[i] = bytes;
                    } else {
                        state.old.push(bytes);
                    }
                    let i = (state.next() % state.old.len() as u64) as usize;
                    out.push(Outgoing::Raw(state.old[i].clone()));
                }
                for k in 0..b.junk_proposals {
                    let noise = state.next();
                    let block = junk_block(
                        node.chain_id,
                        node.suite,
                        node.height,
                        noise,
                        node.key.public(),
                    );
                    let proposal = sign_proposal(
                        node,
                        Proposal {
                            height: node.height,
                            round: node.round + k % 3,
                            value: block.hash(node.suite),
                            valid_round: None,
                        },
                    );
                    let message = NetMessage::Proposal {
                        proposal,
                        block: std::sync::Arc::new(block),
                    };
                    out.push(Outgoing::Raw(codec::encode(&message)));
                }
                if b.garbage {
                    let len = 1 + (state.next() % 200) as usize;
                    let bytes: Vec<u8> = (0..len).map(|_| state.next() as u8).collect();
                    out.push(Outgoing::Raw(bytes));
                }
            }
            out.push(Outgoing::Effect(effect));
            out
        }

        fn serve_sync(&self, _request: &SyncRequest) -> Option<SyncResponse> {
            self.behaviour.lie_about_height.then(SyncResponse::default)
        }

        fn serves_blocks(&self) -> bool {
            !self.behaviour.withhold_blocks
        }
    }
}
