//! One file per verb; `dispatch` routes the parsed command line to it.

mod commit;
mod containers;
mod create;
mod export;
mod images;
mod import;
mod inspect;
mod launch;
mod load;
mod login;
mod mount;
mod overlay;
pub mod pull;
mod push;
mod run;
mod save;
mod store_admin;
mod unshare;

use crate::cli::{Cli, Command, ContainerCommand, ImageCommand, SystemCommand};
use anyhow::Result;
use std::path::PathBuf;

/// What every command gets: where the store is.
pub struct Ctx {
    pub root: PathBuf,
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

    /// The store for a command that only reads the index: a secondary
    /// instance, which never waits for a writer and costs no fsync (a
    /// read-write open writes a new MANIFEST, CURRENT and OPTIONS file).
    /// Settling a container whose monitor died writes only its state file.
    pub fn reader(&self) -> Result<layerdb::Store> {
        Ok(layerdb::Store::open_read_only(&self.root)?)
    }
}

/// fuse-overlayfs's command line (see `overlay_compat`).
pub fn fuse_overlayfs(args: &[String]) -> Result<i32> {
    overlay::run(args)
}

/// Runs a command; the result is the process exit status.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let ctx = Ctx {
        root: cli.root.unwrap_or_else(layerdb::default_root),
    };
    match cli.command {
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => import::run(&ctx, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::list(&ctx, a),
        Command::Tag { source, target } | Command::Image(ImageCommand::Tag { source, target }) => {
            images::tag(&ctx, &source, &target)
        }
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::remove(&ctx, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => images::history(&ctx, a),
        Command::Inspect(a)
        | Command::Image(ImageCommand::Inspect(a))
        | Command::Container(ContainerCommand::Inspect(a)) => inspect::run(&ctx, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(&ctx, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => load::run(&ctx, a),
        Command::System(SystemCommand::Df) => store_admin::df(&ctx),
        Command::Gc => store_admin::gc(&ctx),
        Command::Verify(a) => store_admin::verify(&ctx, a),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => run::run(&ctx, *a),
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            create::run(&ctx, *a)
        }
        Command::Launch(a) => launch::run(&ctx, a),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            commit::commit(&ctx, a)
        }
        Command::Diff { container } | Command::Container(ContainerCommand::Diff { container }) => {
            commit::diff(&ctx, &container)
        }
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => {
            export::export(&ctx, a)
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => containers::ps(&ctx, a),
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => containers::rm(&ctx, a),
        Command::Container(ContainerCommand::Prune { .. }) => containers::prune(&ctx),
        Command::Stop(a) => containers::stop(&ctx, a),
        Command::Kill(a) => containers::kill(&ctx, a),
        Command::Start(a) => containers::start(&ctx, a),
        Command::Logs(a) => containers::logs(&ctx, a),
        Command::Rename {
            container,
            new_name,
        } => containers::rename(&ctx, &container, &new_name),
        Command::Exec(a) => containers::exec(&ctx, a),
        Command::ExecIn(a) => containers::exec_in(a),
        Command::Flush { pid } => commit::flush_in(pid),
        Command::Mount(a) => mount::mount(&ctx, a),
        Command::Umount { target } => mount::umount(&ctx, &target),
        Command::Unshare { command } => unshare::run(command),
        Command::ServeMount(a) => mount::serve(&ctx, a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull::run(&ctx, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::run(&ctx, a),
        Command::Login(a) => login::login(a),
        Command::Logout { registry } => login::logout(registry.as_deref()),
    }
}
