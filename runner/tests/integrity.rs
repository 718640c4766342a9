//! No input is trusted: `load` keeps every path inside its archive and
//! checks every digest, `import` reads a tar to its end with every
//! checksum checked and loses nothing docker would keep. Every malicious
//! archive is made here, at test time; podman and skopeo (Debian's) make
//! the foreign ones, in temporary stores of their own.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{gzip, noise, Strata, TarMaker};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", layerdb::Digest::of(bytes).hex())
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// A layer with a directory, a big file and a small one.
fn layer_tar() -> Vec<u8> {
    TarMaker::new()
        .dir("etc")
        .file("etc/hostname", b"layer\n")
        .file("big", &noise(300_000, 9))
        .bytes()
}

/// An image config with every field docker writes.
fn config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": layerdb::image::host_architecture(),
        "created": "2024-01-02T03:04:05Z",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"] },
        "history": [{ "created": "2024-01-02T03:04:05Z", "created_by": "test" }],
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

/// A config without `created` or history and with docker's `null`s.
fn sparse_config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": layerdb::image::host_architecture(),
        "os": "linux",
        "config": { "Cmd": null, "Env": ["PATH=/bin"], "Entrypoint": null },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let d = sha(bytes);
    std::fs::write(blobs.join(hex(&d)), bytes).unwrap();
    d
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha(bytes), "size": bytes.len() })
}

/// Writes an OCI layout of one image (its layer gzip-compressed, as
/// podman's are) and gives the manifest's bytes.
fn oci_layout(dir: &Path, layer: &[u8], config: &[u8], annotations: Value) -> Vec<u8> {
    let gz = gzip(layer);
    write_blob(dir, &gz);
    write_blob(dir, config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &gz)],
    }))
    .unwrap();
    write_blob(dir, &manifest);
    let mut desc = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    desc["annotations"] = annotations;
    write_index(dir, vec![desc]);
    manifest
}

fn write_index(dir: &Path, manifests: Vec<Value>) {
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": manifests })).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A docker archive's `manifest.json` naming `config` and `layers`.
fn docker_manifest(dir: &Path, config: &str, layers: &[&str], tag: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let m = json!([{ "Config": config, "RepoTags": [tag], "Layers": layers }]);
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
}

/// A tar of a directory as it is, symlinks kept as symlinks.
fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

/// Loads `-i input` and expects it refused: exit 125, one line saying
/// `expect`, no image in the store, and the store still whole.
fn assert_refused(s: &Strata, input: &Path, expect: &str) {
    let before = s.run(&["images", "-a", "-q", "--no-trunc"]).ok().stdout;
    let r = s.run(&["load", "-i", input.to_str().unwrap()]);
    assert_eq!(r.code, 125, "{}: {}{}", input.display(), r.stdout, r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(expect),
        "{}: {}",
        input.display(),
        r.stderr
    );
    assert_eq!(
        s.run(&["images", "-a", "-q", "--no-trunc"]).ok().stdout,
        before
    );
    let v = s.run(&["verify"]);
    assert_eq!(v.code, 0, "verify failed: {}{}", v.stdout, v.stderr);
}

fn image_id(s: &Strata, image: &str) -> String {
    let out = s.run(&["image", "inspect", image]).ok().stdout;
    let v: Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0]["Id"].as_str().expect("an id").to_string()
}

#[test]
fn load_refuses_layer_paths_that_leave_the_archive() {
    let s = Strata::new();
    let layer = layer_tar();
    let config = config_for(&[sha(&layer)]);
    // A valid layer outside the layout, named absolutely...
    let outside = s.path("outside.tar");
    std::fs::write(&outside, &layer).unwrap();
    let abs = s.path("abs");
    docker_manifest(&abs, "config.json", &[outside.to_str().unwrap()], "evil:1");
    std::fs::write(abs.join("config.json"), &config).unwrap();
    assert_refused(&s, &abs, "absolute");
    // ... and by climbing out of it.
    let climb = s.path("climb/a/b");
    docker_manifest(&climb, "config.json", &["../../x.tar"], "evil:1");
    std::fs::write(s.path("climb/x.tar"), &layer).unwrap();
    std::fs::write(climb.join("config.json"), &config).unwrap();
    assert_refused(&s, &climb, "climbs out");
    let archive = s.path("climb.tar");
    std::fs::write(&archive, tar_of(&climb)).unwrap();
    assert_refused(&s, &archive, "climbs out");
}

#[test]
fn load_refuses_a_layer_path_of_path_max_bytes() {
    let s = Strata::new();
    let layer = TarMaker::new()
        .file("big", &noise(1 << 20, 5))
        .file(&format!("{}ff", "d/".repeat(2047)), b"x")
        .bytes();
    let dir = s.path("deep");
    docker_manifest(&dir, "config.json", &["layer.tar"], "deep:1");
    std::fs::write(dir.join("layer.tar"), &layer).unwrap();
    std::fs::write(dir.join("config.json"), config_for(&[sha(&layer)])).unwrap();
    assert_refused(&s, &dir, "its name is 4096 bytes");
    let chunks = std::fs::read_dir(s.root().join("chunks")).unwrap().count();
    assert_eq!(chunks, 0, "the big file's chunks are removed");
}

#[test]
fn load_refuses_digests_that_are_not_sha256_hex() {
    let s = Strata::new();
    let dir = s.path("layout");
    let layer = layer_tar();
    let manifest = oci_layout(&dir, &layer, &config_for(&[sha(&layer)]), json!({}));
    // The manifest outside blobs/, reached by a digest that is a path.
    std::fs::write(dir.join("m.json"), &manifest).unwrap();
    for digest in ["sha256:../../m.json", "sha256:../../.."] {
        let mut desc = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
        desc["digest"] = json!(digest);
        write_index(&dir, vec![desc]);
        assert_refused(&s, &dir, "index.json: not a valid image index");
    }
}

#[test]
fn load_follows_no_symlink_to_a_blob() {
    let s = Strata::new();
    let layer = layer_tar();
    let real = s.path("real-layer.tar");
    std::fs::write(&real, &layer).unwrap();
    // The layer blob, in a directory layout and in a tar, is a symlink to
    // a file the archive does not hold.
    let dir = s.path("layout");
    let config = config_for(&[sha(&layer)]);
    write_blob(&dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    write_blob(&dir, &manifest);
    write_index(
        &dir,
        vec![descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )],
    );
    std::os::unix::fs::symlink(&real, dir.join("blobs/sha256").join(hex(&sha(&layer)))).unwrap();
    assert_refused(&s, &dir, "symlink");
    let archive = s.path("layout.tar");
    std::fs::write(&archive, tar_of(&dir)).unwrap();
    assert_refused(&s, &archive, "is a symlink");
    // A symlinked directory on the way is refused too.
    let moved = s.path("elsewhere");
    std::fs::rename(dir.join("blobs"), &moved).unwrap();
    std::fs::remove_file(moved.join("sha256").join(hex(&sha(&layer)))).unwrap();
    std::fs::write(moved.join("sha256").join(hex(&sha(&layer))), &layer).unwrap();
    std::os::unix::fs::symlink(&moved, dir.join("blobs")).unwrap();
    assert_refused(&s, &dir, "symlink");
}

#[test]
fn a_changed_byte_in_any_blob_is_refused_and_changes_nothing() {
    let s = Strata::new();
    let mine = TarMaker::new()
        .file("mine", b"the first image")
        .write(&s.path("mine.tar"));
    let kept = s.import(&mine, "victim:1");
    let layer = layer_tar();
    let dir = s.path("layout");
    oci_layout(
        &dir,
        &layer,
        &config_for(&[sha(&layer)]),
        json!({ "io.containerd.image.name": "victim:1" }),
    );
    let layer_gz = dir.join("blobs/sha256").join(hex(&sha(&gzip(&layer))));
    let config = dir
        .join("blobs/sha256")
        .join(hex(&sha(&config_for(&[sha(&layer)]))));
    // A flipped byte in compressed data may break the deflate stream
    // before its digest can be checked: either way the layer is named.
    let layer_name = format!("layer {:?}", layer_gz.strip_prefix(&dir).unwrap());
    for (blob, expect) in [
        (&layer_gz, layer_name.as_str()),
        (&config, "content hashes to"),
    ] {
        let good = std::fs::read(blob).unwrap();
        let mut bad = good.clone();
        let middle = bad.len() / 2;
        bad[middle] ^= 0x01;
        std::fs::write(blob, &bad).unwrap();
        assert_refused(&s, &dir, expect);
        std::fs::write(blob, &good).unwrap();
    }
    assert_eq!(image_id(&s, "victim:1"), kept, "the tag was taken over");
    // Intact, it loads and takes the tag.
    s.run(&["load", "-i", dir.to_str().unwrap()]).ok();
    assert_ne!(image_id(&s, "victim:1"), kept);
}

/// docker's `save` of an image named by its id or digest records no name,
/// so loading it gives an untagged image, not one named after the id; by
/// one of its tags, the tag goes with it.
#[test]
fn an_image_saved_by_id_loads_untagged_and_one_saved_by_tag_keeps_it() {
    let src = Strata::new();
    let tar = TarMaker::new().file("f", b"x").write(&src.path("a.tar"));
    src.import(&tar, "img:1");
    let id = image_id(&src, "img:1");
    let short = &hex(&id)[..12];
    for (name, tags) in [
        (short, json!([])),
        (&id, json!([])),
        ("img:1", json!(["img:1"])),
    ] {
        let dir = src.path(&format!("saved-{}", name.replace(':', "-")));
        src.save_to_dir(&dir, name).ok();
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest[0]["RepoTags"], tags, "saved as {name}");
        let s = Strata::new();
        s.run(&["load", "-i", dir.to_str().unwrap()]).ok();
        let listed = s.run(&["images"]).ok().stdout;
        let repository = listed
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().next());
        let expected = if name == "img:1" { "img" } else { "<none>" };
        assert_eq!(repository, Some(expected), "saved as {name}: {listed}");
    }
}

#[test]
fn an_uncompressed_layer_with_a_changed_byte_is_refused() {
    let s = Strata::new();
    let src = Strata::new();
    let tar = TarMaker::new()
        .file("big", &noise(200_000, 4))
        .write(&src.path("a.tar"));
    src.import(&tar, "img:1");
    let dir = s.path("saved");
    src.save_to_dir(&dir, "img:1").ok();
    let diff_id = {
        let out = src.run(&["image", "inspect", "img:1"]).ok().stdout;
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0]["RootFS"]["Layers"][0].as_str().unwrap().to_string()
    };
    let blob = dir.join("blobs/sha256").join(hex(&diff_id));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100_000] ^= 0x01; // inside the file's content
    std::fs::write(&blob, &bytes).unwrap();
    assert_refused(&s, &dir, "content hashes to");
    // The docker form (manifest.json alone) checks the diff id instead.
    std::fs::remove_file(dir.join("index.json")).unwrap();
    assert_refused(&s, &dir, "content hashes to");
}

#[test]
fn a_config_whose_diff_ids_differ_from_its_layers_is_refused() {
    let s = Strata::new();
    let dir = s.path("archive");
    docker_manifest(&dir, "config.json", &["layer.tar"], "mismatch:1");
    std::fs::write(dir.join("layer.tar"), layer_tar()).unwrap();
    let other = TarMaker::new().file("other", b"x").bytes();
    std::fs::write(dir.join("config.json"), config_for(&[sha(&other)])).unwrap();
    assert_refused(&s, &dir, "the image config says");
}

#[test]
fn an_index_picks_this_machines_image_and_the_config_keeps_its_bytes() {
    let s = Strata::new();
    let dir = s.path("multi");
    let layer = layer_tar();
    let config = sparse_config_for(&[sha(&layer)]);
    let manifest = oci_layout(&dir, &layer, &config, json!({}));
    let other = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "e".repeat(64)), "size": 10,
        "platform": { "architecture": "s390x", "os": "linux" } });
    let mut mine = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    mine["platform"] =
        json!({ "architecture": layerdb::image::host_architecture(), "os": "linux" });
    let nested =
        serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": [other, mine] })).unwrap();
    write_blob(&dir, &nested);
    let mut top = descriptor("application/vnd.oci.image.index.v1+json", &nested);
    top["annotations"] =
        json!({ "org.opencontainers.image.ref.name": "docker.io/library/multi:2" });
    write_index(&dir, vec![top]);
    let out = s.run(&["load", "-i", dir.to_str().unwrap()]).ok().stdout;
    assert_eq!(out.trim(), "Loaded image: multi:2");
    assert_eq!(image_id(&s, "multi:2"), sha(&config));
    s.run(&["history", "multi:2"]).ok();
    s.run(&["verify"]).ok();
}

#[test]
fn an_empty_layer_loads() {
    let s = Strata::new();
    let dir = s.path("archive");
    let layer = layer_tar();
    let empty = vec![0u8; 1024];
    docker_manifest(&dir, "config.json", &["l.tar", "empty.tar"], "withempty:1");
    std::fs::write(dir.join("l.tar"), &layer).unwrap();
    std::fs::write(dir.join("empty.tar"), &empty).unwrap();
    let config = config_for(&[sha(&layer), sha(&empty)]);
    assert_eq!(
        sha(&empty),
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    );
    std::fs::write(dir.join("config.json"), &config).unwrap();
    s.run(&["load", "-i", dir.to_str().unwrap()]).ok();
    assert_eq!(image_id(&s, "withempty:1"), sha(&config));
    s.run(&["verify"]).ok();
}

/// podman in a store of its own under `dir`, never the machine's.
fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        // libpod's state (its `alive` file) too: the default, /run/libpod,
        // is shared with every other podman on the machine, which may be
        // setting it up or tearing it down at the same moment.
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .args(["--storage-driver", "vfs"]);
    c
}

fn ok(c: &mut Command) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{c:?}: {e} (is it installed? scripts/setup installs it)"));
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A busybox tree as a tar, for podman to import.
/// A busybox tree as GNU tar writes it (GNU headers, owner names, out of
/// path order): the layer strata keeps, its canonical tar, has another
/// diff id than the one podman names.
fn busybox_tar(path: &Path) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |kind: tar::EntryType, name: &str, mode: u32, data: &[u8], link: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").unwrap();
        h.set_groupname("root").unwrap();
        if link.is_empty() {
            b.append_data(&mut h, name, data).unwrap();
        } else {
            b.append_link(&mut h, name, link).unwrap();
        }
    };
    use tar::EntryType::{Directory, Regular, Symlink};
    add(Directory, "etc/", 0o755, b"", "");
    add(
        Regular,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
        "",
    );
    add(Directory, "bin/", 0o755, b"", "");
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    add(Regular, "bin/busybox", 0o755, &busybox, "");
    add(Symlink, "bin/sh", 0o777, b"", "busybox");
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
    path.to_path_buf()
}

/// podman's save of a busybox image it imported, and podman's image id.
fn podman_archive(s: &Strata, format: &str) -> (PathBuf, String) {
    let pod = s.path("podman");
    if !pod.exists() {
        let tar = busybox_tar(&s.path("bb.tar"));
        ok(podman(&pod).arg("import").arg(&tar).arg("localhost/bbx:v1"));
    }
    let id = ok(podman(&pod).args(["images", "--no-trunc", "--format", "{{.ID}}"]));
    let id = id.trim().trim_start_matches("sha256:");
    let archive = s.path(&format!("{format}.tar"));
    ok(podman(&pod)
        .args(["save", "--format", format, "-o"])
        .arg(&archive)
        .arg("localhost/bbx:v1"));
    (archive, format!("sha256:{id}"))
}

#[test]
fn a_commit_on_a_loaded_foreign_image_keeps_its_layers() {
    let s = Strata::new();
    common::privileges::require_root_and_fuse();
    let (archive, _) = podman_archive(&s, "oci-archive");
    s.run(&["load", "-i", archive.to_str().unwrap()]).ok();
    s.run(&[
        "run",
        "--name",
        "changer",
        "localhost/bbx:v1",
        "/bin/busybox",
        "sh",
        "-c",
        "echo hi > /f",
    ])
    .ok();
    s.run(&["commit", "changer", "child:1"]).ok();
    s.run(&["rm", "changer"]).ok();
    let out = s
        .run(&[
            "run",
            "--rm",
            "child:1",
            "/bin/busybox",
            "cat",
            "/f",
            "/etc/passwd",
        ])
        .ok()
        .stdout;
    assert!(out.starts_with("hi\nroot:"), "{out}");
    s.run(&["verify"]).ok();
}

#[test]
fn images_podman_saved_keep_podmans_id_and_name() {
    let s = Strata::new();
    for format in ["oci-archive", "docker-archive"] {
        let (archive, id) = podman_archive(&s, format);
        let fresh = Strata::new();
        let out = fresh
            .run(&["load", "-i", archive.to_str().unwrap()])
            .ok()
            .stdout;
        assert_eq!(out.trim(), "Loaded image: localhost/bbx:v1", "{format}");
        assert_eq!(image_id(&fresh, "localhost/bbx:v1"), id, "{format}");
        fresh.run(&["verify"]).ok();
        // Compressed, through stdin, the same.
        let piped = Strata::new();
        piped
            .run_stdin(&["load"], &gzip(&std::fs::read(&archive).unwrap()))
            .ok();
        assert_eq!(image_id(&piped, "localhost/bbx:v1"), id, "{format}");
        // What strata saves of it loads again.
        let saved = fresh.path("saved.tar");
        fresh
            .run(&["save", "-o", saved.to_str().unwrap(), "localhost/bbx:v1"])
            .ok();
        let again = Strata::new();
        again.run(&["load", "-i", saved.to_str().unwrap()]).ok();
        // With podman's layer tars byte for byte, so with podman's id, in
        // strata and back in podman.
        assert_eq!(image_id(&again, "localhost/bbx:v1"), id, "{format}");
        let pod = fresh.path("podman-again");
        ok(podman(&pod).arg("load").arg("-i").arg(&saved));
        let back = ok(podman(&pod).args(["images", "--no-trunc", "--format", "{{.ID}}"]));
        assert_eq!(
            format!("sha256:{}", back.trim().trim_start_matches("sha256:")),
            id,
            "{format}: podman's id of strata's save"
        );
    }
}

#[test]
fn skopeo_layouts_keep_their_ref_name() {
    let s = Strata::new();
    let (archive, id) = podman_archive(&s, "oci-archive");
    let from = format!("oci-archive:{}", archive.display());
    let layout = s.path("layout");
    ok(Command::new("skopeo").args(["copy", &from, &format!("oci:{}:mytag", layout.display())]));
    let named = s.path("named.tar");
    ok(Command::new("skopeo").args([
        "copy",
        &from,
        &format!("oci-archive:{}:foo/bar:v2", named.display()),
    ]));
    for (input, name) in [(&layout, "mytag:latest"), (&named, "foo/bar:v2")] {
        let fresh = Strata::new();
        let out = fresh
            .run(&["load", "-i", input.to_str().unwrap()])
            .ok()
            .stdout;
        assert_eq!(out.trim(), format!("Loaded image: {name}"));
        assert_eq!(image_id(&fresh, name), id);
    }
}

/// Imports `bytes` and expects it refused with exit 125 and nothing stored.
fn assert_import_refused(s: &Strata, name: &str, bytes: &[u8], expect: &str) -> String {
    let path = s.path(name);
    std::fs::write(&path, bytes).unwrap();
    let r = s.run(&["import", path.to_str().unwrap(), "refused"]);
    assert_eq!(r.code, 125, "{name}: {}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{name}: {}", r.stderr);
    assert!(r.stderr.contains(expect), "{name}: {}", r.stderr);
    assert_eq!(s.run(&["images", "-a", "-q"]).ok().stdout, "");
    s.run(&["verify"]).ok();
    r.stderr
}

#[test]
fn a_flipped_byte_in_a_compressed_tar_fails_the_import() {
    let s = Strata::new();
    let tar = TarMaker::new().file("data", &noise(400_000, 3)).bytes();
    // Stored deflate blocks and raw zstd blocks: the flipped byte decodes
    // fine, only the stream's checksum can tell.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(&tar).unwrap();
    let mut gz = gz.finish().unwrap();
    let middle = gz.len() / 2;
    gz[middle] ^= 0x01;
    assert_import_refused(&s, "bad.tar.gz", &gz, "corrupt");
    let mut enc = zstd::Encoder::new(Vec::new(), 1).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(&tar).unwrap();
    let mut zst = enc.finish().unwrap();
    let middle = zst.len() / 2;
    zst[middle] ^= 0x01;
    assert_import_refused(&s, "bad.tar.zst", &zst, "corrupt");
}

#[test]
fn a_multi_member_gzip_imports_whole() {
    let s = Strata::new();
    let tar = TarMaker::new()
        .file("a", &noise(100_000, 1))
        .file("b", b"tail")
        .bytes();
    let (head, rest) = tar.split_at(30_000);
    let mut two = Vec::new();
    for part in [head, rest] {
        two.extend(gzip(part));
    }
    std::fs::write(s.path("two.tar.gz"), &two).unwrap();
    std::fs::write(s.path("one.tar"), &tar).unwrap();
    s.import(&s.path("two.tar.gz"), "two");
    s.import(&s.path("one.tar"), "one");
    assert_eq!(image_id(&s, "two").len(), 71);
    let layers = |i: &str| {
        let v: Value = serde_json::from_str(&s.run(&["image", "inspect", i]).ok().stdout).unwrap();
        v[0]["RootFS"]["Layers"].clone()
    };
    assert_eq!(layers("two"), layers("one"));
}

/// Unmounts an inspection mount when dropped, even after a failed assert.
struct Mounted<'a>(&'a Strata, PathBuf);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        self.0.run(&["umount", self.1.to_str().unwrap()]);
    }
}

#[test]
fn missing_parent_directories_are_made_as_docker_makes_them() {
    common::privileges::require_root_and_fuse();
    use std::os::unix::fs::MetadataExt;
    let s = Strata::new();
    let tar = TarMaker::new()
        .file("a/b/file", b"deep\n")
        .write(&s.path("p.tar"));
    s.import(&tar, "parentless");
    let dir = s.path("mnt");
    s.run(&["mount", "parentless", dir.to_str().unwrap()]).ok();
    let _mounted = Mounted(&s, dir.clone());
    for d in ["a", "a/b"] {
        let m = std::fs::metadata(dir.join(d)).unwrap();
        assert!(m.is_dir(), "{d}");
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0), "{d}");
    }
    assert_eq!(std::fs::read(dir.join("a/b/file")).unwrap(), b"deep\n");
}

#[test]
fn a_layer_without_its_parents_keeps_the_lower_layers_directories() {
    common::privileges::require_root_and_fuse();
    use std::os::unix::fs::MetadataExt;
    let s = Strata::new();
    let mut lower = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o700);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_size(0);
    lower.append_data(&mut h, "a/", std::io::empty()).unwrap();
    let lower = lower.into_inner().unwrap();
    let upper = TarMaker::new().file("a/b/file", b"upper\n").bytes();
    let dir = s.path("archive");
    docker_manifest(&dir, "config.json", &["lower.tar", "upper.tar"], "two:1");
    std::fs::write(dir.join("lower.tar"), &lower).unwrap();
    std::fs::write(dir.join("upper.tar"), &upper).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config_for(&[sha(&lower), sha(&upper)]),
    )
    .unwrap();
    s.run(&["load", "-i", dir.to_str().unwrap()]).ok();
    let mnt = s.path("mnt");
    s.run(&["mount", "two:1", mnt.to_str().unwrap()]).ok();
    let _mounted = Mounted(&s, mnt.clone());
    let attrs = |d: &str| {
        let m = std::fs::metadata(mnt.join(d)).unwrap();
        (m.is_dir(), m.mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(
        attrs("a"),
        (true, 0o700, 1000, 1000),
        "the lower layer's a/"
    );
    assert_eq!(attrs("a/b"), (true, 0o755, 0, 0), "docker's default");
    assert_eq!(std::fs::read(mnt.join("a/b/file")).unwrap(), b"upper\n");
}

/// The content of `path` in the image's saved layer tar.
fn saved_file(s: &Strata, image: &str, path: &str) -> Vec<u8> {
    let out = s.path(&format!("saved-{}", image.replace(':', "-")));
    s.save_to_dir(&out, image).ok();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let layer = out.join(manifest[0]["Layers"][0].as_str().unwrap());
    let mut archive = tar::Archive::new(std::fs::File::open(layer).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(path) {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            return data;
        }
    }
    panic!("{path} is not in {image}'s layer");
}

/// GNU tar's sparse archive `NAME.tar` (in `flags`' format) of `file` in
/// `dir`.
fn sparse_tar(s: &Strata, (dir, file): (&Path, &str), name: &str, flags: &[&str]) -> PathBuf {
    let tar = s.path(&format!("{name}.tar"));
    let out = Command::new("tar")
        .args(flags)
        .args(["-S", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(dir)
        .arg(file)
        .output()
        .expect("GNU tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}

#[test]
fn sparse_files_import_with_their_whole_content() {
    let s = Strata::new();
    let tree = s.path("tree");
    std::fs::create_dir(&tree).unwrap();
    let file = tree.join("sparse");
    let mut expected = vec![0u8; 3_000_000];
    expected[100_000..100_005].copy_from_slice(b"hello");
    expected[2_000_000..2_070_000].copy_from_slice(&noise(70_000, 5));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(expected.len() as u64).unwrap();
        f.write_all_at(&expected[100_000..100_005], 100_000)
            .unwrap();
        f.write_all_at(&expected[2_000_000..2_070_000], 2_000_000)
            .unwrap();
    }
    let cases = [
        ("pax10", vec!["--format=posix", "--sparse-version=1.0"]),
        ("pax01", vec!["--format=posix", "--sparse-version=0.1"]),
        ("pax00", vec!["--format=posix", "--sparse-version=0.0"]),
        ("gnu", vec!["--format=gnu"]),
    ];
    for (name, flags) in cases {
        let tar = sparse_tar(&s, (&tree, "sparse"), name, &flags);
        s.import(&tar, name);
        assert!(
            saved_file(&s, name, "sparse") == expected,
            "{name}: the content differs"
        );
    }
}

/// A sparse file's holes are read as zeros and hashed: a tiny layer
/// declaring a huge one kept an import (or a pull) hashing for good. One
/// of 1 TiB, a few bytes of data, is refused at once in every format.
#[test]
fn a_huge_sparse_file_is_refused_at_once() {
    let s = Strata::new();
    let tree = s.path("tree");
    std::fs::create_dir(&tree).unwrap();
    let file = std::fs::File::create(tree.join("huge")).unwrap();
    file.set_len(1 << 40).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"data", 1 << 20).unwrap();
    for (name, flags) in [
        ("pax10", vec!["--format=posix", "--sparse-version=1.0"]),
        ("pax01", vec!["--format=posix", "--sparse-version=0.1"]),
        ("gnu", vec!["--format=gnu"]),
    ] {
        let tar = sparse_tar(&s, (&tree, "huge"), name, &flags);
        assert!(
            std::fs::metadata(&tar).unwrap().len() < 1 << 20,
            "{name}: not sparse"
        );
        let r = s.run(&["import", tar.to_str().unwrap(), name]);
        assert_eq!(r.code, 125, "{name}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains("a sparse file of 1099511627776 bytes") && r.stderr.contains("huge"),
            "{name}: {}",
            r.stderr
        );
    }
    assert!(!s.run(&["images"]).ok().stdout.contains("pax"));
}

#[test]
fn docker_keeps_the_last_duplicate_and_a_climbing_relative_symlink() {
    let s = Strata::new();
    let tar = TarMaker::new()
        .file("a", b"first")
        .file("./a", b"second")
        .dir("d")
        .symlink("d/up", "../../../etc/passwd")
        .write(&s.path("dup.tar"));
    s.import(&tar, "dup");
    assert_eq!(saved_file(&s, "dup", "a"), b"second");
}

#[test]
fn error_messages_escape_the_bytes_they_quote() {
    let s = Strata::new();
    let mut tar = TarMaker::new()
        .file("evil\x1b[2J\x1b[31mname", b"x")
        .bytes();
    // A mode field that is not octal: the tar reader's error quotes the name.
    tar[100..108].copy_from_slice(b"zzzzzzz\0");
    let mut h = tar::Header::from_byte_slice(&tar[..512]).clone();
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    let err = assert_import_refused(&s, "evil.tar", &tar, "evil");
    assert!(!err.contains('\x1b'), "raw escape in {err:?}");
    assert!(err.contains("\\u{1b}"), "{err:?}");
}

#[test]
fn a_docker_archive_naming_its_image_with_an_invalid_name_is_refused() {
    let s = Strata::new();
    let dir = s.path("archive");
    docker_manifest(&dir, "config.json", &["layer.tar"], "Bad Name:1");
    let layer = layer_tar();
    std::fs::write(dir.join("config.json"), config_for(&[sha(&layer)])).unwrap();
    std::fs::write(dir.join("layer.tar"), layer).unwrap();
    assert_refused(&s, &dir, "invalid image name \"Bad Name:1\"");
}
