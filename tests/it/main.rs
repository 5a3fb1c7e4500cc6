//! Integration tests: one binary, real registry processes on loopback, test doubles in-process.

mod architecture;
mod build;
mod buildx_flags;
mod cancel;
mod catalog;
mod corpus;
mod e2b;
mod escapes;
mod escapes_contained;
mod escapes_debian;
mod help_examples;
mod hung;
mod leaks;
mod library;
mod push;
mod registry_auth;
mod registry_faults;
mod registry_push;
mod run;
mod run_snapshots;
mod shared_cache;
mod stage_trees;
mod store_usage;
mod streaming;
mod support;
