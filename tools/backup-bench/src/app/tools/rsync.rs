//! `rsync -a --delete --link-dest=PREV`: a hard-linked copy per backup,
//! each linked against the previous one, with the benchmark's exclusions.

use std::fs;
use std::path::Path;

use anyhow::Result;

use super::{Lab, Plan, Update};
use crate::app::fsutil;
use crate::app::model::Scenario;

/// The exclusions as rsync options.
fn excludes() -> Vec<String> {
    let mut v: Vec<String> = fsutil::EXCLUDED_DIRS
        .iter()
        .map(|d| format!("--exclude={d}/"))
        .collect();
    v.extend(
        fsutil::EXCLUDED_SUFFIXES
            .iter()
            .map(|s| format!("--exclude=*{s}")),
    );
    v
}

/// A copy of the source into `dir`, linked against the previous copy
/// after the initial one; `None` when there is no previous copy.
pub fn prepare(lab: &Lab, sc: Scenario, dir: &Path) -> Result<Option<Plan>> {
    let mut warm = vec![lab.src.clone()];
    fs::create_dir_all(dir)?;
    let mut c = lab.cmd("rsync");
    c.arg("-a").arg("--delete").args(excludes());
    if sc != Scenario::Initial {
        let Some(prev) = lab.rsync_latest.clone() else {
            return Ok(None);
        };
        c.arg(format!("--link-dest={}", prev.display()));
        warm.push(prev);
    }
    c.arg(format!("{}/", lab.src.display()))
        .arg(format!("{}/", dir.display()));
    let mut plan = Plan::new(c, warm);
    plan.update = Update::RsyncLatest(dir.to_path_buf());
    Ok(Some(plan))
}
