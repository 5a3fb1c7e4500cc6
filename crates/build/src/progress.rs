//! What a build tells whoever shows its progress, step by step, as BuildKit numbers them: a
//! step starts (`[stage 2/7] RUN …`), its command writes output, a cache gives it (`CACHED`), it
//! ends (with its duration) or fails. The library only reports; the command line decides how to
//! show it (plain lines, JSON lines, nothing).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockless_sandbox::OutputSink;

/// One thing that happened to a step (`step` is its number, from 1, in the order steps start).
#[derive(Debug, Clone, Copy)]
pub enum BuildEvent<'a> {
    /// A step starts; `name` is how BuildKit names it (`[2/7] RUN apt-get update`).
    Started { step: usize, name: &'a str },
    /// A line of output of the step's command (without its newline), `elapsed` after the start.
    Output {
        step: usize,
        elapsed: Duration,
        line: &'a [u8],
    },
    /// Something worth a line about the step (a base's layers and size).
    Note { step: usize, text: &'a str },
    /// A cache gave the step's result: nothing ran.
    Cached { step: usize },
    /// The step is over after `elapsed`.
    Done { step: usize, elapsed: Duration },
    /// The step failed after `elapsed` (the build's error says why).
    Failed { step: usize, elapsed: Duration },
}

/// Whoever shows a build's progress.
pub trait BuildProgress: Send + Sync {
    fn event(&self, event: BuildEvent<'_>);
}

/// A build's progress listener, or none; cheap to clone.
#[derive(Clone, Default)]
pub struct Progress {
    listener: Option<Arc<dyn BuildProgress>>,
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("listening", &self.listener.is_some())
            .finish()
    }
}

impl Progress {
    pub fn new(listener: Arc<dyn BuildProgress>) -> Self {
        Progress {
            listener: Some(listener),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Starts step `name`: it gets the next number.
    pub fn start(&self, name: &str) -> Step {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(listener) = &self.listener {
            listener.event(BuildEvent::Started { step: id, name });
        }
        Step(Arc::new(StepState {
            listener: self.listener.clone(),
            id,
            started: Instant::now(),
            cached: AtomicBool::new(false),
            ended: Mutex::new(false),
        }))
    }
}

/// A step under way; it ends once, as done, cached or failed.
#[derive(Clone)]
pub struct Step(Arc<StepState>);

struct StepState {
    listener: Option<Arc<dyn BuildProgress>>,
    id: usize,
    started: Instant,
    cached: AtomicBool,
    ended: Mutex<bool>,
}

impl Step {
    fn send(&self, event: BuildEvent<'_>) {
        if let Some(listener) = &self.0.listener {
            listener.event(event);
        }
    }

    /// Where the output of the step's command goes, line by line; `None` without a listener.
    pub fn output(&self) -> Option<OutputSink> {
        self.0.listener.as_ref()?;
        let step = self.clone();
        Some(OutputSink::new(move |line: &[u8]| {
            step.send(BuildEvent::Output {
                step: step.0.id,
                elapsed: step.0.started.elapsed(),
                line,
            });
        }))
    }

    pub fn note(&self, text: &str) {
        self.send(BuildEvent::Note {
            step: self.0.id,
            text,
        });
    }

    /// A cache gave the result: the step ends as `CACHED`.
    pub(crate) fn mark_cached(&self) {
        self.0.cached.store(true, Ordering::Relaxed);
    }

    /// Ends the step: cached, done or failed.
    pub fn end(&self, ok: bool) {
        let mut ended = self.0.ended.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut *ended, true) {
            return;
        }
        let (step, elapsed) = (self.0.id, self.0.started.elapsed());
        self.send(match (ok, self.0.cached.load(Ordering::Relaxed)) {
            (false, _) => BuildEvent::Failed { step, elapsed },
            (true, true) => BuildEvent::Cached { step },
            (true, false) => BuildEvent::Done { step, elapsed },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl BuildProgress for Recorder {
        fn event(&self, event: BuildEvent<'_>) {
            let text = match event {
                BuildEvent::Started { step, name } => format!("{step} start {name}"),
                BuildEvent::Output { step, line, .. } => {
                    format!("{step} out {}", String::from_utf8_lossy(line))
                }
                BuildEvent::Note { step, text } => format!("{step} note {text}"),
                BuildEvent::Cached { step } => format!("{step} cached"),
                BuildEvent::Done { step, .. } => format!("{step} done"),
                BuildEvent::Failed { step, .. } => format!("{step} failed"),
            };
            self.0.lock().unwrap().push(text);
        }
    }

    #[test]
    fn steps_are_numbered_in_order_and_end_once() {
        let recorder = Arc::new(Recorder::default());
        let progress = Progress::new(recorder.clone());
        let first = progress.start("[1/2] FROM scratch");
        first.end(true);
        first.end(false);
        let second = progress.start("[2/2] RUN true");
        second.output().unwrap().take_line(b"hello");
        second.mark_cached();
        second.end(true);
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "1 start [1/2] FROM scratch",
                "1 done",
                "2 start [2/2] RUN true",
                "2 out hello",
                "2 cached"
            ]
        );
        assert!(Progress::default().start("x").output().is_none());
    }
}
