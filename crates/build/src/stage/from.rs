//! FROM: a stage starts from scratch, an image (a local layout or a registry) or an earlier
//! stage; and the automatic platform ARGs that FROM lines may use.

use std::collections::BTreeMap;

use super::dispatch::Failure;
use super::{Executor, Invalid, Stage, StepError, Unsupported, find_stage, lookup};
use crate::BuiltLayer;
use crate::base::{self, Base};
use crate::filesystem::KnownFilesystem;
use dockless_dockerfile::{Command, Instruction};
use dockless_oci::image::config::DEFAULT_PATH;
use dockless_oci::image::{Descriptor, ImageConfig, Platform};
use dockless_registry::Reference;
use dockless_registry::remote::LayerSource;

impl Executor<'_> {
    /// Starts the stage a FROM line describes; with it, the base's ONBUILD triggers, as
    /// instructions of the FROM line (they run now and are not passed on).
    pub(super) fn from(
        &self,
        instruction: &Instruction,
        global_args: &BTreeMap<String, Option<String>>,
        done: &[Stage],
    ) -> Result<(Stage, Vec<Instruction>), Failure> {
        let mut stage = self.start_stage(instruction, global_args, done)?;
        let triggers = stage.config.config.on_build.take().unwrap_or_default();
        let triggers = triggers
            .iter()
            .map(|trigger| {
                dockless_dockerfile::parse_trigger(trigger, instruction.line).map_err(|why| {
                    Invalid(format!(
                        "the base's ONBUILD trigger `{trigger}` cannot run: {why}; build from an image without it"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((stage, triggers))
    }

    /// The stage a FROM line starts: from an earlier stage, else from its base image.
    fn start_stage(
        &self,
        instruction: &Instruction,
        global_args: &BTreeMap<String, Option<String>>,
        done: &[Stage],
    ) -> Result<Stage, StepError> {
        let Command::From(from) = self.expand(instruction, &|name| lookup(global_args, name))?
        else {
            unreachable!("expanding FROM gives FROM")
        };
        let name = from.stage_name.as_deref().map(str::to_lowercase);
        let named = self.named_context(&from.image);
        if let Some(previous) = find_stage(done, &from.image).filter(|_| named.is_none()) {
            // `FROM <stage>`: carry on from where that stage ended, with its ARG values.
            return Ok(Stage {
                config: previous.config.clone(),
                layers: previous.layers.clone(),
                filesystem: previous.filesystem.clone(),
                args: previous.args.clone(),
                shell: previous.shell.clone(),
                cmd_set_here: false,
                remote_base: previous.remote_base.clone(),
                pending: Vec::new(),
                name,
                view: Default::default(),
                rootfs: None,
                unlisted: previous.unlisted.clone(),
                listing_failure: None,
                listing_ahead: None,
            });
        }
        let platform = match &from.platform {
            Some(p) => Some(p.parse::<Platform>()?),
            None => self.options.platform.clone(),
        };
        let Base {
            mut config,
            layers,
            filesystem,
            remote,
        } = base::resolve(
            named.unwrap_or(&from.image),
            self.context.root(),
            platform.as_ref(),
            self.store,
            self.remote,
        )?;
        if config.config.env_value("PATH").is_none() {
            let (key, value) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", ""));
            config.config.set_env(key, value);
        }
        let layers = self.base_layers(layers, &config, remote.as_ref())?;
        if let (Some(reference), Some(step)) = (&remote, self.current_step()) {
            let bytes: u64 = layers.iter().map(|l| l.size).sum();
            step.note(&format!(
                "resolved {reference}: {} layers, {:.1} MiB (fetched when a step needs them)",
                layers.len(),
                bytes as f64 / (1024.0 * 1024.0)
            ));
        }
        Ok(Stage {
            config,
            layers,
            filesystem,
            args: BTreeMap::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set_here: false,
            remote_base: remote,
            pending: Vec::new(),
            name,
            view: Default::default(),
            rootfs: None,
            unlisted: Vec::new(),
            listing_failure: None,
            listing_ahead: None,
        })
    }

    /// The base image's layers as the new image carries them (media types in its format).
    fn base_layers(
        &self,
        layers: Vec<Descriptor>,
        config: &ImageConfig,
        remote: Option<&Reference>,
    ) -> Result<Vec<BuiltLayer>, Unsupported> {
        layers
            .into_iter()
            .zip(config.rootfs.diff_ids.clone())
            .map(|(descriptor, diff_id)| {
                let media_type = self
                    .options
                    .format
                    .translate_layer(&descriptor.media_type)
                    .ok_or_else(|| {
                        Unsupported(format!(
                            "base layer {} has media type {}, which cannot be carried into an image",
                            descriptor.digest, descriptor.media_type
                        ))
                    })?;
                Ok(BuiltLayer {
                    digest: descriptor.digest,
                    diff_id,
                    size: descriptor.size,
                    media_type: media_type.into(),
                    from_base: true,
                    source: remote.cloned().map(LayerSource::Base),
                })
            })
            .collect()
    }

    /// The ARGs BuildKit provides to every build (TARGETPLATFORM and friends), which
    /// `--build-arg` may override.
    pub(super) fn automatic_args(&self) -> BTreeMap<String, Option<String>> {
        let mut args = platform_args(self.options.platform.as_ref(), &Platform::host());
        for (name, value) in args.iter_mut() {
            if let Some(given) = self.options.build_args.get(name) {
                *value = Some(given.clone());
            }
        }
        args
    }
}

/// The platform ARGs as BuildKit defines them (moby/buildkit frontend/dockerfile/dockerfile2llb
/// `platform.go` `defaultArgs`): BUILD* the machine that builds (`build`, the host), TARGET*
/// the platform asked for, both normalized as containerd does. Without `--platform` BuildKit's
/// target is the build platform; dockless builds linux/amd64 unless told (E2B's cloud runs
/// amd64), so TARGET* say linux/amd64 then, which is what is built.
pub(super) fn platform_args(
    target: Option<&Platform>,
    build: &Platform,
) -> BTreeMap<String, Option<String>> {
    let target = target
        .cloned()
        .unwrap_or_else(Platform::linux_amd64)
        .normalized();
    let build = build.normalized();
    let mut args = BTreeMap::new();
    for (prefix, p) in [("TARGET", &target), ("BUILD", &build)] {
        args.insert(format!("{prefix}PLATFORM"), Some(p.to_string()));
        args.insert(format!("{prefix}OS"), Some(p.os.clone()));
        args.insert(format!("{prefix}ARCH"), Some(p.architecture.clone()));
        args.insert(
            format!("{prefix}VARIANT"),
            Some(p.variant.clone().unwrap_or_default()),
        );
    }
    args
}

impl Stage {
    /// Stands for a stage that is not built (nothing refers to it), keeping stage indexes right.
    pub(super) fn skipped(name: Option<&str>) -> Stage {
        Stage {
            config: ImageConfig::scratch("linux", "amd64", None),
            layers: Vec::new(),
            filesystem: KnownFilesystem::scratch(),
            args: BTreeMap::new(),
            shell: Vec::new(),
            cmd_set_here: false,
            remote_base: None,
            pending: Vec::new(),
            name: name.map(str::to_lowercase),
            view: Default::default(),
            rootfs: None,
            unlisted: Vec::new(),
            listing_failure: None,
            listing_ahead: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: Option<&str>, build: &str) -> Vec<String> {
        let target = target.map(|t| t.parse::<Platform>().unwrap());
        platform_args(target.as_ref(), &build.parse().unwrap())
            .into_iter()
            .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
            .collect()
    }

    /// moby/buildkit frontend/dockerfile/dockerfile2llb/platform.go `defaultArgs`, with the
    /// target from `--platform` normalized (frontend/dockerui/attr.go `parsePlatforms`) and the
    /// build platform from the host (frontend/dockerui/config.go).
    #[test]
    fn platform_args_follow_the_target_and_the_host() {
        assert_eq!(
            args(Some("linux/arm64/v8"), "linux/amd64"),
            [
                "BUILDARCH=amd64",
                "BUILDOS=linux",
                "BUILDPLATFORM=linux/amd64",
                "BUILDVARIANT=",
                "TARGETARCH=arm64",
                "TARGETOS=linux",
                "TARGETPLATFORM=linux/arm64",
                "TARGETVARIANT=",
            ]
        );
        assert_eq!(
            args(Some("linux/arm"), "linux/arm64"),
            [
                "BUILDARCH=arm64",
                "BUILDOS=linux",
                "BUILDPLATFORM=linux/arm64",
                "BUILDVARIANT=",
                "TARGETARCH=arm",
                "TARGETOS=linux",
                "TARGETPLATFORM=linux/arm/v7",
                "TARGETVARIANT=v7",
            ]
        );
        // An arm host building without --platform: BUILD* is the host, TARGET* what dockless
        // builds by default.
        let host = args(None, "linux/arm/v6");
        assert!(host.contains(&"BUILDPLATFORM=linux/arm/v6".to_owned()));
        assert!(host.contains(&"BUILDVARIANT=v6".to_owned()));
        assert!(host.contains(&"TARGETPLATFORM=linux/amd64".to_owned()));
    }
}
