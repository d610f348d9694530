//! AF_XDP as a NIC: frames move through shared-memory rings, with one host call
//! per batch of sends (the copy-mode kick) and none per received frame while
//! traffic flows.

use std::os::fd::{AsFd, BorrowedFd};

use rktio_sys::{
    GSO_MAX_FRAME, PacketTx, ReadySet, TxKick, VNET_HDR_LEN, XdpConfig, XdpMode, XdpProgram,
    XdpSocket, XdpStats,
};

use crate::{ETH_HEADER, Nic, NicError, NicStats, check_send, frame_lens};

/// Frames queued for AF_PACKET between two flushes, at most.
const PACKET_QUEUE_MAX: usize = 2048;

/// A NIC over AF_XDP sockets, one per receive queue of an interface. Sends go
/// out through an AF_PACKET socket with offloads ([`XdpConfig::offload`]), or
/// through the first AF_XDP socket's tx ring.
#[derive(Debug)]
pub struct XdpNic {
    socks: Vec<XdpSocket>,
    /// Readable when any socket has frames.
    ready: ReadySet,
    /// Next queue to read first (so no queue starves another).
    next: usize,
    mtu: usize,
    mac: [u8; 6],
    stats: NicStats,
    /// `flush` leaves its kick in `kick` (see `Nic::defer_kicks`).
    defer: bool,
    kick: Option<TxKick>,
    /// The send socket with offloads, when used.
    packet: Option<PacketTx>,
    // Last: detaches the program once the sockets are closed.
    _prog: XdpProgram,
}

impl XdpNic {
    /// Opens every receive queue of `ifname` (in the calling thread's network
    /// namespace) with this IP MTU; the interface must be up. Its frames stop
    /// reaching the kernel: the stack owns the interface while this lives.
    pub fn open(ifname: &str, mtu: usize, cfg: XdpConfig) -> Result<Self, NicError> {
        if mtu + ETH_HEADER > 3840 {
            return Err(NicError::BadFrame(format!(
                "MTU {mtu} does not fit a 4 KiB UMEM frame"
            )));
        }
        let down = |e: rktio_sys::HostError| NicError::Down(e.to_string());
        let (prog, socks) = rktio_sys::open_xdp(ifname, cfg).map_err(down)?;
        let fds: Vec<_> = socks.iter().map(|s| s.as_fd()).collect();
        let ready = ReadySet::new(&fds).map_err(down)?;
        let mac = rktio_sys::if_mac(ifname).map_err(down)?;
        let packet = if cfg.offload {
            match PacketTx::open(socks[0].ifindex()) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("{ifname}: no send offloads ({e}); sending through AF_XDP");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            packet,
            socks,
            ready,
            next: 0,
            mtu,
            mac,
            stats: NicStats::default(),
            defer: false,
            kick: None,
            _prog: prog,
        })
    }

    /// As [`XdpNic::open`], for an interface in the network namespace `netns`
    /// (`ip netns` name): the socket and program are made on a short-lived thread
    /// that enters it; the NIC then works from any thread.
    pub fn open_in_netns(
        netns: &str,
        ifname: &str,
        mtu: usize,
        cfg: XdpConfig,
    ) -> Result<Self, NicError> {
        let (ns, ifname) = (netns.to_string(), ifname.to_string());
        rktio_sys::spawn_masked("rktio-netns", move || {
            rktio_sys::enter_netns(&ns).map_err(|e| NicError::Down(e.to_string()))?;
            XdpNic::open(&ifname, mtu, cfg)
        })
        .map_err(|e| NicError::Down(format!("spawn the namespace thread: {e}")))?
        .join()
        .map_err(|_| NicError::Down("the namespace thread failed".into()))?
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> XdpMode {
        self.socks[0].mode()
    }

    /// Receive queues served.
    pub fn queues(&self) -> usize {
        self.socks.len()
    }

    /// Whether sends go through AF_PACKET with offloads.
    pub fn offloading(&self) -> bool {
        self.packet.is_some()
    }

    /// Bad ring values the kernel wrote, all queues together.
    pub fn ring_stats(&self) -> XdpStats {
        self.socks.iter().fold(XdpStats::default(), |a, s| {
            let b = s.stats();
            XdpStats {
                bad_desc: a.bad_desc + b.bad_desc,
                bad_index: a.bad_index + b.bad_index,
            }
        })
    }
}

impl Nic for XdpNic {
    fn recv(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, NicError> {
        let start = out.len();
        let n = self.socks.len();
        for i in 0..n {
            let room = max.saturating_sub(out.len() - start);
            if room == 0 {
                break;
            }
            let q = (self.next + i) % n;
            let (_, dropped) = self.socks[q].recv(out, room, frame_lens(self.mtu));
            self.stats.rx_dropped_bad += dropped as u64;
        }
        self.next = (self.next + 1) % n;
        let n = out.len() - start;
        self.stats.rx_frames += n as u64;
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, NicError> {
        check_send(frame, self.mtu)?;
        if self.packet.is_some() {
            // One queue for every frame, so none overtakes another.
            let mut buf = vec![0u8; VNET_HDR_LEN + frame.len()];
            buf[VNET_HDR_LEN..].copy_from_slice(frame);
            return self.send_offloaded(buf);
        }
        let tx = &mut self.socks[0];
        let mut ok = tx.send(frame).map_err(|e| NicError::Down(e.to_string()))?;
        if !ok {
            // Ring full: publish what is queued, take back completions, retry once.
            tx.flush().map_err(|e| NicError::Down(e.to_string()))?;
            ok = tx.send(frame).map_err(|e| NicError::Down(e.to_string()))?;
        }
        if ok {
            self.stats.tx_frames += 1;
        } else {
            self.stats.tx_dropped_full += 1;
        }
        Ok(ok)
    }

    fn flush(&mut self) {
        if let Some(p) = &mut self.packet {
            if self.defer {
                // A kick not yet taken (a publish per frame, `batch = 1`)
                // takes these after its own.
                match &mut self.kick {
                    Some(TxKick::Packet(b)) => p.take_into(b),
                    Some(TxKick::Xdp(_)) => {}
                    None => self.kick = p.take().map(TxKick::Packet),
                }
            } else if let Some(b) = p.take()
                && let Err(e) = b.send()
            {
                tracing::warn!("xdp: {e}");
            }
            return;
        }
        if self.defer {
            if let Some(k) = self.socks[0].publish() {
                self.kick = Some(TxKick::Xdp(k));
            }
        } else if let Err(e) = self.socks[0].flush() {
            tracing::warn!("xdp: {e}");
        }
    }

    fn defer_kicks(&mut self) {
        self.defer = true;
    }

    fn take_kick(&mut self) -> Option<TxKick> {
        self.kick.take()
    }

    fn offloads(&self) -> bool {
        self.packet.is_some()
    }

    fn send_offloaded(&mut self, buf: Vec<u8>) -> Result<bool, NicError> {
        let Some(p) = &mut self.packet else {
            return Err(NicError::BadFrame("this NIC takes no offloads".into()));
        };
        if !(VNET_HDR_LEN + ETH_HEADER..=VNET_HDR_LEN + GSO_MAX_FRAME).contains(&buf.len()) {
            return Err(NicError::BadFrame(format!("{} bytes", buf.len())));
        }
        // Bounded like a ring: a poll publishes what it queued.
        if p.pending() >= PACKET_QUEUE_MAX {
            self.stats.tx_dropped_full += 1;
            return Ok(false);
        }
        p.push(buf);
        self.stats.tx_frames += 1;
        Ok(true)
    }

    fn rx_ready(&self) -> bool {
        self.socks.iter().any(|s| s.rx_ready())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn stats(&self) -> NicStats {
        // Frames the kernel refused after they were queued (a full send
        // buffer) count as dropped too.
        let refused = self.packet.as_ref().map_or(0, PacketTx::refused);
        NicStats {
            tx_dropped_full: self.stats.tx_dropped_full + refused,
            ..self.stats
        }
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.ready.as_fd())
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }
}
