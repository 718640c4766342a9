//! Registries end to end, against the real distribution registry (Debian's
//! `docker-registry`) on 127.0.0.1 at a free port, with skopeo as the
//! other client: images skopeo pushed are pulled and run by strata with
//! the ids skopeo sees; tampered blobs, unknown names, a registry that is
//! down and wrong passwords each cost one line and exit 125.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::registry::{checked_output, free_port, sha256_hex, Registry};
use common::token_server::{PasswordGrant, Secrets, TokenServer};
use common::{gzip, Run, Strata, TarMaker};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The canonical busybox layer tar, from `build-busybox-image` and `save`.
fn busybox_layer() -> Vec<u8> {
    let s = Strata::with_busybox();
    let out = s.path("saved");
    s.save_to_dir(&out, "busybox").ok();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    std::fs::read(out.join(manifest[0]["Layers"][0].as_str().unwrap())).unwrap()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An image config as another builder writes it: indented, keys in its
/// own order, fields strata does not model. Its sha256 is the image id.
fn foreign_config(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|_| serde_json::json!({"created": "2024-01-02T03:04:05Z", "created_by": "test"}))
        .collect();
    format!(
        "{{\n  \"rootfs\": {{\"type\": \"layers\", \"diff_ids\": {}}},\n  \"os\": \"linux\",\n  \"architecture\": \"{}\",\n  \"docker_version\": \"24.0.0-test\",\n  \"created\": \"2024-01-02T03:04:05.123456789Z\",\n  \"config\": {{\"Cmd\": [\"/bin/sh\"], \"Env\": [\"PATH=/bin\"], \"Labels\": {{\"made-by\": \"registry test\"}}}},\n  \"history\": {}\n}}\n",
        serde_json::to_string(&diff_ids).unwrap(),
        host_arch(),
        serde_json::to_string(&history).unwrap()
    )
    .into_bytes()
}

/// A docker-archive (what `docker save` writes) holding one image.
fn docker_archive(path: &Path, layers: &[Vec<u8>], config: &[u8]) -> PathBuf {
    let mut maker = TarMaker::new();
    let names: Vec<String> = (0..layers.len()).map(|i| format!("layer{i}.tar")).collect();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["image:latest"],
        "Layers": names,
    }]);
    maker = maker.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    maker = maker.file("config.json", config);
    for (name, layer) in names.iter().zip(layers) {
        maker = maker.file(name, layer);
    }
    maker.write(path)
}

/// A layer in another tool's tar form (not strata's canonical one): `./`
/// names and GNU tar's 10 KiB record padding.
fn hello_layer(text: &str) -> Vec<u8> {
    let mut tar = TarMaker::new()
        .dir("./greeting/")
        .file("./greeting/hello.txt", text.as_bytes())
        .bytes();
    tar.resize(tar.len().div_ceil(10240) * 10240, 0);
    tar
}

/// skopeo copies `name` out of its registry into an OCI layout, checking
/// every digest on the way; fails the test if it cannot.
fn skopeo_copies_out(name: &str) {
    let out = tempfile::tempdir().unwrap();
    checked_output(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:x", out.path().join("layout").display())),
        "skopeo copy",
    );
}

/// Pushes a one-layer image of `text` (another tool's archive, as
/// skopeo copies it) to `registry` as `name`; returns its config.
fn push_hello(registry: &Registry, text: &str, name: &str, skopeo_args: &[&str]) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let layers = [hello_layer(text)];
    let config = foreign_config(&layers);
    let archive = docker_archive(&work.path().join("image.tar"), &layers, &config);
    registry.push(&archive, name, skopeo_args);
    config
}

/// A registry holding busybox as another tool pushed it (`busybox:latest`),
/// and the image's config.
fn registry_with_busybox() -> (Registry, Vec<u8>) {
    let base = busybox_layer();
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let config = foreign_config(std::slice::from_ref(&base));
    let archive = docker_archive(&work.path().join("bb.tar"), &[base], &config);
    registry.push(&archive, "busybox:latest", &[]);
    (registry, config)
}

/// A store whose strata commands find no credentials but the test's own.
fn client_store() -> Strata {
    Strata::new()
}

/// A strata command that reads only the test's own credentials files
/// (docker's config in the store's `docker-config/`, podman's
/// `no-auth.json` beside it), its stdin empty.
fn strata_cmd(s: &Strata, args: &[&str]) -> Command {
    let mut command = s.cmd(args);
    command
        .env("DOCKER_CONFIG", s.path("docker-config"))
        .env("REGISTRY_AUTH_FILE", s.path("no-auth.json"))
        .stdin(Stdio::null());
    command
}

fn strata(s: &Strata, args: &[&str]) -> Run {
    strata_cmd(s, args).output().expect("strata runs").into()
}

/// `strata` with `input` on its stdin and `PATH` set to `path` (where a
/// credential helper may be), the test's own credentials files as above.
fn strata_fed(s: &Strata, args: &[&str], input: &str, path: &str) -> Run {
    use std::io::Write;
    let mut child = strata_cmd(s, args)
        .env("PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

/// A registry that wants `tester:right-pass`, holding a one-layer image
/// `name` of `text`; its host and the image's config.
fn private_registry(text: &str, name: &str) -> (Registry, String, Vec<u8>) {
    let registry = Registry::start_with(Some(("tester", "right-pass")));
    let host = registry.host();
    let config = push_hello(
        &registry,
        text,
        name,
        &["--dest-creds", "tester:right-pass"],
    );
    (registry, host, config)
}

/// `strata login -u tester --password-stdin host` with `password`.
fn login_as_tester(s: &Strata, host: &str, password: &str) -> Run {
    let args = ["login", "-u", "tester", "--password-stdin", host];
    let path = std::env::var("PATH").unwrap();
    strata_fed(s, &args, &format!("{password}\n"), &path)
}

fn one_line_125(r: &Run, what: &str) {
    assert_eq!(r.code, 125, "{what}: {}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{what}: {}", r.stderr);
}

/// `name`'s manifest as the registry serves it to skopeo.
fn raw_manifest(name: &str) -> Vec<u8> {
    checked_output(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{name}")),
        "skopeo inspect --raw",
    )
}

/// The digest of `name`'s manifest.
fn manifest_digest(name: &str) -> String {
    format!("sha256:{}", sha256_hex(&raw_manifest(name)))
}

/// A store holding busybox, tagged `name` too.
fn busybox_as(name: &str) -> Strata {
    let s = Strata::with_busybox();
    strata(&s, &["tag", "busybox", name]).ok();
    s
}

fn image_id(s: &Strata, name: &str) -> String {
    let out = strata(s, &["inspect", name]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn a_pulled_image_runs_and_keeps_the_id_skopeo_sees() {
    let (registry, config) = registry_with_busybox();

    let s = client_store();
    let name = format!("{}/busybox", registry.host());
    let r = strata(&s, &["pull", &name]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "latest: Pulling from busybox", "{}", r.stdout);
    assert!(r.stdout.contains(": Pull complete\n"), "{}", r.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Digest: sha256:") && l.len() == 79),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "Status: Downloaded newer image for {name}:latest\n"
        )),
        "{}",
        r.stdout
    );
    assert_eq!(lines.last().unwrap(), &format!("{name}:latest"));

    let served = registry.raw_config("busybox:latest", &[]);
    assert_eq!(served, config, "skopeo pushed the config bytes as given");
    assert_eq!(
        image_id(&s, &name),
        format!("sha256:{}", sha256_hex(&config))
    );

    let images = strata(&s, &["images"]).ok().stdout;
    assert!(
        images
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("latest")),
        "{images}"
    );
    // A second pull finds it up to date and downloads nothing.
    let again = strata(&s, &["pull", &name]).ok().stdout;
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}:latest")),
        "{again}"
    );
    assert!(!again.contains("Pull complete"), "{again}");
    // -q prints the full name alone.
    let quiet = strata(&s, &["pull", "-q", &name]).ok().stdout;
    assert_eq!(quiet, format!("{name}:latest\n"));
    strata(&s, &["verify"]).ok();

    common::privileges::require_root_and_fuse();
    let hi = strata(&s, &["run", "--rm", &name, "echo", "hi"]).ok();
    assert_eq!(hi.stdout, "hi\n", "{}", hi.stderr);
}

#[test]
fn run_pulls_a_missing_image_first_with_dockers_message() {
    let (registry, _) = registry_with_busybox();
    let name = format!("{}/busybox", registry.host());

    let s = client_store();
    let never = strata(&s, &["run", "--rm", "--pull=never", &name, "echo", "hi"]);
    one_line_125(&never, "--pull=never");
    assert!(never.stderr.contains("No such image"), "{}", never.stderr);

    let r = strata(&s, &["run", "--rm", &name, "echo", "hi"]).ok();
    assert_eq!(r.stdout, "hi\n", "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "Unable to find image '{name}:latest' locally\nlatest: Pulling from busybox\n"
        )),
        "{}",
        r.stderr
    );
    // Present now: no pull, no message.
    let r = strata(&s, &["run", "--rm", &name, "echo", "again"]).ok();
    assert_eq!(r.stdout, "again\n");
    assert!(!r.stderr.contains("Pulling"), "{}", r.stderr);
    // --pull=always asks the registry even so.
    let r = strata(&s, &["run", "--rm", "--pull=always", &name, "true"]).ok();
    assert!(r.stderr.contains("Image is up to date"), "{}", r.stderr);

    // By digest, into a store without it: pulled untagged and run.
    let by_digest = format!("{name}@{}", manifest_digest(&format!("{name}:latest")));
    let t = client_store();
    let r = strata(&t, &["run", "--rm", &by_digest, "echo", "pinned"]).ok();
    assert_eq!(r.stdout, "pinned\n", "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("Unable to find image '{by_digest}' locally")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_second_image_on_the_same_base_downloads_only_its_new_layer() {
    let base = busybox_layer();
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let one = [base.clone()];
    let two = [base, hello_layer("hello from layer two\n")];
    let a = docker_archive(&work.path().join("a.tar"), &one, &foreign_config(&one));
    let b = docker_archive(&work.path().join("b.tar"), &two, &foreign_config(&two));
    registry.push(&a, "base:1", &[]);
    registry.push(&b, "app:1", &[]);

    let s = client_store();
    strata(&s, &["pull", &format!("{}/base:1", registry.host())]).ok();
    let r = strata(&s, &["pull", &format!("{}/app:1", registry.host())]).ok();
    assert_eq!(
        r.stdout.matches(": Already exists").count(),
        1,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches(": Pull complete").count(),
        1,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches(": Pulling fs layer").count(),
        1,
        "{}",
        r.stdout
    );
    let app = format!("{}/app:1", registry.host());
    let config = registry.raw_config("app:1", &[]);
    assert_eq!(
        image_id(&s, &app),
        format!("sha256:{}", sha256_hex(&config))
    );
    strata(&s, &["verify"]).ok();
}

#[test]
fn zstd_and_uncompressed_oci_layers_are_pulled_too() {
    let base = busybox_layer();
    let registry = Registry::start();
    let layers = [base, hello_layer("zstd\n")];
    let config = foreign_config(&layers);
    let zstd = |b: &[u8]| zstd::encode_all(b, 3).unwrap();
    registry.push_raw(
        "zimage",
        "1",
        &[
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                zstd(&layers[0]),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                zstd(&layers[1]),
            ),
        ],
        &config,
    );
    registry.push_raw(
        "plain",
        "1",
        &[
            ("application/vnd.oci.image.layer.v1.tar", layers[0].clone()),
            ("application/vnd.oci.image.layer.v1.tar", layers[1].clone()),
        ],
        &config,
    );
    for name in ["zimage:1", "plain:1"] {
        let s = client_store();
        let full = format!("{}/{name}", registry.host());
        strata(&s, &["pull", &full]).ok();
        assert_eq!(
            image_id(&s, &full),
            format!("sha256:{}", sha256_hex(&config))
        );
        strata(&s, &["verify"]).ok();
    }
}

#[test]
fn a_tampered_blob_is_refused_and_nothing_is_stored() {
    let registry = Registry::start();
    let layer = hello_layer("the original text\n");
    let layers = [layer.clone()];
    let config = foreign_config(&layers);
    // Uncompressed, so that only the digest check can notice the change.
    registry.push_raw(
        "tampered",
        "1",
        &[("application/vnd.oci.image.layer.v1.tar", layer.clone())],
        &config,
    );
    let blob = registry.blob_path(&sha256_hex(&layer));
    let mut bytes = std::fs::read(&blob).expect("the layer blob is in the registry's storage");
    let at = bytes
        .windows(8)
        .position(|w| w == b"original")
        .expect("the text is in the tar");
    bytes[at..at + 8].copy_from_slice(b"TAMPERED");
    std::fs::write(&blob, &bytes).unwrap();

    let s = client_store();
    let before = strata(&s, &["images"]).ok().stdout;
    let r = strata(&s, &["pull", &format!("{}/tampered:1", registry.host())]);
    one_line_125(&r, "tampered blob");
    assert!(r.stderr.contains("content hashes to"), "{}", r.stderr);
    assert_eq!(strata(&s, &["images"]).ok().stdout, before);
    strata(&s, &["verify"]).ok();
}

#[test]
fn a_layer_path_of_path_max_bytes_is_refused_and_nothing_is_stored() {
    let registry = Registry::start();
    let layer = TarMaker::new()
        .file("big", &common::noise(1 << 20, 4))
        .file(&format!("{}ff", "d/".repeat(2047)), b"x")
        .bytes();
    let layers = [layer.clone()];
    registry.push_raw(
        "deep",
        "1",
        &[("application/vnd.oci.image.layer.v1.tar", layer)],
        &foreign_config(&layers),
    );
    let s = client_store();
    let r = strata(&s, &["pull", &format!("{}/deep:1", registry.host())]);
    one_line_125(&r, "a path of PATH_MAX bytes");
    assert!(r.stderr.contains("its name is 4096 bytes"), "{}", r.stderr);
    assert_eq!(strata(&s, &["images", "-a", "-q"]).ok().stdout, "");
    let chunks = std::fs::read_dir(s.root().join("chunks")).unwrap().count();
    assert_eq!(chunks, 0, "the big file's chunks are removed");
}

#[test]
fn unknown_names_and_a_registry_that_is_down_fail_in_one_line() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layers = [hello_layer("x\n")];
    let archive = docker_archive(
        &work.path().join("x.tar"),
        &layers,
        &foreign_config(&layers),
    );
    registry.push(&archive, "known:1", &[]);
    let s = client_store();
    let host = registry.host();

    let r = strata(&s, &["pull", &format!("{host}/known:nope")]);
    one_line_125(&r, "unknown tag");
    assert!(
        r.stderr.contains(&format!(
            "manifest for {host}/known:nope not found: manifest unknown: manifest unknown"
        )),
        "{}",
        r.stderr
    );
    let r = strata(&s, &["pull", &format!("{host}/nosuchrepo")]);
    one_line_125(&r, "unknown repository");
    assert!(
        r.stderr.contains(&format!("{host}/nosuchrepo")) && r.stderr.contains("not found"),
        "{}",
        r.stderr
    );
    let r = strata(&s, &["pull", "Bad/Name"]);
    one_line_125(&r, "bad name");
    assert!(
        r.stderr.contains("invalid reference format"),
        "{}",
        r.stderr
    );

    let down = format!("127.0.0.1:{}/busybox", free_port());
    let r = strata(&s, &["pull", &down]);
    one_line_125(&r, "registry down");
    assert!(r.stderr.contains("connection refused"), "{}", r.stderr);
    assert_eq!(strata(&s, &["images", "-q"]).ok().stdout, "");
}

#[test]
fn login_checks_the_password_stores_it_privately_and_pull_uses_it() {
    let (_registry, host, config) = private_registry("private\n", "private:1");
    let s = client_store();
    let config_json = s.path("docker-config/config.json");

    let r = strata(&s, &["pull", &format!("{host}/private:1")]);
    one_line_125(&r, "pull without login");

    let r = login_as_tester(&s, &host, "wrong-pass");
    one_line_125(&r, "wrong password");
    assert!(r.stderr.contains("401 Unauthorized"), "{}", r.stderr);
    no_secret_shown(&r);
    assert!(!config_json.exists(), "nothing stored for a refused login");

    let r = login_as_tester(&s, &host, "right-pass");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Login Succeeded\n");
    no_secret_shown(&r);
    let (saved, mode) = saved_docker_config(&s);
    assert_eq!(mode, 0o600);
    assert!(saved["auths"][&host]["auth"].is_string(), "{saved}");

    // The HTTP client's trace level dumps requests, Authorization headers
    // included (as hex, cut over lines): it stays off whatever STRATA_LOG
    // asks.
    let full = format!("{host}/private:1");
    let r: Run = strata_cmd(&s, &["pull", &full])
        .env("STRATA_LOG", "trace")
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("DEBUG ureq"), "logged: {}", r.stderr);
    assert!(!r.stderr.contains("TRACE ureq"), "{}", r.stderr);
    no_secret_shown(&r);
    assert_eq!(
        image_id(&s, &full),
        format!("sha256:{}", sha256_hex(&config))
    );

    let r = strata(&s, &["logout", &host]).ok();
    assert_eq!(r.stdout, format!("Removing login credentials for {host}\n"));
    let (saved, _) = saved_docker_config(&s);
    assert!(saved["auths"].get(&host).is_none(), "{saved}");
    let r = strata(&s, &["logout", &host]).ok();
    assert_eq!(r.stdout, format!("Not logged in to {host}\n"));
}

/// A docker credential helper (`docker-credential-testkeeper`) that keeps
/// each server's JSON in a file beside it, speaking docker's protocol.
const TEST_KEEPER: &str = r#"#!/bin/sh
keep="$(dirname "$0")/kept"
mkdir -p "$keep"
name() { printf %s "$1" | sha256sum | cut -c1-16; }
case "$1" in
get) read -r url || true
     if [ -f "$keep/$(name "$url")" ]; then cat "$keep/$(name "$url")"
     else echo "credentials not found in native keychain"; exit 1; fi ;;
store) json=$(cat)
     url=$(printf %s "$json" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
     printf %s "$json" > "$keep/$(name "$url")" ;;
erase) read -r url || true
     if [ -f "$keep/$(name "$url")" ]; then rm "$keep/$(name "$url")"
     else echo "credentials not found in native keychain"; exit 1; fi ;;
*) echo "unknown action $1"; exit 1 ;;
esac
"#;

/// Installs `script` as `docker-credential-<name>` in the store's
/// `helper-bin/`; that directory, and a PATH that finds it first.
fn credential_helper(s: &Strata, name: &str, script: &str) -> (PathBuf, String) {
    let bin = s.path("helper-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    (bin, path)
}

/// The file where `TEST_KEEPER` in `bin` keeps `server`'s entry.
fn kept_by_test_keeper(bin: &Path, server: &str) -> PathBuf {
    bin.join("kept").join(&sha256_hex(server.as_bytes())[..16])
}

#[test]
fn a_credential_helper_named_in_config_json_keeps_the_secret() {
    let (_registry, host, config) = private_registry("helped\n", "helped:1");
    let s = client_store();
    let (bin, path) = credential_helper(&s, "testkeeper", TEST_KEEPER);
    let config_json = s.path("docker-config/config.json");
    std::fs::create_dir_all(config_json.parent().unwrap()).unwrap();
    std::fs::write(
        &config_json,
        serde_json::to_vec(&serde_json::json!({"credHelpers": {&host: "testkeeper"}})).unwrap(),
    )
    .unwrap();
    let run = |args: &[&str], input: &str| strata_fed(&s, args, input, &path);

    let r = run(
        &["login", "-u", "tester", "--password-stdin", &host],
        "right-pass\n",
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Login Succeeded\n"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("unencrypted"), "{}", r.stderr);
    // The file names the registry; the helper holds the secret.
    let saved = std::fs::read_to_string(&config_json).unwrap();
    assert!(!saved.contains("auth\""), "{saved}");
    let held: Vec<_> = std::fs::read_dir(bin.join("kept")).unwrap().collect();
    assert_eq!(held.len(), 1);

    let full = format!("{host}/helped:1");
    let r = run(&["pull", &full], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        image_id(&s, &full),
        format!("sha256:{}", sha256_hex(&config))
    );

    let r = run(&["logout", &host], "");
    assert_eq!(
        r.stdout,
        format!("Removing login credentials for {host}\n"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(bin.join("kept")).unwrap().count(), 0);
    strata(&s, &["rmi", &full]).ok();
    let r = run(&["pull", &full], "");
    one_line_125(&r, "pull after logout");

    // A helper that is not there is named in the error.
    std::fs::remove_file(bin.join("docker-credential-testkeeper")).unwrap();
    let r = run(&["pull", &full], "");
    one_line_125(&r, "missing helper");
    assert!(
        r.stderr.contains("docker-credential-testkeeper"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_ordinary_user_pulls_into_their_own_store() {
    common::privileges::require_root_and_fuse();
    let registry = Registry::start();
    let config = push_hello(&registry, "rootless\n", "rootless:1", &[]);

    // A home of nobody's own, reachable through the temp dir.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let user_home = home.path().join("nobody");
    std::fs::create_dir(&user_home).unwrap();
    let chown = Command::new("chown")
        .args(["65534:65534"])
        .arg(&user_home)
        .status()
        .unwrap();
    assert!(chown.success());
    // A copy of the binary nobody can reach, wherever the build tree is.
    let binary = home.path().join("strata");
    std::fs::copy(common::bin(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let full = format!("{}/rootless:1", registry.host());
    let as_nobody = |args: &[&str]| -> Run {
        Command::new("runuser")
            .args(["-u", "nobody", "--", "env", "-i"])
            .arg(format!("HOME={}", user_home.display()))
            .arg("PATH=/usr/bin:/bin")
            .arg(&binary)
            .arg("--root")
            .arg(user_home.join("store"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runuser runs")
            .into()
    };
    let r = as_nobody(&["pull", &full]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = as_nobody(&["inspect", &full]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["Id"], format!("sha256:{}", sha256_hex(&config)));
    let r = as_nobody(&["verify"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn an_image_pushed_by_strata_is_read_by_skopeo_and_pulled_back_with_its_id() {
    let registry = Registry::start();
    let host = registry.host();
    let name = format!("{host}/pushed:1");
    let s = busybox_as(&name);
    let r = strata(&s, &["push", &name]).ok();
    assert!(
        r.stdout
            .starts_with(&format!("The push refers to repository [{host}/pushed]\n")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(": Pushed\n"), "{}", r.stdout);
    assert!(r.stdout.contains("\n1: digest: sha256:"), "{}", r.stdout);
    let again = strata(&s, &["push", &name]).ok();
    assert!(
        again.stdout.contains(": Layer already exists\n"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains(": Pushed"), "{}", again.stdout);

    let id = image_id(&s, &name);
    let raw = registry.raw_config("pushed:1", &[]);
    assert_eq!(id, format!("sha256:{}", sha256_hex(&raw)));
    // skopeo copies it out, checking every digest on the way.
    skopeo_copies_out(&name);

    let t = client_store();
    strata(&t, &["pull", &name]).ok();
    assert_eq!(image_id(&t, &name), id);
    strata(&t, &["verify"]).ok();
}

#[test]
fn a_pulled_image_of_another_tools_layers_is_pushed_and_pulled_again() {
    let registry = Registry::start();
    let host = registry.host();
    let layers = [hello_layer("foreign\n")];
    let config = foreign_config(&layers);
    registry.push_raw(
        "foreign",
        "1",
        &[("application/vnd.oci.image.layer.v1.tar", layers[0].clone())],
        &config,
    );
    let s = client_store();
    strata(&s, &["pull", &format!("{host}/foreign:1")]).ok();
    strata(
        &s,
        &[
            "tag",
            &format!("{host}/foreign:1"),
            &format!("{host}/copy:1"),
        ],
    )
    .ok();
    let pushed = strata(&s, &["push", &format!("{host}/copy:1")]).ok();
    assert!(
        !pushed.stderr.contains("canonical form"),
        "{}",
        pushed.stderr
    );
    let t = client_store();
    strata(&t, &["pull", &format!("{host}/copy:1")]).ok();
    let served = registry.raw_config("copy:1", &[]);
    assert_eq!(
        image_id(&t, &format!("{host}/copy:1")),
        format!("sha256:{}", sha256_hex(&served))
    );
    // The layer went out as the tool wrote it: the image keeps its id.
    assert!(
        served == config,
        "the pushed config differs from the pulled one"
    );
    assert_eq!(
        image_id(&t, &format!("{host}/copy:1")),
        image_id(&s, &format!("{host}/foreign:1"))
    );
    strata(&t, &["verify"]).ok();
}

#[test]
fn a_missing_blob_or_an_unknown_layer_type_fails_in_one_line_and_stores_nothing() {
    let registry = Registry::start();
    let host = registry.host();
    let layer = hello_layer("gone\n");
    let config = foreign_config(std::slice::from_ref(&layer));
    registry.push_raw(
        "missing",
        "1",
        &[("application/vnd.oci.image.layer.v1.tar", layer.clone())],
        &config,
    );
    std::fs::remove_file(registry.blob_path(&sha256_hex(&layer))).unwrap();
    let odd = hello_layer("odd\n");
    registry.push_raw(
        "odd",
        "1",
        &[("application/x-squashfs", odd.clone())],
        &foreign_config(&[odd]),
    );
    let s = client_store();
    let r = strata(&s, &["pull", &format!("{host}/missing:1")]);
    one_line_125(&r, "missing blob");
    assert!(r.stderr.contains("blob unknown"), "{}", r.stderr);
    let r = strata(&s, &["pull", &format!("{host}/odd:1")]);
    one_line_125(&r, "unknown media type");
    assert!(
        r.stderr
            .contains("unsupported layer media type application/x-squashfs"),
        "{}",
        r.stderr
    );
    assert_eq!(strata(&s, &["images", "-q"]).ok().stdout, "");
    strata(&s, &["verify"]).ok();
}

#[test]
fn a_pull_killed_midway_leaves_a_consistent_store_and_the_next_pull_completes() {
    let registry = Registry::start();
    let host = registry.host();
    // Big and incompressible, so the kill most likely lands mid-download;
    // the checks below hold wherever it lands.
    let big = TarMaker::new()
        .file("big.bin", &common::noise(96 << 20, 7))
        .bytes();
    let config = foreign_config(std::slice::from_ref(&big));
    registry.push_raw(
        "big",
        "1",
        &[("application/vnd.oci.image.layer.v1.tar", big)],
        &config,
    );
    let s = client_store();
    let name = format!("{host}/big:1");
    let mut child = s
        .cmd(&["pull", &name])
        .env("DOCKER_CONFIG", s.path("docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0 {
        if line.contains("Pulling fs layer") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    strata(&s, &["verify"]).ok();
    let images = strata(&s, &["images", "-q"]).ok().stdout;
    let id = format!("sha256:{}", sha256_hex(&config));
    assert!(
        images.is_empty() || id.starts_with(&format!("sha256:{}", images.trim())),
        "{images}"
    );
    strata(&s, &["pull", &name]).ok();
    assert_eq!(image_id(&s, &name), id);
    strata(&s, &["verify"]).ok();
}

#[test]
fn an_index_gives_the_hosts_platform_or_the_one_asked_for() {
    let registry = Registry::start();
    let host = registry.host();
    let mine = hello_layer("host platform\n");
    let other = hello_layer("s390x\n");
    let mine_config = foreign_config(std::slice::from_ref(&mine));
    let other_config = foreign_config(std::slice::from_ref(&other));
    let tar = "application/vnd.oci.image.layer.v1.tar";
    let mine_desc = registry.push_raw("multi", "mine", &[(tar, mine)], &mine_config);
    let other_desc = registry.push_raw("multi", "other", &[(tar, other)], &other_config);
    let entry = |desc: &serde_json::Value, arch: &str| {
        let mut d = desc.clone();
        d["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        d
    };
    let index_type = "application/vnd.oci.image.index.v1+json";
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [entry(&other_desc, "s390x"), entry(&mine_desc, host_arch())],
    });
    let index_desc = registry.put_manifest("multi", "both", index_type, &index);
    let only_other = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [entry(&other_desc, "s390x")],
    });
    registry.put_manifest("multi", "s390x", index_type, &only_other);

    let s = client_store();
    let r = strata(&s, &["pull", &format!("{host}/multi:both")]).ok();
    assert!(
        r.stdout.contains(&format!(
            "Digest: {}\n",
            index_desc["digest"].as_str().unwrap()
        )),
        "{}",
        r.stdout
    );
    assert_eq!(
        image_id(&s, &format!("{host}/multi:both")),
        format!("sha256:{}", sha256_hex(&mine_config))
    );
    let r = strata(&s, &["pull", &format!("{host}/multi:s390x")]);
    one_line_125(&r, "no matching platform");
    assert!(
        r.stderr.contains(&format!(
            "no matching manifest for linux/{} in the manifest list entries",
            host_arch()
        )),
        "{}",
        r.stderr
    );
    strata(
        &s,
        &[
            "pull",
            "--platform",
            "linux/s390x",
            &format!("{host}/multi:s390x"),
        ],
    )
    .ok();
    assert_eq!(
        image_id(&s, &format!("{host}/multi:s390x")),
        format!("sha256:{}", sha256_hex(&other_config))
    );
    let r = strata(
        &s,
        &["pull", "--platform", "linux", &format!("{host}/multi:both")],
    );
    one_line_125(&r, "bad platform");
}

/// The RepoDigests `inspect` shows for `name`.
fn repo_digests(s: &Strata, name: &str) -> Vec<String> {
    let out = strata(s, &["inspect", name]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["RepoDigests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_pull_and_a_push_remember_the_repo_digest_shown_resolved_and_removed_as_dockers() {
    let (registry, config) = registry_with_busybox();
    let name = format!("{}/busybox", registry.host());
    let digest = manifest_digest(&format!("{name}:latest"));
    let by_digest = format!("{name}@{digest}");
    let id = format!("sha256:{}", sha256_hex(&config));

    let s = client_store();
    strata(&s, &["pull", &name]).ok();
    assert_eq!(repo_digests(&s, &name), std::slice::from_ref(&by_digest));
    // Resolved locally by it, as docker resolves `run NAME@sha256:...`.
    assert_eq!(image_id(&s, &by_digest), id);
    let table = strata(&s, &["images", "--digests"]).ok().stdout;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..4],
        [name.as_str(), "latest", digest.as_str(), &id[7..19]],
        "{table}"
    );
    assert!(!strata(&s, &["images"]).ok().stdout.contains("DIGEST"));
    // Filtered as docker filters: each reference is matched on its own,
    // so a tag's pattern keeps no digest and a digest's keeps no tag.
    let first_row = |pattern: &str| {
        let table = strata(&s, &["images", "--digests", pattern]).ok().stdout;
        let row: Vec<String> = table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(table.lines().count(), 2, "images {pattern}: {table}");
        row[..3].to_vec()
    };
    assert_eq!(
        first_row(&format!("{name}:latest")),
        [name.as_str(), "latest", "<none>"]
    );
    assert_eq!(first_row(&by_digest), [name.as_str(), "<none>", &digest]);
    assert_eq!(first_row(&name), [name.as_str(), "latest", &digest]);

    // Untagging the digest keeps the tag; a pull that finds the image
    // present records the digest again.
    let r = strata(&s, &["rmi", &by_digest]).ok();
    assert_eq!(r.stdout, format!("Untagged: {by_digest}\n"));
    assert!(repo_digests(&s, &name).is_empty());
    strata(&s, &["pull", "-q", &name]).ok();
    assert_eq!(repo_digests(&s, &name), std::slice::from_ref(&by_digest));
    // The repository's last tag takes its digests with it.
    let r = strata(&s, &["rmi", &name]).ok();
    assert_eq!(
        r.stdout,
        format!("Untagged: {name}:latest\nUntagged: {by_digest}\nDeleted: {id}\n")
    );
    strata(&s, &["verify"]).ok();

    // Pulled by digest alone: listed under its repository without a tag.
    strata(&s, &["pull", &by_digest]).ok();
    let table = strata(&s, &["images"]).ok().stdout;
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], [name.as_str(), "<none>", &id[7..19]], "{table}");
    let table = strata(&s, &["images", "--digests"]).ok().stdout;
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..3],
        [name.as_str(), "<none>", digest.as_str()],
        "{table}"
    );

    // A push records what the registry now calls the image.
    let pushed = format!("{}/pushed:1", registry.host());
    let t = busybox_as(&pushed);
    let out = strata(&t, &["push", &pushed]).ok().stdout;
    let pushed_digest = out
        .lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert_eq!(
        repo_digests(&t, &pushed),
        [format!("{}/pushed@{pushed_digest}", registry.host())]
    );

    common::privileges::require_root_and_fuse();
    let r = strata(&s, &["run", "--rm", &by_digest, "echo", "local"]).ok();
    assert_eq!(r.stdout, "local\n", "{}", r.stderr);
    assert!(!r.stderr.contains("Unable to find"), "{}", r.stderr);
}

#[test]
fn a_layer_pushed_before_is_found_or_mounted_without_compressing_it_again() {
    let registry = Registry::start();
    let host = registry.host();
    let first = format!("{host}/first:1");
    let s = busybox_as(&first);
    strata(&s, &["push", &first]).ok();
    // Nothing of the layer is left to compress: what follows must not
    // need it.
    for chunk in std::fs::read_dir(s.root().join("chunks")).unwrap() {
        std::fs::remove_file(chunk.unwrap().path()).unwrap();
    }
    let again = strata(&s, &["push", &first]).ok().stdout;
    assert!(again.contains(": Layer already exists\n"), "{again}");
    let second = format!("{host}/second:1");
    strata(&s, &["tag", "busybox", &second]).ok();
    let mounted = strata(&s, &["push", &second]).ok().stdout;
    assert!(mounted.contains(": Mounted from first\n"), "{mounted}");
    // The mounted blob is really there: skopeo copies the image out,
    // checking every digest.
    skopeo_copies_out(&second);
}

#[test]
fn push_compresses_with_zstd_when_asked_and_the_image_keeps_its_id() {
    let s = Strata::with_busybox();
    let registry = Registry::start();
    let host = registry.host();
    let id = image_id(&s, "busybox");
    for (format, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
    ] {
        let name = format!("{host}/{format}:1");
        strata(&s, &["tag", "busybox", &name]).ok();
        strata(&s, &["push", "--compression-format", format, &name]).ok();
        let manifest: serde_json::Value = serde_json::from_slice(&raw_manifest(&name)).unwrap();
        assert_eq!(manifest["layers"][0]["mediaType"], media_type, "{manifest}");
        let t = client_store();
        strata(&t, &["pull", &name]).ok();
        assert_eq!(image_id(&t, &name), id);
        strata(&t, &["verify"]).ok();
    }
    let r = strata(
        &s,
        &[
            "push",
            "--compression-format",
            "lz4",
            &format!("{host}/x:1"),
        ],
    );
    assert_ne!(r.code, 0);
}

#[test]
fn pull_all_tags_pulls_every_tag_of_the_repository() {
    let registry = Registry::start();
    let host = registry.host();
    let mut ids = Vec::new();
    for tag in ["1", "2"] {
        let config = push_hello(
            &registry,
            &format!("tag {tag}\n"),
            &format!("many:{tag}"),
            &[],
        );
        ids.push(format!("sha256:{}", sha256_hex(&config)));
    }
    let s = client_store();
    let r = strata(&s, &["pull", "--all-tags", &format!("{host}/many")]).ok();
    assert_eq!(r.stdout.lines().last().unwrap(), format!("{host}/many"));
    assert_eq!(
        r.stdout.matches("Status: Downloaded newer image").count(),
        2,
        "{}",
        r.stdout
    );
    assert_eq!(image_id(&s, &format!("{host}/many:1")), ids[0]);
    assert_eq!(image_id(&s, &format!("{host}/many:2")), ids[1]);

    let r = strata(&s, &["pull", "-a", &format!("{host}/many:1")]);
    one_line_125(&r, "a tag with --all-tags");
    assert!(
        r.stderr.contains("tag can't be used with --all-tags/-a"),
        "{}",
        r.stderr
    );
    let r = strata(&s, &["pull", "-a", &format!("{host}/nosuch")]);
    one_line_125(&r, "--all-tags of an unknown repository");
}

#[test]
fn a_login_podman_or_skopeo_made_is_used_from_their_auth_json() {
    let registry = Registry::start_with(Some(("tester", "right-pass")));
    let host = registry.host();
    let config = push_hello(
        &registry,
        "podman's login\n",
        "private:1",
        &["--dest-creds", "tester:right-pass"],
    );
    // skopeo writes the same auth.json podman does.
    let runtime = tempfile::tempdir().unwrap();
    let auth_file = runtime.path().join("containers/auth.json");
    checked_output(
        Command::new("skopeo")
            .args(["login", "--tls-verify=false"])
            .args(["-u", "tester", "-p", "right-pass"])
            .arg("--authfile")
            .arg(&auth_file)
            .arg(&host),
        "skopeo login",
    );
    let full = format!("{host}/private:1");
    let s = client_store();
    let pull = |env: (&str, &Path)| -> Run {
        strata_cmd(&s, &["pull", "-q", &full])
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env(env.0, env.1)
            .output()
            .unwrap()
            .into()
    };
    let r = pull(("REGISTRY_AUTH_FILE", &auth_file));
    assert_eq!(r.code, 0, "{}", r.stderr);
    strata(&s, &["rmi", &full]).ok();
    let r = pull(("XDG_RUNTIME_DIR", runtime.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        image_id(&s, &full),
        format!("sha256:{}", sha256_hex(&config))
    );
}

#[test]
fn a_large_layer_is_pushed_in_chunks_and_pulled_back_whole() {
    let registry = Registry::start_logging_requests();
    let name = format!("{}/chunked:1", registry.host());
    let s = busybox_as(&name);
    // busybox's layer is about 1 MB compressed: 64 KiB chunks make many.
    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let patches = registry.requests("PATCH", "/v2/chunked/blobs/uploads/");
    assert!(patches > 4, "{patches} PATCH requests: {}", registry.log());
    let t = client_store();
    strata(&t, &["pull", &name]).ok();
    assert_eq!(image_id(&t, &name), image_id(&s, "busybox"));
    strata(&t, &["verify"]).ok();
}

#[test]
fn a_pulled_layer_pushed_to_another_repository_is_mounted_from_where_it_came() {
    let registry = Registry::start();
    let host = registry.host();
    let src = format!("{host}/src:1");
    let s = busybox_as(&src);
    strata(&s, &["push", &src]).ok();

    let t = client_store();
    strata(&t, &["pull", &src]).ok();
    let dst = format!("{host}/dst:1");
    strata(&t, &["tag", &src, &dst]).ok();
    let r = strata(&t, &["push", &dst]).ok().stdout;
    assert!(r.contains(": Mounted from src\n"), "{r}");
    assert!(!r.contains(": Pushed"), "{r}");
    let u = client_store();
    strata(&u, &["pull", &dst]).ok();
    assert_eq!(image_id(&u, &dst), image_id(&s, "busybox"));
    strata(&u, &["verify"]).ok();
}

/// A pull that skips a layer because the store has the diff id the config
/// claims never compares the manifest's blob with that layer, so it must
/// not remember the blob for it: a registry could otherwise name a blob of
/// its own for a base layer the user has, and the user's next push of any
/// image on that base would mount the registry's blob in its place.
#[test]
fn a_layer_a_pull_skipped_as_present_is_never_pushed_as_the_blob_it_claimed() {
    let registry = Registry::start();
    let host = registry.host();
    let base = format!("{host}/base:1");
    let s = busybox_as(&base);
    strata(&s, &["push", &base]).ok();
    let theirs = gzip(&hello_layer("not busybox\n"));
    registry.push_raw(
        "evil",
        "1",
        &[(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            theirs.clone(),
        )],
        &foreign_config(&[busybox_layer()]),
    );
    let r = strata(&s, &["pull", &format!("{host}/evil:1")]).ok().stdout;
    assert!(r.contains(": Already exists\n"), "{r}");

    let app = format!("{host}/app:1");
    strata(&s, &["tag", &base, &app]).ok();
    let r = strata(&s, &["push", &app]).ok().stdout;
    assert!(!r.contains("Mounted from evil"), "{r}");
    let layer = pushed_manifest(&registry, "app", "1")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(layer, format!("sha256:{}", sha256_hex(&theirs)));
    pushed_image_is_whole(&s, &registry, "app:1");
}

/// A registry whose tag list or error text is hostile: tags that are no
/// tags (a path, a slash), pages that name themselves next, pages of new
/// tags without end, and terminal
/// escapes in an error message. Each fails the pull in one line, pulls
/// nothing, and the escape reaches the terminal shown, not obeyed.
#[test]
fn a_hostile_tag_list_or_error_text_fails_in_one_line() {
    use common::scripted_registry::{Answer, ScriptedRegistry};
    let registry = ScriptedRegistry::start(|_, path| match path {
        "/v2/" => Answer::json(200, serde_json::json!({})),
        "/v2/odd/tags/list" => Answer::json(
            200,
            serde_json::json!({"name": "odd", "tags": ["1", "../../../x"]}),
        ),
        "/v2/loop/tags/list" => {
            Answer::json(200, serde_json::json!({"name": "loop", "tags": ["1"]}))
                .with_header("Link", "</v2/loop/tags/list>; rel=\"next\"")
        }
        // Pages of fresh tags without end: the list is held in memory.
        p if p.starts_with("/v2/flood/tags/list") => {
            let page: usize = p
                .rsplit('=')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let tags: Vec<String> = (0..5_000).map(|i| format!("t{page}-{i}")).collect();
            let next = format!("</v2/flood/tags/list?page={}>; rel=\"next\"", page + 1);
            Answer::json(200, serde_json::json!({"name": "flood", "tags": tags}))
                .with_header("Link", &next)
        }
        _ => Answer::json(
            404,
            serde_json::json!({"errors": [{"code": "MANIFEST_UNKNOWN",
                "message": "gone\u{1b}[2J\r\nStatus: Downloaded newer image"}]}),
        ),
    });
    let host = registry.host();
    let s = client_store();
    let r = strata(&s, &["pull", "--all-tags", &format!("{host}/odd")]);
    one_line_125(&r, "invalid tag");
    assert!(
        r.stderr
            .contains("the registry listed an invalid tag \"../../../x\""),
        "{}",
        r.stderr
    );
    let r = strata(&s, &["pull", "--all-tags", &format!("{host}/loop")]);
    one_line_125(&r, "endless tag list");
    assert!(r.stderr.contains("tag list does not end"), "{}", r.stderr);
    let r = strata(&s, &["pull", "--all-tags", &format!("{host}/flood")]);
    one_line_125(&r, "a flood of tags");
    assert!(r.stderr.contains("lists over 100000 tags"), "{}", r.stderr);
    let r = strata(&s, &["pull", &format!("{host}/esc:1")]);
    one_line_125(&r, "escapes in an error");
    assert!(!r.stderr.contains('\u{1b}'), "{:?}", r.stderr);
    assert!(r.stderr.contains("gone\\u{1b}[2J\\r\\n"), "{:?}", r.stderr);
    assert!(
        !registry
            .requests()
            .iter()
            .any(|r| r.contains("/manifests/") && !r.contains("/esc/")),
        "nothing pulled: {:?}",
        registry.requests()
    );
    assert_eq!(strata(&s, &["images", "-q"]).ok().stdout, "");
}

/// `strata ARGS`, failing the test as held by the registry if it has not
/// ended within `limit` (it is killed then).
fn strata_or_held(s: &Strata, args: &[&str], limit: std::time::Duration) -> Run {
    let mut child = strata_cmd(s, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_bounded(&mut child, limit, &format!("strata {args:?}"));
    child.wait_with_output().unwrap().into()
}

/// An image `scripted_images` serves as `REPO:1`: one blob of `media_type`
/// listed `layers` times, and `config`.
struct Served {
    repo: &'static str,
    media_type: &'static str,
    blob: Vec<u8>,
    layers: usize,
    config: Vec<u8>,
}

/// A registry serving `images` as given, whatever they hold.
fn scripted_images(images: Vec<Served>) -> common::scripted_registry::ScriptedRegistry {
    use common::scripted_registry::{Answer, ScriptedRegistry};
    let mut files = std::collections::HashMap::new();
    for Served {
        repo,
        media_type,
        blob,
        layers,
        config,
    } in images
    {
        let descriptor = |media: &str, bytes: &[u8]| {
            serde_json::json!({"mediaType": media, "size": bytes.len(),
                "digest": format!("sha256:{}", sha256_hex(bytes))})
        };
        let config_type = "application/vnd.oci.image.config.v1+json";
        let layers = vec![descriptor(media_type, &blob); layers];
        let manifest = serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(config_type, &config), "layers": layers});
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let blob_path = |b: &[u8]| format!("/v2/{repo}/blobs/sha256:{}", sha256_hex(b));
        let manifest_type = "application/vnd.oci.image.manifest.v1+json";
        files.insert(blob_path(&blob), ("application/octet-stream", blob));
        files.insert(blob_path(&config), (config_type, config));
        files.insert(format!("/v2/{repo}/manifests/1"), (manifest_type, manifest));
    }
    ScriptedRegistry::start(move |_, path| match (path, files.get(path)) {
        ("/v2/", _) => Answer::json(200, serde_json::json!({})),
        (_, Some((kind, bytes))) => Answer::bytes(200, kind, bytes.clone()),
        _ => Answer::json(
            404,
            serde_json::json!({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}),
        ),
    })
}

#[test]
fn a_redirect_is_followed_without_reading_its_body_and_a_loop_ends() {
    use common::scripted_registry::{Answer, ScriptedRegistry};
    let registry = ScriptedRegistry::start(|_, path| match path {
        "/v2/" => Answer::json(200, serde_json::json!({})),
        // ureq read a redirect's body to its end before following it,
        // outside every deadline: a registry held a pull for good.
        "/v2/moved/manifests/1" => {
            Answer::endless(302).with_header("Location", "/v2/gone/manifests/1")
        }
        "/v2/loop/manifests/1" => Answer::bytes(302, "text/plain", Vec::new())
            .with_header("Location", "/v2/loop/manifests/1"),
        _ => Answer::json(
            404,
            serde_json::json!({"errors": [{"code": "MANIFEST_UNKNOWN",
                "message": "manifest unknown"}]}),
        ),
    });
    let host = registry.host();
    let s = client_store();
    let limit = std::time::Duration::from_secs(120);
    let r = strata_or_held(&s, &["pull", &format!("{host}/moved:1")], limit);
    one_line_125(&r, "a redirect with an endless body");
    assert!(r.stderr.contains("manifest unknown"), "{}", r.stderr);
    assert!(
        registry
            .requests()
            .contains(&"GET /v2/gone/manifests/1".to_string()),
        "{:?}",
        registry.requests()
    );
    let r = strata_or_held(&s, &["pull", &format!("{host}/loop:1")], limit);
    one_line_125(&r, "a redirect loop");
    assert!(r.stderr.contains("more than 10 redirects"), "{}", r.stderr);
}

#[test]
fn a_layer_is_decompressed_once_as_its_media_type_says() {
    let tar = hello_layer("once");
    let config = foreign_config(std::slice::from_ref(&tar));
    let gzip_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    let tar_type = "application/vnd.oci.image.layer.v1.tar";
    let registry = scripted_images(vec![
        // gzip inside gzip, under a config naming the inner tar: docker
        // gunzips once and hashes a gzip stream, so this image is not
        // the tar its config claims anywhere else. strata unwrapped both
        // and took it; a later push then mounted this blob for the tar.
        Served {
            repo: "twice",
            media_type: gzip_type,
            blob: gzip(&gzip(&tar)),
            layers: 1,
            config: config.clone(),
        },
        // A plain-tar type over a gzip stream: docker looks at the bytes.
        Served {
            repo: "sniffed",
            media_type: tar_type,
            blob: gzip(&tar),
            layers: 1,
            config: config.clone(),
        },
    ]);
    let host = registry.host();
    let s = client_store();
    let r = strata(&s, &["pull", &format!("{host}/twice:1")]);
    one_line_125(&r, "gzip inside gzip");
    assert_eq!(strata(&s, &["images", "-q"]).ok().stdout, "");
    strata(&s, &["pull", "-q", &format!("{host}/sniffed:1")]).ok();
    assert_eq!(
        image_id(&s, &format!("{host}/sniffed:1")),
        format!("sha256:{}", sha256_hex(&config))
    );
    strata(&s, &["verify"]).ok();
}

#[test]
fn an_image_of_more_layers_than_docker_allows_is_refused_before_any_blob() {
    let tar = hello_layer("deep");
    // One past docker's most (overlay2's 128 lowers).
    let layers = 129;
    let registry = scripted_images(vec![Served {
        repo: "deep",
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        blob: gzip(&tar),
        layers,
        config: foreign_config(&vec![tar.clone(); layers]),
    }]);
    let s = client_store();
    let r = strata(&s, &["pull", &format!("{}/deep:1", registry.host())]);
    one_line_125(&r, "129 layers");
    assert!(r.stderr.contains("max depth exceeded"), "{}", r.stderr);
    assert!(
        !registry.requests().iter().any(|r| r.contains("/blobs/")),
        "{:?}",
        registry.requests()
    );
}

/// PATCH chunk size for the interrupted-upload tests: busybox's layer
/// (about 1 MB compressed) goes in many chunks.
const CUT_CHUNK: u64 = 64 << 10;

/// `strata push` of `name` in 64 KiB chunks.
fn push_in_chunks(s: &Strata, name: &str) -> Run {
    push_in_chunks_cmd(s, name).output().unwrap().into()
}

fn push_in_chunks_cmd(s: &Strata, name: &str) -> Command {
    let mut command = strata_cmd(s, &["push", name]);
    command.env("STRATA_PUSH_CHUNK_BYTES", CUT_CHUNK.to_string());
    command
}

/// busybox tagged for `repo_tag` on a registry behind a proxy that makes
/// `cut`: the store, the registry, the proxy and the tagged name.
fn busybox_behind_proxy(
    cut: Option<common::fault_proxy::Cut>,
    repo_tag: &str,
) -> (Strata, Registry, common::fault_proxy::FaultProxy, String) {
    let registry = Registry::start();
    let proxy = common::fault_proxy::FaultProxy::start(registry.port, cut);
    let name = format!("{}/{repo_tag}", proxy.host());
    (busybox_as(&name), registry, proxy, name)
}

/// The OCI manifest of `repo:tag` as the registry holds it.
fn pushed_manifest(registry: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let url = format!("http://{}/v2/{repo}/manifests/{tag}", registry.host());
    serde_json::from_slice(
        &ureq::get(&url)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
            .unwrap()
            .into_body()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap()
}

/// The size of the one layer of `repo:tag` as the registry holds it.
fn pushed_layer_size(registry: &Registry, repo: &str, tag: &str) -> u64 {
    pushed_manifest(registry, repo, tag)["layers"][0]["size"]
        .as_u64()
        .unwrap()
}

/// The pushed image arrived whole: skopeo copies it out checking every
/// digest, and strata pulls it back with busybox's id.
fn pushed_image_is_whole(s: &Strata, registry: &Registry, repo_tag: &str) {
    let direct = format!("{}/{repo_tag}", registry.host());
    skopeo_copies_out(&direct);
    let t = client_store();
    strata(&t, &["pull", &direct]).ok();
    assert_eq!(image_id(&t, &direct), image_id(s, "busybox"));
    strata(&t, &["verify"]).ok();
}

#[test]
fn a_push_cut_mid_chunk_asks_the_registry_where_it_stands_and_resumes() {
    let s = Strata::with_busybox();
    let registry = Registry::start();
    // The third PATCH loses its connection after half its chunk left
    // strata, before any of it reached the registry: the session still
    // holds two whole chunks, and says so.
    let proxy = common::fault_proxy::FaultProxy::start(
        registry.port,
        Some(common::fault_proxy::Cut {
            nth: 3,
            forward: 0,
            swallow: CUT_CHUNK / 2,
            then_down: false,
            hold: false,
        }),
    );
    let name = format!("{}/resumed:1", proxy.host());
    strata(&s, &["tag", "busybox", &name]).ok();
    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.cuts(), 1);
    let size = pushed_layer_size(&registry, "resumed", "1");
    let chunks = size.div_ceil(CUT_CHUNK) as usize;
    assert!(chunks > 4, "{size}");
    // Every chunk once, plus the one cut: nothing started over. A
    // registry still busy with the cut request may refuse the resumed
    // PATCH once (CI saw one PATCH more, once): then one chunk goes twice,
    // never more.
    let patches = proxy.patches();
    assert!(
        (chunks + 1..=chunks + 2).contains(&patches),
        "{patches} PATCHes for {chunks} chunks"
    );
    let resent = patches - (chunks + 1);
    // The layer's bytes once, the half chunk that was lost, and at most
    // the chunk sent again if one was.
    let once = size + CUT_CHUNK / 2;
    let sent = proxy.patch_bytes();
    assert!(
        (once..=once + resent as u64 * CUT_CHUNK).contains(&sent),
        "{sent} bytes sent for a layer of {size}"
    );
    assert!(r.stdout.contains(": Pushed\n"), "{}", r.stdout);
    pushed_image_is_whole(&s, &registry, "resumed:1");
}

#[test]
fn a_session_the_registry_cancelled_after_a_cut_starts_the_blob_over() {
    let s = Strata::with_busybox();
    let registry = Registry::start();
    // Half of the third chunk reaches docker-registry 2.8, which keeps it,
    // then refuses the session as resumed at the wrong offset (404): the
    // blob is sent again from its first byte.
    let proxy = common::fault_proxy::FaultProxy::start(
        registry.port,
        Some(common::fault_proxy::Cut {
            nth: 3,
            forward: CUT_CHUNK / 2,
            swallow: 0,
            then_down: false,
            hold: false,
        }),
    );
    let name = format!("{}/restarted:1", proxy.host());
    strata(&s, &["tag", "busybox", &name]).ok();
    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.cuts(), 1);
    let chunks = pushed_layer_size(&registry, "restarted", "1").div_ceil(CUT_CHUNK) as usize;
    // Every chunk again after the three: the blob started over. (One more
    // when the status query came before the registry had written the
    // half chunk: the resumed PATCH then finds the session cancelled.)
    let patches = proxy.patches();
    assert!(
        (3 + chunks..=4 + chunks).contains(&patches),
        "{patches} PATCHes for {chunks} chunks"
    );
    pushed_image_is_whole(&s, &registry, "restarted:1");
}

#[test]
fn a_push_run_again_after_the_registry_went_away_continues_the_upload() {
    // The third PATCH is cut and the registry stays unreachable: the push
    // fails in one line. Run again once it is back, it continues the
    // session the first run kept.
    let cut = common::fault_proxy::Cut {
        nth: 3,
        swallow: CUT_CHUNK / 2,
        then_down: true,
        ..Default::default()
    };
    let (s, registry, proxy, name) = busybox_behind_proxy(Some(cut), "rerun:1");
    let r = push_in_chunks(&s, &name);
    one_line_125(&r, "push to a registry that went away");
    assert!(r.stderr.contains("Patch \""), "{}", r.stderr);
    proxy.heal();
    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let size = pushed_layer_size(&registry, "rerun", "1");
    let chunks = size.div_ceil(CUT_CHUNK) as usize;
    assert_eq!(proxy.patches(), chunks + 1);
    assert_eq!(proxy.patch_bytes(), size + CUT_CHUNK / 2);
    // The finished upload's session is forgotten.
    let sessions = s.root().join("tmp/uploads");
    let left: Vec<_> = std::fs::read_dir(&sessions)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    pushed_image_is_whole(&s, &registry, "rerun:1");
}

/// A helper (`docker-credential-tokenhelper`) that answers every `get`
/// with an identity token, as docker's helpers give one: user `<token>`.
const TOKEN_HELPER: &str = r#"#!/bin/sh
case "$1" in
get) read -r url || true
     printf '{"ServerURL":"%s","Username":"<token>","Secret":"idt-right-1234"}' "$url" ;;
*) echo "unsupported"; exit 1 ;;
esac
"#;

/// Writes `auths.<host>` (and anything else in `extra`) to the store's
/// docker config.json.
fn docker_config(s: &Strata, host: &str, entry: serde_json::Value, extra: serde_json::Value) {
    let path = s.path("docker-config/config.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut config = serde_json::json!({"auths": {host: entry}});
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            config[k] = v.clone();
        }
    }
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

fn basic64(user_password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(user_password)
}

/// What the test token service takes: identity token `idt-right-1234`,
/// `tester:right-pass`.
fn token_secrets(rotate: bool, password_grant: PasswordGrant) -> Secrets {
    Secrets {
        identity_token: "idt-right-1234".into(),
        basic: ("tester".into(), "right-pass".into()),
        rotate,
        password_grant,
    }
}

/// A token service with `secrets` (its files in `work`) and the real
/// registry, trusting only JWTs that service signed.
fn token_guarded_registry(work: &Path, secrets: Secrets) -> (TokenServer, Registry) {
    let tokens = TokenServer::start(work, secrets);
    let registry = Registry::start_with_auth_config(&tokens.registry_auth_config());
    (tokens, registry)
}

/// As above, holding a one-layer image `guarded:1` skopeo pushed with
/// the password; its full name and config. The service's verdicts start
/// empty.
fn token_guarded_image(work: &Path, secrets: Secrets) -> (TokenServer, Registry, String, Vec<u8>) {
    let (tokens, registry) = token_guarded_registry(work, secrets);
    let config = push_hello(
        &registry,
        "guarded\n",
        "guarded:1",
        &["--dest-creds", "tester:right-pass"],
    );
    tokens.clear();
    let name = format!("{}/guarded:1", registry.host());
    (tokens, registry, name, config)
}

/// Fails the test if `r` shows a password or an identity token.
fn no_secret_shown(r: &Run) {
    let basic = ["tester:right-pass", "tester:wrong-pass"].map(basic64);
    let plain = ["idt-right", "idt-wrong", "right-pass", "wrong-pass"];
    for secret in plain.into_iter().chain(basic.iter().map(String::as_str)) {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "{}{}",
            r.stdout,
            r.stderr
        );
    }
}

/// The store's docker config.json, and its mode.
fn saved_docker_config(s: &Strata) -> (serde_json::Value, u32) {
    saved_credentials(&s.path("docker-config/config.json"))
}

/// A credentials file, and its mode.
fn saved_credentials(path: &Path) -> (serde_json::Value, u32) {
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    (
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap(),
        mode,
    )
}

#[test]
fn an_identity_token_is_exchanged_for_a_bearer_token_by_the_oauth2_post() {
    let s = Strata::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let (tokens, registry) =
        token_guarded_registry(work.path(), token_secrets(false, PasswordGrant::Taken));
    let host = registry.host();
    let name = format!("{host}/guarded:1");
    // What `docker login` keeps for an OAuth2 registry: the user in
    // `auth` with no password, and the identity token.
    let identity = serde_json::json!({
        "auth": basic64("someone:"),
        "identitytoken": "idt-right-1234",
    });
    docker_config(&s, &host, identity.clone(), serde_json::Value::Null);
    strata(&s, &["tag", "busybox", &name]).ok();
    let r = strata(&s, &["push", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_secret_shown(&r);
    let verdicts = tokens.verdicts();
    assert!(!verdicts.is_empty());
    assert!(
        verdicts.iter().all(|v| v == "POST refresh_token accepted"),
        "{verdicts:?}"
    );
    for fields in tokens.post_fields() {
        for wanted in [
            "grant_type",
            "refresh_token",
            "service",
            "scope",
            "client_id",
        ] {
            assert!(fields.iter().any(|f| f == wanted), "{fields:?}");
        }
    }

    // The registry checks the JWTs it is given: one the service did not
    // sign is refused.
    let forged = ureq::get(&format!("http://{host}/v2/guarded/manifests/1"))
        .header("Authorization", "Bearer e30.e30.e30")
        .call();
    assert!(
        matches!(forged, Err(ureq::Error::StatusCode(401))),
        "{forged:?}"
    );

    let t = client_store();
    docker_config(&t, &host, identity, serde_json::Value::Null);
    let r = strata(&t, &["pull", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_secret_shown(&r);
    assert_eq!(image_id(&t, &name), image_id(&s, "busybox"));
    // `login` with what is stored checks the token and keeps it as docker
    // does, never as a password.
    let r = strata(&t, &["login", &host]);
    assert_eq!(r.stdout, "Login Succeeded\n", "{}", r.stderr);
    no_secret_shown(&r);
    let (saved, _) = saved_docker_config(&t);
    assert_eq!(
        saved["auths"][&host],
        serde_json::json!({"identitytoken": "idt-right-1234"})
    );

    // A token the service does not know: one line, the token not in it.
    let u = client_store();
    docker_config(
        &u,
        &host,
        serde_json::json!({"identitytoken": "idt-wrong-5678"}),
        serde_json::Value::Null,
    );
    let r = strata(&u, &["pull", &name]);
    one_line_125(&r, "a refused identity token");
    assert!(r.stderr.contains("identity token"), "{}", r.stderr);
    no_secret_shown(&r);

    // Without an identity token, the token comes from the GET with basic
    // auth, as before.
    tokens.clear();
    let v = client_store();
    docker_config(
        &v,
        &host,
        serde_json::json!({"auth": basic64("tester:right-pass")}),
        serde_json::Value::Null,
    );
    strata(&v, &["pull", &name]).ok();
    let verdicts = tokens.verdicts();
    assert!(
        !verdicts.is_empty() && verdicts.iter().all(|v| v == "GET basic accepted"),
        "{verdicts:?}"
    );

    // A credential helper's `<token>` answer is an identity token too.
    tokens.clear();
    let w = client_store();
    let (_, path) = credential_helper(&w, "tokenhelper", TOKEN_HELPER);
    docker_config(
        &w,
        &host,
        serde_json::json!({}),
        serde_json::json!({"credHelpers": {&host: "tokenhelper"}}),
    );
    let r = strata_fed(&w, &["pull", &name], "", &path);
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_secret_shown(&r);
    let verdicts = tokens.verdicts();
    assert!(
        !verdicts.is_empty() && verdicts.iter().all(|v| v == "POST refresh_token accepted"),
        "{verdicts:?}"
    );
}

#[test]
fn a_refresh_token_the_token_service_renews_replaces_the_stored_one() {
    let work = tempfile::tempdir().unwrap();
    let (tokens, registry, name, config) =
        token_guarded_image(work.path(), token_secrets(true, PasswordGrant::Taken));
    let host = registry.host();
    let id = format!("sha256:{}", sha256_hex(&config));

    // In docker's config.json, beside a field of its own.
    let s = client_store();
    docker_config(
        &s,
        &host,
        serde_json::json!({"auth": basic64("someone:"), "identitytoken": "idt-right-1234"}),
        serde_json::json!({"psFormat": "table {{.ID}}"}),
    );
    let r = strata(&s, &["pull", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_secret_shown(&r);
    let renewed = tokens.identity_token();
    assert_ne!(renewed, "idt-right-1234");
    let (saved, mode) = saved_docker_config(&s);
    assert_eq!(mode, 0o600);
    assert_eq!(
        saved["auths"][&host],
        serde_json::json!({"auth": basic64("someone:"), "identitytoken": renewed}),
    );
    assert_eq!(saved["psFormat"], "table {{.ID}}");
    // The service takes only the renewed token now: the next run has it.
    strata(&s, &["rmi", &name]).ok();
    let r = strata(&s, &["pull", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(image_id(&s, &name), id);
    let verdicts = tokens.verdicts();
    assert!(
        verdicts.iter().all(|v| v == "POST refresh_token accepted"),
        "{verdicts:?}"
    );

    // In podman's auth.json, where docker's file has nothing.
    let t = client_store();
    let auth_json = t.path("no-auth.json");
    let entry = serde_json::json!({"auths": {&host: {"identitytoken": tokens.identity_token()}}});
    std::fs::write(&auth_json, serde_json::to_vec(&entry).unwrap()).unwrap();
    let r = strata(&t, &["pull", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_secret_shown(&r);
    let (saved, mode) = saved_credentials(&auth_json);
    assert_eq!(mode, 0o600);
    assert_eq!(
        saved["auths"][&host]["identitytoken"],
        tokens.identity_token()
    );
    assert!(!t.path("docker-config/config.json").exists());

    // With the credential helper docker's config names for the registry:
    // the helper keeps the new token, the file stays as it was.
    let u = client_store();
    let (bin, path) = credential_helper(&u, "testkeeper", TEST_KEEPER);
    let kept = kept_by_test_keeper(&bin, &host);
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    let entry = serde_json::json!({
        "ServerURL": &host, "Username": "<token>", "Secret": tokens.identity_token(),
    });
    std::fs::write(&kept, serde_json::to_vec(&entry).unwrap()).unwrap();
    let helped = serde_json::json!({"credHelpers": {&host: "testkeeper"}});
    docker_config(&u, &host, serde_json::json!({}), helped);
    let before = std::fs::read(u.path("docker-config/config.json")).unwrap();
    let r = strata_fed(&u, &["pull", &name], "", &path);
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_secret_shown(&r);
    let held: serde_json::Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    assert_eq!(held["Secret"], tokens.identity_token());
    assert_eq!(held["Username"], "<token>");
    assert_eq!(
        std::fs::read(u.path("docker-config/config.json")).unwrap(),
        before
    );
}

#[test]
fn login_keeps_the_identity_token_a_token_service_hands_out_not_the_password() {
    let work = tempfile::tempdir().unwrap();
    let (tokens, registry, name, config) =
        token_guarded_image(work.path(), token_secrets(false, PasswordGrant::Taken));
    let host = registry.host();
    let s = client_store();

    let r = login_as_tester(&s, &host, "wrong-pass");
    one_line_125(&r, "wrong password");
    no_secret_shown(&r);
    assert!(!s.path("docker-config/config.json").exists());
    assert_eq!(
        tokens.verdicts(),
        ["POST password refused", "GET basic refused"]
    );

    tokens.clear();
    let r = login_as_tester(&s, &host, "right-pass");
    assert_eq!(r.stdout, "Login Succeeded\n", "{}", r.stderr);
    no_secret_shown(&r);
    assert_eq!(tokens.verdicts(), ["POST password accepted"]);
    // As docker keeps it: the user in `auth` with no password, and the
    // token.
    let (saved, mode) = saved_docker_config(&s);
    assert_eq!(mode, 0o600);
    assert_eq!(
        saved["auths"][&host],
        serde_json::json!({"auth": basic64("tester:"), "identitytoken": "idt-right-1234"})
    );
    let text = std::fs::read_to_string(s.path("docker-config/config.json")).unwrap();
    assert!(!text.contains(&basic64("tester:right-pass")), "{text}");

    tokens.clear();
    let r = strata(&s, &["pull", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        image_id(&s, &name),
        format!("sha256:{}", sha256_hex(&config))
    );
    let verdicts = tokens.verdicts();
    assert!(
        !verdicts.is_empty() && verdicts.iter().all(|v| v == "POST refresh_token accepted"),
        "{verdicts:?}"
    );

    // A service that refuses the POST (takes no POSTs: 404, 405) is asked
    // by the GET with basic auth, and the password is stored as before.
    for status in [404, 405] {
        let work = tempfile::tempdir().unwrap();
        let (tokens, registry) = token_guarded_registry(
            work.path(),
            token_secrets(false, PasswordGrant::Refused(status)),
        );
        let host = registry.host();
        let t = client_store();
        let r = login_as_tester(&t, &host, "right-pass");
        assert_eq!(r.stdout, "Login Succeeded\n", "{status}: {}", r.stderr);
        no_secret_shown(&r);
        assert_eq!(
            tokens.verdicts(),
            ["POST password unsupported", "GET basic accepted"],
            "{status}"
        );
        let (saved, _) = saved_docker_config(&t);
        assert_eq!(
            saved["auths"][&host],
            serde_json::json!({"auth": basic64("tester:right-pass")}),
            "{status}"
        );
    }
}

#[test]
fn a_push_forgets_upload_sessions_left_more_than_a_day_ago() {
    let registry = Registry::start();
    let source = format!("{}/source:1", registry.host());
    push_hello(&registry, "sessions\n", "source:1", &[]);
    let s = client_store();
    strata(&s, &["pull", "-q", &source]).ok();
    // What pushes that died left: one two days ago, one an hour ago.
    let sessions = s.root().join("tmp/uploads");
    std::fs::create_dir_all(&sessions).unwrap();
    let now = std::time::SystemTime::now();
    let hours = |n: u64| std::time::Duration::from_secs(n * 3600);
    for (file, age) in [("stale", hours(48)), ("recent", hours(1))] {
        let path = sessions.join(file);
        std::fs::write(&path, b"{}").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(now - age).unwrap();
    }
    let name = format!("{}/copy:1", registry.host());
    strata(&s, &["tag", &source, &name]).ok();
    strata(&s, &["push", &name]).ok();
    let mut left: Vec<_> = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["recent"]);
}

#[test]
fn a_push_without_login_to_a_registry_that_is_down_or_of_no_image_fails_in_one_line() {
    let (_registry, host, _) = private_registry("guarded\n", "guarded:1");
    let name = format!("{host}/mine:1");
    let s = busybox_as(&name);
    let r = strata(&s, &["push", &name]);
    one_line_125(&r, "push without login");
    assert!(
        r.stderr.contains("unauthorized: authentication required"),
        "{}",
        r.stderr
    );

    let down = format!("127.0.0.1:{}/mine:1", free_port());
    strata(&s, &["tag", "busybox", &down]).ok();
    let r = strata(&s, &["push", &down]);
    one_line_125(&r, "push to a registry that is down");
    assert!(r.stderr.contains("connection refused"), "{}", r.stderr);

    let r = strata(&s, &["push", &format!("{host}/nothing:1")]);
    one_line_125(&r, "push of no image");
    assert!(r.stderr.contains("No such image"), "{}", r.stderr);
    // Nothing was uploaded, so no session is left to resume.
    assert!(std::fs::read_dir(s.root().join("tmp/uploads"))
        .map(|d| d.count() == 0)
        .unwrap_or(true));
}

#[test]
fn a_push_killed_mid_chunk_leaves_a_consistent_store_and_the_next_push_resumes() {
    // The third PATCH is held: strata waits in the middle of it when it
    // is killed.
    let cut = common::fault_proxy::Cut {
        nth: 3,
        hold: true,
        ..Default::default()
    };
    let (s, registry, proxy, name) = busybox_behind_proxy(Some(cut), "killed:1");
    let mut child = push_in_chunks_cmd(&s, &name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while proxy.cuts() == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("push ended ({status}) before its third chunk");
        }
        assert!(std::time::Instant::now() < deadline, "no third PATCH");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.heal();
    strata(&s, &["verify"]).ok();

    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let size = pushed_layer_size(&registry, "killed", "1");
    // The two chunks the killed push sent are not sent again.
    assert_eq!(proxy.patches(), size.div_ceil(CUT_CHUNK) as usize + 1);
    pushed_image_is_whole(&s, &registry, "killed:1");
}

#[test]
fn a_saved_session_holding_other_bytes_is_refused_at_the_put_and_the_blob_sent_again() {
    // Learn the layer's blob digest from a first push elsewhere.
    let first = Registry::start();
    let name = format!("{}/first:1", first.host());
    let s = busybox_as(&name);
    strata(&s, &["push", &name]).ok();
    let digest = pushed_manifest(&first, "first", "1")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // On another registry, a session holding two chunks of zeros, saved
    // under that digest as a run that died would have left it.
    let registry = Registry::start();
    let host = registry.host();
    let started = ureq::post(&format!("http://{host}/v2/stale/blobs/uploads/"))
        .send_empty()
        .unwrap();
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let patched = ureq::patch(&location)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("0-{}", 2 * CUT_CHUNK - 1))
        .send(&vec![0u8; 2 * CUT_CHUNK as usize][..])
        .unwrap();
    let location = patched.headers()["location"].to_str().unwrap().to_string();
    let repository = format!("{host}/stale");
    let sessions = s.root().join("tmp/uploads");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(
        sessions.join(sha256_hex(format!("{repository}\n{digest}").as_bytes())),
        serde_json::to_vec(&serde_json::json!({
            "repository": repository, "digest": digest, "location": location,
        }))
        .unwrap(),
    )
    .unwrap();

    let name = format!("{host}/stale:1");
    strata(&s, &["tag", "busybox", &name]).ok();
    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    pushed_image_is_whole(&s, &registry, "stale:1");
    assert_eq!(std::fs::read_dir(&sessions).unwrap().count(), 0);
}

#[test]
fn a_registry_s_chunk_minimum_is_kept() {
    // A registry that wants chunks of at least 256 KiB (OCI distribution
    // 1.1's OCI-Chunk-Min-Length), for a push asked for 64 KiB ones.
    let (s, registry, proxy, name) = busybox_behind_proxy(None, "minimum:1");
    let proxy = proxy.with_answer_header("OCI-Chunk-Min-Length", "262144");
    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let size = pushed_layer_size(&registry, "minimum", "1");
    assert_eq!(proxy.patches(), size.div_ceil(262144) as usize);
    pushed_image_is_whole(&s, &registry, "minimum:1");
}

/// A `Location` of the form `//host:port/path` names another host (RFC
/// 3986's network-path reference), as a registry with a storage front
/// may answer. The proxy in front of the registry rewrites each upload
/// `Location` to name the registry itself that way: the chunks and the
/// closing PUT must go there, past the proxy, and not to the path
/// `//127.0.0.1:PORT/...` of the proxy.
#[test]
fn an_upload_location_naming_another_host_is_followed_there() {
    let (s, registry, proxy, name) = busybox_behind_proxy(None, "elsewhere:1");
    let from = format!("Location: http://{}/", proxy.host());
    let proxy = proxy.with_answer_rewrite(&from, &format!("Location: //{}/", registry.host()));
    let r = push_in_chunks(&s, &name);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.patches(), 0, "the chunks went through the proxy");
    pushed_image_is_whole(&s, &registry, "elsewhere:1");
}

/// A registry behind a token service mounts a blob from another
/// repository only for a token that may pull that repository too: the
/// push asks for both scopes, by the OAuth2 POST (space-separated) and by
/// the GET (a `scope` parameter each).
#[test]
fn a_cross_repository_mount_asks_for_a_token_that_may_pull_the_source() {
    for grant in [PasswordGrant::Taken, PasswordGrant::Refused(405)] {
        let work = tempfile::tempdir().unwrap();
        let (_tokens, registry) = token_guarded_registry(work.path(), token_secrets(false, grant));
        let host = registry.host();
        let src = format!("{host}/src:1");
        let s = busybox_as(&src);
        login_as_tester(&s, &host, "right-pass").ok();
        let r = strata(&s, &["push", &src]).ok().stdout;
        assert!(r.contains(": Pushed\n"), "{r}");
        let dst = format!("{host}/dst:1");
        strata(&s, &["tag", &src, &dst]).ok();
        let r = strata(&s, &["push", &dst]).ok().stdout;
        assert!(r.contains(": Mounted from src\n"), "{grant:?}: {r}");
        assert!(!r.contains(": Pushed"), "{grant:?}: {r}");
    }
}

/// podman and skopeo keep a login for one namespace under `host/namespace`
/// (`podman login host/team`): it is that namespace's, sent for
/// repositories under it only, and the closest key wins over one for the
/// whole host, as containers/image reads them.
#[test]
fn a_login_for_one_namespace_is_used_for_that_namespace_only() {
    let (_registry, host, config) = private_registry("namespaced\n", "team/app:1");
    let full = format!("{host}/team/app:1");
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("auth.json");
    let s = client_store();
    let right = basic64("tester:right-pass");
    let wrong = basic64("tester:wrong-pass");
    let pull_with = |auths: serde_json::Value| -> Run {
        let file = serde_json::json!({ "auths": auths });
        std::fs::write(&auth_file, file.to_string()).unwrap();
        strata_cmd(&s, &["pull", "-q", &full])
            .env("REGISTRY_AUTH_FILE", &auth_file)
            .output()
            .unwrap()
            .into()
    };
    let r = pull_with(serde_json::json!({ format!("{host}/other"): {"auth": right} }));
    one_line_125(&r, "a login for another namespace");
    assert!(r.stderr.contains("unauthorized"), "{}", r.stderr);
    strata(&s, &["verify"]).ok();

    let closest = [
        serde_json::json!({ host.clone(): {"auth": wrong}, format!("{host}/team"): {"auth": right} }),
        serde_json::json!({
            format!("{host}/team"): {"auth": wrong},
            format!("{host}/team/app"): {"auth": right},
            format!("{host}/team/application"): {"auth": wrong},
        }),
    ];
    for auths in closest {
        let r = pull_with(auths.clone());
        assert_eq!(r.code, 0, "{auths}: {}", r.stderr);
        assert_eq!(
            image_id(&s, &full),
            format!("sha256:{}", sha256_hex(&config))
        );
        strata(&s, &["rmi", &full]).ok();
    }
}
