//! The `run` command: prepares the corpus and each tool's state, runs every
//! scenario with the tools interleaved (A B A B …) on a warm cache, and
//! collects wall times and peak RSS.
//!
//! The S3 column (`ours-s3`, `restic-s3`) backs up the same corpus to a
//! loopback `rclone serve s3` started for the run (see [`crate::s3`]).
//!
//! Scratch state (destinations, repositories, restores) lives in a fresh
//! `scratch-<time>` folder of the work dir and is deleted only at the end,
//! since deleting many files is slow on some disks and would disturb the
//! timings.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::corpus::{self, CorpusSize, GENERATOR_VERSION};
use crate::fsutil::{self, TreeSummary};
use crate::measure;
use crate::model::{CorpusInfo, Machine, Results, Sample, Scenario, Tool};
use crate::report;
use crate::s3::{self, S3Server};

/// The `apt-get` line that installs the reference tools.
pub const INSTALL_HINT: &str = "apt-get install rsync restic borgbackup";

/// Options of `run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Which corpus.
    pub corpus: CorpusSize,
    /// The work folder (corpus, profiles, scratch).
    pub work: PathBuf,
    /// Timed runs per scenario and tool.
    pub runs: usize,
    /// Tools asked for.
    pub tools: Vec<Tool>,
    /// The backup-cli binary (default: next to this one).
    pub bin: Option<PathBuf>,
    /// The rclone binary for the S3 tools (default: see [`s3::find_rclone`]).
    pub rclone: Option<PathBuf>,
    /// Where to write the Markdown report.
    pub write: Option<PathBuf>,
    /// Corpus seed.
    pub seed: u64,
    /// Keep the scratch folder instead of deleting it at the end.
    pub keep_scratch: bool,
    /// Regenerate the corpus even if a matching one exists.
    pub fresh: bool,
    /// The command line, for the report.
    pub command_line: String,
}

/// backup-cli's state for one destination.
#[derive(Clone, Debug)]
struct OursState {
    profile: PathBuf,
    /// The destination folder (for S3: the server's folder of the prefix).
    dest: PathBuf,
    state: PathBuf,
    /// The latest snapshot (for S3: its manifest's `s3://` URL).
    latest: Option<PathBuf>,
    /// Whether the destination is on the S3 server.
    s3: bool,
}

/// A restic repository on the S3 server.
#[derive(Clone, Debug)]
struct ResticS3Repo {
    /// `s3:http://127.0.0.1:PORT/BUCKET/PREFIX`.
    url: String,
    /// The server's folder holding its objects.
    dir: PathBuf,
}

/// What a successful step changes in the chains.
enum Update {
    None,
    Ours(OursState),
    RsyncLatest(PathBuf),
    Restic(PathBuf),
    ResticS3(ResticS3Repo),
    Borg(PathBuf, String),
    RestoreDir(PathBuf),
}

/// A prepared timed run.
struct Step {
    cmd: Command,
    warm: Vec<PathBuf>,
    out: PathBuf,
    err: PathBuf,
    update: Update,
    /// Exit codes that count as success besides 0 (borg: 1 = warning).
    ok_codes: Vec<i32>,
}

struct Bench {
    runner: measure::Runner,
    src: PathBuf,
    scratch: PathBuf,
    logs: PathBuf,
    bin: PathBuf,
    ours: Option<OursState>,
    rsync_latest: Option<PathBuf>,
    restic_repo: Option<PathBuf>,
    borg: Option<(PathBuf, String)>,
    restored: BTreeMap<Tool, PathBuf>,
    anomalies: Vec<String>,
    /// The loopback S3 server (stopped when dropped).
    s3: Option<S3Server>,
    /// backup-cli's state for its S3 destination.
    ours_s3: Option<OursState>,
    /// restic's repository on the S3 server.
    restic_s3: Option<ResticS3Repo>,
    /// Tools that turned out unable to run mid-way, and why.
    disabled: BTreeMap<Tool, String>,
}

/// Corpus marker file contents.
fn marker_json(size: CorpusSize, seed: u64, mutations: u64) -> Value {
    serde_json::json!({
        "corpus": size.name(),
        "seed": seed,
        "generator": GENERATOR_VERSION,
        "mutations": mutations,
    })
}

/// Finds the backup-cli binary: `--bin`, else next to this executable.
fn find_bin(opt: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = opt {
        if !p.is_file() {
            bail!("--bin {} does not exist", p.display());
        }
        return Ok(fs::canonicalize(p)?);
    }
    let exe = std::env::current_exe()?;
    let sib = exe.with_file_name("backup-cli");
    if sib.is_file() {
        return Ok(sib);
    }
    bail!(
        "backup-cli not found next to {} (build it with `cargo build --release -p backup-cli`, or pass --bin PATH)",
        exe.display()
    )
}

/// Checks, untimed, that `bin` can back up to the S3 server (`list` of an
/// empty prefix); `Err` says why not, e.g. a build without the s3 feature.
fn probe_s3_support(bin: &Path, server: &S3Server, dir: &Path) -> Result<(), String> {
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

/// Runs an untimed setup command (directly, not through the measuring
/// wrapper, whose exit code is always 0) and fails with its stderr if it
/// fails.
fn setup(cmd: &mut Command) -> Result<()> {
    let mut cmd = measure::unwrapped(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The first line a command prints (stdout, else stderr), for versions.
fn version_line(program: &Path, args: &[&str]) -> String {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(e) => format!("(unavailable: {e})"),
    }
}

/// The last lines of a file, for error reports.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Why backup-cli cannot back up to S3: it lacks the feature.
fn no_s3_feature(bin: &Path) -> String {
    format!(
        "{} was built without the s3 feature (rebuild it with `cargo build --release -p backup-cli --features s3`)",
        bin.display()
    )
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

/// The exclusions as rsync options.
fn rsync_excludes() -> Vec<String> {
    let mut v: Vec<String> = fsutil::EXCLUDED_DIRS
        .iter()
        .map(|d| format!("--exclude={d}/"))
        .collect();
    v.extend(
        fsutil::EXCLUDED_SUFFIXES
            .iter()
            .map(|s| format!("--exclude=*{s}")),
    );
    v
}

/// The exclusions as restic options.
fn restic_excludes() -> Vec<String> {
    let mut v: Vec<String> = fsutil::EXCLUDED_DIRS
        .iter()
        .map(|d| format!("--exclude={d}"))
        .collect();
    v.extend(
        fsutil::EXCLUDED_SUFFIXES
            .iter()
            .map(|s| format!("--exclude=*{s}")),
    );
    v
}

/// The exclusions as borg options (shell-style patterns).
fn borg_excludes() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for d in fsutil::EXCLUDED_DIRS {
        v.push(format!("--exclude=sh:{d}"));
        v.push(format!("--exclude=sh:**/{d}"));
    }
    for s in fsutil::EXCLUDED_SUFFIXES {
        v.push(format!("--exclude=sh:**/*{s}"));
    }
    v
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Bench {
    fn cmd(&self, program: &str) -> Command {
        let mut c = self.runner.command(program);
        c.stdin(Stdio::null());
        c
    }

    fn restic(&self) -> Command {
        let mut c = self.cmd("restic");
        c.env("RESTIC_PASSWORD", "backup-bench")
            .env("RESTIC_CACHE_DIR", self.scratch.join("cache/restic"));
        c
    }

    fn borg(&self) -> Command {
        let mut c = self.cmd("borg");
        c.env("BORG_BASE_DIR", self.scratch.join("cache/borg"))
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_PASSPHRASE", "");
        c
    }

    fn ours_cmd(&self, st: &OursState) -> Command {
        let mut c = self.cmd(&self.bin.to_string_lossy());
        c.arg("--profile").arg(&st.profile);
        if st.s3 {
            s3::credentials(&mut c);
        }
        c
    }

    /// restic with the repository `url` on the S3 server.
    fn restic_s3(&self, url: &str) -> Command {
        let mut c = self.restic();
        c.arg("-r").arg(url);
        s3::credentials(&mut c);
        c
    }

    /// The state of `tool` (backup-cli to a folder or to S3).
    fn ours_slot(&mut self, tool: Tool) -> &mut Option<OursState> {
        if tool == Tool::OursS3 {
            &mut self.ours_s3
        } else {
            &mut self.ours
        }
    }

    /// Writes a fresh backup-cli profile for a new destination: a folder
    /// in `dir`, or with `s3_prefix` that prefix of the S3 server's bucket.
    fn new_ours_state(&self, dir: &Path, s3_prefix: Option<&str>) -> Result<OursState> {
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
                let server = self.s3.as_ref().context("the S3 server is not running")?;
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
            s(&self.src),
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

    /// Prepares the timed run of `tool` in `sc`, run `run`; `None` when a
    /// prerequisite (an earlier scenario's state) is missing.
    fn prepare(&mut self, sc: Scenario, tool: Tool, run: usize) -> Result<Option<Step>> {
        let dir = self
            .scratch
            .join(sc.key())
            .join(format!("{}-{run}", tool.key()));
        let tag = format!("{}-{}-{run}", sc.key(), tool.key());
        let out = self.logs.join(format!("{tag}.out"));
        let err = self.logs.join(format!("{tag}.err"));
        let src = self.src.clone();
        let mut warm = vec![src.clone()];
        let mut ok_codes = Vec::new();
        let mut update = Update::None;
        use Scenario::*;
        let cmd = match (tool, sc) {
            (Tool::Ours, Initial) => {
                let st = self.new_ours_state(&dir, None)?;
                let mut c = self.ours_cmd(&st);
                c.args(["backup", "--force", "--json", "--quiet"]);
                update = Update::Ours(st);
                c
            }
            (Tool::Ours, NoChange | Mutate | Restore | Verify) => {
                let Some(st) = self.ours.clone() else {
                    return Ok(None);
                };
                warm.extend([st.dest.clone(), st.state.clone()]);
                let mut c = self.ours_cmd(&st);
                match sc {
                    Restore => {
                        warm.remove(0);
                        c.args(["restore", "latest", "--to"])
                            .arg(&dir)
                            .arg("--json");
                        update = Update::RestoreDir(dir.clone());
                    }
                    Verify => {
                        warm.remove(0);
                        c.args(["verify", "--json"]);
                    }
                    _ => {
                        c.args(["backup", "--force", "--json", "--quiet"]);
                    }
                }
                c
            }
            (Tool::Find, _) => {
                let mut c = self.cmd("find");
                c.arg(&src).args(["-printf", "%s %T@\\n"]);
                c
            }
            (Tool::Cpa, Initial) => {
                fs::create_dir_all(dir.parent().unwrap_or(&self.scratch))?;
                let mut c = self.cmd("cp");
                c.arg("-a").arg(&src).arg(&dir);
                c
            }
            (Tool::Cpa, Restore | Verify) => {
                // A plain copy of the very snapshot backup-cli restores.
                let from = self
                    .ours
                    .as_ref()
                    .and_then(|o| o.latest.clone())
                    .unwrap_or_else(|| src.clone());
                fs::create_dir_all(&dir)?;
                warm = vec![from.clone()];
                let mut c = self.cmd("cp");
                c.arg("-a").arg(from.join(".")).arg(&dir);
                c
            }
            (Tool::Cpa, NoChange | Mutate) => return Ok(None),
            (Tool::Cpal, _) => {
                let from = self
                    .ours
                    .as_ref()
                    .and_then(|o| o.latest.clone())
                    .unwrap_or_else(|| src.clone());
                fs::create_dir_all(dir.parent().unwrap_or(&self.scratch))?;
                warm = vec![from.clone()];
                let mut c = self.cmd("cp");
                c.arg("-al").arg(&from).arg(&dir);
                c
            }
            (Tool::Rsync, _) => {
                fs::create_dir_all(&dir)?;
                let mut c = self.cmd("rsync");
                c.arg("-a").arg("--delete").args(rsync_excludes());
                if sc != Initial {
                    let Some(prev) = self.rsync_latest.clone() else {
                        return Ok(None);
                    };
                    c.arg(format!("--link-dest={}", prev.display()));
                    warm.push(prev);
                }
                c.arg(format!("{}/", src.display()))
                    .arg(format!("{}/", dir.display()));
                update = Update::RsyncLatest(dir.clone());
                c
            }
            (Tool::Restic, _) => {
                let repo = if sc == Initial {
                    let repo = dir.join("repo");
                    fs::create_dir_all(&dir)?;
                    setup(self.restic().arg("-r").arg(&repo).arg("init"))?;
                    update = Update::Restic(repo.clone());
                    repo
                } else {
                    let Some(r) = self.restic_repo.clone() else {
                        return Ok(None);
                    };
                    r
                };
                warm.extend([repo.clone(), self.scratch.join("cache/restic")]);
                let mut c = self.restic();
                c.arg("-r").arg(&repo);
                match sc {
                    Restore => {
                        warm.remove(0);
                        fs::create_dir_all(&dir)?;
                        c.args(["restore", "latest", "--target"]).arg(&dir);
                        update = Update::RestoreDir(dir.clone());
                    }
                    Verify => {
                        warm.remove(0);
                        c.args(["check", "--read-data"]);
                    }
                    _ => {
                        c.arg("backup").args(restic_excludes()).arg(&src);
                    }
                }
                c
            }
            (Tool::OursS3, _) => {
                let st = if sc == Initial {
                    let st = self.new_ours_state(&dir, Some(&format!("ours/initial-{run}")))?;
                    update = Update::Ours(st.clone());
                    st
                } else {
                    let Some(st) = self.ours_s3.clone() else {
                        return Ok(None);
                    };
                    warm.extend([st.dest.clone(), st.state.clone()]);
                    st
                };
                let mut c = self.ours_cmd(&st);
                c.args(["backup", "--force", "--json", "--quiet"]);
                c
            }
            (Tool::ResticS3, _) => {
                let repo = if sc == Initial {
                    let server = self.s3.as_ref().context("the S3 server is not running")?;
                    let prefix = format!("restic/initial-{run}");
                    let repo = ResticS3Repo {
                        url: format!("s3:{}/{}/{prefix}", server.endpoint, s3::BUCKET),
                        dir: server.dir(&prefix),
                    };
                    setup(self.restic_s3(&repo.url).arg("init"))?;
                    update = Update::ResticS3(repo.clone());
                    repo
                } else {
                    let Some(r) = self.restic_s3.clone() else {
                        return Ok(None);
                    };
                    r
                };
                warm.extend([repo.dir.clone(), self.scratch.join("cache/restic")]);
                let mut c = self.restic_s3(&repo.url);
                c.arg("backup").args(restic_excludes()).arg(&src);
                c
            }
            (Tool::Borg, _) => {
                let repo = if sc == Initial {
                    let repo = dir.join("repo");
                    fs::create_dir_all(&dir)?;
                    setup(
                        self.borg()
                            .args(["init", "--encryption", "none"])
                            .arg(&repo),
                    )?;
                    repo
                } else {
                    let Some((r, _)) = self.borg.clone() else {
                        return Ok(None);
                    };
                    r
                };
                warm.extend([repo.clone(), self.scratch.join("cache/borg")]);
                let mut c = self.borg();
                // 1 is borg's "warning" exit code (e.g. a file changed).
                ok_codes.push(1);
                match sc {
                    Restore => {
                        warm.remove(0);
                        let Some((_, archive)) = self.borg.clone() else {
                            return Ok(None);
                        };
                        fs::create_dir_all(&dir)?;
                        c.current_dir(&dir)
                            .arg("extract")
                            .arg(format!("{}::{archive}", repo.display()));
                        update = Update::RestoreDir(dir.clone());
                    }
                    Verify => {
                        warm.remove(0);
                        c.args(["check", "--verify-data"]).arg(&repo);
                    }
                    _ => {
                        let archive = format!("{}-{run}", sc.key());
                        c.current_dir(&src)
                            .arg("create")
                            .args(borg_excludes())
                            .arg(format!("{}::{archive}", repo.display()))
                            .arg(".");
                        update = Update::Borg(repo.clone(), archive);
                    }
                }
                c
            }
        };
        Ok(Some(Step {
            cmd,
            warm,
            out,
            err,
            update,
            ok_codes,
        }))
    }

    /// Runs one prepared step on a warm cache and records what it did.
    fn measure(&mut self, sc: Scenario, tool: Tool, run: usize, mut step: Step) -> Result<Sample> {
        let stdout: Stdio = if tool == Tool::Find {
            fs::File::create("/dev/null")?.into()
        } else {
            fs::File::create(&step.out)?.into()
        };
        step.cmd.stdout(stdout).stderr(fs::File::create(&step.err)?);
        measure::sync_all();
        fsutil::warm(&step.warm)?;
        let server_cpu = |b: &Bench| {
            b.s3.as_ref()
                .filter(|_| tool.is_s3())
                .and_then(s3::cpu_secs)
        };
        let cpu_before = server_cpu(self);
        let m = self.runner.run(&mut step.cmd)?;
        let cpu_after = server_cpu(self);
        let sync_after = measure::sync_all();
        let mut sample = Sample {
            m,
            sync_after,
            bytes: None,
            files: None,
            server_cpu: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
            ok: m.ok() || step.ok_codes.contains(&m.code),
        };
        let what = format!("{} {} run {}", sc.key(), tool.label(), run + 1);
        if tool == Tool::OursS3
            && m.code == 2
            && fs::read_to_string(&step.err)
                .unwrap_or_default()
                .contains("--features s3")
        {
            // Not a backup at all: say so, and do not record a time.
            let why = no_s3_feature(&self.bin);
            self.anomalies.push(format!("{what}: {why}"));
            self.disabled.insert(tool, why);
            sample.ok = false;
            return Ok(sample);
        }
        if !sample.ok {
            self.anomalies.push(format!(
                "{what}: exit code {}: {}",
                m.code,
                tail(&step.err, 3)
            ));
        } else if m.code != 0 {
            self.anomalies.push(format!(
                "{what}: exit code {} (a warning): {}",
                m.code,
                tail(&step.err, 2)
            ));
        }
        if matches!(tool, Tool::Ours | Tool::OursS3) {
            self.check_ours(sc, tool, &what, &step, &mut sample)?;
        }
        if sample.ok {
            match step.update {
                Update::None => {}
                // check_ours already recorded the new state and snapshot.
                Update::Ours(_) => {}
                Update::RsyncLatest(p) => self.rsync_latest = Some(p),
                Update::Restic(p) => self.restic_repo = Some(p),
                Update::ResticS3(r) => self.restic_s3 = Some(r),
                Update::Borg(p, a) => self.borg = Some((p, a)),
                Update::RestoreDir(p) => {
                    self.restored.entry(tool).or_insert(p);
                }
            }
        }
        Ok(sample)
    }

    /// Reads backup-cli's JSON and checks the outcome of the scenario.
    fn check_ours(
        &mut self,
        sc: Scenario,
        tool: Tool,
        what: &str,
        step: &Step,
        sample: &mut Sample,
    ) -> Result<()> {
        let text = fs::read_to_string(&step.out).unwrap_or_default();
        let json: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                sample.ok = false;
                self.anomalies.push(format!(
                    "{what}: stdout is not one JSON document ({e}): {:?} stderr: {}",
                    text.chars().take(300).collect::<String>(),
                    tail(&step.err, 3)
                ));
                return Ok(());
            }
        };
        let u = |k: &str| json.get(k).and_then(Value::as_u64);
        let outcome = json.get("outcome").and_then(Value::as_str).unwrap_or("");
        match sc {
            Scenario::Initial | Scenario::Mutate | Scenario::NoChange => {
                let want = if sc == Scenario::NoChange {
                    "no_changes"
                } else {
                    "created"
                };
                if outcome != want {
                    sample.ok = false;
                    self.anomalies.push(format!(
                        "{what}: outcome {outcome:?}, expected {want:?} (error: {})",
                        json.get("error").unwrap_or(&Value::Null)
                    ));
                }
                sample.bytes = u("bytes_copied");
                sample.files = u("files_total");
                if let Some(f) = u("files_failed").filter(|&f| f > 0) {
                    self.anomalies
                        .push(format!("{what}: {f} files failed: {}", json["failed"]));
                }
                if outcome == "created" {
                    let path = json
                        .get("snapshot_path")
                        .and_then(Value::as_str)
                        .map(PathBuf::from);
                    match &step.update {
                        Update::Ours(st) => {
                            let mut st = st.clone();
                            st.latest = path;
                            *self.ours_slot(tool) = Some(st);
                        }
                        _ => {
                            if let Some(o) = self.ours_slot(tool).as_mut() {
                                o.latest = path;
                            }
                        }
                    }
                }
            }
            Scenario::Restore => {
                sample.bytes = u("bytes_restored");
                sample.files = u("files_restored");
                for k in ["mismatches", "errors", "not_in_snapshot"] {
                    if let Some(a) = json.get(k).and_then(Value::as_array) {
                        if !a.is_empty() {
                            sample.ok = false;
                            self.anomalies
                                .push(format!("{what}: {} {k}: {}", a.len(), json[k]));
                        }
                    }
                }
            }
            Scenario::Verify => {
                sample.bytes = u("bytes_checked");
                sample.files = u("files_checked");
                for k in ["corrupt", "missing", "unexpected"] {
                    if let Some(a) = json.get(k).and_then(Value::as_array) {
                        if !a.is_empty() {
                            sample.ok = false;
                            self.anomalies
                                .push(format!("{what}: {} {k}: {}", a.len(), json[k]));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Untimed checks that every tool saw the same files.
    fn consistency(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let expected = match fsutil::summarize(&self.src, &fsutil::is_excluded) {
            Ok(s) => s,
            Err(e) => {
                lines.push(format!("could not read the source: {e:#}"));
                return lines;
            }
        };
        let describe = |s: &TreeSummary| {
            format!(
                "{} files, {} symlinks, {} folders, {:.1} MiB",
                s.files,
                s.symlinks,
                s.dirs,
                mib(s.bytes)
            )
        };
        lines.push(format!("source after exclusions: {}", describe(&expected)));
        let not_manifest = |p: &Path| p == Path::new(".backup-snapshot");
        let mut trees: Vec<(String, PathBuf, bool)> = Vec::new();
        if let Some(l) = self.ours.as_ref().and_then(|o| o.latest.clone()) {
            trees.push(("backup-cli latest snapshot".into(), l, true));
        }
        if let Some(p) = self.rsync_latest.clone() {
            trees.push(("rsync latest snapshot".into(), p, true));
        }
        for (tool, dir) in &self.restored {
            let root = if *tool == Tool::Restic {
                dir.join(self.src.strip_prefix("/").unwrap_or(&self.src))
            } else {
                dir.clone()
            };
            trees.push((
                format!("{} restore", tool.label()),
                root,
                *tool == Tool::Ours,
            ));
        }
        for (label, root, full) in trees {
            if full {
                match fsutil::compare_trees(
                    &self.src,
                    &fsutil::is_excluded,
                    &root,
                    &not_manifest,
                    5,
                ) {
                    Ok(d) if d.content_count == 0 => {
                        let meta = if d.metadata_count == 0 {
                            "same modes and mtimes".to_string()
                        } else {
                            format!(
                                "{} entries with other modes/mtimes (e.g. {})",
                                d.metadata_count,
                                d.metadata.join("; ")
                            )
                        };
                        lines.push(format!(
                            "{label}: same files and content as the source; {meta}"
                        ));
                        if label.contains("restore") && d.metadata_count > 0 {
                            self.anomalies.push(format!(
                                "backup-cli restore: {} entries differ from the source in mode or mtime (e.g. {})",
                                d.metadata_count,
                                d.metadata.join("; ")
                            ));
                        }
                    }
                    Ok(d) => {
                        let s = format!(
                            "{label}: {} differences from the source: {}",
                            d.content_count,
                            d.content.join("; ")
                        );
                        self.anomalies.push(s.clone());
                        lines.push(s);
                    }
                    Err(e) => lines.push(format!("{label}: could not compare: {e:#}")),
                }
            } else {
                match fsutil::summarize(&root, &not_manifest) {
                    Ok(s)
                        if (s.files, s.bytes, s.symlinks)
                            == (expected.files, expected.bytes, expected.symlinks) =>
                    {
                        lines.push(format!("{label}: {} (same as the source)", describe(&s)))
                    }
                    Ok(s) => {
                        let line = format!(
                            "{label}: {} (the source has {})",
                            describe(&s),
                            describe(&expected)
                        );
                        self.anomalies.push(line.clone());
                        lines.push(line);
                    }
                    Err(e) => lines.push(format!("{label}: could not read: {e:#}")),
                }
            }
        }
        lines.extend(self.s3_consistency(&expected));
        lines
    }

    /// Untimed checks of what the S3 tools left on the server: backup-cli's
    /// `verify --quick` of its latest snapshot, restic's `check` and
    /// `stats latest` (the server must still run).
    fn s3_consistency(&mut self, expected: &TreeSummary) -> Vec<String> {
        let mut lines = Vec::new();
        let mut bad = Vec::new();
        if let Some(st) = self.ours_s3.clone().filter(|s| s.latest.is_some()) {
            let label = format!("{} latest snapshot", Tool::OursS3.label());
            let mut c = Command::new(&self.bin);
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
        if let Some(repo) = self.restic_s3.clone() {
            let label = format!("{} repository", Tool::ResticS3.label());
            let mut c = self.restic_s3(&repo.url);
            c.arg("check");
            match untimed(&mut c) {
                Ok((0, _, _)) => lines.push(format!("{label}: `restic check`: no errors")),
                Ok((code, out, err)) => {
                    let line = format!(
                        "{label}: `restic check` exited with {code}: {}",
                        format!("{out}\n{err}").trim().lines().last().unwrap_or("")
                    );
                    bad.push(line.clone());
                    lines.push(line);
                }
                Err(e) => lines.push(format!("{label}: could not check: {e:#}")),
            }
            let mut c = self.restic_s3(&repo.url);
            c.args(["stats", "latest", "--json"]);
            if let Ok((0, out, _)) = untimed(&mut c) {
                let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
                if let Some(size) = json.get("total_size").and_then(Value::as_u64) {
                    let line = format!(
                        "{label}: latest snapshot holds {:.1} MiB ({size} bytes; the source has {} bytes)",
                        mib(size),
                        expected.bytes
                    );
                    if size != expected.bytes {
                        bad.push(line.clone());
                    }
                    lines.push(line);
                }
            }
        }
        self.anomalies.extend(bad);
        lines
    }
}

/// Runs an untimed command (stdin closed) and returns its exit code (-1 if
/// killed), stdout and stderr.
fn untimed(cmd: &mut Command) -> Result<(i32, String, String)> {
    let mut cmd = measure::unwrapped(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Makes sure the corpus exists (generating or reusing it); returns its
/// info and the number of mutation rounds already applied.
fn ensure_corpus(opts: &RunOptions, scratch: &Path) -> Result<CorpusInfo> {
    let name = format!("corpus-{}", opts.corpus.name());
    let src = opts.work.join(&name);
    let marker = opts.work.join(format!("{name}.json"));
    let want = marker_json(opts.corpus, opts.seed, 0);
    let existing: Option<Value> = fs::read_to_string(&marker)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let matches = existing.as_ref().is_some_and(|v| {
        ["corpus", "seed", "generator"]
            .iter()
            .all(|k| v.get(k) == want.get(k))
    }) && src.is_dir();
    let mut generated_secs = None;
    let mut mutations_before = 0;
    if matches && !opts.fresh {
        mutations_before = existing
            .as_ref()
            .and_then(|v| v.get("mutations"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        eprintln!(
            "reusing corpus {} ({} mutation rounds applied so far)",
            src.display(),
            mutations_before
        );
    } else {
        if src.exists() {
            let aside = scratch.join("old-corpus");
            eprintln!(
                "moving the old corpus aside to {} (deleted at the end)",
                aside.display()
            );
            fs::rename(&src, &aside)?;
        }
        let _ = fs::remove_file(&marker);
        eprintln!(
            "generating the {} corpus (seed {}) in {} …",
            opts.corpus.name(),
            opts.seed,
            src.display()
        );
        let t = std::time::Instant::now();
        let stats = corpus::generate(&src, &opts.corpus.shape(), opts.seed)?;
        measure::sync_all();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "  {} files ({} clutter), {} symlinks, {:.1} MiB in {secs:.1} s",
            stats.files,
            stats.clutter_files,
            stats.symlinks,
            mib(stats.bytes)
        );
        fs::write(&marker, want.to_string())?;
        generated_secs = Some(secs);
    }
    let all = fsutil::summarize(&src, &|_| false)?;
    let kept = fsutil::summarize(&src, &fsutil::is_excluded)?;
    Ok(CorpusInfo {
        size: opts.corpus,
        seed: opts.seed,
        path: src,
        generated_secs,
        mutations_before,
        all,
        kept,
    })
}

/// Runs the whole benchmark and returns its results (also printing them).
pub fn run(opts: RunOptions) -> Result<Results> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    fs::create_dir_all(&opts.work)?;
    let work = fs::canonicalize(&opts.work)?;
    let opts = RunOptions { work, ..opts };
    let bin = find_bin(opts.bin.as_deref())?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let scratch = opts.work.join(format!("scratch-{stamp}"));
    let logs = scratch.join("logs");
    fs::create_dir_all(&logs)?;
    for old in fs::read_dir(&opts.work)?.flatten() {
        let n = old.file_name().to_string_lossy().to_string();
        if n.starts_with("scratch-") && old.path() != scratch {
            eprintln!(
                "note: {} is left over from an earlier run; delete it when the machine is idle",
                old.path().display()
            );
        }
    }

    // Which tools can run.
    let rclone = if opts.tools.iter().any(|t| t.is_s3()) {
        s3::find_rclone(opts.rclone.as_deref())?
    } else {
        None
    };
    let mut tools = Vec::new();
    let mut skipped = Vec::new();
    let mut skip = |msg: String| {
        eprintln!("skipping {msg}");
        skipped.push(msg);
    };
    for t in Tool::ALL {
        if !opts.tools.contains(&t) {
            continue;
        }
        match t.program() {
            Some(p) if fsutil::which(p).is_none() => {
                skip(format!(
                    "{}: `{p}` is not installed ({INSTALL_HINT})",
                    t.label()
                ));
            }
            _ if t.is_s3() && rclone.is_none() => skip(format!(
                "{}: rclone (for the loopback S3 server) is not installed ({})",
                t.label(),
                s3::RCLONE_HINT
            )),
            _ => tools.push(t),
        }
    }
    // The loopback S3 server, stopped when dropped (also on errors).
    let mut server = None;
    if let (Some(rclone), true) = (&rclone, tools.iter().any(|t| t.is_s3())) {
        match s3::start(rclone, &scratch.join("s3"), &logs.join("rclone.err")) {
            Ok(s) => {
                eprintln!(
                    "S3 server: {} serve s3 on {}, bucket {} in {}",
                    rclone.display(),
                    s.endpoint,
                    s3::BUCKET,
                    s.root.display()
                );
                server = Some(s);
            }
            Err(e) => {
                for t in tools.iter().filter(|t| t.is_s3()) {
                    skip(format!("{}: {e:#}", t.label()));
                }
                tools.retain(|t| !t.is_s3());
            }
        }
    }
    if let (Some(srv), true) = (&server, tools.contains(&Tool::OursS3)) {
        if let Err(why) = probe_s3_support(&bin, srv, &scratch.join("probe-s3")) {
            skip(format!("{}: {why}", Tool::OursS3.label()));
            tools.retain(|&t| t != Tool::OursS3);
        }
    }
    if tools.is_empty() {
        bail!("no tool to run");
    }

    let corpus = ensure_corpus(&opts, &scratch)?;
    let mut versions = vec![("backup-cli".to_string(), version_line(&bin, &["--version"]))];
    if let (Some(rclone), Some(_)) = (&rclone, &server) {
        versions.push(("rclone".to_string(), version_line(rclone, &["version"])));
    }
    for (t, args) in [
        (Tool::Find, &["--version"][..]),
        (Tool::Cpa, &["--version"][..]),
        (Tool::Rsync, &["--version"][..]),
        (Tool::Restic, &["version"][..]),
        (Tool::Borg, &["--version"][..]),
    ] {
        if let (true, Some(p)) = (
            tools.contains(&t)
                || (t == Tool::Cpa && tools.contains(&Tool::Cpal))
                || (t == Tool::Restic && tools.contains(&Tool::ResticS3)),
            t.program(),
        ) {
            let path = fsutil::which(p).unwrap_or_else(|| PathBuf::from(p));
            versions.push((p.to_string(), version_line(&path, args)));
        }
    }
    let machine = Machine::probe(&opts.work);
    if let Some(load) = machine
        .load_at_start
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .filter(|&l| l > 0.5)
    {
        eprintln!(
            "warning: the 1-minute load average is {load:.2}: other work on this machine will make the timings noisy"
        );
    }

    let mut bench = Bench {
        runner: measure::Runner::new(&logs.join("measure.result"))?,
        src: corpus.path.clone(),
        scratch: scratch.clone(),
        logs,
        bin: bin.clone(),
        ours: None,
        rsync_latest: None,
        restic_repo: None,
        borg: None,
        restored: BTreeMap::new(),
        anomalies: Vec::new(),
        s3: server,
        ours_s3: None,
        restic_s3: None,
        disabled: BTreeMap::new(),
    };
    let mut samples: BTreeMap<(Scenario, Tool), Vec<Sample>> = BTreeMap::new();
    let mut mutations = corpus.mutations_before;
    let marker = opts
        .work
        .join(format!("corpus-{}.json", opts.corpus.name()));
    for sc in Scenario::ALL {
        let here: Vec<Tool> = tools.iter().copied().filter(|t| t.runs_in(sc)).collect();
        if here.is_empty() {
            continue;
        }
        eprintln!("== {}: {}", sc.key(), sc.title());
        for run in 0..opts.runs {
            if sc == Scenario::Mutate {
                let seed = opts
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(1 + mutations);
                let st = corpus::mutate(&bench.src, seed)?;
                mutations += 1;
                fs::write(
                    &marker,
                    marker_json(opts.corpus, opts.seed, mutations).to_string(),
                )?;
                eprintln!(
                    "  mutate: {} changed in place, {} rewritten, {} added, {} deleted",
                    st.changed_same_size, st.changed_resized, st.added, st.deleted
                );
            }
            for &tool in &here {
                if bench.disabled.contains_key(&tool) {
                    continue;
                }
                let Some(step) = bench.prepare(sc, tool, run)? else {
                    let msg = format!(
                        "{} {} run {}: skipped (no state from an earlier scenario)",
                        sc.key(),
                        tool.label(),
                        run + 1
                    );
                    eprintln!("  {msg}");
                    bench.anomalies.push(msg);
                    continue;
                };
                let s = bench.measure(sc, tool, run, step)?;
                if let Some(why) = bench.disabled.get(&tool) {
                    eprintln!("  {}: no time recorded: {why}", tool.label());
                    continue;
                }
                eprintln!(
                    "  [{}/{}] {:<11} {:>8.3} s  {:>7.1} MiB  (sync after {:.2} s){}",
                    run + 1,
                    opts.runs,
                    tool.label(),
                    s.m.wall,
                    s.m.max_rss_kib as f64 / 1024.0,
                    s.sync_after,
                    if s.ok { "" } else { "  FAILED" }
                );
                samples.entry((sc, tool)).or_default().push(s);
            }
        }
    }
    eprintln!("== consistency checks (untimed)");
    let checks = bench.consistency();
    for c in &checks {
        eprintln!("  {c}");
    }
    let s3_server_peak_mib = bench.s3.as_ref().and_then(s3::peak_rss_mib);
    // Stop the server before its folder is deleted.
    drop(bench.s3.take());
    for (tool, why) in std::mem::take(&mut bench.disabled) {
        skipped.push(format!("{}: {why}", tool.label()));
    }
    let results = Results {
        samples,
        tools,
        anomalies: std::mem::take(&mut bench.anomalies),
        checks,
        skipped,
        corpus,
        versions,
        machine,
        runs: opts.runs,
        command_line: opts.command_line.clone(),
        bin,
        s3_server_peak_mib,
    };
    println!("{}", report::text(&results));
    if let Some(path) = &opts.write {
        fs::write(path, report::markdown(&results))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if opts.keep_scratch {
        eprintln!("kept {}", scratch.display());
    } else {
        eprintln!("removing {} …", scratch.display());
        let t = std::time::Instant::now();
        fsutil::remove_tree(&scratch)?;
        eprintln!("  removed in {:.1} s", t.elapsed().as_secs_f64());
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
