//! The state layout: every key prefix, what it holds, and which chaincode owns it.
//! A chaincode writes only under its own prefixes; reads may cross.
//!
//! | prefix | value | owner |
//! |---|---|---|
//! | `acct/nonce/<key hex>` | next nonce of a sender (u64) | the engine |
//! | `sys/last-block` | (height, time ms) of the last executed block | the engine |
//! | `gov/agency/<name>` | [`crate::governance::AgencyRecord`]: operator keys | governance |
//! | `gov/agency-key/<key hex>` | agency name of an operator key | governance |
//! | `gov/validator/<agency>` | the agency's validator key, when changed by governance | governance |
//! | `gov/proposal/<id>` | [`crate::governance::ProposalRecord`] with its votes | governance |
//! | `gov/next-proposal` | next proposal id (u64) | governance |
//! | `gov/param/<chaincode>/<name>` | a parameter changed by governance | governance |
//! | `gov/chaincode/<id>` | enabled version of a chaincode (u32) | governance |
//! | `ent/filing/<uscc>` | [`crate::enterprise::Filing`] with attestations | enterprise |
//! | `ent/key/<key hex>` | USCC a signing key belongs to | enterprise |
//! | `ent/customs-code/<code>` | USCC of a customs registration code | enterprise |
//! | `ent/negative/<uscc>` | [`crate::enterprise::Listing`]: on the credit negative list | enterprise |
//! | `goods/head/<goods id>` | [`crate::goods::Head`]: hash of the latest event | goods |
//! | `goods/event/<event hash>` | [`crate::goods::StoredEvent`] | goods |
//! | `customs/order/<ebp code>/<order no>` | [`crate::customs::Order`] | customs |
//! | `customs/payment/<ebp code>/<order no>` | [`crate::customs::Payment`] | customs |
//! | `customs/waybill/<logistics code>/<logistics no>` | [`crate::customs::Waybill`] | customs |
//! | `customs/list/<ebp code>/<order no>` | [`crate::customs::DeclarationList`] | customs |
//! | `customs/clearance/<ebp code>/<order no>` | [`crate::customs::Clearance`] | customs |
//! | `customs/annual/<buyer tag>/<year>` | fen of retail imports used (u64) | customs |
//! | `customs/risk/<customs code>` | [`crate::customs::RiskGrade`] of an enterprise | customs |
//! | `forex/totals/<uscc>/<year>` | [`crate::forex::Totals`] in US cents | forex |
//! | `goods/custody/<goods id>` | [`crate::goods::Custody`]: who holds the good, and to whom it was handed | goods |
//! | `goods/qty/<goods id>` | quantity a good still holds (u64): set by `produced`, splits and transformations | goods |
//! | `goods/in/<goods id>` | the container a good is packed in | goods |
//! | `forex/settler/<uscc>/<pay customs code>` | `true`: the enterprise named this payment enterprise to settle for it | forex |
//! | `tax/export/<uscc>/<record no>` | [`crate::tax::ExportRecord`] | tax |
//! | `tax/assessment/<uscc>/<period>` | [`crate::tax::Assessment`] | tax |

/// The prefixes a chaincode may write.
pub fn prefixes_of(chaincode: &str) -> &'static [&'static str] {
    match chaincode {
        "governance" => &["gov/"],
        "enterprise" => &["ent/"],
        "goods" => &["goods/"],
        "customs" => &["customs/"],
        "forex" => &["forex/"],
        "tax" => &["tax/"],
        _ => &[],
    }
}

/// Written by every block (see [`crate::engine::Engine::execute_block`]).
pub const LAST_BLOCK_KEY: &str = "sys/last-block";

pub fn nonce_key(key_hex: &str) -> String {
    format!("acct/nonce/{key_hex}")
}

pub fn param_key(chaincode: &str, name: &str) -> String {
    format!("gov/param/{chaincode}/{name}")
}

/// Where [`agency_key`] keys begin.
pub const AGENCY_KEY_PREFIX: &str = "gov/agency-key/";

pub fn agency_key(key_hex: &str) -> String {
    format!("{AGENCY_KEY_PREFIX}{key_hex}")
}

/// Where [`enterprise_key`] keys begin.
pub const ENTERPRISE_KEY_PREFIX: &str = "ent/key/";

pub fn enterprise_key(key_hex: &str) -> String {
    format!("{ENTERPRISE_KEY_PREFIX}{key_hex}")
}

/// Where [`filing`] keys begin.
pub const FILING_PREFIX: &str = "ent/filing/";

pub fn filing(uscc: &str) -> String {
    format!("{FILING_PREFIX}{uscc}")
}

pub fn customs_code(code: &str) -> String {
    format!("ent/customs-code/{code}")
}

/// Where [`negative`] keys begin.
pub const NEGATIVE_PREFIX: &str = "ent/negative/";

pub fn negative(uscc: &str) -> String {
    format!("{NEGATIVE_PREFIX}{uscc}")
}
