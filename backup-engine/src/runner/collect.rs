//! The collector: where planned entries go, in scan order, while the scan
//! runs. Entries are held (compactly) until the first change shows that a
//! snapshot is needed; then the snapshot is begun, everything held is handed
//! to the copy stage and the rest streams after it. A dry run only counts.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Local};
use tracing::info;

use super::apply::Applier;
use super::{FailedPath, RunOptions, RunReport, Stages};
use crate::metadata::MetadataWriter;
use backup_core::entry::{EntryKind, ScanEntry};
use backup_core::error::CoreError;
use backup_core::plan::{Action, Change, PlannedEntry};
use backup_core::prev::PrevIndex;
use backup_core::progress::Phase;
use backup_core::snapshot::SnapshotRef;

/// An entry held until the run knows whether it makes a snapshot. Most are
/// unchanged and kept as an index into the previous snapshot plus their
/// new facts, not as a whole plan entry.
pub(super) enum Held {
    /// Same path, kind, target and content as previous entry `prev`.
    Same {
        prev: u32,
        stat: backup_core::entry::FileStat,
        change: Change,
    },
    /// Anything else (boxed: rare, and it keeps every held entry small).
    Full(Box<PlannedEntry>),
}

impl Held {
    pub(super) fn new(p: PlannedEntry, prev: &PrevIndex) -> Held {
        let same = p
            .prev_index
            .and_then(|i| prev.at(i).map(|e| (i, e)))
            .filter(|(_, e)| {
                e.kind == p.entry.kind
                    && e.target == p.entry.link_target
                    && matches!(p.change, Change::Unchanged | Change::MetadataOnly)
                    && match &p.action {
                        Action::Link { from, hash } => *from == e.path && Some(*hash) == e.sha256,
                        Action::CreateDir | Action::CreateSymlink => true,
                        _ => false,
                    }
            });
        match same {
            Some((i, _)) => Held::Same {
                prev: i,
                stat: p.entry.stat,
                change: p.change,
            },
            None => Held::Full(Box::new(p)),
        }
    }

    pub(super) fn into_planned(self, prev: &PrevIndex) -> Option<PlannedEntry> {
        match self {
            Held::Full(p) => Some(*p),
            Held::Same {
                prev: i,
                stat,
                change,
            } => {
                let e = prev.at(i)?;
                let action = match (e.kind, e.sha256) {
                    (EntryKind::File, Some(hash)) => Action::Link {
                        from: e.path.clone(),
                        hash,
                    },
                    (EntryKind::Dir, _) => Action::CreateDir,
                    (EntryKind::Symlink, _) => Action::CreateSymlink,
                    (EntryKind::File, None) => return None,
                };
                Some(PlannedEntry {
                    entry: ScanEntry {
                        path: e.path.clone(),
                        kind: e.kind,
                        stat,
                        link_target: e.target.clone(),
                    },
                    change,
                    action,
                    prev_index: Some(i),
                    previous_version: None,
                })
            }
        }
    }
}

/// Where planned entries go while the scan runs.
pub(super) enum Sink {
    /// No change seen yet: hold entries.
    Holding(Vec<Held>),
    /// A snapshot is being written.
    Writing(Applier, Vec<PlannedEntry>),
    /// A dry run: only count.
    Counting,
}

/// Entries per batch handed to the copy stage.
const FEED_BATCH: usize = 512;

/// The per-run state the collector updates for every planned entry.
pub(super) struct Collector<'a> {
    pub(super) opts: &'a RunOptions,
    pub(super) stages: &'a Stages,
    pub(super) report: RunReport,
    pub(super) sink: Sink,
    pub(super) any_change: bool,
    pub(super) metadata_only: bool,
    pub(super) scan_started_ns: i64,
    pub(super) snapshot_name: Option<String>,
    pub(super) history: &'a HashSet<String>,
    pub(super) created: DateTime<Local>,
    pub(super) previous: Option<SnapshotRef>,
    pub(super) dry_copy_bytes: u64,
}

impl Collector<'_> {
    fn tally(&mut self, p: &PlannedEntry) {
        let r = &mut self.report;
        match p.change {
            Change::Added => r.changes.added += 1,
            Change::Modified | Change::ModeChanged | Change::TypeChanged => r.changes.modified += 1,
            Change::MetadataOnly => {
                r.changes.metadata_only += 1;
                self.metadata_only = true;
            }
            Change::Unchanged | Change::Unreadable => {}
        }
        if p.entry.kind == EntryKind::File {
            r.counts.files_total += 1;
            r.counts.bytes_total += p.entry.stat.size;
        }
        self.any_change |= p.change.is_change();
    }

    pub(super) fn accept(&mut self, prev: &PrevIndex, p: PlannedEntry) -> Result<(), CoreError> {
        self.tally(&p);
        if matches!(self.sink, Sink::Counting) {
            match &p.action {
                Action::Copy => {
                    self.report.counts.files_copied += 1;
                    self.dry_copy_bytes += p.entry.stat.size;
                }
                Action::Link { .. } | Action::KeepStale { .. } => {
                    self.report.counts.files_linked += 1
                }
                _ => {}
            }
            add_failure(&p, &mut self.report.failed);
            return Ok(());
        }
        if p.change.is_change() && matches!(self.sink, Sink::Holding(_)) {
            self.start_writing(prev)?;
        }
        if let Sink::Writing(applier, _) = &self.sink {
            if applier.is_cancelled() {
                // The destination failed: stop scanning; finish() reports why.
                return Err(CoreError::Cancelled);
            }
        }
        match &mut self.sink {
            Sink::Holding(held) => {
                if held.capacity() == 0 {
                    // An unchanged tree has as many entries as the last one.
                    held.reserve_exact(prev.len() + 64);
                }
                held.push(Held::new(p, prev))
            }
            Sink::Writing(applier, pending) => {
                pending.push(p);
                if pending.len() >= FEED_BATCH {
                    let batch = std::mem::replace(pending, Vec::with_capacity(FEED_BATCH));
                    applier.send(batch);
                }
            }
            Sink::Counting => {}
        }
        Ok(())
    }

    /// Begins the snapshot and hands it everything held so far.
    pub(super) fn start_writing(&mut self, prev: &PrevIndex) -> Result<(), CoreError> {
        let name = self.stages.store.next_name(self.created, self.history)?;
        let writer = self.stages.store.begin(&name, self.previous.as_ref())?;
        // The metadata is a cache: a file that cannot be written is a
        // warning, never a failed backup.
        let metadata = match MetadataWriter::create(&self.opts.metadata_file) {
            Ok(m) => Some(m),
            Err(e) => {
                let msg = super::metadata_not_written(&self.opts.metadata_file, &e);
                tracing::warn!("{msg}");
                self.report.warnings.push(msg);
                None
            }
        };
        let bar = self.stages.progress.start(Phase::Copy, None, None);
        let writer: Arc<dyn backup_core::stage::SnapshotWriter> = Arc::from(writer);
        let applier = Applier::start(
            Arc::clone(&writer),
            metadata,
            self.opts.threads.max(1),
            bar,
            self.scan_started_ns,
        )
        .inspect_err(|_| writer.abort())?;
        info!(snapshot = %name, "changes found; writing a new snapshot");
        self.snapshot_name = Some(name);
        let held = match std::mem::replace(&mut self.sink, Sink::Writing(applier, Vec::new())) {
            Sink::Holding(h) => h,
            _ => Vec::new(),
        };
        if let Sink::Writing(applier, _) = &mut self.sink {
            let mut batch = Vec::with_capacity(FEED_BATCH);
            for h in held {
                if let Some(p) = h.into_planned(prev) {
                    batch.push(p);
                }
                if batch.len() >= FEED_BATCH {
                    applier.send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(FEED_BATCH),
                    ));
                }
            }
            if !batch.is_empty() {
                applier.send(batch);
            }
        }
        Ok(())
    }
}

pub(super) fn add_failure(p: &PlannedEntry, failed: &mut Vec<FailedPath>) {
    let error = match &p.action {
        Action::KeepStale { error, .. } => error,
        Action::Fail { error } => error,
        _ => return,
    };
    failed.push(FailedPath {
        path: p.entry.path.to_string(),
        error: error.clone(),
    });
}
