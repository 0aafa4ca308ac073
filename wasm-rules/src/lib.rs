//! WebAssembly chaincode written for the pilot zone, as installable modules: the bytes
//! `cbec chaincode install --wasm FILE` takes, built from the Rust source beside this
//! crate (`display/`) by its build script.

#![forbid(unsafe_code)]

/// Bonded display trade, version 1: goods out for display for up to 180 days.
pub const DISPLAY_V1: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/display-v1.wasm"));

/// Bonded display trade, version 2: a guarantee of at least the goods' value, and at
/// most 90 days.
pub const DISPLAY_V2: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/display-v2.wasm"));
