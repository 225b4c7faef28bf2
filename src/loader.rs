//! Shared-library plugins: a module or an emitter in a `lib<name>.so` that speaks the C ABI of
//! `badger-plugin-sdk` (see its crate docs), loaded by name from the plugin directories.
//!
//! [`build_module`] and [`build_emitter`] load a library and wrap its handle in a
//! [`Module`] or an [`Emitter`], so the agent runs it exactly like a built-in: its own thread,
//! its timeout, its blacklist. Every problem of a found library (a file others could change,
//! a library that does not load, another ABI version, a missing symbol, an `init` that fails
//! or panics) is [`BuildError::Unavailable`]: reported, the plugin skipped, the rest runs. A
//! config the plugin rejects (status 3) is a [`BuildError::Config`] of its conf file.
//!
//! Libraries are opened with `RTLD_NOW | RTLD_LOCAL` and closed when the last plugin built
//! from them is dropped (a module hung inside its library keeps it open).

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use badger_plugin_sdk::abi::{self, Buf};
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

use badger_api::plugin::{
    Batch, BuildError, CollectError, ConfigError, EmitError, Emitter, Module, ModuleContext, PluginConf,
};
use badger_api::point::Point;
use badger_api::process::check_file;
use badger_api::throttle::LogThrottle;
use badger_formats::plugin_json::points_from_json;

/// The ABI version this badger speaks.
pub const ABI_VERSION: u32 = badger_plugin_sdk::ABI_VERSION;

/// The file a plugin name is looked up as in a plugin directory.
pub fn file_name(name: &str) -> String {
    format!("lib{name}.so")
}

/// The first `<dir>/lib<name>.so` that exists. Names that are not plain file-name parts
/// (a `/`, `..`, empty) are never looked up.
pub fn find(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name.starts_with('.') {
        return None;
    }
    dirs.iter().map(|d| d.join(file_name(name))).find(|p| p.exists())
}

/// An open library and its two common functions.
struct Lib {
    path: PathBuf,
    free: abi::FreeFn,
    // Dropped last: closes the library.
    lib: Library,
}

impl Lib {
    /// Checks the file, opens it, checks the ABI version.
    fn open(path: &Path) -> Result<Lib, String> {
        check_file(path, "load")?;
        // SAFETY: loading a library runs its initialisers: that is what a plugin is. The file
        // was checked to be changeable only by root or badger's own user.
        let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| format!("{}: cannot load it: {e}", path.display()))?;
        let version: abi::AbiVersionFn = symbol(&lib, path, abi::SYM_ABI_VERSION)?;
        // SAFETY: the symbol has the ABI's signature (every version keeps this one).
        let v = unsafe { version() };
        if v != ABI_VERSION {
            return Err(format!(
                "{}: plugin ABI version {v}, but this badger speaks version {ABI_VERSION}; rebuild the plugin \
                 with a badger-plugin-sdk of ABI version {ABI_VERSION}",
                path.display()
            ));
        }
        let free: abi::FreeFn = symbol(&lib, path, abi::SYM_FREE)?;
        Ok(Lib { path: path.to_path_buf(), free, lib })
    }

    fn symbol<T: Copy>(&self, name: &str) -> Result<T, BuildError> {
        symbol(&self.lib, &self.path, name).map_err(BuildError::Unavailable)
    }

    /// Copies a buffer the plugin handed out and gives it back to the plugin.
    fn take(&self, buf: Buf) -> Vec<u8> {
        if buf.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the ABI says a non-null Buf is `len` readable bytes the plugin allocated,
        // freed only through `badger_plugin_free`, once.
        let v = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec();
        unsafe { (self.free)(buf.ptr, buf.len) };
        v
    }

    fn text(&self, buf: Buf) -> String {
        let v = self.take(buf);
        let s = String::from_utf8_lossy(&v);
        if s.is_empty() {
            "(no message)".into()
        } else {
            s.into_owned()
        }
    }
}

fn symbol<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, String> {
    // SAFETY: T is the ABI's function type for this name; a library that exports the name
    // with another type breaks the ABI it claims by its version.
    unsafe { lib.get::<T>(name.as_bytes()) }.map(|s| *s).map_err(|_| {
        format!(
            "{}: missing symbol {name}: not a badger plugin of this kind, or built without the SDK's macro",
            path.display()
        )
    })
}

/// The plugin's own keys as a JSON object (the core's keys removed), for `init`.
fn config_json(conf: &PluginConf) -> Result<String, ConfigError> {
    let map: serde_json::Map<String, serde_json::Value> = conf.parse()?;
    Ok(serde_json::Value::Object(map).to_string())
}

/// Calls an `init` and turns its status into a handle or a build error.
fn init(lib: &Lib, conf: &PluginConf, f: abi::InitFn) -> Result<*mut c_void, BuildError> {
    let text = config_json(conf)?;
    let mut handle: *mut c_void = std::ptr::null_mut();
    let mut out = Buf::EMPTY;
    // SAFETY: the ABI's init: config bytes, a handle slot and an out buffer, all valid.
    let code = unsafe { f(text.as_ptr(), text.len(), &mut handle, &mut out) };
    let path = lib.path.display();
    match code {
        abi::OK if !handle.is_null() => {
            lib.take(out);
            Ok(handle)
        }
        abi::OK => Err(BuildError::Unavailable(format!("{path}: init returned no handle"))),
        abi::CONFIG_ERROR => Err(BuildError::Config(plugin_config_error(conf, &lib.take(out)))),
        abi::PANICKED => Err(BuildError::Unavailable(format!("{path}: panicked while starting: {}", lib.text(out)))),
        abi::ERROR => Err(BuildError::Unavailable(format!("{path}: {}", lib.text(out)))),
        n => Err(BuildError::Unavailable(format!("{path}: init returned unknown status {n}: {}", lib.text(out)))),
    }
}

/// A status-3 answer (`{"key": …, "message": …}`) as an error of the conf file.
fn plugin_config_error(conf: &PluginConf, bytes: &[u8]) -> ConfigError {
    #[derive(serde::Deserialize)]
    struct Answer {
        key: Option<String>,
        message: String,
    }
    match serde_json::from_slice::<Answer>(bytes) {
        Ok(a) => {
            let key = a.key.or_else(|| {
                a.message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()).map(str::to_string)
            });
            // The line of the key's first part: "dirs.spool" is on the line of "dirs" or of "spool".
            let line = key.as_deref().and_then(|k| {
                k.rsplit('.').find_map(|part| conf.line_of(part)).or_else(|| k.split('.').find_map(|p| conf.line_of(p)))
            });
            ConfigError::new(&conf.file, line, key, a.message)
        }
        Err(_) => ConfigError::new(&conf.file, None, None, String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// A module in a shared library.
struct NativeModule {
    lib: Arc<Lib>,
    handle: *mut c_void,
    collect: abi::CollectFn,
    destroy: abi::DestroyFn,
    name: String,
    bad_points: u64,
    bad_log: LogThrottle,
}

// SAFETY: the ABI lets every call on a handle come from any thread, one call at a time; the
// module is used by one thread at a time (its worker) and the Lib's functions are plain C.
unsafe impl Send for NativeModule {}
unsafe impl Send for NativeEmitter {}

/// Loads `path` as a module and builds it from `conf`.
pub fn build_module(path: &Path, _ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let lib = Lib::open(path).map_err(BuildError::Unavailable)?;
    let init_fn: abi::InitFn = lib.symbol(abi::SYM_MODULE_INIT)?;
    let collect: abi::CollectFn = lib.symbol(abi::SYM_MODULE_COLLECT)?;
    let destroy: abi::DestroyFn = lib.symbol(abi::SYM_MODULE_DESTROY)?;
    let lib = Arc::new(lib);
    let handle = init(&lib, conf, init_fn)?;
    Ok(Box::new(NativeModule {
        lib,
        handle,
        collect,
        destroy,
        name: conf.name.clone(),
        bad_points: 0,
        bad_log: LogThrottle::default(),
    }))
}

impl Module for NativeModule {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let mut buf = Buf::EMPTY;
        // SAFETY: a live handle of this library, one call at a time.
        let code = unsafe { (self.collect)(self.handle, &mut buf) };
        match code {
            abi::OK => {}
            abi::PANICKED => return Err(CollectError(format!("panicked: {}", self.lib.text(buf)))),
            abi::ERROR | abi::CONFIG_ERROR => return Err(CollectError(self.lib.text(buf))),
            n => return Err(CollectError(format!("collect returned unknown status {n}: {}", self.lib.text(buf)))),
        }
        let bytes = self.lib.take(buf);
        if bytes.is_empty() {
            return Ok(());
        }
        let items: Vec<serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|e| CollectError(format!("the plugin returned no JSON array of points: {e}")))?;
        for item in &items {
            if let Err(why) = points_from_json(item, out) {
                self.bad_points += 1;
                if let Some(more) = self.bad_log.allow() {
                    log::warn!(
                        "module \"{}\": dropped a bad point from {}: {why} ({} bad in all, {more} not logged since the last line)",
                        self.name,
                        self.lib.path.display(),
                        self.bad_points
                    );
                }
            }
        }
        Ok(())
    }
}

impl Drop for NativeModule {
    fn drop(&mut self) {
        // SAFETY: the handle's last use.
        unsafe { (self.destroy)(self.handle) };
    }
}

/// An emitter in a shared library.
struct NativeEmitter {
    lib: Arc<Lib>,
    handle: *mut c_void,
    emit: abi::EmitFn,
    flush: abi::FlushFn,
    destroy: abi::DestroyFn,
    buf: String,
}

/// Loads `path` as an emitter and builds it from `conf`.
pub fn build_emitter(path: &Path, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let lib = Lib::open(path).map_err(BuildError::Unavailable)?;
    let init_fn: abi::InitFn = lib.symbol(abi::SYM_EMITTER_INIT)?;
    let emit: abi::EmitFn = lib.symbol(abi::SYM_EMITTER_EMIT)?;
    let flush: abi::FlushFn = lib.symbol(abi::SYM_EMITTER_FLUSH)?;
    let destroy: abi::DestroyFn = lib.symbol(abi::SYM_EMITTER_DESTROY)?;
    let lib = Arc::new(lib);
    let handle = init(&lib, conf, init_fn)?;
    Ok(Box::new(NativeEmitter { lib, handle, emit, flush, destroy, buf: String::new() }))
}

impl NativeEmitter {
    fn status(&self, code: i32, out: Buf) -> Result<(), EmitError> {
        match code {
            abi::OK => {
                self.lib.take(out);
                Ok(())
            }
            abi::PANICKED => Err(EmitError(format!("panicked: {}", self.lib.text(out)))),
            abi::ERROR | abi::CONFIG_ERROR => Err(EmitError(self.lib.text(out))),
            n => Err(EmitError(format!("returned unknown status {n}: {}", self.lib.text(out)))),
        }
    }
}

impl Emitter for NativeEmitter {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        self.buf.clear();
        for p in batch.payloads() {
            badger_formats::json::write_payload(&mut self.buf, &p, false);
            self.buf.push('\n');
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut out = Buf::EMPTY;
        // SAFETY: a live handle, the batch's bytes and an out buffer.
        let code = unsafe { (self.emit)(self.handle, self.buf.as_ptr(), self.buf.len(), &mut out) };
        self.status(code, out)
    }

    fn flush(&mut self, _deadline: Instant) -> Result<(), EmitError> {
        let mut out = Buf::EMPTY;
        // SAFETY: a live handle and an out buffer.
        let code = unsafe { (self.flush)(self.handle, &mut out) };
        self.status(code, out)
    }
}

impl Drop for NativeEmitter {
    fn drop(&mut self) {
        // SAFETY: the handle's last use.
        unsafe { (self.destroy)(self.handle) };
    }
}
