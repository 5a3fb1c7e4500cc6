//! The `dockless` command: parse flags, set up logging, run, map the outcome to an exit code.

mod app;
mod cli;
mod e2b_commands;
mod logging;
mod progress;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The RUN sandbox helper: it must act before any thread starts (a multi-threaded process
    // cannot enter a user namespace), so before flags, logging and the signal handler.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(dockless::run::SANDBOX_ARG)) {
        let spec = args.next().unwrap_or_default();
        let code = dockless::run::sandbox::helper_main(&spec.to_string_lossy());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = cli::Cli::parse();
    logging::init(cli.quiet, cli.verbose);
    // Ctrl-C or SIGTERM: remove temporary files and half-written output, then exit as a shell
    // expects of an interrupted command.
    let _ = ctrlc::set_handler(|| {
        dockless::cleanup::remove_all();
        eprintln!("interrupted; temporary files removed");
        std::process::exit(130);
    });
    let outcome = app::run(cli);
    dockless::cleanup::remove_all();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            // Broken pipe on stdout (`dockless … | head`) is not a failure worth a message.
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", render(&error));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, without repeating a cause its parent already printed.
fn render(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
