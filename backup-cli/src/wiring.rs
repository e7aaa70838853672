//! Wiring: the one place that picks the concrete stages for a profile.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use backup_config::{ConfigError, Profile};
use backup_copy::LocalStore;
use backup_core::{CoreError, Progress, SnapshotRef, SnapshotStore};
use backup_engine::metadata::{load_summary, MetadataLoad};
use backup_engine::{error_chain, RunOptions, Stages};
use backup_hash::HashDiffer;
use backup_scan::JwalkScanner;

/// Why the stages for a profile cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The profile is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The destination cannot be reached or used (e.g. credentials refused).
    #[error("{}", error_chain(.0))]
    Destination(CoreError),
    /// The profile names an S3 destination but this build has no S3 support.
    #[error("profile {}: key `destination`: {url} is object storage, but this backup-cli was built without S3 support; install it with `cargo install --path backup-cli --features s3`", profile.display())]
    NoS3Support {
        /// The profile file.
        profile: PathBuf,
        /// The destination URL.
        url: String,
    },
}

impl WiringError {
    /// The process exit code: 2 for a profile to fix, 1 for a destination
    /// that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            WiringError::Destination(_) => 1,
            _ => 2,
        }
    }
}

/// Opens the destination of `profile`, bound to its name and source: a
/// local folder of hard-linked snapshot folders, or (feature `s3`) an
/// S3-compatible bucket. For object storage this checks the credentials
/// and the bucket, so problems show before any scan.
pub fn open_store(profile: &Profile) -> Result<Box<dyn SnapshotStore>, WiringError> {
    let source = backup_config::canonical_or_lexical(&profile.source);
    match &profile.s3 {
        None => Ok(Box::new(LocalStore::new(
            profile.name.clone(),
            source,
            profile.destination.clone(),
        ))),
        #[cfg(feature = "s3")]
        Some(s3) => {
            let opts = backup_s3::S3Options {
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                access_key_env: s3.access_key_env.clone(),
                secret_key_env: s3.secret_key_env.clone(),
            };
            match backup_s3::S3Store::connect(&opts, &profile.name, source) {
                Ok(store) => Ok(Box::new(store)),
                Err(e) => Err(WiringError::Destination(e)),
            }
        }
        #[cfg(not(feature = "s3"))]
        Some(s3) => Err(WiringError::NoS3Support {
            profile: profile.path.clone(),
            url: s3.url(),
        }),
    }
}

/// Where `profile`'s destination is, for messages: its folder or its URL.
pub fn destination_label(profile: &Profile) -> String {
    match &profile.s3 {
        Some(s3) => s3.url(),
        None => profile.destination.display().to_string(),
    }
}

/// The standard stages for `profile`: jwalk scan, hash/diff, its
/// destination (local hard-link snapshots or object storage), the
/// profile's retention rules.
pub fn stages(profile: &Profile, progress: Arc<dyn Progress>) -> Result<Stages, WiringError> {
    let mut scan = profile.scan_options()?;
    scan.skip_at_root
        .push(backup_copy::layout::STATE_DIR.into());
    let source = scan.root.clone();
    Ok(Stages {
        scanner: Box::new(JwalkScanner::new(scan)),
        filters: Vec::new(),
        differ: Box::new(HashDiffer::new(source)),
        store: open_store(profile)?,
        retention: Box::new(profile.keep_rules()),
        progress,
    })
}

/// Run options for `profile`.
pub fn run_options(profile: &Profile, force: bool, dry_run: bool) -> RunOptions {
    let threads = profile.worker_threads();
    RunOptions {
        profile: profile.name.clone(),
        source: backup_config::canonical_or_lexical(&profile.source),
        destination: destination_label(profile),
        metadata_file: profile.metadata_file.clone(),
        lock_file: profile.lock_file.clone(),
        once_per_day: profile.once_per_day,
        force,
        dry_run,
        // Uploads wait on the network more than on the disk or the CPU.
        threads: if profile.s3.is_some() {
            threads.max(8)
        } else {
            threads
        },
    }
}

/// The profile's snapshots in `store`, oldest first (the metadata history
/// counts too, when the metadata file is still there).
pub fn snapshots(
    profile: &Profile,
    store: &dyn SnapshotStore,
) -> Result<Vec<SnapshotRef>, CoreError> {
    let history: HashSet<String> = match load_summary(&profile.metadata_file) {
        MetadataLoad::Loaded(m) => m
            .backup_history
            .iter()
            .filter_map(|h| h.folder_name().map(str::to_owned))
            .collect(),
        _ => HashSet::new(),
    };
    store.list(&history)
}
