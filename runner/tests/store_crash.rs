//! Fault injection: kill -9 an import, or a container's creation, at
//! random instants, many times. After each kill the store must verify,
//! list no partial image or container, and gc must reclaim what the dead
//! process left.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{noise, Strata, TarMaker};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A tar big enough that an import takes a while: many small files and a
/// few large ones.
fn big_tar(s: &Strata) -> std::path::PathBuf {
    let mut t = TarMaker::new().dir("d");
    for i in 0..1500 {
        t = t.file(&format!("d/small{i}"), &noise(700 + i * 3, i as u64));
    }
    for i in 0..6 {
        t = t.file(&format!("big{i}"), &noise(6 << 20, 1000 + i));
    }
    t.write(&s.path("big.tar"))
}

/// xorshift, seeded from the clock and printed, so a failing run can be
/// replayed with STRATA_CRASH_SEED.
fn seed() -> u64 {
    let s = std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos() as u64
        });
    eprintln!("STRATA_CRASH_SEED={s}");
    s | 1
}

#[test]
fn an_import_killed_at_any_instant_leaves_a_store_that_verifies() {
    let s = Strata::new();
    let tar = big_tar(&s);
    // How long one whole import takes here, to spread the kills over it.
    let start = Instant::now();
    s.import(&tar, "whole");
    let full = start.elapsed();
    s.run(&["rmi", "whole"]).ok();
    s.run(&["gc"]).ok();

    let mut x = seed();
    let mut finished = 0;
    for round in 0..25 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_micros(x % (full.as_micros() as u64 + 1));
        let name = format!("round{round}");
        let mut child = s
            .cmd(&["import", tar.to_str().unwrap(), &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().ok(); // SIGKILL
        let status = child.wait().unwrap();
        let v = s.run(&["verify"]);
        assert_eq!(
            v.code, 0,
            "round {round} (killed after {delay:?}): {}{}",
            v.stdout, v.stderr
        );
        let images = s.run(&["images"]).ok().stdout;
        if images.contains(&name) {
            finished += 1;
            assert!(status.success() || status.code().is_none(), "round {round}");
        }
        // Every image listed is whole: its history and save work.
        for line in images.lines().skip(1) {
            let repo = line.split_whitespace().next().unwrap();
            s.run(&["history", repo]).ok();
        }
    }
    eprintln!("{finished} of 25 imports finished before their kill");
    // Remove every image, then gc must leave no chunk behind.
    let ids = s.run(&["images", "-q"]).ok().stdout;
    for id in ids.lines() {
        s.run(&["rmi", "-f", id]);
    }
    s.run(&["gc"]).ok();
    let left = std::fs::read_dir(s.root().join("chunks"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(left, 0, "gc left chunks behind");
    s.run(&["verify"]).ok();
}

#[test]
fn a_create_killed_at_any_instant_leaves_a_store_that_verifies() {
    let s = Strata::with_busybox();
    let start = Instant::now();
    s.run(&["create", "--name", "whole", "busybox", "true"])
        .ok();
    let full = start.elapsed();
    s.run(&["rm", "whole"]).ok();

    let mut x = seed();
    for round in 0..25 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_micros(x % (full.as_micros() as u64 + 1));
        // Its own process group: the recording child dies with it.
        let mut child = s
            .cmd(&["create", "--name", "same", "busybox", "true"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        child.wait().unwrap();
        let v = s.run(&["verify"]);
        assert_eq!(
            v.code, 0,
            "round {round} (killed after {delay:?}): {}{}",
            v.stdout, v.stderr
        );
        // At most the one container, whole: its upper is there and
        // inspect reads its record.
        let ids = s.run(&["ps", "-aq", "--no-trunc"]).ok().stdout;
        assert!(ids.lines().count() <= 1, "round {round}: {ids}");
        for id in ids.lines() {
            assert!(
                s.root().join("containers").join(id).join("upper").is_dir(),
                "round {round}: container {id} without its upper"
            );
            s.run(&["inspect", id]).ok();
            s.run(&["rm", id]).ok();
        }
        // What a killed creation left, gc removes.
        s.run(&["gc"]).ok();
        let left = std::fs::read_dir(s.root().join("containers"))
            .unwrap()
            .count();
        assert_eq!(left, 0, "round {round}: gc left a container directory");
    }
}
