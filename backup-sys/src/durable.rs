//! Making a snapshot survive a power cut, on each platform.
//!
//! A snapshot is written under a temporary name and renamed into place once
//! everything in it is on disk. What "on disk" takes differs:
//!
//! - **Linux**: one `syncfs` of the destination's file system flushes every
//!   file of the snapshot at once ([`sync_file_system`]), then the rename is
//!   made durable by an `fsync` of the folder holding it ([`sync_dir`]).
//! - **Windows**: there is no per-volume flush a normal user may call, so
//!   each written file is flushed as it is closed ([`FLUSH_EACH_FILE`],
//!   `FlushFileBuffers`). Folders are not flushed: opening one for that
//!   needs `FILE_FLAG_BACKUP_SEMANTICS` and write access (Wine refuses it,
//!   "Access denied"), and NTFS journals its metadata, so a completed rename
//!   survives a crash (exFAT and FAT have no journal: there a power cut
//!   right after a run may lose its newest snapshot, never an older one).
//!   The rename itself is `MoveFileExW` with `MOVEFILE_WRITE_THROUGH`
//!   ([`rename`]); Microsoft documents that flag's wait for moves made by
//!   copying, so for a same-volume rename the journal is what counts.
//! - **Other Unix systems**: each file flushed, and the folder.

#[cfg(unix)]
use std::fs::File;
use std::io;
use std::path::Path;

/// Whether every written file must be flushed on its own before the
/// snapshot is committed (there is no [`sync_file_system`] here).
pub const FLUSH_EACH_FILE: bool = !cfg!(target_os = "linux");

/// Flushes everything written below `path` to disk: one `syncfs` on Linux;
/// elsewhere the files were flushed one by one ([`FLUSH_EACH_FILE`]) and
/// only `path` itself is left, as a folder ([`sync_dir`]).
#[allow(unsafe_code)]
pub fn sync_file_system(path: &Path) -> io::Result<()> {
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
        sync_dir(path)
    }
}

/// Makes the creations and renames in the folder `dir` durable: `fsync` of
/// the folder on Unix; nothing on Windows, where NTFS journals them (see
/// the module's notes).
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

/// Renames `from` to `to` (replacing a file at `to`, as `rename(2)` does).
/// On Windows `MoveFileExW` with `MOVEFILE_WRITE_THROUGH` (see the module's
/// notes on what that promises). Long paths
/// are passed in their extended-length form (`\\?\`, see
/// [`extended_length`]).
#[allow(unsafe_code)]
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(windows)]
    {
        use windows_sys::Win32::Storage::FileSystem::{
            MoveFileExW, MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH,
        };
        let (from_w, to_w) = (wide(from), wide(to));
        // SAFETY: both are NUL-terminated wide strings that outlive the call.
        let ok = unsafe {
            MoveFileExW(
                from_w.as_ptr(),
                to_w.as_ptr(),
                MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(windows))]
    {
        std::fs::rename(from, to)
    }
}

/// Moves the new file `from` onto `to`, replacing the file there (restore
/// putting a verified file in place). Windows refuses to replace a file with
/// the read-only attribute, which a restored snapshot file carries when its
/// original did: that attribute is cleared first (never through a symlink,
/// never on a folder), and the new file brings its own.
pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(windows)]
    if let Ok(meta) = std::fs::symlink_metadata(to) {
        if meta.is_file() && meta.permissions().readonly() {
            let mut p = meta.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(to, p)?;
        }
    }
    rename(from, to)
}

/// Removes the file `path` that may carry the read-only attribute, as
/// deleting a read-only file needs on Windows, without leaving the file's
/// other hard links (in other snapshots) writable: the attribute belongs to
/// the file, not the name, so it is cleared through a handle, the name
/// removed, and the attribute set again through the same handle before it
/// closes. Elsewhere a plain `unlink` (the folder's permission decides).
pub fn remove_read_only_file(path: &Path) -> io::Result<()> {
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_READ_ATTRIBUTES: u32 = 0x80;
        const FILE_WRITE_ATTRIBUTES: u32 = 0x100;
        const FILE_SHARE_ALL: u32 = 0x1 | 0x2 | 0x4;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        let handle = std::fs::OpenOptions::new()
            .access_mode(FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES)
            .share_mode(FILE_SHARE_ALL)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)?;
        let perms = handle.metadata()?.permissions();
        if !perms.readonly() {
            drop(handle);
            return std::fs::remove_file(path);
        }
        let mut writable = perms.clone();
        #[allow(clippy::permissions_set_readonly_false)]
        writable.set_readonly(false);
        handle.set_permissions(writable)?;
        std::fs::remove_file(path)?;
        // The other links keep the attribute.
        handle.set_permissions(perms).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("removed, but its other hard links (in other snapshots) were left writable: {e}"),
            )
        })
    }
    #[cfg(not(windows))]
    {
        std::fs::remove_file(path)
    }
}

/// `path` as a NUL-terminated wide string for a Windows call, in its
/// extended-length form where it is long.
#[cfg(windows)]
pub(crate) fn wide(path: &Path) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    let units: Vec<u16> = path.as_os_str().encode_wide().collect();
    let mut out = extended_length(&units);
    out.push(0);
    out
}

/// The longest path a Windows call takes in its plain form, less the 12
/// characters an 8.3 name may need (`CreateDirectoryW`'s limit).
const PLAIN_PATH_MAX: usize = 260 - 12;

/// The extended-length form (`\\?\C:\…`, `\\?\UNC\server\share\…`) of an
/// absolute Windows path (UTF-16 code units, no NUL) longer than a plain
/// path may be; shorter, relative or already-verbatim paths come back
/// unchanged. Forward slashes become backslashes: the extended form does
/// not translate them. (Pure, so that it is tested on every platform:
/// Wine takes long paths without it, Windows does not.)
pub fn extended_length(path: &[u16]) -> Vec<u16> {
    const BS: u16 = b'\\' as u16;
    const FS: u16 = b'/' as u16;
    let sep = |c: u16| c == BS || c == FS;
    let is_drive = path.len() >= 3
        && path[0] < 128
        && (path[0] as u8).is_ascii_alphabetic()
        && path[1] == b':' as u16
        && sep(path[2]);
    let is_unc = path.len() >= 3 && sep(path[0]) && sep(path[1]) && !sep(path[2]);
    let verbatim = is_unc && (path[2] == b'?' as u16 || path[2] == b'.' as u16);
    if path.len() < PLAIN_PATH_MAX || verbatim || !(is_drive || is_unc) {
        return path.to_vec();
    }
    let fixed = path.iter().map(|&c| if c == FS { BS } else { c });
    let mut out: Vec<u16> = Vec::with_capacity(path.len() + 8);
    if is_drive {
        out.extend(r"\\?\".encode_utf16());
        out.extend(fixed);
    } else {
        out.extend(r"\\?\UNC\".encode_utf16());
        out.extend(fixed.skip(2));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> String {
        String::from_utf16(&extended_length(&s.encode_utf16().collect::<Vec<_>>())).unwrap()
    }

    /// Issue 13: paths over 260 characters reach Windows calls in their
    /// extended-length form; short, relative and verbatim ones unchanged.
    #[test]
    fn long_windows_paths_get_the_extended_length_form() {
        let long = "a".repeat(300);
        assert_eq!(ext(r"C:\short\path"), r"C:\short\path");
        assert_eq!(
            ext(&format!(r"C:\Users\me\{long}")),
            format!(r"\\?\C:\Users\me\{long}")
        );
        assert_eq!(ext(&format!("d:/x/{long}")), format!(r"\\?\d:\x\{long}"));
        assert_eq!(
            ext(&format!(r"\\server\share\{long}")),
            format!(r"\\?\UNC\server\share\{long}")
        );
        let verbatim = format!(r"\\?\C:\{long}");
        assert_eq!(ext(&verbatim), verbatim);
        let device = format!(r"\\.\pipe\{long}");
        assert_eq!(ext(&device), device);
        let relative = format!(r"backups\{long}");
        assert_eq!(ext(&relative), relative);
    }

    /// Restore puts a verified file over one it restored before, which
    /// carries the read-only attribute on Windows (Wine keeps it as the mode).
    #[test]
    fn replace_file_replaces_a_read_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (dir.path().join(".restoring"), dir.path().join("f"));
        std::fs::write(&new, b"new").unwrap();
        std::fs::write(&old, b"old").unwrap();
        let mut ro = std::fs::metadata(&old).unwrap().permissions();
        ro.set_readonly(true);
        std::fs::set_permissions(&old, ro).unwrap();
        replace_file(&new, &old).unwrap();
        assert_eq!(std::fs::read(&old).unwrap(), b"new");
        assert!(!new.exists());
    }

    #[test]
    fn rename_replaces_a_file_and_moves_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"old").unwrap();
        rename(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
        assert!(!a.exists());
        let (d, e) = (dir.path().join("d.partial"), dir.path().join("d"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("f"), b"x").unwrap();
        rename(&d, &e).unwrap();
        assert_eq!(std::fs::read(e.join("f")).unwrap(), b"x");
        sync_dir(dir.path()).unwrap();
        sync_file_system(dir.path()).unwrap();
    }
}
