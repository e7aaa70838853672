//! `verify`: a clean snapshot checks clean; a flipped byte, a deleted and
//! an added file are reported as corrupt, missing and unexpected, for the
//! latest snapshot, a named one, or `--all`.

use std::fs;

use backup_tests::files::{flip_byte, inode, put, set_mode};
use backup_tests::json::{single_json, snapshot_paths};
use backup_tests::{assert_code, backup_created};
use serde_json::Value;

use crate::world;

#[test]
#[cfg(unix)]
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
    std::os::unix::fs::symlink("keep.txt", w.src.join("ln")).unwrap();
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

/// Reliability v2 #7: `verify --repair` copies damaged and missing files
/// again from the source where the source still holds the recorded
/// content (in every snapshot sharing the damaged inode), reports the rest
/// with why, and a failed verify says how to use it.
#[test]
#[cfg(unix)]
fn verify_repair_copies_damaged_files_again_from_the_source() {
    let w = world("");
    put(
        &w,
        "sub/shared.txt",
        "stays the same\n",
        0o644,
        1_600_000_000,
        0,
    );
    put(&w, "changed.txt", "version one\n", 0o644, 1_600_000_000, 0);
    put(&w, "gone.txt", "will vanish\n", 0o644, 1_600_000_000, 0);
    let (s1, _) = backup_created(&w);
    put(&w, "other.txt", "a change\n", 0o644, 1_600_000_000, 0);
    let (s2, _) = backup_created(&w);
    let (p1, p2) = (w.snapshot(&s1), w.snapshot(&s2));
    assert_eq!(
        inode(&p1.join("sub/shared.txt")),
        inode(&p2.join("sub/shared.txt"))
    );
    // One flipped byte damages both snapshots (one inode); the source of
    // changed.txt moves on, so its damage cannot be repaired; gone.txt is
    // deleted from the newest snapshot.
    flip_byte(&p2.join("sub/shared.txt"), 3);
    flip_byte(&p2.join("changed.txt"), 3);
    put(&w, "changed.txt", "version two\n", 0o644, 1_600_000_000, 0);
    set_mode(&p2, 0o755);
    fs::remove_file(p2.join("gone.txt")).unwrap();
    set_mode(&p2, 0o555);

    let r = w.run(&["verify", "--all"]);
    assert_code(&r, 1, "verify of damaged snapshots");
    assert!(r.stdout.contains("verify --all --repair"), "{}", r.stdout);

    let r = w.run(&["verify", "--all", "--repair", "--json"]);
    assert_code(&r, 1, "changed.txt cannot be repaired");
    let v = single_json(&r);
    let repaired = snapshot_paths(&v["repair"]["repaired"]);
    for want in [
        (s1.clone(), "sub/shared.txt"),
        (s2.clone(), "sub/shared.txt"),
        (s2.clone(), "gone.txt"),
    ] {
        assert!(
            repaired.contains(&(want.0.clone(), want.1.to_string())),
            "{want:?} not repaired: {v:#}"
        );
    }
    let not = v["repair"]["not_repaired"].as_array().unwrap();
    assert_eq!(not.len(), 2, "changed.txt in both snapshots: {v:#}");
    assert!(not
        .iter()
        .all(|n| n["path"] == "changed.txt"
            && n["reason"].as_str().unwrap().contains("no longer holds")));
    // The verify after the repair: only changed.txt is left.
    assert_eq!(
        snapshot_paths(&v["corrupt"]),
        vec![
            (s1.clone(), "changed.txt".to_string()),
            (s2.clone(), "changed.txt".to_string())
        ]
    );
    assert_eq!(v["missing"], Value::Array(vec![]), "{v:#}");
    for p in [&p1, &p2] {
        assert_eq!(
            fs::read(p.join("sub/shared.txt")).unwrap(),
            b"stays the same\n"
        );
        assert_eq!(backup_tests::files::mode(&p.join("sub/shared.txt")), 0o444);
        assert_eq!(
            backup_tests::files::mode(&p.join("sub")),
            0o555,
            "folder left writable"
        );
    }
    assert_eq!(fs::read(p2.join("gone.txt")).unwrap(), b"will vanish\n");
}
