//! `cbec bench --workload parcels`: the imported-parcel flow of the demo, as many
//! parcels at once as it takes to load the nodes.
//!
//! Each client is a lane with its own five filed enterprises (platform, seller and
//! manufacturer, payment, logistics, agent); customs' own steps go through one customs
//! thread, since customs has one operator key and its nonces must reach the nodes in
//! order. Goods come in lots [issue 18]: the lane's seller produces a lot of one kind
//! of goods (`quantity`, `--lot-parcels`, 100 unless told) and splits it into that
//! many parcels in one transaction, so
//! each parcel's history begins with its lot's. A parcel then takes eleven
//! transactions, each sent once the one before it is committed (a goods event names
//! the previous event's hash, which only its commit tells, and each customs document
//! is checked against the earlier ones): ordered, order (CEB311), payment (CEB411),
//! paid, waybill (CEB511), shipped, declaration list (CEB621), declared, clearance,
//! cleared, delivered. A lane keeps `--parcels` parcels in flight, starts a new one
//! from its split lots as each ends, and splits the next lot while parcels of the last
//! are still waiting to start.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cbec_ledger::{Hash, KeyPair, Transaction};
use serde_json::{json, Value};

use super::{post_batch, record_sends, Shared, PAUSE_MIN};
use crate::client::Client;
use crate::commands::tx::sign_call;

/// Where a committed transaction's result goes: to the lane that sent it.
pub type Route = mpsc::Sender<(Hash, Value)>;

/// The routes of transactions in flight, read by the block watcher.
pub type Routes = Mutex<HashMap<Hash, Route>>;

/// One lane's filed enterprises.
#[derive(Debug)]
pub struct Firms {
    pub platform: KeyPair,
    pub seller: KeyPair,
    pub payment: KeyPair,
    pub logistics: KeyPair,
    pub agent: KeyPair,
    pub codes: [String; 5],
}

/// The roles of a lane's five enterprises, in [`Firms`] order.
pub const ROLES: [&[&str]; 5] = [
    &["platform"],
    &["seller", "manufacturer"],
    &["payment"],
    &["logistics"],
    // The agent is also the lane's identity service (one enterprise, two roles): it
    // attests each parcel's buyer tag for R10.
    &["agent", "identity"],
];

/// Steps of a parcel, in order: who sends it, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ordered,
    Order,
    Payment,
    Paid,
    Waybill,
    Shipped,
    List,
    Declared,
    Clear,
    Cleared,
    Delivered,
}

const STEPS: [Step; 11] = [
    Step::Ordered,
    Step::Order,
    Step::Payment,
    Step::Paid,
    Step::Waybill,
    Step::Shipped,
    Step::List,
    Step::Declared,
    Step::Clear,
    Step::Cleared,
    Step::Delivered,
];

/// A sender of a lane: one of its firms, or customs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Firm(usize),
    Customs,
}

fn who(step: Step) -> Who {
    match step {
        Step::Order => Who::Firm(0),
        Step::Ordered => Who::Firm(1),
        Step::Payment | Step::Paid => Who::Firm(2),
        Step::Waybill | Step::Shipped | Step::Delivered => Who::Firm(3),
        Step::List | Step::Declared => Who::Firm(4),
        Step::Clear | Step::Cleared => Who::Customs,
    }
}

#[derive(Debug)]
struct Parcel {
    id: u64,
    /// What it carries: an index into [`GOODS`], its lot's.
    goods: usize,
    step: usize,
    /// The hash of the good's last event.
    prev: Option<String>,
    /// The transaction of the current step, once sent.
    waiting: Option<Hash>,
}

/// A lot on its way to being split: produced, then split into `size` parcels
/// (numbered from `no * size`).
#[derive(Debug)]
struct Lot {
    no: u64,
    size: u64,
    /// The hash of the lot's `produced` event, once committed.
    prev: Option<String>,
    /// The transaction of its current step, once sent.
    waiting: Option<Hash>,
}

impl Lot {
    fn new(no: u64, size: u64) -> Lot {
        Lot {
            no,
            size,
            prev: None,
            waiting: None,
        }
    }

    fn goods(&self) -> usize {
        (self.no % GOODS.len() as u64) as usize
    }

    /// Its next call: produced with its quantity, or split into its parcels.
    fn call(&self, stamp: u64, lane: usize) -> (&'static str, &'static str, Value) {
        let goods_id = format!("L{stamp}-{lane}-{}", self.no);
        match &self.prev {
            None => {
                let goods = &GOODS[self.goods()];
                let mut attributes = json!({"commodity_code": goods.commodity_code,
                                            "quantity": self.size.to_string()});
                if let Some(gtin) = goods.gtin {
                    attributes["gtin"] = json!(gtin);
                }
                (
                    "goods",
                    "record",
                    json!({"goods_id": goods_id, "kind": "produced", "attributes": attributes}),
                )
            }
            Some(prev) => {
                let children: Vec<Value> = self
                    .parcels()
                    .map(|id| json!({"goods_id": parcel_id(stamp, lane, id), "quantity": 1}))
                    .collect();
                (
                    "goods",
                    "split",
                    json!({"goods_id": goods_id, "prev": prev, "children": children}),
                )
            }
        }
    }

    fn parcels(&self) -> std::ops::Range<u64> {
        self.no * self.size..(self.no + 1) * self.size
    }
}

fn parcel_id(stamp: u64, lane: usize, id: u64) -> String {
    format!("P{stamp}-{lane}-{id}")
}

fn tag(purpose: &str, value: &str) -> String {
    // Stands in for the gateway's keyed HMAC over the canonical personal value (the
    // gateway's function, not the chain's).
    format!(
        "v1:{}",
        cbec_ledger::Suite::default()
            .tagged(purpose, value.as_bytes())
            .to_hex()
    )
}

/// The lane's identity service's attestation of `buyer_tag`, valid for a day.
fn attestation(service: &KeyPair, buyer_tag: String) -> Value {
    use cbec_chaincode::identity::{Attestation, AttestationBody, Verdict};
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = AttestationBody {
        key_version: buyer_tag.split(':').next().unwrap_or("v1").to_string(),
        buyer_tag,
        id_type: "1".into(),
        verdict: Verdict::Verified,
        valid_from_ms: now_ms.saturating_sub(3_600_000),
        valid_until_ms: now_ms + 86_400_000,
        service: service.public(),
    };
    serde_json::to_value(Attestation::sign(body, service)).unwrap_or(Value::Null)
}

/// What a parcel carries: goods of several HS chapters, values, supervision modes and
/// tax rates in turn, so that the statistics have something to tell apart.
#[derive(Debug)]
struct Goods {
    commodity_code: &'static str,
    gtin: Option<&'static str>,
    unit_price_fen: u64,
    quantity: u32,
    insurance_fen: u64,
    supervision_mode: &'static str,
    consumption_rate_bp: u32,
    vat_rate_bp: u32,
}

const GOODS: [Goods; 4] = [
    // The demo's parcel: two bottles of skin care.
    Goods {
        commodity_code: "3304990099",
        gtin: Some("6901234567892"),
        unit_price_fen: 50_000,
        quantity: 2,
        insurance_fen: 0,
        supervision_mode: "9610",
        consumption_rate_bp: 0,
        vat_rate_bp: 1300,
    },
    // Infant formula from a bonded warehouse.
    Goods {
        commodity_code: "0402210000",
        gtin: None,
        unit_price_fen: 32_800,
        quantity: 3,
        insurance_fen: 300,
        supervision_mode: "1210",
        consumption_rate_bp: 0,
        vat_rate_bp: 900,
    },
    // Leather shoes.
    Goods {
        commodity_code: "6403990090",
        gtin: None,
        unit_price_fen: 89_900,
        quantity: 1,
        insurance_fen: 500,
        supervision_mode: "9610",
        consumption_rate_bp: 0,
        vat_rate_bp: 1300,
    },
    // A watch, with consumption tax.
    Goods {
        commodity_code: "9102120000",
        gtin: None,
        unit_price_fen: 260_000,
        quantity: 1,
        insurance_fen: 1_000,
        supervision_mode: "1210",
        consumption_rate_bp: 2000,
        vat_rate_bp: 1300,
    },
];

/// The money of an order for `goods`: goods value, freight, insurance, tax, discount,
/// actual paid (R5 and TAX-TOTAL hold: within the limits, 70 % of VAT and consumption
/// tax on the dutiable value).
fn money(goods: &Goods) -> (u64, u64, u64, u64, u64, u64) {
    let value = goods.unit_price_fen * u64::from(goods.quantity);
    let (freight, discount) = (1_000, 500);
    let tax = cbec_chaincode::customs::tax_due_fen(
        value + freight + goods.insurance_fen,
        0,
        goods.consumption_rate_bp,
        goods.vat_rate_bp,
        70,
        true,
    );
    (
        value,
        freight,
        goods.insurance_fen,
        tax,
        discount,
        value + freight + tax - discount,
    )
}

/// The call of a parcel's step: chaincode, method and arguments; `identity` is the
/// lane's identity service (its agent), which attests the buyer on the declaration list.
fn call(
    step: Step,
    p: &Parcel,
    stamp: u64,
    lane: usize,
    codes: &[String; 5],
    identity: &KeyPair,
) -> (&'static str, &'static str, Value) {
    let goods_id = parcel_id(stamp, lane, p.id);
    let order_no = format!("O{stamp}-{lane}-{}", p.id);
    let waybill = format!("W{stamp}{lane:02}{:08}", p.id);
    let buyer = tag("buyer", &goods_id);
    let goods = &GOODS[p.goods];
    let (value, freight, insurance, tax, discount, paid) = money(goods);
    let mut line = json!({"commodity_code": goods.commodity_code, "quantity": goods.quantity,
                          "unit_price_fen": goods.unit_price_fen});
    if let Some(gtin) = goods.gtin {
        line["gtin"] = json!(gtin);
    }
    let [platform, seller, payment, logistics, agent] = codes;
    let (name, phone, address) = (
        tag("name", &goods_id),
        tag("phone", &goods_id),
        tag("address", &goods_id),
    );
    let event = |kind: &str, attributes: Value| {
        let mut args = json!({"goods_id": goods_id, "kind": kind, "attributes": attributes});
        if let Some(prev) = &p.prev {
            args["prev"] = json!(prev);
        }
        ("goods", "record", args)
    };
    match step {
        // Each event hands the parcel to whoever records the next one (custody).
        Step::Ordered => event(
            "ordered",
            json!({"order_no": order_no, "handover_to": payment}),
        ),
        Step::Order => (
            "customs",
            "submit_order",
            json!({
                "order_no": order_no, "ebp_code": platform, "ebc_code": seller,
                "goods_value_fen": value, "freight_fen": freight, "insurance_fen": insurance,
                "tax_total_fen": tax, "discount_fen": discount, "actual_paid_fen": paid,
                "pay_code": payment,
                "pay_transaction_id": format!("PAY-{order_no}"), "logistics_code": logistics,
                "agent_code": agent, "buyer_id_type": "1",
                "buyer_tag": buyer, "consignee_name_tag": name, "consignee_phone_tag": phone,
                "consignee_address_tag": address,
                "lines": [line]}),
        ),
        Step::Payment => (
            "customs",
            "submit_payment",
            json!({"order_no": order_no, "ebp_code": platform, "pay_code": payment,
                   "pay_transaction_id": format!("PAY-{order_no}"), "amount_paid_fen": paid,
                   "payer_tag": buyer}),
        ),
        Step::Paid => event(
            "paid",
            json!({"order_no": order_no, "handover_to": logistics}),
        ),
        Step::Waybill => (
            "customs",
            "submit_waybill",
            json!({"logistics_code": logistics, "logistics_no": waybill, "ebp_code": platform,
                   "order_no": order_no,
                   "consignee_name_tag": name, "consignee_phone_tag": phone,
                   "consignee_address_tag": address}),
        ),
        Step::Shipped => event(
            "shipped",
            json!({"logistics_no": waybill, "handover_to": agent}),
        ),
        Step::List => (
            "customs",
            "submit_list",
            json!({"order_no": order_no, "ebp_code": platform, "ebc_code": seller,
                   "logistics_code": logistics, "logistics_no": waybill, "buyer_id_type": "1",
                   "buyer_tag": buyer, "supervision_mode": goods.supervision_mode,
                   "vat_rate_bp": goods.vat_rate_bp,
                   "consumption_rate_bp": goods.consumption_rate_bp, "tariff_rate_bp": 0,
                   "buyer_attestation": attestation(identity, buyer.clone())}),
        ),
        Step::Declared => event(
            "declared",
            json!({"order_no": order_no, "handover_to": logistics}),
        ),
        Step::Clear => (
            "customs",
            "clear",
            json!({"ebp_code": platform, "order_no": order_no}),
        ),
        Step::Cleared => event("cleared", json!({"order_no": order_no})),
        Step::Delivered => event("delivered", json!({})),
    }
}

/// The goods event hash a committed `record` reported.
fn event_hash(result: &Value) -> Option<String> {
    result["outcome"]["events"]
        .as_array()?
        .iter()
        .flat_map(|e| e["attributes"].as_array().into_iter().flatten())
        .find(|a| a["key"] == "event_hash")
        .and_then(|a| a["value"].as_str())
        .map(String::from)
}

/// Each good's event hash a committed split (or other goods call) reported.
fn event_hashes(result: &Value) -> HashMap<String, String> {
    let value = |attributes: &[Value], key: &str| {
        attributes
            .iter()
            .find(|a| a["key"] == key)
            .and_then(|a| a["value"].as_str())
            .map(String::from)
    };
    result["outcome"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let attributes = e["attributes"].as_array()?;
            Some((
                value(attributes, "goods_id")?,
                value(attributes, "event_hash")?,
            ))
        })
        .collect()
}

/// A transaction customs is asked to sign for a lane, in the order asked.
pub struct CustomsJob {
    chaincode: &'static str,
    method: &'static str,
    args: Value,
    reply: mpsc::Sender<Hash>,
    route: Route,
}

/// What a lane and the customs thread share with the run.
pub struct Context {
    pub shared: Arc<Shared>,
    pub chain_id: Hash,
    pub stamp: u64,
    pub start: Instant,
    pub end: Instant,
    /// Parcels cleared inside the window.
    pub cleared: Arc<std::sync::atomic::AtomicU64>,
}

/// Sends `txs` until each is admitted (or a while after the window ends), keeping their
/// order.
fn send_all(
    http: &reqwest::blocking::Client,
    node: &str,
    ctx: &Context,
    mut txs: Vec<Transaction>,
) {
    // Past the window, what is signed is still delivered (for a while): a nonce signed
    // and never sent would leave the signer's later transactions (the next ones after
    // a refusal, admitted already) waiting behind a gap for good, and customs' key is
    // the devnet's own, used again after the bench.
    let deadline = ctx.end + SIGNED_GRACE;
    while !txs.is_empty() && Instant::now() < deadline && !ctx.shared.stop.load(Ordering::Relaxed) {
        record_sends(
            &mut ctx.shared.sent_at.lock().expect("lock"),
            txs.iter().map(|t| t.hash(ctx.shared.suite)),
            0,
            None,
            Instant::now(),
        );
        match post_batch(http, node, &txs) {
            Ok(admitted) => {
                let ok = admitted.iter().filter(|a| **a).count();
                ctx.shared.submitted.fetch_add(ok as u64, Ordering::Relaxed);
                let Some(first) = admitted.iter().position(|a| !*a) else {
                    return;
                };
                ctx.shared
                    .refused
                    .fetch_add((txs.len() - ok) as u64, Ordering::Relaxed);
                txs.drain(..first);
            }
            Err(e) => eprintln!("\nclient: {e:#}"),
        }
        std::thread::sleep(PAUSE_MIN);
    }
}

/// How long after the window transactions already signed are still sent.
const SIGNED_GRACE: Duration = Duration::from_secs(10);

/// Customs' thread: signs what lanes ask for with consecutive nonces and sends them in
/// that order.
pub fn run_customs(
    key: KeyPair,
    first_nonce: u64,
    node: String,
    ctx: Arc<Context>,
    jobs: mpsc::Receiver<CustomsJob>,
) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut nonce = first_nonce;
    while Instant::now() < ctx.end && !ctx.shared.stop.load(Ordering::Relaxed) {
        let Ok(first) = jobs.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(511));
        let mut txs = Vec::with_capacity(batch.len());
        for job in batch {
            let tx = match sign_call(
                &key,
                ctx.chain_id,
                nonce,
                job.chaincode,
                job.method,
                job.args,
            ) {
                Ok(tx) => tx,
                Err(e) => {
                    eprintln!("\ncustoms: {e:#}");
                    continue;
                }
            };
            nonce += 1;
            let hash = tx.hash(ctx.shared.suite);
            ctx.shared
                .routes
                .lock()
                .expect("lock")
                .insert(hash, job.route);
            let _ = job.reply.send(hash);
            txs.push(tx);
        }
        send_all(&http, &node, &ctx, txs);
    }
}

/// One lane: splits lots into parcels and keeps `in_flight` parcels going through
/// their eleven steps.
#[allow(clippy::too_many_arguments)]
pub fn run_lane(
    lane: usize,
    firms: Firms,
    nonces: [u64; 5],
    in_flight: usize,
    lot_parcels: u64,
    node: String,
    ctx: Arc<Context>,
    customs: mpsc::Sender<CustomsJob>,
) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let keys = [
        &firms.platform,
        &firms.seller,
        &firms.payment,
        &firms.logistics,
        &firms.agent,
    ];
    let mut nonces = nonces;
    let (done_tx, done) = mpsc::channel::<(Hash, Value)>();
    // Slots of parcels in flight (empty until a split lot fills them), and the
    // parcels split off and not started yet.
    let mut parcels: Vec<Option<Parcel>> = (0..in_flight).map(|_| None).collect();
    let mut ready: std::collections::VecDeque<Parcel> = std::collections::VecDeque::new();
    let mut lot = Lot::new(0, lot_parcels);
    let mut by_tx: HashMap<Hash, usize> = HashMap::new();
    let mut rejections_shown = 0;
    let mut rejected = |what: String, result: &Value| {
        if rejections_shown < 3 {
            rejections_shown += 1;
            eprintln!(
                "\nlane {lane}: {what} rejected: {} {}",
                result["outcome"]["rule"], result["outcome"]["message"]
            );
        }
    };
    // Signs a call of one of the lane's firms and routes its result here.
    let mut sign = |f: usize, (chaincode, method, args): (&str, &str, Value)| {
        let tx = sign_call(keys[f], ctx.chain_id, nonces[f], chaincode, method, args)
            .map_err(|e| eprintln!("\nlane {lane}: {e:#}"))
            .ok()?;
        nonces[f] += 1;
        let hash = tx.hash(ctx.shared.suite);
        ctx.shared
            .routes
            .lock()
            .expect("lock")
            .insert(hash, done_tx.clone());
        Some((hash, tx))
    };
    while Instant::now() < ctx.end && !ctx.shared.stop.load(Ordering::Relaxed) {
        let mut txs = Vec::new();
        // The next lot's step, while fewer parcels wait to start than are in flight.
        if lot.waiting.is_none() && (lot.prev.is_some() || ready.len() < in_flight) {
            let Some((hash, tx)) = sign(1, lot.call(ctx.stamp, lane)) else {
                return;
            };
            lot.waiting = Some(hash);
            txs.push(tx);
        }
        // Every empty slot takes a parcel split off; every parcel not waiting for a
        // commit sends its next step.
        for (i, slot) in parcels.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = ready.pop_front();
            }
            let Some(p) = slot.as_mut().filter(|p| p.waiting.is_none()) else {
                continue;
            };
            let step = STEPS[p.step];
            let call = call(step, p, ctx.stamp, lane, &firms.codes, &firms.agent);
            let hash = match who(step) {
                Who::Firm(f) => {
                    let Some((hash, tx)) = sign(f, call) else {
                        return;
                    };
                    txs.push(tx);
                    hash
                }
                Who::Customs => {
                    let (chaincode, method, args) = call;
                    let (reply, hash) = mpsc::channel();
                    let job = CustomsJob {
                        chaincode,
                        method,
                        args,
                        reply,
                        route: done_tx.clone(),
                    };
                    if customs.send(job).is_err() {
                        return;
                    }
                    match hash.recv() {
                        Ok(hash) => hash,
                        Err(_) => return,
                    }
                }
            };
            p.waiting = Some(hash);
            by_tx.insert(hash, i);
        }
        send_all(&http, &node, &ctx, txs);
        // Then take the commits that arrived (waiting a little for the first).
        let first = done.recv_timeout(Duration::from_millis(20));
        for (hash, result) in first.into_iter().chain(done.try_iter()) {
            let accepted = result["outcome"]["status"] == "accepted";
            if lot.waiting == Some(hash) {
                lot.waiting = None;
                match (&lot.prev, accepted) {
                    (_, false) => {
                        rejected(format!("lot {}", lot.no), &result);
                        lot = Lot::new(lot.no + 1, lot_parcels);
                    }
                    (None, true) => lot.prev = event_hash(&result),
                    (Some(_), true) => {
                        let made = event_hashes(&result);
                        for id in lot.parcels() {
                            ready.push_back(Parcel {
                                id,
                                goods: lot.goods(),
                                step: 0,
                                prev: made.get(&parcel_id(ctx.stamp, lane, id)).cloned(),
                                waiting: None,
                            });
                        }
                        lot = Lot::new(lot.no + 1, lot_parcels);
                    }
                }
                continue;
            }
            let Some(i) = by_tx.remove(&hash) else {
                continue;
            };
            let Some(p) = parcels[i].as_mut() else {
                continue;
            };
            p.waiting = None;
            let step = STEPS[p.step];
            if !accepted {
                rejected(format!("parcel {} step {step:?}", p.id), &result);
                parcels[i] = None;
                continue;
            }
            if let Some(h) = event_hash(&result) {
                p.prev = Some(h);
            }
            if step == Step::Clear {
                let now = Instant::now();
                if now >= ctx.start && now <= ctx.end {
                    ctx.cleared.fetch_add(1, Ordering::Relaxed);
                }
            }
            p.step += 1;
            if p.step == STEPS.len() {
                parcels[i] = None;
            }
        }
    }
}

/// Files one lane's five enterprises (commerce approves) and returns them.
pub fn file_firms(
    client: &Client,
    commerce: &KeyPair,
    lane: usize,
    stamp: u64,
    suite: cbec_ledger::Suite,
) -> anyhow::Result<Firms> {
    let mut keys = Vec::new();
    let mut codes = Vec::new();
    for (f, roles) in ROLES.iter().enumerate() {
        let n = (stamp * 64 + (lane * 5 + f) as u64) % 10_000_000;
        let seed = suite.tagged(
            "cbec:bench-firm",
            &cbec_ledger::codec::encode(&(stamp, lane as u64, f as u64)),
        );
        let key = KeyPair::derive(suite.scheme(), &seed.0);
        let uscc = cbec_chaincode::codes::uscc_with_check(&format!("91140200MB{n:07}"))
            .map_err(|e| anyhow::anyhow!("bench enterprise id: {e}"))?;
        let code = format!("14039{:05}", n % 100_000);
        let answer = crate::commands::tx::submit(
            client,
            commerce,
            "enterprise",
            "approve_filing",
            json!({"uscc": uscc, "name": format!("bench {} {lane}", roles[0]), "roles": roles,
                   "keys": [key.public()], "customs_code": code}),
            true,
            None,
        )?;
        if answer["result"]["outcome"]["status"] != "accepted" {
            anyhow::bail!("filing bench firm {lane}/{f} failed: {}", answer["result"]);
        }
        keys.push(key);
        codes.push(code);
    }
    let mut keys = keys.into_iter();
    let mut take = || keys.next().expect("five keys");
    Ok(Firms {
        platform: take(),
        seller: take(),
        payment: take(),
        logistics: take(),
        agent: take(),
        codes: codes
            .try_into()
            .map_err(|_| anyhow::anyhow!("five codes"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_sender_and_arguments_the_chaincode_takes() {
        let p = Parcel {
            id: 1,
            goods: 0,
            step: 0,
            prev: Some(Hash([3; 32]).to_hex()),
            waiting: None,
        };
        let codes = [
            "4403960001",
            "1402960002",
            "1100960003",
            "1402960004",
            "1402960005",
        ]
        .map(String::from);
        for step in STEPS {
            let identity = KeyPair::from_seed(&[5; 32]);
            let (chaincode, method, args) = call(step, &p, 7, 0, &codes, &identity);
            cbec_chaincode::args_from_json(chaincode, method, args)
                .unwrap_or_else(|e| panic!("{step:?}: {e}"));
            let _ = who(step);
        }
        assert_eq!(STEPS.iter().filter(|s| who(**s) == Who::Customs).count(), 2);
        // A lot's calls: produced with its quantity, then split into its parcels.
        let mut lot = Lot::new(3, 100);
        for _ in 0..2 {
            let (chaincode, method, args) = lot.call(7, 0);
            cbec_chaincode::args_from_json(chaincode, method, args.clone())
                .unwrap_or_else(|e| panic!("lot {method}: {e}"));
            lot.prev = Some(Hash([4; 32]).to_hex());
            if method == "split" {
                assert_eq!(args["children"].as_array().map(Vec::len), Some(100));
                assert_eq!(args["children"][0]["goods_id"], "P7-0-300");
            } else {
                assert_eq!(args["attributes"]["quantity"], "100");
            }
        }
    }
}
