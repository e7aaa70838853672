//! Picking snapshots: by what a user types (`latest`, a full name, or a
//! unique prefix of one), and the one that makes a backup not due today.

use backup_core::{CoreError, SnapshotRef};
use chrono::Local;

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

/// The newest snapshot made today (by this machine's date), not counting
/// one dated in the future: a wrong clock once must not stop real runs.
pub fn made_today(
    snapshots: &[SnapshotRef],
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Option<&SnapshotRef> {
    let today = now.with_timezone(&Local).date_naive();
    snapshots.iter().rev().find(|s| {
        !s.is_from_the_future(now) && s.created.with_timezone(&Local).date_naive() == today
    })
}
