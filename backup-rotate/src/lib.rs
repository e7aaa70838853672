//! # backup-rotate
//!
//! Stage 4 of the backup pipeline: retention. A policy first computes a
//! [`RotationPlan`] (what to keep and why, what to delete) over one
//! profile's snapshots; only then does the store delete. The runner never
//! hands a policy folders it did not create, and never deletes the newest
//! snapshot.
//!
//! Central types: [`KeepRules`] (keep last N, plus daily/weekly/monthly,
//! in the spirit of `restic forget --keep-daily 7 --keep-weekly 4`).
//!
//! ```
//! use backup_rotate::KeepRules;
//! let rules = KeepRules::last(10);
//! assert_eq!(rules.keep_last, Some(10));
//! ```

use std::collections::HashSet;

use backup_core::{Kept, RetentionPolicy, RotationPlan, SnapshotRef};
use chrono::{Datelike, Local};

/// Which snapshots to keep. A snapshot is kept when any rule keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepRules {
    /// Keep the newest N.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    pub keep_monthly: Option<u32>,
}

impl KeepRules {
    /// Keep the newest `n` (the profile's `max_backups`).
    pub fn last(n: u32) -> Self {
        KeepRules {
            keep_last: Some(n),
            ..KeepRules::default()
        }
    }
}

impl RetentionPolicy for KeepRules {
    fn plan(&self, snapshots: &[SnapshotRef]) -> RotationPlan {
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); snapshots.len()];
        // Newest first.
        let order: Vec<usize> = (0..snapshots.len()).rev().collect();
        if let Some(n) = self.keep_last {
            for &i in order.iter().take(n as usize) {
                reasons[i].push(format!("last {n}"));
            }
        }
        let mut bucket_rule =
            |n: Option<u32>, label: &str, key: &dyn Fn(&SnapshotRef) -> (i32, u32)| {
                let Some(n) = n else { return };
                let mut seen = HashSet::new();
                for &i in &order {
                    if seen.len() >= n as usize {
                        break;
                    }
                    if seen.insert(key(&snapshots[i])) {
                        reasons[i].push(label.to_owned());
                    }
                }
            };
        let local = |s: &SnapshotRef| s.created.with_timezone(&Local);
        bucket_rule(self.keep_daily, "daily", &|s| {
            (local(s).year(), local(s).ordinal())
        });
        bucket_rule(self.keep_weekly, "weekly", &|s| {
            let w = local(s).iso_week();
            (w.year(), w.week())
        });
        bucket_rule(self.keep_monthly, "monthly", &|s| {
            (local(s).year(), local(s).month())
        });
        let mut plan = RotationPlan::default();
        for (s, why) in snapshots.iter().zip(reasons) {
            if why.is_empty() {
                plan.delete.push(s.clone());
            } else {
                plan.keep.push(Kept {
                    name: s.name.clone(),
                    reasons: why,
                });
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn snaps(days_ago: &[i64]) -> Vec<SnapshotRef> {
        let base = Local.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap();
        let mut v: Vec<SnapshotRef> = days_ago
            .iter()
            .enumerate()
            .map(|(i, d)| SnapshotRef {
                name: format!("s{i}"),
                location: format!("/nowhere/s{i}"),
                created: (base - Duration::days(*d)).fixed_offset(),
                info: None,
                adopted: false,
            })
            .collect();
        v.sort_by_key(|s| s.created);
        v
    }

    fn names(v: &[SnapshotRef]) -> Vec<String> {
        v.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn keep_last_deletes_the_oldest() {
        let s = snaps(&[5, 4, 3, 2, 1, 0]);
        let plan = KeepRules::last(3).plan(&s);
        assert_eq!(names(&plan.delete), ["s0", "s1", "s2"]);
        assert_eq!(plan.keep.len(), 3);
        assert_eq!(plan.keep[0].reasons, ["last 3"]);
    }

    #[test]
    fn daily_and_weekly_keep_one_per_bucket() {
        // Two snapshots a day for 20 days.
        let days: Vec<i64> = (0..20).flat_map(|d| [d, d]).collect();
        let s = snaps(&days);
        let rules = KeepRules {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            ..KeepRules::default()
        };
        let plan = rules.plan(&s);
        // 7 daily + up to 3 more weekly ones from older weeks.
        assert!(
            plan.keep.len() >= 7 && plan.keep.len() <= 11,
            "{:?}",
            plan.keep
        );
        assert!(plan
            .keep
            .iter()
            .any(|k| k.reasons.contains(&"weekly".to_string())));
        assert_eq!(plan.keep.len() + plan.delete.len(), 40);
    }
}
