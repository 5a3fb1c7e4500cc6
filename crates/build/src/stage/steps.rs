//! Steps as BuildKit shows them: each FROM, RUN, COPY, ADD and WORKDIR of a stage is step k of
//! the stage's n (`[2/7] RUN …`, `[builder 2/7] RUN …` when there are several stages), reported
//! to the build's progress listener as it starts and ends.

use std::collections::HashMap;

use super::Executor;
use crate::progress::Step;
use dockless_dockerfile::{Command, Instruction};

/// The instructions BuildKit shows as steps (the others only change the config).
fn is_step(command: &Command) -> bool {
    matches!(
        command,
        Command::From(_)
            | Command::Run(_)
            | Command::Copy(_)
            | Command::Add(_)
            | Command::Workdir(_)
    )
}

/// Each step's name, by the line its instruction starts on.
pub(super) fn step_names(instructions: &[Instruction]) -> HashMap<usize, String> {
    let stage_count = instructions
        .iter()
        .filter(|i| matches!(i.command, Command::From(_)))
        .count();
    let mut names = HashMap::new();
    let mut stage: Vec<&Instruction> = Vec::new();
    let mut index = 0;
    let mut flush = |stage: &mut Vec<&Instruction>, index: usize| {
        let Some(Command::From(from)) = stage.first().map(|i| &i.command) else {
            return;
        };
        let prefix = match (&from.stage_name, stage_count) {
            (_, 0 | 1) => String::new(),
            (Some(name), _) => format!("{name} "),
            (None, _) => format!("stage-{index} "),
        };
        let total = stage.len();
        for (k, instruction) in stage.drain(..).enumerate() {
            let name = format!("[{prefix}{}/{total}] {}", k + 1, instruction.text);
            names.insert(instruction.line, name);
        }
    };
    for instruction in instructions.iter().filter(|i| is_step(&i.command)) {
        if matches!(instruction.command, Command::From(_)) && !stage.is_empty() {
            flush(&mut stage, index);
            index += 1;
        }
        stage.push(instruction);
    }
    flush(&mut stage, index);
    names
}

impl Executor<'_> {
    /// Runs `apply` as the step of `instruction` (when it is one): started before, ended after
    /// (done, cached or failed).
    pub(super) fn as_step<T, E>(
        &self,
        instruction: &Instruction,
        apply: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(name) = self.step_names.get(&instruction.line) else {
            return apply();
        };
        let step = self.options.progress.start(name);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(step.clone());
        let result = apply();
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        step.end(result.is_ok());
        result
    }

    /// The image `--build-context` gives for `name` (a FROM's image or a `--from=`), if any.
    pub(super) fn named_context(&self, name: &str) -> Option<&str> {
        let contexts = &self.options.named_contexts;
        contexts
            .get(name)
            .or_else(|| contexts.get(&name.to_lowercase()))
            .map(String::as_str)
    }

    /// The step under way, if it is shown.
    pub(super) fn current_step(&self) -> Option<Step> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        let instructions = dockless_dockerfile::parse(text).unwrap().instructions;
        let names = step_names(&instructions);
        let mut lines: Vec<_> = names.into_iter().collect();
        lines.sort();
        lines.into_iter().map(|(_, name)| name).collect()
    }

    #[test]
    fn steps_are_counted_per_stage_as_buildkit_counts_them() {
        assert_eq!(
            names("FROM scratch\nENV A=1\nCOPY a /a\nRUN true\n"),
            ["[1/3] FROM scratch", "[2/3] COPY a /a", "[3/3] RUN true"]
        );
        assert_eq!(
            names("FROM scratch AS build\nRUN make\nFROM scratch\nCOPY --from=build /x /x\n"),
            [
                "[build 1/2] FROM scratch AS build",
                "[build 2/2] RUN make",
                "[stage-1 1/2] FROM scratch",
                "[stage-1 2/2] COPY --from=build /x /x"
            ]
        );
    }
}
