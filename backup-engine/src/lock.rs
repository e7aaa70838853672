//! [`RunLock`]: one backup run at a time per source.
//!
//! The lock file holds an OS lock ([`backup_sys::lock`]: `flock` on Unix,
//! `LockFileEx` on one byte past the text on Windows) for the whole run, and
//! the holder's PID, host and start time as text, readable by a run that
//! finds the lock taken. A lock file left by a killed
//! process carries no OS lock, so the next run takes it over. The file is
//! removed when the guard is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use backup_core::error::CoreError;
use backup_sys::{lock, open_regular, open_regular_with, same_file};

/// Who holds a lock, as written in the lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// Process id of the holder.
    pub pid: Option<u32>,
    /// Host name of the holder.
    pub host: Option<String>,
    /// When the holder started (RFC 3339).
    pub started: Option<String>,
}

/// Whether `text` is what this tool writes into a lock file (or nothing):
/// only such a file is ever truncated, rewritten or removed.
pub fn is_lock_text(text: &str) -> bool {
    text.lines().all(|l| {
        l.is_empty() || l.starts_with("pid=") || l.starts_with("host=") || l.starts_with("started=")
    })
}

/// The most a lock file of this tool holds; a larger file is not one.
const LOCK_TEXT_LIMIT: u64 = 4096;

/// Reads a lock file's text (at most [`LOCK_TEXT_LIMIT`] bytes) and says
/// whether it is this tool's.
fn read_own_lock(file: &mut File) -> std::io::Result<Option<String>> {
    let mut text = String::new();
    let read = file.take(LOCK_TEXT_LIMIT + 1).read_to_string(&mut text);
    match read {
        Ok(n) if (n as u64) <= LOCK_TEXT_LIMIT && is_lock_text(&text) => Ok(Some(text)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

impl LockHolder {
    fn parse(text: &str) -> Self {
        let mut h = LockHolder::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", v)) => h.pid = v.trim().parse().ok(),
                Some(("host", v)) => h.host = Some(v.trim().to_owned()),
                Some(("started", v)) => h.started = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        h
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {}",
            self.pid.map_or_else(|| "?".into(), |p| p.to_string()),
            self.host.as_deref().unwrap_or("?"),
            self.started.as_deref().unwrap_or("?")
        )
    }
}

/// The result of trying to take the lock.
#[derive(Debug)]
pub enum LockAttempt {
    /// This run holds the lock until the guard is dropped.
    Acquired(RunLock),
    /// Another run holds it.
    Held(LockHolder),
}

/// A held run lock; dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Tries to take the lock at `path` without waiting.
    pub fn try_acquire(path: &Path) -> Result<LockAttempt, CoreError> {
        // A bounded number of retries of the unlink race: another run may
        // remove the file between our open and our lock.
        for _ in 0..100 {
            // Never through a symlink, never a FIFO (which would block
            // the read of its holder).
            let (mut file, _) = open_regular_with(
                path,
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false),
            )
            .map_err(|e| CoreError::io("open lock file", path, e))?;
            match lock::try_lock(&file, true) {
                Ok(true) => {}
                Ok(false) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Ok(LockAttempt::Held(LockHolder::parse(&text)));
                }
                Err(e) => return Err(CoreError::io("lock", path, e)),
            }
            if !same_file(&file, path) {
                // The file we locked was unlinked (its holder finished);
                // lock whatever the path names now.
                continue;
            }
            // Never truncate (or later remove) a file this tool did not write.
            let own =
                read_own_lock(&mut file).map_err(|e| CoreError::io("read lock file", path, e))?;
            if own.is_none() {
                let _ = lock::unlock(&file);
                return Err(CoreError::io(
                    "use as the lock file",
                    path,
                    std::io::Error::other(
                        "it is not a backup-cli lock file (it holds other content); set lock_file to a new file name",
                    ),
                ));
            }
            let text = format!(
                "pid={}\nhost={}\nstarted={}\n",
                std::process::id(),
                backup_sys::host_name(),
                chrono::Local::now().to_rfc3339()
            );
            let write = (|| {
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(text.as_bytes())?;
                file.sync_data()
            })();
            write.map_err(|e| CoreError::io("write lock file", path, e))?;
            return Ok(LockAttempt::Acquired(RunLock {
                file,
                path: path.to_path_buf(),
            }));
        }
        Err(CoreError::io(
            "lock",
            path,
            std::io::Error::other("the lock file kept being replaced; try again"),
        ))
    }

    /// Tells who holds the lock at `path` without taking it or creating the
    /// file: `None` when no run holds it (no file, or a stale one).
    pub fn holder(path: &Path) -> Result<Option<LockHolder>, CoreError> {
        let mut file = match open_regular(path) {
            Ok((f, _)) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CoreError::io("open lock file", path, e)),
        };
        match lock::try_lock(&file, false) {
            Ok(true) => {
                let _ = lock::unlock(&file);
                Ok(None)
            }
            Ok(false) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Ok(Some(LockHolder::parse(&text)))
            }
            Err(e) => Err(CoreError::io("lock", path, e)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then release it: a waiter that
        // opened the old file sees it is gone and retries on the new path.
        // Only our own file: if ours was deleted during the run, the path may
        // now name another run's lock.
        if same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
        let _ = lock::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_that_is_not_a_lock_is_never_truncated_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("main.py");
        std::fs::write(&p, "print('mine')\n").unwrap();
        let err = backup_core::error_chain(&RunLock::try_acquire(&p).unwrap_err());
        assert!(err.contains("not a backup-cli lock file"), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "print('mine')\n");
        // An empty file, or one with a lock's text, is taken over.
        std::fs::write(&p, "pid=1\nhost=h\nstarted=x\n").unwrap();
        assert!(matches!(
            RunLock::try_acquire(&p).unwrap(),
            LockAttempt::Acquired(_)
        ));
        assert!(!p.exists(), "the lock file is removed with its guard");
    }

    use super::*;

    #[test]
    fn second_acquire_sees_holder_and_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("backup_in_progress.lock");
        let LockAttempt::Acquired(lock) = RunLock::try_acquire(&p).unwrap() else {
            panic!("first lock must succeed")
        };
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains(&format!("pid={}", std::process::id())));
        // Same process, another open file description: still refused.
        let handle = std::thread::spawn({
            let p = p.clone();
            move || RunLock::try_acquire(&p).unwrap()
        });
        match handle.join().unwrap() {
            LockAttempt::Held(h) => assert_eq!(h.pid, Some(std::process::id())),
            LockAttempt::Acquired(_) => panic!("second lock must be refused"),
        }
        assert_eq!(
            RunLock::holder(&p).unwrap().and_then(|h| h.pid),
            Some(std::process::id())
        );
        drop(lock);
        assert!(!p.exists());
        assert!(RunLock::holder(&p).unwrap().is_none());
        assert!(matches!(
            RunLock::try_acquire(&p).unwrap(),
            LockAttempt::Acquired(_)
        ));
    }

    #[test]
    fn stale_file_without_os_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        fs::write(&p, "pid=999999\nhost=gone\nstarted=yesterday\n").unwrap();
        let LockAttempt::Acquired(_l) = RunLock::try_acquire(&p).unwrap() else {
            panic!("stale lock must be taken over")
        };
        let text = fs::read_to_string(&p).unwrap();
        assert!(!text.contains("999999"), "{text}");
    }
}
