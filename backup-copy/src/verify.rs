//! [`verify()`]: re-read snapshot folders and compare them with their
//! manifests (the local store's [`SnapshotStore::verify`]).
//!
//! [`SnapshotStore::verify`]: backup_core::SnapshotStore::verify
//!
//! Each file is hashed once per inode (snapshots share unchanged files as
//! hard links), so verifying every snapshot costs little more than one.
//! Reports files whose content differs (`corrupt`), paths the manifest
//! lists but the folder lacks (`missing`) and paths the folder holds but
//! the manifest does not list (`unexpected`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use backup_core::{
    hash_file_beneath, ContentHash, CoreError, EntryKind, EntryStatus, ManifestEntry, Phase,
    Progress, Repair, SnapshotPath, SnapshotRef, VerifyReport,
};
use backup_sys::for_each_in_runs;
use backup_sys::{open_beneath, sync_dir, Kind, Stat, Tree};

use crate::copy::{copy_open_hashed, read_only, CopyError, SetAttrs};
use crate::layout::{read_manifest, STATE_DIR};

type InodeKey = (u64, u64);

/// Hard links share one inode; where the platform has no inode numbers,
/// each path is hashed on its own.
fn inode_key(stat: &Stat) -> Option<InodeKey> {
    (stat.dev_ino != (0, 0)).then_some(stat.dev_ino)
}

/// One file to hash; kept small (a large snapshot has hundreds of
/// thousands): the snapshot by index, the path relative to it.
struct FileCheck {
    snapshot: u32,
    rel: backup_core::RelPath,
    expected: ContentHash,
    size: u64,
    key: Option<InodeKey>,
}

/// A 64-bit hash of a relative path, for the "listed in the manifest" set
/// (a collision could only hide an unexpected path, with odds of 2^-64).
fn path_key(hasher: &std::hash::RandomState, p: &Path) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one(p.as_os_str().as_encoded_bytes())
}

/// Verifies `snapshots` (folders of `destination`) with `threads` hashing
/// threads. With `quick`, file contents are not read: only presence, type
/// and size are checked.
pub fn verify(
    destination: &Path,
    snapshots: &[SnapshotRef],
    threads: usize,
    quick: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport, CoreError> {
    let mut report = VerifyReport::default();
    let mut checks: Vec<FileCheck> = Vec::new();
    let hasher = std::hash::RandomState::new();
    let dirs: Vec<PathBuf> = snapshots
        .iter()
        .map(|s| destination.join(&s.name))
        .collect();
    for (snap_index, (snap, dir)) in snapshots.iter().zip(&dirs).enumerate() {
        report.snapshots_checked += 1;
        // Entries are looked at below folder descriptors: a path too long
        // for the system under the destination is still checked.
        let tree = Tree::open(dir).map_err(|e| CoreError::io("open", dir, e))?;
        let listed = check_entries(
            &tree,
            snap,
            snap_index as u32,
            quick,
            &hasher,
            &mut report,
            &mut checks,
        )?;
        find_unexpected(
            &tree,
            Path::new(""),
            &listed,
            &hasher,
            &snap.name,
            &mut report.unexpected,
        )?;
    }
    // Hash each inode once.
    let mut first_of: HashMap<InodeKey, usize> = HashMap::new();
    let mut to_hash: Vec<usize> = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        match c.key {
            Some(k) => {
                if let std::collections::hash_map::Entry::Vacant(v) = first_of.entry(k) {
                    v.insert(i);
                    to_hash.push(i);
                }
            }
            None => to_hash.push(i),
        }
    }
    let total: u64 = to_hash.iter().map(|&i| checks[i].size).sum();
    let bar = progress.start(Phase::Verify, Some(to_hash.len() as u64), Some(total));
    let results: Mutex<Vec<Option<ContentHash>>> = Mutex::new(vec![None; checks.len()]);
    let bytes = std::sync::atomic::AtomicU64::new(0);
    for_each_in_runs(&to_hash, threads, 1, |_, &i| {
        let c = &checks[i];
        // Opened without following any symlink in the path (see above).
        let h = hash_file_beneath(&dirs[c.snapshot as usize], &c.rel, c.size).ok();
        if let Some((_, len)) = h {
            bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        }
        bar.inc(1, c.size);
        if let Some(slot) = results.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
            *slot = h.map(|(h, _)| h);
        }
    });
    bar.finish();
    report.bytes_checked = bytes.into_inner();
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    for (i, c) in checks.iter().enumerate() {
        let idx = c.key.and_then(|k| first_of.get(&k).copied()).unwrap_or(i);
        let actual = results.get(idx).copied().flatten();
        if actual != Some(c.expected) {
            report.corrupt.push(SnapshotPath {
                snapshot: snapshots[c.snapshot as usize].name.clone(),
                path: c.rel.to_string(),
            });
        }
    }
    report.corrupt.sort();
    report.missing.sort();
    report.unexpected.sort();
    Ok(report)
}

/// Checks the entries of one snapshot folder's manifest against the
/// folder: presence, type, size and symlink targets; files whose content
/// is to be hashed go to `checks`. Returns the listed paths (as 64-bit
/// keys) for [`find_unexpected`].
fn check_entries(
    tree: &Tree,
    snap: &SnapshotRef,
    snap_index: u32,
    quick: bool,
    hasher: &std::hash::RandomState,
    report: &mut VerifyReport,
    checks: &mut Vec<FileCheck>,
) -> Result<HashSet<u64>, CoreError> {
    let mut listed: HashSet<u64> = HashSet::new();
    // Folders checked to be real folders (not symlinks): a manifest lists
    // parents first, so every entry's parent is here unless the snapshot
    // (or its manifest) was tampered with.
    let mut real_dirs: HashSet<u64> = HashSet::new();
    for e in read_manifest(tree.path())? {
        let e = e?;
        let key = path_key(hasher, e.entry.path.as_path());
        listed.insert(key);
        if e.status == Some(EntryStatus::Failed) {
            continue;
        }
        let sp = || SnapshotPath {
            snapshot: snap.name.clone(),
            path: e.entry.path.to_string(),
        };
        let parent = e
            .entry
            .path
            .as_path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !real_dirs.contains(&path_key(hasher, p))) {
            // Below a symlink or a file: its lstat would follow the link.
            report.corrupt.push(sp());
            continue;
        }
        let rel = e.entry.path.as_path();
        let Ok(stat) = tree.stat(rel) else {
            report.missing.push(sp());
            continue;
        };
        match e.entry.kind {
            EntryKind::Dir if stat.kind != Kind::Dir => report.missing.push(sp()),
            EntryKind::Dir => {
                real_dirs.insert(key);
            }
            EntryKind::Symlink => {
                if stat.kind != Kind::Symlink {
                    report.missing.push(sp());
                } else if tree.read_link(rel).ok() != e.entry.link_target {
                    report.corrupt.push(sp());
                }
            }
            EntryKind::File => {
                report.files_checked += 1;
                if stat.kind != Kind::File {
                    report.missing.push(sp());
                } else if stat.size != e.entry.stat.size {
                    report.corrupt.push(sp());
                } else if let Some(expected) = e.sha256.filter(|_| !quick) {
                    checks.push(FileCheck {
                        snapshot: snap_index,
                        rel: e.entry.path,
                        expected,
                        size: e.entry.stat.size,
                        key: inode_key(&stat),
                    });
                }
            }
        }
    }
    Ok(listed)
}

/// Lists, below the folder `rel` of a snapshot, the paths its manifest
/// does not list (`listed`).
fn find_unexpected(
    tree: &Tree,
    rel: &Path,
    listed: &HashSet<u64>,
    hasher: &std::hash::RandomState,
    snapshot: &str,
    out: &mut Vec<SnapshotPath>,
) -> Result<(), CoreError> {
    let names = tree
        .read_dir(rel)
        .map_err(|e| CoreError::io("read", &tree.display_path(rel), e))?;
    for (name, kind) in names {
        if rel.as_os_str().is_empty() && name == STATE_DIR {
            continue;
        }
        // Joined with `/`, as manifest paths are on every platform.
        let path = if rel.as_os_str().is_empty() {
            PathBuf::from(&name)
        } else {
            let mut joined = rel.as_os_str().to_owned();
            joined.push("/");
            joined.push(&name);
            PathBuf::from(joined)
        };
        if !listed.contains(&path_key(hasher, &path)) {
            out.push(SnapshotPath {
                snapshot: snapshot.to_owned(),
                path: path.display().to_string(),
            });
            continue;
        }
        if kind == Kind::Dir {
            find_unexpected(tree, &path, listed, hasher, snapshot, out)?;
        }
    }
    Ok(())
}

/// Copies `entry` of the snapshot folder `dir` again from `source`, when
/// the source still holds exactly the recorded content (see
/// [`backup_core::SnapshotStore::repair`]). The new copy is written beside
/// the damaged one and renamed over it (its folder opened for writing for
/// that moment); a folder of the path that is not a real folder (a
/// symlink) is never written through.
pub(crate) fn repair(
    dir: &Path,
    source: &Path,
    entry: &ManifestEntry,
) -> Result<Repair, CoreError> {
    let (EntryKind::File, Some(recorded)) = (entry.entry.kind, entry.sha256) else {
        return Ok(Repair::NotRepaired(
            "only files with recorded content can be copied again".into(),
        ));
    };
    let rel = &entry.entry.path;
    let Some(parent) = real_folder_of(dir, rel) else {
        return Ok(Repair::NotRepaired(format!(
            "a folder of {rel} is not a real folder in the snapshot; the snapshot itself is damaged there"
        )));
    };
    let src = rel.under(source);
    let changed = || {
        Repair::NotRepaired(format!(
            "the source {} no longer holds the recorded content (it changed since this snapshot)",
            src.display()
        ))
    };
    // Read once: the copy's own hash is the check (a size that differs
    // already tells, without opening the folder).
    let file = match open_beneath(source, rel.as_path()) {
        Ok((_, meta)) if meta.len() != entry.entry.stat.size => return Ok(changed()),
        Ok((file, _)) => file,
        Err(e) => {
            return Ok(Repair::NotRepaired(format!(
                "the source {} cannot be read ({e})",
                src.display()
            )))
        }
    };
    let tmp = parent.join(format!(".backup-cli-repair-{}", std::process::id()));
    with_folder_writable(&parent, || {
        let _ = fs::remove_file(&tmp);
        let set = SetAttrs::Given {
            mode: read_only(entry.entry.stat.mode),
            mtime_ns: entry.entry.stat.mtime_ns,
        };
        let copied = match copy_open_hashed(file, &tmp, set) {
            Ok(c) => c,
            Err(CopyError::Source(e)) => {
                let _ = fs::remove_file(&tmp);
                return Ok(Repair::NotRepaired(format!(
                    "the source {} cannot be read ({e})",
                    src.display()
                )));
            }
            Err(CopyError::Destination(e)) => return Err(CoreError::destination("write", &tmp, e)),
        };
        if copied.hash != recorded || copied.bytes != entry.entry.stat.size {
            let _ = fs::remove_file(&tmp);
            return Ok(changed());
        }
        let dst = rel.under(dir);
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| CoreError::destination("sync", &tmp, e))?;
        fs::rename(&tmp, &dst).map_err(|e| CoreError::destination("replace", &dst, e))?;
        sync_dir(&parent).map_err(|e| CoreError::destination("sync", &parent, e))?;
        Ok(Repair::Repaired)
    })
}

/// The folder `rel` lies in below `dir`, when every folder of the path is a
/// real folder (not a symlink).
fn real_folder_of(dir: &Path, rel: &backup_core::RelPath) -> Option<PathBuf> {
    let mut parent = dir.to_path_buf();
    let parts: Vec<_> = rel.as_path().components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        parent.push(part);
        if !fs::symlink_metadata(&parent).is_ok_and(|m| m.is_dir()) {
            return None;
        }
    }
    Some(parent)
}

/// Runs `f` with the read-only snapshot folder `folder` writable by its
/// owner, and makes it read-only again after.
fn with_folder_writable<T>(
    folder: &Path,
    f: impl FnOnce() -> Result<T, CoreError>,
) -> Result<T, CoreError> {
    let mode = fs::symlink_metadata(folder)
        .map_err(|e| CoreError::destination("read", folder, e))?
        .permissions();
    if mode.readonly() {
        // The owner's write bit only (not `set_readonly(false)`, which
        // would make it writable by everyone for that moment).
        #[cfg(unix)]
        let writable = {
            use std::os::unix::fs::PermissionsExt;
            fs::Permissions::from_mode(mode.mode() | 0o200)
        };
        #[cfg(not(unix))]
        let writable = {
            let mut w = mode.clone();
            #[allow(clippy::permissions_set_readonly_false)]
            w.set_readonly(false);
            w
        };
        fs::set_permissions(folder, writable)
            .map_err(|e| CoreError::destination("open for writing", folder, e))?;
    }
    let result = f();
    if mode.readonly() {
        let _ = fs::set_permissions(folder, mode);
    }
    result
}
