//! The hashed view of a tree: raw name bytes (names need not be UTF-8),
//! file sizes and SHA-256, link targets, optionally permission bits, and
//! FIFOs, sockets and devices as what they are. Contents are hashed as
//! they stream, so multi-GiB sparse files stay cheap.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::is_state;
use crate::hash::sha256_file;

/// What a path in a tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A folder.
    Dir {
        /// Permission bits, when asked for.
        mode: Option<u32>,
    },
    /// A regular file.
    File {
        /// Its length.
        size: u64,
        /// SHA-256 of its bytes, hex.
        sha256: String,
        /// Permission bits, when asked for.
        mode: Option<u32>,
    },
    /// A symbolic link and its raw target.
    Link(Vec<u8>),
    /// `"fifo"`, `"socket"` or `"device"`.
    Special(&'static str),
}

/// Every path below `root` (raw name bytes), skipping the snapshot state
/// folder and the tool's state files at the top, with file sizes and
/// hashes, symlink targets and (optionally) permission bits.
pub fn tree_nodes(root: &Path, with_modes: bool) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    walk_nodes(root, root, with_modes, &mut out);
    out
}

fn walk_nodes(root: &Path, dir: &Path, with_modes: bool, out: &mut BTreeMap<Vec<u8>, Node>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        if dir == root && is_state(&e.file_name().to_string_lossy()) {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let mode_of = |m: &fs::Metadata| with_modes.then_some(m.permissions().mode() & 0o7777);
        let node = if ft.is_symlink() {
            Node::Link(fs::read_link(&p).unwrap().into_os_string().into_vec())
        } else if ft.is_dir() {
            walk_nodes(root, &p, with_modes, out);
            Node::Dir { mode: mode_of(&m) }
        } else if ft.is_file() {
            Node::File {
                size: m.len(),
                sha256: sha256_file(&p),
                mode: mode_of(&m),
            }
        } else {
            use std::os::unix::fs::FileTypeExt;
            Node::Special(if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            })
        };
        out.insert(rel, node);
    }
}

/// Asserts two trees are equal, naming the first differences.
pub fn assert_same_tree(
    expected: &BTreeMap<Vec<u8>, Node>,
    actual: &BTreeMap<Vec<u8>, Node>,
    what: &str,
) {
    if expected == actual {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing {:?}: {v:?}", OsStr::from_bytes(k))),
            Some(a) if a != v => diffs.push(format!(
                "differs {:?}: expected {v:?}, got {a:?}",
                OsStr::from_bytes(k)
            )),
            _ => {}
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            diffs.push(format!("unexpected {:?}: {v:?}", OsStr::from_bytes(k)));
        }
    }
    diffs.truncate(20);
    panic!("{what}: trees differ:\n  {}", diffs.join("\n  "));
}

/// Byte-for-byte image of a folder: every path with kind, size, mode,
/// mtime, inode, link count and content hash; equal images mean nothing
/// in it was touched.
pub fn image(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&p).unwrap();
            let base = format!(
                "mode={:o} mtime={}.{} ino={} nlink={} size={}",
                m.mode(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino(),
                m.nlink(),
                m.len()
            );
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {base} -> {:?}", fs::read_link(&p).unwrap()),
                );
            } else if m.is_dir() {
                out.insert(rel, format!("dir {base}"));
                go(root, &p, out);
            } else {
                out.insert(rel, format!("file {base} sha={}", sha256_file(&p)));
            }
        }
    }
    go(root, root, &mut out);
    out
}
