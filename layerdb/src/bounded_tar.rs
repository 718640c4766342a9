//! Tar archives from untrusted input: the tar crate's reader with a bound
//! on what it may take between two entries.
//!
//! tar 0.4 reads a GNU long name or link name and a PAX header whole into
//! memory (`read_to_end`), to whatever size the header declares, before it
//! hands the entry over: a 1 MB gzip layer declaring a 1 GiB long name
//! took `strata import` to 7.4 GB and `strata load` to 3.7 GB. Here,
//! while the tar reader looks for the next entry, it may read the rest of
//! the entry before (what the caller left of it) and then at most
//! [`HEADERS_MAX`] bytes: headers, long names, PAX records, padding. The
//! read past that fails, before anything is allocated for it. Real ones
//! are a few KB (a name is under PATH_MAX, an attribute under 64 KiB).

use crate::unpack_dest::Destination;
use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

/// What the tar reader may take between two entries, beyond the rest of
/// the entry before.
pub const HEADERS_MAX: u64 = 16 << 20;

const BLOCK: u64 = 512;

/// The longest name or link target an entry may have. Linux takes none
/// past PATH_MAX (4,096 bytes), and callers say so in their own words;
/// past this they are refused here, so that a caller keeping every
/// entry's name (load's index, unpack's directories) holds little: 200
/// names of 15 MiB each, within the budget one by one, took `build -`
/// to 3.3 GB.
const NAME_MAX_BYTES: usize = 64 << 10;

#[derive(Default)]
struct Budget {
    /// Bytes read through the reader so far: its position.
    pos: Cell<u64>,
    /// Where the last entry's data (padded to a block) ends: reading up to
    /// there is skipping it, not reading headers.
    free_until: Cell<u64>,
    /// Header bytes it may still take, while it looks for an entry.
    left: Cell<Option<u64>>,
}

/// The input as the tar reader reads it: counted against the budget while
/// it looks for an entry.
pub struct Budgeted<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let b = &self.budget;
        let pos = b.pos.get();
        let Some(left) = b.left.get() else {
            let got = self.inner.read(buf)?;
            b.pos.set(pos + got as u64);
            return Ok(got);
        };
        let free = b.free_until.get().saturating_sub(pos);
        let allowed = free.saturating_add(left);
        if allowed == 0 {
            return Err(past_budget());
        }
        let n = buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])? as u64;
        b.left.set(Some(left - got.saturating_sub(free)));
        b.pos.set(pos + got);
        Ok(got as usize)
    }
}

impl<R: Seek> Seek for Budgeted<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(to)?;
        self.budget.pos.set(at);
        Ok(at)
    }
}

fn past_budget() -> io::Error {
    io::Error::other(format!(
        "an entry's extended headers (GNU long names, PAX records) pass {} MiB",
        HEADERS_MAX >> 20
    ))
}

/// A tar archive read with the budget.
pub struct Archive<R: Read> {
    archive: tar::Archive<Budgeted<R>>,
    budget: Rc<Budget>,
}

impl<R: Read> Archive<R> {
    /// `input` from its start: the budget counts positions from there.
    pub fn new(input: R) -> Archive<R> {
        let budget = Rc::new(Budget::default());
        Archive {
            archive: tar::Archive::new(Budgeted {
                inner: input,
                budget: budget.clone(),
            }),
            budget,
        }
    }

    /// The entries, as `tar::Archive::entries` gives them.
    pub fn entries(&mut self) -> io::Result<Entries<'_, R>> {
        Ok(Entries {
            entries: self.archive.entries()?,
            budget: self.budget.clone(),
        })
    }

    /// `tar::Archive::set_preserve_permissions`.
    pub fn set_preserve_permissions(&mut self, preserve: bool) {
        self.archive.set_preserve_permissions(preserve);
    }

    /// `tar::Archive::set_preserve_mtime`.
    pub fn set_preserve_mtime(&mut self, preserve: bool) {
        self.archive.set_preserve_mtime(preserve);
    }

    /// `tar::Archive::set_overwrite`.
    pub fn set_overwrite(&mut self, overwrite: bool) {
        self.archive.set_overwrite(overwrite);
    }

    /// `tar::Archive::unpack` through the budget: every entry under `dst`
    /// (names that would leave it refused, parents checked as
    /// `unpack_dest` checks them), directories last, deepest first, so
    /// their modes and times hold.
    pub fn unpack(&mut self, dst: &Path) -> io::Result<()> {
        if dst.symlink_metadata().is_err() {
            std::fs::create_dir_all(dst)?;
        }
        let mut dest = Destination::new(dst)?;
        let mut directories = Vec::new();
        for entry in self.entries()? {
            let mut entry = entry?;
            // Nothing could make it; and each directory is held until the
            // end.
            if entry.path_bytes().len() >= 4096 {
                return Err(io::Error::other(format!(
                    "an entry's name is {} bytes, past PATH_MAX",
                    entry.path_bytes().len()
                )));
            }
            match entry.header().entry_type() {
                tar::EntryType::Directory => directories.push(entry),
                // A hard link's target is checked by the tar crate.
                tar::EntryType::Link => {
                    entry.unpack_in(dest.root())?;
                }
                _ => {
                    if let Some(path) = dest.entry(&entry.path()?)? {
                        entry.unpack(&path)?;
                    }
                }
            }
        }
        directories.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
        for mut dir in directories {
            if let Some(path) = dest.entry(&dir.path()?)? {
                dir.unpack(&path)?;
            }
        }
        Ok(())
    }
}

impl<R: Read + Seek> Archive<R> {
    /// The entries, skipping data by seeking (`tar::Archive::entries_with_seek`).
    pub fn entries_with_seek(&mut self) -> io::Result<Entries<'_, R>> {
        Ok(Entries {
            entries: self.archive.entries_with_seek()?,
            budget: self.budget.clone(),
        })
    }
}

/// The entries of an [`Archive`].
pub struct Entries<'a, R: Read> {
    entries: tar::Entries<'a, Budgeted<R>>,
    budget: Rc<Budget>,
}

impl<'a, R: Read> Iterator for Entries<'a, R> {
    type Item = io::Result<tar::Entry<'a, Budgeted<R>>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.budget.left.set(Some(HEADERS_MAX));
        let next = self.entries.next();
        let spent = self.budget.left.replace(None) == Some(0);
        match next {
            Some(Ok(mut entry)) => {
                self.budget.free_until.set(data_end(&mut entry));
                let name = entry.path_bytes().len();
                let link = entry.link_name_bytes().map_or(0, |l| l.len());
                if name.max(link) > NAME_MAX_BYTES {
                    return Some(Err(io::Error::other(format!(
                        "an entry's name or link target is {} bytes, past {} KiB",
                        name.max(link),
                        NAME_MAX_BYTES >> 10
                    ))));
                }
                Some(Ok(entry))
            }
            Some(Err(_)) if spent => Some(Err(past_budget())),
            other => other,
        }
    }
}

/// Where `entry`'s data ends in the archive, padded to a block, as the
/// tar reader finds the next header: the size it read the data by (for a
/// GNU sparse file, the header's or the PAX `size`, not the expanded size
/// `Entry::size` gives).
fn data_end<R: Read>(entry: &mut tar::Entry<'_, R>) -> u64 {
    let stored = match entry.header().entry_type().is_gnu_sparse() {
        true => pax_size(entry).unwrap_or_else(|| entry.header().entry_size().unwrap_or(0)),
        false => entry.size(),
    };
    let padded = stored.div_ceil(BLOCK).saturating_mul(BLOCK);
    entry.raw_file_position().saturating_add(padded)
}

/// The PAX `size` record, found as tar 0.4 finds it: the first one; none
/// if a record before it is malformed or its value is not a number. The
/// records were read with the entry's headers: this reads nothing.
fn pax_size<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<u64> {
    for record in entry.pax_extensions().ok()?? {
        let record = record.ok()?;
        if record.key_bytes() == b"size" {
            return record.value().ok()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn names(tar: &[u8]) -> io::Result<Vec<String>> {
        let mut archive = Archive::new(tar);
        let mut names = Vec::new();
        for entry in archive.entries()? {
            names.push(String::from_utf8_lossy(&entry?.path_bytes()).into_owned());
        }
        Ok(names)
    }

    /// A tar of `(name, kind, link or content)`.
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for &(name, kind, data) in entries {
            let mut h = header(kind, 0);
            h.set_mode(if kind == tar::EntryType::Directory {
                0o750
            } else {
                0o644
            });
            match kind {
                tar::EntryType::Symlink => b.append_link(&mut h, name, data).unwrap(),
                // The tar crate writes no `..`: the name set by hand.
                _ if name.contains("..") => {
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap()
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, data.as_bytes()).unwrap()
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpack_keeps_every_name_under_the_destination() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (dst, outside) = (tmp.path().join("dst"), tmp.path().join("outside"));
        std::fs::create_dir_all(&outside).unwrap();
        let deep = format!("{}f", "d/".repeat(300));
        let good = tar_of(&[
            (&deep, tar::EntryType::Regular, "deep"),
            ("d", tar::EntryType::Directory, ""),
            ("in", tar::EntryType::Symlink, "d"),
            ("in/g", tar::EntryType::Regular, "through a link inside"),
        ]);
        Archive::new(&good[..]).unpack(&dst).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join(&deep)).unwrap(), "deep");
        assert_eq!(
            std::fs::read_to_string(dst.join("d/g")).unwrap(),
            "through a link inside"
        );
        let mode = std::fs::metadata(dst.join("d"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750, "a directory's own mode, set last");
        // A link out, then a name through it; a name with `..`.
        let out = outside.to_str().unwrap();
        for bad in [
            tar_of(&[
                ("l", tar::EntryType::Symlink, out),
                ("l/x", tar::EntryType::Regular, "escaped"),
            ]),
            tar_of(&[("d/../../outside/y", tar::EntryType::Regular, "escaped")]),
        ] {
            let err = Archive::new(&bad[..]).unpack(&dst).unwrap_err();
            assert!(err.to_string().contains("leaving the destination"), "{err}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_long_name_past_the_budget_fails_before_it_is_read() {
        let mut tar = header(tar::EntryType::GNULongName, 1 << 40)
            .as_bytes()
            .to_vec();
        tar.extend(std::iter::repeat_n(b'a', (HEADERS_MAX + BLOCK) as usize));
        let err = names(&tar).unwrap_err();
        assert!(err.to_string().contains("extended headers"), "{err}");
    }

    #[test]
    fn a_name_past_64_kib_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let name = "d/".repeat(40_000) + "f";
        let mut h = header(tar::EntryType::Regular, 1);
        b.append_data(&mut h, &name, &b"x"[..]).unwrap();
        let err = names(&b.into_inner().unwrap()).unwrap_err();
        assert!(err.to_string().contains("past 64 KiB"), "{err}");
    }

    #[test]
    fn big_entries_left_unread_are_skipped_whatever_their_size() {
        let mut b = tar::Builder::new(Vec::new());
        let big = vec![7u8; (HEADERS_MAX * 2) as usize];
        let mut h = header(tar::EntryType::Regular, big.len() as u64);
        b.append_data(&mut h, "big", &big[..]).unwrap();
        let long = "d/".repeat(100) + "f";
        let mut h = header(tar::EntryType::Regular, 1);
        b.append_data(&mut h, &long, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        assert_eq!(names(&tar).unwrap(), vec!["big".to_string(), long]);
    }
}
