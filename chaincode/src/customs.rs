//! Customs [DOMAIN.md 4, 5]: the order, payment, waybill and declaration list of a
//! retail import; clearance that compares them (R1-R10), enforces the per-transaction
//! and annual limits and computes the tax in exact integer arithmetic; returns; risk
//! grades; export declarations (read by the tax chaincode's EXP-1).
//!
//! Choices where DOMAIN.md is open:
//! - Personal data is only ever a keyed tag `v<N>:<64 hex>`; R6 and R7 compare tags.
//!   R10 checks the buyer id type and an identity service's attestation for the buyer
//!   tag on chain ([`crate::identity`]); the number itself never reaches the ledger: the
//!   service checks it with [`crate::codes::resident_id`] before it attests.
//! - The order value for the limits is the goods value (before freight and tax).
//! - The tax is computed on the dutiable value (完税价格): goods value plus freight plus
//!   insurance. The order's declared tax total must equal it: otherwise `TAX-TOTAL`
//!   (a rule id added here; R5 checks the order's sum, not the tax it declares).
//! - The order names its payment enterprise (`pay_code`) and the payment's transaction
//!   id, as CEB311 pairs with CEB411; the payment carries both, and clearance refuses a
//!   pair that differs with `PAY-REF` (a rule id added here).
//! - Who may file what [DOMAIN.md 4]: the order names its payment enterprise, logistics
//!   enterprise and declaration agent (customs codes); the payment, waybill and list of
//!   an order are taken only from those, and only after the order (`ROLE` otherwise,
//!   naming who may). The waybill names its order's platform (CEB511 ebpCode) so the
//!   order can be found.
//! - Missing documents at clearance fail the rule that compares them: a missing payment
//!   or list is `R1`, a missing waybill `R3`.
//! - A supervision mode that is not a retail import mode (9610, 1210, 1239) fails
//!   `MODE` (DOMAIN.md has no R8).
//! - Enterprises with no risk grade are treated as low risk (released automatically).

use bincode::{Decode, Encode};
use cbec_ledger::Event;
use serde::{Deserialize, Serialize};

use crate::context::{Context, Role};
use crate::enterprise::active_filing_by_customs_code;
use crate::{check_code, codes, decode_args, event, methods, no_method, Chaincode, RuleError};

pub const IMPORT_MODES: &[&str] = &["9610", "1210", "1239"];
pub const EXPORT_MODES: &[&str] = &["9610", "1210", "9710", "9810"];

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct OrderLine {
    pub commodity_code: String,
    #[serde(default)]
    pub gtin: Option<String>,
    pub quantity: u32,
    pub unit_price_fen: u64,
}

/// O: the order, from the platform (CEB311).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Order {
    pub order_no: String,
    pub ebp_code: String,
    pub ebc_code: String,
    pub goods_value_fen: u64,
    pub freight_fen: u64,
    /// Insurance on the goods (CEB311's insuredFee); part of the dutiable value.
    #[serde(default)]
    pub insurance_fen: u64,
    pub tax_total_fen: u64,
    pub discount_fen: u64,
    pub actual_paid_fen: u64,
    /// The payment enterprise's customs registration code (CEB311 payCode).
    pub pay_code: String,
    /// The payment's transaction id at that enterprise (CEB311 payTransactionId).
    pub pay_transaction_id: String,
    /// The logistics enterprise that may file the waybill (customs code).
    pub logistics_code: String,
    /// The declaration agent that may file the declaration list (customs code).
    pub agent_code: String,
    /// `1` is a resident identity card.
    pub buyer_id_type: String,
    pub buyer_tag: String,
    pub consignee_name_tag: String,
    pub consignee_phone_tag: String,
    pub consignee_address_tag: String,
    pub lines: Vec<OrderLine>,
}

/// P: the payment, from the payment enterprise (CEB411).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Payment {
    pub order_no: String,
    pub ebp_code: String,
    pub pay_code: String,
    /// The transaction id at the payment enterprise (CEB411 payTransactionId).
    pub pay_transaction_id: String,
    pub amount_paid_fen: u64,
    pub payer_tag: String,
}

/// L: the waybill, from the logistics enterprise (CEB511).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Waybill {
    pub logistics_code: String,
    pub logistics_no: String,
    /// The platform whose order this is (CEB511 ebpCode).
    pub ebp_code: String,
    pub order_no: String,
    pub consignee_name_tag: String,
    pub consignee_phone_tag: String,
    pub consignee_address_tag: String,
    /// Block time it was filed (set by the chaincode).
    #[serde(default)]
    pub filed_ms: u64,
}

/// I: the declaration list, from the declaration agent (CEB621).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct DeclarationList {
    pub order_no: String,
    pub ebp_code: String,
    pub ebc_code: String,
    pub logistics_code: String,
    pub logistics_no: String,
    pub buyer_id_type: String,
    pub buyer_tag: String,
    pub supervision_mode: String,
    /// Statutory rates in basis points (1/10000).
    pub vat_rate_bp: u32,
    pub consumption_rate_bp: u32,
    pub tariff_rate_bp: u32,
    /// An identity service's attestation for `buyer_tag` (R10).
    pub buyer_attestation: crate::identity::Attestation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearanceStatus {
    Released,
    Held,
    Rejected,
    Returned,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Clearance {
    pub status: ClearanceStatus,
    pub buyer_tag: String,
    pub year: i64,
    pub value_fen: u64,
    pub tax_due_fen: u64,
    pub preferential: bool,
    pub decided_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskGrade {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct OrderRef {
    pub ebp_code: String,
    pub order_no: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SetRisk {
    pub customs_code: String,
    pub grade: RiskGrade,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ExportDeclaration {
    pub declaration_no: String,
    pub seller_uscc: String,
    pub commodity_code: String,
    pub supervision_mode: String,
}

methods! {
    "submit_order" => Order,
    "submit_payment" => Payment,
    "submit_waybill" => Waybill,
    "submit_list" => DeclarationList,
    "clear" => OrderRef,
    "release" => OrderRef,
    "reject" => OrderRef,
    "apply_return" => OrderRef,
    "set_risk" => SetRisk,
    "record_export_declaration" => ExportDeclaration,
}

fn order_key(ebp: &str, no: &str) -> String {
    format!("customs/order/{ebp}/{no}")
}
fn payment_key(ebp: &str, no: &str) -> String {
    format!("customs/payment/{ebp}/{no}")
}
fn waybill_key(code: &str, no: &str) -> String {
    format!("customs/waybill/{code}/{no}")
}
fn list_key(ebp: &str, no: &str) -> String {
    format!("customs/list/{ebp}/{no}")
}
fn clearance_key(ebp: &str, no: &str) -> String {
    format!("customs/clearance/{ebp}/{no}")
}
fn annual_key(buyer: &str, year: i64) -> String {
    format!("customs/annual/{buyer}/{year}")
}
fn risk_key(code: &str) -> String {
    format!("customs/risk/{code}")
}
pub fn export_declaration_key(no: &str) -> String {
    format!("customs/export/{no}")
}

#[derive(Debug, Clone, Copy)]
pub struct Customs;

impl Chaincode for Customs {
    fn id(&self) -> &'static str {
        "customs"
    }
    fn version(&self) -> u32 {
        1
    }
    fn execute(
        &self,
        ctx: &mut Context<'_, '_>,
        method: &str,
        args: &[u8],
    ) -> Result<Vec<Event>, RuleError> {
        match method {
            "submit_order" => submit_order(ctx, decode_args(args)?),
            "submit_payment" => submit_payment(ctx, decode_args(args)?),
            "submit_waybill" => submit_waybill(ctx, decode_args(args)?),
            "submit_list" => submit_list(ctx, decode_args(args)?),
            "clear" => clear(ctx, decode_args(args)?),
            "release" => decide_held(ctx, decode_args(args)?, ClearanceStatus::Released),
            "reject" => decide_held(ctx, decode_args(args)?, ClearanceStatus::Rejected),
            "apply_return" => apply_return(ctx, decode_args(args)?),
            "set_risk" => set_risk(ctx, decode_args(args)?),
            "record_export_declaration" => record_export(ctx, decode_args(args)?),
            other => Err(no_method(self.id(), other, METHODS)),
        }
    }
}

/// A keyed tag: `v<version>:<64 lower-case hex>`.
pub fn check_tag(what: &str, tag: &str) -> Result<(), RuleError> {
    let ok = tag.split_once(':').is_some_and(|(version, mac)| {
        version.len() >= 2
            && version.starts_with('v')
            && version[1..].bytes().all(|b| b.is_ascii_digit())
            && mac.len() == 64
            && mac
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(RuleError::new(
            "NON-CANONICAL",
            format!("{what} must be a keyed tag like v1:<64 hex>, never personal data"),
        ))
    }
}

fn check_number(what: &str, value: &str, max: usize) -> Result<(), RuleError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RuleError::new(
            "NON-CANONICAL",
            format!("{what} `{value}` must be 1-{max} characters of A-Z, 0-9, - and _"),
        ))
    }
}

fn require_own_code(caller_code: &str, code: &str, what: &str) -> Result<(), RuleError> {
    if caller_code == code {
        Ok(())
    } else {
        Err(RuleError::new(
            "ROLE",
            format!("{what} {code} is not the submitter's customs code {caller_code}"),
        ))
    }
}

fn insert_new<T: bincode::Encode>(
    ctx: &mut Context<'_, '_>,
    key: &str,
    what: &str,
    value: &T,
) -> Result<(), RuleError> {
    if ctx.get_raw(key.as_bytes())?.is_some() {
        return Err(RuleError::new(
            "DUPLICATE",
            format!("{what} exists already"),
        ));
    }
    ctx.put(key, value)
}

fn submit_order(ctx: &mut Context<'_, '_>, order: Order) -> Result<Vec<Event>, RuleError> {
    let (_, code) = ctx.require_role(Role::Platform)?;
    require_own_code(&code, &order.ebp_code, "ebpCode")?;
    check_number("order number", &order.order_no, 60)?;
    check_code("ARGS", "ebcCode", &order.ebc_code, codes::customs_code)?;
    check_code("ARGS", "payCode", &order.pay_code, codes::customs_code)?;
    check_code(
        "ARGS",
        "logisticsCode",
        &order.logistics_code,
        codes::customs_code,
    )?;
    check_code("ARGS", "agentCode", &order.agent_code, codes::customs_code)?;
    check_number("payment transaction id", &order.pay_transaction_id, 60)?;
    for (what, tag) in [
        ("buyer", &order.buyer_tag),
        ("consignee name", &order.consignee_name_tag),
        ("consignee phone", &order.consignee_phone_tag),
        ("consignee address", &order.consignee_address_tag),
    ] {
        check_tag(what, tag)?;
    }
    if order.lines.is_empty() || order.lines.len() > 100 {
        return Err(RuleError::new("ARGS", "an order has 1-100 lines"));
    }
    for line in &order.lines {
        check_code(
            "HS-CODE",
            "commodity code",
            &line.commodity_code,
            codes::commodity_code,
        )?;
        if let Some(gtin) = &line.gtin {
            check_code("GTIN", "GTIN", gtin, codes::gtin13)?;
        }
        if line.quantity == 0 {
            return Err(RuleError::new("ARGS", "line quantity must be positive"));
        }
    }
    // R1: the order number is unique per platform.
    let key = order_key(&order.ebp_code, &order.order_no);
    if ctx.get_raw(key.as_bytes())?.is_some() {
        return Err(RuleError::new(
            "R1",
            format!(
                "order {} exists already for {}",
                order.order_no, order.ebp_code
            ),
        ));
    }
    ctx.put(&key, &order)?;
    Ok(vec![event(
        "order",
        &[("ebp", order.ebp_code), ("order_no", order.order_no)],
    )])
}

/// Only the enterprise an order names (`named`, a customs code) may file that order's
/// next document, and only once the order exists [DOMAIN.md 4]: `ROLE` otherwise,
/// naming who may.
fn require_named(
    ctx: &Context<'_, '_>,
    ebp_code: &str,
    order_no: &str,
    what: &str,
    named: impl Fn(&Order) -> &String,
    caller: &str,
) -> Result<(), RuleError> {
    let order: Order = ctx.get(&order_key(ebp_code, order_no))?.ok_or_else(|| {
        RuleError::new(
            "ROLE",
            format!(
                "no order {order_no} from {ebp_code} names a {what} yet: the order comes first"
            ),
        )
    })?;
    let named = named(&order);
    if named == caller {
        Ok(())
    } else {
        Err(RuleError::new(
            "ROLE",
            format!("order {order_no} names {what} {named}; {caller} may not file for it"),
        ))
    }
}

fn submit_payment(ctx: &mut Context<'_, '_>, payment: Payment) -> Result<Vec<Event>, RuleError> {
    let (_, code) = ctx.require_role(Role::Payment)?;
    require_own_code(&code, &payment.pay_code, "payCode")?;
    check_number("order number", &payment.order_no, 60)?;
    check_number("payment transaction id", &payment.pay_transaction_id, 60)?;
    check_tag("payer", &payment.payer_tag)?;
    require_named(
        ctx,
        &payment.ebp_code,
        &payment.order_no,
        "payment enterprise",
        |o| &o.pay_code,
        &code,
    )?;
    let key = payment_key(&payment.ebp_code, &payment.order_no);
    insert_new(ctx, &key, "payment for this order", &payment)?;
    Ok(vec![event(
        "payment",
        &[("ebp", payment.ebp_code), ("order_no", payment.order_no)],
    )])
}

fn submit_waybill(
    ctx: &mut Context<'_, '_>,
    mut waybill: Waybill,
) -> Result<Vec<Event>, RuleError> {
    let (_, code) = ctx.require_role(Role::Logistics)?;
    require_own_code(&code, &waybill.logistics_code, "logisticsCode")?;
    check_number("waybill number", &waybill.logistics_no, 60)?;
    check_number("order number", &waybill.order_no, 60)?;
    for (what, tag) in [
        ("consignee name", &waybill.consignee_name_tag),
        ("consignee phone", &waybill.consignee_phone_tag),
        ("consignee address", &waybill.consignee_address_tag),
    ] {
        check_tag(what, tag)?;
    }
    require_named(
        ctx,
        &waybill.ebp_code,
        &waybill.order_no,
        "logistics enterprise",
        |o| &o.logistics_code,
        &code,
    )?;
    // R3: a waybill number is not reused within the window (PARAM, months of 30 days).
    let key = waybill_key(&waybill.logistics_code, &waybill.logistics_no);
    if let Some(previous) = ctx.get::<Waybill>(&key)? {
        let window_ms = ctx.param_int("waybill_reuse_months")?.max(0) as u64 * 30 * 86_400_000;
        if ctx.block.time_ms < previous.filed_ms.saturating_add(window_ms) {
            return Err(RuleError::new(
                "R3",
                format!(
                    "waybill {} was used for order {} within the reuse window",
                    waybill.logistics_no, previous.order_no
                ),
            ));
        }
    }
    waybill.filed_ms = ctx.block.time_ms;
    ctx.put(&key, &waybill)?;
    Ok(vec![event(
        "waybill",
        &[
            ("logistics", waybill.logistics_code),
            ("logistics_no", waybill.logistics_no),
        ],
    )])
}

fn submit_list(ctx: &mut Context<'_, '_>, list: DeclarationList) -> Result<Vec<Event>, RuleError> {
    let (_, code) = ctx.require_role(Role::Agent)?;
    check_number("order number", &list.order_no, 60)?;
    check_tag("buyer", &list.buyer_tag)?;
    if !IMPORT_MODES.contains(&list.supervision_mode.as_str()) {
        return Err(RuleError::new(
            "MODE",
            format!(
                "supervision mode {} is not a retail import mode ({})",
                list.supervision_mode,
                IMPORT_MODES.join(", ")
            ),
        ));
    }
    if list.vat_rate_bp >= 10_000
        || list.consumption_rate_bp >= 10_000
        || list.tariff_rate_bp >= 10_000
    {
        return Err(RuleError::new("ARGS", "rates are basis points below 10000"));
    }
    require_named(
        ctx,
        &list.ebp_code,
        &list.order_no,
        "declaration agent",
        |o| &o.agent_code,
        &code,
    )?;
    let key = list_key(&list.ebp_code, &list.order_no);
    insert_new(ctx, &key, "declaration list for this order", &list)?;
    Ok(vec![event(
        "declaration_list",
        &[("ebp", list.ebp_code), ("order_no", list.order_no)],
    )])
}

fn fail(rule: &str, message: impl Into<String>) -> RuleError {
    RuleError::new(rule, message)
}

/// Tax due in fen, rounded half-up, in exact integer arithmetic.
///
/// With V the goods value, t, c, v the tariff, consumption and VAT rates:
/// tariff = V·t; CT = (V + tariff)·c/(1−c); VAT = (V + tariff + CT)·v
/// = (V + tariff)·v/(1−c). Within the limits the tariff is 0 and `percent` (70) of
/// CT + VAT is due: due = percent/100 · V·(c+v)/(1−c).
pub fn tax_due_fen(
    value_fen: u64,
    tariff_bp: u32,
    consumption_bp: u32,
    vat_bp: u32,
    preferential_percent: u64,
    preferential: bool,
) -> u64 {
    let v = u128::from(value_fen);
    let (t, c, vat) = (
        u128::from(tariff_bp),
        u128::from(consumption_bp),
        u128::from(vat_bp),
    );
    let (num, den) = if preferential {
        // percent/100 · V·(c+v)/(10000−c)
        (
            u128::from(preferential_percent) * v * (c + vat),
            100 * (10_000 - c),
        )
    } else {
        // tariff + (V + tariff)·(c+v)/(1−c), tariff = V·t/10000.
        // = V·t/10000 + V·(10000+t)/10000·(c+v)/(10000−c)
        let den = 10_000 * (10_000 - c);
        (v * t * (10_000 - c) + v * (10_000 + t) * (c + vat), den)
    };
    ((2 * num + den) / (2 * den)) as u64
}

fn clear(ctx: &mut Context<'_, '_>, r: OrderRef) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("customs")?;
    let key = clearance_key(&r.ebp_code, &r.order_no);
    if ctx.get_raw(key.as_bytes())?.is_some() {
        return Err(RuleError::new(
            "DUPLICATE",
            format!("order {} was cleared already", r.order_no),
        ));
    }
    let o: Order = ctx
        .get(&order_key(&r.ebp_code, &r.order_no))?
        .ok_or_else(|| fail("R1", format!("no order {} from {}", r.order_no, r.ebp_code)))?;
    let p: Payment = ctx
        .get(&payment_key(&r.ebp_code, &r.order_no))?
        .ok_or_else(|| fail("R1", format!("no payment for order {}", r.order_no)))?;
    let i: DeclarationList = ctx
        .get(&list_key(&r.ebp_code, &r.order_no))?
        .ok_or_else(|| {
            fail(
                "R1",
                format!("no declaration list for order {}", r.order_no),
            )
        })?;
    // R1: O.orderNo = P.orderNo = I.orderNo.
    if !(o.order_no == p.order_no && p.order_no == i.order_no) {
        return Err(fail(
            "R1",
            "order numbers of order, payment and list differ",
        ));
    }
    // R2: O.ebpCode = P.ebpCode = I.ebpCode and O.ebcCode = I.ebcCode.
    if !(o.ebp_code == p.ebp_code && p.ebp_code == i.ebp_code) {
        return Err(fail(
            "R2",
            "ebpCode differs between order, payment and list",
        ));
    }
    if o.ebc_code != i.ebc_code {
        return Err(fail(
            "R2",
            format!(
                "ebcCode {} of the order differs from {} of the list",
                o.ebc_code, i.ebc_code
            ),
        ));
    }
    // R3: the list's waybill is the waybill.
    let l: Waybill = ctx
        .get(&waybill_key(&i.logistics_code, &i.logistics_no))?
        .ok_or_else(|| {
            fail(
                "R3",
                format!("no waybill {} of {}", i.logistics_no, i.logistics_code),
            )
        })?;
    if (l.logistics_code.as_str(), l.logistics_no.as_str())
        != (i.logistics_code.as_str(), i.logistics_no.as_str())
        || l.order_no != o.order_no
        || l.ebp_code != o.ebp_code
    {
        return Err(fail("R3", "the waybill does not belong to this order"));
    }
    // PAY-REF: the payment is the one the order names (CEB311/CEB411 pairing).
    if (&p.pay_code, &p.pay_transaction_id) != (&o.pay_code, &o.pay_transaction_id) {
        return Err(fail(
            "PAY-REF",
            format!(
                "the order names payment {} of {}; the payment filed is {} of {}",
                o.pay_transaction_id, o.pay_code, p.pay_transaction_id, p.pay_code
            ),
        ));
    }
    // R4: P.amountPaid = O.actualPaid.
    if p.amount_paid_fen != o.actual_paid_fen {
        return Err(fail(
            "R4",
            format!(
                "paid {} fen, order says {} fen",
                p.amount_paid_fen, o.actual_paid_fen
            ),
        ));
    }
    // R5: actualPaid = goodsValue + freight + taxTotal - discount (and the lines add up).
    let lines_total: u128 = o
        .lines
        .iter()
        .map(|l| u128::from(l.quantity) * u128::from(l.unit_price_fen))
        .sum();
    let expected =
        i128::from(o.goods_value_fen) + i128::from(o.freight_fen) + i128::from(o.tax_total_fen)
            - i128::from(o.discount_fen);
    if i128::from(o.actual_paid_fen) != expected || lines_total != u128::from(o.goods_value_fen) {
        return Err(fail(
            "R5",
            format!(
                "actualPaid {} fen != goods {} + freight {} + tax {} - discount {} (lines total {})",
                o.actual_paid_fen, o.goods_value_fen, o.freight_fen, o.tax_total_fen, o.discount_fen, lines_total
            ),
        ));
    }
    // R6: consignee name, telephone and address equal in O and L.
    if (
        &o.consignee_name_tag,
        &o.consignee_phone_tag,
        &o.consignee_address_tag,
    ) != (
        &l.consignee_name_tag,
        &l.consignee_phone_tag,
        &l.consignee_address_tag,
    ) {
        return Err(fail("R6", "consignee of the order and the waybill differ"));
    }
    // R7: buyer in O = payer in P = buyer in I.
    if !(o.buyer_tag == p.payer_tag && p.payer_tag == i.buyer_tag) {
        return Err(fail("R7", "buyer, payer and declared buyer differ"));
    }
    // R9: platform, seller, payment and logistics enterprises hold valid filings.
    for (what, code) in [
        ("platform", &o.ebp_code),
        ("seller", &o.ebc_code),
        ("payment enterprise", &p.pay_code),
        ("logistics enterprise", &l.logistics_code),
    ] {
        active_filing_by_customs_code(ctx, code)
            .map_err(|e| fail("R9", format!("{what} {code}: {e}")))?;
    }
    // R10: the buyer is identified by a resident identity card, and a filed identity
    // service's attestation, valid at block time, vouches for the buyer tag.
    if o.buyer_id_type != "1" || i.buyer_id_type != "1" {
        return Err(fail(
            "R10",
            "the buyer's id type must be 1 (resident identity card)",
        ));
    }
    crate::identity::check(ctx, &i.buyer_attestation, &i.buyer_tag)?;
    let (preferential, tax) = limits_and_tax(ctx, &o, &i)?;
    if tax != o.tax_total_fen {
        return Err(fail(
            "TAX-TOTAL",
            format!(
                "the order declares {} fen of tax; on the dutiable value {} fen (goods {} + freight {} + insurance {}) the tax due is {tax} fen",
                o.tax_total_fen,
                dutiable_value_fen(&o),
                o.goods_value_fen,
                o.freight_fen,
                o.insurance_fen
            ),
        ));
    }
    let grade: RiskGrade = ctx.get(&risk_key(&o.ebc_code))?.unwrap_or(RiskGrade::Low);
    let status = if grade == RiskGrade::Low {
        ClearanceStatus::Released
    } else {
        ClearanceStatus::Held
    };
    let year = ctx.year()?;
    let record = Clearance {
        status,
        buyer_tag: o.buyer_tag.clone(),
        year,
        value_fen: o.goods_value_fen,
        tax_due_fen: tax,
        preferential,
        decided_ms: ctx.block.time_ms,
    };
    ctx.put(&key, &record)?;
    Ok(vec![event(
        "clearance",
        &[
            ("order_no", r.order_no),
            ("status", format!("{status:?}").to_lowercase()),
            ("tax_due_fen", tax.to_string()),
            ("preferential", preferential.to_string()),
        ],
    )])
}

/// The dutiable value (完税价格): goods value plus freight plus insurance.
pub fn dutiable_value_fen(o: &Order) -> u64 {
    o.goods_value_fen
        .saturating_add(o.freight_fen)
        .saturating_add(o.insurance_fen)
}

/// LIMIT-TX and LIMIT-YEAR [DOMAIN.md 5]; counts the order toward the buyer's year. The
/// tax due is on the dutiable value; the limits count the goods value.
fn limits_and_tax(
    ctx: &mut Context<'_, '_>,
    o: &Order,
    i: &DeclarationList,
) -> Result<(bool, u64), RuleError> {
    let tx_limit = ctx.param_int("tx_limit_fen")?.max(0) as u64;
    let annual_limit = ctx.param_int("annual_limit_fen")?.max(0) as u64;
    let percent = ctx.param_int("preferential_tax_percent")?.max(0) as u64;
    let year = ctx.year()?;
    let key = annual_key(&o.buyer_tag, year);
    let used: u64 = ctx.get(&key)?.unwrap_or(0);
    let value = o.goods_value_fen;
    let single_item = o.lines.len() == 1 && o.lines[0].quantity == 1;
    let after = used.saturating_add(value);
    let preferential = if value > tx_limit {
        if !single_item {
            return Err(fail(
                "LIMIT-TX",
                format!("{value} fen exceeds the {tx_limit} fen limit per transaction"),
            ));
        }
        false // one indivisible item over the limit: full tax
    } else {
        true
    };
    if after > annual_limit {
        return Err(fail(
            "LIMIT-YEAR",
            format!("{used} + {value} fen would exceed the buyer's {annual_limit} fen for {year}; use general trade"),
        ));
    }
    ctx.put(&key, &after)?;
    let tax = tax_due_fen(
        dutiable_value_fen(o),
        if preferential { 0 } else { i.tariff_rate_bp },
        i.consumption_rate_bp,
        i.vat_rate_bp,
        percent,
        preferential,
    );
    Ok((preferential, tax))
}

fn decide_held(
    ctx: &mut Context<'_, '_>,
    r: OrderRef,
    to: ClearanceStatus,
) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("customs")?;
    let key = clearance_key(&r.ebp_code, &r.order_no);
    let mut record: Clearance = ctx.get(&key)?.ok_or_else(|| {
        RuleError::new("NOT-FOUND", format!("order {} was not cleared", r.order_no))
    })?;
    if record.status != ClearanceStatus::Held {
        return Err(RuleError::new(
            "STATUS",
            format!("order {} is {:?}, not held", r.order_no, record.status),
        ));
    }
    if to == ClearanceStatus::Rejected {
        // A rejected import does not count toward the buyer's year.
        let annual = annual_key(&record.buyer_tag, record.year);
        let used: u64 = ctx.get(&annual)?.unwrap_or(0);
        ctx.put(&annual, &used.saturating_sub(record.value_fen))?;
    }
    record.status = to;
    record.decided_ms = ctx.block.time_ms;
    ctx.put(&key, &record)?;
    Ok(vec![event(
        "clearance",
        &[
            ("order_no", r.order_no),
            ("status", format!("{to:?}").to_lowercase()),
        ],
    )])
}

fn apply_return(ctx: &mut Context<'_, '_>, r: OrderRef) -> Result<Vec<Event>, RuleError> {
    let (_, code) = ctx.require_role(Role::Platform)?;
    require_own_code(&code, &r.ebp_code, "ebpCode")?;
    let key = clearance_key(&r.ebp_code, &r.order_no);
    let mut record: Clearance = ctx.get(&key)?.ok_or_else(|| {
        RuleError::new("NOT-FOUND", format!("order {} was not cleared", r.order_no))
    })?;
    if record.status != ClearanceStatus::Released {
        return Err(RuleError::new(
            "STATUS",
            format!("order {} is {:?}, not released", r.order_no, record.status),
        ));
    }
    let window_ms = ctx.param_int("return_window_days")?.max(0) as u64 * 86_400_000;
    if ctx.block.time_ms > record.decided_ms.saturating_add(window_ms) {
        return Err(RuleError::new(
            "RETURN-WINDOW",
            "the return window after release has passed",
        ));
    }
    let annual = annual_key(&record.buyer_tag, record.year);
    let used: u64 = ctx.get(&annual)?.unwrap_or(0);
    ctx.put(&annual, &used.saturating_sub(record.value_fen))?;
    record.status = ClearanceStatus::Returned;
    ctx.put(&key, &record)?;
    Ok(vec![event(
        "returned",
        &[
            ("order_no", r.order_no),
            ("value_fen", record.value_fen.to_string()),
        ],
    )])
}

fn set_risk(ctx: &mut Context<'_, '_>, args: SetRisk) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("customs")?;
    check_code(
        "ARGS",
        "customs code",
        &args.customs_code,
        codes::customs_code,
    )?;
    ctx.put(&risk_key(&args.customs_code), &args.grade)?;
    Ok(vec![event(
        "risk_grade",
        &[
            ("customs_code", args.customs_code),
            ("grade", format!("{:?}", args.grade).to_lowercase()),
        ],
    )])
}

fn record_export(
    ctx: &mut Context<'_, '_>,
    args: ExportDeclaration,
) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("customs")?;
    check_number("declaration number", &args.declaration_no, 60)?;
    check_code("USCC", "USCC", &args.seller_uscc, codes::uscc)?;
    check_code(
        "HS-CODE",
        "commodity code",
        &args.commodity_code,
        codes::commodity_code,
    )?;
    if !EXPORT_MODES.contains(&args.supervision_mode.as_str()) {
        return Err(RuleError::new(
            "MODE",
            format!("{} is not an e-commerce export mode", args.supervision_mode),
        ));
    }
    let key = export_declaration_key(&args.declaration_no);
    insert_new(ctx, &key, "export declaration", &args)?;
    Ok(vec![event(
        "export_declaration",
        &[("declaration_no", args.declaration_no)],
    )])
}
