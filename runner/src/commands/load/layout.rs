//! Where `load` reads an image from: an OCI layout or docker archive as a
//! directory, or as a tar (a file, or stdin). Nothing is extracted, no
//! symlink is followed, and no path leaves the layout: a tar is indexed
//! entry by entry and its regular files read in place; a directory is
//! walked one component at a time with O_NOFOLLOW.

use anyhow::{bail, Context, Result};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub enum Layout {
    /// A directory, by a descriptor opened once.
    Dir(File),
    /// A tar archive (uncompressed, seekable) and its regular files.
    Archive {
        file: File,
        members: HashMap<String, Member>,
    },
}

pub enum Member {
    File {
        pos: u64,
        size: u64,
    },
    /// Present, but not something a blob may be (a symlink, a hardlink, a
    /// name given twice): why not.
    Refused(&'static str),
}

/// The components of a path inside the layout: relative, without `..`;
/// `.` and empty components are dropped.
fn components(path: &str) -> Result<Vec<&str>> {
    if path.starts_with('/') {
        bail!("{path:?} is an absolute path: a blob must be inside the image archive");
    }
    if path.contains('\0') {
        bail!("{path:?} holds a NUL byte");
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        bail!("{path:?} climbs out of the image archive with \"..\"");
    }
    if parts.is_empty() {
        bail!("{path:?} names no file");
    }
    Ok(parts)
}

/// A tar member's name in the form lookups use; `None` for names no
/// lookup can reach.
fn member_key(name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    components(name).ok().map(|parts| parts.join("/"))
}

impl Layout {
    /// `input`: a directory, a tar file (plain, gzip or zstd), or `None`
    /// for stdin. A stream or a compressed tar is first copied, as one
    /// file, into an unnamed temporary file under `scratch`.
    pub fn open(input: Option<&Path>, scratch: &Path) -> Result<Layout> {
        let (file, name) = match input {
            Some(p) if p.is_dir() => {
                let dir = File::open(p).with_context(|| format!("open {}", p.display()))?;
                return Ok(Layout::Dir(dir));
            }
            Some(p) => {
                let f = File::open(p).with_context(|| format!("open {}", p.display()))?;
                let seekable = f.metadata().map(|m| m.is_file()).unwrap_or(false);
                let name = p.display().to_string();
                if seekable && !is_compressed(&f)? {
                    (f, name)
                } else {
                    (spool(f, scratch, &name)?, name)
                }
            }
            None => (
                spool(io::stdin().lock(), scratch, "stdin")?,
                "stdin".to_string(),
            ),
        };
        let members = index(&file, &name)?;
        Ok(Layout::Archive { file, members })
    }

    /// Whether the layout has `path` at all (as anything).
    pub fn has(&self, path: &str) -> bool {
        let Ok(parts) = components(path) else {
            return false;
        };
        match self {
            Layout::Archive { members, .. } => members.contains_key(&parts.join("/")),
            Layout::Dir(dir) => {
                let mut fd = match dir.try_clone() {
                    Ok(f) => std::os::fd::OwnedFd::from(f),
                    Err(_) => return false,
                };
                for part in parts {
                    match openat(
                        &fd,
                        part,
                        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(next) => fd = next,
                        Err(_) => return false,
                    }
                }
                true
            }
        }
    }

    /// Opens a regular file of the layout for reading.
    pub fn open_file(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        let parts = components(path)?;
        match self {
            Layout::Archive { file, members } => match members.get(&parts.join("/")) {
                Some(Member::File { pos, size }) => Ok(Box::new(Slice {
                    file,
                    pos: *pos,
                    end: pos + size,
                })),
                Some(Member::Refused(why)) => bail!("{path:?} in the image archive is {why}"),
                None => bail!("{path:?} is missing from the image archive"),
            },
            Layout::Dir(dir) => Ok(Box::new(open_beneath(dir, &parts, path)?)),
        }
    }
}

/// The members of an archive by name, read header by header (file
/// contents are skipped, not read).
fn index(file: &File, name: &str) -> Result<HashMap<String, Member>> {
    let corrupt = |e: io::Error| {
        anyhow::anyhow!(
            "{name}: corrupt or truncated archive: {}",
            layerdb::escape::escape(&e.to_string())
        )
    };
    let mut members = HashMap::new();
    let mut archive = layerdb::bounded_tar::Archive::new(file);
    for entry in archive.entries_with_seek().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        // No file of a layout has a name past PATH_MAX; such members are
        // not kept (every name in this map is held until the load ends).
        if entry.path_bytes().len() >= 4096 {
            continue;
        }
        let Some(key) = member_key(&entry.path_bytes()) else {
            continue;
        };
        let member = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                pos: entry.raw_file_position(),
                size: entry.size(),
            },
            tar::EntryType::Directory => continue,
            tar::EntryType::Symlink => Member::Refused("a symlink"),
            tar::EntryType::Link => Member::Refused("a hardlink"),
            _ => Member::Refused("not a regular file"),
        };
        if members.insert(key.clone(), member).is_some() {
            members.insert(key, Member::Refused("in the archive twice"));
        }
    }
    if members.is_empty() {
        bail!("{name}: not an image archive (no files in it)");
    }
    Ok(members)
}

/// Opens `parts` under `dir` one component at a time, none of them a
/// symlink, the last a regular file (O_NONBLOCK: a FIFO must not hang
/// the open; it is refused after).
fn open_beneath(dir: &File, parts: &[&str], path: &str) -> Result<File> {
    let refused = |e: nix::Error| match e {
        nix::Error::ELOOP | nix::Error::ENOTDIR => {
            anyhow::anyhow!(
                "{path:?} in the image directory goes through a symlink or a non-directory"
            )
        }
        nix::Error::ENOENT => anyhow::anyhow!("{path:?} is missing from the image directory"),
        other => anyhow::anyhow!(
            "{path:?} in the image directory: {}",
            io::Error::from(other)
        ),
    };
    let (last, parents) = parts.split_last().expect("components are never empty");
    let mut fd = std::os::fd::OwnedFd::from(dir.try_clone()?);
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    for part in parents {
        fd = openat(&fd, *part, flags | OFlag::O_DIRECTORY, Mode::empty()).map_err(refused)?;
    }
    let fd = openat(&fd, *last, flags | OFlag::O_NONBLOCK, Mode::empty()).map_err(refused)?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        bail!("{path:?} in the image directory is not a regular file");
    }
    Ok(file)
}

/// Whether a file starts with gzip's or zstd's magic bytes.
fn is_compressed(f: &File) -> Result<bool> {
    let mut head = [0u8; 4];
    let n = f.read_at(&mut head, 0)?;
    let head = &head[..n];
    Ok(head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
}

/// Copies a stream, decompressed, into an unnamed file: an archive must be
/// read out of order (docker writes manifest.json last).
fn spool(input: impl Read, scratch: &Path, name: &str) -> Result<File> {
    let mut tmp = tempfile::tempfile_in(scratch)
        .with_context(|| format!("create a temporary file in {}", scratch.display()))?;
    let mut stream = layerdb::import::decompressed(input)
        .map_err(|e| anyhow::anyhow!("{name}: {}", layerdb::escape::escape(&e.to_string())))?;
    io::copy(&mut stream, &mut tmp).map_err(|e| {
        anyhow::anyhow!(
            "{name}: cannot read the image archive: {}",
            layerdb::escape::escape(&e.to_string())
        )
    })?;
    // The index reads the archive from its start.
    tmp.seek(io::SeekFrom::Start(0))?;
    Ok(tmp)
}

/// A byte range of the archive, read in place.
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the image archive ends inside a file",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_layout() {
        assert_eq!(
            components("./blobs//sha256/x").unwrap(),
            ["blobs", "sha256", "x"]
        );
        for bad in ["/etc/passwd", "../../x.tar", "a/../../b", "", "./", "a\0b"] {
            assert!(components(bad).is_err(), "{bad}");
        }
        assert_eq!(
            member_key(b"./manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(member_key(b"../x"), None);
    }
}
