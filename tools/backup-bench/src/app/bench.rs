//! The `run` command: prepares the corpus and each tool's state, runs every
//! scenario with the tools interleaved (A B A B …) on a warm cache, and
//! collects wall times and peak RSS. What each tool runs is in
//! [`crate::app::tools`]; this module times every step the same way.
//!
//! The S3 column (`ours-s3`, `restic-s3`) backs up the same corpus to a
//! loopback `rclone serve s3` started for the run (see [`crate::app::s3`]).
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

use crate::app::corpus::{self, CorpusSize, GENERATOR_VERSION};
use crate::app::fsutil::{self, mib, tail, TreeSummary};
use crate::app::measure;
use crate::app::model::{CorpusInfo, Machine, Results, Sample, Scenario, Tool};
use crate::app::report;
use crate::app::s3::{self, S3Server};
use crate::app::tools::{borg, cp, find, ours, restic, rsync, Lab, Step, Update};

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

/// A run in progress: the tools' lab, and what the runner records
/// besides the samples.
struct Bench {
    /// What every tool's steps run in and leave behind.
    lab: Lab,
    /// stdout and stderr of every timed run.
    logs: PathBuf,
    /// Restores to compare with the source at the end, by tool.
    restored: BTreeMap<Tool, PathBuf>,
    /// Things that went wrong or looked wrong.
    anomalies: Vec<String>,
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
/// One tree to compare with the source at the end: a label, its root, and
/// whether to compare it file by file (else only its counts).
struct CheckedTree {
    label: String,
    root: PathBuf,
    full: bool,
}

impl Bench {
    /// Prepares the timed run of `tool` in `sc`, run `run`; `None` when a
    /// prerequisite (an earlier scenario's state) is missing.
    fn prepare(&self, sc: Scenario, tool: Tool, run: usize) -> Result<Option<Step>> {
        let dir = self
            .lab
            .scratch
            .join(sc.key())
            .join(format!("{}-{run}", tool.key()));
        let tag = format!("{}-{}-{run}", sc.key(), tool.key());
        let lab = &self.lab;
        let plan = match tool {
            Tool::Ours => ours::prepare(lab, sc, &dir)?,
            Tool::OursS3 => ours::prepare_s3(lab, sc, run, &dir)?,
            Tool::Find => find::prepare(lab, sc)?,
            Tool::Cpa => cp::prepare_copy(lab, sc, &dir)?,
            Tool::Cpal => cp::prepare_linked(lab, sc, &dir)?,
            Tool::Rsync => rsync::prepare(lab, sc, &dir)?,
            Tool::Restic => restic::prepare(lab, sc, &dir)?,
            Tool::ResticS3 => restic::prepare_s3(lab, sc, run)?,
            Tool::Borg => borg::prepare(lab, sc, run, &dir)?,
        };
        Ok(plan.map(|plan| Step {
            plan,
            out: self.logs.join(format!("{tag}.out")),
            err: self.logs.join(format!("{tag}.err")),
        }))
    }

    /// Runs one prepared step on a warm cache and records what it did.
    fn measure(&mut self, sc: Scenario, tool: Tool, run: usize, mut step: Step) -> Result<Sample> {
        let stdout: Stdio = if tool == Tool::Find {
            fs::File::create("/dev/null")?.into()
        } else {
            fs::File::create(&step.out)?.into()
        };
        step.plan
            .cmd
            .stdout(stdout)
            .stderr(fs::File::create(&step.err)?);
        measure::sync_all();
        fsutil::warm(&step.plan.warm)?;
        let server_cpu = |lab: &Lab| {
            lab.s3
                .as_ref()
                .filter(|_| tool.is_s3())
                .and_then(s3::cpu_secs)
        };
        let cpu_before = server_cpu(&self.lab);
        let m = self.lab.runner.run(&mut step.plan.cmd)?;
        let cpu_after = server_cpu(&self.lab);
        let sync_after = measure::sync_all();
        let mut sample = Sample {
            m,
            sync_after,
            bytes: None,
            files: None,
            server_cpu: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
            ok: m.ok() || step.plan.ok_codes.contains(&m.code),
        };
        let what = format!("{} {} run {}", sc.key(), tool.label(), run + 1);
        if tool == Tool::OursS3 && ours::lacks_s3_feature(m.code, &step.err) {
            // Not a backup at all: say so, and do not record a time.
            let why = ours::no_s3_feature(&self.lab.bin);
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
            ours::check(
                &mut self.lab,
                sc,
                tool,
                &what,
                &step,
                &mut sample,
                &mut self.anomalies,
            );
        }
        if sample.ok {
            self.record(tool, step.plan.update);
        }
        Ok(sample)
    }

    /// Keeps what a successful run of `tool` left for the next scenario.
    fn record(&mut self, tool: Tool, update: Update) {
        let lab = &mut self.lab;
        match update {
            Update::None => {}
            // ours::check already recorded the new state and snapshot.
            Update::Ours(_) => {}
            Update::RsyncLatest(p) => lab.rsync_latest = Some(p),
            Update::Restic(p) => lab.restic_repo = Some(p),
            Update::ResticS3(r) => lab.restic_s3 = Some(r),
            Update::Borg(p, a) => lab.borg = Some((p, a)),
            Update::RestoreDir(p) => {
                self.restored.entry(tool).or_insert(p);
            }
        }
    }

    /// Runs every scenario: for each, `runs` rounds of every tool that
    /// takes part, interleaved, the corpus mutated before each round of
    /// the after-mutate scenario.
    fn run_scenarios(
        &mut self,
        opts: &RunOptions,
        tools: &[Tool],
        mut mutations: u64,
    ) -> Result<BTreeMap<(Scenario, Tool), Vec<Sample>>> {
        let mut samples: BTreeMap<(Scenario, Tool), Vec<Sample>> = BTreeMap::new();
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
                    let st = corpus::mutate(&self.lab.src, seed)?;
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
                    if let Some(s) = self.timed_run(sc, tool, run, opts.runs)? {
                        samples.entry((sc, tool)).or_default().push(s);
                    }
                }
            }
        }
        Ok(samples)
    }

    /// Prepares, times and reports one run of `tool`; `None` when it did
    /// not run or recorded no time.
    fn timed_run(
        &mut self,
        sc: Scenario,
        tool: Tool,
        run: usize,
        runs: usize,
    ) -> Result<Option<Sample>> {
        if self.disabled.contains_key(&tool) {
            return Ok(None);
        }
        let Some(step) = self.prepare(sc, tool, run)? else {
            let msg = format!(
                "{} {} run {}: skipped (no state from an earlier scenario)",
                sc.key(),
                tool.label(),
                run + 1
            );
            eprintln!("  {msg}");
            self.anomalies.push(msg);
            return Ok(None);
        };
        let s = self.measure(sc, tool, run, step)?;
        if let Some(why) = self.disabled.get(&tool) {
            eprintln!("  {}: no time recorded: {why}", tool.label());
            return Ok(None);
        }
        eprintln!(
            "  [{}/{}] {:<11} {:>8.3} s  {:>7.1} MiB  (sync after {:.2} s){}",
            run + 1,
            runs,
            tool.label(),
            s.m.wall,
            s.m.max_rss_kib as f64 / 1024.0,
            s.sync_after,
            if s.ok { "" } else { "  FAILED" }
        );
        Ok(Some(s))
    }

    /// Untimed checks that every tool saw the same files.
    fn consistency(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let expected = match fsutil::summarize(&self.lab.src, &fsutil::is_excluded) {
            Ok(s) => s,
            Err(e) => {
                lines.push(format!("could not read the source: {e:#}"));
                return lines;
            }
        };
        lines.push(format!("source after exclusions: {}", describe(&expected)));
        for t in self.checked_trees() {
            let line = if t.full {
                self.compare_with_source(&t)
            } else {
                self.count_against_source(&t, &expected)
            };
            lines.push(line);
        }
        lines.extend(self.s3_consistency(&expected));
        lines
    }

    /// The trees the tools left that can be compared with the source:
    /// backup-cli's and rsync's latest copies and every restore, in full
    /// for backup-cli and rsync, by counts for the others.
    fn checked_trees(&self) -> Vec<CheckedTree> {
        let lab = &self.lab;
        let mut trees = Vec::new();
        if let Some(l) = lab.ours.as_ref().and_then(|o| o.latest.clone()) {
            trees.push(CheckedTree {
                label: "backup-cli latest snapshot".into(),
                root: l,
                full: true,
            });
        }
        if let Some(p) = lab.rsync_latest.clone() {
            trees.push(CheckedTree {
                label: "rsync latest snapshot".into(),
                root: p,
                full: true,
            });
        }
        for (tool, dir) in &self.restored {
            let root = if *tool == Tool::Restic {
                dir.join(lab.src.strip_prefix("/").unwrap_or(&lab.src))
            } else {
                dir.clone()
            };
            trees.push(CheckedTree {
                label: format!("{} restore", tool.label()),
                root,
                full: *tool == Tool::Ours,
            });
        }
        trees
    }

    /// Compares a tree file by file with the source (contents, then modes
    /// and mtimes; a backup-cli restore must match those too).
    fn compare_with_source(&mut self, t: &CheckedTree) -> String {
        let label = &t.label;
        match fsutil::compare_trees(
            &self.lab.src,
            &fsutil::is_excluded,
            &t.root,
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
                if label.contains("restore") && d.metadata_count > 0 {
                    self.anomalies.push(format!(
                        "backup-cli restore: {} entries differ from the source in mode or mtime (e.g. {})",
                        d.metadata_count,
                        d.metadata.join("; ")
                    ));
                }
                format!("{label}: same files and content as the source; {meta}")
            }
            Ok(d) => {
                let s = format!(
                    "{label}: {} differences from the source: {}",
                    d.content_count,
                    d.content.join("; ")
                );
                self.anomalies.push(s.clone());
                s
            }
            Err(e) => format!("{label}: could not compare: {e:#}"),
        }
    }

    /// Compares a tree's counts (files, bytes, symlinks) with the source's.
    fn count_against_source(&mut self, t: &CheckedTree, expected: &TreeSummary) -> String {
        let label = &t.label;
        match fsutil::summarize(&t.root, &not_manifest) {
            Ok(s)
                if (s.files, s.bytes, s.symlinks)
                    == (expected.files, expected.bytes, expected.symlinks) =>
            {
                format!("{label}: {} (same as the source)", describe(&s))
            }
            Ok(s) => {
                let line = format!(
                    "{label}: {} (the source has {})",
                    describe(&s),
                    describe(expected)
                );
                self.anomalies.push(line.clone());
                line
            }
            Err(e) => format!("{label}: could not read: {e:#}"),
        }
    }

    /// Untimed checks of what the S3 tools left on the server: backup-cli's
    /// `verify --quick` of its latest snapshot, restic's `check` and
    /// `stats latest` (the server must still run).
    fn s3_consistency(&mut self, expected: &TreeSummary) -> Vec<String> {
        let mut lines = Vec::new();
        let mut bad = Vec::new();
        ours::s3_consistency(&self.lab, expected, &mut lines, &mut bad);
        restic::s3_consistency(&self.lab, expected, &mut lines, &mut bad);
        self.anomalies.extend(bad);
        lines
    }
}

/// A tree's counts in one phrase.
fn describe(s: &TreeSummary) -> String {
    format!(
        "{} files, {} symlinks, {} folders, {:.1} MiB",
        s.files,
        s.symlinks,
        s.dirs,
        mib(s.bytes)
    )
}

/// Skips backup-cli's own record in a snapshot.
fn not_manifest(p: &Path) -> bool {
    p == Path::new(".backup-snapshot")
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

/// Says a tool is skipped, and why, and keeps that for the report.
fn skip(skipped: &mut Vec<String>, msg: String) {
    eprintln!("skipping {msg}");
    skipped.push(msg);
}

/// A fresh `scratch-<time>` folder (with its `logs`) in the work dir,
/// noting scratch folders left over from earlier runs.
fn new_scratch(work: &Path) -> Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let scratch = work.join(format!("scratch-{stamp}"));
    fs::create_dir_all(scratch.join("logs"))?;
    for old in fs::read_dir(work)?.flatten() {
        let n = old.file_name().to_string_lossy().to_string();
        if n.starts_with("scratch-") && old.path() != scratch {
            eprintln!(
                "note: {} is left over from an earlier run; delete it when the machine is idle",
                old.path().display()
            );
        }
    }
    Ok(scratch)
}

/// The tools asked for that can run here, in table order; the others are
/// skipped, saying what to install.
fn available_tools(asked: &[Tool], have_rclone: bool, skipped: &mut Vec<String>) -> Vec<Tool> {
    let mut tools = Vec::new();
    for t in Tool::ALL {
        if !asked.contains(&t) {
            continue;
        }
        match t.program() {
            Some(p) if fsutil::which(p).is_none() => {
                skip(
                    skipped,
                    format!("{}: `{p}` is not installed ({INSTALL_HINT})", t.label()),
                );
            }
            _ if t.is_s3() && !have_rclone => skip(
                skipped,
                format!(
                    "{}: rclone (for the loopback S3 server) is not installed ({})",
                    t.label(),
                    s3::RCLONE_HINT
                ),
            ),
            _ => tools.push(t),
        }
    }
    tools
}

/// The loopback S3 server, when an S3 tool is to run (stopped when
/// dropped, also on errors). When it cannot start, the S3 tools are
/// skipped.
fn start_server(
    rclone: Option<&Path>,
    scratch: &Path,
    tools: &mut Vec<Tool>,
    skipped: &mut Vec<String>,
) -> Option<S3Server> {
    let rclone = rclone.filter(|_| tools.iter().any(|t| t.is_s3()))?;
    match s3::start(
        rclone,
        &scratch.join("s3"),
        &scratch.join("logs").join("rclone.err"),
    ) {
        Ok(s) => {
            eprintln!(
                "S3 server: {} serve s3 on {}, bucket {} in {}",
                rclone.display(),
                s.endpoint,
                s3::BUCKET,
                s.root.display()
            );
            Some(s)
        }
        Err(e) => {
            for t in tools.iter().filter(|t| t.is_s3()) {
                skip(skipped, format!("{}: {e:#}", t.label()));
            }
            tools.retain(|t| !t.is_s3());
            None
        }
    }
}

/// `(program, version line)` of backup-cli, rclone (when the server runs)
/// and every reference program that takes part.
fn versions(bin: &Path, rclone: Option<&Path>, tools: &[Tool]) -> Vec<(String, String)> {
    let mut versions = vec![("backup-cli".to_string(), version_line(bin, &["--version"]))];
    if let Some(rclone) = rclone {
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
    versions
}

/// Warns when other work on the machine will make the timings noisy.
fn warn_if_busy(machine: &Machine) {
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
    let scratch = new_scratch(&opts.work)?;

    // Which tools can run.
    let rclone = if opts.tools.iter().any(|t| t.is_s3()) {
        s3::find_rclone(opts.rclone.as_deref())?
    } else {
        None
    };
    let mut skipped = Vec::new();
    let mut tools = available_tools(&opts.tools, rclone.is_some(), &mut skipped);
    let server = start_server(rclone.as_deref(), &scratch, &mut tools, &mut skipped);
    if let (Some(srv), true) = (&server, tools.contains(&Tool::OursS3)) {
        if let Err(why) = ours::probe_s3_support(&bin, srv, &scratch.join("probe-s3")) {
            skip(&mut skipped, format!("{}: {why}", Tool::OursS3.label()));
            tools.retain(|&t| t != Tool::OursS3);
        }
    }
    if tools.is_empty() {
        bail!("no tool to run");
    }

    let corpus = ensure_corpus(&opts, &scratch)?;
    let versions = versions(&bin, rclone.as_deref().filter(|_| server.is_some()), &tools);
    let machine = Machine::probe(&opts.work);
    warn_if_busy(&machine);

    let logs = scratch.join("logs");
    let mut bench = Bench {
        lab: Lab {
            runner: measure::Runner::new(&logs.join("measure.result"))?,
            src: corpus.path.clone(),
            scratch: scratch.clone(),
            bin: bin.clone(),
            s3: server,
            ours: None,
            ours_s3: None,
            rsync_latest: None,
            restic_repo: None,
            restic_s3: None,
            borg: None,
        },
        logs,
        restored: BTreeMap::new(),
        anomalies: Vec::new(),
        disabled: BTreeMap::new(),
    };
    let samples = bench.run_scenarios(&opts, &tools, corpus.mutations_before)?;
    eprintln!("== consistency checks (untimed)");
    let checks = bench.consistency();
    for c in &checks {
        eprintln!("  {c}");
    }
    let s3_server_peak_mib = bench.lab.s3.as_ref().and_then(s3::peak_rss_mib);
    // Stop the server before its folder is deleted.
    drop(bench.lab.s3.take());
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
    report_and_clean_up(&opts, &results, &scratch)?;
    Ok(results)
}

/// Prints the report, writes it when asked, and removes the scratch
/// folder unless asked to keep it.
fn report_and_clean_up(opts: &RunOptions, results: &Results, scratch: &Path) -> Result<()> {
    println!("{}", report::text(results));
    if let Some(path) = &opts.write {
        fs::write(path, report::markdown(results))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if opts.keep_scratch {
        eprintln!("kept {}", scratch.display());
    } else {
        eprintln!("removing {} …", scratch.display());
        let t = std::time::Instant::now();
        fsutil::remove_tree(scratch)?;
        eprintln!("  removed in {:.1} s", t.elapsed().as_secs_f64());
    }
    Ok(())
}
