//! One logged-in slixmpp client (tests/e2e/client.py serve) on a given
//! client port, driven by JSON lines.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::procs::{collect, wait_bounded};
use axrelay_test_support::e2e::{assert_pseudonym, bare, password_of, python, COMPONENT, HOST};
use axrelay_test_support::json::{object, quote, Json};

/// How long a client waits for a stanza that should arrive.
pub const WAIT: Duration = Duration::from_secs(10);

/// A message a client received.
#[derive(Clone, Debug)]
pub struct Msg {
    pub from: String,
    pub to: String,
    pub kind: String,
    pub id: String,
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
            id: s("id"),
            body: j.get("body").str().map(str::to_string),
            error: (!e.is_null()).then(|| {
                (
                    e.get("type").str().unwrap_or("").into(),
                    e.get("condition").str().unwrap_or("").into(),
                )
            }),
        }
    }

    pub fn sender_bare(&self) -> &str {
        bare(&self.from)
    }
}

pub struct Client {
    pub user: String,
    pub resource: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Client {
    /// Log `user@localhost/resource` in on `c2s_port`; panics if that fails
    /// within 20 s.
    pub fn login(c2s_port: u16, user: &str, resource: &str) -> Client {
        let jid = format!("{user}@{HOST}/{resource}");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/client.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["serve", "--jid", &jid, "--password", &password_of(user)])
            .args(["--port", &c2s_port.to_string(), "--timeout", "15"])
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

    pub fn bare(&self) -> String {
        format!("{}@{HOST}", self.user)
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
        let m = [
            ("cmd", quote("send")),
            ("to", quote(to)),
            ("type", quote("chat")),
            ("body", quote(body)),
        ];
        let answer = self.cmd(object(&m), WAIT);
        answer.get("id").str().unwrap_or("").to_string()
    }

    /// Up to `n` messages (optionally only from the bare JID `from`)
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

    /// Exactly `n` messages within `limit`; panics with what arrived if not.
    pub fn expect(&mut self, n: usize, limit: Duration, from: Option<&str>) -> Vec<Msg> {
        let got = self.wait(n, limit, from);
        assert_eq!(
            got.len(),
            n,
            "{} expected {n} message(s){} within {limit:?}, got {got:#?}",
            self.user,
            from.map(|f| format!(" from {f}")).unwrap_or_default(),
        );
        got
    }

    /// One message within [`WAIT`].
    pub fn expect_one(&mut self) -> Msg {
        self.expect(1, WAIT, None).pop().unwrap()
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

    /// Log out and wait for the process to end.
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

/// Check that nothing `reader` received names any of `others` (their
/// localparts, bare JIDs and resources).
pub fn assert_no_trace_of(others: &[(&str, &str)], reader: &mut Client) {
    let raw = reader.raw_log();
    assert!(!raw.is_empty(), "{} received nothing at all", reader.user);
    for (user, resource) in others {
        for needle in [
            format!("{user}@{HOST}"),
            user.to_string(),
            resource.to_string(),
        ] {
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
                    "{} received {needle:?}, which identifies {user}:\n…{}…",
                    reader.user,
                    &raw[start..end]
                );
            }
        }
    }
}
