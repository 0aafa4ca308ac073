//! End-to-end tests of CBEC Ledger: whole nodes and command-line runs on loopback.
//!
//! What belongs here: helpers that start real node processes or in-process nodes, a
//! fault-injection harness, and the tests in `tests/`. Unit tests of one crate live in
//! that crate.

#![forbid(unsafe_code)]
