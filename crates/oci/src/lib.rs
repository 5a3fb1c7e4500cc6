//! The image format and the store it lands in: `sha256:` digests, image config, manifest and
//! index documents, OCI layouts, and the local content-addressed store with every area under it
//! (blobs, unpacked trees, caches, sessions' temporary files) and their cleanup.
//!
//! May use: no other dockless crate. Everything else builds on it.

// The store's layout: every area, what it holds, which prune removes it; last-use marks.
pub mod areas;
// A build stopped by a signal: the request, the check long loops make, the RUN helpers to kill.
pub mod cancel;
// Temporary paths removed when a signal ends the process, where destructors do not run.
pub mod cleanup;
// `sha256:` digests (`Digest`) and writers that hash what passes through them.
pub mod digest;
// Go's duration syntax, as HEALTHCHECK flags and `prune --filter until=` write it.
pub mod duration;
// File-system errors that name the path and what was being done to it.
pub mod fs_error;
// Image config, manifest and index documents, and their media types.
pub mod image;
// OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/`).
pub mod layout;
// A blob readable while it is still being written, so a push can start before a layer ends.
pub mod live;
// Work spread over a few threads in order, and work run at a lower priority.
pub mod parallel;
// The store's sessions: locks held for a process's life, its temporary directory, the sweep.
mod session;
// The local content-addressed store every blob lands in once, named by its digest.
pub mod store;
// What the store holds (`du`) and making it smaller (`prune`, the size limit), least recently used first.
pub mod usage;
