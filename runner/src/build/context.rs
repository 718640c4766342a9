//! The build context (a directory the Dockerfile's COPY and ADD read
//! from, less what `.dockerignore` leaves out), and the tar a COPY puts
//! into the image, written with a fingerprint of what it holds: names,
//! types, modes, owners, link targets and bytes, not times, so the build
//! cache holds across a checkout that only touched the files.

use super::in_context::Opened;
use super::pattern::{clean_relative, has_wildcards, Hits, Ignore, Pattern};
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The largest Dockerfile or `.dockerignore` read (docker's front end
/// refuses far smaller ones in practice).
const TEXT_MAX: u64 = 16 << 20;

/// A text file of the context (its Dockerfile, its `.dockerignore`),
/// found as docker finds it: links resolved inside the context, so a
/// `Dockerfile -> /etc/shadow` (or `-> /dev/zero`) is not read on the
/// host. A regular file of at most 16 MiB.
pub fn read_in(root: &Path, rel: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    let found = Opened::resolve(&Opened::root(root)?, rel)?;
    if !found.meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a regular file", rel.display()),
        ));
    }
    let mut text = String::new();
    found.open()?.take(TEXT_MAX + 1).read_to_string(&mut text)?;
    if text.len() as u64 > TEXT_MAX {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is larger than {} MiB", rel.display(), TEXT_MAX >> 20),
        ));
    }
    Ok(text)
}

pub struct Context {
    /// The directory, canonical, and opened; `None` for a Dockerfile
    /// given on stdin without one.
    root: Option<(PathBuf, Opened)>,
    ignore: Ignore,
}

/// One source of a COPY or ADD in the context.
#[derive(Debug)]
pub struct Source {
    /// Where its symlinks led inside the context (`a/b`): a path without
    /// links, opened again (refusing any link) when it is packed, so
    /// that a COPY of many files holds no descriptor per file.
    pub rel: String,
    /// A regular file, when it was found.
    pub is_file: bool,
    /// The name it is copied under when it is a file.
    pub name: String,
    pub is_dir: bool,
}

impl Context {
    pub fn open(dir: Option<&Path>) -> Result<Context> {
        let Some(dir) = dir else {
            return Ok(Context {
                root: None,
                ignore: Ignore::default(),
            });
        };
        let root = std::fs::canonicalize(dir)
            .with_context(|| format!("unable to prepare context: path {:?} not found", dir))?;
        if !root.is_dir() {
            bail!(
                "unable to prepare context: {} is not a directory",
                dir.display()
            );
        }
        let ignore = match read_in(&root, Path::new(".dockerignore")) {
            Ok(text) => Ignore::parse(&text).context("reading .dockerignore")?,
            // A link that leads to nothing inside the context (an absolute
            // one to the context's own path among them) is not "no rules":
            // the files it meant to leave out would go in.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && root.join(".dockerignore").symlink_metadata().is_ok() =>
            {
                bail!("reading .dockerignore: it is a link to nothing inside the build context")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(anyhow!(e).context("reading .dockerignore")),
        };
        let opened = Opened::root(&root)
            .with_context(|| format!("unable to prepare context: open {}", root.display()))?;
        Ok(Context {
            root: Some((root, opened)),
            ignore,
        })
    }

    /// The sources `specs` name, as COPY finds them: cleaned inside the
    /// context, wildcards matched against its files (in name order),
    /// left out when `.dockerignore` leaves them out.
    pub fn sources(&self, keyword: &str, specs: &[String]) -> Result<Vec<Source>> {
        let (root, opened) = self.root.as_ref().ok_or_else(|| {
            anyhow!("{keyword} failed: no build context (the Dockerfile came from stdin)")
        })?;
        let mut sources = Vec::new();
        for spec in specs {
            let rel = clean_relative(spec).ok_or_else(|| {
                anyhow!("{keyword} failed: forbidden path outside the build context: {spec}")
            })?;
            let found = match has_wildcards(&rel) {
                true => self.matching(root, &rel)?,
                false => vec![rel.clone()],
            };
            if found.is_empty() {
                bail!("{keyword} failed: no source files were specified (nothing in the context matches {spec})");
            }
            for rel in found {
                let missing = || {
                    anyhow!("{keyword} failed: file not found in build context or excluded by .dockerignore: {spec}")
                };
                let source = Opened::resolve(opened, &rel).map_err(|_| missing())?;
                let resolved = source.path_under(root).map_err(|_| missing())?;
                let (is_dir, is_file) = (source.meta.is_dir(), source.meta.is_file());
                drop(source);
                // Where its links led counts too (`ln -s .env alias` must
                // not copy an ignored .env); a directory left out may
                // still hold what a `!` rule brings back.
                let left_out = |path: &str| !path.is_empty() && self.ignore.excludes(path);
                let maybe_back = is_dir && self.ignore.has_exceptions();
                if (left_out(&rel) || left_out(&resolved)) && !maybe_back {
                    return Err(missing());
                }
                let name = rel.rsplit('/').next().unwrap_or("").to_string();
                sources.push(Source {
                    rel: resolved,
                    is_file,
                    name,
                    is_dir,
                });
            }
        }
        Ok(sources)
    }

    /// The context's paths that `pattern` (cleaned, relative) matches,
    /// sorted: those as deep as the pattern is.
    fn matching(&self, root: &Path, pattern: &str) -> Result<Vec<String>> {
        let compiled = Pattern::new(pattern)?;
        let depth = pattern.split('/').count();
        let mut found = Vec::new();
        let mut level = vec![String::new()];
        for at in 1..=depth {
            let mut next = Vec::new();
            for dir in &level {
                let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                    continue;
                };
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let rel = match dir.is_empty() {
                        true => name,
                        false => format!("{dir}/{name}"),
                    };
                    if at == depth {
                        if compiled.matches(&rel) && !self.ignore.excludes(&rel) {
                            found.push(rel);
                        }
                    } else if entry.file_type()?.is_dir() {
                        next.push(rel);
                    }
                }
            }
            level = next;
        }
        found.sort();
        Ok(found)
    }

    /// `source` opened again where it was found: a link met on the way
    /// (its path had none) means it was swapped since, and is refused.
    pub fn reopen(&self, source: &Source) -> Result<Opened> {
        let (_, root) = self
            .root
            .as_ref()
            .ok_or_else(|| anyhow!("no build context"))?;
        let opened = Opened::resolve_exact(root, &source.rel)
            .with_context(|| format!("reading {} in the build context", source.rel))?;
        if opened.meta.is_dir() != source.is_dir || opened.meta.is_file() != source.is_file {
            bail!(
                "{} changed in the build context while the build read it",
                source.rel
            );
        }
        Ok(opened)
    }

    /// Whether the entry with these `.dockerignore` hits is left out.
    fn excluded(&self, hits: &Hits) -> bool {
        self.root.is_some() && self.ignore.excluded_by(hits)
    }
}

/// The tar of one COPY or ADD, in a temporary file, and its fingerprint.
pub struct Packer {
    tar: tar::Builder<BufWriter<File>>,
    hasher: Sha256,
    /// `--chmod`'s permission bits, for every entry.
    chmod: Option<u32>,
}

impl Packer {
    pub fn new(tmp_dir: &Path, chmod: Option<u32>) -> Result<Packer> {
        let file = tempfile::tempfile_in(tmp_dir)
            .with_context(|| format!("a temporary file in {}", tmp_dir.display()))?;
        let mut tar = tar::Builder::new(BufWriter::new(file));
        tar.follow_symlinks(false);
        Ok(Packer {
            tar,
            hasher: Sha256::new(),
            chmod,
        })
    }

    /// A source from the context: a file under its name, a directory's
    /// contents (what `.dockerignore` leaves out left out), depth first in
    /// name order, each name opened from its directory's descriptor.
    pub fn add_source(&mut self, context: &Context, source: &Source) -> Result<()> {
        let opened = context.reopen(source)?;
        if !source.is_dir {
            return self.add_opened(&opened, Path::new(&source.name));
        }
        /// A directory to list: the source, or a name in a listed one
        /// (opened again when its turn comes, so that only the
        /// directories on the way down hold a descriptor).
        /// A child keeps its directory's `.dockerignore` hits (shared
        /// among its siblings), to compute its own from when listed.
        enum Dir {
            Top(Opened),
            Child(Rc<Opened>, OsString, Rc<Hits>),
        }
        let top = Dir::Top(opened);
        let mut stack = vec![(top, PathBuf::new(), source.rel.clone())];
        while let Some((at, prefix, rel)) = stack.pop() {
            let (dir, hits) = match at {
                Dir::Top(dir) => (dir, context.ignore.hits(&source.rel)),
                Dir::Child(parent, name, above) => (
                    parent.child(&name)?,
                    context.ignore.hits_below(&rel, &above),
                ),
            };
            // Swapped for something else since it was listed: its entry
            // is in the tar already, nothing is read through it.
            if !dir.meta.is_dir() {
                continue;
            }
            let dir = Rc::new(dir);
            let hits = Rc::new(hits);
            let mut subdirs = Vec::new();
            for file_name in dir
                .names()
                .with_context(|| format!("reading {}", prefix.display()))?
            {
                let entry = dir.child(&file_name)?;
                let is_dir = entry.meta.is_dir();
                let name = prefix.join(&file_name);
                let entry_rel = match rel.is_empty() {
                    true => file_name.to_string_lossy().into_owned(),
                    false => format!("{rel}/{}", file_name.to_string_lossy()),
                };
                match context.excluded(&context.ignore.hits_below(&entry_rel, &hits)) {
                    false => self.add_opened(&entry, &name)?,
                    // Left out, but a `!` rule may bring back what is
                    // under it: looked into, its own entry left out.
                    true if is_dir && context.ignore.has_exceptions() => {}
                    true => continue,
                }
                if is_dir {
                    let child = Dir::Child(dir.clone(), file_name, hits.clone());
                    subdirs.push((child, name, entry_rel));
                }
            }
            // Depth first, in name order: directories are pushed in reverse.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// One file, directory or symlink of the context as it was opened,
    /// owned by root in the tar.
    fn add_opened(&mut self, opened: &Opened, name: &Path) -> Result<()> {
        let md = &opened.meta;
        let kind = md.file_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            // Sockets, fifos and devices of a source tree are not copied.
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata(md);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(md.mtime().max(0) as u64);
        if kind.is_symlink() {
            let target = opened.link_target()?;
            return self.add(header, name, Some(&target), std::io::empty());
        }
        if kind.is_dir() {
            header.set_size(0);
            return self.add(header, name, None, std::io::empty());
        }
        let file = opened
            .open()
            .with_context(|| format!("reading {}", name.display()))?;
        // The size its header says, whatever the file does meanwhile:
        // bytes past it would break the tar, missing ones are zeros.
        let size = md.len();
        self.add(
            header,
            name,
            None,
            file.take(size).chain(std::io::repeat(0)).take(size),
        )
    }

    /// A file ADD downloaded: owned by root, mode 0600, as docker makes it.
    pub fn add_fetched(&mut self, fetched: super::fetch::Fetched) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o600);
        header.set_size(fetched.file.metadata()?.len());
        header.set_mtime(fetched.mtime);
        header.set_uid(0);
        header.set_gid(0);
        self.add(header, Path::new(&fetched.name), None, fetched.file)
    }

    /// The entries of a tar (ADD's local archive, plain, gzip or zstd;
    /// `COPY --from`'s tar from `strata cp`) as they are, owners kept;
    /// with `strip_top`, the first name of each path taken off (a
    /// directory's contents), the top entry itself left out.
    pub fn add_tar(
        &mut self,
        input: impl Read,
        strip_top: bool,
        owned_by_root: bool,
    ) -> Result<()> {
        let mut archive = layerdb::bounded_tar::Archive::new(input);
        for entry in archive.entries().context("reading the tar")? {
            let mut entry = entry.context("reading the tar")?;
            let path = entry.path()?.into_owned();
            let name = match strip_top {
                true => {
                    let mut parts = path.components();
                    parts.next();
                    match parts.as_path() {
                        rest if rest.as_os_str().is_empty() => continue,
                        rest => rest.to_path_buf(),
                    }
                }
                false => path,
            };
            let link = entry.link_name()?.map(|l| l.into_owned());
            let mut header = entry.header().clone();
            if owned_by_root {
                header.set_uid(0);
                header.set_gid(0);
            }
            // A hard link's target is a name of the same tar.
            let link = match (header.entry_type(), link, strip_top) {
                (tar::EntryType::Link, Some(target), true) => {
                    let mut parts = target.components();
                    parts.next();
                    Some(parts.as_path().to_path_buf()).filter(|t| !t.as_os_str().is_empty())
                }
                (_, link, _) => link,
            };
            self.add(header, &name, link.as_deref(), &mut entry)?;
        }
        Ok(())
    }

    fn add(
        &mut self,
        mut header: tar::Header,
        name: &Path,
        link: Option<&Path>,
        data: impl Read,
    ) -> Result<()> {
        if let Some(bits) = self.chmod {
            let mode = header.mode()?;
            header.set_mode((mode & !0o7777) | bits);
        }
        self.hasher.update(name.as_os_str().as_bytes());
        let fields = format!(
            "\0{:?}\0{:o}\0{}\0{}\0{}\0{}\0",
            header.entry_type(),
            header.mode()?,
            header.uid()?,
            header.gid()?,
            header.size()?,
            link.map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        self.hasher.update(fields.as_bytes());
        match link {
            Some(target) => {
                header.set_size(0);
                self.tar.append_link(&mut header, name, target)?;
            }
            None => {
                let hashing = Hashing {
                    inner: data,
                    hasher: &mut self.hasher,
                };
                self.tar.append_data(&mut header, name, hashing)?;
            }
        }
        Ok(())
    }

    /// The tar, at its start, and the fingerprint (hex sha256).
    pub fn finish(self) -> Result<(File, String)> {
        let mut writer = self.tar.into_inner()?;
        writer.flush()?;
        let mut file = writer.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok((file, layerdb::Digest::from_hasher(self.hasher).hex()))
    }
}

/// A reader whose bytes also go into a hash.
struct Hashing<'h, R> {
    inner: R,
    hasher: &'h mut Sha256,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What ADD does with a local file: a tar (plain, gzip or zstd) is
/// unpacked, anything else copied. An archive strata cannot read is
/// refused rather than copied as it is, which docker would not do.
pub enum AddKind {
    File,
    Tar(Box<dyn Read>),
}

/// What `file` (a regular file; `shown` names it) is to ADD.
pub fn add_kind(mut file: File, shown: &str) -> Result<AddKind> {
    let mut head = [0u8; 512];
    let n = read_up_to(&mut file, &mut head)?;
    let head = &head[..n];
    file.rewind()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(AddKind::Tar(Box::new(flate2::read::MultiGzDecoder::new(
            file,
        ))));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(AddKind::Tar(Box::new(zstd::stream::read::Decoder::new(
            file,
        )?)));
    }
    if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        bail!(
            "ADD failed: {shown} is a bzip2 or xz archive, which strata cannot unpack (use gzip or zstd)"
        );
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Ok(AddKind::Tar(Box::new(file)));
    }
    Ok(AddKind::File)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(dir: &Path) -> String {
        let context = Context::open(Some(dir)).unwrap();
        let sources = context.sources("COPY", &[".".to_string()]).unwrap();
        let mut packer = Packer::new(dir, None).unwrap();
        for s in &sources {
            packer.add_source(&context, s).unwrap();
        }
        packer.finish().unwrap().1
    }

    #[test]
    fn the_fingerprint_follows_contents_not_times() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "one").unwrap();
        let first = fingerprint(dir.path());
        let file = File::options()
            .write(true)
            .open(dir.path().join("a"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(fingerprint(dir.path()), first, "a touched file");
        std::fs::write(dir.path().join("a"), "two").unwrap();
        assert_ne!(fingerprint(dir.path()), first, "changed bytes");
    }

    #[test]
    fn names_that_are_not_utf8_stay_apart() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        for name in [&b"bad\xff"[..], &b"bad\xfe"[..]] {
            std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
        }
        let context = Context::open(Some(dir.path())).unwrap();
        let sources = context.sources("COPY", &[".".to_string()]).unwrap();
        let mut packer = Packer::new(dir.path(), None).unwrap();
        packer.add_source(&context, &sources[0]).unwrap();
        let (file, _) = packer.finish().unwrap();
        let mut names: Vec<Vec<u8>> = tar::Archive::new(file)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [b"bad\xfe".to_vec(), b"bad\xff".to_vec()]);
    }

    /// Someone who can write to the context swaps a source directory for
    /// a link to a host directory after the build found it: the build
    /// refuses it (its path had no link), never reads the host's
    /// directory; a directory below it swapped after it was listed is
    /// not descended into.
    #[test]
    fn a_source_swapped_for_a_link_after_it_was_found_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/sub/f"), "mine").unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("sub/secret"), "host's").unwrap();
        let context = Context::open(Some(&root)).unwrap();
        let sources = context.sources("COPY", &["d".to_string()]).unwrap();
        std::fs::rename(root.join("d"), root.join("d.moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        let mut packer = Packer::new(dir.path(), None).unwrap();
        let err = packer.add_source(&context, &sources[0]).unwrap_err();
        assert!(
            format!("{err:#}").contains("d changed in the build context"),
            "{err:#}"
        );
        // Put back, then the subdirectory swapped once its parent is open.
        std::fs::remove_file(root.join("d")).unwrap();
        std::fs::rename(root.join("d.moved"), root.join("d")).unwrap();
        let top = context.reopen(&sources[0]).unwrap();
        let sub = top.child(std::ffi::OsStr::new("sub")).unwrap();
        std::fs::rename(root.join("d/sub"), root.join("d/sub.moved")).unwrap();
        std::os::unix::fs::symlink(outside.join("sub"), root.join("d/sub")).unwrap();
        let again = top.child(std::ffi::OsStr::new("sub")).unwrap();
        assert!(sub.meta.is_dir() && !again.meta.is_dir());
        let mut packer = Packer::new(dir.path(), None).unwrap();
        packer.add_source(&context, &sources[0]).unwrap();
        let (file, _) = packer.finish().unwrap();
        let names: Vec<Vec<u8>> = tar::Archive::new(file)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(b"secret")), "{names:?}");
    }

    #[test]
    fn sources_stay_in_the_context_and_skip_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("b.txt"), "b").unwrap();
        std::fs::write(root.join("secret.txt"), "s").unwrap();
        std::fs::write(root.join(".dockerignore"), "secret.txt\n").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        let context = Context::open(Some(root)).unwrap();
        let names = |specs: &[&str]| -> Result<Vec<String>> {
            let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
            Ok(context
                .sources("COPY", &specs)?
                .into_iter()
                .map(|s| s.name)
                .collect())
        };
        assert_eq!(names(&["*.txt"]).unwrap(), ["a.txt", "b.txt"]);
        assert!(names(&["secret.txt"]).is_err());
        assert!(names(&["../x"])
            .unwrap_err()
            .to_string()
            .contains("outside the build context"));
        assert!(names(&["nothing*"]).is_err());
        // A link to /etc leads to the context's own etc, which is not there.
        assert!(names(&["etc/passwd"]).is_err());
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::write(root.join("real/passwd"), "mine").unwrap();
        std::fs::remove_file(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("etc")).unwrap();
        let sources = context
            .sources("COPY", &["etc/passwd".to_string()])
            .unwrap();
        assert_eq!(sources[0].rel, "real/passwd");
    }
}
