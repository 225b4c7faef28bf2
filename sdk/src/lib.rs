//! Write a badger module or emitter as a shared library.
//!
//! A module is a type that implements [`Module`]; an emitter one that implements [`Emitter`].
//! [`badger_module!`] or [`badger_emitter!`] exports it through badger's C ABI. Build the crate
//! as a `cdylib`, copy `lib<name>.so` into a plugin directory (`/usr/lib/badger/modules`, or
//! one of `core.plugin_dirs`), list `<name>` in `config.json` and put its settings in
//! `conf.d/<name>.conf`, as for a built-in.
//!
//! ```no_run
//! use badger_plugin_sdk::{badger_module, Error, Module, Point};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     #[serde(default)]
//!     start: i64,
//! }
//!
//! struct Counter(i64);
//!
//! impl Module for Counter {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, Error> {
//!         Ok(Counter(config.start))
//!     }
//!     fn collect(&mut self, out: &mut Vec<Point>) -> Result<(), Error> {
//!         self.0 += 1;
//!         out.push(Point::new("counter.value", self.0));
//!         Ok(())
//!     }
//! }
//!
//! badger_module!(Counter);
//! ```
//!
//! One library holds one module or one emitter. The macros catch every panic at the
//! boundary: a panicking plugin fails that one call (badger logs it and asks again next
//! time), it never takes badger down. Build plugins with the default `panic = "unwind"`: with
//! `panic = "abort"` a panic ends the whole process.
//!
//! # The C ABI (version 1)
//!
//! Everything crosses the boundary as bytes: the config and the payloads as JSON from badger to
//! the plugin, points and error messages as UTF-8 JSON or text from the plugin to badger. A
//! plugin in any language can implement it. Every symbol is a C function:
//!
//! ```c
//! typedef struct { uint8_t *ptr; size_t len; } BadgerBuf;   /* bytes the plugin allocated */
//!
//! uint32_t badger_plugin_abi_version(void);                  /* returns 1 */
//! void     badger_plugin_free(uint8_t *ptr, size_t len);     /* frees a BadgerBuf's bytes */
//!
//! /* a module */
//! int32_t  badger_module_init(const uint8_t *config, size_t config_len, void **handle, BadgerBuf *out);
//! int32_t  badger_module_collect(void *handle, BadgerBuf *out);
//! void     badger_module_destroy(void *handle);
//!
//! /* an emitter */
//! int32_t  badger_emitter_init(const uint8_t *config, size_t config_len, void **handle, BadgerBuf *out);
//! int32_t  badger_emitter_emit(void *handle, const uint8_t *payloads, size_t len, BadgerBuf *out);
//! int32_t  badger_emitter_flush(void *handle, BadgerBuf *out);
//! void     badger_emitter_destroy(void *handle);
//! ```
//!
//! * Loading: badger opens the library (`dlopen`, `RTLD_NOW`), calls
//!   `badger_plugin_abi_version` and refuses the library unless it returns [`ABI_VERSION`]; it
//!   then looks up the five symbols of the kind it was listed as (a module: `init`, `collect`,
//!   `destroy` and the two `plugin` ones). A missing symbol refuses the library.
//! * `init` gets the plugin's `conf.d/<name>.conf` as one JSON object without the keys badger
//!   reads itself (`interval`, `blacklist`, `timeout`); `{}` when the file does not exist. On
//!   success it stores an opaque handle in `*handle` and returns 0.
//! * Every `int32_t` function returns a status and may fill `*out`: `0` success (`collect`:
//!   `out` holds the points), `1` error (`out` holds a UTF-8 message), `2` the plugin panicked
//!   (`out` holds the panic message), `3` the config is wrong: `out` holds `{"key": "<key
//!   path>" or null, "message": "…"}`. From `init`, badger reports status 3 as a config error
//!   of the conf file (file, line, key; exit 2), while status 1 or 2 only skips the plugin;
//!   from the other calls it is an error like status 1.
//! * `*out` is `{NULL, 0}` when there is nothing to say. badger hands every non-null `out`
//!   back to `badger_plugin_free` once it has read it.
//! * `collect` fills `out` with a JSON array of point objects, the shape of the `points` of a
//!   payload, plus optional structured parts:
//!   `[{"app.queue.depth": {"value": 3, "units": "", "measurement": "app", "field": "queue_depth",
//!   "tags": {"queue": "mail"}}}]`. A JSON integer is an int stat, a number with a `.` or an
//!   exponent a float stat.
//! * `emit` gets a batch of payloads, one compact JSON object per line (each line ends with
//!   `\n`), exactly what badger's `stdout` emitter prints: `{"cluster": …, "points": […],
//!   "timestamp": …}`. `flush` is called once at shutdown, after the last `emit`.
//! * Calls on one handle never overlap, but may come from different threads (`init` runs on
//!   badger's main thread, `collect` and `emit` on the plugin's own thread). `destroy` is the
//!   last call on a handle. A module whose `collect` hangs keeps its thread; badger goes on
//!   without it.

use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

#[doc(hidden)]
pub use serde_json;

/// The ABI version this SDK speaks; badger refuses a library that reports another one.
pub const ABI_VERSION: u32 = 1;

/// What a plugin's functions return when they fail: anything that is an error (`?` works on
/// I/O errors, `"text".into()` makes one).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A config value that is well-formed but wrong (`dirs` is empty, a path is relative):
/// returned from `new`, badger reports it like a config error of a built-in (file, line and
/// key; exit 2) instead of only skipping the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, as a path (`dirs`, `servers.0.host`), when there is one.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { key: Some(key.into()), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "key \"{k}\": {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The config of a plugin that takes no keys of its own (any key is then an error).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// A stat's value: an int stat stays an int, a float stat a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Value::Int(i) => s.serialize_i64(i),
            Value::Float(f) => s.serialize_f64(f),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// One stat. Only `name` and `value` are needed; `units` defaults to `""`. The structured
/// parts (for line protocol and tagged Graphite) default to the name split at its first dot:
/// `app.requests` is measurement `app`, field `requests`, no tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub value: Value,
    pub units: String,
    pub measurement: Option<String>,
    pub field: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl Point {
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Point {
        Point {
            name: name.into(),
            value: value.into(),
            units: String::new(),
            measurement: None,
            field: None,
            tags: Vec::new(),
        }
    }

    /// Units as the original printed them: `"B"`, `"ms"`, `"percent"`, …
    pub fn units(mut self, units: impl Into<String>) -> Point {
        self.units = units.into();
        self
    }

    pub fn measurement(mut self, measurement: impl Into<String>) -> Point {
        self.measurement = Some(measurement.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Point {
        self.field = Some(field.into());
        self
    }

    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Point {
        self.tags.push((key.into(), value.into()));
        self
    }
}

/// `{"<name>": {"units": …, "value": …, ["measurement", "field", "tags"]}}`
impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Inner<'a>(&'a Point);
        impl Serialize for Inner<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let p = self.0;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("units", &p.units)?;
                m.serialize_entry("value", &p.value)?;
                if let Some(x) = &p.measurement {
                    m.serialize_entry("measurement", x)?;
                }
                if let Some(x) = &p.field {
                    m.serialize_entry("field", x)?;
                }
                if !p.tags.is_empty() {
                    m.serialize_entry("tags", &Tags(&p.tags))?;
                }
                m.end()
            }
        }
        struct Tags<'a>(&'a [(String, String)]);
        impl Serialize for Tags<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(&self.name, &Inner(self))?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Inner {
            value: Value,
            #[serde(default)]
            units: String,
            measurement: Option<String>,
            field: Option<String>,
            #[serde(default)]
            tags: Option<TagList>,
        }
        struct TagList(Vec<(String, String)>);
        impl<'de> Deserialize<'de> for TagList {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = TagList;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("an object of string tags")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TagList, A::Error> {
                        let mut v = Vec::new();
                        while let Some(kv) = map.next_entry::<String, String>()? {
                            v.push(kv);
                        }
                        Ok(TagList(v))
                    }
                }
                d.deserialize_map(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Point;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a point: {\"<name>\": {\"value\": …, \"units\": …}}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Point, A::Error> {
                let (name, inner) =
                    map.next_entry::<String, Inner>()?.ok_or_else(|| de::Error::custom("a point needs a name"))?;
                if map.next_key::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("a point object has exactly one key, its name"));
                }
                Ok(Point {
                    name,
                    value: inner.value,
                    units: inner.units,
                    measurement: inner.measurement,
                    field: inner.field,
                    tags: inner.tags.map(|t| t.0).unwrap_or_default(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// One tick's payload as an emitter receives it: host metadata, the tick's timestamp (whole
/// epoch seconds) and the points in module order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub cluster: String,
    pub datacenter: String,
    pub hostname: String,
    pub ipv4: String,
    pub ipv6: String,
    pub points: Vec<Point>,
    pub region: String,
    pub timestamp: i64,
    pub zone: String,
}

/// A stats module: built once from its config, asked for points every tick it is due.
pub trait Module: Send + Sized + 'static {
    /// The plugin's own keys of its conf file (`Deserialize`; add
    /// `#[serde(deny_unknown_fields)]` so a typo is an error). [`NoConfig`] for none.
    type Config: DeserializeOwned;
    /// Builds the module. An error here skips the plugin (badger keeps running); a
    /// [`ConfigError`] is a config error (badger refuses the config).
    fn new(config: Self::Config) -> Result<Self, Error>;
    /// Appends this collection's points. On an error the points of this call are dropped.
    /// Return well within the module's timeout (500 ms by default).
    fn collect(&mut self, out: &mut Vec<Point>) -> Result<(), Error>;
}

/// An emitter: built once from its config, handed every payload.
pub trait Emitter: Send + Sized + 'static {
    type Config: DeserializeOwned;
    fn new(config: Self::Config) -> Result<Self, Error>;
    /// Every payload since the last call (one, or more with an `interval`), in tick order.
    fn emit(&mut self, payloads: &[Payload]) -> Result<(), Error>;
    /// Called once at shutdown after the last `emit`.
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// The C side of the ABI: the buffer type, the status codes and the symbol names.
pub mod abi {
    /// Bytes the plugin allocated and hands to badger; freed with `badger_plugin_free`.
    #[repr(C)]
    #[derive(Debug)]
    pub struct Buf {
        pub ptr: *mut u8,
        pub len: usize,
    }

    impl Buf {
        pub const EMPTY: Buf = Buf { ptr: std::ptr::null_mut(), len: 0 };

        /// Hands a vector over (an empty one as `{NULL, 0}`).
        pub fn from_vec(v: Vec<u8>) -> Buf {
            if v.is_empty() {
                return Buf::EMPTY;
            }
            let b = v.into_boxed_slice();
            let len = b.len();
            Buf { ptr: Box::into_raw(b).cast::<u8>(), len }
        }
    }

    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const PANICKED: i32 = 2;
    pub const CONFIG_ERROR: i32 = 3;

    pub const SYM_ABI_VERSION: &str = "badger_plugin_abi_version";
    pub const SYM_FREE: &str = "badger_plugin_free";
    pub const SYM_MODULE_INIT: &str = "badger_module_init";
    pub const SYM_MODULE_COLLECT: &str = "badger_module_collect";
    pub const SYM_MODULE_DESTROY: &str = "badger_module_destroy";
    pub const SYM_EMITTER_INIT: &str = "badger_emitter_init";
    pub const SYM_EMITTER_EMIT: &str = "badger_emitter_emit";
    pub const SYM_EMITTER_FLUSH: &str = "badger_emitter_flush";
    pub const SYM_EMITTER_DESTROY: &str = "badger_emitter_destroy";

    pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
    pub type FreeFn = unsafe extern "C" fn(*mut u8, usize);
    pub type InitFn = unsafe extern "C" fn(*const u8, usize, *mut *mut std::ffi::c_void, *mut Buf) -> i32;
    pub type CollectFn = unsafe extern "C" fn(*mut std::ffi::c_void, *mut Buf) -> i32;
    pub type EmitFn = unsafe extern "C" fn(*mut std::ffi::c_void, *const u8, usize, *mut Buf) -> i32;
    pub type FlushFn = unsafe extern "C" fn(*mut std::ffi::c_void, *mut Buf) -> i32;
    pub type DestroyFn = unsafe extern "C" fn(*mut std::ffi::c_void);
}

/// What the macros call. Not a stable API: use the macros.
#[doc(hidden)]
pub mod __rt {
    use super::*;
    use abi::{Buf, CONFIG_ERROR, ERROR, OK, PANICKED};

    type Outcome = Result<Vec<u8>, (i32, Vec<u8>)>;

    fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    }

    /// Runs `f`, turning a panic into status 2, and hands its bytes over through `out`.
    fn guard(out: *mut Buf, f: impl FnOnce() -> Outcome) -> i32 {
        let (code, bytes) = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(b)) => (OK, b),
            Ok(Err(e)) => e,
            Err(p) => (PANICKED, panic_message(&*p).into_bytes()),
        };
        if !out.is_null() {
            // SAFETY: badger passes a valid, writable Buf.
            unsafe { out.write(Buf::from_vec(bytes)) };
        }
        code
    }

    fn config_error(key: Option<String>, message: String) -> (i32, Vec<u8>) {
        let json = serde_json::json!({ "key": key, "message": message });
        (CONFIG_ERROR, json.to_string().into_bytes())
    }

    fn error(e: Error) -> (i32, Vec<u8>) {
        match e.downcast::<ConfigError>() {
            Ok(c) => config_error(c.key, c.message),
            Err(e) => (ERROR, e.to_string().into_bytes()),
        }
    }

    /// # Safety
    /// `ptr` is null with `len` 0, or valid for `len` bytes.
    unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
        if ptr.is_null() || len == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(ptr, len) }
        }
    }

    fn config<C: DeserializeOwned>(text: &[u8]) -> Result<C, (i32, Vec<u8>)> {
        let text = if text.is_empty() { b"{}".as_slice() } else { text };
        let mut de = serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path == "?" || path.is_empty() { None } else { Some(path) };
            let mut message = e.into_inner().to_string();
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            config_error(key, message)
        })
    }

    /// # Safety
    /// The arguments of `badger_module_init` as badger passes them.
    pub unsafe fn module_init<M: Module>(
        config: *const u8,
        config_len: usize,
        handle: *mut *mut c_void,
        out: *mut Buf,
    ) -> i32 {
        let text = unsafe { bytes(config, config_len) };
        guard(out, || {
            if handle.is_null() {
                return Err((ERROR, b"null handle pointer".to_vec()));
            }
            let m = M::new(self::config(text)?).map_err(error)?;
            // SAFETY: checked for null above; badger passes a writable pointer.
            unsafe { handle.write(Box::into_raw(Box::new(m)).cast::<c_void>()) };
            Ok(Vec::new())
        })
    }

    /// # Safety
    /// `handle` came from `module_init::<M>` and is not destroyed.
    pub unsafe fn module_collect<M: Module>(handle: *mut c_void, out: *mut Buf) -> i32 {
        guard(out, || {
            // SAFETY: the handle is a live Box<M>, used by one call at a time.
            let m = unsafe { handle.cast::<M>().as_mut() }.ok_or((ERROR, b"null handle".to_vec()))?;
            let mut points = Vec::new();
            m.collect(&mut points).map_err(error)?;
            serde_json::to_vec(&points).map_err(|e| (ERROR, e.to_string().into_bytes()))
        })
    }

    /// # Safety
    /// `handle` came from `module_init::<M>`; it is not used afterwards.
    pub unsafe fn module_destroy<M: Module>(handle: *mut c_void) {
        if !handle.is_null() {
            // SAFETY: the handle is a live Box<M> and this is its last use.
            let b = unsafe { Box::from_raw(handle.cast::<M>()) };
            let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
        }
    }

    /// # Safety
    /// The arguments of `badger_emitter_init` as badger passes them.
    pub unsafe fn emitter_init<E: Emitter>(
        config: *const u8,
        config_len: usize,
        handle: *mut *mut c_void,
        out: *mut Buf,
    ) -> i32 {
        let text = unsafe { bytes(config, config_len) };
        guard(out, || {
            if handle.is_null() {
                return Err((ERROR, b"null handle pointer".to_vec()));
            }
            let e = E::new(self::config(text)?).map_err(error)?;
            // SAFETY: checked for null above; badger passes a writable pointer.
            unsafe { handle.write(Box::into_raw(Box::new(e)).cast::<c_void>()) };
            Ok(Vec::new())
        })
    }

    /// Parses a batch: one payload per line.
    pub fn parse_payloads(bytes: &[u8]) -> Result<Vec<Payload>, String> {
        let mut out = Vec::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.push(serde_json::from_slice(line).map_err(|e| format!("payload line {}: {e}", i + 1))?);
        }
        Ok(out)
    }

    /// # Safety
    /// `handle` came from `emitter_init::<E>`; `payloads` is valid for `len` bytes.
    pub unsafe fn emitter_emit<E: Emitter>(handle: *mut c_void, payloads: *const u8, len: usize, out: *mut Buf) -> i32 {
        let bytes = unsafe { bytes(payloads, len) };
        guard(out, || {
            // SAFETY: the handle is a live Box<E>, used by one call at a time.
            let e = unsafe { handle.cast::<E>().as_mut() }.ok_or((ERROR, b"null handle".to_vec()))?;
            let batch = parse_payloads(bytes).map_err(|m| (ERROR, m.into_bytes()))?;
            e.emit(&batch).map_err(error)?;
            Ok(Vec::new())
        })
    }

    /// # Safety
    /// `handle` came from `emitter_init::<E>` and is not destroyed.
    pub unsafe fn emitter_flush<E: Emitter>(handle: *mut c_void, out: *mut Buf) -> i32 {
        guard(out, || {
            // SAFETY: the handle is a live Box<E>, used by one call at a time.
            let e = unsafe { handle.cast::<E>().as_mut() }.ok_or((ERROR, b"null handle".to_vec()))?;
            e.flush().map_err(error)?;
            Ok(Vec::new())
        })
    }

    /// # Safety
    /// `handle` came from `emitter_init::<E>`; it is not used afterwards.
    pub unsafe fn emitter_destroy<E: Emitter>(handle: *mut c_void) {
        if !handle.is_null() {
            // SAFETY: the handle is a live Box<E> and this is its last use.
            let b = unsafe { Box::from_raw(handle.cast::<E>()) };
            let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
        }
    }

    /// # Safety
    /// `ptr`/`len` is a buffer this library handed out through a `Buf`, not freed yet.
    pub unsafe fn free(ptr: *mut u8, len: usize) {
        if !ptr.is_null() {
            // SAFETY: Buf::from_vec made it from a Box<[u8]> of exactly `len` bytes.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
        }
    }
}

/// The ABI functions every plugin library exports (its ABI version, and freeing buffers it
/// handed out); used by [`badger_module!`] and [`badger_emitter!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __badger_plugin_common {
    () => {
        /// The ABI version this plugin was built for.
        #[unsafe(no_mangle)]
        pub extern "C" fn badger_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        /// Frees a buffer this plugin handed out.
        ///
        /// # Safety
        /// Only with a buffer from this plugin, once.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_plugin_free(ptr: *mut u8, len: usize) {
            unsafe { $crate::__rt::free(ptr, len) }
        }
    };
}

/// Exports `$ty` (a [`Module`]) as this library's module: defines the ABI's `extern "C"`
/// functions, each of which catches panics.
#[macro_export]
macro_rules! badger_module {
    ($ty:ty) => {
        $crate::__badger_plugin_common!();

        /// Builds the module from its config JSON.
        ///
        /// # Safety
        /// See the ABI in badger-plugin-sdk.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_module_init(
            config: *const u8,
            config_len: usize,
            handle: *mut *mut ::core::ffi::c_void,
            out: *mut $crate::abi::Buf,
        ) -> i32 {
            unsafe { $crate::__rt::module_init::<$ty>(config, config_len, handle, out) }
        }

        /// Collects points, as a JSON array.
        ///
        /// # Safety
        /// See the ABI in badger-plugin-sdk.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_module_collect(
            handle: *mut ::core::ffi::c_void,
            out: *mut $crate::abi::Buf,
        ) -> i32 {
            unsafe { $crate::__rt::module_collect::<$ty>(handle, out) }
        }

        /// Drops the module.
        ///
        /// # Safety
        /// See the ABI in badger-plugin-sdk.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_module_destroy(handle: *mut ::core::ffi::c_void) {
            unsafe { $crate::__rt::module_destroy::<$ty>(handle) }
        }
    };
}

/// Exports `$ty` (an [`Emitter`]) as this library's emitter: defines the ABI's `extern "C"`
/// functions, each of which catches panics.
#[macro_export]
macro_rules! badger_emitter {
    ($ty:ty) => {
        $crate::__badger_plugin_common!();

        /// Builds the emitter from its config JSON.
        ///
        /// # Safety
        /// See the ABI in badger-plugin-sdk.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_emitter_init(
            config: *const u8,
            config_len: usize,
            handle: *mut *mut ::core::ffi::c_void,
            out: *mut $crate::abi::Buf,
        ) -> i32 {
            unsafe { $crate::__rt::emitter_init::<$ty>(config, config_len, handle, out) }
        }

        /// Hands over a batch of payloads, one JSON object per line.
        ///
        /// # Safety
        /// See the ABI in badger-plugin-sdk.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_emitter_emit(
            handle: *mut ::core::ffi::c_void,
            payloads: *const u8,
            len: usize,
            out: *mut $crate::abi::Buf,
        ) -> i32 {
            unsafe { $crate::__rt::emitter_emit::<$ty>(handle, payloads, len, out) }
        }

        /// Flushes at shutdown.
        ///
        /// # Safety
        /// See the ABI in badger-plugin-sdk.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_emitter_flush(
            handle: *mut ::core::ffi::c_void,
            out: *mut $crate::abi::Buf,
        ) -> i32 {
            unsafe { $crate::__rt::emitter_flush::<$ty>(handle, out) }
        }

        /// Drops the emitter.
        ///
        /// # Safety
        /// See the ABI in badger-plugin-sdk.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn badger_emitter_destroy(handle: *mut ::core::ffi::c_void) {
            unsafe { $crate::__rt::emitter_destroy::<$ty>(handle) }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_round_trip_in_the_wire_shape() {
        let p = Point::new("app.queue.mail", 3).units("msgs").measurement("app").field("queue").tag("queue", "mail");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"app.queue.mail":{"units":"msgs","value":3,"measurement":"app","field":"queue","tags":{"queue":"mail"}}}"#
        );
        assert_eq!(serde_json::from_str::<Point>(&json).unwrap(), p);
        let f: Point = serde_json::from_str(r#"{"x.y": {"value": 1.0}}"#).unwrap();
        assert_eq!((f.value, f.units.as_str()), (Value::Float(1.0), ""));
        assert!(serde_json::from_str::<Point>(r#"{"a": {"value": 1}, "b": {"value": 2}}"#).is_err());
        assert!(serde_json::from_str::<Point>(r#"{"a": {"value": 1, "unit": ""}}"#).is_err());
    }

    #[test]
    fn payload_lines() {
        let line = r#"{"cluster":"c","datacenter":"","hostname":"h","ipv4":"","ipv6":"","points":[{"a.b":{"units":"","value":1}}],"region":"","timestamp":5,"zone":""}"#;
        let batch = __rt::parse_payloads(format!("{line}\n{line}\n").as_bytes()).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].points[0], Point::new("a.b", 1));
        assert_eq!(batch[1].timestamp, 5);
    }

    struct Boom;
    impl Module for Boom {
        type Config = NoConfig;
        fn new(_: NoConfig) -> Result<Self, Error> {
            Ok(Boom)
        }
        fn collect(&mut self, _: &mut Vec<Point>) -> Result<(), Error> {
            panic!("boom")
        }
    }

    #[test]
    fn calls_catch_panics_and_report_config_errors() {
        let mut handle = std::ptr::null_mut();
        let mut out = abi::Buf::EMPTY;
        let conf = br#"{"x": 1}"#;
        let code = unsafe { __rt::module_init::<Boom>(conf.as_ptr(), conf.len(), &mut handle, &mut out) };
        assert_eq!(code, abi::CONFIG_ERROR);
        let msg = unsafe { std::slice::from_raw_parts(out.ptr, out.len) };
        let v: serde_json::Value = serde_json::from_slice(msg).unwrap();
        assert!(v["message"].as_str().unwrap().starts_with("unknown field `x`"), "{v}");
        unsafe { __rt::free(out.ptr, out.len) };

        let code = unsafe { __rt::module_init::<Boom>(b"{}".as_ptr(), 2, &mut handle, &mut out) };
        assert_eq!((code, out.len), (abi::OK, 0));
        let code = unsafe { __rt::module_collect::<Boom>(handle, &mut out) };
        assert_eq!(code, abi::PANICKED);
        assert_eq!(unsafe { std::slice::from_raw_parts(out.ptr, out.len) }, b"boom");
        unsafe { __rt::free(out.ptr, out.len) };
        unsafe { __rt::module_destroy::<Boom>(handle) };
    }
}
