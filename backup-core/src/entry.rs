//! What the scan stage finds: [`ScanEntry`], its [`EntryKind`] and [`FileStat`].

use std::fs::Metadata;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::RelPath;

/// The kind of a tree entry. Other kinds (FIFOs, sockets, devices) are
/// skipped by the scan and never reach later stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, stored as a link and never followed.
    Symlink,
}

/// How close to a scan's start a change makes a file "racily clean" (see
/// [`FileStat::is_racy`]): file-system timestamps are coarser than the
/// clock on some systems.
pub const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// The `lstat` facts the fast path compares between runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the Unix epoch (0 where unknown).
    pub ctime_ns: i64,
    /// Inode number (0 where unknown).
    pub ino: u64,
    /// Permission bits (`st_mode & 0o7777`; 0o644/0o755 where unknown).
    pub mode: u32,
}

impl FileStat {
    /// Reads the facts from `lstat` metadata.
    #[cfg(unix)]
    pub fn from_metadata(m: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: if m.is_dir() { 0 } else { m.size() },
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
            ino: m.ino(),
            mode: m.mode() & 0o7777,
        }
    }

    /// Reads the facts from metadata (no ctime or inode off Unix).
    #[cfg(not(unix))]
    pub fn from_metadata(m: &Metadata) -> Self {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        FileStat {
            size: if m.is_dir() { 0 } else { m.len() },
            mtime_ns,
            ctime_ns: 0,
            ino: 0,
            mode: if m.is_dir() {
                0o755
            } else if m.permissions().readonly() {
                0o444
            } else {
                0o644
            },
        }
    }

    /// Whether a file with these facts is "racily clean" for a scan that
    /// started at `scan_started_ns`: modified (or its status changed: tools
    /// that keep old mtimes still move ctime) within [`RACY_MARGIN_NS`] of
    /// the scan's start or after it, so its mtime cannot prove it
    /// unchanged and the next run must hash it again.
    pub fn is_racy(&self, scan_started_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) >= scan_started_ns - RACY_MARGIN_NS
    }

    /// Whether size, mtime, ctime and inode all match: the fast path's test.
    pub fn same_content_key(&self, other: &FileStat) -> bool {
        self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.ino == other.ino
    }
}

/// One entry of the source tree, as the scan stage reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEntry {
    /// Path relative to the source root.
    pub path: RelPath,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// The entry's `lstat` facts.
    pub stat: FileStat,
    /// For a symlink, where it points (as stored in the link, never resolved).
    pub link_target: Option<PathBuf>,
}
