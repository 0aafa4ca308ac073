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
