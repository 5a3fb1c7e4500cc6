//! Diagnostics on stderr through `tracing`: -q, -v…-vvv, RUST_LOG and NO_COLOR.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "dockless=info,warn",
        (false, 2) => "dockless=debug,info",
        (false, _) => "trace",
    };
    // RUST_LOG, when set, says exactly what to show.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(verbose >= 2)
        .without_time()
        .init();
}
