//! The `axrelay` binary as a child process: its configuration, its CPU
//! time (to tell waiting from spinning), SIGTERM and its log.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The component domain of every relay here.
pub const DOMAIN: &str = "relay.example.org";
/// The component secret the fake server checks.
pub const PASSWORD: &str = "fault-suite-component-password";
/// `[hash] secret`: its raw UTF-8 bytes key the pseudonyms.
pub const SECRET: &str = "fault-suite-pseudonym-secret-0123456789";
/// `[hash] resource`.
pub const RESOURCE: &str = "a";

/// One `axrelay run -d --log-file` process with its own temp dir.
pub struct RelayProcess {
    dir: TempDir,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pid: u32,
    /// systemd's notification socket, if the relay is told of one.
    notify: Option<PathBuf>,
}

/// Processes started here get SIGTERM when the test thread that started
/// them ends, so an interrupted run leaves nothing behind.
fn guarded(program: &str) -> Command {
    if Path::new("/usr/bin/setpriv").exists() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--pdeathsig", "TERM", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Send signal `name` (`TERM`, `STOP`, …) to `pid`.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Clock ticks per second, the unit of utime and stime in /proc/PID/stat.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// CPU time (user + system, all threads) `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name may hold spaces; fields after it are plain.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let ticks = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("unexpected /proc/{pid}/stat: {stat}"))
    };
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 1000 / clock_ticks())
}

/// CPU time and wall time of one observed period.
pub struct CpuWatch {
    pid: u32,
    cpu: Duration,
    wall: Instant,
}

impl CpuWatch {
    pub fn start(pid: u32) -> CpuWatch {
        CpuWatch {
            pid,
            cpu: cpu_time(pid),
            wall: Instant::now(),
        }
    }

    /// Wall time since `start`.
    pub fn elapsed(&self) -> Duration {
        self.wall.elapsed()
    }

    /// Panics if the process used more than a tenth of the wall time since
    /// `start`: waiting (for a server, a store, a backoff) must sleep.
    pub fn assert_idle(&self, what: &str) {
        let wall = self.wall.elapsed();
        let used = cpu_time(self.pid).saturating_sub(self.cpu);
        eprintln!("{what}: {used:?} CPU in {wall:?}");
        assert!(
            used * 10 < wall,
            "the relay used {used:?} of CPU in {wall:?} while {what}: it spins"
        );
    }
}

impl RelayProcess {
    /// Start `axrelay run` for the component port `port` with `[relay]
    /// runtime = runtime`; `extra` is appended to the configuration.
    pub fn start(runtime: &str, port: u16, extra: &str) -> RelayProcess {
        RelayProcess::start_notifying(runtime, port, extra, None)
    }

    /// [`RelayProcess::start`] with `NOTIFY_SOCKET` set to `notify`, as
    /// systemd does for a `Type=notify` unit.
    pub fn start_notifying(
        runtime: &str,
        port: u16,
        extra: &str,
        notify: Option<PathBuf>,
    ) -> RelayProcess {
        let dir = tempfile::Builder::new()
            .prefix("axrelay-faults-")
            .tempdir()
            .expect("temp dir");
        let conf = format!(
            "[relay]\njid = {DOMAIN}\nserver = 127.0.0.1\nport = {port}\npassword = {PASSWORD}\n\
             runtime = {runtime}\nconnect_timeout = 2\nhandshake_timeout = 5\n\n\
             [hash]\nsecret = {SECRET}\ndomain = {DOMAIN}\nresource = {RESOURCE}\n{extra}"
        );
        let config = dir.path().join("axrelay.conf");
        fs::write(&config, conf).expect("write the relay configuration");
        let log = dir.path().join("axrelay.log");
        let mut relay = RelayProcess {
            dir,
            config,
            log,
            child: None,
            pid: 0,
            notify,
        };
        relay.spawn();
        relay
    }

    fn spawn(&mut self) {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr"))
            .expect("stderr file");
        let mut command = guarded(env!("CARGO_BIN_EXE_axrelay"));
        if let Some(socket) = &self.notify {
            command.env("NOTIFY_SOCKET", socket);
        }
        let child = command
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .arg("-d")
            .arg("--log-file")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("stderr file"))
            .stderr(out)
            .spawn()
            .expect("start axrelay");
        self.pid = child.id();
        self.child = Some(child);
    }

    /// Start the binary again with the same configuration (a restart of
    /// the service), after it has exited.
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "the relay is still running");
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Panics if the process has exited.
    pub fn assert_running(&mut self, when: &str) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("axrelay exited ({status}) {when}");
        }
    }

    /// Send SIGTERM (the graceful stop of SPEC §2).
    pub fn terminate(&self) {
        signal(self.pid, "TERM");
    }

    /// Wait for the exit status; SIGKILL after `within`.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the relay was started");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("axrelay did not exit within {within:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `axrelay hash -c CONFIG ARGS…` with this relay's configuration (the
    /// same store); its standard output. With `--lookup`, status 4 (a
    /// pseudonym not found, printed as `None`) is an answer too.
    pub fn hash(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_axrelay"))
            .arg("hash")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run axrelay hash");
        let not_found = args.contains(&"--lookup") && out.status.code() == Some(4);
        assert!(
            out.status.success() || not_found,
            "axrelay hash {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The log file so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for RelayProcess {
    /// A failed test must not leave a relay reconnecting in the background;
    /// its log and stderr explain the failure.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            let log = self.log();
            let stderr = fs::read(self.dir.path().join("stderr")).unwrap_or_default();
            // Log lines are on stderr too; show what only stderr has.
            let only_stderr: Vec<String> = String::from_utf8_lossy(&stderr)
                .lines()
                .filter(|l| !log.contains(l))
                .map(str::to_owned)
                .collect();
            eprintln!(
                "---- axrelay (pid {}) log ----\n{log}\n---- stderr ----\n{}",
                self.pid,
                only_stderr.join("\n")
            );
        }
    }
}
