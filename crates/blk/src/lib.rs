//! Block queues: a queue-pair interface over 4 KiB blocks.
//!
//! A caller [`BlockQueue::submit`]s requests that name a block and a slot of the
//! queue's host-visible buffers ([`HostBuffers`]), then [`BlockQueue::poll`]s for
//! completions. Backends:
//!
//! - [`UringQueue`]: io_uring with SQPOLL, O_DIRECT, a registered file and registered
//!   buffers: no host call per I/O in steady state;
//! - [`FileQueue`]: pread/pwrite, one host call per I/O (the library-OS baseline);
//! - [`MemQueue`]: RAM, for tests;
//! - [`FaultyQueue`]: wraps any of them and misbehaves on purpose.
//!
//! Everything the host reports back (which request completed, how many bytes moved,
//! error codes) is checked; a bad value is an I/O error, never a panic.
//!
//! Ordering: requests in flight at the same time complete in any order. A
//! [`Op::Flush`] makes durable the writes that *completed* before it was submitted;
//! callers that need ordering wait for completions first.

#![forbid(unsafe_code)]

mod fault;
mod file;
mod mem;
mod sync;
mod uring;

pub use fault::{Fault, FaultControl, FaultyQueue};
pub use file::{FileBackend, FileQueue};
pub use mem::{MemDisk, MemQueue};
pub use rktio_sys::{BLOCK_SIZE, HostBuffers, HostCall, HostCalls};
pub use sync::{SyncBackend, SyncQueue};
pub use uring::UringQueue;

use std::time::Duration;

/// One block of data.
pub type Block = [u8; BLOCK_SIZE];

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read `block` into buffer slot `buf`.
    Read {
        /// Block number.
        block: u64,
        /// Buffer slot.
        buf: usize,
    },
    /// Write buffer slot `buf` to `block`.
    Write {
        /// Block number.
        block: u64,
        /// Buffer slot.
        buf: usize,
    },
    /// Make completed writes durable.
    Flush,
}

impl Op {
    /// The block a read or write names.
    pub fn block(&self) -> Option<u64> {
        match self {
            Op::Read { block, .. } | Op::Write { block, .. } => Some(*block),
            Op::Flush => None,
        }
    }

    /// The buffer slot a read or write uses.
    pub fn buf(&self) -> Option<usize> {
        match self {
            Op::Read { buf, .. } | Op::Write { buf, .. } => Some(*buf),
            Op::Flush => None,
        }
    }
}

/// A request: an operation and the caller's tag, echoed in its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// Caller's tag.
    pub user: u64,
}

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The caller's tag.
    pub user: u64,
    /// The request as it was submitted.
    pub op: Op,
    /// Did it work?
    pub result: Result<(), IoError>,
}

/// A failed I/O: an errno and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} (errno {errno})")]
pub struct IoError {
    /// The errno to report at the POSIX edge.
    pub errno: i32,
    /// What happened, for people.
    pub detail: String,
}

impl IoError {
    /// An EIO with a message.
    pub fn eio(detail: impl Into<String>) -> Self {
        Self {
            errno: EIO,
            detail: detail.into(),
        }
    }
}

/// The errno values the storage layers report (Linux numbering).
pub mod errno {
    /// Permission denied (wrong key).
    pub const EACCES: i32 = 13;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
    /// Read-only file system.
    pub const EROFS: i32 = 30;
}
pub use errno::{EIO, ENOSPC};

/// Errors of the queue interface itself.
#[derive(Debug, thiserror::Error)]
pub enum BlkError {
    /// Every slot is in flight; poll first.
    #[error("block queue full ({0} requests in flight)")]
    QueueFull(usize),
    /// The request names a block past the end.
    #[error("block {block} is past the end of the device ({blocks} blocks)")]
    OutOfRange {
        /// The block asked for.
        block: u64,
        /// Blocks on the device.
        blocks: u64,
    },
    /// The request names a buffer slot that does not exist or is in flight.
    #[error("buffer slot {0} does not exist or is already in flight")]
    BadBuffer(usize),
    /// Asked to wait for more completions than there are requests in flight.
    #[error("asked to wait for {want} completions with only {in_flight} in flight")]
    WaitTooMany {
        /// Completions asked for.
        want: usize,
        /// Requests in flight.
        in_flight: usize,
    },
    /// The host refused a call.
    #[error(transparent)]
    Host(#[from] rktio_sys::HostError),
    /// A configuration or image problem.
    #[error("{0}")]
    Invalid(String),
    /// Another process (or another open in this one) has the image open for
    /// writing, or is reading it while this open wants to write.
    #[error("{}: the image is in use by another process", .0.display())]
    InUse(std::path::PathBuf),
}

/// How a queue waits for completions: spin for a while, then sleep in the host.
///
/// A queue only ever waits when the caller asks for completions of requests that
/// are in flight; with nothing in flight it never spins. The spin budget adapts:
/// it starts at `spin`; when a park turns out short (the completion came soon after
/// parking, so spinning a little longer would have avoided the host call) it
/// doubles, up to `max_spin`; while spinning succeeds it decays back to `spin`. A
/// stalled or idle device therefore costs at most `max_spin` of spinning before the
/// thread sleeps in the kernel.
#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    /// Initial and minimum spin before parking (0: always park at once).
    pub spin: Duration,
    /// Largest spin the budget may grow to.
    pub max_spin: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            spin: Duration::from_millis(1),
            max_spin: Duration::from_millis(10),
        }
    }
}

/// Counters a queue keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Reads submitted.
    pub reads: u64,
    /// Writes submitted.
    pub writes: u64,
    /// Flushes submitted.
    pub flushes: u64,
    /// Completions that reported an error.
    pub errors: u64,
    /// Completions the host reported that did not match any request in flight, or
    /// broke the protocol otherwise (ignored, and counted here).
    pub host_protocol_errors: u64,
}

/// The queue-pair interface every backend implements.
pub trait BlockQueue: Send + std::fmt::Debug {
    /// Backend name (`uring`, `file`, `mem`, ...).
    fn name(&self) -> &'static str;
    /// Number of 4 KiB blocks.
    fn blocks(&self) -> u64;
    /// How many requests may be in flight (and how many buffer slots there are).
    fn depth(&self) -> usize;
    /// The host-visible buffers requests read into and write from.
    fn buffers(&self) -> &HostBuffers;
    /// The same, for copying data in before a write.
    fn buffers_mut(&mut self) -> &mut HostBuffers;
    /// Queues a request. It may not reach the host until [`BlockQueue::kick`] or
    /// [`BlockQueue::poll`]. The buffer slot must not be touched until it completes.
    fn submit(&mut self, req: Request) -> Result<(), BlkError>;
    /// Hands queued requests to the host.
    fn kick(&mut self) -> Result<(), BlkError>;
    /// Collects completions into `out`, waiting (spin, then park) until at least
    /// `min` have arrived. Returns how many were added.
    fn poll(&mut self, out: &mut Vec<Completion>, min: usize) -> Result<usize, BlkError>;
    /// Requests submitted and not yet returned by `poll`.
    fn in_flight(&self) -> usize;
    /// Counters.
    fn stats(&self) -> QueueStats;
}

impl<Q: BlockQueue + ?Sized> BlockQueue for Box<Q> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn blocks(&self) -> u64 {
        (**self).blocks()
    }
    fn depth(&self) -> usize {
        (**self).depth()
    }
    fn buffers(&self) -> &HostBuffers {
        (**self).buffers()
    }
    fn buffers_mut(&mut self) -> &mut HostBuffers {
        (**self).buffers_mut()
    }
    fn submit(&mut self, req: Request) -> Result<(), BlkError> {
        (**self).submit(req)
    }
    fn kick(&mut self) -> Result<(), BlkError> {
        (**self).kick()
    }
    fn poll(&mut self, out: &mut Vec<Completion>, min: usize) -> Result<usize, BlkError> {
        (**self).poll(out, min)
    }
    fn in_flight(&self) -> usize {
        (**self).in_flight()
    }
    fn stats(&self) -> QueueStats {
        (**self).stats()
    }
}

/// Bookkeeping shared by the backends: which slots are in flight, bounds checks.
#[derive(Debug)]
pub(crate) struct Tracker {
    busy: Vec<bool>,
    in_flight: usize,
    depth: usize,
    blocks: u64,
    pub(crate) stats: QueueStats,
}

impl Tracker {
    pub(crate) fn new(depth: usize, blocks: u64) -> Self {
        Self {
            busy: vec![false; depth],
            in_flight: 0,
            depth,
            blocks,
            stats: QueueStats::default(),
        }
    }

    /// Checks a request and marks its slot busy.
    pub(crate) fn admit(&mut self, op: &Op) -> Result<(), BlkError> {
        if self.in_flight >= self.depth + FLUSH_SLOTS {
            return Err(BlkError::QueueFull(self.in_flight));
        }
        match *op {
            Op::Read { block, buf } | Op::Write { block, buf } => {
                if block >= self.blocks {
                    return Err(BlkError::OutOfRange {
                        block,
                        blocks: self.blocks,
                    });
                }
                match self.busy.get_mut(buf) {
                    Some(b) if !*b => *b = true,
                    _ => return Err(BlkError::BadBuffer(buf)),
                }
                if matches!(op, Op::Read { .. }) {
                    self.stats.reads += 1;
                } else {
                    self.stats.writes += 1;
                }
            }
            Op::Flush => self.stats.flushes += 1,
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Releases a request's slot when it completes.
    pub(crate) fn release(&mut self, op: &Op, ok: bool) {
        if let Some(buf) = op.buf()
            && let Some(b) = self.busy.get_mut(buf)
        {
            *b = false;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if !ok {
            self.stats.errors += 1;
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn check_wait(&self, min: usize) -> Result<(), BlkError> {
        if min > self.in_flight {
            return Err(BlkError::WaitTooMany {
                want: min,
                in_flight: self.in_flight,
            });
        }
        Ok(())
    }
}

/// Flushes that may be in flight beyond the data slots.
pub(crate) const FLUSH_SLOTS: usize = 4;

/// Which backend to open an image with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring with SQPOLL, O_DIRECT, registered file and buffers.
    #[default]
    Uring,
    /// pread/pwrite, one host call per I/O.
    File,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uring" => Ok(Backend::Uring),
            "file" => Ok(Backend::File),
            other => Err(format!(
                "unknown block backend '{other}' (expected 'uring' or 'file')"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Uring => "uring",
            Backend::File => "file",
        })
    }
}

/// Options for opening an image file as a block queue.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Which backend.
    pub backend: Backend,
    /// Queue depth (buffer slots).
    pub depth: usize,
    /// Open read-write.
    pub write: bool,
    /// Ask for O_DIRECT.
    pub direct: bool,
    /// Polling behaviour.
    pub poll: PollConfig,
    /// SQPOLL idle time for the uring backend (`None`: no SQPOLL).
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Uring,
            depth: 64,
            write: true,
            direct: true,
            poll: PollConfig::default(),
            sqpoll_idle_ms: Some(200),
        }
    }
}

/// Opens an existing image file as a block queue of the chosen backend.
pub fn open_image(
    path: &std::path::Path,
    opts: OpenOptions,
) -> Result<Box<dyn BlockQueue>, BlkError> {
    let file = rktio_sys::HostFile::open(
        path,
        rktio_sys::FileOptions {
            write: opts.write,
            direct: opts.direct,
            ..Default::default()
        },
    )?;
    // One writer at a time: two processes writing one sealed image would each
    // commit over the other's tree (a forked child that execs a program on the
    // same image, or a second `rktio run`).
    // A process that just exited may still hold it for a moment: the kernel
    // tears an io_uring (and the files registered with it) down asynchronously.
    let mut tries = 0;
    while let Err(e) = file.try_lock(opts.write) {
        if e.source.kind() != std::io::ErrorKind::WouldBlock {
            return Err(e.into());
        }
        tries += 1;
        if tries == 100 {
            return Err(BlkError::InUse(path.to_owned()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(match opts.backend {
        Backend::Uring => Box::new(UringQueue::new(
            file,
            opts.depth,
            opts.sqpoll_idle_ms,
            opts.poll,
        )?),
        Backend::File => Box::new(FileQueue::new(file, opts.depth)?),
    })
}

/// Runs one request to completion (for slow paths and tests).
pub fn run_one<Q: BlockQueue + ?Sized>(q: &mut Q, op: Op) -> Result<Result<(), IoError>, BlkError> {
    q.submit(Request { op, user: u64::MAX })?;
    let mut out = Vec::with_capacity(1);
    loop {
        q.poll(&mut out, 1)?;
        if let Some(pos) = out.iter().position(|c| c.user == u64::MAX) {
            return Ok(out.swap_remove(pos).result);
        }
    }
}

/// Reads one block synchronously through slot `buf`.
pub fn read_block<Q: BlockQueue + ?Sized>(
    q: &mut Q,
    block: u64,
    buf: usize,
    dst: &mut Block,
) -> Result<Result<(), IoError>, BlkError> {
    let r = run_one(q, Op::Read { block, buf })?;
    if r.is_ok() {
        q.buffers().copy_out(buf, dst)?;
    }
    Ok(r)
}

/// Writes one block synchronously through slot `buf`.
pub fn write_block<Q: BlockQueue + ?Sized>(
    q: &mut Q,
    block: u64,
    buf: usize,
    src: &Block,
) -> Result<Result<(), IoError>, BlkError> {
    q.buffers_mut().copy_in(buf, src)?;
    run_one(q, Op::Write { block, buf })
}

impl Tracker {
    pub(crate) fn blocks(&self) -> u64 {
        self.blocks
    }
}
