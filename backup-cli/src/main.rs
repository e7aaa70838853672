//! The `backup-cli` binary: parses the command line and hands over to
//! [`backup_cli::run`]. Exit codes: 0 success or deliberate skip, 1 the run
//! failed (rolled back), 2 usage or profile error, 3 some files could not be
//! read (listed; everything else was backed up).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = backup_cli::cli::Cli::parse();
    match backup_cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (e.g. `| head`) is not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            // The whole chain, each cause once (`{:#}` would repeat the
            // causes that a client's message already quotes).
            eprintln!(
                "backup-cli: error: {}",
                backup_engine::error_chain(e.as_ref())
            );
            ExitCode::from(1)
        }
    }
}
