//! Push progress on stderr: bars on a terminal (indicatif), plain lines otherwise, nothing
//! with -q or --json.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use dockless::registry::{BlobOutcome, PushProgress, PushProgressFn};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct PushProgressView {
    mode: Mode,
}

enum Mode {
    Silent,
    Lines,
    Bars(Arc<Bars>),
}

struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    blobs: Mutex<HashMap<String, (ProgressBar, u64)>>,
}

impl PushProgressView {
    pub fn new(silent: bool) -> Self {
        let mode = if silent {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = multi.add(ProgressBar::new(0));
            total.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            total.set_prefix("total");
            Mode::Bars(Arc::new(Bars {
                multi,
                total,
                blobs: Mutex::new(HashMap::new()),
            }))
        } else {
            Mode::Lines
        };
        PushProgressView { mode }
    }

    /// Announces the blobs about to be pushed (digest, size), for the bars.
    pub fn expect(&self, blobs: impl Iterator<Item = (String, u64)>) {
        let Mode::Bars(bars) = &self.mode else { return };
        let mut map = bars.blobs.lock().unwrap_or_else(|e| e.into_inner());
        for (digest, size) in blobs {
            if map.contains_key(&digest) {
                continue;
            }
            let bar = bars
                .multi
                .insert_before(&bars.total, ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(short(&digest));
            bars.total.inc_length(size);
            map.insert(digest, (bar, 0));
        }
    }

    pub fn callback(&self) -> Option<PushProgressFn> {
        match &self.mode {
            Mode::Silent => None,
            Mode::Lines => Some(Arc::new(|event| {
                if let PushProgress::Done { digest, outcome } = event {
                    eprintln!("{:>9} {}", outcome_word(outcome), digest);
                }
            })),
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

impl Bars {
    fn update(&self, event: PushProgress) {
        let mut map = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            PushProgress::Sent {
                digest,
                sent,
                total,
            } => {
                let (bar, seen) = map.entry(digest.clone()).or_insert_with(|| {
                    (
                        self.multi
                            .insert_before(&self.total, ProgressBar::new(total)),
                        0,
                    )
                });
                // A retried try starts again from 0: only bytes beyond what was seen count.
                if sent > *seen {
                    self.total.inc(sent - *seen);
                    *seen = sent;
                }
                bar.set_position(sent);
            }
            PushProgress::Done { digest, outcome } => {
                if let Some((bar, seen)) = map.get_mut(&digest) {
                    let remaining = bar.length().unwrap_or(0).saturating_sub(*seen);
                    self.total.inc(remaining);
                    *seen += remaining;
                    bar.finish_with_message(outcome_word(outcome));
                }
            }
        }
    }
}

fn outcome_word(outcome: BlobOutcome) -> &'static str {
    match outcome {
        BlobOutcome::Skipped => "exists",
        BlobOutcome::Mounted => "mounted",
        BlobOutcome::Uploaded => "uploaded",
    }
}

fn short(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
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
