//! A real Prosody, the `axrelay` binary and slixmpp clients, all on 127.0.0.1.
//!
//! Every test gets its own Prosody (own temp dir, free ports), its own relay
//! and uniquely named accounts, so tests run in parallel. Every wait is
//! bounded. When a test fails, the Prosody log, the relay's log and the
//! clients' stderr are printed.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::json::{object, quote, Json};

/// The relay's domain in every test.
pub const COMPONENT: &str = "axr.localhost";
/// The users' domain.
pub const HOST: &str = "localhost";
/// The resource relayed stanzas come from (`[hash] resource`).
pub const RELAY_RESOURCE: &str = "a";
/// How long a client waits for a stanza that should arrive.
pub const WAIT: Duration = Duration::from_secs(10);

const AUTHENTICATED: &str = "External component successfully authenticated";
const REFUSED_SECOND: &str = "Second component attempted to connect";

/// The repository: this crate lives in its `tests/support`.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Random hex; for names and throwaway secrets.
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(out.len());
        h.write_u128(Instant::now().elapsed().as_nanos());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(bytes * 2);
    out
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A throwaway secret, base64 of 32 bytes, like `axrelay secret` prints.
pub fn random_secret() -> String {
    let hex = random_hex(32);
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    base64(&bytes)
}

/// A free TCP port on 127.0.0.1, never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// The Python that sees Debian's python3-slixmpp (a pyenv `python3` earlier
/// on PATH would not); `AXRELAY_E2E_PYTHON` overrides.
pub fn python() -> String {
    if let Ok(p) = std::env::var("AXRELAY_E2E_PYTHON") {
        return p;
    }
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

/// `program`, made to receive SIGTERM when the test thread that starts it
/// ends (or the test process dies): nothing outlives a killed test run.
fn command_guarded(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if on_path("setpriv") {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig".as_ref(), "TERM".as_ref(), program.as_ref()]);
        c
    } else {
        Command::new(program)
    }
}

/// Run a command to completion within `limit`, or kill it.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<(ExitStatus, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, limit);
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    match status {
        Some(s) => Ok((s, format!("{}{}", text(&out), text(&err)))),
        None => Err(format!("{cmd:?} did not finish within {limit:?}")),
    }
}

/// Drain a pipe on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
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
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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

/// SIGTERM, then SIGKILL after `grace`.
fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    wait_bounded(child, grace)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Install Prosody and python3-slixmpp if missing (as root, with apt-get), or
/// fail with instructions. Never skips.
pub fn prerequisites() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let have = || {
            let prosody = on_path("prosody") && on_path("prosodyctl");
            let slixmpp = Command::new(python())
                .args(["-c", "import slixmpp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            prosody && slixmpp
        };
        if have() {
            return Ok(());
        }
        if is_root() && on_path("apt-get") {
            eprintln!("e2e: installing prosody and python3-slixmpp with apt-get");
            let apt = |args: &[&str]| {
                run_bounded(
                    Command::new("apt-get")
                        .args(args)
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                    Duration::from_secs(900),
                )
            };
            let _ = apt(&["update", "-qq"]);
            match apt(&["install", "-y", "-qq", "prosody", "python3-slixmpp"]) {
                Ok((s, out)) if !s.success() => eprintln!("apt-get install failed:\n{out}"),
                Err(e) => eprintln!("{e}"),
                _ => {}
            }
            if have() {
                return Ok(());
            }
        }
        Err(format!(
            "the end-to-end tests need Prosody 0.12 and slixmpp for {}: \
             apt-get install prosody python3-slixmpp (or set AXRELAY_E2E_PYTHON)",
            python()
        ))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Options of the Prosody a test starts.
#[derive(Clone, Copy, Debug)]
pub struct ProsodyOptions {
    /// mod_offline: keep messages for offline users (Prosody's default).
    pub offline_storage: bool,
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        ProsodyOptions {
            offline_storage: true,
        }
    }
}

/// A Prosody in the foreground, configured from scripts/prosody.cfg.lua.in.
pub struct Prosody {
    pub c2s_port: u16,
    pub component_port: u16,
    pub component_secret: String,
    dir: TempDir,
    config: PathBuf,
    child: Child,
}

/// Fill in the template shared with scripts/demo.sh.
pub fn render_prosody_config(
    dir: &Path,
    c2s_port: u16,
    component_port: u16,
    secret: &str,
    opts: ProsodyOptions,
) -> String {
    let template = fs::read_to_string(repo().join("scripts/prosody.cfg.lua.in"))
        .expect("read scripts/prosody.cfg.lua.in");
    let disabled = if opts.offline_storage {
        ""
    } else {
        "\"offline\";"
    };
    let text = template
        .replace("@DIR@", dir.to_str().expect("utf-8 temp dir"))
        .replace("@C2S_PORT@", &c2s_port.to_string())
        .replace("@COMPONENT_PORT@", &component_port.to_string())
        .replace("@COMPONENT@", COMPONENT)
        .replace("@COMPONENT_SECRET@", secret)
        .replace("@MODULES_DISABLED@", disabled)
        .replace("@LOG_LEVEL@", "debug");
    let left: Vec<&str> = text
        .split('@')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(
        left.is_empty(),
        "placeholders left in the Prosody template: {left:?}"
    );
    text
}

impl Prosody {
    pub fn start(opts: ProsodyOptions) -> Prosody {
        prerequisites();
        let mut last = String::new();
        // A port taken by another process between choosing and binding: retry.
        for _ in 0..3 {
            match Prosody::try_start(opts) {
                Ok(p) => return p,
                Err(e) => last = e,
            }
        }
        panic!("Prosody did not start: {last}");
    }

    fn try_start(opts: ProsodyOptions) -> Result<Prosody, String> {
        let dir = tempfile::Builder::new()
            .prefix("axrelay-e2e-prosody-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let c2s_port = free_port();
        let component_port = free_port();
        let component_secret = random_hex(16);
        let config = dir.path().join("prosody.cfg.lua");
        fs::create_dir_all(dir.path().join("data")).map_err(|e| e.to_string())?;
        fs::write(
            &config,
            render_prosody_config(
                dir.path(),
                c2s_port,
                component_port,
                &component_secret,
                opts,
            ),
        )
        .map_err(|e| e.to_string())?;
        let root = is_root();
        if root {
            // Prosody refuses to run as root; it runs as the prosody user,
            // which must own its directory.
            let (s, out) = run_bounded(
                Command::new("chown")
                    .args(["-R", "prosody:prosody"])
                    .arg(dir.path()),
                Duration::from_secs(10),
            )?;
            if !s.success() {
                return Err(format!("chown prosody: {out}"));
            }
        }
        let out = fs::File::create(dir.path().join("prosody.out")).map_err(|e| e.to_string())?;
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "TERM", "--reuid=prosody", "--regid=prosody"]);
            c.args(["--init-groups", "prosody"]);
            c
        } else {
            command_guarded("prosody")
        };
        let child = cmd
            .arg("--config")
            .arg(&config)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("start prosody: {e}"))?;
        let mut p = Prosody {
            c2s_port,
            component_port,
            component_secret,
            dir,
            config,
            child,
        };
        let want = [
            format!("Activated service 'c2s' on [127.0.0.1]:{c2s_port}"),
            format!("Activated service 'component' on [127.0.0.1]:{component_port}"),
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = p.log();
            if log.contains("Failed to open server port") {
                return Err(format!("port in use:\n{}", tail(&p.log_path(), 20)));
            }
            if want.iter().all(|w| log.contains(w.as_str())) {
                return Ok(p);
            }
            if let Ok(Some(s)) = p.child.try_wait() {
                return Err(format!(
                    "prosody exited ({s}):\n{}\n{}",
                    tail(&p.dir.path().join("prosody.out"), 30),
                    tail(&p.log_path(), 30)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not listening after 20 s:\n{}",
                    tail(&p.log_path(), 30)
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// How often the relay has completed the component handshake.
    pub fn component_logins(&self) -> usize {
        self.log().matches(AUTHENTICATED).count()
    }

    /// `prosodyctl register USER localhost PASSWORD`.
    pub fn register(&self, user: &str, password: &str) {
        let (s, out) = run_bounded(
            Command::new("prosodyctl")
                .arg("--config")
                .arg(&self.config)
                .args(["register", user, HOST, password]),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            s.success(),
            "prosodyctl register {user} failed ({s}):\n{out}"
        );
    }

    /// A new account named `prefix-<random>`; returns its localpart.
    pub fn account(&self, prefix: &str) -> String {
        let user = format!("{prefix}-{}", random_hex(4));
        self.register(&user, &password_of(&user));
        user
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
        if thread::panicking() {
            eprintln!(
                "---- Prosody log (last 200 lines) ----\n{}\n---- end of Prosody log ----",
                tail(&self.log_path(), 200)
            );
        }
    }
}

pub fn password_of(user: &str) -> String {
    format!("pw-{user}")
}

/// Install memcached if missing (as root, with apt-get), or fail saying
/// what to install. Never skips.
fn memcached_prerequisite() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        if on_path("memcached") {
            return Ok(());
        }
        if is_root() && on_path("apt-get") {
            eprintln!("e2e: installing memcached with apt-get");
            let apt = |args: &[&str]| {
                run_bounded(
                    Command::new("apt-get")
                        .args(args)
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                    Duration::from_secs(900),
                )
            };
            let _ = apt(&["update", "-qq"]);
            match apt(&["install", "-y", "-qq", "memcached"]) {
                Ok((s, out)) if !s.success() => eprintln!("apt-get install failed:\n{out}"),
                Err(e) => eprintln!("{e}"),
                _ => {}
            }
            if on_path("memcached") {
                return Ok(());
            }
        }
        Err("this test needs memcached: apt-get install memcached".to_string())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A memcached of its own on 127.0.0.1 (free port, no UDP), killed when
/// dropped.
pub struct Memcached {
    pub port: u16,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Memcached {
    pub fn start() -> Memcached {
        Memcached::start_at(None)
    }

    /// On `port` again, as a restarted memcached comes back.
    pub fn start_on(port: u16) -> Memcached {
        Memcached::start_at(Some(port))
    }

    fn start_at(fixed: Option<u16>) -> Memcached {
        memcached_prerequisite();
        let mut last = String::new();
        // A port taken between choosing and binding: retry.
        for _ in 0..3 {
            let port = fixed.unwrap_or_else(free_port);
            let mut cmd = command_guarded("memcached");
            cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
            if is_root() {
                // memcached will not run as root unless told to.
                cmd.args(["-u", "root"]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start memcached: {e}"));
            let stderr = collect(child.stderr.take().unwrap());
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "memcached exited ({status}): {}",
                        String::from_utf8_lossy(&stderr.lock().unwrap())
                    );
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Memcached {
                        port,
                        child,
                        stderr,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = "memcached not listening after 10 s".to_string();
                    break;
                }
                thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("memcached did not start: {last}");
    }

    /// `127.0.0.1:PORT`, for `[memcache] servers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// One text-protocol command; the answer up to and including `end`.
    pub fn command(&self, command: &str, end: &str) -> String {
        let mut s = std::net::TcpStream::connect(self.addr()).expect("connect to memcached");
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

    /// Kill it and wait for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "---- memcached stderr ----\n{}",
                String::from_utf8_lossy(&self.stderr.lock().unwrap())
            );
        }
    }
}

/// Which store the relay uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// No `path`: mappings live in memory only.
    Memory,
    /// `[local_storage] path` in the relay's temp dir.
    File,
    /// Same, with `encrypt`.
    EncryptedFile,
}

/// `[hash] identity`: what a pseudonym is computed from (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The bare JID: one pseudonym per account (the default).
    Bare,
    /// The full JID: one pseudonym per resource (the 2014 behaviour).
    Full,
}

impl Identity {
    fn conf(self) -> &'static str {
        match self {
            Identity::Bare => "bare",
            Identity::Full => "full",
        }
    }
}

/// How [`Relay::start_with`] configures the relay.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The local store; ignored when `memcache` is set.
    pub store: Store,
    pub identity: Identity,
    /// `[memcache] servers` and `encrypt` (base64 of 32 bytes): the
    /// memcached store instead of `[local_storage]`.
    pub memcache: Option<(String, String)>,
    /// `[relay] keepalive` (seconds) and `keepalive_mode`.
    pub keepalive: (u64, &'static str),
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            store: Store::Memory,
            identity: Identity::Bare,
            memcache: None,
            keepalive: (60, "ping"),
        }
    }
}

/// The `axrelay run` binary, connected to a test's Prosody.
pub struct Relay {
    /// The executable (the test's `CARGO_BIN_EXE_axrelay`).
    bin: PathBuf,
    dir: TempDir,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub runtime: String,
    pub store: Store,
}

impl Relay {
    /// Write a config and start `axrelay run`; returns once Prosody has
    /// accepted the component.
    /// `bin` is the executable, which only the calling test binary knows.
    pub fn start(bin: &Path, prosody: &Prosody, runtime: &str, store: Store) -> Relay {
        Relay::start_with(
            bin,
            prosody,
            runtime,
            RelayOptions {
                store,
                ..RelayOptions::default()
            },
        )
    }

    /// Like [`Relay::start`], with the identity mode and store of `opts`.
    pub fn start_with(bin: &Path, prosody: &Prosody, runtime: &str, opts: RelayOptions) -> Relay {
        let store = opts.store;
        let dir = tempfile::Builder::new()
            .prefix("axrelay-e2e-relay-")
            .tempdir()
            .expect("temp dir");
        let mut conf = format!(
            "[relay]\njid = {COMPONENT}\nserver = 127.0.0.1\nport = {}\npassword = {}\n\
             runtime = {runtime}\nkeepalive = {}\nkeepalive_mode = {}\n\n\
             [hash]\nsecret = {}\ndomain = {COMPONENT}\nidentity = {}\nresource = {RELAY_RESOURCE}\n",
            prosody.component_port,
            prosody.component_secret,
            opts.keepalive.0,
            opts.keepalive.1,
            random_secret(),
            opts.identity.conf(),
        );
        match (&opts.memcache, store) {
            (Some((servers, encrypt)), _) => conf.push_str(&format!(
                "\n[memcache]\nservers = {servers}\nencrypt = {encrypt}\n"
            )),
            (None, Store::Memory) => {}
            (None, Store::File) => conf.push_str(&format!(
                "\n[local_storage]\npath = {}\n",
                dir.path().join("pseudonyms.db").display()
            )),
            (None, Store::EncryptedFile) => conf.push_str(&format!(
                "\n[local_storage]\npath = {}\nencrypt = {}\n",
                dir.path().join("pseudonyms.db").display(),
                random_secret()
            )),
        }
        let config = dir.path().join("axrelay.conf");
        fs::write(&config, conf).expect("write relay config");
        let log = dir.path().join("axrelay.log");
        let mut relay = Relay {
            bin: bin.to_owned(),
            dir,
            config,
            log,
            child: None,
            runtime: runtime.to_string(),
            store,
        };
        relay.spawn(prosody);
        relay
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("pseudonyms.db")
    }

    fn spawn(&mut self, prosody: &Prosody) {
        let before = prosody.component_logins();
        self.spawn_process();
        self.wait_connected(prosody, before, Duration::from_secs(30));
    }

    fn spawn_process(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("relay log");
        let child = command_guarded(&self.bin)
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .arg("-d")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start axrelay");
        self.child = Some(child);
    }

    /// Wait until Prosody has accepted a component more than `before` times.
    pub fn wait_connected(&mut self, prosody: &Prosody, before: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if prosody.component_logins() > before {
                return;
            }
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "axrelay run exited ({s}) before connecting:\n{}",
                    tail(&self.log, 60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "Prosody did not accept the relay within {limit:?}; relay log:\n{}",
                tail(&self.log, 60)
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// A second instance with the same configuration (memory store only),
    /// started while this one holds the domain: Prosody refuses it with
    /// `conflict`, and it must keep retrying. Returns once it was refused.
    pub fn standby(&self, prosody: &Prosody) -> Relay {
        assert_eq!(
            self.store,
            Store::Memory,
            "two instances cannot share a file store"
        );
        let dir = tempfile::Builder::new()
            .prefix("axrelay-e2e-relay-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("axrelay.conf");
        fs::copy(&self.config, &config).expect("copy relay config");
        let log = dir.path().join("axrelay.log");
        let mut standby = Relay {
            bin: self.bin.clone(),
            dir,
            config,
            log,
            child: None,
            runtime: self.runtime.clone(),
            store: self.store,
        };
        let refused = || prosody.log().matches(REFUSED_SECOND).count();
        let before = refused();
        standby.spawn_process();
        let deadline = Instant::now() + Duration::from_secs(15);
        while refused() == before {
            assert!(
                Instant::now() < deadline,
                "the second instance did not try to connect within 15 s; its log:\n{}",
                tail(&standby.log, 60)
            );
            thread::sleep(Duration::from_millis(25));
        }
        standby
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM; the exit status (the relay is killed after 10 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let status = terminate(&mut child, Duration::from_secs(10));
        assert!(
            status.is_some(),
            "axrelay did not exit within 10 s of SIGTERM; log:\n{}",
            tail(&self.log, 60)
        );
        status
    }

    /// Stop, check it exited 0, start again with the same configuration.
    pub fn restart(&mut self, prosody: &Prosody) {
        self.stop_cleanly();
        self.spawn(prosody);
    }

    /// Stop and check the exit status is 0 (SPEC §7).
    pub fn stop_cleanly(&mut self) {
        let status = self.stop().expect("relay was not running");
        assert!(
            status.success(),
            "axrelay exited with {status} after SIGTERM; log:\n{}",
            tail(&self.log, 60)
        );
    }

    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if thread::panicking() {
            eprintln!(
                "---- relay log (last 100 lines) ----\n{}\n---- end of relay log ----",
                tail(&self.log, 100)
            );
        }
    }
}

/// A child element of a received message, as the client parsed it.
#[derive(Clone, Debug)]
pub struct Elem {
    pub ns: String,
    pub tag: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Elem>,
}

impl Elem {
    fn from_json(j: &Json) -> Elem {
        Elem {
            ns: j.get("ns").str().unwrap_or("").into(),
            tag: j.get("tag").str().unwrap_or("").into(),
            attrs: j
                .get("attrs")
                .members()
                .iter()
                .map(|(k, v)| (k.clone(), v.str().unwrap_or("").into()))
                .collect(),
            text: j.get("text").str().unwrap_or("").into(),
            children: j
                .get("children")
                .arr()
                .iter()
                .map(Elem::from_json)
                .collect(),
        }
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A stanza a client received (message, presence, or IQ answer).
#[derive(Clone, Debug)]
pub struct Msg {
    pub from: String,
    pub to: String,
    pub kind: String,
    pub id: String,
    pub body: Option<String>,
    /// (type, defined condition) of a message of type error.
    pub error: Option<(String, String)>,
    pub children: Vec<Elem>,
}

impl Msg {
    fn from_json(j: &Json) -> Msg {
        let s = |k: &str| j.get(k).str().unwrap_or("").to_string();
        let e = j.get("error");
        Msg {
            from: s("from"),
            to: s("to"),
            kind: s("type"),
            id: s("id"),
            body: j.get("body").str().map(str::to_string),
            error: (!e.is_null()).then(|| {
                (
                    e.get("type").str().unwrap_or("").into(),
                    e.get("condition").str().unwrap_or("").into(),
                )
            }),
            children: j
                .get("children")
                .arr()
                .iter()
                .map(Elem::from_json)
                .collect(),
        }
    }

    pub fn child(&self, ns: &str, tag: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.ns == ns && c.tag == tag)
    }

    pub fn sender_bare(&self) -> &str {
        bare(&self.from)
    }
}

pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// Check `p` is a pseudonym at the relay's domain (SPEC §3).
pub fn assert_pseudonym(p: &str) {
    let (local, domain) = p
        .split_once('@')
        .unwrap_or_else(|| panic!("not a JID: {p:?}"));
    assert_eq!(
        domain, COMPONENT,
        "pseudonym {p:?} not at the relay's domain"
    );
    assert_eq!(
        local.len(),
        45,
        "pseudonym localpart {local:?} is not 45 characters"
    );
    assert!(
        local
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')),
        "pseudonym localpart {local:?} is not lower-case base32"
    );
}

/// One logged-in slixmpp client (tests/e2e/client.py serve).
pub struct Client {
    pub user: String,
    pub resource: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Client {
    /// Log `user` in with `resource`; panics if that fails within 20 s.
    pub fn login(prosody: &Prosody, user: &str, resource: &str) -> Client {
        let jid = format!("{user}@{HOST}/{resource}");
        let mut child = command_guarded(python())
            .arg(repo().join("tests/e2e/client.py"))
            .args(["serve", "--jid", &jid, "--password", &password_of(user)])
            .args(["--port", &prosody.c2s_port.to_string(), "--timeout", "15"])
            .args(["--max-lifetime", "300"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tests/e2e/client.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Client {
            user: user.into(),
            resource: resource.into(),
            child,
            stdin,
            lines,
            stderr,
        };
        let ready = c.next_line(Duration::from_secs(20), "login");
        assert_eq!(
            ready.get("event").str(),
            Some("ready"),
            "{jid} could not log in: {ready:?}\nstderr: {}",
            c.stderr()
        );
        c
    }

    /// Log in with a fresh random resource.
    pub fn login_new(prosody: &Prosody, user: &str) -> Client {
        Client::login(prosody, user, &format!("res-{}", random_hex(4)))
    }

    pub fn bare(&self) -> String {
        format!("{}@{HOST}", self.user)
    }

    /// Whether the client process still runs (not quit).
    pub fn online(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn next_line(&mut self, limit: Duration, what: &str) -> Json {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Json::parse(&line)
                .unwrap_or_else(|e| panic!("client {}: bad JSON ({e}): {line}", self.user)),
            Err(_) => panic!(
                "client {}: no answer to {what} within {limit:?}; stderr:\n{}",
                self.user,
                self.stderr()
            ),
        }
    }

    /// Send one command; its answer, which must have "ok": true.
    fn cmd(&mut self, command: String, timeout: Duration) -> Json {
        writeln!(self.stdin, "{command}")
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| panic!("client {}: {e}; stderr:\n{}", self.user, self.stderr()));
        let answer = self.next_line(timeout + Duration::from_secs(15), &command);
        assert_eq!(
            answer.get("ok").bool(),
            Some(true),
            "client {}: {command} failed: {answer:?}",
            self.user
        );
        answer
    }

    /// `/whoami` to the relay; the pseudonym of the reply (checked).
    pub fn whoami(&mut self) -> String {
        let cmd = object(&[
            ("cmd", quote("whoami")),
            ("to", quote(COMPONENT)),
            ("timeout", WAIT.as_secs().to_string()),
        ]);
        let answer = self.cmd(cmd, WAIT);
        let body = answer
            .get("body")
            .str()
            .unwrap_or_else(|| panic!("{}: /whoami answer without body: {answer:?}", self.user));
        let p = body.trim().to_string();
        assert_pseudonym(&p);
        p
    }

    /// A chat message with a body; its id.
    pub fn send(&mut self, to: &str, body: &str) -> String {
        self.send_ex(to, Some(body), None, "")
    }

    /// A chat message, optionally with a body, an id and extra children.
    pub fn send_ex(
        &mut self,
        to: &str,
        body: Option<&str>,
        id: Option<&str>,
        extra: &str,
    ) -> String {
        let mut m = vec![
            ("cmd", quote("send")),
            ("to", quote(to)),
            ("type", quote("chat")),
        ];
        if let Some(b) = body {
            m.push(("body", quote(b)));
        }
        if let Some(i) = id {
            m.push(("id", quote(i)));
        }
        if !extra.is_empty() {
            m.push(("extra", quote(extra)));
        }
        let answer = self.cmd(object(&m), WAIT);
        answer.get("id").str().unwrap_or("").to_string()
    }

    /// Turn Message Carbons (XEP-0280) on or off for this session; returns
    /// once the server has confirmed.
    pub fn carbons(&mut self, enable: bool) {
        let m = object(&[
            ("cmd", quote("carbons")),
            ("enable", enable.to_string()),
            ("timeout", WAIT.as_secs().to_string()),
        ]);
        self.cmd(m, WAIT);
    }

    /// Write raw XML to the stream.
    pub fn raw(&mut self, xml: &str) {
        self.cmd(object(&[("cmd", quote("raw")), ("xml", quote(xml))]), WAIT);
    }

    /// Up to `n` messages (optionally only from the bare JID `from`)
    /// arriving within `limit`.
    pub fn wait(&mut self, n: usize, limit: Duration, from: Option<&str>) -> Vec<Msg> {
        self.wait_kind("message", n, limit, from)
    }

    /// Like [`Client::wait`] for `kind` "message", "presence", or "iq"
    /// (results and errors).
    pub fn wait_kind(
        &mut self,
        kind: &str,
        n: usize,
        limit: Duration,
        from: Option<&str>,
    ) -> Vec<Msg> {
        let mut m = vec![
            ("cmd", quote("wait")),
            ("kind", quote(kind)),
            ("count", n.to_string()),
            ("timeout", format!("{:.3}", limit.as_secs_f64())),
        ];
        if let Some(f) = from {
            m.push(("from", quote(f)));
        }
        let answer = self.cmd(object(&m), limit);
        answer
            .get("messages")
            .arr()
            .iter()
            .map(Msg::from_json)
            .collect()
    }

    /// The IQ result or error with `id`, within [`WAIT`].
    pub fn iq_answer(&mut self, id: &str) -> Msg {
        let m = object(&[
            ("cmd", quote("wait")),
            ("kind", quote("iq")),
            ("id", quote(id)),
            ("timeout", WAIT.as_secs().to_string()),
        ]);
        let answer = self.cmd(m, WAIT);
        match answer.get("messages").arr().first() {
            Some(iq) => Msg::from_json(iq),
            None => panic!("{}: no answer to IQ {id} within {WAIT:?}", self.user),
        }
    }

    /// Exactly `n` messages within [`WAIT`]; panics with what arrived if not.
    pub fn expect(&mut self, n: usize, from: Option<&str>) -> Vec<Msg> {
        let got = self.wait(n, WAIT, from);
        if got.len() != n {
            let raw = self.raw_tail(4000);
            panic!(
                "{} expected {n} message(s){} within {WAIT:?}, got {got:#?}\n\
                 last raw XML received:\n{raw}",
                self.user,
                from.map(|f| format!(" from {f}")).unwrap_or_default(),
            );
        }
        got
    }

    /// One message within [`WAIT`].
    pub fn expect_one(&mut self, from: Option<&str>) -> Msg {
        self.expect(1, from).pop().unwrap()
    }

    /// Check nothing arrives within `limit`.
    pub fn expect_none(&mut self, limit: Duration) {
        let got = self.wait(1, limit, None);
        assert!(
            got.is_empty(),
            "{} expected nothing, got {got:#?}",
            self.user
        );
    }

    /// Every byte this client received from the server so far.
    pub fn raw_log(&mut self) -> String {
        let answer = self.cmd(object(&[("cmd", quote("raw_log"))]), WAIT);
        answer.get("xml").str().unwrap_or("").to_string()
    }

    fn raw_tail(&mut self, chars: usize) -> String {
        let raw = self.raw_log();
        let skip = raw.chars().count().saturating_sub(chars);
        raw.chars().skip(skip).collect()
    }

    /// Log out and wait for the process to end. The value stays usable
    /// for its names (`user`, `resource`) only.
    pub fn quit(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.cmd(object(&[("cmd", quote("quit"))]), WAIT);
            wait_bounded(&mut self.child, Duration::from_secs(10));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Check that nothing `reader` received names `other`: neither its
/// localpart (unique per test), nor its bare JID, nor any of `resources`.
pub fn assert_no_trace_of(other: &Client, resources: &[String], reader: &mut Client) {
    let raw = reader.raw_log();
    assert!(!raw.is_empty(), "{} received nothing at all", reader.user);
    let mut needles = vec![other.bare(), other.user.clone(), other.resource.clone()];
    needles.extend(resources.iter().cloned());
    for needle in needles {
        if let Some(at) = raw.find(&needle) {
            let mut start = raw[..at].rfind('<').unwrap_or(0).saturating_sub(200);
            while !raw.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (at + 300).min(raw.len());
            while !raw.is_char_boundary(end) {
                end += 1;
            }
            panic!(
                "{} received {:?}, which identifies {}:\n…{}…",
                reader.user,
                needle,
                other.user,
                &raw[start..end]
            );
        }
    }
}
