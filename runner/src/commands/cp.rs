//! `strata cp`: files between a container and the host, placed as
//! docker's `cp` places them (`copy_path`), and `__archive`, the process
//! that works inside the container's tree (`container::archive`). The two
//! pass a tar, as docker's client and daemon do.
//!
//! A running container's tree is the one its processes see, its volumes
//! included. A stopped one's is mounted privately for the copy (read-only
//! to copy out of it), and its starts wait meanwhile (its start lock): two
//! servers must never write one upper. A rootless store's stopped
//! container is mounted in strata's user namespace (the copy runs again
//! through `strata unshare`), where the container's root is root, so what
//! is copied in belongs to it.

use super::Ctx;
use crate::cli::{ArchiveArgs, ArchiveOp, CopyInArgs, CpArgs};
use crate::container::archive::{self, Root};
use crate::copy_path::{self, Destination, Endpoint, Source};
use crate::{liveness, tree_tar, ExitCode};
use anyhow::{anyhow, bail, Context, Result};
use layerdb::{ContainerRecord, State};
use nix::mount::MsFlags;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

pub fn cp(ctx: &Ctx, args: CpArgs) -> Result<i32> {
    // docker's client refuses these: an empty destination (an unset
    // variable) lost the copy, or spilled a tree into the current
    // directory.
    if args.src.is_empty() {
        bail!("source can not be empty");
    }
    if args.dst.is_empty() {
        bail!("destination can not be empty");
    }
    // A stopped container's tree is served from this process.
    crate::server_faults::keep();
    if nix::unistd::geteuid().is_root() {
        // A stopped container's tree is mounted for the copy: in a
        // namespace of our own it goes with us, even on kill -9.
        crate::container::private_mount_namespace()?;
    }
    let (container, path, local, outward) =
        match (Endpoint::parse(&args.src), Endpoint::parse(&args.dst)) {
            (Endpoint::Container { .. }, Endpoint::Container { .. }) => {
                bail!("copying between containers is not supported")
            }
            (Endpoint::Local(_), Endpoint::Local(_)) => {
                bail!("must specify at least one container source")
            }
            (Endpoint::Container { container, path }, Endpoint::Local(local)) => {
                (container, path, local, true)
            }
            (Endpoint::Local(local), Endpoint::Container { container, path }) => {
                (container, path, local, false)
            }
        };
    let path = copy_path::clean_container_path(&path);
    let rec = liveness::container(&ctx.reader()?, container)?;
    if !outward && rec.security.read_only_rootfs {
        let writable = rec.mounts.iter().filter(|m| !m.read_only);
        if !copy_path::under_any(&path, writable.map(|m| m.target.as_str())) {
            bail!("container rootfs is marked read-only");
        }
    }
    let Some(tree) = ContainerTree::open(ctx, &rec, !outward, &path)? else {
        return in_user_namespace(ctx, &args);
    };
    let copied = match outward {
        true => copy_out(ctx, &tree, &path, local, args.follow_link)?,
        false => copy_in(ctx, &tree, local, &path, &args)?,
    };
    if !args.quiet && std::io::stderr().is_terminal() {
        // docker's client counts the tar's bytes, shown with go-units'
        // `HumanSize` (four digits).
        let size = crate::humanize::human_size_with_precision(copied as f64, 4);
        eprintln!("Successfully copied {size} to {}", args.dst);
    }
    Ok(0)
}

/// From the container to the host (or to stdout as a tar, `-`). Returns
/// the tar's size.
fn copy_out(ctx: &Ctx, tree: &ContainerTree, path: &str, local: &str, follow: bool) -> Result<u64> {
    let follow_flag: &[&str] = if follow { &["--follow"] } else { &[] };
    let src: Option<Source> = tree.ask(ctx, &[&["source"], follow_flag, &["--", path]].concat())?;
    let src =
        src.ok_or_else(|| anyhow!("Could not find the file {path} in container {}", tree.name))?;
    // Where the host's side goes, decided before anything is read.
    let place = match local {
        "-" => None,
        _ => {
            let dst = copy_path::destination(local)?;
            // A file unpacked over /dev/null would replace the device.
            if dst.is_special {
                bail!("destination \"{local}\" must be a directory or a regular file");
            }
            Some(copy_path::placement(&src, &dst)?)
        }
    };
    let name = place.as_ref().map_or(&src.name, |p| &p.name);
    let mut child = tree
        .helper(ctx)
        .args([&["get"], follow_flag, &["--", path, name]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting strata __archive")?;
    let mut tar = Counted::new(child.stdout.take().expect("piped"));
    let copied = match &place {
        None => std::io::copy(&mut tar, &mut std::io::stdout().lock())
            .map(drop)
            .context("writing the tar to stdout"),
        Some(place) => unpack_into_place(ctx, &tree.name, &mut tar, place),
    };
    let bytes = tar.bytes;
    // A reader that stopped early closes the pipe: the helper then ends.
    drop(tar);
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said);
    }
    // The helper's failure explains a copy cut short (a damaged chunk);
    // one that only met the pipe this side closed does not: this side's
    // own failure does (a full disk was reported as a broken pipe, found
    // by a review).
    match helper_done(child) {
        Err(_) if copied.is_err() && said.contains("Broken pipe") => copied.map(|()| bytes),
        Err(e) => {
            // Its error, with what the tree served here found wrong.
            if !said.trim().is_empty() {
                eprintln!("{}", crate::server_faults::with_cause(said.trim_end()));
            }
            Err(e)
        }
        Ok(()) => copied.map(|()| bytes),
    }
}

/// Unpacks the copy beside its destination, then renames it into place
/// once whole: a copy cut short (killed, a damaged chunk, a full disk)
/// leaves the destination as it was, where it left half a file under its
/// name (found by a review). A directory copied into one that exists is
/// merged into it, as docker does, which no rename can do: unpacked in
/// place then, as into a directory another user may write to. Killed, a
/// copy leaves its `.strata-cp-*` directory.
fn unpack_into_place(
    ctx: &Ctx,
    container: &str,
    tar: &mut dyn Read,
    place: &copy_path::Placement,
) -> Result<()> {
    let dir = Path::new(&place.dir);
    let target = dir.join(&place.name);
    let merged = place.name == "." || target.symlink_metadata().is_ok_and(|m| m.is_dir());
    // The aside directory is used by its path: in a directory another
    // user may write to, that user could swap it for a link and have
    // root's copy land anywhere (a review did, within the session that
    // made it). Unpacked in place there, as before.
    let others_write = std::fs::metadata(dir).map_or(true, |m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o022 != 0
    });
    if merged || others_write {
        return unpack_in_place(ctx, container, tar, dir);
    }
    let aside = tempfile::Builder::new()
        .prefix(".strata-cp-")
        .tempdir_in(dir)
        .with_context(|| format!("copying into {}", dir.display()))?;
    tree_tar::unpack_on_host(tar, aside.path(), aside.path())?;
    std::fs::rename(aside.path().join(&place.name), &target)
        .with_context(|| format!("copying into {}", target.display()))
}

/// Unpacks the copy into `dir` as it is, where other users may write (a
/// directory merged into may hold theirs): by a helper chrooted at `dir`
/// (`__archive --host-dir`), as docker's daemon unpacks through its
/// chrootarchive. Unpacked by path, a directory of theirs swapped for a
/// link to one of root's while the copy ran had the rest of it written
/// there, over root's files (a review: 2,985 files in a root-only
/// directory). A caller without the right to chroot (an ordinary user,
/// who gives away no more than their own rights) unpacks here.
fn unpack_in_place(ctx: &Ctx, container: &str, tar: &mut dyn Read, dir: &Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return tree_tar::unpack_on_host(tar, dir, dir);
    }
    // Resolved now; the helper refuses a link on this path from here on.
    let real = std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
    let mut child = Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&ctx.root)
        .arg("__archive")
        .arg("--host-dir")
        .arg(&real)
        .args(["--name", container, "unpack"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting strata __archive")?;
    let mut input = child.stdin.take().expect("piped");
    let fed = std::io::copy(tar, &mut input);
    drop(input);
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said);
    }
    let status = child.wait().context("waiting for strata __archive")?;
    // The helper's failure first: it explains a write that broke its pipe.
    // Its line becomes this copy's error, which `copy_out` weighs against
    // the source's (one line, as unpacked here).
    if !status.success() {
        let line = said.lines().last().unwrap_or_default();
        bail!("{}", line.strip_prefix("Error: ").unwrap_or(line));
    }
    fed.map(drop)
        .with_context(|| format!("copying into {}", dir.display()))
}

/// From the host (or a tar on stdin, `-`) into the container. Returns the
/// tar's size.
fn copy_in(ctx: &Ctx, tree: &ContainerTree, local: &str, path: &str, args: &CpArgs) -> Result<u64> {
    let dst: Destination = tree.ask(ctx, &["destination", "--", path])?;
    let whole = format!("{}:{path}", tree.name);
    if dst.is_special {
        bail!("destination \"{whole}\" must be a directory or a regular file");
    }
    let (dir, source) = match local {
        "-" if dst.exists && dst.is_dir => (dst.path.clone(), None),
        "-" => bail!("destination \"{whole}\" must be a directory"),
        _ => {
            let src = copy_path::source(local, args.follow_link)
                .with_context(|| format!("lstat {local}"))?
                .ok_or_else(|| anyhow!("lstat {local}: no such file or directory"))?;
            let place = copy_path::placement(&src, &dst)?;
            (place.dir, Some((src, place.name)))
        }
    };
    let keep_owner: &[&str] = if args.archive { &["--keep-owner"] } else { &[] };
    let mut child = tree
        .helper(ctx)
        .args([&["put"], keep_owner, &["--", &dir]].concat())
        .stdin(Stdio::piped())
        .spawn()
        .context("starting strata __archive")?;
    let mut tar = Counted::new(child.stdin.take().expect("piped"));
    let written = match &source {
        None => std::io::copy(&mut std::io::stdin().lock(), &mut tar)
            .map(drop)
            .context("reading the tar from stdin"),
        Some((src, name)) => {
            let tree_root = match args.follow_link {
                true => std::fs::canonicalize(local).with_context(|| format!("resolve {local}"))?,
                false => Path::new(&src.path).to_path_buf(),
            };
            tree_tar::write(
                &tree_root,
                Path::new(name),
                tree_tar::Xattrs::Capability,
                &mut tar,
            )
        }
    };
    let bytes = tar.bytes;
    // End of the tar: the helper finishes and exits.
    drop(tar);
    // The helper's failure first: it explains a write that broke its pipe.
    helper_done(child)?;
    written.map(|()| bytes)
}

/// Waits for `__archive`, which printed its own error line when it failed.
fn helper_done(mut child: Child) -> Result<()> {
    let status = child.wait().context("waiting for strata __archive")?;
    match status.success() {
        true => Ok(()),
        false => Err(ExitCode(status.code().unwrap_or(125)).into()),
    }
}

/// The container's tree while the copy lasts.
struct ContainerTree {
    name: String,
    root: TreeRoot,
}

enum TreeRoot {
    /// Through the running container's init.
    Running { pid: i32 },
    /// A stopped container's, mounted for the copy.
    Mounted(Box<MountedTree>),
}

/// A stopped container's tree mounted here for the copy with its volumes
/// bound into it, and unmounted when dropped: the fields drop in order,
/// the volumes, the mount, its directory, the pin on its layers and the
/// start lock.
struct MountedTree {
    _volumes: VolumeBinds,
    _mount: fusefs::MountHandle,
    dir: tempfile::TempDir,
    _pin: layerdb::Pin,
    _turn: nix::fcntl::Flock<std::fs::File>,
}

impl ContainerTree {
    /// The tree of `rec`, writable or not. `None` for a stopped container
    /// of a rootless store, outside strata's user namespace: the copy
    /// must run there. A path on a stopped container's tmpfs is refused
    /// (it holds nothing until the container runs).
    fn open(
        ctx: &Ctx,
        rec: &ContainerRecord,
        writable: bool,
        path: &str,
    ) -> Result<Option<ContainerTree>> {
        let name = rec.name.clone();
        if let State::Running { pid, .. } | State::Paused { pid, .. } = rec.state {
            let root = TreeRoot::Running { pid };
            return Ok(Some(ContainerTree { name, root }));
        }
        // The volume holding the path, if the path names one (the deepest
        // target holding it): docker's messages for the two it refuses.
        let volume = (rec.mounts.iter())
            .filter(|m| copy_path::under_any(path, [&*m.target]))
            .max_by_key(|m| m.target.len());
        if let Some(m) = volume.filter(|_| writable) {
            if m.read_only {
                bail!("mounted volume is marked read-only");
            }
            // Written into, it would be the host's directory that the
            // copy replaces a file in.
            if !m.source.is_dir() {
                bail!("{path} is the host file {} bound into stopped container {name}: copy into it while the container runs", m.source.display());
            }
        }
        if rec
            .tmpfs
            .iter()
            .any(|t| copy_path::under_any(path, [&*t.target]))
        {
            bail!("{path} is on a tmpfs of stopped container {name}, which holds nothing until it runs");
        }
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let turn = super::start::take_turn(ctx, rec)?;
        let store = Arc::new(ctx.reader()?);
        let rec = liveness::container(&store, &rec.id)?;
        if rec.state.is_running() {
            // Started before the lock was ours: its own tree, then.
            drop(turn);
            return Self::open(ctx, &rec, writable, path);
        }
        let image = store
            .image(&rec.image)?
            .with_context(|| format!("the image of {name} is gone"))?;
        let pin = layerdb::Pin::new(&ctx.root, &image.layers)?;
        let dir = ctx.scratch_dir("cp")?;
        let mut opts = fusefs::MountOptions::of_image(
            &store,
            &image,
            Some(store.container_dir(&rec.id).upper()),
        )?;
        // Writable while the volumes' mount points are made (as a start
        // makes them), then read-only if the copy only reads.
        opts.read_only = !writable && rec.mounts.is_empty();
        // The helper works in this tree as root of the host, outside the
        // container's device cgroup: a device node the image holds (an
        // /etc/passwd made `b 7 0`) must not open the host's device.
        opts.flags = fusefs::MountFlags::UNTRUSTED;
        // Walked by this process (the volumes' binds): over /dev/fuse (see
        // `fusefs::client_thread`).
        opts.io_uring = false;
        let mount = fusefs::mount(opts, dir.path())?;
        let volumes = VolumeBinds::bind(dir.path(), &rec.mounts)?;
        if !writable && !rec.mounts.is_empty() {
            let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            // Its statfs is answered by this process's server.
            fusefs::client_thread(|| crate::container::remount(dir.path(), flags))??;
        }
        let root = TreeRoot::Mounted(Box::new(MountedTree {
            _volumes: volumes,
            _mount: mount,
            dir,
            _pin: pin,
            _turn: turn,
        }));
        Ok(Some(ContainerTree { name, root }))
    }

    /// `strata __archive` for this tree, to which the operation's
    /// arguments are added.
    fn helper(&self, ctx: &Ctx) -> Command {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("--root").arg(&ctx.root).arg("__archive");
        match &self.root {
            TreeRoot::Running { pid } => cmd.arg("--pid").arg(pid.to_string()),
            TreeRoot::Mounted(tree) => cmd.arg("--dir").arg(tree.dir.path()),
        };
        cmd.arg("--name").arg(&self.name);
        cmd
    }

    /// What `__archive` answers about a path (its JSON).
    fn ask<T: serde::de::DeserializeOwned>(&self, ctx: &Ctx, op: &[&str]) -> Result<T> {
        let out = self
            .helper(ctx)
            .args(op)
            .stderr(Stdio::inherit())
            .output()
            .context("starting strata __archive")?;
        if !out.status.success() {
            return Err(ExitCode(out.status.code().unwrap_or(125)).into());
        }
        serde_json::from_slice(&out.stdout).context("reading strata __archive's answer")
    }
}

/// The copy again, in strata's user namespace (see the module's comment).
fn in_user_namespace(ctx: &Ctx, args: &CpArgs) -> Result<i32> {
    let mut again = vec!["cp".to_string()];
    for (set, flag) in [
        (args.archive, "--archive"),
        (args.follow_link, "--follow-link"),
        (args.quiet, "--quiet"),
    ] {
        if set {
            again.push(flag.to_string());
        }
    }
    again.extend(["--".to_string(), args.src.clone(), args.dst.clone()]);
    again_in_user_namespace(ctx, &again)
}

/// This strata run again with `args`, through `strata unshare`.
fn again_in_user_namespace(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("--root").arg(&ctx.root).arg("unshare").arg("--");
    cmd.arg("/proc/self/exe")
        .arg("--root")
        .arg(&ctx.root)
        .args(args);
    let status = cmd.status().context("starting strata unshare")?;
    Ok(status.code().unwrap_or(125))
}

/// `strata __copy-in CONTAINER DEST`: a tar on stdin put into a stopped
/// container as a Dockerfile's COPY puts it (`build` runs this for each
/// COPY and ADD; `container::archive::copy` says how).
pub fn copy_in_for_build(ctx: &Ctx, args: CopyInArgs) -> Result<i32> {
    if nix::unistd::geteuid().is_root() {
        crate::container::private_mount_namespace()?;
    }
    let rec = liveness::container(&ctx.reader()?, &args.container)?;
    let mut flags: Vec<String> = args.owner.iter().map(|o| format!("--owner={o}")).collect();
    if args.one_file {
        flags.push("--one-file".to_string());
    }
    let Some(tree) = ContainerTree::open(ctx, &rec, true, &args.dest)? else {
        let again = [
            &["__copy-in".to_string()],
            &flags[..],
            &["--".to_string(), args.container.clone(), args.dest.clone()],
        ]
        .concat();
        return again_in_user_namespace(ctx, &again);
    };
    let op = [
        &["copy".to_string()],
        &flags[..],
        &["--".to_string(), args.dest.clone()],
    ]
    .concat();
    let child = tree
        .helper(ctx)
        .args(&op)
        .spawn()
        .context("starting strata __archive")?;
    helper_done(child)?;
    Ok(0)
}

/// `strata __archive`: enters the container's tree, then does one thing
/// (`container::archive`).
pub fn archive_in(args: ArchiveArgs) -> Result<i32> {
    let host_dir = args.host_dir.clone();
    let root = match (args.pid, args.dir, args.host_dir) {
        (Some(pid), _, _) => Root::Process(pid),
        (None, Some(dir), _) => Root::Dir(dir),
        (None, None, Some(dir)) => Root::HostDir(dir),
        (None, None, None) => bail!("__archive needs --pid, --dir or --host-dir"),
    };
    archive::enter(&root)?;
    match args.op {
        ArchiveOp::Source { path, follow } => archive::describe_source(&path, follow)?,
        ArchiveOp::Destination { path } => archive::describe_destination(&path)?,
        ArchiveOp::Get {
            path,
            entry,
            follow,
        } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            archive::get(&path, &entry, follow, &mut out)?;
            out.flush()?;
        }
        ArchiveOp::Put { dir, keep_owner } => {
            archive::put(&dir, keep_owner, &args.name, std::io::stdin().lock())?
        }
        ArchiveOp::Copy {
            owner,
            one_file,
            dest,
        } => archive::copy(&dest, owner.as_deref(), one_file, std::io::stdin().lock())?,
        ArchiveOp::Unpack => {
            let shown = host_dir.unwrap_or_default();
            tree_tar::unpack_on_host(&mut std::io::stdin().lock(), Path::new("/"), &shown)?
        }
    }
    Ok(0)
}

/// A stopped container's volumes bound into its tree for a copy, where
/// its start binds them (a mount over another's directory after it);
/// unbound when dropped, before the tree is unmounted. Both walk the
/// tree this process serves, so they run apart from its server
/// (`fusefs::client_thread`).
struct VolumeBinds(Vec<std::path::PathBuf>);

impl VolumeBinds {
    fn bind(root: &Path, mounts: &[layerdb::BindMount]) -> Result<VolumeBinds> {
        let mut binds = VolumeBinds(Vec::new());
        let bound = &mut binds.0;
        fusefs::client_thread(|| crate::container::bind_volumes_for_copy(root, mounts, bound))??;
        Ok(binds)
    }
}

impl Drop for VolumeBinds {
    fn drop(&mut self) {
        let unbind = || {
            for target in self.0.iter().rev() {
                if let Err(e) = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
                    log::warn!("unmount {}: {e}", target.display());
                }
            }
        };
        if let Err(e) = fusefs::client_thread(unbind) {
            log::warn!("unbinding the volumes: {e}");
        }
    }
}

/// A reader or writer that counts the bytes through it.
struct Counted<T> {
    inner: T,
    bytes: u64,
}

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        Counted { inner, bytes: 0 }
    }
}

impl<T: Read> Read for Counted<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<T: Write> Write for Counted<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
