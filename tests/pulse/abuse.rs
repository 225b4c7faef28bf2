//! The abuse suite of the Pulse server (issue 11, rows 1–8): each row of the issue's table
//! replayed against the `badger server` binary on loopback, in a temp dir, scaled down but
//! past the bound, asserting that the bound holds: the server's RSS (VmRSS of
//! /proc/PID/status) stays under a stated ceiling, other clients are still answered within
//! a deadline, and nothing that was answered is lost. The binary is the debug build `cargo
//! test` makes (the issue measured the release one; debug only makes the ceilings looser).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{request, Client, Server};

/// VmRSS of a process in KiB.
fn rss_kb(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// `/ping` with the default token, timed.
fn ping(s: &Server) -> Duration {
    let t = Instant::now();
    let r = request("GET", &format!("http://{}/ping", s.http), Some("secret"), None);
    assert_eq!((r.status, r.body.as_str()), (200, "pong"));
    t.elapsed()
}

fn latest(s: &Server, stat: &str) -> (u16, String) {
    let r = request("GET", &format!("http://{}/latest/{stat}", s.http), Some("secret"), None);
    (r.status, r.body.trim().to_string())
}

/// Waits until `/latest/{stat}` answers 200; returns its body.
fn wait_latest(s: &Server, stat: &str, timeout: Duration) -> String {
    let until = Instant::now() + timeout;
    loop {
        let (st, body) = latest(s, stat);
        if st == 200 {
            return body;
        }
        assert!(Instant::now() < until, "/latest/{stat} still {st} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends many lines in one write (faster than one syscall per line).
fn send_all(c: &mut Client, lines: impl Iterator<Item = String>) {
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
        if buf.len() > 64 * 1024 {
            c.stream.write_all(buf.as_bytes()).expect("write");
            buf.clear();
        }
    }
    c.stream.write_all(buf.as_bytes()).expect("write");
}

/// Row 1: 5 relays × 50,000 distinct `add` lines (the issue: 1,000,000 each, RSS 7 MB →
/// 1,044 MB, kept after they left). Bound: 2,000 names per relay, 5,000 in total.
#[test]
fn row1_add_flood_is_bounded_per_relay_and_in_total() {
    let s = Server::start(&["-p", "1", "--max-relay-stats", "2000", "--max-stats", "5000"]);
    let pid = s.child.id();
    let mut relays: Vec<Client> = (0..5).map(|i| Client::identify(&s.tcp, &format!("r{i}"), 30)).collect();
    for (i, c) in relays.iter_mut().enumerate() {
        send_all(c, (0..50_000).map(|n| format!("add stat_{i}_{n}_{}", "x".repeat(40))));
    }
    // The first relay's poll lists exactly its 2,000 first names.
    let names = relays[0].answer_one_get(Duration::from_secs(5), |_| "1".into()).expect("a get");
    assert_eq!(names.split(',').count(), 2000);
    assert!(names.starts_with(&format!("stat_0_0_{}", "x".repeat(40))));
    // In total 5,000: relays 0, 1 got 2,000 each, relay 2 the last 1,000, 3 and 4 none.
    let mut total = 2000;
    for c in relays.iter_mut().skip(1) {
        c.set_timeout(Duration::from_millis(1500));
        if let Some(n) = c.answer_one_get(Duration::from_millis(1500), |_| "1".into()) {
            total += n.split(',').count();
        }
    }
    assert_eq!(total, 5000);
    let rss = rss_kb(pid);
    assert!(rss < 80_000, "RSS {rss} kB");
    assert!(ping(&s) < Duration::from_secs(1));
    drop(relays);
    // Their names are given back: a new relay may register again.
    std::thread::sleep(Duration::from_millis(500));
    let mut c = Client::identify(&s.tcp, "late", 30);
    c.send("add late_stat");
    assert_eq!(c.answer_one_get(Duration::from_secs(3), |_| "1".into()).as_deref(), Some("late_stat"));
    eprintln!("row 1: RSS after 250,000 adds by 5 relays: {rss} kB");
}

/// Row 2: `got` for 30,000 distinct names with no `add` (the issue: 1,000,000, 1M
/// permanent series, RSS 1.2 GB, 54 MB series.jsonl, 2.7 s to restart). Bound: 3,000
/// series in the store.
#[test]
fn row2_got_flood_is_bounded_by_max_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &["--max-series", "3000", "--max-relay-stats", "100000"]);
    let pid = s.child.id();
    let mut c = Client::identify(&s.tcp, "web1", 30);
    for chunk in 0..30 {
        let items: Vec<String> = (0..1000).map(|n| format!("c{chunk}_{n}-s{chunk}_{n}:1.5")).collect();
        c.send(&format!("got {}", items.join(",")));
    }
    wait_latest(&s, "s0_0", Duration::from_secs(5));
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_kb(pid);
    assert!(rss < 80_000, "RSS {rss} kB");
    let keys = request("GET", &format!("http://{}/keys", s.http), Some("secret"), None).json();
    let n = keys.as_array().expect("keys").len();
    assert!((2990..=3000).contains(&n), "{n} series kept (self-metrics take a few)");
    assert_eq!(latest(&s, "s29_999").0, 404, "a refused series is not visible");
    drop(c);
    assert!(s.stop().success());
    let lines = std::fs::read_to_string(dir.path().join("series.jsonl")).unwrap().lines().count();
    assert!(lines <= 3000, "{lines} lines");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("series.jsonl"), mode("raw"), mode("agg")), (0o600, 0o700, 0o700));
    }
    let t = Instant::now();
    let s = Server::start_in(dir.path(), &["--max-series", "3000"]);
    assert!(ping(&s) < Duration::from_secs(2));
    let restart = t.elapsed();
    assert!(restart < Duration::from_secs(3), "restart took {restart:?}");
    assert_eq!(latest(&s, "s0_0").0, 200);
    eprintln!("row 2: RSS {rss} kB, series.jsonl {lines} lines, restart {restart:?}");
}

/// Row 3: relays that never read, `-p 1`, with 10,000 collectors of 1,000-byte names each
/// (a 10 MB `get` line every second). The issue: 64 queued lines per relay, RSS 132 MB →
/// 1.14 GB. Bound: 1 MiB of `get` lines queued per relay (past the socket buffers).
/// Measured here (debug): about 210 MB peak with the bound (the 60,000 names of 1 KB
/// themselves and the lines in the socket buffers), 442 MB after 6 s and growing without it
/// (`--relay-queue-bytes 1000000000`); the ceiling is 260 MB.
#[test]
fn row3_queued_gets_are_bounded_in_bytes() {
    let s = Server::start(&["-p", "1", "--relay-queue-bytes", "1048576"]);
    let pid = s.child.id();
    let mut relays: Vec<Client> = (0..6).map(|i| Client::identify(&s.tcp, &format!("slow{i}"), 30)).collect();
    for (i, c) in relays.iter_mut().enumerate() {
        send_all(c, (0..10_000).map(|n| format!("add c{i}_{n}_{}", "y".repeat(990))));
    }
    let until = Instant::now() + Duration::from_secs(6);
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(rss_kb(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(peak < 260_000, "peak RSS {peak} kB");
    assert!(ping(&s) < Duration::from_secs(1));
    eprintln!("row 3: peak RSS with 6 non-reading relays of 10 MB polls for 6 s: {peak} kB");
}

/// Row 4: an API query of an absurd range (the issue: one core at 100 %, `/ping`
/// unanswered for 20 s; `start=20000w&backfill=0` a 113 MB answer). Bound: 10,000 buckets,
/// queries off the API's worker.
#[test]
fn row4_query_range_is_bounded_and_ping_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    crate::cases::seed(dir.path(), 48);
    let s = Server::start_in(dir.path(), &[]);
    for q in ["start=9223372036854775807ms", "start=20000w&backfill=0", "start=9223372036854775807ms&stop=0s"] {
        let t = Instant::now();
        let r = request("GET", &format!("http://{}/hourly/cpu_used?{q}", s.http), Some("secret"), None);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.body.contains("--max-query-buckets"), "{}", r.body);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    let r = request("GET", &format!("http://{}/daily/cpu_used?start=20000w", s.http), Some("secret"), None);
    assert_eq!(r.status, 400);
    // At the bound it is answered.
    let r = request("GET", &format!("http://{}/hourly/cpu_used?start=10000h&backfill=0", s.http), Some("secret"), None);
    assert_eq!(r.status, 200);
    // 10,000 hours from an unaligned now touch 10,001 hourly buckets.
    assert_eq!(r.json().as_array().map(Vec::len), Some(10_001));
    // Many large queries at once: /ping still answers within a second.
    let http = s.http.clone();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let h = http.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    request(
                        "GET",
                        &format!("http://{h}/hourly/cpu_used?start=10000h&backfill=0"),
                        Some("secret"),
                        None,
                    );
                }
            })
        })
        .collect();
    let worst = (0..10).map(|_| ping(&s)).max().unwrap();
    for t in load {
        t.join().unwrap();
    }
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    eprintln!("row 4: /ping worst {worst:?} under 20 queries of 10,000 buckets");
}

/// Row 5: the store on a full disk (a 2 MiB tmpfs). The issue: 1,200 points dropped,
/// series answered before a restart and 404 after, their values under other series.
/// Here: every series answered (before, during, after the full disk) reads back after two
/// restarts with its own value, and a series whose line could not be written was never
/// answered.
#[test]
fn row5_full_disk_loses_nothing_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED row5_full_disk_loses_nothing_answered: cannot mount a 2 MiB tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    let store = mnt.join("store");
    let args = ["--self-metrics=false"];
    let s = Server::start_in(&store, &args);
    let mut answered: Vec<(String, String)> = Vec::new();
    let mut c = Client::identify(&s.tcp, "web1", 30);
    let batch = |c: &mut Client, prefix: &str, base: usize| {
        let items: Vec<String> = (0..400).map(|i| format!("{prefix}{i}-{prefix}{i}:{}", base + i)).collect();
        c.send(&format!("got {}", items.join(",")));
    };
    batch(&mut c, "before", 0);
    wait_latest(&s, "before399", Duration::from_secs(5));
    // Fill the disk.
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    for b in 0..3 {
        batch(&mut c, &format!("full{b}_"), 10_000 * (b + 1));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Points of known series still come in while the disk is full.
    batch(&mut c, "before", 5000);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(&filler).unwrap();
    for b in 0..5 {
        batch(&mut c, &format!("after{b}_"), 100_000 * (b + 1));
    }
    wait_latest(&s, "after4_399", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    for prefix in ["before", "full0_", "full1_", "full2_", "after0_", "after1_", "after2_", "after3_", "after4_"] {
        for i in 0..400 {
            let stat = format!("{prefix}{i}");
            match latest(&s, &stat) {
                (200, body) => answered.push((stat, body)),
                (404, _) => refused += 1,
                (st, body) => panic!("{stat}: {st} {body}"),
            }
        }
    }
    assert!(answered.len() >= 400 * 6, "{} answered", answered.len());
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&store, &args);
    for (stat, body) in &answered {
        assert_eq!(&latest(&s, stat), &(200, body.clone()), "{stat} after the restart");
    }
    // New stats after the restart take fresh ids; a second restart keeps everything.
    let mut c = Client::identify(&s.tcp, "web1", 30);
    batch(&mut c, "new", 7_000_000);
    wait_latest(&s, "new399", Duration::from_secs(5));
    for i in 0..400 {
        answered.push((format!("new{i}"), latest(&s, &format!("new{i}")).1));
    }
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&store, &args);
    for (stat, body) in &answered {
        assert_eq!(&latest(&s, stat), &(200, body.clone()), "{stat} after the second restart");
    }
    assert!(s.stop().success());
    eprintln!(
        "row 5: {} series answered and read back after two restarts; {refused} refused while full",
        answered.len()
    );
}

/// Row 6: `--raw-retention 18446744073709551615` (the issue: `as i64` wrapped and a
/// 2-hour-old raw segment was deleted at start). Saturating: it stays.
#[test]
fn row6_huge_retentions_saturate() {
    use badger_pulse::embedded::{Embedded, Options};
    use badger_pulse::store::{Backend, Batch, SeriesKey};
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    {
        let st = Embedded::open(Options {
            dir: dir.path().to_path_buf(),
            raw_retention: Duration::from_secs(8 * 3600),
            agg_retention: Duration::from_secs(7 * 86_400),
            agg_interval: Duration::from_secs(900),
            max_series: 10,
        })
        .unwrap();
        let k = std::sync::Arc::new(SeriesKey::new("old", vec![("host".into(), "h".into())]));
        st.write(&Batch { time_ms: now - 2 * 3_600_000, points: vec![(k, 1.0)] }).unwrap();
        st.close();
    }
    let segs = || std::fs::read_dir(dir.path().join("raw")).unwrap().count();
    assert_eq!(segs(), 1);
    let s = Server::start_in(dir.path(), &["--raw-retention", "18446744073709551615", "-r", "9223372036854775807"]);
    assert!(ping(&s) < Duration::from_secs(1));
    assert_eq!(segs(), 1, "the 2-hour-old raw segment is kept");
    assert!(s.stop().success());
}

/// Row 7: relay identity. The issue: a second client with `id web1` disconnected the real
/// relay and wrote `cpu_used` = 99 under it. Without a relay token, a same-id connection
/// from another address (127.0.0.2 here) is refused; with one, an unauthenticated relay is
/// refused and an authenticated one takes over.
#[test]
fn row7_same_id_from_another_peer_is_refused() {
    let s = Server::start(&[]);
    let mut real = Client::identify(&s.tcp, "web1", 30);
    real.send("got cpu_used-cpu_used:12");
    assert!(wait_latest(&s, "cpu_used?host=web1&verb=last", Duration::from_secs(5)).ends_with(r#""value":12}"#));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let other = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind("127.0.0.2:0".parse().unwrap())?;
            sock.connect(s.tcp.parse().unwrap()).await
        })
        .expect("connect from 127.0.0.2")
        .into_std()
        .unwrap();
    other.set_nonblocking(false).unwrap();
    let mut other = other;
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    other.write_all(b"id web1\ngot cpu_used-cpu_used:99\n").unwrap();
    let mut answer = String::new();
    let _ = other.read_to_string(&mut answer);
    assert_eq!(answer, "id in use\n");
    real.send("ping");
    assert_eq!(real.line().as_deref(), Some("pong"), "the real relay is still connected");
    std::thread::sleep(Duration::from_millis(300));
    assert!(latest(&s, "cpu_used?host=web1&verb=last").1.ends_with(r#""value":12}"#));
    drop(s);

    let s = Server::start(&["--relay-token", "relaysecret"]);
    let mut no = Client::connect(&s.tcp);
    no.send("id web1");
    assert_eq!(no.line().as_deref(), Some("unauthorized"));
    let mut wrong = Client::connect(&s.tcp);
    wrong.send("id web1 guess");
    assert_eq!(wrong.line().as_deref(), Some("unauthorized"));
    let mut real = Client::identify(&s.tcp, "web1 relaysecret", 30);
    real.send("got cpu_used-cpu_used:12");
    wait_latest(&s, "cpu_used?host=web1&verb=last", Duration::from_secs(5));
    // An authenticated relay with the same id takes over (the older one is closed).
    let mut next = Client::identify(&s.tcp, "web1 relaysecret", 30);
    assert!(real.closed());
    next.send("got cpu_used-cpu_used:13");
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let body = latest(&s, "cpu_used?host=web1&verb=last").1;
        if body.ends_with(r#""value":13}"#) {
            break;
        }
        assert!(Instant::now() < until, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Row 8: 1,100 connections that only send `id` (the issue: fds exhausted at `ulimit -n
/// 1024`, the API timed out, a WARN every 100 ms). Bound: `--max-relays 200`; the rest wait
/// in the backlog, the server's fds stay bounded and the API answers.
#[test]
fn row8_connections_are_bounded() {
    let s = Server::start(&["--max-relays", "200"]);
    let pid = s.child.id();
    let base = fds(pid);
    let mut conns = Vec::new();
    let addr: std::net::SocketAddr = s.tcp.parse().unwrap();
    let mut waited = 0;
    for i in 0..1100 {
        // Past the slots and the kernel's backlog a connect waits: give it 50 ms.
        let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) else {
            waited += 1;
            continue;
        };
        let _ = c.write_all(format!("id idle{i}\n").as_bytes());
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let open = fds(pid);
    assert!(open <= base + 200 + 8, "{open} fds (base {base})");
    let worst = (0..5).map(|_| ping(&s)).max().unwrap();
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    // Once some leave, waiting ones are served.
    conns.truncate(0);
    let mut c = Client::identify(&s.tcp, "after", 30);
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
    eprintln!(
        "row 8: {open} fds with 1,100 connections (base {base}, {waited} connects waited); /ping worst {worst:?}"
    );
}
