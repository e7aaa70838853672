//! `cp -a` (the floor for copying: the initial backup, and restore and
//! verify as a plain copy of backup-cli's latest snapshot) and `cp -al`
//! (the floor for a linked snapshot: a hard-linked copy of backup-cli's
//! previous snapshot, the reference after a mutate).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Lab, Plan};
use crate::app::model::Scenario;

/// backup-cli's latest snapshot (the source before there is one).
fn ours_latest(lab: &Lab) -> PathBuf {
    lab.ours
        .as_ref()
        .and_then(|o| o.latest.clone())
        .unwrap_or_else(|| lab.src.clone())
}

/// `cp -a`: the source into `dir` (initial), or a copy of the very
/// snapshot backup-cli restores (restore, verify).
pub fn prepare_copy(lab: &Lab, sc: Scenario, dir: &Path) -> Result<Option<Plan>> {
    match sc {
        Scenario::Initial => {
            fs::create_dir_all(dir.parent().unwrap_or(&lab.scratch))?;
            let mut c = lab.cmd("cp");
            c.arg("-a").arg(&lab.src).arg(dir);
            Ok(Some(Plan::new(c, vec![lab.src.clone()])))
        }
        Scenario::Restore | Scenario::Verify => {
            let from = ours_latest(lab);
            fs::create_dir_all(dir)?;
            let mut c = lab.cmd("cp");
            c.arg("-a").arg(from.join(".")).arg(dir);
            Ok(Some(Plan::new(c, vec![from])))
        }
        Scenario::NoChange | Scenario::Mutate => Ok(None),
    }
}

/// `cp -al` of backup-cli's latest snapshot into `dir`.
pub fn prepare_linked(lab: &Lab, _sc: Scenario, dir: &Path) -> Result<Option<Plan>> {
    let from = ours_latest(lab);
    fs::create_dir_all(dir.parent().unwrap_or(&lab.scratch))?;
    let mut c = lab.cmd("cp");
    c.arg("-al").arg(&from).arg(dir);
    Ok(Some(Plan::new(c, vec![from])))
}
