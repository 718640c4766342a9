//! Union rules over a stack of layers, top first (the upper, when there is
//! one, is layer 0). No FUSE and no host writes here.
//!
//! - A name resolves in the highest layer of its parent's merge set that has
//!   it; a whiteout there ends the search (the name does not exist).
//! - A non-directory hides everything below it.
//! - A directory merges with same-path directories below it, until a layer
//!   has a whiteout or a non-directory there, or after an opaque directory.
//! - Within one layer a real entry wins over a whiteout of the same name.

use crate::error::Result;
use crate::lower::{Lower, Node};
use std::collections::BTreeMap;

/// Where a path resolved.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Index in the stack of the layer providing the node.
    pub layer: usize,
    /// The node as that layer has it.
    pub node: Node,
    /// For a directory: the layers merged into it, top first, starting with
    /// `layer`. Empty for anything else.
    pub dir_layers: Vec<usize>,
}

impl Resolved {
    /// Whether the resolved node is a directory.
    pub fn is_dir(&self) -> bool {
        self.node.is_dir()
    }

    /// A merged directory's subdirectories are spread over layers: counting
    /// them means listing every layer. Like overlayfs, report nlink 1, which
    /// `find` and fts read as "unknown"; a directory of one layer keeps its
    /// layer's count (2 + subdirectories).
    fn settle_nlink(mut self) -> Resolved {
        if self.merges_lower() {
            self.node.entry.nlink = 1;
        }
        self
    }

    /// True when layers below `layer` contribute to this directory.
    pub fn merges_lower(&self) -> bool {
        self.dir_layers.len() > 1
    }
}

/// The root: a directory in every layer, merged down to the first opaque one.
pub fn resolve_root(stack: &[&dyn Lower]) -> Result<Option<Resolved>> {
    let mut found: Option<Resolved> = None;
    for (i, layer) in stack.iter().enumerate() {
        let Some(node) = layer.node(b"")? else {
            continue;
        };
        let opaque = node.entry.opaque;
        match &mut found {
            None => {
                found = Some(Resolved {
                    layer: i,
                    node,
                    dir_layers: vec![i],
                })
            }
            Some(r) => r.dir_layers.push(i),
        }
        if opaque {
            break;
        }
    }
    Ok(found.map(Resolved::settle_nlink))
}

/// The child at `path` of the directory `parent` (`path` is the full path).
pub fn resolve_child(
    stack: &[&dyn Lower],
    parent: &Resolved,
    path: &[u8],
) -> Result<Option<Resolved>> {
    let mut found: Option<Resolved> = None;
    for &i in &parent.dir_layers {
        let Some(node) = stack[i].node(path)? else {
            continue;
        };
        match &mut found {
            None => {
                if node.is_whiteout() {
                    return Ok(None);
                }
                let opaque = node.entry.opaque;
                let is_dir = node.is_dir();
                found = Some(Resolved {
                    layer: i,
                    node,
                    dir_layers: if is_dir { vec![i] } else { Vec::new() },
                });
                if !is_dir || opaque {
                    break;
                }
            }
            Some(r) => {
                if !node.is_dir() {
                    break; // whiteout or non-directory: nothing below merges
                }
                r.dir_layers.push(i);
                if node.entry.opaque {
                    break;
                }
            }
        }
    }
    Ok(found.map(Resolved::settle_nlink))
}

/// Resolves a whole path component by component.
pub fn resolve(stack: &[&dyn Lower], path: &[u8]) -> Result<Option<Resolved>> {
    let Some(mut cur) = resolve_root(stack)? else {
        return Ok(None);
    };
    if path.is_empty() {
        return Ok(Some(cur));
    }
    let mut end = 0;
    for (idx, part) in path.split(|&b| b == b'/').enumerate() {
        if !cur.is_dir() {
            return Ok(None);
        }
        end += part.len() + usize::from(idx > 0);
        match resolve_child(stack, &cur, &path[..end])? {
            Some(r) => cur = r,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// The merged listing of directory `dir` at `dir_path`, sorted by name,
/// without whited-out names or duplicates.
pub fn list(
    stack: &[&dyn Lower],
    dir: &Resolved,
    dir_path: &[u8],
) -> Result<Vec<(Vec<u8>, Resolved)>> {
    // name -> (resolution or None when whited out, whether lower layers may
    // still merge into it)
    let mut seen: BTreeMap<Vec<u8>, (Option<Resolved>, bool)> = BTreeMap::new();
    for &i in &dir.dir_layers {
        for (name, node) in stack[i].children(dir_path)? {
            match seen.get_mut(&name) {
                None => {
                    if node.is_whiteout() {
                        seen.insert(name, (None, false));
                        continue;
                    }
                    let is_dir = node.is_dir();
                    let open = is_dir && !node.entry.opaque;
                    let r = Resolved {
                        layer: i,
                        node,
                        dir_layers: if is_dir { vec![i] } else { Vec::new() },
                    };
                    seen.insert(name, (Some(r), open));
                }
                Some((Some(r), open)) if *open => {
                    if node.is_dir() {
                        r.dir_layers.push(i);
                        *open = !node.entry.opaque;
                    } else {
                        *open = false;
                    }
                }
                Some(_) => {}
            }
        }
    }
    Ok(seen
        .into_iter()
        .filter_map(|(name, (r, _))| r.map(|r| (name, r.settle_nlink())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_lower::MemLower;

    fn names(stack: &[&dyn Lower], path: &str) -> Vec<String> {
        let dir = resolve(stack, path.as_bytes())
            .expect("resolve")
            .expect("dir exists");
        list(stack, &dir, path.as_bytes())
            .expect("list")
            .into_iter()
            .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
            .collect()
    }

    #[test]
    fn lookup_finds_the_highest_layer_that_has_the_name() {
        let mut top = MemLower::new("top", 2);
        top.file("f", b"new");
        let mut bottom = MemLower::new("bottom", 1);
        bottom.file("f", b"old").file("g", b"g");
        let stack: [&dyn Lower; 2] = [&top, &bottom];
        let r = resolve(&stack, b"f").expect("ok").expect("found");
        assert_eq!(r.layer, 0);
        assert_eq!(resolve(&stack, b"g").expect("ok").expect("found").layer, 1);
    }

    #[test]
    fn lookup_hides_entry_whited_out_in_a_higher_layer() {
        let mut top = MemLower::new("top", 2);
        top.whiteout("f").whiteout("d");
        let mut bottom = MemLower::new("bottom", 1);
        bottom.file("f", b"x").dir("d", 0o755).file("d/in", b"y");
        let stack: [&dyn Lower; 2] = [&top, &bottom];
        assert!(resolve(&stack, b"f").expect("ok").is_none());
        assert!(resolve(&stack, b"d/in").expect("ok").is_none());
        assert!(names(&stack, "").is_empty());
    }

    #[test]
    fn opaque_directory_hides_lower_children_but_merges_nothing_below() {
        let mut top = MemLower::new("top", 3);
        top.opaque_dir("d").file("d/mine", b"");
        let mut mid = MemLower::new("mid", 2);
        mid.dir("d", 0o755).file("d/theirs", b"");
        let stack: [&dyn Lower; 2] = [&top, &mid];
        assert_eq!(names(&stack, "d"), ["mine"]);
        assert!(resolve(&stack, b"d/theirs").expect("ok").is_none());
    }

    #[test]
    fn merged_listing_has_no_duplicates_or_whited_out_names() {
        let mut top = MemLower::new("top", 3);
        top.dir("d", 0o700).file("d/a", b"").whiteout("d/b");
        let mut mid = MemLower::new("mid", 2);
        mid.dir("d", 0o755).file("d/a", b"").file("d/c", b"");
        let mut low = MemLower::new("low", 1);
        low.dir("d", 0o755).file("d/b", b"").file("d/e", b"");
        let stack: [&dyn Lower; 3] = [&top, &mid, &low];
        assert_eq!(names(&stack, "d"), ["a", "c", "e"]);
        let d = resolve(&stack, b"d").expect("ok").expect("found");
        assert_eq!(d.dir_layers, [0, 1, 2]);
        assert_eq!(d.node.entry.mode, 0o700, "top directory's attributes win");
    }

    #[test]
    fn a_file_in_a_higher_layer_stops_a_lower_directory_from_merging() {
        let mut top = MemLower::new("top", 3);
        top.dir("d", 0o755);
        let mut mid = MemLower::new("mid", 2);
        mid.file("d", b"not a dir");
        let mut low = MemLower::new("low", 1);
        low.dir("d", 0o755).file("d/old", b"");
        let stack: [&dyn Lower; 3] = [&top, &mid, &low];
        assert!(names(&stack, "d").is_empty());
        assert!(resolve(&stack, b"d/old").expect("ok").is_none());
    }

    #[test]
    fn a_whiteout_and_a_real_entry_in_one_layer_show_the_real_entry() {
        let mut top = MemLower::new("top", 2);
        top.file("f", b"mine");
        let mut low = MemLower::new("low", 1);
        low.file("f", b"old");
        let stack: [&dyn Lower; 2] = [&top, &low];
        assert_eq!(names(&stack, ""), ["f"]);
    }

    #[test]
    fn lookup_through_a_file_is_not_found() {
        let mut l = MemLower::new("l", 1);
        l.file("f", b"");
        let stack: [&dyn Lower; 1] = [&l];
        assert!(resolve(&stack, b"f/x").expect("ok").is_none());
    }
}
