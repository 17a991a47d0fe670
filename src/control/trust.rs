//! Whether a control socket's directory can be trusted (SPEC §7): owned by
//! root or by this user, and writable by no one else. Anyone who may write
//! the directory could put their own socket there, or swap the relay's for
//! a symbolic link between its bind and its chmod.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a control socket's directory, or the process behind the socket, is
/// not trusted.
#[derive(Debug)]
pub enum Distrust {
    /// The directory cannot be read.
    Unreadable(PathBuf, io::Error),
    /// Owned by a user who is neither root nor this one.
    Owner(PathBuf, u32),
    /// Writable by its group or by others.
    Writable(PathBuf, u32),
    /// The process answering runs as another user.
    Peer(u32),
}

impl std::fmt::Display for Distrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distrust::Unreadable(dir, e) => {
                write!(f, "cannot read directory {}: {e}", dir.display())
            }
            Distrust::Owner(dir, uid) => write!(
                f,
                "directory {} is owned by uid {uid}, neither root nor this user",
                dir.display()
            ),
            Distrust::Writable(dir, mode) => write!(
                f,
                "directory {} (mode {:04o}) is writable by its group or others, who could put \
                 their own socket there",
                dir.display(),
                mode & 0o7777
            ),
            Distrust::Peer(uid) => write!(
                f,
                "the process answering runs as uid {uid}, neither root, this user nor the \
                 socket's owner"
            ),
        }
    }
}

impl std::error::Error for Distrust {}

/// The directory `path` is in.
pub fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// This process's user.
pub fn own_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Whether `dir` is owned by root, this user or `also`, and writable by no
/// one else. Group- or world-writable directories are refused even with the
/// sticky bit: simpler, and a socket has no business in `/tmp`.
pub fn check_directory(dir: &Path, also: Option<u32>) -> Result<(), Distrust> {
    let meta = std::fs::metadata(dir).map_err(|e| Distrust::Unreadable(dir.to_owned(), e))?;
    let owner = meta.uid();
    if owner != 0 && owner != own_uid() && Some(owner) != also {
        return Err(Distrust::Owner(dir.to_owned(), owner));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Distrust::Writable(dir.to_owned(), meta.mode()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn with_mode(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[test]
    fn only_private_directories_of_root_or_this_user_are_trusted() {
        for ok in [0o700, 0o750, 0o755] {
            assert!(
                check_directory(with_mode(ok).path(), None).is_ok(),
                "{ok:o}"
            );
        }
        for bad in [0o777, 0o1777, 0o770, 0o702] {
            let dir = with_mode(bad);
            let refused = check_directory(dir.path(), None);
            assert!(matches!(refused, Err(Distrust::Writable(..))), "{bad:o}");
        }
        let missing = check_directory(Path::new("/nonexistent/axrelay"), None);
        assert!(matches!(missing, Err(Distrust::Unreadable(..))));
    }

    #[test]
    fn another_users_directory_is_not_trusted() {
        // Needs root to give the directory away.
        if own_uid() != 0 {
            return;
        }
        let dir = with_mode(0o755);
        std::os::unix::fs::chown(dir.path(), Some(4242), None).unwrap();
        let refused = check_directory(dir.path(), None);
        assert!(
            matches!(refused, Err(Distrust::Owner(_, 4242))),
            "{refused:?}"
        );
        assert!(check_directory(dir.path(), Some(4242)).is_ok());
    }
}
