//! Reading layers in: a tar stream (plain, gzip or zstd, told apart by
//! their first bytes) or a directory on the host, into a `LayerBuilder`.

use crate::chunk::ChunkDir;
use crate::entry::{Entry, Kind};
use crate::error::{Result, StoreError};
use crate::layer::{LayerBuilder, PendingLayer};
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Counts bytes as they are read, for progress reports.
struct Counting<'a, R> {
    inner: R,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Wraps `input` in the decompressor its magic bytes call for.
fn decompressed<'a>(input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 20, input);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    })
}

/// Builds a layer from a tar stream. `source` names it in errors;
/// `progress` is told how many compressed bytes were read.
pub fn from_tar(
    chunks: ChunkDir,
    source: &str,
    input: impl Read,
    progress: &mut dyn FnMut(u64),
) -> Result<PendingLayer> {
    let bad = |reason: String| StoreError::BadLayer {
        source_name: source.to_string(),
        reason,
    };
    let counted = Counting {
        inner: input,
        progress,
    };
    let stream = decompressed(counted).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut archive = tar::Archive::new(stream);
    let mut builder = LayerBuilder::new(chunks, source);
    let mut count = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for item in entries {
        let mut item = item.map_err(|e| bad(format!("corrupt or truncated archive: {e}")))?;
        count += 1;
        let path = item.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).into_owned();
        let entry = entry_of_tar(&mut item).map_err(|e| bad(format!("entry {shown:?}: {e}")))?;
        let is_file = entry.kind == Kind::Regular;
        builder.add_oci(&path, entry, if is_file { Some(&mut item) } else { None })?;
    }
    if count == 0 {
        return Err(bad("not a tar archive, or an empty one".to_string()));
    }
    builder.finish()
}

fn entry_of_tar<R: Read>(item: &mut tar::Entry<R>) -> io::Result<Entry> {
    let h = item.header();
    let kind = match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::Regular,
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::Hardlink,
        tar::EntryType::Char => Kind::CharDev,
        tar::EntryType::Block => Kind::BlockDev,
        tar::EntryType::Fifo => Kind::Fifo,
        other => {
            return Err(io::Error::other(format!(
                "unsupported tar entry type {other:?}"
            )))
        }
    };
    let mut e = Entry::new(kind, h.mode()?);
    if kind == Kind::Regular {
        e.size = item.size();
    }
    e.uid = h.uid()? as u32;
    e.gid = h.gid()? as u32;
    e.mtime_ns = h.mtime()? as i64 * 1_000_000_000;
    if matches!(kind, Kind::CharDev | Kind::BlockDev) {
        e.rdev = (
            h.device_major()?.unwrap_or(0),
            h.device_minor()?.unwrap_or(0),
        );
    }
    if matches!(kind, Kind::Symlink | Kind::Hardlink) {
        e.link = item
            .link_name_bytes()
            .map(|c| c.into_owned())
            .unwrap_or_default();
    }
    if let Some(pax) = item.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                e.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                e.mtime_ns = parse_pax_time(ext.value_bytes()).unwrap_or(e.mtime_ns);
            }
        }
        e.xattrs.sort();
    }
    Ok(e)
}

/// `1700000000.123456789` as nanoseconds.
fn parse_pax_time(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some(secs * 1_000_000_000 + digits.parse::<i64>().ok()?)
}

/// Builds a layer from a directory tree on the host, keeping owners,
/// modes, times, xattrs, devices and hardlinks.
pub fn from_dir(
    chunks: ChunkDir,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<PendingLayer> {
    let source = dir.display().to_string();
    let mut builder = LayerBuilder::new(chunks, &source);
    let io_err = |p: &Path, e: io::Error| StoreError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let host_of = |rel: &[u8]| dir.join(std::ffi::OsStr::from_bytes_path(rel));
    // The whole tree first, then its files in path order: the order of the
    // layer's tar, which the builder then hashes as it reads them. The
    // first name of a file in that order is the file, later ones link to it.
    let mut tree = Vec::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let host = host_of(&rel);
        let meta = fs::symlink_metadata(&host).map_err(|e| io_err(&host, e))?;
        if meta.is_dir() {
            for d in fs::read_dir(&host).map_err(|e| io_err(&host, e))? {
                let name = d.map_err(|e| io_err(&host, e))?.file_name();
                stack.push(crate::entry::join_path(&rel, name.as_encoded_bytes()));
            }
        }
        tree.push((rel, meta));
    }
    tree.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut seen: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for (rel, meta) in tree {
        let host = host_of(&rel);
        let mut entry = entry_of_metadata(&meta);
        entry.xattrs = read_xattrs(&host);
        let ft = meta.file_type();
        if ft.is_symlink() {
            entry.link = fs::read_link(&host)
                .map_err(|e| io_err(&host, e))?
                .into_os_string()
                .into_encoded_bytes();
        }
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = seen.get(&key) {
                entry = Entry::new(Kind::Hardlink, 0);
                entry.link = first.clone();
                builder.add_oci(&rel, entry, None)?;
                continue;
            }
            seen.insert(key, rel.clone());
        }
        if ft.is_file() {
            let mut f = fs::File::open(&host).map_err(|e| io_err(&host, e))?;
            progress(meta.len());
            builder.add_oci(&rel, entry, Some(&mut f))?;
        } else {
            builder.add_oci(&rel, entry, None)?;
        }
    }
    builder.finish()
}

fn entry_of_metadata(meta: &fs::Metadata) -> Entry {
    let kind = Entry::kind_of(meta.file_type());
    let mut e = Entry::new(kind, meta.mode());
    if kind == Kind::Regular {
        e.size = meta.len();
    }
    e.uid = meta.uid();
    e.gid = meta.gid();
    e.mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    if matches!(kind, Kind::CharDev | Kind::BlockDev) {
        let rdev = meta.rdev();
        e.rdev = (libc::major(rdev), libc::minor(rdev));
    }
    e
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some((n.into_encoded_bytes(), value))
        })
        .collect();
    out.sort();
    out
}

/// Bytes to an OsStr path, for the few places a layer path meets the host.
trait FromBytesPath {
    fn from_bytes_path(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytesPath for std::ffi::OsStr {
    fn from_bytes_path(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_nanoseconds() {
        assert_eq!(parse_pax_time(b"12.5"), Some(12_500_000_000));
        assert_eq!(parse_pax_time(b"3"), Some(3_000_000_000));
    }
}
