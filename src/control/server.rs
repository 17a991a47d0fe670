//! The relay's side of the control socket: a thread that answers one
//! connection at a time, each bounded in size and time.

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{answer_lines, perform, Request, MAX_REQUEST};
use crate::admin::Admin;

/// How long a client may take to send its request, and to take the answer.
pub const CLIENT_TIME: Duration = Duration::from_secs(5);

/// The socket file while the relay serves it; removed when dropped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    /// Device and inode of the socket this relay bound: another relay's
    /// socket at the same path is left alone.
    id: (u64, u64),
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serve the control socket at `path` on a thread of its own. Where that
/// cannot be, one warning says why and the relay runs without it (`None`):
/// `axrelay run` from a checkout has no `/run/axrelay`.
pub fn serve(path: &Path, admin: Arc<Admin>) -> Option<ControlSocket> {
    match bind(path) {
        Ok(listener) => {
            let id = match std::fs::symlink_metadata(path) {
                Ok(m) => (m.dev(), m.ino()),
                Err(e) => return without(path, &format!("cannot read it back: {e}")),
            };
            let spawned = thread::Builder::new()
                .name("axrelay-control".into())
                .spawn(move || {
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
            let socket = ControlSocket {
                path: path.to_owned(),
                id,
            };
            match spawned {
                Ok(_) => {
                    log::info!("control socket at {}", path.display());
                    Some(socket)
                }
                Err(e) => without(path, &format!("cannot start its thread: {e}")),
            }
        }
        Err(why) => without(path, &why),
    }
}

fn without(path: &Path, why: &str) -> Option<ControlSocket> {
    log::warn!(
        "control socket {}: {why}; running without it (`axrelay ban` and `hash --lookup` then \
         need the store to themselves; [relay] control sets the path, `none` turns it off)",
        path.display()
    );
    None
}

/// Bind `path`, readable and writable by the relay's user only, after
/// removing a stale socket that nothing answers.
fn bind(path: &Path) -> Result<UnixListener, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err("the path exists and is not a socket".into());
        }
        match UnixStream::connect(path) {
            Ok(_) => return Err("another process answers there (another relay?)".into()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove the stale socket: {e}"))?;
            }
            Err(e) => return Err(format!("cannot check the existing socket: {e}")),
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("cannot listen: {e}"))?;
    // Until this, the umask decides; the peer's uid is checked anyway.
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        let _ = std::fs::remove_file(path);
        return Err(format!("cannot restrict its mode to 0600: {e}"));
    }
    Ok(listener)
}

/// Whether the peer runs as the relay's user or as root.
fn peer_allowed(stream: &UnixStream) -> Result<bool, io::Error> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok(cred.uid.is_root() || cred.uid == rustix::process::getuid())
}

/// Read one request line, within [`MAX_REQUEST`] bytes and [`CLIENT_TIME`].
fn read_request(stream: &mut UnixStream) -> Result<String, &'static str> {
    let deadline = Instant::now() + CLIENT_TIME;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err("no request in time");
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err("the request has no end of line"),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err("no request in time"),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            buf.truncate(end);
            return String::from_utf8(buf).map_err(|_| "the request is not UTF-8");
        }
        if buf.len() >= MAX_REQUEST {
            return Err("the request is too long");
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
        Request::parse(line.strip_suffix('\r').unwrap_or(&line)).map_err(|_| "malformed request")
    });
    let lines = match request {
        Ok(request) => {
            let done = perform(admin, &request);
            match (&request, &done) {
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

    #[test]
    fn a_stale_socket_is_replaced_and_requests_are_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        // A socket file nothing listens on any more.
        drop(UnixListener::bind(&path).unwrap());
        let socket = serve(&path, admin()).expect("serving");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(exchange(&path, b"bans\n"), "end\n");
        assert_eq!(exchange(&path, b"junk\n"), "error malformed request\n");
        assert_eq!(
            exchange(&path, &[b'x'; MAX_REQUEST]),
            "error the request is too long\n"
        );
        // A second relay does not take the socket of a live one.
        assert!(serve(&path, admin()).is_none());
        drop(socket);
        assert!(!path.exists(), "removed at exit");
    }

    #[test]
    fn without_its_directory_the_relay_runs_without_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        assert!(serve(&dir.path().join("missing/control"), admin()).is_none());
        let file = dir.path().join("file");
        std::fs::write(&file, b"not a socket").unwrap();
        assert!(serve(&file, admin()).is_none());
        assert!(file.exists(), "a file that is not a socket is left alone");
    }
}
