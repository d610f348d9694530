//! Physical block allocation for copy-on-write.
//!
//! A block the last commit references is never overwritten before the next commit;
//! a block superseded since then becomes free only once that cannot matter any more.
//! Freed blocks are reused first, newest first: a workload that rewrites the same
//! data keeps landing on host blocks already written once (no holes to fill or
//! unwritten extents to convert in the host's file system, a smaller footprint of
//! a sparse image), and only new data moves the cursor through the free space.

use crate::format::SUPERBLOCK_SLOTS;

const FREE: u8 = 0;
/// Referenced by the last commit.
const COMMITTED: u8 = 1;
/// Written since the last commit and still referenced.
const FRESH: u8 = 2;
/// Referenced by the last commit but superseded: free after the next commit.
const PENDING: u8 = 3;
/// Written since the last commit and already superseded: free once no I/O is in flight.
const RECYCLE: u8 = 4;
/// A superblock slot.
const RESERVED: u8 = 5;

#[derive(Debug)]
pub(crate) struct Allocator {
    state: Vec<u8>,
    free: u64,
    cursor: usize,
    fresh: Vec<u64>,
    pending: Vec<u64>,
    recycle: Vec<u64>,
    /// Blocks freed since they were last allocated, newest last (may hold
    /// blocks allocated again since by the cursor: those are skipped).
    reuse: Vec<u64>,
}

impl Allocator {
    pub(crate) fn new(physical: u64) -> Self {
        let mut state = vec![FREE; physical as usize];
        for s in state.iter_mut().take(SUPERBLOCK_SLOTS as usize) {
            *s = RESERVED;
        }
        Self {
            free: physical.saturating_sub(SUPERBLOCK_SLOTS),
            state,
            cursor: SUPERBLOCK_SLOTS as usize,
            fresh: Vec::new(),
            pending: Vec::new(),
            recycle: Vec::new(),
            reuse: Vec::new(),
        }
    }

    /// Marks a block referenced by the committed image; false if it already was.
    pub(crate) fn claim_committed(&mut self, phys: u64) -> bool {
        match self.state.get_mut(phys as usize) {
            Some(s) if *s == FREE => {
                *s = COMMITTED;
                self.free -= 1;
                true
            }
            _ => false,
        }
    }

    /// While replaying the log at open: a block the checkpoint (or an earlier
    /// record) referenced is no longer referenced; false if it was not in use.
    pub(crate) fn release_committed(&mut self, phys: u64) -> bool {
        match self.state.get_mut(phys as usize) {
            Some(s) if *s == COMMITTED => {
                *s = FREE;
                self.free += 1;
                self.freed(phys);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn free_blocks(&self) -> u64 {
        self.free
    }

    fn freed(&mut self, phys: u64) {
        if self.reuse.len() >= self.state.len() {
            // Only stale entries can make it this long.
            self.reuse.clear();
        }
        self.reuse.push(phys);
    }

    /// A free block, now FRESH: the most recently freed one, else the next free
    /// one after the cursor.
    pub(crate) fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        while let Some(p) = self.reuse.pop() {
            if let Some(s) = self.state.get_mut(p as usize)
                && *s == FREE
            {
                *s = FRESH;
                self.free -= 1;
                self.fresh.push(p);
                return Some(p);
            }
        }
        let n = self.state.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if self.state[i] == FREE {
                self.state[i] = FRESH;
                self.free -= 1;
                self.cursor = i + 1;
                self.fresh.push(i as u64);
                return Some(i as u64);
            }
        }
        None
    }

    /// A block's contents are no longer referenced by the working map.
    pub(crate) fn supersede(&mut self, phys: u64) {
        let Some(s) = self.state.get_mut(phys as usize) else {
            return;
        };
        match *s {
            COMMITTED => {
                *s = PENDING;
                self.pending.push(phys);
            }
            FRESH => {
                *s = RECYCLE;
                self.recycle.push(phys);
            }
            _ => {}
        }
    }

    /// No I/O is in flight: superseded uncommitted blocks can be reused.
    pub(crate) fn quiescent(&mut self) {
        let mut list = std::mem::take(&mut self.recycle);
        for &p in &list {
            if let Some(s) = self.state.get_mut(p as usize)
                && *s == RECYCLE
            {
                *s = FREE;
                self.free += 1;
                self.freed(p);
            }
        }
        list.clear();
        self.recycle = list;
    }

    /// A commit's record is written, its flush not yet done: the blocks written
    /// since the last commit are referenced by it now (superseded later, they
    /// wait for a later commit). Returns what it superseded: free once it is
    /// durable ([`Allocator::commit_durable`]).
    pub(crate) fn commit_written(&mut self) -> Vec<u64> {
        for p in self.fresh.drain(..) {
            if let Some(s) = self.state.get_mut(p as usize)
                && *s == FRESH
            {
                *s = COMMITTED;
            }
        }
        std::mem::take(&mut self.pending)
    }

    /// The commit that superseded `superseded` is durable.
    /// (Blocks written since and superseded again wait for `quiescent`: other
    /// writes may still be in flight.)
    pub(crate) fn commit_durable(&mut self, superseded: Vec<u64>) {
        for p in superseded {
            if let Some(s) = self.state.get_mut(p as usize)
                && *s == PENDING
            {
                *s = FREE;
                self.free += 1;
                self.freed(p);
            }
        }
    }

    /// A commit is durable: the new map is the committed one.
    pub(crate) fn committed(&mut self) {
        self.quiescent();
        let mut list = std::mem::take(&mut self.pending);
        for &p in &list {
            if let Some(s) = self.state.get_mut(p as usize)
                && *s == PENDING
            {
                *s = FREE;
                self.free += 1;
                self.freed(p);
            }
        }
        list.clear();
        self.pending = list;
        for p in self.fresh.drain(..) {
            if let Some(s) = self.state.get_mut(p as usize)
                && *s == FRESH
            {
                *s = COMMITTED;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let mut a = Allocator::new(6);
        assert_eq!(a.free_blocks(), 4);
        assert!(a.claim_committed(2));
        assert!(!a.claim_committed(2));
        assert!(!a.claim_committed(0));
        assert!(!a.claim_committed(99));
        let x = a.alloc().unwrap();
        assert_eq!(x, 3);
        a.supersede(2); // committed -> pending, not free yet
        a.supersede(x); // fresh -> recycle
        assert_eq!(a.free_blocks(), 2);
        a.quiescent();
        assert_eq!(a.free_blocks(), 3);
        let y = a.alloc().unwrap();
        a.committed();
        assert_eq!(a.free_blocks(), 3);
        a.supersede(y);
        a.committed();
        assert_eq!(a.free_blocks(), 4);
    }

    /// With a commit's flush in flight, a block written and superseded again
    /// (its write may still be in flight) is not freed by the flush's end, only
    /// once no I/O is in flight; what the commit superseded is.
    #[test]
    fn a_flush_in_flight_frees_only_what_its_commit_superseded() {
        let mut a = Allocator::new(10);
        assert!(a.claim_committed(2));
        let x = a.alloc().unwrap(); // written for the commit
        a.supersede(2); // ... replacing block 2
        let superseded = a.commit_written();
        assert_eq!(superseded, vec![2]);
        let y = a.alloc().unwrap(); // written during the flush
        a.supersede(y); // and replaced again: RECYCLE
        let free = a.free_blocks();
        a.commit_durable(superseded);
        assert_eq!(a.free_blocks(), free + 1, "block 2 only");
        assert_ne!(a.alloc(), Some(y), "y's write may still be in flight");
        a.quiescent();
        assert!(a.state[y as usize] == FREE);
        // x is referenced by the durable commit.
        assert!(a.state[x as usize] == COMMITTED);
    }
}
