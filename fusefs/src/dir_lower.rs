//! A host directory read as a layer: a plain overlay-format lower, or the
//! upper read back with strata's metadata applied.
//!
//! Container metadata comes from `user.containers.override_stat` when
//! present (see [`crate::override_stat`]), else from the host inode; an
//! override of type `symlink` on a regular file means the file's content is
//! the link target (how the upper keeps symlinks with an owner). Whiteouts
//! and opaque directories follow [`crate::whiteout`].

use crate::error::{show, FsError, Result};
use crate::lower::{ino_tag, Lower, Node};
use crate::override_stat::{container_xattr_name, OverrideStat, OVERRIDE_STAT};
use crate::shared_whiteout::SharedWhiteout;
use crate::upper_format::{INO_XATTRS, NLINK_XATTRS};
use crate::whiteout::{
    hidden_name, is_marker, is_valid_redirect, whiteout_fits, whiteout_name, OPAQUE_MARKER,
    OPAQUE_XATTRS, REDIRECT_XATTRS,
};
use crate::xattr::{self, Host};
use layerdb::{join_path, split_path, Entry, Kind};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where inode numbers of a host directory layer come from.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// A read-only lower: numbers from the host (device, inode).
    Lower,
    /// The upper: a copied-up file keeps the number recorded in
    /// `user.strata.ino`, a file born in the upper uses its host inode.
    Upper,
}

/// What [`DirLower::node_of`] reads of a host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// Everything a node holds.
    Whole,
    /// All but a link's target and the container's xattr values: what
    /// a listing answers.
    Attributes,
}

/// A host directory in overlay format, used as a layer.
#[derive(Debug)]
pub struct DirLower {
    root: PathBuf,
    role: Role,
    /// Whether its files' `user.containers.override_stat` says their
    /// owners and modes: always for the upper (its own records); for a
    /// lower only when its root carries one too, as fuse-overlayfs decides
    /// per layer (containers-storage marks a layer it wrote so). A layer
    /// extracted from an image otherwise keeps whatever xattrs the image
    /// gave its files, and one could make a file look root's and setuid.
    overrides: bool,
    /// The upper's shared whiteout device, known in its listings without a
    /// stat (see `shared_whiteout::Names`); the server's own upper only.
    whiteouts: Option<Arc<SharedWhiteout>>,
}

/// Longest host path handed to a system call as is (PATH_MAX is 4096 with
/// its NUL; keep a margin for a `.wh.` or temporary name joined later).
const DIRECT_PATH_MAX: usize = 3800;

/// A host path usable in system calls even when `root/path` is longer than
/// PATH_MAX (a container path near PATH_MAX under a deep upper): then it is
/// `/proc/self/fd/<dir>/<rest>`, with `<dir>` an open descriptor of a parent
/// directory that lives as long as this value. Use it while it is alive.
#[derive(Debug)]
pub struct HostPath {
    path: PathBuf,
    _anchor: Option<OwnedFd>,
}

impl std::ops::Deref for HostPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for HostPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// `root/path` for a layer path (`root` itself for the empty path).
pub fn host_path(root: &Path, path: &[u8]) -> HostPath {
    let full = if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(path))
    };
    if full.as_os_str().len() <= DIRECT_PATH_MAX {
        return HostPath {
            path: full,
            _anchor: None,
        };
    }
    anchored(root, path).unwrap_or(HostPath {
        // A missing or non-directory component: a path that does not exist
        // gives the caller its ENOENT.
        path: PathBuf::from("/proc/self/fd/-1/strata-unreachable"),
        _anchor: None,
    })
}

/// Walks `path` below `root` in steps shorter than PATH_MAX, opening each
/// step's directory relative to the previous one, until the rest is short.
fn anchored(root: &Path, path: &[u8]) -> Option<HostPath> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut dir = nix::fcntl::open(root, flags, Mode::empty()).ok()?;
    let mut rest = path;
    while rest.len() > DIRECT_PATH_MAX - 64 {
        // Cut at the last '/' within the budget: a step of whole components.
        let cut = rest[..DIRECT_PATH_MAX - 64]
            .iter()
            .rposition(|&b| b == b'/')?;
        let step = &rest[..cut];
        dir = openat(
            &dir,
            OsStr::from_bytes(step),
            flags | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .ok()?;
        rest = &rest[cut + 1..];
    }
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(rest));
    Some(HostPath {
        path: p,
        _anchor: Some(dir),
    })
}

fn ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl DirLower {
    /// A read-only overlay-format directory layer; a root given as a
    /// symlink or a relative path is resolved now (see
    /// `upper::resolved_root`).
    pub fn new(root: impl Into<PathBuf>) -> DirLower {
        let root = crate::upper::resolved_root(&root.into());
        let overrides = xattr::get(&root, OVERRIDE_STAT).is_ok_and(|v| v.is_some());
        DirLower {
            root,
            role: Role::Lower,
            overrides,
            whiteouts: None,
        }
    }

    /// The upper directory read back as a layer; `whiteouts` where this
    /// process makes its whiteouts.
    pub(crate) fn upper(
        root: impl Into<PathBuf>,
        whiteouts: Option<Arc<SharedWhiteout>>,
    ) -> DirLower {
        DirLower {
            root: root.into(),
            role: Role::Upper,
            overrides: true,
            whiteouts,
        }
    }

    /// The host directory the layer reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn stable_ino(&self, path: &[u8], xa: Host, md: &Metadata, names: &[Vec<u8>]) -> Result<u64> {
        match self.role {
            Role::Lower => Ok(lower_ino(md.dev(), md.ino())),
            Role::Upper => {
                if let Some(name) = INO_XATTRS.into_iter().find(|n| has(names, n)) {
                    let rec = xa.get(name).map_err(|e| FsError::io("getxattr", path, e))?;
                    if let Some(v) = rec {
                        return std::str::from_utf8(&v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| FsError::Corrupt {
                                path: show(path),
                                reason: "unreadable stable inode number".into(),
                            });
                    }
                }
                Ok(ino_tag::UPPER | md.ino())
            }
        }
    }

    /// The node of the host file at `path`, if there is one.
    fn lstat_node(&self, path: &[u8]) -> Result<Option<Node>> {
        let host = host_path(&self.root, path);
        match lstat_opt(&host, path)? {
            Some(md) => self
                .node_of(path, &host, None, &md, Reading::Whole)
                .map(Some),
            None => Ok(None),
        }
    }

    /// The node of the regular file CREATE just made at `path`, read
    /// through `file`, open on it: what [`DirLower::lstat_node`] reads,
    /// without a walk of the host path for each call.
    pub(crate) fn new_file_node(&self, path: &[u8], file: &File) -> Result<Node> {
        let md = file.metadata().map_err(|e| FsError::io("fstat", path, e))?;
        self.node_of(
            path,
            &host_path(&self.root, path),
            Some(file),
            &md,
            Reading::Whole,
        )
    }

    /// The node for host file `host` that exists, its xattrs read through
    /// `open` when there is one (see [`Host`]); `md` is its lstat.
    fn node_of(
        &self,
        path: &[u8],
        host: &Path,
        open: Option<&File>,
        md: &Metadata,
        reading: Reading,
    ) -> Result<Node> {
        let xa = open.map_or(Host::Path(host), Host::Open);
        let ft = md.file_type();
        let hp = || path.to_vec();
        if ft.is_char_device() && md.rdev() == 0 {
            return Ok(Node::from_entry(Entry::new(Kind::Whiteout, 0), 0));
        }
        let can_xattr = ft.is_file() || ft.is_dir();
        // One listing, then only the attributes present: most host files
        // have none, and a lookup should not pay a failed getxattr for each
        // name strata might have written.
        let names = if can_xattr {
            xa.list().map_err(|e| FsError::io("listxattr", path, e))?
        } else {
            Vec::new()
        };
        let ovr = if self.overrides && has(&names, OVERRIDE_STAT) {
            match xa
                .get(OVERRIDE_STAT)
                .map_err(|e| FsError::io("getxattr", &hp(), e))?
            {
                Some(v) => Some(OverrideStat::parse(&v).ok_or_else(|| FsError::Corrupt {
                    path: show(path),
                    reason: format!("unreadable override_stat {:?}", String::from_utf8_lossy(&v)),
                })?),
                None => None,
            }
        } else {
            None
        };
        let host_kind = Entry::kind_of(ft);
        let kind = ovr.and_then(|o| o.kind).unwrap_or(host_kind);
        let mut e = Entry::new(kind, md.mode() & 0o7777);
        e.uid = md.uid();
        e.gid = md.gid();
        let rdev = md.rdev();
        e.rdev = (libc::major(rdev), libc::minor(rdev));
        if let Some(o) = ovr {
            e.uid = o.uid;
            e.gid = o.gid;
            e.mode = o.mode;
            if o.kind.is_some() && matches!(kind, Kind::CharDev | Kind::BlockDev) {
                e.rdev = o.rdev;
            }
        }
        e.mtime_ns = ns(md.mtime(), md.mtime_nsec());
        // A directory's count is 2 + its subdirectories on the host too
        // (whiteouts and markers are files); see `union` for merged ones.
        e.nlink = md.nlink() as u32;
        if let Some(name) = NLINK_XATTRS.into_iter().find(|n| has(&names, n)) {
            let hidden = xa.get(name).map_err(|e| FsError::io("getxattr", path, e))?;
            let hidden: u32 = hidden
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
                .unwrap_or(0);
            e.nlink += hidden;
        }
        e.size = match kind {
            Kind::Regular => md.size(),
            Kind::Symlink => md.size(),
            _ => 0,
        };
        if kind == Kind::Symlink && reading == Reading::Attributes {
            // lstat's size of a link is its target's length; a link of
            // the rootless format is a file holding the target.
            e.size = md.size();
        } else if kind == Kind::Symlink {
            e.link = if ft.is_symlink() {
                std::fs::read_link(host)
                    .map_err(|e| FsError::io("readlink", path, e))?
                    .into_os_string()
                    .into_vec()
            } else {
                std::fs::read(host).map_err(|e| FsError::io("read", path, e))?
            };
            e.size = e.link.len() as u64;
        }
        if kind == Kind::Dir {
            e.opaque = self.is_opaque(host, xa, path, &names)?;
        }
        if reading == Reading::Whole {
            e.xattrs = self.container_xattrs(xa, path, &names)?;
        }
        e.ino = md.ino() as u32;
        let ino = self.stable_ino(path, xa, md, &names)?;
        let mut node = host_node(ino, md, e, &names);
        node.overridden = ovr.is_some();
        if kind == Kind::Dir && !node.entry.opaque {
            node.redirect = self.redirect(xa, path, &names)?.map(Arc::new);
        }
        Ok(node)
    }

    /// A renamed directory's redirect (see [`crate::whiteout`]); a value
    /// that could leave the layers or is malformed is ignored.
    fn redirect(&self, xa: Host, path: &[u8], names: &[Vec<u8>]) -> Result<Option<Vec<u8>>> {
        for name in REDIRECT_XATTRS.into_iter().filter(|n| has(names, n)) {
            let v = xa.get(name).map_err(|e| FsError::io("getxattr", path, e))?;
            match v {
                Some(v) if is_valid_redirect(&v) => return Ok(Some(v)),
                Some(v) => log::warn!(
                    "{}: ignoring invalid redirect {:?}",
                    show(path),
                    String::from_utf8_lossy(&v)
                ),
                None => {}
            }
        }
        Ok(None)
    }

    /// The directory or regular file at `path`, which resolved as
    /// `before`, read again from its host stat alone, with `before`'s
    /// xattr-derived parts (see `Layers::reread_upper`). None when the
    /// host no longer shows it as `before` has it: gone, another inode, or
    /// an owner or mode changed from outside; for a file also a link or
    /// block count other than the host's, which come from xattrs (links
    /// in other layers, a file copied up in part) only a full resolution
    /// reads. An owner and mode from an override xattr (the rootless
    /// format) are among the xattr-derived parts.
    pub(crate) fn reread(&self, path: &[u8], before: &Node) -> Result<Option<Node>> {
        let host = host_path(&self.root, path);
        let Some(md) = lstat_opt(&host, path)? else {
            return Ok(None);
        };
        let e = &before.entry;
        let same_kind = match e.kind {
            Kind::Dir => md.is_dir(),
            Kind::Regular => {
                md.is_file() && e.nlink == md.nlink() as u32 && before.blocks == md.blocks()
            }
            _ => false,
        };
        let same = same_kind
            && e.ino == md.ino() as u32
            && (before.overridden
                || e.mode == md.mode() & 0o7777 && (e.uid, e.gid) == (md.uid(), md.gid()));
        if !same {
            return Ok(None);
        }
        Ok(Some(refreshed(before, &md)))
    }

    fn is_opaque(&self, host: &Path, xa: Host, path: &[u8], names: &[Vec<u8>]) -> Result<bool> {
        for name in OPAQUE_XATTRS.into_iter().filter(|n| has(names, n)) {
            if let Some(v) = xa.get(name).map_err(|e| FsError::io("getxattr", path, e))? {
                if v == b"y" {
                    return Ok(true);
                }
            }
        }
        Ok(host
            .join(OsStr::from_bytes(OPAQUE_MARKER))
            .symlink_metadata()
            .is_ok())
    }

    fn container_xattrs(
        &self,
        xa: Host,
        path: &[u8],
        names: &[Vec<u8>],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        visible_xattrs(names, |name| {
            xa.get(name).map_err(|e| FsError::io("getxattr", path, e))
        })
    }
}

/// The container's xattrs among a host file's `names`, sorted, each value
/// read with `get`; strata's and overlay's bookkeeping left out.
fn visible_xattrs(
    names: &[Vec<u8>],
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in names {
        let Some(visible) = container_xattr_name(name) else {
            continue;
        };
        if let Some(v) = get(name)? {
            out.push((visible.to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// True when `names` (a file's xattr listing) holds `name`.
fn has(names: &[Vec<u8>], name: &[u8]) -> bool {
    names.iter().any(|n| n == name)
}

fn lstat_opt(host: &Path, path: &[u8]) -> Result<Option<Metadata>> {
    match host.symlink_metadata() {
        Ok(md) => Ok(Some(md)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(None),
        Err(e) => Err(FsError::io("lstat", path, e)),
    }
}

impl Lower for DirLower {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn node(&self, path: &[u8]) -> Result<Option<Node>> {
        let (parent, name) = split_path(path);
        if is_bookkeeping(name) {
            return Ok(None);
        }
        if let Some(node) = self.lstat_node(path)? {
            return Ok(Some(node));
        }
        if path.is_empty() || !whiteout_fits(name) {
            return Ok(None);
        }
        let wh = host_path(&self.root, &join_path(parent, &whiteout_name(name)));
        Ok(lstat_opt(&wh, path)?.map(|_| Node::from_entry(Entry::new(Kind::Whiteout, 0), 0)))
    }

    /// Without the probe for a `.wh.` file: each name an untar creates
    /// in a directory of its own was looked up twice (LOOKUP, then
    /// CREATE's check), two host stats each. A whiteout device is still
    /// seen, as it holds the name a new file needs.
    fn node_over_nothing(&self, path: &[u8]) -> Result<Option<Node>> {
        match is_bookkeeping(split_path(path).1) {
            true => Ok(None),
            false => self.lstat_node(path),
        }
    }

    /// Each file asked only for its link count and inode, by its name in
    /// a directory held open: the whole node of every file of a Debian
    /// root (a stat by full path and an xattr listing each), read to find
    /// its four hardlinked ones, made the first copy-up of one take 30-80
    /// ms, against 2-4 ms for another file.
    fn hardlinks(&self) -> Result<HashMap<u64, Vec<Vec<u8>>>> {
        if matches!(self.role, Role::Upper) {
            return crate::lower::hardlinks_by_stat(self);
        }
        let mut by_ino: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        let mut dirs = vec![Vec::new()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&*host_path(&self.root, &dir))
                .map_err(|e| FsError::io("readdir", &dir, e))?;
            for de in entries {
                let de = de.map_err(|e| FsError::io("readdir", &dir, e))?;
                let name = de.file_name();
                if is_bookkeeping(name.as_bytes()) {
                    continue;
                }
                let path = join_path(&dir, name.as_bytes());
                if de.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(path);
                    continue;
                }
                // A stat by name in the directory being read.
                let md = de.metadata().map_err(|e| FsError::io("stat", &path, e))?;
                if md.is_dir() {
                    dirs.push(path);
                } else if md.nlink() > 1 && !crate::upper::is_whiteout_device(&md) {
                    // (A whiteout device, shared by hardlinks in kernel
                    // overlayfs's uppers, names no file.)
                    by_ino
                        .entry(lower_ino(md.dev(), md.ino()))
                        .or_default()
                        .push(path);
                }
            }
        }
        Ok(crate::lower::several_names(by_ino))
    }

    fn children(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Node)>> {
        let host_dir = host_path(&self.root, dir);
        let rd = match std::fs::read_dir(&host_dir) {
            Ok(rd) => rd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(FsError::io("readdir", dir, e)),
        };
        let mut out: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
        let shared = self.whiteouts.as_ref().map(|w| w.names_in(&host_dir));
        let whiteout = || Node::from_entry(Entry::new(Kind::Whiteout, 0), 0);
        for de in rd {
            let de = de.map_err(|e| FsError::io("readdir", dir, e))?;
            let name = de.file_name().into_vec();
            if is_marker(&name) {
                continue;
            }
            if let Some(hidden) = hidden_name(&name) {
                // A real entry of the same layer wins over its whiteout.
                out.entry(hidden.to_vec()).or_insert_with(whiteout);
                continue;
            }
            if shared.as_ref().is_some_and(|s| s.is_shared_whiteout(&de)) {
                out.insert(name, whiteout());
                continue;
            }
            let path = join_path(dir, &name);
            let host = host_dir.join(OsStr::from_bytes(&name));
            let Some(md) = lstat_opt(&host, &path)? else {
                continue; // removed while listing
            };
            // The upper's listings answer READDIRPLUS and the union's own
            // walks, never READLINK or GETXATTR, and are not kept (a
            // lower's are, see `cached_lower`): no link target or xattr
            // value is read for them. 150,000 links of 4,000-byte
            // targets in one directory of a container made the listing
            // that read them 750 MB of server (a review as an attacker).
            let reading = match self.role {
                Role::Upper => Reading::Attributes,
                Role::Lower => Reading::Whole,
            };
            let node = self.node_of(&path, &host, None, &md, reading)?;
            out.insert(name, node);
        }
        Ok(out.into_iter().collect())
    }

    fn read_at(&self, path: &[u8], _node: &Node, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let f = open_no_follow(&host_path(&self.root, path))
            .map_err(|e| FsError::io("open", path, e))?;
        f.read_at(buf, offset)
            .map_err(|e| FsError::io("read", path, e))
    }

    fn host_path(&self, path: &[u8]) -> Option<HostPath> {
        Some(host_path(&self.root, path))
    }
}

/// The attributes of an open upper file that may have no name left
/// (unlinked while open): owner, mode and type from its override_stat,
/// the rest, nlink 0 included, from the host inode; `ino` is its stable
/// number, which the caller knows.
pub(crate) fn node_of_open_file(file: &File, ino: u64) -> Result<Node> {
    let what = b"<open file>";
    let md = file.metadata().map_err(|e| FsError::io("fstat", what, e))?;
    let ovr = OverrideStat::of_file(file).map_err(|e| FsError::io("fgetxattr", what, e))?;
    let kind = ovr.and_then(|o| o.kind).unwrap_or(if md.is_dir() {
        Kind::Dir
    } else {
        Kind::Regular
    });
    let mut e = Entry::new(kind, md.mode() & 0o7777);
    e.uid = md.uid();
    e.gid = md.gid();
    if let Some(o) = ovr {
        (e.uid, e.gid, e.mode, e.rdev) = (o.uid, o.gid, o.mode, o.rdev);
    }
    e.size = md.size();
    e.nlink = md.nlink() as u32;
    e.mtime_ns = ns(md.mtime(), md.mtime_nsec());
    // The container's xattrs, which getxattr and listxattr of a file
    // unlinked while open answer from.
    let names = xattr::list_fd(file).map_err(|e| FsError::io("flistxattr", what, e))?;
    e.xattrs = visible_xattrs(&names, |name| {
        xattr::get_fd(file, name).map_err(|e| FsError::io("fgetxattr", what, e))
    })?;
    Ok(host_node(ino, &md, e, &names))
}

/// `before` with what its host file's `md` says now: times, size, link
/// and block counts. What came from xattrs stays `before`'s.
pub(crate) fn refreshed(before: &Node, md: &Metadata) -> Node {
    let mut entry = before.entry.clone();
    entry.mtime_ns = ns(md.mtime(), md.mtime_nsec());
    entry.nlink = md.nlink() as u32;
    if entry.kind == Kind::Regular {
        entry.size = md.size();
    }
    Node {
        redirect: before.redirect.clone(),
        overridden: before.overridden,
        ..host_node(before.ino, md, entry, &[])
    }
}

/// The node `entry` makes with the host inode's times and block count,
/// for a host file whose xattrs are `names`. A file copied up
/// block by block counts its layer's bytes as used: its holes are data,
/// and a sparse-aware reader (tar's, GNU tar --sparse) that sees fewer
/// blocks than bytes looks for holes, or with none at all reads nothing.
fn host_node(ino: u64, md: &Metadata, entry: Entry, names: &[Vec<u8>]) -> Node {
    let mut blocks = md.blocks();
    if has(names, crate::partial::PARTIAL_XATTR) {
        blocks = blocks.max(entry.size.div_ceil(512));
    }
    Node {
        ino,
        atime_ns: ns(md.atime(), md.atime_nsec()),
        ctime_ns: ns(md.ctime(), md.ctime_nsec()),
        blocks,
        entry,
        redirect: None,
        chunk_ends: None,
        overridden: false,
    }
}

/// The stable inode number of a lower's host file on device `dev`.
fn lower_ino(dev: u64, ino: u64) -> u64 {
    let dev_tag = (dev ^ (dev >> 22)) & ((1 << 22) - 1);
    ino_tag::HOST_DIR | dev_tag << 40 | (ino & ino_tag::HOST_INO_MASK)
}

/// A `.wh.` file or a marker: the layer's bookkeeping, no file of the
/// container.
fn is_bookkeeping(name: &[u8]) -> bool {
    hidden_name(name).is_some() || is_marker(name)
}

/// Opens a host file for reading without following a final symlink.
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens the file at container path `path` under `root` for reading, one
/// name at a time, none followed if it is a symlink: a symlink anywhere
/// on the way fails the open (ELOOP, or ENOTDIR where a directory was)
/// instead of leading out of `root`, as one a running container swaps in
/// for a directory of its upper would lead a reader of that upper out to
/// the host. No path handed to the kernel is longer than one name.
pub fn open_beneath(root: &Path, path: &[u8]) -> io::Result<File> {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    let base = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let mut at: OwnedFd = openat(CWD, root, base | OFlags::DIRECTORY, Mode::empty())?;
    let mut names = path
        .split(|&b| b == b'/')
        .filter(|n| !n.is_empty())
        .peekable();
    while let Some(name) = names.next() {
        if name == b"." || name == b".." {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let flags = match names.peek() {
            Some(_) => base | OFlags::DIRECTORY,
            None => base,
        };
        at = openat(&at, OsStr::from_bytes(name), flags, Mode::empty())?;
    }
    Ok(File::from(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_lower_s_hardlinks_from_link_counts_are_those_its_nodes_show() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["a/deep", "b"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("a/deep/one"), "1").expect("write");
        std::fs::hard_link(root.join("a/deep/one"), root.join("b/one")).expect("link");
        std::fs::hard_link(root.join("a/deep/one"), root.join("one")).expect("link");
        std::fs::write(root.join("a/two"), "2").expect("write");
        std::fs::hard_link(root.join("a/two"), root.join("b/two")).expect("link");
        std::fs::write(root.join("single"), "s").expect("write");
        symlink("single", root.join("b/link")).expect("symlink");
        // A whiteout hides no file: not a name of anything.
        std::fs::write(root.join("b/.wh.gone"), "").expect("whiteout");
        std::fs::hard_link(root.join("b/.wh.gone"), root.join("b/.wh.also")).expect("link");
        let lower = DirLower::new(root);
        let by_entries = lower.hardlinks().expect("hardlinks");
        assert_eq!(
            by_entries,
            crate::lower::hardlinks_by_stat(&lower).expect("by stat")
        );
        let mut names: Vec<_> = by_entries.into_values().collect();
        names.sort();
        assert_eq!(
            names,
            [
                vec![b"a/deep/one".to_vec(), b"b/one".to_vec(), b"one".to_vec()],
                vec![b"a/two".to_vec(), b"b/two".to_vec()],
            ]
        );
    }

    #[test]
    fn a_directory_is_reread_from_its_stat_alone_whatever_shows_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["plain", "overridden"] {
            std::fs::create_dir(root.join(d)).expect("mkdir");
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        xattr::set(&root.join("overridden"), OVERRIDE_STAT, b"0:0:0755:dir", 0)
            .expect("a filesystem with user xattrs");
        let upper = DirLower::upper(root, None);
        let node = |d: &str| {
            upper
                .lstat_node(d.as_bytes())
                .expect("stat")
                .expect("a dir")
        };
        let (plain, overridden) = (node("plain"), node("overridden"));
        assert_eq!(overridden.entry.mode, 0o755);
        assert!(overridden.overridden && !plain.overridden);
        // A new file changes both directories' times, not what shows them:
        // the rootless format's directory was resolved in full again for
        // each file an untar made in it.
        for d in ["plain", "overridden"] {
            std::fs::write(root.join(d).join("new"), "").expect("write");
        }
        let again = upper.reread(b"overridden", &overridden).expect("stat");
        let again = again.expect("reread, its owner and mode from the override");
        assert_eq!(again.entry.mode, 0o755);
        assert!(again.overridden);
        assert!(upper.reread(b"plain", &plain).expect("stat").is_some());
        // A host chmod from outside changes what the host-shown one shows.
        for d in ["plain", "overridden"] {
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o750))
                .expect("chmod");
        }
        assert!(upper.reread(b"plain", &plain).expect("stat").is_none());
        assert!(upper
            .reread(b"overridden", &overridden)
            .expect("stat")
            .is_some());
    }
}
