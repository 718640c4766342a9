//! Compiled filters, kept: libseccomp takes tens of milliseconds to turn
//! docker's profile into BPF, more than the rest of a container's start.
//! The program depends only on the profile, the container's capabilities,
//! the architecture, the kernel's version and libseccomp's, so it is
//! stored under a digest of those in the runtime directory (a tmpfs: gone
//! at reboot, when the kernel may change) and read back by every later
//! start or exec with the same inputs.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use caps::CapsHashSet;
use libseccomp::{ScmpArch, ScmpVersion};

use super::profile::Profile;

/// One BPF instruction as the kernel and libseccomp lay it out.
const INSTRUCTION_BYTES: usize = 8;

/// The BPF program for `profile` and `caps`: from the cache in `dir`
/// when it holds it, else compiled and added (a cache that cannot be
/// written only costs the next start a compile).
pub fn program(
    dir: Option<&Path>,
    profile: &Profile,
    caps: &CapsHashSet,
) -> anyhow::Result<Vec<u8>> {
    let Some(dir) = dir else {
        return compile_to_bytes(profile, caps, &std::env::temp_dir());
    };
    let path = dir.join(format!("{}.bpf", key(profile, caps)?));
    if let Ok(bytes) = fs::read(&path) {
        if valid(&bytes) {
            return Ok(bytes);
        }
    }
    let bytes = compile_to_bytes(profile, caps, dir)?;
    store(&path, &bytes);
    Ok(bytes)
}

/// The cache directory, made 0700 under the runtime directory's base.
pub fn dir(runtime_base: &Path) -> PathBuf {
    let dir = runtime_base.join("seccomp");
    let _ = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    dir
}

fn key(profile: &Profile, caps: &CapsHashSet) -> anyhow::Result<String> {
    let mut names: Vec<String> = caps.iter().map(ToString::to_string).collect();
    names.sort();
    let version = ScmpVersion::current().context("libseccomp version")?;
    let inputs = serde_json::json!({
        "profile": profile,
        "caps": names,
        "arch": format!("{:?}", ScmpArch::native()),
        "kernel": super::kernel_version()?,
        "libseccomp": [version.major, version.minor, version.micro],
    });
    Ok(layerdb::Digest::of(inputs.to_string().as_bytes()).hex())
}

fn valid(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.chunks_exact(INSTRUCTION_BYTES).remainder().is_empty()
}

/// libseccomp writes the program to a file descriptor: a temporary file
/// in `dir`, read back.
fn compile_to_bytes(profile: &Profile, caps: &CapsHashSet, dir: &Path) -> anyhow::Result<Vec<u8>> {
    let filter = super::compile(profile, caps)?;
    let mut file = tempfile::tempfile_in(dir)
        .or_else(|_| tempfile::tempfile())
        .context("seccomp: temporary file")?;
    filter
        .export_bpf(&file)
        .context("seccomp: export the filter")?;
    use std::io::{Read as _, Seek as _};
    file.rewind().context("seccomp: rewind")?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .context("seccomp: read the filter")?;
    anyhow::ensure!(
        valid(&bytes),
        "seccomp: libseccomp wrote {} bytes",
        bytes.len()
    );
    Ok(bytes)
}

/// Written whole or not at all: a temporary file renamed into place.
fn store(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else {
        return;
    };
    let Ok(mut file) = tempfile::NamedTempFile::new_in(dir) else {
        return;
    };
    if file.write_all(bytes).is_ok() {
        let _ = file.persist(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_program_is_the_compiled_one_and_is_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let profile = super::super::default::profile();
        let caps: CapsHashSet = super::super::super::capabilities::DEFAULT
            .into_iter()
            .collect();
        let first = program(Some(dir.path()), &profile, &caps).expect("compiles");
        assert!(valid(&first));
        let cached: Vec<_> = fs::read_dir(dir.path()).expect("list").flatten().collect();
        assert_eq!(cached.len(), 1, "one program, no temporary file left");
        assert_eq!(fs::read(cached[0].path()).expect("read"), first);
        let again = program(Some(dir.path()), &profile, &caps).expect("cached");
        assert_eq!(again, first);
        let mut admin = caps.clone();
        admin.insert(caps::Capability::CAP_SYS_ADMIN);
        let other = program(Some(dir.path()), &profile, &admin).expect("compiles");
        assert_ne!(other, first, "other capabilities, another program");
    }
}
