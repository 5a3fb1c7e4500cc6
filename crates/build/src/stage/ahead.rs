//! A registry base's listing read at FROM, beside the context work of the stage's COPY and
//! ADD lines: both are needed only when the first instruction that needs the stage's tree
//! runs, so a cold build pays the longer of the two, not their sum.
//!
//! Further still, for a stage of files alone whose destinations a base is unlikely to hold
//! (`/app`, not `/usr/local/bin`): the stage is planned on the assumption that the base holds
//! nothing where the plan looks, its layers are written while the listing is read on a thread
//! of its own, and the assumption is checked once the listing is in. Inflating a base is a
//! core's work for a while (0.3 s for a 200 MB Debian base), which the layers' compression
//! then shares the machine with instead of waiting for. A wrong assumption (the base has
//! `/app`) starts the build again, now knowing the listing: the answers the build gives are
//! always the listing's.

use super::{Executor, Stage};
use crate::base::{self, BaseError};
use crate::filesystem::KnownFilesystem;
use dockless_dockerfile::{Command, Instruction};
use dockless_oci::digest::Digest;

/// The base's listing being read on its own thread.
pub(super) struct ListingAhead {
    thread: std::thread::JoinHandle<Result<KnownFilesystem, BaseError>>,
    /// The FROM line, where a listing that failed is reported when no instruction asked.
    from_line: usize,
}

/// Why the stage could not go on from its assumed file system.
pub(super) enum Unsettled {
    Listing(BaseError),
    /// A path the plan looked at, which the base holds.
    AssumedFree(String),
}

impl From<Unsettled> for super::StepError {
    fn from(unsettled: Unsettled) -> Self {
        match unsettled {
            Unsettled::Listing(error) => error.into(),
            Unsettled::AssumedFree(path) => super::StepError::AssumedFree { path },
        }
    }
}

/// Top-level directories of the usual base images (Debian, Ubuntu, Alpine, distroless and
/// the language images built on them): a destination below one is not assumed free.
const BASE_DIRS: &[&str] = &[
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt", "opt",
    "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var",
];

impl Executor<'_> {
    /// Lists the stage's registry base on another thread while this one resolves and walks
    /// the context sources of the stage's COPY and ADD lines, when this machine (or a shared
    /// cache) has no listing of some base layer and the first instruction that needs the
    /// tree is a COPY, ADD or WORKDIR (a RUN first needs the base's blobs, not its listing).
    /// A listing that fails here is reported by that instruction, at its own line, as without
    /// this (and not tried again: a registry that timed out is not waited for twice).
    ///
    /// When `may_assume` (the stage is the only one the build needs) and the stage is
    /// [`assumable`], the listing thread is left running and the stage goes on with a file
    /// system assumed empty ([`KnownFilesystem::assuming_empty_base`]), settled by
    /// [`Self::settle_listing`] when an instruction needs the base's own answers, or after
    /// the stage's layers are written.
    pub(super) fn list_ahead<'i>(
        &self,
        stage: &mut Stage,
        from_line: usize,
        instructions: impl Iterator<Item = &'i Instruction> + Clone,
        may_assume: bool,
    ) {
        if stage.filesystem.complete
            || stage.remote_base.is_none()
            || !first_need_is_files(instructions.clone())
            // Adopts a shared cache's listing, as the instruction would.
            || stage.layers.iter().all(|l| self.listing_known(&l.digest))
        {
            return;
        }
        let layers = stage.chain(false);
        let sources = instructions
            .clone()
            .filter_map(context_sources)
            .flatten()
            .map(String::as_str);
        let workdir = stage.workdir();
        if may_assume && assumable(instructions, &workdir) {
            match self.listing_thread(stage, layers.clone()) {
                Ok(thread) => {
                    tracing::info!(
                        "the stage is planned and written while its base is listed, assuming the base holds nothing where it looks"
                    );
                    stage.filesystem = KnownFilesystem::assuming_empty_base();
                    stage.listing_ahead = Some(ListingAhead { thread, from_line });
                    self.prefetched.prefetch(self.context, sources);
                    return;
                }
                Err(e) => tracing::debug!("the base is listed here: {e}"),
            }
        }
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

    /// A thread reading the listing of the stage's registry base.
    fn listing_thread(
        &self,
        stage: &Stage,
        layers: Vec<(Digest, String)>,
    ) -> std::io::Result<std::thread::JoinHandle<Result<KnownFilesystem, BaseError>>> {
        let reference = stage
            .remote_base
            .clone()
            .ok_or_else(|| std::io::Error::other("not a registry base"))?;
        let fetcher = self
            .remote
            .blob_fetcher(&reference)
            .map_err(std::io::Error::other)?;
        let store = self.store.clone();
        std::thread::Builder::new()
            .name("base-listing".into())
            .spawn(move || {
                base::load_filesystem_by(&store, Some(&fetcher), Some(&reference), &layers)
            })
    }

    /// Waits for a listing read ahead, if any, checks what the plan assumed against it, and
    /// gives the stage the listing's file system with the layers planned meanwhile on top:
    /// those still pending, which are all of them until the stage ends (a stage planned on
    /// assumptions runs no RUN and no `COPY --from`, which write layers sooner), and after
    /// that its file system is not read again.
    pub(super) fn settle_listing(&self, stage: &mut Stage) -> Result<(), Unsettled> {
        let Some(ahead) = stage.listing_ahead.take() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut known = match ahead.thread.join() {
            Ok(listed) => listed.map_err(Unsettled::Listing)?,
            // A thread that stopped short: the listing is read here, as without it.
            Err(_) => base::load_filesystem(
                self.store,
                self.remote,
                stage.remote_base.as_ref(),
                &stage.chain(true),
            )
            .map_err(Unsettled::Listing)?,
        };
        stage
            .filesystem
            .assumptions_hold(&known)
            .map_err(Unsettled::AssumedFree)?;
        for layer in &stage.pending {
            known.record(layer.entries());
        }
        stage.filesystem = known;
        tracing::info!(waited = ?started.elapsed(), "the base's listing is in, and holds nothing the plan assumed free");
        Ok(())
    }
}

impl Executor<'_> {
    /// [`Self::settle_listing`], a failure located at the stage's FROM line (where no
    /// instruction asked for the listing: the stage's end, or an error of its own).
    pub(super) fn settle_at_from(&self, stage: &mut Stage) -> Result<(), crate::BuildError> {
        let from_line = stage.listing_ahead.as_ref().map(|ahead| ahead.from_line);
        self.settle_listing(stage)
            .map_err(|unsettled| crate::BuildError::Instruction {
                file: self.dockerfile.to_owned(),
                line: from_line.unwrap_or_default(),
                source: unsettled.into(),
            })
    }

    /// `error`, unless the stage was planned on an assumption its base's listing, read ahead,
    /// proves wrong: then that. Only an error the tree gave is looked at so (a directory in
    /// the way, a loop of links); any other is the error whatever the base holds, and is not
    /// kept waiting for the listing.
    pub(super) fn unless_assumed_wrongly(
        &self,
        stage: &mut Stage,
        error: crate::BuildError,
    ) -> crate::BuildError {
        if !from_the_tree(&error) {
            return error;
        }
        match self.settle_at_from(stage) {
            Err(wrong) if wrong.is_wrong_assumption() => wrong,
            _ => error,
        }
    }
}

/// Whether `error` is one the image's tree gave (which the base's own may not).
fn from_the_tree(error: &crate::BuildError) -> bool {
    use super::StepError;
    use crate::copy::CopyError;
    match error {
        crate::BuildError::Instruction { source, .. } => match source {
            StepError::Links(_) => true,
            StepError::Copy(copy) => {
                matches!(
                    **copy,
                    CopyError::Links(_) | CopyError::NotADirectory { .. }
                )
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether a stage of `instructions` (its working directory `workdir` to start with) may be
/// planned before its base is listed: files alone (no RUN, no `COPY --from`), every WORKDIR
/// and destination spelt out (no variable) and below a directory a base is unlikely to hold.
fn assumable<'i>(instructions: impl Iterator<Item = &'i Instruction>, workdir: &str) -> bool {
    let mut workdir = crate::copy::absolute_dest("/", workdir);
    let unlikely_in_a_base = |path: &str| {
        let top = path.split('/').next().unwrap_or_default();
        !top.is_empty() && !BASE_DIRS.contains(&top)
    };
    for instruction in instructions {
        let dest = match &instruction.command {
            Command::Run(_) => return false,
            Command::Copy(copy) if copy.from.is_some() => return false,
            Command::Copy(copy) => &copy.dest,
            Command::Add(add) => &add.dest,
            Command::Workdir(dir) => {
                if dir.contains('$') {
                    return false;
                }
                workdir = crate::copy::absolute_dest(&format!("/{workdir}"), dir);
                if !unlikely_in_a_base(&workdir) {
                    return false;
                }
                continue;
            }
            _ => continue,
        };
        if dest.contains('$')
            || !unlikely_in_a_base(&crate::copy::absolute_dest(&format!("/{workdir}"), dest))
        {
            return false;
        }
    }
    true
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

    #[test]
    fn only_a_stage_of_files_below_unusual_directories_is_planned_on_assumptions() {
        let parse = |text: &str| dockless_dockerfile::parse(text).unwrap().instructions;
        let assumed = |text: &str, workdir: &str| assumable(parse(text)[1..].iter(), workdir);
        assert!(assumed(
            "FROM b\nWORKDIR /app\nCOPY . .\nENV A=1\nCMD [\"x\"]\n",
            "/"
        ));
        assert!(assumed(
            "FROM b\nCOPY a /app/\nADD b.tar /data/\nUSER 1\n",
            "/"
        ));
        assert!(assumed("FROM b\nCOPY a src/\n", "/workspace"));
        // A command, another stage's files, a variable, a directory every base has, the root.
        assert!(!assumed("FROM b\nCOPY a /app/\nRUN true\n", "/"));
        assert!(!assumed("FROM b\nCOPY --from=s a /app/\n", "/"));
        assert!(!assumed("FROM b\nCOPY a $DIR/\n", "/"));
        assert!(!assumed("FROM b\nWORKDIR $HOME\n", "/"));
        assert!(!assumed("FROM b\nCOPY a /usr/local/bin/\n", "/"));
        assert!(!assumed("FROM b\nWORKDIR /app\nCOPY a ../tmp/\n", "/"));
        assert!(!assumed("FROM b\nCOPY a .\n", "/"));
        assert!(!assumed("FROM b\nCOPY a .\n", "/usr/src/app"));
        assert!(!assumed("FROM b\nWORKDIR /home/user\n", "/"));
    }
}
