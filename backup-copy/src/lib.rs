//! # backup-copy
//!
//! Stage 3 of the backup pipeline: write the new snapshot. Every snapshot
//! is a complete, browsable folder: new and changed files are copied (and
//! hashed in the same read), unchanged ones are hard links to the previous
//! snapshot's file, folders, symlinks, modes and mtimes are kept. The
//! snapshot is written under a temporary name and renamed only when
//! everything is flushed.
//!
//! [`LocalStore`] is the whole local destination (it implements
//! [`backup_core::SnapshotStore`]): it names, lists, writes, deletes,
//! verifies and cleans up snapshot folders, and [`layout`] is the one place
//! that knows what a snapshot folder looks like on disk.
//!
//! Its file primitives ([`copy_hashed`], [`copy_stream_hashed`]: copy and
//! hash in one read, holes kept) also serve the way back, the engine's
//! `restore`.
//!
//! Central types: [`LocalStore`], [`copy_hashed`].
//!
//! ```
//! use backup_copy::copy_hashed;
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("a"), b"abc").unwrap();
//! let c = copy_hashed(&dir.path().join("a"), &dir.path().join("b")).unwrap();
//! assert_eq!(c.bytes, 3);
//! assert_eq!(c.hash.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
//! ```

pub mod copy;
pub mod fsutil;
pub mod layout;
pub mod store;
mod verify;

pub use copy::{
    copy_hashed, copy_hashed_with, copy_open_hashed, copy_open_hashed_with, copy_stream_hashed,
    open_source, Copied, CopyError, SetAttrs,
};
pub use store::{LocalStore, CHANGED_FILE_RETRIES};
