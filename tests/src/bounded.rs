//! Runs that may not block: each is killed, and the test failed, when it
//! takes longer than a timeout. The fault-injection tests use these, since
//! a held lock, a full disk or a FIFO in the source are exactly what could
//! make a run hang.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{assert_code, Run, World};

/// How long any single command may take before the test calls it blocked.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs a command to completion (stdin closed), failing the test if it
/// takes longer than `timeout` (it is killed then): nothing may block
/// forever.
pub fn run_timeout(mut cmd: Command, timeout: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!("{cmd:?} did not finish within {timeout:?} (blocked?); stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// `backup-cli --profile <profile> <args>` within [`RUN_TIMEOUT`].
pub fn run(w: &World, args: &[&str]) -> Run {
    run_timeout(w.command(args), RUN_TIMEOUT)
}

/// `backup --force --json` within [`RUN_TIMEOUT`], asserting the exit
/// code; returns the JSON.
pub fn backup(w: &World, code: i32) -> Value {
    let r = run(w, &["backup", "--force", "--json"]);
    assert_code(&r, code, "backup");
    r.json()
}

/// `verify --all --json`, asserting it exits 0 and reports nothing wrong.
pub fn verify_all_clean(w: &World) -> Value {
    let r = run(w, &["verify", "--all", "--json"]);
    assert_code(&r, 0, "verify --all");
    let v = r.json();
    for k in ["corrupt", "missing", "unexpected"] {
        assert_eq!(
            v[k].as_array().map(Vec::len),
            Some(0),
            "verify reported {k}: {v:#}"
        );
    }
    v
}

/// Starts `backup --force --json` in the background, output discarded
/// (to be killed, or waited for, by the test).
pub fn spawn_backup(w: &World) -> Child {
    w.command(&["backup", "--force", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
