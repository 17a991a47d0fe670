//! Telling systemd how the relay is doing (`Type=notify`): `READY=1` once
//! it runs, a `STATUS=` line at each change of the connection, `STOPPING=1`
//! when a stop begins. Outside systemd (no `NOTIFY_SOCKET`) nothing is sent.
//!
//! A status never names a person; it may name the server and the
//! component domain, which the unit's configuration holds anyway.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Where notifications go, if anywhere.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, Target)>,
    ready: bool,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    /// Linux's abstract namespace (`@name` in `NOTIFY_SOCKET`).
    #[cfg(target_os = "linux")]
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Notifications to `address` (a path, or `@name`).
    pub fn to(address: &str) -> Notifier {
        let target = match address.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            Some(name) => Target::Abstract(name.as_bytes().to_vec()),
            #[cfg(not(target_os = "linux"))]
            Some(_) => return Notifier::default(),
            None => Target::Path(PathBuf::from(address)),
        };
        match UnixDatagram::unbound().and_then(|s| {
            // Never hold the loop up: a full queue loses a status line.
            s.set_nonblocking(true)?;
            Ok(s)
        }) {
            Ok(s) => Notifier {
                socket: Some((s, target)),
                ready: false,
            },
            Err(e) => {
                log::warn!("cannot notify systemd: {e}");
                Notifier::default()
            }
        }
    }

    /// A new status line; the first one also says the service is ready.
    pub fn status(&mut self, status: &str) {
        let message = if self.ready {
            format!("STATUS={status}")
        } else {
            self.ready = true;
            format!("READY=1\nSTATUS={status}")
        };
        self.send(&message);
    }

    /// A graceful stop has begun.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    fn send(&self, message: &str) {
        let Some((socket, target)) = &self.socket else {
            return;
        };
        if let Err(e) = send_to(socket, target, message.as_bytes()) {
            log::debug!("cannot notify systemd: {e}");
        }
    }
}

fn send_to(socket: &UnixDatagram, target: &Target, bytes: &[u8]) -> io::Result<()> {
    match target {
        Target::Path(p) => socket.send_to(bytes, p).map(drop),
        #[cfg(target_os = "linux")]
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(bytes, &addr).map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_comes_with_the_first_status_then_status_lines_and_stopping() {
        let dir = std::env::temp_dir().join(format!("axrelay-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::to(path.to_str().unwrap());
        n.status("connecting to 127.0.0.1:5347");
        n.status("online as axr.example");
        n.stopping();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = systemd.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=connecting to 127.0.0.1:5347",
                "STATUS=online as axr.example",
                "STOPPING=1\nSTATUS=stopping",
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let mut n = Notifier::default();
        n.status("connecting");
        n.stopping();
    }
}
