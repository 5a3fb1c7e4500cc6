//! Owners across the sandbox boundary, when subordinate IDs are mapped.
//!
//! On the host every file of a working tree belongs to the invoking user, and the owners the
//! image wants are kept beside it (the rootfs overlay). Inside a user namespace with
//! subordinate IDs they can be real: before the command the helper gives each file its owner
//! ([`apply`]); after it, it records every owner that is not root and gives the files back to
//! the invoking user ([`harvest`]), so that the host can read, diff and remove the tree.
//!
//! Run by root, the sandbox's IDs are a range of host IDs: [`shift_into`] moves the owners into
//! that range for the command and [`shift_back`] moves them out again.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::Path;

/// Sandbox IDs `0..count` are host IDs `uid_start..` and `gid_start..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub uid_start: u32,
    pub gid_start: u32,
    pub count: u32,
}

/// `[path, uid, gid]` for every file not owned by root, paths relative to the tree.
pub(crate) type OwnerList = Vec<(String, u64, u64)>;

pub fn write(file: &Path, owners: &OwnerList) -> io::Result<()> {
    fs::write(file, serde_json::to_vec(owners).map_err(io::Error::other)?)
}

pub fn read(file: &Path) -> io::Result<OwnerList> {
    serde_json::from_slice(&fs::read(file)?).map_err(io::Error::other)
}

/// Gives the files of `root` the owners listed in `file`; returns those that could not be given
/// (IDs outside the subordinate range), for [`harvest`] to keep.
pub fn apply(root: &Path, file: &Path) -> io::Result<OwnerList> {
    let mut kept_aside = OwnerList::new();
    for (path, uid, gid) in read(file)? {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        // The parent is resolved inside the tree: a symlink must not lead a chown outside it.
        let target = super::rootfs::resolve(root, dir, false)?.join(name);
        let Ok(meta) = fs::symlink_metadata(&target) else {
            continue;
        };
        if let Err(e) = chown_keeping(&target, &meta, uid as u32, gid as u32) {
            // An ID outside the subordinate range: the file stays root's for the command.
            tracing::debug!(path, "owner {uid}:{gid} not applied: {e}");
            kept_aside.push((path, uid, gid));
            continue;
        }
    }
    Ok(kept_aside)
}

/// Records in `file` every owner in `root` that is not root, and makes those files root's.
/// The owners [`apply`] could not give stay recorded for the files still there and root's.
pub(crate) fn harvest(root: &Path, file: &Path, kept_aside: OwnerList) -> io::Result<()> {
    let mut owners = OwnerList::new();
    for (path, uid, gid) in kept_aside {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let target = super::rootfs::resolve(root, dir, false)?.join(name);
        if fs::symlink_metadata(&target).is_ok_and(|m| (m.uid(), m.gid()) == (0, 0)) {
            owners.push((path, uid, gid));
        }
    }
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(entry.path())?;
            if (meta.uid(), meta.gid()) != (0, 0) {
                owners.push((path.clone(), meta.uid().into(), meta.gid().into()));
                chown_keeping(&entry.path(), &meta, 0, 0)?;
            }
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    owners.sort();
    write(file, &owners)
}

/// Run by root before the command of a sandbox whose IDs are the host's `range` (see
/// [`crate::sandbox::Mapping::Shifted`]): every owner below `range.count` becomes the host
/// ID the sandbox sees as that owner. A file already owned inside the range would come back
/// with a wrong owner, so it stops the build instead.
pub(crate) fn shift_into(root: &Path, range: IdRange) -> io::Result<()> {
    let inside = |id: u32, start: u32| id >= start && id - start < range.count;
    walk_owners(root, &mut |path, uid, gid| {
        if inside(uid, range.uid_start) || inside(gid, range.gid_start) {
            return Err(io::Error::other(format!(
                "{} is owned by {uid}:{gid}, inside the host IDs the sandbox's user namespace maps \
                 (uid {}…, gid {}…); give it another owner, or build with --isolation=root",
                path.display(),
                range.uid_start,
                range.gid_start
            )));
        }
        let shift = |id: u32, start: u32| if id < range.count { start + id } else { id };
        Ok((shift(uid, range.uid_start), shift(gid, range.gid_start)))
    })
}

/// After the command: the owners in the range become the sandbox's IDs again.
pub(crate) fn shift_back(root: &Path, range: IdRange) -> io::Result<()> {
    let back = |id: u32, start: u32| {
        if id >= start && id - start < range.count {
            id - start
        } else {
            id
        }
    };
    walk_owners(root, &mut |_, uid, gid| {
        Ok((back(uid, range.uid_start), back(gid, range.gid_start)))
    })
}

/// The owner to give a file, from its path and present owner.
type NewOwner<'a> = dyn FnMut(&Path, u32, u32) -> io::Result<(u32, u32)> + 'a;

/// Gives every file of `root` (itself included) the owner `owner` returns for it.
fn walk_owners(root: &Path, owner: &mut NewOwner<'_>) -> io::Result<()> {
    let mut pending = vec![root.to_path_buf()];
    // A hard-linked file is given its owner once, at its first name.
    let mut linked = std::collections::HashSet::new();
    let mut visit = |path: &Path, meta: &fs::Metadata| -> io::Result<()> {
        if meta.nlink() > 1 && !meta.is_dir() && !linked.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        let (uid, gid) = owner(path, meta.uid(), meta.gid())?;
        if (uid, gid) != (meta.uid(), meta.gid()) {
            chown_keeping(path, meta, uid, gid)?;
        }
        Ok(())
    };
    visit(root, &fs::symlink_metadata(root)?)?;
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            visit(&path, &meta)?;
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// Gives `path` a new owner and keeps what chown clears: the setuid and setgid bits and the
/// file capabilities (`setcap`'s `security.capability`).
fn chown_keeping(path: &Path, before: &fs::Metadata, uid: u32, gid: u32) -> io::Result<()> {
    let capability = if before.is_file() {
        xattr::get(path, CAPABILITY).ok().flatten()
    } else {
        None
    };
    lchown(path, Some(uid), Some(gid))?;
    if before.mode() & 0o6000 != 0 {
        restore_mode(path, before)?;
    }
    if let Some(value) = capability {
        xattr::set(path, CAPABILITY, &value)?;
    }
    Ok(())
}

/// The extended attribute holding a file's capabilities.
const CAPABILITY: &str = "security.capability";

/// chown clears setuid and setgid bits: put the mode back.
fn restore_mode(path: &Path, before: &fs::Metadata) -> io::Result<()> {
    if before.file_type().is_symlink() {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(before.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_go_in_and_come_back_out() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: chown to other IDs needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(root.join("d/suid"), "x").unwrap();
        fs::set_permissions(root.join("d/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(root.join("aside"), "y").unwrap();
        let list = dir.path().join("owners.json");
        write(&list, &vec![("d/suid".to_owned(), 5, 6)]).unwrap();
        assert!(apply(&root, &list).unwrap().is_empty());
        let meta = fs::metadata(root.join("d/suid")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (5, 6, 0o4755)
        );

        // What apply could not give is kept for the files still root's.
        harvest(&root, &list, vec![("aside".to_owned(), 7, 7)]).unwrap();
        assert_eq!(
            read(&list).unwrap(),
            [("aside".to_owned(), 7, 7), ("d/suid".to_owned(), 5, 6)]
        );
        let meta = fs::metadata(root.join("d/suid")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "handed back");
        assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid kept");
    }
    #[test]
    fn shifted_owners_come_back_as_they_were() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: chown to other IDs needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(root.join("d/suid"), "x").unwrap();
        fs::hard_link(root.join("d/suid"), root.join("link")).unwrap();
        lchown(root.join("d/suid"), Some(5), Some(6)).unwrap();
        fs::set_permissions(root.join("d/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        let range = IdRange {
            uid_start: 300_000,
            gid_start: 400_000,
            count: 65536,
        };
        shift_into(&root, range).unwrap();
        let meta = fs::metadata(root.join("link")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (300_005, 400_006),
            "once per inode"
        );
        assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid kept");
        assert_eq!(fs::metadata(&root).unwrap().uid(), 300_000);
        // What the command made in the range comes back as the sandbox's IDs.
        fs::write(root.join("made"), "").unwrap();
        lchown(root.join("made"), Some(301_000), Some(401_000)).unwrap();
        shift_back(&root, range).unwrap();
        let meta = fs::metadata(root.join("d/suid")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (5, 6, 0o4755)
        );
        let made = fs::metadata(root.join("made")).unwrap();
        assert_eq!((made.uid(), made.gid()), (1000, 1000));
        assert_eq!(fs::metadata(&root).unwrap().uid(), 0);

        // A file already owned inside the range would come back wrong: refused.
        lchown(root.join("made"), Some(300_001), None).unwrap();
        let err = shift_into(&root, range).unwrap_err().to_string();
        assert!(err.contains("--isolation=root"), "{err}");
    }
}
