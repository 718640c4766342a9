//! Signal names and numbers as docker reads them (its `signal.ParseSignal`):
//! the one rule for `commit -c STOPSIGNAL`, `stop` (the recorded stop
//! signal) and `kill -s`, so a signal one accepts the others can send.
//!
//! A name is matched in any case, with or without `SIG`; `RTMIN+n` and
//! `RTMAX-n` are the realtime signals as Go numbers them on Linux (34..64).
//! A number is any signal the kernel has (1..64).

use std::fmt;
use std::str::FromStr;

/// Linux's first realtime signal as docker numbers it (glibc keeps 32 and
/// 33 for its threads; Go's table says 34).
const RTMIN: i32 = 34;
/// Linux's last signal.
const RTMAX: i32 = 64;

/// The standard signals docker names on Linux (without `SIG`).
const NAMES: [(&str, i32); 34] = [
    ("ABRT", libc::SIGABRT),
    ("ALRM", libc::SIGALRM),
    ("BUS", libc::SIGBUS),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("FPE", libc::SIGFPE),
    ("HUP", libc::SIGHUP),
    ("ILL", libc::SIGILL),
    ("INT", libc::SIGINT),
    ("IO", libc::SIGIO),
    ("IOT", libc::SIGIOT),
    ("KILL", libc::SIGKILL),
    ("PIPE", libc::SIGPIPE),
    ("POLL", libc::SIGPOLL),
    ("PROF", libc::SIGPROF),
    ("PWR", libc::SIGPWR),
    ("QUIT", libc::SIGQUIT),
    ("SEGV", libc::SIGSEGV),
    ("STKFLT", libc::SIGSTKFLT),
    ("STOP", libc::SIGSTOP),
    ("SYS", libc::SIGSYS),
    ("TERM", libc::SIGTERM),
    ("TRAP", libc::SIGTRAP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("VTALRM", libc::SIGVTALRM),
    ("WINCH", libc::SIGWINCH),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
];

/// Offsets docker names after `RTMIN+` and `RTMAX-`.
const RT_OFFSETS: std::ops::RangeInclusive<i32> = 1..=15;

/// A signal a container's process can be sent, realtime ones included
/// (which `nix::sys::signal::Signal` cannot hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// `stop`'s signal when the image names none.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `kill`'s default, and what `stop` and `rm -f` end with.
    pub const KILL: Signal = Signal(libc::SIGKILL);

    /// The signal number, for kill(2).
    pub fn number(self) -> i32 {
        self.0
    }

    /// The signal a container is stopped with: its recorded STOPSIGNAL,
    /// SIGTERM when it has none.
    pub fn for_stop(recorded: &str) -> Result<Signal, InvalidSignal> {
        if recorded.is_empty() {
            return Ok(Signal::TERM);
        }
        recorded.parse()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match NAMES.iter().find(|(_, number)| *number == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None if self.0 == RTMIN => f.write_str("SIGRTMIN"),
            None if self.0 > RTMIN && self.0 < RTMAX => write!(f, "SIGRTMIN+{}", self.0 - RTMIN),
            None if self.0 == RTMAX => f.write_str("SIGRTMAX"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// A signal name or number docker would refuse; Display is docker's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSignal(pub String);

impl fmt::Display for InvalidSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid signal: {}", self.0)
    }
}

impl std::error::Error for InvalidSignal {}

impl FromStr for Signal {
    type Err = InvalidSignal;

    fn from_str(text: &str) -> Result<Signal, InvalidSignal> {
        let invalid = || InvalidSignal(text.to_owned());
        if let Ok(number) = text.parse::<i32>() {
            return if (1..=RTMAX).contains(&number) {
                Ok(Signal(number))
            } else {
                Err(invalid())
            };
        }
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, number)) = NAMES.iter().find(|(known, _)| *known == name) {
            return Ok(Signal(*number));
        }
        let offset = |digits: &str| {
            digits
                .parse::<i32>()
                .ok()
                .filter(|n| RT_OFFSETS.contains(n))
        };
        let number = match name {
            "RTMIN" => Some(RTMIN),
            "RTMAX" => Some(RTMAX),
            _ => name
                .strip_prefix("RTMIN+")
                .and_then(offset)
                .map(|n| RTMIN + n)
                .or_else(|| {
                    name.strip_prefix("RTMAX-")
                        .and_then(offset)
                        .map(|n| RTMAX - n)
                }),
        };
        number.map(Signal).ok_or_else(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<i32, InvalidSignal> {
        text.parse::<Signal>().map(Signal::number)
    }

    #[test]
    fn names_match_in_any_case_with_or_without_sig() {
        for text in ["SIGTERM", "term", "Term", "sigterm", "15"] {
            assert_eq!(parse(text), Ok(libc::SIGTERM), "{text}");
        }
        assert_eq!(parse("KILL"), Ok(libc::SIGKILL));
        assert_eq!(parse("cld"), Ok(libc::SIGCHLD));
    }

    #[test]
    fn realtime_names_are_numbered_as_docker_does() {
        assert_eq!(parse("RTMIN"), Ok(34));
        assert_eq!(parse("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse("rtmax-1"), Ok(63));
        assert_eq!(parse("RTMAX"), Ok(64));
        assert_eq!(parse("64"), Ok(64));
    }

    #[test]
    fn unknown_names_zero_and_numbers_past_the_last_signal_are_refused() {
        for text in ["SIGNOPE", "0", "-1", "65", "RTMIN+16", "RTMAX-0", "", "SIG"] {
            assert_eq!(parse(text), Err(InvalidSignal(text.into())), "{text}");
        }
        assert_eq!(
            parse("SIGNOPE").unwrap_err().to_string(),
            "Invalid signal: SIGNOPE"
        );
    }

    #[test]
    fn a_container_without_a_stop_signal_is_stopped_with_sigterm() {
        assert_eq!(Signal::for_stop(""), Ok(Signal::TERM));
        assert_eq!(
            Signal::for_stop("RTMIN+3").map(Signal::number),
            Ok(RTMIN + 3)
        );
    }

    #[test]
    fn display_names_the_signal() {
        assert_eq!(Signal::KILL.to_string(), "SIGKILL");
        assert_eq!(Signal(37).to_string(), "SIGRTMIN+3");
    }
}
