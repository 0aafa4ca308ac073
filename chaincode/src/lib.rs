//! The chaincode engine and the pilot zone's built-in rules.
//!
//! What belongs here: the [`Chaincode`] trait, the [`engine::Engine`] built from genesis,
//! the state-access [`context::Context`] with its per-transaction overlay,
//! deterministic block execution, and one module per rule family of DOMAIN.md
//! (governance, enterprise filing, identity codes, goods traceability, customs, forex,
//! tax). The state layout is in [`layout`].
//!
//! What does not: consensus, storage engines, networking, clocks. Chaincode sees only
//! its context: the caller, the block height and time, and a view of state. Execution
//! is deterministic: no clock, no randomness, no IO, `BTreeMap` only.
//!
//! Every rejection names a DOMAIN.md rule id. Ids added here: `ARGS` (arguments that do
//! not decode), `METHOD` (no such method), `CHAINCODE` (not enabled), `PANIC` (a rule
//! panicked: a bug, recorded instead of crashing the node), `INTERNAL` (corrupt state
//! or a rule writing outside its prefix), `DUPLICATE` (a record that exists already),
//! `NOT-FOUND` (a referenced record that does not exist), `STATUS` (an action the
//! record's status does not allow).

#![forbid(unsafe_code)]

pub mod catalog;
pub mod codes;
pub mod context;
pub mod customs;
pub mod engine;
pub mod enterprise;
pub mod forex;
pub mod goods;
pub mod governance;
pub mod identity;
pub mod layout;
pub mod params;
pub mod permission;
pub mod state;
pub mod tax;
pub mod wasm;

use cbec_ledger::{codec, Attribute, Event};

pub use context::{BlockInfo, Caller, Context, Role};
pub use engine::{BlockOutcome, Built, Engine, ExecError, InvalidBlock};
pub use permission::{standing, NotPermitted};
pub use state::{MemoryState, StateError, StateRead, Writes};

/// A rule's refusal: the DOMAIN.md rule id and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub message: String,
}

impl RuleError {
    pub fn new(rule: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            rule: rule.to_string(),
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> RuleError {
        RuleError::new("INTERNAL", message)
    }
}

/// A family of rules, callable by method name with canonically encoded arguments.
pub trait Chaincode: Send + Sync {
    fn id(&self) -> &'static str;
    fn version(&self) -> u32;
    fn execute(
        &self,
        ctx: &mut Context<'_, '_>,
        method: &str,
        args: &[u8],
    ) -> Result<Vec<Event>, RuleError>;
}

/// The built-in chaincode with this id.
pub fn builtin(id: &str) -> Option<Box<dyn Chaincode>> {
    Some(match id {
        "governance" => Box::new(governance::Governance),
        "enterprise" => Box::new(enterprise::Enterprise),
        "goods" => Box::new(goods::Goods),
        "customs" => Box::new(customs::Customs),
        "forex" => Box::new(forex::Forex),
        "tax" => Box::new(tax::Tax),
        _ => return None,
    })
}

/// Canonical arguments from their JSON form, for the CLI and the HTTP API.
pub fn args_from_json(
    chaincode: &str,
    method: &str,
    json: serde_json::Value,
) -> Result<Vec<u8>, String> {
    match chaincode {
        "governance" => governance::args_from_json(method, json),
        "enterprise" => enterprise::args_from_json(method, json),
        "goods" => goods::args_from_json(method, json),
        "customs" => customs::args_from_json(method, json),
        "forex" => forex::args_from_json(method, json),
        "tax" => tax::args_from_json(method, json),
        // Deployed (WebAssembly) chaincode takes its arguments as JSON text.
        other if wasm::check_id(other).is_ok() => {
            serde_json::to_vec(&json).map_err(|e| format!("{other}.{method}: {e}"))
        }
        other => Err(format!("unknown chaincode `{other}`")),
    }
}

/// The JSON form of canonical arguments, for showing a transaction.
pub fn args_to_json(
    chaincode: &str,
    method: &str,
    args: &[u8],
) -> Result<serde_json::Value, String> {
    match chaincode {
        "governance" => governance::args_to_json(method, args),
        "enterprise" => enterprise::args_to_json(method, args),
        "goods" => goods::args_to_json(method, args),
        "customs" => customs::args_to_json(method, args),
        "forex" => forex::args_to_json(method, args),
        "tax" => tax::args_to_json(method, args),
        other if wasm::check_id(other).is_ok() => serde_json::from_slice(args)
            .map_err(|e| format!("{other}.{method}: arguments are not JSON: {e}")),
        other => Err(format!("unknown chaincode `{other}`")),
    }
}

/// Decodes a method's arguments, or rejects with `ARGS`.
pub fn decode_args<T: bincode::Decode<()>>(args: &[u8]) -> Result<T, RuleError> {
    codec::decode(args).map_err(|e| RuleError::new("ARGS", format!("arguments do not decode: {e}")))
}

/// An event with string attributes.
pub fn event(kind: &str, attributes: &[(&str, String)]) -> Event {
    Event {
        kind: kind.to_string(),
        attributes: attributes
            .iter()
            .map(|(key, value)| Attribute {
                key: key.to_string(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// Declares a chaincode's methods and their argument types: generates the JSON
/// conversions and the method list.
macro_rules! methods {
    ($($name:literal => $args:ty),* $(,)?) => {
        /// Method names of this chaincode.
        pub const METHODS: &[&str] = &[$($name),*];

        pub fn args_from_json(method: &str, json: serde_json::Value) -> Result<Vec<u8>, String> {
            match method {
                $($name => {
                    let args: $args = serde_json::from_value(json).map_err(|e| format!("{method}: {e}"))?;
                    Ok(cbec_ledger::codec::encode(&args))
                })*
                other => Err(format!("no method `{other}`; methods are {}", METHODS.join(", "))),
            }
        }

        pub fn args_to_json(method: &str, args: &[u8]) -> Result<serde_json::Value, String> {
            match method {
                $($name => {
                    let args: $args = cbec_ledger::codec::decode(args).map_err(|e| e.to_string())?;
                    serde_json::to_value(args).map_err(|e| e.to_string())
                })*
                other => Err(format!("no method `{other}`")),
            }
        }
    };
}
pub(crate) use methods;

/// Rejects an unknown method.
pub(crate) fn no_method(chaincode: &str, method: &str, methods: &[&str]) -> RuleError {
    RuleError::new(
        "METHOD",
        format!(
            "`{chaincode}` has no method `{method}`; methods are {}",
            methods.join(", ")
        ),
    )
}

/// Checks a code with one of [`codes`]' validators, mapping failure to its rule id.
pub(crate) fn check_code(
    rule: &str,
    what: &str,
    code: &str,
    check: impl Fn(&str) -> Result<(), codes::CodeError>,
) -> Result<(), RuleError> {
    check(code).map_err(|e| match e {
        codes::CodeError::NonCanonical => {
            RuleError::new("NON-CANONICAL", format!("{what} `{code}` is not canonical"))
        }
        other => RuleError::new(rule, format!("{what} `{code}`: {other}")),
    })
}
