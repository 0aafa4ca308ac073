//! What validators send each other, and the edge where bytes from a peer become typed,
//! verified messages.
//!
//! [`inbound`] is the only way from gossiped bytes to an [`Inbound`]: it decodes, checks
//! that a proposal's block is the block the proposal names and that the block's body
//! matches its header, and verifies the signer's signature. Nothing behind it checks
//! those again, and nothing unchecked gets past it. A message that fails here was made
//! by the peer that delivered it (an honest node relays only what passed), so the
//! network penalises that connection: never the author a message claims.

use std::sync::Arc;

use bincode::{Decode, Encode};
use cbec_consensus::{Message, SignedProposal, VerifiedMessage};
use cbec_ledger::{codec, Block, BlockError, CommitCertificate, Hash, Suite, Transaction};

/// What validators gossip.
#[derive(Debug, Clone, Encode, Decode)]
pub enum NetMessage {
    /// A proposal travels with the block it proposes (shared with the proposer's own
    /// executed block: sending it copies nothing before it is encoded).
    Proposal {
        proposal: SignedProposal,
        block: Arc<Block>,
    },
    /// Votes (and proposals re-sent without their block, which peers already hold).
    Consensus(Message),
    /// The sender's last committed height, so laggards know to sync.
    Status { height: u64 },
}

/// Blocks a sync response may carry.
pub const SYNC_BLOCKS_MAX: u32 = 64;
/// Largest frame on the request-response protocols.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Block sync: blocks from a height on.
#[derive(Debug, Clone, Encode, Decode)]
pub struct SyncRequest {
    pub from: u64,
    pub max: u32,
}

#[derive(Debug, Clone, Default, Encode, Decode)]
pub struct SyncResponse {
    pub blocks: Vec<(Block, CommitCertificate)>,
}

/// Transactions pushed to a peer, which acknowledges them.
#[derive(Debug, Clone, Encode, Decode)]
pub struct TxBatch(pub Vec<Transaction>);

#[derive(Debug, Clone, Encode, Decode)]
pub struct TxAck;

/// A block whose body was checked against its header ([`Block::check_body`]: counts,
/// each result naming its transaction, the transaction and result roots), with the
/// transaction ids that check computed. Only [`CheckedBlock::check`] makes one, so
/// holding one is holding that proof: a block that crossed the edge is checked there
/// once, and validation takes its ids instead of encoding and hashing every transaction
/// again. The block is shared, not copied: the keeper, validation and the store hold the
/// one the edge decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedBlock {
    block: Arc<Block>,
    ids: Arc<[Hash]>,
}

impl CheckedBlock {
    pub fn check(block: impl Into<Arc<Block>>, suite: Suite) -> Result<CheckedBlock, BlockError> {
        let block = block.into();
        let ids = block.check_body(suite)?;
        Ok(CheckedBlock {
            block,
            ids: ids.into(),
        })
    }

    pub fn block(&self) -> &Block {
        &self.block
    }

    /// The id (hash) of each transaction, in the block's order.
    pub fn ids(&self) -> &[Hash] {
        &self.ids
    }

    /// The block, shared.
    pub fn shared(&self) -> Arc<Block> {
        self.block.clone()
    }
}

/// A gossiped message past the edge: decoded, consistent, signature verified.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A proposal (verified), with its block if it travelled with it. The block's hash
    /// is the proposal's value and its body matches its header.
    Proposal {
        proposal: VerifiedMessage,
        block: Option<Box<CheckedBlock>>,
    },
    Vote(VerifiedMessage),
    Status {
        height: u64,
    },
}

/// Why bytes from a peer were refused at the edge. Each is the delivering peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeFault {
    #[error("undecodable message: {0}")]
    Undecodable(String),
    #[error("proposal names block {named} but carries block {carried}")]
    WrongBlock { named: Hash, carried: Hash },
    #[error("carried block's body does not match its header: {0}")]
    BadBody(String),
    #[error("signature of {0} does not verify")]
    BadSignature(cbec_ledger::PublicKey),
}

/// Gossip carries each publication in an envelope: a sequence number, then the
/// message. Gossipsub names a message by the hash of its bytes (so nobody can claim an
/// id before its message exists), and drops a publication whose id it saw before: the
/// sequence number lets consensus rebroadcast the very same vote.
pub fn envelope(seq: u64, message: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + message.len());
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(message);
    data
}

/// The message inside a gossip envelope.
pub fn open(data: &[u8]) -> Result<&[u8], EdgeFault> {
    data.get(8..)
        .ok_or_else(|| EdgeFault::Undecodable("shorter than a gossip envelope".into()))
}

/// Bytes gossiped by a peer, to a verified message, or the fault they show.
pub fn inbound(bytes: &[u8], chain_id: &Hash, suite: Suite) -> Result<Inbound, EdgeFault> {
    let message =
        codec::decode::<NetMessage>(bytes).map_err(|e| EdgeFault::Undecodable(e.to_string()))?;
    match message {
        NetMessage::Status { height } => Ok(Inbound::Status { height }),
        NetMessage::Consensus(message) => {
            let signer = message.sender();
            let verified = message
                .verify(chain_id)
                .map_err(|_| EdgeFault::BadSignature(signer))?;
            Ok(match verified.message() {
                Message::Proposal(_) => Inbound::Proposal {
                    proposal: verified,
                    block: None,
                },
                Message::Vote(_) => Inbound::Vote(verified),
            })
        }
        NetMessage::Proposal { proposal, block } => {
            let carried = block.hash(suite);
            if carried != proposal.proposal.value || block.height() != proposal.proposal.height {
                return Err(EdgeFault::WrongBlock {
                    named: proposal.proposal.value,
                    carried,
                });
            }
            // The header hash names the block; the body must be the one it commits to,
            // or a relayer could swap transactions under a valid proposal.
            let block =
                CheckedBlock::check(block, suite).map_err(|e| EdgeFault::BadBody(e.to_string()))?;
            let signer = proposal.proposer;
            let verified = Message::Proposal(proposal)
                .verify(chain_id)
                .map_err(|_| EdgeFault::BadSignature(signer))?;
            Ok(Inbound::Proposal {
                proposal: verified,
                block: Some(Box::new(block)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::Suite;

    const SUITE: Suite = Suite::Ed25519Sha256;
    use cbec_consensus::{types::proposal_sign_bytes, Proposal};
    use cbec_ledger::{merkle, Header, KeyPair, PublicKey, Signature, TxResult};

    const CHAIN: Hash = Hash([9; 32]);

    fn block() -> Block {
        Block {
            header: Header {
                chain_id: CHAIN,
                height: 2,
                time_ms: 5,
                previous: Hash([0; 32]),
                proposer: PublicKey::Ed25519([2; 32]),
                tx_count: 0,
                tx_root: merkle::root::<Vec<u8>>(SUITE, &[]),
                results_root: merkle::root::<Vec<u8>>(SUITE, &[]),
                state_root: Hash([3; 32]),
                validators_hash: Hash::default(),
            },
            txs: Vec::<Transaction>::new(),
            results: Vec::<TxResult>::new(),
            last_commit: None,
        }
    }

    fn signed(key: &KeyPair, value: Hash) -> SignedProposal {
        let proposal = Proposal {
            height: 2,
            round: 0,
            value,
            valid_round: None,
        };
        let signature = key.sign(&proposal_sign_bytes(&CHAIN, &proposal));
        SignedProposal {
            proposal,
            proposer: key.public(),
            signature,
        }
    }

    #[test]
    fn a_good_proposal_passes_and_every_fault_is_named() {
        let key = KeyPair::from_seed(&[4; 32]);
        let b = block();
        let good = NetMessage::Proposal {
            proposal: signed(&key, b.hash(SUITE)),
            block: Arc::new(b.clone()),
        };
        assert!(matches!(
            inbound(&codec::encode(&good), &CHAIN, SUITE),
            Ok(Inbound::Proposal { block: Some(_), .. })
        ));
        // Another block under the proposal.
        let mut other = b.clone();
        other.header.time_ms += 1;
        let wrong = NetMessage::Proposal {
            proposal: signed(&key, b.hash(SUITE)),
            block: Arc::new(other),
        };
        assert!(matches!(
            inbound(&codec::encode(&wrong), &CHAIN, SUITE),
            Err(EdgeFault::WrongBlock { .. })
        ));
        // The named header with another body.
        let mut swapped = b.clone();
        swapped.results.push(TxResult {
            tx_hash: Hash([1; 32]),
            outcome: cbec_ledger::Outcome::Accepted { events: vec![] },
        });
        let swapped = NetMessage::Proposal {
            proposal: signed(&key, b.hash(SUITE)),
            block: Arc::new(swapped),
        };
        assert!(matches!(
            inbound(&codec::encode(&swapped), &CHAIN, SUITE),
            Err(EdgeFault::BadBody(_))
        ));
        // A forged signature, with and without the block.
        let mut forged = signed(&key, b.hash(SUITE));
        forged.signature = Signature([7; 64]);
        let with_block = NetMessage::Proposal {
            proposal: forged.clone(),
            block: Arc::new(b),
        };
        assert!(matches!(
            inbound(&codec::encode(&with_block), &CHAIN, SUITE),
            Err(EdgeFault::BadSignature(_))
        ));
        let alone = NetMessage::Consensus(Message::Proposal(forged));
        assert!(matches!(
            inbound(&codec::encode(&alone), &CHAIN, SUITE),
            Err(EdgeFault::BadSignature(_))
        ));
        // Garbage.
        assert!(matches!(
            inbound(&[0xff; 40], &CHAIN, SUITE),
            Err(EdgeFault::Undecodable(_))
        ));
        // Another chain's signature.
        let other_chain = NetMessage::Consensus(Message::Proposal(signed(&key, Hash([1; 32]))));
        assert!(inbound(&codec::encode(&other_chain), &Hash([8; 32]), SUITE).is_err());
    }
}
