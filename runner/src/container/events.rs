//! What a monitor (or exec helper) tells the CLI, one JSON object per line
//! on a pipe: typed messages, never scraped stderr.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::exit::StartError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The user's command is running; `pid` is its pid on the host.
    Started { pid: i32 },
    /// It never ran.
    Failed(StartError),
    /// It ran and finished with this status (128 + signal if killed).
    Exited { code: i32 },
}

pub struct EventSender(File);

impl EventSender {
    pub fn new(pipe: OwnedFd) -> Self {
        Self(File::from(pipe))
    }

    /// Best effort: a detached CLI has gone away once it saw `Started`.
    pub fn send(&self, event: &Event) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        if let Err(err) = (&self.0).write_all(&line) {
            log::debug!("the CLI is no longer listening: {err}");
        }
    }
}

pub struct EventReceiver {
    file: File,
    buffer: Vec<u8>,
}

impl EventReceiver {
    pub fn new(pipe: OwnedFd) -> Self {
        Self {
            file: File::from(pipe),
            buffer: Vec::new(),
        }
    }

    /// One read (blocking until something arrives) and the complete
    /// events it finished. `None` at end of file.
    pub fn receive(&mut self) -> anyhow::Result<Option<Vec<Event>>> {
        let mut chunk = [0u8; 4096];
        let count = self
            .file
            .read(&mut chunk)
            .context("read from the container monitor")?;
        if count == 0 {
            if !self.buffer.is_empty() {
                bail!("the container monitor sent a truncated message");
            }
            return Ok(None);
        }
        self.buffer.extend_from_slice(&chunk[..count]);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            events.push(
                serde_json::from_slice(&line).context("bad message from the container monitor")?,
            );
        }
        Ok(Some(events))
    }

    /// Blocks until the process started or failed to.
    pub fn wait_started(&mut self) -> anyhow::Result<i32> {
        loop {
            let Some(events) = self.receive()? else {
                bail!("the container monitor exited before the container started");
            };
            // The first event decides; a read may also bring none yet.
            match events.into_iter().next() {
                None => {}
                Some(Event::Started { pid }) => return Ok(pid),
                Some(Event::Failed(err)) => return Err(err.into()),
                Some(Event::Exited { .. }) => {
                    bail!("the container exited before it was reported started")
                }
            }
        }
    }
}

impl AsFd for EventReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::exit::StartErrorKind;

    #[test]
    fn events_cross_a_pipe_in_order() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let sender = EventSender::new(write);
        sender.send(&Event::Started { pid: 7 });
        sender.send(&Event::Exited { code: 3 });
        drop(sender);
        let mut receiver = EventReceiver::new(read);
        let mut all = Vec::new();
        while let Some(events) = receiver.receive().expect("receive") {
            all.extend(events);
        }
        assert_eq!(
            all,
            vec![Event::Started { pid: 7 }, Event::Exited { code: 3 }]
        );
    }

    #[test]
    fn failed_start_comes_back_as_typed_error() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let err = StartError::new(StartErrorKind::NotFound, "exec: \"x\": not found");
        EventSender::new(write).send(&Event::Failed(err.clone()));
        let got = EventReceiver::new(read)
            .wait_started()
            .expect_err("start failed");
        assert_eq!(got.downcast_ref::<StartError>(), Some(&err));
    }
}
