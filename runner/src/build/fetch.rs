//! ADD's URL sources, taken as docker's builder takes them: the whole
//! file downloaded first (its bytes are the step's cache key, so they are
//! read before the step runs), named by the URL path's last name, mode
//! 0600, its time the server's `Last-Modified` when it sends one, not
//! unpacked whatever it holds.

use anyhow::{anyhow, bail, Context as _, Result};
use std::fs::File;
use std::io::Seek;
use std::path::Path;
use std::time::Duration;

/// A downloaded file, at its start.
pub struct Fetched {
    pub file: File,
    pub name: String,
    /// Seconds since the epoch.
    pub mtime: u64,
}

pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

pub fn fetch(url: &str, tmp_dir: &Path) -> Result<Fetched> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| anyhow!("ADD failed: Get \"{url}\": {e}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("ADD failed: failed to GET {url} with status {status}");
    }
    let mtime = (response.headers().get("last-modified"))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .unwrap_or_else(|| crate::humanize::unix_seconds(crate::clock::now_ns()).max(0) as u64);
    let mut file = tempfile::tempfile_in(tmp_dir)
        .with_context(|| format!("a temporary file in {}", tmp_dir.display()))?;
    std::io::copy(&mut response.into_body().into_reader(), &mut file)
        .with_context(|| format!("ADD failed: reading {url}"))?;
    file.rewind()?;
    Ok(Fetched {
        file,
        name: file_name(url),
        mtime,
    })
}

/// The URL path's last name (docker's `path.Base`), `__unnamed__` when
/// it has none.
fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, path)| path);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's
/// IMF-fixdate) as seconds since the epoch.
fn parse_http_date(text: &str) -> Option<u64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = words.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let rfc3339 = format!("{year}-{month:02}-{day:0>2}T{time}Z");
    let nanos = crate::humanize::parse_rfc3339(&rfc3339).ok()?;
    u64::try_from(nanos / 1_000_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates_as_docker_reads_them() {
        assert_eq!(
            file_name("https://example.org/a/b/tool.tar.gz?x=1"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("http://127.0.0.1:8080/"), "__unnamed__");
        assert_eq!(file_name("http://host"), "__unnamed__");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert!(is_url("https://x/y") && !is_url("src/a"));
    }
}
