//! The destination as the tests read it: which names are finished
//! snapshots, which are leftovers of an interrupted run, and which snapshot
//! is the newest.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::manifest::info;
use crate::trees::listing;
use crate::World;

/// Whether `name` has the form of a final snapshot name of profile "Proj"
/// (`Proj_backup_YYYY-MM-DD_HH-MM`, optionally `-N`).
pub fn is_final_snapshot_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("Proj_backup_") else {
        return false;
    };
    if rest.len() < 16 {
        return false;
    }
    let (stamp, suffix) = rest.split_at(16);
    let b = stamp.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15];
    let shape = digits.iter().all(|&i| b[i].is_ascii_digit())
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'_'
        && b[13] == b'-';
    shape
        && (suffix.is_empty()
            || suffix
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())))
}

/// `.partial` / `.deleting` folders left in `dest`.
pub fn leftovers(dest: &Path) -> Vec<String> {
    listing(dest)
        .into_iter()
        .filter(|n| n.starts_with('.') && (n.ends_with(".partial") || n.ends_with(".deleting")))
        .collect()
}

/// The newest snapshot's path: the greatest `created` of the snapshots'
/// info.json (names alone do not order: `…_10-59-2` was made before
/// `…_11-00`).
pub fn latest(w: &World) -> PathBuf {
    listing(&w.dest)
        .into_iter()
        .filter(|n| is_final_snapshot_name(n))
        .map(|n| w.snapshot(&n))
        .max_by_key(|p| {
            let created = info(p)["created"].as_str().unwrap().to_owned();
            chrono_key(&created)
        })
        .expect("at least one snapshot")
}

/// Sort key of an RFC 3339 time with nanoseconds and a fixed local offset
/// (all snapshots of a test share it): the text itself, fraction padded.
fn chrono_key(rfc3339: &str) -> String {
    // "2026-11-26T17:45:03.123456789+00:00": pad the fraction to 9 digits.
    let (date_time, rest) = rfc3339.split_at(19);
    let (frac, offset) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            (&r[..end], &r[end..])
        }
        None => ("", rest),
    };
    format!("{date_time}.{frac:0<9}{offset}")
}

/// Path of the snapshot a backup report names.
pub fn reported_snapshot(w: &World, report: &Value) -> PathBuf {
    let name = report["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot in report {report:#}"));
    w.snapshot(name)
}
