//! Operating-system facts every part needs: how to open a file that must
//! be a regular file without being led astray ([`open_regular`]), how to
//! make a folder's renames durable ([`sync_dir`]) and this machine's name
//! ([`host_name`], for lock records and logs).

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

/// fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
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
