//! Real mounts served by a separate process, for what an in-process mount
//! cannot show: the server killed with SIGKILL mid-write, and the server's
//! own memory while a large tree is walked.
//!
//! The server is this test binary run again: `serve_mount_for_parent_test`
//! serves a mount described by `STRATA_TEST_SERVE_*` variables until it is
//! killed or unmounted (and does nothing when they are unset, as in a plain
//! `cargo test` run). Needs root and /dev/fuse; fails, never skips,
//! without them.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENV_LOWER: &str = "STRATA_TEST_SERVE_LOWER";
const ENV_UPPER: &str = "STRATA_TEST_SERVE_UPPER";
const ENV_MNT: &str = "STRATA_TEST_SERVE_MNT";
const ENV_NO_PASSTHROUGH: &str = "STRATA_TEST_SERVE_NO_PASSTHROUGH";
const SERVER_TEST: &str = "serve_mount_for_parent_test";

/// The server side: only does something in a process started by
/// [`Server::start`].
#[test]
fn serve_mount_for_parent_test() {
    let (Some(lower), Some(upper), Some(mnt)) = (
        std::env::var_os(ENV_LOWER),
        std::env::var_os(ENV_UPPER),
        std::env::var_os(ENV_MNT),
    ) else {
        return;
    };
    let lowers: Vec<Box<dyn fusefs::Lower>> = vec![Box::new(fusefs::DirLower::new(lower))];
    let mut opts = fusefs::MountOptions::new(lowers, Some(PathBuf::from(upper)));
    opts.passthrough = std::env::var_os(ENV_NO_PASSTHROUGH).is_none();
    fusefs::serve(opts, Path::new(&mnt)).expect("serve");
}

fn is_mounted(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Polls until `cond` holds; panics with `what` after 20 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A mount server in a child process. Dropping it kills the server and
/// detaches the mount, so a failing test leaves no dead mount behind.
struct Server {
    child: Child,
    mnt: PathBuf,
}

impl Server {
    /// Starts a server for `lower` + `upper` on `mnt` and waits until the
    /// mount is up.
    fn start(lower: &Path, upper: &Path, mnt: &Path) -> Server {
        Server::start_with(lower, upper, mnt, true)
    }

    /// Like [`Server::start`], choosing whether to ask for passthrough.
    fn start_with(lower: &Path, upper: &Path, mnt: &Path, passthrough: bool) -> Server {
        Server::start_limited(lower, upper, mnt, passthrough, None)
    }

    /// Like [`Server::start_with`], with the server's open-file limit (soft
    /// and hard) set to `nofile` when given.
    fn start_limited(
        lower: &Path,
        upper: &Path,
        mnt: &Path,
        passthrough: bool,
        nofile: Option<u32>,
    ) -> Server {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = match nofile {
            None => Command::new(exe),
            Some(n) => {
                // The shell sets the limit and becomes the server (exec):
                // the child's pid is the server's.
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(exe);
                c
            }
        };
        cmd.args([SERVER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV_LOWER, lower)
            .env(ENV_UPPER, upper)
            .env(ENV_MNT, mnt)
            // One malloc arena, as strata's serving processes have it
            // (`runner::sys::one_malloc_arena`), from the process's first
            // allocation: the memory test measures what a walk keeps, not
            // how glibc spread it over the threads' arenas (87 or 103 MB).
            .env("MALLOC_ARENA_MAX", "1")
            .stdout(Stdio::null());
        if !passthrough {
            cmd.env(ENV_NO_PASSTHROUGH, "1");
        }
        let mut child = cmd.spawn().expect("start the server process");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(mnt) {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("the server process exited before mounting: {status}");
            }
            assert!(Instant::now() < deadline, "{} never mounted", mnt.display());
            std::thread::sleep(Duration::from_millis(5));
        }
        Server {
            child,
            mnt: mnt.to_path_buf(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The server's open descriptors, and how many of them name a
    /// deleted file.
    fn open_fds(&self) -> (usize, usize) {
        let mut n = 0;
        let mut deleted = 0;
        for fd in fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("/proc/PID/fd") {
            let target = fs::read_link(fd.expect("fd").path()).unwrap_or_default();
            n += 1;
            if target.to_string_lossy().ends_with(" (deleted)") {
                deleted += 1;
            }
        }
        (n, deleted)
    }

    fn kill9(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9 the server");
        self.child.wait().expect("reap the server");
    }

    /// Bytes the server moved through read(2)-like and write(2)-like calls
    /// (`rchar` + `wchar`), FUSE requests and replies included.
    fn io_bytes(&self) -> u64 {
        let io = fs::read_to_string(format!("/proc/{}/io", self.pid())).expect("server io");
        io.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                matches!(k, "rchar" | "wchar").then(|| v.trim().parse::<u64>().ok())?
            })
            .sum()
    }

    /// A number field of the server's `/proc/PID/status` (`name` with its
    /// colon), without its unit.
    fn status_field(&self, name: &str) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("server status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/<server>/status"))
    }

    /// `VmHWM` and `VmRSS` of the server, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        (self.status_field("VmHWM:"), self.status_field("VmRSS:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = fusefs::unmount(&self.mnt);
        }
    }
}

/// What the container sees at each path: type, mode, owner, size, content.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).expect("readdir") {
            let p = e.expect("entry").path();
            let md = fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let what = if md.is_dir() {
                dirs.push(p);
                String::from("dir")
            } else if md.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).expect("readlink").display())
            } else {
                format!("{:?}", fs::read(&p).expect("read"))
            };
            let line = format!(
                "{:o} {}:{} {} {what}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size()
            );
            out.insert(rel, line);
        }
    }
    out
}

/// Byte `i` of the interrupted file: not periodic in small powers of two,
/// so a misplaced block shows.
fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

#[test]
fn kill_9_of_the_server_mid_write_loses_nothing_written_before() {
    kill_9_mid_write(true);
}

#[test]
fn kill_9_of_the_server_mid_write_without_passthrough_loses_nothing_written_before() {
    kill_9_mid_write(false);
}

fn kill_9_mid_write(passthrough: bool) {
    common::require_fuse();
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = (
        dir.path().join("lower"),
        dir.path().join("upper"),
        dir.path().join("mnt"),
    );
    for d in [&lower, &upper, &mnt] {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::create_dir_all(lower.join("etc/conf.d")).expect("mkdir");
    fs::write(lower.join("etc/passwd"), "root:x:0:0\n").expect("write");
    fs::write(lower.join("etc/conf.d/a"), "a").expect("write");
    fs::write(lower.join("etc/gone"), "gone").expect("write");

    let mut server = Server::start_with(&lower, &upper, &mnt, passthrough);
    // Changes made and closed before the crash: a copy-up, a new file, a
    // whiteout, a renamed lower directory, a symlink, an owner change.
    fs::write(mnt.join("etc/passwd"), "root:x:0:0\nuser:x:1000:1000\n").expect("write");
    fs::create_dir(mnt.join("home")).expect("mkdir");
    fs::write(mnt.join("home/notes"), vec![7u8; 300_000]).expect("write");
    fs::remove_file(mnt.join("etc/gone")).expect("unlink");
    fs::rename(mnt.join("etc/conf.d"), mnt.join("etc/conf")).expect("rename");
    std::os::unix::fs::symlink("../etc/passwd", mnt.join("home/link")).expect("symlink");
    std::os::unix::fs::chown(mnt.join("home/notes"), Some(1000), Some(1000)).expect("chown");
    let before = snapshot(&mnt);

    // The writer appends 64 KiB blocks until the mount dies or it is told
    // to stop (with passthrough, writes to an open file may outlive the
    // server); `acked` counts bytes whose write(2) returned.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let path = mnt.join("home/big");
        std::thread::spawn(move || -> Option<std::io::Error> {
            let mut f = match fs::File::create(&path) {
                Ok(f) => f,
                Err(e) => return Some(e),
            };
            let mut off = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let block: Vec<u8> = (off..off + 65536).map(pattern_byte).collect();
                if let Err(e) = f.write_all(&block) {
                    return Some(e);
                }
                off += block.len() as u64;
                acked.store(off, Ordering::SeqCst);
            }
            None
        })
    };
    wait_for("the writer to write 8 MiB", || {
        acked.load(Ordering::SeqCst) >= 8 << 20 || writer.is_finished()
    });
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    let err = writer.join().expect("writer thread");
    let acked = acked.load(Ordering::SeqCst);
    assert!(
        acked >= 8 << 20,
        "the writer failed before the kill: {err:?}"
    );
    println!("writer stopped after {acked} bytes: {err:?}");

    // The dead mount answers ENOTCONN until it is detached; a request the
    // kernel queued for the server's io_uring queues while it tore them
    // down is answered ECONNABORTED instead, or ECANCELED when the ring's
    // command was cancelled with it (seen once in 40-odd CI runs).
    let err = fs::metadata(&mnt).map_err(|e| e.raw_os_error()).err();
    assert!(
        matches!(
            err,
            Some(Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED))
        ),
        "a mount whose server died is not connected: {err:?}"
    );
    fusefs::unmount(&mnt).expect("detach the dead mount");
    wait_for("the dead mount to go", || !is_mounted(&mnt));

    // Whatever reached the upper of the interrupted file is a prefix of
    // what was written, and holds at least every acknowledged byte.
    let big = fs::read(upper.join("home/big")).expect("the interrupted file is in the upper");
    assert!(
        big.len() as u64 >= acked,
        "{} bytes in the upper, {acked} acknowledged",
        big.len()
    );
    if let Some(i) = (0..big.len()).find(|&i| big[i] != pattern_byte(i as u64)) {
        panic!("the interrupted file differs from what was written at byte {i}");
    }

    let _server = Server::start(&lower, &upper, &mnt);
    let mut after = snapshot(&mnt);
    let big_line = after
        .remove("home/big")
        .expect("the interrupted file shows after remount");
    assert!(
        big_line.contains(&format!(" {} ", big.len())),
        "remount shows the interrupted file with its upper size ({}): {}",
        big.len(),
        &big_line[..big_line.len().min(80)]
    );
    assert_eq!(
        after, before,
        "the remounted tree is the tree before the crash"
    );
}

/// Builds `dirs` x 10 x `files` empty files under `root`: d000/e0/f000...
fn build_wide_tree(root: &Path, dirs: usize, files: usize) -> usize {
    let mut n = 0;
    for d in 0..dirs {
        for e in 0..10 {
            let sub = root.join(format!("d{d:03}/e{e}"));
            fs::create_dir_all(&sub).expect("mkdir");
            for f in 0..files {
                fs::File::create(sub.join(format!("f{f:03}"))).expect("create");
                n += 1;
            }
        }
    }
    n
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A READ of a MiB (the kernel's read-ahead of a big file, as root) is
/// served by a worker thread off the queue's CPU (`big_reads`), its reply
/// committed when it comes while the queue goes on: two big files read at
/// once from two threads, beside small files read and created, come back
/// whole, and the server did start the workers.
#[test]
fn big_reads_served_by_workers_come_back_whole() {
    common::require_fuse();
    const SIZE: u64 = 48 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    for (name, seed) in [("a", 1u64), ("b", 2)] {
        let data: Vec<u8> = (0..SIZE).map(|i| pattern_byte(i * seed + seed)).collect();
        fs::write(lower.join(name), data).expect("write");
    }
    for i in 0..200 {
        fs::write(lower.join(format!("small{i}")), format!("small {i}")).expect("write");
    }
    let server = Server::start_with(&lower, &upper, &mnt, false);
    std::thread::scope(|s| {
        for (name, seed) in [("a", 1u64), ("b", 2)] {
            let path = mnt.join(name);
            s.spawn(move || {
                let got = fs::read(&path).expect("read a big file");
                assert_eq!(got.len() as u64, SIZE, "{name}: short read");
                let bad = (0..SIZE).find(|&i| got[i as usize] != pattern_byte(i * seed + seed));
                assert!(bad.is_none(), "{name}: wrong byte at {bad:?}");
            });
        }
        for i in 0..200 {
            let got = fs::read_to_string(mnt.join(format!("small{i}"))).expect("read a small file");
            assert_eq!(got, format!("small {i}"));
            fs::write(mnt.join(format!("new{i}")), "new").expect("create beside the reads");
        }
    });
    let workers = fs::read_dir(format!("/proc/{}/task", server.pid()))
        .expect("tasks")
        .filter(|t| {
            let comm = t.as_ref().map(|t| t.path().join("comm")).expect("task");
            fs::read_to_string(comm).is_ok_and(|c| c.starts_with("big-read-"))
        })
        .count();
    assert!(
        workers > 0,
        "no big-read worker in the server: its reads never left the queues"
    );
}

/// The connection aborted (`/sys/fs/fuse/connections/N/abort`, what a
/// forced unmount of a hung mount comes to) while big READs are out with
/// the workers: the reader gets ENOTCONN and the server ends, its queue
/// threads having taken the workers' late replies before they free the
/// entries those replies are written into.
#[test]
fn a_connection_aborted_mid_big_read_ends_the_server() {
    common::require_fuse();
    const SIZE: u64 = 256 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    let data: Vec<u8> = (0..SIZE).map(pattern_byte).collect();
    fs::write(lower.join("big"), data).expect("write");
    let mut server = Server::start_with(&lower, &upper, &mnt, false);
    let _fusectl = Fusectl::mounted();
    let dev = fs::metadata(&mnt).expect("stat the mount").dev();
    assert_eq!(
        nix::sys::stat::major(dev),
        0,
        "a FUSE mount has an anonymous device"
    );
    let abort = format!(
        "/sys/fs/fuse/connections/{}/abort",
        nix::sys::stat::minor(dev)
    );
    let read = AtomicU64::new(0);
    let outcome = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            use std::os::unix::fs::FileExt;
            let f = fs::File::open(mnt.join("big")).expect("open");
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match f.read_at(&mut buf, read.load(Ordering::Relaxed)) {
                    Ok(0) => return Ok(()),
                    Ok(n) => read.fetch_add(n as u64, Ordering::Relaxed),
                    Err(e) => return Err(e),
                };
            }
        });
        wait_for("the first 8 MiB", || {
            read.load(Ordering::Relaxed) >= 8 << 20
        });
        fs::write(&abort, "1").expect("abort the connection");
        reader.join().expect("the reader")
    });
    let err = outcome.expect_err("the read outlived its connection");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    assert!(
        read.load(Ordering::Relaxed) < SIZE,
        "the file was read whole before the abort"
    );
    wait_for("the server to end", || {
        server.child.try_wait().expect("try_wait").is_some()
    });
}

/// The fusectl filesystem at `/sys/fs/fuse/connections`, mounted for a
/// test where it was not, and unmounted again when the test ends.
struct Fusectl(bool);

impl Fusectl {
    fn mounted() -> Fusectl {
        let dir = Path::new("/sys/fs/fuse/connections");
        if fs::read_dir(dir)
            .expect("fusectl's directory")
            .next()
            .is_some()
        {
            return Fusectl(false);
        }
        nix::mount::mount(
            Some("fusectl"),
            dir,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount fusectl");
        Fusectl(true)
    }
}

impl Drop for Fusectl {
    fn drop(&mut self) {
        if self.0 {
            let _ = nix::mount::umount("/sys/fs/fuse/connections");
        }
    }
}

/// The server's descriptor table is sized before its threads exist: in a
/// process with threads every growth of the table waits for an RCU grace
/// period (6-30 ms on the test VM), with the request that took the
/// descriptor, and its caller, waiting behind it. Reading 1,000 files
/// through the mount (a node file each, `node_files::CAPACITY` at most)
/// must not grow it.
#[test]
fn the_descriptor_table_does_not_grow_while_node_files_open() {
    common::require_fuse();
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    for i in 0..1000 {
        fs::write(lower.join(format!("f{i}")), format!("file {i}")).expect("write");
    }
    let server = Server::start_with(&lower, &upper, &mnt, false);
    let limits = fs::read_to_string(format!("/proc/{}/limits", server.pid())).expect("limits");
    let soft: u64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("the server's open-file limit");
    let table = server.status_field("FDSize:");
    assert!(
        table >= soft.min(4096),
        "a fresh server's descriptor table has {table} entries (open-file limit {soft})"
    );
    for i in 0..1000 {
        fs::read(mnt.join(format!("f{i}"))).expect("read through the mount");
    }
    let (open, _) = server.open_fds();
    assert!(
        open > 512,
        "the reads left {open} descriptors: too few node files to count"
    );
    assert_eq!(
        server.status_field("FDSize:"),
        table,
        "the descriptor table grew while {open} descriptors were open"
    );
}

/// A file unlinked while open keeps one of the server's descriptors (its
/// orphan); processes that kept more than the server's open-file limit
/// made every create and every lower read in the mount fail with EMFILE.
/// Orphans now hold half the limit at most: with 300 files kept unlinked
/// against a limit of 256, the mount still creates, writes and reads, and
/// the first orphans still work through their holder's descriptors.
#[test]
fn files_kept_open_after_unlink_leave_the_server_descriptors_for_others() {
    use std::io::{Read, Seek, Write};
    common::require_fuse();
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    fs::write(lower.join("lower"), "from the lower").expect("write");
    let _server = Server::start_limited(&lower, &upper, &mnt, false, Some(256));
    let mut kept = Vec::new();
    for i in 0..300 {
        let path = mnt.join(format!("t{i}"));
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create through the mount");
        f.write_all(b"kept").expect("write");
        fs::remove_file(&path).expect("unlink");
        kept.push(f);
    }
    fs::write(mnt.join("after"), "made after").expect("a create after the orphans");
    assert_eq!(fs::read_to_string(mnt.join("after")).unwrap(), "made after");
    assert_eq!(
        fs::read_to_string(mnt.join("lower")).unwrap(),
        "from the lower"
    );
    let first = &mut kept[0];
    first
        .write_all(b" still")
        .expect("the first orphan takes writes");
    first.rewind().unwrap();
    let mut back = String::new();
    first.read_to_string(&mut back).expect("and reads");
    assert_eq!(back, "kept still");
}

#[test]
fn server_memory_stays_under_100_mb_while_walking_100k_files() {
    common::require_fuse();
    const LIMIT_KIB: u64 = 100 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = (
        dir.path().join("lower"),
        dir.path().join("upper"),
        dir.path().join("mnt"),
    );
    for d in [&upper, &mnt] {
        fs::create_dir_all(d).expect("mkdir");
    }
    let files = build_wide_tree(&lower, 100, 100);
    assert_eq!(files, 100_000);

    let server = Server::start(&lower, &upper, &mnt);
    let (hwm_start, _) = server.memory_kib();
    let found = run(Command::new("find").arg(&mnt)).lines().count();
    assert_eq!(found, 1 + 100 + 100 * 10 + files, "find sees every entry");
    let (hwm_find, rss_find) = server.memory_kib();
    let listing = run(Command::new("ls").arg("-lR").arg(&mnt));
    assert!(listing.lines().filter(|l| l.starts_with("-rw")).count() == files);
    let stat_all = run(Command::new("find")
        .arg(&mnt)
        .args(["-type", "f", "-printf", "%i %s\n"]));
    assert_eq!(stat_all.lines().count(), files);
    let (hwm, rss) = server.memory_kib();
    println!(
        "server memory walking {files} files: VmHWM {} KiB at start, {hwm_find} KiB after find \
         (VmRSS {rss_find} KiB), {hwm} KiB after ls -lR and a stat walk (VmRSS {rss} KiB)",
        hwm_start
    );
    assert!(
        hwm < LIMIT_KIB,
        "the server peaked at {hwm} KiB walking {files} files (limit {LIMIT_KIB} KiB)"
    );
}

/// A tree deeper than PATH_MAX, in a layer: a container makes one by
/// moving a tree under a deep one while the kernel has forgotten its
/// nodes. No LOOKUP reaches past PATH_MAX, and no listing may either: a
/// `find` made a node of every level, each holding its whole path (10 GB
/// of server at 2,880 levels, found by a review as an attacker). Now the
/// walk stops where the paths would pass it.
#[test]
fn a_tree_deeper_than_path_max_gives_no_node_past_it() {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    common::require_fuse();
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    // 1,000 levels of 250-byte names (a 251 KB path), one relative step
    // at a time: no system call takes the whole path.
    let name = "d".repeat(250);
    let mut at = fs::File::open(&lower).expect("open the lower").into();
    for _ in 0..1000 {
        mkdirat(&at, name.as_str(), Mode::from_bits_truncate(0o755)).expect("mkdirat");
        at = openat(&at, name.as_str(), OFlag::O_DIRECTORY, Mode::empty()).expect("openat");
    }
    drop(at);
    let server = Server::start(&lower, &upper, &mnt);
    let (hwm_start, _) = server.memory_kib();
    let out = Command::new("find").arg(&mnt).output().expect("find");
    let found = String::from_utf8_lossy(&out.stdout);
    let longest = found.lines().map(str::len).max().unwrap_or(0);
    let (hwm, _) = server.memory_kib();
    assert!(
        longest < mnt.as_os_str().len() + 1 + fusefs_path_max(),
        "find reached a path of {longest} bytes through the mount"
    );
    assert!(
        found.lines().count() <= 17,
        "{} levels",
        found.lines().count()
    );
    assert!(
        hwm < hwm_start + 20 * 1024,
        "the server grew from {hwm_start} to {hwm} KiB"
    );
}

/// PATH_MAX, the longest path a layer holds (with its NUL).
fn fusefs_path_max() -> usize {
    layerdb::PATH_MAX
}

/// A listing keeps what READDIRPLUS answers, not each entry's link
/// target or xattrs: 150,000 symlinks of 4,000-byte targets a container
/// made held 768 MB of server after one `ls -f` (a review as an
/// attacker). The links are in the upper, as a container makes them (a
/// lower's listings are kept whole, see `cached_lower`).
#[test]
fn a_listing_holds_no_link_targets() {
    common::require_fuse();
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    let target = "t".repeat(4000);
    for d in ["links", "more"] {
        let links = upper.join(d);
        fs::create_dir(&links).expect("mkdir");
        for i in 0..16_384 {
            std::os::unix::fs::symlink(&target, links.join(format!("l{i:05}"))).expect("symlink");
        }
    }
    let server = Server::start(&lower, &upper, &mnt);
    let (start, _) = server.memory_kib();
    for d in ["links", "more"] {
        let listed = run(Command::new("ls").arg("-f").arg(mnt.join(d)));
        assert_eq!(listed.lines().count(), 16_384 + 2);
    }
    let (hwm, _) = server.memory_kib();
    // 128 MB of targets; the listings and nodes themselves are about 30
    // MB (the code before: 165 MB, 85 of them the first listing's reads).
    assert!(
        hwm < start + 48 * 1024,
        "the server grew from {start} to {hwm} KiB listing 32,768 links"
    );
    // The links still read whole.
    let read = fs::read_link(mnt.join("more/l00007")).expect("readlink");
    assert_eq!(read.as_os_str().len(), 4000);
}

/// Three directories for a server: (lower, upper, mnt), created.
fn server_dirs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ds = ["lower", "upper", "mnt"].map(|d| dir.join(d));
    for d in &ds {
        fs::create_dir_all(d).expect("mkdir");
    }
    let [lower, upper, mnt] = ds;
    (lower, upper, mnt)
}

/// FUSE passthrough is in the kernel this suite runs on (Linux >= 6.9) and
/// the tests run as root, so it must be in use here.
#[test]
fn upper_files_are_read_and_written_by_the_kernel_not_the_server() {
    common::require_fuse();
    const SIZE: usize = 32 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    let data: Vec<u8> = (0..SIZE as u64).map(pattern_byte).collect();
    fs::write(lower.join("lower-file"), &data).expect("write");
    let server = Server::start(&lower, &upper, &mnt);
    let mut copied = fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("lower-file"))
        .expect("open a lower file for writing: copy-up");

    let before = server.io_bytes();
    fs::write(mnt.join("new-file"), &data).expect("write a new upper file");
    assert!(fs::read(mnt.join("new-file")).expect("read") == data);
    copied
        .write_all(&data)
        .expect("append to the copied-up file");
    drop(copied);
    let both = fs::read(mnt.join("lower-file")).expect("read");
    assert!(both.len() == 2 * SIZE && both[..SIZE] == data[..] && both[SIZE..] == data[..]);
    let moved = server.io_bytes() - before;
    println!("the server moved {moved} bytes for 160 MiB of upper file I/O");
    assert!(
        moved < SIZE as u64 / 2,
        "the server moved {moved} bytes: upper file I/O went through it, not passthrough"
    );
    assert_eq!(
        fs::metadata(upper.join("lower-file"))
            .expect("copied up")
            .len(),
        2 * SIZE as u64
    );
}

/// Opens keep working when a file open from a host lower is copied up and
/// opened again (the kernel allows one backing file per inode, and a mix of
/// passthrough and cached opens of one inode fails with EIO).
#[test]
fn a_lower_file_held_open_while_copied_up_stays_readable_and_writable() {
    common::require_fuse();
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, upper, mnt) = server_dirs(dir.path());
    fs::write(lower.join("f"), "lower data").expect("write");
    let _server = Server::start(&lower, &upper, &mnt);
    let reader = fs::File::open(mnt.join("f")).expect("open read-only");
    fs::write(mnt.join("f"), "upper data!").expect("copy up and rewrite");
    assert_eq!(
        fs::read_to_string(mnt.join("f")).expect("read"),
        "upper data!"
    );
    // Which data the old handle shows is up to the kernel's page cache
    // (shared by the inode); it must read without error.
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &reader, &mut old).expect("read the old handle");
    drop(reader);
    fs::write(mnt.join("f"), "again").expect("rewrite once the lower handle closed");
    assert_eq!(fs::read_to_string(mnt.join("f")).expect("read"), "again");
    assert_eq!(fs::read_to_string(upper.join("f")).expect("read"), "again");
}

fn dd(args: &[String]) -> f64 {
    let start = Instant::now();
    let out = Command::new("dd")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .expect("run dd");
    assert!(out.status.success(), "dd {args:?}: {out:?}");
    start.elapsed().as_secs_f64()
}

/// Sequential 1 GiB write and read of an upper file, with and without
/// passthrough: `cargo test -p fusefs --test server_process -- --ignored
/// --nocapture bench`. Drops the page cache (machine-wide) before reads.
#[test]
#[ignore = "a benchmark: writes 1 GiB twice and drops the page cache"]
fn bench_sequential_1_gib_upper_file_with_and_without_passthrough() {
    common::require_fuse();
    for passthrough in [false, true] {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        let (lower, upper, mnt) = server_dirs(dir.path());
        let server = Server::start_with(&lower, &upper, &mnt, passthrough);
        let file = mnt.join("big").display().to_string();
        let write = dd(&[
            "if=/dev/zero".into(),
            format!("of={file}"),
            "bs=1M".into(),
            "count=1024".into(),
            "conv=fsync".into(),
        ]);
        fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches");
        let read = dd(&[format!("if={file}"), "of=/dev/null".into(), "bs=1M".into()]);
        let hot = dd(&[format!("if={file}"), "of=/dev/null".into(), "bs=1M".into()]);
        println!(
            "passthrough {passthrough}: write {:.0} MiB/s, cold read {:.0} MiB/s, hot read {:.0} MiB/s \
             (server moved {} MiB)",
            1024.0 / write,
            1024.0 / read,
            1024.0 / hot,
            server.io_bytes() >> 20
        );
        drop(server);
    }
}

/// Mounts a tmpfs of `size` on `dir` for a test; detached on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .expect("mount a tmpfs");
        Tmpfs(dir.to_path_buf())
    }

    /// Bytes in use.
    fn used(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.0).expect("statvfs");
        (s.blocks() - s.blocks_free()) * s.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `: > w; echo x >> w; rm w` over and over (a log rotated and removed),
/// 100,000 times, keeps no descriptor of a removed file: the server stays
/// within a low open-file limit, its descriptors stay few all along, and
/// a removed file's space comes back at once. It runs beside this file's
/// other servers on purpose: over io_uring, with their load on the two
/// CPUs, the thread reading FORGETs fell hundreds of files behind the
/// client and this test ran out of descriptors in about half the runs,
/// until the queue threads read them too (`vendor/fuser/src/ring.rs`,
/// `Drain`).
#[test]
fn rewritten_and_removed_files_leave_no_descriptor_and_give_their_space_back() {
    common::require_fuse();
    const CYCLES: usize = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (lower, _, mnt) = server_dirs(dir.path());
    let upper_fs = Tmpfs::mount(&dir.path().join("upper-fs"), "400m");
    let upper = upper_fs.0.join("upper");
    let server = Server::start_limited(&lower, &upper, &mnt, false, Some(256));
    let w = mnt.join("w");
    let mut most = 0;
    for i in 0..CYCLES {
        if i % 5000 == 0 {
            most = most.max(server.open_fds().0);
        }
        fs::File::create(&w).unwrap_or_else(|e| panic!("cycle {i}: create: {e}"));
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&w)
            .unwrap_or_else(|e| panic!("cycle {i}: open for append: {e}"));
        f.write_all(b"x\n").expect("append");
        drop(f);
        fs::remove_file(&w).unwrap_or_else(|e| panic!("cycle {i}: unlink: {e}"));
    }
    // The kernel sends RELEASE and FORGET after close(2) and unlink(2)
    // return, without waiting for the server: on a busy machine the last
    // cycles' may still be queued. Counted once they are served (a few
    // seconds at most; a descriptor kept for good stays counted).
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (open, deleted) = loop {
        let (open, deleted) = server.open_fds();
        if (deleted <= 2 && open < 64) || std::time::Instant::now() > settled {
            break (open, deleted);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    println!(
        "after {CYCLES} cycles the server holds {open} descriptors, {deleted} of deleted files"
    );
    assert!(
        deleted <= 2,
        "{deleted} descriptors of deleted files stay open"
    );
    assert!(open < 64, "the server holds {open} descriptors");
    assert!(
        most < 64,
        "the server held {most} descriptors at one point of the run"
    );

    let base = upper_fs.used();
    let chunk = vec![7u8; 1 << 20];
    for round in 0..3 {
        fs::File::create(&w).expect("truncate");
        let mut f = fs::OpenOptions::new().append(true).open(&w).expect("open");
        for _ in 0..100 {
            f.write_all(&chunk).expect("write 100 MiB");
        }
        drop(f);
        fs::remove_file(&w).expect("unlink");
        // The kernel tells the server it dropped the node (FORGET) right
        // after the unlink, not within it: poll.
        wait_for(&format!("round {round}: the deleted file's space"), || {
            upper_fs.used() < base + (8 << 20)
        });
    }
}
