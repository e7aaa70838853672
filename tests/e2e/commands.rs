//! The other subcommands: `list` and `status` JSON, `init`, every read
//! command once the source folder is gone, and an `s3://` destination in a
//! build without the `s3` feature.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use backup_tests::clock::{avoid_minute_boundary, is_rfc3339};
use backup_tests::files::put;
use backup_tests::json::{keys, single_json, strings, sv};
use backup_tests::trees::build_rich_source;
use backup_tests::trees::exact::{assert_trees_equal, full_tree, restored_tree};
use backup_tests::{assert_code, backup_created, restore_json, Run};
use serde_json::Value;

use crate::{world, BIN};

#[test]
fn read_commands_work_after_the_source_folder_is_deleted() {
    let w = world("");
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

#[test]
fn list_and_status_json_describe_the_snapshots() {
    avoid_minute_boundary(5);
    let w = world("max_backups = 7\nonce_per_day = true");

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

/// Runs the binary without `--profile`.
fn run_bare(args: &[&std::ffi::OsStr]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    cmd.env_remove("RUST_LOG");
    cmd.output().expect("run backup-cli").into()
}

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

    let mut cmd = Command::new(BIN);
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

/// Without the `s3` feature an object-storage destination is a profile
/// error that says how to get a build with it.
#[cfg(not(feature = "s3"))]
#[test]
fn s3_destination_without_the_feature_says_how_to_build_it() {
    let w = world("");
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
