//! Any [`Nic`] as a smoltcp `Device`.

use std::collections::VecDeque;
use std::net::IpAddr;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::{ETH_HEADER, Nic};

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
}

impl<N: Nic> SmolDevice<N> {
    /// Wraps a NIC; `batch` frames at most per receive, and with `batch` 1 every
    /// sent frame is also published to the NIC at once (no batching at all).
    pub fn new(nic: N, batch: usize) -> Self {
        let max = batch.max(1);
        Self {
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
                    for f in self.batch.drain(..) {
                        if frame_to_loopback(&f) {
                            self.martians += 1;
                        } else {
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

/// The destination address of an IP packet, if it parses.
pub(crate) fn ip_dst(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 => {
            let b: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// Whether an Ethernet frame carries an IP packet for 127.0.0.0/8 or ::1, or an
/// ARP packet about an address in 127.0.0.0/8.
fn frame_to_loopback(f: &[u8]) -> bool {
    let Some(p) = f.get(ETH_HEADER..) else {
        return false;
    };
    match f.get(12..14) {
        Some([0x08, 0x00] | [0x86, 0xdd]) => ip_dst(p).is_some_and(|d| d.is_loopback()),
        // ARP: the target protocol address.
        Some([0x08, 0x06]) => p.get(24) == Some(&127),
        _ => false,
    }
}

/// Room to send one frame: the NIC, whether to publish it at once, and where
/// frames to our own MAC go instead.
#[derive(Debug)]
pub struct Tx<'a, N: Nic> {
    nic: &'a mut N,
    publish: bool,
    lo: &'a mut VecDeque<Vec<u8>>,
    own_mac: Option<[u8; 6]>,
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
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        if self.own_mac.is_some_and(|m| buf.get(..6) == Some(&m[..])) {
            self.lo.push_back(buf);
            return r;
        }
        if frame_to_loopback(&buf) {
            tracing::debug!("frame for a loopback address not sent");
            return r;
        }
        match self.nic.send(&buf) {
            Ok(true) => {}
            Ok(false) => tracing::debug!("nic queue full: frame dropped"),
            Err(e) => tracing::warn!("nic send: {e}"),
        }
        if self.publish {
            self.nic.flush();
        }
        r
    }
}

impl<N: Nic> SmolDevice<N> {
    fn tx(&mut self) -> Tx<'_, N> {
        Tx {
            nic: &mut self.nic,
            publish: self.max == 1,
            lo: &mut self.rx,
            own_mac: self.own_mac,
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
