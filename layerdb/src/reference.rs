//! Image references `name[:tag]` with docker's grammar; the tag defaults
//! to `latest`.

use crate::digest::Digest;
use crate::error::StoreError;
use std::fmt;

/// An image reference, `name:tag`; Display gives that form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// The repository name, with any registry host and port
    /// (`localhost:5000/app`).
    pub name: String,
    /// The tag; `latest` when none was given.
    pub tag: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl Reference {
    /// Parses `name[:tag]` with docker's grammar (a `:` before the last `/` is
    /// a registry port); `BadReference` names `s` when it does not fit.
    pub fn parse(s: &str) -> Result<Reference, StoreError> {
        refuse_image_id(s)?;
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
        RemoteReference::parse(s)?
            .local()
            .ok_or_else(|| StoreError::BadReference(s.to_string()))
    }
}

/// `name@sha256:<hex>`: an image as a repository's manifest digest names
/// it, which docker keeps as the image's RepoDigests. The name is in its
/// familiar form (`busybox`, `127.0.0.1:5000/app`), as tags are.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DigestReference {
    /// The repository, in its familiar form.
    pub name: String,
    /// The manifest's digest in that repository.
    pub digest: Digest,
}

impl fmt::Display for DigestReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:#}", self.name, self.digest)
    }
}

impl DigestReference {
    /// `name@sha256:<64 hex>` in any form docker takes (`docker.io/library/busybox@...`
    /// is `busybox@...`); a tag beside the digest is refused, as it names
    /// nothing more locally.
    pub fn parse(s: &str) -> Result<DigestReference, StoreError> {
        let bad = || StoreError::BadReference(s.to_string());
        let remote = RemoteReference::parse(s)?;
        let digest = remote.digest.as_deref().ok_or_else(bad)?;
        if remote.tag.is_some() || !digest.starts_with("sha256:") {
            return Err(bad());
        }
        Ok(DigestReference {
            name: remote.familiar_name(),
            digest: digest.parse().map_err(|_| bad())?,
        })
    }
}

/// docker/distribution's refusal of a name of 64 lower-case hex digits:
/// it reads as an image id, so a tag of that name could never be looked
/// up (an id is looked up as an id, never as a name).
fn refuse_image_id(s: &str) -> Result<(), StoreError> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(StoreError::BadReference(format!(
            "{s}: invalid repository name, cannot specify 64-byte hexadecimal strings"
        )));
    }
    Ok(())
}

/// docker's name grammar: an optional registry domain, then path
/// components (see `RemoteReference`).
fn valid_name(name: &str) -> bool {
    let (domain, path) = split_domain(name);
    name.len() <= MAX_NAME_LEN && valid_domain(domain) && valid_path(path)
}

/// docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
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

    #[test]
    fn a_name_of_64_hex_digits_is_refused_as_an_image_id_with_a_tag_it_is_not() {
        let hex = "051fc1".repeat(11)[..64].to_string();
        let e = Reference::parse(&hex).expect_err("an id is no name");
        assert!(
            e.to_string()
                .contains("cannot specify 64-byte hexadecimal strings"),
            "{e}"
        );
        // docker's check is of the whole text: with a tag, or shorter, it
        // is a name.
        assert!(Reference::parse(&format!("{hex}:v1")).is_ok());
        assert!(Reference::parse(&hex[..63]).is_ok());
    }
}

// ---- registry references ------------------------------------------
//
// The distribution reference grammar, as docker parses names:
//
//   reference := name [ ":" tag ] [ "@" digest ]
//   name      := [ domain "/" ] path
//   domain    := host [ ":" port ]     host: dns-name | "[" ipv6 "]"
//   path      := component ( "/" component )*
//   component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//
// The first part of a name is a registry domain when it has a `.` or a
// `:`, is `localhost`, or has an uppercase letter; otherwise the name is
// on Docker Hub (`docker.io`), where a one-part path lives under
// `library/`.

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// A reference as a registry is asked for it: domain, repository path and
/// a tag or digest (a digest wins when both are given, as in docker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReference {
    /// `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`.
    pub domain: String,
    /// The repository in that registry: `library/ubuntu`.
    pub path: String,
    /// `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `algorithm:hex`.
    pub digest: Option<String>,
}

impl fmt::Display for RemoteReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl RemoteReference {
    /// Parses and normalizes as docker's `ParseNormalizedNamed` followed
    /// by `TagNameOnly` does.
    pub fn parse(s: &str) -> Result<RemoteReference, StoreError> {
        let bad = |why: &str| {
            StoreError::BadReference(if why.is_empty() {
                s.to_string()
            } else {
                format!("{s}: {why}")
            })
        };
        refuse_image_id(s)?;
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                if !valid_digest(digest) {
                    return Err(bad("invalid digest"));
                }
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(bad("invalid tag"));
            }
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("repository name must not be more than 255 characters"));
        }
        let (domain, path) = split_domain(name);
        if !valid_domain(domain) {
            return Err(bad(""));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        if !valid_path(path) {
            return Err(bad(""));
        }
        let mut domain = domain.to_string();
        let mut path = path.to_string();
        if domain == LEGACY_DOCKER_HUB {
            domain = DOCKER_HUB.to_string();
        }
        if domain == DOCKER_HUB && !path.contains('/') {
            path.insert_str(0, OFFICIAL_PREFIX);
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(RemoteReference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The name as docker shows it: Docker Hub's domain and `library/`
    /// left out.
    pub fn familiar_name(&self) -> String {
        if self.domain != DOCKER_HUB {
            return format!("{}/{}", self.domain, self.path);
        }
        self.path
            .strip_prefix(OFFICIAL_PREFIX)
            .filter(|p| !p.contains('/'))
            .unwrap_or(&self.path)
            .to_string()
    }

    /// The local reference a pull stores: the familiar name and the tag
    /// (`None` for a pull by digest alone).
    pub fn local(&self) -> Option<Reference> {
        self.tag.as_ref().map(|tag| Reference {
            name: self.familiar_name(),
            tag: tag.clone(),
        })
    }

    /// The RepoDigest a pull or push of this repository records for the
    /// manifest `digest`.
    pub fn local_digest(&self, digest: Digest) -> DigestReference {
        DigestReference {
            name: self.familiar_name(),
            digest,
        }
    }

    /// The host (and port) that serves the registry API for the domain.
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.domain
        }
    }

    /// What the manifest is fetched by: the digest when there is one.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("parse gives a tag or a digest")
    }
}

/// docker's `splitDockerDomain`: where the registry domain ends.
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// `host[:port]`, host a DNS name or a bracketed IPv6 address: the
/// reference grammar's domain, which a registry argument must be too.
pub fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.starts_with('[') || h.ends_with(']') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// Path components separated by `/`.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_component)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or a run of `-`.
fn valid_component(part: &str) -> bool {
    let b = part.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// `algorithm:hex`: algorithm components `[A-Za-z][A-Za-z0-9]*` joined by
/// one of `+._-`, at least 32 hex digits.
fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod remote_tests {
    use super::*;

    fn full(s: &str) -> String {
        RemoteReference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_names_are_normalized_as_docker_does() {
        assert_eq!(full("ubuntu"), "docker.io/library/ubuntu:latest");
        assert_eq!(full("ubuntu:22.04"), "docker.io/library/ubuntu:22.04");
        assert_eq!(full("library/ubuntu"), "docker.io/library/ubuntu:latest");
        assert_eq!(full("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(full("docker.io/ubuntu"), "docker.io/library/ubuntu:latest");
        assert_eq!(
            full("index.docker.io/library/ubuntu:1"),
            "docker.io/library/ubuntu:1"
        );
        let hub = RemoteReference::parse("ubuntu").unwrap();
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        assert_eq!(hub.familiar_name(), "ubuntu");
        assert_eq!(
            RemoteReference::parse("docker.io/foo/bar")
                .unwrap()
                .familiar_name(),
            "foo/bar"
        );
    }

    #[test]
    fn the_first_part_is_a_domain_only_with_a_dot_a_colon_localhost_or_uppercase() {
        let r = RemoteReference::parse("127.0.0.1:5000/busybox:1.36").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "busybox", Some("1.36"))
        );
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(r.familiar_name(), "127.0.0.1:5000/busybox");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b/c"), "localhost:5000/a/b/c:latest");
        assert_eq!(full("quay.io/podman/hello"), "quay.io/podman/hello:latest");
        assert_eq!(full("Example.com/app"), "Example.com/app:latest");
        assert_eq!(full("[::1]:5000/app"), "[::1]:5000/app:latest");
        // `localhostx` has no dot or colon: a Docker Hub user.
        assert_eq!(full("localhostx/app"), "docker.io/localhostx/app:latest");
    }

    #[test]
    fn a_digest_is_kept_and_no_tag_is_added() {
        let hex = "a".repeat(64);
        let r = RemoteReference::parse(&format!("busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.tag_or_digest(), format!("sha256:{hex}"));
        assert_eq!(r.local(), None);
        let both = RemoteReference::parse(&format!("busybox:1@sha256:{hex}")).unwrap();
        assert_eq!(both.tag.as_deref(), Some("1"));
        assert_eq!(both.tag_or_digest(), format!("sha256:{hex}"));
        assert!(Reference::parse(&format!("busybox@sha256:{hex}")).is_err());
    }

    #[test]
    fn the_grammar_refuses_what_docker_refuses() {
        let hex = "b".repeat(64);
        for bad in [
            "Ubuntu".to_string(),
            "docker.io/Library/ubuntu".to_string(),
            "a__b_c".replace("_c", "___c"),
            "a._b".to_string(),
            "a/".to_string(),
            "/a".to_string(),
            "host:port/a".to_string(),
            "-host.io/a".to_string(),
            hex.clone(),
            format!("a@sha256:{}", &hex[..31]),
            "a@sha256".to_string(),
            format!("a:{}", "t".repeat(129)),
            format!("{}/a", "h".repeat(254)),
            "a:tag with space".to_string(),
        ] {
            assert!(RemoteReference::parse(&bad).is_err(), "{bad}");
        }
        for good in [
            "a__b",
            "a-----b",
            "a.b_c-d",
            "a0/b1/c2",
            "host.io:443/ns/app:v1.0-rc_2",
            "app:_t",
        ] {
            assert!(RemoteReference::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn digest_references_take_the_familiar_name() {
        let hex = "c".repeat(64);
        let r = DigestReference::parse(&format!("docker.io/library/busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.to_string(), format!("busybox@sha256:{hex}"));
        let r = DigestReference::parse(&format!("127.0.0.1:5000/a/b@sha256:{hex}")).unwrap();
        assert_eq!(r.name, "127.0.0.1:5000/a/b");
        for bad in [
            "busybox".to_string(),
            format!("busybox:1@sha256:{hex}"),
            format!("busybox@sha512:{hex}"),
            format!("busybox@sha256:{}", &hex[..40]),
        ] {
            assert!(DigestReference::parse(&bad).is_err(), "{bad}");
        }
        let remote = RemoteReference::parse("localhost:5000/x:1").unwrap();
        assert_eq!(
            remote.local_digest(Digest([0; 32])).to_string(),
            format!("localhost:5000/x@sha256:{}", "0".repeat(64))
        );
    }

    #[test]
    fn lowercase_error_says_why() {
        let e = RemoteReference::parse("docker.io/Library/x").unwrap_err();
        assert!(e.to_string().contains("must be lowercase"), "{e}");
    }
}
