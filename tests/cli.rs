//! The `axrelay` binary, run as an operator runs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use axrelay::store::FileStore;
use axrelay_proto::{Pseudonymizer, Store, StoreCodec};
use axrelay_test_support::e2e::free_port;
use data_encoding::BASE64;

const BIN: &str = env!("CARGO_BIN_EXE_axrelay");

/// The `[hash] secret` of the 2014 sample.conf: SPEC §3's vectors use it.
const SAMPLE_SECRET: &str = "2Wr0rSpTmncJe2UW/t6etJx0NqVBHS1wyFZI0zAdxS4=";
const SAMPLE_ENCRYPT: &str = "zTLiKAKs6uGmq74enXRVOY4b2Va3XBeeG5r0tOBTObQ=";
const GOOD_SECRET: &str = "a-test-secret-of-more-than-16-bytes";
const GOOD_ENCRYPT: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

const VECTORS: [(&str, &str); 3] = [
    (
        "alice@example.com/laptop",
        "6k6gwuvbgn4cmo6f7cv2smwcxafcg6uqsok7mppvsec5a",
    ),
    (
        "alice@example.com/phone",
        "nsabsapqn7a334u3wgagrzll5k5icsnkdsdacb24vvkgc",
    ),
    (
        "alice@example.com",
        "zi36rtka6iz3zuszk5un4svb4m4qvtsiqacao56f7bspy",
    ),
];

/// The 2014 sample.conf, as published.
const SAMPLE_2014: &str = "\
[relay]
jid = axr.lantern.io
server = 127.0.0.1
port = 5347
password = secret

[hash]
secret = 2Wr0rSpTmncJe2UW/t6etJx0NqVBHS1wyFZI0zAdxS4=
domain = axr.lantern.io

[memcache]
servers = localhost
tcp_nodelay = True
ketama = True
noblock = True
num_replicas = 1
encrypt = zTLiKAKs6uGmq74enXRVOY4b2Va3XBeeG5r0tOBTObQ=
#username = axr
#password = b00z3C4$H

[local_storage]
";

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// A valid configuration: relay at `port`, store as given.
fn config(port: u16, hash_extra: &str, store: &str) -> String {
    format!(
        "[relay]\njid = axr.example.org\nserver = 127.0.0.1\nport = {port}\n\
         password = a-long-component-password\nkeepalive = 60\n\n\
         [hash]\nsecret = {GOOD_SECRET}\ndomain = axr.example.org\n{hash_extra}\n{store}\n"
    )
}

fn axrelay(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn secret_prints_base64_of_32_random_bytes() {
    let a = axrelay(&["secret"]);
    let b = axrelay(&["secret"]);
    assert_eq!(code(&a), 0);
    let line = text(&a.stdout);
    assert_eq!(line.len(), 45, "{line:?}");
    let bytes = BASE64.decode(line.trim_end().as_bytes()).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_ne!(a.stdout, b.stdout);
}

#[test]
fn hash_prints_the_spec_vectors() {
    let dir = Dir::new();
    let conf = dir.write(
        "a.conf",
        &format!("[hash]\nsecret = {SAMPLE_SECRET}\ndomain = axr.lantern.io\nidentity = full\n"),
    );
    let jids: Vec<&str> = VECTORS.iter().map(|(j, _)| *j).collect();
    let mut args = vec!["hash", "-c", p(&conf)];
    args.extend(&jids);
    let out = axrelay(&args);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let expected: String = VECTORS
        .iter()
        .map(|(jid, local)| format!("{jid} => {local}@axr.lantern.io\n"))
        .collect();
    assert_eq!(text(&out.stdout), expected);
    // The published secret is allowed here, with a warning.
    let err = text(&out.stderr);
    assert!(err.contains("[hash] secret"), "{err}");
    assert!(err.contains("published"), "{err}");
}

#[test]
fn hash_normalises_typed_jids_and_uses_bare_identities_by_default() {
    let dir = Dir::new();
    let conf = dir.write(
        "a.conf",
        &format!("[hash]\nsecret = {SAMPLE_SECRET}\ndomain = axr.lantern.io\n"),
    );
    let out = axrelay(&[
        "hash",
        "-c",
        p(&conf),
        "Alice@EXAMPLE.com/phone",
        "alice@example.com/laptop",
    ]);
    assert_eq!(code(&out), 0);
    let bare = VECTORS[2].1;
    assert_eq!(
        text(&out.stdout),
        format!(
            "alice@example.com/phone => {bare}@axr.lantern.io\n\
             alice@example.com/laptop => {bare}@axr.lantern.io\n"
        )
    );
    // Not a JID: a usage error, the others still printed.
    let out = axrelay(&["hash", "-c", p(&conf), "a@@b", "alice@example.com"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("'a@@b' is not a valid JID"));
    assert_eq!(
        text(&out.stdout),
        format!("alice@example.com => {bare}@axr.lantern.io\n")
    );
}

#[test]
fn config_errors_name_file_section_and_key() {
    let dir = Dir::new();
    let conf = dir.write(
        "bad.conf",
        &config(5347, "", "").replace("port = 5347", "port = abc"),
    );
    let out = axrelay(&["run", "-c", p(&conf)]);
    assert_eq!(code(&out), 2);
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "axrelay: {}: [relay] port: expected a port number from 1 to 65535, got 'abc'",
            conf.display()
        )
    );

    let missing = dir.path("none.conf");
    let out = axrelay(&["run", "-c", p(&missing)]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains(&format!("axrelay: {}: cannot read", missing.display())));

    let conf = dir.write("nosecret.conf", "[hash]\ndomain = axr.example.org\n");
    let out = axrelay(&["hash", "-c", p(&conf), "a@b.c"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("[hash] secret: missing"));

    let conf = dir.write(
        "syntax.conf",
        "[hash]\nsecret = x\nthis line is no setting\n",
    );
    let out = axrelay(&["hash", "-c", p(&conf), "a@b.c"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains(": line 3: "),
        "{}",
        text(&out.stderr)
    );

    let conf = dir.write(
        "key.conf",
        &config(
            5347,
            "",
            "[local_storage]\npath = x.db\nencrypt = c2hvcnQ=\n",
        ),
    );
    let out = axrelay(&["run", "-c", p(&conf)]);
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("[local_storage] encrypt: expected base64 of exactly 32 bytes"),
        "{err}"
    );
}

#[test]
fn unknown_and_2014_keys_are_warned_by_name() {
    let dir = Dir::new();
    let conf = dir.write(
        "sample.conf",
        &format!(
            "{}\n[extras]\nx = 1\n",
            SAMPLE_2014.replace("[relay]\n", "[relay]\ncolour = blue\n")
        ),
    );
    let out = axrelay(&["hash", "-c", p(&conf), "alice@example.com"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for name in [
        "tcp_nodelay",
        "ketama",
        "noblock",
        "num_replicas",
        "colour",
        "[extras]",
    ] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
    assert!(err.contains("WARN"), "{err}");
    // -q keeps warnings out.
    let out = axrelay(&["hash", "-q", "-c", p(&conf), "alice@example.com"]);
    assert_eq!(code(&out), 0);
    assert_eq!(text(&out.stderr), "");
}

/// `run` with this configuration must refuse at once, naming the key.
fn refused(dir: &Dir, conf_text: &str, expect: &str) {
    let conf = dir.write("refused.conf", conf_text);
    let started = Instant::now();
    let out = axrelay(&["run", "-c", p(&conf)]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = text(&out.stderr);
    assert!(err.contains(expect), "expected {expect:?} in {err}");
}

#[test]
fn run_refuses_published_and_short_secrets_and_a_foreign_domain() {
    let dir = Dir::new();
    let good = config(9, "", "");
    refused(
        &dir,
        &good.replace(GOOD_SECRET, SAMPLE_SECRET),
        "[hash] secret: this value was published",
    );
    refused(
        &dir,
        &good.replace(GOOD_SECRET, "B1GS3kR1T"),
        "[hash] secret: this value was published",
    );
    refused(
        &dir,
        &good.replace(GOOD_SECRET, "0123456789"),
        "[hash] secret: 10 bytes is too short",
    );
    refused(
        &dir,
        &good.replace("domain = axr.example.org", "domain = axr.other.org"),
        "[hash] domain: 'axr.other.org' differs from [relay] jid 'axr.example.org'",
    );
    refused(
        &dir,
        &config(
            9,
            "",
            &format!("[memcache]\nservers = 127.0.0.1:9\nencrypt = {SAMPLE_ENCRYPT}\n"),
        ),
        "[memcache] encrypt: this value was published",
    );
    refused(
        &dir,
        &config(
            9,
            "",
            &format!("[local_storage]\nencrypt = {SAMPLE_ENCRYPT}\n"),
        ),
        "[local_storage] encrypt: this value was published",
    );
    // The whole 2014 sample: both of its secrets are named.
    let conf = dir.write("sample.conf", SAMPLE_2014);
    let out = axrelay(&["run", "-c", p(&conf)]);
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("[hash] secret") && err.contains("[memcache] encrypt"),
        "{err}"
    );
}

fn pseudonym_of(identity: &str) -> String {
    Pseudonymizer::new(GOOD_SECRET.as_bytes()).localpart(identity) + "@axr.example.org"
}

#[test]
fn store_then_lookup_with_a_file_store_across_processes() {
    let dir = Dir::new();
    let db = dir.path("pseudonyms.db");
    let conf = dir.write(
        "a.conf",
        &config(
            9,
            "",
            &format!(
                "[local_storage]\npath = {}\nencrypt = {GOOD_ENCRYPT}\n",
                db.display()
            ),
        ),
    );
    let alice = pseudonym_of("alice@example.com");
    let bob = pseudonym_of("bob@example.net");
    let out = axrelay(&[
        "hash",
        "--store",
        "-c",
        p(&conf),
        "alice@example.com/phone",
        "bob@example.net",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("alice@example.com/phone => {alice}\nbob@example.net => {bob}\n")
    );

    // A new process finds both; an unknown pseudonym and a malformed one
    // are None (status 4). A bare localpart means one at the relay's domain.
    let stranger = pseudonym_of("carol@example.org");
    let bob_local = bob.split('@').next().unwrap();
    let out = axrelay(&[
        "hash",
        "-l",
        "-c",
        p(&conf),
        &alice,
        &stranger,
        bob_local,
        "nobody@axr.example.org",
    ]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{alice} => alice@example.com\n{stranger} => None\n{bob_local} => bob@example.net\n\
             nobody@axr.example.org => None\n"
        )
    );

    // The file names neither person nor pseudonym (encrypt is set).
    let raw = std::fs::read(&db).unwrap();
    for needle in ["alice", "bob@", alice.split('@').next().unwrap()] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle}"
        );
    }
}

#[test]
fn lookup_ignores_a_poisoned_entry() {
    let dir = Dir::new();
    let db = dir.path("p.db");
    let domain = "axr.example.org";
    let local = Pseudonymizer::new(GOOD_SECRET.as_bytes()).localpart("alice@example.com");
    {
        // Someone with write access to the store points Alice's pseudonym
        // at Mallory.
        let codec = StoreCodec::new(None);
        let store = FileStore::open(&db).unwrap();
        store
            .put(
                &codec.key(&local, domain),
                &codec.seal(&local, domain, "mallory@example.com"),
                0,
            )
            .unwrap();
    }
    let conf = dir.write(
        "a.conf",
        &config(
            9,
            "",
            &format!("[local_storage]\npath = {}\n", db.display()),
        ),
    );
    let out = axrelay(&[
        "hash",
        "--lookup",
        "-c",
        p(&conf),
        &format!("{local}@{domain}"),
    ]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{local}@{domain} => None\n"));
}

#[test]
fn help_and_version() {
    for (args, statuses) in [
        (&["help"][..], &["0 ", "1 ", "2 ", "3 ", "4 "][..]),
        (&["--help"], &["0 ", "1 ", "2 ", "3 ", "4 "]),
        (&["run", "--help"], &["0 ", "1 ", "2 ", "3 "]),
        (&["help", "hash"], &["0 ", "1 ", "2 ", "4 "]),
        (&["check", "--help"], &["0 ", "1 ", "2 "]),
    ] {
        let out = axrelay(args);
        assert_eq!(code(&out), 0, "{args:?}");
        let help = text(&out.stdout);
        let (_, listed) = help
            .split_once("Exit status:\n")
            .unwrap_or_else(|| panic!("{args:?}: {help}"));
        let listed: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
            .map(|l| &l[..2])
            .collect();
        assert_eq!(listed, statuses, "{args:?}: {help}");
    }
    assert!(text(&axrelay(&["run", "--help"]).stdout).contains("3  the XMPP server refused"));
    let run_help = text(&axrelay(&["run", "--help"]).stdout);
    for flag in [
        "--config",
        "--debug",
        "--quiet",
        "--log-file",
        "--log-sensitive",
        "/etc/axrelay.conf",
    ] {
        assert!(run_help.contains(flag), "{flag}: {run_help}");
    }
    let hash_help = text(&axrelay(&["hash", "--help"]).stdout);
    for flag in ["-S, --store", "-l, --lookup"] {
        assert!(hash_help.contains(flag), "{flag}: {hash_help}");
    }
    let out = axrelay(&["--version"]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        text(&out.stdout),
        format!("axrelay {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(code(&axrelay(&["frobnicate"])), 2);
    assert_eq!(code(&axrelay(&["run", "-d", "-q"])), 2);
}

#[test]
fn warnings_and_fatal_errors_reach_the_log_file() {
    let dir = Dir::new();
    let log = dir.path("axrelay.log");
    let conf = dir.write("a.conf", &format!("{SAMPLE_2014}\n"));
    let out = axrelay(&["run", "-c", p(&conf), "--log-file", p(&log)]);
    assert_eq!(code(&out), 2);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("tcp_nodelay"), "{logged}");
    assert!(
        logged.contains("ERROR") && logged.contains("[hash] secret"),
        "{logged}"
    );
    // On stderr, the fatal line is plain, once.
    let err = text(&out.stderr);
    assert_eq!(err.matches("[hash] secret").count(), 1, "{err}");

    let out = axrelay(&[
        "run",
        "-c",
        p(&conf),
        "--log-file",
        p(&dir.path("no/such/dir.log")),
    ]);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("cannot open the log file"));
}

// ---- `run` against a scripted server ----

/// Read from `s` until `needle` shows up (or the peer closes).
fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&got).contains(needle) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    text(&got)
}

const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
     xmlns:stream='http://etherx.jabber.org/streams' id='cli-test-1' from='axr.example.org'>";

/// Accept one component connection and answer its handshake with `answer`.
fn serve_handshake(listener: &TcpListener, answer: &str) -> TcpStream {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let header = read_until(&mut s, "jabber:component:accept");
    assert!(
        header.contains("to='axr.example.org'") || header.contains("to=\"axr.example.org\""),
        "{header}"
    );
    s.write_all(SERVER_HEADER.as_bytes()).unwrap();
    let handshake = read_until(&mut s, "</handshake>");
    assert!(handshake.contains("<handshake>"), "{handshake}");
    s.write_all(answer.as_bytes()).unwrap();
    s
}

fn spawn_run(conf: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "-c", p(conf)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("axrelay did not exit within {limit:?}");
        }
        sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

#[test]
fn a_refused_handshake_exits_3_with_either_runtime() {
    for (runtime, condition, advice) in [
        ("smol", "not-authorized", "check [relay] password in "),
        ("blocking", "not-authorized", "check [relay] password in "),
        ("smol", "host-unknown", "check [relay] jid in "),
        ("blocking", "host-unknown", "check [relay] jid in "),
    ] {
        let dir = Dir::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conf = dir.write(
            "a.conf",
            &config(port, "", "").replace(
                "keepalive = 60",
                &format!("keepalive = 60\nruntime = {runtime}"),
            ),
        );
        let mut child = spawn_run(&conf);
        let _s = serve_handshake(
            &listener,
            &format!(
                "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                 </stream:error></stream:stream>"
            ),
        );
        let status = wait_with_deadline(&mut child, Duration::from_secs(20));
        let err = stderr_of(&mut child);
        assert_eq!(status, 3, "{runtime} {condition}: {err}");
        assert!(err.contains("axrelay: "), "{err}");
        assert!(err.contains(&format!("({condition})")), "{err}");
        // The advice names the key to fix and the file it is in.
        assert!(err.contains(&format!("{advice}{}", p(&conf))), "{err}");
    }
}

#[test]
fn sigterm_closes_the_stream_and_exits_0_with_either_runtime() {
    for runtime in ["smol", "blocking"] {
        let dir = Dir::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conf = dir.write(
            "a.conf",
            &config(port, "", "").replace(
                "keepalive = 60",
                &format!("keepalive = 60\nruntime = {runtime}"),
            ),
        );
        let mut child = spawn_run(&conf);
        let mut s = serve_handshake(&listener, "<handshake/>");
        // Give the relay a moment to come online, then stop it.
        sleep(Duration::from_millis(300));
        signal(&child, "TERM");
        let tail = read_until(&mut s, "</stream:stream>");
        assert!(tail.contains("</stream:stream>"), "{runtime}: {tail}");
        let _ = s.write_all(b"</stream:stream>");
        drop(s);
        let status = wait_with_deadline(&mut child, Duration::from_secs(10));
        let err = stderr_of(&mut child);
        assert_eq!(status, 0, "{runtime}: {err}");
        // Nothing at the default level names a person.
        assert!(!err.contains('@'), "{err}");
    }
}

#[test]
fn sigint_stops_a_relay_that_cannot_reach_its_server() {
    let dir = Dir::new();
    // Nothing listens here: the relay keeps retrying until stopped.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.write("a.conf", &config(port, "", ""));
    let mut child = spawn_run(&conf);
    sleep(Duration::from_millis(500));
    signal(&child, "INT");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status, 0, "{}", stderr_of(&mut child));
}

#[test]
fn hash_needs_an_argument() {
    let dir = Dir::new();
    let conf = dir.write("a.conf", &config(9, "", ""));
    let out = axrelay(&["hash", "-c", p(&conf)]);
    assert_eq!(code(&out), 2);
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: the following required arguments were not provided:\n  <JID>..."),
        "{err}"
    );
    assert!(err.contains("Usage: axrelay hash"), "{err}");
}

#[test]
fn lookup_of_an_unknown_pseudonym_exits_4() {
    let dir = Dir::new();
    let db = dir.path("p.db");
    let conf = dir.write(
        "a.conf",
        &config(
            9,
            "",
            &format!("[local_storage]\npath = {}\n", db.display()),
        ),
    );
    let alice = pseudonym_of("alice@example.com");
    let out = axrelay(&["hash", "-q", "-S", "-c", p(&conf), "alice@example.com"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = axrelay(&["hash", "-l", "-c", p(&conf), &alice]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{alice} => alice@example.com\n"));
    // One found and one not: 4, and both lines printed.
    let bob = pseudonym_of("bob@example.com");
    let out = axrelay(&["hash", "-l", "-c", p(&conf), &alice, &bob]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{alice} => alice@example.com\n{bob} => None\n")
    );
}

/// A file created by the binary, outside systemd (umask 022 here).
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn log_file_and_database_are_created_private() {
    let dir = Dir::new();
    let db = dir.path("pseudonyms.db");
    let log = dir.path("axrelay.log");
    let conf = dir.write(
        "a.conf",
        &config(
            9,
            "",
            &format!("[local_storage]\npath = {}\n", db.display()),
        ),
    );
    let out = Command::new(BIN)
        .args([
            "hash",
            "-S",
            "--log-file",
            p(&log),
            "-c",
            p(&conf),
            "alice@example.com",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(mode_of(&log), 0o600);
    assert_eq!(mode_of(&db), 0o600);
}

/// `run` and `check` refuse `conf_text` with status 2 and exactly `expect`
/// (after the file's path).
fn refused_with(conf_text: &str, expect: &str) {
    let dir = Dir::new();
    let conf = dir.write("a.conf", conf_text);
    let want = format!("{}: {expect}", conf.display());
    let out = axrelay(&["run", "-c", p(&conf)]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), format!("axrelay: {want}\n"));
    let out = axrelay(&["check", "-c", p(&conf)]);
    assert_eq!(code(&out), 2, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!("\nerror: {want}\n")),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn config_gotchas_are_refused_with_exact_messages() {
    let good = config(5347, "", "");
    refused_with(
        &good.replace("server = 127.0.0.1", "server = \"127.0.0.1\""),
        "line 3: [relay] server: the value is in quotes, which would be part of it (values are \
         taken as written); remove the quotes",
    );
    refused_with(
        &good.replace(
            &format!("secret = {GOOD_SECRET}"),
            &format!("secret = '{GOOD_SECRET}'"),
        ),
        "line 9: [hash] secret: the value is in quotes, which would be part of it (values are \
         taken as written); remove the quotes",
    );
    refused_with(
        &good.replace("keepalive = 60", "keepalive = 60\nPort = 5348"),
        "line 7: [relay] port: repeated (first at line 4); keep one of the two",
    );
    refused_with(
        &format!("{good}[relay]\nserver = ::1\n"),
        "line 13: [relay] repeated (first at line 1); merge the two sections into one",
    );
    refused_with(
        &format!("{good}[limits]\nmax_stanza_bytes = 99999999999\n"),
        "[limits] max_stanza_bytes: expected a whole number from 4096 to 16777216, got \
         '99999999999'",
    );
    refused_with(
        &format!("{good}[limits]\nmax_depth = 2\n"),
        "[limits] max_depth: expected a whole number from 4 to 256, got '2'",
    );
    refused_with(
        &good.replace("keepalive = 60", "keepalive = 0"),
        "[relay] keepalive: expected a number of seconds from 1 to 86400, got '0'",
    );
    refused_with(
        &good.replace("port = 5347", "port = 65536"),
        "[relay] port: expected a port number from 1 to 65535, got '65536'",
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = Dir::new();
    let conf = dir.write("bom.conf", &format!("\u{feff}{}", config(9, "", "")));
    let out = axrelay(&["hash", "-c", p(&conf), "alice@example.com"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "alice@example.com => {}\n",
            pseudonym_of("alice@example.com")
        )
    );
}

#[test]
fn a_2014_file_without_identity_draws_a_warning() {
    let dir = Dir::new();
    let conf = dir.write("sample.conf", SAMPLE_2014);
    let out = axrelay(&["hash", "-c", p(&conf), "alice@example.com"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: [hash] identity: not set in a file of the 2014 axrelay's layout; pseudonyms \
             are then made from bare JIDs and differ from the 2014 tool's, which hashed full \
             JIDs: add `identity = full` to keep the old pseudonyms (or `identity = bare` to \
             confirm new ones)",
            conf.display()
        )),
        "{err}"
    );
}

#[test]
fn check_reports_config_store_and_server() {
    let dir = Dir::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let db = dir.path("pseudonyms.db");
    let store = format!(
        "[local_storage]\npath = {}\nencrypt = {GOOD_ENCRYPT}\n",
        db.display()
    );
    let control = dir.path("control");
    let conf = dir.write(
        "a.conf",
        &config(port, "", &store).replace(
            "keepalive = 60\n",
            &format!("keepalive = 60\ncontrol = {}\n", control.display()),
        ),
    );
    let out = axrelay(&["check", "-c", p(&conf)]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        format!(
            "checking {conf}\n\
             config: ok: component axr.example.org, bare-JID pseudonyms, server \
             127.0.0.1:{port}\n\
             control: ok: socket {control}\n\
             store: ok: database file {db} does not exist yet; `run` creates it in {dir}, which \
             must be writable by the user it runs as\n\
             server: 127.0.0.1 resolves to 127.0.0.1:{port}\n\
             server: ok: connected to 127.0.0.1:{port}\n\
             all checks passed\n",
            conf = conf.display(),
            control = control.display(),
            db = db.display(),
            dir = dir.0.path().display(),
        )
    );
    assert!(!db.exists(), "check created the database");
    assert_eq!(text(&out.stderr), "");

    // A database a running relay holds is in use, which is no failure.
    let held = FileStore::open(&db).unwrap();
    let out = axrelay(&["check", "-c", p(&conf)]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!(
            "store: ok: database file {} is in use by a running relay (not opened)\n",
            db.display()
        )),
        "{}",
        text(&out.stdout)
    );
    drop(held);

    // An existing database opens; with the server gone the status is 1.
    drop(listener);
    let out = axrelay(&["check", "-c", p(&conf)]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains(&format!(
            "store: ok: database file {} opens\n",
            db.display()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "server: error: cannot connect to 127.0.0.1:{port}: Connection refused"
        )),
        "{report}"
    );
    assert!(report.ends_with("some checks failed\n"), "{report}");

    // Through a proxy that is not there.
    let conf = dir.write(
        "proxy.conf",
        &config(port, "", "").replace("keepalive = 60", "proxy = socks5://127.0.0.1:9"),
    );
    let out = axrelay(&["check", "-c", p(&conf)]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains("proxy: 127.0.0.1 resolves to 127.0.0.1:9\n"),
        "{report}"
    );
    assert!(
        report.contains("server: error: cannot connect to SOCKS5 proxy 127.0.0.1:9"),
        "{report}"
    );

    // A file that cannot be read is a configuration error.
    let out = axrelay(&["check", "-c", p(&dir.path("none.conf"))]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stdout).contains("error: ") && text(&out.stdout).contains("cannot read"),
        "{}",
        text(&out.stdout)
    );
}

// ---- metrics and `status` ----

/// `GET /metrics` from the relay: the body.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

/// Scrape until `done` holds for the text (the session publishes once a
/// second).
fn scrape_until(port: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(text) = scrape(port) {
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{what}:\n{text}");
        }
        assert!(Instant::now() < deadline, "{what}: no answer");
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_move_while_relaying_and_status_prints_them() {
    for runtime in ["smol", "blocking"] {
        let dir = Dir::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mport = free_port();
        let conf = dir.write(
            "a.conf",
            &format!(
                "{}\n[metrics]\nlisten = 127.0.0.1:{mport}\n",
                config(port, "", "").replace(
                    "keepalive = 60",
                    &format!("keepalive = 60\nruntime = {runtime}"),
                )
            ),
        );
        let mut child = Command::new(BIN)
            .args(["run", "-d", "-c", p(&conf)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut s = serve_handshake(&listener, "<handshake/>");
        let first = scrape_until(mport, "online", |t| {
            t.contains("axrelay_connection_state{state=\"online\"} 1")
        });
        assert_eq!(series(&first, "axrelay_relayed_total"), 0.0);
        assert_eq!(series(&first, "axrelay_sessions_total"), 1.0);

        let alice = "alice@a.example/phone";
        let bob = "bob@b.example/laptop";
        s.write_all(
            format!(
                "<message from='{alice}' to='axr.example.org' type='chat' id='w'>\
                 <body>/whoami</body></message>"
            )
            .as_bytes(),
        )
        .unwrap();
        let reply = read_until(&mut s, "</message>");
        let pseudonym = pseudonym_of("alice@a.example");
        assert!(reply.contains(&pseudonym), "{reply}");
        for (i, body) in ["one", "two"].iter().enumerate() {
            s.write_all(
                format!(
                    "<message from='{bob}' to='{pseudonym}' type='chat' id='m{i}'>\
                     <body>{body}</body></message>"
                )
                .as_bytes(),
            )
            .unwrap();
            let relayed = read_until(&mut s, "</message>");
            assert!(relayed.contains(body), "{relayed}");
        }
        s.write_all(
            format!("<message from='{bob}' to='nobody@axr.example.org'><body>x</body></message>")
                .as_bytes(),
        )
        .unwrap();
        read_until(&mut s, "</message>");
        let second = scrape_until(mport, "the counters moving", |t| {
            series(t, "axrelay_relayed_total") >= 2.0
                && series(t, "axrelay_rejected_total{reason=\"item-not-found\"}") >= 1.0
        });
        assert_eq!(series(&second, "axrelay_relayed_total"), 2.0);
        assert_eq!(series(&second, "axrelay_whoami_total"), 1.0);
        assert_eq!(series(&second, "axrelay_stanzas_received_total"), 4.0);
        assert!(series(&second, "axrelay_store_latency_seconds_count{op=\"put\"}") >= 1.0);
        assert!(!second.contains('@'), "{second}");

        let out = axrelay(&["status", "-c", p(&conf)]);
        let shown = text(&out.stdout);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        assert!(shown.starts_with("state: online\n"), "{shown}");
        assert!(shown.contains("\nrelayed_total 2\n"), "{shown}");

        signal(&child, "TERM");
        read_until(&mut s, "</stream:stream>");
        let _ = s.write_all(b"</stream:stream>");
        drop(s);
        assert_eq!(wait_with_deadline(&mut child, Duration::from_secs(10)), 0);
        // -d tells each decision, by pseudonym only.
        let err = stderr_of(&mut child);
        let local = pseudonym.split('@').next().unwrap();
        assert!(err.contains(&format!("-> {local}")), "{err}");
        assert!(err.contains("refused a message: item-not-found"), "{err}");
        assert!(!err.contains("alice") && !err.contains("bob"), "{err}");
    }
}

#[test]
fn status_without_metrics_or_without_a_relay_fails_clearly() {
    let dir = Dir::new();
    let off = dir.write("off.conf", &config(5347, "", ""));
    let out = axrelay(&["status", "-c", p(&off)]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains(&format!(
            "{}: [metrics] listen: not set, so a running relay publishes no figures",
            p(&off)
        )),
        "{}",
        text(&out.stderr)
    );
    let mport = free_port();
    let idle = dir.write(
        "idle.conf",
        &format!(
            "{}\n[metrics]\nlisten = 127.0.0.1:{mport}\n",
            config(5347, "", "")
        ),
    );
    let out = axrelay(&["status", "-c", p(&idle)]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains(&format!(
            "cannot read the relay's figures at http://127.0.0.1:{mport}/metrics: nothing answers"
        )),
        "{}",
        text(&out.stderr)
    );
}

/// A file store and a control socket path in `dir`, where no relay runs.
fn ban_config(dir: &Dir) -> PathBuf {
    let store = format!(
        "[local_storage]\npath = {}\nencrypt = {GOOD_ENCRYPT}\n",
        dir.path("p.db").display()
    );
    let text = config(9, "", &store).replace(
        "keepalive = 60\n",
        &format!(
            "keepalive = 60\ncontrol = {}\n",
            dir.path("control").display()
        ),
    );
    dir.write("a.conf", &text)
}

#[test]
fn ban_unban_and_bans_open_the_store_when_no_relay_runs() {
    let dir = Dir::new();
    let conf = ban_config(&dir);
    let alice = pseudonym_of("alice@example.com");
    let local = alice.split('@').next().unwrap();

    let out = axrelay(&[
        "ban",
        "-v",
        "-c",
        p(&conf),
        &alice,
        "--reason",
        "spam, twice",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{alice} banned\n"));
    assert!(
        text(&out.stderr).contains("no relay answers at") && text(&out.stderr).contains("directly"),
        "{}",
        text(&out.stderr)
    );
    // The localpart alone, in capitals too, names the same pseudonym.
    let out = axrelay(&["ban", "-c", p(&conf), &local.to_uppercase()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{alice} was banned already\n"));
    // Without -v, nothing says which way was taken.
    assert_eq!(text(&out.stderr), "");

    let out = axrelay(&["bans", "-c", p(&conf)]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let fields: Vec<&str> = listed.trim_end().splitn(3, "  ").collect();
    assert_eq!(fields.len(), 3, "{listed}");
    assert_eq!(fields[0], alice);
    assert!(
        fields[1].ends_with('Z') && fields[1].len() == 20,
        "{listed}"
    );
    assert_eq!(fields[2], "spam, twice");

    // Sealed: the file names neither the pseudonym nor the reason.
    let raw = std::fs::read(dir.path("p.db")).unwrap();
    for needle in [local.as_bytes(), b"spam"] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
    }

    let out = axrelay(&["unban", "-c", p(&conf), &alice]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{alice} unbanned\n"));
    let out = axrelay(&["unban", "-c", p(&conf), &alice]);
    assert_eq!(text(&out.stdout), format!("{alice} was not banned\n"));
    let out = axrelay(&["bans", "-c", p(&conf)]);
    assert_eq!((code(&out), text(&out.stdout)), (0, String::new()));
}

#[test]
fn ban_refuses_what_is_not_a_pseudonym_with_status_2() {
    let dir = Dir::new();
    let conf = ban_config(&dir);
    let alice = pseudonym_of("alice@example.com");
    let local = alice.split('@').next().unwrap();
    for bad in [
        "alice@example.com".to_owned(),
        format!("{local}@other.example"),
        format!("{alice}/a"),
        local[1..].to_owned(),
        "".to_owned(),
    ] {
        let out = axrelay(&["ban", "-c", p(&conf), &bad]);
        assert_eq!(code(&out), 2, "{bad}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("is not a pseudonym of this relay"),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
    let out = axrelay(&["ban", "-c", p(&conf), &alice, "--reason", "two\nlines"]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let out = axrelay(&["ban", "-c", p(&conf)]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("<PSEUDONYM>"));
    let out = axrelay(&["unban", "-c", p(&conf), "x", "y"]);
    assert_eq!(code(&out), 2);
    // Nothing was written.
    assert!(!dir.path("p.db").exists());
}

#[test]
fn a_control_path_that_cannot_be_a_socket_is_a_config_error() {
    let dir = Dir::new();
    let long = format!("/tmp/{}", "x".repeat(120));
    let text_conf = config(9, "", "").replace(
        "keepalive = 60\n",
        &format!("keepalive = 60\ncontrol = {long}\n"),
    );
    let conf = dir.write("a.conf", &text_conf);
    let out = axrelay(&["bans", "-c", p(&conf)]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[relay] control"),
        "{}",
        text(&out.stderr)
    );
    // `check` refuses it too, as `run` would.
    let out = axrelay(&["check", "-c", p(&conf)]);
    assert_eq!(code(&out), 2, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("[relay] control"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_refuses_a_control_directory_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    let open = dir.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let text_conf = config(9, "", "").replace(
        "keepalive = 60\n",
        &format!(
            "keepalive = 60\ncontrol = {}\n",
            open.join("control").display()
        ),
    );
    let conf = dir.write("a.conf", &text_conf);
    let out = axrelay(&["check", "-c", p(&conf)]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains("control: error: ") && report.contains("writable by its group or others"),
        "{report}"
    );
}

#[test]
fn a_control_socket_in_a_directory_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    let open = dir.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = ban_config(&dir);
    let text_conf = std::fs::read_to_string(&conf).unwrap().replace(
        &format!("control = {}", dir.path("control").display()),
        &format!("control = {}", open.join("control").display()),
    );
    let conf = dir.write("a.conf", &text_conf);
    let out = axrelay(&["bans", "-c", p(&conf)]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&open.join("control").display().to_string())
            && err.contains("writable by its group or others"),
        "{err}"
    );
    // Nothing was opened behind the refusal.
    assert!(!dir.path("p.db").exists());
}
