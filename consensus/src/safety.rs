//! Double-sign protection: the one place that decides whether the validator may sign.
//!
//! A validator never signs two different messages for one height, round and step, not
//! even after a crash. The rule (as in Tendermint's privval and Aptos' safety rules):
//! sign only at a (height, round, step) strictly above the last one signed; for a step
//! already signed in the current round, the recorded message is sent again instead. The state is
//! handed to the host as an output *before* the signed message, and the host makes it
//! durable before it sends anything; a restarted instance restored from it refuses
//! whatever could conflict. The lock (`locked`) travels with it: a validator that
//! forgot its lock after a crash could help decide a second value.

use bincode::{Decode, Encode};
use cbec_ledger::Hash;
use serde::{Deserialize, Serialize};

use crate::machine::ROUND_WINDOW;
use crate::types::{Height, Message, Round, SignedVote};

/// Steps in the order they are signed within a round.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
pub enum SignStep {
    Propose,
    Prevote,
    Precommit,
}

/// What must be on disk before a signed message leaves the validator.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SigningState {
    /// The last (highest) height, round and step signed.
    pub height: Height,
    pub round: Round,
    pub step: SignStep,
    /// Everything signed at this height, in the last `ROUND_WINDOW` rounds: at most a
    /// proposal, a prevote and a precommit per round. A restarted validator sends these
    /// again instead of signing anew, and keeps rebroadcasting the earlier rounds' ones:
    /// a peer still in such a round may need them to leave it (the soak's seed 5336).
    pub signed: Vec<Message>,
    /// `lockedRound, lockedValue` of the height being decided.
    pub locked: Option<(Round, Hash)>,
    /// `validRound, validValue` of the height being decided.
    pub valid: Option<(Round, Hash)>,
    /// The 2f+1 prevotes that made `valid` valid. A restarted proposer re-proposes
    /// `validValue` with them; without them its peers could never accept it (L28), and
    /// validators locked on it could stall the height.
    pub valid_polka: Vec<SignedVote>,
}

impl SigningState {
    /// Nothing signed yet.
    pub fn genesis() -> SigningState {
        SigningState {
            height: 0,
            round: 0,
            step: SignStep::Propose,
            signed: Vec::new(),
            locked: None,
            valid: None,
            valid_polka: Vec::new(),
        }
    }

    /// May the validator sign at (height, round, step)?
    pub fn permission(&self, height: Height, round: Round, step: SignStep) -> Permission {
        if let Some(message) = self
            .signed
            .iter()
            .find(|m| (m.height(), m.round(), m.sign_step()) == (height, round, step))
        {
            return Permission::AlreadySigned(message.clone());
        }
        if (height, round, step) > (self.height, self.round, self.step) {
            Permission::Sign
        } else {
            Permission::Refuse
        }
    }

    /// Records a message just signed at (height, round, step), which `permission`
    /// allowed.
    pub fn record(&mut self, message: Message) {
        let (height, round, step) = (message.height(), message.round(), message.sign_step());
        debug_assert_eq!(self.permission(height, round, step), Permission::Sign);
        if height != self.height {
            self.signed.clear();
        }
        let oldest = round.saturating_sub(ROUND_WINDOW);
        self.signed.retain(|m| m.round() >= oldest);
        self.height = height;
        self.round = round;
        self.step = step;
        self.signed.push(message);
    }
}

/// The answer of [`SigningState::permission`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    Sign,
    /// This step was signed already: that message stands and is sent again, whatever
    /// the validator would choose now.
    AlreadySigned(Message),
    /// Below the last signed step, with nothing recorded for it: stay silent.
    Refuse,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Vote;
    use cbec_ledger::{PublicKey, Signature, VoteKind};

    fn prevote(h: Height, r: Round, value: u8) -> Message {
        Message::Vote(SignedVote {
            vote: Vote {
                height: h,
                round: r,
                kind: VoteKind::Prevote,
                value: Some(Hash([value; 32])),
            },
            validator: PublicKey::Ed25519([1; 32]),
            signature: Signature([value; 64]),
        })
    }

    #[test]
    fn only_later_steps_are_signed_and_signed_steps_are_repeated() {
        let mut s = SigningState::genesis();
        assert_eq!(s.permission(5, 2, SignStep::Prevote), Permission::Sign);
        s.record(prevote(5, 2, 1));
        assert_eq!(
            s.permission(5, 2, SignStep::Prevote),
            Permission::AlreadySigned(prevote(5, 2, 1))
        );
        assert_eq!(s.permission(5, 2, SignStep::Precommit), Permission::Sign);
        assert_eq!(s.permission(5, 3, SignStep::Propose), Permission::Sign);
        assert_eq!(s.permission(6, 0, SignStep::Propose), Permission::Sign);
        assert_eq!(s.permission(5, 2, SignStep::Propose), Permission::Refuse);
        assert_eq!(s.permission(5, 1, SignStep::Precommit), Permission::Refuse);
        assert_eq!(s.permission(4, 9, SignStep::Precommit), Permission::Refuse);
        s.record(prevote(5, 3, 2));
        assert_eq!(
            s.signed,
            vec![prevote(5, 2, 1), prevote(5, 3, 2)],
            "earlier rounds of the height are kept for rebroadcast"
        );
        assert_eq!(
            s.permission(5, 2, SignStep::Prevote),
            Permission::AlreadySigned(prevote(5, 2, 1)),
            "an earlier round's vote is repeated, never re-signed"
        );
        s.record(prevote(6, 0, 3));
        assert_eq!(
            s.signed,
            vec![prevote(6, 0, 3)],
            "a new height starts afresh"
        );
    }

    #[test]
    fn the_state_survives_encoding() {
        let mut s = SigningState::genesis();
        s.record(prevote(5, 2, 1));
        s.locked = Some((2, Hash([1; 32])));
        let back: SigningState =
            cbec_ledger::codec::decode(&cbec_ledger::codec::encode(&s)).expect("decode");
        assert_eq!(back, s);
    }
}
