//! [`Progress`]: how long work reports its progress. The library only calls
//! the traits; a terminal front end (indicatif in `backup-cli`) implements
//! them.
//!
//! Each phase gets its own handle ([`PhaseProgress`]), so phases that
//! overlap (the scan goes on while the copy stage writes) never count into
//! each other's display.

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

/// Receives progress: hands out one handle per phase.
pub trait Progress: Send + Sync {
    /// A phase starts; totals are known for some phases. The display of
    /// the phase ends when the handle is finished or dropped.
    fn start(
        &self,
        _phase: Phase,
        _total_files: Option<u64>,
        _total_bytes: Option<u64>,
    ) -> Box<dyn PhaseProgress> {
        Box::new(NoProgress)
    }
}

/// The progress of one phase; every method has a no-op default.
pub trait PhaseProgress: Send + Sync {
    /// Work advanced by `files` entries and `bytes` bytes.
    fn inc(&self, _files: u64, _bytes: u64) {}
    /// The phase ended (dropping the handle does the same).
    fn finish(&self) {}
}

/// Progress that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

impl PhaseProgress for NoProgress {}
