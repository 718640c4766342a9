//! FUSE over io_uring (Linux 6.14 and later, `FUSE_OVER_IO_URING`).
//!
//! Not part of the fuser release: added for strata (see VENDORED.md).
//!
//! The kernel keeps one queue per possible CPU and hands a request to the
//! queue of the CPU its caller runs on. Each queue here is one thread, pinned
//! to that CPU, with a few ring entries: a header buffer and a payload buffer
//! the kernel fills with a request and reads the reply from. A request and
//! its reply are then one `io_uring_enter` on the caller's own CPU, where
//! `/dev/fuse` costs a read and a write and usually two cross-CPU wakeups.
//!
//! Forgets and interrupts still come through `/dev/fuse` (the kernel sends
//! them there), so the device threads keep running beside the queues.
//!
//! Once the INIT reply accepts io_uring, the kernel holds every new request
//! until each queue has an entry, and falls back to `/dev/fuse` only if a
//! registration is refused. So the rings are made before that reply
//! ([`prepare`]): where io_uring is refused (a seccomp profile,
//! `kernel.io_uring_disabled`) the reply does not ask for it. A queue that
//! stops while the connection lives would leave its CPU's requests waiting
//! for good; the server aborts instead ([`fatal`]), which the kernel turns
//! into a dead mount (ENOTCONN) rather than a hung one.

use std::io;
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use nix::sys::eventfd::EfdFlags;
use nix::sys::eventfd::EventFd;
use log::error;
use log::warn;

use crate::Filesystem;
use crate::channel::Channel;
use crate::channel::ChannelSender;
use crate::ll::Operation;
use crate::ll::fuse_abi as abi;
use crate::read_buf::FuseReadBuf;
use crate::request::RequestWithSender;
use crate::session::Served;
use crate::session::SessionEventLoop;

/// `enum fuse_uring_cmd`: give the kernel an entry to fill.
const CMD_REGISTER: u32 = 1;
/// `enum fuse_uring_cmd`: the reply is in the entry, fill it again.
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `struct fuse_uring_req_header`: `in_out[128]` (the `fuse_in_header` of a
/// request, the `fuse_out_header` of its reply), `op_in[128]` (the
/// operation's own header, the request's first argument) and
/// `struct fuse_uring_ent_in_out` (flags, commit_id, payload_sz, padding,
/// reserved).
const HEADER_SIZE: usize = 128 + 128 + 32;
const OP_IN: usize = 128;
const COMMIT_ID: usize = 256 + 8;
const PAYLOAD_SZ: usize = 256 + 16;
const IN_HEADER: usize = size_of::<abi::fuse_in_header>();
const OUT_HEADER: usize = size_of::<abi::fuse_out_header>();

/// Entries per queue. A queue's thread serves one request at a time; a
/// second entry lets the kernel hand over the next request while the first
/// is being served (or waits for a reply from another thread, see
/// [`Late`]), so the thread finds it without another wait.
const DEPTH: usize = 2;

/// Errors that mean the connection is going away: the queue ends quietly.
const GONE: [i32; 4] = [
    libc::ENOTCONN,
    libc::ECONNABORTED,
    libc::ECANCELED,
    libc::ENODEV,
];

/// The queues the kernel makes: one per possible CPU (`num_possible_cpus`).
fn queue_count() -> io::Result<u16> {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let bad = || io::Error::other(format!("cannot read possible CPUs {possible:?}"));
    let mut count = 0u16;
    for range in possible.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first: u16 = first.parse().map_err(|_| bad())?;
        let last: u16 = last.parse().map_err(|_| bad())?;
        count += last.checked_sub(first).ok_or_else(bad)? + 1;
    }
    Ok(count)
}

/// A connection's queues, made before the INIT reply asks for io_uring
/// (see the module's documentation): a ring and a thread per queue. Each
/// thread waits for what it serves requests with until `Session::run`
/// starts it, and enables its ring itself, as a ring with a single issuer
/// belongs to the thread that enables it. Dropped unstarted, the threads
/// end and their rings with them.
pub(crate) struct Queues<FS: Filesystem> {
    threads: Vec<(
        std::thread::JoinHandle<io::Result<()>>,
        std::sync::mpsc::Sender<(SessionEventLoop<FS>, ChannelSender)>,
    )>,
}

impl<FS: Filesystem> std::fmt::Debug for Queues<FS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queues({})", self.threads.len())
    }
}

/// Makes a ring and a thread per queue, or says why io_uring cannot be
/// used (io_uring refused, no thread to be had).
pub(crate) fn prepare<FS: Filesystem>(max_write: u32, max_pages: u16) -> io::Result<Queues<FS>> {
    let payload_size = payload_size(max_write, max_pages);
    let mut threads = Vec::new();
    for qid in 0..queue_count()? {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            // A commit per entry and the poll for late replies, twice over.
            .build((DEPTH as u32 + 1) * 2)?;
        let (start, started) = std::sync::mpsc::channel::<(SessionEventLoop<FS>, ChannelSender)>();
        let thread = std::thread::Builder::new()
            .name(format!("fuser-ring-{qid}"))
            .spawn(move || {
                if let Ok((se, sender)) = started.recv() {
                    serve(qid, ring, &se, &sender, payload_size);
                }
                Ok(())
            })?;
        threads.push((thread, start));
    }
    Ok(Queues { threads })
}

impl<FS: Filesystem> Queues<FS> {
    /// Starts each queue's thread serving requests with what
    /// `loop_for(qid)` gives it.
    pub(crate) fn start(
        self,
        loop_for: impl Fn(u16) -> (SessionEventLoop<FS>, ChannelSender),
    ) -> Vec<std::thread::JoinHandle<io::Result<()>>> {
        let mut threads = Vec::with_capacity(self.threads.len());
        for (qid, (thread, start)) in (0u16..).zip(self.threads) {
            if start.send(loop_for(qid)).is_err() {
                // The kernel would hold every request for this queue.
                fatal(qid, "its thread has gone");
            }
            threads.push(thread);
        }
        threads
    }
}

/// A queue cannot go on while the connection lives: its CPU's requests
/// would wait for good. Aborting makes the kernel end the connection.
fn fatal(qid: u16, what: &str) -> ! {
    error!("FUSE io_uring queue {qid}: {what}; aborting, as the queue's requests would hang");
    std::process::abort()
}

/// The size of a payload buffer: the kernel refuses smaller ones
/// (`ring->max_payload_sz`).
fn payload_size(max_write: u32, max_pages: u16) -> usize {
    let pages = usize::from(max_pages) * page_size::get();
    abi::consts::FUSE_MIN_READ_BUFFER
        .max(max_write as usize)
        .max(pages)
}

/// One entry's memory: the header, then the payload, in one 8-byte aligned
/// block so that a request can be laid out contiguously in front of its
/// payload (see [`Entry::request`]).
///
/// The block is a raw allocation and every pointer into it (the kernel's
/// iovecs, the request handed to the filesystem, a reply written in place)
/// comes from the one pointer made at allocation, so none of them is
/// invalidated by a later borrow of the entry.
struct Entry {
    block: std::ptr::NonNull<u8>,
    /// `iov[0]` the header, `iov[1]` the payload; read by the kernel when
    /// the entry is registered.
    iov: Box<[libc::iovec; 2]>,
    payload_size: usize,
}

impl Entry {
    fn layout(payload_size: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(HEADER_SIZE + payload_size, 8)
            .unwrap_or_else(|_| panic!("a payload of {payload_size} bytes"))
    }

    fn new(payload_size: usize) -> Entry {
        let layout = Entry::layout(payload_size);
        // SAFETY: the layout is not zero-sized (HEADER_SIZE > 0).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(block) = std::ptr::NonNull::new(base) else {
            std::alloc::handle_alloc_error(layout)
        };
        let iov = Box::new([
            libc::iovec {
                iov_base: base.cast(),
                iov_len: HEADER_SIZE,
            },
            libc::iovec {
                // SAFETY: the block holds HEADER_SIZE + payload_size bytes.
                iov_base: unsafe { base.add(HEADER_SIZE) }.cast(),
                iov_len: payload_size,
            },
        ]);
        Entry {
            block,
            iov,
            payload_size,
        }
    }

    fn base(&self) -> *mut u8 {
        self.block.as_ptr()
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the block is HEADER_SIZE + payload_size initialised
        // bytes, borrowed for as long as self is.
        unsafe { std::slice::from_raw_parts(self.base(), HEADER_SIZE + self.payload_size) }
    }

    fn read<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut v = [0u8; N];
        v.copy_from_slice(&self.bytes()[at..at + N]);
        v
    }

    fn read_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.read(at))
    }

    fn read_u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.read(at))
    }

    /// The entry's header and payload as a reply's destination.
    fn direct(&self) -> Direct {
        Direct {
            block: self.base(),
            payload_size: self.payload_size,
        }
    }

    /// Moves the request the kernel wrote (its `fuse_in_header` in `in_out`,
    /// its first argument in `op_in`, the rest in the payload) into one
    /// contiguous run ending where the payload begins, as `/dev/fuse` would
    /// have delivered it, and returns where it starts and how long it is.
    /// Only the headers move (at most 168 bytes); the payload stays put.
    /// Also returns the payload's length: the move may overwrite the
    /// trailer (`fuse_uring_ent_in_out`) it was read from, and commit_id
    /// with it, which [`serve`] reads before.
    fn request(&mut self) -> Option<(usize, usize, usize)> {
        let len = self.read_u32(0) as usize;
        let payload = self.read_u32(PAYLOAD_SZ) as usize;
        let op = len.checked_sub(IN_HEADER + payload)?;
        if op > 128 || payload > self.payload_size || op % 8 != 0 {
            return None;
        }
        let start = HEADER_SIZE - op - IN_HEADER;
        let base = self.base();
        // SAFETY: every range lies in the block's header (0..HEADER_SIZE);
        // ptr::copy allows overlap. op_in moves first: its new place may
        // cover bytes of in_out's, never the reverse (start >= 120 > 40).
        unsafe {
            ptr::copy(base.add(OP_IN), base.add(HEADER_SIZE - op), op);
            ptr::copy(base, base.add(start), IN_HEADER);
        }
        Some((start, len, payload))
    }

    /// Writes a reply: the `fuse_out_header` into `in_out`, the rest into
    /// the payload, and the payload's length.
    fn put_reply(&mut self, reply: &[u8]) -> Result<(), ()> {
        let rest = self.direct().write(&[io::IoSlice::new(reply)]).ok_or(())?;
        self.set_payload_sz(rest);
        Ok(())
    }

    fn set_payload_sz(&mut self, n: usize) {
        let base = self.base();
        // SAFETY: PAYLOAD_SZ + 4 <= HEADER_SIZE.
        unsafe { ptr::write_unaligned(base.add(PAYLOAD_SZ).cast::<u32>(), n as u32) };
    }

    /// An error reply for a request that could not be served.
    fn put_error(&mut self, unique: u64, errno: i32) {
        let header = abi::fuse_out_header {
            len: OUT_HEADER as u32,
            error: -errno,
            unique,
        };
        let base = self.base();
        // SAFETY: OUT_HEADER bytes fit in in_out.
        unsafe { ptr::write_unaligned(base.cast::<abi::fuse_out_header>(), header) };
        self.set_payload_sz(0);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // SAFETY: allocated in Entry::new with this layout, freed once.
        unsafe { std::alloc::dealloc(self.base(), Entry::layout(self.payload_size)) }
    }
}

/// Where a ring request's reply goes. Replies usually come from the queue's
/// own thread while it serves the request, but a filesystem may send one
/// from anywhere (a big READ served on another CPU): then the thread goes
/// on with its other entries and commits this one when the reply comes
/// (see [`Late`]). Without a `Late` it waits for the reply instead.
#[derive(Debug, Default)]
pub(crate) struct RingReply {
    state: Mutex<ReplyState>,
    sent: Condvar,
    /// This entry's index in its queue.
    index: usize,
    late: Option<Arc<Late>>,
}

/// The entries of a queue whose replies came from another thread after
/// the queue's thread had moved on, and an eventfd the thread polls in its
/// ring, written for each.
#[derive(Debug)]
struct Late {
    done: Mutex<Vec<usize>>,
    wake: EventFd,
}

impl Late {
    fn new() -> io::Result<Late> {
        let flags = EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
        Ok(Late {
            done: Mutex::new(Vec::with_capacity(DEPTH)),
            wake: EventFd::from_value_and_flags(0, flags)?,
        })
    }

    fn push(&self, index: usize) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(index);
        // A full counter (EAGAIN) has the thread's wake pending already.
        let _ = self.wake.write(1);
    }

    /// The entries replied to since the last call; clears the eventfd.
    fn take(&self) -> Vec<usize> {
        // EAGAIN when nothing was written is fine.
        let _ = self.wake.read();
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Wakes the queue's thread when the eventfd is written.
    fn poll_sqe(&self) -> squeue::Entry128 {
        opcode::PollAdd::new(types::Fd(self.wake.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(WAKE)
            .into()
    }
}

/// The `user_data` of the poll on [`Late::wake`]; entries use their index.
const WAKE: u64 = u64::MAX;

#[derive(Debug, Default)]
struct ReplyState {
    /// Serving a request; its reply not yet given.
    waiting: bool,
    /// The `unique` of the request served: a late reply to an earlier one
    /// (sent from another thread after the panic path answered it) must
    /// not become this one's.
    unique: u64,
    /// Where the reply may be written in place (see [`Direct`]).
    direct: Option<Direct>,
    /// The payload length of a reply written in place.
    direct_len: Option<usize>,
    /// The queue's thread is asleep in `take` until the reply comes. Most
    /// replies are sent by that thread itself before it gets there, and a
    /// wake with nobody asleep is still a futex call: one per request.
    parked: bool,
    /// The queue's thread moved on without the reply: the sender hands
    /// the entry to [`Late`].
    deferred: bool,
    /// Otherwise the reply's bytes, out header first.
    reply: Vec<u8>,
}

/// The entry of a request that left its payload empty (READ, READDIR,
/// GETATTR, ...): nothing of the request lies in the payload or the first
/// bytes of the header, so a reply (a whole READ's data) is written there at
/// once instead of being copied twice.
#[derive(Debug, Clone, Copy)]
struct Direct {
    block: *mut u8,
    payload_size: usize,
}

// SAFETY: a Direct is written through only by the one sender of the reply,
// while the queue thread that owns the entry waits for that reply
// (RingReply::take) and touches neither region.
unsafe impl Send for Direct {}

impl Direct {
    /// Writes `bufs` as a reply: its first OUT_HEADER bytes to the header,
    /// the rest to the payload. None if they do not fit.
    fn write(self, bufs: &[io::IoSlice<'_>]) -> Option<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let rest = total.checked_sub(OUT_HEADER)?;
        if rest > self.payload_size {
            return None;
        }
        let mut at = 0;
        for b in bufs {
            let mut b: &[u8] = b;
            if at < OUT_HEADER {
                let n = b.len().min(OUT_HEADER - at);
                // SAFETY: at + n <= OUT_HEADER, inside the header's in_out.
                unsafe { ptr::copy_nonoverlapping(b.as_ptr(), self.block.add(at), n) };
                at += n;
                b = &b[n..];
            }
            // SAFETY: at - OUT_HEADER + b.len() <= rest <= payload_size.
            unsafe {
                let to = self.block.add(HEADER_SIZE + at - OUT_HEADER);
                // Data read into the payload in place (see
                // RingReply::payload) is already where it goes.
                if b.as_ptr() != to.cast_const() {
                    ptr::copy_nonoverlapping(b.as_ptr(), to, b.len());
                }
            }
            at += b.len();
        }
        Some(rest)
    }
}

/// The `unique` of the `fuse_out_header` a reply starts with (bytes 8..16),
/// gathered across its slices; None for a reply too short to have one.
fn reply_unique(bufs: &[io::IoSlice<'_>]) -> Option<u64> {
    let mut header = [0u8; OUT_HEADER];
    let mut at = 0;
    for b in bufs {
        let n = b.len().min(OUT_HEADER - at);
        header[at..at + n].copy_from_slice(&b[..n]);
        at += n;
        if at == OUT_HEADER {
            let unique: [u8; 8] = header[8..16].try_into().ok()?;
            return Some(u64::from_ne_bytes(unique));
        }
    }
    None
}

impl RingReply {
    fn lock(&self) -> MutexGuard<'_, ReplyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The payload of the entry awaiting this reply, when the reply may
    /// be written in place and `size` bytes fit: a READ's data read
    /// straight into it is then copied once, by the kernel, instead of
    /// three times (into a buffer, into the payload, into the page).
    /// The caller writes there only before its `send`, whose data then
    /// begins at this pointer.
    pub(crate) fn payload(&self, size: usize) -> Option<*mut u8> {
        let state = self.lock();
        let direct = state.direct.filter(|d| state.waiting && size <= d.payload_size)?;
        // SAFETY: HEADER_SIZE is inside the block (Entry::layout).
        Some(unsafe { direct.block.add(HEADER_SIZE) })
    }

    pub(crate) fn send(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        let mut state = self.lock();
        if !state.waiting || reply_unique(bufs).is_some_and(|u| u != state.unique) {
            return Err(io::Error::other("a ring reply with no request waiting"));
        }
        state.direct_len = state.direct.take().and_then(|d| d.write(bufs));
        if state.direct_len.is_none() {
            state.reply.clear();
            for b in bufs {
                state.reply.extend_from_slice(b);
            }
        }
        state.waiting = false;
        if state.deferred {
            state.deferred = false;
            drop(state);
            if let Some(late) = &self.late {
                late.push(self.index);
            }
        } else if state.parked {
            self.sent.notify_all();
        }
        Ok(())
    }

    fn new(index: usize, late: Option<Arc<Late>>) -> RingReply {
        RingReply {
            index,
            late,
            ..RingReply::default()
        }
    }

    /// Leaves the reply in `entry` (true) if it came, or marks the entry
    /// as waiting for a reply from another thread (false), which
    /// [`Late`] will bring back; with no `Late`, waits for it.
    fn take_or_defer(&self, entry: &mut Entry) -> bool {
        {
            let mut state = self.lock();
            if state.waiting && self.late.is_some() {
                state.deferred = true;
                return false;
            }
        }
        self.take(entry);
        true
    }

    fn arm(&self, unique: u64, direct: Option<Direct>) {
        let mut state = self.lock();
        state.waiting = true;
        state.unique = unique;
        state.direct = direct;
        state.direct_len = None;
    }

    /// Waits for the reply and leaves it in `entry` (an EIO for the
    /// request armed if the reply does not fit).
    fn take(&self, entry: &mut Entry) {
        let mut state = self.lock();
        while state.waiting {
            state.parked = true;
            state = self.sent.wait(state).unwrap_or_else(|e| e.into_inner());
            state.parked = false;
        }
        match state.direct_len {
            Some(n) => entry.set_payload_sz(n),
            None => {
                if entry.put_reply(&state.reply).is_err() {
                    entry.put_error(state.unique, libc::EIO);
                }
            }
        }
    }
}

/// `struct fuse_uring_cmd_req` (flags, commit_id, qid, padding) in the
/// SQE's 80-byte command area.
fn command(qid: u16, commit_id: u64) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    cmd
}

/// A REGISTER entry: like any uring command, plus `len`, the number of
/// iovecs at `addr`, which `opcode::UringCmd80` has no setter for.
fn register_sqe(fd: i32, qid: u16, entry: &Entry, index: usize) -> squeue::Entry128 {
    let sqe = opcode::UringCmd80::new(types::Fd(fd), CMD_REGISTER)
        .cmd(command(qid, 0))
        .addr(Some(entry.iov.as_ptr() as u64))
        .build()
        .user_data(index as u64);
    // SAFETY: Entry128 is repr(C), 128 bytes: the kernel's io_uring_sqe in
    // its SQE128 form, where `len` (u32) is at byte 24.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
    // SAFETY: the same bytes back, with len set.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

fn commit_sqe(fd: i32, qid: u16, commit_id: u64, index: usize) -> squeue::Entry128 {
    opcode::UringCmd80::new(types::Fd(fd), CMD_COMMIT_AND_FETCH)
        .cmd(command(qid, commit_id))
        .build()
        .user_data(index as u64)
}

fn pin_to_cpu(cpu: u16) {
    if usize::from(cpu) >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays in bounds
    // for a cpu below CPU_SETSIZE, checked above.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(usize::from(cpu), &mut set);
        // A CPU that is possible but offline refuses: the queue still
        // serves, from wherever the scheduler puts it.
        let _ = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Whether the connection on `/dev/fuse` (`fd`) has been aborted: the
/// device then polls as an error (`fuse_dev_poll`), which `fuse_abort_conn`
/// makes so before it tears the queues down.
fn connection_gone(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLERR != 0
}

/// Errors of `io_uring_enter` worth waiting out.
const TRANSIENT: [i32; 4] = [libc::EINTR, libc::EAGAIN, libc::EBUSY, libc::ENOMEM];

/// Serves queue `qid` through `ring` until the connection goes away.
fn serve<FS: Filesystem>(
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    se: &SessionEventLoop<FS>,
    sender: &ChannelSender,
    payload_size: usize,
) {
    pin_to_cpu(qid);
    if let Err(e) = ring.submitter().register_enable_rings() {
        fatal(qid, &format!("cannot enable its ring: {e}"));
    }
    let mut entries: Vec<Entry> = (0..DEPTH).map(|_| Entry::new(payload_size)).collect();
    let mut ring = ring;
    serve_entries(qid, &mut ring, &mut entries, se, sender);
    // The ring goes first: it may hold the entries' buffers.
    drop(ring);
    drop(entries);
}

fn serve_entries<FS: Filesystem>(
    qid: u16,
    ring: &mut IoUring<squeue::Entry128, cqueue::Entry>,
    entries: &mut [Entry],
    se: &SessionEventLoop<FS>,
    sender: &ChannelSender,
) {
    let fd = se.ch.as_fd().as_raw_fd();
    let mut drain = Drain::open(&se.ch);
    let late = match Late::new() {
        Ok(late) => Some(Arc::new(late)),
        Err(e) => {
            warn!("FUSE io_uring queue {qid}: no eventfd ({e}): replies from other threads are waited for");
            None
        }
    };
    let replies: Vec<Arc<RingReply>> = (0..DEPTH)
        .map(|i| Arc::new(RingReply::new(i, late.clone())))
        .collect();
    // A deferred entry's commit id, read before serving moved the
    // request over it (see `Entry::request`).
    let mut commit_ids = [0u64; DEPTH];
    let push = |ring: &mut IoUring<squeue::Entry128, cqueue::Entry>, sqe: &squeue::Entry128| {
        // SAFETY: a REGISTER points at an entry's iovecs and buffers, which
        // outlive the ring (serve drops the ring first); a COMMIT carries
        // no pointer.
        if unsafe { ring.submission().push(sqe) }.is_err() {
            fatal(qid, "its submission queue is full");
        }
    };
    for (i, e) in entries.iter().enumerate() {
        push(ring, &register_sqe(fd, qid, e, i));
    }
    if let Some(late) = &late {
        push(ring, &late.poll_sqe());
    }
    // Whether an entry's last command was a REGISTER (or a COMMIT).
    let mut registering = [true; DEPTH];
    let mut live = DEPTH;
    let mut done: Vec<(usize, i32)> = Vec::with_capacity(DEPTH);
    while live > 0 {
        if let Err(e) = ring.submit_and_wait(1) {
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(n) if TRANSIENT.contains(&n) => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                _ => fatal(qid, &format!("io_uring_enter: {e}")),
            }
            continue;
        }
        done.clear();
        done.extend(
            ring.completion()
                .map(|c| (c.user_data() as usize, c.result())),
        );
        for &(i, res) in &done {
            if i as u64 == WAKE {
                // Replies another thread sent: commit their entries.
                let Some(late) = &late else { continue };
                for j in late.take() {
                    replies[j].take(&mut entries[j]);
                    push(ring, &commit_sqe(fd, qid, commit_ids[j], j));
                }
                if res < 0 {
                    warn!(
                        "FUSE io_uring queue {qid}: polling for late replies: {}",
                        io::Error::from_raw_os_error(-res)
                    );
                }
                push(ring, &late.poll_sqe());
                continue;
            }
            if res < 0 {
                if GONE.contains(&-res) {
                    live -= 1;
                    continue;
                }
                let err = io::Error::from_raw_os_error(-res);
                if !registering[i] {
                    // An unmount racing the commit (the kernel checks the
                    // connection before it takes the queue's lock) refuses
                    // it with ENOENT or EIO: the connection is gone.
                    if connection_gone(fd) {
                        live -= 1;
                        continue;
                    }
                    // Otherwise the kernel ended neither the request nor
                    // the entry (commit_id unknown, or a bad reply).
                    fatal(qid, &format!("a reply was refused: {err}"));
                }
                if res != -libc::EAGAIN {
                    // The kernel gave up io_uring for this connection and
                    // serves it through /dev/fuse.
                    warn!("FUSE io_uring queue {qid}: registering refused: {err}");
                    live -= 1;
                    continue;
                }
                // The kernel has not finished INIT yet.
                std::thread::sleep(std::time::Duration::from_millis(1));
                push(ring, &register_sqe(fd, qid, &entries[i], i));
                continue;
            }
            registering[i] = false;
            let commit_id = entries[i].read_u64(COMMIT_ID);
            commit_ids[i] = commit_id;
            if serve_one(&mut entries[i], &replies[i], se, sender) {
                push(ring, &commit_sqe(fd, qid, commit_id, i));
            }
            if drain.as_mut().is_some_and(|d| !d.after_request(se)) {
                drain = None;
            }
        }
    }
}

/// Forgets read by a queue's own thread. Over io_uring the kernel sends
/// forgets (and interrupts) through `/dev/fuse` alone, to the device
/// thread, and nothing made a client wait for that thread: a client that
/// created and removed files while it waited for a CPU left an open
/// orphan per file behind it, hundreds of them (EMFILE at a low
/// descriptor limit). Over `/dev/fuse` the kernel hands a reader the
/// queued forgets between requests; reading them here every
/// [`DRAIN_EVERY`] requests gives that back. The queue's thread reads a
/// clone of the device made non-blocking (the flag belongs to the clone's
/// own open file, not the device thread's), so it never waits there.
/// Without a clone (`/dev/fuse` not openable, as for an ordinary user
/// when it is 0600) the device thread alone reads them, as before.
struct Drain {
    ch: Channel,
    buf: FuseReadBuf,
    served: u32,
}

/// Requests served between reads of the device. Over `/dev/fuse` the
/// kernel gives queued forgets a turn at least every 8 requests
/// (`forget_batch` in fs/fuse/dev.c); a read that finds nothing costs a
/// system call, so this takes one every 16.
const DRAIN_EVERY: u32 = 16;

impl Drain {
    fn open(ch: &Channel) -> Option<Drain> {
        let clone = ch.clone_fd().ok()?;
        let fd = clone.as_fd();
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).ok()?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
        Some(Drain {
            ch: clone,
            buf: FuseReadBuf::new(),
            served: 0,
        })
    }

    /// Counts a request served; every [`DRAIN_EVERY`]th, serves what the
    /// device holds. False when the clone cannot be read any more.
    fn after_request<FS: Filesystem>(&mut self, se: &SessionEventLoop<FS>) -> bool {
        self.served += 1;
        if self.served < DRAIN_EVERY {
            return true;
        }
        self.served = 0;
        loop {
            let buf = self.buf.as_mut();
            let size = match self.ch.receive(buf) {
                Ok(size) => size,
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            };
            if !matches!(se.serve_read(&self.ch, &buf[..size]), Some(Served::Request { .. })) {
                return false;
            }
        }
    }
}

/// Serves the request in `entry` and leaves its reply there (true), or
/// leaves it to a reply another thread will send (false: see [`Late`]).
fn serve_one<FS: Filesystem>(
    entry: &mut Entry,
    reply: &Arc<RingReply>,
    se: &SessionEventLoop<FS>,
    sender: &ChannelSender,
) -> bool {
    let unique = entry.read_u64(8);
    let Some((start, len, payload)) = entry.request() else {
        error!("FUSE io_uring: a request that does not fit its entry");
        entry.put_error(unique, libc::EIO);
        return true;
    };
    let direct = (payload == 0).then(|| entry.direct());
    reply.arm(unique, direct);
    // SAFETY: start + len <= HEADER_SIZE + payload_sz (Entry::request), in
    // the block; a Direct reply writes only outside this range (the out
    // header's 16 bytes, start >= 120, and the empty payload).
    let data = unsafe { std::slice::from_raw_parts(entry.base().add(start), len) };
    let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
        match RequestWithSender::new(sender.to_ring(reply.clone()), data) {
            Some(req) => {
                if let Ok(Operation::Destroy(_)) = req.request.operation() {
                    req.reply::<crate::ReplyEmpty>().ok();
                } else {
                    req.dispatch(se);
                }
            }
            None => {
                let _ = reply.send(&[]);
            }
        }
    }));
    // A panic that left no reply would leave this entry, and every later
    // request from this CPU, waiting for good: the device threads outlive
    // one, but a queue has only its own thread.
    if served.is_err() {
        error!("FUSE io_uring: serving a request panicked");
        let _ = reply.send(&[]);
    }
    reply.take_or_defer(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry as the kernel fills it: `fuse_in_header` (len, opcode,
    /// unique) in `in_out`, `op` in `op_in`, `payload` in the payload, and
    /// the trailer's commit_id and payload_sz.
    fn filled(op: &[u8], payload: &[u8], unique: u64) -> Entry {
        let mut e = Entry::new(4096);
        let base = e.base();
        let len = (IN_HEADER + op.len() + payload.len()) as u32;
        let mut header = [0u8; IN_HEADER];
        header[0..4].copy_from_slice(&len.to_ne_bytes());
        header[4..8].copy_from_slice(&1u32.to_ne_bytes());
        header[8..16].copy_from_slice(&unique.to_ne_bytes());
        // SAFETY: every range is inside the entry's block.
        unsafe {
            ptr::copy_nonoverlapping(header.as_ptr(), base, IN_HEADER);
            ptr::copy_nonoverlapping(op.as_ptr(), base.add(OP_IN), op.len());
            ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER_SIZE), payload.len());
            ptr::write_unaligned(base.add(COMMIT_ID).cast::<u64>(), unique);
        }
        e.set_payload_sz(payload.len());
        e
    }

    #[test]
    fn a_request_is_rebuilt_contiguous_with_its_payload_length() {
        // A READ-sized header (40 bytes) moves over the trailer, where the
        // payload length was: it must come back from before the move.
        for (op, payload) in [
            (vec![7u8; 40], vec![]),
            (vec![], b"name\0".to_vec()),
            (vec![9u8; 88], vec![1u8; 300]),
            (vec![3u8; 128], vec![2u8; 8]),
        ] {
            let mut e = filled(&op, &payload, 42);
            let (start, len, got) = e.request().expect("fits");
            assert_eq!(got, payload.len());
            assert_ne!(
                e.read_u32(PAYLOAD_SZ) as usize,
                payload.len(),
                "the trailer is overwritten: read it before the move"
            );
            assert_eq!(start + len, HEADER_SIZE + payload.len());
            let req = &e.bytes()[start..start + len];
            assert_eq!(
                u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize,
                len
            );
            assert_eq!(u64::from_ne_bytes(req[8..16].try_into().unwrap()), 42);
            assert_eq!(&req[IN_HEADER..IN_HEADER + op.len()], &op[..]);
            assert_eq!(&req[IN_HEADER + op.len()..], &payload[..]);
            assert_eq!(start % 8, 0, "fuser reads the headers in place");
        }
    }

    #[test]
    fn a_request_that_does_not_fit_is_refused() {
        let mut e = filled(&[0u8; 136], &[], 1);
        assert!(e.request().is_none(), "op_in holds 128 bytes");
        let mut e = filled(&[0u8; 12], &[], 1);
        assert!(e.request().is_none(), "an op header is whole u64s");
    }

    #[test]
    fn a_reply_goes_to_in_out_and_the_payload() {
        let mut e = filled(&[0u8; 40], &[], 5);
        let reply: Vec<u8> = (0..100u8).collect();
        e.put_reply(&reply).expect("fits");
        assert_eq!(&e.bytes()[..OUT_HEADER], &reply[..OUT_HEADER]);
        assert_eq!(e.read_u32(PAYLOAD_SZ) as usize, 100 - OUT_HEADER);
        assert_eq!(
            &e.bytes()[HEADER_SIZE..HEADER_SIZE + 84],
            &reply[OUT_HEADER..]
        );
        assert!(e.put_reply(&vec![0u8; OUT_HEADER + 4097]).is_err());
    }

    #[test]
    fn a_reply_written_in_place_splits_at_the_out_header() {
        let e = filled(&[0u8; 40], &[], 5);
        let d = e.direct();
        let a: Vec<u8> = (0..10u8).collect();
        let b: Vec<u8> = (10..60u8).collect();
        let n = d.write(&[io::IoSlice::new(&a), io::IoSlice::new(&b)]);
        assert_eq!(n, Some(60 - OUT_HEADER));
        let all: Vec<u8> = (0..60u8).collect();
        assert_eq!(&e.bytes()[..OUT_HEADER], &all[..OUT_HEADER]);
        assert_eq!(
            &e.bytes()[HEADER_SIZE..HEADER_SIZE + 44],
            &all[OUT_HEADER..]
        );
        let big = vec![0u8; OUT_HEADER + 4097];
        assert_eq!(d.write(&[io::IoSlice::new(&big)]), None);
    }

    #[test]
    fn data_read_into_the_payload_is_replied_in_place() {
        let mut e = filled(&[0u8; 40], &[], 5);
        let reply = RingReply::new(0, None);
        assert!(reply.payload(10).is_none(), "no request armed");
        reply.arm(5, Some(e.direct()));
        assert!(reply.payload(4097).is_none(), "more than the payload holds");
        let p = reply.payload(100).expect("armed with a direct entry");
        // SAFETY: the payload holds 4096 bytes, and nothing else touches
        // them until the reply is sent.
        let data = unsafe { std::slice::from_raw_parts_mut(p, 100) };
        for (i, b) in data.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut header = [0u8; OUT_HEADER];
        header[0..4].copy_from_slice(&((OUT_HEADER + 60) as u32).to_ne_bytes());
        header[8..16].copy_from_slice(&5u64.to_ne_bytes());
        let bufs = [io::IoSlice::new(&header), io::IoSlice::new(&data[..60])];
        reply.send(&bufs).expect("a request waits");
        reply.take(&mut e);
        assert_eq!(e.read_u32(PAYLOAD_SZ) as usize, 60);
        assert_eq!(&e.bytes()[..OUT_HEADER], &header[..]);
        let want: Vec<u8> = (0..60u8).collect();
        assert_eq!(&e.bytes()[HEADER_SIZE..HEADER_SIZE + 60], &want[..]);
        assert!(reply.payload(10).is_none(), "replied: not the reader's any more");
    }

    #[test]
    fn possible_cpus_are_counted() {
        assert!(queue_count().expect("sysfs") >= 1);
    }
}
