//! `diff`: files added, changed (content, mode, link target) and removed
//! between two snapshots, or a snapshot and the source now; folders and
//! mtime-only changes are not differences.

use std::fs;
use std::os::unix::fs::symlink;

use backup_tests::files::{put, set_mode, set_mtime};
use backup_tests::json::{keys, single_json, strings, sv};
use backup_tests::{assert_code, backup_created};

use crate::world;

#[test]
fn diff_lists_added_changed_and_removed_files_but_not_folders() {
    let w = world("");
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
    set_mode(&w.src.join("mode.txt"), 0o755);
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
    set_mtime(&w.src.join("same.txt"), 1_700_000_000);
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
