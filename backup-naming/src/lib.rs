//! # backup-naming
//!
//! The rules every destination shares about its snapshots, so that
//! retention, `list`, `restore NAME` and the once-per-day check read the
//! same on a local disk and in a bucket:
//!
//! - **names**: `<profile>_backup_YYYY-MM-DD_HH-MM`, the original script's
//!   folder names, with a `-2`, `-3`… suffix for another snapshot in the
//!   same minute ([`next_name_among`], [`parse_snapshot_name`]);
//! - **ownership**: a snapshot is this profile's when its own record names
//!   this source ([`same_source`]);
//! - **order**: by the sequence each records, then time, then name
//!   ([`sort_snapshots`], [`next_sequence`]).
//!
//! How a store keeps a snapshot and its temporary forms is the store's own
//! business.

use std::collections::HashSet;
use std::path::Path;

use backup_core::{SnapshotInfo, SnapshotRef};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

/// The common start of every snapshot name of `profile`.
pub fn snapshot_prefix(profile: &str) -> String {
    format!("{profile}_backup_")
}

/// Parses the date of a snapshot name of `profile`, accepting the `-N`
/// suffix; `None` when the name does not have the snapshot form.
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

/// The name of the next snapshot of `profile` made at `now`: the minute's
/// name, or — when that minute already has snapshots (`in_use`: the names
/// a store holds in any form, or listed in the metadata `history`) — a `-N`
/// suffix higher than any used, so a name is never reused, not even after
/// rotation deleted its first holder.
pub fn next_name_among(
    in_use: impl Iterator<Item = String>,
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
        let rest = name.strip_prefix(&base)?;
        if rest.is_empty() {
            return Some(1);
        }
        rest.strip_prefix('-')?.parse().ok()
    };
    let in_use = in_use.filter_map(|n| suffix_of(&n));
    let used = history.iter().filter_map(|n| suffix_of(n));
    match in_use.chain(used).max() {
        None => base,
        Some(n) => format!("{base}-{}", n + 1),
    }
}

/// Whether snapshot info (or an owner record's text) belongs to `source`.
pub fn same_source(recorded: &str, source: &Path) -> bool {
    Path::new(recorded) == source
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

/// Sorts snapshots in creation order, oldest first: by the sequence each
/// records (those without one first), then by creation time, then by name
/// (same minute: by suffix).
pub fn sort_snapshots(snapshots: &mut [SnapshotRef]) {
    snapshots.sort_by(|a, b| {
        (a.sequence(), a.created, name_order(&a.name)).cmp(&(
            b.sequence(),
            b.created,
            name_order(&b.name),
        ))
    });
}

/// The sequence number a new snapshot among `snapshots` records.
pub fn next_sequence(snapshots: &[SnapshotRef]) -> u64 {
    snapshots
        .iter()
        .map(SnapshotRef::sequence)
        .max()
        .unwrap_or(0)
        + 1
}

fn name_order(name: &str) -> (usize, &str) {
    (name.len(), name)
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
    fn next_name_is_never_one_in_use_or_in_the_history() {
        let now = Local::now();
        let none = HashSet::new();
        let a = next_name_among(std::iter::empty(), "P", now, &none);
        let b = next_name_among([a.clone()].into_iter(), "P", now, &none);
        assert_eq!(b, format!("{a}-2"));
        let both = [a.clone(), b.clone()];
        assert_eq!(
            next_name_among(both.clone().into_iter(), "P", now, &none),
            format!("{a}-3")
        );
        // After rotation deleted `a` and `b`, the history still reserves them.
        let history: HashSet<String> = both.into();
        assert_eq!(
            next_name_among(std::iter::empty(), "P", now, &history),
            format!("{a}-3")
        );
    }
}
