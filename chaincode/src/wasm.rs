//! WebAssembly chaincode [issue 19]: rules the consortium deploys, upgrades and retires
//! through governance, with no new node binary and no restart.
//!
//! A module runs in `wasmi`, a pure-Rust interpreter that meters fuel, configured for
//! determinism: no floating-point instructions (refused when the module is checked),
//! no SIMD, no start function, modules compiled eagerly (so every function body is
//! validated at installation), a fixed recursion depth, and memory capped by a
//! governance parameter. It sees exactly what a built-in rule sees, through the host
//! functions of the import module `cbec` ([`HOST_FUNCTIONS`]): state reads, writes
//! under its own prefix `wasm/<id>/`, the caller and its roles, the method and its
//! arguments, block height and time, events, and a rejection with a rule id. Nothing
//! else: no clock, no randomness, no IO.
//!
//! A module exports its linear memory as `memory` and one entry point `run` (no
//! parameters, no results). Running out of fuel rejects the transaction with `FUEL`,
//! growing memory past the cap with `MEMORY`, any other trap (unreachable, a stack
//! overflow, an access out of bounds) with `TRAP`, a write outside its prefix with
//! `PREFIX`; in each case its writes are dropped and every node records the same.
//!
//! Rule ids added here: `FUEL`, `MEMORY`, `TRAP`, `PREFIX`, `MODULE` (a module refused
//! at installation).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bincode::{Decode, Encode};
use cbec_ledger::{codec, Attribute, Event, Hash, ParamValue, Suite};
use serde::{Deserialize, Serialize};
use wasmi::{
    CompilationMode, Config, Engine, ExternType, Linker, Module, Store, StoreLimits,
    StoreLimitsBuilder, TrapCode, ValType,
};

use crate::context::{BlockInfo, Caller, Role};
use crate::params::Params;
use crate::state::{BlockOverlay, StateRead, Writes};
use crate::RuleError;

/// The import module of the host functions.
pub const HOST_MODULE: &str = "cbec";

/// Every host function a module may import: name, parameters, results (all `i32`
/// pointers and lengths unless `i64`). Functions that fill a buffer return the full
/// length of what they have (writing it only if it fits in `cap`), or -1 for nothing.
pub const HOST_FUNCTIONS: &[(&str, &[ValType], &[ValType])] = &[
    // method(out, cap) -> len
    ("method", &[ValType::I32, ValType::I32], &[ValType::I32]),
    // arg(name, name_len, out, cap) -> len | -1: a top-level field of the JSON arguments
    // (a string's text, or any other value's JSON).
    (
        "arg",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[ValType::I32],
    ),
    // caller(out, cap) -> len: `agency:<name>` or `enterprise:<uscc>:<customs code>`.
    ("caller", &[ValType::I32, ValType::I32], &[ValType::I32]),
    // has_role(role, role_len) -> 0 | 1 (an enterprise role, snake case).
    ("has_role", &[ValType::I32, ValType::I32], &[ValType::I32]),
    ("height", &[], &[ValType::I64]),
    ("time_ms", &[], &[ValType::I64]),
    // get(key, key_len, out, cap) -> len | -1
    (
        "get",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[ValType::I32],
    ),
    // put(key, key_len, value, value_len): under `wasm/<id>/` only.
    (
        "put",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[],
    ),
    ("delete", &[ValType::I32, ValType::I32], &[]),
    // event(kind, kind_len): starts an event; attr(key, key_len, value, value_len)
    // adds an attribute to the last one.
    ("event", &[ValType::I32, ValType::I32], &[]),
    (
        "attr",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[],
    ),
    // reject(rule, rule_len, message, message_len): stops, rejecting the transaction.
    (
        "reject",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[],
    ),
];

/// Governance parameters (of the `governance` chaincode) that bound every module.
pub const FUEL_PARAM: &str = "wasm_fuel";
pub const MEMORY_PARAM: &str = "wasm_memory_pages";
pub const MODULE_BYTES_PARAM: &str = "wasm_module_bytes";

/// Bounds on what one call may hand the host.
const KEY_BYTES_MAX: usize = 256;
const VALUE_BYTES_MAX: usize = 64 * 1024;
const EVENTS_MAX: usize = 64;
const TEXT_BYTES_MAX: usize = 1024;
/// Fuel a host call costs, besides one unit per byte it moves.
const HOST_CALL_FUEL: u64 = 500;
/// Calls deeper than this trap (`TRAP`): the same on every node.
const RECURSION_MAX: usize = 1024;

/// A deployed WebAssembly chaincode: every version ever installed, and the one in
/// force. Kept by governance under [`record_key`]; versions are never removed, so an
/// auditor can see which code judged which transaction.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WasmChaincode {
    pub id: String,
    pub versions: Vec<WasmVersion>,
    /// Heights at which versions were activated: (height, version), oldest first (the
    /// last one runs, unless retired).
    pub activations: Vec<(u64, u32)>,
    /// Set when retired: no version runs again.
    pub retired_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WasmVersion {
    pub version: u32,
    pub code_hash: Hash,
    pub bytes: u32,
    pub installed_at: u64,
}

impl WasmChaincode {
    pub fn version(&self, version: u32) -> Option<&WasmVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The version that runs: the last activated, unless retired.
    pub fn active(&self) -> Option<u32> {
        match self.retired_at {
            Some(_) => None,
            None => self.activations.last().map(|(_, version)| *version),
        }
    }
}

/// Where governance keeps a WebAssembly chaincode's record.
pub fn record_key(id: &str) -> String {
    format!("gov/wasm/chaincode/{id}")
}

/// Where a module's code is kept, by its hash.
pub fn code_key(hash: &Hash) -> String {
    format!("gov/wasm/code/{hash}")
}

/// The state prefix a WebAssembly chaincode writes under.
pub fn prefix_of(id: &str) -> String {
    format!("wasm/{id}/")
}

/// Ids of deployed chaincode: 1-32 characters of a-z, 0-9 and `-`, starting with a
/// letter, and not a built-in's.
pub fn check_id(id: &str) -> Result<(), RuleError> {
    let ok = (1..=32).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(RuleError::new(
            "ARGS",
            format!("chaincode id `{id}` must be 1-32 characters of a-z, 0-9 and -, starting with a letter"),
        ));
    }
    if crate::catalog::spec(id).is_some() {
        return Err(RuleError::new(
            "ARGS",
            format!("`{id}` is a built-in chaincode"),
        ));
    }
    Ok(())
}

fn config() -> Config {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .floats(false)
        .allow_start_fn(false)
        .compilation_mode(CompilationMode::Eager)
        .set_max_recursion_depth(RECURSION_MAX);
    config
}

/// Checks a module for installation: within `bytes_max`, no floating point, imports
/// only host functions with their signatures, exports `memory` and `run`, and declares
/// no more than `pages_max` pages of memory to start with. The refusal (`MODULE`)
/// says what is wrong.
pub fn check_module(code: &[u8], bytes_max: u64, pages_max: u64) -> Result<(), RuleError> {
    let refuse = |why: String| Err(RuleError::new("MODULE", why));
    if code.len() as u64 > bytes_max {
        return refuse(format!(
            "the module is {} bytes, more than the {bytes_max} of PARAM governance.{MODULE_BYTES_PARAM}",
            code.len()
        ));
    }
    let engine = Engine::new(&config());
    let module = match Module::new(&engine, code) {
        Ok(module) => module,
        Err(e) => {
            let text = e.to_string();
            let why = if text.contains("float") {
                format!("the module uses floating-point instructions, which are not deterministic across machines ({text})")
            } else {
                format!("not a valid WebAssembly module for this host: {text}")
            };
            return refuse(why);
        }
    };
    for import in module.imports() {
        let expected = HOST_FUNCTIONS
            .iter()
            .find(|(name, _, _)| import.module() == HOST_MODULE && import.name() == *name);
        let Some((name, params, results)) = expected else {
            return refuse(format!(
                "it imports `{}.{}`; a module may import only the host functions `{HOST_MODULE}.{{{}}}`",
                import.module(),
                import.name(),
                HOST_FUNCTIONS
                    .iter()
                    .map(|(n, _, _)| *n)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        };
        match import.ty() {
            ExternType::Func(ty) if ty.params() == *params && ty.results() == *results => {}
            other => {
                return refuse(format!(
                    "it imports `{HOST_MODULE}.{name}` as {other:?}, not a function ({params:?}) -> {results:?}"
                ))
            }
        }
    }
    let mut has_run = false;
    let mut has_memory = false;
    for export in module.exports() {
        match (export.name(), export.ty()) {
            ("run", ExternType::Func(ty)) if ty.params().is_empty() && ty.results().is_empty() => {
                has_run = true
            }
            ("memory", ExternType::Memory(ty)) => {
                has_memory = true;
                if ty.minimum() > pages_max {
                    return refuse(format!(
                        "its memory starts at {} pages, more than the {pages_max} of PARAM governance.{MEMORY_PARAM}",
                        ty.minimum()
                    ));
                }
            }
            _ => {}
        }
    }
    if !has_run || !has_memory {
        return refuse(
            "it must export a function `run` () -> () and its memory as `memory`".into(),
        );
    }
    Ok(())
}

/// What runs WebAssembly chaincode for an [`crate::Engine`]: the interpreter, and
/// modules compiled once per code hash.
pub struct Host {
    engine: Engine,
    modules: Mutex<BTreeMap<Hash, Module>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl Default for Host {
    fn default() -> Host {
        Host {
            engine: Engine::new(&config()),
            modules: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Most compiled modules kept (compiling again is only slower, never different).
const MODULES_KEPT: usize = 64;

/// A governance parameter in force: a governance change in state, else genesis.
fn param_int<'s>(
    overlay: &BlockOverlay<'s, dyn StateRead + 's>,
    params: &Params,
    name: &str,
) -> Result<u64, RuleError> {
    let key = crate::layout::param_key("governance", name);
    let stored = overlay
        .get(key.as_bytes())
        .map_err(crate::engine::storage_failure)?
        .and_then(|bytes| codec::decode::<ParamValue>(&bytes).ok());
    match stored.or_else(|| params.get("governance", name)) {
        Some(ParamValue::Int(v)) if v >= 0 => Ok(v as u64),
        other => Err(RuleError::internal(format!(
            "parameter governance.{name} is {other:?}"
        ))),
    }
}

/// What one call may touch, and what it did.
struct Call<'a, 's> {
    overlay: &'a BlockOverlay<'s, dyn StateRead + 's>,
    writes: Writes,
    prefix: String,
    method: String,
    args: BTreeMap<String, String>,
    caller: String,
    roles: Vec<String>,
    block: BlockInfo,
    events: Vec<Event>,
    /// Why the call stopped, when a host function stopped it.
    stopped: Option<RuleError>,
    limits: StoreLimits,
}

/// The deployed chaincode `id` that runs at this point, its version and code hash.
pub fn active<'s>(
    overlay: &BlockOverlay<'s, dyn StateRead + 's>,
    id: &str,
) -> Result<Option<(WasmChaincode, u32, Hash)>, RuleError> {
    let Some(bytes) = overlay
        .get(record_key(id).as_bytes())
        .map_err(crate::engine::storage_failure)?
    else {
        return Ok(None);
    };
    let record: WasmChaincode = codec::decode(&bytes)
        .map_err(|e| RuleError::internal(format!("record of chaincode `{id}`: {e}")))?;
    let Some(version) = record.active() else {
        return Ok(None);
    };
    let hash = record
        .version(version)
        .map(|v| v.code_hash)
        .ok_or_else(|| RuleError::internal(format!("`{id}` version {version} is not installed")))?;
    Ok(Some((record, version, hash)))
}

impl Host {
    fn module<'s>(
        &self,
        overlay: &BlockOverlay<'s, dyn StateRead + 's>,
        hash: &Hash,
    ) -> Result<Module, RuleError> {
        if let Some(module) = self
            .modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
        {
            return Ok(module.clone());
        }
        let code: Vec<u8> = overlay
            .get(code_key(hash).as_bytes())
            .map_err(crate::engine::storage_failure)?
            .and_then(|bytes| codec::decode(&bytes).ok())
            .ok_or_else(|| RuleError::internal(format!("no code {hash}")))?;
        let module = Module::new(&self.engine, &code).map_err(|e| {
            RuleError::internal(format!("installed code {hash} does not compile: {e}"))
        })?;
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if modules.len() >= MODULES_KEPT {
            modules.clear();
        }
        modules.insert(*hash, module.clone());
        Ok(module)
    }

    /// Runs `method` of the deployed chaincode `id` (version `version`, code `hash`)
    /// for `caller`: its events and writes, or why it was rejected.
    #[allow(clippy::too_many_arguments)]
    pub fn run<'s>(
        &self,
        overlay: &BlockOverlay<'s, dyn StateRead + 's>,
        params: &Params,
        block: BlockInfo,
        caller: &Caller,
        id: &str,
        hash: &Hash,
        method: &str,
        args: &[u8],
    ) -> Result<(Vec<Event>, Writes), RuleError> {
        let module = self.module(overlay, hash)?;
        let fuel = param_int(overlay, params, FUEL_PARAM)?;
        let pages = param_int(overlay, params, MEMORY_PARAM)?;
        let (caller_text, roles) = match caller {
            Caller::Agency { name } => (format!("agency:{name}"), Vec::new()),
            Caller::Enterprise {
                uscc,
                roles,
                customs_code,
            } => (
                format!("enterprise:{uscc}:{customs_code}"),
                roles.iter().map(role_name).collect(),
            ),
        };
        let call = Call {
            overlay,
            writes: Writes::new(),
            prefix: prefix_of(id),
            method: method.to_string(),
            args: json_fields(args),
            caller: caller_text,
            roles,
            block,
            events: Vec::new(),
            stopped: None,
            limits: StoreLimitsBuilder::new()
                .memory_size((pages as usize).saturating_mul(65_536))
                .memories(1)
                .tables(1)
                .table_elements(10_000)
                .instances(1)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, call);
        store.limiter(limiter);
        store
            .set_fuel(fuel)
            .map_err(|e| RuleError::internal(e.to_string()))?;
        let mut linker = Linker::new(&self.engine);
        link(&mut linker).map_err(|e| RuleError::internal(e.to_string()))?;
        let ran = linker
            .instantiate_and_start(&mut store, &module)
            .and_then(|instance| {
                instance
                    .get_typed_func::<(), ()>(&store, "run")?
                    .call(&mut store, ())
            });
        let call = store.into_data();
        if let Some(stopped) = call.stopped {
            return Err(stopped);
        }
        match ran {
            Ok(()) => Ok((call.events, call.writes)),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// The rejection for a module that stopped with `e`.
fn classify(e: &wasmi::Error) -> RuleError {
    match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) => RuleError::new(
            "FUEL",
            "the call ran out of fuel (PARAM governance.wasm_fuel)",
        ),
        Some(TrapCode::GrowthOperationLimited | TrapCode::OutOfSystemMemory) => RuleError::new(
            "MEMORY",
            "the module grew its memory past PARAM governance.wasm_memory_pages",
        ),
        Some(code) => RuleError::new("TRAP", format!("the module trapped: {code}")),
        None if matches!(
            e.kind(),
            wasmi::errors::ErrorKind::Memory(_) | wasmi::errors::ErrorKind::Instantiation(_)
        ) =>
        {
            RuleError::new(
                "MEMORY",
                format!("the module's memory does not fit PARAM governance.wasm_memory_pages: {e}"),
            )
        }
        None => RuleError::new("TRAP", format!("the module failed: {e}")),
    }
}

fn limiter<'c>(call: &'c mut Call<'_, '_>) -> &'c mut dyn wasmi::ResourceLimiter {
    &mut call.limits
}

fn role_name(role: &Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The top-level fields of JSON arguments: a string's text, any other value's JSON.
/// Arguments that are not a JSON object have no fields.
fn json_fields(args: &[u8]) -> BTreeMap<String, String> {
    match serde_json::from_slice::<serde_json::Value>(args) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

type WasmCaller<'c, 'a, 's> = wasmi::Caller<'c, Call<'a, 's>>;

/// Stops the call with `why` (a host function's refusal).
fn stop(caller: &mut WasmCaller<'_, '_, '_>, why: RuleError) -> wasmi::Error {
    let text = why.to_string();
    caller.data_mut().stopped.get_or_insert(why);
    wasmi::Error::new(text)
}

/// Charges a host call's fuel: a base and one unit per byte moved.
fn charge(caller: &mut WasmCaller<'_, '_, '_>, bytes: usize) -> Result<(), wasmi::Error> {
    let cost = HOST_CALL_FUEL + bytes as u64;
    let left = caller.get_fuel()?;
    if left < cost {
        caller.set_fuel(0)?;
        return Err(stop(
            caller,
            RuleError::new(
                "FUEL",
                "the call ran out of fuel (PARAM governance.wasm_fuel)",
            ),
        ));
    }
    caller.set_fuel(left - cost)
}

fn memory(caller: &WasmCaller<'_, '_, '_>) -> Result<wasmi::Memory, wasmi::Error> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmi::Error::new("the module exports no memory"))
}

/// Bytes `[ptr, ptr + len)` of the module's memory, at most `max`.
fn read(
    caller: &mut WasmCaller<'_, '_, '_>,
    ptr: i32,
    len: i32,
    max: usize,
) -> Result<Vec<u8>, wasmi::Error> {
    let len = usize::try_from(len).map_err(|_| wasmi::Error::from(TrapCode::MemoryOutOfBounds))?;
    if len > max {
        return Err(stop(
            caller,
            RuleError::new(
                "TRAP",
                format!("a host call passed {len} bytes, more than {max}"),
            ),
        ));
    }
    charge(caller, len)?;
    let mut out = vec![0; len];
    memory(caller)?
        .read(&*caller, ptr as u32 as usize, &mut out)
        .map_err(|_| wasmi::Error::from(TrapCode::MemoryOutOfBounds))?;
    Ok(out)
}

fn text(caller: &mut WasmCaller<'_, '_, '_>, ptr: i32, len: i32) -> Result<String, wasmi::Error> {
    let bytes = read(caller, ptr, len, TEXT_BYTES_MAX)?;
    String::from_utf8(bytes).map_err(|_| {
        stop(
            caller,
            RuleError::new("TRAP", "a host call passed text that is not UTF-8"),
        )
    })
}

/// Hands `bytes` to the module: writes them at `out` if they fit in `cap`; answers
/// their length either way.
fn give(
    caller: &mut WasmCaller<'_, '_, '_>,
    bytes: Option<&[u8]>,
    out: i32,
    cap: i32,
) -> Result<i32, wasmi::Error> {
    let Some(bytes) = bytes else {
        charge(caller, 0)?;
        return Ok(-1);
    };
    charge(caller, bytes.len())?;
    if bytes.len() <= cap.max(0) as usize {
        memory(caller)?
            .write(&mut *caller, out as u32 as usize, bytes)
            .map_err(|_| wasmi::Error::from(TrapCode::MemoryOutOfBounds))?;
    }
    Ok(bytes.len() as i32)
}

fn host_method(mut c: WasmCaller<'_, '_, '_>, out: i32, cap: i32) -> Result<i32, wasmi::Error> {
    let method = c.data().method.clone();
    give(&mut c, Some(method.as_bytes()), out, cap)
}

fn host_arg(
    mut c: WasmCaller<'_, '_, '_>,
    name: i32,
    name_len: i32,
    out: i32,
    cap: i32,
) -> Result<i32, wasmi::Error> {
    let name = text(&mut c, name, name_len)?;
    let value = c.data().args.get(&name).cloned();
    give(&mut c, value.as_deref().map(str::as_bytes), out, cap)
}

fn host_caller(mut c: WasmCaller<'_, '_, '_>, out: i32, cap: i32) -> Result<i32, wasmi::Error> {
    let caller = c.data().caller.clone();
    give(&mut c, Some(caller.as_bytes()), out, cap)
}

fn host_has_role(mut c: WasmCaller<'_, '_, '_>, role: i32, len: i32) -> Result<i32, wasmi::Error> {
    let role = text(&mut c, role, len)?;
    Ok(i32::from(c.data().roles.contains(&role)))
}

fn host_height(c: WasmCaller<'_, '_, '_>) -> i64 {
    c.data().block.height as i64
}

fn host_time_ms(c: WasmCaller<'_, '_, '_>) -> i64 {
    c.data().block.time_ms as i64
}

fn host_get(
    mut c: WasmCaller<'_, '_, '_>,
    key: i32,
    key_len: i32,
    out: i32,
    cap: i32,
) -> Result<i32, wasmi::Error> {
    let key = read(&mut c, key, key_len, KEY_BYTES_MAX)?;
    let value = match c.data().writes.get(&key) {
        Some(value) => value.clone(),
        None => match c.data().overlay.get(&key) {
            Ok(value) => value,
            Err(e) => return Err(stop(&mut c, crate::engine::storage_failure(e))),
        },
    };
    give(&mut c, value.as_deref(), out, cap)
}

/// A key the module may write: under its own prefix.
fn owned_key(
    c: &mut WasmCaller<'_, '_, '_>,
    key: i32,
    key_len: i32,
) -> Result<Vec<u8>, wasmi::Error> {
    let key = read(c, key, key_len, KEY_BYTES_MAX)?;
    let prefix = c.data().prefix.clone();
    if !key.starts_with(prefix.as_bytes()) {
        return Err(stop(
            c,
            RuleError::new(
                "PREFIX",
                format!(
                    "the module may write only under `{prefix}`, not `{}`",
                    String::from_utf8_lossy(&key)
                ),
            ),
        ));
    }
    Ok(key)
}

fn host_put(
    mut c: WasmCaller<'_, '_, '_>,
    key: i32,
    key_len: i32,
    value: i32,
    value_len: i32,
) -> Result<(), wasmi::Error> {
    let key = owned_key(&mut c, key, key_len)?;
    let value = read(&mut c, value, value_len, VALUE_BYTES_MAX)?;
    c.data_mut().writes.insert(key, Some(value));
    Ok(())
}

fn host_delete(mut c: WasmCaller<'_, '_, '_>, key: i32, key_len: i32) -> Result<(), wasmi::Error> {
    let key = owned_key(&mut c, key, key_len)?;
    c.data_mut().writes.insert(key, None);
    Ok(())
}

fn host_event(mut c: WasmCaller<'_, '_, '_>, kind: i32, len: i32) -> Result<(), wasmi::Error> {
    let kind = text(&mut c, kind, len)?;
    if c.data().events.len() >= EVENTS_MAX {
        return Err(stop(
            &mut c,
            RuleError::new("TRAP", format!("more than {EVENTS_MAX} events")),
        ));
    }
    c.data_mut().events.push(Event {
        kind,
        attributes: Vec::new(),
    });
    Ok(())
}

fn host_attr(
    mut c: WasmCaller<'_, '_, '_>,
    key: i32,
    key_len: i32,
    value: i32,
    value_len: i32,
) -> Result<(), wasmi::Error> {
    let key = text(&mut c, key, key_len)?;
    let value = text(&mut c, value, value_len)?;
    match c.data_mut().events.last_mut() {
        Some(event) if event.attributes.len() < 32 => {
            event.attributes.push(Attribute { key, value });
            Ok(())
        }
        _ => Err(stop(
            &mut c,
            RuleError::new(
                "TRAP",
                "an attribute with no event before it, or more than 32",
            ),
        )),
    }
}

fn host_reject(
    mut c: WasmCaller<'_, '_, '_>,
    rule: i32,
    rule_len: i32,
    message: i32,
    message_len: i32,
) -> Result<(), wasmi::Error> {
    let rule = text(&mut c, rule, rule_len)?;
    let message = text(&mut c, message, message_len)?;
    let ok = !rule.is_empty()
        && rule.len() <= 32
        && rule
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    let why = if ok {
        RuleError::new(&rule, message)
    } else {
        RuleError::new(
            "TRAP",
            format!("the module rejected with a malformed rule id `{rule}`"),
        )
    };
    Err(stop(&mut c, why))
}

/// Defines every host function of [`HOST_FUNCTIONS`].
fn link<'a, 's>(linker: &mut Linker<Call<'a, 's>>) -> Result<(), wasmi::errors::LinkerError> {
    linker
        .func_wrap(HOST_MODULE, "method", host_method)?
        .func_wrap(HOST_MODULE, "arg", host_arg)?
        .func_wrap(HOST_MODULE, "caller", host_caller)?
        .func_wrap(HOST_MODULE, "has_role", host_has_role)?
        .func_wrap(HOST_MODULE, "height", host_height)?
        .func_wrap(HOST_MODULE, "time_ms", host_time_ms)?
        .func_wrap(HOST_MODULE, "get", host_get)?
        .func_wrap(HOST_MODULE, "put", host_put)?
        .func_wrap(HOST_MODULE, "delete", host_delete)?
        .func_wrap(HOST_MODULE, "event", host_event)?
        .func_wrap(HOST_MODULE, "attr", host_attr)?
        .func_wrap(HOST_MODULE, "reject", host_reject)?;
    Ok(())
}

/// The hash a module is installed under.
pub fn code_hash(suite: Suite, code: &[u8]) -> Hash {
    suite.tagged("cbec:wasm-code", code)
}
