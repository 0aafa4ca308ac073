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
/// The method that splits a good into children in one transaction.
pub const SPLIT_METHOD: &str = "split";
/// Most children one split transaction creates (a larger lot takes several splits).
pub const SPLIT_CHILDREN_MAX: usize = 1_000;
/// The attributes a split writes itself: on the parent's event (`children`,
/// `quantity`) and on each child's first event (`parent`, `parent_event`, `quantity`).
pub const SPLIT_ATTRIBUTES: [&str; 4] = ["children", "quantity", "parent", "parent_event"];
/// The methods that pack goods into a container and take them out again.
pub const AGGREGATE_METHOD: &str = "aggregate";
pub const DISAGGREGATE_METHOD: &str = "disaggregate";
/// The method that transforms inputs into outputs (meat cut and packed, goods mixed
/// or processed): several goods consumed, several made, in one transaction.
pub const TRANSFORM_METHOD: &str = "transform";
/// Most inputs one transformation consumes.
pub const TRANSFORM_INPUTS_MAX: usize = 16;
/// The attributes a transformation writes itself: on each input's `consumed` event
/// (`quantity`, `outputs`) and on each output's first `transformed` event (`inputs`,
/// `input_events`, `quantity`).
pub const TRANSFORM_ATTRIBUTES: [&str; 4] = ["inputs", "input_events", "outputs", "quantity"];
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
    /// A lot or case split into children (`split`): on the parent's chain.
    Split,
    /// A child's first event, made by its parent's split: names the parent and the
    /// parent's split event.
    Derived,
    /// Goods packed into this container (`aggregate`): on the container's chain.
    Aggregated,
    /// Goods taken out of this container (`disaggregate`): on the container's chain.
    Disaggregated,
    /// This good packed into a container: names the container and its event.
    Packed,
    /// This good taken out of its container: names the container and its event.
    Unpacked,
    /// This good (or part of it) consumed by a transformation (`transform`): on each
    /// input's chain.
    Consumed,
    /// An output's first event, made by a transformation: names every input and each
    /// input's `consumed` event.
    Transformed,
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

/// One child of a split: its goods id and the quantity it takes from the parent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Child {
    pub goods_id: String,
    pub quantity: u64,
}

/// The arguments of `split`: the parent, its current head, the children it is split
/// into, and facts of the split.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SplitArgs {
    pub goods_id: String,
    pub prev: Hash,
    pub children: Vec<Child>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A good packed into or taken out of a container, and its current head.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Member {
    pub goods_id: String,
    pub prev: Hash,
}

/// The arguments of `aggregate` and `disaggregate`: the container (its head, or none to
/// start a new container by packing), the goods, and facts of the packing.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AggregateArgs {
    pub container: String,
    #[serde(default)]
    pub prev: Option<Hash>,
    pub children: Vec<Member>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A good a transformation consumes: its current head and the quantity it gives up.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Input {
    pub goods_id: String,
    pub prev: Hash,
    pub quantity: u64,
}

/// A good a transformation makes: its id, its quantity (in its own unit: packs, not
/// kilograms) and facts of its own (its `gtin`, say).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Output {
    pub goods_id: String,
    pub quantity: u64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The arguments of `transform`: what is consumed, what is made, and facts of the
/// transformation (on every event it records).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct TransformArgs {
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The events one `transform` records: each input's `consumed` event (in input order),
/// then each output's first (`transformed`) event naming every input and its `consumed`
/// event's hash. `seq_of` gives an input's event number (its event count before this).
pub fn transform_events(
    args: &TransformArgs,
    seq_of: impl Fn(&str) -> u64,
    at: RecordedAt<'_>,
    suite: Suite,
) -> (Vec<StoredEvent>, Vec<StoredEvent>) {
    let consumed: Vec<StoredEvent> = args
        .inputs
        .iter()
        .map(|input| {
            let mut attributes = args.attributes.clone();
            attributes.insert("quantity".into(), input.quantity.to_string());
            attributes.insert("outputs".into(), args.outputs.len().to_string());
            at.event(
                &input.goods_id,
                seq_of(&input.goods_id),
                EventKind::Consumed,
                Some(input.prev),
                attributes,
            )
        })
        .collect();
    let inputs: Vec<&str> = args.inputs.iter().map(|i| i.goods_id.as_str()).collect();
    let input_events: Vec<String> = consumed.iter().map(|e| e.hash(suite).to_string()).collect();
    let made = args
        .outputs
        .iter()
        .map(|output| {
            let mut attributes = args.attributes.clone();
            attributes.extend(output.attributes.clone());
            attributes.insert("inputs".into(), inputs.join(","));
            attributes.insert("input_events".into(), input_events.join(","));
            attributes.insert("quantity".into(), output.quantity.to_string());
            at.event(
                &output.goods_id,
                0,
                EventKind::Transformed,
                None,
                attributes,
            )
        })
        .collect();
    (consumed, made)
}

/// A good another was made from, and the event on its chain that made it: a split's
/// parent (its `split` event) or a transformation's input (its `consumed` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub goods_id: String,
    pub event: Hash,
    /// The kind that event must be: `Split` or `Consumed`.
    pub kind: EventKind,
}

/// The goods a good was made from, read from its first event: a `derived` event's
/// parent, a `transformed` event's inputs, none for any other (a good made from
/// nothing recorded here). An error names the attribute that is malformed.
pub fn sources(
    kind: EventKind,
    attributes: &BTreeMap<String, String>,
) -> Result<Vec<Source>, String> {
    let get = |key: &str| {
        attributes
            .get(key)
            .ok_or_else(|| format!("the {kind:?} event has no `{key}`").to_lowercase())
    };
    let hash = |key: &str, text: &str| {
        text.parse::<Hash>()
            .map_err(|e| format!("`{key}` {text}: {e}"))
    };
    match kind {
        EventKind::Derived => Ok(vec![Source {
            goods_id: get("parent")?.clone(),
            event: hash("parent_event", get("parent_event")?)?,
            kind: EventKind::Split,
        }]),
        EventKind::Transformed => {
            let inputs: Vec<&str> = get("inputs")?.split(',').collect();
            let events: Vec<&str> = get("input_events")?.split(',').collect();
            if inputs.len() != events.len() {
                return Err(format!(
                    "`inputs` names {} goods, `input_events` {} events",
                    inputs.len(),
                    events.len()
                ));
            }
            inputs
                .into_iter()
                .zip(events)
                .map(|(id, event)| {
                    Ok(Source {
                        goods_id: id.to_string(),
                        event: hash("input_events", event)?,
                        kind: EventKind::Consumed,
                    })
                })
                .collect()
        }
        _ => Ok(Vec::new()),
    }
}

/// Walks a good's lineage in the order a proof carries it: breadth first from the
/// sources of the good's own first event, each (good, event) once (a lot reached
/// through two of its children is carried once). `visit` handles one source, given
/// what it was reached from (`below`), and answers the sources of that ancestor's
/// first event and what they are reached from. The prover and the verifier both walk
/// through here, so they agree on the order.
pub fn walk_lineage<B: Clone, E>(
    start: Vec<Source>,
    below: B,
    mut visit: impl FnMut(&Source, &B) -> Result<(Vec<Source>, B), E>,
) -> Result<(), E> {
    let mut queue: std::collections::VecDeque<(Source, B)> =
        start.into_iter().map(|s| (s, below.clone())).collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some((source, below)) = queue.pop_front() {
        if !seen.insert((source.goods_id.clone(), source.event)) {
            continue;
        }
        let (next, from) = visit(&source, &below)?;
        queue.extend(next.into_iter().map(|s| (s, from.clone())));
    }
    Ok(())
}

/// The events one `aggregate` (or, with `unpack`, `disaggregate`) records: the
/// container's, and each member's naming the container and that event's hash.
/// `seq_of` gives a good's event number (its event count before this).
pub fn aggregate_events(
    args: &AggregateArgs,
    unpack: bool,
    seq_of: impl Fn(&str) -> u64,
    at: RecordedAt<'_>,
    suite: Suite,
) -> (StoredEvent, Vec<StoredEvent>) {
    let (container_kind, member_kind) = if unpack {
        (EventKind::Disaggregated, EventKind::Unpacked)
    } else {
        (EventKind::Aggregated, EventKind::Packed)
    };
    let mut attributes = args.attributes.clone();
    attributes.insert("children".into(), args.children.len().to_string());
    let container = at.event(
        &args.container,
        seq_of(&args.container),
        container_kind,
        args.prev,
        attributes,
    );
    let container_hash = container.hash(suite);
    let members = args
        .children
        .iter()
        .map(|m| {
            let attributes = BTreeMap::from([
                ("container".to_string(), args.container.clone()),
                ("container_event".to_string(), container_hash.to_string()),
            ]);
            at.event(
                &m.goods_id,
                seq_of(&m.goods_id),
                member_kind,
                Some(m.prev),
                attributes,
            )
        })
        .collect();
    (container, members)
}

/// Where a good is packed: the container holding it.
pub fn packed_key(goods_id: &str) -> String {
    format!("goods/in/{goods_id}")
}

/// Where one transaction records several goods events (a split, a packing): what they
/// all share.
#[derive(Debug, Clone, Copy)]
pub struct RecordedAt<'a> {
    pub actor: &'a str,
    pub height: u64,
    pub time_ms: u64,
    pub tx_hash: Hash,
}

impl RecordedAt<'_> {
    /// A stored event recorded here.
    fn event(
        &self,
        goods_id: &str,
        seq: u64,
        kind: EventKind,
        prev: Option<Hash>,
        attributes: BTreeMap<String, String>,
    ) -> StoredEvent {
        StoredEvent {
            goods_id: goods_id.to_string(),
            seq,
            kind,
            prev,
            actor: self.actor.to_string(),
            attributes,
            height: self.height,
            time_ms: self.time_ms,
            tx_hash: self.tx_hash,
        }
    }
}

/// The events a split records: the parent's `split` event, and each child's first
/// (`derived`) event naming the parent and the split event's hash. The chaincode stores
/// these and a verifier rebuilds them from the certified transaction: one definition.
pub fn split_events(
    args: &SplitArgs,
    parent_seq: u64,
    at: RecordedAt<'_>,
    suite: Suite,
) -> (StoredEvent, Vec<StoredEvent>) {
    let mut attributes = args.attributes.clone();
    let total: u64 = args
        .children
        .iter()
        .fold(0u64, |sum, c| sum.saturating_add(c.quantity));
    attributes.insert("children".into(), args.children.len().to_string());
    attributes.insert("quantity".into(), total.to_string());
    let parent = at.event(
        &args.goods_id,
        parent_seq,
        EventKind::Split,
        Some(args.prev),
        attributes,
    );
    let parent_hash = parent.hash(suite);
    let children = args
        .children
        .iter()
        .map(|c| {
            let attributes = BTreeMap::from([
                ("parent".to_string(), args.goods_id.clone()),
                ("parent_event".to_string(), parent_hash.to_string()),
                ("quantity".to_string(), c.quantity.to_string()),
            ]);
            at.event(&c.goods_id, 0, EventKind::Derived, None, attributes)
        })
        .collect();
    (parent, children)
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

/// Where the quantity a good still holds is kept (set by a `produced` event's
/// `quantity` attribute, and by a split for each child).
pub fn quantity_key(goods_id: &str) -> String {
    format!("goods/qty/{goods_id}")
}
