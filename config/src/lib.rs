//! # backup-config
//!
//! The TOML profile: read it strictly (unknown keys and wrong types are
//! errors with line and column), validate it, resolve its paths (relative
//! to the profile file's folder; `~` is the home folder) and turn it into
//! each stage's options.
//!
//! Central types: [`Profile`] (a validated profile), [`ConfigError`] and
//! [`TEMPLATE`] (the commented starter profile written by `init`).
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::create_dir(dir.path().join("project")).unwrap();
//! let file = dir.path().join("p.toml");
//! std::fs::write(&file, "name = \"Demo\"\nsource = \"project\"\ndestination = \"backups\"\n").unwrap();
//! let profile = backup_config::Profile::load(&file).unwrap();
//! assert_eq!(profile.max_backups, 10);
//! assert!(profile.destination.ends_with("backups"));
//! ```

use std::path::{Component, Path, PathBuf};

use backup_rotate::KeepRules;
use backup_scan::{ExcludeSet, ScanOptions, DEFAULT_EXCLUDES};
use serde::Deserialize;

/// Default file names of the state files, in the source root.
pub const METADATA_FILE: &str = "backup_metadata.json";
/// Default name of the operations log.
pub const LOG_FILE: &str = "backup_operations.log";
/// Default name of the lock file.
pub const LOCK_FILE: &str = "backup_in_progress.lock";

/// A problem with a profile. Each names the file and, where it applies, the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The profile file cannot be read.
    #[error("cannot read profile {}: {source}", path.display())]
    Read {
        /// The profile file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a wrong type.
    #[error("profile {}: {message}", path.display())]
    Parse {
        /// The profile file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is not acceptable.
    #[error("profile {}: key `{key}`: {message}", path.display())]
    Invalid {
        /// The profile file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    max_backups: Option<i64>,
    once_per_day: Option<bool>,
    exclude: Option<Vec<String>>,
    default_excludes: Option<bool>,
    threads: Option<i64>,
    metadata_file: Option<String>,
    log_file: Option<String>,
    lock_file: Option<String>,
    exclude_caches: Option<bool>,
    exclude_if_present: Option<Vec<String>>,
    respect_gitignore: Option<bool>,
    retention: Option<RawRetention>,
    s3: Option<RawS3>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_env: Option<String>,
    secret_key_env: Option<String>,
}

/// An S3-compatible destination: `destination = "s3://BUCKET/PREFIX"` and
/// the profile's `[s3]` table. Credentials are never in the profile: it
/// names the environment variables that hold them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Destination {
    /// The bucket.
    pub bucket: String,
    /// The key prefix inside the bucket, without leading or trailing `/`
    /// (may be empty).
    pub prefix: String,
    /// The service's URL for non-AWS services (MinIO, Garage, R2, …);
    /// `None` for AWS.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` unless set).
    pub region: String,
    /// The environment variable holding the access key id.
    pub access_key_env: String,
    /// The environment variable holding the secret access key.
    pub secret_key_env: String,
}

impl S3Destination {
    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Parses `s3://BUCKET[/PREFIX]`; `Err` says what is wrong.
fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(format!(
            "{url:?} does not name a valid bucket; write s3://BUCKET/PREFIX with a bucket name of 3-63 lowercase letters, digits, '-' and '.'"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(format!(
            "{url:?} has an empty, `.` or `..` part in its prefix; write s3://BUCKET/PREFIX"
        ));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<i64>,
    keep_daily: Option<i64>,
    keep_weekly: Option<i64>,
    keep_monthly: Option<i64>,
}

/// A validated profile with absolute paths.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The profile file.
    pub path: PathBuf,
    /// Snapshot name prefix.
    pub name: String,
    /// The folder backed up.
    pub source: PathBuf,
    /// Where snapshots go.
    pub destination: PathBuf,
    /// Snapshots kept by default rotation.
    pub max_backups: u32,
    /// Make at most one snapshot per day.
    pub once_per_day: bool,
    /// The profile's own exclude patterns.
    pub exclude: Vec<String>,
    /// Add [`DEFAULT_EXCLUDES`].
    pub default_excludes: bool,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// `backup_metadata.json`.
    pub metadata_file: PathBuf,
    /// `backup_operations.log`.
    pub log_file: PathBuf,
    /// `backup_in_progress.lock`.
    pub lock_file: PathBuf,
    /// Skip folders tagged with `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Skip folders holding one of these file names.
    pub exclude_if_present: Vec<String>,
    /// Honour `.gitignore` files.
    pub respect_gitignore: bool,
    /// `[retention]`, which replaces `max_backups` when present.
    pub retention: Option<KeepRules>,
    /// Set when the destination is S3-compatible object storage
    /// (`destination` then holds its `s3://` URL, not a folder).
    pub s3: Option<S3Destination>,
}

impl Profile {
    /// Reads and validates a profile. The source need not exist (commands
    /// that read snapshots work without it); see [`Profile::check_source`].
    pub fn load(path: &Path) -> Result<Profile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawProfile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = absolute(&base);
        Profile::from_raw(path, &base, raw)
    }

    fn from_raw(path: &Path, base: &Path, raw: RawProfile) -> Result<Profile, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let resolve = |key: &'static str, value: &str| -> Result<PathBuf, ConfigError> {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty; give a folder path".into()));
            }
            expand(base, value).ok_or_else(|| {
                invalid(
                    key,
                    "starts with `~` but HOME is not set; write the full path".into(),
                )
            })
        };
        let source = resolve("source", raw.source.as_deref().unwrap_or("."))?;
        let s3 = match (raw.destination.as_deref(), raw.s3) {
            (Some(d), s3) if d.starts_with("s3://") => {
                let (bucket, prefix) = parse_s3_url(d).map_err(|m| invalid("destination", m))?;
                let s3 = s3.unwrap_or(RawS3 {
                    endpoint: None,
                    region: None,
                    access_key_env: None,
                    secret_key_env: None,
                });
                let env_name = |key: &'static str, v: Option<String>, default: &str| {
                    let v = v.unwrap_or_else(|| default.to_owned());
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        Err(invalid(
                            key,
                            format!("{v:?} is not an environment variable name; use letters, digits and '_'"),
                        ))
                    } else {
                        Ok(v)
                    }
                };
                if let Some(e) = &s3.endpoint {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(invalid(
                            "s3.endpoint",
                            format!("{e:?} is not a URL; write e.g. \"https://s3.example.com\" or \"http://127.0.0.1:9000\""),
                        ));
                    }
                }
                Some(S3Destination {
                    bucket,
                    prefix,
                    endpoint: s3.endpoint,
                    region: s3.region.unwrap_or_else(|| "us-east-1".into()),
                    access_key_env: env_name(
                        "s3.access_key_env",
                        s3.access_key_env,
                        "AWS_ACCESS_KEY_ID",
                    )?,
                    secret_key_env: env_name(
                        "s3.secret_key_env",
                        s3.secret_key_env,
                        "AWS_SECRET_ACCESS_KEY",
                    )?,
                })
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "s3",
                    "is only used with an object-storage destination; set destination = \"s3://BUCKET/PREFIX\" or remove the [s3] table".into(),
                ))
            }
            _ => None,
        };
        let destination = match raw.destination.as_deref() {
            Some(_) if s3.is_some() => {
                PathBuf::from(s3.as_ref().map(S3Destination::url).unwrap_or_default())
            }
            Some(d) => resolve("destination", d)?,
            None => {
                return Err(invalid(
                    "destination",
                    "is missing; add e.g. destination = \"~/Project Backups\"".into(),
                ))
            }
        };
        let name = match raw.name {
            Some(n) => n,
            None => source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "backup".into()),
        };
        if name.is_empty()
            || name.starts_with('.')
            || name
                .chars()
                .any(|c| matches!(c, '/' | '\\' | ':' | '\0') || c.is_control())
        {
            return Err(invalid(
                "name",
                format!("{name:?} cannot start a folder name; use letters, digits, '-' and '_'"),
            ));
        }
        let max_backups = raw.max_backups.unwrap_or(10);
        if max_backups < 1 || max_backups > u32::MAX as i64 {
            return Err(invalid(
                "max_backups",
                format!("is {max_backups}; it must be a whole number of at least 1"),
            ));
        }
        let threads = raw.threads.unwrap_or(0);
        if !(0..=1024).contains(&threads) {
            return Err(invalid(
                "threads",
                format!("is {threads}; use 0 (one per core) to 1024"),
            ));
        }
        let retention = match raw.retention {
            None => None,
            Some(r) => {
                let check =
                    |key: &'static str, v: Option<i64>| -> Result<Option<u32>, ConfigError> {
                        match v {
                            None => Ok(None),
                            Some(n) if (1..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
                            Some(n) => Err(invalid(key, format!("is {n}; it must be at least 1"))),
                        }
                    };
                let rules = KeepRules {
                    keep_last: check("retention.keep_last", r.keep_last)?,
                    keep_daily: check("retention.keep_daily", r.keep_daily)?,
                    keep_weekly: check("retention.keep_weekly", r.keep_weekly)?,
                    keep_monthly: check("retention.keep_monthly", r.keep_monthly)?,
                };
                if rules == KeepRules::default() {
                    return Err(invalid(
                        "retention",
                        "keeps nothing; set keep_last, keep_daily, keep_weekly or keep_monthly"
                            .into(),
                    ));
                }
                Some(rules)
            }
        };
        let state_file = |key: &'static str, v: Option<String>, default: &str| match v {
            Some(v) => resolve(key, &v),
            None => Ok(source.join(default)),
        };
        let profile = Profile {
            path: path.to_path_buf(),
            name,
            max_backups: max_backups as u32,
            once_per_day: raw.once_per_day.unwrap_or(true),
            exclude: raw.exclude.unwrap_or_default(),
            default_excludes: raw.default_excludes.unwrap_or(true),
            threads: threads as usize,
            metadata_file: state_file("metadata_file", raw.metadata_file, METADATA_FILE)?,
            log_file: state_file("log_file", raw.log_file, LOG_FILE)?,
            lock_file: state_file("lock_file", raw.lock_file, LOCK_FILE)?,
            exclude_caches: raw.exclude_caches.unwrap_or(true),
            exclude_if_present: raw.exclude_if_present.unwrap_or_default(),
            respect_gitignore: raw.respect_gitignore.unwrap_or(false),
            retention,
            source,
            destination,
            s3,
        };
        for name in &profile.exclude_if_present {
            if name.is_empty() || name.contains(['/', '\\']) {
                return Err(invalid(
                    "exclude_if_present",
                    format!("{name:?} must be a plain file name such as \".nobackup\""),
                ));
            }
        }
        let excludes = profile.exclude_set()?;
        if profile.s3.is_some() {
            return Ok(profile);
        }
        let src = canonical_or_lexical(&profile.source);
        let dst = canonical_or_lexical(&profile.destination);
        if src == dst {
            return Err(invalid(
                "destination",
                format!(
                    "is the source folder {}; choose a folder outside it (or a subfolder)",
                    src.display()
                ),
            ));
        }
        if let Ok(rel) = dst.strip_prefix(&src) {
            let mut prefix = PathBuf::new();
            for c in rel.components() {
                prefix.push(c);
                if excludes.is_excluded(&prefix, true) {
                    return Err(invalid(
                        "destination",
                        format!(
                            "lies inside the excluded path {}; excluded folders are often caches that get wiped: choose another destination",
                            prefix.display()
                        ),
                    ));
                }
            }
        }
        Ok(profile)
    }

    /// The default and profile exclusions, compiled.
    pub fn exclude_set(&self) -> Result<ExcludeSet, ConfigError> {
        let defaults: &[&str] = if self.default_excludes {
            DEFAULT_EXCLUDES
        } else {
            &[]
        };
        let all = defaults
            .iter()
            .map(|s| s.to_string())
            .chain(self.exclude.iter().cloned());
        ExcludeSet::new(all).map_err(|e| ConfigError::Invalid {
            path: self.path.clone(),
            key: "exclude",
            message: e.to_string(),
        })
    }

    /// Checks that the source exists and is a readable folder (needed to back up).
    pub fn check_source(&self) -> Result<(), ConfigError> {
        let problem = match std::fs::metadata(&self.source) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(&self.source) {
                Ok(_) => return Ok(()),
                Err(e) => format!("cannot be read ({e})"),
            },
            Ok(_) => "is not a folder".to_string(),
            Err(e) => format!("cannot be used ({e})"),
        };
        Err(ConfigError::Invalid {
            path: self.path.clone(),
            key: "source",
            message: format!(
                "{} {problem}; fix the path (relative paths start at the profile's folder)",
                self.source.display()
            ),
        })
    }

    /// Options for the scan stage.
    pub fn scan_options(&self) -> Result<ScanOptions, ConfigError> {
        let source = canonical_or_lexical(&self.source);
        let mut excluded_paths: Vec<PathBuf> = [
            &self.destination,
            &self.metadata_file,
            &self.log_file,
            &self.lock_file,
        ]
        .iter()
        .map(|p| canonical_or_lexical(p))
        .collect();
        // The log's rotated copy.
        excluded_paths.push(canonical_or_lexical(&rotated_log(&self.log_file)));
        Ok(ScanOptions {
            root: source,
            excludes: self.exclude_set()?,
            excluded_paths,
            exclude_caches: self.exclude_caches,
            exclude_if_present: self.exclude_if_present.clone(),
            respect_gitignore: self.respect_gitignore,
            skip_at_root: Vec::new(),
            // The walk is serial (memory stays flat); `threads` sizes the
            // hash and copy workers.
            threads: 0,
        })
    }

    /// The retention rules: `[retention]`, or keep the last `max_backups`.
    pub fn keep_rules(&self) -> KeepRules {
        self.retention
            .clone()
            .unwrap_or_else(|| KeepRules::last(self.max_backups))
    }

    /// Worker threads to use (at least 1).
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

/// Where the operations log is moved when it grows past its limit.
pub fn rotated_log(log: &Path) -> PathBuf {
    let mut name = log
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".1");
    log.with_file_name(name)
}

/// Expands `~` and makes `value` absolute against `base`.
fn expand(base: &Path, value: &str) -> Option<PathBuf> {
    let p = if value == "~" {
        home()?
    } else if let Some(rest) = value
        .strip_prefix("~/")
        .or_else(|| value.strip_prefix("~\\"))
    {
        home()?.join(rest)
    } else {
        base.join(value)
    };
    Some(normalize(&p))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).map_or_else(|_| p.to_path_buf(), |a| normalize(&a))
}

/// Removes `.` and resolves `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The canonical form of the longest existing ancestor, plus the rest.
pub fn canonical_or_lexical(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// The commented starter profile written by `backup-cli init`. `{name}`,
/// `{source}` and `{destination}` are replaced.
pub const TEMPLATE: &str = r#"# backup-cli profile. Paths are relative to this file's folder; `~` is your home.

# Snapshot folders are named <name>_backup_YYYY-MM-DD_HH-MM.
name = "{name}"

# The folder to back up.
source = "{source}"

# Where snapshots go (created if missing). Every snapshot is a complete
# folder; unchanged files are hard links to the previous snapshot.
destination = "{destination}"

# Keep at most this many snapshots of this profile; older ones are deleted.
max_backups = 10

# Make at most one snapshot per day (`backup-cli ... --force` overrides).
once_per_day = true

# Extra exclusions, gitignore-style: no slash matches a name at any depth,
# a trailing `/` matches folders only, a leading `/` anchors at the source.
exclude = []

# Built-in exclusions: __pycache__/, *.pyc, *.log, *.tmp, *.temp, .git/
# default_excludes = true
# Skip folders holding a CACHEDIR.TAG, or one of these files:
# exclude_caches = true
# exclude_if_present = [".nobackup"]
# Also honour the source's .gitignore files:
# respect_gitignore = false
# Worker threads (0 = one per core):
# threads = 0
# State files (default: in the source folder; always excluded):
# metadata_file = "backup_metadata.json"
# log_file = "backup_operations.log"
# lock_file = "backup_in_progress.lock"

# Instead of max_backups, keep by age (restic-style):
# [retention]
# keep_last = 3
# keep_daily = 7
# keep_weekly = 4
# keep_monthly = 6
"#;

#[cfg(test)]
mod tests;
