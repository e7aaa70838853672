//! Snapshots as every store names them: [`SnapshotRef`] and the name format.
//!
//! A snapshot is called `<profile>_backup_YYYY-MM-DD_HH-MM`, with a `-2`,
//! `-3`… suffix for a second one in the same minute: the original script's
//! folder names, kept for every destination so that retention, `list` and
//! `restore NAME` read the same everywhere. How a store keeps a snapshot
//! (a folder, a manifest object) and its temporary forms are the store's
//! own business.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

use crate::manifest::SnapshotInfo;

/// A snapshot of one profile in a destination.
#[derive(Clone, Debug)]
pub struct SnapshotRef {
    /// Its name.
    pub name: String,
    /// Where it is, for messages and reports (a folder path or a URL).
    pub location: String,
    /// When it was created.
    pub created: DateTime<FixedOffset>,
    /// Its summary; `None` for snapshots made by the original script, which
    /// the metadata history lists but which have no manifest.
    pub info: Option<SnapshotInfo>,
    /// Listed only because the metadata history names it (no record of its
    /// own naming this profile and source: the original script's folders,
    /// or a moved project's): readable, but never deleted by rotation.
    pub adopted: bool,
}

impl SnapshotRef {
    /// Its creation sequence (0 when it records none).
    pub fn sequence(&self) -> u64 {
        self.info.as_ref().and_then(|i| i.sequence).unwrap_or(0)
    }

    /// Whether it claims to have been made after `now` (past a margin):
    /// the clock was wrong when it was made, or is wrong now.
    pub fn is_from_the_future(&self, now: DateTime<FixedOffset>) -> bool {
        self.created > now + chrono::Duration::seconds(FUTURE_MARGIN_SECS)
    }
}

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

/// How far ahead of this machine's clock a snapshot's time may be before
/// it is called "in the future" (clocks of two hosts writing one
/// destination differ a little).
pub const FUTURE_MARGIN_SECS: i64 = 300;

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
