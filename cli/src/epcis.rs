//! A verified provenance as an EPCIS 2.0 document (GS1, ISO/IEC 19987), JSON-LD: what
//! traceability platforms exchange. Each event of the good and of the lots it was split
//! from becomes an ObjectEvent; each split a TransformationEvent (the lot in, the good
//! below out); each packing into or out of a container an AggregationEvent. Goods are named by their GS1 Digital Link URI (`{base}/01/{GTIN-14}/21/
//! {goods id}`) when their line states a GTIN, else `urn:cbec:goods:{id}`. The ledger's
//! own facts (event and transaction hashes, block, certifying agencies, attributes) ride
//! along as `cbec:` extension fields.

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
/// `ancestors` (parent first), oldest events first; `offset` is the zone's UTC offset
/// (`+08:00`), `base` the Digital Link resolver.
pub fn document(
    goods_id: &str,
    timeline: &[TimelineEntry],
    ancestors: &[Ancestry],
    offset: &str,
    base: &str,
) -> Value {
    // One GTIN for the line: the first stated anywhere in its history.
    let gtin = ancestors
        .iter()
        .rev()
        .flat_map(|a| &a.timeline)
        .chain(timeline)
        .find_map(|e| e.attributes.get("gtin").cloned());
    let epc = |id: &str| match &gtin {
        Some(gtin) => digital_link(base, gtin, id),
        None => format!("urn:cbec:goods:{id}"),
    };
    // (good, its events, the good its last split made), oldest ancestor first.
    let mut lines: Vec<(&str, &[TimelineEntry], Option<&str>)> = Vec::new();
    for (i, a) in ancestors.iter().enumerate().rev() {
        let below = if i == 0 {
            goods_id
        } else {
            &ancestors[i - 1].goods_id
        };
        lines.push((&a.goods_id, &a.timeline, Some(below)));
    }
    lines.push((goods_id, timeline, None));
    let mut events = Vec::new();
    for (good, entries, below) in lines {
        for e in entries {
            let (step, disposition) = vocabulary(e.kind);
            let mut m = common(e, offset);
            match e.kind {
                // Made by the split above: the TransformationEvent's output.
                EventKind::Derived => continue,
                EventKind::Split => {
                    m.insert("type".into(), json!("TransformationEvent"));
                    m.insert("inputEPCList".into(), json!([epc(good)]));
                    let outputs: Vec<String> = below.map(epc).into_iter().collect();
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
