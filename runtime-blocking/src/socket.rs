//! The threads that block on the network for the loop: one connect per
//! attempt, one reader per connection.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::mpsc::SyncSender;
use std::thread;

use axrelay_host::connect::{self, ConnectError, Target};
use axrelay_host::{READ_BUF, WRITE_TIMEOUT};

use crate::inbox::Event;

/// Connect on a thread of its own; the result arrives as
/// [`Event::Connected`] with number `conn`.
pub(crate) fn connect(
    conn: u64,
    target: Target,
    tx: SyncSender<Event>,
) -> Result<(), ConnectError> {
    thread::Builder::new()
        .name("axrelay-connect".into())
        .spawn(move || {
            let _ = tx.send(Event::Connected(conn, connect::open(&target)));
        })
        .map(drop)
        .map_err(ConnectError::Socket)
}

/// Set up a fresh connection: bound its writes and start its reader, whose
/// reads arrive as events until EOF or an error. Returns the write side.
pub(crate) fn start(conn: u64, stream: TcpStream, tx: &SyncSender<Event>) -> io::Result<TcpStream> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = stream.try_clone()?;
    let tx = tx.clone();
    thread::Builder::new()
        .name("axrelay-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; READ_BUF];
            loop {
                let event = match reader.read(&mut buf) {
                    Ok(0) => Event::Closed(conn, None),
                    Ok(n) => Event::Input(conn, buf[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Event::Closed(conn, Some(e)),
                };
                let last = matches!(event, Event::Closed(..));
                if tx.send(event).is_err() || last {
                    return;
                }
            }
        })?;
    Ok(stream)
}
