//! Processes of the ejabberd end-to-end tests: installing what they need,
//! bounded waits, memcached and `axrelay run`. Everything is killed on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use axrelay_test_support::e2e::{free_port, python, random_secret, COMPONENT, RELAY_RESOURCE};

pub const EJABBERDCTL: &str = "/usr/sbin/ejabberdctl";

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// ejabberd, memcached and python3-slixmpp, installed with apt-get when
/// missing (as root), or a panic saying what to install. Never skips.
pub fn prerequisites() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let missing = || {
            let mut m = Vec::new();
            if !Path::new(EJABBERDCTL).is_file() {
                m.push("ejabberd");
            }
            if !succeeds(Command::new("memcached").arg("-V")) {
                m.push("memcached");
            }
            if !succeeds(Command::new(python()).args(["-c", "import slixmpp"])) {
                m.push("python3-slixmpp");
            }
            m
        };
        let first = missing();
        if first.is_empty() {
            return Ok(());
        }
        if is_root() {
            eprintln!("e2e_ejabberd: installing {} with apt-get", first.join(" "));
            let apt = |args: &[&str]| {
                run_bounded(
                    Command::new("apt-get")
                        .args(["-o", "DPkg::Lock::Timeout=300", "-q", "-y"])
                        .args(args)
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                    Duration::from_secs(900),
                )
                .is_ok_and(|(s, _)| s.success())
            };
            let mut install = vec!["install", "--no-install-recommends"];
            install.extend(first.iter().copied());
            if !apt(&install) {
                apt(&["update"]);
                apt(&install);
            }
        }
        let left = missing();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the ejabberd end-to-end tests need {}: apt-get install {} \
                 (as root; python3-slixmpp must be importable by {})",
                left.join(", "),
                left.join(" "),
                python()
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `program`, made to receive SIGTERM when the thread that starts it ends
/// (the test's thread, or the whole test process if it is killed), so that
/// nothing outlives an interrupted test run.
pub fn command_guarded(program: &str) -> Command {
    let setpriv = Path::new("/usr/bin/setpriv");
    if setpriv.is_file() {
        let mut c = Command::new(setpriv);
        c.args(["--pdeathsig", "TERM", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Run a command to completion within `limit`; its status and output.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<(ExitStatus, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, limit);
    // The readers finish when the pipes close.
    thread::sleep(Duration::from_millis(10));
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    match status {
        Some(s) => Ok((s, format!("{}{}", text(&out), text(&err)))),
        None => Err(format!(
            "{cmd:?} did not finish within {limit:?}: {}{}",
            text(&out),
            text(&err)
        )),
    }
}

/// Drain a pipe on a thread.
pub fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

/// Wait for a child to exit within `limit`; kill it (and reap) if it does not.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Send a signal by number name (`TERM`, `KILL`) to one process.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    signal(child.id(), "TERM");
    wait_bounded(child, grace)
}

pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Poll `done` every 25 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// A memcached on a free loopback port (`-U 0`: no UDP); killed on drop.
pub struct Memcached {
    pub port: u16,
    child: Child,
}

impl Memcached {
    pub fn start() -> Memcached {
        prerequisites();
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = command_guarded("memcached");
            cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
            if is_root() {
                cmd.args(["-u", "root"]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start memcached");
            let err = collect(child.stderr.take().unwrap());
            let up = wait_until(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    || matches!(child.try_wait(), Ok(Some(_)))
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Memcached { port, child };
            }
            let _ = child.kill();
            let _ = child.wait();
            last = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
        }
        panic!("memcached did not start: {last}");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One text-protocol command; the answer up to and including `end`.
    pub fn command(&self, command: &str, end: &str) -> String {
        let mut s = TcpStream::connect(self.addr()).expect("connect to memcached");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(command.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while !out.ends_with(end.as_bytes()) {
            let n = s.read(&mut buf).expect("memcached answers within 5 s");
            assert!(n > 0, "memcached closed the connection during {command:?}");
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every key and value stored, as the text protocol shows them.
    pub fn dump(&self) -> String {
        let keys = self.command("lru_crawler metadump all\r\n", "END\r\n");
        let mut out = keys.clone();
        for line in keys.lines() {
            let Some(key) = line.split_whitespace().find_map(|f| f.strip_prefix("key=")) else {
                continue;
            };
            out.push_str(&self.command(&format!("get {key}\r\n"), "END\r\n"));
        }
        out
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a relay instance is configured.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub runtime: &'static str,
    /// `[relay] keepalive` in seconds.
    pub keepalive: u64,
    /// `[relay] keepalive_mode`: `ping` or `whitespace`.
    pub keepalive_mode: &'static str,
    /// `[hash] secret`; instances of one domain share it.
    pub secret: String,
    /// `[memcache] servers` and `encrypt`; memory store when `None`.
    pub memcache: Option<(String, String)>,
}

impl RelaySettings {
    pub fn new(runtime: &'static str) -> RelaySettings {
        RelaySettings {
            runtime,
            keepalive: 60,
            keepalive_mode: "ping",
            secret: random_secret(),
            memcache: None,
        }
    }
}

/// `axrelay run -d --log-sensitive` with its own temp dir and log file.
pub struct Relay {
    pub name: String,
    /// Holds the config and log until the relay is dropped.
    _dir: TempDir,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Relay {
    /// Write the configuration; `start` runs it.
    pub fn new(name: &str, component_port: u16, password: &str, s: &RelaySettings) -> Relay {
        let dir = tempfile::Builder::new()
            .prefix("axrelay-e2e-ejabberd-relay-")
            .tempdir()
            .expect("temp dir");
        let mut conf = format!(
            "[relay]\njid = {COMPONENT}\nserver = 127.0.0.1\nport = {component_port}\n\
             password = {password}\nruntime = {}\nkeepalive = {}\nkeepalive_mode = {}\n\n\
             [hash]\nsecret = {}\ndomain = {COMPONENT}\nidentity = bare\nresource = {RELAY_RESOURCE}\n",
            s.runtime, s.keepalive, s.keepalive_mode, s.secret,
        );
        if let Some((servers, encrypt)) = &s.memcache {
            conf.push_str(&format!(
                "\n[memcache]\nservers = {servers}\nencrypt = {encrypt}\n"
            ));
        }
        let config = dir.path().join("axrelay.conf");
        fs::write(&config, conf).expect("write relay config");
        let log = dir.path().join("axrelay.log");
        Relay {
            name: name.to_owned(),
            _dir: dir,
            config,
            log,
            child: None,
        }
    }

    /// Start the process (its log is appended to across restarts).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "relay {} already runs", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("relay log");
        let child = command_guarded(env!("CARGO_BIN_EXE_axrelay"))
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .args(["-d", "--log-sensitive"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start axrelay");
        self.child = Some(child);
    }

    /// Panic with the log if the process has exited.
    pub fn check_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(s)) = child.try_wait() {
                panic!(
                    "relay {} exited ({s}); its log:\n{}",
                    self.name,
                    tail(&self.log, 60)
                );
            }
        }
    }

    /// SIGTERM; checks that it exits 0 within 10 s (SPEC §7).
    pub fn stop_cleanly(&mut self) {
        let mut child = self.child.take().expect("relay was not running");
        let status = terminate(&mut child, Duration::from_secs(10));
        match status {
            Some(s) if s.success() => {}
            other => panic!(
                "relay {} after SIGTERM: {other:?} (expected exit 0 within 10 s); log:\n{}",
                self.name,
                tail(&self.log, 60)
            ),
        }
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// Bare JIDs this instance answered `/whoami` for (`-d --log-sensitive`).
    pub fn whoami_senders(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split(" DEBUG whoami: ").nth(1))
            .filter_map(|rest| rest.split(' ').next())
            .map(|full| axrelay_test_support::e2e::bare(full).to_owned())
            .collect()
    }

    /// Messages this instance relayed (`-d --log-sensitive`).
    pub fn relayed(&self) -> usize {
        self.log().matches(" DEBUG relayed ").count()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if thread::panicking() {
            eprintln!(
                "---- relay {} log (last 80 lines) ----\n{}\n---- end of relay {} log ----",
                self.name,
                tail(&self.log, 80),
                self.name
            );
        }
    }
}
