//! Who may transact at all: the ledger is permissioned.
//!
//! Filings are made by commerce, so no unknown key ever needs to transact. A sender is
//! permitted only if its key is an agency operator key, or a signing key of a filed
//! enterprise whose filing is not revoked and which is not on the credit negative list
//! (DOMAIN.md section 1, "ex-ante prohibition"). Everything else is refused before it
//! costs the ledger anything: admission refuses it with [`NotPermitted`] as the reason,
//! and a block that carries it anyway (a Byzantine proposer's) is invalid
//! ([`crate::InvalidBlock::Sender`]), so validators prevote nil. The engine, the
//! proposer's block building and admission all ask this one function.

use cbec_ledger::{codec, PublicKey};

use crate::context::Caller;
use crate::enterprise::Filing;
use crate::layout;
use crate::state::StateError;

/// Why a sender may not transact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPermitted {
    #[error("key {0} belongs to no filed enterprise and no agency")]
    Unknown(PublicKey),
    #[error("the filing of {0} is revoked")]
    Revoked(String),
    #[error("{0} is on the credit negative list")]
    Listed(String),
}

/// A sender's standing, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandingError {
    #[error(transparent)]
    Storage(#[from] StateError),
    /// State that no rule writes (a key pointing at no filing): the same on every node,
    /// so a rejection may record it.
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

/// The beginnings of every key [`standing`] reads (an agency's operator key, an
/// enterprise's signing key, its filing, its negative listing): see [`is_standing_key`].
const STANDING_PREFIXES: [&str; 4] = [
    layout::AGENCY_KEY_PREFIX,
    layout::ENTERPRISE_KEY_PREFIX,
    layout::FILING_PREFIX,
    layout::NEGATIVE_PREFIX,
];

/// Whether [`standing`] may read `key`: a write to any other key leaves every sender's
/// standing as it was, so a standing looked up once holds until a key of these is
/// written (the engine keeps each sender's for the rest of a block on this).
pub fn is_standing_key(key: &[u8]) -> bool {
    STANDING_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix.as_bytes()))
}

/// Whether `key` may transact, and as whom, by reading state through `get`.
pub fn standing(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StateError>,
    key: &PublicKey,
) -> Result<Result<Caller, NotPermitted>, StandingError> {
    let hex = key.to_hex();
    if let Some(bytes) = get(layout::agency_key(&hex).as_bytes())? {
        let name: String = codec::decode(&bytes)
            .map_err(|e| StandingError::Corrupt(format!("agency of key {hex}: {e}")))?;
        return Ok(Ok(Caller::Agency { name }));
    }
    let Some(bytes) = get(layout::enterprise_key(&hex).as_bytes())? else {
        return Ok(Err(NotPermitted::Unknown(*key)));
    };
    let uscc: String = codec::decode(&bytes)
        .map_err(|e| StandingError::Corrupt(format!("enterprise of key {hex}: {e}")))?;
    let filing: Filing = get(layout::filing(&uscc).as_bytes())?
        .and_then(|b| codec::decode(&b).ok())
        .ok_or_else(|| StandingError::Corrupt(format!("key of {uscc} has no filing")))?;
    if filing.revoked.is_some() {
        return Ok(Err(NotPermitted::Revoked(uscc)));
    }
    if get(layout::negative(&uscc).as_bytes())?.is_some() {
        return Ok(Err(NotPermitted::Listed(uscc)));
    }
    Ok(Ok(Caller::Enterprise {
        uscc,
        roles: filing.roles.iter().copied().collect(),
        customs_code: filing.customs_code,
    }))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Every key `standing` reads is a standing key, and the keys around them are not:
    /// a read added to `standing` under another prefix fails here until it is listed.
    #[test]
    fn every_key_standing_reads_is_a_standing_key() {
        let key = cbec_ledger::KeyPair::from_seed(&[3; 32]).public();
        let uscc = "91140200MA0GRK2220";
        let read = RefCell::new(Vec::new());
        let filing = Filing {
            uscc: uscc.into(),
            name: "Taiyuan Seller".into(),
            roles: Vec::new(),
            keys: vec![key],
            customs_code: "1402960002".into(),
            approved_height: 1,
            revoked: None,
            attestations: Vec::new(),
        };
        let enterprise_key = layout::enterprise_key(&key.to_hex());
        let filing_key = layout::filing(uscc);
        let get = |k: &[u8]| -> Result<Option<Vec<u8>>, StateError> {
            read.borrow_mut().push(k.to_vec());
            Ok(if k == enterprise_key.as_bytes() {
                Some(codec::encode(&uscc.to_string()))
            } else if k == filing_key.as_bytes() {
                Some(codec::encode(&filing))
            } else {
                None
            })
        };
        assert!(matches!(
            standing(get, &key),
            Ok(Ok(Caller::Enterprise { .. }))
        ));
        let read = read.into_inner();
        assert_eq!(
            read.len(),
            4,
            "agency key, enterprise key, filing, negative list"
        );
        for k in &read {
            assert!(is_standing_key(k), "{}", String::from_utf8_lossy(k));
        }
        for other in [
            layout::nonce_key(&key.to_hex()),
            layout::customs_code("1402960002"),
            "goods/head/A".to_string(),
            "ent/keys".to_string(),
        ] {
            assert!(!is_standing_key(other.as_bytes()), "{other}");
        }
    }
}
