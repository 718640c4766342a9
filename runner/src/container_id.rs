//! Container ids: 64 lower-case hex digits, random. An id becomes a path
//! (the container's directory, its cgroup, its network lease), so a
//! [`ContainerId`] is checked once, when it is made or parsed, and can be
//! used as a path component from then on.

use std::fmt;
use std::str::FromStr;

/// A container's id, known to be 64 lower-case hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerId(String);

impl ContainerId {
    /// A new random id, as docker makes them.
    pub fn random() -> ContainerId {
        let bytes: [u8; 32] = rand::random();
        ContainerId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, as docker shows an id (and names a host).
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text is no container id; Display names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidContainerId(String);

impl fmt::Display for InvalidContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid container id {:?}: expected 64 lower-case hex digits",
            self.0
        )
    }
}

impl std::error::Error for InvalidContainerId {}

impl FromStr for ContainerId {
    type Err = InvalidContainerId;

    fn from_str(text: &str) -> Result<ContainerId, InvalidContainerId> {
        if layerdb::container::valid_container_id(text) {
            Ok(ContainerId(text.to_owned()))
        } else {
            Err(InvalidContainerId(text.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_64_lower_case_hex_digits() {
        assert!("a".repeat(64).parse::<ContainerId>().is_ok());
        assert!("A".repeat(64).parse::<ContainerId>().is_err());
        assert!("../../etc".parse::<ContainerId>().is_err());
        assert!("a".repeat(63).parse::<ContainerId>().is_err());
    }

    #[test]
    fn a_random_id_is_valid_and_shortens_to_12_digits() {
        let id = ContainerId::random();
        assert_eq!(id.as_str().parse::<ContainerId>(), Ok(id.clone()));
        assert_eq!(id.short(), &id.as_str()[..12]);
    }
}
