//! `backup_metadata.json`: the original system's metadata file, kept
//! compatible (`last_backup_date`, `file_checksums`, `backup_history`) and
//! extended with the fast-path facts the next run needs.
//!
//! Fields this version does not know are kept as they are when the file is
//! rewritten.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// The whole metadata file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackupMetadata {
    /// When the last snapshot was created (RFC 3339).
    #[serde(default)]
    pub last_backup_date: Option<String>,
    /// Every backed-up file by relative path (UTF-8 paths only).
    #[serde(default)]
    pub file_checksums: BTreeMap<String, FileRecord>,
    /// One entry per snapshot made, oldest first.
    #[serde(default)]
    pub backup_history: Vec<HistoryEntry>,
    /// When the last run's scan started, nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_started_ns: Option<i64>,
    /// The profile name that writes this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Fields written by other versions, kept untouched.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One file's record in `file_checksums`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Size in bytes.
    pub size: u64,
    /// Modification time in seconds (float, as the original wrote it).
    pub modified_time: f64,
    /// SHA-256 in hex.
    pub checksum: String,
    /// Modification time in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
    /// Status-change time in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i64>,
    /// Inode number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The next run must hash this file rather than trust its stat.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rehash: bool,
}

/// One snapshot in `backup_history`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it was made (RFC 3339).
    pub date: String,
    /// Full path of the snapshot folder.
    pub backup_dir: String,
    /// Files copied (not linked) into it.
    pub files_backed_up: u64,
    /// Regular files in it.
    pub total_files: u64,
    /// Folder name of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Files hard-linked from the previous snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_linked: Option<u64>,
    /// Files that could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_failed: Option<u64>,
    /// Bytes copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<u64>,
    /// Run time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Fields written by other versions.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl HistoryEntry {
    /// The snapshot's folder name: `snapshot`, or the last part of `backup_dir`
    /// (which may use `\` when written on Windows).
    pub fn folder_name(&self) -> Option<&str> {
        self.snapshot
            .as_deref()
            .or_else(|| self.backup_dir.rsplit(['/', '\\']).find(|s| !s.is_empty()))
    }
}

/// What reading the metadata file found.
#[derive(Debug)]
pub enum MetadataLoad {
    /// The file parsed.
    Loaded(BackupMetadata),
    /// There is no file yet.
    Missing,
    /// The file exists but cannot be used; the run rebuilds from the newest
    /// snapshot and overwrites it.
    Unreadable(CoreError),
}

impl BackupMetadata {
    /// Reads the metadata file.
    pub fn load(path: &Path) -> MetadataLoad {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataLoad::Missing,
            Err(e) => MetadataLoad::Unreadable(CoreError::io("read", path, e)),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(m) => MetadataLoad::Loaded(m),
                Err(e) => MetadataLoad::Unreadable(CoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }),
            },
        }
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), CoreError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| CoreError::io("encode", path, std::io::Error::other(e)))?;
        crate::fsutil::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_schema_and_keeps_unknown_fields() {
        let original = r#"{
          "last_backup_date": "2025-08-22T06:26:55.331455",
          "file_checksums": {
            "insight_miner.py": {"size": 125827, "modified_time": 1755832525.0568426,
              "checksum": "a6e0ac5e6924fba930fdc71d4041d59275201d57ff23d67e563f61aa0be7886c"}
          },
          "backup_history": [{"date": "2025-08-22T06:26:55.331461",
            "backup_dir": "C:\\Users\\guyle\\Desktop\\Project Backups\\InsightMiner_backup_2025-08-22_06-26",
            "files_backed_up": 3, "total_files": 9}],
          "future_field": [1, 2]
        }"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("backup_metadata.json");
        std::fs::write(&p, original).unwrap();
        let MetadataLoad::Loaded(m) = BackupMetadata::load(&p) else {
            panic!("must parse")
        };
        assert_eq!(m.file_checksums["insight_miner.py"].size, 125827);
        assert_eq!(
            m.backup_history[0].folder_name(),
            Some("InsightMiner_backup_2025-08-22_06-26")
        );
        m.save(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["future_field"], serde_json::json!([1, 2]));
        assert_eq!(v["backup_history"][0]["total_files"], 9);
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(
            BackupMetadata::load(&p),
            MetadataLoad::Unreadable(_)
        ));
        assert!(matches!(
            BackupMetadata::load(&dir.path().join("none")),
            MetadataLoad::Missing
        ));
    }
}
