//! The `backup-cli` binary: hands its command line to
//! [`backup_cli::main_with`]. Exit codes: 0 success or deliberate skip, 1 the
//! run failed (rolled back), 2 usage or profile error, 3 some files could not
//! be read (listed; everything else was backed up).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(backup_cli::main_with(std::env::args_os()))
}
