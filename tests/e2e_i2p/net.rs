//! A private I2P network of five i2pd routers inside the test's own network
//! namespace, configured from scripts/i2p/i2pd.conf.in like
//! scripts/demo-i2p.sh does.
//!
//! r1, r2: floodfills. r3: server A's router (server tunnels for A, for the
//! relay's domain R and for A's component port; SOCKS proxy for Prosody A).
//! r4: server B's router (server tunnel for B; SOCKS proxy for Prosody B).
//! r5: the relay's router (SOCKS proxy for axrelay; the only destination
//! A's component tunnel accepts). Every router is also a transit hop.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axrelay_test_support::e2e::{
    assert_no_placeholder, command_guarded, python, read_lossy, run_bounded, run_ok, wait_until,
    Proc,
};

use crate::repo;

pub const NETID: u32 = 77;
pub const HOPS: u32 = 1;
pub const ROUTERS: u16 = 5;
pub const FLOODFILLS: [u16; 2] = [1, 2];

pub const SOCKS_A: u16 = 4447;
pub const SOCKS_B: u16 = 4448;
pub const SOCKS_RELAY: u16 = 4449;
pub const C2S_A: u16 = 5222;
pub const S2S_A: u16 = 5269;
pub const COMPONENT_PORT: u16 = 5347;
pub const C2S_B: u16 = 5223;
pub const S2S_B: u16 = 5270;

/// Router `n`'s transport address on the namespace's loopback device.
pub fn address(n: u16) -> String {
    format!("198.18.0.{n}")
}

pub fn console_port(n: u16) -> u16 {
    7070 + n
}

/// Bring up the namespace's loopback device and give it the routers'
/// addresses. Only inside the namespace the test created.
pub fn set_up_loopback() {
    run_ok(
        Command::new("ip").args(["link", "set", "lo", "up"]),
        Duration::from_secs(10),
    );
    for n in 1..=ROUTERS {
        run_ok(
            Command::new("ip").args(["addr", "add", &format!("{}/32", address(n)), "dev", "lo"]),
            Duration::from_secs(10),
        );
    }
}

/// scripts/i2p/i2pd.conf.in filled in for router `n`.
pub fn render_router(
    dir: &Path,
    n: u16,
    floodfill: bool,
    socks: Option<u16>,
    log_level: &str,
) -> String {
    let template = fs::read_to_string(repo().join("scripts/i2p/i2pd.conf.in"))
        .expect("read scripts/i2p/i2pd.conf.in");
    let text = template
        .replace("@DIR@", dir.to_str().expect("utf-8 path"))
        .replace("@ADDRESS@", &address(n))
        .replace("@PORT@", &(12000 + n).to_string())
        .replace("@HTTP_PORT@", &console_port(n).to_string())
        .replace("@FLOODFILL@", &floodfill.to_string())
        .replace("@SOCKS@", &socks.is_some().to_string())
        .replace("@SOCKS_PORT@", &socks.unwrap_or(0).to_string())
        .replace("@NETID@", &NETID.to_string())
        .replace("@HOPS@", &HOPS.to_string())
        .replace("@LOG_LEVEL@", log_level);
    assert_no_placeholder(&text, "scripts/i2p/i2pd.conf.in");
    text
}

/// An i2pd server tunnel: `name` (keys in `keys`) forwards streams to
/// 127.0.0.1:`port`; `allow` restricts it to one client destination.
pub fn server_tunnel(
    name: &str,
    keys: &str,
    port: u16,
    inport: u16,
    allow: Option<&str>,
) -> String {
    let mut s = format!(
        "[{name}]\ntype = server\nhost = 127.0.0.1\nport = {port}\ninport = {inport}\n\
         keys = {keys}\ninbound.length = {HOPS}\noutbound.length = {HOPS}\n\
         inbound.quantity = 5\noutbound.quantity = 2\n"
    );
    if let Some(a) = allow {
        s.push_str(&format!("accesslist = {a}\n"));
    }
    s.push('\n');
    s
}

/// r3's tunnels: server A, the relay's domain R (both to Prosody A's s2s
/// port) and A's component port, open to `relay_client` only.
pub fn tunnels_of_a(relay_client: &str) -> String {
    server_tunnel("server-a", "server-a.dat", S2S_A, 5269, None)
        + &server_tunnel("relay-domain", "relay-domain.dat", S2S_A, 5269, None)
        + &server_tunnel(
            "component",
            "component.dat",
            COMPONENT_PORT,
            COMPONENT_PORT,
            Some(relay_client),
        )
}

/// r4's tunnel: server B.
pub fn tunnels_of_b() -> String {
    server_tunnel("server-b", "server-b.dat", S2S_B, 5269, None)
}

fn i2pnet() -> Command {
    let mut c = Command::new(python());
    c.arg(repo().join("scripts/i2p/i2pnet.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

/// The .b32.i2p name of an i2pd keys file.
pub fn b32(keys: &Path) -> String {
    let out = run_ok(i2pnet().arg("b32").arg(keys), Duration::from_secs(20));
    let name = out.trim().to_string();
    assert!(
        name.len() == 52 + ".b32.i2p".len() && name.ends_with(".b32.i2p"),
        "not a b32 name: {name:?}"
    );
    name
}

fn wait_file(path: &Path, limit: Duration) {
    assert!(
        wait_until(limit, || fs::metadata(path).is_ok_and(|m| m.len() > 0)),
        "{} did not appear within {limit:?}",
        path.display()
    );
}

pub struct Network {
    pub dir: PathBuf,
    /// Server A's name (and its users' domain).
    pub a: String,
    /// Server B's name.
    pub b: String,
    /// The relay's domain.
    pub r: String,
    /// The destination of A's component port.
    pub component: String,
    /// Until every router had exploratory tunnels, and until every
    /// destination's LeaseSet was on both floodfills.
    pub tunnels_after: Duration,
    pub published_after: Duration,
    /// Routers restarted because a LeaseSet was not published.
    pub restarts: Vec<u16>,
    routers: Vec<(u16, Proc)>,
}

/// Start router `n` of the network in `dir`.
fn start_router(dir: &Path, n: u16) -> Proc {
    let d = dir.join(format!("r{n}"));
    let mut cmd = command_guarded("i2pd");
    cmd.arg(format!("--datadir={}", d.display()))
        .arg(format!("--conf={}", d.join("i2pd.conf").display()));
    Proc::spawn(
        &format!("i2pd r{n}"),
        &mut cmd,
        &d.join("stdout"),
        &d.join("i2pd.log"),
    )
}

/// How long one round of waiting for the LeaseSets lasts. They are
/// usually there 5-20 s after the exploratory tunnels.
const PUBLISH_ROUND: Duration = Duration::from_secs(90);
/// Rounds before giving up; a router whose LeaseSet is missing is
/// restarted between rounds.
const PUBLISH_ROUNDS: usize = 4;

impl Network {
    pub fn router_dir(&self, n: u16) -> PathBuf {
        self.dir.join(format!("r{n}"))
    }

    pub fn router_log(&self, n: u16) -> String {
        read_lossy(&self.router_dir(n).join("i2pd.log"))
    }

    /// Start the routers and wait until the four destinations are
    /// published. `dir` holds everything.
    pub fn start(dir: &Path, started: Instant) -> Network {
        let rdir = |n: u16| dir.join(format!("r{n}"));
        for n in 1..=ROUTERS {
            let d = rdir(n);
            fs::create_dir_all(d.join("tunnels.d")).expect("router dir");
            let socks = match n {
                3 => Some(SOCKS_A),
                4 => Some(SOCKS_B),
                5 => Some(SOCKS_RELAY),
                _ => None,
            };
            let level = std::env::var("AXRELAY_E2E_I2P_LOG").unwrap_or_else(|_| "info".into());
            let conf = render_router(&d, n, FLOODFILLS.contains(&n), socks, &level);
            fs::write(d.join("i2pd.conf"), conf).expect("write i2pd.conf");
            fs::write(d.join("tunnels.conf"), "").expect("write tunnels.conf");
        }
        let mut routers = Vec::new();
        let start = |n: u16| (n, start_router(dir, n));
        // The floodfills first; the others find them through their
        // router.info, copied into their netDb (no reseeding).
        for ff in FLOODFILLS {
            routers.push(start(ff));
            let info = rdir(ff).join("router.info");
            wait_file(&info, Duration::from_secs(20));
            let mut seed = i2pnet();
            seed.arg("seed").arg(&info);
            for n in (ff + 1)..=ROUTERS {
                seed.arg(rdir(n));
            }
            run_ok(&mut seed, Duration::from_secs(20));
        }
        // The relay's router first: its SOCKS destination goes into the
        // component tunnel's access list.
        routers.push(start(5));
        wait_file(&rdir(5).join("socks.dat"), Duration::from_secs(20));
        let relay_client = b32(&rdir(5).join("socks.dat"));
        let tunnels_a = tunnels_of_a(&relay_client);
        fs::write(rdir(3).join("tunnels.conf"), tunnels_a).expect("write tunnels.conf");
        fs::write(rdir(4).join("tunnels.conf"), tunnels_of_b()).expect("write tunnels.conf");
        routers.push(start(3));
        routers.push(start(4));
        let keys = |n: u16, f: &str| {
            let p = rdir(n).join(f);
            wait_file(&p, Duration::from_secs(20));
            b32(&p)
        };
        let mut net = Network {
            dir: dir.into(),
            a: keys(3, "server-a.dat"),
            r: keys(3, "relay-domain.dat"),
            component: keys(3, "component.dat"),
            b: keys(4, "server-b.dat"),
            tunnels_after: Duration::ZERO,
            published_after: Duration::ZERO,
            restarts: Vec::new(),
            routers,
        };

        let consoles: Vec<String> = (1..=ROUTERS).map(|n| console_port(n).to_string()).collect();
        net.wait_ready(
            i2pnet()
                .args(["wait-tunnels", "--timeout", "240"])
                .args(&consoles),
            Duration::from_secs(270),
        );
        net.tunnels_after = started.elapsed();
        // The SOCKS proxies' own destinations need tunnels too: until then
        // i2pd answers every request with error 4.
        let mut expected: Vec<(u16, String)> = vec![
            (3, net.a.clone()),
            (3, net.r.clone()),
            (3, net.component.clone()),
            (4, net.b.clone()),
        ];
        let mut clients = Vec::new();
        for n in [3, 4, 5] {
            let socks = rdir(n).join("socks.dat");
            wait_file(&socks, Duration::from_secs(20));
            let name = b32(&socks);
            clients.push(format!("{}={name}", console_port(n)));
            expected.push((n, name));
        }
        let locals: Vec<String> = expected[..4]
            .iter()
            .map(|(n, name)| format!("{}={name}", console_port(*n)))
            .collect();
        let ffs: Vec<String> = FLOODFILLS
            .iter()
            .map(|&n| console_port(n).to_string())
            .collect();
        // i2pd 2.45 publishes a LeaseSet when an inbound tunnel is added
        // and drops that publish if the destination has no outbound tunnel
        // yet; under load all inbound tunnels can come first, and the
        // LeaseSet then stays unpublished until the tunnels are replaced
        // (10 min). Restarting the router is quicker.
        // AXRELAY_E2E_I2P_FIRST_ROUND (seconds) shortens the first round,
        // to see the restarts happen.
        let first_round = std::env::var("AXRELAY_E2E_I2P_FIRST_ROUND")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(PUBLISH_ROUND, Duration::from_secs);
        for round in 1..=PUBLISH_ROUNDS {
            let round_length = if round == 1 {
                first_round
            } else {
                PUBLISH_ROUND
            };
            for (_, r) in &mut net.routers {
                r.check_running();
            }
            let out = run_bounded(
                i2pnet()
                    .args(["wait-published", "--timeout"])
                    .arg(round_length.as_secs().to_string())
                    .arg("--floodfill")
                    .args(&ffs)
                    .arg("--local")
                    .args(&locals)
                    .arg("--client")
                    .args(&clients),
                round_length + Duration::from_secs(30),
            );
            let text = match out {
                Ok((s, _)) if s.success() => break,
                Ok((_, text)) => text,
                Err(e) => panic!("{e}"),
            };
            assert!(
                round < PUBLISH_ROUNDS,
                "the I2P network did not come up: {text}"
            );
            // "not ready after …: WHAT; missing: …"
            let missing = text.split("missing:").nth(1).unwrap_or(&text);
            let mut stuck: Vec<u16> = expected
                .iter()
                .filter(|(_, name)| missing.contains(name.as_str()))
                .map(|(n, _)| *n)
                .collect();
            stuck.sort_unstable();
            stuck.dedup();
            assert!(!stuck.is_empty(), "the I2P network did not come up: {text}");
            for n in stuck {
                let _ = writeln!(
                    std::io::stderr(),
                    "e2e_i2p: not published after {} s:{}; restarting router r{n}",
                    round_length.as_secs(),
                    missing.trim_end()
                );
                net.restart(n);
            }
        }
        net.published_after = started.elapsed();
        net
    }

    /// Stop router `n` and start it again with the same keys.
    fn restart(&mut self, n: u16) {
        let dir = self.dir.clone();
        for (m, r) in &mut self.routers {
            if *m == n {
                r.stop(Duration::from_secs(10));
                *r = start_router(&dir, n);
            }
        }
        self.restarts.push(n);
    }

    fn wait_ready(&mut self, cmd: &mut Command, limit: Duration) {
        for (_, r) in &mut self.routers {
            r.check_running();
        }
        match run_bounded(cmd, limit) {
            Ok((s, _)) if s.success() => {}
            Ok((_, out)) => panic!("the I2P network did not come up: {out}"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Panic if a router has exited.
    pub fn check_running(&mut self) {
        for (_, r) in &mut self.routers {
            r.check_running();
        }
    }
}
