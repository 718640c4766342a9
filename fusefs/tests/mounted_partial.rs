//! fsx on a store-backed lower file, through the kernel: a big file of a
//! layer with an id (the in-memory layer stands in for a store layer) is
//! copied up block by block, and random pwrites, preads, truncations, holes
//! punched, shared-mmap writes and copy_file_range must read back as a
//! model of the file says, also after a remount and through a commit's
//! change set. (The fsx tool opens its file with O_TRUNC, or fills it
//! first, so it never sees a partly copied file: this is fsx's loop,
//! written for one.) Needs root and /dev/fuse, as every mount test.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::noise;
use fusefs::{changes, Lower, MemLower, MountHandle, MountOptions, UpperFormat};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 20 * MIB + 4321;

fn lower() -> Box<dyn Lower> {
    let mut l = MemLower::new("store layer", 1);
    l.dir("d", 0o755);
    l.file("d/big", &noise(SIZE, 9));
    Box::new(l)
}

fn mount(upper: &Path, mnt: &Path, format: UpperFormat) -> MountHandle {
    let mut o = MountOptions::new(vec![lower()], Some(upper.to_path_buf()));
    o.upper_format = Some(format);
    let h = fusefs::mount(o, mnt).expect("mount");
    let want = mnt.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
    {
        assert!(Instant::now() < deadline, "{want} never mounted");
        std::thread::sleep(Duration::from_millis(5));
    }
    h
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Writes `data` at `off` of `file` through a shared mapping of the pages
/// around it, and syncs the mapping.
fn mmap_write(file: &File, off: u64, data: &[u8]) {
    let page = 4096;
    let start = off / page * page;
    let len = (off - start) as usize + data.len();
    // SAFETY: a fresh shared mapping of `len` bytes of an open descriptor,
    // within the file's size (the caller checks), used only below and
    // unmapped before return; nothing else maps it meanwhile.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            start as libc::off_t,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let at = (p as *mut u8).add((off - start) as usize);
        std::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len());
        assert_eq!(libc::msync(p, len, libc::MS_SYNC), 0, "msync");
        assert_eq!(libc::munmap(p, len), 0, "munmap");
    }
}

fn read_all(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn random_operations_on_a_store_file_through_the_kernel_read_back_as_the_model() {
    common::require_fuse();
    let formats = [UpperFormat::Rootless, UpperFormat::detect()];
    for (round, format) in formats.into_iter().enumerate() {
        eprintln!("upper format: {format:?}");
        let dir = tempfile::tempdir().unwrap();
        let (upper, mnt) = (dir.path().join("upper"), dir.path().join("mnt"));
        std::fs::create_dir_all(&mnt).unwrap();
        let h = mount(&upper, &mnt, format);
        let path = mnt.join("d/big");
        let mut model = noise(SIZE, 9);
        let mut rng = Rng(0x5eed + round as u64);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        for step in 0..600 {
            let len = model.len() as u64;
            let off = rng.below(len + MIB);
            let n = 1 + rng.below(2 * MIB);
            match rng.below(12) {
                0..=3 => {
                    let data = noise(n, step + 1);
                    file.write_all_at(&data, off).unwrap();
                    let end = (off + n) as usize;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                4 if off + n <= len => {
                    let data = noise(n, step + 7);
                    mmap_write(&file, off, &data);
                    model[off as usize..(off + n) as usize].copy_from_slice(&data);
                }
                5 => {
                    let size = rng.below(SIZE + 2 * MIB);
                    file.set_len(size).unwrap();
                    model.resize(size as usize, 0);
                }
                6 => {
                    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                    // SAFETY: fallocate on an open descriptor; no memory passed.
                    let r =
                        unsafe { libc::fallocate(file.as_raw_fd(), mode, off as i64, n as i64) };
                    assert_eq!(r, 0, "punch: {}", std::io::Error::last_os_error());
                    let end = ((off + n) as usize).min(model.len());
                    if (off as usize) < end {
                        model[off as usize..end].fill(0);
                    }
                }
                7 if off < len => {
                    // Within the file: bytes from one place to another.
                    let to = rng.below(len);
                    let n = n.min(len - off) as usize;
                    let mut from_off = off as i64;
                    let mut to_off = to as i64;
                    let out = file.try_clone().unwrap();
                    // SAFETY: both descriptors are open; the offsets are
                    // ours and outlive the call.
                    let r = unsafe {
                        libc::copy_file_range(
                            file.as_raw_fd(),
                            &mut from_off,
                            out.as_raw_fd(),
                            &mut to_off,
                            n,
                            0,
                        )
                    };
                    if r < 0 {
                        // Overlapping ranges of one file: EINVAL, as on ext4.
                        let e = std::io::Error::last_os_error().raw_os_error();
                        assert_eq!(e, Some(libc::EINVAL), "copy_file_range");
                    } else {
                        let r = r as usize;
                        let data = model[off as usize..off as usize + r].to_vec();
                        let end = to as usize + r;
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[to as usize..end].copy_from_slice(&data);
                    }
                }
                8 => {
                    file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .unwrap();
                }
                _ => {
                    let mut got = vec![0u8; n as usize];
                    let mut done = 0;
                    while done < got.len() {
                        let k = file.read_at(&mut got[done..], off + done as u64).unwrap();
                        if k == 0 {
                            break;
                        }
                        done += k;
                    }
                    got.truncate(done);
                    let want = model.get(off as usize..).unwrap_or_default();
                    let want = &want[..want.len().min(n as usize)];
                    assert!(got == want, "step {step}: read of {n} at {off} differs");
                }
            }
        }
        drop(file);
        assert!(read_all(&path) == model, "the mount shows the model");
        h.unmount().unwrap();
        let h2 = mount(&upper, &mnt, format);
        assert!(read_all(&path) == model, "and after a remount");
        drop(h2);
        let l = lower();
        let refs: Vec<&dyn Lower> = vec![l.as_ref()];
        let cs = changes(&upper, &refs).unwrap();
        let c = cs.iter().find(|c| c.path == b"d/big").expect("a change");
        let mut committed = Vec::new();
        c.data(&refs)
            .unwrap()
            .unwrap()
            .read_to_end(&mut committed)
            .unwrap();
        assert!(committed == model, "a commit reads the model");
    }
}
