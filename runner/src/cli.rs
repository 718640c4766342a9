//! The command line: clap structures only, shaped like docker's.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Container image layers, stored once, stacked with FUSE, run without a daemon"
)]
pub struct Cli {
    /// Store root (default: /var/lib/strata for root, else $XDG_DATA_HOME/strata)
    #[arg(long, global = true, env = "STRATA_ROOT")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Import a tar (plain, gzip or zstd; - for stdin) or a directory as a one-layer image
    Import(ImportArgs),
    /// List images
    Images(ImagesArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Return low-level information on images or containers
    Inspect(InspectAnyArgs),
    /// Write an image's layers as canonical OCI layer tars in an OCI layout
    Save(SaveArgs),
    /// Load images from what `save` writes (a tar, a directory, or stdin)
    Load(LoadArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Store-wide commands
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Display system-wide information
    Info,
    /// Show the strata version information
    Version,
    /// Remove layers and chunks nothing references
    Gc,
    /// Re-hash every chunk and resolve every reference
    Verify(VerifyArgs),
    /// Create and run a new container from an image
    Run(Box<RunArgs>),
    /// Create a new container from an image, without starting it
    Create(Box<RunArgs>),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// List containers
    Ps(PsArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Export a container's filesystem as a tar archive to stdout
    Export(ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Stop running containers
    Stop(StopArgs),
    /// Kill running containers
    Kill(KillArgs),
    /// Start stopped containers
    Start(StartArgs),
    /// Restart containers
    Restart(StopArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Mount an image (read-only) or container, or list active mounts
    Mount(MountArgs),
    /// Unmount what `strata mount` mounted, by mountpoint or by name
    Umount { target: String },
    /// Run a shell or CMD in strata's user and mount namespaces, where you
    /// are root with your subordinate ids mapped (like podman unshare)
    Unshare {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Serve a mount in the foreground (used by `mount`; not for users)
    #[command(hide = true)]
    ServeMount(ServeMountArgs),
    /// Start a created container (run and start re-exec into this, so that
    /// the fork happens in a process with one thread; not for users)
    #[command(name = "__launch", hide = true)]
    Launch(LaunchArgs),
    /// Probe a container's health while it runs (launch starts this; not
    /// for users)
    #[command(name = "__health", hide = true)]
    Health(HealthArgs),
    /// Carry out a container's restart policy (launch starts this; not for
    /// users)
    #[command(name = "__keep", hide = true)]
    Keep(KeepArgs),
    /// syncfs of a running container's filesystem from inside its user
    /// namespace (commit runs this; not for users)
    #[command(name = "__flush", hide = true)]
    Flush { pid: i32 },
    /// Join a running container's namespaces (exec re-execs into this)
    #[command(name = "__exec", hide = true)]
    ExecIn(ExecInArgs),
    /// The container's side of `cp`: enter its tree, then describe a path
    /// or move one tar (not for users)
    #[command(name = "__archive", hide = true)]
    Archive(ArchiveArgs),
    /// Put a tar from stdin into a stopped container as COPY does (build
    /// runs this; not for users)
    #[command(name = "__copy-in", hide = true)]
    CopyIn(CopyInArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout {
        /// Registry (default: Docker Hub)
        registry: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    #[arg(long)]
    pub detach: bool,
    /// Print the container's id once it runs (run -d)
    #[arg(long)]
    pub print_id: bool,
    /// Print the container's name once it runs (start)
    #[arg(long)]
    pub print_name: Option<String>,
    /// Started again by its restart policy's keeper, which goes on
    /// watching it (not a start by hand)
    #[arg(long)]
    pub kept: bool,
    /// Take the container's start turn first and hold it until the
    /// container runs (`start -a`, which becomes this process)
    #[arg(long)]
    pub turn: bool,
    pub id: crate::container_id::ContainerId,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    pub id: crate::container_id::ContainerId,
}

#[derive(Args, Debug)]
pub struct KeepArgs {
    /// The launch that started the container; the keeper begins once it
    /// has ended
    #[arg(long)]
    pub launcher: i32,
    /// When that launch began, in ns since the Unix epoch: a run that
    /// started before it is not the launch's (the launch failed)
    #[arg(long, default_value_t = 0)]
    pub since: i64,
    pub id: crate::container_id::ContainerId,
}

#[derive(Args, Debug)]
pub struct ExecInArgs {
    #[arg(long)]
    pub pid: i32,
    #[arg(long)]
    pub tty: bool,
    #[arg(long)]
    pub detach: bool,
    #[arg(long)]
    pub interactive: bool,
    #[arg(long, default_value = "")]
    pub user: String,
    #[arg(long, default_value = "")]
    pub workdir: String,
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// The container's recorded security options, as JSON
    #[arg(long, default_value = "{}")]
    pub security: String,
    /// The container's `--ulimit`s, as JSON
    #[arg(long, default_value = "[]")]
    pub ulimits: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// List images
    Ls(ImagesArgs),
    /// Remove one or more images
    Rm(RmiArgs),
    /// Return low-level information on images
    Inspect(InspectArgs),
    /// Import a tar (plain, gzip or zstd; - for stdin) or a directory as a one-layer image
    Import(ImportArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Write an image's layers as canonical OCI layer tars in an OCI layout
    Save(SaveArgs),
    /// Load images from what `save` writes (a tar, a directory, or stdin)
    Load(LoadArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Remove unused images (untagged ones, or every one with -a)
    Prune {
        /// Remove all images no container uses, not just untagged ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (until=TIME, label=KEY[=VALUE], label!=...)
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// List containers
    Ls(PsArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Create and run a new container from an image
    Run(Box<RunArgs>),
    /// Create a new container from an image, without starting it
    Create(Box<RunArgs>),
    /// Return low-level information on containers
    Inspect(InspectArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Export a container's filesystem as a tar archive to stdout
    Export(ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Stop running containers
    Stop(StopArgs),
    /// Kill running containers
    Kill(KillArgs),
    /// Start stopped containers
    Start(StartArgs),
    /// Restart containers
    Restart(StopArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Remove all stopped containers
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (until=TIME, label=KEY[=VALUE], label!=...)
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume
    Create {
        /// A name of [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a random one if none)
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only display volume names
        #[arg(short, long)]
        quiet: bool,
        /// Provide filter values (dangling=true|false, name=NAME)
        #[arg(short, long)]
        filter: Vec<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        /// Do not fail when a volume does not exist
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused local volumes (anonymous ones, or every one with -a)
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show logical bytes against bytes stored (the dedup ratio)
    Df,
    /// Remove stopped containers and unused images, then what they leave
    Prune {
        /// Remove all images no container uses, not just untagged ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Prune anonymous volumes
        #[arg(long)]
        volumes: bool,
        /// Provide filter values (until=TIME, label=KEY[=VALUE], label!=...)
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// A tar file, - for stdin, or a directory
    pub source: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[arg(short, long)]
    pub all: bool,
    /// Filter output based on conditions provided (dangling, reference,
    /// label)
    #[arg(short, long)]
    pub filter: Vec<String>,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub no_trunc: bool,
    pub repository: Option<String>,
    /// Show the repository digests (RepoDigests) in a DIGEST column.
    #[arg(long)]
    pub digests: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE',
    /// 'json' or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(short, long)]
    pub quiet: bool,
    /// "json" for one JSON object per row
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format the output using the given Go template
    #[arg(short = 'f', long = "format")]
    pub format: Option<String>,
    #[arg(required = true)]
    pub targets: Vec<String>,
}

/// `inspect`: `image inspect`'s and `container inspect`'s arguments, and
/// what to look for.
#[derive(Args, Debug)]
pub struct InspectAnyArgs {
    /// Only this type of object (else a container, then an image)
    #[arg(long = "type", value_enum)]
    pub object_type: Option<ObjectType>,
    #[command(flatten)]
    pub args: InspectArgs,
}

/// What a name given to `inspect` is looked up as.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    Container,
    Image,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file (with --format oci-dir: a directory), instead of
    /// STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive or oci-archive (the default: one tar that docker,
    /// podman and skopeo all load), or oci-dir (the layout in a directory)
    #[arg(long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from a tar file or a directory instead of stdin
    #[arg(short, long)]
    pub input: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long)]
    pub rm: bool,
    /// Run an init inside the container that forwards signals and reaps
    /// processes
    #[arg(long)]
    pub init: bool,
    /// Logging driver for the container (json-file or none)
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options (json-file: max-size=SIZE, max-file=N)
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Restart policy to apply when a container exits (no,
    /// on-failure[:max-retries], always, unless-stopped)
    #[arg(long)]
    pub restart: Option<String>,
    /// Set meta data on a container (KEY=VALUE, or KEY for an empty value)
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long)]
    pub label_file: Vec<PathBuf>,
    /// Signal to stop the container (a name or a number)
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Expose a port or a range of ports (PORT[-PORT][/PROTO])
    #[arg(long)]
    pub expose: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Size of /dev/shm (bytes, or with a unit: b, k, m, g)
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Command to run to check health
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s)
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s)
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before starting
    /// health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, allow_hyphen_values = true)]
    pub health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// The image's VOLUMEs get no volume (`build`'s step containers, as
    /// BuildKit runs its steps; not for users)
    #[arg(long, hide = true)]
    pub no_image_volumes: bool,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// A file of `NAME=VALUE` entries ended by NUL bytes, after the
    /// others (`build`'s args whose values an --env-file cannot hold, a
    /// line break in them, kept off the command line; not for users)
    #[arg(long, hide = true)]
    pub env_file0: Vec<PathBuf>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    #[arg(short = 'h', long = "hostname")]
    pub hostname: Option<String>,
    /// Bind mount a volume: HOST:PATH, NAME:PATH (a named volume) or PATH
    /// (an anonymous one), then [:ro]
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount volumes from the specified container(s): CONTAINER[:ro|:rw]
    #[arg(long)]
    pub volumes_from: Vec<String>,
    /// Mount a tmpfs directory: PATH[:OPTIONS] (noexec,nosuid,nodev first)
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Attach a mount: type=bind,source=HOST,target=PATH[,readonly],
    /// type=volume[,source=NAME],target=PATH[,readonly] or
    /// type=tmpfs,target=PATH[,tmpfs-size=N][,tmpfs-mode=MODE]
    #[arg(long)]
    pub mount: Vec<String>,
    /// bridge (the default: a network of its own, NAT to the outside),
    /// host or none
    #[arg(long, alias = "net", default_value = "bridge")]
    pub network: String,
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS],
    /// PERMISSIONS some of r, w, m)
    #[arg(long)]
    pub device: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Security options (seccomp=unconfined|PROFILE.json, no-new-privileges)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Memory limit (bytes, or with a unit: b, k, m, g)
    #[arg(short = 'm', long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory plus swap (bytes, or with a unit); -1 for no limit on swap
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (a CFS quota over a 100 ms period)
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Ulimit options (NAME=SOFT[:HARD], -1 for no limit; e.g. nofile=1024:2048)
    #[arg(long = "ulimit", allow_hyphen_values = true)]
    pub ulimit: Vec<String>,
    /// Publish a container's port to the host: [IP:][HOST:]CONTAINER[/tcp|/udp]
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Set a custom DNS server
    #[arg(long)]
    pub dns: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    #[arg(short, long)]
    pub author: Option<String>,
    #[arg(short, long)]
    pub message: Option<String>,
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Pause container during commit (docker's `--pause=false` turns it off)
    #[arg(short = 'p', long = "pause", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    /// Do not pause the container during commit
    #[arg(long)]
    pub no_pause: bool,
    pub container: String,
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[arg(short, long)]
    pub all: bool,
    /// Filter output based on conditions provided (id, name, status,
    /// exited, label, ancestor, before, since, volume, health)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE',
    /// 'json' or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy (it shows only on a terminal)
    #[arg(short, long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH, or SRC_PATH on the host (- for a tar on stdin)
    pub src: String,
    /// DEST_PATH on the host (- for a tar on stdout), or CONTAINER:DEST_PATH
    pub dst: String,
}

#[derive(Args, Debug)]
pub struct ArchiveArgs {
    /// A running container's init, as the host sees it
    #[arg(long, conflicts_with = "dir")]
    pub pid: Option<i32>,
    /// Where a stopped container's tree is mounted
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A host directory other users may change, entered only where no link
    /// is on its path (a copy out of the container unpacks there)
    #[arg(long, conflicts_with_all = ["pid", "dir"])]
    pub host_dir: Option<PathBuf>,
    /// The container's name, for messages
    #[arg(long)]
    pub name: String,
    #[command(subcommand)]
    pub op: ArchiveOp,
}

#[derive(Subcommand, Debug)]
pub enum ArchiveOp {
    /// What PATH is as a source (JSON, null when missing)
    Source {
        #[arg(long)]
        follow: bool,
        path: String,
    },
    /// What PATH is as a destination, its symlinks followed (JSON)
    Destination { path: String },
    /// PATH as a tar on stdout, its top entry named ENTRY
    Get {
        #[arg(long)]
        follow: bool,
        path: String,
        entry: String,
    },
    /// A tar from stdin unpacked in DIR
    Put {
        #[arg(long)]
        keep_owner: bool,
        dir: String,
    },
    /// A tar from stdin put at DEST as a Dockerfile's COPY puts it
    Copy {
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        one_file: bool,
        dest: String,
    },
    /// A tar from stdin unpacked at the root as a copy out of the
    /// container unpacks it on the host
    Unpack,
}

#[derive(Args, Debug)]
pub struct CopyInArgs {
    /// COPY's --chown
    #[arg(long)]
    pub owner: Option<String>,
    /// The tar holds one file, which becomes DEST unless DEST is a directory
    #[arg(long)]
    pub one_file: bool,
    pub container: String,
    pub dest: String,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short, long)]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile; - for stdin)
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Set build-time variables
    #[arg(long)]
    pub build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Set metadata for an image
    #[arg(long)]
    pub label: Vec<String>,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// The network of RUN instructions: bridge (the default), host or none
    #[arg(long, alias = "net", default_value = "bridge")]
    pub network: String,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          require_equals = true, action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long)]
    pub force_rm: bool,
    /// The build context: a directory, or - for stdin (a tar of the
    /// context, or a Dockerfile and no context)
    pub path: String,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(
        short = 'n',
        long,
        default_value = "all",
        allow_negative_numbers = true
    )]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing (a negative number: wait for good)
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub time: i64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub private_port: Option<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit (bytes, or with a unit: b, k, m, g)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap; -1 for no limit on swap
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[arg(short, long)]
    pub attach: bool,
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Lower directories in overlay format, topmost first (A:B:C)
    #[arg(long)]
    pub lower: Option<String>,
    /// Writable upper directory for --lower mounts
    #[arg(long)]
    pub upper: Option<PathBuf>,
    /// Let the kernel read and write host files of 1 MiB or more, and new
    /// ones, itself (FUSE passthrough; root, Linux 6.9+): faster big reads
    /// and writes, but every open asks the server
    #[arg(long)]
    pub passthrough: bool,
    /// Image or container (or, with --lower, the mountpoint)
    pub target: Option<String>,
    /// Mountpoint (default: a directory under the store's runtime dir)
    pub dir: Option<PathBuf>,
    /// Let other users than the caller into the mount (it stays nosuid,nodev)
    #[arg(long)]
    pub allow_other: bool,
}

#[derive(Args, Debug)]
pub struct ServeMountArgs {
    #[arg(long)]
    pub image: Option<String>,
    #[arg(long)]
    pub container: Option<String>,
    #[arg(long)]
    pub lower: Option<String>,
    #[arg(long)]
    pub upper: Option<PathBuf>,
    #[arg(long)]
    pub read_only: bool,
    #[arg(long)]
    pub passthrough: bool,
    pub mountpoint: PathBuf,
    /// An inspection mount (`strata mount`): nosuid,nodev
    #[arg(long)]
    pub inspection: bool,
    #[arg(long)]
    pub allow_other: bool,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
    /// Download all tagged images in the repository
    #[arg(short, long)]
    pub all_tags: bool,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub name: String,
    /// Compression of the layers pushed ("gzip", "zstd")
    #[arg(long = "compression-format", value_enum, default_value_t = PushCompression::Gzip)]
    pub compression_format: PushCompression,
}

/// How `push` compresses layers: gzip reads everywhere; zstd is smaller
/// and faster to decompress, for clients that take it (podman, containerd).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushCompression {
    Gzip,
    Zstd,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry (default: Docker Hub)
    pub registry: Option<String>,
}

/// When `run` pulls its image.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Remove damaged chunk files and name the images to import again
    #[arg(long)]
    pub repair: bool,
}
