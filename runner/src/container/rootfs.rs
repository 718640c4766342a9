//! Turning the merged tree into the container's root: kernel file systems,
//! a minimal /dev, the /etc files and volumes, docker's masked and
//! read-only paths, then pivot_root.
//!
//! As docker's (runc's applying moby's defaults): /proc and /sys are
//! nosuid,nodev,noexec, /sys read-only; /dev a nosuid tmpfs holding only
//! the standard devices (bind-mounted from the host, and nodev itself, so
//! a node the container makes there opens nothing); what in /proc and /sys
//! shows or changes the host is masked (a file under /dev/null, a
//! directory under an empty read-only tmpfs) or read-only. `--privileged`
//! gets none of the masking, a writable /sys and the host's devices.
//!
//! Runs in the container's first process, in its new mount namespace,
//! before pivot_root, so every target inside the rootfs is resolved with
//! [`resolve_in_root`]: a symlink in the image must not send a mount to the
//! host.

use std::fs::{self, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root};

use super::exit::StartError;
use super::in_root;
use super::pty::Console;
use super::spec::Spec;
use super::userns::map_text_covers;
use layerdb::{BindMount, TmpfsMount};

/// The group that owns terminals, as in every distribution's /etc/group.
const TTY_GID: u32 = 5;

/// Host devices bind-mounted into the container's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks every /dev has: (name, target).
const DEV_LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Hidden from the container: they show the host's hardware, keys and
/// kernel internals (moby's default masked paths).
const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Readable but not writable: writing them changes the host's kernel
/// (moby's default read-only paths).
const READ_ONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host /dev entries a privileged container does not get as devices:
/// its own instances or links are made instead.
const NOT_HOST_DEVICES: [&str; 5] = ["pts", "shm", "mqueue", "ptmx", "console"];

/// Symlinks followed while resolving one path before we call it a loop.
const MAX_SYMLINKS: usize = 255;

/// All the steps, in order. `console` is the pty's slave when the
/// container has a tty.
pub fn enter(spec: &Spec, console: Option<&Console>) -> Result<(), StartError> {
    let root = spec.rootfs.as_path();
    let privileged = spec.security.privileged;
    make_mounts_private()?;
    bind_rootfs_onto_itself(root)?;
    mount_proc(root)?;
    mount_sys(root, privileged)?;
    mount_dev(root, console, privileged, spec.resources.shm_size)?;
    let tree = in_root::open_root(root).map_err(|err| io_error("open", root, &err))?;
    bind_given_devices(&tree, &spec.resources.devices)?;
    bind_etc_files(&tree, spec)?;
    mount_volumes(root, &tree, spec)?;
    if !privileged {
        expect_kernel_fs(
            &root.join("proc"),
            "proc",
            nix::sys::statfs::PROC_SUPER_MAGIC,
        )?;
        expect_kernel_fs(&root.join("sys"), "sysfs", nix::sys::statfs::SYSFS_MAGIC)?;
        mask_paths(root)?;
        make_paths_read_only(root)?;
    }
    pivot_into(root)
}

fn mount_error(what: &str, target: &Path, errno: Errno) -> StartError {
    StartError::other(format!(
        "error mounting {what} to rootfs at {:?}: {}",
        target,
        super::exit::errno_text(errno)
    ))
}

fn io_error(what: &str, path: &Path, err: &std::io::Error) -> StartError {
    StartError::other(format!("{what} {}: {err}", path.display()))
}

/// Our mounts must not propagate back to the host (nor host mounts in).
fn make_mounts_private() -> Result<(), StartError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|errno| mount_error("private propagation", Path::new("/"), errno))
}

/// pivot_root needs the new root to be a mount point; a plain directory
/// rootfs is not one until bound onto itself.
fn bind_rootfs_onto_itself(root: &Path) -> Result<(), StartError> {
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|errno| mount_error("rootfs", root, errno))
}

fn mount_proc(root: &Path) -> Result<(), StartError> {
    let target = kernel_fs_dir(root, "proc", "proc")?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &target, Some("proc"), flags, None::<&str>)
        .map_err(|errno| mount_error("proc", &target, errno))
}

/// A read-only sysfs (writable when privileged); where the kernel refuses
/// a new one (no own network namespace without privilege), a bind of the
/// host's. Without CAP_SYS_ADMIN the container cannot remount it.
fn mount_sys(root: &Path, privileged: bool) -> Result<(), StartError> {
    let target = kernel_fs_dir(root, "sysfs", "sys")?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if !privileged {
        flags |= MsFlags::MS_RDONLY;
    }
    match mount(Some("sysfs"), &target, Some("sysfs"), flags, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => bind(Path::new("/sys"), &target, !privileged, "sysfs"),
        Err(errno) => Err(mount_error("sysfs", &target, errno)),
    }
}

/// docker's /dev: a tmpfs of 64 MiB, mode 755. nodev (unless privileged)
/// is ours: the devices are bind mounts, which keep the host's flags, and
/// a node made with mknod in the tmpfs itself then opens nothing.
fn mount_dev(
    root: &Path,
    console: Option<&Console>,
    privileged: bool,
    shm_size: i64,
) -> Result<(), StartError> {
    let dev = dir_in_root(root, "/dev")?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    if !privileged {
        flags |= MsFlags::MS_NODEV;
    }
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        flags,
        Some("mode=755,size=65536k"),
    )
    .map_err(|errno| mount_error("tmpfs", &dev, errno))?;
    bind_host_devices(&dev)?;
    if privileged {
        bind_all_host_devices(Path::new("/dev"), &dev)?;
    }
    mount_devpts(&dev)?;
    mount_shm(&dev, shm_size)?;
    mount_mqueue(&dev)?;
    make_dev_links(&dev)?;
    if let Some(console) = console {
        let target = dev.join("console");
        create_file(&target)?;
        match console {
            Console::Mount(mount) => {
                let flags = rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH;
                rustix::mount::move_mount(mount, "", rustix::fs::CWD, &target, flags)
                    .map_err(|errno| io_error("move the console onto", &target, &errno.into()))?
            }
            Console::Path(path) => bind(path, &target, false, "console")?,
        }
    }
    Ok(())
}

fn bind_host_devices(dev: &Path) -> Result<(), StartError> {
    for name in DEVICES {
        let target = dev.join(name);
        create_file(&target)?;
        bind(&Path::new("/dev").join(name), &target, false, "device")?;
    }
    Ok(())
}

/// `--device`: each node bound at its place in the container, which may
/// be outside /dev (resolved in the root, as a volume's target).
fn bind_given_devices(
    tree: &OwnedFd,
    devices: &[layerdb::DeviceMapping],
) -> Result<(), StartError> {
    let nodes = super::host_devices::expand_all(devices)
        .map_err(|e| StartError::other(format!("{e:#}")))?;
    for node in nodes {
        let target = target_in(tree, &node.target, true, "device")?;
        bind_onto(&node.host, &target, 0)?;
    }
    Ok(())
}

/// `--privileged`: every other device node of the host's /dev (and its
/// subdirectories, as /dev/net/tun), bound at the same place.
fn bind_all_host_devices(host: &Path, dev: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::FileTypeExt as _;
    let entries = fs::read_dir(host).map_err(|err| io_error("read", host, &err))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let top_level = host == Path::new("/dev");
        if top_level
            && name
                .to_str()
                .is_some_and(|name| NOT_HOST_DEVICES.contains(&name) || DEVICES.contains(&name))
        {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let target = dev.join(&name);
        if kind.is_dir() {
            bind_all_host_devices(&entry.path(), &target)?;
        } else if kind.is_char_device() || kind.is_block_device() {
            create_file(&target)?;
            bind(&entry.path(), &target, false, "device")?;
        }
    }
    Ok(())
}

/// A devpts instance of the container's own, so its ptys are not the host's.
/// Its ptys belong to group tty (5), unless the container has no gid 5 (a
/// rootless container with a single id): the kernel refuses an unmapped gid.
fn mount_devpts(dev: &Path) -> Result<(), StartError> {
    let pts = dev.join("pts");
    create_dir(&pts)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let gid_map = fs::read_to_string("/proc/self/gid_map").unwrap_or_default();
    let data = if map_text_covers(&gid_map, TTY_GID) {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        "newinstance,ptmxmode=0666,mode=0620"
    };
    mount(Some("devpts"), &pts, Some("devpts"), flags, Some(data))
        .map_err(|errno| mount_error("devpts", &pts, errno))
}

/// /dev/shm: docker's 64 MiB, or `--shm-size` bytes.
fn mount_shm(dev: &Path, size: i64) -> Result<(), StartError> {
    let shm = dev.join("shm");
    create_dir(&shm)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let data = match size {
        0 => "mode=1777,size=65536k".to_string(),
        bytes => format!("mode=1777,size={bytes}"),
    };
    mount(Some("shm"), &shm, Some("tmpfs"), flags, Some(data.as_str()))
        .map_err(|errno| mount_error("shm", &shm, errno))
}

/// POSIX message queues of the container's own ipc namespace.
fn mount_mqueue(dev: &Path) -> Result<(), StartError> {
    let mqueue = dev.join("mqueue");
    create_dir(&mqueue)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("mqueue"), &mqueue, Some("mqueue"), flags, None::<&str>)
        .map_err(|errno| mount_error("mqueue", &mqueue, errno))
}

/// A masked file shows as /dev/null, a masked directory as an empty
/// read-only tmpfs; paths this kernel does not have are skipped.
fn mask_paths(root: &Path) -> Result<(), StartError> {
    for path in MASKED_PATHS {
        let target = resolve_in_root(root, path, read_link)?;
        let Ok(meta) = fs::metadata(&target) else {
            continue;
        };
        if meta.is_dir() {
            let flags =
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(Some("tmpfs"), &target, Some("tmpfs"), flags, Some("size=0"))
                .map_err(|errno| mount_error("tmpfs mask", &target, errno))?;
        } else {
            bind(Path::new("/dev/null"), &target, false, "mask")?;
        }
    }
    Ok(())
}

/// Each read-only path becomes a read-only bind of itself.
fn make_paths_read_only(root: &Path) -> Result<(), StartError> {
    for path in READ_ONLY_PATHS {
        let target = resolve_in_root(root, path, read_link)?;
        if target.exists() {
            bind(&target, &target, true, "read-only path")?;
        }
    }
    Ok(())
}

fn make_dev_links(dev: &Path) -> Result<(), StartError> {
    for (name, target) in DEV_LINKS {
        let link = dev.join(name);
        symlink(target, &link).map_err(|err| io_error("symlink", &link, &err))?;
    }
    Ok(())
}

/// /etc/hosts, /etc/hostname, /etc/resolv.conf. Creating a missing target
/// writes an empty file to the upper layer; commit leaves these paths out.
/// Read-only with the root filesystem (`--read-only`), as docker binds them.
fn bind_etc_files(tree: &OwnedFd, spec: &Spec) -> Result<(), StartError> {
    let read_only = match spec.security.read_only_rootfs {
        true => libc::MOUNT_ATTR_RDONLY,
        false => 0,
    };
    for (source, target) in spec.etc_files.binds() {
        let target = target_in(tree, target, true, "file")?;
        bind_onto(source, &target, read_only)?;
    }
    Ok(())
}

/// `-v` and `--tmpfs`, a mount over another's directory after it (by the
/// depth of their targets, as docker sorts them), else in the order given.
fn mount_volumes(root: &Path, tree: &OwnedFd, spec: &Spec) -> Result<(), StartError> {
    enum Volume<'a> {
        Bind(&'a BindMount),
        Tmpfs(&'a TmpfsMount),
    }
    let mut volumes: Vec<(usize, Volume)> = spec
        .mounts
        .iter()
        .map(|m| (depth(&m.target), Volume::Bind(m)))
        .chain(
            spec.tmpfs
                .iter()
                .map(|t| (depth(&t.target), Volume::Tmpfs(t))),
        )
        .collect();
    volumes.sort_by_key(|(depth, _)| *depth);
    for (_, volume) in volumes {
        match volume {
            Volume::Bind(bind_mount) => bind_volume(root, tree, bind_mount)?,
            Volume::Tmpfs(tmpfs) => mount_tmpfs(tree, tmpfs)?,
        }
    }
    Ok(())
}

/// `-v`: a missing host directory is created (as docker does); the target
/// is created as a directory or an empty file to match the source. An
/// empty volume first gets what the image has there (`volume_seed`).
fn bind_volume(root: &Path, tree: &OwnedFd, volume: &BindMount) -> Result<(), StartError> {
    let target = volume_target(tree, volume)?;
    if volume.volume.is_some() {
        super::volume_seed::seed(&volume.source, root, &target.host)?;
    }
    let read_only = match volume.read_only {
        true => libc::MOUNT_ATTR_RDONLY,
        false => 0,
    };
    bind_onto(&volume.source, &target, read_only)
}

/// How many names deep a mount's target is: a mount over another's
/// directory goes after it.
fn depth(target: &str) -> usize {
    target.split('/').filter(|p| !p.is_empty()).count()
}

/// A stopped container's volumes, bound into its tree mounted for `cp`
/// (`root`, in the copy's private mount namespace) where `run` binds
/// them, so that a path through the container's symlinks reaches a volume
/// as it does while the container runs. nosuid and nodev, as that tree
/// is: the copy works in it as root of the host. Each target is pushed on
/// `bound` once bound, for the caller to unmount, also after a failure.
pub fn bind_volumes_for_copy(
    root: &Path,
    volumes: &[BindMount],
    bound: &mut Vec<PathBuf>,
) -> Result<(), StartError> {
    let tree = in_root::open_root(root).map_err(|err| io_error("open", root, &err))?;
    let mut volumes: Vec<&BindMount> = volumes.iter().collect();
    volumes.sort_by_key(|m| depth(&m.target));
    for volume in volumes {
        let target = volume_target(&tree, volume)?;
        let mut attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
        if volume.read_only {
            attrs |= libc::MOUNT_ATTR_RDONLY;
        }
        bind_onto(&volume.source, &target, attrs)?;
        bound.push(target.host);
    }
    Ok(())
}

/// Where `volume` goes in `tree`, made as a directory or an empty file to
/// match its source, whose missing host directory is made (as docker
/// does).
fn volume_target(tree: &OwnedFd, volume: &BindMount) -> Result<in_root::Target, StartError> {
    if !volume.source.exists() {
        create_dir(&volume.source)?;
    }
    target_in(tree, &volume.target, !volume.source.is_dir(), "volume")
}

/// `path` in the container's tree, opened where it resolves there, the
/// missing parts made (see `in_root`), for a mount of kind `what`. The
/// target's check runs again where its links led: an image's `/fw ->
/// /proc/x` must not put a volume, a device, a tmpfs or /etc/hosts inside
/// /proc (the last two went unchecked: an image's link steered a user's
/// `--tmpfs` over /proc/sys/kernel, found by a review).
fn target_in(
    tree: &OwnedFd,
    path: &str,
    file: bool,
    what: &str,
) -> Result<in_root::Target, StartError> {
    let target = in_root::target(tree, path, file)
        .map_err(|err| io_error("open mount target", Path::new(path), &err))?;
    crate::mount_spec::check_target(&target.inside)
        .map_err(|e| StartError::other(format!("{what} {path}: {e:#}")))?;
    Ok(target)
}

/// A recursive bind of `source` onto `target`, its mounts given `attrs`
/// (read-only all the way down for `:ro`, as docker 25 makes it on Linux
/// 5.12 and later: a host mount under a volume's source stayed writable
/// through the container's `:ro` when only the top mount was remounted).
fn bind_onto(source: &Path, target: &in_root::Target, attrs: u64) -> Result<(), StartError> {
    in_root::bind(source, target, attrs)
        .map_err(|err| io_error(&format!("bind {}", source.display()), &target.host, &err))
}

/// `--tmpfs`: a tmpfs of the container's own, with the flags and data its
/// options give (checked when the container was created).
fn mount_tmpfs(tree: &OwnedFd, tmpfs: &TmpfsMount) -> Result<(), StartError> {
    let target = target_in(tree, &tmpfs.target, false, "tmpfs")?;
    let (flags, data) = crate::mount_spec::tmpfs_options(&tmpfs.options)
        .map_err(|e| StartError::other(format!("{e:#}")))?;
    in_root::mount("tmpfs", &target, flags, &data)
        .map_err(|err| io_error("mount tmpfs", &target.host, &err))
}

/// A recursive bind; read-only needs a second, remounting call because the
/// kernel ignores MS_RDONLY on the bind itself. The remount keeps the
/// bound mount's nosuid/nodev/noexec/atime flags: in a user namespace the
/// kernel locks those of mounts inherited from the host (/sys, a volume)
/// and refuses a remount that would clear them.
fn bind(source: &Path, target: &Path, read_only: bool, what: &str) -> Result<(), StartError> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .map_err(|errno| mount_error(&format!("{what} {}", source.display()), target, errno))?;
    if read_only {
        remount(target, MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

/// The container's root, after pivot_root (`--read-only`); the mounts on
/// it (/proc, /dev, /sys, volumes) keep their own modes, as in runc.
pub fn make_root_read_only() -> Result<(), StartError> {
    remount(Path::new("/"), MsFlags::MS_RDONLY)
}

/// Adds `flags` (read-only, nosuid...) to the bind mount at `target`,
/// keeping the flags a user namespace may not clear.
pub fn remount(target: &Path, flags: MsFlags) -> Result<(), StartError> {
    let kept = statvfs(target)
        .map(|stat| locked_flags(stat.flags()))
        .unwrap_or(MsFlags::empty());
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | kept;
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|errno| mount_error("remount", target, errno))
}

/// pivot_root(".", ".") stacks the old root on top of the new one at "/";
/// unmounting "." then takes the old root out of this mount namespace. From
/// then on no path, `..` chain or chroot trick inside the container leads to
/// the host tree: the topmost directory reachable is the container's root.
/// MNT_DETACH because the old root is busy (every host process uses it) and
/// a plain umount would fail with EBUSY; detached, it is gone from our tree
/// at once and freed when its last user lets go.
fn pivot_into(root: &Path) -> Result<(), StartError> {
    chdir(root).map_err(|errno| StartError::from_errno("chdir to rootfs", errno))?;
    pivot_root(".", ".").map_err(|errno| StartError::from_errno("pivot_root", errno))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|errno| StartError::from_errno("unmount the old root", errno))?;
    chdir("/").map_err(|errno| StartError::from_errno("chdir to /", errno))
}

/// The flags of a mount that a user namespace may not clear, as mount(2)
/// flags.
fn locked_flags(flags: FsFlags) -> MsFlags {
    [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st, _)| flags.contains(*st))
    .fold(MsFlags::empty(), |kept, (_, ms)| kept | ms)
}

/// The rootfs's directory `name` (`proc` or `sys`) that filesystem `fs`
/// is mounted on, made if missing. It must be a directory of its own, as
/// runc requires: the masks and read-only paths go under `/proc` and
/// `/sys` later, and an image's link sent the mount somewhere they did not
/// look (`/proc -> /dev/l/proc`, with `/dev/l` then hidden by the /dev
/// tmpfs: the procfs at `/dev/l/proc`'s target kept /proc/sys writable, and
/// root in the container could set the host's core_pattern).
fn kernel_fs_dir(root: &Path, fs: &str, name: &str) -> Result<PathBuf, StartError> {
    let dir = root.join(name);
    match fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(dir),
        Ok(_) => Err(StartError::other(format!(
            "error mounting \"{fs}\" to rootfs at \"/{name}\": \
             filesystem \"{fs}\" must be mounted on ordinary directory"
        ))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir(&dir).map_err(|err| io_error("mkdir", &dir, &err))?;
            Ok(dir)
        }
        Err(err) => Err(io_error("stat", &dir, &err)),
    }
}

/// Checks that `dir` is still the kernel filesystem `magic` names before
/// its paths are masked: a mask that misses its target fails open.
fn expect_kernel_fs(
    dir: &Path,
    fs: &str,
    magic: nix::sys::statfs::FsType,
) -> Result<(), StartError> {
    let found = nix::sys::statfs::statfs(dir).map_err(|errno| {
        StartError::other(format!(
            "statfs {}: {}",
            dir.display(),
            super::exit::errno_text(errno)
        ))
    })?;
    match found.filesystem_type() == magic {
        true => Ok(()),
        false => Err(StartError::other(format!(
            "{} is not the container's {fs}: refusing to start without its masks",
            dir.display()
        ))),
    }
}

fn dir_in_root(root: &Path, path: &str) -> Result<PathBuf, StartError> {
    let dir = resolve_in_root(root, path, read_link)?;
    create_dir(&dir)?;
    Ok(dir)
}

fn create_dir(path: &Path) -> Result<(), StartError> {
    fs::create_dir_all(path).map_err(|err| io_error("mkdir", path, &err))
}

/// An empty file to bind a file onto; an existing file is left as it is,
/// not even opened: opening it for writing would copy it up for nothing.
fn create_file(path: &Path) -> Result<(), StartError> {
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(io_error("create mount target", path, &err)),
    }
}

fn read_link(path: &Path) -> Option<PathBuf> {
    fs::read_link(path).ok()
}

/// Resolves `path` (taken as absolute inside the container) to a host path
/// under `root`, following symlinks as if `root` were `/`: an absolute link
/// restarts at `root` and `..` stops at it. Missing components are kept
/// as they are (the caller creates them). `read_link` returns a symlink's
/// target, or `None` for anything that is not a symlink.
pub fn resolve_in_root(
    root: &Path,
    path: &str,
    read_link: impl Fn(&Path) -> Option<PathBuf>,
) -> Result<PathBuf, StartError> {
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: Vec<String> = components_reversed(Path::new(path));
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => {}
            ".." => {
                resolved.pop();
            }
            name => {
                let candidate = join_under(root, &resolved).join(name);
                let Some(target) = read_link(&candidate) else {
                    resolved.push(name.to_owned());
                    continue;
                };
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(StartError::other(format!(
                        "resolve {path} in rootfs: too many levels of symbolic links"
                    )));
                }
                if target.is_absolute() {
                    resolved.clear();
                }
                pending.extend(components_reversed(&target));
            }
        }
    }
    Ok(join_under(root, &resolved))
}

/// Path components as strings, last first (a stack to pop from), without
/// the root; `.` and `..` are kept for the resolver.
fn components_reversed(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            Component::CurDir => Some(".".to_owned()),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

fn join_under(root: &Path, parts: &[String]) -> PathBuf {
    parts
        .iter()
        .fold(root.to_path_buf(), |path, part| path.join(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(path: &Path) -> Option<PathBuf> {
        match path.to_str() {
            Some("/r/etc/hosts") => Some("/../../host/hosts".into()),
            Some("/r/etc/rel") => Some("../data/x".into()),
            Some("/r/loop") => Some("/loop".into()),
            Some("/r/var/run") => Some("/run".into()),
            _ => None,
        }
    }

    fn resolve(path: &str) -> Result<PathBuf, StartError> {
        resolve_in_root(Path::new("/r"), path, links)
    }

    #[test]
    fn read_only_remount_keeps_the_flags_a_user_namespace_locks() {
        let kept = locked_flags(FsFlags::ST_NOSUID | FsFlags::ST_NOEXEC | FsFlags::ST_RDONLY);
        assert_eq!(kept, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
    }

    #[test]
    fn plain_path_is_joined_under_root() {
        assert_eq!(resolve("/etc/hostname"), Ok("/r/etc/hostname".into()));
    }

    #[test]
    fn absolute_symlink_escaping_root_stays_inside() {
        assert_eq!(resolve("/etc/hosts"), Ok("/r/host/hosts".into()));
    }

    #[test]
    fn dot_dot_stops_at_root() {
        assert_eq!(resolve("/../../../etc"), Ok("/r/etc".into()));
    }

    #[test]
    fn relative_symlink_resolves_from_its_directory() {
        assert_eq!(resolve("/etc/rel"), Ok("/r/data/x".into()));
    }

    #[test]
    fn symlinked_directory_in_the_middle_is_followed() {
        assert_eq!(resolve("/var/run/x.sock"), Ok("/r/run/x.sock".into()));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        assert!(resolve("/loop").is_err());
    }
}
