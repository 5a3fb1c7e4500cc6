//! A blob's bytes, readable while it is still being written.
//!
//! A push need not wait for a new layer to be finished before uploading it: the writer
//! ([`dockless_layer`]) publishes how many compressed bytes have reached the store's temporary
//! file, and a reader (the uploader in [`dockless_registry`]) reads the file up to that point
//! through its own file handle, which stays valid when the file is renamed into the store. The
//! digest is known only at the end, and is published with it. This module sits beside both so
//! that neither the registry nor the layer writer depends on the other.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::watch;

use crate::digest::Digest;

/// How far the writer has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveProgress {
    /// This many bytes are in the file so far; more will come.
    Writing(u64),
    /// The layer is complete and in the store: the file holds exactly `size` bytes.
    Done { size: u64, digest: Digest },
    /// The writer gave up (an error, or the build stopped): the bytes are no layer.
    Failed,
}

/// The reading end: a file handle and the writer's progress.
#[derive(Clone)]
pub struct LiveBlob {
    file: Arc<File>,
    progress: watch::Receiver<LiveProgress>,
}

impl std::fmt::Debug for LiveBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveBlob")
            .field("progress", &*self.progress.borrow())
            .finish()
    }
}

impl LiveBlob {
    /// Where the writer is now.
    pub fn progress(&self) -> LiveProgress {
        self.progress.borrow().clone()
    }

    /// A receiver to wait on for the writer's next step.
    pub fn watch(&self) -> watch::Receiver<LiveProgress> {
        self.progress.clone()
    }

    /// Reads bytes at `offset` (only below what the writer published are they final).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

/// The writing end: passes bytes to the file and publishes how many have landed there.
pub struct Publishing<W: Write> {
    inner: W,
    written: u64,
    sender: watch::Sender<LiveProgress>,
}

/// Wraps `inner`, whose bytes `reader` (a second handle on the same file) can read. The
/// [`Finisher`] announces the end; dropped without [`Finisher::done`], it announces a failure.
pub fn publish<W: Write>(inner: W, reader: File) -> (Publishing<W>, Finisher, LiveBlob) {
    let (sender, progress) = watch::channel(LiveProgress::Writing(0));
    let live = LiveBlob {
        file: Arc::new(reader),
        progress,
    };
    let finisher = Finisher {
        sender: sender.clone(),
        ended: false,
    };
    let publishing = Publishing {
        inner,
        written: 0,
        sender,
    };
    (publishing, finisher, live)
}

impl<W: Write> Publishing<W> {
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Publishing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.written += n as u64;
        self.sender
            .send_replace(LiveProgress::Writing(self.written));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Announces the end of a layer: done with its digest, or (when dropped first) failed.
pub struct Finisher {
    sender: watch::Sender<LiveProgress>,
    ended: bool,
}

impl Finisher {
    pub fn done(mut self, size: u64, digest: Digest) {
        self.ended = true;
        self.sender
            .send_replace(LiveProgress::Done { size, digest });
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        if !self.ended {
            self.sender.send_replace(LiveProgress::Failed);
        }
    }
}
