//! A test layer that counts and holds the reads of its listings, for the
//! tests of `CachedLower` and `crate::walk_ahead`.

use crate::error::Result;
use crate::lower::{Lower, Node};
use crate::mem_lower::MemLower;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A layer that counts the listings read from it and, while its gate
/// is shut, holds every reader inside `children`.
pub struct Probe {
    tree: MemLower,
    listed: Mutex<HashMap<Vec<u8>, usize>>,
    gate_open: Mutex<bool>,
    changed: Condvar,
    /// Listings that panic (a bug in a layer) before one is read.
    panics: AtomicUsize,
}

impl Probe {
    pub fn new(tree: MemLower, gate_open: bool) -> Arc<Probe> {
        Arc::new(Probe {
            tree,
            listed: Mutex::new(HashMap::new()),
            gate_open: Mutex::new(gate_open),
            changed: Condvar::new(),
            panics: AtomicUsize::new(0),
        })
    }

    pub fn times_listed(&self, dir: &str) -> usize {
        let listed = self.listed.lock().expect("listed");
        listed.get(dir.as_bytes()).copied().unwrap_or(0)
    }

    /// Waits (polling, bounded) until `dir` has been listed `n` times.
    pub fn wait_listed(&self, dir: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.times_listed(dir) < n {
            assert!(Instant::now() < deadline, "{dir} never listed {n} times");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn open_gate(&self) {
        *self.gate_open.lock().expect("gate") = true;
        self.changed.notify_all();
    }

    /// Has the next `n` listings panic.
    pub fn panic_next(&self, n: usize) {
        self.panics.store(n, Ordering::SeqCst);
    }
}

pub struct Probed(pub Arc<Probe>);

impl Lower for Probed {
    fn describe(&self) -> String {
        "probe".into()
    }

    fn node(&self, path: &[u8]) -> Result<Option<Node>> {
        self.0.tree.node(path)
    }

    fn children(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Node)>> {
        let p = &self.0;
        *p.listed
            .lock()
            .expect("listed")
            .entry(dir.to_vec())
            .or_default() += 1;
        let panicking = p
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        assert!(panicking.is_err(), "the probe panics, as told");
        let mut open = p.gate_open.lock().expect("gate");
        while !*open {
            open = p.changed.wait(open).expect("gate");
        }
        drop(open);
        p.tree.children(dir)
    }

    fn read_at(&self, path: &[u8], node: &Node, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.0.tree.read_at(path, node, offset, buf)
    }
}
