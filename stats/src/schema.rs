//! The database's tables. Every row of a document table is keyed by the block height and
//! the transaction's index in it, and carries the transaction hash, so every figure of a
//! report traces to transactions an auditor can prove (`cbec prove tx HASH`).
//!
//! Amounts are integers in the unit their column names (`_fen`, `_cents`), as on the
//! ledger. Only accepted transactions make document rows; a refused one makes a row in
//! `refusals` with the rule that refused it.

/// The schema version this crate writes; an older or newer file is refused.
/// Version 2: goods_events keyed by (height, idx, goods_id), for splits and packings.
pub const VERSION: i64 = 2;

/// Tables holding ledger data (not `meta`), in the order they are exported and compared.
pub const TABLES: &[&str] = &[
    "blocks",
    "txs",
    "refusals",
    "enterprises",
    "orders",
    "order_lines",
    "payments",
    "waybills",
    "lists",
    "clearances",
    "goods_events",
    "forex",
    "tax_records",
];

pub const DDL: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
-- One row per certified block: its time as UTC milliseconds and as the zone's calendar
-- day and month (genesis PARAM year_utc_offset_minutes).
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    tx_count INTEGER NOT NULL,
    certified_by TEXT NOT NULL
);
-- Every transaction, accepted or refused.
CREATE TABLE IF NOT EXISTS txs (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    sender TEXT NOT NULL,
    chaincode TEXT NOT NULL,
    method TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    PRIMARY KEY (height, idx)
);
CREATE TABLE IF NOT EXISTS refusals (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    chaincode TEXT NOT NULL,
    method TEXT NOT NULL,
    rule TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (height, idx)
);
-- Filings approved by commerce (enterprise approve_filing).
CREATE TABLE IF NOT EXISTS enterprises (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    uscc TEXT NOT NULL,
    name TEXT NOT NULL,
    customs_code TEXT NOT NULL,
    roles TEXT NOT NULL,
    PRIMARY KEY (height, idx)
);
-- CEB311.
CREATE TABLE IF NOT EXISTS orders (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    ebp_code TEXT NOT NULL,
    order_no TEXT NOT NULL,
    ebc_code TEXT NOT NULL,
    goods_value_fen INTEGER NOT NULL,
    freight_fen INTEGER NOT NULL,
    insurance_fen INTEGER NOT NULL,
    tax_total_fen INTEGER NOT NULL,
    discount_fen INTEGER NOT NULL,
    actual_paid_fen INTEGER NOT NULL,
    pay_code TEXT NOT NULL,
    logistics_code TEXT NOT NULL,
    agent_code TEXT NOT NULL,
    PRIMARY KEY (height, idx)
);
CREATE INDEX IF NOT EXISTS orders_by_no ON orders (ebp_code, order_no);
CREATE TABLE IF NOT EXISTS order_lines (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    line INTEGER NOT NULL,
    ebp_code TEXT NOT NULL,
    order_no TEXT NOT NULL,
    commodity_code TEXT NOT NULL,
    hs_chapter TEXT NOT NULL,
    gtin TEXT,
    quantity INTEGER NOT NULL,
    unit_price_fen INTEGER NOT NULL,
    value_fen INTEGER NOT NULL,
    PRIMARY KEY (height, idx, line)
);
CREATE INDEX IF NOT EXISTS order_lines_by_no ON order_lines (ebp_code, order_no);
-- CEB411.
CREATE TABLE IF NOT EXISTS payments (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    ebp_code TEXT NOT NULL,
    order_no TEXT NOT NULL,
    pay_code TEXT NOT NULL,
    pay_transaction_id TEXT NOT NULL,
    amount_paid_fen INTEGER NOT NULL,
    PRIMARY KEY (height, idx)
);
-- CEB511.
CREATE TABLE IF NOT EXISTS waybills (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    logistics_code TEXT NOT NULL,
    logistics_no TEXT NOT NULL,
    ebp_code TEXT NOT NULL,
    order_no TEXT NOT NULL,
    PRIMARY KEY (height, idx)
);
-- CEB621.
CREATE TABLE IF NOT EXISTS lists (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    ebp_code TEXT NOT NULL,
    order_no TEXT NOT NULL,
    ebc_code TEXT NOT NULL,
    logistics_code TEXT NOT NULL,
    logistics_no TEXT NOT NULL,
    supervision_mode TEXT NOT NULL,
    vat_rate_bp INTEGER NOT NULL,
    consumption_rate_bp INTEGER NOT NULL,
    tariff_rate_bp INTEGER NOT NULL,
    PRIMARY KEY (height, idx)
);
CREATE INDEX IF NOT EXISTS lists_by_no ON lists (ebp_code, order_no);
-- Customs decisions, one row each: clear (released or held, with the tax assessed),
-- release or reject of a held parcel, a return after release.
CREATE TABLE IF NOT EXISTS clearances (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    ebp_code TEXT NOT NULL,
    order_no TEXT NOT NULL,
    decision TEXT NOT NULL,
    status TEXT NOT NULL,
    tax_due_fen INTEGER,
    preferential INTEGER,
    PRIMARY KEY (height, idx)
);
CREATE INDEX IF NOT EXISTS clearances_by_no ON clearances (ebp_code, order_no);
-- Every goods event; a split or a packing records several in one transaction.
CREATE TABLE IF NOT EXISTS goods_events (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    goods_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    event_hash TEXT NOT NULL,
    PRIMARY KEY (height, idx, goods_id)
);
-- Settlements recorded by forex or a named payment enterprise.
CREATE TABLE IF NOT EXISTS forex (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    uscc TEXT NOT NULL,
    direction TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    PRIMARY KEY (height, idx)
);
-- Tax: export exemption claims (EXP-1) and assessments.
CREATE TABLE IF NOT EXISTS tax_records (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    uscc TEXT,
    period TEXT NOT NULL,
    commodity_code TEXT,
    amount_fen INTEGER NOT NULL,
    PRIMARY KEY (height, idx)
);
";
