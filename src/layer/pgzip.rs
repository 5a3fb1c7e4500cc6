//! Block-parallel gzip whose bytes do not depend on how many threads made them.
//!
//! The input is cut into fixed 1 MiB blocks; each is deflated on its own (no shared window)
//! and ended with a sync flush, which leaves the stream byte-aligned, so the compressed blocks
//! simply concatenate into one valid deflate stream. A final empty block closes it, and the
//! gzip header and trailer (CRC-32 and length of the whole input) wrap it. Block boundaries
//! are fixed, so the output is a pure function of the input and the level, on any machine and
//! with any number of cores: layers stay reproducible while every core compresses. The cost is
//! a slightly larger output than one continuous stream (each block starts with an empty window).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Uncompressed bytes per block.
pub const BLOCK: usize = 1 << 20;

/// The gzip header dockless writes: no name, no mtime, OS "unknown", as a fixed byte string.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

/// A `Write` that gzips what it is given with a pool of threads, writing to `inner` in order.
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    level: u32,
    buffer: Vec<u8>,
    crc: Crc,
    next_job: u64,
    next_write: u64,
    ready: BTreeMap<u64, Vec<u8>>,
    in_flight: usize,
    max_in_flight: usize,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParallelGzWriter<W> {
    pub fn new(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        inner.write_all(&HEADER)?;
        let threads = threads.max(1);
        let (jobs, job_rx) = sync_channel::<Job>(threads);
        let (done_tx, done) = sync_channel::<Done>(threads * 2);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let job_rx = job_rx.clone();
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = job_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok((seq, block))) = job else { break };
                        if done_tx.send((seq, deflate_block(&block, level))).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Ok(ParallelGzWriter {
            inner,
            level,
            buffer: Vec::with_capacity(BLOCK),
            crc: Crc::new(),
            next_job: 0,
            next_write: 0,
            ready: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 2,
            jobs: Some(jobs),
            done,
            workers,
        })
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        let block = std::mem::replace(&mut self.buffer, Vec::with_capacity(BLOCK));
        let jobs = self.jobs.as_ref().ok_or_else(closed)?;
        jobs.send((self.next_job, block)).map_err(|_| closed())?;
        self.next_job += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for one compressed block and writes every block that is now next in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, result) = self.done.recv().map_err(|_| closed())?;
        self.in_flight -= 1;
        self.ready.insert(seq, result?);
        while let Some(bytes) = self.ready.remove(&self.next_write) {
            self.inner.write_all(&bytes)?;
            self.next_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, closes the stream and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buffer.is_empty() {
            self.submit()?;
        }
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // The final block: empty, with BFINAL set.
        let mut end = Compress::new(Compression::new(self.level), false);
        let mut tail = Vec::with_capacity(64);
        end.compress_vec(&[], &mut tail, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        self.inner.write_all(&tail)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buffer.len();
        let take = room.min(data.len());
        self.buffer.extend_from_slice(&data[..take]);
        self.crc.update(&data[..take]);
        if self.buffer.len() == BLOCK {
            self.submit()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn closed() -> io::Error {
    io::Error::other("the compression workers stopped")
}

/// Deflates one block on its own, ending with a sync flush (byte-aligned, not final).
fn deflate_block(block: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut compressor = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(block.len() + block.len() / 8 + 1024);
    loop {
        let consumed = compressor.total_in() as usize;
        let status = compressor
            .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let all_in = compressor.total_in() as usize == block.len();
        // Done once all input is in and the flush left spare room (nothing more pending).
        if all_in && out.len() < out.capacity() && status != Status::BufError {
            return Ok(out);
        }
        out.reserve(out.capacity().max(4096));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b"abcdefgh"[i % 8]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut writer = ParallelGzWriter::new(Vec::new(), 1, threads).unwrap();
        for piece in data.chunks(chunk.max(1)) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn output_is_valid_gzip_and_independent_of_threads_and_write_sizes() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = sample(len);
            let one = gzip(&data, 1, 7777);
            let four = gzip(&data, 4, 65536);
            assert_eq!(one, four, "len {len}: same bytes whatever the threads");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}: round trip");
        }
    }
}
