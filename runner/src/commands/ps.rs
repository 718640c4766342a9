//! `strata ps` (`container ls`): the containers, running or all.

use super::Ctx;
use crate::cli::PsArgs;
use crate::list_filter::{CreatedSpan, Filters};
use crate::liveness;
use crate::output::{self, ContainerStatus, PsOptions, PsRow};
use anyhow::{bail, Result};
use layerdb::{Digest, State};

/// What `ps` shows of `c`: its state, an exited container waiting for its
/// restart policy's next start shown restarting, as docker shows it.
fn status_of(root: &std::path::Path, c: &layerdb::ContainerRecord) -> ContainerStatus {
    if let State::Exited {
        code, finished_ns, ..
    } = c.state
    {
        if super::keep::restart_pending(&crate::stack::ContainerPaths::of(root, c)) {
            return ContainerStatus::Restarting {
                exit_code: code,
                finished_at: finished_ns,
            };
        }
    }
    match c.state {
        State::Created => ContainerStatus::Created,
        State::Running { started_ns, .. } => ContainerStatus::Running {
            started_at: started_ns,
            health: crate::health::Check::of(&c.config).map(|_| {
                let paths = crate::stack::ContainerPaths::of(root, c);
                super::health::read(&paths).map_or("health: starting", |h| h.shown())
            }),
        },
        State::Paused { started_ns, .. } => ContainerStatus::Paused {
            started_at: started_ns,
        },
        State::Exited {
            code, finished_ns, ..
        } => ContainerStatus::Exited {
            exit_code: code,
            finished_at: finished_ns,
        },
    }
}

/// The IMAGE a container shows, as docker's `refreshImage` decides it:
/// the name it was run with while that name still means its image, else
/// the image's id (the tag was removed or moved to another image).
fn shown_image(store: &layerdb::Store, c: &layerdb::ContainerRecord) -> String {
    match store.resolve_image(&c.image_ref) {
        Ok(image) if image.id == c.image => c.image_ref.clone(),
        _ => format!("{:#}", c.image),
    }
}

/// Whether the image of container `c`, or an image it was built on (its
/// parents), is one of `ancestors`: docker's `ancestor=` filter.
fn descends(store: &layerdb::Store, c: &layerdb::ContainerRecord, ancestors: &[Digest]) -> bool {
    let mut image = Some(c.image);
    // A parent chain has no cycles; the bound only guards a damaged store.
    for _ in 0..1000 {
        let Some(id) = image else {
            return false;
        };
        if ancestors.contains(&id) {
            return true;
        }
        image = store.image(&id).ok().flatten().and_then(|i| i.parent);
    }
    false
}

/// Whether container `c` passes docker's `ps --filter`s; `ancestors` are
/// the images `ancestor=` names that exist, `span` the creation times
/// `before=` and `since=` leave.
fn passes(
    store: &layerdb::Store,
    filters: &Filters,
    ancestors: &[Digest],
    span: &CreatedSpan,
    c: &layerdb::ContainerRecord,
) -> bool {
    let exited = match c.state {
        State::Exited { code, .. } => Some(code),
        _ => None,
    };
    filters.matches("id", &c.id)
        && filters.matches("name", &format!("/{}", c.name))
        && filters.any("status", |s| s == status_of(store.root(), c).name())
        && filters.any("exited", |code| {
            exited.is_some_and(|e| code.parse() == Ok(e))
        })
        && filters.labels_match(&c.config.labels)
        && filters.any("volume", |v| {
            c.mounts
                .iter()
                .any(|m| m.volume.as_deref() == Some(v) || m.target == v)
        })
        && filters.any("health", |h| h == health_filter_state(store.root(), c))
        && span.holds(Some(c.created_ns))
        // An ancestor that names no image matches nothing, as in docker.
        && (filters.values("ancestor").is_empty() || descends(store, c, ancestors))
}

/// What docker's `health=` filter compares: `none` without a check, else
/// the last status its prober found (`starting` before one).
fn health_filter_state(root: &std::path::Path, c: &layerdb::ContainerRecord) -> String {
    if crate::health::Check::of(&c.config).is_none() {
        return "none".into();
    }
    let paths = crate::stack::ContainerPaths::of(root, c);
    super::health::read(&paths).map_or_else(|| "starting".into(), |h| h.status)
}

pub fn ps(ctx: &Ctx, args: PsArgs) -> Result<i32> {
    let keys = [
        "id", "name", "status", "exited", "label", "ancestor", "before", "since", "volume",
        "health",
    ];
    let filters = Filters::parse(&args.filter, &keys)?;
    let healths = ["starting", "healthy", "unhealthy", "none"];
    if let Some(bad) = (filters.values("health").iter()).find(|h| !healths.contains(&h.as_str())) {
        bail!("Unrecognised filter value for health: {bad}");
    }
    let states = [
        "created",
        "restarting",
        "running",
        "removing",
        "paused",
        "exited",
        "dead",
    ];
    if let Some(bad) = filters
        .values("status")
        .iter()
        .find(|s| !states.contains(&s.as_str()))
    {
        bail!("invalid filter 'status={bad}'");
    }
    let store = ctx.reader()?;
    let mut recs = liveness::containers(&store)?;
    // docker: -n and -l count containers of every state, and a status or
    // exited filter shows stopped containers without -a.
    let limit = if args.latest { 1 } else { args.last };
    let all = args.all
        || limit > 0
        || !filters.values("status").is_empty()
        || !filters.values("exited").is_empty();
    let span = filters.created_span(|name| Ok(liveness::container(&store, name)?.created_ns))?;
    let ancestors: Vec<Digest> = (filters.values("ancestor").iter())
        .filter_map(|a| store.resolve_image(a).ok().map(|i| i.id))
        .collect();
    recs.retain(|c| {
        (all || c.state.is_running()) && passes(&store, &filters, &ancestors, &span, c)
    });
    recs.sort_by_key(|c| std::cmp::Reverse(c.created_ns));
    if let Ok(limit) = usize::try_from(limit) {
        if limit > 0 {
            recs.truncate(limit);
        }
    }
    let rows: Vec<PsRow> = recs
        .iter()
        .map(|c| PsRow {
            id: c.id.clone(),
            image: shown_image(&store, c),
            image_id: format!("{:#}", c.image),
            command: output::container_command(&c.command),
            created: c.created_ns,
            status: status_of(store.root(), c),
            ports: output::ports_text(
                &crate::network::settings_of(&store.container_dir(&c.id), c).ports,
            ),
            names: vec![c.name.clone()],
        })
        .collect();
    let options = PsOptions {
        quiet: args.quiet,
        no_trunc: args.no_trunc,
    };
    let now = crate::clock::now_ns();
    crate::template::print_list(
        args.format.as_deref(),
        args.quiet,
        output::PS_FIELDS,
        || output::ps_objects(&rows, &options, now),
        || output::render_ps(&rows, &options, now),
    )?;
    Ok(0)
}
