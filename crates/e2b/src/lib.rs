//! What is E2B's: `e2b.toml`, the one credential, the API client, and the two template flows.
//!
//! [`credentials::resolve`] picks the credential, [`endpoints::Endpoints`] says where E2B is,
//! [`api::ApiClient`] speaks to it with one credential header, [`flows`] pushes and builds,
//! [`status`] follows the build, [`writeback`] records the template ID in `e2b.toml`.
//!
//! May use: oci, dockerfile, registry, build.

pub mod api;
pub mod config;
pub mod credentials;
pub mod endpoints;
pub mod env;
pub mod flows;
pub mod pull;
mod refusal;
pub mod rules;
mod sandbox;
mod schema;
pub mod status;
pub mod template;
mod writeback;
