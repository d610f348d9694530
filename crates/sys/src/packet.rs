//! AF_PACKET as a send queue with offloads: frames go to an interface with a
//! virtio-net header in front (`PACKET_VNET_HDR`), which asks the kernel to
//! finish a TCP checksum and to take a TCP super-segment (up to 64 KiB) that it,
//! or the device, cuts into MTU-sized segments. On a veth the super-segment
//! crosses to the peer whole, as the kernel's own TCP sends it. One sendmmsg(2)
//! sends a batch. The qdisc is not bypassed (`PACKET_QDISC_BYPASS`): that path
//! drops every packet the device cannot take as it is, so a super-segment that
//! the kernel must cut in software (a veth whose peer has an XDP program, a NIC
//! without TSO) would be lost. A veth's qdisc is `noqueue` anyway.
//!
//! Only sending: the socket is bound with protocol 0, so it receives nothing.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::xdp::setsockopt;
use crate::{HostCall, HostError, InternalFd, Result, count};

const SOL_PACKET: i32 = 263;
const PACKET_VNET_HDR: i32 = 15;

/// Size of `struct virtio_net_hdr`, which leads every frame sent.
pub const VNET_HDR_LEN: usize = 10;
/// The send buffer asked for (bytes).
const SNDBUF: i32 = 4 << 20;
/// Largest frame (Ethernet header included) sent as one super-segment.
pub const GSO_MAX_FRAME: usize = 65_000;

/// `struct virtio_net_hdr` (little-endian, as the kernel reads it on x86-64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM` when the kernel must finish a checksum.
    pub needs_csum: bool,
    /// The segmentation asked for.
    pub gso: Gso,
    /// Length of the headers repeated in every segment (Ethernet, IP, TCP).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed range starts (the TCP header).
    pub csum_start: u16,
    /// Where in that range the checksum goes (16 for TCP).
    pub csum_offset: u16,
}

/// The segmentation a frame asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gso {
    /// An ordinary frame.
    #[default]
    None,
    /// A TCP over IPv4 super-segment.
    TcpV4,
    /// A TCP over IPv6 super-segment.
    TcpV6,
}

impl VnetHdr {
    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = u8::from(self.needs_csum);
        b[1] = match self.gso {
            Gso::None => 0,
            Gso::TcpV4 => 1,
            Gso::TcpV6 => 4,
        };
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// Reads a header back (`None`: flags or a segmentation this crate never
    /// asks for).
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> Option<VnetHdr> {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            needs_csum: match b[0] {
                0 => false,
                1 => true,
                _ => return None,
            },
            gso: match b[1] {
                0 => Gso::None,
                1 => Gso::TcpV4,
                4 => Gso::TcpV6,
                _ => return None,
            },
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }
}

/// An AF_PACKET socket bound to one interface, for sending frames that each
/// start with a [`VnetHdr`]'s bytes.
#[derive(Debug)]
pub struct PacketTx {
    fd: Arc<InternalFd>,
    queue: Vec<Vec<u8>>,
    /// Frames the kernel refused, counted by the batches that sent them.
    refused: Arc<AtomicU64>,
}

impl PacketTx {
    /// Opens the socket on interface `ifindex` (in the calling thread's network
    /// namespace). Fails where the kernel lacks AF_PACKET's virtio-net header.
    pub fn open(ifindex: u32) -> Result<PacketTx> {
        let fd = crate::xdp::socket(libc::AF_PACKET, libc::SOCK_RAW, "socket(AF_PACKET)")?;
        let fdb = fd.as_fd();
        setsockopt(fdb, SOL_PACKET, PACKET_VNET_HDR, &1i32, "PACKET_VNET_HDR")?;
        // SAFETY: an all-zero sockaddr_ll is a valid value of the plain C struct.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = 0;
        sa.sll_ifindex = i32::try_from(ifindex)
            .map_err(|_| HostError::new("bind AF_PACKET", io::Error::other("interface index")))?;
        count(HostCall::NetSetup);
        // SAFETY: `sa` is a live sockaddr_ll of the size given, read during the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bind,
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast::<libc::c_void>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(HostError::new("bind AF_PACKET", io::Error::last_os_error()));
        }
        // Room for a few polls' worth of 64 KiB super-segments: a NIC frees
        // the buffer only once it has sent them (the default, about 208 KiB,
        // holds three). Forced as root, else as much as the limit allows.
        if setsockopt(
            fdb,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &SNDBUF,
            "SO_SNDBUFFORCE",
        )
        .is_err()
        {
            setsockopt(fdb, libc::SOL_SOCKET, libc::SO_SNDBUF, &SNDBUF, "SO_SNDBUF")?;
        }
        Ok(PacketTx {
            fd: Arc::new(InternalFd::new(fd)),
            queue: Vec::new(),
            refused: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues one frame: [`VNET_HDR_LEN`] header bytes, then the Ethernet
    /// frame. Sent by the next [`PacketBatch::send`].
    pub fn push(&mut self, frame: Vec<u8>) {
        self.queue.push(frame);
    }

    /// Frames queued and not yet taken.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Frames the kernel refused so far (a full send buffer, a header it
    /// rejected): lost, as on a wire.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Takes the queued frames as one batch, for the caller to send once it
    /// has let go of its locks (on a veth the send runs the receiver's stack).
    pub fn take(&mut self) -> Option<PacketBatch> {
        if self.queue.is_empty() {
            return None;
        }
        Some(PacketBatch {
            fd: self.fd.clone(),
            frames: std::mem::take(&mut self.queue),
            refused: self.refused.clone(),
        })
    }

    /// Adds the queued frames to `batch`, a batch taken earlier and not yet
    /// sent (they go after its frames).
    pub fn take_into(&mut self, batch: &mut PacketBatch) {
        batch.frames.append(&mut self.queue);
    }
}

/// Frames taken from a [`PacketTx`], with its descriptor.
#[derive(Debug)]
pub struct PacketBatch {
    fd: Arc<InternalFd>,
    frames: Vec<Vec<u8>>,
    refused: Arc<AtomicU64>,
}

/// Messages per sendmmsg(2).
const MMSG_MAX: usize = 64;

impl PacketBatch {
    /// Frames in the batch.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Sends the batch, up to 64 frames per sendmmsg(2). Returns how many the
    /// kernel refused (a full queue on the other side, a header it rejects):
    /// those are lost, as on a wire, and TCP sends them again.
    pub fn send(&self) -> Result<usize> {
        let mut refused = 0;
        let mut first_err = None;
        let mut full = false;
        for chunk in self.frames.chunks(MMSG_MAX) {
            if full {
                refused += chunk.len();
                continue;
            }
            let mut iov: Vec<libc::iovec> = chunk
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr().cast_mut().cast::<libc::c_void>(),
                    iov_len: f.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    // SAFETY: an all-zero mmsghdr is a valid value of the plain C
                    // struct (no address, no control data).
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = v as *mut libc::iovec;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            let mut off = 0;
            while off < msgs.len() {
                count(HostCall::NetSend);
                // SAFETY: `msgs[off..]` are live mmsghdrs, each pointing to one
                // live iovec over a frame this batch owns; the kernel reads the
                // frames and writes only the messages' msg_len during the call.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_sendmmsg,
                        self.fd.as_raw_fd(),
                        msgs[off..].as_mut_ptr(),
                        (msgs.len() - off) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if rc > 0 {
                    off += rc as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN) => {
                        // Full (or down): the rest would be refused as well,
                        // one host call each. Dropped, as on a wire; TCP
                        // sends them again.
                        refused += msgs.len() - off;
                        off = msgs.len();
                        full = true;
                    }
                    _ => {
                        // This message is refused; go on with the next.
                        refused += 1;
                        off += 1;
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        self.refused.fetch_add(refused as u64, Ordering::Relaxed);
        match first_err {
            Some(e) => Err(HostError::new("AF_PACKET send", e)),
            None => Ok(refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_has_the_kernels_layout() {
        let h = VnetHdr {
            needs_csum: true,
            gso: Gso::TcpV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(
            h.to_bytes(),
            [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0],
            "flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (le16)"
        );
        assert_eq!(VnetHdr::default().to_bytes(), [0; VNET_HDR_LEN]);
        assert_eq!(VnetHdr::from_bytes(&h.to_bytes()), Some(h));
        assert_eq!(VnetHdr::from_bytes(&[0, 3, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(VnetHdr::from_bytes(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(
            VnetHdr {
                gso: Gso::TcpV6,
                ..h
            }
            .to_bytes()[1],
            4
        );
    }
}
