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
use cbec_ledger::block::{result_leaves, tx_leaves};
use cbec_ledger::{
    codec, merkle, Block, BlockError, CommitCertificate, Hash, Header, Suite, Transaction, TxResult,
};

/// What validators gossip.
#[derive(Debug, Clone, Encode, Decode)]
pub enum NetMessage {
    /// A proposal travels with the block it proposes (shared with the proposer's own
    /// executed block: sending it copies nothing before it is encoded).
    Proposal {
        proposal: SignedProposal,
        block: Arc<Block>,
    },
    /// A proposal with its block's header, results and parent certificate but not its
    /// transactions: peers were pushed those at admission, and put the block back
    /// together from their mempools ([`CheckedCompact::fill`]); a peer missing some asks
    /// for the whole block ([`BlockRequest`]). A block's transactions are most of its
    /// bytes, and gossip copies a message once per peer it sends it to.
    CompactProposal {
        proposal: SignedProposal,
        block: Compact,
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

/// A proposal's whole block, asked of a peer by its hash when a compact proposal could
/// not be put back together here.
#[derive(Debug, Clone, Encode, Decode)]
pub struct BlockRequest {
    pub height: u64,
    pub hash: Hash,
}

/// The block asked for, if the peer holds it.
#[derive(Debug, Clone, Encode, Decode)]
pub struct BlockResponse(pub Option<Arc<Block>>);

/// Transactions pushed to a peer (a frame of its push stream).
#[derive(Debug, Clone, Encode, Decode)]
pub struct TxBatch(pub Vec<Transaction>);

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

/// A block without its transactions, as a compact proposal carries it: encoded from the
/// proposer's whole block, skipping the transactions (nothing is copied); decoded into a
/// block whose transaction list is empty. Only [`CheckedCompact::check`] looks inside
/// one, and only [`CheckedCompact::fill`] makes a block of it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Compact(Arc<Block>);

impl Compact {
    pub fn of(block: Arc<Block>) -> Compact {
        Compact(block)
    }

    pub fn header(&self) -> &Header {
        &self.0.header
    }
}

impl Encode for Compact {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.0.header.encode(encoder)?;
        self.0.last_commit.encode(encoder)?;
        self.0.results.encode(encoder)
    }
}

impl<C> Decode<C> for Compact {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let header = Header::decode(decoder)?;
        let last_commit = Option::<CommitCertificate>::decode(decoder)?;
        let results = Vec::<TxResult>::decode(decoder)?;
        Ok(Compact(Arc::new(Block {
            header,
            txs: Vec::new(),
            results,
            last_commit,
        })))
    }
}

impl<'de, C> bincode::BorrowDecode<'de, C> for Compact {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Self::decode(decoder)
    }
}

/// A compact block whose results were checked against its header (their count and
/// root), with the transaction ids its results name. What is left to check is the
/// transactions, once found: [`CheckedCompact::fill`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedCompact {
    block: Arc<Block>,
    ids: Arc<[Hash]>,
}

impl CheckedCompact {
    pub fn check(compact: Compact, suite: Suite) -> Result<CheckedCompact, BlockError> {
        let block = compact.0;
        if block.header.tx_count != block.results.len() as u64 {
            return Err(BlockError::TxCount {
                header: block.header.tx_count,
                body: block.results.len(),
            });
        }
        let computed = merkle::root(suite, &result_leaves(&block.results));
        if computed != block.header.results_root {
            return Err(BlockError::ResultsRoot {
                computed,
                header: block.header.results_root,
            });
        }
        let ids = block.results.iter().map(|r| r.tx_hash).collect();
        Ok(CheckedCompact { block, ids })
    }

    pub fn header(&self) -> &Header {
        &self.block.header
    }

    /// The id of each transaction the block holds, in order.
    pub fn ids(&self) -> &[Hash] {
        &self.ids
    }

    /// The whole block again, with `txs`, each found under its id in a store keyed by
    /// the hash of its body as this node computed it (so each result names its
    /// transaction's id, as [`Block::check_body`] requires): checked against the
    /// header's transaction root, which covers whole transactions, signatures included.
    /// A mempool may hold a transaction under the same id with another signature (a
    /// client that signed it twice): then the root differs, and the caller asks a peer
    /// for the whole block. Signatures are not checked here: validation checks those of
    /// the transactions this node did not verify before.
    pub fn fill(self, txs: Vec<Transaction>, suite: Suite) -> Result<CheckedBlock, BlockError> {
        if txs.len() != self.ids.len() {
            return Err(BlockError::TxCount {
                header: self.ids.len() as u64,
                body: txs.len(),
            });
        }
        let computed = merkle::root(suite, &tx_leaves(&txs));
        if computed != self.block.header.tx_root {
            return Err(BlockError::TxRoot {
                computed,
                header: self.block.header.tx_root,
            });
        }
        let mut block = Arc::try_unwrap(self.block).unwrap_or_else(|shared| (*shared).clone());
        block.txs = txs;
        Ok(CheckedBlock {
            block: Arc::new(block),
            ids: self.ids,
        })
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
    /// A proposal (verified) with its block less the transactions, whose results match
    /// the header.
    CompactProposal {
        proposal: VerifiedMessage,
        block: Box<CheckedCompact>,
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
            proposal_with_block(proposal, block, chain_id, suite)
        }
        NetMessage::CompactProposal { proposal, block } => {
            named(&proposal, block.header(), suite)?;
            let block = CheckedCompact::check(block, suite)
                .map_err(|e| EdgeFault::BadBody(e.to_string()))?;
            Ok(Inbound::CompactProposal {
                proposal: verify_proposal(proposal, chain_id)?,
                block: Box::new(block),
            })
        }
    }
}

/// A proposal with its whole block (gossiped, or fetched from a peer after a compact
/// proposal): the block must be the one the proposal names, its body the one its header
/// commits to (or a relayer could swap transactions under a valid proposal), and the
/// proposal signed by its proposer.
pub fn proposal_with_block(
    proposal: SignedProposal,
    block: Arc<Block>,
    chain_id: &Hash,
    suite: Suite,
) -> Result<Inbound, EdgeFault> {
    named(&proposal, &block.header, suite)?;
    let block = CheckedBlock::check(block, suite).map_err(|e| EdgeFault::BadBody(e.to_string()))?;
    Ok(Inbound::Proposal {
        proposal: verify_proposal(proposal, chain_id)?,
        block: Some(Box::new(block)),
    })
}

/// The header is the block the proposal names, at its height.
fn named(proposal: &SignedProposal, header: &Header, suite: Suite) -> Result<(), EdgeFault> {
    let carried = header.hash(suite);
    if carried != proposal.proposal.value || header.height != proposal.proposal.height {
        return Err(EdgeFault::WrongBlock {
            named: proposal.proposal.value,
            carried,
        });
    }
    Ok(())
}

fn verify_proposal(
    proposal: SignedProposal,
    chain_id: &Hash,
) -> Result<VerifiedMessage, EdgeFault> {
    let signer = proposal.proposer;
    Message::Proposal(proposal)
        .verify(chain_id)
        .map_err(|_| EdgeFault::BadSignature(signer))
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

    /// A block of two signed transactions, its body matching its header.
    fn block_of_two(key: &KeyPair) -> (Block, Vec<Transaction>) {
        let txs: Vec<Transaction> = (0..2)
            .map(|nonce| {
                let body = cbec_ledger::TxBody {
                    chain_id: CHAIN,
                    sender: key.public(),
                    nonce,
                    call: cbec_ledger::Call {
                        chaincode: "enterprise".into(),
                        method: "file".into(),
                        args: vec![nonce as u8; 40],
                    },
                };
                Transaction::sign(body, key)
            })
            .collect();
        let results: Vec<TxResult> = txs
            .iter()
            .map(|tx| TxResult {
                tx_hash: tx.hash(SUITE),
                outcome: cbec_ledger::Outcome::Accepted { events: vec![] },
            })
            .collect();
        let mut b = block();
        b.header.tx_count = 2;
        b.header.tx_root = merkle::root(SUITE, &tx_leaves(&txs));
        b.header.results_root = merkle::root(SUITE, &result_leaves(&results));
        b.txs = txs.clone();
        b.results = results;
        (b, txs)
    }

    /// A compact proposal leaves the transactions out (their bytes are not sent), passes
    /// the edge, and is filled back into exactly the proposer's block, whose body check
    /// agrees. Each way a compact block can disagree with its header is caught: results
    /// changed, a count changed, a header whose transaction root is not the named
    /// transactions', transactions missing or in another order.
    #[test]
    fn a_compact_proposal_is_filled_back_and_each_mismatch_is_caught() {
        let key = KeyPair::from_seed(&[4; 32]);
        let (b, txs) = block_of_two(&key);
        let compact = |b: &Block| NetMessage::CompactProposal {
            proposal: signed(&key, b.hash(SUITE)),
            block: Compact::of(Arc::new(b.clone())),
        };
        let whole = codec::encode(&NetMessage::Proposal {
            proposal: signed(&key, b.hash(SUITE)),
            block: Arc::new(b.clone()),
        });
        let bytes = codec::encode(&compact(&b));
        assert!(
            bytes.len() + codec::encode(&txs).len() == whole.len(),
            "the transactions are left out: {} against {}",
            bytes.len(),
            whole.len()
        );
        let Ok(Inbound::CompactProposal { block: checked, .. }) = inbound(&bytes, &CHAIN, SUITE)
        else {
            panic!("a good compact proposal passes the edge")
        };
        assert_eq!(checked.ids(), &[txs[0].hash(SUITE), txs[1].hash(SUITE)]);
        let filled = checked.clone().fill(txs.clone(), SUITE).expect("filled");
        assert_eq!(filled.block(), &b);
        assert_eq!(
            filled.block().check_body(SUITE).expect("body"),
            filled.ids()
        );
        // Transactions missing, or in another order.
        assert!(matches!(
            checked.clone().fill(txs[..1].to_vec(), SUITE),
            Err(BlockError::TxCount { .. })
        ));
        let swapped = vec![txs[1].clone(), txs[0].clone()];
        assert!(matches!(
            checked.clone().fill(swapped, SUITE),
            Err(BlockError::TxRoot { .. })
        ));
        // The same transaction under the same id with another signature (as a mempool
        // may hold it): the root covers signatures, so the block is fetched instead.
        let mut resigned = txs.clone();
        resigned[1].signature = Signature([9; 64]);
        assert!(matches!(
            checked.clone().fill(resigned, SUITE),
            Err(BlockError::TxRoot { .. })
        ));
        // A header whose transaction root is not the named transactions' (a proposer
        // lying about its block): the compact form passes the edge (the header is the
        // one signed), filling it fails, and the whole block is then fetched.
        let mut lying = b.clone();
        lying.header.tx_root = Hash([5; 32]);
        let Ok(Inbound::CompactProposal { block: lying, .. }) =
            inbound(&codec::encode(&compact(&lying)), &CHAIN, SUITE)
        else {
            panic!("its header and results agree")
        };
        assert!(matches!(
            lying.fill(txs.clone(), SUITE),
            Err(BlockError::TxRoot { .. })
        ));
        // Results changed under the header, and a count changed.
        let mut changed = compact(&b);
        if let NetMessage::CompactProposal { block, .. } = &mut changed {
            let mut inner = (*block.0).clone();
            inner.results[1].outcome = cbec_ledger::Outcome::Rejected {
                rule: "R4".into(),
                message: "no".into(),
            };
            *block = Compact::of(Arc::new(inner));
        }
        assert!(matches!(
            inbound(&codec::encode(&changed), &CHAIN, SUITE),
            Err(EdgeFault::BadBody(_))
        ));
        let mut fewer = compact(&b);
        if let NetMessage::CompactProposal { block, .. } = &mut fewer {
            let mut inner = (*block.0).clone();
            inner.results.pop();
            *block = Compact::of(Arc::new(inner));
        }
        assert!(matches!(
            inbound(&codec::encode(&fewer), &CHAIN, SUITE),
            Err(EdgeFault::BadBody(_))
        ));
        // Another block's header under the proposal, and a forged signature.
        let mut other = b.clone();
        other.header.time_ms += 1;
        let wrong = NetMessage::CompactProposal {
            proposal: signed(&key, b.hash(SUITE)),
            block: Compact::of(Arc::new(other)),
        };
        assert!(matches!(
            inbound(&codec::encode(&wrong), &CHAIN, SUITE),
            Err(EdgeFault::WrongBlock { .. })
        ));
        let mut forged = signed(&key, b.hash(SUITE));
        forged.signature = Signature([7; 64]);
        let forged = NetMessage::CompactProposal {
            proposal: forged,
            block: Compact::of(Arc::new(b)),
        };
        assert!(matches!(
            inbound(&codec::encode(&forged), &CHAIN, SUITE),
            Err(EdgeFault::BadSignature(_))
        ));
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
