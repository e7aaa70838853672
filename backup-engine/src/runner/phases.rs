//! The phases of a run, in order: [`prepare`] → [`scan_and_plan`] →
//! [`write`] (or [`dry_run_report`]) → [`commit`] → [`rotate`] →
//! [`record_metadata`]. Each takes what the one before returned.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use chrono::{DateTime, Local};
use tracing::{info, warn};

use super::apply::Applied;
use super::collect::{add_failure, Collector, Held, Sink};
use super::{
    deletable, error_chain, file_record, load_previous, now_ns, refresh_from_record, scan,
    scan_and_diff, FailedPath, Outcome, RunOptions, RunReport, Stages,
};
use crate::metadata::{BackupMetadata, HistoryEntry, MetadataLoad, MetadataWriter};
use crate::select::made_today;
use backup_core::error::CoreError;
use backup_core::manifest::{SnapshotInfo, SnapshotStatus, SNAPSHOT_FORMAT};
use backup_core::prev::PrevIndex;
use backup_core::progress::Phase;
use backup_core::snapshot::SnapshotRef;
use backup_naming::next_sequence;

/// What a run starts from.
pub(super) struct Start {
    /// The run's time: the snapshot's name and `created`.
    pub(super) created: DateTime<Local>,
    /// `backup_metadata.json` (its summary; empty when missing or unreadable).
    pub(super) meta: BackupMetadata,
    /// The metadata file was there and readable.
    pub(super) meta_ok: bool,
    /// Snapshot names the metadata history lists.
    pub(super) history: HashSet<String>,
    /// This profile's snapshots, oldest first.
    pub(super) snapshots: Vec<SnapshotRef>,
    /// Warnings so far (e.g. the metadata file is being rebuilt).
    pub(super) warnings: Vec<String>,
    /// The metadata file did not parse and was moved aside (already said).
    pub(super) metadata_moved_aside: bool,
}

/// Whether the run goes on.
pub(super) enum Prepared {
    /// It goes on from here.
    Run(Start),
    /// It ends at once (a snapshot was already made today).
    Skip(RunReport),
}

/// Reads the metadata and the destination's snapshots, applies the
/// once-per-day rule and removes what interrupted runs left.
pub(super) fn prepare(opts: &RunOptions, stages: &Stages) -> Result<Prepared, CoreError> {
    let created: DateTime<Local> = Local::now();
    let mut warnings = Vec::new();
    let mut moved_aside = false;
    let (meta, meta_ok) = match crate::metadata::load_summary(&opts.metadata_file) {
        MetadataLoad::Loaded(m) => (m, true),
        MetadataLoad::Missing => (BackupMetadata::default(), false),
        MetadataLoad::Unreadable(CoreError::Corrupt { path, source, .. }) if !opts.dry_run => {
            // Not this tool's metadata (or damaged): never overwrite it.
            let aside = crate::metadata::move_aside(&opts.metadata_file, created)?;
            moved_aside = true;
            let msg = format!(
                "{} is not backup-cli metadata ({source}); moved it aside to {} and rebuilding it from the newest snapshot's manifest",
                path.display(),
                aside.display()
            );
            warn!("{msg}");
            warnings.push(msg);
            (BackupMetadata::default(), false)
        }
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
    let history: HashSet<String> = meta
        .backup_history
        .iter()
        .filter_map(|h| h.folder_name().map(str::to_owned))
        .collect();
    let snapshots = stages.store.list(&history)?;
    let now = created.fixed_offset();
    for s in snapshots.iter().filter(|s| s.is_from_the_future(now)) {
        let msg = format!(
            "snapshot {} says it was made at {}, after this machine's time ({}): a clock was wrong; snapshots are ordered by when they were made, not by their dates",
            s.name,
            s.created.to_rfc3339(),
            now.to_rfc3339()
        );
        warn!("{msg}");
        warnings.push(msg);
    }
    if opts.once_per_day && !opts.force {
        if let Some(today) = made_today(&snapshots, now) {
            info!(snapshot = %today.name, "a snapshot was already made today; skipping (use --force to override)");
            let mut r = RunReport::new(Outcome::SkippedNotDue);
            r.last_snapshot = Some(today.name.clone());
            r.warnings = warnings;
            return Ok(Prepared::Skip(r));
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
    Ok(Prepared::Run(Start {
        created,
        meta,
        meta_ok,
        history,
        snapshots,
        warnings,
        metadata_moved_aside: moved_aside,
    }))
}

/// The index the differ compares with: the newest snapshot's manifest,
/// refreshed with the metadata file's newer facts. Problems become
/// `warnings`, never errors (the worst case copies everything).
fn previous_index(
    opts: &RunOptions,
    stages: &Stages,
    start: &Start,
    newest: Option<&SnapshotRef>,
    warnings: &mut Vec<String>,
) -> PrevIndex {
    let mut prev = match newest {
        Some(s) => match load_previous(stages, s) {
            Ok(p) => p,
            Err(e) => {
                warnings.push(format!(
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
        newest.is_some_and(|s| start.meta.records_snapshot.as_ref() == Some(&s.name));
    if start.meta_ok && !records_are_manifest {
        let applied = crate::metadata::for_each_file_record(&opts.metadata_file, |path, rec| {
            refresh_from_record(&mut prev, path, &rec)
        });
        if let Err(e) = applied {
            warnings.push(format!("{}; using the snapshot's facts", error_chain(&e)));
        }
    } else if !prev.is_empty() && !opts.metadata_file.exists() && !start.metadata_moved_aside {
        warnings.push(format!(
            "{} is missing; using the newest snapshot's manifest instead",
            opts.metadata_file.display()
        ));
    }
    prev
}

/// What the scan and compare found, with the snapshot begun (and being
/// written) if anything changed.
pub(super) struct Scanned {
    pub(super) report: RunReport,
    pub(super) sink: Sink,
    pub(super) any_change: bool,
    pub(super) metadata_only: bool,
    pub(super) snapshot_name: Option<String>,
    pub(super) dry_copy_bytes: u64,
    /// Paths the scan could not read (reported first).
    pub(super) scan_failures: Vec<FailedPath>,
    pub(super) prev: PrevIndex,
    pub(super) scan_started_ns: i64,
}

/// Scans the source and compares it with the previous snapshot; from the
/// first change on, the copy stage writes the new snapshot while the scan
/// goes on.
pub(super) fn scan_and_plan(
    opts: &RunOptions,
    stages: &Stages,
    start: &Start,
) -> Result<Scanned, CoreError> {
    let newest = start.snapshots.iter().rev().find(|s| s.info.is_some());
    let mut load_warnings = Vec::new();
    let load_prev = || previous_index(opts, stages, start, newest, &mut load_warnings);
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
        history: &start.history,
        created: start.created,
        previous: newest.cloned(),
        dry_copy_bytes: 0,
    };
    c.report.warnings = start.warnings.clone();
    for msg in &opts.notices {
        warn!("{msg}");
        c.report.warnings.push(msg.clone());
    }
    let cancel = AtomicBool::new(false);
    let bar = stages.progress.start(Phase::Scan, None, None);
    let scanned = scan_and_diff(opts, stages, &cancel, &*bar, load_prev, |prev, p| {
        c.accept(prev, p)
    });
    bar.finish();
    let (summary, prev) = match scanned {
        Ok(v) => v,
        Err(e) => {
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
    let (carried, scan_failures) =
        scan::carry_over_unreadable(&prev, &mut seen, summary.unreadable);
    for p in carried {
        c.accept(&prev, p)?;
    }
    c.report.changes.removed = seen.iter().filter(|s| !**s).count() as u64;
    c.any_change |= c.report.changes.removed > 0;
    c.report.skipped_special = summary.skipped_special;
    info!(
        files = c.report.counts.files_total,
        added = c.report.changes.added,
        modified = c.report.changes.modified,
        removed = c.report.changes.removed,
        metadata_only = c.report.changes.metadata_only,
        "scan and compare done"
    );
    if c.any_change && matches!(c.sink, Sink::Holding(_)) {
        // Only removals: nothing triggered writing during the scan.
        c.start_writing(&prev)?;
    }
    Ok(Scanned {
        report: c.report,
        sink: c.sink,
        any_change: c.any_change,
        metadata_only: c.metadata_only,
        snapshot_name: c.snapshot_name,
        dry_copy_bytes: c.dry_copy_bytes,
        scan_failures,
        prev,
        scan_started_ns,
    })
}

/// A dry run's report: what would be copied, the snapshot that would be
/// made and what rotation would then delete.
pub(super) fn dry_run_report(
    stages: &Stages,
    start: &Start,
    scanned: Scanned,
) -> Result<RunReport, CoreError> {
    let mut report = scanned.report;
    report.outcome = Outcome::DryRun;
    report.counts.bytes_copied = scanned.dry_copy_bytes;
    report.failed.splice(0..0, scanned.scan_failures);
    report.counts.files_failed = report.failed.len() as u64;
    if scanned.any_change {
        let name = stages.store.next_name(start.created, &start.history)?;
        let mut with_new = start.snapshots.clone();
        with_new.push(SnapshotRef {
            name: name.clone(),
            location: name.clone(),
            created: start.created.fixed_offset(),
            info: None,
            adopted: false,
        });
        report.rotate = deletable(stages, &with_new, &name)
            .into_iter()
            .map(|s| s.name)
            .collect();
        report.snapshot = Some(name);
    }
    Ok(report)
}

/// The outcome of the write phase.
#[allow(
    clippy::large_enum_variant,
    reason = "one value per run, moved once: boxing saves nothing"
)]
pub(super) enum Written {
    /// Nothing changed: no snapshot (the metadata may have been refreshed).
    Unchanged(RunReport),
    /// The snapshot is written, not yet committed.
    Snapshot(Box<WrittenSnapshot>),
}

/// A snapshot written in full, waiting for its commit.
pub(super) struct WrittenSnapshot {
    report: RunReport,
    applied: Applied,
    name: String,
    scan_started_ns: i64,
}

/// Waits for the copy stage to write everything; without a change, records
/// the new facts instead (see [`record_unchanged`]).
pub(super) fn write(
    opts: &RunOptions,
    start: &mut Start,
    scanned: Scanned,
) -> Result<Written, CoreError> {
    let mut report = scanned.report;
    report.failed.splice(0..0, scanned.scan_failures);
    let (applier, pending) = match scanned.sink {
        Sink::Writing(applier, pending) => (applier, pending),
        Sink::Holding(held) => {
            let unchanged = Unchanged {
                held,
                prev: &scanned.prev,
                metadata_only: scanned.metadata_only,
                scan_started_ns: scanned.scan_started_ns,
            };
            return record_unchanged(opts, start, unchanged, report).map(Written::Unchanged);
        }
        Sink::Counting => return Ok(Written::Unchanged(report)),
    };
    if !pending.is_empty() {
        applier.send(pending);
    }
    let mut applied = applier.finish()?;
    let problems = applied.metadata_problem.take().into_iter();
    for msg in problems.chain(applied.writer.warnings()) {
        warn!("{msg}");
        report.warnings.push(msg);
    }
    report.counts.files_copied = applied.files_copied;
    report.counts.files_linked = applied.files_linked;
    report.counts.bytes_copied = applied.bytes_copied;
    report.failed.extend(std::mem::take(&mut applied.failed));
    report.counts.files_failed = report.failed.len() as u64;
    Ok(Written::Snapshot(Box::new(WrittenSnapshot {
        report,
        name: scanned.snapshot_name.unwrap_or_default(),
        applied,
        scan_started_ns: scanned.scan_started_ns,
    })))
}

/// What a run without changes holds.
struct Unchanged<'a> {
    held: Vec<Held>,
    prev: &'a PrevIndex,
    metadata_only: bool,
    scan_started_ns: i64,
}

/// No change: no snapshot. Records new mtimes (or rebuilds a lost metadata
/// file) so that the next run's fast path holds.
fn record_unchanged(
    opts: &RunOptions,
    start: &mut Start,
    u: Unchanged<'_>,
    mut report: RunReport,
) -> Result<RunReport, CoreError> {
    for h in &u.held {
        if let Held::Full(p) = h {
            add_failure(p, &mut report.failed);
        }
    }
    report.counts.files_failed = report.failed.len() as u64;
    if u.metadata_only || !start.meta_ok {
        let written = (|| {
            let mut w = MetadataWriter::create(&opts.metadata_file)?;
            for h in u.held {
                if let Some(p) = h.into_planned(u.prev) {
                    let mut m = p.into_manifest(None);
                    m.mark_if_racy(u.scan_started_ns);
                    if let Some((path, rec)) = file_record(&m) {
                        w.add(path, &rec)?;
                    }
                }
            }
            let meta = &mut start.meta;
            meta.last_scan_started_ns = Some(u.scan_started_ns);
            meta.profile = Some(opts.profile.clone());
            meta.records_snapshot = None;
            w.finish(meta)
        })();
        // A cache: a file that cannot be written is a warning.
        if let Err(e) = written {
            let msg = super::metadata_not_written(&opts.metadata_file, &e);
            warn!("{msg}");
            report.warnings.push(msg);
        }
    }
    info!("nothing changed since the last snapshot; no snapshot made");
    Ok(report)
}

/// A committed snapshot, with the report so far.
pub(super) struct Committed {
    report: RunReport,
    info: SnapshotInfo,
    /// Where it is (folder or URL).
    location: String,
    /// The new metadata file, streamed while writing; finished last
    /// (`None` when it could not be written, already warned about).
    metadata: Option<MetadataWriter>,
}

/// Writes the summary and makes the snapshot visible under its name.
pub(super) fn commit(
    opts: &RunOptions,
    start: &Start,
    written: Box<WrittenSnapshot>,
    started: Instant,
) -> Result<Committed, CoreError> {
    let WrittenSnapshot {
        mut report,
        applied,
        name,
        scan_started_ns,
    } = *written;
    let info = SnapshotInfo {
        format: SNAPSHOT_FORMAT.into(),
        version: 1,
        profile: opts.profile.clone(),
        name: name.clone(),
        created: start.created.to_rfc3339(),
        scan_started_ns,
        source: opts.source.display().to_string(),
        counts: report.counts,
        status: if report.counts.files_failed > 0 {
            SnapshotStatus::Partial
        } else {
            SnapshotStatus::Complete
        },
        duration_ms: started.elapsed().as_millis() as u64,
        sequence: Some(next_sequence(&start.snapshots)),
    };
    let location = match applied.writer.commit(&info) {
        Ok(p) => p,
        Err(e) => {
            applied.writer.abort();
            return Err(e);
        }
    };
    info!(snapshot = %name, "snapshot committed");
    report.outcome = Outcome::Created;
    report.snapshot = Some(name);
    report.snapshot_path = Some(location.clone());
    Ok(Committed {
        report,
        info,
        location,
        metadata: applied.metadata,
    })
}

/// Deletes what the retention policy gives up (never the new snapshot,
/// never the newest), then lets the store collect garbage. Failures are
/// warnings.
pub(super) fn rotate(stages: &Stages, history: &mut HashSet<String>, committed: &mut Committed) {
    let name = committed.info.name.clone();
    let report = &mut committed.report;
    history.insert(name.clone());
    let all = match stages.store.list(history) {
        Ok(all) => all,
        Err(e) => {
            let msg = format!("rotation skipped: {}", error_chain(&e));
            warn!("{msg}");
            report.warnings.push(msg);
            Vec::new()
        }
    };
    let doomed = deletable(stages, &all, &name);
    if doomed.is_empty() {
        return;
    }
    let bar = stages
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
        bar.inc(1, 0);
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
    bar.finish();
}

/// Finishes `backup_metadata.json`: the new snapshot in the history, the
/// deleted ones out of it. A failure is a warning: the snapshot is safe and
/// the next run rebuilds the file from it.
pub(super) fn record_metadata(
    opts: &RunOptions,
    mut meta: BackupMetadata,
    committed: Committed,
) -> RunReport {
    let Committed {
        mut report,
        info,
        location,
        metadata,
    } = committed;
    meta.last_backup_date = Some(info.created.clone());
    meta.last_scan_started_ns = Some(info.scan_started_ns);
    meta.records_snapshot = Some(info.name.clone());
    meta.profile = Some(opts.profile.clone());
    meta.backup_history.push(HistoryEntry {
        date: info.created.clone(),
        backup_dir: location,
        files_backed_up: report.counts.files_copied,
        total_files: report.counts.files_total,
        snapshot: Some(info.name.clone()),
        files_linked: Some(report.counts.files_linked),
        files_failed: Some(report.counts.files_failed),
        bytes_copied: Some(report.counts.bytes_copied),
        duration_ms: Some(info.duration_ms),
        extra: Default::default(),
    });
    if !report.rotate.is_empty() {
        let gone: HashSet<&str> = report.rotate.iter().map(String::as_str).collect();
        meta.backup_history
            .retain(|h| h.folder_name().is_none_or(|n| !gone.contains(n)));
    }
    let Some(metadata) = metadata else {
        return report;
    };
    if let Err(e) = metadata.finish(&meta) {
        let msg = format!(
            "the snapshot is safe, but {} was not updated: {}; the next run rebuilds it from the snapshot",
            opts.metadata_file.display(),
            error_chain(&e)
        );
        warn!("{msg}");
        report.warnings.push(msg);
    }
    report
}
