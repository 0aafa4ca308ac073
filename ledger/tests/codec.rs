//! The canonical encoding: every type round-trips, and decoding refuses anything that is
//! not exactly one canonical value (truncated input, trailing bytes, foreign bytes that
//! would re-encode differently).

use cbec_ledger::codec::{self, CodecError};
use cbec_ledger::*;
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(PublicKey::Ed25519),
        (any::<bool>(), any::<[u8; 32]>()).prop_map(|(odd, x)| {
            let mut k = [0u8; 33];
            k[0] = if odd { 3 } else { 2 };
            k[1..].copy_from_slice(&x);
            PublicKey::Sm2(k)
        }),
    ]
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        hash(),
        public_key(),
        any::<u64>(),
        "[a-z]{1,12}",
        "[a-z_]{1,20}",
        proptest::collection::vec(any::<u8>(), 0..64),
        signature(),
    )
        .prop_map(
            |(chain_id, sender, nonce, chaincode, method, args, signature)| Transaction {
                body: TxBody {
                    chain_id,
                    sender,
                    nonce,
                    call: Call {
                        chaincode,
                        method,
                        args,
                    },
                },
                signature,
            },
        )
}

fn result() -> impl Strategy<Value = TxResult> {
    let event = (
        "[a-z]{1,8}",
        proptest::collection::vec(("[a-z]{1,5}", ".{0,10}"), 0..3),
    )
        .prop_map(|(kind, attrs)| Event {
            kind,
            attributes: attrs
                .into_iter()
                .map(|(key, value)| Attribute { key, value })
                .collect(),
        });
    let outcome = prop_oneof![
        proptest::collection::vec(event, 0..3).prop_map(|events| Outcome::Accepted { events }),
        ("[A-Z0-9-]{1,10}", ".{0,30}")
            .prop_map(|(rule, message)| Outcome::Rejected { rule, message }),
    ];
    (hash(), outcome).prop_map(|(tx_hash, outcome)| TxResult { tx_hash, outcome })
}

fn certificate() -> impl Strategy<Value = CommitCertificate> {
    (
        any::<u64>(),
        any::<u32>(),
        hash(),
        proptest::collection::vec(
            (public_key(), signature()).prop_map(|(validator, signature)| CommitSig {
                validator,
                signature,
            }),
            0..5,
        ),
    )
        .prop_map(
            |(height, round, block_hash, signatures)| CommitCertificate {
                height,
                round,
                block_hash,
                signatures,
            },
        )
}

fn header() -> impl Strategy<Value = Header> {
    (
        (hash(), any::<u64>(), any::<u64>(), hash(), public_key()),
        (any::<u64>(), hash(), hash(), hash(), hash()),
    )
        .prop_map(
            |(
                (chain_id, height, time_ms, previous, proposer),
                (tx_count, tx_root, results_root, state_root, validators_hash),
            )| {
                Header {
                    chain_id,
                    height,
                    time_ms,
                    previous,
                    proposer,
                    tx_count,
                    tx_root,
                    results_root,
                    state_root,
                    validators_hash,
                }
            },
        )
}

fn block() -> impl Strategy<Value = Block> {
    (
        header(),
        proptest::collection::vec(transaction(), 0..4),
        proptest::collection::vec(result(), 0..4),
        proptest::option::of(certificate()),
    )
        .prop_map(|(header, txs, results, last_commit)| Block {
            header,
            txs,
            results,
            last_commit,
        })
}

fn validator_set() -> impl Strategy<Value = ValidatorSet> {
    proptest::collection::btree_map(any::<[u8; 32]>(), 1u64..1000, 1..8).prop_map(|m| {
        ValidatorSet::new(
            m.into_iter()
                .map(|(k, power)| Validator {
                    key: PublicKey::Ed25519(k),
                    power,
                })
                .collect(),
        )
        .expect("distinct keys with positive power")
    })
}

fn inclusion_proof() -> impl Strategy<Value = InclusionProof> {
    (
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(hash(), 0..10),
    )
        .prop_map(|(leaf_index, tree_size, path)| InclusionProof {
            leaf_index,
            tree_size,
            path,
        })
}

/// Round trip, then every strict prefix fails, then a trailing byte fails.
fn check_canonical<T>(value: &T) -> Result<(), TestCaseError>
where
    T: bincode::Encode + bincode::Decode<()> + PartialEq + std::fmt::Debug,
{
    let bytes = codec::encode(value);
    prop_assert_eq!(codec::encoded_len(value), bytes.len(), "counted length");
    let back: T = codec::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    for cut in 0..bytes.len() {
        prop_assert!(
            codec::decode::<T>(&bytes[..cut]).is_err(),
            "prefix {} decoded",
            cut
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    prop_assert_eq!(
        codec::decode::<T>(&longer),
        Err(CodecError::TrailingBytes { extra: 1 })
    );
    Ok(())
}

proptest! {
    #[test]
    fn hash_is_canonical(v in hash()) { check_canonical(&v)?; }
    #[test]
    fn transaction_is_canonical(v in transaction()) { check_canonical(&v)?; }
    #[test]
    fn result_is_canonical(v in result()) { check_canonical(&v)?; }
    #[test]
    fn header_is_canonical(v in header()) { check_canonical(&v)?; }
    #[test]
    fn certificate_is_canonical(v in certificate()) { check_canonical(&v)?; }
    #[test]
    fn block_is_canonical(v in block()) { check_canonical(&v)?; }
    #[test]
    fn validator_set_is_canonical(v in validator_set()) { check_canonical(&v)?; }
    #[test]
    fn inclusion_proof_is_canonical(v in inclusion_proof()) { check_canonical(&v)?; }

    /// Whatever bytes decode must re-encode to exactly those bytes: there is one
    /// encoding per value, so a hash over encoded bytes is a hash over the value.
    #[test]
    fn decodable_bytes_are_the_canonical_encoding(tx in transaction(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = codec::encode(&tx);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(decoded) = codec::decode::<Transaction>(&bytes) {
            prop_assert_eq!(codec::encode(&decoded), bytes);
        }
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = codec::decode::<Block>(&bytes);
        let _ = codec::decode::<Transaction>(&bytes);
        let _ = codec::decode::<CommitCertificate>(&bytes);
    }
}

#[test]
fn huge_length_prefix_does_not_allocate() {
    // A vector claiming 2^60 elements: refused by the decode limit, not by the allocator.
    let mut bytes = vec![0u8; 32 + 8 + 8 + 32];
    bytes.extend_from_slice(&(1u64 << 60).to_be_bytes());
    assert!(codec::decode::<Block>(&bytes).is_err());
}

#[test]
fn bool_and_enum_tags_outside_their_range_are_refused() {
    let outcome = Outcome::Rejected {
        rule: "R1".into(),
        message: String::new(),
    };
    let mut bytes = codec::encode(&outcome);
    bytes[3] = 9; // the u32 variant tag's last byte
    assert!(codec::decode::<Outcome>(&bytes).is_err());
    let mut some: Vec<u8> = codec::encode(&Some(Hash::default()));
    some[0] = 2; // Option tag must be 0 or 1
    assert!(codec::decode::<Option<Hash>>(&some).is_err());
}
