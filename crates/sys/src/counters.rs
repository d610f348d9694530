//! One counter per kind of host call, shared by the whole process.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of host call rkt-io makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum HostCall {
    /// open/openat.
    Open,
    /// pread/pread64.
    Pread,
    /// pwrite/pwrite64.
    Pwrite,
    /// fsync/fdatasync.
    Fsync,
    /// fallocate/ftruncate.
    Resize,
    /// fstat.
    Stat,
    /// mmap/munmap/madvise.
    Mmap,
    /// io_uring_setup and io_uring_register.
    UringSetup,
    /// io_uring_enter made to submit (or wake the SQ poller).
    UringSubmit,
    /// io_uring_enter made to wait for completions.
    UringWait,
    /// Opening and configuring network devices, sockets and eventfds.
    NetSetup,
    /// A read of frames (TAP read, AF_XDP receive wake-up).
    NetRecv,
    /// A write of frames (TAP write, AF_XDP transmit kick).
    NetSend,
    /// poll(2): waiting for a device or a wake-up while idle.
    Poll,
    /// eventfd write/read: waking a parked poller.
    Wake,
}

impl HostCall {
    /// Every kind, in display order.
    pub const ALL: [HostCall; 15] = [
        HostCall::Open,
        HostCall::Pread,
        HostCall::Pwrite,
        HostCall::Fsync,
        HostCall::Resize,
        HostCall::Stat,
        HostCall::Mmap,
        HostCall::UringSetup,
        HostCall::UringSubmit,
        HostCall::UringWait,
        HostCall::NetSetup,
        HostCall::NetRecv,
        HostCall::NetSend,
        HostCall::Poll,
        HostCall::Wake,
    ];

    /// Short name, as printed in stats.
    pub fn name(self) -> &'static str {
        match self {
            HostCall::Open => "open",
            HostCall::Pread => "pread",
            HostCall::Pwrite => "pwrite",
            HostCall::Fsync => "fsync",
            HostCall::Resize => "resize",
            HostCall::Stat => "stat",
            HostCall::Mmap => "mmap",
            HostCall::UringSetup => "uring_setup",
            HostCall::UringSubmit => "uring_submit",
            HostCall::UringWait => "uring_wait",
            HostCall::NetSetup => "net_setup",
            HostCall::NetRecv => "net_recv",
            HostCall::NetSend => "net_send",
            HostCall::Poll => "poll",
            HostCall::Wake => "wake",
        }
    }
}

static COUNTS: [AtomicU64; HostCall::ALL.len()] =
    [const { AtomicU64::new(0) }; HostCall::ALL.len()];

/// Records one host call. Called by this crate right before each system call.
#[inline]
pub fn count(kind: HostCall) {
    COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the host-call counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCalls {
    counts: [u64; HostCall::ALL.len()],
}

impl HostCalls {
    /// The counters now.
    pub fn snapshot() -> Self {
        let mut counts = [0; HostCall::ALL.len()];
        for (c, a) in counts.iter_mut().zip(COUNTS.iter()) {
            *c = a.load(Ordering::Relaxed);
        }
        Self { counts }
    }

    /// Calls of one kind.
    pub fn get(&self, kind: HostCall) -> u64 {
        self.counts[kind as usize]
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Calls made between `earlier` and `self`.
    pub fn since(&self, earlier: &HostCalls) -> HostCalls {
        let mut counts = [0; HostCall::ALL.len()];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        HostCalls { counts }
    }

    /// Non-zero kinds with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (HostCall, u64)> + '_ {
        HostCall::ALL
            .iter()
            .map(|k| (*k, self.get(*k)))
            .filter(|(_, n)| *n > 0)
    }
}

impl std::fmt::Display for HostCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (k, n) in self.nonzero() {
            if !first {
                write!(f, " ")?;
            }
            first = false;
            write!(f, "{}={}", k.name(), n)?;
        }
        if first {
            write!(f, "none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_differences() {
        let a = HostCalls::snapshot();
        count(HostCall::Pread);
        count(HostCall::Pread);
        count(HostCall::Fsync);
        let d = HostCalls::snapshot().since(&a);
        assert!(d.get(HostCall::Pread) >= 2);
        assert!(d.get(HostCall::Fsync) >= 1);
        assert!(d.total() >= 3);
        assert!(d.to_string().contains("pread="));
    }
}
