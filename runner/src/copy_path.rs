//! docker's rules for where `cp` puts what it copies: which side names a
//! container, what a source and a destination path are found to be, and
//! from those the directory the tar is unpacked in and the name its top
//! entry takes there (moby's `archive.PrepareArchiveCopy`). The same
//! functions resolve paths on the host and, inside a container's root,
//! in `__archive` (see `commands/cp.rs`).

use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

/// One side of `cp`: `CONTAINER:PATH`, or a path on the host (`-` for a
/// tar on stdin or stdout).
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Container { container: &'a str, path: String },
    Local(&'a str),
}

impl<'a> Endpoint<'a> {
    /// docker's split: an absolute path, a path without `:`, and one
    /// whose part before the `:` starts with `.` (`./a:b`) are the host's.
    /// A container path is taken from the container's root, with or
    /// without its leading `/`.
    pub fn parse(arg: &'a str) -> Endpoint<'a> {
        if arg.starts_with('/') {
            return Endpoint::Local(arg);
        }
        match arg.split_once(':') {
            Some((container, path)) if !container.starts_with('.') => Endpoint::Container {
                container,
                path: match path.starts_with('/') {
                    true => path.to_string(),
                    false => format!("/{path}"),
                },
            },
            _ => Endpoint::Local(arg),
        }
    }
}

/// What is copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The path as given.
    pub path: String,
    pub is_dir: bool,
    /// The name its top entry takes: the path's last element (`.` for a
    /// path ending in `/.`, which copies a directory's contents), also
    /// when the path is a symlink followed (`-L`) to another name.
    pub name: String,
}

/// Where it goes, after following symlinks as docker does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The path, with a symlink at its end replaced by its target.
    pub path: String,
    pub exists: bool,
    pub is_dir: bool,
    /// Exists and is neither a directory nor a regular file (docker
    /// refuses to write over a device, a fifo or a socket).
    pub is_special: bool,
}

/// Where the tar is unpacked, and the name its top entry has in it.
#[derive(Debug, PartialEq, Eq)]
pub struct Placement {
    pub dir: String,
    pub name: String,
}

/// docker's `SplitPathDirEntry`: the directory and the last element of a
/// path, `.` kept as an element (`/a/b/.` is `/a/b` and `.`).
pub fn split_dir_entry(path: &str) -> (String, String) {
    let cleaned = clean(path);
    let cleaned = match path.ends_with("/.") || path == "." {
        true if cleaned != "." => format!("{cleaned}/."),
        _ => cleaned,
    };
    match cleaned.rsplit_once('/') {
        // The root copies as its contents.
        Some(("", "")) => ("/".to_string(), ".".to_string()),
        Some(("", base)) => ("/".to_string(), base.to_string()),
        Some((dir, base)) => (dir.to_string(), base.to_string()),
        None => (".".to_string(), cleaned),
    }
}

/// Whether the path says it is a directory (`dir/`, `dir/.`).
pub fn asserts_directory(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.") || path == "."
}

/// Lexical cleaning (Go's `filepath.Clean`): no `.` elements, no
/// repeated or trailing `/`, `..` taken against what precedes it.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The source at `path` (`follow`: a symlink at its end is followed, its
/// top entry keeping the link's name). `None` when nothing is there.
pub fn source(path: &str, follow: bool) -> io::Result<Option<Source>> {
    let found = match follow {
        true => std::fs::metadata(path),
        false => std::fs::symlink_metadata(path),
    };
    let md = match found {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(Source {
        path: path.to_string(),
        is_dir: md.is_dir(),
        name: split_dir_entry(path).1,
    }))
}

/// docker's `CopyInfoDestinationPath`: a symlink at the end of `path` is
/// followed (at most 10 times; a dangling one names the file to create);
/// a path that does not exist needs its parent directory to. A link the
/// kernel would not follow for this caller (`protected_symlinks`: another
/// user's, in a sticky world-writable directory it does not own) is
/// refused too: resolving links here skipped the kernel's rule, and root's
/// `cp CTR:SRC /tmp/x` wrote through a user's `/tmp/x -> /etc/...`
/// (found by a review as an attacker; docker's client resolves it too).
pub fn destination(path: &str) -> io::Result<Destination> {
    let mut path = path.to_string();
    let mut found = std::fs::symlink_metadata(&path);
    let mut links = 0;
    while let Ok(md) = &found {
        if !md.file_type().is_symlink() {
            break;
        }
        if !may_follow(&path, md) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{path}: another user's link in a sticky directory is not followed"),
            ));
        }
        links += 1;
        if links > 10 {
            return Err(io::Error::other(format!("too many symlinks in {path}")));
        }
        let target = std::fs::read_link(&path)?;
        let target = target.to_string_lossy();
        path = match target.starts_with('/') {
            true => target.into_owned(),
            false => clean(&format!("{}/{target}", split_dir_entry(&path).0)),
        };
        found = std::fs::symlink_metadata(&path);
    }
    match found {
        Ok(md) => Ok(Destination {
            path,
            exists: true,
            is_dir: md.is_dir(),
            is_special: !md.is_dir() && !md.is_file(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = split_dir_entry(&path).0;
            let md = std::fs::metadata(&parent)
                .map_err(|e| io::Error::new(e.kind(), format!("stat {parent}: {e}")))?;
            if !md.is_dir() {
                return Err(io::Error::other(format!("{parent} is not a directory")));
            }
            Ok(Destination {
                path,
                exists: false,
                is_dir: false,
                is_special: false,
            })
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("lstat {path}: {e}"))),
    }
}

/// The kernel's `protected_symlinks` rule for link `path` (its lstat
/// `md`): followed unless it sits in a sticky, world-writable directory
/// and belongs neither to the caller nor to the directory's owner.
fn may_follow(path: &str, md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(dir) = std::fs::metadata(split_dir_entry(path).0) else {
        return true;
    };
    let sticky_shared = dir.mode() & 0o1002 == 0o1002;
    !sticky_shared || md.uid() == nix::unistd::geteuid().as_raw() || md.uid() == dir.uid()
}

/// Where a copy of `src` to `dst` is unpacked, as docker decides it:
/// into an existing directory under the source's name; over an existing
/// file, or as a new file or directory, in the destination's parent
/// under the destination's name.
pub fn placement(src: &Source, dst: &Destination) -> anyhow::Result<Placement> {
    let (dst_dir, dst_name) = split_dir_entry(&dst.path);
    if dst.exists && dst.is_dir {
        return Ok(Placement {
            dir: dst.path.clone(),
            name: src.name.clone(),
        });
    }
    if dst.exists && src.is_dir {
        anyhow::bail!("cannot copy a directory to a file: {}", dst.path);
    }
    if !dst.exists && !src.is_dir && asserts_directory(&dst.path) {
        anyhow::bail!("no such directory: {}", dst.path);
    }
    Ok(Placement {
        dir: dst_dir,
        name: dst_name,
    })
}

/// A container path with `.` and `..` taken lexically from `/`, as
/// docker's daemon cleans it (`filepath.Join("/", path)`) before it
/// picks the mount holding it, a trailing `/` or `/.` kept, as docker's
/// `PreserveTrailingDotOrSeparator` keeps them (they decide where a copy
/// goes). So `/vol/../etc/passwd` is `/etc/passwd` whether the container
/// runs (its tree resolves it) or not (the copy picks a volume by it).
pub fn clean_container_path(path: &str) -> String {
    let parts = crate::mount_spec::target_parts(path);
    let end = if path.ends_with("/.") {
        "/."
    } else if path.ends_with('/') {
        "/"
    } else {
        ""
    };
    match (parts.is_empty(), end) {
        (true, "/.") => "/.".to_string(),
        (true, _) => "/".to_string(),
        (false, end) => format!("/{}{end}", parts.join("/")),
    }
}

/// Whether `path` in a container lies on one of `targets` (its volumes'
/// mount points) or below one.
pub fn under_any<'t>(path: &str, targets: impl IntoIterator<Item = &'t str>) -> bool {
    let path = Path::new(path);
    targets.into_iter().any(|t| path.starts_with(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_cleaned_as_dockers_daemon_cleans_them() {
        assert_eq!(clean_container_path("/vol/../etc/passwd"), "/etc/passwd");
        assert_eq!(clean_container_path("etc//x/./"), "/etc/x/");
        assert_eq!(clean_container_path("/srv/d/."), "/srv/d/.");
        assert_eq!(clean_container_path("/../.."), "/");
        assert_eq!(clean_container_path("/."), "/.");
        assert_eq!(clean_container_path("/"), "/");
    }

    #[test]
    fn arguments_split_as_docker_splits_them() {
        let ctr = |container, path: &str| Endpoint::Container {
            container,
            path: path.to_string(),
        };
        assert_eq!(Endpoint::parse("web:/etc/hosts"), ctr("web", "/etc/hosts"));
        assert_eq!(Endpoint::parse("web:etc"), ctr("web", "/etc"));
        assert_eq!(Endpoint::parse("web:"), ctr("web", "/"));
        assert_eq!(Endpoint::parse("/a:b"), Endpoint::Local("/a:b"));
        assert_eq!(Endpoint::parse("./a:b"), Endpoint::Local("./a:b"));
        assert_eq!(Endpoint::parse("file"), Endpoint::Local("file"));
        assert_eq!(Endpoint::parse("-"), Endpoint::Local("-"));
    }

    #[test]
    fn a_path_splits_into_its_directory_and_last_element() {
        let split = |p| {
            let (d, b) = split_dir_entry(p);
            (d.as_str().to_owned(), b)
        };
        assert_eq!(split("/a/b"), ("/a".into(), "b".into()));
        assert_eq!(split("/a/b/"), ("/a".into(), "b".into()));
        assert_eq!(split("/a/b/."), ("/a/b".into(), ".".into()));
        assert_eq!(split("/a//b/../c"), ("/a".into(), "c".into()));
        assert_eq!(split("/"), ("/".into(), ".".into()));
        assert_eq!(split("b"), (".".into(), "b".into()));
        assert_eq!(split("."), (".".into(), ".".into()));
        assert_eq!(split("x/."), ("x".into(), ".".into()));
        assert_eq!(split("../x"), ("..".into(), "x".into()));
    }

    fn src(path: &str, is_dir: bool) -> Source {
        Source {
            path: path.into(),
            is_dir,
            name: split_dir_entry(path).1,
        }
    }

    fn dst(path: &str, exists: bool, is_dir: bool) -> Destination {
        Destination {
            path: path.into(),
            exists,
            is_dir,
            is_special: false,
        }
    }

    fn placed(dir: &str, name: &str) -> Result<Placement, String> {
        Ok(Placement {
            dir: dir.into(),
            name: name.into(),
        })
    }

    fn place(src: &Source, dst: &Destination) -> Result<Placement, String> {
        placement(src, dst).map_err(|e| e.to_string())
    }

    #[test]
    fn placement_follows_dockers_table() {
        // A file: into a directory under its name, over a file under the
        // file's name, as a new file under the new name.
        assert_eq!(
            place(&src("/etc/hosts", false), &dst("/tmp", true, true)),
            placed("/tmp", "hosts")
        );
        assert_eq!(
            place(&src("/etc/hosts", false), &dst("/tmp/h", true, false)),
            placed("/tmp", "h")
        );
        assert_eq!(
            place(&src("/etc/hosts", false), &dst("/tmp/new", false, false)),
            placed("/tmp", "new")
        );
        assert_eq!(
            place(&src("/etc/hosts", false), &dst("/tmp/new/", false, false)),
            Err("no such directory: /tmp/new/".into())
        );
        // A directory: into a directory under its name, its contents
        // alone with `/.`, as a new directory under the new name (also
        // when the name ends in `/`), never over a file.
        assert_eq!(
            place(&src("/etc", true), &dst("/tmp", true, true)),
            placed("/tmp", "etc")
        );
        assert_eq!(
            place(&src("/etc/.", true), &dst("/tmp", true, true)),
            placed("/tmp", ".")
        );
        assert_eq!(
            place(&src("/etc/.", true), &dst("/tmp/new", false, false)),
            placed("/tmp", "new")
        );
        assert_eq!(
            place(&src("/etc", true), &dst("/tmp/new/", false, false)),
            placed("/tmp", "new")
        );
        assert_eq!(
            place(&src("/etc", true), &dst("/tmp/h", true, false)),
            Err("cannot copy a directory to a file: /tmp/h".into())
        );
    }

    #[test]
    fn a_destination_symlink_is_followed_and_a_missing_parent_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
        std::fs::create_dir(p("dir")).unwrap();
        std::os::unix::fs::symlink("dir", p("to-dir")).unwrap();
        std::os::unix::fs::symlink(p("new"), p("dangling")).unwrap();
        std::os::unix::fs::symlink("loop", p("loop")).unwrap();
        let to_dir = destination(&p("to-dir")).unwrap();
        assert_eq!(
            (to_dir.path, to_dir.exists, to_dir.is_dir),
            (p("dir"), true, true)
        );
        let dangling = destination(&p("dangling")).unwrap();
        assert_eq!((dangling.path, dangling.exists), (p("new"), false));
        assert!(destination(&p("loop")).is_err());
        assert!(destination(&p("missing/x")).is_err());
        assert!(!destination(&p("missing")).unwrap().exists);
        assert!(destination("/dev/null").unwrap().is_special);
    }

    #[test]
    fn a_followed_source_keeps_the_links_name() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
        std::fs::create_dir(p("dir")).unwrap();
        std::os::unix::fs::symlink("dir", p("link")).unwrap();
        let followed = source(&p("link"), true).unwrap().unwrap();
        assert_eq!((followed.is_dir, followed.name.as_str()), (true, "link"));
        let itself = source(&p("link"), false).unwrap().unwrap();
        assert!(!itself.is_dir);
        assert_eq!(source(&p("nothing"), false).unwrap(), None);
        assert_eq!(source(&p("dir/."), false).unwrap().unwrap().name, ".");
    }
}
