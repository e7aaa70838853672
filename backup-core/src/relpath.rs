//! [`RelPath`]: a path relative to the source root, as stored in manifests.
//!
//! Paths are kept as the operating system's bytes, so names that are not
//! valid UTF-8 survive a round trip. In JSON a UTF-8 path is a plain string;
//! any other path is an object `{"hex": "…"}` holding its raw bytes.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A path relative to the root of a source tree or snapshot, never absolute
/// and never containing `..`.
///
/// Equality and hashing work on the path's bytes (the paths are normalized,
/// so this agrees with component-wise comparison and is much faster).
#[derive(Clone, PartialOrd, Ord)]
pub struct RelPath(PathBuf);

impl PartialEq for RelPath {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_os_str().as_encoded_bytes() == other.0.as_os_str().as_encoded_bytes()
    }
}

impl Eq for RelPath {}

impl std::hash::Hash for RelPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_os_str().as_encoded_bytes().hash(state);
    }
}

/// A path that cannot be a [`RelPath`]: absolute, or climbing out with `..`.
#[derive(Debug, thiserror::Error)]
#[error("unsafe path {0:?}: paths in a manifest must be relative and must not contain '..'")]
pub struct UnsafePathError(pub PathBuf);

impl RelPath {
    /// Checks that `path` stays inside its root and wraps it.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, UnsafePathError> {
        let path = forward_slashes(path.into());
        let safe = !path.as_os_str().is_empty()
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        if safe {
            // Normalize (drop `//`, a trailing `/`) so byte equality holds.
            let bytes = path.as_os_str().as_encoded_bytes();
            let clean = !bytes.ends_with(b"/") && !bytes.windows(2).any(|w| w == b"//");
            Ok(RelPath(if clean {
                path
            } else {
                forward_slashes(path.components().collect())
            }))
        } else {
            Err(UnsafePathError(path))
        }
    }

    /// The path as a `Path`.
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The path's bytes (Unix) or its lossy UTF-8 form elsewhere.
    pub fn as_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        os_bytes(self.0.as_os_str())
    }

    /// The path as text when it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        self.0.to_str()
    }

    /// Number of components (1 for a file at the root).
    pub fn depth(&self) -> usize {
        self.0.components().count()
    }

    /// `root/self`.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

/// On Windows, `\\` separators become `/`: a manifest names `sub/f.txt`
/// on every platform (a snapshot made on Windows restores on Linux), and
/// Windows takes `/` wherever it takes `\\`. Elsewhere `\\` is an ordinary
/// character of a name and stays.
#[cfg(windows)]
fn forward_slashes(path: PathBuf) -> PathBuf {
    use std::os::windows::ffi::{OsStrExt, OsStringExt};
    let wide: Vec<u16> = path.as_os_str().encode_wide().collect();
    if !wide.contains(&(b'\\' as u16)) {
        return path;
    }
    let fixed: Vec<u16> = wide
        .into_iter()
        .map(|c| if c == b'\\' as u16 { b'/' as u16 } else { c })
        .collect();
    PathBuf::from(std::ffi::OsString::from_wide(&fixed))
}

#[cfg(not(windows))]
fn forward_slashes(path: PathBuf) -> PathBuf {
    path
}

#[cfg(unix)]
fn os_bytes(s: &OsStr) -> std::borrow::Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    std::borrow::Cow::Borrowed(s.as_bytes())
}

#[cfg(not(unix))]
fn os_bytes(s: &OsStr) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Owned(s.to_string_lossy().into_owned().into_bytes())
}

#[cfg(unix)]
fn os_from_bytes(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
fn os_from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Serializes any path-like bytes the way manifests store them.
pub fn serialize_os<S: Serializer>(s: &OsStr, serializer: S) -> Result<S::Ok, S::Error> {
    match s.to_str() {
        Some(text) => serializer.serialize_str(text),
        None => {
            use serde::ser::SerializeMap;
            let bytes = os_bytes(s);
            let mut hex = String::with_capacity(bytes.len() * 2);
            for b in bytes.iter() {
                hex.push_str(&format!("{b:02x}"));
            }
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry("hex", &hex)?;
            map.end()
        }
    }
}

/// Reads a path stored by [`serialize_os`]: a string, or `{"hex": "…"}`.
/// (A hand-written visitor: `#[serde(untagged)]` would buffer every value
/// first, which is slow for manifests with hundreds of thousands of lines.)
pub fn deserialize_os<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = PathBuf;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a path string or {\"hex\": ...}")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PathBuf, E> {
            Ok(PathBuf::from(v))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<PathBuf, E> {
            Ok(PathBuf::from(v))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PathBuf, A::Error> {
            let mut hex: Option<String> = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "hex" {
                    hex = Some(map.next_value()?);
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            let hex = hex.ok_or_else(|| serde::de::Error::missing_field("hex"))?;
            if hex.len() % 2 != 0 {
                return Err(serde::de::Error::custom("odd length hex path"));
            }
            let mut bytes = Vec::with_capacity(hex.len() / 2);
            for i in (0..hex.len()).step_by(2) {
                let byte = hex
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("bad hex path"))?;
                bytes.push(byte);
            }
            Ok(os_from_bytes(bytes))
        }
    }
    deserializer.deserialize_any(Visit)
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_os(self.0.as_os_str(), serializer)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = deserialize_os(deserializer)?;
        RelPath::new(path).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escaping_paths() {
        assert!(RelPath::new("a/b").is_ok());
        assert!(RelPath::new("../a").is_err());
        assert!(RelPath::new("a/../../b").is_err());
        assert!(RelPath::new("/etc/passwd").is_err());
        assert!(RelPath::new("").is_err());
        assert_eq!(RelPath::new("a//b/").unwrap(), RelPath::new("a/b").unwrap());
        let err: Result<RelPath, _> = serde_json::from_str("\"../x\"");
        assert!(err.is_err());
    }

    /// Issue 13: on Windows a manifest path uses `/` as everywhere else,
    /// and drive-letter, rooted and UNC paths are never relative.
    #[cfg(windows)]
    #[test]
    fn windows_paths_are_stored_with_forward_slashes() {
        let p = RelPath::new(r"sub\deep\f.txt").unwrap();
        assert_eq!(p, RelPath::new("sub/deep/f.txt").unwrap());
        assert_eq!(p.to_string(), "sub/deep/f.txt");
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""sub/deep/f.txt""#);
        assert_eq!(p.depth(), 3);
        for bad in [r"C:\x", r"C:x", r"\x", r"\\server\share\x", r"a\..\..\b"] {
            assert!(RelPath::new(bad).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_round_trip() {
        let p = RelPath::new(os_from_bytes(vec![b'a', 0xff, b'\n', b'b'])).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"hex":"61ff0a62"}"#);
        let back: RelPath = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let plain: RelPath = serde_json::from_str("\"dir/f.txt\"").unwrap();
        assert_eq!(plain.as_path(), Path::new("dir/f.txt"));
    }
}
