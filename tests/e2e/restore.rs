//! `restore`: every kept snapshot restores to exactly the source at its
//! time (contents, modes, nanosecond mtimes, links), partial restores,
//! target rules and snapshot selection, and what a restore refuses:
//! manifest paths that escape the target, writing through a symlinked
//! folder, and bytes whose SHA-256 no longer matches.

use std::collections::BTreeMap;
use std::fs;
#[cfg(unix)]
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use backup_tests::clock::avoid_minute_boundary;
#[cfg(unix)]
use backup_tests::files::set_link_mtime;
use backup_tests::files::{flip_byte, mode, put, set_dir_mtime, set_mode};
use backup_tests::hash::sha256_hex;
use backup_tests::json::{single_json, strings, sv};
use backup_tests::manifest::manifest_path;
use backup_tests::trees::build_rich_source;
use backup_tests::trees::exact::{
    assert_trees_equal, count_files, full_tree, restored_tree, Node, Tree,
};
use backup_tests::{assert_code, backup_created, restore_json, World};
use filetime::FileTime;
use serde_json::Value;

use crate::world;

#[test]
fn restore_of_every_kept_snapshot_equals_the_source_at_its_time() {
    let w = world("max_backups = 3");
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
    set_mode(&w.src.join("secret.key"), 0o640);
    fs::remove_file(w.src.join("sub/b.bin")).unwrap();
    step(&w);

    // Run 3: symlink retargeted (on Unix), empty folder replaced, script
    // content changed.
    #[cfg(unix)]
    {
        fs::remove_file(w.src.join("link")).unwrap();
        symlink("new.txt", w.src.join("link")).unwrap();
        set_link_mtime(&w.src.join("link"), 1_550_000_500, 0);
    }
    fs::remove_dir(w.src.join("empty")).unwrap();
    fs::create_dir(w.src.join("empty2")).unwrap();
    set_mode(&w.src.join("empty2"), 0o700);
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
    // (Not on Windows, whose scan compares sizes and mtimes only: see
    // "What is not guaranteed" in docs/RELIABILITY.md.)
    #[cfg(unix)]
    {
        let secret = w.src.join("secret.key");
        let old_mtime = FileTime::from_last_modification_time(&fs::metadata(&secret).unwrap());
        put(&w, "secret.key", b"TOPSECRET-0002", 0o640, 0, 0);
        filetime::set_file_mtime(&secret, old_mtime).unwrap();
    }
    step(&w);

    // Run 5: mode change on the script, truncation, names with spaces, re-added path.
    set_mode(&w.src.join("script.sh"), 0o700);
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
fn partial_restore_writes_only_the_requested_paths() {
    let w = world("");
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

#[test]
#[cfg(unix)]
fn restore_target_rules_and_snapshot_selection() {
    avoid_minute_boundary(5);
    let w = world("");
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
    set_mode(&p, 0o644);
    fs::write(&p, lines.join("\n") + "\n").unwrap();
}

#[test]
fn restore_refuses_manifest_paths_that_escape_the_target() {
    let w = world("");
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

#[test]
fn restore_reports_a_flipped_byte_as_a_mismatch() {
    let w = world("");
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
    // Reliability v2 #7: the damaged bytes never appear under the real
    // name (they did before), and no temporary copy is left.
    assert!(!to.join("dir/bad.bin").exists(), "damaged bytes restored");
    let left: Vec<_> = fs::read_dir(to.join("dir")).unwrap().collect();
    assert!(left.is_empty(), "left in the target: {left:?}");
    assert!(
        mism[0]["error"].as_str().unwrap().contains("--repair"),
        "{v:#}"
    );
}

/// `restore --overwrite` into a folder where a subfolder is now a symlink
/// never writes through the symlink (outside the target).
#[test]
#[cfg(unix)]
fn overwrite_restore_never_writes_through_a_symlinked_folder() {
    let w = world("");
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

/// Reliability v2, point 10: ownership is not restored, so a setuid or
/// setgid file would come back set-id to the restoring user (root, say).
/// Restore clears those bits, as tar does without `--same-owner`, and says
/// so in the report; the manifest keeps the original mode.
#[test]
#[cfg(unix)]
fn restore_clears_setuid_and_setgid_and_says_so() {
    let w = world("");
    w.write("bin/tool", "#!/bin/sh\necho hi\n");
    w.write("bin/plain", "#!/bin/sh\necho plain\n");
    set_mode(&w.src.join("bin/tool"), 0o6755);
    set_mode(&w.src.join("bin/plain"), 0o755);
    let (name, _) = backup_created(&w);
    let out = w.dir.path().join("restored");
    let (r, v) = restore_json(&w, &name, &out, &[]);
    assert_code(&r, 0, "restore");
    assert_eq!(
        mode(&out.join("bin/tool")) & 0o7777,
        0o755,
        "set-id bits cleared"
    );
    assert_eq!(mode(&out.join("bin/plain")) & 0o7777, 0o755);
    assert_eq!(
        strings(&v["setid_cleared"]),
        vec!["bin/tool".to_string()],
        "{v:#}"
    );
    let out2 = w.dir.path().join("restored-text");
    let r = w.run(&["restore", &name, "--to", out2.to_str().unwrap()]);
    assert_code(&r, 0, "restore, text");
    assert!(
        r.stdout.contains("bin/tool") && r.stdout.contains("setuid"),
        "{}",
        r.stdout
    );
}

/// Reliability v2 #9: a tampered manifest naming a file below a symlink
/// the snapshot holds (`lnk -> outside`, `lnk/secret`) never makes restore
/// or verify read through the link: restore reports the line as damage
/// and writes nothing of the outside file; verify reports it corrupt (it
/// copied the outside file and verify called the snapshot clean before).
#[test]
#[cfg(unix)]
fn restore_and_verify_never_read_through_a_symlink_in_the_snapshot() {
    let w = world("");
    let outside = w.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let secret = b"the outside secret\n";
    fs::write(outside.join("secret"), secret).unwrap();
    put(&w, "a.txt", "payload\n", 0o644, 1_600_000_000, 0);
    symlink(&outside, w.src.join("lnk")).unwrap();
    let (name, _) = backup_created(&w);
    let snap = w.snapshot(&name);
    let p = manifest_path(&snap);
    let mut text = fs::read_to_string(&p).unwrap();
    let line = serde_json::json!({
        "path": "lnk/secret", "kind": "file", "size": secret.len(), "mtime_ns": 0,
        "mode": 0o644, "sha256": sha256_hex(secret), "ctime_ns": 0, "ino": 0,
    });
    text.push_str(&format!("{line}\n"));
    set_mode(&p, 0o644);
    fs::write(&p, text).unwrap();

    let to = w.dir.path().join("restored");
    let r = w.run(&["restore", "latest", "--to", to.to_str().unwrap(), "--json"]);
    assert_ne!(r.code, 0, "restore read through the link: {}", r.stdout);
    assert!(
        r.stdout.contains("lnk/secret"),
        "not reported: {}",
        r.stdout
    );
    // Nothing in the target (not following its own restored symlink) holds
    // the outside bytes.
    fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                regular_files(&e.path(), out);
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    regular_files(&to, &mut files);
    for f in &files {
        assert_ne!(
            fs::read(f).unwrap(),
            secret,
            "{} holds the outside file",
            f.display()
        );
    }
    assert_eq!(fs::read(to.join("a.txt")).unwrap(), b"payload\n");

    let r = w.run(&["verify", "--all", "--json"]);
    assert_code(&r, 1, "verify of a tampered snapshot");
    let v = r.json();
    assert!(
        v["corrupt"].to_string().contains("lnk/secret")
            || v["missing"].to_string().contains("lnk/secret"),
        "verify called it clean: {v:#}"
    );
}
