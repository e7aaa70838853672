//! Results as a plain-text table (stdout) and as a Markdown report
//! (`--write`), with the machine and tool versions.

use std::fmt::Write as _;

use crate::app::model::{Results, Sample, Scenario, Tool, RSS_TARGET_MIB};

/// Medians and extremes of one scenario × tool.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Runs that succeeded.
    pub ok: usize,
    /// Runs in all.
    pub n: usize,
    /// Median wall seconds.
    pub median: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Median CPU seconds (user + system).
    pub cpu: f64,
    /// Median peak RSS, MiB.
    pub rss_mib: f64,
    /// Largest peak RSS, MiB.
    pub rss_max_mib: f64,
    /// The measuring wrapper's own peak RSS (largest), MiB.
    pub floor_mib: f64,
    /// Median `sync` seconds after the run.
    pub sync_after: f64,
    /// Median bytes reported (backup-cli).
    pub bytes: Option<u64>,
    /// Median files reported (backup-cli).
    pub files: Option<u64>,
    /// Median CPU seconds of the S3 server during the run (S3 tools).
    pub server_cpu: Option<f64>,
}

/// The median of a list (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Summarizes samples (the successful ones, or all if none succeeded).
pub fn summarize(samples: &[Sample]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    let used: Vec<&Sample> = if ok.is_empty() {
        samples.iter().collect()
    } else {
        ok.clone()
    };
    let walls: Vec<f64> = used.iter().map(|s| s.m.wall).collect();
    let rss: Vec<f64> = used
        .iter()
        .map(|s| s.m.max_rss_kib as f64 / 1024.0)
        .collect();
    let cpus: Vec<f64> = used.iter().map(|s| s.m.user + s.m.sys).collect();
    let syncs: Vec<f64> = used.iter().map(|s| s.sync_after).collect();
    let med_u = |f: &dyn Fn(&Sample) -> Option<u64>| {
        let v: Vec<f64> = used.iter().filter_map(|s| f(s)).map(|b| b as f64).collect();
        (!v.is_empty()).then(|| median(&v) as u64)
    };
    let server: Vec<f64> = used.iter().filter_map(|s| s.server_cpu).collect();
    Some(Summary {
        ok: ok.len(),
        n: samples.len(),
        median: median(&walls),
        min: walls.iter().copied().fold(f64::INFINITY, f64::min),
        max: walls.iter().copied().fold(0.0, f64::max),
        cpu: median(&cpus),
        floor_mib: used
            .iter()
            .map(|s| s.m.floor_kib as f64 / 1024.0)
            .fold(0.0, f64::max),
        rss_mib: median(&rss),
        rss_max_mib: rss.iter().copied().fold(0.0, f64::max),
        sync_after: median(&syncs),
        bytes: med_u(&|s| s.bytes),
        files: med_u(&|s| s.files),
        server_cpu: (!server.is_empty()).then(|| median(&server)),
    })
}

fn get(r: &Results, sc: Scenario, t: Tool) -> Option<Summary> {
    r.samples.get(&(sc, t)).and_then(|s| summarize(s))
}

const HEADERS: [&str; 10] = [
    "tool",
    "ok runs",
    "median s",
    "min s",
    "max s",
    "CPU s",
    "peak RSS MiB",
    "sync after s",
    "ours/tool time",
    "ours/tool RSS",
];

/// The backup-cli run a tool's row is compared with: backup-cli → S3 for
/// the S3 tools, backup-cli to a folder for the others.
fn ours_for(t: Tool) -> Tool {
    if t.is_s3() {
        Tool::OursS3
    } else {
        Tool::Ours
    }
}

/// The rows of one scenario's table.
fn rows(r: &Results, sc: Scenario) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for t in Tool::ALL {
        let Some(s) = get(r, sc, t) else { continue };
        let ours = get(r, sc, ours_for(t));
        let (rt, rr) = match (t, ours) {
            (Tool::Ours | Tool::OursS3, _) | (_, None) => ("—".to_string(), "—".to_string()),
            (_, Some(o)) => (
                format!("{:.2}×", o.median / s.median),
                format!("{:.2}×", o.rss_mib / s.rss_mib),
            ),
        };
        out.push(vec![
            t.label().to_string(),
            format!("{}/{}", s.ok, s.n),
            format!("{:.3}", s.median),
            format!("{:.3}", s.min),
            format!("{:.3}", s.max),
            format!("{:.2}", s.cpu),
            if s.rss_mib <= s.floor_mib {
                format!("≤{:.1}", s.rss_mib)
            } else {
                format!("{:.1}", s.rss_mib)
            },
            format!("{:.2}", s.sync_after),
            rt,
            rr,
        ]);
    }
    out
}

/// backup-cli's throughput line for a scenario.
fn throughput(r: &Results, sc: Scenario) -> Option<String> {
    let s = get(r, sc, Tool::Ours)?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per_s = |b: u64| mib(b) / s.median;
    Some(match (sc, s.bytes, s.files) {
        (Scenario::NoChange, _, Some(f)) => format!(
            "backup-cli checked {f} files in {:.3} s ({:.0} files/s)",
            s.median,
            f as f64 / s.median
        ),
        (Scenario::Initial, Some(b), _) => format!(
            "backup-cli hashed and copied {:.1} MiB at {:.1} MiB/s",
            mib(b),
            per_s(b)
        ),
        (Scenario::Mutate, Some(b), f) => format!(
            "backup-cli hashed and copied {:.1} MiB ({} files in the snapshot) in {:.3} s",
            mib(b),
            f.map_or("?".into(), |f| f.to_string()),
            s.median
        ),
        (Scenario::Restore, Some(b), _) => format!(
            "backup-cli restored (and hashed) {:.1} MiB at {:.1} MiB/s",
            mib(b),
            per_s(b)
        ),
        (Scenario::Verify, Some(b), _) => format!(
            "backup-cli hashed {:.1} MiB at {:.1} MiB/s",
            mib(b),
            per_s(b)
        ),
        _ => return None,
    })
}

/// The S3 column's comparison for a scenario: backup-cli → S3 against
/// restic → S3 on the same loopback server.
fn s3_line(r: &Results, sc: Scenario) -> Option<String> {
    let o = get(r, sc, Tool::OursS3)?;
    let t = get(r, sc, Tool::ResticS3)?;
    let cpu = |s: &Summary| s.server_cpu.map_or("?".into(), |c| format!("{c:.2}"));
    let uploaded = o.bytes.map_or(String::new(), |b| {
        format!(
            "; backup-cli uploaded {:.1} MiB",
            b as f64 / (1024.0 * 1024.0)
        )
    });
    Some(format!(
        "S3 (loopback rclone serve s3): backup-cli → S3 {:.3} s vs restic → S3 {:.3} s: ours-s3/restic-s3 = {:.2}× the time, {:.2}× the peak RSS (server CPU during the runs: {} s vs {} s{uploaded})",
        o.median,
        t.median,
        o.median / t.median,
        o.rss_mib / t.rss_mib,
        cpu(&o),
        cpu(&t),
    ))
}

/// One line per target: (what, goal, measured, verdict).
fn targets(r: &Results) -> Vec<[String; 4]> {
    let mut out = Vec::new();
    let mut worst_rss: Option<(f64, Scenario)> = None;
    for sc in Scenario::ALL {
        let (reference, goal) = sc.target();
        let ours = get(r, sc, Tool::Ours);
        if let Some(o) = ours {
            if worst_rss.is_none_or(|(m, _)| o.rss_max_mib > m) {
                worst_rss = Some((o.rss_max_mib, sc));
            }
        }
        let measured = match (ours, get(r, sc, reference)) {
            (Some(o), Some(t)) => Some(o.median / t.median),
            _ => None,
        };
        out.push([
            sc.key().to_string(),
            format!("≤ {goal}× {}", reference.label()),
            measured.map_or("n/a".into(), |m| format!("{m:.2}×")),
            match measured {
                None => "n/a".into(),
                Some(m) if m <= goal => "ok".into(),
                Some(_) => "MISSED".into(),
            },
        ]);
    }
    if let Some((m, sc)) = worst_rss {
        out.push([
            "peak RSS".into(),
            format!("≤ {RSS_TARGET_MIB} MiB"),
            format!("{m:.1} MiB (max, {})", sc.key()),
            if m <= RSS_TARGET_MIB {
                "ok".into()
            } else {
                "MISSED".into()
            },
        ]);
    }
    out
}

/// Aligned plain-text table: the first `left` columns left-aligned, the
/// rest right-aligned.
fn text_table(headers: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let cols = headers.len();
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if i < left {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Markdown table (first column left-aligned, the rest right-aligned).
fn md_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|", headers.join(" | "));
    for i in 0..headers.len() {
        out.push_str(if i == 0 { "---|" } else { "---:|" });
    }
    out.push('\n');
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

fn corpus_line(r: &Results) -> String {
    let c = &r.corpus;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "corpus {} (seed {}): {} files, {} symlinks, {} folders, {:.1} MiB; after exclusions {} files, {:.1} MiB; {}",
        c.size.name(),
        c.seed,
        c.all.files,
        c.all.symlinks,
        c.all.dirs,
        mib(c.all.bytes),
        c.kept.files,
        mib(c.kept.bytes),
        match c.generated_secs {
            Some(s) => format!("generated in {s:.1} s"),
            None => format!("reused, {} mutation rounds applied before", c.mutations_before),
        }
    )
}

/// The largest wrapper floor of all samples, MiB.
fn floor_mib(r: &Results) -> f64 {
    r.samples
        .values()
        .flatten()
        .map(|s| s.m.floor_kib as f64 / 1024.0)
        .fold(0.0, f64::max)
}

/// The plain-text report printed at the end of `run`.
pub fn text(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{}", corpus_line(r));
    let _ = writeln!(
        out,
        "machine: {} × {}, {}, {}; load average at the start {}",
        r.machine.cores, r.machine.cpu, r.machine.memory, r.machine.df, r.machine.load_at_start
    );
    let _ = writeln!(
        out,
        "{} timed runs per tool and scenario, interleaved, warm cache; medians. RSS floor (measuring wrapper): {:.1} MiB.",
        r.runs,
        floor_mib(r)
    );
    for sc in Scenario::ALL {
        let rows = rows(r, sc);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} — {}", sc.key(), sc.title());
        out.push_str(&text_table(&HEADERS, &rows, 1));
        if let Some(t) = throughput(r, sc) {
            let _ = writeln!(out, "{t}");
        }
        if let Some(t) = s3_line(r, sc) {
            let _ = writeln!(out, "{t}");
        }
    }
    let _ = writeln!(out, "\ntargets (backup-cli):");
    out.push_str(&text_table(
        &["scenario", "goal", "measured", "verdict"],
        &targets(r).into_iter().map(Vec::from).collect::<Vec<_>>(),
        4,
    ));
    if !r.skipped.is_empty() {
        let _ = writeln!(out, "\nskipped:");
        for s in &r.skipped {
            let _ = writeln!(out, "  {s}");
        }
    }
    if !r.anomalies.is_empty() {
        let _ = writeln!(out, "\nanomalies:");
        for a in &r.anomalies {
            let _ = writeln!(out, "  {a}");
        }
    }
    out
}

/// The Markdown report written by `--write`.
pub fn markdown(r: &Results) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Made by `backup-bench` on {}.\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M %Z")
    );
    let _ = writeln!(out, "```sh\n{}\n```\n", r.command_line);
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "- CPU: {} ({} cores usable)", m.cpu, m.cores);
    let _ = writeln!(out, "- memory: {}", m.memory);
    let _ = writeln!(out, "- kernel: {}", m.kernel);
    let _ = writeln!(out, "- work dir file system (`df -T`): `{}`", m.df);
    let _ = writeln!(out, "- mount: `{}`", m.mount_options);
    let _ = writeln!(
        out,
        "- load average at the start: {} (1, 5, 15 min)\n",
        m.load_at_start
    );
    let _ = writeln!(out, "## Tools\n");
    for (name, v) in &r.versions {
        let _ = writeln!(out, "- {name}: `{v}`");
    }
    for s in &r.skipped {
        let _ = writeln!(out, "- skipped {s}");
    }
    let _ = writeln!(
        out,
        "- run: {}",
        r.tools
            .iter()
            .map(|t| t.label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "\n## Corpus\n\n{}\n", corpus_line(r));
    let _ = writeln!(out, "## Method\n");
    let _ = writeln!(
        out,
        "- {} timed runs per tool and scenario, tools interleaved (A B A B …); the tables show medians.",
        r.runs
    );
    let _ = writeln!(
        out,
        "- Before each timed run: `sync`, then every file the tool will read (source, destination, repository) is read once so the page cache is warm. After it, a `sync` is timed separately (\"sync after\"): backup-cli syncs its snapshot before committing, the reference tools do not."
    );
    let _ = writeln!(
        out,
        "- Wall time and peak RSS come from `wait4` on the child (`ru_maxrss` covers the child and the descendants it waited for), spawned by a small wrapper process whose own peak ({:.1} MiB) is the floor of the measure: \"≤X\" marks a tool that stayed at or below it.",
        floor_mib(r)
    );
    let _ = writeln!(
        out,
        "- Every tool skips the same paths: `.git/`, `__pycache__/`, `temp_processing/`, `*.pyc`, `*.log`, `*.tmp`, `*.temp` (`cp` cannot exclude and copies them too; `find` lists them too)."
    );
    let _ = writeln!(
        out,
        "- References: `find SRC -printf '%s %T@\\n'` (stat floor); `cp -a SRC NEW` (copy floor); `cp -al PREV NEW` of backup-cli's previous snapshot (linked-snapshot floor); `rsync -a --delete --link-dest=PREV`; `restic backup` / `restore latest` / `check --read-data`; `borg create` (`--encryption none`, default lz4) / `extract` / `check --verify-data`. For restore and verify, `cp -a` copies backup-cli's latest snapshot."
    );
    let _ = writeln!(
        out,
        "- backup-cli: `{} --profile P backup --force --json --quiet`, `restore latest --to DIR --json`, `verify --json`; the profile keeps its state files next to it, outside the corpus.",
        r.bin.display()
    );
    if r.tools.iter().any(|t| t.is_s3()) {
        let _ = writeln!(
            out,
            "- S3 column (initial and after-mutate only): a loopback `rclone serve s3` (started once for the run, serving a folder of the scratch dir; every object a file) receives `backup-cli` with `destination = \"s3://bench/ours/initial-N\"` and `[s3] endpoint` (its own state files), and `restic -r s3:http://127.0.0.1:PORT/bench/restic/initial-N backup` (same excludes; `init` untimed); each initial run gets a fresh prefix, the after-mutate runs go to the last one. The warm-up also reads the server's folder of the prefix. The server's CPU and memory are not in the tools' numbers: its CPU seconds during each run are given separately{}. In the S3 rows, \"ours\" is backup-cli → S3.",
            r.s3_server_peak_mib
                .map_or(String::new(), |m| format!(", its peak RSS over the whole run was {m:.1} MiB"))
        );
    }
    out.push('\n');
    let _ = writeln!(out, "## Results\n");
    for sc in Scenario::ALL {
        let rows = rows(r, sc);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {} — {}\n", sc.key(), sc.title());
        out.push_str(&md_table(&HEADERS, &rows));
        if let Some(t) = throughput(r, sc) {
            let _ = writeln!(out, "\n{t}.");
        }
        if let Some(t) = s3_line(r, sc) {
            let _ = writeln!(out, "\n{t}.");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Targets (backup-cli)\n");
    out.push_str(&md_table(
        &["scenario", "goal", "measured", "verdict"],
        &targets(r).into_iter().map(Vec::from).collect::<Vec<_>>(),
    ));
    let _ = writeln!(out, "\n## Consistency checks (untimed)\n");
    for c in &r.checks {
        let _ = writeln!(out, "- {c}");
    }
    if !r.anomalies.is_empty() {
        let _ = writeln!(out, "\n## Anomalies\n");
        for a in &r.anomalies {
            let _ = writeln!(out, "- {a}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn tables_align() {
        let rows = vec![vec!["a".to_string(), "1.5".to_string()]];
        let t = text_table(&["tool", "s"], &rows, 1);
        assert_eq!(t, "tool    s\na     1.5\n");
        let m = md_table(&["tool", "s"], &rows);
        assert_eq!(m, "| tool | s |\n|---|---:|\n| a | 1.5 |\n");
    }
}
