//! `strata cp` end to end on a busybox image: docker's placement rules
//! both ways, running and stopped containers, tars on stdin and stdout,
//! owners, refusals, and a container that tries to make the copy leave
//! its tree.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{Strata, TarMaker};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A running container (`web`) and a stopped one (`idle`) of busybox.
fn two_containers() -> Strata {
    let s = Strata::with_busybox();
    s.run(&["run", "-d", "--name", "web", "busybox", "sleep", "600"])
        .ok();
    s.run(&[
        "run",
        "--name",
        "idle",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /srv/d/e && echo one > /srv/d/f && echo two > /srv/d/e/g && ln -s d /srv/l",
    ])
    .ok();
    s.run(&[
        "exec",
        "web",
        "sh",
        "-c",
        "mkdir -p /srv/d/e && echo one > /srv/d/f && echo two > /srv/d/e/g && ln -s d /srv/l",
    ])
    .ok();
    s
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn files_and_trees_come_out_where_docker_puts_them() {
    let s = two_containers();
    for ctr in ["web", "idle"] {
        let out = s.path(&format!("out-{ctr}"));
        std::fs::create_dir(&out).unwrap();
        let o = |n: &str| out.join(n).to_str().unwrap().to_string();
        let from = |p: &str| format!("{ctr}:{p}");
        // A file: under a new name, into a directory under its own name,
        // over an existing file.
        s.run(&["cp", &from("/srv/d/f"), &o("renamed")]).ok();
        assert_eq!(read(&out.join("renamed")), "one\n");
        s.run(&["cp", &from("srv/d/f"), &o("")]).ok();
        assert_eq!(read(&out.join("f")), "one\n");
        s.run(&["cp", &from("/srv/d/e/g"), &o("f")]).ok();
        assert_eq!(read(&out.join("f")), "two\n");
        // A tree: into a directory under its name, as a new directory,
        // its contents alone with `/.`.
        s.run(&["cp", &from("/srv/d"), &o("")]).ok();
        assert_eq!(read(&out.join("d/e/g")), "two\n");
        s.run(&["cp", &from("/srv/d"), &o("new")]).ok();
        assert_eq!(names(&out.join("new")), ["e", "f"]);
        std::fs::create_dir(out.join("merged")).unwrap();
        s.run(&["cp", &from("/srv/d/."), &o("merged")]).ok();
        assert_eq!(names(&out.join("merged")), ["e", "f"]);
        // A symlink is copied as one, or followed with -L under its name.
        s.run(&["cp", &from("/srv/l"), &o("")]).ok();
        assert_eq!(std::fs::read_link(out.join("l")).unwrap(), Path::new("d"));
        s.run(&["cp", "-L", &from("/srv/l"), &o("followed")]).ok();
        assert_eq!(read(&out.join("followed/f")), "one\n");
        // To stdout, a tar whose entries start with the source's name.
        let tar = s.cmd(&["cp", &from("/srv/d"), "-"]).output().unwrap();
        assert!(tar.status.success());
        let mut entries: Vec<String> = tar::Archive::new(&tar.stdout[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        entries.sort();
        assert_eq!(entries, ["d", "d/e", "d/e/g", "d/f"], "{ctr}");
        // What is made on the host belongs to the caller.
        let md = std::fs::metadata(out.join("d/e/g")).unwrap();
        assert_eq!(md.uid(), nix::unistd::geteuid().as_raw());
        // Refusals, docker's words, one line, 125.
        s.run(&["cp", &from("/nothing"), &o("")])
            .refused_with(&format!(
                "Could not find the file /nothing in container {ctr}"
            ));
        s.run(&["cp", &from("/srv/d"), &o("renamed")])
            .refused_with("cannot copy a directory to a file");
        s.run(&["cp", &from("/srv/d/f"), &o("absent/")])
            .refused_with("no such directory");
        // Never over a device (`cp ctr:/f /dev/null` replaced it with a
        // file): a null device of the test's own stays one.
        let null = out.join("null");
        common::null_device(&null);
        s.run(&["cp", &from("/srv/d/f"), &o("null")])
            .refused_with("must be a directory or a regular file");
        let kind = std::fs::symlink_metadata(&null).unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&kind));
        std::fs::remove_file(&null).unwrap();
    }
    // The stopped container's tree was mounted out of the host's sight.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let copies = format!("{}/tmp/cp-", s.root().display());
    assert!(!mounts.contains(&copies), "{mounts}");
}

/// The root of a running container comes out whole, its /proc and /sys
/// as empty directories, as docker's copy has them: the kernel's files
/// are not the container's, and some refuse to be read (the copy failed
/// on /proc/1/attr/current, leaving half a tree).
#[test]
fn the_root_of_a_running_container_comes_out_without_the_kernels_files() {
    let s = two_containers();
    let out = s.path("root-of-web");
    std::fs::create_dir(&out).unwrap();
    s.run(&["cp", "web:/", out.to_str().unwrap()]).ok();
    let root = out;
    assert_eq!(read(&root.join("srv/d/e/g")), "two\n");
    assert!(root.join("bin/busybox").is_file());
    for kernel in ["proc", "sys", "dev/pts"] {
        assert_eq!(names(&root.join(kernel)), Vec::<String>::new(), "{kernel}");
    }
}

/// A copy out into a directory another user may write to cannot be
/// steered: a watcher there swaps each directory the copy makes for a
/// link to a directory of root's. The copy made its file beside the
/// destination and used it by path, and root's file was replaced (found
/// by a review).
#[test]
fn a_copy_out_into_a_directory_another_user_writes_cannot_be_steered() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = two_containers();
    let dir = s.path("users-dir");
    std::fs::create_dir(&dir).unwrap();
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let victim = s.path("roots-dir");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("f"), "ORIGINAL").unwrap();
    let watch = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    watch.add_watch(&dir, AddWatchFlags::IN_CREATE).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for event in watch.read_events().unwrap_or_default() {
                    let Some(name) = event.name else { continue };
                    let made = dir.join(&name);
                    if made.is_dir() && !made.is_symlink() {
                        let moved = dir.join(format!("moved-{}", name.to_string_lossy()));
                        if std::fs::rename(&made, &moved).is_ok() {
                            let _ = std::os::unix::fs::symlink(&victim, &made);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        });
        for _ in 0..10 {
            let _ = s.run(&["cp", "idle:/srv/d/f", &format!("{}/", dir.display())]);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(read(&victim.join("f")), "ORIGINAL");
}

/// A tree copied out by root into a directory another user writes: that
/// user swaps the directory the copy is filling for one holding a link to
/// a root-only directory (renameat2 RENAME_EXCHANGE, once the copy's
/// first file is there). Unpacked by path, the rest of the copy went
/// through the link, over root's files (a review: 2,985 files).
#[test]
fn a_tree_copied_out_where_another_user_writes_stays_there_whatever_they_swap() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "big",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && cd /data/sub && for i in $(seq 2000); do echo $i > f$i; done && echo CONTAINER > victim",
    ])
    .ok();
    let out = s.path("users-out");
    std::fs::create_dir_all(out.join("fake")).unwrap();
    let secret = s.path("roots-only");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("victim"), "ORIGINAL").unwrap();
    std::os::unix::fs::symlink(&secret, out.join("fake/sub")).unwrap();
    for d in [&out, &out.join("fake")] {
        nix::unistd::chown(d, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    }
    let first = out.join("data/sub/f1");
    let copying = std::sync::atomic::AtomicBool::new(true);
    let swapped = std::thread::scope(|scope| {
        let swapper = scope.spawn(|| {
            while copying.load(std::sync::atomic::Ordering::Relaxed) {
                if first.exists() {
                    return nix::fcntl::renameat2(
                        nix::fcntl::AT_FDCWD,
                        &out.join("data"),
                        nix::fcntl::AT_FDCWD,
                        &out.join("fake"),
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    )
                    .is_ok();
                }
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            false
        });
        // It may fail: its directory changed under it.
        let _ = s.run(&["cp", "big:/data", &format!("{}/", out.display())]);
        copying.store(false, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap()
    });
    assert!(swapped, "the copy ended before its directory was swapped");
    let landed: Vec<_> = std::fs::read_dir(&secret)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        landed == ["victim"],
        "the copy wrote {} names into root's directory",
        landed.len() - 1
    );
    assert_eq!(read(&secret.join("victim")), "ORIGINAL");
}

#[test]
fn files_and_trees_go_in_owned_by_the_containers_root() {
    let s = two_containers();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("tree/sub")).unwrap();
    std::fs::write(src.join("tree/sub/file"), "host\n").unwrap();
    std::fs::write(src.join("tool"), "#!/bin/sh\n").unwrap();
    // Owner first: a chown clears the set-id bits.
    nix::unistd::chown(&src.join("tool"), Some(1234.into()), Some(5678.into())).unwrap();
    std::fs::set_permissions(
        src.join("tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    // A file capability (cap_net_raw+ep, a VFS_CAP_REVISION_2 record)
    // goes in with the file, as docker's cp takes it.
    let capability: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    std::fs::write(src.join("pinger"), "#!/bin/sh\n").unwrap();
    nix::unistd::chown(&src.join("pinger"), Some(1234.into()), Some(5678.into())).unwrap();
    xattr::set(src.join("pinger"), "security.capability", &capability).unwrap();
    let p = |n: &str| src.join(n).to_str().unwrap().to_string();
    for ctr in ["web", "idle"] {
        let to = |path: &str| format!("{ctr}:{path}");
        s.run(&["cp", &p("pinger"), &to("/srv/")]).ok();
        // Kept through a chown too (it would drop the capability after).
        s.run(&["cp", "-a", &p("pinger"), &to("/srv/pinger-a")])
            .ok();
        s.run(&["cp", &p("tool"), &to("/srv/")]).ok();
        s.run(&["cp", "-a", &p("tool"), &to("/srv/kept")]).ok();
        s.run(&["cp", &p("tree"), &to("/srv/t")]).ok();
        s.run(&["cp", &p("tree/."), &to("/srv/d")]).ok();
        let tar = TarMaker::new()
            .dir("fromtar")
            .file("fromtar/x", b"tar\n")
            .bytes();
        s.run_stdin(&["cp", "-", &to("/srv")], &tar).ok();
        s.run(&["cp", &p("tool"), &to("/srv/absent/")])
            .refused_with("no such directory");
        s.run(&["cp", &p("tree"), &to("/srv/d/f")])
            .refused_with("cannot copy a directory to a file");
        s.run_stdin(&["cp", "-", &to("/srv/d/f")], &tar)
            .refused_with(&format!(
                "destination \"{ctr}:/srv/d/f\" must be a directory"
            ));
        s.run(&["cp", "/nothing-here", &to("/srv")])
            .refused_with("lstat /nothing-here: no such file or directory");
    }
    let script = "stat -c '%u:%g %a %n' /srv/tool /srv/kept /srv/t/sub/file; \
                  cat /srv/t/sub/file /srv/d/sub/file /srv/fromtar/x";
    let want =
        "0:0 4755 /srv/tool\n1234:5678 4755 /srv/kept\n0:0 644 /srv/t/sub/file\nhost\nhost\ntar\n";
    assert_eq!(
        s.run(&["exec", "web", "sh", "-c", script]).ok().stdout,
        want
    );
    // The stopped container's copy is in its upper: diff and commit see
    // it, and its image runs with it.
    let diff = s.run(&["diff", "idle"]).ok().stdout;
    for line in [
        "A /srv/tool",
        "A /srv/kept",
        "A /srv/t/sub/file",
        "A /srv/fromtar/x",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line} not in {diff}");
    }
    let exported = s.cmd(&["export", "idle"]).output().unwrap();
    assert!(exported.status.success());
    let mut archive = tar::Archive::new(exported.stdout.as_slice());
    let caps: Vec<Vec<u8>> = archive
        .entries()
        .unwrap()
        .flatten()
        .filter(|e| {
            let path = e.path().unwrap();
            path.ends_with("srv/pinger") || path.ends_with("srv/pinger-a")
        })
        .flat_map(|mut e| {
            let Some(records) = e.pax_extensions().ok().flatten() else {
                return Vec::new();
            };
            records
                .flatten()
                .filter(|r| r.key() == Ok("SCHILY.xattr.security.capability"))
                .map(|r| r.value_bytes().to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        caps,
        [capability.to_vec(), capability.to_vec()],
        "a file capability was lost"
    );
    s.run(&["commit", "idle", "copied"]).ok();
    assert_eq!(
        s.run(&["run", "--rm", "copied", "sh", "-c", script])
            .ok()
            .stdout,
        want
    );
}

#[test]
fn a_container_cannot_make_a_copy_leave_its_tree() {
    let s = Strata::with_busybox();
    // A host directory whose path the container's links name: nothing
    // may be read from it or written into it.
    let host = s.path("host-only");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("secret"), "host\n").unwrap();
    let h = host.to_str().unwrap();
    let script = format!(
        "ln -s {h} /esc && ln -s / /root-link && ln -s ../../../../../../../.. /up && \
         mkdir -p /sw/real /srv && echo container > /sw/real/secret && touch /ready && \
         while true; do mv /sw/real /sw/hold; ln -s {h} /sw/real; rm /sw/real; mv /sw/hold /sw/real; done"
    );
    s.run(&[
        "run", "-d", "--name", "evil", "busybox", "sh", "-c", &script,
    ])
    .ok();
    for _ in 0..100 {
        if s.run(&["exec", "evil", "test", "-e", "/ready"]).code == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = s.path("out");
    std::fs::create_dir(&out).unwrap();
    let o = |n: &str| out.join(n).to_str().unwrap().to_string();
    // Links to the host's path resolve in the container, where it is not.
    for through in [
        "/esc/secret".to_string(),
        format!("/root-link{h}/secret"),
        format!("/up{h}/secret"),
    ] {
        let from = format!("evil:{through}");
        s.run(&["cp", &from, &o("x")])
            .refused_with(&format!("Could not find the file {through}"));
    }
    // A directory swapped for a link to the host's path while copies run
    // (CVE-2018-15664): each copy reads the container's file or none.
    for i in 0..40 {
        let to = o(&format!("swap{i}"));
        if s.run(&["cp", "evil:/sw/real/secret", &to]).code == 0 {
            assert_eq!(read(Path::new(&to)), "container\n");
        }
    }
    // Writes through the same links land in the container.
    std::fs::write(s.path("planted"), "planted\n").unwrap();
    let planted = s.path("planted").to_str().unwrap().to_string();
    let _ = s.run(&["cp", &planted, "evil:/esc/"]);
    let _ = s.run(&["cp", &planted, &format!("evil:/root-link{h}/")]);
    for i in 0..20 {
        let _ = s.run(&["cp", &planted, &format!("evil:/sw/real/p{i}")]);
    }
    // A tar that names places outside, or goes through a link it made.
    let dots = format!("../../../../../../../..{h}/dots");
    let tar = TarMaker::new()
        .raw(tar::EntryType::Regular, &dots, "", b"x")
        .symlink("lnk", h)
        .file("lnk/through", b"x")
        .bytes();
    let _ = s.run_stdin(&["cp", "-", "evil:/srv"], &tar);
    assert_eq!(names(&host), ["secret"]);
    assert_eq!(read(&host.join("secret")), "host\n");
}

/// Root's copy out to a shared sticky directory (/tmp) where another
/// user planted a link at the destination: the kernel would not follow it
/// for root (`protected_symlinks`), and strata, which resolves the
/// destination's links itself, must not either; its own link is followed.
#[test]
fn another_users_link_in_a_sticky_directory_is_not_followed() {
    let s = two_containers();
    let shared = s.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(
        &shared,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let target = s.path("roots-file");
    std::fs::write(&target, "precious").unwrap();
    let planted = shared.join("planted");
    std::os::unix::fs::symlink(&target, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    let r = s.run(&["cp", "web:/srv/d/f", planted.to_str().unwrap()]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("another user's link"), "{}", r.stderr);
    assert_eq!(read(&target), "precious");
    let mine = shared.join("mine");
    std::os::unix::fs::symlink(&target, &mine).unwrap();
    s.run(&["cp", "web:/srv/d/f", mine.to_str().unwrap()]).ok();
    assert_eq!(read(&target), "one\n");
}

#[test]
fn refusals_name_the_reason_and_a_killed_copy_leaves_the_store_whole() {
    let s = Strata::with_busybox();
    let vol = s.path("vol");
    std::fs::create_dir(&vol).unwrap();
    let v = format!("{}:/data", vol.display());
    s.run(&[
        "run",
        "-d",
        "--read-only",
        "-v",
        &v,
        "--name",
        "ro",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    s.run(&[
        "create",
        "-v",
        &v,
        "--name",
        "idle",
        "busybox",
        "cat",
        "/etc/copied",
    ])
    .ok();
    let file = s.path("file");
    std::fs::write(&file, "copied\n").unwrap();
    let f = file.to_str().unwrap();
    s.run(&["cp", f, "ro:/etc/"])
        .refused_with("container rootfs is marked read-only");
    // A read-only container's writable volume takes it, as docker's does.
    s.run(&["cp", f, "ro:/data/"]).ok();
    assert_eq!(read(&vol.join("file")), "copied\n");
    // A stopped container's volume is its host directory, as docker
    // mounts it for the copy: in and out, by the container's path.
    s.run(&["cp", f, "idle:/data/again"]).ok();
    assert_eq!(read(&vol.join("again")), "copied\n");
    let back = s.path("back");
    s.run(&["cp", "idle:/data", back.to_str().unwrap()]).ok();
    assert_eq!(read(&back.join("again")), "copied\n");
    // A host file bound into a stopped container is read from the host
    // (it failed: ENOTDIR); copied into, it is refused (the copy would
    // replace a file in the host's directory).
    let bound = s.path("bound.conf");
    std::fs::write(&bound, "bound\n").unwrap();
    let bind = format!("{}:/etc/app.conf", bound.display());
    s.run(&["create", "--name", "fb", "-v", &bind, "busybox", "true"])
        .ok();
    let out = s.path("bound-out");
    s.run(&["cp", "fb:/etc/app.conf", out.to_str().unwrap()])
        .ok();
    assert_eq!(read(&out), "bound\n");
    s.run(&["cp", f, "fb:/etc/app.conf"])
        .refused_with("copy into it while the container runs");
    assert_eq!(read(&bound), "bound\n");
    // `..` out of the volume's path leads to the container's own tree,
    // as it does while the container runs (it was looked for in the
    // volume: "Could not find the file").
    let passwd = s.path("passwd-out");
    s.run(&["cp", "idle:/data/../etc/passwd", passwd.to_str().unwrap()])
        .ok();
    assert!(read(&passwd).starts_with("root:"), "{}", read(&passwd));
    // A link in a stopped container's tree into its volume leads into
    // the volume, as while it runs (the copy went under the volume's
    // mount point, in the container's own layer, where the volume hid it
    // once the container started). Out again through the link too.
    let links = TarMaker::new()
        .symlink("into", "/data/sub")
        .symlink("up", "../data")
        .bytes();
    s.run_stdin(&["cp", "-", "idle:/"], &links).ok();
    std::fs::create_dir(vol.join("sub")).unwrap();
    s.run(&["cp", f, "idle:/into/linked"]).ok();
    assert_eq!(read(&vol.join("sub/linked")), "copied\n");
    s.run(&["cp", f, "idle:/up/"]).ok();
    assert_eq!(read(&vol.join("file")), "copied\n");
    let through = s.path("through");
    s.run(&["cp", "idle:/into/linked", through.to_str().unwrap()])
        .ok();
    assert_eq!(read(&through), "copied\n");
    s.run(&[
        "create",
        "-v",
        &format!("{}:/ro:ro", vol.display()),
        "--name",
        "idle-ro",
        "busybox",
        "true",
    ])
    .ok();
    s.run(&["cp", f, "idle-ro:/ro/"])
        .refused_with("mounted volume is marked read-only");
    s.run(&["cp", f, "other"])
        .refused_with("must specify at least one container source");
    s.run(&["cp", "ro:/etc/hosts", "idle:/tmp"])
        .refused_with("copying between containers is not supported");
    s.run(&["cp", f, "nothing:/tmp"])
        .refused_with("No such container: nothing");
    // An unset variable's empty path: docker's client refuses it (the
    // copy went nowhere, or a tree into the current directory).
    s.run(&["cp", "idle:/srv/d/f", ""])
        .refused_with("destination can not be empty");
    s.run(&["cp", "", "idle:/tmp"])
        .refused_with("source can not be empty");

    // kill -9 of a copy into a stopped container while its tree is
    // mounted: the mount goes with it, the store verifies, the container
    // starts, and the next copy works.
    let root = s.root().to_str().unwrap().to_string();
    let mounted = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("mounts")).ok())
            .any(|m| m.lines().any(|l| l.contains(&format!("{root}/tmp/cp-"))))
    };
    // A copy of a tar on stdin into `idle`, once its tree is mounted and
    // its helper (which unpacks in the tree) runs. (A kill while the
    // copy's own thread waits on its tree:
    // `a_copy_or_export_killed_while_it_waits_on_its_own_tree_ends`.)
    let copy_mounted = || {
        let mut copy = s
            .cmd(&["cp", "-", "idle:/tmp"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input = copy.stdin.take().unwrap();
        let helper = || {
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", copy.id()))
                .is_ok_and(|c| !c.trim().is_empty())
        };
        for _ in 0..200 {
            if mounted() && helper() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(mounted(), "the copy never mounted the container's tree");
        (copy, input)
    };
    let (mut copy, mut input) = copy_mounted();
    std::io::Write::write_all(
        &mut input,
        &TarMaker::new().file("half", b"x").bytes()[..512],
    )
    .unwrap();
    copy.kill().unwrap();
    copy.wait().unwrap();
    drop(input);
    for _ in 0..100 {
        if !mounted() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!mounted(), "the killed copy's mount stayed");
    s.run(&["verify"]).ok();
    // Its directory in tmp/ is gc's to remove (it named no process).
    s.run(&["gc"]).ok();
    let left: Vec<_> = std::fs::read_dir(s.root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    s.run(&["cp", f, "idle:/etc/copied"]).ok();
    assert_eq!(s.run(&["start", "-a", "idle"]).ok().stdout, "copied\n");

    // `rm -f` while a copy into the stopped container runs waits for it:
    // removed under it, the copy's server lost its upper and aborted
    // (a stack overflow in its thread, exit 134).
    let (mut copy, mut input) = copy_mounted();
    let mut rm = s.cmd(&["rm", "-f", "idle"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        rm.try_wait().unwrap().is_none(),
        "rm -f did not wait for the copy"
    );
    std::io::Write::write_all(&mut input, &TarMaker::new().file("late", b"x").bytes()).unwrap();
    drop(input);
    assert!(copy.wait().unwrap().success(), "the copy failed");
    assert!(rm.wait().unwrap().success(), "rm -f failed");
    s.run(&["verify"]).ok();
}

/// Swaps `DIR` with `LINK` (a symlink) for `SECONDS` seconds, as fast
/// as the kernel lets it: `DIR LINK SECONDS`.
const SWAPPER: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
    time_t end = time(0) + atoi(argv[3]);
    while (time(0) < end)
        renameat2(AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE);
    return 0;
}
"#;

/// A stopped container's volumes are bound into its tree for a copy
/// where they resolve there, by descriptor: a second container sharing
/// the volume above another one's target swaps the directory on the way
/// for a link to the host's /etc while copies run. Before, the bind
/// could land on the host's /etc in the copy's namespace, whose helper
/// (a host binary) then read the volume's ld.so.preload as host root
/// (the reviewer's library ran; here the name of a missing one makes
/// ld.so complain instead), and the copy read the wrong tree.
#[test]
fn a_volume_bind_for_a_copy_cannot_be_steered_to_the_host() {
    let s = Strata::with_busybox();
    let tools = s.path("tools");
    std::fs::create_dir(&tools).unwrap();
    common::static_program(&tools, "swapper", SWAPPER);
    for name in ["shared", "inner"] {
        s.run(&["volume", "create", name]).ok();
    }
    s.run(&[
        "create",
        "--name",
        "victim",
        "-v",
        "shared:/a",
        "-v",
        "inner:/a/b",
        "busybox",
        "true",
    ])
    .ok();
    let mount = format!("{}:/tools:ro", tools.display());
    let script = "echo /strata-probe-missing.so > /inner/ld.so.preload \
                  && echo inner > /inner/marker && mkdir -p /shared/b && ln -sfn /etc /shared/etc-link \
                  && touch /ready && exec /tools/swapper /shared/b /shared/etc-link 60";
    s.run(&[
        "run",
        "-d",
        "--name",
        "swap",
        "-v",
        "shared:/shared",
        "-v",
        "inner:/inner",
        "-v",
        &mount,
        "busybox",
        "sh",
        "-c",
        script,
    ])
    .ok();
    let ready = || s.run(&["exec", "swap", "test", "-e", "/ready"]).code == 0;
    for _ in 0..100 {
        if ready() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ready(), "the swapper did not start");
    for _ in 0..60 {
        let r = s.run(&["cp", "victim:/a/b/marker", "-"]);
        assert!(
            !r.stderr.contains("ld.so"),
            "the copy's helper read the volume's ld.so.preload: {}",
            r.stderr
        );
        // The bind landed where /a/b resolved at that moment: the volume
        // itself, or nothing when the swap had made it a link (the copy
        // then fails inside the tree); never another tree.
        if r.code == 0 {
            assert!(
                String::from_utf8_lossy(r.stdout.as_bytes()).contains("inner"),
                "{}",
                r.stdout
            );
        }
    }
    s.run(&["rm", "-f", "swap", "victim"]).ok();
}

/// One entry of [`tar_of`]: name, type, mode, uid, gid, link, data.
type Entry<'a> = (&'a str, tar::EntryType, u32, u32, u32, &'a str, &'a [u8]);

/// A tar built entry by entry, for what TarMaker does not make.
fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, uid, gid, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid((*uid).into());
        h.set_gid((*gid).into());
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        match *kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                b.append_link(&mut h, name, link).unwrap()
            }
            _ => b.append_data(&mut h, name, *data).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn a_hostile_or_odd_tar_keeps_to_the_destination_and_its_modes() {
    use tar::EntryType::{Directory, Link, Regular, Symlink, XGlobalHeader};
    let s = two_containers();
    let look = |script: &str| s.run(&["exec", "web", "sh", "-c", script]).ok().stdout;
    s.run(&["exec", "web", "mkdir", "-p", "/dst"]).ok();
    // A link to /etc, then a file through it: refused, and nothing is
    // made in /etc on the way (the parents were made before they were
    // checked: a 0777 /etc/evil/sub).
    let through = tar_of(&[
        ("x", Symlink, 0o777, 0, 0, "/etc", b""),
        ("x/evil/sub/f", Regular, 0o644, 0, 0, "", b"f"),
    ]);
    assert_ne!(s.run_stdin(&["cp", "-", "web:/dst"], &through).code, 0);
    assert_eq!(
        look("test -e /etc/evil && echo made || echo none"),
        "none\n"
    );
    // Parents the tar leaves out are made 0755.
    let parents = tar_of(&[("ia/ib/f", Regular, 0o644, 0, 0, "", b"f")]);
    s.run_stdin(&["cp", "-", "web:/dst"], &parents).ok();
    assert_eq!(look("stat -c %a /dst/ia /dst/ia/ib"), "755\n755\n");
    // -a: a hard link to a set-id file keeps its bits; a root file in a
    // setgid directory is root's group; a global PAX header is no entry.
    s.run(&[
        "exec",
        "web",
        "sh",
        "-c",
        "mkdir /sg && chown 0:50 /sg && chmod 2775 /sg",
    ])
    .ok();
    let odd = tar_of(&[
        (
            "pax_global_header",
            XGlobalHeader,
            0o644,
            0,
            0,
            "",
            b"22 comment=git-archive\n",
        ),
        ("sd", Directory, 0o755, 1234, 1234, "", b""),
        ("sd/suid", Regular, 0o4755, 1234, 1234, "", b"#!/bin/sh\n"),
        ("sd/hl", Link, 0o4755, 1234, 1234, "sd/suid", b""),
    ]);
    s.run_stdin(&["cp", "-a", "-", "web:/dst"], &odd).ok();
    assert_eq!(
        look("stat -c '%a %u' /dst/sd/suid /dst/sd/hl"),
        "4755 1234\n4755 1234\n"
    );
    let plain = tar_of(&[("f", Regular, 0o644, 0, 0, "", b"f")]);
    s.run_stdin(&["cp", "-a", "-", "web:/sg"], &plain).ok();
    assert_eq!(look("stat -c %u:%g /sg/f"), "0:0\n");
    // Without -a too: the container's root, not the directory's group.
    let nested = tar_of(&[
        ("p", Directory, 0o755, 7, 7, "", b""),
        ("p/f", Regular, 0o640, 7, 7, "", b"f"),
    ]);
    s.run_stdin(&["cp", "-", "web:/sg"], &nested).ok();
    assert_eq!(look("stat -c %u:%g /sg/p /sg/p/f"), "0:0\n0:0\n");
    // A contiguous file ('7') keeps its set-id bits through the chown,
    // as a regular one does.
    let contiguous = tar_of(&[(
        "c",
        tar::EntryType::Continuous,
        0o4755,
        1234,
        1234,
        "",
        b"c",
    )]);
    s.run_stdin(&["cp", "-a", "-", "web:/dst"], &contiguous)
        .ok();
    assert_eq!(look("stat -c '%a %u' /dst/c"), "4755 1234\n");
    // Deep names are checked parent by parent, each once.
    let deep = format!("{}/f", vec!["a"; 200].join("/"));
    let deep_tar = tar_of(&[(deep.as_str(), Regular, 0o644, 0, 0, "", b"deep")]);
    s.run_stdin(&["cp", "-", "web:/dst"], &deep_tar).ok();
    assert_eq!(look(&format!("cat /dst/{deep}")), "deep");
}

/// A FUSE mount at `mnt` (strata's fuse-overlayfs front over empty
/// layers) whose server is stopped: a request into it waits until the
/// guard drops, which kills the server and detaches the mount.
struct StalledMount {
    mnt: std::path::PathBuf,
    server: std::process::Child,
}

impl StalledMount {
    fn at(s: &Strata, mnt: &Path) -> StalledMount {
        let dirs = ["stall-lower", "stall-upper", "stall-work"].map(|d| s.path(d));
        for d in &dirs {
            std::fs::create_dir(d).unwrap();
        }
        let [lower, upper, work] = dirs.map(|d| d.display().to_string());
        // Over /dev/fuse: a stopped server then reads nothing, where its
        // io_uring ring would take requests and hold them up for good.
        let server = std::process::Command::new(common::bin())
            .env("STRATA_FUSE_URING", "off")
            .args(["fuse-overlayfs", "-f", "-o"])
            .arg(format!("lowerdir={lower},upperdir={upper},workdir={work}"))
            .arg(mnt)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stall = StalledMount {
            mnt: mnt.to_path_buf(),
            server,
        };
        let mounted = || {
            let want = mnt.display().to_string();
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        };
        for _ in 0..1000 {
            if mounted() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(mounted(), "the stalling mount never came up");
        let pid = nix::unistd::Pid::from_raw(stall.server.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        stall
    }
}

impl Drop for StalledMount {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// How many of process `pid`'s threads wait for a FUSE server's answer.
fn threads_waiting_on_fuse(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("wchan"))
                .is_ok_and(|w| w.trim() == "request_wait_answer")
        })
        .count()
}

/// Aborts, through fusectl, the FUSE connections of the mounts process
/// `pid` made in its private mount namespace (under `root`'s tmp/).
fn abort_connections_of(pid: u32, root: &Path) {
    let ours = format!("{}/tmp/", root.display());
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let connections = Path::new("/sys/fs/fuse/connections");
    // Empty unless fusectl is mounted: the process's own connection is there.
    let listed = connections.read_dir().is_ok_and(|mut d| d.next().is_some());
    let fusectl = !listed
        && nix::mount::mount(
            Some("fusectl"),
            connections,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .is_ok();
    for line in info.lines().filter(|l| l.contains(&ours)) {
        let fields: Vec<&str> = line.split(' ').collect();
        if let Some(minor) = fields[2].split(':').nth(1) {
            let _ = std::fs::write(connections.join(minor).join("abort"), "1");
        }
    }
    if fusectl {
        let _ = nix::mount::umount2(connections, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `export`, and `cp` into a stopped container (which binds its volumes),
/// serve the container's tree from their own process and walk it. Killed
/// while the walk waits for an answer their server has already read,
/// they stayed in D state for good (the kernel lets a killed caller's
/// request go only before a server read it; the connection ends when the
/// last descriptor of /dev/fuse closes, and the waiting thread held the
/// process's file table), holding the container's start lock, until the
/// connection was aborted by hand (seen in CI, session 45). A stopped
/// FUSE mount in the container's upper holds the server's answer up.
#[test]
fn a_copy_or_export_killed_while_it_waits_on_its_own_tree_ends() {
    let s = Strata::with_busybox();
    let vol = s.path("vol");
    std::fs::create_dir(&vol).unwrap();
    let v = format!("{}:/stall/data", vol.display());
    s.run(&["create", "-v", &v, "--name", "idle", "busybox", "true"])
        .ok();
    let id = s.run(&["inspect", "-f", "{{.Id}}", "idle"]).ok().stdout;
    let upper = s.root().join("containers").join(id.trim()).join("upper");
    std::fs::create_dir_all(upper.join("stall")).unwrap();
    let file = s.path("file");
    std::fs::write(&file, "copied\n").unwrap();
    let f = file.to_str().unwrap();
    let out = s.path("out.tar");
    let o = out.to_str().unwrap();
    let stall = StalledMount::at(&s, &upper.join("stall"));
    let patience = std::time::Duration::from_secs(20);
    for args in [["export", "-o", o, "idle"], ["cp", f, "idle:/etc/", "-q"]] {
        let mut victim = s
            .cmd(&args)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = victim.id();
        // Its walk waits on its own server, whose thread waits on the
        // stopped one.
        let deadline = std::time::Instant::now() + patience;
        while threads_waiting_on_fuse(pid) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let waiting = threads_waiting_on_fuse(pid);
        victim.kill().unwrap();
        let deadline = std::time::Instant::now() + patience;
        while victim.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if victim.try_wait().unwrap().is_none() {
            abort_connections_of(pid, &s.root());
            let _ = victim.wait();
            panic!(
                "{} killed while it waited on its own tree stayed in D state",
                args[0]
            );
        }
        assert!(waiting >= 2, "{} never waited on its own tree", args[0]);
    }
    drop(stall);
    s.run(&["verify"]).ok();
    // The container's lock is free, and its tree whole.
    s.run(&["cp", f, "idle:/etc/copied"]).ok();
    s.run(&["export", "-o", o, "idle"]).ok();
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}
