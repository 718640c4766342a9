//! docker's credential helpers: a `docker-credential-<name>` program on
//! PATH keeps the secrets (a keychain, `pass`, a cloud's token service),
//! and config.json only names it, per registry (`credHelpers`) or for all
//! (`credsStore`). The protocol is docker's: the action is the argument
//! (`get`, `store`, `erase`); `get` and `erase` read the server URL on
//! stdin, `store` reads `{"ServerURL","Username","Secret"}`, and `get`
//! answers with the same JSON. A secret goes through pipes only, never
//! an argument, the environment or a message.

use super::credentials::Credentials;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// The helper docker's config names for the registry whose `auths` key is
/// `server` (matched on host as `credHelpers` keys may be URLs): its
/// `credHelpers` entry, else `credsStore`.
pub fn named_in(config: &Value, host_of: impl Fn(&str) -> bool) -> Option<String> {
    let per_registry = config
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| {
            helpers
                .iter()
                .find(|(key, _)| host_of(key))
                .and_then(|(_, name)| name.as_str())
        });
    per_registry
        .or_else(|| config.get("credsStore").and_then(Value::as_str))
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    #[serde(rename = "ServerURL")]
    server_url: String,
    username: String,
    secret: String,
}

/// docker-credential-helpers' answer to `get` for a server it has nothing
/// for.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; its
/// stdout, or its own message as the error (helpers print errors on
/// stdout).
fn call(helper: &str, action: &str, input: &[u8]) -> Result<Result<Vec<u8>, String>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("credential helper {program}"))?;
    let mut stdin = child.stdin.take().context("the helper's stdin")?;
    // A helper that exits without reading closes the pipe: its status
    // says what went wrong, not the write.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child
        .wait_with_output()
        .with_context(|| format!("credential helper {program}"))?;
    if out.status.success() {
        return Ok(Ok(out.stdout));
    }
    let said = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .trim()
    .to_string();
    Ok(Err(said))
}

/// The helper's credentials for `server`, None when it has none.
pub fn get(helper: &str, server: &str) -> Result<Option<Credentials>> {
    let out = match call(helper, "get", server.as_bytes())? {
        Ok(out) => out,
        Err(said) if said.contains(NOT_FOUND) => return Ok(None),
        Err(said) => bail!("credential helper docker-credential-{helper} get: {said}"),
    };
    let entry: Entry = serde_json::from_slice(&out).with_context(|| {
        format!("credential helper docker-credential-{helper} get: not its JSON answer")
    })?;
    if entry.username.is_empty() && entry.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: entry.username,
        password: entry.secret,
    }))
}

/// Gives `credentials` for `server` to the helper to keep.
pub fn store(helper: &str, server: &str, credentials: &Credentials) -> Result<()> {
    let entry = Entry {
        server_url: server.to_string(),
        username: credentials.username.clone(),
        secret: credentials.password.clone(),
    };
    let input = serde_json::to_vec(&entry).context("encode the helper's input")?;
    if let Err(said) = call(helper, "store", &input)? {
        bail!("credential helper docker-credential-{helper} store: {said}");
    }
    Ok(())
}

/// Has the helper forget `server`; whether it had anything for it.
pub fn erase(helper: &str, server: &str) -> Result<bool> {
    match call(helper, "erase", server.as_bytes())? {
        Ok(_) => Ok(true),
        Err(said) if said.contains(NOT_FOUND) => Ok(false),
        Err(said) => bail!("credential helper docker-credential-{helper} erase: {said}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_registry_s_own_helper_comes_before_the_default_store() {
        let config = json!({
            "credsStore": "desktop",
            "credHelpers": {"registry.example:5000": "ecr-login"},
        });
        let host = |want: &'static str| move |key: &str| key == want;
        assert_eq!(
            named_in(&config, host("registry.example:5000")).as_deref(),
            Some("ecr-login")
        );
        assert_eq!(
            named_in(&config, host("other.example")).as_deref(),
            Some("desktop")
        );
        assert_eq!(named_in(&json!({"auths": {}}), host("x")), None);
        assert_eq!(named_in(&json!({"credsStore": ""}), host("x")), None);
    }
}
