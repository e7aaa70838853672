//! The seeded chaos test (reliability v2): random edits of a source tree
//! (creates, edits, renames, chmods, deletes, folder/file/symlink swaps,
//! big sparse files), interleaved with backups that are killed (`kill -9`)
//! at random moments, backups under a jumped clock (`faketime`, from apt)
//! and, as root, backups into a full destination (a tmpfs filled up).
//! After every step: no hang, no panic, every committed snapshot verifies,
//! no leftovers after a run that succeeded, and nothing outside the source
//! and destination changed. At the end every snapshot still holds exactly
//! the source as it was when that snapshot was made.
//!
//! `CHAOS_SEEDS=N` runs N seeds (CI: 5), `CHAOS_SEED=S` replays one; a
//! failure names its seed and step.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use backup_tests::bounded::run_timeout;
use backup_tests::faults::TmpfsMount;
use backup_tests::prng::Rng;
use backup_tests::snapshots::leftovers;
use backup_tests::trees::hashed::{assert_same_tree, image, tree_nodes, Node};
use backup_tests::{Run, World};

use crate::world;

/// Steps per seed.
const STEPS: usize = 40;

/// Every run must end well within this.
const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn chaos_seeds_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED") {
        Ok(s) => vec![s.parse().expect("CHAOS_SEED is a number")],
        Err(_) => {
            let n = std::env::var("CHAOS_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(5u64);
            (1..=n).map(|i| 0xC4A0_5000 + i).collect()
        }
    };
    let faketime = std::process::Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !faketime {
        eprintln!("NOTE: faketime is not installed; the chaos test runs without clock jumps");
    }
    let mut tally = Tally::default();
    for seed in seeds {
        eprintln!("chaos: seed {seed} (replay with CHAOS_SEED={seed})");
        chaos_seed(seed, faketime, &mut tally);
    }
    eprintln!("chaos: {tally:?}");
}

/// What the chaos test did, printed at the end.
#[derive(Debug, Default)]
struct Tally {
    seeds: u64,
    steps: u64,
    edits: u64,
    backups: u64,
    kills: u64,
    clock_jumps: u64,
    full_disk: u64,
}

fn chaos_seed(seed: u64, faketime: bool, tally: &mut Tally) {
    tally.seeds += 1;
    let mut rng = Rng::new(seed);
    let w = world("max_backups = 6\nonce_per_day = false");
    // As root the destination is a small tmpfs, so that it can be filled.
    let mount = TmpfsMount::new(&w.dest, "96m");
    let outside = w.dir.path().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("sub/keep.txt"), "never touched").unwrap();
    let before_outside = image(&outside);
    // What each snapshot must hold: the source when it was made.
    let mut expected: BTreeMap<String, BTreeMap<Vec<u8>, Node>> = BTreeMap::new();
    for step in 0..STEPS {
        let at = format!("seed {seed} step {step}");
        tally.steps += 1;
        for _ in 0..rng.range(1, 6) {
            mutate(&mut rng, &w.src);
            tally.edits += 1;
        }
        let source_now = tree_nodes(&w.src, false);
        let roll = rng.below(100);
        let known: Vec<String> = w.snapshot_names();
        if roll < 25 {
            // A run killed at a random moment.
            tally.kills += 1;
            let mut child = w
                .command(&["backup", "--force", "--json"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(150)));
            let _ = child.kill();
            let _ = child.wait();
            record_new(&w, &known, &source_now, &mut expected);
        } else if roll < 38 && faketime {
            tally.clock_jumps += 1;
            let days = rng.range(1, 500) as i64 * if rng.chance(0.5) { 1 } else { -1 };
            let mut cmd = std::process::Command::new("faketime");
            cmd.args(["-f", &format!("{days:+}d")])
                .arg(&w.bin)
                .arg("--profile")
                .arg(&w.profile)
                .args(["backup", "--force", "--json"]);
            let r = run_timeout(cmd, LIMIT);
            expect_success(&r, &at);
            record_new(&w, &known, &source_now, &mut expected);
        } else if roll < 46 && mount.is_some() {
            tally.full_disk += 1;
            let filler = w.dest.join("filler");
            fill(&filler);
            let r = run_timeout(w.command(&["backup", "--force", "--json"]), LIMIT);
            assert!(
                [0, 1].contains(&r.code) && !r.stderr.contains("panicked"),
                "{at}: a full destination: exit {}\n{}",
                r.code,
                r.stderr
            );
            fs::remove_file(&filler).unwrap();
            if r.code == 1 {
                assert!(
                    leftovers(&w.dest).is_empty(),
                    "{at}: a failed run left {:?}",
                    leftovers(&w.dest)
                );
            }
            record_new(&w, &known, &source_now, &mut expected);
        } else {
            tally.backups += 1;
            let r = run_timeout(w.command(&["backup", "--force", "--json"]), LIMIT);
            expect_success(&r, &at);
            assert!(
                leftovers(&w.dest).is_empty(),
                "{at}: leftovers {:?}",
                leftovers(&w.dest)
            );
            record_new(&w, &known, &source_now, &mut expected);
        }
        // Every committed snapshot verifies.
        let r = run_timeout(w.command(&["verify", "--all", "--json"]), LIMIT);
        assert!(
            r.code == 0 || (r.code == 2 && w.snapshot_names().is_empty()),
            "{at}: verify --all: exit {}\n{}\n{}",
            r.code,
            r.stdout,
            r.stderr
        );
        assert_eq!(
            image(&outside),
            before_outside,
            "{at}: something outside changed"
        );
    }
    // A last normal run cleans up after any kill, and every snapshot still
    // holds the source as it was when it was made.
    let known = w.snapshot_names();
    let source_now = tree_nodes(&w.src, false);
    let r = run_timeout(w.command(&["backup", "--force", "--json"]), LIMIT);
    expect_success(&r, &format!("seed {seed} final run"));
    record_new(&w, &known, &source_now, &mut expected);
    assert!(
        leftovers(&w.dest).is_empty(),
        "seed {seed}: leftovers after the final run"
    );
    for name in w.snapshot_names() {
        let want = expected
            .get(&name)
            .unwrap_or_else(|| panic!("seed {seed}: {name} appeared without a run"));
        assert_same_tree(
            want,
            &tree_nodes(&w.snapshot(&name), false),
            &format!("seed {seed}: {name}"),
        );
    }
    // Make the source deletable again (chmods), then unmount.
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+rwx"])
        .arg(&w.src)
        .status();
    drop(mount);
}

fn expect_success(r: &Run, at: &str) {
    assert!(
        r.code == 0 && !r.stderr.contains("panicked"),
        "{at}: backup: exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
}

/// Records the source a run just saw as what its new snapshots hold.
fn record_new(
    w: &World,
    known: &[String],
    source: &BTreeMap<Vec<u8>, Node>,
    expected: &mut BTreeMap<String, BTreeMap<Vec<u8>, Node>>,
) {
    for name in w.snapshot_names() {
        if !known.contains(&name) {
            expected.insert(name, source.clone());
        }
    }
}

/// Fills the file system holding `path` with a file at `path`.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap();
    let block = vec![0x5au8; 1 << 20];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

const NAMES: &[&str] = &["a", "b", "c", "dd", "e.txt", "f.log", "g.py", "h"];

/// One random change of the source tree.
fn mutate(rng: &mut Rng, src: &Path) {
    let all = paths(src);
    let dirs: Vec<&PathBuf> = all
        .iter()
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    let parent = if dirs.is_empty() || rng.chance(0.3) {
        src.to_path_buf()
    } else {
        (*rng.pick(&dirs)).clone()
    };
    let fresh = parent.join(format!("{}{}", rng.pick(NAMES), rng.below(3)));
    let existing = (!all.is_empty()).then(|| rng.pick(&all).clone());
    match rng.below(10) {
        0 | 1 => {
            if fresh.symlink_metadata().is_err() {
                let n = rng.log_range(0, 200_000) as usize;
                fs::write(&fresh, rng.bytes(n)).unwrap();
            }
        }
        2 => {
            if fresh.symlink_metadata().is_err() {
                fs::create_dir(&fresh).unwrap();
            }
        }
        3 => {
            if let Some(p) = existing.filter(|p| p.is_file() && !p.is_symlink()) {
                // Same size or not, same second or not: the change must be seen.
                let len = fs::metadata(&p).unwrap().len() as usize;
                let n = if rng.chance(0.5) {
                    len
                } else {
                    rng.log_range(0, 100_000) as usize
                };
                fs::write(&p, rng.bytes(n)).unwrap();
            }
        }
        4 => {
            if let Some(p) = existing {
                if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p).unwrap();
                } else {
                    fs::remove_file(&p).unwrap();
                }
            }
        }
        5 => {
            if let Some(p) = existing {
                if fresh.symlink_metadata().is_err() && !fresh.starts_with(&p) {
                    fs::rename(&p, &fresh).unwrap();
                }
            }
        }
        6 => {
            if let Some(p) = existing.filter(|p| p.is_file() && !p.is_symlink()) {
                let mode = *rng.pick(&[0o600, 0o644, 0o755, 0o640]);
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        7 => {
            if fresh.symlink_metadata().is_err() {
                let target = match &existing {
                    Some(p) if rng.chance(0.5) => p.clone(),
                    _ => PathBuf::from("../nowhere/at/all"),
                };
                symlink(target, &fresh).unwrap();
            }
        }
        8 => {
            // Swap a file for a folder (or the reverse) at the same path.
            if let Some(p) = existing {
                if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p).unwrap();
                    fs::write(&p, b"was a folder").unwrap();
                } else {
                    fs::remove_file(&p).unwrap();
                    fs::create_dir(&p).unwrap();
                    fs::write(p.join("inside"), b"was a file").unwrap();
                }
            }
        }
        _ => {
            // A big sparse file.
            if fresh.symlink_metadata().is_err() {
                let f = fs::File::create(&fresh).unwrap();
                f.set_len(rng.range(1 << 20, 16 << 20)).unwrap();
                use std::os::unix::fs::FileExt;
                f.write_all_at(b"data in the middle", rng.below(1 << 20))
                    .unwrap();
            }
        }
    }
}

/// Every path below `dir` (not following symlinks), but not the tool's
/// state files at the top.
fn paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn go(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if dir == root && backup_tests::trees::is_state(&name) {
                continue;
            }
            let is_dir = p.symlink_metadata().is_ok_and(|m| m.is_dir());
            out.push(p.clone());
            if is_dir {
                go(root, &p, out);
            }
        }
    }
    go(dir, dir, &mut out);
    out
}
