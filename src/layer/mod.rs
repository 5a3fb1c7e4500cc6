//! Deterministic layer tars, compression, and both digests in one pass.

pub mod archive;
pub mod entry;

pub use entry::{Entry, EntryKind};
