//! The goods-traceability record format [DOMAIN.md 3]: what the `goods` chaincode
//! stores and what a provenance proof rebuilds. It lives here, not in the chaincode,
//! because an auditor's offline verifier must recompute an event's hash from the
//! certified transaction and result, with nothing but this crate.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::Suite;
use crate::hash::{tag, Hash};

/// The chaincode and method that record a traceability event.
pub const CHAINCODE: &str = "goods";
pub const RECORD_METHOD: &str = "record";
/// The kind of the result event `record` emits; its attributes name the stored event.
pub const RESULT_EVENT: &str = "goods_event";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Produced,
    Ordered,
    Paid,
    Shipped,
    Warehoused,
    Declared,
    Cleared,
    Held,
    Rejected,
    Delivered,
    Returned,
    Evaluated,
}

/// The arguments of `record`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct RecordEvent {
    pub goods_id: String,
    pub kind: EventKind,
    /// Hash of the good's latest event; absent for the first event.
    #[serde(default)]
    pub prev: Option<Hash>,
    /// Facts of the event. `gtin` and `commodity_code`, when present, are validated.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// An event as stored: its hash is what the next event names.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct StoredEvent {
    pub goods_id: String,
    pub seq: u64,
    pub kind: EventKind,
    pub prev: Option<Hash>,
    /// USCC of the enterprise, or the agency name.
    pub actor: String,
    pub attributes: BTreeMap<String, String>,
    pub height: u64,
    pub time_ms: u64,
    pub tx_hash: Hash,
}

impl StoredEvent {
    pub fn hash(&self, suite: Suite) -> Hash {
        suite.tagged(tag::GOODS_EVENT, &codec::encode(self))
    }
}

/// The chain head of a good.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Head {
    pub first: Hash,
    pub last: Hash,
    pub count: u64,
}

pub fn head_key(goods_id: &str) -> String {
    format!("goods/head/{goods_id}")
}

pub fn event_key(hash: &Hash) -> String {
    format!("goods/event/{hash}")
}
