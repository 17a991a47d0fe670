//! Logging: always to stderr, optionally also to a file that is reopened
//! when logrotate moves it away (the 2014 tool's `WatchedFileHandler`) or
//! when the process gets SIGHUP.
//!
//! What gets logged is decided at the call sites: nothing at the default
//! level names a JID, a pseudonym or a body (SPEC §7).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use log::LevelFilter;

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// Connection events, counters and warnings.
    Normal,
    /// `-d`: everything.
    Debug,
}

impl Verbosity {
    fn filter(self) -> LevelFilter {
        match self {
            Verbosity::Quiet => LevelFilter::Error,
            Verbosity::Normal => LevelFilter::Info,
            Verbosity::Debug => LevelFilter::Debug,
        }
    }
}

/// Why logging could not start.
#[derive(Debug)]
pub enum LogError {
    /// The log file cannot be opened for appending.
    File(PathBuf, io::Error),
    /// A logger was already installed.
    AlreadySet,
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::File(p, e) => write!(f, "{}: cannot open the log file: {e}", p.display()),
            LogError::AlreadySet => f.write_str("logging was already set up"),
        }
    }
}

impl std::error::Error for LogError {}

/// Set when the log file should be reopened before the next record.
#[derive(Debug, Clone, Default)]
pub struct ReopenFlag(Arc<AtomicBool>);

impl ReopenFlag {
    /// Ask for a reopen (safe to call from a signal-handling thread).
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// Log target of [`fatal`] records: they reach the log file only, since
/// [`fatal`] prints its own plain line on stderr.
const FATAL_TARGET: &str = "axrelay::fatal";

/// Report the error that ends the process: one plain `axrelay: …` line on
/// stderr, and the same in the log file if there is one.
pub fn fatal(message: impl std::fmt::Display) {
    eprintln!("axrelay: {message}");
    log::error!(target: FATAL_TARGET, "{message}");
}

/// Install the logger. Returns the flag that reopens the log file.
pub fn init(verbosity: Verbosity, log_file: Option<&Path>) -> Result<ReopenFlag, LogError> {
    let reopen = ReopenFlag::default();
    let stderr = fern::Dispatch::new()
        .filter(|meta| meta.target() != FATAL_TARGET)
        .chain(io::stderr());
    let mut dispatch = fern::Dispatch::new()
        .level(verbosity.filter())
        .format(|out, message, record| {
            out.finish(format_args!(
                "{} {:<5} {}",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                message
            ))
        })
        .chain(stderr);
    if let Some(path) = log_file {
        let file = WatchedFile::open(path, reopen.clone())?;
        dispatch = dispatch.chain(fern::Output::writer(Box::new(file), "\n"));
    }
    dispatch.apply().map_err(|_| LogError::AlreadySet)?;
    Ok(reopen)
}

/// An append-mode file that is reopened at the start of a record when its
/// path no longer names the open file, or on request.
struct WatchedFile {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    reopen: ReopenFlag,
    at_record_start: bool,
}

/// Open for appending; a new file is readable by its owner only (the log
/// may name people with `--log-sensitive`, and says when each talked).
fn open_append(path: &Path) -> io::Result<(File, (u64, u64))> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino())))
}

impl WatchedFile {
    fn open(path: &Path, reopen: ReopenFlag) -> Result<WatchedFile, LogError> {
        let (file, identity) = open_append(path).map_err(|e| LogError::File(path.to_owned(), e))?;
        Ok(WatchedFile {
            path: path.to_owned(),
            file,
            identity,
            reopen,
            at_record_start: true,
        })
    }

    /// Reopen if asked to, or if the path now names another file or none.
    fn check(&mut self) {
        let moved = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()) != self.identity,
            Err(_) => true,
        };
        if self.reopen.take() || moved {
            // On failure keep writing to the old file rather than lose lines.
            if let Ok((file, identity)) = open_append(&self.path) {
                self.file = file;
                self.identity = identity;
            }
        }
    }
}

impl Write for WatchedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.at_record_start {
            self.at_record_start = false;
            self.check();
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // fern flushes after every record.
        self.at_record_start = true;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_file_is_reopened_at_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("axrelay.log");
        let mut f = WatchedFile::open(&path, ReopenFlag::default()).unwrap();
        f.write_all(b"one\n").unwrap();
        f.flush().unwrap();
        let rotated = dir.path().join("axrelay.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        f.write_all(b"two\n").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }

    #[test]
    fn a_new_log_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("axrelay.log");
        let _f = WatchedFile::open(&path, ReopenFlag::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_requested_reopen_follows_a_truncating_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("axrelay.log");
        let flag = ReopenFlag::default();
        let mut f = WatchedFile::open(&path, flag.clone()).unwrap();
        f.write_all(b"one\n").unwrap();
        f.flush().unwrap();
        flag.request();
        f.write_all(b"two\n").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert!(!flag.take());
    }
}
