//! The demo `cbec devnet up --demo` runs: five enterprises filed by commerce, then one
//! imported parcel from production through clearance to delivery, with one refusal on
//! the way to show that refusals are recorded too.

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
    // Each event hands the parcel to whoever records the next one (custody).
    trail.event(
        &seller.key,
        "ordered",
        json!({"order_no": order_no, "handover_to": payment.code}),
    )?;
    step(
        &client,
        &platform.key,
        "order (CEB311)",
        "customs",
        "submit_order",
        json!({
        "order_no": order_no, "ebp_code": platform.code, "ebc_code": seller.code,
        "goods_value_fen": 100_000, "freight_fen": 1_000, "tax_total_fen": 9_191, "discount_fen": 500,
        "actual_paid_fen": 109_691, "pay_code": payment.code, "pay_transaction_id": format!("PAY-{order_no}"),
        "logistics_code": logistics.code, "agent_code": agent.code, "buyer_id_type": "1", "buyer_tag": buyer,
        "consignee_name_tag": name, "consignee_phone_tag": phone, "consignee_address_tag": address,
        "lines": [{"commodity_code": "3304990099", "gtin": "6901234567892", "quantity": 2, "unit_price_fen": 50_000}]}),
    )?;
    step(
        &client,
        &payment.key,
        "payment (CEB411)",
        "customs",
        "submit_payment",
        json!({
        "order_no": order_no, "ebp_code": platform.code, "pay_code": payment.code,
        "pay_transaction_id": format!("PAY-{order_no}"), "amount_paid_fen": 109_691, "payer_tag": buyer}),
    )?;
    trail.event(
        &payment.key,
        "paid",
        json!({"order_no": order_no, "handover_to": logistics.code}),
    )?;
    step(
        &client,
        &logistics.key,
        "waybill (CEB511)",
        "customs",
        "submit_waybill",
        json!({
        "logistics_code": logistics.code, "logistics_no": waybill, "ebp_code": platform.code, "order_no": order_no,
        "consignee_name_tag": name, "consignee_phone_tag": phone, "consignee_address_tag": address}),
    )?;
    trail.event(
        &logistics.key,
        "shipped",
        json!({"logistics_no": waybill, "handover_to": agent.code}),
    )?;
    step(
        &client,
        &agent.key,
        "declaration list (CEB621)",
        "customs",
        "submit_list",
        json!({
        "order_no": order_no, "ebp_code": platform.code, "ebc_code": seller.code,
        "logistics_code": logistics.code, "logistics_no": waybill, "buyer_id_type": "1", "buyer_tag": buyer,
        "supervision_mode": "9610", "vat_rate_bp": 1300, "consumption_rate_bp": 0, "tariff_rate_bp": 0,
        "buyer_attestation": attestation}),
    )?;
    // A refusal, recorded on the ledger like everything else: logistics may not declare.
    step(
        &client,
        &logistics.key,
        "logistics tries to declare (refused: ROLE)",
        "goods",
        "record",
        json!({"goods_id": goods_id, "kind": "declared", "prev": trail.prev.clone()}),
    )?;
    trail.event(
        &agent.key,
        "declared",
        json!({"order_no": order_no, "handover_to": logistics.code}),
    )?;
    let clearance = step(
        &client,
        &customs,
        "customs clearance (R1-R10, limits, tax)",
        "customs",
        "clear",
        json!({"ebp_code": platform.code, "order_no": order_no}),
    )?;
    trail.event(&customs, "cleared", json!({"order_no": order_no}))?;
    trail.event(
        &logistics.key,
        "delivered",
        json!({"handover_to": platform.code}),
    )?;
    trail.event(&platform.key, "evaluated", json!({"stars": "5"}))?;

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
    let summary = json!({"goods_id": goods_id, "order_no": order_no, "events": count, "tax_due_fen": tax, "node": client.base()});
    out.emit(&summary, || {
        format!(
            "demo done: parcel {goods_id} has {count} traceability events on the ledger; clearance tax due {tax} fen.\n\
             look at it:\n  cbec query state goods/head/{goods_id} --node {node}\n  curl {node}/v1/blocks/latest\n  curl -N {node}/v1/events",
            node = client.base()
        )
    })
}
