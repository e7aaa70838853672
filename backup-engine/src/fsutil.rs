//! Atomic writes of the engine's own state files (`backup_metadata.json`):
//! a temporary sibling, flushed, renamed over the old file, the folder
//! synced.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use backup_core::CoreError;
use backup_sys::sync_dir;

/// Writes `path` so that a crash leaves either the old file or the new
/// one: `fill` streams the content into a buffered temporary sibling, which
/// is fsynced and renamed over `path`; then the folder is fsynced.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> Result<(), CoreError>
where
    F: FnOnce(&mut dyn Write) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
{
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        fill(&mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        // std's rename: on Windows it replaces a file that another process
        // (an indexer, a `status`) holds open, which MoveFileExW refuses.
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        let io = match e.downcast::<io::Error>() {
            Ok(io) => *io,
            Err(other) => io::Error::other(other),
        };
        return Err(CoreError::io("write", path, io));
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(|e| CoreError::io("sync", parent, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic_with(&p, |w| Ok(w.write_all(b"one")?)).unwrap();
        write_atomic_with(&p, |w| Ok(w.write_all(b"two")?)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
