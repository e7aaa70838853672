//! What checking snapshots against their manifests found: [`VerifyReport`].
//! Each store verifies in its own way (a folder re-reads each inode once,
//! object storage downloads each content once); the report is the same.

use serde::Serialize;

/// A path in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SnapshotPath {
    /// The snapshot's name.
    pub snapshot: String,
    /// Path relative to the snapshot.
    pub path: String,
}

/// The result of verifying snapshots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots_checked: u64,
    /// File entries checked.
    pub files_checked: u64,
    /// Bytes read and hashed.
    pub bytes_checked: u64,
    /// Files whose content or size differs from the manifest.
    pub corrupt: Vec<SnapshotPath>,
    /// Paths in the manifest but not in the store.
    pub missing: Vec<SnapshotPath>,
    /// Paths in the store but not in the manifest.
    pub unexpected: Vec<SnapshotPath>,
}

/// What [`crate::SnapshotStore::repair`] did with one damaged or missing
/// file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Copied again from the source, which still holds the recorded
    /// content; the snapshot's file now matches its manifest.
    Repaired,
    /// Not repaired: the source no longer holds the recorded content (it
    /// changed since, or cannot be read: why), so nothing can be copied
    /// back; the damage stays reported.
    NotRepaired(String),
}

impl VerifyReport {
    /// Whether everything matched.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.unexpected.is_empty()
    }
}
