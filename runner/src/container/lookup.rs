//! Finding `args[0]` the way runc does (Go's `exec.LookPath`), so the
//! messages and exit codes match docker's.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::exit::{StartError, StartErrorKind};

/// What a candidate path is, as far as executing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Missing,
    Directory,
    /// A file without any execute bit.
    NotExecutable,
    Executable,
}

/// Looks at the real file system (inside the container, after pivot_root).
pub fn probe_path(path: &Path) -> Probe {
    match std::fs::metadata(path) {
        Err(_) => Probe::Missing,
        Ok(meta) if meta.is_dir() => Probe::Directory,
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Probe::NotExecutable,
        Ok(_) => Probe::Executable,
    }
}

/// Resolves `command` with `path_env` (the container's PATH). A command with
/// a `/` is used as given; otherwise the first executable in PATH wins, and
/// non-executable files are skipped, as in Go.
pub fn resolve_command(
    command: &str,
    path_env: &str,
    probe: impl Fn(&Path) -> Probe,
) -> Result<PathBuf, StartError> {
    if command.is_empty() {
        return Err(not_found(command));
    }
    if command.contains('/') {
        return check_explicit(command, probe(Path::new(command)));
    }
    path_env
        .split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| Path::new(dir).join(command))
        .find(|candidate| probe(candidate) == Probe::Executable)
        .ok_or_else(|| not_found(command))
}

fn check_explicit(command: &str, probe: Probe) -> Result<PathBuf, StartError> {
    let (kind, why) = match probe {
        Probe::Executable => return Ok(PathBuf::from(command)),
        Probe::Missing => (
            StartErrorKind::NotFound,
            format!("stat {command}: no such file or directory"),
        ),
        Probe::Directory => (StartErrorKind::NotExecutable, "is a directory".to_owned()),
        Probe::NotExecutable => (
            StartErrorKind::NotExecutable,
            "permission denied".to_owned(),
        ),
    };
    Err(StartError::new(kind, format!("exec: {command:?}: {why}")))
}

fn not_found(command: &str) -> StartError {
    StartError::new(
        StartErrorKind::NotFound,
        format!("exec: {command:?}: executable file not found in $PATH"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(path: &Path) -> Probe {
        match path.to_str() {
            Some("/bin/sh" | "/usr/bin/tool") => Probe::Executable,
            Some("/bin/tool" | "/etc/passwd") => Probe::NotExecutable,
            Some("/bin") => Probe::Directory,
            _ => Probe::Missing,
        }
    }

    #[test]
    fn name_is_found_in_first_path_dir_that_has_it() {
        assert_eq!(
            resolve_command("sh", "/usr/bin:/bin", fake),
            Ok("/bin/sh".into())
        );
    }

    #[test]
    fn non_executable_file_in_path_is_skipped() {
        assert_eq!(
            resolve_command("tool", "/bin:/usr/bin", fake),
            Ok("/usr/bin/tool".into())
        );
    }

    #[test]
    fn missing_name_is_not_found_with_docker_message() {
        let err = resolve_command("nosuchcmd", "/bin", fake).expect_err("not in PATH");
        assert_eq!(err.kind, StartErrorKind::NotFound);
        assert_eq!(
            err.msg,
            r#"exec: "nosuchcmd": executable file not found in $PATH"#
        );
    }

    #[test]
    fn explicit_path_is_not_searched_and_reports_why_it_fails() {
        assert_eq!(resolve_command("/bin/sh", "", fake), Ok("/bin/sh".into()));
        let missing = resolve_command("/nope", "/bin", fake).expect_err("missing");
        assert_eq!(missing.kind, StartErrorKind::NotFound);
        assert_eq!(
            missing.msg,
            r#"exec: "/nope": stat /nope: no such file or directory"#
        );
        let plain = resolve_command("/etc/passwd", "/bin", fake).expect_err("not executable");
        assert_eq!(plain.kind, StartErrorKind::NotExecutable);
        assert_eq!(plain.msg, r#"exec: "/etc/passwd": permission denied"#);
        let dir = resolve_command("/bin", "/bin", fake).expect_err("directory");
        assert_eq!(dir.exit_code(), 126);
    }

    #[test]
    fn empty_path_entry_means_current_directory() {
        let probe = |p: &Path| {
            if p == Path::new("./x") {
                Probe::Executable
            } else {
                Probe::Missing
            }
        };
        assert_eq!(resolve_command("x", "/bin:", probe), Ok("./x".into()));
    }
}
