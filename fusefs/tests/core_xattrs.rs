//! Extended attributes, driven on the union core without a mount: the
//! container's own are copied up and recorded under the format's names;
//! the union's bookkeeping never shows and cannot be set.

mod common;

use std::os::unix::fs::MetadataExt;

use common::fixture::{errno, for_each_setup, formats, writer, Fx, Item, LowerKind, Setup};

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

/// The kernel asks a file for `security.capability` before its first
/// write: the union keeps a lower file's resolution from one request for
/// the next while nothing changed (see `last_lower`), and a change in
/// between must not leave the next request with the lower file.
#[test]
fn a_lower_file_read_before_a_change_is_read_again_after_it() {
    for_each_setup(LOWER, |fx| {
        let id = fx.id("d/f");
        assert_eq!(
            errno(fx.fs.getxattr(id, b"security.capability")),
            libc::ENODATA
        );
        fx.fs
            .setxattr(id, b"user.k", b"v1", 0, &writer())
            .expect("setxattr");
        assert_eq!(fx.fs.getxattr(id, b"user.k").expect("getxattr"), b"v1");
        // A handle-less write (the mount answers OPEN with ENOSYS) finds
        // the copy the setxattr made, not the lower file to copy up again
        // over it.
        fx.fs.write(id, None, 1, b"g", &writer()).expect("write");
        assert_eq!(fx.upper_bytes("d/f"), b"fg");
        assert_eq!(fx.fs.getxattr(id, b"user.k").expect("getxattr"), b"v1");
        assert_eq!(fx.upper_xattr("d/f", "user.k"), Some(b"v1".to_vec()));
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

/// An image may carry xattrs named like the union's own records: an
/// owner and mode (`user.containers.override_stat`), a stable inode, an
/// opaque mark. None of them shows, can be removed, or survives a
/// copy-up as a record: a file an ordinary user may write, made to look
/// root's and setuid, stays what its entry says after the user writes it.
#[test]
fn an_images_xattrs_named_like_the_unions_records_are_never_taken_as_them() {
    let lower = &[
        Item::Dir("d", 0o755),
        Item::File("d/evil", b"#!/bin/sh\n", 0o755),
        Item::Xattr("d/evil", "user.containers.override_stat", b"0:0:04755:file"),
        Item::Xattr("d/evil", "user.strata.ino", b"12345"),
        Item::Xattr("d/evil", "trusted.overlay.opaque", b"y"),
        Item::Xattr("d/evil", "user.k", b"v"),
    ];
    for_each_setup(lower, |fx| {
        let before = fx.stat("d/evil");
        let id = fx.id("d/evil");
        assert_eq!(fx.fs.listxattr(id).expect("listxattr"), b"user.k\0");
        for name in ["user.containers.override_stat", "user.strata.ino"] {
            assert_eq!(errno(fx.fs.getxattr(id, name.as_bytes())), libc::ENODATA);
            assert_eq!(errno(fx.fs.removexattr(id, name.as_bytes())), libc::EPERM);
        }
        fx.write("d/evil", 10, b"echo hi\n");
        let after = fx.stat("d/evil");
        let shown = |n: &fusefs::Node| (n.entry.uid, n.entry.gid, n.entry.mode & 0o7777);
        assert_eq!(
            shown(&after),
            shown(&before),
            "owner and mode after the copy-up"
        );
        assert_ne!(after.ino & 0xffff_ffff, 12345, "the image's inode number");
        let id = fx.id("d/evil");
        assert_eq!(fx.fs.listxattr(id).expect("listxattr"), b"user.k\0");
    });
}

/// A directory layer's `user.containers.override_stat` on a file says its
/// owner and mode only when the layer's root carries one too, as
/// fuse-overlayfs decides per layer (containers-storage marks a layer it
/// wrote so): a layer extracted from an image keeps the xattrs the image
/// gave its files, and one could make a file look root's and setuid.
#[test]
fn a_lowers_override_stat_counts_only_in_a_layer_marked_so_at_its_root() {
    let items: &[Item] = &[Item::Dir("d", 0o755), Item::File("d/evil", b"x", 0o755)];
    for format in formats() {
        let setup = Setup {
            lower: LowerKind::Dir,
            format,
        };
        let mut fx = Fx::new(setup, &[items]);
        let file = fx.lower_path(0, "d/evil").expect("a host lower");
        let mine = std::fs::metadata(&file).expect("stat").uid();
        xattr::set(&file, "user.containers.override_stat", b"0:0:04755:file").expect("setxattr");
        fx.remount();
        let shown = fx.stat("d/evil").entry;
        assert_eq!(
            (shown.uid, shown.mode & 0o7777),
            (mine, 0o755),
            "{format:?}"
        );
        let root = fx.lower_path(0, "").expect("a host lower");
        xattr::set(&root, "user.containers.override_stat", b"0:0:0755:dir").expect("setxattr");
        fx.remount();
        let shown = fx.stat("d/evil").entry;
        assert_eq!((shown.uid, shown.mode & 0o7777), (0, 0o4755), "{format:?}");
    }
}
