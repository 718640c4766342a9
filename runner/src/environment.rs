//! Environment lists (`K=V` entries, as an image's Env, `-e` and a
//! process's environment hold them): the one rule for reading, setting and
//! merging them, used by `run`, `exec`, `commit -c` and the container's
//! process.
//!
//! docker's rule: when a key appears more than once the last entry wins
//! (its `ReplaceOrAppendEnvValues` keeps the last, and an entry set later
//! replaces the last one in place). Reading and setting both follow it, so
//! what `commit -c 'LABEL x=$A'` expands is what the process sees as `$A`.

use anyhow::bail;

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
    let wanted = key(&entry);
    match env
        .iter_mut()
        .rev()
        .find(|existing| key(existing) == wanted)
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// Appends the entries of `defaults` whose key `env` does not have
/// (a committed image's Env: its own entries, then the container's).
pub fn add_missing(env: &mut Vec<String>, defaults: &[String]) {
    for entry in defaults {
        let wanted = key(entry);
        if !env.iter().any(|own| key(own) == wanted) {
            env.push(entry.clone());
        }
    }
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
}
