//! What a build keeps of one context item's metadata.
//!
//! A walk holds one of these per file until the files are planned as layer entries, so it is
//! kept small: a full [`fs::Metadata`] is about three times this, which a context of hundreds of
//! thousands of files pays for in tens of megabytes.

use std::fs::{self, FileType};
use std::os::unix::fs::MetadataExt;

/// The fields of an item's `lstat` (or `stat`, for a followed top-level symlink) that the build
/// reads: its type, mode and owner, its links, and the identity the layer cache keys on.
#[derive(Debug, Clone, Copy)]
pub struct ItemMeta {
    file_type: FileType,
    /// `st_mode`: the type bits and the permission bits.
    mode: u32,
    /// The owner: a build context's files are root's in a layer, but a stage's keep theirs.
    uid: u32,
    gid: u32,
    nlink: u64,
    rdev: u64,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl ItemMeta {
    pub fn of(meta: &fs::Metadata) -> Self {
        ItemMeta {
            file_type: meta.file_type(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            nlink: meta.nlink(),
            rdev: meta.rdev(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    pub fn is_dir(&self) -> bool {
        self.file_type.is_dir()
    }

    pub fn is_file(&self) -> bool {
        self.file_type.is_file()
    }

    /// `st_mode`, as [`MetadataExt::mode`]: the type bits and the permission bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// `(st_uid, st_gid)`.
    pub fn owner(&self) -> (u64, u64) {
        (u64::from(self.uid), u64::from(self.gid))
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn nlink(&self) -> u64 {
        self.nlink
    }

    pub fn rdev(&self) -> u64 {
        self.rdev
    }

    pub fn dev(&self) -> u64 {
        self.dev
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Modification time: seconds and nanoseconds.
    pub fn mtime(&self) -> (i64, i64) {
        self.mtime
    }

    /// Change time: seconds and nanoseconds.
    pub fn ctime(&self) -> (i64, i64) {
        self.ctime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_metadata_says() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "four").unwrap();
        let meta = fs::symlink_metadata(&file).unwrap();
        let item = ItemMeta::of(&meta);
        assert!(item.is_file() && !item.is_dir());
        assert_eq!(item.mode(), meta.mode());
        assert_eq!(item.len(), 4);
        assert_eq!(
            (item.dev(), item.ino(), item.nlink()),
            (meta.dev(), meta.ino(), 1)
        );
        assert_eq!(item.mtime(), (meta.mtime(), meta.mtime_nsec()));
        assert_eq!(item.ctime(), (meta.ctime(), meta.ctime_nsec()));
    }
}
