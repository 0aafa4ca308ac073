//! Who may use the API for what: scopes per route, granted to anonymous requests by the
//! node config, or to bearer tokens named there by their SHA-256.
//!
//! Safe by default: with no `anonymous` line in `[api]`, an API listening on loopback
//! only grants every scope (a local devnet), and one listening elsewhere grants
//! `status` alone; everything else needs a token. A request with an unknown token is
//! refused (401) whatever anonymous requests may do: a client that means to present a
//! token gets told its token is wrong.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{header, HeaderMap, Method};
use cbec_genesis::{ApiSettings, Scope};
use sha2::{Digest, Sha256};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// 401: no token, and anonymous requests may not do this; or an unknown token.
    #[error("this needs a bearer token with the `{}` scope", .0.name())]
    NeedsToken(Scope),
    #[error("unknown bearer token")]
    UnknownToken,
    /// 403: a known token without the scope.
    #[error("token `{who}` lacks the `{}` scope", .scope.name())]
    MissingScope { who: String, scope: Scope },
}

/// The policy of one node.
#[derive(Debug, Clone)]
pub struct Access {
    anonymous: BTreeSet<Scope>,
    /// Token digests to (holder, scopes).
    tokens: BTreeMap<[u8; 32], (String, BTreeSet<Scope>)>,
}

impl Access {
    /// The policy `settings` give an API listening on `listen`. Token digests were
    /// checked to be 64 hex characters when the config was read.
    pub fn new(settings: &ApiSettings, listen: &std::net::SocketAddr) -> Access {
        let tokens = settings
            .tokens
            .iter()
            .filter_map(|t| {
                let digest: [u8; 32] = hex::decode(&t.sha256).ok()?.try_into().ok()?;
                Some((digest, (t.name.clone(), t.scopes.iter().copied().collect())))
            })
            .collect();
        Access {
            anonymous: settings.anonymous_scopes(listen).into_iter().collect(),
            tokens,
        }
    }

    /// Whether a request with these headers may use `scope`.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<(), Denied> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            return if self.anonymous.contains(&scope) {
                Ok(())
            } else {
                Err(Denied::NeedsToken(scope))
            };
        };
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        match self.tokens.get(&digest) {
            None => Err(Denied::UnknownToken),
            Some((_, scopes)) if scopes.contains(&scope) => Ok(()),
            Some((who, _)) => Err(Denied::MissingScope {
                who: who.clone(),
                scope,
            }),
        }
    }

    /// The scopes anonymous requests have (for the start-up log).
    pub fn anonymous(&self) -> Vec<&'static str> {
        self.anonymous.iter().map(|s| s.name()).collect()
    }
}

/// The scope a route needs; `None` for paths that are no route (they answer 404).
pub fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    let scope = match path {
        "/v1/status" => Scope::Status,
        "/v1/tx" | "/v1/txs" if method == Method::POST => Scope::Submit,
        "/v1/events" => Scope::Events,
        "/metrics" => Scope::Metrics,
        p if p.starts_with("/v1/nonce/") => Scope::Submit,
        p if p.starts_with("/v1/proof/") => Scope::Proofs,
        p if p.starts_with("/v1/tx/")
            || p.starts_with("/v1/blocks/")
            || p.starts_with("/v1/state/") =>
        {
            Scope::Read
        }
        _ => return None,
    };
    Some(scope)
}

/// A token and the line of `node.toml` that grants it, for `cbec api token`.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_genesis::ApiToken;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        h
    }

    #[test]
    fn loopback_is_open_by_default_and_anywhere_else_only_status_is() {
        let settings = ApiSettings::default();
        let local = Access::new(&settings, &"127.0.0.1:8080".parse().expect("addr"));
        for scope in Scope::ALL {
            assert_eq!(local.check(&headers(None), scope), Ok(()));
        }
        let exposed = Access::new(&settings, &"0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(exposed.check(&headers(None), Scope::Status), Ok(()));
        for scope in [
            Scope::Submit,
            Scope::Read,
            Scope::Proofs,
            Scope::Events,
            Scope::Metrics,
        ] {
            assert_eq!(
                exposed.check(&headers(None), scope),
                Err(Denied::NeedsToken(scope))
            );
        }
    }

    #[test]
    fn tokens_grant_their_scopes_only() {
        let settings = ApiSettings {
            anonymous: Some(vec![Scope::Status]),
            tokens: vec![ApiToken {
                name: "auditor".into(),
                sha256: token_digest("s3cret"),
                scopes: vec![Scope::Proofs, Scope::Read],
            }],
            ..ApiSettings::default()
        };
        let access = Access::new(&settings, &"127.0.0.1:1".parse().expect("addr"));
        assert_eq!(
            access.check(&headers(Some("s3cret")), Scope::Proofs),
            Ok(())
        );
        assert_eq!(
            access.check(&headers(Some("s3cret")), Scope::Submit),
            Err(Denied::MissingScope {
                who: "auditor".into(),
                scope: Scope::Submit
            })
        );
        assert_eq!(
            access.check(&headers(Some("guess")), Scope::Status),
            Err(Denied::UnknownToken),
            "a wrong token is refused even where anonymous requests are allowed"
        );
        assert_eq!(
            access.check(&headers(None), Scope::Read),
            Err(Denied::NeedsToken(Scope::Read))
        );
    }

    #[test]
    fn every_route_has_its_scope() {
        let cases = [
            (Method::GET, "/v1/status", Some(Scope::Status)),
            (Method::POST, "/v1/tx", Some(Scope::Submit)),
            (Method::POST, "/v1/txs", Some(Scope::Submit)),
            (Method::GET, "/v1/nonce/ab", Some(Scope::Submit)),
            (Method::GET, "/v1/tx/ab", Some(Scope::Read)),
            (Method::GET, "/v1/blocks/3", Some(Scope::Read)),
            (Method::GET, "/v1/state/k", Some(Scope::Read)),
            (Method::GET, "/v1/proof/tx/ab", Some(Scope::Proofs)),
            (Method::GET, "/v1/events", Some(Scope::Events)),
            (Method::GET, "/metrics", Some(Scope::Metrics)),
            (Method::GET, "/nope", None),
        ];
        for (method, path, scope) in cases {
            assert_eq!(scope_of(&method, path), scope, "{method} {path}");
        }
    }
}
