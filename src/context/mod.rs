//! The build context: walking it, `.dockerignore`, and keeping every read inside it.

pub mod ignore;
pub mod pattern;
