//! Snapshot manifests: the record that makes a snapshot self-describing.
//!
//! A snapshot records a [`SnapshotInfo`] (the run's summary) and one JSON
//! [`ManifestEntry`] per line for every path it holds. This module is the
//! line format only ([`parse_manifest`] over any `BufRead`, [`write_entry`]
//! into any `Write`); where the lines are kept is each store's business.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::entry::{EntryKind, FileStat, ScanEntry};
use crate::error::CoreError;
use crate::{ContentHash, RelPath};

/// Value of [`SnapshotInfo::format`].
pub const SNAPSHOT_FORMAT: &str = "backup-cli-snapshot";

/// What happened to a path in a run, when it is not simply "backed up".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// The file could not be read this run; the snapshot holds the last good
    /// copy (a hard link to the previous snapshot's file).
    Stale,
    /// The file could not be read and no earlier copy exists: the snapshot
    /// has no content for it.
    Failed,
    /// The file kept changing while it was copied; the snapshot holds one of
    /// its states and the next run hashes it again.
    ChangedDuringBackup,
}

/// One path of a snapshot: the entry as it was scanned (or, for a file
/// read while it was copied, as it was opened), with what the snapshot holds
/// for it.
///
/// On disk it is one flat JSON object per line (`path`, `kind`, `size`,
/// `mtime_ns`, `mode`, `sha256`, `target`, `ctime_ns`, `ino`, `rehash`,
/// `status`, `error`), the same as before the facts were nested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path, kind, `lstat` facts and symlink target.
    pub entry: ScanEntry,
    /// SHA-256 of a file's content.
    pub sha256: Option<ContentHash>,
    /// When true the next run must hash this file instead of trusting its
    /// facts ("racily clean", stale, or changed during the backup).
    pub rehash: bool,
    /// Set when the path was not backed up normally.
    pub status: Option<EntryStatus>,
    /// The error that made the path stale or failed.
    pub error: Option<String>,
}

impl ManifestEntry {
    /// Whether the snapshot holds content for this path (it is a directory,
    /// a symlink, or a file with a hash that did not fail outright).
    pub fn has_content(&self) -> bool {
        self.status != Some(EntryStatus::Failed)
            && (self.entry.kind != EntryKind::File || self.sha256.is_some())
    }

    /// Flags a racily clean file (see [`FileStat::is_racy`]) of a scan that
    /// started at `scan_started_ns`, so that the next run hashes it again.
    pub fn mark_if_racy(&mut self, scan_started_ns: i64) {
        if self.entry.kind == EntryKind::File && self.entry.stat.is_racy(scan_started_ns) {
            self.rehash = true;
        }
    }
}

/// A manifest line as it is read: [`ManifestEntry`] flattened. (By hand
/// rather than with `#[serde(flatten)]`, which buffers every line and
/// reorders the fields; [`LineOut`] writes the same fields in the same
/// order.)
#[derive(Deserialize)]
struct LineIn {
    path: RelPath,
    kind: EntryKind,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    mtime_ns: i64,
    #[serde(default)]
    mode: u32,
    #[serde(default)]
    sha256: Option<ContentHash>,
    #[serde(default, deserialize_with = "de_opt_path")]
    target: Option<PathBuf>,
    #[serde(default)]
    ctime_ns: i64,
    #[serde(default)]
    ino: u64,
    #[serde(default)]
    rehash: bool,
    #[serde(default)]
    status: Option<EntryStatus>,
    #[serde(default)]
    error: Option<String>,
}

/// A manifest line as it is written (see [`LineIn`]).
#[derive(Serialize)]
struct LineOut<'a> {
    path: &'a RelPath,
    kind: EntryKind,
    size: u64,
    mtime_ns: i64,
    mode: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<ContentHash>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_path"
    )]
    target: Option<&'a PathBuf>,
    ctime_ns: i64,
    ino: u64,
    #[serde(skip_serializing_if = "is_false")]
    rehash: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<EntryStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a String>,
}

impl<'de> Deserialize<'de> for ManifestEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let l = LineIn::deserialize(d)?;
        Ok(ManifestEntry {
            entry: ScanEntry {
                path: l.path,
                kind: l.kind,
                stat: FileStat {
                    size: l.size,
                    mtime_ns: l.mtime_ns,
                    ctime_ns: l.ctime_ns,
                    ino: l.ino,
                    mode: l.mode,
                },
                link_target: l.target,
            },
            sha256: l.sha256,
            rehash: l.rehash,
            status: l.status,
            error: l.error,
        })
    }
}

impl Serialize for ManifestEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.entry;
        LineOut {
            path: &e.path,
            kind: e.kind,
            size: e.stat.size,
            mtime_ns: e.stat.mtime_ns,
            mode: e.stat.mode,
            sha256: self.sha256,
            target: e.link_target.as_ref(),
            ctime_ns: e.stat.ctime_ns,
            ino: e.stat.ino,
            rehash: self.rehash,
            status: self.status,
            error: self.error.as_ref(),
        }
        .serialize(s)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn ser_opt_path<S: serde::Serializer>(p: &Option<&PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => crate::relpath::serialize_os(p.as_os_str(), s),
        None => s.serialize_none(),
    }
}

fn de_opt_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    crate::relpath::deserialize_os(d).map(Some)
}

/// Whether a snapshot holds every file of its run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// Every file was backed up.
    Complete,
    /// Some files could not be read (see the manifest's `status` fields).
    Partial,
}

/// What a run counted: the same numbers in its report, in the snapshot's
/// summary and (under the original script's names) in the metadata history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Regular files in the source after exclusions (in the snapshot).
    pub files_total: u64,
    /// Files whose content was copied.
    pub files_copied: u64,
    /// Files hard-linked to (or, in a content-addressed store, sharing) an
    /// earlier snapshot's content.
    pub files_linked: u64,
    /// Files that could not be read.
    pub files_failed: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Bytes of all files.
    pub bytes_total: u64,
}

/// The summary of one snapshot: the first thing a store reads of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// The profile `name` that made this snapshot.
    pub profile: String,
    /// The snapshot's folder name.
    pub name: String,
    /// When the run started (RFC 3339, local time with offset).
    pub created: String,
    /// When the scan of this run started, nanoseconds since the epoch; used
    /// to detect "racily clean" files in the next run.
    pub scan_started_ns: i64,
    /// The source folder that was backed up.
    pub source: String,
    /// What the run found and wrote.
    #[serde(flatten)]
    pub counts: Counts,
    /// Complete or partial.
    pub status: SnapshotStatus,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
    /// Creation order among the profile's snapshots: one more than the
    /// highest when it was made. "Latest", rotation and once-per-day follow
    /// it, not the name or `created` (a wrong clock makes those lie).
    /// `None` in snapshots made before it was recorded (they sort before
    /// every numbered one, by `created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// The longest manifest line read: a line holds one path and at most one
/// symlink target (each at most 4 KiB, six bytes per byte when escaped)
/// and an error message, so anything longer is damage, and a reader's
/// memory stays bounded even by a huge file without a newline.
pub const MAX_LINE_BYTES: u64 = 1 << 20;

/// Streams manifest entries, one JSON object per line, from `reader`
/// (`name` says where it comes from in error messages). Blank lines are
/// skipped.
pub fn parse_manifest<R: BufRead>(reader: R, name: PathBuf) -> ManifestLines<R> {
    ManifestLines {
        reader,
        line: Vec::with_capacity(512),
        line_no: 0,
        path: name,
        expected: 0,
        done: false,
    }
}

/// Manifest entries, one per line, parsed from one reused line buffer.
pub struct ManifestLines<R> {
    reader: R,
    line: Vec<u8>,
    line_no: u64,
    path: PathBuf,
    expected: usize,
    done: bool,
}

impl<R> ManifestLines<R> {
    /// Says how many entries to expect (reported as the iterator's lower
    /// size hint, so a reader can reserve once instead of doubling).
    pub fn expecting(mut self, entries: usize) -> Self {
        self.expected = entries;
        self
    }
}

impl<R: BufRead> Iterator for ManifestLines<R> {
    type Item = Result<ManifestEntry, CoreError>;

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.expected, None)
    }

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.line.clear();
            let mut bounded = (&mut self.reader).take(MAX_LINE_BYTES + 1);
            match bounded.read_until(b'\n', &mut self.line) {
                Err(e) => return Some(Err(CoreError::io("read manifest", &self.path, e))),
                Ok(0) => return None,
                Ok(_) => {}
            }
            self.line_no += 1;
            if self.line.len() as u64 > MAX_LINE_BYTES {
                let why = format!("longer than {MAX_LINE_BYTES} bytes");
                // Damage: nothing after it is read.
                self.done = true;
                return Some(Err(CoreError::corrupt(&self.path, Some(self.line_no), why)));
            }
            self.expected = self.expected.saturating_sub(1);
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(
                serde_json::from_slice::<ManifestEntry>(&self.line)
                    .map_err(|e| CoreError::corrupt(&self.path, Some(self.line_no), e)),
            );
        }
    }
}

/// Writes one manifest line (the entry as JSON, then a newline).
pub fn write_entry(out: &mut dyn Write, entry: &ManifestEntry) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, entry)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_keeps_the_flat_line_format() {
        let e = ManifestEntry {
            entry: ScanEntry {
                path: RelPath::new("a/b.txt").unwrap(),
                kind: EntryKind::File,
                stat: FileStat {
                    size: 3,
                    mtime_ns: 5,
                    ctime_ns: 6,
                    ino: 7,
                    mode: 0o644,
                },
                link_target: None,
            },
            sha256: Some(ContentHash([1; 32])),
            rehash: true,
            status: Some(EntryStatus::Stale),
            error: Some("denied".into()),
        };
        let mut link = e.clone();
        link.entry.path = RelPath::new("l").unwrap();
        link.entry.kind = EntryKind::Symlink;
        link.entry.link_target = Some(PathBuf::from("../outside"));
        link.sha256 = None;
        link.rehash = false;
        link.status = None;
        link.error = None;
        let mut out = Vec::new();
        write_entry(&mut out, &e).unwrap();
        out.push(b'\n');
        write_entry(&mut out, &link).unwrap();
        // The bytes of the format before the facts were nested in memory.
        let expected = format!(
            concat!(
                r#"{{"path":"a/b.txt","kind":"file","size":3,"mtime_ns":5,"mode":420,"sha256":"{}","ctime_ns":6,"ino":7,"rehash":true,"status":"stale","error":"denied"}}"#,
                "\n\n",
                r#"{{"path":"l","kind":"symlink","size":3,"mtime_ns":5,"mode":420,"target":"../outside","ctime_ns":6,"ino":7}}"#,
                "\n"
            ),
            "01".repeat(32)
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        let back: Vec<_> = parse_manifest(&out[..], "m".into())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![e, link]);
        // Fields left out default, as they always did.
        let old: ManifestEntry = serde_json::from_str(r#"{"path":"x","kind":"dir"}"#).unwrap();
        assert_eq!(old.entry.stat, FileStat::default());
        assert!(!old.rehash && old.status.is_none());
    }

    #[test]
    fn corrupt_line_names_its_source_and_line() {
        let err = parse_manifest(&b"{}\n"[..], "manifest.jsonl".into())
            .next()
            .unwrap()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("manifest.jsonl") && msg.contains("line 1"),
            "{msg}"
        );
    }

    /// Reliability v2 #15: an endless line (a huge sparse file reads as
    /// zeros without a newline) is damage after 1 MiB, never an endless
    /// read or an allocation the size of the file.
    #[test]
    fn an_endless_line_is_damage_after_a_bounded_read() {
        let reader = std::io::BufReader::new(std::io::repeat(0));
        let mut lines = parse_manifest(reader, "manifest.jsonl".into());
        let err = lines.next().unwrap().unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("damaged"), "{err}");
        assert!(lines.next().is_none(), "reading went on after the damage");
    }

    #[cfg(unix)]
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::os::unix::ffi::OsStrExt;

        fn component() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
                1..12,
            )
            .prop_filter("not . or ..", |c| c != b"." && c != b"..")
        }

        fn rel_path() -> impl Strategy<Value = RelPath> {
            proptest::collection::vec(component(), 1..4).prop_map(|parts| {
                let joined = parts.join(&b'/');
                RelPath::new(std::ffi::OsStr::from_bytes(&joined)).unwrap()
            })
        }

        fn entry() -> impl Strategy<Value = ManifestEntry> {
            (
                rel_path(),
                prop_oneof![
                    Just(EntryKind::File),
                    Just(EntryKind::Dir),
                    Just(EntryKind::Symlink)
                ],
                (
                    any::<u64>(),
                    any::<i64>(),
                    any::<i64>(),
                    any::<u64>(),
                    0u32..0o10000,
                ),
                proptest::option::of(any::<[u8; 32]>()),
                proptest::option::of(proptest::collection::vec(
                    any::<u8>().prop_filter("no NUL", |b| *b != 0),
                    1..40,
                )),
                any::<bool>(),
                proptest::option::of(prop_oneof![
                    Just(EntryStatus::Stale),
                    Just(EntryStatus::Failed),
                    Just(EntryStatus::ChangedDuringBackup)
                ]),
                proptest::option::of(".{0,40}"),
            )
                .prop_map(
                    |(
                        path,
                        kind,
                        (size, mtime_ns, ctime_ns, ino, mode),
                        sha,
                        target,
                        rehash,
                        status,
                        error,
                    )| {
                        ManifestEntry {
                            entry: ScanEntry {
                                path,
                                kind,
                                stat: FileStat {
                                    size,
                                    mtime_ns,
                                    ctime_ns,
                                    ino,
                                    mode,
                                },
                                link_target: target
                                    .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(&t))),
                            },
                            sha256: sha.map(ContentHash),
                            rehash,
                            status,
                            error,
                        }
                    },
                )
        }

        proptest! {
            /// Whatever the codec writes, it reads back exactly (paths and
            /// targets of any bytes, every field at its extremes).
            #[test]
            fn the_manifest_codec_round_trips(entries in proptest::collection::vec(entry(), 0..20)) {
                let mut out = Vec::new();
                for e in &entries {
                    write_entry(&mut out, e).unwrap();
                }
                let back: Vec<ManifestEntry> = parse_manifest(&out[..], "m".into())
                    .collect::<Result<_, _>>()
                    .unwrap();
                prop_assert_eq!(back, entries);
            }

            /// Any bytes at all: the reader never panics, and every line is
            /// an entry or an error naming its line.
            #[test]
            fn the_manifest_reader_never_panics_on_hostile_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
                for item in parse_manifest(&bytes[..], "m".into()) {
                    if let Err(e) = item {
                        prop_assert!(e.to_string().contains("line"), "{}", e);
                    }
                }
            }
        }
    }
}
