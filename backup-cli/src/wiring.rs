//! Wiring: the one place that picks the concrete stages for a profile.

use std::collections::HashSet;
use std::sync::Arc;

use backup_config::{ConfigError, Profile};
use backup_copy::LocalStore;
use backup_core::metadata::MetadataLoad;
use backup_core::snapshot::list_snapshots;
use backup_core::{CoreError, Progress, RunOptions, SnapshotRef, Stages};
use backup_hash::HashDiffer;
use backup_rotate::LocalRemover;
use backup_scan::JwalkScanner;

/// The standard stages for `profile`: jwalk scan, hash/diff, local
/// hard-link snapshots, the profile's retention rules.
pub fn stages(profile: &Profile, progress: Arc<dyn Progress>) -> Result<Stages, ConfigError> {
    let scan = profile.scan_options()?;
    let source = scan.root.clone();
    Ok(Stages {
        scanner: Box::new(JwalkScanner::new(scan)),
        filters: Vec::new(),
        differ: Box::new(HashDiffer::new(source.clone())),
        store: Box::new(LocalStore::new(source, profile.destination.clone())),
        retention: Box::new(profile.keep_rules()),
        remover: Box::new(LocalRemover),
        progress,
    })
}

/// Run options for `profile`.
pub fn run_options(profile: &Profile, force: bool, dry_run: bool) -> RunOptions {
    RunOptions {
        profile: profile.name.clone(),
        source: backup_config::canonical_or_lexical(&profile.source),
        destination: profile.destination.clone(),
        metadata_file: profile.metadata_file.clone(),
        lock_file: profile.lock_file.clone(),
        once_per_day: profile.once_per_day,
        force,
        dry_run,
        threads: profile.worker_threads(),
    }
}

/// The profile's snapshots, oldest first, from the destination (and the
/// metadata history, when the metadata file is still there).
pub fn snapshots(profile: &Profile) -> Result<Vec<SnapshotRef>, CoreError> {
    let history: HashSet<String> = match backup_core::metadata::load_summary(&profile.metadata_file)
    {
        MetadataLoad::Loaded(m) => m
            .backup_history
            .iter()
            .filter_map(|h| h.folder_name().map(str::to_owned))
            .collect(),
        _ => HashSet::new(),
    };
    let source = backup_config::canonical_or_lexical(&profile.source);
    list_snapshots(&profile.destination, &profile.name, Some(&source), &history)
}
