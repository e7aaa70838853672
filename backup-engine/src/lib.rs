//! # backup-engine
//!
//! What runs a backup and works on any destination, generic over the stage
//! traits of `backup-core`: the runner ([`run_backup`]), the original
//! system's `backup_metadata.json` ([`metadata`]), the run lock
//! ([`RunLock`]), and the commands that read a store: [`restore()`] (any
//! store into a local folder, each file checked against its SHA-256, with
//! `backup-copy`'s file primitives), [`repair()`] after a verify, [`diff`]
//! and [`select`]. Concrete
//! stages come from their crates; `backup-cli` wires them.
//!
//! ```no_run
//! # fn stages() -> backup_engine::Stages { unimplemented!() }
//! # fn options() -> backup_engine::RunOptions { unimplemented!() }
//! let report = backup_engine::run_backup(&options(), &stages());
//! println!("{:?}: {} files copied", report.outcome, report.counts.files_copied);
//! ```

pub mod diff;
mod fsutil;
pub mod lock;
pub mod metadata;
pub mod repair;
pub mod restore;
pub mod runner;
pub mod select;

pub use backup_core::error_chain;
pub use diff::TreeDiff;
pub use lock::{is_lock_text, LockAttempt, LockHolder, RunLock};
pub use metadata::BackupMetadata;
pub use repair::{repair, NotRepaired, RepairReport};
pub use restore::{restore, RestoreError, RestoreOptions, RestoreProblem, RestoreReport};
pub use runner::{
    load_previous, run_backup, ChangeCounts, FailedPath, Outcome, RunOptions, RunReport, Stages,
    REPORT_TARGET,
};
pub use select::{made_today, resolve_snapshot};
