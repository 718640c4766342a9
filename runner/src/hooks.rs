//! What the container monitor does around the container's life: serve its
//! filesystem over FUSE and record its state (run_state.rs).

use crate::container::MonitorHooks;
use crate::container_id::ContainerId;
use crate::run_state;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::{ContainerRecord, Pin, State, Store};
use std::path::PathBuf;
use std::sync::Arc;

pub struct ContainerHooks {
    root: PathBuf,
    id: ContainerId,
    /// `--rm`: the monitor removes the container when it exits (also when
    /// detached, with nobody waiting).
    auto_remove: bool,
    /// The record as the monitor read it when mounting; its state follows
    /// what the monitor records.
    rec: Option<ContainerRecord>,
    mount: Option<fusefs::MountHandle>,
    _pin: Option<Pin>,
    started_ns: i64,
    /// The container's start turn, held until it is recorded running.
    turn: Option<std::fs::File>,
}

impl ContainerHooks {
    pub fn new(root: PathBuf, id: ContainerId, auto_remove: bool) -> ContainerHooks {
        ContainerHooks {
            root,
            id,
            auto_remove,
            rec: None,
            mount: None,
            _pin: None,
            started_ns: 0,
            turn: None,
        }
    }

    /// Holds the container's start `turn` (a lock file: the monitor's copy,
    /// inherited at the fork, keeps it) until the container is recorded
    /// running; the launching process closes its own copy at the fork.
    pub fn holding_turn(mut self, turn: Option<std::fs::File>) -> ContainerHooks {
        self.turn = turn;
        self
    }

    /// `--rm`, once nothing is mounted: the record file, then the
    /// directory; the index is not opened. Killed between, the directory
    /// is an orphan that gc removes; killed before, `ps -a` shows the
    /// container exited and `rm` removes it; no mount is left either way.
    /// An `--rm` container's end: its record and files, then its
    /// anonymous volumes, as docker's `--rm` removes them.
    fn remove(&self) -> Result<()> {
        layerdb::container_records::remove(&self.root, self.id.as_str())?;
        if let Some(rec) = &self.rec {
            let others = Store::open_read_only(&self.root)?.containers()?;
            crate::volumes::remove_anonymous(&self.root, rec, &others);
        }
        Ok(())
    }

    /// Records `state` in the container's state file: the index is not
    /// opened (see run_state.rs).
    fn record(&mut self, state: State) -> Result<()> {
        self.record_by(|_| Some(state))
    }

    /// Records the state `decide` names, given the current one read under
    /// the state file's lock, if any.
    fn record_by(&mut self, decide: impl FnOnce(&State) -> Option<State>) -> Result<()> {
        let rec = self
            .rec
            .as_mut()
            .context("the container's record was never read")?;
        run_state::update(&self.root, rec, decide)
    }
}

impl MonitorHooks for ContainerHooks {
    fn mount_rootfs(&mut self) -> Result<()> {
        // A secondary instance: the monitor reads layers for the container's
        // whole life and must never hold up other strata commands.
        let store = Arc::new(Store::open_read_only(&self.root)?);
        let rec = store.container(self.id.as_str())?;
        let image = store
            .image(&rec.image)?
            .with_context(|| format!("image {:#} of container {} is gone", rec.image, rec.name))?;
        self._pin = Some(Pin::new(&self.root, &image.layers)?);
        let paths = ContainerPaths::of(&self.root, &rec);
        let mut opts = fusefs::MountOptions::of_image(&store, &image, Some(paths.upper()))?;
        // The container's processes may run as any user (-u).
        opts.allow_other = true;
        opts.fsname = format!("strata:{}", rec.short_id());
        self.rec = Some(run_state::current(&self.root, rec));
        crate::sys::one_malloc_arena();
        self.mount = Some(fusefs::mount(opts, &paths.merged())?);
        Ok(())
    }

    fn started(&mut self, monitor_pid: i32, pid: i32) -> Result<()> {
        self.started_ns = crate::clock::now_ns();
        let started_ns = self.started_ns;
        let recorded = self.record(State::Running {
            monitor_pid,
            monitor_start: layerdb::pins::process_start(monitor_pid).unwrap_or(0),
            pid,
            started_ns,
        });
        // The next start may come: it finds the container running.
        self.turn = None;
        recorded
    }

    fn exited(&mut self, code: i32, oom_killed: bool) {
        // Recorded for --rm containers too: killed before it is removed,
        // the container shows as exited and `rm` removes it.
        let state = State::Exited {
            code,
            started_ns: self.started_ns,
            finished_ns: crate::clock::now_ns(),
            oom_killed,
        };
        if let Err(e) = self.record(state) {
            log::error!("container {}: recording its exit: {e:#}", self.id);
        }
    }

    fn start_failed(&mut self, code: i32) {
        // docker's daemon keeps a failed start's code as the container's
        // (127 for no such command, 126 for one it cannot run) and leaves
        // the times of its last run as they were. A created container
        // becomes exited (strata has no created state with a code).
        let failed = |state: &State| match *state {
            State::Created => Some(State::Exited {
                code,
                started_ns: 0,
                finished_ns: crate::clock::now_ns(),
                oom_killed: false,
            }),
            State::Exited {
                started_ns,
                finished_ns,
                oom_killed,
                ..
            } => Some(State::Exited {
                code,
                started_ns,
                finished_ns,
                oom_killed,
            }),
            // Not ours: the start turn keeps a second start out.
            State::Running { .. } | State::Paused { .. } => None,
        };
        if let Err(e) = self.record_by(failed) {
            log::error!("container {}: recording its failed start: {e:#}", self.id);
        }
    }

    fn unmount(&mut self) {
        // --rm: the record goes only once the filesystem is unmounted, so
        // that the directory can go right after it.
        let unmounted = self.mount.take().map_or(Ok(()), detach);
        if let Err(e) = unmounted {
            log::error!("container {}: unmounting its filesystem: {e}", self.id);
            return;
        }
        let restarting = ContainerPaths::new(&self.root, &self.id).restarting();
        if self.auto_remove && !restarting.exists() {
            // An unlink and a tree removal: they work on a full disk too.
            if let Err(e) = self.remove() {
                log::error!("container {}: removing it: {e:#}", self.id);
            }
        }
    }
}

/// Takes the container's filesystem off its mountpoint without waiting
/// for the server's threads to end. They end only when no mount of the
/// filesystem is left anywhere, and a mount namespace made while the
/// container ran (a rootless container's monitor, `unshare -m`, podman:
/// with the host's `/` private, nothing propagates the unmount to them)
/// holds a copy until it goes: waiting kept the monitor alive long after
/// its container died, `rm -f` gave up after 30 s with "did not stop" and
/// the attached `run -ti` hung. The threads go with the monitor, which
/// exits right after; its exit closes /dev/fuse, which aborts the
/// connection, so those copies fail (ENOTCONN) instead of serving a
/// removed container.
fn detach(mount: fusefs::MountHandle) -> std::result::Result<(), std::io::Error> {
    let detached = fusefs::unmount(mount.mountpoint());
    // Dropping the handle would unmount again and join the threads.
    std::mem::forget(mount);
    detached
}
