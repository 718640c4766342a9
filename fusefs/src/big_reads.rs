//! READs of big files served off the CPU that asked for them.
//!
//! Over FUSE's io_uring queues a request is served on its caller's CPU
//! (each queue's thread is pinned there), which is what a walk's small
//! synchronous requests want. A sequential read of a big file is the
//! opposite case: the kernel's read-ahead sends 1 MiB READs from the
//! reader's CPU, and the reader copying one MiB out of the page cache and
//! the server filling the next took turns on that CPU while the other one
//! idled (docs/design.md, "Big reads share their reader's CPU"). A READ
//! of at least [`BIG_READ`] bytes is handed to one of a few unpinned
//! worker threads, which reads and replies; the queue's thread goes on
//! with its other entries and commits the READ's when the reply comes.
//! Two cross-CPU wakeups (some 50 µs here) are small against a MiB of
//! data; for smaller READs they would not be, so those stay on the queue.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

/// The smallest READ worth a trip to another CPU: the kernel's read-ahead
/// of a big file as root sends 1 MiB (`crate::kernel_read_ahead`).
pub const BIG_READ: u32 = 512 << 10;

/// A READ to serve and reply to.
pub type Job = Box<dyn FnOnce() + Send>;

/// The workers, started at the first big READ.
#[derive(Default)]
pub struct BigReads {
    jobs: OnceLock<SyncSender<Job>>,
}

impl BigReads {
    /// Runs `job` on a worker, or gives it back to be run here when every
    /// worker is busy (or none could be started).
    pub fn offer(&self, job: Job) -> Result<(), Job> {
        self.jobs
            .get_or_init(start)
            .try_send(job)
            .map_err(|e| match e {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            })
    }
}

/// Starts the workers; with none started, every offer comes back.
fn start() -> SyncSender<Job> {
    // Online CPUs, not this thread's: the caller is a queue's thread,
    // pinned to one.
    let online = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .unwrap_or(2);
    let workers = usize::try_from(online).map_or(2, |n| n.clamp(1, 4));
    // As many waiting as working: a read-ahead window holds a few.
    let (send, receive) = sync_channel::<Job>(workers);
    let receive = Arc::new(Mutex::new(receive));
    for i in 0..workers {
        let receive = receive.clone();
        let started = std::thread::Builder::new()
            .name(format!("big-read-{i}"))
            .spawn(move || work(&receive));
        if let Err(e) = started {
            log::warn!("cannot start a worker for big reads: {e}");
            break;
        }
    }
    send
}

/// Serves jobs until the mount's adapter, which holds the sender, is gone.
fn work(jobs: &Mutex<Receiver<Job>>) {
    unpin();
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.recv()
        };
        match job {
            // A panic leaves the READ to the reply's drop (EIO), as on a
            // queue's thread, and the worker to the next one.
            Ok(job) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    log::error!("serving a big read panicked");
                }
            }
            Err(_) => return,
        }
    }
}

/// Lets this thread run on any CPU: it was made by a queue's thread, whose
/// single CPU it inherited, and it is there to use another one.
fn unpin() {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut any = CpuSet::new();
    for cpu in 0..CpuSet::count() {
        let _ = any.set(cpu);
    }
    // The kernel keeps the CPUs the process may use (its cpuset) of these.
    if let Err(e) = sched_setaffinity(nix::unistd::Pid::from_raw(0), &any) {
        log::warn!("a big-read worker stays on its creator's CPU: {e}");
    }
}
