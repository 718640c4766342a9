//! Uploading one blob (the distribution spec's "pushing blobs"), resuming
//! an interrupted upload where the registry says it stands.
//!
//! A POST opens an upload session; a blob larger than a chunk goes in
//! PATCH requests of one chunk each (`Content-Range: start-end`), each to
//! the `Location` the registry gave last, then a PUT with the digest
//! closes it. A small blob goes in that PUT. When a request fails on the
//! way (the connection drops, a timeout, a 5xx, a 416, a 404) the session is
//! asked where it stands, after a pause that doubles each time: `GET` on its URL answers 204 with `Range: 0-N`
//! and a new `Location`, and the upload goes on from N+1. Only when the
//! session is gone (404) or no range is reported does the blob start over,
//! after a HEAD shows the registry does not have it already (a PUT whose
//! answer was lost).
//!
//! A chunked upload's session URL is kept in the store's
//! `tmp/uploads/`, one small file per repository and digest, after every
//! chunk, so a push run again (after a kill, or a registry that went away)
//! recompresses the layer (the same bytes: compression is deterministic)
//! and continues that session instead of sending it all again.
//!
//! docker-registry 2.8 keeps the bytes of a PATCH cut short, but signs the
//! offset into the `_state` of its `Location`; a session whose size no
//! longer matches is cancelled (404 on the status query), so there the
//! blob starts over. Registries that keep only whole chunks (or whose
//! connection broke before the body arrived) resume.

use super::client::{Client, Payload};
use anyhow::{anyhow, Context, Result};
use layerdb::reference::RemoteReference;
use layerdb::Digest;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

/// How many times one blob's upload recovers from a failed request
/// before the push gives up with that request's error.
const MAX_RECOVERIES: u32 = 5;

/// The largest chunk a registry may ask for (`OCI-Chunk-Min-Length`): a
/// chunk is held in memory while it is sent.
const MAX_CHUNK: u64 = 256 << 20;

/// A blob to upload: small ones from memory, layers from their file.
pub enum Blob<'a> {
    Bytes(&'a [u8]),
    File { file: &'a File, size: u64 },
}

impl Blob<'_> {
    fn size(&self) -> u64 {
        match self {
            Blob::Bytes(bytes) => bytes.len() as u64,
            Blob::File { size, .. } => *size,
        }
    }

    /// `len` bytes from `offset`.
    fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        match self {
            Blob::Bytes(bytes) => Ok(bytes[offset as usize..(offset + len) as usize].to_vec()),
            Blob::File { file, .. } => {
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, offset)?;
                Ok(buf)
            }
        }
    }
}

/// Where an upload is going: the registry, the repository and the
/// directory that keeps its session URLs.
pub struct Destination<'a> {
    pub client: &'a Client,
    pub reference: &'a RemoteReference,
    pub scope: &'a str,
    /// `<store>/tmp/uploads`.
    pub sessions: PathBuf,
}

/// Blobs up to this size go in the PUT that ends the upload; larger ones
/// in PATCH chunks of this size first, so no single request carries a
/// whole large layer (`STRATA_PUSH_CHUNK_BYTES` changes it).
fn chunk_bytes() -> u64 {
    std::env::var("STRATA_PUSH_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(32 << 20)
}

/// An open upload session: the URL to send to next and how many bytes the
/// registry holds.
struct Session {
    location: String,
    offset: u64,
}

/// What a status query found.
enum Progress {
    /// The session goes on from this offset.
    At(Session),
    /// The session is gone (404) or reports no range: start over.
    Gone,
}

/// Uploads `blob` under `digest`, resuming the session a previous run left
/// and recovering from failed requests as the module doc says.
pub fn upload(dest: &Destination, digest: &Digest, blob: Blob) -> Result<()> {
    let size = blob.size();
    let mut chunk = chunk_bytes();
    let chunked = size > chunk;
    let saved = SavedSession::new(dest, digest);
    let resumable = if chunked {
        resume_saved(dest, &saved, size)
    } else {
        None
    };
    // Whether the registry holds bytes of an earlier request or run: if
    // the PUT then refuses the blob (another push shared the session, a
    // byte counted wrong), it is sent once more from a new session.
    let mut resumed = resumable.is_some();
    let mut session = match resumable {
        Some(session) => session,
        None => open(dest, &mut chunk)?,
    };
    let mut recoveries = 0;
    loop {
        let last = !chunked || session.offset >= size;
        let failure = match send_next(dest, digest, &blob, &session, chunked, chunk) {
            Ok(response) if response.status().is_success() => {
                if last {
                    saved.forget();
                    return Ok(());
                }
                session.location = upload_location(dest, &session.location, &response)?;
                session.offset += (size - session.offset).min(chunk);
                saved.store(&session.location);
                continue;
            }
            Ok(response) if worth_recovering(response.status().as_u16()) => {
                anyhow::Error::from(super::client::status_error(response))
            }
            Ok(response) if resumed && last && response.status() == 400 => {
                let refused = super::client::status_error(response);
                log::info!("the registry refused the resumed upload of {digest:#} ({refused}): starting over");
                resumed = false;
                saved.forget();
                session = open(dest, &mut chunk)?;
                continue;
            }
            Ok(response) => return Err(super::client::status_error(response).into()),
            Err(e) => e,
        };
        recoveries += 1;
        if recoveries > MAX_RECOVERIES {
            return Err(failure);
        }
        // A registry still busy with the request that failed (a cut
        // connection it has not noticed yet, a 5xx under load) answers a
        // status query asked at once with where it stood before it; waiting
        // lets it settle, longer each time.
        std::thread::sleep(recovery_pause(recoveries));
        // The failed request's own error is the one worth showing if the
        // registry cannot be asked either.
        session = match progress(dest, &session.location).map_err(|_| failure)? {
            Progress::At(found) if found.offset <= size => {
                log::info!("resuming the upload of {digest:#} at byte {}", found.offset);
                resumed |= found.offset > 0;
                found
            }
            _ => {
                saved.forget();
                // The PUT may have arrived with its answer lost.
                if has_blob(dest, digest)? {
                    return Ok(());
                }
                log::info!("the upload session of {digest:#} is gone: starting over");
                open(dest, &mut chunk)?
            }
        };
    }
}

/// The session a previous run saved for this blob, if the registry still
/// has it; a saved session it does not know is forgotten.
fn resume_saved(dest: &Destination, saved: &SavedSession, size: u64) -> Option<Session> {
    let location = saved.load(dest.client)?;
    match progress(dest, &location) {
        Ok(Progress::At(found)) if found.offset <= size => {
            log::info!("resuming a saved upload at byte {}", found.offset);
            Some(found)
        }
        _ => {
            saved.forget();
            None
        }
    }
}

/// The next request of the upload: a PATCH of the chunk at the session's
/// offset, or, when none is left (or the blob is small), the PUT that
/// closes the session with the digest and the bytes still unsent.
fn send_next(
    dest: &Destination,
    digest: &Digest,
    blob: &Blob,
    session: &Session,
    chunked: bool,
    chunk: u64,
) -> Result<ureq::http::Response<ureq::Body>> {
    let size = blob.size();
    if chunked && session.offset < size {
        let n = (size - session.offset).min(chunk);
        let bytes = blob.read_at(session.offset, n)?;
        return dest
            .client
            .patch_chunk(&session.location, dest.scope, session.offset, &bytes);
    }
    let rest = blob.read_at(session.offset, size - session.offset)?;
    let separator = if session.location.contains('?') {
        '&'
    } else {
        '?'
    };
    let put = format!("{}{separator}digest={digest:#}", session.location);
    dest.client.send(
        "PUT",
        &put,
        dest.scope,
        "application/octet-stream",
        &mut || Ok(Payload::Bytes(rest.clone())),
    )
}

/// Statuses after which the session is asked where it stands: the
/// registry's own trouble, a timeout, a range it did not expect, a
/// session it no longer knows (docker-registry cancels one whose size
/// moved under a request still running when the status was asked).
fn worth_recovering(status: u16) -> bool {
    status >= 500 || matches!(status, 404 | 408 | 416 | 429)
}

/// The pause before the `n`th recovery's status query (1-based): 100 ms,
/// doubling, so five recoveries wait 3.1 s in all.
fn recovery_pause(n: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100 << (n.saturating_sub(1)).min(4))
}

/// POST for a new session; raises `chunk` to the registry's
/// `OCI-Chunk-Min-Length` if it names a larger one.
fn open(dest: &Destination, chunk: &mut u64) -> Result<Session> {
    let start = format!("/v2/{}/blobs/uploads/", dest.reference.path);
    let response = Client::expect_ok(dest.client.send(
        "POST",
        &start,
        dest.scope,
        "application/octet-stream",
        &mut || Ok(Payload::Bytes(Vec::new())),
    )?)?;
    if let Some(min) = response
        .headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if min > MAX_CHUNK {
            anyhow::bail!(
                "registry {} asks for upload chunks of at least {min} bytes (OCI-Chunk-Min-Length); strata sends at most {MAX_CHUNK}",
                dest.reference.domain
            );
        }
        *chunk = (*chunk).max(min);
    }
    Ok(Session {
        location: upload_location(dest, &start, &response)?,
        offset: 0,
    })
}

/// `GET` on the session's URL: where it stands, or that it is gone.
fn progress(dest: &Destination, location: &str) -> Result<Progress> {
    let response = dest.client.get(location, dest.scope, &[])?;
    let status = response.status().as_u16();
    if status == 404 {
        return Ok(Progress::Gone);
    }
    let response = Client::expect_ok(response)?;
    let range = response
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(next_offset);
    let Some(offset) = range else {
        return Ok(Progress::Gone);
    };
    // A status answer without a `Location` leaves the session's URL as
    // it was.
    let location = match response.headers().get("location") {
        Some(_) => upload_location(dest, location, &response)?,
        None => location.to_string(),
    };
    Ok(Progress::At(Session { location, offset }))
}

/// The offset after `Range: 0-N` (N inclusive): N+1. docker-registry
/// answers `0-0` for an empty session too, which is read as empty: a
/// session holding exactly one byte is then sent again from the start,
/// and a wrong blob is refused by its digest at the PUT.
fn next_offset(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let end: u64 = end.trim().parse().ok()?;
    if end == 0 {
        Some(0)
    } else {
        end.checked_add(1)
    }
}

fn has_blob(dest: &Destination, digest: &Digest) -> Result<bool> {
    super::push::has_blob(dest.client, dest.reference, dest.scope, digest)
}

/// The upload `Location` of the answer to a request sent to `sent_to`,
/// as an absolute URL.
fn upload_location(
    dest: &Destination,
    sent_to: &str,
    response: &ureq::http::Response<ureq::Body>,
) -> Result<String> {
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("the registry gave no upload location")?;
    dest.client.location(sent_to, location)
}

/// The file that keeps one blob's session URL for the next run.
struct SavedSession {
    path: PathBuf,
    /// `host/path` of the repository, checked on load.
    repository: String,
    digest: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedRecord {
    repository: String,
    digest: String,
    location: String,
}

impl SavedSession {
    fn new(dest: &Destination, digest: &Digest) -> SavedSession {
        let repository = format!("{}/{}", dest.reference.domain, dest.reference.path);
        let digest = format!("{digest:#}");
        let name = Digest::of(format!("{repository}\n{digest}").as_bytes());
        SavedSession {
            path: dest.sessions.join(format!("{name}")),
            repository,
            digest,
        }
    }

    /// The URL a previous run saved, if it is this blob's and on this
    /// registry (a URL elsewhere would be sent our credentials).
    fn load(&self, client: &Client) -> Option<String> {
        let bytes = std::fs::read(&self.path).ok()?;
        let record: SavedRecord = serde_json::from_slice(&bytes).ok()?;
        (record.repository == self.repository
            && record.digest == self.digest
            && client.owns_url(&record.location))
        .then_some(record.location)
    }

    /// Saves the URL through a temporary file and a rename. A session that
    /// cannot be saved costs only a resumption, so failures are logged.
    fn store(&self, location: &str) {
        let record = SavedRecord {
            repository: self.repository.clone(),
            digest: self.digest.clone(),
            location: location.to_string(),
        };
        if let Err(e) = self.write(&record) {
            log::warn!(
                "cannot keep the upload session in {}: {e}",
                self.path.display()
            );
        }
    }

    fn write(&self, record: &SavedRecord) -> std::io::Result<()> {
        let dir = self.path.parent().ok_or_else(|| {
            std::io::Error::other(anyhow!("{} has no directory", self.path.display()))
        })?;
        std::fs::create_dir_all(dir)?;
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &self.path)
    }

    fn forget(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long a saved session is kept untouched (every chunk rewrites its
/// file). A push retried within a day resumes; registries drop idle
/// sessions in the end (docker-registry purges them after a week by
/// default), and the saved file of a blob never pushed again has no
/// other way out. A session still alive after a day costs its blob one
/// upload from the start, nothing worse.
const SAVED_SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes the saved sessions (and half-written ones) in `dir` untouched
/// for longer than a day. Best effort: a file that cannot be read or
/// removed stays.
pub fn forget_stale_sessions(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .is_some_and(|m| {
                m.modified()
                    .ok()
                    .and_then(|at| now.duration_since(at).ok())
                    .is_some_and(|age| age > SAVED_SESSION_LIFETIME)
            });
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_gives_the_offset_after_its_inclusive_end() {
        assert_eq!(next_offset("0-999"), Some(1000));
        assert_eq!(next_offset(" 0-65535 "), Some(65536));
        assert_eq!(next_offset("bytes=0-9"), Some(10));
        assert_eq!(next_offset("0-0"), Some(0));
        assert_eq!(next_offset("5-9"), None);
        assert_eq!(next_offset("0-"), None);
        assert_eq!(next_offset("junk"), None);
    }

    #[test]
    fn each_recovery_waits_longer_than_the_last() {
        let pauses: Vec<u64> = (1..=MAX_RECOVERIES)
            .map(|n| recovery_pause(n).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600]);
    }

    #[test]
    fn failures_worth_a_status_query_are_the_registry_s_own() {
        for status in [500, 502, 503, 504, 404, 408, 416, 429] {
            assert!(worth_recovering(status), "{status}");
        }
        for status in [400, 401, 403] {
            assert!(!worth_recovering(status), "{status}");
        }
    }
}
