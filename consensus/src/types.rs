//! Consensus messages, what each validator signs, and their verification.

use bincode::{Decode, Encode};
use cbec_ledger::hash::tag;
use cbec_ledger::{codec, vote_sign_bytes, Hash, KeyPair, PublicKey, Signature, VoteKind};
use serde::{Deserialize, Serialize};

pub type Height = u64;
pub type Round = u32;

/// `PROPOSAL(h, r, v, vr)`: the proposer of round `r` proposes the value with hash `value`.
/// `valid_round` is Algorithm 1's `vr` (`None` is -1).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub value: Hash,
    pub valid_round: Option<Round>,
}

/// `PREVOTE(h, r, id(v))` or `PRECOMMIT(h, r, id(v))`; `value: None` is a vote for nil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Vote {
    pub height: Height,
    pub round: Round,
    pub kind: VoteKind,
    pub value: Option<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SignedProposal {
    pub proposal: Proposal,
    pub proposer: PublicKey,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub validator: PublicKey,
    pub signature: Signature,
}

/// What validators send each other.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum Message {
    Proposal(SignedProposal),
    Vote(SignedVote),
}

impl Message {
    pub fn height(&self) -> Height {
        match self {
            Message::Proposal(p) => p.proposal.height,
            Message::Vote(v) => v.vote.height,
        }
    }

    pub fn round(&self) -> Round {
        match self {
            Message::Proposal(p) => p.proposal.round,
            Message::Vote(v) => v.vote.round,
        }
    }

    /// The signing step this message occupies.
    pub fn sign_step(&self) -> crate::safety::SignStep {
        match self {
            Message::Proposal(_) => crate::safety::SignStep::Propose,
            Message::Vote(v) => match v.vote.kind {
                VoteKind::Prevote => crate::safety::SignStep::Prevote,
                VoteKind::Precommit => crate::safety::SignStep::Precommit,
            },
        }
    }

    pub fn sender(&self) -> PublicKey {
        match self {
            Message::Proposal(p) => p.proposer,
            Message::Vote(v) => v.validator,
        }
    }
}

impl Message {
    /// Checks the signature (membership in the validator set is the state machine's
    /// check). A host that verifies in batches at the network edge hands the result in
    /// as `Input::Verified`.
    #[allow(clippy::result_large_err)] // the message is handed back, not copied around
    pub fn verify(self, chain_id: &Hash) -> Result<VerifiedMessage, Message> {
        let authentic = match &self {
            Message::Proposal(p) => p.verify_signature(chain_id),
            Message::Vote(v) => v.verify_signature(chain_id),
        };
        if authentic {
            Ok(VerifiedMessage(self))
        } else {
            Err(self)
        }
    }
}

/// A message whose signature was checked. Made only by [`Message::verify`] (and, inside
/// this crate, by the simulator's verification cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMessage(Message);

impl VerifiedMessage {
    pub fn message(&self) -> &Message {
        &self.0
    }

    /// The proposal, if this is one.
    pub fn proposal(&self) -> Option<&SignedProposal> {
        match &self.0 {
            Message::Proposal(p) => Some(p),
            Message::Vote(_) => None,
        }
    }

    pub fn into_inner(self) -> Message {
        self.0
    }

    /// For the simulator, which verified these exact bytes before.
    pub(crate) fn already_verified(message: Message) -> VerifiedMessage {
        VerifiedMessage(message)
    }
}

/// The bytes a proposer signs: domain tag, chain, height, round, value, valid round.
pub fn proposal_sign_bytes(chain_id: &Hash, p: &Proposal) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + tag::PROPOSAL.len() + 96);
    bytes.push(tag::PROPOSAL.len() as u8);
    bytes.extend_from_slice(tag::PROPOSAL.as_bytes());
    bytes.extend_from_slice(&codec::encode(&(
        chain_id,
        p.height,
        p.round,
        p.value,
        p.valid_round,
    )));
    bytes
}

impl Vote {
    pub fn sign_bytes(&self, chain_id: &Hash) -> Vec<u8> {
        vote_sign_bytes(
            chain_id,
            self.height,
            self.round,
            self.kind,
            self.value.as_ref(),
        )
    }
}

impl SignedProposal {
    pub fn verify_signature(&self, chain_id: &Hash) -> bool {
        self.proposer
            .verify(
                &proposal_sign_bytes(chain_id, &self.proposal),
                &self.signature,
            )
            .is_ok()
    }
}

impl SignedVote {
    pub fn verify_signature(&self, chain_id: &Hash) -> bool {
        self.validator
            .verify(&self.vote.sign_bytes(chain_id), &self.signature)
            .is_ok()
    }
}

/// Signs consensus messages with the validator key. The node plugs in its key (or a
/// remote signer); the state machine never sees the secret.
pub trait Signer {
    fn public_key(&self) -> PublicKey;
    fn sign(&self, message: &[u8]) -> Signature;
}

impl Signer for KeyPair {
    fn public_key(&self) -> PublicKey {
        self.public()
    }
    fn sign(&self, message: &[u8]) -> Signature {
        KeyPair::sign(self, message)
    }
}

/// Proof that a validator signed two different things for one height, round and step.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum Evidence {
    ConflictingVotes {
        first: SignedVote,
        second: SignedVote,
    },
    ConflictingProposals {
        first: SignedProposal,
        second: SignedProposal,
    },
}

impl Evidence {
    pub fn offender(&self) -> PublicKey {
        match self {
            Evidence::ConflictingVotes { first, .. } => first.validator,
            Evidence::ConflictingProposals { first, .. } => first.proposer,
        }
    }
}
