//! Path patterns as docker reads them: Go's `filepath.Match` for COPY's
//! sources (`*` and `?` within one name, `[...]` classes, `\` escapes),
//! and `.dockerignore`'s, which add `**` for any number of directories
//! (moby's patternmatcher).

use anyhow::{bail, Result};
use regex::Regex;

/// A pattern, matched against whole `/`-separated relative paths.
#[derive(Debug)]
pub struct Pattern(Regex);

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern> {
        let mut re = String::from("^");
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                        re.push_str("(?:.*/)?");
                    } else {
                        re.push_str(".*");
                    }
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => {
                    re.push('[');
                    if chars.peek() == Some(&'^') {
                        chars.next();
                        re.push('^');
                    }
                    let mut closed = false;
                    let mut empty = true;
                    while let Some(c) = chars.next() {
                        match c {
                            ']' if !empty => {
                                closed = true;
                                break;
                            }
                            '\\' => match chars.next() {
                                Some(escaped) => re.push_str(&regex::escape(&escaped.to_string())),
                                None => bail!("syntax error in pattern {pattern:?}"),
                            },
                            '-' => re.push('-'),
                            c => re.push_str(&regex::escape(&c.to_string())),
                        }
                        empty = false;
                    }
                    if !closed {
                        bail!("syntax error in pattern {pattern:?}");
                    }
                    re.push(']');
                }
                '\\' => match chars.next() {
                    Some(escaped) => re.push_str(&regex::escape(&escaped.to_string())),
                    None => bail!("syntax error in pattern {pattern:?}"),
                },
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        match Regex::new(&re) {
            Ok(regex) => Ok(Pattern(regex)),
            Err(_) => bail!("syntax error in pattern {pattern:?}"),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

/// Whether `path` holds a wildcard (then COPY matches it against the
/// context's files).
pub fn has_wildcards(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// A path cleaned as Go's `filepath.Clean` cleans a relative one (no `.`,
/// no empty names, `..` taken off the name before it), without a leading
/// `/`. `None` when a `..` would climb above the start.
pub fn clean_relative(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// `.dockerignore`: which paths of the context the build does not see.
#[derive(Debug, Default)]
pub struct Ignore {
    /// In file order; `true` for a `!` exception.
    rules: Vec<(Pattern, bool)>,
}

impl Ignore {
    /// Reads the file's text: a pattern per line, `#` comments, `!` for
    /// an exception; the last rule to match a path, or a directory
    /// holding it, decides.
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            // Paths climbing out of the context are left as they are
            // cleaned: `..` at the top goes.
            let mut parts: Vec<&str> = Vec::new();
            for part in pattern.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    part => parts.push(part),
                }
            }
            if parts.is_empty() {
                continue;
            }
            rules.push((Pattern::new(&parts.join("/"))?, exception));
        }
        Ok(Ignore { rules })
    }

    /// Whether a `!` rule could bring back something under a directory
    /// that is left out (then a walk must still look inside it).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, exception)| *exception)
    }

    /// Whether `path` (relative, cleaned) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        self.excluded_by(&self.hits(path))
    }

    /// The rules that match `path` or a directory above it; none for
    /// the context's root (`""`), which is never left out.
    pub fn hits(&self, path: &str) -> Hits {
        let mut hits = Hits(vec![false; self.rules.len()]);
        if path.is_empty() {
            return hits;
        }
        for (at, _) in path.match_indices('/').chain([(path.len(), "")]) {
            hits = self.hits_below(&path[..at], &hits);
        }
        hits
    }

    /// The rules that match `path` or a directory above it, given those of
    /// its directory: a walk tests each rule once per entry this way,
    /// where testing each directory above every entry again made a
    /// context 2,000 directories deep cost minutes.
    pub fn hits_below(&self, path: &str, above: &Hits) -> Hits {
        let rules = self.rules.iter().zip(&above.0);
        Hits(
            rules
                .map(|((pattern, _), &above)| above || pattern.matches(path))
                .collect(),
        )
    }

    /// Whether a path with these hits is left out: the last rule that
    /// matches it, or a directory holding it, decides.
    pub fn excluded_by(&self, hits: &Hits) -> bool {
        self.rules
            .iter()
            .zip(&hits.0)
            .rfind(|(_, &hit)| hit)
            .is_some_and(|((_, exception), _)| !exception)
    }
}

/// Which of an [`Ignore`]'s rules match a path or a directory above it.
#[derive(Debug)]
pub struct Hits(Vec<bool>);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Pattern::new(pattern).unwrap().matches(path)
    }

    #[test]
    fn go_match_rules() {
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "dir/a.txt"));
        assert!(m("dir/*.txt", "dir/a.txt"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
        assert!(Pattern::new("[ab").is_err());
    }

    #[test]
    fn double_star_crosses_directories() {
        assert!(m("**/*.go", "a.go"));
        assert!(m("**/*.go", "x/y/a.go"));
        assert!(m("x/**", "x/y/z"));
        assert!(!m("x/**/z", "y/z"));
    }

    #[test]
    fn dockerignore_rules() {
        let ignore =
            Ignore::parse("# comment\n\nnode_modules\n*.log\n!keep.log\n/tmp/\n./build/**\n")
                .unwrap();
        assert!(ignore.excludes("node_modules"));
        assert!(ignore.excludes("node_modules/a/b.js"));
        assert!(ignore.excludes("x.log"));
        assert!(!ignore.excludes("keep.log"));
        assert!(
            !ignore.excludes("dir/x.log"),
            "a pattern without ** stays at the top"
        );
        assert!(ignore.excludes("tmp/file"));
        assert!(ignore.excludes("build/out/a"));
        assert!(!ignore.excludes("src/main.rs"));
    }

    #[test]
    fn an_exception_under_an_excluded_directory_brings_it_back() {
        let ignore = Ignore::parse("docs\n!docs/README.md\n").unwrap();
        assert!(ignore.excludes("docs/other.md"));
        assert!(!ignore.excludes("docs/README.md"));
    }

    #[test]
    fn hits_carried_down_a_walk_decide_as_every_directory_above_would() {
        let text = "a\n!a/b\n**/c\n!**/c/keep\nd/*/e\n";
        let ignore = Ignore::parse(text).unwrap();
        // docker's rule, spelled out: the last rule matching the path or
        // a directory above it decides.
        let oracle = |path: &str| {
            let mut excluded = false;
            for line in text.lines() {
                let (exception, pattern) = match line.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, line),
                };
                let pattern = Pattern::new(pattern).unwrap();
                let above = path
                    .match_indices('/')
                    .any(|(at, _)| pattern.matches(&path[..at]));
                if above || pattern.matches(path) {
                    excluded = !exception;
                }
            }
            excluded
        };
        for path in ["a/b/c/keep/x", "d/x/e/f", "x/c/keep", "a/bb", "z/y/c/w"] {
            let mut hits = ignore.hits("");
            let mut at = 0;
            for part in path.split('/') {
                at += part.len();
                let prefix = &path[..at];
                hits = ignore.hits_below(prefix, &hits);
                assert_eq!(ignore.excluded_by(&hits), oracle(prefix), "{prefix}");
                assert_eq!(ignore.excludes(prefix), oracle(prefix), "{prefix}");
                at += 1;
            }
        }
    }

    #[test]
    fn relative_paths_are_cleaned() {
        assert_eq!(clean_relative("./a//b/../c").as_deref(), Some("a/c"));
        assert_eq!(clean_relative("/a/b").as_deref(), Some("a/b"));
        assert_eq!(clean_relative("a/../..").as_deref(), None);
        assert_eq!(clean_relative(".").as_deref(), Some(""));
    }
}
