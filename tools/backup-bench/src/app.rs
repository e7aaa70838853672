//! The benchmark itself, Unix only: it runs find, cp, rsync, restic and
//! borg beside backup-cli and measures them with `wait4`.

mod bench;
mod corpus;
mod fsutil;
mod measure;
mod model;
mod report;
mod s3;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::bench::RunOptions;
use crate::app::corpus::CorpusSize;
use crate::app::model::Tool;

/// Benchmarks for backup-cli.
#[derive(Debug, Parser)]
#[command(name = "backup-bench", version, about, long_about = None)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Generate a deterministic project-like corpus.
    Gen {
        /// Which corpus: small (~20,000 files, ~350 MiB) or large (~200,000 files, ~3.3 GiB).
        #[arg(long, value_enum)]
        corpus: CorpusSize,
        /// Folder to write (must be missing or empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Seed of the generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Also print a SHA-256 over the names and contents of the result
        /// (equal on every machine for the same corpus and seed).
        #[arg(long)]
        digest: bool,
    },
    /// Change 1% of the files (half keeping their size), add 0.5%, delete 0.5%.
    Mutate {
        /// The corpus folder.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Seed choosing what changes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the benchmark and print the tables.
    Run {
        /// Which corpus.
        #[arg(long, value_enum)]
        corpus: CorpusSize,
        /// Work folder: the corpus is generated (or reused) here, scratch state too.
        #[arg(long, value_name = "DIR")]
        work: PathBuf,
        /// Timed runs per scenario and tool.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Tools to run, comma-separated: ours, find, cpa, cpal, rsync,
        /// restic, borg, and the S3 column ours-s3, restic-s3 (initial and
        /// after-mutate backups to a loopback `rclone serve s3`; ours-s3
        /// needs backup-cli built with `--features s3`).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "ours,find,cpa,cpal,rsync,restic,borg"
        )]
        tools: Vec<String>,
        /// The backup-cli binary (default: next to backup-bench).
        #[arg(long, value_name = "PATH")]
        bin: Option<PathBuf>,
        /// The rclone binary for the S3 tools (default: $RCLONE, else
        /// .ci/venv/bin/rclone of the workspace, else PATH).
        #[arg(long, value_name = "PATH")]
        rclone: Option<PathBuf>,
        /// Also write a Markdown report to this file.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Seed of the corpus.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Keep the scratch folder (destinations, repositories, restores).
        #[arg(long)]
        keep_scratch: bool,
        /// Regenerate the corpus even if a matching one exists.
        #[arg(long)]
        fresh: bool,
    },
}

pub fn main() -> ExitCode {
    // The measuring wrapper must stay small: handle it before anything else.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == measure::WRAPPER_ARG) {
        return measure::wrapper_main(&args[2..]);
    }
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backup-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Gen {
            corpus,
            out,
            seed,
            digest,
        } => {
            let t = std::time::Instant::now();
            let s = corpus::generate(&out, &corpus.shape(), seed)?;
            println!(
                "{} corpus (seed {seed}) in {}: {} files ({} clutter, {:.1} MiB), {} symlinks, {} folders, {:.1} MiB in {:.1} s",
                corpus.name(),
                out.display(),
                s.files,
                s.clutter_files,
                s.clutter_bytes as f64 / 1048576.0,
                s.symlinks,
                s.dirs,
                s.bytes as f64 / 1048576.0,
                t.elapsed().as_secs_f64()
            );
            if digest {
                println!("digest {}", fsutil::tree_digest(&out, &|_| false)?);
            }
        }
        Cmd::Mutate { dir, seed } => {
            let s = corpus::mutate(&dir, seed)?;
            println!(
                "{} candidate files: {} changed in place (same size), {} rewritten (new size), {} added, {} deleted",
                s.candidates, s.changed_same_size, s.changed_resized, s.added, s.deleted
            );
        }
        Cmd::Run {
            corpus,
            work,
            runs,
            tools,
            bin,
            rclone,
            write,
            seed,
            keep_scratch,
            fresh,
        } => {
            let tools = tools
                .iter()
                .map(|t| Tool::parse(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let command_line = std::env::args()
                .map(|a| {
                    if a.contains(|c: char| c.is_whitespace() || c == '\'') {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    } else {
                        a
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            bench::run(RunOptions {
                corpus,
                work,
                runs,
                tools,
                bin,
                rclone,
                write,
                seed,
                keep_scratch,
                fresh,
                command_line,
            })?;
        }
    }
    Ok(())
}
