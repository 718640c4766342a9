//! strata as a drop-in for fuse-overlayfs: the binary run through a link
//! named `fuse-overlayfs`, with the command lines containers-storage and
//! users type. Needs root and /dev/fuse; every test unmounts what it
//! mounted and stops what it started, also when it fails.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long anything a test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A directory holding `fuse-overlayfs`, a link to the built strata.
fn overlay_program(dir: &Path) -> PathBuf {
    let p = dir.join("fuse-overlayfs");
    if !p.exists() {
        std::os::unix::fs::symlink(common::bin(), &p).expect("link fuse-overlayfs to strata");
    }
    p
}

fn is_mounted(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A mount made through the `fuse-overlayfs` name; dropping it detaches
/// the mount and stops a foreground server still running.
struct Mounted {
    mnt: PathBuf,
    server: Option<Child>,
}

impl Mounted {
    /// `fuse-overlayfs -o OPTS MNT` run in `cwd`, returning once mounted.
    fn background(dir: &Path, cwd: &Path, opts: &str, mnt: &Path) -> Mounted {
        let out = Command::new(overlay_program(dir))
            .current_dir(cwd)
            .args(["-o", opts])
            .arg(mnt)
            .output()
            .expect("fuse-overlayfs runs");
        let m = Mounted {
            mnt: cwd.join(mnt),
            server: None,
        };
        assert!(
            out.status.success(),
            "fuse-overlayfs -o {opts}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(is_mounted(&m.mnt), "{} is not mounted", m.mnt.display());
        m
    }

    /// `fuse-overlayfs -f -o OPTS MNT`, once its mount is up.
    fn foreground(dir: &Path, opts: &str, mnt: &Path) -> Mounted {
        let child = Command::new(overlay_program(dir))
            .args(["-f", "-o", opts])
            .arg(mnt)
            .stdin(Stdio::null())
            .spawn()
            .expect("fuse-overlayfs -f starts");
        let mut m = Mounted {
            mnt: mnt.to_path_buf(),
            server: Some(child),
        };
        wait_for("the foreground server to mount", || {
            if let Some(s) = m
                .server
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("the server exited before mounting: {s}");
            }
            is_mounted(mnt)
        });
        m
    }

    /// Waits for the foreground server to end by itself.
    fn wait_server(&mut self) -> ExitStatus {
        let child = self.server.as_mut().expect("a foreground server");
        let mut status = None;
        wait_for("the server to exit", || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        self.server = None;
        status.expect("exited")
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.server.as_ref().expect("a foreground server").id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `name=value` for every xattr of `p`.
fn xattrs(p: &Path) -> Vec<String> {
    xattr::list(p)
        .expect("listxattr")
        .map(|n| {
            let v = xattr::get(p, &n).expect("getxattr").unwrap_or_default();
            format!("{}={}", n.to_string_lossy(), String::from_utf8_lossy(&v))
        })
        .collect()
}

#[test]
fn lowers_given_as_links_relative_paths_and_escaped_colons_are_the_directories() {
    common::privileges::require_root_and_fuse();
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    // containers-storage's layout: overlay/l/<short> -> ../<id>/diff,
    // paths relative to the overlay directory.
    for (id, file) in [("id1", "a"), ("id:2", "b")] {
        let diff = d.join(id).join("diff");
        fs::create_dir_all(&diff).expect("mkdir diff");
        fs::write(diff.join(file), file).expect("write lower file");
        fs::set_permissions(&diff, fs::Permissions::from_mode(0o751)).expect("chmod");
    }
    fs::create_dir(d.join("l")).expect("mkdir l");
    std::os::unix::fs::symlink("../id1/diff", d.join("l/SHORT1")).expect("link");
    for dir in ["u", "w", "m"] {
        fs::create_dir(d.join(dir)).expect("mkdir");
    }
    let m = Mounted::background(
        d,
        d,
        r"lowerdir=l/SHORT1:id\:2/diff,upperdir=u,workdir=w",
        Path::new("m"),
    );
    let root = fs::metadata(&m.mnt).expect("stat the mount's root");
    assert!(root.is_dir(), "the root is a directory");
    assert_eq!(root.mode() & 0o7777, 0o751, "the root has the lower's mode");
    assert_eq!(fs::read_to_string(m.mnt.join("a")).expect("read a"), "a");
    assert_eq!(fs::read_to_string(m.mnt.join("b")).expect("read b"), "b");
    fs::write(m.mnt.join("new"), "n").expect("write a new file");
    let marks = xattrs(&d.join("u"));
    assert!(
        !marks.iter().any(|l| l.contains("symlink")),
        "the upper's root records a link: {marks:?}"
    );
}

/// `ro`, `nosuid`, `nodev` and `noexec` reach the kernel, as fuse-overlayfs
/// hands them on (containers-storage passes its `mountopt`, `nodev` by
/// default): as root they were dropped with a warning (`ro` silently),
/// and the mount took writes and opened device nodes.
#[test]
fn ro_nosuid_nodev_and_noexec_reach_the_kernel() {
    common::privileges::require_root_and_fuse();
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let (opts, mnt) = empty_overlay(d);
    let m = Mounted::background(d, d, &format!("{opts},ro,nosuid,nodev,noexec"), &mnt);
    let want = m.mnt.to_string_lossy().into_owned();
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .expect("the mount's line");
    let flags: Vec<&str> = line.split(' ').nth(5).unwrap_or("").split(',').collect();
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(flags.contains(&flag), "{flag} missing: {line}");
    }
    let err = fs::write(m.mnt.join("new"), "n").expect_err("a write to a ro mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    drop(m);
    // And the defaults stay a writable mount that honours set-id bits.
    let m = Mounted::background(d, d, &opts, &mnt);
    fs::write(m.mnt.join("new"), "n").expect("a write without ro");
}

/// A lower (or upper) that is the mountpoint, holds it or lies below it
/// would be read through the mount itself: the server's first lookup there was a request
/// to itself, and `ls` of the mount hung in D state for good (a review as
/// an attacker). The mount is refused in one line naming both.
#[test]
fn a_layer_holding_its_own_mountpoint_is_refused() {
    common::privileges::require_root_and_fuse();
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    for dir in ["par/m/low", "u", "w"] {
        fs::create_dir_all(d.join(dir)).expect("mkdir");
    }
    // The mountpoint itself, a directory above it, one below it.
    for lower in ["par/m", "par", "par/m/low"] {
        let out = Command::new(overlay_program(d))
            .current_dir(d)
            .args([
                "-o",
                &format!("lowerdir={lower},upperdir=u,workdir=w"),
                "par/m",
            ])
            .output()
            .expect("fuse-overlayfs runs");
        let mounted = is_mounted(&d.join("par/m"));
        if mounted {
            // Detached without a lookup: a look inside would hang.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(d.join("par/m"))
                .status();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!mounted, "lowerdir={lower} was mounted on par/m");
        assert!(!out.status.success(), "lowerdir={lower}: {stderr}");
        assert!(
            stderr.contains("would be read through the mount itself"),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// fuse-overlayfs options for an empty lower, upper and work directory
/// in `d`, and the mountpoint `d/m`.
fn empty_overlay(d: &Path) -> (String, PathBuf) {
    for dir in ["lower", "u", "w", "m"] {
        fs::create_dir(d.join(dir)).expect("mkdir");
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        d.join("lower").display(),
        d.join("u").display(),
        d.join("w").display()
    );
    (opts, d.join("m"))
}

/// Mounts a tmpfs holding `mark` ("new") at `mnt`: another filesystem
/// mounted where a server's mount was.
fn mount_marked_tmpfs(mnt: &Path) {
    use nix::mount::{mount, MsFlags};
    mount(
        Some("tmpfs"),
        mnt,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount a tmpfs where the server's mount was");
    fs::write(mnt.join("mark"), "new").expect("write to the new mount");
}

/// What `mark` at `mnt` holds now, once everything mounted there is gone.
fn mark_then_unmount(mnt: &Path) -> Option<String> {
    let kept = fs::read_to_string(mnt.join("mark")).ok();
    while is_mounted(mnt) {
        nix::mount::umount(mnt).expect("unmount the tmpfs");
    }
    kept
}

#[test]
fn sigterm_and_sigint_unmount_a_foreground_server_which_exits_0() {
    use nix::sys::signal::Signal;
    common::privileges::require_root_and_fuse();
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let (opts, mnt) = empty_overlay(d);
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut m = Mounted::foreground(d, &opts, &mnt);
        fs::write(mnt.join("f"), "x").expect("write through the mount");
        m.signal(sig);
        let status = m.wait_server();
        assert_eq!(
            status.code(),
            Some(0),
            "{sig}: the server ended with {status}"
        );
        assert!(!is_mounted(&mnt), "{sig}: the mount is left behind");
    }
    let mut m = Mounted::foreground(d, &opts, &mnt);
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .output()
        .expect("fusermount3 runs");
    assert!(out.status.success(), "fusermount3 -u: {out:?}");
    let status = m.wait_server();
    assert_eq!(status.code(), Some(0), "after fusermount3 -u: {status}");
}

/// containers-storage unmounts a container's mount and may mount it again
/// at once (podman's cleanup beside `podman diff`): the old server, ending
/// after the new mount is up, must leave the new mount alone. It unmounted
/// whatever was mounted at its path (fuser took a dead connection for a
/// live one), and `podman diff` walked an empty directory.
#[test]
fn a_server_ending_after_its_unmount_leaves_a_new_mount_at_its_path_alone() {
    use nix::mount::umount;
    use nix::sys::signal::Signal;
    common::privileges::require_root_and_fuse();
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let (opts, mnt) = empty_overlay(d);
    let mut m = Mounted::foreground(d, &opts, &mnt);
    // Stopped, the server cannot end before the next mount is up.
    m.signal(Signal::SIGSTOP);
    umount(&mnt).expect("unmount the server's mount");
    mount_marked_tmpfs(&mnt);
    m.signal(Signal::SIGCONT);
    let status = m.wait_server();
    let kept = mark_then_unmount(&mnt);
    assert_eq!(status.code(), Some(0), "the server ended with {status}");
    assert_eq!(
        kept.as_deref(),
        Some("new"),
        "the ending server unmounted the mount made after its own"
    );
}

/// A mount in use that someone detached (podman falls back to a lazy
/// unmount when the tree is busy) and whose path was mounted again: a
/// SIGTERM to the old server ends it and leaves the new mount alone. It
/// detached whatever was at its path, the new mount, and served on.
#[test]
fn sigterm_to_a_detached_server_leaves_the_mount_made_at_its_path_since() {
    use nix::mount::{umount2, MntFlags};
    use nix::sys::signal::Signal;
    common::privileges::require_root_and_fuse();
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let (opts, mnt) = empty_overlay(d);
    let mut m = Mounted::foreground(d, &opts, &mnt);
    let busy = fs::File::open(&mnt).expect("hold the mount's root open");
    umount2(&mnt, MntFlags::MNT_DETACH).expect("detach the busy mount");
    mount_marked_tmpfs(&mnt);
    m.signal(Signal::SIGTERM);
    let status = m.wait_server();
    drop(busy);
    let kept = mark_then_unmount(&mnt);
    assert_eq!(status.code(), Some(0), "the server ended with {status}");
    assert_eq!(
        kept.as_deref(),
        Some("new"),
        "the signalled server unmounted the mount made after its own"
    );
}

/// A mount of one lower file (`data`, owned by `owner`, mode `mode`) with
/// ids mapped 0:100000:65536 both ways and `allow_other`, in `d`; the
/// mount and the file as it shows there. `d` is made searchable for the
/// callers the tests switch to.
fn one_file_mapped(d: &Path, name: &str, owner: (u32, u32), mode: u32) -> (Mounted, PathBuf) {
    for sub in ["l", "u", "w", "m"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    let f = d.join("l").join(name);
    fs::write(&f, "data").unwrap();
    std::os::unix::fs::chown(&f, Some(owner.0), Some(owner.1)).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},uidmapping=0:100000:65536,gidmapping=0:100000:65536,allow_other",
        d.join("l").display(),
        d.join("u").display(),
        d.join("w").display()
    );
    let m = Mounted::background(d, d, &opts, &d.join("m"));
    let shown = m.mnt.join(name);
    (m, shown)
}

/// Runs `args` as `setpriv` switches to `ids` (its options) and fails the
/// test if it fails.
fn run_as(ids: &[&str], args: &[&str], file: &Path) {
    let out = Command::new("setpriv")
        .args(ids)
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A caller the uid mapping does not cover is stored as the overflow id
/// (65534) for what it makes, but owns nothing: its chown(f, -1, -1) of a
/// set-id file stored as 65534 leaves the bits, as the kernel leaves them
/// for a non-owner on ext4 (it cleared them once, taken for the owner).
#[test]
fn an_unmapped_caller_owns_no_file_stored_as_the_overflow_id() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, shown) = one_file_mapped(dir.path(), "nobodys", (65534, 65534), 0o6755);
    assert_eq!(fs::metadata(&shown).unwrap().uid(), 165534);
    run_as(
        &["--reuid", "1000", "--regid", "1000", "--clear-groups"],
        &["perl", "-e", "chown(-1, -1, $ARGV[0])"],
        &shown,
    );
    let mode = fs::metadata(&shown).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o6755, "uid 1000 is not the file's owner");
}

/// Under `gidmapping`, a caller's supplementary groups count in the ids
/// the mount stores, as its own group does: a member of a 6666 file's
/// group through a supplementary group, without CAP_FSETID, appending to
/// it loses S_ISUID and keeps S_ISGID (no group execute), as on ext4. The
/// groups /proc shows are the host's; compared unmapped, the caller was
/// outside the group and lost both.
#[test]
fn a_supplementary_group_counts_through_the_gid_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, shown) = one_file_mapped(dir.path(), "shared", (0, 50), 0o6666);
    assert_eq!(fs::metadata(&shown).unwrap().gid(), 100050);
    run_as(
        &[
            "--reuid", "101000", "--regid", "101000", "--groups", "100050",
        ],
        &["sh", "-c", "echo more >> \"$1\"", "sh"],
        &shown,
    );
    let mode = fs::metadata(&shown).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o2666, "the writer is in the file's group");
}
