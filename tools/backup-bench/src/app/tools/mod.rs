//! The compared tools, one module each: how a tool is set up (untimed),
//! what it runs in each scenario, what it needs warm in the cache, and what
//! a successful run leaves for the next scenario. The runner
//! ([`crate::app::bench`]) times every step the same way; only what differs
//! between tools lives here.
//!
//! backup-cli to a folder and to S3 ([`ours`]), `find` ([`find`]), `cp -a`
//! and `cp -al` ([`cp`]), [`rsync`], restic to a folder and to S3
//! ([`restic`]), and [`borg`].

pub mod borg;
pub mod cp;
pub mod find;
pub mod ours;
pub mod restic;
pub mod rsync;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::app::measure;
use crate::app::s3::S3Server;
use ours::OursState;
use restic::ResticS3Repo;

/// What every tool's steps run in, and what each tool left behind for the
/// next scenario.
pub struct Lab {
    /// Spawns timed commands through the measuring wrapper.
    pub runner: measure::Runner,
    /// The corpus every tool backs up.
    pub src: PathBuf,
    /// This run's scratch folder: destinations, repositories, caches,
    /// restores.
    pub scratch: PathBuf,
    /// The backup-cli binary.
    pub bin: PathBuf,
    /// The loopback S3 server (stopped when dropped).
    pub s3: Option<S3Server>,
    /// backup-cli's state for its folder destination.
    pub ours: Option<OursState>,
    /// backup-cli's state for its S3 destination.
    pub ours_s3: Option<OursState>,
    /// rsync's latest copy (the next `--link-dest`).
    pub rsync_latest: Option<PathBuf>,
    /// restic's repository.
    pub restic_repo: Option<PathBuf>,
    /// restic's repository on the S3 server.
    pub restic_s3: Option<ResticS3Repo>,
    /// borg's repository and latest archive.
    pub borg: Option<(PathBuf, String)>,
}

impl Lab {
    /// `program` through the measuring wrapper, stdin closed.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = self.runner.command(program);
        c.stdin(Stdio::null());
        c
    }
}

/// A timed run as a tool prepares it.
pub struct Plan {
    /// The command to time.
    pub cmd: Command,
    /// What is read once right before the run, so the page cache is warm.
    pub warm: Vec<PathBuf>,
    /// What a successful run changes in the tool's chain of state.
    pub update: Update,
    /// Exit codes that count as success besides 0 (borg: 1 = warning).
    pub ok_codes: Vec<i32>,
}

impl Plan {
    /// A run of `cmd` with `warm` warmed, changing nothing on success.
    pub fn new(cmd: Command, warm: Vec<PathBuf>) -> Plan {
        Plan {
            cmd,
            warm,
            update: Update::None,
            ok_codes: Vec::new(),
        }
    }
}

/// A prepared timed run: the tool's plan and where its output goes.
pub struct Step {
    /// What the tool runs.
    pub plan: Plan,
    /// Its stdout.
    pub out: PathBuf,
    /// Its stderr.
    pub err: PathBuf,
}

/// What a successful step changes in the chains.
pub enum Update {
    /// Nothing.
    None,
    /// backup-cli's new destination (its latest snapshot is read from the
    /// run's report).
    Ours(OursState),
    /// rsync's new latest copy.
    RsyncLatest(PathBuf),
    /// restic's new repository.
    Restic(PathBuf),
    /// restic's new repository on the S3 server.
    ResticS3(ResticS3Repo),
    /// borg's repository and the archive just made.
    Borg(PathBuf, String),
    /// A restore to compare with the source at the end.
    RestoreDir(PathBuf),
}

/// Runs an untimed setup command (directly, not through the measuring
/// wrapper, whose exit code is always 0) and fails with its stderr if it
/// fails.
pub fn setup(cmd: &mut Command) -> Result<()> {
    let mut cmd = measure::unwrapped(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs an untimed command (stdin closed) and returns its exit code (-1 if
/// killed), stdout and stderr.
pub fn untimed(cmd: &mut Command) -> Result<(i32, String, String)> {
    let mut cmd = measure::unwrapped(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
