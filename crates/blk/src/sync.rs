//! A queue whose backend performs one request at a time when polled: the shape of
//! the `file` (pread/pwrite) and `mem` backends.

use crate::{
    BlkError, BlockQueue, Completion, HostBuffers, IoError, Op, QueueStats, Request, Tracker,
};
use std::collections::VecDeque;

/// Something that can carry out one block request right now.
pub trait SyncBackend: Send + std::fmt::Debug {
    /// Backend name.
    fn name(&self) -> &'static str;
    /// Blocks on the device.
    fn blocks(&self) -> u64;
    /// Carries out `op` using the queue's buffers.
    fn run(&mut self, bufs: &mut HostBuffers, op: Op) -> Result<(), IoError>;
}

/// A block queue that runs its requests, in order, when polled.
#[derive(Debug)]
pub struct SyncQueue<B: SyncBackend> {
    backend: B,
    bufs: HostBuffers,
    tracker: Tracker,
    queued: VecDeque<Request>,
}

impl<B: SyncBackend> SyncQueue<B> {
    /// A queue of `depth` buffer slots over `backend`.
    pub fn with_backend(backend: B, depth: usize) -> Result<Self, BlkError> {
        let depth = depth.max(1);
        Ok(Self {
            tracker: Tracker::new(depth, backend.blocks()),
            backend,
            bufs: HostBuffers::new(depth)?,
            queued: VecDeque::new(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: SyncBackend> BlockQueue for SyncQueue<B> {
    fn name(&self) -> &'static str {
        self.backend.name()
    }
    fn blocks(&self) -> u64 {
        self.tracker.blocks()
    }
    fn depth(&self) -> usize {
        self.bufs.slots()
    }
    fn buffers(&self) -> &HostBuffers {
        &self.bufs
    }
    fn buffers_mut(&mut self) -> &mut HostBuffers {
        &mut self.bufs
    }
    fn submit(&mut self, req: Request) -> Result<(), BlkError> {
        self.tracker.admit(&req.op)?;
        self.queued.push_back(req);
        Ok(())
    }
    fn kick(&mut self) -> Result<(), BlkError> {
        Ok(())
    }
    fn poll(&mut self, out: &mut Vec<Completion>, min: usize) -> Result<usize, BlkError> {
        self.tracker.check_wait(min)?;
        let mut n = 0;
        while let Some(req) = self.queued.pop_front() {
            let result = self.backend.run(&mut self.bufs, req.op);
            self.tracker.release(&req.op, result.is_ok());
            out.push(Completion {
                user: req.user,
                op: req.op,
                result,
            });
            n += 1;
        }
        Ok(n)
    }
    fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }
    fn stats(&self) -> QueueStats {
        self.tracker.stats
    }
}
