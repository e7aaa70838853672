//! Wiring: the one place that turns a profile (plain data, validated by
//! `backup-config`) into what the stages need (exclusion matchers, scan
//! options, retention rules, a connected store) and picks the concrete
//! stages. [`load_profile`] is where every command gets its profile, so
//! the checks that need those built values (exclusion patterns compile, the
//! destination is not inside an excluded folder) fail every command alike.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_config::{ConfigError, Destination, Profile, Retention};
use backup_copy::LocalStore;
use backup_core::{CoreError, Progress, SnapshotRef, SnapshotStore};
use backup_engine::metadata::{load_summary, MetadataLoad};
use backup_engine::{error_chain, RunOptions, Stages};
use backup_hash::HashDiffer;
use backup_rotate::KeepRules;
use backup_scan::{ExcludeSet, JwalkScanner, ScanOptions, DEFAULT_EXCLUDES};

/// Why the stages for a profile cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The profile is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The destination cannot be reached or used (e.g. credentials refused).
    #[error(transparent)]
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

/// A profile's problem, as the Python package raises it (`ProfileError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileProblem {
    /// The whole message, as the binary prints it.
    pub message: String,
    /// The key at fault, when one is.
    pub key: Option<&'static str>,
    /// The profile file.
    pub path: PathBuf,
}

/// What the binary would refuse (exit 2) in the profile at `path` before a
/// backup: [`load_profile`], the source, then [`check_for_backup`] (which
/// probes the state files' folder by creating and removing a file of its
/// own). `None` when a backup can start.
pub fn profile_problem(path: &Path) -> Option<ProfileProblem> {
    let checked = load_profile(path).and_then(|profile| {
        profile.check_source()?;
        check_for_backup(&profile)
    });
    let e = checked.err()?;
    let (key, at) = match &e {
        ConfigError::Invalid { key, path, .. } => (Some(*key), path.clone()),
        ConfigError::Read { path, .. } | ConfigError::Parse { path, .. } => (None, path.clone()),
        _ => (None, path.to_path_buf()),
    };
    Some(ProfileProblem {
        message: e.to_string(),
        key,
        path: at,
    })
}

/// Reads and validates the profile at `path`, including the checks on
/// built values: its exclusion patterns compile, and a destination folder
/// inside the source does not lie in an excluded folder.
pub fn load_profile(path: &Path) -> Result<Profile, ConfigError> {
    let profile = Profile::load(path)?;
    let excludes = exclude_set(&profile)?;
    if let Some(folder) = profile.destination.folder() {
        let dst = backup_config::canonical_or_lexical(folder);
        if let Ok(rel) = dst.strip_prefix(&profile.canonical_source) {
            let mut prefix = PathBuf::new();
            for c in rel.components() {
                prefix.push(c);
                if excludes.is_excluded(&prefix, true) {
                    return Err(profile.invalid(
                        "destination",
                        format!(
                            "lies inside the excluded path {}; excluded folders are often caches that get wiped: choose another destination",
                            prefix.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(profile)
}

/// The checks a run that writes needs and a read command does not (those
/// work from the destination alone, even with the project gone): the lock
/// and the log are the tool's own files in existing folders, and a
/// destination inside the source holds nothing but snapshots.
pub fn check_for_backup(profile: &Profile) -> Result<(), ConfigError> {
    check_state_files(profile)?;
    let Some(folder) = profile.destination.folder() else {
        return Ok(());
    };
    let dst = backup_config::canonical_or_lexical(folder);
    if !dst.starts_with(&profile.canonical_source) {
        return Ok(());
    }
    // The destination is never backed up: inside the source, it must hold
    // nothing but the tool's snapshots.
    let own = profile.state_paths();
    let foreign = backup_copy::layout::foreign_entries(&dst, &own, 5).map_err(|e| {
        profile.invalid(
            "destination",
            format!(
                "{} cannot be read ({e}); fix its permissions or choose another folder",
                dst.display()
            ),
        )
    })?;
    if foreign.is_empty() {
        return Ok(());
    }
    Err(profile.invalid(
        "destination",
        format!(
            "{} lies inside the source and holds files that are not snapshots ({}); a destination is never backed up, so they would drop out of every snapshot: choose an empty folder, or one outside the source",
            dst.display(),
            foreign.join(", ")
        ),
    ))
}

/// How much of an existing state file is read to recognise it.
const RECOGNISE_LIMIT: u64 = 4096;

/// The first bytes of an existing file, following symlinks (`None` when
/// there is no file; no bytes when it is not a regular file).
fn head_of(path: &Path) -> Result<Option<(std::fs::Metadata, Vec<u8>)>, std::io::Error> {
    use std::io::Read;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Ok(Some((meta, Vec::new())));
    }
    let mut head = Vec::new();
    backup_sys::open_regular(path)?
        .0
        .take(RECOGNISE_LIMIT)
        .read_to_end(&mut head)?;
    Ok(Some((meta, head)))
}

/// Whether `head` starts like a line of the operations log: a date and
/// time (`YYYY-MM-DDTHH…` as this tool writes, or `YYYY-MM-DD HH…` as the
/// original Python system's logging did), after an optional byte-order mark.
fn is_log_head(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let digits = |r: std::ops::Range<usize>| {
        head.get(r)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    digits(0..4)
        && head.get(4) == Some(&b'-')
        && digits(5..7)
        && head.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(head.get(10), Some(b'T' | b' '))
}

/// Whether a running backup holds the lock file at `path` (then it is this
/// tool's, whatever it holds at this instant).
fn lock_is_held(path: &Path) -> bool {
    let Ok((file, _)) = backup_sys::open_regular(path) else {
        return false;
    };
    backup_sys::lock::is_held_elsewhere(&file)
}

/// A backup cannot run without its lock file: the lock's folder must be
/// writable (by default it is the source itself, which may be a read-only
/// mount or another user's folder). Probed by creating and removing a file
/// of the tool's own name, since permission bits do not tell a read-only
/// mount. The message names every state file kept in that folder, since
/// they all move the same way. (The metadata file is a cache and the log a
/// record: where they cannot be written, the run warns and goes on.)
fn check_state_folders_writable(profile: &Profile) -> Result<(), ConfigError> {
    let Some(dir) = profile.lock_file.parent() else {
        return Ok(());
    };
    let Err(e) = probe_writable(dir) else {
        return Ok(());
    };
    let keys: Vec<String> = [
        ("lock_file", &profile.lock_file),
        ("metadata_file", &profile.metadata_file),
        ("log_file", &profile.log_file),
    ]
    .into_iter()
    .filter(|(_, p)| p.parent() == Some(dir))
    .map(|(k, _)| format!("`{k}`"))
    .collect();
    let hint = if dir.starts_with(&profile.canonical_source) {
        " (by default they live in the source); set them to paths in a writable folder outside the source"
    } else {
        "; set them to paths in a writable folder"
    };
    Err(profile.invalid(
        "lock_file",
        format!(
            "{} cannot be written ({e}): {} cannot be kept there{hint}",
            dir.display(),
            keys.join(", "),
        ),
    ))
}

/// Numbers the write probes of this process.
static PROBE_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Creates and removes a file of the tool's own name in `dir`: a name of
/// this process and call, so that runs starting at once (two threads of a
/// server, two processes) never take each other's probe for "cannot write";
/// a name left by a killed run is passed over, never removed.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..8 {
        let n = PROBE_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = dir.join(format!(".backup-cli-write-test-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => return std::fs::remove_file(&probe),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free probe name")))
}

/// Why the operations log cannot be written, if it cannot (the run goes
/// on, and says so: never silently no log).
fn log_problem(profile: &Profile) -> Option<String> {
    let log = &profile.log_file;
    if std::fs::metadata(log).is_ok_and(|m| is_char_device(&m)) {
        return None; // /dev/null: no log, on purpose
    }
    let writable = match std::fs::symlink_metadata(log) {
        Ok(_) => std::fs::OpenOptions::new().append(true).open(log).map(drop),
        Err(_) => log.parent().map_or(Ok(()), probe_writable),
    };
    writable.err().map(|e| {
        format!(
            "{} (log_file) cannot be written ({e}): this run keeps no operations log; point log_file at a writable file",
            log.display()
        )
    })
}

/// A state-file key, its path, how to recognise the tool's own file, and
/// why another file is refused.
type StateFileCheck<'a> = (&'static str, &'a Path, fn(&[u8]) -> bool, &'static str);

/// The lock and the log are only ever the tool's own files: a `lock_file`
/// that holds anything but a lock's text (it is removed when a run ends),
/// or a `log_file` that is not empty and not the tool's log (it is
/// appended to), is refused, naming the key, before anything is touched.
/// (A foreign `metadata_file` is moved aside by the run instead.) The
/// folders of all three must exist.
fn check_state_files(profile: &Profile) -> Result<(), ConfigError> {
    for (key, path) in [
        ("lock_file", &profile.lock_file),
        ("metadata_file", &profile.metadata_file),
        ("log_file", &profile.log_file),
    ] {
        if path.parent().is_some_and(|d| !d.is_dir()) {
            return Err(profile.invalid(
                key,
                format!(
                    "{}: its folder does not exist; create it or choose another path",
                    path.display()
                ),
            ));
        }
    }
    check_state_folders_writable(profile)?;
    // A metadata file is a cache (written next to itself, renamed over):
    // one that cannot be written later is a warning, but a folder in its
    // place is a profile mistake, said up front.
    if std::fs::symlink_metadata(&profile.metadata_file).is_ok_and(|m| m.is_dir()) {
        return Err(profile.invalid(
            "metadata_file",
            format!(
                "{} is a folder; point metadata_file at a file name",
                profile.metadata_file.display()
            ),
        ));
    }
    let checks: [StateFileCheck<'_>; 2] = [
        (
            "lock_file",
            &profile.lock_file,
            |h| std::str::from_utf8(h).is_ok_and(backup_engine::is_lock_text),
            "is not a backup-cli lock file (a run removes its lock file when it ends)",
        ),
        (
            "log_file",
            &profile.log_file,
            |h| h.is_empty() || is_log_head(h),
            "is not empty and not a backup-cli operations log (runs append to it)",
        ),
    ];
    for (key, path, is_ours, why) in checks {
        let found = head_of(path).map_err(|e| {
            profile.invalid(
                key,
                format!(
                    "{} cannot be checked ({e}); point {key} at a file this user can write",
                    path.display()
                ),
            )
        })?;
        let Some((meta, head)) = found else { continue };
        if key == "log_file" && is_char_device(&meta) {
            continue; // /dev/null: no log
        }
        if !meta.is_file() {
            return Err(profile.invalid(
                key,
                format!(
                    "{} exists and is not a regular file; point {key} at a new file name",
                    path.display()
                ),
            ));
        }
        if key == "lock_file" && lock_is_held(path) {
            continue; // a running backup's lock, possibly being rewritten
        }
        if !is_ours(&head) {
            return Err(profile.invalid(
                key,
                format!(
                    "{} {why}; leave that file alone and point {key} at a new file name",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_char_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device()
}

#[cfg(not(unix))]
fn is_char_device(_meta: &std::fs::Metadata) -> bool {
    false
}

/// The default and profile exclusions, compiled.
pub fn exclude_set(profile: &Profile) -> Result<ExcludeSet, ConfigError> {
    let defaults: &[&str] = if profile.default_excludes {
        DEFAULT_EXCLUDES
    } else {
        &[]
    };
    let all = defaults
        .iter()
        .map(|s| s.to_string())
        .chain(profile.exclude.iter().cloned());
    ExcludeSet::new(all).map_err(|e| profile.invalid("exclude", error_chain(&e)))
}

/// Options for the scan stage.
pub fn scan_options(profile: &Profile) -> Result<ScanOptions, ConfigError> {
    Ok(ScanOptions {
        root: profile.canonical_source.clone(),
        excludes: exclude_set(profile)?,
        excluded_paths: profile.state_paths(),
        exclude_caches: profile.exclude_caches,
        exclude_if_present: profile.exclude_if_present.clone(),
        respect_gitignore: profile.respect_gitignore,
        // A restored snapshot backed up again must not record its old
        // manifest as a file.
        skip_at_root: vec![backup_copy::layout::STATE_DIR.into()],
        // The walk is serial (memory stays flat); `threads` sizes the
        // hash and copy workers.
        threads: 0,
    })
}

/// Names of every common shape (plain, with an extension, dotted, a
/// project's usual files), each tried as a file and as a folder: patterns
/// that exclude all of them exclude everything.
const PROBES: &[&str] = &[
    "a", "a.txt", "a.b.c", "README", "Makefile", "main.py", "src", "x_1",
];

/// Refuses exclusions that exclude everything (every probe name, as file
/// and as folder) when the source has entries (its state files and the
/// destination aside): every run would find "no changes" and never make a
/// snapshot. Decided on the patterns, so a source that merely holds only
/// excluded things (`.git/` alone) is not an error.
fn check_something_is_kept(profile: &Profile, scan: &ScanOptions) -> Result<(), ConfigError> {
    let everything = PROBES.iter().all(|p| {
        scan.excludes.is_excluded(Path::new(p), false)
            && scan.excludes.is_excluded(Path::new(p), true)
    });
    if !everything {
        return Ok(());
    }
    let Ok(read) = std::fs::read_dir(&scan.root) else {
        return Ok(()); // check_source reports a missing source
    };
    let has_entries = read.flatten().any(|entry| {
        !scan.excluded_paths.contains(&entry.path())
            && !scan.skip_at_root.contains(&entry.file_name())
    });
    if !has_entries {
        return Ok(());
    }
    Err(profile.invalid(
        "exclude",
        format!(
            "excludes everything, so nothing of {} would ever be backed up (exclude = [{}]); remove the pattern that matches every name",
            scan.root.display(),
            profile.exclude.join(", ")
        ),
    ))
}

/// The retention rules: `[retention]`, or keep the last `max_backups`.
pub fn keep_rules(profile: &Profile) -> KeepRules {
    match profile.retention {
        Some(Retention {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
        }) => KeepRules {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
        },
        None => KeepRules::last(profile.max_backups),
    }
}

/// Opens the destination of `profile`, bound to its name and source: a
/// local folder of hard-linked snapshot folders, or (feature `s3`) an
/// S3-compatible bucket. For object storage this checks the credentials
/// and the bucket, so problems show before any scan.
pub fn open_store(profile: &Profile) -> Result<Box<dyn SnapshotStore>, WiringError> {
    let source = profile.canonical_source.clone();
    match &profile.destination {
        Destination::Folder(folder) => Ok(Box::new(LocalStore::new(
            profile.name.clone(),
            source,
            folder.clone(),
        ))),
        #[cfg(feature = "s3")]
        Destination::S3(s3) => {
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
        Destination::S3(s3) => Err(WiringError::NoS3Support {
            profile: profile.path.clone(),
            url: s3.url(),
        }),
    }
}

/// The standard stages for `profile`: jwalk scan, hash/diff, its
/// destination (local hard-link snapshots or object storage), the
/// profile's retention rules.
pub fn stages(profile: &Profile, progress: Arc<dyn Progress>) -> Result<Stages, WiringError> {
    let scan = scan_options(profile)?;
    check_something_is_kept(profile, &scan)?;
    let source = scan.root.clone();
    Ok(Stages {
        scanner: Box::new(JwalkScanner::new(scan)),
        filters: Vec::new(),
        differ: Box::new(HashDiffer::new(source)),
        store: open_store(profile)?,
        retention: Box::new(keep_rules(profile)),
        progress,
    })
}

/// Run options for `profile`.
pub fn run_options(profile: &Profile, force: bool, dry_run: bool) -> RunOptions {
    let threads = profile.worker_threads();
    let mut notices = Vec::new();
    let state = profile
        .canonical_source
        .join(backup_copy::layout::STATE_DIR);
    if state.symlink_metadata().is_ok() {
        notices.push(format!(
            "{} is left out: it is a snapshot's own record (is the source a restored snapshot?); copy it elsewhere if you need it backed up",
            state.display()
        ));
    }
    if !dry_run {
        notices.extend(log_problem(profile));
    }
    RunOptions {
        profile: profile.name.clone(),
        source: profile.canonical_source.clone(),
        destination: profile.destination.to_string(),
        metadata_file: profile.metadata_file.clone(),
        lock_file: profile.lock_file.clone(),
        once_per_day: profile.once_per_day,
        force,
        dry_run,
        // Uploads wait on the network more than on the disk or the CPU.
        threads: if profile.destination.s3().is_some() {
            threads.max(8)
        } else {
            threads
        },
        notices,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_probes_of_runs_starting_at_once_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        // Probes left by a killed run of this very process id, on the next
        // numbers this process will use.
        let next = PROBE_CALLS.load(std::sync::atomic::Ordering::Relaxed);
        let mut stale: Vec<_> = (next..next + 3)
            .map(|n| {
                let p = dir
                    .path()
                    .join(format!(".backup-cli-write-test-{}-{n}", std::process::id()));
                std::fs::write(&p, "").unwrap();
                p
            })
            .collect();
        stale.sort();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| probe_writable(dir.path())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        assert_eq!(left, stale, "only the stale probes are left, untouched");
    }

    fn write_profile(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, body).unwrap();
        (dir, p)
    }

    fn err(body: &str) -> String {
        let (_d, p) = write_profile(body);
        load_profile(&p).unwrap_err().to_string()
    }

    #[test]
    fn destination_inside_an_excluded_path() {
        let e = err("source = \"src\"\ndestination = \"src/temp_processing/b\"\nexclude = [\"temp_processing/\"]\n");
        assert!(e.contains("`destination`") && e.contains("excluded"), "{e}");
        // Inside the source but not excluded: fine.
        let (_d, p) = write_profile("source = \"src\"\ndestination = \"src/backups\"\n");
        load_profile(&p).unwrap();
    }

    #[test]
    fn bad_exclude_glob_names_the_key() {
        let e = err("source = \"src\"\ndestination = \"b\"\nexclude = [\"a[b\"]\n");
        assert!(e.contains("`exclude`") && e.contains("a[b"), "{e}");
    }

    #[test]
    fn retention_replaces_max_backups() {
        let (_d, p) = write_profile("source = \"src\"\ndestination = \"b\"\nmax_backups = 2\n[retention]\nkeep_daily = 7\nkeep_weekly = 4\n");
        let prof = load_profile(&p).unwrap();
        assert_eq!(keep_rules(&prof).keep_daily, Some(7));
        assert_eq!(keep_rules(&prof).keep_last, None);
        let (_d, p) = write_profile("source = \"src\"\ndestination = \"b\"\n");
        assert_eq!(keep_rules(&load_profile(&p).unwrap()), KeepRules::last(10));
    }

    #[test]
    fn the_tools_log_is_recognised_and_other_files_are_not() {
        assert!(is_log_head(
            b"2026-12-02T01:02:03.456Z  INFO backup run started"
        ));
        assert!(is_log_head(
            b"2024-05-01 10:00:00,123 - INFO - Backup started"
        ));
        assert!(is_log_head(b"\xEF\xBB\xBF2024-05-01 10:00:00 started"));
        assert!(!is_log_head(b"[server]\nport = 8080\n"));
        assert!(!is_log_head(b"2024-05-01"));
        assert!(!is_log_head(b"20240501T100000"));
    }

    #[test]
    fn a_null_log_and_the_tools_own_log_pass_the_checks() {
        let (dir, p) =
            write_profile("source = \"src\"\ndestination = \"b\"\nlog_file = \"/dev/null\"\n");
        // (Unix: Windows has no /dev/null, and its NUL is no file to probe.)
        if cfg!(unix) {
            check_for_backup(&load_profile(&p).unwrap()).unwrap();
        }
        std::fs::write(&p, "source = \"src\"\ndestination = \"b\"\n").unwrap();
        let log = dir.path().join("src/backup_operations.log");
        std::fs::write(&log, "2026-01-01T00:00:00Z  INFO x\n").unwrap();
        check_for_backup(&load_profile(&p).unwrap()).unwrap();
        std::fs::write(&log, "[server]\n").unwrap();
        let e = check_for_backup(&load_profile(&p).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`log_file`"), "{e}");
    }

    #[test]
    fn housekeeping_and_state_files_in_an_inner_destination_are_not_foreign() {
        let (dir, p) = write_profile("source = \"src\"\ndestination = \"src/backups\"\nmetadata_file = \"src/backups/m.json\"\n");
        let dest = dir.path().join("src/backups");
        std::fs::create_dir_all(dest.join("Other_backup_2026-01-02_03-04")).unwrap();
        for name in [
            ".DS_Store",
            "Thumbs.db",
            "m.json",
            ".m.json.records-77",
            "m.json.unrecognised-20260101-000000",
        ] {
            std::fs::write(dest.join(name), "x").unwrap();
        }
        check_for_backup(&load_profile(&p).unwrap()).unwrap();
        std::fs::write(dest.join("users.csv"), "id\n").unwrap();
        let e = check_for_backup(&load_profile(&p).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`destination`") && e.contains("users.csv"),
            "{e}"
        );
    }
}
