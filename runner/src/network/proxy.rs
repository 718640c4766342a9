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
use std::sync::{Arc, Mutex};
use std::thread;

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

/// Starts the thread that serves `listener`, forwarding to `target`.
pub fn serve(listener: Listener, target: SocketAddr) -> io::Result<()> {
    match listener {
        Listener::Tcp(listener) => thread::Builder::new()
            .name("proxy-tcp".into())
            .spawn(move || serve_tcp(listener, target))
            .map(drop),
        Listener::Udp(socket) => thread::Builder::new()
            .name("proxy-udp".into())
            .spawn(move || serve_udp(socket, target))
            .map(drop),
    }
}

fn serve_tcp(listener: TcpListener, target: SocketAddr) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let _ = thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || relay_tcp(client, target));
    }
}

/// One connection: a thread per direction; each passes the end of its
/// stream on as a half-close, so request/response protocols finish.
fn relay_tcp(client: TcpStream, target: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(target) else {
        // Nothing listens in the container: the client sees a reset.
        return;
    };
    let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = thread::Builder::new()
        .name("proxy-conn".into())
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

/// Datagrams: one socket towards the container per client address, and a
/// thread per client that sends the container's answers back to it.
fn serve_udp(socket: UdpSocket, target: SocketAddr) {
    let socket = Arc::new(socket);
    let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((len, client)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let upstream = {
            let mut clients = clients
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match clients.get(&client) {
                Some(upstream) => Some(upstream.clone()),
                None => connect_udp(target).ok().map(|upstream| {
                    let upstream = Arc::new(upstream);
                    clients.insert(client, upstream.clone());
                    let (host, answers) = (socket.clone(), upstream.clone());
                    let _ = thread::Builder::new()
                        .name("proxy-udp".into())
                        .spawn(move || answer_udp(&answers, &host, client));
                    upstream
                }),
            }
        };
        if let Some(upstream) = upstream {
            let _ = upstream.send(&buf[..len]);
        }
    }
}

fn connect_udp(target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(target)?;
    Ok(socket)
}

fn answer_udp(upstream: &UdpSocket, host: &UdpSocket, client: SocketAddr) {
    let mut buf = vec![0u8; 65536];
    while let Ok(len) = upstream.recv(&mut buf) {
        let _ = host.send_to(&buf[..len], client);
    }
}
