//! `fuser::Filesystem` for [`UnionFs`]: each method converts arguments,
//! calls the core and replies. The one place that sees fuser's numbers:
//! node ids and file handles become [`NodeId`] and [`FileHandle`] here.
//! Every error is answered through [`errno`] (`FsError::errno`, the one
//! table); the only other errnos are FUSE protocol answers
//! ([`NOT_SERVED`], and ERANGE for a too small xattr buffer).

use crate::big_reads::{BigReads, BIG_READ};
use crate::error::FsError;
use crate::ids::{FileHandle, NodeId};
use crate::lower::Node;
use crate::passthrough::{Host, Passthrough, Route};
use crate::union_fs::{Attr, Caller, SetAttr, UnionFs, Writer};
use crate::upper::TimeSet;
use crate::view::{IdMap, View};
use fuser::{
    AccessFlags, BackingId, CopyFileRangeFlags, Errno, FileAttr, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use layerdb::Kind;
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Adapter {
    /// Shared with the workers of big READs (`crate::big_reads`).
    fs: Arc<UnionFs>,
    big_reads: BigReads,
    /// How long the kernel may cache names and attributes. Long on every
    /// mount, as fuse-overlayfs does: all changes go through this mount
    /// (the upper is the mount's own; nothing else may write it while it is
    /// mounted), and the kernel invalidates what its own requests change.
    ttl: Duration,
    /// Whether to ask the kernel for passthrough at FUSE_INIT.
    want_passthrough: bool,
    /// Whether to ask the kernel for FUSE over io_uring at FUSE_INIT.
    want_io_uring: bool,
    /// The kernel agreed to FUSE_HANDLE_KILLPRIV_V2: it flags each WRITE
    /// whose caller lacks CAP_FSETID and clears no bits itself.
    server_clears_set_id: bool,
    passthrough: Passthrough,
    /// Owners, link counts and options as the kernel is shown them.
    view: View,
    /// `view.gids` where it maps group ids, for each request's writer.
    gid_map: Option<Arc<IdMap>>,
}

/// See [`Adapter::ttl`]; a day, which the kernel treats as "until changed".
const ENTRY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The answer to a request this server leaves to the kernel (OPEN without
/// passthrough, OPENDIR, FLUSH, FSYNC with `fsync=0`, xattrs with
/// `noxattrs`): the kernel then stops sending it. A protocol answer, not
/// an error, so not in `FsError`'s table.
const NOT_SERVED: Errno = Errno::ENOSYS;

/// Why an open for writing or a truncation is refused with ETXTBSY while
/// passthrough readers hold the node's lower file.
const COPY_UP_WOULD_STRAND: &str =
    "open through passthrough on a lower file: a copy-up now would leave its readers on it";

/// Why an open is refused with ETXTBSY: the kernel holds the node open
/// through passthrough on another host file, and one inode has one.
const BACKED_BY_ANOTHER_FILE: &str = "open through passthrough on another host file";

/// A request passthrough's rules refuse (see `crate::passthrough`).
fn busy(node: NodeId, reason: &'static str) -> FsError {
    FsError::Busy { node, reason }
}

impl Adapter {
    /// Passes files of at least `passthrough_min_size` bytes through when
    /// `want_passthrough` and the kernel allows (see `crate::passthrough`).
    pub fn new(fs: UnionFs, want_passthrough: bool, passthrough_min_size: u64) -> Adapter {
        Adapter {
            fs: Arc::new(fs),
            big_reads: BigReads::default(),
            ttl: ENTRY_TTL,
            want_passthrough,
            want_io_uring: false,
            server_clears_set_id: false,
            passthrough: Passthrough::new(passthrough_min_size),
            view: View::default(),
            gid_map: None,
        }
    }

    /// Serves requests through io_uring where the kernel offers it.
    pub fn with_io_uring(mut self, want: bool) -> Adapter {
        self.want_io_uring = want;
        self
    }

    /// Shows the union through `view` (fuse-overlayfs's id and
    /// attribute options).
    pub fn with_view(mut self, view: View) -> Adapter {
        self.gid_map = (!view.gids.ranges.is_empty()).then(|| Arc::new(view.gids.clone()));
        self.view = view;
        self
    }

    /// The attributes the kernel is shown for `node`.
    fn file_attr(&self, id: NodeId, node: &Node) -> FileAttr {
        let mut a = file_attr(id, node);
        a.uid = self.view.uids.shown(a.uid);
        a.gid = self.view.gids.shown(a.gid);
        if self.view.static_nlink && a.kind == FileType::Directory {
            a.nlink = 1;
        }
        a
    }

    fn to_attr(&self, a: &Attr) -> FileAttr {
        self.file_attr(a.id, &a.node)
    }

    /// The writer of a request, for the set-id rules, whether its caller
    /// lacks CAP_FSETID asked of /proc when a set-id file changes (see
    /// [`Writer::lacks_fsetid`]). An id the mapping does not cover becomes
    /// -1, which owns no file and names no group (the overflow id it would
    /// be stored as owns every file stored as 65534).
    fn writer(&self, req: &Request) -> Writer {
        Writer {
            uid: self.view.uids.mapped(req.uid()).unwrap_or(u32::MAX),
            gid: self.view.gids.mapped(req.gid()).unwrap_or(u32::MAX),
            pid: req.pid(),
            lacks_fsetid: None,
            gid_map: self.gid_map.clone(),
        }
    }

    /// How the kernel is to write a file CREATE made and opened with
    /// `flags`. Opened write-only, as tar, cp and dpkg open what they
    /// unpack: straight to the server (FOPEN_DIRECT_IO), one WRITE per
    /// `write(2)`. Through the page cache (no writeback cache, see
    /// docs/design.md "Untar") a write that starts inside a page the
    /// kernel does not hold is sent as two (2,048 + 8,192 bytes for each
    /// of tar's 10 KiB records): the untar of the Debian `usr` tree made
    /// 24,500 WRITEs for 15,518 writes. A write-only descriptor can
    /// neither read nor be mapped, so it gives up no caching; the kernel
    /// drops cached pages of the file that a direct write changes. Only
    /// where the server clears set-id bits itself (KILLPRIV_V2): the
    /// kernel leaves a direct write's set-id bits and file capabilities
    /// to the server (see `UnionFs::write`).
    fn new_file_open_flags(&self, flags: i32) -> FopenFlags {
        match self.server_clears_set_id && flags & libc::O_ACCMODE == libc::O_WRONLY {
            true => FopenFlags::FOPEN_DIRECT_IO,
            false => FopenFlags::empty(),
        }
    }

    /// The writer of a WRITE, `flagged` FUSE_WRITE_KILL_SUIDGID or not.
    /// Under FUSE_HANDLE_KILLPRIV_V2 the kernel's flag says it all: it
    /// flags a caller without CAP_FSETID. Without it, the kernel clears
    /// bits before a write(2) itself and the union asks /proc for the
    /// rest. Either way a shared mapping's pages written back come with no
    /// caller (pid 0) and change no bits, as on a local filesystem.
    fn write_writer(&self, req: &Request, flagged: bool) -> Writer {
        let lacks_fsetid = match (self.server_clears_set_id, req.pid()) {
            (true, _) => Some(flagged),
            (false, 0) => Some(false),
            (false, _) => None,
        };
        Writer {
            lacks_fsetid,
            ..self.writer(req)
        }
    }

    /// The caller of a request, with its ids as the union stores them.
    fn caller(&self, req: &Request, umask: u32) -> Caller {
        Caller {
            uid: self.view.uids.stored(req.uid()),
            gid: self.view.gids.stored(req.gid()),
            umask,
        }
    }

    /// How the kernel does the I/O of handle `fh` just opened (`writes`: for
    /// writing or truncating); `generation` is the tree's before the open. A cached
    /// route's handle is closed: the caller answers with no handle, and I/O
    /// goes through the node's current file (see `crate::node_files`).
    fn route(
        &self,
        id: NodeId,
        (fh, generation): (FileHandle, u64),
        writes: bool,
        open_backing: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Route {
        let current = self.fs.tree_generation() == generation;
        let route = self.fs.with_backing_file(fh, |host| {
            let host = host.map(|(file, replaceable)| Host {
                file,
                replaceable,
                current,
            });
            self.passthrough.route(id, fh, !writes, host, open_backing)
        });
        if !matches!(route, Route::Passthrough(_)) {
            self.fs.release(fh);
        }
        route
    }

    /// Replies with a new entry (the kernel takes a reference) or the errno.
    fn reply_entry(&self, op: &str, r: Result<Attr, FsError>, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(&self.ttl, &self.to_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(op, &e)),
        }
    }

    /// Replies with attributes or the errno.
    fn reply_attr(&self, op: &str, r: Result<Attr, FsError>, reply: ReplyAttr) {
        match r {
            Ok(a) => reply.attr(&self.ttl, &self.to_attr(&a)),
            Err(e) => reply.error(errno(op, &e)),
        }
    }
}

/// The errno a failed operation replies with; faults are logged once here.
fn errno(op: &str, e: &FsError) -> Errno {
    if e.is_fault() {
        log::error!("{op}: {e}: {}", source_chain(e));
    } else {
        log::trace!("{op}: {e}");
    }
    Errno::from_i32(e.errno())
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&s.to_string());
        out.push_str("; ");
        cur = s.source();
    }
    out
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::CharDev | Kind::Whiteout => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::Regular | Kind::Hardlink => FileType::RegularFile,
    }
}

fn file_attr(id: NodeId, node: &Node) -> FileAttr {
    let e = &node.entry;
    FileAttr {
        ino: id.into(),
        size: e.size,
        blocks: node.blocks,
        atime: time(node.atime_ns),
        mtime: time(e.mtime_ns),
        ctime: time(node.ctime_ns),
        crtime: time(e.mtime_ns),
        kind: file_type(e.kind),
        perm: (e.mode & 0o7777) as u16,
        // 0 only for a file unlinked while open, as fstat must show it.
        nlink: e.nlink,
        uid: e.uid,
        gid: e.gid,
        rdev: libc::makedev(e.rdev.0, e.rdev.1) as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// Replies to a request that succeeds with nothing to say.
fn reply_empty(op: &str, r: Result<(), FsError>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

fn reply_data(op: &str, r: Result<Vec<u8>, FsError>, reply: ReplyData) {
    match r {
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(errno(op, &e)),
    }
}

fn time_set(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(st) => TimeSet::At(match st.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        }),
    })
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Optional speed-ups; the kernel may refuse them.
        // READDIRPLUS for every listing request, not only the first of a
        // directory (what READDIRPLUS_AUTO does when no lookup came in
        // between): a directory bigger than one 32 KiB reply (~190
        // entries) otherwise has the rest of its entries listed bare and
        // looked up one round trip each (424 LOOKUPs in a cold `du` of
        // the Debian rootfs). The server has every entry's attributes
        // when it lists anyway.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        // The kernel keeps ACLs and checks permissions against them (see
        // `crate::acl`), so a walk asks for each file's ACL once, not on
        // every `ls -l`; with DONT_MASK the umask comes to the server,
        // which must not apply it where a default ACL does.
        let _ = config.add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK);
        // A symlink's target never changes: the kernel may keep it.
        let _ = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS);
        // Node ids live only as long as the kernel remembers them, so a
        // file handle could not be decoded once it forgot the node: the
        // kernel refuses to encode any (name_to_handle_at gives
        // EOPNOTSUPP), as kernel overlayfs does without nfs_export.
        let _ = config.add_capabilities(InitFlags::FUSE_NO_EXPORT_SUPPORT);
        // The server clears set-id bits on write, chown and truncate (see
        // `SetAttr::clearing_set_id`, `Writer::clears_set_id`, and
        // `UnionFs::on_set_id_cleared` for the kernel's cached mode), so the
        // kernel neither asks a GETATTR before each chown nor, once it has
        // seen a file without security.capability (SB_NOSEC), a GETXATTR
        // before each write(2): an untar of the Debian usr tree went from
        // 86,000 requests to 70,000 (docs/design.md, "Untar"). Not with
        // passthrough: a passthrough write never reaches the server, so
        // only the kernel can clear the bits it changes.
        if !self.want_passthrough
            && config
                .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
                .is_ok()
        {
            self.server_clears_set_id = true;
        }
        // Requests and replies through io_uring queues, one per CPU, where
        // the kernel offers it (see `MountOptions::io_uring`). Each queue
        // entry's payload buffer must hold max_write bytes: fuser's 16 MiB
        // default is more than the kernel ever sends (at most max_pages,
        // 256 pages by default), so 1 MiB, which is what it sends.
        if self.want_io_uring
            && config
                .add_capabilities(InitFlags::FUSE_OVER_IO_URING)
                .is_ok()
        {
            let _ = config.set_max_write(1 << 20);
        }
        // Stack depth 1: backing files may not live on a stacked filesystem
        // (overlayfs); those opens fall back to the server. It keeps this
        // mount usable as a layer of an overlayfs.
        if self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough.enable();
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.reply_entry(
            "lookup",
            self.fs.lookup(NodeId::from(parent), name.as_bytes()),
            reply,
        )
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(NodeId::from(ino), nlookup);
    }

    fn getattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: Option<fuser::FileHandle>,
        reply: ReplyAttr,
    ) {
        self.reply_attr("getattr", self.fs.getattr(NodeId::from(ino)), reply)
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<fuser::FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let id = NodeId::from(ino);
        if size.is_some() && self.passthrough.refuses_write(id) {
            return reply.error(errno("setattr", &busy(id, COPY_UP_WOULD_STRAND)));
        }
        let sa = SetAttr {
            mode,
            uid: uid.map(|u| self.view.uids.stored(u)),
            gid: gid.map(|g| self.view.gids.stored(g)),
            size,
            atime: time_set(atime),
            mtime: time_set(mtime),
            by: Some(self.writer(req)),
        };
        self.reply_attr("setattr", self.fs.setattr(id, &sa), reply)
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        reply_data("readlink", self.fs.readlink(NodeId::from(ino)), reply)
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.reply_entry(
            "mknod",
            self.fs.mknod(
                NodeId::from(parent),
                name.as_bytes(),
                mode & (libc::S_IFMT | 0o7777),
                rdev,
                self.caller(req, umask),
            ),
            reply,
        )
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.reply_entry(
            "mkdir",
            self.fs.mkdir(
                NodeId::from(parent),
                name.as_bytes(),
                mode & 0o7777,
                self.caller(req, umask),
            ),
            reply,
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            "unlink",
            self.fs.unlink(NodeId::from(parent), name.as_bytes()),
            reply,
        )
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            "rmdir",
            self.fs.rmdir(NodeId::from(parent), name.as_bytes()),
            reply,
        )
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.reply_entry(
            "symlink",
            self.fs.symlink(
                NodeId::from(parent),
                link_name.as_bytes(),
                target.as_os_str().as_bytes(),
                self.caller(req, 0),
            ),
            reply,
        )
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            "rename",
            self.fs.rename(
                NodeId::from(parent),
                name.as_bytes(),
                NodeId::from(newparent),
                newname.as_bytes(),
                flags.bits(),
            ),
            reply,
        )
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.reply_entry(
            "link",
            self.fs.link(
                NodeId::from(ino),
                NodeId::from(newparent),
                newname.as_bytes(),
            ),
            reply,
        )
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let id = NodeId::from(ino);
        if !self.passthrough.is_enabled() || !self.passthrough.probe(|fd| reply.open_backing(fd)) {
            // ENOSYS: the kernel sends no OPEN or RELEASE for existing files
            // again, keeps their pages (all writes go through it) and names
            // the node in each READ or WRITE; see `crate::node_files`. A
            // warm tar of the Debian rootfs: 0.42 s with OPENs, 0.15 s
            // without (kernel overlayfs 0.16 s).
            return reply.error(NOT_SERVED);
        }
        let writes = flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        if writes && self.passthrough.refuses_write(id) {
            return reply.error(errno("open", &busy(id, COPY_UP_WOULD_STRAND)));
        }
        // A set-id file goes through the server whatever its size (and
        // whatever the threshold, 0 included): a write by a user outside
        // its group must clear S_ISGID, which the kernel leaves to the
        // server (see `UnionFs::write`).
        let size = match self.fs.getattr(id) {
            Ok(a) if a.node.entry.mode & (libc::S_ISUID | libc::S_ISGID) != 0 => None,
            Ok(a) => Some(a.node.entry.size),
            Err(e) => return reply.error(errno("open", &e)),
        };
        // A small file opens with no host file at all: no handle, the
        // cheapest OPEN there is.
        let cached = match self.passthrough.wants(id, size) {
            false => self.passthrough.open_cached(id),
            true => None,
        };
        let route = match cached {
            Some(route) => route,
            None => {
                let generation = self.fs.tree_generation();
                let fh = match self.fs.open(id, flags.0) {
                    Ok((fh, _)) => fh,
                    Err(e) => return reply.error(errno("open", &e)),
                };
                match self.route(id, (fh, generation), writes, |fd| reply.open_backing(fd)) {
                    Route::Passthrough(backing) => {
                        return reply.opened_passthrough(
                            FileHandle::to_fuser(Some(fh)),
                            FopenFlags::empty(),
                            &backing,
                        )
                    }
                    route => route,
                }
            }
        };
        match route {
            // As the kernel keeps pages without OPEN: every change goes
            // through it, and a passthrough open drops them.
            Route::Cached => reply.opened(FileHandle::to_fuser(None), FopenFlags::FOPEN_KEEP_CACHE),
            Route::Conflict | Route::Passthrough(_) => {
                reply.error(errno("open", &busy(id, BACKED_BY_ANOTHER_FILE)))
            }
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        // Without passthrough OPEN is answered ENOSYS, and the kernel then
        // sends no RELEASE at all: no handle (see `UnionFs::create`). With
        // it a new file is passed through, whatever the threshold, as it may
        // be written big (a 1 GiB `dd` to a new file: 1162 MiB/s through
        // passthrough, 394 through the server); opened again, it goes by
        // its size.
        let handle = self.passthrough.is_enabled();
        let generation = self.fs.tree_generation();
        let (a, fh) = match self.fs.create(
            NodeId::from(parent),
            name.as_bytes(),
            mode & 0o7777,
            (flags, handle),
            self.caller(req, umask),
        ) {
            Ok(created) => created,
            Err(e) => return reply.error(errno("create", &e)),
        };
        let attr = self.to_attr(&a);
        let g = Generation(a.generation);
        let route = if let Some(fh) = fh {
            // An upper file: no copy-up can replace it, so the tree may
            // have changed around the create (as the create itself did).
            self.route(a.id, (fh, generation), true, |fd| reply.open_backing(fd))
        } else if self.passthrough.is_enabled() {
            // Counted, as the kernel will send a RELEASE for it.
            self.passthrough
                .open_cached(a.id)
                .unwrap_or(Route::Conflict)
        } else {
            Route::Cached
        };
        match route {
            Route::Passthrough(backing) => reply.created_passthrough(
                &self.ttl,
                &attr,
                g,
                FileHandle::to_fuser(fh),
                FopenFlags::empty(),
                &backing,
            ),
            Route::Cached => reply.created(
                &self.ttl,
                &attr,
                g,
                FileHandle::to_fuser(None),
                self.new_file_open_flags(flags),
            ),
            Route::Conflict => reply.error(errno("create", &busy(a.id, BACKED_BY_ANOTHER_FILE))),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let read = move |fs: &UnionFs, reply: ReplyData| {
            reply.read_into(size as usize, |buf| {
                fs.read_into(NodeId::from(ino), FileHandle::from_fuser(fh), offset, buf)
                    .map_err(|e| errno("read", &e))
            })
        };
        if size < BIG_READ {
            return read(&self.fs, reply);
        }
        let fs = self.fs.clone();
        if let Err(job) = self.big_reads.offer(Box::new(move || read(&fs, reply))) {
            job();
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.fs.write(
            NodeId::from(ino),
            FileHandle::from_fuser(fh),
            offset,
            data,
            &self.write_writer(req, kill),
        ) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: fuser::FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes go straight to the host file: nothing is buffered here.
        // ENOSYS makes the kernel stop sending a FLUSH with every close.
        reply.error(NOT_SERVED);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fh = FileHandle::from_fuser(fh);
        self.passthrough.release(NodeId::from(ino), fh);
        if let Some(fh) = fh {
            self.fs.release(fh);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        if !self.view.fsync {
            // fsync=0: ENOSYS makes the kernel treat every later fsync as
            // done without asking (fuse-overlayfs answers the same).
            return reply.error(NOT_SERVED);
        }
        reply_empty(
            "fsync",
            self.fs
                .fsync(NodeId::from(ino), FileHandle::from_fuser(fh), datasync),
            reply,
        )
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS: the kernel sends no OPENDIR or RELEASEDIR again and keeps
        // listings itself (FOPEN_CACHE_DIR); every change goes through this
        // mount, and the kernel drops a directory's cached listing when its
        // own requests change the directory. See `crate::listings`.
        reply.error(NOT_SERVED);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: fuser::FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (listing, start) = match self.fs.dir_items(NodeId::from(ino), offset) {
            Ok(l) => l,
            Err(e) => return reply.error(errno("readdir", &e)),
        };
        for (i, it) in listing.items.iter().enumerate().skip(start) {
            if reply.add(
                it.id.into(),
                listing.offset_after(i),
                file_type(it.node.entry.kind),
                OsStr::from_bytes(&it.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: fuser::FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (listing, start) = match self.fs.dir_items(NodeId::from(ino), offset) {
            Ok(l) => l,
            Err(e) => return reply.error(errno("readdirplus", &e)),
        };
        for (i, it) in listing.items.iter().enumerate().skip(start) {
            let attr = self.file_attr(it.id, &it.node);
            if reply.add(
                it.id.into(),
                listing.offset_after(i),
                OsStr::from_bytes(&it.name),
                &self.ttl,
                &attr,
                Generation(self.fs.generation(it.id)),
            ) {
                break;
            }
            // Every entry but . and .. counts as a lookup in the kernel.
            if !it.is_dot && it.id != NodeId::ROOT {
                self.fs.note_lookup(&listing, it);
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                255,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(errno("statfs", &e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.view.xattrs {
            // noxattrs: ENOSYS, and the kernel stops asking.
            return reply.error(NOT_SERVED);
        }
        reply_empty(
            "setxattr",
            self.fs.setxattr(
                NodeId::from(ino),
                name.as_bytes(),
                value,
                flags,
                &self.writer(req),
            ),
            reply,
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.view.xattrs {
            // noxattrs: ENOSYS, and the kernel stops asking.
            return reply.error(NOT_SERVED);
        }
        match self.fs.getxattr(NodeId::from(ino), name.as_bytes()) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(errno("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.view.xattrs {
            // noxattrs: ENOSYS, and the kernel stops asking.
            return reply.error(NOT_SERVED);
        }
        match self.fs.listxattr(NodeId::from(ino)) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(errno("listxattr", &e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.view.xattrs {
            // noxattrs: ENOSYS, and the kernel stops asking.
            return reply.error(NOT_SERVED);
        }
        reply_empty(
            "removexattr",
            self.fs.removexattr(NodeId::from(ino), name.as_bytes()),
            reply,
        )
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(
            "access",
            self.fs.access(NodeId::from(ino), mask.bits()),
            reply,
        )
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            "fallocate",
            self.fs.fallocate(
                (NodeId::from(ino), FileHandle::from_fuser(fh)),
                offset,
                length,
                mode,
                &self.writer(req),
            ),
            reply,
        )
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.fs.lseek(
            NodeId::from(ino),
            FileHandle::from_fuser(fh),
            offset,
            whence,
        ) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno("lseek", &e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: fuser::FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: fuser::FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        match self.fs.copy_file_range(
            (
                NodeId::from(ino_in),
                FileHandle::from_fuser(fh_in),
                offset_in,
            ),
            (
                NodeId::from(ino_out),
                FileHandle::from_fuser(fh_out),
                offset_out,
            ),
            len,
            &self.writer(req),
        ) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno("copy_file_range", &e)),
        }
    }
}

/// getxattr/listxattr protocol: size 0 asks for the length.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
