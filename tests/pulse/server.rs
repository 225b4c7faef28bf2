//! Black-box tests of `badger server`'s relay side over real TCP, with a client written
//! from the protocol text (reference §7, checks 1–4, 6, 7 and the fixed bugs).

use crate::support as support_pulse;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support_pulse::{Client, Server};

#[test]
fn identify_ping_and_silent_commands() {
    let s = Server::start(&[]);
    // §7.1: ok, then beat 30.
    let mut c = Client::identify(&s.tcp, "host1", 30);
    // §7.3: ping → pong; add, remove, unknown and space-less lines get no answer.
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
    for l in ["add cpu_used:service:web1", "remove x", "bogus line", "nospace", "ok fine"] {
        c.send(l);
    }
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
    // Fixed: flush and override are answered ok.
    c.send("flush");
    assert_eq!(c.line().as_deref(), Some("ok"));
    c.send("override 10 cpu:5");
    assert_eq!(c.line().as_deref(), Some("ok"));
    // close: the server closes at once.
    c.send("close");
    assert!(c.closed());

    // §7.1 with -b 10.
    let s = Server::start(&["-b", "10"]);
    Client::identify(&s.tcp, "host1", 10);
}

#[test]
fn must_identify_first() {
    let s = Server::start(&[]);
    // §7.2
    let mut c = Client::connect(&s.tcp);
    c.send("add cpu:");
    assert_eq!(c.line().as_deref(), Some("identify first with the 'id' command"));
    assert!(c.closed());
    let mut c = Client::connect(&s.tcp);
    c.send("id");
    assert_eq!(c.line().as_deref(), Some("missing id"));
    assert!(c.closed());
    // Fixed: an empty id is refused too.
    let mut c = Client::connect(&s.tcp);
    c.send("id ");
    assert_eq!(c.line().as_deref(), Some("missing id"));
    // Fixed: "id host\r\n" is trimmed, and the connection works.
    let mut c = Client::connect(&s.tcp);
    c.stream.write_all(b"id host1\r\nping\r\n").unwrap();
    assert_eq!(c.line().as_deref(), Some("ok"));
    assert_eq!(c.line().as_deref(), Some("beat 30"));
    assert_eq!(c.line().as_deref(), Some("pong"));
}

#[test]
fn polling_asks_for_every_collector() {
    let s = Server::start(&["-p", "1"]);
    // §7.4
    let mut c = Client::identify(&s.tcp, "host1", 30);
    let mut idle = Client::identify(&s.tcp, "host2", 30);
    c.send("add cpu_used:service:web1");
    c.send("add ram_used:");
    let gets = c.answer_gets(Instant::now() + Duration::from_millis(2500), |_| "0.2500".into());
    assert!(!gets.is_empty(), "no get within one poll interval");
    let mut set: Vec<&str> = gets.last().unwrap().split(',').collect();
    set.sort();
    assert_eq!(set, ["cpu_used", "ram_used"]);
    // A relay without collectors is not polled.
    idle.set_timeout(Duration::from_millis(1500));
    assert_eq!(idle.line(), None);
    // After remove, only the rest is asked for.
    c.send("remove ram_used");
    let gets = c.answer_gets(Instant::now() + Duration::from_millis(2500), |_| "1".into());
    assert_eq!(gets.last().map(String::as_str), Some("cpu_used"));
    // §7.6: malformed items are skipped, and the connection stays open.
    c.send("got a:1,b-c-d:2,e-f:1:2,ram_used-ram_used:3.0000");
    c.send("ping");
    let mut pong = false;
    for _ in 0..5 {
        if c.line().as_deref() == Some("pong") {
            pong = true;
            break;
        }
    }
    assert!(pong);
}

#[test]
fn liveness_deadline_is_two_beats() {
    let s = Server::start(&["-b", "1", "-p", "1"]);
    // §7.7: an identified connection that says nothing for 2 × beat is closed.
    let mut c = Client::identify(&s.tcp, "quiet", 1);
    let started = Instant::now();
    c.set_timeout(Duration::from_secs(5));
    assert!(c.closed());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1800) && waited < Duration::from_millis(4000), "{waited:?}");
    // A half-open connection that never identifies is closed the same way.
    let mut h = Client::connect(&s.tcp);
    h.set_timeout(Duration::from_secs(5));
    assert!(h.closed());
    // A relay that pings every beat stays.
    let mut live = Client::identify(&s.tcp, "live", 1);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        live.send("ping");
        assert_eq!(live.line().as_deref(), Some("pong"));
    }
}

#[test]
fn a_reconnect_with_the_same_id_keeps_the_new_registration() {
    let s = Server::start(&["-p", "1"]);
    let mut old = Client::identify(&s.tcp, "web1", 30);
    old.send("add cpu:");
    let mut new = Client::identify(&s.tcp, "web1", 30);
    new.send("add ram:");
    // The older connection is closed by the server; its cleanup must not remove the newer.
    old.set_timeout(Duration::from_secs(3));
    assert!(old.closed());
    drop(old);
    let gets = new.answer_gets(Instant::now() + Duration::from_millis(2500), |_| "1".into());
    assert_eq!(gets.last().map(String::as_str), Some("ram"));
}

#[test]
fn bad_input_does_not_stop_the_server() {
    let s = Server::start(&["-p", "1"]);
    // A giant line (no newline): answered "line too long" and closed, memory bounded.
    let mut g = Client::identify(&s.tcp, "giant", 30);
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..8 {
        if g.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = g.stream.write_all(b"\n");
    g.set_timeout(Duration::from_secs(5));
    assert_eq!(g.line().as_deref(), Some("line too long"));
    // Binary garbage and invalid UTF-8 before and after identifying.
    let mut b = TcpStream::connect(&s.tcp).unwrap();
    let _ = b.write_all(&[0xff, 0xfe, 0, 1, 2, b'\n']);
    let mut c = Client::identify(&s.tcp, "garbage", 30);
    c.stream.write_all(&[0xff, 0xfe, b' ', 0, b'\n', b'g', b'o', b't', b' ', 0xff, b'\n']).unwrap();
    c.send("got ,,,:::---");
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
    // The server still serves a well-behaved relay.
    let mut ok = Client::identify(&s.tcp, "fine", 30);
    ok.send("add cpu:");
    assert!(!ok.answer_gets(Instant::now() + Duration::from_millis(2500), |_| "1".into()).is_empty());
}

#[test]
fn a_thousand_concurrent_relays() {
    let s = Server::start(&["-p", "1"]);
    let addr = s.tcp.clone();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut clients: Vec<Client> = (0..125)
                    .map(|i| {
                        let mut c = Client::identify(&addr, &format!("relay{t}_{i}"), 30);
                        c.send("add load:");
                        c
                    })
                    .collect();
                // Every relay is polled and answers.
                let mut polled = 0;
                for c in &mut clients {
                    if c.answer_one_get(Duration::from_secs(5), |_| "1".into()).is_some() {
                        polled += 1;
                    }
                }
                polled
            })
        })
        .collect();
    let polled: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(polled, 1000);
    let mut c = Client::identify(&s.tcp, "after", 30);
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
}

#[test]
fn sigterm_stops_cleanly() {
    let s = Server::start(&[]);
    let _c = Client::identify(&s.tcp, "h", 30);
    // SIGHUP does not stop it.
    let _ = std::process::Command::new("kill").args(["-HUP", &s.child.id().to_string()]).status();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Client::identify(&s.tcp, "h2", 30);
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
    let st = s.stop();
    assert!(st.success(), "{st:?}");
}
