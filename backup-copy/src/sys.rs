//! [`link_into`]: hard links made relative to open folder descriptors
//! (`linkat`), with the two folders of the last link cached per thread. A
//! copy worker links a whole folder's files in a row, so the kernel walks
//! each folder's path once per folder instead of twice per file.
//!
//! This module is the crate's only `unsafe` code: the `linkat` call.
#![allow(unsafe_code)]

use std::io;
use std::path::Path;

/// Hard-links `from` at `to` (like `std::fs::hard_link`).
#[cfg(target_os = "linux")]
pub fn link_into(from: &Path, to: &Path) -> io::Result<()> {
    use std::cell::RefCell;
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;

    thread_local! {
        static DIRS: RefCell<Option<(PathBuf, PathBuf, File, File)>> = const { RefCell::new(None) };
    }
    let (Some(from_dir), Some(from_name), Some(to_dir), Some(to_name)) =
        (from.parent(), from.file_name(), to.parent(), to.file_name())
    else {
        return std::fs::hard_link(from, to);
    };
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(p)
    };
    let c = |n: &std::ffi::OsStr| {
        std::ffi::CString::new(n.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let (from_c, to_c) = (c(from_name)?, c(to_name)?);
    DIRS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let hit = cache
            .as_ref()
            .is_some_and(|(f, t, _, _)| f == from_dir && t == to_dir);
        if !hit {
            let src = open(from_dir)?;
            let dst = open(to_dir)?;
            *cache = Some((from_dir.to_path_buf(), to_dir.to_path_buf(), src, dst));
        }
        let Some((_, _, src, dst)) = cache.as_ref() else {
            return std::fs::hard_link(from, to);
        };
        // SAFETY: both descriptors are open folders owned by the cache, and
        // both names are NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::linkat(
                src.as_raw_fd(),
                from_c.as_ptr(),
                dst.as_raw_fd(),
                to_c.as_ptr(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    })
}

/// Hard-links `from` at `to` (like `std::fs::hard_link`).
#[cfg(not(target_os = "linux"))]
pub fn link_into(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::hard_link(from, to)
}
