//! The demo `cbec devnet up --demo` runs: five enterprises filed by commerce, then one
//! imported parcel from production through clearance to delivery, with one refusal on
//! the way to show that refusals are recorded too; then a lot of imported meat split
//! into parcels that each clear customs.

use std::path::Path;

use anyhow::Context;
use cbec_chaincode::goods::Head;
use cbec_genesis::read_key;
use cbec_ledger::{codec, KeyPair};
use serde_json::{json, Value};

use crate::client::Client;
use crate::commands::devnet::{api_url, demo_key, step};
use crate::output::Output;

/// A valid USCC for a 17-character body.
fn uscc(body: &str) -> String {
    cbec_chaincode::codes::uscc_with_check(body).expect("a 17-character USCC body")
}

fn tag(purpose: &str, seed: &str) -> String {
    // Stands in for the gateway's keyed HMAC over the canonical personal value (the
    // gateway's function, not the chain's: the default suite's hash whatever the chain).
    format!(
        "v1:{}",
        cbec_ledger::Suite::default()
            .tagged(purpose, seed.as_bytes())
            .to_hex()
    )
}

/// The parcel's event chain: each event names the previous one's hash.
struct Trail<'a> {
    client: &'a Client,
    goods_id: String,
    prev: Option<String>,
}

impl Trail<'_> {
    fn event(&mut self, key: &KeyPair, kind: &str, attributes: Value) -> anyhow::Result<()> {
        let mut args = json!({"goods_id": self.goods_id, "kind": kind, "attributes": attributes});
        if let Some(p) = &self.prev {
            args["prev"] = json!(p);
        }
        let answer = step(
            self.client,
            key,
            &format!("goods event `{kind}`"),
            "goods",
            "record",
            args,
        )?;
        let events = answer["result"]["outcome"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for e in events {
            for a in e["attributes"].as_array().into_iter().flatten() {
                if a["key"] == "event_hash" {
                    self.prev = a["value"].as_str().map(String::from);
                }
            }
        }
        Ok(())
    }
}

/// The devnet's tag key (the gateways' and the identity service's), made on first use.
fn demo_tag_key(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = dir.join("demo").join("tag.key");
    if !path.exists() {
        std::fs::create_dir_all(dir.join("demo"))?;
        let mut key = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
        std::fs::write(&path, format!("{}\n", hex::encode(key)))?;
    }
    crate::commands::identity::read_tag_key(&path)
}

struct Firm {
    name: &'static str,
    uscc: String,
    code: &'static str,
    roles: &'static [&'static str],
    key: KeyPair,
}

pub fn run(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let client = Client::new(&api_url(dir, "customs")?)?;
    let commerce = read_key(&dir.join("commerce/operator.key")).context("commerce operator key")?;
    let customs = read_key(&dir.join("customs/operator.key")).context("customs operator key")?;
    let firms = [
        (
            "platform",
            "914403001922038216".to_string(),
            "4403960001",
            &["platform"][..],
        ),
        (
            "seller",
            "91140200MA0GRK2220".to_string(),
            "1402960002",
            &["seller", "manufacturer"][..],
        ),
        (
            "payment",
            uscc("91110000MA00PAY01"),
            "1100960003",
            &["payment"][..],
        ),
        (
            "logistics",
            uscc("91140200MA0LGT001"),
            "1402960004",
            &["logistics"][..],
        ),
        (
            "agent",
            uscc("91140200MA0AGT001"),
            "1402960005",
            &["agent"][..],
        ),
        (
            "identity",
            uscc("91110000MA0JDN001"),
            "1100960009",
            &["identity"][..],
        ),
    ];
    let mut filed = Vec::new();
    eprintln!("demo: enterprise filings (commerce approves; one filing shared by all agencies)");
    for (name, uscc, code, roles) in firms {
        let key = demo_key(dir, name)?;
        let existing = client.get(&format!("/v1/state/ent/filing/{uscc}"))?;
        if existing["value_hex"].is_null() {
            step(
                &client,
                &commerce,
                &format!("file the {name}"),
                "enterprise",
                "approve_filing",
                json!({"uscc": uscc, "name": format!("demo {name}"), "roles": roles, "keys": [key.public()], "customs_code": code}),
            )?;
        } else {
            eprintln!("  [     ok] the {name} ({uscc}) has filed already");
        }
        filed.push(Firm {
            name,
            uscc,
            code,
            roles,
            key,
        });
    }
    let [platform, seller, payment, logistics, agent, identity] = &filed[..] else {
        unreachable!("six firms")
    };
    let _ = (&platform.roles, &seller.name, &payment.uscc);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let goods_id = format!("PARCEL-{stamp}");
    let order_no = format!("O-{stamp}");
    let waybill = format!("SF{stamp}");
    // The identity service checks the buyer's number and name and attests the buyer tag
    // (as `cbec identity attest` does); the documents carry that tag, never the number.
    let tag_key = demo_tag_key(dir)?;
    let now_ms = stamp * 1_000;
    let attestation = cbec_chaincode::identity::attest(
        &identity.key,
        &tag_key,
        "v1",
        "11010519491231002X",
        "Li Lei",
        now_ms.saturating_sub(60_000),
        365,
    )
    .map_err(|e| anyhow::anyhow!("demo attestation: {e}"))?;
    let buyer = attestation.body.buyer_tag.clone();
    eprintln!("demo: the identity service attests buyer {buyer}");
    let (name, phone, address) = (
        tag("name", "Li Lei"),
        tag("phone", "13800000000"),
        tag("address", "Datong"),
    );
    let people = People {
        buyer: &buyer,
        attestation: &attestation,
        name: &name,
        phone: &phone,
        address: &address,
    };
    let firms = Firms {
        platform,
        seller,
        payment,
        logistics,
        agent,
        customs: &customs,
    };
    let mut trail = Trail {
        client: &client,
        goods_id: goods_id.clone(),
        prev: None,
    };
    eprintln!("demo: parcel {goods_id}, order {order_no}");
    trail.event(
        &seller.key,
        "produced",
        json!({"gtin": "6901234567892", "commodity_code": "3304990099"}),
    )?;
    let skin_care = Line {
        commodity_code: "3304990099",
        gtin: "6901234567892",
        quantity: 2,
        unit_price_fen: 50_000,
        vat_rate_bp: 1300,
    };
    let clearance = parcel(
        &firms, &people, &mut trail, &order_no, &waybill, &skin_care, true,
    )?;

    // Imported meat: two carcasses produced, cut and packed together into one lot (a
    // transformation consuming part of each), the lot split into parcels in one
    // transaction, each parcel then ordered, declared and cleared on its own; each
    // parcel's proof reaches back through the lot to both carcasses' production.
    let lot = format!("MEAT-LOT-{stamp}");
    let meat = Line {
        commodity_code: "0201300090",
        gtin: "6901234567892",
        quantity: 1,
        unit_price_fen: 38_000,
        vat_rate_bp: 900,
    };
    let mut inputs = Vec::new();
    for (i, kilograms) in [(1, 120), (2, 80)] {
        let mut carcass = Trail {
            client: &client,
            goods_id: format!("CARCASS-{stamp}-{i}"),
            prev: None,
        };
        carcass.event(
            &seller.key,
            "produced",
            json!({"commodity_code": "0201100000", "quantity": kilograms.to_string(), "unit": "kg"}),
        )?;
        inputs.push(
            json!({"goods_id": carcass.goods_id, "prev": carcass.prev, "quantity": kilograms / 4}),
        );
    }
    eprintln!(
        "demo: carcasses cut and packed into meat lot {lot}, split into {MEAT_PARCELS} parcels"
    );
    let packed = step(
        &client,
        &seller.key,
        "cut and pack the carcasses into a lot",
        "goods",
        "transform",
        json!({"inputs": inputs,
               "outputs": [{"goods_id": lot, "quantity": MEAT_PARCELS,
                            "attributes": {"gtin": meat.gtin, "commodity_code": meat.commodity_code}}],
               "attributes": {"process": "cut and packed"}}),
    )?;
    let lot_trail = Trail {
        client: &client,
        goods_id: lot.clone(),
        prev: announced_hash(&packed, &lot),
    };
    let children: Vec<String> = (1..=MEAT_PARCELS)
        .map(|i| format!("MEAT-{stamp}-{i}"))
        .collect();
    let split = step(
        &client,
        &seller.key,
        "split the lot into parcels",
        "goods",
        "split",
        json!({"goods_id": lot, "prev": lot_trail.prev,
               "children": children.iter().map(|c| json!({"goods_id": c, "quantity": 1})).collect::<Vec<_>>()}),
    )?;
    for (i, child) in children.iter().enumerate() {
        let mut child_trail = Trail {
            client: &client,
            goods_id: child.clone(),
            prev: announced_hash(&split, child),
        };
        parcel(
            &firms,
            &people,
            &mut child_trail,
            &format!("O-{stamp}-M{i}"),
            &format!("SF{stamp}M{i}"),
            &meat,
            false,
        )?;
    }

    let head = client.get(&format!("/v1/state/goods/head/{goods_id}"))?;
    let count = head["value_hex"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| codec::decode::<Head>(&b).ok())
        .map_or(0, |h| h.count);
    let tax = clearance["result"]["outcome"]["events"][0]["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == "tax_due_fen"))
        .and_then(|x| x["value"].as_str())
        .unwrap_or("?")
        .to_string();
    let summary = json!({"goods_id": goods_id, "order_no": order_no, "events": count, "tax_due_fen": tax, "node": client.base(),
                         "lot": lot, "lot_parcels": children});
    out.emit(&summary, || {
        format!(
            "demo done: parcel {goods_id} has {count} traceability events on the ledger; clearance tax due {tax} fen.\n\
             two carcasses were cut and packed into meat lot {lot}, split into {parcels}, each cleared;\n\
             a parcel's proof covers the lot and both carcasses:\n  cbec provenance {first} --genesis {dir}/genesis.json\n\
             look at it:\n  cbec query state goods/head/{goods_id} --node {node}\n  curl {node}/v1/blocks/latest\n  curl -N {node}/v1/events",
            node = client.base(),
            parcels = children.join(", "),
            first = children[0],
            dir = dir.display()
        )
    })
}

/// How many parcels the demo's meat lot is split into.
const MEAT_PARCELS: usize = 3;
const FREIGHT_FEN: u64 = 1_000;
const DISCOUNT_FEN: u64 = 500;

/// The demo's enterprises and customs.
struct Firms<'a> {
    platform: &'a Firm,
    seller: &'a Firm,
    payment: &'a Firm,
    logistics: &'a Firm,
    agent: &'a Firm,
    customs: &'a KeyPair,
}

/// The buyer, attested, and the consignee's tags.
struct People<'a> {
    buyer: &'a str,
    attestation: &'a cbec_chaincode::identity::Attestation,
    name: &'a str,
    phone: &'a str,
    address: &'a str,
}

/// What a parcel holds: one order line.
struct Line {
    commodity_code: &'static str,
    gtin: &'static str,
    quantity: u32,
    unit_price_fen: u64,
    vat_rate_bp: u32,
}

/// The event hash a split's (or transformation's) result announced for `goods_id`.
fn announced_hash(answer: &Value, goods_id: &str) -> Option<String> {
    answer["result"]["outcome"]["events"]
        .as_array()?
        .iter()
        .find(|e| {
            e["attributes"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["key"] == "goods_id" && x["value"] == goods_id)
            })
        })?["attributes"]
        .as_array()?
        .iter()
        .find(|x| x["key"] == "event_hash")?["value"]
        .as_str()
        .map(String::from)
}

/// One imported parcel from its order to its delivery and evaluation, its goods events
/// on `trail` (which holds its first event already); `with_refusal` adds the demo's
/// refused step. Returns the clearance's answer.
fn parcel(
    firms: &Firms<'_>,
    people: &People<'_>,
    trail: &mut Trail<'_>,
    order_no: &str,
    waybill: &str,
    line: &Line,
    with_refusal: bool,
) -> anyhow::Result<Value> {
    let value = u64::from(line.quantity) * line.unit_price_fen;
    let tax =
        cbec_chaincode::customs::tax_due_fen(value + FREIGHT_FEN, 0, 0, line.vat_rate_bp, 70, true);
    let paid = value + FREIGHT_FEN + tax - DISCOUNT_FEN;
    let client = trail.client;
    // Each event hands the parcel to whoever records the next one (custody).
    trail.event(
        &firms.seller.key,
        "ordered",
        json!({"order_no": order_no, "handover_to": firms.payment.code}),
    )?;
    step(
        client,
        &firms.platform.key,
        "order (CEB311)",
        "customs",
        "submit_order",
        json!({
        "order_no": order_no, "ebp_code": firms.platform.code, "ebc_code": firms.seller.code,
        "goods_value_fen": value, "freight_fen": FREIGHT_FEN, "tax_total_fen": tax, "discount_fen": DISCOUNT_FEN,
        "actual_paid_fen": paid, "pay_code": firms.payment.code, "pay_transaction_id": format!("PAY-{order_no}"),
        "logistics_code": firms.logistics.code, "agent_code": firms.agent.code, "buyer_id_type": "1", "buyer_tag": people.buyer,
        "consignee_name_tag": people.name, "consignee_phone_tag": people.phone, "consignee_address_tag": people.address,
        "lines": [{"commodity_code": line.commodity_code, "gtin": line.gtin, "quantity": line.quantity, "unit_price_fen": line.unit_price_fen}]}),
    )?;
    step(
        client,
        &firms.payment.key,
        "payment (CEB411)",
        "customs",
        "submit_payment",
        json!({
        "order_no": order_no, "ebp_code": firms.platform.code, "pay_code": firms.payment.code,
        "pay_transaction_id": format!("PAY-{order_no}"), "amount_paid_fen": paid, "payer_tag": people.buyer}),
    )?;
    trail.event(
        &firms.payment.key,
        "paid",
        json!({"order_no": order_no, "handover_to": firms.logistics.code}),
    )?;
    step(
        client,
        &firms.logistics.key,
        "waybill (CEB511)",
        "customs",
        "submit_waybill",
        json!({
        "logistics_code": firms.logistics.code, "logistics_no": waybill, "ebp_code": firms.platform.code, "order_no": order_no,
        "consignee_name_tag": people.name, "consignee_phone_tag": people.phone, "consignee_address_tag": people.address}),
    )?;
    trail.event(
        &firms.logistics.key,
        "shipped",
        json!({"logistics_no": waybill, "handover_to": firms.agent.code}),
    )?;
    step(
        client,
        &firms.agent.key,
        "declaration list (CEB621)",
        "customs",
        "submit_list",
        json!({
        "order_no": order_no, "ebp_code": firms.platform.code, "ebc_code": firms.seller.code,
        "logistics_code": firms.logistics.code, "logistics_no": waybill, "buyer_id_type": "1", "buyer_tag": people.buyer,
        "supervision_mode": "9610", "vat_rate_bp": line.vat_rate_bp, "consumption_rate_bp": 0, "tariff_rate_bp": 0,
        "buyer_attestation": people.attestation}),
    )?;
    // A refusal, recorded on the ledger like everything else: logistics may not declare.
    if with_refusal {
        step(
            client,
            &firms.logistics.key,
            "logistics tries to declare (refused: ROLE)",
            "goods",
            "record",
            json!({"goods_id": trail.goods_id, "kind": "declared", "prev": trail.prev.clone()}),
        )?;
    }
    trail.event(
        &firms.agent.key,
        "declared",
        json!({"order_no": order_no, "handover_to": firms.logistics.code}),
    )?;
    let clearance = step(
        client,
        firms.customs,
        "customs clearance (R1-R10, limits, tax)",
        "customs",
        "clear",
        json!({"ebp_code": firms.platform.code, "order_no": order_no}),
    )?;
    trail.event(firms.customs, "cleared", json!({"order_no": order_no}))?;
    trail.event(
        &firms.logistics.key,
        "delivered",
        json!({"handover_to": firms.platform.code}),
    )?;
    trail.event(&firms.platform.key, "evaluated", json!({"stars": "5"}))?;
    Ok(clearance)
}
