//! The layer store through the `strata` binary: import, images, tag, rmi,
//! inspect, save, df, gc, verify, bad input and several processes at once.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use common::{gzip, noise, Strata, TarMaker};
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn sample_tar() -> TarMaker {
    TarMaker::new()
        .dir("./")
        .dir("./etc")
        .file("./etc/os-release", b"NAME=test\n")
        .dir("./usr")
        .dir("./usr/bin")
        .file("./usr/bin/tool", &noise(300_000, 7))
        .hardlink("./usr/bin/tool2", "./usr/bin/tool")
        .symlink("./bin", "usr/bin")
}

fn diff_ids(s: &Strata, image: &str) -> Vec<String> {
    let out = s.run(&["image", "inspect", image]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0]["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn assert_store_clean(s: &Strata) {
    let v = s.run(&["verify"]);
    assert_eq!(v.code, 0, "verify failed: {}{}", v.stdout, v.stderr);
}

#[test]
fn import_prints_the_image_id_and_images_lists_it() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    let id = s.import(&tar, "sample:1");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let images = s.run(&["images"]).ok().stdout;
    let header = images.lines().next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = images.lines().nth(1).expect("a row");
    assert!(row.starts_with("sample"), "{row}");
    assert!(row.contains(&id[7..19]), "{row}");
    // 10 + 300000 bytes of files, the hardlink once, the symlink's 7 bytes.
    assert!(row.contains("300kB"), "{row}");
    assert_store_clean(&s);
}

/// `inspect` shows each field of docker's Config that docker never
/// leaves out, unset ones null or empty, though the stored config (whose
/// bytes are the image id) leaves them out; set ones as they are. A
/// container's Config has them too.
#[test]
fn inspect_shows_dockers_config_fields_unset_or_set() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    let tar = tar.to_str().unwrap();
    s.run(&["import", "-c", "CMD [\"tool\"]", tar, "img:1"])
        .ok();
    let out = s.run(&["image", "inspect", "img:1"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let config = &v[0]["Config"];
    for key in ["Entrypoint", "Env", "Labels", "Volumes", "OnBuild"] {
        assert_eq!(
            config.get(key),
            Some(&serde_json::Value::Null),
            "{key}: {config}"
        );
    }
    for key in ["WorkingDir", "User", "Hostname", "Image"] {
        assert_eq!(config.get(key), Some(&"".into()), "{key}: {config}");
    }
    assert_eq!(config["Cmd"], serde_json::json!(["tool"]));
    assert_eq!(config["Tty"], false);
    let id = s.run(&["create", "--network", "none", "img:1"]).ok().stdout;
    let out = s.run(&["container", "inspect", id.trim()]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let config = &v[0]["Config"];
    assert_eq!(config.get("OnBuild"), Some(&serde_json::Value::Null));
    assert_eq!(config.get("AttachStdin"), Some(&false.into()));
    assert_eq!(config["Cmd"], serde_json::json!(["tool"]));
}

#[test]
fn images_takes_a_repository_with_or_without_a_tag_as_docker_does() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    let id = s.import(&tar, "localhost:5000/sample:1");
    s.run(&["tag", "localhost:5000/sample:1", "busybox:2"]).ok();
    let short = &id[7..19];
    let listed = |arg: &str| s.run(&["images", "-q", arg]).ok().stdout;
    for arg in [
        "localhost:5000/sample",
        "localhost:5000/sample:1",
        "busybox:2",
        // Globs, as Go's path.Match takes them.
        "busy*",
        "busybox:[0-9]",
        "localhost:5000/*",
        "*",
    ] {
        assert_eq!(listed(arg).trim(), short, "images {arg}");
    }
    for arg in [
        "localhost:5000/sample:2",
        "localhost:5000",
        "busybox:1",
        "Bad Name",
        // docker compares familiar forms only.
        "docker.io/library/busybox:2",
        "busybox:2@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "*/*/*",
    ] {
        assert_eq!(listed(arg), "", "images {arg}");
    }
    // docker's --format: a template per row, or a table of the fields.
    let r = s.run(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
        "busy*",
    ]);
    assert_eq!(r.ok().stdout, format!("busybox:2 {short}\n"));
    let r = s.run(&["images", "--format", "table {{.Tag}}\\t{{.ID}}", "busy*"]);
    assert_eq!(
        r.ok().stdout,
        format!("TAG       IMAGE ID\n2         {short}\n")
    );
    // --filter reference= is the same pattern; dangling= splits by tags.
    let r = s.run(&["images", "-q", "--filter", "reference=busy*"]);
    assert_eq!(r.ok().stdout.trim(), short);
    let r = s.run(&["images", "-q", "--filter", "dangling=true"]);
    assert_eq!(r.ok().stdout, "");
    let r = s.run(&[
        "images",
        "-q",
        "-f",
        "dangling=false",
        "-f",
        "reference=no*",
    ]);
    assert_eq!(r.ok().stdout, "");
    // Rows keep only the references the pattern matched.
    let rows = s.run(&["images", "busy*"]).ok().stdout;
    assert!(rows.contains("busybox"), "{rows}");
    assert!(!rows.contains("sample"), "{rows}");
    // An image without a name is never matched, '<none>' included.
    s.run(&["rmi", "busybox:2", "localhost:5000/sample:1"]).ok();
    s.run(&["import", tar.to_str().unwrap()]).ok();
    assert_eq!(s.run(&["images", "-q"]).ok().stdout.lines().count(), 1);
    let dangling = s.run(&["images", "-q", "-f", "dangling=true"]).ok().stdout;
    assert_eq!(dangling.lines().count(), 1);
    assert_eq!(listed("<none>"), "");
    assert_eq!(listed("*"), "");
    // A malformed pattern is refused, as docker refuses it.
    let r = s.run(&["images", "busy["]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("syntax error in pattern"), "{}", r.stderr);
}

#[test]
fn compressed_and_piped_tars_give_the_same_layer_as_the_plain_one() {
    let s = Strata::new();
    let plain = sample_tar().bytes();
    let tar = s.path("a.tar");
    std::fs::write(&tar, &plain).unwrap();
    s.import(&tar, "plain");

    std::fs::write(s.path("a.tar.gz"), gzip(&plain)).unwrap();
    s.import(&s.path("a.tar.gz"), "gz");

    std::fs::write(
        s.path("a.tar.zst"),
        zstd::encode_all(&plain[..], 1).unwrap(),
    )
    .unwrap();
    s.import(&s.path("a.tar.zst"), "zst");

    s.run_stdin(&["import", "-", "piped"], &plain).ok();
    let want = diff_ids(&s, "plain");
    for other in ["gz", "zst", "piped"] {
        assert_eq!(diff_ids(&s, other), want, "{other}");
    }
    let history = s.run(&["history", "piped"]).ok().stdout;
    assert!(history.contains("Imported from -"), "{history}");
}

#[test]
fn a_directory_imports_with_its_hardlinks_and_symlinks() {
    let s = Strata::new();
    let dir = s.path("tree");
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/f"), noise(100_000, 3)).unwrap();
    std::fs::hard_link(dir.join("a/b/f"), dir.join("a/g")).unwrap();
    std::os::unix::fs::symlink("b/f", dir.join("a/link")).unwrap();
    let out = s.run(&["import", dir.to_str().unwrap(), "tree"]).ok();
    assert!(out.stdout.starts_with("sha256:"));
    let history = s.run(&["history", "tree"]).ok().stdout;
    assert!(
        history.contains(&format!("Imported from {}", dir.display())),
        "{history}"
    );
    assert_store_clean(&s);
}

/// Root imports a directory another user owns, who swaps names in it for
/// links to root's files once the import reads its first file (inotify):
/// a directory for a link to a root-only one, a file for a link to a
/// root-only file. By path, the import read root's files into the image
/// (a review as a local attacker).
#[test]
fn a_directory_changed_under_its_import_gives_up_none_of_roots_files() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let s = Strata::new();
    let src = s.path("users-tree");
    std::fs::create_dir_all(src.join("m")).unwrap();
    // Read first, and long enough for the swap to land meanwhile.
    std::fs::write(src.join("aaa"), noise(16 << 20, 7)).unwrap();
    for i in 0..500 {
        std::fs::write(src.join(format!("m/f{i}")), "user's\n").unwrap();
    }
    std::fs::write(src.join("zzz"), "").unwrap();
    let secret = s.path("roots-only");
    std::fs::create_dir(&secret).unwrap();
    for i in 0..500 {
        std::fs::write(secret.join(format!("f{i}")), "ROOT-SECRET\n").unwrap();
    }
    let watch = Inotify::init(InitFlags::empty()).unwrap();
    watch
        .add_watch(&src.join("aaa"), AddWatchFlags::IN_OPEN)
        .unwrap();
    let swapper = std::thread::spawn({
        let (src, secret) = (src.clone(), secret.clone());
        move || {
            watch.read_events().unwrap();
            std::fs::rename(src.join("m"), src.join("m.old")).unwrap();
            std::os::unix::fs::symlink(&secret, src.join("m")).unwrap();
            std::fs::remove_file(src.join("zzz")).unwrap();
            std::os::unix::fs::symlink(secret.join("f0"), src.join("zzz")).unwrap();
        }
    });
    let run = s.run(&["import", src.to_str().unwrap(), "users:tree"]);
    swapper.join().unwrap();
    if run.code == 0 {
        let saved = s.path("saved.tar");
        s.run(&["save", "-o", saved.to_str().unwrap(), "users:tree"])
            .ok();
        let bytes = std::fs::read(&saved).unwrap();
        let leaked = bytes.windows(11).filter(|w| w == b"ROOT-SECRET").count();
        assert_eq!(leaked, 0, "root's files went into the user's image");
    } else {
        run.refused_with(&format!("{}/m", src.display()));
        assert!(s.run(&["images", "-q"]).ok().stdout.is_empty());
    }
    assert_store_clean(&s);
}

/// `save -o FILE IMAGE...` as docker's: one tar holding every image, a
/// layer they share once, one `manifest.json` entry per image with each
/// tag given for it; loaded into another store, each keeps its id and its
/// tags. A tar is what `-o` writes; `--format oci-dir` a directory.
#[test]
fn save_writes_several_images_into_one_tar_that_loads_whole() {
    let s = Strata::new();
    let base = sample_tar().write(&s.path("base.tar"));
    let base_id = s.import(&base, "base:1");
    s.run(&["tag", "base:1", "base:also"]).ok();
    let other = TarMaker::new()
        .file("other", &noise(100_000, 3))
        .write(&s.path("other.tar"));
    let other_id = s.import(&other, "other:1");
    let file = s.path("both.tar");
    s.run(&[
        "save",
        "-o",
        file.to_str().unwrap(),
        "base:1",
        "other:1",
        "base:also",
    ])
    .ok();
    assert!(file.is_file(), "save -o wrote no file");
    let mut names = Vec::new();
    let mut manifest = serde_json::Value::Null;
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "manifest.json" {
            manifest = serde_json::from_reader(&mut entry).unwrap();
        }
        names.push(name);
    }
    let layer = |s: &Strata, image| format!("blobs/sha256/{}", &diff_ids(s, image)[0][7..]);
    for image in ["base:1", "other:1"] {
        let blob = layer(&s, image);
        assert_eq!(names.iter().filter(|n| **n == blob).count(), 1, "{names:?}");
    }
    assert_eq!(manifest.as_array().unwrap().len(), 2, "{manifest}");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["base:1", "base:also"])
    );
    assert_eq!(manifest[1]["RepoTags"], serde_json::json!(["other:1"]));
    let t = Strata::new();
    t.run(&["load", "-i", file.to_str().unwrap()]).ok();
    for (image, id) in [
        ("base:1", &base_id),
        ("base:also", &base_id),
        ("other:1", &other_id),
    ] {
        let r = t.run(&["image", "inspect", "-f", "{{.Id}}", image]).ok();
        assert_eq!(r.stdout.trim(), id, "{image}");
    }
    t.run(&["verify"]).ok();
    let r = s.run(&["save", "--format", "docker-dir", "-o", "x", "base:1"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
}

/// An existing output directory, or the path of `-o FILE`, may be
/// another user's, with links planted in it: save and export (as root)
/// replaced or made root's files wherever those led. They now replace the
/// links themselves.
#[test]
fn save_and_export_replace_planted_links_instead_of_writing_through_them() {
    use std::os::unix::fs::symlink;
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("in.tar"));
    s.import(&tar, "img");
    let layer = diff_ids(&s, "img")[0]
        .trim_start_matches("sha256:")
        .to_string();
    let precious = s.path("precious");
    std::fs::write(&precious, "precious\n").unwrap();
    let planted = s.path("planted");
    let out = s.path("out");
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    // Planted by another user (a link of root's own is followed).
    let plant = |target: &std::path::Path, link: &std::path::Path| {
        symlink(target, link).unwrap();
        std::os::unix::fs::lchown(link, Some(65534), Some(65534)).unwrap();
    };
    plant(&precious, &out.join("index.json"));
    plant(&planted, &out.join("blobs/sha256").join(&layer));
    let dir = out.to_str().unwrap();
    s.run(&["save", "--format", "oci-dir", "-o", dir, "img"])
        .ok();
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    assert!(
        !planted.exists(),
        "a blob was written through a dangling link"
    );
    for file in ["index.json", &format!("blobs/sha256/{layer}")] {
        let meta = std::fs::symlink_metadata(out.join(file)).unwrap();
        assert!(meta.is_file(), "{file} is not a file of its own");
    }
    let other = Strata::new();
    other.run(&["load", "-i", dir]).ok();
    let id = other.run(&["create", "img", "true"]).ok().stdout;
    let exported = out.join("export.tar");
    plant(&precious, &exported);
    other
        .run(&["export", "-o", exported.to_str().unwrap(), id.trim()])
        .ok();
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&exported).unwrap().is_file());
    // A device node is written to, not replaced (`-o /dev/null`); the
    // caller's own link is followed (`-o /dev/stdout`), for a file and
    // for save's directory.
    use std::os::unix::fs::FileTypeExt as _;
    let null = s.path("null");
    common::null_device(&null);
    let own_link = s.path("own-link");
    let own_target = s.path("own-target");
    symlink(&own_target, &own_link).unwrap();
    for file in [&null, &own_link] {
        other
            .run(&["export", "-o", file.to_str().unwrap(), id.trim()])
            .ok();
    }
    assert!(std::fs::symlink_metadata(&null)
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(std::fs::symlink_metadata(&own_link).unwrap().is_symlink());
    assert!(std::fs::metadata(&own_target).unwrap().len() > 0);
    let layout = s.path("layout");
    std::fs::create_dir(&layout).unwrap();
    let layout_link = s.path("layout-link");
    symlink(&layout, &layout_link).unwrap();
    s.run(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        layout_link.to_str().unwrap(),
        "img",
    ])
    .ok();
    assert!(layout.join("index.json").is_file());
    other.run(&["rm", id.trim()]).ok();
}

#[test]
fn save_then_reimport_keeps_the_diff_id() {
    let s = Strata::new();
    let tar = TarMaker::new()
        .dir("etc")
        .file("etc/.wh.gone", b"")
        .dir("opq")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"fresh")
        .file("big", &noise(1 << 20, 11))
        .write(&s.path("w.tar"));
    s.import(&tar, "w");
    let out = s.path("layout");
    s.save_to_dir(&out, "w").ok();
    for f in ["oci-layout", "index.json", "manifest.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let id = &diff_ids(&s, "w")[0];
    let blob = out.join("blobs/sha256").join(&id[7..]);
    let bytes = std::fs::read(&blob).expect("the layer blob is named by its diff id");
    assert_eq!(format!("sha256:{}", layerdb::Digest::of(&bytes).hex()), *id);
    // The whiteout and the opaque marker survive in the layer tar.
    let names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"etc/.wh.gone".to_string()), "{names:?}");
    assert!(names.contains(&"opq/.wh..wh..opq".to_string()), "{names:?}");
    s.import(&blob, "again");
    assert_eq!(diff_ids(&s, "again"), diff_ids(&s, "w"));
}

#[test]
fn the_same_content_is_stored_once() {
    let s = Strata::new();
    let tar = sample_tar()
        .file("./big", &noise(4 << 20, 5))
        .write(&s.path("a.tar"));
    s.import(&tar, "one");
    let chunks = || walkdir_count(&s.root().join("chunks"));
    let before = chunks();
    // Different tar, same files under other names: no new chunks.
    let tar2 = TarMaker::new()
        .file("elsewhere", &noise(4 << 20, 5))
        .write(&s.path("b.tar"));
    s.import(&tar2, "two");
    assert_eq!(chunks(), before);
    let df = s.run(&["system", "df"]).ok().stdout;
    assert!(df.contains("Dedup ratio"), "{df}");
}

fn walkdir_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walkdir_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn rmi_untags_first_then_deletes_and_gc_reclaims_the_chunks() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    s.import(&tar, "x:1");
    s.run(&["tag", "x:1", "y"]).ok();
    let out = s.run(&["rmi", "y"]).ok().stdout;
    assert_eq!(out.trim(), "Untagged: y:latest");
    let out = s.run(&["rmi", "x:1"]).ok().stdout;
    assert!(
        out.contains("Untagged: x:1") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(s.run(&["images", "-q"]).ok().stdout, "");
    let gc = s.run(&["gc"]).ok().stdout;
    assert!(gc.contains("Removed 1 layers"), "{gc}");
    assert_eq!(walkdir_count(&s.root().join("chunks")), 0);
    assert_store_clean(&s);
}

/// Bytes of the index's tables.
fn table_bytes(s: &Strata) -> u64 {
    std::fs::read_dir(s.root().join("db"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sst"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// gc's range delete of a removed layer's entries only marked them: the
/// tables kept them and every later command read their index (a layer of
/// 20,000 paths of 3.8 KB: `images` 93 MB after rmi and gc, 19 MB now).
#[test]
fn gc_compacts_the_removed_layers_entries_out_of_the_index() {
    let s = Strata::new();
    let dir = "abcdefghij".repeat(25);
    let deep = format!("{dir}/{dir}/{dir}/{dir}");
    let mut tar = TarMaker::new();
    for i in 0..3000 {
        tar = tar.file(&format!("{deep}/file{i}"), b"x");
    }
    let tar = tar.write(&s.path("long.tar"));
    s.import(&tar, "long");
    let imported = table_bytes(&s);
    s.run(&["rmi", "long"]).ok();
    s.run(&["gc"]).ok();
    let collected = table_bytes(&s);
    assert!(
        collected * 10 < imported,
        "tables of {imported} bytes after the import, {collected} after gc"
    );
    assert_store_clean(&s);
}

#[test]
fn the_store_root_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Strata::new();
    s.run(&["images"]).ok();
    let mode = std::fs::metadata(s.root()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// Each bad input fails with one line naming the culprit, exit 125, and
/// leaves no image behind.
#[test]
fn bad_input_is_refused_with_one_line_and_leaves_nothing() {
    let s = Strata::new();
    let good = sample_tar().bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        (
            "corrupt-gzip",
            [&[0x1f, 0x8b, 8, 0][..], &[0xff; 64][..]].concat(),
            "truncated",
        ),
        (
            "dotdot",
            TarMaker::new()
                .raw(tar::EntryType::Regular, "a/../../x", "", b"x")
                .bytes(),
            "\"..\"",
        ),
        (
            "absolute",
            TarMaker::new()
                .raw(tar::EntryType::Regular, "/etc/passwd", "", b"x")
                .bytes(),
            "absolute",
        ),
        (
            "hardlink-out",
            TarMaker::new()
                .raw(tar::EntryType::Link, "l", "../etc/passwd", b"")
                .bytes(),
            "outside the layer",
        ),
        (
            "empty-whiteout",
            TarMaker::new().file("d/.wh.", b"").bytes(),
            "names no file",
        ),
        (
            "not-a-tar",
            b"hello world, this is not a tar archive at all".repeat(20),
            "tar",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = s.path(&format!("{name}.tar"));
        std::fs::write(&path, bytes).unwrap();
        let r = s.run(&["import", path.to_str().unwrap(), name]);
        assert_eq!(r.code, 125, "{name}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(path.to_str().unwrap()),
            "{name} not named: {}",
            r.stderr
        );
    }
    let id_like = "0123456789abcdef".repeat(4);
    for (args, expect) in [
        (
            vec!["import", "/no/such/file.tar", "x"],
            "/no/such/file.tar",
        ),
        (vec!["history", "nosuch"], "No such image: nosuch"),
        (vec!["rmi", "nosuch"], "No such image: nosuch"),
        (vec!["tag", "nosuch", "x"], "No such image: nosuch"),
        (vec!["import", "-", "Bad:Ref"], "invalid reference format"),
        // 64 hex digits are an image id: a tag so named could never be
        // looked up.
        (
            vec!["tag", "nosuch", &id_like],
            "cannot specify 64-byte hexadecimal strings",
        ),
    ] {
        let r = s.run(&args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{args:?}: {}", r.stderr);
    }
    // An argument that is not UTF-8: one line and 125, never a panic.
    let mut overlay = std::process::Command::new(common::bin());
    overlay.args(["fuse-overlayfs", "-o"]);
    for mut command in [s.cmd(&["import"]), overlay] {
        use std::os::unix::ffi::OsStrExt;
        let mode = format!("{command:?}");
        let out = command
            .arg(std::ffi::OsStr::from_bytes(b"/no/caf\xe9"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{mode:?}: {stderr}");
        assert!(
            stderr.contains("UTF-8") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    let r = s.run(&["images", "--format", "{{.Repository"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    let r = s.run(&["inspect", "--format", "{{.Id", "x"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("template parsing error"), "{}", r.stderr);
    // Each image named is tried and each failure reported.
    let r = s.run(&["rmi", "nosuch", "other"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("No such image: other"), "{}", r.stderr);
    assert!(r.stderr.contains("No such image: nosuch"), "{}", r.stderr);
    // docker's `rmi -f` (and `rm -f`) of what is not there says so and
    // succeeds: cleanup scripts run it under `set -e`.
    for args in [["rmi", "-f", "nosuch"], ["rm", "-f", "nosuch"]] {
        let r = s.run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("No such "), "{args:?}: {}", r.stderr);
    }
    assert_eq!(s.run(&["images", "-a", "-q"]).ok().stdout, "");
    assert_store_clean(&s);
}

/// A name or link target of PATH_MAX (4096) bytes or more: no system
/// call can name it, docker's extraction fails on it. Refused with one
/// line naming the entry, shortened, and the limit; the chunks of the
/// file read before it are removed. 4095 bytes is still a path.
#[test]
fn a_path_of_path_max_bytes_is_refused_and_leaves_nothing() {
    let s = Strata::new();
    let too_long = format!("{}ff", "d/".repeat(2047));
    // A big file first: its chunks are written before the bad entry.
    let big = || TarMaker::new().file("big", &noise(1 << 20, 3));
    let cases = [
        (
            "long-name",
            big().file(&too_long, b"x"),
            "its name is 4096 bytes",
        ),
        (
            "long-symlink",
            big().symlink("l", &"t".repeat(5000)),
            "its link target is 5000 bytes",
        ),
    ];
    for (name, tar, expect) in cases {
        let path = tar.write(&s.path(&format!("{name}.tar")));
        let r = s.run(&["import", path.to_str().unwrap(), name]);
        assert_eq!(r.code, 125, "{name}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{name}: {}", r.stderr);
        assert!(r.stderr.contains("PATH_MAX (4096 bytes)"), "{}", r.stderr);
        assert!(r.stderr.len() < 400, "the name is shortened: {}", r.stderr);
    }
    assert_eq!(s.run(&["images", "-a", "-q"]).ok().stdout, "");
    assert_eq!(walkdir_count(&s.root().join("chunks")), 0);
    assert_store_clean(&s);
    let longest = format!("{}f", "d/".repeat(2047));
    let tar = TarMaker::new()
        .file(&longest, b"x")
        .write(&s.path("ok.tar"));
    s.import(&tar, "longest");
}

/// Extended attributes larger than Linux can hold are refused, and so is
/// a layer whose attributes pass 64 MiB in all: every entry waits in
/// memory until its layer is written, and a pull of 1,000 entries with a
/// 1 MiB attribute each (1.1 MB of gzip) grew to 4 GB.
#[test]
fn xattrs_past_what_linux_holds_or_a_layers_budget_are_refused() {
    let s = Strata::new();
    let value = vec![b'v'; 65537];
    let one = TarMaker::new()
        .file("big", &noise(1 << 20, 5))
        .file_with_xattr("f", "user.big", &value)
        .write(&s.path("one.tar"));
    let r = s.run(&["import", one.to_str().unwrap(), "one"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("entry \"f\""), "{}", r.stderr);
    assert!(
        r.stderr.contains("larger than Linux allows"),
        "{}",
        r.stderr
    );
    let value = vec![b'v'; 65536];
    let mut many = TarMaker::new();
    for i in 0..1030 {
        many = many.file_with_xattr(&format!("f{i}"), "user.v", &value);
    }
    let many = many.write(&s.path("many.tar"));
    let r = s.run(&["import", many.to_str().unwrap(), "many"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("extended attributes pass 64 MiB"),
        "{}",
        r.stderr
    );
    assert_eq!(s.run(&["images", "-a", "-q"]).ok().stdout, "");
    assert_eq!(walkdir_count(&s.root().join("chunks")), 0);
    assert_store_clean(&s);
    // What Linux holds still imports.
    let fits = TarMaker::new()
        .file_with_xattr("f", "user.v", &value)
        .write(&s.path("fits.tar"));
    s.import(&fits, "fits");
}

/// Every entry's path waits in memory until its layer is written, held
/// several times over: a layer of empty files named near PATH_MAX (a few
/// bytes each compressed) took a pull to 22 KB an entry, 8.8 GB for 2.7
/// MB downloaded (a review as an attacker). A layer's names are refused
/// past 256 MiB, as its extended attributes past 64 MiB.
#[test]
fn a_layer_whose_names_pass_the_budget_is_refused() {
    let s = Strata::new();
    // 70,000 names of about 4,000 bytes: 280 MB of names.
    let path = long_named_files(&s, 70_000);
    let file = path.to_str().unwrap();
    let (code, stderr, _) = measured(&s, &["import", file, "names"], None);
    assert_eq!(code, 125, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the layer's names pass 256 MiB"),
        "{stderr}"
    );
    assert!(
        stderr.len() < 300,
        "the entry's name is shortened: {stderr}"
    );
    assert_eq!(s.run(&["images", "-a", "-q"]).ok().stdout, "");
    assert_store_clean(&s);
}

/// The index's keys hold a layer's paths, and RocksDB stored every key
/// of a table's index block whole: 20,000 paths of 4,000 bytes made the
/// flush at the import's end build two index blocks of 106 MB each
/// (heaptrack), the import peaked at 423 MB, and every later command's
/// open read them back (`images` 96 MB). Keys sharing their prefixes in
/// the index block: 218 MB and 24 MB.
#[test]
fn long_paths_cost_the_index_little_memory() {
    let s = Strata::new();
    let path = long_named_files(&s, 20_000);
    let file = path.to_str().unwrap();
    let (code, stderr, peak) = measured(&s, &["import", file, "long"], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(peak < 320 << 20, "the import peaked at {} MB", peak >> 20);
    let (code, stderr, peak) = measured(&s, &["images"], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(peak < 60 << 20, "images peaked at {} MB", peak >> 20);
}

/// A gzipped tar of `n` empty files named with about 4,000 bytes each,
/// under their 19 parent directories.
fn long_named_files(s: &Strata, n: usize) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = s.path(&format!("long-names-{n}.tar.gz"));
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let dir = vec!["d".repeat(200); 19].join("/");
    let mut parent = String::new();
    for part in dir.split('/') {
        parent = if parent.is_empty() {
            part.to_string()
        } else {
            format!("{parent}/{part}")
        };
        let mut h = ustar(tar::EntryType::Directory, 0);
        tar.append_data(&mut h, &parent, std::io::empty()).unwrap();
    }
    for i in 0..n {
        let mut h = ustar(tar::EntryType::Regular, 0);
        let name = format!("{dir}/f{i:09}{}", "x".repeat(160));
        tar.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
    path
}

/// A ustar header of `kind` and `size`, mode 0644, owned by root.
fn ustar(kind: tar::EntryType, size: usize) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// Runs strata with `args`: its exit code, its stderr and its peak
/// resident memory in bytes.
fn measured(s: &Strata, args: &[&str], stdin: Option<&std::path::Path>) -> (i32, String, usize) {
    use std::io::Read as _;
    let stdin = match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
        None => Stdio::null(),
    };
    // Reaped by wait4 below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let mut child = s
        .cmd(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // SAFETY: rusage is plain integers, for which all zeros is a value.
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child, into locals.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as i32);
    assert!(libc::WIFEXITED(status), "{stderr}");
    let peak = usage.ru_maxrss as usize * 1024;
    (libc::WEXITSTATUS(status), stderr, peak)
}

/// tar 0.4 reads a GNU long name or a PAX header whole, to the size its
/// header declares: 1 MB of gzip declaring a 1 GiB name took an import
/// to 7.4 GB, `load` of it to 3.7 GB and `build -` past 5 GB. Such
/// headers are refused past 16 MiB, before they are read;
/// and a PAX global header (`git archive` writes one) is ignored, as
/// docker ignores it (it was refused as an unknown entry type).
#[test]
fn huge_extended_headers_are_refused_before_they_are_read() {
    use std::io::Write as _;
    let s = Strata::new();
    for kind in [tar::EntryType::GNULongName, tar::EntryType::XHeader] {
        let declared = 256usize << 20;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(declared as u64);
        h.set_cksum();
        let path = s.path("huge-header.tar.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(h.as_bytes()).unwrap();
        let line = b"9 a=bbbb\n".repeat(1 << 16);
        for _ in 0..declared / line.len() {
            gz.write_all(&line).unwrap();
        }
        gz.write_all(&line[..declared % line.len()]).unwrap();
        gz.finish().unwrap();
        let file = path.to_str().unwrap();
        let runs = [
            (&["import", file, "huge"][..], None),
            (&["load", "-i", file], None),
            (&["build", "-"], Some(path.as_path())),
        ];
        for (args, stdin) in runs {
            let (code, stderr, peak) = measured(&s, args, stdin);
            assert_eq!(code, 125, "{args:?} {kind:?}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains("extended headers"),
                "{args:?} {kind:?}: {stderr}"
            );
            assert!(
                peak < 100 << 20,
                "{args:?} {kind:?}: peaked at {} MB",
                peak >> 20
            );
        }
    }
    assert_eq!(s.run(&["images", "-a", "-q"]).ok().stdout, "");
    assert_store_clean(&s);
    // A global header: skipped.
    let mut tar = tar::Builder::new(Vec::new());
    let comment = b"52 comment=0123456789012345678901234567890123456789\n";
    let mut h = ustar(tar::EntryType::XGlobalHeader, comment.len());
    tar.append_data(&mut h, "pax_global_header", &comment[..])
        .unwrap();
    let mut h = ustar(tar::EntryType::Regular, 3);
    tar.append_data(&mut h, "README", &b"hi\n"[..]).unwrap();
    let path = s.path("git-archive.tar");
    std::fs::write(&path, tar.into_inner().unwrap()).unwrap();
    s.import(&path, "archived");
    assert_store_clean(&s);
}

/// A time past what nanoseconds in an i64 hold (the year 2262), in a GNU
/// base-256 field or a PAX record, is held at the end: it overflowed a
/// multiplication and panicked (exit 101).
#[test]
fn times_past_2262_import_held_at_the_end() {
    let s = Strata::new();
    let mut gnu = tar::Builder::new(Vec::new());
    let mut h = ustar(tar::EntryType::Regular, 3);
    // Base 256: more than the field's 11 octal digits hold.
    h.set_mtime(99_999_999_999);
    gnu.append_data(&mut h, "f", &b"hi\n"[..]).unwrap();
    let mut pax = tar::Builder::new(Vec::new());
    pax.append_pax_extensions([("mtime", &b"-99999999999.5"[..])])
        .unwrap();
    let mut h = ustar(tar::EntryType::Regular, 3);
    pax.append_data(&mut h, "f", &b"hi\n"[..]).unwrap();
    for (name, tar) in [("gnu", gnu), ("pax", pax)] {
        let path = s.path(&format!("{name}.tar"));
        std::fs::write(&path, tar.into_inner().unwrap()).unwrap();
        s.import(&path, name);
    }
    assert_store_clean(&s);
}

/// A docker archive naming one layer many times (in one image, or in
/// many): every copy was read and held until the image was committed (an 880 KB archive naming a
/// 100,000-file layer 128 times took 65 s and 4.8 GB). A repeated layer
/// is held once and read again only where the layers below it would
/// change it; an image of more than 128 layers is refused, as docker
/// refuses it.
#[test]
fn a_layer_named_many_times_is_read_and_held_once() {
    use sha2::Digest as _;
    let s = Strata::new();
    let mut layer = tar::Builder::new(Vec::new());
    for i in 0..20_000 {
        let mut h = ustar(tar::EntryType::Regular, 0);
        layer
            .append_data(&mut h, format!("d/f{i}"), &[][..])
            .unwrap();
    }
    let layer = layer.into_inner().unwrap();
    let diff_id = format!("sha256:{:x}", sha2::Sha256::digest(&layer));
    let archive = |copies: usize| {
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": vec![&diff_id; copies]},
        })
        .to_string();
        let config_name = format!("{:x}.json", sha2::Sha256::digest(config.as_bytes()));
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": [format!("repeated:{copies}")],
            "Layers": vec!["layer.tar"; copies],
        }])
        .to_string();
        TarMaker::new()
            .file(&config_name, config.as_bytes())
            .file("layer.tar", &layer)
            .file("manifest.json", manifest.as_bytes())
            .write(&s.path(&format!("repeated-{copies}.tar")))
    };
    let hundred = archive(100);
    let (code, stderr, peak) = measured(&s, &["load", "-i", hundred.to_str().unwrap()], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(peak < 200 << 20, "peaked at {} MB", peak >> 20);
    let too_deep = archive(129);
    s.run(&["load", "-i", too_deep.to_str().unwrap()])
        .refused_with("max depth exceeded");
    // Forty images of that one layer: it is read and held once for all
    // of them (each image held its own copy until the commit).
    let mut many = TarMaker::new().file("layer.tar", &layer);
    let mut manifest = Vec::new();
    for i in 0..40 {
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": format!("2024-01-01T00:00:{i:02}Z"),
            "rootfs": {"type": "layers", "diff_ids": [&diff_id]},
        })
        .to_string();
        let config_name = format!("{:x}.json", sha2::Sha256::digest(config.as_bytes()));
        many = many.file(&config_name, config.as_bytes());
        manifest.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": [format!("many:{i}")],
            "Layers": ["layer.tar"],
        }));
    }
    let many = many
        .file(
            "manifest.json",
            serde_json::Value::from(manifest).to_string().as_bytes(),
        )
        .write(&s.path("many-images.tar"));
    let (code, stderr, peak) = measured(&s, &["load", "-i", many.to_str().unwrap()], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(peak < 100 << 20, "forty images peaked at {} MB", peak >> 20);
    assert_store_clean(&s);
}

/// Image configs of megabytes each (a label compresses a thousandfold):
/// `images`, `gc`, an id prefix's lookup and the build cache read every
/// image record, and held all their configs at once (40 configs of 31
/// MiB, 1.3 MB of gzip, made every later `images` take 2.6 GB). They are
/// now read one record at a time.
#[test]
fn a_save_cut_short_leaves_nothing_gc_keeps() {
    use std::io::Read;
    let s = Strata::with_busybox();
    // A reader that stops early: save ends on the closed pipe before it
    // removes the layout it was sending.
    let mut save = s
        .cmd(&["save", "busybox"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    save.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert!(!save.wait().unwrap().success());
    s.run(&["gc"]).ok();
    let left: Vec<String> = std::fs::read_dir(s.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("save"))
        .collect();
    assert!(left.is_empty(), "left in tmp/ after gc: {left:?}");
}

/// `save -o FILE` killed while it writes leaves nothing in FILE's
/// directory: its output was a named file beside FILE (renamed in at the
/// end) for the whole run, and a kill left it there. The same for
/// `--format oci-dir -o DIR`, whose new directory was made beside DIR.
#[test]
fn a_save_killed_while_it_writes_leaves_nothing_beside_its_output() {
    let s = Strata::new();
    // Streamed to disk: 64 MiB held here would count in the peak memory
    // of every command the other tests start meanwhile (a child's
    // ru_maxrss starts from its parent's at fork).
    let big = s.path("big.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&big).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let content = std::io::Read::take(std::io::repeat(7), 64 << 20);
    tar.append_data(&mut header, "big", content).unwrap();
    tar.into_inner().unwrap();
    s.import(&big, "big:1");
    let dir = s.path("out");
    std::fs::create_dir(&dir).unwrap();
    let (tar_out, layout) = (dir.join("big.tar"), dir.join("layout"));
    let scratch = s.root().join("tmp");
    // Each form, killed once it holds its output open: the tar in the
    // output's directory; a blob of the layout, wherever it makes the new
    // directory.
    let in_dir = |to: &Path| to.starts_with(&dir);
    let a_blob = |to: &Path| to.to_string_lossy().contains("/blobs/sha256/");
    type Writes<'a> = &'a dyn Fn(&Path) -> bool;
    let forms: [(Vec<&str>, Writes); 2] = [
        (vec!["save", "-o", tar_out.to_str().unwrap()], &in_dir),
        (
            vec![
                "save",
                "--format",
                "oci-dir",
                "-o",
                layout.to_str().unwrap(),
            ],
            &a_blob,
        ),
    ];
    for (args, writes) in forms {
        let mut save = s
            .cmd(&[&args[..], &["big:1"]].concat())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let fds = PathBuf::from(format!("/proc/{}/fd", save.id()));
        let writing = || {
            std::fs::read_dir(&fds)
                .into_iter()
                .flatten()
                .any(|fd| std::fs::read_link(fd.unwrap().path()).is_ok_and(|to| writes(&to)))
        };
        while !writing() {
            assert!(
                save.try_wait().unwrap().is_none(),
                "{args:?} ended before it could be killed while writing"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        save.kill().unwrap();
        save.wait().unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "a killed {args:?} left {left:?}");
    }
    // What the killed layout left in the store's scratch, gc removes.
    s.run(&["gc"]).ok();
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in tmp/ after gc: {left:?}");
}

#[test]
fn a_load_whose_report_cannot_be_written_still_loads_every_image() {
    let s = Strata::new();
    let base = sample_tar().write(&s.path("base.tar"));
    s.import(&base, "base:1");
    let other = TarMaker::new()
        .file("other", &noise(10_000, 4))
        .write(&s.path("other.tar"));
    s.import(&other, "other:1");
    let file = s.path("both.tar");
    let file = file.to_str().unwrap();
    s.run(&["save", "-o", file, "base:1", "other:1"]).ok();
    let fresh = Strata::new();
    // stdout on a full disk: the report fails after the first image.
    let out = onto_full_disk(&fresh, &["load", "-i", file]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let listed = fresh
        .run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok()
        .stdout;
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, ["base:1", "other:1"]);
}

/// A command whose output cannot be written (stdout on a full disk) fails
/// as any command fails: one line naming stdout, exit 125. It panicked
/// with a backtrace and exit 101.
#[test]
fn output_that_cannot_be_written_is_a_one_line_error() {
    let s = Strata::new();
    let base = sample_tar().write(&s.path("base.tar"));
    s.import(&base, "base:1");
    for args in [
        &["version"][..],
        &["info"],
        &["images"],
        &["images", "--format", "{{.ID}}"],
        &["history", "base:1"],
        &["image", "inspect", "base:1"],
        &["ps", "-a"],
        &["volume", "ls"],
        &["system", "df"],
    ] {
        let out = onto_full_disk(&s, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("stdout"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_volume_whose_maker_was_killed_is_never_listed_and_prune_removes_it() {
    let s = Strata::new();
    s.run(&["volume", "create", "made"]).ok();
    // What a maker of `half` killed before its record leaves: the
    // volume's directory under the name it is made at, its process gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let volumes = s.root().join("volumes");
    let half = volumes.join(format!(".making-half-{}", gone.id()));
    std::fs::create_dir_all(half.join("_data")).unwrap();
    assert_eq!(s.run(&["volume", "ls", "-q"]).ok().stdout, "made\n");
    s.run(&["volume", "prune", "-f"]).ok();
    assert!(!half.exists(), "prune left {}", half.display());
    s.run(&["volume", "create", "half"]).ok();
    let listed = s.run(&["volume", "ls", "-q"]).ok().stdout;
    assert_eq!(listed, "half\nmade\n");
    // gc takes them too, a killed removal's as well, and leaves a live
    // process's.
    let removing = volumes.join(format!(".removing-old-{}", gone.id()));
    let working = volumes.join(format!(".removing-busy-{}", std::process::id()));
    for dir in [&half, &removing, &working] {
        std::fs::create_dir_all(dir.join("_data")).unwrap();
    }
    s.run(&["gc"]).ok();
    assert!(!half.exists() && !removing.exists(), "gc left them");
    assert!(working.exists(), "gc took a live removal's directory");
    std::fs::remove_dir_all(&working).unwrap();
    let left: Vec<_> = std::fs::read_dir(&volumes)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn images_reads_one_config_at_a_time() {
    use sha2::Digest as _;
    const IMAGES: usize = 16;
    let s = Strata::new();
    let layer = TarMaker::new().file("f", b"x").bytes();
    let diff_id = format!("sha256:{:x}", sha2::Sha256::digest(&layer));
    let label = "x".repeat(8 << 20);
    // Written as it is made: the child's peak counts the test's own.
    let path = s.path("big-configs.tar");
    let mut archive = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = ustar(tar::EntryType::Regular, data.len());
        archive.append_data(&mut h, name, data).unwrap();
    };
    add("layer.tar", &layer);
    let mut manifest = Vec::new();
    for i in 0..IMAGES {
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": format!("2024-01-01T00:00:{i:02}Z"),
            "config": {"Labels": {"big": &label}},
            "rootfs": {"type": "layers", "diff_ids": [&diff_id]},
        })
        .to_string();
        let config_name = format!("{:x}.json", sha2::Sha256::digest(config.as_bytes()));
        add(&config_name, config.as_bytes());
        manifest.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": [format!("big:{i}")],
            "Layers": ["layer.tar"],
        }));
    }
    add(
        "manifest.json",
        serde_json::Value::from(manifest).to_string().as_bytes(),
    );
    archive.finish().unwrap();
    drop(archive);
    s.run(&["load", "-i", path.to_str().unwrap()]).ok();
    let (code, stderr, peak) = measured(&s, &["images"], None);
    assert_eq!(code, 0, "{stderr}");
    let all = IMAGES * label.len();
    assert!(
        peak < all,
        "images of {IMAGES} configs of 8 MiB peaked at {} MB",
        peak >> 20
    );
    assert_eq!(s.run(&["images", "-q"]).ok().stdout.lines().count(), IMAGES);
}

/// A layer of many small files: each file's bytes wait in its entry
/// until the commit, which wrote every entry to the index in one batch,
/// so the entries, the batch and RocksDB's copy of it were held at once
/// (1.29 GB for 100,000 files of 4 KiB, 3.2 times their bytes). The
/// commit now writes them a few MB at a time, freeing each entry.
#[test]
fn a_layer_of_many_small_files_is_held_in_memory_about_once() {
    const FILES: usize = 50_000;
    const SIZE: usize = 4096;
    let s = Strata::new();
    let path = s.path("small-files.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let block = noise(SIZE + FILES, 3);
    for i in 0..FILES {
        let mut h = ustar(tar::EntryType::Regular, SIZE);
        let name = format!("d{}/f{i}", i / 1000);
        tar.append_data(&mut h, name, &block[i..i + SIZE]).unwrap();
    }
    tar.finish().unwrap();
    drop(tar);
    let (code, _, peak) = measured(&s, &["import", path.to_str().unwrap(), "small:files"], None);
    assert_eq!(code, 0);
    let content = FILES * SIZE;
    assert!(
        peak < 2 * content,
        "import of {FILES} files of {SIZE} bytes peaked at {} MB",
        peak >> 20
    );
    assert_store_clean(&s);
}

/// An attacker's layer: many small files of zeros compress a
/// thousandfold, and each small file's bytes waited in its entry until
/// the commit (200,000 of them, 3.4 MB of gzip, made a pull hold 1.1 GB).
/// Past 128 MiB of such bytes a layer's small files go to chunk files,
/// where these share one; every file still reads back whole. Peak for
/// these 100,000: 533 MB before, 274 MB now.
#[test]
fn small_files_past_the_inline_budget_cost_no_memory_of_their_bytes() {
    use std::io::Read as _;
    const FILES: usize = 100_000;
    const SIZE: usize = 4096;
    let s = Strata::new();
    let path = s.path("zeros.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for i in 0..FILES {
        let mut h = ustar(tar::EntryType::Regular, SIZE);
        tar.append_data(&mut h, format!("d{}/f{i}", i / 1000), &[0u8; SIZE][..])
            .unwrap();
    }
    tar.finish().unwrap();
    drop(tar);
    let (code, stderr, peak) = measured(&s, &["import", path.to_str().unwrap(), "zeros"], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        peak < 400 << 20,
        "import of {FILES} files of {SIZE} zeros peaked at {} MB",
        peak >> 20
    );
    assert_store_clean(&s);
    let id = s.run(&["create", "zeros", "true"]).ok().stdout;
    let exported = s.path("exported.tar");
    s.run(&["export", "-o", exported.to_str().unwrap(), id.trim()])
        .ok();
    let mut files = 0;
    let mut archive = tar::Archive::new(std::fs::File::open(&exported).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() == tar::EntryType::Regular {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            assert!(bytes.len() == SIZE && bytes.iter().all(|&b| b == 0));
            files += 1;
        }
    }
    assert_eq!(files, FILES);
}

#[test]
fn two_imports_started_together_both_succeed() {
    let s = Strata::new();
    let a = TarMaker::new()
        .file("a", &noise(8 << 20, 1))
        .write(&s.path("a.tar"));
    let b = TarMaker::new()
        .file("b", &noise(8 << 20, 2))
        .write(&s.path("b.tar"));
    let mut ca = s
        .cmd(&["import", a.to_str().unwrap(), "a"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut cb = s
        .cmd(&["import", b.to_str().unwrap(), "b"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(ca.wait().unwrap().success());
    assert!(cb.wait().unwrap().success());
    let images = s.run(&["images", "-q"]).ok().stdout;
    assert_eq!(images.lines().count(), 2, "{images}");
}

#[test]
fn a_reader_keeps_reading_layers_while_another_process_imports() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    s.import(&tar, "base");
    // The long-lived reader, as a mount server has it: a read-only store.
    let reader = layerdb::Store::open_read_only(&s.root()).unwrap();
    let image = reader.resolve_image("base").unwrap();
    let layer = reader.layer(&image.layers[0]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reads = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let e = reader
                .entry(&layer, b"usr/bin/tool")
                .unwrap()
                .expect("the file is there");
            let mut buf = vec![0u8; 4096];
            assert_eq!(reader.read_at(&e, 100_000, &mut buf).unwrap(), 4096);
            assert_eq!(buf, noise(300_000, 7)[100_000..104_096]);
            n += 1;
        }
        n
    });
    for i in 0..5 {
        let t = TarMaker::new()
            .file("f", &noise(2 << 20, 100 + i))
            .write(&s.path(&format!("{i}.tar")));
        s.import(&t, &format!("img{i}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reads.join().unwrap() > 0);
}

#[test]
fn save_to_a_tar_then_load_into_another_store_keeps_the_image_id() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    let id = s.import(&tar, "moving:1");
    let saved = s.cmd(&["save", "moving:1"]).output().unwrap();
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let other = Strata::new();
    let out = other.run_stdin(&["load"], &saved.stdout).ok().stdout;
    assert_eq!(out.trim(), "Loaded image: moving:1");
    let inspect: serde_json::Value =
        serde_json::from_str(&other.run(&["inspect", "moving:1"]).ok().stdout).unwrap();
    assert_eq!(inspect[0]["Id"].as_str().unwrap(), id);
    other.run(&["verify"]).ok();
}

/// `verify` beside commits and creates reports nothing: it read the
/// images when it began and the container records at its end, so a
/// container made meanwhile of an image committed meanwhile looked like
/// one whose image was missing (a review: every run on a small store).
#[test]
fn verify_racing_commits_and_creates_finds_nothing_wrong() {
    let s = Strata::with_busybox();
    // Chunks enough that each verify hashes for a while.
    let tar = TarMaker::new().file("big", &noise(40_000_000, 7));
    s.import(&tar.write(&s.path("big.tar")), "big:1");
    s.run(&["create", "--name", "base", "busybox", "true"]).ok();
    let script = format!(
        "for i in $(seq 15); do {0} commit base made:$i >/dev/null && {0} create made:$i true >/dev/null || exit 1; done",
        format_args!("'{}' --root '{}'", common::bin(), s.root().display())
    );
    let mut maker = std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let mut verified = 0;
    while maker.try_wait().unwrap().is_none() {
        let v = s.run(&["verify"]);
        assert_eq!(v.code, 0, "verify beside commits: {}{}", v.stdout, v.stderr);
        verified += 1;
    }
    assert!(
        maker.wait().unwrap().success(),
        "the commits and creates failed"
    );
    assert!(verified > 0);
}

#[test]
fn verify_names_every_broken_chunk_and_exits_non_zero() {
    let s = Strata::new();
    let tar = TarMaker::new()
        .file("one", &noise(200_000, 1))
        .file("two", &noise(200_000, 2))
        .write(&s.path("a.tar"));
    s.import(&tar, "victim");
    let chunks: Vec<std::path::PathBuf> = std::fs::read_dir(s.root().join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(chunks.len() >= 2);
    // One chunk altered in place, one gone.
    let mut bytes = std::fs::read(&chunks[0]).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&chunks[0], bytes).unwrap();
    std::fs::remove_file(&chunks[1]).unwrap();
    let r = s.run(&["verify"]);
    assert_ne!(r.code, 0);
    for c in &chunks[..2] {
        let name = c.file_name().unwrap().to_str().unwrap();
        assert!(r.stderr.contains(name), "{name} not named: {}", r.stderr);
    }
    assert!(r.stderr.contains("does not match its name"), "{}", r.stderr);
}

/// A path unmounted (lazily if busy) when dropped, also on failure.
struct Unmounted(std::path::PathBuf);

impl Drop for Unmounted {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut c = std::process::Command::new("umount");
            if lazy {
                c.arg("-l");
            }
            c.arg(&self.0).status().is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            panic!("cannot unmount {}", self.0.display());
        }
    }
}

fn mount_or_panic(args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new("mount")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_store_on_a_read_only_filesystem_serves_the_commands_that_read() {
    common::privileges::require_root_and_fuse();
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    let id = s.import(&tar, "frozen:1");
    // The store as read-only media would hold it: a read-only bind mount.
    let at = s.path("ro");
    std::fs::create_dir(&at).unwrap();
    mount_or_panic(&["--bind".as_ref(), s.root().as_os_str(), at.as_os_str()]);
    let _bound = Unmounted(at.clone());
    mount_or_panic(&["-o".as_ref(), "remount,bind,ro".as_ref(), at.as_os_str()]);
    let ro = |args: &[&str]| -> common::Run {
        std::process::Command::new(common::bin())
            .arg("--root")
            .arg(&at)
            .args(args)
            .env_remove("STRATA_ROOT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    };
    assert!(ro(&["images"]).ok().stdout.contains("frozen"));
    let inspect: serde_json::Value =
        serde_json::from_str(&ro(&["image", "inspect", "frozen:1"]).ok().stdout).unwrap();
    assert_eq!(inspect[0]["Id"].as_str().unwrap(), id);
    ro(&["history", "frozen:1"]).ok();
    ro(&["ps", "-a"]).ok();
    let saved = s.path("saved.tar");
    ro(&["save", "-o", saved.to_str().unwrap(), "frozen:1"]).ok();
    let mut archive = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "index.json"), "{names:?}");
    let layout = s.path("layout");
    ro(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
        "frozen:1",
    ])
    .ok();
    assert!(layout.join("index.json").exists(), "save wrote no layout");
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    ro(&["mount", "frozen:1", mnt.to_str().unwrap()]).ok();
    let mounted = Unmounted(mnt.clone());
    assert_eq!(
        std::fs::read(mnt.join("etc/os-release")).unwrap(),
        b"NAME=test\n"
    );
    ro(&["umount", mnt.to_str().unwrap()]).ok();
    std::mem::forget(mounted);
    // A command that writes says why in one line, and changes nothing.
    for args in [&["tag", "frozen:1", "thawed:1"][..], &["rmi", "frozen:1"]] {
        let r = ro(args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("read-only filesystem"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(ro(&["images"]).ok().stdout.contains("frozen"));
}

/// `strata ARGS` with its output on a full disk (/dev/full).
fn onto_full_disk(s: &Strata, args: &[&str]) -> std::process::Output {
    s.cmd(args)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap()
}

/// `strata ARGS` with its output a pipe whose reading end is gone before
/// the command writes a byte, as after `| head -0`.
fn into_closed_pipe(s: &Strata, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    s.cmd(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_command_whose_output_is_closed_ends_quietly_as_dockers_does() {
    use std::os::unix::process::ExitStatusExt;
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    s.import(&tar, "piped:1");
    for args in [
        &["image", "inspect", "piped:1"][..],
        &["images"],
        &["history", "piped:1"],
    ] {
        let out = into_closed_pipe(&s, args);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A `--format` naming a field the object lacks (a misspelling) fails
/// naming it, as docker's does, rather than printing `<no value>`; a
/// field there with no value still prints that.
#[test]
fn a_format_naming_a_field_the_object_lacks_fails() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    s.import(&tar, "img:1");
    let create = [
        "create",
        "--network",
        "none",
        "--name",
        "box",
        "img:1",
        "true",
    ];
    s.run(&create).ok();
    for args in [
        &["inspect", "--format", "{{.Bogus}}", "img:1"][..],
        &["inspect", "--format", "{{.Config.Bogus}}", "box"],
        &["images", "--format", "{{.Bogus}}"],
        &["ps", "-a", "--format", "table {{.ID}}\\t{{.Bogus}}"],
    ] {
        let r = s.run(args);
        assert_eq!(r.stdout, "", "{args:?}");
        r.refused_with("map has no entry for key: Bogus");
    }
    for target in ["img:1", "box"] {
        let r = s.run(&["inspect", "--format", "{{.Config.Entrypoint}}", target]);
        assert_eq!(r.ok().stdout, "<no value>\n", "{target}");
        // Fields docker's JSON leaves out when empty, its templates see.
        let format = "{{.Config.StopSignal}}|{{json .Config.Shell}}";
        let r = s.run(&["inspect", "--format", format, target]);
        assert_eq!(r.ok().stdout, "|null\n", "{target}");
    }
    let r = s.run(&["inspect", "--format", "{{json .State.Health}}", "box"]);
    assert_eq!(r.ok().stdout, "null\n");
}

/// `image inspect` looks for images only, `container inspect` for
/// containers only, as `inspect --type` does; `inspect` alone takes
/// either. Each says docker's "No such image" or "No such container".
#[test]
fn image_and_container_inspect_look_for_their_own_type_only() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    let image = s.import(&tar, "img:1")["sha256:".len()..][..12].to_string();
    let created = s
        .run(&["create", "--network", "none", "img:1", "true"])
        .ok();
    let container = created.stdout.trim()[..12].to_string();
    for (args, expect) in [
        (&["image", "inspect", &container][..], "No such image"),
        (&["inspect", "--type", "image", &container], "No such image"),
        (&["container", "inspect", &image], "No such container"),
        (
            &["inspect", "--type", "container", &image],
            "No such container",
        ),
    ] {
        let r = s.run(args);
        assert_eq!(r.stdout.trim(), "[]", "{args:?}");
        r.refused_with(&format!("{expect}: {}", args[args.len() - 1]));
    }
    let id = |args: &[&str]| s.run(args).ok().stdout.trim().to_string();
    assert!(id(&["image", "inspect", "-f", "{{.Id}}", &image]).contains(&image));
    let found = id(&["container", "inspect", "-f", "{{.Id}}", &container]);
    assert!(found.starts_with(&container), "{found}");
    let found = id(&["inspect", "--type", "image", "-f", "{{.Id}}", &image]);
    assert!(found.contains(&image), "{found}");
    let both = id(&["inspect", "-f", "{{.Id}}", &image, &container]);
    assert_eq!(both.lines().count(), 2, "{both}");
    s.run(&["inspect", "nosuch"])
        .refused_with("No such object: nosuch");
}

/// A text that is a tag and also an id prefix of another image is the
/// tag, as docker's lookup tries a name before an id prefix: `rmi`
/// untags and removes the tagged image, not the other.
#[test]
fn a_tag_that_is_also_an_id_prefix_names_the_tagged_image() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("a.tar"));
    let other = s.import(&tar, "other:1");
    let prefix = other["sha256:".len()..][..6].to_string();
    let tar = TarMaker::new().file("f", b"tagged").write(&s.path("b.tar"));
    let tagged = s.import(&tar, &prefix);
    let r = s.run(&["image", "inspect", "-f", "{{.Id}}", &prefix]).ok();
    assert_eq!(r.stdout.trim(), tagged);
    let r = s.run(&["rmi", &prefix]).ok();
    assert!(
        r.stdout.contains(&format!("Untagged: {prefix}:latest")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("Deleted: {tagged}")),
        "{}",
        r.stdout
    );
    let r = s
        .run(&["image", "inspect", "-f", "{{.Id}}", "other:1"])
        .ok();
    assert_eq!(r.stdout.trim(), other);
    // With the tag gone, the text is the other's id prefix again.
    let r = s.run(&["image", "inspect", "-f", "{{.Id}}", &prefix]).ok();
    assert_eq!(r.stdout.trim(), other);
}

/// The first hex digit two of `ids` (with or without `sha256:`) share;
/// of 17 ids, two do.
fn shared_first_digit(ids: &[String]) -> Option<String> {
    let firsts: Vec<char> = ids
        .iter()
        .map(|id| id.trim_start_matches("sha256:").chars().next().unwrap())
        .collect();
    let shared = firsts
        .iter()
        .enumerate()
        .find(|(i, c)| firsts[..*i].contains(c))?;
    Some(shared.1.to_string())
}

/// An id prefix two ids start with names neither: moby's "multiple IDs
/// found with provided prefix", for containers and for images, where
/// "No such container" would say there is none.
#[test]
fn an_id_prefix_two_ids_share_is_ambiguous_not_missing() {
    let s = Strata::new();
    let mut images = Vec::new();
    let prefix = loop {
        let n = images.len();
        let tar = TarMaker::new()
            .file("f", n.to_string().as_bytes())
            .write(&s.path(&format!("{n}.tar")));
        images.push(s.import(&tar, &format!("i:{n}")));
        if let Some(p) = shared_first_digit(&images) {
            break p;
        }
    };
    for args in [vec!["rmi", &prefix], vec!["image", "inspect", &prefix]] {
        let r = s.run(&args);
        assert_ne!(r.code, 0, "{args:?}");
        let said = format!("multiple IDs found with provided prefix: {prefix}");
        assert!(r.stderr.contains(&said), "{args:?}: {}", r.stderr);
    }
    let mut containers = Vec::new();
    let prefix = loop {
        let id = s.run(&["create", "--network", "none", "i:0", "true"]).ok();
        containers.push(id.stdout.trim().to_string());
        if let Some(p) = shared_first_digit(&containers) {
            break p;
        }
    };
    for args in [
        vec!["start", &prefix],
        vec!["rm", &prefix],
        vec!["rm", "-f", &prefix],
        vec!["exec", &prefix, "true"],
        vec!["inspect", &prefix],
        vec!["container", "inspect", &prefix],
    ] {
        let r = s.run(&args);
        assert_ne!(r.code, 0, "{args:?}");
        let said = format!("multiple IDs found with provided prefix: {prefix}");
        assert!(r.stderr.contains(&said), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("No such"), "{args:?}: {}", r.stderr);
    }
    // A longer prefix, one id's own, still finds it.
    let one = containers.iter().find(|c| c.starts_with(&prefix)).unwrap();
    let r = s.run(&["inspect", "--format", "{{.Id}}", &one[..12]]).ok();
    assert_eq!(r.stdout.trim(), one);
}

#[test]
fn a_bad_command_line_gets_one_line_and_exit_125_as_dockers_does() {
    let s = Strata::new();
    let cases: [&[&str]; 4] = [
        &["run", "--no-such-flag", "img"],
        &["no-such-command"],
        // Checked before the image is looked for (or pulled).
        &["run", "-m", "-5", "--pull", "never", "img", "true"],
        &["run", "--cpus", "-1", "--pull", "never", "img", "true"],
    ];
    for args in cases {
        let r = s.run(args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("Error: "), "{args:?}: {}", r.stderr);
    }
    // The line names what is missing or wrong (clap puts it on the lines
    // after the first) and the help of the subcommand it was given to.
    let named: [(&[&str], &str, &str); 7] = [
        (&["rm"], "not provided: <CONTAINERS>...", "strata rm"),
        (&["tag", "busybox"], "not provided: <TARGET>", "strata tag"),
        (
            &["image", "rm"],
            "not provided: <IMAGES>...",
            "strata image rm",
        ),
        (
            &["run", "--pull", "bogus", "img"],
            "'bogus' for '--pull <PULL>' [possible values: always, missing, never]",
            "strata run",
        ),
        (
            &["ps", "-n", "abc"],
            "'abc' for '--last <LAST>'",
            "strata ps",
        ),
        (
            &["run", "--name"],
            "'--name <NAME>' but none was supplied",
            "strata run",
        ),
        (&["no-such-command"], "'no-such-command'", "strata"),
    ];
    for (args, what, command) in named {
        let r = s.run(args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(what), "{args:?}: {}", r.stderr);
        let help = format!("; see '{command} --help'");
        assert!(r.stderr.contains(&help), "{args:?}: {}", r.stderr);
    }
    assert!(s.run(&["run", "--help"]).ok().stdout.contains("Usage"));
    s.run(&["--version"]).ok();
    // Help into a pipe already closed (`strata --help | true`).
    let out = into_closed_pipe(&s, &["--help"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store this strata writes to is format 3, which a strata of format 2
/// refuses rather than read its containers' partly copied files as zeros;
/// one of format 2 is read as it is and brought up by the first writer;
/// a newer one is refused in one line.
#[test]
fn the_first_writer_brings_a_format_2_store_up_and_a_newer_one_is_refused() {
    let s = Strata::new();
    let tar = sample_tar().write(&s.path("t.tar"));
    s.import(&tar, "img:1");
    let format = s.root().join("format");
    let read = || std::fs::read_to_string(&format).unwrap();
    assert_eq!(read(), "strata store format 3\n");
    std::fs::write(&format, "strata store format 2\n").unwrap();
    s.run(&["images"]).ok();
    assert_eq!(read(), "strata store format 2\n", "a reader writes nothing");
    s.run(&["tag", "img:1", "img:2"]).ok();
    assert_eq!(
        read(),
        "strata store format 3\n",
        "the writer brought it up"
    );
    std::fs::write(&format, "strata store format 4\n").unwrap();
    s.run(&["images"]).refused_with(
        "the store is \"strata store format 4\", this strata reads \"strata store format 3\"",
    );
}

/// Tars an attacker review made: a file a hardlink names replaced later in
/// the layer (by a file, a symlink, a directory, or its directory by a
/// file), and an entry `.` that is a file. The layer keeps hardlinks by
/// name, so the link served the replacement (or a directory), and the
/// last one panicked; a root that is a file mounted as EIO. Each is now
/// refused in one line, exit 125, and nothing is stored.
#[test]
fn a_replaced_hardlink_target_or_a_root_that_is_no_directory_is_refused() {
    let s = Strata::new();
    let tars = [
        (
            TarMaker::new()
                .file("a", &noise(300_000, 5))
                .hardlink("h", "a")
                .file("a", b"new content"),
            "replaces \"a\", which hardlink \"h\"",
        ),
        (
            TarMaker::new()
                .file("a", b"old")
                .hardlink("h", "a")
                .symlink("a", "/etc/passwd"),
            "replaces \"a\", which hardlink \"h\"",
        ),
        (
            TarMaker::new()
                .dir("d")
                .file("d/a", b"old")
                .hardlink("h", "d/a")
                .file("d", b"now a file"),
            "replaces \"d/a\", which hardlink \"h\"",
        ),
        (
            TarMaker::new().raw(tar::EntryType::Regular, ".", "", b"x"),
            "names the root, which must be a directory",
        ),
    ];
    for (i, (tar, refused)) in tars.into_iter().enumerate() {
        let path = tar.write(&s.path(&format!("bad{i}.tar")));
        let r = s.run(&["import", path.to_str().unwrap(), &format!("bad:{i}")]);
        assert_eq!(r.code, 125, "{i}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{i}: {}", r.stderr);
        assert!(r.stderr.contains(refused), "{i}: {}", r.stderr);
    }
    assert_eq!(s.run(&["images", "-q"]).ok().stdout, "");
    s.run(&["verify"]).ok();
    // A directory over a directory keeps what is under it, links included.
    let fine = TarMaker::new()
        .dir("d")
        .file("d/a", b"kept")
        .hardlink("h", "d/a")
        .dir("d")
        .write(&s.path("fine.tar"));
    s.import(&fine, "fine:1");
}

/// `--root` naming a directory that holds other files (a home, /tmp) is
/// refused in one line and left as it was: making a store there took it
/// private, chmodding what was in it. An empty or new directory becomes a
/// store, and a store opens as before.
#[test]
fn a_root_holding_other_files_is_refused_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let s = Strata::new();
    let shared = s.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(shared.join("tmp")).unwrap();
    std::fs::write(shared.join("tmp/tool.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        shared.join("tmp/tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(shared.join("notes"), "mine").unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let at = |root: &std::path::Path, verb: &str| -> common::Run {
        std::process::Command::new(common::bin())
            .arg("--root")
            .arg(root)
            .arg(verb)
            .env_remove("STRATA_ROOT")
            .output()
            .unwrap()
            .into()
    };
    for verb in ["ps", "images", "gc"] {
        let r = at(&shared, verb);
        assert_eq!(r.code, 125, "{verb}: {}", r.stderr);
        assert!(r.stderr.contains("is not a strata store"), "{}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    assert_eq!(mode(&shared), 0o1777);
    assert_eq!(mode(&shared.join("tmp/tool.sh")), 0o755);
    let names: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // An empty directory becomes a store.
    let empty = s.path("empty");
    std::fs::create_dir(&empty).unwrap();
    at(&empty, "ps").ok();
    at(&empty, "images").ok();
}
