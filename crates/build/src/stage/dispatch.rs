//! Where instructions are dispatched: [`Executor::dispatch`] is the one place an instruction's
//! error gets the Dockerfile's path and line, and a [`StageExecutor`] carries one stage through
//! its instructions, handing each to its family.

use std::collections::{BTreeMap, BTreeSet};

use super::error::StepError;
use super::{Executor, Stage, lookup};
use crate::BuildError;
use dockless_dockerfile::{Command, Instruction};

/// Why a handler stopped: a [`StepError`], which [`Executor::dispatch`] locates at the
/// instruction it dispatched, or a [`BuildError`] that already names its place (a layer an
/// earlier line planned, written now).
#[derive(Debug)]
pub(super) enum Failure {
    Step(StepError),
    Located(BuildError),
}

impl<E: Into<StepError>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Step(error.into())
    }
}

impl From<BuildError> for Failure {
    fn from(error: BuildError) -> Self {
        Failure::Located(error)
    }
}

impl Executor<'_> {
    /// Applies `instruction` with `apply` (as a step of the progress, when it is one) and puts
    /// the Dockerfile's path and the instruction's line on the error `apply` returns.
    pub(super) fn dispatch<T>(
        &self,
        instruction: &Instruction,
        apply: impl FnOnce() -> Result<T, Failure>,
    ) -> Result<T, BuildError> {
        self.as_step(instruction, apply)
            .map_err(|failure| match failure {
                Failure::Step(source) => BuildError::Instruction {
                    file: self.dockerfile.to_owned(),
                    line: instruction.line,
                    source,
                },
                Failure::Located(error) => error,
            })
    }
}

/// One stage under way: its state, and what it may read of the build around it.
pub(super) struct StageExecutor<'e, 'a> {
    pub(super) build: &'e Executor<'a>,
    pub(super) stage: Stage,
    /// The stages before it, for `FROM <stage>`, `COPY --from` and `RUN --mount=…,from=`.
    pub(super) done: &'e [Stage],
    /// ARGs before the first FROM, whose values an ARG without a default takes.
    pub(super) global_args: &'e BTreeMap<String, Option<String>>,
    /// Build arguments some ARG declared (the others are reported unused).
    pub(super) used_args: &'e mut BTreeSet<String>,
}

impl<'e, 'a> StageExecutor<'e, 'a> {
    /// Dispatches one instruction of the stage after its FROM.
    pub(super) fn dispatch(&mut self, instruction: &Instruction) -> Result<(), BuildError> {
        let build = self.build;
        build.dispatch(instruction, || self.apply(instruction))
    }

    /// Expands `instruction` with the stage's ENV and ARGs, hands it to its family, and
    /// records it in the image's history (as an empty layer unless it made one).
    fn apply(&mut self, instruction: &Instruction) -> Result<(), Failure> {
        let expanded = {
            let env = &self.stage.config.config;
            let args = &self.stage.args;
            self.build.expand(instruction, &|name| {
                env.env_value(name)
                    .map(str::to_owned)
                    .or_else(|| lookup(args, name))
            })?
        };
        let layers_before = self.stage.layer_count();
        match expanded {
            Command::From(_) => unreachable!("FROM starts a new stage before this"),
            Command::Run(run) => self.run(instruction, run)?,
            Command::Copy(c) => self.copy(instruction.line, &c)?,
            Command::Add(a) => self.add(instruction.line, &a)?,
            Command::Workdir(dir) => self.workdir(instruction.line, &dir)?,
            Command::Arg(decls) => self.declare_args(decls),
            other => self.apply_metadata(other)?,
        }
        let empty_layer = self.stage.layer_count() == layers_before;
        let record = self.build.history(instruction, empty_layer);
        self.stage.config.history.push(record);
        Ok(())
    }
}
