//! A build's steps on stderr, as `--progress` (or BUILDKIT_PROGRESS) says: BuildKit's plain
//! lines (`#5 [2/7] RUN apt-get update`, `#5 0.532 <output>`, `#5 CACHED`, `#5 DONE 1.2s`),
//! one JSON object per event (rawjson), or nothing but a failed step's output (quiet). `tty`
//! keeps today's terminal view: bars for uploads, RUN output as the command writes it.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use dockless_build::progress::{BuildEvent, BuildProgress, Progress};
use serde_json::json;

use super::FlagError;
use super::buildx::ProgressArg;

/// How progress is shown, once `auto` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Tty,
    Plain,
    Quiet,
    RawJson,
}

const PROGRESS_ENV: &str = "BUILDKIT_PROGRESS";

impl ProgressMode {
    /// `--progress`, else BUILDKIT_PROGRESS, else quiet with -q, else tty on a terminal and
    /// plain otherwise.
    pub fn choose(flag: Option<ProgressArg>, quiet: bool) -> Result<Self, FlagError> {
        let from_env = || -> Result<Option<ProgressArg>, FlagError> {
            let Ok(value) = std::env::var(PROGRESS_ENV) else {
                return Ok(None);
            };
            match value.trim().to_lowercase().as_str() {
                "" => Ok(None),
                "auto" => Ok(Some(ProgressArg::Auto)),
                "plain" => Ok(Some(ProgressArg::Plain)),
                "tty" => Ok(Some(ProgressArg::Tty)),
                "quiet" => Ok(Some(ProgressArg::Quiet)),
                "rawjson" => Ok(Some(ProgressArg::Rawjson)),
                other => Err(FlagError(format!(
                    "{PROGRESS_ENV}={other}: expected auto, plain, tty, quiet or rawjson"
                ))),
            }
        };
        let chosen = match flag {
            Some(flag) => Some(flag),
            None => from_env()?,
        };
        Ok(match chosen {
            Some(ProgressArg::Plain) => ProgressMode::Plain,
            Some(ProgressArg::Tty) => ProgressMode::Tty,
            Some(ProgressArg::Quiet) => ProgressMode::Quiet,
            Some(ProgressArg::Rawjson) => ProgressMode::RawJson,
            Some(ProgressArg::Auto) | None if quiet => ProgressMode::Quiet,
            Some(ProgressArg::Auto) | None if std::io::stderr().is_terminal() => ProgressMode::Tty,
            Some(ProgressArg::Auto) | None => ProgressMode::Plain,
        })
    }

    /// The build's listener for this mode (`tty`: none, RUN output goes to stderr as is).
    pub fn listener(self) -> Progress {
        match self {
            ProgressMode::Tty => Progress::default(),
            ProgressMode::Plain => Progress::new(Arc::new(PlainSteps::default())),
            ProgressMode::Quiet => Progress::new(Arc::new(QuietSteps::default())),
            ProgressMode::RawJson => Progress::new(Arc::new(JsonSteps)),
        }
    }
}

/// BuildKit's plain lines.
#[derive(Default)]
struct PlainSteps {
    /// Whether a step was shown (each step's lines after the first are set off by a blank line).
    started: Mutex<bool>,
}

impl BuildProgress for PlainSteps {
    fn event(&self, event: BuildEvent<'_>) {
        // Each line is made whole first and written at once: stderr is unbuffered, and a RUN
        // may print hundreds of thousands of lines.
        let line = match event {
            BuildEvent::Started { step, name } => {
                let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
                let gap = if std::mem::replace(&mut *started, true) {
                    "\n"
                } else {
                    ""
                };
                format!("{gap}#{step} {name}\n")
            }
            BuildEvent::Output {
                step,
                elapsed,
                line,
            } => format!(
                "#{step} {:.3} {}\n",
                elapsed.as_secs_f64(),
                String::from_utf8_lossy(line)
            ),
            BuildEvent::Note { step, text } => format!("#{step} {text}\n"),
            BuildEvent::Cached { step } => format!("#{step} CACHED\n"),
            BuildEvent::Done { step, elapsed } => {
                format!("#{step} DONE {:.1}s\n", elapsed.as_secs_f64())
            }
            BuildEvent::Failed { step, elapsed } => {
                format!("#{step} ERROR after {:.1}s\n", elapsed.as_secs_f64())
            }
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Nothing, but a failed step's output (its last lines, under its name), so the error has
/// its context.
#[derive(Default)]
struct QuietSteps {
    output: Mutex<HashMap<usize, (String, Vec<String>)>>,
}

/// Lines of a step's output kept for when it fails.
const QUIET_LINES_KEPT: usize = 200;

impl BuildProgress for QuietSteps {
    fn event(&self, event: BuildEvent<'_>) {
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            BuildEvent::Started { step, name } => {
                output.insert(step, (name.to_owned(), Vec::new()));
            }
            BuildEvent::Output { step, line, .. } => {
                if let Some((_, lines)) = output.get_mut(&step) {
                    if lines.len() == QUIET_LINES_KEPT {
                        lines.remove(0);
                    }
                    lines.push(String::from_utf8_lossy(line).into_owned());
                }
            }
            BuildEvent::Note { .. } => {}
            BuildEvent::Cached { step } | BuildEvent::Done { step, .. } => {
                output.remove(&step);
            }
            BuildEvent::Failed { step, .. } => {
                if let Some((name, lines)) = output.remove(&step).filter(|(_, l)| !l.is_empty()) {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "#{step} {name}");
                    for line in lines {
                        let _ = writeln!(err, "#{step} {line}");
                    }
                }
            }
        }
    }
}

/// One JSON object per event and line.
struct JsonSteps;

impl BuildProgress for JsonSteps {
    fn event(&self, event: BuildEvent<'_>) {
        let value = match event {
            BuildEvent::Started { step, name } => {
                json!({"vertex": step, "event": "started", "name": name})
            }
            BuildEvent::Output {
                step,
                elapsed,
                line,
            } => json!({
                "vertex": step,
                "event": "log",
                "elapsed": elapsed.as_secs_f64(),
                "data": String::from_utf8_lossy(line),
            }),
            BuildEvent::Note { step, text } => {
                json!({"vertex": step, "event": "note", "text": text})
            }
            BuildEvent::Cached { step } => json!({"vertex": step, "event": "cached"}),
            BuildEvent::Done { step, elapsed } => {
                json!({"vertex": step, "event": "done", "duration": elapsed.as_secs_f64()})
            }
            BuildEvent::Failed { step, elapsed } => {
                json!({"vertex": step, "event": "error", "duration": elapsed.as_secs_f64()})
            }
        };
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("{value}\n").as_bytes());
    }
}
