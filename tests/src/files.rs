//! Single files with exact metadata: writing a source file with a given
//! mode and mtime (to the nanosecond), reading modes and inodes back, and
//! damaging a snapshot file in place.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use filetime::FileTime;

use crate::World;

/// The permission bits of a path (not following symlinks).
pub fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The inode of a path (not following symlinks): equal inodes in two
/// snapshots mean a hard link, not a copy.
pub fn inode(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// Sets the permission bits of a path.
pub fn set_mode(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
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
