//! Processes of the I2P end-to-end test: bounded runs and waits, and a guard
//! that stops a process when it is dropped (also when the test panics).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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

/// The Python that sees Debian's python3-slixmpp; `AXRELAY_E2E_PYTHON`
/// overrides.
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

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `program` with `args`, made to receive SIGTERM when the thread that
/// starts it ends (or the test process dies).
pub fn guarded(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--pdeathsig", "TERM", program]);
    c
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

fn text(b: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&b.lock().unwrap()).into_owned()
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
    thread::sleep(Duration::from_millis(20));
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

/// SIGTERM, then SIGKILL after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    wait_bounded(child, grace)
}

pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_lossy(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Poll `done` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A running process with its log file; stopped (SIGTERM, then SIGKILL)
/// when dropped. On a panic, the end of its log is printed.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Start `cmd` with stdout and stderr appended to `out`; `log` is the
    /// file shown when the test fails (often the program's own log).
    pub fn spawn(name: &str, mut cmd: Command, out: &Path, log: &Path) -> Proc {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.into(),
            log: log.into(),
            child: Some(child),
        }
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

    /// SIGTERM; the exit status (killed after `grace`).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        terminate(&mut child, grace)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if thread::panicking() {
            eprintln!(
                "---- {} ({}), last 80 lines ----\n{}\n---- end of {} ----",
                self.name,
                self.log.display(),
                tail(&self.log, 80),
                self.name
            );
        }
    }
}
