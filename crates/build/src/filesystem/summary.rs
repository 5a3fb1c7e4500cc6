//! What one layer does to the file system: every path it writes (with type, mode, owner and
//! link target), what its whiteouts remove, and the user databases it carries. Read once from
//! the layer's tar headers and cached in the store by the layer's digest, so a base is read
//! once per machine and a no-op build reads only the cached summaries.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ImageNode, ImageNodeKind, ScanError};
use dockless_layer::read::{self, OpenLayerError};
use dockless_layer::tar_reader::{TarCopyError, TarError, TarReader};
use dockless_oci::digest::Digest;
use dockless_oci::fs_error::FsError;
use dockless_oci::store::Store;

/// Where summaries live in the store. The name carries the format: a summary written by an
/// older dockless (directories only, no owners) is never read as one of these.
const CACHE_DIR: &str = dockless_oci::areas::LISTINGS;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LayerSummary {
    /// Every path the layer writes, in archive order (a later entry replaces an earlier one).
    pub entries: Vec<(String, ImageNode)>,
    /// Paths deleted by `.wh.<name>` entries.
    pub removed: Vec<String>,
    /// Directories made opaque by `.wh..wh..opq`.
    pub opaque: Vec<String>,
    pub passwd: Option<String>,
    pub group: Option<String>,
}

fn cache_file(store: &Store, digest: &Digest) -> PathBuf {
    store
        .root()
        .join(CACHE_DIR)
        .join(format!("{}.json", digest.hex()))
}

/// Whether the layer's summary is cached (then its blob is not needed to know its files).
pub fn is_cached(store: &Store, digest: &Digest) -> bool {
    cache_file(store, digest).is_file()
}

/// The cached summary of the layer `digest`, as stored (to share it through a cache).
pub fn cached_bytes(store: &Store, digest: &Digest) -> Option<Vec<u8>> {
    fs::read(cache_file(store, digest)).ok()
}

/// Caches `bytes`, a summary of the layer `digest` that another machine made (a shared cache),
/// if they read as one; whether they did. What they say about the layer cannot be checked
/// without the layer: a shared cache is trusted as far as what its layers hold.
pub fn adopt(store: &Store, digest: &Digest, bytes: &[u8]) -> bool {
    if serde_json::from_slice::<LayerSummary>(bytes).is_err() {
        return false;
    }
    write_cache(store, &cache_file(store, digest), bytes);
    true
}

/// Writes a summary into the cache, aside then renamed. The cache is an optimisation: failing
/// to write it must not fail the build.
fn write_cache(store: &Store, cache_file: &Path, bytes: &[u8]) {
    // Written in this process's temporary directory: a killed process leaves nothing here.
    if let Some(cache_dir) = cache_file.parent()
        && fs::create_dir_all(cache_dir).is_ok()
        && let Ok(temp) = store.temp_file()
        && fs::write(temp.path(), bytes).is_ok()
    {
        let _ = temp.persist(cache_file);
    }
}

/// The layer's summary: from the cache, or read from its blob in `store` and cached.
pub(super) fn summarise_cached(
    store: &Store,
    digest: &Digest,
    media_type: &str,
) -> Result<LayerSummary, ScanError> {
    let cache_file = cache_file(store, digest);
    if let Ok(bytes) = fs::read(&cache_file)
        && let Ok(summary) = serde_json::from_slice(&bytes)
    {
        dockless_oci::areas::mark_used(&cache_file);
        return Ok(summary);
    }
    let started = std::time::Instant::now();
    let summary = summarise(&store.blob_path(digest), digest, media_type)?;
    tracing::info!(layer = %digest, entries = summary.entries.len(), elapsed = ?started.elapsed(), "layer listing read");
    write_cache(
        store,
        &cache_file,
        &serde_json::to_vec(&summary).unwrap_or_default(),
    );
    Ok(summary)
}

fn summarise(path: &Path, digest: &Digest, media_type: &str) -> Result<LayerSummary, ScanError> {
    let mut tar = read::open_layer(path, media_type).map_err(|error| match error {
        OpenLayerError::UnknownMediaType { media_type } => ScanError::UnknownMediaType {
            digest: digest.clone(),
            media_type,
        },
        OpenLayerError::Open { path, source } => ScanError::Fs(FsError {
            action: "open",
            path,
            source,
        }),
    })?;
    read_summary(&mut tar).map_err(|source| ScanError::Unreadable {
        digest: digest.clone(),
        source,
    })
}

/// A layer's listing read from its bytes as they are downloaded (`chunks`, which ends when the
/// download does), so that the download and the listing take the longer of the two, not both.
/// `None` if it cannot be read so: the blob, once downloaded, is then listed as without this,
/// with that path's errors. The caller trusts it only once the download matched its digest.
pub(crate) fn summarise_download(
    digest: &Digest,
    media_type: &str,
    chunks: std::sync::mpsc::Receiver<bytes::Bytes>,
) -> Option<LayerSummary> {
    let started = std::time::Instant::now();
    let stream = ChunkReader {
        chunks,
        current: bytes::Bytes::new(),
        at: 0,
    };
    let mut tar = read::layer_stream(stream, media_type)?.ok()?;
    let summary = read_summary(&mut tar).ok()?;
    tracing::info!(layer = %digest, entries = summary.entries.len(), elapsed = ?started.elapsed(), "layer listing read while downloaded");
    Some(summary)
}

/// Keeps a listing read from a layer's bytes for later builds.
pub(crate) fn cache_summary(store: &Store, digest: &Digest, summary: &LayerSummary) {
    write_cache(
        store,
        &cache_file(store, digest),
        &serde_json::to_vec(summary).unwrap_or_default(),
    );
}

/// The downloaded chunks as one byte stream, which ends when the sender is gone.
struct ChunkReader {
    chunks: std::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => (self.current, self.at) = (chunk, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The user databases are read when they are at most this big (a real one is a few KiB).
const MAX_USER_DATABASE: i64 = 1 << 20;

pub(super) fn read_summary<R: Read>(tar: &mut TarReader<R>) -> Result<LayerSummary, TarError> {
    let mut summary = LayerSummary::default();
    while let Some(header) = tar.next_header()? {
        // A PAX global header describes the archive, not a path of the image.
        if header.type_flag == b'g' {
            continue;
        }
        let Some(path) = normalise(&String::from_utf8_lossy(&header.name)) else {
            continue;
        };
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n),
            None => (String::new(), path.as_str()),
        };
        if name == ".wh..wh..opq" {
            summary.opaque.push(dir);
            continue;
        }
        if let Some(deleted) = name.strip_prefix(".wh.") {
            summary.removed.push(if dir.is_empty() {
                deleted.into()
            } else {
                format!("{dir}/{deleted}")
            });
            continue;
        }
        let node_kind = match header.type_flag {
            b'5' => ImageNodeKind::Dir,
            b'2' => ImageNodeKind::Symlink(String::from_utf8_lossy(&header.link_name).into_owned()),
            // Regular, hard link, contiguous, GNU sparse: a regular file in the image.
            b'0' | b'1' | b'7' | b'S' => ImageNodeKind::File,
            _ => ImageNodeKind::Other,
        };
        let node = ImageNode {
            kind: node_kind,
            mode: u32::try_from(header.mode & 0o7777).unwrap_or(0o644),
            uid: u64::try_from(header.uid).unwrap_or(0),
            gid: u64::try_from(header.gid).unwrap_or(0),
        };
        if header.type_flag == b'0'
            && (path == "etc/passwd" || path == "etc/group")
            && header.size < MAX_USER_DATABASE
        {
            let mut bytes = Vec::new();
            tar.copy_data(&mut bytes).map_err(|error| match error {
                TarCopyError::Archive(error) => error,
                TarCopyError::Write(error) => TarError::Io(error),
            })?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if path == "etc/passwd" {
                summary.passwd = Some(text);
            } else {
                summary.group = Some(text);
            }
        }
        summary.entries.push((path, node));
    }
    Ok(summary)
}

/// `./a/b/` → `a/b`; `None` for the root itself or names that climb out.
fn normalise(name: &str) -> Option<String> {
    dockless_context::source::clean_relative(name).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_uid(7);
            if kind.is_symlink() {
                header
                    .set_link_name(std::str::from_utf8(data).unwrap())
                    .unwrap();
                header.set_size(0);
                builder.append_data(&mut header, name, &[][..]).unwrap();
            } else {
                builder.append_data(&mut header, name, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn summary_records_entries_whiteouts_links_and_user_databases() {
        let bytes = tar_of(&[
            ("./etc/", tar::EntryType::Directory, b""),
            (
                "etc/passwd",
                tar::EntryType::Regular,
                b"user:x:1000:1000::/:/bin/sh\n",
            ),
            ("tmp/.wh.old", tar::EntryType::Regular, b""),
            ("var/.wh..wh..opq", tar::EntryType::Regular, b""),
            ("lib", tar::EntryType::Symlink, b"usr/lib"),
        ]);
        let s = read_summary(&mut TarReader::new(&bytes[..])).unwrap();
        let paths: Vec<&str> = s.entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["etc", "etc/passwd", "lib"]);
        assert_eq!(s.entries[0].1.kind, ImageNodeKind::Dir);
        assert_eq!((s.entries[0].1.mode, s.entries[0].1.uid), (0o755, 7));
        assert_eq!(
            s.entries[2].1.kind,
            ImageNodeKind::Symlink("usr/lib".into())
        );
        assert_eq!(s.removed, ["tmp/old"]);
        assert_eq!(s.opaque, ["var"]);
        assert!(s.passwd.unwrap().starts_with("user:"));
    }

    /// One header block (its size field says `size`) followed by `data`, padded to a block.
    fn raw_entry(name: &str, kind: tar::EntryType, size: u64, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        if kind == tar::EntryType::Link {
            header.set_link_name("target").unwrap();
        }
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        bytes
    }

    fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
        let body = [key.as_bytes(), b"=", value, b"\n"].concat();
        let mut length = body.len() + 2;
        while format!("{length} ").len() + body.len() != length {
            length += 1;
        }
        [format!("{length} ").into_bytes(), body].concat()
    }

    fn paths_of(blocks: &[Vec<u8>]) -> Vec<(String, ImageNodeKind)> {
        let mut bytes = blocks.concat();
        bytes.resize(bytes.len() + 1024, 0);
        read_summary(&mut TarReader::new(&bytes[..]))
            .unwrap()
            .entries
            .into_iter()
            .map(|(path, node)| (path, node.kind))
            .collect()
    }

    #[test]
    fn a_newline_in_a_pax_value_does_not_make_a_record_of_its_own() {
        // Go (and so `docker pull`) reads one xattr record; a reader that splits PAX data on
        // newlines finds a `path` record inside its value and renames the entry.
        let records = pax_record("SCHILY.xattr.user.note", b"x\n14 path=/evil\n");
        let paths = paths_of(&[
            raw_entry(
                "PaxHeaders/real",
                tar::EntryType::XHeader,
                records.len() as u64,
                &records,
            ),
            raw_entry("real", tar::EntryType::Regular, 2, b"hi"),
        ]);
        assert_eq!(paths, [("real".to_owned(), ImageNodeKind::File)]);
    }

    #[test]
    fn a_hard_link_with_a_size_field_carries_no_data() {
        // Go reads no data after a link header, whatever its size field says; skipping 600 bytes
        // would swallow the next header.
        let paths = paths_of(&[
            raw_entry("target", tar::EntryType::Regular, 0, b""),
            raw_entry("link", tar::EntryType::Link, 600, b""),
            raw_entry("after", tar::EntryType::Regular, 0, b""),
        ]);
        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["target", "link", "after"]);
        assert_eq!(paths[1].1, ImageNodeKind::File);
    }

    #[test]
    fn a_pax_global_header_is_not_a_path_and_a_sparse_file_is_a_file() {
        let global = pax_record("comment", b"made by git archive");
        let paths = paths_of(&[
            raw_entry(
                "pax_global_header",
                tar::EntryType::XGlobalHeader,
                global.len() as u64,
                &global,
            ),
            raw_entry("holes", tar::EntryType::GNUSparse, 0, b""),
        ]);
        assert_eq!(paths, [("holes".to_owned(), ImageNodeKind::File)]);
    }

    #[test]
    fn an_old_gnu_sparse_file_with_an_extended_map_is_read_past() {
        // GNU tar writes a sparse file with more than 4 holes as a header, then blocks of its
        // sparse map (not counted in the size field), then the data.
        let mut header = tar::Header::new_gnu();
        header.set_path("sparse").unwrap();
        header.set_entry_type(tar::EntryType::GNUSparse);
        header.set_size(512);
        header.set_mode(0o644);
        header.as_gnu_mut().unwrap().isextended[0] = 1;
        header.set_cksum();
        let mut extension = [0u8; 512];
        extension[0] = b'1'; // an offset, so the block is not all zeros
        let entry = [header.as_bytes().as_slice(), &extension, &[7u8; 512]].concat();
        let paths = paths_of(&[entry, raw_entry("after", tar::EntryType::Regular, 0, b"")]);
        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["sparse", "after"]);
        assert_eq!(paths[0].1, ImageNodeKind::File);
    }

    #[test]
    fn long_names_from_pax_and_gnu_headers_are_used() {
        let long = format!("dir/{}", "n".repeat(150));
        let records = pax_record("path", long.as_bytes());
        let gnu_long = format!("gnu/{}\0", "g".repeat(150));
        let paths = paths_of(&[
            raw_entry(
                "PaxHeaders/x",
                tar::EntryType::XHeader,
                records.len() as u64,
                &records,
            ),
            raw_entry("short", tar::EntryType::Regular, 0, b""),
            raw_entry(
                "././@LongLink",
                tar::EntryType::GNULongName,
                gnu_long.len() as u64,
                gnu_long.as_bytes(),
            ),
            raw_entry("cut", tar::EntryType::Regular, 0, b""),
        ]);
        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, [long.as_str(), gnu_long.trim_end_matches('\0')]);
    }
}
