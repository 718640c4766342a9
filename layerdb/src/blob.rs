//! Compressed blobs a layer was pushed as. A push compresses each layer's
//! canonical tar; remembering the result (its digest and size per
//! compression, and the repository it went to) lets a later push of the
//! same layer ask the registry for that digest, or mount it from that
//! repository, without compressing the layer again.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

/// One compressed form of a layer, as a registry holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedBlob {
    /// sha256 of the compressed bytes.
    pub digest: Digest,
    /// Bytes of the compressed blob.
    pub size: u64,
    /// `domain/path` of the repository it was last pushed to.
    pub repository: String,
}
