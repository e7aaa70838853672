//! Plugging a custom filter between the scan and hash stages: skip files
//! larger than a limit.
//!
//! ```sh
//! cargo run -p backup-cli --example custom_filter -- insightminer.toml 1048576
//! ```
//!
//! Prints the run's report as JSON.

use backup_core::{EntryFilter, EntryKind, ScanEntry};

/// Leaves out regular files larger than `.0` bytes.
struct SkipLargerThan(u64);

impl EntryFilter for SkipLargerThan {
    fn keep(&self, entry: &ScanEntry) -> bool {
        entry.kind != EntryKind::File || entry.stat.size <= self.0
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let profile = args.next().unwrap_or_else(|| "insightminer.toml".into());
    let limit: u64 = args.next().map_or(Ok(1 << 20), |s| s.parse())?;
    let report = backup_cli::trigger_startup_backup_with(profile, move |_profile, mut stages| {
        stages.filters.push(Box::new(SkipLargerThan(limit)));
        stages
    })
    .join();
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
