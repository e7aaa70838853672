//! Logging: tracing events to the operations log (one line each, RFC 3339
//! timestamp first, appended, rotated past [`LOG_LIMIT`]) and to stderr at
//! the level chosen by `--quiet`, `-v`/`-vv` or `RUST_LOG`.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::Mutex;

use backup_sys::open_regular_with;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Size past which the operations log is moved to `<log>.1` (one old copy
/// is kept), so the log never grows without bound.
pub const LOG_LIMIT: u64 = 10 * 1024 * 1024;

/// Moves `log` to its `.1` name when it is larger than `limit`.
pub fn rotate_if_large(log: &Path, limit: u64) {
    if fs::metadata(log).is_ok_and(|m| m.len() > limit) {
        let _ = fs::rename(log, backup_config::rotated_log(log));
    }
}

/// A run's subscriber: the operations log and stderr. `log_file` is
/// appended to when given and its folder exists; logging problems never
/// stop a run.
pub fn subscriber(
    log_file: Option<&Path>,
    quiet: bool,
    verbose: u8,
) -> impl tracing::Subscriber + Send + Sync {
    let stderr_level = if quiet {
        LevelFilter::ERROR
    } else {
        match verbose {
            0 => LevelFilter::WARN,
            1 => LevelFilter::INFO,
            2 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    };
    let stderr_filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() && !quiet => EnvFilter::new(v),
        // The run's summary event is for the log file: the CLI prints its
        // own summary (so a failure's error is printed once).
        _ => EnvFilter::default()
            .add_directive(stderr_level.into())
            .add_directive(
                format!("{}=off", backup_engine::REPORT_TARGET)
                    .parse()
                    .unwrap_or_else(|_| stderr_level.into()),
            ),
    };
    // Colors only on a terminal, and never with NO_COLOR set (no-color.org).
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .without_time()
        .with_filter(stderr_filter);
    let file_layer = log_file
        .filter(|p| p.parent().is_some_and(|d| d.is_dir()))
        .and_then(|p| {
            rotate_if_large(p, LOG_LIMIT);
            // Never through a symlink or into a FIFO (which would block).
            open_regular_with(p, OpenOptions::new().create(true).append(true))
                .ok()
                .map(|(f, _)| f)
        })
        .map(|f| {
            let level = if verbose >= 2 {
                LevelFilter::DEBUG
            } else {
                LevelFilter::INFO
            };
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(f))
                .with_ansi(false)
                .with_target(false)
                .with_filter(level)
        });
    tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
}

/// Makes `subscriber` the process's (the binary's; a library caller keeps
/// its own, see `run_captured`). A second call changes nothing.
pub fn init(subscriber: impl tracing::Subscriber + Send + Sync + 'static) {
    // try_init, not set_global_default: it also forwards the `log` records
    // of dependencies (globset, the S3 client).
    let _ = subscriber.try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_log_is_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ops.log");
        fs::write(&log, vec![b'x'; 100]).unwrap();
        rotate_if_large(&log, 50);
        assert!(!log.exists());
        assert_eq!(
            fs::metadata(dir.path().join("ops.log.1")).unwrap().len(),
            100
        );
        fs::write(&log, b"small").unwrap();
        rotate_if_large(&log, 50);
        assert!(log.exists());
    }
}
