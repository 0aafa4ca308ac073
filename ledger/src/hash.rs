//! SHA-256 digests with a domain tag per kind of value.
//!
//! Tagging keeps a transaction's hash from ever equalling a header's or a vote's over
//! the same bytes. The tag is length-prefixed so no tag is a prefix-collision of another.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::hex_bytes::hex_newtype;

/// A 32-byte SHA-256 digest.
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

impl Hash {
    /// SHA-256 over `len(tag) || tag || data`.
    pub fn tagged(tag: &str, data: &[u8]) -> Hash {
        debug_assert!(tag.len() <= u8::MAX as usize);
        let mut hasher = Sha256::new();
        hasher.update([tag.len() as u8]);
        hasher.update(tag.as_bytes());
        hasher.update(data);
        Hash(hasher.finalize().into())
    }

    /// Plain SHA-256, untagged: only for formats fixed by a standard (RFC 6962 trees).
    pub fn sha256(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }
}
