//! Prosody servers on .b32.i2p names, their slixmpp clients and `axrelay
//! run`, inside the test's network namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axrelay_test_support::e2e::{
    assert_no_placeholder, chown_to, command_guarded, password_of, prosody_command,
    prosodyctl_register, random_hex, read_lossy, wait_listening, Client, ClientLimits, Proc,
    AUTHENTICATED,
};

use crate::net::COMPONENT_PORT;
use crate::repo;

/// A login through a server in the namespace takes longer than one on a
/// local server, and the clients live through most of the scenario.
const CLIENT_LIMITS: ClientLimits = ClientLimits {
    login: Duration::from_secs(20),
    lifetime: Duration::from_secs(900),
};

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
    c2s: u16,
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
        chown_to("prosody", dir).unwrap_or_else(|e| panic!("{e}"));
        let log = dir.join("prosody.log");
        let out = dir.join("prosody.out");
        let proc = Proc::spawn(
            &format!("Prosody {name}"),
            &mut prosody_command(&config),
            &out,
            &log,
        );
        let mut p = Prosody {
            name: name.into(),
            domain: domain.into(),
            c2s,
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
        let child = p.proc.child().expect("just started");
        wait_listening(
            child,
            &log,
            &out,
            &want,
            "Failed to open server port",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("Prosody {name} {e}"));
        p
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.join("prosody.log"))
    }

    pub fn component_logins(&self) -> usize {
        self.log().matches(AUTHENTICATED).count()
    }

    /// A new account named `prefix-<random>`; returns its localpart.
    pub fn account(&self, prefix: &str) -> String {
        let user = format!("{prefix}-{}", random_hex(3));
        prosodyctl_register(&self.config, &user, &self.domain, &password_of(&user));
        user
    }

    /// Log `user` in with `resource`.
    pub fn login(&self, user: &str, resource: &str) -> Client {
        Client::login_to(self.c2s, &self.domain, user, resource, CLIENT_LIMITS)
    }

    /// Whether mod_offline holds messages for `user`.
    pub fn has_offline_messages(&self, user: &str) -> bool {
        // Prosody's file names: every byte but [A-Za-z0-9] as %xx.
        let encode = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(b).to_string(),
                    _ => format!("%{b:02x}"),
                })
                .collect::<String>()
        };
        fs::metadata(
            self.dir
                .join("data")
                .join(encode(&self.domain))
                .join("offline")
                .join(format!("{}.list", encode(user))),
        )
        .is_ok_and(|m| m.len() > 0)
    }
}

/// `axrelay run` with `conf`, written to `dir`; returns once Prosody has
/// accepted it.
pub fn start_relay(name: &str, dir: &Path, conf: &str, prosody: &Prosody, limit: Duration) -> Proc {
    fs::create_dir_all(dir).expect("relay dir");
    let config = dir.join(format!("{name}.conf"));
    fs::write(&config, conf).expect("write relay config");
    let log = dir.join(format!("{name}.log"));
    let before = prosody.component_logins();
    let mut cmd = command_guarded(env!("CARGO_BIN_EXE_axrelay"));
    cmd.arg("run").arg("-c").arg(&config);
    let mut relay = Proc::spawn(name, &mut cmd, &log, &log);
    relay.wait_accepted(
        &format!("Prosody {}", prosody.name),
        || prosody.component_logins(),
        before,
        limit,
    );
    relay
}
