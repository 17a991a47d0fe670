//! Prosody servers on .b32.i2p names, slixmpp clients (tests/e2e/client.py)
//! and `axrelay run`, inside the test's network namespace.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::net::{assert_no_placeholder, COMPONENT_PORT};
use crate::procs::{collect, python, read_lossy, repo, run_ok, tail, wait_bounded, Proc};
use axrelay_test_support::json::{object, quote, Json};

pub const AUTHENTICATED: &str = "External component successfully authenticated";
/// `[hash] resource`: the resource relayed stanzas come from.
pub const RELAY_RESOURCE: &str = "a";

/// scripts/i2p/prosody.cfg.lua.in filled in; `component` is the relay's
/// domain and secret on the server that hosts it (which alone opens the
/// component port).
pub fn render_prosody(
    dir: &Path,
    domain: &str,
    c2s: u16,
    s2s: u16,
    socks: u16,
    component: Option<(&str, &str)>,
    log_level: &str,
) -> String {
    let read =
        |f: &str| fs::read_to_string(repo().join(f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
    let section = match component {
        Some((name, secret)) => read("scripts/i2p/component.cfg.lua.in")
            .replace("@COMPONENT@", name)
            .replace("@COMPONENT_SECRET@", secret),
        None => String::new(),
    };
    let text = read("scripts/i2p/prosody.cfg.lua.in")
        .replace("@DIR@", dir.to_str().expect("utf-8 path"))
        .replace("@DOMAIN@", domain)
        .replace("@C2S_PORT@", &c2s.to_string())
        .replace("@S2S_PORT@", &s2s.to_string())
        .replace(
            "@COMPONENT_PORT@",
            &component.map_or(String::new(), |_| COMPONENT_PORT.to_string()),
        )
        .replace("@SOCKS_PORT@", &socks.to_string())
        .replace("@LOG_LEVEL@", log_level)
        .replace("\n@COMPONENT_SECTION@\n", &format!("\n{section}"));
    assert_no_placeholder(&text, "scripts/i2p/prosody.cfg.lua.in");
    text
}

pub struct Prosody {
    pub name: String,
    pub domain: String,
    dir: PathBuf,
    config: PathBuf,
    proc: Proc,
}

impl Prosody {
    /// Start Prosody `name` in `dir` (created; owned by the prosody user).
    pub fn start(
        dir: &Path,
        name: &str,
        domain: &str,
        (c2s, s2s, socks): (u16, u16, u16),
        component: Option<(&str, &str)>,
    ) -> Prosody {
        fs::create_dir_all(dir.join("data")).expect("prosody dir");
        let config = dir.join("prosody.cfg.lua");
        fs::write(
            &config,
            render_prosody(dir, domain, c2s, s2s, socks, component, "debug"),
        )
        .expect("write prosody.cfg.lua");
        run_ok(
            Command::new("chown")
                .args(["-R", "prosody:prosody"])
                .arg(dir),
            Duration::from_secs(10),
        );
        // Prosody refuses to run as root.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--reuid=prosody", "--regid=prosody"])
            .args(["--init-groups", "prosody", "--config"])
            .arg(&config)
            .arg("-F");
        let log = dir.join("prosody.log");
        let proc = Proc::spawn(
            &format!("Prosody {name}"),
            cmd,
            &dir.join("prosody.out"),
            &log,
        );
        let mut p = Prosody {
            name: name.into(),
            domain: domain.into(),
            dir: dir.into(),
            config,
            proc,
        };
        let mut want = vec![
            format!("Activated service 'c2s' on [127.0.0.1]:{c2s}"),
            format!("Activated service 's2s' on [127.0.0.1]:{s2s}"),
        ];
        if component.is_some() {
            want.push(format!(
                "Activated service 'component' on [127.0.0.1]:{COMPONENT_PORT}"
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !want.iter().all(|w| p.log().contains(w.as_str())) {
            p.proc.check_running();
            assert!(
                !p.log().contains("Failed to open server port"),
                "Prosody {name} could not listen:\n{}",
                tail(&log, 30)
            );
            assert!(
                Instant::now() < deadline,
                "Prosody {name} not listening after 30 s:\n{}\n{}",
                tail(&dir.join("prosody.out"), 30),
                tail(&log, 30)
            );
            thread::sleep(Duration::from_millis(50));
        }
        p
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.join("prosody.log"))
    }

    pub fn component_logins(&self) -> usize {
        self.log().matches(AUTHENTICATED).count()
    }

    pub fn register(&self, user: &str, password: &str) {
        run_ok(
            Command::new("prosodyctl")
                .arg("--config")
                .arg(&self.config)
                .args(["register", user, &self.domain, password]),
            Duration::from_secs(30),
        );
    }

    /// Whether mod_offline holds messages for `user`.
    pub fn has_offline_messages(&self, user: &str) -> bool {
        let host = self.domain.replace('.', "%2e");
        fs::metadata(
            self.dir
                .join("data")
                .join(host)
                .join("offline")
                .join(format!("{user}.list")),
        )
        .is_ok_and(|m| m.len() > 0)
    }
}

/// A message a client received.
#[derive(Clone, Debug)]
pub struct Msg {
    pub from: String,
    pub to: String,
    pub kind: String,
    pub body: Option<String>,
    /// (type, defined condition) of a message of type error.
    pub error: Option<(String, String)>,
}

impl Msg {
    fn from_json(j: &Json) -> Msg {
        let s = |k: &str| j.get(k).str().unwrap_or("").to_string();
        let e = j.get("error");
        Msg {
            from: s("from"),
            to: s("to"),
            kind: s("type"),
            body: j.get("body").str().map(str::to_string),
            error: (!e.is_null()).then(|| {
                (
                    e.get("type").str().unwrap_or("").into(),
                    e.get("condition").str().unwrap_or("").into(),
                )
            }),
        }
    }
}

pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// One logged-in slixmpp client, driven by JSON lines.
pub struct Client {
    pub jid: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Client {
    /// Log `jid` (with resource) in on 127.0.0.1:`port`.
    pub fn login(port: u16, jid: &str, password: &str) -> Client {
        let mut child = crate::procs::guarded(&python())
            .arg(repo().join("tests/e2e/client.py"))
            .args(["serve", "--jid", jid, "--password", password])
            .args(["--port", &port.to_string(), "--timeout", "20"])
            .args(["--max-lifetime", "900"])
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
            jid: jid.into(),
            child,
            stdin,
            lines,
            stderr,
        };
        let ready = c.next_line(Duration::from_secs(30), "login");
        assert_eq!(
            ready.get("event").str(),
            Some("ready"),
            "{jid} could not log in: {ready:?}\nstderr: {}",
            c.stderr()
        );
        c
    }

    pub fn bare(&self) -> &str {
        bare(&self.jid)
    }

    pub fn resource(&self) -> &str {
        self.jid.split_once('/').map(|(_, r)| r).unwrap_or("")
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn next_line(&mut self, limit: Duration, what: &str) -> Json {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Json::parse(&line)
                .unwrap_or_else(|e| panic!("client {}: bad JSON ({e}): {line}", self.jid)),
            Err(_) => panic!(
                "client {}: no answer to {what} within {limit:?}; stderr:\n{}",
                self.jid,
                self.stderr()
            ),
        }
    }

    fn cmd(&mut self, command: String, timeout: Duration) -> Json {
        writeln!(self.stdin, "{command}")
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| panic!("client {}: {e}; stderr:\n{}", self.jid, self.stderr()));
        let answer = self.next_line(timeout + Duration::from_secs(15), &command);
        assert_eq!(
            answer.get("ok").bool(),
            Some(true),
            "client {}: {command} failed: {answer:?}",
            self.jid
        );
        answer
    }

    /// A chat message with a body.
    pub fn send(&mut self, to: &str, body: &str) {
        let m = object(&[
            ("cmd", quote("send")),
            ("to", quote(to)),
            ("type", quote("chat")),
            ("body", quote(body)),
        ]);
        self.cmd(m, Duration::from_secs(10));
    }

    /// Up to `n` messages (only from the bare JID `from`, if given)
    /// arriving within `limit`.
    pub fn wait(&mut self, n: usize, limit: Duration, from: Option<&str>) -> Vec<Msg> {
        let mut m = vec![
            ("cmd", quote("wait")),
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

    /// One message from `from` within `limit`; panics if none arrives.
    pub fn expect_from(&mut self, from: &str, limit: Duration) -> Msg {
        match self.wait(1, limit, Some(from)).pop() {
            Some(m) => m,
            None => panic!("{} received nothing from {from} within {limit:?}", self.jid),
        }
    }

    /// Every byte this client received from its server so far.
    pub fn raw_log(&mut self) -> String {
        let answer = self.cmd(
            object(&[("cmd", quote("raw_log"))]),
            Duration::from_secs(10),
        );
        answer.get("xml").str().unwrap_or("").to_string()
    }

    /// Log out and wait for the process to end.
    pub fn quit(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.cmd(object(&[("cmd", quote("quit"))]), Duration::from_secs(10));
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
            eprintln!("---- client {} stderr ----\n{}", self.jid, self.stderr());
        }
    }
}

/// `axrelay run` with `conf`; returns once Prosody has accepted it.
pub struct Relay {
    pub log: PathBuf,
    proc: Proc,
}

impl Relay {
    pub fn start(name: &str, dir: &Path, conf: &str, prosody: &Prosody, limit: Duration) -> Relay {
        fs::create_dir_all(dir).expect("relay dir");
        let config = dir.join(format!("{name}.conf"));
        fs::write(&config, conf).expect("write relay config");
        let log = dir.join(format!("{name}.log"));
        let before = prosody.component_logins();
        let mut cmd = crate::procs::guarded(env!("CARGO_BIN_EXE_axrelay"));
        cmd.arg("run").arg("-c").arg(&config);
        let mut relay = Relay {
            proc: Proc::spawn(name, cmd, &log, &log),
            log,
        };
        let deadline = Instant::now() + limit;
        while prosody.component_logins() <= before {
            relay.proc.check_running();
            assert!(
                Instant::now() < deadline,
                "Prosody {} did not accept {name} within {limit:?}; its log:\n{}",
                prosody.name,
                tail(&relay.log, 40)
            );
            thread::sleep(Duration::from_millis(50));
        }
        relay
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    pub fn check_running(&mut self) {
        self.proc.check_running();
    }

    /// SIGTERM; panics unless it exits 0 within 10 s.
    pub fn stop_cleanly(&mut self) {
        let status = self.proc.stop(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "axrelay exited with {status:?} after SIGTERM; log:\n{}",
            tail(&self.log, 40)
        );
    }
}
