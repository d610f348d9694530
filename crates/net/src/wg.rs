//! WireGuard: the peers of one interface over boringtun's sans-IO `noise::Tunn`.
//!
//! [`WgTunnel`] turns IP packets into WireGuard datagrams for the peer whose
//! AllowedIPs hold the destination (cryptokey routing), and datagrams from the wire
//! back into IP packets, which are delivered only if they authenticated and their
//! source address is one the sending peer is allowed to use. Everything it reads
//! comes from the wire, so every failure is a counted drop, never a panic.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::wgconf::{Cidr, WgConfig};

/// Handshakes accepted per second before boringtun answers with cookies
/// (WireGuard's under-load mode).
const HANDSHAKES_PER_SEC: u64 = 100;

/// How often the WireGuard timers run (handshake retries, rekey, keepalives).
pub const TIMER_TICK: Duration = Duration::from_millis(100);

/// Largest datagram or packet handled (an IP packet is at most 64 KiB).
const SCRATCH: usize = 65_536 + 64;

/// Counters of a WireGuard interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WgStats {
    /// IP packets delivered from authenticated datagrams.
    pub rx_packets: u64,
    /// IP packets sent encrypted.
    pub tx_packets: u64,
    /// Handshake and cookie messages sent.
    pub tx_control: u64,
    /// Datagrams dropped: malformed, failed authentication, replayed, rate-limited
    /// or from an unknown peer.
    pub rx_dropped_bad: u64,
    /// Authenticated packets dropped because their source address is not in the
    /// sending peer's AllowedIPs.
    pub rx_dropped_source: u64,
    /// Packets dropped because no peer's AllowedIPs holds the destination.
    pub tx_dropped_no_route: u64,
    /// Packets dropped because the peer has no known endpoint yet.
    pub tx_dropped_no_endpoint: u64,
}

struct WgPeer {
    tunn: Tunn,
    public: [u8; 32],
    endpoint: Option<SocketAddr>,
    allowed: Vec<Cidr>,
}

/// The WireGuard side of one interface: our key and our peers.
pub struct WgTunnel {
    private: StaticSecret,
    public: PublicKey,
    peers: Vec<WgPeer>,
    limiter: Arc<RateLimiter>,
    scratch: Vec<u8>,
    last_tick: Instant,
    last_reset: Instant,
    stats: WgStats,
}

impl std::fmt::Debug for WgTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgTunnel")
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl WgTunnel {
    /// Builds the tunnel of a configuration.
    pub fn new(cfg: &WgConfig) -> Result<Self, String> {
        if cfg.peers.len() >= 1 << 24 {
            return Err("too many peers".into());
        }
        let private = StaticSecret::from(cfg.interface.private_key.0);
        let public = PublicKey::from(&private);
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKES_PER_SEC));
        let mut peers = Vec::with_capacity(cfg.peers.len());
        for (i, p) in cfg.peers.iter().enumerate() {
            if p.public_key.0 == *public.as_bytes() {
                return Err("a [Peer] has this interface's own public key".into());
            }
            if peers.iter().any(|q: &WgPeer| q.public == p.public_key.0) {
                return Err(format!("peer {} appears twice", p.public_key.to_base64()));
            }
            let tunn = Tunn::new(
                private.clone(),
                PublicKey::from(p.public_key.0),
                p.preshared_key.as_ref().map(|k| k.0),
                p.persistent_keepalive,
                i as u32,
                Some(limiter.clone()),
            );
            peers.push(WgPeer {
                tunn,
                public: p.public_key.0,
                endpoint: p.endpoint,
                allowed: p.allowed_ips.clone(),
            });
        }
        let now = Instant::now();
        Ok(Self {
            private,
            public,
            peers,
            limiter,
            scratch: vec![0; SCRATCH],
            last_tick: now,
            last_reset: now,
            stats: WgStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> WgStats {
        self.stats
    }

    /// The current endpoint of each peer (it follows the peer when it roams).
    pub fn endpoints(&self) -> Vec<Option<SocketAddr>> {
        self.peers.iter().map(|p| p.endpoint).collect()
    }

    /// Whether the first peer has a session (a completed handshake).
    pub fn has_session(&self, peer: usize) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.tunn.time_since_last_handshake().is_some())
    }

    /// Encrypts one IP packet for the peer that routes its destination and hands the
    /// datagram (or a handshake initiation, the packet queued until it completes)
    /// to `net`.
    pub fn send(&mut self, packet: &[u8], net: &mut impl FnMut(SocketAddr, &[u8])) {
        let Some(dst) = Tunn::dst_address(packet) else {
            self.stats.tx_dropped_no_route += 1;
            return;
        };
        let Some(i) = route(&self.peers, dst) else {
            self.stats.tx_dropped_no_route += 1;
            return;
        };
        if packet.len() + 32 > self.scratch.len() {
            self.stats.tx_dropped_no_route += 1;
            return;
        }
        let peer = &mut self.peers[i];
        let Some(to) = peer.endpoint else {
            self.stats.tx_dropped_no_endpoint += 1;
            return;
        };
        match peer.tunn.encapsulate(packet, &mut self.scratch) {
            TunnResult::WriteToNetwork(d) => {
                if d.first() == Some(&4) {
                    self.stats.tx_packets += 1;
                } else {
                    self.stats.tx_control += 1;
                }
                net(to, d);
            }
            TunnResult::Err(e) => tracing::debug!("wireguard encapsulate: {e:?}"),
            _ => {}
        }
    }

    /// Handles one datagram from `from`: IP packets that authenticate go to
    /// `tunnel`, replies (handshake responses, cookies, queued packets) to `net`.
    pub fn receive(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        net: &mut impl FnMut(SocketAddr, &[u8]),
        tunnel: &mut impl FnMut(&[u8]),
    ) {
        let Some(i) = self.peer_of(from, datagram, net) else {
            return;
        };
        let peer = &mut self.peers[i];
        let mut first = true;
        loop {
            let input: &[u8] = if first { datagram } else { &[] };
            let r = peer
                .tunn
                .decapsulate(Some(from.ip()), input, &mut self.scratch);
            match r {
                TunnResult::Done => {
                    if first {
                        // An authenticated keepalive or handshake message.
                        peer.endpoint = Some(from);
                    }
                    break;
                }
                TunnResult::Err(e) => {
                    if first {
                        self.stats.rx_dropped_bad += 1;
                        tracing::debug!("wireguard datagram from {from} dropped: {e:?}");
                    }
                    break;
                }
                TunnResult::WriteToNetwork(d) => {
                    // A handshake reply, or a packet queued while it was pending.
                    peer.endpoint = Some(from);
                    if d.first() == Some(&4) {
                        self.stats.tx_packets += 1;
                    } else {
                        self.stats.tx_control += 1;
                    }
                    net(from, d);
                    first = false;
                }
                TunnResult::WriteToTunnelV4(p, src) => {
                    peer.endpoint = Some(from);
                    deliver(peer, &mut self.stats, p, IpAddr::V4(src), tunnel);
                    break;
                }
                TunnResult::WriteToTunnelV6(p, src) => {
                    peer.endpoint = Some(from);
                    deliver(peer, &mut self.stats, p, IpAddr::V6(src), tunnel);
                    break;
                }
            }
        }
    }

    /// Runs the WireGuard timers (at most every [`TIMER_TICK`]): handshake retries,
    /// rekeying, keepalives, session expiry. Returns when it should run next.
    pub fn tick(&mut self, now: Instant, net: &mut impl FnMut(SocketAddr, &[u8])) -> Instant {
        if now.duration_since(self.last_reset) >= Duration::from_secs(1) {
            self.limiter.reset_count();
            self.last_reset = now;
        }
        if now.duration_since(self.last_tick) >= TIMER_TICK {
            self.last_tick = now;
            for peer in &mut self.peers {
                match peer.tunn.update_timers(&mut self.scratch) {
                    TunnResult::WriteToNetwork(d) => {
                        if let Some(to) = peer.endpoint {
                            self.stats.tx_control += 1;
                            net(to, d);
                        }
                    }
                    TunnResult::Err(WireGuardError::ConnectionExpired) => {}
                    TunnResult::Err(e) => tracing::debug!("wireguard timers: {e:?}"),
                    _ => {}
                }
            }
        }
        self.last_tick + TIMER_TICK
    }

    /// Starts handshakes with the peers that have an endpoint and a persistent
    /// keepalive (as `wg` does when such a peer is configured).
    pub fn start(&mut self, net: &mut impl FnMut(SocketAddr, &[u8])) {
        for peer in &mut self.peers {
            let Some(to) = peer.endpoint else { continue };
            if peer.tunn.persistent_keepalive().is_none() {
                continue;
            }
            if let TunnResult::WriteToNetwork(d) = peer
                .tunn
                .format_handshake_initiation(&mut self.scratch, false)
            {
                self.stats.tx_control += 1;
                net(to, d);
            }
        }
    }

    /// Finds the peer a datagram belongs to: by our receiver index for responses,
    /// cookies and data, by the initiator's static key for handshake initiations
    /// (after the rate limiter, which may answer with a cookie instead).
    fn peer_of(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        net: &mut impl FnMut(SocketAddr, &[u8]),
    ) -> Option<usize> {
        let packet = match self
            .limiter
            .verify_packet(Some(from.ip()), datagram, &mut self.scratch)
        {
            Ok(p) => p,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                self.stats.tx_control += 1;
                net(from, cookie);
                return None;
            }
            Err(_) => {
                self.stats.rx_dropped_bad += 1;
                return None;
            }
        };
        let found = match packet {
            Packet::HandshakeInit(init) => parse_handshake_anon(&self.private, &self.public, &init)
                .ok()
                .and_then(|h| {
                    self.peers
                        .iter()
                        .position(|p| p.public == h.peer_static_public)
                }),
            Packet::HandshakeResponse(r) => self.by_index(r.receiver_idx),
            Packet::PacketCookieReply(c) => self.by_index(c.receiver_idx),
            Packet::PacketData(d) => self.by_index(d.receiver_idx),
        };
        if found.is_none() {
            self.stats.rx_dropped_bad += 1;
        }
        found
    }

    fn by_index(&self, receiver_idx: u32) -> Option<usize> {
        let i = (receiver_idx >> 8) as usize;
        (i < self.peers.len()).then_some(i)
    }
}

fn deliver(
    peer: &WgPeer,
    stats: &mut WgStats,
    packet: &[u8],
    src: IpAddr,
    tunnel: &mut impl FnMut(&[u8]),
) {
    if peer.allowed.iter().any(|c| c.contains(src)) {
        stats.rx_packets += 1;
        tunnel(packet);
    } else {
        stats.rx_dropped_source += 1;
        tracing::debug!("wireguard: peer sent from {src}, outside its AllowedIPs");
    }
}

/// The peer whose AllowedIPs hold `dst` with the longest prefix.
fn route(peers: &[WgPeer], dst: IpAddr) -> Option<usize> {
    let mut best: Option<(usize, u8)> = None;
    for (i, p) in peers.iter().enumerate() {
        for c in &p.allowed {
            if c.contains(dst) && best.is_none_or(|(_, len)| c.prefix > len) {
                best = Some((i, c.prefix));
            }
        }
    }
    best.map(|(i, _)| i)
}
