//! [`Progress`]: how long work reports its progress. The library only calls
//! the trait; a terminal front end (indicatif in `backup-cli`) implements it.

/// A phase of work that reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Walking the source and comparing with the previous snapshot.
    Scan,
    /// Writing the snapshot.
    Copy,
    /// Deleting old snapshots.
    Rotate,
    /// Re-reading a snapshot.
    Verify,
    /// Restoring files.
    Restore,
}

/// Receives progress; every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A phase starts; totals are known for some phases.
    fn start(&self, _phase: Phase, _total_files: Option<u64>, _total_bytes: Option<u64>) {}
    /// Work advanced by `files` entries and `bytes` bytes.
    fn inc(&self, _files: u64, _bytes: u64) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Progress that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
