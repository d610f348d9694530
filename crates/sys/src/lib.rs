//! The host boundary of rkt-io.
//!
//! This crate is the only place in the workspace that makes system calls, maps
//! memory the host can see, and reads values the host wrote. Every host call goes
//! through [`count`] so that any layer can report "host calls per I/O"
//! ([`HostCalls::snapshot`]).
//!
//! Memory the host can see is never handed out as a Rust reference: it is copied
//! in and out through [`HostBuffers`], so a hostile host that changes it at any
//! moment cannot break Rust's aliasing rules or make us check one value and use
//! another.

mod buffer;
mod counters;
mod creds;
mod file;
mod internal;
mod net;
mod packet;
mod slot;
mod spare;
mod uring;
mod xdp;

pub use buffer::HostBuffers;
pub use counters::{HostCall, HostCalls, count};
pub use creds::{ThreadCreds, read_umask, thread_creds};
pub use file::{FileOptions, HostFile};
pub use internal::{InternalFd, is_internal, next_internal};
pub use net::{Notifier, ReadySet, TapDevice, dup_fd, wait_readable};
pub use packet::{GSO_MAX_FRAME, Gso, PacketBatch, PacketTx, VNET_HDR_LEN, VnetHdr};
pub use slot::{
    close_slot, dup_onto, dup_slot, host_fd_open, ids, memory_file, poll_fds, random_bytes,
    reserve_slot, spawn_masked,
};
pub use spare::{after_failed_exec, before_exec, claim_spare, host_closed, is_spare, set_cloexec};
pub use uring::{RawCompletion, Uring, UringConfig, UringOp};
pub use xdp::{
    TxKick, XDP_MAX_QUEUES, XdpConfig, XdpKick, XdpMode, XdpProgram, XdpSocket, XdpStats,
    enter_netns, if_index, if_mac, open_xdp,
};

/// Size of one block everywhere in rkt-io.
pub const BLOCK_SIZE: usize = 4096;

/// Any failure of a host call, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct HostError {
    /// What rkt-io was doing.
    pub what: String,
    /// What the host answered.
    #[source]
    pub source: std::io::Error,
}

impl HostError {
    /// Wraps an I/O error with context.
    pub fn new(what: impl Into<String>, source: std::io::Error) -> Self {
        Self {
            what: what.into(),
            source,
        }
    }

    /// The raw errno, if the host gave one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, HostError>;

/// Returns the kernel's errno for an `io::Error`, or EIO.
pub fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}
