//! Where each chunk of a file ends, so that a read finds its first chunk by
//! a binary search.
//!
//! Reads walked a file's chunk list from its start: a 1 GiB file has 16,384
//! chunks and a cold sequential read of it 8,192 reads of 128 KiB, so the
//! walks added up to 12% of a mount server's CPU samples (quadratic in the
//! file's size). The ends are computed once per file (a mount server keeps
//! them with the file's node) and kept outside the entry, whose stored form
//! stays as it is.

use crate::entry::ChunkRef;
use std::sync::Arc;

/// The end offset of each chunk of a file, in file order (running sums of
/// the chunk lengths: the last is the file's size). Cheap to clone, and
/// one pointer wide (`Arc<Vec>`, not `Arc<[u64]>`): a mount server keeps
/// it in every node.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkEnds(Arc<Vec<u64>>);

impl ChunkEnds {
    /// The ends of `chunks`, a file's chunk list in file order.
    pub fn of(chunks: &[ChunkRef]) -> ChunkEnds {
        let mut end = 0u64;
        ChunkEnds(Arc::new(
            chunks
                .iter()
                .map(|c| {
                    end += c.len as u64;
                    end
                })
                .collect(),
        ))
    }

    /// Whether these are the ends of `chunks`: the same number of chunks
    /// and the same total. A guard against ends kept for another list, not
    /// a proof (that would cost the walk the ends save).
    pub fn fits(&self, chunks: &[ChunkRef], size: u64) -> bool {
        self.0.len() == chunks.len() && self.0.last().copied().unwrap_or(0) == size
    }

    /// The chunk that holds byte `offset` (its index in the list) and the
    /// offset where that chunk starts; None at or past the end of the file.
    pub fn find(&self, offset: u64) -> Option<(usize, u64)> {
        // The first chunk that ends after `offset` holds it (empty chunks,
        // ending where they start, are skipped).
        let i = self.0.partition_point(|&end| end <= offset);
        let end = *self.0.get(i)?;
        let start = if i == 0 { 0 } else { self.0[i - 1] };
        debug_assert!(start <= offset && offset < end);
        Some((i, start))
    }
}

impl std::fmt::Debug for ChunkEnds {
    /// The count and the total only: a big file's list is 16,384 numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChunkEnds({} chunks, {} bytes)",
            self.0.len(),
            self.0.last().copied().unwrap_or(0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn chunks(lens: &[u32]) -> Vec<ChunkRef> {
        lens.iter()
            .map(|&len| ChunkRef {
                digest: Digest::of(&len.to_be_bytes()),
                len,
            })
            .collect()
    }

    #[test]
    fn each_offset_is_found_in_the_chunk_that_holds_it() {
        let list = chunks(&[3, 1, 0, 5]);
        let ends = ChunkEnds::of(&list);
        let found: Vec<_> = (0..10).map(|o| ends.find(o)).collect();
        assert_eq!(
            found,
            [
                Some((0, 0)),
                Some((0, 0)),
                Some((0, 0)),
                Some((1, 3)),
                Some((3, 4)),
                Some((3, 4)),
                Some((3, 4)),
                Some((3, 4)),
                Some((3, 4)),
                None,
            ]
        );
        assert_eq!(ends.find(u64::MAX), None);
        assert!(ends.fits(&list, 9));
        assert!(!ends.fits(&list, 8));
        assert!(!ends.fits(&list[1..], 9));
    }

    #[test]
    fn an_empty_file_has_no_chunk_to_find() {
        let ends = ChunkEnds::of(&[]);
        assert_eq!(ends.find(0), None);
        assert!(ends.fits(&[], 0));
    }
}
