use super::*;
use backup_core::{hash_file, FileStat, ManifestEntry};

fn sha(bytes: &[u8]) -> ContentHash {
    ContentHash::of(bytes)
}

fn stat(size: u64, mtime_ns: i64) -> FileStat {
    FileStat {
        size,
        mtime_ns,
        ctime_ns: 1,
        ino: 2,
        mode: 0o644,
    }
}

fn file_entry(path: &str, st: FileStat) -> ScanEntry {
    ScanEntry {
        path: RelPath::new(path).unwrap(),
        kind: EntryKind::File,
        stat: st,
        link_target: None,
    }
}

fn prev_with(entries: &[(&str, FileStat, &[u8], bool)]) -> PrevIndex {
    let mut p = PrevIndex::empty();
    for (path, st, content, rehash) in entries {
        p.push(ManifestEntry {
            entry: file_entry(path, *st),
            sha256: Some(sha(content)),
            rehash: *rehash,
            status: None,
            error: None,
        });
    }
    p
}

#[test]
fn hash_file_matches_known_digest() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    let (h, n) = hash_file(&p, 3).unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        h.to_hex(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn matching_stat_is_trusted_without_reading() {
    // The file does not even exist: if the differ read it, it would fail.
    let dir = tempfile::tempdir().unwrap();
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("a.txt", stat(3, 100), b"abc", false)]);
    let p = d.plan(file_entry("a.txt", stat(3, 100)), &prev);
    assert_eq!(p.change, Change::Unchanged);
    assert_eq!(
        p.action,
        Action::Link {
            from: RelPath::new("a.txt").unwrap(),
            hash: sha(b"abc")
        }
    );
    assert_eq!(p.prev_index, Some(0));
}

#[test]
fn touched_file_is_hashed_and_linked_as_metadata_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"abc").unwrap();
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("a.txt", stat(3, 100), b"abc", false)]);
    let p = d.plan(file_entry("a.txt", stat(3, 200)), &prev);
    assert_eq!(p.change, Change::MetadataOnly);
    assert!(matches!(p.action, Action::Link { .. }));
}

#[test]
fn same_size_new_content_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"xyz").unwrap();
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("a.txt", stat(3, 100), b"abc", false)]);
    let p = d.plan(file_entry("a.txt", stat(3, 200)), &prev);
    assert_eq!(p.change, Change::Modified);
    assert_eq!(p.action, Action::Copy);
}

#[test]
fn racily_clean_entry_is_rehashed_even_with_matching_stat() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"xyz").unwrap();
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("a.txt", stat(3, 100), b"abc", true)]);
    let p = d.plan(file_entry("a.txt", stat(3, 100)), &prev);
    assert_eq!(p.change, Change::Modified);
    assert_eq!(p.action, Action::Copy);
}

#[test]
fn renamed_file_is_linked_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("new-name.txt"), b"content!").unwrap();
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("old-name.txt", stat(8, 100), b"content!", false)]);
    let p = d.plan(file_entry("new-name.txt", stat(8, 100)), &prev);
    assert_eq!(p.change, Change::Added);
    assert_eq!(
        p.action,
        Action::Link {
            from: RelPath::new("old-name.txt").unwrap(),
            hash: sha(b"content!")
        }
    );
}

#[test]
fn chmod_is_a_change_that_still_links() {
    let dir = tempfile::tempdir().unwrap();
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("run.sh", stat(3, 100), b"abc", false)]);
    let mut st = stat(3, 100);
    st.mode = 0o755;
    let p = d.plan(file_entry("run.sh", st), &prev);
    assert_eq!(p.change, Change::ModeChanged);
    assert!(p.change.is_change());
    assert!(matches!(p.action, Action::Link { .. }));
}

#[test]
fn unreadable_changed_file_keeps_the_previous_copy() {
    let dir = tempfile::tempdir().unwrap();
    // Missing on disk while the stat says it changed: reading fails.
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("gone.txt", stat(3, 100), b"abc", false)]);
    let p = d.plan(file_entry("gone.txt", stat(3, 999)), &prev);
    assert_eq!(p.change, Change::Unreadable);
    assert!(matches!(p.action, Action::KeepStale { .. }));
    assert!(!p.change.is_change());
}

#[test]
fn new_file_of_unseen_size_is_copied_without_hashing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), b"0123456789").unwrap();
    let d = HashDiffer::new(dir.path());
    let prev = prev_with(&[("a.txt", stat(3, 100), b"abc", false)]);
    let p = d.plan(file_entry("b.txt", stat(10, 100)), &prev);
    assert_eq!((p.change, p.action), (Change::Added, Action::Copy));
}

#[test]
fn a_file_that_cannot_be_opened_is_not_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = HashDiffer::new(dir.path());
    // In the previous snapshot, with content: kept stale.
    let prev = prev_with(&[("gone.txt", stat(3, 100), b"abc", false)]);
    let p = d.plan(file_entry("gone.txt", stat(10, 999)), &prev);
    assert_eq!(p.change, Change::Unreadable);
    assert!(matches!(p.action, Action::KeepStale { .. }));
    // New and unreadable: failed, still not a change.
    let p = d.plan(file_entry("new.txt", stat(10, 999)), &prev);
    assert_eq!(p.change, Change::Unreadable);
    assert!(matches!(p.action, Action::Fail { .. }));
    assert!(!p.change.is_change());
}

/// Plans `entry` on another thread: a differ that blocks (a FIFO opened
/// for reading waits for a writer) fails the test instead of hanging it.
#[cfg(unix)]
fn plan_within_10s(d: HashDiffer, entry: ScanEntry, prev: PrevIndex) -> PlannedEntry {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(d.plan(entry, &prev));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the differ hung on a file that is not what the scan saw")
}

/// Reliability v2 #12: a file replaced by a FIFO, or by a symlink to
/// `/dev/zero`, between the scan and its hashing is a per-file problem
/// (the last good copy kept), never a hang or an endless read.
#[cfg(unix)]
#[test]
fn a_fifo_or_device_link_in_place_of_a_file_is_kept_stale_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("a.txt");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success(), "mkfifo");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("b.txt")).unwrap();
    for name in ["a.txt", "b.txt"] {
        // The scan saw a 3-byte file with a new mtime: the differ must hash.
        let prev = prev_with(&[(name, stat(3, 100), b"abc", false)]);
        let d = HashDiffer::new(dir.path());
        let p = plan_within_10s(d, file_entry(name, stat(3, 200)), prev);
        assert_eq!(p.change, Change::Unreadable, "{name}");
        assert!(
            matches!(&p.action, Action::KeepStale { copy, .. } if copy.hash == sha(b"abc")),
            "{name}: {:?}",
            p.action
        );
    }
}

/// A file that grew after it was scanned is read only one byte past its
/// scanned size and handed to the copy stage, never linked by the hash of
/// a prefix.
#[test]
fn a_file_that_grew_since_the_scan_is_copied_not_linked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"abcdef").unwrap();
    let d = HashDiffer::new(dir.path());
    // Earlier content "abcd" exists under another name, same size as the
    // first four bytes read: a prefix hash must never link to it.
    let prev = prev_with(&[
        ("a.txt", stat(3, 100), b"abc", false),
        ("other.txt", stat(4, 100), b"abcd", false),
    ]);
    let p = d.plan(file_entry("a.txt", stat(3, 200)), &prev);
    assert_eq!(p.change, Change::Modified);
    assert_eq!(p.action, Action::Copy);
    let (_, read) = hash_file(&dir.path().join("a.txt"), 3).unwrap();
    assert_eq!(read, 4, "reads at most one byte past the expected size");
}
