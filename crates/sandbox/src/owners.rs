//! Owners across the sandbox boundary, when subordinate IDs are mapped.
//!
//! On the host every file of a working tree belongs to the invoking user, and the owners the
//! image wants are kept beside it (the rootfs overlay). Inside a user namespace with
//! subordinate IDs they can be real: before the command the helper gives each file its owner
//! ([`apply`]); after it, it records every owner that is not root and gives the files back to
//! the invoking user ([`harvest`]), so that the host can read, diff and remove the tree.
//!
//! Run by root in a user namespace, the sandbox's IDs are a range of host IDs that own nothing
//! on the host ([`IdRange`]), and the store keeps every tree and cache mount in that range on
//! disk, from the moment it is unpacked or made: a setuid-root file of an image, or one a RUN
//! makes, is setuid to an ID that owns nothing on the host, and the sandbox, whose root is the
//! range's first ID, sees the image's owners without a walk to shift them there and back. A
//! layer gets the image's IDs again ([`IdRange::to_image`]).

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

impl IdRange {
    /// The host IDs on disk of a file the image gives `uid`:`gid`. An image ID past the range
    /// stays as it is (the sandbox sees it as its overflow ID, as it would any unmapped ID); one
    /// that falls inside the range's host IDs would come back as another owner, so it is refused.
    pub fn to_host(&self, uid: u32, gid: u32) -> io::Result<(u32, u32)> {
        let inside = |id: u32, start: u32| id >= start && id - start < self.count;
        if inside(uid, self.uid_start) || inside(gid, self.gid_start) {
            return Err(io::Error::other(format!(
                "owner {uid}:{gid} is inside the host IDs the sandbox's user namespace maps \
                 (uid {}…, gid {}…); give the file another owner, or build with --isolation=root",
                self.uid_start, self.gid_start
            )));
        }
        let shift = |id: u32, start: u32| if id < self.count { start + id } else { id };
        Ok((shift(uid, self.uid_start), shift(gid, self.gid_start)))
    }

    /// The image's IDs of a file owned by `uid`:`gid` on disk: the range's IDs become the
    /// sandbox's; any other (the host's root, for the mount points dockless makes) stays.
    pub fn to_image(&self, uid: u32, gid: u32) -> (u32, u32) {
        let back = |id: u32, start: u32| {
            if id >= start && id - start < self.count {
                id - start
            } else {
                id
            }
        };
        (back(uid, self.uid_start), back(gid, self.gid_start))
    }
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
        if !crate::test_support::needs_root("chown to other IDs") {
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
    fn image_ids_live_in_the_range_on_disk() {
        let range = IdRange {
            uid_start: 300_000,
            gid_start: 400_000,
            count: 65536,
        };
        assert_eq!(range.to_host(0, 0).unwrap(), (300_000, 400_000));
        assert_eq!(range.to_host(5, 6).unwrap(), (300_005, 400_006));
        assert_eq!(range.to_host(70_000, 0).unwrap(), (70_000, 400_000));
        assert_eq!(range.to_image(300_005, 400_006), (5, 6));
        // The host's root (a mount point dockless made) stays root.
        assert_eq!(range.to_image(0, 0), (0, 0));
        // An image ID that is already one of the range's host IDs would come back wrong.
        let err = range.to_host(300_001, 0).unwrap_err().to_string();
        assert!(err.contains("--isolation=root"), "{err}");
    }
}
