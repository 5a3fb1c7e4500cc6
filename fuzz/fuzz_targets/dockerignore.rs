//! A .dockerignore (before the first NUL) and paths to match against it (the lines after).
#![no_main]

use dockless_context::ignore::IgnoreRules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (rules, paths) = text.split_once('\0').unwrap_or((text, "a/b/c\nnode_modules/x\n.git"));
    let Ok(rules) = IgnoreRules::parse(rules) else {
        return;
    };
    for path in paths.lines() {
        let _ = rules.is_excluded(path);
        let _ = rules.must_walk_excluded_dir(path);
    }
});
