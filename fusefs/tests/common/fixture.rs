//! A `UnionFs` driven directly, with no kernel and no root: lowers built
//! in memory ([`MemLower`]) or in a temporary host directory
//! ([`DirLower`]), a temporary upper, and helpers that speak in paths.
//!
//! Every test runs once per [`Setup`]: each kind of lower, in each upper
//! format this process may write. The rootless format is written by any
//! user; the kernel format needs root (chown, whiteout devices,
//! `trusted.*`), so as root a test covers both formats and as an ordinary
//! user the rootless one, which is the format a server of that user writes.
//! What lands in the upper is checked as the format in use spells it.

use fusefs::lower::Lower;
use fusefs::override_stat::OverrideStat;
use fusefs::union_fs::{Caller, Writer};
use fusefs::upper_format::MarkerNamespace;
use fusefs::{DirLower, FileHandle, FsError, Layers, MemLower, NodeId, UnionFs, UpperFormat};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The umask of [`caller`].
pub const UMASK: u32 = 0o022;

/// One entry of a lower layer, in the order a tar would list it.
#[derive(Clone, Copy, Debug)]
pub enum Item {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8], u32),
    /// Another name of the file named second.
    Hardlink(&'static str, &'static str),
    Symlink(&'static str, &'static str),
    /// Hides the name in the layers below.
    Whiteout(&'static str),
    /// A directory hiding what the layers below have at its path.
    OpaqueDir(&'static str),
    /// An xattr (name, value) of the entry at the path, as an image's tar
    /// carries it: in a store layer's entry, or under the container
    /// prefix in a directory layer, as the upper keeps the container's.
    Xattr(&'static str, &'static str, &'static [u8]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerKind {
    Mem,
    Dir,
}

#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub lower: LowerKind,
    pub format: UpperFormat,
}

/// The upper formats this process can write (see the module doc).
pub fn formats() -> Vec<UpperFormat> {
    let mut f = vec![UpperFormat::Rootless];
    if nix::unistd::geteuid().is_root() {
        f.push(UpperFormat::detect());
    }
    f
}

pub fn setups() -> Vec<Setup> {
    let mut s = Vec::new();
    for lower in [LowerKind::Mem, LowerKind::Dir] {
        for format in formats() {
            s.push(Setup { lower, format });
        }
    }
    s
}

/// Runs `test` on a fresh union over one lower of `items`, once per setup.
pub fn for_each_setup(items: &[Item], test: impl Fn(&Fx)) {
    for setup in setups() {
        // Shown with the failure: which setup broke.
        eprintln!("setup: {setup:?}");
        test(&Fx::new(setup, &[items]));
    }
}

/// A union under test, its upper and its host lowers.
pub struct Fx {
    pub fs: UnionFs,
    pub setup: Setup,
    upper: PathBuf,
    /// Host roots of the lowers, top first (empty for in-memory ones).
    lower_roots: Vec<PathBuf>,
    _tmp: TempDir,
    /// What the lowers hold, top first, to build them again on remount.
    lower_items: Vec<Vec<Item>>,
}

fn mem_lower(i: usize, items: &[Item]) -> MemLower {
    let mut l = MemLower::new(&format!("mem{i}"), i as u32 + 1);
    for item in items {
        match *item {
            Item::Dir(p, mode) => l.dir(p, mode),
            Item::File(p, data, mode) => l.file(p, data).set_owner(p, 0, 0, mode),
            Item::Hardlink(p, target) => l.hardlink(p, target),
            Item::Symlink(p, target) => l.symlink(p, target),
            Item::Whiteout(p) => l.whiteout(p),
            Item::OpaqueDir(p) => l.opaque_dir(p),
            Item::Xattr(p, name, value) => l.set_xattr(p, name.as_bytes(), value),
        };
    }
    l
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod in a lower");
}

/// Writes `items` into `root` in overlay format, with the markers an
/// unprivileged tool can make (`.wh.` files).
fn dir_lower(root: &Path, items: &[Item]) -> DirLower {
    fs::create_dir_all(root).expect("create lower root");
    chmod(root, 0o755);
    for item in items {
        match *item {
            Item::Dir(p, mode) => {
                fs::create_dir(root.join(p)).expect("mkdir in a lower");
                chmod(&root.join(p), mode);
            }
            Item::File(p, data, mode) => {
                fs::write(root.join(p), data).expect("write a lower file");
                chmod(&root.join(p), mode);
            }
            Item::Hardlink(p, target) => {
                fs::hard_link(root.join(target), root.join(p)).expect("link in a lower")
            }
            Item::Symlink(p, target) => {
                std::os::unix::fs::symlink(target, root.join(p)).expect("symlink in a lower")
            }
            Item::Whiteout(p) => {
                let p = Path::new(p);
                let name = format!(".wh.{}", p.file_name().expect("name").to_string_lossy());
                let at = root.join(p.parent().unwrap_or(Path::new(""))).join(name);
                fs::write(at, b"").expect("write a whiteout");
            }
            Item::OpaqueDir(p) => {
                fs::create_dir(root.join(p)).expect("mkdir in a lower");
                chmod(&root.join(p), 0o755);
                fs::write(root.join(p).join(".wh..wh..opq"), b"").expect("write opaque marker");
            }
            Item::Xattr(p, name, value) => {
                let prefixed = format!("user.strata.x.{name}");
                xattr::set(root.join(p), prefixed, value).expect("setxattr in a lower");
            }
        }
    }
    DirLower::new(root)
}

impl Fx {
    /// A union over `lowers` (top first) of the setup's kind, with an empty
    /// upper in the setup's format.
    pub fn new(setup: Setup, lowers: &[&[Item]]) -> Fx {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let mut lower_roots = Vec::new();
        let mut boxed: Vec<Box<dyn Lower>> = Vec::new();
        for (i, items) in lowers.iter().enumerate() {
            match setup.lower {
                LowerKind::Mem => boxed.push(Box::new(mem_lower(i, items))),
                LowerKind::Dir => {
                    let root = tmp.path().join(format!("lower{i}"));
                    boxed.push(Box::new(dir_lower(&root, items)));
                    lower_roots.push(root);
                }
            }
        }
        let upper = tmp.path().join("upper");
        let layers = Layers::with_format(Some(&upper), boxed, Some(setup.format))
            .expect("layers over a temporary upper");
        Fx {
            fs: UnionFs::new(layers, false),
            setup,
            upper,
            lower_roots,
            _tmp: tmp,
            lower_items: lowers.iter().map(|l| l.to_vec()).collect(),
        }
    }

    /// A new union over the same lowers and upper, as after an unmount
    /// and a mount: what it shows comes from the upper as written.
    pub fn remount(&mut self) {
        let layers = Layers::with_format(Some(&self.upper), self.lowers(), Some(self.setup.format))
            .expect("layers over the same upper");
        self.fs = UnionFs::new(layers, false);
    }

    /// The lowers again, as a new mount (or a commit) opens them.
    pub fn lowers(&self) -> Vec<Box<dyn Lower>> {
        match self.setup.lower {
            LowerKind::Mem => self
                .lower_items
                .iter()
                .enumerate()
                .map(|(i, items)| Box::new(mem_lower(i, items)) as Box<dyn Lower>)
                .collect(),
            LowerKind::Dir => self
                .lower_roots
                .iter()
                .map(|r| Box::new(DirLower::new(r)) as Box<dyn Lower>)
                .collect(),
        }
    }

    /// The upper's root on the host.
    pub fn upper_root(&self) -> &Path {
        &self.upper
    }

    /// Node id of `path` ("" is the root), by one lookup per component as
    /// the kernel makes them.
    pub fn try_id(&self, path: &str) -> Result<NodeId, i32> {
        let mut id = NodeId::ROOT;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            id = self
                .fs
                .lookup(id, name.as_bytes())
                .map_err(|e| e.errno())?
                .id;
        }
        Ok(id)
    }

    pub fn id(&self, path: &str) -> NodeId {
        self.try_id(path)
            .unwrap_or_else(|e| panic!("lookup /{path}: errno {e}"))
    }

    /// The node id of `path`'s directory and `path`'s last name.
    pub fn parent<'p>(&self, path: &'p str) -> (NodeId, &'p [u8]) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        (self.id(dir), name.as_bytes())
    }

    pub fn exists(&self, path: &str) -> bool {
        match self.try_id(path) {
            Ok(_) => true,
            Err(libc::ENOENT) => false,
            Err(e) => panic!("lookup /{path}: errno {e}"),
        }
    }

    /// Attributes of `path` as getattr reports them.
    pub fn stat(&self, path: &str) -> fusefs::Node {
        self.fs.getattr(self.id(path)).expect("getattr").node
    }

    /// Reads the whole file behind node `id` through a handle.
    pub fn read_id(&self, id: NodeId) -> Vec<u8> {
        let (fh, _) = self.fs.open(id, libc::O_RDONLY).expect("open for reading");
        let data = read_fh(&self.fs, id, fh);
        self.fs.release(fh);
        data
    }

    pub fn read(&self, path: &str) -> Vec<u8> {
        self.read_id(self.id(path))
    }

    /// Writes `data` at `offset` of `path` through a handle, as
    /// `open(O_WRONLY)`, `pwrite`, `close` would.
    pub fn write(&self, path: &str, offset: u64, data: &[u8]) {
        let id = self.id(path);
        let (fh, _) = self.fs.open(id, libc::O_WRONLY).expect("open for writing");
        let n = self
            .fs
            .write(id, Some(fh), offset, data, &writer())
            .expect("write");
        assert_eq!(n, data.len());
        self.fs.release(fh);
    }

    /// Creates `path` with `data`, mode 0666 under [`UMASK`].
    pub fn create(&self, path: &str, data: &[u8]) -> NodeId {
        let (dir, name) = self.parent(path);
        let (attr, fh) = self
            .fs
            .create(dir, name, 0o666, (libc::O_RDWR, true), caller())
            .unwrap_or_else(|e| panic!("create /{path}: {e}"));
        let fh = fh.expect("create with a handle gives one");
        self.fs
            .write(attr.id, Some(fh), 0, data, &writer())
            .expect("write");
        self.fs.release(fh);
        attr.id
    }

    pub fn mkdir(&self, path: &str, mode: u32) -> Result<NodeId, i32> {
        let (dir, name) = self.parent(path);
        self.fs
            .mkdir(dir, name, mode, caller())
            .map(|a| a.id)
            .map_err(|e| e.errno())
    }

    /// 16 directories of 255-byte names, each in the last: the deepest
    /// path is 4,095 bytes, one short of PATH_MAX. Returns it.
    pub fn mkdir_to_path_max(&self) -> String {
        let name = "n".repeat(255);
        let mut path = name.clone();
        self.mkdir(&path, 0o755).expect("mkdir under PATH_MAX");
        for _ in 1..16 {
            path = format!("{path}/{name}");
            self.mkdir(&path, 0o755).expect("mkdir under PATH_MAX");
        }
        path
    }

    pub fn unlink(&self, path: &str) -> Result<(), i32> {
        let (dir, name) = self.parent(path);
        self.fs.unlink(dir, name).map_err(|e| e.errno())
    }

    pub fn rmdir(&self, path: &str) -> Result<(), i32> {
        let (dir, name) = self.parent(path);
        self.fs.rmdir(dir, name).map_err(|e| e.errno())
    }

    pub fn rename(&self, from: &str, to: &str, flags: u32) -> Result<(), i32> {
        let (fd, fname) = self.parent(from);
        let (td, tname) = self.parent(to);
        self.fs
            .rename(fd, fname, td, tname, flags)
            .map_err(|e| e.errno())
    }

    /// Names the union lists in directory `path`, without `.` and `..`.
    pub fn names(&self, path: &str) -> Vec<String> {
        let (listing, start) = self.fs.dir_items(self.id(path), 0).expect("readdir");
        listing.items[start..]
            .iter()
            .filter(|i| !i.is_dot)
            .map(|i| String::from_utf8_lossy(&i.name).into_owned())
            .collect()
    }

    // What the upper directory holds, read on the host.

    pub fn upper_path(&self, path: &str) -> PathBuf {
        self.upper.join(path)
    }

    /// True when the upper holds a real entry (not a whiteout) at `path`.
    pub fn in_upper(&self, path: &str) -> bool {
        fs::symlink_metadata(self.upper_path(path)).is_ok_and(|md| !is_whiteout_device(&md))
    }

    pub fn upper_bytes(&self, path: &str) -> Vec<u8> {
        fs::read(self.upper_path(path)).unwrap_or_else(|e| panic!("upper /{path}: {e}"))
    }

    /// True when the upper records `path` as deleted, in the form the
    /// format writes: a 0/0 character device named `path` (kernel), or an
    /// empty `.wh.<name>` file with nothing named `path` (rootless).
    pub fn whiteout_in_upper(&self, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let at = self.upper.join(dir);
        let dotted = fs::symlink_metadata(at.join(format!(".wh.{name}")));
        let named = fs::symlink_metadata(at.join(name));
        if self.setup.format.is_kernel() {
            named.is_ok_and(|md| is_whiteout_device(&md)) && dotted.is_err()
        } else {
            dotted.is_ok_and(|md| md.is_file() && md.len() == 0) && named.is_err()
        }
    }

    /// The host (dev, inode) of the upper's entry at `path`.
    pub fn host_inode(&self, path: &str) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let md = fs::symlink_metadata(self.upper_path(path)).expect("upper entry");
        (md.dev(), md.ino())
    }

    /// The host (dev, inode) of the upper's whiteout for `path`, in the
    /// form the format writes (see [`Fx::whiteout_in_upper`]).
    pub fn whiteout_inode(&self, path: &str) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        assert!(self.whiteout_in_upper(path), "no whiteout for /{path}");
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let name = match self.setup.format.is_kernel() {
            true => name.to_string(),
            false => format!(".wh.{name}"),
        };
        let md = fs::symlink_metadata(self.upper.join(dir).join(name)).expect("whiteout");
        (md.dev(), md.ino())
    }

    /// True when the upper directory `path` carries the opaque xattr the
    /// format writes.
    pub fn opaque_in_upper(&self, path: &str) -> bool {
        let name = match self.setup.format {
            UpperFormat::Kernel(MarkerNamespace::Trusted) => "trusted.overlay.opaque",
            _ => "user.overlay.opaque",
        };
        xattr::get(self.upper_path(path), name)
            .expect("getxattr")
            .is_some_and(|v| v == b"y")
    }

    /// The redirect the upper directory `path` carries, under the name the
    /// format writes (see `fusefs::whiteout`).
    pub fn redirect_in_upper(&self, path: &str) -> Option<String> {
        let name = match self.setup.format {
            UpperFormat::Kernel(MarkerNamespace::Trusted) => "trusted.overlay.redirect",
            _ => "user.overlay.redirect",
        };
        xattr::get(self.upper_path(path), name)
            .expect("getxattr")
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// The container's permission bits of upper entry `path`, as recorded:
    /// the host mode (kernel) or `user.containers.override_stat` (rootless).
    pub fn upper_mode(&self, path: &str) -> u32 {
        let host = self.upper_path(path);
        if self.setup.format.is_kernel() {
            return fs::symlink_metadata(&host).expect("lstat upper").mode() & 0o7777;
        }
        let v = xattr::get(&host, "user.containers.override_stat")
            .expect("getxattr")
            .unwrap_or_else(|| panic!("upper /{path} has no override_stat"));
        OverrideStat::parse(&v).expect("valid override_stat").mode
    }

    /// The container's xattr `name` of upper entry `path`, as recorded:
    /// under its own name (kernel) or under `user.strata.x.` (rootless).
    pub fn upper_xattr(&self, path: &str, name: &str) -> Option<Vec<u8>> {
        let stored = if self.setup.format.is_kernel() {
            name.to_string()
        } else {
            format!("user.strata.x.{name}")
        };
        xattr::get(self.upper_path(path), stored).expect("getxattr")
    }

    /// The host file of a directory lower (`None` for in-memory lowers).
    pub fn lower_path(&self, layer: usize, path: &str) -> Option<PathBuf> {
        self.lower_roots.get(layer).map(|r| r.join(path))
    }
}

fn is_whiteout_device(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Reads everything behind handle `fh` of node `id`.
pub fn read_fh(fs: &UnionFs, id: NodeId, fh: FileHandle) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let chunk = fs
            .read(id, Some(fh), data.len() as u64, 4096)
            .expect("read");
        if chunk.is_empty() {
            return data;
        }
        data.extend_from_slice(&chunk);
    }
}

/// The user creating files in these tests.
pub fn caller() -> Caller {
    Caller {
        uid: 1000,
        gid: 1000,
        umask: UMASK,
    }
}

/// The user writing files in these tests.
pub fn writer() -> Writer {
    Writer {
        uid: 0,
        gid: 0,
        pid: std::process::id(),
        lacks_fsetid: Some(false),
        gid_map: None,
    }
}

/// The errno of a failed call.
pub fn errno<T: std::fmt::Debug>(r: Result<T, FsError>) -> i32 {
    r.expect_err("the call should fail").errno()
}
