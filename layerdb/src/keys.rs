//! The key schema of the index (one RocksDB keyspace, first byte = kind).
//! docs/design.md describes it in prose; this is the one place that
//! builds keys.
//!
//! | key                                   | value                    |
//! |---------------------------------------|--------------------------|
//! | `L` diff_id(32)                       | LayerMeta                |
//! | `E` seq(4, BE) parent `\0` name       | Entry (root: empty name) |
//! | `I` image_id(32)                      | ImageRecord              |
//! | `R` "name:tag"                        | image_id(32)             |
//! | `D` "name@sha256:hex"                 | image_id(32)             |
//! | `B` diff_id(32) compression name      | CompressedBlob           |
//! | `C` container_id(64 hex)              | ContainerRecord (old)    |
//! | `N` container name                    | container_id (old)       |
//! | `M` "layer-seq"                       | next layer seq (u32 BE)  |
//! | `S` diff_id(32) original diff_id(32)  | TarSplit                 |
//! | `V` chunk digest(32)                  | Fingerprint (56 bytes)   |
//!
//! (old): only in stores made before container records became files
//! (`container_records`); the first writer moves them out.

use crate::digest::Digest;

/// Kind byte of a layer's record ([`crate::layer::LayerMeta`]).
pub const LAYER: u8 = b'L';
/// Kind byte of an entry of a layer, by layer seq and path.
pub const ENTRY: u8 = b'E';
/// Kind byte of an image's record.
pub const IMAGE: u8 = b'I';
/// Kind byte of a `name:tag` reference to an image id.
pub const REF: u8 = b'R';
/// Kind byte of a `name@sha256:...` repo digest, mapping it to an image id.
pub const REPO_DIGEST: u8 = b'D';
/// Kind byte of a compressed blob a layer was pushed as, by diff id and
/// compression ([`crate::blob::CompressedBlob`]).
pub const COMPRESSED_BLOB: u8 = b'B';
/// Kind byte of a container's record (stores made before record files).
pub const CONTAINER: u8 = b'C';
/// Kind byte of a container name, mapping it to the container's id
/// (stores made before record files).
pub const NAME: u8 = b'N';
/// Kind byte of how to write a layer as the tar another tool wrote
/// ([`crate::tar_split::TarSplit`]), by layer and that tar's sha256.
pub const TAR_SPLIT: u8 = b'S';
/// Kind byte of a chunk's verdict: its file's fingerprint when it was
/// written or hashed (`chunk::verdicts`).
pub const VERDICT: u8 = b'V';
/// The key of the next layer sequence number to hand out.
pub const NEXT_SEQ: &[u8] = b"Mlayer-seq";

fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

/// The key of the layer with this diff id.
pub fn layer(diff_id: &Digest) -> Vec<u8> {
    tagged(LAYER, &diff_id.0)
}

/// Entries of one directory share the prefix `entry_dir(seq, dir)`, so a
/// listing is one range scan and a lookup one get.
pub fn entry_dir(seq: u32, dir: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + dir.len());
    k.push(ENTRY);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(dir);
    k.push(0);
    k
}

/// The key of `path`'s entry in the layer numbered `seq`.
pub fn entry(seq: u32, path: &[u8]) -> Vec<u8> {
    let (parent, name) = crate::entry::split_path(path);
    let mut k = entry_dir(seq, parent);
    k.extend_from_slice(name);
    k
}

/// The prefix every entry key of the layer numbered `seq` starts with: the
/// range `[entries_of_layer(seq), entries_of_layer(seq + 1))` holds exactly its
/// entries.
pub fn entries_of_layer(seq: u32) -> Vec<u8> {
    tagged(ENTRY, &seq.to_be_bytes())
}

/// The path an entry key names.
pub fn entry_path(key: &[u8]) -> Vec<u8> {
    let rest = &key[5..];
    let zero = rest
        .iter()
        .position(|&b| b == 0)
        .expect("entry keys hold a NUL");
    crate::entry::join_path(&rest[..zero], &rest[zero + 1..])
}

/// The key of the image with this id.
pub fn image(id: &Digest) -> Vec<u8> {
    tagged(IMAGE, &id.0)
}

/// The key of a reference, `name:tag` as stored (tag always present).
pub fn reference(r: &str) -> Vec<u8> {
    tagged(REF, r.as_bytes())
}

/// The key of a repo digest (`name@sha256:<hex>`).
pub fn repo_digest(r: &str) -> Vec<u8> {
    tagged(REPO_DIGEST, r.as_bytes())
}

/// The blobs a layer was pushed as share the prefix
/// `compressed_blobs_of(diff_id)`; the compression's name (`gzip`, `zstd`)
/// ends the key.
pub fn compressed_blobs_of(diff_id: &Digest) -> Vec<u8> {
    tagged(COMPRESSED_BLOB, &diff_id.0)
}

/// The key of the blob `diff_id` was pushed as with `compression`.
pub fn compressed_blob(diff_id: &Digest, compression: &str) -> Vec<u8> {
    let mut k = compressed_blobs_of(diff_id);
    k.extend_from_slice(compression.as_bytes());
    k
}

/// The key of the container with this 64-hex id.
pub fn container(id: &str) -> Vec<u8> {
    tagged(CONTAINER, id.as_bytes())
}

/// The key of a container name (without docker's leading `/`).
pub fn name(n: &str) -> Vec<u8> {
    tagged(NAME, n.as_bytes())
}

/// The key of how to write layer `diff_id` as the tar `original` hashes.
pub fn tar_split(diff_id: &Digest, original: &Digest) -> Vec<u8> {
    let mut k = tar_splits_of(diff_id);
    k.extend_from_slice(&original.0);
    k
}

/// The prefix of every tar split of layer `diff_id`.
pub fn tar_splits_of(diff_id: &Digest) -> Vec<u8> {
    tagged(TAR_SPLIT, &diff_id.0)
}

/// The key of the verdict of the chunk `digest`.
pub fn verdict(digest: &Digest) -> Vec<u8> {
    tagged(VERDICT, &digest.0)
}

/// The original tar's diff id a [`tar_split`] key names.
pub fn tar_split_original(key: &[u8]) -> Option<Digest> {
    let bytes: [u8; 32] = key.get(33..65)?.try_into().ok()?;
    Some(Digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_group_children_under_their_directory() {
        let dir = entry_dir(7, b"usr");
        assert!(entry(7, b"usr/bin").starts_with(&dir));
        assert!(!entry(7, b"usr/bin/ls").starts_with(&dir));
        assert!(!entry(7, b"usrx/a").starts_with(&dir));
        assert_eq!(entry_path(&entry(7, b"usr/bin/ls")), b"usr/bin/ls");
        assert_eq!(entry_path(&entry(7, b"top")), b"top");
    }
}
