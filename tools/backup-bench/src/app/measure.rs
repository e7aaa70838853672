//! Timing a child process: wall time and peak resident set size.
//!
//! The child is reaped with `wait4`, whose resource usage covers the child
//! and every descendant it waited for (Linux folds the largest descendant's
//! peak into `ru_maxrss`), so multi-process tools such as `rsync` are
//! measured whole.
//!
//! Linux also folds into a process's `ru_maxrss` the peak of the memory it
//! had before `exec` — for a spawned child, its parent's. The benchmark's
//! own memory grows as it walks big trees, so timed commands are not
//! spawned by it directly but by a fresh copy of the binary in a tiny
//! wrapper mode (`backup-bench __measure RESULT -- PROGRAM ARGS…`), whose
//! own peak (reported as the floor, a couple of MiB) is the only thing
//! added. This is the one module allowed `unsafe`, for `wait4` and `sync`.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The hidden first argument that turns the binary into the wrapper.
pub const WRAPPER_ARG: &str = "__measure";

/// What one timed run measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Wall time from spawn to reaping, in seconds.
    pub wall: f64,
    /// Peak resident set size of the child (and its reaped descendants), KiB.
    pub max_rss_kib: u64,
    /// Exit code, or 128 + signal number if it was killed.
    pub code: i32,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak RSS of the spawning process before the spawn, KiB: a measured
    /// peak equal to it means "at most this".
    pub floor_kib: u64,
}

impl Measured {
    /// Whether the child exited with 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// This process's own peak RSS so far, KiB: the high-water mark of its
/// memory since its `exec` (`VmHWM`), which unlike `ru_maxrss` does not
/// include what the parent had when it spawned us.
fn self_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Spawns `cmd` directly and waits for it, measuring wall time and peak RSS
/// (which includes this process's own peak: see the module doc).
pub fn run_direct(cmd: &mut Command) -> Result<Measured> {
    let floor_kib = self_hwm_kib();
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child (std's `Child` never waits
        // unless asked); `status` and `usage` are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4 for {:?} failed: {err}", cmd.get_program());
        }
    }
    let wall = start.elapsed().as_secs_f64();
    // The child is reaped; dropping the handle only closes our pipe ends.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    Ok(Measured {
        wall,
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        code,
        user: secs(usage.ru_utime),
        sys: secs(usage.ru_stime),
        floor_kib,
    })
}

/// The wrapper mode: `RESULT -- PROGRAM ARGS…`. Runs the program with this
/// process's stdio, cwd and environment, writes what it measured to RESULT
/// and exits with 0 (125 if the program could not be run).
pub fn wrapper_main(args: &[OsString]) -> ExitCode {
    if args.len() < 3 || args[1] != "--" {
        eprintln!("usage: backup-bench {WRAPPER_ARG} RESULT -- PROGRAM [ARGS...]");
        return ExitCode::from(125);
    }
    let mut cmd = Command::new(&args[2]);
    cmd.args(&args[3..]);
    let m = match run_direct(&mut cmd) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("backup-bench: {e:#}");
            return ExitCode::from(125);
        }
    };
    let line = format!(
        "{} {} {} {} {} {}\n",
        m.wall, m.max_rss_kib, m.code, m.user, m.sys, m.floor_kib
    );
    if let Err(e) = std::fs::write(&args[0], line) {
        eprintln!("backup-bench: writing {:?}: {e}", args[0]);
        return ExitCode::from(125);
    }
    ExitCode::SUCCESS
}

/// Builds commands that run through the wrapper and reads what it measured.
#[derive(Clone, Debug)]
pub struct Runner {
    exe: PathBuf,
    result: PathBuf,
}

impl Runner {
    /// A runner using this executable as the wrapper, writing its result to
    /// `result` (one run at a time).
    pub fn new(result: &Path) -> Result<Self> {
        Ok(Runner {
            exe: std::env::current_exe().context("finding backup-bench itself")?,
            result: result.to_path_buf(),
        })
    }

    /// A command that runs `program` through the wrapper; add arguments,
    /// environment, cwd and stdio to it as to a plain command.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg(WRAPPER_ARG).arg(&self.result).arg("--").arg(program);
        c
    }

    /// Runs a command made by [`Runner::command`] and returns its measures.
    pub fn run(&self, cmd: &mut Command) -> Result<Measured> {
        let _ = std::fs::remove_file(&self.result);
        let status = cmd.status().context("starting the measuring wrapper")?;
        let text = std::fs::read_to_string(&self.result).with_context(|| {
            format!("the measuring wrapper wrote no result ({status}): {cmd:?}")
        })?;
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.len() != 6 {
            bail!("bad wrapper result {text:?}");
        }
        let num = |i: usize| -> Result<f64> {
            f[i].parse::<f64>()
                .with_context(|| format!("bad wrapper result {text:?}"))
        };
        Ok(Measured {
            wall: num(0)?,
            max_rss_kib: num(1)? as u64,
            code: num(2)? as i32,
            user: num(3)?,
            sys: num(4)?,
            floor_kib: num(5)? as u64,
        })
    }
}

/// The command a [`Runner::command`] wraps, to run untimed and directly
/// (the wrapper always exits with 0, hiding the program's exit code);
/// other commands are copied as they are. Arguments, environment changes
/// and the working folder carry over; stdio does not.
pub fn unwrapped(cmd: &Command) -> Command {
    let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
    let mut c = if args.len() >= 3 && args[0] == WRAPPER_ARG && args[2] == "--" {
        let mut c = Command::new(args.get(3).copied().unwrap_or_default());
        c.args(&args[4.min(args.len())..]);
        c
    } else {
        let mut c = Command::new(cmd.get_program());
        c.args(&args);
        c
    };
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// `/proc/PID/stat`; `None` if it cannot be read.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields after it start
    // behind the last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// Flushes every file system (`sync(2)`) and returns the seconds it took.
pub fn sync_all() -> f64 {
    let start = Instant::now();
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_exit_code_time_and_rss() {
        let m = run_direct(Command::new("sh").args(["-c", "sleep 0.05; exit 3"])).expect("run");
        assert_eq!(m.code, 3);
        assert!(m.wall >= 0.05, "{}", m.wall);
        assert!(m.max_rss_kib > 0);
        let ok = run_direct(&mut Command::new("true")).expect("run");
        assert!(ok.ok());
    }

    #[test]
    fn unwrapping_keeps_program_args_env_and_dir() {
        let runner = Runner::new(Path::new("/tmp/unused")).expect("runner");
        let mut c = runner.command("sh");
        c.args(["-c", "exit 4"])
            .env("BENCH_X", "1")
            .env_remove("BENCH_Y")
            .current_dir("/");
        let d = unwrapped(&c);
        assert_eq!(d.get_program(), "sh");
        assert_eq!(d.get_args().collect::<Vec<_>>(), ["-c", "exit 4"]);
        assert_eq!(d.get_envs().count(), 2);
        assert_eq!(d.get_current_dir(), Some(Path::new("/")));
        let status = unwrapped(&c).status().expect("run");
        assert_eq!(status.code(), Some(4));
    }

    #[test]
    fn reads_cpu_time_of_a_process() {
        let cpu = process_cpu_secs(std::process::id()).expect("own /proc/PID/stat");
        assert!(cpu >= 0.0);
        assert!(process_cpu_secs(u32::MAX).is_none());
    }
}
