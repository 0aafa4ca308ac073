//! Chaincode configuration as the genesis document (and later governance) states it.
//!
//! The values are deliberately untyped here: the chaincode crate owns each rule's
//! parameters, their defaults and their types, and checks a configuration against them.
//! Keeping the shape in `ledger` lets the genesis document, governance records and
//! chaincode share it without depending on one another.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// A parameter value. In JSON: a boolean, an integer, a string, or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Text(String),
    List(Vec<String>),
}

impl ParamValue {
    /// The kind of value, as error messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ParamValue::Bool(_) => "boolean",
            ParamValue::Int(_) => "integer",
            ParamValue::Text(_) => "string",
            ParamValue::List(_) => "list of strings",
        }
    }
}

/// One enabled chaincode: its id, version and parameters (absent ones take defaults).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaincodeConfig {
    pub id: String,
    pub version: u32,
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
}
