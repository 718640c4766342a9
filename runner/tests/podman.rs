//! podman on strata: Debian's podman with its overlay driver's
//! `mount_program` set to strata (run through a link named
//! `fuse-overlayfs`) runs a busybox container, and `podman diff` and
//! `podman commit` give what they give with fuse-overlayfs itself. On the
//! Debian image: `apt-get install` in a container (Debian's mirror is
//! needed; the test fails without it), `podman diff`, `podman commit`,
//! `podman push` to an `oci:` directory and `buildah bud` give the same
//! layers on strata as on fuse-overlayfs. Each as root and rootless.
//!
//! Every podman here has its own `--root` and `--runroot` in a temporary
//! directory, never the machine's storage; containers are removed and
//! mounts detached when a test ends, also when it fails. Needs root,
//! /dev/fuse, podman, runc and fuse-overlayfs; fails, never skips, without
//! them.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FUSE_OVERLAYFS: &str = "/usr/bin/fuse-overlayfs";

fn require_podman() {
    common::privileges::require_root_and_fuse();
    for (tool, args) in [("podman", "--version"), ("runc", "--version")] {
        let ok = Command::new(tool)
            .arg(args)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is missing: this test needs Debian's {tool} (scripts/setup installs it)"
        );
    }
    assert!(
        Path::new(FUSE_OVERLAYFS).exists(),
        "{FUSE_OVERLAYFS} is missing: the test compares strata with it (apt-get install fuse-overlayfs)"
    );
}

/// The busybox rootfs as a tar, made by scripts/build-busybox-image.
fn busybox_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("busybox.tar");
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/build-busybox-image"
    ))
    .env("BUSYBOX_TAR_ONLY", &tar)
    .output()
    .expect("the busybox script runs");
    assert!(
        out.status.success(),
        "build-busybox-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}

/// The ordinary user the rootless runs are made as (Debian's `nobody`:
/// no /etc/subuid range, so podman maps that one id).
const ROOTLESS_UID: u32 = 65534;

/// A podman with storage of its own in a temporary directory on the
/// disk (an overlay upper needs xattrs), mounting through `program`, run
/// as root or, rootless, as an ordinary user.
struct Podman {
    dir: tempfile::TempDir,
    program: PathBuf,
    /// The ordinary user podman runs as; root when None.
    user: Option<u32>,
}

impl Podman {
    fn new(program: &Path, user: Option<u32>) -> Podman {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        if let Some(uid) = user {
            // Its runtime directory too: without one podman falls back to
            // /var/tmp/podman-run-UID, shared by every run.
            let xdg = dir.path().join("xdg");
            fs::create_dir(&xdg).expect("mkdir xdg");
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).expect("chmod xdg");
            for d in [dir.path(), xdg.as_path()] {
                std::os::unix::fs::chown(d, Some(uid), Some(uid))
                    .expect("give the storage to the rootless user");
            }
        }
        // No storage.conf of the machine's: its options must not apply.
        let conf = format!(
            "[storage]\ndriver = \"overlay\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            dir.path().join("runroot").display(),
            dir.path().join("root").display()
        );
        fs::write(dir.path().join("storage.conf"), conf).expect("write storage.conf");
        Podman {
            dir,
            program: program.to_path_buf(),
            user,
        }
    }

    /// `tool` (podman or buildah) as this podman's user, on its storage
    /// and mount program.
    fn storage_cmd(&self, tool: &str) -> Command {
        let d = self.dir.path();
        let mut c = if let Some(uid) = self.user {
            let uid = uid.to_string();
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &uid, "--regid", &uid, "--clear-groups", tool])
                .env("HOME", d)
                .env("XDG_RUNTIME_DIR", d.join("xdg"))
                .env("XDG_CONFIG_HOME", d.join("config"))
                .env("XDG_DATA_HOME", d.join("data"));
            c
        } else {
            Command::new(tool)
        };
        c.env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("TMPDIR", d)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "overlay", "--storage-opt"])
            .arg(format!("overlay.mount_program={}", self.program.display()));
        c
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.storage_cmd("podman");
        // libpod's state not in /run/libpod, which every other podman on
        // the machine shares (buildah has no such flag, nor the state).
        c.arg("--tmpdir").arg(self.dir.path().join("libpod"));
        c.args([
            "--runtime",
            "runc",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--log-level=error",
        ])
        .args(args);
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("podman runs")
    }

    /// Runs podman and returns its stdout; fails the test on an error.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {} (mount program {}): {}{}",
            args.join(" "),
            self.program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman run` with the limits and network the tests use (no network
    /// unless `extra` names one).
    fn run(&self, extra: &[&str], image_and_command: &[&str]) -> String {
        let mut args = vec!["run"];
        if !extra.contains(&"--network") {
            args.extend(["--network", "none"]);
        }
        args.extend([
            "--pull",
            "never",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
        ]);
        args.extend_from_slice(extra);
        args.extend_from_slice(image_and_command);
        self.ok(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.output(&["rm", "-af"]);
        let _ = self.output(&["rmi", "-af"]);
        // Whatever a failure left mounted under this storage.
        let under = self.dir.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&under))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
        // A rootless podman leaves pause processes (catatonit) holding its
        // namespaces: the processes whose HOME is this storage are ours.
        if self.user.is_some() {
            let home = format!("HOME={}", self.dir.path().display());
            for p in fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let env = fs::read(p.path().join("environ")).unwrap_or_default();
                if env.split(|&b| b == 0).any(|v| v == home.as_bytes()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// One line per entry of a layer tar: path, type, mode, owner, size, link
/// target and a hash of the content (times left out: they are the
/// commit's).
fn layer_listing(layer: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(layer);
    for e in a.entries().expect("layer tar") {
        let mut e = e.expect("layer entry");
        let h = e.header().clone();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("entry data");
        let sum = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut xattrs: Vec<String> = e
            .pax_extensions()
            .ok()
            .flatten()
            .map(|exts| {
                exts.filter_map(Result::ok)
                    .filter(|x| x.key().is_ok_and(|k| k.starts_with("SCHILY.xattr.")))
                    .map(|x| format!("{}={:?}", x.key().unwrap_or(""), x.value_bytes()))
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        out.insert(
            path.trim_end_matches('/').to_string(),
            format!(
                "{:?} {:o} {}:{} size={} link={link} sum={sum:x} {}",
                h.entry_type(),
                h.mode().unwrap_or(0),
                h.uid().unwrap_or(0),
                h.gid().unwrap_or(0),
                data.len(),
                xattrs.join(" ")
            ),
        );
    }
    out
}

/// The top layer of `image`, from `podman save` in docker's archive format.
fn top_layer(p: &Podman, image: &str) -> BTreeMap<String, String> {
    let archive = p.dir.path().join("saved.tar");
    let _ = fs::remove_file(&archive);
    p.ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        archive.to_str().expect("utf-8"),
        image,
    ]);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut a = tar::Archive::new(fs::File::open(&archive).expect("open archive"));
    for e in a.entries().expect("archive") {
        let mut e = e.expect("archive entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        files.insert(name, data);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    let top = layers.last().and_then(|l| l.as_str()).expect("a layer");
    layer_listing(&files[top])
}

/// What the container changes: files added, changed, chmodded, removed, a
/// directory replaced, a fifo, a symlink (and, as root, an owner).
const CHANGES: &str = "mkdir -p /new/dir && echo data > /new/dir/f && chmod 640 /new/dir/f \
    && rm /bin/vi && echo more >> /etc/passwd && chmod 600 /etc/group \
    && rm -rf /home && mkdir /home && touch /home/x && mkfifo /new/fifo && ln -s /etc /new/lnk \
    && mkdir /tmp/gone && rmdir /tmp/gone && echo ok";
const CHOWN: &str = "chown 1:2 /new/dir/f";

/// The container's name. Not hexadecimal: `podman diff` takes a name
/// that is also a prefix of an image id (\"c\" was, now and then) for
/// the image, and lists the whole image as added.
const CONTAINER: &str = "box-under-test";

/// Runs the same container on `program`; returns `podman diff` sorted and
/// the committed layer's listing.
fn changes_with(
    program: &Path,
    tar: &Path,
    rootless: bool,
) -> (Vec<String>, BTreeMap<String, String>) {
    let p = Podman::new(program, rootless.then_some(ROOTLESS_UID));
    let tar_copy = p.dir.path().join("busybox.tar");
    fs::copy(tar, &tar_copy).expect("copy the tar where podman's user reads it");
    p.ok(&["import", tar_copy.to_str().expect("utf-8"), "busybox"]);
    let hello = p.run(&["--rm"], &["busybox", "echo", "hello"]);
    assert_eq!(hello.trim(), "hello", "podman run on {}", program.display());
    // A rootless podman without a subordinate range maps one id only.
    let changes = match rootless {
        true => CHANGES.to_string(),
        false => format!("{CHANGES} && {CHOWN}"),
    };
    let out = p.run(&["--name", CONTAINER], &["busybox", "sh", "-c", &changes]);
    assert_eq!(out.trim(), "ok");
    let text = p.ok(&["diff", CONTAINER]);
    let mut diff: Vec<String> = text.lines().map(str::to_string).collect();
    diff.sort();
    p.ok(&["commit", "-q", CONTAINER, "changed"]);
    let layer = top_layer(&p, "changed");
    // The committed image runs on the same mount program.
    let seen = p.run(
        &["--rm"],
        &["changed", "sh", "-c", "cat /new/dir/f; ls /home"],
    );
    assert_eq!(
        seen,
        "data\nx\n",
        "the committed image on {}",
        program.display()
    );
    (diff, layer)
}

#[test]
fn podman_runs_diffs_and_commits_on_strata_as_on_fuse_overlayfs() {
    require_podman();
    same_as_fuse_overlayfs(false);
}

#[test]
fn rootless_podman_runs_diffs_and_commits_on_strata_as_on_fuse_overlayfs() {
    require_podman();
    require_rootless_fuse();
    same_as_fuse_overlayfs(true);
}

fn require_rootless_fuse() {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata("/dev/fuse")
        .expect("/dev/fuse")
        .permissions()
        .mode();
    assert!(
        mode & 0o666 == 0o666,
        "rootless FUSE needs /dev/fuse open to all (0666, as Debian's udev makes it; \
         scripts/test-rootless sets it); it is {:o}",
        mode & 0o777
    );
}

/// A directory the test's users reach, holding a link named
/// `fuse-overlayfs` to strata.
fn strata_link() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    // The rootless user reaches the link to strata through it.
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let strata = t.path().join("fuse-overlayfs");
    std::os::unix::fs::symlink(common::bin(), &strata).expect("link fuse-overlayfs to strata");
    (t, strata)
}

/// podman (root or rootless) on strata and on fuse-overlayfs: the same
/// container gives the same `podman diff` and the same committed layer.
fn same_as_fuse_overlayfs(rootless: bool) {
    let (t, strata) = strata_link();
    let tar = busybox_tar(t.path());
    let (want_diff, want_layer) = changes_with(Path::new(FUSE_OVERLAYFS), &tar, rootless);
    let (diff, layer) = changes_with(&strata, &tar, rootless);
    assert_eq!(diff, want_diff, "podman diff: strata, then fuse-overlayfs");
    let differ = listing_differences(&layer, &want_layer);
    assert!(differ.is_empty(), "committed layers differ:\n{differ}");
}

/// The entries of two layer listings that differ, strata's first.
fn listing_differences(
    layer: &BTreeMap<String, String>,
    want_layer: &BTreeMap<String, String>,
) -> String {
    let mut differ = String::new();
    for k in layer
        .keys()
        .chain(want_layer.keys().filter(|k| !layer.contains_key(*k)))
    {
        if layer.get(k) != want_layer.get(k) {
            differ += &format!(
                "  {k}:\n    strata         {:?}\n    fuse-overlayfs {:?}\n",
                layer.get(k),
                want_layer.get(k)
            );
        }
    }
    differ
}

impl Podman {
    /// Runs buildah on this podman's storage; returns its stdout.
    fn buildah(&self, args: &[&str]) -> String {
        let out = self
            .storage_cmd("buildah")
            .args(args)
            .output()
            .expect("buildah runs");
        assert!(
            out.status.success(),
            "buildah {} (mount program {}): {}{}",
            args.join(" "),
            self.program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman push` of `image` to an `oci:` directory; returns the
    /// listing of the pushed image's top layer, read from that directory.
    fn pushed_top_layer(&self, image: &str) -> BTreeMap<String, String> {
        let oci = self.dir.path().join("oci");
        self.ok(&["push", image, &format!("oci:{}:{image}", oci.display())]);
        let blob = |digest: &str| {
            let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
            fs::read(oci.join("blobs/sha256").join(hex)).expect("a blob of the oci layout")
        };
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(oci.join("index.json")).expect("index.json"))
                .expect("index.json is json");
        let manifest = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == image)
            .and_then(|m| m["digest"].as_str())
            .expect("the pushed image in index.json");
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(manifest)).expect("manifest is json");
        let top = manifest["layers"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|l| l["digest"].as_str())
            .expect("a layer");
        let data = blob(top);
        let tar = match data.get(..2) {
            Some([0x1f, 0x8b]) => {
                let mut t = Vec::new();
                flate2::read::GzDecoder::new(&data[..])
                    .read_to_end(&mut t)
                    .expect("gunzip the layer");
                t
            }
            _ => data,
        };
        layer_listing(&tar)
    }
}

/// The ordinary user the rootless Debian runs are made as: one with a
/// subordinate id range (apt drops to `_apt`, uid 42, which exists in
/// the container only with the range mapped; and rootless podman then
/// passes `uidmapping`/`gidmapping` to its mount program).
const RANGED_USER: &str = "strata-rl";

fn ranged_user() -> u32 {
    let user = nix::unistd::User::from_name(RANGED_USER)
        .expect("read /etc/passwd")
        .unwrap_or_else(|| {
            panic!(
                "the rootless Debian test runs podman as {RANGED_USER}, a user with a \
                 /etc/subuid range: scripts/test-users creates it"
            )
        });
    for f in ["/etc/subuid", "/etc/subgid"] {
        let has = fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{RANGED_USER}:")));
        assert!(
            has,
            "{RANGED_USER} has no range in {f}: scripts/test-users gives it one"
        );
    }
    user.uid.as_raw()
}

/// The Debian rootfs tarball (scripts/debian-rootfs, or
/// STRATA_TEST_DEBIAN_TAR).
fn debian_tar() -> PathBuf {
    if let Ok(t) = std::env::var("STRATA_TEST_DEBIAN_TAR") {
        return PathBuf::from(t);
    }
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/debian-rootfs"
    ))
    .output()
    .expect("scripts/debian-rootfs runs");
    assert!(
        out.status.success(),
        "scripts/debian-rootfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// apt in the container: Debian's mirror is the one address it reaches
/// (host network; apt itself picks the mirror from the image's sources).
const APT_INSTALL: &str = "apt-get update -q && \
    apt-get install -y -q --no-install-recommends hello && hello";

/// A small build on top of the image apt made: a directory, a file
/// chmodded and chowned, files of the lower layers removed, a COPY.
const DOCKERFILE: &str = "FROM withhello\n\
    RUN mkdir -p /opt/app && echo built > /opt/app/f && chmod 640 /opt/app/f \
    && chown 1:2 /opt/app/f && rm /usr/bin/hello && rm -rf /usr/share/doc/hello \
    && rm -rf /var/lib/apt/lists && mkdir /var/lib/apt/lists\n\
    COPY file /opt/app/copied\n";

/// What two runs of the same apt-get install may write differently: logs
/// with the time in them. Their names, types, modes and owners are still
/// compared, their contents not.
fn varies_between_runs(path: &str) -> bool {
    path.starts_with("var/log/") || path.starts_with("var/cache/debconf/")
}

/// A listing with the sizes and sums of [`varies_between_runs`] entries
/// left out.
fn comparable(listing: BTreeMap<String, String>) -> BTreeMap<String, String> {
    listing
        .into_iter()
        .map(|(k, v)| {
            if !varies_between_runs(&k) {
                return (k, v);
            }
            let v = v
                .split(' ')
                .filter(|w| !w.starts_with("size=") && !w.starts_with("sum="))
                .collect::<Vec<_>>()
                .join(" ");
            (k, v)
        })
        .collect()
}

/// What podman and buildah made of the Debian image on one mount program.
struct DebianResults {
    diff: Vec<String>,
    installed: BTreeMap<String, String>,
    built: BTreeMap<String, String>,
}

/// On `program`: import the Debian rootfs, `apt-get install` in a
/// container, `podman diff`, `podman commit`, `podman push` to an `oci:`
/// directory, `buildah bud` on the committed image, and run what was
/// built.
fn debian_with(program: &Path, user: Option<u32>) -> DebianResults {
    let p = Podman::new(program, user);
    let tar = p.dir.path().join("debian.tar");
    fs::copy(debian_tar(), &tar).expect("copy the tar where podman's user reads it");
    p.ok(&["import", tar.to_str().expect("utf-8"), "debian"]);
    let out = p.run(
        &[
            "--name",
            CONTAINER,
            "--network",
            "host",
            "-e",
            "DEBIAN_FRONTEND=noninteractive",
        ],
        &["debian", "sh", "-c", APT_INSTALL],
    );
    assert!(
        out.contains("Hello, world!"),
        "apt-get install hello on {} (needs Debian's mirror): {out}",
        program.display()
    );
    let mut diff: Vec<String> = p
        .ok(&["diff", CONTAINER])
        .lines()
        .map(str::to_string)
        .collect();
    diff.sort();
    p.ok(&["commit", "-q", CONTAINER, "withhello"]);
    let installed = p.pushed_top_layer("withhello");

    let ctx = p.dir.path().join("context");
    fs::create_dir(&ctx).expect("mkdir context");
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
    fs::write(ctx.join("file"), "copied\n").expect("write file");
    if let Some(uid) = user {
        for f in [ctx.clone(), ctx.join("Dockerfile"), ctx.join("file")] {
            std::os::unix::fs::chown(f, Some(uid), Some(uid)).expect("chown context");
        }
    }
    p.buildah(&[
        "bud",
        "--isolation",
        "chroot",
        "-q",
        "-t",
        "built",
        ctx.to_str().expect("utf-8"),
    ]);
    let seen = p.run(
        &["--rm"],
        &[
            "built",
            "sh",
            "-c",
            "cat /opt/app/f /opt/app/copied; stat -c %u:%g:%a /opt/app/f; \
             test -e /usr/bin/hello || echo gone",
        ],
    );
    assert_eq!(
        seen,
        "built\ncopied\n1:2:640\ngone\n",
        "the built image on {}",
        program.display()
    );
    let built = p.pushed_top_layer("built");
    for (layer, name, entry) in [
        (&installed, "apt-get install", "usr/bin/hello"),
        (&built, "buildah bud", "opt/app/copied"),
    ] {
        assert!(
            layer.keys().any(|k| k.ends_with(entry)),
            "the pushed {name} layer on {} has no {entry}: {:?}",
            program.display(),
            layer.keys().take(20).collect::<Vec<_>>()
        );
    }
    DebianResults {
        diff,
        installed: comparable(installed),
        built: comparable(built),
    }
}

#[test]
fn podman_apt_install_commit_push_and_buildah_on_strata_as_on_fuse_overlayfs() {
    require_podman();
    debian_same_as_fuse_overlayfs(None);
}

#[test]
fn rootless_podman_apt_install_commit_push_and_buildah_on_strata_as_on_fuse_overlayfs() {
    require_podman();
    require_rootless_fuse();
    debian_same_as_fuse_overlayfs(Some(ranged_user()));
}

/// The Debian image through apt, commit, push and buildah on strata and
/// on fuse-overlayfs: the same `podman diff`, the same pushed layers.
fn debian_same_as_fuse_overlayfs(user: Option<u32>) {
    let ok = Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "buildah is missing: this test needs Debian's buildah");
    let (_t, strata) = strata_link();
    let want = debian_with(Path::new(FUSE_OVERLAYFS), user);
    let got = debian_with(&strata, user);
    assert_eq!(
        got.diff, want.diff,
        "podman diff after apt-get install: strata, then fuse-overlayfs"
    );
    let differ = listing_differences(&got.installed, &want.installed);
    assert!(
        differ.is_empty(),
        "the pushed apt-get install layers differ:\n{differ}"
    );
    let differ = listing_differences(&got.built, &want.built);
    assert!(
        differ.is_empty(),
        "the pushed buildah bud layers differ:\n{differ}"
    );
}
