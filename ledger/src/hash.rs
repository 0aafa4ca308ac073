//! Digests, with a domain tag per kind of value.
//!
//! The function is the chain's suite's (SHA-256 or SM3, both 32 bytes; see
//! [`crate::crypto::Suite::tagged`]). Tagging keeps a transaction's hash from ever
//! equalling a header's or a vote's over the same bytes.

use bincode::{Decode, Encode};

use crate::hex_bytes::hex_newtype;

/// A 32-byte digest of the chain's hash function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Encode, Decode)]
pub struct Hash(pub [u8; 32]);
hex_newtype!(Hash, 32);

/// The domain tags. Each kind of hashed or signed value has its own.
pub mod tag {
    pub const TX: &str = "cbec:tx";
    pub const HEADER: &str = "cbec:header";
    pub const VOTE: &str = "cbec:vote";
    pub const PROPOSAL: &str = "cbec:proposal";
    pub const GENESIS: &str = "cbec:genesis";
    pub const VALIDATOR_SET: &str = "cbec:validator-set";
    pub const RESULT: &str = "cbec:result";
    pub const GOODS_EVENT: &str = "cbec:goods-event";
}
