//! A response body that keeps coming. ureq's per-read timeout ends a
//! connection that sends nothing for two minutes, but a registry sending a
//! byte a minute would hold a pull, and `gc` waiting behind it, for good
//! (its headers are bounded by `Client::connect`'s timeouts).
//! Like curl's `--speed-limit`, a body that brings less than
//! [`MIN_BYTES`] in a [`WINDOW`] fails instead.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// How long a body may take to bring [`MIN_BYTES`].
pub const WINDOW: Duration = Duration::from_secs(60);

/// What a body must bring in each [`WINDOW`]: a dial-up line brings more.
pub const MIN_BYTES: u64 = 1024;

/// `inner`, failing with `TimedOut` when a window ends short of its bytes.
pub struct Steady<R> {
    inner: R,
    window: Duration,
    since: Instant,
    got: u64,
}

impl<R: Read> Steady<R> {
    pub fn new(inner: R) -> Steady<R> {
        Steady::with_window(inner, WINDOW)
    }

    fn with_window(inner: R, window: Duration) -> Steady<R> {
        Steady {
            inner,
            window,
            since: Instant::now(),
            got: 0,
        }
    }
}

impl<R: Read> Read for Steady<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.got += n as u64;
        let elapsed = self.since.elapsed();
        if n > 0 && elapsed >= self.window {
            if self.got < MIN_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the registry sent {} bytes in {} s, under {MIN_BYTES} a minute",
                        self.got,
                        elapsed.as_secs()
                    ),
                ));
            }
            (self.since, self.got) = (Instant::now(), 0);
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
        let mut body = Steady::with_window(trickle, Duration::from_millis(window_ms));
        io::copy(&mut body, &mut io::sink()).map(|n| n as usize)
    }

    #[test]
    fn a_body_slower_than_the_limit_fails_and_a_steady_one_is_read_whole() {
        // 100 reads of a byte take 2 s, so windows of 50 ms end short.
        let e = read_all(100, 1, 50).expect_err("a byte per read is a trickle");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("under 1024 a minute"), "{e}");
        // Each read brings a window's bytes, however long it takes.
        assert_eq!(
            read_all(30_000, 1500, 50).expect("1500 bytes a read"),
            30_000
        );
        assert_eq!(read_all(300, 300, 10_000).expect("a small body"), 300);
    }
}
