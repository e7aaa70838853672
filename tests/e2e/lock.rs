//! One run at a time: a run that finds the lock held skips, names the
//! holder and leaves its lock alone; a lock file nobody holds does not
//! block; the lock file is gone after every run, also after failures.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::{Duration, Instant};

use backup_tests::assert_code;
use backup_tests::bounded::{backup, run, spawn_backup};
#[cfg(unix)]
use backup_tests::faults::TmpfsMount;
use backup_tests::files::inode;
use backup_tests::prng::Rng;
use backup_tests::snapshots::leftovers;

use crate::world;

#[test]
fn lock_held_by_another_process_skips_and_names_the_holder() {
    let w = world("");
    w.write("a.txt", "a");
    let lock = w.lock_path();
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
    let held_inode = inode(&lock);

    for attempt in 0..2 {
        let r = run(&w, &["backup", "--force", "--json"]);
        assert_code(&r, 0, "backup while the lock is held");
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
            inode(&lock),
            held_inode,
            "the skipping run replaced the holder's lock file"
        );
    }

    // Closing it releases the lock (Wine's unlock fails where Windows'
    // does not: the second of the two unlocks std makes).
    drop(held);
    // The file is still there (the holder "crashed" without removing it):
    // released, it no longer blocks.
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert!(!lock.exists(), "lock file left after a successful run");
}

#[test]
fn lock_held_by_a_running_backup_skips_and_names_its_pid() {
    let w = world("");
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
    let lock = w.lock_path();
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
    assert_code(&r, 0, "second run");
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
    let w = world("");
    w.write("a.txt", "a");
    let lock = w.lock_path();
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
    let w = world("");
    w.write("a.txt", "a");
    let lock = w.lock_path();
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created");
    assert!(!lock.exists(), "lock file left after a successful run");
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "no_changes");
    assert!(!lock.exists(), "lock file left after a no_changes run");

    // Make the next run fail once it holds the lock: the destination's
    // folder becomes a regular file, so the destination cannot be created.
    // (A destination that is itself a file is now refused before the run,
    // with exit 2: reliability v2, point 20.)
    w.write("a.txt", "changed");
    fs::rename(&w.dest, w.dir.path().join("dest.moved")).unwrap();
    fs::write(&w.dest, "not a folder").unwrap();
    let text = fs::read_to_string(&w.profile).unwrap();
    fs::write(
        &w.profile,
        text.replace("destination = \"dest\"", "destination = \"dest/inner\""),
    )
    .unwrap();
    let r = run(&w, &["backup", "--force", "--json"]);
    assert_code(&r, 1, "backup into a destination that cannot be created");
    let v = r.json();
    assert_eq!(v["outcome"], "failed", "{v:#}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v:#}");
    assert!(!lock.exists(), "lock file left after a failed run");
}

#[test]
fn destination_that_cannot_be_created_fails_and_leaves_no_lock() {
    let w = world("");
    w.write("a.txt", "a");
    let blocker = w.dir.path().join("blocker");
    fs::write(&blocker, "a regular file where a folder should be").unwrap();
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"blocker/dest\"\n",
    )
    .unwrap();
    let r = run(&w, &["backup", "--force", "--json"]);
    assert_code(&r, 1, "backup into a destination under a regular file");
    let v = r.json();
    assert_eq!(v["outcome"], "failed", "{v:#}");
    let err = v["error"].as_str().unwrap_or("");
    assert!(
        err.contains("blocker"),
        "the error does not name the destination: {err}"
    );
    assert!(!w.lock_path().exists(), "lock file left after a failed run");
    assert!(
        fs::read(&blocker).unwrap() == b"a regular file where a folder should be",
        "the blocking file was changed"
    );
}

#[test]
#[cfg(unix)]
fn failure_after_commit_still_removes_the_lock() {
    // The metadata file cannot be written (its folder is a full file
    // system): the run fails late, after the snapshot was written. (A
    // metadata_file naming a folder is refused up front, exit 2.)
    let w = world("metadata_file = \"meta/backup_metadata.json\"");
    let Some(_mount) = TmpfsMount::new(&w.dir.path().join("meta"), "64k") else {
        return;
    };
    fill(&w.dir.path().join("meta/filler"));
    w.write("a.txt", "a");
    let r = run(&w, &["backup", "--force", "--json"]);
    // The snapshot was committed before the metadata failed: that is not a
    // rolled-back failure but a created snapshot with a warning.
    assert_code(&r, 0, "metadata write fails after commit");
    let v = r.json();
    assert_eq!(v["outcome"], "created", "{v:#}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("backup_metadata.json"), "{v:#}");
    assert!(!w.lock_path().exists(), "lock file left after the run");
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
    assert!(!w.lock_path().exists());
}

/// Fills the file system holding `path` with a file there.
#[cfg(unix)]
fn fill(path: &std::path::Path) {
    let mut f = fs::File::create(path).unwrap();
    let block = [0xa5u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// Reliability v2 #6: deleting the lock file during a run lets a second
/// run start, but it never removes the first run's `.partial` (it removed
/// it as a leftover, and both runs failed): the first still commits, the
/// second writes its own snapshot, and every snapshot verifies.
#[test]
fn a_deleted_lock_file_never_lets_a_second_run_remove_the_first_ones_work() {
    let w = world("");
    // Slow enough to overlap: 1 GiB of (sparse) zeros to read and hash.
    w.write("small.txt", "small");
    let big = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(w.src.join("big.bin"))
        .unwrap();
    big.set_len(1 << 30).unwrap();
    drop(big);
    let mut first = w
        .command(&["backup", "--force", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let partial = loop {
        let found = fs::read_dir(&w.dest).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.ends_with(".partial"))
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended too soon"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no partial snapshot"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    fs::remove_file(w.lock_path()).unwrap();
    let second = run(&w, &["backup", "--force", "--json"]);
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the first run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v1: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v1["outcome"], "created", "{v1:#}");
    assert_code(&second, 0, "the second run");
    let v2 = second.json();
    // Where a deleted file keeps its name while it is open (Windows before
    // POSIX deletes, Wine), the second run still finds the first's lock.
    if !(cfg!(windows) && v2["outcome"] == "skipped_locked") {
        assert_eq!(v2["outcome"], "created", "{v2:#}");
        assert_ne!(v1["snapshot"], v2["snapshot"]);
    }
    assert!(
        partial.contains(v1["snapshot"].as_str().unwrap()),
        "{partial} was the first run's"
    );
    assert!(leftovers(&w.dest).is_empty(), "{:?}", leftovers(&w.dest));
    backup_tests::bounded::verify_all_clean(&w);
}
