//! Published ports of a bridge container: a userland proxy in the
//! monitor, as docker's `docker-proxy`. It listens on the host's address
//! and port and copies each connection (TCP) or each client's datagrams
//! (UDP) to the container's address. It works for 127.0.0.1 without
//! route_localnet or DNAT rules, lives exactly as long as the monitor (so
//! as long as the container), and leaves no rule behind. The container
//! sees connections come from the bridge's gateway.
//!
//! The sockets are bound before the container is released, so a port that
//! is taken fails the start, with docker's message.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use layerdb::PortBinding;

/// A bound host socket, before its thread starts.
pub enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds the host side of `port`; host port 0 takes any free one.
/// Returns the binding with the port the kernel gave.
pub fn bind(port: &PortBinding) -> anyhow::Result<(Listener, PortBinding)> {
    let ip: Ipv4Addr = if port.host_ip.is_empty() {
        Ipv4Addr::UNSPECIFIED
    } else {
        port.host_ip
            .parse()
            .with_context(|| format!("invalid host address {}", port.host_ip))?
    };
    let address = SocketAddr::from((ip, port.host_port));
    let taken = |err: io::Error| {
        anyhow::anyhow!(
            "driver failed programming external connectivity: Bind for {address} failed: port is already allocated ({err})"
        )
    };
    let (listener, local) = if port.protocol == "udp" {
        let socket = UdpSocket::bind(address).map_err(taken)?;
        let local = socket.local_addr()?;
        (Listener::Udp(socket), local)
    } else {
        let listener = TcpListener::bind(address).map_err(taken)?;
        let local = listener.local_addr()?;
        (Listener::Tcp(listener), local)
    };
    let mut bound = port.clone();
    bound.host_ip = ip.to_string();
    bound.host_port = local.port();
    Ok((listener, bound))
}

/// How many TCP connections, and how many UDP clients, the proxies of
/// one monitor serve at once. Each connection costs two threads and four
/// descriptors, each UDP client a thread and a socket: unbounded, a
/// container whose own pids were limited made its monitor hold 1,620
/// threads by connecting to its own port and never accepting, and a user
/// sending from fresh source ports left 2,015 threads for good, until
/// the descriptor table was full and `pause` failed. Past the bound, new
/// connections wait in the listen queue (a client waits, is not reset) and
/// new UDP clients' datagrams are dropped.
struct Bounds {
    tcp: Slots,
    udp: Slots,
}

/// A count of things in use, up to a bound.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    most: usize,
}

impl Slots {
    fn new(most: usize) -> Slots {
        Slots {
            used: Mutex::new(0),
            freed: Condvar::new(),
            most,
        }
    }

    /// Waits for a slot.
    fn take(&self) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= self.most {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
    }

    /// A slot if one is free now.
    fn try_take(&self) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let free = *used < self.most;
        if free {
            *used += 1;
        }
        free
    }

    fn give_back(&self) {
        *self.used.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.freed.notify_one();
    }
}

/// The bounds, from this process's descriptor limit: descriptors are
/// left for the monitor's own sockets (`pause`, `attach`).
fn bounds() -> &'static Bounds {
    static BOUNDS: OnceLock<Bounds> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        use nix::sys::resource::{getrlimit, Resource};
        let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
        // Four descriptors per connection (and one waiting for a slot)
        // and one per UDP client, with 128 left for the monitor's own
        // and its listeners.
        let each = (limit.saturating_sub(128) / 5).clamp(16, 256) as usize;
        Bounds {
            tcp: Slots::new(each),
            udp: Slots::new(each),
        }
    })
}

/// What a relay thread needs of a stack.
const STACK: usize = 128 << 10;

/// A TCP connection to the container that has not come up in this long
/// is given up (a container not accepting held each for two minutes of
/// SYN retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A UDP client the container has not answered for this long is
/// forgotten, its socket and thread freed (docker-proxy's 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);

/// A failing accept or receive (out of descriptors) is retried after
/// this long, not at once.
const RETRY: Duration = Duration::from_millis(100);

pub fn serve(listener: Listener, target: SocketAddr) -> io::Result<()> {
    bounds();
    match listener {
        Listener::Tcp(listener) => thread::Builder::new()
            .name("proxy-tcp".into())
            .spawn(move || serve_tcp(listener, target, &bounds().tcp))
            .map(drop),
        Listener::Udp(socket) => thread::Builder::new()
            .name("proxy-udp".into())
            .spawn(move || serve_udp(socket, target))
            .map(drop),
    }
}

fn serve_tcp(listener: TcpListener, target: SocketAddr, slots: &'static Slots) {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(_) => {
                thread::sleep(RETRY);
                continue;
            }
        };
        // A slot once there is a connection (an idle port holds none);
        // while none is free, this one waits and the next ones queue.
        slots.take();
        // A client gone without a word frees its slot once keepalive
        // notices, not never.
        keep_alive(&client);
        let spawned = thread::Builder::new()
            .name("proxy-conn".into())
            .stack_size(STACK)
            .spawn(move || {
                relay_tcp(client, target);
                slots.give_back();
            });
        if spawned.is_err() {
            slots.give_back();
        }
    }
}

/// TCP keepalive on `stream`: probes after a minute of silence, every 10
/// s, 6 unanswered end it.
fn keep_alive(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &60);
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &10);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &6);
}

fn relay_tcp(client: TcpStream, target: SocketAddr) {
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        return;
    };
    let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = thread::Builder::new()
        .name("proxy-conn".into())
        .stack_size(STACK)
        .spawn(move || copy_then_close(upstream, client));
    copy_then_close(client_read, upstream_write);
    if let Ok(back) = back {
        let _ = back.join();
    }
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

type UdpClients = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

fn serve_udp(socket: UdpSocket, target: SocketAddr) {
    let socket = Arc::new(socket);
    let clients: UdpClients = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (len, client) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(_) => {
                thread::sleep(RETRY);
                continue;
            }
        };
        let upstream = {
            let mut known = clients.lock().unwrap_or_else(|p| p.into_inner());
            match known.get(&client) {
                Some(upstream) => Some(upstream.clone()),
                None if bounds().udp.try_take() => {
                    match start_udp_client(&socket, &clients, client, target) {
                        Some(upstream) => {
                            known.insert(client, upstream.clone());
                            Some(upstream)
                        }
                        None => {
                            bounds().udp.give_back();
                            None
                        }
                    }
                }
                None => None,
            }
        };
        if let Some(upstream) = upstream {
            let _ = upstream.send(&buf[..len]);
        }
    }
}

/// A socket to the container for a new client, and the thread that
/// carries its answers back until the client has been idle [`UDP_IDLE`].
fn start_udp_client(
    host: &Arc<UdpSocket>,
    clients: &UdpClients,
    client: SocketAddr,
    target: SocketAddr,
) -> Option<Arc<UdpSocket>> {
    let upstream = connect_udp(target).ok()?;
    upstream.set_read_timeout(Some(UDP_IDLE)).ok()?;
    let upstream = Arc::new(upstream);
    let (host, answers, clients) = (host.clone(), upstream.clone(), clients.clone());
    thread::Builder::new()
        .name("proxy-udp".into())
        .stack_size(STACK)
        .spawn(move || {
            answer_udp(&answers, &host, client);
            clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&client);
            bounds().udp.give_back();
        })
        .ok()?;
    Some(upstream)
}

fn connect_udp(target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(target)?;
    Ok(socket)
}

/// Carries the container's answers to `client` until none came for
/// [`UDP_IDLE`] (the read timeout) or the socket fails.
fn answer_udp(upstream: &UdpSocket, host: &UdpSocket, client: SocketAddr) {
    let mut buf = vec![0u8; 65536];
    while let Ok(len) = upstream.recv(&mut buf) {
        let _ = host.send_to(&buf[..len], client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container that never accepts: the proxy relays as many
    /// connections as it has slots, and the rest wait for one.
    #[test]
    fn tcp_connections_wait_for_a_slot() {
        let container = TcpListener::bind("127.0.0.1:0").unwrap();
        container.set_nonblocking(true).unwrap();
        let target = container.local_addr().unwrap();
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let published = proxy.local_addr().unwrap();
        let slots: &'static Slots = Box::leak(Box::new(Slots::new(4)));
        thread::spawn(move || serve_tcp(proxy, target, slots));
        let clients: Vec<TcpStream> = (0..20)
            .map(|_| TcpStream::connect(published).unwrap())
            .collect();
        let mut arrived = Vec::new();
        for _ in 0..40 {
            while let Ok((connection, _)) = container.accept() {
                arrived.push(connection);
            }
            thread::sleep(Duration::from_millis(25));
        }
        assert_eq!(arrived.len(), 4, "connections relayed at once");
        // One ends: the next waiting one is relayed.
        drop(clients);
        drop(arrived);
        let mut more = 0;
        for _ in 0..200 {
            if container.accept().is_ok() {
                more += 1;
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        assert_eq!(more, 1, "a freed slot serves the next connection");
    }
}
