//! Registry credentials where docker and podman keep them.
//!
//! `strata login` writes docker's `config.json` (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`), entry `auths.<registry>.auth` =
//! base64(`user:password`), the file mode 0600, so docker reads what strata
//! wrote and the other way round. Lookups also read podman's `auth.json`
//! (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`).
//! A credential helper the config names for a registry (`credHelpers`,
//! else `credsStore`; see `cred_helper`) keeps that registry's secret
//! instead, as docker does. An entry's `identitytoken` (what `docker
//! login` keeps for a registry whose token service speaks OAuth2) is read
//! as the helpers give it: user `<token>`, the token as the password.
//! `login` keeps one a token service handed out as docker does (the user
//! in `auth` with an empty password, beside `identitytoken`), and a token
//! service that renews it has the new one replace the old wherever it was
//! found ([`replace_identity_token`]). Every change of a file is a read,
//! change and write under the file's lock (`lock_config`), so a `login`
//! and a renewal at once both land. Nothing here prints or logs a secret.

use super::cred_helper;
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{Map, Value};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The key docker uses for Docker Hub in `auths`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The user name that marks an identity token (an OAuth2 refresh token)
/// in place of a password: what docker's credential helpers answer for
/// one, and how an `identitytoken` entry of config.json is read.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

impl Credentials {
    /// `Basic <base64(user:password)>`, the header and `auth` field value.
    pub fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }

    /// An identity token: `docker login` keeps one for registries whose
    /// token service speaks OAuth2, and the token service trades it for
    /// a bearer token (`client` does the exchange).
    pub fn identity_token(&self) -> Option<&str> {
        (self.username == IDENTITY_TOKEN_USER && !self.password.is_empty())
            .then_some(self.password.as_str())
    }
}

/// The `auths` key for a registry domain: docker's legacy URL for Docker
/// Hub, the bare `host[:port]` otherwise.
pub fn auth_key(domain: &str) -> String {
    if domain == layerdb::reference::DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        domain.to_string()
    }
}

/// docker's `config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// podman's `auth.json`.
fn podman_auth_path() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|dir| PathBuf::from(dir).join("containers/auth.json"))
}

/// The registry host an `auths` key names: keys may be URLs
/// (`https://host/v1/`) or `host[/repo]` (podman).
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn is_docker_hub_host(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Whether a config key (of `auths` or `credHelpers`) names `domain`.
fn names(domain: &str) -> impl Fn(&str) -> bool + '_ {
    let wanted_hub = domain == layerdb::reference::DOCKER_HUB;
    move |key| {
        let host = key_host(key);
        host == domain || (wanted_hub && is_docker_hub_host(host))
    }
}

/// How closely an `auths` key names the repository `path` of `domain`,
/// higher is closer; `None` if it does not. A key with a scheme is
/// docker's and names the whole host, as does another name of the host
/// (`index.docker.io`): 0; the bare domain is closer (1). A key
/// `host/namespace` (`podman login quay.io/team`) names that repository
/// and those below it, and a longer namespace is closer, as
/// containers/image ranks them. With no repository (`path` None) only a
/// key for the whole host names it.
fn key_rank(key: &str, domain: &str, path: Option<&str>) -> Option<usize> {
    if !names(domain)(key) {
        return None;
    }
    if key.starts_with("https://") || key.starts_with("http://") {
        return Some(0);
    }
    let namespace = key
        .split_once('/')
        .map_or("", |(_, n)| n.trim_end_matches('/'));
    if namespace.is_empty() {
        return Some(usize::from(key_host(key) == domain));
    }
    let path = path?;
    let below = path
        .strip_prefix(namespace)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    below.then_some(namespace.len() + 2)
}

/// Credentials for repository `path` of `domain` from a parsed config
/// file, if it has them: those of the closest key (the first of equals).
fn from_config(config: &Value, domain: &str, path: Option<&str>) -> Option<Credentials> {
    let auths = config.get("auths")?.as_object()?;
    auths
        .iter()
        .filter_map(|(key, entry)| Some((key_rank(key, domain, path)?, decode_entry(entry)?)))
        .min_by_key(|(rank, _)| std::cmp::Reverse(*rank))
        .map(|(_, found)| found)
}

fn decode_entry(entry: &Value) -> Option<Credentials> {
    // docker keeps the user name in `auth` beside the token, with an empty
    // password; the token is what authorizes.
    if let Some(token) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Some(Credentials {
            username: IDENTITY_TOKEN_USER.to_string(),
            password: token.to_string(),
        });
    }
    if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    Some(Credentials {
        username: entry.get("username")?.as_str()?.to_string(),
        password: entry.get("password")?.as_str()?.to_string(),
    })
}

fn read_config(path: &Path) -> Result<Option<Value>> {
    match fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{}: not a JSON credentials file", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// The stored credentials for repository `path` (if one is meant) of a
/// registry domain: from the credential helper docker's config names for
/// it (which then has the secret, not the file), else docker's file, then
/// podman's.
pub fn lookup(domain: &str, path: Option<&str>) -> Result<Option<Credentials>> {
    let read = |path: Option<PathBuf>| path.map(|p| read_config(&p)).transpose();
    if let Some(docker) = read(docker_config_path())?.flatten() {
        if let Some(helper) = cred_helper::named_in(&docker, names(domain)) {
            if let Some(found) = cred_helper::get(&helper, &auth_key(domain))? {
                return Ok(Some(found));
            }
        } else if let Some(found) = from_config(&docker, domain, path) {
            return Ok(Some(found));
        }
    }
    Ok(read(podman_auth_path())?
        .flatten()
        .and_then(|podman| from_config(&podman, domain, path)))
}

/// Where `store` put credentials.
pub enum Stored {
    /// In this file, base64-encoded (docker warns that this is unencrypted).
    File(PathBuf),
    /// With the credential helper the config names.
    Helper,
}

/// Saves credentials for `domain` with the credential helper docker's
/// config.json names for it, else in that file, keeping everything else
/// in it. `account` is the user an identity token was issued to, kept in
/// `auth` beside it as docker does.
pub fn store(domain: &str, credentials: &Credentials, account: Option<&str>) -> Result<Stored> {
    let path = docker_config_path().context("no home directory: set HOME or DOCKER_CONFIG")?;
    make_config_dir(&path)?;
    let _lock = lock_config(&path)?;
    let mut config = read_config(&path)?.unwrap_or_else(|| Value::Object(Map::new()));
    let helper = cred_helper::named_in(&config, names(domain));
    if let Some(helper) = &helper {
        cred_helper::store(helper, &auth_key(domain), credentials)?;
    }
    let auths = auths_mut(&mut config, &path)?;
    let mut entry = Map::new();
    // With a helper, docker keeps an empty entry: the registry is known,
    // its secret is elsewhere.
    match (&helper, credentials.identity_token()) {
        (Some(_), _) => {}
        (None, Some(token)) => {
            if let Some(account) = account {
                let user = Credentials {
                    username: account.to_string(),
                    password: String::new(),
                };
                entry.insert("auth".into(), Value::String(user.basic()));
            }
            entry.insert("identitytoken".into(), Value::String(token.to_string()));
        }
        (None, None) => {
            entry.insert("auth".into(), Value::String(credentials.basic()));
        }
    }
    auths.insert(auth_key(domain), Value::Object(entry));
    write_private(&path, &config)?;
    Ok(match helper {
        Some(_) => Stored::Helper,
        None => Stored::File(path),
    })
}

/// Puts identity token `new` in place of `old` for `repository` (if one is
/// meant) of `domain` where `lookup`
/// found `old`: the credential helper docker's config names, docker's
/// file, or podman's; written as `store` writes (0600, through a rename).
/// Nothing is changed where the stored token is no longer `old` (another
/// login came in between).
pub fn replace_identity_token(
    domain: &str,
    repository: Option<&str>,
    old: &str,
    new: &str,
) -> Result<()> {
    if let Some(path) = docker_config_path() {
        let _lock = lock_config(&path)?;
        if let Some(mut docker) = read_config(&path)? {
            if let Some(helper) = cred_helper::named_in(&docker, names(domain)) {
                let key = auth_key(domain);
                let held = cred_helper::get(&helper, &key)?;
                if held.as_ref().and_then(Credentials::identity_token) == Some(old) {
                    let renewed = Credentials {
                        username: IDENTITY_TOKEN_USER.to_string(),
                        password: new.to_string(),
                    };
                    return cred_helper::store(&helper, &key, &renewed);
                }
            } else if from_config(&docker, domain, repository).is_some() {
                // `lookup` took the file's entry, renewed or not.
                if replace_in(&mut docker, domain, old, new) {
                    write_private(&path, &docker)?;
                }
                return Ok(());
            }
        }
    }
    if let Some(path) = podman_auth_path() {
        let _lock = lock_config(&path)?;
        if let Some(mut podman) = read_config(&path)? {
            if replace_in(&mut podman, domain, old, new) {
                write_private(&path, &podman)?;
            }
        }
    }
    Ok(())
}

/// Sets `identitytoken` to `new` in the `auths` entries for `domain` that
/// hold `old`; whether there was one.
fn replace_in(config: &mut Value, domain: &str, old: &str, new: &str) -> bool {
    let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) else {
        return false;
    };
    let named = names(domain);
    let mut replaced = false;
    for (_, entry) in auths.iter_mut().filter(|(key, _)| named(key)) {
        if entry.get("identitytoken").and_then(Value::as_str) == Some(old) {
            entry["identitytoken"] = Value::String(new.to_string());
            replaced = true;
        }
    }
    replaced
}

/// Removes the credentials for `domain` from docker's config.json and
/// from the credential helper it names; whether there were any.
pub fn remove(domain: &str) -> Result<bool> {
    let Some(path) = docker_config_path() else {
        return Ok(false);
    };
    let _lock = lock_config(&path)?;
    let Some(mut config) = read_config(&path)? else {
        return Ok(false);
    };
    let erased = match cred_helper::named_in(&config, names(domain)) {
        Some(helper) => cred_helper::erase(&helper, &auth_key(domain))?,
        None => false,
    };
    let auths = auths_mut(&mut config, &path)?;
    let named = names(domain);
    let keys: Vec<String> = auths.keys().filter(|key| named(key)).cloned().collect();
    for key in &keys {
        auths.remove(key);
    }
    if !keys.is_empty() {
        write_private(&path, &config)?;
    }
    Ok(erased || !keys.is_empty())
}

fn auths_mut<'a>(config: &'a mut Value, path: &Path) -> Result<&'a mut Map<String, Value>> {
    let Some(object) = config.as_object_mut() else {
        bail!("{}: not a JSON object", path.display());
    };
    object
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .with_context(|| format!("{}: \"auths\" is not an object", path.display()))
}

/// Makes the directory of config file `path` if missing, private (0700)
/// as docker makes it.
fn make_config_dir(path: &Path) -> Result<()> {
    let dir = path.parent().context("a config file has a directory")?;
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    Ok(())
}

/// How long a writer waits for another to finish with a config file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Holds config file `path`'s lock, an flock of `<path>.lock` beside it
/// (made 0600 if missing), for a read, change and write of the file: two
/// writers (a `login` and the renewal of a token, two logins) each read
/// what the other wrote instead of writing back a copy without it. Only
/// writers take it: the file is replaced by a rename, so a reader sees it
/// whole, old or new. None when the file's directory does not exist (there
/// is no file to change). A symlink planted as the lock file is refused
/// (O_NOFOLLOW), never followed to create or open its target. The wait is
/// bounded, and told once: a writer holds it for milliseconds.
fn lock_config(path: &Path) -> Result<Option<fs::File>> {
    let mut name = path
        .file_name()
        .context("a config file has a name")?
        .to_os_string();
    name.push(".lock");
    let lock = path.with_file_name(name);
    let file = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("open the lock {}", lock.display())),
    };
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("lock {}", lock.display()))
            }
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "{}: another process has held this lock for {} s (a stopped strata login?)",
                lock.display(),
                LOCK_WAIT.as_secs()
            );
        }
        if !told {
            eprintln!("waiting for another process writing {}", path.display());
            told = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Writes the file through a private temporary beside it and a rename, so
/// a reader never sees it half-written and its mode is 0600 from the start.
/// The caller holds the file's lock (`lock_config`).
fn write_private(path: &Path, config: &Value) -> Result<()> {
    make_config_dir(path)?;
    let dir = path.parent().context("a config file has a directory")?;
    let tmp = dir.join(format!(
        ".{}.strata-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut bytes = serde_json::to_vec_pretty(config).context("encode credentials file")?;
    bytes.push(b'\n');
    let written = (|| -> std::io::Result<()> {
        // Made new, never opened through what is there: a symlink planted
        // under the temporary name would have the secrets written where
        // it points. A leftover of a crashed run is removed first (a
        // symlink itself, not its target).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(user: &str, pass: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: pass.into(),
        }
    }

    #[test]
    fn entries_are_found_by_host_whatever_form_the_key_has() {
        let auth = creds("u", "p:w").basic();
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": auth},
            "http://127.0.0.1:5000": {"auth": creds("a", "b").basic()},
            "quay.io/team/app": {"username": "q", "password": "r"},
        }});
        assert_eq!(
            from_config(&config, "docker.io", None),
            Some(creds("u", "p:w"))
        );
        assert_eq!(
            from_config(&config, "127.0.0.1:5000", None),
            Some(creds("a", "b"))
        );
        assert_eq!(from_config(&config, "127.0.0.1:5001", None), None);
    }

    #[test]
    fn a_key_with_a_namespace_is_for_that_namespace_and_the_closest_one_wins() {
        let config = json!({"auths": {
            "quay.io": {"auth": creds("host", "h").basic()},
            "quay.io/team": {"auth": creds("team", "t").basic()},
            "quay.io/team/app/": {"auth": creds("app", "a").basic()},
            "https://quay.io/v1/": {"auth": creds("url", "u").basic()},
            "reg:1/team": {"auth": creds("only", "o").basic()},
            "docker.io/library/ubuntu": {"auth": creds("ubuntu", "x").basic()},
        }});
        let found = |domain, path| from_config(&config, domain, path).map(|c| c.username);
        assert_eq!(found("quay.io", Some("team/app")).as_deref(), Some("app"));
        assert_eq!(found("quay.io", Some("team/app/x")).as_deref(), Some("app"));
        assert_eq!(
            found("quay.io", Some("team/application")).as_deref(),
            Some("team")
        );
        assert_eq!(
            found("quay.io", Some("team/other")).as_deref(),
            Some("team")
        );
        assert_eq!(found("quay.io", Some("teams/x")).as_deref(), Some("host"));
        assert_eq!(found("quay.io", None).as_deref(), Some("host"));
        assert_eq!(found("reg:1", Some("team/a")).as_deref(), Some("only"));
        assert_eq!(found("reg:1", Some("other/a")), None);
        assert_eq!(found("reg:1", None), None);
        assert_eq!(
            found("docker.io", Some("library/ubuntu")).as_deref(),
            Some("ubuntu")
        );
        assert_eq!(found("docker.io", Some("library/debian")), None);
    }

    #[test]
    fn an_identity_token_entry_is_read_as_the_token_not_the_user_in_auth() {
        let config = json!({"auths": {"reg:5000": {
            "auth": creds("someone", "").basic(),
            "identitytoken": "refresh-me",
        }}});
        let found = from_config(&config, "reg:5000", None).unwrap();
        assert_eq!(found.identity_token(), Some("refresh-me"));
        assert_eq!(creds("someone", "pw").identity_token(), None);
        assert!(!format!("{found:?}").contains("refresh-me"));
    }

    #[test]
    fn a_renewed_identity_token_replaces_only_the_old_one_of_its_registry() {
        let mut config = json!({"auths": {
            "reg:5000": {"auth": creds("someone", "").basic(), "identitytoken": "old"},
            "other:5000": {"identitytoken": "old"},
        }, "credsStore": ""});
        assert!(replace_in(&mut config, "reg:5000", "old", "new"));
        assert_eq!(config["auths"]["reg:5000"]["identitytoken"], "new");
        assert_eq!(
            config["auths"]["reg:5000"]["auth"],
            creds("someone", "").basic()
        );
        assert_eq!(config["auths"]["other:5000"]["identitytoken"], "old");
        // Another login came in between: its token stays.
        assert!(!replace_in(&mut config, "reg:5000", "old", "newer"));
        assert_eq!(config["auths"]["reg:5000"]["identitytoken"], "new");
    }

    #[test]
    fn podman_keys_docker_hub_as_docker_io() {
        let config = json!({"auths": {"docker.io": {"auth": creds("x", "y").basic()}}});
        assert_eq!(
            from_config(&config, "docker.io", None),
            Some(creds("x", "y"))
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert!(!format!("{:?}", creds("user", "s3cret")).contains("s3cret"));
    }

    #[test]
    fn the_written_file_is_private_and_keeps_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, r#"{"credHelpers": {"gcr.io": "gcloud"}}"#).unwrap();
        let mut config = read_config(&path).unwrap().unwrap();
        auths_mut(&mut config, &path)
            .unwrap()
            .insert("h:1".into(), json!({"auth": "eDp5"}));
        write_private(&path, &config).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = read_config(&path).unwrap().unwrap();
        assert_eq!(back["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(from_config(&back, "h:1", None), Some(creds("x", "y")));
    }

    #[test]
    fn a_symlink_planted_under_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let target = dir.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let tmp = dir
            .path()
            .join(format!(".config.json.strata-{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        write_private(&path, &json!({"auths": {"h:1": {"auth": "eDp5"}}})).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        assert_eq!(
            from_config(&read_config(&path).unwrap().unwrap(), "h:1", None),
            Some(creds("x", "y"))
        );
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    /// Environment of [`a_writer_for_parent_test`]: the prefix of the
    /// registries it logs in to, one after another.
    const ENV_WRITER_PREFIX: &str = "STRATA_TEST_CREDENTIALS_WRITER";
    const WRITES: usize = 100;

    fn writer_domain(prefix: &str, i: usize) -> String {
        format!("{prefix}{i}:5000")
    }

    /// The writer side: only does something in a process started by
    /// `two_processes_logging_in_at_once_both_keep_their_credentials`
    /// (nothing in a plain `cargo test` run).
    #[test]
    fn a_writer_for_parent_test() {
        let Ok(prefix) = std::env::var(ENV_WRITER_PREFIX) else {
            return;
        };
        for i in 0..WRITES {
            store(&writer_domain(&prefix, i), &creds(&prefix, "p"), None).unwrap();
        }
    }

    #[test]
    fn two_processes_logging_in_at_once_both_keep_their_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let writers: Vec<_> = ["one", "two"]
            .into_iter()
            .map(|prefix| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "--quiet",
                        "registry::credentials::tests::a_writer_for_parent_test",
                    ])
                    .env(ENV_WRITER_PREFIX, prefix)
                    .env("DOCKER_CONFIG", dir.path())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut w in writers {
            assert!(w.wait().unwrap().success(), "a writer failed");
        }
        let config = read_config(&dir.path().join("config.json"))
            .unwrap()
            .unwrap();
        // Each login read the file after the other's last write: none lost.
        for prefix in ["one", "two"] {
            for i in 0..WRITES {
                let domain = writer_domain(prefix, i);
                assert_eq!(
                    from_config(&config, &domain, None),
                    Some(creds(prefix, "p")),
                    "the login to {domain} was lost"
                );
            }
        }
        let lock = fs::metadata(dir.path().join("config.json.lock")).unwrap();
        assert_eq!(lock.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_symlink_planted_as_the_lock_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("config.json.lock")).unwrap();
        let err = lock_config(&path).unwrap_err();
        assert!(format!("{err:#}").contains("config.json.lock"), "{err:#}");
        assert!(!target.exists(), "the symlink's target was made");
    }
}
