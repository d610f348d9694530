//! Spare slots: the numbers of closed descriptors of ours, kept open on the
//! host for the next open, so that opening and closing a sealed file or a
//! socket of the stack costs no host call once a server is warm (nginx opens
//! and closes a file per request).
//!
//! A spare is marked as one of the stack's own descriptors (`internal`): to
//! the program its number is closed (EBADF), close_range skips it, and dup2
//! onto it takes it back first (`claim`). What the program sees differs from
//! the kernel's numbering in one way: a host descriptor it opens while spares
//! are kept gets the next number up, not the spare's. A slot of ours still
//! gets the lowest free number: a host descriptor the program closed below
//! the spares (`host_closed`) is looked for before a spare is handed out.
//!
//! Close-on-exec: each slot's flag is kept here as the kernel has it (set at
//! reserve, dup and F_SETFD through `set_cloexec`), so a spare is handed out
//! with one fcntl only when the flag asked for differs. Spares without the flag
//! get it for the length of an exec (`before_exec`, `after_failed_exec`), so a
//! new program never inherits them.

use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::io::FdFlags;

use crate::internal::{mark, unmark};
use crate::{HostCall, count};

/// At most this many spares are kept; more are closed.
const MAX: usize = 64;
/// Slots below this are pooled (the close-on-exec bitmap's reach).
const TRACKED: usize = 1 << 16;

/// Spare numbers and their close-on-exec flags, lowest first.
static SPARES: Mutex<BTreeMap<RawFd, bool>> = Mutex::new(BTreeMap::new());
/// Set when the program closes a host descriptor: a number below the spares
/// may be free on the host.
static GAP: AtomicBool = AtomicBool::new(false);
/// The close-on-exec flag of each slot of ours, as the kernel has it.
static CLOEXEC: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];

fn bit(fd: RawFd) -> Option<(usize, u64)> {
    let i = usize::try_from(fd).ok().filter(|&i| i < TRACKED)?;
    Some((i / 64, 1 << (i % 64)))
}

fn spares() -> std::sync::MutexGuard<'static, BTreeMap<RawFd, bool>> {
    SPARES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records the close-on-exec flag the kernel has for slot `fd`.
pub(crate) fn note_cloexec(fd: RawFd, on: bool) {
    if let Some((w, b)) = bit(fd) {
        if on {
            CLOEXEC[w].fetch_or(b, Ordering::Relaxed);
        } else {
            CLOEXEC[w].fetch_and(!b, Ordering::Relaxed);
        }
    }
}

fn cloexec_of(fd: RawFd) -> Option<bool> {
    bit(fd).map(|(w, b)| CLOEXEC[w].load(Ordering::Relaxed) & b != 0)
}

fn set_host_cloexec(fd: RawFd, on: bool) -> rustix::io::Result<()> {
    count(HostCall::Open);
    // SAFETY: `fd` is a slot or a spare this module's caller owns, open for the
    // length of the call; fcntl only reads the number.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = if on {
        FdFlags::CLOEXEC
    } else {
        FdFlags::empty()
    };
    rustix::io::fcntl_setfd(b, flags)
}

/// A spare for a new slot, with `cloexec` set as asked; `host_lowest` opens a
/// slot on the host (the lowest free number there), asked only when the
/// program closed a host descriptor since. `None`: no spare, open one.
pub(crate) fn take(cloexec: bool, host_lowest: impl FnOnce() -> Option<RawFd>) -> Option<RawFd> {
    let mut s = spares();
    let (&low, _) = s.first_key_value()?;
    if GAP.swap(false, Ordering::Relaxed)
        && let Some(n) = host_lowest()
    {
        note_cloexec(n, cloexec);
        if n < low {
            // A free number below the spares: that is the lowest (and there
            // may be more).
            GAP.store(true, Ordering::Relaxed);
            return Some(n);
        }
        // None below: the new slot is a spare now, the lowest spare the answer.
        keep(&mut s, n, cloexec);
    }
    let had = *s.get(&low)?;
    if had != cloexec {
        if set_host_cloexec(low, cloexec).is_err() {
            // The flag could not be changed: a fresh slot instead.
            return None;
        }
        note_cloexec(low, cloexec);
    }
    s.remove(&low);
    unmark(low);
    Some(low)
}

fn keep(s: &mut BTreeMap<RawFd, bool>, fd: RawFd, cloexec: bool) {
    mark(fd);
    s.insert(fd, cloexec);
}

/// Keeps the closed slot `fd` as a spare; false if there is no room (the
/// caller closes it).
pub(crate) fn give(fd: RawFd) -> bool {
    let Some(cloexec) = cloexec_of(fd) else {
        return false;
    };
    let mut s = spares();
    if s.len() >= MAX {
        return false;
    }
    keep(&mut s, fd, cloexec);
    true
}

/// Is `fd` a spare?
pub fn is_spare(fd: RawFd) -> bool {
    fd >= 0 && spares().contains_key(&fd)
}

/// The program makes `fd` (a spare) its own with dup2 or dup3: it is no
/// longer a spare, and the host descriptor there is the caller's to replace.
/// False if `fd` was not a spare.
pub fn claim_spare(fd: RawFd) -> bool {
    let mut s = spares();
    if s.remove(&fd).is_some() {
        unmark(fd);
        true
    } else {
        false
    }
}

/// The program closed the host descriptor `fd` (not one of ours).
pub fn host_closed(_fd: RawFd) {
    GAP.store(true, Ordering::Relaxed);
}

/// Sets close-on-exec on slot `fd` of ours (fcntl F_SETFD, ioctl FIOCLEX).
pub fn set_cloexec(fd: RawFd, on: bool) -> std::result::Result<(), i32> {
    set_host_cloexec(fd, on).map_err(|e| e.raw_os_error())?;
    note_cloexec(fd, on);
    Ok(())
}

/// Before an exec: spares without close-on-exec get it, so the new program
/// does not inherit them. Only the host's flags change (a vfork child shares
/// this memory with its parent); `after_failed_exec` puts them back.
pub fn before_exec() {
    for (&fd, &cloexec) in spares().iter() {
        if !cloexec {
            let _ = set_host_cloexec(fd, true);
        }
    }
}

/// The exec failed: spares get back the flags they had.
pub fn after_failed_exec() {
    for (&fd, &cloexec) in spares().iter() {
        if !cloexec {
            let _ = set_host_cloexec(fd, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{close_slot, is_internal, reserve_slot};

    fn host_flag(fd: RawFd) -> bool {
        // SAFETY: `fd` is open for the test.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_getfd(b)
            .unwrap()
            .contains(FdFlags::CLOEXEC)
    }

    // One test: the spares are the process's, shared by every test thread.
    #[test]
    fn closed_slots_come_back_without_host_calls() {
        let a = reserve_slot(false).unwrap();
        let b = reserve_slot(true).unwrap();
        close_slot(a);
        close_slot(b);
        assert!(is_spare(a) && is_spare(b) && is_internal(a) && is_internal(b));
        // The lowest comes back first, its flag changed where asked.
        let before = crate::HostCalls::snapshot().get(HostCall::Open);
        let x = reserve_slot(false).unwrap();
        assert_eq!(x, a.min(b));
        assert!(!is_internal(x) && !is_spare(x));
        assert!(!host_flag(x));
        let y = reserve_slot(true).unwrap();
        assert_eq!(y, a.max(b));
        assert!(host_flag(y));
        let calls = crate::HostCalls::snapshot().get(HostCall::Open) - before;
        assert!(calls <= 2, "{calls} host calls for two spares");

        // Exec: a spare without close-on-exec has it for the exec only.
        close_slot(x);
        before_exec();
        assert!(host_flag(x));
        after_failed_exec();
        assert!(!host_flag(x));

        // dup2 onto a spare takes it back.
        assert!(claim_spare(x));
        assert!(!is_spare(x) && !is_internal(x));
        assert!(!claim_spare(x));
        close_slot(x);

        // A host descriptor closed below the spares: its number is the lowest
        // free one, and the next open gets it.
        let low = reserve_slot(true).unwrap();
        let spare = reserve_slot(true).unwrap();
        close_slot(spare);
        assert!(is_spare(spare));
        // `low` plays a host descriptor the program closes.
        unmark(low);
        // SAFETY: `low` is ours; closing it as the program would.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(low) });
        host_closed(low);
        let n = reserve_slot(true).unwrap();
        // Never above the spare (another test thread may take `low` first).
        assert!(n <= spare, "{n} for free {low} and spare {spare}");
        close_slot(n);
        close_slot(y);
    }
}
