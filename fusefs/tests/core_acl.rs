//! POSIX ACLs, driven on the union core without a mount: a directory's
//! default ACL passes to new nodes limited by the mode asked for, chmod
//! keeps an access ACL in step, and the upper records both.

mod common;

use common::fixture::{caller, errno, for_each_setup, writer, Fx, Item};

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// The id the kernel sends for entries that name no user or group.
const NO_ID: u32 = u32::MAX;

/// An ACL in the xattr form the kernel sends: version 2, then (tag, perm,
/// id) entries sorted by tag.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// `user::rwx user:1234:rwx group::r-x mask::rwx other::r-x`
fn shared_default() -> Vec<u8> {
    acl(&[
        (USER_OBJ, 7, NO_ID),
        (USER, 7, 1234),
        (GROUP_OBJ, 5, NO_ID),
        (MASK, 7, NO_ID),
        (OTHER, 5, NO_ID),
    ])
}

const LOWER: &[Item] = &[Item::Dir("shared", 0o775), Item::File("plain", b"p", 0o644)];

fn set_default_acl(fx: &Fx) {
    let dir = fx.id("shared");
    fx.fs
        .setxattr(dir, DEFAULT.as_bytes(), &shared_default(), 0, &writer())
        .expect("setfacl -d");
}

fn getxattr(fx: &Fx, path: &str, name: &str) -> Vec<u8> {
    fx.fs
        .getxattr(fx.id(path), name.as_bytes())
        .unwrap_or_else(|e| panic!("getxattr {name} of /{path}: {e}"))
}

fn create(fx: &Fx, path: &str, mode: u32) {
    let (dir, name) = fx.parent(path);
    let (_, fh) = fx
        .fs
        .create(dir, name, mode, (libc::O_RDWR, true), caller())
        .expect("create");
    fx.fs.release(fh.expect("create with a handle gives one"));
}

#[test]
fn a_default_acl_passes_to_a_new_file_limited_by_the_mode_asked_for() {
    for_each_setup(LOWER, |fx| {
        set_default_acl(fx);
        assert_eq!(fx.upper_xattr("shared", DEFAULT), Some(shared_default()));

        create(fx, "shared/f", 0o640);
        // Owner rw- and other --- from the mode; the group class (the mask)
        // r--, so user 1234's rwx is only r-- in effect.
        let want = acl(&[
            (USER_OBJ, 6, NO_ID),
            (USER, 7, 1234),
            (GROUP_OBJ, 5, NO_ID),
            (MASK, 4, NO_ID),
            (OTHER, 0, NO_ID),
        ]);
        assert_eq!(fx.stat("shared/f").entry.mode, 0o640);
        assert_eq!(getxattr(fx, "shared/f", ACCESS), want);
        assert_eq!(
            errno(fx.fs.getxattr(fx.id("shared/f"), DEFAULT.as_bytes())),
            libc::ENODATA
        );
        assert_eq!(fx.upper_mode("shared/f"), 0o640);
        assert_eq!(fx.upper_xattr("shared/f", ACCESS), Some(want));
    });
}

#[test]
fn under_a_default_acl_the_umask_does_not_apply() {
    for_each_setup(LOWER, |fx| {
        set_default_acl(fx);
        create(fx, "shared/g", 0o666);
        // umask 022 would have given 0644; the default ACL gives 0664.
        assert_eq!(fx.stat("shared/g").entry.mode, 0o664);
        create(fx, "outside", 0o666);
        assert_eq!(fx.stat("outside").entry.mode, 0o644);
        assert_eq!(
            errno(fx.fs.getxattr(fx.id("outside"), ACCESS.as_bytes())),
            libc::ENODATA
        );
    });
}

#[test]
fn a_new_directory_keeps_the_default_acl_for_its_own_children() {
    for_each_setup(LOWER, |fx| {
        set_default_acl(fx);
        fx.mkdir("shared/sub", 0o777).expect("mkdir");
        assert_eq!(fx.stat("shared/sub").entry.mode, 0o775);
        assert_eq!(getxattr(fx, "shared/sub", DEFAULT), shared_default());
        assert_eq!(getxattr(fx, "shared/sub", ACCESS), shared_default());
        assert_eq!(
            fx.upper_xattr("shared/sub", DEFAULT),
            Some(shared_default())
        );
        create(fx, "shared/sub/deep", 0o600);
        assert_eq!(fx.stat("shared/sub/deep").entry.mode, 0o600);
        let mask = getxattr(fx, "shared/sub/deep", ACCESS);
        assert_eq!(&mask[4 + 3 * 8..4 + 4 * 8], &acl(&[(MASK, 0, NO_ID)])[4..]);
    });
}

#[test]
fn chmod_rewrites_the_mask_of_an_access_acl() {
    for_each_setup(LOWER, |fx| {
        set_default_acl(fx);
        create(fx, "shared/f", 0o660);
        let sa = fusefs::union_fs::SetAttr {
            mode: Some(0o604),
            ..Default::default()
        };
        fx.fs.setattr(fx.id("shared/f"), &sa).expect("chmod");
        let want = acl(&[
            (USER_OBJ, 6, NO_ID),
            (USER, 7, 1234),
            (GROUP_OBJ, 5, NO_ID),
            (MASK, 0, NO_ID),
            (OTHER, 4, NO_ID),
        ]);
        assert_eq!(getxattr(fx, "shared/f", ACCESS), want);
        assert_eq!(fx.upper_xattr("shared/f", ACCESS), Some(want));
        assert_eq!(fx.upper_mode("shared/f"), 0o604);
    });
}

/// The same on a file CREATE made without a handle, which a SETATTR
/// changes through the file the node keeps (`UnionFs::setattr`): the
/// chmod's answer and the ACL are what a fresh resolution shows.
#[test]
fn chmod_of_a_file_just_made_rewrites_its_acl_as_well() {
    for_each_setup(LOWER, |fx| {
        set_default_acl(fx);
        let (attr, fh) = fx
            .fs
            .create(
                fx.id("shared"),
                b"f",
                0o660,
                (libc::O_RDWR, false),
                caller(),
            )
            .expect("create");
        assert!(fh.is_none());
        // Its inherited ACL, answered from what CREATE found.
        let inherited = fx.upper_xattr("shared/f", ACCESS).expect("an access ACL");
        let answered = fx
            .fs
            .getxattr(attr.id, ACCESS.as_bytes())
            .expect("getxattr");
        assert_eq!(answered, inherited);
        let sa = fusefs::union_fs::SetAttr {
            mode: Some(0o604),
            ..Default::default()
        };
        let answered = fx.fs.setattr(attr.id, &sa).expect("chmod").node;
        assert_eq!(answered.entry.mode, 0o604);
        assert_eq!(
            format!("{answered:?}"),
            format!("{:?}", fx.stat("shared/f"))
        );
        let mask = getxattr(fx, "shared/f", ACCESS);
        assert_eq!(&mask[4 + 3 * 8..4 + 4 * 8], &acl(&[(MASK, 0, NO_ID)])[4..]);
        assert_eq!(fx.upper_mode("shared/f"), 0o604);
    });
}

#[test]
fn an_access_acl_the_mode_says_all_of_is_kept_as_the_mode_alone() {
    for_each_setup(LOWER, |fx| {
        let minimal = acl(&[
            (USER_OBJ, 7, NO_ID),
            (GROUP_OBJ, 4, NO_ID),
            (OTHER, 0, NO_ID),
        ]);
        fx.fs
            .setxattr(fx.id("plain"), ACCESS.as_bytes(), &minimal, 0, &writer())
            .expect("setfacl");
        assert_eq!(fx.stat("plain").entry.mode, 0o740);
        assert_eq!(
            errno(fx.fs.getxattr(fx.id("plain"), ACCESS.as_bytes())),
            libc::ENODATA
        );
        assert_eq!(fx.upper_mode("plain"), 0o740);
        assert_eq!(fx.upper_xattr("plain", ACCESS), None);
        assert_eq!(fx.upper_bytes("plain"), b"p");
    });
}
