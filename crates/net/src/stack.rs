//! The TCP/IP stack: smoltcp over a NIC, with WireGuard in between by default.
//!
//! With WireGuard (the default) there are two smoltcp interfaces:
//! - the *wire* interface on the NIC (Ethernet, ARP/NDP, the underlay addresses),
//!   whose only socket is the WireGuard UDP port;
//! - the *tunnel* interface (IP medium, the `[Interface] Address`es), where the
//!   program's sockets live. Every packet it sends is encrypted for the peer whose
//!   AllowedIPs hold the destination, and only authenticated packets reach it.
//!
//! So nothing but WireGuard datagrams (and ARP/NDP) leaves the stack. Plaintext,
//! where the program's sockets sit on the wire interface itself, must be asked for
//! explicitly ([`Security::Plaintext`]).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::device::{TunDevice, ip_dst};
use crate::wg::{WgStats, WgTunnel};
use crate::wgconf::{Cidr, WgConfig};
use crate::{Nic, NicStats, SmolDevice};

/// Datagrams buffered in each direction of the WireGuard UDP socket.
const WG_UDP_PACKETS: usize = 2048;
/// Encrypted datagrams held while the UDP socket is full.
const WG_OUT_MAX: usize = 4096;
/// WireGuard's default MTU on a 1500-byte link.
pub const WG_DEFAULT_MTU: usize = 1420;

/// What protects the traffic.
#[derive(Debug, Clone)]
pub enum Security {
    /// Every packet is a WireGuard packet for one of the configured peers.
    WireGuard(WgConfig),
    /// No encryption: the program's packets go on the wire as they are. Only when
    /// the configuration says so.
    Plaintext,
}

/// How to set up a stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Our MAC address. `None`: the NIC's own (AF_XDP), else a random locally
    /// administered one.
    pub mac: Option<[u8; 6]>,
    /// Underlay addresses on the NIC (with their prefix).
    pub addresses: Vec<Cidr>,
    /// Default gateways on the underlay (one per family at most).
    pub gateways: Vec<IpAddr>,
    /// WireGuard (default) or plaintext.
    pub security: Security,
    /// Knobs for measuring what each optimisation gives.
    pub tuning: Tuning,
}

/// Knobs that switch the stack's optimisations off, one at a time (bench/reproduce
/// fig 5b); the defaults are the fast settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Frames taken from the NIC per receive (default 64). 1 switches batching
    /// off: one frame per receive, and every sent frame published to the NIC
    /// (the AF_XDP kick, the TAP write) on its own.
    pub batch: usize,
    /// Check the TCP/UDP/IP checksums of packets out of the WireGuard tunnel. Off
    /// by default: WireGuard authenticated the whole packet (AEAD), which is what
    /// a NIC's receive checksum offload would spare.
    pub verify_tunnel_checksums: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            batch: crate::device::RX_BATCH,
            verify_tunnel_checksums: false,
        }
    }
}

/// Errors setting up a stack.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The configuration cannot work.
    #[error("network configuration: {0}")]
    Config(String),
}

/// Counters of a stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackStats {
    /// The NIC's counters.
    pub nic: NicStats,
    /// WireGuard's counters (zero in plaintext mode).
    pub wg: WgStats,
    /// Encrypted datagrams dropped because the UDP socket stayed full.
    pub wg_out_dropped: u64,
    /// Packets from outside (the NIC, or out of the tunnel) for a loopback
    /// address, dropped: localhost is only reached from inside the stack.
    pub martians_dropped: u64,
}

struct Tunnel {
    iface: Interface,
    dev: TunDevice,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    wg: WgTunnel,
    /// Datagrams waiting for room in the UDP socket.
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    out_dropped: u64,
    /// Decrypted packets for a loopback address, dropped.
    martians: u64,
    next_tick: std::time::Instant,
    /// Our own tunnel addresses: packets to them come back in (loopback inside
    /// the stack) instead of going to WireGuard.
    own: Vec<IpAddr>,
}

/// The whole stack over one NIC.
pub struct Stack<N: Nic> {
    wire: Interface,
    dev: SmolDevice<N>,
    /// The wire's sockets: the WireGuard port, or the program's in plaintext mode.
    wire_sockets: SocketSet<'static>,
    tunnel: Option<Tunnel>,
    started: bool,
    /// After a poll that moved nothing: when the stack must be polled again if
    /// no frame arrives and no socket is used (inner `None`: only then). `None`:
    /// not known, poll.
    idle_until: Option<Option<std::time::Instant>>,
}

impl<N: Nic> std::fmt::Debug for Stack<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("nic", self.dev.nic())
            .field("wireguard", &self.tunnel.is_some())
            .finish()
    }
}

/// 127.0.0.1/8, and ::1 where `addrs` has IPv6, as far as smoltcp's 8 addresses
/// per interface leave room next to `addrs`.
fn localhost(addrs: &[Cidr]) -> Result<Vec<Cidr>, StackError> {
    let mut lo = vec![Cidr::parse("127.0.0.1/8").map_err(StackError::Config)?];
    if addrs.iter().any(|c| c.addr.is_ipv6()) {
        lo.push(Cidr::parse("::1/128").map_err(StackError::Config)?);
    }
    lo.truncate(8usize.saturating_sub(addrs.len()));
    Ok(lo)
}

fn smol_cidr(c: &Cidr) -> IpCidr {
    IpCidr::new(IpAddress::from(c.addr), c.prefix)
}

fn add_addresses(iface: &mut Interface, addrs: &[Cidr]) -> Result<(), StackError> {
    let mut full = false;
    iface.update_ip_addrs(|a| {
        for c in addrs {
            if a.push(smol_cidr(c)).is_err() {
                full = true;
            }
        }
    });
    if full {
        return Err(StackError::Config(
            "too many addresses on one interface (at most 8, localhost included)".into(),
        ));
    }
    Ok(())
}

fn add_gateway(iface: &mut Interface, gw: IpAddr) -> Result<(), StackError> {
    let r = match gw {
        IpAddr::V4(a) => iface.routes_mut().add_default_ipv4_route(a).map(|_| ()),
        IpAddr::V6(a) => iface.routes_mut().add_default_ipv6_route(a).map(|_| ()),
    };
    r.map_err(|_| StackError::Config("too many routes".into()))
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // If the host's randomness fails, smoltcp's sequence numbers fall back to a
    // fixed seed: still correct, only more guessable.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_ne_bytes(b)
}

impl<N: Nic> Stack<N> {
    /// Builds a stack over `nic`.
    pub fn new(nic: N, cfg: &StackConfig) -> Result<Self, StackError> {
        let mac = cfg.mac.or(nic.mac()).unwrap_or_else(|| {
            let r = random_u64().to_ne_bytes();
            // Locally administered, unicast.
            [(r[0] & 0xfc) | 0x02, r[1], r[2], r[3], r[4], r[5]]
        });
        let mut dev = SmolDevice::new(nic, cfg.tuning.batch);
        dev.set_own_mac(mac);
        let now = SmolInstant::now();
        let mut c = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        c.random_seed = random_u64();
        let mut wire = Interface::new(c, &mut dev, now);
        add_addresses(&mut wire, &cfg.addresses)?;
        for gw in &cfg.gateways {
            add_gateway(&mut wire, *gw)?;
        }
        let mut wire_sockets = SocketSet::new(vec![]);
        let tunnel = match &cfg.security {
            Security::Plaintext => {
                // Loopback inside the stack: the program's sockets live on the wire
                // interface here, and frames to our own addresses never reach the
                // NIC (`SmolDevice`).
                add_addresses(&mut wire, &localhost(&cfg.addresses)?)?;
                None
            }
            Security::WireGuard(wgc) => {
                if wgc.peers.is_empty() {
                    return Err(StackError::Config("WireGuard has no [Peer]".into()));
                }
                if wgc.interface.addresses.is_empty() {
                    return Err(StackError::Config(
                        "WireGuard [Interface] has no Address".into(),
                    ));
                }
                let wg = WgTunnel::new(wgc).map_err(StackError::Config)?;
                let mtu = wgc.interface.mtu.map_or(WG_DEFAULT_MTU, usize::from);
                // An encrypted packet adds 32 bytes of WireGuard, 8 of UDP and up to
                // 40 of IPv6 header; smoltcp does not fragment, so it must fit.
                if mtu < 1280 || mtu + 80 > dev.nic().mtu() {
                    return Err(StackError::Config(format!(
                        "WireGuard MTU {mtu} must be at least 1280 and at most the link MTU {} less 80",
                        dev.nic().mtu()
                    )));
                }
                let port = wgc
                    .interface
                    .listen_port
                    .unwrap_or(49152 + (random_u64() % 16384) as u16);
                let mut sock = udp::Socket::new(
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; WG_UDP_PACKETS],
                        vec![0; WG_UDP_PACKETS * 1500],
                    ),
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; WG_UDP_PACKETS],
                        vec![0; WG_UDP_PACKETS * 1500],
                    ),
                );
                sock.bind(port)
                    .map_err(|e| StackError::Config(format!("WireGuard port {port}: {e}")))?;
                let udp = wire_sockets.add(sock);
                let mut tdev = TunDevice {
                    mtu,
                    verify_checksums: cfg.tuning.verify_tunnel_checksums,
                    ..Default::default()
                };
                let mut tc = Config::new(HardwareAddress::Ip);
                tc.random_seed = random_u64();
                let mut iface = Interface::new(tc, &mut tdev, now);
                add_addresses(&mut iface, &wgc.interface.addresses)?;
                // Loopback inside the stack: localhost is ours too.
                // (smoltcp holds 8 addresses here: localhost only where there is room.)
                let lo = localhost(&wgc.interface.addresses)?;
                add_addresses(&mut iface, &lo)?;
                let own: Vec<IpAddr> = wgc
                    .interface
                    .addresses
                    .iter()
                    .chain(&lo)
                    .map(|c| c.addr)
                    .collect();
                // Destinations beyond the interface's own prefixes (AllowedIPs such
                // as 0.0.0.0/0) go out of the tunnel too: route them to ourselves;
                // on an IP-medium interface the next hop only picks the interface.
                let v4 = wgc.interface.addresses.iter().find(|c| c.addr.is_ipv4());
                let v6 = wgc.interface.addresses.iter().find(|c| c.addr.is_ipv6());
                for a in [v4, v6].into_iter().flatten() {
                    add_gateway(&mut iface, a.addr)?;
                }
                Some(Tunnel {
                    iface,
                    dev: tdev,
                    sockets: SocketSet::new(vec![]),
                    udp,
                    wg,
                    out: VecDeque::new(),
                    out_dropped: 0,
                    martians: 0,
                    next_tick: std::time::Instant::now(),
                    own,
                })
            }
        };
        Ok(Self {
            wire,
            dev,
            wire_sockets,
            tunnel,
            started: false,
            idle_until: None,
        })
    }

    /// The interface and socket set where the program's sockets live. Whoever
    /// takes them may have given a socket something to do: the next
    /// [`Stack::poll_needed`] says yes.
    pub fn app(&mut self) -> (&mut Interface, &mut SocketSet<'static>) {
        self.idle_until = None;
        match &mut self.tunnel {
            Some(t) => (&mut t.iface, &mut t.sockets),
            None => (&mut self.wire, &mut self.wire_sockets),
        }
    }

    /// Whether traffic is wrapped in WireGuard.
    pub fn is_wireguard(&self) -> bool {
        self.tunnel.is_some()
    }

    /// The NIC.
    pub fn nic(&self) -> &N {
        self.dev.nic()
    }

    /// The NIC, mutably (to prepare parking).
    pub fn nic_mut(&mut self) -> &mut N {
        self.dev.nic_mut()
    }

    /// The WireGuard tunnel, if any.
    pub fn wireguard(&self) -> Option<&WgTunnel> {
        self.tunnel.as_ref().map(|t| &t.wg)
    }

    /// Counters.
    pub fn stats(&self) -> StackStats {
        StackStats {
            nic: self.dev.nic().stats(),
            wg: self
                .tunnel
                .as_ref()
                .map(|t| t.wg.stats())
                .unwrap_or_default(),
            wg_out_dropped: self.tunnel.as_ref().map_or(0, |t| t.out_dropped),
            martians_dropped: self.dev.martians() + self.tunnel.as_ref().map_or(0, |t| t.martians),
        }
    }

    /// Moves everything that can move now: frames in, packets through WireGuard,
    /// sockets, frames out, and the timers. Returns whether anything happened
    /// (frames moved or a socket's state changed).
    pub fn poll(&mut self) -> bool {
        let changed = self.poll_all();
        self.idle_until = if changed {
            None
        } else {
            let now = std::time::Instant::now();
            Some(self.poll_delay().map(|d| now + d))
        };
        changed
    }

    /// How long the stack may sleep, as the last [`Stack::poll`] found it: zero
    /// after a poll that moved (or once a socket was taken), else the time to
    /// its earliest timer (`None`: no timer), without visiting the sockets
    /// again.
    pub fn idle_delay(&self) -> Option<std::time::Duration> {
        match self.idle_until {
            None => Some(std::time::Duration::ZERO),
            Some(due) => due.map(|d| d.saturating_duration_since(std::time::Instant::now())),
        }
    }

    /// Whether [`Stack::poll`] may move anything: false only after a poll that
    /// moved nothing, with no frame waiting, no socket taken through
    /// [`Stack::app`] since, and no timer due. A driver that spins asks this
    /// first: a poll visits every socket, this looks at the receive ring.
    pub fn poll_needed(&self) -> bool {
        match self.idle_until {
            None => true,
            Some(due) => {
                self.dev.has_pending()
                    || self.dev.nic().rx_ready()
                    || due.is_some_and(|d| std::time::Instant::now() >= d)
            }
        }
    }

    fn poll_all(&mut self) -> bool {
        let now = SmolInstant::now();
        let before = self.dev.nic().stats();
        let mut changed = self.wire.poll(now, &mut self.dev, &mut self.wire_sockets)
            == PollResult::SocketStateChanged;
        if let Some(t) = &mut self.tunnel {
            let Tunnel {
                iface,
                dev,
                sockets,
                udp,
                wg,
                out,
                out_dropped,
                martians,
                next_tick,
                own,
            } = t;
            let sock = self.wire_sockets.get_mut::<udp::Socket>(*udp);
            let mut net = |to: SocketAddr, d: &[u8]| {
                if out.len() >= WG_OUT_MAX {
                    *out_dropped += 1;
                } else {
                    out.push_back((to, d.to_vec()));
                }
            };
            if !self.started {
                self.started = true;
                wg.start(&mut net);
            }
            let mut inbound = 0;
            while let Ok((data, meta)) = sock.recv() {
                let from = SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port);
                wg.receive(from, data, &mut net, &mut |p: &[u8]| {
                    // Localhost is only reached from inside the stack.
                    if ip_dst(p).is_some_and(|d| d.is_loopback()) {
                        *martians += 1;
                    } else {
                        dev.rx.push_back(p.to_vec())
                    }
                });
                inbound += 1;
            }
            changed |= inbound > 0;
            changed |= iface.poll(now, dev, sockets) == PollResult::SocketStateChanged;
            while let Some(p) = dev.tx.pop_front() {
                if ip_dst(&p).is_some_and(|d| own.contains(&d) || d.is_loopback()) {
                    // To ourselves: straight back in, never on the wire.
                    dev.rx.push_back(p);
                } else {
                    wg.send(&p, &mut net);
                }
                changed = true;
            }
            let wall = std::time::Instant::now();
            if wall >= *next_tick {
                *next_tick = wg.tick(wall, &mut net);
            }
            while let Some((to, d)) = out.front() {
                let ep = IpEndpoint::new(IpAddress::from(to.ip()), to.port());
                match sock.send_slice(d, ep) {
                    Ok(()) => {
                        out.pop_front();
                    }
                    Err(udp::SendError::BufferFull) => break,
                    Err(e) => {
                        tracing::debug!("wireguard datagram to {to} not sent: {e}");
                        *out_dropped += 1;
                        out.pop_front();
                    }
                }
            }
            changed |= self.wire.poll(now, &mut self.dev, &mut self.wire_sockets)
                == PollResult::SocketStateChanged;
        }
        self.dev.nic_mut().flush();
        let after = self.dev.nic().stats();
        changed
            || self.dev.has_pending()
            || after.rx_frames != before.rx_frames
            || after.tx_frames != before.tx_frames
            || after.rx_dropped_bad != before.rx_dropped_bad
    }

    /// How long the stack may sleep before it must be polled again (`None`: until
    /// a frame arrives or a socket is used).
    pub fn poll_delay(&mut self) -> Option<std::time::Duration> {
        let now = SmolInstant::now();
        let mut d = self
            .wire
            .poll_delay(now, &self.wire_sockets)
            .map(std::time::Duration::from);
        if self.dev.has_pending() {
            // Frames looped back to ourselves wait to be received.
            return Some(std::time::Duration::ZERO);
        }
        if let Some(t) = &mut self.tunnel {
            let inner = t
                .iface
                .poll_delay(now, &t.sockets)
                .map(std::time::Duration::from);
            let tick = t
                .next_tick
                .saturating_duration_since(std::time::Instant::now());
            let pending = if t.out.is_empty() && t.dev.rx.is_empty() && t.dev.tx.is_empty() {
                tick
            } else {
                std::time::Duration::ZERO
            };
            d = [d, inner, Some(pending)].into_iter().flatten().min();
        }
        d
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::PipeNic;
    use smoltcp::socket::tcp;

    fn plain(nic: PipeNic, last: u8) -> Stack<PipeNic> {
        let cfg = StackConfig {
            mac: Some([2, 0, 0, 0, 1, last]),
            addresses: vec![Cidr::parse(&format!("10.1.0.{last}/24")).unwrap()],
            gateways: vec![],
            security: Security::Plaintext,
            tuning: Tuning::default(),
        };
        Stack::new(nic, &cfg).unwrap()
    }

    #[test]
    fn an_idle_stack_needs_a_poll_only_for_a_frame_a_socket_or_a_timer() {
        let (na, nb) = PipeNic::pair(1500, 64).unwrap();
        let (mut a, mut b) = (plain(na, 1), plain(nb, 2));
        assert!(a.poll_needed(), "never polled");
        while a.poll() {}
        assert!(!a.poll_needed(), "idle, nothing waiting");
        // A socket taken by the program: poll.
        let (iface, sockets) = a.app();
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        s.connect(iface.context(), (IpAddress::v4(10, 1, 0, 2), 7), 49152)
            .unwrap();
        sockets.add(s);
        assert!(a.poll_needed(), "a socket was used");
        while b.poll() {}
        assert!(!b.poll_needed());
        // a's poll sends (ARP, then the SYN): a frame waits at b, which must poll.
        a.poll();
        assert!(b.poll_needed(), "a frame is waiting");
        while b.poll() {}
        assert!(a.poll_needed(), "b's answer is waiting");
        // The connection attempt keeps a retransmit timer: an idle stack with
        // a timer pending reports it due once it has passed.
        while a.poll() {}
        let due = a.idle_until.unwrap();
        assert!(due.is_some(), "a SYN in flight has a timer");
    }
}
