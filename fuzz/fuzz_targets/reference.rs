//! Image references: whatever parses must print as a reference that parses back to the same.
#![no_main]

use dockless_registry::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(reference) = Reference::parse(text) else {
        return;
    };
    let printed = reference.to_string();
    let again = Reference::parse(&printed)
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again.to_string(), printed, "{text:?}");
});
