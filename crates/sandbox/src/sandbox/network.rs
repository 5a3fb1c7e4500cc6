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
        "RUN --network=host in a build with --network none; remove the flag, or build without --network none"
    )]
    HostInIsolatedBuild,
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
    /// The network of one RUN: the one it asks for (`RUN --network`), else the build's
    /// (`--network`); a build without network allows no RUN `host`.
    pub fn for_run(asked: Option<Network>, build: Network) -> Result<Network, NetworkError> {
        match (asked, build) {
            (None, _) => Ok(build),
            (Some(Network::Host), Network::None) => Err(NetworkError::HostInIsolatedBuild),
            (Some(asked), _) => Ok(asked),
        }
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

    #[test]
    fn run_network_reads_like_buildkit() {
        assert_eq!(Network::for_run(None, Network::Host), Ok(Network::Host));
        assert_eq!(Network::for_run(None, Network::None), Ok(Network::None));
        assert_eq!(
            Network::for_run(Some(Network::None), Network::Host),
            Ok(Network::None)
        );
        assert_eq!(
            Network::for_run(Some(Network::Host), Network::Host),
            Ok(Network::Host)
        );
        let err = Network::for_run(Some(Network::Host), Network::None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--network none"), "{err}");
    }
}
