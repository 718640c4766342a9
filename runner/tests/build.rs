//! `strata build` end to end on a busybox image: the instructions, the
//! context and `.dockerignore`, multi-stage builds, the cache, and what a
//! build refuses (a context that links out of itself included).

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{Strata, TarMaker};
use std::path::{Path, PathBuf};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_build_is_the_first_command_a_new_store_may_get() {
    let s = Strata::new();
    let ctx = context(&s, "FROM scratch\nCOPY src /src\n");
    assert!(!s.root().exists());
    s.run(&["build", "-q", "-t", "first", ctx.to_str().unwrap()])
        .ok();
    assert_eq!(
        s.run(&["images", "--format", "{{.Repository}}"])
            .ok()
            .stdout,
        "first\n"
    );
}

/// A context with sources, a `.dockerignore` and a gzipped tar for ADD.
fn context(s: &Strata, dockerfile: &str) -> PathBuf {
    let ctx = s.path("ctx");
    write(&ctx.join("Dockerfile"), dockerfile);
    write(&ctx.join("src/a.txt"), "a\n");
    write(&ctx.join("src/sub/b.txt"), "b\n");
    write(&ctx.join("src/debug.log"), "left out\n");
    write(&ctx.join("notes/one.md"), "1\n");
    write(&ctx.join("notes/two.md"), "2\n");
    write(&ctx.join(".dockerignore"), "**/*.log\n");
    let tar = TarMaker::new()
        .dir("pkg")
        .file("pkg/inside", b"unpacked\n")
        .bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    std::fs::write(ctx.join("pkg.tar.gz"), gz.finish().unwrap()).unwrap();
    ctx
}

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS builder
ARG WHO=nobody-said
RUN echo "built for $WHO" > /built.txt

FROM ${BASE}
ARG BASE
ARG WHO
LABEL org.example.base=$BASE
ENV APP=/app \
    MODE=test
WORKDIR $APP
RUN echo "run as $(id -u) in $(pwd) for $WHO, mode $MODE" > run.txt
COPY src/ ./src/
COPY src/a.txt /renamed.txt
COPY --chown=nobody:nogroup --chmod=600 src/a.txt /owned/
COPY notes/*.md /notes/
ADD pkg.tar.gz /opt/
COPY --from=builder /built.txt /from-builder.txt
EXPOSE 8080/tcp
USER nobody
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/run.txt"]
"#;

#[test]
fn a_dockerfile_builds_as_docker_builds_it_and_its_cache_holds() {
    let s = Strata::with_busybox();
    let ctx = context(&s, DOCKERFILE);
    let dir = ctx.to_str().unwrap();
    let built = s
        .run(&[
            "build",
            "-t",
            "app:1",
            "--build-arg",
            "WHO=tests",
            "--build-arg",
            "UNUSED=1",
            dir,
        ])
        .ok();
    assert!(
        built.stdout.contains("Step 1/20 : FROM $BASE AS builder"),
        "{}",
        built.stdout
    );
    assert!(
        built.stdout.contains("Successfully tagged app:1"),
        "{}",
        built.stdout
    );
    assert!(
        built
            .stderr
            .contains("build-args [UNUSED] were not consumed"),
        "{}",
        built.stderr
    );

    // The image runs its CMD through its ENTRYPOINT, as the user it names.
    let ran = s.run(&["run", "--rm", "app:1"]).ok();
    assert_eq!(ran.stdout, "run as 0 in /app for tests, mode test\n");
    let look = |script: &str| {
        s.run(&["run", "--rm", "-u", "0", "app:1", script])
            .ok()
            .stdout
    };
    assert_eq!(
        look("find /app/src | sort"),
        "/app/src\n/app/src/a.txt\n/app/src/sub\n/app/src/sub/b.txt\n"
    );
    assert_eq!(look("cat /renamed.txt"), "a\n");
    assert_eq!(
        look("stat -c '%U:%G %a' /owned /owned/a.txt"),
        "nobody:nogroup 755\nnobody:nogroup 600\n"
    );
    assert_eq!(look("ls /notes"), "one.md\ntwo.md\n");
    assert_eq!(look("cat /opt/pkg/inside"), "unpacked\n");
    assert_eq!(look("cat /from-builder.txt"), "built for tests\n");
    let inspect = |format: &str| {
        s.run(&["image", "inspect", "-f", format, "app:1"])
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(inspect("{{.Config.User}}"), "nobody");
    assert_eq!(inspect("{{.Config.WorkingDir}}"), "/app");
    assert_eq!(
        inspect("{{json .Config.Entrypoint}}"),
        r#"["/bin/sh","-c"]"#
    );
    assert_eq!(
        inspect("{{index .Config.Labels \"org.example.base\"}}"),
        "busybox"
    );
    assert!(inspect("{{json .Config.ExposedPorts}}").contains("8080/tcp"));
    assert!(
        !inspect("{{json .Config.Env}}").contains("WHO"),
        "a build arg stayed in the image's Env"
    );
    let history = s.run(&["history", "--no-trunc", "app:1"]).ok().stdout;
    assert!(
        history.contains("|2 BASE=busybox WHO=tests /bin/sh -c echo \"run as"),
        "{history}"
    );
    // The steps' images are the tagged image's parents, shown with -a
    // only; the first stage's result is dangling, as with docker's
    // classic builder.
    let images = s.run(&["images", "-q"]).ok().stdout;
    assert_eq!(images.lines().count(), 3, "{images}");
    assert_eq!(
        s.run(&["ps", "-aq"]).ok().stdout,
        "",
        "a step's container was left"
    );

    // Again: every step from the cache, the same image.
    let again = s
        .run(&[
            "build",
            "-q",
            "-t",
            "app:2",
            "--build-arg",
            "WHO=tests",
            dir,
        ])
        .ok();
    let id = |tag: &str| inspect_id(&s, tag);
    assert_eq!(again.stdout.trim(), id("app:1"));
    let verbose = s
        .run(&["build", "--build-arg", "WHO=tests", dir])
        .ok()
        .stdout;
    assert_eq!(verbose.matches("Using cache").count(), 18, "{verbose}");
    // A touched source keeps the cache; a changed one misses it from its
    // COPY on; another build arg misses it from the first RUN that sees it.
    let file = std::fs::File::options()
        .write(true)
        .open(ctx.join("src/a.txt"))
        .unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let touched = s
        .run(&["build", "-q", "--build-arg", "WHO=tests", dir])
        .ok();
    assert_eq!(touched.stdout.trim(), id("app:1"));
    write(&ctx.join("src/a.txt"), "changed\n");
    let changed = s
        .run(&["build", "-t", "app:3", "--build-arg", "WHO=tests", dir])
        .ok()
        .stdout;
    assert!(
        changed.contains("Step 11/20 : COPY src/ ./src/\n ---> Running in"),
        "{changed}"
    );
    assert_eq!(changed.matches("Using cache").count(), 8, "{changed}");
    assert_eq!(
        s.run(&["run", "--rm", "-u", "0", "app:3", "cat /renamed.txt"])
            .ok()
            .stdout,
        "changed\n"
    );
    let other = s
        .run(&["build", "--build-arg", "WHO=others", dir])
        .ok()
        .stdout;
    assert_eq!(other.matches("Using cache").count(), 6, "{other}");
    let none = s
        .run(&["build", "--no-cache", "--build-arg", "WHO=tests", dir])
        .ok()
        .stdout;
    assert!(!none.contains("Using cache"), "{none}");

    // --target stops at a stage; a Dockerfile on stdin has no context.
    let target = s
        .run(&["build", "-q", "--target", "builder", dir])
        .ok()
        .stdout;
    let shown = s
        .run(&["run", "--rm", target.trim(), "cat", "/built.txt"])
        .ok()
        .stdout;
    assert_eq!(shown, "built for nobody-said\n");
    let stdin = s
        .run_stdin(
            &["build", "-t", "piped", "-"],
            b"FROM busybox\nRUN echo piped > /p\n",
        )
        .ok();
    assert!(
        stdin.stdout.contains("Successfully tagged piped:latest"),
        "{}",
        stdin.stdout
    );
    // A tar on stdin is the context, its Dockerfile inside (gzip too).
    let context_tar = TarMaker::new()
        .file("Dockerfile", b"FROM busybox\nCOPY in-tar /t\n")
        .file("in-tar", b"from the tar\n")
        .bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &context_tar).unwrap();
    let from_tar = s
        .run_stdin(&["build", "-q", "-"], &gz.finish().unwrap())
        .ok();
    let shown = s
        .run(&["run", "--rm", from_tar.stdout.trim(), "cat", "/t"])
        .ok();
    assert_eq!(shown.stdout, "from the tar\n");
    // -f - reads the Dockerfile from stdin and keeps the context.
    let with_context = s
        .run_stdin(
            &["build", "-q", "-f", "-", dir],
            b"FROM busybox\nCOPY src/a.txt /a\n",
        )
        .ok();
    let copied = s
        .run(&["run", "--rm", with_context.stdout.trim(), "cat", "/a"])
        .ok();
    assert_eq!(copied.stdout, "changed\n");
    s.run(&["verify"]).ok();
}

fn inspect_id(s: &Strata, image: &str) -> String {
    s.run(&["image", "inspect", "-f", "{{.Id}}", image])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// A WORKDIR or COPY destination that is a link to a directory not made
/// yet makes the link's target, as docker's MkdirAll does (it failed with
/// "mkdir /w: File exists"); inside the image, never on the host.
#[test]
fn a_workdir_or_destination_through_a_dangling_link_makes_its_target() {
    let s = Strata::with_busybox();
    let ctx = context(
        &s,
        "FROM busybox\n\
         RUN ln -s /data/work /w && ln -s ../made /d\n\
         WORKDIR /w\n\
         COPY src/a.txt /d/\n\
         RUN test -d /data/work && test -f /made/a.txt && pwd\n",
    );
    let r = s
        .run(&["build", "-t", "linked", ctx.to_str().unwrap()])
        .ok();
    assert!(r.stdout.contains("/w\n"), "{}", r.stdout);
    assert!(!std::path::Path::new("/made").exists(), "made on the host");
}

#[test]
fn a_failing_step_or_a_bad_dockerfile_stops_the_build_and_says_why() {
    let s = Strata::with_busybox();
    let build = |dockerfile: &str| {
        let ctx = context(&s, dockerfile);
        s.run(&["build", "-t", "bad", ctx.to_str().unwrap()])
    };
    // docker's CLI exits with the step's code (the error's, on the
    // classic builder).
    let failed = build("FROM busybox\nRUN echo partial > /p; exit 3\n");
    assert_eq!(failed.code, 3, "{}", failed.stderr);
    assert!(
        failed.stderr.contains(
            "The command '/bin/sh -c echo partial > /p; exit 3' returned a non-zero code: 3"
        ),
        "{}",
        failed.stderr
    );
    assert_eq!(
        s.run(&["ps", "-aq"]).ok().stdout,
        "",
        "the failed step's container was left"
    );
    s.run(&["image", "inspect", "bad"])
        .refused_with("No such image: bad");

    build("FROM busybox\nFROB x\n").refused_with("line 2: unknown instruction: FROB");
    // A line of 300 KB quoted back whole made the error as long: one
    // line still, with both ends of what it quotes.
    let long = build(&format!("FROM busybox\nEXPOSE {}\n", "9".repeat(300_000)));
    assert_eq!(long.code, 125, "{}", long.stderr);
    assert_eq!(long.stderr.trim().lines().count(), 1);
    assert!(long.stderr.len() < 8192, "{} bytes", long.stderr.len());
    build("RUN true\n").refused_with("before the first FROM");
    build("FROM busybox\nCOPY ../outside /x\n")
        .refused_with("forbidden path outside the build context");
    build("FROM busybox\nCOPY missing /x\n").refused_with("file not found in build context");
    build("FROM busybox\nCOPY src/debug.log /x\n").refused_with("excluded by .dockerignore");
    build("FROM busybox\nCOPY notes/one.md notes/two.md /x\n")
        .refused_with("the destination must be a directory and end with a /");
    build("FROM busybox\nADD http://127.0.0.1:9/x /x\n")
        .refused_with("ADD failed: Get \"http://127.0.0.1:9/x\"");
    build("FROM busybox\nCOPY http://127.0.0.1:9/x /x\n")
        .refused_with("source can't be a URL for COPY");
    build("FROM busybox\nRUN --mount=type=cache,target=/c true\n")
        .refused_with("RUN --mount is not supported");
    build("FROM busybox\nCOPY --chown=nosuchuser src/a.txt /x\n")
        .refused_with("unable to find user nosuchuser");
    let ctx = context(&s, "FROM busybox\n");
    s.run(&["build", "--target", "nope", ctx.to_str().unwrap()])
        .refused_with("target stage \"nope\" could not be found");

    // A link in the context leads nowhere outside it: /etc/passwd is read
    // as the context's own etc/passwd, which is not there.
    let ctx = context(&s, "FROM busybox\nCOPY hostlink/passwd /stolen\n");
    std::os::unix::fs::symlink("/etc", ctx.join("hostlink")).unwrap();
    s.run(&["build", ctx.to_str().unwrap()])
        .refused_with("file not found in build context");
    let ctx = context(&s, "FROM busybox\nCOPY direct /stolen\n");
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("direct")).unwrap();
    s.run(&["build", ctx.to_str().unwrap()])
        .refused_with("file not found in build context");
    // Nor does the Dockerfile or .dockerignore: they are read inside the
    // context too, where the link (to a file beside the context, which
    // the build must not read) leads to nothing. The links go before the
    // next `context`, which would write through them.
    let outside = s.path("outside");
    write(&outside, "FROM busybox\n");
    let ctx = context(&s, "");
    std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
    std::os::unix::fs::symlink(&outside, ctx.join("Dockerfile")).unwrap();
    s.run(&["build", ctx.to_str().unwrap()])
        .refused_with("unable to read the Dockerfile");
    std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
    let ctx = context(&s, "FROM busybox\nCOPY src/debug.log /x\n");
    std::fs::remove_file(ctx.join(".dockerignore")).unwrap();
    let ignore_all = s.path("ignore-all");
    write(&ignore_all, "*\n");
    std::os::unix::fs::symlink(&ignore_all, ctx.join(".dockerignore")).unwrap();
    s.run(&["build", ctx.to_str().unwrap()])
        .refused_with("it is a link to nothing inside the build context");
    std::fs::remove_file(ctx.join(".dockerignore")).unwrap();
    assert_eq!(s.run(&["ps", "-aq"]).ok().stdout, "");
    s.run(&["verify"]).ok();
}

/// A base image's ONBUILD triggers come from wherever the image came
/// from: FROM, MAINTAINER and ONBUILD among them are refused as docker
/// refuses them (a FROM panicked the build).
#[test]
fn a_base_images_forbidden_trigger_is_refused() {
    use sha2::Digest as _;
    let s = Strata::with_busybox();
    let layer = TarMaker::new().file("f", b"f\n").bytes();
    let diff_id = format!("sha256:{:x}", sha2::Sha256::digest(&layer));
    for trigger in ["FROM busybox", "MAINTAINER someone", "ONBUILD RUN true"] {
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"OnBuild": [trigger]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        })
        .to_string();
        let config_name = format!("{:x}.json", sha2::Sha256::digest(config.as_bytes()));
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["triggered:1"],
            "Layers": ["layer.tar"],
        }])
        .to_string();
        let archive = TarMaker::new()
            .file(&config_name, config.as_bytes())
            .file("layer.tar", &layer)
            .file("manifest.json", manifest.as_bytes())
            .write(&s.path("triggered.tar"));
        s.run(&["load", "-i", archive.to_str().unwrap()]).ok();
        let ctx = context(&s, "FROM triggered:1\n");
        let keyword = trigger.split(' ').next().unwrap();
        let says = match keyword {
            "ONBUILD" => "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string(),
            _ => format!("{keyword} isn't allowed as an ONBUILD trigger"),
        };
        s.run(&["build", ctx.to_str().unwrap()]).refused_with(&says);
    }
}

/// Serves `body` at every path but `/missing` (404) on 127.0.0.1, with a
/// Last-Modified; returns the port. The thread ends with the test.
fn serve(body: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let missing = String::from_utf8_lossy(&request[..n]).starts_with("GET /missing");
            let head = match missing {
                true => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                false => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
            };
            let _ = stream.write_all(head.as_bytes());
            if !missing {
                let _ = stream.write_all(body);
            }
        }
    });
    port
}

#[test]
fn add_downloads_a_url_as_docker_does() {
    let s = Strata::with_busybox();
    let port = serve(b"downloaded\n");
    let ctx = context(
        &s,
        &format!("FROM busybox\nADD http://127.0.0.1:{port}/files/tool.sh /opt/\nADD http://127.0.0.1:{port}/other /named\n"),
    );
    s.run(&["build", "-t", "fetched", ctx.to_str().unwrap()])
        .ok();
    let shown = s
        .run(&[
            "run",
            "--rm",
            "fetched",
            "sh",
            "-c",
            "cat /opt/tool.sh /named; stat -c '%a %u %Y' /opt/tool.sh",
        ])
        .ok()
        .stdout;
    assert_eq!(shown, "downloaded\ndownloaded\n600 0 784111777\n");
    // Downloaded again each build, and the same bytes keep the cache.
    let again = s.run(&["build", ctx.to_str().unwrap()]).ok().stdout;
    assert_eq!(again.matches("Using cache").count(), 2, "{again}");
    let ctx = context(
        &s,
        &format!("FROM busybox\nADD http://127.0.0.1:{port}/missing /x\n"),
    );
    s.run(&["build", ctx.to_str().unwrap()])
        .refused_with("status 404");
}

/// A loop device over a file of ours, detached when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

#[test]
fn a_device_node_in_the_base_image_is_never_read_on_the_host() {
    let s = Strata::with_busybox();
    // What only a host device holds: an account the image lacks.
    let backing = s.path("accounts.img");
    let mut bytes = b"evil:x:4242:4343::/:/bin/sh\n".to_vec();
    bytes.resize(64 * 1024, b'\n');
    std::fs::write(&backing, bytes).unwrap();
    let out = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let device = Loop(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let rdev = std::os::unix::fs::MetadataExt::rdev(&std::fs::metadata(&device.0).unwrap());
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    // An image whose /etc/passwd is that device; its COPY --chown must
    // not read it (the copy runs as host root, outside the container's
    // device cgroup): the user is unknown, as the image's files say.
    let ctx = context(
        &s,
        &format!("FROM busybox\nRUN rm /etc/passwd && mknod /etc/passwd b {major} {minor}\nCOPY --chown=evil src/a.txt /x\n"),
    );
    s.run(&["build", ctx.to_str().unwrap()])
        .refused_with("unable to find user evil");
    drop(device);
    assert_eq!(s.run(&["ps", "-aq"]).ok().stdout, "");
}

#[test]
fn what_steps_write_under_a_volume_stays_in_the_image() {
    let s = Strata::with_busybox();
    let ctx = context(
        &s,
        "FROM busybox\nVOLUME /data\nCOPY src/a.txt /data/\nRUN echo run > /data/r\n",
    );
    s.run(&["build", "-t", "vol", ctx.to_str().unwrap()]).ok();
    let shown = s
        .run(&["run", "--rm", "vol", "cat", "/data/a.txt", "/data/r"])
        .ok();
    assert_eq!(shown.stdout, "a\nrun\n");
    assert_eq!(
        s.run(&["volume", "ls", "-q"]).ok().stdout,
        "",
        "a step's volume was left"
    );
}

/// A build removes the step containers of builds that died, found by the
/// label it gives them; an image carrying that label (an untrusted one,
/// or a commit of a step kept with --rm=false) made every container run
/// from it a step container of a dead build, removed with its volumes
/// by the next build of anything.
#[test]
fn a_containers_image_cannot_make_it_a_step_of_a_dead_build() {
    let s = Strata::with_busybox();
    let marked = s.path("marked");
    write(
        &marked.join("Dockerfile"),
        "FROM busybox\nLABEL org.strata.build-step=0\nVOLUME /data\n",
    );
    s.run(&["build", "-q", "-t", "marked", marked.to_str().unwrap()])
        .ok();
    s.run(&["run", "-d", "--name", "victim", "marked", "sleep", "600"])
        .ok();
    let other = s.path("other");
    write(&other.join("Dockerfile"), "FROM busybox\nENV X=1\n");
    s.run(&["build", "-q", other.to_str().unwrap()]).ok();
    let listed = s.run(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout;
    s.run(&["rm", "-f", "-v", "victim"]).ok();
    assert_eq!(
        listed.trim(),
        "victim",
        "the next build removed the container"
    );
}

/// A build arg's value reaches its RUN whatever bytes it holds, a line
/// break and a final carriage return included (docker's env file format
/// holds neither: such values went on the step's command line, which
/// every local user can read).
#[test]
fn a_build_arg_with_line_breaks_reaches_its_run() {
    let s = Strata::with_busybox();
    let ctx = s.path("multiline");
    write(
        &ctx.join("Dockerfile"),
        "FROM busybox\nARG TOKEN\nRUN printf %s \"$TOKEN\" > /token\n",
    );
    let arg = "TOKEN=first line\nsecond=line\r";
    let dir = ctx.to_str().unwrap();
    s.run(&["build", "-q", "-t", "ml", "--build-arg", arg, dir])
        .ok();
    let token = s.run(&["run", "--rm", "ml", "cat", "/token"]).ok().stdout;
    assert_eq!(token, "first line\nsecond=line\r");
}

#[test]
fn links_ignores_stages_shells_and_workdirs_follow_dockers_rules() {
    let s = Strata::with_busybox();
    let ctx = context(
        &s,
        r#"ARG SRC=maker
FROM busybox AS maker
RUN echo target > /target && ln -s /target /lnk
SHELL ["/bin/sh", "-xc"]
FROM busybox
ARG SRC
WORKDIR /made/here
COPY --from=${SRC} /lnk /got
COPY notes /n/
ADD fifo /from-fifo
"#,
    );
    write(
        &ctx.join(".dockerignore"),
        "**/*.log\n.env\nnotes\n!notes/one.md\n",
    );
    write(&ctx.join(".env"), "SECRET=1\n");
    std::os::unix::fs::symlink(".env", ctx.join("alias")).unwrap();
    nix::unistd::mkfifo(
        &ctx.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let dir = ctx.to_str().unwrap();
    s.run(&["build", "-t", "rules", dir]).ok();
    let look = |script: &str| {
        s.run(&["run", "--rm", "rules", "sh", "-c", script])
            .ok()
            .stdout
    };
    // A link COPY --from names is followed in the image it comes from; a
    // stage named by an ARG is found; a ! rule brings a file back from an
    // ignored directory; a fifo is not waited on.
    assert_eq!(
        look("cat /got; ls /n; test -e /from-fifo || echo no-fifo"),
        "target\none.md\nno-fifo\n"
    );
    // WORKDIR made its directory in a layer of its own.
    let layers = |image: &str| {
        s.run(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", image])
            .ok()
            .stdout
    };
    let base: usize = layers("busybox").trim().parse().unwrap();
    // busybox's, WORKDIR's and the two copies' (the fifo's ADD changed
    // nothing).
    assert_eq!(layers("rules").trim().parse::<usize>().unwrap(), base + 3);
    // SHELL is kept in the image, and a build from it uses it.
    let maker = s
        .run(&["build", "-q", "--target", "maker", dir])
        .ok()
        .stdout
        .trim()
        .to_string();
    let shell = s
        .run(&["image", "inspect", "-f", "{{json .Config.Shell}}", &maker])
        .ok()
        .stdout;
    assert_eq!(shell, "[\"/bin/sh\",\"-xc\"]\n");
    let child = context(&s, &format!("FROM {maker}\nRUN true\n"));
    let built = s.run(&["build", child.to_str().unwrap()]).ok();
    assert!(built.stderr.contains("+ true"), "{}", built.stderr);
    // An ignored file is not reached through a link to it either.
    let ctx = context(&s, "FROM busybox\nCOPY alias /a\n");
    write(&ctx.join(".dockerignore"), ".env\n");
    s.run(&["build", ctx.to_str().unwrap()])
        .refused_with("excluded by .dockerignore");
}

#[test]
fn a_killed_builds_step_container_goes_with_the_next_build() {
    let s = Strata::with_busybox();
    let ctx = context(&s, "FROM busybox\nRUN touch /started && sleep 600\n");
    let mut build = s.cmd(&["build", ctx.to_str().unwrap()]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.run(&["ps", "-q"]).ok().stdout.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    build.kill().unwrap();
    build.wait().unwrap();
    // Left running, as docker's classic builder leaves it...
    assert_eq!(s.run(&["ps", "-q"]).ok().stdout.lines().count(), 1);
    // ...until the next build, which removes it.
    let ctx = context(&s, "FROM busybox\nRUN true\n");
    s.run(&["build", ctx.to_str().unwrap()]).ok();
    assert_eq!(
        s.run(&["ps", "-aq"]).ok().stdout,
        "",
        "the killed build's step container stayed"
    );
    s.run(&["verify"]).ok();
}
