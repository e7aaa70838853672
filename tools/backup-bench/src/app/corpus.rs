//! Deterministic corpora shaped like a software project, and deterministic
//! mutations of them.
//!
//! A corpus is planned first (every path, kind and size, from the seed) and
//! then written by a few threads; each entry's content comes from its own
//! PRNG stream, so the result does not depend on the writing order. Besides
//! the project files, a corpus holds clutter that every tool is told to
//! exclude: `.git/objects/…`, `__pycache__/*.pyc`, `*.log` and
//! `temp_processing/`.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use backup_tests::prng::Rng;

use crate::app::fsutil;

/// Bumped whenever the generator's output for a given seed changes, so that
/// `run` does not reuse a corpus made by another version.
pub const GENERATOR_VERSION: u32 = 2;

/// Deepest folder level (a file may sit one level below it).
pub const MAX_DEPTH: usize = 6;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// The named corpus sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CorpusSize {
    /// About 20,000 files, 350 MiB.
    Small,
    /// About 200,000 files, 3.3 GiB.
    Large,
}

impl CorpusSize {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            CorpusSize::Small => "small",
            CorpusSize::Large => "large",
        }
    }

    /// The shape of this corpus.
    pub fn shape(self) -> Shape {
        match self {
            CorpusSize::Small => Shape::small(),
            CorpusSize::Large => Shape::small().scaled(10),
        }
    }
}

/// How many entries of each kind a corpus has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Folders of the project (besides the root and the top-level ones).
    pub dirs: usize,
    /// Text-like files of 1–16 KiB (most of them small).
    pub text_files: usize,
    /// Larger text files (data, lock files) of 16–256 KiB.
    pub big_text_files: usize,
    /// Binary files (random bytes).
    pub binaries: usize,
    /// Smallest binary.
    pub binary_min: u64,
    /// Largest binary.
    pub binary_max: u64,
    /// Files with shared content (empty `__init__.py`, identical licences).
    pub dup_files: usize,
    /// Relative symlinks to files.
    pub symlinks: usize,
    /// Empty folders.
    pub empty_dirs: usize,
    /// Clutter: `.git/objects/xx/…` files.
    pub git_objects: usize,
    /// Clutter: folders that get a `__pycache__/` with a few `.pyc` files.
    pub pycache_dirs: usize,
    /// Clutter: `*.log` files.
    pub logs: usize,
    /// Clutter: files under `temp_processing/`.
    pub temp_files: usize,
}

impl Shape {
    /// The small corpus: about 20,000 files and 350 MiB.
    pub fn small() -> Self {
        Shape {
            dirs: 1_200,
            text_files: 17_800,
            big_text_files: 180,
            binaries: 30,
            binary_min: MIB,
            binary_max: 20 * MIB,
            dup_files: 200,
            symlinks: 20,
            empty_dirs: 10,
            git_objects: 1_200,
            pycache_dirs: 60,
            logs: 40,
            temp_files: 300,
        }
    }

    /// This shape with every count multiplied by `k` (sizes unchanged).
    pub fn scaled(&self, k: usize) -> Self {
        Shape {
            dirs: self.dirs * k,
            text_files: self.text_files * k,
            big_text_files: self.big_text_files * k,
            binaries: self.binaries * k,
            binary_min: self.binary_min,
            binary_max: self.binary_max,
            dup_files: self.dup_files * k,
            symlinks: self.symlinks * k,
            empty_dirs: self.empty_dirs * k,
            git_objects: self.git_objects * k,
            pycache_dirs: self.pycache_dirs * k,
            logs: self.logs * k,
            temp_files: self.temp_files * k,
        }
    }

    /// A tiny shape for tests: a few hundred files, binaries of a few KiB.
    #[cfg(test)]
    pub fn tiny() -> Self {
        Shape {
            dirs: 30,
            text_files: 200,
            big_text_files: 3,
            binaries: 3,
            binary_min: 4 * KIB,
            binary_max: 64 * KIB,
            dup_files: 6,
            symlinks: 3,
            empty_dirs: 2,
            git_objects: 20,
            pycache_dirs: 3,
            logs: 4,
            temp_files: 10,
        }
    }
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Code-like text of this many bytes.
    Text(u64),
    /// Random bytes.
    Binary(u64),
    /// An empty file.
    Empty,
    /// The shared licence text.
    License,
    /// A symlink with this (relative) target.
    Symlink(String),
}

/// One planned file or symlink.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path relative to the corpus root, `/`-separated.
    pub rel: String,
    /// Its content.
    pub content: Content,
    /// Whether it is clutter that the tools exclude.
    pub clutter: bool,
}

/// The whole planned corpus.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Every folder, parents before children (relative, `/`-separated).
    pub dirs: Vec<String>,
    /// Every file and symlink.
    pub entries: Vec<Entry>,
}

/// What a plan or a generated corpus adds up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Regular files, clutter included.
    pub files: u64,
    /// Bytes of regular files, clutter included.
    pub bytes: u64,
    /// Clutter files (excluded by the tools).
    pub clutter_files: u64,
    /// Clutter bytes.
    pub clutter_bytes: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Folders.
    pub dirs: u64,
}

impl Plan {
    /// Totals of the plan.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            dirs: self.dirs.len() as u64,
            ..Stats::default()
        };
        for e in &self.entries {
            let size = match e.content {
                Content::Text(n) | Content::Binary(n) => n,
                Content::Empty => 0,
                Content::License => LICENSE.len() as u64,
                Content::Symlink(_) => {
                    s.symlinks += 1;
                    continue;
                }
            };
            s.files += 1;
            s.bytes += size;
            if e.clutter {
                s.clutter_files += 1;
                s.clutter_bytes += size;
            }
        }
        s
    }
}

/// Words for names and text.
const WORDS: &[&str] = &[
    "account",
    "action",
    "adapter",
    "agent",
    "alpha",
    "analysis",
    "api",
    "app",
    "array",
    "asset",
    "async",
    "audio",
    "auth",
    "backend",
    "batch",
    "beta",
    "binary",
    "block",
    "buffer",
    "build",
    "cache",
    "caption",
    "channel",
    "chart",
    "client",
    "codec",
    "common",
    "config",
    "context",
    "core",
    "counter",
    "crawler",
    "data",
    "debug",
    "decoder",
    "delta",
    "detector",
    "device",
    "dialog",
    "digest",
    "engine",
    "entity",
    "event",
    "export",
    "extract",
    "feature",
    "feed",
    "filter",
    "format",
    "frame",
    "gateway",
    "graph",
    "handler",
    "header",
    "helper",
    "hook",
    "image",
    "import",
    "index",
    "insight",
    "item",
    "job",
    "kernel",
    "label",
    "layer",
    "layout",
    "loader",
    "local",
    "logger",
    "main",
    "manager",
    "media",
    "merge",
    "metric",
    "miner",
    "model",
    "module",
    "monitor",
    "network",
    "node",
    "option",
    "output",
    "page",
    "parser",
    "patch",
    "pipeline",
    "plugin",
    "policy",
    "post",
    "preview",
    "profile",
    "proxy",
    "query",
    "queue",
    "reader",
    "record",
    "render",
    "report",
    "request",
    "resolver",
    "result",
    "router",
    "sample",
    "scanner",
    "schema",
    "script",
    "search",
    "server",
    "service",
    "session",
    "setting",
    "shared",
    "signal",
    "snapshot",
    "source",
    "state",
    "storage",
    "store",
    "stream",
    "style",
    "summary",
    "sync",
    "table",
    "task",
    "template",
    "tensor",
    "test",
    "thread",
    "token",
    "tool",
    "tracker",
    "transform",
    "tree",
    "upload",
    "user",
    "util",
    "value",
    "vector",
    "video",
    "view",
    "widget",
    "worker",
    "writer",
];

/// Separators for code-like text.
const SEPS: &[&str] = &[
    " ", " ", " ", "_", ".", "(", ")", " = ", ", ", "; ", ": ", " -> ", " { ", " }", " + ", "::",
];

/// Text file extensions, some repeated to weight them.
const TEXT_EXTS: &[&str] = &[
    "py", "py", "py", "rs", "rs", "js", "js", "ts", "tsx", "md", "json", "txt", "html", "css", "c",
    "h", "toml", "yaml", "sh", "sql",
];

/// Binary file extensions.
const BIN_EXTS: &[&str] = &["png", "jpg", "zip", "so", "pdf", "mp4", "bin", "onnx"];

/// Top-level folders of the project.
const TOP_DIRS: &[&str] = &[
    "src", "lib", "tests", "docs", "assets", "scripts", "tools", "config", "examples", "vendor",
    "web", "data",
];

/// The shared licence text (duplicated content across the tree).
const LICENSE: &str =
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n\
of this software and associated documentation files (the \"Software\"), to deal\n\
in the Software without restriction, including without limitation the rights\n\
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell\n\
copies of the Software, and to permit persons to whom the Software is\n\
furnished to do so, subject to the following conditions: the above copyright\n\
notice and this permission notice shall be included in all copies or\n\
substantial portions of the Software. THE SOFTWARE IS PROVIDED \"AS IS\".\n";

fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.index(WORDS.len())]
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn depth(dir: &str) -> usize {
    if dir.is_empty() {
        0
    } else {
        dir.split('/').count()
    }
}

/// Size of a text file: mostly 1–16 KiB, skewed to the small end.
fn text_size(rng: &mut Rng) -> u64 {
    let u = rng.unit();
    KIB + (u * u * (15 * KIB) as f64) as u64
}

/// Plans the corpus of `shape` for `seed`.
pub fn plan(shape: &Shape, seed: u64) -> Plan {
    let mut rng = Rng::derive(seed, 0);
    let mut p = Plan::default();
    let mut dir_set: HashSet<String> = HashSet::new();
    // Project folders: the top level, then a random tree below it.
    let mut project: Vec<String> = Vec::new();
    for t in TOP_DIRS {
        dir_set.insert(t.to_string());
        project.push(t.to_string());
    }
    while project.len() < TOP_DIRS.len() + shape.dirs {
        let parent = project[rng.index(project.len())].clone();
        if depth(&parent) >= MAX_DEPTH {
            continue;
        }
        let base = word(&mut rng);
        let mut name = join(&parent, base);
        let mut k = 1;
        while dir_set.contains(&name) {
            k += 1;
            name = join(&parent, &format!("{base}_{k}"));
        }
        dir_set.insert(name.clone());
        project.push(name);
    }
    // Files go in the root or any project folder (never in the empty ones).
    let mut homes: Vec<String> = vec![String::new()];
    homes.extend(project.iter().cloned());
    let mut entries = Vec::new();
    let mut push = |rel: String, content: Content, clutter: bool| {
        entries.push(Entry {
            rel,
            content,
            clutter,
        })
    };
    // Root files of a project.
    push("README.md".into(), Content::Text(6 * KIB), false);
    push("LICENSE".into(), Content::License, false);
    push("pyproject.toml".into(), Content::Text(2 * KIB), false);
    push(".gitignore".into(), Content::Text(300), false);
    let mut text_paths: Vec<String> = Vec::new();
    for i in 0..shape.text_files {
        let dir = &homes[rng.index(homes.len())];
        let (w1, w2, ext) = (word(&mut rng), word(&mut rng), rng.pick(TEXT_EXTS));
        let rel = join(dir, &format!("{w1}_{w2}_{i}.{ext}"));
        text_paths.push(rel.clone());
        push(rel, Content::Text(text_size(&mut rng)), false);
    }
    for i in 0..shape.big_text_files {
        let dir = &homes[rng.index(homes.len())];
        let ext = rng.pick(&["json", "lock", "csv", "svg"]);
        let rel = join(dir, &format!("{}_data_{i}.{ext}", word(&mut rng)));
        push(
            rel,
            Content::Text(rng.log_range(16 * KIB, 256 * KIB)),
            false,
        );
    }
    for i in 0..shape.binaries {
        // Mostly under assets/ and data/, like real projects.
        let dir = if rng.chance(0.6) {
            let tops: Vec<&String> = project
                .iter()
                .filter(|d| d.starts_with("assets") || d.starts_with("data"))
                .collect();
            tops[rng.index(tops.len())].clone()
        } else {
            homes[rng.index(homes.len())].clone()
        };
        let ext = rng.pick(BIN_EXTS);
        let rel = join(&dir, &format!("{}_{i}.{ext}", word(&mut rng)));
        let size = rng.log_range(shape.binary_min, shape.binary_max);
        push(rel, Content::Binary(size), false);
    }
    let mut dup_dirs: HashSet<(String, bool)> = HashSet::new();
    for i in 0..shape.dup_files {
        let dir = homes[rng.index(homes.len())].clone();
        let init = i % 2 == 0;
        if !dup_dirs.insert((dir.clone(), init)) {
            continue;
        }
        if init {
            push(join(&dir, "__init__.py"), Content::Empty, false);
        } else {
            push(join(&dir, "LICENSE.txt"), Content::License, false);
        }
    }
    for _ in 0..shape.symlinks.min(text_paths.len()) {
        let target = &text_paths[rng.index(text_paths.len())];
        let (dir, name) = target.rsplit_once('/').unwrap_or(("", target.as_str()));
        push(
            join(dir, &format!("{name}.link")),
            Content::Symlink(name.to_string()),
            false,
        );
    }
    // Clutter.
    push(
        ".git/HEAD".into(),
        Content::Text("ref: refs/heads/main\n".len() as u64),
        true,
    );
    push(".git/config".into(), Content::Text(400), true);
    for _ in 0..shape.git_objects {
        let id = format!(
            "{:016x}{:016x}{:08x}",
            rng.next_u64(),
            rng.next_u64(),
            rng.below(1 << 32)
        );
        let rel = format!(".git/objects/{}/{}", &id[..2], &id[2..]);
        push(rel, Content::Binary(rng.log_range(64, 8 * KIB)), true);
    }
    for _ in 0..shape.pycache_dirs {
        let dir = &project[rng.index(project.len())];
        if depth(dir) >= MAX_DEPTH {
            continue;
        }
        for k in 0..rng.range(2, 6) {
            let rel = join(
                dir,
                &format!("__pycache__/{}_{k}.cpython-311.pyc", word(&mut rng)),
            );
            push(rel, Content::Binary(rng.range(KIB, 8 * KIB)), true);
        }
    }
    for i in 0..shape.logs {
        let rel = if i % 2 == 0 {
            format!("logs/app_{i}.log")
        } else {
            join(&homes[rng.index(homes.len())], &format!("debug_{i}.log"))
        };
        push(rel, Content::Text(rng.log_range(4 * KIB, 256 * KIB)), true);
    }
    for i in 0..shape.temp_files {
        let batch = i / 50;
        let rel = if i % 100 == 99 {
            format!("temp_processing/batch_{batch}/frames_{i}.bin")
        } else {
            format!("temp_processing/batch_{batch}/chunk_{i}.json")
        };
        let content = if i % 100 == 99 {
            Content::Binary(rng.range(MIB, 4 * MIB))
        } else {
            Content::Text(rng.range(KIB, 64 * KIB))
        };
        push(rel, content, true);
    }
    // Deduplicate paths (a symlink could collide with a file of the same name).
    let mut seen = HashSet::new();
    entries.retain(|e| seen.insert(e.rel.clone()));
    // Every folder holding an entry, plus the empty ones.
    for e in &entries {
        let mut d = e.rel.as_str();
        while let Some((parent, _)) = d.rsplit_once('/') {
            dir_set.insert(parent.to_string());
            d = parent;
        }
    }
    for k in 0..shape.empty_dirs {
        let parent = &project[rng.index(project.len())];
        if depth(parent) < MAX_DEPTH {
            dir_set.insert(join(parent, &format!("empty_{k}")));
        }
    }
    let mut dirs: Vec<String> = dir_set.into_iter().collect();
    dirs.sort();
    p.dirs = dirs;
    p.entries = entries;
    p
}

/// Appends code-like text to `out` until it holds `size` bytes.
pub fn fill_text(rng: &mut Rng, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    while out.len() - start < size {
        let indent = rng.below(4) as usize * 4;
        out.extend(std::iter::repeat_n(b' ', indent));
        let words = rng.range(2, 9);
        for w in 0..words {
            if w > 0 {
                out.extend_from_slice(rng.pick(SEPS).as_bytes());
            }
            out.extend_from_slice(word(rng).as_bytes());
            if rng.chance(0.08) {
                let _ = write!(out, "{}", rng.below(10_000));
            }
        }
        out.push(b'\n');
    }
    out.truncate(start + size);
}

/// A fixed modification time in 2024 for entry `i` (deterministic trees).
fn planned_mtime(seed: u64, i: u64) -> SystemTime {
    let jan_2024 = 1_704_067_200u64;
    let t = jan_2024 + Rng::derive(seed ^ 0x5EED, i).below(300 * 86_400);
    SystemTime::UNIX_EPOCH + Duration::from_secs(t)
}

/// Writes entry `i` of the plan under `root`; `buf` is scratch space.
fn write_entry(root: &Path, seed: u64, i: usize, e: &Entry, buf: &mut Vec<u8>) -> Result<()> {
    let path = root.join(&e.rel);
    let mut rng = Rng::derive(seed, 1 + i as u64);
    let mut file = match &e.content {
        Content::Symlink(target) => {
            std::os::unix::fs::symlink(target, &path)
                .with_context(|| format!("symlink {}", path.display()))?;
            return Ok(());
        }
        _ => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?,
    };
    match &e.content {
        Content::Text(n) => {
            buf.clear();
            if e.rel == ".git/HEAD" {
                buf.extend_from_slice(b"ref: refs/heads/main\n");
            } else {
                fill_text(&mut rng, *n as usize, buf);
            }
            file.write_all(buf)?;
        }
        Content::Binary(n) => {
            let mut left = *n as usize;
            while left > 0 {
                let k = left.min(1 << 20);
                buf.resize(k, 0);
                rng.fill_bytes(buf);
                file.write_all(buf)?;
                left -= k;
            }
        }
        Content::Empty => {}
        Content::License => file.write_all(LICENSE.as_bytes())?,
        Content::Symlink(_) => unreachable!("handled above"),
    }
    file.set_modified(planned_mtime(seed, i as u64))
        .with_context(|| format!("setting mtime of {}", path.display()))?;
    Ok(())
}

/// Generates the corpus of `shape` for `seed` into `out`, which must be
/// missing or empty. Returns what was written.
pub fn generate(out: &Path, shape: &Shape, seed: u64) -> Result<Stats> {
    if out.exists() && fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} is not empty; choose a new folder (the corpus is written from scratch)",
            out.display()
        );
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let p = plan(shape, seed);
    for d in &p.dirs {
        fs::create_dir_all(out.join(d)).with_context(|| format!("creating {d}"))?;
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let p = &p;
                s.spawn(move || -> Result<()> {
                    let mut buf = Vec::with_capacity(1 << 20);
                    for (i, e) in p.entries.iter().enumerate().skip(w).step_by(workers) {
                        write_entry(out, seed, i, e, &mut buf)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(p.stats())
}

/// What a mutation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutateStats {
    /// Candidate files (regular, not clutter) before the mutation.
    pub candidates: u64,
    /// Files changed in place, keeping their size.
    pub changed_same_size: u64,
    /// Files rewritten with another size (new inode, like an editor's save).
    pub changed_resized: u64,
    /// New files.
    pub added: u64,
    /// Deleted files.
    pub deleted: u64,
}

/// Changes 1% of the project files of `dir` (half keeping their size), adds
/// 0.5% new files and deletes 0.5%, chosen by `seed` (at least one of each
/// when there are files). Clutter is left alone. The same seed on the same
/// tree gives the same result.
pub fn mutate(dir: &Path, seed: u64) -> Result<MutateStats> {
    let list = fsutil::walk(dir, &|_| false)?;
    let mut files: Vec<PathBuf> = list
        .iter()
        .filter(|e| e.meta.is_file() && !fsutil::is_excluded(&e.rel))
        .map(|e| e.rel.clone())
        .collect();
    let mut homes: Vec<PathBuf> = list
        .iter()
        .filter(|e| e.meta.is_dir() && !fsutil::is_excluded(&e.rel))
        .map(|e| e.rel.clone())
        .collect();
    homes.insert(0, PathBuf::new());
    let n = files.len();
    let mut st = MutateStats {
        candidates: n as u64,
        ..MutateStats::default()
    };
    if n == 0 {
        return Ok(st);
    }
    let part = |f: f64| ((n as f64 * f).round() as usize).max(1);
    let (n_change, n_del, n_add) = (part(0.01), part(0.005), part(0.005));
    let mut rng = Rng::derive(seed, 0x003D_7A7E);
    rng.shuffle(&mut files);
    let n_change = n_change.min(n);
    let n_del = n_del.min(n - n_change);
    for (k, rel) in files[..n_change].iter().enumerate() {
        let path = dir.join(rel);
        let old = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if k % 2 == 0 && !old.is_empty() {
            // Same size: flip a window of bytes in place (same inode).
            let len = old.len().min(rng.range(1, 64) as usize);
            let at = rng.index(old.len() - len + 1);
            let mut patch = old[at..at + len].to_vec();
            for b in &mut patch {
                *b ^= rng.range(1, 255) as u8;
            }
            let mut f = fs::OpenOptions::new().write(true).open(&path)?;
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(at as u64))?;
            f.write_all(&patch)?;
            st.changed_same_size += 1;
        } else {
            // Another size: write a new file and rename it over the old one.
            let mut new = old;
            if new.len() > 1 && rng.chance(0.3) {
                let keep = rng.range(1, new.len() as u64 - 1) as usize;
                new.truncate(keep);
            } else {
                let add = rng.range(1, 2048) as usize;
                fill_text(&mut rng, add, &mut new);
            }
            let tmp = path.with_file_name(format!(
                ".{}.bench-new",
                path.file_name()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default()
            ));
            fs::write(&tmp, &new).with_context(|| format!("writing {}", tmp.display()))?;
            let mode = fs::metadata(&path)?.permissions();
            fs::set_permissions(&tmp, mode)?;
            fs::rename(&tmp, &path)?;
            st.changed_resized += 1;
        }
    }
    for rel in &files[n_change..n_change + n_del] {
        fs::remove_file(dir.join(rel))
            .with_context(|| format!("deleting {}", dir.join(rel).display()))?;
        st.deleted += 1;
    }
    let mut buf = Vec::new();
    for k in 0..n_add {
        let home = &homes[rng.index(homes.len())];
        let (w, ext) = (word(&mut rng), rng.pick(TEXT_EXTS));
        let mut rel = home.join(format!("{w}_new_{seed:x}_{k}.{ext}"));
        let mut extra = 0;
        while dir.join(&rel).exists() {
            extra += 1;
            rel = home.join(format!("{w}_new_{seed:x}_{k}_{extra}.{ext}"));
        }
        buf.clear();
        let size = text_size(&mut rng) as usize;
        fill_text(&mut rng, size, &mut buf);
        fs::write(dir.join(&rel), &buf)?;
        st.added += 1;
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fsutil::{is_excluded, summarize, tree_digest};

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!(
                "backup-bench-test-{}-{tag}-{n}",
                std::process::id()
            ));
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn plan_is_deterministic() {
        let a = plan(&Shape::tiny(), 9);
        let b = plan(&Shape::tiny(), 9);
        let c = plan(&Shape::tiny(), 10);
        let names = |p: &Plan| p.entries.iter().map(|e| e.rel.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_eq!(a.dirs, b.dirs);
        assert_ne!(names(&a), names(&c));
    }

    #[test]
    fn small_shape_matches_the_brief() {
        let s = plan(&Shape::small(), 1).stats();
        assert!(
            (19_000..=21_000).contains(&s.files),
            "{} files in the small corpus",
            s.files
        );
        let mib = s.bytes / MIB;
        assert!((300..=420).contains(&mib), "{mib} MiB in the small corpus");
        let big = plan(&CorpusSize::Large.shape(), 1).stats();
        assert!((190_000..=210_000).contains(&big.files), "{}", big.files);
        let gib = big.bytes as f64 / (1u64 << 30) as f64;
        assert!((2.9..=3.9).contains(&gib), "{gib} GiB in the large corpus");
    }

    #[test]
    fn tiny_corpus_has_the_right_shape() {
        let dir = TempDir::new("shape");
        let shape = Shape::tiny();
        let stats = generate(&dir.0, &shape, 7).expect("generate");
        let all = summarize(&dir.0, &|_| false).expect("summarize");
        assert_eq!(all.files, stats.files);
        assert_eq!(all.bytes, stats.bytes);
        assert_eq!(all.symlinks, stats.symlinks);
        assert!(stats.symlinks >= 1);
        // Mostly 1–16 KiB text, a few binaries.
        let list = fsutil::walk(&dir.0, &|_| false).expect("walk");
        let project: Vec<_> = list
            .iter()
            .filter(|e| e.meta.is_file() && !is_excluded(&e.rel))
            .collect();
        let in_range = project
            .iter()
            .filter(|e| (KIB..=16 * KIB).contains(&e.meta.len()))
            .count();
        assert!(
            in_range * 10 >= project.len() * 8,
            "{in_range} of {}",
            project.len()
        );
        // Nested folders, at most MAX_DEPTH deep, with some deep ones.
        let max_dir_depth = list
            .iter()
            .filter(|e| e.meta.is_dir())
            .map(|e| e.rel.components().count())
            .max()
            .unwrap_or(0);
        assert!((3..=MAX_DEPTH).contains(&max_dir_depth), "{max_dir_depth}");
        // Clutter of every kind is there, and excluded.
        for needle in [".git/objects/", "__pycache__/", ".log", "temp_processing/"] {
            assert!(
                list.iter()
                    .any(|e| e.rel.to_string_lossy().contains(needle) && is_excluded(&e.rel)),
                "no clutter {needle}"
            );
        }
        let kept = summarize(&dir.0, &is_excluded).expect("summarize");
        assert_eq!(kept.files, stats.files - stats.clutter_files);
        // Empty folders exist.
        assert!(list.iter().any(|e| e.meta.is_dir()
            && fs::read_dir(dir.0.join(&e.rel))
                .map(|mut r| r.next().is_none())
                .unwrap_or(false)));
    }

    #[test]
    fn generation_is_deterministic() {
        let (a, b, c) = (TempDir::new("ga"), TempDir::new("gb"), TempDir::new("gc"));
        generate(&a.0, &Shape::tiny(), 3).expect("a");
        generate(&b.0, &Shape::tiny(), 3).expect("b");
        generate(&c.0, &Shape::tiny(), 4).expect("c");
        let da = tree_digest(&a.0, &|_| false).expect("digest");
        assert_eq!(da, tree_digest(&b.0, &|_| false).expect("digest"));
        assert_ne!(da, tree_digest(&c.0, &|_| false).expect("digest"));
        // Modification times are fixed too.
        let rel = "README.md";
        let ma = fs::metadata(a.0.join(rel)).and_then(|m| m.modified());
        let mb = fs::metadata(b.0.join(rel)).and_then(|m| m.modified());
        assert_eq!(ma.expect("mtime"), mb.expect("mtime"));
        assert!(generate(&a.0, &Shape::tiny(), 3).is_err(), "non-empty out");
    }

    #[test]
    fn mutate_is_deterministic_and_sized() {
        let (a, b) = (TempDir::new("ma"), TempDir::new("mb"));
        generate(&a.0, &Shape::tiny(), 5).expect("a");
        generate(&b.0, &Shape::tiny(), 5).expect("b");
        let before = summarize(&a.0, &is_excluded).expect("summary");
        let root = a.0.clone();
        let project_file = move |p: &Path| !is_excluded(p) && root.join(p).is_file();
        let clutter_before = tree_digest(&a.0, &project_file).expect("digest");
        let sa = mutate(&a.0, 11).expect("mutate a");
        let sb = mutate(&b.0, 11).expect("mutate b");
        assert_eq!(sa, sb);
        assert_eq!(
            tree_digest(&a.0, &|_| false).expect("digest"),
            tree_digest(&b.0, &|_| false).expect("digest")
        );
        let n = before.files;
        assert_eq!(sa.candidates, n);
        let one_pct = ((n as f64 * 0.01).round() as u64).max(1);
        let half_pct = ((n as f64 * 0.005).round() as u64).max(1);
        assert_eq!(sa.changed_same_size + sa.changed_resized, one_pct);
        assert!(sa.changed_same_size >= sa.changed_resized);
        assert_eq!((sa.added, sa.deleted), (half_pct, half_pct));
        let after = summarize(&a.0, &is_excluded).expect("summary");
        assert_eq!(after.files, n);
        // Clutter is untouched.
        assert_eq!(
            clutter_before,
            tree_digest(&a.0, &project_file).expect("digest")
        );
        // Another seed changes other things.
        let c = TempDir::new("mc");
        generate(&c.0, &Shape::tiny(), 5).expect("c");
        mutate(&c.0, 12).expect("mutate c");
        assert_ne!(
            tree_digest(&a.0, &|_| false).expect("digest"),
            tree_digest(&c.0, &|_| false).expect("digest")
        );
    }
}
