//! Turning raw command-line flags into validated library options.

use std::collections::BTreeMap;

use std::io::Read;

use dockless_registry::http::HttpPolicy;
use dockless_registry::{Reference, RegistrySettings, ResolvedCredential};
use secrecy::SecretString;

use super::args::{
    BuildInputArgs, CompressionArg, FormatArg, HttpArgs, ImageArgs, IsolationArg, NetworkArg,
    RegistryAccessArgs, RegistryArgs, UploadArgs,
};
use super::buildx::{BuildxArgs, key_values};
use dockless_build::{BuildOptions, NoCache};
use dockless_e2b::config::{ConfigError, TemplateConfig};
use dockless_oci::image::{Compression, Format, Platform};
use dockless_sandbox::Isolation;
use dockless_sandbox::sandbox::Network;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--build-arg {0}: expected KEY=VALUE (or KEY to take the value from the environment)")]
    BuildArg(String),
    #[error(transparent)]
    Secret(#[from] dockless_build::SecretFlagError),
    #[error(transparent)]
    Platform(#[from] dockless_oci::image::platform::PlatformError),
    #[error(
        "--platform {0}: unknown operating system or architecture; expected os/arch[/variant] such as linux/amd64 or linux/arm64/v8"
    )]
    UnknownPlatform(Platform),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--compression-level {level}: {compression} levels go from {min} to {max}")]
    Level {
        level: i32,
        compression: &'static str,
        min: i32,
        max: i32,
    },
    #[error("{flag} (or DOCKLESS_CACHE_REPO): {message}")]
    CacheReference { flag: &'static str, message: String },
    #[error("SOURCE_DATE_EPOCH={0}: expected a whole number of seconds since 1970")]
    Epoch(String),
    #[error(
        "--password-stdin: {0}; pipe the password in, e.g. `echo \"$TOKEN\" | dockless push … --password-stdin`"
    )]
    Stdin(String),
    /// A buildx flag's value dockless cannot carry out (see [`super::buildx`]).
    #[error("{0}")]
    Buildx(String),
}

impl SettingsError {
    /// A flag's value is wrong (exit 2), rather than a file or the environment.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SettingsError::BuildArg(_)
                | SettingsError::Platform(_)
                | SettingsError::UnknownPlatform(_)
                | SettingsError::Level { .. }
                | SettingsError::CacheReference { .. }
                | SettingsError::Buildx(_)
        )
    }
}

/// Registry settings of a command that pushes; its requests follow `http`.
pub fn registry_settings(args: &RegistryArgs, http: HttpPolicy) -> RegistrySettings {
    push_settings(&args.access, &args.upload, http)
}

/// Registry settings from the flags of reaching and of pushing; requests follow `http`.
pub fn push_settings(
    access: &RegistryAccessArgs,
    upload: &UploadArgs,
    http: HttpPolicy,
) -> RegistrySettings {
    RegistrySettings {
        chunk_size: upload.chunk_size,
        max_concurrent_uploads: usize::from(upload.jobs),
        ..access_settings(access, http)
    }
}

/// Registry settings of a command that only reads from registries; requests follow `http`.
pub fn access_settings(args: &RegistryAccessArgs, http: HttpPolicy) -> RegistrySettings {
    RegistrySettings {
        insecure_hosts: args.insecure_registries.clone(),
        http,
        ..RegistrySettings::default()
    }
}

/// This run's HTTP policy: `--http-timeout`/`--http-connect-timeout` (global flags), else the
/// environment's limits, else the defaults. Made once, before the command runs, and handed to
/// every client the command builds.
pub fn http_policy(args: &HttpArgs) -> Result<HttpPolicy, dockless_registry::http::LimitError> {
    HttpPolicy::from_flags_and_env(args.http_timeout, args.http_connect_timeout)
}

/// `--username` with the password read from standard input here, once, straight into a
/// secret: the credential for `target`'s registry.
pub fn explicit_credential(
    upload: &UploadArgs,
    target: &Reference,
) -> Result<Option<(String, ResolvedCredential)>, SettingsError> {
    let Some(username) = &upload.username else {
        return Ok(None);
    };
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| SettingsError::Stdin(e.to_string()))?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(SettingsError::Stdin("standard input was empty".into()));
    }
    Ok(Some((
        target.registry().to_owned(),
        ResolvedCredential::explicit(username.clone(), SecretString::from(password)),
    )))
}

/// Build options for `build` and `push`.
pub fn image_options(
    context: &std::path::Path,
    image: &ImageArgs,
) -> Result<BuildOptions, SettingsError> {
    if let Some(list) = image.platform.as_deref().filter(|p| p.contains(',')) {
        return Err(SettingsError::Buildx(format!(
            "--platform {list}: several platforms are built by `dockless build` and `dockless push` only"
        )));
    }
    let platform = image.platform.as_deref().map(known_platform).transpose()?;
    options_for_platform(context, image, platform)
}

/// [`image_options`] with the platform already read.
fn options_for_platform(
    context: &std::path::Path,
    image: &ImageArgs,
    platform: Option<Platform>,
) -> Result<BuildOptions, SettingsError> {
    let compression = match (
        image.compression.unwrap_or(CompressionArg::Gzip),
        image.compression_level,
    ) {
        (CompressionArg::Gzip, None) => Compression::Gzip { level: 1 },
        (CompressionArg::Gzip, Some(level @ 1..=9)) => Compression::Gzip {
            level: level as u32,
        },
        (CompressionArg::Gzip, Some(level)) => {
            return Err(SettingsError::Level {
                level,
                compression: "gzip",
                min: 1,
                max: 9,
            });
        }
        (CompressionArg::Zstd, None) => Compression::Zstd { level: 3 },
        (CompressionArg::Zstd, Some(level @ 1..=19)) => Compression::Zstd { level },
        (CompressionArg::Zstd, Some(level)) => {
            return Err(SettingsError::Level {
                level,
                compression: "zstd",
                min: 1,
                max: 19,
            });
        }
    };
    Ok(BuildOptions {
        platform,
        format: match image.format.unwrap_or(FormatArg::Oci) {
            FormatArg::Oci => Format::Oci,
            FormatArg::Docker => {
                if !image.inputs.buildx.annotations.is_empty() {
                    return Err(SettingsError::Buildx(
                        "--annotation: Docker manifests (--format docker) carry no annotations; use --format oci".into(),
                    ));
                }
                Format::Docker
            }
        },
        compression,
        isolation: match image.isolation.unwrap_or(IsolationArg::Auto) {
            IsolationArg::Auto => Isolation::Auto,
            IsolationArg::Userns => Isolation::Userns,
            IsolationArg::Root => Isolation::Root,
        },
        network: match image.network.unwrap_or(NetworkArg::Host) {
            NetworkArg::Host | NetworkArg::Default => Network::Host,
            NetworkArg::None => Network::None,
        },
        target: image.target.clone(),
        ..base_options(context, image.dockerfile.as_deref(), &image.inputs)?
    })
}

/// `template build --platform`: one platform, parsed and known (a list is refused).
pub fn one_platform(text: &str) -> Result<Platform, SettingsError> {
    if text.contains(',') {
        return Err(SettingsError::Buildx(format!(
            "--platform {text}: an E2B template is built for one platform"
        )));
    }
    known_platform(text)
}

/// One `--platform` value, parsed and known.
fn known_platform(text: &str) -> Result<Platform, SettingsError> {
    let platform = text.trim().parse::<Platform>()?;
    if !platform.is_known() {
        return Err(SettingsError::UnknownPlatform(platform));
    }
    Ok(platform)
}

/// `--platform a,b[,…]`: the platforms of a multi-platform build, each once; `None` for one
/// platform or none (a build without an index).
pub fn platform_list(image: &ImageArgs) -> Result<Option<Vec<Platform>>, SettingsError> {
    let Some(list) = image.platform.as_deref().filter(|p| p.contains(',')) else {
        return Ok(None);
    };
    let mut platforms: Vec<Platform> = Vec::new();
    for text in list.split(',') {
        let platform = known_platform(text)?;
        if platforms
            .iter()
            .any(|p| p.normalized() == platform.normalized())
        {
            return Err(SettingsError::Buildx(format!(
                "--platform {list}: {platform} is named twice; name each platform once"
            )));
        }
        platforms.push(platform);
    }
    Ok(Some(platforms))
}

/// [`image_options`] for a multi-platform build: everything but the platform, which each of
/// the builds takes from the list.
pub fn shared_image_options(
    context: &std::path::Path,
    image: &ImageArgs,
) -> Result<BuildOptions, SettingsError> {
    options_for_platform(context, image, None)
}

/// Build options for `template build`: E2B runs OCI images with gzip layers, of `platform`
/// (linux/amd64 unless a self-hosted E2B runs another: see `flows::template_platform`).
pub fn template_options(
    context: &std::path::Path,
    dockerfile: Option<&std::path::Path>,
    inputs: &BuildInputArgs,
    platform: Platform,
) -> Result<BuildOptions, SettingsError> {
    Ok(BuildOptions {
        platform: Some(platform),
        ..base_options(context, dockerfile, inputs)?
    })
}

/// What every build shares: the context, its Dockerfile (`-f`, else the one `e2b.toml` names),
/// the build arguments, SOURCE_DATE_EPOCH; defaults for the rest.
fn base_options(
    context: &std::path::Path,
    dockerfile: Option<&std::path::Path>,
    inputs: &BuildInputArgs,
) -> Result<BuildOptions, SettingsError> {
    // e2b.toml is read only when -f does not say which Dockerfile (and a context that is
    // not a directory is the builder's to report).
    let context_dockerfile = match dockerfile {
        None if context.is_dir() => {
            TemplateConfig::load(context)?.and_then(|config| config.dockerfile)
        }
        _ => None,
    };
    Ok(BuildOptions {
        dockerfile: dockerfile.map(ToOwned::to_owned),
        context_dockerfile,
        build_args: build_args(&inputs.build_args)?,
        epoch: match inputs.buildx.timestamp {
            Some(seconds) => seconds,
            None => source_date_epoch()?,
        },
        secrets: inputs
            .secrets
            .iter()
            .map(|spec| dockless_build::parse_secret_flag(spec).map_err(SettingsError::from))
            .collect::<Result<_, _>>()?,
        cache_from: cache_references("--cache-from", &inputs.cache_from)?,
        cache_to: cache_references("--cache-to", &inputs.cache_to)?,
        no_cache: no_cache(&inputs.buildx),
        labels: key_value_flags("--label", &inputs.buildx.labels)?,
        annotations: annotations(&inputs.buildx.annotations)?,
        named_contexts: inputs
            .buildx
            .build_contexts
            .iter()
            .map(|text| super::buildx::parse_named_context(text))
            .collect::<Result<_, _>>()
            .map_err(|e| SettingsError::Buildx(e.0))?,
        ..BuildOptions::new(context)
    })
}

/// `--no-cache` (every step), else `--no-cache-filter`'s stages.
fn no_cache(buildx: &BuildxArgs) -> NoCache {
    match (buildx.no_cache, buildx.no_cache_filter.is_empty()) {
        (true, _) => NoCache::All,
        (false, true) => NoCache::Off,
        (false, false) => NoCache::Stages(
            buildx
                .no_cache_filter
                .iter()
                .flat_map(|f| f.split(','))
                .map(|s| s.trim().to_lowercase())
                .collect(),
        ),
    }
}

/// `KEY=VALUE` flags (`--label`) as a map; the last value of a key wins, as with docker.
fn key_value_flags(
    flag: &str,
    given: &[String],
) -> Result<BTreeMap<String, String>, SettingsError> {
    given
        .iter()
        .map(|text| match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.to_owned()))
            }
            _ => Err(SettingsError::Buildx(format!(
                "{flag} {text}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// `--annotation [manifest:]KEY=VALUE`: the image's one manifest. buildx's other places (an
/// index, a descriptor in it) do not exist in a single-platform push without an index.
fn annotations(given: &[String]) -> Result<BTreeMap<String, String>, SettingsError> {
    let mut plain = Vec::new();
    for text in given {
        let (place, rest) = match text.split_once(':') {
            Some((place, rest))
                if !place.contains('=')
                    && place.chars().all(|c| {
                        c.is_ascii_lowercase() || "-[]/,".contains(c) || c.is_ascii_digit()
                    }) =>
            {
                (place, rest)
            }
            _ => ("manifest", text.as_str()),
        };
        if place != "manifest" {
            return Err(SettingsError::Buildx(format!(
                "--annotation {text}: `{place}:` is not supported: dockless pushes one manifest without an index; annotate it with manifest:KEY=VALUE (or KEY=VALUE)"
            )));
        }
        plain.push(rest.to_owned());
    }
    key_value_flags("--annotation", &plain)
}

/// The environment variable that names one shared cache for both `--cache-from` and
/// `--cache-to` (each flag, when given, wins over it).
const CACHE_REPO_ENV: &str = "DOCKLESS_CACHE_REPO";

/// `--cache-from` / `--cache-to` references, else `DOCKLESS_CACHE_REPO`'s: REF, or buildx's
/// `type=registry,ref=REF[,mode=max]` (the other types are refused, each with why).
fn cache_references(flag: &'static str, given: &[String]) -> Result<Vec<Reference>, SettingsError> {
    let from_env;
    let texts = if given.is_empty() {
        from_env = std::env::var(CACHE_REPO_ENV)
            .ok()
            .filter(|value| !value.trim().is_empty());
        from_env.as_slice()
    } else {
        given
    };
    texts
        .iter()
        .map(|text| {
            let wrong = |message: String| SettingsError::CacheReference { flag, message };
            let named = cache_ref_text(flag, text.trim()).map_err(wrong)?;
            let reference = Reference::parse(&named).map_err(|e| wrong(e.to_string()))?;
            if flag == "--cache-to" && reference.digest().is_some() {
                return Err(wrong(format!("{text}: a cache is written under a tag, not a digest; name it REGISTRY/REPOSITORY[:TAG]")));
            }
            Ok(reference)
        })
        .collect()
}

/// The registry reference a cache flag names: the text itself, or buildx's `ref=` of
/// `type=registry`. dockless's shared cache holds every layer the build made or reused (buildx's
/// mode=max) in its own format, in a registry.
fn cache_ref_text(flag: &str, text: &str) -> Result<String, String> {
    if !text.contains('=') {
        return Ok(text.to_owned());
    }
    let fields = key_values(text).map_err(|why| format!("{text}: {why}"))?;
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    match get("type").unwrap_or("registry") {
        "registry" => {}
        "local" => {
            return Err(format!(
                "{text}: type=local is not supported: dockless's local cache is its store (DOCKLESS_CACHE_DIR; keep that directory between CI runs); a cache to share goes to a registry: type=registry,ref=REGISTRY/REPO:TAG"
            ));
        }
        "inline" => {
            return Err(format!(
                "{text}: type=inline is not supported: the cache goes to its own repository; use type=registry,ref=REGISTRY/REPO:cache"
            ));
        }
        other => {
            return Err(format!(
                "{text}: type={other} is not supported; dockless's shared cache lives in a registry: type=registry,ref=REGISTRY/REPO:TAG"
            ));
        }
    }
    for (key, value) in &fields {
        match (key.as_str(), value.as_str()) {
            ("type" | "ref", _) | ("mode", "max") | ("ignore-error", "true") => {}
            ("mode", "min") => {
                return Err(format!(
                    "{text}: mode=min is not supported: dockless exports every layer the build made or reused (mode=max); drop mode=min"
                ));
            }
            ("ignore-error", _) => {
                return Err(format!(
                    "{text}: ignore-error={value} is not supported: a failed export only warns, it never fails the build (ignore-error=true)"
                ));
            }
            (
                "image-manifest" | "oci-mediatypes" | "compression" | "compression-level"
                | "force-compression",
                _,
            ) if flag == "--cache-to" => {
                tracing::warn!(
                    "{flag} {text}: {key}={value} has no effect: dockless writes its shared cache in its own format, with the build's --compression"
                );
            }
            _ => {
                return Err(format!(
                    "{text}: `{key}={value}` is not supported; expected type=registry,ref=REGISTRY/REPO:TAG[,mode=max]"
                ));
            }
        }
    }
    get("ref")
        .map(str::to_owned)
        .ok_or_else(|| format!("{text}: type=registry needs ref=REGISTRY/REPO:TAG"))
}

/// `KEY=VALUE`, or `KEY` alone for the environment's value (dropped, with a warning, when
/// the environment has none, as Docker does).
fn build_args(raw_args: &[String]) -> Result<BTreeMap<String, String>, SettingsError> {
    let mut build_args = BTreeMap::new();
    for raw in raw_args {
        match raw.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                build_args.insert(key.to_owned(), value.to_owned());
            }
            None if !raw.is_empty() => match std::env::var(raw) {
                Ok(value) => {
                    build_args.insert(raw.clone(), value);
                }
                Err(_) => tracing::warn!(
                    "--build-arg {raw}: {raw} is not set in the environment, so the build does not get it; pass --build-arg {raw}=VALUE to give it a value"
                ),
            },
            _ => return Err(SettingsError::BuildArg(raw.clone())),
        }
    }
    Ok(build_args)
}

/// SOURCE_DATE_EPOCH when set (reproducible-builds.org), else 0: the same inputs give the same
/// digests on any day.
fn source_date_epoch() -> Result<u64, SettingsError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|_| SettingsError::Epoch(value)),
        _ => Ok(0),
    }
}
