//! A stage's layers: planned ones wait as [`PendingLayer`]s and are written together (biggest
//! first, in parallel) when something needs them on disk, and the finished stage becomes an
//! image in the store.

use super::{Builder, Stage};
use crate::build::{BuildError, BuiltImage, BuiltLayer};
use crate::dockerfile::Instruction;
use crate::image::{Descriptor, History, Manifest, Platform};
use crate::layer::cache::Stamps;
use crate::layer::{Entry, EntryKind, LayerError, OnLive, WrittenLayer, write_layer_cached};

/// A layer whose entries are known; its staged files live as long as it does.
pub(super) struct PendingLayer {
    line: usize,
    entries: Vec<Entry>,
    stamps: Stamps,
    _staging: Vec<tempfile::TempDir>,
}

/// Uncompressed bytes per core from which one layer keeps every core compressing by itself
/// (eight of the compressor's 1 MiB blocks each).
const BYTES_PER_CORE: u64 = 8 << 20;

impl PendingLayer {
    /// The file bytes the layer will hold.
    fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }
}

impl Builder<'_> {
    /// Plans a layer of `entries` for `instruction`, written with the stage's others later.
    pub(super) fn add_layer(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        entries: Vec<Entry>,
        staging: Vec<tempfile::TempDir>,
        stamps: Stamps,
    ) {
        stage.filesystem.record(&entries);
        stage.config.history.push(self.history(instruction, false));
        stage.pending.push(PendingLayer {
            line: instruction.line,
            entries,
            stamps,
            _staging: staging,
        });
    }

    /// The history record of an instruction.
    pub(super) fn history(&self, instruction: &Instruction, empty_layer: bool) -> History {
        History {
            created: Some(self.created.clone()),
            created_by: Some(instruction.text.clone()),
            comment: Some("dockless".into()),
            empty_layer: empty_layer.then_some(true),
            ..Default::default()
        }
    }

    /// Runs `write` with a callback that hands a new layer's live bytes to the observer.
    pub(super) fn with_live<R>(&self, write: impl FnOnce(Option<OnLive<'_>>) -> R) -> R {
        match self.observer {
            Some(observer) => {
                let on_live = |live| observer.writing(live);
                write(Some(&on_live))
            }
            None => write(None),
        }
    }

    pub(super) fn built_layer(&self, written: &WrittenLayer) -> BuiltLayer {
        BuiltLayer {
            digest: written.digest.clone(),
            diff_id: written.diff_id.clone(),
            size: written.size,
            media_type: self.options.format.layer(self.options.compression).into(),
            from_base: false,
        }
    }

    /// Writes the pending layers, biggest first. A layer big enough to keep every core
    /// compressing is written alone, so it is done (and, in a push, uploaded) as early as
    /// possible while the smaller ones follow; the small ones are written several at a time,
    /// since a small layer alone leaves cores idle.
    fn write_pending(&self, pending: &[PendingLayer]) -> Result<Vec<BuiltLayer>, BuildError> {
        let cores = crate::parallel::cores();
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(pending[i].bytes()));
        let fills_every_core = |i: &usize| pending[*i].bytes() >= cores as u64 * BYTES_PER_CORE;
        let (big, small): (Vec<usize>, Vec<usize>) = order.into_iter().partition(fills_every_core);
        let mut results: Vec<(usize, Result<WrittenLayer, LayerError>)> = big
            .into_iter()
            .map(|i| (i, self.write_one(&pending[i])))
            .collect();
        // A writer thread that died leaves its layers out, reported just below.
        let concurrent =
            crate::parallel::map_in_order(&small, cores, |&i| (i, self.write_one(&pending[i])));
        results.extend(concurrent.unwrap_or_default());
        results.sort_by_key(|(i, _)| *i);
        if results.len() != pending.len() {
            return Err(BuildError::Dockerfile {
                file: self.dockerfile.to_owned(),
                message: "a layer writer stopped unexpectedly; build again".into(),
            });
        }
        results
            .into_iter()
            .zip(pending)
            .map(|((_, result), layer)| {
                let written = result.map_err(|source| BuildError::Instruction {
                    file: self.dockerfile.to_owned(),
                    line: layer.line,
                    source: source.into(),
                })?;
                tracing::info!(line = layer.line, digest = %written.digest, size = written.size, entries = layer.entries.len(), "layer");
                Ok(self.built_layer(&written))
            })
            .collect()
    }

    /// Writes one pending layer (or takes it from the layer cache) and tells the observer.
    fn write_one(&self, layer: &PendingLayer) -> Result<WrittenLayer, LayerError> {
        let written = self.with_live(|on_live| {
            write_layer_cached(
                self.store,
                &layer.entries,
                self.settings,
                &layer.stamps,
                on_live,
            )
        });
        if let (Ok(written), Some(observer)) = (&written, self.observer) {
            observer.written(&self.built_layer(written));
        }
        written
    }

    /// Writes the stage's pending layers (RUN and COPY --from need every layer below written).
    pub(super) fn flush(&self, stage: &mut Stage) -> Result<(), BuildError> {
        if !stage.pending.is_empty() {
            let written = self.write_pending(&stage.pending)?;
            stage.pending.clear();
            stage.layers.extend(written);
        }
        Ok(())
    }

    /// Writes what is pending, then the config and the manifest: the stage as an image.
    pub(super) fn finish(&self, mut stage: Stage) -> Result<BuiltImage, BuildError> {
        self.flush(&mut stage)?;
        let mut config = stage.config;
        config.created = Some(self.created.clone());
        config.rootfs.diff_ids = stage.layers.iter().map(|l| l.diff_id.clone()).collect();
        let config_bytes = config.to_bytes();
        let config_digest = self.store.put_bytes(&config_bytes)?;
        let format = self.options.format;
        let config_descriptor =
            Descriptor::new(format.config(), config_digest, config_bytes.len() as u64);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(format.manifest().into()),
            config: config_descriptor.clone(),
            layers: stage
                .layers
                .iter()
                .map(|l| Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size))
                .collect(),
            annotations: None,
        };
        let manifest_bytes = manifest.to_bytes();
        let manifest_digest = self.store.put_bytes(&manifest_bytes)?;
        Ok(BuiltImage {
            manifest: Descriptor::new(
                format.manifest(),
                manifest_digest,
                manifest_bytes.len() as u64,
            ),
            config: config_descriptor,
            layers: stage.layers,
            base: stage.remote_base,
            platform: Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            },
        })
    }
}
