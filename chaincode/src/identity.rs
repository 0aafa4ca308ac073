//! Identity attestations (实名核验) [DOMAIN.md 4, R10]: the buyer's number never reaches
//! the ledger, so R10 rests on a statement signed by a filed enterprise holding the role
//! `identity` (an identity-verification service): the buyer tag the documents carry, the
//! id type, the verdict (the number passes GB 11643 and matches the name on record), a
//! validity period and the tag key's version. No number and no name, in any form other
//! than the keyed tag.
//!
//! The service signs the suite's tagged hash (`cbec:identity-attestation`) of the
//! attestation's canonical encoding, with its filed key; the declaration list carries
//! the attestation and clearance checks it at block time ([`check`]).

use bincode::{Decode, Encode};
use cbec_ledger::{codec, KeyPair, PublicKey, Signature, Suite};
use serde::{Deserialize, Serialize};

use crate::context::{Context, Role};
use crate::enterprise::active_filing;
use crate::{layout, RuleError};

/// The domain tag of an attestation's signed hash.
pub const TAG: &str = "cbec:identity-attestation";

/// What the service found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The number is a valid resident id and matches the name in the service's records.
    Verified,
    /// It is not, or does not.
    Failed,
}

/// The signed part of an attestation.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AttestationBody {
    /// The buyer's keyed tag, `v<N>:<64 hex>`, as the order and the list carry it.
    pub buyer_tag: String,
    /// `1`: resident identity card.
    pub id_type: String,
    pub verdict: Verdict,
    /// Valid from and until (inclusive), milliseconds since the epoch.
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    /// The version of the tag key the buyer tag was made with (its `v<N>` prefix).
    pub key_version: String,
    /// The service's key (one of its filing's keys).
    pub service: PublicKey,
}

/// An attestation and the service's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Attestation {
    pub body: AttestationBody,
    pub signature: Signature,
}

impl Attestation {
    /// Signs `body` with `key` (whose public key should be `body.service`), hashed with
    /// the suite of the key's scheme.
    pub fn sign(body: AttestationBody, key: &KeyPair) -> Attestation {
        let hash = key.scheme().suite().tagged(TAG, &codec::encode(&body));
        Attestation {
            signature: key.sign(&hash.0),
            body,
        }
    }

    fn signed_hash(&self, suite: Suite) -> cbec_ledger::Hash {
        suite.tagged(TAG, &codec::encode(&self.body))
    }
}

fn r10(message: impl Into<String>) -> RuleError {
    RuleError::new("R10", message)
}

/// R10's attestation check at block time: for `buyer_tag`, verified, a resident id,
/// unexpired, signed by the key of a filed, unlisted enterprise holding the role
/// `identity`. The refusal names what failed.
pub fn check(
    ctx: &Context<'_, '_>,
    attestation: &Attestation,
    buyer_tag: &str,
) -> Result<(), RuleError> {
    let body = &attestation.body;
    if body.buyer_tag != buyer_tag {
        return Err(r10(format!(
            "the identity attestation is for buyer {}, not {buyer_tag}",
            body.buyer_tag
        )));
    }
    if body.id_type != "1" {
        return Err(r10(format!(
            "the attestation's id type is {}, not 1 (resident identity card)",
            body.id_type
        )));
    }
    if body.verdict != Verdict::Verified {
        return Err(r10("the identity service did not verify the buyer"));
    }
    if !buyer_tag.starts_with(&format!("{}:", body.key_version)) {
        return Err(r10(format!(
            "the attestation's key version {} is not the buyer tag's",
            body.key_version
        )));
    }
    let now = ctx.block.time_ms;
    if now < body.valid_from_ms || now > body.valid_until_ms {
        return Err(r10(format!(
            "the attestation is valid from {} to {} ms, not at block time {now}",
            body.valid_from_ms, body.valid_until_ms
        )));
    }
    let suite = ctx.block.suite;
    suite
        .check_key(&body.service)
        .map_err(|e| r10(format!("attestation key: {e}")))?;
    body.service
        .verify(&attestation.signed_hash(suite).0, &attestation.signature)
        .map_err(|_| r10("the attestation's signature does not verify"))?;
    let uscc: String = ctx
        .get(&layout::enterprise_key(&body.service.to_hex()))?
        .ok_or_else(|| {
            r10(format!(
                "attestation key {} belongs to no filed enterprise",
                body.service
            ))
        })?;
    let filing = active_filing(ctx, &uscc).map_err(|e| r10(format!("identity service: {e}")))?;
    if !filing.roles.contains(&Role::Identity) {
        return Err(r10(format!(
            "{uscc} signed the attestation but is not a filed identity service"
        )));
    }
    Ok(())
}

/// The keyed tag of a personal value, as gateways and identity services make it
/// [DOMAIN.md 4]: `<key version>:` and the hex HMAC-SHA-256, under the tag key, of the
/// purpose, a zero byte and the canonical value.
pub fn personal_tag(tag_key: &[u8], key_version: &str, purpose: &str, value: &str) -> String {
    let mut message = Vec::with_capacity(purpose.len() + 1 + value.len());
    message.extend_from_slice(purpose.as_bytes());
    message.push(0);
    message.extend_from_slice(value.as_bytes());
    format!(
        "{key_version}:{}",
        cbec_ledger::Hash(cbec_ledger::crypto::hmac_sha256(tag_key, &message)).to_hex()
    )
}

/// The identity service's side of R10 (`cbec identity attest`): checks the resident id
/// number (GB 11643, canonical form) and the name locally, computes the buyer tag with
/// the tag key, and signs an attestation valid from `now_ms` for `valid_days`. The
/// number and the name appear nowhere in the result but inside the keyed tag.
pub fn attest(
    service: &KeyPair,
    tag_key: &[u8],
    key_version: &str,
    id_number: &str,
    name: &str,
    now_ms: u64,
    valid_days: u64,
) -> Result<Attestation, String> {
    crate::codes::resident_id(id_number, now_ms).map_err(|e| format!("resident id number: {e}"))?;
    if name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    let version_ok = key_version.len() >= 2
        && key_version.starts_with('v')
        && key_version[1..].bytes().all(|b| b.is_ascii_digit());
    if !version_ok {
        return Err(format!("key version `{key_version}` is not v<N>"));
    }
    if tag_key.len() < 16 {
        return Err(format!(
            "the tag key is {} bytes; at least 16 are needed",
            tag_key.len()
        ));
    }
    let body = AttestationBody {
        buyer_tag: personal_tag(tag_key, key_version, "buyer", id_number),
        id_type: "1".into(),
        verdict: Verdict::Verified,
        valid_from_ms: now_ms,
        valid_until_ms: now_ms.saturating_add(valid_days.saturating_mul(86_400_000)),
        key_version: key_version.into(),
        service: service.public(),
    };
    Ok(Attestation::sign(body, service))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_721_744_000; // 2026-11-26

    #[test]
    fn an_attestation_holds_the_keyed_tag_and_no_number_or_name() {
        let service = KeyPair::from_seed(&[4; 32]);
        let key = [7u8; 32];
        let a = attest(
            &service,
            &key,
            "v1",
            "11010519491231002X",
            "Zhang San",
            NOW,
            365,
        )
        .expect("attest");
        assert_eq!(
            a.body.buyer_tag,
            personal_tag(&key, "v1", "buyer", "11010519491231002X")
        );
        assert!(a.body.buyer_tag.starts_with("v1:") && a.body.buyer_tag.len() == 67);
        let json = serde_json::to_string(&a).expect("json");
        assert!(
            !json.contains("11010519491231002X") && !json.contains("Zhang"),
            "{json}"
        );
        assert_eq!(
            a.body.valid_until_ms - a.body.valid_from_ms,
            365 * 86_400_000
        );
        // Another key, another tag: the tag reveals nothing without the key.
        assert_ne!(
            personal_tag(&[8; 32], "v1", "buyer", "11010519491231002X"),
            a.body.buyer_tag
        );
        // A bad number, an empty name, a bad version or a short key are refused.
        for (number, name, version, key) in [
            ("110105194912310021", "Zhang San", "v1", &key[..]),
            ("11010519491231002x", "Zhang San", "v1", &key[..]),
            ("11010519491231002X", " ", "v1", &key[..]),
            ("11010519491231002X", "Zhang San", "1", &key[..]),
            ("11010519491231002X", "Zhang San", "v1", &key[..8]),
        ] {
            assert!(attest(&service, key, version, number, name, NOW, 1).is_err());
        }
    }
}
