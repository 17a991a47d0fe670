//! The redb file store, on real files in a temporary directory.

use std::thread::sleep;
use std::time::Duration;

use axrelay::store::FileStore;
use axrelay_proto::{Store, StoreCodec};

#[test]
fn round_trip_and_batched_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(&dir.path().join("p.db")).unwrap();
    assert_eq!(store.kind(), "file");
    store.put("axr:one", b"alice@example.com", 0).unwrap();
    store.put("axr:two", b"bob@example.net", 0).unwrap();
    store.put("axr:one", b"alice@example.com/phone", 0).unwrap();
    assert_eq!(
        store.get("axr:one").unwrap().as_deref(),
        Some(&b"alice@example.com/phone"[..])
    );
    assert_eq!(
        store.get_many(&["axr:two", "axr:none", "axr:one"]).unwrap(),
        vec![
            Some(b"bob@example.net".to_vec()),
            None,
            Some(b"alice@example.com/phone".to_vec())
        ]
    );
    assert_eq!(store.get_many(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
}

#[test]
fn sealed_mappings_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let codec = StoreCodec::new(Some([42; 32]));
    let local = "zi36rtka6iz3zuszk5un4svb4m4qvtsiqacao56f7bspy";
    let key = codec.key(local, "axr.example.org");
    {
        let store = FileStore::open(&path).unwrap();
        let value = codec.seal(local, "axr.example.org", "alice@example.com");
        store.put(&key, &value, 0).unwrap();
    }
    let store = FileStore::open(&path).unwrap();
    let value = store.get(&key).unwrap().unwrap();
    assert_eq!(
        codec.open(local, "axr.example.org", &value).as_deref(),
        Some("alice@example.com")
    );
    // Nothing in the file names the person or the pseudonym.
    drop(store);
    let raw = std::fs::read(&path).unwrap();
    for needle in [&b"alice@example.com"[..], local.as_bytes()] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
    }
}

#[test]
fn entries_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let store = FileStore::open(&path).unwrap();
    store.put("axr:short", b"v", 1).unwrap();
    store.put("axr:long", b"w", 3600).unwrap();
    store.put("axr:forever", b"x", 0).unwrap();
    assert_eq!(store.get("axr:short").unwrap().as_deref(), Some(&b"v"[..]));
    sleep(Duration::from_millis(2100));
    assert_eq!(
        store
            .get_many(&["axr:short", "axr:long", "axr:forever"])
            .unwrap(),
        vec![None, Some(b"w".to_vec()), Some(b"x".to_vec())]
    );
    // Reopening sweeps the expired entry; the others stay.
    drop(store);
    let store = FileStore::open(&path).unwrap();
    assert_eq!(store.get("axr:short").unwrap(), None);
    assert_eq!(store.get("axr:long").unwrap().as_deref(), Some(&b"w"[..]));
}

#[test]
fn a_corrupted_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let e = FileStore::open(&path).unwrap_err().to_string();
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(e.contains("not a usable axrelay database"), "{e}");
    assert!(e.contains("move it away"), "{e}");
}

#[test]
fn a_damaged_database_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    {
        let store = FileStore::open(&path).unwrap();
        for i in 0..500 {
            store
                .put(&format!("axr:{i}"), format!("v{i}").as_bytes(), 0)
                .unwrap();
        }
    }
    let mut raw = std::fs::read(&path).unwrap();
    assert!(raw.len() > 16 * 1024);
    // Flip a stretch past the header: the kind of damage a bad disk or a
    // half-copied file leaves. redb itself panics on some of these.
    for b in &mut raw[4096..8192] {
        *b ^= 0xa5;
    }
    std::fs::write(&path, &raw).unwrap();
    let e = FileStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("corrupted"), "{e}");
    // Half a file, likewise.
    raw.truncate(raw.len() / 2);
    std::fs::write(&path, &raw).unwrap();
    assert!(FileStore::open(&path).is_err());
}

#[test]
fn unusable_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/p.db");
    let e = FileStore::open(&missing_dir).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = FileStore::open(&file.join("p.db")).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");

    let e = FileStore::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("cannot open the database"), "{e}");
}

#[test]
fn a_file_in_use_is_refused_not_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let _first = FileStore::open(&path).unwrap();
    let e = FileStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("in use by another process"), "{e}");
}

#[test]
fn concurrent_writers_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(FileStore::open(&dir.path().join("p.db")).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let key = format!("axr:{t}-{i}");
                    store.put(&key, key.as_bytes(), 0).unwrap();
                    assert_eq!(store.get(&key).unwrap(), Some(key.into_bytes()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        store.get("axr:3-24").unwrap().as_deref(),
        Some(&b"axr:3-24"[..])
    );
}
