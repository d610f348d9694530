//! The trusted page cache between the ext4 engine and the sealed disk.
//!
//! Every block the engine reads or writes goes through here. Hits cost a copy in
//! trusted memory: no host call, no decryption. Writes only dirty pages; they
//! reach the sealed disk in batches (when the cache is full, or at a checkpoint),
//! and become durable only at a checkpoint, which the file system takes at
//! consistent points (see `Fs::checkpoint`). The engine's own "flush" is therefore
//! a no-op: ordering below a checkpoint does not matter, because the sealed disk
//! commits atomically.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use rktio_blk::BlockQueue;
use rktio_seal::{BLOCK_SIZE, Block, SealError, SealedCompletion, SealedDisk};
use rsext4::{
    BlockIo, DeviceCapabilities, DeviceGeometry, Ext4Error, Ext4Result, SectorId, WriteFlags,
};

/// Dirty pages written back together when the cache has to make room.
const EVICT_BATCH: usize = 64;
/// Largest read-ahead window, in blocks.
const MAX_READAHEAD: u64 = 256;

/// Counters of the page cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks served from trusted memory.
    pub hits: u64,
    /// Blocks read from the sealed disk because they were not cached.
    pub misses: u64,
    /// Blocks read ahead of a sequential reader.
    pub readahead: u64,
    /// Dirty blocks written to the sealed disk.
    pub writebacks: u64,
    /// Pages dropped to stay within the bound.
    pub evictions: u64,
    /// Sealed commits (checkpoints that had something to make durable).
    pub commits: u64,
}

struct Page {
    data: Box<Block>,
    dirty: bool,
}

/// The page cache, owning the sealed disk.
pub struct PageCache<Q: BlockQueue> {
    disk: SealedDisk<Q>,
    pages: LruCache<u64, Page>,
    capacity: usize,
    /// Dirty pages, in block order (write-back walks only these).
    dirty: BTreeSet<u64>,
    stats: CacheStats,
    /// The first sealed-disk error since the last successful checkpoint: the
    /// engine only sees "I/O error", the file system reports this one.
    error: Option<(i32, String)>,
    next_seq: u64,
    window: u64,
    spare: Vec<Box<Block>>,
    /// The sealed disk's write budget right after the last commit (or the open):
    /// what it has used since counts the blocks already written back (O_DIRECT
    /// writes, evictions), which dirty pages alone do not show.
    room: u64,
}

/// Pages written back per batch.
const WRITE_BACK_CHUNK: usize = 8192;

impl<Q: BlockQueue> std::fmt::Debug for PageCache<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("pages", &self.pages.len())
            .field("capacity", &self.capacity)
            .field("dirty", &self.dirty.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<Q: BlockQueue> PageCache<Q> {
    /// A cache of at most `capacity` pages (at least 64) over `disk`.
    pub fn new(disk: SealedDisk<Q>, capacity: usize) -> Self {
        let capacity = capacity.max(64);
        let room = disk.write_budget();
        Self {
            room,
            disk,
            pages: LruCache::unbounded(),
            capacity,
            dirty: BTreeSet::new(),
            stats: CacheStats::default(),
            error: None,
            next_seq: u64::MAX,
            window: 0,
            spare: Vec::new(),
        }
    }

    /// The sealed disk below.
    pub fn disk(&self) -> &SealedDisk<Q> {
        &self.disk
    }

    /// The sealed disk below, for tooling that reads it directly (write back first).
    pub fn disk_mut(&mut self) -> &mut SealedDisk<Q> {
        &mut self.disk
    }

    /// Gives the sealed disk back (dirty pages are dropped: checkpoint first).
    pub fn into_disk(self) -> SealedDisk<Q> {
        self.disk
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Pages held now.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// True when no page is held.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Dirty pages held now.
    pub fn dirty(&self) -> usize {
        self.dirty.len()
    }

    /// The bound, in pages.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The first sealed-disk error since the last checkpoint, as (errno, message).
    pub fn take_error(&mut self) -> Option<(i32, String)> {
        self.error.take()
    }

    fn fail(&mut self, e: SealError) -> Ext4Error {
        tracing::warn!("sealed disk: {e}");
        if self.error.is_none() {
            self.error = Some((e.errno(), e.to_string()));
        }
        Ext4Error::io()
    }

    /// True when the dirty pages should be made durable before more work: they
    /// use up half of what the sealed disk can still take before a commit, or
    /// half of the cache; or blocks written back since the last commit (O_DIRECT
    /// writes, evictions) have used half of the copy-on-write room it had then.
    pub fn wants_checkpoint(&self) -> bool {
        let dirty = self.dirty.len() as u64;
        let budget = self.disk.write_budget();
        let written = self.room.saturating_sub(budget);
        (dirty > 0 && (2 * dirty >= budget || 2 * self.dirty.len() >= self.capacity))
            || (written > 0 && 2 * written >= self.room)
    }

    /// How many blocks a single step of a large write may dirty before the file
    /// system looks at [`PageCache::wants_checkpoint`] again.
    pub fn write_step_blocks(&self) -> u64 {
        (self.disk.write_budget() / 8).clamp(1, 256)
    }

    fn take_spare(&mut self) -> Box<Block> {
        self.spare
            .pop()
            .unwrap_or_else(|| Box::new([0; BLOCK_SIZE]))
    }

    /// Reads blocks `first..first + out.len() / 4096` into `out`.
    fn read_blocks(&mut self, first: u64, out: &mut [u8]) -> Result<(), Ext4Error> {
        let n = (out.len() / BLOCK_SIZE) as u64;
        let mut missing = Vec::new();
        for i in 0..n {
            if !self.pages.contains(&(first + i)) {
                missing.push(first + i);
            }
        }
        if !missing.is_empty() {
            // Sequential misses grow a read-ahead window; anything else resets it.
            let last = first + n;
            self.window = if first == self.next_seq {
                (self.window * 2).clamp(4, MAX_READAHEAD)
            } else {
                0
            };
            self.next_seq = last + self.window;
            let end = (last + self.window).min(self.disk.logical_blocks());
            let mut extra = 0;
            for lba in last..end {
                if !self.pages.contains(&lba) {
                    missing.push(lba);
                    extra += 1;
                }
            }
            self.fetch(&missing)?;
            self.stats.misses += missing.len() as u64 - extra;
            self.stats.readahead += extra;
        }
        for (i, chunk) in out.chunks_exact_mut(BLOCK_SIZE).enumerate() {
            let lba = first + i as u64;
            match self.pages.get(&lba) {
                Some(p) => chunk.copy_from_slice(&p.data[..]),
                None => {
                    // Only possible if the fetch made room by evicting a page it just
                    // read, which `fetch` prevents; be safe anyway.
                    let mut b = self.take_spare();
                    self.disk.read(lba, &mut b).map_err(|e| self.fail(e))?;
                    chunk.copy_from_slice(&b[..]);
                    self.spare.push(b);
                }
            }
        }
        self.stats.hits += n.saturating_sub(missing.len() as u64);
        self.shrink()
    }

    /// Reads every block in `lbas` from the sealed disk at once and caches them.
    fn fetch(&mut self, lbas: &[u64]) -> Result<(), Ext4Error> {
        for (i, &lba) in lbas.iter().enumerate() {
            if let Err(e) = self.disk.submit_read(lba, i as u64) {
                self.drain_quietly();
                return Err(self.fail(e));
            }
        }
        let mut done = Vec::with_capacity(lbas.len());
        let mut first_err = None;
        while self.disk.outstanding() > 0 {
            if let Err(e) = self.disk.poll(1, &mut done) {
                first_err.get_or_insert(e);
                break;
            }
        }
        for c in done {
            match c.result {
                Ok(Some(data)) => {
                    if !self.pages.contains(&c.lba) {
                        self.pages.put(c.lba, Page { data, dirty: false });
                    } else {
                        self.disk.recycle(data);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(self.fail(e)),
            None => Ok(()),
        }
    }

    fn drain_quietly(&mut self) {
        let mut done = Vec::new();
        while self.disk.outstanding() > 0 {
            if self.disk.poll(1, &mut done).is_err() {
                break;
            }
        }
    }

    /// Writes blocks into the cache (dirty); nothing reaches the disk yet.
    fn write_blocks(&mut self, first: u64, data: &[u8]) -> Result<(), Ext4Error> {
        let logical = self.disk.logical_blocks();
        for (i, chunk) in data.chunks_exact(BLOCK_SIZE).enumerate() {
            let lba = first + i as u64;
            if lba >= logical {
                return Err(Ext4Error::invalid_input());
            }
            if let Some(p) = self.pages.get_mut(&lba) {
                p.data.copy_from_slice(chunk);
                p.dirty = true;
            } else {
                let mut b = self.take_spare();
                b.copy_from_slice(chunk);
                self.pages.put(
                    lba,
                    Page {
                        data: b,
                        dirty: true,
                    },
                );
            }
            self.dirty.insert(lba);
        }
        self.shrink()
    }

    /// Drops least recently used pages down to the bound, writing dirty ones back
    /// in batches.
    fn shrink(&mut self) -> Result<(), Ext4Error> {
        while self.pages.len() > self.capacity {
            let mut batch = Vec::new();
            while self.pages.len() > self.capacity && batch.len() < EVICT_BATCH {
                let Some((lba, page)) = self.pages.pop_lru() else {
                    break;
                };
                self.stats.evictions += 1;
                if page.dirty {
                    self.dirty.remove(&lba);
                    batch.push((lba, page.data));
                } else {
                    self.spare_or_drop(page.data);
                }
            }
            if batch.is_empty() {
                continue;
            }
            let result = self.write_out(&batch);
            if let Err(e) = result {
                // Keep the data: put the pages back dirty so nothing is lost in memory.
                for (lba, data) in batch {
                    self.pages.put(lba, Page { data, dirty: true });
                    self.dirty.insert(lba);
                }
                return Err(self.fail(e));
            }
            for (_, data) in batch {
                self.spare_or_drop(data);
            }
        }
        Ok(())
    }

    fn spare_or_drop(&mut self, b: Box<Block>) {
        if self.spare.len() < EVICT_BATCH {
            self.spare.push(b);
        }
    }

    /// Writes a batch of blocks to the sealed disk and waits for all of them.
    fn write_out(&mut self, batch: &[(u64, Box<Block>)]) -> Result<(), SealError> {
        let mut first_err = None;
        for (i, (lba, data)) in batch.iter().enumerate() {
            if let Err(e) = self.disk.submit_write(*lba, data, i as u64) {
                first_err = Some(e);
                break;
            }
        }
        let mut done = Vec::new();
        while self.disk.outstanding() > 0 {
            if let Err(e) = self.disk.poll(1, &mut done) {
                first_err.get_or_insert(e);
                break;
            }
        }
        for c in done {
            if let Err(e) = c.result {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => {
                self.stats.writebacks += batch.len() as u64;
                Ok(())
            }
        }
    }

    /// Writes every dirty page back (in block order, in batches of the queue depth).
    pub fn write_back(&mut self) -> Result<(), SealError> {
        let lbas: Vec<u64> = self.dirty.iter().copied().collect();
        for chunk in lbas.chunks(WRITE_BACK_CHUNK) {
            let mut done = Vec::new();
            let submitted = self.submit_chunk(chunk, &mut done);
            self.finish_chunk(chunk, submitted, done)?;
        }
        Ok(())
    }

    /// Submits the write-back of `chunk`, keeping the queue full but no deeper:
    /// reaps completions as it goes (letting thousands of completions pile up in
    /// the sealed disk is far slower). The first error stops it.
    fn submit_chunk(
        &mut self,
        chunk: &[u64],
        done: &mut Vec<SealedCompletion>,
    ) -> Result<(), SealError> {
        let depth = self.disk.queue().depth().max(2);
        for (i, lba) in chunk.iter().enumerate() {
            let Some(p) = self.pages.peek(lba) else {
                continue;
            };
            while self.disk.outstanding() >= depth {
                self.disk.poll(1, done)?;
            }
            self.disk.submit_write(*lba, &p.data, i as u64)?;
        }
        Ok(())
    }

    /// Waits for the rest of `chunk`'s writes and marks its pages clean, or
    /// returns the first error (a failed write-back keeps its type: an I/O error
    /// reaches the program as EIO, not as EINVAL).
    fn finish_chunk(
        &mut self,
        chunk: &[u64],
        submitted: Result<(), SealError>,
        mut done: Vec<SealedCompletion>,
    ) -> Result<(), SealError> {
        let mut first_err = submitted.err();
        while self.disk.outstanding() > 0 {
            if let Err(e) = self.disk.poll(1, &mut done) {
                first_err.get_or_insert(e);
                break;
            }
        }
        for c in done.drain(..) {
            if let Err(e) = c.result {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for lba in chunk {
            if let Some(p) = self.pages.peek_mut(lba) {
                p.dirty = false;
            }
            self.dirty.remove(lba);
        }
        self.stats.writebacks += chunk.len() as u64;
        Ok(())
    }

    /// Writes every dirty page back and commits the sealed disk. Returns the epoch.
    /// The last batch of writes is still in flight when the commit starts, so a
    /// commit that goes to the sealed disk's log writes its record alongside them.
    pub fn commit(&mut self) -> Result<u64, SealError> {
        let epoch = self.commit_begin()?;
        self.disk.wait_durable(epoch)?;
        Ok(epoch)
    }

    /// Whether the commit of `epoch` (from [`PageCache::commit_begin`]) is
    /// durable, without waiting.
    pub fn poll_durable(&mut self, epoch: u64) -> Result<bool, SealError> {
        self.disk.poll_durable(epoch)
    }

    /// Writes every dirty page back and starts a commit of the sealed disk
    /// (see `SealedDisk::commit_begin`). Returns its epoch.
    pub fn commit_begin(&mut self) -> Result<u64, SealError> {
        let lbas: Vec<u64> = self.dirty.iter().copied().collect();
        let mut chunks = lbas.chunks(WRITE_BACK_CHUNK).peekable();
        let mut done = Vec::new();
        while let Some(chunk) = chunks.next() {
            let submitted = self.submit_chunk(chunk, &mut done);
            if submitted.is_ok() && chunks.peek().is_none() {
                break;
            }
            self.finish_chunk(chunk, submitted, std::mem::take(&mut done))?;
        }
        let before = self.disk.stats().commits;
        let committed = self.disk.commit_begin();
        if let Some(last) = lbas.chunks(WRITE_BACK_CHUNK).last() {
            // Inside the commit the writes finished; their completions are here.
            self.finish_chunk(last, Ok(()), done)?;
        }
        let epoch = committed?;
        if self.disk.stats().commits > before {
            self.stats.commits += 1;
        }
        self.room = self.disk.write_budget();
        self.error = None;
        Ok(epoch)
    }

    /// Drops every clean page (for measurements of cold reads).
    pub fn drop_clean(&mut self) {
        let clean: Vec<u64> = self
            .pages
            .iter()
            .filter(|(_, p)| !p.dirty)
            .map(|(l, _)| *l)
            .collect();
        for l in clean {
            self.pages.pop(&l);
        }
    }
}

/// The engine's view of the cache: a block device. Shared with the file system,
/// which takes checkpoints through the same lock.
#[derive(Debug)]
pub struct CacheDev<Q: BlockQueue> {
    cache: Arc<Mutex<PageCache<Q>>>,
    blocks: u64,
    read_only: bool,
}

impl<Q: BlockQueue> CacheDev<Q> {
    pub(crate) fn new(cache: Arc<Mutex<PageCache<Q>>>, read_only: bool) -> Self {
        let blocks = lock(&cache).disk.logical_blocks();
        Self {
            cache,
            blocks,
            read_only,
        }
    }

    fn check(&self, len: usize, sector: SectorId) -> Ext4Result<u64> {
        let first = sector.raw();
        let n = (len / BLOCK_SIZE) as u64;
        if !len.is_multiple_of(BLOCK_SIZE)
            || first.checked_add(n).is_none_or(|end| end > self.blocks)
        {
            return Err(Ext4Error::invalid_input());
        }
        Ok(first)
    }
}

/// Locks the cache; a poisoned lock (a panic elsewhere) still yields the data,
/// which is consistent at every await point of this single-lock design.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<Q: BlockQueue> BlockIo for CacheDev<Q> {
    fn read(&mut self, buf: &mut [u8], sector: SectorId, _count: u32) -> Ext4Result<()> {
        let first = self.check(buf.len(), sector)?;
        lock(&self.cache).read_blocks(first, buf)
    }

    fn write(&mut self, buf: &[u8], sector: SectorId, _count: u32) -> Ext4Result<()> {
        if self.read_only {
            return Err(Ext4Error::read_only());
        }
        let first = self.check(buf.len(), sector)?;
        lock(&self.cache).write_blocks(first, buf)
    }

    fn write_with_flags(
        &mut self,
        buf: &[u8],
        sector: SectorId,
        count: u32,
        _flags: WriteFlags,
    ) -> Ext4Result<()> {
        // FUA and metadata hints: like `flush`, durability and ordering come from
        // the checkpoint's atomic commit, so every write is the same here.
        self.write(buf, sector, count)
    }

    fn flush(&mut self) -> Ext4Result<()> {
        // Ordering barrier only: durability comes from the checkpoint's atomic commit.
        Ok(())
    }

    fn barrier(&mut self) -> Ext4Result<()> {
        Ok(())
    }

    fn geometry(&self) -> DeviceGeometry {
        DeviceGeometry::new(BLOCK_SIZE as u32, self.blocks)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            read_only: self.read_only,
            flush: true,
            ..Default::default()
        }
    }
}
