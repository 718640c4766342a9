//! `docker images PATTERN`: which of an image's references a pattern
//! keeps, as docker's reference filter decides (distribution's
//! `reference.FamiliarMatch`): the pattern is matched, as Go's `path.Match`
//! matches, against the familiar reference (`busybox:1.36`,
//! `localhost:5000/app@sha256:...`) and then against its name alone
//! (`busybox`). Hand-written: docker's exact glob rules decide what is
//! listed (`*` stops at `/`, `[^...]` negates, a malformed pattern is an
//! error), and no crate's glob has them.

use anyhow::{bail, Result};

/// A pattern of `strata images` (`REPOSITORY[:TAG]`, globs allowed).
#[derive(Debug)]
pub struct ReferenceFilter(Vec<char>);

impl ReferenceFilter {
    /// The pattern, checked whole: docker refuses a malformed one
    /// ("syntax error in pattern") whatever it would be matched against.
    pub fn new(pattern: &str) -> Result<ReferenceFilter> {
        let p: Vec<char> = pattern.chars().collect();
        if !well_formed(&p) {
            bail!("invalid reference filter {pattern:?}: syntax error in pattern");
        }
        Ok(ReferenceFilter(p))
    }

    /// Whether the filter keeps `familiar`, a stored reference
    /// (`name:tag` or `name@digest`, the name in its familiar form).
    pub fn keeps(&self, familiar: &str) -> bool {
        let name = match familiar.split_once('@') {
            Some((name, _)) => name,
            None => familiar.rsplit_once(':').map_or(familiar, |(n, _)| n),
        };
        [familiar, name]
            .iter()
            .any(|s| matches(&self.0, &s.chars().collect::<Vec<_>>()))
    }
}

/// Go's `path.Match` on a pattern [`well_formed`] accepted.
fn matches(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        // Any run of characters other than '/', the shortest first.
        Some('*') => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != '/')
            .any(|i| matches(&p[1..], &s[i..])),
        Some('?') => s.first().is_some_and(|&c| c != '/') && matches(&p[1..], &s[1..]),
        Some('[') => match (s.first(), class(&p[1..])) {
            (Some(&c), Some((hit, rest))) => hit(c) && matches(rest, &s[1..]),
            _ => false,
        },
        Some('\\') => p.get(1).is_some_and(|c| s.first() == Some(c)) && matches(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && matches(&p[1..], &s[1..]),
    }
}

/// One character of a class, escapes taken: `None` for what Go's
/// `getEsc` refuses (the end, a lone `\`, or an unescaped `-` or `]`).
fn class_char(p: &[char]) -> Option<(char, &[char])> {
    match p {
        ['\\', c, rest @ ..] => Some((*c, rest)),
        ['\\'] | [] | ['-' | ']', ..] => None,
        [c, rest @ ..] => Some((*c, rest)),
    }
}

/// The class after a `[`: a test for one character and the pattern after
/// its `]`, or `None` when malformed (empty, unclosed, a bad range).
fn class(p: &[char]) -> Option<(impl Fn(char) -> bool, &[char])> {
    let (negated, mut p) = match p.first() {
        Some('^') => (true, &p[1..]),
        _ => (false, p),
    };
    let mut ranges = Vec::new();
    loop {
        if let (Some(']'), false) = (p.first(), ranges.is_empty()) {
            let hit = move |c: char| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated;
            return Some((hit, &p[1..]));
        }
        let (lo, rest) = class_char(p)?;
        let (hi, rest) = match rest.first() {
            Some('-') => class_char(&rest[1..])?,
            _ => (lo, rest),
        };
        ranges.push((lo, hi));
        p = rest;
    }
}

/// Whether Go's `path.Match` would take the pattern (no ErrBadPattern).
fn well_formed(p: &[char]) -> bool {
    match p.first() {
        None => true,
        Some('\\') => p.len() > 1 && well_formed(&p[2..]),
        Some('[') => class(&p[1..]).is_some_and(|(_, rest)| well_formed(rest)),
        Some(_) => well_formed(&p[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(pattern: &str, familiar: &str) -> bool {
        ReferenceFilter::new(pattern).unwrap().keeps(familiar)
    }

    #[test]
    fn a_name_keeps_every_tag_and_digest_of_it() {
        assert!(keeps("busybox", "busybox:1.36"));
        assert!(keeps("busybox", "busybox@sha256:abcd"));
        assert!(keeps("busybox:1.36", "busybox:1.36"));
        assert!(!keeps("busybox:1.36", "busybox:latest"));
        assert!(!keeps("busybox:1.36", "busybox@sha256:abcd"));
        assert!(keeps("busybox@sha256:abcd", "busybox@sha256:abcd"));
        assert!(!keeps("busy", "busybox:1.36"));
        assert!(keeps("localhost:5000/app", "localhost:5000/app:v1"));
        assert!(!keeps("localhost:5000", "localhost:5000/app:v1"));
        // Familiar forms only, as docker compares them.
        assert!(!keeps("docker.io/library/busybox", "busybox:1.36"));
    }

    #[test]
    fn globs_match_as_gos_path_match_does() {
        assert!(keeps("busy*", "busybox:1.36"));
        assert!(keeps("*", "busybox:1.36"));
        assert!(!keeps("*", "me/app:v1"), "* stops at /");
        assert!(keeps("me/*", "me/app:v1"));
        assert!(keeps("*/*", "me/app:v1"));
        assert!(keeps("busybox:1.3?", "busybox:1.36"));
        assert!(keeps("busybox:[0-9]*", "busybox:1.36"));
        assert!(!keeps("busybox:[^0-9]*", "busybox:1.36"));
        assert!(keeps("busybox:[^0-9]*", "busybox:latest"));
        assert!(keeps(r"busybox:1\.36", "busybox:1.36"));
        assert!(keeps("localhost:5000/*", "localhost:5000/app:v1"));
        assert!(!keeps("[a]", "b:1"));
    }

    #[test]
    fn a_malformed_pattern_is_refused() {
        for bad in ["[", "busy[", "[]", "[a-]", "[-a]", "a\\", "[^]", "x[a"] {
            let e = ReferenceFilter::new(bad).unwrap_err().to_string();
            assert!(e.contains("syntax error in pattern"), "{bad}: {e}");
        }
        for good in ["", "a", "[a]", "[a-z]", r"[\-]", r"[\]]", "[^a]", "a*b?c"] {
            ReferenceFilter::new(good).unwrap();
        }
    }
}
