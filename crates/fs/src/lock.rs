//! POSIX advisory record locks (fcntl F_SETLK/F_SETLKW/F_GETLK), as SQLite uses them.
//!
//! Locks belong to an owner (a process for classic POSIX locks, an open file
//! description for OFD locks) and cover byte ranges of an inode. A request
//! replaces the owner's own locks on the range (splitting them as needed), and
//! conflicts only with other owners: a write lock conflicts with any lock, a
//! read lock with write locks.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::{FsError, FsResult, errno};

/// The kind of a record lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Shared (F_RDLCK).
    Read,
    /// Exclusive (F_WRLCK).
    Write,
    /// Release (F_UNLCK).
    Unlock,
}

/// A byte-range lock request or a lock found by `getlk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLock {
    /// Read, write or unlock.
    pub kind: LockKind,
    /// First byte.
    pub start: u64,
    /// One past the last byte; `None` means to the end of the file, however far it grows.
    pub end: Option<u64>,
    /// Who holds (or asks for) it: a process id or an open file description id.
    pub owner: u64,
}

impl RecordLock {
    fn end_or_max(&self) -> u64 {
        self.end.unwrap_or(u64::MAX)
    }

    fn overlaps(&self, other: &RecordLock) -> bool {
        self.start < other.end_or_max() && other.start < self.end_or_max()
    }

    fn conflicts(&self, other: &RecordLock) -> bool {
        self.owner != other.owner
            && self.overlaps(other)
            && (self.kind == LockKind::Write || other.kind == LockKind::Write)
    }
}

/// The lock table of one file system.
#[derive(Debug, Default)]
pub struct LockTable {
    held: Mutex<HashMap<u64, Vec<RecordLock>>>,
    changed: Condvar,
}

impl LockTable {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<RecordLock>>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// F_GETLK: the first lock of another owner that would block `req`, if any.
    pub fn get(&self, ino: u64, req: &RecordLock) -> Option<RecordLock> {
        let t = self.table();
        t.get(&ino)?.iter().find(|h| h.conflicts(req)).copied()
    }

    /// F_SETLK: takes or releases the lock, or fails with EAGAIN on a conflict.
    pub fn set(&self, ino: u64, req: &RecordLock) -> FsResult<()> {
        validate(req)?;
        let mut t = self.table();
        Self::apply(&mut t, ino, req)?;
        drop(t);
        self.changed.notify_all();
        Ok(())
    }

    /// F_SETLKW: like `set`, but waits while another owner holds a conflicting lock.
    pub fn set_wait(&self, ino: u64, req: &RecordLock) -> FsResult<()> {
        validate(req)?;
        let mut t = self.table();
        loop {
            match Self::apply(&mut t, ino, req) {
                Ok(()) => break,
                Err(e) if e.errno == errno::EAGAIN => {
                    t = self
                        .changed
                        .wait(t)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                Err(e) => return Err(e),
            }
        }
        drop(t);
        self.changed.notify_all();
        Ok(())
    }

    /// Drops every lock `owner` holds on `ino` (POSIX: any close of the file by
    /// the process releases them).
    pub fn release(&self, ino: u64, owner: u64) {
        let mut t = self.table();
        if let Some(v) = t.get_mut(&ino) {
            v.retain(|h| h.owner != owner);
            if v.is_empty() {
                t.remove(&ino);
            }
        }
        drop(t);
        self.changed.notify_all();
    }

    fn apply(t: &mut HashMap<u64, Vec<RecordLock>>, ino: u64, req: &RecordLock) -> FsResult<()> {
        let v = t.entry(ino).or_default();
        if req.kind != LockKind::Unlock && v.iter().any(|h| h.conflicts(req)) {
            return Err(FsError::new(
                errno::EAGAIN,
                "the range is locked by another owner",
            ));
        }
        // Cut the owner's own locks out of the range, keeping the parts outside it.
        let mut next = Vec::with_capacity(v.len() + 2);
        for h in v.drain(..) {
            if h.owner != req.owner || !h.overlaps(req) {
                next.push(h);
                continue;
            }
            if h.start < req.start {
                next.push(RecordLock {
                    end: Some(req.start),
                    ..h
                });
            }
            if let Some(req_end) = req.end
                && h.end_or_max() > req_end
            {
                next.push(RecordLock {
                    start: req_end,
                    ..h
                });
            }
        }
        if req.kind != LockKind::Unlock {
            next.push(*req);
        }
        if next.is_empty() {
            t.remove(&ino);
        } else {
            *v = next;
        }
        Ok(())
    }
}

fn validate(req: &RecordLock) -> FsResult<()> {
    if req.end.is_some_and(|e| e <= req.start) {
        return Err(FsError::new(errno::EINVAL, "empty or inverted lock range"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(kind: LockKind, start: u64, end: Option<u64>, owner: u64) -> RecordLock {
        RecordLock {
            kind,
            start,
            end,
            owner,
        }
    }

    #[test]
    fn sqlite_style_locking() {
        // SQLite's lock bytes: PENDING at 0x40000000, RESERVED +1, SHARED range +2..+512.
        let t = LockTable::default();
        let shared = 0x4000_0002;
        t.set(1, &l(LockKind::Read, shared, Some(shared + 510), 10))
            .unwrap();
        t.set(1, &l(LockKind::Read, shared, Some(shared + 510), 20))
            .unwrap();
        // A writer wanting the whole shared range conflicts with both readers.
        let w = l(LockKind::Write, shared, Some(shared + 510), 10);
        assert_eq!(t.set(1, &w).unwrap_err().errno, errno::EAGAIN);
        assert_eq!(t.get(1, &w).unwrap().owner, 20);
        // Reader 20 unlocks; now 10 can upgrade its own read lock to write.
        t.set(1, &l(LockKind::Unlock, 0, None, 20)).unwrap();
        t.set(1, &w).unwrap();
        assert!(t.get(1, &w).is_none());
        let r = l(LockKind::Read, shared + 100, Some(shared + 101), 20);
        assert_eq!(t.get(1, &r).unwrap().kind, LockKind::Write);
        // Unlocking the middle splits the owner's lock in two.
        t.set(
            1,
            &l(LockKind::Unlock, shared + 100, Some(shared + 200), 10),
        )
        .unwrap();
        assert!(t.get(1, &r).is_none());
        assert!(
            t.get(1, &l(LockKind::Read, shared + 300, Some(shared + 301), 20))
                .is_some()
        );
        t.release(1, 10);
        assert!(t.get(1, &l(LockKind::Write, 0, None, 20)).is_none());
        assert_eq!(
            t.set(1, &l(LockKind::Read, 5, Some(5), 1))
                .unwrap_err()
                .errno,
            errno::EINVAL
        );
    }

    #[test]
    fn set_wait_blocks_until_release() {
        let t = std::sync::Arc::new(LockTable::default());
        t.set(7, &l(LockKind::Write, 0, None, 1)).unwrap();
        let t2 = t.clone();
        let h = std::thread::spawn(move || t2.set_wait(7, &l(LockKind::Write, 0, None, 2)));
        t.release(7, 1);
        h.join().unwrap().unwrap();
        assert_eq!(t.get(7, &l(LockKind::Read, 0, None, 1)).unwrap().owner, 2);
    }
}
