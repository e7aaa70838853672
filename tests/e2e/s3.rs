//! The S3 destination against a real S3 server on loopback (`rclone serve
//! s3`, see `backup_tests::s3`): uploads stored once by content, only
//! changes uploaded, a killed upload leaves no snapshot, multipart uploads
//! in constant memory, rotation and garbage collection under locks, and
//! clear errors for credentials, buckets, endpoints and profiles.
//!
//! Compiled with backup-cli's `s3` feature (CI: `cargo test --workspace
//! --all-features`); each test prints SKIPPED when rclone is missing,
//! unless BACKUP_CLI_REQUIRE_S3=1.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use backup_tests::hash::sha256_hex;
use backup_tests::prng::Rng;
use backup_tests::s3::{S3Server, BUCKET, REQUIRE_ENV};
use backup_tests::{tree, World};
use serde_json::Value;

use crate::{world, BIN};

/// Deterministic bytes that do not compress or repeat.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// The content hashes a manifest object references.
fn referenced(server: &S3Server, prefix: &str, manifest: &str) -> BTreeSet<String> {
    let text = fs::read_to_string(server.dir(prefix).join(manifest)).unwrap();
    let mut lines = text.lines();
    let info: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(info["format"], "backup-cli-snapshot");
    lines
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["sha256"].as_str().map(str::to_owned)
        })
        .collect()
}

fn data_hashes(server: &S3Server, prefix: &str) -> BTreeSet<String> {
    server
        .objects(prefix, "data")
        .iter()
        .map(|p| p.rsplit('/').next().unwrap().to_owned())
        .collect()
}

fn sample_tree(w: &World) {
    w.write("app.py", "print('hello')\n");
    w.write("src/lib/util.py", "def f():\n    return 1\n");
    w.write("docs/readme.md", "# Docs\n");
    // Identical contents: stored once.
    for i in 0..5 {
        w.write(&format!("copies/same{i}.txt"), "the same bytes\n");
    }
    // Larger than the single-PUT limit: uploaded in parts.
    w.write("assets/big.bin", noise(7, 12 << 20));
    w.write("empty.txt", "");
    fs::create_dir_all(w.src.join("empty_dir")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::symlink("app.py", w.src.join("link.py")).unwrap();
        w.write("run.sh", "#!/bin/sh\necho hi\n");
        fs::set_permissions(w.src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn backup_then_restore_is_byte_identical_and_identical_files_are_stored_once() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "");
    sample_tree(&w);
    let report = w.backup(0);
    assert_eq!(report["outcome"], "created", "{report}");
    let name = report["snapshot"].as_str().unwrap().to_owned();
    assert!(report["snapshot_path"]
        .as_str()
        .unwrap()
        .starts_with(&format!("s3://{BUCKET}/proj/snapshots/{name}.json")));
    // One manifest; contents: app.py, util.py, readme.md, same*.txt (once),
    // big.bin, empty.txt, run.sh = 7 distinct contents.
    assert_eq!(
        server.objects("proj", "snapshots"),
        [format!("snapshots/{name}.json")]
    );
    let data = data_hashes(&server, "proj");
    assert_eq!(data.len(), 7, "{data:?}");
    assert_eq!(
        data,
        referenced(&server, "proj", &format!("snapshots/{name}.json"))
    );
    assert_eq!(report["files_copied"], 7, "{report}");
    // Every object is data/<first 2 hex>/<sha256>.
    for p in server.objects("proj", "data") {
        let parts: Vec<&str> = p.split('/').collect();
        assert_eq!(parts.len(), 3, "{p}");
        assert_eq!(&parts[2][..2], parts[1]);
    }
    // No lock object is left behind.
    assert!(server.objects("proj", "locks").is_empty());

    let target = w.dir.path().join("restored");
    let r = w.run(&[
        "restore",
        "latest",
        "--to",
        target.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // 11 files (5 of them one content) and a symlink.
    assert_eq!(r.json()["files_restored"], 11);
    assert_eq!(tree(&target), tree(&w.src));

    let v = w.run(&["verify", "--json"]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    let v = v.json();
    assert_eq!(v["files_checked"], 11);
    // Each distinct content downloaded once: big.bin plus 77 bytes.
    assert_eq!(v["bytes_checked"], (12 << 20) + 77);
    let q = w.run(&["verify", "--quick", "--json"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert_eq!(q.json()["bytes_checked"], 0);

    // Once a day: a second backup without --force is skipped, from the
    // bucket's own listing.
    w.write("later.txt", "changed after the snapshot\n");
    let again = w.run(&["backup", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["outcome"], "skipped_not_due");
    // (The snapshot that made it skip: reliability v2, point 21.)
    assert_eq!(again.json()["last_snapshot"], name.as_str());
    fs::remove_file(w.src.join("later.txt")).unwrap();

    let list = w.run(&["list", "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], name.as_str());
    assert_eq!(list[0]["status"], "complete");
}

#[test]
fn second_backup_uploads_only_changed_contents() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "");
    sample_tree(&w);
    let first = w.backup(0);
    let before = data_hashes(&server, "proj");

    // One file changed (same size), one new file identical to an existing
    // content, one removed.
    w.write("app.py", "print('HELLO')\n");
    w.write("docs/again.md", "# Docs\n");
    fs::remove_file(w.src.join("src/lib/util.py")).unwrap();
    let second = w.backup(0);
    assert_eq!(second["outcome"], "created", "{second}");
    assert_eq!(second["files_copied"], 1, "{second}");
    assert_eq!(second["bytes_copied"], 15, "{second}");
    assert_eq!(second["changes"]["added"], 1);
    assert_eq!(second["changes"]["modified"], 1);
    assert_eq!(second["changes"]["removed"], 1);
    let after = data_hashes(&server, "proj");
    assert_eq!(after.len(), before.len() + 1);
    assert!(before.is_subset(&after));

    // No change: no snapshot, nothing uploaded.
    let third = w.backup(0);
    assert_eq!(third["outcome"], "no_changes", "{third}");
    assert_eq!(server.objects("proj", "snapshots").len(), 2);

    // diff between the two snapshots, and list.
    let a = first["snapshot"].as_str().unwrap();
    let b = second["snapshot"].as_str().unwrap();
    let d = w.run(&["diff", a, b, "--json"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let d = d.json();
    assert_eq!(d["added"], serde_json::json!(["docs/again.md"]));
    assert_eq!(d["changed"], serde_json::json!(["app.py"]));
    assert_eq!(d["removed"], serde_json::json!(["src/lib/util.py"]));
    // diff against the source now: nothing changed since b.
    let d = w.run(&["diff", b, "--json"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_eq!(d.json()["changed"], serde_json::json!([]));

    // The first snapshot still restores on its own.
    let target = w.dir.path().join("first");
    let r = w.run(&["restore", a, "--to", target.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        fs::read_to_string(target.join("app.py")).unwrap(),
        "print('hello')\n"
    );
    assert!(target.join("src/lib/util.py").exists());
}

#[test]
fn killed_upload_leaves_no_manifest_and_the_next_run_reuses_what_arrived() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "");
    let files = 300;
    for i in 0..files {
        w.write(&format!("blobs/{i:03}.bin"), noise(i, 1 << 20));
    }
    let mut child = Command::new(BIN)
        .arg("--profile")
        .arg(&w.profile)
        .args(["backup", "--force", "--quiet"])
        .envs(w.env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let data = server.dir("proj").join("data");
    loop {
        let arrived = fs::read_dir(&data)
            .map(|rd| {
                rd.flatten()
                    .any(|d| fs::read_dir(d.path()).is_ok_and(|mut f| f.next().is_some()))
            })
            .unwrap_or(false);
        if arrived {
            break;
        }
        assert!(Instant::now() < deadline, "no object arrived within 60 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended too early"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        server.objects("proj", "snapshots").is_empty(),
        "a manifest exists after the kill"
    );
    let arrived = server.objects("proj", "data").len();
    assert!(
        arrived > 0 && arrived < files as usize,
        "{arrived} objects arrived"
    );

    let report = w.backup(0);
    assert_eq!(report["outcome"], "created", "{report}");
    let copied = report["files_copied"].as_u64().unwrap();
    assert!(
        copied <= files - arrived as u64,
        "uploaded {copied} again although {arrived} had arrived"
    );
    assert_eq!(report["files_linked"].as_u64().unwrap() + copied, files);
    assert_eq!(server.objects("proj", "data").len(), files as usize);
    let v = w.run(&["verify", "--json"]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    assert_eq!(v.json()["files_checked"], files);
}

#[test]
fn a_large_file_is_uploaded_in_parts_in_constant_memory() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "");
    // 1 GiB, sparse on disk: read as zeros, stored as one 1 GiB object.
    let big = w.src.join("disk.img");
    let f = fs::File::create(&big).unwrap();
    f.set_len(1 << 30).unwrap();
    fs::write(w.src.join("tail.bin"), noise(3, 1000)).unwrap();
    drop(f);
    let (code, rss_kib) = backup_tests::host::run_with_peak_rss(
        Command::new(BIN)
            .arg("--profile")
            .arg(&w.profile)
            .args(["backup", "--force", "--quiet"])
            .envs(w.env.iter().map(|(k, v)| (k, v))),
    );
    assert_eq!(code, 0);
    assert!(
        rss_kib < 100 * 1024,
        "peak RSS {} MiB while uploading a 1 GiB file",
        rss_kib / 1024
    );
    let objects = server.objects("proj", "data");
    let sizes: Vec<u64> = objects
        .iter()
        .map(|p| fs::metadata(server.dir("proj").join(p)).unwrap().len())
        .collect();
    assert!(sizes.contains(&(1 << 30)), "{sizes:?}");
    let v = w.run(&["verify", "--quick", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
}

/// Writes a lock object as another run would.
fn plant_lock(
    server: &S3Server,
    prefix: &str,
    name: &str,
    refreshed_secs_ago: i64,
    exclusive: bool,
) {
    let t = chrono_like_rfc3339(refreshed_secs_ago);
    let dir = server.dir(prefix).join("locks");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join(format!("{name}.json")),
        serde_json::json!({
            "host": "other-host", "pid": 4242, "started": t, "refreshed": t,
            "exclusive": exclusive, "profile": "Other"
        })
        .to_string(),
    )
    .unwrap();
    // The server judges locks by their last-modified time (the file's mtime).
    backup_tests::files::set_mtime(
        &dir.join(format!("{name}.json")),
        now_secs() - refreshed_secs_ago,
    );
}

/// RFC 3339 UTC time `secs_ago` seconds ago (from `date`, no extra crate).
fn chrono_like_rfc3339(secs_ago: i64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", now_secs() - secs_ago),
            "+%Y-%m-%dT%H:%M:%S+00:00",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn rotation_deletes_manifests_and_gc_keeps_exactly_the_referenced_contents() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "max_backups = 2");
    w.write("keep.txt", "in every snapshot\n");
    for i in 0..4 {
        w.write(&format!("v{i}.txt"), format!("version {i}\n"));
        w.write("changing.txt", format!("state {i}\n"));
        let r = w.backup(0);
        assert_eq!(r["outcome"], "created", "{r}");
    }
    let manifests = server.objects("proj", "snapshots");
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    let mut needed = BTreeSet::new();
    for m in &manifests {
        needed.extend(referenced(&server, "proj", m));
    }
    // keep.txt, v0..v3 (all still in the source), changing.txt states 2 and 3.
    assert_eq!(needed.len(), 7);
    assert_eq!(data_hashes(&server, "proj"), needed);
    assert!(server.objects("proj", "locks").is_empty());

    // A live lock of another run puts garbage collection off: the content
    // only the rotated snapshot needed stays.
    plant_lock(&server, "proj", "other-live", 5, false);
    server.settle();
    w.write("changing.txt", "state 4\n");
    let r = w.backup(0);
    assert_eq!(r["rotate"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(server.objects("proj", "snapshots").len(), 2);
    assert_eq!(data_hashes(&server, "proj").len(), 8);
    let log = fs::read_to_string(w.src.join("backup_operations.log")).unwrap();
    assert!(log.contains("garbage collection put off"), "{log}");

    // The same lock gone stale (an hour without refresh) is ignored.
    fs::remove_file(server.dir("proj").join("locks/other-live.json")).unwrap();
    plant_lock(&server, "proj", "other-dead", 3600, true);
    server.settle();
    w.write("changing.txt", "state 5\n");
    let r = w.backup(0);
    assert_eq!(r["outcome"], "created", "{r}");
    let mut needed = BTreeSet::new();
    for m in &server.objects("proj", "snapshots") {
        needed.extend(referenced(&server, "proj", m));
    }
    assert_eq!(data_hashes(&server, "proj"), needed);
    let v = w.run(&["verify", "--all", "--json"]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
}

#[test]
fn a_live_exclusive_lock_makes_a_backup_wait_holding_its_own_lock() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "");
    w.write("a.txt", "a\n");
    // A live exclusive lock (another run collecting garbage) that is
    // released after 3 s: the backup waits, then goes on.
    plant_lock(&server, "proj", "gc", 0, true);
    server.settle();
    let locks = server.dir("proj").join("locks");
    let remover = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        // The waiting run has written its own (shared) lock object.
        let own: Vec<Value> = fs::read_dir(&locks)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "gc.json")
            .map(|e| serde_json::from_slice(&fs::read(e.path()).unwrap()).unwrap())
            .collect();
        fs::remove_file(locks.join("gc.json")).unwrap();
        own
    });
    let started = Instant::now();
    let r = w.backup(0);
    let own = remover.join().unwrap();
    assert_eq!(r["outcome"], "created", "{r}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(own.len(), 1, "{own:?}");
    let lock = &own[0];
    assert_eq!(lock["exclusive"], false);
    assert_eq!(lock["profile"], "Proj");
    assert!(lock["pid"].as_u64().unwrap() > 0);
    assert!(!lock["host"].as_str().unwrap().is_empty());
    assert!(lock["started"].as_str().unwrap().contains('T'));
    // Released when the run ended.
    assert!(server.objects("proj", "locks").is_empty());
}

#[test]
fn a_content_missing_from_the_store_is_uploaded_again_not_linked() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "");
    w.write("stable.txt", "never changes\n");
    w.write("moving.txt", "one\n");
    w.backup(0);
    // Someone deletes the content of the unchanged file from the bucket.
    let data = server.dir("proj").join("data");
    let victim = server
        .objects("proj", "data")
        .into_iter()
        .find(|p| fs::read(server.dir("proj").join(p)).unwrap() == b"never changes\n")
        .unwrap();
    fs::remove_file(server.dir("proj").join(&victim)).unwrap();
    server.settle();
    w.write("moving.txt", "two\n");
    let r = w.backup(0);
    assert_eq!(r["outcome"], "created", "{r}");
    assert_eq!(r["files_copied"], 2, "{r}");
    assert!(data.join(victim.strip_prefix("data/").unwrap()).exists());
    let v = w.run(&["verify", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
}

#[test]
fn corrupt_and_missing_objects_are_reported_by_verify() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let w = server.world(BIN, "proj", "");
    w.write("a.txt", "alpha\n");
    w.write("b.txt", "bravo\n");
    w.write("c/d.txt", "charlie\n");
    w.backup(0);
    let hash = |s: &str| sha256_hex(s.as_bytes());
    let obj = |h: &str| server.dir("proj").join("data").join(&h[..2]).join(h);
    // Same size, other bytes: only a full verify sees it.
    fs::write(obj(&hash("alpha\n")), "ALPHA\n").unwrap();
    fs::remove_file(obj(&hash("bravo\n"))).unwrap();
    server.settle();
    let q = w.run(&["verify", "--quick", "--json"]);
    assert_eq!(q.code, 1, "{}", q.stdout);
    let q = q.json();
    assert_eq!(q["missing"][0]["path"], "b.txt");
    assert_eq!(q["corrupt"].as_array().unwrap().len(), 0);
    let v = w.run(&["verify", "--json"]);
    assert_eq!(v.code, 1);
    let v = v.json();
    assert_eq!(v["corrupt"][0]["path"], "a.txt");
    assert_eq!(v["missing"][0]["path"], "b.txt");
    // Restore refuses the damaged content (exit 1) but writes the rest.
    let target = w.dir.path().join("r");
    let r = w.run(&[
        "restore",
        "latest",
        "--to",
        target.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(
        fs::read_to_string(target.join("c/d.txt")).unwrap(),
        "charlie\n"
    );
    // The source still holds both contents: --repair uploads them again.
    let v = w.run(&["verify", "--repair", "--json"]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    let v = v.json();
    assert_eq!(
        v["repair"]["repaired"].as_array().map(Vec::len),
        Some(2),
        "{v:#}"
    );
    assert_eq!(fs::read(obj(&hash("alpha\n"))).unwrap(), b"alpha\n");
    assert_eq!(fs::read(obj(&hash("bravo\n"))).unwrap(), b"bravo\n");
}

#[test]
fn wrong_secret_is_a_clear_error_and_nothing_is_written() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let mut w = server.world(BIN, "proj", "");
    w.write("a.txt", "a\n");
    w.env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    w.env
        .push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()));
    let r = w.run(&["backup", "--force"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("refused the credentials") && r.stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        r.stderr
    );
    assert!(!server.dir("proj").exists(), "something was written");
    assert!(!w.src.join("backup_metadata.json").exists());
    // Read commands say the same.
    let l = w.run(&["list"]);
    assert_eq!(l.code, 1);
    assert!(l.stderr.contains("refused the credentials"), "{}", l.stderr);
}

#[test]
fn missing_credentials_bucket_or_server_are_clear_errors_before_scanning() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let mut w = server.world(BIN, "proj", "");
    w.write("a.txt", "a\n");
    w.env.clear();
    let r = Command::new(BIN)
        .arg("--profile")
        .arg(&w.profile)
        .args(["backup", "--force"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("AWS_ACCESS_KEY_ID") && stderr.contains("not set"),
        "{stderr}"
    );

    // A bucket that does not exist.
    let w = server.world(BIN, "proj", "");
    let text = fs::read_to_string(&w.profile)
        .unwrap()
        .replace("s3://backups/", "s3://no-such-bucket/");
    fs::write(&w.profile, text).unwrap();
    w.write("a.txt", "a\n");
    let r = w.run(&["backup", "--force", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert_eq!(r.json()["outcome"], "failed");

    // Nothing listens at the endpoint.
    let w = server.world(BIN, "proj", "");
    let text = fs::read_to_string(&w.profile)
        .unwrap()
        .replace(&server.endpoint, "http://127.0.0.1:9");
    fs::write(&w.profile, text).unwrap();
    w.write("a.txt", "a\n");
    let started = Instant::now();
    let r = w.run(&["backup", "--force"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn profile_errors_in_the_s3_table_name_the_key() {
    let w = world("");
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"s3://Bad_Bucket/x\"\n",
    )
    .unwrap();
    let r = w.run(&["backup"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`destination`"), "{}", r.stderr);
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"s3://ok-bucket/x\"\n[s3]\nendpoint = \"localhost:9000\"\n",
    )
    .unwrap();
    let r = w.run(&["backup"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`s3.endpoint`"), "{}", r.stderr);
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"dest\"\n[s3]\nregion = \"eu-west-1\"\n",
    )
    .unwrap();
    let r = w.run(&["backup"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`s3`"), "{}", r.stderr);
}

/// CI sets BACKUP_CLI_REQUIRE_S3=1: this fails there when the server
/// cannot be started, so the S3 tests can never be skipped silently.
#[test]
fn the_s3_server_starts_when_required() {
    let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1");
    let server = S3Server::start();
    assert!(server.is_some() || !required);
}
