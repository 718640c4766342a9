//! A directory tree written as a tar the way docker writes one, for
//! `export` (a container's whole tree) and `cp` (a file or tree going into
//! or out of a container), and a tar unpacked on the host.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Which extended attributes go into the tar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Xattrs {
    /// Every one (a container's tree read through its union, which shows
    /// only the container's own).
    All,
    /// `security.capability` alone, as docker's archives carry: a host
    /// tree's other attributes (SELinux labels, `trusted.*`) belong to the
    /// host.
    Capability,
}

/// Writes the tree at `tree` as docker does: the root entry named `name`
/// (`.` for a tree whose entries go in at the top, as `export` writes
/// it), every other entry by its path under that name, in name order, a
/// file with several names once and its other names as hardlinks to the
/// first, and each entry's xattrs as PAX `SCHILY.xattr.*` records, which
/// `import`, `load` and `cp` read back. Sockets are left out, as docker
/// leaves them (a tar has no type for them). (`tar::Builder::append_dir_all`
/// wrote each name of a file as a whole copy and no xattrs: file
/// capabilities were lost.) A kernel filesystem mounted in the tree (a
/// running container's /proc, /sys, /dev/pts) is an empty directory, as
/// docker's copy of a container's root has them: its files are the
/// kernel's, not the container's, and some refuse to be read (`cp
/// CTR:/ DIR` of a running container failed on /proc/1/attr/current).
pub fn write(tree: &Path, name: &Path, xattrs: Xattrs, out: &mut dyn Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Each entry with the device of the directory holding it: where the
    // two differ, a mount begins.
    let mut stack = vec![(tree.to_path_buf(), name.to_path_buf(), None)];
    while let Some((host, name, parent_dev)) = stack.pop() {
        let reading = || format!("reading {}", host.display());
        let md = std::fs::symlink_metadata(&host).with_context(reading)?;
        if md.file_type().is_socket() {
            continue;
        }
        if md.is_file() && md.nlink() > 1 {
            if let Some(first) = first_names.get(&(md.dev(), md.ino())) {
                let mut header = tar::Header::new_gnu();
                header.set_metadata(&md);
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                tar.append_link(&mut header, &name, first)?;
                continue;
            }
            first_names.insert((md.dev(), md.ino()), name.clone());
        }
        let records = xattr_records(&host, xattrs).with_context(reading)?;
        if !records.is_empty() {
            let records = records.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
            tar.append_pax_extensions(records)?;
        }
        match special_header(&md) {
            // tar 0.4.46 names a fifo's or a device's entry by its host
            // path, then refuses it as absolute: written here instead.
            Some(mut header) => tar.append_data(&mut header, &name, std::io::empty()),
            None => tar.append_path_with_name(&host, &name),
        }
        .with_context(reading)?;
        let mount = parent_dev != Some(md.dev());
        if md.is_dir() && !(mount && is_kernel_filesystem(&host)) {
            let mut names = std::fs::read_dir(&host)
                .with_context(reading)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<_>>>()
                .with_context(reading)?;
            names.sort();
            for n in names.into_iter().rev() {
                // Names as the tar writer spells them ("bin", not
                // "./bin"): hardlinks name their targets the same way.
                let inner = match name == Path::new(".") {
                    true => PathBuf::from(&n),
                    false => name.join(&n),
                };
                stack.push((host.join(&n), inner, Some(md.dev())));
            }
        }
    }
    tar.into_inner()?;
    Ok(())
}

/// Whether the directory `dir` is on one of the kernel's own filesystems
/// (what a container's runtime mounts besides its tree and volumes).
fn is_kernel_filesystem(dir: &Path) -> bool {
    use nix::sys::statfs::*;
    const KERNEL: [FsType; 9] = [
        PROC_SUPER_MAGIC,
        SYSFS_MAGIC,
        DEVPTS_SUPER_MAGIC,
        CGROUP_SUPER_MAGIC,
        CGROUP2_SUPER_MAGIC,
        SECURITYFS_MAGIC,
        DEBUGFS_MAGIC,
        TRACEFS_MAGIC,
        BPF_FS_MAGIC,
    ];
    statfs(dir).is_ok_and(|fs| KERNEL.contains(&fs.filesystem_type()))
}

/// The header of a fifo or a device node, `None` for other files.
fn special_header(md: &std::fs::Metadata) -> Option<tar::Header> {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = md.file_type();
    let entry_type = match () {
        _ if kind.is_fifo() => tar::EntryType::Fifo,
        _ if kind.is_char_device() => tar::EntryType::Char,
        _ if kind.is_block_device() => tar::EntryType::Block,
        _ => return None,
    };
    let mut header = tar::Header::new_gnu();
    header.set_metadata(md);
    header.set_entry_type(entry_type);
    header.set_size(0);
    if entry_type != tar::EntryType::Fifo {
        let rdev = md.rdev();
        header
            .set_device_major(nix::sys::stat::major(rdev) as u32)
            .ok()?;
        header
            .set_device_minor(nix::sys::stat::minor(rdev) as u32)
            .ok()?;
    }
    Some(header)
}

/// The xattrs of `host` (not following a symlink) that `which` keeps, as
/// PAX records.
fn xattr_records(host: &Path, which: Xattrs) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in xattr::list(host)? {
        if which == Xattrs::Capability && name != "security.capability" {
            continue;
        }
        if let Some(value) = xattr::get(host, &name)? {
            out.push((format!("SCHILY.xattr.{}", name.to_string_lossy()), value));
        }
    }
    Ok(out)
}

/// A tar unpacked in `dir` on the host, as docker's client unpacks one:
/// modes and times kept, owned by the caller, no xattrs (a container's
/// file capabilities stay in the container). Device nodes arrive as empty
/// files, and names that would leave `dir` (through `..` or a symlink)
/// are refused by the tar crate. `cp` out of a container, and `build -`'s
/// context from stdin. Errors name the directory `shown` (`dir` as the
/// user knows it: a chrooted helper unpacks at `/`).
pub fn unpack_on_host(tar: &mut dyn std::io::Read, dir: &Path, shown: &Path) -> Result<()> {
    let mut archive = layerdb::bounded_tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive
        .unpack(dir)
        .with_context(|| format!("copying into {}", shown.display()))
}
