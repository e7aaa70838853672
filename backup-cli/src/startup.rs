//! [`trigger_startup_backup`]: one call at server start-up.
//!
//! The original system backed its project up when the web server started:
//! in a background thread, at most once a day, never delaying the server.
//! This is that call. It returns at once; the backup runs on a named
//! thread (`backup-startup`) under the profile's once-per-day rule and the
//! run lock, logs to the operations log, and never panics into the caller:
//! every error ends up in the [`RunReport`] (outcome `failed`) and the log.
//!
//! ```no_run
//! let handle = backup_cli::startup::trigger_startup_backup("insightminer.toml");
//! // … start serving at once …
//! // Later, if you care about the result:
//! let report = handle.join();
//! println!("backup: {:?}", report.outcome);
//! ```

use std::fs::OpenOptions;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use backup_config::Profile;
use backup_core::NoProgress;
use backup_engine::{run_backup, Outcome, RunReport, Stages};

use crate::logging::{rotate_if_large, LOG_LIMIT};
use crate::wiring;

/// A backup started by [`trigger_startup_backup`]. Join it for the report,
/// or drop it: the backup goes on in the background.
#[derive(Debug)]
pub struct StartupBackup {
    handle: Option<JoinHandle<RunReport>>,
}

impl StartupBackup {
    /// Waits for the backup and returns its report.
    pub fn join(mut self) -> RunReport {
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            _ => failed("the backup thread ended abnormally"),
        }
    }

    /// Whether the backup has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

fn failed(msg: impl Into<String>) -> RunReport {
    let mut r = RunReport::new(Outcome::Failed);
    r.error = Some(msg.into());
    r
}

/// Starts a backup of `profile_path` on a background thread and returns
/// at once. Uses the standard stages; see [`trigger_startup_backup_with`]
/// to replace some.
pub fn trigger_startup_backup(profile_path: impl AsRef<Path>) -> StartupBackup {
    trigger_startup_backup_with(profile_path, |_profile, stages| stages)
}

/// Like [`trigger_startup_backup`], letting `customize` change the stages
/// (add a filter, swap the retention policy…) before the run.
pub fn trigger_startup_backup_with<F>(profile_path: impl AsRef<Path>, customize: F) -> StartupBackup
where
    F: FnOnce(&Profile, Stages) -> Stages + Send + 'static,
{
    let path: PathBuf = profile_path.as_ref().to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("backup-startup".into())
        .spawn(
            move || match catch_unwind(AssertUnwindSafe(|| startup_run(&path, customize))) {
                Ok(report) => report,
                Err(_) => failed("the backup panicked; please report this"),
            },
        );
    match spawned {
        Ok(handle) => StartupBackup {
            handle: Some(handle),
        },
        Err(e) => {
            let report = failed(format!("cannot start the backup thread: {e}"));
            let handle = std::thread::Builder::new().spawn(move || report).ok();
            StartupBackup { handle }
        }
    }
}

fn startup_run<F>(path: &Path, customize: F) -> RunReport
where
    F: FnOnce(&Profile, Stages) -> Stages,
{
    let profile = match wiring::load_profile(path) {
        Ok(p) => p,
        Err(e) => return failed(e.to_string()),
    };
    // Before the log is opened: a log_file that is not the tool's is
    // never appended to. (A source that cannot be used is reported below,
    // into the log; these checks need a usable source.)
    if profile.check_source().is_ok() {
        if let Err(e) = wiring::check_for_backup(&profile) {
            return failed(e.to_string());
        }
    }
    // Log to the operations log from this thread, whatever the host app's
    // own tracing set-up is.
    let subscriber = profile
        .log_file
        .parent()
        .filter(|d| d.is_dir())
        .and_then(|_| {
            rotate_if_large(&profile.log_file, LOG_LIMIT);
            backup_sys::open_regular_with(
                &profile.log_file,
                OpenOptions::new().create(true).append(true),
            )
            .ok()
            .map(|(f, _)| f)
        })
        .map(|f| {
            tracing_subscriber::fmt()
                .with_writer(Mutex::new(f))
                .with_ansi(false)
                .with_target(false)
                .with_max_level(tracing::Level::INFO)
                .finish()
        });
    let work = || {
        if let Err(e) = profile.check_source() {
            tracing::error!("{e}");
            return failed(e.to_string());
        }
        let stages = match wiring::stages(&profile, Arc::new(NoProgress)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return failed(e.to_string());
            }
        };
        let stages = customize(&profile, stages);
        run_backup(&wiring::run_options(&profile, false, false), &stages)
    };
    match subscriber {
        Some(s) => tracing::subscriber::with_default(s, work),
        None => work(),
    }
}
