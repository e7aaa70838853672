//! [`BarProgress`]: the library's [`Progress`] trait drawn with indicatif on
//! stderr, one bar per phase (the scan's and the copy's are shown together
//! while they overlap). Used only when stderr is a terminal and neither
//! `--quiet` nor `--json` is given.

use std::time::Duration;

use backup_core::{Phase, PhaseProgress, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress bars on stderr.
pub struct BarProgress {
    bars: MultiProgress,
}

impl Default for BarProgress {
    fn default() -> Self {
        BarProgress {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }
}

impl Progress for BarProgress {
    fn start(
        &self,
        phase: Phase,
        total_files: Option<u64>,
        total_bytes: Option<u64>,
    ) -> Box<dyn PhaseProgress> {
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
                let b = ProgressBar::new(bytes);
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
                let b = match total_files {
                    Some(n) => ProgressBar::new(n),
                    None => ProgressBar::no_length(),
                };
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>7} {spinner} {pos} entries {per_sec} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b
            }
        };
        let bar = self.bars.add(bar);
        bar.set_prefix(label);
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(Bar { bar, by_bytes })
    }
}

/// One phase's bar: counts bytes when the phase knows its total bytes,
/// else entries; cleared when the phase ends.
struct Bar {
    bar: ProgressBar,
    by_bytes: bool,
}

impl PhaseProgress for Bar {
    fn inc(&self, files: u64, bytes: u64) {
        self.bar.inc(if self.by_bytes { bytes } else { files });
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
