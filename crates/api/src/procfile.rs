//! Reading small kernel files (procfs, sysfs) into a buffer that is reused every tick.
//!
//! On a real procfs or sysfs the file stays open and is re-read from offset 0 with `pread`
//! (the kernel regenerates it), which saves the path walk of an `open` and a `close` on every
//! tick. Anywhere else (fixture trees in tests, whose files are replaced between reads) it
//! is opened afresh each time. The kernel writes straight into the buffer's spare capacity
//! (nothing is zeroed or copied), and the text is handed out in place when it is UTF-8,
//! which kernel files are.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::plugin::CollectError;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// One kernel file, read whole on every call into the same buffer.
#[derive(Debug)]
pub struct ProcFile {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The lossy text, only when the bytes were not UTF-8.
    lossy: String,
    open: Option<File>,
}

impl ProcFile {
    pub fn new(path: PathBuf) -> ProcFile {
        ProcFile { path, bytes: Vec::with_capacity(4096), lossy: String::new(), open: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file from its start, 512 bytes at a time, until `enough` says the bytes so
    /// far will do, or the end, or `max` bytes. What comes after is never generated: procfs
    /// builds a file one record at a time for as many records as fit the read (`cpuinfo`'s
    /// first processor costs a 512-byte read about 11 µs, a 4 KiB one 25 µs). The text is
    /// valid until the next call; a character cut at the end is left out.
    pub fn read_prefix(&mut self, max: usize, enough: impl Fn(&[u8]) -> bool) -> Result<&str, CollectError> {
        self.fill(|f, out| read_prefix_at(f, out, max, &enough))?;
        let valid = match std::str::from_utf8(&self.bytes) {
            Ok(_) => self.bytes.len(),
            Err(e) => e.valid_up_to(),
        };
        Ok(std::str::from_utf8(&self.bytes[..valid]).unwrap_or_default())
    }

    /// Reads the whole file; the text is valid until the next call.
    pub fn read(&mut self) -> Result<&str, CollectError> {
        self.fill(read_all_at)?;
        match std::str::from_utf8(&self.bytes) {
            Ok(s) => Ok(s),
            Err(_) => {
                self.lossy = String::from_utf8_lossy(&self.bytes).into_owned();
                Ok(&self.lossy)
            }
        }
    }

    /// Reads into `bytes` with `read` (from offset 0): through the file held open if there is
    /// one and it still reads, else through a fresh open, which is kept on procfs and sysfs.
    fn fill(&mut self, read: impl Fn(&File, &mut Vec<u8>) -> std::io::Result<()>) -> Result<(), CollectError> {
        self.bytes.clear();
        if let Some(f) = &self.open {
            if read(f, &mut self.bytes).is_ok() {
                return Ok(());
            }
            self.open = None;
            self.bytes.clear();
        }
        let f = File::open(&self.path).map_err(|e| CollectError::io(&self.path, e))?;
        read(&f, &mut self.bytes).map_err(|e| CollectError::io(&self.path, e))?;
        if is_kernel_fs(&f) {
            self.open = Some(f);
        }
        Ok(())
    }

    /// Whether the file may differ from the last read. Files that signal changes with
    /// `POLLPRI` (`/proc/mounts`: the mount table changed) are asked without reading them;
    /// for anything else, or a file not held open, the answer is always yes.
    pub fn may_have_changed(&mut self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags};
        let Some(f) = &self.open else { return true };
        let mut fds = [PollFd::new(f, PollFlags::PRI)];
        let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
        match poll(&mut fds, Some(&zero)) {
            Ok(_) => fds[0].revents().intersects(PollFlags::PRI | PollFlags::ERR),
            Err(_) => true,
        }
    }

    /// Checks at build time that the file can be read, for a clear start-up error.
    pub fn probe(&mut self) -> Result<(), String> {
        self.read().map(|_| ()).map_err(|e| e.0)
    }
}

/// Reads `f` from offset 0 in 512-byte reads into `out` (empty) until `enough`, the end or `max`.
fn read_prefix_at(f: &File, out: &mut Vec<u8>, max: usize, enough: &dyn Fn(&[u8]) -> bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut chunk = [0u8; 512];
    while out.len() < max {
        let n = f.read_at(&mut chunk, out.len() as u64)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        if enough(out) {
            break;
        }
    }
    Ok(())
}

/// Reads `f` from offset 0 to its end into `out`'s spare capacity (`out` starts empty).
fn read_all_at(f: &File, out: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let offset = out.len() as u64;
        let n = rustix::io::pread(f, rustix::buffer::spare_capacity(out), offset)?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Whether `f` is on procfs or sysfs, whose files and directories are never replaced: one
/// held open keeps reading what the kernel has now.
pub fn is_kernel_fs(f: impl rustix::fd::AsFd) -> bool {
    match rustix::fs::fstatfs(f) {
        Ok(s) => {
            // f_type is i64 here but narrower on some architectures.
            #[allow(clippy::unnecessary_cast)]
            let t = s.f_type as i64;
            t == PROC_SUPER_MAGIC || t == SYSFS_MAGIC
        }
        Err(_) => false,
    }
}

/// Reads a small file to a string (build-time reads, sysfs attributes).
pub fn read_to_string(path: &Path) -> Result<String, CollectError> {
    std::fs::read_to_string(path).map_err(|e| CollectError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_a_live_proc_file_in_place() {
        let mut f = ProcFile::new(PathBuf::from("/proc/self/stat"));
        let first = f.read().unwrap().to_string();
        assert!(f.open.is_some(), "procfs files stay open");
        let second = f.read().unwrap().to_string();
        assert_eq!(first.split(' ').next(), second.split(' ').next());
    }

    #[test]
    fn mounts_change_is_signalled_without_reading() {
        let mut f = ProcFile::new(PathBuf::from("/proc/self/mounts"));
        f.read().unwrap();
        assert!(!f.may_have_changed(), "nothing was mounted since the read");
    }

    #[test]
    fn reopens_ordinary_files_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("loadavg");
        std::fs::write(&p, "1 2 3 1/2 3\n").unwrap();
        let mut f = ProcFile::new(p.clone());
        assert_eq!(f.read().unwrap(), "1 2 3 1/2 3\n");
        assert!(f.open.is_none());
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "4 5 6 1/2 3\n").unwrap();
        assert_eq!(f.read().unwrap(), "4 5 6 1/2 3\n");
    }
}
