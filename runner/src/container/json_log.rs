//! A container's log in docker's json-file form: a JSON object a line,
//! `{"log":"hello\n","stream":"stdout","time":"2026-12-05T09:15:21.5Z"}`,
//! so that `logs` gives each stream back to its own descriptor, with the
//! time of each line (`-t`) and only the lines of a time span (`--since`,
//! `--until`). Output that is not UTF-8 is kept lossily, as docker's is.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::humanize::format_rfc3339_nano;

/// One line of output as the log keeps it.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The line, its newline included (the last of a stream may have none).
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read, RFC 3339 with nanoseconds.
    pub time: String,
}

/// A line longer than this is logged in pieces of this size, as docker's
/// json-file splits at its 16 KiB buffer: a process that never writes a
/// newline does not grow the writer without bound.
const MAX_LINE: usize = 16 << 10;

/// Writes one stream's output to the log, a line an entry (a last line
/// without its newline when dropped). The entries of
/// one read go out in one `write` to a file opened for appending, so the
/// entries of the two streams, written by two processes, never mix within
/// a line, and a container printing many short lines costs a system call
/// per read, not per line (the lines of a read share its time).
pub struct LineWriter<'fd> {
    log: BorrowedFd<'fd>,
    stream: &'static str,
    /// The start of a line whose newline has not come yet.
    partial: Vec<u8>,
    rotation: Option<Rotation>,
}

/// docker's json-file `max-size` and `max-file` for a log at `path`: a
/// write that would take the log past `max_size` first moves it to
/// `path.1` (`path.1` to `path.2`..., the oldest past `max_files` gone;
/// with one file the log is emptied instead), then goes to a new log.
/// Every writer of the log (the two output relays, or the monitor) does
/// this under one lock (`path.lock`), and one that finds its descriptor no
/// longer the log's (another rotated it) opens the log again onto the same
/// descriptor number first.
#[derive(Clone, Debug)]
pub struct Rotation {
    pub path: PathBuf,
    pub max_size: u64,
    pub max_files: u32,
}

/// docker's json-file `--log-opt KEY=VALUE`s: `max-size` (bytes, or with
/// a unit: k, m, g, in 1024s as docker reads them) and `max-file` (at
/// least 1, only with `max-size`); another option of docker's is refused
/// as not kept here, one it does not know as docker refuses it.
pub fn options(given: &[String]) -> anyhow::Result<layerdb::LogOptions> {
    let mut options = layerdb::LogOptions::default();
    let mut files = None;
    for opt in given {
        let Some((key, value)) = opt.split_once('=') else {
            anyhow::bail!("invalid key value pair format in log options: {opt}");
        };
        match key {
            "max-size" => {
                let bytes = crate::humanize::parse_size(value, "--log-opt max-size")?;
                options.max_size = u64::try_from(bytes).unwrap_or(0);
            }
            "max-file" => match value.parse::<u32>() {
                Ok(n) if n >= 1 => files = Some(n),
                _ => anyhow::bail!("max-file cannot be less than 1"),
            },
            "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {
                anyhow::bail!("log opt '{key}' of the json-file driver is not supported by strata")
            }
            _ => anyhow::bail!("unknown log opt '{key}' for json-file log driver"),
        }
    }
    if files.is_some_and(|n| n > 1) && options.max_size == 0 {
        anyhow::bail!("max-file cannot be set when max-size is not set");
    }
    options.max_files = files.unwrap_or(1);
    Ok(options)
}

impl Rotation {
    /// The rotation `options` ask for of the log at `path`, if any.
    pub fn of(path: &Path, options: &layerdb::LogOptions) -> Option<Rotation> {
        (options.max_size > 0).then(|| Rotation {
            path: path.to_path_buf(),
            max_size: options.max_size,
            max_files: options.max_files.max(1),
        })
    }

    /// The log's `n`th older file (`path.n`).
    pub fn older(path: &Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Writes `out` (whole entries) to `fd`, a descriptor of the log, an
    /// entry never split across files: first the log opened again if
    /// another writer rotated it, then before each entry that would take
    /// it past `max_size` (unless it is empty) a rotation. Call under the
    /// lock.
    fn write(&self, fd: BorrowedFd<'_>, out: &[u8]) -> std::io::Result<()> {
        let ours = nix::sys::stat::fstat(fd)?;
        match std::fs::metadata(&self.path) {
            Ok(md) if md.ino() == ours.st_ino && md.dev() == ours.st_dev as u64 => {}
            _ => self.reopen(fd)?,
        }
        let mut size = nix::sys::stat::fstat(fd)?.st_size as u64;
        let mut pending = 0;
        let mut at = 0;
        for entry in out.split_inclusive(|&b| b == b'\n') {
            if size > 0 && size + entry.len() as u64 > self.max_size {
                super::attach::write_all(fd, &out[pending..at]);
                self.rotate(fd)?;
                (size, pending) = (0, at);
            }
            size += entry.len() as u64;
            at += entry.len();
        }
        super::attach::write_all(fd, &out[pending..]);
        Ok(())
    }

    /// The log moved to `path.1` (the older ones one further, the oldest
    /// past `max_files` gone) and a new one onto `fd`; with one file, the
    /// log emptied.
    fn rotate(&self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        if self.max_files < 2 {
            return nix::unistd::ftruncate(fd, 0).map_err(std::io::Error::from);
        }
        for n in (1..self.max_files - 1).rev() {
            match std::fs::rename(Self::older(&self.path, n), Self::older(&self.path, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, Self::older(&self.path, 1))?;
        self.reopen(fd)
    }

    /// The log at `path` (made if missing) onto `fd`'s number.
    fn reopen(&self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        crate::sys::dup_onto(log.as_fd(), fd.as_raw_fd())
    }
}

impl<'fd> LineWriter<'fd> {
    pub fn new(log: BorrowedFd<'fd>, stream: &'static str, rotation: Option<Rotation>) -> Self {
        LineWriter {
            log,
            stream,
            partial: Vec::new(),
            rotation,
        }
    }

    /// Logs the complete lines of `bytes` (with what came before them);
    /// keeps the rest for the next call or [`LineWriter::finish`].
    pub fn write(&mut self, mut bytes: &[u8]) {
        let time = format_rfc3339_nano(crate::clock::now_ns());
        let mut out = Vec::new();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[..=end]);
            self.entry(&time, &mut out);
            bytes = &bytes[end + 1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            self.entry(&time, &mut out);
            self.partial = rest;
        }
        self.put(&out);
    }

    /// Logs a last line that has no newline.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            let mut out = Vec::new();
            self.entry(&format_rfc3339_nano(crate::clock::now_ns()), &mut out);
            self.put(&out);
        }
    }

    /// Adds the partial line to `out` as an entry.
    fn entry(&mut self, time: &str, out: &mut Vec<u8>) {
        let entry = Entry {
            log: String::from_utf8_lossy(&self.partial).into_owned(),
            stream: self.stream.to_string(),
            time: time.to_string(),
        };
        self.partial.clear();
        if serde_json::to_writer(&mut *out, &entry).is_ok() {
            out.push(b'\n');
        }
    }

    fn put(&self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        // A log that cannot be written (a full disk), or rotated, loses
        // these lines, as docker's does; the container goes on.
        let Some(rotation) = &self.rotation else {
            super::attach::write_all(self.log, out);
            return;
        };
        let _lock = crate::file_lock::exclusive(&rotation.path.with_extension("lock"));
        if let Err(e) = rotation.write(self.log, out) {
            log::warn!("rotating {}: {e}", rotation.path.display());
        }
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A line of the log: an entry, or (from a log written before strata
/// kept this form) the plain line itself.
pub fn parse(line: &[u8]) -> Result<Entry, &[u8]> {
    serde_json::from_slice::<Entry>(line).map_err(|_| line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};
    use std::os::fd::AsFd;

    /// What `write` calls log, as (log, stream) pairs.
    fn logged(calls: &[&[u8]], stream: &'static str) -> Vec<(String, String)> {
        let mut file = tempfile::tempfile().unwrap();
        {
            let mut w = LineWriter::new(file.as_fd(), stream, None);
            for call in calls {
                w.write(call);
            }
        }
        let mut text = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut text).unwrap();
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let e = parse(l).unwrap();
                assert!(
                    crate::humanize::parse_rfc3339(&e.time).is_ok(),
                    "{}",
                    e.time
                );
                (e.log, e.stream)
            })
            .collect()
    }

    #[test]
    fn lines_are_entries_whatever_the_reads_that_brought_them() {
        let e = |s: &str| (s.to_string(), "stderr".to_string());
        assert_eq!(
            logged(&[b"a\nb", b"c\n\nd"], "stderr"),
            [e("a\n"), e("bc\n"), e("\n"), e("d")]
        );
    }

    #[test]
    fn a_line_without_end_is_logged_in_pieces_and_bad_utf8_lossily() {
        let long = vec![b'x'; MAX_LINE * 2 + 3];
        let pieces = logged(&[&long, b"\xff\n"], "stdout");
        let lens: Vec<usize> = pieces.iter().map(|(l, _)| l.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 3 + "\u{fffd}\n".len()]);
        assert!(pieces[2].0.ends_with("xxx\u{fffd}\n"));
    }

    #[test]
    fn a_plain_line_is_not_an_entry() {
        assert_eq!(parse(b"hello"), Err(&b"hello"[..]));
        assert_eq!(parse(br#"{"log":"x"}"#), Err(&br#"{"log":"x"}"#[..]));
    }
}
