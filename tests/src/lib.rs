//! The test kit of backup-cli: what its end-to-end tests (`tests/e2e/`,
//! the `e2e` test target of the `backup-cli` package) and the benchmark
//! (`tools/backup-bench`) share.
//!
//! - [`World`]: a temporary project, destination and profile, and runs of
//!   the real binary in it ([`Run`]). The kit never builds the binary: the
//!   caller passes its path (`env!("CARGO_BIN_EXE_backup-cli")` in the
//!   test target).
//! - [`trees`] builds a source tree and reads trees back to compare them;
//!   [`files`] writes single files with exact modes and times;
//!   [`manifest`] reads a snapshot's own record; [`snapshots`] reads the
//!   destination; [`json`] reads `--json` output; [`hash`] is SHA-256 as
//!   the manifests write it.
//! - [`bounded`] runs that fail the test instead of hanging; [`faults`] an
//!   unprivileged user and a tmpfs; [`host`] what the machine offers.
//! - [`prng`]: the one seeded generator behind every random byte, in the
//!   tests and in the benchmark's corpus; [`s3`]: a loopback S3 server.
//!
//! The kit builds on Windows too (the end-to-end tests run there under
//! Wine); what only Unix has (modes beyond read-only, symlinks, FIFOs, other
//! users, tmpfs) is `cfg(unix)`: [`faults`], [`trees::hashed`],
//! `host::is_root`; [`trees::build_rich_source`] makes no symlinks there.
//!
//! ```no_run
//! # {
//! let w = backup_tests::World::new("target/debug/backup-cli", "max_backups = 3");
//! w.write("src/main.py", "print('hi')\n");
//! let report = w.backup(0); // backup --force --json, exit code 0
//! assert_eq!(report["outcome"], "created");
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bounded;
pub mod clock;
#[cfg(unix)]
pub mod faults;
pub mod files;
pub mod hash;
pub mod host;
pub mod json;
pub mod manifest;
pub mod prng;
pub mod s3;
pub mod snapshots;
pub mod trees;
mod world;

pub use trees::tree;
pub use world::{assert_code, backup_created, restore_json, Run, World};
