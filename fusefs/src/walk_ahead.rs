//! Reading ahead of a walk. When the kernel lists a directory, the lower
//! layers' listings of its subdirectories are read on a background thread
//! into their [`CachedLower`]s, so the walk's next READDIRPLUS finds them
//! remembered: the host's disk reads and stat calls of one directory
//! overlap the round trips of the one before, where they used to follow
//! them (docs/design.md, "Cold walks: where a lookup's time goes").
//!
//! Only lower layers are read ahead: they never change while mounted, so
//! what is read early is what would be read later. The upper is read
//! fresh by every request, as before. One level ahead of what the kernel
//! asked for, newest first: a depth-first walker (find, du, tar, ls -R)
//! goes into the first subdirectory of the listing it just read, whose
//! own subdirectories are queued on top when the kernel lists it.

use crate::cached_lower::CachedLower;
use crate::handles::lock;
use crate::lower::Lower;
use std::sync::{Arc, Condvar, Mutex};

/// Directories waiting; past this the oldest are dropped (a walker that
/// got that far behind would not reach them soon).
const MAX_QUEUED: usize = 4096;

/// A lower directory to read: the index of its lower, its path there.
pub type Dir = (usize, Vec<u8>);

/// A directory to read, and how many levels of it: 1 for it alone, 2
/// for it and its subdirectories...
type Job = (Dir, u32);

/// How many levels below a directory the kernel lists are read ahead
/// (0: none); `STRATA_WALK_AHEAD` overrides it, for measuring.
const DEFAULT_LEVELS: u32 = 1;

fn levels() -> u32 {
    match std::env::var("STRATA_WALK_AHEAD") {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            log::warn!("STRATA_WALK_AHEAD={v}: not a number of levels; ignored");
            DEFAULT_LEVELS
        }),
        Err(_) => DEFAULT_LEVELS,
    }
}

#[derive(Default)]
struct Queue {
    /// Newest last: popped first.
    jobs: Vec<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    lowers: Vec<Arc<CachedLower>>,
    levels: u32,
}

/// The background reader of a mount's lowers; stops when dropped.
pub struct WalkAhead {
    shared: Arc<Shared>,
    /// Joined when dropped: the thread holds the lowers, a store's among
    /// them, and the last holder closes the store. On a thread left
    /// running that close could meet the process's exit, whose C++
    /// destructors pull RocksDB's locks away from under it ("pthread lock:
    /// Invalid argument", an abort after the command's last line).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalkAhead {
    /// Reads ahead in `lowers` (top first) on one thread. Without lowers
    /// no thread starts.
    pub fn start(lowers: Vec<Arc<CachedLower>>) -> WalkAhead {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            lowers,
            levels: levels(),
        });
        let mut thread = None;
        if !shared.lowers.is_empty() && shared.levels > 0 {
            let s = shared.clone();
            let started = std::thread::Builder::new()
                .name("walk-ahead".into())
                .spawn(move || run(&s));
            match started {
                Ok(t) => thread = Some(t),
                Err(e) => {
                    // A mount without read-ahead is slower on cold walks,
                    // no less correct.
                    log::warn!("cannot start the walk-ahead thread: {e}");
                    lock(&shared.queue).closed = true;
                }
            }
        }
        WalkAhead { shared, thread }
    }

    /// Queues `dirs` (lower index, path in that lower), the kernel's next
    /// listings, first to be read first.
    pub fn queue(&self, dirs: Vec<Dir>) {
        self.shared.queue(dirs, self.shared.levels);
    }
}

impl Shared {
    fn queue(&self, dirs: Vec<Dir>, levels: u32) {
        if dirs.is_empty() || levels == 0 {
            return;
        }
        let mut q = lock(&self.queue);
        if q.closed {
            return;
        }
        q.jobs.extend(dirs.into_iter().rev().map(|d| (d, levels)));
        if q.jobs.len() > MAX_QUEUED {
            let extra = q.jobs.len() - MAX_QUEUED;
            q.jobs.drain(..extra);
        }
        drop(q);
        self.ready.notify_one();
    }
}

impl Drop for WalkAhead {
    fn drop(&mut self) {
        let mut q = lock(&self.shared.queue);
        q.closed = true;
        q.jobs.clear();
        drop(q);
        self.shared.ready.notify_all();
        // It ends after the directory it reads, if any.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(s: &Shared) {
    loop {
        let ((lower, path), levels) = {
            let mut q = lock(&s.queue);
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.jobs.pop() {
                    break job;
                }
                q = s
                    .ready
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let Some(l) = s.lowers.get(lower) else {
            continue;
        };
        // A failure here is met again, and reported, by the request that
        // lists the directory itself.
        if let Err(e) = l.read_ahead(&path) {
            log::trace!("walk-ahead: {e}");
            continue;
        }
        if levels > 1 {
            // This layer's own subdirectories: what other layers hide of
            // them is read for nothing, and harmlessly.
            let subdirs = match l.children(&path) {
                Ok(kids) => kids
                    .into_iter()
                    .filter(|(_, n)| n.is_dir())
                    .map(|(name, _)| (lower, layerdb::join_path(&path, &name)))
                    .collect(),
                Err(_) => Vec::new(),
            };
            s.queue(subdirs, levels - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cached_lower::CachedLower;
    use crate::ids::NodeId;
    use crate::layers::Layers;
    use crate::lower::Lower;
    use crate::mem_lower::MemLower;
    use crate::probe_lower::{Probe, Probed};
    use crate::union_fs::UnionFs;
    use std::sync::Arc;
    use std::time::Duration;

    fn tree() -> MemLower {
        let mut m = MemLower::new("low", 1);
        m.dir("a", 0o755)
            .dir("a/b", 0o755)
            .file("a/b/f", b"f")
            .dir("c", 0o755)
            .file("g", b"g");
        m
    }

    #[test]
    fn listing_a_directory_reads_its_subdirectories_ahead_once() {
        let probe = Probe::new(tree(), true);
        let layers = Layers::new(None, vec![Box::new(Probed(probe.clone()))]).expect("layers");
        let fs = UnionFs::new(layers, true);
        fs.dir_items(NodeId::ROOT, 0).expect("list the root");
        // Read in the background, without a request for them...
        probe.wait_listed("a", 1);
        probe.wait_listed("c", 1);
        // ...and only one level ahead of what the kernel listed.
        assert_eq!(probe.times_listed("a/b"), 0);
        let a = fs.lookup(NodeId::ROOT, b"a").expect("a");
        let (listing, _) = fs.dir_items(a.id, 0).expect("list a");
        let names: Vec<&[u8]> = listing.items.iter().map(|i| i.name.as_slice()).collect();
        assert_eq!(names, [&b"."[..], b"..", b"b"]);
        assert_eq!(
            probe.times_listed("a"),
            1,
            "the request found it remembered"
        );
        probe.wait_listed("a/b", 1);
    }

    #[test]
    fn a_second_reader_of_a_directory_waits_for_the_first() {
        let probe = Probe::new(tree(), false);
        let cached = Arc::new(CachedLower::new(Box::new(Probed(probe.clone()))));
        let first = {
            let c = cached.clone();
            std::thread::spawn(move || c.children(b"a").expect("first"))
        };
        probe.wait_listed("a", 1);
        let second = {
            let c = cached.clone();
            std::thread::spawn(move || c.children(b"a").expect("second"))
        };
        // Reading ahead leaves a directory someone is reading alone.
        cached.read_ahead(b"a").expect("read ahead");
        // Time for the second reader to reach the layer, as it did before
        // readers waited for each other (this test then failed); waiting
        // readers pass however long this is.
        std::thread::sleep(Duration::from_millis(200));
        probe.open_gate();
        let (first, second) = (first.join().expect("first"), second.join().expect("second"));
        assert_eq!(first, second);
        assert_eq!(first.len(), 1);
        assert_eq!(probe.times_listed("a"), 1);
    }
}
