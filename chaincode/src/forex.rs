//! Forex [DOMAIN.md 6]: receipts and payments per enterprise per year, summed
//! separately in US cents; FX-1 directory registration; the warning threshold.

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

methods! {
    "record_settlement" => Settlement,
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
            other => Err(no_method(self.id(), other, METHODS)),
        }
    }
}

fn settle(ctx: &mut Context<'_, '_>, s: Settlement) -> Result<Vec<Event>, RuleError> {
    // Settlements are reported by a payment enterprise or by forex itself.
    if !matches!(&ctx.caller, Caller::Agency { name } if name == "forex") {
        ctx.require_role(Role::Payment)?;
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
