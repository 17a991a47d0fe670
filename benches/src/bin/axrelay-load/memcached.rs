//! A private memcached on a free loopback port, for one run.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running memcached; killed when dropped.
pub struct Memcached {
    child: Child,
    pub addr: String,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl Memcached {
    pub fn start() -> Result<Memcached, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
            .args(["-t", "2", "-m", "512"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if is_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd.spawn().map_err(|e| {
            format!("cannot start memcached ({e}); install it (apt-get install -y memcached)")
        })?;
        let mut m = Memcached {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&m.addr).is_err() {
            if let Ok(Some(st)) = m.child.try_wait() {
                return Err(format!("memcached exited at start: {st}"));
            }
            if Instant::now() >= deadline {
                return Err("memcached did not start listening in 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(m)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
