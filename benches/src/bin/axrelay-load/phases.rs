//! The two phases of a run: learning pseudonyms with `/whoami`, and the
//! message load with its checks.

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use axrelay_benches::hist::Histogram;
use axrelay_benches::proc_status;
use axrelay_benches::scan;
use axrelay_benches::wire;

use crate::conn::{Conn, Fill, Next};

/// `/whoami` requests written at once while learning.
const LEARN_BATCH: usize = 500;
/// Bytes the sender collects before one write.
const SEND_CHUNK: usize = 64 * 1024;
/// With everything sent, how long the receiver waits for progress before
/// it declares the rest lost.
const DRAIN_IDLE: Duration = Duration::from_secs(10);

/// Who sends message `k`, and to whom.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    pub users: usize,
    pub senders: usize,
}

impl Pattern {
    pub fn sender(self, k: u64) -> usize {
        (k % self.senders as u64) as usize
    }

    /// Recipients cycle through all users, so with `messages <= users`
    /// every recipient is named once (each lookup a cache miss on a cold
    /// relay).
    pub fn recipient(self, k: u64) -> usize {
        ((k + 1) % self.users as u64) as usize
    }
}

/// Learn the pseudonyms of users `0..users` through the relay.
pub fn learn(conn: &mut Conn, users: usize, deadline: Instant) -> Result<Vec<String>, String> {
    let mut locals: Vec<Option<String>> = vec![None; users];
    let suffix = format!("@{}", wire::COMPONENT);
    let relay_from = format!("{}/{}", wire::COMPONENT, wire::RELAY_RESOURCE);
    let mut out = Vec::new();
    for first in (0..users).step_by(LEARN_BATCH) {
        let last = (first + LEARN_BATCH).min(users);
        out.clear();
        for i in first..last {
            wire::push_whoami(&mut out, i, i as u64);
        }
        conn.send(&out)?;
        let mut got = 0;
        while got < last - first {
            let Next::Stanza(a, b) = conn.next_blocking(deadline, "/whoami replies")? else {
                return Err("the relay closed its stream while answering /whoami".into());
            };
            let s = scan::parse(&conn.buf[a..b]).map_err(|e| e.to_string())?;
            let text = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or(b"")).into_owned();
            if s.kind == Some(b"error") {
                return Err(format!(
                    "the relay answered /whoami with an error ({})",
                    text(s.error)
                ));
            }
            let to = text(s.to);
            let i = to
                .strip_prefix("user")
                .and_then(|r| {
                    r.strip_suffix(&format!("@{}/{}", wire::USER_DOMAIN, wire::USER_RESOURCE))
                })
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|i| (first..last).contains(i))
                .ok_or_else(|| format!("a /whoami reply to an unexpected address: {to}"))?;
            if text(s.from) != relay_from {
                return Err(format!("a /whoami reply from {}", text(s.from)));
            }
            let body = text(s.body);
            let local = body
                .trim()
                .strip_suffix(&suffix)
                .filter(|l| l.len() == axrelay_proto::pseudonym::LOCALPART_LEN)
                .ok_or_else(|| format!("a /whoami reply that is no pseudonym: {body}"))?;
            if locals[i].replace(local.to_owned()).is_some() {
                return Err(format!("two /whoami replies for user{i}"));
            }
            got += 1;
        }
    }
    Ok(locals.into_iter().map(Option::unwrap_or_default).collect())
}

/// What the message phase is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub pattern: Pattern,
    pub messages: u64,
    pub body: usize,
    /// Messages per second; `None` = as fast as the relay takes them.
    pub rate: Option<f64>,
    pub window: u64,
    pub deadline: Instant,
    /// The peer echoes stanzas unchanged instead of relaying them.
    pub echo: bool,
}

/// Everything the message phase observed.
#[derive(Debug, Default)]
pub struct Outcome {
    pub sent: u64,
    /// Relayed intact to the right recipient from the right pseudonym.
    pub ok: u64,
    /// Distinct messages answered (relayed or bounced).
    pub answered: u64,
    /// Error stanzas received instead of a message.
    pub errors: u64,
    pub error_conditions: Vec<(String, u64)>,
    /// Wrong `to`, `from` or `type`.
    pub misrouted: u64,
    /// Body altered, unparsable stanza, unknown sequence number.
    pub corrupt: u64,
    pub duplicates: u64,
    /// Stanzas that are not messages.
    pub unexpected: u64,
    pub first_problem: Option<String>,
    pub latency: Histogram,
    /// Worst latency of the messages sent in each 100 ms of the load.
    pub worst_per_100ms: Vec<u64>,
    /// First send to last receive.
    pub elapsed: Duration,
    /// Rate mode: worst delay of a send behind its schedule.
    pub max_send_lag: Duration,
    /// Times the sender waited for the in-flight window.
    pub window_waits: u64,
    /// CPU ticks of the generator's own sender and receiver threads.
    pub generator_ticks: u64,
    /// Something ended the phase early (read or write failure, stream end).
    pub aborted: Option<String>,
}

impl Outcome {
    pub fn missing(&self) -> u64 {
        self.sent.max(self.answered) - self.answered
    }

    fn problem(&mut self, what: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(what());
        }
    }
}

struct Shared {
    answered: AtomicU64,
    sent: AtomicU64,
    sender_done: AtomicBool,
    stop: AtomicBool,
}

fn thread_ticks() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| {
            let close = s.rfind(')')?;
            let f: Vec<&str> = s.get(close + 2..)?.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Run the message load over `conn`; returns the connection for the close.
pub fn messages(
    conn: Conn,
    load: Load,
    locals: Arc<Vec<String>>,
    progress: Arc<AtomicU64>,
) -> Result<(Conn, Outcome), String> {
    let shared = Arc::new(Shared {
        answered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        sender_done: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let writer = conn
        .stream
        .try_clone()
        .map_err(|e| format!("socket: {e}"))?;
    let epoch = Instant::now();
    let send = {
        let (shared, locals) = (shared.clone(), locals.clone());
        thread::Builder::new()
            .name("load-send".into())
            .spawn(move || sender(writer, load, &locals, &shared, epoch))
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };
    let recv = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("load-recv".into())
            .spawn(move || receiver(conn, load, &locals, &shared, &progress, epoch))
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };
    let (conn, mut out) = recv
        .join()
        .map_err(|_| "the receiver thread panicked".to_owned())?;
    shared.stop.store(true, Ordering::SeqCst);
    let sent = send
        .join()
        .map_err(|_| "the sender thread panicked".to_owned())?;
    out.sent = shared.sent.load(Ordering::SeqCst);
    out.max_send_lag = sent.max_lag;
    out.window_waits = sent.window_waits;
    out.generator_ticks += sent.ticks;
    if let Some(e) = sent.error {
        out.aborted.get_or_insert(e);
    }
    Ok((conn, out))
}

struct SendStats {
    max_lag: Duration,
    window_waits: u64,
    ticks: u64,
    error: Option<String>,
}

fn sender(
    mut stream: TcpStream,
    load: Load,
    locals: &[String],
    shared: &Shared,
    epoch: Instant,
) -> SendStats {
    let mut st = SendStats {
        max_lag: Duration::ZERO,
        window_waits: 0,
        ticks: 0,
        error: None,
    };
    let mut buf = Vec::with_capacity(SEND_CHUNK + load.body + 512);
    let mut body = Vec::with_capacity(load.body + 32);
    let mut prefix = Vec::with_capacity(32);
    let mut k: u64 = 0;
    let n = load.messages;
    while k < n {
        if shared.stop.load(Ordering::Relaxed) || Instant::now() >= load.deadline {
            break;
        }
        let elapsed = epoch.elapsed();
        let due = match load.rate {
            None => n,
            Some(rate) => {
                let due = ((elapsed.as_secs_f64() * rate) as u64 + 1).min(n);
                if due <= k {
                    let next = Duration::from_secs_f64(k as f64 / rate);
                    thread::sleep(next.saturating_sub(elapsed));
                    continue;
                }
                let sched = Duration::from_secs_f64(k as f64 / rate);
                st.max_lag = st.max_lag.max(elapsed.saturating_sub(sched));
                due
            }
        };
        let in_flight = k - shared.answered.load(Ordering::Acquire).min(k);
        if in_flight >= load.window {
            st.window_waits += 1;
            thread::sleep(Duration::from_micros(50));
            continue;
        }
        let until = due.min(k + (load.window - in_flight));
        let t = epoch.elapsed().as_nanos() as u64;
        while k < until && buf.len() < SEND_CHUNK {
            let i = load.pattern.sender(k);
            let j = load.pattern.recipient(k);
            prefix.clear();
            let _ = write!(prefix, "{k} {t} ");
            body.clear();
            wire::push_body(&mut body, &prefix, k, load.body);
            wire::push_message(&mut buf, i, &locals[j], k, &body);
            k += 1;
        }
        if let Err(e) = stream.write_all(&buf) {
            st.error = Some(format!("write: {e}"));
            break;
        }
        buf.clear();
        shared.sent.store(k, Ordering::Release);
    }
    shared.sender_done.store(true, Ordering::Release);
    st.ticks = thread_ticks();
    st
}

/// Whether `v` is `user{j}` followed by `suffix`.
fn is_user(v: &[u8], j: usize, suffix: &[u8]) -> bool {
    let Some(rest) = v.strip_prefix(b"user") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(n) = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<usize>().ok())
    else {
        return false;
    };
    n == j && &rest[digits..] == suffix
}

/// Whether `v` is `local` followed by `suffix`.
fn is_local(v: &[u8], local: &str, suffix: &[u8]) -> bool {
    v.len() == local.len() + suffix.len() && v.starts_with(local.as_bytes()) && v.ends_with(suffix)
}

fn number(v: &[u8]) -> Option<(u64, &[u8])> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let n = std::str::from_utf8(&v[..digits]).ok()?.parse().ok()?;
    Some((n, &v[digits..]))
}

struct Checker<'a> {
    load: Load,
    locals: &'a [String],
    seen: Vec<u64>,
    /// `@load.example`, `@load.example/r`, `@axr.load.example/a`, `@axr.load.example`
    user_bare: Vec<u8>,
    user_full: Vec<u8>,
    pseudo_full: Vec<u8>,
    pseudo_bare: Vec<u8>,
}

impl Checker<'_> {
    /// Mark `k` answered; false if it was already.
    fn first_time(&mut self, k: u64) -> bool {
        let (w, bit) = ((k / 64) as usize, 1u64 << (k % 64));
        let fresh = self.seen[w] & bit == 0;
        self.seen[w] |= bit;
        fresh
    }

    fn check(&mut self, out: &mut Outcome, stanza: &[u8], now: u64) {
        let s = match scan::parse(stanza) {
            Ok(s) => s,
            Err(e) => {
                out.corrupt += 1;
                out.problem(|| format!("unparsable stanza: {e}"));
                return;
            }
        };
        if s.name != b"message" {
            out.unexpected += 1;
            out.problem(|| format!("unexpected stanza: {}", String::from_utf8_lossy(stanza)));
            return;
        }
        if s.kind == Some(b"error") {
            out.errors += 1;
            let cond = String::from_utf8_lossy(s.error.unwrap_or(b"?")).into_owned();
            match out.error_conditions.iter_mut().find(|(c, _)| *c == cond) {
                Some((_, n)) => *n += 1,
                None => out.error_conditions.push((cond, 1)),
            }
            // The error names the message it answers by its original id.
            if let Some((k, [])) = s.id.and_then(|id| id.strip_prefix(b"m")).and_then(number) {
                if k < self.load.messages && self.first_time(k) {
                    out.answered += 1;
                }
            }
            return;
        }
        let Some((k, t, filler)) = s.body.and_then(|b| {
            let (k, r) = number(b)?;
            let (t, r) = number(r.strip_prefix(b" ")?)?;
            Some((k, t, r.strip_prefix(b" ")?))
        }) else {
            out.corrupt += 1;
            out.problem(|| {
                format!(
                    "a message without a load body: {}",
                    String::from_utf8_lossy(stanza)
                )
            });
            return;
        };
        if k >= self.load.messages {
            out.corrupt += 1;
            out.problem(|| format!("unknown sequence number {k}"));
            return;
        }
        if !self.first_time(k) {
            out.duplicates += 1;
            out.problem(|| format!("message {k} arrived twice"));
            return;
        }
        out.answered += 1;
        let (i, j) = (self.load.pattern.sender(k), self.load.pattern.recipient(k));
        let (to_ok, from_ok) = if self.load.echo {
            (
                s.to.is_some_and(|v| is_local(v, &self.locals[j], &self.pseudo_bare)),
                s.from.is_some_and(|v| is_user(v, i, &self.user_full)),
            )
        } else {
            (
                s.to.is_some_and(|v| is_user(v, j, &self.user_bare)),
                s.from
                    .is_some_and(|v| is_local(v, &self.locals[i], &self.pseudo_full)),
            )
        };
        if !to_ok || !from_ok || s.kind != Some(b"chat") || s.id.is_none() {
            out.misrouted += 1;
            out.problem(|| {
                format!(
                    "message {k} (user{i} -> user{j}) misrouted: {}",
                    String::from_utf8_lossy(stanza)
                )
            });
            return;
        }
        let body_len = s.body.map_or(0, <[u8]>::len);
        if body_len != self.load.body.max(body_len - filler.len()) || !wire::check_filler(filler, k)
        {
            out.corrupt += 1;
            out.problem(|| format!("message {k}: body altered"));
            return;
        }
        out.ok += 1;
        let lat = now.saturating_sub(t);
        out.latency.record(lat);
        // Bounded by the run's time limit (one slot per 100 ms).
        let slot = (t / 100_000_000) as usize;
        if slot < 100_000 {
            if out.worst_per_100ms.len() <= slot {
                out.worst_per_100ms.resize(slot + 1, 0);
            }
            out.worst_per_100ms[slot] = out.worst_per_100ms[slot].max(lat);
        }
    }
}

fn receiver(
    mut conn: Conn,
    load: Load,
    locals: &[String],
    shared: &Shared,
    progress: &AtomicU64,
    epoch: Instant,
) -> (Conn, Outcome) {
    let mut out = Outcome::default();
    let mut ck = Checker {
        load,
        locals,
        seen: vec![0; load.messages.div_ceil(64) as usize],
        user_bare: format!("@{}", wire::USER_DOMAIN).into_bytes(),
        user_full: format!("@{}/{}", wire::USER_DOMAIN, wire::USER_RESOURCE).into_bytes(),
        pseudo_full: format!("@{}/{}", wire::COMPONENT, wire::RELAY_RESOURCE).into_bytes(),
        pseudo_bare: format!("@{}", wire::COMPONENT).into_bytes(),
    };
    let mut now = 0u64;
    let mut last_progress = Instant::now();
    let mut last_rx = 0u64;
    'run: loop {
        loop {
            match conn.next() {
                Ok(Some(Next::Stanza(a, b))) => {
                    let before = out.answered;
                    ck.check(&mut out, &conn.buf[a..b], now);
                    if out.answered > before {
                        last_rx = now;
                    }
                }
                Ok(Some(Next::End)) => {
                    out.aborted = Some("the relay closed its stream during the load".into());
                    break 'run;
                }
                Ok(None) => break,
                Err(e) => {
                    out.aborted = Some(e);
                    break 'run;
                }
            }
        }
        if shared.answered.load(Ordering::Relaxed) != out.answered {
            shared.answered.store(out.answered, Ordering::Release);
            progress.store(out.answered, Ordering::Relaxed);
            last_progress = Instant::now();
        }
        if out.answered >= load.messages {
            break;
        }
        if Instant::now() >= load.deadline {
            out.aborted = Some("the time limit ended the load".into());
            break;
        }
        if shared.sender_done.load(Ordering::Acquire) && last_progress.elapsed() >= DRAIN_IDLE {
            break;
        }
        match conn.fill() {
            Ok(Fill::Data) => now = epoch.elapsed().as_nanos() as u64,
            Ok(Fill::Idle) => {}
            Ok(Fill::Eof) => {
                out.aborted = Some("the relay closed the connection during the load".into());
                break;
            }
            Err(e) => {
                out.aborted = Some(e);
                break;
            }
        }
    }
    out.elapsed = Duration::from_nanos(last_rx);
    out.generator_ticks = thread_ticks();
    (conn, out)
}

/// Resident memory over the load: (messages answered, RSS KiB) samples.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<(u64, u64)>>,
}

impl RssSampler {
    pub fn start(
        pid: Option<u32>,
        progress: Arc<AtomicU64>,
        every: Duration,
    ) -> Option<RssSampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("load-rss".into())
            .spawn(move || {
                let mut v = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    if let Some(m) = proc_status::memory(pid) {
                        // Bounded by the run's time limit and the interval.
                        v.push((progress.load(Ordering::Relaxed), m.rss_kib));
                    }
                    thread::sleep(every);
                }
                v
            })
            .ok()?;
        Some(RssSampler { stop, handle })
    }

    pub fn finish(self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_checks() {
        assert!(is_user(b"user12@load.example", 12, b"@load.example"));
        assert!(!is_user(b"user12@load.example", 1, b"@load.example"));
        assert!(!is_user(b"user12@load.example/r", 12, b"@load.example"));
        assert!(!is_user(b"xuser12@load.example", 12, b"@load.example"));
        assert!(is_local(b"abc@axr/a", "abc", b"@axr/a"));
        assert!(!is_local(b"abcd@axr/a", "abc", b"@axr/a"));
        assert_eq!(number(b"12 x"), Some((12, &b" x"[..])));
        assert_eq!(number(b"x"), None);
    }
}
