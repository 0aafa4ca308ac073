//! The auditor page: one self-contained HTML file with its CSS, its JavaScript and the
//! verifier compiled to WebAssembly (`cbec-audit`, built by `build.rs` for
//! `wasm32-unknown-unknown`) inside, so it works opened from disk with no network.
//!
//! Its *code hash* is the SHA-256 of the file with the hash itself blanked to 64 zeros
//! ([`HASH_PLACEHOLDER`]); the page shows it, `cbec audit page` prints it, and
//! [`code_hash_of`] recomputes it from any copy, such as the one a node serves, so an
//! auditor can tell whether that copy is the one they trust.

/// The page, as served and as written.
pub const PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/index.html"));

/// The page's code hash (hex SHA-256; see the crate doc).
pub const CODE_HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/code-hash.txt"));

/// What stands in the page for its own hash when the hash is computed.
pub const HASH_PLACEHOLDER: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The code hash of a copy of the page: its bytes with the hash it states blanked,
/// hashed. `None` when the copy states no hash where the page puts it.
pub fn code_hash_of(copy: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let (before, rest) = copy.split_once("data-code-hash=\"")?;
    let after = rest.get(64..)?;
    let blanked = format!("{before}data-code-hash=\"{HASH_PLACEHOLDER}{after}");
    Some(
        Sha256::digest(blanked.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}
