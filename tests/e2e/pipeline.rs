//! The backup pipeline: snapshots are byte-identical, read-only and
//! hard-linked where unchanged; rotation, exclusions, `.gitignore`, the
//! destination inside the source, profiles, once per day, dry runs,
//! renames, mode- and mtime-only changes, the metadata file, symlinks and
//! empty folders, snapshot names within one minute, and two projects
//! sharing a destination. Asserts bytes, inodes, modes, exit codes and the
//! JSON report.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use backup_tests::clock::avoid_minute_boundary;
use backup_tests::files::{inode, mode, put, set_mode, set_mtime};
use backup_tests::hash::sha256_hex;
use backup_tests::json::strings;
use backup_tests::manifest::manifest_by_path;
use backup_tests::trees::listing;
use backup_tests::{backup_created, tree, World};
use serde_json::Value;

use crate::{world, BIN};

// ---------------------------------------------------------------- helpers

/// A world whose profile file is exactly `profile` (instead of the harness
/// default), with `dest` pointing at `dest_rel` below the world's root.
fn world_with(profile: &str, dest_rel: &str) -> World {
    let mut w = world("");
    fs::write(&w.profile, profile).unwrap();
    w.dest = w.dir.path().join(dest_rel);
    w
}

fn mtime_ns(p: &Path) -> i64 {
    let t = filetime::FileTime::from_last_modification_time(&fs::symlink_metadata(p).unwrap());
    t.unix_seconds() * 1_000_000_000 + i64::from(t.nanoseconds())
}

/// The `snapshot` field of a report.
fn snap_of(report: &Value) -> String {
    report["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("report has no snapshot name: {report:#}"))
        .to_owned()
}

fn outcome(report: &Value) -> &str {
    report["outcome"].as_str().unwrap()
}

fn num(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report field {key} is not a number: {report:#}"))
}

/// `backup_metadata.json` of the world, parsed.
fn metadata(w: &World) -> Value {
    let bytes = fs::read(w.src.join("backup_metadata.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "backup_metadata.json is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Regular files below `root` (relative paths), skipping the snapshot's
/// own `.backup-snapshot` folder.
fn regular_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy();
            let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
            if rel == ".backup-snapshot" {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// `tree()` minus every entry at or below one of `gone`.
fn tree_without(root: &Path, gone: &[&str]) -> Vec<(String, String)> {
    tree(root)
        .into_iter()
        .filter(|(p, _)| {
            !gone
                .iter()
                .any(|g| p == g || p.starts_with(&format!("{g}/")))
        })
        .collect()
}

fn assert_created(report: &Value) {
    assert_eq!(outcome(report), "created", "report: {report:#}");
}

// ------------------------------------------------------------------ tests

#[test]
#[cfg(unix)]
fn full_backup_is_byte_identical_read_only_and_manifest_keeps_modes() {
    let w = world("");
    w.write("a.txt", "alpha\n");
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    w.write("bin/data.bin", &binary);
    w.write("deep/er/nested/n.md", "# nested\n");
    w.write("empty_file", "");
    w.write("tool.sh", "#!/bin/sh\necho hi\n");
    set_mode(&w.src.join("tool.sh"), 0o755);
    set_mode(&w.src.join("a.txt"), 0o640);
    let before = tree(&w.src);

    let r = w.backup(0);
    assert_created(&r);
    let name = snap_of(&r);
    assert!(name.starts_with("Proj_backup_"), "{name}");
    assert_eq!(w.snapshot_names(), vec![name.clone()]);
    let snap = w.snapshot(&name);
    assert_eq!(
        Path::new(r["snapshot_path"].as_str().unwrap()),
        snap.as_path()
    );
    assert_eq!(num(&r, "files_total"), 5);
    assert_eq!(num(&r, "files_copied"), 5);
    assert_eq!(num(&r, "files_linked"), 0);
    assert_eq!(num(&r, "files_failed"), 0);
    // a.txt + data.bin + n.md + empty_file + tool.sh
    let total_bytes = 6 + 300_000 + 9 + 18;
    assert_eq!(num(&r, "bytes_total"), total_bytes);
    assert_eq!(num(&r, "bytes_copied"), total_bytes);

    // Byte-identical, and the source is untouched.
    assert_eq!(tree(&snap), before);
    assert_eq!(tree(&w.src), before);

    // Every file in the snapshot is read-only.
    let files = regular_files(&snap);
    assert_eq!(files.len(), 5);
    for f in &files {
        let m = mode(&snap.join(f));
        assert_eq!(m & 0o222, 0, "{f} has write bits: {m:o}");
    }
    // ... while the source keeps its modes.
    assert_eq!(mode(&w.src.join("a.txt")), 0o640);

    // The manifest: one JSON object per line, the original modes and hashes.
    let man = manifest_by_path(&snap);
    for (path, content, m) in [
        ("a.txt", b"alpha\n".to_vec(), 0o640),
        ("bin/data.bin", binary.clone(), 0o644),
        ("tool.sh", b"#!/bin/sh\necho hi\n".to_vec(), 0o755),
        ("empty_file", Vec::new(), 0o644),
    ] {
        let e = man
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in manifest"));
        for key in ["path", "kind", "size", "mtime_ns", "mode", "sha256"] {
            assert!(e.get(key).is_some(), "manifest entry lacks {key}: {e}");
        }
        assert_eq!(e["kind"], "file", "{e}");
        assert_eq!(e["size"].as_u64().unwrap(), content.len() as u64, "{e}");
        assert_eq!(e["mode"].as_u64().unwrap() as u32 & 0o7777, m, "{e}");
        assert_eq!(e["sha256"].as_str().unwrap(), sha256_hex(&content), "{e}");
        assert_eq!(
            e["mtime_ns"].as_i64().unwrap(),
            mtime_ns(&w.src.join(path)),
            "{e}"
        );
    }
    assert_eq!(man["bin"]["kind"], "dir");
    assert_eq!(man["deep/er/nested"]["kind"], "dir");
    // Exactly the source's paths, no more.
    let expected_paths: BTreeSet<String> = before.iter().map(|(p, _)| p.clone()).collect();
    let manifest_paths: BTreeSet<String> = man.keys().cloned().collect();
    assert_eq!(manifest_paths, expected_paths);
}

#[test]
fn one_changed_file_is_copied_and_the_rest_hard_linked() {
    let w = world("");
    w.write("a.txt", "alpha");
    w.write("b.txt", "bravo");
    w.write("sub/c.txt", "charlie");
    w.write("sub/deeper/d.bin", vec![7u8; 10_000]);
    let tree1 = tree(&w.src);
    let r1 = w.backup(0);
    assert_created(&r1);
    let s1 = w.snapshot(&snap_of(&r1));

    w.write("b.txt", "bravo, version two");
    let tree2 = tree(&w.src);
    let r2 = w.backup(0);
    assert_created(&r2);
    let s2 = w.snapshot(&snap_of(&r2));
    assert_ne!(s1, s2);

    assert_eq!(num(&r2, "files_total"), 4);
    assert_eq!(num(&r2, "files_copied"), 1);
    assert_eq!(num(&r2, "files_linked"), 3);
    assert_eq!(num(&r2, "bytes_copied"), 18);
    assert_eq!(r2["changes"]["modified"], 1);
    assert_eq!(r2["changes"]["added"], 0);
    assert_eq!(r2["changes"]["removed"], 0);

    for f in ["a.txt", "sub/c.txt", "sub/deeper/d.bin"] {
        assert_eq!(
            inode(&s1.join(f)),
            inode(&s2.join(f)),
            "{f} is not hard-linked"
        );
    }
    assert_ne!(inode(&s1.join("b.txt")), inode(&s2.join("b.txt")));

    // Both snapshots are complete, each equal to the tree at its time.
    assert_eq!(tree(&s1), tree1);
    assert_eq!(tree(&s2), tree2);
    assert_eq!(w.snapshot_names().len(), 2);
}

#[test]
fn no_change_makes_no_snapshot() {
    let w = world("");
    w.write("a.txt", "alpha");
    w.write("sub/b.txt", "bravo");
    let r1 = w.backup(0);
    assert_created(&r1);
    let names = w.snapshot_names();
    let dest_before = listing(&w.dest);

    let r = w.run(&["backup", "--force", "--json"]);
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    let j = r.json();
    assert_eq!(outcome(&j), "no_changes", "{j:#}");
    assert_eq!(num(&j, "files_copied"), 0);
    assert_eq!(num(&j, "files_total"), 2);
    assert_eq!(w.snapshot_names(), names);
    assert_eq!(listing(&w.dest), dest_before);
}

#[test]
fn rotation_keeps_the_newest_three_and_they_stay_complete() {
    let w = world("max_backups = 3");
    let stable: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    w.write("stable.bin", &stable);
    let mut names: Vec<String> = Vec::new();
    let mut trees = Vec::new();
    for run in 1..=6 {
        w.write("changing.txt", format!("version {run}"));
        trees.push(tree(&w.src));
        let r = w.backup(0);
        assert_created(&r);
        let name = snap_of(&r);
        let rotated = strings(&r["rotate"]);
        if run <= 3 {
            assert!(rotated.is_empty(), "run {run} rotated {rotated:?}");
        } else {
            assert_eq!(
                rotated,
                vec![names[run - 4].clone()],
                "run {run} must delete exactly the oldest snapshot"
            );
        }
        names.push(name);
    }
    let kept: BTreeSet<String> = names[3..].iter().cloned().collect();
    let present: BTreeSet<String> = w.snapshot_names().into_iter().collect();
    assert_eq!(present, kept);
    // Nothing else left behind in the destination (no .deleting/.partial).
    let all: BTreeSet<String> = listing(&w.dest).into_iter().collect();
    assert_eq!(all, kept);

    let first_inode = inode(&w.snapshot(&names[3]).join("stable.bin"));
    for (i, name) in names.iter().enumerate().skip(3) {
        let snap = w.snapshot(name);
        assert_eq!(fs::read(snap.join("stable.bin")).unwrap(), stable, "{name}");
        assert_eq!(inode(&snap.join("stable.bin")), first_inode, "{name}");
        assert_eq!(tree(&snap), trees[i], "{name} is not the tree of its run");
    }
    // The metadata history lists only what is left.
    let meta = metadata(&w);
    let hist: BTreeSet<String> = meta["backup_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            Path::new(h["backup_dir"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(hist, kept);
}

#[test]
fn excluded_files_are_absent_from_the_snapshot() {
    let w = world(
        r#"exclude = ["secret.json", "build/", "/top_only.txt", "docs/**/*.md", "**/gen/*.out"]
exclude_if_present = [".nobackup"]"#,
    );
    // Kept.
    w.write("app.py", "print('hi')");
    w.write("notes.txt", "n");
    w.write("a.pyc.txt", "not a pyc");
    w.write("logs/readme.txt", "keep");
    w.write(".github/ci.yml", "ci");
    w.write("src2/build", "a FILE named build is kept");
    w.write("sub/top_only.txt", "only the top one is excluded");
    w.write("docs/keep.txt", "k");
    w.write("other/docs/a/x.md", "anchored pattern: not here");
    w.write("notcache/CACHEDIR.TAG", "Signature: not the right one");
    w.write("notcache/data", "d");
    // Default exclusions.
    w.write("__pycache__/m.cpython-311.pyc", "x");
    w.write("pkg/__pycache__/n.txt", "x");
    w.write("pkg/mod.pyc", "x");
    w.write("run.log", "x");
    w.write("deep/er/trace.log", "x");
    w.write("scratch.tmp", "x");
    w.write("sub/scratch.temp", "x");
    w.write(".git/config", "x");
    w.write("sub/.git/HEAD", "x");
    // Profile exclusions.
    w.write("secret.json", "x");
    w.write("sub/deep/secret.json", "x");
    w.write("build/out.o", "x");
    w.write("sub/build/out.o", "x");
    w.write("top_only.txt", "x");
    w.write("docs/x.md", "x");
    w.write("docs/a/b/y.md", "x");
    w.write("a/gen/z.out", "x");
    // exclude_if_present.
    w.write("skipme/.nobackup", "");
    w.write("skipme/data.txt", "x");
    w.write("sub/skip2/.nobackup", "");
    w.write("sub/skip2/inner/data.txt", "x");
    // Cache tag.
    w.write(
        "cache/CACHEDIR.TAG",
        "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    w.write("cache/blob", "x");

    let r = w.backup(0);
    assert_created(&r);
    let snap = w.snapshot(&snap_of(&r));
    let expected = tree_without(
        &w.src,
        &[
            "__pycache__",
            "pkg/__pycache__",
            "pkg/mod.pyc",
            "run.log",
            "deep/er/trace.log",
            "scratch.tmp",
            "sub/scratch.temp",
            ".git",
            "sub/.git",
            "secret.json",
            "sub/deep/secret.json",
            "build",
            "sub/build",
            "top_only.txt",
            "docs/x.md",
            "docs/a/b/y.md",
            "a/gen/z.out",
            "skipme",
            "sub/skip2",
            "cache",
        ],
    );
    // Sanity: the kept files really are in the expected tree.
    for keep in [
        "app.py",
        "a.pyc.txt",
        "logs/readme.txt",
        ".github/ci.yml",
        "src2/build",
        "sub/top_only.txt",
        "docs/keep.txt",
        "other/docs/a/x.md",
        "notcache/data",
    ] {
        assert!(expected.iter().any(|(p, _)| p == keep), "{keep}");
    }
    assert_eq!(tree(&snap), expected);
    assert_eq!(num(&r, "files_total"), 11);
}

#[test]
fn gitignore_is_honoured_only_when_asked() {
    let build = |extra: &str| {
        let w = world(extra);
        w.write(".gitignore", "ignored.txt\nignored_dir/\n*.bak\n");
        w.write("kept.txt", "k");
        w.write("ignored.txt", "i");
        w.write("sub/ignored.txt", "i");
        w.write("ignored_dir/f.txt", "i");
        w.write("sub/x.bak", "i");
        w.write("sub/.gitignore", "local_only.txt\n");
        w.write("sub/local_only.txt", "i");
        w.write(
            "local_only.txt",
            "kept: the sub .gitignore does not reach here",
        );
        w
    };

    let on = build("respect_gitignore = true");
    let r = on.backup(0);
    assert_created(&r);
    let snap = on.snapshot(&snap_of(&r));
    let expected = tree_without(
        &on.src,
        &[
            "ignored.txt",
            "sub/ignored.txt",
            "ignored_dir",
            "sub/x.bak",
            "sub/local_only.txt",
        ],
    );
    assert!(expected.iter().any(|(p, _)| p == "local_only.txt"));
    assert!(expected.iter().any(|(p, _)| p == ".gitignore"));
    assert_eq!(tree(&snap), expected);

    // Off by default: everything is backed up.
    let off = build("");
    let r = off.backup(0);
    assert_created(&r);
    let snap = off.snapshot(&snap_of(&r));
    assert_eq!(tree(&snap), tree(&off.src));
    assert!(snap.join("ignored_dir/f.txt").exists());
    assert!(snap.join("sub/x.bak").exists());
}

#[test]
fn destination_inside_source_and_state_files_are_never_backed_up() {
    let w = world_with(
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"src/backups\"\nmax_backups = 10\n",
        "src/backups",
    );
    w.write("a.txt", "alpha");
    w.write("sub/b.txt", "bravo");
    // A user's file that merely shares a state file's name, in a subfolder.
    w.write("sub/backup_metadata.json", "{\"user\": true}");
    for run in 1..=3 {
        w.write("changing.txt", format!("run {run}"));
        let r = w.backup(0);
        assert_created(&r);
        assert_eq!(num(&r, "files_total"), 4, "run {run}: {r:#}");
        assert!(w.src.join("backup_metadata.json").exists());
        assert!(w.src.join("backup_operations.log").exists());
        let expected = tree_without(&w.src, &["backups"]);
        for name in w.snapshot_names() {
            let snap = w.snapshot(&name);
            assert!(
                !snap.join("backups").exists(),
                "{name} contains the destination"
            );
            for state in [
                "backup_metadata.json",
                "backup_operations.log",
                "backup_in_progress.lock",
            ] {
                assert!(
                    fs::symlink_metadata(snap.join(state)).is_err(),
                    "{name} contains the state file {state}"
                );
            }
            assert!(snap.join("sub/backup_metadata.json").exists());
        }
        let newest = w.snapshot(&snap_of(&r));
        assert_eq!(tree(&newest), expected);
    }
    assert_eq!(w.snapshot_names().len(), 3);
}

#[test]
fn foreign_folders_in_the_destination_survive_rotation() {
    let w = world("max_backups = 2");
    fs::create_dir_all(w.dest.join("my notes")).unwrap();
    fs::write(w.dest.join("my notes/n.txt"), "mine").unwrap();
    let fake = "Proj_backup_2020-01-01_00-00";
    fs::create_dir_all(w.dest.join(fake)).unwrap();
    fs::write(w.dest.join(fake).join("old.txt"), "not made by the tool").unwrap();
    fs::write(w.dest.join("stray.txt"), "stray").unwrap();

    w.write("a.txt", "alpha");
    let mut names = Vec::new();
    let mut rotated = Vec::new();
    for run in 1..=4 {
        w.write("changing.txt", format!("run {run}"));
        let r = w.backup(0);
        assert_created(&r);
        if run == 1 {
            assert_eq!(
                num(&r, "files_copied"),
                2,
                "the fake folder must not serve as a base"
            );
        }
        names.push(snap_of(&r));
        rotated.extend(strings(&r["rotate"]));
    }
    assert_eq!(rotated, names[..2].to_vec());

    // Foreign things untouched.
    assert_eq!(
        fs::read_to_string(w.dest.join("my notes/n.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        fs::read_to_string(w.dest.join(fake).join("old.txt")).unwrap(),
        "not made by the tool"
    );
    assert_eq!(
        fs::read_to_string(w.dest.join("stray.txt")).unwrap(),
        "stray"
    );
    // Ours: exactly the newest two; the fake one is not counted.
    let mut expected: BTreeSet<String> = names[2..].iter().cloned().collect();
    let ours: BTreeSet<String> = w
        .snapshot_names()
        .into_iter()
        .filter(|n| n != fake)
        .collect();
    assert_eq!(ours, expected);
    expected.insert(fake.to_owned());
    expected.insert("my notes".to_owned());
    expected.insert("stray.txt".to_owned());
    let all: BTreeSet<String> = listing(&w.dest).into_iter().collect();
    assert_eq!(all, expected);

    let l = w.run(&["list", "--json"]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    let listed: Vec<String> = l
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, names[2..].to_vec());
}

#[test]
fn bad_profiles_exit_2_naming_the_key_and_write_nothing() {
    let base = "name = \"Proj\"\nsource = \"src\"\n";
    // (case, profile text, what stderr must contain)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown key",
            format!("{base}destination = \"dest\"\ncolour = \"red\"\n"),
            vec!["colour", "unknown field"],
        ),
        (
            "wrong type",
            format!("{base}destination = \"dest\"\nmax_backups = \"ten\"\n"),
            vec!["max_backups", "invalid type"],
        ),
        (
            "malformed TOML",
            format!("{base}destination = \"dest\"\nmax_backups 3\n"),
            vec!["line 4", "column 13", "max_backups"],
        ),
        (
            "missing source",
            "name = \"Proj\"\nsource = \"no_such_folder\"\ndestination = \"dest\"\n".into(),
            vec!["key `source`", "no_such_folder"],
        ),
        (
            "destination = source",
            format!("{base}destination = \"src\"\n"),
            vec!["key `destination`"],
        ),
        (
            "destination = source (spelled differently)",
            format!("{base}destination = \"./src/\"\n"),
            vec!["key `destination`"],
        ),
        (
            "max_backups = 0",
            format!("{base}destination = \"dest\"\nmax_backups = 0\n"),
            vec!["key `max_backups`"],
        ),
        (
            "max_backups = -1",
            format!("{base}destination = \"dest\"\nmax_backups = -1\n"),
            vec!["key `max_backups`"],
        ),
        (
            "destination inside an excluded path",
            format!("{base}destination = \"src/build/backups\"\nexclude = [\"build/\"]\n"),
            vec!["key `destination`"],
        ),
        (
            "destination inside a default-excluded path",
            format!("{base}destination = \"src/__pycache__/backups\"\n"),
            vec!["key `destination`"],
        ),
    ];
    for (case, text, needles) in cases {
        let w = world_with(&text, "dest");
        w.write("a.txt", "alpha");
        let root_before = listing(w.dir.path());
        let src_before = listing(&w.src);
        for args in [&["backup", "--json"][..], &["backup", "--force"][..]] {
            let r = w.run(args);
            assert_eq!(
                r.code, 2,
                "{case} ({args:?}): exit code\nstdout:\n{}\nstderr:\n{}",
                r.stdout, r.stderr
            );
            for n in &needles {
                assert!(
                    r.stderr.contains(n),
                    "{case}: stderr does not mention {n:?}:\n{}",
                    r.stderr
                );
            }
            assert!(
                r.stderr.contains("profile.toml"),
                "{case}: stderr does not name the profile file:\n{}",
                r.stderr
            );
            assert!(!w.dest.exists(), "{case}: dest folder created");
            assert_eq!(listing(w.dir.path()), root_before, "{case}: root changed");
            assert_eq!(listing(&w.src), src_before, "{case}: source changed");
            assert!(!w.src.join("build").exists(), "{case}");
            assert!(!w.src.join("__pycache__").exists(), "{case}");
            assert!(!w.dir.path().join("no_such_folder").exists(), "{case}");
        }
    }
}

#[test]
fn once_per_day_skips_a_second_run_unless_forced() {
    let w = world("once_per_day = true");
    w.write("a.txt", "alpha");
    let r = w.run(&["backup", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_created(&j);
    let first = snap_of(&j);

    // A real change, so only the date rule can explain the skip.
    w.write("a.txt", "alpha, changed");
    let r = w.run(&["backup", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(outcome(&j), "skipped_not_due", "{j:#}");
    // Reliability v2, point 21: a skip made no snapshot; the one that made
    // it skip is `last_snapshot`.
    assert!(j["snapshot"].is_null(), "{j:#}");
    assert_eq!(j["last_snapshot"].as_str(), Some(first.as_str()), "{j:#}");
    assert_eq!(w.snapshot_names(), vec![first.clone()]);

    let r = w.run(&["backup", "--force", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_created(&j);
    let second = snap_of(&j);
    assert_ne!(second, first);
    assert_eq!(w.snapshot_names().len(), 2);
    assert_eq!(
        fs::read_to_string(w.snapshot(&second).join("a.txt")).unwrap(),
        "alpha, changed"
    );
}

#[test]
fn dry_run_writes_nothing_and_reports_the_plan() {
    let w = world("max_backups = 2");
    w.write("a.txt", "alpha");
    w.write("b.txt", "bravo");
    w.write("sub/c.txt", "charlie");

    // On a fresh world: nothing is created at all.
    let r = w.run(&["backup", "--dry-run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(outcome(&j), "dry_run", "{j:#}");
    assert_eq!(num(&j, "files_copied"), 3);
    assert_eq!(num(&j, "files_linked"), 0);
    assert!(!w.dest.exists(), "a dry run created the destination");
    assert!(!w.src.join("backup_metadata.json").exists());

    let r1 = w.backup(0);
    assert_created(&r1);
    let first = snap_of(&r1);
    w.write("b.txt", "bravo 2");
    let r2 = w.backup(0);
    assert_created(&r2);

    w.write("a.txt", "alpha, modified");
    w.write("sub/new.txt", "new");
    let names = w.snapshot_names();
    let dest_before = listing(&w.dest);
    let meta_before = fs::read(w.src.join("backup_metadata.json")).unwrap();
    let log_before = fs::read(w.src.join("backup_operations.log")).unwrap();

    let r = w.run(&["backup", "--dry-run", "--force", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(outcome(&j), "dry_run", "{j:#}");
    assert_eq!(num(&j, "files_total"), 4);
    assert_eq!(num(&j, "files_copied"), 2, "{j:#}");
    assert_eq!(num(&j, "files_linked"), 2, "{j:#}");
    assert_eq!(strings(&j["rotate"]), vec![first.clone()]);
    let planned = snap_of(&j);
    assert!(!names.contains(&planned));
    assert!(!w.snapshot(&planned).exists());

    assert_eq!(w.snapshot_names(), names);
    assert_eq!(listing(&w.dest), dest_before);
    assert!(w.snapshot(&first).exists(), "the dry run rotated");
    assert_eq!(
        fs::read(w.src.join("backup_metadata.json")).unwrap(),
        meta_before
    );
    assert_eq!(
        fs::read(w.src.join("backup_operations.log")).unwrap(),
        log_before
    );
}

#[test]
fn renamed_file_is_hard_linked_not_copied() {
    let w = world("");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    w.write("old/name.bin", &big);
    w.write("copied_away.txt", "content that moves by copy+delete");
    w.write("other.txt", "other");
    let r1 = w.backup(0);
    assert_created(&r1);
    let s1 = w.snapshot(&snap_of(&r1));

    // A plain rename (same inode in the source) ...
    fs::create_dir_all(w.src.join("new")).unwrap();
    fs::rename(w.src.join("old/name.bin"), w.src.join("new/renamed.bin")).unwrap();
    // ... and a move through a copy (new inode in the source).
    fs::copy(w.src.join("copied_away.txt"), w.src.join("new/moved.txt")).unwrap();
    fs::remove_file(w.src.join("copied_away.txt")).unwrap();
    let tree2 = tree(&w.src);

    let r2 = w.backup(0);
    assert_created(&r2);
    let s2 = w.snapshot(&snap_of(&r2));
    assert_eq!(num(&r2, "files_copied"), 0, "{r2:#}");
    assert_eq!(num(&r2, "bytes_copied"), 0, "{r2:#}");
    assert_eq!(num(&r2, "files_linked"), 3, "{r2:#}");
    assert_eq!(
        inode(&s2.join("new/renamed.bin")),
        inode(&s1.join("old/name.bin"))
    );
    assert_eq!(
        inode(&s2.join("new/moved.txt")),
        inode(&s1.join("copied_away.txt"))
    );
    assert!(!s2.join("old/name.bin").exists());
    assert!(!s2.join("copied_away.txt").exists());
    assert_eq!(tree(&s2), tree2);
}

/// A chmod alone makes a snapshot recording the new mode. The content is
/// the same, but the snapshot's file gets its own inode (the old one's
/// read-only mode, 0444, would not say the file is now executable; see
/// reliability v2 #11), copied from the previous snapshot, not the source.
#[test]
#[cfg(unix)]
fn chmod_only_makes_a_snapshot_recording_the_new_mode_in_its_own_inode() {
    let w = world("");
    w.write("run.sh", "#!/bin/sh\necho run\n");
    w.write("other.txt", "other");
    set_mode(&w.src.join("run.sh"), 0o644);
    let r1 = w.backup(0);
    assert_created(&r1);
    let s1 = w.snapshot(&snap_of(&r1));

    set_mode(&w.src.join("run.sh"), 0o755);
    let r2 = w.backup(0);
    assert_created(&r2);
    let s2 = w.snapshot(&snap_of(&r2));
    assert_ne!(s1, s2);
    assert_eq!(num(&r2, "files_copied"), 1, "{r2:#}");
    assert_eq!(num(&r2, "files_linked"), 1, "other.txt is linked: {r2:#}");
    assert_eq!(r2["changes"]["modified"], 1, "{r2:#}");

    let m2 = manifest_by_path(&s2);
    assert_eq!(
        m2["run.sh"]["mode"].as_u64().unwrap() as u32 & 0o7777,
        0o755
    );
    let m1 = manifest_by_path(&s1);
    assert_eq!(
        m1["run.sh"]["mode"].as_u64().unwrap() as u32 & 0o7777,
        0o644
    );
    assert_ne!(inode(&s1.join("run.sh")), inode(&s2.join("run.sh")));
    assert_eq!(mode(&s2.join("run.sh")), 0o555);
    assert_eq!(mode(&s1.join("run.sh")), 0o444, "the old snapshot changed");
    assert_eq!(inode(&s1.join("other.txt")), inode(&s2.join("other.txt")));
    assert_eq!(
        fs::read(s2.join("run.sh")).unwrap(),
        b"#!/bin/sh\necho run\n"
    );
    // The run after that sees no change.
    let r3 = w.backup(0);
    assert_eq!(outcome(&r3), "no_changes", "{r3:#}");
}

#[test]
fn touch_only_is_no_change_but_metadata_records_the_new_mtime() {
    let w = world("");
    w.write("f.txt", "same content");
    w.write("g.txt", "other");
    set_mtime(&w.src.join("f.txt"), 1_600_000_000);
    let r1 = w.backup(0);
    assert_created(&r1);
    let before = metadata(&w);
    assert_eq!(
        before["file_checksums"]["f.txt"]["modified_time"]
            .as_f64()
            .unwrap(),
        1_600_000_000.0
    );

    set_mtime(&w.src.join("f.txt"), 1_700_000_000);
    let names = w.snapshot_names();
    let r2 = w.backup(0);
    assert_eq!(outcome(&r2), "no_changes", "{r2:#}");
    assert_eq!(w.snapshot_names(), names);
    let after = metadata(&w);
    assert_eq!(
        after["file_checksums"]["f.txt"]["modified_time"]
            .as_f64()
            .unwrap(),
        1_700_000_000.0
    );
    assert_eq!(
        after["file_checksums"]["f.txt"]["checksum"],
        before["file_checksums"]["f.txt"]["checksum"]
    );
    // And the next run is still quiet.
    let r3 = w.backup(0);
    assert_eq!(outcome(&r3), "no_changes", "{r3:#}");
}

/// Checks the original schema of backup_metadata.json against the source.
fn assert_metadata_schema(w: &World, files: &[(&str, &[u8])]) -> Value {
    let meta = metadata(w);
    assert!(
        meta["last_backup_date"].is_string(),
        "last_backup_date: {meta:#}"
    );
    let sums = meta["file_checksums"].as_object().unwrap();
    let keys: BTreeSet<&str> = sums.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = files.iter().map(|(p, _)| *p).collect();
    assert_eq!(keys, want);
    for (path, content) in files {
        let rec = &sums[*path];
        assert_eq!(
            rec["size"].as_u64().unwrap(),
            content.len() as u64,
            "{path}"
        );
        assert!(rec["modified_time"].is_f64() || rec["modified_time"].is_u64());
        let mt = rec["modified_time"].as_f64().unwrap();
        let actual = mtime_ns(&w.src.join(path)) as f64 / 1e9;
        assert!((mt - actual).abs() < 1e-3, "{path}: {mt} vs {actual}");
        assert_eq!(rec["checksum"].as_str().unwrap(), sha256_hex(content));
    }
    let hist = meta["backup_history"].as_array().unwrap();
    assert!(!hist.is_empty());
    for h in hist {
        assert!(h["date"].is_string(), "{h}");
        assert!(h["backup_dir"].is_string(), "{h}");
        assert!(h["files_backed_up"].is_u64(), "{h}");
        assert!(h["total_files"].is_u64(), "{h}");
    }
    meta
}

#[test]
fn metadata_keeps_the_original_schema_and_is_rebuilt_when_lost() {
    let w = world("");
    w.write("a.txt", "alpha");
    w.write("b.txt", "bravo");
    w.write("sub/c.txt", "charlie");
    let r1 = w.backup(0);
    assert_created(&r1);
    w.write("b.txt", "bravo 2");
    let r2 = w.backup(0);
    assert_created(&r2);
    let s2 = w.snapshot(&snap_of(&r2));

    let meta = assert_metadata_schema(
        &w,
        &[
            ("a.txt", b"alpha"),
            ("b.txt", b"bravo 2"),
            ("sub/c.txt", b"charlie"),
        ],
    );
    let hist = meta["backup_history"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0]["files_backed_up"], 3);
    assert_eq!(hist[0]["total_files"], 3);
    assert_eq!(hist[1]["files_backed_up"], 1);
    assert_eq!(hist[1]["total_files"], 3);
    assert_eq!(
        Path::new(hist[1]["backup_dir"].as_str().unwrap()),
        s2.as_path()
    );
    assert_eq!(
        meta["last_backup_date"].as_str().unwrap(),
        hist[1]["date"].as_str().unwrap()
    );

    // Deleted: the next run links unchanged files and writes a valid file.
    fs::remove_file(w.src.join("backup_metadata.json")).unwrap();
    w.write("a.txt", "alpha 3");
    let r3 = w.backup(0);
    assert_created(&r3);
    let s3 = w.snapshot(&snap_of(&r3));
    assert_eq!(num(&r3, "files_copied"), 1, "{r3:#}");
    assert_eq!(num(&r3, "files_linked"), 2, "{r3:#}");
    assert_eq!(inode(&s2.join("b.txt")), inode(&s3.join("b.txt")));
    assert_eq!(inode(&s2.join("sub/c.txt")), inode(&s3.join("sub/c.txt")));
    assert_metadata_schema(
        &w,
        &[
            ("a.txt", b"alpha 3"),
            ("b.txt", b"bravo 2"),
            ("sub/c.txt", b"charlie"),
        ],
    );

    // Garbage: the same, with a warning; the unrecognised file is moved
    // aside, never overwritten (reliability v2, point 2), and so is backed
    // up like any other file.
    let garbage: &[u8] = b"{ this is not json";
    fs::write(w.src.join("backup_metadata.json"), garbage).unwrap();
    w.write("sub/c.txt", "charlie 4");
    let r4 = w.backup(0);
    assert_created(&r4);
    let s4 = w.snapshot(&snap_of(&r4));
    let aside: Vec<String> = fs::read_dir(&w.src)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backup_metadata.json.unrecognised-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(fs::read(w.src.join(&aside[0])).unwrap(), garbage);
    assert_eq!(num(&r4, "files_copied"), 2, "{r4:#}");
    assert_eq!(num(&r4, "files_linked"), 2, "{r4:#}");
    assert!(!r4["warnings"].as_array().unwrap().is_empty(), "{r4:#}");
    assert_eq!(inode(&s3.join("a.txt")), inode(&s4.join("a.txt")));
    assert_eq!(inode(&s3.join("b.txt")), inode(&s4.join("b.txt")));
    assert_metadata_schema(
        &w,
        &[
            ("a.txt", b"alpha 3"),
            ("b.txt", b"bravo 2"),
            ("sub/c.txt", b"charlie 4"),
            (aside[0].as_str(), garbage),
        ],
    );

    // Deleted with nothing changed: no snapshot, but the file is rewritten.
    fs::remove_file(w.src.join("backup_metadata.json")).unwrap();
    let r5 = w.backup(0);
    assert_eq!(outcome(&r5), "no_changes", "{r5:#}");
    let m5 = metadata(&w);
    assert_eq!(m5["file_checksums"].as_object().unwrap().len(), 4, "{m5:#}");
}

#[test]
#[cfg(unix)]
fn symlinks_empty_dirs_and_mtimes_are_preserved() {
    let w = world("");
    let outside = w.dir.path().join("outside.txt");
    fs::write(&outside, "outside the source: must not be copied").unwrap();
    w.write("target.txt", "target");
    w.write("sub/inner.txt", "inner");
    std::os::unix::fs::symlink("target.txt", w.src.join("link_to_file")).unwrap();
    std::os::unix::fs::symlink("sub", w.src.join("link_to_dir")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", w.src.join("dangling")).unwrap();
    std::os::unix::fs::symlink(&outside, w.src.join("abs_link")).unwrap();
    fs::create_dir_all(w.src.join("empty")).unwrap();
    fs::create_dir_all(w.src.join("a/b/empty2")).unwrap();
    let t1 = filetime::FileTime::from_unix_time(1_500_000_000, 123_456_789);
    let t2 = filetime::FileTime::from_unix_time(1_400_000_000, 5);
    filetime::set_file_mtime(w.src.join("target.txt"), t1).unwrap();
    filetime::set_file_mtime(w.src.join("sub/inner.txt"), t2).unwrap();

    let r = w.backup(0);
    assert_created(&r);
    let snap = w.snapshot(&snap_of(&r));
    assert_eq!(tree(&snap), tree(&w.src));
    assert_eq!(num(&r, "files_total"), 2);

    for (link, target) in [
        ("link_to_file", PathBuf::from("target.txt")),
        ("link_to_dir", PathBuf::from("sub")),
        ("dangling", PathBuf::from("does/not/exist")),
        ("abs_link", outside.clone()),
    ] {
        let m = fs::symlink_metadata(snap.join(link)).unwrap();
        assert!(m.file_type().is_symlink(), "{link} is not a symlink");
        assert_eq!(fs::read_link(snap.join(link)).unwrap(), target);
    }
    let man = manifest_by_path(&snap);
    assert_eq!(man["link_to_dir"]["kind"], "symlink");
    assert_eq!(man["link_to_dir"]["target"], "sub");
    assert!(!man.contains_key("link_to_dir/inner.txt"));
    assert_eq!(man["empty"]["kind"], "dir");
    assert_eq!(man["a/b/empty2"]["kind"], "dir");

    assert!(snap.join("empty").is_dir());
    assert_eq!(listing(&snap.join("empty")), Vec::<String>::new());
    assert!(snap.join("a/b/empty2").is_dir());

    assert_eq!(
        mtime_ns(&snap.join("target.txt")),
        1_500_000_000_123_456_789
    );
    assert_eq!(
        mtime_ns(&snap.join("sub/inner.txt")),
        1_400_000_000_000_000_005
    );

    // A second snapshot (one change) keeps all of it too.
    w.write("new.txt", "n");
    let r2 = w.backup(0);
    assert_created(&r2);
    let snap2 = w.snapshot(&snap_of(&r2));
    assert_eq!(tree(&snap2), tree(&w.src));
    assert_eq!(
        mtime_ns(&snap2.join("target.txt")),
        1_500_000_000_123_456_789
    );
    assert!(fs::symlink_metadata(snap2.join("link_to_dir"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn snapshots_in_the_same_minute_get_numbered_suffixes() {
    // Snapshot names carry the minute: retry if a run straddles a minute.
    for _attempt in 0..3 {
        let w = world("");
        w.write("a.txt", "one");
        let tree1 = tree(&w.src);
        let r1 = w.backup(0);
        assert_created(&r1);
        let n1 = snap_of(&r1);
        w.write("a.txt", "two");
        let tree2 = tree(&w.src);
        let r2 = w.backup(0);
        assert_created(&r2);
        let n2 = snap_of(&r2);
        w.write("a.txt", "three");
        let tree3 = tree(&w.src);
        let r3 = w.backup(0);
        assert_created(&r3);
        let n3 = snap_of(&r3);
        let stamp = |n: &str| n[.."Proj_backup_YYYY-MM-DD_HH-MM".len()].to_owned();
        if stamp(&n1) != stamp(&n3) {
            continue;
        }
        assert_eq!(
            n1,
            stamp(&n1),
            "the first snapshot of a minute has no suffix"
        );
        assert_eq!(n2, format!("{n1}-2"));
        assert_eq!(n3, format!("{n1}-3"));
        // Never merged: each holds its own state.
        assert_eq!(tree(&w.snapshot(&n1)), tree1);
        assert_eq!(tree(&w.snapshot(&n2)), tree2);
        assert_eq!(tree(&w.snapshot(&n3)), tree3);
        assert_eq!(w.snapshot_names(), vec![n1.clone(), n2, n3]);
        return;
    }
    panic!("could not run three backups within one minute in three attempts");
}

#[test]
fn snapshot_names_are_not_reused_after_rotation() {
    // Three runs within one minute with max_backups = 1: the first name is
    // rotated away by the second run, and the third must not take it again
    // (a name that once meant one snapshot must never mean another, and
    // names must sort in creation order).
    avoid_minute_boundary(5);
    let w = world("max_backups = 1");
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

/// Two projects whose profiles share a name and a destination never see,
/// skip for, or rotate away each other's snapshots.
#[test]
fn same_profile_name_different_sources_stay_apart() {
    let w = world("max_backups = 1");
    w.write("a.txt", "project one");
    // A second project next to the first, same name, same destination.
    let src2 = w.dir.path().join("src2");
    fs::create_dir_all(&src2).unwrap();
    fs::write(src2.join("b.txt"), "project two").unwrap();
    let profile2 = w.dir.path().join("profile2.toml");
    fs::write(
        &profile2,
        "name = \"Proj\"\nsource = \"src2\"\ndestination = \"dest\"\nmax_backups = 1\n",
    )
    .unwrap();
    let run2 = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("--profile")
            .arg(&profile2)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let first = w.backup(0);
    assert_eq!(first["outcome"], "created");
    // Not "already made today": project one's snapshot is not project two's.
    let (code, out) = run2(&["backup", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let second: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(second["outcome"], "created", "{second}");
    // Project two rotates with max_backups = 1 and must not delete project one's.
    fs::write(src2.join("b.txt"), "project two, changed").unwrap();
    let (code, out) = run2(&["backup", "--force", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let third: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(third["rotate"].as_array().unwrap().len(), 1, "{third}");
    let first_name = first["snapshot"].as_str().unwrap();
    assert!(
        w.dest.join(first_name).join("a.txt").exists(),
        "project one's snapshot was deleted"
    );
    // Each lists only its own.
    let list1 = w.run(&["list", "--json"]).json();
    assert_eq!(list1.as_array().unwrap().len(), 1);
    assert_eq!(list1[0]["name"], first_name);
    let (_, out) = run2(&["list", "--json"]);
    let list2: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list2.as_array().unwrap().len(), 1);
    assert_eq!(list2[0]["name"], third["snapshot"]);
}
