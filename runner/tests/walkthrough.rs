//! The walkthrough of ../shared/seed/understanding-image-layers.md with
//! strata in place of docker: pull the base image (from a local registry,
//! as the guide's `docker run ubuntu` pulls it from Docker Hub), build on
//! it by hand in a container, commit it, commit an app on top, and run it.
//! Once on busybox (offline, a fake `node`), once on Debian with the real
//! `apt install nodejs`.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::registry::Registry;
use common::session::Session;
use common::Strata;
use std::time::Duration;

/// A `node` good enough for the walkthrough on busybox: prints what
/// console.log is given, from `-e CODE` or from a file.
const FAKE_NODE: &str = r#"#!/bin/sh
if [ "$1" = -e ]; then src="$2"; else src=$(cat "$1"); fi
echo "$src" | sed -n "s/.*console.log(['\"]\(.*\)['\"]).*/\1/p"
"#;

fn import_debian(s: &Strata) {
    let tar = std::env::var("STRATA_TEST_DEBIAN_TAR")
        .expect("STRATA_TEST_DEBIAN_TAR must name the Debian rootfs tarball: scripts/test sets it (scripts/debian-rootfs builds it)");
    s.run(&[
        "import",
        "-c",
        "CMD [\"/bin/bash\"]",
        &tar,
        "debian:bookworm",
    ])
    .ok();
}

/// Pushes `image` of `publisher` into `registry` as `name`; gives the
/// full name another store pulls.
fn publish(publisher: &Strata, image: &str, registry: &Registry, name: &str) -> String {
    let full = format!("{}/{name}", registry.host());
    publisher.run(&["tag", image, &full]).ok();
    publisher.run(&["push", "-q", &full]).ok();
    full
}

/// Runs the walkthrough on `base`, which the store has not got: the first
/// `run` pulls it. `install` is what step 3 types in the container to get
/// node.
fn walkthrough(s: &Strata, base: &str, shell: &str, install: &str, install_time: Duration) {
    // Create a base image: an interactive container, changed by hand.
    let mut base_container =
        Session::start(s.cmd(&["run", "--name=base-container", "-i", base, shell]));
    base_container.send(install);
    base_container.send("node -e 'console.log(\"Hello world!\")'");
    base_container.wait_for("Hello world!", install_time);
    let pulled = base_container.output();
    assert!(
        pulled.starts_with(&format!("Unable to find image '{base}' locally\n"))
            && pulled.contains(&format!("Status: Downloaded newer image for {base}\n")),
        "{pulled}"
    );

    // Commit from "another terminal" while the container still runs.
    let id = s
        .run(&[
            "container",
            "commit",
            "-m",
            "Add node",
            "base-container",
            "node-base",
        ])
        .ok()
        .stdout;
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "{id}"
    );
    let history = s.run(&["image", "history", "node-base"]).ok().stdout;
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("IMAGE          CREATED"), "{history}");
    assert!(lines[1].starts_with(&id.trim()[7..19]), "{history}");
    assert!(
        lines[1].contains(&format!("{shell}   ")) && lines[1].trim_end().ends_with("Add node"),
        "{history}"
    );

    let again = s
        .run(&[
            "run",
            "node-base",
            "node",
            "-e",
            "console.log('Hello again')",
        ])
        .ok()
        .stdout;
    assert_eq!(again.trim(), "Hello again");
    assert_eq!(
        s.run(&["rm", "-f", "base-container"]).ok().stdout.trim(),
        "base-container"
    );
    assert_eq!(base_container.finish(), 137);

    // Build an app image on top.
    let mut app = Session::start(s.cmd(&["run", "--name=app-container", "-i", "node-base", shell]));
    app.send("echo 'console.log(\"Hello from an app\")' > app.js");
    app.send("node app.js");
    app.wait_for("Hello from an app", Duration::from_secs(30));
    s.run(&[
        "container",
        "commit",
        "-c",
        "CMD node app.js",
        "-m",
        "Add app",
        "app-container",
        "sample-app",
    ])
    .ok();
    let history = s.run(&["image", "history", "sample-app"]).ok().stdout;
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[1].contains("   33B       Add app"), "{history}");
    assert!(lines[2].trim_end().ends_with("Add node"), "{history}");
    let out = s.run(&["run", "sample-app"]).ok().stdout;
    assert_eq!(out.trim(), "Hello from an app");
    s.run(&["rm", "-f", "app-container"]).ok();
    app.finish();
    // Only the two `run` containers without --rm remain, both exited.
    let ps = s.run(&["ps", "-q"]).ok().stdout;
    assert_eq!(ps, "", "nothing runs any more");
    s.run(&["verify"]).ok();
}

#[test]
fn the_walkthrough_works_on_busybox() {
    let registry = Registry::start();
    let base = publish(
        &Strata::with_busybox(),
        "busybox",
        &registry,
        "busybox:latest",
    );
    let s = Strata::new();
    let install = format!(
        "mkdir -p /usr/local/bin && cat > /usr/local/bin/node <<'EOF'\n{FAKE_NODE}EOF\nchmod +x /usr/local/bin/node"
    );
    walkthrough(&s, &base, "sh", &install, Duration::from_secs(30));
}

#[test]
fn the_walkthrough_works_on_debian_with_apt() {
    common::privileges::require_root_and_fuse();
    let registry = Registry::start();
    let publisher = Strata::new();
    import_debian(&publisher);
    let base = publish(&publisher, "debian:bookworm", &registry, "debian:bookworm");
    drop(publisher);
    let s = Strata::new();
    walkthrough(
        &s,
        &base,
        "/bin/bash",
        "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs",
        Duration::from_secs(900),
    );
}
