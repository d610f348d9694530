//! AF_XDP as a NIC: frames move through shared-memory rings, with one host call
//! per batch of sends (the copy-mode kick) and none per received frame while
//! traffic flows.

use std::os::fd::{AsFd, BorrowedFd};

use rktio_sys::{XdpConfig, XdpMode, XdpSocket, XdpStats};

use crate::{ETH_HEADER, Nic, NicError, NicStats};

/// A NIC over an AF_XDP socket on one queue of an interface.
#[derive(Debug)]
pub struct XdpNic {
    sock: XdpSocket,
    mtu: usize,
    stats: NicStats,
}

impl XdpNic {
    /// Opens queue `queue` of `ifname` (in the calling thread's network namespace)
    /// with this IP MTU; the interface must be up. Its frames stop reaching the
    /// kernel: the stack owns the interface while this lives.
    pub fn open(ifname: &str, queue: u32, mtu: usize, cfg: XdpConfig) -> Result<Self, NicError> {
        if mtu + ETH_HEADER > 3840 {
            return Err(NicError::BadFrame(format!(
                "MTU {mtu} does not fit a 4 KiB UMEM frame"
            )));
        }
        let sock =
            XdpSocket::open(ifname, queue, cfg).map_err(|e| NicError::Down(e.to_string()))?;
        Ok(Self {
            sock,
            mtu,
            stats: NicStats::default(),
        })
    }

    /// As [`XdpNic::open`], for an interface in the network namespace `netns`
    /// (`ip netns` name): the socket and program are made on a short-lived thread
    /// that enters it; the NIC then works from any thread.
    pub fn open_in_netns(
        netns: &str,
        ifname: &str,
        queue: u32,
        mtu: usize,
        cfg: XdpConfig,
    ) -> Result<Self, NicError> {
        let (ns, ifname) = (netns.to_string(), ifname.to_string());
        std::thread::spawn(move || {
            rktio_sys::enter_netns(&ns).map_err(|e| NicError::Down(e.to_string()))?;
            XdpNic::open(&ifname, queue, mtu, cfg)
        })
        .join()
        .map_err(|_| NicError::Down("the namespace thread failed".into()))?
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> XdpMode {
        self.sock.mode()
    }

    /// Bad ring values the kernel wrote.
    pub fn ring_stats(&self) -> XdpStats {
        self.sock.stats()
    }
}

impl Nic for XdpNic {
    fn recv(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, NicError> {
        let start = out.len();
        let (_, dropped) = self.sock.recv(out, max, self.mtu + ETH_HEADER);
        self.stats.rx_dropped_bad += dropped as u64;
        // Runts are dropped here (the socket drops only what is too long).
        let mut kept = start;
        for i in start..out.len() {
            if out[i].len() >= ETH_HEADER {
                out.swap(kept, i);
                kept += 1;
            } else {
                self.stats.rx_dropped_bad += 1;
            }
        }
        out.truncate(kept);
        let n = kept - start;
        self.stats.rx_frames += n as u64;
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, NicError> {
        if frame.len() < ETH_HEADER || frame.len() > self.mtu + ETH_HEADER {
            return Err(NicError::BadFrame(format!("{} bytes", frame.len())));
        }
        let mut ok = self
            .sock
            .send(frame)
            .map_err(|e| NicError::Down(e.to_string()))?;
        if !ok {
            // Ring full: publish what is queued, take back completions, retry once.
            self.sock
                .flush()
                .map_err(|e| NicError::Down(e.to_string()))?;
            ok = self
                .sock
                .send(frame)
                .map_err(|e| NicError::Down(e.to_string()))?;
        }
        if ok {
            self.stats.tx_frames += 1;
        } else {
            self.stats.tx_dropped_full += 1;
        }
        Ok(ok)
    }

    fn flush(&mut self) {
        if let Err(e) = self.sock.flush() {
            tracing::warn!("xdp: {e}");
        }
    }

    fn rx_ready(&self) -> bool {
        self.sock.rx_ready()
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn stats(&self) -> NicStats {
        self.stats
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sock.as_fd())
    }
}
