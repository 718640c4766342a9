//! Reading layers in from a tar stream (plain, gzip or zstd, told apart by
//! their first bytes) into a `LayerBuilder`; `host_dir` reads a directory.
//!
//! A tar is read as docker extracts one: the stream to its end with every
//! checksum checked, missing parent directories made, GNU and PAX sparse
//! files expanded, the last of duplicate entries kept.

use crate::chunk::ChunkDir;
use crate::digest::Digest;
use crate::entry::{Entry, Kind};
use crate::error::{Result, StoreError};
use crate::escape::escape;
use crate::layer::as_read::AsRead;
use crate::layer::{LayerBuilder, PendingLayer};
use crate::sparse::Sparse;
use crate::tar_split::{OriginalTar, Recorder};
use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

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

/// Hashes the uncompressed tar as the tar reader takes it in: the layer's
/// diff id as the tool that wrote it computed it; and records it, so that
/// the store can write it again byte for byte (see `tar_split`).
struct Digesting<R> {
    inner: R,
    as_read: Option<Rc<RefCell<AsRead>>>,
    recorder: Option<Rc<RefCell<Recorder>>>,
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(a) = &self.as_read {
            a.borrow_mut().took(&buf[..n]);
        }
        if let Some(r) = &self.recorder {
            r.borrow_mut().took(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Wraps `input` in the decompressor its magic bytes call for. Both read
/// every member or frame to the end of the input and check its checksum
/// (gzip's CRC32 and length, zstd's content checksum when the frame has
/// one) as they reach it.
pub fn decompressed<'a>(input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
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

/// What the bytes handed to the ingest are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A tar, plain or gzip- or zstd-compressed, told apart by its first
    /// bytes (`import`, `load`, a registry layer of the plain tar media
    /// type: docker reads all of them so).
    Sniffed,
    /// A tar as it is: its blob was decompressed once already, as its
    /// media type said (a pull). Unwrapping it again would hash another
    /// stream than every other client does, and a blob could then name
    /// one diff id to strata and another to docker.
    Tar,
}

/// Builds a layer from a tar stream. `source` names it in errors;
/// `progress` is told how many compressed bytes were read.
pub fn from_tar(
    chunks: ChunkDir,
    source: &str,
    input: impl Read,
    progress: &mut dyn FnMut(u64),
) -> Result<PendingLayer> {
    read_tar(
        chunks,
        source,
        input,
        Framing::Sniffed,
        progress,
        &|_| None,
        false,
    )
    .map(|(layer, _)| layer)
}

/// `from_tar` for a layer of an image, also giving the sha256 of the
/// uncompressed tar as read: the diff id the image config names it by.
/// `below` finds a directory in the image's layers beneath this one (a
/// parent this tar does not name keeps what it is there).
pub fn from_tar_with_diff_id(
    chunks: ChunkDir,
    source: &str,
    input: impl Read,
    framing: Framing,
    below: &dyn Fn(&[u8]) -> Option<Entry>,
) -> Result<(PendingLayer, Digest)> {
    let (layer, digest) = read_tar(chunks, source, input, framing, &mut |_| {}, below, true)?;
    Ok((layer, digest.expect("asked for")))
}

/// The most extended attribute bytes (names and values) one layer may
/// carry: real layers carry a few (file capabilities, ACLs), and every
/// entry's wait in memory until the layer is written.
const LAYER_XATTR_MAX: usize = 64 << 20;

/// The most bytes of names (paths and link targets) one layer may carry.
/// Every entry waits in memory until the layer is written, its path held
/// several times over (the entry, the tar's record, the index batch): a
/// layer of empty files named near PATH_MAX, a few bytes each under zstd,
/// took a pull to 22 KB an entry, 8.8 GB for 2.7 MB downloaded (found by
/// a review as an attacker). Real layers carry far less: Debian's minbase
/// 0.3 MB, a million files of 100-byte paths 100 MB.
const LAYER_NAMES_MAX: usize = 256 << 20;

/// The largest file a sparse entry may expand to. Its holes are read as
/// zeros and cut and hashed like data, about half a gigabyte a second
/// here: a layer of 207 bytes declaring a sparse file of 18 EB kept a pull
/// hashing for good (found by a review as an attacker). 64 GiB is about
/// two minutes of that. docker writes holes as holes, up to the host
/// filesystem's largest file.
const SPARSE_FILE_MAX: u64 = 64 << 30;

fn read_tar(
    chunks: ChunkDir,
    source: &str,
    input: impl Read,
    framing: Framing,
    progress: &mut dyn FnMut(u64),
    below: &dyn Fn(&[u8]) -> Option<Entry>,
    diff_id: bool,
) -> Result<(PendingLayer, Option<Digest>)> {
    let started = std::time::Instant::now();
    let bad = |reason: String| StoreError::BadLayer {
        source_name: source.to_string(),
        reason,
    };
    let counted = Counting {
        inner: input,
        progress,
    };
    let stream: Box<dyn Read + '_> = match framing {
        Framing::Sniffed => {
            decompressed(counted).map_err(|e| bad(format!("cannot read: {}", shown(&e))))?
        }
        Framing::Tar => Box::new(counted),
    };
    let recorder = match diff_id {
        true => Some(Rc::new(RefCell::new(Recorder::new().map_err(|e| {
            bad(format!("cannot record the tar: {}", shown(&e)))
        })?))),
        false => None,
    };
    let as_read = diff_id.then(|| Rc::new(RefCell::new(AsRead::new())));
    let mut stream = Digesting {
        inner: stream,
        as_read: as_read.clone(),
        recorder: recorder.clone(),
    };
    let mut builder = match &as_read {
        Some(a) => LayerBuilder::compared_with(chunks, source, a.clone()),
        None => LayerBuilder::new(chunks, source),
    };
    let mut count = 0u64;
    let mut xattr_bytes = 0usize;
    let mut name_bytes = 0usize;
    {
        let mut archive = crate::bounded_tar::Archive::new(&mut stream);
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {}", shown(&e))))?;
        for item in entries {
            let mut item =
                item.map_err(|e| bad(format!("corrupt or truncated archive: {}", shown(&e))))?;
            // docker ignores PAX global headers (`git archive` writes one
            // holding the commit's id).
            if item.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            count += 1;
            let (entry, sparse) = entry_of_tar(&mut item).map_err(|e| {
                bad(format!(
                    "entry {:?}: {}",
                    String::from_utf8_lossy(&item.path_bytes()),
                    shown(&e)
                ))
            })?;
            let path = match &sparse {
                Some(Sparse { name: Some(n), .. }) => n.clone(),
                _ => item.path_bytes().into_owned(),
            };
            // Every entry waits in memory until the layer is written: a
            // few KB of gzip must not make gigabytes of xattrs.
            xattr_bytes += entry
                .xattrs
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
            if xattr_bytes > LAYER_XATTR_MAX {
                return Err(bad(format!(
                    "entry {:?}: the layer's extended attributes pass {} MiB",
                    String::from_utf8_lossy(&path),
                    LAYER_XATTR_MAX >> 20
                )));
            }
            name_bytes += path.len() + entry.link.len();
            if name_bytes > LAYER_NAMES_MAX {
                return Err(bad(format!(
                    "entry {:?}: the layer's names pass {} MiB",
                    crate::layer::shortened(&path),
                    LAYER_NAMES_MAX >> 20
                )));
            }
            if let (Some(r), Some(a)) = (&recorder, &as_read) {
                if sparse.is_some() || item.header().entry_type() == tar::EntryType::GNUSparse {
                    r.borrow_mut().spoil();
                } else if let (Kind::Regular, Some(p)) = (entry.kind, builder.plain_path(&path)) {
                    r.borrow_mut().start_content(p);
                    a.borrow_mut().start_content();
                }
            }
            match sparse {
                Some(s) => {
                    let mut whole = s.reader(&mut item).map_err(|e| {
                        bad(format!(
                            "entry {:?}: {}",
                            String::from_utf8_lossy(&path),
                            shown(&e)
                        ))
                    })?;
                    builder.add_oci(&path, entry, Some(&mut whole))?
                }
                None if entry.kind == Kind::Regular => {
                    builder.add_oci(&path, entry, Some(&mut item))?
                }
                None => builder.add_oci(&path, entry, None)?,
            }
            if let (Some(r), Some(a)) = (&recorder, &as_read) {
                r.borrow_mut().end_content();
                a.borrow_mut().end_content();
            }
        }
    }
    // An empty tar is no image to import, but a layer of an image may be
    // one (docker's well-known sha256:5f70bf18... of 1024 zero bytes);
    // there the diff id the caller checks says the input is what it is.
    if count == 0 && !diff_id {
        return Err(bad("not a tar archive, or an empty one".to_string()));
    }
    // The tar reader stops at the first end-of-archive block: the rest of
    // the stream (the second zero block, record padding, a compressed
    // stream's trailer and checksum) is read here, so a damaged byte
    // anywhere fails the import and the diff id covers every byte.
    io::copy(&mut stream, &mut io::sink())
        .map_err(|e| bad(format!("corrupt or truncated archive: {}", shown(&e))))?;
    log::debug!("layer {source}: read in {:?}", started.elapsed());
    builder.add_missing_parents(below)?;
    stream.recorder = None;
    let digest = as_read.as_ref().map(|a| a.borrow().digest());
    let mut layer = builder.finish()?;
    if let (Some(r), Some(digest)) = (recorder, digest) {
        let recorded = Rc::try_unwrap(r)
            .map_err(|_| bad("the tar recorder is still in use".to_string()))?
            .into_inner();
        let split = recorded
            .finish(&layer.entries)
            .map_err(|e| bad(format!("cannot record the tar: {}", shown(&e))))?;
        if let (Some(split), true) = (split, digest != layer.diff_id) {
            layer.original = Some(OriginalTar {
                diff_id: digest,
                split,
            });
        }
    }
    Ok((layer, digest))
}

/// An error from the tar or compression crates, which quote names from
/// the input as they are, escaped for printing.
fn shown(e: &io::Error) -> String {
    escape(&e.to_string())
}

/// An entry's attributes, and its sparse map when it is a PAX sparse file.
fn entry_of_tar<R: Read>(item: &mut tar::Entry<R>) -> io::Result<(Entry, Option<Sparse>)> {
    let h = item.header();
    let kind = match h.entry_type() {
        // The tar crate expands GNU sparse files itself.
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            Kind::Regular
        }
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
    e.mtime_ns = seconds_to_ns(i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0);
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
    let mut records = Vec::new();
    if let Some(pax) = item.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            records.push((ext.key_bytes().to_vec(), ext.value_bytes().to_vec()));
        }
    }
    let mut names = 0;
    for (key, value) in &records {
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            // What Linux can hold (XATTR_NAME_MAX, XATTR_SIZE_MAX and
            // XATTR_LIST_MAX): anything larger no extraction could set.
            names += name.len() + 1;
            if name.is_empty() || name.len() > 255 || value.len() > 65536 || names > 65536 {
                return Err(io::Error::other(format!(
                    "extended attribute {:?} ({} bytes) is larger than Linux allows (a name of 255 bytes, a value of 64 KiB, 64 KiB of names)",
                    String::from_utf8_lossy(&name[..name.len().min(64)]),
                    value.len()
                )));
            }
            e.xattrs.push((name.to_vec(), value.clone()));
        } else if key == b"mtime" {
            e.mtime_ns = parse_pax_time(value).unwrap_or(e.mtime_ns);
        }
    }
    e.xattrs.sort();
    let sparse = match kind {
        Kind::Regular => Sparse::from_pax(&records)?,
        _ => None,
    };
    if let Some(s) = &sparse {
        e.size = s.size;
    }
    let is_sparse = sparse.is_some() || item.header().entry_type() == tar::EntryType::GNUSparse;
    if is_sparse && e.size > SPARSE_FILE_MAX {
        return Err(io::Error::other(format!(
            "a sparse file of {} bytes: strata takes sparse files of up to {} GiB",
            e.size,
            SPARSE_FILE_MAX >> 30
        )));
    }
    Ok((e, sparse))
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
    let nanos: i64 = digits.parse().ok()?;
    // `-1.5` is a second and a half before the epoch.
    Some(seconds_to_ns(
        secs,
        if s.starts_with('-') { -nanos } else { nanos },
    ))
}

/// A time as nanoseconds since the epoch, held at the ends of what an
/// `i64` holds (years 1677 to 2262): a tar may say any time, and docker
/// takes it.
pub(crate) fn seconds_to_ns(secs: i64, nanos: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_nanoseconds() {
        assert_eq!(parse_pax_time(b"12.5"), Some(12_500_000_000));
        assert_eq!(parse_pax_time(b"3"), Some(3_000_000_000));
        assert_eq!(parse_pax_time(b"-1.5"), Some(-1_500_000_000));
        // Past what nanoseconds in an i64 hold: held at the end.
        assert_eq!(parse_pax_time(b"99999999999"), Some(i64::MAX));
        assert_eq!(parse_pax_time(b"-99999999999.5"), Some(i64::MIN));
    }
}
