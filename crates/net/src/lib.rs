//! rkt-io's network layer (issue 4, in progress).
//!
//! - [`Nic`]: one interface over NIC queues: batched receive and send of Ethernet
//!   frames. Backends: [`PipeNic`] (an in-memory pair, for tests and for joining
//!   two stacks in one process) now; AF_XDP and TAP next.
//! - [`SmolDevice`]: any [`Nic`] as a smoltcp device, so the smoltcp TCP/IP stack
//!   runs over it.
//!
//! Every frame a backend hands up is checked (length within the MTU and at least
//! an Ethernet header); a bad one is dropped and counted, never a panic.

#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;

mod device;
pub mod offload;
mod pipe;
mod socket;
mod stack;
mod tap;
pub mod wg;
pub mod wgconf;
mod xdp;

pub use device::{SmolDevice, TunDevice};
pub use pipe::PipeNic;
pub use rktio_sys::Notifier;
pub use rktio_sys::{XdpConfig, XdpMode};
pub use socket::{
    CONNECT_TIMEOUT, MAX_BACKLOG, Net, NetError, PollConfig, TcpListener, TcpOptions, TcpStream,
    UdpSocket, Watch,
};
pub use stack::{Security, Stack, StackConfig, StackError, StackStats, Tuning, WG_DEFAULT_MTU};
pub use tap::TapNic;
pub use wg::{WgStats, WgTunnel};
pub use wgconf::{Cidr, Key, WgConfig};
pub use xdp::XdpNic;

/// Ethernet header length.
pub const ETH_HEADER: usize = 14;

/// Lengths a frame may have on a link with this IP MTU: at least an Ethernet
/// header, at most MTU + header.
pub fn frame_lens(mtu: usize) -> std::ops::RangeInclusive<usize> {
    ETH_HEADER..=mtu + ETH_HEADER
}

/// Refuses a frame the caller wants sent that the link cannot carry.
fn check_send(frame: &[u8], mtu: usize) -> Result<(), NicError> {
    if frame_lens(mtu).contains(&frame.len()) {
        Ok(())
    } else {
        Err(NicError::BadFrame(format!("{} bytes", frame.len())))
    }
}

/// Counters of a NIC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames received and handed up.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames dropped on receive because they were malformed (too short, too long).
    pub rx_dropped_bad: u64,
    /// Frames dropped on send because the queue was full.
    pub tx_dropped_full: u64,
}

/// NIC errors.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// The other end is gone.
    #[error("the link is down: {0}")]
    Down(String),
    /// A frame the caller gave is not sendable.
    #[error("bad frame: {0}")]
    BadFrame(String),
}

/// A network interface over NIC queues: batched receive and send of whole
/// Ethernet frames.
pub trait Nic: Send + std::fmt::Debug {
    /// Moves up to `max` received frames into `out` (each checked: at least an
    /// Ethernet header, at most MTU + header). Returns how many were added.
    fn recv(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, NicError>;
    /// Queues one frame for sending. Returns false if it was dropped (queue full).
    fn send(&mut self, frame: &[u8]) -> Result<bool, NicError>;
    /// Whether `recv` would return at least one frame now.
    fn rx_ready(&self) -> bool;
    /// IP MTU (frames carry up to MTU + 14 bytes).
    fn mtu(&self) -> usize;
    /// Counters.
    fn stats(&self) -> NicStats;
    /// The interface's own MAC address, when the stack owns the interface (AF_XDP
    /// on a NIC or veth); `None` when the other side of the link has it (TAP) or
    /// there is none (pipe), and the stack picks its own.
    fn mac(&self) -> Option<[u8; 6]> {
        None
    }
    /// A descriptor that becomes readable when frames arrive, for an idle poller to
    /// park on (`None`: the NIC cannot wake a sleeper and must be polled).
    fn wait_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Publishes frames queued by [`Nic::send`] (a ring's producer index, a kick):
    /// called once per poll, so host calls are per batch, not per frame.
    fn flush(&mut self) {}
    /// Called before parking on [`Nic::wait_fd`]: clears stale wake-ups (and, for
    /// queues with a need-wakeup flag, asks the host to wake us).
    fn prepare_wait(&mut self) {}
    /// From now on `flush` leaves the host call that makes the host send (an
    /// AF_XDP kick) to [`Nic::take_kick`], for a caller that makes it outside
    /// its locks (the driver).
    fn defer_kicks(&mut self) {}
    /// The kick `flush` left, if any: the caller sends it.
    fn take_kick(&mut self) -> Option<rktio_sys::TxKick> {
        None
    }
    /// Whether frames go to the host behind a virtio-net header
    /// ([`Nic::send_offloaded`]): TCP checksums left to the host, and TCP
    /// super-segments it cuts up (see [`offload`]).
    fn offloads(&self) -> bool {
        false
    }
    /// Queues one frame behind its `rktio_sys::VNET_HDR_LEN`-byte header (only
    /// when [`Nic::offloads`]). Returns false if it was dropped (queue full).
    fn send_offloaded(&mut self, buf: Vec<u8>) -> Result<bool, NicError> {
        let _ = buf;
        Err(NicError::BadFrame("this NIC takes no offloads".into()))
    }
}

impl Nic for Box<dyn Nic> {
    fn recv(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, NicError> {
        (**self).recv(out, max)
    }
    fn send(&mut self, frame: &[u8]) -> Result<bool, NicError> {
        (**self).send(frame)
    }
    fn rx_ready(&self) -> bool {
        (**self).rx_ready()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn stats(&self) -> NicStats {
        (**self).stats()
    }
    fn mac(&self) -> Option<[u8; 6]> {
        (**self).mac()
    }
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).wait_fd()
    }
    fn flush(&mut self) {
        (**self).flush()
    }
    fn prepare_wait(&mut self) {
        (**self).prepare_wait()
    }
    fn defer_kicks(&mut self) {
        (**self).defer_kicks()
    }
    fn take_kick(&mut self) -> Option<rktio_sys::TxKick> {
        (**self).take_kick()
    }
    fn offloads(&self) -> bool {
        (**self).offloads()
    }
    fn send_offloaded(&mut self, buf: Vec<u8>) -> Result<bool, NicError> {
        (**self).send_offloaded(buf)
    }
}
