//! `strata logs [-f] [-t] [-n N] [--since T] [--until T]`: a container's
//! output, detached or attached, each line to the stream it came from
//! (the log's form is in `container::json_log`).

use super::Ctx;
use crate::cli::LogsArgs;
use crate::container::json_log;
use crate::humanize::{format_rfc3339_nano_fixed, parse_rfc3339, time_bound};
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use std::io::{ErrorKind, Read, Seek, Write};
use std::time::Duration;

pub fn logs(ctx: &Ctx, args: LogsArgs) -> Result<i32> {
    // A negative count is every line, as docker's daemon reads it.
    let tail = match args.tail.as_str() {
        "all" => None,
        n => u64::try_from(n.parse::<i64>().map_err(|_| {
            anyhow::anyhow!(
                "invalid value for \"tail\": {:?}: it must be \"all\" or a number",
                n
            )
        })?)
        .ok(),
    };
    let now = crate::clock::now_ns();
    let bound = |value: &Option<String>| value.as_deref().map(|v| time_bound(v, now)).transpose();
    let mut printer = Printer::new(args.timestamps, bound(&args.since)?, bound(&args.until)?);
    let (rec, log) = {
        let store = ctx.reader()?;
        let rec = liveness::container(&store, &args.container)?;
        if rec.log_driver == layerdb::LogDriver::None {
            anyhow::bail!("configured logging driver does not support reading");
        }
        let log = ContainerPaths::of(&ctx.root, &rec).log();
        (rec, log)
    };
    let older = older_files(&log, &rec.log_options);
    let monitor = rec.state.monitor().filter(|_| args.follow);
    let mut file = match std::fs::File::open(&log) {
        Ok(f) => f,
        // No log yet: a container never started has said nothing, and
        // `logs -f` of one returns at once, as docker's does. A running
        // one's log is made before it is recorded running.
        Err(e) if e.kind() == ErrorKind::NotFound && monitor.is_none() && older.is_empty() => {
            return Ok(0)
        }
        Err(e) => return Err(e).with_context(|| format!("open {}", log.display())),
    };
    if older.is_empty() {
        if let Some(lines) = tail {
            let start = start_of_last_lines(&mut file, lines)?;
            file.seek(std::io::SeekFrom::Start(start))?;
        }
    } else {
        // A rotated log is bounded (max-size times max-file): its files,
        // oldest first, are read whole, the tail taken of them together.
        let mut all = Vec::new();
        for path in &older {
            // One rotated away meanwhile is in the next file.
            if let Ok(mut f) = std::fs::File::open(path) {
                f.read_to_end(&mut all)?;
            }
        }
        file.read_to_end(&mut all)?;
        let start = tail.map_or(0, |lines| start_of_last_lines_in(&all, lines));
        printer.copy(&mut &all[start..])?;
    }
    let mut followed = Followed { file, path: log };
    loop {
        // The monitor looked at before the read: what it wrote before it
        // ended is in the file for the read that follows.
        let alive =
            monitor.is_some_and(|(pid, start)| layerdb::pins::process_alive_since(pid, start));
        if followed.print_new(&mut printer)? {
            continue;
        }
        if !alive {
            printer.finish()?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prints the log's lines as they are read: each entry's text to the
/// stream it came from, within the time span, with its time if asked.
pub(super) struct Printer {
    timestamps: bool,
    since: Option<i64>,
    until: Option<i64>,
    /// The start of a line still being written.
    partial: Vec<u8>,
}

impl Printer {
    pub(super) fn new(timestamps: bool, since: Option<i64>, until: Option<i64>) -> Printer {
        Printer {
            timestamps,
            since,
            until,
            partial: Vec::new(),
        }
    }

    /// Prints the complete lines `file` holds from where it is, a block at
    /// a time (a log may be far larger than memory); whether there were
    /// any bytes.
    pub(super) fn copy(&mut self, file: &mut impl Read) -> Result<bool> {
        let mut block = vec![0u8; 1 << 20];
        let mut any = false;
        // Buffered: stdout alone flushes at every newline, a system call
        // a line.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let mut err = std::io::BufWriter::new(std::io::stderr().lock());
        loop {
            let n = file.read(&mut block)?;
            if n == 0 {
                break;
            }
            any = true;
            self.partial.extend_from_slice(&block[..n]);
            let mut done = 0;
            while let Some(end) = self.partial[done..].iter().position(|&b| b == b'\n') {
                self.line(&self.partial[done..done + end], &mut out, &mut err)?;
                done += end + 1;
            }
            self.partial.drain(..done);
        }
        out.flush()?;
        err.flush()?;
        Ok(any)
    }

    /// The last line, if the log does not end with a newline.
    pub(super) fn finish(&mut self) -> Result<()> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.partial);
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        self.line(&line, &mut out, &mut err)?;
        out.flush()?;
        Ok(())
    }

    fn line(&self, line: &[u8], out: &mut impl Write, err: &mut impl Write) -> Result<()> {
        let entry = match json_log::parse(line) {
            Ok(entry) => entry,
            // A line of a log written before entries: as it is.
            Err(plain) => {
                out.write_all(plain)?;
                return Ok(out.write_all(b"\n")?);
            }
        };
        let timed = self.timestamps || self.since.is_some() || self.until.is_some();
        let time = match timed {
            true => parse_rfc3339(&entry.time).unwrap_or(0),
            false => 0,
        };
        if self.since.is_some_and(|since| time < since)
            || self.until.is_some_and(|until| time > until)
        {
            return Ok(());
        }
        let to: &mut dyn Write = if entry.stream == "stderr" { err } else { out };
        if self.timestamps {
            write!(to, "{} ", format_rfc3339_nano_fixed(time))?;
        }
        Ok(to.write_all(entry.log.as_bytes())?)
    }
}

/// The rotated files of the log at `log` that exist, oldest first.
fn older_files(log: &std::path::Path, options: &layerdb::LogOptions) -> Vec<std::path::PathBuf> {
    (1..options.max_files.max(1))
        .rev()
        .map(|n| json_log::Rotation::older(log, n))
        .filter(|path| path.exists())
        .collect()
}

/// A log being followed, from where it was opened or read to.
pub(super) struct Followed {
    pub(super) file: std::fs::File,
    pub(super) path: std::path::PathBuf,
}

impl Followed {
    /// Prints what the log got since the last read; whether there was
    /// anything. A log rotated under it: what the old file got last, then
    /// the new one from its start.
    pub(super) fn print_new(&mut self, printer: &mut Printer) -> Result<bool> {
        if printer.copy(&mut self.file)? {
            return Ok(true);
        }
        if rotated_away(&self.file, &self.path) {
            if let Ok(new) = std::fs::File::open(&self.path) {
                printer.copy(&mut self.file)?;
                self.file = new;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether the log's path now names another file than `file`.
fn rotated_away(file: &std::fs::File, log: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(log)) {
        (Ok(ours), Ok(now)) => (ours.dev(), ours.ino()) != (now.dev(), now.ino()),
        _ => false,
    }
}

/// Where the last `lines` lines of `bytes` begin (a last line without its
/// newline counts).
fn start_of_last_lines_in(bytes: &[u8], lines: u64) -> usize {
    if lines == 0 {
        return bytes.len();
    }
    let end = match bytes.last() {
        Some(b'\n') => bytes.len() - 1,
        _ => bytes.len(),
    };
    let mut seen = 0;
    for (i, b) in bytes[..end].iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                return i + 1;
            }
        }
    }
    0
}

/// Where the last `lines` lines of `file` begin (a last line without its
/// newline counts), found by reading back from the end block by block.
fn start_of_last_lines(file: &mut std::fs::File, lines: u64) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok(len);
    }
    let mut block = vec![0u8; 64 * 1024];
    let mut end = len;
    // The newline that ends the file ends the last line; it starts none.
    let mut skip_last = true;
    let mut found = 0;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            let at = start + i as u64;
            if b != b'\n' {
                skip_last = false;
                continue;
            }
            if std::mem::take(&mut skip_last) && at + 1 == len {
                continue;
            }
            found += 1;
            if found == lines {
                return Ok(at + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tail(content: &[u8], lines: u64) -> Vec<u8> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        let start = start_of_last_lines(&mut f, lines).unwrap() as usize;
        content[start..].to_vec()
    }

    #[test]
    fn tail_takes_the_last_lines_as_docker_counts_them() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", 0), b"");
        assert_eq!(tail(b"", 3), b"");
        assert_eq!(tail(b"\n\n", 1), b"\n");
        let long: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        assert_eq!(tail(&long, 2), b"99998\n99999\n");
    }
}
