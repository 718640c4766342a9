//! The hardlinks of a layer being built, by the path they name: a second
//! entry for a path asks whether a link names it (or, when a directory
//! goes, anything under it) once per entry, so the answer must not cost
//! a walk over the whole layer (a tar repeating one path after 80,000
//! files took minutes of CPU that way).

use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct LinkTargets {
    /// Target path → the links naming it.
    by_target: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>,
}

impl LinkTargets {
    pub(super) fn add(&mut self, link: &[u8], target: &[u8]) {
        self.by_target
            .entry(target.to_vec())
            .or_default()
            .insert(link.to_vec());
    }

    /// The link at `link` is gone (replaced, or under a directory that went).
    pub(super) fn remove(&mut self, link: &[u8], target: &[u8]) {
        if let Some(links) = self.by_target.get_mut(target) {
            links.remove(link);
            if links.is_empty() {
                self.by_target.remove(target);
            }
        }
    }

    /// A link naming `path`, or with `subtree`, naming anything under it:
    /// `(link, target)`.
    pub(super) fn naming(&self, path: &[u8], subtree: bool) -> Option<(&[u8], &[u8])> {
        fn first<'a>(
            (target, links): (&'a Vec<u8>, &'a BTreeSet<Vec<u8>>),
        ) -> Option<(&'a [u8], &'a [u8])> {
            links.first().map(|l| (l.as_slice(), target.as_slice()))
        }
        if let Some(found) = self.by_target.get_key_value(path).and_then(first) {
            return Some(found);
        }
        if !subtree {
            return None;
        }
        let prefix = [path, b"/"].concat();
        self.by_target
            .range(prefix.clone()..)
            .take_while(|(t, _)| t.starts_with(&prefix))
            .find_map(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_found_by_its_target_or_a_directory_above_it_until_removed() {
        let mut t = LinkTargets::default();
        t.add(b"l", b"d/f");
        assert_eq!(t.naming(b"d/f", false), Some((&b"l"[..], &b"d/f"[..])));
        assert_eq!(t.naming(b"d", false), None);
        assert_eq!(t.naming(b"d", true), Some((&b"l"[..], &b"d/f"[..])));
        // "d0" sorts between "d" and "d/f"'s neighbours: not under "d".
        assert_eq!(t.naming(b"d0", true), None);
        t.remove(b"l", b"d/f");
        assert_eq!(t.naming(b"d", true), None);
    }
}
