//! The store: one root directory holding the RocksDB index (`db/`), the
//! chunk files (`chunks/`), container uppers (`containers/<id>/`) and
//! lock files. Every change is one atomic index write.

use crate::blob::CompressedBlob;
use crate::chunk::verdicts::{self, StoredVerdicts};
use crate::chunk::{ChunkDir, ChunkEnds};
use crate::db::Db;
use crate::digest::Digest;
use crate::entry::{Data, Entry, Kind};
use crate::error::{IoContext, Result, StoreError};
use crate::image::{ExactImage, ImageConfig, ImageRecord};
use crate::keys;
use crate::layer::{LayerMeta, PendingLayer};
use crate::reference::{DigestReference, Reference};
use rocksdb::WriteBatch;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open store: the index (RocksDB under `<root>/db`), the chunk files
/// (`<root>/chunks`) and the containers' directories (`<root>/containers`).
/// Opened for writing it holds the writer lock until dropped.
pub struct Store {
    root: PathBuf,
    /// Shared (weakly) with the chunk directory, which looks verdicts up.
    db: Arc<Db>,
    chunks: ChunkDir,
    /// Set when opened by [`Store::open_to_delete`]: the disk space reserve
    /// is made again when the store closes (after `db`, so after the
    /// writer lock is released).
    _remake_reserve: Option<RemakeReserve>,
}

pub(crate) struct RemakeReserve(PathBuf);

impl Drop for RemakeReserve {
    fn drop(&mut self) {
        crate::reserve::keep(&self.0);
    }
}

/// How long a writer waits for the writer lock before giving up
/// (`STRATA_LOCK_TIMEOUT` seconds, 120 by default).
pub fn writer_wait_limit() -> std::time::Duration {
    crate::db::lock_timeout()
}

/// Where the store lives when neither `--root` nor `STRATA_ROOT` says.
pub fn default_root() -> PathBuf {
    if let Some(r) = std::env::var_os("STRATA_ROOT").filter(|r| !r.is_empty()) {
        return PathBuf::from(r);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/strata");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share")
        });
    data.join("strata")
}

/// Prepares `root` for a command that writes to it: only its owner may
/// (`check_owner`), and not on a read-only filesystem; then
/// [`create_root`]. Every writer starts here, before it makes any file.
pub fn create_root_for_writing(root: &Path) -> Result<()> {
    check_owner(root)?;
    if on_read_only_fs(root) {
        return Err(StoreError::ReadOnlyFilesystem(root.to_path_buf()));
    }
    prepare_root(root, true)
}

/// Creates the store root readable by its owner only: it holds every
/// image's files and every container's writes.
pub fn create_root(root: &Path) -> Result<()> {
    prepare_root(root, false)
}

/// [`create_root`]; `writing`: for a writer, which brings an older format
/// up to [`FORMAT`].
fn prepare_root(root: &Path, writing: bool) -> Result<()> {
    let storage = crate::storage::of(root);
    if !root.exists() {
        if let Some(parent) = root.parent() {
            storage.create_dir_all(parent).at(parent)?;
        }
        match storage.create_dir(root, 0o700) {
            Ok(()) => fs::set_permissions(root, fs::Permissions::from_mode(0o700)).at(root)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at(root),
        }
    }
    check_format(root, &*storage, writing)?;
    if !root.join("chunks").exists() {
        crate::placement::mark_top_of_tree(root);
    }
    // `db/` too, rather than leaving it to RocksDB: made here, after the
    // format file, it is a name of the store's like the others (RocksDB
    // syncs the files inside it, never the root's name for it). It comes
    // first: chunks without it mean it was removed.
    crate::db::check_index_present(root)?;
    for sub in ["db", "chunks", "containers", "tmp", "pins"] {
        let p = root.join(sub);
        storage.create_dir_all(&p).at(&p)?;
    }
    make_private(root)
}

/// Makes the store private to its owner whatever made it before: a root
/// made by hand (or by an older strata) with mode 0755 let other users
/// read the index, whose RocksDB log holds file content. The root and
/// `db/` are checked at every open (RocksDB makes its files 0644); a root
/// or `db/` found open has everything of the store's own made private:
/// directories 0700, files 0600. Inside `containers/` only the directory
/// itself: the container files below keep the modes their processes need.
fn make_private(root: &Path) -> Result<()> {
    let open_to_others = |p: &Path| -> Result<bool> {
        Ok(fs::symlink_metadata(p).at(p)?.permissions().mode() & 0o077 != 0)
    };
    let db = root.join("db");
    let was_open = open_to_others(root)? || (db.exists() && open_to_others(&db)?);
    if was_open {
        for sub in ["chunks", "tmp", "pins"] {
            make_tree_private(&root.join(sub))?;
        }
        make_tree_private(&root.join("containers"))?;
    }
    make_tree_private(&db)?;
    // The root's own files (format, locks, reserve) and the root last: until
    // then nothing below was reachable by others only if it was private.
    for f in fs::read_dir(root).at(root)?.flatten() {
        if f.file_type().is_ok_and(|t| t.is_file()) {
            set_private(&f.path())?;
        }
    }
    set_private(root)
}

/// `dir` and everything in it private, recursively, except for
/// the container directories below `containers/`.
fn make_tree_private(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(()); // not made yet
    };
    set_private(dir)?;
    if dir.file_name().is_some_and(|n| n == "containers") {
        return Ok(());
    }
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => make_tree_private(&e.path())?,
            Ok(t) if t.is_file() => set_private(&e.path())?,
            _ => {}
        }
    }
    Ok(())
}

/// Drops the group and other bits of `path` if it has any (directories
/// become 0700, files 0600 from the usual 0755 and 0644).
fn set_private(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        // Gone meanwhile (a RocksDB file replaced by a writer): nothing to hide.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(path),
    };
    let current = meta.permissions().mode() & 0o7777;
    if current & 0o077 == 0 {
        return Ok(());
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(current & !0o077)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.at(path),
    }
}

/// The on-disk format this code writes (docs/design.md). A store of
/// another format is refused rather than misread. 3: a container's upper
/// may hold files copied up block by block (fusefs's `partial`), which a
/// strata of format 2 would read as zeros and commit so; it refuses 3.
const FORMAT: &str = "strata store format 3\n";

/// Formats this code reads as they are; its first writer rewrites one as
/// [`FORMAT`] (a reader may be another user, who must not own the file).
const OLDER_FORMATS: [&str; 1] = ["strata store format 2\n"];

/// Whether `root` exists on a filesystem mounted read-only (a store on
/// read-only media or behind a read-only bind mount). Nothing can write
/// such a store, so a reader needs no lock and no secondary view to keep
/// up with a writer; a secondary could not even make its directory.
pub(crate) fn on_read_only_fs(root: &Path) -> bool {
    rustix::fs::statvfs(root)
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Refuses a store another user owns, as git refuses another user's
/// repository. RocksDB makes its files (a new MANIFEST, OPTIONS, logs) as
/// whoever opens it for writing: root writing a user's store (`sudo
/// strata --root ~u/S tag ...`) left files root owned, and the owner's
/// next command failed on them. Reading is refused too (session 43, found
/// by a review as an attacker): every file of the store is its owner's to
/// plant, and root's `ps` or `images` followed them, settling a container
/// whose recorded cgroup listed any pid to kill and any file to write,
/// and opening a secondary index whose scratch directory's `LOG` was a
/// link to any path. In a user namespace (a rootless container's monitor)
/// the owner shows as the mapped id, 0, as the euid does.
pub(crate) fn check_owner(root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(root) else {
        return Ok(()); // not made yet: this user makes it
    };
    let uid = meta.uid();
    if uid == nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(
            || format!("uid {uid}"),
            |u| format!("{} (uid {uid})", u.name),
        );
    Err(StoreError::OtherOwner {
        root: root.to_path_buf(),
        owner,
    })
}

/// The names a store makes in its root (and `lost+found`, which a
/// filesystem made for the store brings).
const STORE_NAMES: [&str; 10] = [
    "format",
    "db",
    "chunks",
    "containers",
    "tmp",
    "pins",
    "lock",
    "gc.lock",
    "reserve",
    "lost+found",
];

/// Refuses to make a store in a directory that holds other files: making
/// it private would take them from their other users (`--root ~` or
/// `--root /tmp` made the home or /tmp 1700, its files 0600).
fn refuse_foreign_files(root: &Path) -> Result<()> {
    let foreign = fs::read_dir(root)
        .at(root)?
        .flatten()
        .map(|e| e.file_name())
        .find(|name| !STORE_NAMES.iter().any(|own| name == *own));
    match foreign {
        Some(name) => Err(StoreError::NotAStore {
            root: root.to_path_buf(),
            name: name.to_string_lossy().into_owned(),
        }),
        None => Ok(()),
    }
}

fn check_format(root: &Path, storage: &dyn crate::storage::Storage, writing: bool) -> Result<()> {
    let path = root.join("format");
    match fs::read_to_string(&path) {
        Ok(found) if found == FORMAT => Ok(()),
        Ok(found) if OLDER_FORMATS.contains(&found.as_str()) => {
            if writing {
                storage
                    .replace_file_synced(&path, FORMAT.as_bytes())
                    .at(&path)?;
                storage.sync_dir(root).at(root)?;
            }
            Ok(())
        }
        Ok(found) => Err(StoreError::Corrupt {
            key: path.display().to_string(),
            reason: format!(
                "the store is {:?}, this strata reads {:?}: use another --root",
                found.trim(),
                FORMAT.trim()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if root.join("db").exists() {
                return Err(StoreError::Corrupt {
                    key: path.display().to_string(),
                    reason: "a store from before format 2 (chunks in fan-out directories): use another --root".into(),
                });
            }
            refuse_foreign_files(root)?;
            // Its bytes are synced before it is named: a power cut after the
            // name reached the disk and before the bytes did left an empty
            // format file, and the store was refused as another format
            // (tests/power_cut.rs, an import into a new store). Every
            // later write of the store comes after this one.
            storage
                .create_file(&path, FORMAT.as_bytes(), true)
                .map(drop)
                .at(&path)
        }
        Err(e) => Err(e).at(&path),
    }
}

/// An image to add: at most one new layer on top of its parent's (an
/// import has no parent, a commit of an unchanged container adds no layer).
pub struct NewImage {
    /// The image's config. Its `rootfs` is the store's to fill in: the
    /// parent's diff ids, then the new layer's.
    pub config: ImageConfig,
    /// The layer it adds on top of its parent's, if any.
    pub layer: Option<PendingLayer>,
    /// The local image it is made from, if any: its layers come first.
    pub parent: Option<Digest>,
    /// The name to tag it with, if any.
    pub reference: Option<Reference>,
}

/// What `rmi` did, in docker's words.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// A reference was removed; the image stays under its other names
    /// (`name:tag`).
    Untagged(String),
    /// The image itself was removed (its id).
    Deleted(Digest),
}

impl Store {
    /// Opens for writing, waiting (bounded) while another process writes.
    pub fn open(root: &Path) -> Result<Store> {
        create_root_for_writing(root)?;
        let db = Db::open_writer(root)?;
        crate::reserve::keep(root);
        let store = Store::from_db(root, db, None);
        store.move_legacy_containers()?;
        Ok(store)
    }

    /// Opens for writing for a command that deletes (`rm`, `rmi`, `gc`),
    /// which must work on a full disk: the disk space reserve is freed once
    /// the writer lock is held, before the index opens, and made again when
    /// the store closes.
    pub fn open_to_delete(root: &Path) -> Result<Store> {
        create_root_for_writing(root)?;
        let db = Db::open_writer_then(root, || crate::reserve::release(root))?;
        let store = Store::from_db(root, db, Some(RemakeReserve(root.to_path_buf())));
        store.move_legacy_containers()?;
        Ok(store)
    }

    /// Opens the index without writing anything (not even a lock file):
    /// for a failed ingest on a full disk looking for its chunks' users.
    pub(crate) fn open_without_writing(root: &Path) -> Result<Store> {
        Ok(Store::from_db(root, Db::open_without_writing(root)?, None))
    }

    /// Opens for reading without ever waiting: for long-lived mount servers.
    pub fn open_read_only(root: &Path) -> Result<Store> {
        check_owner(root)?;
        if on_read_only_fs(root) {
            check_format(root, &*crate::storage::of(root), false)?;
            return Store::open_without_writing(root);
        }
        create_root(root)?;
        let db = match Db::open_secondary(root) {
            // A full disk: the secondary's directory (or its files) found no
            // room. The index is read as it is, as on a read-only
            // filesystem: the view cannot catch up, and a writer replacing
            // files during the open makes it fail, but a command that only
            // reads still works (a container filling the disk can be seen
            // and stopped).
            Err(e) if e.is_no_space() => {
                log::debug!("{}: reading the index as it is: {e}", root.display());
                Db::open_without_writing(root)?
            }
            opened => opened?,
        };
        Ok(Store::from_db(root, db, None))
    }

    /// The store at `root` over its opened index: its chunk files read
    /// with the verdicts the index keeps.
    fn from_db(root: &Path, db: Db, remake_reserve: Option<RemakeReserve>) -> Store {
        let db = Arc::new(db);
        Store {
            root: root.to_path_buf(),
            chunks: ChunkDir::new(root.join("chunks")).consulting(StoredVerdicts::of(&db)),
            db,
            _remake_reserve: remake_reserve,
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's chunk files, for reading file content.
    pub fn chunks(&self) -> &ChunkDir {
        &self.chunks
    }

    pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
        bincode::deserialize(bytes).map_err(|e| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: e.to_string(),
        })
    }

    fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
        bincode::serialize(value).expect("store records always serialize")
    }

    // ---- layers -------------------------------------------------------

    /// The record of the layer with this diff id; `NoSuchLayer` if absent.
    pub fn layer(&self, diff_id: &Digest) -> Result<LayerMeta> {
        let key = keys::layer(diff_id);
        match self.db.get(&key)? {
            Some(v) => Self::decode(&key, &v),
            None => Err(StoreError::NoSuchLayer(*diff_id)),
        }
    }

    /// Whether a layer with this diff id is in the store.
    pub fn has_layer(&self, diff_id: &Digest) -> Result<bool> {
        Ok(self.db.get(&keys::layer(diff_id))?.is_some())
    }

    /// Every layer in the store, in diff-id order.
    pub fn layers(&self) -> Result<Vec<LayerMeta>> {
        self.db
            .scan(&[keys::LAYER])?
            .iter()
            .map(|(k, v)| Self::decode(k, v))
            .collect()
    }

    /// The entry of `path` (relative, no leading `/`; the root is empty) in
    /// `layer`, or `None` if that layer does not have it.
    pub fn entry(&self, layer: &LayerMeta, path: &[u8]) -> Result<Option<Entry>> {
        let key = keys::entry(layer.seq, path);
        self.db
            .get(&key)?
            .map(|v| Self::decode(&key, &v))
            .transpose()
    }

    /// Direct children of `dir` in name order, whiteouts included.
    pub fn children(&self, layer: &LayerMeta, dir: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>> {
        let prefix = keys::entry_dir(layer.seq, dir);
        let mut out = Vec::new();
        let mut failed = None;
        self.db.scan_each(&prefix, |k, v| {
            let name = &k[prefix.len()..];
            if name.is_empty() {
                return true; // the root's own entry
            }
            match Self::decode(k, v) {
                Ok(e) => out.push((name.to_vec(), e)),
                Err(e) => failed = Some(e),
            }
            failed.is_none()
        })?;
        failed.map_or(Ok(out), Err)
    }

    /// Says that the files `entries` are about to be read (a mount listed
    /// their directory): the stored verdicts of their first chunks are
    /// looked up ahead, on another thread (`ChunkDir::expect`). The chunks
    /// after them are asked by the sequential read-ahead.
    pub fn expect_reads<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>) {
        const FIRST_CHUNKS: usize = 2;
        // A huge directory is read long after its first files: the rest
        // would only crowd the verdicts kept in memory.
        const MOST: usize = 8192;
        let first = entries
            .into_iter()
            .flat_map(|e| e.chunks().iter().take(FIRST_CHUNKS))
            .map(|c| c.digest)
            .take(MOST)
            .collect();
        self.chunks.expect(first);
    }

    /// Every entry of a layer, in path order.
    pub fn layer_entries(&self, layer: &LayerMeta) -> Result<Vec<(Vec<u8>, Entry)>> {
        let mut out: Vec<(Vec<u8>, Entry)> = self
            .db
            .scan(&keys::entries_of_layer(layer.seq))?
            .iter()
            .map(|(k, v)| Ok((keys::entry_path(k), Self::decode(k, v)?)))
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Reads a regular file's content from `offset`, touching only the
    /// chunks that cover the range. Finds the first one by computing the
    /// file's chunk ends: a caller reading one big file many times keeps
    /// them (`ChunkEnds::of(entry.chunks())`) and calls `read_at_with`.
    pub fn read_at(&self, entry: &Entry, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_at_with(entry, &ChunkEnds::of(entry.chunks()), offset, buf)
    }

    /// `read_at` with the file's chunk ends computed before; ends kept for
    /// another file (another count or total) are computed again.
    pub fn read_at_with(
        &self,
        entry: &Entry,
        ends: &ChunkEnds,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        if offset >= entry.size {
            return Ok(0);
        }
        let want = buf.len().min((entry.size - offset) as usize);
        match &entry.data {
            Data::None => Ok(0),
            Data::Inline(bytes) => {
                let start = offset as usize;
                buf[..want].copy_from_slice(&bytes[start..start + want]);
                Ok(want)
            }
            Data::Chunks(list) => {
                let fresh;
                let ends = if ends.fits(list, entry.size) {
                    ends
                } else {
                    fresh = ChunkEnds::of(list);
                    &fresh
                };
                crate::chunk::read_chunked(&self.chunks, list, ends, offset, &mut buf[..want])
            }
        }
    }

    /// Writes the layer's canonical OCI tar: the bytes its diff id hashes.
    pub fn write_layer_tar(&self, diff_id: &Digest, out: &mut dyn Write) -> Result<()> {
        let layer = self.layer(diff_id)?;
        let entries = self.layer_entries(&layer)?;
        crate::oci_tar::write(
            entries.iter().map(|(p, e)| (p.as_slice(), e)),
            &self.chunks,
            out,
        )
    }

    pub(crate) fn next_seq(&self) -> Result<u32> {
        Ok(match self.db.get(keys::NEXT_SEQ)? {
            Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            _ => 1,
        })
    }

    // ---- images -------------------------------------------------------

    /// Adds an image made from its parent's layers and config names
    /// (those of a parent loaded from another tool included) and its new
    /// layer, in one atomic write. A layer the store has already is
    /// shared, not written again.
    pub fn commit_image(&self, new: NewImage) -> Result<ImageRecord> {
        let (mut named, mut layers) = match &new.parent {
            None => (Vec::new(), Vec::new()),
            Some(p) => {
                let parent = self
                    .image(p)?
                    .ok_or_else(|| StoreError::NoSuchImage(format!("{p:#}")))?;
                let named = parent
                    .config()
                    .diff_ids()
                    .map_err(|e| StoreError::Corrupt {
                        key: format!("image {p:#}"),
                        reason: e.to_string(),
                    })?;
                (named, parent.layers)
            }
        };
        if let Some(layer) = &new.layer {
            named.push(layer.diff_id);
            layers.push(layer.diff_id);
        }
        let mut config = new.config;
        config.rootfs = crate::image::RootFs::of(&named);
        self.commit_exact_image(ExactImage {
            config_json: config.to_bytes(),
            layers,
            new_layers: new.layer.into_iter().collect(),
            parent: new.parent,
            reference: new.reference,
            repo_digest: None,
        })
    }

    /// Adds an image whose config bytes are kept as given (see
    /// `ExactImage`), and its new layers, in one atomic write.
    pub fn commit_exact_image(&self, mut new: ExactImage) -> Result<ImageRecord> {
        let named =
            crate::oci::config_diff_ids("new image config", &new.config_json).map_err(|e| {
                StoreError::Corrupt {
                    key: "new image config".into(),
                    reason: e.to_string(),
                }
            })?;
        if named.len() != new.layers.len() {
            return Err(StoreError::Corrupt {
                key: "new image config".into(),
                reason: format!("{} diff ids for {} layers", named.len(), new.layers.len()),
            });
        }
        let mut batch = WriteBatch::default();
        let mut seq = self.next_seq()?;
        let mut written = std::collections::HashSet::new();
        for layer in &mut new.new_layers {
            if let Some(original) = &layer.original {
                batch.put(
                    keys::tar_split(&layer.diff_id, &original.diff_id),
                    Self::encode(&original.split),
                );
            }
            if self.has_layer(&layer.diff_id)? || !written.insert(layer.diff_id) {
                continue;
            }
            let entries = std::mem::take(&mut layer.entries);
            let meta = LayerMeta {
                diff_id: layer.diff_id,
                seq,
                size: layer.size,
                entries: entries.len() as u64,
            };
            self.write_entries(seq, entries)?;
            batch.put(keys::layer(&layer.diff_id), Self::encode(&meta));
            seq += 1;
        }
        batch.put(keys::NEXT_SEQ, seq.to_be_bytes());
        for d in &new.layers {
            if !written.contains(d) && !self.has_layer(d)? {
                return Err(StoreError::NoSuchLayer(*d));
            }
        }
        let record = ImageRecord {
            id: Digest::of(&new.config_json),
            config_json: new.config_json,
            layers: new.layers,
            parent: new.parent,
        };
        batch.put(keys::image(&record.id), Self::encode(&record));
        if let Some(r) = &new.reference {
            batch.put(keys::reference(&r.to_string()), record.id.0);
        }
        if let Some(r) = &new.repo_digest {
            batch.put(keys::repo_digest(&r.to_string()), record.id.0);
        }
        // Chunks were written without fsync; make them durable before the
        // index points at them.
        let started = std::time::Instant::now();
        self.chunks.sync()?;
        let synced = started.elapsed();
        // The chunk files the new layers' ingests wrote or compared with
        // their bytes are durable now (the syncfs above): their verdicts
        // go in the same batch, so a mount reads them without hashing.
        verdicts::record(&mut batch, new.new_layers.iter().flat_map(|l| &l.verdicts));
        self.db.write(batch)?;
        log::debug!(
            "commit: syncfs {synced:?}, index batch {:?}",
            started.elapsed() - synced
        );
        crate::ingest::note_commit(&self.root);
        Ok(record)
    }

    /// Writes a new layer's entries under `seq` ahead of the batch that
    /// names the layer, a few MB at a time, each entry freed once in a
    /// batch. In that batch, a layer of many small files was in memory
    /// three times over (its entries, the batch, RocksDB's memtable):
    /// 1.3 GB for 100,000 files of 4 KiB. Until the layer's record names
    /// `seq`, nothing reads these keys; a crash before it leaves them
    /// under a number the next commit takes again, and clears first.
    pub(crate) fn write_entries(&self, seq: u32, entries: Vec<(Vec<u8>, Entry)>) -> Result<()> {
        const BATCH_BYTES: usize = 8 << 20;
        let mut batch = WriteBatch::default();
        let (from, to) = (keys::entries_of_layer(seq), keys::entries_of_layer(seq + 1));
        if self.db.any_between(&from, &to)? {
            batch.delete_range(from, to);
        }
        for (path, entry) in entries {
            batch.put(keys::entry(seq, &path), Self::encode(&entry));
            if batch.size_in_bytes() >= BATCH_BYTES {
                self.db.write_unsynced(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            self.db.write_unsynced(batch)?;
        }
        Ok(())
    }

    /// The image with this exact id, or `None`.
    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let key = keys::image(id);
        self.db
            .get(&key)?
            .map(|v| Self::decode(&key, &v))
            .transpose()
    }

    /// Every image with its references (`name:tag`), sorted.
    pub fn images(&self) -> Result<Vec<(ImageRecord, Vec<String>)>> {
        let mut all = Vec::new();
        self.for_each_image(|rec, tags| {
            all.push((rec, tags));
            Ok(())
        })?;
        Ok(all)
    }

    /// How many images the store holds, their records not read.
    pub fn image_count(&self) -> Result<u64> {
        let mut count = 0;
        self.db.scan_each(&[keys::IMAGE], |_, _| {
            count += 1;
            true
        })?;
        Ok(count)
    }

    /// `f` of every image with its references, in id order, one record
    /// read at a time: a config may be megabytes, and a store of many
    /// such images held them all at once (40 loaded configs of 31 MiB,
    /// 1.3 MB of gzip, made every `images` take 2.6 GB).
    pub fn for_each_image(
        &self,
        mut f: impl FnMut(ImageRecord, Vec<String>) -> Result<()>,
    ) -> Result<()> {
        let mut by_id: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (r, id) in self.references()? {
            by_id.entry(id).or_default().push(r);
        }
        let mut failed = None;
        self.db.scan_each(&[keys::IMAGE], |k, v| {
            let done = Self::decode::<ImageRecord>(k, v).and_then(|rec| {
                let tags = by_id.remove(&rec.id).unwrap_or_default();
                f(rec, tags)
            });
            failed = done.err();
            failed.is_none()
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Every reference (`name:tag`) with the image id it names, in name order.
    pub fn references(&self) -> Result<Vec<(String, Digest)>> {
        self.scan_references(keys::REF)
    }

    /// Every RepoDigest (`name@sha256:<hex>`) with its image, sorted.
    pub fn repo_digests(&self) -> Result<Vec<(String, Digest)>> {
        self.scan_references(keys::REPO_DIGEST)
    }

    /// The RepoDigests of one image.
    pub fn repo_digests_of(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(self
            .repo_digests()?
            .into_iter()
            .filter(|(_, image)| image == id)
            .map(|(r, _)| r)
            .collect())
    }

    /// Records that the repository's manifest `r.digest` is image `id`
    /// (a pull that found the image present, a push).
    pub fn add_repo_digest(&self, id: &Digest, r: &DigestReference) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(keys::repo_digest(&r.to_string()), id.0);
        self.db.write(batch)
    }

    /// The blob `diff_id` was last pushed as with `compression`.
    pub fn compressed_blob(
        &self,
        diff_id: &Digest,
        compression: &str,
    ) -> Result<Option<CompressedBlob>> {
        let key = keys::compressed_blob(diff_id, compression);
        self.db
            .get(&key)?
            .map(|v| Self::decode(&key, &v))
            .transpose()
    }

    /// Records what layers were pushed as: (diff id, compression, blob).
    pub fn remember_compressed_blobs(
        &self,
        blobs: &[(Digest, &str, CompressedBlob)],
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (diff_id, compression, blob) in blobs {
            if self.has_layer(diff_id)? {
                batch.put(
                    keys::compressed_blob(diff_id, compression),
                    Self::encode(blob),
                );
            }
        }
        self.db.write(batch)
    }

    fn scan_references(&self, kind: u8) -> Result<Vec<(String, Digest)>> {
        self.db
            .scan(&[kind])?
            .into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8_lossy(&k[1..]).into_owned();
                let id: [u8; 32] = v.try_into().map_err(|_| StoreError::Corrupt {
                    key: name.clone(),
                    reason: "reference does not hold a digest".into(),
                })?;
                Ok((name, Digest(id)))
            })
            .collect()
    }

    /// Finds an image by full id (with or without `sha256:`), `name[:tag]`
    /// or unique id prefix, in that order, as docker's GetImage looks:
    /// a text that is both a tag and an id prefix (`051fc1`) is the tag.
    /// A full id is never a name (`tag` refuses one).
    pub fn resolve_image(&self, s: &str) -> Result<ImageRecord> {
        let missing = || StoreError::NoSuchImage(s.to_string());
        let found = |id: Digest| self.image(&id)?.ok_or_else(missing);
        if let Ok(id) = s.parse::<Digest>() {
            return found(id);
        }
        let key = if s.contains('@') {
            keys::repo_digest(&DigestReference::parse(s)?.to_string())
        } else {
            keys::reference(&Reference::parse(s)?.to_string())
        };
        if let Some(v) = self.db.get(&key)?.filter(|v| v.len() == 32) {
            return found(Digest(v.try_into().expect("length checked")));
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.is_empty() || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(missing());
        }
        let mut matches = Vec::new();
        self.for_each_image(|rec, _| {
            if rec.id.hex().starts_with(hex) {
                matches.push(rec.id);
            }
            Ok(())
        })?;
        match matches[..] {
            [id] => found(id),
            [] => Err(missing()),
            _ => Err(StoreError::AmbiguousPrefix(s.to_string())),
        }
    }

    /// Points `r` at the image `id`, taking it from any image it named before,
    /// as docker's tag does. Does not check that the image exists.
    pub fn tag(&self, id: &Digest, r: &Reference) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(keys::reference(&r.to_string()), id.0);
        self.db.write(batch)
    }

    /// `rmi`: a reference with other references beside it is only untagged;
    /// otherwise the image goes, unless a container uses it (then `force`
    /// untags and keeps the image for the container, as docker does).
    /// RepoDigests count as references; untagging a repository's last tag
    /// also drops that repository's digests, as docker does.
    pub fn remove_image(&self, s: &str, force: bool) -> Result<Vec<Removal>> {
        let image = self.resolve_image(s)?;
        let tags = self.tags_of(&image.id)?;
        let digests = self.repo_digests_of(&image.id)?;
        let by_ref = if s.contains('@') {
            DigestReference::parse(s)
                .ok()
                .map(|r| r.to_string())
                .filter(|r| digests.contains(r))
        } else {
            Reference::parse(s)
                .ok()
                .map(|r| r.to_string())
                .filter(|r| tags.contains(r))
        };
        // Held until the batch is written: a `run` that found the image
        // records its container before (and is seen here) or finds the
        // image gone after.
        let _containers = crate::container_records::lock(&self.root)?;
        let user = self.containers()?.into_iter().find(|c| c.image == image.id);
        let mut batch = WriteBatch::default();
        let mut done = Vec::new();
        let untag = |batch: &mut WriteBatch, done: &mut Vec<Removal>, r: &String| {
            if r.contains('@') {
                batch.delete(keys::repo_digest(r));
            } else {
                batch.delete(keys::reference(r));
            }
            done.push(Removal::Untagged(r.clone()));
        };
        let all: Vec<&String> = tags.iter().chain(&digests).collect();
        let only_untag: Option<Vec<&String>> = by_ref.as_ref().and_then(|r| {
            // The repository of `name:tag` or `name@sha256:<hex>`.
            let repo = |x: &str| -> String {
                let end = x.find('@').or_else(|| x.rfind(':')).unwrap_or(x.len());
                x[..end].to_string()
            };
            let name = repo(r);
            let last_tag_of_repo =
                !r.contains('@') && !tags.iter().any(|t| t != r && repo(t) == name);
            let going: Vec<&String> = all
                .iter()
                .copied()
                .filter(|x| *x == r || (last_tag_of_repo && x.contains('@') && repo(x) == name))
                .collect();
            (going.len() < all.len()).then_some(going)
        });
        if let Some(going) = only_untag {
            for r in going {
                untag(&mut batch, &mut done, r);
            }
        } else if let Some(c) = user {
            if !force {
                let refusal = match &by_ref {
                    Some(_) => {
                        format!("unable to remove repository reference \"{s}\" (must force)")
                    }
                    None if !all.is_empty() => {
                        format!("unable to delete {} (must be forced)", image.id.short())
                    }
                    None => format!("unable to delete {} (cannot be forced)", image.id.short()),
                };
                return Err(StoreError::ImageInUse {
                    refusal,
                    container: c.short_id().to_string(),
                });
            }
            for r in all {
                untag(&mut batch, &mut done, r);
            }
        } else {
            for r in all {
                untag(&mut batch, &mut done, r);
            }
            batch.delete(keys::image(&image.id));
            done.push(Removal::Deleted(image.id));
        }
        self.db.write(batch)?;
        Ok(done)
    }

    /// The `name:tag` references of one image.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(self
            .references()?
            .into_iter()
            .filter(|(_, image)| image == id)
            .map(|(r, _)| r)
            .collect())
    }

    // ---- containers ---------------------------------------------------

    /// The directory of the container `id` (64 hex): its upper and runtime
    /// files.
    pub fn container_dir(&self, id: &str) -> crate::container::ContainerDir {
        crate::container::ContainerDir::new(&self.root, id)
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Whether the index keeps a verdict for the chunk `digest` (tests,
    /// tools): a reader trusts its file without hashing it while the
    /// file's fingerprint matches.
    pub fn has_chunk_verdict(&self, digest: &Digest) -> Result<bool> {
        Ok(self.db.get(&crate::keys::verdict(digest))?.is_some())
    }
}

/// Removes a container's directory (never while its filesystem is mounted
/// there: it would delete through the mount).
pub fn remove_container_dir(dir: &Path) -> Result<()> {
    // A file made in it while it goes (a waiting start's lock file, an
    // exited container's monitor finishing) fails the last rmdir: the
    // removal is made again, a few times.
    let mut tries = 0;
    loop {
        match crate::storage::of(dir).remove_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 3 => tries += 1,
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(dir),
            _ => return Ok(()),
        }
    }
}

/// Logical size of a layer's file content (every name counted), for `df`.
pub fn logical_bytes(entries: &[(Vec<u8>, Entry)]) -> u64 {
    entries
        .iter()
        .filter(|(_, e)| e.kind == Kind::Regular)
        .map(|(_, e)| e.size)
        .sum()
}
