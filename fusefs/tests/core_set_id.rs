//! Set-id bits cleared by the union core itself: the mount asks the kernel
//! for FUSE_HANDLE_KILLPRIV_V2 (fewer round trips per file written), so the
//! kernel no longer sends the cleared mode with a chown or a truncation,
//! nor clears bits on a write; the server does, as the kernel does on a
//! local filesystem.

mod common;

use common::fixture::{caller, for_each_setup, setups, writer, Fx, Item};
use fusefs::union_fs::{SetAttr, Writer};
use fusefs::TimeSet;

const LOWER: &[Item] = &[
    Item::File("plain", b"0123456789", 0o755),
    Item::File("suid", b"0123456789", 0o4755),
    Item::File("sgid-x", b"0123456789", 0o2755),
    Item::File("sgid", b"0123456789", 0o2745),
    Item::Dir("dir", 0o2755),
];

/// A caller that is not root and not in the files' group (0).
fn stranger() -> Writer {
    Writer {
        uid: 1000,
        gid: 1000,
        pid: std::process::id(),
        lacks_fsetid: Some(true),
        gid_map: None,
    }
}

/// The mode of `path` after a SETATTR of `sa` asked by `by`.
fn mode_after(fx: &Fx, path: &str, sa: SetAttr, by: Writer) -> u32 {
    let sa = SetAttr { by: Some(by), ..sa };
    fx.fs
        .setattr(fx.id(path), &sa)
        .expect("setattr")
        .node
        .entry
        .mode
}

fn chown(fx: &Fx, path: &str, by: Writer) -> u32 {
    let sa = SetAttr {
        uid: Some(0),
        gid: Some(0),
        ..SetAttr::default()
    };
    mode_after(fx, path, sa, by)
}

#[test]
fn a_chown_clears_set_user_id_and_group_executable_set_group_id() {
    for_each_setup(LOWER, |fx| {
        assert_eq!(chown(fx, "suid", writer()), 0o755);
        assert_eq!(chown(fx, "sgid-x", writer()), 0o755);
        // Without group execute S_ISGID is mandatory locking, not a
        // privilege: root keeps it, a caller outside the group does not.
        assert_eq!(chown(fx, "sgid", writer()), 0o2745);
        assert_eq!(chown(fx, "sgid", stranger()), 0o745);
        // Directories keep theirs (BSD group inheritance).
        assert_eq!(chown(fx, "dir", stranger()), 0o2755);
        assert_eq!(fx.upper_mode("suid"), 0o755, "as the upper records it");
    });
}

/// `chown(f, -1, -1)` reaches the server as a SETATTR that sets nothing.
#[test]
fn a_chown_naming_no_owner_clears_them_as_any_chown() {
    for_each_setup(LOWER, |fx| {
        let same = |path: &str, by: Writer| mode_after(fx, path, SetAttr::default(), by);
        assert_eq!(same("suid", writer()), 0o755);
        assert_eq!(same("sgid-x", writer()), 0o755);
        assert_eq!(same("sgid", writer()), 0o2745);
        assert_eq!(same("sgid", stranger()), 0o745);
        assert_eq!(same("dir", stranger()), 0o2755);
    });
}

#[test]
fn a_chown_with_a_mode_sets_that_mode() {
    for_each_setup(LOWER, |fx| {
        let sa = SetAttr {
            uid: Some(0),
            mode: Some(0o4711),
            by: Some(stranger()),
            ..SetAttr::default()
        };
        let a = fx.fs.setattr(fx.id("suid"), &sa).expect("chown and chmod");
        assert_eq!(a.node.entry.mode, 0o4711);
    });
}

#[test]
fn a_truncation_clears_set_id_bits_only_for_a_caller_without_cap_fsetid() {
    for_each_setup(LOWER, |fx| {
        let truncate = |path: &str, by: Writer| {
            let sa = SetAttr {
                size: Some(3),
                ..SetAttr::default()
            };
            mode_after(fx, path, sa, by)
        };
        assert_eq!(truncate("suid", writer()), 0o4755, "root keeps them");
        assert_eq!(truncate("suid", stranger()), 0o755);
        assert_eq!(truncate("sgid-x", stranger()), 0o755);
        // Outside the group: S_ISGID without group execute goes too, as on ext4.
        assert_eq!(truncate("sgid", stranger()), 0o745);
        assert_eq!(fx.read("suid"), b"012");
    });
}

#[test]
fn a_write_clears_set_id_bits_when_the_kernel_says_so() {
    for_each_setup(LOWER, |fx| {
        let write = |path: &str, by: Writer| {
            let id = fx.id(path);
            fx.fs.write(id, None, 0, b"ab", &by).expect("write");
            fx.stat(path).entry.mode
        };
        assert_eq!(write("suid", writer()), 0o4755, "root keeps them");
        assert_eq!(write("suid", stranger()), 0o755);
        assert_eq!(write("sgid-x", stranger()), 0o755);
        // Outside the group: S_ISGID without group execute goes too.
        assert_eq!(write("sgid", stranger()), 0o745);
        assert_eq!(fx.read("suid"), b"ab23456789");
    });
}

/// An upper file with an owner record (`user.containers.override_stat`,
/// the rootless format's, which a mount in the kernel format shows too:
/// an upper may mix both) shows the record's set-id bits, so a write by a
/// caller without CAP_FSETID clears them there, in either format.
#[test]
fn a_write_clears_the_set_id_bits_an_owner_record_shows() {
    for setup in setups() {
        let mut fx = Fx::new(setup, &[LOWER]);
        fx.create("f", b"x");
        let host = fx.upper_path("f");
        xattr::set(&host, "user.containers.override_stat", b"0:0:04777:file").expect("setxattr");
        fx.remount();
        assert_eq!(fx.stat("f").entry.mode, 0o4777, "{setup:?}");
        fx.fs
            .write(fx.id("f"), None, 1, b"y", &stranger())
            .expect("write");
        assert_eq!(fx.stat("f").entry.mode, 0o777, "{setup:?}");
        fx.remount();
        assert_eq!(fx.stat("f").entry.mode, 0o777, "{setup:?}: as stored");
    }
}

/// A write remembers a file it found without set-id bits or capabilities
/// and skips looking again (`plain_writes`); set-id bits or capabilities
/// a change gives the file after it still go with the next write.
#[test]
fn what_a_change_gives_a_file_after_a_plain_write_goes_with_the_next_write() {
    // CAP_NET_RAW, effective: a capability set (VFS_CAP_REVISION_2).
    let caps: Vec<u8> = [0x0200_0001u32, 1 << 13, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    for_each_setup(LOWER, |fx| {
        let id = fx.id("plain");
        let write = |at: u64| fx.fs.write(id, None, at, b"w", &stranger()).expect("write");
        write(0);
        write(1);
        let sa = SetAttr {
            mode: Some(0o6755),
            ..SetAttr::default()
        };
        fx.fs.setattr(id, &sa).expect("chmod");
        write(2);
        assert_eq!(fx.stat("plain").entry.mode, 0o755, "{:?}", fx.setup);
        fx.fs
            .setxattr(id, b"security.capability", &caps, 0, &writer())
            .expect("set capabilities");
        write(3);
        assert!(
            fx.fs.getxattr(id, b"security.capability").is_err(),
            "{:?}: a write kept the capabilities",
            fx.setup
        );
        assert_eq!(fx.read("plain"), b"wwww456789");
    });
}

/// CREATE resolves the file it made through its descriptor, and tar sets
/// the times of each file it made after writing it: such a SETATTR is
/// answered from the file CREATE made while the tree is unchanged
/// (`UnionFs::set_new_file_times`). Each answer must be what a fresh
/// resolution shows: after a write that cleared set-id bits (which
/// changes no tree), and after a change of the tree in between. A new
/// file without set-id bits is remembered as plain for its writes (see
/// `plain_writes`) until the tree changes.
#[test]
fn times_set_on_a_file_just_made_answer_what_a_fresh_resolution_shows() {
    for_each_setup(LOWER, |fx| {
        let dir = fx.id("dir");
        let made = |name: &str, mode: u32| {
            // No handle: the default mount's CREATE, whose file the node keeps.
            let (attr, fh) = fx
                .fs
                .create(dir, name.as_bytes(), mode, (libc::O_RDWR, false), caller())
                .expect("create");
            assert!(fh.is_none());
            // Resolved through the new file's descriptor: as by its path.
            let fresh = fx.stat(&format!("dir/{name}"));
            assert_eq!(format!("{:?}", attr.node), format!("{fresh:?}"));
            attr.id
        };
        let set_times = |id, t: i64| {
            let sa = SetAttr {
                mtime: Some(TimeSet::At(t)),
                atime: Some(TimeSet::Now),
                ..SetAttr::default()
            };
            fx.fs.setattr(id, &sa).expect("utimensat").node
        };
        let show = |n: &fusefs::Node| format!("{n:?}");
        // Made in a set-group-id directory of group 0: a writer outside
        // that group loses both set-id bits.
        let a = made("a", 0o6755);
        fx.fs
            .write(a, None, 0, b"data", &stranger())
            .expect("write");
        let answered = set_times(a, 1_600_000_000_000_000_000);
        assert_eq!(answered.entry.mode, 0o755, "{:?}", fx.setup);
        assert_eq!(answered.entry.size, 4);
        assert_eq!(answered.entry.mtime_ns, 1_600_000_000_000_000_000);
        assert_eq!(show(&answered), show(&fx.stat("dir/a")), "{:?}", fx.setup);

        let b = made("b", 0o644);
        fx.fs
            .write(b, None, 0, b"more data", &writer())
            .expect("write");
        // Its xattrs as CREATE found them, while the tree is unchanged.
        let note = fx.fs.getxattr(b, b"user.note");
        assert_eq!(note.expect_err("no note yet").errno(), libc::ENODATA);
        assert_eq!(fx.fs.listxattr(b).expect("listxattr"), b"");
        fx.fs
            .setxattr(b, b"user.note", b"set in between", 0, &writer())
            .expect("setxattr");
        let note = fx.fs.getxattr(b, b"user.note").expect("getxattr");
        assert_eq!(note, b"set in between");
        assert_eq!(fx.fs.listxattr(b).expect("listxattr"), b"user.note\0");
        let answered = set_times(b, 1_700_000_000_000_000_000);
        assert_eq!(show(&answered), show(&fx.stat("dir/b")), "{:?}", fx.setup);

        // Made without set-id bits, its writes skip the check; bits a
        // chmod gives it later still go with the next write.
        let c = made("c", 0o755);
        fx.fs.write(c, None, 0, b"w", &stranger()).expect("write");
        let sa = SetAttr {
            mode: Some(0o6755),
            ..SetAttr::default()
        };
        fx.fs.setattr(c, &sa).expect("chmod");
        fx.fs.write(c, None, 1, b"w", &stranger()).expect("write");
        assert_eq!(fx.stat("dir/c").entry.mode, 0o755, "{:?}", fx.setup);

        // tar as root: a chown to the owner it has, then a chmod, each
        // through the file CREATE made; the chown still marks ctime.
        let d = made("d", 0o600);
        fx.fs.write(d, None, 0, b"data", &writer()).expect("write");
        let ctime = fx.stat("dir/d").ctime_ns;
        std::thread::sleep(std::time::Duration::from_millis(10));
        let owner = fx.stat("dir/d").entry;
        let sa = SetAttr {
            uid: Some(owner.uid),
            gid: Some(owner.gid),
            ..SetAttr::default()
        };
        let answered = fx.fs.setattr(d, &sa).expect("chown");
        assert!(
            answered.node.ctime_ns > ctime,
            "{:?}: a chown left ctime",
            fx.setup
        );
        assert_eq!(
            show(&answered.node),
            show(&fx.stat("dir/d")),
            "{:?}",
            fx.setup
        );
        let sa = SetAttr {
            mode: Some(0o4711),
            ..SetAttr::default()
        };
        let answered = fx.fs.setattr(d, &sa).expect("chmod").node;
        assert_eq!(answered.entry.mode, 0o4711, "{:?}", fx.setup);
        assert_eq!(show(&answered), show(&fx.stat("dir/d")), "{:?}", fx.setup);
        let sa = SetAttr {
            size: Some(2),
            ..SetAttr::default()
        };
        let answered = fx.fs.setattr(d, &sa).expect("truncate").node;
        assert_eq!(show(&answered), show(&fx.stat("dir/d")), "{:?}", fx.setup);
        // The set-user-id bit the chmod gave goes with a stranger's write.
        fx.fs.write(d, None, 0, b"w", &stranger()).expect("write");
        assert_eq!(fx.stat("dir/d").entry.mode, 0o711, "{:?}", fx.setup);
        assert_eq!(fx.read("dir/d"), b"wa");
    });
}
