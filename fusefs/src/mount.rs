//! Starting and stopping a mount server.

use crate::adapter::Adapter;
use crate::error::FsError;
use crate::layers::Layers;
use crate::lower::Lower;
use crate::store_lower::StoreLower;
use crate::union_fs::UnionFs;
use crate::upper_format::UpperFormat;
use fuser::{Config, MountOption, SessionACL};
use layerdb::{ImageRecord, Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Kernel mount flags that take effect from the tree's content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountFlags {
    /// Setuid and setgid bits (and file capabilities) do nothing.
    pub nosuid: bool,
    /// Device nodes cannot be opened.
    pub nodev: bool,
    /// Nothing in the tree can be executed.
    pub noexec: bool,
}

impl MountFlags {
    /// `nosuid,nodev`: for trees one may not trust (inspection mounts of
    /// images, a copy's helper working as the host's root).
    pub const UNTRUSTED: MountFlags = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: false,
    };
}

/// What to mount.
pub struct MountOptions {
    /// Read-only layers, top first.
    pub lowers: Vec<Box<dyn Lower>>,
    /// The writable upper directory; `None` gives a read-only mount.
    pub upper: Option<PathBuf>,
    /// EROFS for every write even with an upper.
    pub read_only: bool,
    /// Let other users (the container's mapped ids) use the mount.
    pub allow_other: bool,
    /// Shown as the source in /proc/mounts.
    pub fsname: String,
    /// FUSE worker threads (each reads requests from the device). One per
    /// core, at most 4: a synchronous walk keeps one request in flight, and
    /// more threads than cores only add wakeups (warm `ls -lR` of a Debian
    /// rootfs on 2 busy cores: median 234-244 ms with 1 or 2 threads, 300-
    /// 640 ms with 4; fuse-overlayfs, one thread, 200 ms).
    pub threads: usize,
    /// Let the kernel read and write host files directly (FUSE passthrough)
    /// where it can (Linux >= 6.9, CAP_SYS_ADMIN): upper files and files of
    /// host directory lowers of at least [`MountOptions::passthrough_min_size`]
    /// bytes, and new files (see `crate::passthrough`). Off by default: it
    /// needs an OPEN round trip for every open, small files included, and
    /// that costs walks that open files (a warm `tar` of the Debian rootfs
    /// took 7x kernel overlayfs's time with it, 0.94x without; docs/design.md,
    /// "Passthrough by size"). Off, the kernel opens files without asking
    /// (see `crate::node_files`) and every read and write of a file not in
    /// its page cache goes through the server.
    pub passthrough: bool,
    /// How owners, link counts, xattrs and fsync are shown to the kernel
    /// (fuse-overlayfs's options; see [`crate::view`]).
    pub view: crate::view::View,
    /// The upper's format; `None`: the one the server's privileges allow
    /// (see [`crate::upper_format`]).
    pub upper_format: Option<crate::upper_format::UpperFormat>,
    /// The kernel's `nosuid`, `nodev` and `noexec` for the mount.
    pub flags: MountFlags,
    /// Files at least this big are passed through (0: every host file);
    /// smaller ones are served with the kernel's page cache. Default
    /// [`PASSTHROUGH_MIN_SIZE`].
    pub passthrough_min_size: u64,
    /// Serve requests through FUSE over io_uring where the kernel offers it
    /// (Linux 6.14 and later, with `/sys/module/fuse/parameters/enable_uring`
    /// set by root; it is off by default): a queue per CPU, each served by
    /// a thread on that CPU, so a request and its reply cost one system call
    /// and no cross-CPU wakeup. An untar through the mount takes about 40%
    /// less time (docs/design.md, "FUSE over io_uring"). On by default;
    /// `STRATA_FUSE_URING=off` turns it off, for measuring. Without the
    /// kernel's offer it does nothing.
    pub io_uring: bool,
}

/// See [`MountOptions::passthrough_min_size`]; docs/design.md has the
/// measurements behind it.
pub const PASSTHROUGH_MIN_SIZE: u64 = 1 << 20;

/// `STRATA_PASSTHROUGH` (`off`, or a minimum size in bytes) overrides the
/// defaults, so scripts/bench-fs measures each candidate through the same
/// command lines (strata mount, the fuse-overlayfs one, containers).
fn passthrough_default() -> (bool, u64) {
    match std::env::var("STRATA_PASSTHROUGH").as_deref() {
        Err(_) | Ok("off") => (false, PASSTHROUGH_MIN_SIZE),
        Ok(n) => match n.parse() {
            Ok(n) => (true, n),
            Err(_) => {
                log::warn!("STRATA_PASSTHROUGH={n}: neither off nor a size; ignored");
                (false, PASSTHROUGH_MIN_SIZE)
            }
        },
    }
}

impl MountOptions {
    /// Options for serving `lowers` (top first) with `upper` as the writable
    /// directory (`None`: read-only): every other option off (unless
    /// `STRATA_PASSTHROUGH` asks for passthrough), one server thread per
    /// core, at most 4.
    pub fn new(lowers: Vec<Box<dyn Lower>>, upper: Option<PathBuf>) -> MountOptions {
        let (passthrough, passthrough_min_size) = passthrough_default();
        MountOptions {
            lowers,
            upper,
            read_only: false,
            allow_other: false,
            fsname: "strata".into(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            passthrough,
            view: crate::view::View::default(),
            upper_format: None,
            flags: MountFlags::default(),
            passthrough_min_size,
            io_uring: std::env::var("STRATA_FUSE_URING").as_deref() != Ok("off"),
        }
    }

    /// Options for serving `image` of `store` with strata's own `upper`
    /// (`None`: read-only): the one way an image becomes a mount. The
    /// layers go top first (see [`StoreLower::of_image`]); the upper is
    /// written in the format its owner reads back from the host, where
    /// commit, diff and export read it ([`UpperFormat::for_host_owner`]).
    pub fn of_image(
        store: &Arc<Store>,
        image: &ImageRecord,
        upper: Option<PathBuf>,
    ) -> Result<MountOptions, StoreError> {
        let mut opts = MountOptions::new(StoreLower::of_image(store, image)?, upper);
        opts.upper_format = Some(UpperFormat::for_host_owner());
        Ok(opts)
    }
}

/// Why a mount could not start or its server failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The upper or a lower could not be opened.
    #[error("cannot set up the layer stack")]
    Layers(#[source] FsError),
    /// A layer's directory holds the mountpoint.
    #[error("cannot mount on {mountpoint}: the layer directory {layer} would be read through the mount itself")]
    LayerHoldsMountpoint {
        /// The directory mounted on.
        mountpoint: String,
        /// The lower or upper directory.
        layer: String,
    },
    /// The kernel refused the mount.
    #[error("cannot mount on {mountpoint} (is /dev/fuse usable and fusermount3 installed?)")]
    Mount {
        /// The directory mounted on.
        mountpoint: String,
        /// What the mount answered.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the mount server at {mountpoint} failed")]
    Serve {
        /// The directory mounted on.
        mountpoint: String,
        /// What the server's session answered.
        #[source]
        source: std::io::Error,
    },
}

/// Refuses a mount on a directory at or below a layer's host directory,
/// or above one: every host path the server reaches through the
/// mountpoint would be a request to itself, and the first waits for good
/// (`ls` of a mount whose lower was its own mountpoint hung in D state
/// until the connection was aborted; found by a review as an attacker).
/// fuse-overlayfs serves a lower that is its mountpoint through a
/// descriptor taken before it mounts; strata's layers are reached by
/// path. (A bind mount with shared propagation can still carry the mount
/// onto a layer's path: that is left to the caller.)
fn refuse_a_layer_holding(mountpoint: &Path, opts: &MountOptions) -> Result<(), MountError> {
    let Ok(mountpoint) = std::fs::canonicalize(mountpoint) else {
        return Ok(()); // the mount reports it
    };
    let lowers = opts.lowers.iter().filter_map(|l| l.host_path(b""));
    let upper = opts.upper.as_deref().map(crate::upper::resolved_root);
    for layer in lowers.map(|h| h.to_path_buf()).chain(upper) {
        if mountpoint.starts_with(&layer) || layer.starts_with(&mountpoint) {
            return Err(MountError::LayerHoldsMountpoint {
                mountpoint: mountpoint.display().to_string(),
                layer: layer.display().to_string(),
            });
        }
    }
    Ok(())
}

/// A server holds host files open for the kernel (`crate::node_files`,
/// orphans, handles): the soft limit on open files goes up to the hard one,
/// as podman raises it for its processes (an ordinary user's soft limit is
/// often 1,024).
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
    }
}

/// The descriptors a server may come to hold at once: node files
/// (`crate::node_files::CAPACITY`) and the handles, orphans and
/// directories beside them.
const DESCRIPTOR_TABLE: u64 = 4096;

/// Grows the process's descriptor table to [`DESCRIPTOR_TABLE`] entries
/// (or the open-file limit) at once. The kernel doubles the table as
/// descriptors are taken, and in a process with more than one thread each
/// doubling waits for an RCU grace period (`expand_fdtable`), 6-30 ms on
/// the 2-core test VM, while the request that opened the file, and the
/// program behind it, wait too: a server that came to hold a thousand node
/// files paid that five times in its first second. One growth now, before
/// the session's threads exist, is cheap (a 4096-entry table is 32 KiB).
fn reserve_descriptor_table() {
    use nix::sys::resource::{getrlimit, Resource};
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    let highest = DESCRIPTOR_TABLE.min(limit).saturating_sub(1);
    let Ok(highest) = i32::try_from(highest) else {
        return;
    };
    // A descriptor at the table's last slot makes the kernel size the
    // table for it; closing it leaves the table as it is.
    if let Ok(root) = std::fs::File::open("/") {
        let _ = rustix::io::fcntl_dupfd_cloexec(&root, highest);
    }
}

fn session(opts: MountOptions, mountpoint: &Path) -> Result<fuser::Session<Adapter>, MountError> {
    raise_open_file_limit();
    reserve_descriptor_table();
    refuse_a_layer_holding(mountpoint, &opts)?;
    let layers = Layers::with_format(opts.upper.as_deref(), opts.lowers, opts.upper_format)
        .map_err(MountError::Layers)?;
    let fs = UnionFs::new(layers, opts.read_only);
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(opts.fsname),
        MountOption::Subtype("strata".into()),
        // The kernel checks permissions against the modes and owners we
        // report, as a local filesystem would.
        MountOption::DefaultPermissions,
    ];
    let f = opts.flags;
    config.mount_options.extend([
        if f.nosuid {
            MountOption::NoSuid
        } else {
            MountOption::Suid
        },
        if f.nodev {
            MountOption::NoDev
        } else {
            MountOption::Dev
        },
        if f.noexec {
            MountOption::NoExec
        } else {
            MountOption::Exec
        },
    ]);
    if fs.is_read_only() {
        config.mount_options.push(MountOption::RO);
    }
    if opts.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    // A write that cleared set-id bits makes the kernel forget the node's
    // attributes before it is answered, so no exec honours a cached bit.
    let notifier = Arc::new(OnceLock::<fuser::Notifier>::new());
    let slot = notifier.clone();
    fs.on_set_id_cleared(move |id| {
        if let Some(Err(e)) = slot.get().map(|n| n.inval_inode(id.into(), -1, 0)) {
            log::debug!("node {id:#x}: attributes not invalidated: {e}");
        }
    });
    let adapter = Adapter::new(fs, opts.passthrough, opts.passthrough_min_size)
        .with_view(opts.view)
        .with_io_uring(opts.io_uring);
    let session =
        fuser::Session::new(adapter, mountpoint, &config).map_err(|source| MountError::Mount {
            mountpoint: mountpoint.display().to_string(),
            source,
        })?;
    let _ = notifier.set(session.notifier());
    crate::kernel_read_ahead::widen(mountpoint);
    Ok(session)
}

/// A mount served by background threads; dropping it unmounts.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    device: Option<Device>,
}

/// A filesystem's device number (major, minor): a FUSE mount's is its own
/// for as long as its connection lives.
pub type Device = (u32, u32);

/// The device of the filesystem at `path`, from a `statx` that never asks
/// a FUSE server (one may not be serving yet, or may hang).
pub(crate) fn device_at(path: &Path) -> Option<Device> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    statx(CWD, path, AtFlags::STATX_DONT_SYNC, StatxFlags::empty())
        .ok()
        .map(|st| (st.stx_dev_major, st.stx_dev_minor))
}

/// The device of a FUSE mount made at `mountpoint`; None when the path
/// shows something else (the directory's own filesystem: not mounted, or
/// not visible from here).
pub(crate) fn fuse_device_at(mountpoint: &Path) -> Option<Device> {
    let dev = device_at(mountpoint)?;
    is_a_fuse_mount(dev, mountpoint.parent().and_then(device_at)).then_some(dev)
}

/// Whether `dev`, the device at a mountpoint, is a FUSE mount made there:
/// an anonymous device (major 0, which FUSE's superblocks get, where disks
/// have a driver's major) other than its parent directory's.
fn is_a_fuse_mount(dev: Device, parent: Option<Device>) -> bool {
    dev.0 == 0 && parent.is_some_and(|p| p != dev)
}

impl MountHandle {
    /// The directory the filesystem is mounted on.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The mount's device, to tell it from a mount made at the same path
    /// later (see [`unmount_if_at`]).
    pub fn device(&self) -> Option<Device> {
        self.device
    }

    /// Unmounts and waits for the server threads.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.stop()
    }

    /// Serves until someone else unmounts the filesystem (`strata umount`,
    /// `fusermount3 -u`), then returns.
    pub fn join(mut self) -> Result<(), MountError> {
        match self.session.take() {
            Some(s) => s.join().map_err(|source| MountError::Serve {
                mountpoint: self.mountpoint.display().to_string(),
                source,
            }),
            None => Ok(()),
        }
    }

    fn stop(&mut self) -> Result<(), MountError> {
        match self.session.take() {
            Some(s) => s.umount_and_join().map_err(|source| MountError::Serve {
                mountpoint: self.mountpoint.display().to_string(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::error!("{e}: {:?}", std::error::Error::source(&e));
        }
    }
}

/// Mounts and serves in background threads. Returns once the kernel
/// accepted the mount (the FUSE handshake is done), so the tree is usable.
pub fn mount(opts: MountOptions, mountpoint: &Path) -> Result<MountHandle, MountError> {
    let s = session(opts, mountpoint)?;
    let bg = s.spawn().map_err(|source| MountError::Serve {
        mountpoint: mountpoint.display().to_string(),
        source,
    })?;
    Ok(MountHandle {
        session: Some(bg),
        mountpoint: mountpoint.to_path_buf(),
        // None if the mount cannot be seen from here: `unmount_if_at`
        // then has nothing to compare with (see stop_on_signal's caller).
        device: fuse_device_at(mountpoint),
    })
}

/// Mounts and serves on the calling thread until unmounted.
pub fn serve(opts: MountOptions, mountpoint: &Path) -> Result<(), MountError> {
    session(opts, mountpoint)?
        .run()
        .map_err(|source| MountError::Serve {
            mountpoint: mountpoint.display().to_string(),
            source,
        })
}

/// [`unmount`]s what is at `mountpoint` if it is the mount of `device`;
/// false, and nothing done, when the path holds another filesystem now
/// (ours detached by someone else, and the path mounted again: podman
/// does so when an unmount finds the tree busy).
pub fn unmount_if_at(mountpoint: &Path, device: Device) -> std::io::Result<bool> {
    if device_at(mountpoint) != Some(device) {
        return Ok(false);
    }
    unmount(mountpoint).map(|()| true)
}

/// Detaches a mount whose server is gone ("transport endpoint is not
/// connected"): a lazy unmount as root, else `fusermount3 -u -z`.
pub fn unmount(mountpoint: &Path) -> std::io::Result<()> {
    match nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let status = std::process::Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(mountpoint)
                .status()?;
            if status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "fusermount3 -u -z {} failed: {status}",
                    mountpoint.display()
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_anonymous_device_is_taken_for_the_mount() {
        assert!(is_a_fuse_mount((0, 61), Some((254, 1))));
        // The mount is not there yet: the directory's own disk.
        assert!(!is_a_fuse_mount((254, 1), Some((254, 1))));
        // A disk, whatever the parent.
        assert!(!is_a_fuse_mount((8, 0), Some((0, 61))));
        // Anonymous, but the parent's own (a directory on tmpfs).
        assert!(!is_a_fuse_mount((0, 40), Some((0, 40))));
        assert!(!is_a_fuse_mount((0, 61), None));
    }
}
