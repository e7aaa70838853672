//! The exact view of a tree: everything a restore must reproduce (file
//! contents, permission bits, nanosecond mtimes of files, folders and
//! symlinks, link targets), keyed by relative path (with `/`).
//!
//! On Windows a mode is what [`crate::files::mode`] says (the read-only
//! attribute) and times have 100 ns steps, in the source as in a restore.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use filetime::FileTime;

use super::is_state;
use crate::files::mode;

/// One entry of a tree, with everything a restore must reproduce.
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    /// A folder.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: i128,
    },
    /// A regular file.
    File {
        /// All its bytes.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: i128,
    },
    /// A symbolic link (not followed).
    Link {
        /// Where it points.
        target: PathBuf,
        /// The link's own modification time, nanoseconds since the epoch.
        mtime_ns: i128,
    },
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Dir { mode, mtime_ns } => write!(f, "dir mode {mode:o} mtime_ns {mtime_ns}"),
            Node::File {
                content,
                mode,
                mtime_ns,
            } => {
                let head: Vec<u8> = content.iter().take(24).copied().collect();
                write!(
                    f,
                    "file {} bytes {:?}… mode {mode:o} mtime_ns {mtime_ns}",
                    content.len(),
                    String::from_utf8_lossy(&head)
                )
            }
            Node::Link { target, mtime_ns } => {
                write!(f, "symlink -> {} mtime_ns {mtime_ns}", target.display())
            }
        }
    }
}

/// A whole tree: relative path → entry.
pub type Tree = BTreeMap<String, Node>;

fn mtime_ns(m: &fs::Metadata) -> i128 {
    let t = FileTime::from_last_modification_time(m);
    i128::from(t.unix_seconds()) * 1_000_000_000 + i128::from(t.nanoseconds())
}

/// Every entry below `root` (relative paths), skipping the snapshot state
/// folder and the tool's state files at the root.
pub fn full_tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    collect(root, root, &mut out, true);
    out
}

/// Every entry below a restore target, skipping nothing: a restore must not
/// bring back the snapshot's state folder or the tool's state files.
pub fn restored_tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    collect(root, root, &mut out, false);
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Tree, skip_state: bool) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy();
        let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
        if skip_state && dir == root && is_state(&rel) {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let node = if m.file_type().is_symlink() {
            Node::Link {
                target: fs::read_link(&p).unwrap(),
                mtime_ns: mtime_ns(&m),
            }
        } else if m.is_dir() {
            collect(root, &p, out, skip_state);
            Node::Dir {
                mode: mode(&p),
                mtime_ns: mtime_ns(&m),
            }
        } else {
            Node::File {
                content: fs::read(&p).unwrap(),
                mode: mode(&p),
                mtime_ns: mtime_ns(&m),
            }
        };
        out.insert(rel, node);
    }
}

/// Asserts two trees are equal, listing every difference.
pub fn assert_trees_equal(expected: &Tree, actual: &Tree, what: &str) {
    let mut problems = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => problems.push(format!("missing {k}: expected {v:?}")),
            Some(a) if a != v => problems.push(format!("{k}: expected {v:?}, got {a:?}")),
            Some(_) => {}
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            problems.push(format!("unexpected {k}: {v:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} difference(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// How many regular files a tree holds.
pub fn count_files(t: &Tree) -> u64 {
    t.values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count() as u64
}
