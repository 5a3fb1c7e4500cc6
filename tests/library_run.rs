//! A failed RUN as a program that embeds dockless sees it: `dockless_build::build` returns
//! `BuildError::Instruction` with the Dockerfile's line and a `StepError` the program can match
//! (the command's exit code in `RunError::Failed`), not a boxed error it can only print.
//!
//! Its own test binary, without the test harness: a RUN's sandbox is this very binary started
//! again (`/proc/self/exe __dockless-sandbox`), which must then act as the sandbox's helper, as
//! the `dockless` binary does in `main`.

use std::path::Path;
use std::process::ExitCode;

use dockless_build::{BuildError, BuildOptions, StepError, Unsupported};
use dockless_oci::store::Store;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{CredentialEnv, RegistrySettings};
use dockless_sandbox::RunError;
use dockless_sandbox::sandbox::Network;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(dockless_sandbox::SANDBOX_ARG.as_ref()) {
        let code = dockless_sandbox::sandbox::helper_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 2] = [
        (
            "a_failed_run_gives_its_exit_code",
            a_failed_run_gives_its_exit_code,
        ),
        (
            "a_refused_mount_is_unsupported",
            a_refused_mount_is_unsupported,
        ),
    ];
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        test();
        println!("test {name} ... ok");
    }
    ExitCode::SUCCESS
}

/// `RUN … exit 3` on line 3: the caller matches the exit code and the line, and the message is
/// the one `dockless build` prints.
fn a_failed_run_gives_its_exit_code() {
    let context = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", context.path().join("busybox"))
        .expect("/bin/busybox (busybox-static)");
    let dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\n\
                      RUN [\"/bin/busybox\", \"sh\", \"-c\", \"exit 3\"]\n";
    let error = build(context.path(), dockerfile).expect_err("the RUN fails");
    assert!(
        matches!(
            &error,
            BuildError::Instruction {
                line: 3,
                source: StepError::Run(RunError::Failed { code: 3, .. }),
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.ends_with(
            "Dockerfile:3: the command failed with exit code 3: RUN [\"/bin/busybox\", \"sh\", \"-c\", \"exit 3\"]; fix the command (its output is above) and build again"
        ),
        "{message}"
    );
}

/// A mount dockless does not serve is told apart from a failure of the command.
fn a_refused_mount_is_unsupported() {
    let context = tempfile::tempdir().unwrap();
    let dockerfile = "FROM scratch\nENV A=1\nRUN --mount=type=ssh true\n";
    let error = build(context.path(), dockerfile).expect_err("the mount is refused");
    assert!(
        matches!(
            &error,
            BuildError::Instruction {
                line: 3,
                source: StepError::Unsupported(Unsupported(_)),
                ..
            }
        ),
        "{error:?}"
    );
}

/// Builds `dockerfile` in `context` into a store of its own.
fn build(context: &Path, dockerfile: &str) -> Result<dockless_build::BuiltImage, BuildError> {
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    // No credential files: a FROM scratch build asks no registry.
    let remote = RemoteAccess::new(
        runtime.handle().clone(),
        RegistrySettings::default(),
        CredentialEnv::default(),
        None,
    );
    dockless_build::build(&options(context), &store, &remote)
}

fn options(context: &Path) -> BuildOptions {
    BuildOptions {
        network: Network::None,
        ..BuildOptions::new(context)
    }
}
