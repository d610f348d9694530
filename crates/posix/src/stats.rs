//! What the program did through the stack (`--stats`): counts of calls and
//! bytes, and the report printed at exit.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Runtime, sock};

/// Counts of what the program did through the stack.
#[derive(Debug, Default)]
pub struct Stats {
    /// Files opened on sealed mounts.
    pub opens: AtomicU64,
    /// Reads (read, pread, readv, preadv).
    pub reads: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Writes.
    pub writes: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// fsync, fdatasync, sync.
    pub syncs: AtomicU64,
    /// Other calls on sealed files (stat, lock, truncate, directory calls).
    pub meta: AtomicU64,
    /// Host paths refused by the policy.
    pub refused: AtomicU64,
    /// Connections accepted.
    pub accepts: AtomicU64,
    /// Connections started.
    pub connects: AtomicU64,
    /// Socket sends.
    pub sends: AtomicU64,
    /// Bytes sent.
    pub sent_bytes: AtomicU64,
    /// Socket receives.
    pub recvs: AtomicU64,
    /// Bytes received.
    pub received_bytes: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Runtime {
    /// The stats report printed at exit.
    pub fn report(&self) -> String {
        let s = &self.stats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ios = g(&s.reads) + g(&s.writes) + g(&s.syncs) + g(&s.sends) + g(&s.recvs);
        let hc = rktio_sys::HostCalls::snapshot();
        let total = hc.total();
        let mut out = format!(
            "rktio stats: files: {} opened, {} reads ({} bytes), {} writes ({} bytes), {} syncs, {} other calls; {} host paths refused\n",
            g(&s.opens),
            g(&s.reads),
            g(&s.read_bytes),
            g(&s.writes),
            g(&s.write_bytes),
            g(&s.syncs),
            g(&s.meta),
            g(&s.refused)
        );
        if g(&s.sends) + g(&s.recvs) + g(&s.accepts) + g(&s.connects) > 0 {
            out.push_str(&format!(
                "rktio stats: sockets: {} accepted, {} connects, {} sends ({} bytes), {} receives ({} bytes)\n",
                g(&s.accepts),
                g(&s.connects),
                g(&s.sends),
                g(&s.sent_bytes),
                g(&s.recvs),
                g(&s.received_bytes)
            ));
            if let Some(Some(net)) = self.net.get() {
                let st = net.stats();
                out.push_str(&format!(
                    "rktio stats: network: {}; frames in {} out {}, WireGuard packets in {} out {}\n",
                    sock::NIC.get().map(String::as_str).unwrap_or("?"),
                    st.nic.rx_frames,
                    st.nic.tx_frames,
                    st.wg.rx_packets,
                    st.wg.tx_packets
                ));
            }
        }
        out.push_str(&format!("rktio stats: host calls by the stack: {hc}\n"));
        if ios > 0 {
            out.push_str(&format!(
                "rktio stats: {:.3} host calls per I/O ({total} for {ios} I/Os)\n",
                total as f64 / ios as f64
            ));
        }
        out
    }
}
