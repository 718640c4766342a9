//! The stack a mount serves: the optional writable upper (layer 0 when
//! present, read back through [`DirLower`]) over the read-only lowers.

use crate::cached_lower::CachedLower;
use crate::dir_lower::DirLower;
use crate::error::{FsError, Result};
use crate::handles::OpenFile;
use crate::lower::Lower;
use crate::partial::{PartialFile, Partials};
use crate::resolution_cache::ResolutionCache;
use crate::union::{self, Resolved};
use crate::upper::Upper;
use crate::upper_format::UpperFormat;
use crate::walk_ahead::WalkAhead;
use layerdb::split_path;
use nix::errno::Errno;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// The stack a mount serves: an optional writable upper over read-only lowers,
/// with the resolution of paths through them and copy-up into the upper.
pub struct Layers {
    upper: Option<(Upper, DirLower)>,
    lowers: Vec<Arc<CachedLower>>,
    /// Directories resolved before; the upper invalidates what it changes.
    dirs: Arc<ResolutionCache>,
    /// Reads the lowers' listings of directories a walk will list next.
    walk_ahead: WalkAhead,
    /// Upper files copied up block by block that are open.
    partials: Partials,
}

impl Layers {
    /// `lowers` top first.
    pub fn new(upper: Option<&Path>, lowers: Vec<Box<dyn Lower>>) -> Result<Layers> {
        Layers::with_format(upper, lowers, None)
    }

    /// Like [`Layers::new`], writing the upper in `format` (`None`: the
    /// one the server's privileges allow).
    pub fn with_format(
        upper: Option<&Path>,
        lowers: Vec<Box<dyn Lower>>,
        format: Option<UpperFormat>,
    ) -> Result<Layers> {
        let dirs = Arc::new(ResolutionCache::default());
        let upper = match upper {
            Some(root) => {
                let format = format.unwrap_or_else(UpperFormat::detect);
                let upper = Upper::open_as(root, dirs.clone(), format)?;
                let view = DirLower::upper(upper.root(), Some(upper.device_whiteouts()));
                Some((upper, view))
            }
            None => None,
        };
        let lowers: Vec<Arc<CachedLower>> = lowers
            .into_iter()
            .map(|l| Arc::new(CachedLower::new(l)))
            .collect();
        let walk_ahead = WalkAhead::start(lowers.clone());
        let layers = Layers {
            upper,
            lowers,
            dirs,
            walk_ahead,
            partials: Partials::default(),
        };
        layers.init_upper_root()?;
        Ok(layers)
    }

    /// A fresh upper's root takes the owner, mode and xattrs of the
    /// image's root, as a copied-up directory would (containers-storage
    /// gives an overlay upper its parent's root the same way); otherwise
    /// the host directory's own (0700, the server's owner) would show.
    fn init_upper_root(&self) -> Result<()> {
        let Some((upper, _)) = &self.upper else {
            return Ok(());
        };
        if !upper.root_needs_meta()? {
            return Ok(());
        }
        let lowers: Vec<&dyn Lower> = self.lowers.iter().map(|l| l.as_ref() as _).collect();
        match union::resolve_root(&lowers)? {
            Some(r) => {
                upper.write_meta(b"", &r.node.entry, None)?;
                upper.mark_root()
            }
            None => Ok(()),
        }
    }

    /// Every layer, top first: the upper (as read back) when there is one, then
    /// the lowers.
    pub fn stack(&self) -> Vec<&dyn Lower> {
        let mut s: Vec<&dyn Lower> = Vec::with_capacity(self.lowers.len() + 1);
        if let Some((_, view)) = &self.upper {
            s.push(view);
        }
        s.extend(self.lowers.iter().map(|l| l.as_ref() as &dyn Lower));
        s
    }

    /// The writable upper, or EROFS for a read-only stack.
    pub fn upper(&self, path: &[u8]) -> Result<&Upper> {
        self.upper
            .as_ref()
            .map(|(u, _)| u)
            .ok_or_else(|| FsError::posix(Errno::EROFS, path))
    }

    /// Whether there is a writable upper.
    pub fn has_upper(&self) -> bool {
        self.upper.is_some()
    }

    /// True when `r` is served by the upper.
    pub fn in_upper(&self, r: &Resolved) -> bool {
        self.upper.is_some() && r.layer == 0
    }

    /// Resolves `path` from its nearest remembered ancestor directory
    /// (see `ResolutionCache`); the node itself is always read fresh, a
    /// remembered upper directory by one host stat.
    pub fn resolve(&self, path: &[u8]) -> Result<Option<Resolved>> {
        let mut found = self.dirs.nearest(path);
        if let Some((_, r)) = found.take_if(|(end, _)| *end == path.len()) {
            if let Some(r) = self.reread_upper(r)? {
                return Ok(Some(r));
            }
            // Not the upper's, or changed: read afresh from its parent.
            found = self.dirs.nearest_ancestor(path);
        }
        let stack = self.stack();
        let (mut end, mut cur) = match found {
            Some(found) => found,
            None => {
                let Some(root) = union::resolve_root(&stack)? else {
                    return Ok(None);
                };
                self.dirs.insert(b"", &root);
                (0, root)
            }
        };
        while end < path.len() {
            if !cur.is_dir() {
                return Ok(None);
            }
            let start = if end == 0 { 0 } else { end + 1 };
            end = path[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| start + i);
            match union::resolve_child(&stack, &cur, &path[..end])? {
                Some(r) => cur = r,
                None => return Ok(None),
            }
            if cur.is_dir() {
                self.dirs.insert(&path[..end], &cur);
            }
        }
        Ok(Some(cur))
    }

    /// A directory or regular file the upper serves, its host attributes
    /// read again (see `DirLower::reread`); None where only a full
    /// resolution tells. Resolved afresh a remembered directory cost a
    /// stat, an xattr listing, the probe for an opaque marker and the read
    /// of its stable inode number: a GETATTR of the parent after every
    /// unlink in an `rm -rf` (the kernel asks, `default_permissions`), and
    /// the parent of every file an untar creates. What its xattrs say
    /// changes only through `Upper`, which forgets the directory first
    /// (see `ResolutionCache`).
    pub fn reread_upper(&self, mut r: Resolved) -> Result<Option<Resolved>> {
        let Some((_, view)) = self.upper.as_ref().filter(|_| r.layer == 0) else {
            return Ok(None);
        };
        let Some(node) = view.reread(&r.path, &r.node)? else {
            return Ok(None);
        };
        r.node = node;
        Ok(Some(r.settle_nlink()))
    }

    /// The resolution of the regular file CREATE just made at `path` in
    /// the upper, read through `file`, open on it: what [`Layers::get`]
    /// gives a file of the upper (its parent's merge set holds the upper
    /// first, and a non-directory merges nothing), without walking the
    /// host path for each of its stat and xattr calls.
    pub fn new_file(&self, path: &[u8], file: &File) -> Result<Resolved> {
        let (_, view) = self
            .upper
            .as_ref()
            .ok_or_else(|| FsError::posix(Errno::EROFS, path))?;
        let node = view.new_file_node(path, file)?;
        Ok(Resolved::single(0, path.to_vec(), node))
    }

    /// What the name at `path` in directory `dir` shows, and which layer's
    /// whiteout hides it (see [`union::child`]).
    pub fn child(&self, dir: &Resolved, path: &[u8]) -> Result<union::Child> {
        union::child(&self.stack(), dir, path)
    }

    /// Forgets remembered resolutions at and under `path`, for a change
    /// made to the upper other than through `Upper`'s own methods.
    pub fn invalidate(&self, path: &[u8]) {
        self.dirs.invalidate(path);
    }

    /// Like [`Layers::resolve`] but a missing path is ENOENT.
    pub fn get(&self, path: &[u8]) -> Result<Resolved> {
        self.resolve(path)?
            .ok_or_else(|| FsError::posix(Errno::ENOENT, path))
    }

    /// The directory `path` must be, or ENOENT/ENOTDIR.
    pub fn get_dir(&self, path: &[u8]) -> Result<Resolved> {
        let r = self.get(path)?;
        if !r.is_dir() {
            return Err(FsError::posix(Errno::ENOTDIR, path));
        }
        Ok(r)
    }

    /// True when a layer below the upper shows something at `path`: then
    /// removing it from the upper needs a whiteout.
    pub fn lower_has(&self, path: &[u8]) -> Result<bool> {
        let Some(mut dir) = self.parent_of(path)? else {
            return Ok(false);
        };
        if !dir.is_dir() {
            return Ok(false);
        }
        if self.has_upper() {
            dir.dir_layers.retain(|d| d.layer != 0);
        }
        Ok(union::resolve_child(&self.stack(), &dir, path)?.is_some())
    }

    /// The directory holding `path`, as remembered (only its shape is
    /// relied on: see `ResolutionCache`) or else resolved now. A removal
    /// asks for it twice (does a lower have the name, is the directory in
    /// the upper): resolving it afresh cost four host calls each time.
    fn parent_of(&self, path: &[u8]) -> Result<Option<Resolved>> {
        let (parent, _) = split_path(path);
        match self.dirs.nearest_ancestor(path) {
            Some((end, dir)) if end == parent.len() => Ok(Some(dir)),
            _ => self.resolve(parent),
        }
    }

    /// The directory holding `path`, copied up unless the upper holds it
    /// already. One the upper holds is taken as remembered (see
    /// `parent_of`): what a new node takes from its directory (owner,
    /// mode, default ACL) changes only through `Upper`, which forgets it.
    /// Reading it again cost every CREATE and MKDIR of an untar a stat.
    pub fn copy_up_parent(&self, path: &[u8]) -> Result<Resolved> {
        if let Some(dir) = self.parent_of(path)?.filter(|d| self.in_upper(d)) {
            return Ok(dir);
        }
        self.copy_up(split_path(path).0, true)
    }

    /// The merged listing of a directory.
    pub fn list(&self, dir: &Resolved, path: &[u8]) -> Result<Vec<(Vec<u8>, Resolved)>> {
        union::list(&self.stack(), dir, path)
    }

    /// A walk just listed `children`: read the lower directories merged
    /// into its subdirectories in the background (see `crate::walk_ahead`).
    pub fn read_ahead(&self, children: &[(Vec<u8>, Resolved)]) {
        let first_lower = usize::from(self.has_upper());
        let dirs = children
            .iter()
            .flat_map(|(_, r)| &r.dir_layers)
            .filter(|d| d.layer >= first_lower)
            .map(|d| (d.layer - first_lower, d.path.clone()))
            .collect();
        self.walk_ahead.queue(dirs);
    }

    /// Opens `path`, resolved as `r`, for reading: a host file where the
    /// layer has one, else reads go through the layer. `backs_node`: see
    /// [`OpenFile::Host`].
    pub(crate) fn open_read(
        &self,
        path: &[u8],
        r: &Resolved,
        backs_node: bool,
    ) -> Result<OpenFile> {
        let layer = self
            .layer(r.layer)
            .ok_or_else(|| FsError::posix(Errno::EIO, path))?;
        if self.in_upper(r) {
            let file = self.upper(path)?.open_file(&r.path, libc::O_RDONLY)?;
            return self.upper_open_file(file, libc::O_RDONLY, path);
        }
        // The layer keeps the file under its own path (see `Resolved::path`).
        Ok(match layer.host_path(&r.path) {
            Some(host) => OpenFile::Host {
                file: crate::dir_lower::open_no_follow(&host)
                    .map_err(|e| FsError::io("open", path, e))?,
                writable: false,
                backs_node,
            },
            None => OpenFile::Layer {
                layer: r.layer,
                path: r.path.clone(),
                node: Box::new(r.node.clone()),
            },
        })
    }

    /// Upper file `file`, opened at `path` with `flags`, as an open file:
    /// one copied up block by block is read through its record.
    pub(crate) fn upper_open_file(&self, file: File, flags: i32, path: &[u8]) -> Result<OpenFile> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let partial = match self.partial(&file, writable, path)? {
            // The open emptied it: nothing comes from the layer any more.
            Some(p) if flags & libc::O_TRUNC != 0 => p.truncate(&file, 0).map(|()| None)?,
            p => p,
        };
        Ok(match partial {
            None => OpenFile::Host {
                file,
                writable,
                backs_node: true,
            },
            Some(partial) => OpenFile::Partial {
                file,
                writable,
                appends: flags & libc::O_APPEND != 0,
                partial,
            },
        })
    }

    /// The state of upper file `file` if it was copied up block by block
    /// and is not whole yet.
    pub(crate) fn partial(
        &self,
        file: &File,
        writable: bool,
        path: &[u8],
    ) -> Result<Option<Arc<PartialFile>>> {
        self.partials.of(file, (&self.lowers, writable), path)
    }

    /// Truncates (or extends) upper file `file`, and its record if it was
    /// copied up block by block.
    pub(crate) fn truncate(&self, file: &File, size: u64, path: &[u8]) -> Result<()> {
        match self.partial(file, true, path)? {
            Some(p) => p.truncate(file, size),
            None => file
                .set_len(size)
                .map_err(|e| FsError::io("truncate", path, e)),
        }
    }

    /// Layer `i` of [`Layers::stack`] (top is 0).
    pub fn layer(&self, i: usize) -> Option<&dyn Lower> {
        self.stack().get(i).copied()
    }
}
