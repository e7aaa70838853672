//! [`Applier`]: the copy stage on its own threads, fed while the scan goes
//! on. A feeder thread creates folders in order (parents first) and hands
//! the other entries to the copy workers, one folder's entries per batch; a
//! recorder thread appends each result to the manifest and streams the new
//! metadata file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};
use tracing::{info_span, warn};

use super::{lock, mark_racy, FailedPath};
use crate::metadata::MetadataWriter;
use backup_core::error::CoreError;
use backup_core::plan::{Action, PlannedEntry};
use backup_core::progress::Progress;
use backup_core::stage::{SnapshotWriter, WrittenEntry};

/// Largest batch of entries handed to one copy worker.
const COPY_BATCH: usize = 256;

/// What writing the snapshot produced.
pub(crate) struct Applied {
    /// The writer, to commit.
    pub(crate) writer: Arc<dyn SnapshotWriter>,
    /// The new metadata file, to finish after commit.
    pub(crate) metadata: MetadataWriter,
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
    metadata: MetadataWriter,
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
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| CoreError::io("start thread", std::path::Path::new(&name), e))
}

impl Applier {
    /// Starts the feeder, `workers` copy workers and the recorder.
    pub(crate) fn start(
        writer: Arc<dyn SnapshotWriter>,
        metadata: MetadataWriter,
        workers: usize,
        progress: Arc<dyn Progress>,
        scan_started_ns: i64,
    ) -> Result<Applier, CoreError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let first_error: Arc<Mutex<Option<CoreError>>> = Arc::default();
        let fail = {
            let cancel = Arc::clone(&cancel);
            let first_error = Arc::clone(&first_error);
            move |e: CoreError| {
                let mut slot = lock(&first_error);
                if slot.is_none() {
                    *slot = Some(e);
                }
                cancel.store(true, Ordering::Relaxed);
            }
        };
        let (feed_tx, feed_rx) = bounded::<Vec<PlannedEntry>>(16);
        let (work_tx, work_rx) = bounded::<Vec<PlannedEntry>>(64);
        let (done_tx, done_rx) = bounded::<Vec<WrittenEntry>>(64);
        let mut threads = Vec::new();

        // Recorder first, so results always have somewhere to go.
        let recorder = {
            let writer = Arc::clone(&writer);
            let cancel = Arc::clone(&cancel);
            spawn("backup-record".into(), move || {
                let mut counts = Counts {
                    files_copied: 0,
                    files_linked: 0,
                    bytes_copied: 0,
                    failed: Vec::new(),
                    metadata,
                };
                let mut error = None;
                for batch in done_rx {
                    let mut bytes = 0;
                    let files = batch.len() as u64;
                    for w in batch {
                        let m = mark_racy(w.manifest, scan_started_ns);
                        if w.copied {
                            counts.files_copied += 1;
                            counts.bytes_copied += w.bytes_copied;
                            bytes += w.bytes_copied;
                        }
                        if w.linked {
                            counts.files_linked += 1;
                        }
                        if let Some(err) = &w.failure {
                            warn!(path = %m.path, error = %err, "cannot back up");
                            counts.failed.push(FailedPath {
                                path: m.path.to_string(),
                                error: err.clone(),
                            });
                        }
                        if error.is_none() {
                            let recorded =
                                writer
                                    .record(&m)
                                    .and_then(|()| match super::file_record(&m) {
                                        Some((path, rec)) => counts.metadata.add(path, &rec),
                                        None => Ok(()),
                                    });
                            if let Err(e) = recorded {
                                error = Some(e);
                                cancel.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    progress.inc(files, bytes);
                }
                match error {
                    Some(e) => Err(e),
                    None => Ok(counts),
                }
            })?
        };

        for i in 0..workers {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            let writer = Arc::clone(&writer);
            let cancel = Arc::clone(&cancel);
            let fail = fail.clone();
            threads.push(spawn(format!("backup-copy-{i}"), move || {
                let _span = info_span!("copy", worker = i).entered();
                for batch in rx {
                    if cancel.load(Ordering::Relaxed) {
                        continue;
                    }
                    let mut out = Vec::with_capacity(batch.len());
                    for p in &batch {
                        match writer.write(p) {
                            Ok(w) => out.push(w),
                            Err(e) => {
                                fail(e);
                                break;
                            }
                        }
                    }
                    if tx.send(out).is_err() {
                        return;
                    }
                }
            })?);
        }
        drop(work_rx);

        // The feeder makes folders itself, in order, and groups the rest by
        // folder so that two workers rarely contend for one directory.
        {
            let writer = Arc::clone(&writer);
            let cancel = Arc::clone(&cancel);
            let fail = fail.clone();
            threads.push(spawn("backup-feed".into(), move || {
                let mut group: Vec<PlannedEntry> = Vec::with_capacity(COPY_BATCH);
                let flush = |group: &mut Vec<PlannedEntry>| {
                    if !group.is_empty() {
                        let batch = std::mem::replace(group, Vec::with_capacity(COPY_BATCH));
                        let _ = work_tx.send(batch);
                    }
                };
                for batch in feed_rx {
                    if cancel.load(Ordering::Relaxed) {
                        continue;
                    }
                    for p in batch {
                        if p.action == Action::CreateDir {
                            flush(&mut group);
                            match writer.write(&p) {
                                Ok(w) => {
                                    let _ = done_tx.send(vec![w]);
                                }
                                Err(e) => {
                                    fail(e);
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
            })?);
        }

        Ok(Applier {
            feed: Some(feed_tx),
            threads,
            recorder: Some(recorder),
            cancel,
            first_error,
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
