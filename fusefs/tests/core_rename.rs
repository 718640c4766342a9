//! Renames, driven on the union core without a mount: files across
//! directories and over each other, lower directories (moved alone, with
//! a redirect to their lower content, as kernel overlayfs's
//! `redirect_dir=on` moves them), and the errors rename(2) gives.

mod common;

use common::fixture::{for_each_setup, setups, Fx, Item};

const LOWER: &[Item] = &[
    Item::Dir("a", 0o755),
    Item::File("a/f", b"file f", 0o640),
    Item::File("a/g", b"file g", 0o644),
    Item::Dir("b", 0o755),
    Item::File("b/h", b"file h", 0o644),
    Item::Dir("tree", 0o751),
    Item::Dir("tree/sub", 0o700),
    Item::File("tree/sub/leaf", b"leaf", 0o600),
    Item::File("tree/top", b"top", 0o644),
    Item::Dir("empty", 0o755),
];

#[test]
fn renaming_a_lower_file_across_directories_moves_it_and_whites_out_the_old_name() {
    for_each_setup(LOWER, |fx| {
        let ino = fx.stat("a/f").ino;
        fx.rename("a/f", "b/f", 0).expect("rename");
        assert_eq!(fx.names("a"), ["g"]);
        assert_eq!(fx.names("b"), ["f", "h"]);
        assert_eq!(fx.read("b/f"), b"file f");
        let st = fx.stat("b/f");
        assert_eq!((st.ino, st.entry.mode), (ino, 0o640), "the same file moved");
        assert!(fx.whiteout_in_upper("a/f"));
        assert_eq!(fx.upper_bytes("b/f"), b"file f");
        assert_eq!(fx.upper_mode("b/f"), 0o640);
    });
}

#[test]
fn renaming_over_an_existing_file_replaces_it() {
    for_each_setup(LOWER, |fx| {
        fx.rename("a/f", "a/g", 0).expect("rename");
        assert_eq!(fx.names("a"), ["g"]);
        assert_eq!(fx.read("a/g"), b"file f");
        assert!(fx.whiteout_in_upper("a/f"));
        assert_eq!(fx.upper_bytes("a/g"), b"file f");
        assert!(
            !fx.upper_path("a/.wh.g").exists(),
            "the new name is not hidden"
        );
    });
}

#[test]
fn renaming_an_upper_file_onto_a_whited_out_name_brings_the_name_back() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("b/h").expect("unlink");
        fx.create("b/new", b"n");
        fx.rename("b/new", "b/h", 0).expect("rename");
        assert_eq!(fx.names("b"), ["h"]);
        assert_eq!(fx.read("b/h"), b"n");
        assert!(!fx.whiteout_in_upper("b/h"));
        assert!(
            !fx.whiteout_in_upper("b/new"),
            "born in the upper: no whiteout"
        );
        assert_eq!(fx.upper_bytes("b/h"), b"n");
    });
}

#[test]
fn renaming_a_lower_directory_moves_it_alone_with_a_redirect_to_its_lower_content() {
    for_each_setup(LOWER, |fx| {
        fx.rename("tree", "b/moved", 0)
            .expect("rename of a lower directory");
        assert!(!fx.exists("tree"));
        assert_eq!(fx.names("b"), ["h", "moved"]);
        assert_eq!(fx.names("b/moved"), ["sub", "top"]);
        assert_eq!(fx.names("b/moved/sub"), ["leaf"]);
        assert_eq!(fx.read("b/moved/sub/leaf"), b"leaf");
        assert_eq!(fx.stat("b/moved").entry.mode, 0o751);
        assert_eq!(fx.stat("b/moved/sub").entry.mode, 0o700);
        // The upper holds the directory alone, with a redirect to where
        // its content is (from the root: it changed directories), and a
        // whiteout for the old name; nothing of its content was copied.
        assert!(fx.whiteout_in_upper("tree"));
        assert_eq!(fx.redirect_in_upper("b/moved").as_deref(), Some("/tree"));
        assert!(!fx.opaque_in_upper("b/moved"));
        assert!(!fx.in_upper("b/moved/sub") && !fx.in_upper("b/moved/top"));
        assert_eq!(fx.upper_mode("b/moved"), 0o751);
    });
}

#[test]
fn a_directory_renamed_over_an_empty_lower_directory_shows_only_its_own_content() {
    for_each_setup(LOWER, |fx| {
        fx.rename("tree", "empty", 0)
            .expect("rename over an empty directory");
        assert_eq!(fx.names(""), ["a", "b", "empty"]);
        assert_eq!(fx.names("empty"), ["sub", "top"]);
        // Within one directory: the old name, bare.
        assert_eq!(fx.redirect_in_upper("empty").as_deref(), Some("tree"));
    });
}

#[test]
fn rename_refuses_what_rename_2_refuses() {
    for_each_setup(LOWER, |fx| {
        assert_eq!(fx.rename("a", "b", 0), Err(libc::ENOTEMPTY));
        assert_eq!(fx.rename("a/f", "b", 0), Err(libc::EISDIR));
        assert_eq!(fx.rename("a", "b/h", 0), Err(libc::ENOTDIR));
        assert_eq!(fx.rename("tree", "tree/sub/x", 0), Err(libc::EINVAL));
        assert_eq!(fx.rename("a/nope", "b/x", 0), Err(libc::ENOENT));
        let noreplace = libc::RENAME_NOREPLACE;
        assert_eq!(fx.rename("a/f", "a/g", noreplace), Err(libc::EEXIST));
        // Nothing changed, in the union or in the upper.
        assert_eq!(fx.names("a"), ["f", "g"]);
        assert_eq!(fx.read("a/g"), b"file g");
        assert!(!fx.whiteout_in_upper("a/f"));
    });
}

#[test]
fn rename_exchange_swaps_a_file_and_a_directory() {
    for_each_setup(LOWER, |fx| {
        let exchange = libc::RENAME_EXCHANGE;
        fx.rename("b/h", "tree", exchange).expect("exchange");
        assert_eq!(fx.read("tree"), b"file h");
        assert_eq!(fx.names("b/h"), ["sub", "top"]);
        assert_eq!(fx.read("b/h/sub/leaf"), b"leaf");
        assert_eq!(fx.redirect_in_upper("b/h").as_deref(), Some("/tree"));
        assert!(!fx.in_upper("b/h/sub"), "moved, not copied");
    });
}

#[test]
fn rename_exchange_of_two_lower_directories_moves_neither_content() {
    for setup in setups() {
        eprintln!("setup: {setup:?}");
        let mut fx = Fx::new(setup, &[LOWER]);
        fx.rename("a", "b", libc::RENAME_EXCHANGE)
            .expect("exchange");
        assert_eq!(fx.names("a"), ["h"]);
        assert_eq!(fx.names("b"), ["f", "g"]);
        assert_eq!(fx.read("b/f"), b"file f");
        assert_eq!(fx.redirect_in_upper("a").as_deref(), Some("b"));
        assert_eq!(fx.redirect_in_upper("b").as_deref(), Some("a"));
        fx.remount();
        assert_eq!(fx.names("a"), ["h"]);
        assert_eq!(fx.read("a/h"), b"file h");
    }
}

#[test]
fn a_node_id_follows_its_file_through_a_rename() {
    for_each_setup(LOWER, |fx| {
        let id = fx.id("a/f");
        fx.rename("a/f", "b/f", 0).expect("rename");
        assert_eq!(fx.read_id(id), b"file f");
        let (fh, _) = fx.fs.open(id, libc::O_WRONLY).expect("open by id");
        fx.fs
            .write(id, Some(fh), 0, b"FILE", &common::fixture::writer())
            .expect("write");
        fx.fs.release(fh);
        assert_eq!(fx.read("b/f"), b"FILE f");
    });
}

#[test]
fn a_new_directory_where_a_lower_one_was_moved_away_is_empty() {
    for_each_setup(LOWER, |fx| {
        fx.rename("tree", "b/moved", 0).expect("rename");
        fx.mkdir("tree", 0o755).expect("mkdir");
        assert_eq!(fx.names("tree"), Vec::<String>::new());
        assert!(fx.opaque_in_upper("tree"));
        assert_eq!(fx.names("b/moved"), ["sub", "top"]);
    });
}

#[test]
fn a_directory_moved_onto_a_removed_lower_directory_shows_only_its_own_content() {
    for_each_setup(LOWER, |fx| {
        fx.rmdir("empty").expect("rmdir");
        fx.unlink("a/f").expect("unlink");
        fx.unlink("a/g").expect("unlink");
        fx.rmdir("a")
            .expect("rmdir of a directory emptied in the union");
        fx.rename("tree", "a", 0)
            .expect("rename onto a removed name");
        assert_eq!(fx.names(""), ["a", "b"]);
        assert_eq!(fx.names("a"), ["sub", "top"]);
        assert!(!fx.whiteout_in_upper("a"));
        assert!(fx.whiteout_in_upper("tree"));
        assert_eq!(fx.redirect_in_upper("a").as_deref(), Some("tree"));
    });
}

#[test]
fn node_ids_under_a_moved_directory_follow_it() {
    for_each_setup(LOWER, |fx| {
        let leaf = fx.id("tree/sub/leaf");
        fx.rename("tree", "b/moved", 0).expect("rename");
        assert_eq!(fx.read_id(leaf), b"leaf");
        let sa = fusefs::union_fs::SetAttr {
            mode: Some(0o640),
            ..Default::default()
        };
        fx.fs.setattr(leaf, &sa).expect("chmod by node");
        assert_eq!(fx.stat("b/moved/sub/leaf").entry.mode, 0o640);
        assert_eq!(fx.upper_mode("b/moved/sub/leaf"), 0o640);
    });
}

#[test]
fn a_renamed_directory_renamed_again_and_back_keeps_showing_its_lower_content() {
    for_each_setup(LOWER, |fx| {
        fx.rename("tree", "t2", 0).expect("rename within the root");
        assert_eq!(fx.redirect_in_upper("t2").as_deref(), Some("tree"));
        // Across directories the bare name becomes a path from the root.
        fx.rename("t2", "b/t3", 0)
            .expect("move a renamed directory");
        assert_eq!(fx.redirect_in_upper("b/t3").as_deref(), Some("/tree"));
        assert_eq!(fx.names("b/t3/sub"), ["leaf"]);
        // An absolute redirect stays whatever the next move.
        fx.rename("b/t3", "b/t4", 0).expect("rename within b");
        fx.rename("b/t4", "tree", 0)
            .expect("move back to the old name");
        assert_eq!(fx.names(""), ["a", "b", "empty", "tree"]);
        assert_eq!(fx.names("b"), ["h"]);
        assert_eq!(fx.names("tree"), ["sub", "top"]);
        assert_eq!(fx.read("tree/top"), b"top");
        assert!(!fx.whiteout_in_upper("tree"));
        assert!(!fx.in_upper("tree/sub"));
    });
}

#[test]
fn changes_under_a_renamed_directory_land_under_its_new_name() {
    for_each_setup(LOWER, |fx| {
        fx.rename("tree", "b/moved", 0).expect("rename");
        fx.write("b/moved/sub/leaf", 0, b"LE");
        fx.unlink("b/moved/top").expect("unlink a lower file");
        fx.create("b/moved/new", b"n");
        assert_eq!(fx.names("b/moved"), ["new", "sub"]);
        assert_eq!(fx.read("b/moved/sub/leaf"), b"LEaf");
        assert_eq!(fx.upper_bytes("b/moved/sub/leaf"), b"LEaf");
        assert!(fx.whiteout_in_upper("b/moved/top"));
        if let Some(p) = fx.lower_path(0, "tree/sub/leaf") {
            assert_eq!(std::fs::read(p).expect("lower file"), b"leaf");
        }
        // Emptied in the union, it goes with rmdir, and its old name
        // stays deleted.
        fx.unlink("b/moved/sub/leaf").expect("unlink");
        fx.rmdir("b/moved/sub").expect("rmdir");
        fx.unlink("b/moved/new").expect("unlink");
        fx.rmdir("b/moved").expect("rmdir of the renamed directory");
        assert_eq!(fx.names("b"), ["h"]);
        assert_eq!(fx.names(""), ["a", "b", "empty"]);
        assert!(!fx.in_upper("b/moved"));
    });
}

#[test]
fn a_directory_moved_into_an_opaque_directory_keeps_its_lower_content() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("b/h").expect("unlink");
        fx.rmdir("b").expect("rmdir");
        fx.mkdir("b", 0o755)
            .expect("mkdir over a removed lower directory");
        assert!(fx.opaque_in_upper("b"));
        fx.rename("tree", "b/moved", 0).expect("rename");
        assert_eq!(fx.redirect_in_upper("b/moved").as_deref(), Some("/tree"));
        assert_eq!(fx.names("b"), ["moved"]);
        assert_eq!(fx.names("b/moved"), ["sub", "top"]);
        assert_eq!(fx.read("b/moved/sub/leaf"), b"leaf");
    });
}

#[test]
fn a_renamed_directory_shows_the_same_tree_after_a_remount() {
    for setup in setups() {
        eprintln!("setup: {setup:?}");
        let mut fx = Fx::new(setup, &[LOWER]);
        fx.rename("tree", "t2", 0).expect("rename");
        fx.rename("t2", "b/moved", 0).expect("move");
        fx.rename("a", "b/moved/sub/a", 0).expect("move into it");
        assert!(!fx.in_upper("b/moved/sub/a/f"), "moved, not copied");
        fx.remount();
        assert_eq!(fx.names(""), ["b", "empty"]);
        assert_eq!(fx.names("b/moved"), ["sub", "top"]);
        assert_eq!(fx.names("b/moved/sub"), ["a", "leaf"]);
        assert_eq!(fx.names("b/moved/sub/a"), ["f", "g"]);
        assert_eq!(fx.read("b/moved/sub/a/f"), b"file f");
        assert_eq!(fx.stat("b/moved/sub/a/f").entry.mode, 0o640);
    }
}

#[test]
fn a_directory_merged_from_two_lowers_moves_with_the_content_of_both() {
    let top: &[Item] = &[
        Item::Dir("d", 0o755),
        Item::File("d/top", b"t", 0o644),
        Item::Whiteout("d/gone"),
    ];
    let bottom: &[Item] = &[
        Item::Dir("d", 0o755),
        Item::File("d/bottom", b"b", 0o644),
        Item::File("d/gone", b"g", 0o644),
        Item::Dir("x", 0o755),
    ];
    for setup in setups() {
        eprintln!("setup: {setup:?}");
        let mut fx = Fx::new(setup, &[top, bottom]);
        fx.rename("d", "x/moved", 0).expect("rename");
        assert_eq!(fx.names("x/moved"), ["bottom", "top"]);
        assert_eq!(fx.read("x/moved/bottom"), b"b");
        assert_eq!(fx.redirect_in_upper("x/moved").as_deref(), Some("/d"));
        fx.remount();
        assert_eq!(fx.names("x/moved"), ["bottom", "top"]);
        assert_eq!(fx.names(""), ["x"]);
    }
}

/// A rename that would make a path the server holds PATH_MAX (4096)
/// bytes or longer is ENAMETOOLONG, as a new name that long is: moving a
/// directory one level down at a time made a path of any length.
#[test]
fn a_rename_cannot_push_a_held_path_past_path_max() {
    for_each_setup(&[], |fx| {
        let path = fx.mkdir_to_path_max();
        let name = "n".repeat(255);
        fx.mkdir("t", 0o755).unwrap();
        let moved = format!("t/{name}");
        assert_eq!(fx.rename(&name, &moved, 0), Err(libc::ENAMETOOLONG));
        assert!(fx.exists(&path), "the tree stayed where it was");
        // A move that keeps every path under the limit is made.
        fx.rename(&format!("{name}/{name}"), "shallow", 0).unwrap();
        assert!(fx.exists("shallow"));
    });
}
