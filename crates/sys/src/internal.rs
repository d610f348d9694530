//! The stack's own host descriptors (image files, io_uring rings, AF_XDP
//! sockets and maps, TAP devices, eventfds): marked while open, so that the
//! program's calls can never reach them. A program that closes every
//! descriptor (closefrom, close_range), dup2s onto one, or writes to a number
//! it guessed gets EBADF, as if nothing were open there, and the stack keeps
//! its image and queues.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Descriptors below this are tracked in the bitmap; the stack's own are
/// opened lowest-first like every descriptor, far below it.
const TRACKED: usize = 1 << 16;
static MARKS: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];

fn slot(fd: RawFd) -> Option<(usize, u64)> {
    let i = usize::try_from(fd).ok().filter(|&i| i < TRACKED)?;
    Some((i / 64, 1 << (i % 64)))
}

/// Is `fd` one of the stack's own descriptors?
pub fn is_internal(fd: RawFd) -> bool {
    slot(fd).is_some_and(|(w, b)| MARKS[w].load(Ordering::Acquire) & b != 0)
}

/// The lowest of the stack's own descriptors at or above `from`, if any.
pub fn next_internal(from: RawFd) -> Option<RawFd> {
    let start = usize::try_from(from).ok()?;
    (start..TRACKED)
        .find(|&i| MARKS[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0)
        .and_then(|i| RawFd::try_from(i).ok())
}

/// An owned descriptor of the stack's own: marked while it is open.
#[derive(Debug)]
pub struct InternalFd(OwnedFd);

impl InternalFd {
    /// Takes `fd` as one of the stack's own.
    pub fn new(fd: OwnedFd) -> Self {
        mark(fd.as_raw_fd());
        Self(fd)
    }
}

impl Drop for InternalFd {
    fn drop(&mut self) {
        unmark(self.0.as_raw_fd());
    }
}

impl AsFd for InternalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for InternalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Marks a descriptor another owner holds (an io_uring ring) as the stack's.
pub(crate) fn mark(fd: RawFd) {
    if let Some((w, b)) = slot(fd) {
        MARKS[w].fetch_or(b, Ordering::AcqRel);
    }
}

/// Unmarks it as it closes.
pub(crate) fn unmark(fd: RawFd) {
    if let Some((w, b)) = slot(fd) {
        MARKS[w].fetch_and(!b, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_while_open() {
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let raw = fd.as_raw_fd();
        let ours = InternalFd::new(fd);
        assert!(is_internal(raw));
        assert!(next_internal(0).is_some_and(|f| f <= raw));
        drop(ours);
        assert!(!is_internal(raw));
        assert!(!is_internal(-1) && !is_internal(1 << 20));
    }
}
