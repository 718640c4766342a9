//! Union paths of a layer's file under renamed directories: a directory
//! moved with a redirect (see `crate::union`) shows its lower files under
//! another path than the one their layer has. Hardlink bookkeeping
//! (`copy_up`'s other names, `orphan`'s) finds names in a layer and needs
//! the paths the container sees.

use crate::error::Result;
use crate::layers::Layers;
use crate::union::Resolved;
use layerdb::join_path;

impl Layers {
    /// The union paths showing `path` of layer `layer` as `shows` tells
    /// it from the resolution: the path itself when it does, else the
    /// paths under each redirected upper directory whose content in that
    /// layer holds it. Only the second walks the upper's directories, so
    /// it is for the rare hardlink cases.
    pub(crate) fn union_names(
        &self,
        layer: usize,
        path: &[u8],
        shows: impl Fn(&Resolved) -> bool,
    ) -> Result<Vec<Vec<u8>>> {
        if self.resolve(path)?.is_some_and(|r| shows(&r)) {
            return Ok(vec![path.to_vec()]);
        }
        let mut out = Vec::new();
        if !self.has_upper() {
            return Ok(out);
        }
        let Some(upper) = self.layer(0) else {
            return Ok(out);
        };
        let mut dirs = vec![Vec::new()];
        while let Some(dir) = dirs.pop() {
            for (name, node) in upper.children(&dir)? {
                if !node.is_dir() {
                    continue;
                }
                let upath = join_path(&dir, &name);
                if node.redirect.is_some() && !node.entry.opaque {
                    let Some(r) = self.resolve(&upath)? else {
                        continue;
                    };
                    for d in r.dir_layers.iter().filter(|d| d.layer == layer) {
                        let rest = path
                            .strip_prefix(d.path.as_slice())
                            .filter(|rest| rest.first() == Some(&b'/'));
                        let Some(rest) = rest else {
                            continue;
                        };
                        let candidate = [upath.as_slice(), rest].concat();
                        if self.resolve(&candidate)?.is_some_and(|r| shows(&r)) {
                            out.push(candidate);
                        }
                    }
                }
                dirs.push(upath);
            }
        }
        Ok(out)
    }
}
