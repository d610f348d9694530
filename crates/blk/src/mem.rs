//! A RAM disk, for tests. Its media ([`MemDisk`]) can be shared, copied and tampered
//! with, the way a hostile host could treat a real image.

use crate::{
    BLOCK_SIZE, BlkError, Block, BlockQueue, Completion, HostBuffers, Op, QueueStats, Request,
    Tracker,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The blocks of a RAM disk; clones share the same media.
#[derive(Debug, Clone)]
pub struct MemDisk {
    inner: Arc<Mutex<Media>>,
}

#[derive(Debug, Clone)]
struct Media {
    blocks: u64,
    data: HashMap<u64, Box<Block>>,
}

impl MemDisk {
    /// A zeroed disk of `blocks` blocks.
    pub fn new(blocks: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Media {
                blocks,
                data: HashMap::new(),
            })),
        }
    }

    fn media(&self) -> MutexGuard<'_, Media> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.media().blocks
    }

    /// An independent copy of the media as it is now.
    pub fn deep_copy(&self) -> MemDisk {
        MemDisk {
            inner: Arc::new(Mutex::new(self.media().clone())),
        }
    }

    /// Raw read (what the host sees).
    pub fn read(&self, block: u64) -> Block {
        self.media()
            .data
            .get(&block)
            .map_or([0; BLOCK_SIZE], |b| **b)
    }

    /// Raw write (what a host could do behind our back).
    pub fn write(&self, block: u64, data: &Block) {
        self.media().data.insert(block, Box::new(*data));
    }

    /// Does the media contain `needle` anywhere inside one block?
    pub fn contains(&self, needle: &[u8]) -> bool {
        self.media()
            .data
            .values()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
    }

    /// Blocks that hold data (were ever written).
    pub fn written_blocks(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.media().data.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Opens a queue on this media.
    pub fn queue(&self, depth: usize) -> Result<MemQueue, BlkError> {
        MemQueue::new(self.clone(), depth)
    }
}

/// A block queue over a [`MemDisk`]. Requests run when polled.
#[derive(Debug)]
pub struct MemQueue {
    disk: MemDisk,
    bufs: HostBuffers,
    tracker: Tracker,
    queued: VecDeque<Request>,
}

impl MemQueue {
    /// A queue of `depth` slots over `disk`.
    pub fn new(disk: MemDisk, depth: usize) -> Result<Self, BlkError> {
        let depth = depth.max(1);
        let blocks = disk.blocks();
        Ok(Self {
            disk,
            bufs: HostBuffers::new(depth)?,
            tracker: Tracker::new(depth, blocks),
            queued: VecDeque::new(),
        })
    }

    /// The media.
    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }
}

impl BlockQueue for MemQueue {
    fn name(&self) -> &'static str {
        "mem"
    }
    fn blocks(&self) -> u64 {
        self.disk.blocks()
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
        let mut block = [0u8; BLOCK_SIZE];
        while let Some(req) = self.queued.pop_front() {
            let result = match req.op {
                Op::Read { block: b, buf } => {
                    block = self.disk.read(b);
                    self.bufs
                        .copy_in(buf, &block)
                        .map_err(|e| crate::IoError::eio(e.to_string()))
                }
                Op::Write { block: b, buf } => match self.bufs.copy_out(buf, &mut block) {
                    Ok(()) => {
                        self.disk.write(b, &block);
                        Ok(())
                    }
                    Err(e) => Err(crate::IoError::eio(e.to_string())),
                },
                Op::Flush => Ok(()),
            };
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
