//! The layer cache: a layer whose inputs have not changed is neither re-read nor re-compressed.
//!
//! The key hashes every entry's metadata and, for files, the identity of the source on disk
//! (inode, size, modification and change times in nanoseconds). A file rewritten in place
//! always gets a new change time, so an unchanged key means unchanged bytes; a fresh checkout
//! of the same files misses the cache and simply rebuilds the same layer (builds are
//! deterministic, so the digests are equal either way).

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::entry::{Entry, EntryKind};
use super::writer::{LayerSettings, WrittenLayer};
use dockless_context::item_meta::ItemMeta;
use dockless_oci::store::Store;

/// Bumped whenever the bytes a given input produces change (tar layout, compressor settings).
const VERSION: &str = "dockless-layer-cache-v3-binary-key";

/// The identity of a source file on disk: it changes whenever the file's bytes may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl SourceStamp {
    pub fn of(meta: &ItemMeta) -> Self {
        SourceStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: meta.mtime(),
            ctime: meta.ctime(),
        }
    }
}

/// Stamps already taken while walking the context, one per entry of the layer, index for index
/// (so files are not stat'ed twice); sources without one, or past the end, are stat'ed here. A
/// list beside the entries rather than a map by path: a layer may hold hundreds of thousands of
/// files, and a map would hold each path once more.
pub type Stamps = Vec<Option<SourceStamp>>;

/// The cache key of a layer, or `None` when a source cannot be examined (no caching then).
pub fn key(entries: &[Entry], settings: LayerSettings, stamps: &Stamps) -> Option<String> {
    let mut hasher = Sha256::new();
    let compression = settings.compression.key_text();
    writeln!(
        Hashed(&mut hasher),
        "{VERSION}\n{compression}\n{}",
        settings.epoch
    )
    .ok()?;
    // Fixed-width little-endian numbers and NUL-ended strings: unambiguous, and no text
    // formatting for each of tens of thousands of entries.
    for (index, entry) in entries.iter().enumerate() {
        hasher.update(entry.path.as_bytes());
        hasher.update([0]);
        hasher.update(entry.mode.to_le_bytes());
        hasher.update(entry.uid.to_le_bytes());
        hasher.update(entry.gid.to_le_bytes());
        for (name, value) in &entry.xattrs {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value);
        }
        match &entry.kind {
            EntryKind::Directory => hasher.update(b"d"),
            EntryKind::File { source, size } => {
                let stamp = match stamps.get(index) {
                    Some(Some(stamp)) => *stamp,
                    _ => SourceStamp::of(&ItemMeta::of(&fs::metadata(source).ok()?)),
                };
                hasher.update(b"f");
                for number in [size, &stamp.dev, &stamp.ino, &stamp.size] {
                    hasher.update(number.to_le_bytes());
                }
                for number in [stamp.mtime.0, stamp.mtime.1, stamp.ctime.0, stamp.ctime.1] {
                    hasher.update(number.to_le_bytes());
                }
            }
            EntryKind::Symlink { target } => {
                hasher.update(b"s");
                hasher.update(target.as_bytes());
                hasher.update([0]);
            }
            EntryKind::Hardlink { target } => {
                hasher.update(b"h");
                hasher.update(target.as_bytes());
                hasher.update([0]);
            }
            EntryKind::CharDevice { major, minor } => {
                hasher.update(b"c");
                hasher.update(major.to_le_bytes());
                hasher.update(minor.to_le_bytes());
            }
            EntryKind::BlockDevice { major, minor } => {
                hasher.update(b"b");
                hasher.update(major.to_le_bytes());
                hasher.update(minor.to_le_bytes());
            }
            EntryKind::Fifo => hasher.update(b"p"),
        }
        hasher.update(b"\n");
    }
    Some(hex::encode(hasher.finalize()))
}

/// Adapts the hasher to `write!`.
struct Hashed<'a>(&'a mut Sha256);

impl Write for Hashed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where this cache's records live in the store.
const AREA: &str = dockless_oci::areas::LAYER_CACHE;

/// A cached layer for `key` whose blob is still in the store.
pub fn lookup(store: &Store, key: &str) -> Option<WrittenLayer> {
    lookup_in(store, AREA, key)
}

/// Records a written layer; failing to is harmless (the next build recompresses).
pub fn record(store: &Store, key: &str, layer: &WrittenLayer) {
    record_in(store, AREA, key, layer)
}

fn path(store: &Store, area: &str, key: &str) -> PathBuf {
    store.root().join(area).join(format!("{key}.json"))
}

/// The layer recorded under `key` in the store's `area`, if its blob is still in the store.
/// Shared by every cache that maps a key to a layer (COPY/ADD layers, RUN layers).
pub fn lookup_in(store: &Store, area: &str, key: &str) -> Option<WrittenLayer> {
    let record = path(store, area, key);
    let bytes = fs::read(&record).ok()?;
    let layer: WrittenLayer = serde_json::from_slice(&bytes).ok()?;
    let hit = store.has_blob(&layer.digest);
    if hit {
        dockless_oci::areas::mark_used(&record);
    }
    hit.then_some(layer)
}

/// Records `layer` under `key` in the store's `area`, written aside then renamed; failing to is
/// harmless (the next build makes the layer again).
pub fn record_in(store: &Store, area: &str, key: &str, layer: &WrittenLayer) {
    let target = path(store, area, key);
    let Some(dir) = target.parent() else { return };
    if fs::create_dir_all(dir).is_err() {
        return;
    }
    // Written in this process's temporary directory: a killed process leaves nothing here.
    if let Ok(temp) = store.temp_file()
        && fs::write(temp.path(), serde_json::to_vec(layer).unwrap_or_default()).is_ok()
    {
        let _ = temp.persist(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockless_oci::image::Compression;

    fn file_entry(source: PathBuf, size: u64) -> Entry {
        Entry {
            path: "a".into(),
            kind: EntryKind::File { source, size },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn key_changes_with_content_metadata_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        fs::write(&file, "one").unwrap();
        let settings = LayerSettings {
            compression: Compression::Gzip { level: 1 },
            epoch: 0,
        };
        let entries = vec![file_entry(file.clone(), 3)];
        let first = key(&entries, settings, &Stamps::new()).unwrap();
        assert_eq!(
            key(&entries, settings, &Stamps::new()),
            Some(first.clone()),
            "stable"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(&file, "two").unwrap();
        assert_ne!(
            key(&entries, settings, &Stamps::new()).unwrap(),
            first,
            "a rewrite changes the key"
        );
        let rewritten = key(&entries, settings, &Stamps::new()).unwrap();
        let mut chmod = entries.clone();
        chmod[0].mode = 0o600;
        assert_ne!(key(&chmod, settings, &Stamps::new()).unwrap(), rewritten);
        let mut owner = entries.clone();
        owner[0].gid = 1000;
        assert_ne!(key(&owner, settings, &Stamps::new()).unwrap(), rewritten);
        let mut xattr = entries.clone();
        xattr[0].xattrs = vec![("user.a".into(), b"1".to_vec())];
        assert_ne!(key(&xattr, settings, &Stamps::new()).unwrap(), rewritten);
        let link = |target: &str| Entry {
            path: "a".into(),
            kind: EntryKind::Symlink {
                target: target.into(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
        };
        assert_ne!(
            key(&[link("x")], settings, &Stamps::new()),
            key(&[link("y")], settings, &Stamps::new()),
            "a link's target is in the key"
        );
        let other = LayerSettings {
            epoch: 1,
            ..settings
        };
        assert_ne!(key(&entries, other, &Stamps::new()).unwrap(), rewritten);
        assert_eq!(
            key(
                &[file_entry(dir.path().join("missing"), 1)],
                settings,
                &Stamps::new()
            ),
            None
        );
    }
}
