//! Pins: a live mount server names the layers it reads in
//! `<root>/pins/<pid>-<n>`; gc keeps every layer a live process pins, so an
//! image removed while mounted keeps its files until the mount ends.

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// A live process's claim on some layers: while it exists `gc` keeps them, even
/// if no image names them any more. Dropping it removes the pin file; a pin of
/// a dead process is ignored and removed.
pub struct Pin {
    /// None in a store on a read-only filesystem, where no gc runs.
    path: Option<PathBuf>,
}

impl Pin {
    /// Pins `layers` in the store at `root` for this process, until dropped.
    pub fn new(root: &Path, layers: &[Digest]) -> Result<Pin> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        if crate::store::on_read_only_fs(root) {
            // Nothing removes a layer of it through this path (a store
            // also written through another one is read at its own risk).
            return Ok(Pin { path: None });
        }
        let storage = crate::storage::of(root);
        let dir = root.join("pins");
        storage.create_dir_all(&dir).at(&dir)?;
        let path = dir.join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let text: String = layers.iter().map(|d| format!("{}\n", d.hex())).collect();
        // Named only when whole: gc never reads half a pin.
        storage
            .create_file(&path, text.as_bytes(), false)
            .at(&path)?;
        Ok(Pin { path: Some(path) })
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = crate::storage::of(path).remove_file(path);
        }
    }
}

/// Layers pinned by live processes; stale pin files are removed.
pub(crate) fn live_pins(root: &Path) -> Vec<Digest> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(root.join("pins")) else {
        return out;
    };
    for f in dir.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        let pid: i32 = name
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid > 0 && process_alive(pid) {
            let text = fs::read_to_string(f.path()).unwrap_or_default();
            out.extend(text.lines().filter_map(|l| l.parse::<Digest>().ok()));
        } else {
            let _ = crate::storage::of(root).remove_file(&f.path());
        }
    }
    out
}

/// Whether a process with this pid exists (seen from this pid namespace).
pub fn process_alive(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}
