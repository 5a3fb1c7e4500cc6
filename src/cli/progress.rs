//! Push progress on stderr: bars on a terminal (indicatif), plain lines (with sizes)
//! otherwise, JSON lines with `--progress rawjson`, nothing with -q or --json.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use dockless_oci::digest::Digest;
use dockless_registry::{BlobOutcome, PushProgress, PushProgressFn};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct PushProgressView {
    mode: Mode,
}

enum Mode {
    Silent,
    /// A line per blob, with its size (`json`: as a JSON object).
    Lines {
        sizes: Arc<Mutex<HashMap<Digest, u64>>>,
        json: bool,
    },
    Bars(Arc<Bars>),
}

struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    /// A bar per blob, by digest, with the bytes of it counted in the total so far.
    blobs: HashMap<Digest, (ProgressBar, u64)>,
    /// A bar per layer still streaming (its digest not known yet), by stream.
    streams: HashMap<u64, (ProgressBar, u64)>,
    /// How blobs without a bar yet ended (early uploads of cached layers, before the push
    /// announces its blobs): their bars start finished.
    ended_early: HashMap<Digest, BlobOutcome>,
}

impl PushProgressView {
    pub fn new(silent: bool) -> Self {
        let mode = if silent {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            Mode::Bars(Arc::new(Bars::new(multi)))
        } else {
            Mode::Lines {
                sizes: Default::default(),
                json: false,
            }
        };
        PushProgressView { mode }
    }

    /// Plain lines (`json`: JSON objects), on a terminal too.
    pub fn lines(json: bool) -> Self {
        PushProgressView {
            mode: Mode::Lines {
                sizes: Default::default(),
                json,
            },
        }
    }

    /// Announces the blobs about to be pushed (digest, size), for the bars.
    pub fn announce(&self, blobs: impl Iterator<Item = (Digest, u64)>) {
        match &self.mode {
            Mode::Bars(bars) => bars.announce(blobs),
            Mode::Lines { sizes, .. } => sizes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(blobs),
            Mode::Silent => {}
        }
    }

    pub fn callback(&self) -> Option<PushProgressFn> {
        match &self.mode {
            Mode::Silent => None,
            Mode::Lines { sizes, json } => {
                let (sizes, json) = (sizes.clone(), *json);
                Some(Arc::new(move |event| {
                    let mut sizes = sizes.lock().unwrap_or_else(|e| e.into_inner());
                    match event {
                        PushProgress::Sent { digest, total, .. } => {
                            sizes.insert(digest, total);
                        }
                        PushProgress::StreamEnded {
                            blob: Some((digest, size)),
                            ..
                        } => {
                            sizes.insert(digest, size);
                        }
                        PushProgress::Done { digest, outcome } => {
                            let size = sizes.get(&digest).copied();
                            blob_line(&digest, size, outcome, json);
                        }
                        _ => {}
                    }
                }))
            }
            Mode::Bars(bars) => {
                let bars = bars.clone();
                Some(Arc::new(move |event| bars.update(event)))
            }
        }
    }

    pub fn finish(&self) {
        if let Mode::Bars(bars) = &self.mode {
            bars.total.finish();
            let _ = bars.multi.clear();
        }
    }
}

const BLOB_TEMPLATE: &str = "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}";
/// A streaming layer's size is known only at its end: bytes and rate, no bar.
const STREAM_TEMPLATE: &str = "{prefix:>12} {bytes} {bytes_per_sec} {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Bars {
    fn new(multi: MultiProgress) -> Self {
        let total = multi.add(ProgressBar::new(0));
        total.set_style(style(
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ));
        total.set_prefix("total");
        Bars {
            multi,
            total,
            state: Mutex::new(BarState::default()),
        }
    }

    fn announce(&self, blobs: impl Iterator<Item = (Digest, u64)>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (digest, size) in blobs {
            let outcome = state.ended_early.remove(&digest);
            let entry = self.blob_bar(&mut state, &digest, size);
            if let Some(outcome) = outcome {
                self.finish_bar(entry, outcome);
            }
        }
    }

    /// Marks a blob's bar done with `outcome` and counts the rest of its size in the total.
    /// A bar already done keeps its first outcome: a layer streamed while it was written
    /// shows "uploaded", not the "exists" the final pass then finds.
    fn finish_bar(&self, (bar, seen): &mut (ProgressBar, u64), outcome: BlobOutcome) {
        if bar.is_finished() {
            return;
        }
        let length = bar.length().unwrap_or(0);
        self.total.inc(length.saturating_sub(*seen));
        *seen = (*seen).max(length);
        bar.set_position(length);
        bar.finish_with_message(outcome_word(outcome));
    }

    /// The bar of blob `digest`, made (and its size added to the total) if it has none yet.
    fn blob_bar<'s>(
        &self,
        state: &'s mut BarState,
        digest: &Digest,
        size: u64,
    ) -> &'s mut (ProgressBar, u64) {
        state.blobs.entry(digest.clone()).or_insert_with(|| {
            let bar = self
                .multi
                .insert_before(&self.total, ProgressBar::new(size));
            bar.set_style(style(BLOB_TEMPLATE));
            bar.set_prefix(short(digest));
            self.total.inc_length(size);
            (bar, 0)
        })
    }

    fn update(&self, event: PushProgress) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            PushProgress::Sent {
                digest,
                sent,
                total,
            } => {
                let (bar, seen) = self.blob_bar(&mut state, &digest, total);
                // A retried try starts again from 0: only bytes beyond what was seen count.
                if sent > *seen {
                    self.total.inc(sent - *seen);
                    *seen = sent;
                }
                bar.set_position(sent);
            }
            PushProgress::Done { digest, outcome } => match state.blobs.get_mut(&digest) {
                Some(entry) => self.finish_bar(entry, outcome),
                None => {
                    state.ended_early.entry(digest).or_insert(outcome);
                }
            },
            PushProgress::Streaming { stream, sent } => {
                let (bar, seen) = state.streams.entry(stream).or_insert_with(|| {
                    let bar = self
                        .multi
                        .insert_before(&self.total, ProgressBar::no_length());
                    bar.set_style(style(STREAM_TEMPLATE));
                    bar.set_prefix("new layer");
                    bar.set_message("streaming as it is written");
                    (bar, 0)
                });
                // The size grows with the stream: the total's length follows what was sent.
                if sent > *seen {
                    self.total.inc_length(sent - *seen);
                    self.total.inc(sent - *seen);
                    *seen = sent;
                }
                bar.set_position(sent);
            }
            PushProgress::StreamEnded { stream, blob } => {
                let Some((bar, seen)) = state.streams.remove(&stream) else {
                    // Nothing was sent, so nothing counted: the blob's own bar tells the rest.
                    return;
                };
                let Some((digest, size)) = blob else {
                    // Out of the total again (position first, never past the length): the
                    // final pass uploads the blob from the store, under its own bar.
                    self.total
                        .set_position(self.total.position().saturating_sub(seen));
                    self.total
                        .set_length(self.total.length().unwrap_or(0).saturating_sub(seen));
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                    return;
                };
                // Its bytes are in the total already; the rest of its size (a stream abandoned
                // because the registry had the blob) is added, and counted by its `Done`.
                self.total.inc_length(size.saturating_sub(seen));
                bar.set_style(style(BLOB_TEMPLATE));
                bar.set_prefix(short(&digest));
                bar.set_message("");
                bar.set_length(size);
                state.blobs.insert(digest, (bar, size.min(seen)));
            }
        }
    }
}

/// One blob's line: `uploaded sha256:… (1.2 MiB)`, or its JSON object.
fn blob_line(digest: &Digest, size: Option<u64>, outcome: BlobOutcome, json: bool) {
    if json {
        let value = serde_json::json!({
            "event": "push",
            "digest": digest,
            "size": size,
            "outcome": outcome_word(outcome),
        });
        eprintln!("{value}");
    } else {
        let size = size
            .map(|s| format!(" ({})", human_size(s)))
            .unwrap_or_default();
        eprintln!("{:>9} {digest}{size}", outcome_word(outcome));
    }
}

fn outcome_word(outcome: BlobOutcome) -> &'static str {
    match outcome {
        BlobOutcome::Skipped => "exists",
        BlobOutcome::Mounted => "mounted",
        BlobOutcome::Uploaded => "uploaded",
    }
}

/// The first 12 hex digits, as `docker` shows a digest.
fn short(digest: &Digest) -> String {
    digest.hex()[..12].to_owned()
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden() -> Bars {
        Bars::new(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()))
    }

    /// A digest named by its content, for readable tests.
    fn d(name: &str) -> Digest {
        Digest::of(name.as_bytes())
    }

    fn message(bars: &Bars, digest: &Digest) -> String {
        let state = bars.state.lock().unwrap();
        state.blobs[digest].0.message()
    }

    #[test]
    fn a_streamed_layer_shows_uploaded_and_counts_once() {
        let bars = hidden();
        let digest = d("aaaa");
        bars.update(PushProgress::Streaming {
            stream: 0,
            sent: 600,
        });
        bars.update(PushProgress::Streaming {
            stream: 0,
            sent: 1000,
        });
        assert_eq!(
            (bars.total.position(), bars.total.length()),
            (1000, Some(1000))
        );
        bars.update(PushProgress::StreamEnded {
            stream: 0,
            blob: Some((digest.clone(), 1000)),
        });
        bars.update(PushProgress::Done {
            digest: digest.clone(),
            outcome: BlobOutcome::Uploaded,
        });
        // After the build, the final pass: the same blob is announced and found present.
        bars.announce([(digest.clone(), 1000), (d("bbbb"), 50)].into_iter());
        bars.update(PushProgress::Done {
            digest: digest.clone(),
            outcome: BlobOutcome::Skipped,
        });
        bars.update(PushProgress::Done {
            digest: d("bbbb"),
            outcome: BlobOutcome::Skipped,
        });
        assert_eq!(message(&bars, &digest), "uploaded");
        assert_eq!(message(&bars, &d("bbbb")), "exists");
        assert_eq!(
            (bars.total.position(), bars.total.length()),
            (1050, Some(1050))
        );
        assert!(bars.state.lock().unwrap().streams.is_empty());
    }

    #[test]
    fn a_failed_stream_leaves_the_blob_to_its_own_bar() {
        let bars = hidden();
        bars.update(PushProgress::Streaming {
            stream: 3,
            sent: 400,
        });
        bars.update(PushProgress::StreamEnded {
            stream: 3,
            blob: None,
        });
        assert_eq!((bars.total.position(), bars.total.length()), (0, Some(0)));
        // The final pass uploads it from the store, from the start.
        bars.announce([(d("cccc"), 900)].into_iter());
        for sent in [300, 900] {
            bars.update(PushProgress::Sent {
                digest: d("cccc"),
                sent,
                total: 900,
            });
        }
        bars.update(PushProgress::Done {
            digest: d("cccc"),
            outcome: BlobOutcome::Uploaded,
        });
        assert_eq!(message(&bars, &d("cccc")), "uploaded");
        assert_eq!(
            (bars.total.position(), bars.total.length()),
            (900, Some(900))
        );
    }

    #[test]
    fn a_cached_layer_mounted_before_the_push_announced_it_shows_mounted() {
        let bars = hidden();
        bars.update(PushProgress::Done {
            digest: d("eeee"),
            outcome: BlobOutcome::Mounted,
        });
        bars.announce([(d("eeee"), 70)].into_iter());
        bars.update(PushProgress::Done {
            digest: d("eeee"),
            outcome: BlobOutcome::Skipped,
        });
        assert_eq!(message(&bars, &d("eeee")), "mounted");
        assert_eq!((bars.total.position(), bars.total.length()), (70, Some(70)));
    }

    #[test]
    fn a_blob_sent_before_it_was_announced_is_counted_once() {
        let bars = hidden();
        bars.update(PushProgress::Sent {
            digest: d("dddd"),
            sent: 10,
            total: 20,
        });
        bars.announce([(d("dddd"), 20)].into_iter());
        bars.update(PushProgress::Done {
            digest: d("dddd"),
            outcome: BlobOutcome::Uploaded,
        });
        assert_eq!((bars.total.position(), bars.total.length()), (20, Some(20)));
    }
}
