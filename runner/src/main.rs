//! `strata`: docker's verbs on a layer store (layerdb) and a FUSE union
//! filesystem (fusefs), with no daemon.

#[macro_use]
mod stdout;
mod build;
mod cli;
mod clock;
mod commands;
mod container;
mod container_id;
mod copy_path;
mod dockerfile;
mod environment;
mod error_text;
mod file_lock;
mod health;
mod hooks;
mod humanize;
mod list_filter;
mod liveness;
mod mount_spec;
mod names;
mod network;
mod output;
mod output_file;
mod overlay_compat;
mod reference_filter;
mod registry;
mod restart_policy;
mod run_state;
mod runtime;
mod server_faults;
mod signal;
mod stack;
mod sys;
mod template;
mod tree_tar;
mod truncate;
mod volumes;

use clap::Parser;
use log::Log as _;

/// A failure that carries the exit status to use (a container's own
/// status, or docker's 125/126/127).
#[derive(Debug)]
pub struct ExitCode(pub i32);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitCode {}

/// The HTTP client's trace level dumps every request, `Authorization`
/// headers with their tokens and passwords included (its debug level
/// redacts them): whatever `STRATA_LOG` asks, it logs at most debug, so
/// credentials are never logged.
struct NoSecrets(env_logger::Logger);

impl NoSecrets {
    fn may_log(&self, metadata: &log::Metadata) -> bool {
        let dumps_secrets = ["ureq", "rustls"]
            .iter()
            .any(|c| metadata.target().starts_with(c));
        self.0.enabled(metadata) && !(dumps_secrets && metadata.level() > log::Level::Debug)
    }
}

impl log::Log for NoSecrets {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.may_log(metadata)
    }

    fn log(&self, record: &log::Record) {
        if self.may_log(record.metadata()) && !server_faults::kept(record) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Prints what clap found wrong with the command line as docker's CLI
/// does (one line, exit 125), or the help or version asked for (exit 0).
/// clap's own rendering is a paragraph with tips and the usage, exit 2.
fn usage_error(e: &clap::Error, raw: &[std::ffi::OsString]) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // clap's own print: a closed pipe (`strata --help | true`) is
            // no panic.
            let _ = e.print();
            0
        }
        _ => {
            // What is wrong is clap's first paragraph: one line, or a
            // line and what it names on the next ones (the arguments
            // missing, the values possible). Tips and usage follow a
            // blank line.
            let shown = e.render().to_string();
            let what: Vec<&str> = shown
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let what = what.join(" ");
            let what = what.strip_prefix("error: ").unwrap_or(&what);
            eprintln!("Error: {what}; see '{} --help'", command_named(raw));
            125
        }
    }
}

/// The (sub)command a command line names, "strata image rm", for the
/// hint to its help. clap's error does not carry it (only some kinds
/// show a usage line), so the line is parsed again with errors ignored,
/// which keeps the subcommands the parser got into.
fn command_named(raw: &[std::ffi::OsString]) -> String {
    use clap::CommandFactory;
    let mut words = vec!["strata".to_owned()];
    if let Ok(matches) = cli::Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(raw)
    {
        let mut matches = &matches;
        while let Some((name, sub)) = matches.subcommand() {
            words.push(name.to_owned());
            matches = sub;
        }
    }
    words.join(" ")
}

fn main() {
    let logger = env_logger::Builder::from_env(
        env_logger::Env::default().filter_or("STRATA_LOG", "warn,fuser=error,fuser::reply=off"),
    )
    .build();
    log::set_max_level(logger.filter());
    // Only fails when a logger is set already, which nothing else does.
    let _ = log::set_boxed_logger(Box::new(NoSecrets(logger)));
    // Lossy only to tell the mode: an argument that is not UTF-8 is
    // refused by the parser that takes it, never a panic here.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let arg = |i: usize| raw.get(i).map(|a| a.to_string_lossy());
    let as_overlay = arg(0).is_some_and(|a| {
        a.rsplit('/')
            .next()
            .unwrap_or(&a)
            .contains("fuse-overlayfs")
    });
    let overlay_args = match (as_overlay, arg(1).as_deref()) {
        (true, _) => Some(1),
        (false, Some("fuse-overlayfs")) => Some(2),
        _ => None,
    };
    let result = if let Some(skip) = overlay_args {
        let args: Result<Vec<String>, _> = raw
            .into_iter()
            .skip(skip)
            .map(|a| a.into_string())
            .collect();
        match args {
            Ok(args) => commands::fuse_overlayfs(&args),
            Err(bad) => Err(anyhow::anyhow!("argument {bad:?} is not valid UTF-8")),
        }
    } else {
        match cli::Cli::try_parse_from(&raw) {
            Ok(cli) => commands::dispatch(cli),
            Err(e) => std::process::exit(usage_error(&e, &raw)),
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<ExitCode>() {
            Some(ExitCode(code)) => *code,
            None => {
                let error = format!("Error: {}", error_text::describe(&e));
                eprintln!("{}", server_faults::with_cause(&error));
                125
            }
        },
    };
    // Every store the command opened was closed as dispatch's locals went.
    // A thread that still holds one (a lookup ahead of reads, finishing)
    // must not meet the C++ destructors exit(3) runs: RocksDB's statics go
    // from under it, and the process aborts after its last line ("pthread
    // lock: Invalid argument", seen once under a loaded test run). _exit
    // skips them; what it leaves unwritten is what kill -9 leaves, which
    // the store is built to survive.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    sys::exit_immediately(code)
}
