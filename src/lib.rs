//! dockless builds OCI container images from a template context and pushes them straight to a
//! registry: no Docker daemon, no root, no `docker login`.
//!
//! Data flows one way: [`dockerfile`] parses and expands the instructions, [`context`] walks the
//! build context under `.dockerignore`, [`layer`] turns file sets into deterministic compressed
//! layers, [`image`] assembles config and manifest, [`store`] keeps every blob content-addressed,
//! and [`registry`] speaks the distribution API.

pub mod build;
pub mod cleanup;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod e2b;
pub mod fs_error;
pub mod image;
pub mod layer;
pub mod layout;
pub mod live;
pub mod parallel;
pub mod publish;
pub mod registry;
pub mod remote;
pub mod run;
pub mod shared_cache;
pub mod store;
