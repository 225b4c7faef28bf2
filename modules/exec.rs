//! `exec`: points printed as JSON lines by a command you write, run every tick it is due.
//!
//! List any name that is not built in (`"modules": ["cpu", "queues"]`) and give its conf file an
//! `exec` key (`conf.d/queues.conf`: `{"exec": ["/usr/local/bin/queue-stats", "--json"],
//! "interval": 10}`); several exec modules run side by side under their own names.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `exec` | required | the command and its arguments, e.g. `["/usr/local/lib/badger/queues.sh", "mail"]`; no shell. A program without `/` is looked up in `PATH`, a relative path is relative to the conf file's directory, where the command also runs |
//! | `interval` | `0` | seconds between runs (the command runs on the ticks whose timestamp is a multiple) |
//! | `blacklist` | `[]` | stats to leave out (names or globs) |
//! | `timeout` | `core.module_timeout` | the command is killed (its whole process group, SIGKILL) at 90% of it, so the tick still gets the error; at most `900ms`. When it exits on its own, what is left of its process group (a `cmd &` it started) is killed too |
//!
//! The command prints one JSON object per line on stdout, the shape of a payload's points:
//! `{"queue.depth.mail": {"value": 3, "units": ""}}`, optionally with `"measurement"`,
//! `"field"` and `"tags"` (`{"queue": "mail"}`); `{"name": 3}` is short for `{"name":
//! {"value": 3}}`. A JSON integer is an int stat, a number with a `.` a float stat. A line that
//! is not such an object is dropped, counted and logged (at most once a minute); empty lines
//! are ignored. If the command exits non-zero its good lines still count and the module
//! reports an error for that tick. Output beyond 1 MiB is an error. stdin is empty; stderr
//! goes to badger's stderr. The program file must not be writable by group or others, and
//! must be owned by root or badger's user; it is checked before every run.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf, EXEC_KIND};
use badger_api::point::Point;
use badger_api::process::{check_program, conf_dir, kill_group, kill_leftovers, resolve_program, timespec, wait_until};
use badger_api::throttle::LogThrottle;
use badger_formats::plugin_json::points_from_json;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: EXEC_KIND, aliases: &[], summary: "points printed as JSON lines by a command you write", build };

/// Output read from one run at most.
const MAX_OUTPUT: usize = 1 << 20;
/// The tick timeout when the context does not say (tests).
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    exec: Vec<String>,
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config { exec } = conf.parse()?;
    let Some((program, args)) = exec.split_first() else {
        return Err(conf.error("exec", "the command is empty: give the program and its arguments").into());
    };
    let dir = conf_dir(conf);
    let program = resolve_program(program, &dir).map_err(BuildError::Unavailable)?;
    check_program(&program).map_err(BuildError::Unavailable)?;
    let timeout = if ctx.timeout.is_zero() { DEFAULT_TIMEOUT } else { ctx.timeout };
    Ok(Box::new(Exec {
        name: conf.name.clone(),
        program,
        args: args.to_vec(),
        dir,
        kill_after: timeout * 9 / 10,
        output: Vec::new(),
        bad_lines: 0,
        bad_log: LogThrottle::default(),
    }))
}

struct Exec {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    kill_after: Duration,
    output: Vec<u8>,
    bad_lines: u64,
    bad_log: LogThrottle,
}

/// How a run ended.
enum Outcome {
    Exited(std::process::ExitStatus),
    Killed(String),
}

impl Exec {
    /// Runs the command once, leaving its stdout in `self.output`.
    fn run(&mut self, start: Instant) -> Result<Outcome, CollectError> {
        check_program(&self.program).map_err(CollectError)?;
        let deadline = start + self.kill_after;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| CollectError(format!("cannot run {}: {e}", self.program.display())))?;
        self.output.clear();
        let Some(mut stdout) = child.stdout.take() else {
            kill_group(&mut child);
            return Err(CollectError("no stdout pipe".into()));
        };
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let now = Instant::now();
            if now >= deadline {
                kill_group(&mut child);
                return Ok(Outcome::Killed(format!("still running after {:?}", self.kill_after)));
            }
            let mut fds = [rustix::event::PollFd::new(&stdout, rustix::event::PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timespec(deadline - now))) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    kill_group(&mut child);
                    return Err(CollectError(format!("waiting for the command's output: {e}")));
                }
            }
            match stdout.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if self.output.len() + n > MAX_OUTPUT {
                        kill_group(&mut child);
                        return Ok(Outcome::Killed(format!("printed more than {} bytes", MAX_OUTPUT)));
                    }
                    self.output.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    kill_group(&mut child);
                    return Err(CollectError(format!("reading the command's output: {e}")));
                }
            }
        }
        match wait_until(&mut child, deadline) {
            Some(status) => {
                // What it started in the background goes with it.
                kill_leftovers(&child);
                Ok(Outcome::Exited(status))
            }
            None => {
                kill_group(&mut child);
                Ok(Outcome::Killed(format!("closed its stdout but still ran after {:?}", self.kill_after)))
            }
        }
    }
}

impl Module for Exec {
    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let status = match self.run(now)? {
            Outcome::Killed(why) => {
                return Err(CollectError(format!("{} killed: {why}; its output was dropped", self.program.display())))
            }
            Outcome::Exited(status) => status,
        };
        let text = String::from_utf8_lossy(&self.output);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| points_from_json(&v, out));
            if let Err(why) = parsed {
                self.bad_lines += 1;
                if let Some(more) = self.bad_log.allow() {
                    log::warn!(
                        "module \"{}\": dropped line {} of {}'s output: {why} ({} bad lines in all, {more} not logged since the last line)",
                        self.name,
                        i + 1,
                        self.program.display(),
                        self.bad_lines
                    );
                }
            }
        }
        if status.success() {
            Ok(())
        } else {
            Err(CollectError(format!("{} {status}", self.program.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Value;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> PluginConf {
        let path = dir.join("s.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        PluginConf::from_text("s", &dir.join("s.conf"), r#"{"exec": ["./s.sh", "arg one"]}"#)
    }

    fn ctx(ms: u64) -> ModuleContext {
        ModuleContext { timeout: Duration::from_millis(ms), ..Default::default() }
    }

    #[test]
    fn points_from_lines_bad_lines_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let conf = script(
            dir.path(),
            r#"echo '{"a.b": {"value": 1, "units": "B"}}'
echo 'not json'
echo
echo "{\"arg\": {\"value\": 2.5, \"tags\": {\"a\": \"$1\"}}}"
echo '{"c": {"value": "x"}}'"#,
        );
        let mut m = build(&ctx(500), &conf).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        m.collect(Instant::now(), &mut out).unwrap();
        let got: Vec<(&str, Value, &str)> = out.iter().map(|p| (p.name.as_str(), p.value, p.units.as_ref())).collect();
        assert_eq!(got, [("a.b", Value::Int(1), "B"), ("arg", Value::Float(2.5), "")]);
        assert_eq!(out[1].tags[0].1, "arg one");
    }

    #[test]
    fn a_hung_command_is_killed_before_the_tick_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        // The grandchild holds stdout open too: the whole group goes.
        let conf = script(dir.path(), "echo '{\"early\": 1}'; sleep 30 & sleep 30");
        let mut m = build(&ctx(300), &conf).unwrap_or_else(|e| panic!("{e}"));
        let start = Instant::now();
        let mut out = Vec::new();
        let e = m.collect(start, &mut out).unwrap_err();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(270) && took < Duration::from_millis(450), "{took:?}");
        assert!(e.0.ends_with("s.sh killed: still running after 270ms; its output was dropped"), "{e}");
        assert!(out.is_empty());
    }

    /// Issue 11, row 13: a script that leaves `sleep 97 >/dev/null 2>&1 &` behind every
    /// run (the issue: 12 orphaned sleeps after 12 s, still there after badger stopped).
    #[test]
    fn what_a_command_leaves_behind_is_killed_when_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let conf = script(
            dir.path(),
            &format!("sleep 97 >/dev/null 2>&1 & echo $! >> {}; echo '{{\"x\": 1}}'", pids.display()),
        );
        let mut m = build(&ctx(500), &conf).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            let mut out = Vec::new();
            m.collect(Instant::now(), &mut out).unwrap();
            assert_eq!(out.len(), 1);
        }
        let text = std::fs::read_to_string(&pids).unwrap();
        let left: Vec<&str> = text.lines().collect();
        assert_eq!(left.len(), 3);
        let alive = |pid: &str| {
            std::thread::sleep(Duration::from_millis(50));
            // Gone, or a zombie waiting for its (new) parent to reap it.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
                .unwrap_or(false)
        };
        for pid in left {
            assert!(!alive(pid), "sleep {pid} outlived its run");
        }
    }

    #[test]
    fn exit_status_and_missing_programs() {
        let dir = tempfile::tempdir().unwrap();
        let conf = script(dir.path(), "echo '{\"x\": 1}'; exit 3");
        let mut m = build(&ctx(500), &conf).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let e = m.collect(Instant::now(), &mut out).unwrap_err();
        assert!(e.0.ends_with("s.sh exit status: 3"), "{e}");
        assert_eq!(out.len(), 1, "the good lines of a failed run still count");
        let conf = PluginConf::from_text("s", &dir.path().join("s.conf"), r#"{"exec": ["./nope.sh"]}"#);
        match build(&ctx(500), &conf) {
            Err(BuildError::Unavailable(m)) => {
                assert!(m.ends_with("nope.sh: No such file or directory (os error 2)"), "{m}")
            }
            _ => panic!("a missing program is unavailable"),
        }
        let conf = PluginConf::from_text("s", &dir.path().join("s.conf"), "{\n\"exec\": []}");
        match build(&ctx(500), &conf) {
            Err(BuildError::Config(e)) => assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("exec"))),
            _ => panic!("an empty command is a config error"),
        }
    }
}
