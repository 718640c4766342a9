//! Volumes, docker's `local` driver: a directory per volume under the
//! store's `volumes/`, whose `_data` is bind-mounted into containers and
//! whose `volume.json` says when it was made and whether it is anonymous
//! (made for `-v /path` or an image's `VOLUME`, and removed with an
//! `--rm` container or by `rm -v`). Named ones live until `volume rm`.
//! Volumes are not layers: commit, diff and export never see them, and
//! gc leaves them alone.

use anyhow::{bail, Context, Result};
use layerdb::ContainerRecord;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `volume.json` keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    #[serde(skip)]
    pub name: String,
    pub created_ns: i64,
    pub anonymous: bool,
}

/// Where the store's volumes live.
pub fn dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The directory a volume's containers see.
pub fn data(root: &Path, name: &str) -> PathBuf {
    dir(root).join(name).join("_data")
}

/// docker's rule for a local volume's name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.clone().count() > 0
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(first_ok && rest_ok) {
        bail!("create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path");
    }
    Ok(())
}

/// A new anonymous volume's name: 64 hex digits, as docker's.
pub fn anonymous_name() -> String {
    crate::container_id::ContainerId::random()
        .as_str()
        .to_string()
}

/// The volume `name`, made if it does not exist; its data directory.
pub fn ensure(root: &Path, name: &str, anonymous: bool) -> Result<PathBuf> {
    check_name(name)?;
    let volume = dir(root).join(name);
    let data = volume.join("_data");
    if volume.join("volume.json").exists() {
        return Ok(data);
    }
    let record = Volume {
        name: name.to_string(),
        created_ns: crate::clock::now_ns(),
        anonymous,
    };
    let record = serde_json::to_vec(&record)?;
    if volume.exists() {
        // Left without its record by a strata before the one below.
        write_record(&volume, &record, name)?;
        return Ok(data);
    }
    // Made whole beside, then renamed into place: a maker killed halfway
    // leaves a `.making-*` directory, which `prune` removes once its
    // process is gone, not a volume no command lists or removes.
    let making = dir(root).join(format!("{MAKING}{name}-{}", std::process::id()));
    let made = making.join("_data");
    std::fs::create_dir_all(&made).with_context(|| format!("create {}", made.display()))?;
    write_record(&making, &record, name)?;
    if let Err(e) = std::fs::rename(&making, &volume) {
        let _ = std::fs::remove_dir_all(&making);
        // Another maker of the same name got there first.
        if !volume.join("volume.json").exists() {
            return Err(e).with_context(|| format!("create volume {name}"));
        }
    }
    Ok(data)
}

/// What a volume being made is called until it is whole, and one being
/// removed once it is no longer one (no volume's name starts with a dot).
const MAKING: &str = ".making-";
const REMOVING: &str = ".removing-";

/// Writes `volume.json` into `volume`, whole or not at all.
fn write_record(volume: &Path, record: &[u8], name: &str) -> Result<()> {
    let tmp = volume.join(format!("volume.json.{}", std::process::id()));
    std::fs::write(&tmp, record).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, volume.join("volume.json"))
        .with_context(|| format!("create volume {name}"))
}

/// The volume `name`, if it exists (a name that is not a volume's, like
/// `../x`, names none).
pub fn find(root: &Path, name: &str) -> Option<Volume> {
    check_name(name).ok()?;
    let bytes = std::fs::read(dir(root).join(name).join("volume.json")).ok()?;
    let mut volume: Volume = serde_json::from_slice(&bytes).ok()?;
    volume.name = name.to_string();
    Some(volume)
}

/// Every volume, by name.
pub fn list(root: &Path) -> Result<Vec<Volume>> {
    let entries = match std::fs::read_dir(dir(root)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("read the volumes directory"),
    };
    // A removal cut short left a `.removing-*` directory: not a volume
    // (no volume's name starts with a dot); `prune` takes it away.
    let mut volumes: Vec<Volume> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            find(root, &name)
        })
        .collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(volumes)
}

/// The containers (ids) whose mounts use the volume `name`.
pub fn users<'c>(containers: &'c [ContainerRecord], name: &str) -> Vec<&'c str> {
    containers
        .iter()
        .filter(|c| c.mounts.iter().any(|m| m.volume.as_deref() == Some(name)))
        .map(|c| c.id.as_str())
        .collect()
}

/// Removes the volume `name` and everything in it: [`take_away`], then
/// [`Doomed::remove`].
pub fn remove(root: &Path, name: &str) -> Result<()> {
    take_away(root, name)?.remove()
}

/// A volume renamed away, not yet removed.
pub struct Doomed {
    root: PathBuf,
    name: String,
    /// Where it is now: `.removing-NAME-PID`.
    pub path: PathBuf,
}

/// Renames the volume `name` away: no command finds it from then on, and
/// a removal cut short leaves no half volume under its name. Quick, so
/// that the containers lock can be held over the choice and this (see
/// `remove_unused`).
pub fn take_away(root: &Path, name: &str) -> Result<Doomed> {
    check_name(name)?;
    let path = dir(root).join(format!("{REMOVING}{name}-{}", std::process::id()));
    std::fs::rename(dir(root).join(name), &path)
        .with_context(|| format!("remove volume {name}"))?;
    Ok(Doomed {
        root: root.to_path_buf(),
        name: name.to_string(),
        path,
    })
}

impl Doomed {
    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes everything in it.
    pub fn remove(self) -> Result<()> {
        let name = &self.name;
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            // A rootless store's volume holds what its containers chowned
            // to their users (subordinate ids), out of the host user's
            // reach: removed from strata's user namespace, where they map
            // back.
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    && !nix::unistd::geteuid().is_root() =>
            {
                remove_in_user_namespace(&self.root, &self.path)
                    .with_context(|| format!("remove volume {name}"))
            }
            Err(e) => Err(e).with_context(|| format!("remove volume {name}")),
        }
    }
}

/// `rm -rf path` run through `strata unshare`.
fn remove_in_user_namespace(root: &Path, path: &Path) -> Result<()> {
    let out = std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(root)
        .args(["unshare", "--", "rm", "-rf", "--"])
        .arg(path)
        .output()
        .context("starting strata unshare")?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        bail!("{}", said.lines().last().unwrap_or("rm -rf failed"));
    }
    Ok(())
}

/// Removes what makers and removals cut short left (`.making-*`,
/// `.removing-*` of a process gone: a live one is still at work); their
/// names. `volume prune` and `gc` call it.
pub fn remove_leftovers(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir(root)) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let abandoned = [MAKING, REMOVING]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .and_then(|rest| rest.rsplit_once('-')?.1.parse().ok())
            .is_some_and(|pid| !crate::liveness::process_alive(pid));
        if abandoned {
            let gone = std::fs::remove_dir_all(entry.path())
                .or_else(|_| remove_in_user_namespace(root, &entry.path()));
            if gone.is_ok() {
                removed.push(name);
            }
        }
    }
    removed
}

/// Removes the anonymous volumes of `rec` (its `--rm`, or `rm -v`) that
/// no other container uses.
pub fn remove_anonymous(root: &Path, rec: &ContainerRecord, others: &[ContainerRecord]) {
    for name in rec.mounts.iter().filter_map(|m| m.volume.as_deref()) {
        let anonymous = find(root, name).is_some_and(|v| v.anonymous);
        let used = users(others, name).iter().any(|id| *id != rec.id);
        if anonymous && !used {
            if let Err(e) = remove(root, name) {
                log::warn!("{e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["db", "pg_data.1", "a-b", "0x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["a", "-a", ".a", "a/b", "a b", "", "a:b", "..", "ä1"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_volume_is_made_once_listed_and_removed_whole() {
        let root = tempfile::tempdir().unwrap();
        let data = ensure(root.path(), "db", false).unwrap();
        std::fs::write(data.join("f"), "x").unwrap();
        assert_eq!(ensure(root.path(), "db", true).unwrap(), data);
        assert!(!find(root.path(), "db").unwrap().anonymous);
        assert_eq!(std::fs::read(data.join("f")).unwrap(), b"x");
        let names: Vec<String> = list(root.path())
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["db"]);
        remove(root.path(), "db").unwrap();
        assert!(list(root.path()).unwrap().is_empty());
        assert!(!dir(root.path()).join("db").exists());
        // A removal killed after its rename: no volume, and prune's
        // cleanup takes it away once its process is gone (pid 1 is not).
        ensure(root.path(), "half", false).unwrap();
        let working = dir(root.path()).join(".removing-half-1");
        std::fs::rename(dir(root.path()).join("half"), &working).unwrap();
        assert!(list(root.path()).unwrap().is_empty());
        assert!(remove_leftovers(root.path()).is_empty());
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let cut = dir(root.path()).join(format!(".removing-half-{}", gone.id()));
        std::fs::rename(&working, &cut).unwrap();
        let name = cut.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(remove_leftovers(root.path()), [name]);
        assert!(!cut.exists());
    }
}
