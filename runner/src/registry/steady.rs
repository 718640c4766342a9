//! A response body that keeps coming. ureq's per-read timeout ends a
//! connection that sends nothing for two minutes, but a registry sending a
//! byte a minute would hold a pull, and `gc` waiting behind it, for good
//! (its headers are bounded by `Client::connect`'s timeouts). Like curl's
//! `--speed-limit`, a body whose average since it began falls under
//! [`MIN_RATE`], once a [`WINDOW`] has passed, fails instead (judged when
//! a read returns; ureq allows a read two minutes); a document, a few
//! megabytes at most, has [`DOCUMENT_DEADLINE`] in all.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// How long a body has before its rate is judged.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The slowest a body may come, in bytes a second: a dial-up line brings
/// several times more.
pub const MIN_RATE: u64 = 1024;

/// How long a manifest, config or token may take in all.
pub const DOCUMENT_DEADLINE: Duration = Duration::from_secs(300);

/// `inner`, failing with `TimedOut` when it falls under the rate or the
/// deadline has passed.
pub struct Steady<R> {
    inner: R,
    window: Duration,
    rate: u64,
    since: Instant,
    got: u64,
    deadline: Option<Instant>,
}

impl<R: Read> Steady<R> {
    /// A blob's body, however long it is, at [`MIN_RATE`] or faster.
    pub fn new(inner: R) -> Steady<R> {
        Steady::with_window(inner, WINDOW, MIN_RATE)
    }

    /// A document's body: [`Steady::new`]'s rule, and [`DOCUMENT_DEADLINE`].
    pub fn document(inner: R) -> Steady<R> {
        let mut body = Steady::new(inner);
        body.deadline = Some(Instant::now() + DOCUMENT_DEADLINE);
        body
    }

    fn with_window(inner: R, window: Duration, rate: u64) -> Steady<R> {
        Steady {
            inner,
            window,
            rate,
            since: Instant::now(),
            got: 0,
            deadline: None,
        }
    }

    fn too_slow(what: String) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<R: Read> Read for Steady<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            let secs = DOCUMENT_DEADLINE.as_secs();
            return Err(Self::too_slow(format!(
                "the registry's answer took over {secs} s"
            )));
        }
        self.got += n as u64;
        let elapsed = self.since.elapsed();
        // The average since the body began, judged once the first window
        // has passed: a fast start pays for a later stall, and holding a
        // pull for a time costs a registry that time's bytes.
        if n > 0 && elapsed >= self.window {
            let owed = self.rate * elapsed.as_millis() as u64 / 1000;
            if self.got < owed {
                let (got, secs) = (self.got, elapsed.as_secs());
                let rate = self.rate;
                return Err(Self::too_slow(format!(
                    "the registry sent {got} bytes in {secs} s, under {rate} a second"
                )));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `step` bytes per read, each after `pause`.
    struct Trickle {
        left: usize,
        step: usize,
        pause: Duration,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.pause);
            let n = self.step.min(self.left).min(buf.len());
            buf[..n].fill(b'x');
            self.left -= n;
            Ok(n)
        }
    }

    fn read_all(left: usize, step: usize, window_ms: u64) -> io::Result<usize> {
        let pause = Duration::from_millis(20);
        let trickle = Trickle { left, step, pause };
        // 1000 bytes a second: 20 bytes a read of 20 ms.
        let window = Duration::from_millis(window_ms);
        let mut body = Steady::with_window(trickle, window, 1000);
        io::copy(&mut body, &mut io::sink()).map(|n| n as usize)
    }

    #[test]
    fn a_body_slower_than_the_rate_fails_and_a_steady_one_is_read_whole() {
        // 1 byte a read of 20 ms or more is under 1000 a second, whatever
        // the machine's speed: reads only ever take longer.
        let e = read_all(100, 1, 50).expect_err("a byte per read is a trickle");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("under 1000 a second"), "{e}");
        // 40 bytes a read of at least 20 ms may be under the rate on a slow
        // machine; a whole window's bytes per read never is.
        assert_eq!(read_all(30_000, 10_000, 50).expect("10 kB a read"), 30_000);
        assert_eq!(read_all(300, 300, 10_000).expect("a small body"), 300);
    }

    #[test]
    fn a_document_past_its_deadline_fails() {
        let trickle = Trickle {
            left: 10,
            step: 1,
            pause: Duration::from_millis(1),
        };
        let mut body = Steady::document(trickle);
        body.deadline = Some(Instant::now());
        let e = io::copy(&mut body, &mut io::sink()).expect_err("past its deadline");
        assert!(e.to_string().contains("answer took over"), "{e}");
    }
}
