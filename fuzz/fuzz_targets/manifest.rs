//! Manifest and index bytes as a registry or layout might hold them.
#![no_main]

use dockless_oci::image::{Index, Manifest, Platform};
use dockless_registry::{manifest_references, media_type_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = media_type_of(bytes);
    let _ = manifest_references(bytes);
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(bytes) {
        let _ = manifest.to_bytes();
    }
    if let Ok(index) = serde_json::from_slice::<Index>(bytes) {
        let _ = index.platforms();
        let _ = index.select(&"linux/amd64".parse::<Platform>().unwrap());
        let _ = index.to_bytes();
    }
});
