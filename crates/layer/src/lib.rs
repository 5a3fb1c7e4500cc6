//! Deterministic layer tars, compression, and both digests in one pass.
//!
//! May use: oci, context.

pub mod archive;
pub mod cache;
mod entry;
mod pgzip;
mod writer;

pub use cache::write_layer_cached;
pub use entry::{Entry, EntryKind};

pub use writer::{LayerError, LayerSettings, OnLive, WrittenLayer, diff_id, write_layer};
