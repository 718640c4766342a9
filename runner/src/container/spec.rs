//! What a container needs to start, and the pure rules that complete it:
//! environment defaults, id validation.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::environment;

/// Docker's default PATH when the image and `-e` give none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to start a container's first process.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The container id.
    pub id: crate::container_id::ContainerId,
    /// The merged tree: a FUSE mount made by the caller, or any directory.
    pub rootfs: PathBuf,
    /// Entrypoint + cmd, already resolved; `args[0]` is looked up in the
    /// container's PATH when it has no `/`.
    pub args: Vec<String>,
    /// `K=V` from the image and `-e`; see [`final_env`] for the defaults added.
    pub env: Vec<String>,
    /// Working directory; "" means "/". Created when missing (docker -w).
    pub cwd: String,
    /// "", "name", "uid", "name:group", "uid:gid", resolved with the
    /// rootfs's /etc/passwd and /etc/group.
    pub user: String,
    pub hostname: String,
    pub tty: bool,
    pub interactive: bool,
    /// The network: its mode (a namespace of its own but for `host`), the
    /// published ports, the extra /etc/hosts entries.
    pub network: crate::network::NetworkSpec,
    /// `-v src:dst[:ro]`.
    pub mounts: Vec<layerdb::BindMount>,
    /// `--tmpfs dst[:options]`.
    pub tmpfs: Vec<layerdb::TmpfsMount>,
    /// `--init`: pid 1 is an init, the command its child.
    pub init: bool,
    /// Host files bind-mounted over /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub etc_files: EtcFiles,
    /// The container's log (`<container dir>/container.log`), or none
    /// (`--log-driver none`).
    pub log_file: Option<PathBuf>,
    /// When the log is rotated (`--log-opt max-size`, `max-file`).
    pub log_options: layerdb::LogOptions,
    /// Capabilities, seccomp, no_new_privs, `--privileged`, as recorded.
    pub security: layerdb::SecurityOptions,
    /// Limits and device access, applied through the container's cgroup.
    pub resources: layerdb::Resources,
    /// The container's directory: the monitor keeps the record of its
    /// cgroup and the socket `commit` pauses it through there.
    pub container_dir: PathBuf,
}

/// Files the caller prepared for the container's /etc. A `None` leaves the
/// image's file in place.
#[derive(Debug, Clone, Default)]
pub struct EtcFiles {
    pub hosts: Option<PathBuf>,
    pub hostname: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

impl EtcFiles {
    /// (source on the host, target inside the container) pairs.
    pub fn binds(&self) -> Vec<(&Path, &'static str)> {
        [
            (&self.hosts, "/etc/hosts"),
            (&self.hostname, "/etc/hostname"),
            (&self.resolv_conf, "/etc/resolv.conf"),
        ]
        .into_iter()
        .filter_map(|(source, target)| source.as_deref().map(|source| (source, target)))
        .collect()
    }
}

impl Spec {
    /// Checks what must hold before any of the spec becomes a path or a
    /// syscall argument.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.args.is_empty() {
            bail!("no command specified");
        }
        if !self.rootfs.is_absolute() {
            bail!("rootfs {} is not an absolute path", self.rootfs.display());
        }
        if let Some(bad) = self.env.iter().find(|entry| !entry.contains('=')) {
            bail!("invalid environment entry {bad:?}: expected KEY=VALUE");
        }
        Ok(())
    }
}

/// The environment the process gets, in docker's order: PATH (default when
/// unset), HOSTNAME, TERM=xterm with a tty, the given entries (a later entry
/// replaces an earlier one with the same key, in the earlier's place), HOME
/// from /etc/passwd when unset.
pub fn final_env(given: &[String], home: &str, hostname: &str, tty: bool) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    if environment::lookup(given, "PATH").is_none() {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env.push(format!("HOSTNAME={hostname}"));
    if tty {
        env.push("TERM=xterm".to_owned());
    }
    environment::set_all(&mut env, given.iter().cloned());
    if environment::lookup(&env, "HOME").is_none() {
        env.push(format!("HOME={home}"));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn env_gets_docker_defaults_in_docker_order() {
        let env = final_env(&strings(&["FOO=bar"]), "/root", "abc", false);
        assert_eq!(
            env,
            strings(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=abc",
                "FOO=bar",
                "HOME=/root"
            ])
        );
    }

    #[test]
    fn env_keeps_given_path_home_and_hostname() {
        let given = strings(&["PATH=/bin", "HOME=/h", "HOSTNAME=x"]);
        let env = final_env(&given, "/root", "abc", true);
        assert_eq!(
            env,
            strings(&["HOSTNAME=x", "TERM=xterm", "PATH=/bin", "HOME=/h"])
        );
    }

    #[test]
    fn env_later_entry_replaces_earlier_with_same_key() {
        let env = final_env(&strings(&["A=1", "A=2"]), "/", "h", false);
        assert_eq!(environment::lookup(&env, "A"), Some("2"));
        assert_eq!(env.iter().filter(|e| e.starts_with("A=")).count(), 1);
    }

    #[test]
    fn etc_binds_skip_missing_files() {
        let files = EtcFiles {
            hosts: Some("/x/hosts".into()),
            ..EtcFiles::default()
        };
        assert_eq!(files.binds(), vec![(Path::new("/x/hosts"), "/etc/hosts")]);
    }
}
