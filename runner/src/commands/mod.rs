//! One file per verb (a hidden helper verb lives with the verb it serves:
//! `__flush` in commit.rs, `serve-mount` in mount.rs, `__exec` in exec.rs,
//! `__archive` and `__copy-in` in cp.rs, `__keep` in keep.rs, `__health` in health.rs);
//! `dispatch` routes the parsed command line to it.

mod attach;
mod build;
mod commit;
mod cp;
mod create;
mod df;
mod diff;
mod exec;
mod export;
mod gc;
mod health;
mod history;
mod images;
mod import;
mod info;
mod inspect;
mod keep;
mod kill;
mod launch;
mod load;
mod login;
mod logout;
mod logs;
mod mount;
mod overlay;
mod pause;
mod port;
mod prune;
mod ps;
pub mod pull;
mod push;
mod rename;
mod rm;
mod rmi;
mod run;
mod save;
mod start;
mod stats;
mod stop;
mod tag;
mod top;
mod umount;
mod unshare;
mod update;
mod verify;
mod volume;
mod wait;

use crate::cli::{Cli, Command, ContainerCommand, ImageCommand, ObjectType, SystemCommand};
use anyhow::{Context as _, Result};
use std::path::PathBuf;

/// What every command gets: where the store is.
pub struct Ctx {
    pub root: PathBuf,
}

/// Whether an error of `e`'s chain says a filesystem is full
/// (`layerdb::error::no_space`).
pub(crate) fn ran_out_of_space(e: &anyhow::Error) -> bool {
    use layerdb::error::no_space;
    e.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>();
        let errno = cause.downcast_ref::<rustix::io::Errno>();
        io.is_some_and(no_space) || errno.is_some_and(|e| no_space(&std::io::Error::from(*e)))
    })
}

impl Ctx {
    /// The store, opened for writing (waiting while another process writes).
    pub fn store(&self) -> Result<layerdb::Store> {
        Ok(layerdb::Store::open(&self.root)?)
    }

    /// The store for a command that deletes (`rm`, `rmi`): opened with the
    /// disk space reserve freed, so it works on a full disk.
    pub fn store_to_delete(&self) -> Result<layerdb::Store> {
        Ok(layerdb::Store::open_to_delete(&self.root)?)
    }

    /// A directory of this process's own in the store's `tmp/`, removed
    /// when dropped; named `KIND-PID-…`, so `gc` removes one whose process
    /// was killed (layerdb's rule for `tmp/`). On a full store disk, one
    /// in the system's temporary directory: what only reads the store
    /// (`export`, `cp` out, `save`) must work there, as the way to free
    /// it (they failed, found by a review).
    pub fn scratch_dir(&self, kind: &str) -> Result<tempfile::TempDir> {
        let tmp = self.root.join("tmp");
        let prefix = format!("{kind}-{}-", std::process::id());
        let builder = || {
            let mut b = tempfile::Builder::new();
            b.prefix(&prefix);
            b
        };
        match builder().tempdir_in(&tmp) {
            Err(e) if layerdb::error::no_space(&e) => builder().tempdir(),
            made => made,
        }
        .with_context(|| format!("create a directory in {}", tmp.display()))
    }

    /// The store for a command that only reads the index: a secondary
    /// instance, which never waits for a writer and costs no fsync (a
    /// read-write open writes a new MANIFEST, CURRENT and OPTIONS file).
    /// Settling a container whose monitor died writes only its state file.
    pub fn reader(&self) -> Result<layerdb::Store> {
        Ok(layerdb::Store::open_read_only(&self.root)?)
    }

    /// A container by name or id, its state settled, through a reader
    /// (the lookup only reads).
    pub fn container(&self, name: &str) -> Result<layerdb::ContainerRecord> {
        crate::liveness::container(&self.reader()?, name)
    }
}

/// docker's CLI on a verb of several containers (`stop a b c`, `rm`,
/// `wait`...): each is acted on in turn, and one that fails is reported
/// on stderr as the daemon's error, a line each, while the others still
/// go. `act` prints what a success prints. Returns the failures, for the
/// verb's last word and exit code. A failure that is an [`ExitCode`] was
/// reported by whoever made it (a start's launch prints its own error).
///
/// [`ExitCode`]: crate::ExitCode
fn each_container(
    names: &[String],
    mut act: impl FnMut(&str) -> Result<()>,
) -> Vec<(&str, anyhow::Error)> {
    let mut failures = Vec::new();
    for name in names {
        if let Err(e) = act(name) {
            if !e.is::<crate::ExitCode>() {
                eprintln!(
                    "Error response from daemon: {}",
                    crate::error_text::describe(&e)
                );
            }
            failures.push((name.as_str(), e));
        }
    }
    failures
}

/// [`each_container`] for a verb that ends with 1 when one failed, as
/// docker's `stop`, `kill`, `pause`, `unpause`, `restart` and `wait` do.
fn for_each_container(names: &[String], act: impl FnMut(&str) -> Result<()>) -> i32 {
    match each_container(names, act).is_empty() {
        true => 0,
        false => 1,
    }
}

/// docker's check before it attaches a terminal: `-it` with stdin a pipe
/// or a file would give the container a terminal fed by no one (and a
/// client waiting for good), so it is refused.
fn check_tty(interactive: bool, tty: bool) -> Result<()> {
    use std::io::IsTerminal;
    if interactive && tty && !std::io::stdin().is_terminal() {
        anyhow::bail!("the input device is not a TTY");
    }
    Ok(())
}

/// fuse-overlayfs's command line (see `overlay_compat`).
pub fn fuse_overlayfs(args: &[String]) -> Result<i32> {
    overlay::run(args)
}

/// Whether the command only reads the store and prints: nothing it
/// leaves half done, no mount to take down and no child it feeds through
/// a pipe, so it may end as soon as its output is closed (see
/// `sys::die_on_closed_pipe`). Not `export`: killed by the signal, it
/// would leave its private mount of the container behind.
fn only_prints(command: &Command) -> bool {
    use ContainerCommand as C;
    use ImageCommand as I;
    matches!(
        command,
        Command::Images(_)
            | Command::History(_)
            | Command::Inspect(_)
            | Command::Save(_)
            | Command::Ps(_)
            | Command::Diff { .. }
            | Command::Logs(_)
            | Command::Port(_)
            | Command::Top(_)
            | Command::Stats(_)
            | Command::System(SystemCommand::Df)
            | Command::Image(I::Ls(_) | I::History(_) | I::Inspect(_) | I::Save(_))
            | Command::Container(
                C::Ls(_) | C::Inspect(_) | C::Diff { .. } | C::Logs(_) | C::Port(_) | C::Top(_),
            )
    )
}

/// Runs a command; the result is the process exit status.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let root = cli.root.unwrap_or_else(layerdb::default_root);
    // The store's paths reach the runtime and the mount server, which
    // work from other directories: a relative root is made whole here.
    let root = std::path::absolute(&root)
        .map_err(|e| anyhow::anyhow!("store root {}: {e}", root.display()))?;
    let ctx = Ctx { root };
    if only_prints(&cli.command) {
        crate::sys::die_on_closed_pipe()?;
    }
    match cli.command {
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => import::run(&ctx, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::list(&ctx, a),
        Command::Tag { source, target } | Command::Image(ImageCommand::Tag { source, target }) => {
            tag::tag(&ctx, &source, &target)
        }
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi::remove(&ctx, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => history::history(&ctx, a),
        Command::Inspect(a) => inspect::run(&ctx, a.args, a.object_type),
        Command::Image(ImageCommand::Inspect(a)) => inspect::run(&ctx, a, Some(ObjectType::Image)),
        Command::Container(ContainerCommand::Inspect(a)) => {
            inspect::run(&ctx, a, Some(ObjectType::Container))
        }
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(&ctx, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => load::run(&ctx, a),
        Command::System(SystemCommand::Df) => df::df(&ctx),
        Command::Volume(v) => volume::run(&ctx, v),
        Command::Gc => gc::gc(&ctx),
        Command::Info => info::info(&ctx),
        Command::Version => info::version(),
        Command::Verify(a) => verify::verify(&ctx, a),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => run::run(&ctx, *a),
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            create::run(&ctx, *a)
        }
        Command::Launch(a) => launch::run(&ctx, a),
        Command::Keep(a) => keep::keep(&ctx, a),
        Command::Health(a) => health::health(&ctx, a),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            commit::commit(&ctx, a)
        }
        Command::Diff { container } | Command::Container(ContainerCommand::Diff { container }) => {
            diff::diff(&ctx, &container)
        }
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => {
            export::export(&ctx, a)
        }
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => cp::cp(&ctx, a),
        Command::Archive(a) => cp::archive_in(a),
        Command::CopyIn(a) => cp::copy_in_for_build(&ctx, a),
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::build(&ctx, a),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => ps::ps(&ctx, a),
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => rm::rm(&ctx, a),
        Command::Container(ContainerCommand::Prune { force, filter }) => {
            prune::containers(&ctx, force, &filter)
        }
        Command::Image(ImageCommand::Prune { all, force, filter }) => {
            prune::images(&ctx, all, force, &filter)
        }
        Command::System(SystemCommand::Prune {
            all,
            force,
            volumes,
            filter,
        }) => prune::system(&ctx, all, force, volumes, &filter),
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => stop::stop(&ctx, a),
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => kill::kill(&ctx, a),
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => start::start(&ctx, a),
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            start::restart(&ctx, a)
        }
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => pause::pause(&ctx, a),
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            pause::unpause(&ctx, a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => wait::wait(&ctx, a),
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => port::port(&ctx, a),
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => top::top(&ctx, a),
        Command::Stats(a) | Command::Container(ContainerCommand::Stats(a)) => stats::stats(&ctx, a),
        Command::Update(a) | Command::Container(ContainerCommand::Update(a)) => {
            update::update(&ctx, a)
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            attach::attach(&ctx, a)
        }
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => logs::logs(&ctx, a),
        Command::Rename {
            container,
            new_name,
        }
        | Command::Container(ContainerCommand::Rename {
            container,
            new_name,
        }) => rename::rename(&ctx, &container, &new_name),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => exec::exec(&ctx, a),
        Command::ExecIn(a) => exec::exec_in(a),
        Command::Flush { pid } => commit::flush_in(pid),
        Command::Mount(a) => mount::mount(&ctx, a),
        Command::Umount { target } => umount::umount(&ctx, &target),
        Command::Unshare { command } => unshare::run(command),
        Command::ServeMount(a) => mount::serve(&ctx, a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull::run(&ctx, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::run(&ctx, a),
        Command::Login(a) => login::login(a),
        Command::Logout { registry } => logout::logout(registry.as_deref()),
    }
}
