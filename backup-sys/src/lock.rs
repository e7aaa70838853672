//! An advisory lock on an open file that never keeps others from reading
//! it: the run lock's holder writes who it is into the same file, and a run
//! that finds the lock taken reads that text to name the holder.
//!
//! On Unix this is `flock` (std's [`File::try_lock`]), which never blocks
//! reads. On Windows std's lock covers the whole file, and Windows locks
//! are mandatory: another process could not read the text. So there the
//! lock covers one byte far past any content (at 2^62),
//! taken with `LockFileEx`; reads and writes of the text never touch it.
//! Either way the lock goes with the handle: a killed holder's lock is
//! released by the OS.

use std::fs::File;
use std::io;

/// Where the Windows lock's byte lies: 2^62, beyond any lock file's text
/// (which is a few hundred bytes) and within what NTFS allows as an offset.
#[cfg(windows)]
pub const WINDOWS_LOCK_OFFSET: u64 = 1 << 62;

/// Takes the lock without waiting: exclusive (a run) or shared (a look at
/// whether a run holds it). `Ok(false)` when another handle holds a
/// conflicting lock.
pub fn try_lock(file: &File, exclusive: bool) -> io::Result<bool> {
    #[cfg(windows)]
    {
        windows::lock(file, exclusive)
    }
    #[cfg(not(windows))]
    {
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Whether another handle holds an exclusive lock on `file` (a live run):
/// a shared lock taken and given back at once. False when the file system
/// has no locks.
pub fn is_held_elsewhere(file: &File) -> bool {
    match try_lock(file, false) {
        Ok(true) => {
            let _ = unlock(file);
            false
        }
        Ok(false) => true,
        Err(_) => false,
    }
}

/// Releases a lock [`try_lock`] took through this handle (closing the
/// handle does too).
pub fn unlock(file: &File) -> io::Result<()> {
    #[cfg(windows)]
    {
        windows::unlock(file)
    }
    #[cfg(not(windows))]
    {
        file.unlock()
    }
}

#[cfg(windows)]
mod windows {
    use std::fs::File;
    use std::io;
    use std::os::windows::io::AsRawHandle;

    use windows_sys::Win32::Foundation::ERROR_LOCK_VIOLATION;
    use windows_sys::Win32::Storage::FileSystem::{
        LockFileEx, UnlockFileEx, LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
    };
    use windows_sys::Win32::System::IO::OVERLAPPED;

    use super::WINDOWS_LOCK_OFFSET;

    /// An OVERLAPPED naming the lock's byte (the only use of its offset).
    fn at_lock_byte() -> OVERLAPPED {
        let mut o = OVERLAPPED::default();
        o.Anonymous.Anonymous.Offset = WINDOWS_LOCK_OFFSET as u32;
        o.Anonymous.Anonymous.OffsetHigh = (WINDOWS_LOCK_OFFSET >> 32) as u32;
        o
    }

    pub(super) fn lock(file: &File, exclusive: bool) -> io::Result<bool> {
        let mut flags = LOCKFILE_FAIL_IMMEDIATELY;
        if exclusive {
            flags |= LOCKFILE_EXCLUSIVE_LOCK;
        }
        let mut o = at_lock_byte();
        // SAFETY: the handle is open for the call's duration; `o` outlives
        // the call, which does not keep it (a synchronous handle).
        #[allow(unsafe_code)]
        let ok = unsafe { LockFileEx(file.as_raw_handle(), flags, 0, 1, 0, &mut o) };
        if ok != 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
            Ok(false)
        } else {
            Err(e)
        }
    }

    pub(super) fn unlock(file: &File) -> io::Result<()> {
        let mut o = at_lock_byte();
        // SAFETY: as in `lock`.
        #[allow(unsafe_code)]
        let ok = unsafe { UnlockFileEx(file.as_raw_handle(), 0, 1, 0, &mut o) };
        if ok != 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::{Read, Seek, SeekFrom, Write};

    use super::{try_lock, unlock};

    #[test]
    fn a_held_lock_excludes_others_and_leaves_its_text_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let mut holder = open();
        assert!(try_lock(&holder, true).unwrap());
        holder.write_all(b"pid=42\n").unwrap();
        holder.flush().unwrap();

        // Another handle (as another process would) cannot take it, in
        // either mode, but reads the holder's text.
        let mut other = open();
        assert!(!try_lock(&other, true).unwrap());
        assert!(!try_lock(&other, false).unwrap());
        let mut text = String::new();
        other.read_to_string(&mut text).unwrap();
        assert_eq!(text, "pid=42\n");
        // And the holder rewrites its text under its own lock.
        holder.seek(SeekFrom::Start(0)).unwrap();
        holder.write_all(b"pid=43\n").unwrap();

        unlock(&holder).unwrap();
        assert!(try_lock(&other, false).unwrap(), "released");
        unlock(&other).unwrap();
        drop(holder);
        assert!(try_lock(&other, true).unwrap());
    }
}
