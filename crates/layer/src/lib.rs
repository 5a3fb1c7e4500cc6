//! Deterministic layer tars, compression, and both digests in one pass.
//!
//! May use: oci, context.

pub mod archive;
pub mod cache;
mod entry;
mod pgzip;
pub mod read;
pub mod tar_reader;
mod writer;

pub use entry::{Entry, EntryKind};

pub use writer::{LayerError, LayerSettings, OnLive, WrittenLayer, diff_id, write_layer};
