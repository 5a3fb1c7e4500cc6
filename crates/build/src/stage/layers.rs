//! A stage's layers: planned ones wait as [`PendingLayer`]s and are written together (biggest
//! first, in parallel) when something needs them on disk, and the finished stage becomes an
//! image in the store.

use super::dispatch::StageExecutor;
use super::{Executor, Stage, StepError};
use crate::{BuildError, BuiltImage, BuiltLayer};
use dockless_dockerfile::Instruction;
use dockless_layer::cache::{self, Stamps};
use dockless_layer::{Entry, EntryKind, LayerError, OnLive, WrittenLayer, write_layer};
use dockless_oci::image::{Descriptor, History, Manifest, Platform};
use dockless_registry::remote::LayerSource;

/// A pending layer's index and what writing it gave.
type Written = (usize, Result<WrittenLayer, LayerError>);

/// What the caches say of a pending layer.
enum Cached {
    Found(Found),
    /// To be written, then recorded in the local cache under this key.
    Missing {
        local_key: Option<String>,
    },
}

/// A layer a cache gave, and where its blob is if not in the store.
struct Found {
    layer: WrittenLayer,
    source: Option<LayerSource>,
}

/// A layer whose entries are known; its staged files live as long as it does.
pub(super) struct PendingLayer {
    line: usize,
    entries: Vec<Entry>,
    stamps: Stamps,
    /// Whether a cache may give the layer (not with `--no-cache` for its stage).
    reuse: bool,
    _staging: Vec<tempfile::TempDir>,
}

/// Uncompressed bytes per core from which one layer keeps every core compressing by itself
/// (eight of the compressor's 1 MiB blocks each).
const BYTES_PER_CORE: u64 = 8 << 20;

impl PendingLayer {
    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }

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

impl StageExecutor<'_, '_> {
    /// Plans a layer of `entries` for the instruction on `line`, written with the stage's
    /// others later.
    pub(super) fn add_layer(
        &mut self,
        line: usize,
        entries: Vec<Entry>,
        staging: Vec<tempfile::TempDir>,
        stamps: Stamps,
    ) {
        let stage = &mut self.stage;
        stage.filesystem.record(&entries);
        stage.pending.push(PendingLayer {
            line,
            entries,
            stamps,
            reuse: self.build.options.no_cache.reuses(stage.name.as_deref()),
            _staging: staging,
        });
    }
}

impl Executor<'_> {
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
            source: None,
        }
    }

    /// Takes the pending layers a cache has, then writes the others, biggest first.
    fn write_pending(&self, pending: &[PendingLayer]) -> Result<Vec<BuiltLayer>, BuildError> {
        let cores = dockless_oci::parallel::cores();
        let all: Vec<usize> = (0..pending.len()).collect();
        // Hashing a layer for the shared cache reads its files once, uncompressed: cheap next
        // to compressing, and done for every layer at once.
        let found =
            dockless_oci::parallel::map_in_order(&all, cores, |&i| self.cached(&pending[i]))
                .ok_or_else(|| self.writer_stopped())?;
        let mut results: Vec<Option<Result<Found, LayerError>>> = Vec::new();
        let mut missing = Vec::new();
        for (i, found) in found.into_iter().enumerate() {
            match found {
                Ok(Cached::Missing { local_key }) => {
                    missing.push((i, local_key));
                    results.push(None);
                }
                Ok(Cached::Found(found)) => {
                    // A push sends a cached layer while the others are written.
                    if let Some(observer) = self.observer {
                        observer.written(&self.found_layer(&found));
                    }
                    results.push(Some(Ok(found)));
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        for (i, written) in self.write_all(pending, missing)? {
            results[i] = Some(written.map(|layer| Found {
                layer,
                source: None,
            }));
        }
        results
            .into_iter()
            .zip(pending)
            .map(|(result, layer)| {
                let found = result
                    .ok_or_else(|| self.writer_stopped())?
                    .map_err(|source| BuildError::Instruction {
                        file: self.dockerfile.to_owned(),
                        line: layer.line,
                        source: StepError::Layer(source),
                    })?;
                tracing::info!(line = layer.line, digest = %found.layer.digest, size = found.layer.size, entries = layer.entries.len(), shared = found.source.is_some(), "layer");
                let built = self.found_layer(&found);
                self.exporting(dockless_shared_cache::EntryKind::Files, &built, None);
                Ok(built)
            })
            .collect()
    }

    /// A layer a cache gave (or the writer made) as the image carries it.
    fn found_layer(&self, found: &Found) -> BuiltLayer {
        BuiltLayer {
            source: found.source.clone(),
            ..self.built_layer(&found.layer)
        }
    }

    fn writer_stopped(&self) -> BuildError {
        BuildError::Dockerfile {
            file: self.dockerfile.to_owned(),
            message: "a layer writer stopped unexpectedly; build again".into(),
        }
    }

    /// A pending layer as a cache has it: the local one (by the files' stamps), else the shared
    /// one (by the layer's diff_id, which hashing the files gives).
    fn cached(&self, layer: &PendingLayer) -> Result<Cached, LayerError> {
        let local_key = cache::key(&layer.entries, self.settings, &layer.stamps);
        if !layer.reuse {
            return Ok(Cached::Missing { local_key });
        }
        if let Some(written) = local_key
            .as_deref()
            .and_then(|k| cache::lookup(self.store, k))
        {
            tracing::debug!(digest = %written.digest, "layer cache hit");
            return Ok(Cached::Found(Found {
                layer: written,
                source: None,
            }));
        }
        if self.shared.is_empty() {
            return Ok(Cached::Missing { local_key });
        }
        let diff_id = dockless_layer::diff_id(&layer.entries, self.settings.epoch)?;
        let key = dockless_shared_cache::files_key(&diff_id, self.settings);
        let hit = self.shared.find(&key).filter(|hit| {
            let true_to_its_key = hit.layer.diff_id == diff_id;
            if !true_to_its_key {
                self.shared
                    .reject(&key, "its diff_id is not the one its key was made from");
            }
            true_to_its_key
        });
        Ok(match hit {
            Some(hit) => Cached::Found(Found {
                layer: hit.layer,
                source: Some(hit.source),
            }),
            None => Cached::Missing { local_key },
        })
    }

    /// Writes the layers `indexes` names, biggest first. A layer big enough to keep every
    /// core compressing is written alone, so it is done (and, in a push, uploaded) as early as
    /// possible while the smaller ones follow; the small ones are written several at a time,
    /// since a small layer alone leaves cores idle.
    fn write_all(
        &self,
        pending: &[PendingLayer],
        mut missing: Vec<(usize, Option<String>)>,
    ) -> Result<Vec<Written>, BuildError> {
        let cores = dockless_oci::parallel::cores();
        missing.sort_by_key(|(i, _)| std::cmp::Reverse(pending[*i].bytes()));
        let fills_every_core =
            |(i, _): &(usize, Option<String>)| pending[*i].bytes() >= cores as u64 * BYTES_PER_CORE;
        let (big, small): (Vec<_>, Vec<_>) = missing.into_iter().partition(fills_every_core);
        let write =
            |(i, key): &(usize, Option<String>)| (*i, self.write_one(&pending[*i], key.as_deref()));
        let mut results: Vec<Written> = big.iter().map(write).collect();
        let concurrent = dockless_oci::parallel::map_in_order(&small, cores, write)
            .ok_or_else(|| self.writer_stopped())?;
        results.extend(concurrent);
        Ok(results)
    }

    /// Writes one pending layer, records it in the local layer cache under `local_key` (its
    /// files' stamps, when they could be taken) and tells the observer.
    fn write_one(
        &self,
        layer: &PendingLayer,
        local_key: Option<&str>,
    ) -> Result<WrittenLayer, LayerError> {
        let written = self
            .with_live(|on_live| write_layer(self.store, &layer.entries, self.settings, on_live))?;
        if let Some(key) = local_key {
            cache::record(self.store, key, &written);
        }
        if let Some(observer) = self.observer {
            observer.written(&self.built_layer(&written));
        }
        Ok(written)
    }

    /// Remembers a layer of the build under its shared cache key, for `--cache-to`.
    pub(super) fn exporting(
        &self,
        kind: dockless_shared_cache::EntryKind,
        layer: &BuiltLayer,
        run_key: Option<String>,
    ) {
        let key = match (kind, run_key) {
            (dockless_shared_cache::EntryKind::Run, Some(key)) => key,
            _ => dockless_shared_cache::files_key(&layer.diff_id, self.settings),
        };
        let entry = dockless_shared_cache::ExportEntry {
            entry: dockless_shared_cache::CacheEntry {
                key,
                kind,
                layer: WrittenLayer {
                    digest: layer.digest.clone(),
                    diff_id: layer.diff_id.clone(),
                    size: layer.size,
                },
                media_type: layer.media_type.clone(),
            },
            source: layer.source.clone(),
        };
        self.exported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
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
        // Written while a base's listing read ahead is still coming in; checked after.
        self.flush(&mut stage)?;
        self.settle_at_from(&mut stage)?;
        let mut config = stage.config;
        config.created = Some(self.created.clone());
        if !self.options.labels.is_empty() {
            let labels = config.config.labels.get_or_insert_with(Default::default);
            labels.extend(self.options.labels.clone());
        }
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
            annotations: (!self.options.annotations.is_empty())
                .then(|| self.options.annotations.clone()),
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
            cache_entries: std::mem::take(
                &mut *self.exported.lock().unwrap_or_else(|e| e.into_inner()),
            ),
            stage_sets: Default::default(),
            platform: Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            },
        })
    }
}
