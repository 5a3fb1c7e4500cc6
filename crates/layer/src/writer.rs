//! Writes a layer: entries → tar → gzip or zstd → the store, with the uncompressed digest
//! (diff_id) and the compressed digest computed in the same single pass.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use tar::{EntryType, Header};

use super::entry::{Entry, EntryKind};
use dockless_oci::digest::{Digest, HashingWriter};
use dockless_oci::fs_error::{FsError, IoContext};
use dockless_oci::image::Compression;
use dockless_oci::live::LiveBlob;
use dockless_oci::parallel::compression_threads;
use dockless_oci::store::{Store, StoreError};

/// A layer as stored: both digests and the compressed size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenLayer {
    /// sha256 of the compressed blob: what the manifest names.
    pub digest: Digest,
    /// sha256 of the uncompressed tar: what the config's `rootfs.diff_ids` names.
    pub diff_id: Digest,
    /// Size of the compressed blob in bytes.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("could not write the layer entry {path}: {source}")]
    Entry {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} changed while it was being read (expected {expected} bytes); build again")]
    Changed { path: String, expected: u64 },
}

/// Settings that decide a layer's bytes.
#[derive(Debug, Clone, Copy)]
pub struct LayerSettings {
    pub compression: Compression,
    /// Modification time stamped on every entry (SOURCE_DATE_EPOCH, else 0).
    pub epoch: u64,
}

/// Told about a layer as it starts to be written, to read its compressed bytes as they land.
pub type OnLive<'a> = &'a (dyn Fn(LiveBlob) + Sync);

/// Writes `entries` (already sorted and complete) as one layer into the store; `on_live`, if
/// given, can read the compressed bytes while they are written.
pub fn write_layer(
    store: &Store,
    entries: &[Entry],
    settings: LayerSettings,
    on_live: Option<OnLive<'_>>,
) -> Result<WrittenLayer, LayerError> {
    let temp = store.temp_file()?;
    let temp_path = temp.path().to_owned();
    let reader = temp.reopen().with_path("open", &temp_path)?;
    // Dropped on any early return, which tells a live reader the bytes are no layer.
    let (publishing, finisher, live) = dockless_oci::live::publish(temp, reader);
    if let Some(on_live) = on_live {
        on_live(live);
    }
    let compressed = HashingWriter::new(BufWriter::with_capacity(256 * 1024, publishing));
    let (compressed, diff_id) = match settings.compression {
        Compression::Gzip { level } => {
            // As many compressors as the layer has blocks, from the process's one budget:
            // layers written side by side share the cores instead of each taking them all.
            let threads = compression_threads().take(blocks_in(entries));
            #[cfg(test)]
            let _counted = tests::Compressing::start(threads.count());
            let encoder = super::pgzip::ParallelGzWriter::new(compressed, level, threads.count())
                .with_path("compress", &temp_path)?;
            let (encoder, diff_id) = write_tar(encoder, entries, settings.epoch)?;
            (encoder.finish().with_path("compress", &temp_path)?, diff_id)
        }
        Compression::Zstd { level } => {
            // The writer's own thread compresses: one from the budget.
            let _thread = compression_threads().take(1);
            let encoder =
                zstd::Encoder::new(compressed, level).with_path("compress", &temp_path)?;
            let (encoder, diff_id) = write_tar(encoder, entries, settings.epoch)?;
            (encoder.finish().with_path("compress", &temp_path)?, diff_id)
        }
    };
    let (buffered, digest, size) = compressed.finish();
    let temp = buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .with_path("write", &temp_path)?
        .into_inner();
    store.commit(temp, &digest)?;
    finisher.done(size, digest.clone());
    Ok(WrittenLayer {
        digest,
        diff_id,
        size,
    })
}

/// How many blocks of parallel gzip the layer's file data fills (at least one).
fn blocks_in(entries: &[Entry]) -> usize {
    let bytes: u64 = entries
        .iter()
        .map(|entry| match &entry.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    usize::try_from(bytes.div_ceil(super::pgzip::BLOCK as u64))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The diff_id `entries` would have as a layer: the tar stream hashed, nothing compressed or
/// stored. A key that travels between machines, since it depends only on the entries' bytes
/// and metadata (see `dockless_shared_cache`).
pub fn diff_id(entries: &[Entry], epoch: u64) -> Result<Digest, LayerError> {
    Ok(write_tar(io::sink(), entries, epoch)?.1)
}

/// Writes the tar stream into `output`, hashing it on the way; returns the output and the diff_id.
fn write_tar<W: Write>(
    output: W,
    entries: &[Entry],
    epoch: u64,
) -> Result<(W, Digest), LayerError> {
    let mut builder = tar::Builder::new(HashingWriter::new(output));
    for entry in entries {
        append_entry(&mut builder, entry, epoch).map_err(|e| match e {
            AppendError::Io(source) => LayerError::Entry {
                path: entry.path.clone(),
                source,
            },
            AppendError::Changed(expected) => LayerError::Changed {
                path: entry.path.clone(),
                expected,
            },
        })?;
    }
    let hashing = builder.into_inner().map_err(|source| LayerError::Entry {
        path: "(end of archive)".into(),
        source,
    })?;
    let (output, diff_id, _) = hashing.finish();
    Ok((output, diff_id))
}

enum AppendError {
    Io(io::Error),
    Changed(u64),
}

impl From<io::Error> for AppendError {
    fn from(e: io::Error) -> Self {
        AppendError::Io(e)
    }
}

/// Largest size a USTAR header can hold (eleven octal digits).
const USTAR_MAX_SIZE: u64 = 0o77_777_777_777;

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &Entry,
    epoch: u64,
) -> Result<(), AppendError> {
    let mut header = Header::new_ustar();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();

    let name = match entry.kind {
        EntryKind::Directory => format!("{}/", entry.path),
        _ => entry.path.clone(),
    };
    set_name(&mut header, &name, &mut pax)?;
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(epoch);
    header.set_size(0);
    set_owner_names(&mut header)?;

    let mut file = None;
    match &entry.kind {
        EntryKind::Directory => header.set_entry_type(EntryType::Directory),
        EntryKind::File { source, size } => {
            header.set_entry_type(EntryType::Regular);
            if *size > USTAR_MAX_SIZE {
                pax.push(("size".into(), size.to_string().into_bytes()));
            } else {
                header.set_size(*size);
            }
            file = Some((File::open(source)?, *size));
        }
        EntryKind::Symlink { target } => {
            header.set_entry_type(EntryType::Symlink);
            set_link_name(&mut header, target, &mut pax)?;
        }
        EntryKind::Hardlink { target } => {
            header.set_entry_type(EntryType::Link);
            set_link_name(&mut header, target, &mut pax)?;
        }
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            header.set_entry_type(if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                EntryType::Char
            } else {
                EntryType::Block
            });
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
        }
        EntryKind::Fifo => header.set_entry_type(EntryType::Fifo),
    }
    for (key, value) in &entry.xattrs {
        pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
    }
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    header.set_cksum();
    match file {
        Some((file, size)) => {
            // Read exactly the size the header announced: a file that grew or shrank since it was
            // listed must not produce a corrupt archive.
            let mut limited = io::Read::take(file, size);
            let counting = CountingReader {
                inner: &mut limited,
                count: 0,
            };
            // Read in large pieces: `io::copy` from a `BufReader` reads straight into its
            // buffer and writes the whole buffer on, instead of 8 KiB at a time.
            let capacity = usize::try_from(size)
                .unwrap_or(usize::MAX)
                .clamp(8 << 10, 256 << 10);
            let mut buffered = io::BufReader::with_capacity(capacity, counting);
            builder.append(&header, &mut buffered)?;
            if buffered.get_ref().count != size {
                return Err(AppendError::Changed(size));
            }
        }
        None => builder.append(&header, io::empty())?,
    }
    Ok(())
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: io::Read> io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // An interrupted build stops within one read, not after the whole file.
        dockless_oci::cancel::check_io()?;
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// USTAR names are ASCII and at most 100 bytes (or a 155-byte prefix and a 100-byte name split
/// at a `/`); anything else goes into a PAX `path` record, with a truncated ASCII name in the
/// header for readers that ignore PAX. The bytes are written as given (no normalisation), so a
/// directory keeps its trailing `/` as Docker writes it.
fn set_name(header: &mut Header, name: &str, pax: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    let (prefix, rest) = split_ustar_name(name).unwrap_or_else(|| {
        pax.push(("path".into(), name.as_bytes().to_vec()));
        let fallback = name
            .char_indices()
            .take_while(|(i, c)| c.is_ascii() && *i < 100);
        ("", &name[..fallback.last().map_or(0, |(i, _)| i + 1)])
    });
    let ustar = header
        .as_ustar_mut()
        .ok_or_else(|| io::Error::other("not a USTAR header"))?;
    ustar.name = [0; 100];
    ustar.name[..rest.len()].copy_from_slice(rest.as_bytes());
    ustar.prefix = [0; 155];
    ustar.prefix[..prefix.len()].copy_from_slice(prefix.as_bytes());
    Ok(())
}

/// Splits `name` into USTAR's prefix and name fields, if it fits them.
fn split_ustar_name(name: &str) -> Option<(&str, &str)> {
    if !name.is_ascii() {
        return None;
    }
    if name.len() <= 100 {
        return Some(("", name));
    }
    // The split must be at a `/`, with the prefix at most 155 bytes and the rest at most 100;
    // a directory's trailing `/` stays with the rest.
    let body = name.strip_suffix('/').unwrap_or(name);
    body.char_indices()
        .filter(|&(i, c)| c == '/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0)
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .next()
}

fn set_link_name(
    header: &mut Header,
    target: &str,
    pax: &mut Vec<(String, Vec<u8>)>,
) -> io::Result<()> {
    if target.is_ascii() && target.len() <= 100 && header.set_link_name_literal(target).is_ok() {
        return Ok(());
    }
    pax.push(("linkpath".into(), target.as_bytes().to_vec()));
    let fallback: String = target.chars().filter(char::is_ascii).take(100).collect();
    header.set_link_name_literal(fallback)
}

fn set_owner_names(header: &mut Header) -> io::Result<()> {
    header.set_username("")?;
    header.set_groupname("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COMPRESSING: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    /// Counts the gzip threads of the layers being written in this process, and the peak.
    pub(super) struct Compressing(usize);

    impl Compressing {
        pub(super) fn start(threads: usize) -> Self {
            let now = COMPRESSING.fetch_add(threads, Ordering::SeqCst) + threads;
            PEAK.fetch_max(now, Ordering::SeqCst);
            Compressing(threads)
        }
    }

    impl Drop for Compressing {
        fn drop(&mut self) {
            COMPRESSING.fetch_sub(self.0, Ordering::SeqCst);
        }
    }

    #[test]
    fn layers_written_side_by_side_share_one_budget_of_compression_threads() {
        let cores = dockless_oci::parallel::cores();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        // Three blocks each, so that every writer alone would use three threads or more.
        let mut noise = vec![0u8; 3 * super::super::pgzip::BLOCK];
        let mut state = 1u32;
        for byte in &mut noise {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *byte = (state >> 24) as u8;
        }
        let writers: Vec<usize> = (0..cores * 2 + 2).collect();
        let digests = dockless_oci::parallel::map_in_order(&writers, writers.len(), |i| {
            let source = dir.path().join(format!("file-{i}"));
            std::fs::write(&source, &noise).unwrap();
            let entries = [Entry {
                path: "noise".into(),
                kind: EntryKind::File {
                    source,
                    size: noise.len() as u64,
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
                xattrs: Vec::new(),
            }];
            let settings = LayerSettings {
                compression: Compression::Gzip { level: 1 },
                epoch: 0,
            };
            write_layer(&store, &entries, settings, None)
                .unwrap()
                .digest
        })
        .unwrap();
        assert!(
            digests.windows(2).all(|d| d[0] == d[1]),
            "same bytes, same layer"
        );
        let peak = PEAK.load(Ordering::SeqCst);
        assert!(
            peak <= cores,
            "{peak} gzip threads at once on {cores} cores"
        );
        assert!(blocks_in(&[]) == 1);
    }
}
