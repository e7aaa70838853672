//! Lock objects: `locks/<host>-<pid>-<nanos>.json`, holding host, PID,
//! start and refresh times, and whether the lock is exclusive.
//!
//! A backup that uploads holds a shared lock; garbage collection holds an
//! exclusive one. Each writes its own object first and then lists the
//! others, so of two runs starting together at least one sees the other:
//! a backup waits while an exclusive lock is live, garbage collection is
//! put off while any other lock is live. A live run rewrites its lock every
//! [`REFRESH_EVERY`]; a lock not refreshed for [`STALE_AFTER`] (or one of
//! this host whose process is gone) is stale and ignored.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use backup_core::CoreError;
use chrono::{DateTime, Utc};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::remote::{Remote, LOCKS_DIR};

/// How often a live run rewrites its lock object.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// A lock not refreshed for this long belongs to a dead run.
pub const STALE_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long a backup waits for another run's garbage collection.
const WAIT_FOR_EXCLUSIVE: Duration = Duration::from_secs(120);

/// The content of a lock object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// Host name of the run.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it took the lock (RFC 3339).
    pub started: String,
    /// When it last rewrote the lock (RFC 3339).
    pub refreshed: String,
    /// Garbage collection (exclusive) or a backup (shared).
    pub exclusive: bool,
    /// The profile of the run.
    pub profile: String,
}

impl LockInfo {
    /// Whether the run holding it is presumed dead at `now`.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        let refreshed = DateTime::parse_from_rfc3339(&self.refreshed)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let age = now.signed_duration_since(refreshed);
        if age.to_std().is_ok_and(|a| a > STALE_AFTER) {
            return true;
        }
        // A run of this host whose process is gone (checked where /proc
        // tells; elsewhere only the age counts).
        self.host == backup_core::fsutil::host_name()
            && self.pid != std::process::id()
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// A lock object held by this run; refreshed by a thread, deleted on drop.
pub struct LockGuard {
    remote: Arc<Remote>,
    key: Key,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").field("key", &self.key).finish()
    }
}

/// The outcome of trying to take a lock.
#[derive(Debug)]
pub enum Locked {
    /// Held.
    Held(LockGuard),
    /// Another live run holds a conflicting lock (its info).
    Busy(LockInfo),
}

fn write_lock(remote: &Remote, key: &Key, info: &LockInfo) -> Result<(), CoreError> {
    let body = serde_json::to_vec_pretty(info).map_err(|e| CoreError::Remote {
        action: "write the lock",
        location: remote.url_of(key),
        message: e.to_string(),
    })?;
    remote
        .block(remote.store.put(key, PutPayload::from(body)))
        .map(|_| ())
        .map_err(|e| remote.error("write the lock", key, e))
}

/// The live locks other than `own`, read from the store.
pub fn live_locks(remote: &Remote, own: Option<&Key>) -> Result<Vec<LockInfo>, CoreError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for meta in remote.list_all(LOCKS_DIR)? {
        if Some(&meta.location) == own {
            continue;
        }
        let bytes =
            match remote.block(async { remote.store.get(&meta.location).await?.bytes().await }) {
                Ok(b) => b,
                // Deleted between list and read: released.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(remote.error("read the lock", &meta.location, e)),
            };
        match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(info) if !info.is_stale(now) => out.push(info),
            Ok(info) => {
                debug!(lock = %meta.location, host = %info.host, pid = info.pid, "ignoring a stale lock")
            }
            Err(e) => {
                warn!(lock = %meta.location, error = %e, "ignoring an unreadable lock object")
            }
        }
    }
    Ok(out)
}

/// Takes a shared (backup) or exclusive (garbage collection) lock. A
/// shared lock waits up to two minutes for a live exclusive one to go; an
/// exclusive one gives up at once when another run is live.
pub fn take(remote: &Arc<Remote>, exclusive: bool, profile: &str) -> Result<Locked, CoreError> {
    let host = backup_core::fsutil::host_name();
    let pid = std::process::id();
    let started = Utc::now();
    let key = remote.key(&format!(
        "{LOCKS_DIR}/{}-{pid}-{}.json",
        host.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        started.timestamp_nanos_opt().unwrap_or_default()
    ));
    let info = LockInfo {
        host,
        pid,
        started: started.to_rfc3339(),
        refreshed: started.to_rfc3339(),
        exclusive,
        profile: profile.to_owned(),
    };
    write_lock(remote, &key, &info)?;
    let release = |remote: &Remote| {
        let _ = remote.block(remote.store.delete(&key));
    };
    let deadline = std::time::Instant::now() + WAIT_FOR_EXCLUSIVE;
    loop {
        let others = match live_locks(remote, Some(&key)) {
            Ok(o) => o,
            Err(e) => {
                release(remote);
                return Err(e);
            }
        };
        let conflict = others.into_iter().find(|o| exclusive || o.exclusive);
        match conflict {
            None => break,
            Some(other) if exclusive || std::time::Instant::now() >= deadline => {
                release(remote);
                return Ok(Locked::Busy(other));
            }
            Some(other) => {
                debug!(host = %other.host, pid = other.pid, "waiting for another run's garbage collection");
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let lock_url = remote.url_of(&key);
    let refresher = {
        let remote = Arc::clone(remote);
        let key = key.clone();
        let mut info = info.clone();
        std::thread::Builder::new()
            .name("backup-s3-lock".into())
            .spawn(move || loop {
                match stopped.recv_timeout(REFRESH_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {
                        info.refreshed = Utc::now().to_rfc3339();
                        if let Err(e) = write_lock(&remote, &key, &info) {
                            warn!(error = %e, "cannot refresh the lock object");
                        }
                    }
                    _ => return,
                }
            })
            .map_err(|e| CoreError::Remote {
                action: "start the lock refresher for",
                location: lock_url,
                message: e.to_string(),
            })?
    };
    Ok(Locked::Held(LockGuard {
        remote: Arc::clone(remote),
        key,
        stop: Some(stop),
        refresher: Some(refresher),
    }))
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if let Err(e) = self.remote.block(self.remote.store.delete(&self.key)) {
            warn!(lock = %self.key, error = %e, "cannot delete the lock object; it goes stale on its own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(host: &str, pid: u32, refreshed_secs_ago: i64) -> LockInfo {
        let t = (Utc::now() - chrono::Duration::seconds(refreshed_secs_ago)).to_rfc3339();
        LockInfo {
            host: host.into(),
            pid,
            started: t.clone(),
            refreshed: t,
            exclusive: false,
            profile: "P".into(),
        }
    }

    #[test]
    fn a_lock_goes_stale_without_refresh() {
        let now = Utc::now();
        assert!(!info("elsewhere", 1, 60).is_stale(now));
        assert!(info("elsewhere", 1, STALE_AFTER.as_secs() as i64 + 5).is_stale(now));
        let mut garbled = info("elsewhere", 1, 0);
        garbled.refreshed = "yesterday".into();
        assert!(garbled.is_stale(now));
    }

    #[test]
    fn a_fresh_lock_of_a_dead_process_on_this_host_is_stale() {
        let host = backup_core::fsutil::host_name();
        let now = Utc::now();
        assert!(!info(&host, std::process::id(), 0).is_stale(now));
        if std::path::Path::new("/proc/self").exists() {
            // PIDs this large are not handed out on Linux.
            assert!(info(&host, 4_000_000_000, 0).is_stale(now));
        }
    }
}
