//! `strata images` (`image ls`).

use super::Ctx;
use crate::cli::ImagesArgs;
use crate::list_filter::Filters;
use crate::output::{self, ImageRow, ImagesOptions};
use crate::reference_filter::ReferenceFilter;
use anyhow::{bail, Result};
use layerdb::{Digest, ImageConfig, ImageRecord, Store};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The image's size as docker's classic store reports it: all its layers.
pub fn image_size(store: &Store, image: &ImageRecord) -> Result<u64> {
    let mut size = 0;
    for d in &image.layers {
        size += store.layer(d)?.size;
    }
    Ok(size)
}

fn created_ns(config: &ImageConfig) -> Option<i64> {
    crate::humanize::parse_rfc3339(&config.created).ok()
}

pub fn list(ctx: &Ctx, args: ImagesArgs) -> Result<i32> {
    let store = ctx.reader()?;
    let mut digests: HashMap<Digest, Vec<String>> = HashMap::new();
    for (r, id) in store.repo_digests()? {
        digests.entry(id).or_default().push(r);
    }
    let filters = Filters::parse(
        &args.filter,
        &["dangling", "reference", "label", "before", "since"],
    )?;
    let span = filters
        .created_span(|name| Ok(created_ns(&store.resolve_image(name)?.config()).unwrap_or(0)))?;
    let dangling = match filters.values("dangling") {
        [] => None,
        [v] if v == "true" || v == "1" => Some(true),
        [v] if v == "false" || v == "0" => Some(false),
        _ => bail!(
            "Invalid filter 'dangling=[{}]'",
            filters.values("dangling").join(" ")
        ),
    };
    // The positional REPOSITORY[:TAG] and each `reference=` are patterns,
    // any of which may keep a reference.
    let patterns = args
        .repository
        .iter()
        .chain(filters.values("reference"))
        .map(|p| ReferenceFilter::new(p))
        .collect::<Result<Vec<_>>>()?;
    let filter = (!patterns.is_empty()).then_some(patterns);
    // What the listing needs of each config, read one image at a time
    // (configs may be megabytes each); the records kept without them.
    let mut images = Vec::new();
    store.for_each_image(|image, refs| {
        let config = image.config();
        let created = created_ns(&config);
        let labels_match = filters.labels_match(&config.config.labels);
        let image = ImageRecord {
            config_json: Vec::new(),
            ..image
        };
        images.push((image, refs, created, labels_match));
        Ok(())
    })?;
    // docker hides untagged images that are the parent of another
    // (intermediate images) unless -a.
    let parents: HashSet<Digest> = images.iter().filter_map(|(i, ..)| i.parent).collect();
    let mut rows = Vec::new();
    for (image, refs, created, labels_match) in &images {
        let (created, labels_match) = (*created, *labels_match);
        let mut refs = refs.clone();
        let mut image_digests = digests.remove(&image.id).unwrap_or_default();
        if let Some(f) = &filter {
            // As docker's filter: an image keeps the references the
            // pattern matches (a tag's pattern drops the image's digests
            // from its rows), and one left with none is not listed.
            refs.retain(|r| f.iter().any(|p| p.keeps(r)));
            image_digests.retain(|d| f.iter().any(|p| p.keeps(d)));
            if refs.is_empty() && image_digests.is_empty() {
                continue;
            }
        }
        if dangling.is_some_and(|d| d != refs.is_empty()) || !labels_match || !span.holds(created) {
            continue;
        }
        if refs.is_empty() && image_digests.is_empty() && parents.contains(&image.id) && !args.all {
            continue;
        }
        let size = image_size(&store, image)?;
        for (repository, tag, digest) in image_rows(&refs, &image_digests, args.digests) {
            rows.push(ImageRow {
                repository,
                tag,
                id: format!("{:#}", image.id),
                created,
                size,
                digest,
            });
        }
    }
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then(a.repository.cmp(&b.repository))
    });
    let options = ImagesOptions {
        quiet: args.quiet,
        no_trunc: args.no_trunc,
        digests: args.digests,
    };
    let now = crate::clock::now_ns();
    crate::template::print_list(
        args.format.as_deref(),
        args.quiet,
        output::IMAGE_FIELDS,
        || output::image_objects(&rows, &options, now),
        || output::render_images(&rows, &options, now),
    )?;
    Ok(0)
}

/// docker's rows for one image: (repository, tag, digest) per tag, with
/// the repository's digest beside each when `with_digests` (a row per
/// digest when there are several); a repository known only by digest gets
/// `<none>` as its tag; an image with neither is `<none>` throughout.
fn image_rows(
    tags: &[String],
    digests: &[String],
    with_digests: bool,
) -> Vec<(String, String, String)> {
    let none = || "<none>".to_string();
    let mut by_repo: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in digests {
        let (repo, digest) = d.split_once('@').expect("stored digests carry an @");
        by_repo.entry(repo).or_default().push(digest);
    }
    let mut rows = Vec::new();
    for t in tags {
        let (repo, tag) = t.rsplit_once(':').expect("stored references carry a tag");
        let repo_digests = match by_repo.get(repo) {
            Some(d) if with_digests => d.clone(),
            _ => Vec::new(),
        };
        if repo_digests.is_empty() {
            rows.push((repo.to_string(), tag.to_string(), none()));
        }
        for d in repo_digests {
            rows.push((repo.to_string(), tag.to_string(), d.to_string()));
        }
    }
    for t in tags {
        by_repo.remove(t.rsplit_once(':').map_or("", |p| p.0));
    }
    for (repo, repo_digests) in by_repo {
        if with_digests {
            for d in repo_digests {
                rows.push((repo.to_string(), none(), d.to_string()));
            }
        } else {
            rows.push((repo.to_string(), none(), none()));
        }
    }
    if rows.is_empty() {
        rows.push((none(), none(), none()));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::image_rows;

    fn rows(tags: &[&str], digests: &[&str], with: bool) -> Vec<String> {
        let tags: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
        let digests: Vec<String> = digests.iter().map(|s| s.to_string()).collect();
        image_rows(&tags, &digests, with)
            .into_iter()
            .map(|(r, t, d)| format!("{r} {t} {d}"))
            .collect()
    }

    #[test]
    fn rows_pair_each_tag_with_its_repositorys_digests_as_docker_does() {
        let d = "sha256:aa";
        assert_eq!(
            rows(&["h:5/a:1", "b:2"], &["h:5/a@sha256:aa"], true),
            ["h:5/a 1 sha256:aa", "b 2 <none>"]
        );
        assert_eq!(
            rows(&["h:5/a:1"], &["h:5/a@sha256:aa"], false),
            ["h:5/a 1 <none>"]
        );
        assert_eq!(rows(&[], &["a@sha256:aa"], true), [format!("a <none> {d}")]);
        assert_eq!(rows(&[], &["a@sha256:aa"], false), ["a <none> <none>"]);
        assert_eq!(rows(&[], &[], true), ["<none> <none> <none>"]);
    }
}
