//! pread/pwrite on a host file: one host call per I/O. This is how library OSes
//! such as SGX-LKL reach the disk, and it is our baseline.

use crate::{
    BlkError, BlockQueue, Completion, HostBuffers, IoError, Op, QueueStats, Request, Tracker,
};
use rktio_sys::{BLOCK_SIZE, HostFile};
use std::collections::VecDeque;

/// A block queue that makes one pread/pwrite/fdatasync per request, when polled.
#[derive(Debug)]
pub struct FileQueue {
    file: HostFile,
    bufs: HostBuffers,
    tracker: Tracker,
    queued: VecDeque<Request>,
}

impl FileQueue {
    /// A queue of `depth` slots over `file`, whose size must be a whole number of blocks.
    pub fn new(file: HostFile, depth: usize) -> Result<Self, BlkError> {
        let blocks = image_blocks(&file)?;
        let depth = depth.max(1);
        Ok(Self {
            file,
            bufs: HostBuffers::new(depth)?,
            tracker: Tracker::new(depth, blocks),
            queued: VecDeque::new(),
        })
    }
}

/// Blocks in an image file; its size must be a multiple of 4 KiB.
pub(crate) fn image_blocks(file: &HostFile) -> Result<u64, BlkError> {
    let len = file.len()?;
    if len % BLOCK_SIZE as u64 != 0 {
        return Err(BlkError::Invalid(format!(
            "{}: size {len} is not a multiple of {BLOCK_SIZE} bytes",
            file.path().display()
        )));
    }
    Ok(len / BLOCK_SIZE as u64)
}

impl BlockQueue for FileQueue {
    fn name(&self) -> &'static str {
        "file"
    }
    fn blocks(&self) -> u64 {
        self.tracker_blocks()
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
            let r = match req.op {
                Op::Read { block, buf } => self.file.read_block(&mut self.bufs, buf, block),
                Op::Write { block, buf } => self.file.write_block(&self.bufs, buf, block),
                Op::Flush => self.file.sync_data(),
            };
            let result = r.map_err(|e| IoError {
                errno: e.errno().unwrap_or(crate::EIO),
                detail: e.to_string(),
            });
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

impl FileQueue {
    fn tracker_blocks(&self) -> u64 {
        self.tracker.blocks()
    }
}
