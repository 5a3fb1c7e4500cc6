//! Image references with Docker's normalisation: `alpine` is `docker.io/library/alpine:latest`.
//!
//! The grammar follows distribution's `reference` package: the first path component is a
//! registry host when it contains `.` or `:` or is `localhost`; otherwise the image lives on
//! Docker Hub, where single-component names gain the `library/` prefix.

use std::fmt;

/// The registry Docker Hub images live on, as users write it.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's distribution API.
pub(crate) const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The key Docker uses for Docker Hub in `config.json` and credential helpers.
pub(crate) const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

const DEFAULT_TAG: &str = "latest";
const MAX_REPOSITORY_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a reference could not be parsed; the message names the reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: ReferenceProblem,
}

/// What is wrong with one part of a reference, and what the part should look like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceProblem {
    #[error("it is empty; expected NAME[:TAG][@DIGEST]")]
    Empty,
    #[error("it contains whitespace")]
    Whitespace,
    #[error("registry host {host:?} has an unclosed '['")]
    UnclosedBracket { host: String },
    #[error("registry host {host:?} is not a valid IPv6 address")]
    InvalidIpv6 { host: String },
    #[error("registry host {host:?} is not a valid host name")]
    InvalidHost { host: String },
    #[error("registry port {port:?} in {host:?} is not a number from 0 to 65535")]
    InvalidPort { host: String, port: String },
    #[error("the repository name is longer than {MAX_REPOSITORY_LENGTH} characters")]
    RepositoryTooLong,
    #[error("repository {repository:?} must be lowercase (try {:?})", repository.to_ascii_lowercase())]
    UppercaseRepository { repository: String },
    #[error(
        "repository component {component:?} is not valid: use lowercase letters, digits \
         and single separators ('.', '_', '__', '-') between them"
    )]
    InvalidComponent { component: String },
    #[error(
        "tag {tag:?} is not valid: up to {MAX_TAG_LENGTH} letters, digits, '_', '.', '-', \
         not starting with '.' or '-'"
    )]
    InvalidTag { tag: String },
    #[error("digest {digest:?} has no algorithm; expected sha256:<64 hex digits>")]
    NoDigestAlgorithm { digest: String },
    #[error("digest algorithm {algorithm:?} in {digest:?} is not supported; use sha256")]
    UnsupportedDigestAlgorithm { algorithm: String, digest: String },
    #[error("digest {digest:?} must be {algorithm}: followed by {hex_len} lowercase hex digits")]
    InvalidDigest {
        digest: String,
        algorithm: &'static str,
        hex_len: usize,
    },
}

impl Reference {
    /// Parses `[host[:port]/]path[:tag][@digest]`. A reference with neither tag nor digest gets
    /// the tag `latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: ReferenceProblem| ReferenceError {
            reference: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(fail(ReferenceProblem::Empty));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(fail(ReferenceProblem::Whitespace));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(fail)?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // The tag separator is a colon after the last slash; a colon before it belongs to a port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag
            .get(last_slash..)
            .and_then(|tail| tail.rfind(':'))
        {
            Some(colon) => {
                let at = last_slash + colon;
                let tag = name_and_tag.get(at + 1..).unwrap_or_default();
                validate_tag(tag).map_err(fail)?;
                (
                    name_and_tag.get(..at).unwrap_or_default(),
                    Some(tag.to_string()),
                )
            }
            None => (name_and_tag, None),
        };
        let (registry, repository) = split_registry(name);
        validate_host(&registry).map_err(fail)?;
        validate_repository(&repository).map_err(fail)?;
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Builds a reference from parts that are already known to be normalised (e.g. from settings).
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<Self, ReferenceError> {
        let mut text = format!("{registry}/{repository}");
        if let Some(tag) = tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = digest {
            text.push('@');
            text.push_str(digest);
        }
        Self::parse(&text)
    }

    /// The registry as the user names it (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to put after `/manifests/`: the digest when there is one (it pins the content),
    /// otherwise the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    #[cfg(test)]
    /// The same repository with another tag and no digest.
    pub(crate) fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        Self::from_parts(&self.registry, &self.repository, Some(tag), None)
    }

    /// The same repository pinned to a digest (the tag is kept for display).
    pub fn with_digest(&self, digest: &str) -> Result<Self, ReferenceError> {
        Self::from_parts(
            &self.registry,
            &self.repository,
            self.tag.as_deref(),
            Some(digest),
        )
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Maps a registry name to the host that serves its API.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

/// Normalises the many spellings of Docker Hub to `docker.io`.
pub(crate) fn normalize_registry(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

fn split_registry(name: &str) -> (String, String) {
    if let Some((first, rest)) = name.split_once('/') {
        let is_host = first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase());
        if is_host {
            let registry = normalize_registry(first);
            let repository = if registry == DOCKER_HUB && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            return (registry, repository);
        }
    }
    let repository = if name.contains('/') {
        name.to_string()
    } else {
        format!("library/{name}")
    };
    (DOCKER_HUB.to_string(), repository)
}

fn validate_host(host: &str) -> Result<(), ReferenceProblem> {
    let host_owned = || host.to_owned();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: [::1]:5000
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(ReferenceProblem::UnclosedBracket { host: host_owned() });
        };
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(ReferenceProblem::InvalidIpv6 { host: host_owned() });
        }
        (None, after.strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.is_empty() || !name.split('.').all(valid_label) {
            return Err(ReferenceProblem::InvalidHost { host: host_owned() });
        }
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(ReferenceProblem::InvalidPort {
            host: host_owned(),
            port: port.to_owned(),
        });
    }
    Ok(())
}

fn validate_repository(repository: &str) -> Result<(), ReferenceProblem> {
    if repository.len() > MAX_REPOSITORY_LENGTH {
        return Err(ReferenceProblem::RepositoryTooLong);
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceProblem::UppercaseRepository {
            repository: repository.to_owned(),
        });
    }
    for component in repository.split('/') {
        if !valid_path_component(component) {
            return Err(ReferenceProblem::InvalidComponent {
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let Some(first) = component.chars().next() else {
        return false;
    };
    let Some(last) = component.chars().last() else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut separator = String::new();
    for c in component.chars() {
        if alnum(c) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|s| s == '-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> Result<(), ReferenceProblem> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LENGTH {
        return Err(ReferenceProblem::InvalidTag {
            tag: tag.to_owned(),
        });
    }
    Ok(())
}

/// Checks `algorithm:hex` with the lengths of the algorithms registries use.
pub(crate) fn validate_digest(digest: &str) -> Result<(), ReferenceProblem> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(ReferenceProblem::NoDigestAlgorithm {
            digest: digest.to_owned(),
        });
    };
    let (algorithm, hex_len) = match algorithm {
        "sha256" => ("sha256", 64),
        "sha384" => ("sha384", 96),
        "sha512" => ("sha512", 128),
        other => {
            return Err(ReferenceProblem::UnsupportedDigestAlgorithm {
                algorithm: other.to_owned(),
                digest: digest.to_owned(),
            });
        }
    };
    if hex.len() != hex_len
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(ReferenceProblem::InvalidDigest {
            digest: digest.to_owned(),
            algorithm,
            hex_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parts(input: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(input).unwrap();
        (
            r.registry().to_string(),
            r.repository().to_string(),
            r.tag().map(str::to_string),
            r.digest().map(str::to_string),
        )
    }

    #[test]
    fn docker_hub_short_names_gain_library_and_latest() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(api_host(r.registry()), "registry-1.docker.io");
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
    }

    #[test]
    fn docker_hub_spellings_are_normalised() {
        assert_eq!(parts("docker.io/alpine:3").1, "library/alpine");
        assert_eq!(parts("index.docker.io/user/app").0, "docker.io");
        assert_eq!(parts("user/app:v1").1, "user/app");
        assert_eq!(parts("user/app:v1").0, "docker.io");
    }

    #[test]
    fn hosts_ports_and_localhost() {
        assert_eq!(
            parts("127.0.0.1:5000/team/app:1.0"),
            (
                "127.0.0.1:5000".into(),
                "team/app".into(),
                Some("1.0".into()),
                None
            )
        );
        assert_eq!(parts("localhost/app").0, "localhost");
        assert_eq!(parts("localhost:5000/app").0, "localhost:5000");
        assert_eq!(parts("ghcr.io/o/r/deep/path").1, "o/r/deep/path");
        assert_eq!(parts("[::1]:5000/app").0, "[::1]:5000");
    }

    #[test]
    fn digests_with_and_without_tags() {
        let (_, repo, tag, digest) = parts(&format!("ghcr.io/o/app@{DIGEST}"));
        assert_eq!(repo, "o/app");
        assert_eq!(tag, None);
        assert_eq!(digest.as_deref(), Some(DIGEST));
        let r = Reference::parse(&format!("ghcr.io/o/app:v2@{DIGEST}")).unwrap();
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.manifest_reference(), DIGEST);
        assert_eq!(r.to_string(), format!("ghcr.io/o/app:v2@{DIGEST}"));
    }

    #[test]
    fn errors_name_the_reference_and_the_fix() {
        let err = Reference::parse("Ubuntu").unwrap_err();
        assert!(err.to_string().contains("\"Ubuntu\""), "{err}");
        assert!(err.to_string().contains("lowercase"), "{err}");
        for bad in [
            "",
            "app:",
            "app:-x",
            "app@sha256:abc",
            "app@md5:abc",
            "a//b",
            "host:port/app",
            "app name",
            "-app",
            "a..b",
            "app@",
            "[::1/app",
        ] {
            let err = Reference::parse(bad);
            assert!(err.is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn separators_follow_the_grammar() {
        assert!(valid_path_component("a_b"));
        assert!(valid_path_component("a__b"));
        assert!(valid_path_component("a---b"));
        assert!(valid_path_component("a.b"));
        assert!(!valid_path_component("a___b"));
        assert!(!valid_path_component("a._b"));
        assert!(!valid_path_component("a_"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for input in [
            ":", "@", "/", ":/", "a:/b", "a@b:c", "é", "a/é:1", "[", "]", "a:b:c", "::::",
        ] {
            let _ = Reference::parse(input);
        }
    }

    #[test]
    fn with_tag_and_digest_keep_the_repository() {
        let r = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(
            r.with_tag("v2").unwrap().to_string(),
            "127.0.0.1:5000/app:v2"
        );
        assert_eq!(
            r.with_digest(DIGEST).unwrap().to_string(),
            format!("127.0.0.1:5000/app:v1@{DIGEST}")
        );
    }
}
