//! The pipeline as a library: the start-up trigger (Rust and Python
//! servers), a custom filter and a custom retention policy plugged in
//! through the stage traits, and the profile's `[retention]` table.
//!
//! The Rust programs are `backup-cli`'s examples (`examples/*.rs`, declared
//! as `[[example]]` in `backup-cli/Cargo.toml`). `cargo test` builds every
//! example of a package it tests, together with the binary and before any
//! test runs, into `target/<profile>/examples/`, so these tests find them
//! there without running cargo themselves. Only a run that selects this
//! target alone (`cargo test --test e2e`) skips building them; the tests
//! then fail saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backup_tests::host::which;
use backup_tests::prng::Rng;
use backup_tests::World;

use crate::{world, BIN};

/// Path of a cargo example of `backup-cli`, built next to the binary.
fn example(name: &str) -> PathBuf {
    let path = Path::new(BIN)
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example {} was not built (`cargo test -p backup-cli` builds the examples; `--test e2e` alone does not)",
        path.display()
    );
    path
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A tree whose backup takes seconds: many small files and some big ones.
fn big_tree(w: &World) {
    for d in 0..100 {
        for f in 0..200 {
            w.write(
                &format!("d{d}/f{f}.txt"),
                format!("file {d}/{f}\n").repeat(20),
            );
        }
    }
    let block = Rng::new(1).bytes(8 << 20);
    for i in 0..12 {
        let mut b = block.clone();
        b[0] = i as u8;
        w.write(&format!("big/blob{i}.bin"), b);
    }
}

fn read_listening(line: &str) -> String {
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string()
}

#[test]
fn startup_server_answers_within_200ms_while_the_backup_runs() {
    let w = world("");
    big_tree(&w);
    let exe = example("startup_server");
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg(&w.profile)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = read_listening(&line);
    let first = http_get(&addr, "/");
    let answered_after = started.elapsed();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        answered_after < Duration::from_millis(200),
        "first answer took {answered_after:?}"
    );
    assert!(
        first.contains("backup_running=true"),
        "the backup should still be running: {first}"
    );
    http_get(&addr, "/shutdown");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let report: serde_json::Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(report["outcome"], "created", "{report}");
    assert_eq!(report["files_total"], 20_012);
    // It logged to the operations log.
    let log = std::fs::read_to_string(w.src.join("backup_operations.log")).unwrap();
    assert!(log.contains("backup run finished"), "{log}");
}

#[test]
fn startup_trigger_reports_profile_errors_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("bad.toml");
    std::fs::write(
        &profile,
        "source = \"nowhere\"\ndestination = \"d\"\nbogus = 1\n",
    )
    .unwrap();
    let exe = example("custom_filter");
    let out = Command::new(exe).arg(&profile).output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "failed");
    assert!(
        report["error"].as_str().unwrap().contains("bogus"),
        "{report}"
    );
}

#[test]
fn python_server_starts_the_backup_detached_and_serves_at_once() {
    let Some(py) = which("python3") else {
        println!("SKIPPED: python3 is not installed");
        return;
    };
    let w = world("");
    big_tree(&w);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/subprocess_startup.py");
    let started = Instant::now();
    let mut child = Command::new(py)
        .arg(script)
        .arg(&w.profile)
        .arg(BIN)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = read_listening(&line);
    let first = http_get(&addr, "/");
    let answered_after = started.elapsed();
    assert!(first.contains("backup_running=true"), "{first}");
    // Python's own start-up is slower than a Rust binary's; the backup
    // must not add to it.
    assert!(
        answered_after < Duration::from_secs(2),
        "took {answered_after:?}"
    );
    http_get(&addr, "/shutdown");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest.contains("backup_exit=0"), "{rest}");
    assert_eq!(w.snapshot_names().len(), 1);
}

#[test]
fn custom_filter_between_scan_and_hash_skips_large_files() {
    let w = world("");
    w.write("small.txt", "tiny");
    w.write("large.bin", vec![7u8; 5000]);
    let out = Command::new(example("custom_filter"))
        .arg(&w.profile)
        .arg("1000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "created");
    assert_eq!(report["files_total"], 1);
    let snap = w.snapshot(&w.snapshot_names()[0]);
    assert!(snap.join("small.txt").exists());
    assert!(!snap.join("large.bin").exists());
}

/// Makes a copy of snapshot `name` that claims to be `days_ago` days old.
fn age_copy(w: &World, name: &str, days_ago: i64, new_name: &str) {
    let src = w.snapshot(name);
    let dst = w.dest.join(new_name);
    backup_tests::files::copy_tree(&src, &dst);
    let info_path = dst.join(".backup-snapshot/info.json");
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    let created = chrono_like_days_ago(days_ago);
    info["created"] = serde_json::Value::String(created);
    info["name"] = serde_json::Value::String(new_name.into());
    let dir = info_path.parent().unwrap();
    let mut perms = std::fs::metadata(dir).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(dir, perms).unwrap();
    std::fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
}

/// RFC 3339 time `days` days ago at noon UTC, without a date crate.
fn chrono_like_days_ago(days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = now / 86_400 - days;
    // Civil date from days since epoch (Howard Hinnant's algorithm).
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T12:00:00+00:00")
}

fn snapshot_name_for(days_ago: i64) -> String {
    let date = &chrono_like_days_ago(days_ago)[..10];
    format!("Proj_backup_{date}_12-00")
}

#[test]
fn custom_retention_policy_replaces_the_rotate_stage() {
    let w = world("once_per_day = false");
    w.write("a.txt", "one");
    let first = w.backup(0);
    let name = first["snapshot"].as_str().unwrap().to_string();
    // Two snapshots on each of the 10 previous days.
    for d in 1..=10 {
        age_copy(&w, &name, d, &snapshot_name_for(d));
        age_copy(&w, &name, d, &format!("{}-2", snapshot_name_for(d)));
    }
    w.write("a.txt", "two");
    let out = Command::new(example("custom_retention"))
        .arg(&w.profile)
        .args(["3", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "created", "{report}");
    // keep-daily 3: today's newest, plus the newest of the 2 previous days.
    let left = w.snapshot_names();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        left.contains(&format!("{}-2", snapshot_name_for(1))),
        "{left:?}"
    );
    assert!(
        left.contains(&format!("{}-2", snapshot_name_for(2))),
        "{left:?}"
    );
    assert!(
        !left.contains(&name),
        "today's older snapshot is not the day's newest: {left:?}"
    );
}

#[test]
fn retention_table_in_the_profile_keeps_daily() {
    let w = world("[retention]\nkeep_daily = 2");
    w.write("a.txt", "one");
    let first = w.backup(0);
    let name = first["snapshot"].as_str().unwrap().to_string();
    for d in 1..=4 {
        age_copy(&w, &name, d, &snapshot_name_for(d));
    }
    w.write("a.txt", "two");
    let r = w.backup(0);
    assert_eq!(r["outcome"], "created");
    let left = w.snapshot_names();
    // Today (newest of today) and yesterday.
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&snapshot_name_for(1)), "{left:?}");
    assert_eq!(r["rotate"].as_array().unwrap().len(), 4, "{r}");
}

#[test]
fn unknown_retention_key_is_a_profile_error() {
    let w = world("[retention]\nkeep_hourly = 3");
    w.write("a.txt", "x");
    let r = w.run(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("keep_hourly"), "{}", r.stderr);
    assert!(!w.dest.exists());
}
