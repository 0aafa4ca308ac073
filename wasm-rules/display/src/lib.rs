//! Bonded display trade (保税展示交易) as a WebAssembly chaincode [issue 19].
//!
//! Goods in the bonded zone may be taken out to be displayed (at a trade fair, in a
//! showroom) without paying duty, if they come back, or are declared for import,
//! within a time limit. Methods (JSON arguments):
//!
//! - `take_out {record_no, goods_id, value_fen, days[, guarantee_fen]}`: a filed
//!   warehouse or seller takes goods out for `days` (1-180; `DISPLAY-TERM`). Refused
//!   while the same enterprise has a display record past its due time that is still
//!   open (`DISPLAY-OVERDUE`), or for a record number in use (`DUPLICATE`).
//! - `bring_back {record_no}` / `declare {record_no}`: the enterprise that took the
//!   goods out closes the record (`ROLE` for anyone else, `STATUS` if closed).
//!
//! Version 2 (built with `--features v2`) asks for a guarantee of at least the goods'
//! value (`DISPLAY-GUARANTEE`) and allows at most 90 days.
//!
//! State, under the chaincode's prefix `wasm/display/`: `rec/<record no>` is
//! `open|closed-back|closed-declared`, `;`, the enterprise, `;`, the due time (ms);
//! `open/<uscc>` is the enterprise's open record numbers, comma-separated.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

#[link(wasm_import_module = "cbec")]
extern "C" {
    fn method(out: *mut u8, cap: i32) -> i32;
    fn arg(name: *const u8, name_len: i32, out: *mut u8, cap: i32) -> i32;
    fn caller(out: *mut u8, cap: i32) -> i32;
    fn has_role(role: *const u8, len: i32) -> i32;
    fn time_ms() -> i64;
    fn get(key: *const u8, key_len: i32, out: *mut u8, cap: i32) -> i32;
    fn put(key: *const u8, key_len: i32, value: *const u8, value_len: i32);
    fn event(kind: *const u8, len: i32);
    fn attr(key: *const u8, key_len: i32, value: *const u8, value_len: i32);
    fn reject(rule: *const u8, rule_len: i32, message: *const u8, message_len: i32) -> !;
}

const PREFIX: &str = "wasm/display/";
const DAY_MS: i64 = 86_400_000;
#[cfg(not(feature = "v2"))]
const TERM_DAYS_MAX: i64 = 180;
#[cfg(feature = "v2")]
const TERM_DAYS_MAX: i64 = 90;

/// A bump allocator over a fixed arena: one call is one short-lived instance.
mod heap {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    const ARENA: usize = 128 * 1024;
    pub struct Bump {
        arena: UnsafeCell<[u8; ARENA]>,
        next: UnsafeCell<usize>,
    }
    unsafe impl Sync for Bump {}
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let next = &mut *self.next.get();
            let start = (*next + layout.align() - 1) & !(layout.align() - 1);
            if start + layout.size() > ARENA {
                return core::ptr::null_mut();
            }
            *next = start + layout.size();
            (self.arena.get() as *mut u8).add(start)
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }
    #[global_allocator]
    static HEAP: Bump = Bump {
        arena: UnsafeCell::new([0; ARENA]),
        next: UnsafeCell::new(0),
    };
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// Reads what a host function hands over, growing the buffer once if it was short.
fn fetch(mut call: impl FnMut(*mut u8, i32) -> i32) -> Option<String> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    loop {
        let len = call(buf.as_mut_ptr(), buf.capacity() as i32);
        if len < 0 {
            return None;
        }
        if len as usize <= buf.capacity() {
            unsafe { buf.set_len(len as usize) };
            return String::from_utf8(buf).ok();
        }
        buf = Vec::with_capacity(len as usize);
    }
}

fn refuse(rule: &str, message: &str) -> ! {
    unsafe { reject(rule.as_ptr(), rule.len() as i32, message.as_ptr(), message.len() as i32) }
}

fn arg_text(name: &str) -> Option<String> {
    fetch(|out, cap| unsafe { arg(name.as_ptr(), name.len() as i32, out, cap) })
}

fn required(name: &str) -> String {
    match arg_text(name) {
        Some(v) if !v.is_empty() => v,
        _ => refuse("ARGS", &format!("`{name}` is required")),
    }
}

fn number(name: &str) -> i64 {
    match required(name).parse::<i64>() {
        Ok(n) if n >= 0 => n,
        _ => refuse("ARGS", &format!("`{name}` must be a non-negative integer")),
    }
}

fn state(key: &str) -> Option<String> {
    let key = format!("{PREFIX}{key}");
    fetch(|out, cap| unsafe { get(key.as_ptr(), key.len() as i32, out, cap) })
}

fn store(key: &str, value: &str) {
    let key = format!("{PREFIX}{key}");
    unsafe { put(key.as_ptr(), key.len() as i32, value.as_ptr(), value.len() as i32) }
}

fn emit(kind: &str, attributes: &[(&str, &str)]) {
    unsafe { event(kind.as_ptr(), kind.len() as i32) };
    for (k, v) in attributes {
        unsafe { attr(k.as_ptr(), k.len() as i32, v.as_ptr(), v.len() as i32) };
    }
}

/// The calling enterprise's USCC, or a refusal.
fn enterprise() -> String {
    let who = fetch(|out, cap| unsafe { caller(out, cap) }).unwrap_or_default();
    match who.strip_prefix("enterprise:").and_then(|rest| rest.split(':').next()) {
        Some(uscc) => String::from(uscc),
        None => refuse("FILING", "a filed enterprise must sign this"),
    }
}

struct Record {
    status: String,
    uscc: String,
    due_ms: i64,
}

fn record(no: &str) -> Option<Record> {
    let text = state(&format!("rec/{no}"))?;
    let mut parts = text.split(';');
    Some(Record {
        status: String::from(parts.next()?),
        uscc: String::from(parts.next()?),
        due_ms: parts.next()?.parse().ok()?,
    })
}

fn save(no: &str, r: &Record) {
    store(&format!("rec/{no}"), &format!("{};{};{}", r.status, r.uscc, r.due_ms));
}

fn open_of(uscc: &str) -> Vec<String> {
    state(&format!("open/{uscc}"))
        .map(|list| list.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

fn take_out() {
    let uscc = enterprise();
    let warehouse = unsafe { has_role("warehouse".as_ptr(), 9) } == 1;
    let seller = unsafe { has_role("seller".as_ptr(), 6) } == 1;
    if !warehouse && !seller {
        refuse("ROLE", &format!("{uscc} needs the warehouse or seller role to take goods out for display"));
    }
    let no = required("record_no");
    let goods_id = required("goods_id");
    let value = number("value_fen");
    let days = number("days");
    if !(1..=TERM_DAYS_MAX).contains(&days) {
        refuse("DISPLAY-TERM", &format!("a display lasts 1-{TERM_DAYS_MAX} days, not {days}"));
    }
    if cfg!(feature = "v2") {
        let guarantee = arg_text("guarantee_fen").and_then(|g| g.parse::<i64>().ok()).unwrap_or(0);
        if guarantee < value {
            refuse(
                "DISPLAY-GUARANTEE",
                &format!("a guarantee of at least the goods' value ({value} fen) is required, not {guarantee}"),
            );
        }
    }
    if record(&no).is_some() {
        refuse("DUPLICATE", &format!("display record {no} exists already"));
    }
    let now = unsafe { time_ms() };
    let mut open = open_of(&uscc);
    for other in &open {
        if let Some(r) = record(other) {
            if r.status == "open" && r.due_ms < now {
                refuse(
                    "DISPLAY-OVERDUE",
                    &format!("{uscc} has display record {other} past its due time; bring it back or declare it first"),
                );
            }
        }
    }
    let due = now + days * DAY_MS;
    save(&no, &Record { status: String::from("open"), uscc: uscc.clone(), due_ms: due });
    open.push(no.clone());
    store(&format!("open/{uscc}"), &open.join(","));
    let due_text = format!("{due}");
    emit("display_out", &[("record_no", &no), ("goods_id", &goods_id), ("due_ms", &due_text)]);
}

fn close(how: &str) {
    let uscc = enterprise();
    let no = required("record_no");
    let Some(mut r) = record(&no) else {
        refuse("NOT-FOUND", &format!("no display record {no}"));
    };
    if r.uscc != uscc {
        refuse("ROLE", &format!("display record {no} belongs to {}", r.uscc));
    }
    if r.status != "open" {
        refuse("STATUS", &format!("display record {no} is {}", r.status));
    }
    let late = unsafe { time_ms() } > r.due_ms;
    r.status = format!("closed-{how}");
    save(&no, &r);
    let open: Vec<String> = open_of(&uscc).into_iter().filter(|o| *o != no).collect();
    store(&format!("open/{uscc}"), &open.join(","));
    emit("display_closed", &[("record_no", &no), ("how", how), ("late", if late { "true" } else { "false" })]);
}

#[no_mangle]
pub extern "C" fn run() {
    let m = fetch(|out, cap| unsafe { method(out, cap) }).unwrap_or_default();
    match m.as_str() {
        "take_out" => take_out(),
        "bring_back" => close("back"),
        "declare" => close("declared"),
        other => refuse("METHOD", &format!("no method `{other}`; methods are take_out, bring_back, declare")),
    }
}
