//! `strata build`: a Dockerfile carried out as docker's classic builder
//! does it. Each instruction makes an image whose parent is the one
//! before: ENV, CMD, LABEL and the like change the config alone; RUN runs
//! its command in a container of the image (`strata create` and `start
//! -a`, the same path as `run`, so it gets run's isolation) and commits
//! what it changed; COPY and ADD put a tar of their sources into a
//! stopped container (`strata __copy-in`, chrooted in its tree as `cp`
//! is) and commit that. The build cache is that chain: a step is skipped
//! when an image with the same parent, the same history line and the
//! same config is there already. A COPY's history line names its tar's
//! fingerprint (`build::context`), so changed sources miss the cache.

use super::Ctx;
use crate::build::context::{add_kind, AddKind, Context, Packer};
use crate::build::fetch;
use crate::build::plan::{Instruction, Plan};
use crate::cli::{BuildArgs, PullPolicy};
use crate::dockerfile::{
    command_line, expand_word, parse_json_form, split_flags, split_words, State,
};
use crate::{environment, liveness, ExitCode};
use anyhow::{anyhow, bail, Context as _, Result};
use layerdb::{Digest, History, ImageConfig, Ingest, NewImage, PendingLayer, Reference};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

pub fn build(ctx: &Ctx, args: BuildArgs) -> Result<i32> {
    // Everything the command line says is checked before any step runs.
    let tags = (args.tag.iter())
        .map(|t| Reference::parse(t).map_err(|e| anyhow!("invalid tag {t:?}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let labels = (args.label.iter())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect::<Vec<_>>();
    let build_args = build_arg_values(&args.build_arg)?;
    crate::network::Mode::parse(&args.network)?;
    // `PATH` the context, `-f` the Dockerfile (PATH/Dockerfile by
    // default). `build -` reads stdin: a tar (plain, gzip or zstd) is the
    // context, unpacked in a scratch directory, its Dockerfile inside;
    // anything else is the Dockerfile, with no context. `-f -` reads the
    // Dockerfile from stdin and keeps PATH as the context.
    let read_stdin = || -> Result<String> {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the Dockerfile from stdin")?;
        Ok(text)
    };
    // Its scratch directory is the first file a build makes: the store
    // must be there (a first command on a new store) and writable first.
    layerdb::store::create_root_for_writing(&ctx.root)?;
    let scratch = ctx.scratch_dir("build")?;
    let mut context_dir = (args.path != "-").then(|| PathBuf::from(&args.path));
    let text = match (&args.file, &context_dir) {
        (Some(file), _) if file.as_os_str() == "-" => read_stdin()?,
        (file, None) => match stdin_context(scratch.path())? {
            Some(dir) => {
                let file = file.as_deref().unwrap_or(Path::new("Dockerfile"));
                let text = crate::build::context::read_in(&dir, file).with_context(|| {
                    format!(
                        "unable to read the Dockerfile {} in the context from stdin",
                        file.display()
                    )
                })?;
                context_dir = Some(dir);
                text
            }
            None => std::fs::read_to_string(scratch.path().join("stdin"))
                .context("reading the Dockerfile from stdin")?,
        },
        // `-f FILE` is the caller's own file; the default is the
        // context's, read inside it.
        (Some(file), Some(_)) => std::fs::read_to_string(file)
            .with_context(|| format!("unable to read the Dockerfile {}", file.display()))?,
        (None, Some(dir)) => crate::build::context::read_in(dir, Path::new("Dockerfile"))
            .with_context(|| {
                format!(
                    "unable to read the Dockerfile {}",
                    dir.join("Dockerfile").display()
                )
            })?,
    };
    let context = Context::open(context_dir.as_deref())?;
    let plan = Plan::parse(&text)?;
    let target = match &args.target {
        Some(name) => plan
            .stage_named(name)
            .filter(|_| name.parse::<usize>().is_err())
            .ok_or_else(|| anyhow!("target stage {name:?} could not be found"))?,
        None => plan.stages.len() - 1,
    };
    let mut builder = Builder {
        ctx,
        args: &args,
        plan: &plan,
        context,
        build_args,
        used_args: BTreeSet::new(),
        global_args: Vec::new(),
        results: vec![None; plan.stages.len()],
        step: 0,
        total: 0,
        children: Default::default(),
    };
    builder.remove_orphaned_steps()?;
    builder.global_args()?;
    // Every stage up to the target, as docker's classic builder builds
    // them (a `COPY --from=$ARG` names its stage only as it runs).
    builder.total = (plan.stages[..=target].iter())
        .map(|stage| 1 + stage.instructions.len())
        .sum::<usize>()
        + usize::from(!labels.is_empty());
    for stage in 0..=target {
        builder.results[stage] = Some(builder.stage(stage)?);
    }
    let mut image = builder.results[target].expect("the target stage was built");
    if !labels.is_empty() {
        image = builder.labels(&image, &labels)?;
    }
    let unused: Vec<&str> = (builder.build_args.iter())
        .map(|(k, _)| k.as_str())
        .filter(|k| !builder.used_args.contains(*k))
        .collect();
    if !unused.is_empty() {
        eprintln!(
            "[Warning] One or more build-args [{}] were not consumed",
            unused.join(" ")
        );
    }
    let store = ctx.store()?;
    for tag in &tags {
        store.tag(&image, tag)?;
    }
    drop(store);
    if let Some(path) = &args.iidfile {
        std::fs::write(path, format!("{image:#}"))
            .with_context(|| format!("writing the image id to {}", path.display()))?;
    }
    match args.quiet {
        true => outln!("{image:#}")?,
        false => {
            outln!("Successfully built {}", short(&image))?;
            for tag in &tags {
                outln!("Successfully tagged {tag}")?;
            }
        }
    }
    Ok(0)
}

/// `build -`'s stdin, kept in `scratch/stdin`: when it is a tar (plain,
/// gzip or zstd) it is unpacked in `scratch/context` (names leaving it
/// refused by the tar crate, owners not kept), whose path is returned.
fn stdin_context(scratch: &std::path::Path) -> Result<Option<PathBuf>> {
    let kept = scratch.join("stdin");
    let mut file = File::create(&kept).context("keeping stdin")?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file).context("reading stdin")?;
    drop(file);
    let stdin = File::open(&kept).context("reading the kept stdin")?;
    let AddKind::Tar(tar) = add_kind(stdin, "stdin")? else {
        return Ok(None);
    };
    let dir = scratch.join("context");
    std::fs::create_dir(&dir)?;
    crate::tree_tar::unpack_on_host(&mut { tar }, &dir, &dir)
        .context("unpacking the build context from stdin")?;
    Ok(Some(dir))
}

/// `--build-arg NAME=VALUE`, or `NAME` alone for the value of this
/// process's environment (left out when it has none).
fn build_arg_values(given: &[String]) -> Result<Vec<(String, String)>> {
    let mut values = Vec::new();
    for arg in given {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), std::env::var(arg).ok()),
        };
        if name.is_empty() {
            bail!("invalid --build-arg {arg:?}: no name");
        }
        if let Some(value) = value {
            values.retain(|(n, _): &(String, String)| n != name);
            values.push((name.to_string(), value));
        }
    }
    Ok(values)
}

/// An image id as the build prints it.
fn short(id: &Digest) -> String {
    id.hex()[..12].to_string()
}

struct Builder<'a> {
    ctx: &'a Ctx,
    args: &'a BuildArgs,
    plan: &'a Plan,
    context: Context,
    /// `--build-arg` values.
    build_args: Vec<(String, String)>,
    /// The build args an ARG declared.
    used_args: BTreeSet<String>,
    /// `NAME=VALUE` of the ARGs before the first FROM.
    global_args: Vec<String>,
    /// Each stage's image, once built.
    results: Vec<Option<Digest>>,
    step: usize,
    total: usize,
    /// The images the cache can give, by parent: read from the store at
    /// the first step that asks and told of each image the build makes.
    /// Each step scanned every image of the store before, so a build took
    /// time in its steps times the store's images (0.17 s a step with
    /// 1,140 images; a 1,000-step Dockerfile 88 s), found by a review.
    children: std::cell::RefCell<Option<HashMap<Digest, Vec<CachedStep>>>>,
}

/// A step image the cache may give: what [`Builder::cached`] compares.
struct CachedStep {
    id: Digest,
    created_by: String,
    config: layerdb::RunConfig,
    author: String,
}

impl CachedStep {
    fn of(id: Digest, config: &ImageConfig) -> CachedStep {
        CachedStep {
            id,
            created_by: (config.history.last()).map_or_else(String::new, |h| h.created_by.clone()),
            config: config.config.clone(),
            author: config.author.clone(),
        }
    }
}

/// A stage being built: its latest image and the config it has.
struct StageState {
    image: Digest,
    state: State,
    author: String,
}

impl Builder<'_> {
    fn say(&self, line: &str) -> Result<()> {
        if !self.args.quiet {
            outln!("{line}")?;
        }
        Ok(())
    }

    fn step_line(&mut self, instruction: &Instruction) -> Result<()> {
        self.step += 1;
        self.say(&format!(
            "Step {}/{} : {}",
            self.step,
            self.total,
            instruction.text()
        ))
    }

    /// The ARGs before the first FROM, each given by `--build-arg` or by
    /// its default.
    fn global_args(&mut self) -> Result<()> {
        for instruction in &self.plan.global_args {
            for (name, value) in self.declare(instruction, &self.global_args.clone())? {
                if let Some(value) = value {
                    environment::set(&mut self.global_args, format!("{name}={value}"));
                }
            }
        }
        Ok(())
    }

    /// The names an ARG declares, each with its value: `--build-arg`'s,
    /// else its default expanded with `env`, else (a global ARG declared
    /// again in a stage) the global value.
    fn declare(
        &mut self,
        instruction: &Instruction,
        env: &[String],
    ) -> Result<Vec<(String, Option<String>)>> {
        let words = split_words(&instruction.rest);
        if words.is_empty() {
            bail!(
                "dockerfile parse error on line {}: ARG requires at least one argument",
                instruction.line
            );
        }
        let mut declared = Vec::new();
        for word in words {
            let (name, default) = match word.split_once('=') {
                Some((name, default)) => (name.to_string(), Some(expand_word(default, env)?)),
                None => (word, None),
            };
            let given = (self.build_args.iter()).find(|(n, _)| *n == name);
            let value = match given {
                Some((_, value)) => {
                    self.used_args.insert(name.clone());
                    Some(value.clone())
                }
                None => default
                    .or_else(|| environment::lookup(&self.global_args, &name).map(str::to_string)),
            };
            declared.push((name, value));
        }
        Ok(declared)
    }

    fn stage(&mut self, index: usize) -> Result<Digest> {
        let stage = &self.plan.stages[index];
        self.step_line(&stage.from)?;
        let base = expand_word(&stage.base, &self.global_args)?;
        let image = self.base_image(&base, index)?;
        self.say(&format!(" ---> {}", short(&image)))?;
        let config = self.image_config(&image)?;
        let mut st = StageState {
            image,
            state: State::new(config.config.clone()),
            author: config.author.clone(),
        };
        // The base image's ONBUILD triggers run first, and are not
        // passed on (docker's rule).
        let triggers = std::mem::take(&mut st.state.config.on_build);
        if !triggers.is_empty() {
            self.say(&format!("# Executing {} build triggers", triggers.len()))?;
            for text in &triggers {
                let trigger = Instruction::parse(stage.from.line, text)?;
                crate::dockerfile::check_trigger(&trigger.keyword).map_err(|e| anyhow!(e))?;
                self.instruction(&mut st, &trigger)?;
            }
        }
        for instruction in &stage.instructions {
            self.step_line(instruction)?;
            self.instruction(&mut st, instruction)
                .map_err(|e| on_line(e, instruction))?;
            self.say(&format!(" ---> {}", short(&st.image)))?;
        }
        Ok(st.image)
    }

    /// FROM's image: `scratch`, an earlier stage, or an image of the store
    /// (pulled when missing, or always with `--pull`).
    fn base_image(&mut self, base: &str, index: usize) -> Result<Digest> {
        if base == "scratch" {
            return self.scratch();
        }
        if let Some(stage) = self.plan.stage_named(base).filter(|&s| s < index) {
            return self.results[stage].ok_or_else(|| anyhow!("stage {base} was not built"));
        }
        self.image(base)
    }

    /// An image by name: pulled when missing, or always with `--pull`.
    fn image(&self, name: &str) -> Result<Digest> {
        let policy = match self.args.pull {
            true => PullPolicy::Always,
            false => PullPolicy::Missing,
        };
        if let Some(pulled) = super::pull::ensure_image(self.ctx, name, policy, None)? {
            return Ok(pulled.id);
        }
        let store = self.ctx.reader()?;
        let image = store.resolve_image(name).map_err(|e| match e {
            layerdb::StoreError::NoSuchImage(_) => anyhow!("No such image: {name}"),
            other => other.into(),
        })?;
        Ok(image.id)
    }

    /// The image of `FROM scratch`: no layer, an empty config. Its config
    /// is fixed, so every build from scratch shares it and the cache holds.
    fn scratch(&self) -> Result<Digest> {
        let config = ImageConfig::new("1970-01-01T00:00:00Z".to_string());
        let id = Digest::of(&config.to_bytes());
        if self.ctx.reader()?.image(&id)?.is_some() {
            return Ok(id);
        }
        let made = self.ctx.store()?.commit_image(NewImage {
            config,
            layer: None,
            parent: None,
            reference: None,
        })?;
        Ok(made.id)
    }

    fn image_config(&self, id: &Digest) -> Result<ImageConfig> {
        let store = self.ctx.reader()?;
        let image = store
            .image(id)?
            .ok_or_else(|| anyhow!("image {id:#} is gone"))?;
        Ok(image.config())
    }

    fn instruction(&mut self, st: &mut StageState, instruction: &Instruction) -> Result<()> {
        let keyword = instruction.keyword.as_str();
        match keyword {
            "run" => return self.run(st, instruction),
            "copy" | "add" => return self.copy(st, instruction),
            "from" => unreachable!("a FROM starts a stage"),
            "arg" => {
                let env = st.state.expansion_env();
                for (name, value) in self.declare(instruction, &env)? {
                    match value {
                        Some(value) => {
                            environment::set(&mut st.state.args, format!("{name}={value}"))
                        }
                        None => st.state.args.retain(|a| environment::key(a) != name),
                    }
                }
                crate::dockerfile::check_environment(&st.state.args)?;
            }
            "maintainer" => st.author = instruction.rest.clone(),
            "workdir" => {
                st.state.dispatch(keyword, &instruction.rest)?;
                return self.workdir(st, instruction);
            }
            _ => st.state.dispatch(keyword, &instruction.rest)?,
        }
        let created_by = format!("/bin/sh -c #(nop)  {}", instruction.text());
        st.image = self.cached_or(st, created_by, |created_by| {
            self.step_image(st, created_by, None)
        })?;
        Ok(())
    }

    /// The step's image: the cache's, else what `make` makes of it.
    fn cached_or(
        &self,
        st: &StageState,
        created_by: String,
        make: impl FnOnce(String) -> Result<Digest>,
    ) -> Result<Digest> {
        match self.cached(st, &created_by)? {
            Some(hit) => Ok(hit),
            None => make(created_by),
        }
    }

    /// WORKDIR: the directory is made (owned by root) in the step's
    /// layer, as docker makes it, so a later `COPY --from` of it or a
    /// `run -w`-less start finds it.
    fn workdir(&mut self, st: &mut StageState, instruction: &Instruction) -> Result<()> {
        let created_by = format!("/bin/sh -c #(nop)  {}", instruction.text());
        let dir = &st.state.config.working_dir;
        st.image = self.cached_or(st, created_by, |created_by| {
            let (empty, _) = Packer::new(&self.tmp(), None)?.finish()?;
            self.in_container(&st.image, &[], &true_command(), true, |container| {
                self.copy_in(container, empty, None, false, dir, st, created_by)
            })
        })?;
        Ok(())
    }

    /// The step's new image, with `layer` (and the ingest that made it,
    /// kept until the image holds the layer).
    fn step_image(
        &self,
        st: &StageState,
        created_by: String,
        layer: Option<(Ingest, Option<PendingLayer>)>,
    ) -> Result<Digest> {
        let mut config = self.image_config(&st.image)?;
        let now = crate::humanize::format_rfc3339_nano(crate::clock::now_ns());
        config.config = st.state.config.clone();
        config.author = st.author.clone();
        config.created = now.clone();
        let (ingest, layer) = match layer {
            Some((ingest, layer)) => (Some(ingest), layer),
            None => (None, None),
        };
        config.history.push(History {
            created: now,
            created_by,
            author: st.author.clone(),
            comment: String::new(),
            empty_layer: layer.is_none(),
        });
        let made = self.ctx.store()?.commit_image(NewImage {
            config,
            layer,
            parent: Some(st.image),
            reference: None,
        })?;
        drop(ingest);
        if let Some(children) = self.children.borrow_mut().as_mut() {
            let step = CachedStep::of(made.id, &made.config());
            children.entry(st.image).or_default().push(step);
        }
        Ok(made.id)
    }

    /// A step the cache has: an image made from the same parent by the
    /// same history line, with the same config.
    fn cached(&self, st: &StageState, created_by: &str) -> Result<Option<Digest>> {
        if self.args.no_cache {
            return Ok(None);
        }
        let mut children = self.children.borrow_mut();
        if children.is_none() {
            let mut by_parent: HashMap<Digest, Vec<CachedStep>> = HashMap::new();
            self.ctx.reader()?.for_each_image(|image, _| {
                if let Some(parent) = image.parent {
                    let step = CachedStep::of(image.id, &image.config());
                    by_parent.entry(parent).or_default().push(step);
                }
                Ok(())
            })?;
            *children = Some(by_parent);
        }
        let found = (children.as_ref().and_then(|c| c.get(&st.image)))
            .and_then(|steps| {
                steps.iter().find(|c| {
                    c.created_by == created_by
                        && c.config == st.state.config
                        && c.author == st.author
                })
            })
            .map(|c| c.id);
        drop(children);
        if found.is_some() {
            self.say(" ---> Using cache")?;
        }
        Ok(found)
    }

    /// RUN: the command in a container of the stage's image, with the
    /// build args in its environment; what it changed becomes a layer.
    fn run(&mut self, st: &mut StageState, instruction: &Instruction) -> Result<()> {
        let (flags, rest) = split_flags(&instruction.rest);
        if let Some((flag, _)) = flags.first() {
            bail!("RUN --{flag} is not supported by strata build");
        }
        let (cmd, _) = command_line(rest, &st.state.shell)?;
        if cmd.is_empty() {
            bail!("RUN requires at least one argument");
        }
        // docker's history line: the build args the command saw first.
        let args: Vec<String> = (st.state.args.iter())
            .filter(|a| environment::lookup(&st.state.config.env, environment::key(a)).is_none())
            .cloned()
            .collect();
        let created_by = match args.is_empty() {
            true => cmd.join(" "),
            false => format!("|{} {} {}", args.len(), args.join(" "), cmd.join(" ")),
        };
        st.image = self.cached_or(st, created_by, |created_by| {
            self.in_container(&st.image, &args, &cmd, true, |container| {
                self.run_in(container, &cmd, st, created_by)
            })
        })?;
        Ok(())
    }

    fn run_in(
        &self,
        container: &str,
        cmd: &[String],
        st: &StageState,
        created_by: String,
    ) -> Result<Digest> {
        self.say(&format!(" ---> Running in {}", &container[..12]))?;
        let mut start = self.strata();
        start.args(["start", "-a", container]).stdin(Stdio::null());
        let captured = match self.args.quiet {
            true => {
                let file = tempfile::tempfile_in(self.tmp())?;
                start.stdout(file.try_clone()?).stderr(file.try_clone()?);
                Some(file)
            }
            false => None,
        };
        let status = start.status().context("starting strata start")?;
        let code = status.code().unwrap_or(125);
        if code != 0 {
            if let Some(mut file) = captured {
                file.rewind()?;
                std::io::copy(&mut file, &mut std::io::stderr())?;
            }
            eprintln!(
                "The command '{}' returned a non-zero code: {code}",
                cmd.join(" ")
            );
            // docker's CLI exits with the code of the daemon's error,
            // which the classic builder sets to the step's.
            return Err(ExitCode(code).into());
        }
        self.commit(container, st, created_by)
    }

    /// COPY and ADD: the sources as one tar, put into a stopped container
    /// of the stage's image, which is then committed.
    fn copy(&mut self, st: &mut StageState, instruction: &Instruction) -> Result<()> {
        let keyword = instruction.keyword.to_ascii_uppercase();
        let add = keyword == "ADD";
        let (flags, rest) = split_flags(&instruction.rest);
        let env = st.state.expansion_env();
        let (mut from, mut chown, mut chmod) = (None, None, None);
        for (name, value) in &flags {
            let value = || {
                value
                    .as_deref()
                    .map(|v| expand_word(v, &env))
                    .transpose()?
                    .ok_or_else(|| anyhow!("{keyword} --{name} needs a value"))
            };
            match name.as_str() {
                "from" if !add => from = Some(value()?),
                "chown" => chown = Some(value()?),
                "chmod" => {
                    let text = value()?;
                    let bits = u32::from_str_radix(&text, 8)
                        .ok()
                        .filter(|b| *b <= 0o7777)
                        .ok_or_else(|| {
                            anyhow!("invalid chmod parameter {text:?}: an octal mode")
                        })?;
                    chmod = Some(bits);
                }
                // --link only changes how BuildKit stacks the layer.
                "link" => {}
                other => bail!("{keyword} --{other} is not supported by strata build"),
            }
        }
        let words = match parse_json_form(rest)? {
            Some(words) => words,
            None => split_words(rest),
        };
        let mut words = (words.iter())
            .map(|w| expand_word(w, &env))
            .collect::<Result<Vec<_>, _>>()?;
        if words.len() < 2 {
            bail!(
                "{keyword} requires at least two arguments, but only {} provided",
                words.len()
            );
        }
        let dest = words.pop().expect("two words or more");
        let into_dir = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
        let dest = match dest.starts_with('/') {
            true => dest,
            false => format!(
                "{}/{dest}",
                st.state.config.working_dir.trim_end_matches('/')
            ),
        };
        let dest = crate::build::pattern::clean_relative(&dest)
            .map(|d| format!("/{d}"))
            .unwrap_or_else(|| "/".to_string());
        let (urls, paths): (Vec<String>, Vec<String>) =
            words.iter().cloned().partition(|w| fetch::is_url(w));
        if !add && !urls.is_empty() {
            bail!("COPY failed: source can't be a URL for COPY");
        }

        let mut packer = Packer::new(&self.tmp(), chmod)?;
        let (count, single_file) = match &from {
            Some(from) => self.pack_from_image(&mut packer, from, &words)?,
            None => {
                let sources = match paths.is_empty() {
                    true => Vec::new(),
                    false => self.context.sources(&keyword, &paths)?,
                };
                for url in &urls {
                    packer.add_fetched(fetch::fetch(url, &self.tmp())?)?;
                }
                let mut archives = 0;
                for source in &sources {
                    // Opened only as a regular file: a fifo would wait
                    // for a writer.
                    let archive = add && source.is_file;
                    match archive
                        .then(|| add_kind(self.context.reopen(source)?.open()?, &source.rel))
                        .transpose()?
                    {
                        Some(AddKind::Tar(tar)) => {
                            packer.add_tar(tar, false, false)?;
                            archives += 1;
                        }
                        _ => packer.add_source(&self.context, source)?,
                    }
                }
                let single = match (sources.as_slice(), urls.len()) {
                    ([one], 0) => !one.is_dir && archives == 0,
                    ([], 1) => true,
                    _ => false,
                };
                (sources.len() + urls.len(), single)
            }
        };
        if count > 1 && !into_dir {
            bail!("When using {keyword} with more than one source file, the destination must be a directory and end with a /");
        }
        let one_file = single_file && !into_dir;
        let (tar, fingerprint) = packer.finish()?;
        let what = match (single_file, count) {
            (true, _) => "file",
            (false, 1) => "dir",
            _ => "multi",
        };
        let owner = chown
            .as_deref()
            .map(|c| format!("--chown={c} "))
            .unwrap_or_default();
        let created_by =
            format!("/bin/sh -c #(nop) {keyword} {owner}{what}:{fingerprint} in {dest} ");
        st.image = self.cached_or(st, created_by, |created_by| {
            self.in_container(&st.image, &[], &true_command(), true, |container| {
                let owner = chown.as_deref();
                self.copy_in(container, tar, owner, one_file, &dest, st, created_by)
            })
        })?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_in(
        &self,
        container: &str,
        tar: File,
        owner: Option<&str>,
        one_file: bool,
        dest: &str,
        st: &StageState,
        created_by: String,
    ) -> Result<Digest> {
        self.say(&format!(" ---> Running in {}", &container[..12]))?;
        let mut cmd = self.strata();
        cmd.arg("__copy-in");
        if let Some(owner) = owner {
            cmd.arg(format!("--owner={owner}"));
        }
        if one_file {
            cmd.arg("--one-file");
        }
        let status = cmd
            .args(["--", container, dest])
            .stdin(tar)
            .status()
            .context("starting strata __copy-in")?;
        if !status.success() {
            return Err(ExitCode(status.code().unwrap_or(125)).into());
        }
        self.commit(container, st, created_by)
    }

    /// `COPY --from`: each path out of a container of the stage or image
    /// (`strata cp CONTAINER:PATH -`), a directory's contents or a file.
    /// Returns the number of sources and whether it is one file.
    fn pack_from_image(
        &mut self,
        packer: &mut Packer,
        from: &str,
        paths: &[String],
    ) -> Result<(usize, bool)> {
        let image = match self.plan.stage_named(from) {
            Some(stage) => self.results[stage].ok_or_else(|| {
                anyhow!("COPY --from={from}: that stage is not built before this one")
            })?,
            None => self.image(from)?,
        };
        self.in_container(&image, &[], &true_command(), false, |container| {
            let mut single_file = false;
            for path in paths {
                if crate::build::pattern::has_wildcards(path) {
                    bail!("COPY --from={from} {path}: wildcards are not supported with --from");
                }
                let path = format!("/{}", path.trim_start_matches('/'));
                let mut tar = tempfile::tempfile_in(self.tmp())?;
                let status = self
                    .strata()
                    // A link at the path is followed, inside the
                    // image's tree, as docker's COPY --from follows it.
                    .args(["cp", "-q", "-L", &format!("{container}:{path}"), "-"])
                    .stdout(tar.try_clone()?)
                    .status()
                    .context("starting strata cp")?;
                if !status.success() {
                    return Err(ExitCode(status.code().unwrap_or(125)).into());
                }
                tar.rewind()?;
                let is_dir = {
                    let mut archive = layerdb::bounded_tar::Archive::new(&mut tar);
                    let first = archive.entries()?.next().transpose()?;
                    first.is_some_and(|e| e.header().entry_type().is_dir())
                };
                tar.rewind()?;
                packer.add_tar(&mut tar, is_dir, true)?;
                single_file = paths.len() == 1 && !is_dir;
            }
            Ok((paths.len(), single_file))
        })
    }

    /// `--label`s: a last step on the final image.
    fn labels(&mut self, image: &Digest, labels: &[(String, String)]) -> Result<Digest> {
        let config = self.image_config(image)?;
        let mut st = StageState {
            image: *image,
            state: State::new(config.config.clone()),
            author: config.author,
        };
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let instruction = Instruction {
            line: 0,
            keyword: "label".to_string(),
            rest: text.join(" "),
        };
        self.step_line(&instruction)?;
        self.instruction(&mut st, &instruction)?;
        self.say(&format!(" ---> {}", short(&st.image)))?;
        Ok(st.image)
    }

    /// `work` done with a container of `image` made to run `cmd`, which is
    /// removed after, whatever `work` did (docker's `Removing
    /// intermediate container` said when `say` and it succeeded).
    fn in_container<T>(
        &self,
        image: &Digest,
        env: &[String],
        cmd: &[String],
        say: bool,
        work: impl FnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        let container = self.create(image, env, cmd)?;
        let done = work(&container);
        self.remove(&container, say && done.is_ok())?;
        done
    }

    /// A container of `image` made to run `cmd` (`strata create`): no
    /// health check, no log file, no volumes for the image's VOLUMEs (what
    /// a step writes there stays in its layer, as with BuildKit), the
    /// image's entrypoint set aside, the build args in its environment.
    /// Returns its id.
    fn create(&self, image: &Digest, env: &[String], cmd: &[String]) -> Result<String> {
        let dir = self.ctx.scratch_dir("build")?;
        let cidfile = dir.path().join("cid");
        let mut create = self.strata();
        create
            .arg("create")
            .arg("--cidfile")
            .arg(&cidfile)
            .args(["--pull", "never", "--no-healthcheck", "--no-image-volumes"])
            .args(["--log-driver", "none"])
            .arg(format!("--label={STEP_LABEL}={}", std::process::id()))
            .args(["--entrypoint", "", "--network", &self.args.network]);
        // The values go in a file only this user reads, not on the
        // command line, which every user of the host can read in /proc:
        // `--build-arg TOKEN` (from the environment) is how a secret is
        // kept off one. Entries end with NUL bytes (`--env-file0`): a
        // value may hold a line break, which docker's env file format
        // cannot (such a value went on the command line until session 43).
        if !env.is_empty() {
            let env_file = dir.path().join("env");
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&env_file)
                .context("writing the build args' file")?;
            for entry in env {
                file.write_all(entry.as_bytes())?;
                file.write_all(b"\0")?;
            }
            create.arg("--env-file0").arg(&env_file);
        }
        let out = create
            .arg(format!("{image:#}"))
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .context("starting strata create")?;
        if !out.status.success() {
            std::io::stderr().write_all(&out.stderr)?;
            return Err(ExitCode(out.status.code().unwrap_or(125)).into());
        }
        std::fs::read_to_string(&cidfile).context("reading the build container's id")
    }

    /// Removes a step's container and its anonymous volumes; `say`s so
    /// as docker does (a step's that succeeded).
    fn remove(&self, container: &str, say: bool) -> Result<()> {
        if !self.args.rm && !self.args.force_rm {
            return Ok(());
        }
        if !self.rm(container)? {
            bail!("removing the intermediate container {container} failed");
        }
        if say {
            self.say(&format!(
                "Removing intermediate container {}",
                &container[..12]
            ))?;
        }
        Ok(())
    }

    /// What a stopped step container changed, as the step's image.
    fn commit(&self, container: &str, st: &StageState, created_by: String) -> Result<Digest> {
        let ingest = Ingest::begin(&self.ctx.root)?;
        let store = Arc::new(self.ctx.reader()?);
        let rec = liveness::container(&store, container)?;
        let image = super::commit::image_of(&store, &rec)?;
        let layer = super::commit::container_layer(&store, &ingest, &rec, &image)?;
        drop(store);
        self.step_image(st, created_by, Some((ingest, layer)))
    }

    /// Removes the step containers of builds that are gone: a build killed
    /// (kill -9) leaves its step's container, stopped or still running its
    /// RUN, which docker's classic builder leaves too; the next build takes
    /// them away. (A pid used again keeps a container, never the reverse.)
    fn remove_orphaned_steps(&self) -> Result<()> {
        let store = self.ctx.reader()?;
        let orphans: Vec<String> = (liveness::containers(&store)?.into_iter())
            .filter(|rec| {
                let pid = rec
                    .config
                    .labels
                    .get(STEP_LABEL)
                    .and_then(|p| p.parse().ok());
                pid.is_some_and(|pid| !liveness::process_alive(pid))
            })
            .map(|rec| rec.id)
            .collect();
        drop(store);
        for id in orphans {
            if !self.rm(&id)? {
                bail!("removing the step container {id} of a build that was killed failed");
            }
        }
        Ok(())
    }

    /// `strata rm -f -v CONTAINER`: whether it succeeded.
    fn rm(&self, container: &str) -> Result<bool> {
        let status = self
            .strata()
            .args(["rm", "-f", "-v", container])
            .stdout(Stdio::null())
            .status()
            .context("starting strata rm")?;
        Ok(status.success())
    }

    /// The store's tmp/, for the build's temporary files.
    fn tmp(&self) -> PathBuf {
        self.ctx.root.join("tmp")
    }

    fn strata(&self) -> Command {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("--root").arg(&self.ctx.root);
        cmd
    }
}

/// The label of a build's step containers: the pid of the build. Set
/// only by `create --label` (a container never takes it from its image,
/// see `run::run_config`).
pub(super) const STEP_LABEL: &str = "org.strata.build-step";

/// What a container made only to hold a copy would run: never started.
fn true_command() -> [String; 1] {
    ["true".to_string()]
}

/// An instruction's error, with the line it is on (docker's prefix) and
/// the instruction shortened: a line of hundreds of KB made the error as
/// long (found by a review).
fn on_line(e: anyhow::Error, instruction: &Instruction) -> anyhow::Error {
    if e.downcast_ref::<ExitCode>().is_some() {
        return e;
    }
    e.context(format!(
        "Dockerfile line {}: {}",
        instruction.line,
        crate::truncate::ellipsis(&instruction.text(), 200)
    ))
}
