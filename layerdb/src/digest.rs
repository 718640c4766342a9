//! sha256 digests: the names of chunks, layers (diff ids) and images.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

/// A sha256 digest. Displays as 64 lowercase hex characters; `{:#}` adds
/// the `sha256:` prefix used in OCI JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 lowercase hex characters (the Display form without `sha256:`).
    pub fn hex(&self) -> String {
        // Every chunk read and write names a file by it: no formatter.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(DIGITS[(b >> 4) as usize] as char);
            s.push(DIGITS[(b & 15) as usize] as char);
        }
        s
    }

    /// The 12-character short form docker prints.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// The digest of everything fed to `h` so far.
    pub fn from_hasher(h: Sha256) -> Digest {
        Digest(h.finalize().into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "sha256:")?;
        }
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// A string that is not a sha256 digest; it holds the string as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {0:?}: expected 64 hex characters, optionally after \"sha256:\"")]
pub struct BadDigest(pub String);

impl FromStr for Digest {
    type Err = BadDigest;
    fn from_str(s: &str) -> Result<Digest, BadDigest> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadDigest(s.to_string()));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| BadDigest(s.to_string()))?;
        }
        Ok(Digest(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(format!("{d:#}").parse::<Digest>().unwrap(), d);
        assert_eq!(d.short(), "2cf24dba5fb0");
    }

    #[test]
    fn digest_rejects_short_or_non_hex_input() {
        assert!("abc".parse::<Digest>().is_err());
        assert!("z".repeat(64).parse::<Digest>().is_err());
    }
}
