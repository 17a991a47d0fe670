//! The command line's side of the control socket. It talks only to a
//! socket in a directory it trusts (`trust.rs`), and only to a process
//! running as root, as this user or as the socket's owner: what answers
//! there is told whom to ban and may be told who is behind a pseudonym.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::trust::{check_directory, directory_of, own_uid, Distrust};
use super::{parse_answer, Answer, AnswerError, Request};

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
    /// The socket's directory, or the process behind it, is not trusted.
    Untrusted(Distrust),
}

/// Ask the relay listening at `path`. The inner result is the relay's
/// answer, or the error it reported.
pub fn ask(path: &Path, request: &Request) -> Result<Result<Answer, AnswerError>, Unanswered> {
    let dir = directory_of(path);
    if !dir.is_dir() {
        return Err(Unanswered::NoRelay);
    }
    // The relay's user may own its directory (systemd's RuntimeDirectory)
    // when root asks.
    let owner = std::fs::metadata(path).ok().map(|m| m.uid());
    check_directory(dir, owner).map_err(Unanswered::Untrusted)?;
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Unanswered::NoRelay,
        _ => Unanswered::Failed(e),
    })?;
    let peer = rustix::net::sockopt::socket_peercred(&stream)
        .map_err(|e| Unanswered::Failed(e.into()))?
        .uid
        .as_raw();
    if peer != 0 && peer != own_uid() && Some(peer) != owner {
        return Err(Unanswered::Untrusted(Distrust::Peer(peer)));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_socket_in_a_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let _listener = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = ask(&path, &Request::List);
        assert!(
            matches!(refused, Err(Unanswered::Untrusted(Distrust::Writable(..)))),
            "{refused:?}"
        );
        // No directory: no relay, the store may be opened directly.
        let missing = ask(&dir.path().join("missing/control"), &Request::List);
        assert!(matches!(missing, Err(Unanswered::NoRelay)), "{missing:?}");
    }

    #[test]
    fn a_directory_of_a_stranger_is_refused() {
        // Needs root to give the directory away.
        if own_uid() != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let _listener = UnixListener::bind(&path).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(4242), None).unwrap();
        let refused = ask(&path, &Request::List);
        assert!(
            matches!(
                refused,
                Err(Unanswered::Untrusted(Distrust::Owner(_, 4242)))
            ),
            "{refused:?}"
        );
    }
}
