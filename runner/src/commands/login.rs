//! `strata login [-u USER] [-p PASS | --password-stdin] [REGISTRY]`:
//! docker's config.json (see `registry::credentials`; logout.rs undoes it). Login checks the credentials against the
//! registry before it stores them; where the registry's token service
//! hands out an identity token for the password (see `registry::client`),
//! that is stored instead of the password, as docker does. No secret is
//! ever printed.

use crate::cli::LoginArgs;
use crate::registry::client::Client;
use crate::registry::credentials::{self, Credentials};
use anyhow::{bail, Context, Result};
use layerdb::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};
use std::io::{BufRead, IsTerminal, Read, Write};

/// `https://host:port/v2/`, `index.docker.io` and the like as the registry
/// domain docker means.
pub(super) fn registry_domain(arg: Option<&str>) -> Result<String> {
    let Some(arg) = arg else {
        return Ok(DOCKER_HUB.to_string());
    };
    let rest = arg
        .strip_prefix("https://")
        .or_else(|| arg.strip_prefix("http://"))
        .unwrap_or(arg);
    let host = rest.split('/').next().unwrap_or(rest);
    // The reference grammar's domain, as pull and push take it: anything
    // else (`127.0.0.1:1@example.com`) would make a URL whose host is not
    // the one plain HTTP was allowed for.
    if !layerdb::reference::valid_domain(host) {
        bail!("invalid registry \"{arg}\"");
    }
    Ok(match host {
        "index.docker.io" | DOCKER_HUB_API_HOST => DOCKER_HUB.to_string(),
        other => other.to_string(),
    })
}

fn api_host(domain: &str) -> &str {
    if domain == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        domain
    }
}

/// What the user shows as the registry: docker's key for Docker Hub.
pub(super) fn shown(domain: &str) -> String {
    credentials::auth_key(domain)
}

pub fn login(args: LoginArgs) -> Result<i32> {
    let domain = registry_domain(args.registry.as_deref())?;
    if args.password.is_some() && args.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    if args.password_stdin && args.username.is_none() {
        bail!("Must provide --username with --password-stdin");
    }
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let stored = credentials::lookup(&domain, None)?;
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        Some(text.trim_end_matches(['\n', '\r']).to_string())
    } else {
        args.password.clone()
    };
    let credentials = match (args.username, password) {
        (Some(username), Some(password)) => Credentials { username, password },
        (None, None) if stored.is_some() => stored.expect("checked"),
        (username, password) => {
            if !std::io::stdin().is_terminal() {
                bail!("Cannot perform an interactive login from a non TTY device");
            }
            let username = match username {
                Some(u) => u,
                None => prompt("Username: ")?,
            };
            let password = match password {
                Some(p) => p,
                None => prompt_hidden("Password: ")?,
            };
            Credentials { username, password }
        }
    };
    if credentials.username.is_empty() {
        bail!("Non-null Username Required");
    }
    if credentials.password.is_empty() {
        bail!("Password Required");
    }
    let client =
        Client::connect(api_host(&domain), Some(credentials.clone()))?.asking_for_identity_token();
    client.check_login()?;
    // An identity token the token service handed out (for the password,
    // or renewing the one stored) is kept in place of what was given.
    let kept = client.credentials().unwrap_or_else(|| credentials.clone());
    let account = (kept.identity_token().is_some() && credentials.identity_token().is_none())
        .then_some(credentials.username.as_str());
    if let credentials::Stored::File(path) = credentials::store(&domain, &kept, account)? {
        let what = if kept.identity_token().is_some() {
            "identity token"
        } else {
            "password"
        };
        eprintln!(
            "WARNING! Your {what} will be stored unencrypted in {}.",
            path.display()
        );
    }
    outln!("Login Succeeded")?;
    Ok(0)
}

fn prompt(text: &str) -> Result<String> {
    eprint!("{text}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Reads a line with the terminal's echo off, restoring it after.
fn prompt_hidden(text: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning echo off")?;
    let line = prompt(text);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_arguments_become_domains_as_docker_reads_them() {
        assert_eq!(registry_domain(None).unwrap(), "docker.io");
        assert_eq!(
            registry_domain(Some("https://index.docker.io/v1/")).unwrap(),
            "docker.io"
        );
        assert_eq!(
            registry_domain(Some("http://127.0.0.1:5000/v2/")).unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_domain(Some("quay.io")).unwrap(), "quay.io");
        assert!(registry_domain(Some("")).is_err());
        for bad in [
            "127.0.0.1:1@example.com",
            "localhost:1@10.0.0.1:80",
            "a b",
            "host:",
            "x\x1b]0;t\x07",
        ] {
            assert!(registry_domain(Some(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(registry_domain(Some("[::1]:5000")).unwrap(), "[::1]:5000");
        assert_eq!(registry_domain(Some("localhost")).unwrap(), "localhost");
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }
}
