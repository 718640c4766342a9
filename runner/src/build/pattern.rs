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
        let mut excluded = false;
        for (pattern, exception) in &self.rules {
            let hit = pattern.matches(path)
                || path
                    .match_indices('/')
                    .any(|(at, _)| pattern.matches(&path[..at]));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }
}

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
    fn relative_paths_are_cleaned() {
        assert_eq!(clean_relative("./a//b/../c").as_deref(), Some("a/c"));
        assert_eq!(clean_relative("/a/b").as_deref(), Some("a/b"));
        assert_eq!(clean_relative("a/../..").as_deref(), None);
        assert_eq!(clean_relative(".").as_deref(), Some(""));
    }
}
