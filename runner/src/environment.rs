//! Environment lists (`K=V` entries, as an image's Env, `-e` and a
//! process's environment hold them): the one rule for reading, setting and
//! merging them, used by `run`, `exec`, `commit -c` and the container's
//! process.
//!
//! docker's rule: when a key appears more than once the last entry wins
//! (its `ReplaceOrAppendEnvValues` keeps the last, and an entry set later
//! replaces the last one in place). Reading and setting both follow it, so
//! what `commit -c 'LABEL x=$A'` expands is what the process sees as `$A`.

use anyhow::{bail, Context};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The key of a `K=V` entry; an entry without `=` is all key.
pub fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// The value of `key`: the last entry with that key wins.
pub fn lookup<'e>(env: &'e [String], key: &str) -> Option<&'e str> {
    env.iter()
        .rev()
        .filter_map(|entry| entry.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, value)| value)
}

/// Sets `entry`: it replaces the entry [`lookup`] would read for its key,
/// in that entry's place, or is appended when the key is new.
pub fn set(env: &mut Vec<String>, entry: String) {
    set_all(env, [entry]);
}

/// [`set`] of each of `entries` in turn, with the keys found by a map: an
/// image's Env is the image author's, and a search of the list per entry
/// made 80,000 keys (190 KB of gzip) cost `run` 28 s.
pub fn set_all(env: &mut Vec<String>, entries: impl IntoIterator<Item = String>) {
    let mut last: HashMap<String, usize> = HashMap::new();
    for (at, entry) in env.iter().enumerate() {
        last.insert(key(entry).to_owned(), at);
    }
    for entry in entries {
        match last.get(key(&entry)) {
            Some(&at) => env[at] = entry,
            None => {
                last.insert(key(&entry).to_owned(), env.len());
                env.push(entry);
            }
        }
    }
}

/// Appends the entries of `defaults` whose key `env` does not have
/// (a committed image's Env: its own entries, then the container's).
pub fn add_missing(env: &mut Vec<String>, defaults: &[String]) {
    let mut keys: HashSet<String> = env.iter().map(|own| key(own).to_owned()).collect();
    for entry in defaults {
        if keys.insert(key(entry).to_owned()) {
            env.push(entry.clone());
        }
    }
}

/// The environment `--env-file` and `-e` give a container, as docker
/// reads them: each file's entries in turn, then the flags, so that the
/// last one given wins.
pub fn from_files_and_flags(files: &[PathBuf], flags: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for file in files {
        out.extend(from_file(file)?);
    }
    out.extend(from_flags(flags)?);
    Ok(out)
}

/// An `--env-file`, by docker's rules ([`key_value_file`]); a bare `K`
/// takes K's value from strata's own environment and is dropped when
/// unset.
fn from_file(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(key_value_file(path)?
        .into_iter()
        .filter_map(|(name, value)| match value {
            Some(value) => Some(format!("{name}={value}")),
            None => std::env::var(&name)
                .ok()
                .map(|value| format!("{name}={value}")),
        })
        .collect())
}

/// A file of `K=V` lines, as docker reads `--env-file` and `--label-file`:
/// leading whitespace and a UTF-8 byte order mark dropped, blank lines and
/// lines starting with `#` skipped; V is kept untouched (quotes and
/// trailing spaces included), a bare `K` has no value. A name with a space
/// or a tab in it, an empty name and bytes that are not UTF-8 are refused.
pub fn key_value_file(path: &Path) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("open {shown}"))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut out = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            bail!(
                "env file {shown} contains invalid utf8 bytes at line {}",
                n + 1
            );
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (line, None),
        };
        if name.contains([' ', '\t']) {
            bail!("poorly formatted environment: variable '{name}' contains whitespaces");
        }
        if name.is_empty() {
            bail!("poorly formatted environment: no variable name on line '{line}'");
        }
        out.push((name.to_owned(), value.map(str::to_owned)));
    }
    Ok(out)
}

/// `-e K=V` as given; `-e K` takes K's value from strata's own environment
/// and is dropped when unset, as docker does.
pub fn from_flags(given: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in given {
        let name = key(entry);
        if name.is_empty() || name.contains(char::is_whitespace) {
            bail!("invalid environment variable: {entry}");
        }
        if entry.contains('=') {
            out.push(entry.clone());
        } else if let Ok(value) = std::env::var(entry) {
            out.push(format!("{entry}={value}"));
        }
    }
    Ok(out)
}

/// The `NAME=VALUE` entries of a file in which each ends with a NUL byte:
/// a value may hold any other byte, a line break included.
pub fn from_nul_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("open {shown}"))?;
    let text = String::from_utf8(bytes).with_context(|| format!("{shown}: not UTF-8"))?;
    let entries: Vec<String> = text.split_terminator('\0').map(str::to_owned).collect();
    if let Some(bad) = entries
        .iter()
        .find(|e| !e.contains('=') || key(e).is_empty())
    {
        bail!("{shown}: invalid environment variable: {bad}");
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_last_entry_with_a_key_wins() {
        let env = strings(&["A=1", "B=x", "A=2"]);
        assert_eq!(lookup(&env, "A"), Some("2"));
        assert_eq!(lookup(&env, "B"), Some("x"));
        assert_eq!(lookup(&env, "C"), None);
        assert_eq!(lookup(&strings(&["A"]), "A"), None);
    }

    #[test]
    fn setting_a_key_replaces_the_entry_lookup_reads_in_place() {
        let mut env = strings(&["A=1", "B=x", "A=2"]);
        set(&mut env, "A=3".into());
        assert_eq!(env, strings(&["A=1", "B=x", "A=3"]));
        assert_eq!(lookup(&env, "A"), Some("3"));
        set(&mut env, "C=new".into());
        assert_eq!(env.last().map(String::as_str), Some("C=new"));
    }

    #[test]
    fn setting_many_keys_replaces_the_last_entry_of_each_in_place() {
        let mut env = strings(&["A=1", "B=1", "A=2", "C"]);
        set_all(&mut env, strings(&["A=3", "D=1", "C=1", "D=2", "E"]));
        assert_eq!(env, strings(&["A=1", "B=1", "A=3", "C=1", "D=2", "E"]));
    }

    #[test]
    fn missing_keys_are_added_from_defaults_and_own_values_stay() {
        let mut env = strings(&["RUNTIME=no", "NEW=1"]);
        add_missing(&mut env, &strings(&["PATH=/bin", "RUNTIME=yes"]));
        assert_eq!(env, strings(&["RUNTIME=no", "NEW=1", "PATH=/bin"]));
    }

    #[test]
    fn a_flag_without_a_value_comes_from_the_callers_environment() {
        std::env::set_var("STRATA_TEST_ENV_FROM_CALLER", "yes");
        let env = from_flags(&strings(&[
            "A=1",
            "STRATA_TEST_ENV_FROM_CALLER",
            "UNSET_FOR_SURE_42",
        ]))
        .unwrap();
        assert_eq!(env, strings(&["A=1", "STRATA_TEST_ENV_FROM_CALLER=yes"]));
        assert!(from_flags(&strings(&["=x"])).is_err());
        assert!(from_flags(&strings(&["A B=1"])).is_err());
    }

    #[test]
    fn an_env_file_is_read_as_docker_reads_it_and_flags_come_after() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(
            &file,
            "\u{feff}# a comment\n\n  A=1\nB=\"quoted\" kept \r\nSTRATA_ENV_FILE_UNSET\n\tC=x=y\nD=\nA=2\n",
        )
        .unwrap();
        let env = from_files_and_flags(std::slice::from_ref(&file), &strings(&["C=flag"])).unwrap();
        assert_eq!(
            env,
            strings(&["A=1", "B=\"quoted\" kept ", "C=x=y", "D=", "A=2", "C=flag"])
        );
        assert_eq!(lookup(&env, "A"), Some("2"));
        assert_eq!(lookup(&env, "C"), Some("flag"));
        for (text, refused) in [
            ("A B=1\n", "variable 'A B' contains whitespaces"),
            ("=1\n", "no variable name on line '=1'"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = from_files_and_flags(std::slice::from_ref(&file), &[]).unwrap_err();
            assert!(format!("{err:#}").contains(refused), "{err:#}");
        }
        std::fs::write(&file, b"A=1\nB=\xff\n").unwrap();
        let err = from_files_and_flags(std::slice::from_ref(&file), &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("invalid utf8 bytes at line 2"),
            "{err:#}"
        );
        let err = from_files_and_flags(&[dir.path().join("nosuch")], &[]).unwrap_err();
        assert!(format!("{err:#}").starts_with("open "), "{err:#}");
    }
}
