//! The operations log: one RFC 3339-stamped line per step, never backed
//! up, moved to `.1` past 10 MiB.

use std::fs;

use backup_tests::backup_created;
use backup_tests::clock::is_rfc3339;
use backup_tests::files::put;

use crate::world;

#[test]
fn operations_log_lines_are_timestamped_and_the_log_rotates_past_10_mib() {
    let w = world("");
    put(&w, "a.txt", "a\n", 0o644, 1_600_000_000, 0);
    put(&w, "b.txt", "bb\n", 0o644, 1_600_000_000, 0);
    put(&w, "c/d.txt", "ddd\n", 0o644, 1_600_000_000, 0);
    let (name, _) = backup_created(&w);
    let log = w.src.join("backup_operations.log");
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "log:\n{text}");
    for l in &lines {
        let first = l.split_whitespace().next().unwrap_or("");
        assert!(
            is_rfc3339(first),
            "log line without an RFC 3339 timestamp: {l}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("start")),
        "no start line:\n{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("files=3")),
        "no scan-count line:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| (l.contains("finished") || l.contains("complete")) && l.contains(&name)),
        "no completion line naming {name}:\n{text}"
    );
    assert!(
        !w.snapshot(&name).join("backup_operations.log").exists(),
        "the log was backed up"
    );

    // Past 10 MiB the log moves to .1 on the next run.
    // (It must look like the tool's own log: a log_file that does not is
    // refused, never appended to or rotated.)
    let mut big = b"2026-01-01T00:00:00.000000Z  INFO OLD LOG MARKER\n".to_vec();
    big.resize(10 * 1024 * 1024 + 1, b'x');
    fs::write(&log, &big).unwrap();
    put(&w, "e.txt", "e\n", 0o644, 1_600_000_000, 0);
    backup_created(&w);
    let old = w.src.join("backup_operations.log.1");
    assert_eq!(fs::read(&old).unwrap(), big, "rotated log content");
    let fresh = fs::read_to_string(&log).unwrap();
    assert!(
        fresh.len() < 1024 * 1024,
        "new log is {} bytes",
        fresh.len()
    );
    assert!(!fresh.contains("OLD LOG MARKER"));
    let first = fresh.lines().next().unwrap_or("");
    assert!(
        is_rfc3339(first.split_whitespace().next().unwrap_or("")),
        "first line of the new log: {first}"
    );
    assert!(fresh.contains("files=4"), "new log:\n{fresh}");
}

#[test]
fn rfc3339_checker_accepts_and_rejects() {
    assert!(is_rfc3339("2026-11-26T17:20:57.029046Z"));
    assert!(is_rfc3339("2026-11-26T17:20:57+01:00"));
    assert!(is_rfc3339("2026-11-26T17:20:57.1-05:30"));
    assert!(!is_rfc3339("2026-11-26 17:20:57"));
    assert!(!is_rfc3339("2026-13-26T17:20:57Z"));
    assert!(!is_rfc3339("INFO backup run started"));
    assert!(!is_rfc3339("2026-11-26T17:20:57"));
}
