//! Extended attributes of a file that lost its last name while open,
//! driven on the union core without a mount: fgetxattr, flistxattr,
//! fsetxattr and fremovexattr keep working on it, as on ext4 and kernel
//! overlayfs, for an upper file and for a lower one (which a change
//! copies to a nameless upper file).

use fusefs::union_fs::{Caller, Writer};
use fusefs::{FsError, Layers, MemLower, NodeId, UnionFs, UpperFormat};

/// The upper formats this process can write: the rootless one always,
/// the kernel one (chown, `trusted.*`) only as root.
fn formats() -> Vec<UpperFormat> {
    let mut f = vec![UpperFormat::Rootless];
    if nix::unistd::geteuid().is_root() {
        f.push(UpperFormat::detect());
    }
    f
}

/// Runs `test` on a union of one in-memory lower holding the file
/// `lower` and a fresh upper, once per upper format.
fn for_each_format(test: impl Fn(&UnionFs)) {
    for format in formats() {
        eprintln!("upper format: {format:?}");
        let tmp = tempfile::tempdir().expect("temporary upper");
        let mut lower = MemLower::new("mem", 1);
        lower.file("lower", b"from the lower");
        let layers = Layers::with_format(Some(tmp.path()), vec![Box::new(lower)], Some(format))
            .expect("layer stack");
        test(&UnionFs::new(layers, false));
    }
}

fn caller() -> Caller {
    Caller {
        uid: 0,
        gid: 0,
        umask: 0o022,
    }
}

fn errno<T: std::fmt::Debug>(r: Result<T, FsError>) -> i32 {
    r.expect_err("an error").errno()
}

/// The names listxattr(2) would return.
fn names(fs: &UnionFs, id: NodeId) -> Vec<String> {
    let list = fs.listxattr(id).expect("listxattr");
    list.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

#[test]
fn an_unlinked_upper_file_keeps_its_xattrs_readable_and_writable() {
    for_each_format(|fs| {
        let (attr, _) = fs
            .create(
                NodeId::ROOT,
                b"tmp",
                libc::S_IFREG | 0o644,
                (libc::O_RDWR, false),
                caller(),
            )
            .expect("create");
        let id = attr.id;
        fs.setxattr(id, b"user.kept", b"before", 0, &writer())
            .expect("setxattr");
        fs.unlink(NodeId::ROOT, b"tmp").expect("unlink");

        assert_eq!(fs.getxattr(id, b"user.kept").expect("fgetxattr"), b"before");
        assert_eq!(names(fs, id), ["user.kept"]);

        fs.setxattr(id, b"user.new", b"after", 0, &writer())
            .expect("fsetxattr");
        assert_eq!(fs.getxattr(id, b"user.new").expect("fgetxattr"), b"after");
        assert_eq!(
            errno(fs.setxattr(id, b"user.new", b"x", libc::XATTR_CREATE, &writer())),
            libc::EEXIST
        );

        fs.removexattr(id, b"user.kept").expect("fremovexattr");
        assert_eq!(errno(fs.getxattr(id, b"user.kept")), libc::ENODATA);
        assert_eq!(errno(fs.removexattr(id, b"user.kept")), libc::ENODATA);
        assert_eq!(names(fs, id), ["user.new"]);
    });
}

#[test]
fn an_unlinked_lower_file_answers_for_its_xattrs_and_takes_new_ones() {
    for_each_format(|fs| {
        let id = fs.lookup(NodeId::ROOT, b"lower").expect("lookup").id;
        fs.unlink(NodeId::ROOT, b"lower").expect("unlink");

        assert_eq!(errno(fs.getxattr(id, b"user.none")), libc::ENODATA);
        assert!(names(fs, id).is_empty());

        // The change copies the file to a nameless upper file first.
        fs.setxattr(id, b"user.new", b"value", 0, &writer())
            .expect("fsetxattr");
        assert_eq!(fs.getxattr(id, b"user.new").expect("fgetxattr"), b"value");
        assert_eq!(names(fs, id), ["user.new"]);
        assert_eq!(
            fs.lookup(NodeId::ROOT, b"lower")
                .map(|a| a.id)
                .map_err(|e| e.errno()),
            Err(libc::ENOENT)
        );
    });
}

/// The user changing xattrs here: root, this process.
fn writer() -> Writer {
    Writer {
        uid: 0,
        gid: 0,
        pid: std::process::id(),
        lacks_fsetid: Some(false),
        gid_map: None,
    }
}
