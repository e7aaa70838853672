//! A temporary world (project, destination, profile) and runs of the real
//! binary in it.
//!
//! The kit never builds the binary: the caller passes its path, which in
//! the end-to-end tests is `env!("CARGO_BIN_EXE_backup-cli")` (cargo builds
//! the binary before it runs the tests of its package).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temporary world: `root/src` (the project), `root/dest` (backups) and
/// `root/profile.toml`, all removed when the world is dropped.
pub struct World {
    /// The binary every run of this world starts.
    pub bin: PathBuf,
    /// The temporary root.
    pub dir: tempfile::TempDir,
    /// The project folder (`source`).
    pub src: PathBuf,
    /// The backups folder (`destination`, not created).
    pub dest: PathBuf,
    /// The profile file.
    pub profile: PathBuf,
    /// Environment variables set for every run of the binary.
    pub env: Vec<(String, String)>,
}

/// What one run of the binary printed and returned.
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
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
    /// A new world running `bin`, whose profile has `extra` TOML lines
    /// added to `name = "Proj"`, `source = "src"`, `destination = "dest"`.
    pub fn new(bin: impl Into<PathBuf>, extra: &str) -> World {
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
            bin: bin.into(),
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

    /// The command `backup-cli --profile <profile> <args…>`, with
    /// `RUST_LOG` removed and the world's environment set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--profile").arg(&self.profile).args(args);
        cmd.env_remove("RUST_LOG");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `backup-cli --profile <profile> <args…>` to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run backup-cli").into()
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

    /// Snapshot folder names in the destination, in creation order
    /// (shorter names first: `…_10-00` before `…_10-00-2`).
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

    /// The source's lock file (profile default).
    pub fn lock_path(&self) -> PathBuf {
        self.src.join("backup_in_progress.lock")
    }

    /// The source's metadata file (profile default).
    pub fn metadata_path(&self) -> PathBuf {
        self.src.join("backup_metadata.json")
    }
}

/// Asserts a run's exit code, showing what it printed.
pub fn assert_code(r: &Run, code: i32, what: &str) {
    assert_eq!(
        r.code, code,
        "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
}

/// `backup --force --json`, asserting exit 0 and outcome `created`;
/// returns the snapshot name and the report.
pub fn backup_created(w: &World) -> (String, Value) {
    let report = w.backup(0);
    assert_eq!(report["outcome"], "created", "{report:#}");
    let name = report["snapshot"].as_str().unwrap().to_string();
    assert!(w.snapshot(&name).is_dir(), "{name} is not a folder");
    (name, report)
}

/// `restore SNAPSHOT --to TO --json EXTRA…`: the run and its one JSON
/// document (`Null` when stdout is empty).
pub fn restore_json(w: &World, snapshot: &str, to: &Path, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["restore", snapshot, "--to", to.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let r = w.run(&args);
    let v = if r.stdout.trim().is_empty() {
        Value::Null
    } else {
        crate::json::single_json(&r)
    };
    (r, v)
}
