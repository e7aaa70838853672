//! The stage traits. The runner takes each stage as a trait object, so a
//! library user can replace one (a filter, another destination, another
//! retention policy) without touching the others.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Local};

use crossbeam_channel::Sender;

use crate::entry::ScanEntry;
use crate::error::CoreError;
use crate::manifest::{ManifestEntry, SnapshotInfo};
use crate::plan::PlannedEntry;
use crate::prev::PrevIndex;
use crate::progress::Progress;
use crate::snapshot::SnapshotRef;
use crate::verify::VerifyReport;

/// What the scan stage sends downstream.
#[derive(Clone, Debug)]
pub enum ScanEvent {
    /// A file, folder or symlink to back up.
    Entry(ScanEntry),
    /// Something deliberately not backed up (a FIFO, socket or device).
    Skipped {
        /// Path relative to the source root.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Something that could not be read. When `path` is a folder, the
    /// previous snapshot's content below it is kept (marked stale).
    Error {
        /// Path relative to the source root.
        path: PathBuf,
        /// The error.
        error: String,
    },
}

/// Events sent together: one channel operation per batch, not per entry.
pub type ScanBatch = Vec<ScanEvent>;

/// How many events a scanner should put in one [`ScanBatch`].
pub const SCAN_BATCH: usize = 512;

/// Sends `batch` unless `cancel` is set first: a scanner must not stay
/// blocked on a full channel after the run was cancelled. Returns false when
/// the scan should stop (cancelled, or nobody listens any more).
pub fn send_batch(out: &Sender<ScanBatch>, mut batch: ScanBatch, cancel: &AtomicBool) -> bool {
    use crossbeam_channel::SendTimeoutError;
    loop {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        match out.send_timeout(batch, std::time::Duration::from_millis(100)) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(b)) => batch = b,
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
}

/// Stage 1: walks the source and sends what it finds.
pub trait Scanner: Send + Sync {
    /// Walks the source, sending events on `out` in walk order (a folder
    /// before its content), in batches of up to [`SCAN_BATCH`], until done or
    /// `cancel` is set (use [`send_batch`], which never blocks past a
    /// cancel). A failed send means downstream stopped: return quietly. Returns an error only when the walk cannot start (e.g. no
    /// source).
    fn scan(&self, out: Sender<ScanBatch>, cancel: &AtomicBool) -> Result<(), CoreError>;
}

/// A filter between scan and hash/diff: entries for which `keep` is false
/// are left out of the snapshot.
pub trait EntryFilter: Send + Sync {
    /// Whether to back `entry` up.
    fn keep(&self, entry: &ScanEntry) -> bool;
}

/// Stage 2: decides, per entry, what changed and what to write.
pub trait Differ: Send + Sync {
    /// Compares `entry` with the previous snapshot, hashing the source when
    /// its fast-path facts do not match.
    fn plan(&self, entry: ScanEntry, prev: &PrevIndex) -> PlannedEntry;
}

/// The result of writing one entry into a snapshot.
#[derive(Clone, Debug)]
pub struct WrittenEntry {
    /// The manifest line for the entry.
    pub manifest: ManifestEntry,
    /// How its content got there, or why it did not.
    pub outcome: WriteOutcome,
}

/// How an entry's content got into the snapshot (what the run counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Nothing to count: a folder, a symlink, or content the destination
    /// already holds.
    Recorded,
    /// The content was copied (or uploaded): `bytes` written.
    Copied {
        /// Bytes written.
        bytes: u64,
    },
    /// The content was hard-linked from the previous snapshot.
    Linked,
    /// The source could not be read; its last good copy was kept (hard-
    /// linked, or copied where a link was impossible).
    /// (Why is in the manifest line's `error`.)
    Stale {
        /// The copy is a hard link.
        linked: bool,
    },
    /// The source could not be read and there is no earlier copy: no
    /// content. (Why is in the manifest line's `error`.)
    Failed,
}

impl WrittenEntry {
    /// An entry recorded as planned, with no bytes written (a folder, a
    /// symlink, a link to content the destination already has).
    pub fn recorded(manifest: ManifestEntry) -> Self {
        WrittenEntry {
            manifest,
            outcome: WriteOutcome::Recorded,
        }
    }

    /// Why the entry could not be backed up from the source, if it could not.
    pub fn failure(&self) -> Option<&str> {
        match &self.outcome {
            WriteOutcome::Stale { .. } | WriteOutcome::Failed => self.manifest.error.as_deref(),
            _ => None,
        }
    }

    /// Whether the content is a hard link to the previous snapshot's.
    pub fn linked(&self) -> bool {
        matches!(
            self.outcome,
            WriteOutcome::Linked | WriteOutcome::Stale { linked: true, .. }
        )
    }

    /// A file that could not be backed up at all: recorded as failed, with
    /// no content.
    pub fn failed(planned: PlannedEntry, error: String) -> Self {
        let failed = PlannedEntry {
            action: crate::plan::Action::Fail { error },
            ..planned
        };
        WrittenEntry {
            manifest: failed.into_manifest(None),
            outcome: WriteOutcome::Failed,
        }
    }
}

/// Entries of a snapshot's manifest, streamed in manifest order.
pub type ManifestEntries = Box<dyn Iterator<Item = Result<ManifestEntry, CoreError>> + Send>;

/// Where the content of a file in a snapshot can be read.
pub enum Content {
    /// A file on a local file system, opened by the store (a regular file,
    /// reached without following any symlink in the snapshot), and its
    /// path, for messages.
    File(std::fs::File, PathBuf),
    /// A stream (e.g. an object being downloaded).
    Reader(Box<dyn Read + Send>),
}

/// Stage 3: a destination, whole: it lists, names, reads, writes,
/// deletes and verifies the snapshots of one profile and one source (it is
/// bound to both when built). The local folder is one implementation,
/// object storage another; the runner and the commands only use this
/// trait.
pub trait SnapshotStore: Send + Sync {
    /// This profile's snapshots of this source, oldest first. `history`
    /// holds snapshot names the metadata history lists (those count as the
    /// profile's even without a manifest, e.g. the original script's
    /// folders).
    fn list(&self, history: &HashSet<String>) -> Result<Vec<SnapshotRef>, CoreError>;
    /// Streams the manifest of `snapshot`.
    fn read_manifest(&self, snapshot: &SnapshotRef) -> Result<ManifestEntries, CoreError>;
    /// Where to read the content of the file `entry` of `snapshot`.
    fn open_content(
        &self,
        snapshot: &SnapshotRef,
        entry: &ManifestEntry,
    ) -> Result<Content, CoreError>;
    /// The name for a snapshot made at `now`, never one in use or used
    /// before (listed in `history`).
    fn next_name(
        &self,
        now: DateTime<Local>,
        history: &HashSet<String>,
    ) -> Result<String, CoreError>;
    /// Removes what interrupted runs of this profile and source left
    /// behind; returns a description of each thing removed.
    fn remove_leftovers(&self) -> Result<Vec<String>, CoreError>;
    /// Starts writing snapshot `name`; `previous` is the snapshot that
    /// [`crate::plan::Action::Link`] paths refer to.
    fn begin(
        &self,
        name: &str,
        previous: Option<&SnapshotRef>,
    ) -> Result<Box<dyn SnapshotWriter>, CoreError>;
    /// Deletes `snapshot` so that a crash midway never leaves it looking
    /// complete.
    fn remove(&self, snapshot: &SnapshotRef) -> Result<(), CoreError>;
    /// Called once after a run's removals: frees what no remaining snapshot
    /// needs (e.g. unreferenced objects of a content-addressed store).
    /// Returns a line for the log, if anything was done. The default does
    /// nothing (a deleted folder takes its files with it).
    fn collect_garbage(&self) -> Result<Option<String>, CoreError> {
        Ok(None)
    }
    /// Checks `snapshots` against their manifests; with `quick` contents
    /// are not read, only their presence and size checked. `threads` is the
    /// profile's worker count (a store may use more for network requests).
    fn verify(
        &self,
        snapshots: &[SnapshotRef],
        quick: bool,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, CoreError>;
    /// Copies `entry` of `snapshot` (a file that `verify` found damaged or
    /// missing) again from the source, when the source still holds exactly
    /// the content the manifest records; never anything else. An `Err` is
    /// a destination failure.
    fn repair(
        &self,
        snapshot: &SnapshotRef,
        entry: &ManifestEntry,
    ) -> Result<crate::verify::Repair, CoreError>;
    /// Free bytes at the destination, where the store can tell.
    fn free_space(&self) -> Option<u64> {
        None
    }
}

/// A snapshot being written. `write` is called from several threads.
pub trait SnapshotWriter: Send + Sync {
    /// Writes one entry. Problems with the source file end up in
    /// [`WrittenEntry::failure`]; an `Err` is fatal for the run (the
    /// destination failed).
    fn write(&self, planned: PlannedEntry) -> Result<WrittenEntry, CoreError>;
    /// Appends an entry to the snapshot's manifest.
    fn record(&self, entry: &ManifestEntry) -> Result<(), CoreError>;
    /// Writes the summary, flushes everything and makes the snapshot visible
    /// under its final name; returns where it is (a path or a URL, for
    /// reports). Called once, after every `write` and `record` returned.
    fn commit(&self, info: &SnapshotInfo) -> Result<String, CoreError>;
    /// Removes everything written so far.
    fn abort(&self);
    /// What the run's report should say once about how the snapshot was
    /// written (say, a destination without hard links: every unchanged
    /// file copied). Asked after the last `write`.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Why a snapshot is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The snapshot's name.
    pub name: String,
    /// The rules that keep it (e.g. `"last 10"`, `"daily"`).
    pub reasons: Vec<String>,
}

/// A retention decision: computed first, printed or applied after.
#[derive(Clone, Debug, Default)]
pub struct RotationPlan {
    /// Snapshots kept, with why.
    pub keep: Vec<Kept>,
    /// Snapshots to delete, oldest first.
    pub delete: Vec<SnapshotRef>,
}

/// Stage 4: decides which snapshots to keep (the store deletes the others).
pub trait RetentionPolicy: Send + Sync {
    /// Plans over `snapshots` (oldest first, all of this profile).
    fn plan(&self, snapshots: &[SnapshotRef]) -> RotationPlan;
}
