//! Forex [DOMAIN.md 6]: receipts and payments per enterprise per year, summed
//! separately in US cents; FX-1 directory registration; the warning threshold.
//!
//! Who may settle for whom [DOMAIN.md 4]: an enterprise names the payment enterprises
//! that settle for it (`name_settler`, signed by the enterprise itself; `unname_settler`
//! takes it back); a payment enterprise's settlement counts only for an enterprise that
//! named it (`ROLE` otherwise). Forex itself may record any settlement.

use bincode::{Decode, Encode};
use cbec_ledger::Event;
use serde::{Deserialize, Serialize};

use crate::context::{Caller, Context, Role};
use crate::enterprise::{active_filing, AttestationKind};
use crate::{decode_args, event, methods, no_method, Chaincode, RuleError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Receipt,
    Payment,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Totals {
    pub receipts_cents: u64,
    pub payments_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Settlement {
    pub uscc: String,
    pub direction: Direction,
    pub amount_cents: u64,
}

/// A payment enterprise (by customs code) an enterprise names to settle for it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Settler {
    pub pay_code: String,
}

methods! {
    "record_settlement" => Settlement,
    "name_settler" => Settler,
    "unname_settler" => Settler,
}

/// Where an enterprise's naming of a settling payment enterprise is kept.
pub fn settler_key(uscc: &str, pay_code: &str) -> String {
    format!("forex/settler/{uscc}/{pay_code}")
}

#[derive(Debug, Clone, Copy)]
pub struct Forex;

impl Chaincode for Forex {
    fn id(&self) -> &'static str {
        "forex"
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
            "record_settlement" => settle(ctx, decode_args(args)?),
            "name_settler" => name_settler(ctx, decode_args(args)?, true),
            "unname_settler" => name_settler(ctx, decode_args(args)?, false),
            other => Err(no_method(self.id(), other, METHODS)),
        }
    }
}

/// The calling enterprise names (or stops naming) a payment enterprise to settle for it.
fn name_settler(
    ctx: &mut Context<'_, '_>,
    s: Settler,
    named: bool,
) -> Result<Vec<Event>, RuleError> {
    let Caller::Enterprise { uscc, .. } = &ctx.caller else {
        return Err(RuleError::new(
            "ROLE",
            "an enterprise names its own settling payment enterprises",
        ));
    };
    let uscc = uscc.clone();
    crate::check_code("ARGS", "payCode", &s.pay_code, crate::codes::customs_code)?;
    let key = settler_key(&uscc, &s.pay_code);
    if named {
        crate::enterprise::active_filing_by_customs_code(ctx, &s.pay_code).map_err(|e| {
            RuleError::new("FILING", format!("payment enterprise {}: {e}", s.pay_code))
        })?;
        ctx.put(&key, &true)?;
    } else {
        ctx.delete(&key)?;
    }
    Ok(vec![event(
        if named {
            "settler_named"
        } else {
            "settler_unnamed"
        },
        &[("uscc", uscc), ("pay_code", s.pay_code)],
    )])
}

fn settle(ctx: &mut Context<'_, '_>, s: Settlement) -> Result<Vec<Event>, RuleError> {
    // Settlements are reported by forex itself, or by a payment enterprise the
    // enterprise named.
    if !matches!(&ctx.caller, Caller::Agency { name } if name == "forex") {
        let (_, code) = ctx.require_role(Role::Payment)?;
        if !ctx.exists(&settler_key(&s.uscc, &code))? {
            return Err(RuleError::new(
                "ROLE",
                format!(
                    "{} has not named payment enterprise {code} to settle for it (forex name_settler); only the payment enterprises it names, or forex, may",
                    s.uscc
                ),
            ));
        }
    }
    if s.amount_cents == 0 {
        return Err(RuleError::new("ARGS", "amount must be positive"));
    }
    let filing = active_filing(ctx, &s.uscc).map_err(|e| RuleError::new("FILING", e))?;
    let year = ctx.year()?;
    let key = format!("forex/totals/{}/{year}", s.uscc);
    let mut totals: Totals = ctx.get(&key)?.unwrap_or_default();
    match s.direction {
        Direction::Receipt => {
            totals.receipts_cents = totals.receipts_cents.saturating_add(s.amount_cents)
        }
        Direction::Payment => {
            totals.payments_cents = totals.payments_cents.saturating_add(s.amount_cents)
        }
    }
    let threshold = ctx.param_int("exemption_threshold_cents")?.max(0) as u64;
    let warning = ctx.param_int("warning_threshold_cents")?.max(0) as u64;
    // FX-1: exempt only while both sums stay below the threshold.
    let exempt = totals.receipts_cents < threshold && totals.payments_cents < threshold;
    let registered = filing
        .attestation(AttestationKind::ForexDirectory)
        .is_some();
    if !exempt && !registered {
        return Err(RuleError::new(
            "FX-1",
            format!(
                "{} would reach {} receipts / {} payments (US cents) in {year}, at or above {threshold}, without a directory registration by forex",
                s.uscc, totals.receipts_cents, totals.payments_cents
            ),
        ));
    }
    ctx.put(&key, &totals)?;
    let mut attributes = vec![
        ("uscc", s.uscc),
        ("receipts_cents", totals.receipts_cents.to_string()),
        ("payments_cents", totals.payments_cents.to_string()),
    ];
    if totals.receipts_cents.max(totals.payments_cents) >= warning {
        attributes.push((
            "warning",
            format!("FX-1: at or above {warning} US cents this year"),
        ));
    }
    Ok(vec![event("settlement", &attributes)])
}
