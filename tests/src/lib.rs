//! Test harness for the end-to-end tests in `tests/tests/`: a temporary
//! project tree, a profile, and a way to run the real `backup-cli` binary
//! and read its JSON.
//!
//! The binary is the one `cargo test --workspace` builds next to the test
//! executables (`target/<profile>/backup-cli`).
//!
//! ```no_run
//! let w = backup_tests::World::new("max_backups = 3");
//! w.write("src/main.py", "print('hi')\n");
//! let report = w.backup(0); // backup --force --json, exit code 0
//! assert_eq!(report["outcome"], "created");
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod s3;

/// Path of the `backup-cli` binary, brought up to date (with the
/// examples) once per test process, so `cargo test -p backup-tests` never
/// runs a stale binary.
pub fn binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test-binary>
            let dir = exe.parent().and_then(Path::parent).expect("target dir");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "backup-cli",
                "--bins",
                "--examples",
            ]);
            // The same features as this test build (`--all-features` turns
            // on `s3` here and in backup-cli).
            if cfg!(feature = "s3") {
                cmd.args(["--features", "backup-cli/s3"]);
            }
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cannot build backup-cli");
            let bin = dir.join(format!("backup-cli{}", std::env::consts::EXE_SUFFIX));
            assert!(
                bin.exists(),
                "backup-cli binary not found at {}",
                bin.display()
            );
            bin
        })
        .clone()
}

/// A temporary world: `root/src` (the project), `root/dest` (backups) and
/// `root/profile.toml`.
pub struct World {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub dest: PathBuf,
    pub profile: PathBuf,
    /// Environment variables set for every run of the binary.
    pub env: Vec<(String, String)>,
}

/// What one run of the binary printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl World {
    /// A new world whose profile has `extra` TOML lines added to
    /// `name = "Proj"`, `source = "src"`, `destination = "dest"`.
    pub fn new(extra: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dest = dir.path().join("dest");
        fs::create_dir_all(&src).unwrap();
        let profile = dir.path().join("profile.toml");
        fs::write(
            &profile,
            format!("name = \"Proj\"\nsource = \"src\"\ndestination = \"dest\"\n{extra}\n"),
        )
        .unwrap();
        World {
            dir,
            src,
            dest,
            profile,
            env: Vec::new(),
        }
    }

    /// Writes a file under the source (creating folders).
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// Runs `backup-cli --profile <profile> <args…>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(binary());
        cmd.arg("--profile").arg(&self.profile).args(args);
        cmd.env_remove("RUST_LOG");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output().expect("run backup-cli").into()
    }

    /// `backup --force --json`, asserting the exit code.
    pub fn backup(&self, expect_code: i32) -> Value {
        let r = self.run(&["backup", "--force", "--json"]);
        assert_eq!(
            r.code, expect_code,
            "stdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r.json()
    }

    /// Snapshot folder names in the destination, sorted.
    pub fn snapshot_names(&self) -> Vec<String> {
        let mut v: Vec<String> = match fs::read_dir(&self.dest) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("Proj_backup_"))
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        v
    }

    /// Full path of a snapshot.
    pub fn snapshot(&self, name: &str) -> PathBuf {
        self.dest.join(name)
    }
}

/// Every file, folder and symlink below `root` (relative paths, sorted),
/// skipping the snapshot's own `.backup-snapshot` folder and the tool's
/// state files, with file contents, symlink targets and permission bits.
pub fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == ".backup-snapshot"
            || rel.starts_with("backup_metadata.json")
            || rel.starts_with("backup_operations.log")
            || rel == "backup_in_progress.lock"
        {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            out.push((
                rel,
                format!("link -> {}", fs::read_link(&p).unwrap().display()),
            ));
        } else if m.is_dir() {
            out.push((rel.clone(), "dir".into()));
            walk(root, &p, out);
        } else {
            out.push((rel, format!("{:?}", fs::read(&p).unwrap())));
        }
    }
}

/// The permission bits of a path (not following symlinks).
#[cfg(unix)]
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The inode of a path.
#[cfg(unix)]
pub fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(p).unwrap().ino()
}

/// Whether the tests run as root (fault cases that need it skip otherwise).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// Sets a file's mtime to `secs` seconds after the epoch.
pub fn set_mtime(p: &Path, secs: i64) {
    filetime::set_file_mtime(p, filetime::FileTime::from_unix_time(secs, 0)).unwrap();
}

/// Runs `cmd` to the end; returns its exit code and its peak resident set
/// size in KiB (from `wait4`, for this child alone).
#[cfg(unix)]
pub fn run_with_peak_rss(cmd: &mut Command) -> (i32, u64) {
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for writes.
    #[allow(unsafe_code)]
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64)
}
