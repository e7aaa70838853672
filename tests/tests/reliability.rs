//! Fault injection: locks, crashes (kill -9), unreadable files, a full or
//! read-only destination, racily clean files, files changing during the
//! copy, read-only snapshots and odd source trees, all against the real
//! `backup-cli` binary.
//!
//! Some cases need root (mounting a tmpfs) or an unprivileged user (a file
//! of mode 000 is readable by root): they print why and return early when
//! that is not available.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_tests::{binary, inode, is_root, mode, Run, World};
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// How long any single command may take before the test calls it blocked.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// The source's lock file (profile default).
fn lock_path(w: &World) -> PathBuf {
    w.src.join("backup_in_progress.lock")
}

/// The source's metadata file (profile default).
fn metadata_path(w: &World) -> PathBuf {
    w.src.join("backup_metadata.json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SHA-256 of a file's bytes, streamed.
fn sha256_file(p: &Path) -> String {
    let mut f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

/// A small deterministic PRNG (xorshift64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// The `backup-cli --profile <profile> <args>` command.
fn cli(w: &World, args: &[&str]) -> Command {
    let mut c = Command::new(binary());
    c.arg("--profile").arg(&w.profile).args(args);
    c.env_remove("RUST_LOG");
    c
}

/// Runs a command to completion, failing the test if it takes longer than
/// `timeout` (it is killed then): nothing may block forever.
fn run_timeout(mut cmd: Command, timeout: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!("{cmd:?} did not finish within {timeout:?} (blocked?); stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

fn run(w: &World, args: &[&str]) -> Run {
    run_timeout(cli(w, args), RUN_TIMEOUT)
}

fn expect_code(r: &Run, code: i32, what: &str) {
    assert_eq!(
        r.code, code,
        "{what}: exit code {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    );
}

/// `backup --force --json`, asserting the exit code; returns the JSON.
fn backup(w: &World, code: i32) -> Value {
    let r = run(w, &["backup", "--force", "--json"]);
    expect_code(&r, code, "backup");
    r.json()
}

/// `verify --all --json`, asserting it exits 0 and reports nothing wrong.
fn verify_all_clean(w: &World) -> Value {
    let r = run(w, &["verify", "--all", "--json"]);
    expect_code(&r, 0, "verify --all");
    let v = r.json();
    for k in ["corrupt", "missing", "unexpected"] {
        assert_eq!(
            v[k].as_array().map(Vec::len),
            Some(0),
            "verify reported {k}: {v:#}"
        );
    }
    v
}

/// The newest snapshot's path: the greatest `created` of the snapshots'
/// info.json (names alone do not order: `…_10-59-2` was made before
/// `…_11-00`).
fn latest(w: &World) -> PathBuf {
    dest_names(&w.dest)
        .into_iter()
        .filter(|n| is_final_snapshot_name(n))
        .map(|n| w.snapshot(&n))
        .max_by_key(|p| {
            let created = info(p)["created"].as_str().unwrap().to_owned();
            chrono_key(&created)
        })
        .expect("at least one snapshot")
}

/// Sort key of an RFC 3339 time with nanoseconds and a fixed local offset
/// (all snapshots of a test share it): the text itself, fraction padded.
fn chrono_key(rfc3339: &str) -> String {
    // "2026-11-26T17:45:03.123456789+00:00": pad the fraction to 9 digits.
    let (date_time, rest) = rfc3339.split_at(19);
    let (frac, offset) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            (&r[..end], &r[end..])
        }
        None => ("", rest),
    };
    format!("{date_time}.{frac:0<9}{offset}")
}

/// Path of the snapshot a backup report names.
fn reported_snapshot(w: &World, report: &Value) -> PathBuf {
    let name = report["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot in report {report:#}"));
    w.snapshot(name)
}

/// A manifest line's path as bytes (UTF-8 string or `{"hex": …}`).
fn entry_path(v: &Value) -> Vec<u8> {
    match &v["path"] {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Object(m) => unhex(m["hex"].as_str().expect("hex path")),
        other => panic!("bad manifest path {other}"),
    }
}

/// Every line of a snapshot's manifest.
fn manifest(snapshot: &Path) -> Vec<Value> {
    let p = snapshot.join(".backup-snapshot/manifest.jsonl");
    let text = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    text.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "manifest line of {} is not JSON ({e}): {}",
                    p.display(),
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

/// The manifest entry of `rel` in `snapshot`.
fn entry(snapshot: &Path, rel: impl AsRef<[u8]>) -> Option<Value> {
    let rel = rel.as_ref();
    manifest(snapshot)
        .into_iter()
        .find(|e| entry_path(e) == rel)
}

fn info(snapshot: &Path) -> Value {
    let p = snapshot.join(".backup-snapshot/info.json");
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// Whether `name` has the form of a final snapshot name of profile "Proj".
fn is_final_snapshot_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("Proj_backup_") else {
        return false;
    };
    if rest.len() < 16 {
        return false;
    }
    let (stamp, suffix) = rest.split_at(16);
    let b = stamp.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15];
    let shape = digits.iter().all(|&i| b[i].is_ascii_digit())
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'_'
        && b[13] == b'-';
    shape
        && (suffix.is_empty()
            || suffix
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())))
}

/// Names in `dest` (lossy), sorted.
fn dest_names(dest: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dest) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// `.partial` / `.deleting` folders left in `dest`.
fn leftovers(dest: &Path) -> Vec<String> {
    dest_names(dest)
        .into_iter()
        .filter(|n| n.starts_with('.') && (n.ends_with(".partial") || n.ends_with(".deleting")))
        .collect()
}

/// What a path in a tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir {
        mode: Option<u32>,
    },
    File {
        size: u64,
        sha256: String,
        mode: Option<u32>,
    },
    Link(Vec<u8>),
    Special(&'static str),
}

/// Every path below `root` (raw name bytes), skipping the snapshot state
/// folder and the tool's state files at the top, with file sizes and
/// hashes, symlink targets and (optionally) permission bits.
fn tree_nodes(root: &Path, with_modes: bool) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    walk_nodes(root, root, with_modes, &mut out);
    out
}

fn walk_nodes(root: &Path, dir: &Path, with_modes: bool, out: &mut BTreeMap<Vec<u8>, Node>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        if dir == root {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n == ".backup-snapshot"
                || n.starts_with("backup_metadata.json")
                || n.starts_with("backup_operations.log")
                || n == "backup_in_progress.lock"
            {
                continue;
            }
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let mode_of = |m: &fs::Metadata| with_modes.then_some(m.permissions().mode() & 0o7777);
        let node = if ft.is_symlink() {
            Node::Link(fs::read_link(&p).unwrap().into_os_string().into_vec())
        } else if ft.is_dir() {
            walk_nodes(root, &p, with_modes, out);
            Node::Dir { mode: mode_of(&m) }
        } else if ft.is_file() {
            Node::File {
                size: m.len(),
                sha256: sha256_file(&p),
                mode: mode_of(&m),
            }
        } else {
            use std::os::unix::fs::FileTypeExt;
            Node::Special(if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            })
        };
        out.insert(rel, node);
    }
}

/// Asserts two trees are equal, naming the first differences.
fn assert_same_tree(
    expected: &BTreeMap<Vec<u8>, Node>,
    actual: &BTreeMap<Vec<u8>, Node>,
    what: &str,
) {
    if expected == actual {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing {:?}: {v:?}", OsStr::from_bytes(k))),
            Some(a) if a != v => diffs.push(format!(
                "differs {:?}: expected {v:?}, got {a:?}",
                OsStr::from_bytes(k)
            )),
            _ => {}
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            diffs.push(format!("unexpected {:?}: {v:?}", OsStr::from_bytes(k)));
        }
    }
    diffs.truncate(20);
    panic!("{what}: trees differ:\n  {}", diffs.join("\n  "));
}

/// Byte-for-byte image of a folder: every path with kind, size, mode,
/// mtime, inode and content hash.
fn image(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&p).unwrap();
            let base = format!(
                "mode={:o} mtime={}.{} ino={} nlink={} size={}",
                m.mode(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino(),
                m.nlink(),
                m.len()
            );
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {base} -> {:?}", fs::read_link(&p).unwrap()),
                );
            } else if m.is_dir() {
                out.insert(rel, format!("dir {base}"));
                go(root, &p, out);
            } else {
                out.insert(rel, format!("file {base} sha={}", sha256_file(&p)));
            }
        }
    }
    go(root, root, &mut out);
    out
}

fn set_mode(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

/// Whether a program is on PATH.
fn have(tool: &str) -> bool {
    Command::new("which")
        .arg(tool)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const NOBODY: u32 = 65534;

/// Runs the binary as an unprivileged user: directly when the tests are
/// not root, else as `nobody` through `setpriv` or `runuser`.
struct Unprivileged {
    prefix: Vec<OsString>,
}

impl Unprivileged {
    /// `None` (with the reason printed) when no unprivileged user is
    /// available.
    fn get() -> Option<Unprivileged> {
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

    fn is_nobody(&self) -> bool {
        !self.prefix.is_empty()
    }

    fn command(&self, program: &OsStr) -> Command {
        match self.prefix.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
        }
    }

    fn run(&self, w: &World, args: &[&str]) -> Run {
        let mut c = self.command(binary().as_os_str());
        c.arg("--profile").arg(&w.profile).args(args);
        c.env_remove("RUST_LOG");
        run_timeout(c, RUN_TIMEOUT)
    }

    fn backup(&self, w: &World, code: i32) -> Value {
        let r = self.run(w, &["backup", "--force", "--json"]);
        expect_code(&r, code, "backup (unprivileged)");
        r.json()
    }

    /// Makes the whole world usable by this user (no-op when not root).
    fn own(&self, w: &World) {
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
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(dir: &Path, size: &str) -> Option<TmpfsMount> {
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

    fn remount(&self, how: &str) {
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

fn spawn_backup(w: &World) -> Child {
    cli(w, &["backup", "--force", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

// ---------------------------------------------------------------------------
// 1. Lock
// ---------------------------------------------------------------------------

#[test]
fn lock_held_by_another_process_skips_and_names_the_holder() {
    let w = World::new("");
    w.write("a.txt", "a");
    let lock = lock_path(&w);
    let mut held = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&lock)
        .unwrap();
    held.try_lock().expect("the test takes the lock");
    let text = "pid=424242\nhost=holder-host.example\nstarted=2030-01-02T03:04:05+00:00\n";
    held.write_all(text.as_bytes()).unwrap();
    held.flush().unwrap();

    for attempt in 0..2 {
        let r = run(&w, &["backup", "--force", "--json"]);
        expect_code(&r, 0, "backup while the lock is held");
        let v = r.json();
        assert_eq!(v["outcome"], "skipped_locked", "attempt {attempt}: {v:#}");
        assert_eq!(v["lock_holder"]["pid"], 424242, "{v:#}");
        assert_eq!(v["lock_holder"]["host"], "holder-host.example", "{v:#}");
        assert_eq!(
            v["lock_holder"]["started"], "2030-01-02T03:04:05+00:00",
            "{v:#}"
        );
        assert!(
            w.snapshot_names().is_empty(),
            "a skipped run made a snapshot"
        );
        // The skipping run must leave the holder's lock file alone.
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            text,
            "the skipping run changed the holder's lock file"
        );
        assert_eq!(
            fs::metadata(&lock).unwrap().ino(),
            held.metadata().unwrap().ino(),
            "the skipping run replaced the holder's lock file"
        );
    }

    held.unlock().unwrap();
    drop(held);
    // The file is still there (the holder "crashed" without removing it):
    // released, it no longer blocks.
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert!(!lock.exists(), "lock file left after a successful run");
}

#[test]
fn lock_held_by_a_running_backup_skips_and_names_its_pid() {
    let w = World::new("");
    // Big enough that the first run takes a few seconds.
    let mut rng = Rng::new(7);
    let size = if cfg!(debug_assertions) {
        24 << 20
    } else {
        96 << 20
    };
    for i in 0..4 {
        w.write(&format!("big{i}.bin"), rng.bytes(size));
    }
    let mut child = spawn_backup(&w);
    let pid = child.id();
    let lock = lock_path(&w);
    let start = Instant::now();
    loop {
        if fs::read_to_string(&lock).is_ok_and(|t| t.contains(&format!("pid={pid}\n"))) {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the first run ended ({st}) before the test saw its lock");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first run never wrote pid={pid} into {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = run(&w, &["backup", "--force", "--json"]);
    let still_running = child.try_wait().unwrap().is_none();
    expect_code(&r, 0, "second run");
    let v = r.json();
    assert!(
        still_running,
        "the first run finished during the second; the test tree is too small"
    );
    assert_eq!(v["outcome"], "skipped_locked", "{v:#}");
    assert_eq!(v["lock_holder"]["pid"], pid, "{v:#}");
    assert!(
        v["lock_holder"]["host"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{v:#}"
    );
    assert!(
        v["lock_holder"]["started"]
            .as_str()
            .is_some_and(|s| s.len() >= 19),
        "{v:#}"
    );
    let st = child.wait().unwrap();
    assert!(st.success(), "the first run failed: {st}");
    assert!(
        !lock.exists(),
        "lock file left after the first run finished"
    );
    assert_eq!(w.snapshot_names().len(), 1);
}

#[test]
fn stale_lock_file_without_os_lock_does_not_block_and_is_removed() {
    let w = World::new("");
    w.write("a.txt", "a");
    let lock = lock_path(&w);
    // As left by a run killed with SIGKILL: text, but nobody holds a lock.
    fs::write(
        &lock,
        "pid=999999\nhost=gone.example\nstarted=2001-01-01T00:00:00+00:00\n",
    )
    .unwrap();
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert!(v["lock_holder"].is_null(), "{v:#}");
    assert!(!lock.exists(), "the stale lock file is still there");
}

#[test]
fn lock_file_is_removed_after_success_and_after_failure() {
    let w = World::new("");
    w.write("a.txt", "a");
    let lock = lock_path(&w);
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created");
    assert!(!lock.exists(), "lock file left after a successful run");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "no_changes");
    assert!(!lock.exists(), "lock file left after a no_changes run");

    // Make the next run fail: the destination becomes a regular file.
    w.write("a.txt", "changed");
    fs::rename(&w.dest, w.dir.path().join("dest.moved")).unwrap();
    fs::write(&w.dest, "not a folder").unwrap();
    let r = run(&w, &["backup", "--force", "--json"]);
    expect_code(&r, 1, "backup into a destination that is a file");
    let v = r.json();
    assert_eq!(v["outcome"], "failed", "{v:#}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v:#}");
    assert!(!lock.exists(), "lock file left after a failed run");
}

// ---------------------------------------------------------------------------
// 2. Crash loop (kill -9 at random moments)
// ---------------------------------------------------------------------------

/// After a killed run: metadata parses, and every folder with a final
/// snapshot name is complete (has its info and a parseable manifest).
fn assert_crash_consistent(w: &World, when: &str) {
    let meta = metadata_path(w);
    if let Ok(bytes) = fs::read(&meta) {
        if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
            panic!(
                "{when}: backup_metadata.json is not JSON ({e}); {} bytes",
                bytes.len()
            );
        }
    }
    for name in dest_names(&w.dest) {
        if !is_final_snapshot_name(&name) {
            continue;
        }
        let snap = w.dest.join(&name);
        let info_file = snap.join(".backup-snapshot/info.json");
        assert!(
            info_file.is_file(),
            "{when}: {name} has a final name but no .backup-snapshot/info.json"
        );
        let _ = info(&snap);
        // (Manifests are parsed in full by `verify` at the checkpoints.)
        assert!(
            snap.join(".backup-snapshot/manifest.jsonl").is_file(),
            "{when}: {name} has no manifest"
        );
    }
}

/// A normal run after crashes: succeeds, cleans up, and what it leaves
/// verifies and equals the source.
fn assert_recovers(w: &World, when: &str) {
    let t = Instant::now();
    let r = run(w, &["backup", "--force", "--json"]);
    expect_code(&r, 0, &format!("{when}: normal backup after crashes"));
    let v = r.json();
    eprintln!(
        "{when}: backup {:?} ({} ms in the tool)",
        t.elapsed(),
        v["duration_ms"]
    );
    assert!(
        v["outcome"] == "created" || v["outcome"] == "no_changes",
        "{when}: {v:#}"
    );
    assert_eq!(
        leftovers(&w.dest),
        Vec::<String>::new(),
        "{when}: leftovers"
    );
    assert!(!lock_path(w).exists(), "{when}: lock file left");
    assert_crash_consistent(w, when);
    let snaps: Vec<String> = dest_names(&w.dest)
        .into_iter()
        .filter(|n| is_final_snapshot_name(n))
        .collect();
    let ver = verify_all_clean(w);
    assert_eq!(
        ver["snapshots_checked"].as_u64(),
        Some(snaps.len() as u64),
        "{when}: verify --all did not check every snapshot ({snaps:?}): {ver:#}"
    );
    // The newest snapshot holds exactly the source.
    let newest = latest(w);
    assert_same_tree(
        &tree_nodes(&w.src, false),
        &tree_nodes(&newest, false),
        &format!("{when}: newest snapshot vs source"),
    );
}

/// The crash-loop tree and how it is changed between runs.
struct CrashTree {
    rng: Rng,
    bigs: [usize; 3],
    extra: u32,
}

impl CrashTree {
    fn create(w: &World) -> CrashTree {
        let mut t = CrashTree {
            rng: Rng::new(0x5eed_1234_abcd),
            bigs: [2 << 20, 3 << 20, 5 << 20],
            extra: 0,
        };
        for d in 0..40 {
            for f in 0..100 {
                let len = 64 + t.rng.below(400) as usize;
                w.write(&format!("d{d:02}/f{f:03}.txt"), t.rng.bytes(len));
            }
        }
        for (i, n) in t.bigs.iter().enumerate() {
            w.write(&format!("big{i}.bin"), t.rng.bytes(*n));
        }
        t
    }

    /// Small rewrites, one big file partly rewritten, sometimes a file
    /// added and one removed.
    fn mutate(&mut self, w: &World, i: u32) {
        let rng = &mut self.rng;
        for _ in 0..15 {
            let p = w
                .src
                .join(format!("d{:02}/f{:03}.txt", rng.below(40), rng.below(100)));
            if p.exists() {
                let len = 64 + rng.below(400) as usize;
                fs::write(&p, rng.bytes(len)).unwrap();
            }
        }
        let k = (i % 3) as usize;
        let f = OpenOptions::new()
            .write(true)
            .open(w.src.join(format!("big{k}.bin")))
            .unwrap();
        let off = rng.below(self.bigs[k] as u64 - 65536);
        f.write_all_at(&rng.bytes(65536), off).unwrap();
        drop(f);
        if i.is_multiple_of(3) {
            w.write(&format!("extra/e{}.txt", self.extra), rng.bytes(1000));
            self.extra += 1;
            let victim = w
                .src
                .join(format!("d{:02}/f{:03}.txt", rng.below(40), rng.below(100)));
            let _ = fs::remove_file(victim);
        }
    }
}

#[test]
fn crash_loop_kill_9_at_random_moments_never_corrupts() {
    let started = Instant::now();
    // A low max_backups so that rotation runs (and can be killed) too.
    let w = World::new("max_backups = 3");
    let mut tree = CrashTree::create(&w);
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created");
    // How long a typical incremental run takes, to spread the kills over
    // all of its phases (scan, copy, commit, metadata, rotation).
    tree.mutate(&w, 100);
    let t = Instant::now();
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created");
    let typical_ms = (t.elapsed().as_millis() as u64).max(400);
    eprintln!("crash loop: a typical run takes {typical_ms} ms");

    let mut killed_mid_run = 0;
    let mut killed_after_commit = 0;
    for i in 0..30u32 {
        tree.mutate(&w, i);
        let finals_before = dest_names(&w.dest)
            .into_iter()
            .filter(|n| is_final_snapshot_name(n))
            .collect::<Vec<_>>();
        let mut child = spawn_backup(&w);
        // Half the kills in the first 400 ms, half anywhere up to the end
        // of a typical run.
        let delay = if i % 2 == 0 {
            tree.rng.below(401)
        } else {
            tree.rng.below(typical_ms * 6 / 5 + 1)
        };
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let finals_after: Vec<String> = dest_names(&w.dest)
            .into_iter()
            .filter(|n| is_final_snapshot_name(n))
            .collect();
        if finals_after.iter().any(|n| !finals_before.contains(n)) {
            killed_after_commit += 1;
        }
        assert_crash_consistent(&w, &format!("after kill #{i} at {delay} ms"));

        if (i + 1) % 5 == 0 {
            assert_recovers(&w, &format!("checkpoint after kill #{i}"));
        }
    }
    assert_recovers(&w, "after the loop");
    eprintln!(
        "crash loop: {killed_mid_run}/30 runs killed mid-run, {killed_after_commit} had already committed their snapshot when killed, {:?}",
        started.elapsed()
    );
    assert!(
        killed_mid_run >= 5,
        "only {killed_mid_run} of 30 runs were still running when killed; the tree is too small to test crashes"
    );
}

// ---------------------------------------------------------------------------
// 3. Per-file failure (unreadable files, as an unprivileged user)
// ---------------------------------------------------------------------------

#[test]
fn unreadable_files_are_listed_kept_stale_or_failed_and_picked_up_later() {
    let Some(user) = Unprivileged::get() else {
        return;
    };
    let w = World::new("");
    w.write("keep.txt", "stays readable");
    w.write("secret.txt", "secret v1");
    w.write("grown.txt", "small");
    user.own(&w);
    let v = user.backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let s1 = reported_snapshot(&w, &v);

    // New content, then unreadable. grown.txt also changes size.
    w.write("secret.txt", "secret v2");
    w.write("grown.txt", "grown: this is much longer now");
    w.write("newbie.txt", "never backed up");
    w.write("keep2.txt", "a new readable file");
    user.own(&w);
    for f in ["secret.txt", "grown.txt", "newbie.txt"] {
        set_mode(&w.src.join(f), 0o000);
    }
    let r = user.run(&w, &["backup", "--force", "--json"]);
    expect_code(&r, 3, "backup with unreadable files");
    let v = r.json();
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert_eq!(v["files_failed"], 3, "{v:#}");
    let failed: BTreeMap<String, String> = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for f in ["secret.txt", "grown.txt", "newbie.txt"] {
        let err = failed
            .get(f)
            .unwrap_or_else(|| panic!("{f} not listed in failed: {v:#}"));
        assert!(!err.is_empty(), "{f} listed without an error: {v:#}");
    }
    let s2 = reported_snapshot(&w, &v);
    assert!(
        s2.join(".backup-snapshot/info.json").is_file(),
        "the snapshot with unreadable files was not committed"
    );
    assert_eq!(info(&s2)["status"], "partial");
    assert!(!lock_path(&w).exists(), "lock file left after exit 3");

    for f in ["secret.txt", "grown.txt"] {
        let e = entry(&s2, f).unwrap_or_else(|| panic!("{f} missing from the manifest"));
        assert_eq!(e["status"], "stale", "{f}: {e}");
        assert!(
            e["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{f}: {e}"
        );
        assert_eq!(
            inode(&s2.join(f)),
            inode(&s1.join(f)),
            "{f}: the stale copy is not a hard link to the previous snapshot's"
        );
        // The manifest describes what the snapshot holds: the last good copy.
        let old = entry(&s1, f).unwrap();
        assert_eq!(e["sha256"], old["sha256"], "{f}: {e}");
        assert_eq!(
            e["size"].as_u64(),
            Some(fs::metadata(s2.join(f)).unwrap().len()),
            "{f}: manifest size does not match the stale file it keeps: {e}"
        );
    }
    assert_eq!(fs::read(s2.join("secret.txt")).unwrap(), b"secret v1");
    assert_eq!(fs::read(s2.join("grown.txt")).unwrap(), b"small");
    let e = entry(&s2, "newbie.txt").expect("newbie.txt missing from the manifest");
    assert_eq!(e["status"], "failed", "{e}");
    assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    assert_eq!(
        fs::read(s2.join("keep2.txt")).unwrap(),
        b"a new readable file"
    );
    assert_eq!(
        inode(&s2.join("keep.txt")),
        inode(&s1.join("keep.txt")),
        "an unchanged file was not linked"
    );
    let r = user.run(&w, &["verify", "--all", "--json"]);
    expect_code(&r, 0, "verify --all after a partial snapshot");

    // Readable again: the next run copies the new contents.
    for f in ["secret.txt", "grown.txt", "newbie.txt"] {
        set_mode(&w.src.join(f), 0o644);
    }
    let v = user.backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert_eq!(v["files_failed"], 0, "{v:#}");
    assert!(v["files_copied"].as_u64().unwrap() >= 3, "{v:#}");
    let s3 = reported_snapshot(&w, &v);
    assert_eq!(info(&s3)["status"], "complete");
    for (f, content) in [
        ("secret.txt", &b"secret v2"[..]),
        ("grown.txt", b"grown: this is much longer now"),
        ("newbie.txt", b"never backed up"),
    ] {
        assert_eq!(fs::read(s3.join(f)).unwrap(), content, "{f}");
        let e = entry(&s3, f).unwrap();
        assert!(e.get("status").is_none_or(Value::is_null), "{f}: {e}");
        assert_eq!(e["sha256"], sha256_hex(content), "{f}: {e}");
        if f != "newbie.txt" {
            assert_ne!(inode(&s3.join(f)), inode(&s1.join(f)), "{f}: not copied");
        }
    }
    let r = user.run(&w, &["verify", "--all", "--json"]);
    expect_code(&r, 0, "verify --all");
}

// ---------------------------------------------------------------------------
// 4. Destination full (ENOSPC)
// ---------------------------------------------------------------------------

#[test]
fn destination_full_fails_cleanly_and_touches_nothing() {
    let w = World::new("");
    let Some(_mount) = TmpfsMount::new(&w.dest, "8m") else {
        return;
    };
    let mut rng = Rng::new(99);
    w.write("small.bin", rng.bytes(1 << 20));
    w.write("notes.txt", "fits");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let first = reported_snapshot(&w, &v);
    let names_before = dest_names(&w.dest);
    let image_before = image(&first);
    let meta_before = fs::read(metadata_path(&w)).unwrap();

    // ~20 MiB of incompressible data cannot fit in 8 MiB.
    for i in 0..4 {
        w.write(&format!("big/{i}.bin"), rng.bytes(5 << 20));
    }
    let r = run(&w, &["backup", "--force", "--json"]);
    expect_code(&r, 1, "backup into a full destination");
    let v = r.json();
    assert_eq!(v["outcome"], "failed", "{v:#}");
    let err = v["error"].as_str().unwrap_or("").to_lowercase();
    assert!(
        err.contains("full"),
        "the error does not say the destination is full: {err}"
    );
    assert!(
        err.contains("free space") || err.contains("free up"),
        "the error does not say what to do: {err}"
    );
    assert_eq!(
        leftovers(&w.dest),
        Vec::<String>::new(),
        "partial left behind"
    );
    assert_eq!(dest_names(&w.dest), names_before, "the destination changed");
    assert_eq!(image(&first), image_before, "the earlier snapshot changed");
    assert_eq!(
        fs::read(metadata_path(&w)).unwrap(),
        meta_before,
        "backup_metadata.json changed"
    );
    assert!(!lock_path(&w).exists(), "lock file left after a failed run");
}

// ---------------------------------------------------------------------------
// 5. Destination read-only
// ---------------------------------------------------------------------------

#[test]
fn read_only_destination_fails_with_advice_and_touches_nothing() {
    let w = World::new("");
    let mount = if is_root() {
        match TmpfsMount::new(&w.dest, "64m") {
            Some(m) => Some(m),
            None => return,
        }
    } else {
        None
    };
    w.write("a.txt", "one");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let first = reported_snapshot(&w, &v);
    let image_before = image(&first);
    let names_before = dest_names(&w.dest);
    let meta_before = fs::read(metadata_path(&w)).unwrap();

    match &mount {
        Some(m) => m.remount("ro"),
        None => set_mode(&w.dest, 0o555),
    }
    w.write("a.txt", "two");
    w.write("b.txt", "new");
    let r = run(&w, &["backup", "--force", "--json"]);
    let restore_rw = || match &mount {
        Some(m) => m.remount("rw"),
        None => set_mode(&w.dest, 0o755),
    };
    if r.code != 1 {
        restore_rw();
    }
    expect_code(&r, 1, "backup into a read-only destination");
    let v = r.json();
    assert_eq!(v["outcome"], "failed", "{v:#}");
    let err = v["error"].as_str().unwrap_or("").to_lowercase();
    if mount.is_some() {
        assert!(err.contains("read-only"), "{err}");
        assert!(
            err.contains("remount") || err.contains("another destination"),
            "the error does not say what to do: {err}"
        );
    } else {
        assert!(err.contains("permission"), "{err}");
        assert!(
            err.contains("write access"),
            "the error does not say what to do: {err}"
        );
    }
    assert_eq!(dest_names(&w.dest), names_before, "the destination changed");
    assert_eq!(image(&first), image_before, "the earlier snapshot changed");
    assert_eq!(
        fs::read(metadata_path(&w)).unwrap(),
        meta_before,
        "backup_metadata.json changed"
    );
    assert!(!lock_path(&w).exists(), "lock file left after a failed run");

    // Writable again: the next run works.
    restore_rw();
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let s = reported_snapshot(&w, &v);
    assert_eq!(fs::read(s.join("a.txt")).unwrap(), b"two");
    assert_eq!(fs::read(s.join("b.txt")).unwrap(), b"new");
}

// ---------------------------------------------------------------------------
// 6. Racily clean files
// ---------------------------------------------------------------------------

#[test]
fn racily_clean_same_size_same_mtime_rewrite_is_detected() {
    let w = World::new("");
    w.write("other.txt", "unchanged");
    w.write("racy.txt", "version-1 AAAA");
    let p = w.src.join("racy.txt");
    let old_mtime = filetime::FileTime::from_last_modification_time(&fs::metadata(&p).unwrap());
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let s1 = reported_snapshot(&w, &v);
    assert_eq!(fs::read(s1.join("racy.txt")).unwrap(), b"version-1 AAAA");

    // Same size, and the mtime put back to exactly what was recorded.
    fs::write(&p, "version-2 BBBB").unwrap();
    filetime::set_file_mtime(&p, old_mtime).unwrap();
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&fs::metadata(&p).unwrap()),
        old_mtime
    );
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "the rewrite went unnoticed: {v:#}");
    assert!(v["files_copied"].as_u64().unwrap() >= 1, "{v:#}");
    let s2 = reported_snapshot(&w, &v);
    assert_eq!(fs::read(s2.join("racy.txt")).unwrap(), b"version-2 BBBB");
    let e = entry(&s2, "racy.txt").unwrap();
    assert_eq!(e["sha256"], sha256_hex(b"version-2 BBBB"), "{e}");
    // The earlier snapshot still has the old bytes (not modified in place).
    assert_eq!(fs::read(s1.join("racy.txt")).unwrap(), b"version-1 AAAA");
    verify_all_clean(&w);
}

// ---------------------------------------------------------------------------
// 7. Files changing during the backup
// ---------------------------------------------------------------------------

#[test]
fn file_rewritten_during_backup_is_recorded_consistently() {
    const SIZE: usize = 30 << 20;
    const CHUNK: usize = 1 << 20;
    let w = World::new("");
    w.write("calm.txt", "calm");
    let mut rng = Rng::new(4242);
    w.write("hot.bin", rng.bytes(SIZE));
    let hot = w.src.join("hot.bin");

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes, hot) = (stop.clone(), writes.clone(), hot.clone());
        std::thread::spawn(move || {
            let f = OpenOptions::new().write(true).open(&hot).unwrap();
            let mut k: u64 = 0;
            let mut chunk = vec![0u8; CHUNK];
            while !stop.load(Ordering::Relaxed) {
                chunk.fill((k % 251) as u8);
                let off = (k as usize * 7 % (SIZE / CHUNK)) * CHUNK;
                f.write_all_at(&chunk, off as u64).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                k += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let before = writes.load(Ordering::Relaxed);
    let r = run(&w, &["backup", "--force", "--json"]);
    let during = writes.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(during > 0, "the writer did not run during the backup");
    assert!(
        r.code == 0 || r.code == 3,
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let v = r.json();
    assert_eq!(v["outcome"], "created", "{v:#}");
    let s1 = reported_snapshot(&w, &v);
    let e = entry(&s1, "hot.bin").expect("hot.bin missing from the manifest");
    let in_snapshot = s1.join("hot.bin");
    let actual_len = fs::metadata(&in_snapshot).unwrap().len();
    assert_eq!(
        e["sha256"].as_str(),
        Some(sha256_file(&in_snapshot).as_str()),
        "manifest sha256 is not the SHA-256 of the bytes in the snapshot: {e}"
    );
    assert_eq!(e["size"].as_u64(), Some(actual_len), "{e}");
    match e.get("status").and_then(Value::as_str) {
        None => {}
        Some("changed_during_backup") => {
            assert_eq!(
                e["rehash"], true,
                "changed file not flagged for rehash: {e}"
            )
        }
        Some(other) => panic!("unexpected status {other}: {e}"),
    }
    eprintln!(
        "hot.bin: {during} writes during the run, status {:?}",
        e.get("status")
    );
    verify_all_clean(&w);

    // Quiet now: the next run must hold exactly the final bytes.
    let v = backup(&w, 0);
    assert_eq!(
        v["outcome"], "created",
        "the final state was not backed up: {v:#}"
    );
    let s2 = reported_snapshot(&w, &v);
    let want = sha256_file(&hot);
    assert_eq!(sha256_file(&s2.join("hot.bin")), want);
    let e = entry(&s2, "hot.bin").unwrap();
    assert_eq!(e["sha256"].as_str(), Some(want.as_str()), "{e}");
    assert!(e.get("status").is_none_or(Value::is_null), "{e}");
    verify_all_clean(&w);
}

// ---------------------------------------------------------------------------
// 8. Read-only snapshots, rotation and restore
// ---------------------------------------------------------------------------

#[test]
fn read_only_snapshots_rotate_and_restore() {
    let Some(user) = Unprivileged::get() else {
        return;
    };
    let w = World::new("max_backups = 2");
    w.write("a.txt", "a0");
    w.write("ro_dir/inner.txt", "inner0");
    w.write("ro_dir/sub/deep.txt", "deep");
    set_mode(&w.src.join("ro_dir/sub"), 0o555);
    set_mode(&w.src.join("ro_dir"), 0o555);
    user.own(&w);

    let v = user.backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let s1 = reported_snapshot(&w, &v);
    for f in ["a.txt", "ro_dir/inner.txt", "ro_dir/sub/deep.txt"] {
        let p = s1.join(f);
        assert_eq!(
            mode(&p) & 0o222,
            0,
            "{f} is writable in the snapshot: {:o}",
            mode(&p)
        );
        if user.is_nobody() {
            // As the user who made the snapshot, appending must fail.
            let st = user
                .command(OsStr::new("sh"))
                .arg("-c")
                .arg("printf x >> \"$1\"")
                .arg("sh")
                .arg(&p)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(
                !st.success(),
                "{f}: the owner could append to a snapshot file"
            );
        } else {
            let e = OpenOptions::new().append(true).open(&p).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{f}");
        }
    }
    assert_eq!(fs::read(s1.join("a.txt")).unwrap(), b"a0");
    assert_eq!(mode(&s1.join("ro_dir")), 0o555);

    // Three more snapshots with max_backups = 2: the oldest two go.
    let mut all = vec![s1.file_name().unwrap().to_string_lossy().into_owned()];
    let mut rotated = Vec::new();
    for i in 1..=3 {
        fs::write(w.src.join("a.txt"), format!("a{i}")).unwrap();
        fs::write(w.src.join("ro_dir/inner.txt"), format!("inner{i}")).unwrap();
        let v = user.backup(&w, 0);
        assert_eq!(v["outcome"], "created", "{v:#}");
        assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v:#}");
        all.push(v["snapshot"].as_str().unwrap().to_owned());
        for r in v["rotate"].as_array().unwrap() {
            rotated.push(r.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        rotated,
        all[..2].to_vec(),
        "rotation deleted the wrong snapshots"
    );
    assert_eq!(w.snapshot_names(), all[2..].to_vec());
    assert_eq!(leftovers(&w.dest), Vec::<String>::new());

    // Restore the newest into a fresh folder: contents and modes.
    let to = w.dir.path().join("restored");
    let r = user.run(
        &w,
        &["restore", "latest", "--to", to.to_str().unwrap(), "--json"],
    );
    expect_code(&r, 0, "restore");
    assert_same_tree(&tree_nodes(&w.src, true), &tree_nodes(&to, true), "restore");
    let r = user.run(&w, &["verify", "--all", "--json"]);
    expect_code(&r, 0, "verify --all");
}

// ---------------------------------------------------------------------------
// 9. Odd trees
// ---------------------------------------------------------------------------

fn src_path(w: &World, rel: &[u8]) -> PathBuf {
    w.src.join(OsStr::from_bytes(rel))
}

#[test]
fn odd_names_links_and_special_files_round_trip() {
    let w = World::new("");
    let bytes_file = |rel: &[u8], content: &[u8]| {
        let p = src_path(&w, rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    };
    bytes_file(b"plain.txt", b"hello");
    bytes_file(b"empty.txt", b"");
    bytes_file(b"nested/empty-too", b"");
    fs::create_dir_all(w.src.join("empty_dir")).unwrap();
    bytes_file(b"bad\xff\xfename.txt", b"not utf-8 name");
    bytes_file(b"dir\xc3\x28/inner\x80.bin", b"inside a not utf-8 folder");
    bytes_file(b"line\nbreak.txt", b"newline in the name");
    bytes_file(b"tab\tand space .txt", b"tab");
    bytes_file("unicodé ✓.txt".as_bytes(), b"unicode");
    // A long path: depth 30, names of 100 characters.
    let mut deep = PathBuf::new();
    for i in 0..30 {
        deep.push(format!("{i:02}{}", "x".repeat(98)));
    }
    let deep_file = deep.join("leaf.txt");
    bytes_file(deep_file.as_os_str().as_bytes(), b"deep leaf");
    // Symlinks: a loop, outside the source (absolute and relative), dangling.
    let outside = w.dir.path().join("outside.txt");
    fs::write(&outside, "outside the source").unwrap();
    std::os::unix::fs::symlink("loop_b", w.src.join("loop_a")).unwrap();
    std::os::unix::fs::symlink("loop_a", w.src.join("loop_b")).unwrap();
    std::os::unix::fs::symlink(&outside, w.src.join("outside_abs")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", w.src.join("outside_rel")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", w.src.join("dangling")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"target\xff"), w.src.join("odd_target")).unwrap();
    // Hard-linked files in the source.
    bytes_file(b"hard1.txt", b"two names, one inode");
    fs::hard_link(w.src.join("hard1.txt"), w.src.join("hard2.txt")).unwrap();
    // A sparse file (hole, then data).
    {
        let f = File::create(w.src.join("sparse.img")).unwrap();
        f.set_len(48 << 20).unwrap();
        f.write_all_at(b"end of the sparse file", (40 << 20) + 123)
            .unwrap();
    }
    // A FIFO and a socket: skipped, never blocking.
    let st = Command::new("mkfifo")
        .arg(w.src.join("fifo"))
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo failed");
    let _listener = std::os::unix::net::UnixListener::bind(w.src.join("sock")).unwrap();

    let mut expected = tree_nodes(&w.src, true);
    assert_eq!(expected.remove(&b"fifo"[..]), Some(Node::Special("fifo")));
    assert_eq!(expected.remove(&b"sock"[..]), Some(Node::Special("socket")));

    let r = run_timeout(
        cli(&w, &["backup", "--force", "--json"]),
        Duration::from_secs(120),
    );
    expect_code(&r, 0, "backup of an odd tree");
    let v = r.json();
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert_eq!(v["skipped_special"], 2, "{v:#}");
    assert_eq!(v["files_failed"], 0, "{v:#}");
    let snap = reported_snapshot(&w, &v);
    assert_same_tree(
        &tree_nodes(&w.src, false)
            .into_iter()
            .filter(|(_, n)| !matches!(n, Node::Special(_)))
            .collect(),
        &tree_nodes(&snap, false),
        "snapshot vs source",
    );
    let m = manifest(&snap);
    let bad = m
        .iter()
        .find(|e| entry_path(e) == b"bad\xff\xfename.txt")
        .expect("the non-UTF-8 name is not in the manifest");
    assert!(bad["path"]["hex"].is_string(), "{bad}");
    for special in [&b"fifo"[..], b"sock"] {
        assert!(
            !m.iter().any(|e| entry_path(e) == special),
            "{:?} is in the manifest",
            OsStr::from_bytes(special)
        );
    }
    let sparse = m.iter().find(|e| entry_path(e) == b"sparse.img").unwrap();
    assert_eq!(sparse["size"].as_u64(), Some(48 << 20));
    assert_eq!(
        sparse["sha256"].as_str(),
        Some(sha256_file(&w.src.join("sparse.img")).as_str())
    );
    verify_all_clean(&w);

    // Restore and compare everything, modes included.
    let to = w.dir.path().join("restored");
    let r = run(
        &w,
        &["restore", "latest", "--to", to.to_str().unwrap(), "--json"],
    );
    expect_code(&r, 0, "restore of an odd tree");
    assert_same_tree(&expected, &tree_nodes(&to, true), "restored vs source");

    // Nothing changed: the second run must say so (odd names are stable).
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "no_changes", "{v:#}");
}

#[test]
fn sparse_file_over_4_gib_keeps_its_size_and_content() {
    const SIZE: u64 = (4 << 30) + 4096;
    let w = World::new("");
    {
        let f = File::create(w.src.join("huge.img")).unwrap();
        f.set_len(SIZE).unwrap();
        f.write_all_at(b"tail beyond 4 GiB", SIZE - 100).unwrap();
        f.write_all_at(b"head", 0).unwrap();
    }
    let want = sha256_file(&w.src.join("huge.img"));
    let r = run_timeout(
        cli(&w, &["backup", "--force", "--json"]),
        Duration::from_secs(600),
    );
    expect_code(&r, 0, "backup of a 4 GiB sparse file");
    let v = r.json();
    assert_eq!(v["bytes_total"].as_u64(), Some(SIZE), "{v:#}");
    let snap = reported_snapshot(&w, &v);
    let e = entry(&snap, "huge.img").unwrap();
    assert_eq!(e["size"].as_u64(), Some(SIZE), "{e}");
    assert_eq!(e["sha256"].as_str(), Some(want.as_str()), "{e}");
    let copy = fs::metadata(snap.join("huge.img")).unwrap();
    assert_eq!(copy.len(), SIZE);
    // The snapshot's copy stays sparse: it does not take 4 GiB of disk.
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&copy) * 512 < 64 << 20,
        "snapshot copy uses {} blocks",
        std::os::unix::fs::MetadataExt::blocks(&copy)
    );
    let to = w.dir.path().join("restored");
    let r = run_timeout(
        cli(
            &w,
            &["restore", "latest", "--to", to.to_str().unwrap(), "--json"],
        ),
        Duration::from_secs(600),
    );
    expect_code(&r, 0, "restore of a 4 GiB sparse file");
    assert_eq!(fs::metadata(to.join("huge.img")).unwrap().len(), SIZE);
    assert_eq!(sha256_file(&to.join("huge.img")), want);
}

#[test]
fn hundred_thousand_entries_in_one_directory() {
    const N: usize = 100_000;
    let w = World::new("");
    let dir = w.src.join("many");
    fs::create_dir(&dir).unwrap();
    let t = Instant::now();
    for i in 0..N {
        File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    // A few with content so that not everything is empty.
    for i in (0..N).step_by(10_000) {
        fs::write(dir.join(format!("f{i:06}")), format!("content {i}")).unwrap();
    }
    eprintln!("generated {N} files in {:?}", t.elapsed());
    let t = Instant::now();
    let v = backup(&w, 0);
    eprintln!("first backup of {N} files: {:?}", t.elapsed());
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert_eq!(v["files_total"].as_u64(), Some(N as u64), "{v:#}");
    assert_eq!(v["files_failed"], 0, "{v:#}");
    let snap = reported_snapshot(&w, &v);
    assert_eq!(fs::read_dir(snap.join("many")).unwrap().count(), N);
    assert_eq!(
        fs::read(snap.join("many/f050000")).unwrap(),
        b"content 50000"
    );
    let t = Instant::now();
    let v = backup(&w, 0);
    eprintln!("second backup of {N} files: {:?}", t.elapsed());
    assert_eq!(v["outcome"], "no_changes", "{v:#}");
    assert_eq!(v["files_total"].as_u64(), Some(N as u64), "{v:#}");
    assert_eq!(w.snapshot_names().len(), 1);
}

// ---------------------------------------------------------------------------
// 10. Failures never leave the lock behind
// ---------------------------------------------------------------------------

#[test]
fn destination_that_cannot_be_created_fails_and_leaves_no_lock() {
    let w = World::new("");
    w.write("a.txt", "a");
    let blocker = w.dir.path().join("blocker");
    fs::write(&blocker, "a regular file where a folder should be").unwrap();
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"blocker/dest\"\n",
    )
    .unwrap();
    let r = run(&w, &["backup", "--force", "--json"]);
    expect_code(&r, 1, "backup into a destination under a regular file");
    let v = r.json();
    assert_eq!(v["outcome"], "failed", "{v:#}");
    let err = v["error"].as_str().unwrap_or("");
    assert!(
        err.contains("blocker"),
        "the error does not name the destination: {err}"
    );
    assert!(!lock_path(&w).exists(), "lock file left after a failed run");
    assert!(
        fs::read(&blocker).unwrap() == b"a regular file where a folder should be",
        "the blocking file was changed"
    );
}

#[test]
fn failure_after_commit_still_removes_the_lock() {
    // The metadata file cannot be written (its path is a folder): the run
    // fails late, after the snapshot was written.
    let w = World::new("metadata_file = \"meta_is_a_dir\"");
    fs::create_dir(w.dir.path().join("meta_is_a_dir")).unwrap();
    fs::write(w.dir.path().join("meta_is_a_dir/keep"), "x").unwrap();
    w.write("a.txt", "a");
    let r = run(&w, &["backup", "--force", "--json"]);
    // The snapshot was committed before the metadata failed: that is not a
    // rolled-back failure but a created snapshot with a warning.
    expect_code(&r, 0, "metadata write fails after commit");
    let v = r.json();
    assert_eq!(v["outcome"], "created", "{v:#}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("meta_is_a_dir"), "{v:#}");
    assert!(!lock_path(&w).exists(), "lock file left after the run");
    assert_eq!(leftovers(&w.dest), Vec::<String>::new());
    // And a following run with a sane profile works.
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"dest\"\n",
    )
    .unwrap();
    let v = backup(&w, 0);
    assert!(
        v["outcome"] == "created" || v["outcome"] == "no_changes",
        "{v:#}"
    );
    assert!(!lock_path(&w).exists());
}
