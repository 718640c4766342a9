//! Overlay-format markers in host directories (the upper and directory
//! layers): how a deletion and an opaque directory are written down.
//!
//! - A whiteout for `name` is, as kernel overlayfs writes it, a 0/0
//!   character device named `name` (strata writes this form where it may
//!   make devices), or a file `.wh.<name>` (the rootless form).
//! - An opaque directory carries `trusted.overlay.opaque="y"` or
//!   `user.overlay.opaque="y"` (see [`crate::upper_format`] for which strata
//!   writes), or holds a `.wh..wh..opq` file.
//!
//! - A directory renamed with its lower content left in place (kernel
//!   overlayfs's `redirect_dir=on`) carries `trusted.overlay.redirect` or
//!   `user.overlay.redirect`: where the layers below keep its content,
//!   `/a/b` from the layer root (a move across directories) or a bare
//!   name in the same parent (a rename within one directory). Its old
//!   name has a whiteout.
//!
//! Names starting with `.wh.` are therefore never container files: they are
//! hidden from listings and refused on creation.

/// The OCI names (`.wh.NAME` hides `NAME`, `.wh..wh..opq` makes its
/// directory opaque) are layerdb's, the layer format's home; a rootless
/// upper uses them too.
pub use layerdb::oci::{OPAQUE_MARKER, WHITEOUT_PREFIX};
/// Opaque xattrs strata honours when reading.
pub const OPAQUE_XATTRS: [&[u8]; 2] = [b"user.overlay.opaque", b"trusted.overlay.opaque"];

/// Redirect xattrs strata honours when reading.
pub const REDIRECT_XATTRS: [&[u8]; 2] = [b"user.overlay.redirect", b"trusted.overlay.redirect"];

/// Longest redirect strata writes: kernel overlayfs's default
/// `redirect_max` (longer ones, it moves the content instead).
pub const REDIRECT_MAX: usize = 256;

/// True for a redirect value that stays inside the layers: a bare name, or
/// `/`-separated names after a leading `/`; never empty, `.` or `..`
/// names, as kernel overlayfs checks.
pub fn is_valid_redirect(value: &[u8]) -> bool {
    let good = |n: &[u8]| !n.is_empty() && n != b"." && n != b".." && !n.contains(&0);
    match value.strip_prefix(b"/") {
        Some(abs) => abs.split(|&b| b == b'/').all(good),
        None => good(value) && !value.contains(&b'/'),
    }
}

/// Prefix of temporary names the upper uses while copying up: a `.wh.` name,
/// so a leftover from a crash never shows in the container.
pub const TMP_PREFIX: &[u8] = b".wh..strata-tmp.";

/// True for the opaque marker and temporary files: bookkeeping that neither
/// shows nor hides anything.
pub fn is_marker(file_name: &[u8]) -> bool {
    file_name == OPAQUE_MARKER || file_name.starts_with(TMP_PREFIX)
}

/// The name a `.wh.<name>` file hides; `None` for ordinary names and for
/// markers.
pub fn hidden_name(file_name: &[u8]) -> Option<&[u8]> {
    if is_marker(file_name) {
        return None;
    }
    file_name
        .strip_prefix(WHITEOUT_PREFIX)
        .filter(|n| !n.is_empty())
}

/// `.wh.<name>`
pub fn whiteout_name(name: &[u8]) -> Vec<u8> {
    [WHITEOUT_PREFIX, name].concat()
}

/// Longest file name the host accepts (NAME_MAX on Linux filesystems).
pub const NAME_MAX: usize = 255;

/// True when `name` has a `.wh.<name>` form the host can hold. Longer names
/// (up to NAME_MAX) are valid container names that simply cannot have a
/// whiteout file: no lookup needs to look for one.
pub fn whiteout_fits(name: &[u8]) -> bool {
    name.len() + WHITEOUT_PREFIX.len() <= NAME_MAX
}

/// True for names reserved by the overlay format.
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names_hide_the_stripped_name_but_the_opaque_marker_hides_none() {
        assert_eq!(hidden_name(b".wh.foo"), Some(&b"foo"[..]));
        assert_eq!(hidden_name(OPAQUE_MARKER), None);
        assert_eq!(hidden_name(b"foo"), None);
        assert_eq!(whiteout_name(b"foo"), b".wh.foo");
    }

    #[test]
    fn redirects_name_places_inside_the_layers_only() {
        for ok in [&b"share"[..], b"/usr/share", b"/a"] {
            assert!(is_valid_redirect(ok), "{ok:?}");
        }
        for bad in [
            &b""[..],
            b"/",
            b"a/b",
            b"/usr//share",
            b"/usr/../etc",
            b"..",
            b"/a/",
        ] {
            assert!(!is_valid_redirect(bad), "{bad:?}");
        }
    }
}
