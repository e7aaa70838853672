//! `backup-bench`: generates project-like corpora and benchmarks backup-cli
//! against `find`, `cp -a`, `cp -al`, rsync, restic and borg, and (S3
//! column) backup-cli against restic backing up to a loopback S3 server.
//!
//! `model` holds the vocabulary (tools, scenarios, results) that `bench`
//! (the runner) and `report` share; `tools` has one module per compared
//! tool; `corpus` generates and mutates the corpora. The PRNG and the S3
//! server come from the test kit (`backup-tests`).
//!
//! ```sh
//! backup-bench gen --corpus small --out /tmp/corpus
//! backup-bench mutate --dir /tmp/corpus --seed 7
//! backup-bench run --corpus small --work /tmp/bench-small --runs 3
//! backup-bench run --corpus small --work /tmp/bench-s3 --tools ours,restic,ours-s3,restic-s3
//! ```

#[cfg(unix)]
mod app;

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    app::main()
}

/// The benchmark measures against `find`, `cp`, rsync, restic and borg and
/// reads Linux's resource accounting (`wait4`): it runs on Linux only.
#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "backup-bench runs on Linux only: it compares backup-cli with find, cp, rsync, restic and borg \
         and measures them with wait4; build and run it there"
    );
    std::process::ExitCode::from(2)
}
