//! Printing a command's output. A write to stdout that fails (a full
//! disk under `> file`, /dev/full, a reader gone from a pipe where
//! SIGPIPE stays ignored) is the command's error: one line and exit 125,
//! as for any other failure, where `println!` panicked with a backtrace
//! and exit 101. A command that only prints ends by SIGPIPE first, as
//! other tools do (`commands::only_prints`).

use std::io::Write;

/// `println!` that hands a failed write to the caller, as the error of
/// the enclosing function (`outln!(...)?`).
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that hands a failed write to the caller (`out!(...)?`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// Writes `text` to stdout.
pub fn write(text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_fmt(text)
        .map_err(|e| anyhow::anyhow!("write to stdout: {e}"))
}
