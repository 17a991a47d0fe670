//! A real ejabberd (Debian's package) in the foreground, private to one test.
//!
//! Debian's `ejabberdctl` takes the configuration, spool and log directories
//! on its command line and sources a per-node `--ctl-config` file; there the
//! test sets a unique node name and cookie, and `ERL_DIST_PORT`, which makes
//! the node listen for `ejabberdctl` on one fixed loopback port instead of
//! registering with epmd: no epmd is started, and neither the system's
//! ejabberd nor parallel tests are touched. As root, `ejabberdctl` runs the
//! node as the `ejabberd` user, which therefore owns the temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use axrelay_test_support::e2e::{
    chown_to, ensure_installed, free_port, is_root, password_of, python, random_hex, read_lossy,
    run_bounded, signal, slixmpp_importable, spawn_into, start_retrying, succeeds, tail,
    wait_bounded, wait_listening, wait_until, Relay, RelayOptions, ServerSetup, COMPONENT, HOST,
};

const EJABBERDCTL: &str = "/usr/sbin/ejabberdctl";
const BALANCING_BEGIN: &str = "# --- begin: several relay instances ---";
const BALANCING_END: &str = "# --- end: several relay instances ---";
/// Every Erlang VM started through the control file halts after 15
/// minutes: a node left behind by a test process that was killed ends
/// itself. (No spaces: ejabberdctl splits ERL_OPTIONS on them.)
const SAFETY_NET: &str = "timer:apply_after(900000,erlang,halt,[])";
const COMPONENT_ACCEPTED: &str = "Accepted external component handshake authentication for";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// ejabberd, memcached and python3-slixmpp, installed with apt-get when
/// missing (as root), or a panic saying what to install. Never skips.
fn prerequisites() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    ensure_installed(
        &DONE,
        || {
            let mut m = Vec::new();
            if !Path::new(EJABBERDCTL).is_file() {
                m.push("ejabberd");
            }
            if !succeeds(Command::new("memcached").arg("-V")) {
                m.push("memcached");
            }
            if !slixmpp_importable() {
                m.push("python3-slixmpp");
            }
            m
        },
        |left| {
            format!(
                "the ejabberd end-to-end tests need {}: apt-get install {} \
                 (as root; python3-slixmpp must be importable by {})",
                left.join(", "),
                left.join(" "),
                python()
            )
        },
    );
}

/// Fill in scripts/ejabberd.yml.in. `instances` > 1 keeps the
/// `domain_balancing` block with that `component_number`; 1 removes it.
pub fn render_config(
    c2s_port: u16,
    component_port: u16,
    secret: &str,
    instances: usize,
    log_level: &str,
) -> String {
    let template = fs::read_to_string(repo().join("scripts/ejabberd.yml.in"))
        .expect("read scripts/ejabberd.yml.in");
    let begin = template
        .find(BALANCING_BEGIN)
        .expect("the template marks its domain_balancing block");
    let end = template[begin..]
        .find(BALANCING_END)
        .map(|e| begin + e + BALANCING_END.len())
        .expect("the domain_balancing block is closed");
    let template = if instances > 1 {
        template
    } else {
        format!("{}{}", &template[..begin], &template[end..])
    };
    let text = template
        .replace("@C2S_PORT@", &c2s_port.to_string())
        .replace("@COMPONENT_PORT@", &component_port.to_string())
        .replace("@COMPONENT@", COMPONENT)
        .replace("@COMPONENT_SECRET@", secret)
        .replace("@INSTANCES@", &instances.to_string())
        .replace("@LOG_LEVEL@", log_level);
    // Placeholders in the header comment are described, not filled.
    let body = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    let left: Vec<&str> = body
        .flat_map(|l| l.split('@').skip(1).step_by(2))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(
        left.is_empty(),
        "placeholders left in the ejabberd template: {left:?}"
    );
    text
}

/// An ejabberd node serving `localhost` and the component domain.
pub struct Ejabberd {
    pub c2s_port: u16,
    pub component_port: u16,
    pub component_secret: String,
    pub node: String,
    dir: TempDir,
    child: Option<Child>,
}

impl Ejabberd {
    /// Start with `instances` component connections allowed for the relay
    /// domain (1: no `domain_balancing`).
    pub fn start(instances: usize) -> Ejabberd {
        prerequisites();
        assert!(
            is_root(),
            "the ejabberd end-to-end tests must run as root: Debian's ejabberdctl \
             runs the node as the ejabberd user and only root may switch to it"
        );
        start_retrying("ejabberd", || Ejabberd::try_start(instances))
    }

    fn try_start(instances: usize) -> Result<Ejabberd, String> {
        let ServerSetup {
            dir,
            c2s_port,
            component_port,
            component_secret,
        } = ServerSetup::new("ejabberd")?;
        let dist_port = free_port();
        let node = format!("axrelay-e2e-{}@localhost", random_hex(6));
        fs::create_dir_all(dir.path().join("spool")).map_err(|e| e.to_string())?;
        fs::create_dir_all(dir.path().join("logs")).map_err(|e| e.to_string())?;
        fs::write(
            dir.path().join("ejabberd.yml"),
            render_config(
                c2s_port,
                component_port,
                &component_secret,
                instances,
                "info",
            ),
        )
        .map_err(|e| e.to_string())?;
        // Sourced by ejabberdctl (bash) for the node and for every command.
        fs::write(
            dir.path().join("ejabberdctl.cfg"),
            format!(
                "ERLANG_NODE={node}\n\
                 ERL_DIST_PORT={dist_port}\n\
                 INET_DIST_INTERFACE=127.0.0.1\n\
                 ERL_OPTIONS=\"-setcookie {} -eval {}\"\n\
                 EJABBERD_BYPASS_WARNINGS=true\n",
                random_hex(16),
                SAFETY_NET,
            ),
        )
        .map_err(|e| e.to_string())?;
        chown_to("ejabberd", dir.path())?;
        let child = spawn_into(
            Ejabberd::ctl_command(dir.path()).arg("foreground"),
            &dir.path().join("ejabberd.out"),
        )?;
        let mut e = Ejabberd {
            c2s_port,
            component_port,
            component_secret,
            node,
            dir,
            child: Some(child),
        };
        let want = [
            format!("Start accepting TCP connections at 127.0.0.1:{c2s_port} for ejabberd_c2s"),
            format!(
                "Start accepting TCP connections at 127.0.0.1:{component_port} for ejabberd_service"
            ),
        ];
        let (log, out) = (e.log_path(), e.dir.path().join("ejabberd.out"));
        wait_listening(
            e.child.as_mut().unwrap(),
            &log,
            &out,
            &want,
            "eaddrinuse",
            Duration::from_secs(60),
        )
        .map_err(|e| format!("ejabberd {e}"))?;
        Ok(e)
    }

    /// `ejabberdctl` with this node's directories and control file.
    fn ctl_command(dir: &Path) -> Command {
        let mut cmd = Command::new(EJABBERDCTL);
        cmd.arg("--config")
            .arg(dir.join("ejabberd.yml"))
            .arg("--ctl-config")
            .arg(dir.join("ejabberdctl.cfg"))
            .arg("--spool")
            .arg(dir.join("spool"))
            .arg("--logs")
            .arg(dir.join("logs"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
        cmd
    }

    /// Run one `ejabberdctl` command against this node; its output.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let (s, out) = run_bounded(
            Ejabberd::ctl_command(self.dir.path()).args(args),
            Duration::from_secs(60),
        )?;
        if s.success() {
            Ok(out)
        } else {
            Err(format!("ejabberdctl {args:?}: {s}\n{out}"))
        }
    }

    /// `ejabberdctl register USER localhost PASSWORD`.
    pub fn register(&self, user: &str) {
        self.ctl(&["register", user, HOST, &password_of(user)])
            .unwrap_or_else(|e| panic!("{e}\n{}", tail(&self.log_path(), 20)));
    }

    /// A new account named `prefix-<random>`; returns its localpart.
    pub fn account(&self, prefix: &str) -> String {
        let user = format!("{prefix}-{}", random_hex(4));
        self.register(&user);
        user
    }

    /// A relay instance configured for this node's component port (not
    /// started); it logs the JIDs it serves, which the tests read.
    pub fn relay(&self, name: &str, runtime: &str, opts: &RelayOptions) -> Relay {
        Relay::configure(
            Path::new(env!("CARGO_BIN_EXE_axrelay")),
            name,
            self.component_port,
            &self.component_secret,
            runtime,
            RelayOptions {
                log_sensitive: true,
                ..opts.clone()
            },
        )
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("logs").join("ejabberd.log")
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The log's warning and error lines.
    pub fn problems(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                l.contains(" [warning] ") || l.contains(" [error] ") || l.contains(" [critical] ")
            })
            .map(str::to_owned)
            .collect()
    }

    /// Panic if ejabberd logged a warning or an error: a stanza the relay
    /// wrote that ejabberd did not like shows up there.
    pub fn assert_no_problems(&self) {
        let p = self.problems();
        assert!(p.is_empty(), "ejabberd logged:\n{}", p.join("\n"));
    }

    /// How often a component has completed the handshake.
    pub fn component_logins(&self) -> usize {
        self.log().matches(COMPONENT_ACCEPTED).count()
    }

    /// Wait until `n` component handshakes in all have been accepted.
    pub fn wait_component_logins(&self, n: usize, relays: &mut [&mut Relay]) {
        let ok = wait_until(Duration::from_secs(30), || {
            for r in relays.iter_mut() {
                r.check_running();
            }
            self.component_logins() >= n
        });
        assert!(
            ok,
            "ejabberd accepted {} component handshake(s) within 30 s, expected {n}:\n{}",
            self.component_logins(),
            tail(&self.log_path(), 30)
        );
    }

    /// `ejabberdctl stop`, then wait for the node to exit. Whatever
    /// happens, no VM of this node is left running: it runs as another user
    /// in another session, so the end of the `ejabberdctl` process does not
    /// end it.
    pub fn stop(&mut self) {
        if !self.vm_pids().is_empty() {
            if let Err(e) = self.ctl(&["stop"]) {
                eprintln!("ejabberdctl stop: {e}");
            }
        }
        if let Some(mut child) = self.child.take() {
            if wait_bounded(&mut child, Duration::from_secs(30)).is_none() {
                eprintln!("ejabberd did not stop within 30 s");
            }
        }
        if wait_until(Duration::from_secs(10), || self.vm_pids().is_empty()) {
            return;
        }
        eprintln!("killing the VM of ejabberd node {}", self.node);
        for pid in self.vm_pids() {
            signal(pid, "KILL");
        }
        if !wait_until(Duration::from_secs(10), || self.vm_pids().is_empty()) {
            eprintln!("the VM of ejabberd node {} survived SIGKILL", self.node);
        }
    }

    /// Processes started as this node (`-sname NODE`): its Erlang VM.
    fn vm_pids(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                    return false;
                };
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"beam.smp"))
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"-sname" && w[1] == self.node.as_bytes())
            })
            .collect()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        self.stop();
        if panicking {
            eprintln!(
                "---- ejabberd log (last 120 lines) ----\n{}\n---- end of ejabberd log ----",
                tail(&self.log_path(), 120)
            );
        }
    }
}
