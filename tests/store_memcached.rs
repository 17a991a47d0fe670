//! The memcached store against real memcached processes started here.
//!
//! memcached is installed with apt-get when it is missing; if that fails
//! the tests fail (they are never skipped).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use axrelay::store::MemcachedStore;
use axrelay_proto::{Pseudonymizer, Store, StoreCodec, StoreError};
use axrelay_test_support::e2e::free_port;

const TIMEOUT: Duration = Duration::from_millis(500);

/// Ensure a `memcached` binary, installing the Debian package if needed.
fn memcached_available() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let present = || {
            Command::new("memcached")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if present() {
            return Ok(());
        }
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=300", "-y", "-q"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "memcached"]) {
            apt(&["update"]);
            apt(&["install", "memcached"]);
        }
        if present() {
            Ok(())
        } else {
            Err(
                "memcached is not installed and `apt-get install -y memcached` failed; \
                 install memcached to run these tests"
                    .to_owned(),
            )
        }
    });
    if let Err(e) = ready {
        panic!("{e}");
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// One memcached process on a loopback port; killed on drop.
struct Memcached {
    child: Option<Child>,
    port: u16,
}

impl Memcached {
    fn start() -> Memcached {
        Memcached::start_on(free_port())
    }

    fn start_on(port: u16) -> Memcached {
        memcached_available();
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
        if running_as_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start memcached");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "memcached did not start on {port}"
            );
            sleep(Duration::from_millis(20));
        }
        Memcached {
            child: Some(child),
            port,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, like a crash.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send one text command and read until `end`.
    fn raw(&self, command: &str, end: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(command.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.ends_with(end) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "memcached closed during {command:?}");
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Every key and value memcached holds, as an attacker with network
    /// access to it would see them.
    fn dump(&self) -> Vec<u8> {
        let mut meta = self.raw("lru_crawler metadump all\r\n", b"END\r\n");
        for _ in 0..50 {
            if !meta.starts_with(b"BUSY") {
                break;
            }
            sleep(Duration::from_millis(100));
            meta = self.raw("lru_crawler metadump all\r\n", b"END\r\n");
        }
        let text = String::from_utf8(meta.clone()).unwrap();
        let mut dump = meta;
        for line in text.lines() {
            let Some(key) = line.strip_prefix("key=") else {
                continue;
            };
            let key = percent_decode(key.split(' ').next().unwrap());
            dump.extend(self.raw(&format!("get {key}\r\n"), b"END\r\n"));
        }
        dump
    }

    fn items(&self) -> u64 {
        let stats = String::from_utf8(self.raw("stats\r\n", b"END\r\n")).unwrap();
        stats
            .lines()
            .find_map(|l| l.strip_prefix("STAT curr_items "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn client(servers: &[String]) -> MemcachedStore {
    MemcachedStore::connect(servers, TIMEOUT).unwrap()
}

#[test]
fn round_trip_with_batched_reads_over_two_servers() {
    let a = Memcached::start();
    let b = Memcached::start();
    let store = client(&[a.addr(), b.addr()]);
    assert_eq!(store.kind(), "memcached");
    store.probe().unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("axr:key{i}")).collect();
    for k in &keys {
        store.put(k, k.as_bytes(), 0).unwrap();
    }
    let mut asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    asked.insert(7, "axr:missing");
    let got = store.get_many(&asked).unwrap();
    assert_eq!(got.len(), asked.len());
    for (k, v) in asked.iter().zip(&got) {
        if *k == "axr:missing" {
            assert_eq!(v, &None);
        } else {
            assert_eq!(v.as_deref(), Some(k.as_bytes()), "{k}");
        }
    }
    // Keys are spread over both servers.
    assert!(
        a.items() > 0 && b.items() > 0,
        "{} {}",
        a.items(),
        b.items()
    );
    assert_eq!(a.items() + b.items(), 40);
    // Overwrite, and a single get.
    store.put("axr:key3", b"new", 0).unwrap();
    assert_eq!(store.get("axr:key3").unwrap().as_deref(), Some(&b"new"[..]));
}

#[test]
fn entries_expire_after_their_ttl() {
    let m = Memcached::start();
    let store = client(&[m.addr()]);
    store.put("axr:short", b"v", 1).unwrap();
    store.put("axr:forever", b"w", 0).unwrap();
    assert!(store.get("axr:short").unwrap().is_some());
    sleep(Duration::from_millis(2100));
    assert_eq!(
        store.get_many(&["axr:short", "axr:forever"]).unwrap(),
        vec![None, Some(b"w".to_vec())]
    );
}

#[test]
fn an_encrypted_dump_reveals_neither_person_nor_pseudonym() {
    let m = Memcached::start();
    let store = client(&[m.addr()]);
    let domain = "axr.example.org";
    let secret = "a secret of the relay, long enough";
    let codec = StoreCodec::new(Some([0x42; 32]));
    let pseudonyms = Pseudonymizer::new(secret.as_bytes());
    let people = ["alice@example.com", "bob@example.net/phone"];
    for person in people {
        let local = pseudonyms.localpart(person);
        store
            .put(
                &codec.key(&local, domain),
                &codec.seal(&local, domain, person),
                0,
            )
            .unwrap();
    }
    let dump = m.dump();
    assert_eq!(m.items(), 2);
    assert!(dump.len() > 100, "the dump saw nothing: {dump:?}");
    for person in people {
        let local = pseudonyms.localpart(person);
        for needle in [person, "example", local.as_str(), domain, "axr:"] {
            assert!(!contains(&dump, needle), "{needle:?} in the dump");
        }
        // And the relay still reads it back.
        let value = store.get(&codec.key(&local, domain)).unwrap().unwrap();
        assert_eq!(codec.open(&local, domain, &value).as_deref(), Some(person));
    }
    // Without encrypt, the same dump would show both (the check above is real).
    let clear = StoreCodec::new(None);
    let local = pseudonyms.localpart("carol@example.org");
    store
        .put(
            &clear.key(&local, domain),
            &clear.seal(&local, domain, "carol@example.org"),
            0,
        )
        .unwrap();
    let dump = m.dump();
    assert!(contains(&dump, "carol@example.org") && contains(&dump, &local));
}

fn assert_unavailable_quickly<T: std::fmt::Debug>(
    what: &str,
    op: impl FnOnce() -> Result<T, StoreError>,
) {
    let started = Instant::now();
    let result = op();
    let took = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: {result:?}"
    );
    assert!(took < TIMEOUT * 4, "{what} took {took:?}");
}

#[test]
fn a_crash_gives_errors_in_time_and_a_restart_heals_the_same_client() {
    let mut m = Memcached::start();
    let port = m.port;
    let store = client(&[m.addr()]);
    store.put("axr:before", b"v", 0).unwrap();
    assert!(store.get("axr:before").unwrap().is_some());

    m.kill();
    for _ in 0..3 {
        assert_unavailable_quickly("get", || store.get("axr:before"));
        assert_unavailable_quickly("get_many", || store.get_many(&["axr:a", "axr:b"]));
        assert_unavailable_quickly("put", || store.put("axr:during", b"v", 0));
        assert_unavailable_quickly("probe", || store.probe());
    }

    let _m = Memcached::start_on(port);
    // memcached keeps nothing across a restart; the client works at once.
    assert_eq!(store.get("axr:before").unwrap(), None);
    store.put("axr:after", b"w", 0).unwrap();
    assert_eq!(store.get("axr:after").unwrap().as_deref(), Some(&b"w"[..]));
    assert_eq!(
        store.get_many(&["axr:after", "axr:before"]).unwrap(),
        vec![Some(b"w".to_vec()), None]
    );
}

#[test]
fn a_server_down_at_start_does_not_block_and_answers_errors() {
    let port = free_port();
    let started = Instant::now();
    let store = client(&[format!("127.0.0.1:{port}")]);
    assert!(started.elapsed() < TIMEOUT);
    assert_unavailable_quickly("get", || store.get("axr:x"));
    // It comes up later: the same client uses it.
    let _m = Memcached::start_on(port);
    store.put("axr:x", b"v", 0).unwrap();
    assert_eq!(store.get("axr:x").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts connections and reads nothing: the worst kind of stuck.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok((c, _)) = listener.accept() {
                conns.push(c);
            }
            sleep(Duration::from_millis(10));
        }
    });
    let store = client(&[addr]);
    assert_unavailable_quickly("get", || store.get("axr:x"));
    assert_unavailable_quickly("put", || store.put("axr:x", b"v", 0));
    drop(held);
}
