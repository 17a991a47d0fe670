//! `axrelay-load`: a load generator that plays the XMPP server's side of
//! XEP-0114 on loopback, learns pseudonyms with `/whoami`, sends messages
//! between simulated users through the relay and checks every one of them.
//!
//! Run `axrelay-load --help` for the options; `docs/PERFORMANCE.md` has the
//! method and the figures.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod conn;
mod memcached;
mod phases;
mod store_stats;
mod target;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axrelay_benches::proc_status::{self, TICKS_PER_SEC};
use axrelay_proto::{MemoryStore, Pseudonymizer, Store};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};

use conn::{accept, Conn};
use phases::{Load, Outcome, Pattern, RssSampler};
use target::{Kind, Running, Setup};

/// Load generator for axrelay (plays the XMPP server, loopback only).
#[derive(Debug, Parser)]
#[command(
    name = "axrelay-load",
    after_help = "Prints a summary and one `RESULT key=value ...` line. Exit status 0 when every \
                  message arrived intact, exactly once, at the right user from the right \
                  pseudonym; 1 otherwise; 2 for bad arguments.",
    // As with the hand-written parser this replaces: a repeated option's
    // last value wins, so scripts can append overrides.
    args_override_self = true
)]
struct Cli {
    /// Component under load
    #[arg(long, value_enum, value_name = "TARGET", default_value_t = Kind::Smol)]
    target: Kind,
    /// Run `PATH run -c FILE` (the axrelay binary) as a child instead of the
    /// relay in this process
    #[arg(long, value_name = "PATH")]
    exec: Option<PathBuf>,
    /// Mapping store
    #[arg(long, value_enum, value_name = "STORE", default_value_t = StoreKind::Memory)]
    store: StoreKind,
    /// memcached to use (a loopback address); implies --store memcached
    #[arg(long, value_name = "HOST:PORT")]
    memcached: Option<String>,
    /// Start a private memcached on a free loopback port; implies --store
    /// memcached
    #[arg(long)]
    spawn_memcached: bool,
    /// Restart the relay after /whoami, so its cache is empty
    #[arg(long)]
    cold: bool,
    /// Simulated users
    #[arg(long, value_name = "U", default_value_t = 100)]
    users: usize,
    /// Users that send; message k goes from user k%S to user (k+1)%U
    /// [default: U]
    #[arg(long, value_name = "S")]
    senders: Option<usize>,
    /// Messages to relay
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    messages: u64,
    /// Body size in bytes, at least 40
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    body: usize,
    /// Messages per second [default: as fast as it takes]
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Most messages in flight
    #[arg(long, value_name = "W", default_value_t = 4096)]
    window: u64,
    /// Bound on the whole run, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// RSS sampling interval, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 250)]
    rss_every: u64,
    /// Tag for the RESULT line
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// In process: the relay's id-map capacity, for experiments [default: the
    /// relay's own, 100000]
    #[arg(long, value_name = "N")]
    id_map_capacity: Option<usize>,
}

/// Where the relay keeps its mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// In the relay's memory
    Memory,
    /// A memcached (--memcached or --spawn-memcached)
    Memcached,
}

/// The run's settings, checked.
#[derive(Debug, Clone)]
struct Args {
    kind: Kind,
    exec: Option<PathBuf>,
    memcached_store: bool,
    memcached: Option<String>,
    spawn_memcached: bool,
    cold: bool,
    users: usize,
    senders: Option<usize>,
    messages: u64,
    body: usize,
    rate: Option<f64>,
    window: u64,
    timeout: Duration,
    rss_every: Duration,
    label: String,
    id_map_capacity: Option<usize>,
}

impl TryFrom<Cli> for Args {
    type Error = String;

    fn try_from(c: Cli) -> Result<Args, String> {
        if c.users == 0 || c.messages == 0 || c.window == 0 {
            return Err("--users, --messages and --window must be positive".into());
        }
        if c.senders.is_some_and(|s| s == 0 || s > c.users) {
            return Err("--senders must be between 1 and --users".into());
        }
        if c.body < 40 {
            return Err("--body must be at least 40 bytes (sequence number and timestamp)".into());
        }
        if c.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err("--rate must be positive".into());
        }
        let memcached_store =
            c.store == StoreKind::Memcached || c.memcached.is_some() || c.spawn_memcached;
        if memcached_store && c.memcached.is_none() && !c.spawn_memcached {
            return Err(
                "--store memcached needs --memcached HOST:PORT or --spawn-memcached".into(),
            );
        }
        if let Some(m) = &c.memcached {
            let addr: SocketAddr = m
                .parse()
                .map_err(|_| format!("--memcached: '{m}' is not an IP:PORT"))?;
            if !addr.ip().is_loopback() {
                return Err("--memcached must be a loopback address".into());
            }
        }
        if c.cold && c.exec.is_some() && !memcached_store {
            return Err(
                "--cold with --exec needs memcached (a restarted process loses a memory store)"
                    .into(),
            );
        }
        Ok(Args {
            kind: c.target,
            exec: c.exec,
            memcached_store,
            memcached: c.memcached,
            spawn_memcached: c.spawn_memcached,
            cold: c.cold,
            users: c.users,
            senders: c.senders,
            messages: c.messages,
            body: c.body,
            rate: c.rate,
            window: c.window,
            timeout: Duration::from_secs(c.timeout),
            rss_every: Duration::from_millis(c.rss_every),
            label: c.label.unwrap_or_default(),
            id_map_capacity: c.id_map_capacity,
        })
    }
}

/// Random hex from the standard library's per-process hash keys.
fn random_hex(bytes: usize) -> String {
    let mut s = String::new();
    let mut n = 0u64;
    while s.len() < bytes * 2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        s.push_str(&format!("{:016x}", h.finish()));
        n += 1;
    }
    s.truncate(bytes * 2);
    s
}

struct Report {
    args: Args,
    learn: Duration,
    outcome: Outcome,
    relay_ticks: Option<u64>,
    rss: Vec<(u64, u64)>,
    hwm_kib: Option<u64>,
    rss_scope: &'static str,
    stop: Result<String, String>,
    /// In process: what the runtime asked of the store while learning and
    /// during the load.
    store_calls: Option<(String, String)>,
}

fn run(args: &Args) -> Result<Report, String> {
    let started = Instant::now();
    let deadline = started + args.timeout;
    let spawned = if args.spawn_memcached {
        Some(memcached::Memcached::start()?)
    } else {
        None
    };
    let mc_addr = args
        .memcached
        .clone()
        .or_else(|| spawned.as_ref().map(|m| m.addr.clone()));
    let in_process = args.exec.is_none() && args.kind != Kind::Echo;
    let counts = Arc::new(store_stats::Counts::default());
    let store: Option<Arc<dyn Store>> = match (&mc_addr, in_process) {
        (_, false) => None,
        (None, true) => Some(Arc::new(MemoryStore::new(axrelay::store::MEMORY_CAPACITY))),
        (Some(addr), true) => Some(Arc::new(
            axrelay::store::MemcachedStore::connect(
                std::slice::from_ref(addr),
                Duration::from_millis(500),
            )
            .map_err(|e| e.to_string())?,
        )),
    };
    let store = store.map(|inner| -> Arc<dyn Store> {
        Arc::new(store_stats::Counting {
            inner,
            counts: counts.clone(),
        })
    });
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("listen: {e}"))?
        .port();
    let mut id_key = [0u8; 32];
    for (i, b) in random_hex(32).as_bytes().chunks(2).enumerate() {
        id_key[i] = u8::from_str_radix(std::str::from_utf8(b).unwrap_or("0"), 16).unwrap_or(0);
    }
    let setup = Setup {
        kind: args.kind,
        port,
        password: random_hex(16),
        secret: random_hex(24),
        id_key,
        store,
        exec: args.exec.clone(),
        memcached: mc_addr,
        config_path: std::env::temp_dir().join(format!(
            "axrelay-load-{}-{}.conf",
            std::process::id(),
            random_hex(4)
        )),
        id_map_capacity: args.id_map_capacity,
    };
    let result = load(args, &setup, &listener, deadline, &counts);
    let _ = std::fs::remove_file(&setup.config_path);
    result
}

fn connect(setup: &Setup, listener: &TcpListener) -> Result<(Running, Conn), String> {
    let running = Running::start(setup)?;
    let mut conn = Conn::new(accept(listener, Duration::from_secs(15))?)?;
    conn.handshake(&setup.password, &random_hex(8))?;
    Ok((running, conn))
}

fn load(
    args: &Args,
    setup: &Setup,
    listener: &TcpListener,
    deadline: Instant,
    counts: &store_stats::Counts,
) -> Result<Report, String> {
    let echo = args.kind == Kind::Echo;
    let (mut running, mut conn) = connect(setup, listener)?;
    let t = Instant::now();
    let locals = if echo {
        let p = Pseudonymizer::new(setup.secret.as_bytes());
        (0..args.users)
            .map(|i| p.localpart(&axrelay_benches::wire::user_bare(i)))
            .collect()
    } else {
        phases::learn(&mut conn, args.users, deadline)?
    };
    let learn = t.elapsed();
    let learn_store = counts.summary();
    if args.cold && !echo {
        running.request_stop()?;
        conn.close(true)?;
        running.wait(Duration::from_secs(10))?;
        (running, conn) = connect(setup, listener)?;
    }
    counts.reset();

    let pid = running.pid();
    let progress = Arc::new(AtomicU64::new(0));
    let sampler = RssSampler::start(pid, progress.clone(), args.rss_every);
    let cpu_before = proc_status::process_cpu(pid);
    let load = Load {
        pattern: Pattern {
            users: args.users,
            senders: args.senders.unwrap_or(args.users),
        },
        messages: args.messages,
        body: args.body,
        rate: args.rate,
        window: args.window,
        deadline,
        echo,
    };
    let (mut conn, outcome) = phases::messages(conn, load, Arc::new(locals), progress)?;
    let cpu_after = proc_status::process_cpu(pid);
    let rss = sampler.map(RssSampler::finish).unwrap_or_default();
    let hwm_kib = proc_status::memory(pid).map(|m| m.hwm_kib);
    let relay_ticks = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if pid.is_some() => Some(b.saturating_sub(a)),
        // In process: everything but the generator's own threads.
        (Some(a), Some(b)) => Some(b.saturating_sub(a).saturating_sub(outcome.generator_ticks)),
        _ => None,
    };

    let load_store = counts.summary();
    let stop = if outcome.aborted.is_some() {
        Ok("not stopped cleanly after the aborted load".to_owned())
    } else if echo {
        conn.send(b"</stream:stream>")
            .and_then(|()| conn.close(true))
            .and_then(|()| running.wait(Duration::from_secs(10)))
    } else {
        running
            .request_stop()
            .and_then(|()| conn.close(true))
            .and_then(|()| running.wait(Duration::from_secs(10)))
    };
    Ok(Report {
        args: args.clone(),
        learn,
        outcome,
        relay_ticks,
        rss,
        hwm_kib,
        rss_scope: if pid.is_some() {
            "relay process"
        } else {
            "generator + relay process"
        },
        stop,
        store_calls: (setup.store.is_some()).then_some((learn_store, load_store)),
    })
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

impl Report {
    fn clean(&self) -> bool {
        let o = &self.outcome;
        o.ok == self.args.messages && o.aborted.is_none() && self.stop.is_ok()
    }

    fn print(&self) {
        let a = &self.args;
        let o = &self.outcome;
        let secs = o.elapsed.as_secs_f64().max(1e-9);
        let rate = o.ok as f64 / secs;
        let users = a.users;
        let senders = a.senders.unwrap_or(a.users);
        let store = if a.kind == Kind::Echo {
            "none"
        } else if a.memcached_store {
            "memcached"
        } else {
            "memory"
        };
        let mode = match a.rate {
            Some(r) => format!("fixed {r} msg/s"),
            None => format!("max (window {})", a.window),
        };
        println!(
            "target {} ({}), store {store}{}, {users} users ({senders} sending), {} messages of {} B, {mode}",
            a.kind.name(),
            if a.exec.is_some() {
                "child process"
            } else {
                "in process"
            },
            if a.cold { ", cold cache" } else { "" },
            a.messages,
            a.body
        );
        if a.kind != Kind::Echo {
            println!(
                "  /whoami for {users} users: {:.2} s",
                self.learn.as_secs_f64()
            );
        }
        if let Some((learn, load)) = &self.store_calls {
            println!("  store while learning: {learn}");
            println!("  store during the load: {load}");
        }
        println!(
            "  relayed intact: {} of {} sent in {:.3} s = {:.0} msg/s ({:.1} MB/s of bodies)",
            o.ok,
            o.sent,
            secs,
            rate,
            rate * a.body as f64 / 1e6
        );
        println!(
            "  latency: p50 {} us, p99 {} us, p99.9 {} us, max {} us, mean {} us",
            us(o.latency.quantile(0.5)),
            us(o.latency.quantile(0.99)),
            us(o.latency.quantile(0.999)),
            us(o.latency.max()),
            us(o.latency.mean())
        );
        if a.rate.is_some() {
            let w = &o.worst_per_100ms;
            let mut worst: Vec<(usize, u64)> = w.iter().copied().enumerate().collect();
            worst.sort_by_key(|(_, l)| std::cmp::Reverse(*l));
            let show: Vec<String> = worst
                .iter()
                .take(6)
                .map(|(i, l)| format!("{:.1}s:{}ms", *i as f64 / 10.0, l / 1_000_000))
                .collect();
            println!(
                "  100 ms windows whose worst latency passed 1 ms: {} of {}; worst (send time: latency): {}",
                w.iter().filter(|l| **l > 1_000_000).count(),
                w.len(),
                show.join(" ")
            );
            println!(
                "  sender: worst lag behind schedule {:.2} ms",
                o.max_send_lag.as_secs_f64() * 1e3
            );
        }
        println!(
            "  problems: {} missing, {} duplicated, {} misrouted, {} corrupt, {} error stanzas, {} unexpected",
            o.missing(),
            o.duplicates,
            o.misrouted,
            o.corrupt,
            o.errors,
            o.unexpected
        );
        if !o.error_conditions.is_empty() {
            let c: Vec<String> = o
                .error_conditions
                .iter()
                .map(|(c, n)| format!("{c} x{n}"))
                .collect();
            println!("  error conditions: {}", c.join(", "));
        }
        if let Some(p) = &o.first_problem {
            println!("  first problem: {p}");
        }
        if let Some(e) = &o.aborted {
            println!("  aborted: {e}");
        }
        let cpu = |t: u64| t as f64 / TICKS_PER_SEC as f64;
        if let Some(t) = self.relay_ticks {
            println!(
                "  CPU during the load: {} {:.2} s ({:.2} us/msg), generator {:.2} s",
                if a.kind == Kind::Echo {
                    "echo"
                } else {
                    "relay"
                },
                cpu(t),
                cpu(t) * 1e6 / (o.ok.max(1) as f64),
                cpu(o.generator_ticks)
            );
        }
        let quart = |q: f64| {
            let want = (a.messages as f64 * q) as u64;
            self.rss
                .iter()
                .find(|(p, _)| *p >= want)
                .or(self.rss.last())
                .map_or(0, |(_, r)| *r)
        };
        let series: Vec<String> = (1..=10)
            .map(|d| format!("{}", quart(d as f64 / 10.0) / 1024))
            .collect();
        println!(
            "  RSS ({}) at 10%, 20%, ... 100% of the messages: {} MiB; peak {} MiB",
            self.rss_scope,
            series.join(" "),
            self.hwm_kib.unwrap_or(0) / 1024
        );
        match &self.stop {
            Ok(s) => println!("  end: {s}"),
            Err(e) => println!("  end: {e}"),
        }
        println!(
            "RESULT label={} target={} exec={} store={store} cold={} users={users} senders={senders} \
             messages={} body={} rate={} ok={} msg_per_s={:.0} p50_us={} p99_us={} max_us={} \
             missing={} dup={} misrouted={} corrupt={} errors={} rss10_kib={} rss50_kib={} rss100_kib={} hwm_kib={} \
             relay_cpu_us_per_msg={:.2} clean={}",
            if a.label.is_empty() { "-" } else { &a.label },
            a.kind.name(),
            a.exec.is_some(),
            a.cold,
            a.messages,
            a.body,
            a.rate.map_or("max".into(), |r| format!("{r}")),
            o.ok,
            rate,
            us(o.latency.quantile(0.5)),
            us(o.latency.quantile(0.99)),
            us(o.latency.max()),
            o.missing(),
            o.duplicates,
            o.misrouted,
            o.corrupt,
            o.errors,
            quart(0.10),
            quart(0.5),
            quart(1.0),
            self.hwm_kib.unwrap_or(0),
            self.relay_ticks
                .map_or(0.0, |t| cpu(t) * 1e6 / (o.ok.max(1) as f64)),
            self.clean()
        );
    }
}

fn main() -> ExitCode {
    // Usage errors exit with status 2, as clap's own do.
    let args = Args::try_from(Cli::parse())
        .unwrap_or_else(|e| Cli::command().error(ErrorKind::ValueValidation, e).exit());
    match run(&args) {
        Ok(report) => {
            report.print();
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("axrelay-load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: Kind) -> Args {
        Args {
            kind,
            exec: None,
            memcached_store: false,
            memcached: None,
            spawn_memcached: false,
            cold: false,
            users: 20,
            senders: None,
            messages: 3000,
            body: 100,
            rate: None,
            window: 256,
            timeout: Duration::from_secs(60),
            rss_every: Duration::from_millis(50),
            label: String::new(),
            id_map_capacity: None,
        }
    }

    fn clean(a: &Args) -> Report {
        let r = run(a).expect("the run completes");
        let o = &r.outcome;
        assert!(
            r.clean(),
            "{:?} {:?} {:?}",
            o.first_problem,
            o.aborted,
            r.stop
        );
        assert_eq!((o.ok, o.answered, o.missing()), (a.messages, a.messages, 0));
        assert_eq!(o.latency.count(), a.messages);
        r
    }

    fn parse(line: &str) -> Result<Args, String> {
        let cli = Cli::try_parse_from(line.split_whitespace()).map_err(|e| e.to_string())?;
        Args::try_from(cli)
    }

    #[test]
    fn options_keep_their_names_defaults_and_meaning() {
        Cli::command().debug_assert();
        let a = parse("axrelay-load").unwrap();
        assert_eq!(a.kind, Kind::Smol);
        assert!(!a.memcached_store && !a.cold && a.exec.is_none());
        assert_eq!(
            (a.users, a.senders, a.messages, a.body),
            (100, None, 100_000, 100)
        );
        assert_eq!((a.rate, a.window, a.id_map_capacity), (None, 4096, None));
        assert_eq!(a.timeout, Duration::from_secs(300));
        assert_eq!(a.rss_every, Duration::from_millis(250));
        assert_eq!(a.label, "");
        // Command lines of benches/run-load.sh and docs/PERFORMANCE.md.
        let a = parse(
            "axrelay-load --label memcached-cold-blocking --target blocking --spawn-memcached \
             --cold --users 20000 --senders 100 --messages 20000",
        )
        .unwrap();
        assert_eq!(a.kind, Kind::Blocking);
        assert!(a.memcached_store && a.spawn_memcached && a.cold);
        assert_eq!((a.users, a.senders, a.messages), (20000, Some(100), 20000));
        assert_eq!(a.label, "memcached-cold-blocking");
        let a = parse(
            "axrelay-load --label soak-smol --target smol --exec target/release/axrelay \
             --messages 200000 --rss-every 500",
        )
        .unwrap();
        assert_eq!(a.exec, Some(PathBuf::from("target/release/axrelay")));
        assert_eq!(a.rss_every, Duration::from_millis(500));
        let a = parse("axrelay-load --target echo --rate 20000 --body 1000 --timeout 9").unwrap();
        assert_eq!((a.kind, a.rate, a.body), (Kind::Echo, Some(20000.0), 1000));
        assert_eq!(a.timeout, Duration::from_secs(9));
        let a = parse("axrelay-load --id-map-capacity 1000 --window 8 --memcached 127.0.0.1:1")
            .unwrap();
        assert_eq!((a.id_map_capacity, a.window), (Some(1000), 8));
        assert!(a.memcached_store);
        // The last of a repeated option wins.
        assert_eq!(parse("axrelay-load --users 5 --users 7").unwrap().users, 7);
        for bad in [
            "axrelay-load --target tokio",
            "axrelay-load --users x",
            "axrelay-load --users 0",
            "axrelay-load --users 5 --senders 6",
            "axrelay-load --body 39",
            "axrelay-load --rate 0",
            "axrelay-load --store memcached",
            "axrelay-load --memcached 10.0.0.1:11211",
            "axrelay-load --cold --exec x",
            "axrelay-load --bogus",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_message_arrives_checked_on_both_runtimes_and_the_echo() {
        for kind in [Kind::Echo, Kind::Smol, Kind::Blocking] {
            clean(&args(kind));
        }
    }

    #[test]
    fn cold_cache_fixed_rate_and_large_bodies() {
        let mut a = args(Kind::Smol);
        a.cold = true;
        a.users = 500;
        a.senders = Some(5);
        a.messages = 500;
        let r = clean(&a);
        let (_, load) = r.store_calls.expect("in-process store");
        let keys: usize = load
            .split(" for ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // 499 recipients looked up once each, and the ban list's reads
        // (when the relay comes online, then once a second), which may
        // all fall before the count starts.
        assert!((499..=505).contains(&keys), "{load}");

        let mut a = args(Kind::Blocking);
        a.rate = Some(20_000.0);
        a.messages = 2000;
        clean(&a);

        let mut a = args(Kind::Smol);
        a.body = 10_000;
        a.messages = 300;
        clean(&a);
    }
}
