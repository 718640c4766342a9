//! Image references `name[:tag]` with docker's grammar; the tag defaults
//! to `latest`.

use crate::error::StoreError;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub name: String,
    pub tag: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, StoreError> {
        let bad = || StoreError::BadReference(s.to_string());
        // A ':' after the last '/' starts the tag; one before is a registry port.
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "latest"),
        };
        if !valid_name(name) || !valid_tag(tag) {
            return Err(bad());
        }
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl Reference {
    /// A name another tool wrote, in the short form docker shows:
    /// `docker.io/library/busybox:1` is `busybox:1`, `docker.io/x/y` is
    /// `x/y`; other registries' names stay whole.
    pub fn parse_familiar(s: &str) -> Result<Reference, StoreError> {
        let short = ["docker.io/", "index.docker.io/"]
            .iter()
            .find_map(|host| s.strip_prefix(host))
            .map(|rest| {
                rest.strip_prefix("library/")
                    .filter(|r| !r.contains('/'))
                    .unwrap_or(rest)
            })
            .unwrap_or(s);
        Reference::parse(short)
    }
}

/// Path components of lowercase alphanumerics joined by `.`, `_`, `__` or
/// `-` runs, separated by `/`; the first may be a registry host with a port.
fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/').enumerate().all(|(i, part)| {
        let part = if i == 0 && name.contains('/') {
            part.split(':').next().unwrap_or("")
        } else {
            part
        };
        let b = part.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
            && !part.contains("..")
    })
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_gets_the_latest_tag() {
        assert_eq!(
            Reference::parse("node-base").unwrap().to_string(),
            "node-base:latest"
        );
        assert_eq!(
            Reference::parse("a/b:v1.2").unwrap().to_string(),
            "a/b:v1.2"
        );
        assert_eq!(Reference::parse("localhost:5000/x").unwrap().tag, "latest");
    }

    #[test]
    fn docker_hub_names_take_their_short_form() {
        let short = |s| Reference::parse_familiar(s).unwrap().to_string();
        assert_eq!(short("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(short("docker.io/x/y"), "x/y:latest");
        assert_eq!(short("localhost/bbx:v1"), "localhost/bbx:v1");
        assert!(Reference::parse_familiar("docker.io/library/Bad").is_err());
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "", "UPPER", "a:", ":t", "a b", "a//b", "-a", "a:-t", "a:t:t",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
