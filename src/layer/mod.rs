//! Deterministic layer tars, compression, and both digests in one pass.
