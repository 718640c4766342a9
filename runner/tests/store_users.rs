//! A store and the users who run strata on it: root on a user's store, and
//! a user at their process limit.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{Run, Strata, TarMaker};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// The user the stores here belong to: nobody, whom every system has.
const NOBODY: u32 = 65534;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it runs strata as root on another user's store, and as that user); run the suite with sudo, as CI does"
    );
}

/// A store made by nobody holding the image `mine:1`; the test's directory
/// is opened for nobody to reach it.
fn nobodys_store() -> Strata {
    let s = Strata::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::create_dir(s.root()).unwrap();
    std::os::unix::fs::chown(s.root(), Some(NOBODY), Some(NOBODY)).unwrap();
    let tar = TarMaker::new()
        .file("etc/os-release", b"NAME=test\n")
        .write(&s.path("a.tar"));
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    as_nobody(&s, &["import", tar.to_str().unwrap(), "mine:1"], "").ok();
    s
}

/// `strata --root STORE ARGS...` as nobody, after the shell line `limit`
/// (a `ulimit`, or nothing).
fn as_nobody(s: &Strata, args: &[&str], limit: &str) -> Run {
    let mut c = Command::new("/bin/bash");
    c.arg("-c")
        .arg(format!("{limit}\nexec \"$@\""))
        .arg("bash")
        .arg(common::bin())
        .arg("--root")
        .arg(s.root())
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .env_remove("STRATA_ROOT")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null());
    c.output().expect("bash runs").into()
}

use std::os::unix::process::CommandExt as _;

/// Every file and directory under `dir` whose owner is not `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.uid() != uid {
                out.push(format!("{} (uid {})", e.path().display(), m.uid()));
            }
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out
}

/// Root is refused a user's store, reads included (as git refuses another
/// user's repository): the store's files are the user's to plant, and a
/// root `ps` followed them (see the next test).
#[test]
fn root_is_refused_a_users_store_and_leaves_it_the_users() {
    require_root();
    let s = nobodys_store();
    let tar = s.path("a.tar");
    let import = ["import", tar.to_str().unwrap(), "roots:1"];
    for args in [
        &["tag", "mine:1", "yours:1"][..],
        &["rmi", "mine:1"],
        &["gc"],
        &import,
        &[
            "create", "--pull", "never", "--name", "roots", "mine:1", "true",
        ],
        &["images"],
        &["ps", "-a"],
        &["verify"],
    ] {
        let r = s.run(args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        let root = s.root().display().to_string();
        assert!(r.stderr.contains(&root), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("nobody"), "{args:?}: {}", r.stderr);
    }
    assert_eq!(not_owned_by(&s.root(), NOBODY), Vec::<String>::new());
    // The owner's writes work after root's visit.
    as_nobody(&s, &["tag", "mine:1", "yours:1"], "").ok();
    assert!(as_nobody(&s, &["images"], "").ok().stdout.contains("yours"));
}

/// What a user plants in their store for root's reader: a container
/// whose monitor is gone, its recorded cgroup a directory of the user's
/// listing a root process to kill and a link where the freezer's state
/// is written, its state file's scratch name a link to a root file. Root's
/// `ps -a` on that store must touch none of them.
#[test]
fn a_users_planted_store_files_do_not_steer_roots_reader() {
    require_root();
    let s = nobodys_store();
    as_nobody(&s, &["create", "--name", "planted", "mine:1", "true"], "").ok();
    let dir = std::fs::read_dir(s.root().join("containers"))
        .unwrap()
        .flatten()
        .next()
        .expect("the container's directory")
        .path();
    let victim = Command::new("sleep").arg("600").spawn().unwrap();
    let fake = s.path("fake");
    let target = s.path("roots-file");
    std::fs::write(&target, "precious").unwrap();
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("cgroup.procs"), victim.id().to_string()).unwrap();
    std::os::unix::fs::symlink(&target, fake.join("freezer.state")).unwrap();
    let fake_s = fake.display();
    let cgroup = format!(r#"{{"version":"V1","dirs":["{fake_s}"],"freezer":"{fake_s}"}}"#);
    std::fs::write(dir.join("cgroup"), cgroup).unwrap();
    let state = r#"{"Running":{"monitor_pid":999999,"pid":999998,"started_ns":1}}"#;
    std::fs::write(dir.join("state"), state).unwrap();
    std::os::unix::fs::symlink(&target, dir.join("state.tmp")).unwrap();
    for f in [&dir.join("cgroup"), &dir.join("state"), &fake] {
        std::os::unix::fs::lchown(f, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let r = s.run(&["ps", "-a"]);
    let mut victim = victim;
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    assert_eq!(r.code, 125, "{}{}", r.stdout, r.stderr);
    assert!(alive, "root's ps killed the process the user listed");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert!(fake.exists(), "root's ps removed the user's directory");
}

#[test]
fn a_user_at_their_process_limit_gets_one_line_instead_of_an_abort() {
    require_root();
    let s = nobodys_store();
    // The limit counts every thread of the user's: strata's own is the
    // one, RocksDB's background pools would be the next two.
    for args in [&["images"][..], &["tag", "mine:1", "yours:1"]] {
        let r = as_nobody(&s, args, "ulimit -u 2");
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("cannot start a thread: the user's process limit (ulimit -u) is reached"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(as_nobody(&s, &["images"], "").ok().stdout.contains("mine"));
}
