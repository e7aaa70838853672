//! Scan + hash/diff, streamed: the previous snapshot's index is loaded, the
//! walk starts, hash/diff workers take numbered batches, and the collector
//! gets them back in scan order (parents before children) through a
//! callback.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use backup_core::progress::PhaseProgress;
use backup_sys::InOrder;
use crossbeam_channel::bounded;
use tracing::{info, info_span, warn};

use std::collections::HashMap;

use super::{lock, FailedPath, RunOptions, Stages};
use backup_core::entry::{EntryKind, ScanEntry};
use backup_core::error::CoreError;
use backup_core::plan::{Action, Change, PlannedEntry};
use backup_core::prev::PrevIndex;
use backup_core::stage::{ScanBatch, ScanEvent};

/// What the scan found besides planned entries.
pub(crate) struct ScanSummary {
    /// Which previous entries were seen (by index).
    pub(crate) seen: Vec<bool>,
    /// Paths (files and folders) that could not be read, and why.
    pub(crate) unreadable: Vec<(PathBuf, String)>,
    /// FIFOs, sockets and devices left out.
    pub(crate) skipped_special: u64,
}

/// What a hash/diff worker passes on.
#[allow(clippy::large_enum_variant)]
enum ScanOutput {
    Planned(PlannedEntry),
    Skipped { path: PathBuf, reason: String },
    Error { path: PathBuf, error: String },
}

/// Scans and compares, calling `on_entry` for every planned entry in scan
/// order. An error from `on_entry` stops the scan (via `cancel`) and is
/// returned.
pub(crate) fn scan_and_diff<F, C>(
    opts: &RunOptions,
    stages: &Stages,
    cancel: &AtomicBool,
    bar: &dyn PhaseProgress,
    load_prev: F,
    mut on_entry: C,
) -> Result<(ScanSummary, PrevIndex), CoreError>
where
    F: FnOnce() -> PrevIndex,
    C: FnMut(&PrevIndex, PlannedEntry) -> Result<(), CoreError>,
{
    let threads = opts.threads.max(1);
    // Up to 256 batches (131,072 entries) let the serial walk
    // run ahead while the previous index loads, and no further.
    let (scan_tx, scan_rx) = bounded::<ScanBatch>(256);
    let (plan_tx, plan_rx) = bounded::<(u64, Vec<ScanOutput>)>(16);
    let prev_slot: std::sync::OnceLock<PrevIndex> = std::sync::OnceLock::new();
    let taker: Taker = Mutex::new((0u64, scan_rx));
    let mut summary = ScanSummary {
        seen: Vec::new(),
        unreadable: Vec::new(),
        skipped_special: 0,
    };
    let mut callback_error = None;
    /// Cancels the scan when the collector leaves the scope for any reason
    /// (an error, a panic), so that the scanner never blocks the join.
    struct CancelOnExit<'a>(&'a AtomicBool);
    impl Drop for CancelOnExit<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    // The walk starts first and runs ahead (bounded) while the previous
    // index loads; the hash workers start once it is loaded.
    // Each thread logs through the caller's subscriber (see apply::spawn).
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let dispatch = &dispatch;
    let scan_result = std::thread::scope(|s| {
        let cancel_on_exit = CancelOnExit(cancel);
        let scanner = &stages.scanner;
        let scan_handle = std::thread::Builder::new()
            .name("backup-scan".into())
            .spawn_scoped(s, move || {
                tracing::dispatcher::with_default(dispatch, || {
                    let _span = info_span!("scan").entered();
                    scanner.scan(scan_tx, cancel)
                })
            })
            .map_err(|e| CoreError::io("start scan thread", &opts.source, e))?;
        let prev = prev_slot.get_or_init(load_prev);
        summary.seen = vec![false; prev.len()];
        for i in 0..threads {
            let (taker, tx) = (&taker, plan_tx.clone());
            std::thread::Builder::new()
                .name(format!("backup-hash-{i}"))
                .spawn_scoped(s, move || {
                    tracing::dispatcher::with_default(dispatch, || {
                        let _span = info_span!("hash", worker = i).entered();
                        hash_worker(taker, &tx, stages, prev, cancel);
                    })
                })
                .map_err(|e| CoreError::io("start hash thread", &opts.source, e))?;
        }
        drop(plan_tx);
        // Back in scan order (parents before children), whichever worker
        // finished first; batches are numbered from 1 as they are taken.
        for batch in InOrder::new(plan_rx, 1) {
            if callback_error.is_none() {
                if let Err(e) = collect(&mut summary, batch, prev, bar, &mut on_entry) {
                    callback_error = Some(e);
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        }
        let joined = scan_handle.join();
        drop(cancel_on_exit);
        joined.map_err(|_| CoreError::Panicked("scan"))?
    });
    if let Some(e) = callback_error {
        return Err(e);
    }
    scan_result?;
    let prev = prev_slot.into_inner().unwrap_or_default();
    Ok((summary, prev))
}

/// The scanned batches, numbered as they are taken (from 1).
type Taker = Mutex<(u64, crossbeam_channel::Receiver<ScanBatch>)>;

/// A hash/diff worker: takes the next scanned batch (and its number),
/// filters and plans each entry, and passes the batch on with its number.
/// Keeps draining after a cancel, so that the scanner is never stuck.
fn hash_worker(
    taker: &Taker,
    out: &crossbeam_channel::Sender<(u64, Vec<ScanOutput>)>,
    stages: &Stages,
    prev: &PrevIndex,
    cancel: &AtomicBool,
) {
    loop {
        let (seq, batch) = {
            let mut t = lock(taker);
            let Ok(batch) = t.1.recv() else { return };
            t.0 += 1;
            (t.0, batch)
        };
        if cancel.load(Ordering::Relaxed) {
            continue;
        }
        if out.send((seq, plan_batch(batch, stages, prev))).is_err() {
            return;
        }
    }
}

/// Filters and plans one scanned batch.
fn plan_batch(batch: ScanBatch, stages: &Stages, prev: &PrevIndex) -> Vec<ScanOutput> {
    let mut out = Vec::with_capacity(batch.len());
    for ev in batch {
        out.push(match ev {
            ScanEvent::Entry(e) => {
                if !stages.filters.iter().all(|f| f.keep(&e)) {
                    continue;
                }
                ScanOutput::Planned(stages.differ.plan(e, prev))
            }
            ScanEvent::Skipped { path, reason } => ScanOutput::Skipped { path, reason },
            ScanEvent::Error { path, error } => ScanOutput::Error { path, error },
        });
    }
    out
}

fn collect<C>(
    summary: &mut ScanSummary,
    batch: Vec<ScanOutput>,
    prev: &PrevIndex,
    bar: &dyn PhaseProgress,
    on_entry: &mut C,
) -> Result<(), CoreError>
where
    C: FnMut(&PrevIndex, PlannedEntry) -> Result<(), CoreError>,
{
    bar.inc(batch.len() as u64, 0);
    for out in batch {
        match out {
            ScanOutput::Planned(p) => {
                if let Some(i) = p.prev_index {
                    if let Some(seen) = summary.seen.get_mut(i as usize) {
                        *seen = true;
                    }
                }
                on_entry(prev, p)?;
            }
            ScanOutput::Skipped { path, reason } => {
                info!(path = %path.display(), reason = %reason, "skipped");
                summary.skipped_special += 1;
            }
            ScanOutput::Error { path, error } => {
                warn!(path = %path.display(), error = %error, "cannot read");
                summary.unreadable.push((path, error));
            }
        }
    }
    Ok(())
}

/// What the previous snapshot held at and below paths that could not be
/// read this time, as entries that keep it (stale) instead of dropping it,
/// and the unreadable paths that no such entry reports: each problem is
/// reported once, by the entry that records it when there is one.
pub(crate) fn carry_over_unreadable(
    prev: &PrevIndex,
    seen: &mut [bool],
    unreadable: Vec<(PathBuf, String)>,
) -> (Vec<PlannedEntry>, Vec<FailedPath>) {
    let mut out = Vec::new();
    let report: Vec<PathBuf> = unreadable.iter().map(|(p, _)| p.clone()).collect();
    let mut why: HashMap<PathBuf, String> = unreadable.into_iter().collect();
    if why.keys().all(|p| p.as_os_str().is_empty()) {
        return (out, failures(report, &mut why));
    }
    for (i, e) in prev.entries().iter().enumerate() {
        if seen[i] || !e.has_content {
            continue;
        }
        // The path itself or one of its folders could not be read.
        let path = e.path.as_path();
        if !path
            .ancestors()
            .any(|a| !a.as_os_str().is_empty() && why.contains_key(a))
        {
            continue;
        }
        seen[i] = true;
        let action = match (e.kind, e.last_good()) {
            (EntryKind::File, Some(copy)) => Action::KeepStale {
                copy: Box::new(copy),
                // The file itself: its own problem, reported by its entry.
                error: why.remove(path).unwrap_or_else(|| {
                    "its folder could not be read; kept from the previous snapshot".into()
                }),
            },
            (EntryKind::Dir, _) => Action::CreateDir,
            (EntryKind::Symlink, _) => Action::CreateSymlink,
            (EntryKind::File, None) => continue,
        };
        out.push(PlannedEntry {
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
    (out, failures(report, &mut why))
}

/// The unreadable `paths`, in scan order, whose problem is still
/// unreported.
fn failures(paths: Vec<PathBuf>, why: &mut HashMap<PathBuf, String>) -> Vec<FailedPath> {
    paths
        .into_iter()
        .filter_map(|p| {
            let error = why.remove(&p)?;
            Some(FailedPath {
                path: p.display().to_string(),
                error,
            })
        })
        .collect()
}
