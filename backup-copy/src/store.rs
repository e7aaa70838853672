//! [`LocalStore`]: snapshots as complete folders in a local destination.
//!
//! A snapshot is written under `.<name>.partial`, with new and changed
//! files copied (hashed as written) and unchanged ones hard-linked to the
//! previous snapshot (copied where a link is impossible). Files are made
//! read-only, so an edit inside one snapshot cannot silently change the
//! others that share its inode; the original mode is in the manifest. On
//! commit the manifest and summary are flushed, the file system is synced,
//! and the folder is renamed to its final name.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use backup_core::{
    Action, Change, Content, ContentHash, CoreError, LastGood, ManifestEntries, ManifestEntry,
    PlannedEntry, Progress, RelPath, Repair, SnapshotInfo, SnapshotRef, SnapshotStore,
    SnapshotWriter, VerifyReport, WriteOutcome, WrittenEntry,
};
use backup_naming::next_name_among;
use backup_sys::{
    free_space, link_refusal, open_beneath, sync_dir, sync_file_system, Kind, LinkRefusal, Tree,
};
use chrono::{DateTime, Local};
use tracing::{debug, warn};

use crate::copy::{
    copy_open_hashed_with, is_fatal_destination_error, read_only, set_mode, CopyError, SetAttrs,
};
use crate::fsutil::remove_tree;
use crate::layout::{
    deleting_name, list_snapshots, names_in_use, partial_name, read_manifest, remove_leftovers,
    write_info, ManifestWriter,
};

/// How often a file that changes while it is copied is copied again.
pub const CHANGED_FILE_RETRIES: u32 = 3;

/// Stage 3 for a local destination folder.
#[derive(Clone, Debug)]
pub struct LocalStore {
    profile: String,
    source: PathBuf,
    destination: PathBuf,
}

impl LocalStore {
    /// Snapshots of `profile` backing up `source`, in the folder
    /// `destination`.
    pub fn new(
        profile: impl Into<String>,
        source: impl Into<PathBuf>,
        destination: impl Into<PathBuf>,
    ) -> Self {
        LocalStore {
            profile: profile.into(),
            source: source.into(),
            destination: destination.into(),
        }
    }

    /// The folder of one of this store's snapshots.
    fn dir_of(&self, snapshot: &SnapshotRef) -> PathBuf {
        self.destination.join(&snapshot.name)
    }
}

impl SnapshotStore for LocalStore {
    fn list(&self, history: &HashSet<String>) -> Result<Vec<SnapshotRef>, CoreError> {
        list_snapshots(&self.destination, &self.profile, &self.source, history)
    }

    fn read_manifest(&self, snapshot: &SnapshotRef) -> Result<ManifestEntries, CoreError> {
        Ok(Box::new(read_manifest(&self.dir_of(snapshot))?))
    }

    fn open_content(
        &self,
        snapshot: &SnapshotRef,
        entry: &ManifestEntry,
    ) -> Result<Content, CoreError> {
        let dir = self.dir_of(snapshot);
        let path = entry.entry.path.under(&dir);
        // A symlink anywhere in the path (a tampered manifest naming a file
        // below a link to /etc) is damage, never followed.
        match open_beneath(&dir, entry.entry.path.as_path()) {
            Ok((file, _)) => Ok(Content::File(file, path)),
            Err(e) => Err(CoreError::io("read", &path, e)),
        }
    }

    fn next_name(
        &self,
        now: DateTime<Local>,
        history: &HashSet<String>,
    ) -> Result<String, CoreError> {
        let in_use = names_in_use(&self.destination);
        Ok(next_name_among(in_use, &self.profile, now, history))
    }

    fn remove_leftovers(&self) -> Result<Vec<String>, CoreError> {
        remove_leftovers(&self.destination, &self.profile, &self.source)
    }

    /// First renamed to `.<name>.deleting` (so it stops being a snapshot at
    /// once, and a crash midway leaves a leftover the next run removes),
    /// then removed, read-only files and all.
    fn remove(&self, snapshot: &SnapshotRef) -> Result<(), CoreError> {
        let dir = self.dir_of(snapshot);
        let doomed = self.destination.join(deleting_name(&snapshot.name));
        fs::rename(&dir, &doomed).map_err(|e| CoreError::io("rename for deletion", &dir, e))?;
        remove_tree(&doomed).map_err(|e| CoreError::io("delete", &doomed, e))
    }

    fn verify(
        &self,
        snapshots: &[SnapshotRef],
        quick: bool,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, CoreError> {
        crate::verify::verify(&self.destination, snapshots, threads, quick, progress)
    }

    fn repair(&self, snapshot: &SnapshotRef, entry: &ManifestEntry) -> Result<Repair, CoreError> {
        crate::verify::repair(&self.dir_of(snapshot), &self.source, entry)
    }

    /// Free space on the destination's file system (on its nearest existing
    /// folder, when it is not created yet).
    fn free_space(&self) -> Option<u64> {
        let probe = self
            .destination
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(&self.destination);
        free_space(probe).ok()
    }

    fn begin(
        &self,
        name: &str,
        previous: Option<&SnapshotRef>,
    ) -> Result<Box<dyn SnapshotWriter>, CoreError> {
        fs::create_dir_all(&self.destination)
            .map_err(|e| CoreError::destination("create", &self.destination, e))?;
        let tmp = self.destination.join(partial_name(name));
        fs::create_dir(&tmp).map_err(|e| CoreError::destination("create", &tmp, e))?;
        let manifest = match ManifestWriter::create(&tmp, &self.source) {
            Ok(m) => m,
            Err(e) => {
                let _ = remove_tree(&tmp);
                return Err(e);
            }
        };
        let tree = match Tree::open(&tmp) {
            Ok(tree) => tree,
            Err(e) => {
                let _ = remove_tree(&tmp);
                return Err(CoreError::destination("open", &tmp, e));
            }
        };
        // Without its folder, unchanged files are copied from the source.
        let previous = previous.and_then(|s| {
            let dir = self.dir_of(s);
            Tree::open(&dir)
                .inspect_err(|e| warn!(path = %dir.display(), error = %e, "cannot open the previous snapshot; unchanged files are copied"))
                .ok()
        });
        Ok(Box::new(LocalWriter {
            source: self.source.clone(),
            tmp,
            tree,
            final_path: self.destination.join(name),
            destination: self.destination.clone(),
            previous,
            manifest: Mutex::new(Some(manifest)),
            dirs: Mutex::new(Vec::new()),
            links: LinkFallbacks::default(),
        }))
    }
}

/// The longest path the operating system takes in one call (`PATH_MAX`,
/// with its terminating NUL).
#[cfg(unix)]
const MAX_PATH_BYTES: usize = libc::PATH_MAX as usize;
/// The longest path the operating system takes in one call (Windows with
/// long paths enabled).
#[cfg(not(unix))]
const MAX_PATH_BYTES: usize = 32_767;

/// How [`LocalWriter::link_previous`] got the file in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkOutcome {
    /// A hard link to the previous snapshot's file.
    Linked,
    /// A copy (hard link impossible), with what was copied.
    Copied { bytes: u64, hash: ContentHash },
}

/// A snapshot being written to a local folder. Every entry is made below
/// folder descriptors ([`Tree`]), so the destination's path length never
/// counts against the system's limit.
struct LocalWriter {
    source: PathBuf,
    tmp: PathBuf,
    /// The snapshot being written (`tmp`), opened once.
    tree: Tree,
    final_path: PathBuf,
    destination: PathBuf,
    /// The previous snapshot's folder, where unchanged files link from.
    previous: Option<Tree>,
    manifest: Mutex<Option<ManifestWriter>>,
    /// Folder modes and mtimes, applied at commit (children change mtimes).
    dirs: Mutex<Vec<(RelPath, u32, i64)>>,
    /// Hard links the file system refused, told once per run.
    links: LinkFallbacks,
}

/// Files copied because the file system refused a hard link for a reason
/// that holds for every file ([`LinkRefusal`]): counted, so that the run
/// says once why its snapshot takes more space, and, once the file system
/// is known to have no links, no further link is tried.
#[derive(Default)]
struct LinkFallbacks {
    unsupported: AtomicU64,
    too_many: AtomicU64,
    /// Links made in this run: one proves the file system has them (an
    /// `EPERM` is then about one file: another user's, or immutable).
    linked: AtomicU64,
}

/// Refusals, with no link made, after which a destination is taken to have
/// no hard links and no more are tried.
const REFUSALS_BEFORE_GIVING_UP: u64 = 16;

impl LinkFallbacks {
    /// Whether links are known to be impossible on this destination.
    fn none_possible(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed) >= REFUSALS_BEFORE_GIVING_UP
            && self.linked.load(Ordering::Relaxed) == 0
    }

    /// Counts a refused link by its reason; false for other failures.
    fn note(&self, e: &io::Error) -> bool {
        let counter = match link_refusal(e) {
            Some(LinkRefusal::Unsupported) => &self.unsupported,
            Some(LinkRefusal::TooManyLinks) => &self.too_many,
            None => return false,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A copy made without trying the link ([`Self::none_possible`]).
    fn skipped(&self) {
        self.unsupported.fetch_add(1, Ordering::Relaxed);
    }

    /// What to tell the user, one line per reason.
    fn warnings(&self, destination: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let unsupported = self.unsupported.load(Ordering::Relaxed);
        if unsupported > 0 && self.linked.load(Ordering::Relaxed) > 0 {
            out.push(format!(
                "{unsupported} file(s) could not be hard-linked in {} (owned by another user, \
                 or immutable) and were copied instead",
                destination.display()
            ));
        } else if unsupported > 0 {
            out.push(format!(
                "{} refused hard links (a FAT or exFAT drive, a network share without them, or \
                 earlier snapshots owned by another user): {unsupported} unchanged file(s) were \
                 copied instead of linked, so this snapshot takes the space of a full copy; an NTFS, \
                 ext4, APFS or Btrfs destination shares them",
                destination.display()
            ));
        }
        let too_many = self.too_many.load(Ordering::Relaxed);
        if too_many > 0 {
            out.push(format!(
                "{too_many} file(s) had as many hard links as {} allows (1,023 on NTFS); \
                 they were copied, and later snapshots link to the copies",
                destination.display()
            ));
        }
        out
    }
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalWriter {
    fn dest_err(&self, action: &'static str, rel: &RelPath, e: io::Error) -> CoreError {
        CoreError::destination(action, &self.tree.display_path(rel.as_path()), e)
    }

    /// Runs `op` on `rel`, creating missing parent folders once on ENOENT
    /// (workers write files before their folder entry may be processed).
    fn with_parent<T>(&self, rel: &RelPath, op: impl Fn() -> io::Result<T>) -> io::Result<T> {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = rel.as_path().parent().filter(|p| !p.as_os_str().is_empty()) {
                    if !self.tmp.exists() {
                        return Err(e);
                    }
                    self.tree.create_dir_all(parent)?;
                }
                op()
            }
            other => other,
        }
    }

    /// Creates the new file `rel` of the snapshot.
    fn create(&self, rel: &RelPath) -> io::Result<fs::File> {
        self.tree.create_file(rel.as_path())
    }

    /// Removes the file `rel` of the snapshot (a copy to be made again).
    fn remove(&self, rel: &RelPath) -> Result<(), CoreError> {
        self.tree
            .remove_file(rel.as_path())
            .map_err(|e| self.dest_err("remove", rel, e))
    }

    /// Copies the source file, retrying while it changes under us.
    fn copy_source(
        &self,
        planned: PlannedEntry,
    ) -> Result<Result<WrittenEntry, (PlannedEntry, String)>, CoreError> {
        let dst = &planned.entry.path;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let copied = match self.with_parent(dst, || {
                let copied = self
                    .open_source(dst)
                    .map_err(CopyError::Source)
                    .and_then(|f| {
                        copy_open_hashed_with(f, SetAttrs::SourceReadOnly, || self.create(dst))
                    });
                match copied {
                    Ok(c) => Ok(Ok(c)),
                    Err(CopyError::Destination(e)) => Err(e),
                    Err(CopyError::Source(e)) => Ok(Err(e)),
                }
            }) {
                Ok(Ok(c)) => c,
                Ok(Err(source_err)) => {
                    let _ = self.tree.remove_file(dst.as_path());
                    return Ok(Err((planned, source_err.to_string())));
                }
                Err(e) => return Err(self.dest_err("write", dst, e)),
            };
            if copied.changed_during_copy && attempt < CHANGED_FILE_RETRIES {
                debug!(path = %planned.entry.path, attempt, "changed while copied; copying again");
                self.remove(dst)?;
                continue;
            }
            if copied.changed_during_copy {
                warn!(path = %planned.entry.path, "kept changing while it was copied; the next run hashes it again");
            }
            let m = planned.to_manifest_read(
                copied.hash,
                copied.bytes,
                copied.stat,
                copied.changed_during_copy,
            );
            return Ok(Ok(WrittenEntry {
                manifest: m,
                outcome: WriteOutcome::Copied {
                    bytes: copied.bytes,
                },
            }));
        }
    }

    /// Hard-links `from` (in the previous snapshot) at `dst`. Where that is
    /// impossible (another file system, too many links, missing), copies the
    /// previous snapshot's file instead if it still has the `expected`
    /// content, else the `source` file. `Err` is fatal (the destination
    /// failed); `Ok(Err(_))` means no copy could be had for this file.
    fn link_previous(
        &self,
        from: &RelPath,
        dst: &RelPath,
        expected: ContentHash,
        attrs: (u32, i64),
        source: Option<&RelPath>,
        may_link: bool,
    ) -> Result<Result<LinkOutcome, String>, CoreError> {
        let prev = self.previous_tree();
        if may_link && self.links.none_possible() {
            self.links.skipped();
        } else if may_link {
            let link = || self.tree.hard_link(prev, from.as_path(), dst.as_path());
            match self.with_parent(dst, link) {
                Ok(()) => {
                    self.links.linked.fetch_add(1, Ordering::Relaxed);
                    return Ok(Ok(LinkOutcome::Linked));
                }
                Err(e) if is_fatal_destination_error(&e) => {
                    return Err(self.dest_err("link", dst, e))
                }
                Err(e) => {
                    if !self.links.note(&e) {
                        debug!(from = %from, error = %e, "hard link impossible; copying")
                    }
                }
            }
        }
        let set = SetAttrs::Given {
            mode: read_only(attrs.0),
            mtime_ns: attrs.1,
        };
        // The previous snapshot's copy (it must still have the content),
        // then the source.
        let candidates = std::iter::once(true).chain(source.map(|_| false));
        for must_match in candidates {
            let open = || match (must_match, source) {
                (false, Some(rel)) => self.open_source(rel),
                _ => prev.open_file(from.as_path()).map(|(f, _)| f),
            };
            match self.with_parent(dst, || {
                match open()
                    .map_err(CopyError::Source)
                    .and_then(|f| copy_open_hashed_with(f, set, || self.create(dst)))
                {
                    Ok(c) => Ok(Ok(c)),
                    Err(CopyError::Source(e)) => Ok(Err(e)),
                    Err(CopyError::Destination(e)) => Err(e),
                }
            }) {
                Err(e) => return Err(self.dest_err("write", dst, e)),
                Ok(Err(_)) => continue,
                Ok(Ok(c)) if must_match && c.hash != expected => self.remove(dst)?,
                Ok(Ok(c)) => {
                    return Ok(Ok(LinkOutcome::Copied {
                        bytes: c.bytes,
                        hash: c.hash,
                    }));
                }
            }
        }
        Ok(Err(format!(
            "{} cannot be linked or copied, and the source cannot be read",
            prev.display_path(from.as_path()).display()
        )))
    }
}

impl LocalWriter {
    /// Opens the source file `rel` below the source folder without
    /// following any symlink (a folder swapped for a link during the run is
    /// never read through).
    fn open_source(&self, rel: &RelPath) -> io::Result<fs::File> {
        open_beneath(&self.source, rel.as_path()).map(|(f, _)| f)
    }

    /// The folder `Link` and `KeepStale` actions name their paths in: the
    /// previous snapshot's (this run's own when there is none: content
    /// linked within the run).
    fn previous_tree(&self) -> &Tree {
        self.previous.as_ref().unwrap_or(&self.tree)
    }

    /// A hard link to `from`, the previous snapshot's copy of unchanged
    /// content `hash` (or a copy where a link is impossible).
    fn write_link(
        &self,
        planned: PlannedEntry,
        from: &RelPath,
        hash: ContentHash,
    ) -> Result<WrittenEntry, CoreError> {
        let entry = &planned.entry;
        let attrs = (entry.stat.mode, entry.stat.mtime_ns);
        // A link shares the inode's mode: where this entry's differs (a
        // chmod, or the same content under another path), a link would
        // keep the old one, so the content is copied instead.
        let may_link = (*from == entry.path && planned.change != Change::ModeChanged)
            || has_mode(self.previous_tree(), from, read_only(entry.stat.mode));
        match self.link_previous(from, &entry.path, hash, attrs, Some(&entry.path), may_link)? {
            Ok(LinkOutcome::Linked) => Ok(WrittenEntry {
                manifest: planned.into_manifest(Some(hash)),
                outcome: WriteOutcome::Linked,
            }),
            Ok(LinkOutcome::Copied { bytes, hash: got }) => {
                let mut m = planned.into_manifest(Some(got));
                // Copied from the source, which may have changed since
                // it was hashed: make the next run look again.
                m.rehash |= got != hash;
                Ok(WrittenEntry {
                    manifest: m,
                    outcome: WriteOutcome::Copied { bytes },
                })
            }
            Err(error) => Ok(WrittenEntry::failed(planned, error)),
        }
    }

    /// Keeps `copy`, the last good copy of a file whose source cannot be
    /// read (`planned` says why), marked stale.
    fn write_stale(
        &self,
        planned: PlannedEntry,
        copy: &LastGood,
    ) -> Result<WrittenEntry, CoreError> {
        let attrs = (copy.stat.mode, copy.stat.mtime_ns);
        let dst = &planned.entry.path;
        match self.link_previous(&copy.from, dst, copy.hash, attrs, None, true)? {
            Ok(outcome) => Ok(WrittenEntry {
                manifest: planned.into_manifest(None),
                outcome: WriteOutcome::Stale {
                    linked: outcome == LinkOutcome::Linked,
                },
            }),
            Err(more) => {
                let error = match &planned.action {
                    Action::KeepStale { error, .. } => format!("{error}; {more}"),
                    _ => more,
                };
                Ok(WrittenEntry::failed(planned, error))
            }
        }
    }

    /// A copy of the source file; if it cannot be read now, the last good
    /// copy is kept (stale) when there is one.
    fn write_copy(&self, planned: PlannedEntry) -> Result<WrittenEntry, CoreError> {
        let (mut planned, error) = match self.copy_source(planned)? {
            Ok(w) => return Ok(w),
            Err(failed) => failed,
        };
        // The source could not be read now: keep the last good copy if
        // there is one.
        match (planned.previous_version.take(), self.previous.is_some()) {
            (Some(copy), true) => {
                let kept = LastGood::clone(&copy);
                planned.action = Action::KeepStale { copy, error };
                self.write_stale(planned, &kept)
            }
            _ => Ok(WrittenEntry::failed(planned, error)),
        }
    }
}

impl SnapshotWriter for LocalWriter {
    fn write(&self, planned: PlannedEntry) -> Result<WrittenEntry, CoreError> {
        let entry = &planned.entry;
        let rel = &entry.path;
        let len = rel.as_path().as_os_str().len();
        if len >= MAX_PATH_BYTES {
            // Made below folder descriptors, only the path inside the
            // snapshot counts; one this long cannot be named in a call.
            let error = format!(
                "its path is {len} bytes, over the system's limit of {MAX_PATH_BYTES}: it cannot be written; shorten the path in the source"
            );
            return Ok(WrittenEntry::failed(planned, error));
        }
        // A name a Linux source may hold but Windows cannot: a per-file
        // failure, never a write to a device such as `CON`.
        #[cfg(windows)]
        if let Some(error) = rel
            .as_path()
            .components()
            .find_map(|c| backup_sys::windows_name_problem(&c.as_os_str().to_string_lossy()))
        {
            let error = format!("{error}; rename it in the source");
            return Ok(WrittenEntry::failed(planned, error));
        }
        match &planned.action {
            Action::CreateDir => {
                self.with_parent(rel, || match self.tree.create_dir(rel.as_path()) {
                    Err(e)
                        if e.kind() == io::ErrorKind::AlreadyExists
                            && self
                                .tree
                                .stat(rel.as_path())
                                .is_ok_and(|s| s.kind == Kind::Dir) =>
                    {
                        Ok(())
                    }
                    other => other,
                })
                .map_err(|e| self.dest_err("create", rel, e))?;
                guard(&self.dirs).push((rel.clone(), entry.stat.mode, entry.stat.mtime_ns));
                Ok(WrittenEntry::recorded(planned.into_manifest(None)))
            }
            Action::CreateSymlink => {
                let target = entry.link_target.as_deref().unwrap_or(Path::new(""));
                self.with_parent(rel, || self.tree.symlink(target, rel.as_path()))
                    .map_err(|e| self.dest_err("create symlink", rel, e))?;
                if let Err(e) = self
                    .tree
                    .set_symlink_mtime(rel.as_path(), entry.stat.mtime_ns)
                {
                    debug!(path = %rel, error = %e, "cannot set symlink time");
                }
                Ok(WrittenEntry::recorded(planned.into_manifest(None)))
            }
            Action::Link { from, hash } => {
                let (from, hash) = (from.clone(), *hash);
                self.write_link(planned, &from, hash)
            }
            Action::KeepStale { copy, .. } => {
                let copy = copy.as_ref().clone();
                self.write_stale(planned, &copy)
            }
            Action::Fail { error } => {
                let error = error.clone();
                Ok(WrittenEntry::failed(planned, error))
            }
            Action::Copy => self.write_copy(planned),
        }
    }

    fn record(&self, entry: &ManifestEntry) -> Result<(), CoreError> {
        match guard(&self.manifest).as_mut() {
            Some(m) => m.append(entry),
            None => Ok(()),
        }
    }

    fn commit(&self, info: &SnapshotInfo) -> Result<String, CoreError> {
        let result = (|| {
            let mut dirs = std::mem::take(&mut *guard(&self.dirs));
            dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.depth()));
            // Time first: setting it needs no permission the mode may take.
            for (rel, mode, mtime_ns) in &dirs {
                self.tree
                    .set_dir_attrs(rel.as_path(), *mtime_ns, snapshot_dir_mode(*mode))
                    .map_err(|e| self.dest_err("set the time and mode of", rel, e))?;
            }
            // Held (locked) until the rename below: see `is_being_written`.
            #[cfg_attr(not(windows), allow(unused_mut))]
            let mut owner = match guard(&self.manifest).take() {
                Some(m) => Some(m.finish()?),
                None => None,
            };
            write_info(&self.tmp, info)?;
            // The snapshot's own folder and its record are read-only too.
            for path in [crate::layout::state_dir(&self.tmp), self.tmp.clone()] {
                set_mode(&path, snapshot_dir_mode(0o755))
                    .map_err(|e| CoreError::destination("set mode of", &path, e))?;
            }
            sync_file_system(&self.tmp)
                .map_err(|e| CoreError::destination("sync", &self.tmp, e))?;
            if self.final_path.symlink_metadata().is_ok() {
                return Err(CoreError::destination(
                    "rename a snapshot to",
                    &self.final_path,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a folder of that name appeared during the run",
                    ),
                ));
            }
            // Windows will not rename a folder holding an open file: there the
            // owner file is let go just before (a run that would take the
            // folder for a leftover needs the run lock, which this run holds).
            #[cfg(windows)]
            owner.take();
            backup_sys::rename(&self.tmp, &self.final_path)
                .map_err(|e| CoreError::destination("rename a snapshot to", &self.final_path, e))?;
            sync_dir(&self.destination)
                .map_err(|e| CoreError::destination("sync", &self.destination, e))?;
            drop(owner);
            Ok(self.final_path.display().to_string())
        })();
        if result.is_err() {
            let _ = remove_tree(&self.tmp);
        }
        result
    }

    fn warnings(&self) -> Vec<String> {
        self.links.warnings(&self.destination)
    }

    fn abort(&self) {
        guard(&self.manifest).take();
        if let Err(e) = remove_tree(&self.tmp) {
            warn!(path = %self.tmp.display(), error = %e, "cannot remove the partial snapshot; the next run removes it");
        }
    }
}

/// Whether the file `rel` of `tree` has exactly these permission bits.
fn has_mode(tree: &Tree, rel: &RelPath, mode: u32) -> bool {
    tree.stat(rel.as_path()).is_ok_and(|s| {
        if cfg!(unix) {
            s.mode == mode
        } else {
            (s.mode & 0o200 == 0) == (mode & 0o200 == 0)
        }
    })
}

/// The mode of a folder in a snapshot: read-only like its files (nothing
/// can be added to a snapshot), but always readable and searchable by its
/// owner, so that later runs can link from it and rotation can delete it.
/// The manifest keeps the original mode, which restore gives back.
fn snapshot_dir_mode(mode: u32) -> u32 {
    (mode & 0o1555) | 0o500
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::{EntryKind, EntryStatus, FileStat, ScanEntry};

    fn planned(path: &str, action: Action, previous: Option<LastGood>) -> PlannedEntry {
        let previous = previous.map(Box::new);
        PlannedEntry {
            entry: ScanEntry {
                path: RelPath::new(path).unwrap(),
                kind: EntryKind::File,
                stat: FileStat {
                    size: 3,
                    mtime_ns: 1_000_000_000,
                    mode: 0o644,
                    ..FileStat::default()
                },
                link_target: None,
            },
            change: Change::Modified,
            action,
            prev_index: None,
            previous_version: previous,
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        src: PathBuf,
        dest: PathBuf,
        prev: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dest = dir.path().join("dest");
        let prev = dest.join("P_backup_2026-01-01_00-00");
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&prev).unwrap();
        fs::write(prev.join("a.txt"), b"old").unwrap();
        Fixture {
            _dir: dir,
            src,
            dest,
            prev,
        }
    }

    impl Fixture {
        fn prev_ref(&self) -> SnapshotRef {
            SnapshotRef {
                name: "P_backup_2026-01-01_00-00".into(),
                location: self.prev.display().to_string(),
                created: chrono::Local::now().fixed_offset(),
                info: None,
                adopted: false,
            }
        }
    }

    fn sha(b: &[u8]) -> ContentHash {
        ContentHash::of(b)
    }

    /// The error codes of a refused link, as the OS reports them.
    #[cfg(unix)]
    const TOO_MANY_LINKS: i32 = libc::EMLINK;
    #[cfg(unix)]
    const NO_LINKS: i32 = libc::EOPNOTSUPP;
    #[cfg(windows)]
    const TOO_MANY_LINKS: i32 = 1142; // ERROR_TOO_MANY_LINKS
    #[cfg(windows)]
    const NO_LINKS: i32 = 50; // ERROR_NOT_SUPPORTED

    #[test]
    fn a_file_at_its_link_limit_is_copied_and_said_once_with_the_count() {
        let links = LinkFallbacks::default();
        links.linked.fetch_add(5, Ordering::Relaxed);
        for _ in 0..3 {
            assert!(links.note(&io::Error::from_raw_os_error(TOO_MANY_LINKS)));
        }
        // Another failure is not a refusal: the caller reports it per file.
        assert!(!links.note(&io::Error::from_raw_os_error(2)));
        assert!(!links.none_possible(), "links still work for other files");
        let w = links.warnings(Path::new("D:/Backups"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "3 file(s) had as many hard links as D:/Backups allows (1,023 on NTFS)"
            ),
            "{w:?}"
        );
    }

    #[test]
    fn a_destination_without_links_is_given_up_on_after_16_refusals_and_said_once() {
        let links = LinkFallbacks::default();
        for _ in 0..REFUSALS_BEFORE_GIVING_UP - 1 {
            assert!(links.note(&io::Error::from_raw_os_error(NO_LINKS)));
        }
        assert!(!links.none_possible());
        assert!(links.note(&io::Error::from_raw_os_error(NO_LINKS)));
        assert!(links.none_possible());
        links.skipped();
        let w = links.warnings(Path::new("E:/"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("E:/ refused hard links"), "{w:?}");
        assert!(w[0].contains("17 unchanged file(s) were copied"), "{w:?}");
    }

    #[test]
    fn source_replaced_by_a_folder_keeps_the_previous_copy_marked_stale() {
        let f = fixture();
        fs::create_dir(f.src.join("a.txt")).unwrap();
        let store = LocalStore::new("P", &f.src, &f.dest);
        let w = store
            .begin("P_backup_2026-01-02_00-00", Some(&f.prev_ref()))
            .unwrap();
        let prev = LastGood {
            from: RelPath::new("a.txt").unwrap(),
            hash: sha(b"old"),
            stat: FileStat {
                size: 3,
                mtime_ns: 5,
                mode: 0o600,
                ..FileStat::default()
            },
        };
        let out = w.write(planned("a.txt", Action::Copy, Some(prev))).unwrap();
        assert!(out.failure().is_some());
        assert!(out.linked());
        assert_eq!(out.manifest.status, Some(EntryStatus::Stale));
        assert_eq!(out.manifest.entry.stat.size, 3);
        assert_eq!(
            out.manifest.entry.stat.mode, 0o600,
            "the last good copy's mode"
        );
        assert_eq!(out.manifest.sha256, Some(sha(b"old")));
        w.abort();
    }

    /// Issue 13: a file another program holds open without sharing (an
    /// Office document, a database) is a per-file failure naming it, and
    /// the run goes on; the next run tries it again. Wine honours share
    /// modes between handles, so this runs for real there.
    #[cfg(windows)]
    #[test]
    fn a_file_locked_by_another_program_is_a_per_file_failure() {
        use std::os::windows::fs::OpenOptionsExt;
        let f = fixture();
        fs::write(f.src.join("locked.xlsx"), b"abc").unwrap();
        let _held = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .share_mode(0)
            .open(f.src.join("locked.xlsx"))
            .unwrap();
        let store = LocalStore::new("P", &f.src, &f.dest);
        let w = store.begin("P_backup_2026-01-02_00-00", None).unwrap();
        let out = w.write(planned("locked.xlsx", Action::Copy, None)).unwrap();
        let why = out.failure().unwrap();
        // ERROR_SHARING_VIOLATION.
        assert!(why.contains("(os error 32)"), "{why}");
        assert_eq!(out.manifest.status, Some(EntryStatus::Failed));
        fs::write(f.src.join("free.txt"), b"abc").unwrap();
        let ok = w.write(planned("free.txt", Action::Copy, None)).unwrap();
        assert_eq!(ok.failure(), None, "the run goes on");
        w.abort();
    }

    /// Issue 13: a name Windows reserves for a device is a per-file
    /// failure saying so, and nothing is written under it.
    #[cfg(windows)]
    #[test]
    fn a_reserved_name_is_a_per_file_failure_on_windows() {
        let f = fixture();
        let store = LocalStore::new("P", &f.src, &f.dest);
        let w = store.begin("P_backup_2026-01-02_00-00", None).unwrap();
        for name in ["aux.txt", "sub/CON", "notes."] {
            let out = w.write(planned(name, Action::Copy, None)).unwrap();
            let why = out.failure().unwrap_or_default();
            assert!(why.contains("rename it in the source"), "{name}: {why}");
            assert_eq!(out.manifest.status, Some(EntryStatus::Failed));
        }
        w.abort();
    }

    #[test]
    fn vanished_source_without_earlier_copy_is_recorded_failed() {
        let f = fixture();
        let store = LocalStore::new("P", &f.src, &f.dest);
        let w = store
            .begin("P_backup_2026-01-02_00-00", Some(&f.prev_ref()))
            .unwrap();
        let out = w.write(planned("gone.txt", Action::Copy, None)).unwrap();
        let why = out.failure().unwrap();
        // ENOENT and ERROR_FILE_NOT_FOUND are both 2.
        assert!(why.contains("(os error 2)"), "{why}");
        assert_eq!(out.manifest.status, Some(EntryStatus::Failed));
        assert_eq!(out.manifest.sha256, None);
        w.abort();
        assert_eq!(
            fs::read_dir(&f.dest).unwrap().count(),
            1,
            "partial folder removed"
        );
    }

    // Unix only: Windows will not delete a folder holding an open file (the
    // manifest being written), so a destination cannot vanish this way.
    #[cfg(unix)]
    #[test]
    fn destination_removed_mid_run_is_fatal_with_advice_and_not_recreated() {
        let f = fixture();
        fs::create_dir(f.src.join("sub")).unwrap();
        fs::write(f.src.join("sub/b.txt"), b"new").unwrap();
        let store = LocalStore::new("P", &f.src, &f.dest);
        let w = store
            .begin("P_backup_2026-01-02_00-00", Some(&f.prev_ref()))
            .unwrap();
        crate::fsutil::remove_tree(&f.dest).unwrap();
        let err = w
            .write(planned("sub/b.txt", Action::Copy, None))
            .unwrap_err();
        assert!(err.to_string().contains("vanished"), "{err}");
        assert!(!f.dest.exists(), "the destination must not be recreated");
        w.abort();
    }

    #[test]
    fn commit_makes_the_snapshot_appear_under_its_final_name_only() {
        let f = fixture();
        fs::write(f.src.join("b.txt"), b"new").unwrap();
        let store = LocalStore::new("P", &f.src, &f.dest);
        let name = "P_backup_2026-01-02_00-00";
        let w = store.begin(name, Some(&f.prev_ref())).unwrap();
        assert!(!f.dest.join(name).exists());
        assert!(f.dest.join(partial_name(name)).is_dir());
        let out = w.write(planned("b.txt", Action::Copy, None)).unwrap();
        w.record(&out.manifest).unwrap();
        let linked = w
            .write(planned(
                "a.txt",
                Action::Link {
                    from: RelPath::new("a.txt").unwrap(),
                    hash: sha(b"old"),
                },
                None,
            ))
            .unwrap();
        assert!(linked.linked());
        let info = backup_core::SnapshotInfo {
            format: backup_core::manifest::SNAPSHOT_FORMAT.into(),
            version: 1,
            profile: "P".into(),
            name: name.into(),
            created: "2026-01-02T00:00:00+00:00".into(),
            scan_started_ns: 0,
            source: f.src.display().to_string(),
            counts: backup_core::Counts {
                files_total: 2,
                files_copied: 1,
                files_linked: 1,
                files_failed: 0,
                bytes_copied: 3,
                bytes_total: 6,
            },
            status: backup_core::SnapshotStatus::Complete,
            duration_ms: 1,
            sequence: None,
        };
        let location = w.commit(&info).unwrap();
        let path = f.dest.join(name);
        assert_eq!(location, path.display().to_string());
        assert!(!f.dest.join(partial_name(name)).exists());
        assert_eq!(fs::read(path.join("b.txt")).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let a = fs::metadata(path.join("a.txt")).unwrap();
            assert_eq!(a.ino(), fs::metadata(f.prev.join("a.txt")).unwrap().ino());
            assert_eq!(
                fs::metadata(path.join("b.txt")).unwrap().mode() & 0o222,
                0,
                "read-only"
            );
        }
        assert_eq!(crate::layout::read_info(&path).unwrap(), info);
    }

    #[test]
    fn remove_deletes_a_read_only_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("P_backup_2026-01-01_00-00");
        fs::create_dir_all(snap.join("sub")).unwrap();
        fs::write(snap.join("sub/f"), b"x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(snap.join("sub/f"), fs::Permissions::from_mode(0o444)).unwrap();
            fs::set_permissions(snap.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
        }
        let r = SnapshotRef {
            name: "P_backup_2026-01-01_00-00".into(),
            location: snap.display().to_string(),
            created: chrono::Local::now().fixed_offset(),
            info: None,
            adopted: false,
        };
        LocalStore::new("P", "/src", dir.path()).remove(&r).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
