//! Runner tests with test doubles for every stage.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use super::*;
use backup_core::entry::FileStat;
use backup_core::entry::ScanEntry;
use backup_core::plan::{Action, Change, PlannedEntry};
use backup_core::stage::{Kept, RotationPlan, SnapshotWriter};
use backup_core::{RelPath, ScanBatch, ScanEvent, SnapshotInfo, WrittenEntry};
use chrono::Local;

struct OneFileScanner {
    panic: bool,
}

impl Scanner for OneFileScanner {
    fn scan(
        &self,
        out: crossbeam_channel::Sender<ScanBatch>,
        _cancel: &AtomicBool,
    ) -> Result<(), CoreError> {
        if self.panic {
            panic!("scanner bug");
        }
        let _ = out.send(vec![ScanEvent::Entry(ScanEntry {
            path: RelPath::new("a.txt").unwrap(),
            kind: EntryKind::File,
            stat: FileStat {
                size: 1,
                ..FileStat::default()
            },
            link_target: None,
        })]);
        Ok(())
    }
}

struct CopyAll;

impl Differ for CopyAll {
    fn plan(&self, entry: ScanEntry, _prev: &PrevIndex) -> PlannedEntry {
        PlannedEntry {
            entry,
            change: Change::Added,
            action: Action::Copy,
            prev_index: None,
            previous_version: None,
        }
    }
}

/// A store whose writes fail like a full disk; counts aborts.
struct FullDisk {
    aborted: Arc<AtomicUsize>,
}

struct FullDiskWriter {
    aborted: Arc<AtomicUsize>,
}

/// An empty store: no snapshots yet.
impl SnapshotStore for FullDisk {
    fn list(&self, _history: &HashSet<String>) -> Result<Vec<SnapshotRef>, CoreError> {
        Ok(Vec::new())
    }
    fn read_manifest(&self, s: &SnapshotRef) -> Result<backup_core::ManifestEntries, CoreError> {
        Err(CoreError::NotFound(s.name.clone()))
    }
    fn open_content(
        &self,
        s: &SnapshotRef,
        _entry: &ManifestEntry,
    ) -> Result<backup_core::Content, CoreError> {
        Err(CoreError::NotFound(s.name.clone()))
    }
    fn next_name(
        &self,
        now: chrono::DateTime<Local>,
        history: &HashSet<String>,
    ) -> Result<String, CoreError> {
        Ok(backup_naming::next_name_among(
            std::iter::empty(),
            "T",
            now,
            history,
        ))
    }
    fn remove_leftovers(&self) -> Result<Vec<String>, CoreError> {
        Ok(Vec::new())
    }
    fn begin(
        &self,
        _name: &str,
        _previous: Option<&SnapshotRef>,
    ) -> Result<Box<dyn SnapshotWriter>, CoreError> {
        Ok(Box::new(FullDiskWriter {
            aborted: Arc::clone(&self.aborted),
        }))
    }
    fn remove(&self, _snapshot: &SnapshotRef) -> Result<(), CoreError> {
        Ok(())
    }
    fn verify(
        &self,
        _snapshots: &[SnapshotRef],
        _quick: bool,
        _threads: usize,
        _progress: &dyn Progress,
    ) -> Result<backup_core::VerifyReport, CoreError> {
        Ok(backup_core::VerifyReport::default())
    }
    fn repair(
        &self,
        _snapshot: &SnapshotRef,
        _entry: &ManifestEntry,
    ) -> Result<backup_core::Repair, CoreError> {
        Ok(backup_core::Repair::NotRepaired("a test double".into()))
    }
}

impl SnapshotWriter for FullDiskWriter {
    fn write(&self, planned: PlannedEntry) -> Result<WrittenEntry, CoreError> {
        Err(CoreError::destination(
            "write",
            planned.entry.path.as_path(),
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ))
    }
    fn record(&self, _entry: &ManifestEntry) -> Result<(), CoreError> {
        Ok(())
    }
    fn commit(&self, _info: &SnapshotInfo) -> Result<String, CoreError> {
        panic!("must not commit after a fatal error")
    }
    fn abort(&self) {
        self.aborted.fetch_add(1, Ordering::SeqCst);
    }
}

struct KeepAll;

impl RetentionPolicy for KeepAll {
    fn plan(&self, snapshots: &[SnapshotRef]) -> RotationPlan {
        RotationPlan {
            keep: snapshots
                .iter()
                .map(|s| Kept {
                    name: s.name.clone(),
                    reasons: vec!["all".into()],
                })
                .collect(),
            delete: Vec::new(),
        }
    }
}

fn setup(panic: bool, aborted: Arc<AtomicUsize>) -> (tempfile::TempDir, RunOptions, Stages) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    std::fs::create_dir(&source).unwrap();
    let opts = RunOptions {
        profile: "T".into(),
        source: source.clone(),
        destination: dir.path().join("dest").display().to_string(),
        metadata_file: source.join("backup_metadata.json"),
        lock_file: source.join("backup_in_progress.lock"),
        once_per_day: true,
        force: false,
        dry_run: false,
        threads: 2,
        notices: Vec::new(),
    };
    let stages = Stages {
        scanner: Box::new(OneFileScanner { panic }),
        filters: Vec::new(),
        differ: Box::new(CopyAll),
        store: Box::new(FullDisk { aborted }),
        retention: Box::new(KeepAll),
        progress: Arc::new(backup_core::NoProgress),
    };
    (dir, opts, stages)
}

#[test]
fn a_panicking_stage_fails_the_run_and_releases_the_lock() {
    let (_dir, opts, stages) = setup(true, Arc::default());
    let report = run_backup(&opts, &stages);
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.error.as_deref().unwrap().contains("panicked"));
    assert!(!opts.lock_file.exists(), "lock file left behind");
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn a_fatal_destination_error_aborts_the_snapshot_and_writes_no_metadata() {
    let aborted = Arc::new(AtomicUsize::new(0));
    let (_dir, opts, stages) = setup(false, Arc::clone(&aborted));
    let report = run_backup(&opts, &stages);
    assert_eq!(report.outcome, Outcome::Failed);
    let err = report.error.unwrap();
    assert!(err.contains("full"), "{err}");
    assert_eq!(aborted.load(Ordering::SeqCst), 1);
    assert!(!opts.metadata_file.exists());
    assert!(!opts.lock_file.exists());
}

#[test]
fn a_held_lock_skips_the_run() {
    let (_dir, opts, stages) = setup(false, Arc::default());
    let LockAttempt::Acquired(_held) = RunLock::try_acquire(&opts.lock_file).unwrap() else {
        panic!("lock")
    };
    let report = run_backup(&opts, &stages);
    assert_eq!(report.outcome, Outcome::SkippedLocked);
    assert_eq!(
        report.lock_holder.as_ref().unwrap().pid,
        Some(std::process::id())
    );
    assert_eq!(report.exit_code(), 0);
}
