//! [`PrevIndex`]: what the previous snapshot holds, for the hash/diff stage.
//!
//! Built from the newest snapshot's manifest, then refreshed with the
//! fast-path facts of `backup_metadata.json` (which a run without changes
//! still updates). Holds no file content: per path, kind, stat, hash.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::entry::{EntryKind, FileStat};
use crate::error::CoreError;
use crate::manifest::{read_manifest, ManifestEntry};
use crate::metadata::FileRecord;
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

/// The previous snapshot, indexed by path and by content.
///
/// The path index maps a 64-bit hash of the path to the entry (the path is
/// stored once, in the entry); the rare second path with the same hash goes
/// to a small exact map.
#[derive(Debug, Default)]
pub struct PrevIndex {
    snapshot_dir: Option<PathBuf>,
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

    /// Loads the manifest of the snapshot folder `dir`.
    pub fn from_snapshot(dir: &Path) -> Result<Self, CoreError> {
        // Reserve once from the manifest's size (a line is rarely under 120
        // bytes) instead of doubling, which leaves up to half unused.
        let manifest = crate::manifest::state_dir(dir).join(crate::manifest::MANIFEST_FILE);
        let estimate = std::fs::metadata(&manifest).map_or(0, |m| m.len() / 120);
        Self::from_entries(Some(dir.to_path_buf()), read_manifest(dir)?, estimate)
    }

    /// Builds the index from manifest `entries` (of the snapshot folder
    /// `dir`, when it is a local folder); `estimate` is the expected number
    /// of entries (0 when unknown), reserved once.
    pub fn from_entries(
        dir: Option<PathBuf>,
        entries: impl Iterator<Item = Result<ManifestEntry, CoreError>>,
        estimate: u64,
    ) -> Result<Self, CoreError> {
        let mut index = PrevIndex {
            snapshot_dir: dir,
            ..PrevIndex::default()
        };
        let estimate = estimate.min(1 << 26) as usize;
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
        let idx = self.entries.len() as u32;
        if m.kind == EntryKind::File && has_content {
            if let Some(h) = m.sha256 {
                self.by_hash.entry(h).or_insert(idx);
                self.sizes.insert(m.size);
            }
        }
        let stat = m.stat();
        let key = self.key(&m.path);
        match self.by_path.get(&key).copied() {
            None => {
                self.by_path.insert(key, idx);
            }
            Some(other) if self.entries[other as usize].path == m.path => {
                self.by_path.insert(key, idx);
            }
            Some(_) => {
                self.collided.insert(m.path.clone(), idx);
            }
        }
        self.entries.push(PrevEntry {
            path: m.path,
            kind: m.kind,
            stat,
            sha256: m.sha256,
            target: m.target,
            rehash: m.rehash || m.status.is_some(),
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

    /// Refreshes the fast-path facts of one path from its metadata record:
    /// where the record's checksum and size match the snapshot's, its newer
    /// mtime/ctime/inode replace the snapshot's (a run that only saw mtime
    /// changes records them there without making a snapshot).
    pub fn apply_record(&mut self, path: &str, rec: &FileRecord) {
        let (Some(mtime_ns), Some(ctime_ns), Some(ino)) = (rec.mtime_ns, rec.ctime_ns, rec.inode)
        else {
            return;
        };
        let Ok(rel) = RelPath::new(path) else { return };
        let Some(idx) = self.index_of(&rel) else {
            return;
        };
        let e = &mut self.entries[idx as usize];
        let same = e.kind == EntryKind::File
            && e.stat.size == rec.size
            && e.status_ok()
            && e.sha256
                .is_some_and(|h| rec.checksum.parse::<ContentHash>().ok() == Some(h));
        if same {
            e.stat.mtime_ns = mtime_ns;
            e.stat.ctime_ns = ctime_ns;
            e.stat.ino = ino;
            e.rehash = rec.rehash;
        }
    }

    /// The folder of the previous snapshot, if any.
    pub fn snapshot_dir(&self) -> Option<&Path> {
        self.snapshot_dir.as_deref()
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

impl PrevEntry {
    fn status_ok(&self) -> bool {
        self.has_content
    }
}
