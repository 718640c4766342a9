//! A detached container's input for `strata attach`: its monitor listens
//! on `<container dir>/attach.sock`, and what a client sends goes to the
//! container's stdin (the pty's master with a terminal, the pipe a `-di`
//! container reads without one) for as long as the client stays. Several
//! clients may be attached at once, as with docker; a client that leaves
//! closes nothing of the container's.

use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::Context as _;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// Serves attach clients on a thread of the monitor, writing what they
/// send to `input`. The socket goes when the returned guard drops.
pub fn serve(
    container_dir: &Path,
    input: BorrowedFd<'_>,
) -> anyhow::Result<super::monitor_socket::Guard> {
    let input: OwnedFd = input
        .try_clone_to_owned()
        .context("keep the container's input")?;
    let input = std::sync::Arc::new(std::fs::File::from(input));
    let (listener, guard) = super::monitor_socket::listen(container_dir, SOCKET)?;
    std::thread::Builder::new()
        .name("attach".into())
        .spawn(move || {
            for client in super::monitor_socket::clients(&listener) {
                let input = input.clone();
                let _ = std::thread::Builder::new()
                    .name("attach-client".into())
                    .spawn(move || forward(client, &input));
            }
        })
        .context("start the attach thread")?;
    Ok(guard)
}

/// Copies one client's bytes to the container's input until either end
/// is gone.
fn forward(mut client: std::os::unix::net::UnixStream, mut input: &std::fs::File) {
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if input.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A client's connection to the container's input.
pub fn connect(container_dir: &Path) -> anyhow::Result<std::os::unix::net::UnixStream> {
    super::monitor_socket::connect(container_dir, SOCKET).context(
        "the container takes no input from attach: it was started attached, or its monitor is older",
    )
}
