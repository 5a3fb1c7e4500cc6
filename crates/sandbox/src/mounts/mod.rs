//! The mounts of a RUN that has to run, made ready for the sandbox. What a `--mount` means
//! is the Dockerfile frontend's ([`dockless_dockerfile::RunMount`]); the builder turns each
//! into a [`SandboxMount`](crate::sandbox::SandboxMount).

/// The mounts of a RUN that has to run, made ready for the sandbox.
#[derive(Debug, Clone, Default)]
pub struct MountPlan {
    pub mounts: Vec<crate::sandbox::SandboxMount>,
    /// Secrets the command gets as environment variables: the name, and the private file
    /// holding the value.
    pub secret_env: Vec<(String, std::path::PathBuf)>,
}
