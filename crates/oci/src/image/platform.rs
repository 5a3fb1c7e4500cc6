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

impl Platform {
    /// The platform as containerd's `platforms.Normalize` spells it, which is how BuildKit
    /// reads `--platform` and the host before it fills `TARGETPLATFORM`/`BUILDPLATFORM` (moby/
    /// buildkit `frontend/dockerui/attr.go` `parsePlatforms`, vendor/github.com/containerd/
    /// platforms `database.go` `normalizeArch`): `arm64/v8` is `arm64`, `arm` is `arm/v7`,
    /// `x86_64` is `amd64`. Only the build arguments use it: images keep the platform as asked.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_lowercase();
        let arch = self.architecture.to_lowercase();
        let variant = self.variant.as_deref().map(str::to_lowercase);
        let (architecture, variant) = match (arch.as_str(), variant.as_deref()) {
            ("i386", _) => ("386".to_owned(), None),
            ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64".to_owned(), None),
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_owned(), v.map(str::to_owned)),
            ("aarch64" | "arm64", Some("8" | "v8" | "v8.0")) => ("arm64".to_owned(), None),
            ("aarch64" | "arm64", Some("9" | "9.0" | "v9.0")) => {
                ("arm64".to_owned(), Some("v9".to_owned()))
            }
            ("aarch64" | "arm64", v) => ("arm64".to_owned(), v.map(str::to_owned)),
            ("armhf", _) => ("arm".to_owned(), Some("v7".to_owned())),
            ("armel", _) => ("arm".to_owned(), Some("v6".to_owned())),
            ("arm", None | Some("7")) => ("arm".to_owned(), Some("v7".to_owned())),
            ("arm", Some(v @ ("5" | "6" | "8"))) => ("arm".to_owned(), Some(format!("v{v}"))),
            (a, v) => (a.to_owned(), v.map(str::to_owned)),
        };
        Platform {
            os,
            architecture,
            variant: variant.filter(|v| !v.is_empty()),
        }
    }

    /// The platform of the machine dockless runs on, normalized: containerd's `DefaultSpec`
    /// (Go's GOOS/GOARCH, and for arm the variant from `/proc/cpuinfo`), which BuildKit takes as
    /// the build platform (`frontend/dockerui/config.go`, `platforms.Normalize(platforms.DefaultSpec())`).
    pub fn host() -> Platform {
        let cpu_architecture = if std::env::consts::ARCH == "arm" {
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|info| arm_cpu_architecture(&info))
        } else {
            None
        };
        Platform::from_rust(
            std::env::consts::OS,
            std::env::consts::ARCH,
            cfg!(target_endian = "little"),
            cpu_architecture.as_deref(),
        )
    }

    /// Rust's target names (`std::env::consts`) as Go's GOOS/GOARCH, which platforms use; for
    /// arm, the variant from the `CPU architecture` line of /proc/cpuinfo (`7` is `v7`), as
    /// containerd's `getCPUVariant` reads it.
    pub fn from_rust(
        os: &str,
        arch: &str,
        little_endian: bool,
        cpu_architecture: Option<&str>,
    ) -> Platform {
        let go_arch = match (arch, little_endian) {
            ("x86_64", _) => "amd64",
            ("x86", _) => "386",
            ("aarch64", _) => "arm64",
            ("loongarch64", _) => "loong64",
            ("powerpc64", true) => "ppc64le",
            ("powerpc64", false) => "ppc64",
            ("mips64", true) => "mips64le",
            ("mips", true) => "mipsle",
            (other, _) => other,
        };
        let variant = (go_arch == "arm").then(|| {
            match cpu_architecture
                .map(str::trim)
                .map(str::to_lowercase)
                .as_deref()
            {
                Some("8" | "aarch64") => "v8",
                Some("7" | "7m") | None => "v7",
                Some("6" | "6tej") => "v6",
                Some("5" | "5t" | "5te" | "5tej") => "v5",
                Some(_) => "unknown",
            }
            .to_owned()
        });
        Platform {
            os: os.to_owned(),
            architecture: go_arch.to_owned(),
            variant,
        }
        .normalized()
    }
}

/// The value of the `CPU architecture` line of /proc/cpuinfo (arm kernels print it).
fn arm_cpu_architecture(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("CPU architecture")
            .then(|| value.trim().to_owned())
    })
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
    #[test]
    fn normalized_as_containerd_normalizes() {
        // containerd/platforms database.go normalizeArch, as BuildKit applies it to --platform.
        for (given, want) in [
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/i386", "linux/386"),
            ("Linux/riscv64", "linux/riscv64"),
        ] {
            let p: Platform = given.parse().unwrap();
            assert_eq!(p.normalized().to_string(), want, "{given}");
        }
    }

    #[test]
    fn the_host_in_go_names() {
        let host = |arch, little, cpu| Platform::from_rust("linux", arch, little, cpu).to_string();
        assert_eq!(host("x86_64", true, None), "linux/amd64");
        assert_eq!(host("aarch64", true, None), "linux/arm64");
        assert_eq!(host("x86", true, None), "linux/386");
        assert_eq!(host("powerpc64", true, None), "linux/ppc64le");
        assert_eq!(host("powerpc64", false, None), "linux/ppc64");
        assert_eq!(host("s390x", false, None), "linux/s390x");
        assert_eq!(host("riscv64", true, None), "linux/riscv64");
        assert_eq!(host("loongarch64", true, None), "linux/loong64");
        assert_eq!(host("arm", true, Some("7")), "linux/arm/v7");
        assert_eq!(host("arm", true, Some("6TEJ")), "linux/arm/v6");
        assert_eq!(
            arm_cpu_architecture("processor\t: 0\nCPU architecture: 7\n").as_deref(),
            Some("7")
        );
        // This machine, as `uname -m` names it.
        let machine = std::process::Command::new("uname")
            .arg("-m")
            .output()
            .unwrap();
        let machine = String::from_utf8(machine.stdout).unwrap();
        if machine.starts_with("arm") {
            return; // armv7l and friends: the variant comes from /proc/cpuinfo
        }
        let want = Platform {
            os: "linux".into(),
            architecture: machine.trim().into(),
            variant: None,
        }
        .normalized();
        assert_eq!(Platform::host().architecture, want.architecture);
    }
}
