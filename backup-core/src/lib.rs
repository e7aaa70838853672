//! # backup-core
//!
//! The vocabulary every part of `backup-cli` shares, and nothing else: the
//! types that cross stage boundaries, the stage traits, the manifest line
//! format, content hashing, safe relative paths, errors and progress. The
//! engine that runs the stages is `backup-engine`; each destination's
//! layout belongs to its store (`backup-copy`, `backup-s3`).
//!
//! ```text
//! Scanner ──ScanBatch──▶ [EntryFilter…] ─▶ Differ ──PlannedEntry──▶ SnapshotStore/SnapshotWriter ─▶ RetentionPolicy
//! (backup-scan)                        (backup-hash)               (backup-copy, backup-s3)          (backup-rotate)
//! ```
//!
//! Central types: [`ScanEntry`] (what the scan found), [`PrevIndex`] (what
//! the previous snapshot holds), [`PlannedEntry`] (the hash/diff verdict),
//! [`ManifestEntry`] / [`SnapshotInfo`] (what a snapshot records about
//! itself), [`SnapshotRef`], [`ContentHash`] and [`RelPath`].
//!
//! ```
//! use backup_core::{ContentHash, RelPath};
//! let p = RelPath::new("src/main.rs").unwrap();
//! assert_eq!(p.depth(), 2);
//! assert!(RelPath::new("../etc/passwd").is_err());
//! let h = ContentHash::of(b"abc");
//! assert_eq!(h.to_hex().parse::<ContentHash>().unwrap(), h);
//! ```

pub mod entry;
pub mod error;
pub mod hash;
pub mod manifest;
pub mod plan;
pub mod prev;
pub mod progress;
pub mod relpath;
pub mod snapshot;
pub mod stage;
pub mod verify;

pub use entry::{EntryKind, FileStat, ScanEntry};
pub use error::{error_chain, CoreError};
pub use hash::{hash_file, hash_file_beneath, hash_reader, ContentHash, ContentHasher};
pub use manifest::{Counts, EntryStatus, ManifestEntry, SnapshotInfo, SnapshotStatus};
pub use plan::{Action, Change, LastGood, PlannedEntry};
pub use prev::{PrevEntry, PrevIndex};
pub use progress::{NoProgress, Phase, PhaseProgress, Progress};
pub use relpath::RelPath;
pub use snapshot::SnapshotRef;
pub use stage::{
    send_batch, Content, Differ, EntryFilter, Kept, ManifestEntries, RetentionPolicy, RotationPlan,
    ScanBatch, ScanEvent, Scanner, SnapshotStore, SnapshotWriter, WriteOutcome, WrittenEntry,
    SCAN_BATCH,
};
pub use verify::{Repair, SnapshotPath, VerifyReport};
