//! The `dockless` command: the RUN sandbox's helper, or parse flags, set up logging, run the
//! command (see [`cli`]), map the outcome to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The RUN sandbox helper: it must act before any thread starts (a multi-threaded process
    // cannot enter a user namespace), so before flags, logging and the signal handler.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(dockless_sandbox::SANDBOX_ARG)) {
        let code = dockless_sandbox::sandbox::helper_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // Unprivileged builds keep bases in their sandbox's ID range, which only the helper removes.
    dockless_oci::cleanup::set_namespace_remover(
        dockless_sandbox::overlay::rootless::remove_in_userns,
    );
    // SIGINT/SIGTERM/SIGHUP stop the build cleanly (see cli::interrupt).
    cli::interrupt::watch();
    let command = cli::args::Cli::parse();
    cli::logging::init(command.quiet, command.verbose);
    let outcome = cli::run(command);
    // Interrupted: the failure the stop caused is not the news.
    cli::interrupt::exit_if_interrupted();
    dockless_oci::cleanup::remove_all();
    match outcome {
        Ok(code) => code,
        Err(error) => cli::failure(&error),
    }
}
