//! File-system helpers: sorted walks, the exclusion rules the benchmark
//! applies to every tool, cache warming, tree summaries and comparisons.
//!
//! These return errors for the report instead of failing a test, so they
//! stay here rather than in the test kit, whose tree readers assert.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backup_tests::hash::hex;
use sha2::{Digest, Sha256};

/// The folder names every tool is told to skip (backup-cli's defaults plus
/// the benchmark profile's `temp_processing/`).
pub const EXCLUDED_DIRS: &[&str] = &[".git", "__pycache__", "temp_processing"];

/// The file-name suffixes every tool is told to skip (backup-cli's defaults).
pub const EXCLUDED_SUFFIXES: &[&str] = &[".pyc", ".log", ".tmp", ".temp"];

/// One entry of a walk.
#[derive(Debug)]
pub struct WalkEntry {
    /// Path relative to the walked root.
    pub rel: PathBuf,
    /// `lstat` of the entry.
    pub meta: fs::Metadata,
}

/// Whether `rel` (relative to a corpus root) is excluded by the benchmark's
/// rules: it lies in or is one of [`EXCLUDED_DIRS`], or any component ends
/// with one of [`EXCLUDED_SUFFIXES`].
pub fn is_excluded(rel: &Path) -> bool {
    rel.components().any(|c| {
        let s = c.as_os_str().to_string_lossy();
        EXCLUDED_DIRS.contains(&s.as_ref()) || EXCLUDED_SUFFIXES.iter().any(|x| s.ends_with(x))
    })
}

/// Walks `root` without following symlinks, in sorted order (parents before
/// children), skipping entries (and whole folders) for which `skip(rel)` is
/// true. The root itself is not listed.
pub fn walk(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<Vec<WalkEntry>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = root.join(&rel_dir);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .with_context(|| format!("reading folder {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading folder {}", dir.display()))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = rel_dir.join(&name);
            if skip(&rel) {
                continue;
            }
            let path = root.join(&rel);
            let meta =
                fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
            if meta.is_dir() {
                subdirs.push(rel.clone());
            }
            out.push(WalkEntry { rel, meta });
        }
        // Reverse so the stack pops them in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// Counts of a tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeSummary {
    /// Regular files.
    pub files: u64,
    /// Folders (not counting the root).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

/// Summarizes `root`, skipping what `skip` says.
pub fn summarize(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<TreeSummary> {
    let mut s = TreeSummary::default();
    for e in walk(root, skip)? {
        let t = e.meta.file_type();
        if t.is_file() {
            s.files += 1;
            s.bytes += e.meta.len();
        } else if t.is_dir() {
            s.dirs += 1;
        } else if t.is_symlink() {
            s.symlinks += 1;
        }
    }
    Ok(s)
}

/// A SHA-256 over the names, kinds, contents and link targets of a tree
/// (not its times or modes): equal digests mean equal trees.
pub fn tree_digest(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<String> {
    let mut h = Sha256::new();
    for e in walk(root, skip)? {
        h.update(e.rel.to_string_lossy().as_bytes());
        h.update([0]);
        let path = root.join(&e.rel);
        let t = e.meta.file_type();
        if t.is_file() {
            h.update(b"f");
            h.update(file_sha256(&path)?);
        } else if t.is_dir() {
            h.update(b"d");
        } else if t.is_symlink() {
            h.update(b"l");
            h.update(fs::read_link(&path)?.to_string_lossy().as_bytes());
        }
        h.update([0]);
    }
    Ok(hex(&h.finalize()))
}

/// The SHA-256 of one file's content.
pub fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Whether two files hold the same bytes.
pub fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = fs::File::open(a).with_context(|| format!("opening {}", a.display()))?;
    let mut fb = fs::File::open(b).with_context(|| format!("opening {}", b.display()))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end of the file.
fn read_full(f: &mut fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// The last `lines` lines of a file, joined by ` | `, for error reports.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Reads every file under `roots` once (hard links are read once) and stats
/// every entry, so that the next timed run finds data and metadata in the
/// page cache. Returns (entries, bytes read). Missing roots are ignored.
pub fn warm(roots: &[PathBuf]) -> Result<(u64, u64)> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut entries, mut bytes) = (0u64, 0u64);
    for root in roots {
        let Ok(meta) = fs::symlink_metadata(root) else {
            continue;
        };
        let list = if meta.is_dir() {
            walk(root, &|_| false)?
        } else {
            vec![WalkEntry {
                rel: PathBuf::new(),
                meta,
            }]
        };
        for e in list {
            entries += 1;
            if !e.meta.is_file() || !seen.insert((e.meta.dev(), e.meta.ino())) {
                continue;
            }
            let path = root.join(&e.rel);
            // Unreadable files (e.g. mode 000 as non-root) are not fatal.
            let Ok(mut f) = fs::File::open(&path) else {
                continue;
            };
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
            }
        }
    }
    Ok((entries, bytes))
}

/// Differences between a source tree (filtered by `skip_src`) and a copy
/// of it (filtered by `skip_copy`), as human-readable lines, at most
/// `limit` of each kind, plus the total count of content/kind differences
/// and of metadata (mode, mtime) differences.
#[derive(Debug, Default)]
pub struct TreeDiff {
    /// Paths missing, extra, of another kind, size or content, or with
    /// another link target.
    pub content: Vec<String>,
    /// How many content differences in all.
    pub content_count: u64,
    /// Paths whose permission bits or modification time differ.
    pub metadata: Vec<String>,
    /// How many metadata differences in all.
    pub metadata_count: u64,
}

/// Compares `src` with `copy` (see [`TreeDiff`]).
pub fn compare_trees(
    src: &Path,
    skip_src: &dyn Fn(&Path) -> bool,
    copy: &Path,
    skip_copy: &dyn Fn(&Path) -> bool,
    limit: usize,
) -> Result<TreeDiff> {
    let a = walk(src, skip_src)?;
    let b = walk(copy, skip_copy)?;
    let mut d = TreeDiff::default();
    let note_content = |d: &mut TreeDiff, s: String| {
        d.content_count += 1;
        if d.content.len() < limit {
            d.content.push(s);
        }
    };
    let bmap: std::collections::HashMap<&Path, &WalkEntry> =
        b.iter().map(|e| (e.rel.as_path(), e)).collect();
    let aset: HashSet<&Path> = a.iter().map(|e| e.rel.as_path()).collect();
    for e in &a {
        let Some(o) = bmap.get(e.rel.as_path()) else {
            note_content(&mut d, format!("missing in copy: {}", e.rel.display()));
            continue;
        };
        let (ta, tb) = (e.meta.file_type(), o.meta.file_type());
        let kind = |t: fs::FileType| {
            if t.is_file() {
                'f'
            } else if t.is_dir() {
                'd'
            } else if t.is_symlink() {
                'l'
            } else {
                '?'
            }
        };
        if kind(ta) != kind(tb) {
            note_content(
                &mut d,
                format!(
                    "kind differs: {} ({} vs {})",
                    e.rel.display(),
                    kind(ta),
                    kind(tb)
                ),
            );
            continue;
        }
        if ta.is_file() {
            if e.meta.len() != o.meta.len() {
                note_content(
                    &mut d,
                    format!(
                        "size differs: {} ({} vs {})",
                        e.rel.display(),
                        e.meta.len(),
                        o.meta.len()
                    ),
                );
                continue;
            }
            if !same_content(&src.join(&e.rel), &copy.join(&e.rel))? {
                note_content(&mut d, format!("content differs: {}", e.rel.display()));
                continue;
            }
        } else if ta.is_symlink() {
            let (la, lb) = (
                fs::read_link(src.join(&e.rel))?,
                fs::read_link(copy.join(&e.rel))?,
            );
            if la != lb {
                note_content(
                    &mut d,
                    format!(
                        "link target differs: {} ({} vs {})",
                        e.rel.display(),
                        la.display(),
                        lb.display()
                    ),
                );
            }
            continue;
        }
        let mode_a = e.meta.permissions().mode() & 0o7777;
        let mode_b = o.meta.permissions().mode() & 0o7777;
        let mtime_differs = ta.is_file()
            && (e.meta.mtime() != o.meta.mtime() || e.meta.mtime_nsec() != o.meta.mtime_nsec());
        if mode_a != mode_b || mtime_differs {
            d.metadata_count += 1;
            if d.metadata.len() < limit {
                let mut s = format!("{}:", e.rel.display());
                if mode_a != mode_b {
                    s.push_str(&format!(" mode {mode_a:o} vs {mode_b:o}"));
                }
                if mtime_differs {
                    s.push_str(&format!(
                        " mtime {}.{:09} vs {}.{:09}",
                        e.meta.mtime(),
                        e.meta.mtime_nsec(),
                        o.meta.mtime(),
                        o.meta.mtime_nsec()
                    ));
                }
                d.metadata.push(s);
            }
        }
    }
    for e in &b {
        if !aset.contains(e.rel.as_path()) {
            note_content(&mut d, format!("extra in copy: {}", e.rel.display()));
        }
    }
    Ok(d)
}

/// Removes a tree, making folders writable first if a plain removal fails
/// (snapshots may hold read-only folders).
pub fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    if let Ok(list) = walk(path, &|_| false) {
        for e in list.iter().filter(|e| e.meta.is_dir()) {
            let _ = fs::set_permissions(path.join(&e.rel), fs::Permissions::from_mode(0o755));
        }
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
    fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// Whether `program` is found on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.metadata().map(|m| m.is_file()).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_rules() {
        for p in [
            ".git/objects/ab/cdef",
            "src/__pycache__/x.cpython-311.pyc",
            "a/b/app.log",
            "temp_processing/batch_0/chunk_1.json",
            "src/stray.pyc",
            "x/y.tmp",
        ] {
            assert!(is_excluded(Path::new(p)), "{p}");
        }
        for p in [
            "src/main.rs",
            "docs/logbook.md",
            "git/notes.txt",
            "a/b/c.py",
        ] {
            assert!(!is_excluded(Path::new(p)), "{p}");
        }
    }
}
