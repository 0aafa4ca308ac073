//! Auditor proofs: each kind verifies from the trust root alone, and every kind of
//! tampering is caught with a message naming what failed.

mod support;

use cbec_ledger::goods::{self, EventKind, Head};
use cbec_ledger::proof::{Proof, ProofFile, Verified};
use cbec_ledger::{codec, CommitSig, Hash, KeyPair, Suite};
use support::chain::{key, Chain};

const SELLER: &str = "91140200MA0GRK2220";

/// A chain with two goods: PARCEL-A has five events, PARCEL-B two, interleaved.
fn two_goods() -> (Chain, Vec<Hash>) {
    two_goods_in(Suite::Ed25519Sha256)
}

/// [`two_goods`] on a chain of `suite`.
fn two_goods_in(suite: Suite) -> (Chain, Vec<Hash>) {
    let mut chain = Chain::with_suite(suite);
    let seller = chain.key(50);
    let kinds = [
        EventKind::Produced,
        EventKind::Ordered,
        EventKind::Paid,
        EventKind::Shipped,
        EventKind::Delivered,
    ];
    let mut a_txs = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        chain.record(&seller, SELLER, "PARCEL-A", kind);
        a_txs.push(chain.committed(chain.height()).block.txs[1].hash(suite));
        if i < 2 {
            chain.record(&seller, SELLER, "PARCEL-B", kind);
        }
    }
    (chain, a_txs)
}

fn expect_failure(file: &ProofFile, chain: &Chain, at: &str, words: &str) {
    match file.verify(&chain.trust) {
        Ok(v) => panic!("tampered proof verified: {v:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(
                e.at.contains(at) && text.contains(words),
                "expected failure at `{at}` mentioning `{words}`, got: {text}"
            );
        }
    }
}

/// A genuine precommit signature by `signer` over the proof's block, as a certificate
/// entry: valid bytes, so only the signer's standing can make it fail.
fn precommit_by(chain: &Chain, signer: &KeyPair, p: &cbec_ledger::proof::TxProof) -> CommitSig {
    let message = cbec_ledger::vote_sign_bytes(
        &chain.trust.chain_id,
        p.block.header.height,
        p.block.certificate.round,
        cbec_ledger::VoteKind::Precommit,
        Some(&p.block.header.hash(chain.trust.suite)),
    );
    CommitSig {
        validator: signer.public(),
        signature: signer.sign(&message),
    }
}

fn tx_of(file: &mut ProofFile) -> &mut cbec_ledger::proof::TxProof {
    match &mut file.proof {
        Proof::Tx(p) => p,
        _ => panic!("not a tx proof"),
    }
}

fn provenance_of(file: &mut ProofFile) -> &mut cbec_ledger::proof::ProvenanceProof {
    match &mut file.proof {
        Proof::Provenance(p) => p,
        _ => panic!("not a provenance proof"),
    }
}

#[test]
fn a_transaction_proof_verifies_and_names_its_block_and_signers() {
    let (chain, a) = two_goods();
    let file = chain.tx_file(&a[2]);
    let verified = file.verify(&chain.trust).expect("verifies");
    let Verified::Tx {
        tx_hash,
        block,
        chaincode,
        ..
    } = verified
    else {
        panic!("not a tx summary")
    };
    assert_eq!(tx_hash, a[2]);
    assert_eq!(chaincode, "goods");
    assert_eq!(block.height, 5);
    assert_eq!(block.certified_by, ["customs", "tax", "forex", "commerce"]);
}

#[test]
fn proofs_round_trip_through_json_and_binary() {
    let (chain, a) = two_goods();
    for file in [
        chain.tx_file(&a[0]),
        chain.state_file(3, goods::head_key("PARCEL-A").as_bytes()),
        chain.provenance_file("PARCEL-A"),
    ] {
        let json = serde_json::to_string_pretty(&file).expect("json");
        assert_eq!(
            ProofFile::parse(json.as_bytes()).expect("json parses"),
            file
        );
        let bytes = file.to_bytes();
        assert_eq!(ProofFile::parse(&bytes).expect("binary parses"), file);
        ProofFile::parse(&bytes)
            .expect("parses")
            .verify(&chain.trust)
            .expect("verifies after the round trip");
    }
}

/// Every single byte of a proof's binary form matters: flipping any one of them makes
/// the file undecodable or unverifiable.
fn every_byte_counts(chain: &Chain, file: &ProofFile) {
    file.verify(&chain.trust)
        .expect("the untampered proof verifies");
    let bytes = file.to_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let Ok(decoded) = ProofFile::from_bytes(&bad) else {
            continue;
        };
        match decoded.verify(&chain.trust) {
            Err(_) => {}
            // One exception is no forgery: an absence proof for an empty subtree also
            // proves the absence of any other key whose path enters that subtree, so a
            // flipped key byte can yield another true statement.
            Ok(Verified::State {
                key,
                value: None,
                block,
            }) => assert_eq!(
                chain.committed(block.height).state.get(&key),
                None,
                "flipping byte {i} proved a present key absent"
            ),
            Ok(other) => panic!(
                "flipping byte {i} of {} went unnoticed: {other:?}",
                bytes.len()
            ),
        }
    }
}

#[test]
fn every_byte_of_a_transaction_proof_is_checked() {
    for suite in Suite::ALL {
        let (chain, a) = two_goods_in(suite);
        every_byte_counts(&chain, &chain.tx_file(&a[1]));
    }
}

#[test]
fn every_byte_of_a_state_proof_is_checked() {
    for suite in Suite::ALL {
        let (chain, _) = two_goods_in(suite);
        every_byte_counts(
            &chain,
            &chain.state_file(6, goods::head_key("PARCEL-A").as_bytes()),
        );
        every_byte_counts(&chain, &chain.state_file(6, b"never/written"));
    }
}

#[test]
fn every_byte_of_a_provenance_proof_is_checked() {
    for suite in Suite::ALL {
        let (chain, _) = two_goods_in(suite);
        every_byte_counts(&chain, &chain.provenance_file("PARCEL-B"));
    }
}

/// A proof of one suite's chain checked as the other suite's (a genesis file edited to
/// name the other suite, its chain id kept): every hash differs, so it fails at once.
#[test]
fn a_proof_checked_under_the_other_suite_is_refused() {
    for suite in Suite::ALL {
        let (chain, a) = two_goods_in(suite);
        let mut other = chain.trust.clone();
        other.suite = Suite::ALL.into_iter().find(|s| *s != suite).expect("two");
        for file in [chain.tx_file(&a[0]), chain.provenance_file("PARCEL-A")] {
            file.verify(&chain.trust)
                .expect("verifies under its own suite");
            let err = file.verify(&other).expect_err("other suite");
            assert!(err.at.starts_with("genesis"), "{suite}: {err}");
        }
        // With the validator keys of the other scheme too, the headers' hashes differ.
        let mut foreign = other.clone();
        for (i, agency) in foreign.agencies.iter_mut().enumerate() {
            agency.validator_key = KeyPair::derive(other.suite.scheme(), &[i as u8; 32]).public();
        }
        let err = chain.tx_file(&a[0]).verify(&foreign).expect_err("foreign");
        assert!(err.at.ends_with("validators_hash"), "{suite}: {err}");
    }
}

/// An SM2 chain's provenance proof verifies, and one altered event fails at its
/// signature, as on an Ed25519 chain.
#[test]
fn an_sm2_provenance_proof_verifies_and_tampering_is_named() {
    let (chain, _) = two_goods_in(Suite::Sm2Sm3);
    let file = chain.provenance_file("PARCEL-A");
    let Verified::Provenance { timeline, .. } = file.verify(&chain.trust).expect("verifies") else {
        panic!("not a provenance summary")
    };
    assert_eq!(timeline.len(), 5);
    let mut f = file.clone();
    provenance_of(&mut f).events[3].tx.body.call.args[2] ^= 1;
    expect_failure(&f, &chain, "proof.events[3].tx.signature", "signature");
    let mut f = file;
    provenance_of(&mut f).events[1].tx.signature.0[20] ^= 1;
    expect_failure(&f, &chain, "proof.events[1].tx.signature", "signature");
}

#[test]
fn tampered_transaction_proof_fields_are_named() {
    let (chain, a) = two_goods();
    let good = chain.tx_file(&a[3]);

    let mut f = good.clone();
    tx_of(&mut f).tx.body.call.args[0] ^= 1;
    expect_failure(&f, &chain, "proof.tx.signature", "signature");

    let mut f = good.clone();
    tx_of(&mut f).tx.signature.0[5] ^= 1;
    expect_failure(&f, &chain, "proof.tx.signature", "signature");

    let mut f = good.clone();
    tx_of(&mut f).tx_path[0].0[0] ^= 1;
    expect_failure(&f, &chain, "proof.tx_path", "root");

    let mut f = good.clone();
    tx_of(&mut f).result_path[1].0[31] ^= 1;
    expect_failure(&f, &chain, "proof.result_path", "root");

    let mut f = good.clone();
    tx_of(&mut f).index ^= 1;
    expect_failure(&f, &chain, "proof.tx_path", "leaf");

    let mut f = good.clone();
    if let cbec_ledger::Outcome::Accepted { events } = &mut tx_of(&mut f).result.outcome {
        events[0].attributes[0].value.push('X');
    }
    expect_failure(&f, &chain, "proof.result_path", "result");

    // A result moved to another transaction: its path holds, its tx hash does not.
    let mut f = good.clone();
    tx_of(&mut f).result.tx_hash.0[0] ^= 1;
    expect_failure(&f, &chain, "proof.result_path", "result");

    for field in ["tx_root", "results_root", "state_root", "time", "height"] {
        let mut f = good.clone();
        let h = &mut tx_of(&mut f).block.header;
        match field {
            "tx_root" => h.tx_root.0[0] ^= 1,
            "results_root" => h.results_root.0[0] ^= 1,
            "state_root" => h.state_root.0[0] ^= 1,
            "time" => h.time_ms += 1,
            _ => h.height += 1,
        }
        expect_failure(&f, &chain, "proof.block.certificate", "block");
    }

    let mut f = good.clone();
    tx_of(&mut f).block.header.chain_id.0[0] ^= 1;
    expect_failure(&f, &chain, "proof.block.header.chain_id", "chain");

    let mut f = good.clone();
    tx_of(&mut f).block.header.validators_hash.0[0] ^= 1;
    expect_failure(&f, &chain, "proof.block.header.validators_hash", "set");

    let mut f = good.clone();
    tx_of(&mut f).block.certificate.signatures[2].signature.0[0] ^= 1;
    expect_failure(&f, &chain, "proof.block.certificate", "does not verify");

    let mut f = good.clone();
    tx_of(&mut f).block.certificate.round += 1;
    expect_failure(&f, &chain, "proof.block.certificate", "does not verify");

    let mut f = good.clone();
    f.chain_id.0[0] ^= 1;
    expect_failure(&f, &chain, "chain_id", "genesis");

    let mut f = good.clone();
    f.format = 2;
    expect_failure(&f, &chain, "format", "not supported");
}

#[test]
fn a_certificate_signed_by_a_non_validator_is_refused() {
    let (chain, a) = two_goods();
    let mut f = chain.tx_file(&a[0]);
    let p = tx_of(&mut f);
    let stranger = KeyPair::from_seed(&[99; 32]);
    // The stranger signs the right message; its signature is genuine, its key unknown.
    p.block.certificate.signatures[3] = precommit_by(&chain, &stranger, p);
    expect_failure(&f, &chain, "proof.block.certificate", "not a validator");
}

#[test]
fn a_certificate_with_two_of_four_signatures_is_refused() {
    let (chain, a) = two_goods();
    let mut f = chain.tx_file(&a[0]);
    tx_of(&mut f).block.certificate.signatures.truncate(2);
    expect_failure(&f, &chain, "proof.block.certificate", "two thirds");
    // Three of four is a quorum.
    let mut f = chain.tx_file(&a[0]);
    tx_of(&mut f).block.certificate.signatures.truncate(3);
    f.verify(&chain.trust)
        .expect("3 of 4 is more than two thirds");
}

#[test]
fn state_proofs_show_values_and_absence() {
    let (chain, _) = two_goods();
    let key = goods::head_key("PARCEL-A");
    let present = chain.state_file(chain.height(), key.as_bytes());
    let Verified::State { value, block, .. } = present.verify(&chain.trust).expect("verifies")
    else {
        panic!("not a state summary")
    };
    let head: Head = codec::decode(&value.expect("present")).expect("a head");
    assert_eq!(head.count, 5);
    assert_eq!(block.height, chain.height());

    // Before PARCEL-A's first event, its head is absent, and that is provable.
    chain
        .state_file(1, goods::head_key("PARCEL-B").as_bytes())
        .verify(&chain.trust)
        .expect("absence at height 1 verifies");

    let mut f = present.clone();
    if let Proof::State(p) = &mut f.proof {
        p.value.as_mut().expect("value")[0] ^= 1;
    }
    expect_failure(&f, &chain, "proof.proof", "value hash");

    let mut f = present.clone();
    if let Proof::State(p) = &mut f.proof {
        p.key = b"goods/head/PARCEL-Z".to_vec();
    }
    expect_failure(&f, &chain, "proof.proof", "key hash");

    let mut f = present;
    if let Proof::State(p) = &mut f.proof {
        p.proof.siblings[0].0[3] ^= 1;
    }
    expect_failure(&f, &chain, "proof.proof", "state root");
}

#[test]
fn an_absent_key_presented_as_present_is_refused() {
    let (chain, _) = two_goods();
    let mut f = chain.state_file(chain.height(), b"ent/filing/NOT-FILED");
    let Proof::State(p) = &mut f.proof else {
        panic!("state proof")
    };
    assert!(p.value.is_none());
    p.value = Some(b"forged filing".to_vec());
    expect_failure(&f, &chain, "proof.proof", "key");
    // Presenting a present key as absent fails too.
    let mut f = chain.state_file(chain.height(), goods::head_key("PARCEL-A").as_bytes());
    if let Proof::State(p) = &mut f.proof {
        p.value = None;
    }
    expect_failure(&f, &chain, "proof.proof", "absent");
}

#[test]
fn a_provenance_proof_gives_the_timeline_in_order() {
    let (chain, a) = two_goods();
    let verified = chain
        .provenance_file("PARCEL-A")
        .verify(&chain.trust)
        .expect("verifies");
    let Verified::Provenance {
        goods_id,
        head,
        timeline,
        ..
    } = verified
    else {
        panic!("not provenance")
    };
    assert_eq!(goods_id, "PARCEL-A");
    assert_eq!(head.height, chain.height());
    let kinds: Vec<_> = timeline.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Produced,
            EventKind::Ordered,
            EventKind::Paid,
            EventKind::Shipped,
            EventKind::Delivered
        ]
    );
    let txs: Vec<_> = timeline.iter().map(|e| e.tx_hash).collect();
    assert_eq!(txs, a);
    assert!(timeline.iter().all(|e| e.actor == SELLER));
    assert!(timeline
        .windows(2)
        .all(|w| w[0].block.height < w[1].block.height));
}

#[test]
fn a_provenance_proof_missing_a_middle_event_is_refused() {
    let (chain, _) = two_goods();
    let mut f = chain.provenance_file("PARCEL-A");
    provenance_of(&mut f).events.remove(2);
    // The count is checked first; with the head's count doctored too, the link breaks.
    expect_failure(&f, &chain, "proof.events", "counts 5");
}

#[test]
fn a_provenance_proof_with_two_events_swapped_is_refused() {
    let (chain, _) = two_goods();
    let mut f = chain.provenance_file("PARCEL-A");
    provenance_of(&mut f).events.swap(1, 2);
    expect_failure(&f, &chain, "proof.events[1]", "missing or out of order");
}

#[test]
fn a_provenance_proof_with_another_goods_event_spliced_in_is_refused() {
    let (chain, _) = two_goods();
    let other = chain.provenance_file("PARCEL-B");
    let mut f = chain.provenance_file("PARCEL-A");
    let spliced = match &other.proof {
        Proof::Provenance(p) => p.events[1].clone(),
        _ => unreachable!(),
    };
    provenance_of(&mut f).events[1] = spliced;
    expect_failure(&f, &chain, "proof.events[1].tx", "PARCEL-B, not PARCEL-A");
}

#[test]
fn a_provenance_proof_with_a_replaced_or_truncated_chain_is_refused() {
    let (chain, _) = two_goods();
    // A dropped last event: the proof's chain ends before the head.
    let mut f = chain.provenance_file("PARCEL-A");
    let p = provenance_of(&mut f);
    p.events.pop();
    expect_failure(&f, &chain, "proof.events", "counts 5");

    // A head from an older height with fewer events, with all current events: count.
    let mut f = chain.provenance_file("PARCEL-A");
    provenance_of(&mut f).head = chain.state_proof(3, goods::head_key("PARCEL-A").as_bytes());
    expect_failure(&f, &chain, "proof.events", "counts 2");

    // An event's attributes altered after the fact: its signature no longer holds.
    let mut f = chain.provenance_file("PARCEL-A");
    provenance_of(&mut f).events[3].tx.body.call.args[2] ^= 1;
    expect_failure(&f, &chain, "proof.events[3].tx.signature", "signature");

    // A non-event transaction in the chain.
    let mut f = chain.provenance_file("PARCEL-A");
    let filler = chain.committed(2).block.txs[0].hash(chain.trust.suite);
    provenance_of(&mut f).events[2] = chain.tx_proof(&filler);
    expect_failure(
        &f,
        &chain,
        "proof.events[2].tx.body.call",
        "not a traceability event",
    );
}

#[test]
fn proofs_follow_validator_set_changes_from_genesis() {
    let (mut chain, a) = two_goods();
    // Governance replaces customs' validator key; later blocks are signed by the new key.
    let change = chain.replace_validator(0, key(77));
    let seller = key(50);
    chain.record(&seller, SELLER, "PARCEL-A", EventKind::Evaluated);
    let late_tx = chain.committed(chain.height()).block.txs[1].hash(chain.trust.suite);

    let file = chain.tx_file(&late_tx);
    assert_eq!(file.set_changes.len(), 1);
    let Verified::Tx { block, .. } = file.verify(&chain.trust).expect("follows the change") else {
        panic!()
    };
    assert!(block.height > change);
    assert_eq!(block.certified_by[0], "customs", "the new key is customs'");

    // An old proof still verifies, with or without the later change in the file.
    chain
        .tx_file(&a[0])
        .verify(&chain.trust)
        .expect("old proof");
    let mut old_with_change = chain.tx_file(&a[0]);
    old_with_change.set_changes = file.set_changes.clone();
    old_with_change
        .verify(&chain.trust)
        .expect("old proof, later change attached");

    // Provenance spanning the change verifies.
    chain
        .provenance_file("PARCEL-A")
        .verify(&chain.trust)
        .expect("provenance across the change");

    // Without the change, the new set is unknown to the verifier.
    let mut f = file.clone();
    f.set_changes.clear();
    expect_failure(&f, &chain, "proof.block.header.validators_hash", "missing");

    // The change's own certificate is checked against the set before it.
    let mut f = file.clone();
    f.set_changes[0].at.certificate.signatures.truncate(2);
    expect_failure(&f, &chain, "set_changes[0].at.certificate", "two thirds");

    // The new key is read from certified state: a forged key value is caught.
    let mut f = file.clone();
    let forged = codec::encode(&key(66).public());
    f.set_changes[0].keys[0].value = Some(forged);
    expect_failure(&f, &chain, "set_changes[0].keys[0]", "value hash");

    // Hiding the change (claiming no replacement) is caught by the state proof.
    let mut f = file.clone();
    f.set_changes[0].keys[0].value = None;
    expect_failure(&f, &chain, "set_changes[0].keys[0]", "absent");

    // The retired key can no longer certify: a block after the change signed by the
    // old customs key is refused.
    let mut f = file;
    let p = tx_of(&mut f);
    p.block.certificate.signatures[0] = precommit_by(&chain, &key(1), p);
    expect_failure(&f, &chain, "proof.block.certificate", "not a validator");
}

#[test]
fn a_proof_for_another_genesis_is_refused() {
    let (chain, a) = two_goods();
    let file = chain.tx_file(&a[0]);
    let mut other = chain.trust.clone();
    other.chain_id = Suite::Ed25519Sha256.tagged("test-chain", b"another");
    let err = file.verify(&other).expect_err("another chain");
    assert_eq!(err.at, "chain_id");
    let mut other = chain.trust.clone();
    other.agencies[1].validator_key = key(88).public();
    let err = file.verify(&other).expect_err("another validator set");
    assert!(err.at.ends_with("validators_hash"), "{err}");
}

/// One Ed25519 rule for every check (issue 13, item 3): a transaction whose signature
/// has a small-order component in `R` is valid alone, in any batch, and inside a
/// transaction proof; one whose `s` is not canonical is refused by all three. Before,
/// the batch check's verdict on the first kind depended on its batch, and the proof
/// (strict) refused what a batch had admitted.
#[test]
fn single_batch_and_proof_verification_agree_on_edge_case_signatures() {
    const SHA: Suite = Suite::Ed25519Sha256;
    let seller = key(50);
    for torsion in 0..8 {
        for non_canonical_s in [false, true] {
            let mut chain = Chain::new();
            let chain_id = chain.trust.chain_id;
            let mut tx = chain.sign_tx(&seller, "goods", "record", vec![torsion as u8]);
            tx.signature =
                cbec_ledger::crypto::signature_with_torsion(&seller, &tx.hash(SHA).0, torsion);
            if non_canonical_s {
                tx.signature.0[63] |= 0xf0;
            }
            let expected = !non_canonical_s;
            let single = tx.clone().verify(&chain_id, SHA).is_ok();
            assert_eq!(single, expected, "single, torsion {torsion}");
            let others: Vec<_> = (0..3u8)
                .map(|i| chain.sign_tx(&key(60 + i), "goods", "record", vec![i]))
                .collect();
            for companions in 0..=others.len() {
                let mut batch = vec![tx.clone()];
                batch.extend(others[..companions].iter().cloned());
                let verdicts = cbec_ledger::verify_all(batch, &chain_id, SHA);
                assert_eq!(verdicts[0].is_ok(), expected, "batch of {}", companions + 1);
                assert!(verdicts[1..].iter().all(Result::is_ok));
            }
            let result = cbec_ledger::TxResult {
                tx_hash: tx.hash(SHA),
                outcome: cbec_ledger::Outcome::Accepted { events: vec![] },
            };
            chain.commit(vec![(tx.clone(), result)], vec![]);
            let proof = chain.tx_file(&tx.hash(SHA)).verify(&chain.trust);
            assert_eq!(
                proof.is_ok(),
                expected,
                "proof, torsion {torsion}: {proof:?}"
            );
            if !expected {
                let e = proof.expect_err("refused");
                assert!(e.at.ends_with("tx.signature"), "{e}");
            }
        }
    }
}

/// An indexer's follower walks every block from genesis across a validator-set change,
/// taking the new set from key proofs at the change; forged key proofs and blocks of the
/// retired key are refused.
#[test]
fn a_follower_checks_every_block_across_a_set_change() {
    use cbec_ledger::{CertifiedBlock, Follower};
    let (mut chain, _) = two_goods();
    let change = chain.replace_validator(0, key(77));
    chain.record(&key(50), SELLER, "PARCEL-A", EventKind::Evaluated);
    let keys = chain.set_changes(chain.height())[0].keys.clone();
    let block = |h: u64| CertifiedBlock {
        block: chain.committed(h).block.clone(),
        certificate: chain.committed(h).certificate.clone(),
    };
    let mut follower = Follower::new(chain.trust.clone()).expect("genesis");
    for h in 1..=change {
        assert!(!follower.set_changed(&chain.committed(h).block.header));
        follower.accept(&block(h)).expect("before the change");
    }
    let next = block(change + 1);
    assert!(
        follower.set_changed(&next.block.header),
        "the header names a new set"
    );
    let err = follower.accept(&next).expect_err("unknown set");
    assert!(err.problem.contains("not the set in force"), "{err}");

    // A key proof forged to another key, or hiding the change, is refused.
    let mut forged = keys.clone();
    forged[0].value = Some(codec::encode(&key(66).public()));
    assert!(follower.clone().change_set(&forged).is_err());
    let mut hidden = keys.clone();
    hidden[0].value = None;
    assert!(follower.clone().change_set(&hidden).is_err());

    follower.change_set(&keys).expect("the certified change");
    for h in change + 1..=chain.height() {
        let proven = follower.accept(&block(h)).expect("after the change");
        assert_eq!(proven.certified_by[0], "customs");
    }
    assert_eq!(follower.height(), chain.height());
}

/// A lot produced, split into cases, a case split into parcels: a parcel's proof holds
/// its own chain and its ancestors' up to the splits that made it, all verified from
/// genesis alone; leaving an ancestor out, splicing in a foreign one, or changing any
/// byte of the proof fails.
#[test]
fn a_parcel_proves_its_lot_across_two_splits_and_every_tamper_is_caught() {
    for suite in Suite::ALL {
        let mut chain = Chain::with_suite(suite);
        let maker = chain.key(50);
        chain.record(&maker, SELLER, "LOT-1", EventKind::Produced);
        chain.record(&maker, SELLER, "LOT-1", EventKind::Warehoused);
        chain.record(&maker, SELLER, "OTHER-LOT", EventKind::Produced);
        chain.split(&maker, SELLER, "LOT-1", &[("CASE-1", 60), ("CASE-2", 40)]);
        chain.split(&maker, SELLER, "OTHER-LOT", &[("CASE-9", 5)]);
        chain.split(
            &maker,
            SELLER,
            "CASE-1",
            &[("PARCEL-1", 1), ("PARCEL-2", 1)],
        );
        chain.record(&maker, SELLER, "PARCEL-1", EventKind::Shipped);

        let file = chain.lineage_file("PARCEL-1");
        let Verified::Provenance {
            timeline,
            ancestors,
            ..
        } = file.verify(&chain.trust).expect("the lineage verifies")
        else {
            panic!("provenance")
        };
        let kinds: Vec<_> = timeline.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Derived, EventKind::Shipped]);
        let ids: Vec<_> = ancestors.iter().map(|a| a.goods_id.as_str()).collect();
        assert_eq!(ids, ["CASE-1", "LOT-1"]);
        let lot: Vec<_> = ancestors[1].timeline.iter().map(|e| e.kind).collect();
        assert_eq!(
            lot,
            [EventKind::Produced, EventKind::Warehoused, EventKind::Split],
            "the lot's production is in the parcel's proof"
        );
        let went: Vec<_> = ancestors[1].timeline[2]
            .children
            .iter()
            .map(|c| (c.goods_id.as_str(), c.quantity))
            .collect();
        assert_eq!(went, [("CASE-1", 60), ("CASE-2", 40)], "where the lot went");

        // A plain provenance proof of a split child is incomplete.
        expect_failure(
            &chain.provenance_file("PARCEL-1"),
            &chain,
            "proof",
            "leaves out",
        );
        let lineage = |f: &mut ProofFile| match &mut f.proof {
            Proof::Lineage(l) => l.ancestors.clone(),
            _ => panic!("lineage"),
        };
        let with = |ancestors: Vec<cbec_ledger::proof::AncestorProof>| {
            let mut f = file.clone();
            if let Proof::Lineage(l) = &mut f.proof {
                l.ancestors = ancestors;
            }
            f
        };
        let mut f = file.clone();
        let mut ancestors = lineage(&mut f);
        // The lot left out.
        expect_failure(
            &with(ancestors[..1].to_vec()),
            &chain,
            "proof.ancestors",
            "leaves out",
        );
        // A foreign lot spliced in for the real one.
        let foreign = lineage(&mut chain.lineage_file("CASE-9"));
        ancestors[1] = foreign[0].clone();
        expect_failure(
            &with(ancestors.clone()),
            &chain,
            "proof.ancestors[1].goods_id",
            "not the parent",
        );
        // The lot's chain cut short of its split.
        let mut short = lineage(&mut f);
        short[1].events.pop();
        expect_failure(
            &with(short),
            &chain,
            "proof.ancestors[1].events",
            "not the split",
        );
        // An ancestor for a good that was not split from anything.
        let mut extra = lineage(&mut f);
        extra.push(extra[1].clone());
        expect_failure(&with(extra), &chain, "proof.ancestors[2]", "no ancestor");

        // Every byte of the binary proof changed is caught (every 7th on SM2, whose
        // checks are slow in a debug build; the bytes are the same structure).
        let bytes = file.to_bytes();
        let step = if suite == Suite::Sm2Sm3 { 7 } else { 1 };
        for i in (0..bytes.len()).step_by(step) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            if let Ok(parsed) = ProofFile::from_bytes(&bad) {
                assert!(
                    parsed.verify(&chain.trust).is_err(),
                    "{suite}: byte {i} of {} changed and still verified",
                    bytes.len()
                );
            }
        }
    }
}

/// Two cases of one lot and a spice lot cut and packed together (a transformation with
/// three inputs, two of them from the same split): a pack's proof carries each input up
/// to its `consumed` event and the lot once, breadth first, all verified from genesis
/// alone. An input left out, the lot left out, inputs swapped, a foreign consumption of
/// the right good spliced in, an extra ancestor, or any byte changed: each fails.
#[test]
fn a_pack_proves_every_input_of_its_transformation_and_every_tamper_is_caught() {
    for suite in Suite::ALL {
        let mut chain = Chain::with_suite(suite);
        let maker = chain.key(50);
        chain.record(&maker, SELLER, "LOT-1", EventKind::Produced);
        chain.record(&maker, SELLER, "SPICE", EventKind::Produced);
        chain.split(&maker, SELLER, "LOT-1", &[("CASE-1", 60), ("CASE-2", 40)]);
        chain.transform(
            &maker,
            SELLER,
            &[("CASE-1", 10), ("SPICE", 1), ("CASE-2", 5)],
            &[("PACK-1", 4), ("PACK-2", 4)],
        );
        chain.record(&maker, SELLER, "PACK-1", EventKind::Shipped);
        // SPICE consumed again, by another transformation.
        chain.transform(&maker, SELLER, &[("SPICE", 1)], &[("PACK-3", 1)]);

        let file = chain.lineage_file("PACK-1");
        let Verified::Provenance {
            timeline,
            ancestors,
            ..
        } = file.verify(&chain.trust).expect("the lineage verifies")
        else {
            panic!("provenance")
        };
        let kinds: Vec<_> = timeline.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Transformed, EventKind::Shipped]);
        let ids: Vec<_> = ancestors.iter().map(|a| a.goods_id.as_str()).collect();
        assert_eq!(
            ids,
            ["CASE-1", "SPICE", "CASE-2", "LOT-1"],
            "every input, then the lot both cases came from, once"
        );
        let spice = &ancestors[1].timeline;
        assert_eq!(
            spice.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventKind::Produced, EventKind::Consumed],
            "up to the consumption that made the pack, not the later one"
        );
        let went: Vec<_> = spice[1]
            .children
            .iter()
            .map(|c| (c.goods_id.as_str(), c.quantity))
            .collect();
        assert_eq!(went, [("PACK-1", 4), ("PACK-2", 4)], "what it went into");
        assert_eq!(spice[1].members, ["CASE-1", "SPICE", "CASE-2"]);

        // A plain provenance proof of a transformation's output is incomplete.
        expect_failure(
            &chain.provenance_file("PACK-1"),
            &chain,
            "proof",
            "leaves out",
        );
        let Proof::Lineage(lineage) = &file.proof else {
            panic!("lineage")
        };
        let with = |edit: &dyn Fn(&mut Vec<cbec_ledger::proof::AncestorProof>)| {
            let mut f = file.clone();
            if let Proof::Lineage(l) = &mut f.proof {
                edit(&mut l.ancestors);
            }
            f
        };
        // The spice left out: CASE-2 stands where SPICE is due.
        expect_failure(
            &with(&|a| {
                a.remove(1);
            }),
            &chain,
            "proof.ancestors[1].goods_id",
            "not the parent",
        );
        // The lot left out.
        expect_failure(
            &with(&|a| a.truncate(3)),
            &chain,
            "proof.ancestors",
            "leaves out",
        );
        // Two inputs swapped.
        expect_failure(
            &with(&|a| a.swap(0, 1)),
            &chain,
            "proof.ancestors[0].goods_id",
            "not the parent",
        );
        // The spice's chain up to its other consumption, spliced in.
        let later = chain.provenance_file("SPICE");
        let Proof::Provenance(later) = later.proof else {
            panic!("provenance")
        };
        expect_failure(
            &with(&|a| a[1].events = later.events.clone()),
            &chain,
            "proof.ancestors[1].events[2]",
            "after height",
        );
        // The spice's chain cut short of its consumption.
        expect_failure(
            &with(&|a| a[1].events = later.events[..1].to_vec()),
            &chain,
            "proof.ancestors[1].events[0]",
            "not the transformation",
        );
        // The lot twice.
        expect_failure(
            &with(&|a| a.push(a[3].clone())),
            &chain,
            "proof.ancestors[4]",
            "no ancestor",
        );
        assert_eq!(lineage.ancestors.len(), 4);

        // Every byte of the binary proof changed is caught (every 7th on SM2).
        let bytes = file.to_bytes();
        let step = if suite == Suite::Sm2Sm3 { 7 } else { 1 };
        for i in (0..bytes.len()).step_by(step) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            if let Ok(parsed) = ProofFile::from_bytes(&bad) {
                assert!(
                    parsed.verify(&chain.trust).is_err(),
                    "{suite}: byte {i} of {} changed and still verified",
                    bytes.len()
                );
            }
        }
    }
}
