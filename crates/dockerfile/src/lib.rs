//! Dockerfile parsing and variable expansion, matching BuildKit's Dockerfile frontend.
//!
//! [`parse`] turns text into typed instructions, keeping words raw (quotes, escapes and `$VAR`
//! as written). [`Command::expand`] then applies Docker's word processing to the fields Docker
//! expands, with the variables in scope at that instruction. Both are pure: no I/O.
//!
//! ```
//! use dockless_dockerfile::{parse, Command};
//!
//! let dockerfile = parse("FROM alpine\nENV DIR=/app\nWORKDIR $DIR/src\n").unwrap();
//! let workdir = &dockerfile.instructions[2];
//! let vars = |name: &str| (name == "DIR").then(|| "/app".to_string());
//! let expanded = workdir.command.expand(dockerfile.escape, &vars).unwrap();
//! assert_eq!(expanded, Command::Workdir("/app/src".to_string()));
//! ```
//!
//! May use: oci.

mod args;
mod ast;
mod copy;
mod directives;
mod error;
mod expand;
mod flags;
mod healthcheck;
mod heredoc;
mod instruction;
mod lex;
mod lines;
mod mount;
mod pattern;
mod run_flags;
mod split;

// Go's durations, also what `dockless prune --filter until=` takes.
pub use ast::{
    Add, ArgDecl, Command, CommandLine, Copy, Dockerfile, From, Healthcheck, Instruction, KeyValue,
    Run,
};
pub use error::{ExpandError, ParseError};
pub use heredoc::{Heredoc, parse_word as heredoc_word};
pub use lex::{expand_word, expand_words};
pub use mount::{MountError, MountFlag, MountKind, MountProblem, RunMount, Sharing};
pub use run_flags::{RunFlags, RunNetwork, Security};

/// Parses a Dockerfile. Errors carry the line where the faulty instruction starts.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let physical = lines::physical_lines(text);
    let escape = directives::escape_character(&physical)?;
    let mut instructions = Vec::new();
    for logical in lines::logical_lines(&physical, escape)? {
        instructions.push(instruction_of(logical, escape)?);
    }
    check_stages(&instructions, physical.len())?;
    Ok(Dockerfile {
        instructions,
        escape,
        syntax: directives::syntax(&physical),
    })
}

/// One logical line as an instruction, with the heredocs it opened.
fn instruction_of(logical: lines::LogicalLine, escape: char) -> Result<Instruction, ParseError> {
    let command = instruction::parse_command(&logical.text, escape)
        .and_then(|command| heredoc::attach(command, logical.heredocs))
        .map_err(|message| ParseError::new(logical.start, message))?;
    Ok(Instruction {
        line: logical.start,
        text: logical.text.trim().to_string(),
        command,
    })
}

/// Parses one ONBUILD trigger (as an image config or an ONBUILD line stores it, heredoc
/// bodies included) into the instruction it runs; `line` is the FROM line that runs it.
pub fn parse_trigger(trigger: &str, line: usize) -> Result<Instruction, String> {
    let physical = lines::physical_lines(trigger);
    let logical = lines::logical_lines(&physical, '\\').map_err(|e| e.message)?;
    let [logical] = <[lines::LogicalLine; 1]>::try_from(logical)
        .map_err(|_| "a trigger is exactly one instruction".to_string())?;
    let command = instruction_of(logical, '\\')
        .map_err(|e| e.message)?
        .command;
    if matches!(
        command,
        Command::From(_) | Command::Onbuild(_) | Command::Maintainer(_)
    ) {
        return Err(format!(
            "{} isn't allowed as an ONBUILD trigger",
            command.keyword()
        ));
    }
    Ok(Instruction {
        line,
        text: trigger
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        command,
    })
}

/// A build needs a FROM, and only ARG may come before the first one.
fn check_stages(instructions: &[Instruction], line_count: usize) -> Result<(), ParseError> {
    let first_not_arg = instructions
        .iter()
        .find(|instruction| !matches!(instruction.command, Command::Arg(_)));
    match first_not_arg {
        Some(Instruction {
            command: Command::From(_),
            ..
        }) => Ok(()),
        Some(instruction) => Err(ParseError::new(
            instruction.line,
            format!(
                "{} comes before the first FROM: only ARG may come before FROM",
                instruction.command.keyword()
            ),
        )),
        None => Err(ParseError::new(
            line_count.max(1),
            "the Dockerfile has no FROM instruction: a build starts with FROM <image>",
        )),
    }
}

#[cfg(test)]
mod tests;
