//! Goods traceability [DOMAIN.md 3]: each event of a good names the hash of the good's
//! previous event, so its history cannot fork; the head of the chain is in state under
//! the good's id. Each kind of event needs a fitting role.
//!
//! Custody [DOMAIN.md 4, "Who may file what"]: the enterprise that records a good's
//! first event holds it; an event may hand it to another filed enterprise with the
//! attribute `handover_to` (its customs registration code). After that, an enterprise's
//! event is taken only from the current custodian or the party it was handed to (who
//! then holds it); any other is refused with `ROLE`, naming both. Agencies record their
//! own kinds (customs: cleared, held, rejected) whoever holds the good.

pub use cbec_ledger::goods::{event_key, head_key, EventKind, Head, RecordEvent, StoredEvent};
use cbec_ledger::{Event, Hash};

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::context::{Caller, Context, Role};
use crate::{check_code, codes, decode_args, event, methods, no_method, Chaincode, RuleError};

/// Who may record an event of a kind: enterprise roles, or an agency.
enum Actor {
    Roles(&'static [Role]),
    Agency(&'static str),
}

fn actor_of(kind: EventKind) -> Actor {
    match kind {
        EventKind::Produced => Actor::Roles(&[Role::Manufacturer]),
        EventKind::Ordered => Actor::Roles(&[Role::Seller, Role::Platform]),
        EventKind::Paid => Actor::Roles(&[Role::Payment]),
        EventKind::Shipped | EventKind::Delivered => Actor::Roles(&[Role::Logistics]),
        EventKind::Warehoused => Actor::Roles(&[Role::Warehouse]),
        EventKind::Declared => Actor::Roles(&[Role::Agent]),
        EventKind::Cleared | EventKind::Held | EventKind::Rejected => Actor::Agency("customs"),
        EventKind::Returned => Actor::Roles(&[Role::Seller, Role::Platform]),
        EventKind::Evaluated => Actor::Roles(&[Role::Platform]),
    }
}

methods! {
    "record" => RecordEvent,
}

/// Who holds a good, and to whom its last handover went (USCCs).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Custody {
    pub custodian: String,
    pub handed_to: Option<String>,
}

/// Where a good's [`Custody`] is kept.
pub fn custody_key(goods_id: &str) -> String {
    format!("goods/custody/{goods_id}")
}

/// The attribute that hands a good to another enterprise (its customs code).
pub const HANDOVER: &str = "handover_to";

/// Attribute limits: a bound on what one event may store.
const ATTRIBUTES_MAX: usize = 32;
const ATTRIBUTE_BYTES_MAX: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct Goods;

impl Chaincode for Goods {
    fn id(&self) -> &'static str {
        "goods"
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
            "record" => record(ctx, decode_args(args)?),
            other => Err(no_method(self.id(), other, METHODS)),
        }
    }
}

/// Goods ids: 1-64 characters of A-Z, 0-9, `-`, `_`, `.`.
pub fn check_goods_id(id: &str) -> Result<(), RuleError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RuleError::new(
            "NON-CANONICAL",
            format!("goods id `{id}` must be 1-64 characters of A-Z, 0-9, -, _, ."),
        ))
    }
}

fn record(ctx: &mut Context<'_, '_>, args: RecordEvent) -> Result<Vec<Event>, RuleError> {
    check_goods_id(&args.goods_id)?;
    let actor = match actor_of(args.kind) {
        Actor::Agency(agency) => {
            ctx.require_agency(agency)?;
            agency.to_string()
        }
        Actor::Roles(roles) => match &ctx.caller {
            Caller::Enterprise {
                uscc, roles: held, ..
            } if roles.iter().any(|r| held.contains(r)) => uscc.clone(),
            Caller::Enterprise { uscc, .. } => {
                return Err(RuleError::new(
                    "ROLE",
                    format!(
                        "{uscc} may not record `{:?}`: it needs one of {roles:?}",
                        args.kind
                    ),
                ))
            }
            _ => {
                return Err(RuleError::new(
                    "FILING",
                    format!("`{:?}` must be recorded by a filed enterprise", args.kind),
                ))
            }
        },
    };
    if args.attributes.len() > ATTRIBUTES_MAX
        || args
            .attributes
            .iter()
            .any(|(k, v)| k.len() + v.len() > ATTRIBUTE_BYTES_MAX)
    {
        return Err(RuleError::new(
            "ARGS",
            format!("at most {ATTRIBUTES_MAX} attributes of {ATTRIBUTE_BYTES_MAX} bytes each"),
        ));
    }
    if let Some(gtin) = args.attributes.get("gtin") {
        check_code("GTIN", "GTIN", gtin, codes::gtin13)?;
    }
    if let Some(code) = args.attributes.get("commodity_code") {
        check_code("HS-CODE", "commodity code", code, codes::commodity_code)?;
    }
    let key = head_key(&args.goods_id);
    let head: Option<Head> = ctx.get(&key)?;
    let expected = head.as_ref().map(|h| h.last);
    if args.prev != expected {
        let shown = |h: Option<Hash>| h.map_or("none (first event)".to_string(), |h| h.to_string());
        return Err(RuleError::new(
            "GOODS-PREV",
            format!(
                "event names previous {}, but the head of {} is {}",
                shown(args.prev),
                args.goods_id,
                shown(expected)
            ),
        ));
    }
    let enterprise = matches!(ctx.caller, Caller::Enterprise { .. });
    let custody_at = custody_key(&args.goods_id);
    let mut custody: Option<Custody> = ctx.get(&custody_at)?;
    if enterprise {
        custody = Some(match custody {
            None => Custody {
                custodian: actor.clone(),
                handed_to: None,
            },
            Some(c) if c.custodian == actor => c,
            Some(c) if c.handed_to.as_deref() == Some(actor.as_str()) => Custody {
                custodian: actor.clone(),
                handed_to: None,
            },
            Some(c) => {
                let handed = c
                    .handed_to
                    .map_or(String::new(), |to| format!(", handed to {to}"));
                return Err(RuleError::new(
                    "ROLE",
                    format!(
                        "{} is held by {}{handed}; {actor} may not record its events",
                        args.goods_id, c.custodian
                    ),
                ));
            }
        });
    }
    if let Some(code) = args.attributes.get(HANDOVER) {
        if !enterprise {
            return Err(RuleError::new(
                "ARGS",
                "only the enterprise holding a good hands it over",
            ));
        }
        check_code("ARGS", HANDOVER, code, codes::customs_code)?;
        let to = crate::enterprise::active_filing_by_customs_code(ctx, code)
            .map_err(|e| RuleError::new("FILING", format!("{HANDOVER} {code}: {e}")))?
            .uscc;
        if let Some(c) = custody.as_mut() {
            c.handed_to = Some(to);
        }
    }
    if let Some(c) = &custody {
        ctx.put(&custody_at, c)?;
    }
    let stored = StoredEvent {
        goods_id: args.goods_id.clone(),
        seq: head.as_ref().map_or(0, |h| h.count),
        kind: args.kind,
        prev: args.prev,
        actor: actor.clone(),
        attributes: args.attributes,
        height: ctx.block.height,
        time_ms: ctx.block.time_ms,
        tx_hash: ctx.tx_hash,
    };
    let hash = stored.hash(ctx.block.suite);
    let new_head = Head {
        first: head.as_ref().map_or(hash, |h| h.first),
        last: hash,
        count: stored.seq + 1,
    };
    ctx.put(&event_key(&hash), &stored)?;
    ctx.put(&key, &new_head)?;
    Ok(vec![event(
        "goods_event",
        &[
            ("goods_id", args.goods_id),
            ("kind", format!("{:?}", args.kind).to_lowercase()),
            ("event_hash", hash.to_string()),
            ("seq", stored.seq.to_string()),
            ("actor", actor),
        ],
    )])
}
