//! `strata logs [-f]`: a detached container's output.

use super::Ctx;
use crate::cli::LogsArgs;
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::State;
use std::time::Duration;

pub fn logs(ctx: &Ctx, args: LogsArgs) -> Result<i32> {
    use std::io::{Read, Seek, Write};
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
