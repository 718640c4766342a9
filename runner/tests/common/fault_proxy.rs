//! A TCP proxy on 127.0.0.1 in front of a test registry that cuts one
//! PATCH request short, as a network that drops a connection does, and
//! counts what the client sent: the PATCH requests and their body bytes.
//!
//! Requests are read as HTTP/1.1 with a `Content-Length` (what strata's
//! client sends); the answers are copied back untouched, or with a header
//! added to each `202 Accepted` (`with_answer_header`) or text replaced in
//! its head (`with_answer_rewrite`). Threads, not
//! processes: they end when their connections close, and the listener's
//! when the proxy is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Which PATCH to cut, and how; `..Cut::default()` for what is left as
/// it is (nothing forwarded or swallowed, no outage, no hold).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cut {
    /// The nth PATCH request through the proxy (1 is the first).
    pub nth: usize,
    /// Body bytes passed on to the registry before the cut.
    pub forward: u64,
    /// Body bytes then read from the client and dropped before the cut.
    pub swallow: u64,
    /// After the cut, close every connection at once (the registry is
    /// unreachable) until `heal`.
    pub then_down: bool,
    /// Before the cut, hold the request (read no more of it) until
    /// `heal`: the client waits in the middle of its PATCH.
    pub hold: bool,
}

#[derive(Default)]
struct State {
    cut: Mutex<Option<Cut>>,
    down: AtomicBool,
    patch_bytes: AtomicU64,
    patches: AtomicUsize,
    cuts: AtomicUsize,
    stop: AtomicBool,
    /// A header line (`Name: value\r\n`) added to every 202 answer.
    answer_header: Mutex<Option<String>>,
    /// Text replaced, and its replacement, in every 202 answer's head.
    answer_rewrite: Mutex<Option<(String, String)>>,
}

pub struct FaultProxy {
    pub port: u16,
    state: Arc<State>,
    listener: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1, passing connections to
    /// `127.0.0.1:upstream`.
    pub fn start(upstream: u16, cut: Option<Cut>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            cut: Mutex::new(cut),
            ..State::default()
        });
        let shared = state.clone();
        let listener = std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if shared.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let state = shared.clone();
                std::thread::spawn(move || relay(client, server, &state));
            }
        });
        FaultProxy {
            port,
            state,
            listener: Some(listener),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Body bytes of the PATCH requests the client sent, including those
    /// the cut dropped.
    pub fn patch_bytes(&self) -> u64 {
        self.state.patch_bytes.load(Ordering::SeqCst)
    }

    /// PATCH requests the client began, the cut one included.
    pub fn patches(&self) -> usize {
        self.state.patches.load(Ordering::SeqCst)
    }

    /// How many requests were cut or are held (at most one).
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Adds `name: value` to every `202 Accepted` answer (an upload's
    /// POST and PATCH), as a registry with that header would send it.
    pub fn with_answer_header(self, name: &str, value: &str) -> FaultProxy {
        *self.state.answer_header.lock().unwrap() = Some(format!("{name}: {value}\r\n"));
        self
    }

    /// Replaces `from` with `to` in the head of every `202 Accepted`
    /// answer: a `Location` naming another place, for example.
    pub fn with_answer_rewrite(self, from: &str, to: &str) -> FaultProxy {
        *self.state.answer_rewrite.lock().unwrap() = Some((from.to_string(), to.to_string()));
        self
    }

    /// Reachable again, with no cut to come.
    pub fn heal(&self) {
        *self.state.cut.lock().unwrap() = None;
        self.state.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
    }
}

/// Copies answers back on a thread of their own; reads requests here,
/// cutting the one `state` names.
fn relay(mut client: TcpStream, mut server: TcpStream, state: &State) {
    let (Ok(mut answers_from), Ok(mut answers_to)) = (server.try_clone(), client.try_clone())
    else {
        return;
    };
    let header = state.answer_header.lock().unwrap().clone();
    let rewrite = state.answer_rewrite.lock().unwrap().clone();
    let answers = std::thread::spawn(move || {
        let _ = copy_answers(
            &mut answers_from,
            &mut answers_to,
            header.as_deref(),
            rewrite.as_ref(),
        );
        let _ = answers_to.shutdown(Shutdown::Write);
    });
    let _ = requests(&mut client, &mut server, state);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = answers.join();
}

/// Copies the registry's answers, adding `header` after a 202's status
/// line and applying `rewrite` to its head. Each answer starts a read: the
/// client sends one request at a time and waits for its answer.
fn copy_answers(
    from: &mut TcpStream,
    to: &mut TcpStream,
    header: Option<&str>,
    rewrite: Option<&(String, String)>,
) -> std::io::Result<()> {
    const STATUS: &[u8] = b"HTTP/1.1 202 Accepted\r\n";
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if let (Some((old, new)), true) = (rewrite, buf[..n].starts_with(STATUS)) {
            let text = String::from_utf8_lossy(&buf[..n]);
            let head_end = text.find("\r\n\r\n").unwrap_or(text.len());
            let rewritten = format!(
                "{}{}",
                text[..head_end].replace(old.as_str(), new),
                &text[head_end..]
            );
            n = rewritten.len();
            buf[..n].copy_from_slice(rewritten.as_bytes());
        }
        match header {
            Some(header) if buf[..n].starts_with(STATUS) => {
                to.write_all(STATUS)?;
                to.write_all(header.as_bytes())?;
                to.write_all(&buf[STATUS.len()..n])?;
            }
            _ => to.write_all(&buf[..n])?,
        }
    }
}

/// Passes requests on until the client closes or the cut comes.
fn requests(client: &mut TcpStream, server: &mut TcpStream, state: &State) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut read_more = |buf: &mut Vec<u8>| -> std::io::Result<bool> {
        let mut chunk = [0u8; 64 << 10];
        let n = client.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    loop {
        // The head is passed on as it comes (a TLS hello, which has no
        // end of head, too); the body waits for the decision on the cut.
        let mut head: Vec<u8> = Vec::new();
        loop {
            if state.down.load(Ordering::SeqCst) {
                return Ok(());
            }
            let scan_from = head.len().saturating_sub(3);
            head.extend_from_slice(&buf);
            let end = head[scan_from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|at| scan_from + at + 4);
            let from_buf = match end {
                Some(end) => buf.len() - (head.len() - end),
                None => buf.len(),
            };
            head.truncate(head.len() - (buf.len() - from_buf));
            server.write_all(&buf[..from_buf])?;
            buf.drain(..from_buf);
            if end.is_some() {
                break;
            }
            if !read_more(&mut buf)? {
                return Ok(());
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length = content_length(&head);
        let mut cut = None;
        let patch = head.starts_with("PATCH ");
        if patch {
            let n = state.patches.fetch_add(1, Ordering::SeqCst) + 1;
            cut = state.cut.lock().unwrap().filter(|c| c.nth == n);
        }
        let forward = cut.map_or(length, |c| c.forward.min(length));
        let stop_at = cut.map_or(length, |c| (c.forward + c.swallow).min(length));
        let mut seen = 0;
        while seen < stop_at {
            if buf.is_empty() && !read_more(&mut buf)? {
                return Ok(());
            }
            let take = (buf.len() as u64).min(stop_at - seen) as usize;
            let passed = (take as u64).min(forward.saturating_sub(seen)) as usize;
            server.write_all(&buf[..passed])?;
            buf.drain(..take);
            seen += take as u64;
            if patch {
                state.patch_bytes.fetch_add(take as u64, Ordering::SeqCst);
            }
        }
        if let Some(cut) = cut {
            state.cuts.fetch_add(1, Ordering::SeqCst);
            *state.cut.lock().unwrap() = None;
            // `heal` clears `down`; until then nothing moves here.
            if cut.hold {
                state.down.store(true, Ordering::SeqCst);
                while state.down.load(Ordering::SeqCst) && !state.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            if cut.then_down {
                state.down.store(true, Ordering::SeqCst);
            }
            return Ok(());
        }
    }
}

fn content_length(head: &str) -> u64 {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}
