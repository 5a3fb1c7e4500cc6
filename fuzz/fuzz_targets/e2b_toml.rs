//! e2b.toml text, parsed as a build reads it (the error message included).
#![no_main]

use std::path::Path;

use dockless_e2b::config::TemplateConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(error) = TemplateConfig::parse(text, Path::new("e2b.toml")) {
        let _ = error.to_string();
    }
});
