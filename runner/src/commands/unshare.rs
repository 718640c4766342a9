//! `strata unshare [CMD...]`: a shell (or CMD) in strata's user and mount
//! namespaces, like `podman unshare`.

use anyhow::Result;

pub fn run(command: Vec<String>) -> Result<i32> {
    let args = if command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        command
    };
    crate::container::unshare(&args)
}
