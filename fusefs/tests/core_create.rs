//! New nodes, driven on the union core without a mount: owner and mode
//! from the caller and its umask, the group of a setgid directory, and how
//! the upper records each type in its format.

mod common;

use common::fixture::{caller, errno, for_each_setup, setups, writer, Fx, Item};
use fusefs::override_stat::OverrideStat;
use fusefs::union_fs::SetAttr;
use fusefs::NodeId;
use fusefs::{Layers, MemLower, UnionFs};
use layerdb::Kind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

const LOWER: &[Item] = &[Item::Dir("sg", 0o2775), Item::File("file", b"f", 0o644)];

/// The owner and type the upper records for `path`: the host inode's
/// (kernel format) or `user.containers.override_stat`'s (rootless).
fn recorded(fx: &Fx, path: &str) -> (u32, u32, Option<Kind>) {
    let host = fx.upper_path(path);
    if fx.setup.format.is_kernel() {
        let md = std::fs::symlink_metadata(&host).expect("lstat upper");
        let ft = md.file_type();
        let kind = if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::Regular
        };
        return (md.uid(), md.gid(), Some(kind));
    }
    let v = xattr::get(&host, "user.containers.override_stat")
        .expect("getxattr")
        .expect("override_stat");
    let o = OverrideStat::parse(&v).expect("valid override_stat");
    (o.uid, o.gid, o.kind)
}

#[test]
fn new_nodes_take_the_callers_owner_and_their_mode_under_the_umask() {
    for_each_setup(LOWER, |fx| {
        fx.create("f", b"");
        fx.mkdir("d", 0o777).expect("mkdir");
        fx.fs
            .symlink(NodeId::ROOT, b"l", b"target", caller())
            .expect("symlink");
        fx.fs
            .mknod(NodeId::ROOT, b"p", libc::S_IFIFO | 0o666, 0, caller())
            .expect("mkfifo");
        for (path, kind, mode) in [
            ("f", Kind::Regular, 0o644),
            ("d", Kind::Dir, 0o755),
            ("p", Kind::Fifo, 0o644),
        ] {
            let e = fx.stat(path).entry;
            assert_eq!(
                (e.kind, e.mode, e.uid, e.gid),
                (kind, mode, 1000, 1000),
                "/{path}"
            );
            assert_eq!(fx.upper_mode(path), mode, "/{path} in the upper");
            assert_eq!(
                recorded(fx, path),
                (1000, 1000, Some(kind)),
                "/{path} in the upper"
            );
        }
        assert_eq!(fx.stat("l").entry.kind, Kind::Symlink);
        assert_eq!(fx.fs.readlink(fx.id("l")).expect("readlink"), b"target");
        assert_eq!(recorded(fx, "l"), (1000, 1000, Some(Kind::Symlink)));
        assert_eq!(fx.names(""), ["d", "f", "file", "l", "p", "sg"]);
    });
}

#[test]
fn a_setgid_directory_gives_new_nodes_its_group_and_new_directories_its_bit() {
    for_each_setup(LOWER, |fx| {
        let group = fx.stat("sg").entry.gid;
        assert_ne!(group, caller().gid, "the test needs another group");
        fx.create("sg/f", b"");
        fx.mkdir("sg/d", 0o755).expect("mkdir");
        assert_eq!(fx.stat("sg/f").entry.gid, group);
        assert_eq!(fx.stat("sg/f").entry.mode, 0o644);
        let d = fx.stat("sg/d").entry;
        assert_eq!((d.gid, d.mode), (group, 0o2755));
        assert_eq!(recorded(fx, "sg/d").1, group);
        assert_eq!(fx.upper_mode("sg/d"), 0o2755);
    });
}

/// A directory that made a node is remembered (`Layers::copy_up_parent`):
/// a chown and chmod of it in between must reach the next node made.
#[test]
fn a_new_node_takes_the_group_its_directory_has_now() {
    for_each_setup(LOWER, |fx| {
        let d = fx.mkdir("d", 0o755).expect("mkdir");
        fx.create("d/before", b"");
        assert_eq!(fx.stat("d/before").entry.gid, caller().gid);
        let sa = SetAttr {
            gid: Some(50),
            ..SetAttr::default()
        };
        fx.fs.setattr(d, &sa).expect("chgrp");
        let sa = SetAttr {
            mode: Some(0o2775),
            ..SetAttr::default()
        };
        fx.fs.setattr(d, &sa).expect("chmod g+s");
        fx.create("d/after", b"");
        fx.mkdir("d/sub", 0o755).expect("mkdir");
        assert_eq!(fx.stat("d/after").entry.gid, 50, "{:?}", fx.setup);
        let sub = fx.stat("d/sub").entry;
        assert_eq!((sub.gid, sub.mode), (50, 0o2755), "{:?}", fx.setup);
    });
}

/// chown(2) and chmod(2) mark ctime even when they change nothing, as on
/// ext4. The rootless format keeps owner and mode in an xattr, and the
/// host skips writing the value an xattr already has, ctime included.
#[test]
fn a_chown_or_chmod_that_changes_nothing_still_marks_ctime() {
    for_each_setup(LOWER, |fx| {
        fx.create("f", b"data");
        let id = fx.id("f");
        let was = fx.stat("f");
        let same_owner = SetAttr {
            uid: Some(was.entry.uid),
            gid: Some(was.entry.gid),
            ..SetAttr::default()
        };
        let same_mode = SetAttr {
            mode: Some(was.entry.mode),
            ..SetAttr::default()
        };
        let mut ctime = was.ctime_ns;
        for (what, sa) in [("chown", same_owner), ("chmod", same_mode)] {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let answered = fx.fs.setattr(id, &sa).expect(what).node;
            assert!(
                answered.ctime_ns > ctime,
                "{:?}: a {what} left ctime",
                fx.setup
            );
            assert_eq!(answered.ctime_ns, fx.stat("f").ctime_ns);
            ctime = answered.ctime_ns;
        }
    });
}

#[test]
fn creating_refuses_an_existing_name_and_a_parent_that_is_no_directory() {
    for_each_setup(LOWER, |fx| {
        let c = caller();
        assert_eq!(
            errno(fx.fs.mkdir(NodeId::ROOT, b"file", 0o755, c)),
            libc::EEXIST
        );
        let file = fx.id("file");
        assert_eq!(errno(fx.fs.mkdir(file, b"x", 0o755, c)), libc::ENOTDIR);
        assert_eq!(
            errno(fx.fs.symlink(NodeId::ROOT, b"sg", b"t", c)),
            libc::EEXIST
        );
        assert_eq!(fx.read("file"), b"f");
        assert_eq!(fx.names(""), ["file", "sg"]);
        // In a directory only the upper holds, the host's own EEXIST
        // answers: no probe comes first.
        fx.mkdir("new", 0o755).expect("mkdir");
        fx.create("new/f", b"kept");
        let new = fx.id("new");
        let exclusive = (libc::O_RDWR | libc::O_EXCL, true);
        assert_eq!(
            errno(fx.fs.create(new, b"f", 0o644, exclusive, c)),
            libc::EEXIST
        );
        assert_eq!(errno(fx.fs.mkdir(new, b"f", 0o755, c)), libc::EEXIST);
        assert_eq!(errno(fx.fs.symlink(new, b"f", b"t", c)), libc::EEXIST);
        assert_eq!(fx.read("new/f"), b"kept");
        assert_eq!(fx.names("new"), ["f"]);
    });
}

#[test]
fn a_union_without_an_upper_refuses_every_change_with_erofs() {
    let mut lower = MemLower::new("ro", 1);
    lower.file("f", b"ro");
    let layers = Layers::new(None, vec![Box::new(lower)]).expect("layers");
    let fs = UnionFs::new(layers, false);
    assert!(fs.is_read_only());
    let f = fs.lookup(NodeId::ROOT, b"f").expect("lookup").id;
    assert_eq!(errno(fs.open(f, libc::O_WRONLY)), libc::EROFS);
    assert_eq!(errno(fs.unlink(NodeId::ROOT, b"f")), libc::EROFS);
    assert_eq!(
        errno(fs.mkdir(NodeId::ROOT, b"d", 0o755, caller())),
        libc::EROFS
    );
    assert_eq!(
        errno(fs.setxattr(f, b"user.k", b"v", 0, &writer())),
        libc::EROFS
    );
    let (fh, _) = fs.open(f, libc::O_RDONLY).expect("open for reading");
    assert_eq!(fs.read(f, Some(fh), 0, 10).expect("read"), b"ro");
    fs.release(fh);
}

/// Without a handle (OPEN answered ENOSYS), the host file CREATE made is
/// the node's file: the WRITEs that follow (an untar's) go through it
/// without opening the file again. Seen here by taking the host name away
/// behind the union's back: a reopen would fail with ENOENT.
#[test]
fn writes_after_a_create_without_a_handle_use_the_file_create_opened() {
    for_each_setup(LOWER, |fx| {
        let (attr, fh) = fx
            .fs
            .create(
                NodeId::ROOT,
                b"new",
                0o644,
                (libc::O_WRONLY, false),
                caller(),
            )
            .expect("create");
        assert!(fh.is_none(), "no handle without passthrough");
        let host = fx.upper_path("new");
        let kept = host.with_file_name("kept");
        std::fs::rename(&host, &kept).expect("move the host file away");
        let n = fx
            .fs
            .write(attr.id, None, 0, b"data", &writer())
            .expect("write through the node's file");
        assert_eq!(n, 4);
        assert_eq!(std::fs::read(&kept).expect("read the host file"), b"data");
    });
}

/// A name whose union path would be PATH_MAX (4096) bytes or more is
/// refused with ENAMETOOLONG, however it is reached (one relative name at
/// a time), as fuse-overlayfs refuses it: no layer may hold such a path,
/// and the server keeps each node's whole path (1,500 levels of 255-byte
/// names grew it past 2 GB).
#[test]
fn a_path_of_path_max_bytes_cannot_be_made() {
    for_each_setup(LOWER, |fx| {
        let path = fx.mkdir_to_path_max();
        assert_eq!(path.len(), 4095);
        let past = format!("{path}/x");
        assert_eq!(fx.mkdir(&past, 0o755).err(), Some(libc::ENAMETOOLONG));
    });
}

/// An upper file recorded in the rootless format (its owner and mode in
/// an override xattr) and mounted in the kernel format shows the
/// override; its first chmod makes the host inode say it instead:
/// chowned to the recorded owner, the mode set, the override gone.
#[test]
fn a_chmod_in_the_kernel_format_turns_a_rootless_record_into_the_host_s_own() {
    let kernel: Vec<_> = setups()
        .into_iter()
        .filter(|s| s.format.is_kernel())
        .collect();
    assert!(!kernel.is_empty(), "the kernel format needs root");
    for setup in kernel {
        let mut fx = Fx::new(setup, &[LOWER]);
        fx.create("f", b"x");
        let host = fx.upper_path("f");
        std::os::unix::fs::lchown(&host, Some(0), Some(0)).expect("chown");
        xattr::set(
            &host,
            "user.containers.override_stat",
            b"1000:1000:0640:file",
        )
        .expect("setxattr");
        fx.remount();
        let e = fx.stat("f").entry;
        assert_eq!(
            (e.uid, e.gid, e.mode),
            (1000, 1000, 0o640),
            "the override shows"
        );
        let sa = SetAttr {
            mode: Some(0o604),
            ..SetAttr::default()
        };
        fx.fs.setattr(fx.id("f"), &sa).expect("chmod");
        let md = std::fs::symlink_metadata(&host).expect("lstat");
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1000, 1000, 0o604)
        );
        let left = xattr::get(&host, "user.containers.override_stat").expect("getxattr");
        assert_eq!(left, None, "the override is gone");
        fx.remount();
        let e = fx.stat("f").entry;
        assert_eq!((e.uid, e.gid, e.mode), (1000, 1000, 0o604));
    }
}
