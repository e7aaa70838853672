//! The pipeline runner: lock → once-per-day check → scan → hash/diff →
//! copy → commit → metadata → rotation.
//!
//! Stages run on named threads joined by bounded crossbeam channels. The
//! scan streams into hash/diff; entries are held (compactly) only until the
//! first change shows a snapshot is needed, then everything streams into
//! the copy workers while the scan goes on. The first fatal error sets a
//! shared cancel flag; the partial snapshot is then removed and nothing
//! else changes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tracing::{info, info_span};

use crate::lock::{LockAttempt, LockHolder, RunLock};
use crate::metadata::FileRecord;
use backup_core::entry::{EntryKind, FileStat};
use backup_core::error::{error_chain, CoreError};
use backup_core::manifest::{Counts, ManifestEntry};
use backup_core::prev::PrevIndex;
use backup_core::progress::Progress;
use backup_core::snapshot::SnapshotRef;
use backup_core::stage::{Differ, EntryFilter, RetentionPolicy, Scanner, SnapshotStore};
use backup_core::RelPath;

/// The tracing target of the run's closing summary event (which the CLI
/// keeps off stderr, where it prints its own summary).
pub const REPORT_TARGET: &str = "backup_report";

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The profile name (snapshot prefix).
    pub profile: String,
    /// The source folder.
    pub source: PathBuf,
    /// Where the destination is, for messages (the store knows where it
    /// writes).
    pub destination: String,
    /// Path of `backup_metadata.json`.
    pub metadata_file: PathBuf,
    /// Path of `backup_in_progress.lock`.
    pub lock_file: PathBuf,
    /// Skip when a snapshot was made today.
    pub once_per_day: bool,
    /// Ignore `once_per_day`.
    pub force: bool,
    /// Plan only; write nothing.
    pub dry_run: bool,
    /// Worker threads for hashing and copying (at least 1).
    pub threads: usize,
    /// What the caller found while setting the run up and the user should
    /// know (e.g. something of the source that is deliberately left out):
    /// reported as the run's warnings.
    pub notices: Vec<String>,
}

/// The concrete stages of a run.
pub struct Stages {
    /// Stage 1.
    pub scanner: Box<dyn Scanner>,
    /// Filters between scan and hash/diff.
    pub filters: Vec<Box<dyn EntryFilter>>,
    /// Stage 2.
    pub differ: Box<dyn Differ>,
    /// Stage 3: the destination (it also deletes what retention gives up).
    pub store: Box<dyn SnapshotStore>,
    /// Stage 4: which snapshots to keep.
    pub retention: Box<dyn RetentionPolicy>,
    /// Progress display.
    pub progress: Arc<dyn Progress>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A snapshot was made.
    Created,
    /// Nothing changed since the last snapshot.
    NoChanges,
    /// A snapshot was already made today.
    SkippedNotDue,
    /// Another run holds the lock.
    SkippedLocked,
    /// A dry run reported what it would do.
    DryRun,
    /// The run failed and was rolled back.
    Failed,
}

/// A path that could not be backed up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailedPath {
    /// Path relative to the source.
    pub path: String,
    /// The error.
    pub error: String,
}

/// Counts of differences against the previous snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    /// New paths.
    pub added: u64,
    /// Paths with new content, target, type or mode.
    pub modified: u64,
    /// Paths gone from the source.
    pub removed: u64,
    /// Files whose mtime alone changed.
    pub metadata_only: u64,
}

/// The report of a run (printed as JSON by `backup-cli --json`).
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// How the run ended.
    pub outcome: Outcome,
    /// The snapshot made (or planned, for a dry run); `None` when the run
    /// made none (a skip, no changes, a failure).
    pub snapshot: Option<String>,
    /// Its full path.
    pub snapshot_path: Option<String>,
    /// For `skipped_not_due`: today's snapshot, which made the run skip.
    pub last_snapshot: Option<String>,
    /// Files and bytes found, copied, linked and failed.
    #[serde(flatten)]
    pub counts: Counts,
    /// Wall time.
    pub duration_ms: u64,
    /// Paths that could not be read.
    pub failed: Vec<FailedPath>,
    /// Why the run failed.
    pub error: Option<String>,
    /// Snapshots deleted by rotation (or that would be, for a dry run).
    pub rotate: Vec<String>,
    /// Who holds the lock, for `skipped_locked`.
    pub lock_holder: Option<LockHolder>,
    /// Differences against the previous snapshot.
    pub changes: ChangeCounts,
    /// Special files (FIFOs, sockets, devices) left out.
    pub skipped_special: u64,
    /// Things the user should know (e.g. the metadata was rebuilt).
    pub warnings: Vec<String>,
}

impl RunReport {
    /// An empty report with `outcome`.
    pub fn new(outcome: Outcome) -> Self {
        RunReport {
            outcome,
            snapshot: None,
            snapshot_path: None,
            last_snapshot: None,
            counts: Counts::default(),
            duration_ms: 0,
            failed: Vec::new(),
            error: None,
            rotate: Vec::new(),
            lock_holder: None,
            changes: ChangeCounts::default(),
            skipped_special: 0,
            warnings: Vec::new(),
        }
    }

    /// The process exit code for this report: 0 success or skip, 1 failed,
    /// 3 committed with unreadable files.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Failed => 1,
            _ if self.counts.files_failed > 0 => 3,
            _ => 0,
        }
    }
}

/// Runs one backup. Never panics into the caller: errors and panics end up
/// in a report with outcome `failed`.
pub fn run_backup(opts: &RunOptions, stages: &Stages) -> RunReport {
    let started = Instant::now();
    let span = info_span!("backup", profile = %opts.profile);
    let _guard = span.enter();
    let lock = match RunLock::try_acquire(&opts.lock_file) {
        Ok(LockAttempt::Acquired(lock)) => lock,
        Ok(LockAttempt::Held(holder)) => {
            info!(holder = %holder, "another backup run holds the lock; skipping");
            let mut r = RunReport::new(Outcome::SkippedLocked);
            r.lock_holder = Some(holder);
            return r;
        }
        Err(e) => return failed_report(&e, started),
    };
    info!(
        source = %opts.source.display(),
        destination = %opts.destination,
        dry_run = opts.dry_run,
        force = opts.force,
        "backup run started"
    );
    let result = catch_unwind(AssertUnwindSafe(|| run_locked(opts, stages, started)));
    drop(lock);
    let mut report = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => failed_report(&e, started),
        Err(_) => failed_report(&CoreError::Panicked("backup"), started),
    };
    report.duration_ms = started.elapsed().as_millis() as u64;
    // The run's summary: for the operations log (a front end that prints
    // its own summary leaves the target REPORT_TARGET off its console).
    match report.outcome {
        Outcome::Failed => tracing::error!(
            target: REPORT_TARGET,
            error = report.error.as_deref().unwrap_or(""),
            "backup run failed; nothing was changed"
        ),
        _ => info!(
            target: REPORT_TARGET,
            outcome = ?report.outcome,
            snapshot = report.snapshot.as_deref().unwrap_or("-"),
            files_total = report.counts.files_total,
            files_copied = report.counts.files_copied,
            files_linked = report.counts.files_linked,
            files_failed = report.counts.files_failed,
            bytes_copied = report.counts.bytes_copied,
            duration_ms = report.duration_ms,
            "backup run finished"
        ),
    }
    report
}

fn failed_report(e: &CoreError, started: Instant) -> RunReport {
    let mut r = RunReport::new(Outcome::Failed);
    r.error = Some(error_chain(e));
    r.duration_ms = started.elapsed().as_millis() as u64;
    r
}

mod scan;
#[cfg(test)]
mod tests;

pub(crate) use scan::scan_and_diff;

mod apply;
mod collect;
mod phases;
/// The run, phase by phase. Each phase returns what the next needs; the
/// first error ends the run (the partial snapshot is removed where one was
/// begun, and nothing else changes).
fn run_locked(
    opts: &RunOptions,
    stages: &Stages,
    started: Instant,
) -> Result<RunReport, CoreError> {
    let mut start = match phases::prepare(opts, stages)? {
        phases::Prepared::Skip(report) => return Ok(report),
        phases::Prepared::Run(start) => start,
    };
    let scanned = phases::scan_and_plan(opts, stages, &start)?;
    if opts.dry_run {
        return phases::dry_run_report(stages, &start, scanned);
    }
    let written = match phases::write(opts, &mut start, scanned)? {
        phases::Written::Unchanged(report) => return Ok(report),
        phases::Written::Snapshot(written) => written,
    };
    let mut committed = phases::commit(opts, &start, written, started)?;
    // From here on the snapshot is committed: problems are warnings, never
    // a "failed" outcome. Rotation comes before the metadata (a crash in
    // between only leaves history entries of deleted snapshots, which are
    // ignored; the new snapshot is adopted through its own manifest).
    phases::rotate(stages, &mut start.history, &mut committed);
    Ok(phases::record_metadata(opts, start.meta, committed))
}

/// Loads the manifest of `snapshot` as the index the differ compares with.
/// The store's manifest stream says how many entries to expect where it
/// can tell; else the file count (plus folders and symlinks) is used.
pub fn load_previous(stages: &Stages, snapshot: &SnapshotRef) -> Result<PrevIndex, CoreError> {
    let entries = stages.store.read_manifest(snapshot)?;
    let estimate = snapshot.info.as_ref().map_or(0, |i| {
        let n = i.counts.files_total.min(1 << 26);
        n + n / 8
    });
    PrevIndex::from_entries(entries, estimate)
}

/// The warning for a metadata file that cannot be written: it is a cache,
/// so the run goes on (and the snapshot, if any, is safe).
fn metadata_not_written(path: &std::path::Path, e: &CoreError) -> String {
    format!(
        "{} (metadata_file) cannot be written: {}; it is a cache: the snapshots are safe and the next run rebuilds it from the newest one",
        path.display(),
        error_chain(e)
    )
}

/// Applies one `file_checksums` record of the metadata file to the
/// previous index (records with every fast-path fact and a valid hash only).
fn refresh_from_record(prev: &mut PrevIndex, path: &str, rec: &FileRecord) {
    let (Some(mtime_ns), Some(ctime_ns), Some(ino)) = (rec.mtime_ns, rec.ctime_ns, rec.inode)
    else {
        return;
    };
    let (Ok(rel), Ok(hash)) = (RelPath::new(path), rec.checksum.parse()) else {
        return;
    };
    let stat = FileStat {
        size: rec.size,
        mtime_ns,
        ctime_ns,
        ino,
        mode: 0,
    };
    prev.refresh(&rel, hash, stat, rec.rehash);
}

/// The snapshots the retention policy deletes: never the newest, never
/// `current`, and never one the metadata history alone makes this
/// profile's ([`SnapshotRef::adopted`]: a history never makes a folder
/// deletable).
fn deletable(stages: &Stages, all: &[SnapshotRef], current: &str) -> Vec<SnapshotRef> {
    let newest = all.last().map(|s| s.name.clone());
    stages
        .retention
        .plan(all)
        .delete
        .into_iter()
        .filter(|s| Some(&s.name) != newest.as_ref() && s.name != current && !s.adopted)
        .collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The `file_checksums` record of a manifest entry (a file with a hash and
/// a UTF-8 path).
fn file_record(m: &ManifestEntry) -> Option<(&str, FileRecord)> {
    let (EntryKind::File, Some(hash), Some(path)) = (m.entry.kind, m.sha256, m.entry.path.to_str())
    else {
        return None;
    };
    Some((
        path,
        FileRecord {
            size: m.entry.stat.size,
            modified_time: m.entry.stat.mtime_ns as f64 / 1e9,
            checksum: hash.to_hex(),
            mtime_ns: Some(m.entry.stat.mtime_ns),
            ctime_ns: Some(m.entry.stat.ctime_ns),
            inode: Some(m.entry.stat.ino),
            mode: Some(m.entry.stat.mode),
            rehash: m.rehash,
        },
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
