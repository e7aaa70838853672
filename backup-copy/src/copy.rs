//! [`copy_hashed`]: copy one file, hashing exactly the bytes written, and
//! notice when the source changes during the copy.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use backup_core::{ContentHash, ContentHasher, FileStat};

const BUF_SIZE: usize = 256 * 1024;

/// Where a copy failed: reading the source (a per-file problem) or writing
/// the destination (fatal for the run).
#[derive(Debug)]
pub enum CopyError {
    /// The source could not be opened or read.
    Source(io::Error),
    /// The destination could not be written.
    Destination(io::Error),
}

/// What a copy produced.
#[derive(Clone, Copy, Debug)]
pub struct Copied {
    /// SHA-256 of the bytes written.
    pub hash: ContentHash,
    /// Bytes written.
    pub bytes: u64,
    /// The source's facts when it was opened.
    pub stat: FileStat,
    /// The source's size or mtime differed after the copy.
    pub changed_during_copy: bool,
}

/// Opens a source file for reading: see [`backup_sys::open_regular`]
/// (no symlink followed, no FIFO waited on, a regular file or an error).
pub fn open_source(path: &Path) -> io::Result<File> {
    backup_sys::open_regular(path).map(|(f, _)| f)
}

/// Mode and mtime to give the copy, set on the open file (no extra path
/// lookups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAttrs {
    /// Leave the defaults.
    None,
    /// These permission bits and this mtime (nanoseconds).
    Given {
        /// Permission bits.
        mode: u32,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: i64,
    },
    /// The source's mtime and its mode made read-only (snapshot files).
    SourceReadOnly,
}

/// Read-only form of a file mode (no write bits, no set-id bits).
pub(crate) fn read_only(mode: u32) -> u32 {
    mode & 0o1555
}

thread_local! {
    /// One read buffer per thread: allocating 256 KiB per file costs a
    /// mapping and page faults for every small file.
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; BUF_SIZE]);
}

/// Copies `src` to a new file `dst` (which must not exist), hashing while
/// writing. Does not set the destination's mode or times.
pub fn copy_hashed(src: &Path, dst: &Path) -> Result<Copied, CopyError> {
    copy_hashed_with(src, dst, SetAttrs::None)
}

/// [`copy_hashed`], then sets the copy's mode and mtime as `attrs` says.
pub fn copy_hashed_with(src: &Path, dst: &Path, attrs: SetAttrs) -> Result<Copied, CopyError> {
    let input = open_source(src).map_err(CopyError::Source)?;
    copy_open_hashed(input, dst, attrs)
}

/// [`copy_hashed_with`] from a file already opened (say, by a store that
/// checked how it was reached).
pub fn copy_open_hashed(input: File, dst: &Path, attrs: SetAttrs) -> Result<Copied, CopyError> {
    copy_open_hashed_with(input, attrs, || {
        OpenOptions::new().write(true).create_new(true).open(dst)
    })
}

/// [`copy_open_hashed`] into the new file `create` makes (say, below a
/// folder descriptor), once the source is known to be readable.
pub fn copy_open_hashed_with(
    input: File,
    attrs: SetAttrs,
    create: impl FnOnce() -> io::Result<File>,
) -> Result<Copied, CopyError> {
    BUFFER.with(|b| copy_with_buffer(input, create, attrs, &mut b.borrow_mut()))
}

fn copy_with_buffer(
    mut input: File,
    create: impl FnOnce() -> io::Result<File>,
    attrs: SetAttrs,
    buf: &mut [u8],
) -> Result<Copied, CopyError> {
    let before = input.metadata().map_err(CopyError::Source)?;
    let stat = FileStat::from_metadata(&before);
    let mut output = create().map_err(CopyError::Destination)?;
    // At most the size seen at open: a file growing faster than it is
    // copied would otherwise be read for ever (the retry sees the growth).
    let (hash, bytes) = write_hashed(&mut (&mut input).take(stat.size), &mut output, buf)?;
    let (mode, mtime_ns) = match attrs {
        SetAttrs::None => (None, None),
        SetAttrs::Given { mode, mtime_ns } => (Some(mode), Some(mtime_ns)),
        SetAttrs::SourceReadOnly => (Some(read_only(stat.mode)), Some(stat.mtime_ns)),
    };
    if let Some(ns) = mtime_ns {
        filetime::set_file_handle_times(&output, None, Some(file_time(ns)))
            .map_err(CopyError::Destination)?;
    }
    if let Some(mode) = mode {
        set_handle_mode(&output, mode).map_err(CopyError::Destination)?;
    }
    // Where no one call flushes the whole snapshot at commit (Windows).
    if backup_sys::FLUSH_EACH_FILE {
        output.sync_all().map_err(CopyError::Destination)?;
    }
    let after = input
        .metadata()
        .map(|m| FileStat::from_metadata(&m))
        .map_err(CopyError::Source)?;
    let changed_during_copy =
        after.size != stat.size || after.mtime_ns != stat.mtime_ns || bytes != stat.size;
    Ok(Copied {
        hash,
        bytes,
        stat: FileStat {
            size: bytes,
            ..stat
        },
        changed_during_copy,
    })
}

/// Writes everything `input` yields to `output`, hashing it, leaving holes
/// for blocks of zeros (sparse files stay sparse in snapshots and
/// restores). Returns the hash and the byte count.
fn write_hashed(
    input: &mut dyn Read,
    output: &mut File,
    buf: &mut [u8],
) -> Result<(ContentHash, u64), CopyError> {
    let mut hasher = ContentHasher::new();
    let mut bytes = 0u64;
    let mut trailing_hole = false;
    loop {
        let n = match input.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Source(e)),
        };
        hasher.update(&buf[..n]);
        trailing_hole = is_zero(&buf[..n]);
        if trailing_hole {
            output
                .seek(SeekFrom::Current(n as i64))
                .map_err(CopyError::Destination)?;
        } else {
            output
                .write_all(&buf[..n])
                .map_err(CopyError::Destination)?;
        }
        bytes += n as u64;
    }
    if trailing_hole {
        // A trailing hole has to be made explicit.
        output.set_len(bytes).map_err(CopyError::Destination)?;
    }
    Ok((hasher.finish(), bytes))
}

/// Copies everything `input` yields (e.g. a download) to a new file `dst`
/// (which must not exist), hashing it, then gives the copy `mode` and
/// `mtime_ns`. Returns the hash and the byte count.
pub fn copy_stream_hashed(
    input: &mut dyn Read,
    dst: &Path,
    mode: u32,
    mtime_ns: i64,
) -> Result<(ContentHash, u64), CopyError> {
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(CopyError::Destination)?;
    let written = BUFFER.with(|b| write_hashed(input, &mut output, &mut b.borrow_mut()))?;
    filetime::set_file_handle_times(&output, None, Some(file_time(mtime_ns)))
        .map_err(CopyError::Destination)?;
    set_handle_mode(&output, mode).map_err(CopyError::Destination)?;
    if backup_sys::FLUSH_EACH_FILE {
        output.sync_all().map_err(CopyError::Destination)?;
    }
    Ok(written)
}

/// A file time from nanoseconds since the epoch.
pub fn file_time(ns: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Sets a path's permission bits (off Unix: only read-only or not).
#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Sets a path's permission bits (off Unix: only read-only or not, and
/// only for files: on Windows a folder's read-only attribute stops nothing
/// inside it, makes the folder itself undeletable and tells Explorer the
/// folder is customised, so snapshot folders never carry it).
#[cfg(not(unix))]
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Ok(());
    }
    let mut p = meta.permissions();
    p.set_readonly(mode & 0o222 == 0);
    std::fs::set_permissions(path, p)
}

/// Sets an open file's permission bits.
#[cfg(unix)]
fn set_handle_mode(f: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Sets an open file's permission bits (off Unix: only read-only or not).
#[cfg(not(unix))]
fn set_handle_mode(f: &File, mode: u32) -> io::Result<()> {
    let mut p = f.metadata()?.permissions();
    p.set_readonly(mode & 0o222 == 0);
    f.set_permissions(p)
}

/// Whether a block is all zero bytes (checked cheaply: most blocks fail on
/// their first bytes).
fn is_zero(block: &[u8]) -> bool {
    let head = block.len().min(64);
    block[..head].iter().all(|&b| b == 0) && block.iter().fold(0u8, |acc, &b| acc | b) == 0
}

/// Whether a destination error must stop the run (no space, read-only,
/// quota) rather than fall back to another way of writing the file.
pub fn is_fatal_destination_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reliability v2 #14: a file growing faster than it can be read is
    /// copied up to the size it had when it was opened and reported as
    /// changed, never read until the writer stops (3.2 GB were read for
    /// a 366 MB file before).
    #[test]
    fn a_file_growing_faster_than_it_is_read_is_copied_to_its_size_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("growing");
        let dst = dir.path().join("copy");
        std::fs::write(&src, b"start").unwrap();
        const CAP: u64 = 2 << 30;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let grower = {
            let (src, stop) = (src.clone(), stop.clone());
            std::thread::spawn(move || {
                let f = OpenOptions::new().write(true).open(&src).unwrap();
                let mut len = 5;
                // Sparse growth: far faster than anything can read it.
                while len < CAP && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    len += 1 << 20;
                    f.set_len(len).unwrap();
                }
            })
        };
        while std::fs::metadata(&src).unwrap().len() < 64 << 20 {
            std::thread::yield_now();
        }
        let c = copy_hashed(&src, &dst).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        grower.join().unwrap();
        let end = std::fs::metadata(&src).unwrap().len();
        assert!(c.changed_during_copy, "the growth went unnoticed");
        assert!(
            c.bytes < end && c.bytes < CAP,
            "read {} bytes: past the size at open (the file ended at {end})",
            c.bytes
        );
        assert_eq!(std::fs::metadata(&dst).unwrap().len(), c.bytes);
    }

    #[test]
    fn copies_and_hashes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s");
        let dst = dir.path().join("d");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let c = copy_hashed(&src, &dst).unwrap();
        assert_eq!(c.bytes, data.len() as u64);
        assert!(!c.changed_during_copy);
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        use sha2::Digest;
        let expect: [u8; 32] = sha2::Sha256::digest(&data).into();
        assert_eq!(c.hash.0, expect);
    }

    #[cfg(unix)]
    #[test]
    fn sparse_files_stay_sparse_and_identical() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("sparse");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        let mut f = OpenOptions::new().write(true).open(&src).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"data in the middle").unwrap();
        drop(f);
        let dst = dir.path().join("copy");
        let c = copy_hashed(&src, &dst).unwrap();
        assert_eq!(c.bytes, 64 << 20);
        let m = std::fs::metadata(&dst).unwrap();
        assert_eq!(m.len(), 64 << 20);
        assert!(
            m.blocks() * 512 < 8 << 20,
            "copy is not sparse: {} blocks",
            m.blocks()
        );
        assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&src).unwrap());
    }

    #[test]
    fn missing_source_is_a_source_error_and_existing_destination_a_destination_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            copy_hashed(&dir.path().join("none"), &dir.path().join("d")),
            Err(CopyError::Source(_))
        ));
        std::fs::write(dir.path().join("s"), b"x").unwrap();
        std::fs::write(dir.path().join("d"), b"y").unwrap();
        assert!(matches!(
            copy_hashed(&dir.path().join("s"), &dir.path().join("d")),
            Err(CopyError::Destination(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_or_fifo_in_place_of_the_file_is_a_source_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("was-a-file")).unwrap();
        assert!(matches!(
            copy_hashed(&dir.path().join("was-a-file"), &dir.path().join("d1")),
            Err(CopyError::Source(_))
        ));
        let fifo = dir.path().join("fifo");
        let st = std::process::Command::new("mkfifo").arg(&fifo).status();
        if st.is_ok_and(|s| s.success()) {
            // Must not block.
            assert!(matches!(
                copy_hashed(&fifo, &dir.path().join("d2")),
                Err(CopyError::Source(_))
            ));
        }
    }
}
