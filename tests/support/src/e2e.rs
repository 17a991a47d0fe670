//! A real Prosody, the `axrelay` binary and slixmpp clients, all on 127.0.0.1.
//!
//! Every test gets its own Prosody (own temp dir, free ports), its own relay
//! and uniquely named accounts, so tests run in parallel. Every wait is
//! bounded. When a test fails, the Prosody log, the relay's log and the
//! clients' stderr are printed.
//!
//! Relays, clients and the process functions take ports and passwords, not
//! a Prosody, where another server (ejabberd's test, the I2P test's
//! Prosody servers on .b32.i2p names) uses them too.

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

/// What Prosody logs when a component has completed the handshake.
pub const AUTHENTICATED: &str = "External component successfully authenticated";
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

/// A resource no client has had: `res-<random>`.
pub fn new_resource() -> String {
    format!("res-{}", random_hex(4))
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

pub fn on_path(name: &str) -> bool {
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

/// Whether `cmd` runs and exits 0.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `program`, made to receive SIGTERM when the test thread that starts it
/// ends (or the test process dies): nothing outlives a killed test run.
pub fn command_guarded(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if on_path("setpriv") {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig".as_ref(), "TERM".as_ref(), program.as_ref()]);
        c
    } else {
        Command::new(program)
    }
}

/// Run a command to completion within `limit`, or kill it; its status and
/// output.
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
    // The readers finish when the pipes close; not joined, since a daemon
    // the command left behind may hold them open.
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

/// Run a command that must succeed within `limit`; its output.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    match run_bounded(cmd, limit) {
        Ok((s, out)) if s.success() => out,
        Ok((s, out)) => panic!("{cmd:?} failed ({s}):\n{out}"),
        Err(e) => panic!("{e}"),
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

/// Start `cmd` with stdin closed and stdout and stderr appended to `out`.
pub fn spawn_into(cmd: &mut Command, out: &Path) -> Result<Child, String> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))
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

/// Poll `done` every 25 ms until it holds (true) or `limit` passes (false).
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

/// Send the signal `name` (`TERM`, `KILL`) to one process.
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

/// A file's text, empty when it cannot be read (a log not written yet).
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `lines` lines of a file, or why it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `chown -R user:user dir`: a server that drops root runs as `user`.
pub fn chown_to(user: &str, dir: &Path) -> Result<(), String> {
    let (s, out) = run_bounded(
        Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(dir),
        Duration::from_secs(10),
    )?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("chown {user}: {out}"))
    }
}

/// `start`, tried three times: a port another process takes between
/// choosing and binding makes it fail; anything else fails every time.
pub fn start_retrying<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..3 {
        match start() {
            Ok(t) => return t,
            Err(e) => last = e,
        }
    }
    panic!("{what} did not start: {last}");
}

/// What a test's XMPP server starts from: a temp dir of its own, free
/// client and component ports on 127.0.0.1, a component password.
pub struct ServerSetup {
    pub dir: TempDir,
    pub c2s_port: u16,
    pub component_port: u16,
    pub component_secret: String,
}

impl ServerSetup {
    pub fn new(server: &str) -> Result<ServerSetup, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("axrelay-e2e-{server}-"))
            .tempdir()
            .map_err(|e| e.to_string())?;
        Ok(ServerSetup {
            dir,
            c2s_port: free_port(),
            component_port: free_port(),
            component_secret: random_hex(16),
        })
    }
}

/// Wait until the server's `log` holds every line of `want` (it listens).
/// Fails when the log says `in_use` (a port was taken: start again), when
/// the server exits, or after `limit`, with the end of `log` and of `out`
/// (its stdout and stderr).
pub fn wait_listening(
    child: &mut Child,
    log: &Path,
    out: &Path,
    want: &[String],
    in_use: &str,
    limit: Duration,
) -> Result<(), String> {
    let context = || format!("{}\n{}", tail(out, 40), tail(log, 40));
    let mut exited = None;
    let listening = wait_until(limit, || {
        let text = read_lossy(log);
        if text.contains(in_use) || want.iter().all(|w| text.contains(w.as_str())) {
            return true;
        }
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    if let Some(s) = exited {
        return Err(format!("exited ({s}):\n{}", context()));
    }
    if !listening {
        return Err(format!("not listening after {limit:?}:\n{}", context()));
    }
    if read_lossy(log).contains(in_use) {
        return Err(format!("port in use:\n{}", context()));
    }
    Ok(())
}

/// Check once per `done` which Debian packages `missing` names; as root,
/// install them with apt-get and check again. Panics with `hint` for what
/// is still missing: no test is skipped for want of a program.
pub fn ensure_installed(
    done: &'static OnceLock<Result<(), String>>,
    missing: impl Fn() -> Vec<&'static str>,
    hint: impl FnOnce(&[&str]) -> String,
) {
    let result = done.get_or_init(|| {
        let left = install_missing(missing, &[]);
        if left.is_empty() {
            Ok(())
        } else {
            Err(hint(&left))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The Debian packages `missing` names, installed with apt-get as root
/// (with `along`, which nothing checks for); what is missing afterwards.
pub fn install_missing(
    missing: impl Fn() -> Vec<&'static str>,
    along: &[&str],
) -> Vec<&'static str> {
    let first = missing();
    if first.is_empty() {
        return first;
    }
    if is_root() && on_path("apt-get") {
        eprintln!("installing {} with apt-get", first.join(" "));
        let apt = |args: &[&str]| match run_bounded(
            Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=300", "-q", "-y"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            Duration::from_secs(900),
        ) {
            Ok((s, _)) if s.success() => true,
            Ok((s, out)) => {
                eprintln!("apt-get {args:?}: {s}\n{out}");
                false
            }
            Err(e) => {
                eprintln!("{e}");
                false
            }
        };
        let mut install = vec!["install", "--no-install-recommends"];
        install.extend(along);
        install.extend(&first);
        // The package lists are fetched only when the ones there do
        // not have what is missing.
        if !apt(&install) {
            apt(&["update"]);
            apt(&install);
        }
    }
    missing()
}

/// Install Prosody and python3-slixmpp if missing (as root, with apt-get), or
/// fail with instructions. Never skips.
pub fn prerequisites() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    ensure_installed(
        &DONE,
        || {
            let mut m = Vec::new();
            if !(on_path("prosody") && on_path("prosodyctl")) {
                m.push("prosody");
            }
            if !slixmpp_importable() {
                m.push("python3-slixmpp");
            }
            m
        },
        |_| {
            format!(
                "the end-to-end tests need Prosody 0.12 and slixmpp for {}: \
                 apt-get install prosody python3-slixmpp (or set AXRELAY_E2E_PYTHON)",
                python()
            )
        },
    );
}

/// Whether [`python`] can import slixmpp, which tests/e2e/client.py uses.
pub fn slixmpp_importable() -> bool {
    succeeds(Command::new(python()).args(["-c", "import slixmpp"]))
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
    assert_no_placeholder(&text, "the Prosody template");
    text
}

/// Panic if `text`, rendered from the template `what`, still has an
/// `@NAME@` placeholder.
pub fn assert_no_placeholder(text: &str, what: &str) {
    let left: Vec<&str> = text
        .split('@')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(left.is_empty(), "placeholders left in {what}: {left:?}");
}

/// `prosody -F` with `config`; as root run as the prosody user, since
/// Prosody refuses to run as root (its directory must be the user's).
pub fn prosody_command(config: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "TERM", "--reuid=prosody", "--regid=prosody"]);
        c.args(["--init-groups", "prosody"]);
        c
    } else {
        command_guarded("prosody")
    };
    cmd.arg("--config").arg(config).arg("-F");
    cmd
}

/// `prosodyctl register USER HOST PASSWORD` for the Prosody of `config`.
pub fn prosodyctl_register(config: &Path, user: &str, host: &str, password: &str) {
    run_ok(
        Command::new("prosodyctl")
            .arg("--config")
            .arg(config)
            .args(["register", user, host, password]),
        Duration::from_secs(30),
    );
}

impl Prosody {
    pub fn start(opts: ProsodyOptions) -> Prosody {
        prerequisites();
        start_retrying("Prosody", || Prosody::try_start(opts))
    }

    fn try_start(opts: ProsodyOptions) -> Result<Prosody, String> {
        let ServerSetup {
            dir,
            c2s_port,
            component_port,
            component_secret,
        } = ServerSetup::new("prosody")?;
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
        if is_root() {
            // It runs as the prosody user, which must own its directory.
            chown_to("prosody", dir.path())?;
        }
        let child = spawn_into(
            &mut prosody_command(&config),
            &dir.path().join("prosody.out"),
        )?;
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
        let (log, out) = (p.log_path(), p.dir.path().join("prosody.out"));
        wait_listening(
            &mut p.child,
            &log,
            &out,
            &want,
            "Failed to open server port",
            Duration::from_secs(20),
        )
        .map_err(|e| format!("prosody {e}"))?;
        Ok(p)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// How often the relay has completed the component handshake.
    pub fn component_logins(&self) -> usize {
        self.log().matches(AUTHENTICATED).count()
    }

    /// `prosodyctl register USER localhost PASSWORD`.
    pub fn register(&self, user: &str, password: &str) {
        prosodyctl_register(&self.config, user, HOST, password);
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
    ensure_installed(
        &DONE,
        || {
            if on_path("memcached") {
                vec![]
            } else {
                vec!["memcached"]
            }
        },
        |_| "this test needs memcached: apt-get install memcached".to_string(),
    );
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

/// A process of a test and the file its log is in: stopped (SIGTERM, then
/// SIGKILL after 5 s) when dropped; on a panic, the end of its log is
/// printed. It may be started again after it stopped.
pub struct Proc {
    /// What its messages and its log on failure are headed with.
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Not started yet.
    pub fn new(name: &str, log: &Path) -> Proc {
        Proc {
            name: name.into(),
            log: log.into(),
            child: None,
        }
    }

    /// Start `cmd` with stdout and stderr appended to `out`; `log` is the
    /// file shown when the test fails (often the program's own log).
    pub fn spawn(name: &str, cmd: &mut Command, out: &Path, log: &Path) -> Proc {
        let mut p = Proc::new(name, log);
        p.start(cmd, out);
        p
    }

    /// Start `cmd` (again) as this process, output appended to `out`.
    pub fn start(&mut self, cmd: &mut Command, out: &Path) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let child = spawn_into(cmd, out).unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
    }

    /// The process, unless it was stopped or never started.
    pub fn child(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Panic (with its log) if the process has exited.
    pub fn check_running(&mut self) {
        if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
            panic!(
                "{} exited ({s}); its log:\n{}",
                self.name,
                tail(&self.log, 60)
            );
        }
    }

    /// SIGTERM; the exit status (killed after `grace`), `None` if it was
    /// not running or had to be killed.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        terminate(&mut child, grace)
    }

    /// SIGTERM; panics unless it exits 0 within `grace` (SPEC §7).
    pub fn stop_cleanly(&mut self, grace: Duration) {
        assert!(self.child.is_some(), "{} was not running", self.name);
        let status = self.stop(grace);
        assert!(
            status.is_some_and(|s| s.success()),
            "{} exited with {status:?} after SIGTERM (None: not within {grace:?}); log:\n{}",
            self.name,
            tail(&self.log, 60)
        );
    }

    /// Wait until `logins()`, how many component handshakes `server` has
    /// accepted, exceeds `before`; panics if this exits first.
    pub fn wait_accepted(
        &mut self,
        server: &str,
        logins: impl Fn() -> usize,
        before: usize,
        limit: Duration,
    ) {
        let accepted = wait_until(limit, || {
            self.check_running();
            logins() > before
        });
        assert!(
            accepted,
            "{server} did not accept {} within {limit:?}; its log:\n{}",
            self.name,
            tail(&self.log, 60)
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if thread::panicking() {
            eprintln!(
                "---- {} ({}), last 100 lines ----\n{}\n---- end of {} ----",
                self.name,
                self.log.display(),
                tail(&self.log, 100),
                self.name
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

/// How [`Relay::configure`] configures the relay.
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
    /// `[hash] secret`: instances of one domain must share it to give a
    /// user the same pseudonym; a fresh one for every `default()`.
    pub secret: String,
    /// `--log-sensitive`: the debug log names the JIDs an instance served.
    pub log_sensitive: bool,
    /// Appended to the configuration as it is (more sections).
    pub extra: String,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            store: Store::Memory,
            identity: Identity::Bare,
            memcache: None,
            keepalive: (60, "ping"),
            secret: random_secret(),
            log_sensitive: false,
            extra: String::new(),
        }
    }
}

/// The `axrelay run` binary, a component of a test's XMPP server.
pub struct Relay {
    /// First: stopped before `dir`, its log in it, is removed.
    proc: Proc,
    /// The executable (the test's `CARGO_BIN_EXE_axrelay`).
    bin: PathBuf,
    dir: TempDir,
    config: PathBuf,
    log_sensitive: bool,
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
        let mut relay = Relay::configure(
            bin,
            "relay",
            prosody.component_port,
            &prosody.component_secret,
            runtime,
            opts,
        );
        relay.spawn(prosody);
        relay
    }

    /// Write the config for a server's component port and password;
    /// [`Relay::spawn_process`] starts it.
    pub fn configure(
        bin: &Path,
        name: &str,
        component_port: u16,
        password: &str,
        runtime: &str,
        opts: RelayOptions,
    ) -> Relay {
        let store = opts.store;
        let dir = tempfile::Builder::new()
            .prefix("axrelay-e2e-relay-")
            .tempdir()
            .expect("temp dir");
        let mut conf = format!(
            "[relay]\njid = {COMPONENT}\nserver = 127.0.0.1\nport = {component_port}\n\
             password = {password}\nruntime = {runtime}\nkeepalive = {}\nkeepalive_mode = {}\n\
             control = {}\n\n\
             [hash]\nsecret = {}\ndomain = {COMPONENT}\nidentity = {}\nresource = {RELAY_RESOURCE}\n",
            opts.keepalive.0,
            opts.keepalive.1,
            dir.path().join("control").display(),
            opts.secret,
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
        conf.push('\n');
        conf.push_str(&opts.extra);
        let config = dir.path().join("axrelay.conf");
        fs::write(&config, conf).expect("write relay config");
        let log = dir.path().join("axrelay.log");
        Relay {
            bin: bin.to_owned(),
            dir,
            config,
            log_sensitive: opts.log_sensitive,
            proc: Proc::new(name, &log),
            runtime: runtime.to_string(),
            store,
        }
    }

    /// The control socket's path (`[relay] control`).
    pub fn control_path(&self) -> PathBuf {
        self.dir.path().join("control")
    }

    /// Run `axrelay ARGS -c CONFIG` (an operator's command beside the
    /// running relay) to its end.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .output()
            .expect("run axrelay")
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("pseudonyms.db")
    }

    fn spawn(&mut self, prosody: &Prosody) {
        let before = prosody.component_logins();
        self.spawn_process();
        self.wait_connected(prosody, before, Duration::from_secs(30));
    }

    /// Start the process without waiting for the server to accept it; the
    /// log is appended to across restarts.
    pub fn spawn_process(&mut self) {
        let mut cmd = command_guarded(&self.bin);
        cmd.arg("run").arg("-c").arg(&self.config).arg("-d");
        if self.log_sensitive {
            cmd.arg("--log-sensitive");
        }
        let log = self.proc.log.clone();
        self.proc.start(&mut cmd, &log);
    }

    /// Panic with the log if the process has exited.
    pub fn check_running(&mut self) {
        self.proc.check_running();
    }

    /// Wait until Prosody has accepted a component more than `before` times.
    pub fn wait_connected(&mut self, prosody: &Prosody, before: usize, limit: Duration) {
        self.proc
            .wait_accepted("Prosody", || prosody.component_logins(), before, limit);
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
            log_sensitive: self.log_sensitive,
            proc: Proc::new(&format!("{}'s standby", self.proc.name), &log),
            runtime: self.runtime.clone(),
            store: self.store,
        };
        let refused = || prosody.log().matches(REFUSED_SECOND).count();
        let before = refused();
        standby.spawn_process();
        assert!(
            wait_until(Duration::from_secs(15), || refused() > before),
            "the second instance did not try to connect within 15 s; its log:\n{}",
            tail(&standby.proc.log, 60)
        );
        standby
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// SIGTERM; the exit status (the relay is killed after 10 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.proc.child()?;
        let status = self.proc.stop(Duration::from_secs(10));
        assert!(
            status.is_some(),
            "{} did not exit within 10 s of SIGTERM; log:\n{}",
            self.proc.name,
            tail(&self.proc.log, 60)
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
        self.proc.stop_cleanly(Duration::from_secs(10));
    }

    pub fn log(&self) -> String {
        read_lossy(&self.proc.log)
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
            children: Elem::children_of(j),
        }
    }

    fn children_of(j: &Json) -> Vec<Elem> {
        j.get("children")
            .arr()
            .iter()
            .map(Elem::from_json)
            .collect()
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
            children: Elem::children_of(j),
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
    assert_pseudonym_at(p, COMPONENT);
}

/// Check `p` is a pseudonym at `relay`, the relay's domain.
pub fn assert_pseudonym_at(p: &str, relay: &str) {
    let (local, domain) = p
        .split_once('@')
        .unwrap_or_else(|| panic!("not a JID: {p:?}"));
    assert_eq!(domain, relay, "pseudonym {p:?} not at the relay's domain");
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

/// How long a client may take to connect and log in, and how long its
/// process may live at all (it quits then, should the test forget it).
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    pub login: Duration,
    pub lifetime: Duration,
}

impl ClientLimits {
    /// For a server on this machine.
    pub const LOCAL: ClientLimits = ClientLimits {
        login: Duration::from_secs(15),
        lifetime: Duration::from_secs(300),
    };
}

/// One logged-in slixmpp client (tests/e2e/client.py serve).
pub struct Client {
    pub user: String,
    /// The users' domain of its server.
    pub domain: String,
    pub resource: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Client {
    /// Log `user` in with `resource`; panics if that fails within 20 s.
    pub fn login(prosody: &Prosody, user: &str, resource: &str) -> Client {
        Client::login_at(prosody.c2s_port, user, resource)
    }

    /// Log `user@localhost/resource` in on the client port of any server.
    pub fn login_at(c2s_port: u16, user: &str, resource: &str) -> Client {
        Client::login_to(c2s_port, HOST, user, resource, ClientLimits::LOCAL)
    }

    /// Log `user@domain/resource` in on 127.0.0.1:`c2s_port`, with the
    /// password [`password_of`] `user`.
    pub fn login_to(
        c2s_port: u16,
        domain: &str,
        user: &str,
        resource: &str,
        limits: ClientLimits,
    ) -> Client {
        let jid = format!("{user}@{domain}/{resource}");
        let secs = |d: Duration| d.as_secs().to_string();
        let mut child = command_guarded(python())
            .arg(repo().join("tests/e2e/client.py"))
            .args(["serve", "--jid", &jid, "--password", &password_of(user)])
            .args([
                "--port",
                &c2s_port.to_string(),
                "--timeout",
                &secs(limits.login),
            ])
            .args(["--max-lifetime", &secs(limits.lifetime)])
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
            domain: domain.into(),
            resource: resource.into(),
            child,
            stdin,
            lines,
            stderr,
        };
        // Past the login timeout, for client.py to say why it failed.
        let ready = c.next_line(limits.login + Duration::from_secs(10), "login");
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
        Client::login(prosody, user, &new_resource())
    }

    pub fn bare(&self) -> String {
        format!("{}@{}", self.user, self.domain)
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
        self.expect_within(n, WAIT, from)
    }

    /// Exactly `n` messages within `limit`, for more than [`WAIT`] allows.
    pub fn expect_within(&mut self, n: usize, limit: Duration, from: Option<&str>) -> Vec<Msg> {
        let got = self.wait(n, limit, from);
        if got.len() != n {
            let raw = self.raw_tail(4000);
            panic!(
                "{} expected {n} message(s){} within {limit:?}, got {got:#?}\n\
                 last raw XML received:\n{raw}",
                self.user,
                from.map(|f| format!(" from {f}")).unwrap_or_default(),
            );
        }
        got
    }

    /// One message within [`WAIT`].
    pub fn expect_one(&mut self, from: Option<&str>) -> Msg {
        self.expect_one_within(WAIT, from)
    }

    /// One message within `limit`.
    pub fn expect_one_within(&mut self, limit: Duration, from: Option<&str>) -> Msg {
        self.expect_within(1, limit, from).pop().unwrap()
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
        if thread::panicking() {
            eprintln!(
                "---- client {}@{}/{} stderr ----\n{}",
                self.user,
                self.domain,
                self.resource,
                self.stderr()
            );
        }
    }
}

/// Check that nothing `reader` received names `other`: neither its
/// localpart (unique per test), nor its bare JID, nor its resource, nor
/// any of `also` (resources it had before, its server).
pub fn assert_no_trace_of(other: &Client, also: &[String], reader: &mut Client) {
    let raw = reader.raw_log();
    assert!(!raw.is_empty(), "{} received nothing at all", reader.user);
    let mut needles = vec![other.bare(), other.user.clone(), other.resource.clone()];
    needles.extend(also.iter().cloned());
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

/// Check that `m`, received by `to`, is a chat message relayed from
/// `from_pseudonym` with `body` unchanged.
pub fn check_relayed(m: &Msg, to: &Client, from_pseudonym: &str, body: &str) {
    assert_eq!(
        m.error, None,
        "{} got an error instead of {body:?}: {m:#?}",
        to.user
    );
    assert_eq!(
        m.from,
        format!("{from_pseudonym}/{RELAY_RESOURCE}"),
        "{m:#?}"
    );
    assert_eq!(bare(&m.to), to.bare(), "{m:#?}");
    assert_eq!(m.kind, "chat", "{m:#?}");
    assert!(
        m.body.as_deref() == Some(body),
        "body changed on the way: {m:#?}"
    );
}

/// `to` receives exactly one chat message, from `from_pseudonym`/a, with
/// `body`; returns it.
pub fn expect_relayed(to: &mut Client, from_pseudonym: &str, body: &str) -> Msg {
    let m = to.expect_one(None);
    check_relayed(&m, to, from_pseudonym, body);
    m
}

/// A well-formed pseudonym at the relay's domain that nobody has.
pub fn unknown_pseudonym() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let hex = random_hex(45);
    let local: String = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let v = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
            ALPHABET[(v % 32) as usize] as char
        })
        .collect();
    let p = format!("{local}@{COMPONENT}");
    assert_pseudonym(&p);
    p
}

/// SPEC §5: a message to a pseudonym nobody has comes back from that
/// address as item-not-found, and `bystander` receives nothing.
pub fn check_unknown_pseudonym(sender: &mut Client, bystander: &mut Client) {
    let nobody = unknown_pseudonym();
    sender.send(&nobody, "anyone there?");
    let m = sender.expect_one(None);
    assert_eq!(m.kind, "error", "{m:#?}");
    assert_eq!(m.sender_bare(), nobody, "{m:#?}");
    let (_, condition) = m.error.clone().expect("an <error/> child");
    assert_eq!(condition, "item-not-found", "{m:#?}");
    bystander.expect_none(Duration::from_millis(500));
}
