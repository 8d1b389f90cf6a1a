//! pgzip framing (klauspost/pgzip `gzip.go` `Writer`): the gzip header, input
//! cut into blocks (1 MiB unless `SetConcurrency` chose another size), each compressed with the previous block's last
//! 16 KiB as dictionary, and the CRC-32/ISIZE trailer. Blocks are compressed
//! on worker threads and written in order, or copied from [`SharedBlocks`]
//! when another writer of the same stream made them.
//!
//! Block `k`'s output depends only on input bytes `[k·B − 16 KiB,
//! (k+1)·B)` (B the block size) and on whether it is the last, so a writer can also start
//! at a block ([`PgzipWriter::resume`], given a [`BlockStart`]) and write
//! exactly the rest of the stream; a running writer reports where each
//! block starts ([`PgzipWriter::on_block`]).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::deflate::Compressor;
use super::shared::{BlockClaim, Claim, SharedBlocks};
use super::Version;

/// pgzip `defaultBlockSize` (pgzip ≥ 1.2.2): input bytes per block.
pub const BLOCK_SIZE: usize = 1 << 20;
/// The block size umoci 0.4.x sets (`SetConcurrency(256<<10, 2*NumCPU)`),
/// also pgzip ≤ 1.2.1's default.
pub const UMOCI_BLOCK_SIZE: usize = 256 << 10;
/// pgzip `tailSize`: the previous block's last bytes, the next block's dictionary.
pub const TAIL_SIZE: usize = 16384;
/// pgzip with a zero `ModTime` writes `uint32(time.Time{}.Unix())` as MTIME.
const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x09, 0x6e, 0x88, 0x00, 0xff];

struct Job {
    seq: u64,
    /// CRC-32 of the input before the block.
    crc: u32,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
    out: Vec<u8>,
    /// Handed the result, when the block is shared.
    claim: Option<Box<dyn BlockClaim>>,
}

/// Worker threads and the results that wait for their turn to be written.
struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Job>,
    handles: Vec<JoinHandle<()>>,
    pending: BTreeMap<u64, Job>,
    max_in_flight: u64,
}

impl Pool {
    fn new(version: Version, workers: usize) -> io::Result<Self> {
        let (job_tx, job_rx) = channel::<Job>();
        let (done_tx, done) = channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("pgzip-{i}"))
                .spawn(move || worker(version, &job_rx, &done_tx))?;
            handles.push(h);
        }
        Ok(Pool {
            jobs: Some(job_tx),
            done,
            handles,
            pending: BTreeMap::new(),
            max_in_flight: 2 * workers as u64,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(version: Version, jobs: &Mutex<Receiver<Job>>, done: &Sender<Job>) {
    let mut c = Compressor::new(version);
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let out = std::mem::take(&mut job.out);
        job.out = c.compress_block(&job.dict, &job.data, job.last, out);
        // Here, not in the writer: a writer may be waiting for another
        // writer's block while its own are claimed by others.
        if let Some(claim) = job.claim.take() {
            claim.fulfil(&job.out);
        }
        if done.send(job).is_err() {
            return;
        }
    }
}

/// Where a writer starts instead of the gzip header: the beginning of block
/// `seq`, everything before it having been written by another writer of
/// the same input.
#[derive(Debug, Clone)]
pub struct BlockStart {
    /// The block's number.
    pub seq: u64,
    /// The previous block's last [`TAIL_SIZE`] input bytes (empty for block 0).
    pub tail: Vec<u8>,
    /// CRC-32 of the input before the block.
    pub crc: u32,
    /// Compressed bytes before the block, the gzip header included (only
    /// for the [`BlockMark`]s this writer reports).
    pub offset: u64,
}

impl BlockStart {
    /// The start of the stream.
    fn first() -> Self {
        BlockStart {
            seq: 0,
            tail: Vec::new(),
            crc: 0,
            offset: 0,
        }
    }

    /// Input bytes before the block, in a stream of [`BLOCK_SIZE`] blocks.
    pub fn input_before(&self) -> u64 {
        self.seq * BLOCK_SIZE as u64
    }
}

/// A block about to be written, as told to [`PgzipWriter::on_block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMark {
    /// The block's number.
    pub seq: u64,
    /// Compressed bytes written before it, the gzip header included.
    pub offset: u64,
    /// CRC-32 of the input before it.
    pub crc: u32,
}

/// Told of each block just before its first byte goes to the inner writer
/// (which has received exactly `mark.offset` bytes of the stream then).
pub type BlockObserver<W> = Box<dyn FnMut(&W, BlockMark) + Send>;

/// The inner writer and what goes to it, block after block in order.
struct Output<W: Write> {
    inner: W,
    /// The next block to write.
    next_write: u64,
    /// Bytes of the stream written so far (before this writer's first, the
    /// ones another writer wrote).
    offset: u64,
    observer: Option<BlockObserver<W>>,
}

impl<W: Write> Output<W> {
    fn block(&mut self, crc: u32, bytes: &[u8]) -> io::Result<()> {
        let mark = BlockMark {
            seq: self.next_write,
            offset: self.offset,
            crc,
        };
        if let Some(observe) = self.observer.as_mut() {
            observe(&self.inner, mark);
        }
        self.inner.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        self.next_write += 1;
        Ok(())
    }

    fn bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

enum Engine {
    Inline(Box<Compressor>),
    Threads(Pool),
}

/// pgzip.NewWriter output; blocks compressed on `workers` threads.
///
/// The output depends only on the input, the [`Version`] and the block size,
/// not on `workers` or on how the input is split into `write` calls. At
/// most about 2 × `workers` blocks are in flight.
pub struct PgzipWriter<W: Write> {
    out: Output<W>,
    engine: Engine,
    header_written: bool,
    /// Input bytes per block.
    block_size: usize,
    block: Vec<u8>,
    prev_tail: Vec<u8>,
    crc: crc32fast::Hasher,
    /// CRC-32 of the input before the current block.
    block_crc: u32,
    size: u64,
    next_seq: u64,
    free: Vec<Vec<u8>>,
    out_buf: Vec<u8>,
    shared: Option<Arc<dyn SharedBlocks>>,
}

impl<W: Write> PgzipWriter<W> {
    /// A writer that compresses like pgzip `NewWriter` with klauspost/compress `version`.
    pub fn new(inner: W, version: Version, workers: usize) -> io::Result<Self> {
        Self::sharing(inner, version, workers, None)
    }

    /// [`PgzipWriter::new`] after `SetConcurrency(block_size, …)`, e.g.
    /// [`UMOCI_BLOCK_SIZE`]. Like pgzip, refuses a size of at most [`TAIL_SIZE`].
    pub fn with_block_size(
        inner: W,
        version: Version,
        block_size: usize,
        workers: usize,
    ) -> io::Result<Self> {
        let mut w = Self::start(
            inner,
            version,
            block_size,
            workers,
            None,
            BlockStart::first(),
        )?;
        w.header_written = false;
        Ok(w)
    }

    /// [`PgzipWriter::new`], taking blocks from and leaving them in
    /// `shared`: every writer given it must write the same input (the same
    /// blob), or the output is wrong (a blob is proven by its digest).
    pub fn sharing(
        inner: W,
        version: Version,
        workers: usize,
        shared: Option<Arc<dyn SharedBlocks>>,
    ) -> io::Result<Self> {
        let mut w = Self::resume(inner, version, workers, shared, BlockStart::first())?;
        w.header_written = false;
        Ok(w)
    }

    /// A writer of the same stream as [`PgzipWriter::sharing`] from block
    /// `at.seq` on, without the header: its input is the input from
    /// [`BlockStart::input_before`] on, its output the stream's bytes from
    /// the block on. A wrong `at` gives wrong bytes (a blob is proven by its
    /// digest); a `tail` of the wrong length is refused.
    pub fn resume(
        inner: W,
        version: Version,
        workers: usize,
        shared: Option<Arc<dyn SharedBlocks>>,
        at: BlockStart,
    ) -> io::Result<Self> {
        Self::start(inner, version, BLOCK_SIZE, workers, shared, at)
    }

    /// [`PgzipWriter::resume`] for a stream of `block_size` blocks: the input
    /// starts at `at.seq × block_size`.
    pub fn resume_with_block_size(
        inner: W,
        version: Version,
        block_size: usize,
        workers: usize,
        shared: Option<Arc<dyn SharedBlocks>>,
        at: BlockStart,
    ) -> io::Result<Self> {
        Self::start(inner, version, block_size, workers, shared, at)
    }

    fn start(
        inner: W,
        version: Version,
        block_size: usize,
        workers: usize,
        shared: Option<Arc<dyn SharedBlocks>>,
        at: BlockStart,
    ) -> io::Result<Self> {
        if block_size <= TAIL_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pgzip: block size cannot be less than or equal to {TAIL_SIZE}"),
            ));
        }
        let tail_len = if at.seq == 0 { 0 } else { TAIL_SIZE };
        if at.tail.len() != tail_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "pgzip: resuming at block {} needs the previous block's last {tail_len} bytes, got {}",
                    at.seq,
                    at.tail.len()
                ),
            ));
        }
        let size = at.seq * block_size as u64;
        let engine = if workers <= 1 {
            Engine::Inline(Box::new(Compressor::new(version)))
        } else {
            Engine::Threads(Pool::new(version, workers)?)
        };
        Ok(PgzipWriter {
            out: Output {
                inner,
                next_write: at.seq,
                offset: at.offset,
                observer: None,
            },
            engine,
            header_written: true,
            block_size,
            block: Vec::new(),
            prev_tail: at.tail,
            crc: crc32fast::Hasher::new_with_initial_len(at.crc, size),
            block_crc: at.crc,
            size,
            next_seq: at.seq,
            free: Vec::new(),
            out_buf: Vec::new(),
            shared,
        })
    }

    /// Call `observe` before each block this writer writes from now on.
    pub fn on_block(&mut self, observe: BlockObserver<W>) {
        self.out.observer = Some(observe);
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            self.out.bytes(&HEADER)?;
        }
        Ok(())
    }

    /// Hands the current block to the compressor (pgzip `compressCurrent`).
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let fresh = take_buffer(&mut self.free);
        let data = std::mem::replace(&mut self.block, fresh);
        let mut dict = take_buffer(&mut self.free);
        if data.len() > TAIL_SIZE {
            dict.extend_from_slice(&data[data.len() - TAIL_SIZE..]);
        }
        // `dict` now holds the next block's tail; this block gets the previous one.
        std::mem::swap(&mut dict, &mut self.prev_tail);
        let seq = self.next_seq;
        self.next_seq += 1;
        let crc = std::mem::replace(&mut self.block_crc, self.crc.clone().finalize());
        let claim = match self.shared.as_ref().map(|s| s.claim(seq)) {
            Some(Claim::Ready(block)) => {
                return self.copy_shared(&block, crc, data, dict);
            }
            Some(Claim::Mine(claim)) => Some(claim),
            None => None,
        };
        match &mut self.engine {
            Engine::Inline(c) => {
                let out = std::mem::take(&mut self.out_buf);
                let out = c.compress_block(&dict, &data, last, out);
                if let Some(claim) = claim {
                    claim.fulfil(&out);
                }
                self.out.block(crc, &out)?;
                self.out_buf = out;
                self.out_buf.clear();
                self.free.push(data);
                self.free.push(dict);
            }
            Engine::Threads(pool) => {
                while seq - self.out.next_write >= pool.max_in_flight {
                    Self::receive_one(pool, &mut self.out, &mut self.free)?;
                }
                let out = take_buffer(&mut self.free);
                let job = Job {
                    seq,
                    crc,
                    dict,
                    data,
                    last,
                    out,
                    claim,
                };
                let sent = pool.jobs.as_ref().map(|tx| tx.send(job).is_ok());
                if sent != Some(true) {
                    return Err(worker_gone());
                }
            }
        }
        Ok(())
    }

    /// Block `next_seq - 1` is `block`, made by another writer: written in
    /// its turn (after this writer's blocks still with the workers).
    fn copy_shared(
        &mut self,
        block: &[u8],
        crc: u32,
        data: Vec<u8>,
        dict: Vec<u8>,
    ) -> io::Result<()> {
        let seq = self.next_seq - 1;
        match &mut self.engine {
            Engine::Inline(_) => {
                self.out.block(crc, block)?;
                self.free.push(data);
                self.free.push(dict);
            }
            Engine::Threads(pool) => {
                let mut out = take_buffer(&mut self.free);
                out.extend_from_slice(block);
                let job = Job {
                    seq,
                    crc,
                    dict,
                    data,
                    last: false,
                    out,
                    claim: None,
                };
                pool.pending.insert(seq, job);
                // This block counts, and may be written in the loop.
                while self.next_seq - self.out.next_write > pool.max_in_flight {
                    Self::receive_one(pool, &mut self.out, &mut self.free)?;
                }
            }
        }
        Ok(())
    }

    /// Waits for one result unless the next to write is here, and writes
    /// every result whose turn has come.
    fn receive_one(
        pool: &mut Pool,
        out: &mut Output<W>,
        free: &mut Vec<Vec<u8>>,
    ) -> io::Result<()> {
        if !pool.pending.contains_key(&out.next_write) {
            let job = pool.done.recv().map_err(|_| worker_gone())?;
            pool.pending.insert(job.seq, job);
        }
        while let Some(mut job) = pool.pending.remove(&out.next_write) {
            out.block(job.crc, &job.out)?;
            job.out.clear();
            free.push(job.out);
            free.push(job.data);
            free.push(job.dict);
        }
        Ok(())
    }

    /// Writes the last block and the trailer (pgzip `Close`) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        self.submit(true)?;
        if let Engine::Threads(pool) = &mut self.engine {
            while self.out.next_write < self.next_seq {
                Self::receive_one(pool, &mut self.out, &mut self.free)?;
            }
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input size modulo 2^32.
        trailer[4..].copy_from_slice(&(self.size as u32).to_le_bytes());
        self.out.bytes(&trailer)?;
        self.out.inner.flush()?;
        Ok(self.out.inner)
    }
}

/// A recycled buffer, emptied (results and inputs share one free list).
fn take_buffer(free: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let mut b = free.pop().unwrap_or_default();
    b.clear();
    b
}

fn worker_gone() -> io::Error {
    io::Error::other("pgzip: a compression thread stopped")
}

impl<W: Write> Write for PgzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_header()?;
        let mut rest = buf;
        while !rest.is_empty() {
            let block_size = self.block_size;
            if self.block.capacity() < block_size {
                self.block.reserve_exact(block_size - self.block.len());
            }
            let n = rest.len().min(block_size - self.block.len());
            self.block.extend_from_slice(&rest[..n]);
            self.crc.update(&rest[..n]);
            self.size += n as u64;
            rest = &rest[n..];
            if self.block.len() == block_size {
                self.submit(false)?;
            }
        }
        Ok(buf.len())
    }

    /// Flushes the inner writer only; block boundaries stay those of pgzip.
    fn flush(&mut self) -> io::Result<()> {
        self.out.inner.flush()
    }
}
