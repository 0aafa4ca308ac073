//! Keys and signatures: the one small interface behind which the signature scheme sits.
//!
//! The scheme is Ed25519 with one verification rule for every check on every node and in
//! the auditor's verifier, single or batched: a signature is valid or not whatever else
//! shares its batch. The rule is ZIP-215 (as CometBFT and Zcash use, implemented by
//! `ed25519-zebra`), plus a rule on keys:
//!
//! - a **key** must be the canonical encoding of a curve point that is not of small
//!   order; anything else is refused before any signature work ([`PublicKey::is_valid`]).
//!   One key has one address, and no key is "weak" (a small-order key would let any
//!   signature verify under ZIP-215's cofactored equation);
//! - a **signature** `(R, s)` needs `s` canonical (`s < ℓ`) and `R` a point on the curve,
//!   and is checked with the cofactored equation `[8][s]B = [8]R + [8][k]A`, which batch
//!   verification evaluates exactly (so a batch passes iff each of its signatures does).
//!
//! Not unique: adding a small-order point to `R` gives another valid signature of the
//! same message. Nothing on this ledger is identified by signature bytes: a transaction
//! by the hash of its body, a vote or proposal by what it says.
//!
//! Before this rule, single checks used `verify_strict` and batches `ed25519-dalek`'s
//! non-cofactored batch equation: a signature with a small-order part in `R` passed or
//! failed depending on the batch's random coefficients.
//!
//! A national-standard scheme (SM2/SM3) would be a chain-wide choice fixed at genesis
//! and would slot in here without touching callers.

use bincode::{Decode, Encode};
use curve25519_dalek::edwards::CompressedEdwardsY;
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
    #[error("public key {0} is not a canonical curve point of large order")]
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
    /// Whether the bytes are a usable verification key: the canonical encoding of a
    /// curve point that is not of small order.
    pub fn is_valid(&self) -> bool {
        let compressed = CompressedEdwardsY(self.0);
        compressed
            .decompress()
            .is_some_and(|point| !point.is_small_order() && point.compress() == compressed)
    }

    fn verification_key(&self) -> Result<ed25519_zebra::VerificationKey, SignatureError> {
        if !self.is_valid() {
            return Err(SignatureError::BadKey(self.to_hex()));
        }
        ed25519_zebra::VerificationKey::try_from(self.0)
            .map_err(|_| SignatureError::BadKey(self.to_hex()))
    }

    /// Verifies `signature` over `message` (the rule in the module comment).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = self.verification_key()?;
        key.verify(&ed25519_zebra::Signature::from_bytes(&signature.0), message)
            .map_err(|_| SignatureError::Invalid(self.to_hex()))
    }
}

/// Verifies many signatures at once, about twice as fast per signature as one by one,
/// with the same verdict as [`PublicKey::verify`] on each (ZIP-215 makes them agree).
///
/// All or nothing: an error says that at least one is bad, not which; callers that need
/// to know fall back to [`PublicKey::verify`] on each. Signatures of one key share the
/// key's terms. The random coefficients only bound the chance of a false pass (2^-128);
/// they never change a verdict on valid signatures.
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
    // The key rule first, once per distinct key (decompression is a third of a check).
    let mut checked = std::collections::BTreeSet::new();
    for key in keys {
        if checked.insert(key.0) && !key.is_valid() {
            return Err(SignatureError::BadKey(key.to_hex()));
        }
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for ((message, signature), key) in messages.iter().zip(signatures).zip(keys) {
        batch.queue((
            ed25519_zebra::VerificationKeyBytes::from(key.0),
            ed25519_zebra::Signature::from_bytes(&signature.0),
            message,
        ));
    }
    batch
        .verify(rand_core::OsRng)
        .map_err(|_| SignatureError::Invalid("one of the batch".into()))
}

/// A secret signing key with its public key.
pub struct KeyPair {
    secret: ed25519_zebra::SigningKey,
}

impl KeyPair {
    /// A fresh key from a cryptographic RNG (key generation only; never in consensus).
    pub fn generate(rng: &mut impl CryptoRngCore) -> KeyPair {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        KeyPair::from_seed(&seed)
    }

    /// The key whose 32-byte secret seed is `seed` (RFC 8032's private key).
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        KeyPair {
            secret: ed25519_zebra::SigningKey::from(*seed),
        }
    }

    /// The secret seed, for writing a key file.
    pub fn seed(&self) -> [u8; 32] {
        self.secret.into()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(ed25519_zebra::VerificationKeyBytes::from(&self.secret).into())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.secret.sign(message).to_bytes())
    }
}

/// A valid signature of `message` by `key` with the `torsion`-th small-order point
/// (0..8; 0 is the identity) added to its `R`, and `s` recomputed for it. Under ZIP-215
/// it is as valid as the plain one, alone and in any batch; under the cofactorless
/// equation (`verify_strict`) it is not. For tests across crates that show every check
/// gives one verdict.
#[doc(hidden)]
pub fn signature_with_torsion(key: &KeyPair, message: &[u8], torsion: usize) -> Signature {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let sig = key.sign(message);
    let r = CompressedEdwardsY(sig.0[..32].try_into().unwrap_or([0; 32]))
        .decompress()
        .unwrap_or_default();
    let r2 = (r + EIGHT_TORSION[torsion % 8]).compress().to_bytes();
    // s = r + k·a for the new R, with k = H(R' || A || M) (RFC 8032's key expansion).
    let expanded = Sha512::digest(key.seed());
    let mut a_bytes = [0u8; 32];
    a_bytes.copy_from_slice(&expanded[..32]);
    a_bytes[0] &= 248;
    a_bytes[31] &= 127;
    a_bytes[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a_bytes);
    let nonce = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(&expanded[32..])
            .chain_update(message)
            .finalize()
            .into(),
    );
    let challenge = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r2)
            .chain_update(key.public().0)
            .chain_update(message)
            .finalize()
            .into(),
    );
    let s = nonce + challenge * a;
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&r2);
    out[32..].copy_from_slice(s.as_bytes());
    Signature(out)
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
    use curve25519_dalek::constants::EIGHT_TORSION;

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

    /// RFC 8032 section 7.1, test 1: the key and signature of the empty message.
    #[test]
    fn rfc_8032_test_vector() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .expect("hex")
                .try_into()
                .expect("32");
        let k = KeyPair::from_seed(&seed);
        assert_eq!(
            k.public().to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = k.sign(b"");
        assert_eq!(
            sig.to_hex(),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(k.public().verify(b"", &sig), Ok(()));
    }

    #[test]
    fn non_canonical_s_is_rejected() {
        // s >= the group order: not canonical, refused alone and in a batch.
        let k = key(3);
        let mut sig = k.sign(b"x");
        sig.0[63] |= 0xf0;
        assert!(k.public().verify(b"x", &sig).is_err());
        assert!(verify_batch(&[b"x"], &[sig], &[k.public()]).is_err());
    }

    #[test]
    fn small_order_and_non_canonical_keys_are_rejected() {
        // The identity point: small order, every signature "verifies" under it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(identity);
        assert!(!weak.is_valid());
        assert!(key(1).public().is_valid());
        assert!(weak.verify(b"x", &Signature([0; 64])).is_err());
        assert!(verify_batch(&[b"x"], &[Signature([0; 64])], &[weak]).is_err());
        // Every small-order point, canonically encoded, is refused.
        for torsion in EIGHT_TORSION {
            assert!(!PublicKey(torsion.compress().to_bytes()).is_valid());
        }
        // y = p + 1 encodes the identity's y = 1 non-canonically (so does the sign bit
        // on a point with x = 0): refused, or one key would have two addresses.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee; // 2^255 - 19 + 1 = p + 1, little endian
        non_canonical[31] = 0x7f;
        assert!(!PublicKey(non_canonical).is_valid());
        let mut signed_identity = identity;
        signed_identity[31] |= 0x80;
        assert!(!PublicKey(signed_identity).is_valid());
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

    /// The batch-dependence the old rule had: a signature with a small-order component
    /// in `R` was admitted or refused depending on the rest of its batch. Now single and
    /// batch give one verdict for every such signature, whatever shares its batch.
    #[test]
    fn single_and_batch_agree_on_small_order_components_in_r() {
        let honest: Vec<KeyPair> = (10..14).map(key).collect();
        for t in 0..EIGHT_TORSION.len() {
            for n in 0..6u8 {
                let k = key(40 + n);
                let message = [t as u8, n];
                let sig = signature_with_torsion(&k, &message, t);
                let single = k.public().verify(&message, &sig).is_ok();
                assert!(single, "cofactored: torsion {t} in R still verifies");
                for others in 0..honest.len() {
                    let mut msgs: Vec<Vec<u8>> = vec![message.to_vec()];
                    let mut sigs = vec![sig];
                    let mut keys = vec![k.public()];
                    for h in &honest[..others] {
                        let m = vec![others as u8, t as u8, 9];
                        sigs.push(h.sign(&m));
                        msgs.push(m);
                        keys.push(h.public());
                    }
                    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                    for _ in 0..4 {
                        assert_eq!(
                            verify_batch(&refs, &sigs, &keys).is_ok(),
                            single,
                            "torsion {t}, {others} others"
                        );
                    }
                }
            }
        }
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
