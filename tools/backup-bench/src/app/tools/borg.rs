//! BorgBackup (`--encryption none`, default lz4): `create` with the
//! benchmark's exclusions as shell patterns, `extract`, and
//! `check --verify-data`. Exit code 1 is borg's warning (e.g. a file
//! changed) and counts as success.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::{setup, Lab, Plan, Update};
use crate::app::fsutil;
use crate::app::model::Scenario;

/// borg with its state in the scratch folder and no passphrase.
fn borg(lab: &Lab) -> Command {
    let mut c = lab.cmd("borg");
    c.env("BORG_BASE_DIR", lab.scratch.join("cache/borg"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_PASSPHRASE", "");
    c
}

/// The exclusions as borg options (shell-style patterns).
fn excludes() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for d in fsutil::EXCLUDED_DIRS {
        v.push(format!("--exclude=sh:{d}"));
        v.push(format!("--exclude=sh:**/{d}"));
    }
    for s in fsutil::EXCLUDED_SUFFIXES {
        v.push(format!("--exclude=sh:**/*{s}"));
    }
    v
}

/// The initial run makes a repository in `dir` (untimed `init`); backups
/// add an archive named after the scenario and run, restore extracts the
/// latest archive into `dir`, verify checks every chunk. `None` without a
/// repository (or, for restore, an archive).
pub fn prepare(lab: &Lab, sc: Scenario, run: usize, dir: &Path) -> Result<Option<Plan>> {
    let mut warm = vec![lab.src.clone()];
    let mut update = Update::None;
    let repo = if sc == Scenario::Initial {
        let repo = dir.join("repo");
        fs::create_dir_all(dir)?;
        setup(borg(lab).args(["init", "--encryption", "none"]).arg(&repo))?;
        repo
    } else {
        let Some((r, _)) = lab.borg.clone() else {
            return Ok(None);
        };
        r
    };
    warm.extend([repo.clone(), lab.scratch.join("cache/borg")]);
    let mut c = borg(lab);
    match sc {
        Scenario::Restore => {
            warm.remove(0);
            let Some((_, archive)) = lab.borg.clone() else {
                return Ok(None);
            };
            fs::create_dir_all(dir)?;
            c.current_dir(dir)
                .arg("extract")
                .arg(format!("{}::{archive}", repo.display()));
            update = Update::RestoreDir(dir.to_path_buf());
        }
        Scenario::Verify => {
            warm.remove(0);
            c.args(["check", "--verify-data"]).arg(&repo);
        }
        Scenario::Initial | Scenario::NoChange | Scenario::Mutate => {
            let archive = format!("{}-{run}", sc.key());
            c.current_dir(&lab.src)
                .arg("create")
                .args(excludes())
                .arg(format!("{}::{archive}", repo.display()))
                .arg(".");
            update = Update::Borg(repo.clone(), archive);
        }
    }
    Ok(Some(Plan {
        cmd: c,
        warm,
        update,
        // 1 is borg's "warning" exit code (e.g. a file changed).
        ok_codes: vec![1],
    }))
}
