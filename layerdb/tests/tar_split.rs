//! A layer read from another tool's tar is written again byte for byte,
//! so an image keeps the diff ids (and the id) its config gives it; a tar
//! whose contents the layer does not keep as read leaves in canonical form.
#![allow(clippy::unwrap_used)]

use layerdb::import::Framing;
use layerdb::{Digest, ExactImage, Ingest, Store};
use std::path::Path;

/// A tar as GNU tar or another builder writes it, not as strata's
/// canonical writer would: `./` names, GNU headers with a user name,
/// entries out of path order, a hardlink, a long name, and the 10 KiB
/// record padding at the end.
fn foreign_tar(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_username("someone").unwrap();
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, path, l).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    };
    add("./", tar::EntryType::Directory, b"", None);
    add("./z/", tar::EntryType::Directory, b"", None);
    add(
        "./z/late",
        tar::EntryType::Regular,
        b"written before a",
        None,
    );
    add("./a", tar::EntryType::Regular, &[7u8; 300_000], None);
    add("./a-link", tar::EntryType::Link, b"", Some("./a"));
    let long = format!("./z/{}", "n".repeat(150));
    add(&long, tar::EntryType::Regular, b"long name", None);
    add("./empty", tar::EntryType::Regular, b"", None);
    for (path, data) in extra {
        add(path, tar::EntryType::Regular, data, None);
    }
    let mut out = b.into_inner().unwrap();
    out.resize(out.len().div_ceil(10240) * 10240, 0);
    out
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

/// Loads `tar` as a one-layer image whose config names it by its own
/// sha256, as `load` and `pull` do; the image's stored layer.
fn load(root: &Path, tar: &[u8]) -> (Digest, Option<Digest>) {
    let ingest = Ingest::begin(root).unwrap();
    let (layer, diff_id) = ingest
        .from_tar_with_diff_id("test.tar", tar, Framing::Tar, &|_| None)
        .unwrap();
    assert_eq!(diff_id, sha256(tar));
    let original = layer.original.as_ref().map(|o| o.diff_id);
    let stored = layer.diff_id;
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id:#}"]}}}}"#
    );
    let store = Store::open(root).unwrap();
    store
        .commit_exact_image(ExactImage {
            config_json: config.into_bytes(),
            layers: vec![stored],
            new_layers: vec![layer],
            parent: None,
            reference: Some(layerdb::Reference::parse("foreign:1").unwrap()),
            repo_digest: None,
        })
        .unwrap();
    (stored, original)
}

#[test]
fn a_foreign_tar_is_written_again_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tar = foreign_tar(&[]);
    let (stored, original) = load(&root, &tar);
    let named = sha256(&tar);
    assert_ne!(stored, named, "the test tar must not be canonical");
    assert_eq!(original, Some(named));
    let store = Store::open(&root).unwrap();
    assert!(store.can_write_layer_as(&stored, &named).unwrap());
    let mut out = Vec::new();
    store.write_layer_tar_as(&stored, &named, &mut out).unwrap();
    assert!(
        out == tar,
        "the tar written again differs from the one read"
    );
    // The canonical form is still there, under the layer's own name.
    let mut canonical = Vec::new();
    store
        .write_layer_tar_as(&stored, &stored, &mut canonical)
        .unwrap();
    assert_eq!(sha256(&canonical), stored);
}

#[test]
fn a_tar_that_gives_a_path_content_twice_leaves_in_canonical_form() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // The first `./z/late` is replaced: the layer no longer holds its
    // content. (`./a`, which a hardlink names, may not be: see
    // store_cli.rs's test of replaced hardlink targets.)
    let tar = foreign_tar(&[("./z/late", b"second")]);
    let (stored, original) = load(&root, &tar);
    assert_eq!(original, None);
    let store = Store::open(&root).unwrap();
    assert!(!store.can_write_layer_as(&stored, &sha256(&tar)).unwrap());
    assert!(store
        .write_layer_tar_as(&stored, &sha256(&tar), &mut Vec::new())
        .is_err());
}

#[test]
fn gc_removes_a_split_with_its_layer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tar = foreign_tar(&[]);
    let (stored, _) = load(&root, &tar);
    let store = Store::open(&root).unwrap();
    store.remove_image("foreign:1", false).unwrap();
    drop(store);
    layerdb::gc::collect(&root).unwrap();
    let store = Store::open(&root).unwrap();
    assert!(!store.can_write_layer_as(&stored, &sha256(&tar)).unwrap());
    drop(store);
    // Loaded again, the layer is new and its split with it.
    let (again, original) = load(&root, &tar);
    assert_eq!(again, stored);
    assert_eq!(original, Some(sha256(&tar)));
    let store = Store::open(&root).unwrap();
    let mut out = Vec::new();
    store
        .write_layer_tar_as(&stored, &sha256(&tar), &mut out)
        .unwrap();
    assert!(out == tar);
}

#[test]
fn a_child_of_a_foreign_image_names_its_parents_tars_and_leaves_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tar = foreign_tar(&[]);
    let (stored, _) = load(&root, &tar);
    let ingest = Ingest::begin(&root).unwrap();
    let mut b = ingest.builder("container test");
    let mut e = layerdb::Entry::new(layerdb::Kind::Regular, 0o644);
    e.size = 3;
    b.add(
        b"new".to_vec(),
        e,
        Some(&mut &b"new"[..] as &mut dyn std::io::Read),
    )
    .unwrap();
    let layer = b.finish().unwrap();
    let new = layer.diff_id;
    let store = Store::open(&root).unwrap();
    let parent = store.resolve_image("foreign:1").unwrap();
    let child = store
        .commit_image(layerdb::NewImage {
            config: layerdb::ImageConfig::new("2024-01-02T00:00:00Z".into()),
            layer: Some(layer),
            parent: Some(parent.id),
            reference: None,
        })
        .unwrap();
    assert_eq!(child.layers, vec![stored, new]);
    assert_eq!(child.config().diff_ids().unwrap(), vec![sha256(&tar), new]);
    let out = store.outgoing(&child).unwrap();
    assert!(
        !out.rewritten(),
        "every layer can leave as its config names it"
    );
    assert_eq!(out.layers, vec![(stored, sha256(&tar)), (new, new)]);
}
