//! [`DirHandle`]: `lstat` and `readlink` of a folder's children relative to
//! an open folder descriptor (`fstatat`, `readlinkat`), so the kernel does
//! not walk the whole path again for every entry.
//!
//! This module is the crate's only `unsafe` code: the two system calls.
#![allow(unsafe_code)]

use std::ffi::OsStr;
#[cfg(unix)]
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use backup_core::{EntryKind, FileStat};

/// What `lstat` says a child is.
pub enum ChildKind {
    /// File, folder or symlink, with its facts.
    Regular(EntryKind, FileStat),
    /// FIFO, socket or device: never backed up, never opened.
    Special(&'static str),
}

/// An open folder.
pub struct DirHandle {
    #[cfg(unix)]
    file: File,
    #[cfg(not(unix))]
    path: PathBuf,
}

impl DirHandle {
    /// Opens `dir` for relative lookups.
    pub fn open(dir: &Path) -> io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Never through a symlink put in the folder's place.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(dir)?;
            Ok(DirHandle { file })
        }
        #[cfg(not(unix))]
        {
            Ok(DirHandle {
                path: dir.to_path_buf(),
            })
        }
    }

    /// The open folder's inode (`None` where the platform has none), to
    /// tell that it is the folder its parent listed.
    pub fn ino(&self) -> Option<u64> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            self.file.metadata().ok().map(|m| m.ino())
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// `lstat` of the child `name` (a single name or a relative path).
    #[cfg(unix)]
    pub fn lstat(&self, name: &OsStr) -> io::Result<ChildKind> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(name.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `stat` is plain old data, for which all-zero is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open for the lifetime of `self`, `c` is
        // NUL-terminated and `st` is a valid out pointer.
        let rc = unsafe {
            libc::fstatat(
                self.file.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let fmt = st.st_mode & libc::S_IFMT;
        let kind = match fmt {
            libc::S_IFREG => EntryKind::File,
            libc::S_IFDIR => EntryKind::Dir,
            libc::S_IFLNK => EntryKind::Symlink,
            libc::S_IFIFO => return Ok(ChildKind::Special("named pipe (FIFO) not backed up")),
            libc::S_IFSOCK => return Ok(ChildKind::Special("socket not backed up")),
            _ => return Ok(ChildKind::Special("device file not backed up")),
        };
        #[allow(clippy::unnecessary_cast)]
        let stat = FileStat {
            size: if kind == EntryKind::Dir {
                0
            } else {
                st.st_size as u64
            },
            mtime_ns: (st.st_mtime as i64).saturating_mul(1_000_000_000) + st.st_mtime_nsec as i64,
            ctime_ns: (st.st_ctime as i64).saturating_mul(1_000_000_000) + st.st_ctime_nsec as i64,
            ino: st.st_ino as u64,
            mode: (st.st_mode & 0o7777) as u32,
        };
        Ok(ChildKind::Regular(kind, stat))
    }

    /// `lstat` of the child `name` (portable fallback).
    #[cfg(not(unix))]
    pub fn lstat(&self, name: &OsStr) -> io::Result<ChildKind> {
        let m = std::fs::symlink_metadata(self.path.join(name))?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            return Ok(ChildKind::Special("special file not backed up"));
        };
        Ok(ChildKind::Regular(kind, FileStat::from_metadata(&m)))
    }

    /// Target of the symlink `name`.
    #[cfg(unix)]
    pub fn readlink(&self, name: &OsStr) -> io::Result<PathBuf> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let c = std::ffi::CString::new(name.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: the descriptor is open, `c` is NUL-terminated and `buf`
            // is writable for `buf.len()` bytes.
            let n = unsafe {
                libc::readlinkat(
                    self.file.as_raw_fd(),
                    c.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)));
            }
            let bigger = buf.len() * 4;
            buf.resize(bigger, 0);
        }
    }

    /// Target of the symlink `name` (portable fallback).
    #[cfg(not(unix))]
    pub fn readlink(&self, name: &OsStr) -> io::Result<PathBuf> {
        std::fs::read_link(self.path.join(name))
    }
}
