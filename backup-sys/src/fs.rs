//! Operating-system facts every part needs: how to open a file that must
//! be a regular file without being led astray ([`open_regular`]), why a
//! hard link was refused ([`link_refusal`]), the free space of a file
//! system ([`free_space`]) and this machine's name ([`host_name`], for lock
//! records and logs).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Opens `path` for reading only if it is a regular file: a final symlink
/// is never followed (`O_NOFOLLOW`), a FIFO or device that took the file's
/// place never blocks the open (`O_NONBLOCK`), and what was opened is
/// checked with `fstat`. Returns the file and its metadata, whose size
/// bounds what a reader should read.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    open_regular_with(path, OpenOptions::new().read(true))
}

/// [`open_regular`] with the caller's options (say, read and write for a
/// lock file): the same refusals of symlinks, FIFOs and devices.
pub fn open_regular_with(path: &Path, opts: &mut OpenOptions) -> io::Result<(File, Metadata)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    let f = opts.open(path).map_err(|e| {
        // O_NOFOLLOW on a symlink: ELOOP.
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return not_regular();
        }
        e
    })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((f, meta))
}

/// What [`open_regular`] refused: a symlink, a folder, a FIFO, a device or
/// a socket where a regular file was expected.
#[derive(Debug)]
struct NotRegular;

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("is not a regular file (a symlink, folder, FIFO or device is never opened)")
    }
}

impl std::error::Error for NotRegular {}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotRegular)
}

/// Whether `e` is [`open_regular`]'s refusal of something that is not a
/// regular file (rather than, say, a permission error).
pub fn is_not_regular(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}

/// Reads a whole regular file (see [`open_regular`]) of at most `max`
/// bytes; a larger one is an error saying so, before anything is read.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let (file, meta) = open_regular(path)?;
    if meta.len() > max {
        return Err(io::Error::other(format!(
            "is {} bytes, more than the {max} such a file can hold",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut io::Read::take(file, max), &mut bytes)?;
    Ok(bytes)
}

/// Opens the regular file `rel` (relative, with no `..`: anything else is
/// refused) below the folder `root` without following
/// a symlink anywhere in `rel` (a snapshot that holds `lnk -> /etc` never
/// makes `lnk/shadow` readable through it): the same refusals as
/// [`open_regular`] for the last component, and a symlink in any folder
/// component is refused too ([`is_not_regular`] is true of the error).
///
/// On Linux one `openat2` call (`RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`)
/// relative to the root's descriptor, cached per thread; elsewhere (or on
/// kernels before 5.6) each folder component is checked with `lstat`
/// first.
pub fn open_beneath(root: &Path, rel: &Path) -> io::Result<(File, Metadata)> {
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a plain relative path", rel.display()),
        ));
    }
    #[cfg(target_os = "linux")]
    {
        match linux::open_beneath(root, rel) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            other => return checked_regular(other),
        }
    }
    let mut dir = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        dir.push(part);
        if !fs::symlink_metadata(&dir)?.is_dir() {
            return Err(not_regular());
        }
    }
    open_regular(&root.join(rel))
}

/// What an open that refused symlinks (`ELOOP`) got: a regular file and
/// its metadata, or [`is_not_regular`]'s error.
pub(crate) fn checked_regular(opened: io::Result<File>) -> io::Result<(File, Metadata)> {
    let f = match opened {
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_regular()),
        other => other?,
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((f, meta))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::RefCell;
    use std::fs::File;
    use std::io;
    use std::path::{Path, PathBuf};

    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};

    thread_local! {
        /// The last root opened on this thread, with its device and inode:
        /// a restore or verify opens thousands of files below one snapshot
        /// folder. (A `stat` per file tells that the path still names the
        /// folder that was opened; a long-lived process restores again.)
        static ROOT: RefCell<Option<OpenRoot>> = const { RefCell::new(None) };
    }

    /// A root folder's path, its (device, inode) and its descriptor.
    type OpenRoot = (PathBuf, (u64, u64), File);

    pub(super) fn open_beneath(root: &Path, rel: &Path) -> io::Result<File> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(root)?;
        let id = (meta.dev(), meta.ino());
        ROOT.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.as_ref().is_none_or(|(p, i, _)| p != root || *i != id) {
                let fd = openat2(
                    CWD,
                    root,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::empty(),
                )?;
                *cache = Some((root.to_path_buf(), id, File::from(fd)));
            }
            let Some((_, _, dir)) = cache.as_ref() else {
                return Err(io::Error::other("no root folder"));
            };
            let fd = openat2(
                dir,
                rel,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
            )?;
            Ok(File::from(fd))
        })
    }
}

/// Whether the open `file` is the file `path` names now (not one that took
/// its name since): the same device and inode on Unix, the same volume and
/// file index on Windows. False when `path` names nothing.
pub fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Storage::FileSystem::{
            FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
        };
        // No access asked: opens even a file another program holds locked.
        let other = OpenOptions::new()
            .access_mode(0)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path);
        match (
            windows::file_id(file),
            other.and_then(|f| windows::file_id(&f)),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = file;
        path.exists()
    }
}

#[cfg(windows)]
mod windows {
    //! The file identity std gives only on nightly Rust.

    use std::fs::File;
    use std::io;
    use std::os::windows::io::AsRawHandle;

    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
    };

    /// (volume serial number, file index) of an open file.
    pub(super) fn file_id(f: &File) -> io::Result<(u32, u64)> {
        // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is a valid value to
        // be overwritten.
        #[allow(unsafe_code)]
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: the handle is open for the call's duration; `info` is valid
        // for writes.
        #[allow(unsafe_code)]
        let ok = unsafe { GetFileInformationByHandle(f.as_raw_handle(), &mut info) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((
            info.dwVolumeSerialNumber,
            (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        ))
    }
}

/// Why a file system refused a hard link, where the reason is a fact of the
/// file system rather than of one file: every later link would fail the same
/// way, so a writer copies instead and says so once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRefusal {
    /// The file system has no hard links at all (FAT, exFAT, some network
    /// shares): `EPERM`/`EOPNOTSUPP`/`ENOSYS` on Linux, `ERROR_INVALID_FUNCTION`
    /// or `ERROR_NOT_SUPPORTED` on Windows.
    Unsupported,
    /// The file already has as many links as the file system allows (1,023
    /// on NTFS, 65,000 on ext4): `EMLINK`, `ERROR_TOO_MANY_LINKS`.
    TooManyLinks,
}

/// What `e`, returned by a hard-link call between two files this program
/// wrote, says about the file system (see [`LinkRefusal`]); `None` for any
/// other failure (a missing file, a full disk).
pub fn link_refusal(e: &io::Error) -> Option<LinkRefusal> {
    let code = e.raw_os_error()?;
    #[cfg(unix)]
    {
        match code {
            libc::EMLINK => Some(LinkRefusal::TooManyLinks),
            libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS => Some(LinkRefusal::Unsupported),
            _ => None,
        }
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{
            ERROR_INVALID_FUNCTION, ERROR_NOT_SUPPORTED, ERROR_TOO_MANY_LINKS,
        };
        match code as u32 {
            ERROR_TOO_MANY_LINKS => Some(LinkRefusal::TooManyLinks),
            ERROR_INVALID_FUNCTION | ERROR_NOT_SUPPORTED => Some(LinkRefusal::Unsupported),
            _ => None,
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = code;
        None
    }
}

/// Free bytes available to this user on the file system holding `path`
/// (`statvfs`; `GetDiskFreeSpaceExW` on Windows).
#[allow(unsafe_code)]
pub fn free_space(path: &Path) -> io::Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs is plain data; zeroed is a valid initial value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated string, `st` a valid out pointer.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast)]
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
    #[cfg(windows)]
    {
        let wide = crate::durable::wide(path);
        let mut available = 0u64;
        // SAFETY: `wide` is NUL-terminated; the out pointers are valid or null.
        let ok = unsafe {
            windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW(
                wide.as_ptr(),
                &mut available,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(available)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = path;
        Err(io::Error::other(
            "free space is not available on this platform",
        ))
    }
}

/// Why Windows cannot hold a file or folder named `name` (one path
/// component), if it cannot: a name it reserves for a device (`CON`, `PRN`,
/// `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`, with any extension:
/// `aux.txt` too), a name ending in a dot or a space (Windows drops them, so
/// the file would be written under another name), or a character it does
/// not allow in names (`<>:"/\|?*` and control characters), all of which
/// a Linux source may hold. Pure, so that it is tested on every platform;
/// the Windows writer and restore make it a per-file failure with this
/// reason and their advice, the profile an exit 2 naming the key; never a
/// crash, never a write to a device.
pub fn windows_name_problem(name: &str) -> Option<String> {
    if name.ends_with('.') || name.ends_with(' ') {
        return Some(format!(
            "{name:?} ends in a dot or a space, which Windows drops from names"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*') || (*c as u32) < 32
    }) {
        return Some(format!(
            "{name:?} holds {c:?}, which Windows does not allow in a name"
        ));
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    let device = matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (upper.len() == 4
            && (upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.as_bytes()[3].is_ascii_digit());
    device.then(|| {
        format!("{name:?} is a name Windows reserves for a device ({upper}), with any extension")
    })
}

/// This machine's host name (for lock files and logs).
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_positive() {
        assert!(free_space(Path::new(".")).unwrap() > 0);
    }

    /// Issue 13: the link limit (1,023 on NTFS) and file systems without
    /// links (exFAT) are told apart from other failures by their codes;
    /// neither Wine nor this machine's file systems can produce them.
    #[test]
    fn link_refusals_are_told_by_their_codes() {
        let code = |c: i32| link_refusal(&io::Error::from_raw_os_error(c));
        #[cfg(unix)]
        {
            assert_eq!(code(libc::EMLINK), Some(LinkRefusal::TooManyLinks));
            assert_eq!(code(libc::EPERM), Some(LinkRefusal::Unsupported));
            assert_eq!(code(libc::ENOSPC), None);
            assert_eq!(code(libc::ENOENT), None);
        }
        #[cfg(windows)]
        {
            assert_eq!(code(1142), Some(LinkRefusal::TooManyLinks));
            assert_eq!(code(1), Some(LinkRefusal::Unsupported));
            assert_eq!(code(50), Some(LinkRefusal::Unsupported));
            assert_eq!(code(112), None); // ERROR_DISK_FULL
            assert_eq!(code(2), None); // ERROR_FILE_NOT_FOUND
        }
        assert_eq!(link_refusal(&io::Error::other("no code")), None);
    }

    /// Issue 13: names a Linux source may hold but Windows cannot.
    #[test]
    fn names_windows_cannot_hold_are_named_with_the_reason() {
        for ok in [
            "main.py",
            "CONFIG.ini",
            "console",
            "com10",
            "lpt",
            "a.b.c",
            ".gitignore",
            "nul_",
        ] {
            assert_eq!(windows_name_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("CON", "reserves"),
            ("con", "reserves"),
            ("aux.txt", "reserves"),
            ("NUL.tar.gz", "reserves"),
            ("COM1", "reserves"),
            ("lpt9.log", "reserves"),
            ("notes.", "dot or a space"),
            ("draft ", "dot or a space"),
            ("a:b", "does not allow"),
            ("what?", "does not allow"),
            ("back\\slash", "does not allow"),
            ("tab\there", "does not allow"),
        ] {
            let msg = windows_name_problem(bad).unwrap_or_default();
            assert!(
                msg.contains(why) && msg.contains(&format!("{bad:?}")),
                "{bad}: {msg}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn open_beneath_never_follows_a_symlink_anywhere_in_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("real")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("real/f"), b"inside").unwrap();
        fs::write(outside.join("f"), b"outside").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("lnk")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), root.join("real/g")).unwrap();
        let rel = |s: &'static str| Path::new(s);
        let (mut f, meta) = open_beneath(&root, rel("real/f")).unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert_eq!((text.as_str(), meta.len()), ("inside", 6));
        for through in ["lnk/f", "real/g"] {
            let e = open_beneath(&root, rel(through)).unwrap_err();
            assert!(is_not_regular(&e), "{through}: {e}");
        }
        // The root itself may be reached through a symlink (the user's own).
        let root_link = dir.path().join("root-link");
        std::os::unix::fs::symlink(&root, &root_link).unwrap();
        assert!(open_beneath(&root_link, rel("real/f")).is_ok());
        // A folder replaced after a first open on this thread (cached
        // descriptor) is seen: the path now names the new folder.
        fs::rename(&root, dir.path().join("old-root")).unwrap();
        fs::create_dir_all(root.join("real")).unwrap();
        fs::write(root.join("real/f"), b"new").unwrap();
        let (f, _) = open_beneath(&root, rel("real/f")).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 3);
        for escaping in ["../outside/f", "/etc/passwd", "real/../real/f"] {
            let e = open_beneath(&root, rel(escaping)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{escaping}");
        }
    }
}
