//! Where a RUN command's output goes: always through a pipe dockless reads (the command never
//! holds the invoker's terminal or standard error), then either copied as it is to this
//! process's standard error, or, when someone shows the build's progress, read line by line and
//! handed to an [`OutputSink`] (to prefix each line with its step and time, as BuildKit's plain
//! progress does). Standard output is never used: `--json` keeps it.

use std::io::{self, BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

/// Takes each line of a command's output (without its newline).
#[derive(Clone)]
pub struct OutputSink(Arc<TakeLine>);

type TakeLine = dyn Fn(&[u8]) + Send + Sync;

impl OutputSink {
    pub fn new(take: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        OutputSink(Arc::new(take))
    }

    pub fn take_line(&self, line: &[u8]) {
        (self.0)(line)
    }
}

impl std::fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputSink")
    }
}

/// How long, after the command's helper exited, the reader waits for the pipe to close: a
/// process that escaped the sandbox's PID namespace and still holds the pipe must not hang the
/// build (its later output is dropped).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// The command's standard output and error, and the reader of the pipe behind them.
pub(crate) struct CommandOutput {
    writer: io::PipeWriter,
    done: mpsc::Receiver<()>,
}

impl CommandOutput {
    /// Output through a pipe to `sink` line by line, or (without one) copied as it comes to
    /// this process's standard error.
    pub fn new(sink: Option<OutputSink>) -> io::Result<Self> {
        let (reader, writer) = io::pipe()?;
        let (finished, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("run-output".into())
            .spawn(move || {
                match sink {
                    Some(sink) => forward_lines(reader, &sink),
                    None => relay(reader),
                }
                let _ = finished.send(());
            })?;
        Ok(CommandOutput { writer, done })
    }

    /// The command's standard output: the pipe.
    pub fn stdout(&self) -> io::Result<Stdio> {
        Ok(self.writer.try_clone()?.into())
    }

    /// The command's standard error: the pipe too.
    pub fn stderr(&self) -> io::Result<Stdio> {
        self.stdout()
    }

    /// Once the command has ended (and every handle given to it is closed): closes this
    /// end and waits for the last lines to be handed over.
    pub fn finish(self) {
        drop(self.writer);
        let _ = self.done.recv_timeout(DRAIN_WAIT);
    }
}

/// Copies the command's output to this process's standard error until the pipe closes; when
/// standard error is gone, the output is still read, so the command never blocks on it.
fn relay(mut output: io::PipeReader) {
    use std::io::{Read, Write};
    let mut buffer = [0u8; 8192];
    let mut stderr = Some(io::stderr());
    loop {
        match output.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if let Some(err) = stderr.as_mut()
                    && err.write_all(&buffer[..n]).is_err()
                {
                    stderr = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Hands each line read to `sink` until the pipe closes (a last line without a newline too).
fn forward_lines(reader: io::PipeReader, sink: &OutputSink) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                sink.take_line(text.strip_suffix(b"\r").unwrap_or(text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn lines_reach_the_sink_without_their_newlines() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let output = CommandOutput::new(Some(OutputSink::new(move |line: &[u8]| {
            into.lock()
                .unwrap()
                .push(String::from_utf8_lossy(line).into_owned())
        })))
        .unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", "echo one; echo two >&2; printf three"])
            .stdout(output.stdout().unwrap())
            .stderr(output.stderr().unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        output.finish();
        assert_eq!(*seen.lock().unwrap(), ["one", "two", "three"]);
    }
}
