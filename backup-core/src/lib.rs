//! # backup-core
//!
//! The shared heart of `backup-cli`: the types that cross stage boundaries,
//! the stage traits, snapshot manifests, the metadata file, the run lock
//! and the runner that connects the stages.
//!
//! The pipeline is
//!
//! ```text
//! Scanner ──ScanEvent──▶ [EntryFilter…] ─▶ Differ ──PlannedEntry──▶ SnapshotWriter ─▶ RetentionPolicy + SnapshotRemover
//! (backup-scan)                        (backup-hash)               (backup-copy)        (backup-rotate)
//! ```
//!
//! Central types: [`ScanEntry`] (what the scan found), [`PrevIndex`] (what
//! the previous snapshot holds), [`PlannedEntry`] (the hash/diff verdict),
//! [`ManifestEntry`] / [`SnapshotInfo`] (what a snapshot records about
//! itself), [`BackupMetadata`] (`backup_metadata.json`), [`RunLock`], and
//! [`run_backup`] with its [`RunOptions`], [`Stages`] and [`RunReport`].
//!
//! ```
//! use backup_core::{ContentHash, RelPath};
//! let p = RelPath::new("src/main.rs").unwrap();
//! assert_eq!(p.depth(), 2);
//! assert!(RelPath::new("../etc/passwd").is_err());
//! let h: ContentHash = "00".repeat(32).parse().unwrap();
//! assert_eq!(h.to_hex().len(), 64);
//! ```

pub mod diff;
pub mod entry;
pub mod error;
pub mod fsutil;
pub mod hash;
pub mod lock;
pub mod manifest;
pub mod metadata;
pub mod plan;
pub mod prev;
pub mod progress;
pub mod relpath;
pub mod runner;
pub mod snapshot;
pub mod stage;

pub use diff::TreeDiff;
pub use entry::{EntryKind, FileStat, ScanEntry};
pub use error::CoreError;
pub use hash::ContentHash;
pub use lock::{LockAttempt, LockHolder, RunLock};
pub use manifest::{EntryStatus, ManifestEntry, SnapshotInfo, SnapshotStatus};
pub use metadata::BackupMetadata;
pub use plan::{Action, Change, PlannedEntry, PreviousVersion, StaleCopy};
pub use prev::{PrevEntry, PrevIndex};
pub use progress::{NoProgress, Phase, Progress};
pub use relpath::RelPath;
pub use runner::{run_backup, FailedPath, Outcome, RunOptions, RunReport, Stages};
pub use snapshot::SnapshotRef;
pub use stage::{
    send_batch, Content, Differ, EntryFilter, Kept, ManifestEntries, RetentionPolicy, RotationPlan,
    ScanBatch, ScanEvent, Scanner, SnapshotRemover, SnapshotStore, SnapshotWriter, WrittenEntry,
    SCAN_BATCH,
};
