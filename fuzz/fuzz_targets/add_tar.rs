//! Bytes as an archive given to ADD: detected, then unpacked into a staging directory. Whatever
//! happens, nothing may be written outside the staging directory.
#![no_main]

use std::fs;

use dockless_layer::archive::{detect_archive, unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("input");
    fs::write(&archive, bytes).unwrap();
    let staging = dir.path().join("staging");
    fs::create_dir(&staging).unwrap();
    if let Ok(Some(compression)) = detect_archive(&archive) {
        let _ = unpack(&archive, compression, &staging);
    }
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["input", "staging"], "something was written outside staging");
});
