//! [`S3Writer`]: a snapshot being uploaded.
//!
//! When the writer starts (under the run's lock) it lists `data/` once.
//! Changed files are hashed, then uploaded to `data/<2 hex>/<sha256>`
//! unless an object of that name and size is listed. An unchanged file
//! whose content is not listed (deleted by hand, or by a run that took
//! this one for dead) is uploaded again from the source rather than
//! linked to nothing.
//! Small files are read once into memory; larger ones are hashed, then
//! streamed in parts and hashed again, and the upload is abandoned if the
//! file changed in between. The manifest collects in a temporary file and
//! is uploaded last, in one atomic PUT (or completed multipart upload):
//! until then the snapshot does not exist.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use backup_core::{
    Action, ContentHash, ContentHasher, CoreError, EntryKind, FileStat, ManifestEntry,
    PlannedEntry, SnapshotInfo, SnapshotWriter, WriteOutcome, WrittenEntry,
};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use tracing::{debug, warn};

use super::lock::LockGuard;
use super::remote::Remote;
use backup_copy::CHANGED_FILE_RETRIES;
use backup_core::hash_reader;
use backup_core::RelPath;
use backup_sys::open_beneath;

/// Files up to this size are read into memory and uploaded in one PUT.
pub const SMALL_FILE: u64 = 2 << 20;
/// Part size of multipart uploads (S3 needs at least 5 MiB but the last).
pub const PART_SIZE: usize = 6 << 20;

/// Whether a content object is being uploaded by this run, or is there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    Uploading,
    Present,
}

/// Why a file's content could not be uploaded (not fatal for the run).
pub(crate) enum SourceProblem {
    /// Reading the source failed.
    Unreadable(String),
    /// It changed between hashing and uploading.
    Changed,
}

/// A snapshot being uploaded.
pub struct S3Writer {
    remote: Arc<Remote>,
    source: PathBuf,
    manifest_key: Key,
    manifest: Mutex<Option<BufWriter<File>>>,
    lock: Mutex<Option<LockGuard>>,
    claims: Mutex<HashMap<ContentHash, Claim>>,
    claimed: Condvar,
    /// Contents in the store when the writer started, with their sizes.
    present: HashMap<ContentHash, u64>,
    /// Contents the manifest references so far.
    needed: Mutex<HashSet<ContentHash>>,
}

/// Removes an unfinished claim (also when the upload panicked) and wakes
/// the threads waiting for it.
struct ClaimGuard<'a> {
    writer: &'a S3Writer,
    hash: ContentHash,
    present: bool,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        let mut claims = guard(&self.writer.claims);
        if self.present {
            claims.insert(self.hash, Claim::Present);
        } else {
            claims.remove(&self.hash);
        }
        self.writer.claimed.notify_all();
    }
}

/// Lists the contents in the store, with their sizes.
pub(crate) fn list_present(remote: &Remote) -> Result<HashMap<ContentHash, u64>, CoreError> {
    Ok(remote
        .list_all(super::remote::DATA_DIR)?
        .into_iter()
        .filter_map(|m| Some((m.location.filename()?.parse().ok()?, m.size)))
        .collect())
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl S3Writer {
    pub(crate) fn new(
        remote: Arc<Remote>,
        source: PathBuf,
        name: &str,
        lock: LockGuard,
    ) -> Result<Self, CoreError> {
        let manifest_key = remote.manifest_key(name);
        let file = tempfile::tempfile().map_err(|e| {
            CoreError::io(
                "create a temporary manifest file in",
                &std::env::temp_dir(),
                e,
            )
        })?;
        let present = list_present(&remote)?;
        Ok(S3Writer {
            present,
            needed: Mutex::new(HashSet::new()),
            remote,
            source,
            manifest_key,
            manifest: Mutex::new(Some(BufWriter::with_capacity(1 << 16, file))),
            lock: Mutex::new(Some(lock)),
            claims: Mutex::new(HashMap::new()),
            claimed: Condvar::new(),
        })
    }

    /// Hashes and uploads the source file, retrying while it changes.
    /// `Ok(Err(_))`: the source could not be read (or kept changing).
    fn upload_source(
        &self,
        planned: PlannedEntry,
    ) -> Result<Result<WrittenEntry, (PlannedEntry, String)>, CoreError> {
        let rel = &planned.entry.path;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let read = match read_hashed(&self.source, rel) {
                Ok(r) => r,
                Err(e) => return Ok(Err((planned, e.to_string()))),
            };
            if read.changed && attempt < CHANGED_FILE_RETRIES {
                debug!(path = %planned.entry.path, attempt, "changed while read; reading again");
                continue;
            }
            let uploaded = match self.ensure_object(read.hash, read.bytes, read.body, rel)? {
                Ok(n) => n,
                Err(SourceProblem::Unreadable(e)) => return Ok(Err((planned, e))),
                Err(SourceProblem::Changed) if attempt < CHANGED_FILE_RETRIES => continue,
                Err(SourceProblem::Changed) => {
                    let why = "kept changing while it was uploaded; the next run tries again";
                    return Ok(Err((planned, why.into())));
                }
            };
            if read.changed {
                warn!(path = %planned.entry.path, "kept changing while it was read; the next run hashes it again");
            }
            let m = planned.to_manifest_read(read.hash, read.bytes, read.stat, read.changed);
            let outcome = match uploaded {
                Some(bytes) => WriteOutcome::Copied { bytes },
                None => WriteOutcome::Linked,
            };
            return Ok(Ok(WrittenEntry {
                manifest: m,
                outcome,
            }));
        }
    }

    /// Makes sure `data/<hash>` exists: uploads it unless it is there or
    /// this run uploads it already. Returns the bytes uploaded (`None`
    /// when the object was already there).
    fn ensure_object(
        &self,
        hash: ContentHash,
        size: u64,
        body: Option<Vec<u8>>,
        rel: &RelPath,
    ) -> Result<Result<Option<u64>, SourceProblem>, CoreError> {
        {
            let mut claims = guard(&self.claims);
            loop {
                match claims.get(&hash) {
                    Some(Claim::Present) => return Ok(Ok(None)),
                    Some(Claim::Uploading) => {
                        claims = self.claimed.wait(claims).unwrap_or_else(|p| p.into_inner());
                    }
                    None => {
                        claims.insert(hash, Claim::Uploading);
                        break;
                    }
                }
            }
        }
        let mut claim = ClaimGuard {
            writer: self,
            hash,
            present: false,
        };
        let result = self.upload_unless_present(hash, size, body, rel);
        claim.present = matches!(result, Ok(Ok(_)));
        drop(claim);
        result
    }

    fn upload_unless_present(
        &self,
        hash: ContentHash,
        size: u64,
        body: Option<Vec<u8>>,
        rel: &RelPath,
    ) -> Result<Result<Option<u64>, SourceProblem>, CoreError> {
        let remote = &self.remote;
        let key = remote.data_key(&hash);
        match self.present.get(&hash) {
            Some(&n) if n == size => return Ok(Ok(None)),
            Some(&n) => {
                warn!(object = %key, size = n, expected = size, "replacing a content object of the wrong size");
            }
            None => {}
        }
        match body {
            Some(body) => {
                remote
                    .block(remote.store.put(&key, PutPayload::from(body)))
                    .map_err(|e| remote.error("upload", &key, e))?;
                Ok(Ok(Some(size)))
            }
            None => {
                let file = match open_beneath(&self.source, rel.as_path()) {
                    Ok((f, _)) => f,
                    Err(e) => return Ok(Err(SourceProblem::Unreadable(e.to_string()))),
                };
                // The bytes that were hashed, no more.
                match upload_parts(remote, &key, &mut file.take(size), Some(hash))? {
                    Ok(n) => Ok(Ok(Some(n))),
                    Err(p) => Ok(Err(p)),
                }
            }
        }
    }

    /// Uploads the source file; when it cannot be read, keeps the last
    /// good content if the store still has it.
    fn write_copy(&self, planned: PlannedEntry) -> Result<WrittenEntry, CoreError> {
        let (mut planned, error) = match self.upload_source(planned)? {
            Ok(w) => return Ok(w),
            Err(failed) => failed,
        };
        match planned.previous_version.take() {
            Some(copy) if self.present.contains_key(&copy.hash) => {
                planned.action = Action::KeepStale { copy, error };
                Ok(WrittenEntry {
                    manifest: planned.into_manifest(None),
                    outcome: WriteOutcome::Stale { linked: true },
                })
            }
            _ => Ok(WrittenEntry::failed(planned, error)),
        }
    }

    /// Before commit: if the lock went unrefreshed long enough for other
    /// runs to take this one for dead (and collect garbage), checks that
    /// every content the manifest references is still there.
    fn check_still_present(&self) -> Result<(), CoreError> {
        let unrefreshed = guard(&self.lock)
            .as_ref()
            .map_or(Duration::ZERO, LockGuard::unrefreshed_for);
        if unrefreshed < super::lock::STALE_AFTER / 2 {
            return Ok(());
        }
        let now = list_present(&self.remote)?;
        let missing = guard(&self.needed)
            .iter()
            .filter(|h| !now.contains_key(h))
            .count();
        if missing == 0 {
            return Ok(());
        }
        Err(CoreError::Remote {
            action: "commit",
            location: self.remote.url_of(&self.manifest_key),
            message: format!(
                "this run could not refresh its lock for {} minutes (was the machine asleep?) and {missing} contents it needs were deleted meanwhile; run the backup again",
                unrefreshed.as_secs() / 60
            ),
            source: None,
        })
    }

    fn release_lock(&self) {
        drop(guard(&self.lock).take());
    }
}

/// A source file read and hashed.
struct ReadFile {
    hash: ContentHash,
    bytes: u64,
    stat: FileStat,
    /// The bytes, for a small file.
    body: Option<Vec<u8>>,
    changed: bool,
}

/// Reads `src` once: a small file into memory, a large one only hashed.
/// Reads `rel` below `source` (never through a symlink anywhere in it).
fn read_hashed(source: &Path, rel: &RelPath) -> io::Result<ReadFile> {
    let (mut file, _) = open_beneath(source, rel.as_path())?;
    let before = file.metadata()?;
    let stat = FileStat::from_metadata(&before);
    // At most the size seen at open (a growing file is read again, up to
    // the retry limit, never for ever).
    let mut bounded = (&mut file).take(stat.size);
    let (hash, bytes, body) = if stat.size <= SMALL_FILE {
        let mut body = Vec::with_capacity(stat.size as usize);
        bounded.read_to_end(&mut body)?;
        let hash = ContentHash::of(&body);
        (hash, body.len() as u64, Some(body))
    } else {
        let (hash, total) = hash_reader(&mut bounded)?;
        (hash, total, None)
    };
    let after = FileStat::from_metadata(&file.metadata()?);
    let changed = after.size != stat.size || after.mtime_ns != stat.mtime_ns || bytes != stat.size;
    Ok(ReadFile {
        hash,
        bytes,
        stat: FileStat {
            size: bytes,
            ..stat
        },
        body,
        changed,
    })
}

/// Fills `buf` from `input` as far as it goes; returns the bytes read.
fn fill(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams `input` to `key` in parts of [`PART_SIZE`] (constant memory),
/// hashing it; when `expected` is given and the bytes do not match it,
/// the upload is abandoned (nothing appears under `key`). Returns the
/// bytes uploaded.
pub(crate) fn upload_parts(
    remote: &Remote,
    key: &Key,
    input: &mut dyn Read,
    expected: Option<ContentHash>,
) -> Result<Result<u64, SourceProblem>, CoreError> {
    let mut upload = remote
        .block(remote.store.put_multipart(key))
        .map_err(|e| remote.error("start uploading", key, e))?;
    let mut hasher = ContentHasher::new();
    let mut total = 0u64;
    let outcome: Result<Result<(), SourceProblem>, CoreError> = (|| loop {
        // Each part's buffer is handed to the client as is (no copy), so a
        // worker holds one part at a time.
        let mut buf = vec![0u8; PART_SIZE];
        let n = match fill(input, &mut buf) {
            Ok(n) => n,
            Err(e) => return Ok(Err(SourceProblem::Unreadable(e.to_string()))),
        };
        if n == 0 && total > 0 {
            return Ok(Ok(()));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        buf.truncate(n);
        remote
            .block(upload.put_part(PutPayload::from(buf)))
            .map_err(|e| remote.error("upload a part of", key, e))?;
        if n < PART_SIZE {
            return Ok(Ok(()));
        }
    })();
    let hash = hasher.finish();
    let outcome = match outcome {
        Ok(Ok(())) if expected.is_some_and(|h| h != hash) => Ok(Err(SourceProblem::Changed)),
        other => other,
    };
    match outcome {
        Ok(Ok(())) => match remote.block(upload.complete()) {
            Ok(_) => Ok(Ok(total)),
            Err(e) => {
                let _ = remote.block(upload.abort());
                Err(remote.error("finish uploading", key, e))
            }
        },
        other => {
            if let Err(e) = remote.block(upload.abort()) {
                debug!(object = %key, error = %e, "cannot abort the multipart upload");
            }
            other.map(|r| r.map(|()| total))
        }
    }
}

impl SnapshotWriter for S3Writer {
    fn write(&self, planned: PlannedEntry) -> Result<WrittenEntry, CoreError> {
        match &planned.action {
            Action::CreateDir | Action::CreateSymlink => {
                Ok(WrittenEntry::recorded(planned.into_manifest(None)))
            }
            Action::Link { hash, .. } if self.present.contains_key(hash) => {
                let hash = *hash;
                Ok(WrittenEntry {
                    manifest: planned.into_manifest(Some(hash)),
                    outcome: WriteOutcome::Linked,
                })
            }
            // Its content is gone from the store: upload it again.
            Action::Link { .. } => {
                warn!(path = %planned.entry.path, "its content is missing from the store; uploading it again");
                self.write_copy(planned)
            }
            Action::KeepStale { copy, .. } if self.present.contains_key(&copy.hash) => {
                Ok(WrittenEntry {
                    manifest: planned.into_manifest(None),
                    outcome: WriteOutcome::Stale { linked: true },
                })
            }
            Action::KeepStale { error, .. } => {
                let error = format!("{error}; its last good copy is missing from the store");
                Ok(WrittenEntry::failed(planned, error))
            }
            Action::Fail { error } => {
                let error = error.clone();
                Ok(WrittenEntry::failed(planned, error))
            }
            Action::Copy => self.write_copy(planned),
        }
    }

    fn record(&self, entry: &ManifestEntry) -> Result<(), CoreError> {
        if let (Some(h), EntryKind::File) = (entry.sha256, entry.entry.kind) {
            guard(&self.needed).insert(h);
        }
        let mut manifest = guard(&self.manifest);
        let Some(out) = manifest.as_mut() else {
            return Ok(());
        };
        serde_json::to_writer(&mut *out, entry)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| CoreError::io("write the temporary manifest in", &std::env::temp_dir(), e))
    }

    fn commit(&self, info: &SnapshotInfo) -> Result<String, CoreError> {
        let remote = &self.remote;
        let key = &self.manifest_key;
        let result = (|| {
            self.check_still_present()?;
            let out = guard(&self.manifest)
                .take()
                .ok_or_else(|| CoreError::Remote {
                    action: "commit",
                    location: remote.url_of(key),
                    message: "the snapshot was already committed or aborted".into(),
                    source: None,
                })?;
            let tmp_err = |e: io::Error| {
                CoreError::io("read the temporary manifest in", &std::env::temp_dir(), e)
            };
            let mut file = out.into_inner().map_err(|e| tmp_err(e.into_error()))?;
            file.rewind().map_err(tmp_err)?;
            match remote.block(remote.store.head(key)) {
                Err(object_store::Error::NotFound { .. }) => {}
                Ok(_) => {
                    return Err(CoreError::Remote {
                        action: "commit",
                        location: remote.url_of(key),
                        message: "a snapshot of that name appeared during the run; run again"
                            .into(),
                        source: None,
                    })
                }
                Err(e) => return Err(remote.error("look up", key, e)),
            }
            let mut head = serde_json::to_vec(info).map_err(|e| CoreError::Remote {
                action: "write",
                location: remote.url_of(key),
                message: String::new(),
                source: Some(Box::new(e)),
            })?;
            head.push(b'\n');
            let len = file.metadata().map_err(tmp_err)?.len();
            if len + head.len() as u64 <= SMALL_FILE {
                file.read_to_end(&mut head).map_err(tmp_err)?;
                remote
                    .block(remote.store.put(key, PutPayload::from(head)))
                    .map_err(|e| remote.error("upload", key, e))?;
            } else {
                let mut body = io::Cursor::new(head).chain(file);
                if let Err(problem) = upload_parts(remote, key, &mut body, None)? {
                    let why = match problem {
                        SourceProblem::Unreadable(e) => e,
                        SourceProblem::Changed => "it changed while it was uploaded".into(),
                    };
                    return Err(CoreError::Remote {
                        action: "upload",
                        location: remote.url_of(key),
                        message: format!("cannot read the temporary manifest: {why}"),
                        source: None,
                    });
                }
            }
            Ok(remote.url_of(key))
        })();
        self.release_lock();
        result
    }

    fn abort(&self) {
        guard(&self.manifest).take();
        self.release_lock();
    }
}
