//! A Dockerfile read into build stages: the ARGs before the first FROM,
//! then each FROM with the instructions that follow it. Nothing is
//! expanded here: `$VAR` depends on what the build has set when it gets
//! to the instruction.

use crate::dockerfile::{logical_lines, split_flags, split_instruction, split_words};
use anyhow::{bail, Result};

/// The instructions a Dockerfile may hold (lowercase).
const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// One instruction as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// The line it starts on, for messages.
    pub line: usize,
    /// Lowercase.
    pub keyword: String,
    /// What follows the keyword, trimmed.
    pub rest: String,
}

impl Instruction {
    /// `KEYWORD rest`, as docker's `Step N/M :` line shows it.
    pub fn text(&self) -> String {
        format!("{} {}", self.keyword.to_ascii_uppercase(), self.rest)
    }

    /// One instruction from a line (an ONBUILD trigger's text).
    pub fn parse(line: usize, text: &str) -> Result<Instruction> {
        let (word, rest) = split_instruction(text);
        let keyword = word.to_ascii_lowercase();
        if !INSTRUCTIONS.contains(&keyword.as_str()) {
            bail!("dockerfile parse error on line {line}: unknown instruction: {word}");
        }
        Ok(Instruction {
            line,
            keyword,
            rest: rest.to_string(),
        })
    }
}

/// A FROM and what follows it.
#[derive(Debug)]
pub struct Stage {
    pub from: Instruction,
    /// The base as written (`busybox`, `$BASE`, `scratch`, an earlier
    /// stage's name).
    pub base: String,
    /// `AS name`, lowercase.
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug)]
pub struct Plan {
    /// The ARGs before the first FROM, which FROM lines may use.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

impl Plan {
    pub fn parse(text: &str) -> Result<Plan> {
        check_directives(text)?;
        let mut plan = Plan {
            global_args: Vec::new(),
            stages: Vec::new(),
        };
        for (line, text) in logical_lines(text) {
            let instruction = Instruction::parse(line, &text)?;
            if matches!(instruction.keyword.as_str(), "run" | "copy" | "add")
                && has_heredoc(&instruction.rest)
            {
                bail!("dockerfile parse error on line {line}: heredocs (<<EOF) are not supported by strata build");
            }
            match (instruction.keyword.as_str(), plan.stages.last_mut()) {
                ("from", _) => {
                    let stage = stage(instruction, &plan.stages)?;
                    plan.stages.push(stage);
                }
                ("arg", None) => plan.global_args.push(instruction),
                (_, None) => bail!(
                    "dockerfile parse error on line {line}: {} before the first FROM (only ARG may come first)",
                    instruction.keyword.to_ascii_uppercase()
                ),
                (_, Some(stage)) => stage.instructions.push(instruction),
            }
        }
        if plan.stages.is_empty() {
            bail!("the Dockerfile has no FROM: no build stage");
        }
        Ok(plan)
    }

    /// The stage a name (`AS` name, any case) or index refers to.
    pub fn stage_named(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(at) = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&lower))
        {
            return Some(at);
        }
        name.parse::<usize>()
            .ok()
            .filter(|&at| at < self.stages.len())
    }
}

/// Whether `rest` opens a heredoc (`<<EOF`, `<<-"EOF"`): BuildKit's,
/// whose body lines would otherwise read as instructions. `$((1<<2))`
/// is not one.
fn has_heredoc(rest: &str) -> bool {
    rest.match_indices("<<").any(|(at, _)| {
        let after = rest[at + 2..].trim_start_matches('-');
        let after = after.trim_start_matches(['"', '\'']);
        after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    })
}

/// `# escape=` and `# syntax=` lines at the top. Only the default escape
/// character is read.
fn check_directives(text: &str) -> Result<()> {
    for line in text.lines() {
        let Some(comment) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = comment.split_once('=') else {
            break;
        };
        if key.trim().eq_ignore_ascii_case("escape") && value.trim() != "\\" {
            bail!(
                "the Dockerfile's escape directive {:?} is not supported: strata reads \\ only",
                value.trim()
            );
        }
    }
    Ok(())
}

/// `FROM [--platform=P] image [AS name]`.
fn stage(from: Instruction, earlier: &[Stage]) -> Result<Stage> {
    let line = from.line;
    let (flags, rest) = split_flags(&from.rest);
    if let Some((flag, _)) = flags.iter().find(|(name, _)| name != "platform") {
        bail!("dockerfile parse error on line {line}: FROM: unknown flag: --{flag}");
    }
    let words = split_words(rest);
    let (base, name) = match words.as_slice() {
        [base] => (base.clone(), None),
        [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let name = name.to_ascii_lowercase();
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                bail!("dockerfile parse error on line {line}: invalid name for build stage: {name:?}, name can't start with a number or contain symbols");
            }
            if earlier.iter().any(|s| s.name.as_deref() == Some(&name)) {
                bail!("dockerfile parse error on line {line}: duplicate name {name:?}");
            }
            (base.clone(), Some(name))
        }
        [] => bail!("dockerfile parse error on line {line}: FROM requires one argument"),
        _ => bail!(
            "dockerfile parse error on line {line}: FROM requires either one or three arguments"
        ),
    };
    Ok(Stage {
        from,
        base,
        name,
        instructions: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_global_args() {
        let plan = Plan::parse(
            "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM $BASE AS build\nRUN echo \\\n  hi\n\nFROM scratch\n# a comment\nCOPY --from=build /x /x\n",
        )
        .unwrap();
        assert_eq!(plan.global_args.len(), 1);
        assert_eq!(plan.stages.len(), 2);
        assert_eq!(plan.stages[0].base, "$BASE");
        assert_eq!(plan.stages[0].name.as_deref(), Some("build"));
        assert_eq!(plan.stages[0].instructions[0].rest, "echo   hi");
        assert_eq!(plan.stages[1].instructions[0].line, 9);
        assert_eq!(plan.stage_named("BUILD"), Some(0));
        assert_eq!(plan.stage_named("1"), Some(1));
        assert_eq!(plan.stage_named("2"), None);
    }

    #[test]
    fn refusals_name_the_line() {
        let err = |text: &str| Plan::parse(text).unwrap_err().to_string();
        assert!(err("FROM a\nFOO bar\n").contains("line 2: unknown instruction: FOO"));
        assert!(err("RUN x\n").contains("before the first FROM"));
        assert!(err("# comment\n").contains("no FROM"));
        assert!(err("FROM a AS 1x\n").contains("invalid name"));
        assert!(err("FROM a AS x\nFROM b AS X\n").contains("duplicate name"));
        assert!(err("FROM a b\n").contains("one or three"));
        assert!(err("# escape=`\nFROM a\n").contains("escape"));
        assert!(err("FROM a\nRUN <<EOF\necho hi\nEOF\n").contains("heredocs"));
        assert!(Plan::parse("FROM a\nRUN echo $((1<<2))\n").is_ok());
    }
}
