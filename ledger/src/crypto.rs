//! Keys and signatures: the one small interface behind which the signature scheme sits.
//!
//! Today the scheme is Ed25519 with strict verification (`verify_strict` rejects
//! small-order keys and non-canonical signatures, so a signature cannot be mauled into a
//! second valid one). A national-standard scheme (SM2/SM3) would be a chain-wide choice
//! fixed at genesis and would slot in here without touching callers.

use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;

use crate::hex_bytes::hex_newtype;

/// A public key; it is also the address of whoever holds the matching secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct PublicKey(pub [u8; 32]);
hex_newtype!(PublicKey, 32);

/// A detached signature.
#[derive(Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Signature(pub [u8; 64]);
hex_newtype!(Signature, 64);

/// Why a signature was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("public key {0} is not a valid curve point")]
    BadKey(String),
    #[error("signature does not verify under key {0}")]
    Invalid(String),
    #[error("batch of {messages} messages, {signatures} signatures and {keys} keys")]
    BatchShape {
        messages: usize,
        signatures: usize,
        keys: usize,
    },
}

impl PublicKey {
    /// Whether the bytes are a usable verification key: a valid curve point that is not
    /// of small order.
    pub fn is_valid(&self) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok_and(|k| !k.is_weak())
    }

    /// Verifies `signature` over `message` strictly.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key =
            VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::BadKey(self.to_hex()))?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| SignatureError::Invalid(self.to_hex()))
    }
}

/// Verifies many signatures at once, about twice as fast per signature as one by one.
///
/// All or nothing: an error says that at least one is bad, not which; callers that need
/// to know fall back to [`PublicKey::verify`] on each.
pub fn verify_batch(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[PublicKey],
) -> Result<(), SignatureError> {
    if messages.len() != signatures.len() || messages.len() != keys.len() {
        return Err(SignatureError::BatchShape {
            messages: messages.len(),
            signatures: signatures.len(),
            keys: keys.len(),
        });
    }
    // Each distinct key is decompressed once: a batch often holds many transactions of
    // one sender, and decompression costs about a third of a verification.
    let mut decompressed: std::collections::BTreeMap<[u8; 32], VerifyingKey> =
        std::collections::BTreeMap::new();
    let mut verifying = Vec::with_capacity(keys.len());
    for key in keys {
        let vk = match decompressed.get(&key.0) {
            Some(vk) => *vk,
            None => {
                // Batch verification is not strict about small-order keys, so weak
                // keys are refused up front, as `verify_strict` would.
                let vk = VerifyingKey::from_bytes(&key.0)
                    .map_err(|_| SignatureError::BadKey(key.to_hex()))?;
                if vk.is_weak() {
                    return Err(SignatureError::BadKey(key.to_hex()));
                }
                decompressed.insert(key.0, vk);
                vk
            }
        };
        verifying.push(vk);
    }
    let sigs: Vec<_> = signatures
        .iter()
        .map(|s| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    ed25519_dalek::verify_batch(messages, &sigs, &verifying)
        .map_err(|_| SignatureError::Invalid("one of the batch".into()))
}

/// A secret signing key with its public key.
pub struct KeyPair {
    secret: SigningKey,
}

impl KeyPair {
    /// A fresh key from a cryptographic RNG (key generation only; never in consensus).
    pub fn generate(rng: &mut impl CryptoRngCore) -> KeyPair {
        KeyPair {
            secret: SigningKey::generate(rng),
        }
    }

    /// The key whose 32-byte secret seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        KeyPair {
            secret: SigningKey::from_bytes(seed),
        }
    }

    /// The secret seed, for writing a key file.
    pub fn seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.secret.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.secret.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for KeyPair {
    /// Shows the public half only: secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> KeyPair {
        KeyPair::from_seed(&[n; 32])
    }

    #[test]
    fn signature_verifies_only_over_the_signed_bytes_and_key() {
        let k = key(1);
        let sig = k.sign(b"filing 42");
        assert_eq!(k.public().verify(b"filing 42", &sig), Ok(()));
        assert!(k.public().verify(b"filing 43", &sig).is_err());
        assert!(key(2).public().verify(b"filing 42", &sig).is_err());
        let mut bad = sig;
        bad.0[10] ^= 1;
        assert!(k.public().verify(b"filing 42", &bad).is_err());
    }

    #[test]
    fn non_canonical_signature_is_rejected() {
        // s >= group order makes the encoding non-canonical: strict verification refuses.
        let k = key(3);
        let mut sig = k.sign(b"x");
        sig.0[63] |= 0xf0;
        assert!(k.public().verify(b"x", &sig).is_err());
    }

    #[test]
    fn small_order_key_is_rejected() {
        // The identity point encoded: small order, any signature "verifies" non-strictly.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(identity);
        assert!(!weak.is_valid());
        assert!(key(1).public().is_valid());
        assert!(weak.verify(b"x", &Signature([0; 64])).is_err());
        assert!(verify_batch(&[b"x"], &[Signature([0; 64])], &[weak]).is_err());
    }

    #[test]
    fn batch_accepts_good_and_rejects_one_bad() {
        let keys: Vec<_> = (0..8).map(key).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let mut sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pubs: Vec<_> = keys.iter().map(KeyPair::public).collect();
        assert_eq!(verify_batch(&refs, &sigs, &pubs), Ok(()));
        sigs[5].0[0] ^= 1;
        assert!(verify_batch(&refs, &sigs, &pubs).is_err());
        assert!(verify_batch(&refs[..7], &sigs, &pubs).is_err());
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let k = key(4).public();
        assert_eq!(k.to_string().parse::<PublicKey>(), Ok(k));
        assert!("abcd".parse::<PublicKey>().is_err());
        assert!("zz".repeat(32).parse::<PublicKey>().is_err());
        let json = serde_json::to_string(&k).expect("serialize");
        assert_eq!(serde_json::from_str::<PublicKey>(&json).expect("parse"), k);
    }

    #[test]
    fn debug_hides_the_secret() {
        let k = key(5);
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode(k.seed())));
    }
}
