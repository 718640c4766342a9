//! PAX sparse files, as GNU tar writes them with `--format=posix -S`
//! (formats 0.0, 0.1 and 1.0). The tar crate expands GNU sparse headers
//! (type `S`) itself but reads these as plain files holding only their
//! data segments (and, in 1.0, the map before them): `SparseReader` gives
//! back the whole file, holes as zeros.
//!
//! - 0.0: `GNU.sparse.size`, then `GNU.sparse.offset`/`GNU.sparse.numbytes`
//!   pairs in order.
//! - 0.1: `GNU.sparse.size` and `GNU.sparse.map` (`off,len,off,len...`).
//! - 1.0: `GNU.sparse.major=1`, `GNU.sparse.realsize`; the map is at the
//!   start of the data, decimal numbers one per line (count, then offset
//!   and length pairs), padded to a 512-byte block.
//!
//! 0.1 and 1.0 keep the real name in `GNU.sparse.name` (the header's is
//! `.../GNUSparseFile.<pid>/<name>`).

use std::io::{self, Read};

/// Most segments one file may list: bounds the map read into memory
/// (GNU tar lists one per data extent).
const MAX_SEGMENTS: usize = 1 << 20;

/// A sparse file's description from its PAX records.
#[derive(Debug, PartialEq, Eq)]
pub struct Sparse {
    /// The file's real name, when the header holds a made-up one.
    pub name: Option<Vec<u8>>,
    /// The file's size, holes included.
    pub size: u64,
    /// Data segments (offset, length), when the records list them; `None`
    /// for 1.0, whose map starts the data.
    map: Option<Vec<(u64, u64)>>,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn number(v: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("a GNU sparse record is not a number"))
}

impl Sparse {
    /// The sparse description in an entry's PAX records, if it has one.
    pub fn from_pax(records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<Option<Sparse>> {
        let mut name = None;
        let (mut size, mut realsize, mut major) = (None, None, None);
        let mut map: Option<Vec<u64>> = None;
        let mut pairs: Vec<u64> = Vec::new();
        for (k, v) in records {
            match k.as_slice() {
                b"GNU.sparse.name" => name = Some(v.clone()),
                b"GNU.sparse.size" => size = Some(number(v)?),
                b"GNU.sparse.realsize" => realsize = Some(number(v)?),
                b"GNU.sparse.major" => major = Some(number(v)?),
                b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                    if pairs.len() >= 2 * MAX_SEGMENTS {
                        return Err(bad("too many GNU sparse segments"));
                    }
                    // Offsets at even places, lengths at odd ones.
                    if (k.as_slice() == b"GNU.sparse.offset") != pairs.len().is_multiple_of(2) {
                        return Err(bad("GNU sparse offsets and lengths out of order"));
                    }
                    pairs.push(number(v)?);
                }
                b"GNU.sparse.map" => {
                    let list = v
                        .split(|&b| b == b',')
                        .map(number)
                        .collect::<io::Result<Vec<u64>>>()?;
                    if list.len() > 2 * MAX_SEGMENTS {
                        return Err(bad("too many GNU sparse segments"));
                    }
                    map = Some(list);
                }
                _ => {}
            }
        }
        let sparse = match (major, size, realsize) {
            (Some(1), _, Some(size)) => Sparse {
                name,
                size,
                map: None,
            },
            (Some(m), _, _) => return Err(bad(format!("GNU sparse format {m}.x is unknown"))),
            (None, Some(size), _) => {
                let flat = map.unwrap_or(pairs);
                if !flat.len().is_multiple_of(2) {
                    return Err(bad("a GNU sparse map with an odd count of numbers"));
                }
                Sparse {
                    name,
                    size,
                    map: Some(flat.chunks(2).map(|p| (p[0], p[1])).collect()),
                }
            }
            (None, None, _) => return Ok(None),
        };
        Ok(Some(sparse))
    }

    /// The whole file from the entry's data.
    pub fn reader<R: Read>(self, mut data: R) -> io::Result<SparseReader<R>> {
        let map = match self.map {
            Some(m) => m,
            None => read_map(&mut data)?,
        };
        let mut end = 0u64;
        for &(offset, len) in &map {
            let seg_end = offset
                .checked_add(len)
                .ok_or_else(|| bad("a GNU sparse segment overflows"))?;
            if offset < end || seg_end > self.size {
                return Err(bad(
                    "GNU sparse segments overlap, are out of order or pass the file's end",
                ));
            }
            end = seg_end;
        }
        Ok(SparseReader {
            data,
            map: map.into_iter().rev().collect(),
            pos: 0,
            size: self.size,
        })
    }
}

/// Reads a 1.0 map from the start of the data: whole 512-byte blocks, so
/// the data segments start right after.
fn read_map(data: &mut impl Read) -> io::Result<Vec<(u64, u64)>> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut want: Option<usize> = None;
    let mut digits = String::new();
    let mut block = [0u8; 512];
    while want.is_none_or(|w| numbers.len() < w) {
        data.read_exact(&mut block)
            .map_err(|_| bad("a GNU sparse map is cut short"))?;
        for &b in &block {
            if want.is_some_and(|w| numbers.len() >= w) {
                break;
            }
            match b {
                b'0'..=b'9' if digits.len() < 20 => digits.push(b as char),
                b'\n' if !digits.is_empty() => {
                    numbers.push(number(digits.as_bytes())?);
                    digits.clear();
                    if numbers.len() == 1 {
                        let count = numbers[0] as usize;
                        if count > MAX_SEGMENTS {
                            return Err(bad("too many GNU sparse segments"));
                        }
                        want = Some(1 + 2 * count);
                    }
                }
                _ => return Err(bad("a GNU sparse map holds something other than numbers")),
            }
        }
    }
    Ok(numbers[1..].chunks(2).map(|p| (p[0], p[1])).collect())
}

/// A sparse file's content: zeros in the holes, the entry's data in the
/// segments. The data must hold exactly the segments' bytes.
pub struct SparseReader<R> {
    data: R,
    /// Segments still ahead, the next one last.
    map: Vec<(u64, u64)>,
    pos: u64,
    size: u64,
}

impl<R: Read> Read for SparseReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(&(offset, len)) = self.map.last() {
            if self.pos < offset + len {
                break;
            }
            self.map.pop();
        }
        if self.pos >= self.size {
            let mut extra = [0u8; 1];
            if self.data.read(&mut extra)? != 0 {
                return Err(bad("a GNU sparse file has more data than its map lists"));
            }
            return Ok(0);
        }
        let (n, from_data) = match self.map.last() {
            Some(&(offset, _)) if self.pos < offset => ((offset - self.pos), false),
            Some(&(offset, len)) => ((offset + len - self.pos), true),
            None => ((self.size - self.pos), false),
        };
        let n = n.min(buf.len() as u64) as usize;
        if from_data {
            self.data.read_exact(&mut buf[..n]).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    bad("a GNU sparse file has less data than its map lists")
                } else {
                    e
                }
            })?;
        } else {
            buf[..n].fill(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn expand(s: Sparse, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        s.reader(data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn expected() -> Vec<u8> {
        let mut v = vec![0u8; 20];
        v[3..6].copy_from_slice(b"abc");
        v[10..12].copy_from_slice(b"de");
        v
    }

    #[test]
    fn the_three_pax_formats_expand_to_the_same_file() {
        let v00 = Sparse::from_pax(&[
            rec("GNU.sparse.size", "20"),
            rec("GNU.sparse.numblocks", "2"),
            rec("GNU.sparse.offset", "3"),
            rec("GNU.sparse.numbytes", "3"),
            rec("GNU.sparse.offset", "10"),
            rec("GNU.sparse.numbytes", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(expand(v00, b"abcde").unwrap(), expected());
        let v01 = Sparse::from_pax(&[
            rec("GNU.sparse.size", "20"),
            rec("GNU.sparse.name", "real"),
            rec("GNU.sparse.map", "3,3,10,2,20,0"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(v01.name.as_deref(), Some(&b"real"[..]));
        assert_eq!(expand(v01, b"abcde").unwrap(), expected());
        let v10 = Sparse::from_pax(&[
            rec("GNU.sparse.major", "1"),
            rec("GNU.sparse.minor", "0"),
            rec("GNU.sparse.realsize", "20"),
        ])
        .unwrap()
        .unwrap();
        let mut data = b"2\n3\n3\n10\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcde");
        assert_eq!(expand(v10, &data).unwrap(), expected());
    }

    #[test]
    fn a_map_that_lies_about_the_data_is_refused() {
        let map = || {
            Sparse::from_pax(&[
                rec("GNU.sparse.size", "20"),
                rec("GNU.sparse.map", "3,3,10,2"),
            ])
            .unwrap()
            .unwrap()
        };
        assert!(expand(map(), b"abcd").is_err());
        assert!(expand(map(), b"abcdef").is_err());
        let overlapping = Sparse::from_pax(&[
            rec("GNU.sparse.size", "20"),
            rec("GNU.sparse.map", "3,8,10,2"),
        ])
        .unwrap()
        .unwrap();
        assert!(overlapping.reader(&b""[..]).is_err());
        assert_eq!(Sparse::from_pax(&[rec("mtime", "1")]).unwrap(), None);
    }
}
