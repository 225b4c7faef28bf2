//! Helpers for plugins that run outside the process (exec commands) or load outside the binary
//! (shared libraries): the owner and mode check of their files, finding programs, and
//! process-group handling.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Refuses a file that someone other than root or badger's own user could change: writable
/// by group or others, or owned by another user. `verb` says what badger would do with it
/// ("load", "run").
pub fn check_file(path: &Path, verb: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{}: refusing to {verb} it: it is writable by group or others (mode {mode:04o}); \
             make it writable by its owner only (chmod go-w)",
            path.display()
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "{}: refusing to {verb} it: it is owned by uid {}, not by root or badger's own user (uid {me})",
            path.display(),
            meta.uid()
        ));
    }
    Ok(())
}

/// The program of a command: a name without `/` is looked up in `PATH`; a relative path
/// resolves against `base` (the directory of the conf file that names it).
pub fn resolve_program(program: &str, base: &Path) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the command is empty".into());
    }
    if program.contains('/') {
        let p = Path::new(program);
        return Ok(if p.is_relative() { base.join(p) } else { p.to_path_buf() });
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if let Ok(m) = std::fs::metadata(&candidate) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(format!("\"{program}\" is not in PATH ({})", path.to_string_lossy()))
}

/// The absolute directory of a plugin's conf file: where an exec command runs, and what its
/// relative program path is relative to.
pub fn conf_dir(conf: &crate::plugin::PluginConf) -> PathBuf {
    let dir = match conf.file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Checks that a program can be run by badger: [`check_file`] plus the execute bits.
pub fn check_program(path: &Path) -> Result<(), String> {
    check_file(path, "run")?;
    let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!("{}: not executable (mode {:04o})", path.display(), mode & 0o7777));
    }
    Ok(())
}

/// Kills a child's whole process group (it was started as a group leader) and reaps it.
pub fn kill_group(child: &mut Child) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills what is left of the process group of a child that exited on its own (it was
/// started as a group leader): a `sleep 97 &` it left behind must not outlive it. The group
/// id stays reserved while any member lives, so this never reaches an unrelated process.
pub fn kill_leftovers(child: &Child) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Waits for a child to exit until `deadline`; `None` if it is still running then.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `timeout` as the `poll` argument.
pub fn timespec(d: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check_file(&f, "load"), Ok(()));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = check_file(&f, "load").unwrap_err();
        assert!(e.ends_with(": refusing to load it: it is writable by group or others (mode 0664); make it writable by its owner only (chmod go-w)"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_program(&f).unwrap_err().ends_with(": not executable (mode 0644)"));
        assert!(check_file(dir.path(), "load").unwrap_err().ends_with(": not a regular file"));
        assert_eq!(resolve_program("./x", Path::new("/etc/badger")), Ok(PathBuf::from("/etc/badger/./x")));
        assert_eq!(resolve_program("/bin/true", Path::new("/etc")), Ok(PathBuf::from("/bin/true")));
        assert!(resolve_program("sh", Path::new("/")).unwrap().ends_with("sh"));
        assert!(resolve_program("no-such-program-here", Path::new("/"))
            .unwrap_err()
            .starts_with("\"no-such-program-here\" is not in PATH"));
    }
}
