//! A RAM disk, for tests. Its media ([`MemDisk`]) can be shared, copied and tampered
//! with, the way a hostile host could treat a real image.

use crate::sync::{SyncBackend, SyncQueue};
use crate::{BLOCK_SIZE, BlkError, Block, HostBuffers, IoError, Op};
use std::collections::HashMap;
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
pub type MemQueue = SyncQueue<MemDisk>;

impl MemQueue {
    /// A queue of `depth` slots over `disk`.
    pub fn new(disk: MemDisk, depth: usize) -> Result<Self, BlkError> {
        SyncQueue::with_backend(disk, depth)
    }

    /// The media.
    pub fn disk(&self) -> &MemDisk {
        self.backend()
    }
}

impl SyncBackend for MemDisk {
    fn name(&self) -> &'static str {
        "mem"
    }
    fn blocks(&self) -> u64 {
        MemDisk::blocks(self)
    }
    fn run(&mut self, bufs: &mut HostBuffers, op: Op) -> Result<(), IoError> {
        static ZERO: Block = [0; BLOCK_SIZE];
        let mut media = self.media();
        let r = match op {
            Op::Read { block, buf } => {
                bufs.copy_in(buf, media.data.get(&block).map_or(&ZERO, |b| &**b))
            }
            Op::Write { block, buf } => {
                let b = media.data.entry(block).or_insert_with(|| Box::new(ZERO));
                bufs.copy_out(buf, &mut **b)
            }
            Op::Flush => Ok(()),
        };
        r.map_err(|e| IoError::eio(e.to_string()))
    }
}
