//! [`PrevIndex`]: what the previous snapshot holds, for the hash/diff stage.
//!
//! Built from the newest snapshot's manifest, then refreshed with newer
//! fast-path facts where the engine has them (a run without changes still
//! records new mtimes). Holds no file content: per path, kind, stat, hash.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::entry::{EntryKind, FileStat};
use crate::error::CoreError;
use crate::manifest::ManifestEntry;
use crate::plan::LastGood;
use crate::{ContentHash, RelPath};

/// One path of the previous snapshot.
#[derive(Clone, Debug)]
pub struct PrevEntry {
    /// Path relative to the snapshot root.
    pub path: RelPath,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Fast-path facts recorded for it.
    pub stat: FileStat,
    /// Content hash of a file.
    pub sha256: Option<ContentHash>,
    /// Target of a symlink.
    pub target: Option<PathBuf>,
    /// The recorded facts must not be trusted (racily clean, stale, changed
    /// during backup): hash the file again.
    pub rehash: bool,
    /// The snapshot holds content for this path.
    pub has_content: bool,
}

impl PrevEntry {
    /// The copy a run keeps, marked stale, when this file's source cannot
    /// be read: there is one when the entry is a file the snapshot holds.
    pub fn last_good(&self) -> Option<LastGood> {
        match (self.kind, self.sha256) {
            (EntryKind::File, Some(hash)) if self.has_content => Some(LastGood {
                from: self.path.clone(),
                hash,
                stat: self.stat,
            }),
            _ => None,
        }
    }
}

/// The previous snapshot, indexed by path and by content.
///
/// The path index maps a 64-bit hash of the path to the entry (the path is
/// stored once, in the entry); the rare second path with the same hash goes
/// to a small exact map.
#[derive(Debug, Default)]
pub struct PrevIndex {
    entries: Vec<PrevEntry>,
    by_path: HashMap<u64, u32>,
    collided: HashMap<RelPath, u32>,
    by_hash: HashMap<ContentHash, u32>,
    sizes: HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl PrevIndex {
    /// No previous snapshot: everything is new.
    pub fn empty() -> Self {
        PrevIndex::default()
    }

    /// Builds the index from manifest `entries`, reserving once for as
    /// many as their size hint says, or else `estimate` (0 when unknown).
    pub fn from_entries(
        entries: impl Iterator<Item = Result<ManifestEntry, CoreError>>,
        estimate: u64,
    ) -> Result<Self, CoreError> {
        let mut index = PrevIndex::default();
        let hinted = entries.size_hint().0 as u64;
        let estimate = if hinted > 0 { hinted } else { estimate };
        // An estimate comes from a file's size or a recorded count, either
        // of which can lie: reserve for at most 2M entries and let a
        // really larger tree grow the index as it is read.
        let estimate = estimate.min(1 << 21) as usize;
        index.entries.reserve(estimate);
        index.by_path.reserve(estimate);
        for entry in entries {
            index.push(entry?);
        }
        index.entries.shrink_to_fit();
        index.by_path.shrink_to_fit();
        index.by_hash.shrink_to_fit();
        Ok(index)
    }

    /// Adds one manifest entry (later entries for the same path win).
    pub fn push(&mut self, m: ManifestEntry) {
        let has_content = m.has_content();
        let rehash = m.rehash || m.status.is_some();
        let ManifestEntry { entry, sha256, .. } = m;
        let idx = self.entries.len() as u32;
        if entry.kind == EntryKind::File && has_content {
            if let Some(h) = sha256 {
                self.by_hash.entry(h).or_insert(idx);
                self.sizes.insert(entry.stat.size);
            }
        }
        let key = self.key(&entry.path);
        match self.by_path.get(&key).copied() {
            None => {
                self.by_path.insert(key, idx);
            }
            Some(other) if self.entries[other as usize].path == entry.path => {
                self.by_path.insert(key, idx);
            }
            Some(_) => {
                self.collided.insert(entry.path.clone(), idx);
            }
        }
        self.entries.push(PrevEntry {
            path: entry.path,
            kind: entry.kind,
            stat: entry.stat,
            sha256,
            target: entry.link_target,
            rehash,
            has_content,
        });
    }

    fn key(&self, path: &RelPath) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(path)
    }

    fn index_of(&self, path: &RelPath) -> Option<u32> {
        let idx = *self.by_path.get(&self.key(path))?;
        if self.entries[idx as usize].path == *path {
            Some(idx)
        } else {
            self.collided.get(path).copied()
        }
    }

    /// Refreshes the fast-path facts of `path` from a newer record of it:
    /// where the record's `hash` and size match the snapshot's, its
    /// mtime/ctime/inode (from `stat`) and `rehash` replace the snapshot's.
    pub fn refresh(&mut self, path: &RelPath, hash: ContentHash, stat: FileStat, rehash: bool) {
        let Some(idx) = self.index_of(path) else {
            return;
        };
        let e = &mut self.entries[idx as usize];
        let same = e.kind == EntryKind::File
            && e.stat.size == stat.size
            && e.has_content
            && e.sha256 == Some(hash);
        if same {
            e.stat.mtime_ns = stat.mtime_ns;
            e.stat.ctime_ns = stat.ctime_ns;
            e.stat.ino = stat.ino;
            e.rehash = rehash;
        }
    }

    /// Looks a path up; returns its index and entry.
    pub fn get(&self, path: &RelPath) -> Option<(u32, &PrevEntry)> {
        let idx = self.index_of(path)?;
        Some((idx, &self.entries[idx as usize]))
    }

    /// The entry at an index returned by [`PrevIndex::get`].
    pub fn at(&self, idx: u32) -> Option<&PrevEntry> {
        self.entries.get(idx as usize)
    }

    /// A path of the previous snapshot holding content `hash`.
    pub fn find_content(&self, hash: &ContentHash) -> Option<&RelPath> {
        self.by_hash
            .get(hash)
            .map(|&i| &self.entries[i as usize].path)
    }

    /// Whether some file of the previous snapshot has this size (a new path
    /// of such a size may be a rename and is hashed before copying).
    pub fn has_file_of_size(&self, size: u64) -> bool {
        self.sizes.contains(&size)
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no previous snapshot content.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, in manifest order.
    pub fn entries(&self) -> &[PrevEntry] {
        &self.entries
    }
}
