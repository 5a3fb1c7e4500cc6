//! A WWW-Authenticate header value, as a hostile registry might send it.
#![no_main]

use dockless_registry::{parse_challenges, preferred_challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &str| {
    let challenges = parse_challenges(header);
    if let Some(challenge) = preferred_challenge(&challenges) {
        let _ = challenge.realm();
    }
});
