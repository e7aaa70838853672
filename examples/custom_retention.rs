//! Swapping the rotation stage for a custom retention policy: keep the
//! newest snapshot of each of the last N days and of each of the last M
//! ISO weeks, in the spirit of `restic forget --keep-daily 7 --keep-weekly 4`.
//! (The same rules are available without code as the profile's
//! `[retention]` table; this shows how a library user plugs in their own.)
//!
//! ```sh
//! cargo run -p backup-cli --example custom_retention -- insightminer.toml 7 4
//! ```
//!
//! Prints the run's report as JSON; its `rotate` field lists what was deleted.

use std::collections::HashSet;

use backup_core::{Kept, RetentionPolicy, RotationPlan, SnapshotRef};
use chrono::{Datelike, Local};

/// Keep one snapshot per day for `daily` days and one per week for `weekly` weeks.
struct DailyWeekly {
    daily: usize,
    weekly: usize,
}

impl RetentionPolicy for DailyWeekly {
    fn plan(&self, snapshots: &[SnapshotRef]) -> RotationPlan {
        let mut days = HashSet::new();
        let mut weeks = HashSet::new();
        let mut plan = RotationPlan::default();
        let mut kept: Vec<Kept> = Vec::new();
        // Newest first.
        for s in snapshots.iter().rev() {
            let t = s.created.with_timezone(&Local);
            let mut reasons = Vec::new();
            if days.len() < self.daily && days.insert(t.date_naive()) {
                reasons.push("daily".to_string());
            }
            let week = (t.iso_week().year(), t.iso_week().week());
            if weeks.len() < self.weekly && weeks.insert(week) {
                reasons.push("weekly".to_string());
            }
            if reasons.is_empty() {
                plan.delete.push(s.clone());
            } else {
                kept.push(Kept {
                    name: s.name.clone(),
                    reasons,
                });
            }
        }
        plan.delete.reverse();
        kept.reverse();
        plan.keep = kept;
        plan
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let profile = args.next().unwrap_or_else(|| "insightminer.toml".into());
    let daily: usize = args.next().map_or(Ok(7), |s| s.parse())?;
    let weekly: usize = args.next().map_or(Ok(4), |s| s.parse())?;
    let report = backup_cli::trigger_startup_backup_with(profile, move |_profile, mut stages| {
        stages.retention = Box::new(DailyWeekly { daily, weekly });
        stages
    })
    .join();
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
