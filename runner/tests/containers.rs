//! Containers end to end on a busybox image: run's flags and exit codes,
//! bad input, isolation, lifecycle, diff, export and inspection mounts.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{Strata, TarMaker};

#[test]
fn run_gives_the_containers_exit_status_and_dockers_codes() {
    let s = Strata::with_busybox();
    assert_eq!(
        s.run(&["run", "--rm", "busybox", "sh", "-c", "exit 3"])
            .code,
        3
    );
    let r = s.run(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        r.stderr.contains("executable file not found"),
        "{}",
        r.stderr
    );
    let r = s.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(r.code, 126, "{}", r.stderr);
    let r = s.run(&["run", "--rm", "busybox", "echo", "hi"]).ok();
    assert_eq!(r.stdout, "hi\n");
    // --rm leaves nothing behind.
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout, "");
}

/// `--root` relative to the current directory, as a user types it: the
/// store's paths reach the runtime and the mount server, which run
/// elsewhere, so they must be absolute.
#[test]
fn a_store_root_relative_to_the_working_directory_runs_containers() {
    let s = Strata::with_busybox();
    let r: common::Run = std::process::Command::new(common::bin())
        .current_dir(s.path(""))
        .args(["--root", "store", "run", "--rm", "busybox", "echo", "hi"])
        .env_remove("STRATA_ROOT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into();
    assert_eq!(r.ok().stdout, "hi\n");
}

#[test]
fn run_applies_flags_and_config() {
    let s = Strata::with_busybox();
    let out = s
        .run(&[
            "run",
            "--rm",
            "-e",
            "A=1",
            "-w",
            "/made/here",
            "-u",
            "1000:1000",
            "-h",
            "box",
            "busybox",
            "sh",
            "-c",
            "echo $A $(pwd) $(id -u):$(id -g) $(hostname)",
        ])
        .ok()
        .stdout;
    assert_eq!(out.trim(), "1 /made/here 1000:1000 box");
    let id = s
        .run(&["run", "-d", "busybox", "sleep", "30"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let host = s.run(&["exec", &id, "hostname"]).ok().stdout;
    assert_eq!(host.trim(), &id[..12], "hostname defaults to the short id");
    s.run(&["rm", "-f", &id]).ok();
}

/// `--env-file` as docker reads it, for `run` and `exec`: the files in
/// turn, then `-e`, the last one given winning; a bad file fails in one
/// line and makes no container.
#[test]
fn env_files_set_the_environment_before_the_flags() {
    let s = Strata::with_busybox();
    let first = s.path("first.env");
    let second = s.path("second.env");
    std::fs::write(&first, "# base\nA=file\nB=\"kept as is\"\nC=first\n").unwrap();
    std::fs::write(&second, "C=second\n").unwrap();
    let (first, second) = (first.to_str().unwrap(), second.to_str().unwrap());
    let echo = "echo \"$A|$B|$C\"";
    let r = s
        .run(&[
            "run",
            "--rm",
            "--env-file",
            first,
            "--env-file",
            second,
            "-e",
            "A=flag",
            "busybox",
            "sh",
            "-c",
            echo,
        ])
        .ok();
    assert_eq!(r.stdout, "flag|\"kept as is\"|second\n");
    s.run(&["run", "-d", "--name", "envd", "busybox", "sleep", "30"])
        .ok();
    let r = s
        .run(&["exec", "--env-file", first, "envd", "sh", "-c", echo])
        .ok();
    assert_eq!(r.stdout, "file|\"kept as is\"|first\n");
    s.run(&["rm", "-f", "envd"]).ok();
    std::fs::write(s.path("bad.env"), "A B=1\n").unwrap();
    let bad = s.path("bad.env");
    for file in [bad.to_str().unwrap(), "/nonexistent/env"] {
        let r = s.run(&[
            "run",
            "--name",
            "none",
            "--env-file",
            file,
            "busybox",
            "true",
        ]);
        assert_eq!(r.code, 125, "{}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    let r = s.run(&["ps", "-a", "-q"]).ok();
    assert_eq!(r.stdout, "", "a bad env file made a container");
}

/// `--read-only`: the root filesystem and the /etc files bound into it
/// refuse writes (EROFS), a missing working directory is still made (as
/// docker makes it first), /dev/shm and volumes stay writable, and a start
/// of the created container keeps it so.
#[test]
fn read_only_keeps_the_root_filesystem_unwritten() {
    let s = Strata::with_busybox();
    let vol = s.path("vol");
    std::fs::create_dir(&vol).unwrap();
    let volume = format!("{}:/vol", vol.display());
    let script = "pwd; for f in /x /etc/hosts /dev/shm/x /vol/x; do \
                  if echo 1 >> $f; then echo $f written; else echo $f refused; fi; done 2>&1";
    let r = s
        .run(&[
            "run",
            "--name",
            "ro",
            "--read-only",
            "-v",
            &volume,
            "-w",
            "/made/here",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "/made/here", "{}", r.stdout);
    for (file, outcome) in [
        ("/x", "refused"),
        ("/etc/hosts", "refused"),
        ("/dev/shm/x", "written"),
        ("/vol/x", "written"),
    ] {
        let line = format!("{file} {outcome}");
        assert!(lines.contains(&line.as_str()), "{line}: {}", r.stdout);
    }
    assert!(r.stdout.contains("Read-only file system"), "{}", r.stdout);
    let r = s
        .run(&["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", "ro"])
        .ok();
    assert_eq!(r.stdout, "true\n");
    let r = s.run(&["start", "-a", "ro"]).ok();
    assert!(r.stdout.contains("/x refused"), "{}", r.stdout);
    let r = s.run(&["diff", "ro"]).ok();
    assert_eq!(r.stdout, "A /made\nA /made/here\n");
    s.run(&["rm", "ro"]).ok();
    let r = s.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /x && echo written",
    ]);
    assert_eq!(r.ok().stdout, "written\n", "without --read-only");
}

/// `--tmpfs`: a tmpfs of the container's own, `noexec,nosuid,nodev`
/// unless its options say otherwise, its `size` kept, its files gone with
/// the container's run and never committed; a bad option or a target a
/// volume has fails in one line.
#[test]
fn tmpfs_mounts_are_the_containers_own_and_never_committed() {
    let s = Strata::with_busybox();
    let script = "grep -E ' /(scratch|big) ' /proc/mounts; \
                  cp /bin/busybox /scratch/true && /scratch/true || echo noexec; \
                  cp /bin/busybox /big/true && /big/true && echo exec; \
                  dd if=/dev/zero of=/big/f bs=1024 count=5120 2>/dev/null || echo full";
    let r = s
        .run(&[
            "run",
            "--name",
            "tmp",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "--tmpfs",
            "/big:exec,size=4m",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"),
        "{}",
        r.stdout
    );
    assert!(
        lines[1].starts_with("tmpfs /big tmpfs rw,nosuid,nodev,relatime,size=4096k"),
        "{}",
        r.stdout
    );
    assert_eq!(lines[2..], ["noexec", "exec", "full"], "{}", r.stdout);
    let r = s
        .run(&["inspect", "-f", "{{json .HostConfig.Tmpfs}}", "tmp"])
        .ok();
    assert_eq!(r.stdout, "{\"/big\":\"exec,size=4m\",\"/scratch\":\"\"}\n");
    s.run(&["commit", "tmp", "tmp:1"]).ok();
    let r = s
        .run(&["run", "--rm", "tmp:1", "sh", "-c", "ls -A /scratch /big"])
        .ok();
    assert_eq!(
        r.stdout, "/big:\n\n/scratch:\n",
        "tmpfs files were committed"
    );
    s.run(&["rm", "tmp"]).ok();
    for (args, refused) in [
        (vec!["--tmpfs", "/x:bogus"], "unknown tmpfs option 'bogus'"),
        (vec!["--tmpfs", "x"], "mount path must be absolute"),
        (
            vec!["--tmpfs", "/x", "-v", "/tmp:/x"],
            "Duplicate mount point: /x",
        ),
    ] {
        let mut all = vec!["run", "--name", "none"];
        all.extend(args);
        all.extend(["busybox", "true"]);
        s.run(&all).refused_with(refused);
    }
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout, "");
}

/// `--mount`, docker's long form of `-v` and `--tmpfs`: a read-only bind
/// and a sized tmpfs; a bind source that does not exist and a named
/// volume refused in a line.
#[test]
fn mount_flags_make_binds_and_tmpfs_as_the_short_forms_do() {
    let s = Strata::with_busybox();
    let host = s.path("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("note"), "from the host\n").unwrap();
    let bind = format!(
        "type=bind,source={},target=/shared,readonly",
        host.display()
    );
    let r = s
        .run(&[
            "run",
            "--name",
            "mounted",
            "--mount",
            &bind,
            "--mount",
            "type=tmpfs,dst=/cache,tmpfs-size=1m",
            "busybox",
            "sh",
            "-c",
            "cat /shared/note; touch /shared/x 2>/dev/null || echo read-only; \
             grep ' /cache ' /proc/mounts",
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[..2], ["from the host", "read-only"], "{}", r.stdout);
    assert!(
        lines[2].starts_with("tmpfs /cache tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k"),
        "{}",
        r.stdout
    );
    s.run(&["rm", "mounted"]).ok();
    for (mount, refused) in [
        (
            "type=bind,src=/no/such/dir,dst=/d",
            "bind source path does not exist",
        ),
        (
            "source=da ta,target=/d",
            "includes invalid characters for a local volume name",
        ),
        ("type=bind,src=/tmp", "target is required"),
    ] {
        s.run(&["run", "--name", "none", "--mount", mount, "busybox", "true"])
            .refused_with(refused);
    }
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout, "");
}

/// `--init`, as docker's: pid 1 is an init and the command its child; the
/// init passes on a stop's SIGTERM (a command as pid 1 would ignore it and
/// wait for the SIGKILL), reaps orphans, and exits as the command did.
#[test]
fn init_forwards_signals_reaps_orphans_and_exits_as_the_command() {
    let s = Strata::with_busybox();
    let script = "cat /proc/1/comm; echo $$; (sleep 0.1 &); sleep 0.5; \
                  awk '$3 == \"Z\"' /proc/[0-9]*/stat | wc -l; exit 3";
    let r = s.run(&["run", "--rm", "--init", "busybox", "sh", "-c", script]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        r.stdout, "strata-init\n2\n0\n",
        "init, the command's pid, zombies"
    );
    let r = s.run(&["run", "--rm", "--init", "busybox", "sh", "-c", "kill -9 $$"]);
    assert_eq!(r.code, 137, "{}", r.stderr);
    // sleep as pid 1 ignores SIGTERM and ends by the SIGKILL after the
    // timeout (137); under the init it ends on the SIGTERM (143).
    s.run(&[
        "run", "-d", "--name", "initd", "--init", "busybox", "sleep", "60",
    ])
    .ok();
    s.run(&["stop", "-t", "30", "initd"]).ok();
    let r = s
        .run(&[
            "inspect",
            "-f",
            "{{.State.ExitCode}} {{json .HostConfig.Init}}",
            "initd",
        ])
        .ok();
    assert_eq!(r.stdout, "143 true\n");
    // A start keeps it: the recorded container runs under the init again.
    s.run(&["start", "initd"]).ok();
    let r = s.run(&["exec", "initd", "cat", "/proc/1/comm"]).ok();
    assert_eq!(r.stdout, "strata-init\n");
    s.run(&["rm", "-f", "initd"]).ok();
}

/// A working directory reached through a symlink whose target is missing
/// is made at the target, inside the container's root, as runc does.
#[test]
fn a_working_directory_through_a_dangling_symlink_is_made_where_it_points() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "linker",
        "busybox",
        "sh",
        "-c",
        "ln -s /made/here /abs && ln -s ../rel/there /up",
    ])
    .ok();
    s.run(&["commit", "linker", "linked"]).ok();
    for (workdir, made) in [("/abs/wd", "/made/here/wd"), ("/up/wd", "/rel/there/wd")] {
        let out = s
            .run(&["run", "--rm", "-w", workdir, "linked", "sh", "-c", "pwd -P"])
            .ok()
            .stdout;
        assert_eq!(out.trim(), made, "-w {workdir}");
    }
}

#[test]
fn a_container_sees_only_its_image_and_its_processes() {
    let s = Strata::with_busybox();
    let out = s
        .run(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls /; echo ---; ps -o pid,comm",
        ])
        .ok()
        .stdout;
    let (ls, ps) = out.split_once("---").unwrap();
    assert!(
        !ls.contains("work") && !ls.contains("var") && ls.contains("bin"),
        "{ls}"
    );
    let pids: Vec<&str> = ps
        .lines()
        .filter(|l| !l.trim().is_empty())
        .skip(1)
        .collect();
    assert!(pids.len() <= 3 && pids[0].trim().starts_with('1'), "{ps}");
}

#[test]
fn bad_run_input_fails_with_dockers_shape_and_leaves_no_container() {
    let s = Strata::with_busybox();
    s.run(&["run", "--name", "taken", "busybox", "true"]).ok();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            // A registry on loopback that is not there: the pull is tried
            // and fails (a bare name would try Docker Hub).
            vec!["run", "127.0.0.1:9/nosuchimage"],
            "Unable to find image '127.0.0.1:9/nosuchimage:latest' locally",
        ),
        (
            vec!["run", "--pull=never", "nosuchimage"],
            "No such image: nosuchimage:latest",
        ),
        (
            vec!["run", "--name", "taken", "busybox", "true"],
            "Conflict. The container name \"/taken\" is already in use by container",
        ),
        (
            // docker's one leading `/` names the same container.
            vec!["run", "--name", "/taken", "busybox", "true"],
            "Conflict. The container name \"/taken\" is already in use by container",
        ),
        (
            vec!["run", "-e", "=x", "busybox", "true"],
            "invalid environment variable",
        ),
        (vec!["run", "-v", "nocolon", "busybox", "true"], "nocolon"),
        (
            vec!["run", "-u", "a:b:c d", "busybox", "true"],
            "invalid user",
        ),
        (
            vec!["run", "--name", "bad/name", "busybox", "true"],
            "Invalid container name",
        ),
        (
            vec!["commit", "nosuchcontainer"],
            "No such container: nosuchcontainer",
        ),
        (
            vec!["commit", "-c", "RUN ls", "taken"],
            "is not a valid change command",
        ),
        // stdin is /dev/null here: a terminal fed by nothing would hang.
        (
            vec!["run", "-it", "busybox", "cat"],
            "the input device is not a TTY",
        ),
        (
            vec!["exec", "-it", "taken", "cat"],
            "the input device is not a TTY",
        ),
    ];
    for (args, expect) in cases {
        let r = s.run(&args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{args:?}: {}", r.stderr);
    }
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout.lines().count(), 1);
    let id = s
        .run(&["run", "-d", "busybox", "sleep", "30"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let r = s.run(&["rm", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("container is running"), "{}", r.stderr);
    s.run(&["rm", "-f", &id]).ok();
    s.run(&["verify"]).ok();
}

#[test]
fn ps_shows_a_container_whose_monitor_was_killed_as_exited_and_rm_cleans_it() {
    let s = Strata::with_busybox();
    let (id, _) = run_and_kill_the_monitor(&s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ps = s.run(&["ps", "-a"]).ok().stdout;
        if ps.contains("Exited (137)") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ps}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let merged = s.root().join("containers").join(&id).join("merged");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(merged.to_str().unwrap()),
        "stale mount left"
    );
    s.run(&["rm", "victim"]).ok();
    assert!(!s.root().join("containers").join(&id).exists());
}

/// A killed monitor's pid taken by another process (this machine's
/// pid_max is 32768: pids come round within minutes of builds): the
/// container still counts as exited and goes with `rm`, and the process
/// that has the pid now is left alone. A check by pid alone took the
/// newcomer for the monitor: `ps` said Up, and `rm` refused a running
/// container that no `stop` could end.
#[test]
fn a_killed_monitors_pid_taken_by_another_process_leaves_the_container_exited() {
    let s = Strata::with_busybox();
    let (_, monitor) = run_and_kill_the_monitor(&s);
    // No strata command has looked since: the record still says running.
    let mut impostor = take_pid(monitor);
    let ps = s.run(&["ps", "-a"]).ok().stdout;
    let status = impostor.try_wait().unwrap();
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert!(status.is_none(), "the process that took the pid was ended");
    s.run(&["rm", "victim"]).ok();
}

/// Runs `victim` (`sleep 300`) and kills its monitor with SIGKILL: the
/// container's id and the monitor's pid, which is free when this returns.
fn run_and_kill_the_monitor(s: &Strata) -> (String, i32) {
    let id = s
        .run(&["run", "-d", "--name", "victim", "busybox", "sleep", "300"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let pid = s.run(&["inspect", "-f", "{{.State.Pid}}", &id]).ok().stdout;
    let monitor = parent_of(pid.trim().parse().unwrap());
    // SAFETY: kill sends a signal; no memory is involved.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{monitor}")).exists() {
        assert!(std::time::Instant::now() < deadline, "the monitor stays");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (id, monitor)
}

/// A `sleep` started under pid `pid`, which is free: the pid namespace's
/// last pid set just below it (root's /proc/sys/kernel/ns_last_pid), tried
/// again while other processes of the machine take it first.
fn take_pid(pid: i32) -> std::process::Child {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("set ns_last_pid (root)");
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("spawn sleep");
        if child.id() as i32 == pid {
            return child;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("pid {pid} could not be taken");
}

/// The parent of process `pid` (the monitor of a container's init).
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat of the init");
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|ppid| ppid.parse().ok())
        .expect("a parent pid")
}

/// Two `start -a` of one container at once: one launches it and stays
/// attached, the other finds it running. Without the start turn both
/// launched, and the loser's failure path killed the container.
#[test]
fn two_attached_starts_at_once_leave_the_container_running() {
    use std::process::Stdio;
    let s = Strata::with_busybox();
    for i in 0..3 {
        let name = format!("twice{i}");
        s.run(&["create", "--name", &name, "busybox", "sleep", "1000"])
            .ok();
        let spawn = || {
            let mut c = s.cmd(&["start", "-a", &name]);
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c.spawn().unwrap()
        };
        let (mut first, mut second) = (spawn(), spawn());
        // One of them ends at once (it found the container running).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while first.try_wait().unwrap().is_none() && second.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "neither start returned"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = s
            .run(&["inspect", "-f", "{{.State.Status}}", &name])
            .ok()
            .stdout;
        s.run(&["rm", "-f", &name]).ok();
        let _ = (first.wait(), second.wait());
        assert_eq!(status.trim(), "running", "round {i}");
    }
}

/// `rm -f` racing a `start` of the same container: `rm` waits for the
/// start's turn, and the container it then finds may be running. It was
/// removed as it was, and ran on with no record to find or stop it.
#[test]
fn rm_f_racing_a_start_leaves_nothing_running() {
    use std::process::Stdio;
    let s = Strata::with_busybox();
    let quiet = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().unwrap()
    };
    for i in 0..5 {
        let marker = format!("rm-start-race-{i}-{}", std::process::id());
        let name = format!("race{i}");
        let script = format!("sleep 1000; : {marker}");
        s.run(&["create", "--name", &name, "busybox", "sh", "-c", &script])
            .ok();
        let mut start = quiet(&["start", &name]);
        let mut rm = quiet(&["rm", "-f", &name]);
        start.wait().unwrap();
        assert!(rm.wait().unwrap().success(), "rm -f {name} failed");
        // What runs on, killed here so that a failure leaves nothing.
        let mut running = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let pid = entry.file_name().to_string_lossy().parse::<i32>();
            if let (true, Ok(pid)) = (String::from_utf8_lossy(&cmdline).contains(&marker), pid) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                running.push(pid);
            }
        }
        assert_eq!(running, vec![], "round {i}: removed, still running");
        assert_eq!(s.run(&["ps", "-aq"]).ok().stdout, "", "round {i}");
    }
}

/// `unshare CMD` names a command that cannot run, with a shell's code,
/// as root as well as rootless (root's said only "No such file or
/// directory", exit 125).
#[test]
fn unshare_names_a_command_that_cannot_run() {
    let s = Strata::new();
    let r = s.run(&["unshare", "no-such-command"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-command"), "{}", r.stderr);
    assert_eq!(s.run(&["unshare", "/etc/passwd"]).code, 126);
    assert_eq!(s.run(&["unshare", "true"]).code, 0);
}

/// The container directories of `s` that have no record: what a removal
/// racing a start left (gc's work, never a command's result).
fn directories_without_records(s: &Strata) -> Vec<String> {
    std::fs::read_dir(s.root().join("containers"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir() && !e.path().join("record.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn container_prune_racing_start_or_run_removes_whole_containers_only() {
    use std::process::{Output, Stdio};
    let s = Strata::with_busybox();
    let spawn = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let said = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    for i in 0..8 {
        let name = format!("prunerace{i}");
        // Even rounds start a created container, odd ones run a new one.
        let racer = if i % 2 == 0 {
            s.run(&["create", "--name", &name, "busybox", "sleep", "1000"])
                .ok();
            spawn(&["start", &name])
        } else {
            spawn(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"])
        };
        let prune = spawn(&["container", "prune", "-f"])
            .wait_with_output()
            .unwrap();
        let raced = racer.wait_with_output().unwrap();
        assert!(prune.status.success(), "round {i}: prune: {}", said(&prune));
        // Either the prune came first (the start finds no container) or
        // the start did (it runs, and the prune left it).
        match s
            .run(&["inspect", "-f", "{{.State.Status}}", &name])
            .stdout
            .trim()
        {
            "running" => assert!(raced.status.success(), "round {i}: {}", said(&raced)),
            "" => assert!(
                said(&raced).contains("No such container"),
                "round {i}: gone, and the start said {}",
                said(&raced)
            ),
            other => panic!("round {i}: left {other}"),
        }
        assert_eq!(
            directories_without_records(&s),
            Vec::<String>::new(),
            "round {i}"
        );
        s.run(&["rm", "-f", &name]);
    }
}

#[test]
fn volume_removals_racing_a_run_leave_no_volume_unlisted() {
    use std::process::Stdio;
    let s = Strata::with_busybox();
    let spawn = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().unwrap()
    };
    for i in 0..10 {
        let volume = format!("racevol{i}");
        s.run(&["volume", "create", &volume]).ok();
        let target = format!("/data{i}");
        let mount = format!("{volume}:{target}");
        let mut run = spawn(&[
            "run",
            "--rm",
            "-v",
            &mount,
            "busybox",
            "touch",
            &format!("{target}/x"),
        ]);
        let mut removal = match i % 2 {
            0 => spawn(&["volume", "rm", &volume]),
            _ => spawn(&["volume", "prune", "-a", "-f"]),
        };
        run.wait().unwrap();
        removal.wait().unwrap();
        // Whatever won, every volume directory is a volume `ls` lists
        // (or one `prune` takes away), and its data is there.
        let listed = s.run(&["volume", "ls", "-q"]).ok().stdout;
        for entry in std::fs::read_dir(s.root().join("volumes"))
            .unwrap()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                assert!(
                    listed.lines().any(|l| l == name),
                    "round {i}: {name} unlisted"
                );
                assert!(
                    entry.path().join("_data").is_dir(),
                    "round {i}: {name} without data"
                );
            }
        }
        s.run(&["volume", "prune", "-a", "-f"]).ok();
        let left: Vec<String> = std::fs::read_dir(s.root().join("volumes"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, Vec::<String>::new(), "round {i}: left after a prune");
    }
}

#[test]
fn gc_removes_the_directory_of_a_removal_cut_short_with_its_mount_left() {
    let s = Strata::with_busybox();
    let id = s
        .run(&["run", "-d", "busybox", "sleep", "600"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let dir = s.root().join("containers").join(&id);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state")).unwrap()).unwrap();
    let pid_of = |key: &str| state["Running"][key].as_i64().unwrap();
    // A removal cut short once the record was gone, while the container
    // still ran (as the keeper race left one): its mount on the orphan
    // directory made gc fail every time.
    std::fs::remove_file(dir.join("record.json")).unwrap();
    let cgroup = std::fs::read_to_string(dir.join("cgroup")).ok();
    let gc = s.run(&["gc"]).ok();
    assert!(gc.stderr.contains("still runs"), "{}", gc.stderr);
    // Its processes end with their cgroup (the cgroup leaked before).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{}", pid_of("pid"))).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container's process runs on"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(cgroup.is_some(), "no cgroup was recorded");
    assert!(!dir.exists(), "the orphan directory stayed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "its mount stayed");
    // The monitor, outside the cgroup, ends by its own: not waited for.
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid_of("monitor_pid").to_string()])
        .status();
    s.run(&["verify"]).ok();
}

#[test]
fn a_killed_monitor_of_a_foreground_rm_container_leaves_nothing_behind() {
    let s = Strata::with_busybox();
    let mut cli = s
        .cmd(&["run", "--rm", "--name", "fg", "busybox", "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start strata run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (pid, id) = loop {
        let r = s.run(&["inspect", "fg"]);
        if r.code == 0 {
            let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("inspect JSON");
            if let Some(pid) = v[0]["State"]["Pid"].as_i64().filter(|&p| p > 0) {
                break (pid as i32, v[0]["Id"].as_str().expect("an id").to_string());
            }
        }
        assert!(std::time::Instant::now() < deadline, "fg never ran");
        std::thread::sleep(std::time::Duration::from_millis(25));
    };
    // SAFETY: kill sends a signal; no memory is involved.
    unsafe { libc::kill(parent_of(pid), libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while cli.try_wait().expect("wait for strata run").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "run outlived its monitor"
        );
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    // Whatever instant the kill hit, the container is gone or exited, and
    // rm -f clears what is left: no record, no directory, no mount.
    s.run(&["rm", "-f", "fg"]);
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout, "");
    let dir = s.root().join("containers").join(&id);
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(
        !mounts.contains(dir.to_str().expect("utf-8 path")),
        "a mount is left: {mounts}"
    );
    assert!(!dir.exists(), "the container's directory is left");
    s.run(&["verify"]).ok();
}

#[test]
fn two_containers_from_one_image_have_their_own_uppers() {
    let s = Strata::with_busybox();
    let a = s
        .run(&["run", "-d", "busybox", "sh", "-c", "echo a > /f; sleep 30"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let b = s
        .run(&["run", "-d", "busybox", "sh", "-c", "echo b > /f; sleep 30"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let read = |id: &str| {
        for _ in 0..200 {
            let r = s.run(&["exec", id, "cat", "/f"]);
            if r.code == 0 {
                return r.stdout;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("/f never appeared in {id}");
    };
    assert_eq!(read(&a), "a\n");
    assert_eq!(read(&b), "b\n");
    assert_eq!(
        s.run(&["run", "--rm", "busybox", "cat", "/f"]).code,
        1,
        "the image is untouched"
    );
    let diff = s.run(&["diff", &a]).ok().stdout;
    assert!(diff.lines().any(|l| l == "A /f"), "{diff}");
    s.run(&["rm", "-f", &a, &b]).ok();
}

#[test]
fn commit_of_an_unchanged_container_adds_an_empty_history_entry() {
    let s = Strata::with_busybox();
    s.run(&["run", "--name", "same", "busybox", "true"]).ok();
    s.run(&["commit", "-m", "nothing", "same", "same-img"]).ok();
    let inspect: serde_json::Value =
        serde_json::from_str(&s.run(&["inspect", "same-img"]).ok().stdout).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let history = s.run(&["history", "same-img"]).ok().stdout;
    assert!(
        history
            .lines()
            .nth(1)
            .unwrap()
            .contains("0B        nothing"),
        "{history}"
    );
}

#[test]
fn commit_records_deletions_as_whiteouts_and_leaves_out_runtime_files() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "changer",
        "busybox",
        "sh",
        "-c",
        "rm /bin/vi; echo x > /new; echo 1.2.3.4 h >> /etc/hosts",
    ])
    .ok();
    let diff = s.run(&["diff", "changer"]).ok().stdout;
    assert!(
        diff.contains("D /bin/vi") && diff.contains("A /new") && diff.contains("C /bin"),
        "{diff}"
    );
    assert!(!diff.contains("/etc/hosts"), "{diff}");
    s.run(&["commit", "changer", "changed"]).ok();
    let out = s.run(&["run", "--rm", "changed", "sh", "-c", "ls /bin/vi; cat /new"]);
    assert!(
        out.stdout.contains('x') && out.stderr.contains("No such file"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let layout = s.path("layout");
    s.run(&["save", "-o", layout.to_str().unwrap(), "changed"])
        .ok();
}

/// A container cannot make a path of PATH_MAX (4096) bytes, even one
/// relative name at a time: the union refuses the name (ENAMETOOLONG),
/// as no layer may hold it. One put into the upper from the host is
/// refused by commit in one line naming it, exit 125, and no image is made.
#[test]
fn a_path_of_path_max_bytes_is_refused_in_the_container_and_by_commit() {
    let s = Strata::with_busybox();
    // 100 levels by `cd`, then 2,000 by one relative `mkdir -p` (4,000
    // bytes): `e/` and 4,199 bytes below it.
    let script = "mkdir /e && cd /e && for i in $(seq 100); do mkdir d && cd d; done \
                  && mkdir -p $(printf 'd/%.0s' $(seq 2000)) && echo made";
    let made = s.run(&["run", "--name", "deep", "busybox", "sh", "-c", script]);
    assert_ne!(made.code, 0, "{}", made.stdout);
    assert!(made.stderr.contains("too long"), "{}", made.stderr);
    let id = s.run(&["inspect", "-f", "{{.Id}}", "deep"]).ok().stdout;
    let upper = s.root().join("containers").join(id.trim()).join("upper");
    // GNU mkdir -p walks one directory at a time, past PATH_MAX.
    let deep = format!(
        "cd {}/e && mkdir -p $(printf 'd/%.0s' $(seq 2100))",
        upper.display()
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &deep])
        .status()
        .unwrap();
    assert!(status.success());
    let r = s.run(&["commit", "deep", "deep-img"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    for part in ["container deep: entry \"e/d/d/", "PATH_MAX (4096 bytes)"] {
        assert!(r.stderr.contains(part), "{part}: {}", r.stderr);
    }
    assert!(!s.run(&["images"]).ok().stdout.contains("deep-img"));
}

/// A fifo or a device node in a container's tree is exported with its
/// type and numbers, and copied out (as an empty file, as docker's cp
/// lands one): both failed on any of them, the tar writer naming the
/// entry by its host path and refusing it as absolute.
#[test]
fn export_and_cp_take_fifos_and_device_nodes() {
    let s = Strata::with_busybox();
    let script = "mkdir /x && mkfifo /x/p && mknod /x/c c 1 3 && mknod /x/b b 7 0";
    s.run(&["run", "--name", "nodes", "busybox", "sh", "-c", script])
        .ok();
    let tar = s.path("nodes.tar");
    s.run(&["export", "-o", tar.to_str().unwrap(), "nodes"])
        .ok();
    let kinds: Vec<(String, tar::EntryType)> = tar_entries(&tar)
        .into_iter()
        .filter(|(n, ..)| n.starts_with("x/"))
        .map(|(n, kind, ..)| (n, kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("x/b".to_string(), tar::EntryType::Block),
            ("x/c".to_string(), tar::EntryType::Char),
            ("x/p".to_string(), tar::EntryType::Fifo),
        ]
    );
    let out = s.path("x-out");
    s.run(&["cp", "nodes:/x", out.to_str().unwrap()]).ok();
    for name in ["b", "c", "p"] {
        let md = std::fs::symlink_metadata(out.join(name)).unwrap();
        assert!(md.is_file() && md.len() == 0, "{name}: {md:?}");
    }
}

#[test]
fn export_writes_the_flattened_tree() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "ex",
        "busybox",
        "sh",
        "-c",
        "echo hello > /greeting && ln /greeting /again",
    ])
    .ok();
    let tar = s.path("ex.tar");
    s.run(&["export", "-o", tar.to_str().unwrap(), "ex"]).ok();
    let entries = tar_entries(&tar);
    let names: Vec<&String> = entries.iter().map(|(n, _, _, _)| n).collect();
    assert!(
        names.iter().any(|n| n.ends_with("bin/busybox")),
        "{names:?}"
    );
    // A file with two names goes once; its other name links to it.
    let find = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
    assert_eq!(find("again").1, tar::EntryType::Regular);
    assert_eq!(find("greeting").1, tar::EntryType::Link);
    assert_eq!(find("greeting").2.as_deref(), Some("again"));

    // An image's xattrs (a file capability, a user xattr) reach the export.
    let mut image = tar::Builder::new(Vec::new());
    image
        .append_pax_extensions([("SCHILY.xattr.user.note", &b"kept"[..])])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    image
        .append_data(&mut header, "note", &b"note"[..])
        .unwrap();
    std::fs::write(s.path("xi.tar"), image.into_inner().unwrap()).unwrap();
    s.run(&["import", s.path("xi.tar").to_str().unwrap(), "xi"])
        .ok();
    s.run(&["create", "--name", "xe", "xi", "/none"]).ok();
    let out = s.path("xe.tar");
    s.run(&["export", "-o", out.to_str().unwrap(), "xe"]).ok();
    let entries = tar_entries(&out);
    let note = entries.iter().find(|e| e.0 == "note").unwrap();
    assert_eq!(
        note.3,
        [("SCHILY.xattr.user.note".to_string(), b"kept".to_vec())]
    );
}

/// Each entry of a tar file: its name, type, link name and PAX records.
#[allow(clippy::type_complexity)]
fn tar_entries(
    path: &std::path::Path,
) -> Vec<(
    String,
    tar::EntryType,
    Option<String>,
    Vec<(String, Vec<u8>)>,
)> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let pax = e
                .pax_extensions()
                .unwrap()
                .map(|exts| {
                    exts.map(|x| {
                        let x = x.unwrap();
                        (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                    })
                    .collect()
                })
                .unwrap_or_default();
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
                e.link_name().unwrap().map(|l| l.display().to_string()),
                pax,
            )
        })
        .collect()
}

#[test]
fn an_inspection_mount_is_read_only_and_outlives_the_command() {
    let s = Strata::with_busybox();
    let dir = s.path("mnt");
    let out = s
        .run(&["mount", "busybox", dir.to_str().unwrap()])
        .ok()
        .stdout;
    assert_eq!(out.trim(), dir.to_str().unwrap());
    assert!(dir.join("bin/busybox").exists());
    let err = std::fs::write(dir.join("x"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let listed = s.run(&["mount"]).ok().stdout;
    assert!(listed.contains(dir.to_str().unwrap()), "{listed}");
    s.run(&["umount", dir.to_str().unwrap()]).ok();
    assert!(!dir.join("bin/busybox").exists());
    assert!(dir.is_dir(), "the directory given to mount is the user's");
    // Given no directory, mount makes one, which umount removes; umount
    // takes the image or container mount took too (podman's takes a
    // container), and says where it unmounted.
    s.run(&["create", "--name", "idle", "busybox", "true"]).ok();
    for (target, by) in [("busybox", "path"), ("busybox", "name"), ("idle", "name")] {
        let made = s.run(&["mount", target]).ok().stdout;
        let made = std::path::PathBuf::from(made.trim());
        assert!(made.join("bin/busybox").exists(), "{target}");
        let named = match by {
            "path" => made.to_str().unwrap(),
            _ => target,
        };
        let r = s.run(&["umount", named]).ok();
        assert_eq!(r.stdout.trim(), made.to_str().unwrap());
        assert!(
            !made.exists(),
            "{target} by {by}: {} is left",
            made.display()
        );
    }
    s.run(&["umount", "idle"])
        .refused_with("idle is not mounted");
    // Another user's link as the directory: refused, and not followed
    // onto the directory of root's it names (it was covered by the image).
    let roots = s.path("roots-dir");
    std::fs::create_dir(&roots).unwrap();
    let link = s.path("users-link");
    std::os::unix::fs::symlink(&roots, &link).unwrap();
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &link,
        Some(65534.into()),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    for target in ["busybox", "idle"] {
        s.run(&["mount", target, link.to_str().unwrap()])
            .refused_with("a link of another user's");
        assert!(
            !roots.join("bin").exists(),
            "{target} mounted through the link"
        );
    }
}

/// kill -9 of an inspection mount's server (`strata mount` forks one that
/// outlives it) left its dead mount: the next `mount` of the image failed
/// ("create ...: File exists"), and a removed container's could be
/// unmounted by no name (a review). `mount` and `gc` take such mounts
/// away.
#[test]
fn a_killed_inspection_server_leaves_no_dead_mount() {
    let s = Strata::with_busybox();
    let root = s.root().display().to_string();
    // The server of the mount at `at`, by its command line.
    let server_of = |at: &str| {
        let pid = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .find_map(|p| {
                let cmd = std::fs::read(p.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                let ours = cmd.contains("serve-mount") && cmd.contains(&root);
                (ours && cmd.trim_end().ends_with(at)).then(|| p.file_name())
            })
            .expect("the mount's server");
        nix::unistd::Pid::from_raw(pid.to_str().unwrap().parse().unwrap())
    };
    // Until it has exited (a zombie, or reaped).
    let kill = |pid: nix::unistd::Pid| {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        while layerdb::pins::process_alive(pid.as_raw()) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    // Dead mounts are detached when the test ends, whatever it found.
    struct Detached(String);
    impl Drop for Detached {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let made = s.run(&["mount", "busybox"]).ok().stdout.trim().to_string();
    let _left = Detached(made.clone());
    kill(server_of(&made));
    let again = s.run(&["mount", "busybox"]).ok().stdout;
    assert_eq!(again.trim(), made);
    assert!(std::path::Path::new(&made).join("bin/busybox").exists());
    kill(server_of(&made));
    s.run(&["gc"]).ok();
    assert!(!mounted(made.as_ref()), "gc left the dead mount");
    assert!(
        !std::path::Path::new(&made).exists(),
        "gc left its directory"
    );
    s.run(&["create", "--name", "c4", "busybox", "true"]).ok();
    let made = s.run(&["mount", "c4"]).ok().stdout.trim().to_string();
    let _left = Detached(made.clone());
    kill(server_of(&made));
    s.run(&["rm", "c4"]).ok();
    assert_eq!(s.run(&["mount"]).ok().stdout, "");
    assert!(
        !mounted(made.as_ref()),
        "the removed container's dead mount stayed"
    );
}

/// Lazily unmounts every mount left on a path when dropped.
struct Unmounts(std::path::PathBuf);

impl Drop for Unmounts {
    fn drop(&mut self) {
        while mounted(&self.0) {
            let ok = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
        }
    }
}

fn mounted(path: &std::path::Path) -> bool {
    std::process::Command::new("mountpoint")
        .arg("-q")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

fn bind_on_itself(path: &std::path::Path) {
    let ok = std::process::Command::new("mount")
        .arg("--bind")
        .arg(path)
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success(), "mount --bind {}", path.display());
}

/// `umount` takes away only strata's mounts, and when it returns the
/// mount's server is gone: the server unmounted its path again as it
/// exited (fuser's inverted check, fixed in vendor/fuser since), which
/// took away a bind mount made right after `umount` in 6 of 40 rounds.
#[test]
fn umount_takes_away_only_its_own_mount_and_nothing_mounted_after() {
    let s = Strata::with_busybox();
    let dir = s.path("over");
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = Unmounts(dir.clone());
    bind_on_itself(&dir);
    let r = s.run(&["umount", dir.to_str().unwrap()]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("not a strata mount"), "{}", r.stderr);
    assert!(mounted(&dir), "the bind mount stays");
    std::process::Command::new("umount")
        .arg(&dir)
        .status()
        .unwrap();
    for round in 0..20 {
        s.run(&["mount", "busybox", dir.to_str().unwrap()]).ok();
        s.run(&["umount", dir.to_str().unwrap()]).ok();
        bind_on_itself(&dir);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            mounted(&dir),
            "round {round}: the next mount was taken away"
        );
        std::process::Command::new("umount")
            .arg(&dir)
            .status()
            .unwrap();
    }
}

/// The pid of the `serve-mount` process serving `dir`.
fn mount_server(dir: &std::path::Path) -> i32 {
    let want = dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            args.contains(&&b"serve-mount"[..]) && args.last() == Some(&want)
        })
        .unwrap_or_else(|| panic!("no server for {}", dir.display()))
}

/// Mount records are named by mountpoint: a server that ended after its
/// mount was taken away (`fusermount3 -u`) and the path mounted again
/// removed the new mount's record, and `strata mount` stopped listing it.
#[test]
fn a_server_ending_late_leaves_the_next_mounts_record_at_its_path() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let s = Strata::with_busybox();
    let dir = s.path("again");
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = Unmounts(dir.clone());
    let path = dir.to_str().unwrap();
    s.run(&["mount", "busybox", path]).ok();
    let old = Pid::from_raw(mount_server(&dir));
    // Stopped, it cannot end before the next mount is recorded.
    kill(old, Signal::SIGSTOP).unwrap();
    nix::mount::umount(&dir).unwrap();
    s.run(&["mount", "busybox", path]).ok();
    kill(old, Signal::SIGCONT).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while layerdb::pins::process_alive(old.as_raw()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the old server runs on"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let listed = s.run(&["mount"]).ok().stdout;
    assert!(
        listed.contains(path),
        "the new mount is not listed: {listed}"
    );
    // The store's runtime directory holds the record, and goes with the
    // last mount: every store the tests made left one in /run before.
    let root = std::fs::canonicalize(s.root()).unwrap();
    let key = layerdb::Digest::of(root.as_os_str().as_encoded_bytes()).short();
    let runtime = std::path::Path::new("/run/strata").join(key);
    assert!(runtime.join("mounts").is_dir(), "{}", runtime.display());
    s.run(&["umount", path]).ok();
    assert!(!runtime.exists(), "{} is left", runtime.display());
}

/// docker logs gives each line back to the stream it came from, with its
/// time under `-t`, and only the lines of `--since`/`--until`'s span.
#[test]
fn logs_keep_the_streams_apart_with_their_times() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "streams",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; sleep 1.2; echo late; printf 'no end'",
    ])
    .ok();
    let all = s.run(&["logs", "streams"]).ok();
    assert_eq!(all.stdout, "out\nlate\nno end");
    assert_eq!(all.stderr, "err\n");
    let timed = s.run(&["logs", "-t", "streams"]).ok();
    let times: Vec<&str> = timed
        .stdout
        .lines()
        .map(|l| l.split_once(' ').expect("a time, a space, the line").0)
        .collect();
    assert_eq!(times.len(), 3, "{}", timed.stdout);
    for t in &times {
        // RFC 3339 with nine digits of fraction, UTC: 30 characters.
        assert!(
            t.len() == 30 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
            "{t}"
        );
    }
    let (err_time, err_line) = timed.stderr.split_once(' ').expect("a time");
    assert_eq!(err_line, "err\n");
    // The span from the late line on, and the one up to the early lines
    // (fixed-width times compare as strings).
    let since = times[1];
    let until = times[0].max(err_time);
    let late = s.run(&["logs", "--since", since, "streams"]).ok();
    assert_eq!(
        (late.stdout.as_str(), late.stderr.as_str()),
        ("late\nno end", "")
    );
    let early = s.run(&["logs", "--until", until, "streams"]).ok();
    assert_eq!(
        (early.stdout.as_str(), early.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert_eq!(
        s.run(&["logs", "--since", "1h", "-n", "1", "streams"])
            .ok()
            .stdout,
        "no end"
    );
    let bad = s.run(&["logs", "--since", "yesterday", "streams"]);
    assert_eq!(bad.code, 125, "{}", bad.stderr);
    // The file `inspect` names is docker's json-file log.
    let path = s
        .run(&["inspect", "-f", "{{.LogPath}}", "streams"])
        .ok()
        .stdout;
    let log = std::fs::read_to_string(path.trim()).expect("the log file");
    let mut streams: Vec<String> = log
        .lines()
        .map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).expect("a JSON entry");
            format!(
                "{}:{}",
                entry["stream"].as_str().unwrap(),
                entry["log"].as_str().unwrap()
            )
        })
        .collect();
    // The two streams' relays run side by side: their first lines may
    // come either way round.
    streams[..2].sort_unstable();
    assert_eq!(
        streams,
        [
            "stderr:err\n",
            "stdout:out\n",
            "stdout:late\n",
            "stdout:no end"
        ]
    );
}

/// docker's `--log-driver none`: the output reaches an attached CLI and
/// is kept nowhere; `logs` says it cannot read it; another driver is
/// refused before anything is made.
#[test]
fn log_driver_none_keeps_no_log() {
    let s = Strata::with_busybox();
    let args = ["run", "--log-driver", "none", "--name", "quiet"];
    let r = s
        .run(
            &[
                &args[..],
                &["busybox", "sh", "-c", "echo out; echo err >&2"],
            ]
            .concat(),
        )
        .ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    let logs = s.run(&["logs", "quiet"]);
    assert_eq!(logs.code, 125, "{}", logs.stderr);
    assert!(
        logs.stderr.contains("does not support reading"),
        "{}",
        logs.stderr
    );
    let kind = s.run(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "quiet"]);
    assert_eq!(kind.ok().stdout, "none\n");
    let path = s
        .run(&["inspect", "-f", "{{.LogPath}}", "quiet"])
        .ok()
        .stdout;
    assert!(!std::path::Path::new(path.trim()).exists(), "{path}");
    let bad = s.run(&[
        "run",
        "--log-driver",
        "syslog",
        "--name",
        "loud",
        "busybox",
        "true",
    ]);
    assert_eq!(bad.code, 125, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("no log driver named 'syslog'"),
        "{}",
        bad.stderr
    );
    assert_eq!(
        s.run(&["ps", "-aq", "--filter", "name=loud"]).ok().stdout,
        ""
    );
}

#[test]
fn logs_rename_and_prune_work_on_detached_containers() {
    let s = Strata::with_busybox();
    let id = s
        .run(&[
            "run",
            "-d",
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "echo one; echo two",
        ])
        .ok()
        .stdout;
    let id = id.trim();
    // Wait for it to finish, by polling its state.
    for _ in 0..400 {
        if s.run(&["ps", "-q"]).ok().stdout.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(s.run(&["logs", "talker"]).ok().stdout, "one\ntwo\n");
    assert_eq!(s.run(&["logs", "-f", "talker"]).ok().stdout, "one\ntwo\n");
    s.run(&["rename", "talker", "quiet"]).ok();
    let ps = s.run(&["ps", "-a"]).ok().stdout;
    assert!(ps.contains("quiet") && !ps.contains("talker"), "{ps}");
    let r = s.run(&["rename", "quiet", "bad name"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    // One never started has no log: both forms return at once, saying
    // nothing, as docker's do.
    s.run(&["create", "--name", "mute", "busybox", "true"]).ok();
    for logs in [&["logs", "mute"][..], &["logs", "-f", "mute"]] {
        let r = s.run(logs).ok();
        assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""), "{logs:?}");
    }
    s.run(&["rm", "mute"]).ok();
    let pruned = s.run(&["container", "prune", "-f"]).ok().stdout;
    assert_eq!(
        pruned,
        format!("Deleted Containers:\n{id}\n\nTotal reclaimed space: 0B\n")
    );
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout, "");
    let pruned = s.run(&["container", "prune", "-f"]).ok().stdout;
    assert_eq!(pruned, "Total reclaimed space: 0B\n");
}

/// `image prune` and `system prune` as docker's: they ask first (only
/// `y` goes on), `image prune` takes untagged images no container and no
/// child uses (an untagged parent goes with its last child), `-a` tagged
/// ones too, and the space comes back (the store is collected).
#[test]
fn image_and_system_prune_remove_what_nothing_uses() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "base",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /one",
    ])
    .ok();
    let parent = s.run(&["commit", "base"]).ok().stdout.trim().to_string();
    s.run(&[
        "run",
        "--name",
        "kid",
        &parent,
        "sh",
        "-c",
        "head -c 300000 /dev/urandom > /two",
    ])
    .ok();
    s.run(&["commit", "kid", "kid:1"]).ok();
    s.run(&["rm", "kid", "base"]).ok();
    s.run(&["run", "--name", "user", "busybox", "true"]).ok();
    let unused = s.run(&["commit", "user"]).ok().stdout.trim().to_string();
    let ids = || s.run(&["images", "-a", "-q", "--no-trunc"]).ok().stdout;
    let before = ids();
    for answer in ["n\n", "", "maybe\n"] {
        let r = s.run_stdin(&["image", "prune"], answer.as_bytes());
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            r.stdout,
            "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
        );
        assert_eq!(ids(), before, "declined with {answer:?}");
    }
    // Only the unused commit: the untagged parent has a tagged child.
    let r = s.run_stdin(&["image", "prune"], b"y\n").ok();
    assert!(
        r.stdout.ends_with(&format!(
            "Deleted Images:\ndeleted: {unused}\n\nTotal reclaimed space: 0B\n"
        )),
        "{}",
        r.stdout
    );
    assert!(ids().contains(&parent), "the parent of kid:1 went");
    // Untagged, kid:1 leaves its parent unused too.
    s.run(&["tag", "kid:1", "keep:1"]).ok();
    s.run(&["rmi", "kid:1", "keep:1"]).ok();
    let r = s.run(&["image", "prune", "-f"]).ok();
    assert!(
        r.stdout.contains(&format!("deleted: {parent}\n")),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.ends_with("Total reclaimed space: 0B\n"),
        "{}",
        r.stdout
    );
    assert!(!ids().contains(&parent));
    // busybox is tagged and `user` uses it: -a keeps it while `user` is.
    let r = s.run(&["image", "prune", "-a", "-f"]).ok();
    assert_eq!(r.stdout, "Total reclaimed space: 0B\n");
    let r = s.run(&["system", "prune", "-a", "-f"]).ok();
    assert!(
        r.stdout.starts_with("Deleted Containers:\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("\n\nDeleted Images:\nuntagged: busybox:latest\ndeleted: sha256:"),
        "{}",
        r.stdout
    );
    assert_eq!(ids(), "");
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout, "");
    s.run(&["verify"]).ok();
}

#[test]
fn mount_of_a_container_shows_its_changes_over_its_image() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "mc",
        "busybox",
        "sh",
        "-c",
        "echo mine > /mine; rm /bin/vi",
    ])
    .ok();
    let dir = s.path("cmnt");
    s.run(&["mount", "mc", dir.to_str().unwrap()]).ok();
    let mine = std::fs::read_to_string(dir.join("mine"));
    let vi = dir.join("bin/vi").exists();
    s.run(&["umount", dir.to_str().unwrap()]).ok();
    assert_eq!(mine.unwrap(), "mine\n");
    assert!(!vi, "the deleted file shows through");
}

/// `mount` of a running container prints its own tree, which its monitor
/// serves: `umount` of that path, or of the container, leaves it.
#[test]
fn umount_leaves_a_running_containers_own_tree() {
    let s = Strata::with_busybox();
    let run = ["run", "-d", "--network", "none", "--rm", "--name", "up"];
    s.run(&[&run[..], &["busybox", "sleep", "1000"]].concat())
        .ok();
    let tree = s.run(&["mount", "up"]).ok().stdout;
    let tree = std::path::Path::new(tree.trim());
    s.run(&["umount", tree.to_str().unwrap()])
        .refused_with("a running container's own tree");
    s.run(&["umount", "up"]).refused_with("up is not mounted");
    assert!(tree.join("bin/busybox").exists());
    // Its end unmounts it, and `--rm` removes it.
    s.run(&["stop", "-t", "0", "up"]).ok();
    assert_eq!(s.run(&["ps", "-aq"]).ok().stdout, "");
}

/// `rm -f` of a container whose `run --rm` client is attached: the kill
/// makes the client remove it too, and whichever comes first, `rm -f`
/// has done what was asked (it said "No such container" when the client
/// won, found by the review).
#[test]
fn rm_f_of_a_container_its_run_rm_client_also_removes_succeeds() {
    let s = Strata::with_busybox();
    for round in 0..10 {
        let name = format!("both{round}");
        let mut client = s
            .cmd(&["run", "--rm", "--name", &name, "busybox", "sleep", "30"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !s
            .run(&["ps", "-q"])
            .ok()
            .stdout
            .contains(char::is_alphanumeric)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let r = s.run(&["rm", "-f", &name]);
        let _ = client.wait();
        assert_eq!(
            (r.code, r.stdout.trim()),
            (0, name.as_str()),
            "round {round}: {}",
            r.stderr
        );
    }
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout, "");
}

#[test]
fn a_detached_container_run_with_rm_is_removed_when_it_exits() {
    let s = Strata::with_busybox();
    let id = s
        .run(&["run", "-d", "--rm", "busybox", "sleep", "0.2"])
        .ok()
        .stdout;
    let dir = s.root().join("containers").join(id.trim());
    for _ in 0..400 {
        if s.run(&["ps", "-a", "-q"]).ok().stdout.is_empty() && !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!(
        "the --rm container is still there: {}",
        s.run(&["ps", "-a"]).stdout
    );
}

#[test]
fn etc_files_the_image_has_are_bound_over_without_a_copy_up() {
    let s = Strata::with_busybox();
    // busybox plus /etc/hosts, /etc/hostname and /etc/resolv.conf of its own.
    s.run(&["run", "--name", "base", "busybox", "true"]).ok();
    let tar = s.path("base.tar");
    s.run(&["export", "-o", tar.to_str().unwrap(), "base"]).ok();
    let tree = s.path("tree");
    std::fs::create_dir(&tree).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&tree)
        .status()
        .expect("tar runs");
    assert!(untar.success());
    for f in ["hosts", "hostname", "resolv.conf"] {
        std::fs::write(tree.join("etc").join(f), "from the image\n").unwrap();
    }
    s.run(&["import", tree.to_str().unwrap(), "withetc"]).ok();
    let out = s
        .run(&[
            "run",
            "--name",
            "withetc-run",
            "-h",
            "box",
            "withetc",
            "cat",
            "/etc/hostname",
        ])
        .ok()
        .stdout;
    assert_eq!(
        out, "box\n",
        "the container's own /etc/hostname is bound over the image's"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&s.run(&["inspect", "withetc-run"]).ok().stdout).unwrap();
    let id = inspect[0]["Id"].as_str().unwrap();
    let upper_etc = s.root().join("containers").join(id).join("upper/etc");
    for f in ["hosts", "hostname", "resolv.conf"] {
        assert!(!upper_etc.join(f).exists(), "/etc/{f} was copied up");
    }
    assert_eq!(s.run(&["diff", "withetc-run"]).ok().stdout, "");
}

/// Starts and restarts of one container at once take turns, as docker's
/// daemon makes them: each succeeds, and the container runs after them.
/// Before, the second start found the container the first had started
/// and failed to record a start of its own.
#[test]
fn starts_and_restarts_of_one_container_at_once_all_succeed() {
    let s = Strata::with_busybox();
    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    s.run(&["create", "--name", "busy", "busybox", "sh", "-c", script])
        .ok();
    for verbs in [
        ["start", "start"],
        ["restart", "restart"],
        ["restart", "start"],
    ] {
        let children: Vec<_> = verbs
            .iter()
            .map(|verb| {
                let args: &[&str] = match *verb {
                    "start" => &["start", "busy"],
                    _ => &["restart", "-t", "1", "busy"],
                };
                s.cmd(args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{verbs:?}: {stderr}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "busy\n", "{verbs:?}");
        }
        let r = s.run(&["exec", "busy", "true"]);
        assert_eq!(r.code, 0, "{verbs:?}: running after: {}", r.stderr);
    }
    s.run(&["rm", "-f", "busy"]).ok();
    s.run(&["verify"]).ok();
}

/// `restart` stops a container as `stop` does and starts it again; the
/// container verbs have their `container` forms, as docker's do.
#[test]
fn restart_runs_the_container_again_and_container_forms_work() {
    let s = Strata::with_busybox();
    let script = "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done";
    s.run(&[
        "run", "-d", "--name", "again", "busybox", "sh", "-c", script,
    ])
    .ok();
    assert_eq!(s.run(&["restart", "again"]).ok().stdout, "again\n");
    let r = s.run(&["container", "exec", "again", "echo", "in"]).ok();
    assert_eq!(r.stdout, "in\n", "running after restart");
    let status = [
        "inspect",
        "-f",
        "{{.State.Status}} {{json .Config.Cmd}}",
        "again",
    ];
    let r = s.run(&status).ok();
    assert_eq!(r.stdout, format!("running [\"sh\",\"-c\",{script:?}]\n"));
    // The second run's echo, before the stop could end it unsaid.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.run(&["container", "logs", "again"]).ok().stdout != "started\nstarted\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted container's log"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A negative timeout waits for the container however long it takes,
    // as docker's daemon does; it exits on the TERM with its own code.
    let r = s
        .run(&["container", "stop", "--timeout", "-1", "again"])
        .ok();
    assert_eq!(r.stdout, "again\n");
    let r = s
        .run(&["inspect", "-f", "{{.State.ExitCode}}", "again"])
        .ok();
    assert_eq!(r.stdout, "0\n", "stopped by its TERM, not killed");
    let r = s.run(&["logs", "--tail", "1", "again"]).ok();
    assert_eq!(r.stdout, "started\n");
    let r = s.run(&["logs", "--tail", "-1", "again"]).ok();
    assert_eq!(
        r.stdout, "started\nstarted\n",
        "a negative tail is every line"
    );
    let r = s.run(&["logs", "-n", "x", "again"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    let r = s
        .run(&["ps", "-a", "--format", "{{.Names}} {{.State}}"])
        .ok();
    assert_eq!(r.stdout, "again exited\n");
    // docker's --filter: a status filter shows stopped ones without -a,
    // names match as regular expressions (with docker's leading /).
    let names = |filters: &[&str]| {
        let mut args = vec!["ps", "--format", "{{.Names}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        s.run(&args).ok().stdout
    };
    assert_eq!(names(&["status=exited"]), "again\n");
    assert_eq!(names(&["status=exited", "name=^/ag"]), "again\n");
    assert_eq!(names(&["status=exited", "name=^/gain"]), "");
    assert_eq!(names(&["status=running"]), "");
    // ancestor=: the image or one built on it.
    s.run(&["commit", "again", "child:1"]).ok();
    s.run(&["create", "--name", "kid", "child:1", "true"]).ok();
    assert_eq!(names(&["status=exited", "ancestor=child:1"]), "");
    assert_eq!(names(&["status=created", "ancestor=busybox"]), "kid\n");
    assert_eq!(names(&["status=created", "ancestor=child:1"]), "kid\n");
    assert_eq!(names(&["status=created", "ancestor=nosuchimage"]), "");
    // before= and since= by creation (a name that is no container is an
    // error); -n and -l count every state.
    assert_eq!(names(&["status=created", "since=again"]), "kid\n");
    assert_eq!(names(&["status=exited", "before=kid"]), "again\n");
    assert_eq!(names(&["status=exited", "since=again"]), "");
    assert_eq!(s.run(&["ps", "--filter", "before=nosuch"]).code, 125);
    let last = |flags: &[&str]| {
        let mut args = vec!["ps", "--format", "{{.Names}}"];
        args.extend_from_slice(flags);
        s.run(&args).ok().stdout
    };
    assert_eq!(last(&["-l"]), "kid\n");
    assert_eq!(last(&["-n", "2"]), "kid\nagain\n");
    assert_eq!(last(&["-n", "1", "--filter", "before=kid"]), "again\n");
    // And images: the image committed from `again` is newer than busybox.
    let repos = |filter: &str| {
        let args = ["images", "--format", "{{.Repository}}", "--filter", filter];
        s.run(&args).ok().stdout
    };
    assert_eq!(repos("since=busybox"), "child\n");
    assert_eq!(repos("before=child:1"), "busybox\n");
    assert_eq!(s.run(&["images", "--filter", "since=nosuch"]).code, 125);
    s.run(&["rm", "kid"]).ok();
    let r = s.run(&["ps", "--filter", "nosuch=1"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("invalid filter 'nosuch'"), "{}", r.stderr);
    let r = s
        .run(&["ps", "-a", "--format", "table {{.Names}}\\t{{.Image}}"])
        .ok();
    assert_eq!(r.stdout, "NAMES     IMAGE\nagain     busybox\n");
    s.run(&["container", "restart", "again"]).ok();
    s.run(&["container", "rename", "again", "renamed"]).ok();
    s.run(&["container", "kill", "renamed"]).ok();
    s.run(&["container", "start", "renamed"]).ok();
    s.run(&["rm", "-f", "renamed"]).ok();
    // docker keeps an --rm container across a restart.
    s.run(&[
        "run", "-d", "--rm", "--name", "kept", "busybox", "sleep", "60",
    ])
    .ok();
    assert_eq!(s.run(&["restart", "-t", "1", "kept"]).ok().stdout, "kept\n");
    let r = s.run(&["exec", "kept", "true"]);
    assert_eq!(r.code, 0, "running after restart: {}", r.stderr);
    s.run(&["rm", "-f", "kept"]).ok();
    s.run(&["restart", "nosuch"])
        .failed_with("No such container: nosuch");
}

/// docker keeps a `-di` container's stdin open (a pipe no one writes), so
/// `sh` waits on it instead of exiting at once; `-d` alone gives /dev/null.
#[test]
fn a_detached_interactive_container_keeps_its_stdin_open() {
    let s = Strata::with_busybox();
    s.run(&["run", "-di", "--name", "open-stdin", "busybox", "sh"])
        .ok();
    s.run(&["run", "-d", "--name", "no-stdin", "busybox", "sleep", "60"])
        .ok();
    let stdin_of = |name: &str| {
        s.run(&["exec", name, "readlink", "/proc/1/fd/0"])
            .ok()
            .stdout
    };
    assert!(stdin_of("open-stdin").starts_with("pipe:"), "sh's stdin");
    // The host's /dev/null, opened before the container's root was.
    assert!(stdin_of("no-stdin").ends_with("null\n"), "sleep's stdin");
    let r = s.run(&["exec", "open-stdin", "true"]);
    assert_eq!(r.code, 0, "the container is still running: {}", r.stderr);
    s.run(&["rm", "-f", "open-stdin", "no-stdin"]).ok();
}

/// docker's IMAGE column: the name the container was made from while it
/// still means that image, else the image's id.
#[test]
fn ps_shows_the_image_id_once_the_name_means_another_image() {
    let s = Strata::with_busybox();
    s.run(&["tag", "busybox", "mine:1"]).ok();
    s.run(&["create", "--name", "cc", "mine:1", "true"]).ok();
    let image_column = |args: &[&str]| {
        let out = s.run(args).ok().stdout;
        let row = out.lines().nth(1).expect("a row").to_string();
        row.split_whitespace().nth(1).expect("IMAGE").to_string()
    };
    assert_eq!(image_column(&["ps", "-a"]), "mine:1");
    let id = s
        .run(&["images", "-q", "--no-trunc", "busybox"])
        .ok()
        .stdout;
    let id = id.trim();
    let other = TarMaker::new().file("f", b"x").write(&s.path("other.tar"));
    s.import(&other, "mine:1");
    assert_eq!(image_column(&["ps", "-a"]), id["sha256:".len()..][..12]);
    assert_eq!(image_column(&["ps", "-a", "--no-trunc"]), id);
}

#[test]
fn create_records_a_container_that_start_runs_later() {
    let s = Strata::with_busybox();
    let id = s
        .run(&[
            "create",
            "--name",
            "later",
            "-e",
            "X=1",
            "busybox",
            "sh",
            "-c",
            "echo hi $X; exit 3",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "create prints the full id: {id:?}"
    );
    let ps = s.run(&["ps", "-a"]).ok().stdout;
    assert!(ps.contains(&id[..12]) && ps.contains("Created"), "{ps}");
    let r = s.run(&["start", "-a", "later"]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "hi 1\n"), "{}", r.stderr);
    assert!(s.run(&["ps", "-a"]).ok().stdout.contains("Exited (3)"));
    // `container create` too, and run's checks before anything is made.
    s.run(&["container", "create", "busybox", "true"]).ok();
    for (args, expect) in [
        (
            vec!["create", "--name", "later", "busybox", "true"],
            "Conflict. The container name \"/later\" is already in use",
        ),
        (
            vec!["create", "--pull=never", "nosuchimage"],
            "No such image: nosuchimage:latest",
        ),
    ] {
        let r = s.run(&args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{args:?}: {}", r.stderr);
    }
    assert_eq!(s.run(&["ps", "-a", "-q"]).ok().stdout.lines().count(), 2);
    s.run(&["verify"]).ok();
}

/// A start that fails records its code as the container's, as docker's
/// daemon does (127: the command is gone), and leaves the last run's
/// times; `start -a` says why in one line, with no log line of the
/// monitor's.
#[test]
fn a_failed_start_of_an_exited_container_records_its_exit_code() {
    let s = Strata::with_busybox();
    let rm_itself = ["/bin/busybox", "rm", "/bin/busybox"];
    let mut args = vec!["run", "--network", "none", "--name", "gone", "busybox"];
    args.extend(rm_itself);
    s.run(&args).ok();
    let inspect = |format: &str| s.run(&["inspect", "-f", format, "gone"]).ok().stdout;
    let times = "{{.State.StartedAt}} {{.State.FinishedAt}}";
    let last_run = inspect(times);
    // A second later, so a time taken at the failed start would differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_ne!(s.run(&["start", "gone"]).code, 0);
    assert_eq!(
        inspect("{{.State.Status}} {{.State.ExitCode}}"),
        "exited 127\n"
    );
    assert_eq!(inspect(times), last_run);
    assert_eq!(s.run(&["wait", "gone"]).ok().stdout, "127\n");
    let ps = s.run(&["ps", "-a"]).ok().stdout;
    assert!(ps.contains("Exited (127)"), "{ps}");
    let r = s.run(&["start", "-a", "gone"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no such file or directory"),
        "{}",
        r.stderr
    );
}

#[test]
fn stop_sends_a_realtime_stop_signal_that_commit_accepted() {
    let s = Strata::with_busybox();
    s.run(&["run", "--name", "base", "busybox", "true"]).ok();
    s.run(&["commit", "-c", "STOPSIGNAL RTMIN+3", "base", "rt-stop"])
        .ok();
    // RTMIN+3 is signal 37 (docker's numbering); pid 1 ignores a signal it
    // has no handler for, so the trap is what proves it arrived.
    s.run(&[
        "run",
        "-d",
        "--name",
        "trapper",
        "rt-stop",
        "sh",
        "-c",
        "trap 'echo got 37; exit 3' 37; echo ready; while true; do sleep 1; done",
    ])
    .ok();
    for _ in 0..400 {
        if s.run(&["logs", "trapper"]).ok().stdout.contains("ready") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    s.run(&["stop", "-t", "30", "trapper"]).ok();
    let logs = s.run(&["logs", "trapper"]).ok().stdout;
    assert!(logs.contains("got 37"), "{logs}");
    s.run(&["rm", "trapper", "base"]).ok();
}

#[test]
fn rmi_of_a_used_image_and_rename_to_a_taken_name_fail_with_dockers_messages() {
    let s = Strata::with_busybox();
    let a = s
        .run(&["create", "--name", "first", "busybox", "true"])
        .ok();
    let b = s
        .run(&["create", "--name", "second", "busybox", "true"])
        .ok();
    for taken in ["second", "/second"] {
        let r = s.run(&["rename", "first", taken]);
        assert_eq!(r.code, 125, "{}", r.stderr);
        let whole = format!("Error when allocating new name: Conflict. The container name \"/second\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", b.stdout.trim());
        assert!(r.stderr.contains(&whole), "{}", r.stderr);
    }
    let r = s.run(&["rename", "first", "first"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Renaming a container with the same name as its current name"),
        "{}",
        r.stderr
    );
    let r = s.run(&["rmi", "busybox"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    // Either container may be the one docker's message names.
    let named = [&a, &b].map(|c| {
        format!("conflict: unable to remove repository reference \"busybox\" (must force) - image is being used by container {}", &c.stdout.trim()[..12])
    });
    assert!(named.iter().any(|n| r.stderr.contains(n)), "{}", r.stderr);
    assert_eq!(s.run(&["images", "-q"]).ok().stdout.lines().count(), 1);
}

#[test]
fn of_containers_created_at_once_under_one_name_one_gets_it() {
    let s = Strata::with_busybox();
    let creates: Vec<std::process::Child> = (0..4)
        .map(|_| {
            s.cmd(&["create", "--name", "same", "busybox", "true"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<std::process::Output> = creates
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outputs:?}");
    for o in outputs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("Conflict. The container name \"/same\" is already in use"),
            "{err}"
        );
    }
    let ps = s.run(&["ps", "-a"]).ok().stdout;
    let rows: Vec<&str> = ps.lines().skip(1).collect();
    assert!(rows.len() == 1 && rows[0].ends_with(" same"), "{ps}");
    // The losers left no directory behind.
    let dirs = std::fs::read_dir(s.root().join("containers"))
        .unwrap()
        .count();
    assert_eq!(dirs, 1);
}

/// A write into a big file of the image copies only the blocks it touches
/// (issue 13 item 6), and everything that reads the container afterwards
/// sees the whole file with the change: a restart, diff, export and a
/// commit run as a new container.
#[test]
fn a_write_into_a_big_image_file_copies_little_and_everything_sees_the_whole_file() {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let s = Strata::with_busybox();
    let mut data = common::noise(40 << 20, 3);
    s.run_stdin(
        &[
            "run",
            "-i",
            "--name",
            "mk",
            "busybox",
            "sh",
            "-c",
            "cat > /big",
        ],
        &data,
    )
    .ok();
    s.run(&["commit", "mk", "big:1"]).ok();
    let at = 12_345_678;
    let write = format!("printf x | dd of=/big bs=1 seek={at} conv=notrunc 2>/dev/null");
    s.run(&["run", "--name", "writer", "big:1", "sh", "-c", &write])
        .ok();
    data[at] = b'x';
    let want = format!("{:x}", sha2::Sha256::digest(&data));

    let inspect: serde_json::Value =
        serde_json::from_str(&s.run(&["inspect", "writer"]).ok().stdout).unwrap();
    let upper = inspect[0]["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap();
    let host = std::path::Path::new(upper).join("big");
    let used = std::fs::metadata(&host).unwrap().blocks() * 512;
    assert!(
        used <= 4 << 20,
        "the upper holds {used} bytes of a 40 MiB file"
    );

    let sum = "sha256sum /big | cut -d' ' -f1";
    s.run(&["start", "writer"]).ok();
    assert_eq!(s.run(&["diff", "writer"]).ok().stdout, "C /big\n");
    let exported = s.cmd(&["export", "writer"]).output().unwrap();
    assert!(
        exported.status.success(),
        "export: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let mut tar = tar::Archive::new(&exported.stdout[..]);
    let mut found = false;
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_path_buf();
        if path.file_name() == Some("big".as_ref()) && path.components().count() <= 2 {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut got).unwrap();
            assert!(got == data, "export gives the whole file with the write");
            found = true;
        }
    }
    assert!(found, "export has /big");
    s.run(&["commit", "writer", "big:2"]).ok();
    let r = s.run(&["run", "--rm", "big:2", "sh", "-c", sum]).ok();
    assert_eq!(r.stdout.trim(), want, "the commit holds the whole file");
}

#[test]
fn pause_freezes_a_container_until_unpause_and_stop_still_ends_it() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "-d",
        "--name",
        "cnt",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; i=0; while true; do i=$((i+1)); echo $i > /c; sleep 0.05; done",
    ])
    .ok();
    // The counter, read without exec (refused while paused).
    let count = || {
        let out = s.cmd(&["cp", "cnt:/c", "-"]).output().unwrap();
        let mut tar = tar::Archive::new(&out.stdout[..]);
        let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        text.trim().parse::<u64>().unwrap()
    };
    for _ in 0..100 {
        if s.run(&["exec", "cnt", "test", "-s", "/c"]).code == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(s.run(&["pause", "cnt"]).ok().stdout, "cnt\n");
    let frozen = count();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(count(), frozen, "the counter ran on while paused");
    let ps = s.run(&["ps", "--format", "{{.Status}}"]).ok().stdout;
    assert!(ps.trim().ends_with("(Paused)"), "{ps}");
    let state = s.run(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Paused}}",
        "cnt",
    ]);
    assert_eq!(state.ok().stdout, "paused true\n");
    s.run(&["pause", "cnt"]).failed_with("is already paused");
    s.run(&["exec", "cnt", "true"])
        .refused_with("is paused, unpause the container before exec");
    s.run(&["start", "cnt"])
        .failed_with("cannot start a paused container, try unpause instead");
    // A commit neither needs nor ends the pause.
    s.run(&["commit", "cnt", "snap"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(count(), frozen, "the commit unpaused the container");
    assert_eq!(s.run(&["unpause", "cnt"]).ok().stdout, "cnt\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count() == frozen {
        assert!(
            std::time::Instant::now() < deadline,
            "unpause left it frozen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    s.run(&["unpause", "cnt"]).failed_with("is not paused");
    // stop of a paused container: the signal, then the thaw that lets it
    // act on it (its trap exits 7, not the KILL's 137).
    s.run(&["pause", "cnt"]).ok();
    s.run(&["stop", "-t", "20", "cnt"]).ok();
    let status = s.run(&["inspect", "-f", "{{.State.ExitCode}}", "cnt"]);
    assert_eq!(status.ok().stdout, "7\n");
    s.run(&["pause", "cnt"]).failed_with("is not running");
    s.run(&["unpause", "cnt"]).failed_with("is not paused");
}

/// docker's verbs of several containers act on each one there is and say
/// which are not, a line each on stderr, then exit 1: a missing name given
/// first no longer keeps the others from being acted on.
#[test]
fn verbs_of_several_containers_act_on_each_and_report_the_missing() {
    let s = Strata::with_busybox();
    let create = ["create", "--network", "none", "--name", "c11", "busybox"];
    s.run(&[&create[..], &["sleep", "1000"]].concat()).ok();
    let status = || {
        let format = "{{.State.Status}} {{.State.ExitCode}}";
        s.run(&["inspect", "-f", format, "c11"]).ok().stdout
    };
    let missing = "Error response from daemon: No such container: nosuch";
    // The stop signal is lost on a pid 1 without a handler: -t 1, then
    // the KILL.
    for (verb, stdout, after) in [
        (&["start"][..], "c11\n", "running 0\n"),
        (&["pause"], "c11\n", "paused 0\n"),
        (&["unpause"], "c11\n", "running 0\n"),
        (&["kill"], "c11\n", "exited 137\n"),
        (&["restart"], "c11\n", "running 0\n"),
        (&["stop", "-t", "1"], "c11\n", "exited 137\n"),
        (&["wait"], "137\n", "exited 137\n"),
    ] {
        let r = s.run(&[verb, &["nosuch", "c11"]].concat());
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (1, stdout),
            "{verb:?}: {}",
            r.stderr
        );
        let mut said = vec![missing];
        if verb[0] == "start" {
            said.push("Error: failed to start containers: nosuch");
        }
        assert_eq!(r.stderr.lines().collect::<Vec<_>>(), said, "{verb:?}");
        assert_eq!(status(), after, "{verb:?}");
    }
}

#[test]
fn wait_port_and_top_answer_as_dockers_do() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "-d",
        "--name",
        "svc",
        "-p",
        "127.0.0.1::80",
        "-p",
        "81/udp",
        "busybox",
        "sh",
        "-c",
        "sleep 600 & echo started > /s; wait",
    ])
    .ok();
    // port: every mapping, or the host addresses of one.
    let all = s.run(&["port", "svc"]).ok().stdout;
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2, "{all}");
    assert!(lines[0].starts_with("80/tcp -> 127.0.0.1:"), "{all}");
    assert!(lines[1].starts_with("81/udp -> 0.0.0.0:"), "{all}");
    let tcp = s.run(&["port", "svc", "80"]).ok().stdout;
    assert_eq!(format!("80/tcp -> {tcp}"), format!("{}\n", lines[0]));
    s.run(&["port", "svc", "82"])
        .refused_with("No public port '82/tcp' published for svc");
    // top: ps's lines for the container's processes alone, with its options.
    let top = s.run(&["top", "svc"]).ok().stdout;
    let mut rows = top.lines();
    assert!(rows.next().unwrap().contains("PID"), "{top}");
    let commands: Vec<&str> = rows.map(|l| l.rsplit(':').next().unwrap()).collect();
    assert_eq!(commands.len(), 2, "{top}");
    assert!(commands.iter().any(|c| c.contains("sleep 600")), "{top}");
    let top = s.run(&["top", "svc", "-o", "pid,comm"]).ok().stdout;
    assert_eq!(
        top.lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect::<Vec<_>>(),
        ["sh", "sleep"]
    );
    // wait: blocks until the container stops, prints its code.
    let mut waiter = s
        .cmd(&["wait", "svc"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "wait returned while the container ran"
    );
    s.run(&["kill", "-s", "TERM", "svc"]).ok();
    s.run(&["kill", "svc"]).ok();
    common::wait_bounded(&mut waiter, std::time::Duration::from_secs(20), "wait");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut waiter.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out, "137\n");
    s.run(&["create", "--name", "never", "busybox", "true"])
        .ok();
    s.run(&["run", "--name", "three", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(s.run(&["wait", "never", "three"]).ok().stdout, "0\n3\n");
    s.run(&["top", "three"]).refused_with("is not running");
    assert_eq!(s.run(&["port", "three"]).ok().stdout, "");
}

/// Whether a process whose command line names `id` runs (a container's
/// `__launch`, monitor or keeper).
fn runs_for(id: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(id))
    })
}

#[test]
fn stop_and_rm_between_two_runs_of_a_restart_policy_leave_nothing_running() {
    let s = Strata::with_busybox();
    let flags = s.path("flags");
    std::fs::create_dir_all(&flags).unwrap();
    let volume = format!("{}:/f", flags.display());
    // The first run exits at once; the keeper starts it again ~100 ms
    // later, and that run stays. A stop or rm that read "exited" just
    // before the relaunch returned, and the container ran on (after rm,
    // with no record left to find it by).
    let script = "[ -e /f/$HOSTNAME ] && exec sleep 1000; touch /f/$HOSTNAME";
    for round in 0..16u64 {
        let name = format!("r{round}");
        let id = s
            .run(&[
                "run",
                "-d",
                "--name",
                &name,
                "--restart",
                "always",
                "-v",
                &volume,
                "busybox",
                "sh",
                "-c",
                script,
            ])
            .ok()
            .stdout
            .trim()
            .to_string();
        std::thread::sleep(std::time::Duration::from_millis(70 + 5 * round));
        if round % 2 == 0 {
            s.run(&["rm", "-f", &name]).ok();
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(
                !runs_for(&id),
                "round {round}: a process of the removed container runs on"
            );
        } else {
            s.run(&["stop", "-t", "1", &name]).ok();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let state = s
                .run(&["inspect", "-f", "{{.State.Status}}", &name])
                .ok()
                .stdout;
            assert_eq!(state, "exited\n", "round {round}: running again after stop");
            s.run(&["rm", &name]).ok();
        }
    }
}

#[test]
fn a_restart_policy_starts_the_container_again_until_stopped_by_hand() {
    let s = Strata::with_busybox();
    let inspect = |name: &str, format: &str| s.run(&["inspect", "-f", format, name]).ok().stdout;
    let settle = |name: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{name} never settled");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // on-failure:2: two restarts of a failing command, then it stays
    // exited; each run's output is in the one log.
    s.run(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo ran; exit 3",
    ])
    .ok();
    settle("flaky", &|| {
        inspect("flaky", "{{.RestartCount}}") == "2\n" && !keeper_alive(&s)
    });
    assert_eq!(
        inspect("flaky", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 3\n"
    );
    assert_eq!(s.run(&["logs", "flaky"]).ok().stdout, "ran\nran\nran\n");
    assert_eq!(
        inspect("flaky", "{{json .HostConfig.RestartPolicy}}"),
        "{\"MaximumRetryCount\":2,\"Name\":\"on-failure\"}\n"
    );
    // on-failure leaves a success alone.
    s.run(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ])
    .ok();
    settle("fine", &|| !keeper_alive(&s));
    assert_eq!(
        inspect("fine", "{{.RestartCount}} {{.State.Status}}"),
        "0 exited\n"
    );
    // always: restarted until stop; a
    // start by hand counts from zero again, and rm -f ends it for good.
    s.run(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ])
    .ok();
    settle("loop", &|| {
        inspect("loop", "{{.RestartCount}}")
            .trim()
            .parse::<u32>()
            .unwrap()
            >= 3
    });
    s.run(&["stop", "loop"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let stopped = inspect("loop", "{{.RestartCount}} {{.State.Status}}");
    assert!(stopped.ends_with(" exited\n"), "{stopped}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        inspect("loop", "{{.RestartCount}} {{.State.Status}}"),
        stopped,
        "restarted after stop"
    );
    assert!(!keeper_alive(&s), "the keeper outlived stop");
    s.run(&["start", "loop"]).ok();
    settle("loop", &|| inspect("loop", "{{.RestartCount}}") == "1\n");
    s.run(&["rm", "-f", "loop"]).ok();
    settle("loop", &|| !keeper_alive(&s));
    // Refusals, before anything is made.
    s.run(&["run", "--rm", "--restart", "always", "busybox", "true"])
        .refused_with("conflicting options: cannot specify both --restart and --rm");
    s.run(&["run", "--restart", "always:3", "busybox", "true"])
        .refused_with("maximum retry count can only be used with 'on-failure'");
    s.run(&["run", "--restart", "sometimes", "busybox", "true"])
        .refused_with("unknown policy 'sometimes'");
    assert_eq!(s.run(&["ps", "-aq"]).ok().stdout.lines().count(), 2);
}

/// A start that fails is not made again by the container's restart
/// policy, whether the keeper or a start by hand made it: docker restarts
/// only what ran, and its restart manager gives up once a start fails.
#[test]
fn a_restart_policy_leaves_a_container_whose_start_failed() {
    let s = Strata::with_busybox();
    let inspect = || {
        let format = "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}";
        s.run(&["inspect", "-f", format, "gone"]).ok().stdout
    };
    let settled = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while keeper_alive(&s) {
            assert!(
                std::time::Instant::now() < deadline,
                "the keeper starts it again and again: {}",
                inspect()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // Its first run removes its command: the restart that follows fails.
    let mut run = vec!["run", "-d", "--network", "none", "--restart", "always"];
    run.extend([
        "--name",
        "gone",
        "busybox",
        "/bin/busybox",
        "rm",
        "/bin/busybox",
    ]);
    s.run(&run).ok();
    settled();
    assert_eq!(inspect(), "exited 127 1\n");
    // A start by hand that fails: the count starts over, nothing follows.
    assert_ne!(s.run(&["start", "gone"]).code, 0);
    settled();
    assert_eq!(inspect(), "exited 127 0\n");
}

/// Whether a restart keeper of this store's containers still runs.
fn keeper_alive(s: &Strata) -> bool {
    let root = s.root();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|cmd| {
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.contains(&&b"__keep"[..]) && args.contains(&root.as_os_str().as_encoded_bytes())
        })
    })
}

#[test]
fn volumes_are_seeded_from_the_image_shared_and_kept_apart_from_commits() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "mk",
        "busybox",
        "sh",
        "-c",
        "mkdir /data && echo seed > /data/f && chown -R 33:44 /data && chmod 750 /data",
    ])
    .ok();
    s.run(&["commit", "-c", "VOLUME /data", "mk", "seeded"])
        .ok();
    // A named volume starts as the image's directory (owner, mode,
    // content) and keeps what a container writes for the next one.
    let first = s.run(&[
        "run",
        "--rm",
        "-v",
        "db:/data",
        "seeded",
        "sh",
        "-c",
        "cat /data/f; echo more > /data/g; stat -c '%u:%g %a' /data",
    ]);
    assert_eq!(first.ok().stdout, "seed\n33:44 750\n");
    let data = s.root().join("volumes/db/_data");
    assert_eq!(std::fs::read_to_string(data.join("g")).unwrap(), "more\n");
    let again = s.run(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=db,dst=/x,ro",
        "busybox",
        "sh",
        "-c",
        "cat /x/g; touch /x/h",
    ]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert_eq!(again.stdout, "more\n");
    // A volume holding anything is left as it is; an empty one is seeded
    // again at the next start (docker's rule).
    std::fs::remove_file(data.join("f")).unwrap();
    let ls = |s: &Strata| s.run(&["run", "--rm", "-v", "db:/data", "seeded", "ls", "/data"]);
    assert_eq!(ls(&s).ok().stdout, "g\n");
    std::fs::remove_file(data.join("g")).unwrap();
    assert_eq!(ls(&s).ok().stdout, "f\n");
    // The image's VOLUME gets an anonymous volume: what goes there is
    // never committed, and `rm -v` (or `--rm`) removes it.
    s.run(&[
        "run",
        "--name",
        "anon",
        "seeded",
        "sh",
        "-c",
        "echo mine > /data/m; echo up > /top",
    ])
    .ok();
    let mounts = s.run(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}",
        "anon",
    ]);
    assert_eq!(mounts.ok().stdout, "volume /data\n");
    s.run(&["commit", "anon", "after"]).ok();
    // `-v /data` makes one too, which `--rm` removes with its container.
    s.run(&["run", "--rm", "-v", "/data", "busybox", "true"])
        .ok();
    let listed = s
        .run(&["run", "--rm", "after", "sh", "-c", "cat /top; ls /data"])
        .ok()
        .stdout;
    assert_eq!(listed, "up\nf\n", "the commit took the volume's content");
    assert_eq!(
        s.run(&["volume", "ls", "-q"]).ok().stdout.lines().count(),
        2
    );
    s.run(&["rm", "-v", "anon"]).ok();
    assert_eq!(s.run(&["volume", "ls", "-q"]).ok().stdout, "db\n");
    // In use, a volume stays; unused, rm and prune remove it.
    s.run(&[
        "run", "-d", "--name", "user", "-v", "db:/data", "busybox", "sleep", "600",
    ])
    .ok();
    s.run(&["volume", "rm", "db"])
        .refused_with("remove db: volume is in use");
    let used = s.run(&["volume", "ls", "-q", "--filter", "dangling=false"]);
    assert_eq!(used.ok().stdout, "db\n");
    let users = s.run(&["ps", "--filter", "volume=db", "--format", "{{.Names}}"]);
    assert_eq!(users.ok().stdout, "user\n");
    s.run(&["rm", "-f", "user"]).ok();
    s.run(&["volume", "create", "spare"]).ok();
    let inspected = s.run(&["volume", "inspect", "spare"]).ok().stdout;
    assert!(inspected.contains("\"Driver\": \"local\""), "{inspected}");
    s.run(&["volume", "prune", "-f", "-a"]).ok();
    assert_eq!(s.run(&["volume", "ls", "-q"]).ok().stdout, "");
    s.run(&["run", "-v", "no/good:/x", "busybox", "true"])
        .refused_with("includes invalid characters for a local volume name");
    s.run(&["volume", "rm", "nothing"])
        .refused_with("get nothing: no such volume");
    // A name climbing out of the volumes directory names no volume, even
    // where a volume.json waits for it.
    let outside = s.root().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("volume.json"),
        br#"{"created_ns":0,"anonymous":false}"#,
    )
    .unwrap();
    s.run(&["volume", "inspect", "../outside"])
        .refused_with("no such volume");
    s.run(&["volume", "rm", "../outside"])
        .refused_with("no such volume");
    assert!(outside.join("volume.json").exists());
    // An image may not put a volume over /proc (it would hide the
    // container's own, and the masking lands in the volume).
    s.run(&["create", "--name", "vb", "busybox", "true"]).ok();
    s.run(&["commit", "-c", "VOLUME /proc", "vb", "badvol"])
        .ok();
    s.run(&["run", "--rm", "badvol", "true"])
        .refused_with("the image's VOLUME /proc: invalid specification");
    // Nor through a symlink of its own; and a volume a symlink leads onto
    // a kernel file system is not seeded from it (host root once copied
    // the host's /sys/firmware into the volume).
    s.run(&[
        "run",
        "--name",
        "lk",
        "busybox",
        "sh",
        "-c",
        "ln -s /sys/firmware /fw && ln -s /proc /p",
    ])
    .ok();
    s.run(&["commit", "-c", "VOLUME /p", "lk", "linkedproc"])
        .ok();
    s.run(&["run", "--rm", "linkedproc", "true"])
        .refused_with("volume /p: invalid specification: destination can't be '/proc'");
    s.run(&["commit", "-c", "VOLUME /fw", "lk", "linkedsys"])
        .ok();
    s.run(&["run", "--rm", "-v", "fwvol:/fw", "linkedsys", "true"])
        .ok();
    let seeded = s
        .run(&["run", "--rm", "-v", "fwvol:/x", "busybox", "ls", "-A", "/x"])
        .ok();
    assert_eq!(
        seeded.stdout, "",
        "the host's /sys/firmware went into the volume"
    );
}

#[test]
fn volumes_from_shares_another_containers_volumes() {
    let s = Strata::with_busybox();
    s.run(&[
        "create", "--name", "store", "-v", "vf:/data", "-v", "/anon", "busybox", "true",
    ])
    .ok();
    s.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "store",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/f && echo a > /anon/g",
    ])
    .ok();
    let ro = s.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "store:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/f /anon/g; touch /data/x",
    ]);
    assert_eq!(ro.stdout, "hi\na\n");
    assert_ne!(ro.code, 0, "a write through :ro succeeded");
    // This container's own -v wins the place both name.
    let own = s.run(&[
        "run",
        "--rm",
        "-v",
        "mine:/data",
        "--volumes-from",
        "store",
        "busybox",
        "ls",
        "-A",
        "/data",
    ]);
    assert_eq!(own.ok().stdout, "");
    s.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "nothing",
        "busybox",
        "true",
    ])
    .refused_with("No such container: nothing");
    s.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "store:rx",
        "busybox",
        "true",
    ])
    .refused_with("invalid mode for volumes-from: rx");
}

#[test]
fn stats_shows_a_containers_use_from_its_cgroup() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=1M & sleep 600",
    ])
    .ok();
    s.run(&["create", "--name", "idle", "busybox", "true"]).ok();
    let out = s.run(&["stats", "--no-stream"]).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "running containers only: {out}");
    assert!(lines[0].starts_with("CONTAINER ID   NAME"), "{out}");
    let cells: Vec<&str> = lines[1]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[1], "busy", "{out}");
    // A process spinning for the whole second shows, whatever the load.
    let cpu: f64 = cells[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 1.0, "{out}");
    assert!(cells[3].ends_with(" / 64MiB"), "the memory limit: {out}");
    assert_eq!(
        cells.last().unwrap(),
        &"2",
        "dd, and the sleep sh became: {out}"
    );
    let all = s
        .run(&["stats", "--no-stream", "-a", "--no-trunc", "idle"])
        .ok()
        .stdout;
    let row = all.lines().nth(1).unwrap();
    let cells: Vec<&str> = row
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[0].len(), 64, "{all}");
    let rest = [
        "idle", "0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0",
    ];
    assert_eq!(cells[1..], rest, "{all}");
    s.run(&["stats", "--no-stream", "nothing"])
        .refused_with("No such container: nothing");
}

#[test]
fn run_takes_labels_a_stop_signal_exposed_ports_a_cidfile_and_shm_size() {
    let s = Strata::with_busybox();
    let labels = s.path("labels");
    std::fs::write(&labels, "# a comment\nfrom.file=1\nbare\nx=file\n").unwrap();
    let cid = s.path("cid");
    let c = cid.to_str().unwrap();
    s.run(&[
        "run",
        "-d",
        "--name",
        "flags",
        "-l",
        "x=flag",
        "-l",
        "empty",
        "--label-file",
        labels.to_str().unwrap(),
        "--stop-signal",
        "USR1",
        "--expose",
        "7000-7001/udp",
        "-P",
        "--cidfile",
        c,
        "--shm-size",
        "2m",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got usr1; exit 0' USR1; df -k /dev/shm | tail -1; while :; do sleep 0.1; done",
    ])
    .ok();
    let id = std::fs::read_to_string(&cid).unwrap();
    assert_eq!(
        s.run(&["inspect", "-f", "{{.Id}}", "flags"])
            .ok()
            .stdout
            .trim(),
        id
    );
    let shown = s.run(&[
        "inspect",
        "-f",
        "{{json .Config.Labels}} {{.Config.StopSignal}}",
        "flags",
    ]);
    let want = "{\"bare\":\"\",\"empty\":\"\",\"from.file\":\"1\",\"x\":\"flag\"} USR1\n";
    assert_eq!(shown.ok().stdout, want);
    let ports = s.run(&["port", "flags"]).ok().stdout;
    let exposed: Vec<&str> = ports
        .lines()
        .map(|l| l.split(" -> ").next().unwrap())
        .collect();
    assert_eq!(exposed, ["7000/udp", "7001/udp"], "{ports}");
    let filtered = s.run(&["ps", "--filter", "label=from.file=1", "-q"]).ok();
    assert_eq!(filtered.stdout.trim(), &id[..12]);
    // The stop signal is the one given: its trap runs, exit 0.
    s.run(&["stop", "flags"]).ok();
    assert_eq!(
        s.run(&["inspect", "-f", "{{.State.ExitCode}}", "flags"])
            .ok()
            .stdout,
        "0\n"
    );
    let log = s.run(&["logs", "flags"]).ok().stdout;
    assert!(
        log.contains(" 2048 ") && log.ends_with("got usr1\n"),
        "{log}"
    );
    // The cidfile is docker's lock: a second run with it is refused.
    s.run(&["run", "--cidfile", c, "busybox", "true"])
        .refused_with("container ID file found");
    s.run(&["run", "--stop-signal", "NOPE", "busybox", "true"])
        .refused_with("Invalid signal: NOPE");
    s.run(&["run", "--expose", "90-80", "busybox", "true"])
        .refused_with("invalid range format for --expose");
    // --platform: the image's own runs; another is refused (not pulled,
    // with --pull never), as docker refuses it.
    let arch = s
        .run(&["image", "inspect", "-f", "{{.Architecture}}", "busybox"])
        .ok()
        .stdout;
    let own = format!("linux/{}", arch.trim());
    s.run(&["run", "--rm", "--platform", &own, "busybox", "true"])
        .ok();
    s.run(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--platform",
        "linux/s390x",
        "busybox",
        "true",
    ])
    .refused_with("does not match the specified platform: wanted linux/s390x");
}

#[test]
fn a_health_check_makes_a_running_container_healthy_or_unhealthy() {
    let s = Strata::with_busybox();
    let status = |name: &str| {
        s.run(&["inspect", "-f", "{{.State.Health.Status}}", name])
            .ok()
            .stdout
    };
    let settle = |name: &str, want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while status(name).trim() != want {
            assert!(std::time::Instant::now() < deadline, "{name} never {want}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    // From the image's HEALTHCHECK (commit -c): unhealthy after two
    // failures, healthy once the probe passes, as ps shows it.
    s.run(&["create", "--name", "base", "busybox", "true"]).ok();
    s.run(&[
        "commit",
        "-c",
        "HEALTHCHECK --interval=200ms --retries=2 CMD test -e /ready || (echo not yet; exit 1)",
        "base",
        "checked",
    ])
    .ok();
    s.run(&["run", "-d", "--name", "web", "checked", "sleep", "600"])
        .ok();
    settle("web", "unhealthy");
    let ps = s.run(&["ps", "--format", "{{.Status}}"]).ok().stdout;
    assert!(ps.trim().ends_with("(unhealthy)"), "{ps}");
    let log = s
        .run(&[
            "inspect",
            "-f",
            "{{(index .State.Health.Log 0).ExitCode}} {{(index .State.Health.Log 0).Output}}",
            "web",
        ])
        .ok()
        .stdout;
    assert_eq!(log, "1 not yet\n\n");
    s.run(&["exec", "web", "touch", "/ready"]).ok();
    settle("web", "healthy");
    let healthy = s.run(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"]);
    assert_eq!(healthy.ok().stdout, "web\n");
    // A probe that outlasts its timeout fails; --no-healthcheck turns the
    // image's off.
    s.run(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 10",
        "--health-timeout",
        "100ms",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    settle("slow", "unhealthy");
    let output = s
        .run(&[
            "inspect",
            "-f",
            "{{(index .State.Health.Log 0).Output}}",
            "slow",
        ])
        .ok()
        .stdout;
    assert_eq!(output, "Health check exceeded timeout (100ms)\n");
    // Each probe past its timeout ends reaped: no zombie of it is left
    // to the container's pid 1 (a `sleep`, which reaps nothing).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let top = s.run(&["top", "slow", "-o", "pid,stat,args"]).ok().stdout;
    assert!(!top.lines().skip(1).any(|l| l.contains(" Z")), "{top}");
    // A probe that leaves a writer without end behind (in the container)
    // still ends: its output is cut at 4 KiB, the prober reads no more
    // once it exited, and it stays small. (It read everything into memory
    // and waited for the writer: gigabytes, and "starting" for ever.)
    s.run(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--health-cmd",
        "cat /dev/zero & echo hi",
        "--health-interval",
        "200ms",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    settle("chatty", "healthy");
    let output = s
        .run(&[
            "inspect",
            "-f",
            "{{(index .State.Health.Log 0).Output}}",
            "chatty",
        ])
        .ok()
        .stdout;
    assert!(
        output.len() <= 4097,
        "{} bytes of output kept",
        output.len()
    );
    s.run(&[
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "checked",
        "sleep",
        "600",
    ])
    .ok();
    let off = s
        .run(&["inspect", "-f", "{{json .State.Health}}", "off"])
        .ok()
        .stdout;
    assert_eq!(off, "null\n");
    s.run(&[
        "run",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "busybox",
        "true",
    ])
    .refused_with("--no-healthcheck conflicts with --health-* options");
}

#[test]
fn exec_detached_returns_at_once_and_its_process_is_reaped() {
    let s = Strata::with_busybox();
    s.run(&["run", "-d", "--name", "host", "busybox", "sleep", "600"])
        .ok();
    let started = s.run(&[
        "exec",
        "-d",
        "host",
        "sh",
        "-c",
        "sleep 1; echo done > /tmp/done",
    ]);
    assert_eq!((started.code, started.stdout.as_str()), (0, ""));
    // Returned before the command ended, which then ran to its end.
    s.run(&["exec", "host", "test", "!", "-e", "/tmp/done"])
        .ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.run(&["exec", "host", "test", "-e", "/tmp/done"]).code != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the detached command never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Reaped by its helper: no zombie left in the container.
    let top = s.run(&["top", "host", "-o", "pid,stat,comm"]).ok().stdout;
    assert!(!top.lines().skip(1).any(|l| l.contains(" Z")), "{top}");
    let missing = s.run(&["exec", "-d", "host", "/no/such/command"]);
    assert_eq!(missing.code, 127, "{}", missing.stderr);
}

#[test]
fn update_changes_a_running_containers_limits_and_restart_policy() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "-d",
        "--name",
        "svc",
        "busybox",
        "sh",
        "-c",
        "while [ ! -e /stop ]; do sleep 0.1; done; exit 3",
    ])
    .ok();
    assert_eq!(
        s.run(&["update", "-m", "64m", "--pids-limit", "20", "svc"])
            .ok()
            .stdout,
        "svc\n"
    );
    // At once in its cgroup (what stats reads), and in its record.
    let stats = s.run(&["stats", "--no-stream", "svc"]).ok().stdout;
    assert!(stats.contains(" / 64MiB "), "{stats}");
    let shown = s.run(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
        "svc",
    ]);
    assert_eq!(shown.ok().stdout, "67108864 20\n");
    s.run(&["update", "-m", "0", "svc"]).ok();
    let stats = s.run(&["stats", "--no-stream", "svc"]).ok().stdout;
    assert!(!stats.contains(" / 64MiB "), "{stats}");
    // A policy that restarts, given to a running container, applies to
    // its next exit.
    s.run(&["update", "--restart", "on-failure:1", "svc"]).ok();
    s.run(&["exec", "svc", "touch", "/stop"]).ok();
    // It fails by itself: started again once (the next run finds /stop and
    // fails at once), then left exited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let settled = || {
        s.run(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
            "svc",
        ])
        .ok()
        .stdout
    };
    while settled() != "1 exited 3\n" {
        assert!(std::time::Instant::now() < deadline, "{}", settled());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A memory limit under what the container uses is refused by the
    // kernel (EBUSY), and the swap limit, lifted to set it, comes back
    // (it stayed unlimited).
    let id = s
        .run(&[
            "run",
            "-d",
            "-m",
            "100m",
            "--shm-size",
            "200m",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/shm/x bs=1M count=40 2>/dev/null; touch /tmp/full; sleep 600",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    while s.run(&["exec", &id, "test", "-e", "/tmp/full"]).code != 0 {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(20));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let memsw = format!("/sys/fs/cgroup/memory/strata/{id}/memory.memsw.limit_in_bytes");
    let before = std::fs::read_to_string(&memsw).ok();
    assert_ne!(
        s.run(&["update", "-m", "20m", &id]).code,
        0,
        "a limit under the use was taken"
    );
    assert_eq!(
        std::fs::read_to_string(&memsw).ok(),
        before,
        "the swap limit was left lifted"
    );
    s.run(&["rm", "-f", &id]).ok();
    s.run(&["update", "svc"])
        .refused_with("you must provide one or more flags when using this command");
    s.run(&[
        "run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "60",
    ])
    .ok();
    s.run(&["update", "--restart", "always", "gone"])
        .refused_with("restart policy cannot be updated because AutoRemove is enabled");
}

#[test]
fn prunes_take_dockers_filters_and_system_prune_takes_volumes() {
    let s = Strata::with_busybox();
    s.run(&["run", "--name", "kept", "-l", "keep=yes", "busybox", "true"])
        .ok();
    s.run(&[
        "run", "--name", "loose", "-v", "/scratch", "busybox", "true",
    ])
    .ok();
    s.run(&["volume", "create", "named"]).ok();
    let names = |s: &Strata| s.run(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout;
    // until= keeps what is younger; label!= what has the label.
    s.run(&["container", "prune", "-f", "--filter", "until=1h"])
        .ok();
    assert_eq!(names(&s).lines().count(), 2);
    s.run(&["container", "prune", "-f", "--filter", "label!=keep"])
        .ok();
    assert_eq!(names(&s), "kept\n");
    // --volumes: the anonymous volumes nothing uses now (the pruned
    // container's), never a named one.
    let pruned = s.run(&["system", "prune", "-f", "--volumes"]).ok().stdout;
    assert!(pruned.contains("Deleted Volumes:\n"), "{pruned}");
    assert_eq!(s.run(&["volume", "ls", "-q"]).ok().stdout, "named\n");
    s.run(&["container", "prune", "-f", "--filter", "colour=red"])
        .refused_with("invalid filter 'colour'");
    s.run(&["image", "prune", "-f", "--filter", "until=soon"])
        .refused_with("invalid time \"soon\"");
}

#[test]
fn a_log_with_max_size_rotates_and_logs_reads_across_its_files() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 200); do echo line $i; done",
    ])
    .ok();
    let log = s
        .run(&["inspect", "-f", "{{.LogPath}}", "chatty"])
        .ok()
        .stdout;
    let log = std::path::PathBuf::from(log.trim());
    // Three files at most, none past the size by more than one entry.
    let older = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    for path in [log.clone(), older(1), older(2)] {
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= 2048, "{}: {len}", path.display());
    }
    assert!(!older(3).exists());
    // What is kept reads in order, its newest lines last; --tail spans
    // the files.
    let shown = s.run(&["logs", "chatty"]).ok().stdout;
    let numbers: Vec<u32> = shown
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(*numbers.last().unwrap(), 200);
    assert!(numbers.len() < 200, "nothing was rotated away");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    let count = shown.lines().count().to_string();
    let all = s.run(&["logs", "--tail", &count, "chatty"]).ok().stdout;
    assert_eq!(all, shown);
    assert_eq!(
        s.run(&["logs", "--tail", "2", "chatty"]).ok().stdout,
        "line 199\nline 200\n"
    );
    // Followed while it rotates: every line, in order.
    s.run(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--log-opt",
        "max-size=500",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; for i in $(seq 1 60); do echo line $i; sleep 0.05; done",
    ])
    .ok();
    let followed = s.run(&["logs", "-f", "slow"]).ok().stdout;
    let want: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(followed, want);
    s.run(&["run", "--log-opt", "max-file=2", "busybox", "true"])
        .refused_with("max-file cannot be set when max-size is not set");
    s.run(&["run", "--log-opt", "colour=red", "busybox", "true"])
        .refused_with("unknown log opt 'colour' for json-file log driver");
}

#[test]
fn info_version_and_commit_pause_speak_dockers_language() {
    let s = Strata::with_busybox();
    s.run(&["run", "-d", "--name", "up", "busybox", "sleep", "600"])
        .ok();
    s.run(&["create", "--name", "made", "busybox", "true"]).ok();
    let info = s.run(&["info"]).ok().stdout;
    for line in [
        " Containers: 2",
        "  Running: 1",
        "  Stopped: 1",
        " Images: 1",
    ] {
        assert!(info.lines().any(|l| l == line), "{line:?} not in {info}");
    }
    assert!(
        info.contains(&format!(" Strata Root Dir: {}", s.root().display())),
        "{info}"
    );
    let version = s.run(&["version"]).ok().stdout;
    assert!(
        version.contains(&format!(" Version:      {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // docker's `commit --pause=false` and `-p` (a bool: the name after
    // it is the container's).
    s.run(&["commit", "--pause=false", "up", "nopause"]).ok();
    s.run(&["commit", "-p", "up", "paused"]).ok();
}

#[test]
fn attach_follows_a_detached_containers_output_and_feeds_its_stdin() {
    let s = Strata::with_busybox();
    s.run(&["run", "-di", "--name", "shell", "busybox", "sh"])
        .ok();
    // The input goes to the container's stdin; its output comes back; it
    // exits, and attach with its code.
    let mut client = s
        .cmd(&["attach", "shell"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = client.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"echo hello from attach\nexit 3\n").unwrap();
    common::wait_bounded(&mut client, std::time::Duration::from_secs(20), "attach");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut client.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out, "hello from attach\n");
    assert_eq!(client.wait().unwrap().code(), Some(3));
    drop(input);
    // Ctrl-P Ctrl-Q leaves the container running.
    s.run(&["run", "-di", "--name", "cat", "busybox", "cat"])
        .ok();
    let detached = s.run_stdin(&["attach", "cat"], b"\x10\x11");
    assert_eq!(detached.code, 0, "{}", detached.stderr);
    assert!(s
        .run(&["ps", "--format", "{{.Names}}"])
        .ok()
        .stdout
        .contains("cat"));
    s.run(&["stop", "-t", "0", "cat"]).ok();
    s.run(&["attach", "cat"])
        .refused_with("You cannot attach to a stopped container, start it first");
}
