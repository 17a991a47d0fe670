//! What the generator measures: the relay in this process on either
//! runtime, the `axrelay` binary as a child process, or a trivial echo
//! component (the rig's own ceiling).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use axrelay_benches::wire;
use axrelay_host::{Exit, Options};
use axrelay_proto::{Config, Rate, RateLimits, Relay, Store};

/// Which component answers the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The relay on the smol runtime
    Smol,
    /// The relay on the blocking runtime
    Blocking,
    /// A trivial component that writes back what it reads (the rig's own ceiling)
    Echo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Smol => "smol",
            Kind::Blocking => "blocking",
            Kind::Echo => "echo",
        }
    }
}

/// Secrets and settings shared by every start of the relay in one run, so
/// that a restarted relay computes the same pseudonyms.
#[derive(Clone)]
pub struct Setup {
    pub kind: Kind,
    pub port: u16,
    pub password: String,
    pub secret: String,
    pub id_key: [u8; 32],
    /// In-process store (memory or memcached).
    pub store: Option<Arc<dyn Store>>,
    /// Run this `axrelay` binary instead of the in-process relay.
    pub exec: Option<PathBuf>,
    /// memcached address for the child's configuration.
    pub memcached: Option<String>,
    /// Where the child's configuration file goes.
    pub config_path: PathBuf,
    /// In process: override the relay's id-map capacity (for experiments).
    pub id_map_capacity: Option<usize>,
}

/// A started component.
pub enum Running {
    InProc {
        stop: Box<dyn Fn() + Send>,
        done: mpsc::Receiver<Exit>,
    },
    Child(ChildGuard),
    Echo(mpsc::Receiver<Result<(), String>>),
}

/// The relay process; killed if the run ends before it stopped.
pub struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Running {
    pub fn start(setup: &Setup) -> Result<Running, String> {
        if setup.kind == Kind::Echo {
            return start_echo(setup);
        }
        if let Some(bin) = &setup.exec {
            return start_child(setup, bin);
        }
        let store = setup
            .store
            .clone()
            .ok_or("an in-process relay needs a store")?;
        let mut cfg = Config::new(wire::COMPONENT, &setup.password, setup.secret.as_bytes());
        cfg.id_key = setup.id_key;
        cfg.wall_clock = Some(axrelay_host::wall_clock());
        cfg.rates = generous_rates();
        if let Some(c) = setup.id_map_capacity {
            cfg.id_map_capacity = c;
        }
        let relay = Relay::new(cfg).map_err(|e| format!("relay configuration: {e}"))?;
        let mut opts = Options::new("127.0.0.1", setup.port);
        opts.stats_interval = Duration::from_secs(3600);
        let (tx, done) = mpsc::channel();
        let stop: Box<dyn Fn() + Send> = match setup.kind {
            Kind::Smol => {
                let (handle, stopper) = axrelay_runtime_smol::stop_handle();
                spawn("relay-smol", move || {
                    let _ = tx.send(axrelay_runtime_smol::run(relay, opts, store, stopper));
                })?;
                Box::new(move || handle.stop())
            }
            Kind::Blocking => {
                let (handle, stopper) = axrelay_runtime_blocking::stop_handle();
                spawn("relay-blocking", move || {
                    let _ = tx.send(axrelay_runtime_blocking::run(relay, opts, store, stopper));
                })?;
                Box::new(move || handle.stop())
            }
            Kind::Echo => unreachable!("handled above"),
        };
        Ok(Running::InProc { stop, done })
    }

    /// The process whose memory is the relay's (this one when in-process).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Running::Child(ChildGuard(Some(c))) => Some(c.id()),
            _ => None,
        }
    }

    /// Ask for a graceful stop (the relay then closes its stream); an echo
    /// component stops when the generator closes the connection.
    pub fn request_stop(&mut self) -> Result<(), String> {
        match self {
            Running::InProc { stop, .. } => {
                stop();
                Ok(())
            }
            Running::Child(ChildGuard(None)) => Ok(()),
            Running::Child(ChildGuard(Some(c))) => {
                let st = Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status()
                    .map_err(|e| format!("kill: {e}"))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("kill -TERM {} failed", c.id()))
                }
            }
            Running::Echo(_) => Ok(()),
        }
    }

    /// Wait for the end, at most `timeout`; describes how it ended.
    pub fn wait(&mut self, timeout: Duration) -> Result<String, String> {
        match self {
            Running::InProc { done, .. } => match done.recv_timeout(timeout) {
                Ok(Exit::Stopped) => Ok("stopped".into()),
                Ok(Exit::Refused(r)) => Err(format!("the relay refused: {r}")),
                Err(_) => Err("the in-process relay did not stop in time".into()),
            },
            Running::Echo(done) => match done.recv_timeout(timeout) {
                Ok(Ok(())) => Ok("stopped".into()),
                Ok(Err(e)) => Err(format!("echo component: {e}")),
                Err(_) => Err("the echo component did not stop in time".into()),
            },
            Running::Child(guard) => {
                let Some(c) = guard.0.as_mut() else {
                    return Ok("stopped".into());
                };
                let deadline = Instant::now() + timeout;
                loop {
                    match c.try_wait() {
                        Ok(Some(st)) => {
                            guard.0 = None;
                            return if st.success() {
                                Ok("stopped".into())
                            } else {
                                Err(format!("the relay process ended: {st}"))
                            };
                        }
                        Ok(None) if Instant::now() < deadline => {
                            thread::sleep(Duration::from_millis(20))
                        }
                        Ok(None) => {
                            let _ = c.kill();
                            let _ = c.wait();
                            guard.0 = None;
                            return Err("the relay process did not stop in time; killed".into());
                        }
                        Err(e) => return Err(format!("waiting for the relay process: {e}")),
                    }
                }
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| format!("cannot start a thread: {e}"))
}

/// Rate limits the generator's few users, each sending thousands of
/// messages a second, never reach, so that the limits' cost is measured
/// but nothing is refused.
const LIMITS: &str = "[limits]\nsender_rate = 1000000\nsender_burst = 1000000\n\
                      whoami_rate = 1000000\nwhoami_burst = 1000000\n";

/// [`LIMITS`] for the relay in this process.
pub fn generous_rates() -> RateLimits {
    let rate = Rate {
        per_second: 1e6,
        burst: 1_000_000,
    };
    RateLimits {
        messages: rate,
        whoami: rate,
        global: Rate::OFF,
    }
}

fn start_child(setup: &Setup, bin: &PathBuf) -> Result<Running, String> {
    let mut conf = format!(
        "[relay]\njid = {c}\nserver = 127.0.0.1\nport = {p}\npassword = {pw}\nruntime = {rt}\n\n\
         [hash]\nsecret = {s}\ndomain = {c}\n\n{LIMITS}",
        c = wire::COMPONENT,
        p = setup.port,
        pw = setup.password,
        rt = setup.kind.name(),
        s = setup.secret,
    );
    if let Some(m) = &setup.memcached {
        conf.push_str(&format!("\n[memcache]\nservers = {m}\n"));
    }
    std::fs::write(&setup.config_path, conf)
        .map_err(|e| format!("{}: {e}", setup.config_path.display()))?;
    let child = Command::new(bin)
        .arg("run")
        .arg("-q")
        .arg("-c")
        .arg(&setup.config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    Ok(Running::Child(ChildGuard(Some(child))))
}

/// A component that does the handshake and then writes back every byte it
/// reads, with the relay's read size.
fn start_echo(setup: &Setup) -> Result<Running, String> {
    let (tx, rx) = mpsc::channel();
    let port = setup.port;
    let password = setup.password.clone();
    spawn("load-echo", move || {
        let _ = tx.send(echo(port, &password));
    })?;
    Ok(Running::Echo(rx))
}

fn echo(port: u16, password: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}' to='{}'>",
            wire::COMPONENT_NS,
            wire::STREAMS_NS,
            wire::COMPONENT
        )
        .as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    // Read up to the server's header and take its id.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let id = loop {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the header".into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(at) = text.find("<stream:stream") {
            if let Some(end) = text[at..].find('>') {
                let head = &text[at..at + end];
                let id = head
                    .split_once(" id='")
                    .and_then(|(_, r)| r.split_once('\''))
                    .map(|(id, _)| id.to_owned())
                    .ok_or("no stream id")?;
                break id;
            }
        }
    };
    s.write_all(
        format!(
            "<handshake>{}</handshake>",
            wire::handshake_digest(&id, password)
        )
        .as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut seen = Vec::new();
    const OK: &[u8] = b"<handshake/>";
    let after = loop {
        if let Some(at) = axrelay_benches::scan::subslice(&seen, OK) {
            break at + OK.len();
        }
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the handshake answer".into());
        }
        seen.extend_from_slice(&buf[..n]);
    };
    s.write_all(&seen[after..])
        .map_err(|e| format!("write: {e}"))?;
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
    }
}
