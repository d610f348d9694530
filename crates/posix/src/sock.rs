//! Internet sockets on rkt-io's network stack (readiness and epoll are in
//! `epoll`).
//!
//! The stack's sockets are always non-blocking underneath; a blocking call waits
//! here, parked on a per-thread notifier the network driver fires when the stack
//! moves (`Net::watch`), so no lock is held while waiting and other threads can
//! use the same socket.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libc::{EAGAIN, EINVAL, ENOTCONN, ENOTSOCK};
use rktio_net::{
    Cidr, Net, Nic, Notifier, PollConfig, Security, StackConfig, TapNic, TcpListener, TcpOptions,
    TcpStream, Tuning, UdpSocket, WgConfig, XdpConfig, XdpMode, XdpNic,
};

use crate::config::{NetConfig, NicName};
use crate::{Desc, Kind, Runtime, SysResult, bump};

/// A socket address as the POSIX edge passes it.
pub type SockAddr = SocketAddr;

/// A socket of ours.
#[derive(Debug)]
pub struct SockDesc {
    pub(crate) family: i32,
    pub(crate) dgram: bool,
    pub(crate) st: Mutex<SockState>,
    /// Bumped each time a send finds no room (EAGAIN or a short write): an
    /// edge-triggered EPOLLOUT is due when room comes back, even if no epoll_wait
    /// saw the socket unwritable in between.
    pub(crate) send_blocked: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
pub(crate) enum SockKind {
    /// Made, maybe bound, not yet listening or connected.
    Fresh,
    /// Shared by an AF_INET and an AF_INET6 socket listening on one port.
    Listening(Arc<Mutex<TcpListener>>),
    Stream(TcpStream),
    Udp(UdpSocket),
}

#[derive(Debug)]
pub(crate) struct SockState {
    pub(crate) kind: SockKind,
    pub(crate) opts: TcpOptions,
    pub(crate) bound: Option<SocketAddr>,
    /// A UDP socket's connect(2) peer.
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) rcvtimeo: Option<Duration>,
    pub(crate) sndtimeo: Option<Duration>,
    pub(crate) reuseaddr: bool,
    v6only: bool,
    pub(crate) linger: (i32, i32),
    /// A non-blocking connect is under way (EALREADY on another connect).
    pub(crate) connecting: bool,
}

thread_local! {
    static WAKER: RefCell<Option<Arc<Notifier>>> = const { RefCell::new(None) };
}

/// This thread's notifier (made at first use).
pub(crate) fn thread_waker() -> SysResult<Arc<Notifier>> {
    WAKER.with(|w| {
        let mut w = w.borrow_mut();
        if let Some(n) = &*w {
            return Ok(n.clone());
        }
        let n = Arc::new(Notifier::new().map_err(|e| rktio_sys::errno_of(&e.source))?);
        *w = Some(n.clone());
        Ok(n)
    })
}

fn io_errno(e: &std::io::Error) -> i32 {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    match e.kind() {
        ErrorKind::WouldBlock => EAGAIN,
        ErrorKind::ConnectionRefused => libc::ECONNREFUSED,
        ErrorKind::ConnectionReset => libc::ECONNRESET,
        ErrorKind::ConnectionAborted => libc::ECONNABORTED,
        ErrorKind::NotConnected => ENOTCONN,
        ErrorKind::AddrInUse => libc::EADDRINUSE,
        ErrorKind::AddrNotAvailable => libc::EADDRNOTAVAIL,
        ErrorKind::BrokenPipe => libc::EPIPE,
        ErrorKind::TimedOut => libc::ETIMEDOUT,
        ErrorKind::InvalidInput => EINVAL,
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => libc::ENETUNREACH,
        _ => libc::EIO,
    }
}

/// What the network runs on, for the stats report (set when it starts).
pub static NIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Starts the network stack a `[net]` section describes.
pub fn start_net(n: &NetConfig, spin: Duration) -> Result<Net, String> {
    let security = if n.plaintext {
        Security::Plaintext
    } else {
        let p = n
            .wireguard
            .as_ref()
            .ok_or("[net]: no wireguard file and not plaintext")?;
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        Security::WireGuard(WgConfig::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?)
    };
    let mut addresses = Vec::new();
    for a in &n.address {
        addresses.push(Cidr::parse(a).map_err(|e| format!("[net] address {a}: {e}"))?);
    }
    let mut gateways = Vec::new();
    for g in &n.gateway {
        gateways.push(
            g.parse::<IpAddr>()
                .map_err(|e| format!("[net] gateway {g}: {e}"))?,
        );
    }
    let mtu = 1500;
    let xdp = XdpConfig {
        zero_copy: n.zero_copy,
        offload: n.offload,
        ..XdpConfig::default()
    };
    let batch = n.batch.unwrap_or(Tuning::default().batch);
    let (nic, desc): (Box<dyn Nic>, String) = match n.backend {
        NicName::Tap => (
            Box::new(
                TapNic::open(&n.interface, mtu)
                    .map_err(|e| format!("[net] tap {}: {e}", n.interface))?,
            ),
            format!("tap {}", n.interface),
        ),
        NicName::Xdp => {
            let x = match &n.netns {
                Some(ns) => XdpNic::open_in_netns(ns, &n.interface, mtu, xdp),
                None => XdpNic::open(&n.interface, mtu, xdp),
            }
            .map_err(|e| format!("[net] xdp {}: {e}", n.interface))?;
            let mode = match x.mode() {
                XdpMode::ZeroCopy => "zero-copy",
                XdpMode::Copy => "copy",
            };
            let tx = if x.offloading() {
                "sends through AF_PACKET with TSO"
            } else {
                "sends through the tx ring"
            };
            let d = format!("xdp on {} ({mode} mode, {tx})", n.interface);
            (Box::new(x), d)
        }
    };
    let _ = NIC.set(format!(
        "{desc}, batch {batch}, {}",
        if n.plaintext {
            "plaintext (no tunnel)"
        } else if n.verify_tunnel_checksums {
            "WireGuard, tunnel checksums verified"
        } else {
            "WireGuard, tunnel checksums skipped (AEAD)"
        }
    ));
    Net::start(
        nic,
        &StackConfig {
            mac: None,
            addresses,
            gateways,
            security,
            tuning: Tuning {
                batch,
                verify_tunnel_checksums: n.verify_tunnel_checksums,
            },
        },
        PollConfig {
            spin,
            ..PollConfig::default()
        },
    )
    .map_err(|e| format!("[net]: {e}"))
}

pub(crate) fn lock(s: &SockDesc) -> MutexGuard<'_, SockState> {
    s.st.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A UDP socket of the stack on `port` (0: ephemeral) of `ip` (`None` or
/// unspecified: every address), non-blocking underneath.
fn udp_bind(net: &Net, ip: Option<IpAddr>, port: u16) -> SysResult<UdpSocket> {
    let mut u = net.udp_bind_on(ip, port).map_err(|e| io_errno(&e))?;
    u.set_nonblocking(true);
    Ok(u)
}

pub(crate) fn lock_l(l: &Mutex<TcpListener>) -> MutexGuard<'_, TcpListener> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn any_addr(family: i32, port: u16) -> SocketAddr {
    if family == libc::AF_INET6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    }
}

/// What `recv` got: bytes and, for a datagram, who sent it.
pub type Received = (usize, Option<SocketAddr>);

impl Runtime {
    pub(crate) fn net(&self) -> SysResult<&Net> {
        let Some(cfg) = &self.net_cfg else {
            return Err(libc::EACCES);
        };
        let mut started = false;
        let net = self
            .net
            .get_or_init(
                || match start_net(cfg, Duration::from_micros(self.spin_us)) {
                    Ok(n) => {
                        started = true;
                        Some(n)
                    }
                    Err(e) => {
                        eprintln!("rktio: cannot start the network: {e}");
                        None
                    }
                },
            )
            .as_ref()
            .ok_or(libc::EIO);
        if started {
            // A thread may wait on an epoll since before the network was up
            // (Go's runtime waits on its one epoll from the start), unwatched:
            // its waker brings it round to watch the network from now on.
            for d in self.fds().values() {
                if let Kind::Epoll(e) = &d.kind {
                    e.waker.notify();
                }
            }
        }
        net
    }

    fn sock(&self, fd: RawFd) -> Option<SysResult<(Arc<Desc>, &Net)>> {
        let d = self.desc(fd)?;
        if let Err(e) = self.alive() {
            return Some(Err(e));
        }
        if !matches!(d.kind, Kind::Sock(_)) {
            return Some(Err(ENOTSOCK));
        }
        Some(self.net().map(|n| (d, n)))
    }

    fn nonblocking(d: &Desc, flags: i32) -> bool {
        d.status.load(Ordering::Relaxed) & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0
    }

    /// Waits until `ready()` holds, the deadline passes (EAGAIN) or a signal
    /// comes (EINTR).
    fn wait_net(
        &self,
        net: &Net,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> SysResult<()> {
        let w = thread_waker()?;
        let _watch = net.watch(&w);
        loop {
            if ready() {
                return Ok(());
            }
            let t = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(EAGAIN);
                    }
                    d - now
                }
                None => Duration::from_secs(1),
            };
            let mut fds = [(w.as_fd().as_raw_fd(), libc::POLLIN, 0)];
            rktio_sys::poll_fds(&mut fds, Some(t))?;
            w.drain();
        }
    }

    /// socket(2) for AF_INET/AF_INET6 stream and datagram sockets. Other
    /// families (AF_UNIX, netlink) are the host's. Without `[net]` internet
    /// sockets are refused (they would leave in the clear).
    pub fn socket(&self, domain: i32, ty: i32, proto: i32) -> Option<SysResult<RawFd>> {
        if domain != libc::AF_INET && domain != libc::AF_INET6 {
            return None;
        }
        Some((|| {
            self.alive()?;
            let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            let dgram = match (base, proto) {
                (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => false,
                (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => true,
                (libc::SOCK_RAW, _) => return Err(libc::EPERM),
                _ => return Err(libc::EPROTONOSUPPORT),
            };
            if self.net_cfg.is_none() {
                if self.report_once(b"socket") {
                    eprintln!(
                        "rktio: refused an internet socket: rktio.toml has no [net], and host sockets would carry the program's data in the clear"
                    );
                }
                return Err(libc::EACCES);
            }
            self.net()?;
            let slot = rktio_sys::reserve_slot(ty & libc::SOCK_CLOEXEC != 0)
                .map_err(|e| rktio_sys::errno_of(&e.source))?;
            let status = libc::O_RDWR | (ty & libc::SOCK_NONBLOCK);
            let d = self.new_desc(
                Kind::Sock(SockDesc {
                    send_blocked: std::sync::atomic::AtomicU64::new(0),
                    family: domain,
                    dgram,
                    st: Mutex::new(SockState {
                        kind: SockKind::Fresh,
                        opts: TcpOptions::default(),
                        bound: None,
                        peer: None,
                        rcvtimeo: None,
                        sndtimeo: None,
                        reuseaddr: false,
                        v6only: false,
                        linger: (0, 0),
                        connecting: false,
                    }),
                }),
                status,
            );
            self.insert(slot, d);
            Ok(slot)
        })())
    }

    /// bind(2): remembers the address (TCP listens on it at listen(2); UDP binds
    /// at once). An address that is not the stack's is EADDRNOTAVAIL.
    pub fn bind(&self, fd: RawFd, addr: SocketAddr) -> Option<SysResult<()>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, net)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let mut st = lock(s);
            if !matches!(st.kind, SockKind::Fresh) || st.bound.is_some() {
                return Err(EINVAL);
            }
            let ip = addr.ip().to_canonical();
            if !ip.is_unspecified() && !net.is_local_addr(ip) {
                return Err(libc::EADDRNOTAVAIL);
            }
            if s.dgram {
                let u = udp_bind(net, Some(addr.ip()), addr.port())?;
                st.bound = Some(SocketAddr::new(addr.ip(), u.port()));
                st.kind = SockKind::Udp(u);
            } else {
                st.bound = Some(addr);
            }
            Ok(())
        }))
    }

    /// listen(2).
    pub fn listen(&self, fd: RawFd, backlog: i32) -> Option<SysResult<()>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, net)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            if s.dgram {
                return Err(libc::EOPNOTSUPP);
            }
            let mut st = lock(s);
            match st.kind {
                SockKind::Listening(_) => return Ok(()),
                SockKind::Fresh => {}
                _ => return Err(EINVAL),
            }
            let port = st.bound.map_or(0, |a| a.port());
            let backlog = usize::try_from(backlog.max(1)).unwrap_or(1);
            let mut shared = self
                .listeners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A socket bound to one address listens there alone.
            let ip = st
                .bound
                .map(|a| a.ip())
                .filter(|ip| !ip.to_canonical().is_unspecified());
            if let Some(ip) = ip {
                let mut l = net
                    .tcp_listen_on(Some(ip), port, backlog, st.opts)
                    .map_err(|e| io_errno(&e))?;
                l.set_nonblocking(true);
                st.bound = Some(SocketAddr::new(ip, l.port()));
                st.kind = SockKind::Listening(Arc::new(Mutex::new(l)));
                return Ok(());
            }
            // The stack listens on every address of both families at once: an
            // AF_INET and an AF_INET6 socket on one port (what servers open with
            // IPV6_V6ONLY) share the listener.
            let l = match shared.get(&port).and_then(|(fam, w)| {
                if port != 0 && *fam != s.family {
                    w.upgrade()
                } else {
                    None
                }
            }) {
                Some(l) => l,
                None => {
                    let mut l = net
                        .tcp_listen(port, backlog, st.opts)
                        .map_err(|e| io_errno(&e))?;
                    l.set_nonblocking(true);
                    let l = Arc::new(Mutex::new(l));
                    shared.retain(|_, (_, w)| w.strong_count() > 0);
                    shared.insert(lock_l(&l).port(), (s.family, Arc::downgrade(&l)));
                    l
                }
            };
            let ip = st.bound.map_or(any_addr(s.family, 0).ip(), |a| a.ip());
            st.bound = Some(SocketAddr::new(ip, lock_l(&l).port()));
            st.kind = SockKind::Listening(l);
            Ok(())
        }))
    }

    /// accept(2)/accept4(2) (`flags`: SOCK_NONBLOCK, SOCK_CLOEXEC).
    pub fn accept(&self, fd: RawFd, flags: i32) -> Option<SysResult<(RawFd, SocketAddr)>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, net)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let nb = Self::nonblocking(&d, 0);
            let timeout = lock(s).rcvtimeo;
            let deadline = timeout.map(|t| Instant::now() + t);
            loop {
                let got = {
                    let mut st = lock(s);
                    let SockKind::Listening(l) = &mut st.kind else {
                        return Err(EINVAL);
                    };
                    let r = lock_l(l).accept();
                    match r {
                        Ok(x) => Some(x),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                        Err(e) => return Err(io_errno(&e)),
                    }
                };
                if let Some((mut stream, from)) = got {
                    stream.set_nonblocking(true);
                    let slot = rktio_sys::reserve_slot(flags & libc::SOCK_CLOEXEC != 0)
                        .map_err(|e| rktio_sys::errno_of(&e.source))?;
                    let opts = lock(s).opts;
                    let nd = self.new_desc(
                        Kind::Sock(SockDesc {
                            send_blocked: std::sync::atomic::AtomicU64::new(0),
                            family: s.family,
                            dgram: false,
                            st: Mutex::new(SockState {
                                kind: SockKind::Stream(stream),
                                opts,
                                bound: None,
                                peer: None,
                                rcvtimeo: None,
                                sndtimeo: None,
                                reuseaddr: false,
                                v6only: false,
                                linger: (0, 0),
                                connecting: false,
                            }),
                        }),
                        libc::O_RDWR | (flags & libc::SOCK_NONBLOCK),
                    );
                    self.insert(slot, nd);
                    bump(&self.stats.accepts, 1);
                    return Ok((slot, map_family(s.family, from)));
                }
                if nb {
                    return Err(EAGAIN);
                }
                self.wait_net(
                    net,
                    deadline,
                    || matches!(&lock(s).kind, SockKind::Listening(l) if lock_l(l).acceptable()),
                )?;
            }
        }))
    }

    /// connect(2): TCP starts the handshake (EINPROGRESS when non-blocking, then
    /// SO_ERROR tells); UDP remembers the peer.
    pub fn connect(&self, fd: RawFd, to: SocketAddr) -> Option<SysResult<()>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, net)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let to = unmap(to);
            if s.dgram {
                let mut st = lock(s);
                if matches!(st.kind, SockKind::Fresh) {
                    st.kind = SockKind::Udp(udp_bind(net, None, 0)?);
                }
                st.peer = Some(to);
                return Ok(());
            }
            {
                let mut st = lock(s);
                match &st.kind {
                    SockKind::Fresh => {}
                    SockKind::Stream(t) => {
                        return match t.connect_result() {
                            None => Err(libc::EALREADY),
                            Some(Ok(())) if st.connecting => {
                                st.connecting = false;
                                Ok(())
                            }
                            Some(Ok(())) => Err(libc::EISCONN),
                            Some(Err(e)) => Err(io_errno(&e)),
                        };
                    }
                    _ => return Err(EINVAL),
                }
                let mut t = net
                    .tcp_connect_start(to, st.opts)
                    .map_err(|e| io_errno(&e))?;
                t.set_nonblocking(true);
                st.kind = SockKind::Stream(t);
                st.connecting = true;
            }
            bump(&self.stats.connects, 1);
            if Self::nonblocking(&d, 0) {
                return Err(libc::EINPROGRESS);
            }
            let deadline = Some(Instant::now() + rktio_net::CONNECT_TIMEOUT);
            let state = || match &lock(s).kind {
                SockKind::Stream(t) => t.connect_result(),
                _ => Some(Err(std::io::Error::from(ErrorKind::NotConnected))),
            };
            match self.wait_net(net, deadline, || state().is_some()) {
                Err(EAGAIN) => return Err(libc::ETIMEDOUT),
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            lock(s).connecting = false;
            match state() {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(io_errno(&e)),
                None => Err(libc::ETIMEDOUT),
            }
        }))
    }

    /// send/sendto/sendmsg/write/writev on a socket. A blocking stream send
    /// waits until everything is queued (or the timeout, with what went).
    pub fn send(
        &self,
        fd: RawFd,
        bufs: &[&[u8]],
        flags: i32,
        to: Option<SocketAddr>,
    ) -> Option<SysResult<usize>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, net)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let nb = Self::nonblocking(&d, flags);
            let deadline = lock(s).sndtimeo.map(|t| Instant::now() + t);
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            if s.dgram {
                let data = bufs.concat();
                loop {
                    let r = {
                        let mut st = lock(s);
                        if matches!(st.kind, SockKind::Fresh) {
                            // sendto on an unbound socket binds an ephemeral port.
                            st.kind = SockKind::Udp(udp_bind(net, None, 0)?);
                        }
                        let dest = to.map(unmap).or(st.peer).ok_or(libc::EDESTADDRREQ)?;
                        let SockKind::Udp(u) = &mut st.kind else {
                            return Err(EINVAL);
                        };
                        u.send_to(&data, dest)
                    };
                    match r {
                        Ok(n) => {
                            self.count_sent(n);
                            return Ok(n);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock && !nb => {}
                        Err(e) => return Err(io_errno(&e)),
                    }
                    self.wait_net(
                        net,
                        deadline,
                        || matches!(&lock(s).kind, SockKind::Udp(u) if u.writable()),
                    )?;
                }
            }
            let mut sent = 0usize;
            let mut bi = 0usize;
            let mut off = 0usize;
            loop {
                let r = {
                    let mut st = lock(s);
                    let SockKind::Stream(t) = &mut st.kind else {
                        return Err(ENOTCONN);
                    };
                    let mut r = Ok(0);
                    while bi < bufs.len() {
                        let b = &bufs[bi][off..];
                        if b.is_empty() {
                            bi += 1;
                            off = 0;
                            continue;
                        }
                        match t.write(b) {
                            Ok(n) => {
                                sent += n;
                                off += n;
                                if off == bufs[bi].len() {
                                    bi += 1;
                                    off = 0;
                                }
                            }
                            Err(e) => {
                                r = Err(e);
                                break;
                            }
                        }
                    }
                    r
                };
                match r {
                    Ok(_) => {
                        self.count_sent(sent);
                        return Ok(sent);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        s.send_blocked.fetch_add(1, Ordering::SeqCst);
                        if nb {
                            if sent > 0 {
                                self.count_sent(sent);
                                return Ok(sent);
                            }
                            return Err(EAGAIN);
                        }
                    }
                    Err(e) => {
                        if sent > 0 {
                            self.count_sent(sent);
                            return Ok(sent);
                        }
                        return Err(io_errno(&e));
                    }
                }
                if sent >= total {
                    self.count_sent(sent);
                    return Ok(sent);
                }
                match self.wait_net(
                    net,
                    deadline,
                    || matches!(&lock(s).kind, SockKind::Stream(t) if t.readiness().1),
                ) {
                    Ok(()) => {}
                    Err(e) if sent > 0 => {
                        let _ = e;
                        self.count_sent(sent);
                        return Ok(sent);
                    }
                    Err(e) => return Err(e),
                }
            }
        }))
    }

    pub(crate) fn send_blocked(&self, fd: RawFd) -> u64 {
        match self.desc(fd).as_deref().map(|d| &d.kind) {
            Some(Kind::Sock(s)) => s.send_blocked.load(Ordering::SeqCst),
            _ => 0,
        }
    }

    fn count_sent(&self, n: usize) {
        bump(&self.stats.sends, 1);
        bump(&self.stats.sent_bytes, n as u64);
    }

    fn count_received(&self, n: usize) {
        bump(&self.stats.recvs, 1);
        bump(&self.stats.received_bytes, n as u64);
    }

    /// recv/recvfrom/recvmsg/read/readv on a socket (MSG_PEEK, MSG_DONTWAIT,
    /// MSG_WAITALL).
    pub fn recv(
        &self,
        fd: RawFd,
        bufs: &mut [&mut [u8]],
        flags: i32,
    ) -> Option<SysResult<Received>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, net)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let nb = Self::nonblocking(&d, flags);
            let peek = flags & libc::MSG_PEEK != 0;
            let waitall = flags & libc::MSG_WAITALL != 0 && !peek;
            let deadline = lock(s).rcvtimeo.map(|t| Instant::now() + t);
            let want: usize = bufs.iter().map(|b| b.len()).sum();
            if s.dgram {
                loop {
                    let r = {
                        let mut st = lock(s);
                        let SockKind::Udp(u) = &mut st.kind else {
                            return Err(if st.peer.is_some() { EAGAIN } else { EINVAL });
                        };
                        let mut tmp = vec![0u8; want.max(1)];
                        if peek {
                            // Datagram peek: report the size waiting without taking it.
                            let n = u.pending();
                            if n == 0 {
                                Err(std::io::Error::from(ErrorKind::WouldBlock))
                            } else {
                                Ok((0, None, n))
                            }
                        } else {
                            u.recv_from(&mut tmp).map(|(n, from)| {
                                let mut done = 0;
                                for b in bufs.iter_mut() {
                                    let k = (n - done).min(b.len());
                                    b[..k].copy_from_slice(&tmp[done..done + k]);
                                    done += k;
                                }
                                (n.min(want), Some(from), 0)
                            })
                        }
                    };
                    match r {
                        Ok((n, from, peeked)) => {
                            if peek {
                                return Ok((peeked.min(want), None));
                            }
                            self.count_received(n);
                            return Ok((n, from.map(|f| map_family(s.family, f))));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock && !nb => {}
                        Err(e) => return Err(io_errno(&e)),
                    }
                    self.wait_net(
                        net,
                        deadline,
                        || matches!(&lock(s).kind, SockKind::Udp(u) if u.readable()),
                    )?;
                }
            }
            let mut got = 0usize;
            loop {
                let r: std::io::Result<bool> = {
                    let mut st = lock(s);
                    let SockKind::Stream(t) = &mut st.kind else {
                        return Err(ENOTCONN);
                    };
                    if peek {
                        let first = bufs.iter_mut().find(|b| !b.is_empty());
                        match first {
                            None => Ok(true),
                            Some(b) => t.peek(b).map(|n| {
                                got = n;
                                true
                            }),
                        }
                    } else {
                        let mut r = Ok(false);
                        let mut skip = got;
                        for b in bufs.iter_mut() {
                            if skip >= b.len() {
                                skip -= b.len();
                                continue;
                            }
                            let part = &mut b[skip..];
                            skip = 0;
                            match t.read(part) {
                                Ok(0) => {
                                    r = Ok(true);
                                    break;
                                }
                                Ok(n) => {
                                    got += n;
                                    if n < part.len() {
                                        break;
                                    }
                                }
                                Err(e) => {
                                    r = Err(e);
                                    break;
                                }
                            }
                        }
                        r
                    }
                };
                match r {
                    Ok(eof) => {
                        let done = eof || got >= want || !waitall;
                        if done && (got > 0 || eof || want == 0) {
                            if !peek {
                                self.count_received(got);
                            }
                            return Ok((got, None));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if got > 0 && !waitall {
                            self.count_received(got);
                            return Ok((got, None));
                        }
                        if nb {
                            if got > 0 {
                                self.count_received(got);
                                return Ok((got, None));
                            }
                            return Err(EAGAIN);
                        }
                    }
                    Err(e) => {
                        if got > 0 {
                            self.count_received(got);
                            return Ok((got, None));
                        }
                        return Err(io_errno(&e));
                    }
                }
                if let Err(e) = self.wait_net(
                    net,
                    deadline,
                    || matches!(&lock(s).kind, SockKind::Stream(t) if t.readiness().0),
                ) {
                    if got > 0 {
                        self.count_received(got);
                        return Ok((got, None));
                    }
                    return Err(e);
                }
            }
        }))
    }

    /// shutdown(2).
    pub fn shutdown(&self, fd: RawFd, how: i32) -> Option<SysResult<()>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, _)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let (rd, wr) = match how {
                libc::SHUT_RD => (true, false),
                libc::SHUT_WR => (false, true),
                libc::SHUT_RDWR => (true, true),
                _ => return Err(EINVAL),
            };
            match &mut lock(s).kind {
                SockKind::Stream(t) => {
                    t.shutdown(rd, wr);
                    Ok(())
                }
                SockKind::Udp(_) => Ok(()),
                _ => Err(ENOTCONN),
            }
        }))
    }

    /// getsockname(2) (`peer`: getpeername(2)).
    pub fn sockname(&self, fd: RawFd, peer: bool) -> Option<SysResult<SocketAddr>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, _)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let st = lock(s);
            let a = match (&st.kind, peer) {
                (SockKind::Stream(t), true) => t.peer_addr().map_err(|e| io_errno(&e))?,
                (SockKind::Stream(t), false) => t.local_addr().map_err(|e| io_errno(&e))?,
                (SockKind::Udp(_), true) => st.peer.ok_or(ENOTCONN)?,
                (SockKind::Udp(u), false) => SocketAddr::new(
                    st.bound.map_or(any_addr(s.family, 0).ip(), |a| a.ip()),
                    u.port(),
                ),
                (SockKind::Listening(l), false) => SocketAddr::new(
                    st.bound.map_or(any_addr(s.family, 0).ip(), |a| a.ip()),
                    lock_l(l).port(),
                ),
                (_, true) => return Err(ENOTCONN),
                (SockKind::Fresh, false) => st.bound.unwrap_or(any_addr(s.family, 0)),
            };
            Ok(map_family(s.family, a))
        }))
    }

    /// setsockopt(2): the options real servers set. Buffer sizes and TCP_NODELAY
    /// before listen/connect go into the options new connections get.
    pub fn setsockopt(
        &self,
        fd: RawFd,
        level: i32,
        name: i32,
        val: &[u8],
    ) -> Option<SysResult<()>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, _)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let int = || -> SysResult<i32> {
                let b: [u8; 4] = val.get(..4).and_then(|b| b.try_into().ok()).ok_or(EINVAL)?;
                Ok(i32::from_ne_bytes(b))
            };
            let tv = || -> SysResult<Option<Duration>> {
                let b: [u8; 16] = val
                    .get(..16)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(EINVAL)?;
                let sec = i64::from_ne_bytes(b[..8].try_into().map_err(|_| EINVAL)?);
                let usec = i64::from_ne_bytes(b[8..].try_into().map_err(|_| EINVAL)?);
                if sec < 0 || !(0..1_000_000).contains(&usec) {
                    return Err(libc::EDOM);
                }
                let d = Duration::from_secs(sec as u64) + Duration::from_micros(usec as u64);
                Ok((!d.is_zero()).then_some(d))
            };
            let mut st = lock(s);
            match (level, name) {
                (libc::SOL_SOCKET, libc::SO_REUSEADDR) => st.reuseaddr = int()? != 0,
                // Each socket has its own port here; SO_REUSEPORT load sharing
                // between sockets is not offered.
                (libc::SOL_SOCKET, libc::SO_REUSEPORT) => {
                    if int()? != 0 {
                        return Err(libc::ENOPROTOOPT);
                    }
                }
                (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => {
                    let on = int()? != 0;
                    let every = on.then(|| st.opts.keepalive.unwrap_or(Duration::from_secs(7200)));
                    st.opts.keepalive = every;
                    if let SockKind::Stream(t) = &st.kind {
                        t.set_keepalive(every);
                    }
                }
                (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL) => {
                    let secs = int()?;
                    if secs < 1 {
                        return Err(EINVAL);
                    }
                    if st.opts.keepalive.is_some() || name == libc::TCP_KEEPIDLE {
                        let every = Some(Duration::from_secs(secs as u64));
                        if st.opts.keepalive.is_some() {
                            st.opts.keepalive = every;
                            if let SockKind::Stream(t) = &st.kind {
                                t.set_keepalive(every);
                            }
                        }
                    }
                }
                (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => {
                    if int()? < 1 {
                        return Err(EINVAL);
                    }
                }
                (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
                    let on = int()? != 0;
                    st.opts.nodelay = on;
                    if let SockKind::Stream(t) = &st.kind {
                        t.set_nodelay(on);
                    }
                }
                (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_SNDBUF) => {
                    let n = usize::try_from(int()?.max(0))
                        .unwrap_or(0)
                        .clamp(4096, 16 << 20);
                    if name == libc::SO_RCVBUF {
                        st.opts.recv_buffer = n;
                    } else {
                        st.opts.send_buffer = n;
                    }
                }
                (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => st.rcvtimeo = tv()?,
                (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => st.sndtimeo = tv()?,
                (libc::SOL_SOCKET, libc::SO_LINGER) => {
                    let b: [u8; 8] = val.get(..8).and_then(|b| b.try_into().ok()).ok_or(EINVAL)?;
                    st.linger = (
                        i32::from_ne_bytes(b[..4].try_into().map_err(|_| EINVAL)?),
                        i32::from_ne_bytes(b[4..].try_into().map_err(|_| EINVAL)?),
                    );
                }
                (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => st.v6only = int()? != 0,
                // Hints with no effect on this stack's behaviour a program could see.
                (libc::SOL_SOCKET, libc::SO_BROADCAST | libc::SO_OOBINLINE)
                | (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT | libc::TCP_FASTOPEN)
                | (libc::IPPROTO_IP, libc::IP_TOS)
                | (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                    int()?;
                }
                _ => return Err(libc::ENOPROTOOPT),
            }
            Ok(())
        }))
    }

    /// getsockopt(2): the value's bytes.
    pub fn getsockopt(&self, fd: RawFd, level: i32, name: i32) -> Option<SysResult<Vec<u8>>> {
        let r = self.sock(fd)?;
        Some(r.and_then(|(d, _)| {
            let Kind::Sock(s) = &d.kind else {
                return Err(ENOTSOCK);
            };
            let mut st = lock(s);
            let i = |v: i32| Ok(v.to_ne_bytes().to_vec());
            let tv = |d: Option<Duration>| {
                let d = d.unwrap_or_default();
                let mut v = (d.as_secs() as i64).to_ne_bytes().to_vec();
                v.extend_from_slice(&i64::from(d.subsec_micros()).to_ne_bytes());
                Ok(v)
            };
            match (level, name) {
                (libc::SOL_SOCKET, libc::SO_ERROR) => {
                    let e = match &st.kind {
                        SockKind::Stream(t) if st.connecting => match t.connect_result() {
                            Some(Err(e)) => {
                                st.connecting = false;
                                io_errno(&e)
                            }
                            Some(Ok(())) => {
                                st.connecting = false;
                                0
                            }
                            None => 0,
                        },
                        _ => 0,
                    };
                    i(e)
                }
                (libc::SOL_SOCKET, libc::SO_TYPE) => i(if s.dgram {
                    libc::SOCK_DGRAM
                } else {
                    libc::SOCK_STREAM
                }),
                (libc::SOL_SOCKET, libc::SO_DOMAIN) => i(s.family),
                (libc::SOL_SOCKET, libc::SO_PROTOCOL) => i(if s.dgram {
                    libc::IPPROTO_UDP
                } else {
                    libc::IPPROTO_TCP
                }),
                (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
                    i(i32::from(matches!(st.kind, SockKind::Listening(_))))
                }
                (libc::SOL_SOCKET, libc::SO_REUSEADDR) => i(i32::from(st.reuseaddr)),
                (libc::SOL_SOCKET, libc::SO_REUSEPORT) => i(0),
                (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => i(i32::from(st.opts.keepalive.is_some())),
                (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                    i(i32::try_from(st.opts.recv_buffer).unwrap_or(i32::MAX))
                }
                (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                    i(i32::try_from(st.opts.send_buffer).unwrap_or(i32::MAX))
                }
                (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => tv(st.rcvtimeo),
                (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => tv(st.sndtimeo),
                (libc::SOL_SOCKET, libc::SO_LINGER) => {
                    let mut v = st.linger.0.to_ne_bytes().to_vec();
                    v.extend_from_slice(&st.linger.1.to_ne_bytes());
                    Ok(v)
                }
                (libc::IPPROTO_TCP, libc::TCP_NODELAY) => i(i32::from(st.opts.nodelay)),
                (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => {
                    // IPv4 over WireGuard's 1420-byte tunnel MTU (less with IPv6).
                    i(if s.family == libc::AF_INET6 {
                        1360
                    } else {
                        1380
                    })
                }
                (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL) => i(st
                    .opts
                    .keepalive
                    .map_or(7200, |d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))),
                (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => i(9),
                (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => {
                    let mut v = b"cubic".to_vec();
                    v.resize(16, 0);
                    Ok(v)
                }
                (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => i(i32::from(st.v6only)),
                _ => Err(libc::ENOPROTOOPT),
            }
        }))
    }

    /// ioctl FIONREAD on a socket (bytes waiting).
    pub fn fionread(&self, fd: RawFd) -> Option<SysResult<i32>> {
        let d = self.desc(fd)?;
        Some(match &d.kind {
            Kind::Sock(s) => Ok(match &lock(s).kind {
                SockKind::Stream(t) => i32::try_from(t.pending()).unwrap_or(i32::MAX),
                SockKind::Udp(u) => i32::try_from(u.pending()).unwrap_or(i32::MAX),
                _ => 0,
            }),
            Kind::File(_) => {
                let r = self.fstat(fd)?;
                let p = self.lseek(fd, 0, libc::SEEK_CUR)?;
                match (r, p) {
                    (Ok(st), Ok(p)) => Ok(i32::try_from(
                        st.stat.size.saturating_sub(u64::try_from(p).unwrap_or(0)),
                    )
                    .unwrap_or(i32::MAX)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            Kind::Epoll(_) => Err(libc::ENOTTY),
        })
    }

    /// ioctl FIONBIO / fcntl O_NONBLOCK.
    pub fn set_nonblocking(&self, fd: RawFd, on: bool) -> Option<SysResult<()>> {
        let d = self.desc(fd)?;
        let f = d.status.load(Ordering::Relaxed);
        d.status.store(
            if on {
                f | libc::O_NONBLOCK
            } else {
                f & !libc::O_NONBLOCK
            },
            Ordering::Relaxed,
        );
        Some(Ok(()))
    }

    /// At exit: closes every socket of ours and waits (at most `limit`) for
    /// what they queued to be delivered.
    pub fn close_sockets(&self, limit: Duration) {
        let socks: Vec<RawFd> = self
            .fds()
            .iter()
            .filter(|(_, d)| matches!(d.kind, Kind::Sock(_)))
            .map(|(fd, _)| *fd)
            .collect();
        for fd in socks {
            let _ = self.close(fd);
        }
        if let Some(Some(net)) = self.net.get() {
            net.linger(limit);
        }
    }

    /// Is `fd` a socket of ours?
    pub fn is_socket(&self, fd: RawFd) -> bool {
        self.desc(fd)
            .is_some_and(|d| matches!(d.kind, Kind::Sock(_)))
    }
}

/// An IPv4 address seen on an AF_INET6 socket is reported v4-mapped.
fn map_family(family: i32, a: SocketAddr) -> SocketAddr {
    match (family, a.ip()) {
        (libc::AF_INET6, IpAddr::V4(v4)) => {
            SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port())
        }
        _ => a,
    }
}

/// A v4-mapped IPv6 address means IPv4 to the stack.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}
