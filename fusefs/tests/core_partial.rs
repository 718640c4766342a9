//! Chunk-granular copy-up, driven on the union core without a mount: the
//! first write to a big file of a store layer copies only the blocks it
//! touches, and every later read, remount and commit still sees the bytes a
//! whole copy gives. The in-memory lower stands in for a store layer (it
//! has a layer id); the host directory lower is copied whole, so each test
//! compares the two ways against one model of the file, as fsx does.

mod common;

use common::fixture::{for_each_setup, writer, Fx, Item, LowerKind};
use common::noise;
use fusefs::union_fs::SetAttr;
use fusefs::{Layers, Lower, MemLower, UnionFs};
use std::io::Read;
use std::os::unix::fs::MetadataExt;

const MIB: u64 = 1 << 20;
/// Not a whole number of blocks, so the last block is a short one.
const SIZE: u64 = 24 * MIB + 12_345;
const RECORD: &str = "user.strata.partial";

fn big_lower() -> Vec<Item> {
    let data: &'static [u8] = Box::leak(noise(SIZE, 7).into_boxed_slice());
    vec![Item::Dir("d", 0o755), Item::File("d/big", data, 0o644)]
}

/// Bytes `[off, off + len)` of `path` read through one handle.
fn read_range(fx: &Fx, path: &str, off: u64, len: u32) -> Vec<u8> {
    let id = fx.id(path);
    let (fh, _) = fx.fs.open(id, libc::O_RDONLY).expect("open");
    let mut out = Vec::new();
    while out.len() < len as usize {
        let at = off + out.len() as u64;
        let part = fx
            .fs
            .read(id, Some(fh), at, len - out.len() as u32)
            .expect("read");
        if part.is_empty() {
            break;
        }
        out.extend(part);
    }
    fx.fs.release(fh);
    out
}

/// What a commit reads for `path`: the change's data, over fresh lowers.
fn committed(fx: &Fx, path: &str) -> Vec<u8> {
    let lowers = fx.lowers();
    let refs: Vec<&dyn Lower> = lowers.iter().map(|l| l.as_ref()).collect();
    let changes = fusefs::changes(fx.upper_root(), &refs).expect("changes");
    let change = changes
        .iter()
        .find(|c| c.path == path.as_bytes())
        .expect("the file is a change");
    let mut data = Vec::new();
    change
        .data(&refs)
        .expect("data")
        .expect("a regular file")
        .read_to_end(&mut data)
        .expect("read the change");
    data
}

fn host_bytes_used(fx: &Fx, path: &str) -> u64 {
    std::fs::metadata(fx.upper_path(path))
        .expect("upper file")
        .blocks()
        * 512
}

fn has_record(fx: &Fx, path: &str) -> bool {
    xattr::get(fx.upper_path(path), RECORD)
        .expect("getxattr")
        .is_some()
}

#[test]
fn a_first_write_copies_only_the_blocks_it_touches() {
    let lower = big_lower();
    for_each_setup(&lower, |fx| {
        let mut model = noise(SIZE, 7);
        fx.write("d/big", 5 * MIB + 3, b"x");
        model[(5 * MIB + 3) as usize] = b'x';
        if fx.setup.lower == LowerKind::Mem {
            assert!(has_record(fx, "d/big"), "a store file is copied by blocks");
            let used = host_bytes_used(fx, "d/big");
            assert!(used <= 2 * MIB, "one block copied, not {used} bytes");
        } else {
            assert!(!has_record(fx, "d/big"), "a host file is copied whole");
        }
        assert_eq!(fx.stat("d/big").entry.size, SIZE);
        assert!(fx.read("d/big") == model, "the union shows the whole file");
        assert!(
            committed(fx, "d/big") == model,
            "a commit reads the whole file"
        );
    });
}

#[test]
fn a_file_written_all_over_becomes_an_ordinary_one() {
    let lower = big_lower();
    for_each_setup(&lower, |fx| {
        let mut model = noise(SIZE, 7);
        let mut off = 0;
        while off < SIZE {
            fx.write("d/big", off, b"y");
            model[off as usize] = b'y';
            off += MIB / 2;
        }
        assert!(!has_record(fx, "d/big"), "every block is in the upper");
        assert!(std::fs::read(fx.upper_path("d/big")).expect("upper") == model);
    });
}

/// A little random generator, seeded, so a failure can be run again.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// fsx on a store-backed lower file: random writes, truncations (down and
/// up), holes punched and ranges zeroed, reads checked against a model, and
/// remounts; then the whole file through the union and through a commit.
#[test]
fn random_changes_read_the_same_as_a_whole_copy() {
    let lower = big_lower();
    for setup in common::fixture::setups() {
        eprintln!("setup: {setup:?}");
        let mut fx = Fx::new(setup, &[&lower]);
        let mut model = noise(SIZE, 7);
        let mut rng = Rng(42);
        for step in 0..400 {
            let len = model.len() as u64;
            let off = rng.below(len + 2 * MIB);
            let n = 1 + rng.below(3 * MIB);
            match rng.below(10) {
                0..=4 => {
                    let data = noise(n, step + 1);
                    fx.write("d/big", off, &data);
                    let end = (off + n) as usize;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                5 => {
                    let size = rng.below(SIZE + 4 * MIB);
                    let sa = SetAttr {
                        size: Some(size),
                        ..SetAttr::default()
                    };
                    fx.fs.setattr(fx.id("d/big"), &sa).expect("truncate");
                    model.resize(size as usize, 0);
                }
                6 => {
                    let mode = if rng.below(2) == 0 {
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
                    } else {
                        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
                    };
                    let id = fx.id("d/big");
                    let (fh, _) = fx.fs.open(id, libc::O_WRONLY).expect("open");
                    fx.fs
                        .fallocate((id, Some(fh)), off, n, mode, &writer())
                        .expect("fallocate");
                    fx.fs.release(fh);
                    let end = ((off + n) as usize).min(model.len());
                    if (off as usize) < end {
                        model[off as usize..end].fill(0);
                    }
                }
                7 => fx.remount(),
                _ => {
                    let got = read_range(&fx, "d/big", off, n as u32);
                    let want = model.get(off as usize..).unwrap_or_default();
                    let want = &want[..want.len().min(n as usize)];
                    assert!(got == want, "step {step}: read of {n} at {off} differs");
                }
            }
        }
        assert_eq!(fx.stat("d/big").entry.size, model.len() as u64);
        assert!(fx.read("d/big") == model, "the union shows the model");
        assert!(committed(&fx, "d/big") == model, "a commit reads the model");
        fx.remount();
        assert!(fx.read("d/big") == model, "and so does the next mount");
    }
}

#[test]
fn a_partial_file_whose_layer_is_gone_fails_to_read_rather_than_show_zeros() {
    let lower = big_lower();
    let setup = common::fixture::setups()[0];
    assert_eq!(setup.lower, LowerKind::Mem);
    let fx = Fx::new(setup, &[&lower]);
    fx.write("d/big", 0, b"z");
    let mut other = MemLower::new("another layer", 1);
    other.dir("d", 0o755);
    let layers = Layers::with_format(
        Some(fx.upper_root()),
        vec![Box::new(other)],
        Some(setup.format),
    )
    .expect("layers");
    let fs = UnionFs::new(layers, false);
    let d = fs.lookup(fusefs::NodeId::ROOT, b"d").expect("d").id;
    let id = fs.lookup(d, b"big").expect("big").id;
    let r = fs
        .open(id, libc::O_RDONLY)
        .map(|(fh, _)| fs.read(id, Some(fh), 1 << 20, 4096));
    let errno = match r {
        Err(e) | Ok(Err(e)) => e.errno(),
        Ok(Ok(data)) => panic!("read {} bytes of a file whose layer is gone", data.len()),
    };
    assert_eq!(errno, libc::EIO);
}

#[test]
fn an_unlinked_open_partial_file_keeps_its_content() {
    let lower = big_lower();
    for_each_setup(&lower, |fx| {
        let mut model = noise(SIZE, 7);
        let id = fx.id("d/big");
        let (fh, _) = fx.fs.open(id, libc::O_RDWR).expect("open");
        fx.fs
            .write(id, Some(fh), 3 * MIB, b"q", &writer())
            .expect("write");
        model[(3 * MIB) as usize] = b'q';
        let (d, name) = fx.parent("d/big");
        fx.fs.unlink(d, name).expect("unlink");
        fx.fs
            .write(id, Some(fh), 9 * MIB + 1, b"r", &writer())
            .expect("write");
        model[(9 * MIB + 1) as usize] = b'r';
        let (fh2, _) = fx.fs.open(id, libc::O_RDONLY).expect("reopen the orphan");
        assert!(common::fixture::read_fh(&fx.fs, id, fh2) == model);
        fx.fs.release(fh2);
        fx.fs.release(fh);
    });
}

#[test]
fn an_open_that_truncates_leaves_nothing_of_the_layer() {
    let lower = big_lower();
    for_each_setup(&lower, |fx| {
        fx.write("d/big", 5 * MIB, b"x");
        let id = fx.id("d/big");
        let (fh, _) = fx
            .fs
            .open(id, libc::O_WRONLY | libc::O_TRUNC)
            .expect("open");
        fx.fs
            .write(id, Some(fh), 0, b"abc", &writer())
            .expect("write");
        fx.fs.release(fh);
        let sa = SetAttr {
            size: Some(2 * MIB),
            ..SetAttr::default()
        };
        fx.fs.setattr(id, &sa).expect("extend");
        let mut model = b"abc".to_vec();
        model.resize((2 * MIB) as usize, 0);
        assert!(fx.read("d/big") == model, "zeros after the new bytes");
        assert!(!has_record(fx, "d/big"));
    });
}

/// A copy-up that moves no byte (chmod) leaves the upper file all holes:
/// its blocks must still count the layer's bytes, or a sparse-aware
/// reader (export's tar, GNU tar --sparse) takes it for all holes.
#[test]
fn a_file_copied_up_for_its_metadata_counts_its_layers_bytes_as_used() {
    let lower = big_lower();
    for_each_setup(&lower, |fx| {
        let sa = SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        };
        fx.fs.setattr(fx.id("d/big"), &sa).expect("chmod");
        assert!(fx.in_upper("d/big"));
        let blocks = fx.stat("d/big").blocks;
        assert!(blocks * 512 >= SIZE, "{blocks} blocks for {SIZE} bytes");
        assert!(fx.read("d/big") == noise(SIZE, 7));
    });
}

/// fallocate's collapse moves bytes: every block must be in the upper
/// first, copied, not just marked.
#[test]
fn a_collapsed_range_moves_the_layers_bytes() {
    let lower = big_lower();
    for_each_setup(&lower, |fx| {
        let mut model = noise(SIZE, 7);
        fx.write("d/big", 5 * MIB, b"x");
        model[(5 * MIB) as usize] = b'x';
        let id = fx.id("d/big");
        let (fh, _) = fx.fs.open(id, libc::O_WRONLY).expect("open");
        let collapse = libc::FALLOC_FL_COLLAPSE_RANGE;
        fx.fs
            .fallocate((id, Some(fh)), MIB, MIB, collapse, &writer())
            .expect("collapse");
        fx.fs.release(fh);
        model.drain(MIB as usize..(2 * MIB) as usize);
        assert!(
            fx.read("d/big") == model,
            "the bytes after the range moved down"
        );
    });
}

/// A read-only mount (export's) over an upper whose file was shrunk after
/// its record was stored reads the right bytes but leaves the record to
/// the container's own server: the two must not both write it.
#[test]
fn a_read_only_mount_never_writes_a_record() {
    let lower = big_lower();
    let setup = common::fixture::setups()[0];
    let fx = Fx::new(setup, &[&lower]);
    fx.write("d/big", 5 * MIB, b"x");
    let host = fx.upper_path("d/big");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&host)
        .expect("open")
        .set_len(3 * MIB)
        .expect("shrink behind the record");
    let before = xattr::get(&host, RECORD).expect("getxattr");
    let layers = Layers::with_format(Some(fx.upper_root()), fx.lowers(), Some(setup.format))
        .expect("layers");
    let fs = UnionFs::new(layers, true);
    let d = fs.lookup(fusefs::NodeId::ROOT, b"d").expect("d").id;
    let id = fs.lookup(d, b"big").expect("big").id;
    let (fh, _) = fs.open(id, libc::O_RDONLY).expect("open");
    let data = common::fixture::read_fh(&fs, id, fh);
    assert!(data == noise(SIZE, 7)[..(3 * MIB) as usize]);
    assert_eq!(
        xattr::get(&host, RECORD).expect("getxattr"),
        before,
        "record unchanged"
    );
    // The writable mount stores the cut with its first change.
    fx.write("d/big", 0, b"y");
    let after = xattr::get(&host, RECORD)
        .expect("getxattr")
        .expect("a record");
    assert_ne!(Some(after), before);
}
