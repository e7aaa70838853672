//! What the machine running the tests offers: programs on `PATH`, root,
//! and a child's peak memory.

use std::path::PathBuf;
#[cfg(unix)]
use std::process::Command;

/// Where `program` is found on `PATH`, if anywhere (on Windows also as
/// `program.exe`).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let names = [
        program.to_string(),
        format!("{program}{}", std::env::consts::EXE_SUFFIX),
    ];
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// Whether a program is on `PATH`.
pub fn have(program: &str) -> bool {
    which(program).is_some()
}

#[cfg(unix)]
/// Whether the tests run as root (fault cases that need it skip otherwise;
/// those that need an unprivileged user switch to one).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

#[cfg(unix)]
/// Runs `cmd` to the end; returns its exit code and its peak resident set
/// size in KiB (from `wait4`, for this child alone).
pub fn run_with_peak_rss(cmd: &mut Command) -> (i32, u64) {
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for writes.
    #[allow(unsafe_code)]
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64)
}
