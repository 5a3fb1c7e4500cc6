//! For tests only: what the sandbox's unit tests and the integration tests share.

/// Whether a test that needs root may go on. Without root it fails with one line naming what is
/// missing, unless the run asks to skip such tests (`DOCKLESS_TEST_SKIP_ROOT=1`, never set in
/// CI): then it says it skipped, and the caller leaves out what needs root, visibly.
pub fn needs_root(why: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("DOCKLESS_TEST_SKIP_ROOT").is_some_and(|v| v == "1"),
        "this test needs root ({why}); run the tests as root, or set DOCKLESS_TEST_SKIP_ROOT=1 to skip it"
    );
    eprintln!("skipped (DOCKLESS_TEST_SKIP_ROOT=1): needs root ({why})");
    false
}
