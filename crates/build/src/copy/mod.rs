//! COPY and ADD: from sources in the context (or a URL, or a local archive) to layer entries.

use std::fs;

use tempfile::TempDir;

mod entries;
mod prefetch;
mod url;

use entries::EntrySet;
pub(crate) use prefetch::Prefetched;
pub use url::Downloads;
use url::{fetch_url, is_git_source, is_url, staging_dir, url_file_name};

use super::filesystem::{KnownFilesystem, TooManyLinks};
use dockless_context::Context;
use dockless_context::item_meta::ItemMeta;
use dockless_context::pattern::has_glob_meta;
use dockless_context::source::{SourceError, Walked};
use dockless_layer::archive::{self, ArchiveError};
use dockless_layer::cache::Stamps;
use dockless_layer::{Entry, EntryKind};
use dockless_oci::digest::Digest;
use dockless_oci::fs_error::{FsError, IoContext};
use dockless_oci::store::{Store, StoreError};

/// One COPY or ADD, with every word already expanded.
#[derive(Debug, Clone)]
pub(crate) struct CopyRequest<'a> {
    pub sources: &'a [String],
    pub dest: &'a str,
    /// The working directory that a relative `dest` is relative to (absolute).
    pub workdir: &'a str,
    pub owner: Option<(u64, u64)>,
    pub chmod: Option<u32>,
    /// ADD: extract local archives and fetch URLs.
    pub add: bool,
    /// ADD `--unpack`: `None` unpacks archives from the context and not downloads, as
    /// BuildKit's default; `Some` decides for both.
    pub unpack: Option<bool>,
    /// ADD --checksum for a URL source.
    pub checksum: Option<Digest>,
    /// `--exclude`: paths inside a source directory (relative to it) that are left out.
    pub exclude: Option<&'a dockless_context::ignore::IgnoreRules>,
    /// `--parents`: each source keeps its path below the context root (or a `/./` pivot).
    pub parents: bool,
    /// Whose the sources' files are when `owner` (`--chown`) does not say.
    pub source_owners: SourceOwners<'a>,
    /// Sources of this context resolved and walked ahead, if any.
    pub prefetched: Option<&'a Prefetched>,
}

/// Whose a COPY's files are without `--chown`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SourceOwners<'a> {
    /// Root's: the build context's files (and ADD's), as Docker gives them.
    Root,
    /// Their own: the tree of a stage or an image (`COPY --from`) at `root`, its owners on
    /// disk (kept there in the sandbox's range `ids` when the tree is, as root), or, when it
    /// was unpacked without root, `recorded` by path (root's where absent).
    Tree {
        root: &'a std::path::Path,
        recorded: Option<&'a std::collections::HashMap<String, (u64, u64)>>,
        ids: Option<dockless_sandbox::owners::IdRange>,
    },
}

/// The entries of a COPY layer, and the staging directory that holds fetched or extracted
/// files until the layer is written.
#[derive(Debug)]
pub(crate) struct CopyPlan {
    pub entries: Vec<Entry>,
    pub staging: Option<TempDir>,
    /// Identities of the context files, taken during the walk, for the layer cache: one per
    /// entry, index for index.
    pub stamps: Stamps,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{url}: {message}")]
    Download { url: String, message: String },
    #[error("{url}: checksum mismatch: expected {expected}, the download is {actual}")]
    Checksum {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("--checksum is only for ADD with a URL source")]
    ChecksumWithoutUrl,
    #[error(transparent)]
    Links(#[from] TooManyLinks),
    #[error(
        "the copy needs a directory at /{path}, but the image has a {found} there; choose another destination"
    )]
    NotADirectory { path: String, found: &'static str },
    #[error(
        "ADD {reference}: a git repository, which dockless does not clone; clone it into the build \
         context (or a --build-context) and COPY it"
    )]
    GitSource { reference: String },
}

/// Turns a COPY/ADD into entries for one layer.
pub(crate) fn plan_copy(
    context: &Context,
    known: &KnownFilesystem,
    store: &Store,
    request: &CopyRequest<'_>,
    downloads: Option<Downloads<'_>>,
) -> Result<CopyPlan, CopyError> {
    // The destination is looked up through the image's symlinks, the last component included,
    // as BuildKit's copy does: `COPY f /tmp` with `/tmp -> /private/tmp` writes
    // `/private/tmp/f`, and the layer holds the real path.
    let dest = absolute_dest(request.workdir, request.dest);
    let dest = if known.complete {
        known.resolve(&dest)?
    } else {
        dest
    };
    let dest_says_dir = request.dest.ends_with('/')
        || request.dest.ends_with("/.")
        || request.dest == "."
        || request.dest.is_empty();

    let (local, urls) = resolve_sources(context, request)?;
    // BuildKit copies each source on its own into `dest`: a directory's content goes into it
    // (making it a directory), a file goes inside it if it is a directory by then, else
    // becomes it, so several files into a path without a trailing slash overwrite each other.
    let files = local.iter().filter(|m| !m.meta.is_dir()).count() + urls.len();
    if files > 1 && !dest_says_dir && !known.is_dir(&dest) && !request.parents {
        warn_each_replaces(files, request.dest);
    }
    if request.checksum.is_some() && urls.is_empty() {
        return Err(CopyError::ChecksumWithoutUrl);
    }
    let mut dest_is_dir = dest_says_dir || known.is_dir(&dest);
    let mut builder = EntrySet::new(request.owner, request.chmod, request.source_owners);
    let mut staging: Option<TempDir> = None;

    for matched in &local {
        if request.parents {
            add_with_parents(&mut builder, context, request, &dest, matched)?;
        } else if matched.meta.is_dir() {
            builder.ensure_dir(&dest);
            builder.add_walked(
                &dest,
                matched,
                &walk_without_excluded(context, matched, request)?,
            )?;
            dest_is_dir = true;
        } else if !add_archive(&mut builder, &mut staging, store, request, &dest, matched)? {
            let name = matched.rel.rsplit('/').next().unwrap_or(&matched.rel);
            let target = if dest_is_dir {
                join(&dest, name)
            } else {
                dest.clone()
            };
            builder.add_from_disk(&target, &matched.abs, &matched.meta)?;
        }
    }
    for url in urls {
        add_url(
            &mut builder,
            &mut staging,
            store,
            request,
            (&dest, dest_is_dir),
            url,
            downloads,
        )?;
    }

    let finished = builder.finish(known)?;
    Ok(CopyPlan {
        entries: finished.entries,
        staging,
        stamps: finished.stamps,
    })
}

/// The context items the sources name (a wildcard that matches nothing adds nothing, as
/// BuildKit's AllowEmptyWildcard; a plain path must exist), and ADD's URLs.
fn resolve_sources<'r>(
    context: &Context,
    request: &CopyRequest<'r>,
) -> Result<(Vec<dockless_context::source::Matched>, Vec<&'r str>), CopyError> {
    let mut local = Vec::new();
    let mut urls = Vec::new();
    for source in request.sources {
        if request.add && is_git_source(source) {
            return Err(CopyError::GitSource {
                reference: source.clone(),
            });
        }
        if request.add && is_url(source) {
            urls.push(source.as_str());
            continue;
        }
        let resolved = match request.prefetched {
            Some(prefetched) => prefetched.resolve(context, source),
            None => context.resolve(source),
        };
        match resolved {
            Ok(matched) => local.extend(matched),
            Err(SourceError::NotFound(_) | SourceError::NotInTree(_)) if has_glob_meta(source) => {
                tracing::info!("COPY source '{source}' matches nothing in the context");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((local, urls))
}

/// ADD of a local archive: its entries unpacked into `dest`. False when `matched` is no archive
/// (or this is COPY).
fn add_archive(
    builder: &mut EntrySet,
    staging: &mut Option<TempDir>,
    store: &Store,
    request: &CopyRequest<'_>,
    dest: &str,
    matched: &dockless_context::source::Matched,
) -> Result<bool, CopyError> {
    if !(request.add && request.unpack != Some(false) && matched.meta.is_file()) {
        return Ok(false);
    }
    unpack_into(builder, staging, store, dest, &matched.abs)
}

/// The entries of the archive at `path` unpacked into `dest`. False when it is no archive.
fn unpack_into(
    builder: &mut EntrySet,
    staging: &mut Option<TempDir>,
    store: &Store,
    dest: &str,
    path: &std::path::Path,
) -> Result<bool, CopyError> {
    let Some(compression) = archive::detect_archive(path)? else {
        return Ok(false);
    };
    let stage = staging_dir(staging, store)?;
    let unpack_dir = tempfile::tempdir_in(&stage).with_path("create a directory in", &stage)?;
    let unpacked = archive::unpack(path, compression, unpack_dir.path())?;
    // The staged files live until the staging directory is dropped with the plan.
    let _ = unpack_dir.keep();
    builder.ensure_dir(dest);
    for entry in unpacked {
        builder.add_archive_entry(dest, entry);
    }
    Ok(true)
}

fn warn_each_replaces(files: usize, dest: &str) {
    tracing::warn!(
        "{files} files are copied to '{dest}', which does not end with /: as in Docker, each replaces the one before; end the destination with / to keep them all"
    );
}

/// ADD of `url` into `dest` (a directory when `dest_is_dir`): downloaded into the staging
/// directory, then unpacked there with `--unpack=true` when it is an archive, else added as a
/// file.
fn add_url(
    builder: &mut EntrySet,
    staging: &mut Option<TempDir>,
    store: &Store,
    request: &CopyRequest<'_>,
    (dest, dest_is_dir): (&str, bool),
    url: &str,
    downloads: Option<Downloads<'_>>,
) -> Result<(), CopyError> {
    let stage = staging_dir(staging, store)?;
    let fetched = fetch_url(url, &stage, request.checksum.as_ref(), downloads)?;
    if request.unpack == Some(true) && unpack_into(builder, staging, store, dest, &fetched)? {
        return Ok(());
    }
    let target = if dest_is_dir {
        join(dest, &url_file_name(url))
    } else {
        dest.to_owned()
    };
    add_download(builder, request, target, fetched)
}

/// A downloaded file at `target`: Docker gives it mode 0600 unless `--chmod`.
fn add_download(
    builder: &mut EntrySet,
    request: &CopyRequest<'_>,
    target: String,
    fetched: std::path::PathBuf,
) -> Result<(), CopyError> {
    let meta = fs::metadata(&fetched).with_path("read", &fetched)?;
    let owner = request.owner.unwrap_or((0, 0));
    builder.add(Entry {
        path: target,
        kind: EntryKind::File {
            source: fetched,
            size: meta.len(),
        },
        mode: request.chmod.unwrap_or(0o600),
        uid: owner.0,
        gid: owner.1,
        xattrs: Vec::new(),
    });
    Ok(())
}

/// What a source directory holds, less what `--exclude` leaves out (matched, as BuildKit's
/// copier does, against paths relative to that directory; a source named on the line is never
/// excluded itself).
fn walk_without_excluded(
    context: &Context,
    matched: &dockless_context::source::Matched,
    request: &CopyRequest<'_>,
) -> Result<Vec<Walked>, CopyError> {
    let mut walked = match request.prefetched {
        Some(prefetched) => prefetched.walk(context, matched)?,
        None => context.walk(matched)?,
    };
    if let Some(rules) = request.exclude {
        walked.retain(|w| !rules.is_excluded(&w.rel));
    }
    Ok(walked)
}

/// `COPY --parents`: the source lands at its own path under `dest` (below the `/./` pivot of
/// the source pattern, if it has one), each directory on the way taken from the context.
fn add_with_parents(
    builder: &mut EntrySet,
    context: &Context,
    request: &CopyRequest<'_>,
    dest: &str,
    matched: &dockless_context::source::Matched,
) -> Result<(), CopyError> {
    let pivot = request
        .sources
        .iter()
        .filter_map(|source| source.split_once("/./"))
        .map(|(pivot, _)| pivot.trim_start_matches("./").trim_matches('/'))
        .find(|pivot| matched.rel == *pivot || matched.rel.starts_with(&format!("{pivot}/")))
        .unwrap_or("");
    let kept = matched.rel[pivot.len()..].trim_start_matches('/');
    builder.ensure_dir(dest);
    let mut ancestor = String::new();
    for part in kept.split('/').filter(|p| !p.is_empty()) {
        ancestor = if ancestor.is_empty() {
            part.to_owned()
        } else {
            format!("{ancestor}/{part}")
        };
        // Found as the source was (links inside the context, or inside the tree), never by
        // the host's rules: a link on the way must not lead the read out of it.
        let on_disk = context.locate(&join(pivot, &ancestor))?;
        let meta = fs::symlink_metadata(&on_disk).with_path("read", &on_disk)?;
        if ancestor != kept {
            builder.add_from_disk(&join(dest, &ancestor), &on_disk, &ItemMeta::of(&meta))?;
        }
    }
    let target = join(dest, kept);
    builder.add_from_disk(&target, &matched.abs, &matched.meta)?;
    if matched.meta.is_dir() {
        builder.add_walked(
            &target,
            matched,
            &walk_without_excluded(context, matched, request)?,
        )?;
    }
    Ok(())
}

/// The destination as an absolute image path without the leading `/`, cleaned; `..` stops at
/// the root like it does in a container.
pub(crate) fn absolute_dest(workdir: &str, dest: &str) -> String {
    let full = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{workdir}/{dest}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => dir.to_owned(),
        _ => format!("{dir}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_resolved_against_the_workdir_and_clamped() {
        assert_eq!(absolute_dest("/app", "src/"), "app/src");
        assert_eq!(absolute_dest("/app", "/etc/x"), "etc/x");
        assert_eq!(absolute_dest("/", "../../x"), "x");
        assert_eq!(absolute_dest("/app", "."), "app");
    }

    #[test]
    fn url_file_names_follow_docker() {
        assert_eq!(url_file_name("https://h/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_file_name("https://h/dir/"), "dir");
        assert_eq!(url_file_name("https://h"), "index.html");
    }
}
