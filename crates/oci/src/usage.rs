//! What the store holds (`dockless du`) and making it smaller (`dockless prune`, the size
//! limit after each build), over the table of areas in [`crate::areas`].
//!
//! A prune holds the store's lock exclusively ([`crate::session::exclusive`]), so it never
//! removes what a running build uses: it waits for running builds to end (the size limit does
//! not wait: it skips, and the last build to end applies it), and a build that starts during a
//! prune waits for it. Items go least recently used first.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::areas::{AREAS, Area, Kind, PrunedBy};
use crate::cleanup::remove_tree;
use crate::session;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("could not read the store at {}: {source}", root.display())]
    Read {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not lock the store at {} for a prune: {source}", root.display())]
    Lock {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Value(String),
}

/// One item of an area: an entry of its folder.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: Kind,
    pub path: PathBuf,
    pub bytes: u64,
    pub last_used: SystemTime,
}

/// What one area holds.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AreaUsage {
    pub kind: Kind,
    pub dir: &'static str,
    pub items: u64,
    pub bytes: u64,
    pub pruned_by: PrunedBy,
    /// Seconds since the Unix epoch of the most recent use, if the area holds anything.
    pub last_used: Option<u64>,
}

/// What every area of the store at `root` holds (a store never made holds nothing).
pub fn du(root: &Path) -> Result<Vec<AreaUsage>, UsageError> {
    AREAS
        .iter()
        .map(|area| {
            let items = items(root, area)?;
            Ok(AreaUsage {
                kind: area.kind,
                dir: area.dir,
                items: items.len() as u64,
                bytes: items.iter().map(|i| i.bytes).sum(),
                pruned_by: area.pruned_by,
                last_used: items.iter().map(|i| i.last_used).max().map(epoch_seconds),
            })
        })
        .collect()
}

/// The items of `area`, measured.
pub fn items(root: &Path, area: &Area) -> Result<Vec<Item>, UsageError> {
    let dir = root.join(area.dir);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(UsageError::Read {
                root: root.to_owned(),
                source,
            });
        }
    };
    let mut items = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // A cache mount's sharing lock goes with its directory; a session's lock with its own.
        if matches!(area.kind, Kind::CacheMounts | Kind::Tmp) && name.ends_with(".lock") {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        items.push(Item {
            kind: area.kind,
            bytes: size_of(&path, &meta),
            last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            path,
        });
    }
    Ok(items)
}

/// The bytes of the regular files under `path`, each file (hard links) once.
fn size_of(path: &Path, meta: &fs::Metadata) -> u64 {
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}

/// What a prune removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Also what costs a download, a rerun or a recompression (blobs, caches, cache mounts).
    pub all: bool,
    /// Keep the most recently used items while the store stays within this many bytes.
    pub keep_storage: Option<u64>,
    /// Only items not used for this long (`--filter until=DURATION`).
    pub unused_for: Option<Duration>,
}

/// What a prune removed, by kind: items and bytes.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    pub removed: Vec<RemovedKind>,
    pub bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RemovedKind {
    pub kind: Kind,
    pub items: u64,
    pub bytes: u64,
}

/// Prunes the store at `root`: waits for running builds when `wait`, else returns `None`
/// when one runs.
pub fn prune(
    root: &Path,
    options: &PruneOptions,
    wait: bool,
) -> Result<Option<Pruned>, UsageError> {
    if !root.join(session::STORE_LOCK).exists() && !root.join(session::TMP).exists() {
        return Ok(Some(Pruned::default()));
    }
    let lock_error = |source| UsageError::Lock {
        root: root.to_owned(),
        source,
    };
    let running = session::live_sessions(root);
    if wait && running > 0 {
        tracing::warn!(
            builds = running,
            "waiting for the builds using the store to end"
        );
    }
    let Some(_exclusive) = session::exclusive(root, wait).map_err(lock_error)? else {
        return Ok(None);
    };
    let mut everything = Vec::new();
    for area in &AREAS {
        everything.extend(items(root, area)?);
    }
    let (mut candidates, kept): (Vec<Item>, Vec<Item>) = everything
        .into_iter()
        .partition(|item| chosen(item, options));
    candidates.sort_by_key(|item| item.last_used);
    let mut total: u64 = kept.iter().chain(&candidates).map(|i| i.bytes).sum();
    let mut pruned = Pruned::default();
    for item in candidates {
        let always = item.kind == Kind::Tmp;
        if !always && options.keep_storage.is_some_and(|keep| total <= keep) {
            continue;
        }
        if remove_item(&item).is_ok() {
            total = total.saturating_sub(item.bytes);
            pruned.count(&item);
        }
    }
    Ok(Some(pruned))
}

/// Whether `item` may go under `options` (before the size is considered).
fn chosen(item: &Item, options: &PruneOptions) -> bool {
    let pruned_by = AREAS
        .iter()
        .find(|a| a.kind == item.kind)
        .map_or(PrunedBy::All, |a| a.pruned_by);
    match pruned_by {
        // Only dead processes' files are left when the lock is held exclusively.
        PrunedBy::Always => return true,
        PrunedBy::Default => {}
        PrunedBy::All if options.all => {}
        PrunedBy::All => return false,
    }
    options.unused_for.is_none_or(|age| {
        SystemTime::now()
            .duration_since(item.last_used)
            .is_ok_and(|unused| unused >= age)
    })
}

fn remove_item(item: &Item) -> io::Result<()> {
    remove_tree(&item.path)?;
    // A cache mount's sharing lock, a session's lock.
    let mut lock = item.path.clone().into_os_string();
    lock.push(".lock");
    let _ = fs::remove_file(lock);
    Ok(())
}

impl Pruned {
    fn count(&mut self, item: &Item) {
        self.bytes += item.bytes;
        match self.removed.iter_mut().find(|r| r.kind == item.kind) {
            Some(kind) => {
                kind.items += 1;
                kind.bytes += item.bytes;
            }
            None => self.removed.push(RemovedKind {
                kind: item.kind,
                items: 1,
                bytes: item.bytes,
            }),
        }
    }
}

/// After a build: keeps the store at `root` within `limit` bytes, least recently used first,
/// every area counted. Skipped (`None`) while another build uses the store.
pub fn keep_under(root: &Path, limit: u64) -> Result<Option<Pruned>, UsageError> {
    let options = PruneOptions {
        all: true,
        keep_storage: Some(limit),
        unused_for: None,
    };
    prune(root, &options, false)
}

fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A size as Docker reads `--keep-storage`: a number with an optional unit (`b`, `k`/`kb`/
/// `kib`, `m…`, `g…`, `t…`, any case), each unit 1024 times the one before.
pub fn parse_size(text: &str) -> Result<u64, UsageError> {
    let bad = || {
        UsageError::Value(format!(
            "invalid size {text:?}: expected a number of bytes with an optional unit, e.g. 500MB or 10GB"
        ))
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return Err(bad()),
    };
    let bytes = number * 1024f64.powi(power);
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `--filter until=DURATION` as buildx reads it (`24h`, `2h30m`, `90s`); other keys are refused.
pub fn parse_filter(text: &str) -> Result<Duration, UsageError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(UsageError::Value(format!(
            "--filter {text}: expected until=DURATION, e.g. until=24h"
        )));
    };
    if key.trim() != "until" {
        return Err(UsageError::Value(format!(
            "--filter {text}: only until=DURATION is supported (the store has no build records with ids, parents or types)"
        )));
    }
    let parsed = crate::duration::parse_go_duration(value.trim())
        .map_err(|e| UsageError::Value(format!("--filter {text}: {e}")))?;
    if parsed.negative {
        return Err(UsageError::Value(format!(
            "--filter {text}: the duration cannot be negative"
        )));
    }
    Ok(Duration::from_nanos(parsed.nanos))
}

/// Bytes as Docker shows them: decimal units, three significant digits (`45.2MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if unit == 0 || value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1kb").unwrap(), 1024);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5m").unwrap(), 3 << 19);
        for bad in ["", "ten", "5XB", "-1", "1..2"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(45_230_000), "45.2MB");
        assert_eq!(human_size(1_500), "1.50kB");
    }

    #[test]
    fn filters_take_until_only() {
        assert_eq!(
            parse_filter("until=24h").unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            parse_filter("until=2h30m").unwrap(),
            Duration::from_secs(9_000)
        );
        assert!(
            parse_filter("id=abc")
                .unwrap_err()
                .to_string()
                .contains("only until")
        );
        assert!(parse_filter("until=soon").is_err());
        assert!(parse_filter("until").is_err());
    }

    #[test]
    fn keep_storage_removes_the_least_recently_used_first() {
        let root = tempfile::tempdir().unwrap();
        let blobs = root.path().join(crate::areas::BLOBS);
        fs::create_dir_all(&blobs).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for (name, age) in [("a", 3), ("b", 1), ("c", 2)] {
            let path = blobs.join(name);
            fs::write(&path, vec![0u8; 100]).unwrap();
            let file = fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(old + Duration::from_secs(600 - age * 100))
                .unwrap();
        }
        fs::write(root.path().join(session::STORE_LOCK), "").unwrap();
        let options = PruneOptions {
            all: true,
            keep_storage: Some(150),
            unused_for: None,
        };
        let pruned = prune(root.path(), &options, false).unwrap().unwrap();
        assert_eq!(pruned.bytes, 200);
        assert!(blobs.join("b").exists(), "the most recently used stays");
        assert!(!blobs.join("a").exists() && !blobs.join("c").exists());
        let without_all = PruneOptions::default();
        assert_eq!(
            prune(root.path(), &without_all, false)
                .unwrap()
                .unwrap()
                .bytes,
            0
        );
    }
}
