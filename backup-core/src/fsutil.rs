//! File-system helpers: atomic writes, directory syncs, tree removal and
//! free-space queries.
//!
//! This is the one module allowed `unsafe`, for the `syncfs` and `statvfs`
//! system calls that std does not expose.
#![allow(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::error::CoreError;

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one: write a temporary sibling, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?))
}

/// Like [`write_atomic`], with the content produced by `fill` into a
/// buffered writer (so large files are streamed, not built in memory).
pub fn write_atomic_with<F>(path: &Path, fill: F) -> Result<(), CoreError>
where
    F: FnOnce(&mut dyn Write) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
{
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        fill(&mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        let io = match e.downcast::<io::Error>() {
            Ok(io) => *io,
            Err(other) => io::Error::other(other),
        };
        return Err(CoreError::io("write", path, io));
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(|e| CoreError::io("sync", parent, e))?;
    }
    Ok(())
}

/// fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Flushes every dirty page of the file system holding `path` to disk
/// (`syncfs`). One call replaces an fsync per file of a snapshot.
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let f = File::open(path)?;
        // SAFETY: `f` is an open descriptor for the duration of the call.
        let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        File::open(path)?.sync_all()
    }
}

/// Free bytes available to this user on the file system holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs is plain data; zeroed is a valid initial value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated string, `st` a valid out pointer.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast)]
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Err(io::Error::other(
            "free space is not available on this platform",
        ))
    }
}

/// Removes a tree, first granting write permission on folders that lack it
/// (snapshots keep the source's folder modes, some of which are read-only).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_dirs_writable(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Ok(());
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
        }
        for child in fs::read_dir(dir)? {
            let child = child?;
            if child.file_type()?.is_dir() {
                make_dirs_writable(&child.path())?;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// This machine's host name (for lock files and logs).
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
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

    #[test]
    fn free_space_is_positive() {
        assert!(free_space(Path::new(".")).unwrap() > 0);
    }
}
