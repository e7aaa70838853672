//! What fault injection needs beyond a plain world: an unprivileged user
//! (root reads a file of mode 000, so "unreadable" needs someone else) and
//! a small tmpfs (to fill a destination, or remount it read-only).
//!
//! Both print why and return `None` when the machine cannot provide them;
//! the test then returns early.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::bounded::{run_timeout, RUN_TIMEOUT};
use crate::files::set_mode;
use crate::host::{have, is_root};
use crate::{assert_code, Run, World};

/// The uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// Runs the binary as an unprivileged user: directly when the tests are
/// not root, else as `nobody` through `setpriv` or `runuser`.
pub struct Unprivileged {
    prefix: Vec<OsString>,
}

impl Unprivileged {
    /// `None` (with the reason printed) when no unprivileged user is
    /// available.
    pub fn get() -> Option<Unprivileged> {
        if !is_root() {
            return Some(Unprivileged { prefix: Vec::new() });
        }
        if have("setpriv") {
            return Some(Unprivileged {
                prefix: [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                ]
                .map(OsString::from)
                .to_vec(),
            });
        }
        if have("runuser") {
            return Some(Unprivileged {
                prefix: ["runuser", "-u", "nobody", "--"]
                    .map(OsString::from)
                    .to_vec(),
            });
        }
        eprintln!("SKIPPED: running as root and neither setpriv nor runuser exists");
        None
    }

    /// Whether runs switch to `nobody` (the tests run as root).
    pub fn is_nobody(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// `program` as this user.
    pub fn command(&self, program: &OsStr) -> Command {
        match self.prefix.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
        }
    }

    /// `backup-cli --profile <profile> <args>` as this user, within
    /// [`RUN_TIMEOUT`].
    pub fn run(&self, w: &World, args: &[&str]) -> Run {
        let mut c = self.command(w.bin.as_os_str());
        c.arg("--profile").arg(&w.profile).args(args);
        c.env_remove("RUST_LOG");
        run_timeout(c, RUN_TIMEOUT)
    }

    /// `backup --force --json` as this user, asserting the exit code.
    pub fn backup(&self, w: &World, code: i32) -> Value {
        let r = self.run(w, &["backup", "--force", "--json"]);
        assert_code(&r, code, "backup (unprivileged)");
        r.json()
    }

    /// Makes the whole world usable by this user (no-op when not root).
    pub fn own(&self, w: &World) {
        if !self.is_nobody() {
            return;
        }
        set_mode(w.dir.path(), 0o755);
        chown_tree(w.dir.path());
    }
}

fn chown_tree(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    let m = fs::symlink_metadata(p).unwrap();
    if m.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path());
        }
    }
}

/// A tmpfs mounted for one test; unmounted when dropped (also on panic).
pub struct TmpfsMount(PathBuf);

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`) on `dir`; `None` (with the
    /// reason printed) without root or when `mount` fails.
    pub fn new(dir: &Path, size: &str) -> Option<TmpfsMount> {
        if !is_root() {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return None;
        }
        fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        match st {
            Ok(s) if s.success() => Some(TmpfsMount(dir.to_path_buf())),
            other => {
                eprintln!("SKIPPED: mount -t tmpfs failed: {other:?}");
                None
            }
        }
    }

    /// `mount -o remount,<how>` (`"ro"`, `"rw"`).
    pub fn remount(&self, how: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "mount -o remount,{how} failed");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// An exFAT file system (the usual Windows backup drive: no hard links, no
/// symlinks, no Unix modes) mounted for one test through FUSE: an image
/// file made by `mkfs.exfat` (exfatprogs), a loop device, `mount.exfat-fuse`
/// (exfat-fuse). This kernel has no vfat or exfat module; FUSE is the one
/// way to mount one. Unmounted and detached when dropped.
pub struct ExfatMount {
    dir: PathBuf,
    loop_dev: String,
}

impl ExfatMount {
    /// Mounts a `size_mb` MiB exFAT on `dir`, its image in `image`. `None`
    /// (the reason printed) without root or the tools, unless
    /// `BACKUP_CLI_REQUIRE_EXFAT` is set (CI): then a panic.
    pub fn new(dir: &Path, image: &Path, size_mb: u64) -> Option<ExfatMount> {
        let required = std::env::var_os("BACKUP_CLI_REQUIRE_EXFAT").is_some();
        let skip = |why: String| {
            assert!(!required, "BACKUP_CLI_REQUIRE_EXFAT is set but {why}");
            eprintln!("SKIPPED: {why}");
            None
        };
        if !is_root() {
            return skip("mounting exFAT needs root".into());
        }
        for tool in ["mkfs.exfat", "mount.exfat-fuse", "losetup"] {
            if !have(tool) {
                return skip(format!(
                    "{tool} is not installed (apt: exfatprogs, exfat-fuse)"
                ));
            }
        }
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        fs::File::create(image)
            .unwrap()
            .set_len(size_mb << 20)
            .unwrap();
        if !ok(Command::new("mkfs.exfat")
            .arg(image)
            .stdout(std::process::Stdio::null()))
        {
            return skip("mkfs.exfat failed".into());
        }
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output();
        let loop_dev = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            other => return skip(format!("losetup failed: {other:?}")),
        };
        fs::create_dir_all(dir).unwrap();
        if !ok(Command::new("mount.exfat-fuse").arg(&loop_dev).arg(dir)) {
            let _ = Command::new("losetup").arg("-d").arg(&loop_dev).status();
            return skip("mount.exfat-fuse failed".into());
        }
        Some(ExfatMount {
            dir: dir.to_path_buf(),
            loop_dev,
        })
    }
}

impl Drop for ExfatMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.loop_dev)
            .status();
    }
}
