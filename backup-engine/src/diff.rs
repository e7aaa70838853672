//! What changed between two snapshots, or between a snapshot and the
//! source now: [`TreeDiff`]. Paths of files and symlinks only (folders are
//! implied by their contents).

use std::collections::HashMap;

use serde::Serialize;

use crate::runner::{scan_and_diff, RunOptions, Stages};
use backup_core::entry::EntryKind;
use backup_core::error::CoreError;
use backup_core::manifest::ManifestEntry;
use backup_core::plan::Change;
use backup_core::prev::PrevIndex;

/// Paths added, changed (content, target, type or mode) and removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TreeDiff {
    /// Paths only in the newer tree.
    pub added: Vec<String>,
    /// Paths in both whose content, symlink target, type or mode differ.
    pub changed: Vec<String>,
    /// Paths only in the older tree.
    pub removed: Vec<String>,
}

impl TreeDiff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    fn sort(&mut self) {
        self.added.sort();
        self.changed.sort();
        self.removed.sort();
    }
}

fn leaf(m: &ManifestEntry) -> bool {
    m.entry.kind != EntryKind::Dir
}

/// Compares the manifests of two snapshots (e.g. from
/// [`backup_core::SnapshotStore::read_manifest`]).
pub fn diff_snapshots(
    older: impl Iterator<Item = Result<ManifestEntry, CoreError>>,
    newer: impl Iterator<Item = Result<ManifestEntry, CoreError>>,
) -> Result<TreeDiff, CoreError> {
    let mut old: HashMap<_, ManifestEntry> = HashMap::new();
    for e in older {
        let e = e?;
        if leaf(&e) {
            old.insert(e.entry.path.clone(), e);
        }
    }
    let mut diff = TreeDiff::default();
    for e in newer {
        let e = e?;
        if !leaf(&e) {
            continue;
        }
        match old.remove(&e.entry.path) {
            None => diff.added.push(e.entry.path.to_string()),
            Some(o) => {
                if o.entry.kind != e.entry.kind
                    || o.sha256 != e.sha256
                    || o.entry.link_target != e.entry.link_target
                    || o.entry.stat.mode != e.entry.stat.mode
                {
                    diff.changed.push(e.entry.path.to_string());
                }
            }
        }
    }
    diff.removed = old.into_keys().map(|p| p.to_string()).collect();
    diff.sort();
    Ok(diff)
}

/// Compares a snapshot (its manifest loaded as `prev`) with the source
/// now, using the scan and hash/diff stages (files whose size and times
/// match are not read).
pub fn diff_with_source(
    prev: PrevIndex,
    opts: &RunOptions,
    stages: &Stages,
) -> Result<TreeDiff, CoreError> {
    let mut diff = TreeDiff::default();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let (summary, prev) = scan_and_diff(
        opts,
        stages,
        &cancel,
        &backup_core::NoProgress,
        move || prev,
        |prev, p| {
            let path = p.entry.path.to_string();
            let was_leaf = p
                .prev_index
                .and_then(|i| prev.at(i))
                .is_some_and(|e| e.kind != EntryKind::Dir);
            match (p.entry.kind, p.change) {
                // A leaf that became a folder: its path is removed as a leaf.
                (EntryKind::Dir, Change::TypeChanged) if was_leaf => diff.removed.push(path),
                (EntryKind::Dir, _) => {}
                (_, Change::Added) => diff.added.push(path),
                (_, Change::Modified | Change::ModeChanged | Change::TypeChanged) => {
                    // A folder that became a file is new as a leaf.
                    if was_leaf {
                        diff.changed.push(path)
                    } else {
                        diff.added.push(path)
                    }
                }
                (_, Change::Unchanged | Change::MetadataOnly | Change::Unreadable) => {}
            }
            Ok(())
        },
    )?;
    for (i, seen) in summary.seen.iter().enumerate() {
        if let Some(e) = prev.at(i as u32) {
            if !*seen && e.kind != EntryKind::Dir {
                diff.removed.push(e.path.to_string());
            }
        }
    }
    diff.sort();
    Ok(diff)
}
