//! Deterministic layer tars, compression, and both digests in one pass.
//!
//! May use: oci, context.

pub mod archive;
pub mod cache;
pub mod entry;
pub mod pgzip;
pub mod read;
pub mod tar_reader;
pub mod writer;

pub use entry::{Entry, EntryKind};

pub use writer::{LayerError, LayerSettings, OnLive, WrittenLayer, diff_id, write_layer};
