//! What a rule sees: the caller, the block, parameters, and a read/write view of state.

use std::collections::BTreeSet;

use bincode::{Decode, Encode};
use cbec_ledger::{codec, Hash, ParamValue, PublicKey, Suite};
use serde::{Deserialize, Serialize};

use crate::params::Params;
use crate::state::{BlockOverlay, StateRead, Writes};
use crate::RuleError;

/// Enterprise roles (DOMAIN.md section 1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Platform,
    Seller,
    Payment,
    Logistics,
    Agent,
    Manufacturer,
    Warehouse,
    /// An identity-verification service: signs identity attestations (R10).
    Identity,
}

/// Who signed the transaction, as resolved from state. (A key that is neither never
/// reaches a rule: see [`crate::permission`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An operator key of an agency.
    Agency { name: String },
    /// A signing key of a filed enterprise, with the filing's status.
    Enterprise {
        uscc: String,
        roles: BTreeSet<Role>,
        customs_code: String,
    },
}

/// Block facts a rule may read: never the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub height: u64,
    pub time_ms: u64,
    /// The chain's crypto suite (fixed at genesis): the hash of records rules chain
    /// together, and the scheme of keys they accept.
    pub suite: Suite,
}

/// The execution context of one transaction.
pub struct Context<'a, 'b> {
    pub caller: Caller,
    pub key: PublicKey,
    pub block: BlockInfo,
    pub tx_hash: Hash,
    /// The chaincode executing: writes must stay under its prefixes.
    pub chaincode: &'static str,
    params: &'a Params,
    block_state: &'a BlockOverlay<'b, dyn StateRead + 'b>,
    writes: Writes,
}

impl std::fmt::Debug for Context<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("caller", &self.caller)
            .field("block", &self.block)
            .field("chaincode", &self.chaincode)
            .finish_non_exhaustive()
    }
}

impl<'a, 'b> Context<'a, 'b> {
    pub(crate) fn new(
        caller: Caller,
        key: PublicKey,
        block: BlockInfo,
        tx_hash: Hash,
        chaincode: &'static str,
        params: &'a Params,
        block_state: &'a BlockOverlay<'b, dyn StateRead + 'b>,
    ) -> Self {
        Context {
            caller,
            key,
            block,
            tx_hash,
            chaincode,
            params,
            block_state,
            writes: Writes::new(),
        }
    }

    pub(crate) fn into_writes(self) -> Writes {
        self.writes
    }

    /// Raw read: this transaction's writes, then the block's, then committed state. A
    /// failed read of committed state is an error the rule passes on with `?` (the
    /// engine then abandons the block; see [`crate::ExecError::Storage`]).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RuleError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self
                .block_state
                .get(key)
                .map_err(crate::engine::storage_failure),
        }
    }

    /// Whether a key holds a value.
    pub fn exists(&self, key: &str) -> Result<bool, RuleError> {
        Ok(self.get_raw(key.as_bytes())?.is_some())
    }

    /// Reads and decodes a value stored with [`Context::put`].
    pub fn get<T: Decode<()>>(&self, key: &str) -> Result<Option<T>, RuleError> {
        match self.get_raw(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| RuleError::internal(format!("state at `{key}` is corrupt: {e}"))),
        }
    }

    /// Writes a value under this chaincode's prefix.
    pub fn put<T: Encode>(&mut self, key: &str, value: &T) -> Result<(), RuleError> {
        self.check_owner(key)?;
        self.writes
            .insert(key.as_bytes().to_vec(), Some(codec::encode(value)));
        Ok(())
    }

    pub fn delete(&mut self, key: &str) -> Result<(), RuleError> {
        self.check_owner(key)?;
        self.writes.insert(key.as_bytes().to_vec(), None);
        Ok(())
    }

    fn check_owner(&self, key: &str) -> Result<(), RuleError> {
        let owned = crate::layout::prefixes_of(self.chaincode)
            .iter()
            .any(|p| key.starts_with(p));
        if owned {
            Ok(())
        } else {
            Err(RuleError::internal(format!(
                "chaincode `{}` may not write `{key}`",
                self.chaincode
            )))
        }
    }

    /// A parameter of the executing chaincode: a governance override in state, else
    /// the genesis value, else the catalog default.
    pub fn param(&self, name: &str) -> Result<ParamValue, RuleError> {
        let key = crate::layout::param_key(self.chaincode, name);
        if let Some(value) = self.get::<ParamValue>(&key)? {
            return Ok(value);
        }
        self.params.get(self.chaincode, name).ok_or_else(|| {
            RuleError::internal(format!("no parameter `{name}` for `{}`", self.chaincode))
        })
    }

    pub fn param_int(&self, name: &str) -> Result<i64, RuleError> {
        match self.param(name)? {
            ParamValue::Int(v) => Ok(v),
            other => Err(RuleError::internal(format!(
                "parameter `{name}` is a {}",
                other.kind()
            ))),
        }
    }

    pub fn param_list(&self, name: &str) -> Result<Vec<String>, RuleError> {
        match self.param(name)? {
            ParamValue::List(v) => Ok(v),
            other => Err(RuleError::internal(format!(
                "parameter `{name}` is a {}",
                other.kind()
            ))),
        }
    }

    /// The calendar year of the block in the zone's time (PARAM `year_utc_offset_minutes`).
    pub fn year(&self) -> Result<i64, RuleError> {
        let offset = self.param_int("year_utc_offset_minutes")?;
        Ok(cbec_ledger::time::date_time(self.block.time_ms as i64, offset as i32).year)
    }

    /// Requires the caller to be an operator of `agency`.
    /// A key a rule is asked to store (an enterprise's or an agency's): valid, and of
    /// the chain's scheme; else `ARGS`.
    pub fn check_new_key(&self, key: &PublicKey) -> Result<(), RuleError> {
        self.block
            .suite
            .check_key(key)
            .map_err(|e| RuleError::new("ARGS", e.to_string()))?;
        if !key.is_valid() {
            return Err(RuleError::new(
                "ARGS",
                format!("{key} is not a valid public key"),
            ));
        }
        Ok(())
    }

    pub fn require_agency(&self, agency: &str) -> Result<(), RuleError> {
        match &self.caller {
            Caller::Agency { name } if name == agency => Ok(()),
            other => Err(RuleError::new(
                "ROLE",
                format!("only {agency} may do this; caller is {}", describe(other)),
            )),
        }
    }

    /// Any agency operator.
    pub fn require_any_agency(&self) -> Result<String, RuleError> {
        match &self.caller {
            Caller::Agency { name } => Ok(name.clone()),
            other => Err(RuleError::new(
                "ROLE",
                format!("only an agency may do this; caller is {}", describe(other)),
            )),
        }
    }

    /// Requires a filed enterprise holding `role`; returns its USCC and customs code.
    /// (Revoked and listed enterprises never get this far: the engine refuses them.)
    pub fn require_role(&self, role: Role) -> Result<(String, String), RuleError> {
        match &self.caller {
            Caller::Enterprise {
                uscc,
                roles,
                customs_code,
            } if roles.contains(&role) => Ok((uscc.clone(), customs_code.clone())),
            Caller::Enterprise { uscc, .. } => Err(RuleError::new(
                "ROLE",
                format!("enterprise {uscc} does not hold the {role:?} role"),
            )),
            other => Err(RuleError::new(
                "FILING",
                format!(
                    "a filed enterprise with the {role:?} role must sign this; caller is {}",
                    describe(other)
                ),
            )),
        }
    }
}

fn describe(caller: &Caller) -> String {
    match caller {
        Caller::Agency { name } => format!("agency {name}"),
        Caller::Enterprise { uscc, .. } => format!("enterprise {uscc}"),
    }
}
