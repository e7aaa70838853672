//! [`restore()`]: put a snapshot (or some of its paths) back into a folder,
//! checking each file's SHA-256 against the manifest as it is written.
//!
//! Paths come from the snapshot's manifest, which only admits relative
//! paths without `..`; nothing is ever written outside the target folder.

use std::collections::hash_map::{Entry as Slot, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use backup_core::{
    Content, CoreError, EntryKind, EntryStatus, ManifestEntry, Phase, Progress, RelPath,
    SnapshotRef, SnapshotStore,
};
use backup_sys::for_each_in_runs;
use serde::Serialize;

use backup_copy::copy::{
    copy_open_hashed, copy_stream_hashed, file_time, set_mode, CopyError, SetAttrs,
};

/// What to restore and where.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The folder to restore into (created if missing).
    pub target: PathBuf,
    /// Restore only these files/folders (all when empty).
    pub paths: Vec<RelPath>,
    /// Allow a non-empty target and replace files in it.
    pub overwrite: bool,
    /// Worker threads (at least 1).
    pub threads: usize,
}

/// A path that did not restore cleanly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreProblem {
    /// Path relative to the snapshot.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// The result of a restore.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreReport {
    /// The folder restored into.
    pub target: String,
    /// Files written.
    pub files_restored: u64,
    /// Folders created.
    pub dirs_restored: u64,
    /// Symlinks created.
    pub symlinks_restored: u64,
    /// Bytes written.
    pub bytes_restored: u64,
    /// Files whose content did not match the manifest's SHA-256.
    pub mismatches: Vec<RestoreProblem>,
    /// Paths that could not be written.
    pub errors: Vec<RestoreProblem>,
    /// Paths the snapshot holds no content for (they failed at backup time).
    pub not_in_snapshot: Vec<String>,
    /// Files restored without their setuid/setgid bits: ownership is not
    /// restored, so they would run as whoever restores them.
    pub setid_cleared: Vec<String>,
}

impl RestoreReport {
    /// Whether every requested path was restored intact.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty() && self.errors.is_empty()
    }
}

/// Why a restore did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The target folder has content and `overwrite` was not given.
    #[error("{} is not empty; restore into an empty folder or pass --overwrite", .0.display())]
    TargetNotEmpty(PathBuf),
    /// A requested path is not in the snapshot.
    #[error(
        "{0} is not in the snapshot; `backup-cli diff` or the snapshot folder shows what it holds"
    )]
    PathNotFound(String),
    /// Reading the snapshot or creating the target failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Refuses a path whose folders inside `target` include a symlink (only
/// possible when restoring over existing content): following it could write
/// outside the target.
fn check_no_symlinked_parent(target: &Path, rel: &RelPath) -> io::Result<()> {
    let mut cur = target.to_path_buf();
    let parts: Vec<_> = rel.as_path().components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::other(format!(
                    "{} is a symlink in the restore target; refusing to write through it",
                    cur.display()
                )))
            }
            Ok(_) => {}
            // Not there yet: nothing below it exists either.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Removes whatever stands at `path` unless it is a folder.
fn clear_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a folder is in the way",
        )),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Restores `snapshot` of `store` according to `opts`: folders first
/// (parents before children), then files on `opts.threads` threads, then
/// symlinks, then the folders' modes and times (deepest first, so that a
/// read-only folder is closed last).
pub fn restore(
    store: &dyn SnapshotStore,
    snapshot: &SnapshotRef,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    let mut entries = selected_entries(store, snapshot, opts)?;
    prepare_target(opts)?;
    let mut report = RestoreReport {
        target: opts.target.display().to_string(),
        ..RestoreReport::default()
    };
    // Parent folders of requested paths, and every folder entry, first.
    entries.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    // A Windows folder cannot hold two names that differ only in case (a
    // snapshot made on Linux can): the second would replace the first.
    if cfg!(windows) {
        refuse_case_clashes(&mut entries, &mut report);
    }
    let dirs = make_folders(&entries, opts, &mut report);
    restore_files(store, snapshot, &entries, opts, progress, &mut report);
    make_symlinks(&entries, opts, &mut report);
    set_folder_attrs(dirs, &mut report);
    report.mismatches.sort_by(|a, b| a.path.cmp(&b.path));
    report.errors.sort_by(|a, b| a.path.cmp(&b.path));
    report.not_in_snapshot.sort();
    report.setid_cleared.sort();
    Ok(report)
}

/// Pairs `(later, earlier)` of indexes into `entries` whose paths are equal
/// but for letter case (Unicode lower case; NTFS folds with its own table,
/// which agrees for the letters of every common alphabet), except two
/// folders, which merge harmlessly.
fn case_clashes(entries: &[ManifestEntry]) -> Vec<(usize, usize)> {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut clashes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match first.entry(e.entry.path.to_string().to_lowercase()) {
            Slot::Vacant(slot) => {
                slot.insert(i);
            }
            Slot::Occupied(slot) => {
                let j = *slot.get();
                if !(e.entry.kind == EntryKind::Dir && entries[j].entry.kind == EntryKind::Dir) {
                    clashes.push((i, j));
                }
            }
        }
    }
    clashes
}

/// Takes out of `entries` each one whose path differs from an earlier one's
/// only in case, as an error in `report` naming both and what to do (entries
/// are sorted, so `README.md` is restored and `readme.md` is not).
fn refuse_case_clashes(entries: &mut Vec<ManifestEntry>, report: &mut RestoreReport) {
    let clashes = case_clashes(entries);
    let mut refused = vec![false; entries.len()];
    for &(later, earlier) in &clashes {
        refused[later] = true;
        let (path, kept) = (&entries[later].entry.path, &entries[earlier].entry.path);
        report.errors.push(RestoreProblem {
            path: path.to_string(),
            error: format!(
                "{path} not restored: it differs from {kept} only in letter case, and one \
                 folder here cannot hold both; restore it alone into another folder \
                 (--path {path} --to ...)"
            ),
        });
    }
    // What lies below a refused folder goes with it (entries are sorted, so
    // a folder comes before what it holds).
    let mut below: Vec<PathBuf> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let p = e.entry.path.as_path();
        if refused[i] {
            below.push(p.to_path_buf());
        } else if let Some(top) = below.iter().find(|t| p.starts_with(t)) {
            refused[i] = true;
            report.errors.push(RestoreProblem {
                path: e.entry.path.to_string(),
                error: format!(
                    "{} not restored: it is below {}, which was not (see there)",
                    e.entry.path,
                    top.display()
                ),
            });
        }
    }
    let mut next = refused.into_iter();
    entries.retain(|_| !next.next().unwrap_or(false));
}

/// The manifest entries `opts.paths` asks for (all when empty); a requested
/// path the snapshot does not hold is an error.
fn selected_entries(
    store: &dyn SnapshotStore,
    snapshot: &SnapshotRef,
    opts: &RestoreOptions,
) -> Result<Vec<ManifestEntry>, RestoreError> {
    let wanted = |e: &ManifestEntry, p: &RelPath| {
        e.entry.path == *p || e.entry.path.as_path().starts_with(p.as_path())
    };
    let mut entries: Vec<ManifestEntry> = Vec::new();
    for e in store.read_manifest(snapshot)? {
        let e = e?;
        if opts.paths.is_empty() || opts.paths.iter().any(|p| wanted(&e, p)) {
            entries.push(e);
        }
    }
    for p in &opts.paths {
        if !entries.iter().any(|e| wanted(e, p)) {
            return Err(RestoreError::PathNotFound(p.to_string()));
        }
    }
    Ok(entries)
}

/// Creates the target folder, or checks that it is empty (unless
/// `overwrite`).
fn prepare_target(opts: &RestoreOptions) -> Result<(), RestoreError> {
    match fs::read_dir(&opts.target) {
        Ok(mut it) => {
            if it.next().is_some() && !opts.overwrite {
                return Err(RestoreError::TargetNotEmpty(opts.target.clone()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(&opts.target)
                .map_err(|e| CoreError::io("create", &opts.target, e))?;
        }
        Err(e) => return Err(CoreError::io("read", &opts.target, e).into()),
    }
    Ok(())
}

/// A restored folder with the mode and mtime it gets at the end.
type FolderAttrs = (PathBuf, u32, i64);

/// Creates every folder entry (never through a symlink in the target).
fn make_folders(
    entries: &[ManifestEntry],
    opts: &RestoreOptions,
    report: &mut RestoreReport,
) -> Vec<FolderAttrs> {
    let mut dirs = Vec::new();
    for e in entries.iter().filter(|e| e.entry.kind == EntryKind::Dir) {
        let dst = e.entry.path.under(&opts.target);
        let checked = if opts.overwrite {
            check_no_symlinked_parent(&opts.target, &e.entry.path).and_then(|()| {
                match fs::symlink_metadata(&dst) {
                    Ok(m) if m.file_type().is_symlink() => Err(io::Error::other(format!(
                        "{} is a symlink in the restore target; refusing to write through it",
                        dst.display()
                    ))),
                    _ => Ok(()),
                }
            })
        } else {
            Ok(())
        };
        match checked.and_then(|()| fs::create_dir_all(&dst)) {
            Ok(()) => {
                report.dirs_restored += 1;
                dirs.push((dst, e.entry.stat.mode, e.entry.stat.mtime_ns));
            }
            Err(err) => report.errors.push(RestoreProblem {
                path: e.entry.path.to_string(),
                error: err.to_string(),
            }),
        }
    }
    dirs
}

/// Restores the files, each checked against its SHA-256, on
/// `opts.threads` threads taking runs of neighbours.
fn restore_files(
    store: &dyn SnapshotStore,
    snapshot: &SnapshotRef,
    entries: &[ManifestEntry],
    opts: &RestoreOptions,
    progress: &dyn Progress,
    report: &mut RestoreReport,
) {
    let files: Vec<&ManifestEntry> = entries
        .iter()
        .filter(|e| e.entry.kind == EntryKind::File)
        .collect();
    let total_bytes: u64 = files.iter().map(|e| e.entry.stat.size).sum();
    let bar = progress.start(Phase::Restore, Some(files.len() as u64), Some(total_bytes));
    let shared = Mutex::new(report);
    // Workers take runs of consecutive files (mostly one folder's), so two
    // threads rarely write into the same folder at once.
    for_each_in_runs(&files, opts.threads, 64, |_, e| {
        let outcome = restore_file(store, snapshot, opts, e);
        bar.inc(1, e.entry.stat.size);
        let mut r = shared.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            FileOutcome::Written(bytes) => {
                r.files_restored += 1;
                r.bytes_restored += bytes;
                if e.entry.stat.mode & SET_ID != 0 {
                    r.setid_cleared.push(e.entry.path.to_string());
                }
            }
            FileOutcome::Mismatch(msg) => r.mismatches.push(RestoreProblem {
                path: e.entry.path.to_string(),
                error: msg,
            }),
            FileOutcome::Error(msg) => r.errors.push(RestoreProblem {
                path: e.entry.path.to_string(),
                error: msg,
            }),
            FileOutcome::NoContent => r.not_in_snapshot.push(e.entry.path.to_string()),
        }
    });
    bar.finish();
}

/// Creates the symlinks (stored as links, never followed).
fn make_symlinks(entries: &[ManifestEntry], opts: &RestoreOptions, report: &mut RestoreReport) {
    for e in entries
        .iter()
        .filter(|e| e.entry.kind == EntryKind::Symlink)
    {
        let dst = e.entry.path.under(&opts.target);
        let result = (|| {
            if opts.overwrite {
                check_no_symlinked_parent(&opts.target, &e.entry.path)?;
            }
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            clear_non_dir(&dst)?;
            let target = e.entry.link_target.clone().unwrap_or_default();
            #[cfg(unix)]
            std::os::unix::fs::symlink(&target, &dst)?;
            #[cfg(windows)]
            std::os::windows::fs::symlink_file(&target, &dst)?;
            let t = file_time(e.entry.stat.mtime_ns);
            let _ = filetime::set_symlink_file_times(&dst, t, t);
            Ok::<(), io::Error>(())
        })();
        match result {
            Ok(()) => report.symlinks_restored += 1,
            Err(err) => report.errors.push(RestoreProblem {
                path: e.entry.path.to_string(),
                error: err.to_string(),
            }),
        }
    }
}

/// Gives the folders their modes and mtimes, deepest first.
fn set_folder_attrs(mut dirs: Vec<FolderAttrs>, report: &mut RestoreReport) {
    dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
    for (dst, mode, mtime) in dirs {
        let _ = filetime::set_file_mtime(&dst, file_time(mtime));
        if let Err(err) = set_mode(&dst, mode) {
            report.errors.push(RestoreProblem {
                path: dst.display().to_string(),
                error: err.to_string(),
            });
        }
    }
}

/// The setuid and setgid bits, which a restore does not give back (as tar
/// does without `--same-owner`).
const SET_ID: u32 = 0o6000;

enum FileOutcome {
    Written(u64),
    Mismatch(String),
    Error(String),
    NoContent,
}

fn restore_file(
    store: &dyn SnapshotStore,
    snapshot: &SnapshotRef,
    opts: &RestoreOptions,
    e: &ManifestEntry,
) -> FileOutcome {
    if e.status == Some(EntryStatus::Failed) || e.sha256.is_none() {
        return FileOutcome::NoContent;
    }
    // A snapshot made on Linux may name files Windows cannot hold (`aux.txt`,
    // `a:b`): each is an error naming why, never a write to a device.
    #[cfg(windows)]
    if let Some(why) = e
        .entry
        .path
        .as_path()
        .components()
        .find_map(|c| backup_sys::windows_name_problem(&c.as_os_str().to_string_lossy()))
    {
        return FileOutcome::Error(format!(
            "{} not restored: {why}; restore it on a system that allows the name (Linux, macOS)",
            e.entry.path
        ));
    }
    let real = e.entry.path.under(&opts.target);
    if opts.overwrite {
        if let Err(err) = check_no_symlinked_parent(&opts.target, &e.entry.path) {
            return FileOutcome::Error(err.to_string());
        }
    }
    // Written under a temporary name beside it and renamed into place only
    // when its SHA-256 matches: damaged bytes never appear under the real
    // name, and a file being replaced stays until its good copy is there.
    let dst = temporary_beside(&real);
    let _ = fs::remove_file(&dst);
    let copy = || -> Result<(backup_core::ContentHash, u64), CopyError> {
        let content = store
            .open_content(snapshot, e)
            .map_err(|err| CopyError::Source(io::Error::other(err)))?;
        match content {
            Content::File(file, src) => {
                let attrs = SetAttrs::Given {
                    mode: e.entry.stat.mode & !SET_ID,
                    mtime_ns: e.entry.stat.mtime_ns,
                };
                copy_open_hashed(file, &dst, attrs)
                    .map(|c| (c.hash, c.bytes))
                    .map_err(|err| match err {
                        CopyError::Source(io) => CopyError::Source(io::Error::new(
                            io.kind(),
                            format!("cannot read {}: {io}", src.display()),
                        )),
                        other => other,
                    })
            }
            Content::Reader(mut r) => copy_stream_hashed(
                &mut r,
                &dst,
                e.entry.stat.mode & !SET_ID,
                e.entry.stat.mtime_ns,
            ),
        }
    };
    let mut copied = copy();
    if let Err(CopyError::Destination(err)) = &copied {
        // Its folder was not in the manifest (a partial restore of a file):
        // make it, once, and try again.
        if err.kind() == io::ErrorKind::NotFound {
            if let Some(parent) = real.parent() {
                if let Err(err) = fs::create_dir_all(parent) {
                    return FileOutcome::Error(err.to_string());
                }
            }
            copied = copy();
        }
    }
    let (hash, bytes) = match copied {
        Ok(c) => c,
        Err(CopyError::Source(err)) => {
            let _ = fs::remove_file(&dst);
            return FileOutcome::Error(backup_core::error_chain(&err));
        }
        Err(CopyError::Destination(err)) => {
            let _ = fs::remove_file(&dst);
            return FileOutcome::Error(format!("cannot write {}: {err}", real.display()));
        }
    };
    if Some(hash) != e.sha256 {
        let _ = fs::remove_file(&dst);
        return FileOutcome::Mismatch(format!(
            "not restored: the snapshot's copy is damaged (SHA-256 {} recorded, {} read); `backup-cli verify --all --repair` copies it again from the source if the source still has it",
            e.sha256.map(|h| h.to_hex()).unwrap_or_default(),
            hash
        ));
    }
    // rename never follows a symlink at `real` and replaces any non-folder
    // (on Windows, also a read-only file: see `backup_sys::replace_file`).
    if let Err(err) = backup_sys::replace_file(&dst, &real) {
        let _ = fs::remove_file(&dst);
        return FileOutcome::Error(format!("cannot write {}: {err}", real.display()));
    }
    FileOutcome::Written(bytes)
}

/// The temporary name a restored file is written under, beside `path`
/// (short, so that a name near the length limit still has one).
fn temporary_beside(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!(".backup-cli-restoring-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use backup_core::{EntryKind, ManifestEntry, RelPath, ScanEntry};

    use super::{case_clashes, refuse_case_clashes, RestoreReport};

    fn entry(path: &str, kind: EntryKind) -> ManifestEntry {
        ManifestEntry {
            entry: ScanEntry {
                path: RelPath::new(path).unwrap(),
                kind,
                stat: Default::default(),
                link_target: None,
            },
            sha256: None,
            rehash: false,
            status: None,
            error: None,
        }
    }

    #[test]
    fn names_that_differ_only_in_case_are_found_but_two_folders_merge() {
        // In the order restore sorts them (bytes: upper case first).
        let entries = vec![
            entry("Docs", EntryKind::Dir),
            entry("Docs/Readme.md", EntryKind::File),
            entry("Makefile", EntryKind::File),
            entry("SRC", EntryKind::File),
            entry("docs", EntryKind::Dir),
            entry("docs/README.md", EntryKind::File),
            entry("makefile", EntryKind::File),
            entry("src", EntryKind::Dir),
            entry("unique.txt", EntryKind::File),
            entry("\u{c9}t\u{e9}.txt", EntryKind::File),
            entry("\u{e9}t\u{e9}.txt", EntryKind::File),
        ];
        assert_eq!(
            case_clashes(&entries),
            vec![(5, 1), (6, 2), (7, 3), (10, 9)]
        );
    }

    #[test]
    fn a_case_clash_is_a_per_file_error_naming_both_and_the_first_is_kept() {
        let mut entries = vec![
            entry("Notes.txt", EntryKind::File),
            entry("SRC", EntryKind::File),
            entry("keep.txt", EntryKind::File),
            entry("notes.txt", EntryKind::File),
            entry("src", EntryKind::Dir),
            entry("src/a.py", EntryKind::File),
        ];
        let mut report = RestoreReport::default();
        refuse_case_clashes(&mut entries, &mut report);
        let left: Vec<String> = entries.iter().map(|e| e.entry.path.to_string()).collect();
        assert_eq!(left, ["Notes.txt", "SRC", "keep.txt"]);
        let refused: Vec<&str> = report.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(refused, ["notes.txt", "src", "src/a.py"]);
        assert!(
            report.errors[2].error.contains("below src"),
            "{:?}",
            report.errors[2]
        );
        let msg = &report.errors[0].error;
        assert!(
            msg.contains("differs from Notes.txt only in letter case"),
            "{msg}"
        );
        assert!(msg.contains("--path notes.txt"), "{msg}");
    }
}
