//! Validator sets, consensus votes' sign bytes, and commit certificates.
//!
//! The certificate check lives here, not in `consensus`, because it is the auditor's
//! trust root: a header plus a certificate that verifies against the validator set is
//! all an auditor needs to trust a block.

use std::collections::BTreeSet;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{PublicKey, Signature, Suite};
use crate::hash::{tag, Hash};

/// Most validators a set may hold (and so most signatures a certificate may carry).
pub const VALIDATORS_MAX: usize = 128;

/// One validator: a consensus key with voting power.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Validator {
    pub key: PublicKey,
    pub power: u64,
}

/// An ordered set of validators. Construction checks it is well-formed, so every
/// `ValidatorSet` value is.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Serialize)]
#[serde(transparent)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

/// Why a list of validators is not a valid set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidatorSetError {
    #[error("a validator set needs at least one validator")]
    Empty,
    #[error("{count} validators exceed the limit of {max}")]
    TooMany { count: usize, max: usize },
    #[error("validator {key} appears twice")]
    DuplicateKey { key: PublicKey },
    #[error("validator {key} has zero voting power")]
    ZeroPower { key: PublicKey },
    #[error("total voting power overflows")]
    PowerOverflow,
}

impl ValidatorSet {
    pub fn new(validators: Vec<Validator>) -> Result<ValidatorSet, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > VALIDATORS_MAX {
            return Err(ValidatorSetError::TooMany {
                count: validators.len(),
                max: VALIDATORS_MAX,
            });
        }
        let mut seen = BTreeSet::new();
        let mut total: u64 = 0;
        for v in &validators {
            if !seen.insert(v.key) {
                return Err(ValidatorSetError::DuplicateKey { key: v.key });
            }
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroPower { key: v.key });
            }
            // Keep 3 * total within u64 so quorum arithmetic cannot overflow anywhere.
            total = total
                .checked_add(v.power)
                .filter(|t| t.checked_mul(3).is_some())
                .ok_or(ValidatorSetError::PowerOverflow)?;
        }
        Ok(ValidatorSet { validators })
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn total_power(&self) -> u64 {
        self.validators.iter().map(|v| v.power).sum()
    }

    /// The validator's position in the set, if it is a member.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.validators.iter().position(|v| v.key == *key)
    }

    pub fn power_of(&self, key: &PublicKey) -> Option<u64> {
        self.index_of(key).map(|i| self.validators[i].power)
    }

    /// More than two thirds of the total power.
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power()) * 2
    }

    /// More than one third of the total power: at least one honest validator among them.
    pub fn is_one_third(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power())
    }

    pub fn hash(&self, suite: Suite) -> Hash {
        suite.tagged(tag::VALIDATOR_SET, &codec::encode(self))
    }
}

impl<'de> Deserialize<'de> for ValidatorSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let validators = Vec::<Validator>::deserialize(d)?;
        ValidatorSet::new(validators).map_err(serde::de::Error::custom)
    }
}

impl<C> Decode<C> for ValidatorSet {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let validators = Vec::<Validator>::decode(decoder)?;
        ValidatorSet::new(validators)
            .map_err(|e| bincode::error::DecodeError::OtherString(e.to_string()))
    }
}

impl<'de, C> bincode::BorrowDecode<'de, C> for ValidatorSet {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Self::decode(decoder)
    }
}

/// The two voting steps of Tendermint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    Prevote,
    Precommit,
}

/// The exact bytes a validator signs for a vote: domain tag, chain, height, round, step
/// and value (`None` is a vote for nil). Shared by consensus (signing) and certificate
/// verification, so they cannot drift apart.
pub fn vote_sign_bytes(
    chain_id: &Hash,
    height: u64,
    round: u32,
    kind: VoteKind,
    value: Option<&Hash>,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + tag::VOTE.len() + 32 + 8 + 4 + 4 + 33);
    bytes.push(tag::VOTE.len() as u8);
    bytes.extend_from_slice(tag::VOTE.as_bytes());
    bytes.extend_from_slice(&codec::encode(&(chain_id, height, round, kind, value)));
    bytes
}

/// One validator's precommit signature inside a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct CommitSig {
    pub validator: PublicKey,
    pub signature: Signature,
}

/// Proof that validators holding more than 2/3 of the power precommitted `block_hash`
/// at `height` and `round`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub height: u64,
    pub round: u32,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSig>,
}

/// Why a certificate does not prove a commit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("certificate carries {count} signatures, more than the {max} validators")]
    TooManySignatures { count: usize, max: usize },
    #[error("signer {key} is not a validator")]
    UnknownSigner { key: PublicKey },
    #[error("signer {key} appears more than once")]
    DuplicateSigner { key: PublicKey },
    #[error(
        "signature of {key} does not verify for height {height}, round {round}, block {block}"
    )]
    BadSignature {
        key: PublicKey,
        height: u64,
        round: u32,
        block: Hash,
    },
    #[error("signers hold {signed} of {total} voting power, not more than two thirds")]
    InsufficientPower { signed: u64, total: u64 },
    #[error("certificate is for {found}, expected {expected}")]
    WrongBlock { expected: String, found: String },
}

impl CommitCertificate {
    /// Checks the certificate against `validators` on chain `chain_id`: distinct known
    /// signers, every signature over this height, round and block hash, and more than
    /// 2/3 of the power.
    pub fn verify(
        &self,
        chain_id: &Hash,
        validators: &ValidatorSet,
    ) -> Result<(), CertificateError> {
        self.verify_except(chain_id, validators, &[])
    }

    /// As [`CommitCertificate::verify`], but a signature in `checked` (signatures
    /// already verified over this same height, round and block, on this chain) is not
    /// verified again; every other rule applies to it as to any.
    fn verify_except(
        &self,
        chain_id: &Hash,
        validators: &ValidatorSet,
        checked: &[CommitSig],
    ) -> Result<(), CertificateError> {
        if self.signatures.len() > validators.len() {
            return Err(CertificateError::TooManySignatures {
                count: self.signatures.len(),
                max: validators.len(),
            });
        }
        let message = vote_sign_bytes(
            chain_id,
            self.height,
            self.round,
            VoteKind::Precommit,
            Some(&self.block_hash),
        );
        let mut seen = BTreeSet::new();
        let mut signed: u64 = 0;
        for sig in &self.signatures {
            let power = validators
                .power_of(&sig.validator)
                .ok_or(CertificateError::UnknownSigner { key: sig.validator })?;
            if !seen.insert(sig.validator) {
                return Err(CertificateError::DuplicateSigner { key: sig.validator });
            }
            if checked.contains(sig) {
                signed += power;
                continue;
            }
            sig.validator
                .verify(&message, &sig.signature)
                .map_err(|_| CertificateError::BadSignature {
                    key: sig.validator,
                    height: self.height,
                    round: self.round,
                    block: self.block_hash,
                })?;
            signed += power;
        }
        if !validators.is_quorum(signed) {
            return Err(CertificateError::InsufficientPower {
                signed,
                total: validators.total_power(),
            });
        }
        Ok(())
    }

    /// [`CommitCertificate::verify`], and that it certifies `block_hash` at `height`.
    pub fn verify_for(
        &self,
        chain_id: &Hash,
        validators: &ValidatorSet,
        height: u64,
        block_hash: &Hash,
    ) -> Result<(), CertificateError> {
        if self.height != height || self.block_hash != *block_hash {
            return Err(CertificateError::WrongBlock {
                expected: format!("block {block_hash} at height {height}"),
                found: format!("block {} at height {}", self.block_hash, self.height),
            });
        }
        self.verify(chain_id, validators)
    }

    /// As [`CommitCertificate::verify_for`], reusing `verified`: a certificate this
    /// node verified before on this chain against the same `validators` (its own
    /// record of the commit at `height`). The signatures both carry for the same round
    /// and block are not verified again; a block's `last_commit` is usually the
    /// proposer's record of the commit each validator recorded too, so a validator
    /// checks only the signatures it did not see itself.
    pub fn verify_for_reusing(
        &self,
        chain_id: &Hash,
        validators: &ValidatorSet,
        height: u64,
        block_hash: &Hash,
        verified: Option<&CommitCertificate>,
    ) -> Result<(), CertificateError> {
        if self.height != height || self.block_hash != *block_hash {
            return self.verify_for(chain_id, validators, height, block_hash);
        }
        let checked = match verified {
            Some(v)
                if v.height == self.height
                    && v.round == self.round
                    && v.block_hash == self.block_hash =>
            {
                &v.signatures[..]
            }
            _ => &[],
        };
        self.verify_except(chain_id, validators, checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;

    const CHAIN: Hash = Hash([7; 32]);

    fn keys() -> Vec<KeyPair> {
        (1..=4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect()
    }

    fn set(keys: &[KeyPair]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        )
        .expect("valid set")
    }

    fn certificate(
        signers: &[&KeyPair],
        height: u64,
        round: u32,
        block: Hash,
    ) -> CommitCertificate {
        let message = vote_sign_bytes(&CHAIN, height, round, VoteKind::Precommit, Some(&block));
        CommitCertificate {
            height,
            round,
            block_hash: block,
            signatures: signers
                .iter()
                .map(|k| CommitSig {
                    validator: k.public(),
                    signature: k.sign(&message),
                })
                .collect(),
        }
    }

    #[test]
    fn three_of_four_signatures_certify() {
        let k = keys();
        let cert = certificate(&[&k[0], &k[1], &k[2]], 5, 0, Hash([1; 32]));
        assert_eq!(cert.verify(&CHAIN, &set(&k)), Ok(()));
        assert_eq!(cert.verify_for(&CHAIN, &set(&k), 5, &Hash([1; 32])), Ok(()));
        assert!(cert
            .verify_for(&CHAIN, &set(&k), 6, &Hash([1; 32]))
            .is_err());
        assert!(cert
            .verify_for(&CHAIN, &set(&k), 5, &Hash([2; 32]))
            .is_err());
    }

    /// A certificate with one signature's byte flipped.
    fn tampered(mut cert: CommitCertificate, index: usize) -> CommitCertificate {
        cert.signatures[index].signature.0[7] ^= 1;
        cert
    }

    #[test]
    fn a_signature_already_checked_is_not_checked_again_and_others_are() {
        let k = keys();
        let block = Hash([1; 32]);
        let own = certificate(&[&k[0], &k[1], &k[2]], 5, 0, block);
        let other = certificate(&[&k[1], &k[2], &k[3]], 5, 0, block);
        let reuse = |c: &CommitCertificate, verified: &CommitCertificate| {
            c.verify_for_reusing(&CHAIN, &set(&k), 5, &block, Some(verified))
        };
        assert_eq!(reuse(&other, &own), Ok(()));
        assert_eq!(
            other.verify_for_reusing(&CHAIN, &set(&k), 5, &block, None),
            Ok(())
        );
        // The one signature `own` does not hold is verified: flipped, it is caught.
        let bad = tampered(other.clone(), 2);
        assert!(matches!(
            reuse(&bad, &own),
            Err(CertificateError::BadSignature { key, .. }) if key == k[3].public()
        ));
        // A flipped signature that the reused record holds too (it could not, having
        // been verified) passes: the record is trusted, which is what saves the work.
        let both_bad = tampered(own.clone(), 0);
        assert_eq!(reuse(&both_bad, &both_bad), Ok(()));
        // The same signature bytes recorded for another round, block or height vouch
        // for nothing.
        let mut other_round = both_bad.clone();
        other_round.round = 1;
        let mut other_block = both_bad.clone();
        other_block.block_hash = Hash([2; 32]);
        let mut other_height = both_bad.clone();
        other_height.height = 4;
        for record in [other_round, other_block, other_height] {
            assert!(matches!(
                reuse(&both_bad, &record),
                Err(CertificateError::BadSignature { key, .. }) if key == k[0].public()
            ));
        }
        // Every other rule still applies: too little power, a wrong block.
        let mut short = own.clone();
        short.signatures.pop();
        assert!(matches!(
            reuse(&short, &own),
            Err(CertificateError::InsufficientPower { .. })
        ));
        assert!(own
            .verify_for_reusing(&CHAIN, &set(&k), 6, &block, Some(&own))
            .is_err());
    }

    #[test]
    fn dropping_one_signature_leaves_too_little_power() {
        let k = keys();
        let mut cert = certificate(&[&k[0], &k[1], &k[2]], 5, 0, Hash([1; 32]));
        cert.signatures.pop();
        assert_eq!(
            cert.verify(&CHAIN, &set(&k)),
            Err(CertificateError::InsufficientPower {
                signed: 2,
                total: 4
            })
        );
    }

    #[test]
    fn duplicated_signer_is_refused() {
        let k = keys();
        let mut cert = certificate(&[&k[0], &k[1]], 5, 0, Hash([1; 32]));
        let again = cert.signatures[1].clone();
        cert.signatures.push(again);
        assert_eq!(
            cert.verify(&CHAIN, &set(&k)),
            Err(CertificateError::DuplicateSigner { key: k[1].public() })
        );
    }

    #[test]
    fn signer_outside_the_set_is_refused() {
        let k = keys();
        let outsider = KeyPair::from_seed(&[99; 32]);
        let cert = certificate(&[&k[0], &k[1], &outsider], 5, 0, Hash([1; 32]));
        assert_eq!(
            cert.verify(&CHAIN, &set(&k)),
            Err(CertificateError::UnknownSigner {
                key: outsider.public()
            })
        );
    }

    #[test]
    fn signatures_over_another_height_round_block_or_chain_are_refused() {
        let k = keys();
        let good = certificate(&[&k[0], &k[1], &k[2]], 5, 1, Hash([1; 32]));
        let mut other_height = good.clone();
        other_height.height = 6;
        let mut other_round = good.clone();
        other_round.round = 2;
        let mut other_block = good.clone();
        other_block.block_hash.0[31] ^= 1;
        for bad in [other_height, other_round, other_block] {
            assert!(matches!(
                bad.verify(&CHAIN, &set(&k)),
                Err(CertificateError::BadSignature { .. })
            ));
        }
        assert!(good.verify(&Hash([8; 32]), &set(&k)).is_err());
    }

    #[test]
    fn a_prevote_signature_is_not_a_precommit() {
        let k = keys();
        let block = Hash([1; 32]);
        let message = vote_sign_bytes(&CHAIN, 5, 0, VoteKind::Prevote, Some(&block));
        let cert = CommitCertificate {
            height: 5,
            round: 0,
            block_hash: block,
            signatures: k[..3]
                .iter()
                .map(|k| CommitSig {
                    validator: k.public(),
                    signature: k.sign(&message),
                })
                .collect(),
        };
        assert!(cert.verify(&CHAIN, &set(&k)).is_err());
    }

    #[test]
    fn flipping_any_signature_byte_is_refused() {
        let k = keys();
        let cert = certificate(&[&k[0], &k[1], &k[2]], 5, 0, Hash([1; 32]));
        for s in 0..3 {
            for byte in [0, 31, 32, 63] {
                let mut bad = cert.clone();
                bad.signatures[s].signature.0[byte] ^= 0x80;
                assert!(bad.verify(&CHAIN, &set(&k)).is_err(), "sig {s} byte {byte}");
            }
        }
    }

    #[test]
    fn quorum_arithmetic_uses_strictly_more_than_two_thirds() {
        let k = keys();
        let s = set(&k);
        assert!(!s.is_quorum(2));
        assert!(s.is_quorum(3));
        assert!(!s.is_one_third(1));
        assert!(s.is_one_third(2));
    }

    #[test]
    fn malformed_sets_are_refused() {
        let k = keys();
        assert_eq!(ValidatorSet::new(vec![]), Err(ValidatorSetError::Empty));
        let dup = vec![
            Validator {
                key: k[0].public(),
                power: 1,
            },
            Validator {
                key: k[0].public(),
                power: 1,
            },
        ];
        assert!(matches!(
            ValidatorSet::new(dup),
            Err(ValidatorSetError::DuplicateKey { .. })
        ));
        let zero = vec![Validator {
            key: k[0].public(),
            power: 0,
        }];
        assert!(matches!(
            ValidatorSet::new(zero),
            Err(ValidatorSetError::ZeroPower { .. })
        ));
        let huge = vec![
            Validator {
                key: k[0].public(),
                power: u64::MAX / 2,
            },
            Validator {
                key: k[1].public(),
                power: u64::MAX / 2,
            },
        ];
        assert_eq!(
            ValidatorSet::new(huge),
            Err(ValidatorSetError::PowerOverflow)
        );
        // Decoding goes through the same checks.
        let bytes = codec::encode(&vec![Validator {
            key: k[0].public(),
            power: 0,
        }]);
        assert!(codec::decode::<ValidatorSet>(&bytes).is_err());
    }
}
