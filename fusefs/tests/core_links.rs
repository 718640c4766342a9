//! Hardlinks, driven on the union core without a mount: names made in the
//! container and names a lower layer already shares stay one file across
//! copy-up.

mod common;

use common::fixture::{errno, for_each_setup, Item};
use fusefs::NodeId;
use std::os::unix::fs::MetadataExt;

const LOWER: &[Item] = &[
    Item::Dir("d", 0o755),
    Item::File("d/f", b"shared", 0o644),
    Item::File("solo", b"solo", 0o600),
    Item::Hardlink("d/twin", "d/f"),
];

#[test]
fn a_hardlink_of_a_lower_file_shares_a_write_through_either_name() {
    for_each_setup(LOWER, |fx| {
        let a = fx
            .fs
            .link(fx.id("solo"), NodeId::ROOT, b"alias")
            .expect("link of a lower file");
        assert_eq!(a.id, fx.id("solo"), "one node for both names");
        fx.write("alias", 0, b"SO");
        assert_eq!(fx.read("solo"), b"SOlo");
        assert_eq!(fx.stat("solo").entry.nlink, 2);
        assert_eq!(fx.stat("alias").entry.nlink, 2);
        // The upper holds one inode under both names.
        let ino = |p: &str| std::fs::metadata(fx.upper_path(p)).expect("upper").ino();
        assert_eq!(ino("solo"), ino("alias"));
        assert_eq!(fx.upper_bytes("solo"), b"SOlo");
        if let Some(lower) = fx.lower_path(0, "solo") {
            assert_eq!(std::fs::read(lower).expect("lower"), b"solo");
        }
    });
}

#[test]
fn names_a_lower_layer_shares_stay_one_file_after_a_write_through_one() {
    for_each_setup(LOWER, |fx| {
        assert_eq!(fx.stat("d/f").ino, fx.stat("d/twin").ino);
        assert_eq!(fx.stat("d/f").entry.nlink, 2);
        fx.write("d/twin", 0, b"SH");
        assert_eq!(fx.read("d/f"), b"SHared");
        assert_eq!(fx.stat("d/f").ino, fx.stat("d/twin").ino);
        assert_eq!(fx.stat("d/f").entry.nlink, 2);
        let ino = |p: &str| std::fs::metadata(fx.upper_path(p)).expect("upper").ino();
        assert_eq!(ino("d/f"), ino("d/twin"));
    });
}

#[test]
fn unlinking_one_name_of_a_lower_pair_keeps_the_count_of_the_other() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("d/f").expect("unlink");
        assert!(fx.whiteout_in_upper("d/f"));
        assert_eq!(fx.read("d/twin"), b"shared");
        // The lower still counts both; once copied up, the deleted name is
        // one the upper cannot hold but still counts (as overlayfs does).
        fx.write("d/twin", 0, b"S");
        assert_eq!(fx.read("d/twin"), b"Shared");
        assert_eq!(fx.stat("d/twin").entry.nlink, 2);
    });
}

#[test]
fn a_directory_cannot_be_hardlinked_and_an_existing_name_is_not_replaced() {
    for_each_setup(LOWER, |fx| {
        assert_eq!(
            errno(fx.fs.link(fx.id("d"), NodeId::ROOT, b"d2")),
            libc::EPERM
        );
        let d = fx.id("d");
        assert_eq!(errno(fx.fs.link(fx.id("solo"), d, b"f")), libc::EEXIST);
        assert_eq!(fx.read("d/f"), b"shared");
        assert!(!fx.in_upper("d2") && !fx.in_upper("solo"));
    });
}

#[test]
fn renaming_one_name_of_a_lower_pair_keeps_both_names_on_one_file() {
    for_each_setup(LOWER, |fx| {
        fx.rename("d/f", "moved", 0).expect("rename");
        assert_eq!(fx.names("d"), ["twin"]);
        assert_eq!(fx.stat("moved").ino, fx.stat("d/twin").ino);
        assert_eq!(fx.stat("moved").entry.nlink, 2);
        fx.write("moved", 0, b"M");
        assert_eq!(fx.read("d/twin"), b"Mhared");
        assert!(fx.whiteout_in_upper("d/f"));
    });
}

#[test]
fn a_lower_directory_moved_keeps_its_file_linked_to_a_name_outside() {
    let lower = &[
        Item::Dir("tree", 0o755),
        Item::File("tree/x", b"linked", 0o644),
        Item::Hardlink("out", "tree/x"),
    ];
    for_each_setup(lower, |fx| {
        fx.rename("tree", "moved", 0)
            .expect("rename of a lower directory");
        assert_eq!(fx.stat("moved/x").ino, fx.stat("out").ino);
        fx.write("moved/x", 0, b"L");
        assert_eq!(fx.read("out"), b"Linked");
        let ino = |p: &str| std::fs::metadata(fx.upper_path(p)).expect("upper").ino();
        assert_eq!(ino("moved/x"), ino("out"));
    });
}

#[test]
fn a_write_through_a_name_outside_shows_under_a_moved_directory() {
    let lower = &[
        Item::Dir("tree", 0o755),
        Item::File("tree/x", b"linked", 0o644),
        Item::Hardlink("out", "tree/x"),
    ];
    for_each_setup(lower, |fx| {
        fx.rename("tree", "moved", 0)
            .expect("rename of a lower directory");
        // `out`'s copy-up finds its other name under the moved directory,
        // not at the path its layer has.
        fx.write("out", 0, b"L");
        assert_eq!(fx.read("moved/x"), b"Linked");
        let ino = |p: &str| std::fs::metadata(fx.upper_path(p)).expect("upper").ino();
        assert_eq!(ino("moved/x"), ino("out"));
    });
}

#[test]
fn linking_a_name_of_a_lower_pair_makes_a_third_name_of_the_same_file() {
    for_each_setup(LOWER, |fx| {
        let a = fx
            .fs
            .link(fx.id("d/f"), NodeId::ROOT, b"third")
            .expect("link");
        assert_eq!(a.node.entry.nlink, 3);
        fx.write("third", 0, b"T");
        assert_eq!(fx.read("d/f"), b"Thared");
        assert_eq!(fx.read("d/twin"), b"Thared");
        assert_eq!(fx.stat("d/twin").entry.nlink, 3);
    });
}
