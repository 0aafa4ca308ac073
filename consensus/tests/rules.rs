//! One test per rule of Algorithm 1 (line numbers of the paper), driving validator 0 of
//! four equal-power validators with hand-made messages from the others.

use cbec_consensus::*;
use cbec_ledger::{Hash, KeyPair, Validator, ValidatorSet, VoteKind};

const CHAIN: Hash = Hash([0xcb; 32]);

struct Net {
    keys: Vec<KeyPair>,
    set: ValidatorSet,
}

fn net() -> Net {
    let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
    let set = ValidatorSet::new(
        keys.iter()
            .map(|k| Validator {
                key: k.public(),
                power: 1,
            })
            .collect(),
    )
    .expect("valid set");
    Net { keys, set }
}

fn config() -> Config {
    Config {
        chain_id: CHAIN,
        timeouts: Timeouts {
            propose_ms: 100,
            prevote_ms: 50,
            precommit_ms: 50,
            increase_per_round_ms: 10,
        },
    }
}

const V: Hash = Hash([1; 32]);
const W: Hash = Hash([2; 32]);

impl Net {
    fn index_of_proposer(&self, height: Height, round: Round) -> usize {
        let schedule = cbec_consensus::proposer::ProposerSchedule::new(&self.set);
        let key = schedule.proposer(height, round);
        self.keys
            .iter()
            .position(|k| k.public() == key)
            .expect("member")
    }

    fn proposal(
        &self,
        from: usize,
        height: Height,
        round: Round,
        value: Hash,
        vr: Option<Round>,
    ) -> Input {
        let proposal = Proposal {
            height,
            round,
            value,
            valid_round: vr,
        };
        let signature = self.keys[from].sign(&types::proposal_sign_bytes(&CHAIN, &proposal));
        Input::Message(Message::Proposal(SignedProposal {
            proposal,
            proposer: self.keys[from].public(),
            signature,
        }))
    }

    fn vote(
        &self,
        from: usize,
        height: Height,
        round: Round,
        kind: VoteKind,
        value: Option<Hash>,
    ) -> Input {
        Input::Message(Message::Vote(
            self.signed_vote(from, height, round, kind, value),
        ))
    }

    fn signed_vote(
        &self,
        from: usize,
        height: Height,
        round: Round,
        kind: VoteKind,
        value: Option<Hash>,
    ) -> SignedVote {
        let vote = Vote {
            height,
            round,
            kind,
            value,
        };
        SignedVote {
            vote,
            validator: self.keys[from].public(),
            signature: self.keys[from].sign(&vote.sign_bytes(&CHAIN)),
        }
    }

    /// Validator `me` at height `height`, with the outputs of starting it.
    fn start(&self, me: usize, height: Height) -> (Consensus<KeyPair>, Vec<Output>) {
        let key = self.keys[me].clone();
        let mut c = Consensus::new(config(), key, Honest, SigningState::genesis());
        let out = c.handle(Input::StartHeight {
            height,
            validators: self.set.clone(),
        });
        (c, out)
    }
}

fn broadcast_votes(out: &[Output]) -> Vec<Vote> {
    out.iter()
        .filter_map(|o| match o {
            Output::Broadcast(Message::Vote(v)) => Some(v.vote),
            _ => None,
        })
        .collect()
}

fn scheduled(out: &[Output], kind: TimeoutKind) -> Vec<(Round, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::ScheduleTimeout { timeout, after_ms } if timeout.kind == kind => {
                Some((timeout.round, *after_ms))
            }
            _ => None,
        })
        .collect()
}

fn decision(out: &[Output]) -> Option<Decision> {
    out.iter().find_map(|o| match o {
        Output::Decide(d) => Some(d.clone()),
        _ => None,
    })
}

/// A height where validator 0 is not the proposer of round 0, and who is.
fn non_proposer_height(n: &Net) -> (Height, usize) {
    (1..10)
        .map(|h| (h, n.index_of_proposer(h, 0)))
        .find(|(_, p)| *p != 0)
        .expect("someone else proposes")
}

/// Validator 0 and a height whose round-0 proposal (value `v`, valid) it has prevoted.
fn prevoted(n: &Net, value: Hash) -> (Consensus<KeyPair>, Height, usize) {
    let (h, p) = non_proposer_height(n);
    let (mut c, _) = n.start(0, h);
    let out = c.handle(n.proposal(p, h, 0, value, None));
    assert!(out.contains(&Output::ValidateValue {
        height: h,
        round: 0,
        value
    }));
    c.handle(Input::ValueValidated {
        height: h,
        value,
        valid: true,
    });
    assert_eq!(c.step(), Step::Prevote);
    (c, h, p)
}

#[test]
fn l11_l21_non_proposer_schedules_the_propose_timeout() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (c, out) = n.start(0, h);
    assert_eq!(c.round(), 0);
    assert_eq!(c.step(), Step::Propose);
    assert_eq!(scheduled(&out, TimeoutKind::Propose), vec![(0, 100)]);
    assert!(!out.iter().any(|o| matches!(o, Output::RequestValue { .. })));
}

#[test]
fn l14_l19_proposer_gets_a_value_then_persists_before_broadcasting() {
    let n = net();
    let h = (1..10)
        .find(|h| n.index_of_proposer(*h, 0) == 0)
        .expect("0 proposes sometime");
    let (mut c, out) = n.start(0, h);
    assert!(out.contains(&Output::RequestValue {
        height: h,
        round: 0
    }));
    let out = c.handle(Input::ValueProduced {
        height: h,
        round: 0,
        value: V,
    });
    let persist = out
        .iter()
        .position(|o| matches!(o, Output::Persist(_)))
        .expect("persist");
    let send = out
        .iter()
        .position(|o| matches!(o, Output::Broadcast(Message::Proposal(_))))
        .expect("proposal sent");
    assert!(
        persist < send,
        "signing state must be persisted before the proposal leaves"
    );
    // L22 on its own proposal: it prevotes it.
    assert_eq!(broadcast_votes(&out)[0].value, Some(V));
    // A stale value for another round is ignored.
    assert!(c
        .handle(Input::ValueProduced {
            height: h,
            round: 3,
            value: W
        })
        .is_empty());
}

#[test]
fn l22_l27_prevote_for_a_valid_proposal_and_nil_for_an_invalid_one() {
    let n = net();
    let (_, h, _) = prevoted(&n, V);
    let (h2, p) = non_proposer_height(&n);
    assert_eq!(h, h2);
    let (mut c, _) = n.start(0, h);
    c.handle(n.proposal(p, h, 0, W, None));
    let out = c.handle(Input::ValueValidated {
        height: h,
        value: W,
        valid: false,
    });
    assert_eq!(
        broadcast_votes(&out),
        vec![Vote {
            height: h,
            round: 0,
            kind: VoteKind::Prevote,
            value: None
        }]
    );
}

#[test]
fn l22_a_proposal_from_a_non_proposer_is_ignored() {
    let n = net();
    let (h, p) = non_proposer_height(&n);
    let other = (1..4).find(|i| *i != p).expect("another validator");
    let (mut c, _) = n.start(0, h);
    let out = c.handle(n.proposal(other, h, 0, V, None));
    assert!(out.is_empty());
    assert_eq!(c.counters().not_proposer, 1);
}

#[test]
fn l36_l41_polka_locks_and_precommits_the_value() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    c.handle(n.vote(1, h, 0, VoteKind::Prevote, Some(V)));
    let out = c.handle(n.vote(2, h, 0, VoteKind::Prevote, Some(V)));
    assert_eq!(c.locked(), Some((0, V)));
    assert_eq!(c.valid(), Some((0, V)));
    assert_eq!(c.step(), Step::Precommit);
    assert_eq!(
        broadcast_votes(&out),
        vec![Vote {
            height: h,
            round: 0,
            kind: VoteKind::Precommit,
            value: Some(V)
        }]
    );
    // The lock is in the persisted signing state that precedes the precommit.
    let persisted = out.iter().find_map(|o| match o {
        Output::Persist(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(persisted.expect("persisted").locked, Some((0, V)));
}

#[test]
fn l34_mixed_prevotes_schedule_the_prevote_timeout_once_and_l61_precommits_nil() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    let a = c.handle(n.vote(1, h, 0, VoteKind::Prevote, None));
    let b = c.handle(n.vote(2, h, 0, VoteKind::Prevote, Some(W)));
    assert!(scheduled(&a, TimeoutKind::Prevote).is_empty());
    assert_eq!(scheduled(&b, TimeoutKind::Prevote), vec![(0, 50)]);
    let again = c.handle(n.vote(3, h, 0, VoteKind::Prevote, None));
    assert!(
        scheduled(&again, TimeoutKind::Prevote).is_empty(),
        "only the first time"
    );
    let out = c.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Prevote,
    }));
    assert_eq!(broadcast_votes(&out)[0].value, None);
    assert_eq!(c.step(), Step::Precommit);
    assert_eq!(c.locked(), None);
}

#[test]
fn l44_nil_polka_precommits_nil() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    c.handle(n.vote(1, h, 0, VoteKind::Prevote, None));
    c.handle(n.vote(2, h, 0, VoteKind::Prevote, None));
    let out = c.handle(n.vote(3, h, 0, VoteKind::Prevote, None));
    assert_eq!(
        broadcast_votes(&out),
        vec![Vote {
            height: h,
            round: 0,
            kind: VoteKind::Precommit,
            value: None
        }]
    );
}

#[test]
fn l47_l65_precommits_schedule_the_timeout_then_the_next_round_starts() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    for i in 1..=3 {
        c.handle(n.vote(i, h, 0, VoteKind::Prevote, None));
    }
    c.handle(n.vote(1, h, 0, VoteKind::Precommit, None));
    let out = c.handle(n.vote(2, h, 0, VoteKind::Precommit, None));
    assert_eq!(scheduled(&out, TimeoutKind::Precommit), vec![(0, 50)]);
    let out = c.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Precommit,
    }));
    assert_eq!(c.round(), 1);
    assert_eq!(c.step(), Step::Propose);
    // Timeouts grow with the round.
    let propose = scheduled(&out, TimeoutKind::Propose);
    assert!(propose.is_empty() || propose == vec![(1, 110)]);
}

#[test]
fn l49_proposal_and_precommit_quorum_decide_with_a_verifiable_certificate() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    c.handle(n.vote(1, h, 0, VoteKind::Precommit, Some(V)));
    c.handle(n.vote(2, h, 0, VoteKind::Precommit, Some(V)));
    assert!(!c.is_decided(), "two of four is not enough");
    let out = c.handle(n.vote(3, h, 0, VoteKind::Precommit, Some(V)));
    let d = decision(&out).expect("decided");
    assert_eq!((d.height, d.round, d.value), (h, 0, V));
    assert_eq!(d.certificate.verify_for(&CHAIN, &n.set, h, &V), Ok(()));
    // Once decided, more messages for the height change nothing.
    assert!(c
        .handle(n.vote(0, h, 0, VoteKind::Precommit, Some(V)))
        .is_empty());
}

#[test]
fn l49_decides_from_an_earlier_round() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    // Others are in round 1 already: f+1 of them pull validator 0 along (L55).
    c.handle(n.vote(1, h, 1, VoteKind::Prevote, None));
    c.handle(n.vote(2, h, 1, VoteKind::Prevote, None));
    assert_eq!(c.round(), 1);
    // Late precommits for V in round 0 still decide: L49 holds for any round.
    c.handle(n.vote(1, h, 0, VoteKind::Precommit, Some(V)));
    c.handle(n.vote(2, h, 0, VoteKind::Precommit, Some(V)));
    let out = c.handle(n.vote(3, h, 0, VoteKind::Precommit, Some(V)));
    let d = decision(&out).expect("decided in round 0 while in round 1");
    assert_eq!((d.round, d.value), (0, V));
}

#[test]
fn l28_l33_lock_respected_unless_the_proposal_carries_a_later_polka() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    // Lock on V in round 0.
    c.handle(n.vote(1, h, 0, VoteKind::Prevote, Some(V)));
    c.handle(n.vote(2, h, 0, VoteKind::Prevote, Some(V)));
    assert_eq!(c.locked(), Some((0, V)));
    // Move to round 1 (precommits for nil from others, then timeout).
    for i in 1..=3 {
        c.handle(n.vote(i, h, 0, VoteKind::Precommit, None));
    }
    c.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Precommit,
    }));
    assert_eq!(c.round(), 1);
    let p1 = n.index_of_proposer(h, 1);
    assert_ne!(p1, 0, "the scenario needs another proposer in round 1");
    // L22 with a lock on V: a fresh proposal of W gets a nil prevote.
    c.handle(n.proposal(p1, h, 1, W, None));
    let out = c.handle(Input::ValueValidated {
        height: h,
        value: W,
        valid: true,
    });
    assert_eq!(
        broadcast_votes(&out)[0].value,
        None,
        "locked on V, must not prevote W"
    );
    // Round 1: polka for W; round 2: W re-proposed with vr = 1 > lockedRound 0: prevote W.
    for i in 1..=3 {
        c.handle(n.vote(i, h, 1, VoteKind::Prevote, Some(W)));
    }
    for i in 1..=3 {
        c.handle(n.vote(i, h, 1, VoteKind::Precommit, None));
    }
    c.handle(Input::Timeout(Timeout {
        height: h,
        round: 1,
        kind: TimeoutKind::Precommit,
    }));
    assert_eq!(c.round(), 2);
    let p2 = n.index_of_proposer(h, 2);
    assert_ne!(p2, 0, "the scenario needs another proposer in round 2");
    let out = c.handle(n.proposal(p2, h, 2, W, Some(1)));
    assert_eq!(
        broadcast_votes(&out)[0].value,
        Some(W),
        "L28: polka in round 1 >= lockedRound"
    );
}

/// A proposal as the host hands it in with its judgement of the block's time.
fn timed(input: Input, timely: bool) -> Input {
    let Input::Message(message) = input else {
        panic!("a proposal message");
    };
    Input::TimedProposal {
        proposal: message.verify(&CHAIN).expect("signed"),
        timely,
    }
}

#[test]
fn l22_pbts_an_untimely_fresh_proposal_gets_nil_yet_its_value_can_be_decided() {
    let n = net();
    let (h, p) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    c.handle(timed(n.proposal(p, h, 0, V, None), false));
    let out = c.handle(Input::ValueValidated {
        height: h,
        value: V,
        valid: true,
    });
    assert_eq!(
        broadcast_votes(&out),
        vec![Vote {
            height: h,
            round: 0,
            kind: VoteKind::Prevote,
            value: None
        }],
        "a valid value, but not proposed in time"
    );
    // Timeliness is this validator's judgement, not the value's validity: if the
    // others decide V, this validator decides it too (L49).
    let mut decided = None;
    for i in 1..=3 {
        decided = decided.or(decision(&c.handle(n.vote(
            i,
            h,
            0,
            VoteKind::Precommit,
            Some(V),
        ))));
    }
    assert_eq!(decided.expect("decided").value, V);
}

#[test]
fn l28_pbts_a_re_proposal_is_not_judged_for_time() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    // Round 0: no proposal here; the others prevote V (a polka this validator sees)
    // and precommit nil; this validator times out into round 1.
    c.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Propose,
    }));
    for i in 1..=3 {
        c.handle(n.vote(i, h, 0, VoteKind::Prevote, Some(V)));
    }
    for i in 1..=3 {
        c.handle(n.vote(i, h, 0, VoteKind::Precommit, None));
    }
    c.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Precommit,
    }));
    assert_eq!(c.round(), 1);
    let p1 = n.index_of_proposer(h, 1);
    assert_ne!(p1, 0, "the scenario needs another proposer in round 1");
    // Round 1: V re-proposed with its round-0 polka, judged untimely (its block is
    // old by now): L28 still prevotes it.
    c.handle(timed(n.proposal(p1, h, 1, V, Some(0)), false));
    let out = c.handle(Input::ValueValidated {
        height: h,
        value: V,
        valid: true,
    });
    assert_eq!(broadcast_votes(&out)[0].value, Some(V));
}

#[test]
fn l55_messages_from_more_than_a_third_in_a_later_round_skip_ahead() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    c.handle(n.vote(1, h, 5, VoteKind::Prevote, None));
    assert_eq!(c.round(), 0, "one validator is not f+1");
    c.handle(n.vote(2, h, 5, VoteKind::Precommit, None));
    assert_eq!(c.round(), 5);
}

#[test]
fn l57_propose_timeout_prevotes_nil() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    let out = c.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Propose,
    }));
    assert_eq!(
        broadcast_votes(&out),
        vec![Vote {
            height: h,
            round: 0,
            kind: VoteKind::Prevote,
            value: None
        }]
    );
    // A stale timeout of another round does nothing.
    assert!(c
        .handle(Input::Timeout(Timeout {
            height: h,
            round: 7,
            kind: TimeoutKind::Propose
        }))
        .is_empty());
}

#[test]
fn untrusted_messages_are_counted_and_dropped() {
    let n = net();
    let (h, p) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    // Bad signature: one flipped byte.
    let mut vote = n.signed_vote(1, h, 0, VoteKind::Prevote, Some(V));
    vote.signature.0[0] ^= 1;
    assert!(c.handle(Input::Message(Message::Vote(vote))).is_empty());
    // Another chain: the signature does not verify under ours.
    let other = Vote {
        height: h,
        round: 0,
        kind: VoteKind::Prevote,
        value: Some(V),
    };
    let foreign = SignedVote {
        vote: other,
        validator: n.keys[2].public(),
        signature: n.keys[2].sign(&other.sign_bytes(&Hash([9; 32]))),
    };
    c.handle(Input::Message(Message::Vote(foreign)));
    assert_eq!(c.counters().bad_signature, 2);
    // Unknown validator, correctly signed.
    let stranger = KeyPair::from_seed(&[77; 32]);
    c.handle(Input::Message(Message::Vote(SignedVote {
        vote: other,
        validator: stranger.public(),
        signature: stranger.sign(&other.sign_bytes(&CHAIN)),
    })));
    assert_eq!(c.counters().unknown_validator, 1);
    // Far-future height and round, and a past height.
    c.handle(n.vote(1, h + 5, 0, VoteKind::Prevote, None));
    c.handle(n.vote(1, h, 10_000, VoteKind::Prevote, None));
    c.handle(n.vote(1, h - 1, 0, VoteKind::Prevote, None));
    assert_eq!(c.counters().far_future, 2);
    assert_eq!(c.counters().past_height, 1);
    // A proposal claiming vr >= r is malformed.
    c.handle(n.proposal(p, h, 0, V, Some(0)));
    assert_eq!(c.counters().malformed, 1);
    assert_eq!(c.round(), 0);
    assert_eq!(c.step(), Step::Propose);
}

#[test]
fn garbage_bytes_never_panic() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    let good = cbec_ledger::codec::encode(&Message::Vote(n.signed_vote(
        1,
        h,
        0,
        VoteKind::Prevote,
        Some(V),
    )));
    let mut state = 0x1234_5678_u64;
    for _ in 0..2000 {
        let mut bytes = good.clone();
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = (state >> 33) as usize % bytes.len();
        bytes[at] ^= (state >> 8) as u8 | 1;
        if let Ok(m) = cbec_ledger::codec::decode::<Message>(&bytes) {
            c.handle(Input::Message(m));
        }
    }
    assert!(c.round() <= 64);
}

#[test]
fn a_double_vote_becomes_evidence() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    c.handle(n.vote(1, h, 0, VoteKind::Prevote, Some(V)));
    let out = c.handle(n.vote(1, h, 0, VoteKind::Prevote, Some(W)));
    let evidence = out.iter().find_map(|o| match o {
        Output::Evidence(e) => Some(e.clone()),
        _ => None,
    });
    assert_eq!(evidence.expect("evidence").offender(), n.keys[1].public());
    assert_eq!(c.counters().equivocation, 1);
    // The same vote again is a duplicate, not evidence.
    let out = c.handle(n.vote(1, h, 0, VoteKind::Prevote, Some(V)));
    assert!(out.is_empty());
}

#[test]
fn restarted_validator_resends_what_it_signed_and_never_signs_a_conflict() {
    let n = net();
    let (mut c, h, _) = prevoted(&n, V);
    let signed_before = c.signing_state().clone();
    assert_eq!(signed_before.signed.len(), 1);
    // Crash, restart from the persisted state: round 0 of height h again.
    let key = n.keys[0].clone();
    let mut restarted = Consensus::new(config(), key, Honest, signed_before.clone());
    restarted.handle(Input::StartHeight {
        height: h,
        validators: n.set.clone(),
    });
    // The propose timeout would make a fresh validator prevote nil; the restarted one
    // sends its earlier prevote for V instead.
    let out = restarted.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Propose,
    }));
    assert_eq!(
        broadcast_votes(&out),
        vec![Vote {
            height: h,
            round: 0,
            kind: VoteKind::Prevote,
            value: Some(V)
        }]
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Persist(_))),
        "nothing new signed"
    );
    let _ = c.handle(Input::Timeout(Timeout {
        height: h,
        round: 0,
        kind: TimeoutKind::Prevote,
    }));
}

#[test]
fn sync_certificate_decides_and_a_bad_one_is_refused() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    let precommits: Vec<_> = (1..=3)
        .map(|i| n.signed_vote(i, h, 2, VoteKind::Precommit, Some(V)))
        .collect();
    let mut cert = cbec_ledger::CommitCertificate {
        height: h,
        round: 2,
        block_hash: V,
        signatures: precommits
            .iter()
            .map(|v| cbec_ledger::CommitSig {
                validator: v.validator,
                signature: v.signature,
            })
            .collect(),
    };
    let mut short = cert.clone();
    short.signatures.pop();
    assert!(c.handle(Input::Commit(short)).is_empty());
    assert_eq!(c.counters().bad_commit, 1);
    cert.signatures[0].signature.0[3] ^= 1;
    assert!(c.handle(Input::Commit(cert.clone())).is_empty());
    cert.signatures[0].signature = precommits[0].signature;
    let d = decision(&c.handle(Input::Commit(cert))).expect("decided by certificate");
    assert_eq!(d.value, V);
}

#[test]
fn messages_for_the_next_height_wait_for_it() {
    let n = net();
    let (h, _) = non_proposer_height(&n);
    let (mut c, _) = n.start(0, h);
    c.handle(n.vote(1, h + 1, 3, VoteKind::Prevote, None));
    c.handle(n.vote(2, h + 1, 3, VoteKind::Prevote, None));
    assert_eq!(c.round(), 0);
    c.handle(Input::Commit(cbec_ledger::CommitCertificate {
        height: h,
        round: 0,
        block_hash: V,
        signatures: (1..=3)
            .map(|i| {
                let v = n.signed_vote(i, h, 0, VoteKind::Precommit, Some(V));
                cbec_ledger::CommitSig {
                    validator: v.validator,
                    signature: v.signature,
                }
            })
            .collect(),
    }));
    c.handle(Input::StartHeight {
        height: h + 1,
        validators: n.set.clone(),
    });
    assert_eq!(
        c.round(),
        3,
        "the buffered round-3 messages of h+1 made it skip ahead"
    );
}
