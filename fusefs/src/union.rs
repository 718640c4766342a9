//! Union rules over a stack of layers, top first (the upper, when there is
//! one, is layer 0). No FUSE and no host writes here.
//!
//! - A name resolves in the highest layer of its parent's merge set that has
//!   it; a whiteout there ends the search (the name does not exist).
//! - A non-directory hides everything below it.
//! - A directory merges with same-path directories below it, until a layer
//!   has a whiteout or a non-directory there, or after an opaque directory.
//! - Within one layer a real entry wins over a whiteout of the same name.
//! - A directory with a redirect (kernel overlayfs's `redirect_dir`, see
//!   [`crate::whiteout`]) and not opaque merges, in the layers below its
//!   own, the directories at the redirected place instead of its own
//!   path: a bare name replaces its name within the parent's merge set; an
//!   absolute path is looked up from the root of every layer below, even
//!   under an opaque parent. So each merged directory remembers its path
//!   in each layer, and its children are looked up there.

use crate::error::Result;
use crate::lower::{Lower, Node};
use layerdb::{join_path, split_path};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A directory as one layer of a merge has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDir {
    /// Index of the layer in the stack.
    pub layer: usize,
    /// The directory's path in that layer: the union path, unless a
    /// redirect at or above it points elsewhere.
    pub path: Vec<u8>,
}

/// Where a path resolved.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Index in the stack of the layer providing the node.
    pub layer: usize,
    /// The node's path in `layer` (see [`LayerDir::path`]).
    pub path: Vec<u8>,
    /// The node as that layer has it.
    pub node: Node,
    /// For a directory: the layers merged into it, top first, starting with
    /// `layer`. Empty for anything else.
    pub dir_layers: Vec<LayerDir>,
}

impl Resolved {
    /// Whether the resolved node is a directory.
    pub fn is_dir(&self) -> bool {
        self.node.is_dir()
    }

    /// The node found at `path` of layer `layer`, as a resolution of its
    /// own (a directory merging nothing yet).
    pub(crate) fn single(layer: usize, path: Vec<u8>, node: Node) -> Resolved {
        let dir_layers = if node.is_dir() {
            vec![LayerDir {
                layer,
                path: path.clone(),
            }]
        } else {
            Vec::new()
        };
        Resolved {
            layer,
            path,
            node,
            dir_layers,
        }
    }

    /// A merged directory's subdirectories are spread over layers: counting
    /// them means listing every layer. Like overlayfs, report nlink 1, which
    /// `find` and fts read as "unknown"; a directory of one layer keeps its
    /// layer's count (2 + subdirectories).
    pub(crate) fn settle_nlink(mut self) -> Resolved {
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
            None => found = Some(Resolved::single(i, Vec::new(), node)),
            Some(r) => r.dir_layers.push(LayerDir {
                layer: i,
                path: Vec::new(),
            }),
        }
        if opaque {
            break;
        }
    }
    Ok(found.map(Resolved::settle_nlink))
}

/// How the layers below the one just looked at are searched for a child.
enum Lookup<'a> {
    /// This name in each directory of the parent's merge set.
    Name(Cow<'a, [u8]>),
    /// This path from the root of every layer (an absolute redirect).
    Absolute(Vec<u8>),
}

/// The redirect a directory node found in a merge makes the layers below
/// follow; an opaque directory merges nothing below, so it has none.
fn redirect_of(node: &Node) -> Option<Lookup<'static>> {
    if !node.is_dir() || node.entry.opaque {
        return None;
    }
    let r = node.redirect.as_ref()?;
    Some(match r.strip_prefix(b"/") {
        Some(abs) => Lookup::Absolute(abs.to_vec()),
        None => Lookup::Name(Cow::Owned(r.to_vec())),
    })
}

/// The node at `path` of `layer` reached through directories only, as an
/// absolute redirect is followed (a symlink or file on the way ends it).
fn node_along(layer: &dyn Lower, path: &[u8]) -> Result<Option<Node>> {
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' && !layer.node(&path[..i])?.is_some_and(|n| n.is_dir()) {
            return Ok(None);
        }
    }
    layer.node(path)
}

/// What a name of a directory shows in the union.
// Only ever returned, never stored: a box would cost every lookup an
// allocation to save stack space nobody keeps.
#[allow(clippy::large_enum_variant)]
pub enum Child {
    /// Something is there.
    Found(Resolved),
    /// Hidden by a whiteout in this layer, the topmost to have the name.
    WhitedOut(usize),
    /// No layer has the name.
    Absent,
}

/// The child at `path` of the directory `parent` (`path` is the full path).
pub fn resolve_child(
    stack: &[&dyn Lower],
    parent: &Resolved,
    path: &[u8],
) -> Result<Option<Resolved>> {
    Ok(match child(stack, parent, path)? {
        Child::Found(r) => Some(r),
        Child::WhitedOut(_) | Child::Absent => None,
    })
}

/// Like [`resolve_child`], and says which layer's whiteout hides a name:
/// a new node must replace a whiteout of the upper, and asking the upper
/// again cost two more host probes per created file.
pub fn child(stack: &[&dyn Lower], parent: &Resolved, path: &[u8]) -> Result<Child> {
    let (parent_path, name) = split_path(path);
    let mut lookup = Lookup::Name(Cow::Borrowed(name));
    let mut last: Option<usize> = None;
    let mut found: Option<Resolved> = None;
    loop {
        let below = |i: usize| last.is_none_or(|l| i > l);
        let (i, lpath, node) = match &lookup {
            Lookup::Name(name) => {
                let Some(d) = parent.dir_layers.iter().find(|d| below(d.layer)) else {
                    break;
                };
                // Mostly the union path itself: no copy to look it up.
                let lpath = if d.path == parent_path && name.as_ref() == split_path(path).1 {
                    Cow::Borrowed(path)
                } else {
                    Cow::Owned(join_path(&d.path, name))
                };
                // A whiteout where no layer below merges hides nothing.
                let node = match parent.dir_layers.iter().any(|b| b.layer > d.layer) {
                    true => stack[d.layer].node(&lpath)?,
                    false => stack[d.layer].node_over_nothing(&lpath)?,
                };
                (d.layer, lpath, node)
            }
            Lookup::Absolute(p) => {
                let i = last.map_or(0, |l| l + 1);
                if i >= stack.len() {
                    break;
                }
                (i, Cow::Borrowed(p.as_slice()), node_along(stack[i], p)?)
            }
        };
        last = Some(i);
        let Some(node) = node else {
            continue;
        };
        let next = redirect_of(&node);
        let stop = !node.is_dir() || node.entry.opaque;
        match &mut found {
            None => {
                if node.is_whiteout() {
                    return Ok(Child::WhitedOut(i));
                }
                found = Some(Resolved::single(i, lpath.into_owned(), node));
            }
            Some(r) => {
                if !node.is_dir() {
                    break; // whiteout or non-directory: nothing below merges
                }
                r.dir_layers.push(LayerDir {
                    layer: i,
                    path: lpath.into_owned(),
                });
            }
        }
        if stop {
            break;
        }
        if let Some(next) = next {
            lookup = next;
        }
    }
    Ok(found.map_or(Child::Absent, |r| Child::Found(r.settle_nlink())))
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
    // still merge into it, whether a redirect changes where they do)
    let mut seen: BTreeMap<Vec<u8>, (Option<Resolved>, bool, bool)> = BTreeMap::new();
    for d in &dir.dir_layers {
        let i = d.layer;
        for (name, node) in stack[i].children(&d.path)? {
            let redirected = redirect_of(&node).is_some();
            match seen.get_mut(&name) {
                None => {
                    if node.is_whiteout() {
                        seen.insert(name, (None, false, false));
                        continue;
                    }
                    let open = node.is_dir() && !node.entry.opaque;
                    let r = Resolved::single(i, join_path(&d.path, &name), node);
                    seen.insert(name, (Some(r), open, redirected));
                }
                Some((Some(r), open, redirect)) if *open => {
                    if node.is_dir() {
                        r.dir_layers.push(LayerDir {
                            layer: i,
                            path: join_path(&d.path, &name),
                        });
                        *open = !node.entry.opaque;
                        *redirect |= redirected;
                    } else {
                        *open = false;
                    }
                }
                Some(_) => {}
            }
        }
    }
    let mut out = Vec::with_capacity(seen.len());
    for (name, (r, _, redirected)) in seen {
        let Some(r) = r else {
            continue;
        };
        let r = if redirected {
            // Merged elsewhere than under this name: resolve it properly.
            match resolve_child(stack, dir, &join_path(dir_path, &name))? {
                Some(r) => r,
                None => continue,
            }
        } else {
            r.settle_nlink()
        };
        out.push((name, r));
    }
    Ok(out)
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
        let layers: Vec<usize> = d.dir_layers.iter().map(|d| d.layer).collect();
        assert_eq!(layers, [0, 1, 2]);
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
    fn a_directory_renamed_within_its_parent_merges_the_lower_one_of_its_old_name() {
        let mut top = MemLower::new("top", 3);
        top.dir("d", 0o755)
            .dir("d/new", 0o700)
            .redirect("d/new", "old")
            .whiteout("d/old")
            .file("d/new/mine", b"");
        let mut low = MemLower::new("low", 1);
        low.dir("d", 0o755)
            .dir("d/old", 0o755)
            .file("d/old/f", b"f")
            .dir("d/new", 0o755)
            .file("d/new/hidden", b"");
        let stack: [&dyn Lower; 2] = [&top, &low];
        assert_eq!(names(&stack, "d"), ["new"]);
        assert_eq!(names(&stack, "d/new"), ["f", "mine"]);
        let f = resolve(&stack, b"d/new/f").expect("ok").expect("found");
        assert_eq!((f.layer, f.path.as_slice()), (1, &b"d/old/f"[..]));
        let listed = list(&stack, &resolve(&stack, b"d").unwrap().unwrap(), b"d").unwrap();
        assert_eq!(listed[0].1.node.entry.nlink, 1, "merged, as lookup says");
    }

    #[test]
    fn an_absolute_redirect_is_followed_from_the_root_even_under_an_opaque_parent() {
        let mut top = MemLower::new("top", 3);
        top.opaque_dir("o")
            .dir("o/moved", 0o755)
            .redirect("o/moved", "/a/b");
        let mut mid = MemLower::new("mid", 2);
        mid.dir("a", 0o755).dir("a/b", 0o755).file("a/b/m", b"");
        let mut low = MemLower::new("low", 1);
        low.dir("a", 0o755)
            .dir("a/b", 0o755)
            .file("a/b/l", b"")
            .dir("o", 0o755)
            .file("o/x", b"");
        let stack: [&dyn Lower; 3] = [&top, &mid, &low];
        assert_eq!(names(&stack, "o"), ["moved"]);
        assert_eq!(names(&stack, "o/moved"), ["l", "m"]);
    }

    #[test]
    fn an_opaque_directory_ignores_its_redirect_and_redirects_chain_down_layers() {
        let mut top = MemLower::new("top", 3);
        top.opaque_dir("x").redirect("x", "/a");
        top.dir("y", 0o755).redirect("y", "b");
        let mut mid = MemLower::new("mid", 2);
        mid.dir("a", 0o755).file("a/f", b"");
        mid.dir("b", 0o755).redirect("b", "/c").file("b/g", b"");
        let mut low = MemLower::new("low", 1);
        low.dir("c", 0o755).file("c/h", b"");
        let stack: [&dyn Lower; 3] = [&top, &mid, &low];
        assert!(names(&stack, "x").is_empty());
        assert_eq!(names(&stack, "y"), ["g", "h"]);
    }

    #[test]
    fn lookup_through_a_file_is_not_found() {
        let mut l = MemLower::new("l", 1);
        l.file("f", b"");
        let stack: [&dyn Lower; 1] = [&l];
        assert!(resolve(&stack, b"f/x").expect("ok").is_none());
    }
}
