//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Incremental, automatic, hard-linked snapshots of a project folder.
///
/// `backup-cli --profile P.toml` makes a snapshot (same as `... backup`).
#[derive(Debug, Parser)]
#[command(name = "backup-cli", version, about, long_about = None)]
pub struct Cli {
    /// The TOML profile to use.
    #[arg(long, short = 'p', global = true, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Show more on stderr (-v: info, -vv: debug).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Backup options when no subcommand is given.
    #[command(flatten)]
    pub backup: BackupArgs,
    /// What to do (default: backup).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of `backup`.
#[derive(Debug, Args, Clone, Default)]
pub struct BackupArgs {
    /// Back up even if a snapshot was already made today.
    #[arg(long, global = true)]
    pub force: bool,
    /// Report what would be copied, linked and rotated; write nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a snapshot if something changed (the default).
    Backup,
    /// List the profile's snapshots, oldest first.
    List,
    /// Restore a snapshot (or some paths of it) into a folder.
    Restore {
        /// Snapshot name, unique prefix, or `latest`.
        #[arg(default_value = "latest")]
        snapshot: String,
        /// Folder to restore into (created if missing).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Restore only this file or folder (relative path); repeatable.
        #[arg(long = "path", value_name = "REL")]
        paths: Vec<PathBuf>,
        /// Allow restoring into a non-empty folder, replacing files.
        #[arg(long)]
        overwrite: bool,
    },
    /// Re-read snapshots and compare every file with the manifest.
    Verify {
        /// Snapshot name, unique prefix, or `latest` (default).
        snapshot: Option<String>,
        /// Verify every snapshot.
        #[arg(long, conflicts_with = "snapshot")]
        all: bool,
        /// Only check that every file's content is there with the right
        /// size (object storage: one lookup per content, no download).
        #[arg(long)]
        quick: bool,
        /// Copy each damaged or missing file again from the source, where
        /// the source still holds exactly the recorded content; then verify
        /// again.
        #[arg(long)]
        repair: bool,
    },
    /// What changed between two snapshots, or a snapshot and the source now.
    Diff {
        /// The older snapshot (default: latest).
        a: Option<String>,
        /// The newer snapshot (default: the source now).
        b: Option<String>,
    },
    /// Last snapshot, whether a backup is due, lock holder, free space.
    Status,
    /// Write a commented starter profile.
    Init {
        /// Where to write the profile.
        profile_path: PathBuf,
        /// The folder to back up.
        #[arg(long)]
        source: PathBuf,
        /// Where snapshots go.
        #[arg(long)]
        destination: PathBuf,
        /// Snapshot name prefix (default: the source folder's name).
        #[arg(long)]
        name: Option<String>,
    },
}
