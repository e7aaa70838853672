//! A snapshot's own record as it lies on disk: `.backup-snapshot/info.json`
//! and `manifest.jsonl` (one JSON object per entry; a path that is not
//! UTF-8 is written as `{"hex": …}`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::hash::unhex;

/// The manifest file of a snapshot folder.
pub fn manifest_path(snapshot: &Path) -> PathBuf {
    snapshot.join(".backup-snapshot").join("manifest.jsonl")
}

/// Every line of a snapshot's manifest, in file order.
pub fn manifest(snapshot: &Path) -> Vec<Value> {
    let p = snapshot.join(".backup-snapshot/manifest.jsonl");
    let text = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    text.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "manifest line of {} is not JSON ({e}): {}",
                    p.display(),
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

/// Every entry of a snapshot's manifest by (UTF-8) path.
pub fn manifest_by_path(snapshot: &Path) -> BTreeMap<String, Value> {
    let text = fs::read_to_string(snapshot.join(".backup-snapshot/manifest.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("manifest line is not JSON ({e}): {l}"));
            (v["path"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// A manifest line's path as bytes (UTF-8 string or `{"hex": …}`).
pub fn entry_path(v: &Value) -> Vec<u8> {
    match &v["path"] {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Object(m) => unhex(m["hex"].as_str().expect("hex path")),
        other => panic!("bad manifest path {other}"),
    }
}

/// The manifest entry of `rel` in `snapshot`.
pub fn entry(snapshot: &Path, rel: impl AsRef<[u8]>) -> Option<Value> {
    let rel = rel.as_ref();
    manifest(snapshot)
        .into_iter()
        .find(|e| entry_path(e) == rel)
}

/// A snapshot's `info.json`.
pub fn info(snapshot: &Path) -> Value {
    let p = snapshot.join(".backup-snapshot/info.json");
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}
