//! An in-memory pair of NICs: what one end sends, the other receives.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::{ETH_HEADER, Nic, NicError, NicStats};

#[derive(Debug, Default)]
struct Wire {
    frames: VecDeque<Vec<u8>>,
}

/// One end of an in-memory link.
#[derive(Debug)]
pub struct PipeNic {
    rx: Arc<Mutex<Wire>>,
    tx: Arc<Mutex<Wire>>,
    mtu: usize,
    capacity: usize,
    stats: NicStats,
}

fn lock(w: &Mutex<Wire>) -> std::sync::MutexGuard<'_, Wire> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PipeNic {
    /// Two connected ends with this IP MTU, each direction holding at most
    /// `capacity` frames in flight (more are dropped, like a full ring).
    pub fn pair(mtu: usize, capacity: usize) -> (PipeNic, PipeNic) {
        let a = Arc::new(Mutex::new(Wire::default()));
        let b = Arc::new(Mutex::new(Wire::default()));
        let end = |rx: &Arc<Mutex<Wire>>, tx: &Arc<Mutex<Wire>>| PipeNic {
            rx: rx.clone(),
            tx: tx.clone(),
            mtu,
            capacity: capacity.max(1),
            stats: NicStats::default(),
        };
        (end(&a, &b), end(&b, &a))
    }

    /// Puts raw bytes on this end's receive side as if the wire delivered them
    /// (for tests of hostile frames).
    pub fn inject(&self, frame: Vec<u8>) {
        lock(&self.rx).frames.push_back(frame);
    }
}

impl Nic for PipeNic {
    fn recv(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, NicError> {
        let mut w = lock(&self.rx);
        let mut n = 0;
        while n < max {
            let Some(f) = w.frames.pop_front() else { break };
            if f.len() < ETH_HEADER || f.len() > self.mtu + ETH_HEADER {
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
        if frame.len() < ETH_HEADER || frame.len() > self.mtu + ETH_HEADER {
            return Err(NicError::BadFrame(format!("{} bytes", frame.len())));
        }
        let mut w = lock(&self.tx);
        if w.frames.len() >= self.capacity {
            self.stats.tx_dropped_full += 1;
            return Ok(false);
        }
        w.frames.push_back(frame.to_vec());
        self.stats.tx_frames += 1;
        Ok(true)
    }

    fn rx_ready(&self) -> bool {
        !lock(&self.rx).frames.is_empty()
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn stats(&self) -> NicStats {
        self.stats
    }
}
