//! [`ExcludeSet`]: gitignore-style exclusion patterns.
//!
//! The rules follow `.gitignore`: a pattern without a slash matches a name
//! at any depth; a trailing `/` matches folders only; a leading `/` (or any
//! slash inside) anchors the pattern at the base folder; `**` spans folders;
//! `*` and `?` never cross a `/`; a leading `!` re-includes what an earlier
//! pattern excluded; blank lines and `#` comments are ignored. The last
//! matching pattern decides.

use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

/// The exclusions every profile gets unless `default_excludes = false`.
pub const DEFAULT_EXCLUDES: &[&str] =
    &["__pycache__/", "*.pyc", "*.log", "*.tmp", "*.temp", ".git/"];

/// A pattern that is not a valid glob.
#[derive(Debug, thiserror::Error)]
#[error("invalid exclude pattern {pattern:?}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    #[source]
    pub source: globset::Error,
}

#[derive(Clone, Debug)]
struct Rule {
    negated: bool,
    dir_only: bool,
}

/// A compiled list of gitignore-style patterns.
#[derive(Clone, Debug)]
pub struct ExcludeSet {
    set: GlobSet,
    rules: Vec<Rule>,
    any_negated: bool,
}

impl Default for ExcludeSet {
    fn default() -> Self {
        ExcludeSet {
            set: GlobSet::empty(),
            rules: Vec::new(),
            any_negated: false,
        }
    }
}

impl ExcludeSet {
    /// Compiles patterns, in order.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut builder = GlobSetBuilder::new();
        let mut rules = Vec::new();
        for raw in patterns {
            let raw = raw.as_ref();
            let Some((glob, rule)) = parse_pattern(raw) else {
                continue;
            };
            let compiled = GlobBuilder::new(&glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| PatternError {
                    pattern: raw.to_owned(),
                    source,
                })?;
            builder.add(compiled);
            rules.push(rule);
        }
        let set = builder.build().map_err(|source| PatternError {
            pattern: source.glob().unwrap_or("").to_owned(),
            source,
        })?;
        let any_negated = rules.iter().any(|r| r.negated);
        Ok(ExcludeSet {
            set,
            rules,
            any_negated,
        })
    }

    /// Reads a `.gitignore`-style file's lines.
    pub fn from_file_text(text: &str) -> Result<Self, PatternError> {
        ExcludeSet::new(text.lines())
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides a path relative to the base folder: `Some(true)` excluded,
    /// `Some(false)` re-included by a `!` pattern, `None` no pattern matched.
    pub fn decide(&self, rel: &Path, is_dir: bool) -> Option<bool> {
        if self.rules.is_empty() {
            return None;
        }
        let cand = Candidate::new(rel);
        if !self.set.is_match_candidate(&cand) {
            return None;
        }
        if !self.any_negated && self.rules.iter().all(|r| !r.dir_only) {
            return Some(true);
        }
        let hits = self.set.matches_candidate(&cand);
        hits.iter()
            .rev()
            .map(|&i| &self.rules[i])
            .find(|r| is_dir || !r.dir_only)
            .map(|r| !r.negated)
    }

    /// Whether the path is excluded.
    pub fn is_excluded(&self, rel: &Path, is_dir: bool) -> bool {
        self.decide(rel, is_dir).unwrap_or(false)
    }
}

fn parse_pattern(raw: &str) -> Option<(String, Rule)> {
    let mut p = raw.trim_end_matches(['\r', '\n']);
    // Trailing spaces are ignored unless escaped, as in git.
    if !p.ends_with("\\ ") {
        p = p.trim_end_matches(' ');
    }
    if p.is_empty() || p.starts_with('#') {
        return None;
    }
    let (negated, p) = match p.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, p.strip_prefix("\\!").map_or(p, |_| &p[1..])),
    };
    let (dir_only, p) = match p.strip_suffix('/') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    if p.is_empty() {
        return None;
    }
    let anchored = p.contains('/');
    let p = p.strip_prefix('/').unwrap_or(p);
    let glob = if anchored || p.starts_with("**") {
        p.to_owned()
    } else {
        format!("**/{p}")
    };
    Some((glob, Rule { negated, dir_only }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(pats: &[&str], path: &str, dir: bool) -> bool {
        ExcludeSet::new(pats)
            .unwrap()
            .is_excluded(Path::new(path), dir)
    }

    #[test]
    fn gitignore_semantics() {
        // No slash: a name at any depth.
        assert!(ex(&["*.log"], "a.log", false));
        assert!(ex(&["*.log"], "deep/er/a.log", false));
        assert!(!ex(&["*.log"], "a.log.txt", false));
        // Trailing slash: folders only.
        assert!(ex(&["build/"], "x/build", true));
        assert!(!ex(&["build/"], "x/build", false));
        // Leading slash: anchored.
        assert!(ex(&["/top.txt"], "top.txt", false));
        assert!(!ex(&["/top.txt"], "sub/top.txt", false));
        // Slash inside: anchored.
        assert!(ex(&["docs/*.md"], "docs/a.md", false));
        assert!(!ex(&["docs/*.md"], "x/docs/a.md", false));
        assert!(!ex(&["docs/*.md"], "docs/sub/a.md", false));
        // ** spans folders.
        assert!(ex(&["docs/**/*.md"], "docs/sub/deeper/a.md", false));
        assert!(ex(&["**/cache"], "a/b/cache", true));
        // Negation: last match wins.
        assert!(!ex(&["*.log", "!keep.log"], "keep.log", false));
        assert!(ex(&["*.log", "!keep.log"], "other.log", false));
        // Comments and blanks.
        assert!(!ex(&["# *.rs", ""], "main.rs", false));
        // Exact names.
        assert!(ex(
            &["instagram_session.json"],
            "instagram_session.json",
            false
        ));
        assert!(ex(&["temp_processing/"], "temp_processing", true));
    }

    #[test]
    fn defaults_cover_the_original_list() {
        let d = ExcludeSet::new(DEFAULT_EXCLUDES).unwrap();
        assert!(d.is_excluded(Path::new("pkg/__pycache__"), true));
        assert!(d.is_excluded(Path::new("m.pyc"), false));
        assert!(d.is_excluded(Path::new(".git"), true));
        assert!(d.is_excluded(Path::new("x/run.tmp"), false));
        assert!(d.is_excluded(Path::new("x/run.temp"), false));
        assert!(!d.is_excluded(Path::new("app.py"), false));
    }

    #[test]
    fn bad_glob_is_an_error() {
        let err = ExcludeSet::new(["a[b"]).unwrap_err();
        assert_eq!(err.pattern, "a[b");
    }
}
