//! The pipeline runner: lock → once-per-day check → scan → hash/diff →
//! copy → commit → metadata → rotation.
//!
//! Stages run on named threads joined by bounded crossbeam channels. The
//! scan streams into hash/diff; entries are held (compactly) only until the
//! first change shows a snapshot is needed, then everything streams into
//! the copy workers while the scan goes on. The first fatal error sets a
//! shared cancel flag; the partial snapshot is then removed and nothing
//! else changes.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Local};
use serde::Serialize;
use tracing::{info, info_span, warn};

use crate::lock::{LockAttempt, LockHolder, RunLock};
use crate::metadata::{BackupMetadata, FileRecord, HistoryEntry, MetadataLoad};
use backup_core::entry::{EntryKind, FileStat, ScanEntry};
use backup_core::error::CoreError;
use backup_core::manifest::{ManifestEntry, SnapshotInfo, SnapshotStatus, SNAPSHOT_FORMAT};
use backup_core::plan::{Action, Change, PlannedEntry};
use backup_core::prev::PrevIndex;
use backup_core::progress::{Phase, Progress};
use backup_core::snapshot::SnapshotRef;
use backup_core::stage::{Differ, EntryFilter, RetentionPolicy, Scanner, SnapshotStore};
use backup_core::RelPath;

/// A file modified this close to (or after) the start of the scan that
/// recorded it is "racily clean": its mtime cannot prove it unchanged, so
/// the next run hashes it again.
pub const RACY_MARGIN_NS: i64 = 2_000_000_000;

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
    /// The snapshot made (or planned, for a dry run).
    pub snapshot: Option<String>,
    /// Its full path.
    pub snapshot_path: Option<String>,
    /// Regular files in the source after exclusions.
    pub files_total: u64,
    /// Files copied.
    pub files_copied: u64,
    /// Files hard-linked to the previous snapshot.
    pub files_linked: u64,
    /// Files that could not be read.
    pub files_failed: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Bytes of all files.
    pub bytes_total: u64,
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
            files_total: 0,
            files_copied: 0,
            files_linked: 0,
            files_failed: 0,
            bytes_copied: 0,
            bytes_total: 0,
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
            _ if self.files_failed > 0 => 3,
            _ => 0,
        }
    }
}

/// Formats an error with its whole cause chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
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
    match report.outcome {
        Outcome::Failed => tracing::error!(
            error = report.error.as_deref().unwrap_or(""),
            "backup run failed; nothing was changed"
        ),
        _ => info!(
            outcome = ?report.outcome,
            snapshot = report.snapshot.as_deref().unwrap_or("-"),
            files_total = report.files_total,
            files_copied = report.files_copied,
            files_linked = report.files_linked,
            files_failed = report.files_failed,
            bytes_copied = report.bytes_copied,
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

mod apply;
mod scan;
#[cfg(test)]
mod tests;

pub(crate) use scan::scan_and_diff;

use apply::{Applied, Applier};

/// An entry held until the run knows whether it makes a snapshot. Most are
/// unchanged and kept as an index into the previous snapshot plus their
/// new facts, not as a whole plan entry.
enum Held {
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
    fn new(p: PlannedEntry, prev: &PrevIndex) -> Held {
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

    fn into_planned(self, prev: &PrevIndex) -> Option<PlannedEntry> {
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
enum Sink {
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
struct Collector<'a> {
    opts: &'a RunOptions,
    stages: &'a Stages,
    report: RunReport,
    sink: Sink,
    any_change: bool,
    metadata_only: bool,
    scan_started_ns: i64,
    snapshot_name: Option<String>,
    history: &'a HashSet<String>,
    created: DateTime<Local>,
    previous: Option<SnapshotRef>,
    dry_copy_bytes: u64,
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
            r.files_total += 1;
            r.bytes_total += p.entry.stat.size;
        }
        self.any_change |= p.change.is_change();
    }

    fn accept(&mut self, prev: &PrevIndex, p: PlannedEntry) -> Result<(), CoreError> {
        self.tally(&p);
        if matches!(self.sink, Sink::Counting) {
            match &p.action {
                Action::Copy => {
                    self.report.files_copied += 1;
                    self.dry_copy_bytes += p.entry.stat.size;
                }
                Action::Link { .. } | Action::KeepStale(_) => self.report.files_linked += 1,
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
    fn start_writing(&mut self, prev: &PrevIndex) -> Result<(), CoreError> {
        let name = self.stages.store.next_name(self.created, self.history)?;
        let writer = self.stages.store.begin(&name, self.previous.as_ref())?;
        let metadata = crate::metadata::MetadataWriter::create(&self.opts.metadata_file)
            .inspect_err(|_| writer.abort())?;
        self.stages.progress.finish();
        self.stages.progress.start(Phase::Copy, None, None);
        let writer: Arc<dyn backup_core::stage::SnapshotWriter> = Arc::from(writer);
        let applier = Applier::start(
            Arc::clone(&writer),
            metadata,
            self.opts.threads.max(1),
            Arc::clone(&self.stages.progress),
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

/// Keeps the first report of each path (an unreadable path is seen by the
/// scan and again when its last good copy is kept).
fn dedup_failed(failed: &mut Vec<FailedPath>) {
    let mut seen = HashSet::new();
    failed.retain(|f| seen.insert(f.path.clone()));
}

fn add_failure(p: &PlannedEntry, failed: &mut Vec<FailedPath>) {
    let error = match &p.action {
        Action::KeepStale(s) => &s.error,
        Action::Fail { error } => error,
        _ => return,
    };
    failed.push(FailedPath {
        path: p.entry.path.to_string(),
        error: error.clone(),
    });
}

fn run_locked(
    opts: &RunOptions,
    stages: &Stages,
    started: Instant,
) -> Result<RunReport, CoreError> {
    let created: DateTime<Local> = Local::now();
    let mut warnings = Vec::new();

    let (mut meta, meta_ok) = match crate::metadata::load_summary(&opts.metadata_file) {
        MetadataLoad::Loaded(m) => (m, true),
        MetadataLoad::Missing => (BackupMetadata::default(), false),
        MetadataLoad::Unreadable(e) => {
            let msg = format!(
                "{}; rebuilding it from the newest snapshot's manifest",
                error_chain(&e)
            );
            warn!("{msg}");
            warnings.push(msg);
            (BackupMetadata::default(), false)
        }
    };
    let mut history: HashSet<String> = meta
        .backup_history
        .iter()
        .filter_map(|h| h.folder_name().map(str::to_owned))
        .collect();
    let snapshots = stages.store.list(&history)?;

    if opts.once_per_day && !opts.force {
        if let Some(last) = snapshots.last() {
            if last.created.with_timezone(&Local).date_naive() == created.date_naive() {
                info!(snapshot = %last.name, "a snapshot was already made today; skipping (use --force to override)");
                let mut r = RunReport::new(Outcome::SkippedNotDue);
                r.snapshot = Some(last.name.clone());
                return Ok(r);
            }
        }
    }
    if !opts.dry_run {
        let mut leftovers = stages.store.remove_leftovers()?;
        leftovers.extend(
            crate::metadata::remove_stale_temps(&opts.metadata_file)
                .into_iter()
                .map(|p| p.display().to_string()),
        );
        for p in leftovers {
            info!(path = %p, "removed the leftover of an interrupted run");
        }
    }

    let newest = snapshots.iter().rev().find(|s| s.info.is_some());
    let mut load_warnings = Vec::new();
    let load_prev = || {
        let mut prev = match newest {
            Some(s) => match load_previous(stages, s) {
                Ok(p) => p,
                Err(e) => {
                    load_warnings.push(format!(
                        "cannot use the previous snapshot {}: {}; copying everything",
                        s.name,
                        error_chain(&e)
                    ));
                    PrevIndex::empty()
                }
            },
            None => PrevIndex::empty(),
        };
        // The records only matter when they are newer than the manifest.
        let records_are_manifest =
            newest.is_some_and(|s| meta.records_snapshot.as_ref() == Some(&s.name));
        if meta_ok && !records_are_manifest {
            let applied =
                crate::metadata::for_each_file_record(&opts.metadata_file, |path, rec| {
                    refresh_from_record(&mut prev, path, &rec)
                });
            if let Err(e) = applied {
                load_warnings.push(format!("{}; using the snapshot's facts", error_chain(&e)));
            }
        } else if !prev.is_empty() && !opts.metadata_file.exists() {
            load_warnings.push(format!(
                "{} is missing; using the newest snapshot's manifest instead",
                opts.metadata_file.display()
            ));
        }
        prev
    };

    let scan_started_ns = now_ns();
    let mut c = Collector {
        opts,
        stages,
        report: RunReport::new(Outcome::NoChanges),
        sink: if opts.dry_run {
            Sink::Counting
        } else {
            Sink::Holding(Vec::new())
        },
        any_change: false,
        metadata_only: false,
        scan_started_ns,
        snapshot_name: None,
        history: &history,
        created,
        previous: newest.cloned(),
        dry_copy_bytes: 0,
    };
    c.report.warnings = warnings;
    let cancel = AtomicBool::new(false);
    stages.progress.start(Phase::Scan, None, None);
    let scanned = scan_and_diff(opts, stages, &cancel, load_prev, |prev, p| {
        c.accept(prev, p)
    });
    let (summary, prev) = match scanned {
        Ok(v) => v,
        Err(e) => {
            stages.progress.finish();
            if let Sink::Writing(applier, _) = std::mem::replace(&mut c.sink, Sink::Counting) {
                // A copy-stage failure is the real cause of a cancelled scan.
                return match applier.finish() {
                    Err(real) => Err(real),
                    Ok(applied) => {
                        applied.writer.abort();
                        Err(e)
                    }
                };
            }
            return Err(e);
        }
    };
    for msg in load_warnings {
        warn!("{msg}");
        c.report.warnings.push(msg);
    }
    let mut seen = summary.seen;
    for p in scan::carry_over_unreadable(&prev, &mut seen, &summary.unreadable_dirs) {
        c.accept(&prev, p)?;
    }
    c.report.changes.removed = seen.iter().filter(|s| !**s).count() as u64;
    c.any_change |= c.report.changes.removed > 0;
    c.report.skipped_special = summary.skipped_special;
    let scan_failures = summary.failed;
    info!(
        files = c.report.files_total,
        added = c.report.changes.added,
        modified = c.report.changes.modified,
        removed = c.report.changes.removed,
        metadata_only = c.report.changes.metadata_only,
        "scan and compare done"
    );

    if opts.dry_run {
        stages.progress.finish();
        let mut report = c.report;
        report.outcome = Outcome::DryRun;
        report.bytes_copied = c.dry_copy_bytes;
        report.failed.splice(0..0, scan_failures);
        report.files_failed = report.failed.len() as u64;
        if c.any_change {
            let name = stages.store.next_name(created, &history)?;
            let mut with_new = snapshots.clone();
            with_new.push(SnapshotRef {
                name: name.clone(),
                location: name.clone(),
                created: created.fixed_offset(),
                info: None,
            });
            report.rotate = deletable(stages, &with_new, &name)
                .into_iter()
                .map(|s| s.name)
                .collect();
            report.snapshot = Some(name);
        }
        return Ok(report);
    }

    if c.any_change && matches!(c.sink, Sink::Holding(_)) {
        // Only removals: nothing triggered writing during the scan.
        if let Err(e) = c.start_writing(&prev) {
            stages.progress.finish();
            return Err(e);
        }
    }

    let sink = std::mem::replace(&mut c.sink, Sink::Counting);
    let mut report = c.report;
    report.failed.splice(0..0, scan_failures);
    dedup_failed(&mut report.failed);
    let (applier, pending) = match sink {
        Sink::Writing(applier, pending) => (applier, pending),
        Sink::Holding(held) => {
            stages.progress.finish();
            // No change: no snapshot. Record new mtimes (or rebuild a lost
            // metadata file) so the next run's fast path holds.
            for h in &held {
                if let Held::Full(p) = h {
                    add_failure(p, &mut report.failed);
                }
            }
            report.files_failed = report.failed.len() as u64;
            if c.metadata_only || !meta_ok {
                let mut w = crate::metadata::MetadataWriter::create(&opts.metadata_file)?;
                for h in held {
                    if let Some(p) = h.into_planned(&prev) {
                        let m = mark_racy(p.to_manifest(None), scan_started_ns);
                        if let Some((path, rec)) = file_record(&m) {
                            w.add(path, &rec)?;
                        }
                    }
                }
                meta.last_scan_started_ns = Some(scan_started_ns);
                meta.profile = Some(opts.profile.clone());
                meta.records_snapshot = None;
                w.finish(&meta)?;
            }
            info!("nothing changed since the last snapshot; no snapshot made");
            return Ok(report);
        }
        Sink::Counting => return Ok(report),
    };
    if !pending.is_empty() {
        applier.send(pending);
    }
    let finished = applier.finish();
    stages.progress.finish();
    let Applied {
        writer,
        metadata,
        files_copied,
        files_linked,
        bytes_copied,
        failed,
    } = finished?;
    let name = c.snapshot_name.clone().unwrap_or_default();
    report.files_copied = files_copied;
    report.files_linked = files_linked;
    report.bytes_copied = bytes_copied;
    report.failed.extend(failed);
    dedup_failed(&mut report.failed);
    report.files_failed = report.failed.len() as u64;

    let info = SnapshotInfo {
        format: SNAPSHOT_FORMAT.into(),
        version: 1,
        profile: opts.profile.clone(),
        name: name.clone(),
        created: created.to_rfc3339(),
        scan_started_ns,
        source: opts.source.display().to_string(),
        files_total: report.files_total,
        files_copied: report.files_copied,
        files_linked: report.files_linked,
        files_failed: report.files_failed,
        bytes_copied: report.bytes_copied,
        bytes_total: report.bytes_total,
        status: if report.files_failed > 0 {
            SnapshotStatus::Partial
        } else {
            SnapshotStatus::Complete
        },
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let location = match writer.commit(&info) {
        Ok(p) => p,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    };
    info!(snapshot = %name, "snapshot committed");
    report.outcome = Outcome::Created;
    report.snapshot = Some(name.clone());
    report.snapshot_path = Some(location.clone());

    // Rotation, then the metadata (a crash in between only leaves history
    // entries of deleted snapshots, which are ignored; the new snapshot is
    // adopted through its own manifest).
    // From here on the snapshot is committed: problems are warnings, never
    // a "failed" outcome.
    history.insert(name.clone());
    let all = match stages.store.list(&history) {
        Ok(all) => all,
        Err(e) => {
            let msg = format!("rotation skipped: {}", error_chain(&e));
            warn!("{msg}");
            report.warnings.push(msg);
            Vec::new()
        }
    };
    let doomed = deletable(stages, &all, &name);
    if !doomed.is_empty() {
        stages
            .progress
            .start(Phase::Rotate, Some(doomed.len() as u64), None);
        for s in &doomed {
            match stages.store.remove(s) {
                Ok(()) => {
                    info!(snapshot = %s.name, "rotation deleted an old snapshot");
                    report.rotate.push(s.name.clone());
                }
                Err(e) => {
                    let msg = format!("rotation could not delete {}: {}", s.name, error_chain(&e));
                    warn!("{msg}");
                    report.warnings.push(msg);
                }
            }
            stages.progress.inc(1, 0);
        }
        if !report.rotate.is_empty() {
            match stages.store.collect_garbage() {
                Ok(Some(line)) => info!("{line}"),
                Ok(None) => {}
                Err(e) => {
                    let msg = format!(
                        "old data of deleted snapshots was not cleaned up: {}; the next rotation tries again",
                        error_chain(&e)
                    );
                    warn!("{msg}");
                    report.warnings.push(msg);
                }
            }
        }
        stages.progress.finish();
    }
    meta.last_backup_date = Some(info.created.clone());
    meta.last_scan_started_ns = Some(scan_started_ns);
    meta.records_snapshot = Some(name.clone());
    meta.profile = Some(opts.profile.clone());
    meta.backup_history.push(HistoryEntry {
        date: info.created.clone(),
        backup_dir: location,
        files_backed_up: report.files_copied,
        total_files: report.files_total,
        snapshot: Some(name.clone()),
        files_linked: Some(report.files_linked),
        files_failed: Some(report.files_failed),
        bytes_copied: Some(report.bytes_copied),
        duration_ms: Some(info.duration_ms),
        extra: Default::default(),
    });
    if !report.rotate.is_empty() {
        let gone: HashSet<&str> = report.rotate.iter().map(String::as_str).collect();
        meta.backup_history
            .retain(|h| h.folder_name().is_none_or(|n| !gone.contains(n)));
    }
    if let Err(e) = metadata.finish(&meta) {
        let msg = format!(
            "the snapshot is safe, but {} was not updated: {}; the next run rebuilds it from the snapshot",
            opts.metadata_file.display(),
            error_chain(&e)
        );
        warn!("{msg}");
        report.warnings.push(msg);
    }
    Ok(report)
}

/// Loads the manifest of `snapshot` as the index the differ compares with.
/// The store's manifest stream says how many entries to expect where it
/// can tell; else the file count (plus folders and symlinks) is used.
pub fn load_previous(stages: &Stages, snapshot: &SnapshotRef) -> Result<PrevIndex, CoreError> {
    let entries = stages.store.read_manifest(snapshot)?;
    let estimate = snapshot
        .info
        .as_ref()
        .map_or(0, |i| i.files_total + i.files_total / 8);
    PrevIndex::from_entries(entries, estimate)
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

/// The snapshots the retention policy deletes, never the newest and never `current`.
fn deletable(stages: &Stages, all: &[SnapshotRef], current: &str) -> Vec<SnapshotRef> {
    let newest = all.last().map(|s| s.name.clone());
    stages
        .retention
        .plan(all)
        .delete
        .into_iter()
        .filter(|s| Some(&s.name) != newest.as_ref() && s.name != current)
        .collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Flags a file modified (or its status changed: tools that keep old
/// mtimes still move ctime) within [`RACY_MARGIN_NS`] of the scan's start.
fn mark_racy(mut m: ManifestEntry, scan_started_ns: i64) -> ManifestEntry {
    if m.kind == EntryKind::File && m.mtime_ns.max(m.ctime_ns) >= scan_started_ns - RACY_MARGIN_NS {
        m.rehash = true;
    }
    m
}

/// The `file_checksums` record of a manifest entry (a file with a hash and
/// a UTF-8 path).
fn file_record(m: &ManifestEntry) -> Option<(&str, FileRecord)> {
    let (EntryKind::File, Some(hash), Some(path)) = (m.kind, m.sha256, m.path.to_str()) else {
        return None;
    };
    Some((
        path,
        FileRecord {
            size: m.size,
            modified_time: m.mtime_ns as f64 / 1e9,
            checksum: hash.to_hex(),
            mtime_ns: Some(m.mtime_ns),
            ctime_ns: Some(m.ctime_ns),
            inode: Some(m.ino),
            mode: Some(m.mode),
            rehash: m.rehash,
        },
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
