//! A container's log in docker's json-file form: a JSON object a line,
//! `{"log":"hello\n","stream":"stdout","time":"2026-12-05T09:15:21.5Z"}`,
//! so that `logs` gives each stream back to its own descriptor, with the
//! time of each line (`-t`) and only the lines of a time span (`--since`,
//! `--until`). Output that is not UTF-8 is kept lossily, as docker's is.

use std::os::fd::BorrowedFd;

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
}

impl<'fd> LineWriter<'fd> {
    pub fn new(log: BorrowedFd<'fd>, stream: &'static str) -> Self {
        LineWriter {
            log,
            stream,
            partial: Vec::new(),
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
        if !out.is_empty() {
            // A log that cannot be written (a full disk) loses these
            // lines, as docker's does; the container goes on.
            super::attach::write_all(self.log, out);
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
            let mut w = LineWriter::new(file.as_fd(), stream);
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
