//! The one printer: decides, from -q and --json, what goes where. Results go to stdout (one
//! JSON object with --json, one line with -q, words otherwise); notes ("Built …") and
//! progress go to stderr only when a person reads words; E2B's build logs go to stderr
//! unless -q.

use std::io::Write;
use std::path::Path;

use super::json::CacheExportResult;
use super::progress::{PushProgressView, human_size};
use dockless_build::BuiltImage;
use dockless_build::publish::PublishEvents;
use dockless_e2b::api::LogEntry;
use dockless_e2b::flows::FlowEvents;
use dockless_e2b::status::format_entry;
use dockless_oci::digest::Digest;
use dockless_registry::{PushProgressFn, Reference};
use dockless_shared_cache::{ExportError, ExportReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `-q`: the result alone.
    Quiet,
    /// `--json`: one JSON object on stdout.
    Json,
    /// Words for a person, notes and progress on stderr.
    Words,
}

pub struct Output {
    mode: Mode,
    quiet: bool,
    /// `--progress` as decided, for commands that build.
    progress: Option<super::steps::ProgressMode>,
}

impl Output {
    pub fn new(quiet: bool, json: bool) -> Self {
        let mode = match (json, quiet) {
            (true, _) => Mode::Json,
            (false, true) => Mode::Quiet,
            (false, false) => Mode::Words,
        };
        Output {
            mode,
            quiet,
            progress: None,
        }
    }

    /// Shows uploads as `--progress` says (a build's steps are the build's listener's).
    pub fn with_progress(mut self, progress: super::steps::ProgressMode) -> Self {
        self.progress = Some(progress);
        self
    }

    pub fn json(&self) -> bool {
        self.mode == Mode::Json
    }

    pub fn quiet(&self) -> bool {
        self.mode == Mode::Quiet
    }

    /// A note for a person (stderr; not with -q or --json).
    pub fn note(&self, text: impl std::fmt::Display) {
        if self.mode == Mode::Words {
            eprintln!("{text}");
        }
    }

    /// What a remote build says (stderr; not with -q).
    pub fn log(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// The result: `value` as one JSON object with --json, else the lines `words` writes.
    pub fn result<T: serde::Serialize>(
        &self,
        value: impl FnOnce() -> T,
        words: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json() {
            let text = serde_json::to_string(&value()).map_err(std::io::Error::other)?;
            writeln!(stdout, "{text}")
        } else {
            words(&mut stdout)
        }
    }

    /// The events of a push or an E2B flow, shown as this output's mode says.
    pub fn reporter(&self) -> Reporter<'_> {
        Reporter {
            output: self,
            view: self.push_view(),
            exports: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Output {
    fn push_view(&self) -> PushProgressView {
        use super::steps::ProgressMode;
        match self.progress {
            Some(ProgressMode::Plain) => PushProgressView::lines(false),
            Some(ProgressMode::RawJson) => PushProgressView::lines(true),
            Some(ProgressMode::Quiet) => PushProgressView::new(true),
            Some(ProgressMode::Tty) | None => PushProgressView::new(self.mode != Mode::Words),
        }
    }
}

/// Progress bars (or lines), notes and logs of one push or flow.
pub struct Reporter<'a> {
    output: &'a Output,
    view: PushProgressView,
    /// What each `--cache-to` export did, for `--json`.
    exports: std::sync::Mutex<Vec<CacheExportResult>>,
}

impl Reporter<'_> {
    /// Clears the bars.
    pub fn finish(&self) {
        self.view.finish();
    }

    /// The `--cache-to` exports so far, as `--json` reports them.
    pub fn cache_exports(&self) -> Vec<CacheExportResult> {
        self.exports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl PublishEvents for Reporter<'_> {
    fn progress(&self) -> Option<PushProgressFn> {
        self.view.callback()
    }

    fn built(&self, image: &BuiltImage) {
        self.output.note(format_args!("Built {}", describe(image)));
    }

    fn pushing(&self, blobs: &[(Digest, u64)]) {
        self.view.announce(blobs.iter().cloned());
    }

    fn cache_exported(&self, to: &Reference, result: Result<&ExportReport, &ExportError>) {
        let value = CacheExportResult::of(to, result);
        self.exports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(value);
        match result {
            Ok(report) => self.output.note(format_args!(
                "Exported the build cache to {to}: {} layers ({} uploaded, {} mounted, {} already there)",
                report.entries,
                report.uploaded_blobs,
                report.mounted_blobs,
                report.skipped_blobs.saturating_sub(1),
            )),
            Err(error) => tracing::warn!(
                "--cache-to {to}: the build cache was not exported: {error}; the next build without it works, only slower"
            ),
        }
    }
}

impl FlowEvents for Reporter<'_> {
    fn wrote_template_id(&self, e2b_toml: &Path, template_id: &str) {
        self.output.note(format_args!(
            "Wrote template_id = \"{template_id}\" to {}",
            e2b_toml.display()
        ));
    }

    fn start_from_image(&self, start_cmd: &str, ready_cmd: &str) {
        self.output.log(format_args!(
            "Start command from the image's CMD/ENTRYPOINT: {start_cmd} (ready command: {ready_cmd}); set start_cmd in e2b.toml or --start-cmd to choose another"
        ));
    }

    fn log(&self, entry: &LogEntry) {
        self.output.log(format_entry(entry));
    }
}

/// One line about a built image: digest, platform, layers, size.
pub fn describe(image: &BuiltImage) -> String {
    let new_layers = image.layers.iter().filter(|l| !l.from_base).count();
    let count = image.layers.len();
    format!(
        "{} ({}, {count} {} of which {new_layers} new, {})",
        image.manifest.digest,
        image.platform,
        if count == 1 { "layer" } else { "layers" },
        human_size(image.total_size())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockless_oci::digest::Digest;
    use dockless_oci::image::Descriptor;

    fn image(layers: usize) -> BuiltImage {
        let digest = Digest::of(b"x");
        let descriptor = || Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.clone(),
            size: 10,
            urls: None,
            annotations: None,
            platform: None,
        };
        BuiltImage {
            manifest: descriptor(),
            config: descriptor(),
            layers: (0..layers)
                .map(|_| dockless_build::BuiltLayer {
                    digest: digest.clone(),
                    diff_id: digest.clone(),
                    size: 5,
                    media_type: String::new(),
                    from_base: false,
                    source: None,
                })
                .collect(),
            platform: "linux/amd64".parse().unwrap(),
            cache_entries: Vec::new(),
            stage_sets: Default::default(),
        }
    }

    #[test]
    fn one_layer_is_a_layer() {
        assert!(describe(&image(1)).contains("(linux/amd64, 1 layer of which 1 new,"));
        assert!(describe(&image(2)).contains("(linux/amd64, 2 layers of which 2 new,"));
        assert!(describe(&image(0)).contains("0 layers of which 0 new"));
    }
}
