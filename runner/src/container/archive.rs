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
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use nix::unistd::Pid;

use crate::copy_path;
use crate::tree_tar::{self, Xattrs};

/// Whose tree: a running container's (its init's pid), or a directory
/// where a stopped container's tree is mounted.
pub enum Root {
    Process(i32),
    Dir(PathBuf),
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
    println!("{}", serde_json::to_string(&source)?);
    Ok(())
}

/// Prints what `path` is as a destination (JSON), its symlinks followed.
pub fn describe_destination(path: &str) -> anyhow::Result<()> {
    let destination = copy_path::destination(path)?;
    println!("{}", serde_json::to_string(&destination)?);
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
/// The tar crate skips entries whose names leave `dir` (`..`, or through
/// a symlink an earlier entry made).
pub fn put(dir: &str, keep_owner: bool, container: &str, input: impl Read) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail!("extraction point is not a directory: {dir} in container {container}"),
        Err(_) => bail!("Could not find the file {dir} in container {container}"),
    }
    let mut tar = tar::Archive::new(input);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(true);
    tar.set_preserve_ownerships(keep_owner);
    tar.set_overwrite(true);
    tar.unpack(dir)
        .with_context(|| format!("copying into {dir} in container {container}"))
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
    let (uid, gid) = match owner {
        Some(spec) => chown_ids(spec)?,
        None => (0, 0),
    };
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
    make_dirs(dir, uid, gid)?;
    let mut tar = tar::Archive::new(input);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    for entry in tar.entries().context("reading the tar")? {
        let mut entry = entry.context("reading the tar")?;
        let path = match rename {
            Some(name) => {
                let path = dir.join(name);
                entry
                    .unpack(&path)
                    .with_context(|| format!("copying to {}", path.display()))?;
                path
            }
            None => {
                let name = entry.path().context("a name in the tar")?.into_owned();
                if !entry
                    .unpack_in(dir)
                    .with_context(|| format!("copying {}", name.display()))?
                {
                    continue; // a name leaving `dir`, skipped by the tar crate
                }
                dir.join(name)
            }
        };
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// COPY's `--chown` spec as ids, looked up in this (chrooted) tree.
fn chown_ids(spec: &str) -> anyhow::Result<(u32, u32)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let ids = super::user::resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| anyhow::anyhow!("--chown={spec}: {e}"))?;
    match spec.contains(':') {
        true => Ok((ids.uid, ids.gid)),
        false => Ok((ids.uid, ids.uid)),
    }
}

/// `mkdir -p dir`, the directories it makes owned by `uid`:`gid`.
fn make_dirs(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut at = PathBuf::from("/");
    for part in dir.components().skip(1) {
        at.push(part);
        match std::fs::metadata(&at) {
            Ok(md) if md.is_dir() => continue,
            Ok(_) => bail!("mkdir {}: not a directory", at.display()),
            Err(_) => {}
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
