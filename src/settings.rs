//! Turning raw command-line flags into validated library options.

use std::collections::BTreeMap;

use std::io::Read;

use dockless::registry::{Reference, RegistrySettings, ResolvedCredential};
use secrecy::SecretString;

use crate::cli::{
    BuildArgs, CompressionArg, FormatArg, ImageArgs, IsolationArg, NetworkArg, RegistryArgs,
};
use dockless::build::BuildOptions;
use dockless::image::{Compression, Format, Platform};
use dockless::run::Isolation;
use dockless::run::sandbox::Network;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--build-arg {0}: expected KEY=VALUE (or KEY to take the value from the environment)")]
    BuildArg(String),
    #[error(transparent)]
    Platform(#[from] dockless::image::platform::PlatformError),
    #[error("--compression-level {level}: {compression} levels go from {min} to {max}")]
    Level {
        level: i32,
        compression: &'static str,
        min: i32,
        max: i32,
    },
    #[error("SOURCE_DATE_EPOCH={0}: expected a whole number of seconds since 1970")]
    Epoch(String),
    #[error(
        "--password-stdin: {0}; pipe the password in, e.g. `echo \"$TOKEN\" | dockless push … --password-stdin`"
    )]
    Stdin(String),
}

pub fn build_options(args: &BuildArgs) -> Result<BuildOptions, SettingsError> {
    image_options(&args.context, &args.image)
}

/// Registry settings from the flags. The password, when asked for, is read from standard input
/// here, once, straight into a secret.
pub fn registry_settings(args: &RegistryArgs) -> RegistrySettings {
    RegistrySettings {
        insecure_hosts: args.insecure_registries.clone(),
        chunk_size: args.chunk_size,
        max_concurrent_uploads: usize::from(args.jobs),
        ..RegistrySettings::default()
    }
}

pub fn explicit_credential(
    args: &RegistryArgs,
    target: &Reference,
) -> Result<Option<(String, ResolvedCredential)>, SettingsError> {
    let Some(username) = &args.username else {
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

pub fn image_options(
    context: &std::path::Path,
    image: &ImageArgs,
) -> Result<BuildOptions, SettingsError> {
    let mut build_args = BTreeMap::new();
    for raw in &image.build_args {
        match raw.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                build_args.insert(key.to_owned(), value.to_owned());
            }
            None if !raw.is_empty() => {
                // Docker takes a bare KEY from the environment, and drops it when unset.
                if let Ok(value) = std::env::var(raw) {
                    build_args.insert(raw.clone(), value);
                }
            }
            _ => return Err(SettingsError::BuildArg(raw.clone())),
        }
    }
    let platform = image
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let compression = match (image.compression, image.compression_level) {
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
        context: context.to_owned(),
        dockerfile: image.dockerfile.clone(),
        build_args,
        platform,
        format: match image.format {
            FormatArg::Oci => Format::Oci,
            FormatArg::Docker => Format::Docker,
        },
        compression,
        epoch: source_date_epoch()?,
        isolation: match image.isolation {
            IsolationArg::Auto => Isolation::Auto,
            IsolationArg::Userns => Isolation::Userns,
            IsolationArg::Root => Isolation::Root,
        },
        network: match image.network {
            NetworkArg::Host => Network::Host,
            NetworkArg::None => Network::None,
        },
        target: image.target.clone(),
        secrets: Default::default(),
    })
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
