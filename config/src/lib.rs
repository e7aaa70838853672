//! # backup-config
//!
//! The TOML profile, as plain data: read it strictly (unknown keys and
//! wrong types are errors with line and column), validate each value,
//! resolve its paths (relative to the profile file's folder; `~` is the
//! home folder). Turning a profile into the stages' options (exclusion
//! matchers, scan options, retention rules, an S3 connection) is the
//! binary's wiring, not this crate's: it depends on serde, toml and
//! thiserror only.
//!
//! Central types: [`Profile`] (a validated profile), [`Destination`],
//! [`ConfigError`] and [`TEMPLATE`] (the commented starter profile written
//! by `init`).
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::create_dir(dir.path().join("project")).unwrap();
//! let file = dir.path().join("p.toml");
//! std::fs::write(&file, "name = \"Demo\"\nsource = \"project\"\ndestination = \"backups\"\n").unwrap();
//! let profile = backup_config::Profile::load(&file).unwrap();
//! assert_eq!(profile.max_backups, 10);
//! assert!(profile.destination.folder().unwrap().ends_with("backups"));
//! ```

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// The longest profile name: its snapshot folders' temporary names
/// (`.<name>_backup_YYYY-MM-DD_HH-MM-NNN.partial`, 38 bytes more) must fit
/// in a 255-byte file name.
pub const MAX_NAME_BYTES: usize = 200;

/// Characters that change how a name is displayed without being seen:
/// bidirectional marks, embeddings, overrides and isolates (U+202E made
/// folder names display reversed) and the byte-order mark. (The zero-width
/// joiners are left alone: Persian, Indic scripts and emoji need them.)
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

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

/// Where a profile's snapshots go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A local folder of snapshot folders (absolute).
    Folder(PathBuf),
    /// S3-compatible object storage.
    S3(S3Destination),
}

impl Destination {
    /// The folder, for a local destination.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Destination::Folder(p) => Some(p),
            Destination::S3(_) => None,
        }
    }

    /// The bucket, for object storage.
    pub fn s3(&self) -> Option<&S3Destination> {
        match self {
            Destination::S3(s3) => Some(s3),
            Destination::Folder(_) => None,
        }
    }
}

impl std::fmt::Display for Destination {
    /// The folder's path or the `s3://` URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Folder(p) => write!(f, "{}", p.display()),
            Destination::S3(s3) => f.write_str(&s3.url()),
        }
    }
}

/// Which snapshots `[retention]` keeps (each rule at least 1 when set; at
/// least one rule set). A snapshot is kept when any rule keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// `keep_last`: the newest N.
    pub keep_last: Option<u32>,
    /// `keep_daily`: the newest of each of the last N days with one.
    pub keep_daily: Option<u32>,
    /// `keep_weekly`: the newest of each of the last N ISO weeks with one.
    pub keep_weekly: Option<u32>,
    /// `keep_monthly`: the newest of each of the last N months with one.
    pub keep_monthly: Option<u32>,
}

/// A validated profile with absolute paths.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The profile file.
    pub path: PathBuf,
    /// Snapshot name prefix.
    pub name: String,
    /// The folder backed up, as the profile names it (absolute).
    pub source: PathBuf,
    /// [`Profile::source`] with symlinks resolved (as far as it exists):
    /// the identity snapshots record and the root the scan walks.
    pub canonical_source: PathBuf,
    /// Where snapshots go.
    pub destination: Destination,
    /// Snapshots kept by default rotation.
    pub max_backups: u32,
    /// Make at most one snapshot per day.
    pub once_per_day: bool,
    /// The profile's own exclude patterns (gitignore syntax; compiled and
    /// checked by the wiring).
    pub exclude: Vec<String>,
    /// Add the scan's default exclusions.
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
    pub retention: Option<Retention>,
}

/// Builds [`ConfigError::Invalid`] for one profile file.
struct Checker<'a> {
    path: &'a Path,
    base: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, key: &'static str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key,
            message,
        }
    }

    /// A path value made absolute against the profile's folder.
    fn resolve(&self, key: &'static str, value: &str) -> Result<PathBuf, ConfigError> {
        if value.trim().is_empty() {
            return Err(self.invalid(key, "must not be empty; give a folder path".into()));
        }
        if value.contains('\0') {
            return Err(self.invalid(
                key,
                format!("{value:?} holds a NUL character, which no path can; fix the value"),
            ));
        }
        let path = expand(self.base, value, home().as_deref()).ok_or_else(|| {
            self.invalid(
                key,
                "starts with `~` but neither HOME nor USERPROFILE is set; write the full path"
                    .into(),
            )
        })?;
        if cfg!(windows) {
            if let Some(why) = windows_path_problem(&path) {
                return Err(self.invalid(
                    key,
                    format!(
                        "{} cannot be used on Windows: {why}; choose another path",
                        path.display()
                    ),
                ));
            }
        }
        Ok(path)
    }

    fn destination(
        &self,
        value: Option<&str>,
        s3: Option<RawS3>,
    ) -> Result<Destination, ConfigError> {
        match (value, s3) {
            (Some(d), s3) if d.starts_with("s3://") => Ok(Destination::S3(self.s3(d, s3)?)),
            (_, Some(_)) => Err(self.invalid(
                "s3",
                "is only used with an object-storage destination; set destination = \"s3://BUCKET/PREFIX\" or remove the [s3] table".into(),
            )),
            (Some(d), None) => self.folder_destination(d).map(Destination::Folder),
            (None, None) => Err(self.invalid(
                "destination",
                "is missing; add e.g. destination = \"~/Project Backups\"".into(),
            )),
        }
    }

    /// A destination folder: not a file or device, not under the kernel's
    /// virtual file systems.
    fn folder_destination(&self, value: &str) -> Result<PathBuf, ConfigError> {
        let path = self.resolve("destination", value)?;
        let resolved = canonical_or_lexical(&path);
        let virtual_fs = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|v| resolved.starts_with(v));
        // /dev/shm is a real (memory) file system.
        if virtual_fs && !resolved.starts_with("/dev/shm") {
            return Err(self.invalid(
                "destination",
                format!("{} is on a virtual file system of the kernel, not a disk; choose a folder on a drive", resolved.display()),
            ));
        }
        if std::fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
            return Err(self.invalid(
                "destination",
                format!(
                    "{} exists and is not a folder; choose a folder (it is created if missing)",
                    path.display()
                ),
            ));
        }
        Ok(path)
    }

    fn s3(&self, url: &str, table: Option<RawS3>) -> Result<S3Destination, ConfigError> {
        let (bucket, prefix) = parse_s3_url(url).map_err(|m| self.invalid("destination", m))?;
        let s3 = table.unwrap_or(RawS3 {
            endpoint: None,
            region: None,
            access_key_env: None,
            secret_key_env: None,
        });
        let env_name = |key: &'static str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_owned());
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                Err(self.invalid(
                    key,
                    format!(
                        "{v:?} is not an environment variable name; use letters, digits and '_'"
                    ),
                ))
            } else {
                Ok(v)
            }
        };
        if let Some(e) = &s3.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(self.invalid(
                    "s3.endpoint",
                    format!("{e:?} is not a URL; write e.g. \"https://s3.example.com\" or \"http://127.0.0.1:9000\""),
                ));
            }
        }
        Ok(S3Destination {
            bucket,
            prefix,
            endpoint: s3.endpoint,
            region: s3.region.unwrap_or_else(|| "us-east-1".into()),
            access_key_env: env_name("s3.access_key_env", s3.access_key_env, "AWS_ACCESS_KEY_ID")?,
            secret_key_env: env_name(
                "s3.secret_key_env",
                s3.secret_key_env,
                "AWS_SECRET_ACCESS_KEY",
            )?,
        })
    }

    fn name(&self, value: Option<String>, source: &Path) -> Result<String, ConfigError> {
        let name = match value {
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
                .any(|c| matches!(c, '/' | '\\' | ':' | '\0') || c.is_control() || is_invisible(c))
        {
            return Err(self.invalid(
                "name",
                format!("{name:?} cannot start a folder name; use letters, digits, '-' and '_'"),
            ));
        }
        // `.<name>_backup_YYYY-MM-DD_HH-MM-NNN.partial` must fit in the
        // 255 bytes a folder name may have.
        if name.len() > MAX_NAME_BYTES {
            return Err(self.invalid(
                "name",
                format!("is {} bytes long; snapshot folders are named after it and a folder name has at most 255 bytes: use at most {MAX_NAME_BYTES}", name.len()),
            ));
        }
        Ok(name)
    }

    fn max_backups(&self, value: Option<i64>) -> Result<u32, ConfigError> {
        let max_backups = value.unwrap_or(10);
        u32::try_from(max_backups)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                self.invalid(
                    "max_backups",
                    format!("is {max_backups}; it must be a whole number of at least 1"),
                )
            })
    }

    fn threads(&self, value: Option<i64>) -> Result<usize, ConfigError> {
        let threads = value.unwrap_or(0);
        if !(0..=1024).contains(&threads) {
            return Err(self.invalid(
                "threads",
                format!("is {threads}; use 0 (one per core) to 1024"),
            ));
        }
        Ok(threads as usize)
    }

    fn retention(&self, raw: Option<RawRetention>) -> Result<Option<Retention>, ConfigError> {
        let Some(r) = raw else { return Ok(None) };
        let check = |key: &'static str, v: Option<i64>| -> Result<Option<u32>, ConfigError> {
            match v {
                None => Ok(None),
                Some(n) if (1..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(self.invalid(key, format!("is {n}; it must be at least 1"))),
            }
        };
        let rules = Retention {
            keep_last: check("retention.keep_last", r.keep_last)?,
            keep_daily: check("retention.keep_daily", r.keep_daily)?,
            keep_weekly: check("retention.keep_weekly", r.keep_weekly)?,
            keep_monthly: check("retention.keep_monthly", r.keep_monthly)?,
        };
        if rules == Retention::default() {
            return Err(self.invalid(
                "retention",
                "keeps nothing; set keep_last, keep_daily, keep_weekly or keep_monthly".into(),
            ));
        }
        Ok(Some(rules))
    }

    fn exclude_if_present(&self, names: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let names = names.unwrap_or_default();
        for name in &names {
            if name.is_empty() || name.contains(['/', '\\']) {
                return Err(self.invalid(
                    "exclude_if_present",
                    format!("{name:?} must be a plain file name such as \".nobackup\""),
                ));
            }
        }
        Ok(names)
    }

    /// A state file: the profile's path, or `default` in the source.
    /// (Whether it can be used is checked before a backup, not here: read
    /// commands work without the project.)
    fn state_file(
        &self,
        key: &'static str,
        value: Option<String>,
        source: &Path,
        default: &str,
    ) -> Result<PathBuf, ConfigError> {
        match value {
            Some(v) => self.resolve(key, &v),
            None => Ok(source.join(default)),
        }
    }

    /// The destination folder must not be the source itself.
    fn not_the_source(
        &self,
        canonical_source: &Path,
        dest: &Destination,
    ) -> Result<(), ConfigError> {
        let Some(folder) = dest.folder() else {
            return Ok(());
        };
        if canonical_or_lexical(folder) == canonical_source {
            return Err(self.invalid(
                "destination",
                format!(
                    "is the source folder {}; choose a folder outside it (or a subfolder)",
                    canonical_source.display()
                ),
            ));
        }
        Ok(())
    }
}

/// The largest profile read: a real one is a few KiB; a FIFO, a device
/// (`/dev/zero`) or a huge file named by `--profile` is refused, never read
/// until memory runs out.
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// A profile's text: a regular file (a symlink to one is fine: the user's
/// own dotfiles) of at most [`MAX_PROFILE_BYTES`], checked before it is
/// opened, so that a FIFO never blocks the open.
fn read_profile_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "is not a regular file (a profile is a TOML file)",
        ));
    }
    if meta.len() > MAX_PROFILE_BYTES {
        return Err(std::io::Error::other(format!(
            "is {} bytes; a profile is at most {MAX_PROFILE_BYTES}",
            meta.len()
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_PROFILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

impl Profile {
    /// Reads and validates a profile. The source need not exist (commands
    /// that read snapshots work without it); see [`Profile::check_source`].
    pub fn load(path: &Path) -> Result<Profile, ConfigError> {
        let text = read_profile_text(path).map_err(|source| ConfigError::Read {
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
        let c = Checker { path, base };
        let source = c.resolve("source", raw.source.as_deref().unwrap_or("."))?;
        let destination = c.destination(raw.destination.as_deref(), raw.s3)?;
        let profile = Profile {
            path: path.to_path_buf(),
            name: c.name(raw.name, &source)?,
            max_backups: c.max_backups(raw.max_backups)?,
            once_per_day: raw.once_per_day.unwrap_or(true),
            exclude: raw.exclude.unwrap_or_default(),
            default_excludes: raw.default_excludes.unwrap_or(true),
            threads: c.threads(raw.threads)?,
            retention: c.retention(raw.retention)?,
            metadata_file: c.state_file(
                "metadata_file",
                raw.metadata_file,
                &source,
                METADATA_FILE,
            )?,
            log_file: c.state_file("log_file", raw.log_file, &source, LOG_FILE)?,
            lock_file: c.state_file("lock_file", raw.lock_file, &source, LOCK_FILE)?,
            exclude_caches: raw.exclude_caches.unwrap_or(true),
            exclude_if_present: c.exclude_if_present(raw.exclude_if_present)?,
            respect_gitignore: raw.respect_gitignore.unwrap_or(false),
            canonical_source: canonical_or_lexical(&source),
            source,
            destination,
        };
        c.not_the_source(&profile.canonical_source, &profile.destination)?;
        Ok(profile)
    }

    /// A [`ConfigError::Invalid`] about `key` of this profile (for checks
    /// the wiring makes, such as compiling the exclude patterns).
    pub fn invalid(&self, key: &'static str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key,
            message,
        }
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
        Err(self.invalid(
            "source",
            format!(
                "{} {problem}; fix the path (relative paths start at the profile's folder)",
                self.source.display()
            ),
        ))
    }

    /// Paths the scan must never back up: the destination (when inside the
    /// source), the state files and the log's rotated copy, in canonical form.
    pub fn state_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .destination
            .folder()
            .map(Path::to_path_buf)
            .into_iter()
            .collect();
        paths.extend([
            self.metadata_file.clone(),
            self.log_file.clone(),
            self.lock_file.clone(),
            rotated_log(&self.log_file),
        ]);
        paths.iter().map(|p| canonical_or_lexical(p)).collect()
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

/// Expands `~` (`~/x`, `~\x`) to `home` and makes `value` absolute against
/// `base`: an absolute value (`/srv/b`, `D:\Backups`, `\\server\share\b`)
/// stands alone. `None` for `~` without a home.
fn expand(base: &Path, value: &str, home: Option<&Path>) -> Option<PathBuf> {
    let p = if value == "~" {
        home?.to_path_buf()
    } else if let Some(rest) = value
        .strip_prefix("~/")
        .or_else(|| value.strip_prefix("~\\"))
    {
        home?.join(rest)
    } else {
        base.join(value)
    };
    Some(normalize(&p))
}

/// Why Windows cannot use `path` as a file or folder of its own: a part of it
/// is a device name (`NUL`, `C:\x\con\b`) or a name Windows cannot hold, or
/// it is a device namespace path (`\\.\pipe\x`).
fn windows_path_problem(path: &Path) -> Option<String> {
    path.components().find_map(|c| match c {
        Component::Prefix(p) if matches!(p.kind(), std::path::Prefix::DeviceNS(_)) => {
            Some("it names a device, not a folder".to_owned())
        }
        Component::Normal(name) => backup_sys::windows_name_problem(&name.to_string_lossy()),
        _ => None,
    })
}

/// The user's home folder: `HOME`, else `USERPROFILE` (Windows sets only
/// that one; Git's shell sets both), each only when not empty.
fn home() -> Option<PathBuf> {
    ["HOME", "USERPROFILE"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|h| !h.is_empty())
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
