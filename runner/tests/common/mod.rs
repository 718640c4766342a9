//! Shared helpers for the end-to-end tests: a private store per test and
//! the built `strata` binary.

#![allow(dead_code)]

pub mod fault_proxy;
pub mod privileges;
pub mod registry;
pub mod scripted_registry;
pub mod session;
pub mod token_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Strata {
    pub dir: tempfile::TempDir,
}

impl Drop for Strata {
    /// A test that failed midway leaves no container running: each one
    /// left is removed with `rm -f`, which stops its processes and
    /// unmounts its tree, so the temporary store can go too.
    fn drop(&mut self) {
        let containers = std::fs::read_dir(self.root().join("containers"));
        if !containers.is_ok_and(|mut d| d.next().is_some()) {
            return;
        }
        let listed = self
            .cmd(&["ps", "-a", "-q", "--no-trunc"])
            .stdin(Stdio::null())
            .output();
        for id in listed
            .map(|o| o.stdout)
            .unwrap_or_default()
            .split(|b| *b == b'\n')
        {
            if let Ok(id) = std::str::from_utf8(id).map(str::trim) {
                if !id.is_empty() {
                    let _ = self.cmd(&["rm", "-f", id]).stdin(Stdio::null()).output();
                }
            }
        }
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: {}", self.stderr);
        self
    }

    /// docker's shape for bad input: exit 125 and one line that says `text`.
    pub fn refused_with(self, text: &str) -> Run {
        assert_eq!(self.code, 125, "{}", self.stderr);
        assert!(
            self.stderr.contains(text),
            "wanted {text:?} in: {}",
            self.stderr
        );
        assert_eq!(self.stderr.lines().count(), 1, "{}", self.stderr);
        self
    }
}

impl Run {
    /// docker's shape for a verb of several containers (`stop`, `pause`,
    /// `start`...) that failed on one: exit 1, and the daemon's error, a
    /// line that says `text`, on stderr.
    pub fn failed_with(self, text: &str) -> Run {
        assert_eq!(self.code, 1, "{}", self.stderr);
        let said = self
            .stderr
            .lines()
            .any(|l| l.starts_with("Error response from daemon: ") && l.contains(text));
        assert!(said, "wanted {text:?} in: {}", self.stderr);
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Waits for `child`; one that has not ended within `limit` is killed and
/// fails the test: the hang is what such a test looks for.
pub fn wait_bounded(child: &mut std::process::Child, limit: std::time::Duration, what: &str) {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait for the child").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

impl Strata {
    pub fn new() -> Strata {
        Strata {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// A store holding `busybox:latest`, made by scripts/build-busybox-image
    /// (offline, about a second). Needs root and FUSE for what follows.
    pub fn with_busybox() -> Strata {
        privileges::require_root_and_fuse();
        let s = Strata::new();
        s.add_busybox();
        s
    }

    /// Makes `busybox:latest` in this store (scripts/build-busybox-image),
    /// for a store whose root was prepared first (a small disk mounted
    /// there, say).
    pub fn add_busybox(&self) {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/build-busybox-image"
        ))
        .env("STRATA", bin())
        .env("STRATA_ROOT", self.root())
        .output()
        .expect("the busybox script runs");
        assert!(
            out.status.success(),
            "build-busybox-image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(self.root()).args(args);
        c.env_remove("STRATA_ROOT");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("strata runs")
            .into()
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata runs");
        child.stdin.take().expect("piped").write_all(input).ok();
        child.wait_with_output().expect("strata finishes").into()
    }

    /// `strata save --format oci-dir -o DIR IMAGE`: the image as an OCI
    /// layout directory.
    pub fn save_to_dir(&self, dir: &Path, image: &str) -> Run {
        let dir = dir.to_str().expect("utf-8 path");
        self.run(&["save", "--format", "oci-dir", "-o", dir, image])
    }

    /// Imports a tar file and returns the image id line.
    pub fn import(&self, tar: &Path, reference: &str) -> String {
        let r = self
            .run(&["import", tar.to_str().expect("utf-8 path"), reference])
            .ok();
        r.stdout.trim().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A tar builder for fixtures made at test time.
pub struct TarMaker {
    b: tar::Builder<Vec<u8>>,
}

impl TarMaker {
    pub fn new() -> TarMaker {
        TarMaker {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub fn dir(mut self, path: &str) -> TarMaker {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.b
            .append_data(&mut h, path, std::io::empty())
            .expect("tar dir");
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> TarMaker {
        self.file_with_mode(path, data, 0o644)
    }

    pub fn file_with_mode(mut self, path: &str, data: &[u8], mode: u32) -> TarMaker {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data).expect("tar file");
        self
    }

    /// Writes the name bytes raw, so names tar::Builder refuses ("..",
    /// absolute) can be made.
    pub fn raw(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> TarMaker {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.b.append(&h, data).expect("tar raw");
        self
    }

    /// A file carrying the extended attribute `name` (a PAX record).
    pub fn file_with_xattr(mut self, path: &str, name: &str, value: &[u8]) -> TarMaker {
        let key = format!("SCHILY.xattr.{name}");
        self.b
            .append_pax_extensions([(key.as_str(), value)])
            .expect("tar pax header");
        self.file(path, b"x")
    }

    pub fn symlink(mut self, path: &str, target: &str) -> TarMaker {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b
            .append_link(&mut h, path, target)
            .expect("tar symlink");
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> TarMaker {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.b
            .append_link(&mut h, path, target)
            .expect("tar hardlink");
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.b.into_inner().expect("tar finishes")
    }

    pub fn write(self, path: &Path) -> PathBuf {
        std::fs::write(path, self.bytes()).expect("write tar");
        path.to_path_buf()
    }
}

/// Deterministic pseudo-random bytes (xorshift), for big incompressible files.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `bytes` gzip-compressed, as registries and `docker save | gzip` carry
/// layers.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// A C program built static with gcc (build-essential, which
/// scripts/setup installs) into `dir`, to run inside busybox containers
/// where a shell loop is too slow to win a race.
pub fn static_program(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).expect("write the C source");
    let out = dir.join(name);
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&c)
        .status()
        .expect("gcc (build-essential, which scripts/setup installs) runs");
    assert!(built.success(), "gcc failed to build {name}");
    out
}

/// A null device (1, 3) of the test's own at `path`: what a command must
/// write to, or refuse, but never replace with a file.
pub fn null_device(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod a null device");
}
