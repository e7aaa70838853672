//! # backup-s3
//!
//! The S3-compatible object-storage destination (`backup-cli`'s cargo
//! feature `s3`): a second implementation of the whole destination behind
//! the same [`SnapshotStore`] trait, so the scan, hash/diff and retention
//! stages do not change. This crate owns the bucket's layout; nothing else
//! knows it.
//!
//! Layout under `s3://BUCKET/PREFIX`:
//!
//! - `data/<first 2 hex>/<sha256>`: file contents, stored once however many
//!   files and snapshots share them;
//! - `snapshots/<name>.json`: a snapshot's manifest, uploaded last (a
//!   snapshot exists exactly when its manifest does). JSON Lines: the first
//!   line is the [`SnapshotInfo`], each further line a [`ManifestEntry`];
//! - `locks/<host>-<pid>-<nanos>.json`: the runs using the prefix now (see
//!   [`lock`]).
//!
//! An interrupted upload leaves contents without a manifest; the next run
//! finds them by name and does not upload them again. Deleting a snapshot
//! deletes its manifest; [`SnapshotStore::collect_garbage`] then deletes the
//! contents no remaining manifest (of any profile sharing the prefix)
//! references, under an exclusive lock.
//!
//! The client is `object_store` (async); each call is run to completion on
//! a small private runtime, so the stages stay plain threads.

pub mod lock;
mod remote;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use backup_core::manifest::parse_manifest;
use backup_core::{
    error_chain, Content, ContentHash, ContentHasher, CoreError, EntryKind, EntryStatus,
    ManifestEntries, ManifestEntry, Phase, Progress, Repair, SnapshotInfo, SnapshotPath,
    SnapshotRef, SnapshotStore, SnapshotWriter, VerifyReport,
};
use backup_naming::{
    next_name_among, parse_snapshot_name, same_source, snapshot_created, sort_snapshots,
};
use chrono::{DateTime, Local};
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::{info, warn};

pub use remote::{Remote, DATA_DIR, LOCKS_DIR, SNAPSHOTS_DIR};
pub use writer::{PART_SIZE, SMALL_FILE};

/// Content requests `verify` keeps in flight.
const VERIFY_REQUESTS: usize = 16;

/// Where and how to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Service URL for non-AWS services; `None` for AWS.
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Environment variable holding the access key id.
    pub access_key_env: String,
    /// Environment variable holding the secret access key.
    pub secret_key_env: String,
}

/// Stage 3 for an S3-compatible bucket.
#[derive(Clone, Debug)]
pub struct S3Store {
    remote: Arc<Remote>,
    source: PathBuf,
    profile: String,
}

impl S3Store {
    /// Connects to the bucket for snapshots of `profile` backing up
    /// `source`. Fails (before anything is scanned) when the credentials
    /// are missing or refused, the bucket does not exist or the endpoint
    /// cannot be reached.
    pub fn connect(
        opts: &S3Options,
        profile: &str,
        source: impl Into<PathBuf>,
    ) -> Result<S3Store, CoreError> {
        Ok(S3Store {
            remote: Remote::connect(opts)?,
            source: source.into(),
            profile: profile.to_owned(),
        })
    }

    /// The connection.
    pub fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// Snapshot names (of every profile) with a manifest in the store.
    fn manifest_names(&self) -> Result<Vec<(String, Key)>, CoreError> {
        Ok(self
            .remote
            .list_all(SNAPSHOTS_DIR)?
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.strip_suffix(".json")?.to_owned();
                Some((name, m.location))
            })
            .collect())
    }

    /// Reads the first line of a manifest: the snapshot's info. (The
    /// download is dropped after that line; ranged reads are not used
    /// because not every S3-compatible server honours them.)
    fn read_info(&self, key: &Key) -> Result<SnapshotInfo, CoreError> {
        let url = self.remote.url_of(key);
        let (line, _rest) = self.remote.open_manifest(key)?;
        serde_json::from_slice(&line).map_err(|e| CoreError::Remote {
            action: "read",
            location: url,
            message: format!("its first line is not a snapshot summary ({e})"),
            source: None,
        })
    }

    /// Checks `snapshots`: every file content they reference is downloaded
    /// and hashed once (contents are shared), or with `quick` only looked
    /// up and its size compared. `requests` run at once.
    fn verify_contents(
        &self,
        snapshots: &[SnapshotRef],
        quick: bool,
        requests: usize,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, CoreError> {
        let mut report = VerifyReport::default();
        let mut wanted: HashMap<ContentHash, u64> = HashMap::new();
        for snap in snapshots {
            report.snapshots_checked += 1;
            for e in self.read_manifest(snap)? {
                let e = e?;
                if let Some((hash, size)) = content_of(&e) {
                    report.files_checked += 1;
                    wanted.insert(hash, size);
                }
            }
        }
        let total: u64 = wanted.values().sum();
        let bar = progress.start(
            Phase::Verify,
            Some(wanted.len() as u64),
            (!quick).then_some(total),
        );
        let remote = &self.remote;
        let checks = wanted.into_iter().map(|(hash, size)| async move {
            let key = remote.data_key(&hash);
            let verdict = if quick {
                match remote.store.head(&key).await {
                    Ok(m) if m.size == size => Ok(Verdict::Good(0)),
                    Ok(_) => Ok(Verdict::Corrupt),
                    Err(object_store::Error::NotFound { .. }) => Ok(Verdict::Missing),
                    Err(e) => Err(remote.error("look up", &key, e)),
                }
            } else {
                match remote.store.get(&key).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(Verdict::Missing),
                    Err(e) => Err(remote.error("download", &key, e)),
                    Ok(got) => {
                        let mut stream = got.into_stream();
                        let mut hasher = ContentHasher::new();
                        let mut n = 0u64;
                        let mut failed = None;
                        while let Some(chunk) = stream.next().await {
                            match chunk {
                                Ok(c) => {
                                    hasher.update(&c);
                                    n += c.len() as u64;
                                }
                                Err(e) => {
                                    failed = Some(remote.error("download", &key, e));
                                    break;
                                }
                            }
                        }
                        match failed {
                            Some(e) => Err(e),
                            None if hasher.finish() == hash && n == size => Ok(Verdict::Good(n)),
                            None => Ok(Verdict::Corrupt),
                        }
                    }
                }
            };
            (hash, size, verdict)
        });
        let results: Vec<_> = remote.block(
            futures::stream::iter(checks)
                .buffer_unordered(requests.clamp(1, 64))
                .inspect(|(_, size, _)| bar.inc(1, if quick { 0 } else { *size }))
                .collect(),
        );
        bar.finish();
        let mut bad: HashMap<ContentHash, bool> = HashMap::new();
        for (hash, _, verdict) in results {
            match verdict? {
                Verdict::Good(n) => report.bytes_checked += n,
                Verdict::Corrupt => {
                    bad.insert(hash, true);
                }
                Verdict::Missing => {
                    bad.insert(hash, false);
                }
            }
        }
        if !bad.is_empty() {
            // Name every file that uses a bad content.
            for snap in snapshots {
                for e in self.read_manifest(snap)? {
                    let e = e?;
                    let Some((hash, _)) = content_of(&e) else {
                        continue;
                    };
                    let at = || SnapshotPath {
                        snapshot: snap.name.clone(),
                        path: e.entry.path.to_string(),
                    };
                    match bad.get(&hash) {
                        Some(true) => report.corrupt.push(at()),
                        Some(false) => report.missing.push(at()),
                        None => {}
                    }
                }
            }
        }
        report.corrupt.sort();
        report.missing.sort();
        Ok(report)
    }
}

/// The content a manifest entry references, with its size.
fn content_of(e: &ManifestEntry) -> Option<(ContentHash, u64)> {
    if e.entry.kind != EntryKind::File || e.status == Some(EntryStatus::Failed) {
        return None;
    }
    e.sha256.map(|h| (h, e.entry.stat.size))
}

enum Verdict {
    Good(u64),
    Corrupt,
    Missing,
}

impl SnapshotStore for S3Store {
    fn list(&self, _history: &HashSet<String>) -> Result<Vec<SnapshotRef>, CoreError> {
        let profile = self.profile.as_str();
        let mut out = Vec::new();
        for (name, key) in self.manifest_names()? {
            let Some(stamp) = parse_snapshot_name(profile, &name) else {
                continue;
            };
            let info = match self.read_info(&key) {
                Ok(i) => i,
                Err(e) => {
                    warn!(manifest = %key, error = %error_chain(&e), "skipping an unreadable snapshot manifest");
                    continue;
                }
            };
            if info.profile != profile || !same_source(&info.source, &self.source) {
                continue;
            }
            out.push(SnapshotRef {
                created: snapshot_created(Some(&info), stamp),
                location: self.remote.url_of(&key),
                name,
                info: Some(info),
                adopted: false,
            });
        }
        sort_snapshots(&mut out);
        Ok(out)
    }

    fn read_manifest(&self, snapshot: &SnapshotRef) -> Result<ManifestEntries, CoreError> {
        let key = self.remote.manifest_key(&snapshot.name);
        let url = self.remote.url_of(&key);
        // The first line is the snapshot's info.
        let (_info, reader) = self.remote.open_manifest(&key)?;
        Ok(Box::new(parse_manifest(reader, PathBuf::from(url))))
    }

    fn open_content(
        &self,
        snapshot: &SnapshotRef,
        entry: &ManifestEntry,
    ) -> Result<Content, CoreError> {
        let hash = entry.sha256.ok_or_else(|| {
            CoreError::NotFound(format!(
                "{} in {} has no content",
                entry.entry.path, snapshot.name
            ))
        })?;
        let key = self.remote.data_key(&hash);
        Ok(Content::Reader(Box::new(self.remote.open(&key)?)))
    }

    fn next_name(
        &self,
        now: DateTime<Local>,
        history: &HashSet<String>,
    ) -> Result<String, CoreError> {
        let names = self.manifest_names()?.into_iter().map(|(n, _)| n);
        Ok(next_name_among(names, &self.profile, now, history))
    }

    fn remove_leftovers(&self) -> Result<Vec<String>, CoreError> {
        // Contents an interrupted run uploaded are kept: the next run
        // reuses them, garbage collection removes those nobody needs.
        Ok(Vec::new())
    }

    fn begin(
        &self,
        name: &str,
        _previous: Option<&SnapshotRef>,
    ) -> Result<Box<dyn SnapshotWriter>, CoreError> {
        let guard = match lock::take(&self.remote, false, &self.profile)? {
            lock::Locked::Held(g) => g,
            lock::Locked::Busy(other) => {
                return Err(CoreError::Remote {
                    action: "lock",
                    location: self.remote.url(),
                    message: format!(
                        "a run on {} (PID {}, since {}) is deleting unused data there; try again later (if that run is dead, its lock goes stale {} minutes after its last refresh)",
                        other.host,
                        other.pid,
                        other.started,
                        lock::STALE_AFTER.as_secs() / 60
                    ),
                    source: None,
                })
            }
        };
        Ok(Box::new(writer::S3Writer::new(
            Arc::clone(&self.remote),
            self.source.clone(),
            name,
            guard,
        )?))
    }

    fn remove(&self, snapshot: &SnapshotRef) -> Result<(), CoreError> {
        let remote = &self.remote;
        let key = remote.manifest_key(&snapshot.name);
        match remote.block(remote.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote.error("delete", &key, e)),
        }
    }

    fn collect_garbage(&self) -> Result<Option<String>, CoreError> {
        let r = self.gc()?;
        let line = match &r.put_off {
            Some(why) => format!("garbage collection put off: {why}"),
            None => format!(
                "garbage collection: {} manifests, {} contents kept, {} deleted ({} bytes)",
                r.manifests, r.kept, r.deleted, r.bytes_deleted
            ),
        };
        info!("{line}");
        Ok(Some(line))
    }

    /// Downloads and re-hashes each content once; `threads` is ignored:
    /// up to 16 requests run at once (the wait is on the network).
    fn verify(
        &self,
        snapshots: &[SnapshotRef],
        quick: bool,
        _threads: usize,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, CoreError> {
        self.verify_contents(snapshots, quick, VERIFY_REQUESTS, progress)
    }

    /// Uploads the content again (under its SHA-256, which the upload
    /// checks) when the source still holds it.
    fn repair(&self, _snapshot: &SnapshotRef, entry: &ManifestEntry) -> Result<Repair, CoreError> {
        let (EntryKind::File, Some(recorded)) = (entry.entry.kind, entry.sha256) else {
            return Ok(Repair::NotRepaired(
                "only files with recorded content can be uploaded again".into(),
            ));
        };
        let src = entry.entry.path.under(&self.source);
        let size = entry.entry.stat.size;
        let changed = || {
            Repair::NotRepaired(format!(
                "the source {} no longer holds the recorded content (it changed since this snapshot)",
                src.display()
            ))
        };
        let file = match backup_sys::open_beneath(&self.source, entry.entry.path.as_path()) {
            Ok((f, meta)) if meta.len() == size => f,
            Ok(_) => return Ok(changed()),
            Err(e) => {
                return Ok(Repair::NotRepaired(format!(
                    "the source {} cannot be read ({e})",
                    src.display()
                )))
            }
        };
        let key = self.remote.data_key(&recorded);
        let mut input = std::io::Read::take(file, size);
        match writer::upload_parts(&self.remote, &key, &mut input, Some(recorded))? {
            Ok(_) => Ok(Repair::Repaired),
            Err(writer::SourceProblem::Changed) => Ok(changed()),
            Err(writer::SourceProblem::Unreadable(e)) => Ok(Repair::NotRepaired(format!(
                "the source {} cannot be read ({e})",
                src.display()
            ))),
        }
    }
}

/// What a garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Manifests read.
    pub manifests: u64,
    /// Content objects kept (referenced).
    pub kept: u64,
    /// Content objects deleted.
    pub deleted: u64,
    /// Bytes deleted.
    pub bytes_deleted: u64,
    /// Set when another run was live and nothing was deleted.
    pub put_off: Option<String>,
}

impl S3Store {
    /// Deletes every content object that no manifest under the prefix
    /// references, holding an exclusive lock; puts itself off (deleting
    /// nothing) while another run holds a live lock.
    pub fn gc(&self) -> Result<GcReport, CoreError> {
        let remote = &self.remote;
        let _guard = match lock::take(remote, true, &self.profile)? {
            lock::Locked::Held(g) => g,
            lock::Locked::Busy(other) => {
                return Ok(GcReport {
                    put_off: Some(format!(
                        "a run on {} (PID {}) is using {}",
                        other.host,
                        other.pid,
                        remote.url()
                    )),
                    ..GcReport::default()
                })
            }
        };
        let mut report = GcReport::default();
        let mut referenced: HashSet<ContentHash> = HashSet::new();
        for meta in remote.list_all(SNAPSHOTS_DIR)? {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if !name.ends_with(".json") {
                continue;
            }
            report.manifests += 1;
            let url = remote.url_of(&meta.location);
            let (_info, reader) = remote.open_manifest(&meta.location)?;
            // Any unreadable manifest stops the collection: never delete
            // what might be needed.
            for e in parse_manifest(reader, PathBuf::from(url)) {
                if let Some(h) = e?.sha256 {
                    referenced.insert(h);
                }
            }
        }
        let mut doomed = Vec::new();
        for meta in remote.list_all(DATA_DIR)? {
            let hash = meta
                .location
                .filename()
                .and_then(|n| n.parse::<ContentHash>().ok());
            let Some(hash) = hash else {
                continue;
            };
            if referenced.contains(&hash) {
                report.kept += 1;
            } else {
                report.bytes_deleted += meta.size;
                doomed.push(meta.location);
            }
        }
        // Bulk deletes (up to 1,000 keys a request where the service
        // supports it): a large collection holds the exclusive lock briefly.
        let keys = futures::stream::iter(doomed.into_iter().map(Ok)).boxed();
        let results: Vec<_> = remote.block(remote.store.delete_stream(keys).collect());
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => report.deleted += 1,
                Err(e) => {
                    return Err(CoreError::Remote {
                        action: "delete unreferenced contents in",
                        location: remote.url(),
                        message: remote.hint(&e),
                        source: Some(Box::new(e)),
                    })
                }
            }
        }
        Ok(report)
    }
}
