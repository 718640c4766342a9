//! Isolation end to end: what a process inside a `strata run` or `strata
//! exec` can see and reach (the host's tree, processes, network, devices,
//! ids), how volumes, ttys and signals cross the boundary, and that the
//! lifecycle verbs (stop, start, commit) keep a container's state.
//!
//! Every test runs the built binary on a busybox image made at test time,
//! needs root and /dev/fuse, and removes the containers it made through a
//! [`Fixture`] guard, also when it fails.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, Strata};

/// How long anything a test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A store holding `busybox:latest`, and the containers a test made in it:
/// dropping the fixture removes them (`rm -f`) before the store goes.
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

    fn run(&self, args: &[&str]) -> Run {
        self.strata.run(args)
    }

    /// Remembers `name` for removal; returns it for convenience.
    fn track<'n>(&self, name: &'n str) -> &'n str {
        self.containers.borrow_mut().push(name.to_owned());
        name
    }

    /// `strata run --name NAME OPTIONS... busybox COMMAND...` in the
    /// foreground, kept (no `--rm`) so that a failing test still leaves it
    /// for the guard to remove.
    fn run_named(&self, name: &str, options: &[&str], command: &[&str]) -> Run {
        self.track(name);
        let mut args = vec!["run", "--name", name];
        args.extend_from_slice(options);
        args.push("busybox");
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// `strata run -d --name NAME OPTIONS... busybox COMMAND...`.
    fn detach(&self, name: &str, options: &[&str], command: &[&str]) {
        self.track(name);
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(options);
        args.push("busybox");
        args.extend_from_slice(command);
        self.run(&args).ok();
    }

    fn exec(&self, name: &str, command: &[&str]) -> Run {
        let mut args = vec!["exec", name];
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// The container's `State` object from `strata inspect`.
    fn state(&self, name: &str) -> serde_json::Value {
        let out = self.run(&["inspect", name]).ok().stdout;
        let inspect: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
        inspect[0]["State"].clone()
    }

    fn is_running(&self, name: &str) -> bool {
        self.state(name)["Running"] == serde_json::Value::Bool(true)
    }

    /// Waits until `strata exec NAME cat PATH` succeeds and returns the
    /// file's content.
    fn wait_for_file(&self, name: &str, path: &str) -> String {
        let mut content = String::new();
        wait_until(&format!("{path} in {name}"), || {
            let r = self.exec(name, &["cat", path]);
            content = r.stdout;
            r.code == 0
        });
        content
    }

    fn path(&self, name: &str) -> PathBuf {
        self.strata.path(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let names = self.containers.take();
        if names.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(String::as_str));
        // Some may never have been made, or are gone already: not an error.
        let _ = self.strata.run(&args);
    }
}

/// Polls `check` until it holds; fails the test after [`PATIENCE`].
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `cmd` with stdout and stderr going to `log` (a file we can poll
/// without a reader thread).
fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let out = fs::File::create(log).expect("create the log file");
    let err = out.try_clone().expect("dup the log file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn the command")
}

/// Waits for `child` to exit and returns its exit code; kills it and fails
/// the test if it takes longer than [`PATIENCE`].
fn exit_code(mut child: Child, log: &Path) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the command did not finish; its output:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill sends a signal; no memory is involved.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// The classic chroot(2) escape: chroot into a subdirectory while the
/// working directory stays above it, climb with "..", chroot there. Under
/// a plain chroot it lands on the host's root; after pivot_root and the
/// old root's unmount it can only reach the container's root. It reports
/// whether it got that far, then FOUND or absent for each argument.
const BREAKOUT_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (mkdir("/breakout-jail", 0755) != 0 && errno != EEXIST) {
        perror("mkdir /breakout-jail");
        return 2;
    }
    if (chroot("/breakout-jail") != 0) {
        perror("chroot /breakout-jail");
        return 2;
    }
    /* The working directory is still outside the new root. */
    for (int i = 0; i < 1024; i++) {
        if (chdir("..") != 0) {
            perror("chdir ..");
            return 2;
        }
    }
    if (chroot(".") != 0 || chdir("/") != 0) {
        perror("chroot .");
        return 2;
    }
    puts("broke out of the jail");
    for (int i = 1; i < argc; i++) {
        printf("%s %s\n", access(argv[i], F_OK) == 0 ? "FOUND" : "absent", argv[i]);
    }
    return 0;
}
"#;

/// Compiles [`BREAKOUT_C`] statically into `dir`/breakout.
fn build_breakout(dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir for the breakout program");
    let source = dir.join("breakout.c");
    fs::write(&source, BREAKOUT_C).expect("write breakout.c");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dir.join("breakout"))
        .arg(&source)
        .output()
        .expect("gcc is needed to build the breakout program");
    assert!(
        out.status.success(),
        "gcc -static breakout.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks the breakout's report: it escaped its jail, then found the
/// container's root, and none of the host-only paths.
fn assert_contained(report: &Run, host_only: &[&str], how: &str) {
    assert_eq!(report.code, 0, "{how}: breakout failed: {}", report.stderr);
    let mut lines = report.stdout.lines();
    assert_eq!(lines.next(), Some("broke out of the jail"), "{how}");
    assert_eq!(
        lines.next(),
        Some("FOUND /bin/busybox"),
        "{how}: the breakout should end at the container's root"
    );
    for path in host_only {
        assert_eq!(
            lines.next(),
            Some(format!("absent {path}").as_str()),
            "{how}: the chroot breakout reached the host: {}",
            report.stdout
        );
    }
}

#[test]
fn chroot_breakout_from_run_or_exec_does_not_reach_the_host() {
    let f = Fixture::new();
    let tools = f.path("tools");
    build_breakout(&tools);
    let volume = format!("{}:/opt/tools:ro", tools.display());
    let store = f.strata.root();
    let store = store.to_str().expect("utf-8 path");
    let tools_dir = tools.to_str().expect("utf-8 path");
    let host_only = [store, tools_dir, env!("CARGO_MANIFEST_DIR"), common::bin()];
    for path in host_only {
        assert!(Path::new(path).exists(), "{path} should exist on the host");
    }
    let mut command = vec!["/opt/tools/breakout", "/bin/busybox"];
    command.extend_from_slice(&host_only);

    let r = f.run_named("jailbird", &["-v", &volume], &command);
    assert_contained(&r, &host_only, "strata run");

    f.detach("jailhouse", &["-v", &volume], &["sleep", "300"]);
    let r = f.exec("jailhouse", &command);
    assert_contained(&r, &host_only, "strata exec");
}

#[test]
fn proc_shows_only_the_containers_processes_with_the_command_as_pid_1() {
    let f = Fixture::new();
    // The pipe and the echo keep busybox sh from exec'ing its last command.
    let script = "ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '; echo";
    let out = f.run_named("procs", &[], &["sh", "-c", script]).ok().stdout;
    let mut lines = out.lines();
    let count: usize = lines
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a process count");
    assert!(
        (1..=3).contains(&count),
        "expected sh, ls and grep at most in /proc, saw {count}: {out}"
    );
    assert_eq!(lines.next(), Some(format!("sh -c {script} ").as_str()));
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let f = Fixture::new();
    let out = f
        .run_named(
            "offline",
            &["--network", "none"],
            &[
                "sh",
                "-c",
                "ls /sys/class/net; echo ---; ip -o link show; echo ---; \
                 ping -c1 -W2 127.0.0.1 >/dev/null && echo ping ok",
            ],
        )
        .ok()
        .stdout;
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    assert_eq!(parts[0], "lo\n", "interfaces in /sys/class/net");
    let links: Vec<&str> = parts[1].lines().collect();
    assert_eq!(links.len(), 1, "ip link shows only lo: {out}");
    assert!(
        links[0].starts_with("1: lo: <LOOPBACK,UP"),
        "lo is up: {out}"
    );
    assert_eq!(parts[2], "ping ok\n", "{out}");
}

#[test]
fn user_option_runs_as_numeric_or_named_ids_and_an_unknown_user_exits_125() {
    let f = Fixture::new();
    let ids = "echo $(id -u):$(id -g); touch /tmp/mine; stat -c %u:%g /tmp/mine";
    let out = f
        .run_named("numeric", &["-u", "1000:1000"], &["sh", "-c", ids])
        .ok()
        .stdout;
    assert_eq!(out, "1000:1000\n1000:1000\n");
    // busybox's /etc/passwd has nobody:x:65534:65534 and group nogroup.
    let out = f
        .run_named("named", &["-u", "nobody"], &["sh", "-c", ids])
        .ok()
        .stdout;
    assert_eq!(out, "65534:65534\n65534:65534\n");
    let out = f
        .run_named("named-group", &["-u", "nobody:root"], &["id", "-g"])
        .ok()
        .stdout;
    assert_eq!(out, "0\n");
    let r = f.run_named("stranger", &["-u", "nosuchuser"], &["id"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
}

#[test]
fn workdir_is_created_when_missing() {
    let f = Fixture::new();
    let out = f
        .run_named(
            "workdir",
            &["-w", "/work/deep/dir"],
            &["sh", "-c", "pwd; [ -d /work/deep/dir ] && echo dir"],
        )
        .ok()
        .stdout;
    assert_eq!(out, "/work/deep/dir\ndir\n");
}

#[test]
fn hostname_and_etc_files_are_the_containers_own() {
    let f = Fixture::new();
    let host_hostname = fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    let host_hosts = fs::read_to_string("/etc/hosts").expect("host /etc/hosts");
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // sethostname needs CAP_SYS_ADMIN, which docker's default set lacks:
    // given it, the rename must stay in the container's uts namespace.
    let out = f
        .run_named(
            "named-host",
            &[
                "-h",
                "boxname",
                "--cap-add",
                "SYS_ADMIN",
                "--network",
                "host",
            ],
            &[
                "sh",
                "-c",
                "hostname; echo ---; cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; \
                 cat /etc/resolv.conf; echo ---; echo '10.9.8.7 mine' >> /etc/hosts; \
                 hostname renamed-inside && hostname",
            ],
        )
        .ok()
        .stdout;
    // A container must never rename the host; put it back before failing.
    let now = fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    if now != host_hostname {
        let _ = fs::write("/proc/sys/kernel/hostname", host_hostname.trim());
        panic!("the container renamed the host from {host_hostname:?} to {now:?}");
    }
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 5, "{out}");
    assert_eq!(parts[0], "boxname\n");
    assert_eq!(parts[1], "boxname\n");
    // On the host's network, docker's /etc/hosts is a copy of the host's.
    assert_eq!(parts[2], host_hosts, "/etc/hosts");
    assert_eq!(parts[3], host_resolv, "network host copies the host's DNS");
    assert_eq!(parts[4], "renamed-inside\n");
    assert_eq!(
        fs::read_to_string("/etc/hosts").expect("host /etc/hosts"),
        host_hosts,
        "writing the container's /etc/hosts changed the host's"
    );

    let out = f
        .run_named(
            "offline-dns",
            &["--network", "none"],
            &["cat", "/etc/resolv.conf"],
        )
        .ok()
        .stdout;
    assert_eq!(out, "", "no DNS without a network");
}

#[test]
fn environment_has_dockers_defaults() {
    let f = Fixture::new();
    let out = f
        .run_named("env", &["-h", "h1", "-e", "FOO=bar"], &["env"])
        .ok()
        .stdout;
    for expected in [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME=h1",
        "FOO=bar",
        "HOME=/root",
    ] {
        assert!(
            out.lines().any(|l| l == expected),
            "missing {expected} in:\n{out}"
        );
    }
    assert!(
        !out.lines().any(|l| l.starts_with("TERM=")),
        "TERM without a tty:\n{out}"
    );
}

#[test]
fn sys_is_read_only() {
    let f = Fixture::new();
    let r = f.run_named(
        "sysfs",
        &[],
        &[
            "sh",
            "-c",
            "grep ' /sys ' /proc/mounts; touch /sys/strata-probe; \
             echo 1 > /sys/kernel/uevent_helper",
        ],
    );
    let mount = r.stdout.lines().next().unwrap_or_default();
    let options: Vec<&str> = mount
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .split(',')
        .collect();
    assert!(options.contains(&"ro"), "/sys is mounted rw: {mount}");
    assert_ne!(r.code, 0, "writing under /sys succeeded");
    assert_eq!(
        r.stderr.matches("Read-only file system").count(),
        2,
        "{}",
        r.stderr
    );
}

#[test]
fn dev_holds_only_the_standard_devices_and_an_own_devpts() {
    let f = Fixture::new();
    let out = f
        .run_named(
            "devices",
            &[],
            &[
                "sh",
                "-c",
                "ls -A /dev; echo ---; ls -A /dev/pts; echo ---; \
                 for d in null zero full random urandom tty; do \
                 [ -c /dev/$d ] && echo char $d; done; \
                 [ -d /dev/shm ] && echo dir shm; \
                 [ -e /dev/ptmx ] && echo ptmx $(readlink /dev/ptmx); \
                 echo x > /dev/null && echo null ok; \
                 head -c 4 /dev/zero | od -An -tx1",
            ],
        )
        .ok()
        .stdout;
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    let listed: Vec<&str> = parts[0].lines().collect();
    let required = [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "mqueue",
    ];
    // The usual symlinks to /proc/self/fd.
    let links = ["fd", "stdin", "stdout", "stderr"];
    for name in required {
        assert!(listed.contains(&name), "/dev/{name} missing: {listed:?}");
    }
    let extra: Vec<&&str> = listed
        .iter()
        .filter(|n| !required.contains(n) && !links.contains(n))
        .collect();
    assert!(
        extra.is_empty(),
        "/dev holds more than it should: {extra:?}"
    );
    assert_eq!(
        parts[1].lines().collect::<Vec<_>>(),
        ["ptmx"],
        "/dev/pts shows ptys that are not the container's"
    );
    let expected: String = ["null", "zero", "full", "random", "urandom", "tty"]
        .iter()
        .map(|d| format!("char {d}\n"))
        .chain([
            "dir shm\n".to_owned(),
            "ptmx pts/ptmx\n".to_owned(),
            "null ok\n".to_owned(),
            " 00 00 00 00\n".to_owned(),
        ])
        .collect();
    assert_eq!(parts[2], expected);
}

#[test]
fn read_only_volume_refuses_writes_and_a_rw_volume_accepts_them() {
    let f = Fixture::new();
    let host = f.path("volume");
    fs::create_dir_all(&host).expect("mkdir volume");
    fs::write(host.join("f"), "data").expect("write volume file");
    let ro = format!("{}:/data:ro", host.display());
    let r = f.run_named(
        "ro-volume",
        &["-v", &ro],
        &[
            "sh",
            "-c",
            "cat /data/f; echo; touch /data/g || echo refused; \
             echo more >> /data/f || echo refused",
        ],
    );
    assert_eq!(r.stdout, "data\nrefused\nrefused\n", "{}", r.stderr);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert!(!host.join("g").exists());
    assert_eq!(fs::read_to_string(host.join("f")).expect("read"), "data");
    // inspect shows it as docker's Mounts do.
    let mounts = f
        .run(&["inspect", "-f", "{{json .Mounts}}", "ro-volume"])
        .ok()
        .stdout;
    let expected = serde_json::json!([{"Type": "bind", "Source": host, "Destination": "/data",
        "Mode": "ro", "RW": false, "Propagation": "rprivate"}]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&mounts).unwrap(),
        expected
    );

    let rw = format!("{}:/mnt/rw", host.display());
    let r = f.run_named(
        "rw-volume",
        &["-v", &rw],
        &[
            "sh",
            "-c",
            "echo new > /mnt/rw/new && echo more >> /mnt/rw/f",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fs::read_to_string(host.join("new")).expect("read"), "new\n");
    assert_eq!(
        fs::read_to_string(host.join("f")).expect("read"),
        "datamore\n"
    );
}

#[test]
fn data_under_a_volume_stays_out_of_diff_and_commit() {
    let f = Fixture::new();
    let host = f.path("volume");
    fs::create_dir_all(&host).expect("mkdir volume");
    let volume = format!("{}:/data", host.display());
    f.run_named(
        "with-volume",
        &["-v", &volume],
        &[
            "sh",
            "-c",
            "echo inside > /data/new; mkdir /data/sub; echo z > /data/sub/z; \
             echo out > /outside",
        ],
    )
    .ok();
    assert_eq!(fs::read_to_string(host.join("sub/z")).expect("read"), "z\n");
    let diff = f.run(&["diff", "with-volume"]).ok().stdout;
    assert!(diff.lines().any(|l| l == "A /outside"), "{diff}");
    assert!(!diff.contains("/data"), "the volume shows in diff:\n{diff}");
    f.run(&["commit", "with-volume", "committed-volume"]).ok();
    let r = f
        .run(&[
            "run",
            "--rm",
            "committed-volume",
            "sh",
            "-c",
            "cat /outside; ls -A /data 2>/dev/null; echo end",
        ])
        .ok();
    assert_eq!(
        r.stdout, "out\nend\n",
        "the volume's data was committed: {}",
        r.stderr
    );
}

#[test]
fn a_volume_target_spelled_with_a_trailing_slash_stays_out_of_diff() {
    let f = Fixture::new();
    let host = f.path("volume");
    fs::create_dir_all(&host).expect("mkdir volume");
    // Docker cleans the target path: /deep/data/ is /deep/data.
    let volume = format!("{}:/deep/data/", host.display());
    f.run_named(
        "slashed",
        &["-v", &volume],
        &["sh", "-c", "echo inside > /deep/data/new"],
    )
    .ok();
    assert_eq!(
        fs::read_to_string(host.join("new")).expect("read"),
        "inside\n"
    );
    let diff = f.run(&["diff", "slashed"]).ok().stdout;
    assert!(
        !diff.contains("/deep"),
        "the mount point of `-v SRC:/deep/data/` shows in diff (and would be \
         committed): the volume target is compared unnormalized with the change \
         paths (runner/src/stack.rs is_runtime_path; container/spec.rs \
         BindMount::parse keeps the trailing slash):\n{diff}"
    );
}

#[test]
fn tty_gives_a_terminal_with_the_callers_window_size_and_term_xterm() {
    let f = Fixture::new();
    f.track("terminal");
    let root = f.strata.root();
    let command = format!(
        "stty rows 33 cols 77; {} --root {} run -t --name terminal busybox \
         sh -c 'stty size; echo $TERM; [ -t 0 ] && [ -t 1 ] && echo tty; exit 5'",
        common::bin(),
        root.display()
    );
    let log = f.path("script.log");
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    let code = exit_code(spawn_logged(script, &log), &log);
    let text = fs::read_to_string(&log)
        .expect("read the log")
        .replace('\r', "");
    assert!(text.contains("33 77\nxterm\ntty\n"), "{text}");
    assert_eq!(code, 5, "{text}");
}

#[test]
fn sigterm_to_a_foreground_run_reaches_the_container() {
    let f = Fixture::new();
    f.track("foreground");
    let log = f.path("foreground.log");
    let cli = spawn_logged(
        f.strata.cmd(&[
            "run",
            "--name",
            "foreground",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 9' TERM; echo ready; sleep 10 & wait",
        ]),
        &log,
    );
    wait_until("the container's trap", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("ready"))
    });
    send_signal(cli.id(), libc::SIGTERM);
    let code = exit_code(cli, &log);
    assert_eq!(
        code, 9,
        "SIGTERM sent to `strata run` once the container printed was lost (the \
         container ran to its end): the CLI drops signals that arrive before the \
         monitor's Started event (container/attach.rs, Session::handle_signals)"
    );
    assert!(
        fs::read_to_string(&log)
            .expect("read the log")
            .contains("got TERM"),
        "the container's output is lost"
    );
    assert_eq!(f.state("foreground")["ExitCode"], 9);
}

#[test]
fn a_foreground_container_killed_by_a_signal_exits_128_plus_the_signal() {
    let f = Fixture::new();
    f.track("killed");
    let log = f.path("killed.log");
    let cli = spawn_logged(
        f.strata
            .cmd(&["run", "--name", "killed", "busybox", "sleep", "300"]),
        &log,
    );
    wait_until("the container to run", || {
        f.run(&["inspect", "killed"]).code == 0 && f.is_running("killed")
    });
    f.run(&["kill", "killed"]).ok();
    assert_eq!(exit_code(cli, &log), 137);
    assert_eq!(f.state("killed")["ExitCode"], 137);
}

/// docker and podman keep a container whose attached CLI was killed (the
/// daemon or conmon holds it), its output going on into its log.
#[test]
fn a_foreground_container_outlives_its_killed_cli_and_logs_what_follows() {
    let f = Fixture::new();
    for options in [&[][..], &["-t"][..]] {
        let name = f.track(if options.is_empty() {
            "orphan"
        } else {
            "orphan-tty"
        });
        let log = f.path(&format!("{name}.log"));
        let mut args = vec!["run", "--name", name];
        args.extend_from_slice(options);
        args.extend_from_slice(&[
            "busybox",
            "sh",
            "-c",
            "echo early; while [ ! -e /go ]; do sleep 0.1; done; echo late; exit 3",
        ]);
        let mut cli = spawn_logged(f.strata.cmd(&args), &log);
        wait_until("the container's first line", || {
            f.run(&["logs", name]).stdout.contains("early")
        });
        cli.kill().expect("kill the CLI");
        cli.wait().expect("reap the CLI");
        // The container goes on: it still takes an exec, and ends as its
        // command says, not killed with its CLI (137).
        let touched = f.exec(name, &["touch", "/go"]);
        assert_eq!(touched.code, 0, "{options:?}: {}", touched.stderr);
        wait_until("the container to exit", || !f.is_running(name));
        assert_eq!(f.state(name)["ExitCode"], 3, "{options:?}");
        let eol = if options.is_empty() { "\n" } else { "\r\n" };
        assert_eq!(
            f.run(&["logs", name]).ok().stdout,
            format!("early{eol}late{eol}"),
            "{options:?}"
        );
        // What the dead CLI was given gets nothing more.
        let seen = fs::read_to_string(&log).expect("read the CLI's output");
        assert!(
            seen.contains("early") && !seen.contains("late"),
            "{options:?}: {seen:?}"
        );
    }
}

/// `docker logs` shows what an attached container wrote too, not only a
/// detached one's output.
#[test]
fn an_attached_containers_output_is_in_its_log() {
    let f = Fixture::new();
    let r = f
        .run_named("attached", &[], &["sh", "-c", "echo out; echo err >&2"])
        .ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    let logged = f.run(&["logs", "attached"]).ok();
    assert_eq!(
        (logged.stdout.as_str(), logged.stderr.as_str()),
        ("out\n", "err\n")
    );
    // Piped or thrown away, the output still reaches the log.
    f.track("piped");
    let piped = f
        .strata
        .cmd(&["run", "--name", "piped", "busybox", "echo", "piped"])
        .stdout(Stdio::null())
        .status()
        .expect("run strata");
    assert!(piped.success());
    assert_eq!(f.run(&["logs", "piped"]).ok().stdout, "piped\n");
    let r = f.run_named("attached-tty", &["-t"], &["echo", "tty"]).ok();
    assert_eq!(r.stdout, "tty\r\n");
    assert_eq!(f.run(&["logs", "attached-tty"]).ok().stdout, "tty\r\n");
}

#[test]
fn kill_with_a_signal_delivers_it_to_the_container() {
    let f = Fixture::new();
    f.detach(
        "trapper",
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 9' TERM; touch /ready; sleep 300 & wait",
        ],
    );
    f.wait_for_file("trapper", "/ready");
    f.run(&["kill", "-s", "TERM", "trapper"]).ok();
    wait_until("the container to exit", || !f.is_running("trapper"));
    assert_eq!(f.state("trapper")["ExitCode"], 9);
}

#[test]
fn stop_kills_a_container_ignoring_term_after_the_timeout_and_start_keeps_its_files() {
    let f = Fixture::new();
    f.detach(
        "stubborn",
        &[],
        &[
            "sh",
            "-c",
            "trap '' TERM; echo run >> /runs; while true; do sleep 1; done",
        ],
    );
    assert_eq!(f.wait_for_file("stubborn", "/runs"), "run\n");
    let started = Instant::now();
    f.run(&["stop", "-t", "1", "stubborn"]).ok();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "stop returned after {took:?}, before its timeout: TERM was not ignored"
    );
    let state = f.state("stubborn");
    assert_eq!(state["Running"], false, "{state}");
    assert_eq!(state["ExitCode"], 137, "killed by SIGKILL: {state}");

    f.run(&["start", "stubborn"]).ok();
    wait_until("the second run's line", || {
        f.exec("stubborn", &["cat", "/runs"]).stdout == "run\nrun\n"
    });
    assert!(f.is_running("stubborn"));
}

#[test]
fn exec_joins_the_containers_namespaces_and_returns_the_exit_code() {
    let f = Fixture::new();
    f.detach(
        "joined",
        &["-h", "joinedbox", "--network", "none"],
        &["sh", "-c", "echo made > /made; sleep 300"],
    );
    f.wait_for_file("joined", "/made");
    let pid = f.state("joined")["Pid"]
        .as_i64()
        .expect("a running container has a pid");
    let r = f.exec(
        "joined",
        &[
            "sh",
            "-c",
            "hostname; cat /made; tr '\\0' ' ' < /proc/1/cmdline; echo; \
             for ns in mnt uts ipc net pid; do readlink /proc/self/ns/$ns; done; exit 7",
        ],
    );
    assert_eq!(r.code, 7, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("joinedbox"));
    assert_eq!(lines.next(), Some("made"));
    assert_eq!(
        lines.next(),
        Some("sleep 300 "),
        "exec sees the container's /proc (sh exec'd its last command)"
    );
    for ns in ["mnt", "uts", "ipc", "net", "pid"] {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("read ns link");
        assert_eq!(
            lines.next(),
            theirs.to_str(),
            "exec is not in the container's {ns} namespace"
        );
    }
    let r = f.exec("joined", &["nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    // docker's exec -w does not make a missing directory (run -w does):
    // it fails, and the container's tree is left as it was.
    let r = f.run(&["exec", "-w", "/work/by/exec", "joined", "pwd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(r.stderr.contains("chdir to cwd"), "{}", r.stderr);
    let r = f.run(&["exec", "-w", "../..", "joined", "pwd"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("needs to be an absolute path"),
        "{}",
        r.stderr
    );
    let changes = f.run(&["diff", "joined"]).ok().stdout;
    assert!(!changes.contains("/work"), "{changes}");
}

#[test]
fn commit_of_a_running_container_keeps_it_running_and_captures_its_files() {
    let f = Fixture::new();
    // Renames make every value of /counter whole, paused or not.
    f.detach(
        "counting",
        &[],
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /c.tmp; mv /c.tmp /counter; done",
        ],
    );
    let before: u64 = f
        .wait_for_file("counting", "/counter")
        .trim()
        .parse()
        .expect("a count");
    f.run(&["commit", "counting", "counted"]).ok();
    assert!(f.is_running("counting"), "commit stopped the container");
    let pid = f.state("counting")["Pid"].as_i64().expect("a pid");
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("container init's stat");
    let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
    assert_ne!(state, Some('T'), "commit left the container paused");
    let after_commit = f
        .exec("counting", &["cat", "/counter"])
        .ok()
        .stdout
        .trim()
        .parse::<u64>()
        .expect("a count");
    wait_until("the counter to advance after the commit", || {
        f.exec("counting", &["cat", "/counter"])
            .stdout
            .trim()
            .parse::<u64>()
            .is_ok_and(|n| n > after_commit)
    });
    let committed: u64 = f
        .run(&["run", "--rm", "counted", "cat", "/counter"])
        .ok()
        .stdout
        .trim()
        .parse()
        .expect("the committed counter is a whole number");
    assert!(
        (before..=after_commit).contains(&committed),
        "committed {committed}, outside [{before}, {after_commit}]"
    );
}
