//! A reader that hashes what passes through it and, at its end, fails
//! unless the bytes had the expected sha256 (and size): a blob is checked
//! while it streams, never trusted first and checked later.

use layerdb::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

pub struct VerifiedReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    expected: Digest,
    expected_size: Option<u64>,
    /// Names the stream in errors: `blob sha256:...`.
    what: String,
    checked: bool,
}

impl<R: Read> VerifiedReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>, what: String) -> Self {
        VerifiedReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
            expected,
            expected_size,
            what,
            checked: false,
        }
    }

    /// Reads what is left and checks it: for a consumer that may stop
    /// before the end (a tar reader stops at its end-of-archive blocks).
    pub fn finish(mut self) -> io::Result<u64> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.read)
    }

    fn check_end(&mut self) -> io::Result<()> {
        if self.checked {
            return Ok(());
        }
        self.checked = true;
        if let Some(size) = self.expected_size {
            if self.read != size {
                return Err(invalid(format!(
                    "{}: {} bytes received, {size} expected (truncated download?)",
                    self.what, self.read
                )));
            }
        }
        let got = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if got != self.expected {
            return Err(invalid(format!(
                "{}: digest mismatch: the content has {got:#}",
                self.what
            )));
        }
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.checked {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.check_end()?;
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if let Some(size) = self.expected_size {
            if self.read > size {
                self.checked = true;
                return Err(invalid(format!(
                    "{}: more than the {size} bytes expected",
                    self.what
                )));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(
        data: &'static [u8],
        expected: &[u8],
        size: Option<u64>,
    ) -> VerifiedReader<&'static [u8]> {
        VerifiedReader::new(data, Digest::of(expected), size, "blob x".into())
    }

    #[test]
    fn matching_content_reads_through() {
        let mut out = Vec::new();
        reader(b"hello", b"hello", Some(5))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(reader(b"hello", b"hello", None).finish().unwrap(), 5);
    }

    #[test]
    fn a_changed_byte_fails_at_the_end() {
        let e = reader(b"hellO", b"hello", Some(5)).finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("digest mismatch"), "{e}");
    }

    #[test]
    fn short_or_long_content_fails() {
        let e = reader(b"hell", b"hello", Some(5)).finish().unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = reader(b"hello!", b"hello", Some(5)).finish().unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }
}
