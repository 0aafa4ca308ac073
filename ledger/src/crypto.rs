//! Keys, signatures and hashes: the one module that names an algorithm.
//!
//! A chain uses one **suite**, fixed in its genesis document and so covered by its chain
//! id: `ed25519-sha256` (the default) or `sm2-sm3`, the national standards (GB/T 32918
//! signatures, GB/T 32905 hashing). The suite decides every hash on the ledger
//! ([`Suite::tagged`], [`Suite::digest`]) and which keys may sign ([`Suite::check_key`]);
//! a key says its own scheme, so a signature check needs no suite.
//!
//! **Ed25519** has one verification rule for every check on every node and in the
//! auditor's verifier, single or batched: a signature is valid or not whatever else
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
//! **SM2** (GB/T 32918.2, RustCrypto's `sm2`) signs `SM3(Z || M)` where `Z` is the hash of
//! the signer's distinguishing identifier, the curve and the key; every signer here uses
//! the identifier GM/T 0009 recommends, [`SM2_DISTID`]. A key is the 33-byte compressed
//! SEC1 encoding of a point on the recommended curve (an uncompressed or hybrid encoding
//! is refused, so one key has one address). A signature is `r || s`, 32 bytes each, big
//! endian, and is accepted only with `r` and `s` in `[1, n-1]` (canonical, never reduced),
//! `r + s != n`, and `[s]G + [r+s]P` not the point at infinity with `r = e + x mod n`.
//! Without the secret key no second signature of the same message can be made from a
//! given one (unlike ECDSA's `(r, -s)`); the signer can make others, and as above nothing
//! is identified by signature bytes. SM2 has no batch verification: a batch is checked
//! one signature at a time.

use bincode::{Decode, Encode};
use curve25519_dalek::edwards::CompressedEdwardsY;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm3::Sm3;

use crate::hash::Hash;
use crate::hex_bytes::{hex_newtype, HexError};

/// The distinguishing identifier in every SM2 signature on the ledger (GM/T 0009's
/// default user id).
pub const SM2_DISTID: &str = "1234567812345678";

/// A chain's cryptography: its signature scheme and its hash function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum Suite {
    /// Ed25519 signatures (ZIP-215), SHA-256 hashes.
    #[default]
    Ed25519Sha256,
    /// SM2 signatures (GB/T 32918.2), SM3 hashes (GB/T 32905).
    Sm2Sm3,
}

/// A signature scheme; a key names its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum Scheme {
    Ed25519,
    Sm2,
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::Ed25519Sha256, Suite::Sm2Sm3];

    /// The name in genesis files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Ed25519Sha256 => "ed25519-sha256",
            Suite::Sm2Sm3 => "sm2-sm3",
        }
    }

    /// The scheme every key of the chain uses.
    pub fn scheme(self) -> Scheme {
        match self {
            Suite::Ed25519Sha256 => Scheme::Ed25519,
            Suite::Sm2Sm3 => Scheme::Sm2,
        }
    }

    /// The suite's hash over `len(tag) || tag || data`: one domain tag per kind of
    /// value (see [`crate::hash::tag`]), so a transaction's hash never equals a header's
    /// over the same bytes. The tag is length-prefixed so no tag is a prefix of another.
    pub fn tagged(self, tag: &str, data: &[u8]) -> Hash {
        debug_assert!(tag.len() <= u8::MAX as usize);
        let mut hasher = self.hasher();
        hasher.update(&[tag.len() as u8]);
        hasher.update(tag.as_bytes());
        hasher.update(data);
        hasher.finalize()
    }

    /// The suite's plain hash of the concatenated parts, untagged: only for formats
    /// fixed by a standard (RFC 6962 trees) or with their own domain bytes (the sparse
    /// state tree).
    pub fn digest(self, parts: &[&[u8]]) -> Hash {
        let mut hasher = self.hasher();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize()
    }

    /// An incremental hasher of the suite's function.
    pub fn hasher(self) -> Hasher {
        match self {
            Suite::Ed25519Sha256 => Hasher::Sha256(Sha256::default()),
            Suite::Sm2Sm3 => Hasher::Sm3(Sm3::default()),
        }
    }

    /// Whether `key` may sign on a chain of this suite.
    pub fn check_key(self, key: &PublicKey) -> Result<(), SignatureError> {
        if key.scheme() == self.scheme() {
            Ok(())
        } else {
            Err(SignatureError::WrongScheme {
                key: key.to_hex(),
                scheme: key.scheme(),
                suite: self,
            })
        }
    }
}

impl Scheme {
    pub const ALL: [Scheme; 2] = [Scheme::Ed25519, Scheme::Sm2];

    /// The name in key files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Ed25519 => "ed25519",
            Scheme::Sm2 => "sm2",
        }
    }

    /// The suite whose keys use this scheme.
    pub fn suite(self) -> Suite {
        match self {
            Scheme::Ed25519 => Suite::Ed25519Sha256,
            Scheme::Sm2 => Suite::Sm2Sm3,
        }
    }
}

/// `Display`, `FromStr` and serde by name for an enum with `ALL` and `name()`: the name
/// in genesis files, key files and on the command line; anything else is refused naming
/// the choices.
macro_rules! by_name {
    ($type:ident, $what:literal) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;
            fn from_str(s: &str) -> Result<$type, String> {
                $type::ALL
                    .into_iter()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $type::ALL.iter().map(|v| v.name()).collect();
                        format!(
                            concat!("unknown ", $what, " `{}` ({})"),
                            s,
                            names.join(" or ")
                        )
                    })
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

by_name!(Suite, "crypto suite");
by_name!(Scheme, "key scheme");

/// An incremental hash of a suite's function ([`Suite::hasher`]).
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sm3(Sm3),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => sha2::Digest::update(h, data),
            Hasher::Sm3(h) => sm3::Digest::update(h, data),
        }
    }

    pub fn finalize(self) -> Hash {
        match self {
            Hasher::Sha256(h) => Hash(sha2::Digest::finalize(h).into()),
            Hasher::Sm3(h) => Hash(sm3::Digest::finalize(h).into()),
        }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hasher::Sha256(_) => "Hasher(sha256)",
            Hasher::Sm3(_) => "Hasher(sm3)",
        })
    }
}

/// A public key; it is also the address of whoever holds the matching secret. Its
/// text form is hex of its bytes: 64 characters for Ed25519, 66 (starting `02` or `03`)
/// for SM2; the encoding also says the scheme.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum PublicKey {
    Ed25519([u8; 32]),
    Sm2([u8; 33]),
}

/// A detached signature: Ed25519's `R || s` or SM2's `r || s`.
#[derive(Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Signature(pub [u8; 64]);
hex_newtype!(Signature, 64);

/// Why a signature was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error(
        "public key {0} is not a valid key (a canonical encoding of a curve point of large order)"
    )]
    BadKey(String),
    #[error("signature does not verify under key {0}")]
    Invalid(String),
    #[error("key {key} is an {scheme} key; this chain's crypto suite is {suite}")]
    WrongScheme {
        key: String,
        scheme: Scheme,
        suite: Suite,
    },
    #[error("batch of {messages} messages, {signatures} signatures and {keys} keys")]
    BatchShape {
        messages: usize,
        signatures: usize,
        keys: usize,
    },
}

impl PublicKey {
    pub fn scheme(&self) -> Scheme {
        match self {
            PublicKey::Ed25519(_) => Scheme::Ed25519,
            PublicKey::Sm2(_) => Scheme::Sm2,
        }
    }

    /// The raw bytes (32 for Ed25519, 33 for SM2).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PublicKey::Ed25519(bytes) => bytes,
            PublicKey::Sm2(bytes) => bytes,
        }
    }

    /// Lower-case hex, as shown to people.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Whether the bytes are a usable verification key: for Ed25519 the canonical
    /// encoding of a curve point that is not of small order; for SM2 a compressed point
    /// on the curve.
    pub fn is_valid(&self) -> bool {
        match self {
            PublicKey::Ed25519(bytes) => ed25519_key(bytes).is_ok(),
            PublicKey::Sm2(bytes) => sm2_key(bytes).is_ok(),
        }
    }

    /// Verifies `signature` over `message` (the rules in the module comment).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        match self {
            PublicKey::Ed25519(bytes) => {
                let key = ed25519_key(bytes).map_err(|_| SignatureError::BadKey(self.to_hex()))?;
                key.verify(&ed25519_zebra::Signature::from_bytes(&signature.0), message)
                    .map_err(|_| SignatureError::Invalid(self.to_hex()))
            }
            PublicKey::Sm2(bytes) => {
                use sm2::dsa::signature::Verifier;
                let key = sm2_key(bytes).map_err(|_| SignatureError::BadKey(self.to_hex()))?;
                let signature = sm2::dsa::Signature::from_slice(&signature.0)
                    .map_err(|_| SignatureError::Invalid(self.to_hex()))?;
                key.verify(message, &signature)
                    .map_err(|_| SignatureError::Invalid(self.to_hex()))
            }
        }
    }
}

/// The Ed25519 verification key of `bytes` if they are a valid key ([`PublicKey::is_valid`]).
///
/// The key rule costs a square root and an inversion, and making the key another
/// square root: together about a quarter of a single check. A ledger's signers are
/// few, so the last [`KEYS_KEPT`] valid keys are kept, as [`sm2_key`] keeps SM2's. A
/// pure function remembered: no verdict depends on the cache.
fn ed25519_key(bytes: &[u8; 32]) -> Result<ed25519_zebra::VerificationKey, ()> {
    static KEPT: Kept<[u8; 32], ed25519_zebra::VerificationKey> = std::sync::OnceLock::new();
    kept(&KEPT, bytes, || {
        let compressed = CompressedEdwardsY(*bytes);
        let canonical = compressed
            .decompress()
            .is_some_and(|point| !point.is_small_order() && point.compress() == compressed);
        if !canonical {
            return Err(());
        }
        ed25519_zebra::VerificationKey::try_from(*bytes).map_err(|_| ())
    })
}

/// The SM2 verifying key of a compressed SEC1 encoding (nothing else is accepted).
///
/// Making one costs a square root (the point's y) and the SM3 hash `Z` of the key, a
/// sixth of a verification; a ledger's signers are few, so the last [`KEYS_KEPT`]
/// keys are kept. A pure function remembered: no verdict depends on the cache.
fn sm2_key(bytes: &[u8; 33]) -> Result<std::sync::Arc<sm2::dsa::VerifyingKey>, ()> {
    static KEPT: Kept<[u8; 33], std::sync::Arc<sm2::dsa::VerifyingKey>> =
        std::sync::OnceLock::new();
    if bytes[0] != 0x02 && bytes[0] != 0x03 {
        return Err(());
    }
    kept(&KEPT, bytes, || {
        sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, bytes)
            .map(std::sync::Arc::new)
            .map_err(|_| ())
    })
}

/// Verification keys made from their bytes, by scheme: see [`kept`].
type Kept<B, K> = std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeMap<B, K>>>;

/// The key `make` gives for `bytes`, made once while it is among the last [`KEYS_KEPT`]
/// keys made (all are forgotten when that many are kept). Only keys are kept: bytes
/// `make` refuses are refused again each time.
fn kept<B: Ord + Copy, K: Clone>(
    cache: &Kept<B, K>,
    bytes: &B,
    make: impl FnOnce() -> Result<K, ()>,
) -> Result<K, ()> {
    let cache = cache.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked mid-insert: the map is whole.
    if let Some(key) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(bytes) {
        return Ok(key.clone());
    }
    let key = make()?;
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= KEYS_KEPT {
        map.clear();
    }
    map.insert(*bytes, key.clone());
    Ok(key)
}

/// How many keys of each scheme [`kept`] keeps (an SM2 key about 300 bytes, an
/// Ed25519 key about 200).
const KEYS_KEPT: usize = 4_096;

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..16])
    }
}

impl std::str::FromStr for PublicKey {
    type Err = HexError;
    /// 64 hex characters are an Ed25519 key, 66 an SM2 key.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.len() {
            66 => crate::hex_bytes::parse_hex::<33>(s).map(PublicKey::Sm2),
            _ => crate::hex_bytes::parse_hex::<32>(s).map(PublicKey::Ed25519),
        }
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Verifies many signatures at once with the same verdict as [`PublicKey::verify`] on
/// each. Ed25519 signatures, two or more, are checked in one batch (ZIP-215 makes the
/// verdicts agree): on a 2-core AMD EPYC about 9 µs a signature in a batch of 4,000,
/// 14 in one of 64, 30 in one of 4, against 35-45 µs one by one; SM2 signatures one at
/// a time.
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
    // The key rule first, once per distinct key (and then kept: see `ed25519_key`).
    let mut checked = std::collections::BTreeSet::new();
    for key in keys {
        if checked.insert(*key) && !key.is_valid() {
            return Err(SignatureError::BadKey(key.to_hex()));
        }
    }
    #[cfg(feature = "batch")]
    if messages.len() >= BATCH_MIN {
        let mut batch = ed25519_zebra::batch::Verifier::new();
        for ((message, signature), key) in messages.iter().zip(signatures).zip(keys) {
            match key {
                PublicKey::Ed25519(bytes) => batch.queue((
                    ed25519_zebra::VerificationKeyBytes::from(*bytes),
                    ed25519_zebra::Signature::from_bytes(&signature.0),
                    message,
                )),
                PublicKey::Sm2(_) => key.verify(message, signature)?,
            }
        }
        return batch
            .verify(rand_core::OsRng)
            .map_err(|_| SignatureError::Invalid("one of the batch".into()));
    }
    // Each alone, the same verdicts under ZIP-215: a small batch, or no OS randomness
    // for the coefficients (the browser).
    for ((message, signature), key) in messages.iter().zip(signatures).zip(keys) {
        key.verify(message, signature)?;
    }
    Ok(())
}

/// Batches of fewer signatures are checked one by one: a batch's own work (its random
/// coefficients, drawn from the OS, and its multiscalar product) costs more than it
/// saves below this size.
#[cfg(feature = "batch")]
const BATCH_MIN: usize = 2;

/// HMAC-SHA-256 (RFC 2104): the keyed tags gateways put on personal data (DOMAIN.md 4
/// fixes this function whatever the chain's suite: tags are made off the ledger).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A secret signing key with its public key.
#[derive(Clone)]
pub struct KeyPair(Secret);

#[derive(Clone)]
enum Secret {
    Ed25519(Box<ed25519_zebra::SigningKey>),
    Sm2(Box<sm2::dsa::SigningKey>),
}

impl KeyPair {
    /// A fresh key of `scheme` from a cryptographic RNG (key generation only; never in
    /// consensus).
    pub fn generate(scheme: Scheme, rng: &mut impl CryptoRngCore) -> KeyPair {
        loop {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            // Only SM2 refuses some values (0 and n-1 and above): about 2^-32 of draws.
            if let Ok(key) = KeyPair::from_secret(scheme, &secret) {
                return key;
            }
        }
    }

    /// The Ed25519 key whose 32-byte secret seed is `seed` (RFC 8032's private key).
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        KeyPair(Secret::Ed25519(Box::new(ed25519_zebra::SigningKey::from(
            *seed,
        ))))
    }

    /// The key of `scheme` whose secret is `secret`: an Ed25519 seed, or an SM2 private
    /// key `d` (big endian, `1 <= d <= n-2`).
    pub fn from_secret(scheme: Scheme, secret: &[u8; 32]) -> Result<KeyPair, SignatureError> {
        match scheme {
            Scheme::Ed25519 => Ok(KeyPair::from_seed(secret)),
            Scheme::Sm2 => {
                let bad = || SignatureError::BadKey("(secret key out of range 1..n-1)".into());
                let key =
                    sm2::dsa::SigningKey::from_slice(SM2_DISTID, secret).map_err(|_| bad())?;
                // d = n-1 has no (1+d)^-1: it could never sign.
                let d_plus_1 = *key.as_nonzero_scalar().as_ref() + sm2::Scalar::ONE;
                if bool::from(d_plus_1.is_zero()) {
                    return Err(bad());
                }
                Ok(KeyPair(Secret::Sm2(Box::new(key))))
            }
        }
    }

    /// A key of `scheme` derived from `seed` deterministically (test and demo keys): the
    /// seed itself for Ed25519, for SM2 the first tagged SM3 hash of it that is a valid
    /// private key.
    pub fn derive(scheme: Scheme, seed: &[u8; 32]) -> KeyPair {
        if scheme == Scheme::Ed25519 {
            return KeyPair::from_seed(seed);
        }
        let mut counter = 0u32;
        loop {
            let candidate = Suite::Sm2Sm3
                .digest(&[b"cbec:sm2-derive", seed, &counter.to_be_bytes()])
                .0;
            if let Ok(key) = KeyPair::from_secret(scheme, &candidate) {
                return key;
            }
            counter += 1;
        }
    }

    pub fn scheme(&self) -> Scheme {
        match &self.0 {
            Secret::Ed25519(_) => Scheme::Ed25519,
            Secret::Sm2(_) => Scheme::Sm2,
        }
    }

    /// The 32 secret bytes, for writing a key file (see [`KeyPair::from_secret`]).
    pub fn secret(&self) -> [u8; 32] {
        match &self.0 {
            Secret::Ed25519(key) => (**key).into(),
            Secret::Sm2(key) => key.to_bytes().into(),
        }
    }

    pub fn public(&self) -> PublicKey {
        match &self.0 {
            Secret::Ed25519(key) => {
                PublicKey::Ed25519(ed25519_zebra::VerificationKeyBytes::from(key.as_ref()).into())
            }
            Secret::Sm2(key) => {
                let point = key.verifying_key().to_sec1_point(true);
                let mut bytes = [0u8; 33];
                bytes.copy_from_slice(point.as_bytes());
                PublicKey::Sm2(bytes)
            }
        }
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        match &self.0 {
            Secret::Ed25519(key) => Signature(key.sign(message).to_bytes()),
            Secret::Sm2(key) => {
                use sm2::dsa::signature::Signer;
                // The nonce is RFC 6979's (deterministic, rejection-sampled into [1, n-1]);
                // the only failures are r = 0, r + k = n or s = 0, each of chance about
                // 2^-256. Such a signature would be all zeros, which never verifies.
                key.try_sign(message)
                    .map(|sig| {
                        let mut bytes = [0u8; 64];
                        bytes.copy_from_slice(&sig.to_bytes());
                        Signature(bytes)
                    })
                    .unwrap_or(Signature([0; 64]))
            }
        }
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
    let expanded = Sha512::digest(key.secret());
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
            .chain_update(key.public().as_bytes())
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
        let weak = PublicKey::Ed25519(identity);
        assert!(!weak.is_valid());
        assert!(key(1).public().is_valid());
        assert!(weak.verify(b"x", &Signature([0; 64])).is_err());
        assert!(verify_batch(&[b"x"], &[Signature([0; 64])], &[weak]).is_err());
        // Every small-order point, canonically encoded, is refused.
        for torsion in EIGHT_TORSION {
            assert!(!PublicKey::Ed25519(torsion.compress().to_bytes()).is_valid());
        }
        // y = p + 1 encodes the identity's y = 1 non-canonically (so does the sign bit
        // on a point with x = 0): refused, or one key would have two addresses.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee; // 2^255 - 19 + 1 = p + 1, little endian
        non_canonical[31] = 0x7f;
        assert!(!PublicKey::Ed25519(non_canonical).is_valid());
        let mut signed_identity = identity;
        signed_identity[31] |= 0x80;
        assert!(!PublicKey::Ed25519(signed_identity).is_valid());
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

    /// Keys are kept once made ([`ed25519_key`]): a kept key refuses what a new one
    /// does, each kept key is its own, and bytes refused as a key are refused again.
    #[test]
    fn a_kept_key_refuses_what_a_new_one_refuses() {
        let (k, other) = (key(60), key(61));
        let sig = k.sign(b"kept");
        for _ in 0..2 {
            assert_eq!(k.public().verify(b"kept", &sig), Ok(()));
            assert_eq!(
                other.public().verify(b"other", &other.sign(b"other")),
                Ok(())
            );
        }
        for byte in [0, 31, 32, 63] {
            let mut bad = sig;
            bad.0[byte] ^= 1;
            assert!(k.public().verify(b"kept", &bad).is_err(), "byte {byte}");
            assert!(verify_batch(&[b"kept"], &[bad], &[k.public()]).is_err());
        }
        assert!(k.public().verify(b"kepT", &sig).is_err());
        assert!(other.public().verify(b"kept", &sig).is_err());
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey::Ed25519(identity);
        for _ in 0..2 {
            assert!(!weak.is_valid());
            assert_eq!(
                weak.verify(b"x", &Signature([0; 64])),
                Err(SignatureError::BadKey(weak.to_hex()))
            );
        }
    }

    /// Small batches are checked one by one, larger ones together: every size finds
    /// one bad signature wherever it is, and passes when there is none.
    #[test]
    fn every_batch_size_finds_one_bad_signature() {
        let keys: Vec<_> = (70..76).map(key).collect();
        let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 3]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pubs: Vec<_> = keys.iter().map(KeyPair::public).collect();
        for size in 1..=sigs.len() {
            assert_eq!(
                verify_batch(&refs[..size], &sigs[..size], &pubs[..size]),
                Ok(())
            );
            for bad in 0..size {
                let mut tampered = sigs[..size].to_vec();
                tampered[bad].0[40] ^= 1;
                assert!(
                    verify_batch(&refs[..size], &tampered, &pubs[..size]).is_err(),
                    "size {size}, bad {bad}"
                );
            }
        }
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

    /// GB/T 32905-2016 Annex A: SM3 of "abc" and of "abcd" repeated 16 times.
    #[test]
    fn sm3_known_answers_from_gb_t_32905() {
        assert_eq!(
            Suite::Sm2Sm3.digest(&[b"abc"]).to_hex(),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            Suite::Sm2Sm3
                .digest(&[b"abcd".repeat(16).as_slice()])
                .to_hex(),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
        // Split input hashes as one, and SHA-256 is FIPS 180's.
        assert_eq!(
            Suite::Sm2Sm3.digest(&[b"ab", b"c"]),
            Suite::Sm2Sm3.digest(&[b"abc"])
        );
        assert_eq!(
            Suite::Ed25519Sha256.digest(&[b"abc"]).to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn unhex<const N: usize>(text: &str) -> [u8; N] {
        crate::hex_bytes::parse_hex::<N>(&text.to_lowercase()).expect("hex")
    }

    /// GB/T 32918.5-2017 (GM/T 0003.5-2012) Annex A: the signature example on the
    /// recommended curve, with its identifier, key, `Z`, `e`, fixed `k` and `(r, s)`.
    /// The crate draws `k` itself (RFC 6979), so the standard's signing steps are
    /// computed here with the crate's curve arithmetic and the fixed `k`; then the
    /// standard's signature is verified by the ledger's verifier.
    #[test]
    fn sm2_signature_example_from_gb_t_32918() {
        use sm2::elliptic_curve::ff::PrimeField;
        use sm2::elliptic_curve::group::Group;
        use sm2::elliptic_curve::ops::Reduce;
        use sm2::elliptic_curve::point::AffineCoordinates;
        use sm2::{FieldBytes, ProjectivePoint, Scalar};

        let d: [u8; 32] = unhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8");
        let x: [u8; 32] = unhex("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020");
        let y: [u8; 32] = unhex("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13");
        let k: [u8; 32] = unhex("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21");
        let expected_z = "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3";
        let expected_e = "f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640";
        let expected_rs = "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3\
                           b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa";
        let message = b"message digest";

        // The key pair: d gives the standard's public point (y is odd: prefix 03).
        let key = KeyPair::from_secret(Scheme::Sm2, &d).expect("valid d");
        let mut compressed = [3u8; 33];
        compressed[1..].copy_from_slice(&x);
        assert_eq!(key.public(), PublicKey::Sm2(compressed));
        assert_eq!(key.secret(), d);
        assert!(key.public().is_valid());

        // Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA), e = SM3(Z || M).
        let curve = [
            "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC",
            "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93",
            "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7",
            "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0",
        ]
        .map(unhex::<32>);
        let entl = ((SM2_DISTID.len() * 8) as u16).to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![&entl, SM2_DISTID.as_bytes()];
        parts.extend(curve.iter().map(|c| c.as_slice()));
        parts.extend([x.as_slice(), y.as_slice()]);
        let z = Suite::Sm2Sm3.digest(&parts);
        assert_eq!(z.to_hex(), expected_z);
        let e = Suite::Sm2Sm3.digest(&[&z.0, message]);
        assert_eq!(e.to_hex(), expected_e);

        // r = (e + x1) mod n with (x1, y1) = [k]G; s = (1 + d)^-1 (k - r d) mod n.
        let scalar = |bytes: [u8; 32]| {
            Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(bytes))).expect("< n")
        };
        let (d, k) = (scalar(d), scalar(k));
        let x1 = ProjectivePoint::mul_by_generator(&k).to_affine().x();
        let r = scalar(e.0) + <Scalar as Reduce<FieldBytes>>::reduce(&x1);
        let inverse = Option::<Scalar>::from((d + Scalar::ONE).invert()).expect("invertible");
        let s = inverse * (k - r * d);
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&r.to_repr());
        rs[32..].copy_from_slice(&s.to_repr());
        assert_eq!(hex::encode(rs), expected_rs.replace(' ', ""));

        // The standard's signature verifies under the ledger's rule; nothing else does.
        let signature = Signature(rs);
        assert_eq!(key.public().verify(message, &signature), Ok(()));
        assert!(key.public().verify(b"message digesT", &signature).is_err());
        // Our own (RFC 6979 k) signature of the same message verifies too.
        assert_eq!(key.public().verify(message, &key.sign(message)), Ok(()));
    }

    #[test]
    fn each_scheme_round_trips_and_refuses_tampering_and_other_keys() {
        for scheme in Scheme::ALL {
            let key = KeyPair::derive(scheme, &[1; 32]);
            let other = KeyPair::derive(scheme, &[2; 32]);
            assert_eq!(key.scheme(), scheme);
            assert_eq!(key.public().scheme(), scheme);
            let again = KeyPair::from_secret(scheme, &key.secret()).expect("round trip");
            assert_eq!(again.public(), key.public());
            let sig = key.sign(b"filing 42");
            assert_eq!(key.public().verify(b"filing 42", &sig), Ok(()));
            assert!(key.public().verify(b"filing 43", &sig).is_err());
            assert!(other.public().verify(b"filing 42", &sig).is_err());
            for byte in 0..64 {
                let mut bad = sig;
                bad.0[byte] ^= 0x10;
                assert!(
                    key.public().verify(b"filing 42", &bad).is_err(),
                    "{scheme}: byte {byte}"
                );
            }
            let parsed: PublicKey = key.public().to_hex().parse().expect("parses");
            assert_eq!(parsed, key.public());
            assert_eq!(
                key.public().to_hex().len(),
                if scheme == Scheme::Sm2 { 66 } else { 64 }
            );
            // The batch check gives the same verdicts.
            let keys = [key.public(), other.public()];
            let sigs = [sig, other.sign(b"b")];
            assert_eq!(verify_batch(&[b"filing 42", b"b"], &sigs, &keys), Ok(()));
            assert!(verify_batch(&[b"filing 42", b"c"], &sigs, &keys).is_err());
        }
    }

    /// What the SM2 verifier accepts (module comment): `r` and `s` in `[1, n-1]`, no
    /// reduction; the negated `s` (ECDSA's malleation) and the point at infinity fail.
    #[test]
    fn sm2_refuses_out_of_range_and_modified_signatures() {
        use sm2::elliptic_curve::ff::PrimeField;
        use sm2::{FieldBytes, Scalar};
        let key = KeyPair::derive(Scheme::Sm2, &[7; 32]);
        let public = key.public();
        let message = b"declaration 7";
        let sig = key.sign(message);
        assert_eq!(public.verify(message, &sig), Ok(()));
        let n: [u8; 32] = unhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123");
        let with = |r: Option<[u8; 32]>, s: Option<[u8; 32]>| {
            let mut out = sig;
            if let Some(r) = r {
                out.0[..32].copy_from_slice(&r);
            }
            if let Some(s) = s {
                out.0[32..].copy_from_slice(&s);
            }
            out
        };
        for (what, bad) in [
            ("r = 0", with(Some([0; 32]), None)),
            ("s = 0", with(None, Some([0; 32]))),
            ("r = n", with(Some(n), None)),
            ("s = n", with(None, Some(n))),
            ("r = 2^256 - 1", with(Some([0xff; 32]), None)),
            ("s = 2^256 - 1", with(None, Some([0xff; 32]))),
        ] {
            assert!(public.verify(message, &bad).is_err(), "{what} accepted");
        }
        // (r, n - s): ECDSA's second signature is not one here.
        let s = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(
            <[u8; 32]>::try_from(&sig.0[32..]).expect("32"),
        )))
        .expect("canonical");
        let negated: [u8; 32] = (-s).to_repr().into();
        assert!(public.verify(message, &with(None, Some(negated))).is_err());
        // A second signature by the signer (another k) is valid: nothing is identified
        // by signature bytes.
        assert_ne!(key.sign(message), key.sign(b"other"));
    }

    #[test]
    fn sm2_keys_must_be_compressed_points_on_the_curve() {
        let key = KeyPair::derive(Scheme::Sm2, &[3; 32]).public();
        let PublicKey::Sm2(bytes) = key else {
            panic!("an SM2 key")
        };
        assert!(key.is_valid());
        for prefix in [0x00, 0x01, 0x04, 0x05] {
            let mut other = bytes;
            other[0] = prefix;
            assert!(!PublicKey::Sm2(other).is_valid(), "prefix {prefix}");
            assert!(PublicKey::Sm2(other)
                .verify(b"x", &Signature([1; 64]))
                .is_err());
        }
        // An x with no point on the curve: about half of all x; find one.
        let off_curve = (0u8..=255)
            .map(|i| {
                let mut k = [2u8; 33];
                k[32] = i;
                PublicKey::Sm2(k)
            })
            .find(|k| !k.is_valid());
        assert!(off_curve.is_some());
        // Secrets out of range are refused: 0, n - 1 and n.
        let n: [u8; 32] = unhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123");
        let mut n_minus_1 = n;
        n_minus_1[31] -= 1;
        for secret in [[0u8; 32], n_minus_1, n] {
            assert!(KeyPair::from_secret(Scheme::Sm2, &secret).is_err());
        }
    }

    #[test]
    fn suites_and_schemes_parse_by_name_and_refuse_each_others_keys() {
        for suite in Suite::ALL {
            assert_eq!(suite.name().parse::<Suite>(), Ok(suite));
            assert_eq!(suite.scheme().suite(), suite);
            let json = serde_json::to_string(&suite).expect("json");
            assert_eq!(json, format!("\"{}\"", suite.name()));
        }
        assert!("sm2".parse::<Suite>().is_err());
        assert_eq!("sm2".parse::<Scheme>(), Ok(Scheme::Sm2));
        let ed = KeyPair::derive(Scheme::Ed25519, &[1; 32]).public();
        let sm = KeyPair::derive(Scheme::Sm2, &[1; 32]).public();
        assert_eq!(Suite::Ed25519Sha256.check_key(&ed), Ok(()));
        assert_eq!(Suite::Sm2Sm3.check_key(&sm), Ok(()));
        let err = Suite::Sm2Sm3
            .check_key(&ed)
            .expect_err("ed25519 on sm2")
            .to_string();
        assert!(err.contains("ed25519") && err.contains("sm2-sm3"), "{err}");
        // The two suites hash the same bytes differently, tag included.
        assert_ne!(
            Suite::Ed25519Sha256.tagged("cbec:tx", b"x"),
            Suite::Sm2Sm3.tagged("cbec:tx", b"x")
        );
    }

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_sha256_known_answers_from_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let k = key(5);
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode(k.secret())));
    }
}
