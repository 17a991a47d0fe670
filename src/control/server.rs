//! The relay's side of the control socket: a thread that binds it (again
//! every [`RETRY_EVERY`] while it cannot, so that a hot standby on the same
//! host takes the socket over once the other instance has gone) and then
//! answers one connection at a time, each bounded in size and time.

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::trust::{check_directory, directory_of, own_uid, Distrust};
use super::{answer_lines, perform, Request, RequestError, MAX_REQUEST};
use crate::admin::Admin;

/// How long a client may take to send its request, and to take the answer.
pub const CLIENT_TIME: Duration = Duration::from_secs(5);

/// How often binding is tried again while the relay has no socket.
pub const RETRY_EVERY: Duration = Duration::from_secs(10);

/// Why the socket cannot be bound.
#[derive(Debug)]
pub enum BindError {
    /// Its directory does not exist.
    NoDirectory(PathBuf),
    /// Its directory is not trusted.
    Untrusted(Distrust),
    /// Something other than a socket is at the path.
    NotASocket,
    /// Another process answers there.
    Taken,
    /// The socket there cannot be probed.
    CannotProbe(io::Error),
    /// A stale socket cannot be removed.
    CannotRemove(io::Error),
    /// `bind` or `listen` failed.
    CannotListen(io::Error),
    /// The socket's mode cannot be set.
    CannotRestrict(io::Error),
    /// The bound socket cannot be read back.
    CannotReadBack(io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::NoDirectory(dir) => write!(f, "directory {} does not exist", dir.display()),
            BindError::Untrusted(why) => why.fmt(f),
            BindError::NotASocket => f.write_str("the path exists and is not a socket"),
            BindError::Taken => f.write_str("another process answers there (another relay?)"),
            BindError::CannotProbe(e) => write!(f, "cannot check the existing socket: {e}"),
            BindError::CannotRemove(e) => write!(f, "cannot remove the stale socket: {e}"),
            BindError::CannotListen(e) => write!(f, "cannot listen: {e}"),
            BindError::CannotRestrict(e) => write!(f, "cannot restrict its mode to 0600: {e}"),
            BindError::CannotReadBack(e) => write!(f, "cannot read it back: {e}"),
        }
    }
}

impl std::error::Error for BindError {}

/// Why a client's request is refused before it is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Late,
    Unterminated,
    NotUtf8,
    TooLong,
    Malformed(RequestError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Late => "no request in time",
            Refusal::Unterminated => "the request has no end of line",
            Refusal::NotUtf8 => "the request is not UTF-8",
            Refusal::TooLong => "the request is too long",
            Refusal::Malformed(_) => "malformed request",
        })
    }
}

/// What the binding thread and the relay share.
#[derive(Debug, Default)]
struct Bound {
    /// Device and inode of the socket this relay bound: another relay's
    /// socket at the same path is left alone.
    id: Option<(u64, u64)>,
    /// The relay is stopping: bind no more.
    stopped: bool,
}

/// The control socket while the relay runs: the socket file, once bound, is
/// removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    bound: Arc<Mutex<Bound>>,
}

fn lock(bound: &Mutex<Bound>) -> MutexGuard<'_, Bound> {
    // Nothing in it can be left half-changed by a panic.
    bound.lock().unwrap_or_else(|e| e.into_inner())
}

impl ControlSocket {
    /// Whether the socket is bound and served.
    pub fn serving(&self) -> bool {
        lock(&self.bound).id.is_some()
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let mut bound = lock(&self.bound);
        bound.stopped = true;
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| Some((m.dev(), m.ino())) == bound.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serve the control socket at `path` on a thread of its own. Where it
/// cannot be bound, one warning says why and the relay runs without it,
/// trying again quietly every [`RETRY_EVERY`]: `axrelay run` from a
/// checkout has no `/run/axrelay`, and a hot standby finds the active
/// instance's socket. `None` only when the thread cannot start.
pub fn serve(path: &Path, admin: Arc<Admin>) -> Option<ControlSocket> {
    serve_retrying(path, admin, RETRY_EVERY)
}

fn serve_retrying(path: &Path, admin: Arc<Admin>, retry: Duration) -> Option<ControlSocket> {
    let socket = ControlSocket {
        path: path.to_owned(),
        bound: Arc::default(),
    };
    let (at, bound) = (socket.path.clone(), socket.bound.clone());
    let spawned = thread::Builder::new()
        .name("axrelay-control".into())
        .spawn(move || {
            let Some(listener) = bind_when_possible(&at, &bound, retry) else {
                return;
            };
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &admin) {
                            log::debug!("control socket: {e}");
                        }
                    }
                    Err(e) => log::debug!("control socket: accept failed: {e}"),
                }
            }
        });
    match spawned {
        Ok(_) => Some(socket),
        Err(e) => {
            log::warn!(
                "control socket {}: cannot start its thread: {e}; running without it",
                path.display()
            );
            None
        }
    }
}

/// Bind `path`, trying again every `retry` until it can be or the relay
/// stops (`None`).
fn bind_when_possible(path: &Path, bound: &Mutex<Bound>, retry: Duration) -> Option<UnixListener> {
    let mut warned = false;
    loop {
        {
            // Under the lock: a relay stopping meanwhile removes what was bound.
            let mut b = lock(bound);
            if b.stopped {
                return None;
            }
            match bind(path) {
                Ok((listener, id)) => {
                    b.id = Some(id);
                    log::info!("control socket at {}", path.display());
                    return Some(listener);
                }
                Err(why) if !warned => {
                    warned = true;
                    log::warn!(
                        "control socket {}: {why}; running without it, trying again every {} s \
                         (`axrelay ban` and `hash --lookup` meanwhile need the store to \
                         themselves; [relay] control sets the path, `none` turns it off)",
                        path.display(),
                        retry.as_secs()
                    );
                }
                Err(why) => log::debug!("control socket {}: {why}", path.display()),
            }
        }
        thread::sleep(retry);
    }
}

/// Bind `path`, readable and writable by the relay's user only, after
/// removing a stale socket that nothing answers; with the socket's device
/// and inode.
fn bind(path: &Path) -> Result<(UnixListener, (u64, u64)), BindError> {
    let dir = directory_of(path);
    if !dir.is_dir() {
        return Err(BindError::NoDirectory(dir.to_owned()));
    }
    // Nobody else may write the directory, so nobody can swap the socket
    // for a symbolic link between the bind and the chmod below.
    check_directory(dir, None).map_err(BindError::Untrusted)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BindError::NotASocket);
        }
        match UnixStream::connect(path) {
            Ok(_) => return Err(BindError::Taken),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(BindError::CannotRemove)?;
            }
            Err(e) => return Err(BindError::CannotProbe(e)),
        }
    }
    let listener = UnixListener::bind(path).map_err(BindError::CannotListen)?;
    let remove = |e| {
        let _ = std::fs::remove_file(path);
        e
    };
    // Until this, the umask decides; the peer's uid is checked anyway.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| remove(BindError::CannotRestrict(e)))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| remove(BindError::CannotReadBack(e)))?;
    Ok((listener, (meta.dev(), meta.ino())))
}

/// Whether the peer runs as the relay's user or as root.
fn peer_allowed(stream: &UnixStream) -> Result<bool, io::Error> {
    let uid = rustix::net::sockopt::socket_peercred(stream)?.uid.as_raw();
    Ok(uid == 0 || uid == own_uid())
}

/// Read one request line, within [`MAX_REQUEST`] bytes and [`CLIENT_TIME`].
fn read_request(stream: &mut UnixStream) -> Result<String, Refusal> {
    let deadline = Instant::now() + CLIENT_TIME;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(Refusal::Late);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(Refusal::Unterminated),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Refusal::Late),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            buf.truncate(end);
            return String::from_utf8(buf).map_err(|_| Refusal::NotUtf8);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(Refusal::TooLong);
        }
    }
}

fn answer(mut stream: UnixStream, admin: &Admin) -> io::Result<()> {
    stream.set_write_timeout(Some(CLIENT_TIME))?;
    if !peer_allowed(&stream)? {
        log::warn!("control socket: refused a client running as another user");
        return stream.write_all(b"error not allowed: run as the relay's user or root\n");
    }
    let request = read_request(&mut stream).and_then(|line| {
        Request::parse(line.strip_suffix('\r').unwrap_or(&line)).map_err(Refusal::Malformed)
    });
    let lines = match request {
        Ok(request) => {
            let done = perform(admin, &request);
            // An audit trail naming pseudonyms only: never a lookup's result.
            match (&request, &done) {
                (Request::Lookup(l), Ok(_)) => log::info!("control socket: lookup {l}"),
                (Request::Ban(l, _), Ok(_)) => log::info!("control socket: ban {l}"),
                (Request::Unban(l), Ok(_)) => log::info!("control socket: unban {l}"),
                (_, Err(e)) => log::warn!("control socket: {} failed: {e}", request.verb()),
                _ => {}
            }
            answer_lines(&done)
        }
        Err(why) => vec![format!("error {why}")],
    };
    let mut out = String::new();
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    stream.write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axrelay_proto::MemoryStore;

    const QUICK: Duration = Duration::from_millis(20);

    fn admin() -> Arc<Admin> {
        Arc::new(Admin::new(
            Arc::new(MemoryStore::default()),
            "axr.example",
            b"control test secret",
            None,
        ))
    }

    fn exchange(path: &Path, request: &[u8]) -> String {
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(request).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Whether `socket` serves within a second.
    fn serves_soon(socket: &ControlSocket) -> bool {
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if socket.serving() {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_stale_socket_is_replaced_and_requests_are_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        // A socket file nothing listens on any more.
        drop(UnixListener::bind(&path).unwrap());
        let socket = serve_retrying(&path, admin(), QUICK).expect("serving");
        assert!(serves_soon(&socket));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(exchange(&path, b"bans\n"), "end\n");
        assert_eq!(exchange(&path, b"junk\n"), "error malformed request\n");
        assert_eq!(
            exchange(&path, &[b'x'; MAX_REQUEST]),
            "error the request is too long\n"
        );
        drop(socket);
        assert!(!path.exists(), "removed at exit");
    }

    #[test]
    fn a_standby_takes_the_socket_over_once_the_other_relay_has_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let active = serve_retrying(&path, admin(), QUICK).expect("serving");
        assert!(serves_soon(&active));
        // A second relay does not take the socket of a live one...
        let standby = serve_retrying(&path, admin(), QUICK).expect("started");
        thread::sleep(QUICK * 3);
        assert!(!standby.serving());
        // ...but binds it once that one has stopped.
        drop(active);
        assert!(serves_soon(&standby));
        assert_eq!(exchange(&path, b"bans\n"), "end\n");
        drop(standby);
        assert!(!path.exists());
    }

    #[test]
    fn without_a_trusted_directory_the_relay_runs_without_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let missing = serve_retrying(&dir.path().join("missing/control"), admin(), QUICK);
        let file = dir.path().join("file");
        std::fs::write(&file, b"not a socket").unwrap();
        let not_a_socket = serve_retrying(&file, admin(), QUICK);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let writable = serve_retrying(&open.join("control"), admin(), QUICK);
        thread::sleep(QUICK * 3);
        for socket in [missing, not_a_socket, writable] {
            assert!(!socket.expect("started").serving());
        }
        assert!(file.exists(), "a file that is not a socket is left alone");
        assert!(
            !open.join("control").exists(),
            "nothing bound in a writable directory"
        );
        assert!(matches!(
            bind(&open.join("control")),
            Err(BindError::Untrusted(Distrust::Writable(..)))
        ));
    }
}
