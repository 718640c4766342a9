//! An interactive container session for tests: stdin is a pipe we write
//! commands to, stdout is collected by a thread so we can wait for output.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
}

impl Session {
    pub fn start(mut cmd: std::process::Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata run starts");
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .expect("the output lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let stdin = child.stdin.take();
        Session { child, stdin, out }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(line.as_bytes())
            .expect("write to the container");
        stdin.write_all(b"\n").expect("write to the container");
        stdin.flush().ok();
    }

    /// Polls the output until it contains `text`.
    pub fn wait_for(&mut self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.out.lock().expect("the output lock").contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?}; output so far:\n{}",
                self.output()
            );
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the container ended ({status}) before printing {text:?}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn output(&self) -> String {
        self.out.lock().expect("the output lock").clone()
    }

    /// Closes stdin (the shell exits) and returns the exit status.
    pub fn finish(mut self) -> i32 {
        drop(self.stdin.take());
        self.child
            .wait()
            .expect("strata run finishes")
            .code()
            .unwrap_or(-1)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
