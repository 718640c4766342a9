//! A container is not the host's root: docker's default capabilities,
//! seccomp profile, masked and read-only paths and /dev, and the flags
//! that change them (`--cap-add`, `--cap-drop`, `--privileged`,
//! `--security-opt`), probed from inside busybox containers made at test
//! time. Each probe is harmless to the host even where the isolation it
//! checks is missing: a sysctl is written with the value it already has.
//!
//! Root only; the same probes as an ordinary user (rootless) are in
//! scripts/test-rootless.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use std::cell::RefCell;
use std::fs;

use common::{Run, Strata, TarMaker};

/// docker's default capability set (moby's caps.DefaultCapabilities).
const DOCKER_DEFAULT_CAPS: u64 = 0xa804_25fb;
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// A store holding busybox, and the named containers a test made in it,
/// removed (`rm -f`) when the fixture drops, also when the test fails.
struct Fixture {
    strata: Strata,
    containers: RefCell<Vec<String>>,
}

impl Fixture {
    fn new() -> Fixture {
        common::privileges::require_root_and_fuse();
        Fixture {
            strata: Strata::with_busybox(),
            containers: RefCell::new(Vec::new()),
        }
    }

    /// `strata run --rm OPTIONS... busybox sh -c SCRIPT`.
    fn sh(&self, options: &[&str], script: &str) -> Run {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(options);
        args.extend_from_slice(&["busybox", "sh", "-c", script]);
        self.strata.run(&args)
    }

    fn track(&self, name: &str) {
        self.containers.borrow_mut().push(name.to_owned());
    }

    /// No container is listed, stopped ones included.
    fn assert_nothing_left(&self) {
        let listed = self.strata.run(&["ps", "-a", "-q"]).ok().stdout;
        assert_eq!(listed, "", "a refused run left a container");
    }
}

/// A run refused before it made anything: exit 125, `message` in its error.
fn assert_refused(r: &Run, what: &str, message: &str) {
    assert_eq!(r.code, 125, "{what}: {}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(message), "{what}: {}", r.stderr);
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let names = self.containers.take();
        if names.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(String::as_str));
        let _ = self.strata.run(&args);
    }
}

/// A `Name:\tvalue` line of /proc/self/status as printed by grep.
fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status:?}"))
        .trim()
}

fn caps_field(status: &str, name: &str) -> u64 {
    u64::from_str_radix(status_field(status, name), 16).expect("a hex capability mask")
}

/// The capabilities, seccomp mode and no_new_privs of a container's process.
fn status(f: &Fixture, options: &[&str]) -> String {
    f.sh(
        options,
        "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status",
    )
    .ok()
    .stdout
}

#[test]
fn a_default_container_has_dockers_capabilities_and_seccomp_filter() {
    let f = Fixture::new();
    let status = status(&f, &[]);
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(
            caps_field(&status, set),
            DOCKER_DEFAULT_CAPS,
            "{set}: {status}"
        );
    }
    // Empty, as docker asks of runc since the inheritable-set fix
    // (CVE-2022-24769), and ambient cleared.
    assert_eq!(caps_field(&status, "CapInh"), 0, "{status}");
    assert_eq!(caps_field(&status, "CapAmb"), 0, "{status}");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
    assert_eq!(status_field(&status, "NoNewPrivs"), "0", "{status}");
}

#[test]
fn another_user_keeps_only_the_bounding_set_as_with_docker() {
    let f = Fixture::new();
    let status = status(&f, &["-u", "65534"]);
    assert_eq!(
        caps_field(&status, "CapBnd"),
        DOCKER_DEFAULT_CAPS,
        "{status}"
    );
    assert_eq!(caps_field(&status, "CapEff"), 0, "{status}");
    assert_eq!(caps_field(&status, "CapPrm"), 0, "{status}");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
}

#[test]
fn cap_add_and_cap_drop_change_the_set_with_dockers_names() {
    let f = Fixture::new();
    let none = status(&f, &["--cap-drop", "ALL"]);
    assert_eq!(caps_field(&none, "CapEff"), 0, "{none}");
    assert_eq!(caps_field(&none, "CapBnd"), 0, "{none}");
    let admin = status(&f, &["--cap-add", "sys_admin"]);
    assert_eq!(
        caps_field(&admin, "CapEff"),
        DOCKER_DEFAULT_CAPS | CAP_SYS_ADMIN,
        "{admin}"
    );
    let fewer = status(&f, &["--cap-drop", "CAP_CHOWN", "--cap-drop", "net_raw"]);
    assert_eq!(
        caps_field(&fewer, "CapEff"),
        DOCKER_DEFAULT_CAPS & !(1 | 1 << 13),
        "{fewer}"
    );
    let bad = f.sh(&["--cap-add", "FLY"], "true");
    assert_eq!(bad.code, 125, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("unknown capability: \"CAP_FLY\""),
        "{}",
        bad.stderr
    );
    assert_eq!(bad.stderr.lines().count(), 1, "{}", bad.stderr);
}

#[test]
fn the_escapes_docker_blocks_fail_inside_a_default_container() {
    let f = Fixture::new();
    // Each probe prints its name when the container managed it. The
    // core_pattern write puts back the value already there.
    let script = "\
        mkdir -p /mnt/t /mnt/cg; \
        mount -t tmpfs none /mnt/t 2>/dev/null && echo tmpfs-mount; \
        mount -t cgroup -o memory cgroup /mnt/cg 2>/dev/null && echo cgroup-mount; \
        unshare -U true 2>/dev/null && echo unshare-user; \
        unshare -r true 2>/dev/null && echo unshare-root; \
        cat /proc/sys/kernel/core_pattern > /tmp/pattern; \
        cat /tmp/pattern 2>/dev/null > /proc/sys/kernel/core_pattern && echo core-pattern; \
        mount -o remount,rw /sys 2>/dev/null && echo sys-remount; \
        touch /sys/kernel/strata-probe 2>/dev/null && echo sys-write; \
        for masked in kcore timer_list sched_debug; do \
          [ \"$(head -c 1 /proc/$masked 2>/dev/null | wc -c)\" = 0 ] || echo $masked-readable; \
        done; \
        [ -z \"$(ls /sys/firmware)\" ] || echo firmware-listed; \
        echo done";
    let out = f.sh(&[], script).ok().stdout;
    assert_eq!(out, "done\n", "probes that got through: {out}");
}

/// An image whose /proc or /sys is a link does not start, as runc refuses
/// it. The link sent the kernel filesystem elsewhere in the tree, where
/// the masks and read-only binds did not follow it: with `/proc ->
/// /dev/l/proc` and `/dev/l -> /y` (hidden by the /dev tmpfs once
/// mounted), procfs landed at /y/proc unmasked, /proc/sys writable.
#[test]
fn an_image_whose_proc_or_sys_is_a_link_does_not_start() {
    let f = Fixture::new();
    let busybox = fs::read("/bin/busybox").expect("the host's busybox");
    for (name, fs_name, links) in [
        ("proc", "proc", [("proc", "/dev/l/proc"), ("dev/l", "/y")]),
        ("sys", "sysfs", [("sys", "/dev/l/sys"), ("dev/l", "/y")]),
    ] {
        let mut tar = TarMaker::new()
            .dir("bin")
            .file_with_mode("bin/busybox", &busybox, 0o755)
            .symlink("bin/sh", "busybox")
            .symlink("bin/cat", "busybox")
            .dir("dev")
            .dir("y")
            .dir(&format!("y/{name}"));
        for (path, target) in links {
            tar = tar.symlink(path, target);
        }
        let image = format!("linked-{name}");
        f.strata
            .import(&tar.write(&f.strata.path(&format!("{image}.tar"))), &image);
        let r = f.strata.run(&[
            "run",
            "--rm",
            &image,
            "sh",
            "-c",
            "cat /y/proc/sys/kernel/panic",
        ]);
        let message = format!("filesystem \"{fs_name}\" must be mounted on ordinary directory");
        assert_refused(&r, &image, &message);
    }
    f.assert_nothing_left();
}

/// `--init`'s pid 1 stays strata's binary, whose environment was the
/// whole of the caller's: a container given CAP_SYS_PTRACE read it from
/// /proc/1/environ (found by a review).
#[test]
fn the_init_shows_the_container_none_of_the_callers_environment() {
    let f = Fixture::new();
    let r = f
        .strata
        .cmd(&[
            "run",
            "--rm",
            "--init",
            "--cap-add",
            "SYS_PTRACE",
            "busybox",
            "sh",
            "-c",
            "tr '\\0' '\\n' < /proc/1/environ",
        ])
        .env("CALLER_SECRET", "s3cret")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!shown.contains("CALLER_SECRET"), "{shown}");
}

/// A tmpfs or an /etc file bound where an image's links lead must not land
/// inside /proc, as a volume must not: `--tmpfs /psys/kernel` through an
/// image's `psys -> /proc/sys` put a writable tmpfs over the kernel's
/// settings, and `/etc/hosts -> /proc/...` bound strata's file over a
/// kernel one.
#[test]
fn a_tmpfs_or_etc_file_is_not_steered_into_proc_by_the_images_links() {
    let f = Fixture::new();
    let busybox = fs::read("/bin/busybox").expect("the host's busybox");
    let image = |name: &str, link: (&str, &str)| {
        let tar = TarMaker::new()
            .dir("bin")
            .file_with_mode("bin/busybox", &busybox, 0o755)
            .symlink("bin/sh", "busybox")
            .dir("etc")
            .dir("proc")
            .dir("sys")
            .dir("dev")
            .symlink(link.0, link.1);
        f.strata
            .import(&tar.write(&f.strata.path(&format!("{name}.tar"))), name);
    };
    image("psys", ("psys", "/proc/sys"));
    let r = f.strata.run(&[
        "run",
        "--rm",
        "--tmpfs",
        "/psys/kernel",
        "psys",
        "sh",
        "-c",
        "true",
    ]);
    assert_refused(
        &r,
        "--tmpfs /psys/kernel",
        "tmpfs /psys/kernel: \"/proc/sys/kernel\" cannot be mounted because it is inside /proc",
    );
    image("hosts", ("etc/hosts", "/proc/sys/kernel/domainname"));
    let r = f.strata.run(&["run", "--rm", "hosts", "sh", "-c", "true"]);
    assert_refused(
        &r,
        "/etc/hosts -> /proc",
        "cannot be mounted because it is inside /proc",
    );
    f.assert_nothing_left();
}

/// The monitor a `run -d` leaves behind was forked from the command, and
/// every user could read its `-e` values in `ps` for as long as the
/// container ran; its command line now shows the program's name only.
#[test]
fn a_detached_containers_monitor_shows_no_environment_values() {
    let f = Fixture::new();
    f.track("secret-env");
    let id = f
        .strata
        .run(&[
            "run",
            "-d",
            "--name",
            "secret-env",
            "-e",
            "SECRET=hunter2",
            "busybox",
            "sleep",
            "600",
        ])
        .ok()
        .stdout;
    let state = f
        .strata
        .root()
        .join("containers")
        .join(id.trim())
        .join("state");
    let state: serde_json::Value = serde_json::from_slice(&fs::read(state).unwrap()).unwrap();
    let monitor = state["Running"]["monitor_pid"]
        .as_i64()
        .expect("a monitor pid");
    let shown = fs::read(format!("/proc/{monitor}/cmdline")).unwrap();
    let shown = String::from_utf8_lossy(&shown).replace('\0', " ");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.trim().ends_with("strata"), "{shown}");
    // Nor does an exec's process on the host, which is given the
    // container's environment.
    let mut exec = f
        .strata
        .cmd(&["exec", "secret-env", "sleep", "3"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut shown_by = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("hunter2") {
            shown_by.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    exec.wait().unwrap();
    assert_eq!(shown_by, Vec::<String>::new());
}

#[test]
fn a_block_device_made_with_mknod_in_dev_opens_nothing() {
    let f = Fixture::new();
    // The host's first disk, by number, as the container would guess it.
    let partitions = fs::read_to_string("/proc/partitions").expect("read /proc/partitions");
    let (major, minor) = partitions
        .lines()
        .skip(2)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.first()?.to_string(), fields.get(1)?.to_string()))
        })
        .expect("the host has a block device");
    let script =
        format!("mknod /dev/probe b {major} {minor} && head -c 512 /dev/probe 2>/dev/null | wc -c");
    let out = f.sh(&[], &script);
    let read: u32 = out.stdout.trim().parse().unwrap_or(0);
    assert_eq!(
        read, 0,
        "read the host's disk: {} {}",
        out.stdout, out.stderr
    );
}

/// `--device` gives a host node with the permissions asked for and no
/// others (the device cgroup), at the place asked for; a missing or
/// non-device path is refused in one line before anything is made.
#[test]
fn device_gives_a_host_node_with_the_permissions_asked_for() {
    let f = Fixture::new();
    let open_rw = "exec 3<>/dev/fuse && echo opened";
    // Not given: not there, and a node made for it opens nothing.
    let out = f.sh(
        &[],
        "mknod /dev/fuse c 10 229; exec 3<>/dev/fuse && echo opened",
    );
    assert!(!out.stdout.contains("opened"), "{}", out.stdout);
    let out = f.sh(&["--device", "/dev/fuse"], open_rw).ok();
    assert!(out.stdout.contains("opened"), "{}", out.stdout);
    let out = f.sh(
        &["--device", "/dev/fuse:r"],
        "exec 3</dev/fuse && echo read; exec 4<>/dev/fuse && echo written",
    );
    assert!(out.stdout.contains("read"), "{}", out.stderr);
    assert!(!out.stdout.contains("written"), "{}", out.stdout);
    assert!(out.stderr.contains("not permitted"), "{}", out.stderr);
    // Elsewhere than /dev, and as docker's inspect shows it.
    let s = &f.strata;
    f.track("dev");
    s.run(&[
        "create",
        "--name",
        "dev",
        "--device",
        "/dev/fuse:/x/fuse:rw",
        "busybox",
        "sh",
        "-c",
        "exec 3<>/x/fuse && echo opened",
    ])
    .ok();
    let shown = s.run(&["inspect", "-f", "{{json .HostConfig.Devices}}", "dev"]);
    assert_eq!(
        shown.ok().stdout.trim(),
        r#"[{"CgroupPermissions":"rw","PathInContainer":"/x/fuse","PathOnHost":"/dev/fuse"}]"#
    );
    assert!(s
        .run(&["start", "-a", "dev"])
        .ok()
        .stdout
        .contains("opened"));
    for (device, says) in [
        ("/dev/nothing-here", "\"/dev/nothing-here\": No such file"),
        ("/etc/hostname", "not a device node"),
        ("dev/fuse", "is not an absolute path"),
        ("/dev/fuse:/dev/fuse:rwx", "bad mode specified: rwx"),
        ("/dev/fuse:/proc/fuse", "inside /proc"),
    ] {
        let r = s.run(&[
            "run", "--name", "never", "--device", device, "busybox", "true",
        ]);
        assert_eq!(r.code, 125, "{device}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{device}: {}", r.stderr);
    }
    assert!(!s.run(&["ps", "-a"]).ok().stdout.contains("never"));
    // Nor where an image's link leads there, found at the start.
    f.track("linker");
    s.run(&[
        "run", "--name", "linker", "busybox", "ln", "-s", "/proc", "/d",
    ])
    .ok();
    s.run(&["commit", "linker", "linked"]).ok();
    f.track("linked");
    let r = s.run(&[
        "run",
        "--name",
        "linked",
        "--device",
        "/dev/fuse:/d/cmdline",
        "linked",
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("inside /proc"), "{}", r.stderr);
}

#[test]
fn dev_mounts_have_dockers_flags() {
    let f = Fixture::new();
    let out = f
        .sh(
            &[],
            "grep -E ' /(dev|dev/shm|dev/mqueue|dev/pts|proc|sys|proc/sys) ' /proc/mounts",
        )
        .ok()
        .stdout;
    let options = |target: &str| -> Vec<String> {
        out.lines()
            .find(|line| line.split_whitespace().nth(1) == Some(target))
            .unwrap_or_else(|| panic!("{target} not mounted: {out}"))
            .split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    let has = |target: &str, wanted: &[&str]| {
        let got = options(target);
        for flag in wanted {
            assert!(
                got.iter().any(|o| o == flag),
                "{target} lacks {flag}: {got:?}"
            );
        }
    };
    has("/dev", &["nosuid", "nodev", "mode=755"]);
    has("/dev/shm", &["nosuid", "nodev", "noexec"]);
    has("/dev/mqueue", &["nosuid", "nodev", "noexec"]);
    has("/dev/pts", &["nosuid", "noexec"]);
    has("/proc", &["nosuid", "nodev", "noexec"]);
    has("/sys", &["ro", "nosuid", "nodev", "noexec"]);
    has("/proc/sys", &["ro"]);
}

#[test]
fn privileged_gets_every_capability_no_filter_and_writable_proc_sys() {
    let f = Fixture::new();
    let own = fs::read_to_string("/proc/self/status").expect("read own status");
    let script = "grep -E '^(Cap|Seccomp)' /proc/self/status; \
                  test -w /proc/sys/kernel/hostname && echo proc-sys-writable; \
                  grep -q ' /sys sysfs ro' /proc/mounts || echo sys-rw; \
                  ls /dev";
    let out = f.sh(&["--privileged"], script).ok().stdout;
    assert_eq!(
        caps_field(&out, "CapEff"),
        caps_field(&own, "CapBnd"),
        "every capability this host has: {out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert!(out.contains("proc-sys-writable\n"), "{out}");
    assert!(out.contains("sys-rw\n"), "{out}");
    let host_device = fs::read_dir("/dev")
        .expect("list /dev")
        .flatten()
        .find(|entry| {
            use std::os::unix::fs::FileTypeExt as _;
            entry.file_type().is_ok_and(|kind| kind.is_block_device())
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned());
    if let Some(device) = host_device {
        assert!(
            out.lines().any(|line| line == device),
            "host device {device} missing from a privileged /dev: {out}"
        );
    }
}

#[test]
fn seccomp_unconfined_and_no_new_privileges_are_honoured() {
    let f = Fixture::new();
    let unconfined = status(&f, &["--security-opt", "seccomp=unconfined"]);
    assert_eq!(status_field(&unconfined, "Seccomp"), "0", "{unconfined}");
    for spelling in ["no-new-privileges", "no-new-privileges:true"] {
        let nnp = status(&f, &["--security-opt", spelling]);
        assert_eq!(status_field(&nnp, "NoNewPrivs"), "1", "{spelling}: {nnp}");
        assert_eq!(status_field(&nnp, "Seccomp"), "2", "{spelling}: {nnp}");
    }
}

#[test]
fn a_json_profile_denies_what_it_names_with_its_errno() {
    let f = Fixture::new();
    let profile = f.strata.path("deny-mkdir.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 36}]}"#,
    )
    .expect("write the profile");
    let opt = format!("seccomp={}", profile.display());
    let out = f.sh(
        &["--security-opt", &opt],
        "mkdir /made; touch /touched && echo touched",
    );
    assert!(
        out.stderr.contains("File name too long"),
        "mkdir not denied with ENAMETOOLONG: {}",
        out.stderr
    );
    assert_eq!(out.stdout, "touched\n");

    let bad = f.strata.path("bad.json");
    fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#).expect("write");
    let opt = format!("seccomp={}", bad.display());
    f.sh(&["--security-opt", &opt], "true")
        .refused_with("decoding seccomp profile failed");
    f.sh(&["--security-opt", "seccomp=/nonexistent.json"], "true")
        .refused_with("opening seccomp profile (/nonexistent.json) failed");
    let r = f.sh(&["--security-opt", "bogus"], "true");
    assert_eq!(r.code, 125, "{}", r.stderr);
}

/// `-v SRC:DST:ro` is read-only all the way down, as docker 25 makes it
/// on Linux 5.12 and later: a host mount under SRC stayed writable
/// through it (the read-only flag was set on the top mount only).
#[test]
fn a_read_only_volume_is_read_only_below_its_own_mount_too() {
    let f = Fixture::new();
    let source = f.strata.path("ro-source");
    let sub = source.join("sub");
    fs::create_dir_all(&sub).unwrap();
    /// Unmounts the tmpfs when the test ends, failed or not.
    struct Mounted<'a>(&'a std::path::Path);
    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount a tmpfs under the volume's source");
    let _mounted = Mounted(&sub);
    fs::write(sub.join("f"), "original\n").unwrap();
    let volume = format!("{}:/data:ro", source.display());
    let out = f.sh(
        &["-v", &volume],
        "echo x > /data/top; echo changed > /data/sub/f; cat /data/sub/f",
    );
    assert_eq!(fs::read_to_string(sub.join("f")).unwrap(), "original\n");
    assert!(!source.join("top").exists());
    assert_eq!(
        out.stderr.matches("Read-only file system").count(),
        2,
        "{}",
        out.stderr
    );
}

#[test]
fn volumes_over_the_root_or_proc_sys_dev_are_refused() {
    let f = Fixture::new();
    for target in ["/", "/proc", "/sys", "/dev"] {
        let volume = format!("/tmp:{target}");
        let r = f.sh(&["-v", &volume], "true");
        let message = format!(
            "invalid volume specification: '{volume}': invalid mount config for type \"bind\""
        );
        assert_refused(&r, &volume, &message);
    }
    f.assert_nothing_left();
}

#[test]
fn exec_and_start_apply_the_recorded_options_and_inspect_shows_them() {
    let f = Fixture::new();
    f.track("secured");
    f.strata
        .run(&[
            "run",
            "-d",
            "--name",
            "secured",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "kill",
            "--security-opt",
            "no-new-privileges",
            "busybox",
            "sleep",
            "600",
        ])
        .ok();
    let exec = f
        .strata
        .run(&[
            "exec",
            "secured",
            "grep",
            "-E",
            "^(Cap|Seccomp|NoNewPrivs)",
            "/proc/self/status",
        ])
        .ok()
        .stdout;
    assert_eq!(caps_field(&exec, "CapEff"), 1 << 5, "only KILL: {exec}");
    assert_eq!(caps_field(&exec, "CapBnd"), 1 << 5, "{exec}");
    assert_eq!(status_field(&exec, "Seccomp"), "2", "{exec}");
    assert_eq!(status_field(&exec, "NoNewPrivs"), "1", "{exec}");

    let inspect: serde_json::Value =
        serde_json::from_str(&f.strata.run(&["inspect", "secured"]).ok().stdout)
            .expect("inspect prints JSON");
    let host = &inspect[0]["HostConfig"];
    assert_eq!(host["CapAdd"], serde_json::json!(["kill"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(host["Privileged"], serde_json::json!(false));
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );

    f.track("restarted");
    let first = f
        .strata
        .run(&[
            "run",
            "--name",
            "restarted",
            "--cap-drop",
            "ALL",
            "busybox",
            "grep",
            "CapEff",
            "/proc/self/status",
        ])
        .ok()
        .stdout;
    let again = f.strata.run(&["start", "-a", "restarted"]).ok().stdout;
    assert_eq!(caps_field(&first, "CapEff"), 0, "{first}");
    assert_eq!(
        caps_field(&again, "CapEff"),
        0,
        "start kept --cap-drop: {again}"
    );
    let plain: serde_json::Value =
        serde_json::from_str(&f.strata.run(&["inspect", "restarted"]).ok().stdout)
            .expect("inspect prints JSON");
    assert_eq!(plain[0]["HostConfig"]["CapAdd"], serde_json::Value::Null);
    assert_eq!(
        plain[0]["HostConfig"]["SecurityOpt"],
        serde_json::Value::Null
    );
}

/// `exec` runs from the binary the container's monitor runs, whatever
/// strata binary the user called: a command in the container made a
/// `#!/proc/self/exe` script runs the binary that exec'd it, which the
/// container's root can then open through /proc and, once nothing runs
/// that file, write (runc's CVE-2019-5736). The monitor's file cannot be
/// written while the monitor runs (ETXTBSY), and nothing of the container
/// outlives it. Here a second copy of strata execs: its `__exec` process
/// must run the monitor's file, not the copy.
/// Inside a container for `SECONDS` seconds: every descriptor of every
/// other process that links to a directory named `caller-held-dir` is
/// used to make a file there (what the container's root could do to a
/// host directory `exec`'s caller held open).
const DESCRIPTOR_PROBE: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static const char *held_path;
static struct stat own_root;
/* What process `pid` lets this one reach: a descriptor of the caller's
   directory, or (given its host path) a root that is not the container's. */
static void probe(int pid) {
    char dir[64], link[128], target[512];
    if (held_path) {
        /* Capabilities beyond the container's (CAP_SYS_ADMIN): what a
           ptrace of the process would hand over. */
        snprintf(dir, sizeof dir, "/proc/%d/status", pid);
        FILE *status = fopen(dir, "r");
        char line[256];
        while (status && fgets(line, sizeof line, status)) {
            unsigned long long caps;
            if (sscanf(line, "CapEff: %llx", &caps) == 1 && (caps & (1ULL << 21))) {
                printf("FULL CAPS in pid %d\n", pid);
                fflush(stdout);
            }
        }
        if (status) fclose(status);
        /* The caller's environment, which strata's binary held until the
           exec. */
        char env[8192];
        snprintf(dir, sizeof dir, "/proc/%d/environ", pid);
        int e = open(dir, O_RDONLY);
        ssize_t got = e >= 0 ? read(e, env, sizeof env - 1) : -1;
        if (e >= 0) close(e);
        if (got > 0 && memmem(env, got, "CALLER_SECRET", 13)) {
            printf("CALLER ENV in pid %d\n", pid);
            fflush(stdout);
        }
        snprintf(dir, sizeof dir, "/proc/%d/root", pid);
        int root = open(dir, O_RDONLY | O_DIRECTORY);
        struct stat st;
        if (root >= 0 && fstat(root, &st) == 0
            && (st.st_dev != own_root.st_dev || st.st_ino != own_root.st_ino)) {
            int held = openat(root, held_path + 1, O_RDONLY | O_DIRECTORY);
            if (held >= 0) close(openat(held, "ESCAPED", O_CREAT | O_WRONLY, 0644));
            if (held >= 0) close(held);
        }
        if (root >= 0) close(root);
    }
    snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
    DIR *fds = opendir(dir);
    if (!fds) return;
    struct dirent *f;
    while ((f = readdir(fds))) {
        snprintf(link, sizeof link, "%s/%s", dir, f->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (!strstr(target, "caller-held-dir")) continue;
        int held = open(link, O_RDONLY | O_DIRECTORY);
        if (held >= 0) close(openat(held, "ESCAPED", O_CREAT | O_WRONLY, 0644));
    }
    closedir(fds);
}
int main(int argc, char **argv) {
    time_t end = time(0) + atoi(argv[1]);
    held_path = argc > 2 ? argv[2] : 0;
    stat("/", &own_root);
    while (time(0) < end) {
        /* The newest pids first: a process just forked into the pid
           namespace is there for microseconds. */
        char last[32] = {0};
        int fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY);
        if (fd >= 0) {
            if (read(fd, last, sizeof last - 1) > 0)
                for (int pid = atoi(last); pid <= atoi(last) + 2; pid++)
                    if (pid > 1 && pid != getpid()) probe(pid);
            close(fd);
        }
        DIR *procs = opendir("/proc");
        struct dirent *p;
        while ((p = readdir(procs))) {
            int pid = atoi(p->d_name);
            if (pid > 1 && pid != getpid()) probe(pid);
        }
        closedir(procs);
    }
    return 0;
}
"#;

/// Runs the probe above in a container started with `options`, while a
/// caller holding a host directory open on fd 9 makes 30 execs into it:
/// none must let the probe write into that directory.
fn probe_execs(f: &Fixture, options: &[&str], roots_too: bool) {
    let probe_dir = f.strata.path("probe");
    fs::create_dir(&probe_dir).unwrap();
    common::static_program(&probe_dir, "probe", DESCRIPTOR_PROBE);
    let held = f.strata.path("caller-held-dir");
    fs::create_dir(&held).unwrap();
    f.track("watch");
    let volume = format!("{}:/probe:ro", probe_dir.display());
    let held_arg = held.display().to_string();
    let mut args = vec!["run", "-d", "--name", "watch", "-v", &volume];
    args.extend_from_slice(options);
    args.extend_from_slice(&["busybox", "/probe/probe", "30"]);
    if roots_too {
        args.push(&held_arg);
    }
    f.strata.run(&args).ok();
    let execs = format!(
        "exec 9<'{}'; for i in $(seq 30); do '{}' --root '{}' exec watch true || exit 1; done",
        held.display(),
        common::bin(),
        f.strata.root().display()
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &execs])
        .env("CALLER_SECRET", "s3cret")
        .status()
        .unwrap();
    assert!(status.success(), "an exec failed");
    assert!(
        !held.join("ESCAPED").exists(),
        "the container wrote into the exec's caller's directory"
    );
    let logs = f.strata.run(&["logs", "watch"]).ok().stdout;
    assert!(
        !logs.contains("FULL CAPS") && !logs.contains("CALLER ENV"),
        "{logs}"
    );
}

/// The process `exec` puts into a container runs the host's strata, with
/// the caller's descriptors, until it starts the command: the container's
/// root must not reach them through /proc/PID meanwhile (CVE-2016-9962,
/// CVE-2024-21626's shape). A probe in the container watches every
/// process's descriptors while execs come in from a caller holding a
/// host directory open on fd 9; before the fix it made a file in that
/// directory (tens of chances per exec).
#[test]
fn an_exec_on_its_way_in_is_not_reachable_through_proc() {
    probe_execs(&Fixture::new(), &[], false);
}

/// `exec` checks that the container's init is its monitor's child, then
/// `__exec` opens the init's namespaces by pid: a pid freed and reused in
/// between would name another process, the host's namespaces. `__exec`
/// gets the init's start with its pid and refuses a process under that
/// pid that started at another time; here a host `sleep` stands for the
/// process that took the pid.
#[test]
fn an_exec_refuses_a_pid_that_names_another_process_by_now() {
    let s = Strata::new();
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep");
    let pid = other.id().to_string();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start: u64 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    // As `exec` tells it: in the environment, which an older `__exec`
    // (a monitor's binary from before) leaves alone.
    let out = s
        .cmd(&["__exec", "--pid", &pid, "--", "/bin/echo", "joined"])
        .env("STRATA_EXEC_PID_START", (start - 1).to_string())
        .output()
        .unwrap();
    let _ = other.kill();
    let _ = other.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("is not running"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("joined"),
        "ran in the other process's namespaces"
    );
}

/// With CAP_SYS_PTRACE, which overrides the non-dumpable guard, the
/// container's root may open /proc/PID/root of any process in its pid
/// namespace, and attach to it: an exec's process must be in the
/// container's mount namespace from its first instant, and hold no more
/// than the container's processes. It joined the mount namespace after
/// its fork (the probe reached the host's root through it at the first
/// exec), and held the host's capabilities until just before its exec (a
/// review's ptrace of it ran code as the host's root).
#[test]
fn an_exec_never_shows_the_hosts_root_to_a_container_with_sys_ptrace() {
    probe_execs(&Fixture::new(), &["--cap-add", "SYS_PTRACE"], true);
}

/// A working directory named through a descriptor (`-w /proc/self/fd/N`,
/// or an image's WORKDIR so named) must not lead to a host directory the
/// caller held open, nor to the stdin a relay keeps a copy of (`-i` with
/// a directory as stdin): CVE-2024-21626's shape. Before the fix each of
/// these printed the host file.
#[test]
fn a_working_directory_through_a_held_descriptor_stays_in_the_container() {
    let f = Fixture::new();
    let secret = f.strata.path("held-secret");
    fs::create_dir(&secret).unwrap();
    fs::write(secret.join("s.txt"), "HOST-SECRET\n").unwrap();
    let strata = format!("'{}' --root '{}'", common::bin(), f.strata.root().display());
    let shell = |script: &str| {
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let held = format!("exec 5<'{}';", secret.display());
    let said = shell(&format!(
        "{held} {strata} run --rm -w /proc/self/fd/5 busybox cat s.txt"
    ));
    assert!(!said.contains("HOST-SECRET"), "run -w: {said}");
    for fd in 3..=12 {
        let said = shell(&format!(
            "{strata} run --rm -i -w /proc/self/fd/{fd} busybox cat s.txt < '{}'",
            secret.display()
        ));
        assert!(!said.contains("HOST-SECRET"), "run -i, fd {fd}: {said}");
    }
    f.track("held");
    f.strata
        .run(&["run", "-d", "--name", "held", "busybox", "sleep", "600"])
        .ok();
    let said = shell(&format!(
        "{held} {strata} exec -w /proc/self/fd/5 held cat s.txt"
    ));
    assert!(!said.contains("HOST-SECRET"), "exec -w: {said}");
}

/// The container's terminal is its own: its root may chmod and chown its
/// /dev/console and its stdin, and no node of the host's devpts changes.
/// The pty came from the host's /dev/pts, and a review made the host's
/// node world-writable from inside (any host user could then read what
/// was typed into the container).
#[test]
fn a_containers_terminal_is_not_a_node_of_the_hosts_devpts() {
    use std::os::unix::fs::MetadataExt as _;
    let f = Fixture::new();
    f.track("tty");
    let script = "chmod 666 /dev/console /proc/self/fd/0; chown 65534 /dev/console /proc/self/fd/0; sleep 600";
    f.strata
        .run(&[
            "run", "-d", "-t", "--name", "tty", "busybox", "sh", "-c", script,
        ])
        .ok();
    // The container did change its own.
    let mut seen = String::new();
    for _ in 0..100 {
        seen = f
            .strata
            .run(&["exec", "tty", "stat", "-c", "%u %a", "/dev/console"])
            .ok()
            .stdout;
        if seen.trim() == "65534 666" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        seen.trim(),
        "65534 666",
        "the container's chmod of its console"
    );
    let changed: Vec<String> = fs::read_dir("/dev/pts")
        .unwrap()
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == 65534))
        .map(|e| e.path().display().to_string())
        .collect();
    assert_eq!(
        changed,
        Vec::<String>::new(),
        "host pty nodes the container chowned"
    );
}

/// exec reads the container's /etc/passwd and /etc/group before its
/// command: a container that made them fifos held the admin's exec until
/// it wrote to them. Non-regular account files are not read.
#[test]
fn an_exec_is_not_held_by_a_fifo_account_file() {
    let f = Fixture::new();
    f.track("fifos");
    let script = "rm /etc/passwd /etc/group && mkfifo /etc/passwd /etc/group && sleep 600";
    f.strata
        .run(&[
            "run", "-d", "--name", "fifos", "busybox", "sh", "-c", script,
        ])
        .ok();
    let mut exec = f
        .strata
        .cmd(&[
            "exec",
            "fifos",
            "sh",
            "-c",
            "test -p /etc/passwd && echo through",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_bounded(&mut exec, std::time::Duration::from_secs(20), "exec");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut exec.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out, "through\n");
}

#[test]
fn exec_runs_from_the_monitors_binary_not_the_callers() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = Fixture::new();
    let s = &f.strata;
    f.containers.borrow_mut().push("target".into());
    s.run(&["run", "-d", "--name", "target", "busybox", "sleep", "60"])
        .ok();
    let copy = s.path("strata-copy");
    fs::copy(common::bin(), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    // Another test's fork, made while the copy was open for writing,
    // holds that descriptor until its exec: the copy is "busy" for that
    // moment (ETXTBSY, seen once in CI), so the spawn is retried.
    let spawn = || {
        std::process::Command::new(&copy)
            .arg("--root")
            .arg(s.root())
            .args(["exec", "target", "sleep", "3"])
            .env_remove("STRATA_ROOT")
            .spawn()
    };
    let mut tries = 0;
    let mut caller = loop {
        match spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            spawned => break spawned.unwrap(),
        }
    };
    // The caller re-executes into `__exec` (same pid), whose command line
    // it blanks: it is known by its binary changing from the copy's.
    let copied = fs::metadata(&copy).unwrap().ino();
    let exe = format!("/proc/{}/exe", caller.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let running = loop {
        let running = fs::metadata(&exe).unwrap().ino();
        if running != copied {
            break running;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "__exec ran the caller's copy"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(caller.wait().unwrap().success());
    assert_eq!(running, fs::metadata(common::bin()).unwrap().ino());
}

/// A root container given the CLI's stdio files would be the host's root
/// on them: through /proc/self/fd it could open its stdin's file to write
/// and its output files to truncate or read what they held, or walk the
/// host's tree from a directory. It gets pipes instead, as with docker,
/// and every byte it writes still reaches the files before the CLI
/// returns; an exec that leaves a process holding its output still ends.
#[test]
fn stdio_files_reach_a_container_and_an_exec_through_pipes() {
    let f = Fixture::new();
    let s = &f.strata;
    f.track("stdio-target");
    s.run(&[
        "run",
        "-d",
        "--name",
        "stdio-target",
        "busybox",
        "sleep",
        "60",
    ])
    .ok();
    let script = "read line; echo \"got $line\"; \
        echo tampered > /proc/self/fd/0; : > /proc/self/fd/1; : > /proc/self/fd/2; \
        seq 1 30000; echo to-stderr >&2";
    let runs: [&[&str]; 2] = [
        &["run", "--rm", "-i", "busybox", "sh", "-c", script],
        &["exec", "-i", "stdio-target", "sh", "-c", script],
    ];
    let (stdout, stderr) = (s.path("stdout.log"), s.path("stderr.log"));
    let append = |path| fs::File::options().append(true).open(path).unwrap();
    for args in runs {
        let input = s.path("input.txt");
        fs::write(&input, "from the host\n").unwrap();
        fs::write(&stdout, "kept\n").unwrap();
        fs::write(&stderr, "kept\n").unwrap();
        let status = s
            .cmd(args)
            .stdin(fs::File::open(&input).unwrap())
            .stdout(append(&stdout))
            .stderr(append(&stderr))
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}: {status}");
        let written = fs::read_to_string(&stdout).unwrap();
        let (head, numbers) = written.split_at(written.len().min(23));
        assert_eq!(head, "kept\ngot from the host\n", "{args:?}");
        let expected: String = (1..=30000).map(|n| format!("{n}\n")).collect();
        assert!(
            numbers == expected,
            "{args:?}: {} bytes of numbers, not {}",
            numbers.len(),
            expected.len()
        );
        assert_eq!(
            fs::read_to_string(&stderr).unwrap(),
            "kept\nto-stderr\n",
            "{args:?}"
        );
        assert_eq!(
            fs::read_to_string(&input).unwrap(),
            "from the host\n",
            "{args:?}"
        );
    }
    // A directory as stdin is no way into the host's tree.
    let host_dir = s.path("host-dir");
    fs::create_dir(&host_dir).unwrap();
    fs::write(host_dir.join("secret"), "host only\n").unwrap();
    let out = s
        .cmd(&[
            "run",
            "--rm",
            "-i",
            "busybox",
            "sh",
            "-c",
            "cat /proc/self/fd/0/secret 2>/dev/null || echo refused",
        ])
        .stdin(fs::File::open(&host_dir).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "refused\n");
    // A process an exec leaves behind holds its stdout; the exec ends all
    // the same (before: for as long as that process lived).
    fs::write(&stdout, "").unwrap();
    let mut exec = s
        .cmd(&[
            "exec",
            "stdio-target",
            "sh",
            "-c",
            "sleep 50 & echo started",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(append(&stdout))
        .spawn()
        .unwrap();
    common::wait_bounded(
        &mut exec,
        std::time::Duration::from_secs(30),
        "an exec that left a process behind",
    );
    assert_eq!(fs::read_to_string(&stdout).unwrap(), "started\n");
}
