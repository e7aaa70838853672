//! Lock objects: `locks/<host>-<pid>-<nanos>.json`, holding host, PID,
//! start and refresh times, and whether the lock is exclusive.
//!
//! A backup that uploads holds a shared lock; garbage collection holds an
//! exclusive one. Each writes its own object first and then lists the
//! others, so of two runs starting together at least one sees the other:
//! a backup waits while an exclusive lock is live, garbage collection is
//! put off while any other lock is live. A live run rewrites its lock every
//! [`REFRESH_EVERY`]; a lock the server has not seen rewritten for
//! [`STALE_AFTER`] is stale and ignored. Ages are measured on the server's
//! clock (the objects' last-modified times, against the lock this run just
//! wrote), so a host with a wrong clock cannot make live locks look stale.
//! A run that could not refresh its lock for a while (a laptop that slept)
//! may have been taken for dead: [`LockGuard::unrefreshed_for`] tells the
//! writer to check its contents are still there before it commits.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use backup_core::{error_chain, CoreError};
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

/// Whether a lock last written at `written` is stale at `now` (both
/// server times).
pub fn is_stale(written: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(written)
        .to_std()
        .is_ok_and(|age| age > STALE_AFTER)
}

/// A lock object held by this run; refreshed by a thread, deleted on drop.
pub struct LockGuard {
    remote: Arc<Remote>,
    key: Key,
    /// When the lock was last written successfully (wall clock, which,
    /// unlike a monotonic clock, also runs while the machine sleeps).
    last_written: Arc<std::sync::Mutex<std::time::SystemTime>>,
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
        message: String::new(),
        source: Some(Box::new(e)),
    })?;
    remote
        .block(remote.store.put(key, PutPayload::from(body)))
        .map(|_| ())
        .map_err(|e| remote.error("write the lock", key, e))
}

/// The live locks other than `own`, read from the store. `own` must just
/// have been written: its last-modified time is the server's "now".
pub fn live_locks(remote: &Remote, own: Option<&Key>) -> Result<Vec<LockInfo>, CoreError> {
    let all = remote.list_all(LOCKS_DIR)?;
    let now = all
        .iter()
        .find(|m| Some(&m.location) == own)
        .map(|m| m.last_modified)
        .or_else(|| all.iter().map(|m| m.last_modified).max())
        .unwrap_or_else(Utc::now);
    let mut out = Vec::new();
    for meta in all {
        if Some(&meta.location) == own {
            continue;
        }
        if is_stale(meta.last_modified, now) {
            debug!(lock = %meta.location, written = %meta.last_modified, "ignoring a stale lock");
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
            Ok(info) => out.push(info),
            // Not ours to judge: count it as a live run of unknown kind.
            Err(e) => {
                warn!(lock = %meta.location, error = %error_chain(&e), "an unreadable lock object counts as a live exclusive lock");
                out.push(LockInfo {
                    host: format!("unknown (unreadable {})", meta.location),
                    pid: 0,
                    started: meta.last_modified.to_rfc3339(),
                    refreshed: meta.last_modified.to_rfc3339(),
                    exclusive: true,
                    profile: String::new(),
                });
            }
        }
    }
    Ok(out)
}

/// Takes a shared (backup) or exclusive (garbage collection) lock. A
/// shared lock waits up to two minutes for a live exclusive one to go; an
/// exclusive one gives up at once when another run is live.
pub fn take(remote: &Arc<Remote>, exclusive: bool, profile: &str) -> Result<Locked, CoreError> {
    let host = backup_sys::host_name();
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
    let last_written = Arc::new(std::sync::Mutex::new(std::time::SystemTime::now()));
    let (stop, stopped) = mpsc::channel::<()>();
    let lock_url = remote.url_of(&key);
    let refresher = {
        let remote = Arc::clone(remote);
        let key = key.clone();
        let mut info = info.clone();
        let last_written = Arc::clone(&last_written);
        std::thread::Builder::new()
            .name("backup-s3-lock".into())
            .spawn(move || loop {
                match stopped.recv_timeout(REFRESH_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {
                        info.refreshed = Utc::now().to_rfc3339();
                        match write_lock(&remote, &key, &info) {
                            Ok(()) => {
                                *last_written.lock().unwrap_or_else(|p| p.into_inner()) =
                                    std::time::SystemTime::now();
                            }
                            Err(e) => {
                                warn!(error = %error_chain(&e), "cannot refresh the lock object")
                            }
                        }
                    }
                    _ => return,
                }
            })
            .map_err(|e| CoreError::Remote {
                action: "start the lock refresher for",
                location: lock_url,
                message: String::new(),
                source: Some(Box::new(e)),
            })?
    };
    Ok(Locked::Held(LockGuard {
        remote: Arc::clone(remote),
        key,
        last_written,
        stop: Some(stop),
        refresher: Some(refresher),
    }))
}

impl LockGuard {
    /// How long ago the lock was last written successfully. Past
    /// [`STALE_AFTER`]` / 2` other runs may soon take this run for dead.
    pub fn unrefreshed_for(&self) -> Duration {
        let at = *self.last_written.lock().unwrap_or_else(|p| p.into_inner());
        std::time::SystemTime::now()
            .duration_since(at)
            .unwrap_or_default()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if let Err(e) = self.remote.block(self.remote.store.delete(&self.key)) {
            warn!(lock = %self.key, error = %error_chain(&e), "cannot delete the lock object; it goes stale on its own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_goes_stale_without_refresh_on_the_server_clock() {
        let now = Utc::now();
        let ago = |secs: i64| now - chrono::Duration::seconds(secs);
        assert!(!is_stale(ago(60), now));
        assert!(!is_stale(ago(STALE_AFTER.as_secs() as i64 - 5), now));
        assert!(is_stale(ago(STALE_AFTER.as_secs() as i64 + 5), now));
        // Written "in the future" (clock differences): live.
        assert!(!is_stale(ago(-3600), now));
    }
}
