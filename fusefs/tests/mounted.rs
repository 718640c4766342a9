//! Real mounts through /dev/fuse. They need root (CI runs as root): without
//! it they fail with the reason, they never skip.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use fusefs::{changes, ChangeKind, DirLower, Lower, MountHandle, MountOptions, UpperFormat};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Two lower layers in overlay format:
    /// bottom: etc/passwd, etc/group, bin/sh + bin/bash (hardlinks), d/a,
    ///         d/b, removed, opq/old
    /// top:    .wh.removed, opq/ (opaque) with opq/new, etc/hostname
    fn new() -> Fixture {
        common::require_fuse();
        let dir = tempfile::tempdir().expect("tempdir");
        let b = dir.path().join("bottom");
        let t = dir.path().join("top");
        for d in ["etc", "bin", "d", "opq"] {
            fs::create_dir_all(b.join(d)).expect("mkdir");
        }
        fs::write(b.join("etc/passwd"), "root:x:0:0\n").expect("write");
        fs::write(b.join("etc/group"), "root:x:0:\n").expect("write");
        fs::write(b.join("bin/sh"), "#!shell").expect("write");
        fs::hard_link(b.join("bin/sh"), b.join("bin/bash")).expect("link");
        fs::set_permissions(b.join("bin/sh"), fs::Permissions::from_mode(0o4755)).expect("chmod");
        fs::write(b.join("d/a"), "a").expect("write");
        fs::write(b.join("d/b"), "b").expect("write");
        fs::write(b.join("removed"), "gone").expect("write");
        fs::write(b.join("opq/old"), "old").expect("write");
        fs::create_dir_all(t.join("opq")).expect("mkdir");
        fs::create_dir_all(t.join("etc")).expect("mkdir");
        fs::write(t.join(".wh.removed"), "").expect("write");
        fs::write(t.join("opq/.wh..wh..opq"), "").expect("write");
        fs::write(t.join("opq/new"), "new").expect("write");
        fs::write(t.join("etc/hostname"), "box\n").expect("write");
        fs::create_dir_all(dir.path().join("mnt")).expect("mkdir");
        Fixture { dir }
    }

    fn lowers(&self) -> Vec<Box<dyn Lower>> {
        vec![
            Box::new(DirLower::new(self.dir.path().join("top"))),
            Box::new(DirLower::new(self.dir.path().join("bottom"))),
        ]
    }

    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// A mount writing the rootless format, as a server without root's
    /// privileges does (these tests run as root).
    fn mount(&self, read_only: bool) -> MountHandle {
        self.mount_as(read_only, UpperFormat::Rootless)
    }

    fn mount_as(&self, read_only: bool, format: UpperFormat) -> MountHandle {
        self.mount_with(|o| {
            o.read_only = read_only;
            o.upper_format = Some(format);
        })
    }

    /// Runs `test` on a writable mount in each upper format in turn,
    /// which uid 1000 may use too.
    fn for_each_format_shared(&self, mut test: impl FnMut(UpperFormat)) {
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        for format in [UpperFormat::detect(), UpperFormat::Rootless] {
            let _m = self.mount_with(|o| {
                o.allow_other = true;
                o.upper_format = Some(format);
            });
            test(format);
        }
    }

    /// A writable mount with the options `set` chooses.
    fn mount_with(&self, set: impl FnOnce(&mut MountOptions)) -> MountHandle {
        let mut o = MountOptions::new(self.lowers(), Some(self.upper()));
        set(&mut o);
        let h = fusefs::mount(o, &self.mnt()).expect("mount");
        wait_mounted(&self.mnt());
        h
    }
}

/// Polls /proc/self/mountinfo until the mountpoint shows up.
fn wait_mounted(mnt: &Path) {
    let want = mnt.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        if info
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{want} never appeared in mountinfo"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn lookup_and_readdir_honour_whiteouts_and_opaque_directories() {
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    assert_eq!(names(&m), ["bin", "d", "etc", "opq"]);
    assert!(!m.join("removed").exists());
    assert_eq!(names(&m.join("opq")), ["new"]);
    assert!(!m.join("opq/old").exists());
    assert_eq!(names(&m.join("etc")), ["group", "hostname", "passwd"]);
    assert_eq!(
        fs::read_to_string(m.join("etc/passwd")).expect("read"),
        "root:x:0:0\n"
    );
}

#[test]
fn copy_up_keeps_mode_content_and_hardlinks() {
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    let before = fs::metadata(m.join("bin/sh")).expect("stat");
    assert_eq!(before.nlink(), 2);
    assert_eq!(
        before.ino(),
        fs::metadata(m.join("bin/bash")).expect("stat").ino()
    );
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("bin/sh"))
        .expect("open for append")
        .write_all_at_end(b" more");
    let sh = fs::metadata(m.join("bin/sh")).expect("stat");
    let bash = fs::metadata(m.join("bin/bash")).expect("stat");
    assert_eq!(sh.mode() & 0o7777, 0o4755, "mode survives copy-up");
    assert_eq!(sh.ino(), before.ino(), "inode survives copy-up");
    assert_eq!(bash.ino(), sh.ino(), "hardlinks still share one inode");
    assert_eq!(sh.nlink(), 2);
    assert_eq!(
        fs::read_to_string(m.join("bin/bash")).expect("read"),
        "#!shell more"
    );
    assert_eq!(
        fs::read_to_string(fx.dir.path().join("bottom/bin/sh")).expect("read"),
        "#!shell",
        "the lower layer is never written"
    );
}

trait AppendAll {
    fn write_all_at_end(self, data: &[u8]);
}

impl AppendAll for fs::File {
    fn write_all_at_end(mut self, data: &[u8]) {
        std::io::Write::write_all(&mut self, data).expect("write");
    }
}

#[test]
fn an_upper_removed_under_the_mount_fails_writes_not_the_server() {
    // As when a container is removed while `cp` serves its tree: the
    // root then resolved to a lower, and a copy-up recursed from it to
    // itself until the server's thread overflowed its stack (abort).
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    fs::remove_dir_all(fx.upper()).expect("remove the upper");
    assert!(fs::write(m.join("d/a"), "x").is_err());
    assert!(fs::write(m.join("new-file"), "x").is_err());
    assert_eq!(
        fs::read_to_string(m.join("etc/passwd")).expect("read"),
        "root:x:0:0\n"
    );
}

#[test]
fn deleting_a_lower_file_leaves_a_whiteout() {
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    fs::remove_file(m.join("d/a")).expect("unlink");
    assert!(!m.join("d/a").exists());
    assert_eq!(names(&m.join("d")), ["b"]);
    assert!(fx.upper().join("d/.wh.a").exists());
    assert_eq!(
        fs::remove_dir(m.join("d")).map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENOTEMPTY)),
        "lower entries count for rmdir"
    );
    fs::remove_file(m.join("d/b")).expect("unlink");
    fs::remove_dir(m.join("d")).expect("rmdir");
    assert!(!m.join("d").exists());
    fs::create_dir(m.join("d")).expect("mkdir over a whiteout");
    assert!(
        names(&m.join("d")).is_empty(),
        "a recreated directory is opaque"
    );
}

#[test]
fn renaming_a_lower_directory_moves_its_whole_tree() {
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    let ino = fs::metadata(m.join("d/a")).expect("stat").ino();
    fs::rename(m.join("d"), m.join("e")).expect("rename lower dir");
    assert!(!m.join("d").exists());
    assert_eq!(names(&m.join("e")), ["a", "b"]);
    assert_eq!(fs::read_to_string(m.join("e/a")).expect("read"), "a");
    assert_eq!(fs::metadata(m.join("e/a")).expect("stat").ino(), ino);
}

#[test]
fn inode_numbers_are_stable_across_copy_up_and_remount() {
    let fx = Fixture::new();
    let m = fx.mnt();
    let (passwd, new_file) = {
        let _m = fx.mount(false);
        let passwd = fs::metadata(m.join("etc/passwd")).expect("stat").ino();
        fs::write(m.join("etc/passwd"), "changed\n").expect("write");
        assert_eq!(
            fs::metadata(m.join("etc/passwd")).expect("stat").ino(),
            passwd
        );
        fs::write(m.join("etc/new"), "n").expect("create");
        (passwd, fs::metadata(m.join("etc/new")).expect("stat").ino())
    };
    let _m = fx.mount(false);
    assert_eq!(
        fs::metadata(m.join("etc/passwd")).expect("stat").ino(),
        passwd
    );
    assert_eq!(
        fs::metadata(m.join("etc/new")).expect("stat").ino(),
        new_file
    );
    assert_eq!(
        fs::read_to_string(m.join("etc/passwd")).expect("read"),
        "changed\n",
        "changes persist"
    );
}

#[test]
fn read_only_mount_refuses_writes_with_erofs() {
    let fx = Fixture::new();
    let _m = fx.mount(true);
    let m = fx.mnt();
    let errno = |r: std::io::Result<()>| r.map_err(|e| e.raw_os_error());
    assert_eq!(errno(fs::write(m.join("x"), "x")), Err(Some(libc::EROFS)));
    assert_eq!(
        errno(fs::remove_file(m.join("etc/passwd"))),
        Err(Some(libc::EROFS))
    );
    assert_eq!(errno(fs::create_dir(m.join("y"))), Err(Some(libc::EROFS)));
    assert_eq!(
        fs::read_to_string(m.join("etc/hostname")).expect("read"),
        "box\n"
    );
}

#[test]
fn owner_and_device_nodes_are_kept_as_metadata_not_host_state() {
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    fs::write(m.join("etc/shadow"), "s").expect("create");
    std::os::unix::fs::chown(m.join("etc/shadow"), Some(42), Some(43)).expect("chown");
    nix::sys::stat::mknod(
        &m.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    std::os::unix::fs::symlink("etc/passwd", m.join("link")).expect("symlink");
    let st = fs::metadata(m.join("etc/shadow")).expect("stat");
    assert_eq!((st.uid(), st.gid()), (42, 43));
    let host = fs::metadata(fx.upper().join("etc/shadow")).expect("stat");
    assert_eq!(host.uid(), 0, "the host file keeps the server's owner");
    let dev = fs::symlink_metadata(m.join("null")).expect("stat");
    assert_eq!(dev.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(fs::symlink_metadata(fx.upper().join("null"))
        .expect("stat")
        .is_file());
    assert_eq!(
        fs::read_link(m.join("link")).expect("readlink"),
        Path::new("etc/passwd")
    );
}

#[test]
fn changes_report_added_modified_and_deleted_paths_without_private_xattrs() {
    let fx = Fixture::new();
    {
        let _m = fx.mount(false);
        let m = fx.mnt();
        fs::write(m.join("etc/passwd"), "changed\n").expect("write");
        fs::write(m.join("added"), "new").expect("create");
        fs::remove_file(m.join("etc/group")).expect("unlink");
        fs::hard_link(m.join("added"), m.join("added2")).expect("link");
    }
    let lowers = fx.lowers();
    let refs: Vec<&dyn Lower> = lowers.iter().map(|l| l.as_ref()).collect();
    let cs = changes(&fx.upper(), &refs).expect("changes");
    let summary: Vec<(String, ChangeKind, layerdb::Kind)> = cs
        .iter()
        .map(|c| {
            (
                String::from_utf8_lossy(&c.path).into_owned(),
                c.kind,
                c.entry.kind,
            )
        })
        .collect();
    use layerdb::Kind as K;
    use ChangeKind::*;
    assert_eq!(
        summary,
        [
            ("added".to_string(), Added, K::Regular),
            ("added2".to_string(), Added, K::Hardlink),
            ("etc".to_string(), Modified, K::Dir),
            ("etc/group".to_string(), Deleted, K::Whiteout),
            ("etc/passwd".to_string(), Modified, K::Regular),
        ]
    );
    for c in &cs {
        for (name, _) in &c.entry.xattrs {
            assert!(
                !fusefs::override_stat::is_private_xattr(name),
                "{name:?} leaked"
            );
        }
    }
    assert_eq!(cs[1].entry.link, b"added");
    let mut data = String::new();
    std::io::Read::read_to_string(
        &mut cs[4].data(&[]).expect("open").expect("data source"),
        &mut data,
    )
    .expect("read");
    assert_eq!(data, "changed\n");
}

/// `/proc/self/fd/N`: reopens what descriptor N holds, even with no name.
fn reopen(f: &fs::File, write: bool) -> std::io::Result<fs::File> {
    use std::os::fd::AsRawFd;
    fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

#[test]
fn a_file_unlinked_while_open_still_works_through_its_descriptor() {
    use std::io::{Read, Seek, Write};
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    // Born in the upper: the tmpfile pattern (create, unlink, size it).
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("tmp"))
        .expect("create");
    f.write_all(b"0123456789").expect("write");
    fs::remove_file(m.join("tmp")).expect("unlink");
    f.set_len(100).expect("ftruncate an unlinked file");
    f.set_permissions(fs::Permissions::from_mode(0o640))
        .expect("fchmod an unlinked file");
    let md = f.metadata().expect("fstat");
    assert_eq!((md.len(), md.mode() & 0o777, md.nlink()), (100, 0o640, 0));
    let mut again = String::new();
    reopen(&f, false)
        .expect("reopen an unlinked upper file")
        .read_to_string(&mut again)
        .expect("read");
    assert!(again.starts_with("0123456789"));
    // From a lower layer: still readable, and writable as a copy.
    let lower = fs::File::open(m.join("d/a")).expect("open");
    let ino = lower.metadata().expect("fstat").ino();
    fs::remove_file(m.join("d/a")).expect("unlink");
    assert_eq!(lower.metadata().expect("fstat").ino(), ino);
    let mut w = reopen(&lower, true).expect("reopen an unlinked lower file");
    w.write_all(b"A!").expect("write");
    w.rewind().expect("seek");
    let mut s = String::new();
    w.read_to_string(&mut s).expect("read");
    assert_eq!(s, "A!");
    assert_eq!(w.metadata().expect("fstat").ino(), ino);
    assert!(!m.join("d/a").exists(), "the unlinked name stays gone");
    assert_eq!(names(&m.join("d")), ["b"]);
}

#[test]
fn a_file_replaced_by_rename_can_still_be_opened_by_a_racing_reader() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    fs::write(m.join("counter"), "0").expect("write");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (m, stop) = (m.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                fs::write(m.join("c.tmp"), i.to_string()).expect("write");
                fs::rename(m.join("c.tmp"), m.join("counter")).expect("rename");
            }
        })
    };
    // Each read looks the name up, then opens the node it found: a rename
    // between the two must not make the open fail (on ext4 it never does).
    let failures = (0..20_000)
        .filter(|_| match fs::read_to_string(m.join("counter")) {
            Ok(s) if s.parse::<u64>().is_ok() => false,
            r => {
                eprintln!("read of counter: {r:?}");
                true
            }
        })
        .count();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert_eq!(failures, 0, "reads of a file renamed over failed");
}

#[test]
fn a_directory_read_while_it_changes_shows_each_unchanged_entry_once() {
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let dir = fx.mnt().join("big");
    fs::create_dir(&dir).expect("mkdir");
    let name = |i: usize| format!("f{i:05}");
    for i in 0..3000 {
        fs::write(dir.join(name(i)), "").expect("create");
    }
    // More entries than one READDIR reply holds: the stream spans requests
    // whose offsets must stay good while files go and come.
    let mut seen = Vec::new();
    for (k, e) in fs::read_dir(&dir).expect("opendir").enumerate() {
        seen.push(e.expect("entry").file_name().into_string().expect("utf-8"));
        if k == 100 {
            for i in 2000..2100 {
                fs::remove_file(dir.join(name(i))).expect("unlink");
            }
            for i in 0..50 {
                fs::write(dir.join(format!("a{i:03}")), "").expect("create");
            }
        }
    }
    for i in (0..2000).chain(2100..3000) {
        let n = seen.iter().filter(|s| **s == name(i)).count();
        assert_eq!(n, 1, "{} seen {n} times", name(i));
    }
    assert_eq!(fs::read_dir(&dir).expect("opendir").count(), 2950);
}

#[test]
fn selinux_labels_are_not_supported_so_ls_stops_asking() {
    let fx = Fixture::new();
    fs::write(fx.dir.path().join("top/labelled"), "x").expect("write");
    xattr::set(
        fx.dir.path().join("top/labelled"),
        "security.selinux",
        b"system_u:object_r:etc_t:s0",
    )
    .expect("label the lower file");
    let _m = fx.mount(false);
    let m = fx.mnt();
    let unsupported = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{what}: {e}");
    };
    unsupported(
        xattr::get(m.join("labelled"), "security.selinux").map(drop),
        "get a lower file's label",
    );
    unsupported(
        xattr::set(m.join("etc/passwd"), "security.selinux", b"x"),
        "set a label",
    );
    unsupported(
        xattr::remove(m.join("labelled"), "security.selinux"),
        "remove a label",
    );
    let names: Vec<_> = xattr::list(m.join("labelled"))
        .expect("listxattr")
        .collect();
    assert!(names.is_empty(), "listed {names:?}");
    // Other security attributes are kept: file capabilities (revision 2,
    // effective, cap_net_raw permitted), as `setcap` writes them.
    let caps: Vec<u8> = [0x0200_0001u32, 1 << 13, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    xattr::set(m.join("etc/passwd"), "security.capability", &caps).expect("set capability");
    assert_eq!(
        xattr::get(m.join("etc/passwd"), "security.capability").expect("get"),
        Some(caps)
    );
}

/// File capabilities survive a chmod and an access ACL, and go with a
/// chown (even to the same owner), as on ext4. `cp -a` of a file with
/// capabilities sets them, then its ACL: the server chowned the host file
/// for every mode change, and the host dropped them then.
#[test]
fn file_capabilities_survive_a_chmod_and_an_acl_but_not_a_chown() {
    let caps = net_raw_capability();
    // user::rwx group::r-x other::r-x, as `cp -a` copies a plain mode.
    let acl: Vec<u8> = [
        2u32,
        0x0007_0001,
        u32::MAX,
        0x0005_0004,
        u32::MAX,
        0x0005_0020,
        u32::MAX,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect();
    for format in [UpperFormat::detect(), UpperFormat::Rootless] {
        let fx = Fixture::new();
        let _m = fx.mount_as(false, format);
        for name in ["etc/hostname", "new"] {
            let f = fx.mnt().join(name);
            if name == "new" {
                fs::write(&f, "x").expect("create");
            }
            let capability = || xattr::get(&f, "security.capability").expect("get");
            xattr::set(&f, "security.capability", &caps).expect("set capability");
            fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).expect("chmod");
            assert_eq!(
                capability(),
                Some(caps.clone()),
                "{format:?} {name}: after a chmod"
            );
            xattr::set(&f, "system.posix_acl_access", &acl).expect("set an ACL");
            assert_eq!(
                capability(),
                Some(caps.clone()),
                "{format:?} {name}: after an ACL"
            );
            std::os::unix::fs::chown(&f, Some(0), Some(0)).expect("chown");
            assert_eq!(capability(), None, "{format:?} {name}: after a chown");
        }
    }
}

/// Revision 2, effective, cap_net_raw permitted, as `setcap` writes it.
fn net_raw_capability() -> Vec<u8> {
    [0x0200_0001u32, 1 << 13, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
}

/// A new file opened write-only (tar's, cp's) is written straight to the
/// server, not through the page cache: a reader holding it open and
/// cached sees each write, one starting inside a page included, and a
/// write past the end.
#[test]
fn a_reader_sees_every_write_through_a_file_created_write_only() {
    use std::os::unix::fs::FileExt;
    for format in [UpperFormat::detect(), UpperFormat::Rootless] {
        let fx = Fixture::new();
        let _m = fx.mount_as(false, format);
        let path = fx.mnt().join("d/new");
        let writer = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create write-only");
        writer.write_all_at(&[b'a'; 10_000], 0).expect("write");
        let reader = fs::File::open(&path).expect("open for reading");
        let read = |f: &fs::File| {
            let mut buf = vec![0u8; 30_000];
            let n = f.read_at(&mut buf, 0).expect("read");
            buf.truncate(n);
            buf
        };
        assert_eq!(read(&reader), vec![b'a'; 10_000], "{format:?}");
        writer.write_all_at(&[b'b'; 3_000], 2_048).expect("write");
        writer
            .write_all_at(b"c", 20_000)
            .expect("write past the end");
        let mut want = vec![b'a'; 10_000];
        want[2_048..5_048].fill(b'b');
        want.resize(20_000, 0);
        want.push(b'c');
        assert_eq!(read(&reader), want, "{format:?}: the cached reader");
        assert_eq!(
            fs::read(&path).expect("read"),
            want,
            "{format:?}: a new open"
        );
        assert_eq!(reader.metadata().expect("fstat").len(), 20_001);
    }
}

/// A write drops a file's capabilities, as on ext4, through a file
/// created write-only too (written straight to the server, where the
/// kernel leaves that to the server): capabilities set while the writer
/// holds the file open go with its next write, in both upper formats.
#[test]
fn a_write_through_a_file_created_write_only_drops_its_capabilities() {
    use std::os::unix::fs::FileExt;
    let caps = net_raw_capability();
    for format in [UpperFormat::detect(), UpperFormat::Rootless] {
        let fx = Fixture::new();
        let _m = fx.mount_as(false, format);
        let path = fx.mnt().join("tool");
        let writer = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create write-only");
        writer.write_all_at(b"#!/bin/sh\n", 0).expect("write");
        xattr::set(&path, "security.capability", &caps).expect("set capability");
        writer.write_all_at(b"exit 0\n", 10).expect("write");
        assert_eq!(
            xattr::get(&path, "security.capability").expect("get"),
            None,
            "{format:?}: a write kept the capabilities"
        );
    }
}

/// A write by a caller without CAP_FSETID clears set-id bits through a
/// file it created write-only too (written straight to the server, where
/// the kernel leaves that to the server), and the mode the kernel
/// caches shows it.
#[test]
fn a_write_through_a_file_created_write_only_clears_set_id_bits() {
    let fx = Fixture::new();
    fx.for_each_format_shared(|format| {
        let dir = fx.mnt().join(format!("shared-{format:?}"));
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
        let f = dir.join("tool");
        as_uid_1000(r#"exec 3>"$0" && chmod 6755 "$0" && echo x >&3"#, &f);
        assert_eq!(mode_as_cached(&f), 0o755, "{format:?}");
    });
}

/// The kernel opens existing files without asking the server (OPEN is
/// answered ENOSYS), so a lower file is copied up by its first write, and
/// reads after it see the upper file.
#[test]
fn a_lower_file_is_copied_up_by_its_first_write_not_by_open() {
    use std::os::unix::fs::FileExt;
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let m = fx.mnt();
    let reader = fs::File::open(m.join("d/a")).expect("open for reading");
    let writer = fs::OpenOptions::new()
        .write(true)
        .open(m.join("d/a"))
        .expect("open for writing");
    assert!(
        !fx.upper().join("d/a").exists(),
        "an open for writing copied the file up"
    );
    writer.write_all_at(b"A!", 0).expect("write");
    assert!(fx.upper().join("d/a").exists(), "the write did not copy up");
    let mut buf = [0u8; 8];
    let n = reader
        .read_at(&mut buf, 0)
        .expect("read the older descriptor");
    assert_eq!(&buf[..n], b"A!");
    assert_eq!(fs::read_to_string(m.join("d/a")).expect("read"), "A!");
    assert_eq!(
        fs::read_to_string(fx.dir.path().join("bottom/d/a")).expect("lower"),
        "a",
        "the lower changed"
    );
}

#[test]
fn as_root_the_upper_is_written_in_kernel_overlayfs_format() {
    let fx = Fixture::new();
    let format = UpperFormat::detect();
    assert!(format.is_kernel(), "root writes the kernel's format");
    let lower_d = fx.dir.path().join("bottom/d");
    let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &lower_d,
        &old,
        &old,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("set the lower directory's times");
    {
        let _m = fx.mount_as(false, format);
        let m = fx.mnt();
        fs::set_permissions(m.join("d/a"), fs::Permissions::from_mode(0o640)).expect("chmod");
        std::os::unix::fs::chown(m.join("d/a"), Some(42), Some(43)).expect("chown");
        xattr::set(m.join("d/a"), "user.k", b"v").expect("setxattr");
        let d = fs::metadata(m.join("d")).expect("stat d");
        assert_eq!(
            d.mtime(),
            1_000_000_000,
            "copy-up keeps the directory's times"
        );
        let host_d = fs::symlink_metadata(fx.upper().join("d")).expect("upper d");
        assert_eq!(host_d.mtime(), 1_000_000_000, "also in the upper");
        fs::remove_file(m.join("d/b")).expect("unlink a lower file");
        fs::remove_file(m.join("opq/new")).expect("unlink");
        fs::remove_dir(m.join("opq")).expect("rmdir");
        fs::create_dir(m.join("opq")).expect("mkdir over the whiteout");
        std::os::unix::fs::symlink("etc/passwd", m.join("link")).expect("symlink");
        nix::sys::stat::mknod(
            &m.join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .expect("mknod");
        // Kernel overlayfs refuses a 0/0 device (its whiteout); ext4, and
        // strata, make one.
        nix::sys::stat::mknod(
            &m.join("zero"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .expect("mknod c 0 0");
        let zero = fs::symlink_metadata(m.join("zero")).expect("a 0/0 device is a file");
        assert_eq!(zero.rdev(), 0);
    }
    let u = fx.upper();
    let a = fs::symlink_metadata(u.join("d/a")).expect("upper d/a");
    assert_eq!((a.mode() & 0o7777, a.uid(), a.gid()), (0o640, 42, 43));
    let names: Vec<String> = xattr::list(u.join("d/a"))
        .expect("listxattr")
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"user.k".to_string()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("user.containers") || n.starts_with("user.strata")),
        "{names:?}"
    );
    let d = fs::symlink_metadata(u.join("d")).expect("upper d");
    assert_eq!(
        d.mode() & 0o7777,
        0o755,
        "a copied-up directory keeps its mode"
    );
    use std::os::unix::fs::FileTypeExt;
    let wh = fs::symlink_metadata(u.join("d/b")).expect("whiteout");
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "a 0/0 whiteout"
    );
    assert_eq!(
        xattr::get(u.join("opq"), "trusted.overlay.opaque").expect("getxattr"),
        Some(b"y".to_vec())
    );
    assert!(fs::symlink_metadata(u.join("link"))
        .expect("link")
        .is_symlink());
    assert_eq!(
        fs::symlink_metadata(u.join("null")).expect("dev").rdev(),
        nix::sys::stat::makedev(1, 3)
    );
}

#[test]
fn a_hardlink_keeps_counting_its_deleted_lower_name_across_copy_up() {
    let fx = Fixture::new();
    let _m = fx.mount_with(|_| {});
    let m = fx.mnt();
    fs::remove_file(m.join("bin/bash")).expect("unlink one name");
    assert_eq!(fs::metadata(m.join("bin/sh")).expect("stat").nlink(), 2);
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("bin/sh"))
        .expect("open")
        .write_all(b"x")
        .expect("write: copy-up");
    assert_eq!(
        fs::metadata(m.join("bin/sh")).expect("stat").nlink(),
        2,
        "the hidden name still counts, as kernel overlayfs's index counts it"
    );
}

#[test]
fn fstat_of_an_open_directory_replaced_by_rename_shows_no_links() {
    let fx = Fixture::new();
    let _m = fx.mount_with(|_| {});
    let m = fx.mnt();
    fs::create_dir(m.join("x")).expect("mkdir");
    fs::create_dir(m.join("y")).expect("mkdir");
    let held = fs::File::open(m.join("x")).expect("open the directory");
    fs::rename(m.join("y"), m.join("x")).expect("rename over it");
    let st = held.metadata().expect("fstat of the replaced directory");
    assert!(st.is_dir());
    assert_eq!(st.nlink(), 0);
}

#[test]
fn concurrent_mkdir_and_rmdir_of_different_directories_never_fail() {
    let fx = Fixture::new();
    let _m = fx.mount_with(|_| {});
    let m = fx.mnt();
    let workers: Vec<_> = (1..=2)
        .map(|w| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for r in 0..300 {
                    let d = m.join(format!("cdir_{w}_{r}"));
                    let deep = d.join("sub/deep");
                    if let Err(e) = fs::create_dir_all(&deep) {
                        failures.push(format!("mkdir -p {}: {e}", deep.display()));
                        continue;
                    }
                    let f = deep.join("f");
                    let steps = fs::write(&f, "x")
                        .and_then(|()| fs::remove_file(&f))
                        .and_then(|()| fs::remove_dir(&deep))
                        .and_then(|()| fs::remove_dir(d.join("sub")))
                        .and_then(|()| fs::remove_dir(&d));
                    if let Err(e) = steps {
                        failures.push(format!("{}: {e}", d.display()));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn seekdir_to_an_earlier_offset_of_a_big_directory_reads_on_from_there() {
    let fx = Fixture::new();
    let _m = fx.mount_with(|_| {});
    let big = fx.mnt().join("big");
    fs::create_dir(&big).expect("mkdir");
    for i in 0..4000 {
        fs::write(big.join(format!("entry-{i:04}")), "").expect("create");
    }
    // perl's telldir/seekdir are libc's.
    let out = std::process::Command::new("perl")
        .arg("-e")
        .arg(
            r#"opendir(my $d, $ARGV[0]) or die "opendir: $!";
               for (1..100) { defined(readdir($d)) or die "short" }
               my $pos = telldir($d);
               my $want = readdir($d);
               for (1..2000) { defined(readdir($d)) or die "short" }
               seekdir($d, $pos);
               my $got = readdir($d);
               defined($got) or die "end of directory after seekdir (errno $!)";
               $got eq $want or die "seekdir gave $got, want $want";
               my $n = 1; $n++ while defined(readdir($d));
               print "$n\n";"#,
        )
        .arg(&big)
        .output()
        .expect("perl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 4,002 entries with . and ..: 100 read before the seek, the rest after.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3902");
}

#[test]
fn fuse_overlayfs_options_change_what_the_kernel_is_shown() {
    let fx = Fixture::new();
    let mut view = fusefs::View {
        static_nlink: true,
        xattrs: false,
        fsync: false,
        ..Default::default()
    };
    view.uids.ranges = fusefs::IdMap::parse_ranges("0:1000:1").expect("mapping");
    view.gids.squash = Some(7);
    let _m = fx.mount_with(|o| o.view = view);
    let m = fx.mnt();
    let etc = fs::metadata(m.join("etc")).expect("stat");
    assert_eq!(etc.nlink(), 1, "static_nlink");
    let passwd = fs::metadata(m.join("etc/passwd")).expect("stat");
    assert_eq!(
        (passwd.uid(), passwd.gid()),
        (1000, 7),
        "uidmapping and squash_to_gid"
    );
    std::os::unix::fs::chown(m.join("etc/passwd"), Some(1000), None).expect("chown");
    let host = fs::metadata(fx.upper().join("etc/passwd")).expect("upper");
    assert_eq!(host.uid(), 0, "1000 is stored as 0");
    let e = xattr::get(m.join("etc/passwd"), "user.k").expect_err("noxattrs");
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.join("etc/group"))
        .expect("open");
    f.sync_all()
        .expect("fsync=0: fsync succeeds without syncing");
}

#[test]
fn a_write_by_a_user_outside_the_group_clears_setgid_too() {
    let fx = Fixture::new();
    fx.for_each_format_shared(|format| {
        let f = fx.mnt().join(format!("sgid-{format:?}"));
        fs::write(&f, "").expect("create");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6666)).expect("chmod 6666");
        as_uid_1000(r#"echo x >> "$0""#, &f);
        let mode = fs::metadata(&f).expect("stat").mode() & 0o7777;
        assert_eq!(
            mode, 0o666,
            "{format:?}: set-id bits after a write by a non-member"
        );
    });
}

/// Set-id bits as a local filesystem keeps them, in the mount's view: a
/// chown, even root's and even one naming no owner, clears S_ISUID and group-executable S_ISGID, and a
/// truncation, a hole punched or an append by another user clears them.
#[test]
fn a_chown_or_a_truncation_by_another_user_clears_set_id_bits() {
    let fx = Fixture::new();
    fx.for_each_format_shared(|format| {
        let f = fx.mnt().join(format!("setid-{format:?}"));
        fs::write(&f, "0123456789").expect("create");
        let mode = || mode_as_cached(&f);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6755)).expect("chmod 6755");
        std::os::unix::fs::chown(&f, Some(0), Some(0)).expect("chown");
        assert_eq!(mode(), 0o755, "{format:?}: after a chown by root");
        // chown(f, -1, -1) changes no owner, yet clears them as any chown.
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6755)).expect("chmod 6755");
        std::os::unix::fs::chown(&f, None, None).expect("chown -1 -1");
        assert_eq!(mode(), 0o755, "{format:?}: after chown(f, -1, -1)");
        // Not by another user, who may not change the mode (ext4 answers
        // EPERM; the server cannot tell the request from the one a write
        // sends first, so it succeeds and changes nothing).
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6755)).expect("chmod 6755");
        as_uid_1000(r#"perl -e 'chown(-1, -1, $ARGV[0])' "$0""#, &f);
        assert_eq!(
            mode(),
            0o6755,
            "{format:?}: after uid 1000's chown(f, -1, -1)"
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).expect("chmod 6777");
        as_uid_1000("truncate -s 3 \"$0\"", &f);
        assert_eq!(mode(), 0o777, "{format:?}: after a truncation by uid 1000");
        assert_eq!(fs::read(&f).expect("read"), b"012");
        // A hole punched and bytes appended by uid 1000: each changes the
        // file, so the set-id bits go, in the mount's view too (a set-id
        // bit the view kept would make the changed file run as root).
        for (what, cmd) in [
            ("fallocate -p", "fallocate -p -o 40000 -l 4096 \"$0\""),
            ("an append", "echo x >> \"$0\""),
        ] {
            fs::write(&f, vec![b'.'; 64 << 10]).expect("rewrite");
            fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).expect("chmod 6777");
            assert_eq!(mode(), 0o6777, "{format:?}: before {what}");
            as_uid_1000(cmd, &f);
            assert_eq!(mode(), 0o777, "{format:?}: after {what} by uid 1000");
        }
    });
}

/// The permission bits of `file` as stat(1) shows them: it asks statx
/// for the mode alone, which the kernel answers from its cache, as exec's
/// set-id check reads it. (std's metadata asks for the times as well,
/// which a write or fallocate marks stale, so it always gets the
/// server's fresh mode and cannot see a stale cached one.)
fn mode_as_cached(file: &Path) -> u32 {
    let out = std::process::Command::new("stat")
        .arg("--format=%a")
        .arg(file)
        .output()
        .expect("stat runs");
    assert!(out.status.success(), "stat {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    u32::from_str_radix(text.trim(), 8).expect("an octal mode")
}

/// Runs the shell command `cmd` as uid and gid 1000 with `file` as `$0`;
/// it must succeed.
fn as_uid_1000(cmd: &str, file: &Path) {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "1000", "--regid", "1000", "--clear-groups"])
        .args(["sh", "-c", cmd])
        .arg(file)
        .output()
        .expect("setpriv runs");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_file_unlinked_while_open_keeps_its_xattrs_through_its_descriptor() {
    use xattr::FileExt;
    let fx = Fixture::new();
    let _m = fx.mount(false);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(fx.mnt().join("tmp"))
        .expect("create");
    f.set_xattr("user.kept", b"before").expect("fsetxattr");
    fs::remove_file(fx.mnt().join("tmp")).expect("unlink");
    // What ext4 and kernel overlayfs answer on an unlinked file.
    assert_eq!(
        f.get_xattr("user.kept").expect("fgetxattr"),
        Some(b"before".to_vec())
    );
    f.set_xattr("user.new", b"after")
        .expect("fsetxattr an unlinked file");
    f.remove_xattr("user.kept")
        .expect("fremovexattr an unlinked file");
    let names: Vec<_> = f.list_xattr().expect("flistxattr").collect();
    assert_eq!(names, ["user.new"]);
    assert_eq!(
        f.get_xattr("user.new").expect("fgetxattr"),
        Some(b"after".to_vec())
    );
}

/// Sets small user xattrs on `p` until the filesystem has no room for
/// another; returns how many it took.
fn fill_user_xattrs(p: &Path) -> usize {
    let mut n = 0;
    loop {
        match xattr::set(p, format!("user.k{n:03}"), &[b'v'; 8]) {
            Ok(()) => n += 1,
            Err(e) => {
                let errno = e.raw_os_error();
                assert!(
                    errno == Some(libc::ENOSPC) || errno == Some(libc::E2BIG),
                    "setxattr {n} on {}: {e}",
                    p.display()
                );
                return n;
            }
        }
    }
}

/// A file through strata (root, kernel-format upper) holds about as many
/// user xattrs as one on the upper's own filesystem: they keep their own
/// names, and a new file carries no xattr of strata's. A copied-up file
/// carries one (its origin), as kernel overlayfs's copies carry theirs
/// (on ext4: 148 on a plain file, 145 on the kernel's copy-up).
#[test]
fn a_file_holds_as_many_user_xattrs_as_on_the_upper_s_filesystem() {
    let fx = Fixture::new();
    let plain = fx.dir.path().join("plain");
    fs::write(&plain, "").expect("create");
    let want = fill_user_xattrs(&plain);
    let _m = fx.mount_with(|o| o.upper_format = Some(UpperFormat::detect()));
    let m = fx.mnt();
    fs::write(m.join("new"), "").expect("create");
    let new = fill_user_xattrs(&m.join("new"));
    let copied = fill_user_xattrs(&m.join("d/a"));
    assert_eq!(
        new, want,
        "user xattrs on a new file: strata, the upper's filesystem"
    );
    assert!(
        copied + 3 >= want,
        "user xattrs on a copied-up file: {copied}, on the upper's filesystem {want}"
    );
}

/// The file the helper below sets an ACL on, as another user.
const ENV_SET_ACL: &str = "STRATA_TEST_SET_ACL";

/// Not a test of its own: the test below runs this test binary as
/// another user with [`ENV_SET_ACL`] naming a file, and this sets that
/// file's access ACL to the minimal one of mode 754 (what `setfacl -m
/// u::rwx,g::r-x,o::r--` writes). Without the variable it does nothing.
#[test]
fn set_acl_for_parent_test() {
    let Some(p) = std::env::var_os(ENV_SET_ACL) else {
        return;
    };
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, 7u16), (0x04, 5), (0x20, 4)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    xattr::set(&p, "system.posix_acl_access", &acl).expect("set the access ACL");
}

/// An ACL's mode change by the owner, outside the file's group, clears
/// S_ISGID as the kernel's posix_acl_update_mode does on ext4 (issue 14:
/// strata kept 2754 where ext4 gives 754).
#[test]
fn an_acl_change_by_an_owner_outside_the_group_clears_setgid() {
    let fx = Fixture::new();
    fs::set_permissions(fx.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let _m = fx.mount_with(|o| {
        o.allow_other = true; // uid 1000 sets the ACL
        o.upper_format = Some(UpperFormat::detect());
    });
    let f = fx.mnt().join("sgid");
    fs::write(&f, "").expect("create");
    std::os::unix::fs::chown(&f, Some(1000), Some(0)).expect("chown 1000:0");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o2775)).expect("chmod 2775");
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args(["set_acl_for_parent_test", "--exact", "--test-threads=1"])
        .env(ENV_SET_ACL, &f)
        .uid(1000)
        .gid(1000)
        .output()
        .expect("run the helper as uid 1000");
    assert!(
        out.status.success(),
        "setting the ACL as uid 1000: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = fs::metadata(&f).expect("stat").mode() & 0o7777;
    assert_eq!(mode, 0o754, "the mode after the owner's setfacl");
}

/// Every listing request is a READDIRPLUS (not READDIRPLUS_AUTO's first
/// only): the entries of a directory bigger than one reply come with
/// their attributes too, so a stat after the listing asks the server
/// nothing. Seen by changing upper files behind the mount's back after
/// the listing: an entry looked up afresh would show the change.
#[test]
fn every_entry_of_a_big_directory_is_listed_with_its_attributes() {
    let fx = Fixture::new();
    let name = |i: usize| format!("f{i:04}");
    {
        let _m = fx.mount(false);
        let dir = fx.mnt().join("big");
        fs::create_dir(&dir).expect("mkdir");
        for i in 0..1000 {
            fs::write(dir.join(name(i)), "").expect("create");
        }
    }
    // Mounted afresh: the kernel knows nothing but what the listing says.
    let _m = fx.mount(false);
    let dir = fx.mnt().join("big");
    assert_eq!(fs::read_dir(&dir).expect("opendir").count(), 1000);
    for i in 0..1000 {
        fs::write(fx.upper().join("big").join(name(i)), "x").expect("write the upper file");
    }
    let looked_up = (0..1000)
        .filter(|&i| fs::symlink_metadata(dir.join(name(i))).expect("stat").len() != 0)
        .count();
    assert_eq!(looked_up, 0, "entries looked up again after the listing");
}
