//! Tailing log files: every file that matches the globs is read line by line as it grows.
//!
//! One thread looks at the files four times a second. A file is known by its device and
//! inode: when the path holds another file (rotation), the old one is read to its end and
//! the new one from its start; when the file got shorter than what was read (truncation), it
//! is read again from its start; when it vanishes, what is left of it is read and it is
//! forgotten. With a state file, the offset of the last whole line read in each file is saved
//! (at most once a second, and when the module stops) and reading resumes there after a
//! restart, if the path still holds the same file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::store::Ingest;
use super::Shared;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Longest line; the rest of a longer one is skipped.
pub const MAX_LINE: usize = 64 << 10;
const CHUNK: usize = 64 << 10;
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Where reading stopped in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offset {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// The state file: the offset in every file, by path.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub files: BTreeMap<String, Offset>,
}

impl State {
    pub fn load(path: &Path) -> io::Result<State> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state atomically (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[derive(Default)]
struct Control {
    stop: bool,
    wake: bool,
    passes: u64,
}

/// The tailer thread and how to stop it.
struct Handle {
    ctl: Arc<(Mutex<Control>, Condvar)>,
    thread: Mutex<Option<JoinHandle<State>>>,
}

impl Handle {
    /// Stops the thread (it saves the offsets) and returns where it was in every file;
    /// `None` if it was stopped before.
    fn stop(&self) -> Option<State> {
        {
            let (m, cv) = &*self.ctl;
            m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
            cv.notify_all();
        }
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        thread.join().ok()
    }
}

/// The tailers running, by module name: a rebuilt module's tailer takes over from the old one.
static RUNNING: Mutex<Vec<(String, std::sync::Weak<Handle>)>> = Mutex::new(Vec::new());

/// The running tailer.
pub struct Tail {
    handle: Arc<Handle>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.handle.stop();
    }
}

impl Tail {
    pub fn start(
        shared: Arc<Shared>,
        globs: Vec<String>,
        state_file: Option<PathBuf>,
        from_beginning: bool,
        take_over: Option<&str>,
    ) -> Result<Tail, String> {
        // A reload: the old tailer stops first and hands over its offsets, so no line is
        // read twice or missed.
        let mut handed = None;
        if let Some(name) = take_over {
            let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
            running.retain(|(_, w)| w.strong_count() > 0);
            if let Some(old) = running.iter().find(|(n, _)| n == name).and_then(|(_, w)| w.upgrade()) {
                handed = old.stop();
            }
        }
        let state = match &state_file {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("state_dir {}: {e}", dir.display()))?;
                }
                State::load(p).unwrap_or_else(|e| {
                    log::warn!("l2met: {}: {e}; starting without saved offsets", p.display());
                    State::default()
                })
            }
            None => State::default(),
        };
        let state = handed.unwrap_or(state);
        let ctl: Arc<(Mutex<Control>, Condvar)> = Arc::default();
        let c = ctl.clone();
        let mut tailer = Tailer {
            shared,
            globs,
            state_file,
            saved: state,
            from_beginning,
            files: HashMap::new(),
            ingest: Ingest::new(),
            buf: vec![0; CHUNK],
            first_pass: true,
            dirty: false,
            last_save: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("l2met-tail".into())
            .spawn(move || tailer.run(&c))
            .map_err(|e| format!("starting the file thread: {e}"))?;
        let handle = Arc::new(Handle { ctl, thread: Mutex::new(Some(thread)) });
        if let Some(name) = take_over {
            RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), Arc::downgrade(&handle)));
        }
        Ok(Tail { handle })
    }

    /// Waits until the files were looked at once after this call.
    pub fn sync(&self) {
        let (m, cv) = &*self.handle.ctl;
        let mut c = m.lock().unwrap_or_else(|e| e.into_inner());
        let target = c.passes + 2;
        c.wake = true;
        cv.notify_all();
        while c.passes < target && !c.stop {
            c = cv.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One file being read.
struct Tracked {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes read so far.
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`]: skip to its end.
    skipping: bool,
}

impl Tracked {
    /// Where the next whole line starts (what a restart resumes from).
    fn line_offset(&self) -> u64 {
        if self.skipping {
            self.offset
        } else {
            self.offset - self.partial.len() as u64
        }
    }
}

struct Tailer {
    shared: Arc<Shared>,
    globs: Vec<String>,
    state_file: Option<PathBuf>,
    saved: State,
    from_beginning: bool,
    files: HashMap<PathBuf, Tracked>,
    ingest: Ingest,
    buf: Vec<u8>,
    first_pass: bool,
    dirty: bool,
    last_save: Instant,
}

impl Tailer {
    /// Runs until stopped; returns where it is in every file.
    fn run(&mut self, ctl: &(Mutex<Control>, Condvar)) -> State {
        let (m, cv) = ctl;
        loop {
            self.pass(ctl);
            if self.dirty && self.last_save.elapsed() >= SAVE_EVERY {
                self.save();
            }
            let mut c = m.lock().unwrap_or_else(|e| e.into_inner());
            c.passes += 1;
            cv.notify_all();
            if !c.stop && !c.wake {
                c = cv.wait_timeout(c, POLL).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
            }
            c.wake = false;
            if c.stop {
                break;
            }
        }
        self.save();
        std::mem::take(&mut self.saved)
    }

    fn stopping(ctl: &(Mutex<Control>, Condvar)) -> bool {
        ctl.0.lock().map(|c| c.stop).unwrap_or(true)
    }

    /// Records where reading is in every file, and writes it to the state file if there is one.
    fn save(&mut self) {
        let mut state = State::default();
        for (p, t) in &self.files {
            state
                .files
                .insert(p.to_string_lossy().into_owned(), Offset { dev: t.dev, ino: t.ino, offset: t.line_offset() });
        }
        if let Some(path) = &self.state_file {
            if let Err(e) = state.save(path) {
                log::warn!("l2met: saving the file offsets to {}: {e}", path.display());
            }
        }
        self.saved = state;
        self.dirty = false;
        self.last_save = Instant::now();
    }

    /// The regular files the globs match now.
    fn matches(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for g in &self.globs {
            match glob::glob(g) {
                Ok(paths) => {
                    out.extend(paths.flatten().filter(|p| p.metadata().is_ok_and(|m| m.is_file())));
                }
                Err(e) => log::warn!("l2met: files \"{g}\": {e}"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn pass(&mut self, ctl: &(Mutex<Control>, Condvar)) {
        let paths = self.matches();
        // Files that no longer match (deleted, renamed away): read what is left, forget them.
        let gone: Vec<PathBuf> = self.files.keys().filter(|p| !paths.contains(p)).cloned().collect();
        for p in gone {
            if let Some(mut t) = self.files.remove(&p) {
                self.read_to_end(&mut t, ctl);
                self.dirty = true;
            }
        }
        for path in paths {
            if Self::stopping(ctl) {
                return;
            }
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
            match self.files.remove(&path) {
                Some(mut t) if t.dev == dev && t.ino == ino => {
                    if size < t.offset {
                        log::info!("l2met: {} was truncated; reading it from the start", path.display());
                        t.offset = 0;
                        t.partial.clear();
                        t.skipping = false;
                        self.dirty = true;
                    }
                    self.read_to_end(&mut t, ctl);
                    self.files.insert(path, t);
                }
                other => {
                    if let Some(mut old) = other {
                        // Rotated: finish the old file, then read the new one from its start.
                        self.read_to_end(&mut old, ctl);
                        self.flush_partial(&mut old);
                        log::info!("l2met: {} was rotated; reading the new file", path.display());
                    }
                    let Ok(file) = File::open(&path) else { continue };
                    let key = path.to_string_lossy().into_owned();
                    let offset = match self.saved.files.get(&key) {
                        Some(o) if o.dev == dev && o.ino == ino && o.offset <= size => o.offset,
                        Some(_) => 0,
                        None if self.first_pass && !self.from_beginning => size,
                        None => 0,
                    };
                    let mut t = Tracked { file, dev, ino, offset, partial: Vec::new(), skipping: false };
                    self.read_to_end(&mut t, ctl);
                    self.files.insert(path, t);
                    self.dirty = true;
                }
            }
        }
        self.first_pass = false;
    }

    /// A last line without its newline, once its file is done with.
    fn flush_partial(&mut self, t: &mut Tracked) {
        if !t.partial.is_empty() && !t.skipping {
            let now = self.shared.now_ms();
            self.ingest.syslog(&self.shared.store, &t.partial, &self.shared.defaults, now);
            self.ingest.flush(&self.shared.store);
        }
        t.partial.clear();
    }

    fn read_to_end(&mut self, t: &mut Tracked, ctl: &(Mutex<Control>, Condvar)) {
        loop {
            let n = match t.file.read_at(&mut self.buf, t.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("l2met: reading a tailed file: {e}");
                    break;
                }
            };
            t.offset += n as u64;
            self.dirty = true;
            let now = self.shared.now_ms();
            let (store, defaults) = (&self.shared.store, &self.shared.defaults);
            let mut data = &self.buf[..n];
            while let Some(i) = data.iter().position(|&c| c == b'\n') {
                let piece = &data[..i];
                data = &data[i + 1..];
                if t.skipping {
                    t.skipping = false;
                    continue;
                }
                if t.partial.is_empty() {
                    self.ingest.syslog(store, piece, defaults, now);
                } else if t.partial.len() + piece.len() <= MAX_LINE {
                    t.partial.extend_from_slice(piece);
                    self.ingest.syslog(store, &t.partial, defaults, now);
                    t.partial.clear();
                } else {
                    t.partial.clear();
                }
            }
            if !t.skipping {
                if t.partial.len() + data.len() > MAX_LINE {
                    t.partial.clear();
                    t.skipping = true;
                } else {
                    t.partial.extend_from_slice(data);
                }
            }
            self.ingest.flush(store);
            if Self::stopping(ctl) {
                break;
            }
        }
    }
}
