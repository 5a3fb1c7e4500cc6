//! Image config and manifest.
