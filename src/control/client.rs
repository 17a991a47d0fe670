//! The command line's side of the control socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{parse_answer, Answer, Request};

/// How long the relay may take to answer (a ban reads, writes and reads
/// the store again, up to three times).
pub const ANSWER_TIME: Duration = Duration::from_secs(30);

/// The most an answer may hold: the longest ban list, with room.
const MAX_ANSWER: u64 = 8 * 1024 * 1024;

/// Why the relay did not answer.
#[derive(Debug)]
pub enum Unanswered {
    /// No relay listens there (no socket, or nothing behind it): the
    /// store may be opened directly.
    NoRelay,
    /// Something is there but the exchange failed.
    Failed(io::Error),
}

/// Ask the relay listening at `path`. The inner result is the relay's
/// answer, or the error it reported.
pub fn ask(path: &Path, request: &Request) -> Result<Result<Answer, String>, Unanswered> {
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Unanswered::NoRelay,
        _ => Unanswered::Failed(e),
    })?;
    let mut exchange = || -> io::Result<String> {
        stream.set_write_timeout(Some(ANSWER_TIME))?;
        stream.set_read_timeout(Some(ANSWER_TIME))?;
        stream.write_all(format!("{}\n", request.line()).as_bytes())?;
        let mut text = String::new();
        (&stream).take(MAX_ANSWER).read_to_string(&mut text)?;
        Ok(text)
    };
    let text = exchange().map_err(Unanswered::Failed)?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(parse_answer(request, &lines))
}
