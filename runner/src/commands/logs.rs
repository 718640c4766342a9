//! `strata logs [-f]`: a container's output, detached or attached.

use super::Ctx;
use crate::cli::LogsArgs;
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::State;
use std::time::Duration;

pub fn logs(ctx: &Ctx, args: LogsArgs) -> Result<i32> {
    use std::io::{Read, Seek, Write};
    let tail = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse::<u64>().map_err(|_| {
            anyhow::anyhow!(
                "invalid value for \"tail\": {:?}: it must be \"all\" or a number",
                n
            )
        })?),
    };
    let (rec, log) = {
        let store = ctx.reader()?;
        let rec = liveness::container(&store, &args.container)?;
        let log = ContainerPaths::of(&ctx.root, &rec).log();
        (rec, log)
    };
    let mut out = std::io::stdout().lock();
    let mut file = match std::fs::File::open(&log) {
        Ok(f) => f,
        Err(_) if !args.follow => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("open {}", log.display())),
    };
    if let Some(lines) = tail {
        let start = start_of_last_lines(&mut file, lines)?;
        file.seek(std::io::SeekFrom::Start(start))?;
    }
    std::io::copy(&mut file, &mut out)?;
    out.flush()?;
    if !args.follow {
        return Ok(0);
    }
    let monitor = match rec.state {
        State::Running { monitor_pid, .. } | State::Paused { monitor_pid, .. } => monitor_pid,
        _ => return Ok(0),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let alive = liveness::process_alive(monitor);
        let pos = file.stream_position()?;
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            out.flush()?;
            continue;
        }
        if !alive {
            return Ok(0);
        }
        file.seek(std::io::SeekFrom::Start(pos))?;
        std::thread::sleep(Duration::from_millis(100));
    }
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
