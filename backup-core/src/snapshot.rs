//! Snapshot folders in a local destination: names, ownership and listing.
//!
//! A snapshot is `<destination>/<profile>_backup_YYYY-MM-DD_HH-MM` (with a
//! `-2`, `-3`… suffix for a second one in the same minute). While it is
//! written it is named `.<final name>.partial`; a snapshot being deleted is
//! first renamed to `.<final name>.deleting`. Neither is ever listed.
//!
//! A folder counts as this profile's snapshot only when its own
//! [`SnapshotInfo`] names the profile, or the metadata history lists it:
//! a folder merely named like a snapshot is left alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

use crate::error::CoreError;
use crate::manifest::{read_info, SnapshotInfo};

/// Suffix of a snapshot folder being written.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of a snapshot folder being deleted.
pub const DELETING_SUFFIX: &str = ".deleting";

/// A snapshot of one profile in a destination.
#[derive(Clone, Debug)]
pub struct SnapshotRef {
    /// Folder name.
    pub name: String,
    /// Full path of the folder.
    pub path: PathBuf,
    /// When it was created.
    pub created: DateTime<FixedOffset>,
    /// Its summary; `None` for snapshots made by the original script, which
    /// the metadata history lists but which have no manifest.
    pub info: Option<SnapshotInfo>,
}

/// The common start of every snapshot name of `profile`.
pub fn snapshot_prefix(profile: &str) -> String {
    format!("{profile}_backup_")
}

/// Parses the date of a snapshot folder name of `profile`, accepting the
/// `-N` suffix; `None` when the name does not have the snapshot form.
pub fn parse_snapshot_name(profile: &str, name: &str) -> Option<NaiveDateTime> {
    let rest = name.strip_prefix(&snapshot_prefix(profile))?;
    let (stamp, suffix) = match rest.get(16..) {
        Some(s) => (rest.get(..16)?, s),
        None => return None,
    };
    if !suffix.is_empty() {
        let n = suffix.strip_prefix('-')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d_%H-%M").ok()
}

/// The name of the next snapshot: the minute's name, or — when that minute
/// already has snapshots (existing, being written or deleted, or listed in
/// the metadata `history`) — a `-N` suffix higher than any used, so a name
/// is never reused, not even after rotation deleted its first holder.
pub fn next_snapshot_name(
    destination: &Path,
    profile: &str,
    now: DateTime<Local>,
    history: &HashSet<String>,
) -> String {
    let on_disk = std::fs::read_dir(destination)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned));
    next_name_among(on_disk, profile, now, history)
}

/// [`next_snapshot_name`] for any store: `existing` are the names in use
/// there (temporary and deleting forms count too).
pub fn next_name_among(
    existing: impl Iterator<Item = String>,
    profile: &str,
    now: DateTime<Local>,
    history: &HashSet<String>,
) -> String {
    let base = format!(
        "{}{}",
        snapshot_prefix(profile),
        now.format("%Y-%m-%d_%H-%M")
    );
    let suffix_of = |name: &str| -> Option<u32> {
        let name = name.strip_prefix('.').unwrap_or(name);
        let name = name
            .strip_suffix(PARTIAL_SUFFIX)
            .or_else(|| name.strip_suffix(DELETING_SUFFIX))
            .unwrap_or(name);
        let rest = name.strip_prefix(&base)?;
        if rest.is_empty() {
            return Some(1);
        }
        rest.strip_prefix('-')?.parse().ok()
    };
    let in_use = existing.filter_map(|n| suffix_of(&n));
    let used = history.iter().filter_map(|n| suffix_of(n));
    match in_use.chain(used).max() {
        None => base,
        Some(n) => format!("{base}-{}", n + 1),
    }
}

/// The temporary name a snapshot is written under.
pub fn partial_name(final_name: &str) -> String {
    format!(".{final_name}{PARTIAL_SUFFIX}")
}

/// The name a snapshot is renamed to before it is deleted.
pub fn deleting_name(final_name: &str) -> String {
    format!(".{final_name}{DELETING_SUFFIX}")
}

/// File inside a snapshot's state folder that names the source it backs
/// up, written when the snapshot is started (so even an unfinished one can
/// be told apart from another project's of the same name).
pub const OWNER_FILE: &str = "owner";

/// Whether snapshot info (or an owner file's text) belongs to `source`
/// (any source when `None`).
pub fn same_source(recorded: &str, source: Option<&Path>) -> bool {
    source.is_none_or(|s| Path::new(recorded) == s)
}

/// Lists the snapshots of `profile` backing up `source` in `destination`,
/// oldest first. Two projects with the same profile name sharing a
/// destination never see (or rotate) each other's snapshots. `history`
/// holds folder names the metadata history lists (those count as this
/// profile's even without a manifest, e.g. the original script's).
pub fn list_snapshots(
    destination: &Path,
    profile: &str,
    source: Option<&Path>,
    history: &HashSet<String>,
) -> Result<Vec<SnapshotRef>, CoreError> {
    let read = match std::fs::read_dir(destination) {
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
        let info = read_info(&path)
            .ok()
            .filter(|i| i.profile == profile && same_source(&i.source, source));
        if info.is_none() && !history.contains(&name) {
            continue;
        }
        let created = snapshot_created(info.as_ref(), stamp);
        out.push(SnapshotRef {
            name,
            path,
            created,
            info,
        });
    }
    sort_snapshots(&mut out);
    Ok(out)
}

/// When a snapshot was made: from its info, else from its name's stamp.
pub fn snapshot_created(
    info: Option<&SnapshotInfo>,
    stamp: NaiveDateTime,
) -> DateTime<FixedOffset> {
    info.and_then(|i| DateTime::parse_from_rfc3339(&i.created).ok())
        .or_else(|| {
            Local
                .from_local_datetime(&stamp)
                .earliest()
                .map(|d| d.fixed_offset())
        })
        .unwrap_or_else(|| Local::now().fixed_offset())
}

/// Sorts snapshots oldest first (same minute: by suffix).
pub fn sort_snapshots(snapshots: &mut [SnapshotRef]) {
    snapshots
        .sort_by(|a, b| (a.created, name_order(&a.name)).cmp(&(b.created, name_order(&b.name))));
}

fn name_order(name: &str) -> (usize, &str) {
    (name.len(), name)
}

/// Picks a snapshot by `spec`: `latest`, an exact folder name, or a unique
/// prefix of one.
pub fn resolve_snapshot<'a>(
    snapshots: &'a [SnapshotRef],
    spec: &str,
) -> Result<&'a SnapshotRef, CoreError> {
    if snapshots.is_empty() {
        return Err(CoreError::NotFound(
            "there are no snapshots of this profile in the destination yet; run a backup first"
                .into(),
        ));
    }
    if spec == "latest" {
        return snapshots
            .last()
            .ok_or_else(|| CoreError::NotFound("no snapshots".into()));
    }
    if let Some(s) = snapshots.iter().find(|s| s.name == spec) {
        return Ok(s);
    }
    let matches: Vec<&SnapshotRef> = snapshots
        .iter()
        .filter(|s| s.name.starts_with(spec))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(CoreError::NotFound(format!(
            "no snapshot is named {spec:?} or starts with it; `backup-cli list` shows the names"
        ))),
        many => Err(CoreError::NotFound(format!(
            "{spec:?} matches {} snapshots ({}); give more of the name",
            many.len(),
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Removes what killed runs of `profile` (backing up `source`) left:
/// `.partial` and `.deleting` folders. Call only while holding the run
/// lock. Returns what was removed.
pub fn remove_leftovers(
    destination: &Path,
    profile: &str,
    source: &Path,
) -> Result<Vec<String>, CoreError> {
    let read = match std::fs::read_dir(destination) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io("list", destination, e)),
    };
    let mut removed = Vec::new();
    for entry in read.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(inner) = name.strip_prefix('.') else {
            continue;
        };
        let base = inner
            .strip_suffix(PARTIAL_SUFFIX)
            .or_else(|| inner.strip_suffix(DELETING_SUFFIX));
        if base.is_some_and(|b| parse_snapshot_name(profile, b).is_some()) {
            let path = entry.path();
            let state = crate::manifest::state_dir(&path);
            let owner = std::fs::read_to_string(state.join(OWNER_FILE))
                .ok()
                .or_else(|| read_info(&path).ok().map(|i| i.source));
            if owner.is_some_and(|o| !same_source(&o, Some(source))) {
                // Another project's run (same profile name) is writing it.
                continue;
            }
            crate::fsutil::remove_tree(&path)
                .map_err(|e| CoreError::io("remove leftover", &path, e))?;
            removed.push(path.display().to_string());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_and_without_suffix() {
        assert!(parse_snapshot_name("P", "P_backup_2026-01-02_03-04").is_some());
        assert!(parse_snapshot_name("P", "P_backup_2026-01-02_03-04-3").is_some());
        assert!(parse_snapshot_name("P", "P_backup_2026-01-02_03-04x").is_none());
        assert!(parse_snapshot_name("P", "Q_backup_2026-01-02_03-04").is_none());
        assert!(parse_snapshot_name("P", "P_backup_2026-13-02_03-04").is_none());
    }

    #[test]
    fn next_name_never_reuses_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let now = Local::now();
        let none = HashSet::new();
        let a = next_snapshot_name(dir.path(), "P", now, &none);
        std::fs::create_dir(dir.path().join(&a)).unwrap();
        let b = next_snapshot_name(dir.path(), "P", now, &none);
        assert_eq!(b, format!("{a}-2"));
        std::fs::create_dir(dir.path().join(partial_name(&b))).unwrap();
        assert_eq!(
            next_snapshot_name(dir.path(), "P", now, &none),
            format!("{a}-3")
        );
        // After rotation deleted `a` and `b`, the history still reserves them.
        std::fs::remove_dir(dir.path().join(&a)).unwrap();
        std::fs::remove_dir(dir.path().join(partial_name(&b))).unwrap();
        let history: HashSet<String> = [a.clone(), b.clone()].into();
        assert_eq!(
            next_snapshot_name(dir.path(), "P", now, &history),
            format!("{a}-3")
        );
        // Without any trace the minute's name is free again.
        assert_eq!(next_snapshot_name(dir.path(), "P", now, &none), a);
    }

    #[test]
    fn foreign_folders_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("P_backup_2026-01-02_03-04")).unwrap();
        std::fs::create_dir(dir.path().join("unrelated")).unwrap();
        assert!(list_snapshots(dir.path(), "P", None, &HashSet::new())
            .unwrap()
            .is_empty());
        let hist: HashSet<String> = ["P_backup_2026-01-02_03-04".to_string()].into();
        assert_eq!(
            list_snapshots(dir.path(), "P", None, &hist).unwrap().len(),
            1
        );
    }
}
