//! Exit statuses and the typed start error that crosses from the container
//! child to the CLI.
//!
//! Docker's rule (cli/command/container/run.go): a start error whose message
//! says "executable file not found" or "no such file or directory" exits 127,
//! one that says "permission denied" or "is a directory" exits 126, any other
//! failure of the tool itself exits 125. We carry the kind as data instead of
//! matching strings, and pick it from the errno where the error happens.

use nix::errno::Errno;
use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

/// strata's own failure (docker's 125).
pub const EXIT_STRATA_FAILED: i32 = 125;
/// The command exists but cannot be executed (docker's 126).
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command was not found (docker's 127).
pub const EXIT_NOT_FOUND: i32 = 127;

/// Why a container process could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartErrorKind {
    /// The command or a file it needs does not exist: exit 127.
    NotFound,
    /// The command exists but is not executable (permission, directory): 126.
    NotExecutable,
    /// Any other failure while setting up the container: 125.
    Other,
}

/// A failure before the user's command ran, sent over a pipe from the process
/// that failed to the CLI, which prints it and exits with [`Self::exit_code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartError {
    pub kind: StartErrorKind,
    /// The innermost message, e.g. `exec: "nosuchcmd": executable file not found in $PATH`.
    pub msg: String,
}

impl StartError {
    pub fn new(kind: StartErrorKind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
        }
    }

    pub fn other(msg: impl Into<String>) -> Self {
        Self::new(StartErrorKind::Other, msg)
    }

    /// A setup step failed with `errno`: the kind follows docker's mapping.
    pub fn from_errno(step: &str, errno: Errno) -> Self {
        Self::new(
            kind_of_errno(errno),
            format!("{step}: {}", errno_text(errno)),
        )
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            StartErrorKind::NotFound => EXIT_NOT_FOUND,
            StartErrorKind::NotExecutable => EXIT_CANNOT_EXECUTE,
            StartErrorKind::Other => EXIT_STRATA_FAILED,
        }
    }
}

impl std::fmt::Display for StartError {
    /// Docker's one-line shape; the CLI prefixes `strata: `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Error response from daemon: failed to create task for container: \
             unable to start container process: {}: unknown.",
            self.msg
        )
    }
}

impl std::error::Error for StartError {}

/// The kind docker would report for a failed exec or setup call.
pub fn kind_of_errno(errno: Errno) -> StartErrorKind {
    match errno {
        Errno::ENOENT => StartErrorKind::NotFound,
        Errno::EACCES | Errno::EISDIR => StartErrorKind::NotExecutable,
        _ => StartErrorKind::Other,
    }
}

/// Go-style lower-case errno text ("no such file or directory").
pub fn errno_text(errno: Errno) -> String {
    match errno {
        Errno::ENOENT => "no such file or directory".to_owned(),
        Errno::EACCES => "permission denied".to_owned(),
        Errno::EISDIR => "is a directory".to_owned(),
        Errno::ENOEXEC => "exec format error".to_owned(),
        other => other.desc().to_lowercase(),
    }
}

/// The status the CLI exits with for a finished process: its exit code, or
/// 128 + the signal number when a signal killed it (the shell convention
/// docker follows).
pub fn exit_code_of_status(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// The exit code the CLI should use for an error returned by this module:
/// the [`StartError`]'s code when there is one in the chain, else 125.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<StartError>())
        .map_or(EXIT_STRATA_FAILED, StartError::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn start_error_kinds_map_to_docker_exit_codes() {
        assert_eq!(
            StartError::new(StartErrorKind::NotFound, "x").exit_code(),
            127
        );
        assert_eq!(
            StartError::new(StartErrorKind::NotExecutable, "x").exit_code(),
            126
        );
        assert_eq!(StartError::other("x").exit_code(), 125);
    }

    #[test]
    fn errno_kinds_follow_docker_message_rules() {
        assert_eq!(kind_of_errno(Errno::ENOENT), StartErrorKind::NotFound);
        assert_eq!(kind_of_errno(Errno::EACCES), StartErrorKind::NotExecutable);
        assert_eq!(kind_of_errno(Errno::EISDIR), StartErrorKind::NotExecutable);
        assert_eq!(kind_of_errno(Errno::ENOEXEC), StartErrorKind::Other);
    }

    #[test]
    fn signal_death_is_128_plus_signal() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code_of_status(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code_of_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
    }

    #[test]
    fn anyhow_error_carrying_start_error_keeps_its_code() {
        let err = anyhow::Error::new(StartError::new(StartErrorKind::NotFound, "x"));
        assert_eq!(exit_code_for(&err), 127);
        assert_eq!(exit_code_for(&anyhow::anyhow!("boom")), 125);
    }

    #[test]
    fn message_has_docker_shape() {
        let err = StartError::new(
            StartErrorKind::NotFound,
            r#"exec: "nosuchcmd": executable file not found in $PATH"#,
        );
        assert_eq!(
            err.to_string(),
            "Error response from daemon: failed to create task for container: unable to start \
             container process: exec: \"nosuchcmd\": executable file not found in $PATH: unknown."
        );
    }
}
