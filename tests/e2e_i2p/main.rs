//! End to end over I2P: the darknet messenger on one machine.
//!
//! A private I2P network of five i2pd routers (Debian's i2pd 2.45), two
//! Prosody servers whose domains are .b32.i2p names federating through it
//! (outgoing s2s through their router's SOCKS5 proxy with mod_onions), and
//! `axrelay run` as a component of server A on a .b32.i2p name of its own.
//! Real clients: slixmpp (tests/e2e/client.py). The configuration is the one
//! of scripts/demo-i2p.sh (scripts/i2p/); docs/I2P.md explains it.
//!
//! Everything runs in a network namespace the test creates (`unshare
//! --net`): the routers talk over 198.18.0.1-5 on its loopback device (i2pd
//! before 2.51 refuses peers on 127.0.0.0/8), the servers listen on its
//! 127.0.0.1, and no packet leaves it. The test binary runs itself again
//! inside the namespace; everything it starts there is stopped when the test
//! ends, fails or is killed.
//!
//! One network for the whole binary: a single test walks through the
//! scenario. It needs root, i2pd, prosody, prosody-modules and
//! python3-slixmpp (installed with apt-get when missing). It is skipped,
//! saying so, only when i2pd cannot be installed.

mod net;
mod xmpp;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axrelay_test_support::docs::fenced_block;
use axrelay_test_support::e2e::{
    assert_no_trace_of, assert_pseudonym_at, check_relayed, install_missing, is_root, on_path,
    python, random_hex, read_lossy, run_bounded, run_ok, slixmpp_importable, wait_bounded,
    wait_until, Client, RELAY_RESOURCE,
};
use net::{Network, C2S_A, C2S_B, COMPONENT_PORT, S2S_A, S2S_B, SOCKS_A, SOCKS_B, SOCKS_RELAY};
use xmpp::{start_relay, Prosody};

/// Set in the copy of the test binary that runs inside the namespace.
const INSIDE: &str = "AXRELAY_E2E_I2P_NAMESPACE";
const TEST_NAME: &str = "darknet_messenger_over_i2p";
/// The whole scenario, network start included, must finish within this.
const LIMIT: Duration = Duration::from_secs(20 * 60);
/// A stanza that crosses I2P on an established s2s connection.
const WAIT: Duration = Duration::from_secs(30);
/// The first stanza to another server: a new s2s connection through I2P,
/// with dialback back the other way. Prosody gives up on a connection
/// after 90 s (s2s_timeout).
const FIRST_WAIT: Duration = Duration::from_secs(120);
/// A server on the clearnet, which an I2P-only server cannot reach.
const CLEARNET_SERVER: &str = "chat.example.org";

/// The repository, where scripts/i2p/ and docs/I2P.md are.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Straight to the test's stderr, past the test harness's capture: the
/// timings and the evidence belong in every run's log.
fn note(started: Instant, text: &str) {
    let line = format!(
        "e2e_i2p [{:6.1} s] {text}\n",
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[test]
fn darknet_messenger_over_i2p() {
    if std::env::var_os(INSIDE).is_some() {
        scenario();
    } else {
        run_in_namespace();
    }
}

/// What must be installed; `Err` only when i2pd itself is missing and
/// cannot be installed (the test is then skipped), a panic for the rest.
fn prerequisites() -> Result<(), String> {
    let mod_onions = Path::new("/usr/lib/prosody/modules/mod_onions/mod_onions.lua");
    let missing = || {
        let mut m = Vec::new();
        if !on_path("i2pd") {
            m.push("i2pd");
        }
        if !on_path("prosody") || !on_path("prosodyctl") {
            m.push("prosody");
        }
        if !mod_onions.is_file() {
            m.push("prosody-modules");
        }
        if !slixmpp_importable() {
            m.push("python3-slixmpp");
        }
        if !on_path("ip") {
            m.push("iproute2");
        }
        if !on_path("unshare") || !on_path("setpriv") {
            m.push("util-linux");
        }
        m
    };
    let had_i2pd = on_path("i2pd");
    // mod_onions needs bit32, which no package it depends on brings.
    let left = install_missing(missing, &["lua-bit32"]);
    if !had_i2pd && !left.contains(&"i2pd") && on_path("systemctl") {
        // On a machine with systemd the package starts the system's
        // i2pd, which would join the public network: stop it again.
        let _ = run_bounded(
            Command::new("systemctl").args(["stop", "i2pd"]),
            Duration::from_secs(60),
        );
    }
    if left.contains(&"i2pd") {
        return Err(format!(
            "i2pd is not installed and could not be installed{}",
            if is_root() {
                " with apt-get"
            } else {
                " (not root)"
            }
        ));
    }
    assert!(
        left.is_empty(),
        "the I2P end-to-end test needs {}: apt-get install {} (as root; \
         python3-slixmpp must be importable by {})",
        left.join(", "),
        left.join(" "),
        python()
    );
    assert!(
        is_root(),
        "the I2P end-to-end test needs root: it creates a network namespace"
    );
    Ok(())
}

fn note_raw(text: &str) {
    let _ = std::io::stderr().write_all(format!("e2e_i2p: {text}\n").as_bytes());
}

/// Run this test again inside a new network namespace and check it passed.
fn run_in_namespace() {
    let started = Instant::now();
    if let Err(why) = prerequisites() {
        note_raw(&format!(
            "SKIPPED {TEST_NAME}: {why}. Nothing was tested over I2P \
             (apt-get install i2pd, as root, to run it)."
        ));
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // KILL on the test thread's end: the copy inside then dies at once, and
    // what it started gets its own parent-death signal.
    let mut child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "unshare", "--net", "--"])
        .arg(&exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(INSIDE, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the test inside `unshare --net`");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, LIMIT);
    let out = out.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            assert!(
                out.contains("1 passed"),
                "the copy inside the namespace ran no test:\n{out}"
            );
            note(
                started,
                &format!("{TEST_NAME} passed over I2P (whole test, with the network)"),
            );
        }
        Some(s) => panic!("the scenario inside the namespace failed ({s}):\n{out}"),
        None => panic!("the scenario did not finish within {LIMIT:?}:\n{out}"),
    }
}

fn axrelay_secret() -> String {
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_axrelay")).arg("secret"),
        Duration::from_secs(10),
    )
    .trim()
    .to_string()
}

/// `/whoami` to the relay; the pseudonym it answers. The first one from
/// a server opens that server's s2s connection through I2P: an error
/// bounce (the connection failed) is retried, twice at most.
fn whoami(started: Instant, c: &mut Client, relay: &str, limit: Duration) -> String {
    for attempt in 1..=3 {
        c.send(relay, "/whoami");
        let m = c.expect_one_within(limit, Some(relay));
        if let Some((_, condition)) = &m.error {
            note(
                started,
                &format!(
                    "{}: /whoami attempt {attempt} bounced: {condition}",
                    c.bare()
                ),
            );
            std::thread::sleep(Duration::from_secs(10));
            continue;
        }
        let p = m
            .body
            .as_deref()
            .unwrap_or_else(|| panic!("/whoami answer without body: {m:?}"))
            .trim()
            .to_string();
        assert_pseudonym_at(&p, relay);
        return p;
    }
    panic!("{}: /whoami to {relay} bounced three times", c.bare());
}

/// What bob (on B) writes to alice (on A), and her answer.
const FIRST_EXCHANGE: (&str, &str) = (
    "Hello alice', this is bob' from server B.",
    "Hello stranger from across I2P.",
);
const THROUGH_THE_TUNNEL: (&str, &str) = (
    "This one went through the relay's own tunnel.",
    "And so does the answer.",
);

/// bob writes to alice's pseudonym `ap`, alice answers to `bp`: both
/// arrive relayed, the answer within `answer_limit`. Then neither side has
/// received the other's account, resource or server.
fn both_ways(
    (bob, alice): (&mut Client, &mut Client),
    (bp, ap): (&str, &str),
    net: &Network,
    (there, back): (&str, &str),
    answer_limit: Duration,
) {
    bob.send(ap, there);
    let m = alice.expect_one_within(WAIT, Some(bp));
    check_relayed(&m, alice, bp, there);
    alice.send(bp, back);
    let m = bob.expect_one_within(answer_limit, Some(ap));
    check_relayed(&m, bob, ap, back);
    assert_no_trace_of(bob, std::slice::from_ref(&net.b), alice);
    assert_no_trace_of(alice, std::slice::from_ref(&net.a), bob);
}

/// The first line of `log` with `needle`; panics (naming `what`) if none.
fn evidence(log: &str, needle: &str, what: &str) -> String {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{what}: no line with {needle:?} in its log"))
        .trim()
        .to_string()
}

fn relay_conf(
    r: &str,
    server: &str,
    port: u16,
    password: &str,
    hash: &str,
    store: &Path,
) -> String {
    format!(
        "[relay]\njid = {r}\nserver = {server}\nport = {port}\npassword = {password}\n\
         keepalive = 60\n\n[hash]\nsecret = {hash}\ndomain = {r}\nidentity = bare\n\
         resource = {RELAY_RESOURCE}\n\n[local_storage]\npath = {}\n",
        store.display()
    )
}

/// The whole scenario, inside the namespace.
fn scenario() {
    let t0 = Instant::now();
    net::set_up_loopback();
    let mut dir = tempfile::Builder::new()
        .prefix("axrelay-e2e-i2p-")
        .tempdir()
        .expect("temp dir");
    if std::env::var_os("AXRELAY_E2E_I2P_KEEP").is_some() {
        // Configurations and logs stay for a look afterwards.
        dir.disable_cleanup(true);
        note(t0, &format!("keeping {}", dir.path().display()));
    }
    // Prosody runs as its own user and must reach its directory.
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod temp dir");

    // --- the network ---------------------------------------------------------
    note(
        t0,
        "starting 5 i2pd routers in a network namespace of its own",
    );
    let mut net = Network::start(dir.path(), t0);
    note(
        t0,
        &format!(
            "network up: exploratory tunnels after {:.1} s, LeaseSets of A, B, R \
             and A's component port on both floodfills (and the SOCKS proxies' \
             tunnels) after {:.1} s",
            net.tunnels_after.as_secs_f64(),
            net.published_after.as_secs_f64()
        ),
    );
    if !net.restarts.is_empty() {
        note(
            t0,
            &format!(
                "(LeaseSets published only after restarting routers {:?})",
                net.restarts
            ),
        );
    }
    note(t0, &format!("server A {}", net.a));
    note(t0, &format!("server B {}", net.b));
    note(t0, &format!("relay R  {}", net.r));
    note(
        t0,
        &format!("A's component port {}:{COMPONENT_PORT}", net.component),
    );

    // --- Prosody A and B, the relay beside A ------------------------------------
    let secret = random_hex(16);
    let prosody_a = Prosody::start(
        &dir.path().join("prosody-a"),
        "A",
        &net.a,
        (C2S_A, S2S_A, SOCKS_A),
        Some((&net.r, &secret)),
    );
    let prosody_b = Prosody::start(
        &dir.path().join("prosody-b"),
        "B",
        &net.b,
        (C2S_B, S2S_B, SOCKS_B),
        None,
    );
    let alice_user = prosody_a.account("alice");
    let bob_user = prosody_b.account("bob");
    let relay_dir = dir.path().join("relay");
    let store = relay_dir.join("pseudonyms.db");
    let hash_secret = axrelay_secret();
    let mut relay = start_relay(
        "axrelay-local",
        &relay_dir,
        &relay_conf(
            &net.r,
            "127.0.0.1",
            COMPONENT_PORT,
            &secret,
            &hash_secret,
            &store,
        ),
        &prosody_a,
        Duration::from_secs(30),
    );
    note(
        t0,
        "Prosody A and B up; the relay is A's component on loopback",
    );

    let mut alice = prosody_a.login(&alice_user, &format!("phone-{}", random_hex(3)));
    let mut bob = prosody_b.login(&bob_user, &format!("laptop-{}", random_hex(3)));

    // A server that does not exist: its LeaseSet is found nowhere. Sent now,
    // the bounce checked at the end (it should come at once; a stalled
    // connection would take s2s_timeout, 90 s).
    let destination = data_encoding::HEXLOWER
        .decode(random_hex(32).as_bytes())
        .expect("hex");
    let nowhere = format!(
        "{}.b32.i2p",
        data_encoding::BASE32_NOPAD
            .encode(&destination)
            .to_lowercase()
    );
    let nobody = format!("nobody@{nowhere}");
    let nobody_sent = Instant::now();
    bob.send(&nobody, "Is anybody there?");
    // A clearnet server: with onions_tor_all every s2s connection goes to
    // i2pd's SOCKS proxy, which has no outproxy and refuses it (reply 8).
    // mod_onions does not understand that reply (docs/I2P.md): no bounce
    // comes back, so only i2pd's refusal is checked.
    let clearnet = format!("someone@{CLEARNET_SERVER}");
    bob.send(&clearnet, "Anyone on the clearnet?");

    // --- /whoami, locally and from server B across I2P ------------------------
    let ap = whoami(t0, &mut alice, &net.r, WAIT);
    note(t0, &format!("alice (A) is {ap}"));
    let bp = whoami(t0, &mut bob, &net.r, FIRST_WAIT);
    note(
        t0,
        &format!("bob (B) is {bp}: /whoami crossed I2P both ways"),
    );
    assert_ne!(ap, bp);

    // --- bob -> alice' and alice -> bob' across I2P ------------------------------
    let pseudonyms = (bp.as_str(), ap.as_str());
    both_ways(
        (&mut bob, &mut alice),
        pseudonyms,
        &net,
        FIRST_EXCHANGE,
        FIRST_WAIT,
    );
    note(t0, "bob -> alice' and alice -> bob' relayed across I2P");
    note(t0, "neither side received the other's address or server");

    // --- offline delivery across I2P ------------------------------------------------
    alice.quit();
    let away = "Written while you were offline.";
    bob.send(&ap, away);
    assert!(
        wait_until(WAIT, || prosody_a.has_offline_messages(&alice_user)),
        "Prosody A stored nothing for the offline alice within {WAIT:?}"
    );
    let mut alice = prosody_a.login(&alice_user, &format!("tablet-{}", random_hex(3)));
    let m = alice.expect_one_within(WAIT, Some(&bp));
    check_relayed(&m, &alice, &bp, away);
    note(
        t0,
        "offline delivery: alice logged in again and got bob's message",
    );

    // --- the relay reaching A's component port through I2P ----------------------
    relay.stop_cleanly(Duration::from_secs(10));
    let mut relay = start_relay(
        "axrelay-i2p",
        &relay_dir,
        &relay_conf(
            &net.r,
            &net.component,
            COMPONENT_PORT,
            &secret,
            &hash_secret,
            &store,
        )
        .replace(
            "keepalive = 60\n",
            &format!(
                "keepalive = 60\nproxy = socks5://127.0.0.1:{SOCKS_RELAY}\n\
                 connect_timeout = 120\nhandshake_timeout = 120\n"
            ),
        ),
        &prosody_a,
        Duration::from_secs(180),
    );
    let via = format!(
        "connected to {}:{COMPONENT_PORT} via SOCKS5 proxy 127.0.0.1:{SOCKS_RELAY}",
        net.component
    );
    let relay_line = evidence(&read_lossy(&relay.log), &via, "axrelay-i2p");
    note(t0, "the relay reached A's component port through I2P");
    both_ways(
        (&mut bob, &mut alice),
        pseudonyms,
        &net,
        THROUGH_THE_TUNNEL,
        WAIT,
    );
    note(t0, "both ways relayed by the relay connected through I2P");

    // --- the server that does not exist ------------------------------------------
    let limit = Duration::from_secs(150).saturating_sub(nobody_sent.elapsed());
    let m = bob
        .wait(1, limit, Some(&nobody))
        .pop()
        .unwrap_or_else(|| panic!("no bounce from {nobody} within 150 s"));
    assert_eq!(m.kind, "error", "{m:?}");
    assert_eq!(
        m.error.as_ref().map(|(_, c)| c.as_str()),
        Some("remote-server-not-found"),
        "{m:?}"
    );
    note(
        t0,
        &format!(
            "a message to a .b32.i2p name that nobody publishes bounced with \
             remote-server-not-found ({:.1} s after it was sent, or less)",
            nobody_sent.elapsed().as_secs_f64()
        ),
    );

    // --- what the logs show ---------------------------------------------------------
    net.check_running();
    relay.check_running();
    let (la, lb) = (prosody_a.log(), prosody_b.log());
    let r3 = net.router_log(3);
    let r4 = net.router_log(4);
    let r5 = net.router_log(5);
    // Prosody's line for an s2s connection `way` ("Outgoing", "Incoming").
    let s2s = |log: &str, way: &str, (from, to): (&str, &str), who: &str| {
        evidence(
            log,
            &format!("{way} s2s connection {from}->{to} complete"),
            who,
        )
    };
    let lines = [
        evidence(&r3, &format!("SOCKS: Requested {}:5269", net.b), "r3"),
        evidence(&r3, "SOCKS: v5 connection success", "r3"),
        evidence(&r4, &format!("SOCKS: Requested {}:5269", net.r), "r4"),
        evidence(&r4, "SOCKS: v5 connection success", "r4"),
        evidence(
            &r5,
            &format!("SOCKS: Requested {}:{COMPONENT_PORT}", net.component),
            "r5",
        ),
        evidence(&r5, "SOCKS: v5 connection success", "r5"),
        s2s(&la, "Outgoing", (&net.r, &net.b), "Prosody A"),
        s2s(&la, "Incoming", (&net.b, &net.r), "Prosody A"),
        s2s(&lb, "Outgoing", (&net.b, &net.r), "Prosody B"),
        s2s(&lb, "Incoming", (&net.r, &net.b), "Prosody B"),
        relay_line,
    ];
    note(t0, "the traffic crossed i2pd, as the logs show:");
    for l in lines {
        note(t0, &format!("  {l}"));
    }
    note(t0, &format!("what i2pd says about {CLEARNET_SERVER}:"));
    let asked = format!("SOCKS: Requested {CLEARNET_SERVER}:5269");
    let after_ask: Vec<&str> = r4.lines().skip_while(|l| !l.contains(&asked)).collect();
    let refusal = after_ask
        .iter()
        .find(|l| l.contains("SOCKS: v5 request failed: 8"));
    let (Some(ask), Some(refusal)) = (after_ask.first(), refusal) else {
        panic!("r4 did not refuse {CLEARNET_SERVER}: no {asked:?} followed by reply 8");
    };
    note(t0, &format!("  {}", ask.trim()));
    note(t0, &format!("  {}", refusal.trim()));
    note(t0, &format!("what the logs say about {nowhere}:"));
    let short = nowhere.trim_end_matches(".b32.i2p");
    let i2pd_lines = r4
        .lines()
        .filter(|l| l.contains(short) || l.contains("SOCKS: Error"));
    let prosody_lines = lb
        .lines()
        .filter(|l| l.contains(short) && l.contains("\tinfo\t"));
    for l in i2pd_lines.chain(prosody_lines) {
        note(t0, &format!("  {}", l.trim()));
    }
    for (name, log) in [("A", &la), ("B", &lb)] {
        let bounced: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("remote-server-not-found"))
            .filter(|l| !l.contains(&nowhere) && !l.contains(CLEARNET_SERVER))
            .collect();
        assert!(
            bounced.is_empty(),
            "Prosody {name} bounced a stanza:\n{}",
            bounced.join("\n")
        );
    }
    note(t0, "done; stopping everything");
    alice.quit();
    bob.quit();
    relay.stop_cleanly(Duration::from_secs(10));
}

/// The fenced block after `<!-- i2p-test: NAME -->` in docs/I2P.md.
fn guide_block(guide: &str, name: &str) -> String {
    fenced_block(guide, &format!("<!-- i2p-test: {name} -->"), "docs/I2P.md")
}

/// A line without its trailing Lua comment.
fn setting(line: &str) -> &str {
    line.split(" --").next().unwrap_or(line).trim()
}

/// Every setting of `block` (comments and blank lines aside) appears in
/// `rendered`, in the same order.
fn check_in_order(name: &str, block: &str, rendered: &str) {
    let mut lines = rendered.lines().map(setting);
    for line in block.lines().map(setting) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("--") {
            continue;
        }
        assert!(
            lines.any(|l| l == line),
            "docs/I2P.md, block {name}: {line:?} is not what the test runs (or not in \
             the same order); the test renders:\n{rendered}"
        );
    }
}

/// docs/I2P.md shows the configuration this test runs: r3's i2pd.conf and
/// tunnels, and Prosody A, rendered with the guide's placeholder names.
#[test]
fn guide_shows_the_configuration_the_test_runs() {
    let guide = fs::read_to_string(repo().join("docs/I2P.md")).expect("read docs/I2P.md");
    let i2pd = net::render_router(Path::new("RUN/r3"), 3, false, Some(SOCKS_A), "info");
    check_in_order("i2pd.conf r3", &guide_block(&guide, "i2pd.conf r3"), &i2pd);
    check_in_order(
        "tunnels.conf r3",
        &guide_block(&guide, "tunnels.conf r3"),
        &net::tunnels_of_a("RELAYCLIENT.b32.i2p"),
    );
    let prosody = xmpp::render_prosody(
        Path::new("RUN/prosody-a"),
        "A.b32.i2p",
        C2S_A,
        S2S_A,
        SOCKS_A,
        Some(("R.b32.i2p", "SECRET")),
        "info",
    );
    check_in_order("prosody A", &guide_block(&guide, "prosody A"), &prosody);
}
