//! `strata inspect`: docker's JSON array for images and containers.

use super::Ctx;
use crate::cli::{InspectArgs, ObjectType};
use crate::humanize::format_rfc3339;
use crate::template::Format;
use anyhow::{bail, Result};
use layerdb::{ContainerRecord, ImageRecord, State, Store, StoreError};
use serde_json::{json, Value};

pub fn run(ctx: &Ctx, args: InspectArgs, only: Option<ObjectType>) -> Result<i32> {
    // docker's `--format json` is its default output.
    let format = match args.format.as_deref() {
        None | Some("json") => None,
        Some(source) => Some(Format::parse(source)?),
    };
    let store = ctx.reader()?;
    let mut out = Vec::new();
    let mut failure = None;
    for t in &args.targets {
        match object_json(&store, t, only) {
            Ok(object) => out.push(object),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match format {
        None => outln!("{}", serde_json::to_string_pretty(&Value::Array(out))?)?,
        Some(format) => {
            for object in &out {
                outln!("{}", format.render(&as_templates_see(object))?)?;
            }
        }
    }
    match failure {
        Some(first) => Err(first),
        None => Ok(0),
    }
}

/// The object as docker's `--format` sees it: the fields its JSON
/// leaves out when empty are there (null), as docker's template runs on
/// the Go type before it falls back to the JSON map, where a field
/// missing is an error.
fn as_templates_see(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(config) = object.get_mut("Config") {
        fill_config(config, true);
    }
    if let Some(state) = object.get_mut("State").and_then(Value::as_object_mut) {
        state.entry("Health").or_insert(Value::Null);
    }
    object
}

/// `target` as the type asked for (`--type`, or `image inspect` and
/// `container inspect`), or else as a container, then an image, as
/// docker's inspect looks: only not finding one moves on to the next, so
/// an id prefix several containers share is said to be that.
fn object_json(store: &Store, target: &str, only: Option<ObjectType>) -> Result<Value> {
    if let Some(kind) = only {
        return typed_json(store, target, kind);
    }
    for kind in [ObjectType::Container, ObjectType::Image] {
        match typed_json(store, target, kind) {
            Err(e) if not_found(&e) => continue,
            found => return found,
        }
    }
    bail!("No such object: {target}")
}

fn typed_json(store: &Store, target: &str, kind: ObjectType) -> Result<Value> {
    match kind {
        ObjectType::Container => Ok(container_json(
            store,
            &crate::liveness::container(store, target)?,
        )),
        ObjectType::Image => image_json(store, &store.resolve_image(target)?),
    }
}

/// Whether a lookup found nothing of its type (a text that is no image
/// reference names no image either).
fn not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref(),
        Some(
            StoreError::NoSuchContainer(_)
                | StoreError::NoSuchImage(_)
                | StoreError::BadReference(_)
        )
    )
}

pub fn image_json(store: &Store, image: &ImageRecord) -> Result<Value> {
    let config = image.config();
    let tags = store.tags_of(&image.id)?;
    let digests = store.repo_digests_of(&image.id)?;
    let mut size = 0;
    for d in &image.layers {
        size += store.layer(d)?.size;
    }
    let mut run_config = serde_json::to_value(&config.config)?;
    fill_config(&mut run_config, false);
    let comment = config
        .history
        .last()
        .map(|h| h.comment.clone())
        .unwrap_or_default();
    Ok(json!({
        "Id": format!("{:#}", image.id),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": image.parent.map(|p| format!("{p:#}")).unwrap_or_default(),
        "Comment": comment,
        "Created": config.created,
        "Author": config.author,
        "Config": run_config,
        "Architecture": config.architecture,
        "Os": config.os,
        "Size": size,
        "RootFS": { "Type": "layers", "Layers": config.rootfs.diff_ids },
    }))
}

/// Fills in the fields of docker's container.Config (an image's Config
/// and a container's) that `config` lacks, as docker shows them unset:
/// the stored image config leaves empty ones out (its bytes are the
/// image id). `all`: also those docker's JSON leaves out when empty
/// (omitempty), which its `--format` still finds, as it runs on the Go
/// type first.
fn fill_config(config: &mut Value, all: bool) {
    let (text, flag, none) = (json!(""), json!(false), Value::Null);
    let unset = [
        ("Hostname", &text, false),
        ("Domainname", &text, false),
        ("User", &text, false),
        ("AttachStdin", &flag, false),
        ("AttachStdout", &flag, false),
        ("AttachStderr", &flag, false),
        ("ExposedPorts", &none, true),
        ("Tty", &flag, false),
        ("OpenStdin", &flag, false),
        ("StdinOnce", &flag, false),
        ("Env", &none, false),
        ("Cmd", &none, false),
        ("Healthcheck", &none, true),
        ("Image", &text, false),
        ("Volumes", &none, false),
        ("WorkingDir", &text, false),
        ("Entrypoint", &none, false),
        ("OnBuild", &none, false),
        ("Labels", &none, false),
        ("StopSignal", &text, true),
        ("Shell", &none, true),
    ];
    if let Some(fields) = config.as_object_mut() {
        for (key, empty, omitted) in unset {
            if all || !omitted {
                fields.entry(key).or_insert_with(|| empty.clone());
            }
        }
    }
}

pub fn container_json(store: &Store, c: &ContainerRecord) -> Value {
    let dir = store.container_dir(&c.id);
    let paths = crate::stack::ContainerPaths::of(store.root(), c);
    let (status, running, paused, pid, code, started, finished) = match &c.state {
        State::Created => ("created", false, false, 0, 0, 0, 0),
        State::Running {
            pid, started_ns, ..
        } => ("running", true, false, *pid, 0, *started_ns, 0),
        State::Paused {
            pid, started_ns, ..
        } => ("paused", true, true, *pid, 0, *started_ns, 0),
        State::Exited {
            code,
            started_ns,
            finished_ns,
            ..
        } => ("exited", false, false, 0, *code, *started_ns, *finished_ns),
    };
    let restarting = status == "exited" && super::keep::restart_pending(&paths);
    let status = if restarting { "restarting" } else { status };
    let oom_killed = matches!(
        c.state,
        State::Exited {
            oom_killed: true,
            ..
        }
    );
    let time = |ns: i64| {
        if ns == 0 {
            "0001-01-01T00:00:00Z".to_string()
        } else {
            format_rfc3339(ns)
        }
    };
    let mut value = json!({
        "Id": c.id,
        "Created": format_rfc3339(c.created_ns),
        "Path": c.command.first().cloned().unwrap_or_default(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": status, "Running": running, "Paused": paused,
            "Restarting": restarting, "Pid": pid,
            "OOMKilled": oom_killed, "ExitCode": code,
            "StartedAt": time(started), "FinishedAt": time(finished),
        },
        "Image": format!("{:#}", c.image),
        "ResolvConfPath": paths.resolv_conf(),
        "HostnamePath": paths.hostname(),
        "HostsPath": paths.hosts(),
        "LogPath": paths.log(),
        "Name": format!("/{}", c.name),
        "RestartCount": super::keep::restart_count(&paths),
        "HostConfig": { "NetworkMode": c.network, "AutoRemove": c.auto_remove,
            "RestartPolicy": {
                "Name": if c.restart.name.is_empty() { "no" } else { c.restart.name.as_str() },
                "MaximumRetryCount": c.restart.maximum_retry_count,
            },
            "LogConfig": { "Type": match c.log_driver {
                layerdb::LogDriver::JsonFile => "json-file",
                layerdb::LogDriver::None => "none",
            }, "Config": {} },
            // docker's: a host path or a volume's name; anonymous
            // volumes are the image's or `-v DST`'s, not binds.
            "Binds": c.mounts.iter().filter_map(|m| {
                let source = match &m.volume {
                    Some(name) if crate::volumes::find(store.root(), name).is_some_and(|v| v.anonymous) => return None,
                    Some(name) => name.clone(),
                    None => m.source.display().to_string(),
                };
                Some(format!("{source}:{}{}", m.target, if m.read_only { ":ro" } else { "" }))
            }).collect::<Vec<_>>(),
            "CapAdd": list_or_null(&c.security.cap_add),
            "CapDrop": list_or_null(&c.security.cap_drop),
            "Privileged": c.security.privileged,
            "ReadonlyRootfs": c.security.read_only_rootfs,
            "Init": c.init.then_some(true),
            "Tmpfs": (!c.tmpfs.is_empty()).then(|| c.tmpfs.iter()
                .map(|t| (t.target.clone(), json!(t.options)))
                .collect::<serde_json::Map<_, _>>()),
            "SecurityOpt": list_or_null(&security_opt(&c.security)) },
        "GraphDriver": { "Name": "strata", "Data": { "UpperDir": dir.upper() } },
        "Mounts": c.mounts.iter().map(|m| match &m.volume {
            Some(name) => json!({
                "Type": "volume", "Name": name, "Source": m.source, "Destination": m.target,
                "Driver": "local", "Mode": if m.read_only { "ro" } else { "z" }, "RW": !m.read_only,
                "Propagation": "",
            }),
            None => json!({
                "Type": "bind", "Source": m.source, "Destination": m.target,
                "Mode": if m.read_only { "ro" } else { "" }, "RW": !m.read_only,
                "Propagation": "rprivate",
            }),
        }).collect::<Vec<_>>(),
        "Config": {
            "Hostname": c.hostname, "Tty": c.tty, "OpenStdin": c.interactive,
            "Image": c.image_ref,
            "User": c.config.user, "Env": c.config.env, "Cmd": list_or_null(&c.config.cmd),
            "Entrypoint": list_or_null(&c.config.entrypoint), "WorkingDir": c.config.working_dir,
            "Labels": c.config.labels,
            "ExposedPorts": (!c.config.exposed_ports.is_empty()).then_some(&c.config.exposed_ports),
            "Volumes": (!c.config.volumes.is_empty()).then_some(&c.config.volumes),
        },
    });
    if crate::health::Check::of(&c.config).is_some() {
        let health = super::health::read(&paths).unwrap_or_else(crate::health::Health::starting);
        value["State"]["Health"] = json!(health);
    }
    if !c.config.stop_signal.is_empty() {
        value["Config"]["StopSignal"] = json!(c.config.stop_signal);
    }
    // docker's resource fields: 0 (and a null PidsLimit) mean no limit.
    let limits = &c.resources;
    value["HostConfig"]["Memory"] = json!(limits.memory);
    value["HostConfig"]["MemorySwap"] = json!(crate::container::cgroup::memory_and_swap(limits));
    value["HostConfig"]["NanoCpus"] = json!(limits.nano_cpus);
    value["HostConfig"]["PidsLimit"] = json!((limits.pids_limit > 0).then_some(limits.pids_limit));
    value["HostConfig"]["Devices"] = json!(limits.devices);
    value["HostConfig"]["Ulimits"] = match limits.ulimits.is_empty() {
        true => Value::Null,
        false => json!(limits.ulimits),
    };
    fill_config(&mut value["Config"], false);
    add_network_json(&dir, c, &mut value);
    value
}

/// docker shows an empty CapAdd, CapDrop, SecurityOpt, Cmd or Entrypoint
/// as null.
fn list_or_null(items: &[String]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        json!(items)
    }
}

/// `--security-opt` as given, except that docker shows a profile file
/// as the JSON it read (`seccomp={...}`), which is what the container has.
fn security_opt(security: &layerdb::SecurityOptions) -> Vec<String> {
    security
        .security_opt
        .iter()
        .map(|opt| {
            let file = opt
                .strip_prefix("seccomp=")
                .or_else(|| opt.strip_prefix("seccomp:"))
                .filter(|value| *value != "unconfined");
            match (file, &security.seccomp_profile) {
                (Some(_), Some(json)) => {
                    let compact = serde_json::from_str::<Value>(json)
                        .map(|value| value.to_string())
                        .unwrap_or_else(|_| json.clone());
                    format!("seccomp={compact}")
                }
                _ => opt.clone(),
            }
        })
        .collect()
}

/// docker's network fields: HostConfig's PortBindings, Dns, ExtraHosts
/// (as given), and NetworkSettings (what the running container got, from
/// its `network.json`; empty once it stopped, as docker shows it).
fn add_network_json(dir: &layerdb::ContainerDir, c: &ContainerRecord, value: &mut Value) {
    let asked = port_map(&c.net.ports, |port| match port.host_port {
        0 => String::new(),
        n => n.to_string(),
    });
    value["HostConfig"]["PortBindings"] = asked;
    value["HostConfig"]["Dns"] = json!(c.net.dns);
    value["HostConfig"]["ExtraHosts"] = json!(c.net.extra_hosts);
    let settings = crate::network::settings_of(dir, c);
    let endpoint = json!({
        "Gateway": settings.gateway,
        "IPAddress": settings.ip_address,
        "IPPrefixLen": settings.prefix_len,
        "MacAddress": settings.mac_address,
    });
    let mut network_settings = json!({
        "Ports": port_map(&settings.ports, |port| port.host_port.to_string()),
        "Networks": { c.network.clone(): endpoint.clone() },
    });
    for (key, field) in endpoint.as_object().into_iter().flatten() {
        network_settings[key] = field.clone();
    }
    value["NetworkSettings"] = network_settings;
}

/// docker's port maps: `{"80/tcp": [{"HostIp": ..., "HostPort": ...}]}`.
fn port_map(
    ports: &[layerdb::PortBinding],
    host_port: impl Fn(&layerdb::PortBinding) -> String,
) -> Value {
    let mut map = serde_json::Map::new();
    for port in ports {
        let entry = json!({ "HostIp": port.host_ip, "HostPort": host_port(port) });
        let key = crate::network::options::port_key(port);
        match map.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(entry),
            None => {
                map.insert(key, json!([entry]));
            }
        }
    }
    Value::Object(map)
}
