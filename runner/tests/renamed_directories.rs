//! A directory of the image renamed in a container moves with a redirect
//! (its content stays in the image's layers), and commit, diff and export
//! still give the renamed tree: the content whole at the new path, the old
//! path deleted, as an OCI layer has no redirects.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::Strata;

/// Runs `script` with the image's busybox, which the script moves away
/// from /bin.
fn sh(s: &Strata, args: &[&str], script: &str) -> common::Run {
    let mut a = args.to_vec();
    a.extend(["/x/bin2/busybox", "sh", "-c", script]);
    s.run(&a)
}

#[test]
fn commit_diff_and_export_after_moving_an_image_directory_give_the_moved_tree() {
    let s = Strata::with_busybox();
    s.run(&[
        "run",
        "--name",
        "mover",
        "busybox",
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox mkdir /x && /bin/busybox mv /bin /x/bin2 && /x/bin2/busybox echo hi > /x/bin2/new",
    ])
    .ok();
    // The move recorded, not copied: the upper holds no busybox.
    let inspect: serde_json::Value =
        serde_json::from_str(&s.run(&["inspect", "mover"]).ok().stdout).unwrap();
    let upper = inspect[0]["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap();
    let upper = std::path::PathBuf::from(upper);
    assert!(upper.join("x/bin2").is_dir(), "{}", upper.display());
    assert!(!upper.join("x/bin2/busybox").exists(), "moved, not copied");

    let diff = s.run(&["diff", "mover"]).ok().stdout;
    for line in [
        "D /bin",
        "A /x/bin2",
        "A /x/bin2/busybox",
        "A /x/bin2/sh",
        "A /x/bin2/new",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line} missing:\n{diff}");
    }

    s.run(&["commit", "mover", "moved"]).ok();
    let out = sh(
        &s,
        &["run", "--rm", "moved"],
        "/x/bin2/busybox cat /x/bin2/new; /x/bin2/busybox readlink /x/bin2/sh; \
         /x/bin2/busybox ls /bin || /x/bin2/busybox echo no-bin",
    )
    .ok();
    assert_eq!(out.stdout, "hi\nbusybox\nno-bin\n", "{}", out.stderr);

    let tar = s.path("mover.tar");
    s.run(&["export", "-o", tar.to_str().unwrap(), "mover"])
        .ok();
    let busybox_len = std::fs::metadata("/bin/busybox").unwrap().len();
    let mut a = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let mut found = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let p = p.trim_start_matches("./").trim_end_matches('/').to_string();
        if p == "bin" || p.starts_with("bin/") {
            panic!("the old path is in the export: {p}");
        }
        if p == "x/bin2/busybox" {
            assert_eq!(e.header().size().unwrap(), busybox_len);
        }
        found.push(p);
    }
    for want in ["x/bin2/busybox", "x/bin2/sh", "x/bin2/new"] {
        assert!(found.iter().any(|p| p == want), "{want} not in {found:?}");
    }
}
