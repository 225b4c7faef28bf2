//! `exec`: every payload as one JSON line on the stdin of a long-running command you write.
//!
//! List any name that is not built in (`"emitters": ["stdout", "ship"]`) and give its conf
//! file an `exec` key (`conf.d/ship.conf`: `{"exec": ["/usr/local/bin/ship-stats"]}`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `exec` | required | the command and its arguments; no shell. A program without `/` is looked up in `PATH`, a relative path is relative to the conf file's directory, where the command also runs |
//! | `restart_initial` | `"1s"` | wait before restarting a command that exited; doubled after every further exit, reset once a command has run for a minute |
//! | `restart_max` | `"60s"` | longest wait between restarts |
//! | `queue` | `60` | payloads kept while the command is down or slow (the oldest beyond are dropped, counted and logged); written once it runs again |
//! | `write_timeout` | `"5s"` | a command that takes no input for this long is killed and restarted |
//! | `interval` | `0` | seconds between writes; every payload since the last write is written |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |
//!
//! Each line is exactly what the `stdout` emitter prints: `{"cluster": …, "points":
//! [{"<stat>": {"units": …, "value": …}}…], "timestamp": …, "zone": …}`. The command starts with
//! the first payload (not at `--check`), in its own process group; its stdout and stderr are
//! badger's. Lines the command had not read when it exited are lost. At shutdown its stdin is
//! closed and it has until badger's shutdown deadline to exit, then it is killed (its whole
//! process group; when it exits on its own, what is left of its group is killed too). The program
//! file must not be writable by group or others, and must be owned by root or badger's user;
//! it is checked before every start.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use badger_api::duration::de_duration;
use badger_api::plugin::{Batch, BuildError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf, EXEC_KIND};
use badger_api::process::{check_program, conf_dir, kill_group, kill_leftovers, resolve_program, timespec, wait_until};
use badger_api::throttle::LogThrottle;
use badger_formats::json;

pub static SPEC: EmitterSpec = EmitterSpec {
    name: EXEC_KIND,
    aliases: &[],
    summary: "payloads as JSON lines on the stdin of a command you write",
    build,
    counters: false,
};

/// A command that ran this long before exiting restarts after `restart_initial` again.
const BACKOFF_RESET: Duration = Duration::from_secs(60);

fn default_restart_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_restart_max() -> Duration {
    Duration::from_secs(60)
}
fn default_queue() -> usize {
    60
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    exec: Vec<String>,
    #[serde(default = "default_restart_initial", deserialize_with = "de_duration")]
    restart_initial: Duration,
    #[serde(default = "default_restart_max", deserialize_with = "de_duration")]
    restart_max: Duration,
    #[serde(default = "default_queue")]
    queue: usize,
    #[serde(default = "default_write_timeout", deserialize_with = "de_duration")]
    write_timeout: Duration,
}

fn build(_ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let c: Config = conf.parse()?;
    let Some((program, args)) = c.exec.split_first() else {
        return Err(conf.error("exec", "the command is empty: give the program and its arguments").into());
    };
    if c.restart_initial.is_zero() {
        return Err(conf.error("restart_initial", "must be more than 0").into());
    }
    if c.restart_max < c.restart_initial {
        return Err(conf.error("restart_max", "must be at least restart_initial").into());
    }
    if c.queue == 0 {
        return Err(conf.error("queue", "must be at least 1").into());
    }
    if c.write_timeout.is_zero() {
        return Err(conf.error("write_timeout", "must be more than 0").into());
    }
    let dir = conf_dir(conf);
    let program = resolve_program(program, &dir).map_err(BuildError::Unavailable)?;
    check_program(&program).map_err(BuildError::Unavailable)?;
    Ok(Box::new(ExecEmitter {
        name: conf.name.clone(),
        program,
        args: args.to_vec(),
        dir,
        restart_initial: c.restart_initial,
        restart_max: c.restart_max,
        backoff: c.restart_initial,
        queue_max: c.queue,
        write_timeout: c.write_timeout,
        child: None,
        next_start: Instant::now(),
        pending: VecDeque::new(),
        dropped: 0,
        drop_log: LogThrottle::default(),
        buf: String::new(),
    }))
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    started: Instant,
    /// Bytes of the first pending line already written.
    written: usize,
}

struct ExecEmitter {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    restart_initial: Duration,
    restart_max: Duration,
    /// The wait before the next restart.
    backoff: Duration,
    queue_max: usize,
    write_timeout: Duration,
    child: Option<Running>,
    /// Earliest time the command may be started again.
    next_start: Instant,
    /// Payload lines not yet written in full, oldest first.
    pending: VecDeque<Vec<u8>>,
    dropped: u64,
    drop_log: LogThrottle,
    buf: String,
}

impl ExecEmitter {
    fn spawn(&mut self) -> Result<(), String> {
        check_program(&self.program)?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        let Some(stdin) = child.stdin.take() else {
            kill_group(&mut child);
            return Err("no stdin pipe".into());
        };
        // Writes never block the emitter's thread: they wait in poll, with a deadline.
        let flags = rustix::fs::fcntl_getfl(&stdin).map_err(|e| e.to_string())?;
        rustix::fs::fcntl_setfl(&stdin, flags | rustix::fs::OFlags::NONBLOCK).map_err(|e| e.to_string())?;
        log::info!("emitter \"{}\": started {} (pid {})", self.name, self.program.display(), child.id());
        self.child = Some(Running { child, stdin, started: Instant::now(), written: 0 });
        Ok(())
    }

    /// Forgets the running command (already exited or to be killed) and schedules a restart.
    fn down(&mut self, why: &str, kill: bool) {
        let Some(mut r) = self.child.take() else { return };
        if kill {
            kill_group(&mut r.child);
        } else {
            let _ = r.child.wait();
            // What it started in the background goes with it.
            kill_leftovers(&r.child);
        }
        if r.started.elapsed() >= BACKOFF_RESET {
            self.backoff = self.restart_initial;
        }
        self.next_start = Instant::now() + self.backoff;
        log::warn!(
            "emitter \"{}\": {} {why}; restarting it in {:?} ({} payloads waiting)",
            self.name,
            self.program.display(),
            self.backoff,
            self.pending.len()
        );
        self.backoff = (self.backoff * 2).min(self.restart_max);
    }

    /// Starts the command when it is due and writes what is pending. A command that takes no
    /// input for `write_timeout` is killed; at shutdown, writing stops at `shutdown` too.
    fn pump(&mut self, shutdown: Option<Instant>) {
        if let Some(r) = &mut self.child {
            if let Ok(Some(status)) = r.child.try_wait() {
                self.down(&format!("exited ({status})"), false);
            }
        }
        if self.child.is_none() {
            if self.pending.is_empty() || Instant::now() < self.next_start {
                return;
            }
            if let Err(e) = self.spawn() {
                self.next_start = Instant::now() + self.backoff;
                log::error!("emitter \"{}\": {e}; trying again in {:?}", self.name, self.backoff);
                self.backoff = (self.backoff * 2).min(self.restart_max);
                return;
            }
        }
        let mut stall = Instant::now() + self.write_timeout;
        while let Some(line) = self.pending.front() {
            let Some(r) = &mut self.child else { return };
            match r.stdin.write(&line[r.written..]) {
                Ok(n) => {
                    stall = Instant::now() + self.write_timeout;
                    r.written += n;
                    if r.written == line.len() {
                        r.written = 0;
                        self.pending.pop_front();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if now >= stall {
                        self.down(&format!("took no input for {:?}; killed it", self.write_timeout), true);
                        return;
                    }
                    let until = shutdown.map_or(stall, |d| d.min(stall));
                    if now >= until {
                        return;
                    }
                    let mut fds = [rustix::event::PollFd::new(&r.stdin, rustix::event::PollFlags::OUT)];
                    let _ = rustix::event::poll(&mut fds, Some(&timespec(until - now)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EPIPE: it exited (or closed its stdin). The line it did not take in full
                    // goes to the next command whole.
                    let status = r.child.try_wait().ok().flatten();
                    let why = match status {
                        Some(s) => format!("exited ({s})"),
                        None => format!("stopped reading its stdin ({e}); killed it"),
                    };
                    self.down(&why, status.is_none());
                    return;
                }
            }
        }
    }

    fn enqueue(&mut self, line: Vec<u8>) {
        if self.pending.len() >= self.queue_max {
            // Never drop a line that is half written: the command would get a broken line.
            let half = self.child.as_ref().is_some_and(|r| r.written > 0);
            let victim = if half { 1 } else { 0 };
            if self.pending.remove(victim).is_some() {
                self.dropped += 1;
                if let Some(more) = self.drop_log.allow() {
                    log::warn!(
                        "emitter \"{}\": {} is down or slow: dropped the oldest payload ({} in all, {more} since the last warning)",
                        self.name,
                        self.program.display(),
                        self.dropped
                    );
                }
            }
        }
        self.pending.push_back(line);
    }
}

impl Emitter for ExecEmitter {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        for p in batch.payloads() {
            self.buf.clear();
            json::write_payload(&mut self.buf, &p, false);
            self.buf.push('\n');
            let line = self.buf.as_bytes().to_vec();
            self.enqueue(line);
        }
        self.pump(None);
        if self.child.is_none() && !self.pending.is_empty() {
            return Err(EmitError(format!(
                "{} is not running; {} payloads wait for its restart",
                self.program.display(),
                self.pending.len()
            )));
        }
        Ok(())
    }

    fn idle(&mut self) {
        self.pump(None);
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), EmitError> {
        if !self.pending.is_empty() && self.child.is_none() && Instant::now() < self.next_start {
            // Restart now rather than lose what is pending to the backoff.
            self.next_start = Instant::now();
        }
        self.pump(Some(deadline));
        let left = self.pending.len();
        if let Some(mut r) = self.child.take() {
            drop(r.stdin);
            if wait_until(&mut r.child, deadline).is_none() {
                log::warn!(
                    "emitter \"{}\": {} did not exit after its stdin closed; killed it",
                    self.name,
                    self.program.display()
                );
                kill_group(&mut r.child);
            } else {
                kill_leftovers(&r.child);
            }
        }
        if left > 0 {
            return Err(EmitError(format!("{left} payloads were not delivered: {} was down", self.program.display())));
        }
        Ok(())
    }
}

impl Drop for ExecEmitter {
    fn drop(&mut self) {
        if let Some(mut r) = self.child.take() {
            kill_group(&mut r.child);
        }
    }
}
