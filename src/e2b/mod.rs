//! What is E2B's: `e2b.toml`, credentials, the API client, and the two template flows.

pub mod config;
