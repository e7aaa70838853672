//! backup-cli itself, to a folder (`ours`: backup, restore, verify) and to
//! the loopback S3 server (`ours-s3`: backup only). Each destination gets a
//! profile of its own that keeps the state files next to it, so the corpus
//! stays untouched; every run prints its JSON report, which is checked
//! against what the scenario should do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{untimed, Lab, Plan, Step, Update};
use crate::app::fsutil::{tail, TreeSummary};
use crate::app::model::{Sample, Scenario, Tool};
use crate::app::s3::{self, S3Server};

/// The arguments of every timed backup.
const BACKUP: [&str; 4] = ["backup", "--force", "--json", "--quiet"];

/// backup-cli's state for one destination.
#[derive(Clone, Debug)]
pub struct OursState {
    /// Its profile.
    pub profile: PathBuf,
    /// The destination folder (for S3: the server's folder of the prefix).
    pub dest: PathBuf,
    /// The folder of its state files.
    pub state: PathBuf,
    /// The latest snapshot (for S3: its manifest's `s3://` URL).
    pub latest: Option<PathBuf>,
    /// Whether the destination is on the S3 server.
    pub s3: bool,
}

/// `backup-cli --profile P` through the measuring wrapper.
fn command(lab: &Lab, st: &OursState) -> Command {
    let mut c = lab.cmd(&lab.bin.to_string_lossy());
    c.arg("--profile").arg(&st.profile);
    if st.s3 {
        s3::credentials(&mut c);
    }
    c
}

/// The state of `tool` (backup-cli to a folder or to S3).
fn slot(lab: &mut Lab, tool: Tool) -> &mut Option<OursState> {
    if tool == Tool::OursS3 {
        &mut lab.ours_s3
    } else {
        &mut lab.ours
    }
}

/// Quotes a string for TOML.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a fresh backup-cli profile for a new destination: a folder in
/// `dir`, or with `s3_prefix` that prefix of the S3 server's bucket.
fn new_state(lab: &Lab, dir: &Path, s3_prefix: Option<&str>) -> Result<OursState> {
    let state = dir.join("state");
    fs::create_dir_all(&state)?;
    let profile = dir.join("profile.toml");
    let s = |p: &Path| toml_str(&p.to_string_lossy());
    let (dest, destination, s3_table) = match s3_prefix {
        None => {
            let dest = dir.join("dest");
            let d = s(&dest);
            (dest, d, String::new())
        }
        Some(prefix) => {
            let server = lab.s3.as_ref().context("the S3 server is not running")?;
            (
                server.dir(prefix),
                toml_str(&format!("s3://{}/{prefix}", s3::BUCKET)),
                format!(
                    "\n# Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.\n[s3]\nendpoint = {}\n",
                    toml_str(&server.endpoint)
                ),
            )
        }
    };
    let text = format!(
        "# Written by backup-bench.\n\
         name = \"Bench\"\n\
         source = {}\n\
         destination = {}\n\
         once_per_day = false\n\
         max_backups = 1000\n\
         exclude = [\"temp_processing/\"]\n\
         # State files next to the profile, so the corpus stays untouched.\n\
         metadata_file = {}\n\
         log_file = {}\n\
         lock_file = {}\n\
         {}",
        s(&lab.src),
        destination,
        s(&state.join("backup_metadata.json")),
        s(&state.join("backup_operations.log")),
        s(&state.join("backup_in_progress.lock")),
        s3_table,
    );
    fs::write(&profile, text)?;
    Ok(OursState {
        profile,
        dest,
        state,
        latest: None,
        s3: s3_prefix.is_some(),
    })
}

/// To a folder: the initial backup makes a new destination in `dir`;
/// later backups, `restore latest --to DIR` and `verify` use it. `None`
/// without one.
pub fn prepare(lab: &Lab, sc: Scenario, dir: &Path) -> Result<Option<Plan>> {
    let mut warm = vec![lab.src.clone()];
    if sc == Scenario::Initial {
        let st = new_state(lab, dir, None)?;
        let mut c = command(lab, &st);
        c.args(BACKUP);
        let mut plan = Plan::new(c, warm);
        plan.update = Update::Ours(st);
        return Ok(Some(plan));
    }
    let Some(st) = lab.ours.clone() else {
        return Ok(None);
    };
    warm.extend([st.dest.clone(), st.state.clone()]);
    let mut c = command(lab, &st);
    let mut update = Update::None;
    match sc {
        Scenario::Restore => {
            warm.remove(0);
            c.args(["restore", "latest", "--to"]).arg(dir).arg("--json");
            update = Update::RestoreDir(dir.to_path_buf());
        }
        Scenario::Verify => {
            warm.remove(0);
            c.args(["verify", "--json"]);
        }
        Scenario::Initial | Scenario::NoChange | Scenario::Mutate => {
            c.args(BACKUP);
        }
    }
    let mut plan = Plan::new(c, warm);
    plan.update = update;
    Ok(Some(plan))
}

/// To the S3 server: each initial backup to a fresh prefix
/// `ours/initial-N`, the after-mutate backups to the last one. `None`
/// without one.
pub fn prepare_s3(lab: &Lab, sc: Scenario, run: usize, dir: &Path) -> Result<Option<Plan>> {
    let mut warm = vec![lab.src.clone()];
    let mut update = Update::None;
    let st = if sc == Scenario::Initial {
        let st = new_state(lab, dir, Some(&format!("ours/initial-{run}")))?;
        update = Update::Ours(st.clone());
        st
    } else {
        let Some(st) = lab.ours_s3.clone() else {
            return Ok(None);
        };
        warm.extend([st.dest.clone(), st.state.clone()]);
        st
    };
    let mut c = command(lab, &st);
    c.args(BACKUP);
    let mut plan = Plan::new(c, warm);
    plan.update = update;
    Ok(Some(plan))
}

/// Why backup-cli cannot back up to S3: it lacks the feature.
pub fn no_s3_feature(bin: &Path) -> String {
    format!(
        "{} was built without the s3 feature (rebuild it with `cargo build --release -p backup-cli --features s3`)",
        bin.display()
    )
}

/// Whether a run ended as a build without the s3 feature does: exit 2,
/// and stderr (the file `err`) says how to get the feature.
pub fn lacks_s3_feature(code: i32, err: &Path) -> bool {
    code == 2
        && fs::read_to_string(err)
            .unwrap_or_default()
            .contains("--features s3")
}

/// Checks, untimed, that `bin` can back up to the S3 server (`list` of an
/// empty prefix); `Err` says why not, e.g. a build without the s3 feature.
pub fn probe_s3_support(bin: &Path, server: &S3Server, dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let profile = dir.join("profile.toml");
    let s = |p: &Path| toml_str(&p.to_string_lossy());
    let text = format!(
        "name = \"Probe\"\nsource = {}\ndestination = {}\n\
         metadata_file = {}\nlog_file = {}\nlock_file = {}\n\n[s3]\nendpoint = {}\n",
        s(dir),
        toml_str(&format!("s3://{}/probe", s3::BUCKET)),
        s(&dir.join("backup_metadata.json")),
        s(&dir.join("backup_operations.log")),
        s(&dir.join("backup_in_progress.lock")),
        toml_str(&server.endpoint),
    );
    fs::write(&profile, text).map_err(|e| format!("writing {}: {e}", profile.display()))?;
    let mut c = Command::new(bin);
    c.arg("--profile").arg(&profile).args(["list", "--json"]);
    s3::credentials(&mut c);
    match untimed(&mut c) {
        Ok((0, _, _)) => Ok(()),
        Ok((2, _, err)) if err.contains("--features s3") => Err(no_s3_feature(bin)),
        Ok((code, out, err)) => Err(format!(
            "`backup-cli list` on the S3 server failed with exit code {code}: {}",
            format!("{out}\n{err}").trim().lines().last().unwrap_or("")
        )),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Reads backup-cli's JSON report of a timed run (`what`) and checks it
/// against the scenario: the outcome, failed files, restore mismatches,
/// verify findings. Fills in the sample's bytes and files, marks it failed
/// when something is wrong (saying what in `anomalies`), and records a new
/// snapshot as the tool's latest.
pub fn check(
    lab: &mut Lab,
    sc: Scenario,
    tool: Tool,
    what: &str,
    step: &Step,
    sample: &mut Sample,
    anomalies: &mut Vec<String>,
) {
    let text = fs::read_to_string(&step.out).unwrap_or_default();
    let json: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            sample.ok = false;
            anomalies.push(format!(
                "{what}: stdout is not one JSON document ({e}): {:?} stderr: {}",
                text.chars().take(300).collect::<String>(),
                tail(&step.err, 3)
            ));
            return;
        }
    };
    match sc {
        Scenario::Initial | Scenario::Mutate | Scenario::NoChange => {
            if check_backup(sc, what, &json, sample, anomalies) {
                record_latest(lab, tool, &step.plan.update, &json);
            }
        }
        Scenario::Restore => {
            sample.bytes = u64_field(&json, "bytes_restored");
            sample.files = u64_field(&json, "files_restored");
            expect_empty(
                &json,
                &["mismatches", "errors", "not_in_snapshot"],
                what,
                sample,
                anomalies,
            );
        }
        Scenario::Verify => {
            sample.bytes = u64_field(&json, "bytes_checked");
            sample.files = u64_field(&json, "files_checked");
            expect_empty(
                &json,
                &["corrupt", "missing", "unexpected"],
                what,
                sample,
                anomalies,
            );
        }
    }
}

/// A number of the report.
fn u64_field(json: &Value, k: &str) -> Option<u64> {
    json.get(k).and_then(Value::as_u64)
}

/// A backup's report: outcome `created` (`no_changes` for the no-change
/// scenario), no failed files. Whether it created a snapshot.
fn check_backup(
    sc: Scenario,
    what: &str,
    json: &Value,
    sample: &mut Sample,
    anomalies: &mut Vec<String>,
) -> bool {
    let outcome = json.get("outcome").and_then(Value::as_str).unwrap_or("");
    let want = if sc == Scenario::NoChange {
        "no_changes"
    } else {
        "created"
    };
    if outcome != want {
        sample.ok = false;
        anomalies.push(format!(
            "{what}: outcome {outcome:?}, expected {want:?} (error: {})",
            json.get("error").unwrap_or(&Value::Null)
        ));
    }
    sample.bytes = u64_field(json, "bytes_copied");
    sample.files = u64_field(json, "files_total");
    if let Some(f) = u64_field(json, "files_failed").filter(|&f| f > 0) {
        anomalies.push(format!("{what}: {f} files failed: {}", json["failed"]));
    }
    outcome == "created"
}

/// Records the snapshot a backup created as the tool's latest (with the
/// new destination's state, for an initial backup).
fn record_latest(lab: &mut Lab, tool: Tool, update: &Update, json: &Value) {
    let path = json
        .get("snapshot_path")
        .and_then(Value::as_str)
        .map(PathBuf::from);
    match update {
        Update::Ours(st) => {
            let mut st = st.clone();
            st.latest = path;
            *slot(lab, tool) = Some(st);
        }
        _ => {
            if let Some(o) = slot(lab, tool).as_mut() {
                o.latest = path;
            }
        }
    }
}

/// Fails the sample for each of the report's lists `keys` that is not
/// empty.
fn expect_empty(
    json: &Value,
    keys: &[&str],
    what: &str,
    sample: &mut Sample,
    anomalies: &mut Vec<String>,
) {
    for &k in keys {
        if let Some(a) = json.get(k).and_then(Value::as_array) {
            if !a.is_empty() {
                sample.ok = false;
                anomalies.push(format!("{what}: {} {k}: {}", a.len(), json[k]));
            }
        }
    }
}

/// Untimed check of backup-cli's latest snapshot on the S3 server
/// (`verify --quick`, which the server must still answer) against the
/// source's file count. Lines go to `lines`, the ones that are wrong also
/// to `bad`.
pub fn s3_consistency(
    lab: &Lab,
    expected: &TreeSummary,
    lines: &mut Vec<String>,
    bad: &mut Vec<String>,
) {
    let Some(st) = lab.ours_s3.clone().filter(|s| s.latest.is_some()) else {
        return;
    };
    let label = format!("{} latest snapshot", Tool::OursS3.label());
    let mut c = Command::new(&lab.bin);
    c.arg("--profile").arg(&st.profile);
    s3::credentials(&mut c);
    c.args(["verify", "--quick", "--json"]);
    match untimed(&mut c) {
        Ok((0, out, _)) => {
            let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            let n = |k: &str| json.get(k).and_then(Value::as_array).map_or(0, Vec::len);
            let problems = n("corrupt") + n("missing") + n("unexpected");
            let files = json.get("files_checked").and_then(Value::as_u64);
            let line = format!(
                "{label}: `verify --quick`: {} files there with the right size, {problems} corrupt/missing/unexpected (the source has {} files)",
                files.map_or("?".into(), |f| f.to_string()),
                expected.files,
            );
            if problems > 0 || files != Some(expected.files) {
                bad.push(line.clone());
            }
            lines.push(line);
        }
        Ok((code, out, err)) => {
            let line = format!(
                "{label}: `verify --quick` exited with {code}: {} {}",
                out.chars().take(300).collect::<String>(),
                err.lines().last().unwrap_or("")
            );
            bad.push(line.clone());
            lines.push(line);
        }
        Err(e) => lines.push(format!("{label}: could not verify: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
