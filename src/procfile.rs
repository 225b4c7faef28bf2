//! Reading small kernel files (procfs, sysfs) into a buffer that is reused every tick.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::plugin::CollectError;

/// One kernel file, read whole on every call into the same buffer.
#[derive(Debug)]
pub struct ProcFile {
    path: PathBuf,
    buf: String,
}

impl ProcFile {
    pub fn new(path: PathBuf) -> ProcFile {
        ProcFile { path, buf: String::with_capacity(4096) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole file; the text is valid until the next call.
    pub fn read(&mut self) -> Result<&str, CollectError> {
        self.buf.clear();
        File::open(&self.path)
            .and_then(|mut f| f.read_to_string(&mut self.buf))
            .map_err(|e| CollectError::io(&self.path, e))?;
        Ok(&self.buf)
    }

    /// Checks at build time that the file can be read, for a clear start-up error.
    pub fn probe(&mut self) -> Result<(), String> {
        self.read().map(|_| ()).map_err(|e| e.0)
    }
}

/// Reads a small file to a string (build-time reads, sysfs attributes).
pub fn read_to_string(path: &Path) -> Result<String, CollectError> {
    std::fs::read_to_string(path).map_err(|e| CollectError::io(path, e))
}
