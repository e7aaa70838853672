//! `verify`: a clean snapshot checks clean; a flipped byte, a deleted and
//! an added file are reported as corrupt, missing and unexpected, for the
//! latest snapshot, a named one, or `--all`.

use std::fs;
use std::os::unix::fs::symlink;

use backup_tests::files::{flip_byte, inode, put, set_mode};
use backup_tests::json::{single_json, snapshot_paths};
use backup_tests::{assert_code, backup_created};
use serde_json::Value;

use crate::world;

#[test]
fn verify_finds_corrupt_missing_and_unexpected_files() {
    let w = world("");
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
    set_mode(&snap.join("sub"), 0o755);
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
    let w = world("");
    put(&w, "same.txt", "same in both\n", 0o644, 1_600_000_000, 0);
    put(&w, "changes.txt", "version one\n", 0o644, 1_600_000_000, 0);
    let (a, _) = backup_created(&w);
    put(&w, "changes.txt", "version two!\n", 0o644, 1_600_000_100, 0);
    let (b, _) = backup_created(&w);
    // The older snapshot's own copy (not shared with the newer one).
    assert_ne!(
        inode(&w.snapshot(&a).join("changes.txt")),
        inode(&w.snapshot(&b).join("changes.txt"))
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
