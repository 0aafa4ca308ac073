//! Votes of one height, tallied per round, kind and value, with equivocation detection.

use std::collections::BTreeMap;

use cbec_ledger::{Hash, PublicKey, VoteKind};

use crate::types::{Round, SignedVote};

/// Distinct values one validator may vote for in one round and step before further
/// ones are dropped (only an equivocator sends more than one).
pub const VALUES_PER_VALIDATOR_MAX: usize = 4;

/// The votes of one kind in one round.
///
/// As in the paper, "2f+1 ⟨PREVOTE, h, r, id(v)⟩" counts every validator that sent a
/// prevote for `v`, even one that also sent a conflicting vote: if only the first vote
/// of an equivocator counted, it could deny honest validators a polka that others saw,
/// and stall the height. "2f+1 ⟨PREVOTE, h, r, ∗⟩" counts each validator once.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    votes: BTreeMap<PublicKey, Vec<SignedVote>>,
    power_by_value: BTreeMap<Option<Hash>, u64>,
    power_total: u64,
}

/// What adding a vote did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// The same vote again (gossip repeats itself): nothing changed.
    Duplicate,
    /// The validator already voted differently here: evidence against it. `counted`
    /// says whether the new vote was kept (see [`VALUES_PER_VALIDATOR_MAX`]).
    Conflict {
        first: Box<SignedVote>,
        counted: bool,
    },
}

impl Tally {
    pub fn add(&mut self, vote: SignedVote, power: u64) -> Added {
        let value = vote.vote.value;
        if let Some(list) = self.votes.get_mut(&vote.validator) {
            if list.iter().any(|v| v.vote.value == value) {
                return Added::Duplicate;
            }
            let first = Box::new(list[0].clone());
            let counted = list.len() < VALUES_PER_VALIDATOR_MAX;
            if counted {
                list.push(vote);
                *self.power_by_value.entry(value).or_default() += power;
            }
            return Added::Conflict { first, counted };
        }
        *self.power_by_value.entry(value).or_default() += power;
        self.power_total += power;
        self.votes.insert(vote.validator, vec![vote]);
        Added::New
    }

    /// Power of the validators that voted for `value` (`None`: nil).
    pub fn power_for(&self, value: Option<&Hash>) -> u64 {
        self.power_by_value
            .get(&value.copied())
            .copied()
            .unwrap_or(0)
    }

    /// Power of all validators that voted here, for anything, each counted once.
    pub fn power_total(&self) -> u64 {
        self.power_total
    }

    /// The votes for `value`, in key order.
    pub fn votes_for<'a>(&'a self, value: &'a Hash) -> impl Iterator<Item = &'a SignedVote> + 'a {
        self.votes
            .values()
            .filter_map(move |list| list.iter().find(|v| v.vote.value.as_ref() == Some(value)))
    }

    /// Every vote counted here, in key order.
    pub fn all(&self) -> impl Iterator<Item = &SignedVote> + '_ {
        self.votes.values().flatten()
    }

    /// The first vote a validator sent here.
    pub fn get(&self, validator: &PublicKey) -> Option<&SignedVote> {
        self.votes.get(validator).and_then(|list| list.first())
    }
}

/// Prevotes and precommits of one round, and who sent anything at all in it (for the
/// round-skip rule, L55).
#[derive(Debug, Default, Clone)]
pub struct RoundVotes {
    pub prevotes: Tally,
    pub precommits: Tally,
    senders: BTreeMap<PublicKey, u64>,
}

impl RoundVotes {
    pub fn tally(&self, kind: VoteKind) -> &Tally {
        match kind {
            VoteKind::Prevote => &self.prevotes,
            VoteKind::Precommit => &self.precommits,
        }
    }

    pub fn tally_mut(&mut self, kind: VoteKind) -> &mut Tally {
        match kind {
            VoteKind::Prevote => &mut self.prevotes,
            VoteKind::Precommit => &mut self.precommits,
        }
    }

    /// Records that `sender` sent a message in this round.
    pub fn note_sender(&mut self, sender: PublicKey, power: u64) {
        self.senders.insert(sender, power);
    }

    /// Power of the distinct validators that sent any message in this round.
    pub fn sender_power(&self) -> u64 {
        self.senders.values().sum()
    }
}

/// All rounds of the current height.
#[derive(Debug, Default, Clone)]
pub struct HeightVotes {
    rounds: BTreeMap<Round, RoundVotes>,
}

impl HeightVotes {
    pub fn round(&self, round: Round) -> Option<&RoundVotes> {
        self.rounds.get(&round)
    }

    pub fn round_mut(&mut self, round: Round) -> &mut RoundVotes {
        self.rounds.entry(round).or_default()
    }

    /// Power voting `value` in `round` with `kind`; 0 when the round is unknown.
    pub fn power_for(&self, round: Round, kind: VoteKind, value: Option<&Hash>) -> u64 {
        self.round(round)
            .map_or(0, |r| r.tally(kind).power_for(value))
    }

    pub fn power_total(&self, round: Round, kind: VoteKind) -> u64 {
        self.round(round).map_or(0, |r| r.tally(kind).power_total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Vote;
    use cbec_ledger::Signature;

    fn vote(validator: u8, value: Option<u8>) -> SignedVote {
        SignedVote {
            vote: Vote {
                height: 1,
                round: 0,
                kind: VoteKind::Prevote,
                value: value.map(|v| Hash([v; 32])),
            },
            validator: PublicKey::Ed25519([validator; 32]),
            signature: Signature([0; 64]),
        }
    }

    #[test]
    fn equivocators_count_for_each_value_but_once_in_the_total() {
        let mut t = Tally::default();
        assert_eq!(t.add(vote(1, Some(7)), 1), Added::New);
        assert_eq!(t.add(vote(2, None), 1), Added::New);
        assert_eq!(t.add(vote(1, Some(7)), 1), Added::Duplicate);
        assert!(matches!(
            t.add(vote(1, Some(8)), 1),
            Added::Conflict { counted: true, .. }
        ));
        assert_eq!(t.power_for(Some(&Hash([7; 32]))), 1);
        assert_eq!(t.power_for(Some(&Hash([8; 32]))), 1);
        assert_eq!(t.power_for(None), 1);
        assert_eq!(t.power_total(), 2);
        assert_eq!(
            t.get(&PublicKey::Ed25519([1; 32]))
                .and_then(|v| v.vote.value),
            Some(Hash([7; 32]))
        );
    }

    #[test]
    fn an_equivocator_cannot_grow_the_tally_without_bound() {
        let mut t = Tally::default();
        for value in 0..20u8 {
            t.add(vote(1, Some(value)), 1);
        }
        let counted = (0..20u8)
            .filter(|v| t.power_for(Some(&Hash([*v; 32]))) == 1)
            .count();
        assert_eq!(counted, VALUES_PER_VALIDATOR_MAX);
    }
}
