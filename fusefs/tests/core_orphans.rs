//! Files that lose their last name while open, driven on the union core
//! without a mount: the node keeps its file for reads, writes and
//! attributes until the kernel forgets it.

mod common;

use common::fixture::{errno, for_each_setup, read_fh, writer, Item};
use fusefs::union_fs::SetAttr;

const LOWER: &[Item] = &[Item::File("lower", b"from the lower", 0o644)];

#[test]
fn an_unlinked_upper_file_still_open_keeps_reading_and_writing_until_release() {
    for_each_setup(LOWER, |fx| {
        let id = fx.create("tmp", b"before");
        let (fh, _) = fx.fs.open(id, libc::O_RDWR).expect("open");
        fx.unlink("tmp").expect("unlink");
        assert!(!fx.exists("tmp"));
        assert!(!fx.in_upper("tmp"), "the name is gone from the upper");

        fx.fs
            .write(id, Some(fh), 6, b" after", &writer())
            .expect("write");
        assert_eq!(read_fh(&fx.fs, id, fh), b"before after");
        let st = fx.fs.getattr(id).expect("fstat of the orphan").node;
        assert_eq!((st.entry.size, st.entry.nlink), (12, 0));
        // ftruncate reaches the same file.
        let sa = SetAttr {
            size: Some(3),
            ..SetAttr::default()
        };
        assert_eq!(
            fx.fs.setattr(id, &sa).expect("ftruncate").node.entry.size,
            3
        );
        assert_eq!(read_fh(&fx.fs, id, fh), b"bef");
        fx.fs.release(fh);

        // Reopening through the node (/proc/self/fd/N) still works until
        // the kernel forgets it; then the node is gone.
        assert_eq!(fx.read_id(id), b"bef");
        fx.fs.forget(id, 1);
        assert_eq!(errno(fx.fs.getattr(id)), libc::ENOENT);
        assert_eq!(errno(fx.fs.open(id, libc::O_RDONLY)), libc::ENOENT);
    });
}

/// As for a named file (`core_create.rs`): a chmod to the mode it has
/// still marks ctime, in the rootless format too, where the mode is an
/// xattr the host does not rewrite when it is unchanged.
#[test]
fn a_chmod_of_an_unlinked_file_to_its_own_mode_marks_ctime() {
    for_each_setup(LOWER, |fx| {
        let id = fx.create("tmp", b"data");
        let (fh, _) = fx.fs.open(id, libc::O_RDWR).expect("open");
        fx.unlink("tmp").expect("unlink");
        let was = fx.fs.getattr(id).expect("fstat of the orphan").node;
        std::thread::sleep(std::time::Duration::from_millis(10));
        let sa = SetAttr {
            mode: Some(was.entry.mode),
            ..SetAttr::default()
        };
        let now = fx.fs.setattr(id, &sa).expect("fchmod").node;
        assert!(now.ctime_ns > was.ctime_ns, "{:?}: ctime left", fx.setup);
        fx.fs.release(fh);
    });
}

#[test]
fn an_unlinked_lower_file_still_open_keeps_its_content_and_becomes_writable() {
    for_each_setup(LOWER, |fx| {
        let id = fx.id("lower");
        let (ro, _) = fx.fs.open(id, libc::O_RDONLY).expect("open");
        fx.unlink("lower").expect("unlink");
        assert!(fx.whiteout_in_upper("lower"));
        assert_eq!(read_fh(&fx.fs, id, ro), b"from the lower");
        fx.fs.release(ro);

        // Opened for writing by node, it is copied to a nameless upper file:
        // the container's write lands there, not in the lower and not
        // under any name.
        let (rw, _) = fx.fs.open(id, libc::O_RDWR).expect("open for writing");
        fx.fs
            .write(id, Some(rw), 0, b"FROM", &writer())
            .expect("write");
        assert_eq!(read_fh(&fx.fs, id, rw), b"FROM the lower");
        fx.fs.release(rw);
        assert!(!fx.exists("lower"));
        assert!(fx.whiteout_in_upper("lower"));
        if let Some(lower) = fx.lower_path(0, "lower") {
            assert_eq!(std::fs::read(lower).expect("lower"), b"from the lower");
        }
        let leftovers: Vec<_> = std::fs::read_dir(fx.upper_path(""))
            .expect("upper")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "only the whiteout: {leftovers:?}");
    });
}

#[test]
fn a_file_replaced_by_rename_lives_on_for_the_node_that_held_it() {
    for_each_setup(LOWER, |fx| {
        let old = fx.create("cur", b"old");
        fx.create("next", b"new");
        fx.rename("next", "cur", 0).expect("rename over");
        assert_eq!(fx.read("cur"), b"new");
        assert_eq!(fx.read_id(old), b"old");
        assert_eq!(fx.fs.getattr(old).expect("getattr").node.entry.nlink, 0);
    });
}

#[test]
fn an_unlinked_lower_file_truncated_by_node_keeps_the_rest() {
    for_each_setup(LOWER, |fx| {
        let id = fx.id("lower");
        fx.unlink("lower").expect("unlink");
        let sa = SetAttr {
            size: Some(4),
            ..SetAttr::default()
        };
        let a = fx.fs.setattr(id, &sa).expect("ftruncate of the orphan");
        assert_eq!((a.node.entry.size, a.node.entry.nlink), (4, 0));
        assert_eq!(fx.read_id(id), b"from");
        if let Some(lower) = fx.lower_path(0, "lower") {
            assert_eq!(std::fs::read(lower).expect("lower"), b"from the lower");
        }
    });
}

#[test]
fn a_removed_directory_still_held_reports_no_links_and_lists_nothing() {
    let lower = &[Item::Dir("d", 0o755)];
    for_each_setup(lower, |fx| {
        let id = fx.id("d");
        fx.rmdir("d").expect("rmdir");
        let st = fx
            .fs
            .getattr(id)
            .expect("fstat of the removed directory")
            .node;
        assert!(st.is_dir());
        assert_eq!(st.entry.nlink, 0);
        let (listing, _) = fx.fs.dir_items(id, 0).expect("readdir");
        assert!(listing.items.is_empty());
        // A new directory by that name is another node.
        let new = fx.mkdir("d", 0o755).expect("mkdir");
        assert_eq!(fx.names("d"), Vec::<String>::new());
        assert_ne!(new, id);
    });
}

#[test]
fn a_write_by_node_to_an_unlinked_name_of_a_lower_pair_shows_through_the_other_name() {
    // A mount without OPEN requests: the process opened `f` (no copy-up),
    // then `f` was unlinked; its writes arrive by node. The file still has
    // its other name, which must show them, as on a local filesystem.
    let lower = &[
        Item::File("f", b"shared", 0o644),
        Item::Hardlink("twin", "f"),
    ];
    for_each_setup(lower, |fx| {
        let id = fx.id("f");
        fx.unlink("f").expect("unlink");
        fx.fs
            .write(id, None, 0, b"W", &writer())
            .expect("write by node");
        assert_eq!(
            fx.fs.read(id, None, 0, 100).expect("read by node"),
            b"Whared"
        );
        assert_eq!(fx.read("twin"), b"Whared");
        assert_eq!(fx.upper_bytes("twin"), b"Whared");
        assert!(fx.whiteout_in_upper("f"));
    });
}

#[test]
fn an_unlinked_name_of_a_pair_whose_other_name_was_copied_up_writes_to_that_copy() {
    let lower = &[
        Item::File("f", b"shared", 0o644),
        Item::Dir("d", 0o755),
        Item::Hardlink("d/twin", "f"),
    ];
    for_each_setup(lower, |fx| {
        let id = fx.id("f");
        fx.unlink("f").expect("unlink");
        // The directory moves with a redirect: `twin` stays in the lower,
        // under another union path than its layer's.
        fx.rename("d", "moved", 0).expect("rename");
        fx.fs
            .write(id, None, 0, b"W", &writer())
            .expect("write by node");
        assert_eq!(fx.read("moved/twin"), b"Whared");
    });
}
