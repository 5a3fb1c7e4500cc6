//! Context sources resolved and walked ahead of the COPY or ADD that names them, while the
//! base's layers are fetched and listed on another thread (see `Executor::list_ahead`): a
//! cold build then pays the longer of the two, not both.
//!
//! Best effort only: a source that cannot be resolved or walked ahead is left for its
//! instruction, which resolves it again and reports any error exactly as without the prefetch.
//! Each result is used once and then forgotten, so a source named twice is read again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use dockless_context::Context;
use dockless_context::source::{Matched, SourceError, Walked};

use super::url::{is_git_source, is_url};

/// What was resolved (by source as written) and walked (by matched directory) ahead.
#[derive(Debug, Default)]
pub(crate) struct Prefetched {
    resolved: Mutex<HashMap<String, Vec<Matched>>>,
    walked: Mutex<HashMap<PathBuf, Vec<Walked>>>,
}

impl Prefetched {
    /// Resolves `sources` in `context` and walks the directories they match. Sources holding
    /// a variable (their value is known only at their instruction), URLs and git references
    /// are left alone.
    pub(crate) fn prefetch<'s>(&self, context: &Context, sources: impl Iterator<Item = &'s str>) {
        for source in sources {
            if source.contains('$') || is_url(source) || is_git_source(source) {
                continue;
            }
            let Ok(matched) = context.resolve(source) else {
                continue;
            };
            for dir in matched.iter().filter(|m| m.meta.is_dir()) {
                if let Ok(walked) = context.walk(dir) {
                    lock(&self.walked).insert(dir.abs.clone(), walked);
                }
            }
            lock(&self.resolved).insert(source.to_owned(), matched);
        }
    }

    /// What `source` names in `context`: resolved ahead, else now.
    pub(crate) fn resolve(
        &self,
        context: &Context,
        source: &str,
    ) -> Result<Vec<Matched>, SourceError> {
        match lock(&self.resolved).remove(source) {
            Some(matched) => Ok(matched),
            None => context.resolve(source),
        }
    }

    /// Everything below the matched directory `dir`: walked ahead, else now.
    pub(crate) fn walk(
        &self,
        context: &Context,
        dir: &Matched,
    ) -> Result<Vec<Walked>, SourceError> {
        match lock(&self.walked).remove(&dir.abs) {
            Some(walked) => Ok(walked),
            None => context.walk(dir),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_prefetched_source_is_used_once_and_then_read_again() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("app/lib")).unwrap();
        fs::write(dir.path().join("app/lib/a.js"), "a").unwrap();
        let context = Context::open(dir.path()).unwrap();
        let prefetched = Prefetched::default();
        prefetched.prefetch(&context, ["app", "missing", "$VAR"].into_iter());
        // Changed after the prefetch: the first use sees the tree as it was walked ahead...
        fs::write(dir.path().join("app/lib/b.js"), "b").unwrap();
        let matched = prefetched.resolve(&context, "app").unwrap();
        let rels = |walked: Vec<Walked>| walked.into_iter().map(|w| w.rel).collect::<Vec<_>>();
        assert_eq!(
            rels(prefetched.walk(&context, &matched[0]).unwrap()),
            ["lib", "lib/a.js"]
        );
        // ...and the next one reads the context again.
        let matched = prefetched.resolve(&context, "app").unwrap();
        assert_eq!(
            rels(prefetched.walk(&context, &matched[0]).unwrap()),
            ["lib", "lib/a.js", "lib/b.js"]
        );
        // A source that failed ahead fails at its instruction with its own error.
        assert!(matches!(
            prefetched.resolve(&context, "missing"),
            Err(SourceError::NotFound(_))
        ));
    }
}
