//! [`repair`]: after `verify`, copies each damaged or missing file of the
//! snapshots again from the source, where the source still holds exactly
//! the content the manifest records. What cannot be repaired stays
//! reported, with why.

use std::collections::{HashMap, HashSet};

use backup_core::{CoreError, Repair, SnapshotPath, SnapshotRef, SnapshotStore, VerifyReport};
use serde::Serialize;

/// A file that could not be repaired, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotRepaired {
    /// The snapshot's name.
    pub snapshot: String,
    /// Path relative to the snapshot.
    pub path: String,
    /// Why not (the source changed since, cannot be read, …).
    pub reason: String,
}

/// What [`repair`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// Files copied again; they match their manifests now.
    pub repaired: Vec<SnapshotPath>,
    /// Files left as they were.
    pub not_repaired: Vec<NotRepaired>,
}

/// Repairs what `found` (a verify of `snapshots`) reports corrupt or
/// missing, one snapshot at a time, through the store. An `Err` is a
/// destination failure; the report then is lost but every file repaired
/// so far is good.
pub fn repair(
    store: &dyn SnapshotStore,
    snapshots: &[SnapshotRef],
    found: &VerifyReport,
) -> Result<RepairReport, CoreError> {
    let mut wanted: HashMap<&str, HashSet<&str>> = HashMap::new();
    for p in found.corrupt.iter().chain(&found.missing) {
        wanted
            .entry(p.snapshot.as_str())
            .or_default()
            .insert(p.path.as_str());
    }
    let mut report = RepairReport::default();
    for snap in snapshots {
        let Some(paths) = wanted.get(snap.name.as_str()) else {
            continue;
        };
        let mut seen = HashSet::new();
        for entry in store.read_manifest(snap)? {
            let entry = entry?;
            let path = entry.entry.path.to_string();
            if !paths.contains(path.as_str()) {
                continue;
            }
            seen.insert(path.clone());
            let at = SnapshotPath {
                snapshot: snap.name.clone(),
                path,
            };
            match store.repair(snap, &entry)? {
                Repair::Repaired => {
                    tracing::info!(snapshot = %at.snapshot, path = %at.path, "repaired from the source");
                    report.repaired.push(at);
                }
                Repair::NotRepaired(reason) => report.not_repaired.push(NotRepaired {
                    snapshot: at.snapshot,
                    path: at.path,
                    reason,
                }),
            }
        }
        for p in paths.iter().filter(|p| !seen.contains(**p)) {
            report.not_repaired.push(NotRepaired {
                snapshot: snap.name.clone(),
                path: (*p).to_owned(),
                reason: "not in the snapshot's manifest".into(),
            });
        }
    }
    report
        .not_repaired
        .sort_by(|a, b| (&a.snapshot, &a.path).cmp(&(&b.snapshot, &b.path)));
    Ok(report)
}
