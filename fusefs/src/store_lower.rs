//! A layerdb layer as a [`Lower`].

use crate::error::{show, FsError, Result};
use crate::lower::{ino_tag, Lower, Node};
use layerdb::{Entry, ImageRecord, Kind, LayerMeta, Store, StoreError};
use std::sync::Arc;

/// One layer of a store. Hardlink entries are resolved to their target's
/// metadata and data, keeping the shared inode number.
pub struct StoreLower {
    store: Arc<Store>,
    layer: LayerMeta,
}

impl StoreLower {
    /// The layer `layer` of `store` as a lower.
    pub fn new(store: Arc<Store>, layer: LayerMeta) -> StoreLower {
        StoreLower { store, layer }
    }

    /// The lowers of `image`, whose layers layerdb keeps bottom first, in
    /// the union's order (top first): the one place the two orders meet.
    pub fn of_image(
        store: &Arc<Store>,
        image: &ImageRecord,
    ) -> Result<Vec<Box<dyn Lower>>, StoreError> {
        image
            .layers
            .iter()
            .rev()
            .map(|diff_id| {
                let lower: Box<dyn Lower> =
                    Box::new(StoreLower::new(store.clone(), store.layer(diff_id)?));
                Ok(lower)
            })
            .collect()
    }

    fn err(&self, path: &[u8], e: StoreError) -> FsError {
        let source: Box<dyn std::error::Error + Send + Sync> = match e {
            // Keep the io error itself so its errno reaches the caller.
            StoreError::Io { source, .. } => Box::new(source),
            other => Box::new(other),
        };
        FsError::Layer {
            layer: format!("{:#}", self.layer.diff_id),
            path: show(path),
            source,
        }
    }

    fn ino(&self, entry: &Entry) -> u64 {
        ino_tag::STORE | (self.layer.seq as u64) << 32 | entry.ino as u64
    }

    fn to_node(&self, path: &[u8], entry: Entry) -> Result<Node> {
        let ino = self.ino(&entry);
        if entry.kind != Kind::Hardlink {
            return Ok(Node::from_entry(entry, ino));
        }
        let target = self
            .store
            .entry(&self.layer, &entry.link)
            .map_err(|e| self.err(path, e))?
            .ok_or_else(|| FsError::Corrupt {
                path: show(path),
                reason: format!("hardlink to missing {}", show(&entry.link)),
            })?;
        Ok(Node::from_entry(target, ino))
    }
}

impl Lower for StoreLower {
    fn describe(&self) -> String {
        format!("layer {:#}", self.layer.diff_id)
    }

    fn layer_id(&self) -> Option<String> {
        Some(self.layer.diff_id.to_string())
    }

    fn node(&self, path: &[u8]) -> Result<Option<Node>> {
        match self
            .store
            .entry(&self.layer, path)
            .map_err(|e| self.err(path, e))?
        {
            Some(e) => self.to_node(path, e).map(Some),
            // A layer need not record its root: it is a plain directory.
            None if path.is_empty() => {
                let mut e = Entry::new(Kind::Dir, 0o755);
                e.ino = 0;
                Ok(Some(Node::from_entry(
                    e,
                    ino_tag::STORE | (self.layer.seq as u64) << 32,
                )))
            }
            None => Ok(None),
        }
    }

    fn children(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Node)>> {
        let kids = self
            .store
            .children(&self.layer, dir)
            .map_err(|e| self.err(dir, e))?;
        // A listing is what a reader of the files (tar, cp -a) does first.
        self.store.expect_reads(kids.iter().map(|(_, e)| e));
        let mut out = Vec::with_capacity(kids.len());
        for (name, e) in kids {
            let path = layerdb::join_path(dir, &name);
            out.push((name, self.to_node(&path, e)?));
        }
        Ok(out)
    }

    fn read_at(&self, path: &[u8], node: &Node, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match &node.chunk_ends {
            Some(ends) => self.store.read_at_with(&node.entry, ends, offset, buf),
            None => self.store.read_at(&node.entry, offset, buf),
        }
        .map_err(|e| self.err(path, e))
    }
}
