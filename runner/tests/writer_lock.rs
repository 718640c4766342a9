//! No strata process holds the writer lock while it waits on something
//! without bound: the other writers would queue behind it and fail.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{noise, Strata, TarMaker};
use nix::fcntl::{Flock, FlockArg};
use std::process::{Child, Stdio};

/// A strata process whose output the test holds back. Dropped (also on
/// failure), its output is read to the end, so that it finishes as usual
/// and unmounts what it mounted, then it is reaped.
struct Stalled(Child);

impl Drop for Stalled {
    fn drop(&mut self) {
        if let Some(mut out) = self.0.stdout.take() {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        }
        let _ = self.0.wait();
    }
}

/// Lets the stalled process finish; it must succeed.
fn finish(mut c: Stalled, what: &str) {
    let mut out = c.0.stdout.take().expect("piped");
    std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    assert!(c.0.wait().unwrap().success(), "{what} failed");
}

/// A child process killed and reaped when dropped (also on failure).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until a thread of process `pid` (export writes from one of its
/// own) sleeps writing to a full pipe. Polled, with a bound far above the
/// time it takes.
fn wait_blocked_on_a_pipe(pid: u32, what: &str) {
    let writing = |task: std::fs::DirEntry| {
        let wchan = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
        wchan.contains("pipe_write") || wchan.contains("pipe_wait")
    };
    for _ in 0..6000 {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        if tasks.is_ok_and(|t| t.flatten().any(writing)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{what} never blocked on its output");
}

#[test]
fn a_save_whose_output_is_not_read_holds_up_no_writer() {
    let s = Strata::new();
    // Far more than a pipe holds (64 KiB), so save blocks writing it.
    let tar = TarMaker::new()
        .file("big", &noise(4 << 20, 5))
        .write(&s.path("big.tar"));
    s.import(&tar, "big");
    let save = stalled_on_its_output(&s, &["save", "big"]);
    // A writer behind it: before, it waited for the lock save held and
    // failed with "store is busy".
    tag_succeeds(&s, "big", "big:2", "save");
    finish(save, "strata save");
}

#[test]
fn an_export_whose_output_is_not_read_holds_up_no_writer() {
    let s = Strata::with_busybox();
    s.run(&["run", "--name", "c1", "busybox", "true"]).ok();
    let export = stalled_on_its_output(&s, &["export", "c1"]);
    tag_succeeds(&s, "busybox", "busybox:2", "export");
    finish(export, "strata export");
}

/// `strata ARGS` writing to a pipe nobody reads, once it blocks there.
fn stalled_on_its_output(s: &Strata, args: &[&str]) -> Stalled {
    let stalled = Stalled(
        s.cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_blocked_on_a_pipe(stalled.0.id(), &format!("strata {}", args[0]));
    stalled
}

/// A writer (`tag`) gets through while `what` is stalled.
fn tag_succeeds(s: &Strata, source: &str, target: &str, what: &str) {
    let r = s
        .cmd(&["tag", source, target])
        .env("STRATA_LOCK_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "tag while {what} is stalled: {}",
        String::from_utf8_lossy(&r.stderr)
    );
}

/// Whether another process holds the flock on `path` (tried without
/// waiting; let go at once if it was free).
fn held_by_another(path: &std::path::Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err()
}

#[test]
fn a_container_whose_state_stays_locked_holds_up_writers_for_a_bounded_time() {
    let s = Strata::with_busybox();
    s.run(&["run", "--name", "c1", "busybox", "true"]).ok();
    let id = s.run(&["ps", "-aq", "--no-trunc"]).ok().stdout;
    let dir = s.root().join("containers").join(id.trim());
    // Its state says running, under a monitor that is gone: the next
    // command that looks it up settles it, under the directory's lock...
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        dir.join("state"),
        format!(r#"{{"Running":{{"monitor_pid":{pid},"pid":{pid},"started_ns":1}}}}"#),
    )
    .unwrap();
    // ...which a stalled process holds (as a monitor stopped mid-change).
    let held = Flock::lock(std::fs::File::open(&dir).unwrap(), FlockArg::LockExclusive).unwrap();
    let rm = Killed(
        s.cmd(&["rm", "-f", "c1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // rm takes the writer lock, then waits for the container's.
    let mut polls = 0;
    while !held_by_another(&s.root().join("lock")) {
        polls += 1;
        assert!(polls < 6000, "rm never took the writer lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A writer queued behind it gets its turn (before: rm waited for ever
    // and the writer failed with "store is busy").
    let r = s
        .cmd(&["tag", "busybox", "busybox:2"])
        .env("STRATA_LOCK_TIMEOUT", "60")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "tag behind a stalled rm: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let mut rm = rm;
    let mut err = String::new();
    std::io::Read::read_to_string(&mut rm.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!rm.0.wait().unwrap().success());
    assert!(err.contains("locked by another process"), "{err}");
    drop(held);
    s.run(&["rm", "-f", "c1"]).ok();
}

#[test]
fn a_run_takes_no_writer_lock_and_leaves_the_index_as_it_was() {
    let s = Strata::with_busybox();
    let db_files = || {
        let mut names: Vec<String> = std::fs::read_dir(s.root().join("db"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = db_files();
    // A writer holds the lock throughout (an import's final batch, a gc):
    // before, run waited for it to record the container and again to
    // delete it (--rm), and failed here with "store is busy".
    let held = Flock::lock(
        std::fs::File::open(s.root().join("lock")).unwrap(),
        FlockArg::LockExclusive,
    )
    .unwrap();
    for args in [
        &["run", "--rm", "busybox", "true"][..],
        &["run", "--name", "kept", "busybox", "true"][..],
    ] {
        let r = s
            .cmd(args)
            .env("STRATA_LOCK_TIMEOUT", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "{args:?} while a writer holds the lock: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    drop(held);
    // No MANIFEST, OPTIONS or log written: the records are files.
    assert_eq!(db_files(), before);
    let ps = s.run(&["ps", "-a"]).ok().stdout;
    let rows: Vec<&str> = ps.lines().skip(1).collect();
    assert!(rows.len() == 1 && rows[0].ends_with(" kept"), "{ps}");
}
