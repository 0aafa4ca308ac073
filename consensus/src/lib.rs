//! Tendermint BFT ("The latest gossip on BFT consensus", Buchman, Kwon, Milosevic 2018,
//! Algorithm 1) as a pure state machine, and its deterministic simulator.
//!
//! What belongs here: heights and rounds, proposer selection, votes and locks,
//! timeouts as inputs and outputs, double-sign protection state, equivocation evidence.
//! The state machine takes inputs and returns outputs; it never reads a clock, a socket,
//! randomness or the disk. It orders opaque values identified by hash and does not know
//! what a transaction is.
//!
//! What does not: networking, storage and timers (the node performs the outputs), and
//! execution (the node answers "validate this value" requests).
//!
//! How it is tested: unit tests drive single rules of Algorithm 1 (`tests/rules.rs`);
//! the simulator ([`sim`]) runs whole networks under seeded faults and checks
//! agreement, validity, no double signing and termination after every step.

#![forbid(unsafe_code)]

pub mod machine;
pub mod proposer;
pub mod safety;
pub mod sim;
pub mod types;
pub mod votes;

pub use machine::{
    Config, Consensus, Counters, Decision, Honest, Input, Middleware, Output, Step, Timeout,
    TimeoutKind, Timeouts,
};
pub use safety::{SignStep, SigningState};
pub use types::{
    Evidence, Height, Message, Proposal, Round, SignedProposal, SignedVote, Signer,
    VerifiedMessage, Vote,
};
