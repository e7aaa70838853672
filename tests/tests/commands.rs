//! End-to-end tests of the subcommands: restore (whole, partial, target
//! rules, snapshot selection, tampered manifests, SHA-256 checks), verify,
//! diff, list, status, init, output discipline (--json, --quiet, progress)
//! and the operations log. Every test drives the real `backup-cli` binary
//! on temporary trees.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unsafe_code // openpty, for the one test that needs a terminal on stderr
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backup_tests::{binary, mode, Run, World};
use filetime::FileTime;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One entry of a tree, with everything a restore must reproduce.
#[derive(Clone, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
        mtime_ns: i128,
    },
    File {
        content: Vec<u8>,
        mode: u32,
        mtime_ns: i128,
    },
    Link {
        target: PathBuf,
        mtime_ns: i128,
    },
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Dir { mode, mtime_ns } => write!(f, "dir mode {mode:o} mtime_ns {mtime_ns}"),
            Node::File {
                content,
                mode,
                mtime_ns,
            } => {
                let head: Vec<u8> = content.iter().take(24).copied().collect();
                write!(
                    f,
                    "file {} bytes {:?}… mode {mode:o} mtime_ns {mtime_ns}",
                    content.len(),
                    String::from_utf8_lossy(&head)
                )
            }
            Node::Link { target, mtime_ns } => {
                write!(f, "symlink -> {} mtime_ns {mtime_ns}", target.display())
            }
        }
    }
}

type Tree = BTreeMap<String, Node>;

fn mtime_ns(m: &fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// Every entry below `root` (relative paths), skipping the snapshot state
/// folder and the tool's state files at the root.
fn full_tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    collect(root, root, &mut out, true);
    out
}

/// Every entry below a restore target, skipping nothing: a restore must not
/// bring back the snapshot's state folder or the tool's state files.
fn restored_tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    collect(root, root, &mut out, false);
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Tree, skip_state: bool) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if skip_state
            && dir == root
            && (rel == ".backup-snapshot"
                || rel.starts_with("backup_metadata.json")
                || rel.starts_with("backup_operations.log")
                || rel == "backup_in_progress.lock")
        {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let node = if m.file_type().is_symlink() {
            Node::Link {
                target: fs::read_link(&p).unwrap(),
                mtime_ns: mtime_ns(&m),
            }
        } else if m.is_dir() {
            collect(root, &p, out, skip_state);
            Node::Dir {
                mode: m.permissions().mode() & 0o7777,
                mtime_ns: mtime_ns(&m),
            }
        } else {
            Node::File {
                content: fs::read(&p).unwrap(),
                mode: m.permissions().mode() & 0o7777,
                mtime_ns: mtime_ns(&m),
            }
        };
        out.insert(rel, node);
    }
}

fn assert_trees_equal(expected: &Tree, actual: &Tree, what: &str) {
    let mut problems = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => problems.push(format!("missing {k}: expected {v:?}")),
            Some(a) if a != v => problems.push(format!("{k}: expected {v:?}, got {a:?}")),
            Some(_) => {}
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            problems.push(format!("unexpected {k}: {v:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} difference(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

fn count_files(t: &Tree) -> u64 {
    t.values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count() as u64
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

/// Writes a source file with an exact mode and mtime (seconds + nanos).
fn put(w: &World, rel: &str, content: impl AsRef<[u8]>, m: u32, secs: i64, nanos: u32) {
    let p = w.src.join(rel);
    if p.exists() {
        chmod(&p, 0o644);
    }
    w.write(rel, content);
    chmod(&p, m);
    filetime::set_file_mtime(&p, FileTime::from_unix_time(secs, nanos)).unwrap();
}

fn set_dir_mtime(p: &Path, secs: i64, nanos: u32) {
    filetime::set_file_mtime(p, FileTime::from_unix_time(secs, nanos)).unwrap();
}

fn set_link_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// Flips one byte of a (read-only) snapshot file in place; the size stays.
fn flip_byte(p: &Path, at: u64) {
    chmod(p, 0o644);
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    chmod(p, 0o444);
}

/// stdout parsed as exactly one JSON document.
fn single_json(r: &Run) -> Value {
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&r.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "stdout is not a JSON stream ({e}):\n{}\nstderr:\n{}",
                r.stdout, r.stderr
            )
        });
    assert_eq!(
        docs.len(),
        1,
        "stdout must hold exactly one JSON document:\n{}",
        r.stdout
    );
    docs.into_iter().next().unwrap()
}

fn assert_code(r: &Run, code: i32, what: &str) {
    assert_eq!(
        r.code, code,
        "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
}

/// `backup --force --json`, asserting exit 0 and outcome `created`;
/// returns the snapshot name and the report.
fn backup_created(w: &World) -> (String, Value) {
    let report = w.backup(0);
    assert_eq!(report["outcome"], "created", "{report:#}");
    let name = report["snapshot"].as_str().unwrap().to_string();
    assert!(w.snapshot(&name).is_dir(), "{name} is not a folder");
    (name, report)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn sv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// `[{snapshot, path}]` as pairs.
fn snapshot_paths(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|o| {
            (
                o["snapshot"].as_str().unwrap().to_string(),
                o["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Sleeps past the next minute boundary when fewer than `margin` seconds
/// remain in this one (snapshot names carry the minute; "today" too).
fn avoid_minute_boundary(margin: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.as_secs() % 60;
    if into + margin >= 60 {
        let wait = Duration::from_secs(60 - into) - Duration::from_nanos(now.subsec_nanos() as u64)
            + Duration::from_millis(150);
        std::thread::sleep(wait);
    }
}

/// Whether `s` is an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(99);
    let date_ok = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_ok
        || !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    let rest = &b[i..];
    match rest {
        b"Z" | b"z" => true,
        [sign, h1, h2, b':', m1, m2] => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// Runs the binary without `--profile`.
fn run_bare(args: &[&std::ffi::OsStr]) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    cmd.env_remove("RUST_LOG");
    cmd.output().expect("run backup-cli").into()
}

fn manifest_path(snapshot: &Path) -> PathBuf {
    snapshot.join(".backup-snapshot").join("manifest.jsonl")
}

/// Rewrites the `path` of the manifest line whose path is `from`.
fn tamper_manifest_path(snapshot: &Path, original: &str, from: &str, to: &str) {
    let mut found = false;
    let lines: Vec<String> = original
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                return l.to_string();
            }
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["path"] == from {
                found = true;
                v["path"] = Value::String(to.to_string());
            }
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    assert!(found, "no manifest line for {from}");
    let p = manifest_path(snapshot);
    chmod(&p, 0o644);
    fs::write(&p, lines.join("\n") + "\n").unwrap();
}

/// A tree of files touching every kind of entry and mode.
fn build_rich_source(w: &World) {
    put(w, "a.txt", "alpha\n", 0o644, 1_600_000_000, 123_456_789);
    put(
        w,
        "script.sh",
        "#!/bin/sh\necho hello\n",
        0o755,
        1_600_000_100,
        5,
    );
    put(w, "secret.key", b"TOPSECRET-0001", 0o600, 1_600_000_200, 0);
    let bin: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    put(w, "sub/b.bin", &bin, 0o644, 1_600_000_300, 999_999_999);
    put(w, "sub/dir/f.txt", "deep file\n", 0o640, 1_600_000_400, 1);
    fs::create_dir(w.src.join("empty")).unwrap();
    chmod(&w.src.join("empty"), 0o750);
    set_dir_mtime(&w.src.join("empty"), 1_500_000_000, 42);
    symlink("a.txt", w.src.join("link")).unwrap();
    set_link_mtime(&w.src.join("link"), 1_550_000_000, 7);
    symlink("does/not/exist", w.src.join("dangling")).unwrap();
    chmod(&w.src.join("sub/dir"), 0o700);
    set_dir_mtime(&w.src.join("sub/dir"), 1_500_000_100, 0);
    set_dir_mtime(&w.src.join("sub"), 1_500_000_200, 0);
}

fn restore_json(w: &World, snapshot: &str, to: &Path, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["restore", snapshot, "--to", to.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let r = w.run(&args);
    let v = if r.stdout.trim().is_empty() {
        Value::Null
    } else {
        single_json(&r)
    };
    (r, v)
}

// ---------------------------------------------------------------------------
// 1. Restore of every snapshot after changes and rotation
// ---------------------------------------------------------------------------

#[test]
fn restore_of_every_kept_snapshot_equals_the_source_at_its_time() {
    let w = World::new("max_backups = 3");
    let mut expected: BTreeMap<String, Tree> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut reports: Vec<Value> = Vec::new();
    let mut step = |w: &World| {
        let tree = full_tree(&w.src);
        let (name, report) = backup_created(w);
        assert_eq!(full_tree(&w.src), tree, "the backup changed the source");
        expected.insert(name.clone(), tree);
        names.push(name);
        reports.push(report);
    };

    // Run 1: files, a 0o755 script, a 0o600 file, symlinks, an empty folder.
    build_rich_source(&w);
    step(&w);

    // Run 2: content change, addition, mode-only change, deletion.
    put(
        &w,
        "a.txt",
        "alpha, second version\n",
        0o644,
        1_600_001_000,
        0,
    );
    put(&w, "new.txt", "brand new\n", 0o644, 1_600_001_100, 77);
    chmod(&w.src.join("secret.key"), 0o640);
    fs::remove_file(w.src.join("sub/b.bin")).unwrap();
    step(&w);

    // Run 3: symlink retargeted, empty folder replaced, script content changed.
    fs::remove_file(w.src.join("link")).unwrap();
    symlink("new.txt", w.src.join("link")).unwrap();
    set_link_mtime(&w.src.join("link"), 1_550_000_500, 0);
    fs::remove_dir(w.src.join("empty")).unwrap();
    fs::create_dir(w.src.join("empty2")).unwrap();
    chmod(&w.src.join("empty2"), 0o700);
    put(
        &w,
        "script.sh",
        "#!/bin/sh\necho hello again\n",
        0o755,
        1_600_002_000,
        0,
    );
    step(&w);

    // Run 4: rename, deletion, deeper addition, same-size same-mtime rewrite.
    fs::create_dir(w.src.join("moved")).unwrap();
    fs::rename(w.src.join("new.txt"), w.src.join("moved/renamed.txt")).unwrap();
    fs::remove_file(w.src.join("a.txt")).unwrap();
    put(
        &w,
        "sub/dir/deep/x.txt",
        "x marks\n",
        0o600,
        1_600_003_000,
        3,
    );
    let secret = w.src.join("secret.key");
    let old_mtime = FileTime::from_last_modification_time(&fs::metadata(&secret).unwrap());
    put(&w, "secret.key", b"TOPSECRET-0002", 0o640, 0, 0);
    filetime::set_file_mtime(&secret, old_mtime).unwrap();
    step(&w);

    // Run 5: mode change on the script, truncation, names with spaces, re-added path.
    chmod(&w.src.join("script.sh"), 0o700);
    put(&w, "sub/dir/f.txt", "", 0o640, 1_600_004_000, 0);
    put(
        &w,
        "name with space.txt",
        "spaced out\n",
        0o644,
        1_600_004_100,
        0,
    );
    put(&w, "a.txt", "alpha\n", 0o644, 1_600_004_200, 0);
    step(&w);

    // Rotation: the two oldest are gone, reported by the runs that deleted them.
    assert_eq!(strings(&reports[3]["rotate"]), vec![names[0].clone()]);
    assert_eq!(strings(&reports[4]["rotate"]), vec![names[1].clone()]);
    // (Only three snapshot folders are left; a rotated name may have been
    // given to a later snapshot, which snapshot_names_are_not_reused_after_rotation
    // checks.)
    let mut left = w.snapshot_names();
    left.sort();
    let mut want = names[2..].to_vec();
    want.sort();
    assert_eq!(left, want, "snapshot folders after rotation");
    let list = w.run(&["list", "--json"]);
    assert_code(&list, 0, "list");
    let listed: Vec<String> = single_json(&list)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, names[2..].to_vec());

    for name in &names[2..] {
        let to = w.dir.path().join(format!("restore-{name}"));
        let (r, v) = restore_json(&w, name, &to, &[]);
        assert_code(&r, 0, &format!("restore {name}"));
        assert_eq!(v["snapshot"], name.as_str());
        assert_eq!(v["mismatches"], Value::Array(vec![]), "{v:#}");
        assert_eq!(v["errors"], Value::Array(vec![]), "{v:#}");
        let exp = &expected[name];
        assert_eq!(v["files_restored"], count_files(exp), "{v:#}");
        assert_trees_equal(exp, &restored_tree(&to), &format!("restore of {name}"));
    }
}

#[test]
fn snapshot_names_are_not_reused_after_rotation() {
    // Three runs within one minute with max_backups = 1: the first name is
    // rotated away by the second run, and the third must not take it again
    // (a name that once meant one snapshot must never mean another, and
    // names must sort in creation order).
    avoid_minute_boundary(5);
    let w = World::new("max_backups = 1");
    let mut names = Vec::new();
    for i in 0..3 {
        put(
            &w,
            &format!("f{i}.txt"),
            format!("{i}\n"),
            0o644,
            1_600_000_000,
            0,
        );
        names.push(backup_created(&w).0);
    }
    let distinct: BTreeSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 3, "a snapshot name was reused: {names:?}");
    let mut by_name = names.clone();
    by_name.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    assert_eq!(by_name, names, "name order differs from creation order");
}

// ---------------------------------------------------------------------------
// 2. Partial restore
// ---------------------------------------------------------------------------

#[test]
fn partial_restore_writes_only_the_requested_paths() {
    let w = World::new("");
    put(&w, "file.txt", "top file\n", 0o600, 1_600_000_000, 0);
    put(&w, "other.txt", "not wanted\n", 0o644, 1_600_000_000, 0);
    put(&w, "sub/dir/x.txt", "x\n", 0o755, 1_600_000_001, 0);
    put(&w, "sub/dir/deeper/y.txt", "y\n", 0o644, 1_600_000_002, 0);
    put(&w, "sub/sibling.txt", "sibling\n", 0o644, 1_600_000_003, 0);
    put(
        &w,
        "sub/dir2/z.txt",
        "prefix twin\n",
        0o644,
        1_600_000_004,
        0,
    );
    put(&w, "sub/dirx.txt", "prefix file\n", 0o644, 1_600_000_005, 0);
    fs::create_dir(w.src.join("sub/dir/empty")).unwrap();
    set_dir_mtime(&w.src.join("sub/dir/empty"), 1_500_000_000, 0);
    set_dir_mtime(&w.src.join("sub/dir/deeper"), 1_500_000_001, 0);
    set_dir_mtime(&w.src.join("sub/dir"), 1_500_000_002, 0);
    let source = full_tree(&w.src);
    backup_created(&w);

    let to = w.dir.path().join("partial");
    let (r, v) = restore_json(
        &w,
        "latest",
        &to,
        &["--path", "sub/dir", "--path", "file.txt"],
    );
    assert_code(&r, 0, "partial restore");
    assert_eq!(v["files_restored"], 3, "{v:#}");
    let got = restored_tree(&to);
    let got_paths: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        got_paths,
        vec![
            "file.txt",
            "sub",
            "sub/dir",
            "sub/dir/deeper",
            "sub/dir/deeper/y.txt",
            "sub/dir/empty",
            "sub/dir/x.txt",
        ]
    );
    assert!(matches!(got["sub"], Node::Dir { .. }));
    for (k, node) in &got {
        if k != "sub" {
            assert_eq!(node, &source[k], "{k}");
        }
    }

    // A path the snapshot does not hold is a usage error, and writes nothing.
    let to2 = w.dir.path().join("partial2");
    let (r, _) = restore_json(&w, "latest", &to2, &["--path", "nope.txt"]);
    assert_code(&r, 2, "restore of a missing path");
    assert!(!to2.join("nope.txt").exists());
}

// ---------------------------------------------------------------------------
// 3. Target rules and snapshot selection
// ---------------------------------------------------------------------------

#[test]
fn restore_target_rules_and_snapshot_selection() {
    avoid_minute_boundary(5);
    let w = World::new("");
    put(&w, "v.txt", "one\n", 0o644, 1_600_000_000, 0);
    let (a, _) = backup_created(&w);
    put(&w, "v.txt", "two two\n", 0o640, 1_600_000_100, 0);
    put(&w, "extra.txt", "extra\n", 0o644, 1_600_000_100, 0);
    let (b, _) = backup_created(&w);
    assert_ne!(a, b);

    // A missing target (and its parents) is created.
    let fresh = w.dir.path().join("missing/nested/dir");
    let (r, v) = restore_json(&w, "latest", &fresh, &[]);
    assert_code(&r, 0, "restore into a missing folder");
    assert_eq!(v["snapshot"], b.as_str());
    assert_eq!(fs::read(fresh.join("v.txt")).unwrap(), b"two two\n");
    assert_eq!(fs::read(fresh.join("extra.txt")).unwrap(), b"extra\n");

    // A non-empty target is refused without --overwrite and left alone.
    let busy = w.dir.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep.txt"), "mine\n").unwrap();
    fs::write(busy.join("v.txt"), "local\n").unwrap();
    let before = restored_tree(&busy);
    let (r, _) = restore_json(&w, "latest", &busy, &[]);
    assert_code(&r, 2, "restore into a non-empty folder");
    assert_trees_equal(&before, &restored_tree(&busy), "refused target");

    // With --overwrite the snapshot's files replace the folder's.
    let (r, v) = restore_json(&w, "latest", &busy, &["--overwrite"]);
    assert_code(&r, 0, "restore --overwrite");
    assert_eq!(v["errors"], Value::Array(vec![]));
    assert_eq!(fs::read(busy.join("v.txt")).unwrap(), b"two two\n");
    assert_eq!(mode(&busy.join("v.txt")), 0o640);
    assert_eq!(fs::read(busy.join("extra.txt")).unwrap(), b"extra\n");

    // Exact name of the older snapshot.
    let by_name = w.dir.path().join("by-name");
    let (r, v) = restore_json(&w, &a, &by_name, &[]);
    assert_code(&r, 0, "restore by exact name");
    assert_eq!(v["snapshot"], a.as_str());
    assert_eq!(fs::read(by_name.join("v.txt")).unwrap(), b"one\n");
    assert!(!by_name.join("extra.txt").exists());

    // A unique (proper) prefix of the newer one.
    let prefix = (1..b.len())
        .map(|n| &b[..n])
        .find(|p| !a.starts_with(p))
        .expect("a proper prefix of the newer name that the older lacks");
    let by_prefix = w.dir.path().join("by-prefix");
    let (r, v) = restore_json(&w, prefix, &by_prefix, &[]);
    assert_code(&r, 0, &format!("restore by prefix {prefix}"));
    assert_eq!(v["snapshot"], b.as_str());
    assert_eq!(fs::read(by_prefix.join("v.txt")).unwrap(), b"two two\n");

    // Unknown and ambiguous names are usage errors and write nothing.
    for spec in [
        "Proj_backup_1999-01-01_00-00",
        "nothing-like-it",
        "Proj_backup_",
    ] {
        let to = w.dir.path().join("never");
        let (r, _) = restore_json(&w, spec, &to, &[]);
        assert_code(&r, 2, &format!("restore {spec}"));
        assert!(!to.exists(), "restore {spec} created {}", to.display());
    }
}

// ---------------------------------------------------------------------------
// 4. Tampered manifest paths
// ---------------------------------------------------------------------------

#[test]
fn restore_refuses_manifest_paths_that_escape_the_target() {
    let w = World::new("");
    put(&w, "a.txt", "payload\n", 0o644, 1_600_000_000, 0);
    put(&w, "sub/b.txt", "bee\n", 0o644, 1_600_000_000, 0);
    let (name, _) = backup_created(&w);
    let snap = w.snapshot(&name);
    let original = fs::read_to_string(manifest_path(&snap)).unwrap();

    let root = w.dir.path();
    let abs_escape = root.join("abs_escape.txt");
    let cases: Vec<(String, PathBuf)> = vec![
        ("../escape.txt".into(), root.join("escape.txt")),
        ("sub/../../escape2.txt".into(), root.join("escape2.txt")),
        (abs_escape.to_str().unwrap().into(), abs_escape.clone()),
    ];
    for (i, (evil, landing)) in cases.iter().enumerate() {
        tamper_manifest_path(&snap, &original, "a.txt", evil);
        let to = root.join(format!("out{i}"));
        let r = w.run(&["restore", "latest", "--to", to.to_str().unwrap(), "--json"]);
        assert_ne!(
            r.code, 0,
            "restore with manifest path {evil} succeeded\nstdout:\n{}",
            r.stdout
        );
        assert!(
            !landing.exists(),
            "restore with manifest path {evil} wrote {}",
            landing.display()
        );
        // Also via a partial restore of the other path.
        let to = root.join(format!("outp{i}"));
        let r = w.run(&[
            "restore",
            "latest",
            "--to",
            to.to_str().unwrap(),
            "--path",
            "sub",
        ]);
        assert_ne!(r.code, 0, "partial restore with manifest path {evil}");
        assert!(!landing.exists());
    }
    let mut left: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("out"))
        .collect();
    left.sort();
    assert_eq!(left, sv(&["dest", "profile.toml", "src"]));
}

// ---------------------------------------------------------------------------
// 5. Restore checks SHA-256
// ---------------------------------------------------------------------------

#[test]
fn restore_reports_a_flipped_byte_as_a_mismatch() {
    let w = World::new("");
    put(&w, "good.txt", "good content\n", 0o644, 1_600_000_000, 0);
    let bad: Vec<u8> = (0..200u8).collect();
    put(&w, "dir/bad.bin", &bad, 0o644, 1_600_000_000, 0);
    let (name, _) = backup_created(&w);
    flip_byte(&w.snapshot(&name).join("dir/bad.bin"), 10);

    let to = w.dir.path().join("out");
    let (r, v) = restore_json(&w, "latest", &to, &[]);
    assert_code(&r, 1, "restore of a corrupted snapshot");
    let mism = v["mismatches"].as_array().unwrap();
    assert_eq!(mism.len(), 1, "{v:#}");
    assert_eq!(mism[0]["path"], "dir/bad.bin");
    assert!(mism[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(v["errors"], Value::Array(vec![]));
    assert_eq!(fs::read(to.join("good.txt")).unwrap(), b"good content\n");
}

// ---------------------------------------------------------------------------
// 6. Verify
// ---------------------------------------------------------------------------

#[test]
fn verify_finds_corrupt_missing_and_unexpected_files() {
    let w = World::new("");
    put(&w, "keep.txt", "keep\n", 0o644, 1_600_000_000, 0);
    put(
        &w,
        "corrupt.txt",
        "will be damaged\n",
        0o644,
        1_600_000_000,
        0,
    );
    put(&w, "gone.txt", "will vanish\n", 0o644, 1_600_000_000, 0);
    put(&w, "sub/also.txt", "also\n", 0o644, 1_600_000_000, 0);
    symlink("keep.txt", w.src.join("ln")).unwrap();
    let total_bytes = (5 + 16 + 12 + 5) as u64;
    let (name, _) = backup_created(&w);

    let r = w.run(&["verify", "--json"]);
    assert_code(&r, 0, "verify of a clean snapshot");
    let v = single_json(&r);
    for k in [
        "snapshots_checked",
        "files_checked",
        "bytes_checked",
        "corrupt",
        "missing",
        "unexpected",
    ] {
        assert!(v.get(k).is_some(), "verify JSON lacks {k}: {v:#}");
    }
    assert_eq!(v["snapshots_checked"], 1);
    assert_eq!(v["files_checked"], 4);
    assert_eq!(v["bytes_checked"], total_bytes);
    for k in ["corrupt", "missing", "unexpected"] {
        assert_eq!(v[k], Value::Array(vec![]), "{k}: {v:#}");
    }

    let snap = w.snapshot(&name);
    flip_byte(&snap.join("corrupt.txt"), 3);
    fs::remove_file(snap.join("gone.txt")).unwrap();
    chmod(&snap.join("sub"), 0o755);
    fs::write(snap.join("sub/intruder.txt"), "who am I\n").unwrap();

    for args in [
        vec!["verify", "--json"],
        vec!["verify", name.as_str(), "--json"],
    ] {
        let r = w.run(&args);
        assert_code(&r, 1, &format!("{args:?} of a damaged snapshot"));
        let v = single_json(&r);
        assert_eq!(v["snapshots_checked"], 1);
        assert_eq!(
            snapshot_paths(&v["corrupt"]),
            vec![(name.clone(), "corrupt.txt".to_string())],
            "{v:#}"
        );
        assert_eq!(
            snapshot_paths(&v["missing"]),
            vec![(name.clone(), "gone.txt".to_string())],
            "{v:#}"
        );
        assert_eq!(
            snapshot_paths(&v["unexpected"]),
            vec![(name.clone(), "sub/intruder.txt".to_string())],
            "{v:#}"
        );
    }
}

#[test]
fn verify_all_checks_every_snapshot() {
    let w = World::new("");
    put(&w, "same.txt", "same in both\n", 0o644, 1_600_000_000, 0);
    put(&w, "changes.txt", "version one\n", 0o644, 1_600_000_000, 0);
    let (a, _) = backup_created(&w);
    put(&w, "changes.txt", "version two!\n", 0o644, 1_600_000_100, 0);
    let (b, _) = backup_created(&w);
    // The older snapshot's own copy (not shared with the newer one).
    assert_ne!(
        backup_tests::inode(&w.snapshot(&a).join("changes.txt")),
        backup_tests::inode(&w.snapshot(&b).join("changes.txt"))
    );
    flip_byte(&w.snapshot(&a).join("changes.txt"), 0);

    let r = w.run(&["verify", "--json"]);
    assert_code(&r, 0, "verify of the (clean) latest snapshot");
    assert_eq!(single_json(&r)["snapshots_checked"], 1);

    let r = w.run(&["verify", "--all", "--json"]);
    assert_code(&r, 1, "verify --all");
    let v = single_json(&r);
    assert_eq!(v["snapshots_checked"], 2);
    assert_eq!(v["files_checked"], 4);
    assert_eq!(
        snapshot_paths(&v["corrupt"]),
        vec![(a.clone(), "changes.txt".to_string())]
    );
    assert_eq!(v["missing"], Value::Array(vec![]));
    assert_eq!(v["unexpected"], Value::Array(vec![]));

    let r = w.run(&["verify", a.as_str(), "--json"]);
    assert_code(&r, 1, "verify of the older snapshot");
}

// ---------------------------------------------------------------------------
// 7. Diff
// ---------------------------------------------------------------------------

#[test]
fn diff_lists_added_changed_and_removed_files_but_not_folders() {
    let w = World::new("");
    put(&w, "a.txt", "a1\n", 0o644, 1_600_000_000, 0);
    put(&w, "mode.txt", "mode\n", 0o644, 1_600_000_000, 0);
    put(&w, "gone.txt", "gone\n", 0o644, 1_600_000_000, 0);
    put(&w, "d/e.txt", "e\n", 0o644, 1_600_000_000, 0);
    put(&w, "keepdir/k.txt", "k\n", 0o644, 1_600_000_000, 0);
    put(&w, "same.txt", "same\n", 0o644, 1_600_000_000, 0);
    fs::create_dir(w.src.join("emptydir")).unwrap();
    symlink("a.txt", w.src.join("link")).unwrap();
    let (a, _) = backup_created(&w);

    put(&w, "a.txt", "a2 is longer\n", 0o644, 1_600_000_100, 0);
    chmod(&w.src.join("mode.txt"), 0o755);
    fs::remove_file(w.src.join("gone.txt")).unwrap();
    fs::remove_dir_all(w.src.join("d")).unwrap();
    fs::remove_file(w.src.join("link")).unwrap();
    symlink("mode.txt", w.src.join("link")).unwrap();
    put(&w, "new.txt", "new\n", 0o644, 1_600_000_100, 0);
    put(&w, "newdir/inner/n.txt", "n\n", 0o644, 1_600_000_100, 0);
    fs::create_dir(w.src.join("newempty")).unwrap();
    fs::remove_dir(w.src.join("emptydir")).unwrap();
    let (b, _) = backup_created(&w);

    let r = w.run(&["diff", a.as_str(), b.as_str(), "--json"]);
    assert_code(&r, 0, "diff A B");
    let v = single_json(&r);
    assert_eq!(
        keys(&v),
        ["added", "changed", "removed"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(strings(&v["added"]), sv(&["new.txt", "newdir/inner/n.txt"]));
    assert_eq!(strings(&v["changed"]), sv(&["a.txt", "link", "mode.txt"]));
    assert_eq!(strings(&v["removed"]), sv(&["d/e.txt", "gone.txt"]));

    // Latest snapshot against the source now.
    put(&w, "new.txt", "new, edited\n", 0o644, 1_600_000_200, 0);
    fs::remove_file(w.src.join("keepdir/k.txt")).unwrap();
    put(&w, "later.txt", "later\n", 0o644, 1_600_000_200, 0);
    fs::create_dir(w.src.join("another_empty")).unwrap();
    // Only the mtime of same.txt changes: not a change of content or mode.
    backup_tests::set_mtime(&w.src.join("same.txt"), 1_700_000_000);
    let r = w.run(&["diff", "--json"]);
    assert_code(&r, 0, "diff against the source");
    let v = single_json(&r);
    assert_eq!(strings(&v["added"]), sv(&["later.txt"]), "{v:#}");
    assert_eq!(strings(&v["changed"]), sv(&["new.txt"]), "{v:#}");
    assert_eq!(strings(&v["removed"]), sv(&["keepdir/k.txt"]), "{v:#}");

    // `diff A` alone compares A with the source now.
    let r = w.run(&["diff", a.as_str(), "--json"]);
    assert_code(&r, 0, "diff A");
    let v = single_json(&r);
    assert_eq!(
        strings(&v["added"]),
        sv(&["later.txt", "new.txt", "newdir/inner/n.txt"]),
        "{v:#}"
    );
    assert_eq!(strings(&v["changed"]), sv(&["a.txt", "link", "mode.txt"]));
    assert_eq!(
        strings(&v["removed"]),
        sv(&["d/e.txt", "gone.txt", "keepdir/k.txt"])
    );
}

// ---------------------------------------------------------------------------
// 8. Everything but backup works without the source
// ---------------------------------------------------------------------------

#[test]
fn read_commands_work_after_the_source_folder_is_deleted() {
    let w = World::new("");
    build_rich_source(&w);
    let tree_a = full_tree(&w.src);
    let (a, _) = backup_created(&w);
    put(&w, "a.txt", "changed\n", 0o644, 1_600_009_000, 0);
    put(&w, "added.txt", "added\n", 0o600, 1_600_009_000, 0);
    fs::remove_file(w.src.join("secret.key")).unwrap();
    let tree_b = full_tree(&w.src);
    let (b, _) = backup_created(&w);
    assert!(w.src.join("backup_metadata.json").exists());

    fs::remove_dir_all(&w.src).unwrap();
    assert!(!w.src.exists());

    let r = w.run(&["list", "--json"]);
    assert_code(&r, 0, "list without source");
    let names: Vec<String> = single_json(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![a.clone(), b.clone()]);

    let out = w.dir.path().join("restored-latest");
    let (r, _) = restore_json(&w, "latest", &out, &[]);
    assert_code(&r, 0, "restore latest without source");
    assert_trees_equal(
        &tree_b,
        &restored_tree(&out),
        "restore latest without source",
    );
    let out = w.dir.path().join("restored-a");
    let (r, _) = restore_json(&w, &a, &out, &[]);
    assert_code(&r, 0, "restore A without source");
    assert_trees_equal(&tree_a, &restored_tree(&out), "restore A without source");

    let r = w.run(&["verify", "--json"]);
    assert_code(&r, 0, "verify without source");
    let r = w.run(&["verify", "--all", "--json"]);
    assert_code(&r, 0, "verify --all without source");
    assert_eq!(single_json(&r)["snapshots_checked"], 2);

    let r = w.run(&["diff", a.as_str(), b.as_str(), "--json"]);
    assert_code(&r, 0, "diff A B without source");
    let v = single_json(&r);
    assert_eq!(strings(&v["added"]), sv(&["added.txt"]));
    assert_eq!(strings(&v["changed"]), sv(&["a.txt"]));
    assert_eq!(strings(&v["removed"]), sv(&["secret.key"]));

    let r = w.run(&["status", "--json"]);
    assert_code(&r, 0, "status without source");
    let v = single_json(&r);
    assert_eq!(v["last_snapshot"], b.as_str());
    assert_eq!(v["snapshots"], 2);

    // The source stays deleted: no read command recreates it.
    assert!(!w.src.exists(), "a read-only command recreated the source");
}

// ---------------------------------------------------------------------------
// 9. list and status JSON
// ---------------------------------------------------------------------------

#[test]
fn list_and_status_json_describe_the_snapshots() {
    avoid_minute_boundary(5);
    let w = World::new("max_backups = 7\nonce_per_day = true");

    let r = w.run(&["status", "--json"]);
    assert_code(&r, 0, "status before any backup");
    let v = single_json(&r);
    assert_eq!(v["last_snapshot"], Value::Null);
    assert_eq!(v["backup_due"], true);
    assert_eq!(v["snapshots"], 0);
    let r = w.run(&["list", "--json"]);
    assert_code(&r, 0, "list before any backup");
    assert_eq!(single_json(&r), Value::Array(vec![]));

    put(&w, "one.txt", "1\n", 0o644, 1_600_000_000, 0);
    put(&w, "two.txt", "22\n", 0o644, 1_600_000_000, 0);
    let r = w.run(&["backup", "--json"]);
    assert_code(&r, 0, "first backup");
    let rep_a = single_json(&r);
    assert_eq!(rep_a["outcome"], "created");
    put(&w, "three.txt", "333\n", 0o644, 1_600_000_000, 0);
    // once_per_day: a second plain run today is skipped…
    let r = w.run(&["backup", "--json"]);
    assert_code(&r, 0, "second backup today");
    assert_eq!(single_json(&r)["outcome"], "skipped_not_due");
    // …and --force overrides.
    let (b, rep_b) = backup_created(&w);
    let a = rep_a["snapshot"].as_str().unwrap().to_string();

    let r = w.run(&["list", "--json"]);
    assert_code(&r, 0, "list");
    let v = single_json(&r);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v:#}");
    let want_keys: BTreeSet<String> = [
        "name",
        "path",
        "created",
        "files_total",
        "files_copied",
        "bytes_copied",
        "status",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (row, (name, rep)) in rows.iter().zip([(&a, &rep_a), (&b, &rep_b)]) {
        assert!(
            keys(row).is_superset(&want_keys),
            "list row lacks keys: {row:#}"
        );
        assert_eq!(row["name"], name.as_str());
        assert_eq!(
            PathBuf::from(row["path"].as_str().unwrap()),
            w.snapshot(name),
            "{row:#}"
        );
        let created = row["created"].as_str().unwrap();
        assert!(is_rfc3339(created), "created is not RFC 3339: {created}");
        // The name carries the creation minute: …_YYYY-MM-DD_HH-MM.
        let stamp = &name["Proj_backup_".len().."Proj_backup_".len() + 16];
        assert_eq!(
            format!("{}_{}", &created[..10], created[11..16].replace(':', "-")),
            stamp,
            "{row:#}"
        );
        assert_eq!(row["files_total"], rep["files_total"]);
        assert_eq!(row["files_copied"], rep["files_copied"]);
        assert_eq!(row["bytes_copied"], rep["bytes_copied"]);
        assert_eq!(row["status"], "complete");
    }
    assert_eq!(rows[0]["files_total"], 2);
    assert_eq!(rows[1]["files_total"], 3);
    assert_eq!(rows[1]["files_copied"], 1);
    assert_eq!(rows[1]["bytes_copied"], 4);

    let r = w.run(&["status", "--json"]);
    assert_code(&r, 0, "status");
    let v = single_json(&r);
    for k in [
        "last_snapshot",
        "backup_due",
        "lock_holder",
        "destination_free_bytes",
        "snapshots",
        "max_backups",
    ] {
        assert!(v.get(k).is_some(), "status JSON lacks {k}: {v:#}");
    }
    assert_eq!(v["last_snapshot"], b.as_str());
    assert_eq!(v["backup_due"], false);
    assert_eq!(v["lock_holder"], Value::Null);
    assert!(
        v["destination_free_bytes"].as_u64().is_some_and(|n| n > 0),
        "{v:#}"
    );
    assert_eq!(v["snapshots"], 2);
    assert_eq!(v["max_backups"], 7);
}

// ---------------------------------------------------------------------------
// 10. init
// ---------------------------------------------------------------------------

#[test]
fn init_writes_a_working_profile_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    fs::create_dir_all(project.join("lib")).unwrap();
    fs::write(project.join("main.py"), "print('hi')\n").unwrap();
    fs::write(project.join("lib/util.py"), "X = 1\n").unwrap();
    let backups = dir.path().join("backups");
    let profile = dir.path().join("my.toml");

    let r = run_bare(&[
        "init".as_ref(),
        profile.as_os_str(),
        "--source".as_ref(),
        project.as_os_str(),
        "--destination".as_ref(),
        backups.as_os_str(),
    ]);
    assert_code(&r, 0, "init");
    let written = fs::read(&profile).unwrap();
    assert!(!written.is_empty());

    let mut cmd = Command::new(binary());
    cmd.arg("--profile")
        .arg(&profile)
        .args(["backup", "--json"])
        .env_remove("RUST_LOG");
    let r: Run = cmd.output().unwrap().into();
    assert_code(&r, 0, "backup with the new profile");
    let v = single_json(&r);
    assert_eq!(v["outcome"], "created");
    let name = v["snapshot"].as_str().unwrap();
    assert!(
        name.starts_with("project_backup_"),
        "default name is the source folder's: {name}"
    );
    let snap = backups.join(name);
    assert_eq!(fs::read(snap.join("main.py")).unwrap(), b"print('hi')\n");
    assert_eq!(fs::read(snap.join("lib/util.py")).unwrap(), b"X = 1\n");

    // A second init on the same path fails and leaves the file alone.
    let other = dir.path().join("elsewhere");
    let r = run_bare(&[
        "init".as_ref(),
        profile.as_os_str(),
        "--source".as_ref(),
        project.as_os_str(),
        "--destination".as_ref(),
        other.as_os_str(),
        "--name".as_ref(),
        "Other".as_ref(),
    ]);
    assert_code(&r, 2, "second init on the same path");
    assert_eq!(fs::read(&profile).unwrap(), written);
    assert!(!other.exists());
}

// ---------------------------------------------------------------------------
// 11. Progress output stays out of JSON and non-terminal output
// ---------------------------------------------------------------------------

fn assert_no_progress(text: &str, what: &str) {
    assert!(!text.contains('\r'), "{what}: carriage return in {text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "{what}: escape sequence in {text:?}"
    );
    for frag in ["entries", " eta ", "[=", "=>", "/s "] {
        assert!(
            !text.contains(frag),
            "{what}: progress text {frag:?} in {text:?}"
        );
    }
}

/// Builds enough source that a progress bar, if drawn, would show.
fn busy_source(w: &World) {
    let blob = vec![7u8; 256 * 1024];
    for i in 0..40 {
        w.write(&format!("d{}/f{i}.bin", i % 4), &blob);
    }
}

#[test]
fn progress_never_reaches_piped_or_json_output() {
    let w = World::new("");
    busy_source(&w);

    // Plain runs with piped stderr: no bar, no carriage returns.
    let r = w.run(&["backup", "--force"]);
    assert_code(&r, 0, "plain backup");
    assert_no_progress(&r.stderr, "stderr of a plain backup");
    assert_no_progress(&r.stdout, "stdout of a plain backup");
    let out = w.dir.path().join("plain-restore");
    let r = w.run(&["restore", "--to", out.to_str().unwrap()]);
    assert_code(&r, 0, "plain restore");
    assert_no_progress(&r.stderr, "stderr of a plain restore");
    assert_no_progress(&r.stdout, "stdout of a plain restore");
    let r = w.run(&["verify", "--all"]);
    assert_code(&r, 0, "plain verify");
    assert_no_progress(&r.stderr, "stderr of a plain verify");

    // --json runs: exactly one JSON document on stdout, nothing drawn.
    w.write("d0/f0.bin", b"changed");
    let (name, _) = backup_created(&w);
    let out = w.dir.path().join("json-restore");
    let out = out.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["backup", "--force", "--json"],
        vec!["list", "--json"],
        vec!["status", "--json"],
        vec!["verify", "--all", "--json"],
        vec!["restore", "latest", "--to", out, "--json"],
        vec!["diff", "--json"],
        vec!["diff", name.as_str(), name.as_str(), "--json"],
    ];
    for args in &commands {
        let r = w.run(args);
        assert_code(&r, 0, &format!("{args:?}"));
        single_json(&r);
        assert_no_progress(&r.stdout, &format!("stdout of {args:?}"));
        assert_no_progress(&r.stderr, &format!("stderr of {args:?}"));
    }
}

/// Runs the binary with stderr on a pseudo-terminal; returns the run (its
/// stderr is what the terminal received, with "\r\n" turned into "\n").
fn run_with_tty_stderr(w: &World, args: &[&str]) -> Run {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two descriptors into valid out-pointers; the
    // other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    for fd in [master, slave] {
        // SAFETY: fd is an open descriptor we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors are open and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut master = fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    let mut cmd = Command::new(binary());
    cmd.arg("--profile")
        .arg(&w.profile)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().unwrap();
    drop(cmd); // closes our copy of the slave side
    let out = child.wait_with_output().unwrap();
    let tty = reader.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&tty).replace("\r\n", "\n"),
    }
}

#[test]
fn json_runs_draw_no_progress_even_on_a_terminal() {
    let w = World::new("");
    busy_source(&w);
    // Control: on a terminal, without --json, progress is drawn (so the
    // terminal set-up below can see a bar when there is one).
    let r = run_with_tty_stderr(&w, &["backup", "--force"]);
    assert_code(&r, 0, "backup with a terminal");
    assert!(
        r.stderr.contains('\r') || r.stderr.contains('\u{1b}'),
        "control: no progress drawn on a terminal: {:?}",
        r.stderr
    );

    w.write("d1/f1.bin", b"changed");
    let out = w.dir.path().join("tty-restore");
    let out = out.to_str().unwrap();
    for args in [
        vec!["backup", "--force", "--json"],
        vec!["verify", "--all", "--json"],
        vec!["restore", "latest", "--to", out, "--json"],
        vec!["backup", "--force", "--quiet"],
    ] {
        let r = run_with_tty_stderr(&w, &args);
        assert_code(&r, 0, &format!("{args:?} with a terminal"));
        if args.contains(&"--json") {
            single_json(&r);
        }
        assert_no_progress(&r.stderr, &format!("terminal stderr of {args:?}"));
    }
}

// ---------------------------------------------------------------------------
// 12. --quiet
// ---------------------------------------------------------------------------

#[test]
fn quiet_backup_prints_nothing() {
    let w = World::new("");
    put(&w, "a.txt", "a\n", 0o644, 1_600_000_000, 0);
    let r = w.run(&["backup", "--quiet"]);
    assert_code(&r, 0, "quiet backup");
    assert_eq!(r.stdout, "", "stdout of a quiet backup");
    assert_eq!(r.stderr, "", "stderr of a successful quiet backup");
    assert_eq!(w.snapshot_names().len(), 1);

    put(&w, "b.txt", "b\n", 0o644, 1_600_000_000, 0);
    let r = w.run(&["--quiet", "backup", "--force"]);
    assert_code(&r, 0, "quiet forced backup");
    assert_eq!(r.stdout, "");
    assert_eq!(w.snapshot_names().len(), 2);

    // Nothing changed: still silent.
    let r = w.run(&["-q", "--force"]);
    assert_code(&r, 0, "quiet backup without changes");
    assert_eq!(r.stdout, "");
    assert_eq!(w.snapshot_names().len(), 2);
}

// ---------------------------------------------------------------------------
// 13. The operations log
// ---------------------------------------------------------------------------

#[test]
fn operations_log_lines_are_timestamped_and_the_log_rotates_past_10_mib() {
    let w = World::new("");
    put(&w, "a.txt", "a\n", 0o644, 1_600_000_000, 0);
    put(&w, "b.txt", "bb\n", 0o644, 1_600_000_000, 0);
    put(&w, "c/d.txt", "ddd\n", 0o644, 1_600_000_000, 0);
    let (name, _) = backup_created(&w);
    let log = w.src.join("backup_operations.log");
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "log:\n{text}");
    for l in &lines {
        let first = l.split_whitespace().next().unwrap_or("");
        assert!(
            is_rfc3339(first),
            "log line without an RFC 3339 timestamp: {l}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("start")),
        "no start line:\n{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("files=3")),
        "no scan-count line:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| (l.contains("finished") || l.contains("complete")) && l.contains(&name)),
        "no completion line naming {name}:\n{text}"
    );
    assert!(
        !w.snapshot(&name).join("backup_operations.log").exists(),
        "the log was backed up"
    );

    // Past 10 MiB the log moves to .1 on the next run.
    let mut big = b"OLD LOG MARKER\n".to_vec();
    big.resize(10 * 1024 * 1024 + 1, b'x');
    fs::write(&log, &big).unwrap();
    put(&w, "e.txt", "e\n", 0o644, 1_600_000_000, 0);
    backup_created(&w);
    let old = w.src.join("backup_operations.log.1");
    assert_eq!(fs::read(&old).unwrap(), big, "rotated log content");
    let fresh = fs::read_to_string(&log).unwrap();
    assert!(
        fresh.len() < 1024 * 1024,
        "new log is {} bytes",
        fresh.len()
    );
    assert!(!fresh.contains("OLD LOG MARKER"));
    let first = fresh.lines().next().unwrap_or("");
    assert!(
        is_rfc3339(first.split_whitespace().next().unwrap_or("")),
        "first line of the new log: {first}"
    );
    assert!(fresh.contains("files=4"), "new log:\n{fresh}");
}

#[test]
fn rfc3339_checker_accepts_and_rejects() {
    assert!(is_rfc3339("2026-11-26T17:20:57.029046Z"));
    assert!(is_rfc3339("2026-11-26T17:20:57+01:00"));
    assert!(is_rfc3339("2026-11-26T17:20:57.1-05:30"));
    assert!(!is_rfc3339("2026-11-26 17:20:57"));
    assert!(!is_rfc3339("2026-13-26T17:20:57Z"));
    assert!(!is_rfc3339("INFO backup run started"));
    assert!(!is_rfc3339("2026-11-26T17:20:57"));
}

/// A reader that closes the pipe early (`| head`, `| true`) is not a
/// failure: the exit code still says what happened to the backup.
#[test]
fn closed_stdout_does_not_turn_a_good_backup_into_a_failure() {
    let w = World::new("");
    w.write("a.txt", "hello");
    let mut child = Command::new(binary())
        .arg("--profile")
        .arg(&w.profile)
        .args(["backup", "--force", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.snapshot_names().len(), 1);
    let mut list = Command::new(binary())
        .arg("--profile")
        .arg(&w.profile)
        .args(["list", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(list.stdout.take());
    assert_eq!(list.wait().unwrap().code(), Some(0));
}

/// `restore --overwrite` into a folder where a subfolder is now a symlink
/// never writes through the symlink (outside the target).
#[test]
fn overwrite_restore_never_writes_through_a_symlinked_folder() {
    let w = World::new("");
    w.write("sub/secret.txt", "snapshot content");
    w.write("top.txt", "top");
    fs::set_permissions(w.src.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
    let (name, _) = backup_created(&w);
    let to = w.dir.path().join("restore-here");
    let outside = w.dir.path().join("outside");
    fs::create_dir_all(&to).unwrap();
    fs::create_dir_all(&outside).unwrap();
    symlink(&outside, to.join("sub")).unwrap();
    let (r, v) = restore_json(&w, &name, &to, &["--overwrite"]);
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(v["errors"].to_string().contains("sub/secret.txt"), "{v}");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside the target"
    );
    assert_ne!(
        fs::metadata(&outside).unwrap().permissions().mode() & 0o7777,
        0o555,
        "changed the mode of a folder outside the target"
    );
    assert_eq!(fs::read_to_string(to.join("top.txt")).unwrap(), "top");
}

/// Without the `s3` feature an object-storage destination is a profile
/// error that says how to get a build with it.
#[cfg(not(feature = "s3"))]
#[test]
fn s3_destination_without_the_feature_says_how_to_build_it() {
    let w = World::new("");
    std::fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"s3://some-bucket/p\"\n",
    )
    .unwrap();
    let r = w.run(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--features s3"), "{}", r.stderr);
    let r = w.run(&["list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
