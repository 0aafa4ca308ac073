//! Governance [DOMAIN.md 1]: the agencies, their operator keys and validator keys,
//! parameters, and the chaincode lifecycle. Any change needs approval by more than 2/3
//! of the agencies; every proposal and vote is a record in state and an event.
//!
//! Two phases, as in Fabric's chaincode lifecycle: agencies `propose` and `vote`; any
//! agency then `apply`s an approved proposal. Applying one without the quorum is
//! rejected with `APPROVAL`.
//!
//! WebAssembly chaincode [issue 19] is deployed the same way: `install_chaincode`
//! (the code, kept under its hash), `activate_chaincode` at a version (the first, or
//! an upgrade), `retire_chaincode`; see [`crate::wasm`].

use bincode::{Decode, Encode};
use cbec_ledger::{codec, ParamValue, PublicKey};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::state::Writes;
use crate::wasm::{WasmChaincode, WasmVersion};
use crate::{decode_args, event, layout, methods, no_method, Chaincode, RuleError};

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AgencyRecord {
    pub name: String,
    pub operator_keys: Vec<PublicKey>,
}

/// A change the agencies vote on.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    AddOperatorKey {
        agency: String,
        key: PublicKey,
    },
    RemoveOperatorKey {
        agency: String,
        key: PublicKey,
    },
    SetValidatorKey {
        agency: String,
        key: PublicKey,
    },
    SetParam {
        chaincode: String,
        name: String,
        value: ParamValue,
    },
    EnableChaincode {
        id: String,
        version: u32,
    },
    /// Installs a version of a WebAssembly chaincode [issue 19]: the module is checked
    /// (see [`crate::wasm::check_module`]) and kept in state under its code hash. Versions
    /// are numbered from 1, each the next.
    InstallChaincode {
        id: String,
        version: u32,
        #[serde(with = "cbec_ledger::tx::hex_vec")]
        code: Vec<u8>,
    },
    /// Makes an installed version the one that runs (the first activation, or an
    /// upgrade), from the next transaction on.
    ActivateChaincode {
        id: String,
        version: u32,
    },
    /// Stops a WebAssembly chaincode for good; its versions stay on the ledger.
    RetireChaincode {
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    Open,
    Applied,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProposalRecord {
    pub id: u64,
    pub action: Action,
    pub proposer: String,
    pub approvals: Vec<String>,
    pub rejections: Vec<String>,
    pub status: ProposalStatus,
    pub height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProposeArgs {
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct VoteArgs {
    pub proposal_id: u64,
    pub approve: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApplyArgs {
    pub proposal_id: u64,
}

methods! {
    "propose" => ProposeArgs,
    "vote" => VoteArgs,
    "apply" => ApplyArgs,
}

const AGENCIES_KEY: &str = "gov/agencies";
const NEXT_KEY: &str = "gov/next-proposal";

fn agency_record_key(name: &str) -> String {
    format!("gov/agency/{name}")
}

fn proposal_key(id: u64) -> String {
    format!("gov/proposal/{id:020}")
}

/// The initial governance state: agencies and operator keys from genesis.
pub fn genesis_writes(agencies: &[(String, Vec<PublicKey>)]) -> Writes {
    let mut writes = Writes::new();
    let names: Vec<String> = agencies.iter().map(|(n, _)| n.clone()).collect();
    writes.insert(
        AGENCIES_KEY.as_bytes().to_vec(),
        Some(codec::encode(&names)),
    );
    for (name, keys) in agencies {
        let record = AgencyRecord {
            name: name.clone(),
            operator_keys: keys.clone(),
        };
        writes.insert(
            agency_record_key(name).into_bytes(),
            Some(codec::encode(&record)),
        );
        for key in keys {
            writes.insert(
                layout::agency_key(&key.to_hex()).into_bytes(),
                Some(codec::encode(name)),
            );
        }
    }
    writes
}

#[derive(Debug, Clone, Copy)]
pub struct Governance;

impl Chaincode for Governance {
    fn id(&self) -> &'static str {
        "governance"
    }
    fn version(&self) -> u32 {
        1
    }
    fn execute(
        &self,
        ctx: &mut Context<'_, '_>,
        method: &str,
        args: &[u8],
    ) -> Result<Vec<cbec_ledger::Event>, RuleError> {
        match method {
            "propose" => propose(ctx, decode_args(args)?),
            "vote" => vote(ctx, decode_args(args)?),
            "apply" => apply_approved(ctx, decode_args(args)?),
            other => Err(no_method(self.id(), other, METHODS)),
        }
    }
}

fn propose(
    ctx: &mut Context<'_, '_>,
    args: ProposeArgs,
) -> Result<Vec<cbec_ledger::Event>, RuleError> {
    let agency = ctx.require_any_agency()?;
    check_action(ctx, &args.action)?;
    let id: u64 = ctx.get(NEXT_KEY)?.unwrap_or(0);
    ctx.put(NEXT_KEY, &(id + 1))?;
    let record = ProposalRecord {
        id,
        action: args.action,
        proposer: agency.clone(),
        approvals: vec![agency.clone()],
        rejections: vec![],
        status: ProposalStatus::Open,
        height: ctx.block.height,
    };
    let mut events = vec![event("proposal", &[("id", id.to_string()), ("by", agency)])];
    events.extend(settle(ctx, record)?);
    Ok(events)
}

fn vote(ctx: &mut Context<'_, '_>, args: VoteArgs) -> Result<Vec<cbec_ledger::Event>, RuleError> {
    let agency = ctx.require_any_agency()?;
    let key = proposal_key(args.proposal_id);
    let mut record: ProposalRecord = ctx
        .get(&key)?
        .ok_or_else(|| RuleError::new("NOT-FOUND", format!("no proposal {}", args.proposal_id)))?;
    if record.status != ProposalStatus::Open {
        return Err(RuleError::new(
            "STATUS",
            format!("proposal {} is {:?}", record.id, record.status),
        ));
    }
    if record.approvals.contains(&agency) || record.rejections.contains(&agency) {
        return Err(RuleError::new(
            "DUPLICATE",
            format!("{agency} already voted on proposal {}", record.id),
        ));
    }
    if args.approve {
        record.approvals.push(agency.clone());
        record.approvals.sort();
    } else {
        record.rejections.push(agency.clone());
        record.rejections.sort();
    }
    let mut events = vec![event(
        "proposal_vote",
        &[
            ("id", record.id.to_string()),
            ("by", agency),
            ("approve", args.approve.to_string()),
        ],
    )];
    events.extend(settle(ctx, record)?);
    Ok(events)
}

fn agency_count(ctx: &Context<'_, '_>) -> Result<u64, RuleError> {
    Ok(ctx.get::<Vec<String>>(AGENCIES_KEY)?.map_or(0, |a| a.len()) as u64)
}

/// Records the proposal; closes it as rejected once approval can no longer happen.
fn settle(
    ctx: &mut Context<'_, '_>,
    mut record: ProposalRecord,
) -> Result<Vec<cbec_ledger::Event>, RuleError> {
    let total = agency_count(ctx)?;
    let approvals = record.approvals.len() as u64;
    let rejections = record.rejections.len() as u64;
    let mut events = Vec::new();
    if approvals * 3 > total * 2 {
        events.push(event("proposal_approved", &[("id", record.id.to_string())]));
    } else if (total - rejections) * 3 <= total * 2 {
        record.status = ProposalStatus::Rejected;
        events.push(event("proposal_rejected", &[("id", record.id.to_string())]));
    }
    ctx.put(&proposal_key(record.id), &record)?;
    Ok(events)
}

fn apply_approved(
    ctx: &mut Context<'_, '_>,
    args: ApplyArgs,
) -> Result<Vec<cbec_ledger::Event>, RuleError> {
    ctx.require_any_agency()?;
    let key = proposal_key(args.proposal_id);
    let mut record: ProposalRecord = ctx
        .get(&key)?
        .ok_or_else(|| RuleError::new("NOT-FOUND", format!("no proposal {}", args.proposal_id)))?;
    if record.status != ProposalStatus::Open {
        return Err(RuleError::new(
            "STATUS",
            format!("proposal {} is {:?}", record.id, record.status),
        ));
    }
    let total = agency_count(ctx)?;
    let approvals = record.approvals.len() as u64;
    if approvals * 3 <= total * 2 {
        return Err(RuleError::new(
            "APPROVAL",
            format!("proposal {} has {approvals} of {total} agencies; more than two thirds must approve", record.id),
        ));
    }
    apply(ctx, &record.action)?;
    record.status = ProposalStatus::Applied;
    ctx.put(&key, &record)?;
    Ok(vec![event(
        "proposal_applied",
        &[("id", record.id.to_string())],
    )])
}

fn agency_record(ctx: &Context<'_, '_>, agency: &str) -> Result<AgencyRecord, RuleError> {
    ctx.get(&agency_record_key(agency))?
        .ok_or_else(|| RuleError::new("NOT-FOUND", format!("no agency `{agency}`")))
}

fn key_in_use(ctx: &Context<'_, '_>, key: &PublicKey) -> Result<bool, RuleError> {
    let hex = key.to_hex();
    Ok(ctx.exists(&layout::agency_key(&hex))? || ctx.exists(&layout::enterprise_key(&hex))?)
}

/// Refuses a proposal that could not be applied, before anyone votes on it.
fn check_action(ctx: &Context<'_, '_>, action: &Action) -> Result<(), RuleError> {
    match action {
        Action::AddOperatorKey { agency, key } | Action::SetValidatorKey { agency, key } => {
            agency_record(ctx, agency)?;
            ctx.check_new_key(key)?;
            if matches!(action, Action::AddOperatorKey { .. }) && key_in_use(ctx, key)? {
                return Err(RuleError::new("DUPLICATE", format!("key {key} is in use")));
            }
        }
        Action::RemoveOperatorKey { agency, key } => {
            let record = agency_record(ctx, agency)?;
            if !record.operator_keys.contains(key) {
                return Err(RuleError::new(
                    "NOT-FOUND",
                    format!("{agency} has no key {key}"),
                ));
            }
            if record.operator_keys.len() == 1 {
                return Err(RuleError::new(
                    "ARGS",
                    format!("{agency} would have no operator key left"),
                ));
            }
        }
        Action::SetParam {
            chaincode,
            name,
            value,
        } => {
            let mut config = crate::catalog::default_configs()
                .into_iter()
                .find(|c| c.id == *chaincode)
                .ok_or_else(|| {
                    RuleError::new("ARGS", format!("unknown chaincode `{chaincode}`"))
                })?;
            config.params.insert(name.clone(), value.clone());
            crate::catalog::check_config(&config).map_err(|e| RuleError::new("ARGS", e))?;
        }
        Action::InstallChaincode { id, version, code } => {
            crate::wasm::check_id(id)?;
            let record: Option<WasmChaincode> = ctx.get(&crate::wasm::record_key(id))?;
            if record.as_ref().is_some_and(|r| r.retired_at.is_some()) {
                return Err(RuleError::new("STATUS", format!("`{id}` is retired")));
            }
            let next = record
                .as_ref()
                .and_then(|r| r.versions.iter().map(|v| v.version).max())
                .unwrap_or(0)
                + 1;
            if *version != next {
                return Err(RuleError::new(
                    "ARGS",
                    format!("the next version of `{id}` is {next}, not {version}"),
                ));
            }
            crate::wasm::check_module(
                code,
                ctx.param_int(crate::wasm::MODULE_BYTES_PARAM)? as u64,
                ctx.param_int(crate::wasm::MEMORY_PARAM)? as u64,
            )?;
        }
        Action::ActivateChaincode { id, version } => {
            let record = wasm_record(ctx, id)?;
            if record.retired_at.is_some() {
                return Err(RuleError::new("STATUS", format!("`{id}` is retired")));
            }
            if record.version(*version).is_none() {
                return Err(RuleError::new(
                    "NOT-FOUND",
                    format!("`{id}` has no version {version} installed"),
                ));
            }
            if record.active() == Some(*version) {
                return Err(RuleError::new(
                    "STATUS",
                    format!("`{id}` version {version} is active already"),
                ));
            }
        }
        Action::RetireChaincode { id } => {
            if wasm_record(ctx, id)?.retired_at.is_some() {
                return Err(RuleError::new(
                    "STATUS",
                    format!("`{id}` is retired already"),
                ));
            }
        }
        Action::EnableChaincode { id, version } => {
            let spec = crate::catalog::spec(id)
                .ok_or_else(|| RuleError::new("ARGS", format!("unknown chaincode `{id}`")))?;
            if spec.version != *version {
                return Err(RuleError::new(
                    "ARGS",
                    format!("`{id}` version {version} is not available"),
                ));
            }
        }
    }
    Ok(())
}

fn apply(ctx: &mut Context<'_, '_>, action: &Action) -> Result<(), RuleError> {
    check_action(ctx, action)?;
    match action {
        Action::AddOperatorKey { agency, key } => {
            let mut record = agency_record(ctx, agency)?;
            record.operator_keys.push(*key);
            ctx.put(&agency_record_key(agency), &record)?;
            ctx.put(&layout::agency_key(&key.to_hex()), agency)
        }
        Action::RemoveOperatorKey { agency, key } => {
            let mut record = agency_record(ctx, agency)?;
            record.operator_keys.retain(|k| k != key);
            ctx.put(&agency_record_key(agency), &record)?;
            ctx.delete(&layout::agency_key(&key.to_hex()))
        }
        Action::SetValidatorKey { agency, key } => ctx.put(&format!("gov/validator/{agency}"), key),
        Action::SetParam {
            chaincode,
            name,
            value,
        } => ctx.put(&layout::param_key(chaincode, name), value),
        Action::EnableChaincode { id, version } => ctx.put(&format!("gov/chaincode/{id}"), version),
        Action::InstallChaincode { id, version, code } => {
            let hash = crate::wasm::code_hash(ctx.block.suite, code);
            let mut record = ctx
                .get::<WasmChaincode>(&crate::wasm::record_key(id))?
                .unwrap_or_else(|| WasmChaincode {
                    id: id.clone(),
                    versions: Vec::new(),
                    activations: Vec::new(),
                    retired_at: None,
                });
            record.versions.push(WasmVersion {
                version: *version,
                code_hash: hash,
                bytes: code.len() as u32,
                installed_at: ctx.block.height,
            });
            ctx.put(&crate::wasm::code_key(&hash), code)?;
            ctx.put(&crate::wasm::record_key(id), &record)
        }
        Action::ActivateChaincode { id, version } => {
            let mut record = wasm_record(ctx, id)?;
            record.activations.push((ctx.block.height, *version));
            ctx.put(&crate::wasm::record_key(id), &record)
        }
        Action::RetireChaincode { id } => {
            let mut record = wasm_record(ctx, id)?;
            record.retired_at = Some(ctx.block.height);
            ctx.put(&crate::wasm::record_key(id), &record)
        }
    }
}

/// The record of an installed WebAssembly chaincode.
fn wasm_record(ctx: &Context<'_, '_>, id: &str) -> Result<WasmChaincode, RuleError> {
    ctx.get(&crate::wasm::record_key(id))?.ok_or_else(|| {
        RuleError::new(
            "NOT-FOUND",
            format!("no WebAssembly chaincode `{id}` installed"),
        )
    })
}
