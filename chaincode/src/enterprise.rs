//! Enterprise filing [DOMAIN.md 1, 2]: one filing, approved by commerce and shared by
//! all agencies; amendments; revocation; agency attestations on the same record; and
//! the credit negative list kept by commerce. The engine refuses every transaction of a
//! revoked or listed enterprise before any rule runs.

use bincode::{Decode, Encode};
use cbec_ledger::{Event, PublicKey};
use serde::{Deserialize, Serialize};

use crate::context::{Context, Role};
use crate::{
    check_code, codes, decode_args, event, layout, methods, no_method, Chaincode, RuleError,
};

/// Which agency attests what on a filing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AttestationKind {
    /// By customs: registered with customs.
    CustomsRegistration,
    /// By forex: on the trade-forex directory (see FX-1).
    ForexDirectory,
    /// By tax: tax status.
    TaxStatus,
}

impl AttestationKind {
    pub fn agency(self) -> &'static str {
        match self {
            AttestationKind::CustomsRegistration => "customs",
            AttestationKind::ForexDirectory => "forex",
            AttestationKind::TaxStatus => "tax",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Attestation {
    pub kind: AttestationKind,
    pub value: String,
    pub height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Revocation {
    pub reason: String,
    pub height: u64,
}

/// The one filing of an enterprise.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Filing {
    pub uscc: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub keys: Vec<PublicKey>,
    /// The 10-character customs registration code customs messages use.
    pub customs_code: String,
    pub approved_height: u64,
    pub revoked: Option<Revocation>,
    pub attestations: Vec<Attestation>,
}

impl Filing {
    pub fn attestation(&self, kind: AttestationKind) -> Option<&Attestation> {
        self.attestations.iter().find(|a| a.kind == kind)
    }
}

/// An entry on the credit negative list.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Listing {
    pub reason: String,
    pub height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApproveFiling {
    pub uscc: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub keys: Vec<PublicKey>,
    pub customs_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AmendFiling {
    pub uscc: String,
    #[serde(default)]
    pub add_keys: Vec<PublicKey>,
    #[serde(default)]
    pub remove_keys: Vec<PublicKey>,
    /// Replaces the roles when given.
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WithReason {
    pub uscc: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Attest {
    pub uscc: String,
    pub kind: AttestationKind,
    pub value: String,
}

methods! {
    "approve_filing" => ApproveFiling,
    "amend_filing" => AmendFiling,
    "revoke_filing" => WithReason,
    "attest" => Attest,
    "list_negative" => WithReason,
    "delist_negative" => WithReason,
}

#[derive(Debug, Clone, Copy)]
pub struct Enterprise;

impl Chaincode for Enterprise {
    fn id(&self) -> &'static str {
        "enterprise"
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
            "approve_filing" => approve(ctx, decode_args(args)?),
            "amend_filing" => amend(ctx, decode_args(args)?),
            "revoke_filing" => revoke(ctx, decode_args(args)?),
            "attest" => attest(ctx, decode_args(args)?),
            "list_negative" => list(ctx, decode_args(args)?, true),
            "delist_negative" => list(ctx, decode_args(args)?, false),
            other => Err(no_method(self.id(), other, METHODS)),
        }
    }
}

/// The filing of `uscc`, if any (readable by every chaincode).
pub fn filing(ctx: &Context<'_, '_>, uscc: &str) -> Result<Option<Filing>, RuleError> {
    ctx.get(&layout::filing(uscc))
}

/// The filing behind a customs registration code, if it is valid and not listed.
pub fn active_filing_by_customs_code(ctx: &Context<'_, '_>, code: &str) -> Result<Filing, String> {
    let uscc: String = ctx
        .get(&layout::customs_code(code))
        .map_err(|e| e.message)?
        .ok_or_else(|| format!("no filing has customs code {code}"))?;
    active_filing(ctx, &uscc)
}

/// The filing of `uscc` if it exists, is not revoked and not on the negative list.
pub fn active_filing(ctx: &Context<'_, '_>, uscc: &str) -> Result<Filing, String> {
    let filing = filing(ctx, uscc)
        .map_err(|e| e.message)?
        .ok_or_else(|| format!("{uscc} has no filing"))?;
    if filing.revoked.is_some() {
        return Err(format!("the filing of {uscc} is revoked"));
    }
    if ctx
        .get_raw(layout::negative(uscc).as_bytes())
        .map_err(|e| e.message)?
        .is_some()
    {
        return Err(format!("{uscc} is on the credit negative list"));
    }
    Ok(filing)
}

fn existing(ctx: &Context<'_, '_>, uscc: &str) -> Result<Filing, RuleError> {
    filing(ctx, uscc)?.ok_or_else(|| RuleError::new("FILING", format!("{uscc} has no filing")))
}

fn check_new_key(ctx: &Context<'_, '_>, key: &PublicKey) -> Result<(), RuleError> {
    ctx.check_new_key(key)?;
    let hex = key.to_hex();
    if ctx.exists(&layout::enterprise_key(&hex))? || ctx.exists(&layout::agency_key(&hex))? {
        return Err(RuleError::new(
            "DUPLICATE",
            format!("key {key} already signs for someone"),
        ));
    }
    Ok(())
}

fn normalized_roles(roles: &[Role]) -> Result<Vec<Role>, RuleError> {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(RuleError::new("ARGS", "a filing needs at least one role"));
    }
    Ok(roles)
}

fn approve(ctx: &mut Context<'_, '_>, args: ApproveFiling) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("commerce")?;
    check_code("USCC", "USCC", &args.uscc, codes::uscc)?;
    check_code(
        "ARGS",
        "customs code",
        &args.customs_code,
        codes::customs_code,
    )?;
    if args.name.trim().is_empty() || args.name.len() > 200 {
        return Err(RuleError::new("ARGS", "name must be 1-200 bytes"));
    }
    if filing(ctx, &args.uscc)?.is_some() {
        return Err(RuleError::new(
            "DUPLICATE",
            format!("{} has filed already; amend it", args.uscc),
        ));
    }
    if ctx.exists(&layout::customs_code(&args.customs_code))? {
        return Err(RuleError::new(
            "DUPLICATE",
            format!("customs code {} is taken", args.customs_code),
        ));
    }
    if args.keys.is_empty() {
        return Err(RuleError::new(
            "ARGS",
            "a filing needs at least one signing key",
        ));
    }
    for key in &args.keys {
        check_new_key(ctx, key)?;
    }
    let roles = normalized_roles(&args.roles)?;
    let record = Filing {
        uscc: args.uscc.clone(),
        name: args.name,
        roles,
        keys: args.keys.clone(),
        customs_code: args.customs_code.clone(),
        approved_height: ctx.block.height,
        revoked: None,
        attestations: vec![],
    };
    for key in &args.keys {
        ctx.put(&layout::enterprise_key(&key.to_hex()), &args.uscc)?;
    }
    ctx.put(&layout::customs_code(&args.customs_code), &args.uscc)?;
    ctx.put(&layout::filing(&args.uscc), &record)?;
    Ok(vec![event(
        "filing_approved",
        &[("uscc", args.uscc), ("customs_code", args.customs_code)],
    )])
}

fn amend(ctx: &mut Context<'_, '_>, args: AmendFiling) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("commerce")?;
    let mut record = existing(ctx, &args.uscc)?;
    if record.revoked.is_some() {
        return Err(RuleError::new(
            "FILING",
            format!("the filing of {} is revoked", args.uscc),
        ));
    }
    for key in &args.remove_keys {
        if !record.keys.contains(key) {
            return Err(RuleError::new(
                "NOT-FOUND",
                format!("{} has no key {key}", args.uscc),
            ));
        }
        record.keys.retain(|k| k != key);
        ctx.delete(&layout::enterprise_key(&key.to_hex()))?;
    }
    for key in &args.add_keys {
        check_new_key(ctx, key)?;
        record.keys.push(*key);
        ctx.put(&layout::enterprise_key(&key.to_hex()), &args.uscc)?;
    }
    if record.keys.is_empty() {
        return Err(RuleError::new(
            "ARGS",
            "a filing needs at least one signing key",
        ));
    }
    if let Some(roles) = &args.roles {
        record.roles = normalized_roles(roles)?;
    }
    ctx.put(&layout::filing(&args.uscc), &record)?;
    Ok(vec![event("filing_amended", &[("uscc", args.uscc)])])
}

fn revoke(ctx: &mut Context<'_, '_>, args: WithReason) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("commerce")?;
    let mut record = existing(ctx, &args.uscc)?;
    if record.revoked.is_some() {
        return Err(RuleError::new(
            "STATUS",
            format!("the filing of {} is already revoked", args.uscc),
        ));
    }
    require_reason(&args.reason)?;
    record.revoked = Some(Revocation {
        reason: args.reason.clone(),
        height: ctx.block.height,
    });
    ctx.put(&layout::filing(&args.uscc), &record)?;
    Ok(vec![event(
        "filing_revoked",
        &[("uscc", args.uscc), ("reason", args.reason)],
    )])
}

fn attest(ctx: &mut Context<'_, '_>, args: Attest) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency(args.kind.agency())?;
    let mut record = existing(ctx, &args.uscc)?;
    record.attestations.retain(|a| a.kind != args.kind);
    record.attestations.push(Attestation {
        kind: args.kind,
        value: args.value.clone(),
        height: ctx.block.height,
    });
    record.attestations.sort_by_key(|a| a.kind);
    ctx.put(&layout::filing(&args.uscc), &record)?;
    Ok(vec![event(
        "attested",
        &[
            ("uscc", args.uscc),
            ("kind", format!("{:?}", args.kind)),
            ("value", args.value),
        ],
    )])
}

fn require_reason(reason: &str) -> Result<(), RuleError> {
    if reason.trim().is_empty() || reason.len() > 500 {
        return Err(RuleError::new(
            "ARGS",
            "a reason of 1-500 bytes is required",
        ));
    }
    Ok(())
}

fn list(
    ctx: &mut Context<'_, '_>,
    args: WithReason,
    listing: bool,
) -> Result<Vec<Event>, RuleError> {
    ctx.require_agency("commerce")?;
    existing(ctx, &args.uscc)?;
    require_reason(&args.reason)?;
    let key = layout::negative(&args.uscc);
    let listed = ctx.exists(&key)?;
    if listing == listed {
        let state = if listed { "already" } else { "not" };
        return Err(RuleError::new(
            "STATUS",
            format!("{} is {state} on the negative list", args.uscc),
        ));
    }
    if listing {
        ctx.put(
            &key,
            &Listing {
                reason: args.reason.clone(),
                height: ctx.block.height,
            },
        )?;
    } else {
        ctx.delete(&key)?;
    }
    let kind = if listing {
        "negative_listed"
    } else {
        "negative_delisted"
    };
    Ok(vec![event(
        kind,
        &[("uscc", args.uscc), ("reason", args.reason)],
    )])
}
