//! Tax [DOMAIN.md 7]: the export retail exemption EXP-1 and tax assessments.

use bincode::{Decode, Encode};
use cbec_ledger::Event;
use serde::{Deserialize, Serialize};

use crate::context::{Context, Role};
use crate::customs::{export_declaration_key, ExportDeclaration};
use crate::{check_code, codes, decode_args, event, methods, no_method, Chaincode, RuleError};

/// An export without a purchase invoice, claimed VAT/consumption-tax exempt.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ExportRecord {
    pub record_no: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub goods_name: String,
    pub unit: String,
    pub quantity: u64,
    pub unit_price_fen: u64,
    pub amount_fen: u64,
    pub commodity_code: String,
    /// The customs export declaration the goods left under.
    pub declaration_no: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Assessment {
    pub uscc: String,
    pub period: String,
    pub amount_fen: u64,
    pub note: String,
}

methods! {
    "claim_export_exemption" => ExportRecord,
    "assess" => Assessment,
}

#[derive(Debug, Clone, Copy)]
pub struct Tax;

impl Chaincode for Tax {
    fn id(&self) -> &'static str {
        "tax"
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
            "claim_export_exemption" => claim(ctx, decode_args(args)?),
            "assess" => assess(ctx, decode_args(args)?),
            other => Err(no_method(self.id(), other, METHODS)),
        }
    }
}

fn exp1(message: impl Into<String>) -> RuleError {
    RuleError::new("EXP-1", message)
}

fn claim(ctx: &mut Context<'_, '_>, r: ExportRecord) -> Result<Vec<Event>, RuleError> {
    let (uscc, _) = ctx.require_role(Role::Seller)?;
    // The seller's filing is in the zone: its USCC's region (positions 3-8).
    let zone = ctx.param("zone_region_prefix")?;
    let zone = match zone {
        cbec_ledger::ParamValue::Text(z) => z,
        _ => return Err(RuleError::internal("zone_region_prefix is not a string")),
    };
    if !uscc[2..8].starts_with(&zone) {
        return Err(exp1(format!(
            "seller {uscc} is registered in region {}, outside the zone {zone}",
            &uscc[2..8]
        )));
    }
    // The record holds date, goods name, unit, quantity, unit price and amount.
    let date_ok = r.date.len() == 10
        && cbec_ledger::time::parse_rfc3339(&format!("{}T00:00:00Z", r.date)).is_ok();
    if !date_ok {
        return Err(exp1(format!("date `{}` is not YYYY-MM-DD", r.date)));
    }
    for (field, value) in [
        ("goods name", &r.goods_name),
        ("unit", &r.unit),
        ("record number", &r.record_no),
    ] {
        if value.trim().is_empty() || value.len() > 200 {
            return Err(exp1(format!("{field} is missing")));
        }
    }
    if r.quantity == 0 || r.unit_price_fen == 0 {
        return Err(exp1("quantity and unit price are required"));
    }
    if u128::from(r.quantity) * u128::from(r.unit_price_fen) != u128::from(r.amount_fen) {
        return Err(exp1(format!(
            "amount {} fen is not quantity x unit price",
            r.amount_fen
        )));
    }
    check_code(
        "HS-CODE",
        "commodity code",
        &r.commodity_code,
        codes::commodity_code,
    )?;
    // Declared as e-commerce export at the zone's customs.
    let declaration: ExportDeclaration = ctx
        .get(&export_declaration_key(&r.declaration_no))?
        .ok_or_else(|| {
            exp1(format!(
                "no customs export declaration {}",
                r.declaration_no
            ))
        })?;
    if declaration.seller_uscc != uscc || declaration.commodity_code != r.commodity_code {
        return Err(exp1(
            "the export declaration is for another seller or commodity",
        ));
    }
    // Not on the excluded list (PARAM).
    let excluded = ctx.param_list("excluded_hs_prefixes")?;
    if let Some(prefix) = excluded
        .iter()
        .find(|p| r.commodity_code.starts_with(p.as_str()))
    {
        return Err(exp1(format!(
            "commodity {} is excluded ({prefix})",
            r.commodity_code
        )));
    }
    let key = format!("tax/export/{uscc}/{}", r.record_no);
    if ctx.get_raw(key.as_bytes())?.is_some() {
        return Err(RuleError::new(
            "DUPLICATE",
            format!("export record {} exists already", r.record_no),
        ));
    }
    ctx.put(&key, &r)?;
    Ok(vec![event(
        "export_exempt",
        &[
            ("uscc", uscc),
            ("record_no", r.record_no),
            ("amount_fen", r.amount_fen.to_string()),
        ],
    )])
}

fn assess(ctx: &mut Context<'_, '_>, a: Assessment) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("tax")?;
    check_code("USCC", "USCC", &a.uscc, codes::uscc)?;
    let key = format!("tax/assessment/{}/{}", a.uscc, a.period);
    ctx.put(&key, &a)?;
    Ok(vec![event(
        "tax_assessed",
        &[
            ("uscc", a.uscc),
            ("period", a.period),
            ("amount_fen", a.amount_fen.to_string()),
        ],
    )])
}
