//! Removing snapshot trees of the local destination, whose files and
//! folders are read-only.

use std::fs;
use std::io;
use std::path::Path;

/// Removes a tree, first granting write permission on folders that lack it
/// (snapshots keep the source's folder modes, some of which are read-only).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            backup_sys::Tree::open(path)?.make_dirs_writable()?;
            if cfg!(windows) {
                remove_read_only_files(path)
            } else {
                fs::remove_dir_all(path)
            }
        }
        Err(e) => Err(e),
    }
}

/// Removes a tree whose files may carry the read-only attribute (Windows
/// will not delete those), keeping that attribute on their other hard
/// links ([`backup_sys::remove_read_only_file`]). Symlinks are removed, never
/// followed.
fn remove_read_only_files(dir: &Path) -> io::Result<()> {
    for child in fs::read_dir(dir)? {
        let path = child?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            remove_read_only_files(&path)?;
        } else if meta.is_file() {
            backup_sys::remove_read_only_file(&path)?;
        } else {
            // A symlink (to a file or, on Windows, a folder).
            fs::remove_file(&path).or_else(|_| fs::remove_dir(&path))?;
        }
    }
    fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read-only files (every snapshot file) and their links elsewhere:
    /// the tree goes, the other link keeps its content and read-only mode
    /// (under Wine: the handle that clears and sets the attribute again).
    #[test]
    fn remove_tree_removes_read_only_files_and_spares_their_other_links() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t/sub");
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join("f"), b"x").unwrap();
        let mut ro = fs::metadata(t.join("f")).unwrap().permissions();
        ro.set_readonly(true);
        fs::set_permissions(t.join("f"), ro).unwrap();
        fs::hard_link(t.join("f"), dir.path().join("other")).unwrap();
        // The Windows path itself (std's remove_dir_all may not need it).
        remove_read_only_files(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
        assert_eq!(fs::read(dir.path().join("other")).unwrap(), b"x");
        let other = fs::metadata(dir.path().join("other")).unwrap();
        assert!(other.permissions().readonly());
    }

    #[cfg(unix)]
    #[test]
    fn remove_tree_handles_read_only_dirs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t/sub");
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join("f"), b"x").unwrap();
        fs::set_permissions(t.join("f"), fs::Permissions::from_mode(0o444)).unwrap();
        fs::set_permissions(&t, fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
    }
}
