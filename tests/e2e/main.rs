//! End-to-end tests of backup-cli: the real binary on real temporary trees,
//! one module per feature, helpers from the kit (`backup_tests`).
//!
//! This is the `e2e` test target of the `backup-cli` package (declared in
//! `backup-cli/Cargo.toml`), so cargo builds the binary before it runs
//! these tests and hands over its path in `CARGO_BIN_EXE_backup-cli`;
//! nothing here runs cargo (see `library` for the examples). Run with `cargo test --workspace` (add
//! `--all-features` for the S3 destination and its tests), or one module
//! with `cargo test -p backup-cli --test e2e -- restore::`.
//!
//! The same tests build for Windows and run there under Wine (`.ci/windows`),
//! except what only Unix has: modules of FIFOs, other users, tmpfs and FUSE
//! mounts, Unix modes, symlinks and kill -9 timing (`chaos`, `crash`,
//! `diff`, `faults`, `hostile`, `odd_trees`) and single tests marked `cfg(unix)`,
//! each for the Unix-only thing it checks.
//!
//! Some fault cases need root (mounting a tmpfs) or an unprivileged user (a
//! file of mode 000 is readable by root): they print why and return early
//! when that is not available.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Imports and helpers that only Unix-only tests use; the Unix build's
// clippy (-D warnings) is where these are checked.
#![cfg_attr(windows, allow(unused_imports, dead_code))]

#[cfg(unix)]
mod chaos;
mod commands;
#[cfg(unix)]
mod crash;
#[cfg(unix)]
mod diff;
#[cfg(unix)]
mod faults;
#[cfg(unix)]
mod hostile;
mod library;
mod lock;
#[cfg(unix)]
mod odd_trees;
mod oplog;
mod output;
mod ownership;
mod pipeline;
mod restore;
// The S3 server these tests start (rclone) is a Linux program.
#[cfg(all(feature = "s3", unix))]
mod s3;
mod verify;

use backup_tests::World;

/// The binary under test, as cargo built it for this test target.
const BIN: &str = env!("CARGO_BIN_EXE_backup-cli");

/// A fresh world running [`BIN`], with `extra` lines in its profile.
fn world(extra: &str) -> World {
    World::new(BIN, extra)
}
