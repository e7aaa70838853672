//! `backup_metadata.json`: the original system's metadata file, kept
//! compatible (`last_backup_date`, `file_checksums`, `backup_history`) and
//! extended with the fast-path facts the next run needs.
//!
//! Fields this version does not know are kept as they are when the file is
//! rewritten.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use backup_core::error::CoreError;
use backup_sys::{is_not_regular, open_regular, read_regular};

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
    /// The snapshot whose manifest records exactly the facts in
    /// `file_checksums` (set by the run that made it, cleared when a later
    /// run records newer mtimes). When it is the newest snapshot, the next
    /// run need not read the records at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_snapshot: Option<String>,
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
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut m = BackupMetadata::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "file_checksums" {
                        m.file_checksums = map.next_value::<Option<_>>()?.unwrap_or_default();
                    } else {
                        m.visit_field(key, &mut map)?;
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
    /// Sets the summary field `key` (anything but `file_checksums`) from
    /// the map's next value; unknown keys go to `extra`.
    fn visit_field<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: String,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key.as_str() {
            "last_backup_date" => self.last_backup_date = map.next_value()?,
            "backup_history" => {
                self.backup_history = map.next_value::<Option<_>>()?.unwrap_or_default()
            }
            "last_scan_started_ns" => self.last_scan_started_ns = map.next_value()?,
            "profile" => self.profile = map.next_value()?,
            "records_snapshot" => self.records_snapshot = map.next_value()?,
            _ => {
                let v: serde_json::Value = map.next_value()?;
                self.extra.insert(key, v);
            }
        }
        Ok(())
    }

    /// Writes every field but `file_checksums` into `map`.
    fn serialize_summary<M: serde::ser::SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("last_backup_date", &self.last_backup_date)?;
        if let Some(p) = &self.profile {
            map.serialize_entry("profile", p)?;
        }
        if let Some(ns) = self.last_scan_started_ns {
            map.serialize_entry("last_scan_started_ns", &ns)?;
        }
        if let Some(name) = &self.records_snapshot {
            map.serialize_entry("records_snapshot", name)?;
        }
        map.serialize_entry("backup_history", &self.backup_history)?;
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        Ok(())
    }

    /// Reads the metadata file.
    pub fn load(path: &Path) -> MetadataLoad {
        match read_regular(path, u64::MAX) {
            Err(e) => open_failed(path, e),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(m) => MetadataLoad::Loaded(m),
                Err(e) => MetadataLoad::Unreadable(CoreError::corrupt(path, None, e)),
            },
        }
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), CoreError> {
        let mut w = MetadataWriter::create(path)?;
        for (k, v) in &self.file_checksums {
            w.add(k, v)?;
        }
        w.finish(self)
    }
}

/// Streams `file_checksums` into a new metadata file as records arrive, so
/// a large project's records are never all held in memory. The records go
/// to a side file first; [`MetadataWriter::finish`] writes the summary
/// fields, then the records (so readers of the summary can stop early), and
/// renames the result into place atomically.
pub struct MetadataWriter {
    path: std::path::PathBuf,
    records_path: std::path::PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    count: u64,
}

fn sibling(path: &Path, kind: &str) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup_metadata.json".into());
    path.with_file_name(format!(".{name}.{kind}-{}", std::process::id()))
}

impl MetadataWriter {
    /// The metadata file this writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a new metadata file next to `path`.
    pub fn create(path: &Path) -> Result<Self, CoreError> {
        let records_path = sibling(path, "records");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&records_path)
            .map_err(|e| CoreError::io("create", &records_path, e))?;
        Ok(MetadataWriter {
            path: path.to_path_buf(),
            records_path,
            out: Some(std::io::BufWriter::with_capacity(1 << 16, file)),
            count: 0,
        })
    }

    /// Adds one file's record.
    pub fn add(&mut self, rel_path: &str, record: &FileRecord) -> Result<(), CoreError> {
        use std::io::Write;
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let r = (|| -> std::io::Result<()> {
            if self.count > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, rel_path)?;
            out.write_all(b":")?;
            serde_json::to_writer(&mut *out, record)?;
            Ok(())
        })();
        self.count += 1;
        r.map_err(|e| CoreError::io("write", &self.records_path, e))
    }

    /// Writes the other fields of `meta` (its `file_checksums` are ignored)
    /// followed by the records, syncs and renames the file into place.
    pub fn finish(mut self, meta: &BackupMetadata) -> Result<(), CoreError> {
        use serde::ser::SerializeMap;
        use serde::Serializer;
        use std::io::Seek;
        let Some(records) = self.out.take() else {
            return Ok(());
        };
        let records_path = self.records_path.clone();
        let result = crate::fsutil::write_atomic_with(&self.path, |out| {
            let mut head = Vec::new();
            {
                let mut ser = serde_json::Serializer::new(&mut head);
                let mut map = ser.serialize_map(None)?;
                meta.serialize_summary(&mut map)?;
                map.end()?;
            }
            // `head` is `{...}`: reopen it for the records.
            head.pop();
            out.write_all(&head)?;
            out.write_all(b",\"file_checksums\":{")?;
            let mut file = records.into_inner().map_err(|e| e.into_error())?;
            file.seek(std::io::SeekFrom::Start(0))?;
            std::io::copy(&mut file, out)?;
            out.write_all(b"}}")?;
            Ok(())
        });
        let _ = std::fs::remove_file(&records_path);
        result
    }
}

impl Drop for MetadataWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.records_path);
        }
    }
}

/// Removes temporary files that killed runs left next to the metadata file
/// (`.<name>.tmp-<pid>`, `.<name>.records-<pid>`). Call only under the run
/// lock. Returns what was removed.
pub fn remove_stale_temps(path: &Path) -> Vec<std::path::PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefixes = [format!(".{name}.tmp-"), format!(".{name}.records-")];
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if prefixes.iter().any(|p| n.starts_with(p.as_str()))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed.push(entry.path());
        }
    }
    removed
}

/// Moves a metadata file that does not parse as this tool's out of the way
/// (to `<name>.unrecognised-<time>` beside it) so that it is never
/// overwritten; returns where it went.
pub fn move_aside(path: &Path, now: chrono::DateTime<chrono::Local>) -> Result<PathBuf, CoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup_metadata.json".into());
    let stamp = now.format("%Y%m%d-%H%M%S");
    let mut aside = path.with_file_name(format!("{name}.unrecognised-{stamp}"));
    let mut n = 1;
    while aside.symlink_metadata().is_ok() {
        n += 1;
        aside = path.with_file_name(format!("{name}.unrecognised-{stamp}-{n}"));
    }
    std::fs::rename(path, &aside).map_err(|e| CoreError::io("move aside", path, e))?;
    Ok(aside)
}

/// Why the metadata file could not be opened: missing, not this tool's (a
/// symlink, FIFO or device in its place: moved aside like any file that is
/// not its metadata), or unreadable (left alone).
fn open_failed(path: &Path, e: std::io::Error) -> MetadataLoad {
    match e.kind() {
        std::io::ErrorKind::NotFound => MetadataLoad::Missing,
        _ if is_not_regular(&e) => MetadataLoad::Unreadable(CoreError::corrupt(path, None, e)),
        _ => MetadataLoad::Unreadable(CoreError::io("read", path, e)),
    }
}

/// Reads the metadata file without its `file_checksums` (fast: they are
/// skipped, and reading stops at them when they come last, as this tool
/// writes them); see [`for_each_file_record`] for those.
pub fn load_summary(path: &Path) -> MetadataLoad {
    let file = match open_regular(path) {
        Err(e) => return open_failed(path, e),
        Ok((f, meta)) => f.take(meta.len()),
    };
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    let mut slot = None;
    let result = serde::Deserializer::deserialize_map(&mut de, SummaryVisitor(&mut slot));
    match (result, slot) {
        (_, Some(m)) => MetadataLoad::Loaded(m),
        // A read error is not damage: the file is left where it is.
        (Err(e), None) if e.is_io() => {
            MetadataLoad::Unreadable(CoreError::io("read", path, std::io::Error::from(e)))
        }
        (Err(e), None) => MetadataLoad::Unreadable(CoreError::corrupt(path, None, e)),
        (Ok(()), None) => MetadataLoad::Missing,
    }
}

/// Collects the summary into its slot; stops with an error at a trailing
/// `file_checksums` (the slot tells success from failure).
struct SummaryVisitor<'a>(&'a mut Option<BackupMetadata>);

impl<'de> serde::de::Visitor<'de> for SummaryVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a backup metadata object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut m = BackupMetadata::default();
        let mut seen_history = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "file_checksums" if seen_history => {
                    // Written last by this tool: nothing else follows.
                    *self.0 = Some(m);
                    return Err(serde::de::Error::custom("summary complete"));
                }
                "file_checksums" => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                _ => {
                    seen_history |= key == "backup_history";
                    m.visit_field(key, &mut map)?;
                }
            }
        }
        *self.0 = Some(m);
        Ok(())
    }
}

/// Calls `f` for each record of the metadata file's `file_checksums`,
/// streaming (the records are never all in memory).
pub fn for_each_file_record(
    path: &Path,
    mut f: impl FnMut(&str, FileRecord),
) -> Result<(), CoreError> {
    use serde::de::{DeserializeSeed, MapAccess, Visitor};
    struct Files<'f, F>(&'f mut F);
    impl<'de, F: FnMut(&str, FileRecord)> Visitor<'de> for Files<'_, F> {
        type Value = ();
        fn expecting(&self, fm: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            fm.write_str("file records")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                let rec: FileRecord = map.next_value()?;
                (self.0)(&k, rec);
            }
            Ok(())
        }
    }
    impl<'de, F: FnMut(&str, FileRecord)> DeserializeSeed<'de> for Files<'_, F> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    struct Top<'f, F>(&'f mut F);
    impl<'de, F: FnMut(&str, FileRecord)> Visitor<'de> for Top<'_, F> {
        type Value = ();
        fn expecting(&self, fm: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            fm.write_str("a backup metadata object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if k == "file_checksums" {
                    map.next_value_seed(Files(&mut *self.0))?;
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    let (file, meta) = open_regular(path).map_err(|e| CoreError::io("read", path, e))?;
    let file = file.take(meta.len());
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    serde::Deserializer::deserialize_map(&mut de, Top(&mut f))
        .map_err(|e| CoreError::corrupt(path, None, e))
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
    fn streamed_file_round_trips_and_summary_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("backup_metadata.json");
        let mut w = MetadataWriter::create(&p).unwrap();
        let rec = FileRecord {
            size: 3,
            modified_time: 1.5,
            checksum: "ab".repeat(32),
            mtime_ns: Some(1_500_000_000),
            ctime_ns: Some(2),
            inode: Some(3),
            mode: Some(0o644),
            rehash: false,
        };
        w.add("a.txt", &rec).unwrap();
        w.add("dir/b \"q\".txt", &rec).unwrap();
        let meta = BackupMetadata {
            last_backup_date: Some("2026-01-01T00:00:00+00:00".into()),
            profile: Some("P".into()),
            ..BackupMetadata::default()
        };
        w.finish(&meta).unwrap();
        let MetadataLoad::Loaded(full) = BackupMetadata::load(&p) else {
            panic!("must parse")
        };
        assert_eq!(full.file_checksums.len(), 2);
        assert_eq!(full.file_checksums["dir/b \"q\".txt"], rec);
        assert_eq!(full.profile.as_deref(), Some("P"));
        let MetadataLoad::Loaded(sum) = load_summary(&p) else {
            panic!("summary must parse")
        };
        assert!(sum.file_checksums.is_empty());
        assert_eq!(sum.last_backup_date, meta.last_backup_date);
        let mut n = 0;
        for_each_file_record(&p, |_, r| {
            assert_eq!(r, rec);
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 2);
        // No temporary file is left behind, and the summary comes first.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.find("last_backup_date") < text.find("file_checksums"),
            "{text}"
        );
        // A writer dropped without finish leaves nothing.
        let w = MetadataWriter::create(&dir.path().join("other.json")).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("backup_metadata.json");
        std::fs::write(dir.path().join(".backup_metadata.json.records-99"), "x").unwrap();
        std::fs::write(dir.path().join(".backup_metadata.json.tmp-98"), "x").unwrap();
        std::fs::write(dir.path().join("keep.txt"), "x").unwrap();
        assert_eq!(remove_stale_temps(&p).len(), 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
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

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn record() -> impl Strategy<Value = FileRecord> {
            (
                any::<u64>(),
                -1e12f64..1e12,
                "[0-9a-f]{64}",
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(0u32..0o10000),
                any::<bool>(),
            )
                .prop_map(
                    |(size, modified_time, checksum, mtime_ns, ctime_ns, inode, mode, rehash)| {
                        FileRecord {
                            size,
                            modified_time,
                            checksum,
                            mtime_ns,
                            ctime_ns,
                            inode,
                            mode,
                            rehash,
                        }
                    },
                )
        }

        /// JSON-shaped hostile text: the schema's keys with values of the
        /// wrong types, nesting, truncation.
        fn hostile_json() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("null".to_string()),
                Just("1e400".to_string()),
                "-?[0-9]{1,30}",
                "\"[ -~]{0,20}\"",
                Just("[".to_string()),
                Just("{\"size\":\"x\"}".to_string()),
            ];
            let key = prop_oneof![
                Just("file_checksums"),
                Just("backup_history"),
                Just("last_backup_date"),
                Just("profile"),
                Just("records_snapshot"),
                Just("last_scan_started_ns"),
                Just("other"),
            ];
            proptest::collection::vec((key, leaf), 0..8).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                format!("{{{}}}", body.join(", "))
            })
        }

        proptest! {
            /// Every record written is streamed back exactly, and the
            /// summary reads without them.
            #[test]
            fn records_round_trip(records in proptest::collection::btree_map("[a-z/._ ]{1,20}", record(), 0..20), profile in "[a-zA-Z]{1,10}") {
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().join("m.json");
                let meta = BackupMetadata {
                    file_checksums: records.clone(),
                    profile: Some(profile.clone()),
                    ..BackupMetadata::default()
                };
                meta.save(&p).unwrap();
                let mut back = BTreeMap::new();
                for_each_file_record(&p, |k, r| { back.insert(k.to_owned(), r); }).unwrap();
                prop_assert_eq!(back, records);
                let MetadataLoad::Loaded(summary) = load_summary(&p) else {
                    return Err(TestCaseError::fail("the summary did not load"));
                };
                prop_assert_eq!(summary.profile, Some(profile));
            }

            /// Hostile files (JSON-shaped or any bytes): every reader
            /// returns, never panics.
            #[test]
            fn readers_never_panic(text in hostile_json(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let dir = tempfile::tempdir().unwrap();
                for (i, content) in [text.into_bytes(), bytes].into_iter().enumerate() {
                    let p = dir.path().join(format!("m{i}.json"));
                    std::fs::write(&p, &content).unwrap();
                    let _ = BackupMetadata::load(&p);
                    let _ = load_summary(&p);
                    let _ = for_each_file_record(&p, |_, _| {});
                }
            }
        }
    }
}
