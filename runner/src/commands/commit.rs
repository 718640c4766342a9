//! `strata commit`: a container's change set, read from its upper
//! directory (so the cost follows the size of the changes, not of the
//! image), as a new layer and image; `__flush`, which commit runs in the
//! container to sync its writes first.

use super::Ctx;
use crate::cli::CommitArgs;
use crate::liveness;
use crate::stack::is_runtime_path;
use anyhow::{bail, Context, Result};
use fusefs::{Change, ChangeKind};
use layerdb::{
    ContainerRecord, History, ImageRecord, Ingest, NewImage, PendingLayer, Reference, State, Store,
};
use std::sync::Arc;

/// An image's layers, top first.
type Lowers = Vec<Box<dyn fusefs::Lower>>;

/// The image a container runs.
pub(super) fn image_of(store: &Store, rec: &ContainerRecord) -> Result<ImageRecord> {
    store
        .image(&rec.image)?
        .with_context(|| format!("image {:#} of {} is gone", rec.image, rec.name))
}

/// The changes of container `rec` over its `image`, without the files
/// strata mounts into it, and the image's layers, which hold the content
/// of the files of a renamed directory (see [`Change::data`]).
pub(super) fn change_set(
    store: &Arc<Store>,
    rec: &ContainerRecord,
    image: &ImageRecord,
) -> Result<(Vec<Change>, Lowers)> {
    let lowers = fusefs::StoreLower::of_image(store, image)?;
    let refs: Vec<&dyn fusefs::Lower> = lowers.iter().map(|l| l.as_ref()).collect();
    let changes = fusefs::changes(&store.container_dir(&rec.id).upper(), &refs)
        .with_context(|| format!("reading the changes of {}", rec.name))?;
    Ok((without_runtime_paths(changes, rec), lowers))
}

/// Drops the files strata mounts into every container and the targets of
/// bind mounts, and the directories that were made or changed only to hold
/// those mount points (docker makes them in a layer it never commits).
fn without_runtime_paths(changes: Vec<Change>, rec: &ContainerRecord) -> Vec<Change> {
    let (dropped, kept): (Vec<Change>, Vec<Change>) = changes
        .into_iter()
        .partition(|c| is_runtime_path(&c.path, rec));
    let under = |dir: &[u8], path: &[u8]| {
        dir.is_empty() || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
    };
    let only_for_mounts = |c: &Change| {
        c.kind != ChangeKind::Deleted
            && c.entry.kind == layerdb::Kind::Dir
            && dropped.iter().any(|d| under(&c.path, &d.path))
            && !kept.iter().any(|k| under(&c.path, &k.path))
    };
    let keep: Vec<bool> = kept.iter().map(|c| !only_for_mounts(c)).collect();
    kept.into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

/// Keeps a running container paused for as long as it lives, so the
/// change set is one instant's; data written through mmap is flushed to
/// the upper. The container's monitor does the pausing
/// (`container::pause`): if this process dies while the container is
/// paused, the monitor resumes it. `commit`, `export` and `diff` read the
/// upper by host paths: a running container could swap a directory they
/// are in for a symlink to a host directory between two of their reads
/// (docker pauses `cp` for the same race, CVE-2018-15664).
pub(super) struct Paused(Option<crate::container::pause::Paused>);

/// Set in tests: after pausing, commit says so on stderr and waits to be
/// killed, so a test can kill it while the container is paused.
const HOLD_PAUSE_FOR_TESTS: &str = "STRATA_TEST_HOLD_PAUSE";

impl Paused {
    pub(super) fn new(ctx: &Ctx, rec: &ContainerRecord, pause: bool) -> Result<Paused> {
        // A container paused by `strata pause` stays as it is: frozen
        // already, and thawed by `unpause` alone.
        let (pid, pause) = match rec.state {
            State::Running { pid, .. } => (pid, pause),
            State::Paused { pid, .. } => (pid, false),
            _ => return Ok(Paused(None)),
        };
        // A container recorded running may have ended meanwhile: its state
        // is recorded a moment after its init exits, and a short command
        // run by `start` is often gone by the next command. Then nothing
        // writes to its tree any more, and there is nothing to pause or
        // flush (its monitor and cgroup are going, and the pause failed).
        let ended = || !crate::liveness::process_alive(pid);
        let paused = if pause {
            let dir = crate::stack::ContainerPaths::of(&ctx.root, rec).dir;
            let paused = match crate::container::pause::pause(&dir) {
                Ok(paused) => paused,
                Err(_) if ended() => return Ok(Paused(None)),
                Err(err) => return Err(err.context(format!("cannot pause {}", rec.name))),
            };
            if std::env::var_os(HOLD_PAUSE_FOR_TESTS).is_some() {
                eprintln!(
                    "strata: {} is paused; holding ({HOLD_PAUSE_FOR_TESTS}), pid {}",
                    rec.name,
                    std::process::id()
                );
                loop {
                    std::thread::park();
                }
            }
            Paused(Some(paused))
        } else {
            Paused(None)
        };
        match flush(ctx, rec, pid) {
            Err(_) if ended() => {}
            flushed => flushed?,
        }
        Ok(paused)
    }
}

/// Makes pages the container wrote through mmap reach the upper. Plain
/// writes need no flush: the mount has no write-back cache, so they are in
/// the upper when write returns. The flush runs in a child process
/// (`strata __flush`), which may join the container's user namespace: this
/// one has threads (the store's) and may not.
fn flush(ctx: &Ctx, rec: &ContainerRecord, pid: i32) -> Result<()> {
    let out = std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&ctx.root)
        .arg("__flush")
        .arg(pid.to_string())
        .output()
        .context("starting strata __flush")?;
    if !out.status.success() {
        bail!(
            "cannot flush the filesystem of {}: {}",
            rec.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `strata __flush PID`: the child half of [`flush`].
pub fn flush_in(pid: i32) -> Result<i32> {
    crate::container::sync_root_filesystem(nix::unistd::Pid::from_raw(pid))?;
    Ok(0)
}

/// The changes of a container that nothing writes to any more (paused,
/// or stopped) as a new layer; `None` when it changed nothing.
pub(super) fn container_layer(
    store: &Arc<Store>,
    ingest: &Ingest,
    rec: &ContainerRecord,
    image: &ImageRecord,
) -> Result<Option<PendingLayer>> {
    let (changes, lowers) = change_set(store, rec, image)?;
    let refs: Vec<&dyn fusefs::Lower> = lowers.iter().map(|l| l.as_ref()).collect();
    if changes.is_empty() {
        return Ok(None);
    }
    let mut builder = ingest.builder(&format!("container {}", rec.name));
    for c in changes {
        let mut data = c
            .data(&refs)
            .with_context(|| format!("reading /{}", String::from_utf8_lossy(&c.path)))?;
        let data = data.as_mut().map(|d| &mut **d as &mut dyn std::io::Read);
        builder.add(c.path, c.entry, data)?;
    }
    Ok(Some(builder.finish()?))
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(paused) = self.0.take() {
            if let Err(e) = paused.resume() {
                log::error!("resuming the container after commit: {e:#}");
            }
        }
    }
}

pub fn commit(ctx: &Ctx, args: CommitArgs) -> Result<i32> {
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let ingest = Ingest::begin(&ctx.root)?;
    // The index is read through a reader and opened for writing only to
    // commit: the writer lock is never held while the container is frozen
    // and flushed, or while its changes are read (neither has a bound).
    let store = Arc::new(ctx.reader()?);
    let rec = liveness::container(&store, &args.container)?;
    let image = image_of(&store, &rec)?;
    let run_config = crate::dockerfile::commit_config(&rec.config, &args.change)?;

    let layer = {
        let _paused = Paused::new(ctx, &rec, args.pause && !args.no_pause)?;
        container_layer(&store, &ingest, &rec, &image)?
    };

    let now = crate::humanize::format_rfc3339_nano(crate::clock::now_ns());
    let mut config = image.config();
    config.config = run_config;
    config.created = now.clone();
    config.author = args.author.clone().unwrap_or_default();
    config.history.push(History {
        created: now,
        created_by: crate::dockerfile::commit_created_by(&rec.config),
        author: args.author.unwrap_or_default(),
        comment: args.message.unwrap_or_default(),
        empty_layer: layer.is_none(),
    });
    let new = ctx.store()?.commit_image(NewImage {
        config,
        layer,
        parent: Some(image.id),
        reference,
    })?;
    outln!("{:#}", new.id)?;
    Ok(0)
}
