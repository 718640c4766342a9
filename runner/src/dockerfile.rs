//! `commit -c` / `import -c`: Dockerfile instructions applied to an image's
//! run config, and the rules docker uses to build a committed image's config.
//!
//! docker joins the changes with newlines, parses them as a Dockerfile and
//! accepts only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME,
//! WORKDIR, HEALTHCHECK and STOPSIGNAL. ENV, LABEL, EXPOSE, USER, VOLUME,
//! WORKDIR and STOPSIGNAL see `$VAR` / `${VAR}` expanded from the config's
//! Env as it stands at that instruction, and shell quotes removed; CMD,
//! ENTRYPOINT and HEALTHCHECK keep their text (the shell expands it later).

use crate::environment;
use crate::humanize::parse_go_duration;
use crate::signal::Signal;
use layerdb::image::{Empty, RunConfig};
use serde_json::{json, Map, Value};
use std::fmt;

/// The instructions a change may use (lowercase; matching ignores case).
const CHANGE_COMMANDS: [&str; 11] = [
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The shell docker prepends to shell-form commands on Linux.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Why a change was refused. Display gives docker's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeError {
    /// An instruction outside the allowed set, as written (`RUN`).
    NotAChangeCommand(String),
    /// An allowed instruction with bad arguments.
    Invalid(String),
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::NotAChangeCommand(name) => {
                write!(f, "{name} is not a valid change command")
            }
            ChangeError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ChangeError {}

/// Refuses an ONBUILD trigger docker refuses, by its keyword: the
/// Dockerfile's own, and a base image's (which may come from anywhere).
pub fn check_trigger(keyword: &str) -> Result<(), String> {
    match keyword.to_ascii_uppercase().as_str() {
        "ONBUILD" => Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string()),
        upper @ ("FROM" | "MAINTAINER") => {
            Err(format!("{upper} isn't allowed as an ONBUILD trigger"))
        }
        _ => Ok(()),
    }
}

fn invalid(message: impl Into<String>) -> ChangeError {
    ChangeError::Invalid(message.into())
}

/// The config of a committed image: the container's config with `changes`
/// applied, then gaps filled from the container's config (docker's
/// `BuildFromConfig` followed by `merge`).
pub fn commit_config(container: &RunConfig, changes: &[String]) -> Result<RunConfig, ChangeError> {
    let mut config = apply_changes(container, changes)?;
    merge_defaults(&mut config, container);
    Ok(config)
}

/// The history `created_by` of a commit: the container's Cmd joined with
/// spaces (docker records the command, not the changes).
pub fn commit_created_by(container: &RunConfig) -> String {
    container.cmd.join(" ")
}

/// Applies `changes` in order to a copy of `config`. `import -c` starts from
/// an empty config; `commit -c` from the container's (see [`commit_config`]).
pub fn apply_changes(config: &RunConfig, changes: &[String]) -> Result<RunConfig, ChangeError> {
    let text = changes.join("\n");
    let instructions = logical_lines(&text);
    // docker checks every instruction's name before applying any.
    let mut parsed = Vec::with_capacity(instructions.len());
    for (_, line) in &instructions {
        let (name, rest) = split_instruction(line);
        let lower = name.to_ascii_lowercase();
        if !CHANGE_COMMANDS.contains(&lower.as_str()) {
            return Err(ChangeError::NotAChangeCommand(name.to_string()));
        }
        parsed.push((lower, rest));
    }
    let mut state = State::new(config.clone());
    for (name, rest) in parsed {
        state.dispatch(&name, rest)?;
    }
    Ok(state.config)
}

/// docker's `merge`: fill what the changed config leaves empty from
/// `defaults` (the container's config).
///
/// User, WorkingDir and StopSignal when empty; ExposedPorts, Volumes and
/// Labels unioned (the config's own values win); Env unioned by key; with no
/// Entrypoint an empty Cmd falls back to the default's Cmd; Healthcheck
/// fields that are unset are taken from the default's.
pub fn merge_defaults(config: &mut RunConfig, defaults: &RunConfig) {
    if config.user.is_empty() {
        config.user = defaults.user.clone();
    }
    for port in defaults.exposed_ports.keys() {
        config.exposed_ports.entry(port.clone()).or_default();
    }
    environment::add_missing(&mut config.env, &defaults.env);
    for (label, value) in &defaults.labels {
        config
            .labels
            .entry(label.clone())
            .or_insert_with(|| value.clone());
    }
    // docker also copies the default Entrypoint when the changed one is nil,
    // which an empty list cannot tell apart from `ENTRYPOINT []`; both start
    // from the same config, so keeping ours is equivalent.
    if config.entrypoint.is_empty() && config.cmd.is_empty() {
        config.cmd = defaults.cmd.clone();
    }
    merge_healthcheck(&mut config.healthcheck, defaults.healthcheck.as_ref());
    if config.working_dir.is_empty() {
        config.working_dir = defaults.working_dir.clone();
    }
    for volume in defaults.volumes.keys() {
        config.volumes.entry(volume.clone()).or_default();
    }
    if config.stop_signal.is_empty() {
        config.stop_signal = defaults.stop_signal.clone();
    }
}

fn merge_healthcheck(own: &mut Option<Value>, default: Option<&Value>) {
    let Some(default) = default else { return };
    let Some(own) = own.as_mut() else {
        *own = Some(default.clone());
        return;
    };
    let (Some(own), Some(default)) = (own.as_object_mut(), default.as_object()) else {
        return;
    };
    for (key, value) in default {
        let unset = match own.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => items.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(_) => false,
        };
        if unset {
            own.insert(key.clone(), value.clone());
        }
    }
}

/// Splits Dockerfile text into instructions, each with the number of the
/// line it starts on: blank lines and `#` comments dropped, lines ending
/// in `\\` joined with the next.
pub(crate) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if pending.is_empty() {
            start = n + 1;
        }
        let end = line.trim_end();
        if let Some(continued) = end.strip_suffix('\\') {
            pending.push_str(continued);
            continue;
        }
        pending.push_str(line);
        lines.push((start, std::mem::take(&mut pending)));
    }
    if !pending.trim().is_empty() {
        lines.push((start, pending));
    }
    lines
}

/// The instruction word and the trimmed rest of the line.
pub(crate) fn split_instruction(line: &str) -> (&str, &str) {
    let line = line.trim();
    match line.find(char::is_whitespace) {
        Some(at) => (&line[..at], line[at..].trim()),
        None => (line, ""),
    }
}

/// Leading `--name=value` (or `--name`) words, and what follows them.
pub(crate) fn split_flags(rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    let mut rest = rest.trim_start();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let word = &flag[..end];
        rest = flag[end..].trim_start();
        if word.is_empty() {
            break; // a bare `--` ends the flags
        }
        match word.split_once('=') {
            Some((name, value)) => flags.push((name.to_string(), Some(value.to_string()))),
            None => flags.push((word.to_string(), None)),
        }
    }
    (flags, rest)
}

fn refuse_flags(flags: &[(String, Option<String>)]) -> Result<(), ChangeError> {
    match flags.first() {
        Some((name, _)) => Err(invalid(format!("Unknown flag: {name}"))),
        None => Ok(()),
    }
}

/// A JSON array of strings (docker's exec form), `None` when `rest` is not
/// JSON (then it is shell form). Like Go's decoder, text after the array is
/// ignored.
pub(crate) fn parse_json_form(rest: &str) -> Result<Option<Vec<String>>, ChangeError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Vec<Value>>();
    let Some(Ok(items)) = stream.next() else {
        return Ok(None);
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s),
            _ => Err(invalid(
                "when using JSON array syntax, arrays must be comprised of strings only",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// CMD / ENTRYPOINT / RUN / HEALTHCHECK CMD arguments: exec form as given,
/// shell form as `shell` + `[rest]` (`["/bin/sh", "-c", rest]` unless a
/// Dockerfile's SHELL changed it). Nothing at all gives an empty list.
pub(crate) fn command_line(
    rest: &str,
    shell: &[String],
) -> Result<(Vec<String>, bool), ChangeError> {
    if let Some(args) = parse_json_form(rest)? {
        return Ok((args, true));
    }
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut args = shell.to_vec();
    args.push(rest.to_string());
    Ok((args, false))
}

/// The shell docker prepends to shell-form commands on Linux.
pub(crate) fn default_shell() -> Vec<String> {
    DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
}

/// Splits on whitespace outside quotes, keeping quotes and escapes in the
/// words (buildkit's `parseWords`; expansion removes them later).
pub(crate) fn split_words(rest: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            word.push(c);
            if let Some(next) = chars.next() {
                word.push(next);
            }
            continue;
        }
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                word.push(c);
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
/// `${VAR+word}` and `${VAR:?message}` from `env`, and removes quotes and
/// backslash escapes, as the Dockerfile shell lexer's `ProcessWord` does.
/// Whitespace is kept.
pub(crate) fn expand_word(word: &str, env: &[String]) -> Result<String, ChangeError> {
    expand_nested(word, env, 0)
}

/// Substitutions nested deeper than this are refused: each level held a
/// copy of the rest of the word, so a 120 KB `${a:-${a:-...}}` took 5.5
/// GB.
const MAX_NESTING: usize = 64;

/// The longest a word may expand to. Doubling a variable line by line
/// (`ENV A=$A$A`) made a 299-byte Dockerfile a 268 MB value; nothing
/// longer than 128 KiB can even reach a process (the kernel's limit on
/// one argument or variable).
const WORD_MAX: usize = 1 << 20;

/// The most bytes of variables (or of labels) a build or a commit's
/// changes may hold.
const ENVIRONMENT_MAX: usize = 16 << 20;

/// Refuses an environment past [`ENVIRONMENT_MAX`] bytes.
pub fn check_environment(env: &[String]) -> Result<(), ChangeError> {
    let bytes: usize = env.iter().map(|v| v.len() + 1).sum();
    match bytes > ENVIRONMENT_MAX {
        true => Err(invalid(format!(
            "the variables pass {} MiB",
            ENVIRONMENT_MAX >> 20
        ))),
        false => Ok(()),
    }
}

fn expand_nested(word: &str, env: &[String], depth: usize) -> Result<String, ChangeError> {
    if word.len() > WORD_MAX {
        return Err(invalid(format!("a word passes {} MiB", WORD_MAX >> 20)));
    }
    if depth > MAX_NESTING {
        return Err(invalid(format!(
            "variable substitutions nested more than {MAX_NESTING} deep"
        )));
    }
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
            }
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    out.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('"' | '$' | '\\')) => {
                            out.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' => {
                            let (value, next) = expand_variable(&chars, i, env, depth)?;
                            push_within(&mut out, &value)?;
                            i = next;
                        }
                        c => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '$' => {
                let (value, next) = expand_variable(&chars, i, env, depth)?;
                push_within(&mut out, &value)?;
                i = next;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `value` added to a word being expanded, which stays within [`WORD_MAX`].
fn push_within(out: &mut String, value: &str) -> Result<(), ChangeError> {
    if out.len() + value.len() > WORD_MAX {
        return Err(invalid(format!(
            "a word expands past {} MiB",
            WORD_MAX >> 20
        )));
    }
    out.push_str(value);
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the `$...` at `chars[at]`; returns the value and the index after.
fn expand_variable(
    chars: &[char],
    at: usize,
    env: &[String],
    nesting: usize,
) -> Result<(String, usize), ChangeError> {
    let mut i = at + 1;
    if chars.get(i) == Some(&'{') {
        i += 1;
        let start = i;
        while i < chars.len() && is_name_char(chars[i]) {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        let value = environment::lookup(env, &name);
        if chars.get(i) == Some(&'}') {
            return Ok((value.unwrap_or_default().to_string(), i + 1));
        }
        let colon = chars.get(i) == Some(&':');
        if colon {
            i += 1;
        }
        let Some(&operator) = chars.get(i) else {
            return Err(invalid(format!("missing '}}' in ${{{name}")));
        };
        i += 1;
        // The operand runs to the matching brace.
        let operand_start = i;
        let mut depth = 1;
        while i < chars.len() {
            match chars[i] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if i >= chars.len() {
            return Err(invalid(format!("missing '}}' in ${{{name}")));
        }
        let operand: String = chars[operand_start..i].iter().collect();
        let set = match value {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        let expanded = match operator {
            '-' if set => value.unwrap_or_default().to_string(),
            '-' => expand_nested(&operand, env, nesting + 1)?,
            '+' if set => expand_nested(&operand, env, nesting + 1)?,
            '+' => String::new(),
            '?' if set => value.unwrap_or_default().to_string(),
            '?' => {
                let message = expand_nested(&operand, env, nesting + 1)?;
                let message = if message.is_empty() {
                    "is not allowed to be unset".to_string()
                } else {
                    message
                };
                return Err(invalid(format!("{name}: {message}")));
            }
            other => {
                return Err(invalid(format!(
                    "unsupported modifier ({other}) in substitution"
                )))
            }
        };
        return Ok((expanded, i + 1));
    }
    let start = i;
    while i < chars.len() && is_name_char(chars[i]) {
        i += 1;
    }
    if i == start {
        return Ok(("$".to_string(), i));
    }
    let name: String = chars[start..i].iter().collect();
    Ok((
        environment::lookup(env, &name)
            .unwrap_or_default()
            .to_string(),
        i,
    ))
}

/// `k=v k2="v 2"` pairs, or the legacy `k v` form; keys and values expanded.
fn key_values(
    instruction: &str,
    rest: &str,
    env: &[String],
) -> Result<Vec<(String, String)>, ChangeError> {
    let words = split_words(rest);
    let Some(first) = words.first() else {
        return Err(invalid(format!(
            "{instruction} requires at least one argument"
        )));
    };
    let raw: Vec<(String, String)> = if !first.contains('=') {
        let Some((key, value)) = rest.split_once(char::is_whitespace) else {
            return Err(invalid(format!("{instruction} must have two arguments")));
        };
        vec![(key.to_string(), value.trim_start().to_string())]
    } else {
        words
            .iter()
            .map(|word| {
                word.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| {
                        invalid(format!(
                            "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let mut pairs = Vec::with_capacity(raw.len());
    for (key, value) in raw {
        let key = expand_word(&key, env)?;
        if key.is_empty() {
            return Err(invalid(format!("{instruction} names can not be blank")));
        }
        pairs.push((key, expand_word(&value, env)?));
    }
    Ok(pairs)
}

/// One argument: the whole rest, expanded.
fn single_argument(instruction: &str, rest: &str, env: &[String]) -> Result<String, ChangeError> {
    if rest.is_empty() {
        return Err(invalid(format!(
            "{instruction} requires exactly one argument"
        )));
    }
    expand_word(rest, env)
}

/// `WORKDIR`: absolute paths as given, relative ones joined to the current
/// directory and cleaned.
fn normalize_workdir(current: &str, requested: &str) -> String {
    if requested.starts_with('/') {
        return requested.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in current.split('/').chain(requested.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `EXPOSE` specs: `80`, `80/udp`, `8000-8002/tcp` -> `80/tcp`...
fn exposed_ports(spec: &str) -> Result<Vec<String>, ChangeError> {
    // A mapping (`ip:host:container`) exposes its container part.
    let spec = spec.rsplit(':').next().unwrap_or(spec);
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid proto: {proto}")));
    }
    let bad = || invalid(format!("invalid containerPort: {ports}"));
    let port = |text: &str| text.parse::<u16>().map_err(|_| bad());
    let (first, last) = match ports.split_once('-') {
        Some((first, last)) => (port(first)?, port(last)?),
        None => (port(ports)?, port(ports)?),
    };
    if last < first {
        return Err(bad());
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=..] [--timeout=..]
/// [--start-period=..] [--start-interval=..] [--retries=..] CMD command`,
/// as docker's HealthConfig JSON (durations in nanoseconds, zeros omitted).
fn healthcheck(rest: &str) -> Result<Value, ChangeError> {
    let (flags, rest) = split_flags(rest);
    let (kind, command) = match rest.find(char::is_whitespace) {
        Some(at) => (&rest[..at], rest[at..].trim_start()),
        None => (rest, ""),
    };
    if kind.is_empty() {
        return Err(invalid("HEALTHCHECK requires at least one argument"));
    }
    let kind = kind.to_ascii_uppercase();
    if kind == "NONE" {
        if !command.is_empty() {
            return Err(invalid("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(json!({ "Test": ["NONE"] }));
    }
    if kind != "CMD" {
        return Err(invalid(format!(
            "Unknown type {kind:?} in HEALTHCHECK (try CMD)"
        )));
    }
    let mut health = Map::new();
    let mut durations: Vec<(&str, i64)> = Vec::new();
    let mut retries = 0i64;
    for (name, value) in &flags {
        let value = value.clone().unwrap_or_default();
        let key = match name.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                retries = value
                    .parse::<i32>()
                    .map_err(|_| {
                        invalid(format!(
                            "strconv.ParseInt: parsing {value:?}: invalid syntax"
                        ))
                    })?
                    .into();
                if retries < 0 {
                    return Err(invalid(format!("--retries cannot be negative ({retries})")));
                }
                continue;
            }
            other => return Err(invalid(format!("Unknown flag: {other}"))),
        };
        if value.is_empty() {
            continue;
        }
        let nanos = parse_go_duration(&value)
            .ok_or_else(|| invalid(format!("time: invalid duration {value:?}")))?;
        if nanos != 0 && nanos < 1_000_000 {
            return Err(invalid(format!(
                "Interval {name:?} cannot be less than 1ms"
            )));
        }
        durations.push((key, nanos));
    }
    let (args, json_form) = command_line(command, &default_shell())?;
    let mut test = vec![if json_form { "CMD" } else { "CMD-SHELL" }.to_string()];
    if json_form {
        test.extend(args);
    } else {
        // CMD-SHELL carries the command line alone; the runtime adds the shell.
        test.extend(args.into_iter().skip(DEFAULT_SHELL.len()));
    }
    if test.len() == 1 {
        return Err(invalid("Missing command after HEALTHCHECK CMD"));
    }
    health.insert("Test".into(), json!(test));
    for (key, nanos) in durations {
        if nanos != 0 {
            health.insert(key.into(), json!(nanos));
        }
    }
    if retries != 0 {
        health.insert("Retries".into(), json!(retries));
    }
    Ok(Value::Object(health))
}

/// The config being changed, and whether a CMD has been given so far (an
/// ENTRYPOINT clears the Cmd unless one has). A build adds its ARG values,
/// which `$VAR` sees where no ENV of the same name hides them, and the
/// shell of SHELL.
pub(crate) struct State {
    pub config: RunConfig,
    pub cmd_set: bool,
    /// `KEY=VALUE` of the build arguments in scope.
    pub args: Vec<String>,
    pub shell: Vec<String>,
}

impl State {
    pub fn new(config: RunConfig) -> State {
        let shell = match config.shell.is_empty() {
            true => default_shell(),
            false => config.shell.clone(),
        };
        State {
            config,
            cmd_set: false,
            args: Vec::new(),
            shell,
        }
    }

    /// What `$VAR` expands from: the build arguments, then the config's
    /// Env, which wins.
    pub fn expansion_env(&self) -> Vec<String> {
        let mut env = self.args.clone();
        env.extend(self.config.env.iter().cloned());
        env
    }

    /// Applies one instruction that changes the config (`name` in
    /// lowercase).
    pub fn dispatch(&mut self, name: &str, rest: &str) -> Result<(), ChangeError> {
        if name == "healthcheck" {
            self.config.healthcheck = Some(healthcheck(rest)?);
            return Ok(());
        }
        let (flags, rest) = split_flags(rest);
        refuse_flags(&flags)?;
        let env = self.expansion_env();
        match name {
            "shell" => {
                let shell = parse_json_form(rest)?
                    .ok_or_else(|| invalid("SHELL requires the arguments to be in JSON form"))?;
                if shell.is_empty() {
                    return Err(invalid("SHELL requires at least one argument"));
                }
                self.config.shell = shell.clone();
                self.shell = shell;
            }
            "cmd" => {
                let (cmd, _) = command_line(rest, &self.shell)?;
                if !cmd.is_empty() {
                    self.cmd_set = true;
                }
                self.config.cmd = cmd;
            }
            "entrypoint" => {
                let (entrypoint, _) = command_line(rest, &self.shell)?;
                self.config.entrypoint = entrypoint;
                if !self.cmd_set {
                    self.config.cmd.clear();
                }
            }
            "env" => {
                for (key, value) in key_values("ENV", rest, &env)? {
                    environment::set(&mut self.config.env, format!("{key}={value}"));
                }
                check_environment(&self.config.env)?;
            }
            "label" => {
                for (key, value) in key_values("LABEL", rest, &env)? {
                    self.config.labels.insert(key, value);
                }
                let bytes: usize = self
                    .config
                    .labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum();
                if bytes > ENVIRONMENT_MAX {
                    return Err(invalid(format!(
                        "the labels pass {} MiB",
                        ENVIRONMENT_MAX >> 20
                    )));
                }
            }
            "expose" => {
                let words = split_words(rest);
                if words.is_empty() {
                    return Err(invalid("EXPOSE requires at least one argument"));
                }
                for word in words {
                    let expanded = expand_word(&word, &env)?;
                    for spec in expanded.split_whitespace() {
                        for port in exposed_ports(spec)? {
                            self.config.exposed_ports.insert(port, Empty::default());
                        }
                    }
                }
            }
            "user" => self.config.user = single_argument("USER", rest, &env)?,
            "workdir" => {
                let requested = single_argument("WORKDIR", rest, &env)?;
                if requested.is_empty() {
                    return Err(invalid("cannot normalize nothing"));
                }
                self.config.working_dir = normalize_workdir(&self.config.working_dir, &requested);
            }
            "stopsignal" => {
                let signal = single_argument("STOPSIGNAL", rest, &env)?;
                // Checked with `stop`'s own rule, so what commit records
                // stop can send; the text is kept as written, as docker does.
                signal
                    .parse::<Signal>()
                    .map_err(|e| invalid(e.to_string()))?;
                self.config.stop_signal = signal;
            }
            "volume" => {
                let volumes = match parse_json_form(rest)? {
                    Some(list) => list,
                    None => split_words(rest),
                };
                if volumes.is_empty() {
                    return Err(invalid("VOLUME requires at least one argument"));
                }
                for volume in volumes {
                    let volume = expand_word(volume.trim(), &env)?;
                    if volume.is_empty() {
                        return Err(invalid("VOLUME specified can not be an empty string"));
                    }
                    self.config.volumes.insert(volume, Empty::default());
                }
            }
            "onbuild" => {
                let (trigger, _) = split_instruction(rest);
                if trigger.is_empty() {
                    return Err(invalid("ONBUILD requires at least one argument"));
                }
                check_trigger(trigger).map_err(invalid)?;
                self.config.on_build.push(rest.to_string());
            }
            other => unreachable!("{other} passed the change-command check"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn apply(config: &RunConfig, changes: &[&str]) -> Result<RunConfig, ChangeError> {
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        apply_changes(config, &changes)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn ubuntu() -> RunConfig {
        RunConfig {
            env: strings(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
            cmd: strings(&["/bin/bash"]),
            ..RunConfig::default()
        }
    }

    fn error(changes: &[&str]) -> String {
        apply(&ubuntu(), changes).unwrap_err().to_string()
    }

    #[test]
    fn cmd_shell_form_runs_through_bin_sh() {
        let config = apply(&ubuntu(), &["CMD node app.js"]).unwrap();
        assert_eq!(config.cmd, strings(&["/bin/sh", "-c", "node app.js"]));
    }

    #[test]
    fn cmd_json_form_is_taken_as_given() {
        let config = apply(&ubuntu(), &[r#"CMD ["node", "app.js"]"#]).unwrap();
        assert_eq!(config.cmd, strings(&["node", "app.js"]));
    }

    #[test]
    fn cmd_with_malformed_json_is_shell_form() {
        let config = apply(&ubuntu(), &["CMD [node app.js]"]).unwrap();
        assert_eq!(config.cmd, strings(&["/bin/sh", "-c", "[node app.js]"]));
    }

    #[test]
    fn json_form_with_non_strings_is_refused() {
        assert_eq!(
            error(&["CMD [1, 2]"]),
            "when using JSON array syntax, arrays must be comprised of strings only"
        );
    }

    #[test]
    fn instruction_names_ignore_case() {
        let config = apply(&ubuntu(), &["cmd echo hi"]).unwrap();
        assert_eq!(config.cmd, strings(&["/bin/sh", "-c", "echo hi"]));
    }

    #[test]
    fn cmd_does_not_expand_variables() {
        let config = apply(&ubuntu(), &["CMD echo $HOME"]).unwrap();
        assert_eq!(config.cmd[2], "echo $HOME");
    }

    #[test]
    fn entrypoint_clears_the_cmd_unless_a_cmd_came_first() {
        let config = apply(&ubuntu(), &[r#"ENTRYPOINT ["node"]"#]).unwrap();
        assert_eq!(config.entrypoint, strings(&["node"]));
        assert!(config.cmd.is_empty());

        let config = apply(&ubuntu(), &[r#"CMD ["app.js"]"#, r#"ENTRYPOINT ["node"]"#]).unwrap();
        assert_eq!(config.cmd, strings(&["app.js"]));
    }

    #[test]
    fn entrypoint_shell_form_runs_through_bin_sh() {
        let config = apply(&ubuntu(), &["ENTRYPOINT exec node"]).unwrap();
        assert_eq!(config.entrypoint, strings(&["/bin/sh", "-c", "exec node"]));
    }

    #[test]
    fn env_sets_pairs_with_quotes_removed() {
        let config = apply(&ubuntu(), &[r#"ENV k=v k2="v 2" k3='a b' k4=x\ y"#]).unwrap();
        assert_eq!(
            config.env[1..],
            strings(&["k=v", "k2=v 2", "k3=a b", "k4=x y"])
        );
    }

    #[test]
    fn env_legacy_form_takes_the_rest_of_the_line_as_value() {
        let config = apply(&ubuntu(), &["ENV GREETING hello big world"]).unwrap();
        assert_eq!(config.env[1], "GREETING=hello big world");
    }

    #[test]
    fn env_replaces_an_existing_key_in_place() {
        let config = apply(&ubuntu(), &["ENV PATH=/opt/bin:$PATH"]).unwrap();
        assert_eq!(
            config.env,
            strings(&[
                "PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ])
        );
    }

    /// What a Dockerfile (or a base image's triggers) may make expansion
    /// hold: nesting quadratic in the word, doubling exponential in the
    /// lines. Each is refused at its bound.
    #[test]
    fn expansion_is_bounded_in_nesting_length_and_total() {
        let nested = |n: usize| "${a:-".repeat(n) + "x" + &"}".repeat(n);
        assert_eq!(expand_word(&nested(64), &[]).unwrap(), "x");
        let err = expand_word(&nested(20_000), &[]).unwrap_err();
        assert!(err.to_string().contains("nested more than 64"), "{err}");
        let mut doubling = vec!["ENV A=0123456789abcdef".to_string()];
        doubling.extend(std::iter::repeat_n("ENV A=$A$A".to_string(), 20));
        let lines: Vec<&str> = doubling.iter().map(String::as_str).collect();
        let err = apply(&ubuntu(), &lines).unwrap_err();
        assert!(err.to_string().contains("expands past 1 MiB"), "{err}");
        let mut many = vec!["ENV A=0123456789abcdef".to_string()];
        many.extend(std::iter::repeat_n("ENV A=$A$A".to_string(), 15));
        many.extend((0..40).map(|i| format!("ENV B{i}=$A")));
        let lines: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = apply(&ubuntu(), &lines).unwrap_err();
        assert!(err.to_string().contains("variables pass 16 MiB"), "{err}");
        let labels: Vec<String> = many[..16]
            .iter()
            .cloned()
            .chain((0..40).map(|i| format!("LABEL l{i}=$A")))
            .collect();
        let lines: Vec<&str> = labels.iter().map(String::as_str).collect();
        let err = apply(&ubuntu(), &lines).unwrap_err();
        assert!(err.to_string().contains("labels pass 16 MiB"), "{err}");
    }

    #[test]
    fn env_expands_from_earlier_changes_and_braces() {
        let config = apply(
            &ubuntu(),
            &[
                "ENV A=1",
                "ENV B=${A}2 C=${UNSET:-dflt} D=${A:+set} E='$A' F=\"$A\"",
            ],
        )
        .unwrap();
        assert_eq!(
            config.env[2..],
            strings(&["B=12", "C=dflt", "D=set", "E=$A", "F=1"])
        );
    }

    #[test]
    fn a_key_given_twice_reads_and_is_replaced_as_the_process_sees_it() {
        // The process gets the last A (see `environment`): so do `$A` and ENV.
        let twice = RunConfig {
            env: strings(&["A=1", "A=2"]),
            ..RunConfig::default()
        };
        let config = apply(&twice, &["LABEL seen=$A", "ENV B=${A}0"]).unwrap();
        assert_eq!(config.labels["seen"], "2");
        assert_eq!(crate::environment::lookup(&config.env, "B"), Some("20"));
        let config = apply(&twice, &["ENV A=3"]).unwrap();
        assert_eq!(crate::environment::lookup(&config.env, "A"), Some("3"));
    }

    #[test]
    fn env_errors_match_docker() {
        assert_eq!(error(&["ENV"]), "ENV requires at least one argument");
        assert_eq!(error(&["ENV lonely"]), "ENV must have two arguments");
        assert_eq!(
            error(&["ENV a=1 b"]),
            "Syntax error - can't find = in \"b\". Must be of the form: name=value"
        );
        assert_eq!(error(&["ENV =x"]), "ENV names can not be blank");
    }

    #[test]
    fn label_sets_labels_in_both_forms() {
        let config = apply(
            &ubuntu(),
            &[
                r#"LABEL version=1.0 "org.example.name"="my app""#,
                "LABEL legacy some value",
            ],
        )
        .unwrap();
        let expected: BTreeMap<String, String> = [
            ("version", "1.0"),
            ("org.example.name", "my app"),
            ("legacy", "some value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(config.labels, expected);
    }

    #[test]
    fn expose_adds_ports_with_default_tcp_and_ranges() {
        let config = apply(&ubuntu(), &["EXPOSE 80 53/UDP 8000-8002"]).unwrap();
        let ports: Vec<&str> = config.exposed_ports.keys().map(String::as_str).collect();
        assert_eq!(
            ports,
            vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
    }

    #[test]
    fn expose_expands_one_variable_into_several_ports() {
        let config = apply(&ubuntu(), &["ENV PORTS=\"80 443\"", "EXPOSE $PORTS"]).unwrap();
        assert_eq!(config.exposed_ports.len(), 2);
        assert!(config.exposed_ports.contains_key("443/tcp"));
    }

    #[test]
    fn expose_refuses_bad_ports() {
        assert_eq!(error(&["EXPOSE"]), "EXPOSE requires at least one argument");
        assert_eq!(error(&["EXPOSE http"]), "invalid containerPort: http");
        assert_eq!(error(&["EXPOSE 80/icmp"]), "invalid proto: icmp");
        assert_eq!(error(&["EXPOSE 70000"]), "invalid containerPort: 70000");
    }

    #[test]
    fn onbuild_records_the_trigger_text() {
        let config = apply(&ubuntu(), &["ONBUILD RUN echo hi", "ONBUILD COPY . /app"]).unwrap();
        assert_eq!(config.on_build, strings(&["RUN echo hi", "COPY . /app"]));
    }

    #[test]
    fn onbuild_refuses_chaining_from_and_maintainer() {
        assert_eq!(
            error(&["ONBUILD"]),
            "ONBUILD requires at least one argument"
        );
        assert_eq!(
            error(&["ONBUILD ONBUILD RUN x"]),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        assert_eq!(
            error(&["ONBUILD from ubuntu"]),
            "FROM isn't allowed as an ONBUILD trigger"
        );
    }

    #[test]
    fn user_takes_the_whole_argument_expanded() {
        let config = apply(&ubuntu(), &["ENV U=1000", "USER $U:1000"]).unwrap();
        assert_eq!(config.user, "1000:1000");
        assert_eq!(error(&["USER"]), "USER requires exactly one argument");
    }

    #[test]
    fn volume_accepts_json_and_space_separated_lists() {
        let config = apply(&ubuntu(), &[r#"VOLUME ["/data", "/logs"]"#, "VOLUME /a /b"]).unwrap();
        let volumes: Vec<&str> = config.volumes.keys().map(String::as_str).collect();
        assert_eq!(volumes, vec!["/a", "/b", "/data", "/logs"]);
        assert_eq!(error(&["VOLUME"]), "VOLUME requires at least one argument");
        assert_eq!(
            error(&[r#"VOLUME [""]"#]),
            "VOLUME specified can not be an empty string"
        );
    }

    #[test]
    fn workdir_joins_relative_paths_to_the_current_one() {
        let config = apply(&ubuntu(), &["WORKDIR /app", "WORKDIR src/../lib"]).unwrap();
        assert_eq!(config.working_dir, "/app/lib");
        let config = apply(&ubuntu(), &["WORKDIR rel"]).unwrap();
        assert_eq!(config.working_dir, "/rel");
        assert_eq!(error(&["WORKDIR"]), "WORKDIR requires exactly one argument");
    }

    #[test]
    fn stopsignal_accepts_names_and_numbers() {
        for signal in ["SIGTERM", "term", "9", "SIGRTMIN+3"] {
            let config = apply(&ubuntu(), &[&format!("STOPSIGNAL {signal}")]).unwrap();
            assert_eq!(config.stop_signal, signal);
        }
        assert_eq!(error(&["STOPSIGNAL SIGNOPE"]), "Invalid signal: SIGNOPE");
        assert_eq!(error(&["STOPSIGNAL 0"]), "Invalid signal: 0");
        assert_eq!(
            error(&["STOPSIGNAL"]),
            "STOPSIGNAL requires exactly one argument"
        );
    }

    #[test]
    fn healthcheck_shell_form_is_cmd_shell_with_durations_in_nanoseconds() {
        let config = apply(
            &ubuntu(),
            &["HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://localhost/"],
        )
        .unwrap();
        assert_eq!(
            config.healthcheck,
            Some(json!({
                "Test": ["CMD-SHELL", "curl -f http://localhost/"],
                "Interval": 30_000_000_000i64,
                "Timeout": 90_000_000_000i64,
                "Retries": 3,
            }))
        );
    }

    #[test]
    fn healthcheck_json_form_and_none() {
        let config = apply(&ubuntu(), &[r#"HEALTHCHECK CMD ["/bin/check", "-q"]"#]).unwrap();
        assert_eq!(
            config.healthcheck,
            Some(json!({ "Test": ["CMD", "/bin/check", "-q"] }))
        );
        let config = apply(&ubuntu(), &["HEALTHCHECK NONE"]).unwrap();
        assert_eq!(config.healthcheck, Some(json!({ "Test": ["NONE"] })));
    }

    #[test]
    fn healthcheck_errors_match_docker() {
        assert_eq!(
            error(&["HEALTHCHECK"]),
            "HEALTHCHECK requires at least one argument"
        );
        assert_eq!(
            error(&["HEALTHCHECK NONE x"]),
            "HEALTHCHECK NONE takes no arguments"
        );
        assert_eq!(
            error(&["HEALTHCHECK PING x"]),
            "Unknown type \"PING\" in HEALTHCHECK (try CMD)"
        );
        assert_eq!(
            error(&["HEALTHCHECK CMD"]),
            "Missing command after HEALTHCHECK CMD"
        );
        assert_eq!(
            error(&["HEALTHCHECK --retries=-1 CMD x"]),
            "--retries cannot be negative (-1)"
        );
        assert_eq!(
            error(&["HEALTHCHECK --interval=1us CMD x"]),
            "Interval \"interval\" cannot be less than 1ms"
        );
        assert_eq!(
            error(&["HEALTHCHECK --bogus=1 CMD x"]),
            "Unknown flag: bogus"
        );
    }

    #[test]
    fn other_instructions_are_not_valid_change_commands() {
        assert_eq!(
            error(&["RUN apt-get update"]),
            "RUN is not a valid change command"
        );
        assert_eq!(
            error(&["from ubuntu"]),
            "from is not a valid change command"
        );
        assert_eq!(
            apply(&ubuntu(), &["COPY . /app"]),
            Err(ChangeError::NotAChangeCommand("COPY".into()))
        );
    }

    #[test]
    fn no_change_is_applied_when_a_later_one_is_invalid() {
        assert!(apply(&ubuntu(), &["ENV A=1", "ADD x /"]).is_err());
    }

    #[test]
    fn flags_are_refused_where_docker_takes_none() {
        assert_eq!(error(&["CMD --foo=1 ls"]), "Unknown flag: foo");
    }

    #[test]
    fn changes_may_hold_several_lines_comments_and_continuations() {
        let config = apply(
            &ubuntu(),
            &["# a comment\nENV A=1 \\\n  B=2\n\nUSER nobody", ""],
        )
        .unwrap();
        assert_eq!(config.env[1..], strings(&["A=1", "B=2"]));
        assert_eq!(config.user, "nobody");
    }

    #[test]
    fn no_changes_leave_the_config_as_it_was() {
        assert_eq!(apply(&ubuntu(), &[]).unwrap(), ubuntu());
    }

    #[test]
    fn import_changes_start_from_an_empty_config() {
        let config = apply(&RunConfig::default(), &["CMD [\"/bin/sh\"]", "ENV A=$A-x"]).unwrap();
        assert_eq!(config.cmd, strings(&["/bin/sh"]));
        assert_eq!(config.env, strings(&["A=-x"]));
    }

    fn container() -> RunConfig {
        RunConfig {
            user: "1000".into(),
            env: strings(&["PATH=/bin", "RUNTIME=yes"]),
            cmd: strings(&["/bin/bash"]),
            working_dir: "/work".into(),
            stop_signal: "SIGINT".into(),
            labels: [("a".to_string(), "1".to_string())].into_iter().collect(),
            exposed_ports: [("80/tcp".to_string(), Empty::default())]
                .into_iter()
                .collect(),
            volumes: [("/data".to_string(), Empty::default())]
                .into_iter()
                .collect(),
            healthcheck: Some(json!({ "Test": ["CMD-SHELL", "true"], "Interval": 5 })),
            ..RunConfig::default()
        }
    }

    fn commit(changes: &[&str]) -> RunConfig {
        commit_config(&container(), &strings(changes)).unwrap()
    }

    #[test]
    fn commit_keeps_run_time_settings_of_the_container() {
        let config = commit(&["CMD node app.js"]);
        assert_eq!(config.user, "1000");
        assert_eq!(config.working_dir, "/work");
        assert_eq!(config.env, strings(&["PATH=/bin", "RUNTIME=yes"]));
        assert_eq!(config.cmd, strings(&["/bin/sh", "-c", "node app.js"]));
        assert_eq!(config.stop_signal, "SIGINT");
    }

    #[test]
    fn commit_cmd_falls_back_to_the_containers_when_entrypoint_is_empty() {
        assert_eq!(commit(&["CMD []"]).cmd, strings(&["/bin/bash"]));
        let config = commit(&["ENTRYPOINT []"]);
        assert!(config.entrypoint.is_empty());
        assert_eq!(config.cmd, strings(&["/bin/bash"]));
    }

    #[test]
    fn commit_cmd_stays_cleared_when_an_entrypoint_is_set() {
        let config = commit(&[r#"ENTRYPOINT ["node"]"#]);
        assert_eq!(config.entrypoint, strings(&["node"]));
        assert!(config.cmd.is_empty());
    }

    #[test]
    fn commit_unions_labels_ports_volumes_with_changes_winning() {
        let config = commit(&["LABEL a=2 b=3", "EXPOSE 443", "VOLUME /logs"]);
        assert_eq!(config.labels["a"], "2");
        assert_eq!(config.labels["b"], "3");
        assert_eq!(config.exposed_ports.len(), 2);
        assert_eq!(config.volumes.len(), 2);
    }

    #[test]
    fn merge_fills_every_empty_field_from_the_defaults() {
        let mut config = RunConfig {
            env: strings(&["RUNTIME=no", "NEW=1"]),
            ..RunConfig::default()
        };
        merge_defaults(&mut config, &container());
        assert_eq!(config.user, "1000");
        assert_eq!(config.working_dir, "/work");
        assert_eq!(config.stop_signal, "SIGINT");
        assert_eq!(config.env, strings(&["RUNTIME=no", "NEW=1", "PATH=/bin"]));
        assert_eq!(config.cmd, strings(&["/bin/bash"]));
        assert_eq!(config.labels["a"], "1");
        assert!(config.exposed_ports.contains_key("80/tcp"));
        assert!(config.volumes.contains_key("/data"));
        assert_eq!(config.healthcheck, container().healthcheck);
    }

    #[test]
    fn merge_fills_unset_healthcheck_fields_only() {
        let mut config = RunConfig {
            healthcheck: Some(json!({ "Test": ["CMD", "check"], "Retries": 2 })),
            ..RunConfig::default()
        };
        merge_defaults(&mut config, &container());
        assert_eq!(
            config.healthcheck,
            Some(json!({ "Test": ["CMD", "check"], "Retries": 2, "Interval": 5 }))
        );
    }

    #[test]
    fn commit_created_by_is_the_containers_cmd_joined() {
        assert_eq!(commit_created_by(&container()), "/bin/bash");
        let config = RunConfig {
            cmd: strings(&["/bin/sh", "-c", "node app.js"]),
            ..RunConfig::default()
        };
        assert_eq!(commit_created_by(&config), "/bin/sh -c node app.js");
    }
}
