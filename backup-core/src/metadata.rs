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
///
/// Deserialized by hand (not with `#[serde(flatten)]`, which would buffer
/// the whole document, a large one for big projects) while still keeping
/// fields written by other versions in `extra`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackupMetadata {
    /// When the last snapshot was created (RFC 3339).
    pub last_backup_date: Option<String>,
    /// Every backed-up file by relative path (UTF-8 paths only).
    pub file_checksums: BTreeMap<String, FileRecord>,
    /// One entry per snapshot made, oldest first.
    pub backup_history: Vec<HistoryEntry>,
    /// When the last run's scan started, nanoseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scan_started_ns: Option<i64>,
    /// The profile name that writes this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Fields written by other versions, kept untouched.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for BackupMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = BackupMetadata;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a backup metadata object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut m = BackupMetadata::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "last_backup_date" => m.last_backup_date = map.next_value()?,
                        "file_checksums" => {
                            m.file_checksums = map.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "backup_history" => {
                            m.backup_history = map.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "last_scan_started_ns" => m.last_scan_started_ns = map.next_value()?,
                        "profile" => m.profile = map.next_value()?,
                        other => {
                            let v: serde_json::Value = map.next_value()?;
                            m.extra.insert(other.to_owned(), v);
                        }
                    }
                }
                Ok(m)
            }
        }
        deserializer.deserialize_map(Visit)
    }
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
        self.save_with_files(path, self.file_checksums.iter().map(|(k, v)| (k.as_str(), v.clone())))
    }

    /// Writes the file atomically with `files` as `file_checksums` (instead
    /// of [`BackupMetadata::file_checksums`]), streamed: the records of a
    /// large project are never all held as a map.
    pub fn save_with_files<'a, I>(&self, path: &Path, files: I) -> Result<(), CoreError>
    where
        I: Iterator<Item = (&'a str, FileRecord)>,
    {
        use serde::ser::SerializeMap;
        use serde::Serializer;

        struct Files<I>(std::cell::RefCell<Option<I>>);
        impl<'a, I: Iterator<Item = (&'a str, FileRecord)>> Serialize for Files<I> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0.borrow_mut().take() {
                    Some(it) => s.collect_map(it),
                    None => s.collect_map(std::iter::empty::<(&str, FileRecord)>()),
                }
            }
        }

        crate::fsutil::write_atomic_with(path, |out| {
            let mut ser = serde_json::Serializer::new(out);
            let mut map = ser.serialize_map(None)?;
            map.serialize_entry("last_backup_date", &self.last_backup_date)?;
            if let Some(p) = &self.profile {
                map.serialize_entry("profile", p)?;
            }
            if let Some(ns) = self.last_scan_started_ns {
                map.serialize_entry("last_scan_started_ns", &ns)?;
            }
            map.serialize_entry("backup_history", &self.backup_history)?;
            for (k, v) in &self.extra {
                map.serialize_entry(k, v)?;
            }
            map.serialize_entry("file_checksums", &Files(std::cell::RefCell::new(Some(files))))?;
            map.end()?;
            Ok(())
        })
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
