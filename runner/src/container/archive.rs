//! The container's side of `strata cp`, run as `strata __archive` in a
//! process of its own. It enters the container's tree and chroots there,
//! so every path it resolves, symlinks included, stays inside the
//! container, however the container's processes change the tree while
//! it works (CVE-2018-15664: a directory swapped for a symlink to the
//! host's `/` between docker's check and its copy). Then it answers one
//! question about a path (as JSON on stdout) or moves one tar: out of
//! the container on stdout, or into it from stdin.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use nix::unistd::Pid;

use crate::copy_path;
use crate::tree_tar::{self, Xattrs};
use layerdb::unpack_dest::Destination;

/// Whose tree: a running container's (its init's pid), a directory
/// where a stopped container's tree is mounted, or a host directory that
/// other users may change, into which a copy comes out of the container:
/// chrooted there, root's copy cannot be led out of it by a directory
/// they swap for a link while it runs.
pub enum Root {
    Process(i32),
    Dir(PathBuf),
    HostDir(PathBuf),
}

/// Makes the container's tree this process's root. Call it in a process
/// with one thread, before anything else.
pub fn enter(root: &Root) -> anyhow::Result<()> {
    // Not dumpable before it joins anything: the container's root, which
    // may trace the processes of its user namespace, cannot attach to
    // this one or open its /proc files (runc's exec does the same).
    nix::sys::prctl::set_dumpable(false).context("prctl PR_SET_DUMPABLE")?;
    let dir = match root {
        Root::Process(pid) => super::namespaces::open_root_filesystem(Pid::from_raw(*pid))?,
        Root::Dir(dir) => File::open(dir).with_context(|| format!("open {}", dir.display()))?,
        // Resolved by the caller: a link on the path now is someone's swap.
        Root::HostDir(dir) => {
            let how = rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
            let resolve = rustix::fs::ResolveFlags::NO_SYMLINKS;
            rustix::fs::openat2(
                rustix::fs::CWD,
                dir,
                how,
                rustix::fs::Mode::empty(),
                resolve,
            )
            .map(File::from)
            .with_context(|| format!("open {}", dir.display()))?
        }
    };
    nix::unistd::fchdir(&dir).context("enter the container's root")?;
    nix::unistd::chroot(".").context("chroot into the container's root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// Prints what `path` is as a source (JSON; `null` when nothing is
/// there).
pub fn describe_source(path: &str, follow: bool) -> anyhow::Result<()> {
    let source = copy_path::source(path, follow).with_context(|| format!("lstat {path}"))?;
    outln!("{}", serde_json::to_string(&source)?)?;
    Ok(())
}

/// Prints what `path` is as a destination (JSON), its symlinks followed.
pub fn describe_destination(path: &str) -> anyhow::Result<()> {
    let destination = copy_path::destination(path)?;
    outln!("{}", serde_json::to_string(&destination)?)?;
    Ok(())
}

/// Writes the tree at `path` as a tar, its top entry named `name`.
pub fn get(path: &str, name: &str, follow: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let tree = match follow {
        true => std::fs::canonicalize(path).with_context(|| format!("resolve {path}"))?,
        false => PathBuf::from(path),
    };
    tree_tar::write(&tree, Path::new(name), Xattrs::All, out)
}

/// Unpacks a tar into the directory `dir`, as docker's daemon does:
/// modes, times and file capabilities as the tar has them, owned by the
/// container's root unless `keep_owner` (`cp -a`) keeps the tar's ids.
/// Names that would leave `dir` (`..`, or through a symlink an earlier
/// entry made) are refused.
pub fn put(dir: &str, keep_owner: bool, container: &str, input: impl Read) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail!("extraction point is not a directory: {dir} in container {container}"),
        Err(_) => bail!("Could not find the file {dir} in container {container}"),
    }
    // Without -a, the container's root, whose ids this process has: set
    // where a setgid directory would give its group instead.
    let own = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let owner = |header: &tar::Header| -> anyhow::Result<(u32, u32)> {
        Ok(match keep_owner {
            true => (header.uid()? as u32, header.gid()? as u32),
            false => own,
        })
    };
    unpack(Path::new(dir), input, &owner, None)
        .with_context(|| format!("copying into {dir} in container {container}"))
}

/// The ids an entry gets.
type Owner<'a> = dyn Fn(&tar::Header) -> anyhow::Result<(u32, u32)> + 'a;

/// Unpacks every entry of `input` under `dir` (or, with `rename`, its one
/// entry as `dir/rename`): modes, times and xattrs as the tar has them,
/// owners as `owner` says; directories' times set last, once their
/// entries are in.
fn unpack(
    dir: &Path,
    input: impl Read,
    owner: &Owner<'_>,
    rename: Option<&std::ffi::OsStr>,
) -> anyhow::Result<()> {
    // Modes as the tar has them (this is a process of its own); the
    // directories made for a name's parents get 0755 explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let mut tar = tar::Archive::new(input);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(true);
    tar.set_overwrite(true);
    let mut dest = Destination::new(dir)?;
    let mut dirs = Vec::new();
    for entry in tar.entries().context("reading the tar")? {
        let mut entry = entry.context("reading the tar")?;
        let kind = entry.header().entry_type();
        // PAX and GNU records that describe other entries (a `git
        // archive`'s global header): nothing to make.
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let name = entry.path().context("a name in the tar")?.into_owned();
        let path = match rename {
            Some(rename) => dir.join(rename),
            None => match dest.entry(&name)? {
                Some(path) => path,
                // The destination itself (`./`): left as it is.
                None => continue,
            },
        };
        let ids = owner(entry.header())?;
        if matches!(
            kind,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse
        ) {
            write_file(&mut entry, &path, ids)?;
            continue;
        }
        // Where `place` put it; a hard link's target is checked by the
        // tar crate.
        let made = match kind {
            tar::EntryType::Link if rename.is_none() => entry.unpack_in(dest.root()),
            _ => entry.unpack(&path).map(|_| true),
        }
        .with_context(|| format!("copying {}", name.display()))?;
        // A hard link's owner and mode are its target's, set already
        // (a chown here would clear the target's set-id bits).
        if !made || kind == tar::EntryType::Link {
            continue;
        }
        let (uid, gid) = ids;
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
        // A chown clears set-id bits: the tar's mode again.
        if kind == tar::EntryType::Directory {
            let mode = entry.header().mode()? & 0o7777;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        if kind == tar::EntryType::Directory {
            dest.made_dir(&path);
            dirs.push((path, entry.header().mtime()?));
        }
    }
    for (path, mtime) in dirs.into_iter().rev() {
        let time = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &path,
            &time,
            &time,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(())
}

/// A regular file's entry written at `path` in 1 MiB writes (the tar
/// crate writes 8 KiB ones, each a round trip to the container's FUSE
/// server), then its owner, mode and xattrs (after the chown, which would
/// drop a file capability) and times. Every call here is a request to
/// that server, so the file is made with its permission bits (the umask
/// is 0 here), chowned only where it did not get the ids it needs (a
/// setgid directory gives its group), and its mode set again only for
/// set-id and sticky bits (a write by a server that lacks CAP_FSETID, as
/// rootless, would clear them). A copy of /usr/share/doc (4,443 files,
/// 136 MB) into a stopped container took 50,385 requests instead of the
/// tar crate's 94,799, and 1.8-2.0 s instead of 2.5 s on a store in tmpfs
/// (`tar -x` there: 0.12 s). A file cut short is removed.
fn write_file(
    entry: &mut tar::Entry<'_, impl Read>,
    path: &Path,
    ids: (u32, u32),
) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let writing = || format!("copying to {}", path.display());
    let mode = entry.header().mode()? & 0o7777;
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
    };
    let mut file = match create() {
        // What is there is replaced, as the tar crate replaces it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path).with_context(writing)?;
            create()
        }
        other => other,
    }
    .with_context(writing)?;
    let written = (|| -> anyhow::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
        }
        let made = file.metadata()?;
        if ids != (made.uid(), made.gid()) {
            std::os::unix::fs::fchown(&file, Some(ids.0), Some(ids.1))?;
        }
        if mode & 0o7000 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        if let Some(records) = entry.pax_extensions()? {
            for record in records {
                let record = record?;
                let Some(name) = record
                    .key()
                    .ok()
                    .and_then(|k| k.strip_prefix("SCHILY.xattr."))
                else {
                    continue;
                };
                xattr::FileExt::set_xattr(&file, name, record.value_bytes())?;
            }
        }
        let mtime = nix::sys::time::TimeSpec::new(entry.header().mtime()? as i64, 0);
        nix::sys::stat::futimens(&file, &mtime, &mtime)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written.with_context(writing)
}

/// Unpacks a tar into `dest` as a Dockerfile's COPY places it (`build`):
/// the directories of `dest` that are missing are made (mode 0755), and
/// they and everything unpacked belong to `owner` (`--chown`: a user, a
/// `user:group`, names looked up in the container's /etc/passwd and
/// /etc/group; a user alone gives its uid as the group too, as docker
/// does), else to root. With `one_file`, the tar holds one entry, which
/// becomes `dest` itself unless `dest` is a directory (COPY's rule for a
/// single file to a path without a trailing `/`).
pub fn copy(
    dest: &str,
    owner: Option<&str>,
    one_file: bool,
    input: impl Read,
) -> anyhow::Result<()> {
    let ids = owner.map(chown_ids).transpose()?;
    let dest = Path::new(dest);
    let (dir, rename) = match one_file && !dest.is_dir() {
        true => {
            let name = dest
                .file_name()
                .context("COPY's destination names no file")?;
            (dest.parent().unwrap_or(Path::new("/")), Some(name))
        }
        false => (dest, None),
    };
    let (uid, gid) = ids.unwrap_or((0, 0));
    make_dirs(dir, uid, gid)?;
    // --chown's ids, else the tar's (root's for the context's files, an
    // ADD archive's own).
    let owner = |header: &tar::Header| -> anyhow::Result<(u32, u32)> {
        Ok(match ids {
            Some(ids) => ids,
            None => (header.uid()? as u32, header.gid()? as u32),
        })
    };
    unpack(dir, input, &owner, rename)
}

/// COPY's `--chown` spec as ids, looked up in this (chrooted) tree, its
/// account files read as `user::read_account_file` reads them, links not
/// followed.
fn chown_ids(spec: &str) -> anyhow::Result<(u32, u32)> {
    let read = |path| super::user::read_account_file(path, false);
    let ids = super::user::resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| anyhow::anyhow!("--chown={spec}: {e}"))?;
    match spec.contains(':') {
        true => Ok((ids.uid, ids.gid)),
        false => Ok((ids.uid, ids.uid)),
    }
}

/// `mkdir -p dir`, the directories it makes owned by `uid`:`gid`. A link
/// on the way to a directory not there yet is followed and its target
/// made, as docker's MkdirAll does (`RUN ln -s /data /w` then `WORKDIR
/// /w`): this runs chrooted in the container's tree, where no link leads
/// out of it.
fn make_dirs(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    make_dirs_within(dir, uid, gid, 0)
}

/// Links followed before giving up, as the kernel's ELOOP.
const LINKS_FOLLOWED_MAX: usize = 40;

fn make_dirs_within(dir: &Path, uid: u32, gid: u32, links: usize) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut at = PathBuf::from("/");
    for part in dir.components().skip(1) {
        at.push(part);
        match std::fs::metadata(&at) {
            Ok(md) if md.is_dir() => continue,
            Ok(_) => bail!("mkdir {}: not a directory", at.display()),
            Err(_) => {}
        }
        if let Ok(target) = std::fs::read_link(&at) {
            if links >= LINKS_FOLLOWED_MAX {
                bail!("mkdir {}: too many levels of symbolic links", dir.display());
            }
            let parent = at.parent().unwrap_or(Path::new("/"));
            make_dirs_within(&parent.join(target), uid, gid, links + 1)?;
            continue;
        }
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&at)
            .with_context(|| format!("mkdir {}", at.display()))?;
        std::os::unix::fs::lchown(&at, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", at.display()))?;
    }
    Ok(())
}
