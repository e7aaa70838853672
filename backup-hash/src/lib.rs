//! # backup-hash
//!
//! Stage 2 of the backup pipeline, the incremental step: for each scanned
//! entry, answer "what changed since the previous snapshot, and how is it
//! written?".
//!
//! - Same size, mtime, ctime and inode as recorded (and not flagged racily
//!   clean): the recorded SHA-256 is trusted; the file is not read. It is
//!   hard-linked from the previous snapshot.
//! - Same size but other times: the file is hashed. Same hash: unchanged
//!   content (hard-linked; its new times are recorded). Other hash: copied.
//! - A new path whose size matches some earlier file is hashed; if its
//!   content is in the previous snapshot (a rename or a copy) it is linked.
//! - Anything else is copied, and hashed during the copy (one read).
//!
//! Central type: [`HashDiffer`] (implements [`backup_core::Differ`]); the
//! hashing itself is `backup_core::hash_reader`, the one implementation.
//!
//! ```
//! use backup_core::{Action, Change, Differ, EntryKind, FileStat, PrevIndex, RelPath, ScanEntry};
//! use backup_hash::HashDiffer;
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("new.txt"), "hello").unwrap();
//! let differ = HashDiffer::new(dir.path());
//! let entry = ScanEntry {
//!     path: RelPath::new("new.txt").unwrap(),
//!     kind: EntryKind::File,
//!     stat: FileStat { size: 5, ..FileStat::default() },
//!     link_target: None,
//! };
//! let planned = differ.plan(entry, &PrevIndex::empty());
//! assert_eq!(planned.change, Change::Added);
//! assert_eq!(planned.action, Action::Copy);
//! ```

use std::io;
use std::path::{Path, PathBuf};

use backup_core::{
    hash_file_beneath, Action, Change, ContentHash, Differ, EntryKind, LastGood, PlannedEntry,
    PrevEntry, PrevIndex, RelPath, ScanEntry,
};
use backup_sys::open_beneath;

/// Opens a file as the copy stage will (a regular file, no symlink
/// followed anywhere below the source, no FIFO waited on) and closes it
/// again: can it be read at all?
fn open_readable(source: &Path, rel: &RelPath) -> io::Result<()> {
    open_beneath(source, rel.as_path()).map(drop)
}

/// The hash of a file that still has the size it was scanned with (at most
/// one byte more is read); `None` when it has grown or shrunk since, so
/// the copy stage reads it afresh. Opened below `source` without following
/// any symlink (a folder swapped for a link during the run is not read
/// through).
fn hash_as_scanned(source: &Path, rel: &RelPath, size: u64) -> io::Result<Option<ContentHash>> {
    let (hash, read) = hash_file_beneath(source, rel, size)?;
    Ok((read == size).then_some(hash))
}

/// Stage 2: the hash/diff stage over a source folder.
#[derive(Clone, Debug)]
pub struct HashDiffer {
    source: PathBuf,
}

impl HashDiffer {
    /// A differ reading files below `source`.
    pub fn new(source: impl Into<PathBuf>) -> Self {
        HashDiffer {
            source: source.into(),
        }
    }

    fn plan_file(
        &self,
        entry: &ScanEntry,
        prev_entry: Option<&PrevEntry>,
        prev: &PrevIndex,
    ) -> (Change, Action) {
        let same_path = prev_entry.filter(|p| p.kind == EntryKind::File && p.has_content);
        if let Some(p) = same_path {
            if let Some(old_hash) = p.sha256 {
                let mode_change = p.stat.mode != entry.stat.mode;
                let content_same = |base: Change| {
                    if mode_change {
                        Change::ModeChanged
                    } else {
                        base
                    }
                };
                let link_old = Action::Link {
                    from: p.path.clone(),
                    hash: old_hash,
                };
                if !p.rehash && p.stat.same_content_key(&entry.stat) {
                    return (content_same(Change::Unchanged), link_old);
                }
                let keep_old = |e: std::io::Error| {
                    (
                        Change::Unreadable,
                        Action::KeepStale {
                            copy: Box::new(LastGood {
                                from: p.path.clone(),
                                hash: old_hash,
                                stat: p.stat,
                            }),
                            error: e.to_string(),
                        },
                    )
                };
                if p.stat.size == entry.stat.size {
                    return match hash_as_scanned(&self.source, &entry.path, entry.stat.size) {
                        Ok(Some(h)) if h == old_hash => {
                            (content_same(Change::MetadataOnly), link_old)
                        }
                        Ok(h) => (Change::Modified, self.link_or_copy(h, prev)),
                        Err(e) => keep_old(e),
                    };
                }
                if entry.stat.size > 0 && prev.has_file_of_size(entry.stat.size) {
                    return match hash_as_scanned(&self.source, &entry.path, entry.stat.size) {
                        Ok(h) => (Change::Modified, self.link_or_copy(h, prev)),
                        Err(e) => keep_old(e),
                    };
                }
                return (Change::Modified, Action::Copy);
            }
        }
        let change = if prev_entry.is_some() {
            Change::TypeChanged
        } else {
            Change::Added
        };
        if entry.stat.size > 0 && prev.has_file_of_size(entry.stat.size) {
            return match hash_as_scanned(&self.source, &entry.path, entry.stat.size) {
                Ok(h) => (change, self.link_or_copy(h, prev)),
                Err(e) => (
                    Change::Unreadable,
                    Action::Fail {
                        error: e.to_string(),
                    },
                ),
            };
        }
        (change, Action::Copy)
    }

    /// A file about to be copied that cannot even be opened is not a
    /// change (it would otherwise make a new, identical snapshot every run
    /// while it stays unreadable): its last good copy is kept, or it is
    /// recorded as failed.
    fn check_readable(
        &self,
        entry: &ScanEntry,
        prev_entry: Option<&PrevEntry>,
        change: Change,
        action: Action,
    ) -> (Change, Action) {
        if action != Action::Copy {
            return (change, action);
        }
        let Err(e) = open_readable(&self.source, &entry.path) else {
            return (change, action);
        };
        let error = e.to_string();
        match prev_entry.and_then(PrevEntry::last_good) {
            Some(copy) => (
                Change::Unreadable,
                Action::KeepStale {
                    copy: Box::new(copy),
                    error,
                },
            ),
            None => (Change::Unreadable, Action::Fail { error }),
        }
    }

    /// A link to earlier content with this `hash`, else a copy (also when
    /// there is no hash: the file changed since it was scanned).
    fn link_or_copy(&self, hash: Option<ContentHash>, prev: &PrevIndex) -> Action {
        match hash.and_then(|hash| prev.find_content(&hash).map(|from| (from, hash))) {
            Some((from, hash)) => Action::Link {
                from: from.clone(),
                hash,
            },
            None => Action::Copy,
        }
    }
}

impl Differ for HashDiffer {
    fn plan(&self, entry: ScanEntry, prev: &PrevIndex) -> PlannedEntry {
        let found = prev.get(&entry.path);
        let prev_index = found.map(|(i, _)| i);
        let prev_entry = found.map(|(_, e)| e);
        let (change, action) = match entry.kind {
            EntryKind::Dir => {
                let change = match prev_entry {
                    None => Change::Added,
                    Some(p) if p.kind != EntryKind::Dir => Change::TypeChanged,
                    Some(p) if p.stat.mode != entry.stat.mode => Change::ModeChanged,
                    Some(_) => Change::Unchanged,
                };
                (change, Action::CreateDir)
            }
            EntryKind::Symlink => {
                let change = match prev_entry {
                    None => Change::Added,
                    Some(p) if p.kind != EntryKind::Symlink => Change::TypeChanged,
                    Some(p) if p.target != entry.link_target => Change::Modified,
                    Some(_) => Change::Unchanged,
                };
                (change, Action::CreateSymlink)
            }
            EntryKind::File => {
                let (change, action) = self.plan_file(&entry, prev_entry, prev);
                self.check_readable(&entry, prev_entry, change, action)
            }
        };
        let previous_version = prev_entry
            .filter(|_| action == Action::Copy)
            .and_then(PrevEntry::last_good)
            .map(Box::new);
        PlannedEntry {
            entry,
            change,
            action,
            prev_index,
            previous_version,
        }
    }
}

#[cfg(test)]
mod tests;
