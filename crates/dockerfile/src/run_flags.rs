//! RUN's flags as BuildKit reads them (`instructions/commands_run*.go`): `--mount` (see
//! [`super::mount`]), `--network` and `--security`, typed when the Dockerfile is parsed.

use super::flags::Flags;
use super::mount::{MountError, MountFlag, MountKind, RunMount, Vars};

/// The flags of one RUN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    /// `--mount`, in the order given.
    pub mounts: Vec<MountFlag>,
    pub network: RunNetwork,
    pub security: Security,
}

/// `RUN --network=`: not expanded, as in BuildKit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunNetwork {
    /// The build's network (not given, or `default`).
    #[default]
    Default,
    /// Only a loopback interface.
    None,
    /// The host's network.
    Host,
}

/// `RUN --security=`: not expanded, as in BuildKit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Security {
    /// The usual sandbox (not given, or `sandbox`).
    #[default]
    Sandbox,
    /// All capabilities, no seccomp: BuildKit's `security.insecure` entitlement.
    Insecure,
}

impl RunFlags {
    /// Types the flags `check_flags` let through; `escape` is the Dockerfile's escape
    /// character, for checking mounts that hold no variable.
    pub(crate) fn parse(flags: &Flags, escape: char) -> Result<RunFlags, String> {
        let network = match flags.value("network").as_deref() {
            None | Some("default") => RunNetwork::Default,
            Some("none") => RunNetwork::None,
            Some("host") => RunNetwork::Host,
            Some(other) => {
                return Err(format!(
                    "invalid network mode {other:?} for RUN --network: expected default, none or host"
                ));
            }
        };
        let security = match flags.value("security").as_deref() {
            None | Some("sandbox") => Security::Sandbox,
            Some("insecure") => Security::Insecure,
            Some(other) => {
                return Err(format!(
                    "security {other:?} is not valid for RUN --security: expected sandbox or insecure"
                ));
            }
        };
        let mounts = flags
            .values("mount")
            .iter()
            // The index of an ssh mount only names its default socket, which the check
            // does not look at.
            .map(|spec| MountFlag::parse(spec, escape, 0))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(RunFlags {
            mounts,
            network,
            security,
        })
    }

    /// The mounts with their values expanded (`vars`: the variables in scope at the RUN,
    /// `escape`: the Dockerfile's escape character) and relative targets taken from
    /// `workdir` (absolute).
    pub fn mounts(
        &self,
        escape: char,
        vars: Vars<'_>,
        workdir: &str,
    ) -> Result<Vec<RunMount>, MountError> {
        let mut ssh_count = 0;
        let mut mounts = Vec::with_capacity(self.mounts.len());
        for flag in &self.mounts {
            let mount = flag.expand(escape, vars, workdir, ssh_count)?;
            if matches!(mount.kind, MountKind::Ssh { .. }) {
                ssh_count += 1;
            }
            mounts.push(mount);
        }
        Ok(mounts)
    }
}
