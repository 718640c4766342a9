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
        match storage.create_file(&path, text.as_bytes(), false) {
            // A full disk must not stop what only reads (`save` to another
            // disk, `export`, `cp` out, `mount` failed on it, found by a
            // review): a pin naming no layer needs no data block, and
            // keeps every layer.
            Err(e) if crate::error::no_space(&e) => {
                storage.create_file(&path, b"", false).at(&path)?
            }
            written => written.at(&path)?,
        };
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

/// Layers pinned by live processes, `None` when one pins every layer (a
/// pin made on a full disk names none, and so does the pin of an image of
/// no layer, which then keeps every layer while it lives); stale pin
/// files are removed.
pub(crate) fn live_pins(root: &Path) -> Option<Vec<Digest>> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(root.join("pins")) else {
        return Some(out);
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
            if text.is_empty() {
                return None;
            }
            out.extend(text.lines().filter_map(|l| l.parse::<Digest>().ok()));
        } else {
            let _ = crate::storage::of(root).remove_file(&f.path());
        }
    }
    Some(out)
}

/// Whether a process with this pid exists (seen from this pid namespace)
/// and has not exited: a zombie, which has, counts as gone, though its pid
/// stays until its parent reaps it (an orphan waits for the host's init,
/// which may take a second).
pub fn process_alive(pid: i32) -> bool {
    process_stat(pid).is_some_and(|s| s.is_alive())
}

/// Whether the process that started at `start` ([`process_start`]) still
/// has pid `pid` and has not exited. Pids are reused (pid_max may be
/// 32768), so a pid recorded earlier may name another process now;
/// `start` 0 (not recorded) checks the pid alone.
pub fn process_alive_since(pid: i32, start: u64) -> bool {
    process_stat(pid).is_some_and(|s| s.is_alive() && (start == 0 || s.start == start))
}

/// When process `pid` started, in clock ticks after boot (the 22nd field
/// of /proc/PID/stat): with its pid, it names one process for good.
pub fn process_start(pid: i32) -> Option<u64> {
    process_stat(pid).map(|s| s.start)
}

/// What /proc/PID/stat says of a process, of what strata asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessStat {
    /// `R`, `S`, `T`, `Z`...
    pub state: char,
    /// The parent's pid.
    pub ppid: i32,
    /// Clock ticks after boot (0 where the line stops short).
    pub start: u64,
}

impl ProcessStat {
    /// Not exited: a zombie has, though its pid stays until it is reaped.
    fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Process `pid` as /proc/PID/stat shows it; `None` once it is gone.
pub fn process_stat(pid: i32) -> Option<ProcessStat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A /proc/PID/stat line: the fields after the command name, which is in
/// parentheses and may itself hold spaces and `) `.
fn parse_stat(stat: &str) -> Option<ProcessStat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Field 22; the two above were 3 and 4.
    let start = fields.nth(17).and_then(|s| s.parse().ok()).unwrap_or(0);
    Some(ProcessStat { state, ppid, start })
}

#[cfg(test)]
mod tests {
    use super::{parse_stat, process_alive, process_alive_since, process_start};

    #[test]
    fn state_is_read_after_a_command_name_with_parentheses() {
        let state = |line: &str| parse_stat(line).map(|s| s.state);
        assert_eq!(state("42 (a) b) T 1 42"), Some('T'));
        assert_eq!(state("1 (sh) S 0 1"), Some('S'));
        assert_eq!(state("garbage"), None);
    }

    #[test]
    fn a_running_process_is_alive_and_an_exited_one_unreaped_is_not() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let mut quitter = std::process::Command::new("true").spawn().expect("true");
        assert!(process_alive(sleeper.id() as i32));
        // Exited but not reaped: a zombie until `wait`.
        let zombie = quitter.id() as i32;
        while std::fs::read_to_string(format!("/proc/{zombie}/stat"))
            .is_ok_and(|s| !s.contains(") Z"))
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_alive(zombie), "a zombie has exited");
        quitter.wait().expect("reap");
        assert!(!process_alive(zombie));
        assert!(!process_alive(0) && !process_alive(-1));
        sleeper.kill().expect("kill");
        sleeper.wait().expect("reap");
    }

    #[test]
    fn a_process_is_known_by_its_pid_and_its_start() {
        let own = std::process::id() as i32;
        let start = process_start(own).expect("own start");
        assert!(start > 0);
        assert!(process_alive_since(own, start));
        // Another start under the same pid: another process.
        assert!(!process_alive_since(own, start + 1));
        assert!(
            process_alive_since(own, 0),
            "no start recorded: the pid alone"
        );
        assert_eq!(process_start(-1), None);
    }
}
