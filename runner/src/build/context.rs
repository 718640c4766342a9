//! The build context (a directory the Dockerfile's COPY and ADD read
//! from, less what `.dockerignore` leaves out), and the tar a COPY puts
//! into the image, written with a fingerprint of what it holds: names,
//! types, modes, owners, link targets and bytes, not times, so the build
//! cache holds across a checkout that only touched the files.

use super::pattern::{clean_relative, has_wildcards, Ignore, Pattern};
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Symlinks followed while resolving one source, as Linux allows.
const MAX_LINKS: usize = 40;

/// The largest Dockerfile or `.dockerignore` read (docker's front end
/// refuses far smaller ones in practice).
const TEXT_MAX: u64 = 16 << 20;

/// A text file of the context (its Dockerfile, its `.dockerignore`),
/// found as docker finds it: links resolved inside the context, so a
/// `Dockerfile -> /etc/shadow` (or `-> /dev/zero`) is not read on the
/// host. A regular file of at most 16 MiB.
pub fn read_in(root: &Path, rel: &Path) -> std::io::Result<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::{Error, ErrorKind};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a regular file", rel.display()),
        ));
    }
    let mut text = String::new();
    file.take(TEXT_MAX + 1).read_to_string(&mut text)?;
    if text.len() as u64 > TEXT_MAX {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is larger than {} MiB", rel.display(), TEXT_MAX >> 20),
        ));
    }
    Ok(text)
}

pub struct Context {
    /// The directory, canonical; `None` for a Dockerfile given on stdin
    /// without one.
    root: Option<PathBuf>,
    ignore: Ignore,
}

/// One source of a COPY or ADD in the context.
#[derive(Debug)]
pub struct Source {
    /// Where it is on the host, its symlinks followed inside the context.
    pub host: PathBuf,
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(anyhow!(e).context("reading .dockerignore")),
        };
        Ok(Context {
            root: Some(root),
            ignore,
        })
    }

    /// The sources `specs` name, as COPY finds them: cleaned inside the
    /// context, wildcards matched against its files (in name order),
    /// left out when `.dockerignore` leaves them out.
    pub fn sources(&self, keyword: &str, specs: &[String]) -> Result<Vec<Source>> {
        let root = self.root.as_deref().ok_or_else(|| {
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
                let host = resolve_in(root, &rel)?;
                let md = std::fs::metadata(&host).map_err(|_| missing())?;
                // Where its links led counts too (`ln -s .env alias` must
                // not copy an ignored .env); a directory left out may
                // still hold what a `!` rule brings back.
                let resolved = host.strip_prefix(root).unwrap_or(&host).to_string_lossy();
                let left_out = |path: &str| !path.is_empty() && self.ignore.excludes(path);
                let maybe_back = md.is_dir() && self.ignore.has_exceptions();
                if (left_out(&rel) || left_out(&resolved)) && !maybe_back {
                    return Err(missing());
                }
                let name = rel.rsplit('/').next().unwrap_or("").to_string();
                sources.push(Source {
                    host,
                    name,
                    is_dir: md.is_dir(),
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

    /// Whether the directory tree's entry at `rel` (relative to the
    /// context) is left out.
    fn excluded(&self, host: &Path) -> bool {
        let Some(root) = &self.root else { return false };
        match host.strip_prefix(root) {
            Ok(rel) => self.ignore.excludes(&rel.to_string_lossy()),
            Err(_) => false,
        }
    }
}

/// `rel` under `root` with every symlink on the way followed as if `root`
/// were `/` (docker's `FollowSymlinkInScope`): a link cannot lead out.
fn resolve_in(root: &Path, rel: &str) -> Result<PathBuf> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let path = root.join(done.join("/")).join(&part);
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("too many levels of symbolic links: {rel}");
                }
                let target = std::fs::read_link(&path)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
            }
            _ => done.push(part),
        }
    }
    Ok(root.join(done.join("/")))
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
    /// contents (what `.dockerignore` leaves out left out).
    pub fn add_source(&mut self, context: &Context, source: &Source) -> Result<()> {
        if !source.is_dir {
            return self.add_host(&source.host, Path::new(&source.name));
        }
        // Names as the file system has them, bytes and all.
        let mut stack = vec![(source.host.clone(), PathBuf::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let mut entries = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .collect::<std::io::Result<Vec<_>>>()?;
            entries.sort_by_key(|e| e.file_name());
            // Depth first, in name order: directories are pushed in reverse.
            let mut subdirs = Vec::new();
            for entry in entries {
                let host = entry.path();
                let is_dir = entry.file_type()?.is_dir();
                let name = prefix.join(entry.file_name());
                match context.excluded(&host) {
                    false => self.add_host(&host, &name)?,
                    // Left out, but a `!` rule may bring back what is
                    // under it: looked into, its own entry left out.
                    true if is_dir && context.ignore.has_exceptions() => {}
                    true => continue,
                }
                if is_dir {
                    subdirs.push((host, name));
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// One host file, directory or symlink, owned by root in the tar.
    fn add_host(&mut self, host: &Path, name: &Path) -> Result<()> {
        let md = std::fs::symlink_metadata(host)
            .with_context(|| format!("reading {}", host.display()))?;
        let kind = md.file_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            // Sockets, fifos and devices of a source tree are not copied.
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata(&md);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(md.mtime().max(0) as u64);
        if kind.is_symlink() {
            let target = std::fs::read_link(host)?;
            return self.add(header, name, Some(&target), std::io::empty());
        }
        if kind.is_dir() {
            header.set_size(0);
            return self.add(header, name, None, std::io::empty());
        }
        let file = File::open(host).with_context(|| format!("reading {}", host.display()))?;
        self.add(header, name, None, file)
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

pub fn add_kind(path: &Path) -> Result<AddKind> {
    // Opened only as a regular file: a fifo would wait for a writer.
    if !std::fs::metadata(path).is_ok_and(|md| md.is_file()) {
        return Ok(AddKind::File);
    }
    let mut head = [0u8; 512];
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
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
            "ADD failed: {} is a bzip2 or xz archive, which strata cannot unpack (use gzip or zstd)",
            path.display()
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
        assert_eq!(
            sources[0].host,
            root.canonicalize().unwrap().join("real/passwd")
        );
    }
}
