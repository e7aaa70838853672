//! The vocabulary of a benchmark run, shared by the runner ([`crate::app::bench`])
//! and the report ([`crate::app::report`]): the compared tools, the scenarios
//! and their targets, the timed samples, and the results of a whole run
//! with the corpus and the machine it ran on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::app::corpus::CorpusSize;
use crate::app::fsutil::TreeSummary;
use crate::app::measure::Measured;

/// A benchmarked program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// backup-cli itself.
    Ours,
    /// `find SRC -printf '%s %T@\n'`: the floor for looking at every file.
    Find,
    /// `cp -a`: the floor for copying.
    Cpa,
    /// `cp -al` of the previous snapshot: the floor for a linked snapshot.
    Cpal,
    /// `rsync -a --delete --link-dest=PREV`.
    Rsync,
    /// restic.
    Restic,
    /// BorgBackup.
    Borg,
    /// backup-cli backing up to the loopback S3 server.
    OursS3,
    /// restic backing up to the loopback S3 server (`-r s3:…`).
    ResticS3,
}

impl Tool {
    /// Every tool, in table order.
    pub const ALL: [Tool; 9] = [
        Tool::Ours,
        Tool::Find,
        Tool::Cpa,
        Tool::Cpal,
        Tool::Rsync,
        Tool::Restic,
        Tool::Borg,
        Tool::OursS3,
        Tool::ResticS3,
    ];

    /// The name used on the command line (`--tools`).
    pub fn key(self) -> &'static str {
        match self {
            Tool::Ours => "ours",
            Tool::Find => "find",
            Tool::Cpa => "cpa",
            Tool::Cpal => "cpal",
            Tool::Rsync => "rsync",
            Tool::Restic => "restic",
            Tool::Borg => "borg",
            Tool::OursS3 => "ours-s3",
            Tool::ResticS3 => "restic-s3",
        }
    }

    /// The name shown in tables.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Ours => "backup-cli",
            Tool::Find => "find",
            Tool::Cpa => "cp -a",
            Tool::Cpal => "cp -al",
            Tool::Rsync => "rsync",
            Tool::Restic => "restic",
            Tool::Borg => "borg",
            Tool::OursS3 => "backup-cli → S3",
            Tool::ResticS3 => "restic → S3",
        }
    }

    /// Whether it backs up to the loopback S3 server.
    pub fn is_s3(self) -> bool {
        matches!(self, Tool::OursS3 | Tool::ResticS3)
    }

    /// Parses a `--tools` name.
    pub fn parse(s: &str) -> Result<Tool> {
        Tool::ALL
            .into_iter()
            .find(|t| t.key() == s.trim())
            .with_context(|| {
                format!(
                    "unknown tool {s:?}; use some of {}",
                    Tool::ALL.map(|t| t.key()).join(",")
                )
            })
    }

    /// The external program it needs (none for ours, which is `--bin`).
    pub fn program(self) -> Option<&'static str> {
        match self {
            Tool::Ours | Tool::OursS3 => None,
            Tool::Find => Some("find"),
            Tool::Cpa | Tool::Cpal => Some("cp"),
            Tool::Rsync => Some("rsync"),
            Tool::Restic | Tool::ResticS3 => Some("restic"),
            Tool::Borg => Some("borg"),
        }
    }

    /// Whether this tool takes part in `sc`.
    pub fn runs_in(self, sc: Scenario) -> bool {
        use Scenario::*;
        match self {
            Tool::Ours | Tool::Restic | Tool::Borg => true,
            Tool::Find | Tool::Rsync => matches!(sc, Initial | NoChange | Mutate),
            Tool::Cpa => matches!(sc, Initial | Restore | Verify),
            Tool::Cpal => sc == Mutate,
            Tool::OursS3 | Tool::ResticS3 => matches!(sc, Initial | Mutate),
        }
    }
}

/// A benchmark scenario, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// First backup into an empty destination.
    Initial,
    /// Backup again with nothing changed.
    NoChange,
    /// Backup after `mutate` (1% changed, 0.5% added, 0.5% deleted).
    Mutate,
    /// Restore the latest snapshot into an empty folder.
    Restore,
    /// Verify the latest snapshot.
    Verify,
}

impl Scenario {
    /// Every scenario, in running order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Initial,
        Scenario::NoChange,
        Scenario::Mutate,
        Scenario::Restore,
        Scenario::Verify,
    ];

    /// The short name.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::Initial => "initial",
            Scenario::NoChange => "no-change",
            Scenario::Mutate => "after-mutate",
            Scenario::Restore => "restore",
            Scenario::Verify => "verify",
        }
    }

    /// A one-line description.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::Initial => "initial full backup into an empty destination",
            Scenario::NoChange => "backup again, nothing changed",
            Scenario::Mutate => "backup after mutate (1% changed, 0.5% added, 0.5% deleted)",
            Scenario::Restore => "restore the latest snapshot into an empty folder",
            Scenario::Verify => "verify the latest snapshot (re-read and check every file)",
        }
    }

    /// backup-cli's target: at most this many times the reference tool.
    pub fn target(self) -> (Tool, f64) {
        match self {
            Scenario::Initial => (Tool::Cpa, 1.3),
            Scenario::NoChange => (Tool::Find, 1.5),
            Scenario::Mutate => (Tool::Cpal, 1.3),
            Scenario::Restore | Scenario::Verify => (Tool::Cpa, 1.3),
        }
    }
}

/// backup-cli's peak RSS target, MiB.
pub const RSS_TARGET_MIB: f64 = 100.0;

/// One timed run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// What was measured.
    pub m: Measured,
    /// Seconds a `sync` took right after the run (write-back the run left).
    pub sync_after: f64,
    /// Bytes the run processed, where the tool reports it (backup-cli).
    pub bytes: Option<u64>,
    /// Files the run looked at, where the tool reports it (backup-cli).
    pub files: Option<u64>,
    /// CPU seconds the S3 server used during the run (S3 tools only).
    pub server_cpu: Option<f64>,
    /// Whether the run did what was expected.
    pub ok: bool,
}

/// The corpus a run used.
#[derive(Clone, Debug)]
pub struct CorpusInfo {
    /// Its size name.
    pub size: CorpusSize,
    /// Its seed.
    pub seed: u64,
    /// Its path.
    pub path: PathBuf,
    /// Whether it was generated by this run (and how long it took).
    pub generated_secs: Option<f64>,
    /// Mutation rounds applied to it before this run.
    pub mutations_before: u64,
    /// The whole tree at the start of the run.
    pub all: TreeSummary,
    /// What the tools back up (after exclusions) at the start of the run.
    pub kept: TreeSummary,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct Results {
    /// Timed runs by scenario and tool, in running order.
    pub samples: BTreeMap<(Scenario, Tool), Vec<Sample>>,
    /// Tools that took part.
    pub tools: Vec<Tool>,
    /// Things that went wrong or looked wrong.
    pub anomalies: Vec<String>,
    /// Results of the consistency checks.
    pub checks: Vec<String>,
    /// Tools skipped, and why.
    pub skipped: Vec<String>,
    /// The corpus.
    pub corpus: CorpusInfo,
    /// `(tool, version line)`.
    pub versions: Vec<(String, String)>,
    /// The machine.
    pub machine: Machine,
    /// Timed runs per scenario and tool.
    pub runs: usize,
    /// The command line.
    pub command_line: String,
    /// The backup-cli binary used.
    pub bin: PathBuf,
    /// The loopback S3 server's peak RSS over the run, MiB (when it ran).
    pub s3_server_peak_mib: Option<f64>,
}

/// The machine a benchmark ran on.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Usable cores.
    pub cores: usize,
    /// Total memory.
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// `df -T` line of the work dir.
    pub df: String,
    /// Mount options of that file system.
    pub mount_options: String,
    /// /proc/loadavg when the run started.
    pub load_at_start: String,
}

impl Machine {
    /// Looks the machine up; unknown fields stay empty.
    pub fn probe(work: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map(|k| format!("{:.1} GiB", k / 1024.0 / 1024.0))
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let df_out = Command::new("df")
            .arg("-T")
            .arg(work)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let df = df_out
            .lines()
            .nth(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let mount_point = df.split_whitespace().last().unwrap_or("").to_string();
        let mount_options = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .rev()
            .find(|f| f.len() >= 4 && f[1] == mount_point)
            .map(|f| format!("{} {}", f[2], f[3]))
            .unwrap_or_default();
        let load_at_start = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Machine {
            load_at_start,
            cpu,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory,
            kernel,
            df,
            mount_options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_round_trip() {
        for t in Tool::ALL {
            assert_eq!(Tool::parse(t.key()).expect("parse"), t);
        }
        assert!(Tool::parse("tar").is_err());
    }

    #[test]
    fn every_scenario_has_its_reference() {
        for sc in Scenario::ALL {
            let (reference, ratio) = sc.target();
            assert!(reference.runs_in(sc), "{sc:?}");
            assert!(ratio >= 1.0);
            assert!(Tool::Ours.runs_in(sc));
        }
    }
}
