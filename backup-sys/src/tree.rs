//! [`Tree`]: a folder opened once, in which entries are created, linked,
//! timed and removed by their path relative to it.
//!
//! A snapshot is written below the destination, whose own path may be
//! long: a path that fits in the source can be over the system's limit
//! (`PATH_MAX`, 4096 bytes on Linux) once the destination is put in front
//! of it. On Linux every operation here is made relative to a folder
//! descriptor: the entry's parent is opened below the tree's root with
//! `openat2` (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so no symlink is
//! followed on the way) and the entry is made with `mkdirat`, `openat`,
//! `linkat`, `symlinkat`, `unlinkat` or `utimensat` on its name. The
//! destination's length never counts; only the relative path does, and it
//! fitted in the source. The last parent each thread opened is kept: a
//! copy worker writes a folder's files in a row.
//!
//! Elsewhere (Windows) the same calls are made on `root.join(rel)`.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A folder whose entries are reached by relative paths (see the module
/// docs). Relative paths must be plain: no `..`, no root, no `.`.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    /// Tells trees apart in the per-thread parent cache.
    id: u64,
    #[cfg(target_os = "linux")]
    fd: File,
}

/// What kind of entry a path names (a symlink is not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symlink.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// The facts of one entry (`lstat`), as far as the platform has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// File, folder, symlink or other.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (off Unix: 0o444 when read-only, else 0o644).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Number of hard links (1 where unknown).
    pub nlink: u64,
    /// Device and inode, where the platform has them (else 0).
    pub dev_ino: (u64, u64),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn check_plain(rel: &Path) -> io::Result<()> {
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a plain relative path", rel.display()),
        ));
    }
    Ok(())
}

impl Tree {
    /// Opens the folder `root` (reached by any path the user gave; what is
    /// below it is never reached through a symlink).
    pub fn open(root: &Path) -> io::Result<Tree> {
        #[cfg(target_os = "linux")]
        let fd = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(root)?
        };
        #[cfg(not(target_os = "linux"))]
        if !std::fs::metadata(root)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a folder", root.display()),
            ));
        }
        Ok(Tree {
            root: root.to_path_buf(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            #[cfg(target_os = "linux")]
            fd,
        })
    }

    /// The root folder's path, for messages.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The full path of `rel`, for messages (it may be too long to use).
    pub fn display_path(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// Creates the folder `rel` (its parent must exist).
    pub fn create_dir(&self, rel: &Path) -> io::Result<()> {
        check_plain(rel)?;
        imp::create_dir(self, rel)
    }

    /// Creates the folder `rel` and any missing folders above it.
    pub fn create_dir_all(&self, rel: &Path) -> io::Result<()> {
        check_plain(rel)?;
        let mut sofar = PathBuf::new();
        for part in rel.components() {
            sofar.push(part);
            match imp::create_dir(self, &sofar) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if self.stat(&sofar)?.kind != Kind::Dir {
                        return Err(e);
                    }
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Opens the regular file `rel` for reading, as
    /// [`open_beneath`](crate::open_beneath) does (no symlink anywhere, no
    /// FIFO or device opened).
    pub fn open_file(&self, rel: &Path) -> io::Result<(File, Metadata)> {
        check_plain(rel)?;
        crate::fs::checked_regular(imp::open_file(self, rel))
    }

    /// Creates the new file `rel` (it must not exist), open for writing.
    pub fn create_file(&self, rel: &Path) -> io::Result<File> {
        check_plain(rel)?;
        imp::create_file(self, rel)
    }

    /// Removes the file (or symlink) `rel`.
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        check_plain(rel)?;
        imp::remove_file(self, rel)
    }

    /// Creates the symlink `rel` pointing at `target`.
    pub fn symlink(&self, target: &Path, rel: &Path) -> io::Result<()> {
        check_plain(rel)?;
        imp::symlink(self, target, rel)
    }

    /// Hard-links `from_rel` of the tree `from` (which may be this one) at
    /// `rel` of this tree.
    pub fn hard_link(&self, from: &Tree, from_rel: &Path, rel: &Path) -> io::Result<()> {
        check_plain(from_rel)?;
        check_plain(rel)?;
        imp::hard_link(from, from_rel, self, rel)
    }

    /// What `lstat` says of `rel` (a symlink itself, not its target).
    pub fn stat(&self, rel: &Path) -> io::Result<Stat> {
        check_plain(rel)?;
        imp::stat(self, rel)
    }

    /// The target of the symlink `rel`.
    pub fn read_link(&self, rel: &Path) -> io::Result<PathBuf> {
        check_plain(rel)?;
        imp::read_link(self, rel)
    }

    /// The names in the folder `rel` (the root when `rel` is empty), with
    /// their kinds, `.` and `..` left out.
    pub fn read_dir(&self, rel: &Path) -> io::Result<Vec<(OsString, Kind)>> {
        if !rel.as_os_str().is_empty() {
            check_plain(rel)?;
        }
        imp::read_dir(self, rel)
    }

    /// Sets the modification time of the symlink `rel` itself.
    pub fn set_symlink_mtime(&self, rel: &Path, mtime_ns: i64) -> io::Result<()> {
        check_plain(rel)?;
        imp::set_symlink_mtime(self, rel, mtime_ns)
    }

    /// Gives the owner full access to every folder of the tree (snapshot
    /// folders are read-only), so that it can be removed. Folders are
    /// opened below their parents, never through a symlink.
    pub fn make_dirs_writable(&self) -> io::Result<()> {
        imp::make_dirs_writable(self)
    }

    /// Sets the modification time, then the permission bits, of the folder
    /// `rel` (off Unix, only whether it is read-only).
    pub fn set_dir_attrs(&self, rel: &Path, mtime_ns: i64, mode: u32) -> io::Result<()> {
        check_plain(rel)?;
        imp::set_dir_attrs(self, rel, mtime_ns, mode)
    }
}

impl Drop for Tree {
    /// Closes the parents this thread kept open for it (other threads'
    /// go when those threads end).
    fn drop(&mut self) {
        imp::forget(self.id);
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::cell::RefCell;
    use std::ffi::{OsStr, OsString};
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::path::{Path, PathBuf};

    use rustix::fs::{
        fchmod, futimens, linkat, mkdirat, openat, openat2, readlinkat, statat, symlinkat,
        unlinkat, utimensat, AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps, UTIME_OMIT,
    };

    use super::{Kind, Stat, Tree};

    /// Parents kept open per thread: (tree id, parent path, folder).
    type Cached = (u64, PathBuf, File);

    const CACHE: usize = 4;

    thread_local! {
        static PARENTS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn forget(id: u64) {
        // `try_with`: a tree dropped while this thread ends has no cache.
        let _ = PARENTS.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache.retain(|(of, _, _)| *of != id);
            }
        });
    }

    /// Opens `rel` below the tree's root, following no symlink.
    fn open_below(tree: &Tree, rel: &Path, flags: OFlags) -> io::Result<File> {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        match openat2(&tree.fd, rel, flags, Mode::empty(), how) {
            Err(rustix::io::Errno::NOSYS) => open_by_components(tree, rel, flags),
            other => Ok(File::from(other?)),
        }
    }

    /// Kernels before 5.6: one `openat` per component, none a symlink.
    fn open_by_components(tree: &Tree, rel: &Path, flags: OFlags) -> io::Result<File> {
        let parts: Vec<_> = rel.components().collect();
        let mut dir = tree.fd.try_clone()?;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let f = if last {
                flags
            } else {
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW
            };
            dir = File::from(openat(&dir, part.as_os_str(), f, Mode::empty())?);
        }
        Ok(dir)
    }

    /// The parent folder and last name of `rel`.
    fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        Ok((rel.parent().unwrap_or(Path::new("")), name))
    }

    /// Makes sure the cache holds `parent` of `tree` (evicting the oldest
    /// entry other than `keep`); returns nothing for the root itself.
    fn ensure(
        cache: &mut Vec<Cached>,
        tree: &Tree,
        parent: &Path,
        keep: Option<(u64, &Path)>,
    ) -> io::Result<()> {
        let known = |(id, p, _): &Cached| *id == tree.id && p == parent;
        if parent.as_os_str().is_empty() || cache.iter().any(known) {
            return Ok(());
        }
        let dir = open_below(tree, parent, OFlags::PATH | OFlags::DIRECTORY)?;
        if cache.len() >= CACHE {
            let pinned = |(id, p, _): &Cached| keep.is_some_and(|(k, kp)| *id == k && p == kp);
            if let Some(i) = cache.iter().position(|c| !pinned(c)) {
                cache.remove(i);
            }
        }
        cache.push((tree.id, parent.to_path_buf(), dir));
        Ok(())
    }

    /// The descriptor of `parent` of `tree`, once [`ensure`]d.
    fn find<'a>(cache: &'a [Cached], tree: &'a Tree, parent: &Path) -> BorrowedFd<'a> {
        cache
            .iter()
            .find(|(id, p, _)| *id == tree.id && p == parent)
            .map_or(tree.fd.as_fd(), |(_, _, f)| f.as_fd())
    }

    /// Runs `op` on the folder holding `rel` and `rel`'s last name.
    fn in_parent<T>(
        tree: &Tree,
        rel: &Path,
        op: impl FnOnce(BorrowedFd<'_>, &OsStr) -> io::Result<T>,
    ) -> io::Result<T> {
        let (parent, name) = split(rel)?;
        PARENTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            ensure(&mut cache, tree, parent, None)?;
            op(find(&cache, tree, parent), name)
        })
    }

    pub(super) fn create_dir(tree: &Tree, rel: &Path) -> io::Result<()> {
        in_parent(tree, rel, |dir, name| {
            Ok(mkdirat(dir, name, Mode::from_raw_mode(0o777))?)
        })
    }

    pub(super) fn open_file(tree: &Tree, rel: &Path) -> io::Result<File> {
        open_below(tree, rel, OFlags::RDONLY | OFlags::NONBLOCK)
    }

    pub(super) fn create_file(tree: &Tree, rel: &Path) -> io::Result<File> {
        in_parent(tree, rel, |dir, name| {
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            Ok(File::from(openat(
                dir,
                name,
                flags,
                Mode::from_raw_mode(0o666),
            )?))
        })
    }

    pub(super) fn remove_file(tree: &Tree, rel: &Path) -> io::Result<()> {
        in_parent(tree, rel, |dir, name| {
            Ok(unlinkat(dir, name, AtFlags::empty())?)
        })
    }

    pub(super) fn symlink(tree: &Tree, target: &Path, rel: &Path) -> io::Result<()> {
        in_parent(tree, rel, |dir, name| Ok(symlinkat(target, dir, name)?))
    }

    pub(super) fn hard_link(from: &Tree, from_rel: &Path, to: &Tree, rel: &Path) -> io::Result<()> {
        let (from_parent, from_name) = split(from_rel)?;
        let (parent, name) = split(rel)?;
        PARENTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            ensure(&mut cache, from, from_parent, None)?;
            ensure(&mut cache, to, parent, Some((from.id, from_parent)))?;
            let (a, b) = (find(&cache, from, from_parent), find(&cache, to, parent));
            Ok(linkat(a, from_name, b, name, AtFlags::empty())?)
        })
    }

    fn kind_of(t: rustix::fs::FileType) -> Kind {
        use rustix::fs::FileType;
        match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }

    pub(super) fn stat(tree: &Tree, rel: &Path) -> io::Result<Stat> {
        let st = in_parent(tree, rel, |dir, name| {
            Ok(statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
        })?;
        Ok(Stat {
            kind: kind_of(rustix::fs::FileType::from_raw_mode(st.st_mode)),
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
            nlink: st.st_nlink as u64,
            dev_ino: (st.st_dev as u64, st.st_ino as u64),
        })
    }

    pub(super) fn read_link(tree: &Tree, rel: &Path) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        let target = in_parent(tree, rel, |dir, name| {
            Ok(readlinkat(dir, name, Vec::new())?)
        })?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    pub(super) fn read_dir(tree: &Tree, rel: &Path) -> io::Result<Vec<(OsString, Kind)>> {
        use std::os::unix::ffi::OsStrExt;
        let dir = if rel.as_os_str().is_empty() {
            tree.fd.try_clone()?
        } else {
            open_below(tree, rel, OFlags::RDONLY | OFlags::DIRECTORY)?
        };
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let name = OsStr::from_bytes(name.to_bytes());
            let kind = match entry.file_type() {
                rustix::fs::FileType::Unknown => {
                    let st = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                    kind_of(rustix::fs::FileType::from_raw_mode(st.st_mode))
                }
                t => kind_of(t),
            };
            out.push((name.to_os_string(), kind));
        }
        Ok(out)
    }

    fn timestamps(mtime_ns: i64) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: mtime_ns.div_euclid(1_000_000_000),
                tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
            },
        }
    }

    pub(super) fn set_symlink_mtime(tree: &Tree, rel: &Path, mtime_ns: i64) -> io::Result<()> {
        in_parent(tree, rel, |dir, name| {
            Ok(utimensat(
                dir,
                name,
                &timestamps(mtime_ns),
                AtFlags::SYMLINK_NOFOLLOW,
            )?)
        })
    }

    pub(super) fn make_dirs_writable(tree: &Tree) -> io::Result<()> {
        grant(tree.fd.try_clone()?)
    }

    /// Makes `dir` and the folders below it owner-writable (depth first).
    fn grant(dir: File) -> io::Result<()> {
        let mode = rustix::fs::fstat(&dir)?.st_mode & 0o7777;
        if mode & 0o700 != 0o700 {
            fchmod(&dir, Mode::from_raw_mode(mode | 0o700))?;
        }
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if entry.file_type() != rustix::fs::FileType::Directory || name == c"." || name == c".."
            {
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            grant(File::from(openat(&dir, name, flags, Mode::empty())?))?;
        }
        Ok(())
    }

    pub(super) fn set_dir_attrs(
        tree: &Tree,
        rel: &Path,
        mtime_ns: i64,
        mode: u32,
    ) -> io::Result<()> {
        let dir = open_below(tree, rel, OFlags::RDONLY | OFlags::DIRECTORY)?;
        futimens(&dir, &timestamps(mtime_ns))?;
        Ok(fchmod(&dir, Mode::from_raw_mode(mode))?)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::ffi::OsString;
    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::path::Path;

    use super::{Kind, Stat, Tree};

    pub(super) fn forget(_id: u64) {}

    fn time(ns: i64) -> filetime::FileTime {
        filetime::FileTime::from_unix_time(
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        )
    }

    pub(super) fn create_dir(tree: &Tree, rel: &Path) -> io::Result<()> {
        fs::create_dir(tree.root.join(rel))
    }

    pub(super) fn open_file(tree: &Tree, rel: &Path) -> io::Result<File> {
        crate::open_beneath(&tree.root, rel).map(|(f, _)| f)
    }

    pub(super) fn create_file(tree: &Tree, rel: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tree.root.join(rel))
    }

    pub(super) fn remove_file(tree: &Tree, rel: &Path) -> io::Result<()> {
        fs::remove_file(tree.root.join(rel))
    }

    pub(super) fn symlink(tree: &Tree, target: &Path, rel: &Path) -> io::Result<()> {
        let at = tree.root.join(rel);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(target, at)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::symlink_file(target, at)
        }
    }

    pub(super) fn hard_link(from: &Tree, from_rel: &Path, to: &Tree, rel: &Path) -> io::Result<()> {
        let parts: Vec<_> = from_rel.components().collect();
        let mut dir = from.root.clone();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            dir.push(part);
            if !fs::symlink_metadata(&dir)?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a folder", dir.display()),
                ));
            }
        }
        fs::hard_link(from.root.join(from_rel), to.root.join(rel))
    }

    fn kind_of(t: fs::FileType) -> Kind {
        if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }

    pub(super) fn stat(tree: &Tree, rel: &Path) -> io::Result<Stat> {
        let m = fs::symlink_metadata(tree.root.join(rel))?;
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        #[cfg(unix)]
        let (mode, nlink, dev_ino) = {
            use std::os::unix::fs::MetadataExt;
            (m.mode() & 0o7777, m.nlink(), (m.dev(), m.ino()))
        };
        #[cfg(not(unix))]
        let (mode, nlink, dev_ino) = {
            let mode = if m.permissions().readonly() {
                0o444
            } else {
                0o644
            };
            (mode, 1, (0, 0))
        };
        Ok(Stat {
            kind: kind_of(m.file_type()),
            size: m.len(),
            mode,
            mtime_ns,
            nlink,
            dev_ino,
        })
    }

    pub(super) fn read_link(tree: &Tree, rel: &Path) -> io::Result<std::path::PathBuf> {
        fs::read_link(tree.root.join(rel))
    }

    pub(super) fn read_dir(tree: &Tree, rel: &Path) -> io::Result<Vec<(OsString, Kind)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(tree.root.join(rel))? {
            let entry = entry?;
            out.push((entry.file_name(), kind_of(entry.file_type()?)));
        }
        Ok(out)
    }

    pub(super) fn set_symlink_mtime(tree: &Tree, rel: &Path, mtime_ns: i64) -> io::Result<()> {
        let t = time(mtime_ns);
        filetime::set_symlink_file_times(tree.root.join(rel), t, t)
    }

    pub(super) fn make_dirs_writable(tree: &Tree) -> io::Result<()> {
        grant(&tree.root)
    }

    fn grant(dir: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Ok(());
        }
        let mut p = meta.permissions();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if p.mode() & 0o700 != 0o700 {
                p.set_mode(p.mode() | 0o700);
                fs::set_permissions(dir, p)?;
            }
        }
        #[cfg(not(unix))]
        if p.readonly() {
            p.set_readonly(false);
            fs::set_permissions(dir, p)?;
        }
        for child in fs::read_dir(dir)? {
            let child = child?;
            if child.file_type()?.is_dir() {
                grant(&child.path())?;
            }
        }
        Ok(())
    }

    pub(super) fn set_dir_attrs(
        tree: &Tree,
        rel: &Path,
        mtime_ns: i64,
        mode: u32,
    ) -> io::Result<()> {
        let path = tree.root.join(rel);
        filetime::set_file_mtime(&path, time(mtime_ns))?;
        #[cfg(unix)]
        let mut p = fs::metadata(&path)?.permissions();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            p.set_mode(mode);
        }
        // Off Unix, folders never get the read-only attribute (Windows
        // stops nothing inside a folder with it, and will not delete it).
        #[cfg(not(unix))]
        {
            let _ = mode;
            return Ok(());
        }
        #[cfg(unix)]
        fs::set_permissions(&path, p)
    }
}

// Unix only: see each test (the Windows fallback's calls are std's).
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A path whose full form is far over `PATH_MAX` is still created,
    /// linked, timed and removed: only the relative path counts.
    // Linux only: elsewhere the calls take whole paths, which Windows takes
    // up to 32,767 characters (std passes long ones as `\\?\`), but Wine
    // maps them to Linux paths, limited to 4,096 bytes.
    #[cfg(target_os = "linux")]
    #[test]
    fn entries_far_below_a_long_root_are_made_relative_to_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        // A root 2,400 bytes deep, and a relative path of 2,600 more.
        let mut root = dir.path().to_path_buf();
        for c in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"] {
            root.push(c.repeat(200));
        }
        std::fs::create_dir_all(&root).unwrap();
        let tree = Tree::open(&root).unwrap();
        let mut rel = PathBuf::new();
        for i in 0..13 {
            rel.push(format!("{i:02}{}", "x".repeat(198)));
        }
        assert!(root.join(&rel).as_os_str().len() > 4096);
        tree.create_dir_all(&rel).unwrap();
        let file = rel.join("f");
        io::Write::write_all(&mut tree.create_file(&file).unwrap(), b"deep").unwrap();
        assert_eq!(tree.stat(&file).unwrap().size, 4);
        assert!(
            tree.create_file(&file).is_err(),
            "an existing file is never overwritten"
        );
        tree.hard_link(&tree, &file, &rel.join("g")).unwrap();
        tree.symlink(Path::new("f"), &rel.join("l")).unwrap();
        tree.set_symlink_mtime(&rel.join("l"), 1_000_000_000_123)
            .unwrap();
        tree.set_dir_attrs(&rel, 2_000_000_000_000_000_000, 0o755)
            .unwrap();
        let g = tree.stat(&rel.join("g")).unwrap();
        let l = tree.stat(&rel.join("l")).unwrap();
        let d = tree.stat(&rel).unwrap();
        assert_eq!(
            (g.kind, l.kind, d.kind),
            (Kind::File, Kind::Symlink, Kind::Dir)
        );
        assert_eq!(tree.read_link(&rel.join("l")).unwrap(), Path::new("f"));
        let mut names = tree.read_dir(&rel).unwrap();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let want = [("f", Kind::File), ("g", Kind::File), ("l", Kind::Symlink)];
        let want: Vec<_> = want.iter().map(|(n, k)| (OsString::from(n), *k)).collect();
        assert_eq!(names, want);
        #[cfg(unix)]
        {
            assert_eq!(g.nlink, 2);
            assert_eq!(l.mtime_ns, 1_000_000_000_123);
            assert_eq!(d.mtime_ns, 2_000_000_000_000_000_000);
            assert_eq!(d.mode, 0o755);
        }
        tree.remove_file(&rel.join("g")).unwrap();
        assert!(tree.stat(&rel.join("g")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_on_the_way_is_never_followed_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("lnk")).unwrap();
        let tree = Tree::open(&root).unwrap();
        for rel in ["lnk/new", "lnk/sub/new"] {
            assert!(tree.create_file(Path::new(rel)).is_err(), "{rel}");
            assert!(tree.create_dir_all(Path::new(rel)).is_err(), "{rel}");
        }
        for rel in ["../outside/x", "/tmp/x", "a/../x", ""] {
            let e = tree.create_file(Path::new(rel)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{rel}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
