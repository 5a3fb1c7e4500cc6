//! Any text: parse it, then expand every instruction with a few variables set, as a build does.
#![no_main]

use dockless_dockerfile::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(dockerfile) = parse(text) else {
        return;
    };
    let vars = |name: &str| match name {
        "HOME" => Some("/root".to_string()),
        "EMPTY" => Some(String::new()),
        "LONG" => Some("x".repeat(64)),
        _ => None,
    };
    for instruction in &dockerfile.instructions {
        let _ = instruction.command.expand(dockerfile.escape, &vars);
    }
});
