//! A tiny SOCKS5 proxy that checks the CONNECT request, then forwards to
//! the fake server (or refuses, as scripted).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy saw in one CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub methods: Vec<u8>,
    pub credentials: Option<(String, String)>,
    pub atyp: u8,
    pub host: String,
    pub port: u16,
}

/// How the proxy answers the nth CONNECT.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// Reply code 5, connection refused.
    Refuse,
    /// Forward to 127.0.0.1 at the fake server's port.
    Forward,
    /// Forward, then cut both sides after this long, as a proxy that dies
    /// mid-stream.
    ForwardFor(Duration),
}

pub struct Proxy {
    pub port: u16,
    pub requests: Receiver<Request>,
}

impl Proxy {
    /// Serve for at most `lifetime`; require `credentials` if given; answer
    /// connections in the order of `script` (the last answer repeats).
    pub fn start(upstream: u16, credentials: Option<(&str, &str)>, script: Vec<Answer>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (tx, rx) = mpsc::channel();
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut n = 0;
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let answer = script[n.min(script.len() - 1)];
                        n += 1;
                        let (tx, credentials) = (tx.clone(), credentials.clone());
                        thread::spawn(move || {
                            if let Err(e) = serve(client, upstream, credentials, answer, &tx) {
                                eprintln!("proxy: {e}");
                            }
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => return,
                }
            }
        });
        Proxy { port, requests: rx }
    }

    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((u, p)) => format!("socks5://{u}:{p}@127.0.0.1:{}", self.port),
            None => format!("socks5://127.0.0.1:{}", self.port),
        }
    }

    pub fn next_request(&self, within: Duration) -> Request {
        self.requests
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("no CONNECT request at the proxy within {within:?}"))
    }
}

fn read_vec(s: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    credentials: Option<(String, String)>,
    answer: Answer,
    seen: &Sender<Request>,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let head = read_vec(&mut client, 2)?;
    if head[0] != 5 {
        return Err(io::Error::other("not SOCKS5"));
    }
    let methods = read_vec(&mut client, usize::from(head[1]))?;
    let mut got_credentials = None;
    if let Some((user, pass)) = &credentials {
        if !methods.contains(&2) {
            client.write_all(&[5, 0xff])?;
            return Err(io::Error::other("client offers no username/password"));
        }
        client.write_all(&[5, 2])?;
        let v = read_vec(&mut client, 2)?;
        let u = read_vec(&mut client, usize::from(v[1]))?;
        let plen = read_vec(&mut client, 1)?;
        let p = read_vec(&mut client, usize::from(plen[0]))?;
        let pair = (
            String::from_utf8_lossy(&u).into_owned(),
            String::from_utf8_lossy(&p).into_owned(),
        );
        let ok = v[0] == 1 && &pair.0 == user && &pair.1 == pass;
        client.write_all(&[1, if ok { 0 } else { 1 }])?;
        if !ok {
            return Err(io::Error::other("bad credentials"));
        }
        got_credentials = Some(pair);
    } else {
        client.write_all(&[5, 0])?;
    }
    let req = read_vec(&mut client, 4)?;
    if req[..3] != [5, 1, 0] {
        return Err(io::Error::other("not a CONNECT request"));
    }
    let host = match req[3] {
        3 => {
            let len = read_vec(&mut client, 1)?;
            String::from_utf8_lossy(&read_vec(&mut client, usize::from(len[0]))?).into_owned()
        }
        1 => read_vec(&mut client, 4)?
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join("."),
        other => return Err(io::Error::other(format!("address type {other}"))),
    };
    let port = read_vec(&mut client, 2)?;
    let _ = seen.send(Request {
        methods,
        credentials: got_credentials,
        atyp: req[3],
        host,
        port: u16::from_be_bytes([port[0], port[1]]),
    });
    match answer {
        Answer::Refuse => {
            client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
            Ok(())
        }
        Answer::Forward => {
            let server = TcpStream::connect(("127.0.0.1", upstream))?;
            client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
            client.set_read_timeout(None)?;
            pipe(client, server)
        }
        Answer::ForwardFor(lifetime) => {
            let server = TcpStream::connect(("127.0.0.1", upstream))?;
            client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
            client.set_read_timeout(None)?;
            let (c, s) = (client.try_clone()?, server.try_clone()?);
            thread::spawn(move || {
                thread::sleep(lifetime);
                let _ = c.shutdown(Shutdown::Both);
                let _ = s.shutdown(Shutdown::Both);
            });
            pipe(client, server)
        }
    }
}

/// Copy both ways until either side closes.
fn pipe(client: TcpStream, server: TcpStream) -> io::Result<()> {
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Both);
    });
    let (mut s_read, mut c_write) = (server, client);
    let _ = io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}
