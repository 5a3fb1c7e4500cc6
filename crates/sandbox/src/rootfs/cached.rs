//! The materialised trees kept in the store, one per layer chain: a chain is unpacked once,
//! and every build that needs it mounts it as its lowest overlay lower, or, without overlay,
//! copies it (the copy is what a RUN may change).

use super::*;
use crate::owners::IdRange;
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Bumped when the way trees are unpacked changes.
/// v2: no device nodes on the host side.
/// v3: as root in a user namespace, owners kept in the sandbox's range (their range in the key).
const VERSION: &str = "dockless-rootfs-v3";

fn key(layers: &[(Digest, String)], privileged: bool, ids: Option<IdRange>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{VERSION}\n{privileged}\n"));
    if let Some(range) = ids {
        let IdRange {
            uid_start,
            gid_start,
            count,
        } = range;
        hasher.update(format!("ids {uid_start} {gid_start} {count}\n"));
    }
    for (digest, media_type) in layers {
        hasher.update(format!("{digest} {media_type}\n"));
    }
    hex::encode(hasher.finalize())
}

/// A working tree holding `layers` (blobs already in the store), its owners kept in `ids` on
/// disk (see [`crate::sandbox::store_ids`]).
pub fn working_tree(
    store: &Store,
    layers: &[(Digest, String)],
    ids: Option<IdRange>,
) -> Result<Rootfs, RootfsError> {
    let mut working = Rootfs::in_ids(store, ids)?;
    let entry = unpacked(store, layers, working.privileged, working.ids)?;
    let create = |source| RootfsError::Create {
        dir: entry.clone(),
        source,
    };
    let owners = crate::owners::read(&entry.join("owners.json")).map_err(create)?;
    copy_tree(&entry.join("tree"), &working.dir, working.privileged).map_err(create)?;
    working.owners = owners.into_iter().map(|(p, u, g)| (p, (u, g))).collect();
    working.applied = layers.len();
    Ok(working)
}

/// The store's entry holding `layers` unpacked (`tree/` and `owners.json`), unpacked now
/// unless an earlier build did.
fn unpacked(
    store: &Store,
    layers: &[(Digest, String)],
    privileged: bool,
    ids: Option<IdRange>,
) -> Result<PathBuf, RootfsError> {
    let entry = store
        .root()
        .join(dockless_oci::areas::TREES)
        .join(key(layers, privileged, ids));
    if entry.join("owners.json").is_file() {
        dockless_oci::areas::mark_used(&entry);
    } else {
        unpack_into_cache(store, layers, &entry, ids)?;
    }
    Ok(entry)
}

fn unpack_into_cache(
    store: &Store,
    layers: &[(Digest, String)],
    entry: &Path,
    ids: Option<IdRange>,
) -> Result<(), RootfsError> {
    let mut tree = Rootfs::in_ids(store, ids)?;
    for (digest, media_type) in layers {
        tree.apply(store, digest, media_type)?;
    }
    let create = |source| RootfsError::Create {
        dir: entry.to_owned(),
        source,
    };
    let parent = entry.parent().unwrap_or(entry);
    fs::create_dir_all(parent).map_err(create)?;
    // Made aside (in the session, swept if this process dies) and renamed into place: a
    // cached tree is always whole.
    let staging = tempfile::Builder::new()
        .prefix("unpacking-")
        .tempdir_in(store.session_dir())
        .map_err(create)?;
    // Destructors do not run on Ctrl-C: the signal handler removes what is registered.
    dockless_oci::cleanup::register(staging.path());
    let mut owners: Vec<(String, u64, u64)> = tree
        .owners
        .iter()
        .map(|(p, (u, g))| (p.clone(), *u, *g))
        .collect();
    owners.sort();
    fs::write(
        staging.path().join("owners.json"),
        serde_json::to_vec(&owners).map_err(|e| create(io::Error::other(e)))?,
    )
    .map_err(create)?;
    fs::rename(&tree.dir, staging.path().join("tree")).map_err(create)?;
    dockless_oci::cleanup::unregister(&tree.dir);
    tree.dir = staging.path().join("tree");
    let staging = staging.keep();
    if fs::rename(&staging, entry).is_err() {
        // Another build cached the same chain meanwhile: theirs is as good.
        let _ = remove_tree(&staging);
    }
    dockless_oci::cleanup::unregister(&staging);
    // `tree` now names a path that moved; dropping it removes nothing.
    Ok(())
}

/// The stage's file system over overlay snapshots: the chain's tree, unpacked once in the
/// store (as [`working_tree`] has it), is the lowest lower, never copied or written.
pub fn overlay_tree(
    store: &Store,
    layers: &[(Digest, String)],
    ids: Option<IdRange>,
) -> Result<Rootfs, RootfsError> {
    let mut working = Rootfs::in_ids(store, ids)?;
    let entry = unpacked(store, layers, working.privileged, working.ids)?;
    working.overlay = Some(crate::overlay::Stack::new(entry.join("tree"), working.ids));
    working.applied = layers.len();
    Ok(working)
}

/// Copies a tree with its modes, owners (as root), times, symlinks, hard links and FIFOs
/// (device nodes are never made on the host).
pub fn copy_tree(from: &Path, to: &Path, privileged: bool) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((source_dir, target_dir)) = pending.pop() {
        for entry in fs::read_dir(&source_dir)? {
            dockless_oci::cancel::check_io()?;
            let entry = entry?;
            let source = entry.path();
            let target = target_dir.join(entry.file_name());
            let meta = fs::symlink_metadata(&source)?;
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&target)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o700))?;
                pending.push((source, target.clone()));
                dirs.push((target, meta));
                continue;
            }
            if kind.is_file() && meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    fs::hard_link(first, &target)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), target.clone());
            }
            if kind.is_file() {
                fs::copy(&source, &target)?;
            } else if kind.is_symlink() {
                symlink(fs::read_link(&source)?, &target)?;
            } else if kind.is_fifo() {
                let c = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
                // SAFETY: a valid C string and plain integers.
                if unsafe { libc::mknod(c.as_ptr(), meta.mode(), meta.rdev()) } != 0 {
                    continue;
                }
            } else {
                continue;
            }
            finish(&target, &meta, privileged)?;
        }
    }
    for (dir, meta) in dirs.iter().rev() {
        finish(dir, meta, privileged)?;
    }
    Ok(())
}

fn finish(target: &Path, meta: &fs::Metadata, privileged: bool) -> io::Result<()> {
    if privileged {
        std::os::unix::fs::lchown(target, Some(meta.uid()), Some(meta.gid()))?;
    }
    if !meta.file_type().is_symlink() {
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    set_mtime(target, meta.mtime().max(0) as u64)
}

/// [`overlay_tree`] without root: the lowest lower is the ID-range form of the chain's tree
/// for `subids` (made once, see [`crate::overlay::rootless`]); the store's tree and the owners
/// it records are what the build reads.
pub fn overlay_tree_rootless(
    store: &Store,
    layers: &[(Digest, String)],
    subids: crate::sandbox::SubIds,
) -> Result<Rootfs, RootfsError> {
    let mut working = Rootfs::new(store)?;
    let entry = unpacked(store, layers, working.privileged, None)?;
    let create = |source| RootfsError::Create {
        dir: entry.clone(),
        source,
    };
    let owners = crate::owners::read(&entry.join("owners.json")).map_err(create)?;
    let form = crate::overlay::rootless::id_range_form(store, &entry, subids).map_err(create)?;
    let mut stack = crate::overlay::Stack::new(form, None);
    stack.rootless = Some(crate::overlay::rootless::Rootless {
        subids,
        base_view: entry.join("tree"),
        base_owners: owners.into_iter().map(|(p, u, g)| (p, (u, g))).collect(),
        uppers: Vec::new(),
    });
    working.overlay = Some(stack);
    working.applied = layers.len();
    Ok(working)
}
