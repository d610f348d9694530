//! A TAP device as a NIC: the fallback backend, one host call per frame.

use std::os::fd::{AsFd, BorrowedFd};

use rktio_sys::TapDevice;

use crate::{ETH_HEADER, Nic, NicError, NicStats, check_send, frame_lens};

/// A NIC over a TAP device (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`).
#[derive(Debug)]
pub struct TapNic {
    dev: TapDevice,
    mtu: usize,
    buf: Vec<u8>,
    stats: NicStats,
}

impl TapNic {
    /// Creates (or attaches to) the TAP device `name` with this IP MTU. The kernel
    /// side of the device must be given the same MTU (`ip link set NAME mtu MTU`).
    pub fn open(name: &str, mtu: usize) -> Result<Self, NicError> {
        let dev = TapDevice::open(name).map_err(|e| NicError::Down(e.to_string()))?;
        Ok(Self {
            dev,
            mtu,
            // Room for a frame larger than allowed, so one can be seen and dropped.
            buf: vec![0; mtu + ETH_HEADER + 64],
            stats: NicStats::default(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        self.dev.name()
    }
}

impl Nic for TapNic {
    fn recv(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, NicError> {
        let mut n = 0;
        while n < max {
            match self.dev.recv(&mut self.buf) {
                Ok(Some(len)) => {
                    if !frame_lens(self.mtu).contains(&len) {
                        self.stats.rx_dropped_bad += 1;
                        continue;
                    }
                    out.push(self.buf[..len].to_vec());
                    n += 1;
                }
                Ok(None) => break,
                Err(e) => return Err(NicError::Down(e.to_string())),
            }
        }
        self.stats.rx_frames += n as u64;
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, NicError> {
        check_send(frame, self.mtu)?;
        match self.dev.send(frame) {
            Ok(true) => {
                self.stats.tx_frames += 1;
                Ok(true)
            }
            Ok(false) => {
                self.stats.tx_dropped_full += 1;
                Ok(false)
            }
            Err(e) => Err(NicError::Down(e.to_string())),
        }
    }

    fn rx_ready(&self) -> bool {
        rktio_sys::wait_readable(&[self.dev.as_fd()], Some(std::time::Duration::ZERO))
            .unwrap_or(false)
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn stats(&self) -> NicStats {
        self.stats
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.dev.as_fd())
    }
}
