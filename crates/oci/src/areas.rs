//! The store's layout: every area under its root, what it holds, and what removing it costs.
//!
//! `dockless du` and `dockless prune` read [`AREAS`]; the code that writes an area names its
//! folder from here. An item of an area is one entry of its folder (a blob, an unpacked tree,
//! a cache record, a cache mount's directory, a listing); its last use is its modification
//! time, which the code that uses an item moves forward ([`mark_used`]), so access times
//! (often off: `noatime`) are never needed. Outside the areas the root holds only
//! `oci-layout`, `index.json` and the store's lock.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Blobs by digest: layers, configs and manifests (the store is an OCI image layout).
pub(crate) const BLOBS: &str = "blobs/sha256";
/// Base images' file systems, unpacked once per layer chain: the lowest overlay lower of a
/// stage's RUN steps, or copied for each build where overlay is not used.
pub const TREES: &str = "rootfs";
/// RUN steps' layers by the step's key.
pub const RUN_CACHE: &str = "run-cache";
/// COPY/ADD layers by the files' key.
pub const LAYER_CACHE: &str = "layer-cache";
/// `RUN --mount=type=cache` directories (and their sharing locks).
pub const CACHE_MOUNTS: &str = "cache-mounts";
/// What each layer holds, read once from its blob.
pub const LISTINGS: &str = "layer-listings";
/// Where each blob was pushed, for cross-repository mounts.
pub(crate) const LOCATIONS: &str = "locations";
/// Processes' temporary files (see [`crate::session`]).
pub(crate) const TMP: &str = crate::session::TMP;

/// What an area holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Blobs,
    UnpackedTrees,
    RunCache,
    LayerCache,
    CacheMounts,
    Listings,
    Locations,
    Tmp,
}

impl Kind {
    /// The name `du` and `prune` show.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Blobs => "blobs",
            Kind::UnpackedTrees => "unpacked-trees",
            Kind::RunCache => "run-cache",
            Kind::LayerCache => "layer-cache",
            Kind::CacheMounts => "cache-mounts",
            Kind::Listings => "listings",
            Kind::Locations => "locations",
            Kind::Tmp => "tmp",
        }
    }
}

/// Which prune removes an area's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrunedBy {
    /// Every prune: what dead processes left.
    Always,
    /// `prune`: made again from the store alone (no network, no rerun).
    Default,
    /// `prune --all` (and the size limit): costs a download, a rerun or a recompression.
    All,
}

/// One area of the store.
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub kind: Kind,
    /// The folder, relative to the store's root.
    pub dir: &'static str,
    pub pruned_by: PrunedBy,
}

/// Every area of the store.
pub(crate) const AREAS: [Area; 8] = [
    area(Kind::Blobs, BLOBS, PrunedBy::All),
    area(Kind::UnpackedTrees, TREES, PrunedBy::Default),
    area(Kind::RunCache, RUN_CACHE, PrunedBy::All),
    area(Kind::LayerCache, LAYER_CACHE, PrunedBy::All),
    area(Kind::CacheMounts, CACHE_MOUNTS, PrunedBy::All),
    area(Kind::Listings, LISTINGS, PrunedBy::Default),
    area(Kind::Locations, LOCATIONS, PrunedBy::All),
    area(Kind::Tmp, TMP, PrunedBy::Always),
];

const fn area(kind: Kind, dir: &'static str, pruned_by: PrunedBy) -> Area {
    Area {
        kind,
        dir,
        pruned_by,
    }
}

/// Records that the item at `path` was just used (its modification time becomes now), so
/// that a prune keeping the most recently used keeps it. Best effort: a store on a read-only
/// or foreign file system only loses the ordering.
pub fn mark_used(path: &Path) {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    // SAFETY: a valid C string and an array of two timespecs.
    unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) };
}
