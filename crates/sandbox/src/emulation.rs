//! RUN for a platform this machine cannot run natively. The kernel runs such programs through a
//! `binfmt_misc` handler (Debian's `qemu-user-static`, registered by `binfmt-support`), in the
//! same sandbox as any RUN: nothing here starts an emulator. Only a handler registered with the
//! fix-binary flag (`F`) serves: the kernel opened its interpreter when it was registered, so the
//! interpreter need not exist inside the image's root, where the sandbox runs the command.
//! This module answers, before a RUN executes, whether the kernel will run the platform's
//! programs, and if not, says what to install.

use std::fs;
use std::path::{Path, PathBuf};

use dockless_oci::image::Platform;

/// Names the `binfmt_misc` directory to read instead of `/proc/sys/fs/binfmt_misc`: for a
/// machine that mounts it elsewhere, and for tests, which point it at an empty directory to
/// see the refusal without unregistering the machine's handlers.
pub const BINFMT_MISC_ENV: &str = "DOCKLESS_BINFMT_MISC";

const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// How the kernel will run a platform's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// The processor runs them.
    Native,
    /// Through this `binfmt_misc` handler (its name and interpreter).
    Emulated {
        handler: String,
        interpreter: String,
    },
}

/// Why a RUN for a platform cannot run here (platforms as `os/arch[/variant]`).
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error(
        "RUN for {platform}: this machine ({host}) cannot run {platform} programs and no binfmt_misc handler for them is registered with the fix-binary flag (F) in {dir}; install Debian's qemu-user-static (with binfmt-support: `apt-get install qemu-user-static binfmt-support`), or build for {host}"
    )]
    NoHandler {
        platform: String,
        host: String,
        dir: PathBuf,
    },
    #[error(
        "RUN for {platform}: only linux programs run in dockless's sandbox; build for linux/{host_architecture}"
    )]
    NotLinux {
        platform: String,
        host_architecture: String,
    },
    #[error(
        "RUN for {platform}: dockless does not know which programs are {architecture} ones, so it cannot tell whether an emulator runs them; build for {host}"
    )]
    UnknownArchitecture {
        platform: String,
        architecture: String,
        host: String,
    },
}

/// How the kernel will run `platform`'s programs on this machine, from the handlers in
/// `DOCKLESS_BINFMT_MISC` (default `/proc/sys/fs/binfmt_misc`).
pub fn execution(platform: &Platform) -> Result<Execution, EmulationError> {
    let dir = std::env::var_os(BINFMT_MISC_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINFMT_MISC));
    execution_with(platform, &Platform::host(), &dir)
}

/// [`execution`] for a given host and `binfmt_misc` directory.
pub fn execution_with(
    platform: &Platform,
    host: &Platform,
    dir: &Path,
) -> Result<Execution, EmulationError> {
    let (wanted, host) = (platform.normalized(), host.normalized());
    if wanted.os != "linux" {
        return Err(EmulationError::NotLinux {
            platform: platform.to_string(),
            host_architecture: host.architecture,
        });
    }
    // An amd64 kernel runs 386 programs itself (IA32 emulation, on in Debian's kernels).
    let natively = wanted.architecture == host.architecture
        || (host.architecture == "amd64" && wanted.architecture == "386");
    if natively {
        return Ok(Execution::Native);
    }
    let Some(header) = elf_header(&wanted.architecture) else {
        return Err(EmulationError::UnknownArchitecture {
            platform: platform.to_string(),
            architecture: wanted.architecture,
            host: host.to_string(),
        });
    };
    registered_handlers(dir)
        .into_iter()
        .find(|handler| handler.fixed_binary && handler.matches(&header))
        .map(|handler| Execution::Emulated {
            handler: handler.name,
            interpreter: handler.interpreter,
        })
        .ok_or_else(|| EmulationError::NoHandler {
            platform: platform.to_string(),
            host: host.to_string(),
            dir: dir.to_owned(),
        })
}

/// The first 20 bytes of an executable of `architecture` (Go's name): the ELF identification,
/// `e_type` (ET_EXEC) and `e_machine`, which is what qemu's binfmt entries match on.
fn elf_header(architecture: &str) -> Option<[u8; 20]> {
    // (64-bit, little-endian, e_machine) from the ELF specification's machine numbers.
    let (wide, little, machine): (bool, bool, u16) = match architecture {
        "amd64" => (true, true, 62),
        "386" => (false, true, 3),
        "arm64" => (true, true, 183),
        "arm" => (false, true, 40),
        "ppc64le" => (true, true, 21),
        "ppc64" => (true, false, 21),
        "s390x" => (true, false, 22),
        "riscv64" => (true, true, 243),
        "loong64" => (true, true, 258),
        "mips64le" => (true, true, 8),
        "mips64" => (true, false, 8),
        "mipsle" => (false, true, 8),
        "mips" => (false, false, 8),
        "sparc64" => (true, false, 43),
        _ => return None,
    };
    let two = |value: u16| {
        if little {
            value.to_le_bytes()
        } else {
            value.to_be_bytes()
        }
    };
    let mut header = [0u8; 20];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = if wide { 2 } else { 1 };
    header[5] = if little { 1 } else { 2 };
    header[6] = 1;
    header[16..18].copy_from_slice(&two(2));
    header[18..20].copy_from_slice(&two(machine));
    Some(header)
}

/// One enabled `binfmt_misc` entry that matches on magic bytes.
#[derive(Debug)]
struct Handler {
    name: String,
    interpreter: String,
    fixed_binary: bool,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    /// Whether the kernel would hand a program starting with `header` to this handler. Bytes
    /// the magic asks for beyond the header (none of qemu's) cannot be told, so do not match.
    fn matches(&self, header: &[u8]) -> bool {
        self.magic.iter().enumerate().all(|(i, &magic)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header
                .get(self.offset + i)
                .is_some_and(|&byte| byte & mask == magic & mask)
        })
    }
}

/// The enabled magic-matching handlers in `dir`; none when binfmt_misc is off or not mounted.
fn registered_handlers(dir: &Path) -> Vec<Handler> {
    let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
    if status.trim() != "enabled" {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "status" || name == "register" {
                return None;
            }
            parse_handler(name, &fs::read_to_string(entry.path()).ok()?)
        })
        .collect()
}

/// An entry as the kernel prints it (`enabled`, `interpreter …`, `flags: PF`, `offset 0`,
/// `magic 7f45…`, `mask ff…`); `None` when disabled or matched by extension.
fn parse_handler(name: String, text: &str) -> Option<Handler> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "enabled" {
        return None;
    }
    let mut handler = Handler {
        name,
        interpreter: String::new(),
        fixed_binary: false,
        offset: 0,
        magic: Vec::new(),
        mask: Vec::new(),
    };
    for line in lines {
        let Some((key, value)) = line.split_once([' ', ':']) else {
            continue;
        };
        let value = value.trim_start_matches(':').trim();
        match key {
            "interpreter" => handler.interpreter = value.to_owned(),
            "flags" => handler.fixed_binary = value.contains('F'),
            "offset" => handler.offset = value.parse().ok()?,
            "magic" => handler.magic = hex(value)?,
            "mask" => handler.mask = hex(value)?,
            _ => {}
        }
    }
    (!handler.magic.is_empty()).then_some(handler)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's qemu-user-static entry for aarch64, as /proc/sys/fs/binfmt_misc shows it.
    const QEMU_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        for (name, text) in entries {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn p(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn native_and_emulated_platforms() {
        let dir = binfmt(&[("qemu-aarch64", QEMU_AARCH64)]);
        let amd64 = p("linux/amd64");
        assert_eq!(
            execution_with(&p("linux/amd64"), &amd64, dir.path()).unwrap(),
            Execution::Native
        );
        assert_eq!(
            execution_with(&p("linux/386"), &amd64, dir.path()).unwrap(),
            Execution::Native
        );
        assert_eq!(
            execution_with(&p("linux/arm64/v8"), &amd64, dir.path()).unwrap(),
            Execution::Emulated {
                handler: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            }
        );
        // An arm64 machine runs arm64 itself, whatever is registered.
        assert_eq!(
            execution_with(&p("linux/arm64"), &p("linux/arm64"), dir.path()).unwrap(),
            Execution::Native
        );
    }

    #[test]
    fn refusals_name_the_platform_and_the_package() {
        let amd64 = p("linux/amd64");
        // No handler for riscv64; an aarch64 handler without F; binfmt_misc switched off.
        let without_f = QEMU_AARCH64.replace("flags: PF", "flags: P");
        for (dir, platform) in [
            (binfmt(&[("qemu-aarch64", QEMU_AARCH64)]), "linux/riscv64"),
            (binfmt(&[("qemu-aarch64", &without_f)]), "linux/arm64"),
            (
                binfmt(&[(
                    "qemu-aarch64",
                    &QEMU_AARCH64.replace("enabled\n", "disabled\n"),
                )]),
                "linux/arm64",
            ),
            (tempfile::tempdir().unwrap(), "linux/arm64"),
        ] {
            let error = execution_with(&p(platform), &amd64, dir.path()).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("RUN for {platform}: ")),
                "{message}"
            );
            assert!(message.contains("qemu-user-static"), "{message}");
        }
        let error = execution_with(&p("windows/amd64"), &amd64, Path::new("/nonexistent"));
        assert!(matches!(error, Err(EmulationError::NotLinux { .. })));
    }

    #[test]
    fn elf_headers_match_the_running_binary() {
        // This test binary's own header is what elf_header gives for the host.
        let own = fs::read(std::env::current_exe().unwrap()).unwrap();
        let header = elf_header(&Platform::host().architecture).unwrap();
        assert_eq!(own[..7], header[..7]);
        assert_eq!(own[18..20], header[18..20]);
    }
}
