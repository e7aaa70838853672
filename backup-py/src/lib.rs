//! `backup_cli._native`: what the Python package (`python/backup_cli/`)
//! calls. Kept thin on purpose: every function is the binary's own code
//! ([`backup_cli::main_with`], [`backup_cli::run_captured`],
//! [`backup_cli::trigger_startup_backup`]), run with the GIL released, and
//! hands back exit codes and JSON text; the Python side turns them into
//! dicts and exceptions, so the package reports exactly what `--json` does.

use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use backup_cli::StartupBackup;
use pyo3::prelude::*;

/// Runs the command line `argv` (program name first) as the binary does,
/// printing to this process's stdout and stderr; returns the exit code.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| backup_cli::main_with(argv))
}

/// Runs `argv` keeping what it prints: `(exit code, JSON text or None,
/// error message or None)`.
#[pyfunction]
fn run_json(py: Python<'_>, argv: Vec<String>) -> (u8, Option<String>, Option<String>) {
    let c = py.detach(|| backup_cli::run_captured(argv));
    (c.code, c.json, c.error)
}

/// What is wrong with the profile at `path` for a backup, if anything:
/// `(message, key or None, profile path)`. The same checks as the binary
/// makes before it starts a run.
#[pyfunction]
fn profile_problem(py: Python<'_>, path: String) -> Option<(String, Option<String>, String)> {
    py.detach(|| backup_cli::wiring::profile_problem(Path::new(&path)))
        .map(|p| {
            (
                p.message,
                p.key.map(str::to_owned),
                p.path.display().to_string(),
            )
        })
}

/// A backup running on a thread of this process (see [`start`]).
#[pyclass(module = "backup_cli._native")]
struct StartupHandle {
    state: Mutex<State>,
    /// Signalled when the state becomes [`State::Done`].
    ended: Condvar,
}

/// Where a start-up backup is. The run is joined outside the mutex, so that
/// `done()` (a request handler asking) never waits for a backup.
enum State {
    Running(StartupBackup),
    /// One caller is joining the thread.
    Joining,
    /// The report, as JSON.
    Done(String),
}

#[pymethods]
impl StartupHandle {
    /// Whether the backup has ended.
    fn done(&self) -> bool {
        match &*lock(&self.state) {
            State::Running(run) => run.is_finished(),
            State::Joining => false,
            State::Done(_) => true,
        }
    }

    /// Waits (without the GIL) up to `timeout` seconds, or for ever when
    /// None, for the backup; its report as JSON, or None if it still runs.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> Option<String> {
        // NaN or negative: now; too large for a deadline: for ever.
        let deadline = match timeout {
            None => None,
            Some(t) if t.is_nan() || t <= 0.0 => Some(Instant::now()),
            Some(t) => Duration::try_from_secs_f64(t)
                .ok()
                .and_then(|d| Instant::now().checked_add(d)),
        };
        py.detach(|| loop {
            let mut state = lock(&self.state);
            match &*state {
                State::Done(report) => return Some(report.clone()),
                State::Running(run) if deadline.is_none() || run.is_finished() => {
                    // (Running, as just matched: taken out to join it.)
                    if let State::Running(run) = std::mem::replace(&mut *state, State::Joining) {
                        drop(state);
                        let report = report_text(&run.join());
                        *lock(&self.state) = State::Done(report.clone());
                        self.ended.notify_all();
                        return Some(report);
                    }
                }
                State::Running(_) => {
                    drop(state);
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                State::Joining => {
                    let wait = deadline.map_or(Duration::from_millis(100), |d| {
                        d.saturating_duration_since(Instant::now())
                    });
                    if wait.is_zero() {
                        return None;
                    }
                    let _ = self
                        .ended
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|p| p.into_inner());
                }
            }
        })
    }
}

/// A report as `--json` prints it.
fn report_text(report: &backup_engine::RunReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        format!(r#"{{"outcome": "failed", "error": "the report could not be written: {e}"}}"#)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a backup of the profile at `path` on a thread of this process
/// under the profile's once-per-day rule and run lock, and returns at once.
#[pyfunction]
fn start(path: String) -> StartupHandle {
    StartupHandle {
        state: Mutex::new(State::Running(backup_cli::trigger_startup_backup(path))),
        ended: Condvar::new(),
    }
}

/// The module `backup_cli._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(run_json, m)?)?;
    m.add_function(wrap_pyfunction!(profile_problem, m)?)?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_class::<StartupHandle>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
