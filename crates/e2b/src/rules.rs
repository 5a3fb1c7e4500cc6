//! E2B's rules for a template's name, CPU count and memory, checked here so that a value E2B
//! would refuse stops the run before anything is built or uploaded.
//!
//! Read from e2b-dev/infra: `packages/shared/pkg/id/id.go` (`ParseName`: values are trimmed and
//! lower-cased, then matched), `spec/openapi.yml` (`name` at most 128 characters),
//! `packages/api/internal/team/limits.go` and `internal/constants/templates.go` (CPU 1..=32,
//! 1 or even; memory at least 128 MiB, even). A team's own maximums are E2B's to check.

/// What E2B accepts as a template name, said the way a user can act on.
pub(crate) const NAME_RULE: &str = "E2B takes a name of lowercase letters, digits, '-' and '_', \
     optionally with your team's slug and '/' before it and ':TAG' after it (TAG may also hold '.'), \
     at most 128 characters, e.g. my-sandbox or my-sandbox:v2";
pub(crate) const CPU_RULE: &str = "E2B takes 1 CPU or an even number of CPUs, at most 32";
pub(crate) const MEMORY_RULE: &str = "E2B takes an even number of MiB, at least 128";

const MAX_NAME_CHARS: usize = 128;
const MAX_CPU: u32 = 32;
const MIN_MEMORY_MB: u32 = 128;

fn identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn tag(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// `[namespace/]alias[:tag]`, each part trimmed and lower-cased first, as E2B does.
pub(crate) fn name_is_valid(name: &str) -> bool {
    if name.chars().count() > MAX_NAME_CHARS {
        return false;
    }
    let clean = |part: &str| part.trim().to_lowercase();
    let trimmed = name.trim();
    let (identifier_part, tag_part) = match trimmed.split_once(':') {
        Some((identifier_part, tag_part)) => (identifier_part, Some(tag_part)),
        None => (trimmed, None),
    };
    if tag_part.is_some_and(|t| !tag(&clean(t))) {
        return false;
    }
    let alias = match identifier_part.split_once('/') {
        Some((namespace, alias)) if identifier(&clean(namespace)) => alias,
        Some(_) => return false,
        None => identifier_part,
    };
    identifier(&clean(alias))
}

/// A tag given on its own (`--tag`): `[a-z0-9-_.]`, after trimming and lower-casing.
pub fn tag_is_valid(value: &str) -> bool {
    tag(&value.trim().to_lowercase())
}

pub(crate) fn cpu_is_valid(cpu: u32) -> bool {
    (cpu == 1 || cpu.is_multiple_of(2)) && (1..=MAX_CPU).contains(&cpu)
}

pub(crate) fn memory_is_valid(memory_mb: u32) -> bool {
    memory_mb >= MIN_MEMORY_MB && memory_mb.is_multiple_of(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_id_go_parses_them() {
        for good in [
            "web",
            "web-sandbox_2",
            "acme/web",
            "web:v1.2",
            "acme/web:latest",
            " Web ",
            "WEB:V1",
        ] {
            assert!(name_is_valid(good), "{good}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            "web sandbox",
            "web.app",
            "a/b/c",
            "/web",
            "web:",
            "web:v 1",
            "web:a:b",
            "wéb",
            long.as_str(),
        ] {
            assert!(!name_is_valid(bad), "{bad}");
        }
        assert!(name_is_valid(&"a".repeat(128)));
        assert!(tag_is_valid("v1.2") && !tag_is_valid("v/1"));
    }

    #[test]
    fn resources_as_limits_go_checks_them() {
        assert!([1, 2, 4, 8, 32].into_iter().all(cpu_is_valid));
        assert!(![0, 3, 5, 33, 34].into_iter().any(cpu_is_valid));
        assert!([128, 512, 1024, 130].into_iter().all(memory_is_valid));
        assert!(![0, 64, 127, 513].into_iter().any(memory_is_valid));
    }
}
