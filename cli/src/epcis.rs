//! A verified provenance as an EPCIS 2.0 document (GS1, ISO/IEC 19987), JSON-LD: what
//! traceability platforms exchange. Each event of the good and of the goods it was made
//! from becomes an ObjectEvent; each split a TransformationEvent (the lot in, every
//! child out), each transformation one TransformationEvent (every input in, every
//! output out); each packing into or out of a container an AggregationEvent. Goods are
//! named by their GS1 Digital Link URI (`{base}/01/{GTIN-14}/21/{goods id}`) when their
//! history (or, failing that, their lineage) states a GTIN, else `urn:cbec:goods:{id}`.
//! The ledger's own facts (event and transaction hashes, block, certifying agencies,
//! attributes) ride along as `cbec:` extension fields.

use cbec_ledger::goods::EventKind;
use cbec_ledger::proof::{Ancestry, TimelineEntry};
use cbec_ledger::time::format_rfc3339;
use serde_json::{json, Map, Value};

/// The extension namespace of the `cbec:` fields.
const NAMESPACE: &str = "https://cbec-ledger.example/epcis/";

/// The GS1 Digital Link URI of a serialised good, for a 13- or 14-digit GTIN.
pub fn digital_link(base: &str, gtin: &str, serial: &str) -> String {
    format!(
        "{}/01/{:0>14}/21/{serial}",
        base.trim_end_matches('/'),
        gtin
    )
}

/// CBV 2.0 business step and disposition of an event kind.
fn vocabulary(kind: EventKind) -> (&'static str, &'static str) {
    match kind {
        EventKind::Produced => ("commissioning", "active"),
        EventKind::Ordered => ("reserving", "reserved"),
        EventKind::Paid => ("accepting", "active"),
        EventKind::Shipped => ("shipping", "in_transit"),
        EventKind::Warehoused => ("storing", "sellable_not_accessible"),
        EventKind::Declared => ("holding", "in_progress"),
        EventKind::Cleared => ("inspecting", "conformant"),
        EventKind::Held => ("holding", "non_sellable_other"),
        EventKind::Rejected => ("inspecting", "non_conformant"),
        EventKind::Delivered => ("receiving", "retail_sold"),
        EventKind::Returned => ("receiving", "returned"),
        EventKind::Evaluated => ("other", "retail_sold"),
        EventKind::Split | EventKind::Derived => ("repackaging", "active"),
        EventKind::Consumed | EventKind::Transformed => ("commissioning", "active"),
        EventKind::Aggregated | EventKind::Packed => ("packing", "in_progress"),
        EventKind::Disaggregated | EventKind::Unpacked => ("unpacking", "in_progress"),
    }
}

fn common(e: &TimelineEntry, offset: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "eventTime".into(),
        json!(format_rfc3339(e.block.time_ms as i64)),
    );
    m.insert("eventTimeZoneOffset".into(), json!(offset));
    m.insert(
        "eventID".into(),
        json!(format!("urn:cbec:event:{}", e.event_hash)),
    );
    m.insert(
        "readPoint".into(),
        json!({ "id": format!("urn:cbec:party:{}", e.actor) }),
    );
    m.insert("cbec:eventHash".into(), json!(e.event_hash));
    m.insert("cbec:txHash".into(), json!(e.tx_hash));
    m.insert("cbec:block".into(), json!(e.block.height));
    m.insert("cbec:certifiedBy".into(), json!(e.block.certified_by));
    if !e.attributes.is_empty() {
        m.insert("cbec:attributes".into(), json!(e.attributes));
    }
    m
}

/// The document for a verified provenance: `goods_id`'s `timeline` and its
/// `ancestors` (the goods it was made from, as the proof carries them), oldest events
/// first; `offset` is the zone's UTC offset (`+08:00`), `base` the Digital Link
/// resolver.
pub fn document(
    goods_id: &str,
    timeline: &[TimelineEntry],
    ancestors: &[Ancestry],
    offset: &str,
    base: &str,
) -> Value {
    let lines: Vec<(&str, &[TimelineEntry])> = ancestors
        .iter()
        .map(|a| (a.goods_id.as_str(), a.timeline.as_slice()))
        .chain(std::iter::once((goods_id, timeline)))
        .collect();
    let gtin_in = |entries: &[TimelineEntry]| {
        entries
            .iter()
            .find_map(|e| e.attributes.get("gtin").cloned())
    };
    // A good's own GTIN where its history states one; else the first in the lineage,
    // farthest ancestor first.
    let fallback = lines
        .iter()
        .rev()
        .skip(1)
        .find_map(|(_, t)| gtin_in(t))
        .or_else(|| gtin_in(timeline));
    let own: std::collections::BTreeMap<&str, String> = lines
        .iter()
        .filter_map(|(good, t)| Some((*good, gtin_in(t)?)))
        .collect();
    let epc = |id: &str| match own.get(id).or(fallback.as_ref()) {
        Some(gtin) => digital_link(base, gtin, id),
        None => format!("urn:cbec:goods:{id}"),
    };
    let epcs = |ids: &mut dyn Iterator<Item = &str>| -> Vec<String> { ids.map(epc).collect() };
    let mut transformations = std::collections::BTreeSet::new();
    let mut events = Vec::new();
    for (good, entries) in lines {
        for e in entries {
            let (step, disposition) = vocabulary(e.kind);
            let mut m = common(e, offset);
            match e.kind {
                // Made by a split or transformation: that TransformationEvent's output.
                EventKind::Derived | EventKind::Transformed => continue,
                EventKind::Split => {
                    m.insert("type".into(), json!("TransformationEvent"));
                    m.insert("inputEPCList".into(), json!([epc(good)]));
                    let outputs = epcs(&mut e.children.iter().map(|c| c.goods_id.as_str()));
                    m.insert("outputEPCList".into(), json!(outputs));
                }
                // One event for the whole transformation, however many of its inputs
                // the lineage holds.
                EventKind::Consumed => {
                    if !transformations.insert(e.tx_hash) {
                        continue;
                    }
                    m.insert("type".into(), json!("TransformationEvent"));
                    m.insert(
                        "transformationID".into(),
                        json!(format!("urn:cbec:tx:{}", e.tx_hash)),
                    );
                    let inputs = epcs(&mut e.members.iter().map(String::as_str));
                    let outputs = epcs(&mut e.children.iter().map(|c| c.goods_id.as_str()));
                    m.insert("inputEPCList".into(), json!(inputs));
                    m.insert("outputEPCList".into(), json!(outputs));
                }
                // A packing: the container and what went in or came out of it.
                EventKind::Aggregated
                | EventKind::Disaggregated
                | EventKind::Packed
                | EventKind::Unpacked => {
                    let (parent, children): (String, Vec<String>) = match e.kind {
                        EventKind::Aggregated | EventKind::Disaggregated => {
                            (good.to_string(), e.members.iter().map(|m| epc(m)).collect())
                        }
                        _ => (
                            e.attributes.get("container").cloned().unwrap_or_default(),
                            vec![epc(good)],
                        ),
                    };
                    let action = if matches!(e.kind, EventKind::Aggregated | EventKind::Packed) {
                        "ADD"
                    } else {
                        "DELETE"
                    };
                    m.insert("type".into(), json!("AggregationEvent"));
                    m.insert("parentID".into(), json!(epc(&parent)));
                    m.insert("childEPCs".into(), json!(children));
                    m.insert("action".into(), json!(action));
                }
                kind => {
                    m.insert("type".into(), json!("ObjectEvent"));
                    m.insert("epcList".into(), json!([epc(good)]));
                    let action = if kind == EventKind::Produced {
                        "ADD"
                    } else {
                        "OBSERVE"
                    };
                    m.insert("action".into(), json!(action));
                }
            }
            m.insert("bizStep".into(), json!(step));
            m.insert("disposition".into(), json!(disposition));
            events.push((e.block.time_ms, e.block.height, Value::Object(m)));
        }
    }
    events.sort_by_key(|(time, height, _)| (*time, *height));
    let created = timeline.last().map_or(0, |e| e.block.time_ms);
    json!({
        "@context": [
            "https://ref.gs1.org/standards/epcis/epcis-context.jsonld",
            { "cbec": NAMESPACE }
        ],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": format_rfc3339(created as i64),
        "epcisBody": { "eventList": events.into_iter().map(|(_, _, e)| e).collect::<Vec<_>>() },
    })
}
