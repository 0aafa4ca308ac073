//! libp2p peer ids of Ed25519 network keys, computed without pulling libp2p in.
//!
//! A peer id of an Ed25519 key is the base58btc text of an identity multihash over the
//! protobuf-encoded public key: `00 24 | 08 01 12 20 | key (32 bytes)`. Such ids start
//! with `12D3KooW`. The node cross-checks these against libp2p's own `PeerId`.

use cbec_ledger::PublicKey;

const PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// The peer id of the node whose network key has public half `key`.
pub fn from_public_key(key: &PublicKey) -> String {
    let mut bytes = Vec::with_capacity(PREFIX.len() + 32);
    bytes.extend_from_slice(&PREFIX);
    bytes.extend_from_slice(key.as_bytes());
    bs58::encode(bytes).into_string()
}

/// The Ed25519 public key inside a peer id, or why the text is not one.
pub fn parse(peer_id: &str) -> Result<PublicKey, String> {
    let bytes = bs58::decode(peer_id)
        .into_vec()
        .map_err(|e| format!("`{peer_id}` is not base58: {e}"))?;
    if bytes.len() != PREFIX.len() + 32 || bytes[..PREFIX.len()] != PREFIX {
        return Err(format!(
            "`{peer_id}` is not the peer id of an Ed25519 key (12D3KooW...)"
        ));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[PREFIX.len()..]);
    let key = PublicKey::Ed25519(key);
    if !key.is_valid() {
        return Err(format!("`{peer_id}` holds an invalid Ed25519 key"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::KeyPair;

    #[test]
    fn peer_id_round_trips_and_has_the_libp2p_prefix() {
        let key = KeyPair::from_seed(&[5; 32]).public();
        let id = from_public_key(&key);
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(parse(&id), Ok(key));
    }

    #[test]
    fn malformed_peer_ids_are_refused() {
        let id = from_public_key(&KeyPair::from_seed(&[5; 32]).public());
        assert!(parse("").is_err());
        assert!(parse("0OIl").is_err()); // not base58
        assert!(parse(&id[..id.len() - 1]).is_err());
        // An RSA/secp peer id shape (different prefix) is refused.
        assert!(parse("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").is_err());
    }
}
