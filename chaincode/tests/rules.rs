//! Every rule id: at least one accepted case and one rejected case naming that rule.

mod harness;

use cbec_chaincode::identity::{Attestation, AttestationBody, Verdict};
use harness::*;
use serde_json::{json, Value};

/// A valid USCC from a 17-character body (the check character is tested against the
/// DOMAIN.md vectors in `codes`).
fn uscc(body: &str) -> String {
    cbec_chaincode::codes::uscc_with_check(body).expect("a 17-character USCC body")
}

struct Parcel {
    l: Ledger,
    platform: cbec_ledger::KeyPair,
    seller: cbec_ledger::KeyPair,
    payment: cbec_ledger::KeyPair,
    logistics: cbec_ledger::KeyPair,
    agent: cbec_ledger::KeyPair,
    /// A filed identity-verification service (R10's attestations).
    identity: cbec_ledger::KeyPair,
}

const EBP: &str = "4403960001";
const EBC: &str = "1402960002";
const PAY: &str = "1100960003";
const LOG: &str = "1402960004";
const AGT: &str = "1402960005";

fn parcel_world() -> Parcel {
    let mut l = Ledger::new();
    let platform = l.file(1, "914403001922038216", EBP, &["platform"]);
    let seller = l.file(2, "91140200MA0GRK2220", EBC, &["seller", "manufacturer"]);
    let payment = l.file(3, &uscc("91110000MA00PAY01"), PAY, &["payment"]);
    let logistics = l.file(4, &uscc("91140200MA0LGT001"), LOG, &["logistics"]);
    let agent = l.file(5, &uscc("91140200MA0AGT001"), AGT, &["agent"]);
    let identity = l.file(9, &uscc("91110000MA0JDN001"), "1100960009", &["identity"]);
    Parcel {
        l,
        platform,
        seller,
        payment,
        logistics,
        agent,
        identity,
    }
}

fn order(no: &str, lines: Value, goods: u64) -> Value {
    json!({
        "order_no": no, "ebp_code": EBP, "ebc_code": EBC,
        "goods_value_fen": goods, "freight_fen": 0, "tax_total_fen": 0, "discount_fen": 0,
        "actual_paid_fen": goods, "pay_code": PAY, "pay_transaction_id": format!("PAY-{no}"),
        "logistics_code": LOG, "agent_code": AGT,
        "buyer_id_type": "1", "buyer_tag": tag(1),
        "consignee_name_tag": tag(2), "consignee_phone_tag": tag(3), "consignee_address_tag": tag(4),
        "lines": lines,
    })
}

fn line(qty: u32, price: u64) -> Value {
    json!({"commodity_code": "3304990099", "gtin": "6901234567892", "quantity": qty, "unit_price_fen": price})
}

/// The tax these tests' orders declare on a dutiable value of `v` fen at VAT 13 %, no
/// consumption tax or tariff, computed here independently of the chaincode: 70 % of it
/// within the limits (9.1 %), all of it for a single item over the per-order limit;
/// half-up to the fen.
fn declared_tax(v: u64, preferential: bool) -> u64 {
    if preferential {
        (v * 91 + 500) / 1_000
    } else {
        (v * 13 + 50) / 100
    }
}

impl Parcel {
    /// The identity service's attestation for `buyer_tag`, valid for a year from now
    /// (block time), with `edit` applied to its body before signing.
    fn attestation(&self, buyer_tag: &str, edit: impl Fn(&mut AttestationBody)) -> Value {
        let mut body = AttestationBody {
            buyer_tag: buyer_tag.to_string(),
            id_type: "1".into(),
            verdict: Verdict::Verified,
            valid_from_ms: self.l.time_ms - DAY_MS,
            valid_until_ms: self.l.time_ms + 365 * DAY_MS,
            key_version: "v1".into(),
            service: self.identity.public(),
        };
        edit(&mut body);
        serde_json::to_value(Attestation::sign(body, &self.identity)).expect("json")
    }

    /// Submits O, P, L and I for an order, declaring the tax due (preferential up to
    /// 5,000.00) and paying goods plus tax; `tweak` edits them first.
    fn documents(
        &mut self,
        no: &str,
        lines: Value,
        goods: u64,
        tweak: impl Fn(&mut Value, &mut Value, &mut Value, &mut Value),
    ) {
        let mut o = order(no, lines, goods);
        let tax = declared_tax(goods, goods <= 500_000);
        o["tax_total_fen"] = json!(tax);
        o["actual_paid_fen"] = json!(goods + tax);
        let mut p = json!({"order_no": no, "ebp_code": EBP, "pay_code": PAY, "pay_transaction_id": format!("PAY-{no}"),
            "amount_paid_fen": goods + tax, "payer_tag": tag(1)});
        let waybill_no = format!("SF{no}");
        let mut w = json!({"logistics_code": LOG, "logistics_no": waybill_no, "ebp_code": EBP, "order_no": no,
            "consignee_name_tag": tag(2), "consignee_phone_tag": tag(3), "consignee_address_tag": tag(4)});
        let mut i = json!({"order_no": no, "ebp_code": EBP, "ebc_code": EBC, "logistics_code": LOG,
            "logistics_no": waybill_no, "buyer_id_type": "1", "buyer_tag": tag(1), "supervision_mode": "9610",
            "vat_rate_bp": 1300, "consumption_rate_bp": 0, "tariff_rate_bp": 0,
            "buyer_attestation": self.attestation(&tag(1), |_| {})});
        tweak(&mut o, &mut p, &mut w, &mut i);
        accepted(&self.l.run(&self.platform, "customs", "submit_order", o));
        accepted(&self.l.run(&self.payment, "customs", "submit_payment", p));
        accepted(&self.l.run(&self.logistics, "customs", "submit_waybill", w));
        accepted(&self.l.run(&self.agent, "customs", "submit_list", i));
    }

    fn clear(&mut self, no: &str) -> cbec_ledger::TxResult {
        let customs = self.l.agency("customs").clone();
        self.l.run(
            &customs,
            "customs",
            "clear",
            json!({"ebp_code": EBP, "order_no": no}),
        )
    }
}

fn agency(l: &Ledger, name: &str) -> cbec_ledger::KeyPair {
    l.agency(name).clone()
}

#[test]
fn role_only_commerce_approves_filings() {
    let mut l = Ledger::new();
    let customs = agency(&l, "customs");
    let args = json!({"uscc": "914403001922038216", "name": "x", "roles": ["seller"],
        "keys": [key(9).public()], "customs_code": "4403960001"});
    rejected(
        &l.run(&customs, "enterprise", "approve_filing", args.clone()),
        "ROLE",
    );
    let commerce = agency(&l, "commerce");
    accepted(&l.run(&commerce, "enterprise", "approve_filing", args));
}

/// Ex-ante prohibition (DOMAIN.md section 1): an unknown key, or a revoked enterprise,
/// cannot submit anything. The ledger is permissioned: no block may even record such a
/// transaction (it would be stored forever), so a block carrying one is invalid.
#[test]
fn filing_unknown_and_revoked_enterprises_are_refused_everything() {
    let mut w = parcel_world();
    let stranger = key(99);
    let ev = json!({"goods_id": "G-1", "kind": "produced"});
    let refused = w.l.try_run(&stranger, "goods", "record", ev.clone());
    assert!(
        matches!(
            refused,
            Err(cbec_chaincode::ExecError::Invalid(
                cbec_chaincode::InvalidBlock::Sender {
                    reason: cbec_chaincode::NotPermitted::Unknown(_),
                    ..
                }
            ))
        ),
        "{refused:?}"
    );
    accepted(&w.l.run(&w.seller, "goods", "record", ev));
    let commerce = agency(&w.l, "commerce");
    accepted(&w.l.run(
        &commerce,
        "enterprise",
        "revoke_filing",
        json!({"uscc": "91140200MA0GRK2220", "reason": "closed"}),
    ));
    let ev2 = json!({"goods_id": "G-2", "kind": "produced"});
    let refused = w.l.try_run(&w.seller, "goods", "record", ev2);
    assert!(
        matches!(
            &refused,
            Err(cbec_chaincode::ExecError::Invalid(cbec_chaincode::InvalidBlock::Sender {
                reason: cbec_chaincode::NotPermitted::Revoked(uscc),
                ..
            })) if uscc == "91140200MA0GRK2220"
        ),
        "{refused:?}"
    );
}

#[test]
fn negative_list_blocks_until_delisted() {
    let mut w = parcel_world();
    let commerce = agency(&w.l, "commerce");
    let customs = agency(&w.l, "customs");
    let listing = json!({"uscc": "91140200MA0GRK2220", "reason": "fraud case 2026-17"});
    rejected(
        &w.l.run(&customs, "enterprise", "list_negative", listing.clone()),
        "ROLE",
    );
    accepted(&w.l.run(&commerce, "enterprise", "list_negative", listing.clone()));
    let refused = w.l.try_run(
        &w.seller,
        "goods",
        "record",
        json!({"goods_id": "G-1", "kind": "produced"}),
    );
    assert!(
        matches!(
            refused,
            Err(cbec_chaincode::ExecError::Invalid(
                cbec_chaincode::InvalidBlock::Sender {
                    reason: cbec_chaincode::NotPermitted::Listed(_),
                    ..
                }
            ))
        ),
        "{refused:?}"
    );
    accepted(&w.l.run(&commerce, "enterprise", "delist_negative", listing));
    accepted(&w.l.run(
        &w.seller,
        "goods",
        "record",
        json!({"goods_id": "G-1", "kind": "produced"}),
    ));
}

#[test]
fn approval_governance_needs_more_than_two_thirds_of_agencies() {
    let mut l = Ledger::new();
    let (customs, tax, forex) = (
        agency(&l, "customs"),
        agency(&l, "tax"),
        agency(&l, "forex"),
    );
    let change = json!({"action": {"action": "set_param", "chaincode": "customs", "name": "tx_limit_fen", "value": 600000}});
    let r = l.run(&customs, "governance", "propose", change);
    assert_eq!(attr(accepted(&r), "proposal", "id").as_deref(), Some("0"));
    accepted(&l.run(
        &tax,
        "governance",
        "vote",
        json!({"proposal_id": 0, "approve": true}),
    ));
    let message = rejected(
        &l.run(&tax, "governance", "apply", json!({"proposal_id": 0})),
        "APPROVAL",
    );
    assert!(message.contains("2 of 4"), "{message}");
    rejected(
        &l.run(
            &tax,
            "governance",
            "vote",
            json!({"proposal_id": 0, "approve": true}),
        ),
        "DUPLICATE",
    );
    let r = l.run(
        &forex,
        "governance",
        "vote",
        json!({"proposal_id": 0, "approve": true}),
    );
    assert!(accepted(&r).iter().any(|e| e.kind == "proposal_approved"));
    accepted(&l.run(&forex, "governance", "apply", json!({"proposal_id": 0})));
    let value: Option<cbec_ledger::ParamValue> = l.get("gov/param/customs/tx_limit_fen");
    assert_eq!(value, Some(cbec_ledger::ParamValue::Int(600_000)));
    // Enterprises cannot propose.
    let seller = l.file(2, "91140200MA0GRK2220", EBC, &["seller"]);
    rejected(
        &l.run(
            &seller,
            "governance",
            "propose",
            json!({"action": {"action": "enable_chaincode", "id": "tax", "version": 1}}),
        ),
        "ROLE",
    );
}

#[test]
fn governance_rotates_an_agency_key() {
    let mut l = Ledger::new();
    let (customs, tax, forex) = (
        agency(&l, "customs"),
        agency(&l, "tax"),
        agency(&l, "forex"),
    );
    let new_key = key(4242);
    accepted(&l.run(&customs, "governance", "propose", json!({"action": {"action": "add_operator_key", "agency": "customs", "key": new_key.public()}})));
    accepted(&l.run(
        &tax,
        "governance",
        "vote",
        json!({"proposal_id": 0, "approve": true}),
    ));
    accepted(&l.run(
        &forex,
        "governance",
        "vote",
        json!({"proposal_id": 0, "approve": true}),
    ));
    // Not yet an operator key: it may not transact at all.
    assert!(l
        .try_run(
            &new_key,
            "customs",
            "set_risk",
            json!({"customs_code": EBC, "grade": "high"}),
        )
        .is_err());
    accepted(&l.run(&tax, "governance", "apply", json!({"proposal_id": 0})));
    accepted(&l.run(
        &new_key,
        "customs",
        "set_risk",
        json!({"customs_code": EBC, "grade": "high"}),
    ));
}

#[test]
fn uscc_and_non_canonical_codes_at_filing() {
    let mut l = Ledger::new();
    let commerce = agency(&l, "commerce");
    let filing = |uscc: &str, n: u16| json!({"uscc": uscc, "name": "x", "roles": ["seller"], "keys": [key(n).public()], "customs_code": format!("44039600{n:02}")});
    let m = rejected(
        &l.run(
            &commerce,
            "enterprise",
            "approve_filing",
            filing("91350100M000100Y4A", 11),
        ),
        "USCC",
    );
    assert!(m.contains("expected `3`"), "{m}");
    rejected(
        &l.run(
            &commerce,
            "enterprise",
            "approve_filing",
            filing("9111010855138508Q", 12),
        ),
        "USCC",
    );
    rejected(
        &l.run(
            &commerce,
            "enterprise",
            "approve_filing",
            filing("91140200ma0grk2220", 13),
        ),
        "NON-CANONICAL",
    );
    rejected(
        &l.run(
            &commerce,
            "enterprise",
            "approve_filing",
            filing("91140200-MA0GRK2220", 16),
        ),
        "NON-CANONICAL",
    );
    accepted(&l.run(
        &commerce,
        "enterprise",
        "approve_filing",
        filing("91140200MA0GRK2220", 14),
    ));
    rejected(
        &l.run(
            &commerce,
            "enterprise",
            "approve_filing",
            filing("91140200MA0GRK2220", 15),
        ),
        "DUPLICATE",
    );
}

/// A good's events come from its custodian or the party the last event handed it to
/// [DOMAIN.md 4]: an enterprise with the right role that holds nothing is refused with
/// `ROLE`, naming who holds it; custody moves when the named party records.
#[test]
fn goods_events_come_from_the_custodian_or_the_party_it_was_handed_to() {
    let mut w = parcel_world();
    let other_logistics =
        w.l.file(7, &uscc("91140200MA0LGT002"), "1402960007", &["logistics"]);
    let mut prev: Option<String> = None;
    let mut record =
        |w: &mut Parcel, signer: &cbec_ledger::KeyPair, kind: &str, to: Option<&str>| {
            let mut value = json!({"goods_id": "C-1", "kind": kind});
            if let Some(p) = &prev {
                value["prev"] = json!(p);
            }
            if let Some(to) = to {
                value["attributes"] = json!({ "handover_to": to });
            }
            let r = w.l.run(signer, "goods", "record", value);
            if let Some(h) = attr_of(&r, "event_hash") {
                prev = Some(h);
            }
            r
        };
    let seller = w.seller.clone();
    let logistics = w.logistics.clone();
    accepted(&record(&mut w, &seller, "produced", None));
    // The logistics enterprise holds nothing yet.
    let m = rejected(&record(&mut w, &logistics, "shipped", None), "ROLE");
    assert!(m.contains("held by 91140200MA0GRK2220"), "{m}");
    // Handed to LOG: another logistics enterprise still may not.
    accepted(&record(&mut w, &seller, "ordered", Some(LOG)));
    let m = rejected(&record(&mut w, &other_logistics, "shipped", None), "ROLE");
    assert!(m.contains("handed to 91140200MA0LGT001"), "{m}");
    // Handing to an unfiled code is refused.
    rejected(
        &record(&mut w, &seller, "ordered", Some("1402969999")),
        "FILING",
    );
    // LOG records: it holds the good now, and the seller no longer does.
    accepted(&record(&mut w, &logistics, "shipped", None));
    rejected(&record(&mut w, &seller, "ordered", None), "ROLE");
    // Customs records its own kinds whoever holds the good, but hands nothing over.
    let customs = agency(&w.l, "customs");
    accepted(&record(&mut w, &customs, "cleared", None));
    rejected(&record(&mut w, &customs, "held", Some(LOG)), "ARGS");
    accepted(&record(&mut w, &logistics, "delivered", None));
}

fn attr_of(r: &cbec_ledger::TxResult, key: &str) -> Option<String> {
    match &r.outcome {
        cbec_ledger::Outcome::Accepted { events } => attr(events, "goods_event", key),
        _ => None,
    }
}

#[test]
fn goods_chain_gtin_hs_code_and_previous_hash() {
    let mut w = parcel_world();
    let bad_gtin =
        json!({"goods_id": "G-1", "kind": "produced", "attributes": {"gtin": "6901234567890"}});
    rejected(&w.l.run(&w.seller, "goods", "record", bad_gtin), "GTIN");
    let bad_hs = json!({"goods_id": "G-1", "kind": "produced", "attributes": {"commodity_code": "7700000000"}});
    rejected(&w.l.run(&w.seller, "goods", "record", bad_hs), "HS-CODE");
    // The dotted HS spelling and a USCC with a separator: not canonical, whatever their
    // length (before the fix: HS-CODE's length error, USCC's length error).
    let dotted = json!({"goods_id": "G-1", "kind": "produced", "attributes": {"commodity_code": "3304.99.0099"}});
    rejected(
        &w.l.run(&w.seller, "goods", "record", dotted),
        "NON-CANONICAL",
    );
    rejected(
        &w.l.run(
            &w.seller,
            "goods",
            "record",
            json!({"goods_id": "g-1", "kind": "produced"}),
        ),
        "NON-CANONICAL",
    );
    let first = json!({"goods_id": "G-1", "kind": "produced", "attributes": {"gtin": "6901234567892", "commodity_code": "3304990099"}});
    let h1 = attr(
        accepted(&w.l.run(&w.seller, "goods", "record", first)),
        "goods_event",
        "event_hash",
    )
    .expect("hash");
    // A second "first" event would fork the history.
    rejected(
        &w.l.run(
            &w.seller,
            "goods",
            "record",
            json!({"goods_id": "G-1", "kind": "produced"}),
        ),
        "GOODS-PREV",
    );
    let wrong = json!({"goods_id": "G-1", "kind": "ordered", "prev": "00".repeat(32)});
    rejected(&w.l.run(&w.seller, "goods", "record", wrong), "GOODS-PREV");
    // Role per event kind: logistics may not pay.
    rejected(
        &w.l.run(
            &w.logistics,
            "goods",
            "record",
            json!({"goods_id": "G-1", "kind": "paid", "prev": h1}),
        ),
        "ROLE",
    );
    accepted(&w.l.run(
        &w.seller,
        "goods",
        "record",
        json!({"goods_id": "G-1", "kind": "ordered", "prev": h1}),
    ));
}

#[test]
fn three_documents_match_and_each_mismatch_names_its_rule() {
    type Tweak = fn(&mut Value, &mut Value, &mut Value, &mut Value);
    let cases: Vec<(&str, Tweak)> = vec![
        ("R2", |_, _, _, i| i["ebc_code"] = json!("1402969999")),
        // The list names a waybill that was never filed.
        ("R3", |_, _, _, i| i["logistics_no"] = json!("SF-OTHER")),
        ("R4", |_, p, _, _| p["amount_paid_fen"] = json!(99_999)),
        // The payment filed is not the one the order names: another transaction id (a
        // payment from another payment enterprise is refused at filing: ROLE).
        ("PAY-REF", |_, p, _, _| {
            p["pay_transaction_id"] = json!("PAY-OTHER")
        }),
        ("R5", |o, _, _, _| o["freight_fen"] = json!(1_000)),
        ("R6", |_, _, w, _| w["consignee_phone_tag"] = json!(tag(9))),
        ("R7", |_, p, _, _| p["payer_tag"] = json!(tag(8))),
        ("R10", |o, _, _, _| o["buyer_id_type"] = json!("2")),
    ];
    for (i, (rule, tweak)) in cases.into_iter().enumerate() {
        let mut w = parcel_world();
        let no = format!("ORD{i}");
        w.documents(&no, json!([line(1, 100_000)]), 100_000, tweak);
        rejected(&w.clear(&no), rule);
    }
    let mut w = parcel_world();
    w.documents("OK1", json!([line(1, 100_000)]), 100_000, |_, _, _, _| {});
    let events = accepted(&w.clear("OK1")).clone();
    assert_eq!(
        attr(&events, "clearance", "status").as_deref(),
        Some("released")
    );
    // V = 1,000.00, VAT 13 %, no consumption tax: 70 % of 130.00 = 91.00.
    assert_eq!(
        attr(&events, "clearance", "tax_due_fen").as_deref(),
        Some("9100")
    );
}

/// The tax is on the dutiable value (goods + freight + insurance, DOMAIN.md 5), and the
/// order's declared total must be that tax: declaring it on the goods alone, or
/// forgetting the insurance, is refused as `TAX-TOTAL`.
#[test]
fn tax_is_on_the_dutiable_value_and_the_declared_total_must_match() {
    // V = 1,000.00 + 10.00 freight + 5.00 insurance = 1,015.00: 9.1 % is 92.365 -> 92.37.
    let with = |tax: u64| {
        move |o: &mut Value, p: &mut Value, _: &mut Value, _: &mut Value| {
            o["freight_fen"] = json!(1_000);
            o["insurance_fen"] = json!(500);
            o["tax_total_fen"] = json!(tax);
            o["actual_paid_fen"] = json!(100_000 + 1_000 + tax);
            p["amount_paid_fen"] = json!(100_000 + 1_000 + tax);
        }
    };
    assert_eq!(declared_tax(101_500, true), 9_237);
    for (no, tax) in [("T1", 9_100), ("T2", 9_191), ("T3", 9_238)] {
        let mut w = parcel_world();
        w.documents(no, json!([line(1, 100_000)]), 100_000, with(tax));
        let r = w.clear(no);
        let message = rejected(&r, "TAX-TOTAL");
        assert!(
            message.contains(&format!("declares {tax} fen"))
                && message.contains("dutiable value 101500 fen")
                && message.contains("tax due is 9237 fen"),
            "{message}"
        );
    }
    let mut w = parcel_world();
    w.documents("T4", json!([line(1, 100_000)]), 100_000, with(9_237));
    let events = accepted(&w.clear("T4")).clone();
    assert_eq!(
        attr(&events, "clearance", "tax_due_fen").as_deref(),
        Some("9237")
    );
    // The limits still count the goods value, not the dutiable value.
    let used: Option<u64> = w.l.get(&format!("customs/annual/{}/2026", tag(1)));
    assert_eq!(used, Some(100_000));
}

/// R10 rests on an identity service's attestation [DOMAIN.md 4]: for the list's buyer
/// tag, verified, a resident id, valid at block time, signed by a filed identity
/// service's key; each failure is refused with `R10`, naming what failed.
#[test]
fn r10_needs_a_valid_identity_attestation_for_the_buyer() {
    type Edit = fn(&mut AttestationBody);
    let cases: [(&str, Edit); 5] = [
        ("is for buyer", |b| b.buyer_tag = tag(7)),
        ("did not verify the buyer", |b| b.verdict = Verdict::Failed),
        ("id type is 2", |b| b.id_type = "2".into()),
        ("not at block time", |b| {
            b.valid_until_ms = b.valid_from_ms + 1
        }),
        ("key version v2", |b| b.key_version = "v2".into()),
    ];
    for (i, (words, edit)) in cases.into_iter().enumerate() {
        let mut w = parcel_world();
        let no = format!("ID{i}");
        let attestation = w.attestation(&tag(1), edit);
        w.documents(&no, json!([line(1, 100)]), 100, move |_, _, _, i| {
            i["buyer_attestation"] = attestation.clone()
        });
        let m = rejected(&w.clear(&no), "R10");
        assert!(m.contains(words), "{words}: {m}");
    }
    // A flipped signature byte; a signature by an enterprise that is no identity
    // service; a service listed on the credit negative list.
    let mut w = parcel_world();
    let mut forged = w.attestation(&tag(1), |_| {});
    let sig = forged["signature"].as_str().expect("hex").to_string();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    forged["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    w.documents("ID8", json!([line(1, 100)]), 100, move |_, _, _, i| {
        i["buyer_attestation"] = forged.clone()
    });
    let m = rejected(&w.clear("ID8"), "R10");
    assert!(m.contains("signature does not verify"), "{m}");
    let mut w = parcel_world();
    let mut body = serde_json::from_value::<Attestation>(w.attestation(&tag(1), |_| {}))
        .expect("attestation")
        .body;
    body.service = w.payment.public();
    let by_payment = serde_json::to_value(Attestation::sign(body, &w.payment)).expect("json");
    w.documents("ID9", json!([line(1, 100)]), 100, move |_, _, _, i| {
        i["buyer_attestation"] = by_payment.clone()
    });
    let m = rejected(&w.clear("ID9"), "R10");
    assert!(m.contains("not a filed identity service"), "{m}");
    let mut w = parcel_world();
    w.documents("ID10", json!([line(1, 100)]), 100, |_, _, _, _| {});
    let commerce = agency(&w.l, "commerce");
    accepted(&w.l.run(
        &commerce,
        "enterprise",
        "list_negative",
        json!({"uscc": uscc("91110000MA0JDN001"), "reason": "test"}),
    ));
    let m = rejected(&w.clear("ID10"), "R10");
    assert!(m.contains("negative list"), "{m}");
    // And the genuine one clears.
    let mut w = parcel_world();
    w.documents("ID11", json!([line(1, 100)]), 100, |_, _, _, _| {});
    accepted(&w.clear("ID11"));
}

#[test]
fn r1_duplicate_order_and_missing_documents() {
    let mut w = parcel_world();
    w.documents("A1", json!([line(1, 100)]), 100, |_, _, _, _| {});
    rejected(
        &w.l.run(
            &w.platform.clone_key(),
            "customs",
            "submit_order",
            order("A1", json!([line(1, 100)]), 100),
        ),
        "R1",
    );
    rejected(&w.clear("NOPE"), "R1");
}

trait CloneKey {
    fn clone_key(&self) -> cbec_ledger::KeyPair;
}
impl CloneKey for cbec_ledger::KeyPair {
    fn clone_key(&self) -> cbec_ledger::KeyPair {
        self.clone()
    }
}

#[test]
fn r3_waybill_number_not_reused_within_six_months() {
    let mut w = parcel_world();
    for no in ["A", "B", "C"] {
        let o = order(no, json!([line(1, 100)]), 100);
        accepted(&w.l.run(&w.platform, "customs", "submit_order", o));
    }
    let waybill = |order: &str| {
        json!({"logistics_code": LOG, "logistics_no": "SF1", "ebp_code": EBP, "order_no": order,
        "consignee_name_tag": tag(2), "consignee_phone_tag": tag(3), "consignee_address_tag": tag(4)})
    };
    accepted(&w.l.run(&w.logistics, "customs", "submit_waybill", waybill("A")));
    rejected(
        &w.l.run(&w.logistics, "customs", "submit_waybill", waybill("B")),
        "R3",
    );
    w.l.time_ms += 181 * DAY_MS;
    accepted(&w.l.run(&w.logistics, "customs", "submit_waybill", waybill("C")));
}

/// Only the parties the order names file its payment, waybill and declaration list
/// [DOMAIN.md 4, "Who may file what"]: another payment enterprise, logistics enterprise
/// or agent holding the right role is refused (`ROLE`, naming who may), and so is a
/// document for an order that does not exist yet.
#[test]
fn only_the_parties_an_order_names_may_file_its_documents() {
    let mut w = parcel_world();
    let other_payment =
        w.l.file(6, &uscc("91110000MA00PAY02"), "1100960006", &["payment"]);
    let other_logistics =
        w.l.file(7, &uscc("91140200MA0LGT002"), "1402960007", &["logistics"]);
    let other_agent =
        w.l.file(8, &uscc("91140200MA0AGT002"), "1402960008", &["agent"]);
    let payment = |code: &str| {
        json!({"order_no": "N1", "ebp_code": EBP, "pay_code": code, "pay_transaction_id": "PAY-N1",
            "amount_paid_fen": 100_000, "payer_tag": tag(1)})
    };
    let waybill = |code: &str| {
        json!({"logistics_code": code, "logistics_no": "SFN1", "ebp_code": EBP, "order_no": "N1",
            "consignee_name_tag": tag(2), "consignee_phone_tag": tag(3), "consignee_address_tag": tag(4)})
    };
    let list = json!({"order_no": "N1", "ebp_code": EBP, "ebc_code": EBC, "logistics_code": LOG,
        "logistics_no": "SFN1", "buyer_id_type": "1", "buyer_tag": tag(1), "supervision_mode": "9610",
        "vat_rate_bp": 1300, "consumption_rate_bp": 0, "tariff_rate_bp": 0,
        "buyer_attestation": w.attestation(&tag(1), |_| {})});
    // Before the order: nobody is named yet.
    let m = rejected(
        &w.l.run(&w.payment, "customs", "submit_payment", payment(PAY)),
        "ROLE",
    );
    assert!(m.contains("the order comes first"), "{m}");
    let o = order("N1", json!([line(1, 100_000)]), 100_000);
    accepted(&w.l.run(&w.platform, "customs", "submit_order", o));
    // Enterprises of the right role that the order does not name.
    for (signer, method, args, named) in [
        (&other_payment, "submit_payment", payment("1100960006"), PAY),
        (
            &other_logistics,
            "submit_waybill",
            waybill("1402960007"),
            LOG,
        ),
        (&other_agent, "submit_list", list.clone(), AGT),
    ] {
        let m = rejected(&w.l.run(signer, "customs", method, args), "ROLE");
        assert!(m.contains("names") && m.contains(named), "{method}: {m}");
    }
    // The named ones.
    accepted(&w.l.run(&w.payment, "customs", "submit_payment", payment(PAY)));
    accepted(&w.l.run(&w.logistics, "customs", "submit_waybill", waybill(LOG)));
    accepted(&w.l.run(&w.agent, "customs", "submit_list", list));
}

#[test]
fn r9_every_enterprise_needs_a_valid_filing() {
    let mut w = parcel_world();
    w.documents("B1", json!([line(1, 100)]), 100, |_, _, _, _| {});
    let commerce = agency(&w.l, "commerce");
    let payment_uscc = uscc("91110000MA00PAY01");
    accepted(&w.l.run(
        &commerce,
        "enterprise",
        "list_negative",
        json!({"uscc": payment_uscc, "reason": "unpaid fines"}),
    ));
    let m = rejected(&w.clear("B1"), "R9");
    assert!(m.contains("payment enterprise"), "{m}");
}

#[test]
fn mode_list_must_be_a_retail_import_mode() {
    let mut w = parcel_world();
    let i = json!({"order_no": "M1", "ebp_code": EBP, "ebc_code": EBC, "logistics_code": LOG,
        "logistics_no": "SF1", "buyer_id_type": "1", "buyer_tag": tag(1), "supervision_mode": "9810",
        "vat_rate_bp": 1300, "consumption_rate_bp": 0, "tariff_rate_bp": 0,
        "buyer_attestation": w.attestation(&tag(1), |_| {})});
    rejected(&w.l.run(&w.agent, "customs", "submit_list", i), "MODE");
}

#[test]
fn limits_follow_the_domain_table() {
    // 5,000.00 in 3 lines, nothing used before: preferential.
    let mut w = parcel_world();
    w.documents(
        "L1",
        json!([line(1, 200_000), line(1, 200_000), line(1, 100_000)]),
        500_000,
        |_, _, _, _| {},
    );
    assert_eq!(
        attr(accepted(&w.clear("L1")), "clearance", "preferential").as_deref(),
        Some("true")
    );

    // 5,000.01 in 2 lines: LIMIT-TX.
    let mut w = parcel_world();
    w.documents(
        "L2",
        json!([line(1, 250_000), line(1, 250_001)]),
        500_001,
        |_, _, _, _| {},
    );
    rejected(&w.clear("L2"), "LIMIT-TX");

    // 6,000.00, one line of quantity 1, 10,000.00 used: full tax, used becomes 16,000.00.
    let mut w = parcel_world();
    w.documents(
        "U1",
        json!([line(1, 1_000_000)]),
        1_000_000,
        |o, _, _, _| o["order_no"] = json!("U1"),
    );
    accepted(&w.clear("U1"));
    w.documents("L3", json!([line(1, 600_000)]), 600_000, |_, _, _, _| {});
    assert_eq!(
        attr(accepted(&w.clear("L3")), "clearance", "preferential").as_deref(),
        Some("false")
    );
    let used: Option<u64> = w.l.get(&format!("customs/annual/{}/2026", tag(1)));
    assert_eq!(used, Some(1_600_000));

    // 1,000.00 with 25,000.00 used: exactly 26,000.00 is allowed; one fen more is not.
    let mut w = parcel_world();
    for (k, no) in ["P1", "P2", "P3", "P4", "P5"].iter().enumerate() {
        w.documents(no, json!([line(1, 500_000)]), 500_000, |_, _, _, _| {});
        assert!(accepted(&w.clear(no)).len() == 1, "order {k}");
    }
    w.documents("L4", json!([line(1, 100_000)]), 100_000, |_, _, _, _| {});
    assert_eq!(
        attr(accepted(&w.clear("L4")), "clearance", "preferential").as_deref(),
        Some("true")
    );
    w.documents("L5", json!([line(1, 1)]), 1, |_, _, _, _| {});
    rejected(&w.clear("L5"), "LIMIT-YEAR");
    // A return within 30 days frees the order's value again.
    accepted(&w.l.run(
        &w.platform,
        "customs",
        "apply_return",
        json!({"ebp_code": EBP, "order_no": "L4"}),
    ));
    w.documents("L6", json!([line(1, 1)]), 1, |_, _, _, _| {});
    accepted(&w.clear("L6"));
}

#[test]
fn tax_arithmetic_is_exact_and_rounds_half_up() {
    use cbec_chaincode::customs::tax_due_fen;
    assert_eq!(tax_due_fen(100_000, 0, 0, 1300, 70, true), 9_100);
    // With consumption tax 15 %: CT = V/(1-c)*c; VAT = (V+CT)*v; due = 70 % of both.
    // V = 1,000.00: CT = 176.470588..., VAT = 152.941176..., sum 329.411764... -> 230.59
    assert_eq!(tax_due_fen(100_000, 0, 1500, 1300, 70, true), 23_059);
    // Full tax with a 10 % tariff: 100 + (1100)(0.13)/(1) = 243.00.
    assert_eq!(tax_due_fen(100_000, 1000, 0, 1300, 70, false), 24_300);
}

#[test]
fn risk_grade_holds_for_inspection() {
    let mut w = parcel_world();
    let customs = agency(&w.l, "customs");
    accepted(&w.l.run(
        &customs,
        "customs",
        "set_risk",
        json!({"customs_code": EBC, "grade": "high"}),
    ));
    w.documents("H1", json!([line(1, 100)]), 100, |_, _, _, _| {});
    assert_eq!(
        attr(accepted(&w.clear("H1")), "clearance", "status").as_deref(),
        Some("held")
    );
    accepted(&w.l.run(
        &customs,
        "customs",
        "release",
        json!({"ebp_code": EBP, "order_no": "H1"}),
    ));
    rejected(
        &w.l.run(
            &customs,
            "customs",
            "release",
            json!({"ebp_code": EBP, "order_no": "H1"}),
        ),
        "STATUS",
    );
}

/// A settlement counts for an enterprise only when a payment enterprise it named files
/// it (or forex itself) [DOMAIN.md 4]: before naming, after unnaming, and for another
/// enterprise, the payment enterprise is refused with `ROLE`.
#[test]
fn settlements_come_only_from_the_payment_enterprises_an_enterprise_names() {
    let mut w = parcel_world();
    let seller_uscc = "91140200MA0GRK2220";
    let settle = json!({"uscc": seller_uscc, "direction": "receipt", "amount_cents": 1_000});
    let m = rejected(
        &w.l.run(&w.payment, "forex", "record_settlement", settle.clone()),
        "ROLE",
    );
    assert!(
        m.contains("has not named payment enterprise 1100960003"),
        "{m}"
    );
    let named = json!({"pay_code": PAY});
    // Only an enterprise names its own settlers.
    let customs = agency(&w.l, "customs");
    rejected(
        &w.l.run(&customs, "forex", "name_settler", named.clone()),
        "ROLE",
    );
    accepted(&w.l.run(&w.seller, "forex", "name_settler", named.clone()));
    accepted(&w.l.run(&w.payment, "forex", "record_settlement", settle.clone()));
    // Naming counts for the enterprise that named, not for another.
    let for_platform =
        json!({"uscc": "914403001922038216", "direction": "receipt", "amount_cents": 1_000});
    rejected(
        &w.l.run(
            &w.payment,
            "forex",
            "record_settlement",
            for_platform.clone(),
        ),
        "ROLE",
    );
    // Forex itself may record any settlement.
    let forex = agency(&w.l, "forex");
    accepted(&w.l.run(&forex, "forex", "record_settlement", for_platform));
    // Unnamed again: refused again.
    accepted(&w.l.run(&w.seller, "forex", "unname_settler", named));
    rejected(
        &w.l.run(&w.payment, "forex", "record_settlement", settle),
        "ROLE",
    );
    // Naming an unfiled code is refused.
    rejected(
        &w.l.run(
            &w.seller,
            "forex",
            "name_settler",
            json!({"pay_code": "1100969999"}),
        ),
        "FILING",
    );
    let totals: Option<cbec_chaincode::forex::Totals> =
        w.l.get(&format!("forex/totals/{seller_uscc}/2026"));
    assert_eq!(totals.map(|t| t.receipts_cents), Some(1_000));
}

#[test]
fn fx1_threshold_registration_and_warning() {
    let mut w = parcel_world();
    let seller_uscc = "91140200MA0GRK2220";
    let settle =
        |amount: u64| json!({"uscc": seller_uscc, "direction": "receipt", "amount_cents": amount});
    accepted(&w.l.run(&w.seller, "forex", "name_settler", json!({"pay_code": PAY})));
    // 179,999.99: exempt, no warning.
    let r =
        w.l.run(&w.payment, "forex", "record_settlement", settle(17_999_999));
    assert_eq!(attr(accepted(&r), "settlement", "warning"), None);
    // 180,000.00: exempt, with a warning.
    let r = w.l.run(&w.payment, "forex", "record_settlement", settle(1));
    assert!(attr(accepted(&r), "settlement", "warning").is_some());
    // Exactly 200,000.00 is not exempt: refused without a directory registration.
    rejected(
        &w.l.run(&w.payment, "forex", "record_settlement", settle(2_000_000)),
        "FX-1",
    );
    // Payments are summed separately.
    let pay = json!({"uscc": seller_uscc, "direction": "payment", "amount_cents": 19_999_999});
    accepted(&w.l.run(&w.payment, "forex", "record_settlement", pay));
    // Forex registers the enterprise on the directory: allowed.
    let forex = agency(&w.l, "forex");
    accepted(&w.l.run(
        &forex,
        "enterprise",
        "attest",
        json!({"uscc": seller_uscc, "kind": "forex_directory", "value": "registered"}),
    ));
    accepted(&w.l.run(&w.payment, "forex", "record_settlement", settle(2_000_000)));
    // Only forex attests the directory.
    let tax = agency(&w.l, "tax");
    rejected(
        &w.l.run(
            &tax,
            "enterprise",
            "attest",
            json!({"uscc": seller_uscc, "kind": "forex_directory", "value": "x"}),
        ),
        "ROLE",
    );
}

#[test]
fn exp1_export_exemption_conditions() {
    let mut w = parcel_world();
    let customs = agency(&w.l, "customs");
    let decl = json!({"declaration_no": "EX1", "seller_uscc": "91140200MA0GRK2220", "commodity_code": "6109100021", "supervision_mode": "9610"});
    accepted(&w.l.run(&customs, "customs", "record_export_declaration", decl));
    let record = |no: &str, decl: &str, amount: u64| {
        json!({"record_no": no, "date": "2026-11-20", "goods_name": "cotton T-shirt",
        "unit": "piece", "quantity": 100, "unit_price_fen": 2_500, "amount_fen": amount, "commodity_code": "6109100021", "declaration_no": decl})
    };
    rejected(
        &w.l.run(
            &w.seller,
            "tax",
            "claim_export_exemption",
            record("E1", "EX1", 250_001),
        ),
        "EXP-1",
    );
    rejected(
        &w.l.run(
            &w.seller,
            "tax",
            "claim_export_exemption",
            record("E1", "NODECL", 250_000),
        ),
        "EXP-1",
    );
    accepted(&w.l.run(
        &w.seller,
        "tax",
        "claim_export_exemption",
        record("E1", "EX1", 250_000),
    ));
    // A seller registered outside the zone (Shenzhen, 440300) is not exempt.
    let outside_uscc = uscc("91440300MA5FFF001");
    let outside = w.l.file(30, &outside_uscc, "4403960030", &["seller"]);
    let decl = json!({"declaration_no": "EX2", "seller_uscc": outside_uscc, "commodity_code": "6109100021", "supervision_mode": "9610"});
    accepted(&w.l.run(&customs, "customs", "record_export_declaration", decl));
    let m = rejected(
        &w.l.run(
            &outside,
            "tax",
            "claim_export_exemption",
            record("E2", "EX2", 250_000),
        ),
        "EXP-1",
    );
    assert!(m.contains("outside the zone"), "{m}");
}

#[test]
fn method_args_chaincode_and_panic_rejections() {
    let mut w = parcel_world();
    rejected(
        &w.l.run_raw(&w.seller.clone_key(), "goods", "fly", vec![]),
        "METHOD",
    );
    rejected(
        &w.l.run_raw(&w.seller.clone_key(), "goods", "record", vec![1, 2, 3]),
        "ARGS",
    );
    rejected(
        &w.l.run_raw(&w.seller.clone_key(), "lottery", "draw", vec![]),
        "CHAINCODE",
    );
}

/// A lot is split into named children in one transaction [issue 18]: each child's first
/// event names the parent and the split event; the children take no more than the lot
/// holds (`GOODS-QTY`), only its holder splits it, and a child can be split again.
#[test]
fn a_lot_splits_into_children_within_its_quantity() {
    let mut w = parcel_world();
    let seller = w.seller.clone();
    let produced = json!({"goods_id": "LOT-1", "kind": "produced",
                          "attributes": {"quantity": "100", "commodity_code": "0201300090"}});
    let head =
        attr_of(&w.l.run(&seller, "goods", "record", produced), "event_hash").expect("produced");
    let split = |prev: &str, children: Value| json!({"goods_id": "LOT-1", "prev": prev, "children": children});
    // More than the lot holds.
    let m = rejected(
        &w.l.run(
            &seller,
            "goods",
            "split",
            split(
                &head,
                json!([{"goods_id": "P-1", "quantity": 60}, {"goods_id": "P-2", "quantity": 41}]),
            ),
        ),
        "GOODS-QTY",
    );
    assert!(m.contains("take 101") && m.contains("holds 100"), "{m}");
    // Not the holder.
    let logistics = w.logistics.clone();
    rejected(
        &w.l.run(
            &logistics,
            "goods",
            "split",
            split(&head, json!([{"goods_id": "P-1", "quantity": 1}])),
        ),
        "ROLE",
    );
    // A stale head, a child named twice, a reserved attribute, recording a split by hand.
    rejected(
        &w.l.run(
            &seller,
            "goods",
            "split",
            split(
                &"00".repeat(32),
                json!([{"goods_id": "P-1", "quantity": 1}]),
            ),
        ),
        "GOODS-PREV",
    );
    rejected(
        &w.l.run(
            &seller,
            "goods",
            "split",
            split(
                &head,
                json!([{"goods_id": "P-1", "quantity": 1}, {"goods_id": "P-1", "quantity": 1}]),
            ),
        ),
        "ARGS",
    );
    let mut reserved = split(&head, json!([{"goods_id": "P-1", "quantity": 1}]));
    reserved["attributes"] = json!({"parent": "X"});
    rejected(&w.l.run(&seller, "goods", "split", reserved), "ARGS");
    rejected(
        &w.l.run(
            &seller,
            "goods",
            "record",
            json!({"goods_id": "P-9", "kind": "derived"}),
        ),
        "ARGS",
    );

    // Within the quantity: one transaction, one event on the lot and one per child.
    let r = w.l.run(
        &seller,
        "goods",
        "split",
        split(
            &head,
            json!([{"goods_id": "P-1", "quantity": 60}, {"goods_id": "P-2", "quantity": 40}]),
        ),
    );
    let events = accepted(&r);
    assert_eq!(events.len(), 3, "the lot's split event and two children's");
    let split_hash = attr(events, "goods_event", "event_hash").expect("split event");
    let lot_head: cbec_ledger::goods::Head = w.l.get("goods/head/LOT-1").expect("head");
    assert_eq!(
        (lot_head.count, lot_head.last.to_string()),
        (2, split_hash.clone())
    );
    assert_eq!(w.l.get::<u64>("goods/qty/LOT-1"), Some(0));
    assert_eq!(w.l.get::<u64>("goods/qty/P-1"), Some(60));
    let child_head: cbec_ledger::goods::Head = w.l.get("goods/head/P-1").expect("child");
    let first: cbec_ledger::goods::StoredEvent =
        w.l.get(&format!("goods/event/{}", child_head.first))
            .expect("child's first event");
    assert_eq!(first.kind, cbec_ledger::goods::EventKind::Derived);
    assert_eq!(first.attributes["parent"], "LOT-1");
    assert_eq!(first.attributes["parent_event"], split_hash);
    assert_eq!(first.attributes["quantity"], "60");
    // Nothing is left to split; a child exists already; a child splits again.
    rejected(
        &w.l.run(
            &seller,
            "goods",
            "split",
            split(&split_hash, json!([{"goods_id": "P-3", "quantity": 1}])),
        ),
        "GOODS-QTY",
    );
    let again = json!({"goods_id": "P-1", "prev": child_head.last, "children": [{"goods_id": "P-2", "quantity": 1}]});
    rejected(&w.l.run(&seller, "goods", "split", again), "DUPLICATE");
    let again = json!({"goods_id": "P-1", "prev": child_head.last, "children": [{"goods_id": "P-1A", "quantity": 30}]});
    accepted(&w.l.run(&seller, "goods", "split", again));
    assert_eq!(w.l.get::<u64>("goods/qty/P-1"), Some(30));
}

/// Goods packed into a container and taken out again [issue 18]: one transaction each,
/// an event on the container and on every good naming the container's event; a good is
/// in one container at a time and comes out only of the one it is in (`GOODS-PACK`).
#[test]
fn goods_are_packed_into_a_container_and_taken_out() {
    let mut w = parcel_world();
    let seller = w.seller.clone();
    let mut heads = std::collections::BTreeMap::new();
    for id in ["B-1", "B-2"] {
        let r = w.l.run(
            &seller,
            "goods",
            "record",
            json!({"goods_id": id, "kind": "produced"}),
        );
        heads.insert(id, attr_of(&r, "event_hash").expect("produced"));
    }
    let members = |heads: &std::collections::BTreeMap<&str, String>| json!([{"goods_id": "B-1", "prev": heads["B-1"]}, {"goods_id": "B-2", "prev": heads["B-2"]}]);
    // Not the holder of the goods.
    let logistics = w.logistics.clone();
    rejected(
        &w.l.run(
            &logistics,
            "goods",
            "aggregate",
            json!({"container": "BOX-1", "children": members(&heads)}),
        ),
        "ROLE",
    );
    // A stale head for a good.
    let stale =
        json!({"container": "BOX-1", "children": [{"goods_id": "B-1", "prev": "00".repeat(32)}]});
    rejected(&w.l.run(&seller, "goods", "aggregate", stale), "GOODS-PREV");
    // Packed: the container's first event and one per good.
    let r = w.l.run(
        &seller,
        "goods",
        "aggregate",
        json!({"container": "BOX-1", "children": members(&heads)}),
    );
    let events = accepted(&r).clone();
    assert_eq!(events.len(), 3);
    let value = |e: &cbec_ledger::Event, k: &str| {
        e.attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| a.value.clone())
            .unwrap_or_default()
    };
    let box_head = value(&events[0], "event_hash");
    for e in &events[1..] {
        heads.insert(
            if value(e, "goods_id") == "B-1" {
                "B-1"
            } else {
                "B-2"
            },
            value(e, "event_hash"),
        );
    }
    let packed: cbec_ledger::goods::StoredEvent =
        w.l.get(&format!("goods/event/{}", heads["B-1"]))
            .expect("packed event");
    assert_eq!(packed.kind, cbec_ledger::goods::EventKind::Packed);
    assert_eq!(packed.attributes["container"], "BOX-1");
    assert_eq!(packed.attributes["container_event"], box_head);
    assert_eq!(w.l.get::<String>("goods/in/B-1").as_deref(), Some("BOX-1"));
    // In one container at a time.
    let again =
        json!({"container": "BOX-2", "children": [{"goods_id": "B-1", "prev": heads["B-1"]}]});
    rejected(&w.l.run(&seller, "goods", "aggregate", again), "GOODS-PACK");
    // Out of the container it is in only; then out of BOX-1.
    let wrong =
        json!({"container": "BOX-9", "children": [{"goods_id": "B-1", "prev": heads["B-1"]}]});
    rejected(
        &w.l.run(&seller, "goods", "disaggregate", wrong),
        "GOODS-PREV",
    );
    let out = json!({"container": "BOX-1", "prev": box_head, "children": members(&heads)});
    let r = w.l.run(&seller, "goods", "disaggregate", out);
    assert_eq!(accepted(&r).len(), 3);
    assert_eq!(w.l.get::<String>("goods/in/B-1"), None);
    // By hand, packing kinds are refused.
    rejected(
        &w.l.run(
            &seller,
            "goods",
            "record",
            json!({"goods_id": "B-9", "kind": "packed"}),
        ),
        "ARGS",
    );
}

/// Meat lots cut and packed [issue 18]: one transaction consumes quantities of several
/// inputs and makes new goods; each input's chain gets a `consumed` event, each output's
/// first event is `transformed`, naming every input and its event. An input gives up no
/// more than it holds (`GOODS-QTY`), is transformed only by its holder (`ROLE`), not from
/// inside a container (`GOODS-PACK`), and an output is new (`DUPLICATE`).
#[test]
fn lots_are_transformed_into_new_goods_within_their_quantities() {
    let mut w = parcel_world();
    let seller = w.seller.clone();
    let mut heads = std::collections::BTreeMap::new();
    for (id, quantity) in [("BEEF-1", "60"), ("BEEF-2", "40"), ("BOX-0", "1")] {
        let r = w.l.run(
            &seller,
            "goods",
            "record",
            json!({"goods_id": id, "kind": "produced",
                   "attributes": {"quantity": quantity, "commodity_code": "0201300090"}}),
        );
        heads.insert(id, attr_of(&r, "event_hash").expect("produced"));
    }
    let transform = |heads: &std::collections::BTreeMap<&str, String>, a: u64, b: u64| {
        json!({"inputs": [{"goods_id": "BEEF-1", "prev": heads["BEEF-1"], "quantity": a},
                          {"goods_id": "BEEF-2", "prev": heads["BEEF-2"], "quantity": b}],
               "outputs": [{"goods_id": "PACK-1", "quantity": 50, "attributes": {"gtin": "6901234567892"}},
                           {"goods_id": "PACK-2", "quantity": 20}],
               "attributes": {"process": "cut and packed"}})
    };
    // More than an input holds.
    let m = rejected(
        &w.l.run(&seller, "goods", "transform", transform(&heads, 61, 10)),
        "GOODS-QTY",
    );
    assert!(
        m.contains("consumes 61 of BEEF-1") && m.contains("holds 60"),
        "{m}"
    );
    // Not the holder; a stale head; an input named twice; a reserved attribute; an
    // output's bad GTIN; recording a transformation by hand.
    let logistics = w.logistics.clone();
    rejected(
        &w.l.run(&logistics, "goods", "transform", transform(&heads, 1, 1)),
        "ROLE",
    );
    let mut stale = heads.clone();
    stale.insert("BEEF-2", "00".repeat(32));
    rejected(
        &w.l.run(&seller, "goods", "transform", transform(&stale, 1, 1)),
        "GOODS-PREV",
    );
    let mut twice = transform(&heads, 1, 1);
    twice["inputs"][1]["goods_id"] = json!("BEEF-1");
    rejected(&w.l.run(&seller, "goods", "transform", twice), "ARGS");
    let mut reserved = transform(&heads, 1, 1);
    reserved["outputs"][1]["attributes"] = json!({"inputs": "X"});
    rejected(&w.l.run(&seller, "goods", "transform", reserved), "ARGS");
    let mut gtin = transform(&heads, 1, 1);
    gtin["outputs"][0]["attributes"] = json!({"gtin": "6901234567890"});
    rejected(&w.l.run(&seller, "goods", "transform", gtin), "GTIN");
    rejected(
        &w.l.run(
            &seller,
            "goods",
            "record",
            json!({"goods_id": "PACK-9", "kind": "transformed"}),
        ),
        "ARGS",
    );

    // Within the quantities: an event on each input and one per output.
    let r =
        w.l.run(&seller, "goods", "transform", transform(&heads, 60, 15));
    let events = accepted(&r).clone();
    assert_eq!(events.len(), 4, "two inputs' events and two outputs'");
    assert_eq!(w.l.get::<u64>("goods/qty/BEEF-1"), Some(0));
    assert_eq!(w.l.get::<u64>("goods/qty/BEEF-2"), Some(25));
    assert_eq!(w.l.get::<u64>("goods/qty/PACK-1"), Some(50));
    let event_of = |w: &Parcel, id: &str| -> cbec_ledger::goods::StoredEvent {
        let head: cbec_ledger::goods::Head = w.l.get(&format!("goods/head/{id}")).expect("head");
        w.l.get(&format!("goods/event/{}", head.last))
            .expect("event")
    };
    let (beef1, beef2) = (event_of(&w, "BEEF-1"), event_of(&w, "BEEF-2"));
    assert_eq!(beef1.kind, cbec_ledger::goods::EventKind::Consumed);
    assert_eq!(
        (
            beef1.attributes["quantity"].as_str(),
            beef1.attributes["outputs"].as_str()
        ),
        ("60", "2")
    );
    let pack = event_of(&w, "PACK-1");
    assert_eq!(pack.kind, cbec_ledger::goods::EventKind::Transformed);
    assert_eq!(pack.attributes["inputs"], "BEEF-1,BEEF-2");
    assert_eq!(
        pack.attributes["input_events"],
        format!(
            "{},{}",
            beef1.hash(cbec_ledger::Suite::Ed25519Sha256),
            beef2.hash(cbec_ledger::Suite::Ed25519Sha256)
        )
    );
    assert_eq!(
        (
            pack.attributes["gtin"].as_str(),
            pack.attributes["process"].as_str()
        ),
        ("6901234567892", "cut and packed")
    );
    let sources = cbec_ledger::goods::sources(pack.kind, &pack.attributes).expect("sources");
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[1].goods_id, "BEEF-2");

    // An output exists already; the emptied input gives up more; an input in a container.
    heads.insert(
        "BEEF-1",
        beef1.hash(cbec_ledger::Suite::Ed25519Sha256).to_string(),
    );
    heads.insert(
        "BEEF-2",
        beef2.hash(cbec_ledger::Suite::Ed25519Sha256).to_string(),
    );
    rejected(
        &w.l.run(&seller, "goods", "transform", transform(&heads, 1, 1)),
        "GOODS-QTY",
    );
    let packed = w.l.run(
        &seller,
        "goods",
        "aggregate",
        json!({"container": "CRATE-1", "children": [{"goods_id": "BEEF-2", "prev": heads["BEEF-2"]}]}),
    );
    accepted(&packed);
    let again = json!({"inputs": [{"goods_id": "BEEF-2", "prev": event_of(&w, "BEEF-2").hash(cbec_ledger::Suite::Ed25519Sha256), "quantity": 1}],
                       "outputs": [{"goods_id": "PACK-3", "quantity": 1}]});
    rejected(&w.l.run(&seller, "goods", "transform", again), "GOODS-PACK");
    let dup = json!({"inputs": [{"goods_id": "BOX-0", "prev": heads["BOX-0"], "quantity": 1}],
                     "outputs": [{"goods_id": "PACK-1", "quantity": 1}]});
    rejected(&w.l.run(&seller, "goods", "transform", dup), "DUPLICATE");
}
