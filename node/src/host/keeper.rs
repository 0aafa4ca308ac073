//! The proposal keeper: which proposals and blocks a node holds at a height.
//!
//! As Malachite's `ProposalKeeper` does: at most one proposal per round, and only from
//! that round's proposer (the precondition the caller states by passing the expected
//! proposer); a second, different proposal from it is equivocation, kept as evidence.
//! A block is held only together with a proposal that names its hash, so blocks that no
//! proposer vouched for cannot crowd out the real one. A proposal whose block has not
//! arrived is *pending*, never invalid: it is handed to consensus once the block is here.
//!
//! Bounded: proposals for rounds beyond [`cbec_consensus::machine::ROUND_WINDOW`] ahead
//! of the current round are refused, and at most [`NEXT_HEIGHT_MAX`] proposals for the
//! next height wait for it.

use std::collections::BTreeMap;

use cbec_consensus::{Round, SignedProposal, VerifiedMessage};
use cbec_ledger::{Block, Hash};

use crate::wire::CheckedBlock;

/// Proposals for the next height kept until it starts (one per round, early rounds).
pub const NEXT_HEIGHT_MAX: usize = 4;

/// What the keeper made of a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// A new proposal, with its block: consensus may see it now.
    Ready,
    /// A new proposal whose block is not here yet.
    Pending,
    /// This round's proposal had been waiting for this block: now ready.
    BlockArrived,
    /// Seen before (gossip repeats); nothing changed.
    Duplicate,
    /// The round's proposer proposed something else before: the first one stays, both
    /// are the evidence.
    Equivocation {
        first: Box<SignedProposal>,
        second: Box<SignedProposal>,
    },
    /// Not from this round's proposer, or not for this height: dropped.
    WrongProposer,
    /// Too far ahead of the current round, or the next height's buffer is full.
    OutOfWindow,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Always a proposal (see [`ProposalKeeper::offer`]).
    proposal: VerifiedMessage,
    /// Handed to consensus (it had its block then).
    delivered: bool,
}

impl Entry {
    fn signed(&self) -> &SignedProposal {
        signed(&self.proposal)
    }
}

fn signed(message: &VerifiedMessage) -> &SignedProposal {
    // Entries are made only from proposals (`offer` refuses anything else).
    message.proposal().expect("the keeper holds proposals")
}

/// The proposals of one height, and the blocks they name.
#[derive(Debug, Default)]
pub struct ProposalKeeper {
    height: u64,
    rounds: BTreeMap<Round, Entry>,
    /// Only blocks that a kept proposal names, their bodies checked.
    blocks: BTreeMap<Hash, CheckedBlock>,
    /// Early proposals (with blocks) for `height + 1`.
    next: Vec<(VerifiedMessage, CheckedBlock)>,
}

impl ProposalKeeper {
    /// Starts `height`: what was kept for it early comes back to be offered again
    /// (its proposer is checked again then, against that height's schedule).
    pub fn start(&mut self, height: u64) -> Vec<(VerifiedMessage, CheckedBlock)> {
        let early = std::mem::take(&mut self.next);
        self.height = height;
        self.rounds.clear();
        self.blocks.clear();
        early
            .into_iter()
            .filter(|(p, _)| signed(p).proposal.height == height)
            .collect()
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    /// Offers a proposal whose signature was verified (at the network edge), with its
    /// block if it travelled with it. `expected` is the proposer of the proposal's round
    /// at this height; `round` is consensus's current round.
    pub fn offer(
        &mut self,
        proposal: VerifiedMessage,
        block: Option<CheckedBlock>,
        expected: Option<cbec_ledger::PublicKey>,
        round: Round,
    ) -> Kept {
        let Some(signed_proposal) = proposal.proposal() else {
            return Kept::WrongProposer; // a vote is not a proposal
        };
        let p = &signed_proposal.proposal;
        // The network edge checked that a carried block's header hashes to `p.value`.
        if p.height == self.height + 1 {
            return self.keep_for_next(proposal, block);
        }
        if p.height != self.height || expected != Some(signed_proposal.proposer) {
            return Kept::WrongProposer;
        }
        if p.round > round.saturating_add(cbec_consensus::machine::ROUND_WINDOW) {
            return Kept::OutOfWindow;
        }
        if let Some(entry) = self.rounds.get(&p.round) {
            if entry.signed().proposal != *p {
                return Kept::Equivocation {
                    first: Box::new(entry.signed().clone()),
                    second: Box::new(signed_proposal.clone()),
                };
            }
            // The same proposal again, perhaps now with the block it lacked.
            return match block {
                Some(b) if !self.blocks.contains_key(&p.value) => {
                    self.blocks.insert(p.value, b);
                    Kept::BlockArrived
                }
                _ => Kept::Duplicate,
            };
        }
        let (value, round) = (p.value, p.round);
        self.rounds.insert(
            round,
            Entry {
                proposal,
                delivered: false,
            },
        );
        if let Some(b) = block {
            self.blocks.insert(value, b);
        }
        if self.blocks.contains_key(&value) {
            Kept::Ready
        } else {
            Kept::Pending
        }
    }

    fn keep_for_next(&mut self, proposal: VerifiedMessage, block: Option<CheckedBlock>) -> Kept {
        let Some(block) = block else {
            return Kept::OutOfWindow; // without its block it is of no use early
        };
        let round = signed(&proposal).proposal.round;
        if let Some((first, _)) = self
            .next
            .iter()
            .find(|(q, _)| signed(q).proposal.round == round)
        {
            return if signed(first).proposal == signed(&proposal).proposal {
                Kept::Duplicate
            } else {
                Kept::OutOfWindow // judged once its height starts, by then's schedule
            };
        }
        if self.next.len() >= NEXT_HEIGHT_MAX {
            return Kept::OutOfWindow;
        }
        self.next.push((proposal, block));
        Kept::Pending
    }

    /// Keeps this validator's own block, whose hash is `hash` (it proposes it;
    /// consensus signs the proposal).
    pub fn keep_own_block(&mut self, hash: Hash, block: CheckedBlock) {
        self.blocks.insert(hash, block);
    }

    /// The block a kept proposal names.
    pub fn block(&self, value: &Hash) -> Option<&Block> {
        self.blocks.get(value).map(CheckedBlock::block)
    }

    /// The block a kept proposal names, with the ids its body check computed.
    pub fn checked(&self, value: &Hash) -> Option<&CheckedBlock> {
        self.blocks.get(value)
    }

    /// Proposals that have their block and were not yet handed to consensus; marks them
    /// handed.
    pub fn take_ready(&mut self) -> Vec<VerifiedMessage> {
        let blocks = &self.blocks;
        self.rounds
            .values_mut()
            .filter(|e| !e.delivered && blocks.contains_key(&e.signed().proposal.value))
            .map(|e| {
                e.delivered = true;
                e.proposal.clone()
            })
            .collect()
    }

    /// The proposal kept for `round`, if any.
    pub fn proposal(&self, round: Round) -> Option<&SignedProposal> {
        self.rounds.get(&round).map(Entry::signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::Suite;

    const SUITE: Suite = Suite::Ed25519Sha256;
    use cbec_consensus::{types::proposal_sign_bytes, Message, Proposal};
    use cbec_ledger::{merkle, Header, KeyPair, PublicKey, Transaction, TxResult};

    const CHAIN: Hash = Hash([1; 32]);

    fn block(height: u64, tag: u8) -> Block {
        Block {
            header: Header {
                chain_id: CHAIN,
                height,
                time_ms: u64::from(tag),
                previous: Hash([0; 32]),
                proposer: PublicKey::Ed25519([2; 32]),
                tx_count: 0,
                tx_root: merkle::root::<Vec<u8>>(SUITE, &[]),
                results_root: merkle::root::<Vec<u8>>(SUITE, &[]),
                state_root: Hash([tag; 32]),
                validators_hash: Hash::default(),
            },
            txs: Vec::<Transaction>::new(),
            results: Vec::<TxResult>::new(),
            last_commit: None,
        }
    }

    fn checked(block: Block) -> CheckedBlock {
        CheckedBlock::check(block, SUITE).expect("the body matches its header")
    }

    fn proposal(by: &KeyPair, height: u64, round: Round, value: Hash) -> VerifiedMessage {
        let proposal = Proposal {
            height,
            round,
            value,
            valid_round: None,
        };
        let signature = by.sign(&proposal_sign_bytes(&CHAIN, &proposal));
        Message::Proposal(SignedProposal {
            proposal,
            proposer: by.public(),
            signature,
        })
        .verify(&CHAIN)
        .expect("signed")
    }

    #[test]
    fn one_proposal_per_round_and_only_from_its_proposer() {
        let honest = KeyPair::from_seed(&[1; 32]);
        let faulty = KeyPair::from_seed(&[2; 32]);
        let mut keeper = ProposalKeeper::default();
        keeper.start(5);
        // A flood of junk from a validator that does not propose round 0: nothing kept.
        for tag in 0..100u8 {
            let b = block(5, tag);
            let kept = keeper.offer(
                proposal(&faulty, 5, 0, b.hash(SUITE)),
                Some(checked(b)),
                Some(honest.public()),
                0,
            );
            assert_eq!(kept, Kept::WrongProposer);
        }
        assert!(keeper.blocks.is_empty(), "no block without its proposer");
        let real = block(5, 200);
        let kept = keeper.offer(
            proposal(&honest, 5, 0, real.hash(SUITE)),
            Some(checked(real.clone())),
            Some(honest.public()),
            0,
        );
        assert_eq!(kept, Kept::Ready);
        assert_eq!(keeper.block(&real.hash(SUITE)), Some(&real));
        // Its proposer equivocating: the first stays, the second is evidence.
        let other = block(5, 201);
        let kept = keeper.offer(
            proposal(&honest, 5, 0, other.hash(SUITE)),
            Some(checked(other.clone())),
            Some(honest.public()),
            0,
        );
        assert!(matches!(kept, Kept::Equivocation { .. }));
        assert!(keeper.block(&other.hash(SUITE)).is_none());
        assert_eq!(keeper.take_ready().len(), 1);
        assert!(keeper.take_ready().is_empty(), "handed over once");
    }

    #[test]
    fn a_proposal_without_its_block_waits_and_is_never_invalid() {
        let p = KeyPair::from_seed(&[1; 32]);
        let mut keeper = ProposalKeeper::default();
        keeper.start(3);
        let b = block(3, 7);
        let signed = proposal(&p, 3, 1, b.hash(SUITE));
        assert_eq!(
            keeper.offer(signed.clone(), None, Some(p.public()), 0),
            Kept::Pending
        );
        assert!(keeper.take_ready().is_empty(), "not without its block");
        assert_eq!(
            keeper.offer(
                signed.clone(),
                Some(checked(b.clone())),
                Some(p.public()),
                0
            ),
            Kept::BlockArrived
        );
        assert_eq!(keeper.take_ready(), vec![signed]);
        assert!(keeper.proposal(1).is_some());
    }

    #[test]
    fn bounded_ahead_and_for_the_next_height() {
        let p = KeyPair::from_seed(&[1; 32]);
        let mut keeper = ProposalKeeper::default();
        keeper.start(3);
        let far = block(3, 1);
        assert_eq!(
            keeper.offer(
                proposal(&p, 3, 65, far.hash(SUITE)),
                Some(checked(far)),
                Some(p.public()),
                0
            ),
            Kept::OutOfWindow
        );
        for round in 0..10 {
            let b = block(4, round as u8);
            let kept = keeper.offer(
                proposal(&p, 4, round, b.hash(SUITE)),
                Some(checked(b)),
                None,
                0,
            );
            let expected = if (round as usize) < NEXT_HEIGHT_MAX {
                Kept::Pending
            } else {
                Kept::OutOfWindow
            };
            assert_eq!(kept, expected, "round {round}");
        }
        let early = keeper.start(4);
        assert_eq!(early.len(), NEXT_HEIGHT_MAX);
        assert_eq!(keeper.height(), 4);
    }
}
