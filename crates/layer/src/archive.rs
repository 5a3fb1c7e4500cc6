//! `ADD` of a local archive, as Docker does it.
//!
//! Detection follows BuildKit's `isArchivePath`: a regular file whose first bytes name a
//! compression (bzip2, gzip, xz, zstd; anything else is read as-is) and whose decompressed stream
//! starts with a tar header Go's `archive/tar` accepts. Anything else is copied as a plain file.
//!
//! Unpacking follows moby's `archive.Unpack` run in a chroot at the destination: names are
//! `path.Clean`ed, a leading `/` keeps the entry inside the destination, the root entry is skipped,
//! PAX global headers are ignored, and the tree is built with the kernel's rules (see `tree.rs`).
//! Where Docker relies on the chroot to neutralise a name or hard-link target that climbs out with
//! `..`, this module refuses the archive instead (moby's `breakoutError` outside a chroot).
//! Sparse files and contiguous-file entries are refused (Docker refuses both, except that it
//! expands PAX-format sparse files). The archive is read with the same decompressors and tar
//! parser as image layers ([`crate::read`], [`crate::tar_reader`]).

mod tree;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::Entry;
use crate::read::{CompressionFormat, decompress};
use crate::tar_reader::{TarCopyError, TarError, TarHeader, TarReader};
use dockless_oci::digest::Digest;
use tree::{Metadata, Tree, TreeError, TreeNodeKind};

/// An archive that `ADD` cannot extract. Every variant names the archive file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot open archive {}: {source}", archive.display())]
    Open {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read archive {} (it may be corrupted): {source}", archive.display())]
    Read {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive {} is not a valid tar archive: {reason}; recreate it with tar", archive.display())]
    Malformed { archive: PathBuf, reason: String },
    #[error(
        "archive {} ends in the middle of {entry}; the file is truncated, recreate or re-download it",
        archive.display()
    )]
    Truncated { archive: PathBuf, entry: String },
    #[error(
        "entry `{entry}` of archive {} climbs out of the destination with `..`; \
         recreate the archive with paths relative to its root",
        archive.display()
    )]
    PathEscape { archive: PathBuf, entry: String },
    #[error(
        "hard link `{entry}` -> `{target}` in archive {} points outside the archive; \
         recreate the archive without it",
        archive.display()
    )]
    LinkEscape {
        archive: PathBuf,
        entry: String,
        target: String,
    },
    #[error(
        "hard link `{entry}` -> `{target}` in archive {} cannot be made: {reason}",
        archive.display()
    )]
    BadLink {
        archive: PathBuf,
        entry: String,
        target: String,
        reason: String,
    },
    #[error("entry `{entry}` of archive {} cannot be extracted: {reason}", archive.display())]
    BadEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error(
        "cannot stage the contents of `{entry}` from archive {} in {}: {source}",
        archive.display(),
        staging.display()
    )]
    Staging {
        archive: PathBuf,
        entry: String,
        staging: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why a layer blob is not the layer a diff_id names.
#[derive(Debug, thiserror::Error)]
pub enum DiffIdError {
    #[error("does not unpack: {0}")]
    Unreadable(#[from] io::Error),
    #[error("unpacks to {actual}, not to the diff_id {claimed} its entry claims")]
    Mismatch { actual: Digest, claimed: Digest },
}

/// Checks that the layer blob at `path` unpacks to `claimed`: for a layer that came from
/// somewhere untrusted (a shared cache), whose digest alone says nothing of its diff_id.
pub fn check_diff_id(path: &Path, claimed: &Digest) -> Result<(), DiffIdError> {
    let actual = uncompressed_digest(path)?;
    if actual != *claimed {
        return Err(DiffIdError::Mismatch {
            actual,
            claimed: claimed.clone(),
        });
    }
    Ok(())
}

/// The sha256 of a (possibly compressed) layer blob's uncompressed bytes: what its diff_id must
/// be.
fn uncompressed_digest(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 10];
    let magic_len = read_up_to(&mut file, &mut magic)?;
    let compression = CompressionFormat::detect(magic.get(..magic_len).unwrap_or_default());
    file.seek(SeekFrom::Start(0))?;
    let reader = decompress(BufReader::new(file), compression)?;
    Ok(dockless_oci::digest::digest_reader(reader)?.0)
}

/// `Some(compression)` when the file is a tar archive (possibly compressed) that `ADD` must
/// extract; `None` when it must be copied as a plain file (not a regular file, unknown bytes, a
/// compressed stream that is not tar, an empty archive). Errors only when the file cannot be read.
/// A symlink is not followed (it is not a regular file): like Docker, resolve the source inside
/// the context first and pass the resolved path.
pub fn detect_archive(path: &Path) -> Result<Option<CompressionFormat>, ArchiveError> {
    let open_error = |source| ArchiveError::Open {
        archive: path.to_owned(),
        source,
    };
    let read_error = |source| ArchiveError::Read {
        archive: path.to_owned(),
        source,
    };
    let metadata = std::fs::symlink_metadata(path).map_err(open_error)?;
    if !metadata.is_file() {
        return Ok(None);
    }
    let mut file = File::open(path).map_err(open_error)?;
    let mut magic = [0u8; 10];
    let magic_len = read_up_to(&mut file, &mut magic).map_err(read_error)?;
    let compression = CompressionFormat::detect(magic.get(..magic_len).unwrap_or_default());
    file.seek(SeekFrom::Start(0)).map_err(read_error)?;

    // Decoder errors mean "not an archive"; errors reading the file itself are real errors.
    let file_failure = Rc::new(RefCell::new(None));
    let source = RecordingReader {
        inner: BufReader::new(file),
        failure: Rc::clone(&file_failure),
    };
    let first_header = decompress(source, compression).and_then(|stream| {
        TarReader::new(stream)
            .next_header()
            .map_err(|error| io::Error::other(format!("{error:?}")))
    });
    if let Some(failure) = file_failure.borrow_mut().take() {
        return Err(read_error(failure));
    }
    Ok(match first_header {
        Ok(Some(_)) => Some(compression),
        Ok(None) | Err(_) => None,
    })
}

/// Unpacks the archive into entries relative to its root, sorted by path. Regular files'
/// contents are written to new files under `staging` (a directory the caller owns and removes;
/// contents of entries later replaced stay there unreferenced).
pub fn unpack(
    path: &Path,
    compression: CompressionFormat,
    staging: &Path,
) -> Result<Vec<Entry>, ArchiveError> {
    let file = File::open(path).map_err(|source| ArchiveError::Open {
        archive: path.to_owned(),
        source,
    })?;
    let stream =
        decompress(BufReader::new(file), compression).map_err(|source| ArchiveError::Read {
            archive: path.to_owned(),
            source,
        })?;
    let mut unpacker = Unpacker {
        archive: path,
        staging,
        tar: TarReader::new(stream),
        tree: Tree::default(),
    };
    while let Some(header) = unpacker.next_header()? {
        unpacker.add(&header)?;
    }
    Ok(unpacker.tree.into_entries())
}

struct Unpacker<'a> {
    archive: &'a Path,
    staging: &'a Path,
    tar: TarReader<Box<dyn Read>>,
    tree: Tree,
}

/// Where a name lands, lexically.
enum Normalized {
    /// The archive root itself (`.`, `./`, `/`, empty).
    Root,
    /// Components with no `.`, `..` or empty ones.
    Inside(Vec<String>),
    /// `..` climbs above the root.
    Escape,
}

impl Unpacker<'_> {
    fn next_header(&mut self) -> Result<Option<TarHeader>, ArchiveError> {
        self.tar
            .next_header()
            .map_err(|error| self.tar_error(error, "a header"))
    }

    fn add(&mut self, header: &TarHeader) -> Result<(), ArchiveError> {
        let entry = String::from_utf8_lossy(&header.name).into_owned();
        let bad_entry = |reason: &str| ArchiveError::BadEntry {
            archive: self.archive.to_owned(),
            entry: entry.clone(),
            reason: reason.to_owned(),
        };
        if header.type_flag == b'g' {
            return Ok(());
        }
        if header.sparse {
            return Err(bad_entry(
                "GNU sparse files are not supported; recreate the archive without --sparse",
            ));
        }
        let name = std::str::from_utf8(&header.name)
            .map_err(|_| bad_entry("its name is not valid UTF-8"))?;
        let components = match normalize(name) {
            Normalized::Root => return Ok(()),
            Normalized::Escape => {
                return Err(ArchiveError::PathEscape {
                    archive: self.archive.to_owned(),
                    entry,
                });
            }
            Normalized::Inside(components) => components,
        };
        let metadata = self.metadata(header, &entry)?;
        let path = self
            .tree
            .place(&components)
            .map_err(|error| bad_entry(&tree_reason(&error)))?;

        match header.type_flag {
            b'5' => self.tree.put_directory(&path, metadata),
            b'0' => {
                let (source, size) = self.stage(&entry)?;
                self.tree
                    .put_node(&path, TreeNodeKind::File { source, size }, metadata);
            }
            b'1' => self.add_hardlink(header, &path, &entry, metadata)?,
            b'2' => {
                let target = std::str::from_utf8(&header.link_name)
                    .map_err(|_| bad_entry("its symlink target is not valid UTF-8"))?;
                // Linux ignores a symlink's mode; Docker does not chmod it, so it reads 0777.
                let metadata = Metadata {
                    mode: 0o777,
                    ..metadata
                };
                let kind = TreeNodeKind::Symlink {
                    target: target.to_owned(),
                };
                self.tree.put_node(&path, kind, metadata);
            }
            b'3' | b'4' => {
                let (major, minor) = match (
                    u32::try_from(header.dev_major),
                    u32::try_from(header.dev_minor),
                ) {
                    (Ok(major), Ok(minor)) => (major, minor),
                    _ => return Err(bad_entry("its device numbers are out of range")),
                };
                let kind = if header.type_flag == b'3' {
                    TreeNodeKind::CharDevice { major, minor }
                } else {
                    TreeNodeKind::BlockDevice { major, minor }
                };
                self.tree.put_node(&path, kind, metadata);
            }
            b'6' => self.tree.put_node(&path, TreeNodeKind::Fifo, metadata),
            other => {
                return Err(bad_entry(&format!(
                    "its entry type {:?} is not one Docker extracts",
                    char::from(other)
                )));
            }
        }
        Ok(())
    }

    fn add_hardlink(
        &mut self,
        header: &TarHeader,
        path: &str,
        entry: &str,
        metadata: Metadata,
    ) -> Result<(), ArchiveError> {
        let target = String::from_utf8_lossy(&header.link_name).into_owned();
        let bad_link = |reason: String| ArchiveError::BadLink {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            target: target.clone(),
            reason,
        };
        let Ok(target_name) = std::str::from_utf8(&header.link_name) else {
            return Err(bad_link("the target is not valid UTF-8".to_owned()));
        };
        let components = match normalize(target_name) {
            Normalized::Inside(components) => components,
            Normalized::Root => {
                return Err(bad_link(
                    "the target is the archive root, a directory".to_owned(),
                ));
            }
            Normalized::Escape => {
                return Err(ArchiveError::LinkEscape {
                    archive: self.archive.to_owned(),
                    entry: entry.to_owned(),
                    target,
                });
            }
        };
        self.tree
            .put_hardlink(path, &components, metadata)
            .map_err(|error| match error {
                TreeError::Missing(_) => bad_link(
                    "the target does not exist earlier in the archive; hard links must follow their target"
                        .to_owned(),
                ),
                TreeError::LinkToDirectory(_) => bad_link("the target is a directory".to_owned()),
                other => bad_link(tree_reason(&other)),
            })
    }

    /// The header's ownership, permission bits and xattrs, as Docker applies them.
    fn metadata(&self, header: &TarHeader, entry: &str) -> Result<Metadata, ArchiveError> {
        let bad_entry = |reason: &str| ArchiveError::BadEntry {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let uid = u64::try_from(header.uid).map_err(|_| bad_entry("its uid is negative"))?;
        let gid = u64::try_from(header.gid).map_err(|_| bad_entry("its gid is negative"))?;
        let mut xattrs = std::collections::BTreeMap::new();
        for (name, value) in &header.xattrs {
            let name = String::from_utf8(name.clone())
                .ok()
                .filter(|name| !name.is_empty())
                .ok_or_else(|| bad_entry("it has an extended attribute with an invalid name"))?;
            xattrs.insert(name, value.clone());
        }
        Ok(Metadata {
            mode: u32::try_from(header.mode & 0o7777).unwrap_or(0),
            uid,
            gid,
            xattrs,
        })
    }

    /// Copies the current entry's data into a new file under the staging directory.
    fn stage(&mut self, entry: &str) -> Result<(PathBuf, u64), ArchiveError> {
        let staging_error = |source| ArchiveError::Staging {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            staging: self.staging.to_owned(),
            source,
        };
        let mut staged = tempfile::Builder::new()
            .prefix("add-")
            .tempfile_in(self.staging)
            .map_err(staging_error)?;
        let copied = {
            let mut writer = BufWriter::new(staged.as_file_mut());
            let copied = self.tar.copy_data(&mut writer);
            let flushed = writer.flush();
            match copied {
                Ok(size) => flushed.map(|()| size).map_err(staging_error)?,
                Err(TarCopyError::Write(source)) => return Err(staging_error(source)),
                Err(TarCopyError::Archive(error)) => {
                    return Err(self.tar_error(error, &format!("entry `{entry}`")));
                }
            }
        };
        let (_, source) = staged.keep().map_err(|error| staging_error(error.error))?;
        Ok((source, copied))
    }

    fn tar_error(&self, error: TarError, entry: &str) -> ArchiveError {
        let archive = self.archive.to_owned();
        match error {
            TarError::Io(source) => ArchiveError::Read { archive, source },
            TarError::Truncated => ArchiveError::Truncated {
                archive,
                entry: entry.to_owned(),
            },
            TarError::Malformed(reason) => ArchiveError::Malformed { archive, reason },
        }
    }
}

fn tree_reason(error: &TreeError) -> String {
    match error {
        TreeError::NotADirectory(path) => {
            format!("`{path}` is on its path but is not a directory")
        }
        TreeError::Missing(path) => format!("`{path}` on its path does not exist"),
        TreeError::SymlinkLoop(path) => format!("too many levels of symbolic links at `{path}`"),
        TreeError::LinkToDirectory(path) => format!("`{path}` is a directory"),
    }
}

/// `path.Clean` plus Docker's breakout check: a leading `/` is relative to the root (and `..` at
/// the root stays there), a relative name may not climb above it.
fn normalize(name: &str) -> Normalized {
    let rooted = name.starts_with('/');
    let mut components: Vec<String> = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() && !rooted {
                    return Normalized::Escape;
                }
            }
            _ => components.push(component.to_owned()),
        }
    }
    if components.is_empty() {
        Normalized::Root
    } else {
        Normalized::Inside(components)
    }
}

/// Reads until `buf` is full or the file ends.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Passes reads through and keeps the first real I/O error, so that a failing disk is told apart
/// from a decoder rejecting the bytes.
struct RecordingReader<R> {
    inner: R,
    failure: Rc<RefCell<Option<io::Error>>>,
}

impl<R: Read> Read for RecordingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(error) if error.kind() != io::ErrorKind::Interrupted => {
                let copy = io::Error::new(error.kind(), error.to_string());
                self.failure.borrow_mut().get_or_insert(error);
                Err(copy)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
