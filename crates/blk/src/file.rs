//! pread/pwrite on a host file: one host call per I/O. This is how library OSes
//! such as SGX-LKL reach the disk, and it is our baseline.

use crate::sync::{SyncBackend, SyncQueue};
use crate::{BlkError, HostBuffers, IoError, Op};
use rktio_sys::{BLOCK_SIZE, HostFile};

/// A block queue that makes one pread/pwrite/fdatasync per request, when polled.
pub type FileQueue = SyncQueue<FileBackend>;

/// The host file behind a [`FileQueue`].
#[derive(Debug)]
pub struct FileBackend {
    file: HostFile,
    blocks: u64,
}

impl FileQueue {
    /// A queue of `depth` slots over `file`, whose size must be a whole number of blocks.
    pub fn new(file: HostFile, depth: usize) -> Result<Self, BlkError> {
        let blocks = image_blocks(&file)?;
        SyncQueue::with_backend(FileBackend { file, blocks }, depth)
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

impl SyncBackend for FileBackend {
    fn name(&self) -> &'static str {
        "file"
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn run(&mut self, bufs: &mut HostBuffers, op: Op) -> Result<(), IoError> {
        match op {
            Op::Read { block, buf } => self.file.read_block(bufs, buf, block),
            Op::Write { block, buf } => self.file.write_block(bufs, buf, block),
            Op::Flush => self.file.sync_data(),
        }
        .map_err(|e| IoError {
            errno: e.errno().unwrap_or(crate::EIO),
            detail: e.to_string(),
        })
    }
}
