//! Reading the binary's `--json` output: one document per run, and the
//! lists and objects in it as plain Rust values that compare in one
//! `assert_eq!`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::Run;

/// stdout parsed as exactly one JSON document (a second document, e.g. a
/// progress line that slipped into stdout, fails the test).
pub fn single_json(r: &Run) -> Value {
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&r.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "stdout is not a JSON stream ({e}):\n{}\nstderr:\n{}",
                r.stdout, r.stderr
            )
        });
    assert_eq!(
        docs.len(),
        1,
        "stdout must hold exactly one JSON document:\n{}",
        r.stdout
    );
    docs.into_iter().next().unwrap()
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v:#}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// `&str`s as owned strings, to compare with [`strings`].
pub fn sv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The keys of a JSON object.
pub fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// `[{snapshot, path}]` (as `verify` reports problems) as pairs.
pub fn snapshot_paths(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|o| {
            (
                o["snapshot"].as_str().unwrap().to_string(),
                o["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
