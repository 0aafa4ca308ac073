//! One certified block into rows: the block, every transaction, and for each accepted
//! document its table's row (decoded with the chaincode's own argument types, so the
//! indexer reads exactly what the rules read).

use cbec_chaincode::customs::{DeclarationList, Order, OrderRef, Payment, Waybill};
use cbec_chaincode::enterprise::ApproveFiling;
use cbec_chaincode::forex::{Direction, Settlement};
use cbec_chaincode::tax::{Assessment, ExportRecord};
use cbec_ledger::goods::RESULT_EVENT;
use cbec_ledger::proof::ProvenBlock;
use cbec_ledger::{codec, Block, Event, Outcome, Transaction};
use rusqlite::{params, Connection};

/// What the zone's calendar needs: the offset of its day from UTC.
#[derive(Debug, Clone, Copy)]
pub struct Calendar {
    pub utc_offset_minutes: i32,
}

impl Calendar {
    /// `YYYY-MM-DD` and `YYYY-MM` of a block time in the zone.
    pub fn day_and_month(&self, time_ms: u64) -> (String, String) {
        let t = cbec_ledger::time::date_time(time_ms as i64, self.utc_offset_minutes);
        (
            format!("{:04}-{:02}-{:02}", t.year, t.month, t.day),
            format!("{:04}-{:02}", t.year, t.month),
        )
    }
}

/// Why a transaction of a certified block could not be read: the block is certified,
/// so this is a chaincode this indexer does not know, not bad data; the block's other
/// rows are still written and the transaction stays in `txs`.
fn decode<T: bincode::Decode<()>>(tx: &Transaction) -> Option<T> {
    codec::decode(&tx.body.call.args).ok()
}

fn attribute<'a>(events: &'a [Event], kind: &str, key: &str) -> Option<&'a str> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .flat_map(|e| &e.attributes)
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
}

/// Writes `block`'s rows; returns how many. The caller wraps this in the SQL
/// transaction that also moves the indexer's tip, so a block is counted once or not
/// at all.
pub fn block_rows(
    db: &Connection,
    block: &Block,
    proven: &ProvenBlock,
    calendar: Calendar,
) -> rusqlite::Result<usize> {
    let height = block.header.height as i64;
    let (day, month) = calendar.day_and_month(block.header.time_ms);
    let mut rows = db
        .prepare_cached(
            "INSERT INTO blocks (height, hash, time_ms, day, month, tx_count, certified_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            height,
            proven.hash.to_string(),
            block.header.time_ms as i64,
            day,
            month,
            block.txs.len() as i64,
            proven.certified_by.join(","),
        ])?;
    for (idx, (tx, result)) in block.txs.iter().zip(&block.results).enumerate() {
        let at = Row {
            height,
            idx: idx as i64,
            hash: result.tx_hash.to_string(),
        };
        let call = &tx.body.call;
        rows += db
            .prepare_cached(
                "INSERT INTO txs (height, idx, tx_hash, sender, chaincode, method, accepted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                at.height,
                at.idx,
                at.hash,
                tx.body.sender.to_string(),
                call.chaincode,
                call.method,
                result.is_accepted(),
            ])?;
        match &result.outcome {
            Outcome::Rejected { rule, message } => {
                rows += db
                    .prepare_cached(
                        "INSERT INTO refusals (height, idx, tx_hash, chaincode, method, rule, message)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        at.height,
                        at.idx,
                        at.hash,
                        call.chaincode,
                        call.method,
                        rule,
                        message
                    ])?;
            }
            Outcome::Accepted { events } => {
                rows += document_rows(db, &at, tx, events)?;
            }
        }
    }
    Ok(rows)
}

/// Where a row comes from.
#[derive(Debug)]
struct Row {
    height: i64,
    idx: i64,
    hash: String,
}

fn document_rows(
    db: &Connection,
    at: &Row,
    tx: &Transaction,
    events: &[Event],
) -> rusqlite::Result<usize> {
    let call = &tx.body.call;
    let (h, i, x) = (at.height, at.idx, &at.hash);
    Ok(match (call.chaincode.as_str(), call.method.as_str()) {
        ("enterprise", "approve_filing") => {
            let Some(f) = decode::<ApproveFiling>(tx) else {
                return Ok(0);
            };
            let roles: Vec<String> = f
                .roles
                .iter()
                .map(|r| format!("{r:?}").to_lowercase())
                .collect();
            db.prepare_cached(
                "INSERT INTO enterprises (height, idx, tx_hash, uscc, name, customs_code, roles)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                h,
                i,
                x,
                f.uscc,
                f.name,
                f.customs_code,
                roles.join(",")
            ])?
        }
        ("customs", "submit_order") => {
            let Some(o) = decode::<Order>(tx) else {
                return Ok(0);
            };
            let mut n = db
                .prepare_cached(
                    "INSERT INTO orders (height, idx, tx_hash, ebp_code, order_no, ebc_code,
                        goods_value_fen, freight_fen, insurance_fen, tax_total_fen, discount_fen,
                        actual_paid_fen, pay_code, logistics_code, agent_code)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?
                .execute(params![
                    h,
                    i,
                    x,
                    o.ebp_code,
                    o.order_no,
                    o.ebc_code,
                    o.goods_value_fen as i64,
                    o.freight_fen as i64,
                    o.insurance_fen as i64,
                    o.tax_total_fen as i64,
                    o.discount_fen as i64,
                    o.actual_paid_fen as i64,
                    o.pay_code,
                    o.logistics_code,
                    o.agent_code
                ])?;
            for (line_no, line) in o.lines.iter().enumerate() {
                let value = u64::from(line.quantity).saturating_mul(line.unit_price_fen);
                n += db
                    .prepare_cached(
                        "INSERT INTO order_lines (height, idx, line, ebp_code, order_no,
                            commodity_code, hs_chapter, gtin, quantity, unit_price_fen, value_fen)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )?
                    .execute(params![
                        h,
                        i,
                        line_no as i64,
                        o.ebp_code,
                        o.order_no,
                        line.commodity_code,
                        line.commodity_code.get(..2).unwrap_or(""),
                        line.gtin,
                        i64::from(line.quantity),
                        line.unit_price_fen as i64,
                        value as i64
                    ])?;
            }
            n
        }
        ("customs", "submit_payment") => {
            let Some(p) = decode::<Payment>(tx) else {
                return Ok(0);
            };
            db.prepare_cached(
                "INSERT INTO payments (height, idx, tx_hash, ebp_code, order_no, pay_code,
                    pay_transaction_id, amount_paid_fen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                h,
                i,
                x,
                p.ebp_code,
                p.order_no,
                p.pay_code,
                p.pay_transaction_id,
                p.amount_paid_fen as i64
            ])?
        }
        ("customs", "submit_waybill") => {
            let Some(w) = decode::<Waybill>(tx) else {
                return Ok(0);
            };
            db.prepare_cached(
                "INSERT INTO waybills (height, idx, tx_hash, logistics_code, logistics_no,
                    ebp_code, order_no)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                h,
                i,
                x,
                w.logistics_code,
                w.logistics_no,
                w.ebp_code,
                w.order_no
            ])?
        }
        ("customs", "submit_list") => {
            let Some(l) = decode::<DeclarationList>(tx) else {
                return Ok(0);
            };
            db.prepare_cached(
                "INSERT INTO lists (height, idx, tx_hash, ebp_code, order_no, ebc_code,
                    logistics_code, logistics_no, supervision_mode, vat_rate_bp,
                    consumption_rate_bp, tariff_rate_bp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                h,
                i,
                x,
                l.ebp_code,
                l.order_no,
                l.ebc_code,
                l.logistics_code,
                l.logistics_no,
                l.supervision_mode,
                l.vat_rate_bp,
                l.consumption_rate_bp,
                l.tariff_rate_bp
            ])?
        }
        ("customs", method @ ("clear" | "release" | "reject" | "apply_return")) => {
            let Some(r) = decode::<OrderRef>(tx) else {
                return Ok(0);
            };
            let status = match method {
                "apply_return" => Some("returned"),
                _ => attribute(events, "clearance", "status"),
            };
            let tax: Option<i64> =
                attribute(events, "clearance", "tax_due_fen").and_then(|t| t.parse().ok());
            let preferential: Option<bool> =
                attribute(events, "clearance", "preferential").and_then(|t| t.parse().ok());
            db.prepare_cached(
                "INSERT INTO clearances (height, idx, tx_hash, ebp_code, order_no, decision,
                    status, tax_due_fen, preferential)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                h,
                i,
                x,
                r.ebp_code,
                r.order_no,
                method,
                status.unwrap_or("unknown"),
                tax,
                preferential
            ])?
        }
        // Every goods event the result announced: one for `record`, several for a split
        // (the lot's and each child's) or a packing (the container's and each good's).
        ("goods", _) => {
            let mut n = 0;
            for announced in events.iter().filter(|e| e.kind == RESULT_EVENT) {
                let get = |k: &str| {
                    announced
                        .attributes
                        .iter()
                        .find(|a| a.key == k)
                        .map_or("", |a| a.value.as_str())
                };
                let seq: i64 = get("seq").parse().unwrap_or(-1);
                n += db
                    .prepare_cached(
                        "INSERT INTO goods_events (height, idx, tx_hash, goods_id, seq, kind,
                            actor, event_hash)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        h,
                        i,
                        x,
                        get("goods_id"),
                        seq,
                        get("kind"),
                        get("actor"),
                        get("event_hash")
                    ])?;
            }
            n
        }
        ("forex", "record_settlement") => {
            let Some(s) = decode::<Settlement>(tx) else {
                return Ok(0);
            };
            let direction = match s.direction {
                Direction::Receipt => "receipt",
                Direction::Payment => "payment",
            };
            db.prepare_cached(
                "INSERT INTO forex (height, idx, tx_hash, uscc, direction, amount_cents)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![h, i, x, s.uscc, direction, s.amount_cents as i64])?
        }
        ("tax", "claim_export_exemption") => {
            let Some(r) = decode::<ExportRecord>(tx) else {
                return Ok(0);
            };
            db.prepare_cached(
                "INSERT INTO tax_records (height, idx, tx_hash, kind, reference, uscc, period,
                    commodity_code, amount_fen)
                 VALUES (?1, ?2, ?3, 'export_exemption', ?4, NULL, ?5, ?6, ?7)",
            )?
            .execute(params![
                h,
                i,
                x,
                r.record_no,
                r.date,
                r.commodity_code,
                r.amount_fen as i64
            ])?
        }
        ("tax", "assess") => {
            let Some(a) = decode::<Assessment>(tx) else {
                return Ok(0);
            };
            db.prepare_cached(
                "INSERT INTO tax_records (height, idx, tx_hash, kind, reference, uscc, period,
                    commodity_code, amount_fen)
                 VALUES (?1, ?2, ?3, 'assessment', ?4, ?5, ?6, NULL, ?7)",
            )?
            .execute(params![
                h,
                i,
                x,
                a.note,
                a.uscc,
                a.period,
                a.amount_fen as i64
            ])?
        }
        _ => 0,
    })
}
