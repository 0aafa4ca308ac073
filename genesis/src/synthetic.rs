//! The synthetic state a genesis document may ask every node to write: `keys` entries
//! derived from a seed, so a benchmark can start from a ledger that already holds
//! millions of keys in minutes, and every node (and the chain id) agrees on them.
//!
//! Entry `i`: key `syn/` followed by 32 hex digits, value 96 bytes, both from tagged
//! hashes of (seed, i). Keys are spread over the state tree as real keys are (the tree
//! places keys by their hash); sizes are close to a goods event's records.

use cbec_ledger::{codec, Suite};

use crate::document::SyntheticState;

/// The prefix of every synthetic key; no chaincode uses it.
pub const PREFIX: &str = "syn/";

/// Entry `index` of the synthetic state of `seed`, from hashes of the chain's `suite`.
pub fn entry(suite: Suite, seed: u64, index: u64) -> (Vec<u8>, Vec<u8>) {
    let part = |n: u8| suite.tagged("cbec:synthetic", &codec::encode(&(seed, index, n)));
    let key = format!("{PREFIX}{}", &part(0).to_hex()[..32]).into_bytes();
    let mut value = Vec::with_capacity(96);
    for n in 1..=3 {
        value.extend_from_slice(&part(n).0);
    }
    (key, value)
}

/// Every entry of `state`, in index order.
pub fn entries(suite: Suite, state: SyntheticState) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    (0..state.keys).map(move |i| entry(suite, state.seed, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_deterministic_distinct_and_shaped_as_documented() {
        let state = SyntheticState {
            seed: 7,
            keys: 1_000,
        };
        let a: Vec<_> = entries(Suite::Ed25519Sha256, state).collect();
        let b: Vec<_> = entries(Suite::Ed25519Sha256, state).collect();
        assert_eq!(a, b);
        let keys: std::collections::BTreeSet<_> = a.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys.len(), 1_000, "no key twice");
        assert!(a
            .iter()
            .all(|(k, v)| k.starts_with(PREFIX.as_bytes()) && k.len() == 36 && v.len() == 96));
        let other: Vec<_> =
            entries(Suite::Ed25519Sha256, SyntheticState { seed: 8, keys: 3 }).collect();
        assert_ne!(other[0], a[0], "the seed matters");
    }
}
