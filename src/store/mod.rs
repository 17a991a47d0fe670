//! Mapping stores (SPEC §4): the backends behind `axrelay_proto::Store`.
//!
//! Keys and values arrive already encoded by `axrelay_proto::StoreCodec`,
//! so a backend is a byte map with a TTL; none of them can see an identity
//! unless the operator left `encrypt` out.

mod file;
mod memcached;

use std::sync::Arc;

use axrelay_proto::{MemoryStore, Store};

pub use file::{FileStore, FileStoreError};
pub use memcached::{MemcachedError, MemcachedStore};

use crate::config::StoreSettings;

/// Entries the memory store keeps before it makes room.
pub const MEMORY_CAPACITY: usize = 1 << 20;

/// Why a store could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The database file.
    File(FileStoreError),
    /// The memcached client.
    Memcached(MemcachedError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::File(e) => e.fmt(f),
            OpenError::Memcached(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

/// Open the store `settings` chooses.
pub fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, OpenError> {
    Ok(match settings {
        StoreSettings::Memory { .. } => Arc::new(MemoryStore::new(MEMORY_CAPACITY)),
        StoreSettings::File { path, .. } => {
            Arc::new(FileStore::open(path).map_err(OpenError::File)?)
        }
        StoreSettings::Memcached {
            servers, timeout, ..
        } => Arc::new(MemcachedStore::connect(servers, *timeout).map_err(OpenError::Memcached)?),
    })
}
