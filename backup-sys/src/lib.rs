//! # backup-sys
//!
//! What every part of `backup-cli` asks of the operating system, written
//! once: opening a file that must be a regular file without being led
//! astray by a symlink, FIFO or device ([`fs`]), making a snapshot durable
//! on each platform ([`durable`]), this machine's name, writing below a folder by relative paths whatever
//! the folder's own path length ([`tree`]), and spreading work over
//! threads ([`parallel`]).
//! Below the vocabulary crate (`backup-core`) and knowing nothing of
//! backups: paths in, files and errors out. The per-platform differences
//! live here and nowhere else.

pub mod durable;
pub mod fs;
pub mod lock;
pub mod parallel;
pub mod tree;

pub use durable::{
    remove_read_only_file, rename, replace_file, sync_dir, sync_file_system, FLUSH_EACH_FILE,
};
pub use fs::{
    free_space, host_name, is_not_regular, link_refusal, open_beneath, open_regular,
    open_regular_with, read_regular, same_file, windows_name_problem, LinkRefusal,
};
pub use parallel::{for_each_in_runs, InOrder};
pub use tree::{Kind, Stat, Tree};
