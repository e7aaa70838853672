//! [`JwalkScanner`]: the walk of the source.
//!
//! jwalk reads folders (serially by default, or on a rayon pool, see
//! [`ScanOptions::threads`]); the `process_read_dir` callback drops
//! excluded children (so excluded folders are never entered), `lstat`s the
//! rest relative to the open folder and reads symlink targets. The iterator
//! yields entries parent-first on the scan thread, which sends them in
//! batches down a bounded channel; the stages after it run in parallel.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use backup_core::{
    send_batch, CoreError, EntryKind, FileStat, RelPath, ScanBatch, ScanEntry, ScanEvent, Scanner,
    SCAN_BATCH,
};
use backup_sys::{open_regular, read_regular};
use crossbeam_channel::Sender;
use jwalk::{Parallelism, WalkDirGeneric};

use crate::exclude::ExcludeSet;
use crate::sys::{ChildKind, DirHandle};

/// The largest `.gitignore` read (a real one is a few KiB).
const MAX_GITIGNORE_BYTES: u64 = 1 << 20;

/// The signature a `CACHEDIR.TAG` file starts with
/// (<https://bford.info/cachedir/>).
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// What to walk and what to leave out.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// The source folder (absolute).
    pub root: PathBuf,
    /// Profile and default exclusions, relative to `root`.
    pub excludes: ExcludeSet,
    /// Absolute paths never backed up: the destination (when inside the
    /// source) and the tool's own state files.
    pub excluded_paths: Vec<PathBuf>,
    /// Skip folders holding a `CACHEDIR.TAG` with the standard signature.
    pub exclude_caches: bool,
    /// Skip folders holding a file with one of these names.
    pub exclude_if_present: Vec<String>,
    /// Honour `.gitignore` files in the source.
    pub respect_gitignore: bool,
    /// Names never backed up at the root of the source: a store's own
    /// state folder, found there when a restored snapshot is backed up.
    pub skip_at_root: Vec<OsString>,
    /// Walker threads. 0 or 1 (the default): one thread walks, at the
    /// speed of `find`, and never gets ahead of the stages downstream by
    /// more than their bounded channels. N > 1: a rayon pool of N, faster
    /// on very wide trees, but jwalk then reads ahead without bound while
    /// downstream is busy (memory grows with the tree; see
    /// `docs/BENCHMARKS.md`).
    pub threads: usize,
}

/// Stage 1: walks the source with jwalk.
#[derive(Clone, Debug)]
pub struct JwalkScanner {
    opts: Arc<ScanOptions>,
}

impl JwalkScanner {
    /// A scanner for `opts`.
    pub fn new(opts: ScanOptions) -> Self {
        JwalkScanner {
            opts: Arc::new(opts),
        }
    }
}

/// Per-folder state handed down the walk: the `.gitignore` rules in force.
#[derive(Clone, Debug, Default)]
struct DirState {
    /// (base folder relative to the root, rules) from outermost to innermost.
    gitignores: Arc<Vec<(PathBuf, Arc<ExcludeSet>)>>,
    /// The inode the parent's `lstat` saw for this folder: when the folder
    /// opened now is another (swapped for a symlink or another folder
    /// during the run), its listing is not used.
    expect_ino: Option<u64>,
}

/// Per-entry facts gathered on the walker threads.
#[derive(Debug, Default)]
struct EntryState {
    stat: Option<Result<(EntryKind, FileStat), String>>,
    special: Option<&'static str>,
    link_target: Option<PathBuf>,
}

type Walk = WalkDirGeneric<(DirState, EntryState)>;

impl Scanner for JwalkScanner {
    fn scan(&self, out: Sender<ScanBatch>, cancel: &AtomicBool) -> Result<(), CoreError> {
        let root = self.opts.root.clone();
        check_root(&root)?;
        let parallelism = match self.opts.threads {
            0 | 1 => Parallelism::Serial,
            n => Parallelism::RayonNewPool(n),
        };
        let hook = Arc::new(DirHook::new(Arc::clone(&self.opts)));
        let in_walk = Arc::clone(&hook);
        let walk = Walk::new(&root)
            .follow_links(false)
            .skip_hidden(false)
            .sort(true)
            .parallelism(parallelism)
            .process_read_dir(move |_depth, dir, state, children| {
                in_walk.process(dir, state, children)
            });
        let mut batch: ScanBatch = Vec::with_capacity(SCAN_BATCH);
        for item in walk {
            if cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            push_events(item, &root, &mut batch);
            if batch.len() >= SCAN_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(SCAN_BATCH));
                if !send_batch(&out, full, cancel) {
                    return Ok(());
                }
            }
        }
        batch.extend(hook.take_swapped());
        if !batch.is_empty() {
            send_batch(&out, batch, cancel);
        }
        Ok(())
    }
}

/// The source root must be a folder this user can list.
fn check_root(root: &Path) -> Result<(), CoreError> {
    let meta = fs::metadata(root).map_err(|e| CoreError::io("read source folder", root, e))?;
    if !meta.is_dir() {
        return Err(CoreError::io(
            "read source folder",
            root,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        ));
    }
    fs::read_dir(root).map_err(|e| CoreError::io("read source folder", root, e))?;
    Ok(())
}

type Children = Vec<jwalk::Result<jwalk::DirEntry<(DirState, EntryState)>>>;

/// The walk's per-folder hook, run on the walker threads for each folder
/// listed: reads its `.gitignore`, checks it is the folder its parent saw,
/// drops what is excluded and gathers each child's facts.
struct DirHook {
    opts: Arc<ScanOptions>,
    /// File names of the excluded state paths (a quick first test).
    excluded_names: Vec<OsString>,
    /// Folders found swapped during the walk, reported after it.
    swapped: Mutex<Vec<(PathBuf, String)>>,
}

impl DirHook {
    fn new(opts: Arc<ScanOptions>) -> Self {
        let excluded_names = opts
            .excluded_paths
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect();
        DirHook {
            opts,
            excluded_names,
            swapped: Mutex::new(Vec::new()),
        }
    }

    fn process(&self, dir: &Path, state: &mut DirState, children: &mut Children) {
        let rel_dir = dir.strip_prefix(&self.opts.root).unwrap_or(Path::new(""));
        if self.opts.respect_gitignore {
            read_gitignore(dir, rel_dir, state);
        }
        let handle = DirHandle::open(dir);
        let replaced = match (&handle, state.expect_ino) {
            (Ok(h), Some(want)) => h.ino().is_some_and(|ino| ino != want),
            (Err(e), Some(_)) => e.raw_os_error() == Some(ELOOP),
            _ => false,
        };
        if replaced {
            // The walk listed whatever is there now (a symlink's target):
            // none of it is this folder's.
            children.clear();
            self.swapped.lock().unwrap_or_else(|p| p.into_inner()).push((
                rel_dir.to_path_buf(),
                "cannot read folder: it was replaced during the backup (by a symlink or another folder); kept as it was".into(),
            ));
            return;
        }
        children.retain_mut(|child| match child {
            Ok(child) => self.keep_child(dir, rel_dir, state, &handle, child),
            Err(_) => true,
        });
    }

    /// Whether `child` of `dir` is backed up; if so its facts are filled in
    /// (and, for a folder, what its own listing must check).
    fn keep_child(
        &self,
        dir: &Path,
        rel_dir: &Path,
        state: &DirState,
        handle: &std::io::Result<DirHandle>,
        child: &mut jwalk::DirEntry<(DirState, EntryState)>,
    ) -> bool {
        let opts = &self.opts;
        let name = child.file_name.clone();
        if self.excluded_names.contains(&name) && opts.excluded_paths.contains(&dir.join(&name)) {
            return false;
        }
        if is_state_temp(&name, dir, &opts.excluded_paths) {
            return false;
        }
        if rel_dir.as_os_str().is_empty() && opts.skip_at_root.contains(&name) {
            return false;
        }
        let rel = rel_dir.join(&name);
        let is_dir = child.file_type.is_dir();
        if opts.excludes.is_excluded(&rel, is_dir) || gitignored(&state.gitignores, &rel, is_dir) {
            return false;
        }
        let handle = match handle {
            Ok(h) => h,
            Err(e) => {
                child.client_state.stat = Some(Err(e.to_string()));
                return true;
            }
        };
        if is_dir && tagged_folder(handle, dir, &name, opts) {
            return false;
        }
        child.client_state = facts(handle, &name);
        if child.client_state.special.is_some() {
            child.read_children = None;
        }
        if let (Some(read), Some(Ok((EntryKind::Dir, stat)))) =
            (child.read_children.as_mut(), &child.client_state.stat)
        {
            read.client_read_state = Some(DirState {
                gitignores: state.gitignores.clone(),
                expect_ino: Some(stat.ino),
            });
        }
        true
    }

    /// The swapped folders found so far, as scan errors.
    fn take_swapped(&self) -> Vec<ScanEvent> {
        std::mem::take(&mut *self.swapped.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .map(|(path, error)| ScanEvent::Error { path, error })
            .collect()
    }
}

/// Adds the rules of `dir`'s `.gitignore` (a regular file only: a FIFO
/// would block the walk; of bounded size) to the rules in force below it.
fn read_gitignore(dir: &Path, rel_dir: &Path, state: &mut DirState) {
    let text = read_regular(&dir.join(".gitignore"), MAX_GITIGNORE_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(set) = text.and_then(|t| ExcludeSet::from_file_text(&t).ok()) {
        let mut v = (*state.gitignores).clone();
        v.push((rel_dir.to_path_buf(), Arc::new(set)));
        state.gitignores = Arc::new(v);
    }
}

/// The scan events of one item of the walk (none for the root; two for a
/// folder whose listing failed: the folder, and its error, which makes
/// the run keep what it held before).
fn push_events(
    item: jwalk::Result<jwalk::DirEntry<(DirState, EntryState)>>,
    root: &Path,
    batch: &mut ScanBatch,
) {
    let entry = match item {
        Ok(entry) => entry,
        Err(e) => {
            let path = e
                .path()
                .map(|p| p.strip_prefix(root).unwrap_or(p).to_path_buf())
                .unwrap_or_default();
            batch.push(ScanEvent::Error {
                path,
                error: format!("cannot read folder: {}", walk_error_text(&e)),
            });
            return;
        }
    };
    if entry.depth == 0 {
        return;
    }
    let full = entry.parent_path.join(&entry.file_name);
    let rel = full.strip_prefix(root).unwrap_or(&full).to_path_buf();
    if let Some(e) = entry.read_children.as_ref().and_then(|c| c.error()) {
        batch.push(ScanEvent::Error {
            path: rel.clone(),
            error: format!("cannot read folder: {}", walk_error_text(e)),
        });
    }
    let state = entry.client_state;
    let event = if let Some(reason) = state.special {
        ScanEvent::Skipped {
            path: rel,
            reason: reason.into(),
        }
    } else {
        match state.stat {
            // Vanished between reading its folder and lstat: not there.
            None => return,
            Some(Err(error)) => ScanEvent::Error { path: rel, error },
            Some(Ok((kind, stat))) => match RelPath::new(rel.clone()) {
                Ok(path) => ScanEvent::Entry(ScanEntry {
                    path,
                    kind,
                    stat,
                    link_target: state.link_target,
                }),
                Err(e) => ScanEvent::Error {
                    path: rel,
                    error: e.to_string(),
                },
            },
        }
    };
    batch.push(event);
}

/// `ELOOP`: what opening a symlink with `O_NOFOLLOW` says.
#[cfg(unix)]
const ELOOP: i32 = libc::ELOOP;
#[cfg(not(unix))]
const ELOOP: i32 = -1;

/// The operating system's words for a walk error, when it has them.
fn walk_error_text(e: &jwalk::Error) -> String {
    match e.io_error() {
        Some(io) => io.to_string(),
        None => e.to_string(),
    }
}

/// Whether `name` is a temporary file (`.<name>.tmp-<pid>`,
/// `.<name>.records-<pid>`) of an
/// excluded state file being written in `dir`.
fn is_state_temp(name: &OsStr, dir: &Path, excluded: &[PathBuf]) -> bool {
    let Some(text) = name.to_str() else {
        return false;
    };
    let Some((base, _pid)) = text.strip_prefix('.').and_then(|t| {
        t.rsplit_once(".tmp-")
            .or_else(|| t.rsplit_once(".records-"))
    }) else {
        return false;
    };
    excluded
        .iter()
        .any(|p| p.parent() == Some(dir) && p.file_name() == Some(OsStr::new(base)))
}

fn gitignored(stack: &[(PathBuf, Arc<ExcludeSet>)], rel: &Path, is_dir: bool) -> bool {
    for (base, set) in stack.iter().rev() {
        let Ok(inner) = rel.strip_prefix(base) else {
            continue;
        };
        if let Some(decision) = set.decide(inner, is_dir) {
            return decision;
        }
    }
    false
}

/// Whether the child folder `name` of `dir` holds a cache tag or one of the
/// `exclude_if_present` names (looked up relative to the open parent).
fn tagged_folder(handle: &DirHandle, dir: &Path, name: &OsStr, opts: &ScanOptions) -> bool {
    let inside = |file: &str| {
        let mut p = name.to_os_string();
        p.push("/");
        p.push(file);
        p
    };
    if opts.exclude_caches && handle.lstat(&inside("CACHEDIR.TAG")).is_ok() {
        if let Ok((mut f, _)) = open_regular(&dir.join(name).join("CACHEDIR.TAG")) {
            let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
            if f.read_exact(&mut head).is_ok() && head == CACHEDIR_SIGNATURE {
                return true;
            }
        }
    }
    opts.exclude_if_present
        .iter()
        .any(|marker| handle.lstat(&inside(marker)).is_ok())
}

fn facts(handle: &DirHandle, name: &OsStr) -> EntryState {
    let mut state = EntryState::default();
    match handle.lstat(name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => state.stat = Some(Err(e.to_string())),
        Ok(ChildKind::Special(reason)) => state.special = Some(reason),
        Ok(ChildKind::Regular(kind, stat)) => {
            if kind == EntryKind::Symlink {
                match handle.readlink(name) {
                    Ok(t) => state.link_target = Some(t),
                    Err(e) => {
                        state.stat = Some(Err(e.to_string()));
                        return state;
                    }
                }
            }
            state.stat = Some(Ok((kind, stat)));
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_EXCLUDES;

    fn scan(opts: ScanOptions) -> (Vec<(String, EntryKind)>, Vec<String>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        JwalkScanner::new(opts)
            .scan(tx, &AtomicBool::new(false))
            .unwrap();
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        for ev in rx.into_iter().flatten() {
            match ev {
                ScanEvent::Entry(e) => entries.push((e.path.to_string(), e.kind)),
                ScanEvent::Skipped { path, .. } => skipped.push(path.display().to_string()),
                ScanEvent::Error { path, error } => panic!("{}: {error}", path.display()),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        (entries, skipped)
    }

    fn names(v: &[(String, EntryKind)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn touch(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn opts(root: &Path) -> ScanOptions {
        ScanOptions {
            root: root.to_path_buf(),
            excludes: ExcludeSet::new(DEFAULT_EXCLUDES).unwrap(),
            exclude_caches: true,
            threads: 2,
            ..ScanOptions::default()
        }
    }

    #[test]
    fn excluded_folders_are_not_entered_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(r, "app.py", b"x");
        touch(r, "pkg/__pycache__/m.cpython.pyc", b"x");
        touch(r, "pkg/mod.py", b"x");
        touch(r, "pkg/old.pyc", b"x");
        touch(r, ".git/objects/ab/cdef", b"x");
        touch(r, "logs/server.log", b"x");
        touch(r, "a.tmp", b"x");
        touch(r, "b.temp", b"x");
        let (entries, _) = scan(opts(r));
        assert_eq!(names(&entries), ["app.py", "logs", "pkg", "pkg/mod.py"]);
    }

    #[test]
    fn destination_and_state_paths_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().canonicalize().unwrap();
        touch(&r, "backups/P_backup_x/file", b"x");
        touch(&r, "backup_metadata.json", b"{}");
        touch(&r, ".backup_metadata.json.tmp-1234", b"{}");
        touch(&r, ".backup_metadata.json.records-1234", b"");
        touch(&r, "keep.txt", b"x");
        touch(&r, ".backup-snapshot/manifest.jsonl", b"");
        let mut o = opts(&r);
        o.skip_at_root = vec![".backup-snapshot".into()];
        o.excluded_paths = vec![r.join("backups"), r.join("backup_metadata.json")];
        let (entries, _) = scan(o);
        assert_eq!(names(&entries), ["keep.txt"]);
    }

    #[test]
    fn tagged_folders_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let mut tag = CACHEDIR_SIGNATURE.to_vec();
        tag.extend_from_slice(b"\n# a cache\n");
        touch(r, "cache/CACHEDIR.TAG", &tag);
        touch(r, "cache/blob", b"x");
        touch(r, "fake/CACHEDIR.TAG", b"not the signature");
        touch(r, "private/.nobackup", b"");
        touch(r, "private/secret", b"x");
        let mut o = opts(r);
        o.exclude_if_present = vec![".nobackup".into()];
        let (entries, _) = scan(o);
        assert_eq!(names(&entries), ["fake", "fake/CACHEDIR.TAG"]);
    }

    #[test]
    fn gitignore_files_are_honoured_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(r, ".gitignore", b"*.out\n/build/\n");
        touch(r, "sub/.gitignore", b"local.txt\n!keep.out\n");
        touch(r, "a.out", b"x");
        touch(r, "build/x", b"x");
        touch(r, "sub/build/y", b"x");
        touch(r, "sub/local.txt", b"x");
        touch(r, "sub/keep.out", b"x");
        touch(r, "local.txt", b"x");
        let (all, _) = scan(opts(r));
        assert_eq!(all.len(), 11, "{all:?}");
        let mut o = opts(r);
        o.respect_gitignore = true;
        let (entries, _) = scan(o);
        assert_eq!(
            names(&entries),
            [
                ".gitignore",
                "local.txt",
                "sub",
                "sub/.gitignore",
                "sub/build",
                "sub/build/y",
                "sub/keep.out"
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed_and_fifos_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(r, "real/f", b"x");
        std::os::unix::fs::symlink("real", r.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("outside")).unwrap();
        std::os::unix::fs::symlink("loop2", r.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", r.join("loop2")).unwrap();
        let fifo_made = std::process::Command::new("mkfifo")
            .arg(r.join("pipe"))
            .status()
            .is_ok_and(|s| s.success());
        let (entries, skipped) = scan(opts(r));
        assert!(entries.contains(&("link".into(), EntryKind::Symlink)));
        assert!(entries.contains(&("outside".into(), EntryKind::Symlink)));
        assert!(entries.contains(&("loop1".into(), EntryKind::Symlink)));
        assert!(!names(&entries).iter().any(|n| n.starts_with("link/")));
        if fifo_made {
            assert_eq!(skipped, ["pipe"]);
        }
    }

    #[test]
    fn missing_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = crossbeam_channel::unbounded();
        let err = JwalkScanner::new(opts(&dir.path().join("nope")))
            .scan(tx, &AtomicBool::new(false))
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
