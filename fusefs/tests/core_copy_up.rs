//! Copy-up, driven on the union core without a mount: the first change of
//! a lower file moves it into the upper with its content and metadata, and
//! the lower never changes.

mod common;

use common::fixture::{for_each_setup, Item};
use fusefs::union_fs::SetAttr;
use fusefs::TimeSet;

const LOWER: &[Item] = &[
    Item::Dir("etc", 0o750),
    Item::File("etc/conf", b"lower content", 0o640),
    Item::File("top", b"0123456789", 0o600),
];

#[test]
fn writing_to_a_lower_file_copies_it_up_and_leaves_the_lower_unchanged() {
    for_each_setup(LOWER, |fx| {
        let ino = fx.stat("etc/conf").ino;
        fx.write("etc/conf", 0, b"LOWER");

        assert_eq!(fx.read("etc/conf"), b"LOWER content");
        let st = fx.stat("etc/conf");
        assert_eq!((st.entry.mode, st.ino), (0o640, ino), "mode and inode kept");
        // The upper has the whole file, its mode, and its parent directory
        // with the parent's mode, merging (not opaque).
        assert_eq!(fx.upper_bytes("etc/conf"), b"LOWER content");
        assert_eq!(fx.upper_mode("etc/conf"), 0o640);
        assert_eq!(fx.upper_mode("etc"), 0o750);
        assert!(!fx.opaque_in_upper("etc"));
        if let Some(lower) = fx.lower_path(0, "etc/conf") {
            assert_eq!(std::fs::read(lower).expect("lower file"), b"lower content");
        }
    });
}

#[test]
fn opening_a_lower_file_for_reading_copies_nothing_up() {
    for_each_setup(LOWER, |fx| {
        assert_eq!(fx.read("etc/conf"), b"lower content");
        assert!(!fx.in_upper("etc/conf"));
        assert!(!fx.in_upper("etc"));
    });
}

#[test]
fn chmod_of_a_lower_file_copies_it_up_with_its_content() {
    for_each_setup(LOWER, |fx| {
        let sa = SetAttr {
            mode: Some(0o604),
            ..SetAttr::default()
        };
        let a = fx.fs.setattr(fx.id("top"), &sa).expect("chmod");
        assert_eq!(a.node.entry.mode, 0o604);
        assert_eq!(fx.upper_mode("top"), 0o604);
        assert_eq!(fx.upper_bytes("top"), b"0123456789");
        assert_eq!(fx.read("top"), b"0123456789");
    });
}

#[test]
fn truncating_a_lower_file_copies_up_only_what_stays() {
    for_each_setup(LOWER, |fx| {
        let sa = SetAttr {
            size: Some(4),
            ..SetAttr::default()
        };
        assert_eq!(
            fx.fs
                .setattr(fx.id("top"), &sa)
                .expect("truncate")
                .node
                .entry
                .size,
            4
        );
        assert_eq!(fx.read("top"), b"0123");
        assert_eq!(fx.upper_bytes("top"), b"0123");
        if let Some(lower) = fx.lower_path(0, "top") {
            assert_eq!(std::fs::read(lower).expect("lower file"), b"0123456789");
        }
    });
}

#[test]
fn opening_with_o_trunc_copies_up_an_empty_file() {
    for_each_setup(LOWER, |fx| {
        let id = fx.id("etc/conf");
        let (fh, _) = fx
            .fs
            .open(id, libc::O_WRONLY | libc::O_TRUNC)
            .expect("open");
        fx.fs.release(fh);
        assert_eq!(fx.read("etc/conf"), b"");
        assert_eq!(fx.upper_bytes("etc/conf"), b"");
        assert_eq!(fx.upper_mode("etc/conf"), 0o640);
    });
}

#[test]
fn a_new_file_in_a_lower_directory_copies_up_the_directory_alone() {
    for_each_setup(LOWER, |fx| {
        fx.create("etc/new", b"fresh");
        assert_eq!(fx.names("etc"), ["conf", "new"]);
        assert_eq!(fx.upper_bytes("etc/new"), b"fresh");
        assert_eq!(fx.upper_mode("etc/new"), 0o644, "0666 under umask 022");
        assert!(fx.in_upper("etc"));
        assert!(!fx.in_upper("etc/conf"), "siblings stay in the lower");
        assert_eq!(fx.read("etc/conf"), b"lower content");
    });
}

#[test]
fn a_symlink_copied_up_by_chown_keeps_its_target() {
    let lower = &[Item::Symlink("link", "etc/conf"), Item::Dir("etc", 0o755)];
    for_each_setup(lower, |fx| {
        let sa = SetAttr {
            uid: Some(7),
            gid: Some(8),
            ..SetAttr::default()
        };
        let a = fx.fs.setattr(fx.id("link"), &sa).expect("lchown");
        assert_eq!((a.node.entry.uid, a.node.entry.gid), (7, 8));
        assert_eq!(
            fx.fs.readlink(fx.id("link")).expect("readlink"),
            b"etc/conf"
        );
        assert!(fx.in_upper("link"));
        // The kernel format keeps a real symlink; the rootless one a file
        // holding the target.
        if fx.setup.format.is_kernel() {
            let t = std::fs::read_link(fx.upper_path("link")).expect("host symlink");
            assert_eq!(t, std::path::Path::new("etc/conf"));
        } else {
            assert_eq!(fx.upper_bytes("link"), b"etc/conf");
        }
    });
}

#[test]
fn io_by_node_without_a_handle_copies_up_on_the_first_write() {
    // A mount without OPEN requests reads and writes by node (no handle).
    for_each_setup(LOWER, |fx| {
        let id = fx.id("top");
        assert_eq!(
            fx.fs.read(id, None, 0, 100).expect("read by node"),
            b"0123456789"
        );
        assert!(!fx.in_upper("top"));
        let w = common::fixture::writer();
        fx.fs.write(id, None, 2, b"ab", &w).expect("write by node");
        assert_eq!(
            fx.fs.read(id, None, 0, 100).expect("read by node"),
            b"01ab456789"
        );
        assert_eq!(fx.upper_bytes("top"), b"01ab456789");
        assert_eq!(fx.read("top"), b"01ab456789");
    });
}

#[test]
fn chmod_of_a_lower_directory_copies_it_up_still_merging_its_lower_children() {
    for_each_setup(LOWER, |fx| {
        let sa = SetAttr {
            mode: Some(0o711),
            ..SetAttr::default()
        };
        fx.fs.setattr(fx.id("etc"), &sa).expect("chmod");
        assert_eq!(fx.stat("etc").entry.mode, 0o711);
        assert_eq!(fx.upper_mode("etc"), 0o711);
        assert!(!fx.opaque_in_upper("etc"));
        assert_eq!(fx.names("etc"), ["conf"]);
        assert!(!fx.in_upper("etc/conf"));
    });
}

/// A write at the bottom of a lower tree 2,000 levels deep (4,000 bytes
/// of path, which an image may carry) copies every level up. The copy-up
/// recursed once per level and overflowed the serving thread's stack
/// (a dead mount for the whole container).
#[test]
fn a_write_2000_levels_down_copies_every_level_up() {
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
    let mut items: Vec<Item> = (1..=2000)
        .map(|n| Item::Dir(leak(vec!["d"; n].join("/")), 0o755))
        .collect();
    let file = leak(format!("{}/f", vec!["d"; 2000].join("/")));
    items.push(Item::File(file, b"deep", 0o644));
    let items: &'static [Item] = Box::leak(items.into_boxed_slice());
    for_each_setup(items, |fx| {
        fx.write(file, 4, b"er");
        assert_eq!(fx.read(file), b"deeper");
        assert!(fx.in_upper(file) && fx.in_upper("d/d/d"));
    });
}

/// A SETATTR of times alone answers from one host stat and the node it
/// resolved before (tar's utimensat of every file it makes): what it
/// answers is what a fresh resolution shows, for an upper file, a
/// copied-up one (its inode number from an xattr) and one of several
/// names (its link count partly from the lower).
#[test]
fn setting_times_answers_what_a_fresh_resolution_shows() {
    let items = &[
        Item::File("top", b"0123456789", 0o600),
        Item::File("linked", b"two names", 0o644),
        Item::Hardlink("other", "linked"),
        // Copied up by the SETATTR itself, which answers from the copy.
        Item::File("untouched", b"lower", 0o4755),
        Item::File("pair", b"also two names", 0o640),
        Item::Hardlink("pair2", "pair"),
    ];
    for_each_setup(items, |fx| {
        fx.create("new", b"made here");
        fx.write("top", 0, b"X");
        fx.write("linked", 0, b"Y");
        let paths = ["new", "top", "linked", "untouched", "pair"];
        for (i, path) in paths.into_iter().enumerate() {
            let t = 1_600_000_000_000_000_000 + i as i64 * 1_000_000_007;
            let sa = SetAttr {
                mtime: Some(TimeSet::At(t)),
                atime: Some(TimeSet::At(t)),
                ..SetAttr::default()
            };
            let answered = fx.fs.setattr(fx.id(path), &sa).expect("utimensat").node;
            assert_eq!(answered.entry.mtime_ns, t, "{path}");
            let fresh = fx.stat(path);
            assert_eq!(format!("{answered:?}"), format!("{fresh:?}"), "{path}");
        }
    });
}
