//! A registry that answers what its test says (on 127.0.0.1 at a free
//! port): for what no real registry would serve, as a hostile one would.
//! One request per connection; request bodies are not read.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Instead of `body`, bytes without end (a terabyte declared), until
    /// the client goes away.
    pub endless: bool,
}

impl Answer {
    pub fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer::bytes(
            status,
            "application/json",
            serde_json::to_vec(&body).expect("json"),
        )
    }

    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            endless: false,
        }
    }

    /// `status` with a body that never ends.
    pub fn endless(status: u16) -> Answer {
        Answer {
            endless: true,
            ..Answer::bytes(status, "text/html", Vec::new())
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Script = dyn Fn(&str, &str) -> Answer + Send + Sync;

pub struct ScriptedRegistry {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Each request's method and path, in order.
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedRegistry {
    /// Answers each request with `script(method, path)`.
    pub fn start(
        script: impl Fn(&str, &str) -> Answer + Send + Sync + 'static,
    ) -> ScriptedRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("bound").port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stopped, seen) = (stop.clone(), requests.clone());
        let script: Arc<Script> = Arc::new(script);
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(client) = client {
                    let _ = answer(client, &*script, &seen);
                }
            }
        });
        ScriptedRegistry {
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

fn answer(client: TcpStream, script: &Script, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    seen.lock()
        .expect("not poisoned")
        .push(format!("{method} {path}"));
    let a = script(method, path);
    let length = if a.endless { 1 << 40 } else { a.body.len() };
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {length}\r\nConnection: close\r\n",
        a.status
    );
    for (name, value) in &a.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut client = client;
    client.write_all(out.as_bytes())?;
    if a.endless {
        // Until the client hangs up: then the write fails.
        let block = vec![b'x'; 64 << 10];
        loop {
            client.write_all(&block)?;
        }
    }
    if method != "HEAD" {
        client.write_all(&a.body)?;
    }
    client.flush()
}

impl Drop for ScriptedRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
