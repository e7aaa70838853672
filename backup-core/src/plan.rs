//! The hash/diff stage's answer for each entry: what [`Change`] it is
//! against the previous snapshot and what [`Action`] writes it.

use crate::entry::{FileStat, ScanEntry};
use crate::manifest::{EntryStatus, ManifestEntry};
use crate::{ContentHash, RelPath};

/// How an entry compares with the previous snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Same content, kind, mode and fast-path facts.
    Unchanged,
    /// Same content; only mtime/ctime/inode moved. Not a reason for a new
    /// snapshot, but the new facts are recorded.
    MetadataOnly,
    /// Same content, different permission bits.
    ModeChanged,
    /// Different content (or symlink target).
    Modified,
    /// Not in the previous snapshot.
    Added,
    /// A file became a folder or the like.
    TypeChanged,
    /// The entry could not be read; it does not count as a change.
    Unreadable,
}

impl Change {
    /// Whether this change alone justifies a new snapshot.
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Change::ModeChanged | Change::Modified | Change::Added | Change::TypeChanged
        )
    }
}

/// What the copy stage does for an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the folder.
    CreateDir,
    /// Create the symlink (target in [`ScanEntry::link_target`]).
    CreateSymlink,
    /// Hard-link the previous snapshot's file at `from`, whose content is `hash`.
    Link {
        /// Path of the content in the previous snapshot.
        from: RelPath,
        /// Its SHA-256.
        hash: ContentHash,
    },
    /// Copy the source file, hashing exactly the bytes written.
    Copy,
    /// The source could not be read; keep the previous snapshot's copy and
    /// mark it stale.
    KeepStale {
        /// The copy kept. (Boxed: rare, and it keeps every plan entry small.)
        copy: Box<LastGood>,
        /// Why the source could not be read.
        error: String,
    },
    /// The source could not be read and there is no earlier copy.
    Fail {
        /// Why the source could not be read.
        error: String,
    },
}

/// The previous snapshot's copy of a file: what a run keeps, marked stale,
/// when the source cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastGood {
    /// Its path in the previous snapshot.
    pub from: RelPath,
    /// Its SHA-256.
    pub hash: ContentHash,
    /// Its recorded facts (size, mtime, mode…), which the manifest keeps:
    /// the source's current ones describe content we do not have.
    pub stat: FileStat,
}

impl LastGood {
    /// The action that keeps this copy, stale, because of `error`.
    pub fn keep_stale(&self, error: String) -> Action {
        Action::KeepStale {
            copy: Box::new(self.clone()),
            error,
        }
    }
}

/// One entry with its verdict.
#[derive(Clone, Debug)]
pub struct PlannedEntry {
    /// The scanned entry.
    pub entry: ScanEntry,
    /// How it compares with the previous snapshot.
    pub change: Change,
    /// What writes it into the new snapshot.
    pub action: Action,
    /// Index of the same path in the previous snapshot's index, if present.
    pub prev_index: Option<u32>,
    /// For a [`Action::Copy`]: the last good copy of this path in the
    /// previous snapshot, kept (marked stale) if the source cannot be read
    /// when it is copied.
    pub previous_version: Option<Box<LastGood>>,
}

impl PlannedEntry {
    /// The manifest line for a file whose content was read in one pass (a
    /// copy or an upload): its `hash`, the `bytes` read and the source's
    /// facts when it was opened. A file that `changed` while it was read
    /// is marked `changed_during_backup` and hashed again by the next run.
    pub fn to_manifest_read(
        self,
        hash: ContentHash,
        bytes: u64,
        stat: FileStat,
        changed: bool,
    ) -> ManifestEntry {
        let mut m = self.into_manifest(Some(hash));
        m.entry.stat = FileStat {
            size: bytes,
            ..stat
        };
        if changed {
            m.status = Some(EntryStatus::ChangedDuringBackup);
            m.rehash = true;
        }
        m
    }

    /// The manifest line for this entry, given the content hash the copy
    /// stage ended up with (for a copy) or the planned one (for a link).
    /// A kept stale copy is recorded with its own facts and hash; the
    /// problem moves into the line, said once.
    pub fn into_manifest(self, sha256: Option<ContentHash>) -> ManifestEntry {
        let mut entry = self.entry;
        let (status, error, planned_hash) = match self.action {
            Action::KeepStale { copy, error } => {
                entry.stat = copy.stat;
                (Some(EntryStatus::Stale), Some(error), Some(copy.hash))
            }
            Action::Fail { error } => (Some(EntryStatus::Failed), Some(error), None),
            Action::Link { hash, .. } => (None, None, Some(hash)),
            Action::CreateDir | Action::CreateSymlink | Action::Copy => (None, None, None),
        };
        ManifestEntry {
            entry,
            sha256: sha256.or(planned_hash),
            rehash: status.is_some(),
            status,
            error,
        }
    }
}
