//! The local E2B the tests use, runnable for a demo: the API and the legacy registry gateway
//! (in front of a real `docker-registry`), plus a plain registry for the registry flow.
//!
//! `cargo run --example local_e2b` prints the environment to point dockless at it, then serves
//! until interrupted (Ctrl-C stops it and the registries it started).
#![allow(dead_code)]

#[path = "../tests/it/support/http.rs"]
mod http;
#[path = "../tests/it/support/registry.rs"]
mod registry;
#[path = "../tests/it/support/token_server.rs"]
mod token_server;

/// The tests' module layout, which the double names.
mod support {
    pub(crate) use crate::{http, registry};
}

#[path = "../tests/it/e2b/double.rs"]
mod double;

use support::registry::{RegistryAuth, TestRegistry};

const DEMO_API_KEY: &str = "e2b_demo0000000000000000000000000001";
const DEMO_ACCESS_TOKEN: &str = "sk_e2b_demo00000000000000000000000002";

#[tokio::main]
async fn main() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let e2b = double::E2bDouble::start(&backing.host).await;
    e2b.allow_api_key(DEMO_API_KEY);
    e2b.allow_access_token(DEMO_ACCESS_TOKEN);
    println!("# A local E2B is up. In another shell:");
    for (name, value) in e2b.env() {
        println!("export {name}={value}");
    }
    println!("# registry flow (API key):");
    println!(
        "E2B_API_KEY={DEMO_API_KEY} dockless template build fixtures/example --image {}/sandboxes/example:demo",
        user_registry.host
    );
    println!("# gateway flow (access token):");
    println!("E2B_ACCESS_TOKEN={DEMO_ACCESS_TOKEN} dockless template build fixtures/example");
    println!("# Ctrl-C to stop.");
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}
