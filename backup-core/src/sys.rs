//! Two operating-system facts every part needs: how to make a folder's
//! renames durable ([`sync_dir`]) and this machine's name ([`host_name`],
//! for lock records and logs).

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// This machine's host name (for lock files and logs).
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
