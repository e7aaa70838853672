//! What belongs to whom (reliability v2): the tool deletes, overwrites and
//! rotates only what it made and can recognise as this profile's.

use std::fs;
use std::process::Command;

use backup_tests::files::copy_tree;
use backup_tests::{assert_code, backup_created, Run};

use crate::{world, BIN};

/// Reliability v2, point 1: `cp -a projA projB` carries projA's
/// `backup_metadata.json` along, whose history names projA's snapshots.
/// Backing projB up with the same name and destination must never rotate
/// them away: a folder is this profile's snapshot only when its own record
/// names this profile and this source; the history alone never makes a
/// folder deletable.
#[test]
fn a_copied_project_never_rotates_the_originals_snapshots() {
    let w = world("max_backups = 1");
    w.write("main.py", "print('A')\n");
    let (original, _) = backup_created(&w);

    let copy = w.dir.path().join("projB");
    copy_tree(&w.src, &copy);
    assert!(
        copy.join("backup_metadata.json").is_file(),
        "the metadata came along"
    );
    fs::write(copy.join("main.py"), "print('B')\n").unwrap();
    let profile_b = w.dir.path().join("profile-b.toml");
    fs::write(
        &profile_b,
        "name = \"Proj\"\nsource = \"projB\"\ndestination = \"dest\"\nmax_backups = 1\n",
    )
    .unwrap();
    let mut copys_first = String::new();
    for round in 0..2 {
        if round == 1 {
            fs::write(copy.join("main.py"), "print('B2')\n").unwrap();
        }
        let r: Run = Command::new(BIN)
            .arg("--profile")
            .arg(&profile_b)
            .args(["backup", "--force", "--json"])
            .output()
            .unwrap()
            .into();
        assert_code(&r, 0, "backup of the copy");
        let report = r.json();
        assert_eq!(report["outcome"], "created", "{report:#}");
        let rotated: Vec<&str> = report["rotate"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            !rotated.contains(&original.as_str()),
            "round {round}: the copy's backup rotated the original's snapshot {original}: {report:#}"
        );
        if round == 0 {
            copys_first = report["snapshot"].as_str().unwrap().to_string();
        } else {
            // Its own snapshots still rotate (max_backups = 1).
            assert_eq!(rotated, [copys_first.as_str()], "{report:#}");
        }
    }
    assert!(
        w.snapshot(&original).join("main.py").is_file(),
        "the original's snapshot {original} is gone"
    );
    assert_eq!(
        fs::read_to_string(w.snapshot(&original).join("main.py")).unwrap(),
        "print('A')\n"
    );
    // The original project still sees exactly its own snapshot.
    let list = w.run(&["list", "--json"]);
    assert_code(&list, 0, "list of the original");
    let names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![original]);
}

/// Reliability v2, point 2: state-file keys that name a user's file.
/// `lock_file = "main.py"` deleted main.py and `log_file = "config.ini"`
/// appended log lines to it: both now stop with exit 2 naming the key,
/// and leave the file as it was.
#[test]
fn lock_and_log_keys_naming_a_users_file_exit_2_and_leave_it_alone() {
    for (key, file, content) in [
        ("lock_file", "main.py", "print('my program')\n"),
        ("log_file", "config.ini", "[server]\nport = 8080\n"),
    ] {
        let w = world(&format!("{key} = \"src/{file}\""));
        w.write(file, content);
        w.write("other.txt", "other");
        let r = w.run(&["backup", "--force", "--json"]);
        assert_code(&r, 2, &format!("{key} = {file}: backup"));
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(said.contains(&format!("`{key}`")), "{key}: {said}");
        assert_eq!(
            fs::read_to_string(w.src.join(file)).unwrap(),
            content,
            "{key}: {file} was changed"
        );
        // Read commands take no lock and need no log: they still work.
        let r = w.run(&["list"]);
        assert_code(&r, 0, &format!("{key} = {file}: list"));
        assert_eq!(fs::read_to_string(w.src.join(file)).unwrap(), content);
        assert!(!w.dest.exists(), "{key}: nothing may be written");
    }
}

/// Reliability v2, point 2: `metadata_file = "notes.md"` replaced the notes
/// with JSON. A metadata file that does not parse as the tool's is moved
/// aside (and then backed up like any file), never overwritten.
#[test]
fn a_metadata_key_naming_a_users_file_moves_it_aside() {
    let w = world("metadata_file = \"src/notes.md\"");
    let notes = "# My notes\n\nNever lose these.\n";
    w.write("notes.md", notes);
    w.write("main.py", "print('hi')\n");
    let (name, report) = backup_created(&w);
    let aside: Vec<_> = fs::read_dir(&w.src)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("notes.md.") && n != "notes.md")
        .collect();
    assert_eq!(aside.len(), 1, "one moved-aside copy: {aside:?}");
    assert_eq!(fs::read_to_string(w.src.join(&aside[0])).unwrap(), notes);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains(&aside[0]),
        "the warning names where: {report:#}"
    );
    // The moved-aside notes are backed up like any other file.
    assert_eq!(
        fs::read_to_string(w.snapshot(&name).join(&aside[0])).unwrap(),
        notes
    );
    // The tool's own metadata is now at the key's path.
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(w.src.join("notes.md")).unwrap()).unwrap();
    assert!(meta["backup_history"].is_array(), "{meta:#}");
}

/// Reliability v2, point 3: a destination that is an existing folder of
/// the source holding user files made those files silently drop out of
/// every snapshot (the destination is never backed up). Exit 2 naming
/// `destination`, before anything is written; a destination inside the
/// source that holds only the tool's snapshots stays fine.
#[test]
fn a_destination_inside_the_source_holding_user_files_exits_2() {
    let w = world("");
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"src\"\ndestination = \"src/data\"\n",
    )
    .unwrap();
    w.write("main.py", "print('hi')\n");
    w.write("data/users.csv", "id,name\n1,Ada\n");
    let r = w.run(&["backup", "--force", "--json"]);
    assert_code(&r, 2, "backup");
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(said.contains("`destination`"), "{said}");
    assert!(said.contains("users.csv"), "names what is there: {said}");
    // Reading (nothing there yet) still works.
    assert_code(&w.run(&["list"]), 0, "list");
    assert_eq!(
        fs::read_dir(w.src.join("data")).unwrap().count(),
        1,
        "nothing written into the folder"
    );
    // Only snapshots of the tool in it: backups go on as before.
    fs::remove_file(w.src.join("data/users.csv")).unwrap();
    for round in 0..2 {
        w.write("main.py", format!("print({round})\n"));
        let report = w.backup(0);
        assert_eq!(report["outcome"], "created", "{report:#}");
        let name = report["snapshot"].as_str().unwrap();
        assert!(w.src.join("data").join(name).is_dir(), "{report:#}");
    }
}

/// Reliability v2, point 4: excludes that match everything
/// (`exclude = ["*"]`, `**`, `***`) made every run report "no changes"
/// with no snapshot at all, forever. A source with entries of which none
/// is kept is exit 2 naming `exclude`; an empty source is not.
#[test]
fn excludes_that_leave_nothing_exit_2_naming_exclude() {
    for pattern in ["*", "**", "***"] {
        let w = world(&format!("exclude = [\"{pattern}\"]"));
        w.write("main.py", "print('hi')\n");
        w.write("pkg/mod.py", "x = 1\n");
        let r = w.run(&["backup", "--force", "--json"]);
        assert_code(&r, 2, &format!("exclude = [{pattern:?}]"));
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(said.contains("`exclude`"), "{pattern}: {said}");
        assert!(!w.dest.exists(), "{pattern}: nothing written");
    }
    // Excludes that keep something, and an empty source, are fine.
    let w = world("exclude = [\"*.py\"]");
    w.write("main.py", "print('hi')\n");
    w.write("notes.txt", "keep me\n");
    backup_created(&w);
    let w = world("exclude = [\"*\"]");
    let r = w.run(&["backup", "--force", "--json"]);
    assert_code(&r, 0, "an empty source");
}

/// Reliability v2, point 20: values that used to fail with exit 1 and an
/// OS error (or worse, worked and misbehaved) are profile errors: exit 2
/// naming the key, nothing written.
#[test]
fn impossible_names_destinations_and_state_paths_exit_2_naming_the_key() {
    let long = "n".repeat(220);
    let mut cases: Vec<(&str, String, &str)> = vec![
        (
            "a name too long for a folder",
            format!("name = \"{long}\"\ndestination = \"dest\"\n"),
            "`name`",
        ),
        (
            "a right-to-left override in the name",
            "name = \"Proj\\u202Egnp.exe\"\ndestination = \"dest\"\n".into(),
            "`name`",
        ),
        (
            "a destination that is a file",
            "name = \"Proj\"\ndestination = \"afile\"\n".into(),
            "`destination`",
        ),
        (
            "a NUL in the destination",
            "name = \"Proj\"\ndestination = \"de\\u0000st\"\n".into(),
            "`destination`",
        ),
        (
            "a lock_file in a missing folder",
            "name = \"Proj\"\ndestination = \"dest\"\nlock_file = \"nowhere/x.lock\"\n".into(),
            "`lock_file`",
        ),
        (
            "a metadata_file in a missing folder",
            "name = \"Proj\"\ndestination = \"dest\"\nmetadata_file = \"nowhere/m.json\"\n".into(),
            "`metadata_file`",
        ),
        (
            "a lock_file naming a folder",
            "name = \"Proj\"\ndestination = \"dest\"\nlock_file = \"src/pkg\"\n".into(),
            "`lock_file`",
        ),
        (
            "a metadata_file naming a folder",
            "name = \"Proj\"\ndestination = \"dest\"\nmetadata_file = \"src/pkg\"\n".into(),
            "`metadata_file`",
        ),
    ];
    #[cfg(unix)]
    cases.extend([
        (
            "destination /dev/null",
            "name = \"Proj\"\ndestination = \"/dev/null\"\n".into(),
            "`destination`",
        ),
        (
            "a destination under /proc",
            "name = \"Proj\"\ndestination = \"/proc/backups\"\n".into(),
            "`destination`",
        ),
    ]);
    #[cfg(windows)]
    cases.extend([
        (
            "destination NUL",
            "name = \"Proj\"\ndestination = \"NUL\"\n".into(),
            "`destination`",
        ),
        (
            "a destination below a device name",
            "name = \"Proj\"\ndestination = 'dest\\con\\b'\n".into(),
            "`destination`",
        ),
        (
            "a destination in the device namespace",
            "name = \"Proj\"\ndestination = '\\\\.\\pipe\\b'\n".into(),
            "`destination`",
        ),
        (
            "a lock_file named aux",
            "name = \"Proj\"\ndestination = \"dest\"\nlock_file = \"aux.lock\"\n".into(),
            "`lock_file`",
        ),
    ]);
    for (case, body, key) in cases {
        let w = world("");
        fs::write(&w.profile, format!("source = \"src\"\n{body}")).unwrap();
        fs::write(w.dir.path().join("afile"), "not a folder").unwrap();
        w.write("a.txt", "alpha");
        w.write("pkg/mod.py", "x = 1\n");
        let r = w.run(&["backup", "--force", "--json"]);
        assert_code(&r, 2, case);
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(said.contains(key), "{case}: {said}");
        assert!(!w.dest.exists(), "{case}: nothing written");
        assert_eq!(
            fs::read_to_string(w.dir.path().join("afile")).unwrap(),
            "not a folder"
        );
    }
}

/// Reliability v2, point 20: `restore --to` an existing file is exit 2
/// naming `--to`, and the file is left as it was.
#[test]
fn restore_to_an_existing_file_exits_2() {
    let w = world("");
    w.write("a.txt", "alpha");
    backup_created(&w);
    let target = w.dir.path().join("target.txt");
    fs::write(&target, "mine").unwrap();
    let r = w.run(&["restore", "--to", target.to_str().unwrap()]);
    assert_code(&r, 2, "restore --to a file");
    assert!(r.stderr.contains("--to"), "{}", r.stderr);
    assert_eq!(fs::read_to_string(&target).unwrap(), "mine");
}

/// Review of point 1: a project moved to another folder (its metadata
/// along) still sees its snapshots: the history adopts a folder whose
/// recorded source no longer exists, to list and restore, never to rotate.
#[test]
fn a_moved_project_still_lists_and_restores_its_snapshots() {
    let w = world("max_backups = 1");
    w.write("main.py", "print('A')\n");
    let (before_move, _) = backup_created(&w);
    let moved = w.dir.path().join("moved");
    fs::rename(&w.src, &moved).unwrap();
    fs::write(
        &w.profile,
        "name = \"Proj\"\nsource = \"moved\"\ndestination = \"dest\"\nmax_backups = 1\n",
    )
    .unwrap();
    let list = w.run(&["list", "--json"]);
    assert_code(&list, 0, "list after the move");
    let names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        vec![before_move.clone()],
        "the moved project's snapshot is listed"
    );
    let out = w.dir.path().join("restored");
    let r = w.run(&["restore", &before_move, "--to", out.to_str().unwrap()]);
    assert_code(&r, 0, "restore after the move");
    assert_eq!(
        fs::read_to_string(out.join("main.py")).unwrap(),
        "print('A')\n"
    );
    // A new backup (max_backups = 1) never deletes the adopted snapshot.
    fs::write(moved.join("main.py"), "print('moved')\n").unwrap();
    let report = w.backup(0);
    assert_eq!(report["outcome"], "created", "{report:#}");
    assert!(w.snapshot(&before_move).is_dir(), "{report:#}");
}

/// Reliability v2, point 23: a `.backup-snapshot/` folder at the top of the
/// source (a restored snapshot being backed up again) is left out, as it
/// always was, but no longer silently: the run's JSON warnings and text
/// output say so.
#[test]
fn a_top_level_snapshot_state_folder_is_left_out_with_a_warning() {
    let w = world("");
    w.write("main.py", "print('hi')\n");
    w.write(".backup-snapshot/manifest.jsonl", "{}\n");
    let (name, report) = backup_created(&w);
    assert!(
        !w.snapshot(&name)
            .join(".backup-snapshot/manifest.jsonl")
            .is_file()
            || fs::read_to_string(w.snapshot(&name).join(".backup-snapshot/manifest.jsonl"))
                .unwrap()
                != "{}\n",
        "the source's state folder is not backed up"
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains(".backup-snapshot"), "{report:#}");
    w.write("main.py", "print('again')\n");
    let r = w.run(&["backup", "--force"]);
    assert_code(&r, 0, "text backup");
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains(".backup-snapshot"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}
