//! The Debian package and the README's manual install, used as an operator
//! uses them: installed on this machine, checked with `systemd-analyze`,
//! then the installed binary runs the unit's `ExecStart=` line as the
//! `axrelay` user against a test Prosody (systemd itself need not run
//! here), relays one message, and everything is removed again. `setpriv`
//! (not `runuser`, which outlives the relay and dies of the SIGTERM it
//! passes on) changes the user and executes the line itself, so the exit
//! status is the relay's.
//!
//! Both need root and dpkg and change the machine (a system user,
//! /etc/axrelay.conf, /usr/bin or /usr/local/bin, /var/lib/axrelay), so
//! they run one after the other, refuse to start on a machine that already
//! has any of these, and put it back as it was. They share one release
//! build. Without root or dpkg they say they were skipped.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use axrelay_test_support::e2e::{
    random_secret, Client, Prosody, ProsodyOptions, COMPONENT, RELAY_RESOURCE,
};

/// Both tests install to the same places.
static MACHINE: Mutex<()> = Mutex::new(());

const CONF: &str = "/etc/axrelay.conf";
const STATE: &str = "/var/lib/axrelay";
/// The highest `systemd-analyze security` exposure the unit may have.
const MAX_EXPOSURE: f64 = 2.5;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory the test binary was built in, where the release
/// build goes too.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_axrelay"));
    bin.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
}

/// Why this machine cannot run these tests, if it cannot.
fn skip_reason() -> Option<&'static str> {
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1);
    if uid != 0 {
        return Some("not root");
    }
    if !on_path("dpkg") {
        return Some("no dpkg");
    }
    None
}

macro_rules! require_machine {
    ($name:literal) => {
        if let Some(why) = skip_reason() {
            // Past the test harness's capture: a skip must show.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {}: installing a package needs root and dpkg ({why})",
                $name
            );
            return;
        }
    };
}

/// Run `cmd`, bounded; panic with its output unless it succeeds.
fn run(cmd: &mut Command, limit: Duration) -> String {
    let shown = format!("{cmd:?}");
    let out_path = tempfile::NamedTempFile::new().expect("temp file");
    let out = out_path.reopen().expect("temp file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown}: still running after {limit:?}:\n{}",
                fs::read_to_string(out_path.path()).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = fs::read_to_string(out_path.path()).unwrap_or_default();
    assert!(status.success(), "{shown}: {status}\n{text}");
    text
}

fn exists(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Refuse to touch a machine that has any of what the tests install.
fn assert_clean(paths: &[&str]) {
    let installed = Command::new("dpkg")
        .args(["-s", "axrelay"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        !installed,
        "the package axrelay is installed on this machine"
    );
    assert!(!user_exists("axrelay"), "the user axrelay exists");
    for p in paths {
        assert!(!exists(p), "{p} exists on this machine");
    }
}

/// The account, the rest is each test's own cleanup.
fn remove_user() {
    if user_exists("axrelay") {
        let _ = Command::new("userdel").arg("axrelay").status();
    }
    let _ = Command::new("groupdel")
        .arg("axrelay")
        .stderr(Stdio::null())
        .status();
}

/// What `systemd-analyze` says of the unit at `path`: `verify` passes and
/// the exposure is at most [`MAX_EXPOSURE`].
fn analyze_unit(path: &str) {
    if !on_path("systemd-analyze") {
        eprintln!("no systemd-analyze: {path} not verified");
        return;
    }
    run(
        Command::new("systemd-analyze").args(["verify", path]),
        Duration::from_secs(60),
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", path])
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for axrelay.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    match score {
        Some(score) => assert!(score <= MAX_EXPOSURE, "{path}: exposure {score}:\n{text}"),
        // Older systemd has no --offline.
        None => eprintln!(
            "systemd-analyze security --offline=yes gave no score:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `ExecStart=` of the unit at `path`, split into words.
fn exec_start(path: &str) -> Vec<String> {
    let unit = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{path}: no ExecStart="));
    line.split_whitespace().map(str::to_owned).collect()
}

/// A configuration for the test's Prosody, with the file store in the
/// state directory, written over the installed one (keeping its owner and
/// mode).
fn configure(prosody: &Prosody) {
    let text = format!(
        "[relay]\njid = {COMPONENT}\nserver = 127.0.0.1\nport = {}\npassword = {}\n\n\
         [hash]\nsecret = {}\nidentity = bare\nresource = {RELAY_RESOURCE}\n\n\
         [local_storage]\npath = {STATE}/pseudonyms.db\nencrypt = {}\n",
        prosody.component_port,
        prosody.component_secret,
        random_secret(),
        random_secret(),
    );
    fs::write(CONF, text).expect("write the configuration");
}

fn mode(path: &str) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn owner(path: &str) -> String {
    run(
        Command::new("stat").args(["-c", "%U:%G", path]),
        Duration::from_secs(5),
    )
    .trim()
    .to_owned()
}

/// `cmd` as user axrelay, with its groups, as the unit's `User=` runs it.
fn as_axrelay(argv: &[String]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=axrelay", "--regid=axrelay", "--init-groups", "--"]);
    cmd.args(argv);
    cmd
}

/// The relay as the unit would start it: `ExecStart=` as user axrelay.
struct Service {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Service {
    fn start(prosody: &Prosody, unit: &str) -> Service {
        // `check` first: as the user, it must read the file and reach the
        // server.
        let argv = exec_start(unit);
        let check = [argv[0].clone(), "check".into(), "-c".into(), CONF.into()];
        let out = run(&mut as_axrelay(&check), Duration::from_secs(30));
        assert!(out.ends_with("all checks passed\n"), "{out}");

        let log = tempfile::NamedTempFile::new().expect("log file");
        let out = log.reopen().expect("log file");
        let child = as_axrelay(&argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("setpriv");
        let mut service = Service { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while prosody.component_logins() == 0 {
            if let Ok(Some(s)) = service.child.try_wait() {
                panic!("{argv:?} exited ({s}):\n{}", service.log());
            }
            assert!(
                Instant::now() < deadline,
                "Prosody did not accept the relay within 30 s:\n{}",
                service.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        service
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// SIGTERM; the relay must exit 0.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                assert!(s.success(), "relay stopped with {s}:\n{}", self.log());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "relay still running 10 s after SIGTERM:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- relay log ----\n{}\n---- end ----", self.log());
        }
    }
}

/// Two users of the test's Prosody learn their pseudonyms and one message
/// goes through; then the database file is the user's and private.
fn relay_one_message(prosody: &Prosody) {
    let mut alice = Client::login_new(prosody, &prosody.account("alice"));
    let mut bob = Client::login_new(prosody, &prosody.account("bob"));
    let a = alice.whoami();
    let b = bob.whoami();
    bob.send(&a, "through the installed relay");
    let m = alice.expect_one(None);
    assert_eq!(m.body.as_deref(), Some("through the installed relay"));
    assert_eq!(m.from, format!("{b}/{RELAY_RESOURCE}"));
    alice.quit();
    bob.quit();
    let db = format!("{STATE}/pseudonyms.db");
    assert_eq!(owner(&db), "axrelay:axrelay");
    assert_eq!(mode(&db), 0o600);
}

/// The package's files, removed by `dpkg --purge` at the end whatever
/// happens.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "axrelay"])
            .stdout(Stdio::null())
            .status();
        remove_user();
    }
}

/// cargo-deb, installed with cargo if missing.
fn cargo_deb() {
    let have = Command::new("cargo")
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        eprintln!("installing cargo-deb with cargo install");
        run(
            Command::new("cargo").args(["install", "cargo-deb", "--locked"]),
            Duration::from_secs(1800),
        );
    }
}

#[test]
fn the_debian_package_installs_relays_and_purges() {
    require_machine!("the_debian_package_installs_relays_and_purges");
    let _machine = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    assert_clean(&[CONF, STATE, "/usr/bin/axrelay"]);
    // Start Prosody first: it may need installing, which is slow too.
    let prosody = Prosody::start(ProsodyOptions::default());
    cargo_deb();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    run(
        Command::new(repo().join("scripts/build-deb.sh"))
            .arg("--output")
            .arg(out_dir.path()),
        Duration::from_secs(1800),
    );
    eprintln!("package built in {:?}", started.elapsed());
    let deb = fs::read_dir(out_dir.path())
        .expect("output dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let installed = Installed;
    run(
        Command::new("dpkg").arg("-i").arg(&deb),
        Duration::from_secs(120),
    );
    assert_eq!(owner(CONF), "root:axrelay");
    assert_eq!(mode(CONF), 0o640);
    assert_eq!(owner(STATE), "axrelay:axrelay");
    assert_eq!(mode(STATE), 0o700);
    for path in [
        "/usr/share/doc/axrelay/README.md",
        "/usr/share/doc/axrelay/LICENSE",
        "/usr/share/doc/axrelay/DEPLOYMENT.md",
        "/usr/share/man/man1/axrelay.1",
        "/usr/share/man/man1/axrelay-run.1",
        "/usr/share/bash-completion/completions/axrelay",
        "/usr/share/zsh/vendor-completions/_axrelay",
        "/usr/share/fish/vendor_completions.d/axrelay.fish",
    ] {
        assert!(exists(path), "{path} not installed");
    }
    let files = run(
        Command::new("dpkg").args(["-L", "axrelay"]),
        Duration::from_secs(10),
    );
    let unit = files
        .lines()
        .find(|l| l.ends_with("/systemd/system/axrelay.service"))
        .unwrap_or_else(|| panic!("no unit in the package:\n{files}"))
        .to_owned();
    analyze_unit(&unit);
    // The shipped binary is stripped.
    let symbols = Command::new("nm")
        .arg("/usr/bin/axrelay")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
    if let Ok(err) = symbols {
        assert!(err.contains("no symbols"), "/usr/bin/axrelay: {err}");
    }

    configure(&prosody);
    let service = Service::start(&prosody, &unit);
    relay_one_message(&prosody);
    service.stop();

    drop(installed);
    for path in [CONF, STATE, "/usr/bin/axrelay", unit.as_str()] {
        assert!(!exists(path), "{path} left after dpkg --purge");
    }
    assert!(!user_exists("axrelay"));
}

/// What the README's manual steps install.
const MANUAL: &[&str] = &[
    CONF,
    STATE,
    "/usr/local/bin/axrelay",
    "/usr/local/share/doc/axrelay",
    "/usr/local/share/man/man1/axrelay.1",
    "/etc/systemd/system/axrelay.service",
];

/// Removes what the manual steps installed, whatever happens.
struct ManualInstall;

impl Drop for ManualInstall {
    fn drop(&mut self) {
        for path in MANUAL {
            let _ = fs::remove_dir_all(path).or_else(|_| fs::remove_file(path));
        }
        if let Ok(dir) = fs::read_dir("/usr/local/share/man/man1") {
            for entry in dir.filter_map(Result::ok) {
                if entry.file_name().to_string_lossy().starts_with("axrelay-") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        remove_user();
    }
}

/// The shell lines of the README block after `<!-- manual-install -->`.
fn readme_steps() -> Vec<String> {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let (_, rest) = readme
        .split_once("<!-- manual-install -->\n```sh\n")
        .expect("README.md: no manual-install block");
    let (block, _) = rest
        .split_once("```")
        .expect("README.md: unterminated block");
    block.lines().map(str::to_owned).collect()
}

#[test]
fn the_readme_manual_install_relays() {
    require_machine!("the_readme_manual_install_relays");
    let _machine = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    assert_clean(MANUAL);
    let prosody = Prosody::start(ProsodyOptions::default());

    let _installed = ManualInstall;
    let target = format!("{}/release/", target_dir().display());
    for step in readme_steps() {
        // systemd need not run here; the unit is verified and its
        // ExecStart= run below instead.
        if step.starts_with("systemctl ") {
            continue;
        }
        let step = step.replace("target/release/", &target);
        run(
            Command::new("sh").args(["-ec", &step]).current_dir(repo()),
            Duration::from_secs(1800),
        );
    }
    assert_eq!(owner(CONF), "root:axrelay");
    assert_eq!(mode(CONF), 0o640);
    assert!(exists("/usr/local/share/doc/axrelay/README.md"));
    let unit = "/etc/systemd/system/axrelay.service";
    assert_eq!(exec_start(unit)[0], "/usr/local/bin/axrelay");
    analyze_unit(unit);

    // What StateDirectory= does when systemd starts the unit.
    run(
        Command::new("install").args(["-d", "-o", "axrelay", "-g", "axrelay", "-m", "0700", STATE]),
        Duration::from_secs(5),
    );
    configure(&prosody);
    let service = Service::start(&prosody, unit);
    relay_one_message(&prosody);
    service.stop();
}
