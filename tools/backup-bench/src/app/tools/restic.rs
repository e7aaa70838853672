//! restic, to a repository in a folder (`restic`: `backup`, `restore
//! latest`, `check --read-data`) and on the loopback S3 server
//! (`restic-s3`: `backup` only), with the benchmark's exclusions; `init` is
//! untimed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{setup, untimed, Lab, Plan, Update};
use crate::app::fsutil::{self, mib, TreeSummary};
use crate::app::model::{Scenario, Tool};
use crate::app::s3;

/// A restic repository on the S3 server.
#[derive(Clone, Debug)]
pub struct ResticS3Repo {
    /// `s3:http://127.0.0.1:PORT/BUCKET/PREFIX`.
    pub url: String,
    /// The server's folder holding its objects.
    pub dir: PathBuf,
}

/// restic with a fixed password and its cache in the scratch folder.
fn restic(lab: &Lab) -> Command {
    let mut c = lab.cmd("restic");
    c.env("RESTIC_PASSWORD", "backup-bench")
        .env("RESTIC_CACHE_DIR", lab.scratch.join("cache/restic"));
    c
}

/// restic with the repository `url` on the S3 server.
fn restic_s3(lab: &Lab, url: &str) -> Command {
    let mut c = restic(lab);
    c.arg("-r").arg(url);
    s3::credentials(&mut c);
    c
}

/// The exclusions as restic options.
fn excludes() -> Vec<String> {
    let mut v: Vec<String> = fsutil::EXCLUDED_DIRS
        .iter()
        .map(|d| format!("--exclude={d}"))
        .collect();
    v.extend(
        fsutil::EXCLUDED_SUFFIXES
            .iter()
            .map(|s| format!("--exclude=*{s}")),
    );
    v
}

/// The initial run makes a repository in `dir`; later backups add to it,
/// restore writes the latest snapshot into `dir`, verify reads every pack.
/// `None` without a repository.
pub fn prepare(lab: &Lab, sc: Scenario, dir: &Path) -> Result<Option<Plan>> {
    let mut warm = vec![lab.src.clone()];
    let mut update = Update::None;
    let repo = if sc == Scenario::Initial {
        let repo = dir.join("repo");
        fs::create_dir_all(dir)?;
        setup(restic(lab).arg("-r").arg(&repo).arg("init"))?;
        update = Update::Restic(repo.clone());
        repo
    } else {
        let Some(r) = lab.restic_repo.clone() else {
            return Ok(None);
        };
        r
    };
    warm.extend([repo.clone(), lab.scratch.join("cache/restic")]);
    let mut c = restic(lab);
    c.arg("-r").arg(&repo);
    match sc {
        Scenario::Restore => {
            warm.remove(0);
            fs::create_dir_all(dir)?;
            c.args(["restore", "latest", "--target"]).arg(dir);
            update = Update::RestoreDir(dir.to_path_buf());
        }
        Scenario::Verify => {
            warm.remove(0);
            c.args(["check", "--read-data"]);
        }
        Scenario::Initial | Scenario::NoChange | Scenario::Mutate => {
            c.arg("backup").args(excludes()).arg(&lab.src);
        }
    }
    let mut plan = Plan::new(c, warm);
    plan.update = update;
    Ok(Some(plan))
}

/// A backup to the S3 server: each initial run to a fresh prefix
/// `restic/initial-N`, the after-mutate runs to the last one. `None`
/// without a repository.
pub fn prepare_s3(lab: &Lab, sc: Scenario, run: usize) -> Result<Option<Plan>> {
    let mut warm = vec![lab.src.clone()];
    let mut update = Update::None;
    let repo = if sc == Scenario::Initial {
        let server = lab.s3.as_ref().context("the S3 server is not running")?;
        let prefix = format!("restic/initial-{run}");
        let repo = ResticS3Repo {
            url: format!("s3:{}/{}/{prefix}", server.endpoint, s3::BUCKET),
            dir: server.dir(&prefix),
        };
        setup(restic_s3(lab, &repo.url).arg("init"))?;
        update = Update::ResticS3(repo.clone());
        repo
    } else {
        let Some(r) = lab.restic_s3.clone() else {
            return Ok(None);
        };
        r
    };
    warm.extend([repo.dir.clone(), lab.scratch.join("cache/restic")]);
    let mut c = restic_s3(lab, &repo.url);
    c.arg("backup").args(excludes()).arg(&lab.src);
    let mut plan = Plan::new(c, warm);
    plan.update = update;
    Ok(Some(plan))
}

/// Untimed checks of the S3 repository (the server must still run):
/// `restic check`, and `stats latest` against the source's size. Lines
/// go to `lines`, the ones that are wrong also to `bad`.
pub fn s3_consistency(
    lab: &Lab,
    expected: &TreeSummary,
    lines: &mut Vec<String>,
    bad: &mut Vec<String>,
) {
    let Some(repo) = lab.restic_s3.clone() else {
        return;
    };
    let label = format!("{} repository", Tool::ResticS3.label());
    let mut c = restic_s3(lab, &repo.url);
    c.arg("check");
    match untimed(&mut c) {
        Ok((0, _, _)) => lines.push(format!("{label}: `restic check`: no errors")),
        Ok((code, out, err)) => {
            let line = format!(
                "{label}: `restic check` exited with {code}: {}",
                format!("{out}\n{err}").trim().lines().last().unwrap_or("")
            );
            bad.push(line.clone());
            lines.push(line);
        }
        Err(e) => lines.push(format!("{label}: could not check: {e:#}")),
    }
    let mut c = restic_s3(lab, &repo.url);
    c.args(["stats", "latest", "--json"]);
    if let Ok((0, out, _)) = untimed(&mut c) {
        let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if let Some(size) = json.get("total_size").and_then(Value::as_u64) {
            let line = format!(
                "{label}: latest snapshot holds {:.1} MiB ({size} bytes; the source has {} bytes)",
                mib(size),
                expected.bytes
            );
            if size != expected.bytes {
                bad.push(line.clone());
            }
            lines.push(line);
        }
    }
}
