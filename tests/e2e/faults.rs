//! Faults during a backup: unreadable files (kept stale or failed, picked
//! up later), a full or read-only destination (nothing touched, advice
//! given), a same-size same-mtime rewrite, a file rewritten while it is
//! copied, and read-only snapshots that still rotate and restore.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backup_tests::bounded::{backup, run, verify_all_clean};
use backup_tests::faults::{ExfatMount, TmpfsMount, Unprivileged};
use backup_tests::files::{inode, mode, set_mode};
use backup_tests::hash::{sha256_file, sha256_hex};
use backup_tests::host::is_root;
use backup_tests::manifest::{entry, info};
use backup_tests::prng::Rng;
use backup_tests::snapshots::{leftovers, reported_snapshot};
use backup_tests::trees::hashed::{assert_same_tree, image, tree_nodes};
use backup_tests::trees::listing;
use backup_tests::{assert_code, restore_json};
use serde_json::Value;

use crate::world;

/// A folder that can be listed but not entered (`r` without `x`): the
/// lstat of each of its entries fails. Each is reported once (it used to
/// be listed twice in a dry run: once by the scan, once by its kept copy),
/// with its own error, and kept stale.
#[test]
fn entries_of_a_folder_that_cannot_be_entered_are_reported_once() {
    let Some(user) = Unprivileged::get() else {
        return;
    };
    let w = world("");
    w.write("box/a.txt", "a v1");
    w.write("box/b.txt", "b v1");
    user.own(&w);
    let v = user.backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let s1 = reported_snapshot(&w, &v);
    w.write("other.txt", "a change elsewhere");
    user.own(&w);
    set_mode(&w.src.join("box"), 0o644);
    let mut last = Value::Null;
    for args in [
        &["backup", "--dry-run", "--force", "--json"][..],
        &["backup", "--force", "--json"],
    ] {
        let r = user.run(&w, args);
        assert_code(&r, 3, &args.join(" "));
        let v = r.json();
        let mut paths: Vec<&str> = v["failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        paths.sort();
        assert_eq!(paths, ["box/a.txt", "box/b.txt"], "{args:?}: {v:#}");
        assert_eq!(v["files_failed"], 2, "{args:?}: {v:#}");
        last = v;
    }
    let s2 = reported_snapshot(&w, &last);
    set_mode(&w.src.join("box"), 0o755);
    for f in ["box/a.txt", "box/b.txt"] {
        let e = entry(&s2, f).unwrap_or_else(|| panic!("{f} missing from the manifest"));
        assert_eq!(e["status"], "stale", "{f}: {e}");
        let err = e["error"].as_str().unwrap_or("");
        assert!(
            err.contains("ermission denied"),
            "{f}: its own error, not its folder's: {e}"
        );
        assert_eq!(
            inode(&s2.join(f)),
            inode(&s1.join(f)),
            "{f}: not the last good copy"
        );
    }
}

#[test]
fn unreadable_files_are_listed_kept_stale_or_failed_and_picked_up_later() {
    let Some(user) = Unprivileged::get() else {
        return;
    };
    let w = world("");
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
    assert_code(&r, 3, "backup with unreadable files");
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
    assert!(!w.lock_path().exists(), "lock file left after exit 3");

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
    assert_code(&r, 0, "verify --all after a partial snapshot");

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
    assert_code(&r, 0, "verify --all");
}

#[test]
fn destination_full_fails_cleanly_and_touches_nothing() {
    let w = world("");
    let Some(_mount) = TmpfsMount::new(&w.dest, "8m") else {
        return;
    };
    let mut rng = Rng::new(99);
    w.write("small.bin", rng.bytes(1 << 20));
    w.write("notes.txt", "fits");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let first = reported_snapshot(&w, &v);
    let names_before = listing(&w.dest);
    let image_before = image(&first);
    let meta_before = fs::read(w.metadata_path()).unwrap();

    // ~20 MiB of incompressible data cannot fit in 8 MiB.
    for i in 0..4 {
        w.write(&format!("big/{i}.bin"), rng.bytes(5 << 20));
    }
    let r = run(&w, &["backup", "--force", "--json"]);
    assert_code(&r, 1, "backup into a full destination");
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
    assert_eq!(listing(&w.dest), names_before, "the destination changed");
    assert_eq!(image(&first), image_before, "the earlier snapshot changed");
    assert_eq!(
        fs::read(w.metadata_path()).unwrap(),
        meta_before,
        "backup_metadata.json changed"
    );
    assert!(!w.lock_path().exists(), "lock file left after a failed run");
}

#[test]
fn read_only_destination_fails_with_advice_and_touches_nothing() {
    let w = world("");
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
    let names_before = listing(&w.dest);
    let meta_before = fs::read(w.metadata_path()).unwrap();

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
    assert_code(&r, 1, "backup into a read-only destination");
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
    assert_eq!(listing(&w.dest), names_before, "the destination changed");
    assert_eq!(image(&first), image_before, "the earlier snapshot changed");
    assert_eq!(
        fs::read(w.metadata_path()).unwrap(),
        meta_before,
        "backup_metadata.json changed"
    );
    assert!(!w.lock_path().exists(), "lock file left after a failed run");

    // Writable again: the next run works.
    restore_rw();
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let s = reported_snapshot(&w, &v);
    assert_eq!(fs::read(s.join("a.txt")).unwrap(), b"two");
    assert_eq!(fs::read(s.join("b.txt")).unwrap(), b"new");
}

#[test]
fn racily_clean_same_size_same_mtime_rewrite_is_detected() {
    let w = world("");
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

#[test]
fn file_rewritten_during_backup_is_recorded_consistently() {
    const SIZE: usize = 30 << 20;
    const CHUNK: usize = 1 << 20;
    let w = world("");
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

#[test]
fn read_only_snapshots_rotate_and_restore() {
    let Some(user) = Unprivileged::get() else {
        return;
    };
    let w = world("max_backups = 2");
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
    assert_code(&r, 0, "restore");
    assert_same_tree(&tree_nodes(&w.src, true), &tree_nodes(&to, true), "restore");
    let r = user.run(&w, &["verify", "--all", "--json"]);
    assert_code(&r, 0, "verify --all");
}

/// Reliability v2, point 18: the metadata file is a cache. When it cannot
/// be written at all (here: its folder is a read-only file system), the
/// snapshot still commits (exit 0) with a warning naming `metadata_file`,
/// and a later run without changes exits 0 too.
#[test]
fn an_unwritable_metadata_file_never_fails_the_backup() {
    let w = world("metadata_file = \"meta/backup_metadata.json\"");
    let Some(mount) = TmpfsMount::new(&w.dir.path().join("meta"), "1m") else {
        return;
    };
    mount.remount("ro");
    w.write("a.txt", "alpha");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("backup_metadata.json"), "{v:#}");
    let name = v["snapshot"].as_str().unwrap().to_string();
    assert!(w.snapshot(&name).join("a.txt").is_file());
    let again = w.run(&["backup", "--force", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["outcome"], "no_changes", "{}", again.stdout);
    mount.remount("rw");
}

/// Reliability v2 #19: a read-only source with the state files in their
/// default places (the source) is a profile problem naming the keys that
/// can move, not an OS error from the lock (exit 1 before).
#[test]
fn a_read_only_source_names_the_state_file_keys() {
    let w = world("");
    let Some(mount) = TmpfsMount::new(&w.src, "8m") else {
        return;
    };
    w.write("a.txt", "one");
    mount.remount("ro");
    let r = run(&w, &["backup", "--force"]);
    assert_code(&r, 2, "backup of a read-only source");
    for key in ["lock_file", "metadata_file", "log_file"] {
        assert!(r.stderr.contains(key), "{key} not named: {}", r.stderr);
    }
    assert!(w.snapshot_names().is_empty(), "something was written");
    // With the state files moved out, the same source backs up.
    let state = w.dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let mut profile = fs::read_to_string(&w.profile).unwrap();
    for key in ["lock_file", "metadata_file", "log_file"] {
        profile.push_str(&format!("{key} = \"state/{key}\"\n"));
    }
    fs::write(&w.profile, profile).unwrap();
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    mount.remount("rw");
}

/// Reliability v2 #11: a snapshot never shows a file with a looser mode
/// than its source has now. A chmod without a content change, or the same
/// content under another path with another mode, gets its own inode (a
/// link would share the old inode's mode: 0600 stayed world-readable).
/// Folders in a snapshot are read-only like its files.
#[test]
fn modes_never_leak_through_shared_inodes_and_folders_are_read_only() {
    let w = world("");
    w.write("a.txt", "same content");
    w.write("sub/c.txt", "in a folder");
    set_mode(&w.src.join("a.txt"), 0o644);
    let s1 = reported_snapshot(&w, &backup(&w, 0));
    set_mode(&w.src.join("a.txt"), 0o600);
    w.write("b.txt", "same content");
    set_mode(&w.src.join("b.txt"), 0o640);
    let s2 = reported_snapshot(&w, &backup(&w, 0));
    assert_eq!(mode(&s1.join("a.txt")), 0o444, "the old snapshot changed");
    assert_eq!(
        mode(&s2.join("a.txt")),
        0o400,
        "a chmod to 0600 leaked the old mode"
    );
    assert_ne!(inode(&s2.join("a.txt")), inode(&s1.join("a.txt")));
    assert_eq!(mode(&s2.join("b.txt")), 0o440, "same content, own mode");
    assert_eq!(entry(&s2, "a.txt").unwrap()["mode"], 0o600);
    // An unchanged file is still a link.
    assert_eq!(inode(&s2.join("sub/c.txt")), inode(&s1.join("sub/c.txt")));
    for dir in [s2.clone(), s2.join("sub"), s2.join(".backup-snapshot")] {
        assert_eq!(mode(&dir) & 0o222, 0, "{} is writable", dir.display());
    }
    assert_eq!(
        entry(&s2, "sub").unwrap()["mode"],
        0o755,
        "the manifest keeps it"
    );
    // Rotation and restore still work with read-only folders.
    let to = w.dir.path().join("restored");
    let r = run(&w, &["restore", "latest", "--to", to.to_str().unwrap()]);
    assert_code(&r, 0, "restore");
    assert_eq!(mode(&to.join("sub")), 0o755);
    assert_eq!(mode(&to.join("a.txt")), 0o600);
    let mut profile = fs::read_to_string(&w.profile).unwrap();
    profile.push_str("max_backups = 1\n");
    fs::write(&w.profile, profile).unwrap();
    w.write("d.txt", "a change");
    let v = backup(&w, 0);
    assert_eq!(v["rotate"].as_array().map(Vec::len), Some(2), "{v:#}");
    assert!(
        !s1.exists() && !s2.exists(),
        "rotation left read-only snapshots"
    );
}

/// Reliability v2 #16: an unreadable folder (mode 000, or 0300: enter but
/// not list) backed up by its non-root owner is a per-file problem; the
/// snapshot commits (the whole run failed at commit: "cannot set time
/// of …partial/locked_dir").
#[test]
fn an_unreadable_folder_is_a_per_file_problem_for_its_owner() {
    let Some(user) = Unprivileged::get() else {
        return;
    };
    for locked in [0o000, 0o300] {
        let w = world("");
        w.write("locked_dir/inner.txt", "inside");
        w.write("open.txt", "outside");
        user.own(&w);
        let s1 = reported_snapshot(&w, &user.backup(&w, 0));
        set_mode(&w.src.join("locked_dir"), locked);
        w.write("open.txt", "outside, changed");
        user.own(&w);
        let r = user.run(&w, &["backup", "--force", "--json"]);
        set_mode(&w.src.join("locked_dir"), 0o755);
        assert_code(&r, 3, &format!("backup with a {locked:o} folder"));
        let v = r.json();
        assert_eq!(v["outcome"], "created", "{locked:o}: {v:#}");
        let s2 = reported_snapshot(&w, &v);
        assert_eq!(fs::read(s2.join("open.txt")).unwrap(), b"outside, changed");
        assert_eq!(
            inode(&s2.join("locked_dir/inner.txt")),
            inode(&s1.join("locked_dir/inner.txt")),
            "{locked:o}: the folder's last good content is not kept"
        );
        assert_eq!(entry(&s2, "locked_dir").unwrap()["mode"], locked);
    }
}

/// Reliability v2 #20: an unwritable `log_file` is a warning in the run's
/// output, never silently no log (and never a failed backup).
#[test]
fn an_unwritable_log_file_is_a_warning() {
    let w = world("log_file = \"logs/backup.log\"");
    let Some(mount) = TmpfsMount::new(&w.dir.path().join("logs"), "1m") else {
        return;
    };
    mount.remount("ro");
    w.write("a.txt", "alpha");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("log_file") && warnings.contains("backup.log"),
        "{v:#}"
    );
    mount.remount("rw");
}

/// `backup-cli --profile P <args>` under `faketime -f <offset>` (from
/// apt), or `None` (printed) without faketime.
fn run_at(w: &backup_tests::World, offset: &str, args: &[&str]) -> Option<backup_tests::Run> {
    if std::process::Command::new("faketime")
        .arg("-f")
        .arg("+0")
        .arg("true")
        .status()
        .is_err()
    {
        eprintln!("SKIPPED: faketime is not installed (apt-get install faketime)");
        return None;
    }
    let mut cmd = std::process::Command::new("faketime");
    cmd.args(["-f", offset])
        .arg(&w.bin)
        .arg("--profile")
        .arg(&w.profile)
        .args(args);
    cmd.env_remove("RUST_LOG");
    Some(backup_tests::bounded::run_timeout(
        cmd,
        Duration::from_secs(120),
    ))
}

/// Reliability v2 #5: "latest", rotation and once-per-day follow the order
/// snapshots were made in (a sequence each records), not their names or
/// dates. After runs under `faketime -400d` and `+400d`, a real run still
/// runs, `restore latest` gives the newest data (it gave the future-dated
/// snapshot's before), `max_backups = 1` keeps the newest real one (it kept
/// the future one), and the future-dated snapshot is reported.
#[test]
fn a_wrong_clock_never_decides_latest_rotation_or_once_per_day() {
    let w = world("once_per_day = true");
    w.write("data.txt", "v1");
    let Some(r) = run_at(&w, "-400d", &["backup", "--json"]) else {
        return;
    };
    assert_code(&r, 0, "backup 400 days ago");
    let past = r.json()["snapshot"].as_str().unwrap().to_owned();
    w.write("data.txt", "v2");
    let r = run_at(&w, "+400d", &["backup", "--json"]).unwrap();
    assert_code(&r, 0, "backup 400 days ahead");
    let future = r.json()["snapshot"].as_str().unwrap().to_owned();
    assert!(future > past, "{future} {past}");

    w.write("data.txt", "v3");
    let r = run(&w, &["backup", "--json"]);
    assert_code(&r, 0, "the real run");
    let v = r.json();
    assert_eq!(
        v["outcome"], "created",
        "once-per-day skipped a real run: {v:#}"
    );
    let now = v["snapshot"].as_str().unwrap().to_owned();
    assert!(
        v["warnings"].to_string().contains(&future),
        "the future-dated snapshot is not reported: {v:#}"
    );
    assert_eq!(info(&w.snapshot(&now))["sequence"], 3);
    // Once per day holds for the real day.
    let r = run(&w, &["backup", "--json"]);
    assert_eq!(r.json()["outcome"], "skipped_not_due");

    let to = w.dir.path().join("restored");
    let r = run(&w, &["restore", "latest", "--to", to.to_str().unwrap()]);
    assert_code(&r, 0, "restore latest");
    assert_eq!(
        fs::read(to.join("data.txt")).unwrap(),
        b"v3",
        "latest is not the newest"
    );
    let r = run(&w, &["status", "--json"]);
    assert_eq!(r.json()["last_snapshot"], now.as_str());

    let mut profile = fs::read_to_string(&w.profile).unwrap();
    profile.push_str("max_backups = 1\n");
    fs::write(&w.profile, profile).unwrap();
    w.write("data.txt", "v4");
    let v = backup(&w, 0);
    let newest = v["snapshot"].as_str().unwrap().to_owned();
    assert_eq!(w.snapshot_names(), vec![newest.clone()], "{v:#}");
    assert_eq!(
        fs::read(w.snapshot(&newest).join("data.txt")).unwrap(),
        b"v4"
    );
}

/// Issue 13 (3): a destination without hard links (exFAT, the usual
/// Windows backup drive) still gets complete snapshots, by copying, and the
/// run says once why it uses more space. A real exFAT, through FUSE.
#[test]
fn a_destination_without_hard_links_gets_complete_copies_and_one_warning() {
    let w = world("max_backups = 2");
    let image_file = w.dir.path().join("exfat.img");
    let Some(_mount) = ExfatMount::new(&w.dest, &image_file, 32) else {
        return;
    };
    w.write("a.txt", "alpha");
    w.write("sub/b.txt", "beta");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert_eq!(v["files_copied"], 2, "{v:#}");
    assert_eq!(
        v["warnings"],
        serde_json::json!([]),
        "nothing to link yet: {v:#}"
    );

    w.write("c.txt", "gamma");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert_eq!(
        (&v["files_copied"], &v["files_linked"]),
        (&3.into(), &0.into()),
        "{v:#}"
    );
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per run: {warnings:?}");
    assert!(
        warnings[0].contains("refused hard links") && warnings[0].contains("2 unchanged file(s)"),
        "{warnings:?}"
    );
    // Both snapshots complete, each on its own.
    let names = w.snapshot_names();
    assert_eq!(names.len(), 2, "{names:?}");
    let latest = w.snapshot(&names[1]);
    assert_eq!(fs::read(latest.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(latest.join("sub/b.txt")).unwrap(), b"beta");
    assert_eq!(fs::read(latest.join("c.txt")).unwrap(), b"gamma");
    assert_eq!(
        fs::read(w.snapshot(&names[0]).join("a.txt")).unwrap(),
        b"alpha"
    );
    verify_all_clean(&w);
    let to = w.dir.path().join("restored");
    let (r, _) = restore_json(&w, &names[1], &to, &[]);
    assert_code(&r, 0, "restore from exFAT");
    assert_eq!(fs::read(to.join("sub/b.txt")).unwrap(), b"beta");

    // Rotation (max_backups = 2) deletes the oldest copy; the others stay whole.
    w.write("a.txt", "alpha 2");
    let v = backup(&w, 0);
    assert_eq!(v["rotate"].as_array().map(Vec::len), Some(1), "{v:#}");
    let names = w.snapshot_names();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        fs::read(w.snapshot(&names[0]).join("a.txt")).unwrap(),
        b"alpha"
    );
    assert_eq!(
        fs::read(w.snapshot(&names[1]).join("a.txt")).unwrap(),
        b"alpha 2"
    );
    assert_eq!(
        fs::read(w.snapshot(&names[1]).join("c.txt")).unwrap(),
        b"gamma"
    );
    verify_all_clean(&w);
}
