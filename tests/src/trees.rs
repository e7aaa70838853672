//! Source trees: building one that touches every kind of entry, and reading
//! trees back to compare a snapshot or a restore with its source.
//!
//! Three views, from coarse to exact, each for the assertions it serves:
//! - [`tree`]: relative paths with file contents and link targets (no
//!   metadata), for "the snapshot holds the source";
//! - [`hashed`]: raw name bytes with sizes, SHA-256 and optionally modes,
//!   FIFOs and sockets included, for odd and large trees;
//! - [`exact`]: contents, modes and nanosecond mtimes of files, folders and
//!   links, for "a restore reproduces the source".
//!
//! The views skip the snapshot's `.backup-snapshot` folder and the tool's
//! state files at the top (see [`is_state`]), so a snapshot and its source
//! compare equal; only [`exact::restored_tree`] keeps them, since a restore
//! must not bring them back.

use std::fs;
#[cfg(unix)]
use std::os::unix::fs::symlink;
use std::path::Path;

#[cfg(unix)]
use crate::files::set_link_mtime;
use crate::files::{put, set_dir_mtime, set_mode};
use crate::World;

pub mod exact;
#[cfg(unix)]
pub mod hashed;

/// Whether a name at the top of a tree is the snapshot's own folder or a
/// state file of the tool or its temporary file (never backed up, never
/// restored).
pub fn is_state(name: &str) -> bool {
    name == ".backup-snapshot"
        || name.starts_with("backup_metadata.json")
        // Its temporary files (a killed run's), which the scan leaves out.
        || name.starts_with(".backup_metadata.json.")
        || name.starts_with("backup_operations.log")
        || name == "backup_in_progress.lock"
}

/// Every file, folder and symlink below `root` (relative paths with `/`,
/// sorted), skipping state (see [`is_state`]), with file contents and
/// symlink targets.
pub fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy();
        let rel = if cfg!(windows) {
            rel.replace('\\', "/")
        } else {
            rel.into_owned()
        };
        if is_state(&rel) {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            out.push((
                rel,
                format!("link -> {}", fs::read_link(&p).unwrap().display()),
            ));
        } else if m.is_dir() {
            out.push((rel.clone(), "dir".into()));
            walk(root, &p, out);
        } else {
            out.push((rel, format!("{:?}", fs::read(&p).unwrap())));
        }
    }
}

/// Names directly inside `dir` (lossy; empty when it does not exist),
/// sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Fills the source with one of each: files of modes 0o644, 0o755, 0o600
/// and 0o640, a 70 kB binary, nested folders of modes 0o700 and 0o750, an
/// empty folder, a symlink and a dangling one (on Unix: Windows symlinks
/// need a privilege), all with fixed nanosecond mtimes.
pub fn build_rich_source(w: &World) {
    put(w, "a.txt", "alpha\n", 0o644, 1_600_000_000, 123_456_789);
    put(
        w,
        "script.sh",
        "#!/bin/sh\necho hello\n",
        0o755,
        1_600_000_100,
        5,
    );
    put(w, "secret.key", b"TOPSECRET-0001", 0o600, 1_600_000_200, 0);
    let bin: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    put(w, "sub/b.bin", &bin, 0o644, 1_600_000_300, 999_999_999);
    put(w, "sub/dir/f.txt", "deep file\n", 0o640, 1_600_000_400, 1);
    fs::create_dir(w.src.join("empty")).unwrap();
    set_mode(&w.src.join("empty"), 0o750);
    set_dir_mtime(&w.src.join("empty"), 1_500_000_000, 42);
    #[cfg(unix)]
    {
        symlink("a.txt", w.src.join("link")).unwrap();
        set_link_mtime(&w.src.join("link"), 1_550_000_000, 7);
        symlink("does/not/exist", w.src.join("dangling")).unwrap();
    }
    set_mode(&w.src.join("sub/dir"), 0o700);
    set_dir_mtime(&w.src.join("sub/dir"), 1_500_000_100, 0);
    set_dir_mtime(&w.src.join("sub"), 1_500_000_200, 0);
}
