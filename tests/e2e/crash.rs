//! Crashes: `kill -9` at random moments of 30 runs (scan, copy, commit,
//! metadata, rotation) never leaves a corrupt snapshot, unparseable
//! metadata or a blocking lock, and the next normal run recovers.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use backup_tests::bounded::{backup, run, spawn_backup, verify_all_clean};
use backup_tests::manifest::info;
use backup_tests::prng::Rng;
use backup_tests::snapshots::{is_final_snapshot_name, latest, leftovers};
use backup_tests::trees::hashed::{assert_same_tree, tree_nodes};
use backup_tests::trees::listing;
use backup_tests::{assert_code, World};
use serde_json::Value;

use crate::world;

/// After a killed run: metadata parses, and every folder with a final
/// snapshot name is complete (has its info and a parseable manifest).
fn assert_crash_consistent(w: &World, when: &str) {
    let meta = w.metadata_path();
    if let Ok(bytes) = fs::read(&meta) {
        if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
            panic!(
                "{when}: backup_metadata.json is not JSON ({e}); {} bytes",
                bytes.len()
            );
        }
    }
    for name in listing(&w.dest) {
        if !is_final_snapshot_name(&name) {
            continue;
        }
        let snap = w.dest.join(&name);
        let info_file = snap.join(".backup-snapshot/info.json");
        assert!(
            info_file.is_file(),
            "{when}: {name} has a final name but no .backup-snapshot/info.json"
        );
        let _ = info(&snap);
        // (Manifests are parsed in full by `verify` at the checkpoints.)
        assert!(
            snap.join(".backup-snapshot/manifest.jsonl").is_file(),
            "{when}: {name} has no manifest"
        );
    }
}

/// A normal run after crashes: succeeds, cleans up, and what it leaves
/// verifies and equals the source.
fn assert_recovers(w: &World, when: &str) {
    let t = Instant::now();
    let r = run(w, &["backup", "--force", "--json"]);
    assert_code(&r, 0, &format!("{when}: normal backup after crashes"));
    let v = r.json();
    eprintln!(
        "{when}: backup {:?} ({} ms in the tool)",
        t.elapsed(),
        v["duration_ms"]
    );
    assert!(
        v["outcome"] == "created" || v["outcome"] == "no_changes",
        "{when}: {v:#}"
    );
    assert_eq!(
        leftovers(&w.dest),
        Vec::<String>::new(),
        "{when}: leftovers"
    );
    assert!(!w.lock_path().exists(), "{when}: lock file left");
    assert_crash_consistent(w, when);
    let snaps: Vec<String> = listing(&w.dest)
        .into_iter()
        .filter(|n| is_final_snapshot_name(n))
        .collect();
    let ver = verify_all_clean(w);
    assert_eq!(
        ver["snapshots_checked"].as_u64(),
        Some(snaps.len() as u64),
        "{when}: verify --all did not check every snapshot ({snaps:?}): {ver:#}"
    );
    // The newest snapshot holds exactly the source.
    let newest = latest(w);
    assert_same_tree(
        &tree_nodes(&w.src, false),
        &tree_nodes(&newest, false),
        &format!("{when}: newest snapshot vs source"),
    );
}

/// The crash-loop tree and how it is changed between runs.
struct CrashTree {
    rng: Rng,
    bigs: [usize; 3],
    extra: u32,
}

impl CrashTree {
    fn create(w: &World) -> CrashTree {
        let mut t = CrashTree {
            rng: Rng::new(0x5eed_1234_abcd),
            bigs: [2 << 20, 3 << 20, 5 << 20],
            extra: 0,
        };
        for d in 0..40 {
            for f in 0..100 {
                let len = 64 + t.rng.below(400) as usize;
                w.write(&format!("d{d:02}/f{f:03}.txt"), t.rng.bytes(len));
            }
        }
        for (i, n) in t.bigs.iter().enumerate() {
            w.write(&format!("big{i}.bin"), t.rng.bytes(*n));
        }
        t
    }

    /// Small rewrites, one big file partly rewritten, sometimes a file
    /// added and one removed.
    fn mutate(&mut self, w: &World, i: u32) {
        let rng = &mut self.rng;
        for _ in 0..15 {
            let p = w
                .src
                .join(format!("d{:02}/f{:03}.txt", rng.below(40), rng.below(100)));
            if p.exists() {
                let len = 64 + rng.below(400) as usize;
                fs::write(&p, rng.bytes(len)).unwrap();
            }
        }
        let k = (i % 3) as usize;
        let f = OpenOptions::new()
            .write(true)
            .open(w.src.join(format!("big{k}.bin")))
            .unwrap();
        let off = rng.below(self.bigs[k] as u64 - 65536);
        f.write_all_at(&rng.bytes(65536), off).unwrap();
        drop(f);
        if i.is_multiple_of(3) {
            w.write(&format!("extra/e{}.txt", self.extra), rng.bytes(1000));
            self.extra += 1;
            let victim = w
                .src
                .join(format!("d{:02}/f{:03}.txt", rng.below(40), rng.below(100)));
            let _ = fs::remove_file(victim);
        }
    }
}

#[test]
fn crash_loop_kill_9_at_random_moments_never_corrupts() {
    let started = Instant::now();
    // A low max_backups so that rotation runs (and can be killed) too.
    let w = world("max_backups = 3");
    let mut tree = CrashTree::create(&w);
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created");
    // How long a typical incremental run takes, to spread the kills over
    // all of its phases (scan, copy, commit, metadata, rotation).
    tree.mutate(&w, 100);
    let t = Instant::now();
    let v = backup(&w, 0);
    assert_eq!(v["outcome"], "created");
    let typical_ms = (t.elapsed().as_millis() as u64).max(400);
    eprintln!("crash loop: a typical run takes {typical_ms} ms");

    let mut killed_mid_run = 0;
    let mut killed_after_commit = 0;
    for i in 0..30u32 {
        tree.mutate(&w, i);
        let finals_before = listing(&w.dest)
            .into_iter()
            .filter(|n| is_final_snapshot_name(n))
            .collect::<Vec<_>>();
        let mut child = spawn_backup(&w);
        // Half the kills in the first 400 ms, half anywhere up to the end
        // of a typical run.
        let delay = if i % 2 == 0 {
            tree.rng.below(401)
        } else {
            tree.rng.below(typical_ms * 6 / 5 + 1)
        };
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let finals_after: Vec<String> = listing(&w.dest)
            .into_iter()
            .filter(|n| is_final_snapshot_name(n))
            .collect();
        if finals_after.iter().any(|n| !finals_before.contains(n)) {
            killed_after_commit += 1;
        }
        assert_crash_consistent(&w, &format!("after kill #{i} at {delay} ms"));

        if (i + 1) % 5 == 0 {
            assert_recovers(&w, &format!("checkpoint after kill #{i}"));
        }
    }
    assert_recovers(&w, "after the loop");
    eprintln!(
        "crash loop: {killed_mid_run}/30 runs killed mid-run, {killed_after_commit} had already committed their snapshot when killed, {:?}",
        started.elapsed()
    );
    assert!(
        killed_mid_run >= 5,
        "only {killed_mid_run} of 30 runs were still running when killed; the tree is too small to test crashes"
    );
}
