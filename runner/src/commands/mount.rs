//! `strata mount` and its server `serve-mount`: inspection mounts that
//! outlive the command. `mount` starts `strata serve-mount` in its own
//! session, waits until the filesystem is mounted, prints the mountpoint
//! and returns; the server runs until `strata umount` (umount.rs).

use super::Ctx;
use crate::cli::{MountArgs, ServeMountArgs};
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::{Pin, State, Store};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// What `strata mount` with no argument lists: one file per live mount.
#[derive(Serialize, Deserialize)]
pub(super) struct MountRecord {
    pid: u32,
    target: String,
    mountpoint: PathBuf,
}

const RECORDS: &str = "mounts";

fn records_dir(root: &Path) -> Result<PathBuf> {
    Ok(crate::runtime::path(root)?.join(RECORDS))
}

fn record_name(mountpoint: &Path) -> String {
    let d = layerdb::Digest::of(mountpoint.as_os_str().as_encoded_bytes());
    format!("{}.json", d.short())
}

pub(super) fn record_path(root: &Path, mountpoint: &Path) -> Result<PathBuf> {
    Ok(records_dir(root)?.join(record_name(mountpoint)))
}

/// Writes the record of the mount at `mountpoint`. A server ending at the
/// same moment may take the store's empty runtime directory away between
/// its making and the write (`forget_record`): it is made again then.
fn write_record(root: &Path, mountpoint: &Path, rec: &MountRecord) -> Result<PathBuf> {
    let bytes = serde_json::to_vec(rec)?;
    let mut tries = 0;
    loop {
        let written = crate::runtime::dir(root, RECORDS).and_then(|dir| {
            let record = dir.join(record_name(mountpoint));
            std::fs::write(&record, &bytes)
                .with_context(|| format!("write {}", record.display()))?;
            Ok(record)
        });
        let gone = |e: &anyhow::Error| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        };
        match written {
            Err(e) if gone(&e) && tries < 8 => tries += 1,
            written => return written,
        }
    }
}

/// Removes a mount's record and its log, and the store's runtime
/// directory with them when it is left empty.
pub(super) fn forget_record(root: &Path, record: &Path) {
    let _ = std::fs::remove_file(record.with_extension("log"));
    let _ = std::fs::remove_file(record);
    crate::runtime::tidy(root, RECORDS);
}

/// Removes `mountpoint` (canonical), once nothing is mounted on it, if
/// `mount` made it, and the runtime directories left empty; a directory
/// the user named is theirs and stays.
pub(super) fn forget_mountpoint(root: &Path, mountpoint: &Path) {
    let made = made_mountpoints(root).and_then(|dir| Ok(std::fs::canonicalize(dir)?));
    if made.is_ok_and(|made| mountpoint.parent() == Some(&made)) {
        // Empty once unmounted: a directory, never a tree, is removed.
        let _ = std::fs::remove_dir(mountpoint);
        crate::runtime::tidy(root, MOUNTPOINTS);
    }
}

/// Forgets the mounts whose servers are gone (killed): each one's dead
/// mount is detached and the directory `mount` made for it removed, with
/// its record. Left, such a mount answered ENOTCONN to every caller, and
/// the next `mount` of the same image failed to make its directory
/// ("File exists"); a container's could be named by no command once the
/// container was removed (a review). `mount` (listing or mounting) and
/// `gc` reap them. Returns the records of the live ones.
pub(super) fn reap_dead_servers(root: &Path) -> Result<Vec<MountRecord>> {
    let Ok(dir) = std::fs::read_dir(records_dir(root)?) else {
        return Ok(Vec::new());
    };
    let mut live = Vec::new();
    for f in dir.flatten() {
        // Another `mount` listing at once may have removed a stale record
        // (and its log) since the directory was read.
        let Some(rec) = read_record(&f.path()) else {
            continue;
        };
        match liveness::process_alive(rec.pid as i32) {
            true => live.push(rec),
            false => reap(root, &f.path(), &rec),
        }
    }
    Ok(live)
}

fn read_record(record: &Path) -> Option<MountRecord> {
    serde_json::from_slice(&std::fs::read(record).ok()?).ok()
}

/// A dead server's mount, record and made directory gone. Only strata's
/// own kind of mount is detached: another server's at the path since
/// would have written its own record there. It is not asked whether it
/// answers: a stat may come from attributes the kernel holds, and over
/// io_uring a dead server's connection ends only once its ring is torn
/// down, a statfs meanwhile failing ECONNABORTED, not ENOTCONN (CI met
/// both).
fn reap(root: &Path, record: &Path, rec: &MountRecord) {
    let at = &rec.mountpoint;
    let ours = liveness::mount_at(at)
        .is_some_and(|(fstype, source)| fstype.starts_with("fuse") && source == "strata");
    if ours {
        if let Err(e) = fusefs::unmount(at) {
            log::warn!("unmount {}: {e}", at.display());
        }
    }
    forget_record(root, record);
    forget_mountpoint(root, at);
}

/// The live server of the mount whose record is at `record`.
pub(super) fn server_of(record: &Path) -> Option<i32> {
    let pid = i32::try_from(recorded_server(record)?).ok()?;
    liveness::process_alive(pid).then_some(pid)
}

/// The server the record at `record` names, alive or not.
fn recorded_server(record: &Path) -> Option<u32> {
    Some(read_record(record)?.pid)
}

/// Where `strata mount IMAGE` mounts when no directory is given: a
/// directory of its own in the store's runtime `mnt/`, which `umount`
/// removes with the mount.
const MOUNTPOINTS: &str = "mnt";

/// What `mount` and `umount` take besides a path: a container (by name or
/// id) before an image.
pub(super) enum Target {
    Container(Box<layerdb::ContainerRecord>),
    Image(layerdb::ImageRecord),
}

impl Target {
    pub(super) fn resolve(store: &Store, name: &str) -> Result<Target> {
        match liveness::container(store, name) {
            Ok(rec) => Ok(Target::Container(Box::new(rec))),
            Err(_) => Ok(Target::Image(store.resolve_image(name)?)),
        }
    }

    /// The name of the directory `mount` mounts it at when given none.
    fn dir_name(&self) -> String {
        match self {
            Target::Container(rec) => format!("container-{}", rec.short_id()),
            Target::Image(image) => format!("image-{}", image.id.short()),
        }
    }

    /// That directory, made or not.
    pub(super) fn made_mountpoint(&self, root: &Path) -> Result<PathBuf> {
        Ok(made_mountpoints(root)?.join(self.dir_name()))
    }
}

/// The directory that holds the mountpoints `mount` makes.
pub(super) fn made_mountpoints(root: &Path) -> Result<PathBuf> {
    Ok(crate::runtime::path(root)?.join(MOUNTPOINTS))
}

/// Makes the directory `mount` mounts `target` at when given none, as the
/// runtime directory's own are made (private, and again if another
/// mount's end took the store's directory away).
fn make_mountpoint(root: &Path, target: &Target) -> Result<PathBuf> {
    crate::runtime::dir(root, Path::new(MOUNTPOINTS).join(target.dir_name()))
}

pub fn mount(ctx: &Ctx, args: MountArgs) -> Result<i32> {
    let live = reap_dead_servers(&ctx.root)?;
    let Some(target) = args.target.clone() else {
        return list(&live);
    };
    let named = match &args.lower {
        Some(_) => Some(PathBuf::from(&target)),
        None => args.dir.clone(),
    };
    if let Some(dir) = &named {
        refuse_a_foreign_link(dir)?;
    }
    let mut serve = Command::new("/proc/self/exe");
    serve
        .arg("--root")
        .arg(&ctx.root)
        .arg("serve-mount")
        .arg("--inspection");
    if args.allow_other {
        serve.arg("--allow-other");
    }
    if args.passthrough {
        serve.arg("--passthrough");
    }
    let mountpoint = if let Some(lower) = &args.lower {
        // --lower A:B [--upper U] MOUNTPOINT
        serve.arg("--lower").arg(lower);
        if let Some(u) = &args.upper {
            serve.arg("--upper").arg(u);
        }
        PathBuf::from(&target)
    } else {
        // Only reads: the writer lock must not be held while the server
        // mounts (start_server waits on its pipe, without bound).
        let store = ctx.reader()?;
        let resolved = Target::resolve(&store, &target)?;
        match &resolved {
            Target::Container(rec) => {
                let paths = ContainerPaths::of(&ctx.root, rec);
                if let State::Running { pid, .. } | State::Paused { pid, .. } = rec.state {
                    // Its monitor serves it already; a rootless container's
                    // mount is visible only through its own processes.
                    if nix::unistd::geteuid().is_root() {
                        match &args.dir {
                            Some(dir) => bind_inspection(&paths.merged(), dir)?,
                            None => outln!("{}", paths.merged().display())?,
                        }
                    } else {
                        outln!("/proc/{pid}/root")?;
                    }
                    return Ok(0);
                }
                serve.arg("--container").arg(&rec.id);
            }
            Target::Image(image) => {
                serve.arg("--image").arg(format!("{:#}", image.id));
            }
        }
        serve.arg("--read-only");
        match &args.dir {
            Some(d) => d.clone(),
            None => make_mountpoint(&ctx.root, &resolved)?,
        }
    };
    start_server(serve, &mountpoint, &target)?;
    outln!("{}", std::fs::canonicalize(&mountpoint)?.display())?;
    Ok(0)
}

/// A mountpoint the caller names may be a link only if it is the
/// caller's own, as `-o` follows only the caller's (`output_file`): root's
/// `mount IMAGE DIR` followed a link another user planted as DIR in a
/// directory of theirs, and covered a directory of root's with the image
/// (a running container's writable tree, for `mount CONTAINER DIR`; a
/// review).
fn refuse_a_foreign_link(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() && !crate::output_file::is_own_link(&m) => bail!(
            "{}: a link of another user's; name the directory it leads to",
            dir.display()
        ),
        _ => Ok(()),
    }
}

/// A running container's tree at `dir`, as an inspection mount is:
/// a bind of its root filesystem, remounted `nosuid,nodev`.
fn bind_inspection(merged: &Path, dir: &Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    mount(
        Some(merged),
        dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("bind {} on {}", merged.display(), dir.display()))?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if let Err(err) = mount(None::<&str>, dir, None::<&str>, flags, None::<&str>) {
        let _ = fusefs::unmount(dir);
        return Err(err).with_context(|| format!("remount {} nosuid,nodev", dir.display()));
    }
    outln!("{}", std::fs::canonicalize(dir)?.display())?;
    Ok(())
}

/// Starts a mount server (`serve` is its command line without the
/// mountpoint) and returns once it has mounted.
pub fn start_server(mut serve: Command, mountpoint: &Path, what: &str) -> Result<()> {
    std::fs::create_dir_all(mountpoint)
        .with_context(|| format!("create {}", mountpoint.display()))?;
    let mountpoint = std::fs::canonicalize(mountpoint)?;
    serve
        .arg(&mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = serve.spawn().context("starting the mount server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    if line.trim() != "ready" {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut err)?;
        let _ = child.wait();
        bail!(
            "mounting {what} on {}: {}",
            mountpoint.display(),
            err.trim()
        );
    }
    Ok(())
}

/// The live mounts, as `reap_dead_servers` found them.
fn list(live: &[MountRecord]) -> Result<i32> {
    for rec in live {
        outln!("{} {}", rec.target, rec.mountpoint.display())?;
    }
    Ok(0)
}

/// The mount server: mounts, says "ready" on stdout, serves until unmounted.
pub fn serve(ctx: &Ctx, args: ServeMountArgs) -> Result<i32> {
    // Its own session: the server outlives the terminal that asked for it.
    let _ = nix::unistd::setsid();
    let mut pin = None;
    let (opts, target) = if let Some(lower) = &args.lower {
        let lowers: Vec<Box<dyn fusefs::Lower>> = lower
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Box::new(fusefs::DirLower::new(d)) as Box<dyn fusefs::Lower>)
            .collect();
        let mut o = fusefs::MountOptions::new(lowers, args.upper.clone());
        o.read_only = args.read_only || args.upper.is_none();
        o.upper_format = Some(fusefs::UpperFormat::for_host_owner());
        (o, lower.clone())
    } else {
        let store = Arc::new(Store::open_read_only(&ctx.root)?);
        let (image, upper, target) = match (&args.image, &args.container) {
            (Some(i), _) => (store.resolve_image(i)?, None, i.clone()),
            (None, Some(c)) => {
                let rec = store.container(c)?;
                let image = store
                    .image(&rec.image)?
                    .with_context(|| format!("the image of {c} is gone"))?;
                (
                    image,
                    Some(store.container_dir(&rec.id).upper()),
                    rec.name.clone(),
                )
            }
            (None, None) => bail!("serve-mount needs --image, --container or --lower"),
        };
        pin = Some(Pin::new(&ctx.root, &image.layers)?);
        let mut o = fusefs::MountOptions::of_image(&store, &image, upper)?;
        o.read_only = true;
        (o, target)
    };
    let mut opts = opts;
    if args.passthrough {
        // Files of 1 MiB or more, and new ones (see fusefs's passthrough).
        opts.passthrough = true;
    }
    // An inspection mount serves an image one may not trust: setuid bits
    // and device nodes in it do nothing, and only the caller may enter it
    // unless asked (as podman keeps image mounts below a root-only
    // directory). fusermount3 refuses allow_other to ordinary users
    // unless /etc/fuse.conf says user_allow_other.
    if args.inspection {
        opts.flags = fusefs::MountFlags::UNTRUSTED;
    }
    opts.allow_other = args.allow_other;
    crate::sys::one_malloc_arena();
    let handle = fusefs::mount(opts, &args.mountpoint)?;
    let rec = MountRecord {
        pid: std::process::id(),
        target,
        mountpoint: args.mountpoint.clone(),
    };
    let record = write_record(&ctx.root, &args.mountpoint, &rec)?;
    outln!("ready")?;
    // The parent stops reading after "ready": from here on errors go to a
    // log beside the mount's record.
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let _ = nix::unistd::dup2_stdout(&devnull);
    let log = std::fs::File::create(record.with_extension("log"))?;
    let _ = nix::unistd::dup2_stderr(&log);
    handle.join()?;
    // Records are named by mountpoint: after `fusermount3 -u` the path may
    // hold a new mount already, whose server wrote its own record there.
    if recorded_server(&record) == Some(rec.pid) {
        forget_record(&ctx.root, &record);
    }
    drop(pin);
    Ok(0)
}
