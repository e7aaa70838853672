//! [`SnapshotRef`]: one snapshot of a profile, as a store lists it.
//!
//! How snapshots are named, recognised and ordered is `backup-naming`'s;
//! how a store keeps one (a folder, a manifest object) is the store's.

use chrono::{DateTime, FixedOffset};

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

/// How far ahead of this machine's clock a snapshot's time may be before
/// it is called "in the future" (clocks of two hosts writing one
/// destination differ a little).
pub const FUTURE_MARGIN_SECS: i64 = 300;
