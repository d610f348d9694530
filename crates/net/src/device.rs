//! Any [`Nic`] as a smoltcp `Device`.

use std::collections::VecDeque;
use std::net::IpAddr;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{ArpPacket, EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet};

use rktio_sys::{GSO_MAX_FRAME, VNET_HDR_LEN, VnetHdr};

use crate::{ETH_HEADER, Nic, offload};

/// Frames pulled from the NIC per batch (the default of `Tuning::batch`).
pub const RX_BATCH: usize = 64;

/// A smoltcp device over a NIC, with a small receive batch buffer.
///
/// Loopback: a frame the stack addresses to our own MAC (smoltcp, patched, does
/// so for the interface's own addresses, 127.0.0.1 and ::1 included) is handed
/// straight back in and never reaches the NIC. A frame for a loopback address
/// (127.0.0.0/8, ::1; an ARP request for one) is never sent to the NIC, and one
/// from the NIC is dropped and counted (a martian: localhost is only ever reached
/// from inside the stack).
#[derive(Debug)]
pub struct SmolDevice<N: Nic> {
    nic: N,
    rx: VecDeque<Vec<u8>>,
    batch: Vec<Vec<u8>>,
    max: usize,
    own_mac: Option<[u8; 6]>,
    martians: u64,
    /// The NIC takes TCP super-segments and leaves TCP checksums to the host.
    offload: bool,
}

impl<N: Nic> SmolDevice<N> {
    /// Wraps a NIC; `batch` frames at most per receive, and with `batch` 1 every
    /// sent frame is also published to the NIC at once (no batching at all).
    pub fn new(nic: N, batch: usize) -> Self {
        let max = batch.max(1);
        Self {
            offload: nic.offloads(),
            nic,
            rx: VecDeque::new(),
            batch: Vec::with_capacity(max),
            max,
            own_mac: None,
            martians: 0,
        }
    }

    /// Frames to `mac` come straight back in (see the type's docs).
    pub fn set_own_mac(&mut self, mac: [u8; 6]) {
        self.own_mac = Some(mac);
    }

    /// Frames waiting to be received (looped back, or a batch not yet taken).
    pub fn has_pending(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Frames from the NIC dropped because they were for a loopback address.
    pub fn martians(&self) -> u64 {
        self.martians
    }

    /// The NIC.
    pub fn nic(&self) -> &N {
        &self.nic
    }

    /// The NIC, mutably.
    pub fn nic_mut(&mut self) -> &mut N {
        &mut self.nic
    }

    fn refill(&mut self) {
        if self.rx.is_empty() {
            self.batch.clear();
            match self.nic.recv(&mut self.batch, self.max) {
                Ok(_) => {
                    for mut f in self.batch.drain(..) {
                        if frame_to_loopback(&f) {
                            self.martians += 1;
                        } else {
                            // A host's unfinished checksum (see the function).
                            offload::finish_received(&mut f);
                            self.rx.push_back(f);
                        }
                    }
                }
                Err(e) => tracing::warn!("nic receive: {e}"),
            }
        }
    }
}

/// A received frame.
#[derive(Debug)]
pub struct Rx(Vec<u8>);

/// The destination address of an IP packet, if its header parses (smoltcp's
/// checked views: lengths within the buffer).
pub(crate) fn ip_dst(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 => Ipv4Packet::new_checked(p)
            .ok()
            .map(|h| IpAddr::V4(h.dst_addr())),
        6 => Ipv6Packet::new_checked(p)
            .ok()
            .map(|h| IpAddr::V6(h.dst_addr())),
        _ => None,
    }
}

/// Whether an Ethernet frame carries an IP packet for 127.0.0.0/8 or ::1, or an
/// ARP packet about an address in 127.0.0.0/8. A frame that does not parse is
/// not one (smoltcp drops it).
fn frame_to_loopback(f: &[u8]) -> bool {
    let Ok(frame) = EthernetFrame::new_checked(f) else {
        return false;
    };
    match frame.ethertype() {
        EthernetProtocol::Ipv4 | EthernetProtocol::Ipv6 => {
            ip_dst(frame.payload()).is_some_and(|d| d.is_loopback())
        }
        EthernetProtocol::Arp => ArpPacket::new_checked(frame.payload())
            .is_ok_and(|a| a.target_protocol_addr().first() == Some(&127)),
        _ => false,
    }
}

/// Room to send one frame: the NIC, whether to publish it at once, where
/// frames to our own MAC go instead, and the offload smoltcp asked for.
#[derive(Debug)]
pub struct Tx<'a, N: Nic> {
    nic: &'a mut N,
    publish: bool,
    lo: &'a mut VecDeque<Vec<u8>>,
    own_mac: Option<[u8; 6]>,
    /// The NIC takes frames behind a virtio-net header (`Nic::offloads`).
    offload: bool,
    /// Payload bytes per segment, for a TCP super-segment.
    gso: Option<u16>,
}

impl phy::RxToken for Rx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl<N: Nic> phy::TxToken for Tx<'_, N> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // With offloads the frame is built behind room for its header, so it
        // goes to the NIC without a copy.
        let head = if self.offload { VNET_HDR_LEN } else { 0 };
        let mut buf = vec![0u8; head + len];
        let r = f(&mut buf[head..]);
        let hdr = if self.offload {
            offload::tcp_header(&mut buf[head..], self.gso)
        } else {
            VnetHdr::default()
        };
        let frame = &buf[head..];
        let to_self = EthernetFrame::new_checked(frame)
            .is_ok_and(|e| self.own_mac.is_some_and(|m| e.dst_addr().0 == m));
        if to_self {
            // No host finishes these: done here, as the host would.
            if hdr == VnetHdr::default() {
                self.lo.push_back(frame.to_vec());
            } else {
                self.lo.extend(offload::finish(frame, &hdr));
            }
            return r;
        }
        if frame_to_loopback(frame) {
            tracing::debug!("frame for a loopback address not sent");
            return r;
        }
        let sent = if self.offload {
            buf[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
            self.nic.send_offloaded(buf)
        } else {
            self.nic.send(&buf)
        };
        match sent {
            Ok(true) => {}
            Ok(false) => tracing::debug!("nic queue full: frame dropped"),
            Err(e) => tracing::warn!("nic send: {e}"),
        }
        if self.publish {
            self.nic.flush();
        }
        r
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.gso = meta.segmentation_offload_size.map(|n| n.get());
    }
}

impl<N: Nic> SmolDevice<N> {
    fn tx(&mut self) -> Tx<'_, N> {
        Tx {
            nic: &mut self.nic,
            publish: self.max == 1,
            lo: &mut self.rx,
            own_mac: self.own_mac,
            offload: self.offload,
            gso: None,
        }
    }
}

impl<N: Nic> Device for SmolDevice<N> {
    type RxToken<'a>
        = Rx
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.refill();
        let f = self.rx.pop_front()?;
        Some((Rx(f), self.tx()))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        Some(self.tx())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = self.nic.mtu() + ETH_HEADER;
        c.max_burst_size = Some(RX_BATCH);
        if self.offload {
            // The host finishes TCP checksums and cuts IPv4 super-segments
            // (smoltcp drops IPv6 packets above the MTU, so not those).
            c.checksum.tcp = phy::Checksum::Rx;
            c.segmentation.tcpv4 = std::num::NonZeroUsize::new(GSO_MAX_FRAME);
        }
        c
    }
}

/// The device under the tunnel's IP interface: IP packets in and out of queues
/// that the WireGuard layer fills and drains.
#[derive(Debug, Default)]
pub struct TunDevice {
    /// Decrypted packets waiting for the stack.
    pub rx: VecDeque<Vec<u8>>,
    /// Packets the stack sent, waiting to be encrypted.
    pub tx: VecDeque<Vec<u8>>,
    /// IP MTU of the tunnel.
    pub mtu: usize,
    /// Check the checksums of decrypted packets too (`Tuning`).
    pub verify_checksums: bool,
}

/// A decrypted packet.
#[derive(Debug)]
pub struct TunRx(Vec<u8>);

/// Room to send one packet into the tunnel.
#[derive(Debug)]
pub struct TunTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for TunRx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl phy::TxToken for TunTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for TunDevice {
    type RxToken<'a>
        = TunRx
    where
        Self: 'a;
    type TxToken<'a>
        = TunTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((TunRx(p), TunTx(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        Some(TunTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        c.max_burst_size = Some(RX_BATCH);
        if self.verify_checksums {
            // Checked both ways, like a NIC without offload.
            return c;
        }
        // Packets out of the tunnel were authenticated by WireGuard (AEAD over the
        // whole packet), so their checksums are not checked again; outgoing ones
        // still get checksums, which standard peers verify.
        c.checksum = phy::ChecksumCapabilities::default();
        c.checksum.ipv4 = phy::Checksum::Tx;
        c.checksum.tcp = phy::Checksum::Tx;
        c.checksum.udp = phy::Checksum::Tx;
        c.checksum.icmpv4 = phy::Checksum::Tx;
        c.checksum.icmpv6 = phy::Checksum::Tx;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ty: [u8; 2], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ty);
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1];
        p.extend_from_slice(&dst);
        p
    }

    #[test]
    fn frames_for_loopback_are_told_by_their_headers() {
        assert!(frame_to_loopback(&eth([0x08, 0x00], &ipv4([127, 0, 0, 1]))));
        assert!(!frame_to_loopback(&eth([0x08, 0x00], &ipv4([10, 0, 0, 2]))));
        let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
        v6.extend_from_slice(&[0; 16]);
        let mut dst = [0u8; 16];
        dst[15] = 1;
        v6.extend_from_slice(&dst);
        assert!(frame_to_loopback(&eth([0x86, 0xdd], &v6)));
        // ARP request about 127.0.0.1 (Ethernet, IPv4).
        let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 2, 10, 0, 0, 1]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 127, 0, 0, 1]);
        assert!(frame_to_loopback(&eth([0x08, 0x06], &arp)));
        arp[24] = 10;
        assert!(!frame_to_loopback(&eth([0x08, 0x06], &arp)));
        // Short or garbled frames are not (and do not panic).
        for n in 0..40 {
            let f = eth([0x08, 0x00], &ipv4([127, 0, 0, 1]));
            let _ = frame_to_loopback(&f[..n.min(f.len())]);
        }
        assert!(!frame_to_loopback(&eth([0x08, 0x00], &[0x45, 0, 0, 20])));
        assert_eq!(ip_dst(&[0x45]), None);
        assert_eq!(
            ip_dst(&ipv4([10, 0, 0, 9])),
            Some(IpAddr::from([10, 0, 0, 9]))
        );
    }
}
