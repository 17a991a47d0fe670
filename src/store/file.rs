//! The embedded store: one redb database file.
//!
//! redb panics on some corrupted files instead of returning an error, so
//! every call into it is guarded: a panic there becomes an error naming the
//! file, never a crash of the relay.
//!
//! Each value is stored behind an 8-byte big-endian expiry (Unix seconds,
//! 0 = never), so `ttl` works without a sweeper: expired entries read as
//! missing, and are removed when the file is next opened.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use axrelay_proto::{Store, StoreError};
use redb::{Database, DatabaseError, TableDefinition};

const MAPPINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("mappings");
const EXPIRY_LEN: usize = 8;

/// Why the database file could not be opened.
#[derive(Debug)]
pub struct FileStoreError {
    path: PathBuf,
    problem: String,
    in_use: bool,
}

impl FileStoreError {
    /// Whether another process (a running relay) holds the database open.
    pub fn is_in_use(&self) -> bool {
        self.in_use
    }
}

impl std::fmt::Display for FileStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for FileStoreError {}

/// Mappings in a local database file; survives restarts of the relay.
pub struct FileStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("database file: {e}"))
}

const CORRUPTED: &str = "the database file is corrupted; move it away to start afresh \
                         (people then send /whoami again)";

/// Run `f`, turning a panic inside redb into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(CORRUPTED.to_owned()))
}

/// The value inside a stored record, unless it expired or is malformed.
fn live_value(record: &[u8], now: u64) -> Option<Vec<u8>> {
    let (expiry, value) = record.split_at_checked(EXPIRY_LEN)?;
    let expiry = u64::from_be_bytes(expiry.try_into().ok()?);
    (expiry == 0 || expiry > now).then(|| value.to_vec())
}

impl FileStore {
    /// Open `path`, creating the file (not its directory, and readable by
    /// its owner only) if needed, and drop expired entries.
    pub fn open(path: &Path) -> Result<FileStore, FileStoreError> {
        let fail = |problem: String| FileStoreError {
            path: path.to_owned(),
            problem,
            in_use: false,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(fail(format!(
                    "directory {} does not exist; create it, owned by the user axrelay runs as",
                    parent.display()
                )));
            }
        }
        // redb would create it with the umask's mode (0644 outside
        // systemd): the file maps pseudonyms to people.
        if let Err(e) = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(fail(format!("cannot create the database: {e}")));
            }
        }
        let mut in_use = false;
        let db = guarded(|| {
            Database::create(path).map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => {
                    in_use = true;
                    "the database is in use by another process (is `axrelay run` running with \
                     this file?)"
                        .to_owned()
                }
                DatabaseError::Storage(redb::StorageError::Io(io))
                    if io.kind() != std::io::ErrorKind::InvalidData =>
                {
                    format!("cannot open the database: {io}")
                }
                other => format!("not a usable axrelay database ({other}); {CORRUPTED}"),
            })
        })
        .map_err(|problem| FileStoreError {
            in_use,
            ..fail(problem)
        })?;
        let store = FileStore {
            db,
            path: path.to_owned(),
        };
        guarded(|| store.prepare()).map_err(|e| fail(format!("cannot write the database: {e}")))?;
        Ok(store)
    }

    /// Create the table and sweep out expired entries.
    fn prepare(&self) -> Result<(), String> {
        let text = |e: redb::Error| e.to_string();
        let tx = self.db.begin_write().map_err(|e| text(e.into()))?;
        {
            let mut table = tx.open_table(MAPPINGS).map_err(|e| text(e.into()))?;
            let now = now();
            table
                .retain(|_, record| live_value(record, now).is_some())
                .map_err(|e| text(e.into()))?;
        }
        tx.commit().map_err(|e| text(e.into()))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for FileStore {
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        guarded(|| {
            let text = |e: redb::Error| e.to_string();
            let tx = self.db.begin_read().map_err(|e| text(e.into()))?;
            let table = tx.open_table(MAPPINGS).map_err(|e| text(e.into()))?;
            let now = now();
            keys.iter()
                .map(|key| {
                    let record = table.get(*key).map_err(|e| text(e.into()))?;
                    Ok(record.and_then(|r| live_value(r.value(), now)))
                })
                .collect()
        })
        .map_err(unavailable)
    }

    fn put(&self, key: &str, value: &[u8], ttl: u32) -> Result<(), StoreError> {
        let expiry = if ttl == 0 { 0 } else { now() + u64::from(ttl) };
        let mut record = Vec::with_capacity(EXPIRY_LEN + value.len());
        record.extend_from_slice(&expiry.to_be_bytes());
        record.extend_from_slice(value);
        guarded(|| {
            let text = |e: redb::Error| e.to_string();
            let tx = self.db.begin_write().map_err(|e| text(e.into()))?;
            {
                let mut table = tx.open_table(MAPPINGS).map_err(|e| text(e.into()))?;
                table
                    .insert(key, record.as_slice())
                    .map_err(|e| text(e.into()))?;
            }
            tx.commit().map_err(|e| text(e.into()))
        })
        .map_err(unavailable)
    }

    fn kind(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_expire_and_short_records_are_misses() {
        let mut rec = 100u64.to_be_bytes().to_vec();
        rec.extend_from_slice(b"v");
        assert_eq!(live_value(&rec, 99), Some(b"v".to_vec()));
        assert_eq!(live_value(&rec, 100), None);
        let mut never = 0u64.to_be_bytes().to_vec();
        never.extend_from_slice(b"v");
        assert_eq!(live_value(&never, u64::MAX), Some(b"v".to_vec()));
        assert_eq!(live_value(b"short", 0), None);
    }
}
