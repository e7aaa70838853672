//! What belongs to whom (reliability v2): the tool deletes, overwrites and
//! rotates only what it made and can recognise as this profile's.

use std::fs;
use std::process::Command;

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
    let status = Command::new("cp")
        .arg("-a")
        .arg(&w.src)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a");
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
