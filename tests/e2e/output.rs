//! Output discipline: progress is drawn only on a terminal and never with
//! `--json`; `--json` prints exactly one document; `--quiet` prints
//! nothing; a reader that closes stdout early does not change the exit
//! code.
// openpty, for the one test that needs a terminal on stderr.
#![allow(unsafe_code)]

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};

use backup_tests::files::put;
use backup_tests::json::single_json;
use backup_tests::{assert_code, backup_created, Run, World};

use crate::{world, BIN};

fn assert_no_progress(text: &str, what: &str) {
    assert!(!text.contains('\r'), "{what}: carriage return in {text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "{what}: escape sequence in {text:?}"
    );
    for frag in ["entries", " eta ", "[=", "=>", "/s "] {
        assert!(
            !text.contains(frag),
            "{what}: progress text {frag:?} in {text:?}"
        );
    }
}

/// Builds enough source that a progress bar, if drawn, would show.
fn busy_source(w: &World) {
    let blob = vec![7u8; 256 * 1024];
    for i in 0..40 {
        w.write(&format!("d{}/f{i}.bin", i % 4), &blob);
    }
}

#[test]
fn progress_never_reaches_piped_or_json_output() {
    let w = world("");
    busy_source(&w);

    // Plain runs with piped stderr: no bar, no carriage returns.
    let r = w.run(&["backup", "--force"]);
    assert_code(&r, 0, "plain backup");
    assert_no_progress(&r.stderr, "stderr of a plain backup");
    assert_no_progress(&r.stdout, "stdout of a plain backup");
    let out = w.dir.path().join("plain-restore");
    let r = w.run(&["restore", "--to", out.to_str().unwrap()]);
    assert_code(&r, 0, "plain restore");
    assert_no_progress(&r.stderr, "stderr of a plain restore");
    assert_no_progress(&r.stdout, "stdout of a plain restore");
    let r = w.run(&["verify", "--all"]);
    assert_code(&r, 0, "plain verify");
    assert_no_progress(&r.stderr, "stderr of a plain verify");

    // --json runs: exactly one JSON document on stdout, nothing drawn.
    w.write("d0/f0.bin", b"changed");
    let (name, _) = backup_created(&w);
    let out = w.dir.path().join("json-restore");
    let out = out.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["backup", "--force", "--json"],
        vec!["list", "--json"],
        vec!["status", "--json"],
        vec!["verify", "--all", "--json"],
        vec!["restore", "latest", "--to", out, "--json"],
        vec!["diff", "--json"],
        vec!["diff", name.as_str(), name.as_str(), "--json"],
    ];
    for args in &commands {
        let r = w.run(args);
        assert_code(&r, 0, &format!("{args:?}"));
        single_json(&r);
        assert_no_progress(&r.stdout, &format!("stdout of {args:?}"));
        assert_no_progress(&r.stderr, &format!("stderr of {args:?}"));
    }
}

/// Runs the binary with stderr on a pseudo-terminal; returns the run (its
/// stderr is what the terminal received, with "\r\n" turned into "\n").
#[cfg(unix)]
fn run_with_tty_stderr(w: &World, args: &[&str]) -> Run {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two descriptors into valid out-pointers; the
    // other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    for fd in [master, slave] {
        // SAFETY: fd is an open descriptor we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors are open and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut master = fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    let mut cmd = Command::new(BIN);
    cmd.arg("--profile")
        .arg(&w.profile)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().unwrap();
    drop(cmd); // closes our copy of the slave side
    let out = child.wait_with_output().unwrap();
    let tty = reader.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&tty).replace("\r\n", "\n"),
    }
}

#[test]
#[cfg(unix)]
fn json_runs_draw_no_progress_even_on_a_terminal() {
    let w = world("");
    busy_source(&w);
    // Control: on a terminal, without --json, progress is drawn (so the
    // terminal set-up below can see a bar when there is one).
    let r = run_with_tty_stderr(&w, &["backup", "--force"]);
    assert_code(&r, 0, "backup with a terminal");
    assert!(
        r.stderr.contains('\r') || r.stderr.contains('\u{1b}'),
        "control: no progress drawn on a terminal: {:?}",
        r.stderr
    );

    w.write("d1/f1.bin", b"changed");
    let out = w.dir.path().join("tty-restore");
    let out = out.to_str().unwrap();
    for args in [
        vec!["backup", "--force", "--json"],
        vec!["verify", "--all", "--json"],
        vec!["restore", "latest", "--to", out, "--json"],
        vec!["backup", "--force", "--quiet"],
    ] {
        let r = run_with_tty_stderr(&w, &args);
        assert_code(&r, 0, &format!("{args:?} with a terminal"));
        if args.contains(&"--json") {
            single_json(&r);
        }
        assert_no_progress(&r.stderr, &format!("terminal stderr of {args:?}"));
    }
}

#[test]
fn quiet_backup_prints_nothing() {
    let w = world("");
    put(&w, "a.txt", "a\n", 0o644, 1_600_000_000, 0);
    let r = w.run(&["backup", "--quiet"]);
    assert_code(&r, 0, "quiet backup");
    assert_eq!(r.stdout, "", "stdout of a quiet backup");
    assert_eq!(r.stderr, "", "stderr of a successful quiet backup");
    assert_eq!(w.snapshot_names().len(), 1);

    put(&w, "b.txt", "b\n", 0o644, 1_600_000_000, 0);
    let r = w.run(&["--quiet", "backup", "--force"]);
    assert_code(&r, 0, "quiet forced backup");
    assert_eq!(r.stdout, "");
    assert_eq!(w.snapshot_names().len(), 2);

    // Nothing changed: still silent.
    let r = w.run(&["-q", "--force"]);
    assert_code(&r, 0, "quiet backup without changes");
    assert_eq!(r.stdout, "");
    assert_eq!(w.snapshot_names().len(), 2);
}

/// A reader that closes the pipe early (`| head`, `| true`) is not a
/// failure: the exit code still says what happened to the backup.
#[test]
fn closed_stdout_does_not_turn_a_good_backup_into_a_failure() {
    let w = world("");
    w.write("a.txt", "hello");
    let mut child = Command::new(BIN)
        .arg("--profile")
        .arg(&w.profile)
        .args(["backup", "--force", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.snapshot_names().len(), 1);
    let mut list = Command::new(BIN)
        .arg("--profile")
        .arg(&w.profile)
        .args(["list", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(list.stdout.take());
    assert_eq!(list.wait().unwrap().code(), Some(0));
}

#[cfg(unix)]
/// The largest count a phase's bar showed: `"<label> <spinner> N entries"`
/// frames in what the terminal received.
fn max_entries_shown(tty: &str, label: &str) -> Option<u64> {
    let mut max = None;
    for (i, _) in tty.match_indices(&format!("{label} ")) {
        let rest = &tty[i + label.len() + 1..];
        // Skip the spinner (one character), then read "N entries".
        let mut words = rest.split_whitespace();
        let (Some(_spinner), Some(n), Some("entries")) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if let Ok(n) = n.parse::<u64>() {
            max = max.max(Some(n));
        }
    }
    max
}

/// Regression (architecture issue, point 6): once the first change starts
/// the copy stage while the scan goes on, each phase's bar counts its own
/// work. The old single bar, switched to "copy", went on counting scanned
/// entries too: 38,288 "copy" entries on this 20,101-entry tree.
#[test]
#[cfg(unix)]
fn each_phase_bar_counts_only_its_own_entries() {
    let w = world("");
    for d in 0..100 {
        for f in 0..200 {
            w.write(&format!("d{d:03}/f{f:03}.txt"), format!("{d} {f}\n"));
        }
    }
    let entries = 100 * 200 + 100 + 1;
    backup_created(&w);
    // The first change comes early in scan order: the copy stage starts
    // while nearly the whole scan is still ahead.
    w.write("d000/f000.txt", "changed early\n");
    let r = run_with_tty_stderr(&w, &["backup", "--force"]);
    assert_code(&r, 0, "backup on a terminal");
    let copy = max_entries_shown(&r.stderr, "copy");
    let scan = max_entries_shown(&r.stderr, "scan");
    let copy = copy.unwrap_or_else(|| panic!("no copy bar was drawn:\n{}", r.stderr));
    assert!(
        copy <= entries,
        "the copy bar showed {copy} entries for a tree of {entries}"
    );
    if let Some(scan) = scan {
        assert!(
            scan <= entries,
            "the scan bar showed {scan} entries for a tree of {entries}"
        );
    }
}

/// Reliability v2, point 22: warnings and errors on a piped stderr carry no
/// ANSI escape codes (colors are for terminals).
#[test]
fn piped_stderr_has_no_escape_codes() {
    let w = world("");
    w.write("a.txt", "a");
    backup_created(&w);
    // A metadata file that does not parse: a warning on stderr.
    fs::write(w.src.join("backup_metadata.json"), "{ not json").unwrap();
    w.write("a.txt", "changed");
    let r = w.run(&["backup", "--force"]);
    assert_code(&r, 0, "backup with a warning");
    assert!(
        r.stderr.contains("WARN"),
        "a warning was printed: {}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\u{1b}'),
        "escape sequence on a piped stderr: {:?}",
        r.stderr
    );
}

/// Reliability v2, point 22: the error of a failed run is printed once
/// (the CLI's summary), not once more by the log's console echo; the
/// operations log still records it.
#[test]
fn a_failed_runs_error_is_printed_once() {
    let w = world("");
    w.write("a.txt", "a");
    fs::write(
        w.dir.path().join("blocker"),
        "a file where a folder should be",
    )
    .unwrap();
    let text = fs::read_to_string(&w.profile).unwrap();
    fs::write(
        &w.profile,
        text.replace("destination = \"dest\"", "destination = \"blocker/dest\""),
    )
    .unwrap();
    let r = w.run(&["backup", "--force"]);
    assert_code(&r, 1, "backup into an uncreatable destination");
    // The OS's words for "a file is in the way".
    let error = if cfg!(windows) {
        "(os error "
    } else {
        "Not a directory"
    };
    assert_eq!(
        r.stderr.matches(error).count(),
        1,
        "printed once: {}",
        r.stderr
    );
    let log = fs::read_to_string(w.src.join("backup_operations.log")).unwrap();
    assert!(
        log.contains("backup run failed") && log.contains(error),
        "{log}"
    );
}
