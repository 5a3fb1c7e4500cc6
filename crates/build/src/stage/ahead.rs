//! A registry base's listing read at FROM, beside the context work of the stage's COPY and
//! ADD lines: both are needed only when the first instruction that needs the stage's tree
//! runs, so a cold build pays the longer of the two, not their sum.

use super::{Executor, Stage};
use crate::base;
use dockless_dockerfile::{Command, Instruction};
use dockless_oci::digest::Digest;

impl Executor<'_> {
    /// Lists the stage's registry base on another thread while this one resolves and walks
    /// the context sources of the stage's COPY and ADD lines, when this machine (or a shared
    /// cache) has no listing of some base layer and the first instruction that needs the
    /// tree is a COPY, ADD or WORKDIR (a RUN first needs the base's blobs, not its listing).
    /// A listing that fails here is reported by that instruction, at its own line, as without
    /// this (and not tried again: a registry that timed out is not waited for twice).
    pub(super) fn list_ahead<'i>(
        &self,
        stage: &mut Stage,
        instructions: impl Iterator<Item = &'i Instruction> + Clone,
    ) {
        if stage.filesystem.complete
            || stage.remote_base.is_none()
            || !first_need_is_files(instructions.clone())
            // Adopts a shared cache's listing, as the instruction would.
            || stage.layers.iter().all(|l| self.listing_known(&l.digest))
        {
            return;
        }
        let layers: Vec<(Digest, String)> = stage
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.media_type.clone()))
            .collect();
        let sources = instructions
            .filter_map(context_sources)
            .flatten()
            .map(String::as_str);
        let (store, remote, reference) = (self.store, self.remote, stage.remote_base.as_ref());
        let started = std::time::Instant::now();
        let listed = std::thread::scope(|scope| {
            let listing = scope.spawn(|| base::load_filesystem(store, remote, reference, &layers));
            self.prefetched.prefetch(self.context, sources);
            listing.join()
        });
        tracing::info!(elapsed = ?started.elapsed(), "base listed beside the walk of the context's sources");
        match listed {
            Ok(Ok(known)) => stage.filesystem = known,
            Ok(Err(error)) => stage.listing_failure = Some(error),
            Err(_) => tracing::debug!(
                "the listing thread stopped; the first instruction reads the base again"
            ),
        }
    }
}

/// Whether the first of `instructions` that needs the stage's tree is a COPY, ADD or WORKDIR.
fn first_need_is_files<'i>(mut instructions: impl Iterator<Item = &'i Instruction>) -> bool {
    instructions
        .find_map(|instruction| match &instruction.command {
            Command::Run(_) => Some(false),
            Command::Copy(_) | Command::Add(_) | Command::Workdir(_) => Some(true),
            _ => None,
        })
        .unwrap_or(false)
}

/// The build context's sources an instruction names, as written.
fn context_sources(instruction: &Instruction) -> Option<&[String]> {
    match &instruction.command {
        Command::Copy(copy) if copy.from.is_none() && copy.inline.is_empty() => Some(&copy.sources),
        Command::Add(add) if add.inline.is_empty() => Some(&add.sources),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_listed_ahead_only_when_files_need_its_tree_before_any_run() {
        let parse = |text: &str| dockless_dockerfile::parse(text).unwrap().instructions;
        let need = |text: &str| first_need_is_files(parse(text)[1..].iter());
        assert!(need("FROM b\nENV A=1\nWORKDIR /app\nRUN true\n"));
        assert!(need("FROM b\nCOPY . /app\n"));
        assert!(!need("FROM b\nRUN true\nCOPY . /app\n"));
        assert!(!need("FROM b\nCMD [\"sh\"]\n"));
        let instructions =
            parse("FROM b\nCOPY a b/ /x/\nCOPY --from=s /y /y\nCOPY <<EOF /z\nz\nEOF\nADD c /c\n");
        let sources: Vec<&str> = instructions
            .iter()
            .filter_map(context_sources)
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(sources, ["a", "b/", "c"]);
    }
}
