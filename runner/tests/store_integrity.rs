//! The store serves only bytes that hash to their names, stays private,
//! and survives damaged chunks, a full disk and writers racing with gc.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{noise, privileges, Strata, TarMaker};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The chunk files holding `file` of `image`'s top layer.
fn chunks_of(s: &Strata, image: &str, file: &str) -> Vec<PathBuf> {
    let store = layerdb::Store::open_read_only(&s.root()).unwrap();
    let image = store.resolve_image(image).unwrap();
    let layer = store.layer(image.layers.last().unwrap()).unwrap();
    let entry = store.entry(&layer, file.as_bytes()).unwrap().unwrap();
    entry
        .chunks()
        .iter()
        .map(|c| layerdb::chunk::chunk_path(&s.root(), &c.digest))
        .collect()
}

fn flip_a_byte(chunk: &Path) {
    let mut bytes = std::fs::read(chunk).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(chunk, bytes).unwrap();
}

/// `strata mount IMAGE DIR`, unmounted when dropped (also on failure).
struct Mounted<'a> {
    s: &'a Strata,
    dir: PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(s: &'a Strata, image: &str, name: &str) -> Mounted<'a> {
        let dir = s.path(name);
        s.run(&["mount", image, dir.to_str().unwrap()]).ok();
        Mounted { s, dir }
    }

    fn read(&self, file: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(file))
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let r = self.s.run(&["umount", self.dir.to_str().unwrap()]);
        if r.code != 0 && !std::thread::panicking() {
            panic!("umount {}: {}", self.dir.display(), r.stderr);
        }
    }
}

fn assert_eio(r: std::io::Result<Vec<u8>>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: {e}"),
        Ok(bytes) => panic!("{what}: read {} bytes, expected EIO", bytes.len()),
    }
}

/// A store with image `victim` holding three files of several chunks each.
fn victim() -> (Strata, PathBuf, Vec<Vec<u8>>) {
    privileges::require_root_and_fuse();
    let s = Strata::new();
    let data: Vec<Vec<u8>> = [11, 21, 31].map(|seed| noise(300_000, seed)).to_vec();
    let tar = TarMaker::new()
        .file("a", &data[0])
        .file("b", &data[1])
        .file("c", &data[2])
        .write(&s.path("victim.tar"));
    s.import(&tar, "victim");
    (s, tar, data)
}

#[test]
fn a_flipped_byte_in_a_chunk_reads_as_eio_and_verify_repair_then_reimport_restore_it() {
    let (s, tar, data) = victim();
    let damaged = chunks_of(&s, "victim", "a")[1].clone();
    flip_a_byte(&damaged);
    {
        let m = Mounted::new(&s, "victim", "mnt");
        assert_eio(m.read("a"), "a file with a flipped byte");
        assert_eq!(m.read("b").unwrap(), data[1], "another file still reads");
        assert_eio(m.read("a"), "the same file again");
    }
    let name = damaged.file_name().unwrap().to_str().unwrap();
    let r = s.run(&["verify"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(name), "{}", r.stderr);

    let r = s.run(&["verify", "--repair"]);
    assert!(!damaged.exists(), "the damaged chunk is removed");
    assert!(r.stderr.contains("victim:latest"), "{}", r.stderr);
    s.import(&tar, "victim");
    s.run(&["verify"]).ok();
    let m = Mounted::new(&s, "victim", "mnt2");
    assert_eq!(m.read("a").unwrap(), data[0]);
}

/// Rewrites a byte of `chunk` in place, same size, and puts its mtime
/// back as `touch -r` would: only its ctime tells (once the filesystem's
/// coarse clock has moved past the chunk's, which this waits for).
fn flip_a_byte_in_place(chunk: &Path) {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let before = std::fs::metadata(chunk).unwrap();
    let probe = chunk.with_file_name("probe");
    while std::fs::File::create(&probe)
        .and_then(|f| f.metadata())
        .map(|m| (m.ctime(), m.ctime_nsec()))
        .unwrap()
        <= (before.ctime(), before.ctime_nsec())
    {
        std::thread::yield_now();
    }
    std::fs::remove_file(&probe).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(chunk)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 100).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], 100).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
}

/// A copy out that a damaged chunk cuts short fails in one line naming
/// the chunk and leaves the destination as it was: it left half the file
/// under its name, after the server's log lines (found by a review);
/// `export` says it in one line too.
#[test]
fn a_copy_out_cut_short_by_a_damaged_chunk_leaves_the_destination_as_it_was() {
    let (s, _, _) = victim();
    s.run(&["create", "--name", "holder", "victim", "true"])
        .ok();
    let damaged = chunks_of(&s, "victim", "a")[1].clone();
    flip_a_byte_in_place(&damaged);
    let out = s.path("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("a.bin");
    std::fs::write(&dest, b"previous").unwrap();
    let r = s.run(&["cp", "holder:/a", dest.to_str().unwrap()]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    // One line that names the chunk (the server's log lines came first).
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("is damaged"), "{}", r.stderr);
    let r = s.run(&["export", "holder"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("is damaged"), "{}", r.stderr);
    let now = std::fs::read(&dest).unwrap();
    assert!(
        now == b"previous",
        "the destination became {} bytes",
        now.len()
    );
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("a.bin")]);
    // Into a new name: nothing appears.
    let fresh = out.join("fresh.bin");
    assert_eq!(
        s.run(&["cp", "holder:/a", fresh.to_str().unwrap()]).code,
        125
    );
    assert!(!fresh.exists());
    s.run(&["rm", "holder"]).ok();
}

#[test]
fn a_chunk_changed_after_its_stored_verdict_reads_as_eio_on_a_fresh_mount() {
    let (s, _, data) = victim();
    let damaged = chunks_of(&s, "victim", "a")[1].clone();
    let digest: layerdb::Digest = damaged
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        layerdb::Store::open_read_only(&s.root())
            .unwrap()
            .has_chunk_verdict(&digest)
            .unwrap(),
        "the import recorded the chunk's verdict"
    );
    {
        let m = Mounted::new(&s, "victim", "mnt");
        assert_eq!(m.read("a").unwrap(), data[0], "read by its stored verdict");
    }
    flip_a_byte_in_place(&damaged);
    let m = Mounted::new(&s, "victim", "mnt2");
    assert_eio(m.read("a"), "a chunk changed since its verdict");
    assert_eq!(m.read("b").unwrap(), data[1], "another file still reads");
}

#[test]
fn importing_the_same_content_again_replaces_a_damaged_chunk() {
    let (s, tar, data) = victim();
    let damaged = chunks_of(&s, "victim", "b")[0].clone();
    flip_a_byte(&damaged);
    s.import(&tar, "again");
    s.run(&["verify"]).ok();
    let m = Mounted::new(&s, "victim", "mnt");
    assert_eq!(m.read("b").unwrap(), data[1]);
}

#[test]
fn importing_the_same_content_again_replaces_a_directory_in_a_chunks_place() {
    let (s, tar, data) = victim();
    let damaged = chunks_of(&s, "victim", "b")[0].clone();
    std::fs::remove_file(&damaged).unwrap();
    std::fs::create_dir(&damaged).unwrap();
    std::fs::write(damaged.join("inside"), b"x").unwrap();
    s.import(&tar, "again");
    s.run(&["verify"]).ok();
    let m = Mounted::new(&s, "victim", "mnt");
    assert_eq!(m.read("b").unwrap(), data[1]);
}

/// Runs `args`, failing the test if it takes more than a minute: the
/// command is killed, not waited for.
fn run_bounded(s: &Strata, args: &[&str]) -> common::Run {
    let mut child = s
        .cmd(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_bounded(
        &mut child,
        std::time::Duration::from_secs(60),
        &format!("strata {args:?}"),
    );
    child.wait_with_output().unwrap().into()
}

/// A chunk replaced by a FIFO (or any file that is not a regular one) is
/// a damaged chunk: opened without blocking and refused by its type,
/// where opening it waited for a writer for good (verify, save, a mount's
/// reader, an import of the same content all hung).
#[test]
fn a_chunk_replaced_by_a_fifo_is_damaged_not_a_hang() {
    let (s, tar, data) = victim();
    let damaged = chunks_of(&s, "victim", "a")[0].clone();
    std::fs::remove_file(&damaged).unwrap();
    nix::unistd::mkfifo(&damaged, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let name = damaged.file_name().unwrap().to_str().unwrap();
    let r = run_bounded(&s, &["verify"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(name), "{}", r.stderr);
    let out = s.path("saved.tar");
    let r = run_bounded(&s, &["save", "-o", out.to_str().unwrap(), "victim"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    {
        let m = Mounted::new(&s, "victim", "mnt");
        assert_eio(m.read("a"), "a file whose chunk is a FIFO");
        assert_eq!(m.read("b").unwrap(), data[1], "another file still reads");
    }
    let r = run_bounded(&s, &["import", tar.to_str().unwrap(), "again"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    run_bounded(&s, &["verify"]).ok();
    let m = Mounted::new(&s, "victim", "mnt2");
    assert_eq!(m.read("a").unwrap(), data[0]);
    drop(m);
    // A directory under a chunk's name: named by verify, cleared by
    // --repair (it could not be removed before), then imported again.
    let damaged = chunks_of(&s, "victim", "b")[0].clone();
    std::fs::remove_file(&damaged).unwrap();
    std::fs::create_dir(&damaged).unwrap();
    std::fs::write(damaged.join("inside"), b"x").unwrap();
    let r = run_bounded(&s, &["verify"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    run_bounded(&s, &["verify", "--repair"]);
    assert!(!damaged.exists(), "verify --repair left the directory");
    run_bounded(&s, &["import", tar.to_str().unwrap(), "again"]).ok();
    run_bounded(&s, &["verify"]).ok();
}

#[test]
fn a_truncated_and_a_missing_chunk_give_eio_and_the_mount_survives() {
    let (s, _, data) = victim();
    let truncated = chunks_of(&s, "victim", "a")[1].clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    drop(f);
    std::fs::remove_file(&chunks_of(&s, "victim", "b")[1]).unwrap();
    let m = Mounted::new(&s, "victim", "mnt");
    assert_eio(m.read("a"), "a file with a truncated chunk");
    assert_eio(m.read("b"), "a file with a missing chunk");
    assert_eq!(m.read("c").unwrap(), data[2], "the mount still serves");
    assert_eio(m.read("a"), "the truncated one again");
}

/// How many of save's temporary files and directories are in the test's
/// directory.
fn leftovers_of_save(s: &Strata) -> usize {
    std::fs::read_dir(s.path(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".strata-save-"))
        .count()
}

#[test]
fn save_of_an_image_with_a_damaged_chunk_fails_and_writes_no_blob() {
    let s = Strata::new();
    let tar = TarMaker::new()
        .file("a", &noise(300_000, 7))
        .write(&s.path("a.tar"));
    s.import(&tar, "victim");
    flip_a_byte(&chunks_of(&s, "victim", "a")[0]);
    let file = s.path("saved.tar");
    let r = s.run(&["save", "-o", file.to_str().unwrap(), "victim"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("does not match its name"), "{}", r.stderr);
    assert!(!file.exists(), "a failed save left its file");
    assert_eq!(leftovers_of_save(&s), 0);
    let out = s.path("saved");
    let r = s.save_to_dir(&out, "victim");
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("does not match its name"), "{}", r.stderr);
    assert!(!out.exists(), "a failed save left its directory");
    assert_eq!(leftovers_of_save(&s), 0);
    // Into a directory that was there, blobs are written in place, and
    // none is named for bytes it does not hold.
    std::fs::create_dir(&out).unwrap();
    let r = s.save_to_dir(&out, "victim");
    assert_eq!(r.code, 125, "{}", r.stderr);
    for blob in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap().path();
        let digest = layerdb::Digest::of(&std::fs::read(&blob).unwrap());
        assert_eq!(
            digest.hex(),
            blob.file_name().unwrap().to_str().unwrap(),
            "a blob named for bytes it does not hold"
        );
    }
}

#[test]
fn a_public_store_root_and_its_files_are_made_private_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let s = Strata::new();
    let tar = TarMaker::new()
        .file("secret", &noise(100_000, 3))
        .write(&s.path("a.tar"));
    s.import(&tar, "secret");
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let root = s.root();
    let chunk = chunks_of(&s, "secret", "secret")[0].clone();
    set(&root, 0o755);
    set(&root.join("db"), 0o755);
    set(&root.join("chunks"), 0o755);
    set(&chunk, 0o644);
    let db_files: Vec<PathBuf> = std::fs::read_dir(root.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for f in &db_files {
        set(f, 0o644);
    }
    s.run(&["images"]).ok();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("db")), 0o700);
    assert_eq!(mode(&root.join("chunks")), 0o700);
    assert_eq!(mode(&chunk), 0o600);
    for f in db_files.iter().filter(|f| f.exists()) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

#[test]
fn a_store_error_says_its_cause_once() {
    let s = Strata::new();
    std::fs::create_dir_all(s.root()).unwrap();
    // The root's format file as a directory: reading it fails with EISDIR.
    std::fs::create_dir(s.root().join("format")).unwrap();
    let r = s.run(&["images"]);
    assert_eq!(r.code, 125);
    let cause = "Is a directory";
    assert_eq!(r.stderr.matches(cause).count(), 1, "{}", r.stderr);
}

/// A small ext4 filesystem on a loop device, mounted at `dir`: unmounted
/// (and its loop device detached) when dropped, also on failure.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn new(image: &Path, dir: &Path, megabytes: u64) -> SmallDisk {
        let f = std::fs::File::create(image).unwrap();
        f.set_len(megabytes << 20).unwrap();
        drop(f);
        let ok = |c: &mut Command| {
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // -m 0: no blocks kept back for root, who runs the test.
        ok(Command::new("mkfs.ext4").args(["-q", "-m", "0"]).arg(image));
        std::fs::create_dir_all(dir).unwrap();
        ok(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir));
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    fn free_bytes(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.dir).unwrap();
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // The loop device goes with the mount (mount -o loop sets autoclear).
        let out = Command::new("umount").arg(&self.dir).output().unwrap();
        if !out.status.success() {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            if !std::thread::panicking() {
                panic!("umount: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}

/// A store holding busybox on a small disk of its own (`megabytes`),
/// mounted at its root. The disk is declared after the store, so it is
/// unmounted first when both drop.
fn busybox_on_a_small_disk(megabytes: u64) -> (Strata, SmallDisk) {
    privileges::require_root_and_fuse();
    let s = Strata::new();
    let disk = SmallDisk::new(&s.path("disk.img"), &s.root(), megabytes);
    s.add_busybox();
    (s, disk)
}

/// `run -d --name filler busybox sh -c SCRIPT`: the container that fills
/// the disk.
fn run_filler(s: &Strata, script: &str) {
    s.run(&[
        "run", "-d", "--name", "filler", "busybox", "sh", "-c", script,
    ])
    .ok();
}

fn chunk_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("chunks")).unwrap().count()
}

/// `save` and `export` onto a full disk name what they could not write
/// (they said only "No space left on device (os error 28)") and leave no
/// file there.
#[test]
fn save_and_export_onto_a_full_disk_name_their_output() {
    let s = Strata::with_busybox();
    s.run(&["create", "--name", "ctr", "busybox", "true"]).ok();
    let disk = SmallDisk::new(&s.path("out.img"), &s.path("out"), 4);
    // Filled to its last block (ext4 refuses the write past it).
    let mut fill = std::fs::File::create(disk.dir.join("fill")).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while std::io::Write::write_all(&mut fill, &chunk).is_ok() {}
    drop(fill);
    for (verb, target) in [("save", "busybox"), ("export", "ctr")] {
        let out = disk.dir.join(format!("{verb}.tar"));
        let r = s.run(&[verb, "-o", out.to_str().unwrap(), target]);
        assert_eq!(r.code, 125, "{verb}: {}", r.stderr);
        let said = format!("write {}: No space left on device", out.display());
        assert!(r.stderr.contains(&said), "{verb}: {}", r.stderr);
        assert!(!out.exists(), "{verb} left its file");
        // The same to standard output.
        let full = std::fs::File::create(disk.dir.join(format!("{verb}-stdout.tar")));
        let mut cmd = s.cmd(&[verb, target]);
        let out = cmd.stdout(full.unwrap()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{verb} >: {stderr}");
        assert!(
            stderr.contains("write standard output: No space left on device"),
            "{verb} >: {stderr}"
        );
    }
    drop(disk);
}

#[test]
fn a_full_disk_costs_the_import_and_the_container_only() {
    let (s, disk) = busybox_on_a_small_disk(200);

    // A container fills the disk and keeps running.
    run_filler(&s, "dd if=/dev/zero of=/fill bs=1M; sleep 1000");
    let stop_filler = Cleanup(|| {
        let _ = s.run(&["rm", "-f", "filler"]);
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while disk.free_bytes() > 1 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk never filled"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // An import fails and leaves no chunk behind.
    let before = chunk_count(&s.root());
    let tar = TarMaker::new()
        .file("big", &noise(32 << 20, 9))
        .write(&std::env::temp_dir().join(format!("strata-full-{}.tar", std::process::id())));
    let r = s.run(&["import", tar.to_str().unwrap(), "big"]);
    std::fs::remove_file(&tar).unwrap();
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert_eq!(chunk_count(&s.root()), before, "the failed import's chunks");

    // The commands that free space work.
    s.run(&["rm", "-f", "filler"]).ok();
    drop(stop_filler);
    s.run(&["rmi", "busybox"]).ok();
    s.run(&["gc"]).ok();
    s.run(&["verify"]).ok();
    assert_eq!(chunk_count(&s.root()), 0);
    drop(disk);
}

#[test]
fn a_container_filling_the_disk_can_be_listed_inspected_stopped_and_verified() {
    let (s, disk) = busybox_on_a_small_disk(64);
    // Megabytes, then blocks, then directories until none can be made:
    // the disk is full to its last block, and a directory (a reader's
    // secondary) has no room either. Then the container's first process
    // becomes `sleep`, which says the filling is done.
    run_filler(
        &s,
        "dd if=/dev/zero of=/big bs=1M; dd if=/dev/zero of=/big2 bs=1k; \
         i=0; while mkdir /d$i; do i=$((i+1)); done; exec sleep 1000",
    );
    let stop_filler = Cleanup(|| {
        let _ = s.run(&["rm", "-f", "filler"]);
    });
    // Asked at once, while the disk has room.
    let inspect: serde_json::Value =
        serde_json::from_str(&s.run(&["inspect", "filler"]).ok().stdout).unwrap();
    let id = inspect[0]["Id"].as_str().unwrap().to_owned();
    let pid = inspect[0]["State"]["Pid"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let comm = format!("/proc/{pid}/comm");
    while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk never filled: {} bytes free",
            disk.free_bytes()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        disk.free_bytes() < 16 << 10,
        "{} bytes free",
        disk.free_bytes()
    );

    assert!(s.run(&["ps"]).ok().stdout.contains("filler"));
    assert!(s.run(&["images"]).ok().stdout.contains("busybox"));
    s.run(&["inspect", "filler"]).ok();
    assert!(s.run(&["diff", "filler"]).ok().stdout.contains("A /big"));
    s.run(&["stop", "-t", "1", "filler"]).ok();
    // Its monitor recorded its exit over the old state file (a new one
    // has no room), before any command looked.
    let state =
        std::fs::read_to_string(s.root().join("containers").join(&id).join("state")).unwrap();
    assert!(state.contains("Exited"), "{state}");
    let ps = s.run(&["ps", "-a"]).ok();
    assert!(ps.stdout.contains("Exited"), "{}", ps.stdout);
    s.run(&["verify"]).ok();
    s.run(&["system", "df"]).ok();
    // What only reads the store writes elsewhere: the way out of a full
    // disk (each failed on its pin file before). The blocks the stop
    // freed are taken again first.
    let mut filler = std::fs::File::create(s.root().join("host-filler")).unwrap();
    while std::io::Write::write_all(&mut filler, &[0; 4096]).is_ok() {}
    drop(filler);
    let saved = s.path("saved.tar");
    s.run(&["save", "-o", saved.to_str().unwrap(), "busybox"])
        .ok();
    s.run(&[
        "export",
        "-o",
        s.path("exported.tar").to_str().unwrap(),
        "filler",
    ])
    .ok();
    let out = s.path("copied");
    s.run(&["cp", "filler:/bin/busybox", out.to_str().unwrap()])
        .ok();
    assert!(out.is_file());
    assert!(disk.free_bytes() < 64 << 10, "the disk was no longer full");

    s.run(&["rm", "-f", "filler"]).ok();
    drop(stop_filler);
    drop(disk);
}

/// Runs a closure when dropped.
struct Cleanup<F: FnMut()>(F);

impl<F: FnMut()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[test]
fn imports_commits_rmi_and_gc_racing_all_succeed() {
    let s = Strata::with_busybox();
    s.run(&["run", "--name", "c1", "busybox", "sh", "-c", "echo hi > /f"])
        .ok();
    for round in 0..4u64 {
        let tar = TarMaker::new()
            .file("f", &noise(2 << 20, 100 + round))
            .write(&s.path(&format!("r{round}.tar")));
        let mut children = vec![
            s.cmd(&["import", tar.to_str().unwrap(), &format!("r:{round}")]),
            s.cmd(&["gc"]),
            s.cmd(&["commit", "c1", &format!("c:{round}")]),
            s.cmd(&["gc"]),
        ];
        if round > 0 {
            children.push(s.cmd(&["rmi", &format!("r:{}", round - 1)]));
        }
        // Short enough that a lock-order deadlock fails fast.
        let running: Vec<_> = children
            .iter_mut()
            .map(|c| {
                c.env("STRATA_LOCK_TIMEOUT", "30")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in running {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    s.run(&["verify"]).ok();
}

/// Files of many chunks read through a mount, one just small enough for
/// 64 KiB chunks (about 130) and one cut into big chunks (1 MiB): the
/// kernel is let read ahead far (so it asks for big READs), and reads at
/// any offset, across chunk boundaries, at the last byte and past the end
/// give the file's bytes (the server finds a read's first chunk by a
/// binary search over the chunks' ends, and reads a big file's chunks
/// ahead by bytes, not by count).
#[test]
fn a_mounted_file_of_many_chunks_reads_right_at_any_offset_in_big_kernel_reads() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    privileges::require_root_and_fuse();
    let s = Strata::new();
    let small = noise(layerdb::chunk::BIG_FILE as usize - 1, 41);
    let big = noise(24 << 20, 42);
    let tar = TarMaker::new()
        .file("small", &small)
        .file("big", &big)
        .write(&s.path("big.tar"));
    s.import(&tar, "big");
    let counts = (
        chunks_of(&s, "big", "small").len(),
        chunks_of(&s, "big", "big").len(),
    );
    assert!(
        counts.0 > 64 && (12..64).contains(&counts.1),
        "chunks: {counts:?}"
    );
    let m = Mounted::new(&s, "big", "mnt");
    let dev = std::fs::metadata(&m.dir).unwrap().dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    assert_eq!(
        std::fs::read_to_string(&knob).unwrap().trim(),
        "4096",
        "{knob}: the mount's read-ahead"
    );
    for (name, data) in [("small", &small), ("big", &big)] {
        let f = std::fs::File::open(m.dir.join(name)).unwrap();
        let mut x = 0x51u64;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = (x % data.len() as u64) as usize;
            let len = 1 + (x >> 40) as usize % (300 << 10);
            let mut buf = vec![0u8; len];
            let n = f.read_at(&mut buf, offset as u64).unwrap();
            let end = (offset + len).min(data.len());
            assert_eq!(n, end - offset, "{name}: {len} bytes at {offset}");
            assert!(
                buf[..n] == data[offset..end],
                "{name}: {len} bytes at {offset}"
            );
        }
        let mut buf = [0u8; 10];
        let last = data.len() as u64 - 1;
        assert_eq!(f.read_at(&mut buf, last).unwrap(), 1);
        assert_eq!(buf[0], data[data.len() - 1]);
        assert_eq!(f.read_at(&mut buf, data.len() as u64).unwrap(), 0);
        assert_eq!(f.read_at(&mut buf, data.len() as u64 + 5).unwrap(), 0);
        assert!(m.read(name).unwrap() == *data, "the whole of {name}");
    }
}

/// Two images, the first flushed into a table (a log per writer open, and
/// more than 16 logs are flushed), the second in the log; the chunk count.
fn two_images_one_in_a_table() -> (Strata, usize) {
    let s = Strata::new();
    let first = TarMaker::new()
        .file("a", &noise(300_000, 41))
        .write(&s.path("first.tar"));
    s.import(&first, "first");
    for i in 0..18 {
        s.run(&["tag", "first", &format!("t{i}")]).ok();
        s.run(&["rmi", &format!("t{i}")]).ok();
    }
    let second = TarMaker::new()
        .file("b", &noise(300_000, 42))
        .write(&s.path("second.tar"));
    s.import(&second, "second");
    let chunks = chunk_count(&s.root());
    (s, chunks)
}

/// Index files an attacker review damaged: each made commands read a
/// smaller index (a lost CURRENT made a new one from the logs alone, a
/// lost `db/` an empty one, a damaged log record had writers drop every
/// later write, a lost or shortened table left readers with no table),
/// verify pass, and gc delete the chunks of the images it no longer saw. Each now fails every
/// command in one line, and gc deletes nothing.
#[test]
fn a_damaged_index_is_refused_not_shrunk() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 5] = [
        ("CURRENT removed", |db| {
            std::fs::remove_file(db.join("CURRENT")).unwrap()
        }),
        ("the whole index removed", |db| {
            std::fs::remove_dir_all(db).unwrap()
        }),
        ("a table cut short", |db| {
            let table = tables(db)[0].clone();
            let f = std::fs::OpenOptions::new().write(true).open(table).unwrap();
            f.set_len(1000).unwrap();
        }),
        ("a table removed", |db| {
            std::fs::remove_file(&tables(db)[0]).unwrap()
        }),
        ("a log record damaged", |db| {
            let log = logs(db).last().unwrap().clone();
            let len = std::fs::metadata(&log).unwrap().len();
            let mut bytes = std::fs::read(&log).unwrap();
            for b in &mut bytes[(len / 3) as usize..(len / 3) as usize + 4] {
                *b ^= 0xA5;
            }
            std::fs::write(&log, bytes).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let (s, chunks) = two_images_one_in_a_table();
        damage(&s.root().join("db"));
        for args in [
            &["images"][..],
            &["verify"],
            &["gc"],
            &["run", "--rm", "first", "true"],
        ] {
            let r = s.run(args);
            assert_eq!(r.code, 125, "{what}: {args:?}: {}{}", r.stdout, r.stderr);
            assert_eq!(
                r.stderr.lines().count(),
                1,
                "{what}: {args:?}: {}",
                r.stderr
            );
        }
        assert_eq!(chunk_count(&s.root()), chunks, "{what}: gc deleted chunks");
    }
}

fn files_ending(db: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(db)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn tables(db: &Path) -> Vec<PathBuf> {
    let found = files_ending(db, ".sst");
    assert!(!found.is_empty(), "no table in {}", db.display());
    found
}

fn logs(db: &Path) -> Vec<PathBuf> {
    files_ending(db, ".log")
}

#[test]
fn a_container_whose_record_is_damaged_is_reported_and_rm_removes_it() {
    let s = Strata::new();
    let tar = TarMaker::new().file("f", b"x").write(&s.path("a.tar"));
    s.import(&tar, "img:1");
    let id = s
        .run(&["create", "--name", "hurt", "img:1", "/f"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let dir = s.root().join("containers").join(&id);
    std::fs::write(dir.join("record.json"), b"{\"id\": 7").unwrap();
    let v = s.run(&["verify"]);
    assert_ne!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(
        format!("{}{}", v.stdout, v.stderr).contains(&format!("`rm {id}` removes it")),
        "{}{}",
        v.stdout,
        v.stderr
    );
    // By its full id only: a prefix or a name could mean another.
    let by_prefix = s.run(&["rm", &id[..12]]);
    assert_eq!(by_prefix.code, 1);
    assert!(dir.exists());
    s.run(&["rm", &id]).ok();
    assert!(!dir.exists());
    s.run(&["verify"]).ok();
    let again = s.run(&["rm", &id]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("No such container"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_running_container_whose_record_is_damaged_is_not_removed() {
    privileges::require_root_and_fuse();
    let s = Strata::with_busybox();
    let id = s
        .run(&["run", "-d", "--name", "live", "busybox", "sleep", "60"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let record = s.root().join("containers").join(&id).join("record.json");
    let kept = std::fs::read(&record).unwrap();
    std::fs::write(&record, b"{\"id\": 7").unwrap();
    let r = s.run(&["rm", "-f", &id]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("is running"), "{}", r.stderr);
    assert!(s.root().join("containers").join(&id).join("upper").is_dir());
    std::fs::write(&record, kept).unwrap();
    assert_eq!(s.run(&["ps", "-q"]).ok().stdout.trim(), &id[..12]);
    s.run(&["rm", "-f", &id]).ok();
}
