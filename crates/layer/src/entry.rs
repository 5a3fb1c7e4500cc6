//! What a layer holds before it is written: a flat list of entries with explicit metadata.

use std::path::PathBuf;

/// One entry of a layer tar, before it is written.
///
/// Metadata is explicit (never read back from disk at write time) so that a layer's bytes depend
/// only on this list and the writer's settings. Modification times are not here: the writer
/// stamps every entry with one epoch so that builds are reproducible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the image, relative to its root: `/`-separated, no leading `/`, no `.` or `..`
    /// components, no trailing `/` (directories included).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Extended attributes (file capabilities among them), sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    /// A regular file whose bytes are read from `source` when the layer is written.
    File {
        source: PathBuf,
        size: u64,
    },
    Symlink {
        target: String,
    },
    /// A hard link to an earlier entry of the same layer, named by its `path`.
    Hardlink {
        target: String,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}
