//! The local destination's layout, in one place: which folder is whose
//! snapshot, what is inside one besides the copied tree, and the temporary
//! forms a snapshot takes while it is written or deleted.
//!
//! ```text
//! <destination>/
//!   <profile>_backup_YYYY-MM-DD_HH-MM[-N]/    a snapshot: the source tree, read-only files
//!     .backup-snapshot/info.json              its SnapshotInfo (written at commit)
//!     .backup-snapshot/manifest.jsonl         one ManifestEntry per line
//!     .backup-snapshot/owner                  the source it backs up (written first)
//!   .<name>.partial/                          being written; renamed to <name> at commit
//!   .<name>.deleting/                         being deleted by rotation
//! ```
//!
//! A folder counts as this profile's snapshot only when its own info names
//! the profile and the source, or — having no info at all, like the
//! original script's folders — the metadata history lists it: a folder
//! merely named like a snapshot, or recorded as another project's, is left
//! alone. Nothing outside this module knows these names.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use backup_core::manifest::{parse_manifest, write_entry, ManifestLines};
use backup_core::{CoreError, ManifestEntry, SnapshotInfo, SnapshotRef};
use backup_naming::{parse_snapshot_name, same_source, snapshot_created, sort_snapshots};
use backup_sys::{open_regular, read_regular};

use crate::fsutil::remove_tree;

/// Name of the hidden folder inside each snapshot that holds its manifest.
/// The scan leaves a folder of this name at the root of a source alone (a
/// restored snapshot backed up again must not record its old manifest).
pub const STATE_DIR: &str = ".backup-snapshot";
const INFO_FILE: &str = "info.json";
const MANIFEST_FILE: &str = "manifest.jsonl";
/// Names the source a snapshot backs up; written when the snapshot is
/// started, so even an unfinished one can be told apart from another
/// project's of the same name.
const OWNER_FILE: &str = "owner";
const PARTIAL_SUFFIX: &str = ".partial";
const DELETING_SUFFIX: &str = ".deleting";

/// The temporary name a snapshot is written under.
pub(crate) fn partial_name(final_name: &str) -> String {
    format!(".{final_name}{PARTIAL_SUFFIX}")
}

/// The name a snapshot is renamed to before it is deleted.
pub(crate) fn deleting_name(final_name: &str) -> String {
    format!(".{final_name}{DELETING_SUFFIX}")
}

/// The snapshot a temporary folder name stands for (`.<name>.partial` or
/// `.<name>.deleting`), if it is one.
fn temporary_of(folder: &str) -> Option<&str> {
    let inner = folder.strip_prefix('.')?;
    inner
        .strip_suffix(PARTIAL_SUFFIX)
        .or_else(|| inner.strip_suffix(DELETING_SUFFIX))
}

pub(crate) fn state_dir(snapshot_dir: &Path) -> PathBuf {
    snapshot_dir.join(STATE_DIR)
}

/// Path of a snapshot folder's manifest.
pub(crate) fn manifest_path(snapshot_dir: &Path) -> PathBuf {
    state_dir(snapshot_dir).join(MANIFEST_FILE)
}

/// The largest `info.json` (or `owner`) a snapshot folder can hold: a few
/// hundred bytes in practice; anything past this is not the tool's.
const MAX_INFO_BYTES: u64 = 1 << 20;

/// Reads a snapshot folder's [`SnapshotInfo`].
pub(crate) fn read_info(snapshot_dir: &Path) -> Result<SnapshotInfo, CoreError> {
    let path = state_dir(snapshot_dir).join(INFO_FILE);
    let bytes = read_regular(&path, MAX_INFO_BYTES)
        .map_err(|e| CoreError::io("read snapshot info", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| CoreError::corrupt(&path, None, e))
}

/// Streams the entries of a snapshot folder's manifest; the iterator's
/// size hint is estimated from the file's size (a line is rarely under 120
/// bytes), so the reader can reserve once.
pub(crate) fn read_manifest(
    snapshot_dir: &Path,
) -> Result<ManifestLines<BufReader<File>>, CoreError> {
    let path = manifest_path(snapshot_dir);
    let (file, meta) = open_regular(&path).map_err(|e| CoreError::io("open manifest", &path, e))?;
    // From the bytes actually stored: a sparse file claims a size it has
    // no lines for.
    #[cfg(unix)]
    let stored = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
    #[cfg(not(unix))]
    let stored = meta.len();
    let expected = usize::try_from(stored.min(meta.len()) / 120).unwrap_or(0);
    Ok(parse_manifest(BufReader::with_capacity(1 << 16, file), path).expecting(expected))
}

/// Writes the manifest of a snapshot folder being written (it becomes
/// visible only when the snapshot is committed).
pub(crate) struct ManifestWriter {
    out: BufWriter<File>,
    path: PathBuf,
    owner: File,
}

impl ManifestWriter {
    /// Creates the state folder of a snapshot being written, records its
    /// owner (`source`) and opens the manifest.
    pub(crate) fn create(snapshot_dir: &Path, source: &Path) -> Result<Self, CoreError> {
        let dir = state_dir(snapshot_dir);
        fs::create_dir_all(&dir).map_err(|e| CoreError::destination("create", &dir, e))?;
        let owner = dir.join(OWNER_FILE);
        let mut owner_file =
            File::create(&owner).map_err(|e| CoreError::destination("create", &owner, e))?;
        owner_file
            .write_all(source.display().to_string().as_bytes())
            .map_err(|e| CoreError::destination("write", &owner, e))?;
        // Held for as long as this run writes the snapshot: another run
        // never takes it for a leftover, even when the run lock file was
        // deleted under us.
        // (Best effort: a file system without locks still backs up.)
        if let Err(e) = backup_sys::lock::try_lock(&owner_file, true) {
            tracing::debug!(path = %owner.display(), error = %e, "cannot lock the snapshot's owner file");
        }
        let path = dir.join(MANIFEST_FILE);
        let file = File::create(&path).map_err(|e| CoreError::destination("create", &path, e))?;
        Ok(ManifestWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path,
            owner: owner_file,
        })
    }

    /// Appends one entry.
    pub(crate) fn append(&mut self, entry: &ManifestEntry) -> Result<(), CoreError> {
        write_entry(&mut self.out, entry)
            .map_err(|e| CoreError::destination("write", &self.path, e))
    }

    /// Flushes and syncs the manifest; returns the locked owner file, for
    /// the writer to hold until the snapshot has its final name.
    pub(crate) fn finish(self) -> Result<File, CoreError> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| CoreError::destination("write", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| CoreError::destination("sync", &path, e))?;
        Ok(self.owner)
    }
}

/// Writes a snapshot's [`SnapshotInfo`] inside the folder being written
/// (flushed; the folder's rename at commit makes it visible).
pub(crate) fn write_info(snapshot_dir: &Path, info: &SnapshotInfo) -> Result<(), CoreError> {
    let path = state_dir(snapshot_dir).join(INFO_FILE);
    let bytes = serde_json::to_vec_pretty(info)
        .map_err(|e| CoreError::destination("encode", &path, e.into()))?;
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&path)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        // Its directory entry too (where the file system sync at commit
        // does not cover it).
        backup_sys::sync_dir(&state_dir(snapshot_dir))
    };
    write().map_err(|e| CoreError::destination("write", &path, e))
}

/// Whether `name` is a snapshot folder's name of any profile
/// (`<profile>_backup_YYYY-MM-DD_HH-MM[-N]`), or one's temporary form.
fn is_snapshot_like(name: &str) -> bool {
    let name = temporary_of(name).unwrap_or(name);
    name.rfind("_backup_")
        .is_some_and(|i| parse_snapshot_name(&name[..i], name).is_some())
}

/// Names operating systems put into any folder or drive on their own.
const HOUSEKEEPING: &[&str] = &[
    ".DS_Store",
    ".Spotlight-V100",
    ".Trashes",
    ".fseventsd",
    "Thumbs.db",
    "desktop.ini",
    "$RECYCLE.BIN",
    "System Volume Information",
    "lost+found",
];

/// Whether `name` (at `path`) is a temporary or kept-aside form of one of
/// the tool's state files `own`: `.<file>.tmp-*`, `.<file>.records-*`,
/// `<file>.unrecognised-*`, `<file>.1` (the rotated log).
fn is_state_sibling(name: &str, path: &Path, own: &[PathBuf]) -> bool {
    own.iter()
        .filter(|p| p.parent() == path.parent())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
        .any(|f| {
            name.starts_with(&format!(".{f}.tmp-"))
                || name.starts_with(&format!(".{f}.records-"))
                || name.starts_with(&format!("{f}.unrecognised-"))
                || name == format!("{f}.1")
        })
}

/// Up to `limit` names in `destination` that are not snapshot folders (of
/// any profile), their temporary forms, or one of the tool's own state
/// files (`own`, full paths): what a destination inside the source would
/// silently keep out of every snapshot. Empty when the folder does not
/// exist.
pub fn foreign_entries(
    destination: &Path,
    own: &[PathBuf],
    limit: usize,
) -> std::io::Result<Vec<String>> {
    let read = match fs::read_dir(destination) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if own.contains(&entry.path())
            || HOUSEKEEPING.contains(&name.as_str())
            || is_state_sibling(&name, &entry.path(), own)
        {
            continue;
        }
        if !(is_dir && is_snapshot_like(&name)) {
            out.push(name);
            if out.len() >= limit {
                break;
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every snapshot name the destination holds in any form (final, being
/// written, being deleted): none of them may be given to a new snapshot.
pub(crate) fn names_in_use(destination: &Path) -> impl Iterator<Item = String> {
    fs::read_dir(destination)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            Some(temporary_of(&name).map_or(name.clone(), str::to_owned))
        })
}

/// Lists the snapshots of `profile` backing up `source` in `destination`,
/// oldest first. Two projects with the same profile name sharing a
/// destination never see (or rotate) each other's snapshots. `history`
/// holds folder names the metadata history lists (those count as this
/// profile's even without a manifest, e.g. the original script's).
pub(crate) fn list_snapshots(
    destination: &Path,
    profile: &str,
    source: &Path,
    history: &HashSet<String>,
) -> Result<Vec<SnapshotRef>, CoreError> {
    let read = match fs::read_dir(destination) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io("list", destination, e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| CoreError::io("list", destination, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(stamp) = parse_snapshot_name(profile, &name) else {
            continue;
        };
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        // A folder is this profile's when its own record names this profile
        // and this source. The metadata history adopts (for reading, never
        // for rotation) a folder without a record (the original script's),
        // or one whose recorded source is gone (the project was moved); a
        // folder whose recorded source still exists is that project's
        // (this one is a copy of it), whatever the history says.
        let (info, adopted) = match read_info(&path) {
            Ok(i) if i.profile == profile && same_source(&i.source, source) => (Some(i), false),
            Ok(i)
                if history.contains(&name)
                    && i.profile == profile
                    && !Path::new(&i.source).exists() =>
            {
                (Some(i), true)
            }
            Ok(_) => continue,
            Err(_) if history.contains(&name) => (None, true),
            Err(_) => continue,
        };
        let created = snapshot_created(info.as_ref(), stamp);
        out.push(SnapshotRef {
            name,
            location: path.display().to_string(),
            created,
            info,
            adopted,
        });
    }
    sort_snapshots(&mut out);
    Ok(out)
}

/// Removes what killed runs of `profile` (backing up `source`) left:
/// `.partial` and `.deleting` folders. Call only while holding the run
/// lock. Returns what was removed.
pub(crate) fn remove_leftovers(
    destination: &Path,
    profile: &str,
    source: &Path,
) -> Result<Vec<String>, CoreError> {
    let read = match fs::read_dir(destination) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io("list", destination, e)),
    };
    let mut removed = Vec::new();
    for entry in read.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let ours = temporary_of(&name).is_some_and(|b| parse_snapshot_name(profile, b).is_some());
        if !ours {
            continue;
        }
        let path = entry.path();
        let owner = read_regular(&state_dir(&path).join(OWNER_FILE), MAX_INFO_BYTES)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .or_else(|| read_info(&path).ok().map(|i| i.source));
        if owner.is_some_and(|o| !same_source(&o, source)) {
            // Another project's run (same profile name) is writing it.
            continue;
        }
        if is_being_written(&path) {
            // A live run of this project holds it (its run lock file was
            // deleted, so two runs overlap): never remove its work.
            tracing::warn!(path = %path.display(), "another run is still writing this snapshot; left alone");
            continue;
        }
        remove_tree(&path).map_err(|e| CoreError::io("remove leftover", &path, e))?;
        removed.push(path.display().to_string());
    }
    Ok(removed)
}

/// Whether a live run holds the owner file of the snapshot folder at
/// `path` locked (see [`ManifestWriter::create`]).
fn is_being_written(path: &Path) -> bool {
    let Ok((file, _)) = open_regular(&state_dir(path).join(OWNER_FILE)) else {
        return false;
    };
    backup_sys::lock::is_held_elsewhere(&file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_naming::next_name_among;
    use chrono::Local;

    #[test]
    fn next_name_never_reuses_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let now = Local::now();
        let none = HashSet::new();
        let next = || next_name_among(names_in_use(dir.path()), "P", now, &none);
        let a = next();
        fs::create_dir(dir.path().join(&a)).unwrap();
        let b = next();
        assert_eq!(b, format!("{a}-2"));
        fs::create_dir(dir.path().join(partial_name(&b))).unwrap();
        assert_eq!(next(), format!("{a}-3"));
        fs::create_dir(dir.path().join(deleting_name(&format!("{a}-3")))).unwrap();
        assert_eq!(next(), format!("{a}-4"));
    }

    #[test]
    fn foreign_folders_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("P_backup_2026-01-02_03-04")).unwrap();
        fs::create_dir(dir.path().join("unrelated")).unwrap();
        let src = Path::new("/src");
        assert!(list_snapshots(dir.path(), "P", src, &HashSet::new())
            .unwrap()
            .is_empty());
        let hist: HashSet<String> = ["P_backup_2026-01-02_03-04".to_string()].into();
        assert_eq!(
            list_snapshots(dir.path(), "P", src, &hist).unwrap().len(),
            1
        );
    }

    #[test]
    fn another_projects_folder_is_not_adopted_by_the_history() {
        let dir = tempfile::tempdir().unwrap();
        // The other project's source exists (this one is a copy of it).
        let other_src = tempfile::tempdir().unwrap();
        let other = other_src.path().to_str().unwrap().to_string();
        let name = "P_backup_2026-01-02_03-04";
        let folder = dir.path().join(name);
        ManifestWriter::create(&folder, Path::new(&other))
            .unwrap()
            .finish()
            .unwrap();
        let info = SnapshotInfo {
            format: backup_core::manifest::SNAPSHOT_FORMAT.into(),
            version: 1,
            profile: "P".into(),
            name: name.into(),
            created: "2026-01-02T03:04:00+00:00".into(),
            scan_started_ns: 0,
            source: other.clone(),
            counts: backup_core::Counts::default(),
            status: backup_core::SnapshotStatus::Complete,
            duration_ms: 0,
            sequence: None,
        };
        write_info(&folder, &info).unwrap();
        let hist: HashSet<String> = [name.to_string()].into();
        let src = Path::new("/src");
        assert!(list_snapshots(dir.path(), "P", src, &hist)
            .unwrap()
            .is_empty());
        let listed = list_snapshots(dir.path(), "P", Path::new(&other), &hist).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].adopted);
        // Once the other source is gone (the project was moved), the
        // history adopts the folder: listed, but never to be rotated.
        drop(other_src);
        let adopted = list_snapshots(dir.path(), "P", src, &hist).unwrap();
        assert_eq!(adopted.len(), 1);
        assert!(adopted[0].adopted);
    }

    #[test]
    fn manifest_round_trip_through_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(dir.path(), Path::new("/src")).unwrap();
        let e = ManifestEntry {
            entry: backup_core::ScanEntry {
                path: backup_core::RelPath::new("a").unwrap(),
                kind: backup_core::EntryKind::File,
                stat: backup_core::FileStat {
                    size: 3,
                    mtime_ns: 5,
                    ctime_ns: 6,
                    ino: 7,
                    mode: 0o644,
                },
                link_target: None,
            },
            sha256: Some(backup_core::ContentHash([1; 32])),
            rehash: false,
            status: None,
            error: None,
        };
        w.append(&e).unwrap();
        w.finish().unwrap();
        let back: Vec<_> = read_manifest(dir.path())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![e]);
        let err = read_info(dir.path()).unwrap_err().to_string();
        assert!(err.contains("info.json"), "{err}");
    }
}
