//! Resolving COPY/ADD sources inside the context: globs, top-level symlinks, directory walks.
//!
//! Every path read here is inside the context's canonical root: `..` that would leave it is an
//! error, a symlink named in a source (as its last component or as a directory on the way) is
//! followed only when its target stays inside, and symlinks found while walking a directory are
//! never followed (they are copied as symlinks). Special files
//! (FIFOs, sockets, devices) are reported by type and never opened, so nothing here can block.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::item_meta::ItemMeta;
use super::pattern::{self, PatternError};
use super::{Context, Links};
use dockless_oci::fs_error::{FsError, IoContext};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source '{0}' points outside the build context; sources must be paths inside it")]
    OutsideContext(String),
    #[error("source '{source_path}' is a symlink to {target}, which is outside the build context")]
    SymlinkEscapes { source_path: String, target: String },
    #[error(
        "source '{source_path}' goes through the symlink '{link}' to {target}, which is outside the build context; copy from inside the context"
    )]
    ParentSymlinkEscapes {
        source_path: String,
        link: String,
        target: String,
    },
    #[error("source '{0}' goes through more than {MAX_SYMLINK_HOPS} symlinks (a loop?)")]
    SymlinkLoop(String),
    #[error(
        "source '{0}' was not found in the build context (check the path, and that .dockerignore does not exclude it)"
    )]
    NotFound(String),
    #[error(
        "source '{0}' was not found in that file system (its paths start at its root, and its links are followed inside it)"
    )]
    NotInTree(String),
    #[error("source '{source_path}' is not a valid pattern: {error}")]
    BadPattern {
        source_path: String,
        error: PatternError,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A source as matched at the top level (after following a top-level symlink).
#[derive(Debug, Clone)]
pub struct Matched {
    /// The path as matched, relative to the context root (`""` for the root itself).
    pub rel: String,
    /// Absolute path of what it resolves to.
    pub abs: PathBuf,
    /// Metadata of what it resolves to (the followed target for a top-level symlink).
    pub meta: ItemMeta,
}

/// An item found below a matched directory. A walk holds one per file, so its absolute path is
/// not kept: it is the matched directory's joined with `rel` ([`Walked::abs`]).
#[derive(Debug, Clone)]
pub struct Walked {
    /// Path relative to the matched directory.
    pub rel: String,
    /// Metadata of the item itself (symlinks are not followed).
    pub meta: ItemMeta,
}

impl Walked {
    /// The item's absolute path, given the directory it was walked from.
    pub fn abs(&self, dir: &Matched) -> PathBuf {
        dir.abs.join(&self.rel)
    }
}

impl Context {
    /// Expands one source (which may hold glob characters) into the items it names, in order.
    pub fn resolve(&self, source: &str) -> Result<Vec<Matched>, SourceError> {
        let rel = match self.links() {
            Links::Context => {
                clean_relative(source).ok_or_else(|| SourceError::OutsideContext(source.into()))?
            }
            // BuildKit joins the source to `/` first: `..` stops at the root.
            Links::InsideRoot => clean_inside_root(source),
        };
        let candidates = if pattern::has_glob_meta(&rel) {
            self.expand_glob(source, &rel)?
        } else {
            vec![rel]
        };
        let mut matched = Vec::new();
        for rel in candidates {
            if !rel.is_empty() && self.ignore().is_excluded(&rel) {
                continue;
            }
            // The kernel would follow a symlinked directory on the way anywhere, even out of
            // the context: resolve those here, inside the root, and open only the result.
            let inside = self.resolve_within(source, &rel, false)?;
            if inside != rel && !inside.is_empty() && self.ignore().is_excluded(&inside) {
                continue;
            }
            let abs = if inside.is_empty() {
                self.root().to_owned()
            } else {
                self.root().join(&inside)
            };
            let meta = match fs::symlink_metadata(&abs) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(FsError {
                        action: "read",
                        path: abs,
                        source: e,
                    }
                    .into());
                }
            };
            if meta.file_type().is_symlink() && self.links() == Links::InsideRoot {
                matched.push(self.follow_inside_root(source, rel)?);
            } else if meta.file_type().is_symlink() {
                matched.push(self.follow_top_level(source, &rel, &abs)?);
            } else {
                matched.push(Matched {
                    rel,
                    abs,
                    meta: ItemMeta::of(&meta),
                });
            }
        }
        if matched.is_empty() {
            return Err(self.not_found(source));
        }
        Ok(matched)
    }

    /// Where the path `rel` (already clean, relative to the root) is on disk, its directories'
    /// links resolved as [`Self::resolve`] resolves them, its last component not followed.
    pub fn locate(&self, rel: &str) -> Result<PathBuf, SourceError> {
        Ok(self.root().join(self.resolve_within(rel, rel, false)?))
    }

    /// That `source` names nothing here, said as a context or as a tree.
    fn not_found(&self, source: &str) -> SourceError {
        match self.links() {
            Links::Context => SourceError::NotFound(source.into()),
            Links::InsideRoot => SourceError::NotInTree(source.into()),
        }
    }

    /// Follows a symlink named directly as a source of a tree, inside its root: a COPY follows
    /// it (the Dockerfile frontend asks BuildKit's copy to `FollowSymlinks`, and continuity's
    /// `RootPath` bounds every link to the root), so its target is copied, not the link.
    fn follow_inside_root(&self, source: &str, rel: String) -> Result<Matched, SourceError> {
        let inside = self.resolve_within(source, &rel, true)?;
        let abs = self.root().join(&inside);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.not_found(source));
            }
            Err(source) => {
                let path = abs.clone();
                return Err(FsError {
                    action: "read",
                    path,
                    source,
                }
                .into());
            }
        };
        Ok(Matched {
            rel,
            abs,
            meta: ItemMeta::of(&meta),
        })
    }

    /// Follows a symlink named directly as a source, refusing targets outside the context.
    fn follow_top_level(
        &self,
        source: &str,
        rel: &str,
        abs: &Path,
    ) -> Result<Matched, SourceError> {
        let target = match fs::canonicalize(abs) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::NotFound(source.into()));
            }
            Err(e) => {
                return Err(FsError {
                    action: "follow the symlink",
                    path: abs.into(),
                    source: e,
                }
                .into());
            }
        };
        let inside = target
            .strip_prefix(self.root())
            .map_err(|_| SourceError::SymlinkEscapes {
                source_path: source.into(),
                target: target.display().to_string(),
            })?;
        let target_rel = inside.to_string_lossy().into_owned();
        if !target_rel.is_empty() && self.ignore().is_excluded(&target_rel) {
            return Err(SourceError::NotFound(source.into()));
        }
        let meta = fs::metadata(&target).with_path("read", &target)?;
        Ok(Matched {
            rel: rel.into(),
            abs: target,
            meta: ItemMeta::of(&meta),
        })
    }

    /// Paths in the context matching a glob, component by component, sorted.
    fn expand_glob(&self, source: &str, rel: &str) -> Result<Vec<String>, SourceError> {
        let mut prefixes = vec![String::new()];
        for component in rel.split('/') {
            let mut next = Vec::new();
            for prefix in &prefixes {
                if !pattern::has_glob_meta(component) {
                    next.push(join(prefix, component));
                    continue;
                }
                // The directory to list, with every symlink in it resolved inside the root.
                let dir = self.root().join(self.resolve_within(source, prefix, true)?);
                let Ok(read) = fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = read
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for name in names {
                    let hit = pattern::path_match(component, &name).map_err(|error| {
                        SourceError::BadPattern {
                            source_path: source.into(),
                            error,
                        }
                    })?;
                    if hit {
                        next.push(join(prefix, &name));
                    }
                }
            }
            prefixes = next;
        }
        Ok(prefixes)
    }

    /// Everything below a matched directory that `.dockerignore` keeps, sorted by path, parents
    /// before children. An excluded directory is still walked when an exception may re-include
    /// something below it, and is listed only if something below it is. A context that shares
    /// its walks ([`Context::sharing_walks`]) reads each directory once.
    pub fn walk(&self, dir: &Matched) -> Result<Vec<Walked>, SourceError> {
        let Some(walks) = &self.walks else {
            return self.walk_disk(dir);
        };
        let lock = || walks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(walked) = lock().get(&dir.abs) {
            return Ok(walked.clone());
        }
        let walked = self.walk_disk(dir)?;
        lock().insert(dir.abs.clone(), walked.clone());
        Ok(walked)
    }

    fn walk_disk(&self, dir: &Matched) -> Result<Vec<Walked>, SourceError> {
        let base_rel = dir.abs.strip_prefix(self.root()).unwrap_or(Path::new(""));
        let base_rel = base_rel.to_string_lossy().into_owned();
        // The top directory's subtrees are walked on every core (a walk is system calls, one
        // or more per file), then put back together in order.
        let children = self.list(&dir.abs)?;
        let mut parts: Vec<Part> = Vec::with_capacity(children.len());
        for (name, meta) in children {
            let walked = self.child(&base_rel, "", name, meta);
            if walked.is_dir {
                parts.push(Part::Dir(walked));
            } else if !walked.excluded {
                parts.push(Part::File(walked.item));
            }
        }
        let subtrees =
            dockless_oci::parallel::map_in_order(&parts, dockless_oci::parallel::cores(), |part| {
                match part {
                    Part::Dir(child) => Some(self.walk_dir_child(&dir.abs, child)),
                    Part::File(_) => None,
                }
            })
            .ok_or_else(|| {
                SourceError::from(FsError {
                    action: "walk",
                    path: dir.abs.clone(),
                    source: io::Error::other("a directory walker stopped unexpectedly"),
                })
            })?;
        let below_count: usize = subtrees.iter().flatten().flatten().map(Vec::len).sum();
        let mut out = Vec::with_capacity(parts.len() + below_count);
        for (part, below) in parts.into_iter().zip(subtrees) {
            match (part, below) {
                (Part::File(item), _) => out.push(item),
                (Part::Dir(_), Some(below)) => out.extend(below?),
                (Part::Dir(_), None) => {}
            }
        }
        Ok(out)
    }

    /// A directory's entries with their metadata, sorted by name.
    fn list(&self, dir: &Path) -> Result<Vec<(std::ffi::OsString, ItemMeta)>, SourceError> {
        let read = fs::read_dir(dir).with_path("read the directory", dir)?;
        let mut children = Vec::new();
        for entry in read {
            let entry = entry.with_path("read the directory", dir)?;
            // DirEntry::metadata is an lstat relative to the open directory: no walk of the
            // whole path per file, which is most of the cost of a no-op build.
            let meta = entry.metadata().with_path("read", &entry.path())?;
            children.push((entry.file_name(), ItemMeta::of(&meta)));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(children)
    }

    /// One entry of `dir`, with what `.dockerignore` says of it.
    fn child(
        &self,
        context_rel: &str,
        walked_rel: &str,
        name: std::ffi::OsString,
        meta: ItemMeta,
    ) -> Child {
        let name = name.to_string_lossy().into_owned();
        let in_context = join(context_rel, &name);
        let excluded = self.ignore().is_excluded(&in_context);
        Child {
            is_dir: meta.is_dir(),
            excluded,
            in_context,
            item: Walked {
                rel: join(walked_rel, &name),
                meta,
            },
        }
    }

    /// A directory and everything below it that is kept, in walk order; empty if it is
    /// excluded and nothing below it comes back.
    fn walk_dir_child(&self, top: &Path, child: &Child) -> Result<Vec<Walked>, SourceError> {
        let mut out = Vec::new();
        self.walk_dir_child_into(top, child, &mut out)?;
        Ok(out)
    }

    /// [`Self::walk_dir_child`] appending to `out`: every entry is moved once, not once per
    /// directory level above it.
    fn walk_dir_child_into(
        &self,
        top: &Path,
        child: &Child,
        out: &mut Vec<Walked>,
    ) -> Result<(), SourceError> {
        if child.excluded && !self.ignore().must_walk_excluded_dir(&child.in_context) {
            return Ok(());
        }
        let start = out.len();
        out.push(child.item.clone());
        self.walk_into(
            &top.join(&child.item.rel),
            top,
            &child.in_context,
            &child.item.rel,
            out,
        )?;
        if child.excluded && out.len() == start + 1 {
            out.truncate(start);
        }
        Ok(())
    }

    /// Appends what `dir` (below the walk's `top`) holds to `out`.
    fn walk_into(
        &self,
        dir: &Path,
        top: &Path,
        context_rel: &str,
        walked_rel: &str,
        out: &mut Vec<Walked>,
    ) -> Result<(), SourceError> {
        for (name, meta) in self.list(dir)? {
            let child = self.child(context_rel, walked_rel, name, meta);
            if child.is_dir {
                self.walk_dir_child_into(top, &child, out)?;
            } else if !child.excluded {
                out.push(child.item);
            }
        }
        Ok(())
    }
}

/// A top-level item of a walk: a file as it is, or a directory to walk.
enum Part {
    File(Walked),
    Dir(Child),
}

struct Child {
    is_dir: bool,
    excluded: bool,
    /// Path relative to the context root, as `.dockerignore` sees it.
    in_context: String,
    item: Walked,
}

/// How many symlinks one source may go through, as the kernel's ELOOP limit.
const MAX_SYMLINK_HOPS: usize = 40;

impl Context {
    /// `rel` with every symlink among its directories (and in its last component too when
    /// `follow_last`) resolved to a path relative to the root. In a context, by the host's
    /// rules: a link whose target leaves the root is an error naming it. In a tree, as inside a
    /// container: an absolute target starts at the root and `..` stops there. A missing
    /// directory stays as written (the caller reports the source as not found).
    fn resolve_within(
        &self,
        source: &str,
        rel: &str,
        follow_last: bool,
    ) -> Result<String, SourceError> {
        let mut pending: VecDeque<String> = rel
            .split('/')
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect();
        let last = if follow_last {
            None
        } else {
            match pending.pop_back() {
                Some(last) => Some(last),
                None => return Ok(String::new()),
            }
        };
        let in_tree = self.links() == Links::InsideRoot;
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop_front() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    if resolved.pop().is_none() && !in_tree {
                        return Err(SourceError::OutsideContext(source.into()));
                    }
                    continue;
                }
                _ => {}
            }
            let at = self.root().join(resolved.join("/")).join(&part);
            let is_link = fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                resolved.push(part);
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(SourceError::SymlinkLoop(source.into()));
            }
            let target = fs::read_link(&at).with_path("read the symlink", &at)?;
            let link = join(&resolved.join("/"), &part);
            let escapes = || SourceError::ParentSymlinkEscapes {
                source_path: source.into(),
                link: link.clone(),
                target: target.display().to_string(),
            };
            let relative_target = if target.is_absolute() {
                resolved.clear();
                if in_tree {
                    target.as_path()
                } else {
                    target.strip_prefix(self.root()).map_err(|_| escapes())?
                }
            } else {
                target.as_path()
            };
            let mut expanded = Vec::new();
            for component in relative_target.components() {
                match component {
                    Component::Normal(name) => expanded.push(name.to_string_lossy().into_owned()),
                    Component::ParentDir => expanded.push("..".to_owned()),
                    Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                }
            }
            // A `..` that climbs above the root is the link's escape, not the source's (in a
            // tree it stops at the root, as the loop above does).
            let mut depth = resolved.len() as isize;
            for name in &expanded {
                depth += if name == ".." { -1 } else { 1 };
                if depth < 0 && !in_tree {
                    return Err(escapes());
                }
            }
            for name in expanded.into_iter().rev() {
                pending.push_front(name);
            }
        }
        resolved.extend(last);
        Ok(resolved.join("/"))
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Cleans a source path relative to the root of a tree: a leading `/` means the root, `.`
/// parts go, `..` parts go back up and stop at the root (as `filepath.Join("/", path)` does in
/// BuildKit).
pub fn clean_inside_root(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Cleans a source path relative to the context root: a leading `/` means the root, `.` parts go,
/// `..` parts go back up, and `None` when that would leave the root.
pub fn clean_relative(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests;
