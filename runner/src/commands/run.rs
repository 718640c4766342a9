//! `strata run`: record a container over an image, then start it.
//!
//! The record, the upper directory and the files strata bind-mounts into
//! the container are made first, in a forked child: the launcher forks the
//! monitor and must do so with a single thread, and RocksDB starts several
//! when the index opens (to look the image up: a secondary instance, which
//! writes nothing; the record is a file, `layerdb::container_records`).
//! The child takes them with it when it exits, and this process starts the
//! container itself (`start` re-executes itself as `strata __launch ID`
//! instead: a second process start, ~4 ms).

use super::Ctx;
use crate::cli::{LaunchArgs, RunArgs};
use crate::container_id::ContainerId;
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::container_records::NewName;
use layerdb::{ContainerRecord, ImageRecord, NetworkConfig, RunConfig, State, StoreError};
use nix::fcntl::OFlag;
use nix::unistd::{pipe2, ForkResult};
use std::fs;
use std::io::Read;

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<i32> {
    if !args.detach {
        super::check_tty(args.interactive, args.tty)?;
    }
    let id = ContainerId::random();
    create_apart(ctx, &args, &id)?;
    super::launch::run(
        ctx,
        LaunchArgs {
            detach: args.detach,
            print_id: args.detach,
            print_name: None,
            kept: false,
            // A new container: no other start knows it yet, but a prune
            // or `rm` may already (it is listed once recorded).
            turn: true,
            id,
        },
    )
}

/// Seconds [`create`] may take once it holds the containers lock.
const RECORD_WORK_SECS: u64 = 60;

/// Records the container (see [`create_recorded`]), with docker's
/// `--cidfile`: refused when the file is there, written once the
/// container is recorded, removed when it was not.
pub(super) fn create_apart(ctx: &Ctx, args: &RunArgs, id: &ContainerId) -> Result<()> {
    let cidfile = match &args.cidfile {
        Some(path) => Some(
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                        "container ID file found, make sure the other container isn't running or delete {}",
                        path.display()
                    ),
                    _ => anyhow::anyhow!("failed to create the container ID file {}: {e}", path.display()),
                })?,
        ),
        None => None,
    };
    let created = create_recorded(ctx, args, id);
    if let (Some(mut file), Some(path)) = (cidfile, &args.cidfile) {
        match &created {
            Ok(()) => std::io::Write::write_all(&mut file, id.as_str().as_bytes())
                .with_context(|| format!("write {}", path.display()))?,
            Err(_) => {
                let _ = fs::remove_file(path);
            }
        }
    }
    created
}

/// [`create`] in a forked child, which reports a failure through a pipe,
/// so that this process never opens the index and keeps a single thread.
fn create_recorded(ctx: &Ctx, args: &RunArgs, id: &ContainerId) -> Result<()> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    match crate::sys::fork().context("fork to record the container")? {
        ForkResult::Child => {
            drop(read);
            let code = match create(ctx, args, id) {
                Ok(_) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&write, crate::error_text::describe(&e).as_bytes());
                    1
                }
            };
            crate::sys::exit_immediately(code)
        }
        ForkResult::Parent { child } => {
            drop(write);
            let mut failure = String::new();
            let read_result = std::fs::File::from(read).read_to_string(&mut failure);
            let status = crate::container::reap(child);
            read_result.context("read the container's creation result")?;
            if !failure.is_empty() {
                bail!("{failure}");
            }
            if status == 128 + nix::sys::signal::Signal::SIGALRM as i32 {
                bail!("recording the container took too long and was stopped, so that it does not hold the store; try again");
            }
            if status != 0 {
                bail!("recording the container failed (exit status {status})");
            }
            Ok(())
        }
    }
}

/// `--volumes-from CONTAINER[:ro|:rw]`: the other container's volumes and
/// binds at the same places, read-only with `:ro`, writable with `:rw`,
/// else as it has them; this container's own `-v` and `--mount` win a
/// place both name, as docker's do.
fn volumes_from(
    ctx: &Ctx,
    args: &RunArgs,
    mounts: &mut Vec<layerdb::BindMount>,
    tmpfs: &[layerdb::TmpfsMount],
) -> Result<()> {
    if args.volumes_from.is_empty() {
        return Ok(());
    }
    let store = ctx.reader()?;
    for spec in &args.volumes_from {
        let (name, mode) = match spec.rsplit_once(':') {
            Some((name, mode @ ("ro" | "rw"))) => (name, Some(mode == "ro")),
            Some((_, mode)) => bail!("invalid mode for volumes-from: {mode}"),
            None => (spec.as_str(), None),
        };
        let other = crate::liveness::container(&store, name)?;
        for m in &other.mounts {
            let taken = mounts.iter().any(|own| own.target == m.target)
                || tmpfs.iter().any(|t| t.target == m.target);
            if !taken {
                mounts.push(layerdb::BindMount {
                    read_only: mode.unwrap_or(m.read_only),
                    ..m.clone()
                });
            }
        }
    }
    Ok(())
}

/// `strata __launch` with the store root, ready for more flags.
pub fn relaunch(ctx: &Ctx, id: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--root").arg(&ctx.root).arg("__launch").arg(id);
    cmd
}

/// Checks every flag, pulls the image if it must, then makes the
/// container's directory and record. Only in [`create_apart`]'s child: it
/// arms SIGALRM for its time under the writer lock.
fn create(ctx: &Ctx, args: &RunArgs, id: &ContainerId) -> Result<ContainerRecord> {
    let mut env = crate::environment::from_files_and_flags(&args.env_file, &args.env)?;
    for file in &args.env_file0 {
        env.extend(crate::environment::from_nul_file(file)?);
    }
    let mut mounts = args
        .volume
        .iter()
        .map(|v| crate::mount_spec::volume(v))
        .collect::<Result<Vec<_>>>()?;
    let mut tmpfs = args
        .tmpfs
        .iter()
        .map(|t| crate::mount_spec::tmpfs(t))
        .collect::<Result<Vec<_>>>()?;
    for value in &args.mount {
        match crate::mount_spec::mount(value)? {
            crate::mount_spec::Mount::Bind(bind) => mounts.push(bind),
            crate::mount_spec::Mount::Tmpfs(t) => tmpfs.push(t),
        }
    }
    let mut targets: Vec<&str> = mounts.iter().map(|m| m.target.as_str()).collect();
    targets.extend(tmpfs.iter().map(|t| t.target.as_str()));
    targets.sort_unstable();
    if let Some(twice) = targets.windows(2).find(|pair| pair[0] == pair[1]) {
        bail!("Duplicate mount point: {}", twice[0]);
    }
    volumes_from(ctx, args, &mut mounts, &tmpfs)?;
    let network = crate::network::Mode::parse(&args.network)?;
    let net = network_config(args, network)?;
    if let Some(name) = &args.name {
        crate::names::given_name(name)?;
    }
    if let Some(user) = &args.user {
        check_user(user)?;
    }
    let security = layerdb::SecurityOptions {
        read_only_rootfs: args.read_only,
        ..crate::container::options_from_flags(
            &args.cap_add,
            &args.cap_drop,
            args.privileged,
            &args.security_opt,
        )?
    };
    let resources = resources_of(args)?;
    let log_driver = log_driver(args.log_driver.as_deref())?;
    let log_options = match (log_driver, args.log_opt.first()) {
        (layerdb::LogDriver::None, Some(opt)) => {
            bail!(
                "unknown log opt '{}' for none log driver",
                opt.split('=').next().unwrap_or(opt)
            )
        }
        _ => crate::container::json_log::options(&args.log_opt)?,
    };
    let restart = match &args.restart {
        Some(given) => crate::restart_policy::parse(given)?,
        None => layerdb::RestartPolicy::default(),
    };
    if args.rm && crate::restart_policy::restarts(&restart) {
        bail!("conflicting options: cannot specify both --restart and --rm");
    }
    // Flags first: a bad one never costs a pull (docker checks them as it
    // parses the command line).
    let platform = args
        .platform
        .as_deref()
        .map(crate::registry::manifest::Platform::parse)
        .transpose()?;
    let pulled = super::pull::ensure_image(ctx, &args.image, args.pull, platform.as_ref())?;
    // From here this process (create_apart's child) takes the containers
    // lock, and every other `run`, `rm`, `rmi` and gc queues behind it: it
    // must never wait without bound (a writer holding the lock the same
    // way was once seen hanging for minutes). SIGALRM ends it, which frees
    // the lock. Armed after the pull, which takes what the network takes.
    let limit = layerdb::store::writer_wait_limit().as_secs() + RECORD_WORK_SECS;
    nix::unistd::alarm::set(limit.try_into().unwrap_or(u32::MAX));
    // The index is only read: the record is a file of the container's.
    let store = ctx.reader()?;
    // An image pulled by digest alone has no tag to resolve it by.
    let image = pulled
        .map_or_else(|| store.resolve_image(&args.image), Ok)
        .map_err(|e| match e {
            StoreError::NoSuchImage(_) => anyhow::anyhow!(
                "No such image: {}",
                layerdb::Reference::parse(&args.image)
                    .map(|r| r.to_string())
                    .unwrap_or(args.image.clone())
            ),
            other => other.into(),
        })?;
    if let Some(platform) = &platform {
        if !super::pull::matches_platform(&image, platform) {
            let found = image.config();
            bail!(
                "image with reference {} was found but does not match the specified platform: wanted {platform}, actual: {}/{}",
                args.image,
                found.os,
                found.architecture
            );
        }
    }
    let config = run_config(&image, args, env)?;
    let mut net = net;
    if args.publish_all && network == crate::network::Mode::Bridge {
        publish_all(&mut net, &config);
    }
    let command: Vec<String> = config
        .entrypoint
        .iter()
        .chain(&config.cmd)
        .cloned()
        .collect();
    if command.is_empty() {
        bail!("No command specified");
    }

    // docker's: `-h` (an empty one is none), else the host's own name on
    // the host's network, else the short id.
    let hostname = match args.hostname.clone().filter(|h| !h.is_empty()) {
        Some(given) => {
            crate::network::options::check_hostname(&given)?;
            given
        }
        None if network == crate::network::Mode::Host => nix::unistd::gethostname()
            .context("the host's name")?
            .to_string_lossy()
            .into_owned(),
        None => id.short().to_string(),
    };
    // The image's VOLUMEs that no mount covers get anonymous volumes, as
    // docker gives them; then every volume is made (or found).
    let image_volumes = config.volumes.keys().filter(|_| !args.no_image_volumes);
    for path in image_volumes {
        // An image may not put a volume where a user may not (`/`, /proc).
        if !path.starts_with('/') {
            bail!("invalid mount config for type \"volume\": invalid mount path: '{path}' mount path must be absolute");
        }
        crate::mount_spec::check_target(path)
            .with_context(|| format!("the image's VOLUME {path}"))?;
        let path = crate::mount_spec::clean_target(path);
        let covered =
            mounts.iter().any(|m| m.target == path) || tmpfs.iter().any(|t| t.target == path);
        if !covered {
            mounts.push(crate::mount_spec::volume_mount("", &path, false));
        }
    }
    let mut anonymous = Vec::new();
    for m in mounts.iter_mut() {
        if let Some(name) = &mut m.volume {
            if name.is_empty() {
                *name = crate::volumes::anonymous_name();
                anonymous.push(name.clone());
            }
            crate::volumes::check_name(name)?;
            m.source = crate::volumes::data(&ctx.root, name);
        }
    }
    let paths = ContainerPaths::new(&ctx.root, id);
    let rec = ContainerRecord {
        id: id.to_string(),
        name: String::new(),
        image: image.id,
        image_ref: args.image.clone(),
        created_ns: crate::clock::now_ns(),
        state: State::Created,
        command,
        config,
        hostname,
        tty: args.tty,
        interactive: args.interactive,
        network: network.name().to_string(),
        mounts,
        tmpfs,
        auto_remove: args.rm,
        init: args.init,
        log_driver,
        log_options,
        security,
        resources,
        net,
        restart,
    };
    let name = match &args.name {
        Some(name) => NewName::Given(crate::names::given_name(name)?.to_string()),
        None => {
            let seed = crate::names::random_seed();
            NewName::FirstFree(
                (0..16)
                    .map(|retry| crate::names::generated_name(seed, retry))
                    .collect(),
            )
        }
    };
    // The filesystem first, the record last: no record without its files.
    // Dropped on an error, the new directory goes.
    let made = store.new_container(rec, name)?;
    // Its volumes are made (or found) under the containers lock the record
    // is made under, which `volume rm` and the prunes hold while they
    // choose: none is removed between being made here and named in the
    // record.
    for name in made
        .record()
        .mounts
        .iter()
        .filter_map(|m| m.volume.as_ref())
    {
        crate::volumes::ensure(&ctx.root, name, anonymous.contains(name))?;
    }
    make_files(&paths, made.record())?;
    Ok(made.commit()?)
}

/// The files strata bind-mounts into the container and its mountpoint,
/// in the directory layerdb made (with the upper).
fn make_files(paths: &ContainerPaths, rec: &ContainerRecord) -> Result<()> {
    fs::create_dir_all(paths.merged())
        .with_context(|| format!("create {}", paths.merged().display()))?;
    // The bridge's address replaces 127.0.1.1 when the monitor connects it.
    let extra_hosts = crate::network::parsed_extra_hosts(&rec.net.extra_hosts);
    let mode = crate::network::Mode::parse(&rec.network)?;
    let hosts = match mode {
        crate::network::Mode::Host => {
            let own = fs::read_to_string("/etc/hosts").unwrap_or_default();
            crate::network::host_network_hosts(&own, &extra_hosts)
        }
        _ => crate::network::hosts(&rec.hostname, &extra_hosts, None),
    };
    fs::write(paths.hosts(), hosts)?;
    fs::write(paths.hostname(), format!("{}\n", rec.hostname))?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    fs::write(
        paths.resolv_conf(),
        crate::network::resolv_conf(&host_resolv, mode, &rec.net.dns),
    )?;
    Ok(())
}

/// `-p`, `--dns` and `--add-host`, checked. Published ports mean nothing
/// on the host's network or none: docker warns and drops them.
fn network_config(args: &RunArgs, mode: crate::network::Mode) -> Result<NetworkConfig> {
    use crate::network::options;
    let mut ports = args
        .publish
        .iter()
        .map(|spec| options::parse_publish(spec))
        .collect::<Result<Vec<_>>>()?;
    if !ports.is_empty() && mode != crate::network::Mode::Bridge {
        eprintln!(
            "WARNING: Published ports are discarded when using {} network mode",
            mode.name()
        );
        ports.clear();
    }
    for server in &args.dns {
        options::check_dns(server)?;
    }
    for entry in &args.add_host {
        options::parse_extra_host(entry)?;
    }
    Ok(NetworkConfig {
        ports,
        dns: args.dns.clone(),
        extra_hosts: args.add_host.clone(),
    })
}

/// The image's config with the run flags applied, as docker does:
/// `--entrypoint` replaces the entrypoint and drops the image's Cmd; a
/// command given replaces Cmd; -e adds or replaces by key.
fn run_config(image: &ImageRecord, args: &RunArgs, env: Vec<String>) -> Result<RunConfig> {
    let mut config = image.config().config;
    // A build's mark of its step containers is never inherited: the next
    // build removes the marked containers of dead builds, so an image
    // carrying the mark (an untrusted one, or a commit of a step kept
    // with --rm=false) had every container made from it and its volumes
    // removed (found by a review as an attacker).
    config.labels.remove(super::build::STEP_LABEL);
    if let Some(e) = &args.entrypoint {
        config.entrypoint = if e.is_empty() {
            vec![]
        } else {
            vec![e.clone()]
        };
        config.cmd.clear();
    }
    if !args.command.is_empty() {
        config.cmd = args.command.clone();
    }
    crate::environment::set_all(&mut config.env, env);
    if let Some(w) = &args.workdir {
        check_workdir(w)?;
        config.working_dir = w.clone();
    }
    if let Some(u) = &args.user {
        config.user = u.clone();
    }
    // Labels: the files' first, then -l, a later key replacing an
    // earlier one; a bare key has an empty value.
    for file in &args.label_file {
        for (key, value) in crate::environment::key_value_file(file)? {
            config.labels.insert(key, value.unwrap_or_default());
        }
    }
    for label in &args.label {
        let (key, value) = label.split_once('=').unwrap_or((label, ""));
        if key.is_empty() {
            bail!("invalid label '{label}': empty name");
        }
        config.labels.insert(key.to_owned(), value.to_owned());
    }
    let health = crate::health::Flags {
        cmd: args.health_cmd.as_deref(),
        interval: args.health_interval.as_deref(),
        timeout: args.health_timeout.as_deref(),
        start_period: args.health_start_period.as_deref(),
        retries: args.health_retries,
        none: args.no_healthcheck,
    };
    crate::health::apply(&mut config, &health)?;
    if let Some(signal) = &args.stop_signal {
        signal.parse::<crate::signal::Signal>()?;
        config.stop_signal = signal.clone();
    }
    for spec in &args.expose {
        for port in crate::network::options::parse_expose(spec)? {
            config.exposed_ports.insert(port, Default::default());
        }
    }
    Ok(config)
}

/// `-P`: every exposed port the `-p` flags leave unpublished, on a port
/// the host picks, on every address (docker's `--publish-all`).
fn publish_all(net: &mut NetworkConfig, config: &RunConfig) {
    for key in config.exposed_ports.keys() {
        let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let published = net
            .ports
            .iter()
            .any(|p| p.container_port == port && p.protocol == protocol);
        if !published {
            net.ports.push(layerdb::PortBinding {
                host_ip: String::new(),
                host_port: 0,
                container_port: port,
                protocol: protocol.to_owned(),
            });
        }
    }
}

/// `-u` is `user[:group]`, each a name or a number.
fn check_user(u: &str) -> Result<()> {
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let mut parts = u.splitn(2, ':');
    let user = parts.next().unwrap_or_default();
    if !ok(user) || parts.next().is_some_and(|g| !ok(g)) {
        bail!("invalid user {u:?}: expected user[:group], each a name or a number");
    }
    Ok(())
}

/// `--memory`, `--memory-swap`, `--cpus`, `--pids-limit`, `--privileged`,
/// `--ulimit`, `--shm-size`, `--device`, checked as
/// docker checks them; warns when they cannot apply (rootless on v1).
fn resources_of(args: &RunArgs) -> Result<layerdb::Resources> {
    use crate::container::cgroup;
    let resources = layerdb::Resources {
        memory: args
            .memory
            .as_deref()
            .map(cgroup::parse_memory)
            .transpose()?
            .unwrap_or(0),
        memory_swap: args
            .memory_swap
            .as_deref()
            .map(cgroup::parse_memory_swap)
            .transpose()?
            .unwrap_or(0),
        nano_cpus: args
            .cpus
            .as_deref()
            .map(cgroup::parse_cpus)
            .transpose()?
            .unwrap_or(0),
        pids_limit: args
            .pids_limit
            .as_deref()
            .map(cgroup::parse_pids_limit)
            .transpose()?
            .unwrap_or(0),
        all_devices: args.privileged,
        ulimits: crate::container::ulimits::parse_all(&args.ulimit)?,
        shm_size: args
            .shm_size
            .as_deref()
            .map(|size| crate::humanize::parse_size(size, "--shm-size"))
            .transpose()?
            .unwrap_or(0),
        devices: (args.device.iter())
            .map(|spec| crate::container::host_devices::parse(spec))
            .collect::<Result<_>>()?,
    };
    // A device that is not there fails now, before anything is made (a
    // start finds them again).
    crate::container::host_devices::expand_all(&resources.devices)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cgroup::validate(&resources, cpus)?;
    if let Some(warning) = cgroup::rootless_limits_warning(&resources) {
        eprintln!("{warning}");
    }
    Ok(resources)
}

/// docker's rule for `-w`, for run and exec: an absolute path.
pub(super) fn check_workdir(w: &str) -> Result<()> {
    if !w.starts_with('/') {
        bail!("the working directory '{w}' is invalid, it needs to be an absolute path");
    }
    Ok(())
}

/// docker's `--log-driver`: `json-file` (the default) or `none`; strata
/// has no other.
fn log_driver(given: Option<&str>) -> Result<layerdb::LogDriver> {
    match given {
        None | Some("json-file") => Ok(layerdb::LogDriver::JsonFile),
        Some("none") => Ok(layerdb::LogDriver::None),
        Some(other) => anyhow::bail!("logger: no log driver named '{other}' is registered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_users_are_refused() {
        assert!(check_user("1000:1000").is_ok());
        assert!(check_user("node").is_ok());
        assert!(check_user(":x").is_err());
        assert!(check_user("a:").is_err());
        assert!(check_user("a b").is_err());
    }
}
