//! FUSE passthrough chosen per open by size (`crate::passthrough`): opens
//! of one file from two processes see each other's writes whichever route
//! the kernel took, including a file that grows past the threshold while
//! open, a cached open after passthrough writes, and a lower file that
//! passthrough readers hold while a writer would copy it up. Real mounts:
//! root and Linux >= 6.9 (FUSE_PASSTHROUGH), else they fail with the reason.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use fusefs::{DirLower, MountHandle, MountOptions};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Files of at least this many bytes are passed through in these tests.
const THRESHOLD: u64 = 64 << 10;
const SMALL: u64 = 4 << 10;
const BIG: u64 = 256 << 10;

const PEER_TEST: &str = "peer_for_parent_test";
const ENV_PEER: &str = "STRATA_TEST_PEER";
/// Starts each of the peer's answers.
const ANSWER: &str = "peer answers: ";

/// The other process: opens one file and reads and writes it as told on
/// stdin, one command a line, answering each on stdout. Only does something
/// in a process started by [`Peer::start`].
#[test]
fn peer_for_parent_test() {
    if std::env::var_os(ENV_PEER).is_none() {
        return;
    }
    let mut file: Option<fs::File> = None;
    // Not io::stdout(): the test harness holds back what goes through it.
    let mut out = fs::OpenOptions::new()
        .write(true)
        .open("/dev/stdout")
        .expect("open stdout");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read a command");
        let w: Vec<&str> = line.split(' ').collect();
        let answer = match w.as_slice() {
            ["open", path, mode] => {
                match fs::OpenOptions::new()
                    .read(true)
                    .write(*mode == "rw")
                    .open(path)
                {
                    Ok(f) => {
                        file = Some(f);
                        "ok".to_string()
                    }
                    Err(e) => format!("err {}", e.raw_os_error().unwrap_or(0)),
                }
            }
            ["w", off, byte, len] => {
                let data = vec![byte.parse::<u8>().unwrap(); len.parse().unwrap()];
                match file
                    .as_ref()
                    .unwrap()
                    .write_all_at(&data, off.parse().unwrap())
                {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("err {}", e.raw_os_error().unwrap_or(0)),
                }
            }
            ["r", off] => {
                let mut b = [0u8];
                match file.as_ref().unwrap().read_at(&mut b, off.parse().unwrap()) {
                    Ok(1) => b[0].to_string(),
                    Ok(_) => "eof".to_string(),
                    Err(e) => format!("err {}", e.raw_os_error().unwrap_or(0)),
                }
            }
            ["close"] => {
                file = None;
                "ok".to_string()
            }
            _ => format!("unknown command {line:?}"),
        };
        writeln!(out, "{ANSWER}{answer}").unwrap();
        out.flush().unwrap();
    }
}

/// A second process holding files of the mount open (see
/// [`peer_for_parent_test`]). Dropping it kills it.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start() -> Peer {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .args([PEER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV_PEER, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the peer process");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns the peer's answer.
    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").expect("send to the peer");
        self.stdin.flush().expect("flush");
        // The test harness prints its own words around the test's output,
        // on the same lines.
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read the peer");
            assert!(n > 0, "the peer exited while asked {cmd:?}");
            if let Some((_, answer)) = line.trim_end().split_once(ANSWER) {
                return answer.to_string();
            }
        }
    }

    fn open(&mut self, path: &Path, rw: bool) -> String {
        let mode = if rw { "rw" } else { "ro" };
        self.ask(&format!("open {} {mode}", path.display()))
    }

    fn write(&mut self, off: u64, byte: u8, len: u64) {
        assert_eq!(
            self.ask(&format!("w {off} {byte} {len}")),
            "ok",
            "peer write"
        );
    }

    fn read(&mut self, off: u64) -> String {
        self.ask(&format!("r {off}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A writable mount of one host lower with passthrough from [`THRESHOLD`]
/// bytes; the files given are put in the lower or the upper first.
struct Mount {
    dir: tempfile::TempDir,
    handle: Option<MountHandle>,
}

impl Mount {
    fn new(lower_files: &[(&str, u64)], upper_files: &[(&str, u64)]) -> Mount {
        common::require_fuse();
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        for d in ["lower", "upper", "mnt"] {
            fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        for (layer, files) in [("lower", lower_files), ("upper", upper_files)] {
            for (name, size) in files {
                fs::write(
                    dir.path().join(layer).join(name),
                    vec![b'.'; *size as usize],
                )
                .expect("write a layer file");
            }
        }
        let mut o = MountOptions::new(
            vec![Box::new(DirLower::new(dir.path().join("lower")))],
            Some(dir.path().join("upper")),
        );
        o.passthrough = true;
        o.passthrough_min_size = THRESHOLD;
        let mnt = dir.path().join("mnt");
        let handle = fusefs::mount(o, &mnt).expect("mount");
        wait_mounted(&mnt);
        Mount {
            dir,
            handle: Some(handle),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("mnt").join(name)
    }

    fn host(&self, layer: &str, name: &str) -> PathBuf {
        self.dir.path().join(layer).join(name)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            // A mount left behind outlives the test as a dead one
            // ("transport endpoint is not connected"): if the unmount
            // fails (a file still open on it), it is detached instead.
            if let Err(e) = h.unmount() {
                eprintln!("unmount failed ({e}): detaching the mount");
                let _ = fusefs::unmount(&self.dir.path().join("mnt"));
            }
        }
    }
}

/// Polls /proc/self/mountinfo until the mountpoint shows up.
fn wait_mounted(mnt: &Path) {
    let want = mnt.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
    {
        assert!(Instant::now() < deadline, "{want} never mounted");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Io {
    Passthrough,
    Cached,
}

/// How the kernel does the I/O of `file` (in the mount) now, by a change
/// made behind its back to the host file `host`: a passthrough open reads
/// the host file, a cached one its page cache, which still holds the
/// byte read just before. The byte is put back after.
fn io_of(file: &Path, host: &Path) -> Io {
    let f = fs::File::open(file).expect("open to probe");
    let h = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(host)
        .expect("open the host file");
    let mut before = [0u8];
    f.read_exact_at(&mut before, 0)
        .expect("read through the mount");
    h.write_all_at(&[before[0] ^ 0xff], 0)
        .expect("write the host file");
    let mut seen = [0u8];
    f.read_exact_at(&mut seen, 0)
        .expect("read through the mount again");
    h.write_all_at(&before, 0).expect("put the byte back");
    if seen[0] == before[0] {
        // Nothing of the page cache may stay stale for the test that goes on.
        drop(f);
        Io::Cached
    } else {
        Io::Passthrough
    }
}

/// [`io_of`] once the kernel has told the server of earlier closes: it
/// sends RELEASE after close(2) has returned, and an open that comes
/// before it still finds the file open, in the mode it had. Probes until
/// the route is `want` (a few seconds at most) and gives the last seen.
fn io_once_released(file: &Path, host: &Path, want: Io) -> Io {
    let mut seen = io_of(file, host);
    for _ in 0..250 {
        if seen == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = io_of(file, host);
    }
    seen
}

fn open_rw(p: &Path) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .expect("open read-write")
}

fn byte_at(f: &fs::File, off: u64) -> String {
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).expect("read");
    b[0].to_string()
}

/// Each process writes where the other then reads, both holding the file
/// open at once.
fn assert_writes_cross(f: &fs::File, peer: &mut Peer, size: u64, what: &str) {
    peer.write(100, b'P', 10);
    assert_eq!(byte_at(f, 105), "80", "{what}: the peer's write, read here");
    f.write_all_at(b"QQ", size - 2).expect("write");
    assert_eq!(
        peer.read(size - 1),
        "81",
        "{what}: this write, read by the peer"
    );
    // Past the end: the size each process sees grows too.
    f.write_all_at(b"R", size + 10).expect("append");
    assert_eq!(
        peer.read(size + 10),
        "82",
        "{what}: an append, read by the peer"
    );
    peer.write(size + 20, b'S', 1);
    assert_eq!(
        byte_at(f, size + 20),
        "83",
        "{what}: the peer's append, read here"
    );
}

#[test]
fn opens_of_one_file_from_two_processes_see_each_others_writes() {
    let m = Mount::new(&[], &[("small", SMALL), ("big", BIG)]);
    for (name, size, io) in [("small", SMALL, Io::Cached), ("big", BIG, Io::Passthrough)] {
        for peer_first in [false, true] {
            let what = format!(
                "{name}, peer opened {}",
                if peer_first { "first" } else { "second" }
            );
            let path = m.path(name);
            let mut peer = Peer::start();
            let f = if peer_first {
                assert_eq!(peer.open(&path, true), "ok", "{what}: peer open");
                open_rw(&path)
            } else {
                let f = open_rw(&path);
                assert_eq!(peer.open(&path, true), "ok", "{what}: peer open");
                f
            };
            assert_eq!(
                io_of(&path, &m.host("upper", name)),
                io,
                "{what}: the route"
            );
            assert_writes_cross(&f, &mut peer, size, &what);
            drop(peer);
            drop(f);
            // Back to the size it started at, for the other order, which
            // starts once every open here is released.
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(size))
                .expect("truncate");
            io_once_released(&path, &m.host("upper", name), io);
        }
    }
}

#[test]
fn a_file_growing_past_the_threshold_while_open_stays_coherent() {
    let m = Mount::new(&[], &[("grow", SMALL)]);
    let path = m.path("grow");
    let f = open_rw(&path);
    let mut peer = Peer::start();
    assert_eq!(peer.open(&path, true), "ok");
    f.write_all_at(&vec![b'G'; BIG as usize], SMALL)
        .expect("grow past the threshold");
    assert_eq!(
        peer.read(SMALL + BIG / 2),
        "71",
        "the growth, read by the peer"
    );
    assert_writes_cross(&f, &mut peer, SMALL + BIG, "grown while open");
    // Both opens are cached (the mode an inode has while open stays).
    assert_eq!(io_of(&path, &m.host("upper", "grow")), Io::Cached);
    drop(peer);
    drop(f);
    assert_eq!(
        io_once_released(&path, &m.host("upper", "grow"), Io::Passthrough),
        Io::Passthrough,
        "opened again, the grown file goes by its size"
    );
    let data = fs::read(&path).expect("read");
    assert_eq!(data.len() as u64, SMALL + BIG + 21);
    assert_eq!(&data[100..110], b"PPPPPPPPPP");
    assert!(data[SMALL as usize..(SMALL + BIG - 2) as usize]
        .iter()
        .all(|&b| b == b'G'));
}

#[test]
fn a_cached_open_after_passthrough_writes_reads_them_not_stale_pages() {
    let m = Mount::new(&[], &[("f", SMALL)]);
    let path = m.path("f");
    // Cached: the page cache now holds the small file's first page.
    let f = fs::File::open(&path).expect("open");
    assert_eq!(byte_at(&f, 0), "46");
    drop(f);
    open_rw(&path)
        .set_len(BIG)
        .expect("grow past the threshold");
    let f = open_rw(&path);
    f.write_all_at(&vec![b'W'; SMALL as usize], 0)
        .expect("write through passthrough");
    drop(f);
    open_rw(&path)
        .set_len(SMALL)
        .expect("shrink below the threshold");
    // The passthrough opens' RELEASEs come after close(2) returned: until
    // the server has them, a new open takes the route they had.
    assert_eq!(
        io_once_released(&path, &m.host("upper", "f"), Io::Cached),
        Io::Cached
    );
    let data = fs::read(&path).expect("read through a cached open");
    assert!(
        data.iter().all(|&b| b == b'W'),
        "a cached open shows what passthrough wrote, not the page cache of before"
    );
}

#[test]
fn a_lower_file_read_through_passthrough_is_copied_up_only_once_its_readers_close() {
    let m = Mount::new(&[("big", BIG)], &[]);
    let path = m.path("big");
    let reader = fs::File::open(&path).expect("open read-only");
    assert_eq!(io_of(&path, &m.host("lower", "big")), Io::Passthrough);
    let mut peer = Peer::start();
    // A copy-up now would leave the reader on the lower file, unable to
    // see what the writer writes: refused, as writing a running program is.
    assert_eq!(peer.open(&path, true), format!("err {}", libc::ETXTBSY));
    assert_eq!(
        nix::unistd::truncate(&path, 1),
        Err(nix::errno::Errno::ETXTBSY),
        "truncate(2) while a passthrough reader holds the lower file"
    );
    assert!(
        !m.host("upper", "big").exists(),
        "a refused open or truncate leaves no copy-up behind"
    );
    assert_eq!(byte_at(&reader, 0), "46", "the reader reads on");
    drop(reader);
    // The reader's RELEASE comes after close(2) returned: until the
    // server has it, the open is still refused.
    let mut opened = peer.open(&path, true);
    for _ in 0..250 {
        if opened == "ok" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        opened = peer.open(&path, true);
    }
    assert_eq!(opened, "ok", "once the reader closed");
    peer.write(0, b'N', 4);
    drop(peer);
    assert_eq!(byte_at(&fs::File::open(&path).expect("open"), 2), "78");
    assert_eq!(
        fs::read(m.host("upper", "big")).expect("copied up")[..4],
        *b"NNNN"
    );
    assert_eq!(
        fs::read(m.host("lower", "big")).expect("lower")[..4],
        *b"...."
    );
}

/// A copy-up that writes nothing (chmod, as `setcap` or `touch` make one)
/// while a passthrough reader holds the lower file: later readers share
/// that file (the upper holds the same bytes, as writes wait for the
/// readers), where they got ETXTBSY, and a program could not be run again.
#[test]
fn a_lower_file_held_passthrough_opens_for_reading_after_a_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let m = Mount::new(&[("big", BIG)], &[]);
    let path = m.path("big");
    let reader = fs::File::open(&path).expect("open read-only");
    assert_eq!(io_of(&path, &m.host("lower", "big")), Io::Passthrough);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(m.host("upper", "big").exists(), "chmod copied the file up");
    let again = fs::File::open(&path).expect("a read-only open after the chmod");
    assert_eq!(byte_at(&again, 1), "46");
    let mut peer = Peer::start();
    assert_eq!(peer.open(&path, true), format!("err {}", libc::ETXTBSY));
    drop((reader, again));
}
