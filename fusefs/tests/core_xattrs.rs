//! Extended attributes, driven on the union core without a mount: the
//! container's own are copied up and recorded under the format's names;
//! the union's bookkeeping never shows and cannot be set.

mod common;

use common::fixture::{errno, for_each_setup, writer, Item};

const LOWER: &[Item] = &[Item::Dir("d", 0o755), Item::File("d/f", b"f", 0o644)];

#[test]
fn setting_an_xattr_on_a_lower_file_copies_it_up_and_records_it() {
    for_each_setup(LOWER, |fx| {
        let id = fx.id("d/f");
        fx.fs
            .setxattr(id, b"user.k", b"v1", 0, &writer())
            .expect("setxattr");
        assert_eq!(fx.fs.getxattr(id, b"user.k").expect("getxattr"), b"v1");
        assert_eq!(fx.upper_xattr("d/f", "user.k"), Some(b"v1".to_vec()));
        assert_eq!(fx.upper_bytes("d/f"), b"f");
        // Only the container's names are listed, whatever the upper
        // records beside them (override_stat, the stable inode number...).
        assert_eq!(fx.fs.listxattr(id).expect("listxattr"), b"user.k\0");
        fx.fs.removexattr(id, b"user.k").expect("removexattr");
        assert_eq!(errno(fx.fs.getxattr(id, b"user.k")), libc::ENODATA);
        assert_eq!(fx.upper_xattr("d/f", "user.k"), None);
        assert_eq!(fx.fs.listxattr(id).expect("listxattr"), b"");
    });
}

#[test]
fn xattr_flags_and_reserved_names_are_refused_as_the_kernel_refuses_them() {
    for_each_setup(LOWER, |fx| {
        let id = fx.id("d/f");
        fx.fs
            .setxattr(id, b"user.k", b"v", 0, &writer())
            .expect("setxattr");
        let create = libc::XATTR_CREATE;
        let replace = libc::XATTR_REPLACE;
        assert_eq!(
            errno(fx.fs.setxattr(id, b"user.k", b"w", create, &writer())),
            libc::EEXIST
        );
        assert_eq!(
            errno(fx.fs.setxattr(id, b"user.no", b"w", replace, &writer())),
            libc::ENODATA
        );
        assert_eq!(errno(fx.fs.removexattr(id, b"user.no")), libc::ENODATA);
        for private in [
            "user.overlay.opaque",
            "trusted.overlay.opaque",
            "user.strata.ino",
        ] {
            let r = fx.fs.setxattr(id, private.as_bytes(), b"y", 0, &writer());
            assert_eq!(errno(r), libc::EPERM, "{private}");
        }
        let r = fx.fs.getxattr(id, b"security.selinux");
        assert_eq!(errno(r), libc::EOPNOTSUPP);
        assert_eq!(fx.fs.getxattr(id, b"user.k").expect("getxattr"), b"v");
    });
}

#[test]
fn an_opaque_directory_does_not_show_its_marker_as_an_xattr() {
    let lower = &[Item::Dir("d", 0o755), Item::File("d/x", b"x", 0o644)];
    for_each_setup(lower, |fx| {
        fx.unlink("d/x").expect("unlink");
        fx.rmdir("d").expect("rmdir");
        let d = fx.mkdir("d", 0o755).expect("mkdir");
        assert!(fx.opaque_in_upper("d"));
        assert_eq!(fx.fs.listxattr(d).expect("listxattr"), b"");
    });
}
