//! An in-memory pair of NICs: what one end sends, the other receives.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use rktio_sys::{Notifier, VNET_HDR_LEN, VnetHdr};

use crate::{Nic, NicError, NicStats, check_send, frame_lens};

#[derive(Debug)]
struct Wire {
    frames: Mutex<VecDeque<Vec<u8>>>,
    /// Signalled when a frame lands on an empty wire, so a parked receiver wakes.
    ready: Notifier,
}

/// One end of an in-memory link.
#[derive(Debug)]
pub struct PipeNic {
    rx: Arc<Wire>,
    tx: Arc<Wire>,
    mtu: usize,
    capacity: usize,
    stats: NicStats,
    /// Takes frames behind a virtio-net header and does what a host does with
    /// them ([`crate::offload::finish`]) before they go on the wire.
    offload: bool,
}

fn lock(w: &Wire) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
    w.frames
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PipeNic {
    /// Two connected ends with this IP MTU, each direction holding at most
    /// `capacity` frames in flight (more are dropped, like a full ring).
    pub fn pair(mtu: usize, capacity: usize) -> Result<(PipeNic, PipeNic), NicError> {
        let wire = || -> Result<Arc<Wire>, NicError> {
            Ok(Arc::new(Wire {
                frames: Mutex::new(VecDeque::new()),
                ready: Notifier::new().map_err(|e| NicError::Down(e.to_string()))?,
            }))
        };
        let (a, b) = (wire()?, wire()?);
        let end = |rx: &Arc<Wire>, tx: &Arc<Wire>| PipeNic {
            rx: rx.clone(),
            tx: tx.clone(),
            mtu,
            capacity: capacity.max(1),
            stats: NicStats::default(),
            offload: false,
        };
        Ok((end(&a, &b), end(&b, &a)))
    }

    /// As [`PipeNic::pair`], with both ends taking send offloads (TCP
    /// super-segments, TCP checksums) and finishing them as a host would.
    pub fn pair_offloading(mtu: usize, capacity: usize) -> Result<(PipeNic, PipeNic), NicError> {
        let (mut a, mut b) = Self::pair(mtu, capacity)?;
        a.offload = true;
        b.offload = true;
        Ok((a, b))
    }

    /// Puts raw bytes on this end's receive side as if the wire delivered them
    /// (for tests of hostile frames).
    pub fn inject(&self, frame: Vec<u8>) {
        lock(&self.rx).push_back(frame);
        self.rx.ready.notify();
    }
}

impl Nic for PipeNic {
    fn recv(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, NicError> {
        let mut w = lock(&self.rx);
        let mut n = 0;
        while n < max {
            let Some(f) = w.pop_front() else { break };
            if !frame_lens(self.mtu).contains(&f.len()) {
                self.stats.rx_dropped_bad += 1;
                continue;
            }
            out.push(f);
            n += 1;
        }
        self.stats.rx_frames += n as u64;
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, NicError> {
        check_send(frame, self.mtu)?;
        let mut w = lock(&self.tx);
        if w.len() >= self.capacity {
            self.stats.tx_dropped_full += 1;
            return Ok(false);
        }
        let was_empty = w.is_empty();
        w.push_back(frame.to_vec());
        drop(w);
        if was_empty {
            self.tx.ready.notify();
        }
        self.stats.tx_frames += 1;
        Ok(true)
    }

    fn rx_ready(&self) -> bool {
        !lock(&self.rx).is_empty()
    }

    fn offloads(&self) -> bool {
        self.offload
    }

    fn send_offloaded(&mut self, buf: Vec<u8>) -> Result<bool, NicError> {
        let hdr = buf
            .first_chunk::<VNET_HDR_LEN>()
            .and_then(VnetHdr::from_bytes)
            .filter(|_| self.offload)
            .ok_or_else(|| NicError::BadFrame("no virtio-net header".into()))?;
        let frames = crate::offload::finish(&buf[VNET_HDR_LEN..], &hdr);
        if frames.is_empty() {
            // As the kernel: a header that does not fit its frame is refused.
            return Err(NicError::BadFrame("virtio-net header does not fit".into()));
        }
        let mut all = true;
        for f in frames {
            all &= self.send(&f)?;
        }
        Ok(all)
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn stats(&self) -> NicStats {
        self.stats
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.rx.ready.as_fd())
    }

    fn prepare_wait(&mut self) {
        self.rx.ready.drain();
    }
}
