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
//!
//! Lots and splits [issue 18]: a `produced` event may state a `quantity`; its holder
//! may `split` the good into named children (up to 1,000 per transaction) that together
//! take no more than it still holds (`GOODS-QTY`, a rule id added here). The parent's
//! chain gets a `split` event; each child's first event is `derived`, naming the parent
//! and the split event's hash, so a child's provenance reaches back through its lot.
//!
//! Containers: `aggregate` packs goods into a container and `disaggregate` takes them
//! out; a good is in one container at a time (`GOODS-PACK`, a rule id added here).
//!
//! Transformations: `transform` consumes quantities of up to 16 inputs the caller
//! holds (none more than it holds, `GOODS-QTY`; none inside a container, `GOODS-PACK`)
//! and makes up to 1,000 new outputs: each input's chain gets a `consumed` event, each
//! output's first event is `transformed`, naming every input and its `consumed` event.

pub use cbec_ledger::goods::{
    aggregate_events, event_key, head_key, packed_key, quantity_key, split_events,
    transform_events, AggregateArgs, Child, EventKind, Head, Input, Member, Output, RecordEvent,
    RecordedAt, SplitArgs, StoredEvent, TransformArgs, SPLIT_ATTRIBUTES, SPLIT_CHILDREN_MAX,
    TRANSFORM_ATTRIBUTES, TRANSFORM_INPUTS_MAX,
};
use std::collections::BTreeMap;

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
        // Whoever holds a lot may split it: its maker, a warehouse, its seller.
        // Whoever holds the inputs transforms them: a processing maker, a warehouse that
        // cuts and packs, a seller.
        EventKind::Split | EventKind::Derived | EventKind::Consumed | EventKind::Transformed => {
            Actor::Roles(&[Role::Manufacturer, Role::Warehouse, Role::Seller])
        }
        // Packing into cases and containers: warehouses, logistics, makers, sellers.
        EventKind::Aggregated
        | EventKind::Disaggregated
        | EventKind::Packed
        | EventKind::Unpacked => Actor::Roles(&[
            Role::Warehouse,
            Role::Logistics,
            Role::Manufacturer,
            Role::Seller,
        ]),
    }
}

methods! {
    "record" => RecordEvent,
    "split" => SplitArgs,
    "aggregate" => AggregateArgs,
    "disaggregate" => AggregateArgs,
    "transform" => TransformArgs,
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
            "split" => split(ctx, decode_args(args)?),
            "aggregate" => aggregate(ctx, decode_args(args)?, false),
            "disaggregate" => aggregate(ctx, decode_args(args)?, true),
            "transform" => transform(ctx, decode_args(args)?),
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

/// Who records an event of `kind`: the agency it needs, or the caller's USCC if the
/// caller is a filed enterprise with a fitting role.
fn actor(ctx: &Context<'_, '_>, kind: EventKind) -> Result<String, RuleError> {
    Ok(match actor_of(kind) {
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
                        kind
                    ),
                ))
            }
            _ => {
                return Err(RuleError::new(
                    "FILING",
                    format!("`{:?}` must be recorded by a filed enterprise", kind),
                ))
            }
        },
    })
}

/// The bounds on an event's attributes, and the codes among them checked.
fn check_attributes(attributes: &BTreeMap<String, String>) -> Result<(), RuleError> {
    if attributes.len() > ATTRIBUTES_MAX
        || attributes
            .iter()
            .any(|(k, v)| k.len() + v.len() > ATTRIBUTE_BYTES_MAX)
    {
        return Err(RuleError::new(
            "ARGS",
            format!("at most {ATTRIBUTES_MAX} attributes of {ATTRIBUTE_BYTES_MAX} bytes each"),
        ));
    }
    if let Some(gtin) = attributes.get("gtin") {
        check_code("GTIN", "GTIN", gtin, codes::gtin13)?;
    }
    if let Some(code) = attributes.get("commodity_code") {
        check_code("HS-CODE", "commodity code", code, codes::commodity_code)?;
    }
    Ok(())
}

/// The custody of `goods_id` once `actor` records an event of it: the custodian, or the
/// party it was handed to (who then holds it), or the first recorder; another
/// enterprise is refused with `ROLE`. Agencies record whoever holds it (`None` left as
/// it is).
fn custody_for(
    ctx: &Context<'_, '_>,
    goods_id: &str,
    actor: &str,
) -> Result<Option<Custody>, RuleError> {
    let enterprise = matches!(ctx.caller, Caller::Enterprise { .. });
    let custody: Option<Custody> = ctx.get(&custody_key(goods_id))?;
    if enterprise {
        return Ok(Some(match custody {
            None => Custody {
                custodian: actor.to_string(),
                handed_to: None,
            },
            Some(c) if c.custodian == actor => c,
            Some(c) if c.handed_to.as_deref() == Some(actor) => Custody {
                custodian: actor.to_string(),
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
                        goods_id, c.custodian
                    ),
                ));
            }
        }));
    }
    Ok(custody)
}

fn record(ctx: &mut Context<'_, '_>, args: RecordEvent) -> Result<Vec<Event>, RuleError> {
    check_goods_id(&args.goods_id)?;
    if matches!(
        args.kind,
        EventKind::Split
            | EventKind::Derived
            | EventKind::Aggregated
            | EventKind::Disaggregated
            | EventKind::Packed
            | EventKind::Unpacked
            | EventKind::Consumed
            | EventKind::Transformed
    ) {
        return Err(RuleError::new(
            "ARGS",
            "split, packing and transformation events are recorded by `split`, `aggregate`, \
             `disaggregate` and `transform`, not `record`",
        ));
    }
    let actor = actor(ctx, args.kind)?;
    check_attributes(&args.attributes)?;
    let head: Option<Head> = ctx.get(&head_key(&args.goods_id))?;
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
    let mut custody = custody_for(ctx, &args.goods_id, &actor)?;
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
    if args.kind == EventKind::Produced {
        if let Some(quantity) = args.attributes.get("quantity") {
            let quantity = positive_quantity(quantity)?;
            ctx.put(&quantity_key(&args.goods_id), &quantity)?;
        }
    }
    let stored = StoredEvent {
        goods_id: args.goods_id.clone(),
        seq: head.as_ref().map_or(0, |h| h.count),
        kind: args.kind,
        prev: args.prev,
        actor,
        attributes: args.attributes,
        height: ctx.block.height,
        time_ms: ctx.block.time_ms,
        tx_hash: ctx.tx_hash,
    };
    Ok(vec![append(ctx, stored, head.as_ref())?])
}

/// Where a transaction of this context records its goods events, by `actor`.
fn recorded_at<'a>(ctx: &Context<'_, '_>, actor: &'a str) -> RecordedAt<'a> {
    RecordedAt {
        actor,
        height: ctx.block.height,
        time_ms: ctx.block.time_ms,
        tx_hash: ctx.tx_hash,
    }
}

/// A quantity attribute: a positive integer.
fn positive_quantity(text: &str) -> Result<u64, RuleError> {
    match text.parse::<u64>() {
        Ok(q) if q > 0 => Ok(q),
        _ => Err(RuleError::new(
            "ARGS",
            format!("quantity `{text}` is not a positive integer"),
        )),
    }
}

/// Stores `stored` as the good's newest event after `head`, moves the head, and
/// announces it (the result event a verifier rebuilds it from).
fn append(
    ctx: &mut Context<'_, '_>,
    stored: StoredEvent,
    head: Option<&Head>,
) -> Result<Event, RuleError> {
    let hash = stored.hash(ctx.block.suite);
    let new_head = Head {
        first: head.map_or(hash, |h| h.first),
        last: hash,
        count: stored.seq + 1,
    };
    ctx.put(&event_key(&hash), &stored)?;
    ctx.put(&head_key(&stored.goods_id), &new_head)?;
    Ok(event(
        "goods_event",
        &[
            ("goods_id", stored.goods_id.clone()),
            ("kind", format!("{:?}", stored.kind).to_lowercase()),
            ("event_hash", hash.to_string()),
            ("seq", stored.seq.to_string()),
            ("actor", stored.actor.clone()),
        ],
    ))
}

/// Splits a lot or case into children in one transaction [issue 18]: the holder of the
/// parent names each child and the quantity it takes; the children together take no
/// more than the parent still holds (`GOODS-QTY`). The parent's chain gets a `split`
/// event, each child a first `derived` event naming the parent and that event's hash
/// ([`split_events`]); each child is held by the splitter and holds its quantity.
fn split(ctx: &mut Context<'_, '_>, args: SplitArgs) -> Result<Vec<Event>, RuleError> {
    check_goods_id(&args.goods_id)?;
    let actor = actor(ctx, EventKind::Split)?;
    check_attributes(&args.attributes)?;
    if let Some(reserved) = SPLIT_ATTRIBUTES
        .iter()
        .find(|k| args.attributes.contains_key(**k))
    {
        return Err(RuleError::new(
            "ARGS",
            format!("`{reserved}` is written by the split itself"),
        ));
    }
    if args.children.is_empty() || args.children.len() > SPLIT_CHILDREN_MAX {
        return Err(RuleError::new(
            "ARGS",
            format!("a split names 1-{SPLIT_CHILDREN_MAX} children"),
        ));
    }
    let head: Head = ctx.get(&head_key(&args.goods_id))?.ok_or_else(|| {
        RuleError::new("NOT-FOUND", format!("no good {} to split", args.goods_id))
    })?;
    if args.prev != head.last {
        return Err(RuleError::new(
            "GOODS-PREV",
            format!(
                "the split names previous {}, but the head of {} is {}",
                args.prev, args.goods_id, head.last
            ),
        ));
    }
    let custody = custody_for(ctx, &args.goods_id, &actor)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut total: u64 = 0;
    for child in &args.children {
        check_goods_id(&child.goods_id)?;
        if child.goods_id == args.goods_id || !seen.insert(child.goods_id.as_str()) {
            return Err(RuleError::new(
                "ARGS",
                format!("child {} is named twice, or is the parent", child.goods_id),
            ));
        }
        if child.quantity == 0 {
            return Err(RuleError::new(
                "ARGS",
                format!("child {} takes no quantity", child.goods_id),
            ));
        }
        if ctx.exists(&head_key(&child.goods_id))? {
            return Err(RuleError::new(
                "DUPLICATE",
                format!("good {} exists already", child.goods_id),
            ));
        }
        total = total.saturating_add(child.quantity);
    }
    let held: u64 = ctx.get(&quantity_key(&args.goods_id))?.ok_or_else(|| {
        RuleError::new(
            "GOODS-QTY",
            format!(
                "{} holds no recorded quantity (its `produced` event names none)",
                args.goods_id
            ),
        )
    })?;
    if total > held {
        return Err(RuleError::new(
            "GOODS-QTY",
            format!(
                "the children take {total}, but {} holds {held}",
                args.goods_id
            ),
        ));
    }
    ctx.put(&quantity_key(&args.goods_id), &(held - total))?;
    if let Some(c) = &custody {
        ctx.put(&custody_key(&args.goods_id), c)?;
    }
    let (parent, children) =
        split_events(&args, head.count, recorded_at(ctx, &actor), ctx.block.suite);
    let mut announced = vec![append(ctx, parent, Some(&head))?];
    let held_by = Custody {
        custodian: actor.clone(),
        handed_to: None,
    };
    for (child, spec) in children.into_iter().zip(&args.children) {
        ctx.put(&quantity_key(&child.goods_id), &spec.quantity)?;
        ctx.put(&custody_key(&child.goods_id), &held_by)?;
        announced.push(append(ctx, child, None)?);
    }
    Ok(announced)
}

/// Packs goods into a container, or (`unpack`) takes them out [issue 18]: the holder of
/// the container and of every good records it in one transaction. The container's chain
/// gets an `aggregated` (`disaggregated`) event; each good a `packed` (`unpacked`) event
/// naming the container and that event's hash ([`aggregate_events`]). A good is in at
/// most one container at a time, and is taken only out of the one it is in
/// (`GOODS-PACK`, a rule id added here).
fn aggregate(
    ctx: &mut Context<'_, '_>,
    args: AggregateArgs,
    unpack: bool,
) -> Result<Vec<Event>, RuleError> {
    check_goods_id(&args.container)?;
    let kind = if unpack {
        EventKind::Disaggregated
    } else {
        EventKind::Aggregated
    };
    let actor = actor(ctx, kind)?;
    check_attributes(&args.attributes)?;
    if args.attributes.contains_key("children") {
        return Err(RuleError::new(
            "ARGS",
            "`children` is written by the packing itself",
        ));
    }
    if args.children.is_empty() || args.children.len() > SPLIT_CHILDREN_MAX {
        return Err(RuleError::new(
            "ARGS",
            format!("a packing names 1-{SPLIT_CHILDREN_MAX} goods"),
        ));
    }
    let container_head: Option<Head> = ctx.get(&head_key(&args.container))?;
    if args.prev != container_head.as_ref().map(|h| h.last) || (unpack && container_head.is_none())
    {
        return Err(RuleError::new(
            "GOODS-PREV",
            format!(
                "the packing names {} as the head of container {}, which is not its head",
                args.prev.map_or("none".to_string(), |h| h.to_string()),
                args.container
            ),
        ));
    }
    let mut heads = std::collections::BTreeMap::new();
    heads.insert(args.container.clone(), container_head.clone());
    let mut custodies = vec![(
        args.container.clone(),
        custody_for(ctx, &args.container, &actor)?,
    )];
    for m in &args.children {
        check_goods_id(&m.goods_id)?;
        if m.goods_id == args.container || heads.contains_key(&m.goods_id) {
            return Err(RuleError::new(
                "ARGS",
                format!("{} is named twice, or is the container", m.goods_id),
            ));
        }
        let head: Head = ctx
            .get(&head_key(&m.goods_id))?
            .ok_or_else(|| RuleError::new("NOT-FOUND", format!("no good {}", m.goods_id)))?;
        if m.prev != head.last {
            return Err(RuleError::new(
                "GOODS-PREV",
                format!(
                    "the packing names previous {} for {}, whose head is {}",
                    m.prev, m.goods_id, head.last
                ),
            ));
        }
        let inside: Option<String> = ctx.get(&packed_key(&m.goods_id))?;
        match (unpack, inside) {
            (false, Some(c)) => {
                return Err(RuleError::new(
                    "GOODS-PACK",
                    format!("{} is in container {c} already", m.goods_id),
                ))
            }
            (true, inside) if inside.as_deref() != Some(args.container.as_str()) => {
                return Err(RuleError::new(
                    "GOODS-PACK",
                    format!("{} is not in container {}", m.goods_id, args.container),
                ))
            }
            _ => {}
        }
        custodies.push((m.goods_id.clone(), custody_for(ctx, &m.goods_id, &actor)?));
        heads.insert(m.goods_id.clone(), Some(head));
    }
    for (goods_id, custody) in &custodies {
        if let Some(c) = custody {
            ctx.put(&custody_key(goods_id), c)?;
        }
    }
    for m in &args.children {
        if unpack {
            ctx.delete(&packed_key(&m.goods_id))?;
        } else {
            ctx.put(&packed_key(&m.goods_id), &args.container)?;
        }
    }
    let seq_of = |id: &str| {
        heads
            .get(id)
            .and_then(|h| h.as_ref())
            .map_or(0, |h| h.count)
    };
    let (container, members) = aggregate_events(
        &args,
        unpack,
        seq_of,
        recorded_at(ctx, &actor),
        ctx.block.suite,
    );
    let mut announced = vec![append(ctx, container, container_head.as_ref())?];
    for member in members {
        let head = heads.get(&member.goods_id).cloned().flatten();
        announced.push(append(ctx, member, head.as_ref())?);
    }
    Ok(announced)
}

/// Transforms inputs into outputs in one transaction [issue 18]: the holder of every
/// input names the quantity each gives up (no more than it holds, `GOODS-QTY`) and the
/// new goods made, each with its own quantity and facts. Each input's chain gets a
/// `consumed` event, each output a first `transformed` event naming every input and its
/// `consumed` event ([`transform_events`]); the outputs are held by the transformer.
fn transform(ctx: &mut Context<'_, '_>, args: TransformArgs) -> Result<Vec<Event>, RuleError> {
    let actor = actor(ctx, EventKind::Transformed)?;
    let reserved = |attributes: &BTreeMap<String, String>| -> Result<(), RuleError> {
        check_attributes(attributes)?;
        match TRANSFORM_ATTRIBUTES
            .iter()
            .find(|k| attributes.contains_key(**k))
        {
            Some(k) => Err(RuleError::new(
                "ARGS",
                format!("`{k}` is written by the transformation itself"),
            )),
            None => Ok(()),
        }
    };
    reserved(&args.attributes)?;
    if args.inputs.is_empty() || args.inputs.len() > TRANSFORM_INPUTS_MAX {
        return Err(RuleError::new(
            "ARGS",
            format!("a transformation consumes 1-{TRANSFORM_INPUTS_MAX} inputs"),
        ));
    }
    if args.outputs.is_empty() || args.outputs.len() > SPLIT_CHILDREN_MAX {
        return Err(RuleError::new(
            "ARGS",
            format!("a transformation makes 1-{SPLIT_CHILDREN_MAX} outputs"),
        ));
    }
    let mut heads = BTreeMap::new();
    let mut custodies = Vec::with_capacity(args.inputs.len());
    for input in &args.inputs {
        check_goods_id(&input.goods_id)?;
        if heads.contains_key(&input.goods_id) {
            return Err(RuleError::new(
                "ARGS",
                format!("input {} is named twice", input.goods_id),
            ));
        }
        let head: Head = ctx.get(&head_key(&input.goods_id))?.ok_or_else(|| {
            RuleError::new(
                "NOT-FOUND",
                format!("no good {} to transform", input.goods_id),
            )
        })?;
        if input.prev != head.last {
            return Err(RuleError::new(
                "GOODS-PREV",
                format!(
                    "the transformation names previous {} for {}, whose head is {}",
                    input.prev, input.goods_id, head.last
                ),
            ));
        }
        custodies.push((
            input.goods_id.clone(),
            custody_for(ctx, &input.goods_id, &actor)?,
        ));
        if let Some(container) = ctx.get::<String>(&packed_key(&input.goods_id))? {
            return Err(RuleError::new(
                "GOODS-PACK",
                format!(
                    "{} is in container {container}; take it out before transforming it",
                    input.goods_id
                ),
            ));
        }
        if input.quantity == 0 {
            return Err(RuleError::new(
                "ARGS",
                format!("input {} gives up no quantity", input.goods_id),
            ));
        }
        let held: u64 = ctx.get(&quantity_key(&input.goods_id))?.ok_or_else(|| {
            RuleError::new(
                "GOODS-QTY",
                format!("{} holds no recorded quantity", input.goods_id),
            )
        })?;
        if input.quantity > held {
            return Err(RuleError::new(
                "GOODS-QTY",
                format!(
                    "the transformation consumes {} of {}, which holds {held}",
                    input.quantity, input.goods_id
                ),
            ));
        }
        ctx.put(&quantity_key(&input.goods_id), &(held - input.quantity))?;
        heads.insert(input.goods_id.clone(), head);
    }
    let mut seen = std::collections::BTreeSet::new();
    for output in &args.outputs {
        check_goods_id(&output.goods_id)?;
        if heads.contains_key(&output.goods_id) || !seen.insert(output.goods_id.as_str()) {
            return Err(RuleError::new(
                "ARGS",
                format!("output {} is named twice, or is an input", output.goods_id),
            ));
        }
        if output.quantity == 0 {
            return Err(RuleError::new(
                "ARGS",
                format!("output {} has no quantity", output.goods_id),
            ));
        }
        let mut merged = args.attributes.clone();
        merged.extend(output.attributes.clone());
        reserved(&merged)?;
        if ctx.exists(&head_key(&output.goods_id))? {
            return Err(RuleError::new(
                "DUPLICATE",
                format!("good {} exists already", output.goods_id),
            ));
        }
    }
    for (goods_id, custody) in &custodies {
        if let Some(c) = custody {
            ctx.put(&custody_key(goods_id), c)?;
        }
    }
    let (consumed, made) = transform_events(
        &args,
        |id| heads.get(id).map_or(0, |h| h.count),
        recorded_at(ctx, &actor),
        ctx.block.suite,
    );
    let mut announced = Vec::with_capacity(consumed.len() + made.len());
    for event in consumed {
        let head = heads.get(&event.goods_id).cloned();
        announced.push(append(ctx, event, head.as_ref())?);
    }
    let held_by = Custody {
        custodian: actor.clone(),
        handed_to: None,
    };
    for (event, output) in made.into_iter().zip(&args.outputs) {
        ctx.put(&quantity_key(&output.goods_id), &output.quantity)?;
        ctx.put(&custody_key(&output.goods_id), &held_by)?;
        announced.push(append(ctx, event, None)?);
    }
    Ok(announced)
}
