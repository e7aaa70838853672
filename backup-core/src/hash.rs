//! [`ContentHash`]: a SHA-256 digest of a file's content, written as 64 hex
//! digits, and the one implementation that computes it: [`ContentHasher`]
//! (incremental, also an `io::Write`), [`hash_reader`] and [`hash_file`]
//! (constant memory, one reused buffer per thread).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The SHA-256 digest of a file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(Sha256::digest(bytes).into())
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(DIGITS[(b >> 4) as usize] as char);
            out.push(DIGITS[(b & 15) as usize] as char);
        }
        out
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a SHA-256 hex digest: {0:?}")]
pub struct ParseHashError(pub String);

impl FromStr for ContentHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(ParseHashError(s.to_owned()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(|| ParseHashError(s.to_owned()))?;
            let lo = hex_value(pair[1]).ok_or_else(|| ParseHashError(s.to_owned()))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(ContentHash(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.to_hex())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes a [`ContentHash`] from bytes fed in pieces; as an `io::Write`
/// it hashes whatever is written to it (`io::copy(&mut reader, &mut h)`).
#[derive(Clone, Default)]
pub struct ContentHasher(Sha256);

impl ContentHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        ContentHasher::default()
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> ContentHash {
        ContentHash(self.0.finalize().into())
    }
}

impl Write for ContentHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for ContentHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentHasher")
    }
}

/// Size of the per-thread read buffer used for hashing.
const READ_BUF: usize = 256 * 1024;

thread_local! {
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_BUF]);
}

/// SHA-256 of everything `input` yields and the byte count, in constant
/// memory.
pub fn hash_reader(input: &mut dyn Read) -> io::Result<(ContentHash, u64)> {
    BUFFER.with(|b| {
        let buf = &mut b.borrow_mut()[..];
        let mut hasher = ContentHasher::new();
        let mut total = 0u64;
        loop {
            match input.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((hasher.finish(), total))
    })
}

/// SHA-256 of a regular file's content and the bytes read, in constant
/// memory, opened with [`backup_sys::open_regular`] (never a symlink, a FIFO
/// or a device in its place). At most `expected + 1` bytes are read, where
/// `expected` is the size the caller knows it by: a count over `expected`
/// means the file grew (its hash then covers only what was read), and a
/// file growing faster than it is read is never read forever.
pub fn hash_file(path: &Path, expected: u64) -> io::Result<(ContentHash, u64)> {
    let (file, _) = backup_sys::open_regular(path)?;
    hash_reader(&mut file.take(expected.saturating_add(1)))
}

/// [`hash_file`] of `rel` below `root`, opened with
/// [`backup_sys::open_beneath`] (no symlink followed anywhere in `rel`).
pub fn hash_file_beneath(
    root: &Path,
    rel: &crate::RelPath,
    expected: u64,
) -> io::Result<(ContentHash, u64)> {
    let (file, _) = backup_sys::open_beneath(root, rel.as_path())?;
    hash_reader(&mut file.take(expected.saturating_add(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = ContentHash([0xab; 32]);
        let hex = h.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("abab"));
        assert_eq!(hex.parse::<ContentHash>().unwrap(), h);
        assert!("xyz".parse::<ContentHash>().is_err());
        assert!("g".repeat(64).parse::<ContentHash>().is_err());
    }

    #[test]
    fn every_way_of_hashing_agrees() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(ContentHash::of(b"abc").to_hex(), abc);
        let (h, n) = hash_reader(&mut &b"abc"[..]).unwrap();
        assert_eq!((h.to_hex().as_str(), n), (abc, 3));
        let mut w = ContentHasher::new();
        io::copy(&mut &b"abc"[..], &mut w).unwrap();
        assert_eq!(w.finish().to_hex(), abc);
    }
}
