//! # backup-cli
//!
//! The command-line tool (`backup-cli --profile insightminer.toml`) and the
//! library pieces it is made of: [`wiring`] picks the concrete stages for a
//! profile, [`run`] carries out a parsed command line.
//!
//! ```no_run
//! use clap::Parser;
//! let cli = backup_cli::cli::Cli::parse_from(["backup-cli", "--profile", "insightminer.toml", "--json"]);
//! let code = backup_cli::run(cli).unwrap();
//! # let _ = code;
//! ```

pub mod cli;
pub mod logging;
pub mod progress;
pub mod startup;
pub mod wiring;

pub use startup::{trigger_startup_backup, trigger_startup_backup_with, StartupBackup};

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use backup_config::Profile;
use backup_core::{NoProgress, Progress, RelPath, SnapshotStatus, SnapshotStore};
use backup_engine::diff::{diff_snapshots, diff_with_source};
use backup_engine::{
    error_chain, load_previous, resolve_snapshot, run_backup, Outcome, RunLock, RunReport,
};
use chrono::Local;
use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::wiring::WiringError;

/// Exit code for usage and profile errors.
const USAGE: u8 = 2;

fn usage_error(msg: impl std::fmt::Display) -> u8 {
    print_error(msg);
    USAGE
}

/// What a run in this process ([`run_captured`]) printed: the exit code,
/// the `--json` document and the error message, as the binary would print
/// them on stdout and stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// The exit code the binary would return.
    pub code: u8,
    /// The JSON document (`--json`), if the command printed one.
    pub json: Option<String>,
    /// The error message (without `backup-cli: error: `), if any.
    pub error: Option<String>,
}

thread_local! {
    /// Set for the duration of [`run_captured`] on its thread: where
    /// [`print_json`] and [`print_error`] write instead of stdout/stderr.
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

fn capturing() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Prints an error as the binary does, or keeps it for [`run_captured`].
fn print_error(msg: impl std::fmt::Display) {
    let kept = CAPTURE.with(|c| {
        c.borrow_mut()
            .as_mut()
            .map(|cap| cap.error = Some(msg.to_string()))
    });
    if kept.is_none() {
        eprintln!("backup-cli: error: {msg}");
    }
}

/// The whole binary: parses `args` (the program name first) and carries
/// them out; returns the exit code. Errors go to stderr, once.
pub fn main_with<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version are "errors" that exit 0.
            if capturing() && e.use_stderr() {
                print_error(e.render().to_string().trim_end());
            } else {
                let _ = e.print();
            }
            return u8::try_from(e.exit_code()).unwrap_or(USAGE);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (e.g. `| head`) is not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return 0;
            }
            // The whole chain, each cause once (`{:#}` would repeat the
            // causes that a client's message already quotes).
            print_error(error_chain(e.as_ref()));
            1
        }
    }
}

/// Runs the binary's `args` in this process (on this thread), keeping what
/// it would print: the Python package's functions are these runs with
/// `--json`, so they report exactly what the binary does. The operations
/// log is written as by the binary.
pub fn run_captured<I, T>(args: I) -> Captured
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    /// Ends the capture however the run ends (a panic included), so that
    /// this thread prints again afterwards.
    struct Capture;
    impl Drop for Capture {
        fn drop(&mut self) {
            CAPTURE.with(|c| c.borrow_mut().take());
        }
    }
    CAPTURE.with(|c| *c.borrow_mut() = Some(Captured::default()));
    let capture = Capture;
    let code = main_with(args);
    let mut out = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(capture);
    out.code = code;
    out
}

/// Prints `value` as JSON on stdout. A reader that closed the pipe early is
/// not an error: the command's own outcome decides the exit code.
fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    if capturing() {
        let text = serde_json::to_string_pretty(value)?;
        CAPTURE.with(|c| {
            if let Some(cap) = c.borrow_mut().as_mut() {
                cap.json = Some(text);
            }
        });
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Human-readable byte count.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Carries out a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Some(Command::Init {
        profile_path,
        source,
        destination,
        name,
    }) = &cli.command
    {
        return cmd_init(
            profile_path,
            source,
            destination,
            name.as_deref(),
            cli.quiet,
        );
    }
    let Some(profile_path) = cli.profile.clone() else {
        return Ok(usage_error(
            "--profile FILE is required (or use `backup-cli init` to write one)",
        ));
    };
    let profile = match wiring::load_profile(&profile_path) {
        Ok(p) => p,
        Err(e) => return Ok(usage_error(e)),
    };
    let show_progress = !cli.quiet && !cli.json && std::io::stderr().is_terminal();
    let progress: Arc<dyn Progress> = if show_progress {
        Arc::new(progress::BarProgress::default())
    } else {
        Arc::new(NoProgress)
    };
    let is_backup = matches!(cli.command, None | Some(Command::Backup));
    // Before the log is opened: a log_file that is not the tool's is never
    // appended to, a lock_file that is not the tool's never taken.
    // (A source that cannot be used is reported by cmd_backup, into the log,
    // as before; these checks need a usable source.)
    if is_backup && profile.check_source().is_ok() {
        if let Err(e) = wiring::check_for_backup(&profile) {
            if cli.json {
                print_json(&serde_json::json!({"outcome": "failed", "error": e.to_string()}))?;
            }
            return Ok(usage_error(e));
        }
    }
    let log_file = (!(is_backup && cli.backup.dry_run)).then_some(profile.log_file.as_path());
    let subscriber = logging::subscriber(log_file, cli.quiet, cli.verbose);
    if capturing() {
        // In someone else's process: this run's log, not a global one.
        tracing::subscriber::with_default(subscriber, || dispatch(&cli, &profile, progress))
    } else {
        logging::init(subscriber);
        dispatch(&cli, &profile, progress)
    }
}

/// Carries out a command other than `init`.
fn dispatch(cli: &Cli, profile: &Profile, progress: Arc<dyn Progress>) -> anyhow::Result<u8> {
    match &cli.command {
        None | Some(Command::Backup) => cmd_backup(cli, profile, progress),
        Some(Command::List) => cmd_list(cli, profile),
        Some(Command::Status) => cmd_status(cli, profile),
        Some(Command::Restore {
            snapshot,
            to,
            paths,
            overwrite,
        }) => cmd_restore(cli, profile, snapshot, to, paths, *overwrite, &*progress),
        Some(Command::Verify {
            snapshot,
            all,
            quick,
            repair,
        }) => cmd_verify(
            cli,
            profile,
            snapshot.as_deref(),
            VerifyFlags {
                all: *all,
                quick: *quick,
                repair: *repair,
            },
            &*progress,
        ),
        Some(Command::Diff { a, b }) => {
            cmd_diff(cli, profile, a.as_deref(), b.as_deref(), progress)
        }
        Some(Command::Init { .. }) => Ok(0),
    }
}

fn cmd_backup(cli: &Cli, profile: &Profile, progress: Arc<dyn Progress>) -> anyhow::Result<u8> {
    if let Err(e) = profile.check_source() {
        tracing::error!("{e}");
        if cli.json {
            print_json(&serde_json::json!({"outcome": "failed", "error": e.to_string()}))?;
        }
        return Ok(usage_error(e));
    }
    let stages = match wiring::stages(profile, progress) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            if cli.json {
                print_json(&serde_json::json!({"outcome": "failed", "error": e.to_string()}))?;
            }
            return Ok(wiring_error(&e));
        }
    };
    let opts = wiring::run_options(profile, cli.backup.force, cli.backup.dry_run);
    let report = run_backup(&opts, &stages);
    if cli.json {
        print_json(&report)?;
    } else if !cli.quiet || report.outcome == Outcome::Failed {
        print_backup_summary(&report, cli.quiet);
    }
    Ok(report.exit_code())
}

/// Reports a setup problem; returns its exit code.
fn wiring_error(e: &WiringError) -> u8 {
    print_error(error_chain(e));
    e.exit_code()
}

/// Opens the profile's destination and lists its snapshots.
fn open_snapshots(
    profile: &Profile,
) -> Result<(Box<dyn SnapshotStore>, Vec<backup_core::SnapshotRef>), u8> {
    let dest = wiring::open_store(profile).map_err(|e| {
        tracing::error!("{e}");
        wiring_error(&e)
    })?;
    let snaps = wiring::snapshots(profile, &*dest).map_err(|e| {
        let e = WiringError::Destination(e);
        tracing::error!("{e}");
        wiring_error(&e)
    })?;
    Ok((dest, snaps))
}

fn print_backup_summary(r: &RunReport, quiet: bool) {
    let secs = r.duration_ms as f64 / 1000.0;
    if r.outcome == Outcome::Failed {
        eprintln!(
            "backup-cli: error: the backup failed and was rolled back: {}",
            r.error.as_deref().unwrap_or("unknown error")
        );
        return;
    }
    if quiet {
        return;
    }
    match r.outcome {
        Outcome::Created => {
            println!("Snapshot {} created", r.snapshot.as_deref().unwrap_or("?"));
            if let Some(p) = &r.snapshot_path {
                println!("  in:       {p}");
            }
            println!(
                "  files:    {} total, {} copied, {} linked, {} failed",
                r.counts.files_total, r.counts.files_copied, r.counts.files_linked, r.counts.files_failed
            );
            println!(
                "  bytes:    {} copied of {}",
                human_bytes(r.counts.bytes_copied),
                human_bytes(r.counts.bytes_total)
            );
            println!(
                "  changes:  {} added, {} modified, {} removed",
                r.changes.added, r.changes.modified, r.changes.removed
            );
            if r.rotate.is_empty() {
                println!("  rotation: nothing deleted");
            } else {
                println!("  rotation: deleted {}", r.rotate.join(", "));
            }
            println!("  duration: {secs:.2} s");
        }
        Outcome::NoChanges => println!(
            "No changes since the last snapshot ({} files checked in {secs:.2} s); no snapshot made.",
            r.counts.files_total
        ),
        Outcome::SkippedNotDue => println!(
            "A snapshot was already made today ({}); nothing to do. Use --force to back up anyway.",
            r.last_snapshot.as_deref().unwrap_or("?")
        ),
        Outcome::SkippedLocked => println!(
            "Another backup is running ({}); skipped.",
            r.lock_holder.as_ref().map(|h| h.to_string()).unwrap_or_default()
        ),
        Outcome::DryRun => {
            match &r.snapshot {
                Some(name) => println!("Dry run: would create {name}"),
                None => println!("Dry run: nothing changed; no snapshot would be made"),
            }
            println!(
                "  would copy {} files ({}), link {}",
                r.counts.files_copied,
                human_bytes(r.counts.bytes_copied),
                r.counts.files_linked
            );
            println!(
                "  changes: {} added, {} modified, {} removed",
                r.changes.added, r.changes.modified, r.changes.removed
            );
            if !r.rotate.is_empty() {
                println!("  would delete: {}", r.rotate.join(", "));
            }
        }
        Outcome::Failed => {}
    }
    for f in &r.failed {
        println!("  could not read {}: {}", f.path, f.error);
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
}

#[derive(Serialize)]
struct ListedSnapshot {
    name: String,
    path: String,
    created: String,
    files_total: Option<u64>,
    files_copied: Option<u64>,
    bytes_copied: Option<u64>,
    status: &'static str,
}

fn cmd_list(cli: &Cli, profile: &Profile) -> anyhow::Result<u8> {
    let (_, snaps) = match open_snapshots(profile) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let rows: Vec<ListedSnapshot> = snaps
        .iter()
        .map(|s| ListedSnapshot {
            name: s.name.clone(),
            path: s.location.clone(),
            created: s.created.to_rfc3339(),
            files_total: s.info.as_ref().map(|i| i.counts.files_total),
            files_copied: s.info.as_ref().map(|i| i.counts.files_copied),
            bytes_copied: s.info.as_ref().map(|i| i.counts.bytes_copied),
            // Snapshots of the original script (no manifest) hold only what
            // changed: partial.
            status: match s.info.as_ref().map(|i| i.status) {
                Some(SnapshotStatus::Complete) => "complete",
                _ => "partial",
            },
        })
        .collect();
    if cli.json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!(
            "No snapshots of {} in {} yet.",
            profile.name, profile.destination
        );
    } else {
        println!(
            "{:<40} {:<25} {:>8} {:>8} {:>10}  status",
            "name", "created", "files", "copied", "bytes"
        );
        for r in &rows {
            let n = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            println!(
                "{:<40} {:<25} {:>8} {:>8} {:>10}  {}",
                r.name,
                r.created,
                n(r.files_total),
                n(r.files_copied),
                r.bytes_copied.map_or("-".into(), human_bytes),
                r.status
            );
        }
    }
    Ok(0)
}

#[derive(Serialize)]
struct StatusReport {
    profile: String,
    source: String,
    destination: String,
    last_snapshot: Option<String>,
    last_snapshot_created: Option<String>,
    backup_due: bool,
    once_per_day: bool,
    lock_holder: Option<backup_engine::LockHolder>,
    destination_free_bytes: Option<u64>,
    snapshots: usize,
    max_backups: u32,
}

fn cmd_status(cli: &Cli, profile: &Profile) -> anyhow::Result<u8> {
    let (dest, snaps) = match open_snapshots(profile) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let last = snaps.last();
    let made_today = backup_engine::made_today(&snaps, Local::now().fixed_offset()).is_some();
    let lock_holder = RunLock::holder(&profile.lock_file).unwrap_or(None);
    let free_bytes = dest.free_space();
    let status = StatusReport {
        profile: profile.name.clone(),
        source: profile.source.display().to_string(),
        destination: profile.destination.to_string(),
        last_snapshot: last.map(|s| s.name.clone()),
        last_snapshot_created: last.map(|s| s.created.to_rfc3339()),
        backup_due: !(profile.once_per_day && made_today),
        once_per_day: profile.once_per_day,
        lock_holder,
        destination_free_bytes: free_bytes,
        snapshots: snaps.len(),
        max_backups: profile.max_backups,
    };
    if cli.json {
        print_json(&status)?;
    } else {
        println!(
            "profile:       {} ({})",
            status.profile,
            profile.path.display()
        );
        println!("source:        {}", status.source);
        println!("destination:   {}", status.destination);
        match (&status.last_snapshot, &status.last_snapshot_created) {
            (Some(n), Some(c)) => println!("last snapshot: {n} ({c})"),
            _ => println!("last snapshot: none yet"),
        }
        println!(
            "backup due:    {}",
            if status.backup_due {
                "yes"
            } else {
                "no (already made today; --force overrides)"
            }
        );
        match &status.lock_holder {
            Some(h) => println!("running:       yes, {h}"),
            None => println!("running:       no"),
        }
        if let Some(free) = status.destination_free_bytes {
            println!("free space:    {}", human_bytes(free));
        }
        println!(
            "snapshots:     {} of max {}",
            status.snapshots, status.max_backups
        );
    }
    Ok(0)
}

fn cmd_restore(
    cli: &Cli,
    profile: &Profile,
    snapshot: &str,
    to: &Path,
    paths: &[std::path::PathBuf],
    overwrite: bool,
    progress: &dyn Progress,
) -> anyhow::Result<u8> {
    if std::fs::metadata(to).is_ok_and(|m| !m.is_dir()) {
        return Ok(usage_error(format!(
            "--to {} exists and is not a folder; restore into a new or empty folder",
            to.display()
        )));
    }
    let (dest, snaps) = match open_snapshots(profile) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let snap = match resolve_snapshot(&snaps, snapshot) {
        Ok(s) => s,
        Err(e) => return Ok(usage_error(e)),
    };
    let mut rel_paths = Vec::new();
    for p in paths {
        let trimmed: std::path::PathBuf = p
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        match RelPath::new(trimmed) {
            Ok(r) => rel_paths.push(r),
            Err(e) => return Ok(usage_error(format!("--path {}: {e}", p.display()))),
        }
    }
    let opts = backup_engine::RestoreOptions {
        target: to.to_path_buf(),
        paths: rel_paths,
        overwrite,
        threads: profile.worker_threads(),
    };
    let report = match backup_engine::restore(&*dest, snap, &opts, progress) {
        Ok(r) => r,
        Err(
            e @ (backup_engine::RestoreError::TargetNotEmpty(_)
            | backup_engine::RestoreError::PathNotFound(_)),
        ) => return Ok(usage_error(e)),
        Err(backup_engine::RestoreError::Core(e)) => {
            tracing::error!("restore of {} failed: {}", snap.name, error_chain(&e));
            anyhow::bail!("restore of {} failed: {}", snap.name, error_chain(&e));
        }
        Err(e) => anyhow::bail!("restore of {} failed: {e}", snap.name),
    };
    tracing::info!(
        snapshot = %snap.name,
        target = %to.display(),
        files = report.files_restored,
        mismatches = report.mismatches.len(),
        errors = report.errors.len(),
        "restore finished"
    );
    if cli.json {
        #[derive(Serialize)]
        struct Out<'a> {
            snapshot: &'a str,
            #[serde(flatten)]
            report: &'a backup_engine::RestoreReport,
        }
        print_json(&Out {
            snapshot: &snap.name,
            report: &report,
        })?;
    } else if !cli.quiet {
        println!(
            "Restored {} into {}: {} files ({}), {} folders, {} symlinks",
            snap.name,
            to.display(),
            report.files_restored,
            human_bytes(report.bytes_restored),
            report.dirs_restored,
            report.symlinks_restored
        );
        for m in &report.mismatches {
            println!("  MISMATCH {}: {}", m.path, m.error);
        }
        for m in &report.errors {
            println!("  error {}: {}", m.path, m.error);
        }
        for p in &report.not_in_snapshot {
            println!("  not in snapshot (could not be read at backup time): {p}");
        }
        for p in &report.setid_cleared {
            println!("  restored without its setuid/setgid bits (ownership is not restored): {p}");
        }
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

/// `verify`'s switches.
struct VerifyFlags {
    all: bool,
    quick: bool,
    repair: bool,
}

fn cmd_verify(
    cli: &Cli,
    profile: &Profile,
    snapshot: Option<&str>,
    flags: VerifyFlags,
    progress: &dyn Progress,
) -> anyhow::Result<u8> {
    let (dest, snaps) = match open_snapshots(profile) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let chosen: Vec<backup_core::SnapshotRef> = if flags.all {
        snaps.iter().filter(|s| s.info.is_some()).cloned().collect()
    } else {
        match resolve_snapshot(&snaps, snapshot.unwrap_or("latest")) {
            Ok(s) => vec![s.clone()],
            Err(e) => return Ok(usage_error(e)),
        }
    };
    let threads = profile.worker_threads();
    let verify = |what: &str| {
        dest.verify(&chosen, flags.quick, threads, progress)
            .map_err(anyhow::Error::new)
            .with_context(|| format!("{what} failed"))
    };
    let mut report = verify("verify")?;
    let mut repaired = None;
    if flags.repair && (!report.corrupt.is_empty() || !report.missing.is_empty()) {
        let r = backup_engine::repair(&*dest, &chosen, &report)
            .map_err(anyhow::Error::new)
            .context("repair failed")?;
        report = verify("verify after the repair")?;
        repaired = Some(r);
    }
    tracing::info!(
        snapshots = report.snapshots_checked,
        files = report.files_checked,
        corrupt = report.corrupt.len(),
        missing = report.missing.len(),
        unexpected = report.unexpected.len(),
        repaired = repaired.as_ref().map_or(0, |r| r.repaired.len()),
        "verify finished"
    );
    if cli.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(map), Some(r)) = (v.as_object_mut(), &repaired) {
            map.insert("repair".into(), serde_json::to_value(r)?);
        }
        print_json(&v)?;
    } else if !cli.quiet || !report.is_clean() {
        print_verify(&report, repaired.as_ref(), &flags);
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

fn print_verify(
    report: &backup_core::VerifyReport,
    repaired: Option<&backup_engine::RepairReport>,
    flags: &VerifyFlags,
) {
    if let Some(r) = repaired {
        for p in &r.repaired {
            println!(
                "  REPAIRED {}/{} (copied again from the source)",
                p.snapshot, p.path
            );
        }
        for p in &r.not_repaired {
            println!("  NOT REPAIRED {}/{}: {}", p.snapshot, p.path, p.reason);
        }
    }
    println!(
        "Verified {} snapshot(s): {} files, {} read",
        report.snapshots_checked,
        report.files_checked,
        human_bytes(report.bytes_checked)
    );
    for (label, list) in [
        ("CORRUPT", &report.corrupt),
        ("MISSING", &report.missing),
        ("UNEXPECTED", &report.unexpected),
    ] {
        for p in list {
            println!("  {label} {}/{}", p.snapshot, p.path);
        }
    }
    if report.is_clean() {
        println!("  all files match their manifests");
    } else if !flags.repair && (!report.corrupt.is_empty() || !report.missing.is_empty()) {
        let scope = if flags.all { "--all" } else { "SNAPSHOT" };
        println!(
            "  damaged or missing files can be copied again from the source, where it still holds the recorded content: backup-cli verify {scope} --repair"
        );
    }
}

fn cmd_diff(
    cli: &Cli,
    profile: &Profile,
    a: Option<&str>,
    b: Option<&str>,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<u8> {
    let (dest, snaps) = match open_snapshots(profile) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let older = match resolve_snapshot(&snaps, a.unwrap_or("latest")) {
        Ok(s) => s,
        Err(e) => return Ok(usage_error(e)),
    };
    let (diff, against) = match b {
        Some(b) => {
            let newer = match resolve_snapshot(&snaps, b) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            let d = dest
                .read_manifest(older)
                .and_then(|a| diff_snapshots(a, dest.read_manifest(newer)?))
                .map_err(anyhow::Error::new)?;
            (d, newer.name.clone())
        }
        None => {
            if let Err(e) = profile.check_source() {
                return Ok(usage_error(e));
            }
            let stages = match wiring::stages(profile, progress) {
                Ok(s) => s,
                Err(e) => return Ok(wiring_error(&e)),
            };
            let opts = wiring::run_options(profile, false, true);
            let d = load_previous(&stages, older)
                .and_then(|prev| diff_with_source(prev, &opts, &stages))
                .map_err(anyhow::Error::new)?;
            (d, "the source now".to_string())
        }
    };
    if cli.json {
        print_json(&diff)?;
    } else if !cli.quiet {
        println!("Changes from {} to {}:", older.name, against);
        for p in &diff.added {
            println!("+ {p}");
        }
        for p in &diff.changed {
            println!("M {p}");
        }
        for p in &diff.removed {
            println!("- {p}");
        }
        if diff.is_empty() {
            println!("  (none)");
        }
    }
    Ok(0)
}

fn cmd_init(
    profile_path: &Path,
    source: &Path,
    destination: &Path,
    name: Option<&str>,
    quiet: bool,
) -> anyhow::Result<u8> {
    let name = name.map(str::to_owned).unwrap_or_else(|| {
        std::path::absolute(source)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "backup".into())
    });
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (source, destination) = (&abs(source), &abs(destination));
    let esc = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    let text = backup_config::TEMPLATE
        .replace("{name}", &name.replace('"', ""))
        .replace("{source}", &esc(source))
        .replace("{destination}", &esc(destination));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(profile_path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok(usage_error(format!(
                "{} already exists; edit it, or choose another file name",
                profile_path.display()
            )))
        }
        Err(e) => {
            return Ok(usage_error(format!(
                "cannot create {}: {e}",
                profile_path.display()
            )))
        }
    };
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", profile_path.display()))?;
    if let Err(e) = wiring::load_profile(profile_path) {
        let _ = std::fs::remove_file(profile_path);
        return Ok(usage_error(e));
    }
    if !quiet {
        println!(
            "Wrote {}. Run: backup-cli --profile {}",
            profile_path.display(),
            profile_path.display()
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::run_captured;

    #[test]
    fn a_captured_run_keeps_its_json_and_its_error_and_prints_neither() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a.txt"), "alpha").unwrap();
        let profile = dir.path().join("p.toml");
        std::fs::write(
            &profile,
            "name = \"P\"\nsource = \"src\"\ndestination = \"dest\"\n",
        )
        .unwrap();
        let p = profile.to_str().unwrap();

        let run = run_captured(["backup-cli", "--profile", p, "backup", "--force", "--json"]);
        assert_eq!((run.code, run.error.as_deref()), (0, None), "{run:?}");
        let report: serde_json::Value = serde_json::from_str(run.json.as_deref().unwrap()).unwrap();
        assert_eq!(report["outcome"], "created");
        assert!(
            src.join("backup_operations.log").is_file(),
            "the run logged"
        );

        let run = run_captured(["backup-cli", "--profile", p, "list", "--json"]);
        let listed: serde_json::Value = serde_json::from_str(run.json.as_deref().unwrap()).unwrap();
        assert_eq!(listed[0]["name"], report["snapshot"]);

        std::fs::write(
            &profile,
            "source = \"src\"\ndestination = \"dest\"\nmax_backups = 0\n",
        )
        .unwrap();
        let run = run_captured(["backup-cli", "--profile", p, "backup", "--json"]);
        assert_eq!(run.code, 2);
        assert!(
            run.error
                .as_deref()
                .unwrap_or_default()
                .contains("max_backups"),
            "{run:?}"
        );

        let run = run_captured(["backup-cli", "--no-such-flag"]);
        assert_eq!(run.code, 2);
        assert!(
            run.error
                .as_deref()
                .unwrap_or_default()
                .contains("--no-such-flag"),
            "{run:?}"
        );
    }
}
