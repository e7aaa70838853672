//! The pipeline runner: lock → once-per-day check → scan → hash/diff →
//! (plan) → copy → commit → metadata → rotation.
//!
//! Stages run on named threads joined by bounded crossbeam channels under
//! `std::thread::scope`. The first fatal error sets a shared cancel flag;
//! the partial snapshot is then removed and nothing else changes.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Local};
use crossbeam_channel::bounded;
use serde::Serialize;
use tracing::{info, info_span, warn};

use crate::entry::{EntryKind, ScanEntry};
use crate::error::CoreError;
use crate::lock::{LockAttempt, LockHolder, RunLock};
use crate::manifest::{ManifestEntry, SnapshotInfo, SnapshotStatus, SNAPSHOT_FORMAT};
use crate::metadata::{BackupMetadata, FileRecord, HistoryEntry, MetadataLoad};
use crate::plan::{Action, Change, PlannedEntry};
use crate::prev::PrevIndex;
use crate::progress::{Phase, Progress};
use crate::snapshot::{list_snapshots, next_snapshot_name, remove_leftovers, SnapshotRef};
use crate::stage::{
    Differ, EntryFilter, RetentionPolicy, ScanBatch, ScanEvent, Scanner, SnapshotRemover,
    SnapshotStore, WrittenEntry,
};

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
    /// The destination folder.
    pub destination: PathBuf,
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
    /// Stage 3.
    pub store: Box<dyn SnapshotStore>,
    /// Stage 4: which snapshots to keep.
    pub retention: Box<dyn RetentionPolicy>,
    /// Stage 4: how to delete one.
    pub remover: Box<dyn SnapshotRemover>,
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
        destination = %opts.destination.display(),
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

/// What scan + hash/diff produced.
pub(crate) struct Collected {
    pub(crate) plan: Vec<PlannedEntry>,
    pub(crate) seen: Vec<bool>,
    failed: Vec<FailedPath>,
    unreadable_dirs: Vec<PathBuf>,
    skipped_special: u64,
}

fn run_locked(
    opts: &RunOptions,
    stages: &Stages,
    started: Instant,
) -> Result<RunReport, CoreError> {
    let created: DateTime<Local> = Local::now();
    let mut report = RunReport::new(Outcome::NoChanges);

    let (mut meta, meta_ok) = match BackupMetadata::load(&opts.metadata_file) {
        MetadataLoad::Loaded(m) => (m, true),
        MetadataLoad::Missing => (BackupMetadata::default(), false),
        MetadataLoad::Unreadable(e) => {
            let msg = format!(
                "{}; rebuilding it from the newest snapshot's manifest",
                error_chain(&e)
            );
            warn!("{msg}");
            report.warnings.push(msg);
            (BackupMetadata::default(), false)
        }
    };
    let history: HashSet<String> = meta
        .backup_history
        .iter()
        .filter_map(|h| h.folder_name().map(str::to_owned))
        .collect();
    let snapshots = list_snapshots(&opts.destination, &opts.profile, &history)?;

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
        for p in remove_leftovers(&opts.destination, &opts.profile)? {
            info!(path = %p.display(), "removed the leftover of an interrupted run");
        }
    }

    let newest = snapshots.iter().rev().find(|s| s.info.is_some());
    let mut load_warnings = Vec::new();
    let load_prev = || {
        let mut prev = match newest {
            Some(s) => match PrevIndex::from_snapshot(&s.path) {
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
        if meta_ok {
            prev.apply_metadata(&meta);
        } else if !prev.is_empty() && !opts.metadata_file.exists() {
            load_warnings.push(format!(
                "{} is missing; using the newest snapshot's manifest instead",
                opts.metadata_file.display()
            ));
        }
        prev
    };

    let scan_started_ns = now_ns();
    stages.progress.start(Phase::Scan, None, None);
    let (mut collected, prev) = scan_and_diff(opts, stages, load_prev)?;
    stages.progress.finish();
    for msg in load_warnings {
        warn!("{msg}");
        report.warnings.push(msg);
    }
    // The records are rebuilt from this run's entries when saved.
    meta.file_checksums = Default::default();
    carry_over_unreadable(&prev, &mut collected);

    // Tally.
    let mut any_change = false;
    let mut metadata_only = false;
    for p in &collected.plan {
        match p.change {
            Change::Added => report.changes.added += 1,
            Change::Modified | Change::ModeChanged | Change::TypeChanged => {
                report.changes.modified += 1
            }
            Change::MetadataOnly => {
                report.changes.metadata_only += 1;
                metadata_only = true;
            }
            Change::Unchanged | Change::Unreadable => {}
        }
        any_change |= p.change.is_change();
        if p.entry.kind == EntryKind::File {
            report.files_total += 1;
            report.bytes_total += p.entry.stat.size;
        }
    }
    report.changes.removed = collected.seen.iter().filter(|s| !**s).count() as u64;
    any_change |= report.changes.removed > 0;
    report.failed = std::mem::take(&mut collected.failed);
    report.skipped_special = collected.skipped_special;
    info!(
        files = report.files_total,
        added = report.changes.added,
        modified = report.changes.modified,
        removed = report.changes.removed,
        metadata_only = report.changes.metadata_only,
        "scan and compare done"
    );

    if opts.dry_run {
        report.outcome = Outcome::DryRun;
        for p in &collected.plan {
            match p.action {
                Action::Copy => {
                    report.files_copied += 1;
                    report.bytes_copied += p.entry.stat.size;
                }
                Action::Link { .. } | Action::KeepStale(_) => report.files_linked += 1,
                _ => {}
            }
        }
        add_plan_failures(&collected.plan, &mut report);
        if any_change {
            let name = next_snapshot_name(&opts.destination, &opts.profile, created, &history);
            let mut with_new = snapshots.clone();
            with_new.push(SnapshotRef {
                name: name.clone(),
                path: opts.destination.join(&name),
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

    if !any_change {
        add_plan_failures(&collected.plan, &mut report);
        report.files_linked = 0;
        if metadata_only || !meta_ok {
            let mut records = Vec::with_capacity(collected.plan.len());
            for p in &collected.plan {
                records.push(mark_racy(p.to_manifest(None), scan_started_ns));
            }
            meta.last_scan_started_ns = Some(scan_started_ns);
            meta.profile = Some(opts.profile.clone());
            meta.save_with_files(&opts.metadata_file, file_records(&records))?;
        }
        info!("nothing changed since the last snapshot; no snapshot made");
        return Ok(report);
    }

    // Write the snapshot.
    let name = next_snapshot_name(&opts.destination, &opts.profile, created, &history);
    std::fs::create_dir_all(&opts.destination)
        .map_err(|e| CoreError::destination("create", &opts.destination, e))?;
    let writer = stages.store.begin(&name, prev.snapshot_dir())?;
    let copy_bytes: u64 = collected
        .plan
        .iter()
        .filter(|p| p.action == Action::Copy)
        .map(|p| p.entry.stat.size)
        .sum();
    stages.progress.start(
        Phase::Copy,
        Some(collected.plan.len() as u64),
        Some(copy_bytes),
    );
    let applied = apply_plan(opts, &*writer, &collected.plan, stages, scan_started_ns);
    stages.progress.finish();
    let applied = match applied {
        Ok(a) => a,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    };
    report.files_copied = applied.files_copied;
    report.files_linked = applied.files_linked;
    report.bytes_copied = applied.bytes_copied;
    report.failed.extend(applied.failed);
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
    let path = writer.commit(&info)?;
    info!(snapshot = %name, "snapshot committed");
    report.outcome = Outcome::Created;
    report.snapshot = Some(name.clone());
    report.snapshot_path = Some(path.display().to_string());

    // Metadata.
    meta.last_backup_date = Some(info.created.clone());
    meta.last_scan_started_ns = Some(scan_started_ns);
    meta.profile = Some(opts.profile.clone());
    meta.backup_history.push(HistoryEntry {
        date: info.created.clone(),
        backup_dir: path.display().to_string(),
        files_backed_up: report.files_copied,
        total_files: report.files_total,
        snapshot: Some(name.clone()),
        files_linked: Some(report.files_linked),
        files_failed: Some(report.files_failed),
        bytes_copied: Some(report.bytes_copied),
        duration_ms: Some(info.duration_ms),
        extra: Default::default(),
    });
    meta.save_with_files(&opts.metadata_file, file_records(&applied.records))?;

    // Rotation.
    let mut history: HashSet<String> = history;
    history.insert(name.clone());
    let all = list_snapshots(&opts.destination, &opts.profile, &history)?;
    let doomed = deletable(stages, &all, &name);
    if !doomed.is_empty() {
        stages
            .progress
            .start(Phase::Rotate, Some(doomed.len() as u64), None);
        for s in &doomed {
            match stages.remover.remove(s) {
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
        stages.progress.finish();
        if !report.rotate.is_empty() {
            let gone: HashSet<&String> = report.rotate.iter().collect();
            meta.backup_history.retain(|h| {
                h.folder_name()
                    .is_none_or(|n| !gone.contains(&n.to_string()))
            });
            meta.save(&opts.metadata_file)?;
        }
    }
    Ok(report)
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

fn add_plan_failures(plan: &[PlannedEntry], report: &mut RunReport) {
    for p in plan {
        let error = match &p.action {
            Action::KeepStale(s) => &s.error,
            Action::Fail { error } => error,
            _ => continue,
        };
        report.failed.push(FailedPath {
            path: p.entry.path.to_string(),
            error: error.clone(),
        });
    }
    report.files_failed = report.failed.len() as u64;
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn mark_racy(mut m: ManifestEntry, scan_started_ns: i64) -> ManifestEntry {
    if m.kind == EntryKind::File && m.mtime_ns >= scan_started_ns - RACY_MARGIN_NS {
        m.rehash = true;
    }
    m
}

/// `file_checksums` records of a run's manifest entries (files with a
/// hash and a UTF-8 path).
fn file_records(entries: &[ManifestEntry]) -> impl Iterator<Item = (&str, FileRecord)> {
    entries.iter().filter_map(|m| {
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
    })
}

/// Scans and compares. The scan starts at once; `load_prev` (reading the
/// previous manifest and metadata) runs meanwhile on this thread, and the
/// hash/diff workers start when it is done. Batches are numbered as the
/// workers take them and put back in scan order (parents before children).
pub(crate) fn scan_and_diff<F>(
    opts: &RunOptions,
    stages: &Stages,
    load_prev: F,
) -> Result<(Collected, PrevIndex), CoreError>
where
    F: FnOnce() -> PrevIndex,
{
    let cancel = AtomicBool::new(false);
    let threads = opts.threads.max(1);
    let (scan_tx, scan_rx) = bounded::<ScanBatch>(256);
    let (plan_tx, plan_rx) = bounded::<(u64, Vec<ScanOutput>)>(64);
    let prev_slot: std::sync::OnceLock<PrevIndex> = std::sync::OnceLock::new();
    let taker = Mutex::new((0u64, scan_rx));
    let mut collected = Collected {
        plan: Vec::new(),
        seen: Vec::new(),
        failed: Vec::new(),
        unreadable_dirs: Vec::new(),
        skipped_special: 0,
    };
    let scan_result = std::thread::scope(|s| {
        let scanner = &stages.scanner;
        let cancel_ref = &cancel;
        let scan_handle = std::thread::Builder::new()
            .name("backup-scan".into())
            .spawn_scoped(s, move || {
                let _span = info_span!("scan").entered();
                scanner.scan(scan_tx, cancel_ref)
            })
            .map_err(|e| CoreError::io("start scan thread", &opts.source, e))?;
        let prev = prev_slot.get_or_init(load_prev);
        collected.seen = vec![false; prev.len()];
        for i in 0..threads {
            let taker = &taker;
            let tx = plan_tx.clone();
            let filters = &stages.filters;
            let differ = &stages.differ;
            std::thread::Builder::new()
                .name(format!("backup-hash-{i}"))
                .spawn_scoped(s, move || {
                    let _span = info_span!("hash", worker = i).entered();
                    loop {
                        let (seq, batch) = {
                            let mut t = lock(taker);
                            let Ok(batch) = t.1.recv() else { return };
                            t.0 += 1;
                            (t.0, batch)
                        };
                        let mut out = Vec::with_capacity(batch.len());
                        for ev in batch {
                            out.push(match ev {
                                ScanEvent::Entry(e) => {
                                    if !filters.iter().all(|f| f.keep(&e)) {
                                        continue;
                                    }
                                    ScanOutput::Planned(differ.plan(e, prev))
                                }
                                ScanEvent::Skipped { path, reason } => {
                                    ScanOutput::Skipped { path, reason }
                                }
                                ScanEvent::Error { path, error } => {
                                    ScanOutput::Error { path, error }
                                }
                            });
                        }
                        if tx.send((seq, out)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| CoreError::io("start hash thread", &opts.source, e))?;
        }
        drop(plan_tx);
        let mut next = 1u64;
        let mut waiting = std::collections::BTreeMap::new();
        for (seq, batch) in plan_rx {
            waiting.insert(seq, batch);
            while let Some(batch) = waiting.remove(&next) {
                next += 1;
                collect_batch(&mut collected, batch, stages);
            }
        }
        for (_, batch) in std::mem::take(&mut waiting) {
            collect_batch(&mut collected, batch, stages);
        }
        scan_handle
            .join()
            .map_err(|_| CoreError::Panicked("scan"))?
    });
    scan_result?;
    let prev = prev_slot.into_inner().unwrap_or_default();
    Ok((collected, prev))
}

fn collect_batch(collected: &mut Collected, batch: Vec<ScanOutput>, stages: &Stages) {
    stages.progress.inc(batch.len() as u64, 0);
    for out in batch {
        match out {
            ScanOutput::Planned(p) => {
                if let Some(i) = p.prev_index {
                    if let Some(seen) = collected.seen.get_mut(i as usize) {
                        *seen = true;
                    }
                }
                collected.plan.push(p);
            }
            ScanOutput::Skipped { path, reason } => {
                info!(path = %path.display(), reason = %reason, "skipped");
                collected.skipped_special += 1;
            }
            ScanOutput::Error { path, error } => {
                warn!(path = %path.display(), error = %error, "cannot read");
                collected.failed.push(FailedPath {
                    path: path.display().to_string(),
                    error,
                });
                collected.unreadable_dirs.push(path);
            }
        }
    }
}

/// What a hash/diff worker passes on (short-lived, one batch at a time).
#[allow(clippy::large_enum_variant)]
enum ScanOutput {
    Planned(PlannedEntry),
    Skipped { path: PathBuf, reason: String },
    Error { path: PathBuf, error: String },
}

/// Keeps what the previous snapshot held below folders that could not be
/// read this time, marked stale, instead of dropping it.
fn carry_over_unreadable(prev: &PrevIndex, c: &mut Collected) {
    if c.unreadable_dirs.is_empty() {
        return;
    }
    let dirs: Vec<PathBuf> = c.unreadable_dirs.clone();
    for (i, e) in prev.entries().iter().enumerate() {
        if c.seen[i] || !e.has_content {
            continue;
        }
        let under = dirs
            .iter()
            .any(|d| e.path.as_path() == d.as_path() || e.path.as_path().starts_with(d));
        if !under {
            continue;
        }
        c.seen[i] = true;
        let error = "its folder could not be read; kept from the previous snapshot".to_string();
        let action = match (e.kind, e.sha256) {
            (EntryKind::File, Some(hash)) => Action::KeepStale(Box::new(crate::plan::StaleCopy {
                from: e.path.clone(),
                hash,
                stat: e.stat,
                error,
            })),
            (EntryKind::Dir, _) => Action::CreateDir,
            (EntryKind::Symlink, _) => Action::CreateSymlink,
            (EntryKind::File, None) => continue,
        };
        c.plan.push(PlannedEntry {
            entry: ScanEntry {
                path: e.path.clone(),
                kind: e.kind,
                stat: e.stat,
                link_target: e.target.clone(),
            },
            change: Change::Unreadable,
            action,
            prev_index: Some(i as u32),
            previous_version: None,
        });
    }
}

struct Applied {
    files_copied: u64,
    files_linked: u64,
    bytes_copied: u64,
    failed: Vec<FailedPath>,
    records: Vec<ManifestEntry>,
}

/// Largest batch of entries handed to one copy worker.
const COPY_BATCH: usize = 256;

fn apply_plan(
    opts: &RunOptions,
    writer: &dyn crate::stage::SnapshotWriter,
    plan: &[PlannedEntry],
    stages: &Stages,
    scan_started_ns: i64,
) -> Result<Applied, CoreError> {
    let cancel = AtomicBool::new(false);
    let first_error: Mutex<Option<CoreError>> = Mutex::new(None);
    let fail = |e: CoreError| {
        let mut slot = lock(&first_error);
        if slot.is_none() {
            *slot = Some(e);
        }
        cancel.store(true, Ordering::Relaxed);
    };
    let (work_tx, work_rx) = bounded::<&[PlannedEntry]>(64);
    let (done_tx, done_rx) = bounded::<Vec<WrittenEntry>>(64);
    let mut applied = Applied {
        files_copied: 0,
        files_linked: 0,
        bytes_copied: 0,
        failed: Vec::new(),
        records: Vec::with_capacity(plan.len()),
    };
    let mut record_error = None;
    std::thread::scope(|s| {
        let cancel = &cancel;
        let fail = &fail;
        // The feeder creates folders itself, in plan order (parents first),
        // and hands the rest to the workers in batches of one folder's
        // entries, so two workers rarely contend for one folder.
        let feeder_done = done_tx.clone();
        let feeder = std::thread::Builder::new()
            .name("backup-feed".into())
            .spawn_scoped(s, move || {
                let mut i = 0;
                while i < plan.len() && !cancel.load(Ordering::Relaxed) {
                    if plan[i].action == Action::CreateDir {
                        match writer.write(&plan[i]) {
                            Ok(w) => {
                                if feeder_done.send(vec![w]).is_err() {
                                    return;
                                }
                            }
                            Err(e) => return fail(e),
                        }
                        i += 1;
                        continue;
                    }
                    let parent = plan[i].entry.path.as_path().parent();
                    let mut j = i + 1;
                    while j < plan.len()
                        && j - i < COPY_BATCH
                        && plan[j].action != Action::CreateDir
                        && plan[j].entry.path.as_path().parent() == parent
                    {
                        j += 1;
                    }
                    if work_tx.send(&plan[i..j]).is_err() {
                        return;
                    }
                    i = j;
                }
            });
        if let Err(e) = feeder {
            fail(CoreError::io("start copy thread", &opts.destination, e));
        }
        for i in 0..opts.threads.max(1) {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("backup-copy-{i}"))
                .spawn_scoped(s, move || {
                    let _span = info_span!("copy", worker = i).entered();
                    for batch in rx {
                        let mut out = Vec::with_capacity(batch.len());
                        for p in batch {
                            if cancel.load(Ordering::Relaxed) {
                                return;
                            }
                            match writer.write(p) {
                                Ok(w) => out.push(w),
                                Err(e) => return fail(e),
                            }
                        }
                        if tx.send(out).is_err() {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                fail(CoreError::io("start copy thread", &opts.destination, e));
            }
        }
        drop(done_tx);
        drop(work_rx);
        for batch in done_rx {
            let mut bytes = 0;
            let files = batch.len() as u64;
            for w in batch {
                let m = mark_racy(w.manifest, scan_started_ns);
                if w.copied {
                    applied.files_copied += 1;
                    applied.bytes_copied += w.bytes_copied;
                    bytes += w.bytes_copied;
                }
                if w.linked {
                    applied.files_linked += 1;
                }
                if let Some(err) = &w.failure {
                    warn!(path = %m.path, error = %err, "cannot back up");
                    applied.failed.push(FailedPath {
                        path: m.path.to_string(),
                        error: err.clone(),
                    });
                }
                if record_error.is_none() {
                    if let Err(e) = writer.record(&m) {
                        record_error = Some(e);
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                applied.records.push(m);
            }
            stages.progress.inc(files, bytes);
        }
    });
    if let Some(e) = lock(&first_error).take().or(record_error) {
        return Err(e);
    }
    Ok(applied)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
