//! Platforms (`os/arch[/variant]`) and choosing one from an index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a platform: expected os/arch or os/arch/variant, for example linux/amd64")]
pub struct PlatformError(pub String);

impl Platform {
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Whether an index entry for `candidate` serves a request for `self`. A request without a
    /// variant accepts any variant; arm64 entries commonly say `v8`.
    pub fn accepts(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && match (&self.variant, &candidate.variant) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(want), None) => self.architecture == "arm64" && want == "v8",
            }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = value.split('/').collect();
        let valid_part =
            |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if [os, arch].iter().all(|p| valid_part(p)) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if [os, arch, variant].iter().all(|p| valid_part(p)) => {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(PlatformError(value.to_owned())),
        }
    }
}

/// Operating systems and architectures Go knows (`go tool dist list`), which image platforms
/// are named after.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];
const KNOWN_ARCHITECTURES: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc64",
    "ppc64le", "riscv64", "s390x", "sparc64", "wasm",
];

impl Platform {
    /// True when the OS and architecture are ones images are built for (a typo such as
    /// `linux/amd46` is not).
    pub fn is_known(&self) -> bool {
        KNOWN_OS.contains(&self.os.as_str())
            && KNOWN_ARCHITECTURES.contains(&self.architecture.as_str())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_platforms_are_told_from_typos() {
        for known in [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "windows/amd64",
        ] {
            assert!(known.parse::<Platform>().unwrap().is_known(), "{known}");
        }
        for unknown in ["linux/nosuch", "linux/amd46", "linx/amd64"] {
            assert!(
                !unknown.parse::<Platform>().unwrap().is_known(),
                "{unknown}"
            );
        }
    }

    #[test]
    fn parses_and_prints_platforms() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn variant_matching() {
        let want: Platform = "linux/arm64".parse().unwrap();
        assert!(want.accepts(&"linux/arm64/v8".parse().unwrap()));
        let want_v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(want_v8.accepts(&"linux/arm64".parse().unwrap()));
        assert!(!Platform::linux_amd64().accepts(&"linux/arm64".parse().unwrap()));
    }
}
