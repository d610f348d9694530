//! Any [`Nic`] as a smoltcp `Device`.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::{ETH_HEADER, Nic};

/// Frames pulled from the NIC per batch (the default of `Tuning::batch`).
pub const RX_BATCH: usize = 64;

/// A smoltcp device over a NIC, with a small receive batch buffer.
#[derive(Debug)]
pub struct SmolDevice<N: Nic> {
    nic: N,
    rx: VecDeque<Vec<u8>>,
    batch: Vec<Vec<u8>>,
    max: usize,
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
        }
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
                Ok(_) => self.rx.extend(self.batch.drain(..)),
                Err(e) => tracing::warn!("nic receive: {e}"),
            }
        }
    }
}

/// A received frame.
#[derive(Debug)]
pub struct Rx(Vec<u8>);

/// Room to send one frame (and whether to publish it at once).
#[derive(Debug)]
pub struct Tx<'a, N: Nic>(&'a mut N, bool);

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
        match self.0.send(&buf) {
            Ok(true) => {}
            Ok(false) => tracing::debug!("nic queue full: frame dropped"),
            Err(e) => tracing::warn!("nic send: {e}"),
        }
        if self.1 {
            self.0.flush();
        }
        r
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
        Some((Rx(f), Tx(&mut self.nic, self.max == 1)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        Some(Tx(&mut self.nic, self.max == 1))
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
