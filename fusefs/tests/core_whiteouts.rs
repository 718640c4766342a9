//! Deletions and opaque directories, driven on the union core without a
//! mount: what the container sees, and the whiteouts and opaque markers the
//! upper records in its format.

mod common;

use common::fixture::{caller, errno, for_each_setup, setups, Fx, Item};

const LOWER: &[Item] = &[
    Item::Dir("d", 0o755),
    Item::File("d/x", b"x", 0o644),
    Item::File("d/y", b"y", 0o644),
    Item::File("f", b"lower f", 0o644),
];

#[test]
fn unlinking_a_lower_file_hides_it_and_writes_a_whiteout() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("f").expect("unlink");
        assert!(!fx.exists("f"));
        assert_eq!(fx.names(""), ["d"]);
        assert!(fx.whiteout_in_upper("f"));
        if let Some(lower) = fx.lower_path(0, "f") {
            assert!(lower.exists(), "the lower keeps its file");
        }
    });
}

#[test]
fn whiteout_devices_are_names_of_one_host_inode_and_wh_files_are_not() {
    // A new inode per whiteout cost the host an inode allocation each (see
    // fusefs/src/shared_whiteout.rs); kernel overlayfs links them too. A
    // `.wh.` file shared would read as a hardlink to tar writers.
    for_each_setup(LOWER, |fx| {
        fx.unlink("f").expect("unlink f");
        fx.unlink("d/x").expect("unlink d/x");
        fx.unlink("d/y").expect("unlink d/y");
        let shared = fx.setup.format.is_kernel();
        let f = fx.whiteout_inode("f");
        assert_eq!(fx.whiteout_inode("d/x") == f, shared);
        assert_eq!(fx.whiteout_inode("d/y") == f, shared);
        fx.rmdir("d").expect("rmdir");
        assert_eq!(fx.whiteout_inode("d") == f, shared);
    });
}

#[test]
fn a_whiteout_is_never_linked_to_what_took_the_name_of_an_earlier_one() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("f").expect("unlink f");
        // The only name of the shared whiteout goes, and a file takes it.
        fx.create("f", b"new");
        fx.unlink("d/x").expect("unlink d/x");
        assert!(!fx.exists("d/x"));
        assert_ne!(fx.whiteout_inode("d/x"), fx.host_inode("f"));
        assert_eq!(fx.read("f"), b"new");
        fx.unlink("d/y").expect("unlink d/y");
        if fx.setup.format.is_kernel() {
            assert_eq!(fx.whiteout_inode("d/y"), fx.whiteout_inode("d/x"));
        }
        assert_eq!(fx.names(""), ["d", "f"]);
        assert_eq!(fx.names("d"), Vec::<String>::new());
    });
}

#[test]
fn creating_a_whited_out_name_again_removes_the_whiteout() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("f").expect("unlink");
        fx.create("f", b"new");
        assert_eq!(fx.read("f"), b"new");
        assert_eq!(fx.names(""), ["d", "f"]);
        assert!(!fx.whiteout_in_upper("f"));
        assert_eq!(fx.upper_bytes("f"), b"new");
        let dotted = fx.upper_path(".wh.f");
        assert!(!dotted.exists(), "no .wh. file left beside the new one");
    });
}

#[test]
fn unlinking_a_file_born_in_the_upper_leaves_no_whiteout() {
    for_each_setup(LOWER, |fx| {
        fx.create("d/new", b"");
        fx.unlink("d/new").expect("unlink");
        assert_eq!(fx.names("d"), ["x", "y"]);
        assert!(!fx.in_upper("d/new"));
        assert!(!fx.whiteout_in_upper("d/new"));
    });
}

#[test]
fn rmdir_of_a_lower_directory_needs_it_empty_in_the_union() {
    for_each_setup(LOWER, |fx| {
        assert_eq!(fx.rmdir("d"), Err(libc::ENOTEMPTY));
        fx.unlink("d/x").expect("unlink x");
        assert_eq!(fx.rmdir("d"), Err(libc::ENOTEMPTY));
        fx.unlink("d/y").expect("unlink y");
        assert!(fx.whiteout_in_upper("d/x") && fx.whiteout_in_upper("d/y"));
        fx.rmdir("d")
            .expect("rmdir of a directory empty in the union");
        assert!(!fx.exists("d"));
        assert!(fx.whiteout_in_upper("d"));
    });
}

#[test]
fn mkdir_where_a_lower_directory_was_removed_gives_an_empty_opaque_directory() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("d/x").expect("unlink x");
        fx.unlink("d/y").expect("unlink y");
        fx.rmdir("d").expect("rmdir");
        fx.mkdir("d", 0o700).expect("mkdir");
        assert_eq!(fx.names("d"), Vec::<String>::new());
        assert!(!fx.exists("d/x"));
        assert_eq!(fx.stat("d").entry.mode, 0o700 & !common::fixture::UMASK);
        assert!(fx.opaque_in_upper("d"));
        assert!(!fx.whiteout_in_upper("d"));
        // The old children's whiteouts went with the old directory.
        assert!(!fx.upper_path("d/.wh.x").exists());
    });
}

#[test]
fn a_whiteout_in_an_upper_layer_hides_the_name_below() {
    let top: &[Item] = &[Item::Dir("d", 0o755), Item::Whiteout("d/x")];
    for setup in setups() {
        let fx = Fx::new(setup, &[top, LOWER]);
        assert_eq!(fx.names("d"), ["y"]);
        assert_eq!(fx.try_id("d/x"), Err(libc::ENOENT));
        // The name is free: creating it needs no whiteout in the upper.
        fx.create("d/x", b"again");
        assert_eq!(fx.names("d"), ["x", "y"]);
        assert_eq!(fx.read("d/x"), b"again");
    }
}

#[test]
fn an_opaque_lower_directory_hides_the_layers_below() {
    let top: &[Item] = &[Item::OpaqueDir("d"), Item::File("d/z", b"z", 0o644)];
    for setup in setups() {
        let fx = Fx::new(setup, &[top, LOWER]);
        assert_eq!(fx.names("d"), ["z"]);
        assert_eq!(fx.try_id("d/x"), Err(libc::ENOENT));
        // Copying it up keeps it opaque to the container.
        fx.create("d/n", b"");
        assert_eq!(fx.names("d"), ["n", "z"]);
        assert_eq!(fx.try_id("d/x"), Err(libc::ENOENT));
    }
}

#[test]
fn overlay_names_are_neither_found_nor_created() {
    for_each_setup(LOWER, |fx| {
        fx.unlink("f").expect("unlink");
        assert_eq!(fx.try_id(".wh.f"), Err(libc::ENOENT));
        let r = fx.fs.mkdir(
            fusefs::NodeId::ROOT,
            b".wh.f",
            0o755,
            common::fixture::caller(),
        );
        assert_eq!(errno(r), libc::EINVAL);
        assert!(fx.whiteout_in_upper("f"), "the whiteout is untouched");
    });
}

#[test]
fn a_char_device_beside_shared_whiteouts_is_a_file_not_a_whiteout() {
    // Listings know the shared whiteout by its inode number, without a
    // stat: a real device among its names must still count.
    for_each_setup(LOWER, |fx| {
        fx.unlink("d/x").expect("unlink x");
        fx.unlink("d/y").expect("unlink y");
        let (parent, name) = fx.parent("d/null");
        let dev = libc::makedev(1, 3) as u32;
        fx.fs
            .mknod(parent, name, libc::S_IFCHR | 0o666, dev, caller())
            .expect("mknod");
        assert_eq!(fx.names("d"), ["null"]);
        assert_eq!(fx.rmdir("d"), Err(libc::ENOTEMPTY));
        fx.unlink("d/null").expect("unlink the device");
        fx.rmdir("d").expect("rmdir once only whiteouts are left");
        assert!(!fx.exists("d"));
    });
}

#[test]
fn a_remembered_upper_directory_shows_what_its_host_directory_has_now() {
    // A directory the upper serves is read again by one stat, the rest
    // remembered: its links and times must follow, and a mode changed on
    // the host takes a full resolution again.
    for_each_setup(LOWER, |fx| {
        fx.mkdir("n", 0o755).expect("mkdir n");
        fx.mkdir("n/a", 0o755).expect("mkdir n/a");
        assert_eq!(fx.stat("n").entry.nlink, 3);
        fx.rmdir("n/a").expect("rmdir n/a");
        assert_eq!(fx.stat("n").entry.nlink, 2);
        let host = fx.upper_path("n");
        let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::open(&host)
            .and_then(|d| d.set_modified(then))
            .expect("set the mtime on the host");
        assert_eq!(fx.stat("n").entry.mtime_ns, 1_000_000_000 * 1_000_000_000);
        if fx.setup.format.is_kernel() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o700))
                .expect("chmod on the host");
            assert_eq!(fx.stat("n").entry.mode, 0o700);
        }
    });
}
