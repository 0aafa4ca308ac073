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

#![forbid(unsafe_code)]
