//! Errors shared by all stages.
//!
//! Rules: every error names what failed and where (the path); errors that a
//! user can act on say what to do. The I/O cause is kept as the `source` so
//! that callers can print the whole chain.

use std::io;
use std::path::{Path, PathBuf};

/// An error of the core library or a stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// An I/O operation on a path failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("read", "create", …).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Writing to the destination failed: the run cannot go on.
    #[error("cannot {action} {} on the destination; {hint}", path.display())]
    Destination {
        /// What was being done.
        action: &'static str,
        /// The destination path involved.
        path: PathBuf,
        /// What the user can do about it.
        hint: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A state file (manifest, snapshot info, metadata) cannot be parsed.
    #[error("{} is damaged{}; move it aside and run again", path.display(), line.map(|n| format!(" at line {n}")).unwrap_or_default())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// The line of a line-based file (a manifest) that is damaged.
        line: Option<u64>,
        /// What is wrong with it (the parser's error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A snapshot named on the command line does not exist or is ambiguous.
    #[error("{0}")]
    NotFound(String),
    /// A request to a remote store (object storage) failed.
    #[error("cannot {action} {location}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Remote {
        /// What was being done.
        action: &'static str,
        /// The object or bucket involved (a URL).
        location: String,
        /// What to do about it (or what went wrong, when there is no
        /// `source`); may be empty.
        message: String,
        /// The client's error, with its own chain.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The run was cancelled because another stage failed.
    #[error("the run was cancelled")]
    Cancelled,
    /// A worker thread panicked.
    #[error("internal error: a {0} thread panicked; please report this")]
    Panicked(&'static str),
}

impl CoreError {
    /// An I/O error on `path`.
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        CoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A damaged state file: `path` (at `line`, for a manifest) does not
    /// parse because of `source`.
    pub fn corrupt(
        path: &Path,
        line: Option<u64>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        CoreError::Corrupt {
            path: path.to_path_buf(),
            line,
            source: source.into(),
        }
    }

    /// A fatal error writing to the destination, with advice matching the
    /// kind of failure.
    pub fn destination(action: &'static str, path: &Path, source: io::Error) -> Self {
        let hint = destination_hint(&source);
        CoreError::Destination {
            action,
            path: path.to_path_buf(),
            hint,
            source,
        }
    }
}

/// Advice for a failed write to the destination.
pub fn destination_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "the destination is full: free space there (or lower max_backups) and run again; the partial snapshot was removed"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "the destination is read-only: remount it read-write or choose another destination; the partial snapshot was removed"
        }
        io::ErrorKind::NotFound => {
            "the destination folder vanished during the run: check that its drive is mounted and run again"
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied on the destination: give this user write access to it or choose another destination"
        }
        _ => "check the destination drive and run again; the partial snapshot was removed",
    }
}

/// Formats an error with its whole cause chain (`what: why: why…`), like
/// `{:#}` of anyhow, leaving out a cause whose text the message already
/// holds (clients often repeat their source in their own message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}
