//! A power cut at every step of an import, a commit, a gc and the making
//! and removal of a container leaves a store that opens to the state
//! before or after the operation, with every image readable, every
//! referenced chunk hashing to its name, every container whole and
//! `verify` passing; once the operation has returned, to the state after
//! (a container's removal excepted: it is not synced, see
//! `layerdb::container_records`).
//!
//! The operations run on a real store through the recording backend of
//! layerdb's storage seam; each crash state is rebuilt from a copy made
//! before the operation and the prefix of the record up to the crash
//! (`layerdb::storage::Recording::rebuild`, which holds the model of what
//! a crash keeps).
#![allow(clippy::unwrap_used)]

use layerdb::container_records::NewName;
use layerdb::oci_tar::HashingWriter;
use layerdb::storage::{self, Crash, Recording};
use layerdb::{
    ContainerRecord, Digest, Entry, ImageConfig, Ingest, Kind, NewImage, Reference, State, Store,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a store shows: its images with their tags, its layers and its
/// containers (id and name).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shown {
    images: Vec<(Digest, Vec<String>)>,
    layers: Vec<Digest>,
    containers: Vec<(String, String)>,
}

fn shown(store: &Store) -> Shown {
    Shown {
        images: store
            .images()
            .unwrap()
            .into_iter()
            .map(|(i, tags)| (i.id, tags))
            .collect(),
        layers: store.layers().unwrap().iter().map(|l| l.diff_id).collect(),
        containers: store
            .containers()
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect(),
    }
}

/// Bytes that chunk into several chunks, different for each seed.
fn content(seed: u32, len: u32) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32 ^ seed.wrapping_mul(0x85eb_ca6b);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// An uncompressed layer tar: a directory, two files of several chunks
/// and a small (inline) one.
fn layer_tar(seed: u32) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/", b"", tar::EntryType::Directory);
    add("etc/big", &content(seed, 300_000), tar::EntryType::Regular);
    add(
        "etc/other",
        &content(seed + 1000, 150_000),
        tar::EntryType::Regular,
    );
    add("etc/small", b"small file\n", tar::EntryType::Regular);
    b.into_inner().unwrap()
}

/// `strata import` of `layer_tar(seed)` as `name`.
fn import(root: &Path, seed: u32, name: &str) -> Digest {
    let ingest = Ingest::begin(root).unwrap();
    let tar = layer_tar(seed);
    let layer = ingest.from_tar("test.tar", &tar[..], &mut |_| {}).unwrap();
    let config = ImageConfig::new("2024-01-01T00:00:00Z".into());
    let store = Store::open(root).unwrap();
    let image = store
        .commit_image(NewImage {
            config,
            layer: Some(layer),
            parent: None,
            reference: Some(Reference::parse(name).unwrap()),
        })
        .unwrap();
    image.id
}

/// `strata commit`: an image from `parent` plus a new layer with a file
/// changed (new chunks) and one copied (chunks the store has).
fn commit(root: &Path, parent: Digest, name: &str) -> Digest {
    let ingest = Ingest::begin(root).unwrap();
    let mut b = ingest.builder("container test");
    let mut add = |path: &str, kind: Kind, data: Option<Vec<u8>>| {
        let mut e = Entry::new(kind, 0o644);
        e.size = data.as_ref().map_or(0, |d| d.len() as u64);
        let mut reader = data.as_deref();
        b.add(
            path.as_bytes().to_vec(),
            e,
            reader.as_mut().map(|r| r as &mut dyn Read),
        )
        .unwrap();
    };
    add("etc", Kind::Dir, None);
    add("etc/big", Kind::Regular, Some(content(7, 200_000)));
    add("etc/copy", Kind::Regular, Some(content(1, 300_000)));
    let layer = b.finish().unwrap();
    let store = Store::open(root).unwrap();
    let image = store
        .commit_image(NewImage {
            config: ImageConfig::new("2024-01-02T00:00:00Z".into()),
            layer: Some(layer),
            parent: Some(parent),
            reference: Some(Reference::parse(name).unwrap()),
        })
        .unwrap();
    image.id
}

/// The state of the store at `root` (none: an empty store).
fn state_of(root: &Path) -> Shown {
    match root.exists() {
        true => shown(&Store::open(root).unwrap()),
        false => Shown {
            images: Vec::new(),
            layers: Vec::new(),
            containers: Vec::new(),
        },
    }
}

/// Runs `op` on the store at `root` (closed, as the setup left it) through
/// the recording backend, then rebuilds the store as each kind of crash
/// after every prefix of the record leaves it and checks it. Returns the
/// record's length.
fn replay(root: &Path, op: impl FnOnce(&Path)) -> usize {
    replay_as(root, Promise::Durable, op)
}

/// What an operation promises once it has returned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Promise {
    /// Its result survives any crash.
    Durable,
    /// A power cut may still undo it (not a kill): whole, but undone.
    Atomic,
}

/// [`replay`], for an operation that promises `promise`.
fn replay_as(root: &Path, promise: Promise, op: impl FnOnce(&Path)) -> usize {
    let work = root.parent().unwrap().join("crashes");
    std::fs::create_dir_all(&work).unwrap();
    let before_state = state_of(root);
    let before = work.join("before");
    if root.exists() {
        storage::copy_tree(root, &before).unwrap();
    }
    let recording = Arc::new(Recording::new());
    let installed = storage::install(root, recording.clone());
    op(root);
    drop(installed);
    let after_state = state_of(root);
    assert_ne!(before_state, after_state, "the operation changed nothing");
    let events = recording.events();
    if promise == Promise::Durable {
        assert!(events.iter().any(|e| e.is_sync()), "{events:?}");
    }
    for at in 0..=events.len() {
        for crash in [Crash::Kill, Crash::PowerCut, Crash::PowerCutKeepingNames] {
            let out = work.join(format!("{at}-{crash:?}"));
            Recording::rebuild(root, &before, &events[..at], crash, &out).unwrap();
            let whence = format!("{crash:?} after {at} of {} steps", events.len());
            let returned = at == events.len();
            check(
                &out,
                &before_state,
                &after_state,
                returned && (promise == Promise::Durable || crash == Crash::Kill),
                &whence,
            );
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    events.len()
}

/// The store at `root` after a crash: opens, shows the state before or
/// after (after, if the operation had returned), reads whole, verifies,
/// and stays so through a gc.
fn check(root: &Path, before: &Shown, after: &Shown, returned: bool, whence: &str) {
    let store =
        Store::open(root).unwrap_or_else(|e| panic!("{whence}: the store does not open: {e}"));
    let now = shown(&store);
    if returned {
        assert_eq!(
            &now, after,
            "{whence}: the operation returned, then was lost"
        );
    } else {
        assert!(
            &now == before || &now == after,
            "{whence}: neither the state before nor the one after: {now:?}"
        );
    }
    every_image_reads_whole(&store, whence);
    every_verdict_names_good_bytes(&store, whence);
    let report = store.verify().unwrap();
    assert!(
        report.problems.is_empty(),
        "{whence}: {:?}",
        report.problems
    );
    drop(store);
    the_next_layer_holds_its_own_entries_only(root, whence);
    layerdb::gc::collect(root).unwrap();
    let store = Store::open(root).unwrap();
    let after_gc = shown(&store);
    assert_eq!(after_gc.images, now.images, "{whence}: gc after the crash");
    assert_eq!(
        after_gc.containers, now.containers,
        "{whence}: gc after the crash"
    );
    // A container listed is whole: gc left its directory, and nothing else
    // is under containers/ (a directory without a record is gc's).
    let mut dirs: Vec<String> = std::fs::read_dir(root.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let listed: Vec<String> = now.containers.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(dirs, listed, "{whence}: container directories after gc");
    let report = store.verify().unwrap();
    assert!(
        report.problems.is_empty(),
        "{whence}: after gc: {:?}",
        report.problems
    );
}

/// A commit writes its layer's entries before the batch that names the
/// layer, so a crash may leave them under the number the next layer
/// takes: that layer, committed on a copy of the crashed store, must show
/// its own entries and none of them.
fn the_next_layer_holds_its_own_entries_only(root: &Path, whence: &str) {
    let copy = root.with_extension("next-layer");
    storage::copy_tree(root, &copy).unwrap();
    let ingest = Ingest::begin(&copy).unwrap();
    let mut b = ingest.builder("the next layer");
    b.add(b"only-this".to_vec(), Entry::new(Kind::Dir, 0o755), None)
        .unwrap();
    let layer = b.finish().unwrap();
    let diff_id = layer.diff_id;
    let store = Store::open(&copy).unwrap();
    store
        .commit_image(NewImage {
            config: ImageConfig::new("2024-01-01T00:00:00Z".into()),
            layer: Some(layer),
            parent: None,
            reference: None,
        })
        .unwrap();
    let meta = store.layer(&diff_id).unwrap();
    let paths: Vec<Vec<u8>> = store
        .layer_entries(&meta)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, vec![b"only-this".to_vec()], "{whence}");
    drop(store);
    drop(ingest);
    std::fs::remove_dir_all(&copy).unwrap();
}

/// Every layer of every image hashes to its diff id, and every chunk its
/// files name is a file that hashes to that name.
fn every_image_reads_whole(store: &Store, whence: &str) {
    for (image, _) in store.images().unwrap() {
        for diff_id in &image.layers {
            let layer = store
                .layer(diff_id)
                .unwrap_or_else(|e| panic!("{whence}: image {image:?}: {e}"));
            for (path, e) in store.layer_entries(&layer).unwrap() {
                for c in e.chunks() {
                    let file = chunk_file(store.root(), &c.digest);
                    let bytes = std::fs::read(&file).unwrap_or_else(|err| {
                        panic!(
                            "{whence}: {:?}: chunk {}: {err}",
                            String::from_utf8_lossy(&path),
                            file.display()
                        )
                    });
                    assert_eq!(
                        Digest::of(&bytes),
                        c.digest,
                        "{whence}: {} holds other bytes",
                        file.display()
                    );
                }
            }
            let mut h = HashingWriter::default();
            store.write_layer_tar(diff_id, &mut h).unwrap();
            assert_eq!(h.digest(), *diff_id, "{whence}: layer content");
        }
    }
}

/// A chunk file the index keeps a verdict for holds its name's bytes: a
/// crash never leaves a verdict for bytes that were not on disk.
fn every_verdict_names_good_bytes(store: &Store, whence: &str) {
    for f in std::fs::read_dir(store.root().join("chunks")).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(digest) = name.parse::<Digest>() else {
            continue;
        };
        if store.has_chunk_verdict(&digest).unwrap() {
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(
                Digest::of(&bytes),
                digest,
                "{whence}: {} has a verdict but holds other bytes",
                path.display()
            );
        }
    }
}

fn chunk_file(root: &Path, d: &Digest) -> PathBuf {
    layerdb::chunk::chunk_path(root, d)
}

#[test]
fn an_import_into_a_new_store_survives_a_power_cut_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let steps = replay(&root, |root| {
        import(root, 1, "test:1");
    });
    assert!(steps > 5, "{steps} steps");
}

#[test]
fn an_import_into_a_store_with_images_survives_a_power_cut_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    import(&root, 1, "test:1");
    replay(&root, |root| {
        import(root, 2, "test:2");
    });
}

#[test]
fn a_commit_survives_a_power_cut_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let base = import(&root, 1, "test:1");
    replay(&root, |root| {
        commit(root, base, "test:2");
    });
}

#[test]
fn a_gc_survives_a_power_cut_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    import(&root, 1, "test:1");
    import(&root, 2, "test:2");
    Store::open(&root)
        .unwrap()
        .remove_image("test:2", false)
        .unwrap();
    let steps = replay(&root, |root| {
        let report = layerdb::gc::collect(root).unwrap();
        assert!(report.chunks_removed > 0, "{report:?}");
    });
    assert!(steps > 2, "{steps} steps");
}

/// A container record over `image`, named by the store.
fn container_record(id: &str, image: Digest) -> ContainerRecord {
    ContainerRecord {
        id: id.to_string(),
        name: String::new(),
        image,
        image_ref: "test:1".into(),
        created_ns: 1,
        state: State::Created,
        command: vec!["/bin/true".into()],
        config: Default::default(),
        hostname: "h".into(),
        tty: false,
        interactive: false,
        network: "none".into(),
        mounts: vec![],
        tmpfs: vec![],
        auto_remove: false,
        init: false,
        log_driver: Default::default(),
        security: Default::default(),
        resources: Default::default(),
        net: Default::default(),
        restart: Default::default(),
        log_options: Default::default(),
    }
}

/// `strata run`'s record: made through a reader of the index, as `run`
/// makes it, with a runtime file of the caller's beside the upper.
fn make_container(root: &Path, id: &str, image: Digest, name: &str) {
    let store = Store::open_read_only(root).unwrap();
    let made = store
        .new_container(container_record(id, image), NewName::Given(name.into()))
        .unwrap();
    std::fs::write(made.dir().path().join("hostname"), "h\n").unwrap();
    made.commit().unwrap();
}

#[test]
fn making_a_container_survives_a_power_cut_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let image = import(&root, 1, "test:1");
    make_container(&root, &"a".repeat(64), image, "first");
    let steps = replay(&root, |root| {
        make_container(root, &"b".repeat(64), image, "second");
    });
    assert!(steps > 3, "{steps} steps");
}

#[test]
fn removing_a_container_survives_a_crash_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let image = import(&root, 1, "test:1");
    make_container(&root, &"a".repeat(64), image, "first");
    make_container(&root, &"b".repeat(64), image, "second");
    replay_as(&root, Promise::Atomic, |root| {
        layerdb::container_records::remove(root, &"b".repeat(64)).unwrap();
    });
}
