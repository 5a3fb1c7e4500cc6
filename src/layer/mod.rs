//! Deterministic layer tars, compression, and both digests in one pass.

pub mod entry;

pub use entry::{Entry, EntryKind};
