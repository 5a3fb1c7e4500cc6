//! The network a RUN command sees: `RUN --network=default|none|host` as BuildKit reads it.

use std::io;

use serde::{Deserialize, Serialize};

/// Which network namespace the command runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network: package managers reach their mirrors (BuildKit's default with the
    /// host-network entitlement, and dockless's).
    #[default]
    Host,
    /// A new network namespace with only the loopback interface, up.
    None,
}

/// A network that cannot be had, named as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("--network {0}: expected host, default or none")]
    Unknown(String),
    #[error(
        "RUN --network={0} in a build with --network none; remove the flag, or build without --network none"
    )]
    HostInIsolatedBuild(String),
    #[error("RUN --network={0} is not supported; use --network=default, none or host")]
    UnsupportedRun(String),
}

impl std::str::FromStr for Network {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, NetworkError> {
        match s {
            "host" | "default" => Ok(Network::Host),
            "none" => Ok(Network::None),
            _ => Err(NetworkError::Unknown(s.to_owned())),
        }
    }
}

impl Network {
    /// The network of one RUN, from its flags and the build's network (`--network`): RUN's
    /// `default` is the build's; a build without network allows no RUN `host`. Flags other
    /// than `--network` are not for this function: they are left to the caller.
    pub fn for_run(flags: &[(String, String)], build: Network) -> Result<Network, NetworkError> {
        let mut network = build;
        for (_, value) in flags.iter().filter(|(flag, _)| flag == "network") {
            network = match (value.as_str(), build) {
                ("default", _) => build,
                ("none", _) => Network::None,
                ("host", Network::Host) => Network::Host,
                ("host", Network::None) => {
                    return Err(NetworkError::HostInIsolatedBuild(value.clone()));
                }
                _ => return Err(NetworkError::UnsupportedRun(value.clone())),
            };
        }
        Ok(network)
    }
}

/// Brings the loopback interface of this (new) network namespace up. Text errors, as in the
/// rest of the helper: they only ever become the status file's message (see `Status`).
pub(super) fn loopback_up() -> Result<(), String> {
    let failed = |what: &str| {
        format!(
            "cannot {what} the loopback interface: {}",
            io::Error::last_os_error()
        )
    };
    // SAFETY: a socket for the ioctls below, closed at the end.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(failed("open a socket for"));
    }
    // SAFETY: an all-zero ifreq is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: ioctls on our socket with a valid ifreq.
    let result = unsafe {
        if libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) != 0 {
            Err(failed("read"))
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(socket, libc::SIOCSIFFLAGS, &request) != 0 {
                Err(failed("bring up"))
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing our socket.
    unsafe { libc::close(socket) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(value: &str) -> Vec<(String, String)> {
        vec![("network".to_owned(), value.to_owned())]
    }

    #[test]
    fn run_network_reads_like_buildkit() {
        assert_eq!(Network::for_run(&[], Network::Host), Ok(Network::Host));
        assert_eq!(Network::for_run(&[], Network::None), Ok(Network::None));
        assert_eq!(
            Network::for_run(&flags("default"), Network::None),
            Ok(Network::None)
        );
        assert_eq!(
            Network::for_run(&flags("none"), Network::Host),
            Ok(Network::None)
        );
        assert_eq!(
            Network::for_run(&flags("host"), Network::Host),
            Ok(Network::Host)
        );
        let err = Network::for_run(&flags("host"), Network::None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--network none"), "{err}");
        let err = Network::for_run(&flags("bridge"), Network::Host)
            .unwrap_err()
            .to_string();
        assert!(err.contains("default, none or host"), "{err}");
    }
}
