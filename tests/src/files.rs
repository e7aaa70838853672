//! Single files with exact metadata: writing a source file with a given
//! mode and mtime (to the nanosecond), reading modes and inodes back, and
//! damaging a snapshot file in place.
//!
//! On Windows a mode is what the read-only attribute can say: `0o444` when
//! it is set, `0o644` when not; setting a mode without a write bit sets the
//! attribute. An inode is the NTFS file index, equal for two hard links.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use filetime::FileTime;

use crate::World;

/// The permission bits of a path (not following symlinks).
pub fn mode(p: &Path) -> u32 {
    let perm = fs::symlink_metadata(p).unwrap().permissions();
    #[cfg(unix)]
    let m = perm.mode() & 0o7777;
    #[cfg(windows)]
    let m = if perm.readonly() { 0o444 } else { 0o644 };
    m
}

/// The inode of a path (not following symlinks): equal inodes in two
/// snapshots mean a hard link, not a copy.
pub fn inode(p: &Path) -> u64 {
    #[cfg(unix)]
    let ino = fs::symlink_metadata(p).unwrap().ino();
    #[cfg(windows)]
    let ino = windows::file_index(p).0;
    ino
}

/// How many names a file has (hard links), not following symlinks.
pub fn link_count(p: &Path) -> u64 {
    #[cfg(unix)]
    let n = fs::symlink_metadata(p).unwrap().nlink();
    #[cfg(windows)]
    let n = windows::file_index(p).1;
    n
}

/// Sets the permission bits of a path (on Windows: the read-only attribute
/// when `m` has no write bit).
pub fn set_mode(p: &Path, m: u32) {
    #[cfg(unix)]
    let perm = fs::Permissions::from_mode(m);
    #[cfg(windows)]
    let perm = {
        let mut perm = fs::symlink_metadata(p).unwrap().permissions();
        perm.set_readonly(m & 0o222 == 0);
        perm
    };
    fs::set_permissions(p, perm).unwrap();
}

/// Sets a file's mtime to `secs` seconds after the epoch.
pub fn set_mtime(p: &Path, secs: i64) {
    filetime::set_file_mtime(p, FileTime::from_unix_time(secs, 0)).unwrap();
}

/// Sets a folder's mtime (seconds + nanos).
pub fn set_dir_mtime(p: &Path, secs: i64, nanos: u32) {
    filetime::set_file_mtime(p, FileTime::from_unix_time(secs, nanos)).unwrap();
}

/// Sets a symlink's own mtime (seconds + nanos), not its target's.
pub fn set_link_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// Writes a source file with an exact mode and mtime (seconds + nanos),
/// also over a read-only one.
pub fn put(w: &World, rel: &str, content: impl AsRef<[u8]>, m: u32, secs: i64, nanos: u32) {
    let p = w.src.join(rel);
    if p.exists() {
        set_mode(&p, 0o644);
    }
    w.write(rel, content);
    set_mode(&p, m);
    filetime::set_file_mtime(&p, FileTime::from_unix_time(secs, nanos)).unwrap();
}

/// Copies the folder `from` to `to` as `cp -a` does for what the tests
/// make: files and folders with their bytes, read-only attribute or mode,
/// and mtimes (on Unix symlinks too, as links). Works where `cp` is not.
pub fn copy_tree(from: &Path, to: &Path) {
    let m = fs::symlink_metadata(from).unwrap();
    let mtime = FileTime::from_last_modification_time(&m);
    if m.file_type().is_symlink() {
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(fs::read_link(from).unwrap(), to).unwrap();
            filetime::set_symlink_file_times(to, mtime, mtime).unwrap();
        }
        #[cfg(not(unix))]
        panic!(
            "copy_tree: symlink {} on a system without them",
            from.display()
        );
    } else if m.is_dir() {
        fs::create_dir(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
        filetime::set_file_mtime(to, mtime).unwrap();
        fs::set_permissions(to, m.permissions()).unwrap();
    } else {
        fs::write(to, fs::read(from).unwrap()).unwrap();
        // The time first: Windows opens a file for writing to set it.
        filetime::set_file_mtime(to, mtime).unwrap();
        fs::set_permissions(to, m.permissions()).unwrap();
    }
}

/// Flips one byte of a (read-only) snapshot file in place; the size stays.
pub fn flip_byte(p: &Path, at: u64) {
    set_mode(p, 0o644);
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    set_mode(p, 0o444);
}

#[cfg(windows)]
mod windows {
    //! The file index and link count std does not give on stable Rust.

    use std::fs;
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;

    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OPEN_REPARSE_POINT,
    };

    /// (file index, number of links) of `p`, itself (not a link's target).
    pub fn file_index(p: &Path) -> (u64, u64) {
        let f = fs::OpenOptions::new()
            .access_mode(0)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
        // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is a valid value to
        // be overwritten.
        #[allow(unsafe_code)]
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: the handle is open for the call's duration; info is valid
        // for writes.
        #[allow(unsafe_code)]
        let ok = unsafe { GetFileInformationByHandle(f.as_raw_handle(), &mut info) };
        assert!(ok != 0, "GetFileInformationByHandle {}", p.display());
        (
            (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
            u64::from(info.nNumberOfLinks),
        )
    }
}
