//! [`Applier`]: the copy stage on its own threads, fed while the scan goes
//! on. A feeder thread creates folders in order (parents first) and hands
//! the other entries to the copy workers, one folder's entries per batch; a
//! recorder thread appends each result to the manifest and streams the new
//! metadata file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use tracing::{info_span, warn};

use super::{lock, FailedPath};
use crate::metadata::MetadataWriter;
use backup_core::error::CoreError;
use backup_core::plan::{Action, PlannedEntry};
use backup_core::progress::PhaseProgress;
use backup_core::stage::{SnapshotWriter, WriteOutcome, WrittenEntry};

/// Largest batch of entries handed to one copy worker.
const COPY_BATCH: usize = 256;

/// What writing the snapshot produced.
pub(crate) struct Applied {
    /// The writer, to commit.
    pub(crate) writer: Arc<dyn SnapshotWriter>,
    /// The new metadata file, to finish after commit (`None` when it could
    /// not be written: a cache, so only a warning).
    pub(crate) metadata: Option<MetadataWriter>,
    /// Why the metadata file stopped being written, if it did.
    pub(crate) metadata_problem: Option<String>,
    pub(crate) files_copied: u64,
    pub(crate) files_linked: u64,
    pub(crate) bytes_copied: u64,
    pub(crate) failed: Vec<FailedPath>,
}

struct Counts {
    files_copied: u64,
    files_linked: u64,
    bytes_copied: u64,
    failed: Vec<FailedPath>,
    metadata: Option<MetadataWriter>,
    metadata_problem: Option<String>,
}

/// The running copy stage.
pub(crate) struct Applier {
    feed: Option<Sender<Vec<PlannedEntry>>>,
    threads: Vec<JoinHandle<()>>,
    recorder: Option<JoinHandle<Result<Counts, CoreError>>>,
    cancel: Arc<AtomicBool>,
    first_error: Arc<Mutex<Option<CoreError>>>,
    writer: Arc<dyn SnapshotWriter>,
}

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, CoreError> {
    // The caller's subscriber, not only the global one: an in-process run
    // (the Python package, the start-up trigger) logs through its own.
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || tracing::dispatcher::with_default(&dispatch, f))
        .map_err(|e| CoreError::io("start thread", std::path::Path::new(&name), e))
}

/// Records the first fatal error and cancels the copy stage.
#[derive(Clone)]
struct Fail {
    cancel: Arc<AtomicBool>,
    first_error: Arc<Mutex<Option<CoreError>>>,
}

impl Fail {
    fn fail(&self, e: CoreError) {
        let mut slot = lock(&self.first_error);
        if slot.is_none() {
            *slot = Some(e);
        }
        self.cancel.store(true, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// The recorder thread: appends each written entry to the manifest and its
/// record to the new metadata file, and counts. It starts first, so results
/// always have somewhere to go.
fn spawn_recorder(
    writer: Arc<dyn SnapshotWriter>,
    metadata: Option<MetadataWriter>,
    done_rx: Receiver<Vec<WrittenEntry>>,
    fail: Fail,
    progress: Box<dyn PhaseProgress>,
    scan_started_ns: i64,
) -> Result<JoinHandle<Result<Counts, CoreError>>, CoreError> {
    spawn("backup-record".into(), move || {
        let mut counts = Counts {
            files_copied: 0,
            files_linked: 0,
            bytes_copied: 0,
            failed: Vec::new(),
            metadata,
            metadata_problem: None,
        };
        let mut error = None;
        for batch in done_rx {
            let mut bytes = 0;
            let files = batch.len() as u64;
            for w in batch {
                if w.linked() {
                    counts.files_linked += 1;
                }
                if let Some(problem) = w.failure() {
                    warn!(path = %w.manifest.entry.path, error = %problem, "cannot back up");
                    counts.failed.push(FailedPath {
                        path: w.manifest.entry.path.to_string(),
                        error: problem.to_owned(),
                    });
                }
                if let WriteOutcome::Copied { bytes: n } = w.outcome {
                    counts.files_copied += 1;
                    counts.bytes_copied += n;
                    bytes += n;
                }
                let mut m = w.manifest;
                m.mark_if_racy(scan_started_ns);
                if error.is_none() {
                    if let Err(e) = writer.record(&m) {
                        error = Some(e);
                        fail.cancel.store(true, Ordering::Relaxed);
                    }
                }
                if let (Some(meta), Some((path, rec))) =
                    (&mut counts.metadata, super::file_record(&m))
                {
                    if let Err(e) = meta.add(path, &rec) {
                        // A cache: stop writing it, never fail the backup.
                        counts.metadata_problem =
                            Some(super::metadata_not_written(meta.path(), &e));
                        counts.metadata = None;
                    }
                }
            }
            progress.inc(files, bytes);
        }
        progress.finish();
        match error {
            Some(e) => Err(e),
            None => Ok(counts),
        }
    })
}

/// Copy worker `i`: writes each entry of the batches it takes.
fn spawn_worker(
    i: usize,
    writer: Arc<dyn SnapshotWriter>,
    work_rx: Receiver<Vec<PlannedEntry>>,
    done_tx: Sender<Vec<WrittenEntry>>,
    fail: Fail,
) -> Result<JoinHandle<()>, CoreError> {
    spawn(format!("backup-copy-{i}"), move || {
        let _span = info_span!("copy", worker = i).entered();
        for batch in work_rx {
            if fail.is_cancelled() {
                continue;
            }
            let mut out = Vec::with_capacity(batch.len());
            for p in batch {
                match writer.write(p) {
                    Ok(w) => out.push(w),
                    Err(e) => {
                        fail.fail(e);
                        break;
                    }
                }
            }
            if done_tx.send(out).is_err() {
                return;
            }
        }
    })
}

/// The feeder: makes folders itself, in order (parents first), and groups
/// the other entries by folder so that two workers rarely contend for one
/// directory.
fn spawn_feeder(
    writer: Arc<dyn SnapshotWriter>,
    feed_rx: Receiver<Vec<PlannedEntry>>,
    work_tx: Sender<Vec<PlannedEntry>>,
    done_tx: Sender<Vec<WrittenEntry>>,
    fail: Fail,
) -> Result<JoinHandle<()>, CoreError> {
    spawn("backup-feed".into(), move || {
        let mut group: Vec<PlannedEntry> = Vec::with_capacity(COPY_BATCH);
        let flush = |group: &mut Vec<PlannedEntry>| {
            if !group.is_empty() {
                let batch = std::mem::replace(group, Vec::with_capacity(COPY_BATCH));
                let _ = work_tx.send(batch);
            }
        };
        for batch in feed_rx {
            if fail.is_cancelled() {
                continue;
            }
            for p in batch {
                if p.action == Action::CreateDir {
                    flush(&mut group);
                    match writer.write(p) {
                        Ok(w) => {
                            let _ = done_tx.send(vec![w]);
                        }
                        Err(e) => {
                            fail.fail(e);
                            break;
                        }
                    }
                    continue;
                }
                let same_folder = group.last().is_none_or(|last| {
                    last.entry.path.as_path().parent() == p.entry.path.as_path().parent()
                });
                if !same_folder || group.len() >= COPY_BATCH {
                    flush(&mut group);
                }
                group.push(p);
            }
        }
        flush(&mut group);
    })
}

impl Applier {
    /// Starts the recorder, `workers` copy workers and the feeder.
    pub(crate) fn start(
        writer: Arc<dyn SnapshotWriter>,
        metadata: Option<MetadataWriter>,
        workers: usize,
        progress: Box<dyn PhaseProgress>,
        scan_started_ns: i64,
    ) -> Result<Applier, CoreError> {
        let fail = Fail {
            cancel: Arc::new(AtomicBool::new(false)),
            first_error: Arc::default(),
        };
        let (feed_tx, feed_rx) = bounded::<Vec<PlannedEntry>>(16);
        let (work_tx, work_rx) = bounded::<Vec<PlannedEntry>>(64);
        let (done_tx, done_rx) = bounded::<Vec<WrittenEntry>>(64);
        let w = || Arc::clone(&writer);
        let recorder = spawn_recorder(
            w(),
            metadata,
            done_rx,
            fail.clone(),
            progress,
            scan_started_ns,
        )?;
        let mut threads = Vec::new();
        for i in 0..workers {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            threads.push(spawn_worker(i, w(), rx, tx, fail.clone())?);
        }
        drop(work_rx);
        threads.push(spawn_feeder(w(), feed_rx, work_tx, done_tx, fail.clone())?);
        Ok(Applier {
            feed: Some(feed_tx),
            threads,
            recorder: Some(recorder),
            cancel: fail.cancel,
            first_error: fail.first_error,
            writer,
        })
    }

    /// Whether a fatal error stopped the copy stage (the scan should stop too).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Hands a batch of entries (in scan order) to the copy stage.
    pub(crate) fn send(&self, batch: Vec<PlannedEntry>) {
        if self.cancel.load(Ordering::Relaxed) {
            return;
        }
        if let Some(tx) = &self.feed {
            let _ = tx.send(batch);
        }
    }

    /// Waits for everything sent to be written; the first fatal error wins
    /// (and the partial snapshot is removed).
    pub(crate) fn finish(mut self) -> Result<Applied, CoreError> {
        self.feed = None;
        let mut panicked = false;
        for t in self.threads.drain(..) {
            panicked |= t.join().is_err();
        }
        let counts = match self.recorder.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(CoreError::Panicked("record")),
        };
        let error = lock(&self.first_error).take();
        let result = match (error, counts, panicked) {
            (Some(e), _, _) => Err(e),
            (None, _, true) => Err(CoreError::Panicked("copy")),
            (None, Err(e), _) => Err(e),
            (None, Ok(c), false) => Ok(Applied {
                writer: Arc::clone(&self.writer),
                metadata: c.metadata,
                metadata_problem: c.metadata_problem,
                files_copied: c.files_copied,
                files_linked: c.files_linked,
                bytes_copied: c.bytes_copied,
                failed: c.failed,
            }),
        };
        if result.is_err() {
            self.writer.abort();
        }
        result
    }
}

impl Drop for Applier {
    /// An applier dropped without `finish` (a panic in the run) stops its
    /// threads and removes the partial snapshot before the lock is released.
    fn drop(&mut self) {
        if self.threads.is_empty() && self.recorder.is_none() {
            return;
        }
        self.cancel.store(true, Ordering::Relaxed);
        self.feed = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(r) = self.recorder.take() {
            let _ = r.join();
        }
        self.writer.abort();
    }
}

#[cfg(test)]
mod tests {
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata};

    /// A subscriber that is not the global one (which no test sets).
    struct Callers;

    impl tracing::Subscriber for Callers {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn a_worker_thread_logs_through_the_callers_subscriber() {
        let callers = tracing::Dispatch::new(Callers);
        let seen = tracing::dispatcher::with_default(&callers, || {
            super::spawn("worker".into(), || {
                tracing::dispatcher::get_default(|d| d.is::<Callers>())
            })
            .map(|h| h.join().unwrap_or(false))
        });
        assert_eq!(seen.ok(), Some(true), "the thread logged elsewhere");
    }
}
