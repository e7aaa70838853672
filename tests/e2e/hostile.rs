//! Hostile files where the tool expects its own: FIFOs, devices and huge
//! sparse files in place of a profile, a snapshot's `info.json` or
//! `manifest.jsonl`, the metadata, lock and log files or a `.gitignore`.
//! Every command ends, fast, with a clear message; nothing the tool did not
//! write is removed; memory stays bounded (reliability v2 #13 and #15).

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use backup_tests::bounded::{backup, run_timeout};
use backup_tests::snapshots::reported_snapshot;
use backup_tests::{assert_code, Run, World};

use crate::world;

/// Longer than any of these commands takes, far shorter than a hang.
const LIMIT: Duration = Duration::from_secs(60);

fn mkfifo(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

fn run(w: &World, args: &[&str]) -> Run {
    run_timeout(w.command(args), LIMIT)
}

/// Makes a snapshot's state file writable (snapshots are read-only), then
/// replaces it with `make`.
fn replace_state_file(snapshot: &Path, file: &str, make: impl FnOnce(&Path)) {
    use std::os::unix::fs::PermissionsExt;
    let state = snapshot.join(".backup-snapshot");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
    let p = state.join(file);
    fs::remove_file(&p).unwrap();
    make(&p);
}

#[test]
fn a_profile_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("profile.toml");
    mkfifo(&fifo);
    let big = dir.path().join("big.toml");
    fs::write(&big, "# padding\n".repeat(200_000)).unwrap();
    for p in [
        fifo.as_path(),
        Path::new("/dev/zero"),
        Path::new("/dev/urandom"),
        big.as_path(),
    ] {
        let mut cmd = Command::new(crate::BIN);
        cmd.arg("--profile").arg(p).arg("list");
        let r = run_timeout(cmd, LIMIT);
        assert_code(&r, 2, &format!("--profile {}", p.display()));
        assert!(
            r.stderr.contains(&p.display().to_string()),
            "the message names the profile: {}",
            r.stderr
        );
    }
}

#[test]
fn fifos_in_place_of_snapshot_state_files_never_hang_and_are_kept() {
    let w = world("respect_gitignore = true");
    w.write("a.txt", "one");
    let v = backup(&w, 0);
    let real = reported_snapshot(&w, &v);
    // A folder named like this profile's snapshot whose info.json is a
    // FIFO, and the real snapshot's manifest replaced by one.
    let fake = w.dest.join("Proj_backup_2020-01-01_00-00");
    let fake_info = fake.join(".backup-snapshot/info.json");
    mkfifo(&fake_info);
    replace_state_file(&real, "manifest.jsonl", mkfifo);
    // And a FIFO where the scan reads a .gitignore.
    mkfifo(&w.src.join("sub/.gitignore"));
    w.write("sub/b.txt", "two");
    for args in [
        &["list", "--json"][..],
        &["status", "--json"],
        &["verify", "--all", "--json"],
        &["backup", "--force", "--json"],
        &["list", "--json"],
    ] {
        let r = run(&w, args);
        assert!(
            [0, 1, 3].contains(&r.code),
            "{args:?}: exit {}\n{}",
            r.code,
            r.stderr
        );
    }
    assert!(is_fifo(&fake_info), "the unrecognised folder was touched");
    assert!(is_fifo(&real.join(".backup-snapshot/manifest.jsonl")));
    // The backup went on without the damaged previous manifest.
    let names = w.snapshot_names();
    assert!(names.len() >= 2, "no new snapshot: {names:?}");
    let newest = w.snapshot(names.last().unwrap());
    assert_eq!(fs::read(newest.join("sub/b.txt")).unwrap(), b"two");
}

#[test]
fn fifos_in_place_of_the_lock_log_or_metadata_file_never_hang() {
    for key in ["lock_file", "log_file", "metadata_file"] {
        let w = world(&format!("{key} = \"state/{key}\""));
        w.write("a.txt", "one");
        let p = w.dir.path().join("state").join(key);
        mkfifo(&p);
        let r = run(&w, &["backup", "--force", "--json"]);
        if key == "metadata_file" {
            // Not the tool's: moved aside, never overwritten.
            assert_code(&r, 0, key);
            let aside: Vec<_> = fs::read_dir(p.parent().unwrap())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| is_fifo(&e.path()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                aside.len() == 1 && aside[0].contains("unrecognised"),
                "the FIFO was not moved aside: {aside:?}"
            );
        } else {
            assert_code(&r, 2, key);
            assert!(r.stderr.contains(key), "{key}: {}", r.stderr);
            assert!(is_fifo(&p), "{key}: the FIFO was removed");
        }
    }
}

#[test]
fn a_huge_sparse_previous_manifest_is_damage_not_a_crash() {
    let w = world("");
    w.write("a.txt", "one");
    w.write("b.txt", "two");
    let v = backup(&w, 0);
    let first = reported_snapshot(&w, &v);
    replace_state_file(&first, "manifest.jsonl", |p| {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .unwrap();
        f.set_len(1 << 40).unwrap();
    });
    w.write("c.txt", "three");
    let r = run(&w, &["backup", "--force", "--json"]);
    assert_code(&r, 0, "backup after a 1 TiB sparse manifest");
    let v = r.json();
    assert_eq!(v["outcome"], "created", "{v:#}");
    assert_eq!(v["files_copied"], 3, "a full copy: {v:#}");
    let warned = v["warnings"].as_array().unwrap().iter().any(|m| {
        m.as_str()
            .unwrap_or("")
            .contains("cannot use the previous snapshot")
    });
    assert!(warned, "no warning about the damaged manifest: {v:#}");
    let r = run(&w, &["verify", "--all", "--json"]);
    assert_code(&r, 1, "verify reports the damage");
}
