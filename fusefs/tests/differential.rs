//! Differential test against kernel overlayfs: the same random operation
//! sequences run on strata (a `DirLower` over a lower tree + an upper) and on
//! `mount -t overlay` built from a copy of the same lower tree. Every
//! operation's result and errno must match, and so must the final trees
//! (names, types, modes, owners, sizes, contents, link counts, user xattrs,
//! POSIX ACLs). ACLs are set, inherited through default ACLs and checked by
//! opening files as another user, so the kernel's ACL checks on strata are
//! compared too.
//!
//! Kernel overlayfs is mounted with `redirect_dir=on`, as strata moves a
//! directory with lower content: alone, with a redirect to that content.
//!
//! Accepted difference, where strata gives a local filesystem's answer:
//! - removing an ACL an entry does not have: ext4 and strata succeed;
//!   overlayfs says ENODATA when the entry is still only in the lower.
//!
//! Each seed runs twice: on a strata mount as made by default (no OPEN
//! requests) and on one with FUSE passthrough. At the end of each run the
//! uppers change hands: kernel overlayfs mounts strata's upper and strata
//! serves the kernel's (with the kernel's redirects), and both must show
//! the kernel's tree. A one-sided run renames many more directories with
//! lower content on strata and has kernel overlayfs read that upper.
//! Directory times across copy-up are compared with the kernel's too.
//!
//! Needs root (overlayfs and FUSE mounts); fails, never skips, without it.
//! A failure names its seed: `STRATA_DIFF_SEEDS=<seed> cargo test -p fusefs
//! --test differential` replays it.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use fusefs::{DirLower, MountHandle, MountOptions};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OPS_PER_SEED: usize = 3000;
const DEFAULT_SEEDS: [u64; 3] = [1, 2, 3];
const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const OWNERS: [u32; 3] = [0, 1000, 1001];
const MODES: [u32; 6] = [0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777];

/// splitmix64: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// A relative path of depth 1 to 3 over a few names, so operations
    /// collide often.
    fn path(&mut self) -> String {
        let depth = match self.below(20) {
            0..=9 => 1,
            10..=16 => 2,
            _ => 3,
        };
        (0..depth)
            .map(|_| self.pick(&NAMES))
            .collect::<Vec<_>>()
            .join("/")
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(String, u32),
    Write(String, u64, usize, u8),
    Truncate(String, u64),
    Rename(String, String),
    Link(String, String),
    Unlink(String),
    Mkdir(String, u32),
    Rmdir(String),
    Chmod(String, u32),
    Chown(String, u32, u32),
    SetXattr(String, String, u8),
    Symlink(String, String),
    Mkfifo(String, u32),
    Read(String),
    Stat(String),
    /// setfacl: access (false) or default (true) ACL, or its removal.
    SetAcl(String, bool, Option<Vec<u8>>),
    /// Opens for reading (false) or writing (true) as this uid and gid.
    OpenAs(String, u32, bool),
}

fn random_op(rng: &mut Rng) -> Op {
    let p = rng.path();
    match rng.below(18) {
        0 => Op::Create(p, rng.pick(&MODES)),
        1 => Op::Write(
            p,
            rng.below(9000),
            rng.below(5000) as usize,
            rng.next() as u8,
        ),
        2 => Op::Truncate(p, rng.below(12000)),
        3 => Op::Rename(p, rng.path()),
        4 => Op::Link(p, rng.path()),
        5 => Op::Unlink(p),
        6 => Op::Mkdir(p, rng.pick(&MODES)),
        7 => Op::Rmdir(p),
        8 => Op::Chmod(p, rng.pick(&MODES)),
        9 => Op::Chown(p, rng.pick(&OWNERS), rng.pick(&OWNERS)),
        10 => Op::SetXattr(p, format!("user.k{}", rng.below(3)), rng.next() as u8),
        11 => Op::Symlink(rng.pick(&NAMES).to_string(), p),
        12 => Op::Mkfifo(p, rng.pick(&MODES)),
        13 => Op::Read(p),
        14 => Op::SetAcl(
            p,
            rng.below(2) == 1,
            (rng.below(5) != 0).then(|| random_acl(rng)),
        ),
        15 | 16 => Op::OpenAs(p, rng.pick(&OWNERS[1..]), rng.below(2) == 1),
        _ => Op::Stat(p),
    }
}

const ACL_NAMES: [&str; 2] = [XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT];
const XATTR_ACL_ACCESS: &str = "system.posix_acl_access";
const XATTR_ACL_DEFAULT: &str = "system.posix_acl_default";

/// A valid ACL in the xattr format: owner, maybe a named user, group, maybe
/// a named group, a mask when there are named entries, other; sorted by
/// tag as the kernel wants them.
fn random_acl(rng: &mut Rng) -> Vec<u8> {
    let mut entries: Vec<(u16, u16, u32)> = vec![(0x01, rng.below(8) as u16, u32::MAX)];
    let named_user = rng.below(2) == 1;
    if named_user {
        entries.push((0x02, rng.below(8) as u16, rng.pick(&OWNERS[1..])));
    }
    entries.push((0x04, rng.below(8) as u16, u32::MAX));
    let named_group = rng.below(3) == 0;
    if named_group {
        entries.push((0x08, rng.below(8) as u16, rng.pick(&OWNERS[1..])));
    }
    if named_user || named_group {
        entries.push((0x10, rng.below(8) as u16, u32::MAX));
    }
    entries.push((0x20, rng.below(8) as u16, u32::MAX));
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

type Outcome = Result<String, i32>;

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn stat_line(md: &fs::Metadata) -> String {
    let ft = md.file_type();
    let dir = ft.is_dir();
    // A directory's size and link count depend on the filesystem.
    format!(
        "{:o} {}:{} size={} nlink={}",
        md.mode(),
        md.uid(),
        md.gid(),
        if dir { 0 } else { md.size() },
        if dir { 0 } else { md.nlink() }
    )
}

fn apply(root: &Path, op: &Op) -> Outcome {
    let at = |p: &str| root.join(p);
    match op {
        Op::Create(p, mode) => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .open(at(p))
            .map(|_| String::new())
            .map_err(errno),
        Op::Write(p, off, len, byte) => {
            // Non-blocking: a fifo without a reader is ENXIO, not a hang.
            let f = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(at(p))
                .map_err(errno)?;
            f.write_all_at(&vec![*byte; *len], *off).map_err(errno)?;
            Ok(String::new())
        }
        Op::Truncate(p, len) => nix::unistd::truncate(&at(p), *len as i64)
            .map(|_| String::new())
            .map_err(|e| e as i32),
        Op::Rename(a, b) => fs::rename(at(a), at(b))
            .map(|_| String::new())
            .map_err(errno),
        Op::Link(a, b) => fs::hard_link(at(a), at(b))
            .map(|_| String::new())
            .map_err(errno),
        Op::Unlink(p) => fs::remove_file(at(p)).map(|_| String::new()).map_err(errno),
        Op::Mkdir(p, mode) => fs::DirBuilder::new()
            .mode(*mode)
            .create(at(p))
            .map(|_| String::new())
            .map_err(errno),
        Op::Rmdir(p) => fs::remove_dir(at(p)).map(|_| String::new()).map_err(errno),
        Op::Chmod(p, mode) => fs::set_permissions(at(p), fs::Permissions::from_mode(*mode))
            .map(|_| String::new())
            .map_err(errno),
        Op::Chown(p, u, g) => std::os::unix::fs::lchown(at(p), Some(*u), Some(*g))
            .map(|_| String::new())
            .map_err(errno),
        Op::SetXattr(p, name, v) => xattr::set(at(p), name, &[*v])
            .map(|_| String::new())
            .map_err(errno),
        Op::Symlink(target, p) => std::os::unix::fs::symlink(target, at(p))
            .map(|_| String::new())
            .map_err(errno),
        Op::Mkfifo(p, mode) => nix::unistd::mkfifo(
            &at(p),
            nix::sys::stat::Mode::from_bits_truncate(*mode as nix::libc::mode_t),
        )
        .map(|_| String::new())
        .map_err(|e| e as i32),
        Op::Read(p) => {
            let md = fs::symlink_metadata(at(p)).map_err(errno)?;
            if !md.is_file() {
                return Ok("not a file".into()); // opening a fifo would block
            }
            fs::read(at(p))
                .map(|d| format!("{} bytes, sum {}", d.len(), checksum(&d)))
                .map_err(errno)
        }
        Op::Stat(p) => fs::symlink_metadata(at(p))
            .map(|md| stat_line(&md))
            .map_err(errno),
        Op::SetAcl(p, default, acl) => {
            let name = ACL_NAMES[usize::from(*default)];
            match acl {
                Some(v) => xattr::set(at(p), name, v),
                None => xattr::remove(at(p), name),
            }
            .map(|_| String::new())
            .map_err(errno)
        }
        Op::OpenAs(p, id, write) => {
            // A child with other ids tries the open; its exit status is
            // the errno (0 for success). Fifos are skipped: they block.
            let md = fs::symlink_metadata(at(p)).map_err(errno)?;
            if !md.is_file() {
                return Ok("not a file".into());
            }
            let redirect = if *write { "3>>\"$1\"" } else { "3<\"$1\"" };
            let status = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("exec {redirect} 2>&1"), "sh"])
                .arg(at(p))
                .uid(*id)
                .gid(*id)
                .output()
                .expect("run sh as another user");
            Ok(format!(
                "as {id}: exit {:?} {}",
                status.status.code(),
                String::from_utf8_lossy(&status.stderr).replace(&*root.to_string_lossy(), "")
            ))
        }
    }
}

fn checksum(d: &[u8]) -> u64 {
    d.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Everything compared of a tree: path -> description.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let md = fs::symlink_metadata(root).expect("lstat root");
    out.insert("/".into(), stat_line(&md));
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for de in fs::read_dir(dir).expect("readdir") {
        let p = de.expect("dirent").path();
        let rel = p
            .strip_prefix(root)
            .expect("below root")
            .display()
            .to_string();
        let md = fs::symlink_metadata(&p).expect("lstat");
        let ft = md.file_type();
        let mut desc = stat_line(&md);
        if ft.is_file() {
            desc += &format!(" sum={}", checksum(&fs::read(&p).expect("read")));
        } else if ft.is_symlink() {
            desc += &format!(" -> {}", fs::read_link(&p).expect("readlink").display());
        }
        if ft.is_file() || ft.is_dir() {
            for (n, v) in compared_xattrs(&p) {
                desc += &format!(" {n}={v:?}");
            }
        }
        out.insert(rel, desc);
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// The entries where the trees differ, both ways, or "trees equal".
fn tree_differences(strata: &Path, ovl: &Path) -> String {
    snapshot_differences(&snapshot(strata), &snapshot(ovl))
}

fn snapshot_differences(s: &BTreeMap<String, String>, o: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for k in s.keys().chain(o.keys().filter(|k| !s.contains_key(*k))) {
        let (a, b) = (s.get(k), o.get(k));
        if a != b {
            out += &format!("  {k}:\n    strata    {a:?}\n    overlayfs {b:?}\n");
        }
    }
    if out.is_empty() {
        "trees equal".into()
    } else {
        format!("entries that differ:\n{out}")
    }
}

fn assert_same_trees(strata: &Path, ovl: &Path, when: &str) {
    let d = tree_differences(strata, ovl);
    assert!(d == "trees equal", "{when}: {d}");
}

/// A random lower tree: directories, files, symlinks and fifos with
/// several owners and modes, some with user xattrs.
fn build_lower(root: &Path, rng: &mut Rng) {
    fs::create_dir_all(root).expect("mkdir lower");
    for _ in 0..60 {
        let p = root.join(rng.path());
        if p.parent().is_some_and(|d| !d.is_dir()) || p.symlink_metadata().is_ok() {
            continue;
        }
        match rng.below(10) {
            0..=3 => {
                fs::create_dir(&p).expect("mkdir");
                if rng.below(4) == 0 {
                    xattr::set(&p, XATTR_ACL_DEFAULT, &random_acl(rng)).expect("set ACL");
                }
            }
            4..=7 => {
                let mut f = fs::File::create(&p).expect("create");
                let n = rng.below(6000) as usize;
                f.write_all(&vec![rng.next() as u8; n]).expect("write");
                if rng.below(3) == 0 {
                    xattr::set(&p, "user.k0", b"lower").expect("setxattr");
                }
                if rng.below(4) == 0 {
                    xattr::set(&p, XATTR_ACL_ACCESS, &random_acl(rng)).expect("set ACL");
                }
            }
            8 => std::os::unix::fs::symlink(rng.pick(&NAMES), &p).expect("symlink"),
            _ => nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644))
                .expect("mkfifo"),
        }
        if !p.is_symlink() {
            fs::set_permissions(&p, fs::Permissions::from_mode(rng.pick(&MODES))).expect("chmod");
        }
        std::os::unix::fs::lchown(&p, Some(rng.pick(&OWNERS)), Some(rng.pick(&OWNERS)))
            .expect("chown");
    }
}

/// Held by each test of this file while it runs. The random runs fork
/// (`sh` opening files as other users), and a child between fork and exec
/// holds every descriptor of its parent: one open on another test's mount
/// made that test's unmount fail with EBUSY.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A kernel overlayfs mount with `redirect_dir=on` (directories with
/// lower content move with a redirect, as on strata), unmounted on drop
/// (also when a test fails).
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lower: &Path, upper: &Path, work: &Path, mnt: &Path) -> Overlay {
        for d in [upper, work, mnt] {
            fs::create_dir_all(d).expect("mkdir");
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=on",
            lower.display(),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            mnt,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t overlay {data} on {}: {e}", mnt.display()));
        Overlay(mnt.to_path_buf())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn wait_mounted(mnt: &Path) {
    let want = mnt.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "{want} never appeared in mountinfo"
        );
        std::thread::yield_now();
    }
}

/// Copies a tree as is (owners, modes, xattrs), so both filesystems start
/// from identical, separate lowers.
fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// The xattrs compared: user ones and ACLs.
fn compared_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = xattr::list(p)
        .expect("listxattr")
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("user.") || ACL_NAMES.contains(&n.as_str()))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|n| {
            let v = xattr::get(p, &n).expect("getxattr")?;
            Some((n, v))
        })
        .collect()
}

/// One seed's run, on a strata mount opening files without the server
/// (`passthrough: None`) or answering OPEN, passing files of at least the
/// size given through (4 KiB: the operations' files cross it both ways).
fn run_seed(seed: u64, passthrough: Option<u64>) -> Vec<String> {
    let run = match passthrough {
        None => format!("seed {seed} (no OPEN)"),
        Some(n) => format!("seed {seed} (passthrough from {n} bytes)"),
    };
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir on ext4");
    let d = dir.path();
    let mut rng = Rng(seed);
    build_lower(&d.join("lower"), &mut rng);
    copy_tree(&d.join("lower"), &d.join("ovl-lower"));
    let ovl = Overlay::mount(
        &d.join("ovl-lower"),
        &d.join("ovl-upper"),
        &d.join("ovl-work"),
        &d.join("ovl"),
    );
    fs::create_dir_all(d.join("strata")).expect("mkdir");
    let mut opts = MountOptions::new(
        vec![Box::new(DirLower::new(d.join("lower")))],
        Some(d.join("upper")),
    );
    opts.allow_other = true; // OpenAs acts as other users
    opts.passthrough = passthrough.is_some();
    opts.passthrough_min_size = passthrough.unwrap_or(0);
    let strata: MountHandle = fusefs::mount(opts, &d.join("strata")).expect("mount strata");
    wait_mounted(&d.join("strata"));
    let (s, o) = (d.join("strata"), d.join("ovl"));
    assert_same_trees(&s, &o, &format!("{run}, before any operation"));

    let mut accepted = Vec::new();
    let mut moved_dirs = 0;
    for i in 0..OPS_PER_SEED {
        let op = directory_move(&o, &mut rng).unwrap_or_else(|| random_op(&mut rng));
        let moved_dir = matches!(&op, Op::Rename(from, _) if o.join(from).is_dir());
        let got = apply(&s, &op);
        let want = apply(&o, &op);
        if moved_dir && want.is_ok() {
            moved_dirs += 1;
        }
        if let (Op::SetAcl(p, _, None), Ok(_), Err(libc::ENODATA)) = (&op, &got, &want) {
            if fs::symlink_metadata(d.join("ovl-upper").join(p)).is_err() {
                // overlayfs answers for a lower-only entry from the lower;
                // ext4, and strata, remove an absent ACL without error.
                accepted.push(format!(
                    "{run} op {i}: {op:?}: overlayfs ENODATA, strata {got:?}"
                ));
                continue;
            }
        }
        if got != want {
            panic!(
                "{run} op {i}: {op:?}: strata {got:?}, overlayfs {want:?}\n{}",
                tree_differences(&s, &o)
            );
        }
        if i % 500 == 499 {
            assert_same_trees(&s, &o, &format!("{run}, after op {i}"));
        }
    }
    eprintln!(
        "{run}: {moved_dirs} directories moved; redirects in the uppers: strata {}, overlayfs {}",
        redirects(&d.join("upper")),
        redirects(&d.join("ovl-upper"))
    );
    assert_same_trees(&s, &o, &format!("{run}, at the end"));
    let want = snapshot(&o);
    strata.unmount().expect("unmount strata");
    drop(ovl);
    uppers_are_read_across(d, &want, &run);
    accepted
}

/// Each upper in the other's hands: strata's upper (in kernel overlayfs's
/// format, as root writes it) mounted by kernel overlayfs over the same
/// lower, and kernel overlayfs's upper served by strata, both show `want`,
/// the tree kernel overlayfs showed at the end of the run.
fn uppers_are_read_across(d: &Path, want: &BTreeMap<String, String>, run: &str) {
    {
        let k = d.join("kernel-on-strata-upper");
        let _m = Overlay::mount(&d.join("lower"), &d.join("upper"), &d.join("k-work"), &k);
        let diff = snapshot_differences(want, &snapshot(&k));
        assert!(
            diff == "trees equal",
            "{run}: strata's upper under kernel overlayfs (\"strata\" is what overlayfs showed, \"overlayfs\" what it shows on strata's upper): {diff}"
        );
    }
    let s = d.join("strata-on-kernel-upper");
    fs::create_dir_all(&s).expect("mkdir");
    let mut opts = MountOptions::new(
        vec![Box::new(DirLower::new(d.join("ovl-lower")))],
        Some(d.join("ovl-upper")),
    );
    opts.allow_other = true;
    let _m: MountHandle = fusefs::mount(opts, &s).expect("mount strata");
    wait_mounted(&s);
    let diff = snapshot_differences(&snapshot(&s), want);
    assert!(
        diff == "trees equal",
        "{run}: kernel overlayfs's upper served by strata: {diff}"
    );
}

#[test]
fn random_operations_give_the_same_results_and_trees_as_overlayfs() {
    common::require_fuse();
    let _one_at_a_time = one_at_a_time();
    let seeds = seeds_or(&DEFAULT_SEEDS);
    let modes = [None, Some(4096), Some(0)];
    for (seed, passthrough) in seeds.iter().flat_map(|&s| modes.map(|m| (s, m))) {
        let accepted = run_seed(seed, passthrough);
        eprintln!(
            "seed {seed}, passthrough {passthrough:?}: {OPS_PER_SEED} ops equal; {} accepted differences:",
            accepted.len()
        );
        for a in accepted {
            eprintln!("  {a}");
        }
    }
}

/// Directory times across copy-up, on strata and on kernel overlayfs: a
/// copy-up of `a/b/f` keeps `a` and `a/b` at the lower's times (in the
/// view and in the upper); creating `a/c/new` copies `a/c` up and changes
/// its times, while `a`, the parent the copy-up wrote into, keeps its own.
#[test]
fn directory_times_across_copy_up_are_kernel_overlayfs_s() {
    common::require_fuse();
    let _one_at_a_time = one_at_a_time();
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir on ext4");
    let d = dir.path();
    let lower = d.join("lower");
    fs::create_dir_all(lower.join("a/b")).expect("mkdir");
    fs::create_dir_all(lower.join("a/c")).expect("mkdir");
    fs::write(lower.join("a/b/f"), "f").expect("write");
    let old = |secs: i64| nix::sys::time::TimeSpec::new(secs, 123_456_789);
    let lower_times = [
        ("a", 1_000_000_000),
        ("a/b", 1_100_000_000),
        ("a/c", 1_200_000_000),
    ];
    for (p, secs) in lower_times {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &lower.join(p),
            &old(secs),
            &old(secs),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("set a lower directory's times");
    }
    copy_tree(&lower, &d.join("ovl-lower"));
    let _ovl = Overlay::mount(
        &d.join("ovl-lower"),
        &d.join("ovl-upper"),
        &d.join("ovl-work"),
        &d.join("ovl"),
    );
    fs::create_dir_all(d.join("strata")).expect("mkdir");
    let opts = MountOptions::new(vec![Box::new(DirLower::new(lower))], Some(d.join("upper")));
    let _strata: MountHandle = fusefs::mount(opts, &d.join("strata")).expect("mount strata");
    wait_mounted(&d.join("strata"));
    let mtime = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        (m.mtime(), m.mtime_nsec())
    };
    for (mnt, upper) in [("strata", "upper"), ("ovl", "ovl-upper")] {
        let (m, u) = (d.join(mnt), d.join(upper));
        fs::OpenOptions::new()
            .append(true)
            .open(m.join("a/b/f"))
            .and_then(|mut f| f.write_all(b"more"))
            .expect("append: copy-up of a/b/f");
        for (p, secs) in &lower_times[..2] {
            let want = (*secs, 123_456_789);
            assert_eq!(mtime(&m.join(p)), want, "{mnt}: {p} after copy-up of a/b/f");
            assert_eq!(mtime(&u.join(p)), want, "{mnt}: {p} in the upper");
        }
        fs::write(m.join("a/c/new"), "n").expect("create a/c/new");
        assert_eq!(
            mtime(&m.join("a")),
            (1_000_000_000, 123_456_789),
            "{mnt}: a after a child was made in a/c"
        );
        assert_ne!(
            mtime(&m.join("a/c")).0,
            1_200_000_000,
            "{mnt}: a/c changed when a child was made in it"
        );
    }
}

/// Ops per seed of the one-sided runs below.
const ONE_SIDED_OPS: usize = 400;

/// The seeds of a test: STRATA_DIFF_SEEDS when set, else `default`.
fn seeds_or(default: &[u64]) -> Vec<u64> {
    match std::env::var("STRATA_DIFF_SEEDS") {
        Ok(s) => s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .expect("STRATA_DIFF_SEEDS: comma-separated numbers")
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// How many directories of an upper carry a redirect.
fn redirects(dir: &Path) -> usize {
    let mut n = 0;
    for de in fs::read_dir(dir).expect("readdir") {
        let p = de.expect("dirent").path();
        if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            n += usize::from(xattr::get(&p, "trusted.overlay.redirect").is_ok_and(|v| v.is_some()));
            n += redirects(&p);
        }
    }
    n
}

/// One op in 8: a rename of an existing directory of `root` (most have
/// lower content) to a free place, which random paths rarely give.
fn directory_move(root: &Path, rng: &mut Rng) -> Option<Op> {
    if rng.below(8) != 0 {
        return None;
    }
    Some(Op::Rename(
        some_dir(root, rng)?,
        some_free_place(root, rng)?,
    ))
}

/// A random existing directory below `root` (relative), if any.
fn some_dir(root: &Path, rng: &mut Rng) -> Option<String> {
    (0..16).map(|_| rng.path()).find(|p| root.join(p).is_dir())
}

/// A random path below `root` whose parent is a directory, if any.
fn some_free_place(root: &Path, rng: &mut Rng) -> Option<String> {
    (0..16).map(|_| rng.path()).find(|p| {
        let p = root.join(p);
        p.parent().is_some_and(Path::is_dir) && p.symlink_metadata().is_err()
    })
}

/// Random operations on strata alone, a quarter of them renames of
/// existing directories (most with lower content): then strata is
/// unmounted and kernel overlayfs (`redirect_dir=on`), over the same lower
/// with strata's upper, shows the tree strata showed.
#[test]
fn strata_upper_with_renamed_directories_shows_the_same_tree_under_kernel_overlayfs() {
    common::require_fuse();
    let _one_at_a_time = one_at_a_time();
    for seed in seeds_or(&[11, 12, 13]) {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir on ext4");
        let d = dir.path();
        let mut rng = Rng(seed);
        build_lower(&d.join("lower"), &mut rng);
        let s = d.join("strata");
        fs::create_dir_all(&s).expect("mkdir");
        let mut opts = MountOptions::new(
            vec![Box::new(DirLower::new(d.join("lower")))],
            Some(d.join("upper")),
        );
        opts.allow_other = true; // OpenAs acts as other users
        let want = {
            let _m: MountHandle = fusefs::mount(opts, &s).expect("mount strata");
            wait_mounted(&s);
            let mut renamed = 0;
            for _ in 0..ONE_SIDED_OPS {
                let op = match rng.below(4) {
                    0 => match (some_dir(&s, &mut rng), some_free_place(&s, &mut rng)) {
                        (Some(from), Some(to)) => Op::Rename(from, to),
                        _ => random_op(&mut rng),
                    },
                    _ => random_op(&mut rng),
                };
                let moved_dir = matches!(&op, Op::Rename(from, _) if s.join(from).is_dir());
                if apply(&s, &op).is_ok() && moved_dir {
                    renamed += 1;
                }
            }
            eprintln!("seed {seed}: {ONE_SIDED_OPS} ops on strata, {renamed} directories renamed");
            snapshot(&s)
        };
        let k = d.join("kernel");
        let _k = Overlay::mount(&d.join("lower"), &d.join("upper"), &d.join("k-work"), &k);
        let diff = snapshot_differences(&want, &snapshot(&k));
        assert!(
            diff == "trees equal",
            "seed {seed} (STRATA_DIFF_SEEDS={seed} replays it): strata's upper under kernel \
             overlayfs (\"strata\" is what strata showed, \"overlayfs\" what the kernel shows): {diff}"
        );
    }
}

/// The moves of [`a_renamed_lower_directory_shows_one_tree_on_strata_and_kernel_overlayfs`]:
/// within a directory, across directories, a renamed directory moved
/// again and back, a file changed, one deleted and one created under a
/// moved directory, a directory moved into an opaque one, one removed
/// once emptied, and two exchanged.
fn move_directories(m: &Path) {
    let ok = |what: &str, r: std::io::Result<()>| r.unwrap_or_else(|e| panic!("{what}: {e}"));
    ok(
        "rename",
        fs::rename(m.join("usr/share"), m.join("usr/share2")),
    );
    ok(
        "move",
        fs::rename(m.join("usr/share2/doc"), m.join("opt/doc")),
    );
    ok("move", fs::rename(m.join("usr/lib"), m.join("lib2")));
    ok("move", fs::rename(m.join("lib2"), m.join("usr/lib3")));
    ok(
        "move back",
        fs::rename(m.join("usr/lib3"), m.join("usr/lib")),
    );
    ok("append", {
        fs::OpenOptions::new()
            .append(true)
            .open(m.join("usr/share2/man/man1/ls.1"))
            .and_then(|mut f| f.write_all(b" more"))
    });
    ok("unlink", fs::remove_file(m.join("opt/doc/a/copyright")));
    ok("create", fs::write(m.join("opt/doc/new"), "new"));
    ok(
        "rm -r",
        fs::remove_dir_all(m.join("usr/share2/empty-later")),
    );
    ok("rmdir", fs::remove_dir(m.join("srv")));
    ok("mkdir", fs::create_dir(m.join("srv")));
    ok(
        "move in",
        fs::rename(m.join("usr/share2/man"), m.join("srv/man")),
    );
    let exchange = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &m.join("usr/lib"),
        nix::fcntl::AT_FDCWD,
        &m.join("opt/doc"),
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    );
    ok("exchange", exchange.map_err(std::io::Error::from));
}

#[test]
fn a_renamed_lower_directory_shows_one_tree_on_strata_and_kernel_overlayfs() {
    common::require_fuse();
    let _one_at_a_time = one_at_a_time();
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir on ext4");
    let d = dir.path();
    let lower = d.join("lower");
    for p in [
        "usr/share/doc/a",
        "usr/share/doc/b",
        "usr/share/man/man1",
        "usr/share/empty-later/x",
        "usr/lib/sub",
        "opt",
        "srv",
    ] {
        fs::create_dir_all(lower.join(p)).expect("mkdir");
    }
    for (p, data) in [
        ("usr/share/doc/a/copyright", "c"),
        ("usr/share/doc/b/README", "r"),
        ("usr/share/man/man1/ls.1", "ls"),
        ("usr/share/empty-later/x/f", "f"),
        ("usr/lib/sub/lib.so", "so"),
        ("usr/lib/top", "t"),
    ] {
        fs::write(lower.join(p), data).expect("write");
    }
    copy_tree(&lower, &d.join("ovl-lower"));
    // Each mount on a mountpoint of its own, so none waits for the last
    // one's teardown.
    let mount_strata = |lower: &str, upper: &str, at: &str| {
        let m = d.join(at);
        fs::create_dir_all(&m).expect("mkdir");
        let opts = MountOptions::new(
            vec![Box::new(DirLower::new(d.join(lower)))],
            Some(d.join(upper)),
        );
        let h: MountHandle = fusefs::mount(opts, &m).expect("mount strata");
        wait_mounted(&m);
        (h, m)
    };

    // Kernel overlayfs does the moves, writing its redirects.
    let want = {
        let k = Overlay::mount(
            &d.join("ovl-lower"),
            &d.join("ovl-upper"),
            &d.join("ovl-work"),
            &d.join("ovl"),
        );
        move_directories(&k.0);
        snapshot(&k.0)
    };
    assert!(!want.contains_key("usr/share2/empty-later"));
    assert!(want.contains_key("srv/man/man1/ls.1") && want.contains_key("usr/lib/b/README"));
    let same = |got: &BTreeMap<String, String>, what: &str| {
        let diff = snapshot_differences(got, &want);
        assert!(
            diff == "trees equal",
            "{what} (\"overlayfs\" is what kernel overlayfs showed): {diff}"
        );
    };

    // strata does the same moves, without copying the content up.
    {
        let (h, m) = mount_strata("lower", "upper", "strata");
        move_directories(&m);
        same(&snapshot(&m), "strata");
        h.unmount().expect("unmount strata");
    }
    let upper = d.join("upper");
    assert!(!upper.join("usr/lib/b").exists(), "moved, not copied");
    assert!(!upper.join("opt/doc/sub").exists(), "moved, not copied");
    assert_eq!(
        xattr::get(upper.join("usr/share2"), "trusted.overlay.redirect").expect("getxattr"),
        Some(b"share".to_vec())
    );
    {
        let (h, m) = mount_strata("lower", "upper", "strata-again");
        same(&snapshot(&m), "strata after a remount");
        h.unmount().expect("unmount strata");
    }
    {
        let k = Overlay::mount(&lower, &upper, &d.join("k-work"), &d.join("k"));
        same(&snapshot(&k.0), "kernel overlayfs on strata's upper");
    }
    // strata serves the upper kernel overlayfs wrote.
    let (_h, m) = mount_strata("ovl-lower", "ovl-upper", "strata-on-kernel-upper");
    same(&snapshot(&m), "strata on kernel overlayfs's upper");
}
