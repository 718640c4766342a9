//! Renaming a directory that has lower content without copying it: the
//! directory alone is copied up and records where its lower content is,
//! as kernel overlayfs does with `redirect_dir=on` (see `crate::whiteout`
//! for the marker, `crate::union` for how lookups follow it).

use super::UnionFs;
use crate::error::Result;
use crate::union::Resolved;
use crate::whiteout::REDIRECT_MAX;
use layerdb::split_path;

impl UnionFs {
    /// The redirect directory `from` (resolved as `src`) takes before it
    /// moves (`same_dir`: within its directory), or `None` when it has no
    /// lower content (moved as it is) or the redirect would be longer than
    /// kernel overlayfs's `redirect_max` (its content is copied instead).
    ///
    /// As the kernel decides: a redirect it has already stands if the move
    /// is within the directory or the redirect is absolute; else a rename
    /// within the directory records the old name, and a move across
    /// directories the absolute path of the lower content, built from the
    /// names (or redirects) of the directory and its ancestors up to the
    /// root or to an ancestor with an absolute redirect.
    pub(super) fn redirect_for(
        &self,
        from: &[u8],
        src: &Resolved,
        same_dir: bool,
    ) -> Result<Option<Vec<u8>>> {
        let upper_layer = |layer: usize| self.layers.has_upper() && layer == 0;
        if !src.is_dir() || src.dir_layers.iter().all(|d| upper_layer(d.layer)) {
            return Ok(None);
        }
        let own = |r: &Resolved| {
            if upper_layer(r.layer) && !r.node.entry.opaque {
                r.node.redirect.as_deref().cloned()
            } else {
                None
            }
        };
        let existing = own(src);
        if let Some(r) = &existing {
            if same_dir || r.starts_with(b"/") {
                return Ok(Some(r.clone()));
            }
        }
        if same_dir {
            return Ok(Some(split_path(from).1.to_vec()));
        }
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut at = from.to_vec();
        let mut redirect = existing;
        while !at.is_empty() {
            let (parent, name) = split_path(&at);
            match redirect {
                Some(r) if r.starts_with(b"/") => {
                    parts.push(r[1..].to_vec());
                    break;
                }
                Some(r) => parts.push(r),
                None => parts.push(name.to_vec()),
            }
            at = parent.to_vec();
            redirect = if at.is_empty() {
                None
            } else {
                own(&self.layers.get(&at)?)
            };
        }
        parts.reverse();
        let value = [b"/".as_slice(), &parts.join(&b'/')].concat();
        Ok((value.len() <= REDIRECT_MAX).then_some(value))
    }
}
