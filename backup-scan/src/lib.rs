//! # backup-scan
//!
//! Stage 1 of the backup pipeline: walk the source folder with [jwalk]
//! (serially by default, so memory stays flat; see
//! [`ScanOptions::threads`]), leave out what the exclusion rules say, and
//! send each file, folder and symlink (with its `lstat` facts) down a
//! bounded crossbeam channel.
//!
//! Central types: [`JwalkScanner`] (implements [`backup_core::Scanner`]),
//! [`ScanOptions`] and [`ExcludeSet`] (gitignore-style patterns on globset).
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use backup_core::{ScanEvent, Scanner};
//! use backup_scan::{ExcludeSet, JwalkScanner, ScanOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("keep.txt"), "hi").unwrap();
//! std::fs::write(dir.path().join("skip.log"), "noise").unwrap();
//! let scanner = JwalkScanner::new(ScanOptions {
//!     root: dir.path().to_path_buf(),
//!     excludes: ExcludeSet::new(["*.log"]).unwrap(),
//!     ..ScanOptions::default()
//! });
//! let (tx, rx) = crossbeam_channel::bounded(16);
//! scanner.scan(tx, &AtomicBool::new(false)).unwrap();
//! let names: Vec<String> = rx.iter().flatten().filter_map(|e| match e {
//!     ScanEvent::Entry(e) => Some(e.path.to_string()),
//!     _ => None,
//! }).collect();
//! assert_eq!(names, ["keep.txt"]);
//! ```

pub mod exclude;
pub mod scanner;
mod sys;

pub use exclude::{ExcludeSet, PatternError, DEFAULT_EXCLUDES};
pub use scanner::{JwalkScanner, ScanOptions, CACHEDIR_SIGNATURE};
