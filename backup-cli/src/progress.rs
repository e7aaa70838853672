//! [`BarProgress`]: the library's [`Progress`] trait drawn with indicatif on
//! stderr. Used only when stderr is a terminal and neither `--quiet` nor
//! `--json` is given.

use std::sync::Mutex;
use std::time::Duration;

use backup_core::{Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar per phase.
#[derive(Default)]
pub struct BarProgress {
    /// The bar, and whether it counts bytes (else entries).
    bar: Mutex<Option<(ProgressBar, bool)>>,
}

impl Progress for BarProgress {
    fn start(&self, phase: Phase, total_files: Option<u64>, total_bytes: Option<u64>) {
        let label = match phase {
            Phase::Scan => "scan",
            Phase::Copy => "copy",
            Phase::Rotate => "rotate",
            Phase::Verify => "verify",
            Phase::Restore => "restore",
        };
        let by_bytes = total_bytes.is_some_and(|b| b > 0);
        let bar = match total_bytes.filter(|b| *b > 0) {
            Some(bytes) => {
                let b = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>7} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = ProgressBar::with_draw_target(total_files, ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>7} {spinner} {pos} entries {per_sec} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b
            }
        };
        bar.set_prefix(label);
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Some((old, _)) = self
            .bar
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((bar, by_bytes))
        {
            old.finish_and_clear();
        }
    }

    fn inc(&self, files: u64, bytes: u64) {
        if let Some((b, by_bytes)) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            b.inc(if *by_bytes { bytes } else { files });
        }
    }

    fn finish(&self) {
        if let Some((b, _)) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}
